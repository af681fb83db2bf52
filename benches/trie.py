"""Trie bench: build time, completions(prefix, k=10) latency and memory, side by side in one run.

    pip install '.[bench]' && python benches/trie.py [--keys 1000000] [--calls 2000]

Data: synthetic queries of 1-4 words drawn from a Zipf-popular vocabulary of random words,
deduplicated, each with a Zipf-distributed weight (so the tail has many equal weights).
Prefixes: of lengths 1-6, cut from keys drawn uniformly at random.

Systems, each answering "the 10 heaviest keys starting with the prefix":
- xrcomplete.Trie.completions (Rust: trie walk + range top-k, GIL released);
- marisa-trie: ``trie.keys(prefix)`` then ``heapq.nlargest`` by weight (the usual Python recipe);
- a sorted list + ``bisect`` for the id range, then numpy ``argpartition`` over the range's
  weights (a strong pure-Python/numpy baseline).
Every system's answers are checked against xrcomplete's (same weights, best first) on the timed
prefixes before anything is reported. Latency is per call from Python (``perf_counter_ns``).
Ratios are baseline / xrcomplete, measured in the same run: absolute times vary on a shared box.
"""

from __future__ import annotations

import argparse
import bisect
import gc
import heapq
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xrcomplete import Trie

K = 10


def synthetic_queries(n_keys: int, seed: int) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    # Letter frequencies skewed as in text, so that some 1-2 character prefixes are huge.
    letter_p = 1.0 / np.arange(1, 27) ** 0.8
    letter_p /= letter_p.sum()
    n_words = max(1000, n_keys // 10)
    lengths = rng.integers(2, 11, size=n_words)
    words = ["".join(rng.choice(letters, size=m, p=letter_p)) for m in lengths]
    word_p = 1.0 / np.arange(1, n_words + 1) ** 1.07
    word_p /= word_p.sum()
    seen: set[str] = set()
    keys: list[str] = []
    while len(keys) < n_keys:
        batch = 200_000
        n_words_per_query = rng.integers(1, 5, size=batch)
        picks = rng.choice(n_words, size=int(n_words_per_query.sum()), p=word_p)
        pos = 0
        for m in n_words_per_query:
            q = " ".join(words[i] for i in picks[pos : pos + m])
            pos += m
            if q not in seen:
                seen.add(q)
                keys.append(q)
                if len(keys) == n_keys:
                    break
    ranks = rng.permutation(n_keys) + 1
    weights = np.floor(1e6 / ranks**1.1) + 1.0
    return keys, weights


def sample_prefixes(keys: Sequence[str], length: int, count: int, seed: int) -> list[str]:
    rng = random.Random(seed * 100 + length)
    out: list[str] = []
    while len(out) < count:
        key = keys[rng.randrange(len(keys))]
        if len(key) >= length:
            out.append(key[:length])
    return out


def timed_calls(fn: Callable[[str], list[float]], prefixes: Sequence[str]) -> np.ndarray:
    times = np.empty(len(prefixes))
    clock = time.perf_counter_ns
    for i, p in enumerate(prefixes):
        t0 = clock()
        fn(p)
        times[i] = clock() - t0
    return times / 1e3  # microseconds


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=2000, help="xrcomplete calls per length")
    parser.add_argument(
        "--baseline-calls", type=int, default=200, help="baseline calls per length (they are slow)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "trie.json")
    args = parser.parse_args(argv)
    try:
        import marisa_trie
    except ImportError:
        print("marisa-trie is needed: pip install '.[bench]'", file=sys.stderr)
        return 2

    print(f"generating {args.keys:,} synthetic Zipf-weighted queries ...", flush=True)
    keys, weights = synthetic_queries(args.keys, args.seed)
    items = list(zip(keys, weights.tolist()))
    weight_of = dict(items)

    gc.collect()
    t0 = time.perf_counter()
    trie = Trie(items)
    build_x = time.perf_counter() - t0
    t0 = time.perf_counter()
    mtrie = marisa_trie.Trie(keys)
    build_m = time.perf_counter() - t0
    t0 = time.perf_counter()
    order = sorted(range(len(keys)), key=keys.__getitem__)
    sorted_keys = [keys[i] for i in order]
    sorted_w = weights[np.array(order)]
    build_s = time.perf_counter() - t0
    mean_len = sum(len(k.encode()) for k in keys) / len(keys)

    def x_fn(p: str) -> list[float]:
        return [w for _, w in trie.completions(p, K)]

    def m_fn(p: str) -> list[float]:
        return [weight_of[k] for k in heapq.nlargest(K, mtrie.keys(p), key=weight_of.__getitem__)]

    def s_fn(p: str) -> list[float]:
        lo = bisect.bisect_left(sorted_keys, p)
        hi = bisect.bisect_left(sorted_keys, p + "\U0010ffff", lo)
        w = sorted_w[lo:hi]
        if len(w) > K:
            w = w[np.argpartition(-w, K)[:K]]
        return sorted(w.tolist(), reverse=True)

    systems = {"xrcomplete": x_fn, "marisa+heapq": m_fn, "sorted+bisect+numpy": s_fn}
    rows = []
    for length in range(1, 7):
        prefixes = sample_prefixes(keys, length, args.calls, args.seed)
        few = prefixes[: args.baseline_calls]
        for name, fn in systems.items():
            if name != "xrcomplete":
                bad = [p for p in few if fn(p) != x_fn(p)]
                if bad:
                    raise SystemExit(f"{name} disagrees with xrcomplete on {bad[:3]!r}")
        lat = {
            name: timed_calls(fn, prefixes if name == "xrcomplete" else few)
            for name, fn in systems.items()
        }
        avg_matches = float(np.mean([len(mtrie.keys(p)) for p in few]))
        rows.append((length, avg_matches, lat))

    print(f"\n{args.keys:,} keys, mean {mean_len:.1f} bytes; k = {K}")
    print(
        f"build: xrcomplete {build_x:.2f} s | marisa-trie {build_m:.2f} s "
        f"({build_m / build_x:.2f}x) | sorted list {build_s:.2f} s ({build_s / build_x:.2f}x)"
    )
    print(
        f"memory: xrcomplete {trie.nbytes / len(keys):.1f} bytes/key "
        f"(keys themselves {mean_len:.1f}); marisa-trie structure "
        f"{len(mtrie.tobytes()) / len(keys):.1f} bytes/key, without weights"
    )
    header = f"{'len':>3} {'matches':>9} | {'xrcomplete p50/p99 µs':>22} |"
    for name in list(systems)[1:]:
        header += f" {name + ' p50/p99 µs':>30} | {'ratio p50':>9} |"
    print("\n" + header)
    report_rows: list[dict[str, Any]] = []
    report = {
        "keys": args.keys,
        "build_s": {"xrcomplete": build_x, "marisa": build_m, "sorted": build_s},
        "bytes_per_key": trie.nbytes / len(keys),
        "rows": report_rows,
    }
    for length, matches, lat in rows:
        x50, x99 = np.percentile(lat["xrcomplete"], [50, 99])
        line = f"{length:>3} {matches:>9.0f} | {x50:>10.1f} / {x99:>9.1f} |"
        p50s: dict[str, float] = {}
        p99s: dict[str, float] = {}
        for name in systems:
            p50, p99 = np.percentile(lat[name], [50, 99])
            p50s[name], p99s[name] = float(p50), float(p99)
            if name != "xrcomplete":
                line += f" {p50:>14.1f} / {p99:>13.1f} | {p50 / x50:>8.0f}x |"
        print(line)
        report_rows.append({"length": length, "matches": matches, "p50_us": p50s, "p99_us": p99s})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
