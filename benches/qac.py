"""Query autocompletion on the AOL log, by the project's protocol: baselines side by side.

    pip install . && python benches/qac.py

Trained on aol_train.tsv, scored on aol_valid.tsv: every prefix of the next query of every
(previous, next) pair of a session is a case; MRR@10 overall and by prefix length (see
``xrcomplete.metrics``). Rows:
- MPC: most popular completion, counts of every query event of the training log (the data
  README's baseline, 0.159);
- MPC | prev: the next queries seen after the same previous query, by count, filled up from
  MPC (the data README quotes 0.168 for its version of this baseline).
The session-aware Completer joins this table when it exists (issue 5).
"""

from __future__ import annotations

import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

from xrcomplete import Trie
from xrcomplete.data import read_queries, session_pairs
from xrcomplete.metrics import BUCKETS, evaluate

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
K = 10


def main(argv: Sequence[str] | None = None) -> int:
    train_log, valid_log = DATA / "aol_train.tsv", DATA / "aol_valid.tsv"
    train = list(session_pairs(train_log))
    valid = list(session_pairs(valid_log))
    mpc = Trie(Counter(read_queries(train_log)))
    after: dict[str, Counter[str]] = defaultdict(Counter)
    for prev, nxt in train:
        after[prev][nxt] += 1

    def most_popular(prev: str, prefix: str) -> list[str]:
        return [q for q, _ in mpc.completions(prefix, K)]

    def conditioned(prev: str, prefix: str) -> list[str]:
        seen = after.get(prev, Counter())
        ranked = sorted(
            ((q, c) for q, c in seen.items() if q.startswith(prefix)),
            key=lambda qc: (-qc[1], qc[0]),
        )
        out = [q for q, _ in ranked[:K]]
        for q, _ in mpc.completions(prefix, 2 * K):
            if len(out) == K:
                break
            if q not in out:
                out.append(q)
        return out

    print(f"{len(train):,} training pairs, {len(valid):,} validation pairs")
    header = f"{'system':<12}{'MRR@10':>8}" + "".join(f"{name:>8}" for name, _, _ in BUCKETS)
    print(header + f"{'cases/s':>10}")
    for name, complete in (("MPC", most_popular), ("MPC | prev", conditioned)):
        t0 = time.perf_counter()
        report = evaluate(complete, valid, k=K)
        rate = report.cases / (time.perf_counter() - t0)
        buckets = "".join(f"{report.bucket_mrr(b):>8.3f}" for b, _, _ in BUCKETS)
        print(f"{name:<12}{report.mrr:>8.3f}{buckets}{rate:>10,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
