"""Product retrieval on the Home Depot data: xrcomplete against BM25 and libpecos, in one run.

    pip install '.[bench]' && python benches/retrieval.py [--plot tradeoff.png]
    # with the libpecos row: run it in the libpecos venv (see benches/vs_pecos.py)

Data (../shared/data): 54,667 products with titles; real customer queries with graded relevance
judgments (1 = irrelevant .. 3 = exactly relevant), train and valid splits of the queries. A
product is relevant to a query when its relevance is >= 2.33; scored over the valid queries
with at least one relevant product: recall@10, recall@100, nDCG@10 (gain = relevance - 1 of the
judged products, 0 for unjudged ones; log2 discount).

Systems:
- BM25 over product titles (exact, k1 = 1.2, b = 0.75, words = runs of \\w, lower-cased);
- libpecos XR-Linear on the same features and training rows as xrcomplete's model (its own
  k-means tree, the same threshold), beam 10; latency of its predict-only model, one thread
  (only when libpecos is installed);
- xrcomplete ``ProductRetriever`` with its defaults: word 1-3 gram + char 3-gram TF-IDF,
  XR-Linear trained on (query -> relevant products) and (title -> product), plus the cosine of
  the query and each title. Also its two halves alone: the model only, and the titles only.
Then the trade-off of the model's weight-pruning threshold and beam size: recall@10 and
single-query latency, as a table and (with ``--plot``, needs matplotlib) a PNG.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from benchdata import add_data_option, require

from xrcomplete import FeatureConcat, ProductRetriever, TfidfVectorizer
from xrcomplete.data import read_catalogue, read_judgments
from xrcomplete.metrics import ndcg_at_k, recall_at_k

RELEVANT = 2.33
Ranker = Callable[[list[str]], list[list[str]]]


def load(data: Path) -> tuple[dict[str, str], list[tuple[str, str]], dict[str, dict[str, float]]]:
    products, train_file, valid_file = require(
        data, "homedepot_products.tsv", "homedepot_train.tsv", "homedepot_valid.tsv"
    )
    catalogue = read_catalogue(products)
    train = [(q, p) for q, p, r in read_judgments(train_file) if r >= RELEVANT]
    valid: dict[str, dict[str, float]] = defaultdict(dict)
    for q, p, r in read_judgments(valid_file):
        valid[q][p] = r
    judged = {q: g for q, g in valid.items() if any(r >= RELEVANT for r in g.values())}
    return catalogue, train, judged


def score(rank: Ranker, judged: dict[str, dict[str, float]]) -> dict[str, float]:
    queries = list(judged)
    found = rank(queries)
    r10 = r100 = ndcg = 0.0
    for q, items in zip(queries, found):
        relevant = {p for p, r in judged[q].items() if r >= RELEVANT}
        r10 += recall_at_k(items, relevant, 10)
        r100 += recall_at_k(items, relevant, 100)
        ndcg += ndcg_at_k(items, {p: r - 1.0 for p, r in judged[q].items()}, 10)
    n = len(queries)
    return {"r@10": r10 / n, "r@100": r100 / n, "ndcg@10": ndcg / n}


def ids_of(retrieve_batch: Callable[[list[str]], list[list[tuple[str, float]]]]) -> Ranker:
    """A ranker giving only the product ids of ``retrieve_batch``'s hits."""
    return lambda queries: [[p for p, _ in hits] for hits in retrieve_batch(queries)]


