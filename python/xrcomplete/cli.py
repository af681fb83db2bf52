"""The ``xrcomplete`` command line.

``xrcomplete quickstart`` builds the most-popular-completion trie from the bundled slice of the
AOL log and prints completions for a few prefixes. ``xrcomplete complete PREFIX ...`` does the
same for any log in AOL's layout (``--log``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from xrcomplete import Trie, __version__
from xrcomplete.data import read_queries, sample_path

DEMO_PREFIXES = ("g", "ho", "bank", "www.", "weather", "amer")


def _build(log: str) -> tuple[Trie, float]:
    start = time.perf_counter()
    trie = Trie(read_queries(log))
    return trie, time.perf_counter() - start


def _print_completions(trie: Trie, prefixes: Sequence[str], k: int) -> None:
    for prefix in prefixes:
        start = time.perf_counter()
        found = trie.completions(prefix, k)
        micros = (time.perf_counter() - start) * 1e6
        print(f"\n{prefix!r}  ({micros:.1f} µs)")
        if not found:
            print("  (no completion)")
        for key, weight in found:
            print(f"  {weight:6.0f}  {key}")


def _quickstart(args: argparse.Namespace) -> int:
    log = str(sample_path())
    trie, seconds = _build(log)
    print(f"xrcomplete {__version__}: bundled AOL slice (research use only), {log}")
    print(
        f"{len(trie)} distinct queries indexed in {seconds * 1e3:.0f} ms; "
        f"{trie.nbytes / max(len(trie), 1):.0f} bytes per query"
    )
    print(f"Most popular completions (top {args.k}):")
    _print_completions(trie, args.prefix or DEMO_PREFIXES, args.k)
    return 0


def _complete(args: argparse.Namespace) -> int:
    trie, _ = _build(args.log)
    _print_completions(trie, args.prefix, args.k)
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xrcomplete", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"xrcomplete {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    quick = sub.add_parser("quickstart", help="run on the bundled sample of the AOL log")
    quick.add_argument("prefix", nargs="*", help="prefixes to complete (default: a few demos)")
    quick.add_argument("-k", type=_positive, default=5, help="completions per prefix")
    quick.set_defaults(run=_quickstart)

    complete = sub.add_parser("complete", help="most popular completions from a query log")
    complete.add_argument("prefix", nargs="+", help="prefixes to complete")
    complete.add_argument(
        "--log", required=True, help="log in AOL's layout (AnonID, Query, QueryTime)"
    )
    complete.add_argument("-k", type=_positive, default=10, help="completions per prefix")
    complete.set_defaults(run=_complete)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except (OSError, ValueError, UnicodeDecodeError) as err:
        print(f"xrcomplete: error: {err}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
