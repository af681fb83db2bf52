"""Where the benches find their data: ``--data DIR`` (default: the project's shared data folder,
``../shared/data`` beside the checkout), and one line saying what is missing and where to get it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data"

#: Each data file, and where it comes from.
SOURCES = {
    "aol_train.tsv": "the AOL 2006 query log (research use), the project's train split",
    "aol_valid.tsv": "the AOL 2006 query log (research use), the project's validation week",
    "homedepot_products.tsv": "the Home Depot Product Search Relevance data (Kaggle), titles",
    "homedepot_train.tsv": "the Home Depot Product Search Relevance data (Kaggle), judgments",
    "homedepot_valid.tsv": "the Home Depot Product Search Relevance data (Kaggle), judgments",
}


def add_data_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT,
        help=f"folder of the data files (default: {DEFAULT})",
    )


def require(folder: Path, *names: str) -> list[Path]:
    """The paths of ``names`` in ``folder``; when one is missing, says in one line on stderr
    what the bench needs and where to get it, and exits with status 2."""
    paths = [folder / name for name in names]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        where = "; ".join(f"{name}: {SOURCES.get(name, 'a data file')}" for name in missing)
        print(
            f"{Path(sys.argv[0]).name}: needs {', '.join(missing)} in {folder} (give --data DIR): "
            f"{where}; the tab-separated files are in the project's shared data folder "
            "(shared/data, described in its README)",
            file=sys.stderr,
        )
        sys.exit(2)
    return paths


def model_or_train(model: Path | None, train: Path, folder: Path) -> Path:
    """``model`` (a saved completer), or one trained on ``train`` with the defaults and saved
    in ``folder`` (saying how long it took)."""
    if model is not None:
        return model
    import time

    from xrcomplete import Completer

    start = time.perf_counter()
    path = Completer(progress=False).fit_log(train).save(folder / "completer.xrc")
    print(f"trained on {train.name} in {time.perf_counter() - start:.0f} s")
    return path