def latency_us(one: Callable[[str], Any], queries: Sequence[str]) -> tuple[float, float]:
    times = []
    for q in queries:
        t0 = time.perf_counter_ns()
        one(q)
        times.append(time.perf_counter_ns() - t0)
    times.sort()
    return times[len(times) // 2] / 1e3, times[int(len(times) * 0.99)] / 1e3


class BM25:
    """Okapi BM25 over titles, exact: a products x words matrix of term weights."""

    def __init__(self, catalogue: dict[str, str], k1: float = 1.2, b: float = 0.75) -> None:
        self.ids = list(catalogue)
        self.vocab: dict[str, int] = {}
        rows, cols, tf = [], [], []
        for d, title in enumerate(catalogue.values()):
            counts: dict[int, int] = defaultdict(int)
            for w in self.tokens(title):
                counts[self.vocab.setdefault(w, len(self.vocab))] += 1
            for col, c in counts.items():
                rows.append(d)
                cols.append(col)
                tf.append(c)
        m = sp.csr_matrix((tf, (rows, cols)), shape=(len(self.ids), len(self.vocab)), dtype=float)
        length = np.asarray(m.sum(axis=1)).ravel()
        df = np.bincount(m.indices, minlength=len(self.vocab))
        idf = np.log((len(self.ids) - df + 0.5) / (df + 0.5) + 1.0)
        c = m.tocoo()
        weight = (
            idf[c.col]
            * c.data
            * (k1 + 1)
            / (c.data + k1 * (1 - b + b * length[c.row] / length.mean()))
        )
        self.weights = sp.csc_matrix((weight, (c.row, c.col)), shape=m.shape)

    @staticmethod
    def tokens(text: str) -> list[str]:
        return re.findall(r"\w+", text.lower())

    def retrieve(self, query: str, k: int = 100) -> list[str]:
        cols = sorted({self.vocab[w] for w in self.tokens(query) if w in self.vocab})
        if not cols:
            return []
        scores = np.asarray(self.weights[:, cols].sum(axis=1)).ravel()
        top = np.argpartition(-scores, min(k, len(scores) - 1))[:k]
        top = top[np.lexsort((top, -scores[top]))]
        return [self.ids[i] for i in top if scores[i] > 0]


def pecos_ranker(catalogue: dict[str, str], train: list[tuple[str, str]], threshold: float) -> Any:
    try:
        from pecos.xmc import Indexer, LabelEmbeddingFactory
        from pecos.xmc.xlinear.model import XLinearModel
    except ImportError:
        return None
    products = list(catalogue)
    label = {p: i for i, p in enumerate(products)}
    relevant: dict[str, set[int]] = defaultdict(set)
    for q, p in train:
        relevant[q].add(label[p])
    texts = list(relevant) + [t for t in catalogue.values()]
    labels = [sorted(s) for s in relevant.values()] + [[i] for i in range(len(products))]
    features = FeatureConcat(
        [
            TfidfVectorizer(analyzer="word", ngram_range=(1, 3)),
            TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 3)),
        ]
    ).fit(texts, texts)
    x = features.transform(texts, texts)
    ind = [j for ls in labels for j in ls]
    ptr = np.cumsum([0] + [len(ls) for ls in labels])
    y = sp.csr_matrix((np.ones(len(ind), np.float32), ind, ptr), shape=(len(texts), len(products)))
    t0 = time.perf_counter()
    z = LabelEmbeddingFactory.create(y, x, method="pifa")
    chain = Indexer.gen(z, indexer_type="hierarchicalkmeans", nr_splits=16, max_leaf_size=100)
    model = XLinearModel.train(x, y, C=chain, threshold=threshold, Cp=1.0, Cn=1.0, bias=1.0)
    train_s = time.perf_counter() - t0

    def rank(queries: list[str]) -> list[list[str]]:
        pred = sp.csr_matrix(
            model.predict(features.transform(queries, queries), beam_size=10, only_topk=100)
        )
        out = []
        for i in range(len(queries)):
            lo, hi = pred.indptr[i], pred.indptr[i + 1]
            order = np.argsort(-pred.data[lo:hi], kind="stable")
            out.append([products[j] for j in pred.indices[lo:hi][order]])
        return out

    folder = tempfile.mkdtemp()
    model.save(folder)
    fast = XLinearModel.load(folder, is_predict_only=True)  # libpecos's serving form

    def one(q: str) -> Any:
        return fast.predict(features.transform([q], [q]), beam_size=10, only_topk=10, threads=1)

    return rank, one, train_s


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plot", help="write the threshold / beam trade-off as a PNG here")
    parser.add_argument("--no-pecos", action="store_true", help="skip the libpecos row")
    add_data_option(parser)
    args = parser.parse_args(argv)
    catalogue, train, judged = load(args.data)
    queries = list(judged)
    print(
        f"{len(catalogue):,} products, {len(train):,} relevant training pairs "
        f"({len({q for q, _ in train}):,} queries), {len(judged):,} valid queries",
        flush=True,
    )
    rows = []

    t0 = time.perf_counter()
    bm25 = BM25(catalogue)
    bm25_s = time.perf_counter() - t0
    p50, p99 = latency_us(lambda q: bm25.retrieve(q, 10), queries)
    rows.append(
        (
            "BM25 over titles",
            score(lambda qs: [bm25.retrieve(q) for q in qs], judged),
            bm25_s,
            p50,
            p99,
        )
    )

    default = ProductRetriever(progress=False)
    if not args.no_pecos:
        pecos = pecos_ranker(catalogue, train, default.threshold)
        if pecos is None:
            print("(libpecos not installed: its row is left out)")
        else:
            rank, one, train_s = pecos
            p50, p99 = latency_us(one, queries)
            rows.append(("libpecos XR-Linear", score(rank, judged), train_s, p50, p99))

    t0 = time.perf_counter()
    ours = default.fit([q for q, _ in train], [p for _, p in train], catalogue)
    train_s = time.perf_counter() - t0
    model = ours.model

    def ranker(**override: Any) -> Ranker:
        return ids_of(partial(model.retrieve_batch, k=100, **override))

    p50, p99 = latency_us(lambda q: ours.retrieve(q, 10), queries)
    rows.append(("xrcomplete", score(ranker(), judged), train_s, p50, p99))
    overrides: tuple[tuple[str, dict[str, Any]], ...] = (
        ("  model only", {"title_weight": 0.0}),
        ("  titles only", {"model_weight": 0.0}),
    )
    for name, override in overrides:
        p50, p99 = latency_us(partial(model.retrieve, k=10, **override), queries)
        rows.append((name, score(ranker(**override), judged), float("nan"), p50, p99))

    header = f"{'r@10':>8}{'r@100':>8}{'nDCG@10':>9}{'train s':>9}{'p50 µs':>9}{'p99 µs':>9}"
    print(f"\n{'system':<22}{header}")
    for name, s, t, a, b in rows:
        print(
            f"{name:<22}{s['r@10']:>8.4f}{s['r@100']:>8.4f}{s['ndcg@10']:>9.4f}{t:>9.1f}{a:>9.0f}{b:>9.0f}"
        )

    beams = (1, 5, 10, 30)
    modes: tuple[tuple[str, dict[str, Any]], ...] = (
        ("titles + model (default)", {}),
        ("model only", {"title_weight": 0.0}),
    )
    # mode -> threshold -> [(beam, recall@10, p50 µs)]
    curves: dict[str, dict[float, list[tuple[int, float, float]]]] = {m: {} for m, _ in modes}
    tables: dict[str, list[str]] = {m: [] for m, _ in modes}
    for threshold in (0.0, 0.01, 0.05, 0.1, 0.3):
        t0 = time.perf_counter()
        r = ProductRetriever(threshold=threshold, progress=False)
        r.fit([q for q, _ in train], [p for _, p in train], catalogue)
        t = time.perf_counter() - t0
        for mode, override in modes:
            cells = []
            for beam in beams:
                at_beam = partial(r.model.retrieve_batch, k=100, beam_size=beam, **override)
                s = score(ids_of(at_beam), judged)
                one = partial(r.model.retrieve, k=10, beam_size=beam, **override)
                lat, _ = latency_us(one, queries)
                curves[mode].setdefault(threshold, []).append((beam, s["r@10"], lat))
                cells.append(f"{s['r@10']:.4f} / {lat:>4.0f} µs")
            tables[mode].append(
                f"{threshold:>10}{r.model.nnz:>12,}{t:>9.1f}" + "".join(f"{c:>18}" for c in cells)
            )
        print(f"threshold {threshold}: trained in {t:.1f} s", flush=True)
    for mode, lines in tables.items():
        print(f"\nPruning threshold x beam, {mode}: recall@10 / retrieve() p50")
        print(
            f"{'threshold':>10}{'nnz':>12}{'train s':>9}"
            + "".join(f"{'beam ' + str(b):>18}" for b in beams)
        )
        print("\n".join(lines))

    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for ax, (mode, curve) in zip(axes, curves.items()):
            for threshold, points in curve.items():
                ax.plot(
                    [p[2] for p in points],
                    [p[1] for p in points],
                    marker="o",
                    label=f"threshold {threshold}",
                )
                for beam, recall, lat in points:
                    ax.annotate(f"b{beam}", (lat, recall), fontsize=7)
            ax.set_xlabel("retrieve() p50 latency (µs)")
            ax.set_ylabel("recall@10")
            ax.set_title(f"{mode}")
            ax.legend(fontsize=7)
        fig.suptitle("xrcomplete product retrieval (Home Depot valid): pruning threshold and beam")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
        print(f"\nplot written to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
