"""XR-Linear against libpecos's XLinearModel on the same X and Y, in one run.

    # libpecos needs numpy < 2: a separate venv, as the project README says
    python -m venv /tmp/pecos && . /tmp/pecos/bin/activate
    pip install --no-deps libpecos && pip install "numpy<2" "scipy<1.14" scikit-learn
    pip install . && python benches/vs_pecos.py [--problems aol,zipf]

Problems:
- ``aol``: query autocompletion on the AOL log (the data README's libpecos setup). Training
  rows: 3 sampled prefixes of the next query of every (prev, next) pair of aol_train.tsv;
  features: word 1-2 TF-IDF of prev | char_wb 1-4 TF-IDF of the prefix (xrcomplete's
  vectorizers, the same matrix fed to both); labels: the distinct next queries. Test rows: one
  sampled prefix per pair of aol_valid.tsv (labels never seen in training count as misses).
  On this problem the trie and hybrid label trees are compared with k-means too.
- ``zipf``: synthetic, 100,000 labels with Zipf popularity; each label has a prototype of 8
  features out of 50,000, each instance 6 of them plus 4 noise features.

Both systems: hierarchical k-means tree (16 children per node, leaves of at most 100 labels),
L2-loss SVM matchers, Cp = Cn = 1, bias 1, threshold 0.1, beam 10, top 10, 2 threads.
Reported: precision@1 and recall@10; training wall time (label embedding + tree + matchers);
single-row predict latency from Python (p50 over 2,000 rows; libpecos's predict-only model,
threads=1); batch predict throughput (all threads); model size (bytes of the saved model).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from benchdata import add_data_option, require

from xrcomplete import FeatureConcat, TfidfVectorizer, XRLinear
from xrcomplete.data import session_pairs

K = 10
BEAM = 10


def aol_problem(data: Path, seed: int = 0) -> tuple[Any, Any, Any, Any, list[str] | None]:
    train_log, valid_log = require(data, "aol_train.tsv", "aol_valid.tsv")
    train = list(session_pairs(train_log))
    valid = list(session_pairs(valid_log))
    labels = sorted({nxt for _, nxt in train})
    label_id = {q: i for i, q in enumerate(labels)}
    rng = random.Random(seed)
    prev, prefix, y_train = [], [], []
    for p, nxt in train:
        for _ in range(3):
            prev.append(p)
            prefix.append(nxt[: rng.randint(1, len(nxt))])
            y_train.append(label_id[nxt])
    features = FeatureConcat(
        [
            TfidfVectorizer(analyzer="word", ngram_range=(1, 2)),
            TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4)),
        ]
    ).fit(prev, prefix)
    x_train = features.transform(prev, prefix)
    y = sp.csr_matrix(
        (np.ones(len(y_train), dtype=np.float32), (np.arange(len(y_train)), y_train)),
        shape=(len(y_train), len(labels)),
    )
    test_prev = [p for p, _ in valid]
    test_prefix = [nxt[: rng.randint(1, len(nxt))] for _, nxt in valid]
    x_test = features.transform(test_prev, test_prefix)
    y_test = np.array([label_id.get(nxt, -1) for _, nxt in valid])
    return x_train, y, x_test, y_test, labels


def zipf_problem(n_labels: int = 100_000, n_rows: int = 300_000, seed: int = 0) -> Any:
    rng = np.random.default_rng(seed)
    n_features = 50_000
    prototypes = rng.integers(0, n_features, size=(n_labels, 8))
    popularity = 1.0 / np.arange(1, n_labels + 1) ** 1.1
    popularity /= popularity.sum()

    def sample(n: int) -> tuple[sp.csr_matrix, np.ndarray]:
        # Every label appears at least once in training (so that all 100k are labels).
        lab = rng.choice(n_labels, size=n, p=popularity)
        feats = np.concatenate(
            [
                prototypes[lab][:, rng.permutation(8)[:6]],
                rng.integers(0, n_features, size=(n, 4)),
            ],
            axis=1,
        )
        vals = rng.random(feats.shape, dtype=np.float32) + 0.5
        m = sp.csr_matrix(
            (vals.ravel(), feats.ravel(), np.arange(0, feats.size + 1, 10)),
            shape=(n, n_features),
        )
        m.sum_duplicates()
        return sp.csr_matrix(m.multiply(1.0 / sp.linalg.norm(m, axis=1)[:, None])), lab

    x_train, lab = sample(n_rows)
    x_train = sp.vstack([x_train, sample_each(prototypes, n_features, rng)]).tocsr()
    lab = np.concatenate([lab, np.arange(n_labels)])
    y = sp.csr_matrix(
        (np.ones(len(lab), dtype=np.float32), (np.arange(len(lab)), lab)),
        shape=(len(lab), n_labels),
    )
    x_test, y_test = sample(20_000)
    return x_train.astype(np.float32), y, x_test.astype(np.float32), y_test, None


def sample_each(prototypes: np.ndarray, n_features: int, rng: Any) -> sp.csr_matrix:
    n = len(prototypes)
    vals = rng.random(prototypes.shape, dtype=np.float32) + 0.5
    m = sp.csr_matrix(
        (vals.ravel(), prototypes.ravel(), np.arange(0, prototypes.size + 1, 8)),
        shape=(n, n_features),
    )
    m.sum_duplicates()
    return sp.csr_matrix(m.multiply(1.0 / sp.linalg.norm(m, axis=1)[:, None]))


def accuracy(pred: sp.csr_matrix, truth: np.ndarray) -> tuple[float, float]:
    p1 = r10 = 0
    for r in range(pred.shape[0]):
        row = pred[r]
        if row.nnz == 0 or truth[r] < 0:
            continue
        order = np.argsort(-row.data)
        top = row.indices[order]
        p1 += int(top[0] == truth[r])
        r10 += int(truth[r] in top[:K])
    return p1 / len(truth), r10 / len(truth)


def folder_bytes(folder: str) -> int:
    return sum(
        os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(folder) for f in files
    )


def p50_us(fn: Any, rows: Sequence[Any]) -> float:
    times = []
    for row in rows:
        t0 = time.perf_counter_ns()
        fn(row)
        times.append(time.perf_counter_ns() - t0)
    return float(np.percentile(times, 50)) / 1e3


def run_xrcomplete(
    x: Any,
    y: Any,
    x_test: Any,
    rows: Sequence[Any],
    tree: str = "kmeans",
    labels: list[str] | None = None,
) -> dict[str, Any]:
    t0 = time.perf_counter()
    model = XRLinear(progress=False).fit(x, y, tree=tree, labels=labels)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pred = model.predict(x_test, beam_size=BEAM, topk=K)
    batch_s = time.perf_counter() - t0
    singles = [(r.indices, r.data) for r in rows]
    lat = p50_us(lambda r: model.predict_one(r, beam_size=BEAM, topk=K), singles)
    return {
        "pred": pred,
        "train_s": train_s,
        "batch_rows_per_s": x_test.shape[0] / batch_s,
        "p50_us": lat,
        "bytes": len(model.model.to_bytes()),
        "nnz": model.nnz_,
        "levels": model.level_sizes_,
    }


def run_pecos(x: Any, y: Any, x_test: Any, rows: Sequence[Any]) -> dict[str, Any] | None:
    try:
        from pecos.xmc import Indexer, LabelEmbeddingFactory
        from pecos.xmc.xlinear.model import XLinearModel
    except ImportError:
        return None
    t0 = time.perf_counter()
    z = LabelEmbeddingFactory.create(y, x, method="pifa")
    chain = Indexer.gen(z, indexer_type="hierarchicalkmeans", nr_splits=16, max_leaf_size=100)
    model = XLinearModel.train(x, y, C=chain, threshold=0.1, Cp=1.0, Cn=1.0, bias=1.0)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pred = model.predict(x_test, beam_size=BEAM, only_topk=K, threads=-1)
    batch_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as folder:
        model.save(folder)
        size = folder_bytes(folder)
        fast = XLinearModel.load(folder, is_predict_only=True)
        lat = p50_us(lambda r: fast.predict(r, beam_size=BEAM, only_topk=K, threads=1), rows)
    return {
        "pred": pred,
        "train_s": train_s,
        "batch_rows_per_s": x_test.shape[0] / batch_s,
        "p50_us": lat,
        "bytes": size,
        "nnz": sum(m.W.nnz for m in model.model.model_chain),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", default="aol,zipf")
    add_data_option(parser)
    args = parser.parse_args(argv)
    makers: dict[str, Callable[[], Any]] = {
        "aol": lambda: aol_problem(args.data),
        "zipf": zipf_problem,
    }
    for name in args.problems.split(","):
        t0 = time.perf_counter()
        x, y, x_test, y_test, labels = makers[name]()
        print(
            f"\n== {name}: {x.shape[0]:,} training rows, {x.shape[1]:,} features, "
            f"{y.shape[1]:,} labels, {x_test.shape[0]:,} test rows "
            f"(built in {time.perf_counter() - t0:.0f} s); cores: {os.cpu_count()}",
            flush=True,
        )
        rows = [x_test[i] for i in range(min(2000, x_test.shape[0]))]
        ours = run_xrcomplete(x, y, x_test, rows)
        theirs = run_pecos(x, y, x_test, rows)
        systems = {"xrcomplete": ours, **({"libpecos": theirs} if theirs else {})}
        print(f"{'':<22}" + "".join(f"{s:>14}" for s in systems) + ("   ratio" if theirs else ""))
        for r in systems.values():
            r["p@1"], r["r@10"] = accuracy(r["pred"], y_test)
        metrics = [
            ("precision@1", "p@1", "{:.4f}"),
            ("recall@10", "r@10", "{:.4f}"),
            ("training s", "train_s", "{:.1f}"),
            ("predict p50 µs", "p50_us", "{:.1f}"),
            ("batch rows/s", "batch_rows_per_s", "{:,.0f}"),
            ("model bytes", "bytes", "{:,}"),
            ("weights (nnz)", "nnz", "{:,}"),
        ]
        for label, key, fmt in metrics:
            values = [r[key] for r in systems.values()]
            line = f"{label:<22}" + "".join(f"{fmt.format(v):>14}" for v in values)
            if theirs:
                line += f"   {values[0] / values[1]:.2f}x"
            print(line, flush=True)
        if not theirs:
            print("(libpecos not installed: only xrcomplete measured)")
        if labels is not None:
            print(f"\nxrcomplete label trees on {name} (same features, beam {BEAM}):")
            print(f"{'tree':<10}{'p@1':>9}{'r@10':>9}{'train s':>9}{'p50 µs':>9}  levels")
            for tree in ("kmeans", "trie", "hybrid"):
                r = ours if tree == "kmeans" else run_xrcomplete(x, y, x_test, rows, tree, labels)
                p1, r10 = accuracy(r["pred"], y_test)
                print(
                    f"{tree:<10}{p1:>9.4f}{r10:>9.4f}{r['train_s']:>9.1f}{r['p50_us']:>9.1f}"
                    f"  {r['levels']}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
