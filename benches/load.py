"""Load time of a saved completer: read into memory against mapped (``mmap=True``), by model size.

    pip install . && python benches/load.py [--labels 1000000] [--repeat 5] [--out benches/out]

Trains (once; the files are kept in ``--out`` and reused) a completer on the whole AOL training
log (``../shared/data/aol_train.tsv``, 165k labels) and one on a synthetic log of ``--labels``
distinct queries made of AOL words (sessions of 5 queries, every query searched once). Then, for
each file, in fresh processes (the import of xrcomplete not counted; the file in the page cache
after the first run, as on a serving host that reloads a model), it times ``Completer.load``
with and without ``mmap=True``, the first ``complete()`` after it, and the memory the load added
(private, and pages of the mapped file, which processes mapping one file share); medians over
``--repeat`` processes. The ratio is read / mapped, in the same run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from benchdata import add_data_option, require

from xrcomplete import Completer

ROOT = Path(__file__).resolve().parent.parent

# Run in a fresh interpreter: time one load and the first completion after it.
PROBE = r"""
import json, sys, time
from xrcomplete import Completer

def rss_mib():
    # Private memory of the process, and pages of files it maps (shared with other processes
    # mapping the same file, and evictable by the kernel).
    with open("/proc/self/status", encoding="ascii") as f:
        fields = dict(line.split(":", 1) for line in f)
    return [int(fields[k].split()[0]) / 1024 for k in ("RssAnon", "RssFile")]

path, mmap = sys.argv[1], sys.argv[2] == "1"
before = rss_mib()
t0 = time.perf_counter()
c = Completer.load(path, mmap=mmap)
t1 = time.perf_counter()
c.complete("weather", "ho", 10)
t2 = time.perf_counter()
anon, file = (after - b for after, b in zip(rss_mib(), before))
print(json.dumps({"load": t1 - t0, "first": t2 - t1, "anon": anon, "file": file}))
"""


def synthetic_pairs(aol: Path, n_labels: int, seed: int = 0) -> Iterator[tuple[str, str]]:
    """Sessions of 5 distinct made-up queries (2-4 AOL words, Zipf-like), ``n_labels`` in all."""
    words: dict[str, int] = {}
    with aol.open(encoding="utf-8") as f:
        next(f)
        for line in f:
            for w in line.split("\t")[1].lower().split():
                words[w] = words.get(w, 0) + 1
    vocab = sorted(words, key=lambda w: -words[w])[:50_000]
    cum_weights = list(itertools.accumulate(1.0 / (r + 10) for r in range(len(vocab))))
    rng = random.Random(seed)
    seen: set[str] = set()
    prev = ""
    while len(seen) < n_labels:
        q = " ".join(rng.choices(vocab, cum_weights=cum_weights, k=rng.randint(2, 4)))
        if q in seen:
            continue
        seen.add(q)
        yield prev, q
        prev = "" if len(seen) % 5 == 0 else q


def model(out: Path, name: str, retrain: bool, labels: int, aol: Path) -> Path:
    path = out / f"{name}.xrc"
    if path.exists() and not retrain:
        return path
    start = time.perf_counter()
    if name == "aol":
        completer = Completer(progress=False).fit_log(aol)
    else:
        completer = Completer(progress=False).fit(synthetic_pairs(aol, labels))
    completer.save(path)
    print(
        f"trained {name}: {completer.n_queries_:,} labels in {time.perf_counter() - start:.0f} s",
        flush=True,
    )
    return path


def measure(path: Path, mmap: bool, repeat: int) -> dict[str, float]:
    runs = []
    for _ in range(repeat + 1):  # the first run reads the file into the page cache
        out = subprocess.run(
            [sys.executable, "-c", PROBE, str(path), "1" if mmap else "0"],
            check=True,
            capture_output=True,
            text=True,
        )
        runs.append(json.loads(out.stdout))
    return {k: statistics.median(r[k] for r in runs[1:]) for k in runs[0]}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "benches" / "out")
    parser.add_argument("--retrain", action="store_true")
    add_data_option(parser)
    args = parser.parse_args(argv)
    (aol,) = require(args.data, "aol_train.tsv")
    args.out.mkdir(parents=True, exist_ok=True)
    names = ["aol", f"synthetic-{args.labels}"]
    paths = [model(args.out, n, args.retrain, args.labels, aol) for n in names]
    print(
        "| model | file | load (read) | load (mmap) | read / mmap | first complete after mmap "
        "| private memory added (read / mmap) | file pages mapped (mmap) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, path in zip(names, paths):
        read, mapped = measure(path, False, args.repeat), measure(path, True, args.repeat)
        print(
            f"| {name} | {path.stat().st_size / 1e6:.0f} MB | {read['load'] * 1e3:.0f} ms "
            f"| {mapped['load'] * 1e3:.1f} ms | {read['load'] / mapped['load']:.1f}x "
            f"| {mapped['first'] * 1e3:.2f} ms "
            f"| {read['anon']:.0f} / {mapped['anon']:.0f} MiB | {mapped['file']:.0f} MiB |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
