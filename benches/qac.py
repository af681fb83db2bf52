"""Query autocompletion on the AOL log, by the project's protocol: xrcomplete against baselines.

    pip install . && python benches/qac.py [--indexes trie,hybrid,kmeans] [--no-feature-ablations]
    # with the libpecos row: run it in the libpecos venv (see benches/vs_pecos.py)

Trained on aol_train.tsv, scored on aol_valid.tsv: every prefix of the next query of every
(previous, next) pair of a session is a case. Columns: MRR@10 per case, overall and by prefix
length; per pair (PECOS qp2q: one prefix per pair, uniform over its lengths, in expectation);
MRR@10 per case on the pairs whose next query was seen in training and on those whose was not;
keystrokes saved (the share of a next query's characters after the shortest prefix that has it
first); success@10. Rows:
- MPC: most popular completion, counts of every query event of the training log (the data
  README's baseline, 0.159);
- MPC | prev: the next queries seen after the same previous query, by count, filled up from
  MPC (the data README quotes 0.168 for its version of this baseline);
- libpecos: XR-Linear (k-means tree, defaults) on word 1-2 TF-IDF of prev | char_wb 1-4 TF-IDF of
  the prefix, 3 sampled prefixes per pair, 87,180 labels, beam 10, its top 100 filtered to the
  prefix (the data README's setup; only when libpecos is installed);
- xrcomplete: ``Completer(index=...).fit_log(aol_train.tsv)`` with its defaults, one row per
  label tree. For the first tree, ablations: each candidate source turned off when serving (the
  ranker as learned), the ranker learned as the additive model in place of the trees (a new
  fit), and each group of ranking features left out of the ranker (a new fit per group;
  ``--no-feature-ablations`` skips them).
- xrcomplete ... + history: the same completer given each case's whole session (its earlier
  searches, oldest first; the PECOS protocol's row above gives the previous query alone), then
  the history ablation: the session's last 1 / 2 / 3 / 5 (the default) / 32 searches, with the
  p50 / p99 of ``complete()`` given them, and the composed answers of top-5 lists: how many a
  list holds, and the share of them that anyone searched in aol_valid (a plausibility proxy).
Then, per xrcomplete tree: training time (whole log, all cores), single-call latency of
``complete()`` from Python (p50 / p99 over 5,000 cases), throughput of 2 threads over 1 thread
(the median ratio of 7 back-to-back pairs of runs of 10,000 calls),
model size on disk and in memory (the completer's own count of its heap, and the resident
memory a fresh process gains by loading it).
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from benchdata import add_data_option, require
from typo import typo_table

from xrcomplete import Completer, FeatureConcat, TfidfVectorizer, Trie
from xrcomplete.data import prefix_examples, read_queries, session_histories, session_pairs
from xrcomplete.metrics import BUCKETS, CompleteBatch, cases, evaluate_batch

K = 10
Pairs = list[tuple[str, str]]
HEADER = (
    f"{'system':<26}{'MRR@10':>8}"
    + "".join(f"{b:>7}" for b, _, _ in BUCKETS)
    + f"{'pair':>7}{'seen':>7}{'unseen':>7}{'keys':>7}{'succ':>7}"
)


class Scores:
    """Reports of one system on the pairs whose next query was seen in training, and on the
    others; overall figures combine them."""

    def __init__(self, complete_batch: CompleteBatch, seen: Pairs, unseen: Pairs) -> None:
        self.seen = evaluate_batch(complete_batch, seen, k=K, chunk=20_000)
        self.unseen = evaluate_batch(complete_batch, unseen, k=K, chunk=20_000)

    def total(self, name: str) -> float:
        """A summed field of both reports divided by the summed ``cases`` or ``pairs``."""
        a, b = self.seen, self.unseen
        per = "pairs" if name in ("pair_mrr_sum", "saved_share_sum") else "cases"
        return (getattr(a, name) + getattr(b, name)) / (getattr(a, per) + getattr(b, per))

    def bucket(self, name: str) -> float:
        n = self.seen.by_bucket[name][0] + self.unseen.by_bucket[name][0]
        return (self.seen.by_bucket[name][1] + self.unseen.by_bucket[name][1]) / n

    def row(self, name: str) -> str:
        buckets = "".join(f"{self.bucket(b):>7.3f}" for b, _, _ in BUCKETS)
        return (
            f"{name:<26}{self.total('reciprocal_ranks'):>8.3f}{buckets}"
            f"{self.total('pair_mrr_sum'):>7.3f}{self.seen.mrr:>7.3f}{self.unseen.mrr:>7.3f}"
            f"{self.total('saved_share_sum'):>7.3f}{self.total('hits'):>7.3f}"
        )


def pecos_complete(train: list[tuple[str, str]]) -> CompleteBatch | None:
    """libpecos on the data README's setup, its top 100 filtered to the prefix."""
    try:
        import numpy as np
        import scipy.sparse as sp
        from pecos.xmc import Indexer, LabelEmbeddingFactory
        from pecos.xmc.xlinear.model import XLinearModel
    except ImportError:
        return None
    labels = sorted({nxt for _, nxt in train})
    label_id = {q: i for i, q in enumerate(labels)}
    examples = list(prefix_examples(train, per_pair=3, seed=0))
    features = FeatureConcat(
        [
            TfidfVectorizer(analyzer="word", ngram_range=(1, 2)),
            TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4)),
        ]
    ).fit([e[0] for e in examples], [e[1] for e in examples])
    x = features.transform([e[0] for e in examples], [e[1] for e in examples])
    ys = np.array([label_id[e[2]] for e in examples])
    y = sp.csr_matrix(
        (np.ones(len(ys), np.float32), (np.arange(len(ys)), ys)), shape=(len(ys), len(labels))
    )
    t0 = time.perf_counter()
    z = LabelEmbeddingFactory.create(y, x, method="pifa")
    chain = Indexer.gen(z, indexer_type="hierarchicalkmeans", nr_splits=16, max_leaf_size=100)
    model = XLinearModel.train(x, y, C=chain, threshold=0.1, Cp=1.0, Cn=1.0, bias=1.0)
    print(f"libpecos: trained in {time.perf_counter() - t0:.1f} s", flush=True)

    def complete_batch(prevs: list[str], prefixes: list[str]) -> list[list[str]]:
        pred = model.predict(features.transform(prevs, prefixes), beam_size=10, only_topk=100)
        pred = sp.csr_matrix(pred)
        out = []
        for i, prefix in enumerate(prefixes):
            lo, hi = pred.indptr[i], pred.indptr[i + 1]
            order = np.argsort(-pred.data[lo:hi], kind="stable")
            ranked = [labels[j] for j in pred.indices[lo:hi][order]]
            out.append([q for q in ranked if q.startswith(prefix)][:K])
        return out

    return complete_batch


