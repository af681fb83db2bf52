"""The privacy floor on the AOL validation week: MRR@10 of completers trained on aol_train.tsv
with ``min_users`` = 1, 2, 3, 5 (a query searched by fewer distinct users is never suggested
whole, nor taught to the language model), and how many queries each keeps.

    pip install . && python benches/privacy.py [--floors 1 2 3 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from functools import partial

from benchdata import add_data_option, require

from xrcomplete import Completer
from xrcomplete.data import session_pairs
from xrcomplete.metrics import evaluate_batch


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--floors", type=float, nargs="+", default=[1, 2, 3, 5])
    add_data_option(parser)
    args = parser.parse_args(argv)
    train, valid = require(args.data, "aol_train.tsv", "aol_valid.tsv")
    pairs = list(session_pairs(valid))
    print(f"{'min_users':>9}{'queries':>10}{'MRR@10':>8}{'per pair':>9}"
          f"{'1-3':>8}{'4-7':>8}{'8+':>8}{'fit s':>7}", flush=True)  # fmt: skip
    for floor in args.floors:
        start = time.perf_counter()
        completer = Completer(progress=False, min_users=floor).fit_log(train)
        fit_s = time.perf_counter() - start
        r = evaluate_batch(partial(completer.complete_batch, k=10), pairs, k=10)
        buckets = "".join(f"{r.bucket_mrr(b):>8.4f}" for b in ("1-3", "4-7", "8+"))
        print(
            f"{floor:>9g}{completer.n_queries_:>10,}{r.mrr:>8.4f}{r.pair_mrr:>9.4f}"
            f"{buckets}{fit_s:>7.0f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
