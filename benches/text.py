"""Text-features bench: fit + transform throughput and single-string latency vs scikit-learn.

    pip install '.[test]' && python benches/text.py [--data DIR | --log LOG.tsv] [--docs N]

Documents: the queries of an AOL-layout log (``--log``, or ``aol_train.tsv`` in ``--data``), in
order, repeated until there are ``--docs`` of them (default 1M; the training log has 319,811
events). Without that log, the bundled sample, and a line saying so.
Each configuration is run by scikit-learn's ``TfidfVectorizer`` (``fit_transform``, one
thread: it has no parallel mode) and by xrcomplete (``fit`` then ``transform``, all cores),
on the same documents in the same run; the outputs are checked equal (within 1e-5) on the
first 20,000 rows before any time is reported. Single-string latency: ``transform_one`` (ours)
and ``transform([s])`` (scikit-learn), one call at a time from Python over 5,000 prefixes.
Ratios are scikit-learn / xrcomplete.

When libpecos is importable (a separate venv: ``pip install --no-deps libpecos`` plus
``"numpy<2" "scipy<1.14" scikit-learn``, then this package), its C++ ``Tfidf`` (train, then
predict, all threads) is timed on the same documents and options; its tokenisation is its own,
so its output is not compared, only its time (ratio libpecos / xrcomplete).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from benchdata import add_data_option
from sklearn.feature_extraction.text import TfidfVectorizer as SkTfidf

from xrcomplete import TfidfVectorizer
from xrcomplete.data import read_queries, sample_path

CONFIGS: dict[str, dict[str, Any]] = {
    "char_wb 1-4 (prefix block)": {"analyzer": "char_wb", "ngram_range": (1, 4)},
    "char 1-5": {"analyzer": "char", "ngram_range": (1, 5)},
    "word 1-2 (prev-query block)": {"analyzer": "word", "ngram_range": (1, 2)},
}


def load_docs(log: Path, n_docs: int) -> list[str]:
    path = log if log.is_file() else sample_path()
    if path != log:
        print(f"{log} is missing (give --data DIR or --log LOG): the bundled sample instead")
    base = list(read_queries(path))
    reps = -(-n_docs // len(base))
    print(f"{len(base):,} queries from {path}, repeated to {n_docs:,}")
    return (base * reps)[:n_docs]


def latency_us(fn: Any, inputs: Sequence[str]) -> tuple[float, float]:
    times = np.empty(len(inputs))
    clock = time.perf_counter_ns
    for i, s in enumerate(inputs):
        t0 = clock()
        fn(s)
        times[i] = clock() - t0
    p50, p99 = np.percentile(times / 1e3, [50, 99])
    return float(p50), float(p99)


def pecos_tfidf() -> Any:
    try:
        from pecos.utils.featurization.text.vectorizers import Tfidf
    except ImportError:
        return None
    return Tfidf


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--log", type=Path, help="an AOL-layout log (default: DATA/aol_train.tsv)")
    parser.add_argument("--docs", type=int, default=1_000_000)
    add_data_option(parser)
    args = parser.parse_args(argv)
    docs = load_docs(args.log or args.data / "aol_train.tsv", args.docs)
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(docs), size=5000)
    prefixes = [docs[i][: int(rng.integers(1, max(2, len(docs[i]) + 1)))] for i in picks]
    print(f"cores: {os.cpu_count()}")
    pecos = pecos_tfidf()
    print("libpecos: " + ("timed too" if pecos else "not installed, skipped"))
    header = (
        f"{'configuration':<28} | {'sklearn s':>9} | {'xrcomplete s':>12} | {'ratio':>6} | "
        f"{'one-string p50/p99 µs: xrcomplete':>34} | {'sklearn p50':>11} | {'ratio':>6}"
    )
    print("\n" + header)
    for name, options in CONFIGS.items():
        t0 = time.perf_counter()
        sk = SkTfidf(dtype=np.float32, **options)
        x_sk = sk.fit_transform(docs)
        sk_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        ours = TfidfVectorizer(**options).fit(docs)
        x_ours = ours.transform(docs)
        ours_s = time.perf_counter() - t0

        if ours.get_feature_names_out().tolist() != sk.get_feature_names_out().tolist():
            raise SystemExit(f"{name}: vocabularies differ")
        diff = abs(x_ours[:20_000] - x_sk[:20_000]).max()
        if diff > 1e-5:
            raise SystemExit(f"{name}: outputs differ by {diff}")

        pecos_note = ""
        if pecos is not None:
            t0 = time.perf_counter()
            pecos_model = pecos.train(docs, {**options, "threads": -1})
            pecos_model.predict(docs, threads=-1)
            pecos_s = time.perf_counter() - t0
            p50, _ = latency_us(lambda s, m=pecos_model: m.predict([s], threads=1), prefixes[:1000])
            pecos_note = f" | libpecos {pecos_s:.2f} s ({pecos_s / ours_s:.1f}x)"
            pecos_note += f", one string p50 {p50:.0f} µs"

        o50, o99 = latency_us(ours.transform_one, prefixes)
        s50, _ = latency_us(lambda s, model=sk: model.transform([s]), prefixes[:1000])
        print(
            f"{name:<28} | {sk_s:>9.1f} | {ours_s:>12.2f} | {sk_s / ours_s:>5.1f}x | "
            f"{o50:>22.1f} / {o99:>9.1f} | {s50:>11.0f} | {s50 / o50:>5.0f}x{pecos_note}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