def latency_us(
    completer: Completer, sample: Sequence[tuple[object, str]], **options: int
) -> tuple[float, float]:
    """p50 and p99 of single ``complete()`` calls from Python, in µs (``options``: per-call
    ranking options)."""
    complete = completer.model.complete
    times = []
    for prev, prefix in sample:
        t0 = time.perf_counter_ns()
        complete(prev, prefix, K, **options)
        times.append(time.perf_counter_ns() - t0)
    times.sort()
    return times[len(times) // 2] / 1e3, times[int(len(times) * 0.99)] / 1e3


def calls_per_s(completer: Completer, calls: list[tuple[str, str]], threads: int) -> float:
    """Calls per second of ``threads`` Python threads sharing ``calls``."""

    def work(part: list[tuple[str, str]]) -> None:
        for prev, prefix in part:
            completer.complete(prev, prefix, K)

    workers = [threading.Thread(target=work, args=(calls[i::threads],)) for i in range(threads)]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return len(calls) / (time.perf_counter() - t0)


def history_rows(
    completer: Completer,
    name: str,
    valid: list[tuple[tuple[str, ...], str]],
    known: set[str],
) -> tuple[list[str], list[str]]:
    """Rows of ``completer`` given each case's whole session, then its last 1, 2, 3, 5 and 32
    searches; and, per row, the cost and the composed answers of its top-5 lists."""
    searched = {nxt for _, nxt in valid} | {q for history, _ in valid for q in history}
    seen = [p for p in valid if p[1] in known]
    unseen = [p for p in valid if p[1] not in known]
    every_case = [(history, prefix) for history, prefix, _ in cases(valid)]
    sample = random.Random(0).sample(every_case, 5_000)
    rows = [Scores(partial(completer.complete_batch, k=K), seen, unseen).row(f"{name} + history")]
    print(rows[-1], flush=True)
    costs = []
    for last in (1, 2, 3, 5, 32):
        complete = partial(completer.model.complete_batch, k=K, session_history=last)
        rows.append(Scores(complete, seen, unseen).row(f"  last {last} searches"))
        print(rows[-1], flush=True)
        p50, p99 = latency_us(completer, sample, session_history=last)
        composed = plausible = lists = 0
        for start in range(0, len(sample), 2_500):
            part = sample[start : start + 2_500]
            found = completer.model.complete_batch(
                [h for h, _ in part], [x for _, x in part], 5, session_history=last
            )
            for answers in found:
                lists += 1
                made = [a[0] for a in answers if a[2] == "composed"]
                composed += len(made)
                plausible += sum(q in searched for q in made)
        costs.append(
            f"last {last:<3}{p50:>9.0f}{p99:>9.0f}{composed / lists:>12.2f}"
            f"{plausible / max(composed, 1):>12.1%}"
        )
    return rows, costs


def two_thread_speedup(
    completer: Completer, sample: list[tuple[str, str]], pairs: int = 7
) -> float:
    """Median over ``pairs`` back-to-back (1 thread, 2 threads) runs of the throughput ratio: the
    machine is shared, and a neighbour's load hits both runs of a pair about alike."""
    calls = sample * 2
    ratios = sorted(
        calls_per_s(completer, calls, 2) / calls_per_s(completer, calls, 1) for _ in range(pairs)
    )
    return ratios[len(ratios) // 2]


def loaded_rss_mb(path: Path) -> float:
    """Resident memory a fresh Python process gains by loading the model at ``path``."""
    code = (
        "import sys\n"
        "from xrcomplete import Completer\n"
        "def rss():\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith('VmRSS:'):\n"
        "            return int(line.split()[1]) / 1024\n"
        "before = rss()\n"
        "c = Completer.load(sys.argv[1])\n"
        "c.complete('', 'a')\n"
        "print(rss() - before)\n"
    )
    try:
        out = subprocess.run(
            [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
        )
        return float(out.stdout)
    except (subprocess.CalledProcessError, ValueError, OSError):
        return float("nan")  # no /proc (not Linux)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--indexes", default="trie", help="xrcomplete label trees, e.g. trie,hybrid"
    )
    parser.add_argument("--no-pecos", action="store_true", help="skip the libpecos row")
    parser.add_argument(
        "--no-feature-ablations",
        action="store_true",
        help="skip the fits without each group of ranking features",
    )
    add_data_option(parser)
    args = parser.parse_args(argv)
    train_log, valid_log = require(args.data, "aol_train.tsv", "aol_valid.tsv")
    train = list(session_pairs(train_log))
    valid = list(session_pairs(valid_log))
    valid_histories = list(session_histories(valid_log))
    known = set(read_queries(train_log))
    seen = [p for p in valid if p[1] in known]
    unseen = [p for p in valid if p[1] not in known]
    mpc = Trie(Counter(read_queries(train_log)))
    after: dict[str, Counter[str]] = defaultdict(Counter)
    for prev, nxt in train:
        after[prev][nxt] += 1

    def most_popular(prevs: list[str], prefixes: list[str]) -> list[list[str]]:
        return [[q for q, _ in mpc.completions(prefix, K)] for prefix in prefixes]

    def conditioned(prevs: list[str], prefixes: list[str]) -> list[list[str]]:
        found = []
        for prev, prefix in zip(prevs, prefixes):
            ranked = sorted(
                ((q, c) for q, c in after.get(prev, Counter()).items() if q.startswith(prefix)),
                key=lambda qc: (-qc[1], qc[0]),
            )
            out = [q for q, _ in ranked[:K]]
            for q, _ in mpc.completions(prefix, 2 * K):
                if len(out) == K:
                    break
                if q not in out:
                    out.append(q)
            found.append(out)
        return found

    print(
        f"{len(train):,} training pairs, {len(valid):,} validation pairs "
        f"({len(unseen) / len(valid):.0%} with a next query never searched in training)",
        flush=True,
    )
    rows = [
        Scores(most_popular, seen, unseen).row("MPC"),
        Scores(conditioned, seen, unseen).row("MPC | prev"),
    ]
    if not args.no_pecos:
        theirs = pecos_complete(train)
        if theirs is None:
            print("(libpecos not installed: its row is left out)")
        else:
            rows.append(Scores(theirs, seen, unseen).row("libpecos, top 100 | pfx"))
    every_case = [(prev, prefix) for prev, prefix, _ in cases(valid)]
    sample = random.Random(0).sample(every_case, 5_000)
    costs = []
    indexes = args.indexes.split(",")
    for index in indexes:
        t0 = time.perf_counter()
        completer = Completer(index=index, progress=False).fit_log(train_log)
        train_s = time.perf_counter() - t0
        rows.append(
            Scores(partial(completer.complete_batch, k=K), seen, unseen).row(f"xrcomplete {index}")
        )
        print(rows[-1], flush=True)
        if index == indexes[0]:
            found, history_costs = history_rows(
                completer, f"xrcomplete {index}", valid_histories, known
            )
            rows.extend(found)
            rows.extend(
                ablations(completer, train_log, seen, unseen, not args.no_feature_ablations)
            )
            typos = typo_table(completer, valid)
        p50, p99 = latency_us(completer, sample)
        speedup = two_thread_speedup(completer, sample)
        with tempfile.TemporaryDirectory() as folder:
            saved = completer.save(folder)
            size = saved.stat().st_size
            rss = loaded_rss_mb(saved)
        costs.append(
            f"{index:<8}{train_s:>9.1f}{p50:>9.0f}{p99:>9.0f}{speedup:>9.2f}"
            f"{size / 1e6:>10.1f}{completer.nbytes / 1e6:>10.1f}{rss:>10.0f}"
        )
        del completer

    print(f"\n{HEADER}")
    print("\n".join(rows))
    print(
        f"\n{'tree':<8}{'train s':>9}{'p50 µs':>9}{'p99 µs':>9}{'2T/1T':>9}"
        f"{'disk MB':>10}{'mem MB':>10}{'load RSS':>10}"
    )
    print("\n".join(costs))
    print(
        f"\nThe session's searches given ({indexes[0]}; 5,000 cases; composed: per top-5 list, "
        "and the share of them searched in aol_valid)"
    )
    print(f"{'history':<8}{'p50 µs':>9}{'p99 µs':>9}{'composed':>12}{'searched':>12}")
    print("\n".join(history_costs))
    print(f"\nTypos ({indexes[0]}; as benches/typo.py)\n{typos}")
    return 0


def ablations(
    completer: Completer, train_log: Path, seen: Pairs, unseen: Pairs, refit: bool
) -> list[str]:
    """Rows of ``completer`` without each candidate source (when serving), refitted with the
    additive ranker in place of the trees, and, with ``refit``, refitted without each group of
    ranking features."""
    rows = []
    for name, off in (
        ("  no XR-Linear model", {"use_model": False}),
        ("  no popular queries", {"use_popular": False}),
        ("  no transitions", {"use_transitions": False}),
        ("  no composed queries", {"generate": False}),
        ("  no copy from prev", {"copy": 0.0, "follow": 0.0}),
    ):
        complete = partial(completer.model.complete_batch, k=K, **off)
        rows.append(Scores(complete, seen, unseen).row(name))
        print(rows[-1], flush=True)
    additive = Completer(index=completer.index, ranker="additive", progress=False)
    additive.fit_log(train_log)
    rows.append(
        Scores(partial(additive.complete_batch, k=K), seen, unseen).row("  additive ranker")
    )
    print(rows[-1], flush=True)
    if refit:
        for group, features in completer.model.ranking_feature_groups().items():
            ablated = Completer(index=completer.index, features_off=features, progress=False)
            ablated.fit_log(train_log)
            complete = partial(ablated.complete_batch, k=K)
            rows.append(Scores(complete, seen, unseen).row(f"  ranker without {group}"))
            print(rows[-1], flush=True)
    return rows


if __name__ == "__main__":
    sys.exit(main())
