"""Resident memory over a million ``complete()`` calls on one completer: it must not grow.

    pip install . && python benches/memory.py [--calls 1000000]

Trains on the bundled AOL slice, warms up, then calls ``complete(prev, prefix, k=10)`` over
validation cases from one thread and prints the process's resident memory (VmRSS, Linux) every
tenth of the run, and the growth per call at the end.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Sequence

from xrcomplete import Completer
from xrcomplete.data import SAMPLE_VALID, sample_path, session_pairs
from xrcomplete.metrics import cases


def rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    completer = Completer(index="hybrid", progress=False).fit_log(sample_path())
    every = [(p, x) for p, x, _ in cases(session_pairs(sample_path(SAMPLE_VALID)))]
    calls = random.Random(0).sample(every, min(5_000, len(every)))
    for p, x in calls:
        completer.complete(p, x, 10)
    start = rss_kib()
    print(f"after warm-up: {start / 1024:.1f} MiB")
    t0 = time.perf_counter()
    step = max(1, args.calls // 10)
    for i in range(args.calls):
        p, x = calls[i % len(calls)]
        completer.complete(p, x, 10)
        if (i + 1) % step == 0:
            print(f"{i + 1:>10,} calls: {rss_kib() / 1024:.1f} MiB", flush=True)
    grown = rss_kib() - start
    seconds = time.perf_counter() - t0
    print(
        f"growth: {grown} KiB over {args.calls:,} calls ({grown * 1024 / args.calls:.3f} bytes "
        f"per call), {seconds:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
