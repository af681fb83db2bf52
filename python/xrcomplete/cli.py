"""The ``xrcomplete`` command line.

``xrcomplete quickstart`` trains a session-aware completer on the bundled slice of the AOL log,
prints completions for a few sessions of the following week and scores it (MRR@10) against the
most popular completion. ``train``, ``complete`` and ``eval`` do the same for any log in AOL's
layout (``AnonID, Query, QueryTime``, tab-separated). ``retrieve`` is product retrieval: a
customer query -> products of a catalogue.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Sequence

from xrcomplete import Completer, ProductRetriever, Trie, __version__
from xrcomplete.data import (
    SAMPLE_VALID,
    read_catalogue,
    read_judgments,
    read_pairs,
    read_queries,
    sample_path,
    session_pairs,
)
from xrcomplete.metrics import BUCKETS, Report, evaluate, evaluate_batch

DEMO_SESSIONS = 4


def _train(args: argparse.Namespace, log: str) -> tuple[Completer, float]:
    start = time.perf_counter()
    completer = Completer(
        index=args.index,
        prefixes_per_pair=args.prefixes_per_pair,
        min_count=args.min_count,
    )
    if getattr(args, "pairs", False):
        completer.fit(read_pairs(log))
    else:
        completer.fit_log(log, gap_minutes=args.gap_minutes)
    return completer, time.perf_counter() - start


def _print_completions(
    completer: Completer, prev: str, prefixes: Sequence[str], k: int, answer: str | None = None
) -> None:
    for prefix in prefixes:
        start = time.perf_counter()
        found = completer.complete(prev, prefix, k)
        micros = (time.perf_counter() - start) * 1e6
        print(f"\n  after {prev!r}, typing {prefix!r}  ({micros:.0f} µs)")
        if not found:
            print("    (no completion)")
        for query, score in found:
            mark = "  <- what the user searched" if query == answer else ""
            print(f"    {score:7.2f}  {query}{mark}")


def _print_reports(reports: Sequence[tuple[str, Report]]) -> None:
    print(f"\n  {'':<14}{'MRR@10':>8}" + "".join(f"{b:>8}" for b, _, _ in BUCKETS) + "   cases")
    for name, r in reports:
        buckets = "".join(f"{r.bucket_mrr(b):>8.3f}" for b, _, _ in BUCKETS)
        print(f"  {name:<14}{r.mrr:>8.3f}{buckets}   {r.cases:,}")


def _quickstart(args: argparse.Namespace) -> int:
    train_log, valid_log = sample_path(), sample_path(SAMPLE_VALID)
    print(f"xrcomplete {__version__}: bundled AOL slice (research use only), {train_log}")
    completer, seconds = _train(args, str(train_log))
    print(
        f"Trained a session-aware completer ({args.index} tree) on "
        f"{completer.n_queries_:,} distinct queries in {seconds:.1f} s; "
        f"{completer.nbytes / 1e6:.1f} MB in memory."
    )
    valid = list(session_pairs(valid_log))
    print(f"\nCompletions (top {args.k}) for sessions of the following week:")
    demos = [pair for pair in valid if len(pair[1]) > 4][:: max(1, len(valid) // DEMO_SESSIONS)]
    for prev, nxt in demos[:DEMO_SESSIONS]:
        _print_completions(completer, prev, [nxt[:2], nxt[: len(nxt) // 2 + 1]], args.k, nxt)
    mpc = Trie(Counter(read_queries(train_log)))
    print(f"\nScored on every prefix of the {len(valid):,} query pairs of that week:")
    _print_reports(
        [
            ("most popular", evaluate(lambda p, x: [q for q, _ in mpc.completions(x, 10)], valid)),
            ("xrcomplete", evaluate_batch(lambda p, x: completer.complete_batch(p, x, 10), valid)),
        ]
    )
    return 0


def _train_command(args: argparse.Namespace) -> int:
    completer, seconds = _train(args, args.log)
    path = completer.save(args.output)
    print(
        f"trained on {completer.n_queries_:,} queries in {seconds:.1f} s; saved to {path} "
        f"({path.stat().st_size / 1e6:.1f} MB)"
    )
    return 0


def _complete(args: argparse.Namespace) -> int:
    if args.model:
        completer = Completer.load(args.model, mmap=True)
    else:
        completer, _ = _train(args, args.log)
    _print_completions(completer, args.prev, args.prefix, args.k)
    return 0


def _eval(args: argparse.Namespace) -> int:
    completer = Completer.load(args.model, mmap=True)
    pairs = session_pairs(args.log, gap_minutes=args.gap_minutes)
    report = evaluate_batch(lambda p, x: completer.complete_batch(p, x, args.k), pairs, k=args.k)
    print(report.row())
    return 0


def _retrieve(args: argparse.Namespace) -> int:
    titles = read_catalogue(args.catalogue) if args.catalogue else {}
    if args.model:
        retriever = ProductRetriever.load(args.model, mmap=True)
    else:
        if not (args.judgments and args.catalogue):
            raise ValueError("give --model, or both --judgments and --catalogue to train on")
        start = time.perf_counter()
        pairs = [(q, p) for q, p, r in read_judgments(args.judgments) if r >= args.min_relevance]
        retriever = ProductRetriever().fit([q for q, _ in pairs], [p for _, p in pairs], titles)
        print(f"trained on {len(pairs):,} relevant pairs in {time.perf_counter() - start:.1f} s")
        if args.output:
            print(f"saved to {retriever.save(args.output)}")
    for query in args.query:
        start = time.perf_counter()
        hits = retriever.retrieve(query, args.k)
        micros = (time.perf_counter() - start) * 1e6
        print(f"\n  {query!r}  ({micros:.0f} µs)")
        if not hits:
            print("    (no product)")
        for product, score in hits:
            print(f"    {score:7.3f}  {product}  {titles.get(str(product), '')}".rstrip())
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _add_training_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--index", choices=("trie", "hybrid", "kmeans"), default="trie", help="label tree"
    )
    parser.add_argument(
        "--prefixes-per-pair", type=_positive, default=3, help="prefixes sampled per query pair"
    )
    parser.add_argument(
        "--min-count", type=float, default=1, help="suggest queries searched this often"
    )
    parser.add_argument(
        "--gap-minutes", type=float, default=30.0, help="a new session after this long a gap"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xrcomplete", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"xrcomplete {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    quick = sub.add_parser("quickstart", help="train and score on the bundled AOL slice")
    quick.add_argument("-k", type=_positive, default=5, help="completions shown per prefix")
    _add_training_options(quick)
    quick.set_defaults(run=_quickstart)

    train = sub.add_parser("train", help="train a completer on a query log, save it")
    train.add_argument("log", help="log in AOL's layout (AnonID, Query, QueryTime)")
    train.add_argument("-o", "--output", required=True, help="model file or directory")
    train.add_argument(
        "--pairs",
        action="store_true",
        help="the input is tab-separated (previous query, next query) pairs, not a log",
    )
    _add_training_options(train)
    train.set_defaults(run=_train_command)

    complete = sub.add_parser("complete", help="complete prefixes after a previous query")
    complete.add_argument("prefix", nargs="+", help="prefixes to complete")
    source = complete.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="a completer saved by 'xrcomplete train'")
    source.add_argument("--log", help="train on this log first (AOL's layout)")
    complete.add_argument("--prev", default="", help="the previous query of the session")
    complete.add_argument("-k", type=_positive, default=10, help="completions per prefix")
    _add_training_options(complete)
    complete.set_defaults(run=_complete)

    evaluate_ = sub.add_parser("eval", help="MRR@k of a saved completer on a log's sessions")
    evaluate_.add_argument("model", help="a completer saved by 'xrcomplete train'")
    evaluate_.add_argument("log", help="log in AOL's layout to score on")
    evaluate_.add_argument("-k", type=_positive, default=10, help="completions per case")
    evaluate_.add_argument(
        "--gap-minutes", type=float, default=30.0, help="a new session after this long a gap"
    )
    evaluate_.set_defaults(run=_eval)
    retrieve = sub.add_parser("retrieve", help="product retrieval: a query -> products")
    retrieve.add_argument("query", nargs="+", help="customer queries")
    retrieve.add_argument("--model", help="a retriever saved by a previous --output")
    retrieve.add_argument("--judgments", help="train on: query, product id, relevance (TSV)")
    retrieve.add_argument("--catalogue", help="product id, title (TSV); titles are shown too")
    retrieve.add_argument(
        "--min-relevance", type=float, default=2.33, help="judgments this high are relevant"
    )
    retrieve.add_argument("-o", "--output", help="save the trained retriever here")
    retrieve.add_argument("-k", type=_positive, default=10, help="products per query")
    retrieve.set_defaults(run=_retrieve)
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
