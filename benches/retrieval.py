"""Product retrieval on the Home Depot data: xrcomplete against BM25 and libpecos, in one run.

    pip install '.[bench]' && python benches/retrieval.py [--plot tradeoff.png]
    # with the libpecos row: run it in the libpecos venv (see benches/vs_pecos.py)

Data (../shared/data): 54,667 products with titles; real customer queries with graded relevance
judgments (1 = irrelevant .. 3 = exactly relevant), train and valid splits of the queries. A
product is relevant to a query when its relevance is >= 2.33; scored over the valid queries
with at least one relevant product: recall@10, recall@100, nDCG@10 (gain = relevance - 1 of the
judged products, 0 for unjudged ones; log2 discount). Everything trains on train only.

Systems:
- BM25 over product titles, the baseline (exact, k1 = 1.2, b = 0.75, words = runs of \\w,
  lower-cased); and the same with xrcomplete's lexical scorer's words and parameters (plural
  "s" stripped, k1 = 0.6, b = 0.75), to show what the ranking stage adds beyond it;
- libpecos XR-Linear on the same features and training rows as xrcomplete's model (its own
  k-means tree, the same threshold), beam 10; latency of its predict-only model, one thread
  (only when libpecos is installed);
- xrcomplete ``ProductRetriever`` with its defaults, trained on every graded judgment (gain =
  relevance - 1; pairs >= 2.33 train the model): candidates from the XR-Linear model, BM25 and
  the title cosine, ordered by the learned ranking stage. Then ablations: each feature group
  left out of the ranker (the model's group also removes its candidates), binary judgments
  instead of graded, no (title -> product) training rows.
Then the serving trade-off of one trained retriever: beam size x posting limit of the cosine
source, recall@10 and single-query latency, as a table and (with ``--plot``, needs
matplotlib) a PNG.
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

from xrcomplete import FeatureConcat, ProductRetriever, TfidfVectorizer, _core
from xrcomplete.data import read_catalogue, read_judgments
from xrcomplete.metrics import ndcg_at_k, recall_at_k

RELEVANT = 2.33
Ranker = Callable[[list[str]], list[list[str]]]


Judged = dict[str, dict[str, float]]


def load(data: Path) -> tuple[dict[str, str], list[tuple[str, str, float]], Judged]:
    """The catalogue, every training judgment (query, product, relevance) and the judged valid
    queries with at least one relevant product."""
    products, train_file, valid_file = require(
        data, "homedepot_products.tsv", "homedepot_train.tsv", "homedepot_valid.tsv"
    )
    catalogue = read_catalogue(products)
    train = list(read_judgments(train_file))
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

    def __init__(
        self, catalogue: dict[str, str], k1: float = 1.2, b: float = 0.75, stem: bool = False
    ) -> None:
        self.stem = stem
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

    def tokens(self, text: str) -> list[str]:
        words = re.findall(r"\w+", text.lower())
        if not self.stem:
            return words
        # xrcomplete's plural stemmer: a final "s" off words of 4+ characters not ending "ss".
        return [w[:-1] if len(w) >= 4 and w[-1] == "s" and w[-2] != "s" else w for w in words]

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
    parser.add_argument("--plot", help="write the beam / posting limit trade-off as a PNG here")
    parser.add_argument("--no-pecos", action="store_true", help="skip the libpecos row")
    parser.add_argument("--no-ablations", action="store_true", help="skip the ablation rows")
    add_data_option(parser)
    args = parser.parse_args(argv)
    catalogue, train, judged = load(args.data)
    relevant_pairs = [(q, p) for q, p, r in train if r >= RELEVANT]
    queries = list(judged)
    print(
        f"{len(catalogue):,} products, {len(train):,} training judgments "
        f"({len(relevant_pairs):,} relevant; {len({q for q, _, _ in train}):,} queries), "
        f"{len(judged):,} valid queries",
        flush=True,
    )
    rows = []

    for name, bm25_options in (
        ("BM25 over titles", {}),
        ("  stemmed, k1 0.6", {"k1": 0.6, "b": 0.75, "stem": True}),
    ):
        t0 = time.perf_counter()
        bm25 = BM25(catalogue, **bm25_options)
        bm25_s = time.perf_counter() - t0
        p50, p99 = latency_us(partial(bm25.retrieve, k=10), queries)
        found = score(lambda qs, b=bm25: [b.retrieve(q) for q in qs], judged)
        rows.append((name, found, bm25_s, p50, p99))
    baseline = rows[0][1]

    default = ProductRetriever(progress=False)
    if not args.no_pecos:
        pecos = pecos_ranker(catalogue, relevant_pairs, default.threshold)
        if pecos is None:
            print("(libpecos not installed: its row is left out)")
        else:
            rank, one, train_s = pecos
            p50, p99 = latency_us(one, queries)
            rows.append(("libpecos XR-Linear", score(rank, judged), train_s, p50, p99))

    def fit(graded: bool = True, **options: Any) -> tuple[ProductRetriever, float]:
        retriever = ProductRetriever(progress=False, relevant_gain=RELEVANT - 1.0, **options)
        t0 = time.perf_counter()
        if graded:
            retriever.fit(
                [q for q, _, _ in train],
                [p for _, p, _ in train],
                catalogue,
                relevance=[r - 1.0 for _, _, r in train],
            )
        else:
            retriever.fit(
                [q for q, _ in relevant_pairs],
                [p for _, p in relevant_pairs],
                catalogue,
                relevance=[RELEVANT - 1.0] * len(relevant_pairs),
            )
        return retriever, time.perf_counter() - t0

    def row(name: str, retriever: ProductRetriever, train_s: float) -> None:
        found = score(ids_of(partial(retriever.model.retrieve_batch, k=100)), judged)
        p50, p99 = latency_us(partial(retriever.retrieve, k=10), queries)
        rows.append((name, found, train_s, p50, p99))
        print(f"{name.strip()}: done", flush=True)

    ours, train_s = fit()
    row("xrcomplete", ours, train_s)
    if not args.no_ablations:
        groups = _core.ProductRetrieverModel.ranking_feature_groups()
        for group, names in groups.items():
            retriever, t = fit(features_off=names)
            row(f"  without {group}", retriever, t)
        model_only = [f for g, names in groups.items() if g != "model" for f in names]
        retriever, t = fit(features_off=model_only)
        row("  model's features only", retriever, t)
        retriever, t = fit(graded=False)
        row("  binary judgments", retriever, t)
        retriever, t = fit(titles_as_queries=False)
        row("  no title rows in model", retriever, t)

    header = f"{'r@10':>8}{'r@100':>8}{'nDCG@10':>9}{'train s':>9}{'p50 µs':>9}{'p99 µs':>9}"
    print(f"\n{'system':<26}{header}{'r@10 / BM25':>13}")
    for name, s, t, a, b in rows:
        print(
            f"{name:<26}{s['r@10']:>8.4f}{s['r@100']:>8.4f}{s['ndcg@10']:>9.4f}{t:>9.1f}"
            f"{a:>9.0f}{b:>9.0f}{s['r@10'] / baseline['r@10']:>12.3f}x"
        )

    # The serving trade-off of the trained retriever: no retraining needed.
    beams = (1, 3, 10, 30)
    limits = (0, 500, 2_000, 10_000, 100_000)
    curves: dict[int, list[tuple[int, float, float]]] = {b: [] for b in beams}
    print("\nbeam x posting limit of the cosine source: recall@10 / retrieve() p50")
    print(f"{'limit':>8}" + "".join(f"{'beam ' + str(b):>18}" for b in beams))
    for limit in limits:
        cells = []
        for beam in beams:
            options = {"beam_size": beam, "posting_limit": limit}
            found = score(ids_of(partial(ours.model.retrieve_batch, k=100, **options)), judged)
            lat, _ = latency_us(partial(ours.model.retrieve, k=10, **options), queries)
            curves[beam].append((limit, found["r@10"], lat))
            cells.append(f"{found['r@10']:.4f} / {lat:>4.0f} µs")
        print(f"{limit:>8}" + "".join(f"{c:>18}" for c in cells), flush=True)

    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        for beam, points in curves.items():
            ax.plot(
                [p[2] for p in points], [p[1] for p in points], marker="o", label=f"beam {beam}"
            )
            for limit, recall, lat in points:
                ax.annotate(f"{limit}", (lat, recall), fontsize=7)
        ax.set_xlabel("retrieve() p50 latency (µs)")
        ax.set_ylabel("recall@10")
        ax.set_title("xrcomplete product retrieval (Home Depot valid): beam and posting limit")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
        print(f"\nplot written to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
