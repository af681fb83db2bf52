"""Reading query logs: events, sessions, and (previous query, next query) pairs.

The AOL layout: tab-separated ``AnonID, Query, QueryTime`` (``YYYY-MM-DD HH:MM:SS``) with an
optional header, one row per query event, sorted by user then time. Everything streams: a log
larger than memory is read one line at a time.

The evaluation protocol of the project (see the data README): a session is a user's events in
time order, a new one after a gap of more than 30 minutes; pairs are consecutive queries of a
session with ``next != prev``, lower-cased and stripped.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Union

from xrcomplete import _core

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
    """Lower-cases and strips a query, as the evaluation protocol does (Python's ``str.lower``
    and ``str.strip``; computed by the compiled core, the same function the completer uses)."""
    return _core.normalize_query(query)


def _rows(path: PathLike, columns: int) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of the data lines, with at least ``columns`` fields."""
    with open(path, encoding="utf-8", newline="") as f:
        for lineno, line in enumerate(f, start=1):
            fields = line.rstrip("\r\n").split("\t")
            if lineno == 1 and fields[0] == "AnonID":
                continue
            if fields == [""]:
                continue
            if len(fields) < columns:
                raise ValueError(
                    f"{path}:{lineno}: expected tab-separated AnonID, Query, QueryTime; "
                    f"got {line.rstrip()!r}"
                )
            yield lineno, fields


def read_queries(path: PathLike) -> Iterator[str]:
    """Yields the normalised, non-empty queries of an AOL-layout log, one per event, streaming.

    A header line (first field ``AnonID``) is skipped. A row without a query column raises
    ``ValueError`` naming the line.
    """
    for _, fields in _rows(path, 2):
        query = normalize_query(fields[1])
        if query:
            yield query


def read_events(path: PathLike) -> Iterator[tuple[str, str, datetime]]:
    """Yields (user, normalised query, time) for every event with a non-empty query."""
    for lineno, fields in _rows(path, 3):
        query = normalize_query(fields[1])
        if not query:
            continue
        try:
            when = datetime.fromisoformat(fields[2].strip())
        except ValueError:
            raise ValueError(
                f"{path}:{lineno}: QueryTime {fields[2]!r} is not YYYY-MM-DD HH:MM:SS"
            ) from None
        yield fields[0], query, when


def session_pairs(
    path: PathLike, gap_minutes: float = 30.0, first_queries: bool = False
) -> Iterator[tuple[str, str]]:
    """Yields (previous query, next query) for consecutive events of one session, ``next !=
    previous``. A session ends at a new user or after a gap of more than ``gap_minutes``.

    With ``first_queries``, the first query of every session also comes as ``("", query)``: a
    completer learns what users type with no previous query. (The evaluation protocol uses the
    pairs only.)
    """
    if not gap_minutes > 0:
        raise ValueError(f"gap_minutes must be > 0, got {gap_minutes}")
    gap = timedelta(minutes=gap_minutes)
    last: tuple[str, str, datetime] | None = None
    for user, query, when in read_events(path):
        same_session = last is not None and last[0] == user and when - last[2] <= gap
        if same_session and last is not None and query != last[1]:
            yield last[1], query
        elif not same_session and first_queries:
            yield "", query
        last = (user, query, when)


def read_pairs(path: PathLike) -> Iterator[tuple[str, str]]:
    """Yields (previous query, next query) from a file of tab-separated pairs, one per line,
    normalised; an empty previous query marks a session's first query. A header line
    ``prev<TAB>next`` is skipped, as are lines whose next query is blank; a line without a tab
    raises ``ValueError`` naming it. Streams."""
    with open(path, encoding="utf-8", newline="") as f:
        for lineno, line in enumerate(f, start=1):
            fields = line.rstrip("\r\n").split("\t")
            if fields == [""] or (lineno == 1 and fields[:2] == ["prev", "next"]):
                continue
            if len(fields) != 2:
                raise ValueError(
                    f"{path}:{lineno}: expected 'previous query<TAB>next query'; "
                    f"got {line.rstrip()!r}"
                )
            nxt = normalize_query(fields[1])
            if nxt:
                yield normalize_query(fields[0]), nxt


def prefix_examples(
    pairs: Iterable[tuple[str, str]], per_pair: int = 3, seed: int = 0
) -> Iterator[tuple[str, str, str]]:
    """Yields training examples (previous query, prefix of next, next) from pairs: for each pair,
    ``per_pair`` distinct prefix lengths drawn uniformly from 1..len(next) (all of them when the
    next query is shorter). Deterministic given ``seed``; streams."""
    if per_pair < 1:
        raise ValueError(f"per_pair must be >= 1, got {per_pair}")
    rng = random.Random(seed)
    for prev, nxt in pairs:
        lengths = range(1, len(nxt) + 1)
        chosen = lengths if len(nxt) <= per_pair else sorted(rng.sample(lengths, per_pair))
        for n in chosen:
            yield prev, nxt[:n], nxt


def read_judgments(path: PathLike) -> Iterator[tuple[str, str, float]]:
    """Yields (query, product id, relevance) from a tab-separated file of relevance judgments
    (``search_term, product_uid, relevance``, as the Home Depot data; header optional). Queries
    are normalised. A malformed line raises ``ValueError`` naming it. Streams."""
    with open(path, encoding="utf-8", newline="") as f:
        for lineno, line in enumerate(f, start=1):
            fields = line.rstrip("\r\n").split("\t")
            if fields == [""] or (lineno == 1 and fields[0] == "search_term"):
                continue
            try:
                query, product, relevance = fields
                value = float(relevance)
            except ValueError:
                raise ValueError(
                    f"{path}:{lineno}: expected 'query<TAB>product id<TAB>relevance'; "
                    f"got {line.rstrip()!r}"
                ) from None
            yield normalize_query(query), product, value


def read_catalogue(path: PathLike) -> dict[str, str]:
    """Product id -> title, from a tab-separated file (``product_uid, product_title``, header
    optional). A malformed line raises ``ValueError`` naming it."""
    catalogue: dict[str, str] = {}
    with open(path, encoding="utf-8", newline="") as f:
        for lineno, line in enumerate(f, start=1):
            fields = line.rstrip("\r\n").split("\t")
            if fields == [""] or (lineno == 1 and fields[0] == "product_uid"):
                continue
            if len(fields) != 2:
                raise ValueError(
                    f"{path}:{lineno}: expected 'product id<TAB>title'; got {line.rstrip()!r}"
                )
            catalogue[fields[0]] = fields[1]
    return catalogue
