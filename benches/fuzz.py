"""Long fuzz runs of what the test suite fuzzes briefly (see README, Reliability).

    pip install '.[test]' && python benches/fuzz.py [--examples 20000] [--cases 200000]

1. Hypothesis over the public Python API with hostile text and k (tests/test_fuzz_api.py),
   ``--examples`` examples instead of 200.
2. The model loaders under a valid checksum (rust/xrcomplete-core/src/loader_fuzz.rs): mutated
   completer and retriever files, nested files included, ``--cases`` cases per property instead
   of 400 (release build).
Prints how long each ran; any failure is the tools' own report, and a non-zero exit.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(name: str, command: list[str], env: dict[str, str]) -> int:
    print(f"== {name}: {' '.join(command)}", flush=True)
    t0 = time.perf_counter()
    code = subprocess.run(command, cwd=ROOT, env={**os.environ, **env}, check=False).returncode
    print(f"== {name}: exit {code} after {time.perf_counter() - t0:.0f} s", flush=True)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=20_000, help="hypothesis examples")
    parser.add_argument("--cases", type=int, default=200_000, help="loader cases per property")
    args = parser.parse_args(argv)
    api = run(
        "public API",
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_fuzz_api.py"],
        {"XRCOMPLETE_FUZZ_EXAMPLES": str(args.examples)},
    )
    loaders = run(
        "model loaders",
        ["cargo", "test", "--release", "-p", "xrcomplete-core", "loader_fuzz"],
        {"XRCOMPLETE_FUZZ_CASES": str(args.cases)},
    )
    return max(api, loaders)


if __name__ == "__main__":
    sys.exit(main())
