"""Reading query logs.

The AOL layout: tab-separated ``AnonID, Query, QueryTime`` with a header, one row per query
event, sorted by user then time.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Union

PathLike = Union[str, Path]

#: The bundled slice of the AOL log (research use only; see ``xrcomplete/data/README.md``).
SAMPLE_TRAIN = "aol_sample_train.tsv"
SAMPLE_VALID = "aol_sample_valid.tsv"


def sample_path(name: str = SAMPLE_TRAIN) -> Path:
    """The path of a bundled sample file (``SAMPLE_TRAIN`` or ``SAMPLE_VALID``)."""
    if name not in (SAMPLE_TRAIN, SAMPLE_VALID):
        raise ValueError(
            f"no bundled sample named {name!r}; use {SAMPLE_TRAIN!r} or {SAMPLE_VALID!r}"
        )
    path = Path(str(resources.files("xrcomplete") / "data" / name))
    if not path.is_file():
        raise FileNotFoundError(f"bundled sample {name!r} is missing from the installation: {path}")
    return path


def normalize_query(query: str) -> str:
    """Lower-cases and strips a query, as the evaluation protocol does."""
    return query.strip().lower()


def read_queries(path: PathLike) -> Iterator[str]:
    """Yields the normalised, non-empty queries of an AOL-layout log, one per event, streaming.

    A header line (first field ``AnonID``) is skipped. A row without a query column raises
    ``ValueError`` naming the line.
    """
    with open(path, encoding="utf-8", newline="") as f:
        for lineno, line in enumerate(f, start=1):
            fields = line.rstrip("\r\n").split("\t")
            if lineno == 1 and fields[0] == "AnonID":
                continue
            if fields == [""]:
                continue
            if len(fields) < 2:
                raise ValueError(
                    f"{path}:{lineno}: expected tab-separated AnonID, Query, QueryTime; "
                    f"got {line.rstrip()!r}"
                )
            query = normalize_query(fields[1])
            if query:
                yield query
