"""The xrcomplete command line: session-aware query autocompletion from a search log.

'xrcomplete quickstart' trains a completer on the bundled slice of the AOL log, prints
completions for a few sessions of the following week and scores it (MRR@10) against the most
popular completion. 'train', 'complete' and 'eval' do the same for any log in AOL's layout
(AnonID, Query, QueryTime; tab-separated). 'retrieve' is product retrieval: a customer query ->
products of a catalogue. 'serve' answers completions over HTTP (a JSON API and a demo page).

Every error is one line on stderr and exit status 2; no input prints a traceback.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from xrcomplete import Completer, ProductRetriever, Trie, __version__, _core
from xrcomplete.completer import MODEL_FILE, _model_path
from xrcomplete.data import (
    ERRORS,
    SAMPLE_VALID,
    check_gap,
    read_catalogue,
    read_judgments,
    read_pairs,
    read_queries,
    sample_path,
    session_histories,
    session_pairs,
)
from xrcomplete.distributed import RayEngine
from xrcomplete.metrics import BUCKETS, Report, evaluate, evaluate_batch
from xrcomplete.progress import ProgressLine
from xrcomplete.retrieval import RETRIEVER_FILE
from xrcomplete.server import Server, compact, serve

DEMO_SESSIONS = 4


class UsageError(ValueError):
    """A command line that cannot be run as given."""


def _train(args: argparse.Namespace, logs: Sequence[str]) -> tuple[Completer, float]:
    start = time.perf_counter()
    completer = _completer(args)
    ray = getattr(args, "ray", None)
    if getattr(args, "pairs", False):
        if ray is not None:
            raise UsageError("--ray trains on logs, not on --pairs")
        completer.fit(pair for log in logs for pair in read_pairs(log, errors=args.errors))
    else:
        engine: str | RayEngine = "local"
        if ray is not None:
            engine = RayEngine(None if ray == "local" else ray)
        completer.fit_log(logs, gap_minutes=args.gap_minutes, errors=args.errors, engine=engine)
    return completer, time.perf_counter() - start


def _model_options(args: argparse.Namespace) -> dict[str, Any]:
    """The model options given on the command line (a list flag not given: its default)."""
    values = {d["name"]: getattr(args, d["name"]) for d in Completer.options()}
    return {k: v for k, v in values.items() if v is not None or k == "trie_depth"}


def _completer(args: argparse.Namespace) -> Completer:
    """A completer of the command line's options, checked together (a usage error if not)."""
    try:
        return Completer(**_model_options(args))
    except (TypeError, ValueError) as err:
        raise UsageError(str(err).removeprefix("invalid input: ")) from None


def _writable_target(output: str, name: str) -> str:
    """The file ``save`` will write for ``output``, checked writable now: a long training must
    not end in a failed save. Creates the folder of an ``output`` ending in a separator, as
    ``save`` does; otherwise the folder must exist."""
    try:
        target = _model_path(output, saving=True, name=name)
    except OSError as err:
        raise UsageError(f"cannot save to {output}: {err.strerror or err}") from None
    folder = target.parent
    if not folder.is_dir():
        why = "is not a folder" if folder.exists() else "does not exist"
        raise UsageError(f"cannot save to {target}: {folder} {why}")
    if target.is_dir():
        raise UsageError(f"cannot save to {target}: it is a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".xrcomplete-check-"):
            pass
    except OSError as err:
        raise UsageError(f"cannot save to {target}: {err.strerror or err}") from None
    return str(target)


def _print_completions(
    completer: Completer,
    prev: str | Sequence[str],
    prefixes: Sequence[str],
    k: int,
    answer: str | None = None,
) -> None:
    after = repr(prev) if isinstance(prev, str) else " -> ".join(map(repr, prev)) or "''"
    for prefix in prefixes:
        start = time.perf_counter()
        found = completer.complete(prev, prefix, k)
        micros = (time.perf_counter() - start) * 1e6
        print(f"\n  after {after}, typing {prefix!r}  ({micros:.0f} µs)")
        if not found:
            print("    (no completion)")
        for c in found:
            # composed: nobody searched it whole, the language model put it together from the
            # log's words; fuzzy: it starts with a correction of what was typed (a typo fixed).
            tag = {
                "composed": "  [composed]",
                "fuzzy": f"  [typo? {c.matched!r}]",
                "live": "  [live]",
                "session": "  [searched in this session]",
            }.get(c.source, "")
            mark = "  <- what the user searched" if c.query == answer else ""
            print(f"    {c.score:7.2f}  {c.query}{tag}{mark}")


def _print_reports(reports: Sequence[tuple[str, Report]]) -> None:
    print(f"\n  {'':<14}{'MRR@10':>8}" + "".join(f"{b:>8}" for b, _, _ in BUCKETS) + "   cases")
    for name, r in reports:
        buckets = "".join(f"{r.bucket_mrr(b):>8.3f}" for b, _, _ in BUCKETS)
        print(f"  {name:<14}{r.mrr:>8.3f}{buckets}   {r.cases:,}")


#: The files of a shop's data that ``quickstart --products`` reads (the Home Depot product search
#: data, laid out as the project's shared data folder holds it).
SHOP_FILES = ("homedepot_products.tsv", "homedepot_train.tsv")
#: Search terms of the shop's slice that ``quickstart --products`` trains on.
SHOP_QUERIES = 1500


def _quickstart_products(args: argparse.Namespace) -> int:
    """Suggestions and, beside them, products of one site, trained in seconds on a slice of
    that site's product search data; saved, with the command that serves them."""
    folder = Path(args.products)
    catalogue_file, judgments_file = (folder / name for name in SHOP_FILES)
    for path in (catalogue_file, judgments_file):
        if not path.is_file():
            raise UsageError(
                f"--products: no {path.name} in {folder} (the Home Depot product search data: "
                "product_uid<TAB>product_title, and search_term<TAB>product_uid<TAB>relevance)"
            )
    start = time.perf_counter()
    judged = list(read_judgments(judgments_file, errors=args.errors))
    terms = list(dict.fromkeys(q for q, _, _ in judged))[:SHOP_QUERIES]
    kept = set(terms)
    judged = [j for j in judged if j[0] in kept]
    titles = read_catalogue(catalogue_file, errors=args.errors)
    missing = next((p for _, p, _ in judged if p not in titles), None)
    if missing is not None:
        raise UsageError(f"{judgments_file}: product {missing!r} is not in {catalogue_file}")
    products = {p: titles[p] for _, p, _ in judged}
    print(
        f"xrcomplete {__version__}: a slice of {folder}: the first {len(terms):,} search "
        f"terms, their {len(judged):,} judgments and {len(products):,} products"
    )
    retriever = ProductRetriever(progress=False, relevant_gain=1.33).fit(
        [q for q, _, _ in judged],
        [p for _, p, _ in judged],
        products,
        relevance=[max(r - 1.0, 0.0) for _, _, r in judged],
    )
    # The site's search terms are its query log (a log without sessions trains too).
    completer = Completer(progress=False).fit([("", q) for q in terms])
    print(f"Trained the completer and the product retriever in {time.perf_counter() - start:.1f} s")
    shown = [q for q in terms[:: max(1, len(terms) // 3)] if len(q) >= 4][:3]
    for query in shown:
        prefix = query[: max(2, len(query) // 3)]
        found = completer.complete("", prefix, args.k)
        print(f"\n  typing {prefix!r}:")
        for i, c in enumerate(found):
            print(f"    {c.query}")
            if i == 0:
                for product, score in retriever.retrieve(c.query, 3):
                    print(f"        {score:7.3f}  {product}  {products[str(product)]}")
    output = Path(args.output)
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--output: {e.strerror}: {output}") from None
    model, saved = completer.save(output), retriever.save(output)
    print(f"\nSaved to {model} and {saved}. The search box with both, on the demo page:")
    print(f"  xrcomplete serve {model} --products {saved}")
    return 0


def _quickstart(args: argparse.Namespace) -> int:
    if args.products:
        return _quickstart_products(args)
    train_log, valid_log = sample_path(), sample_path(SAMPLE_VALID)
    print(f"xrcomplete {__version__}: bundled AOL slice (research use only), {train_log}")
    completer, seconds = _train(args, [str(train_log)])
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
    searched = set(read_queries(train_log))
    slips = [(p, n) for p, n in valid if len(n) >= 8 and n in searched and n[2] != n[3]]
    if slips:
        prev, nxt = slips[len(slips) // 2]
        print("\nWith a slip (two letters swapped), typo tolerance finds what was meant:")
        _print_completions(completer, prev, [nxt[:2] + nxt[3] + nxt[2] + nxt[4:7]], args.k, nxt)
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
    target = _writable_target(args.output, MODEL_FILE)
    completer, seconds = _train(args, args.logs)
    with ProgressLine(completer.progress) as line:
        line.update(f"saving {target}", force=True)
        path = completer.save(target)
        line.close(f"saved {target}")
    print(
        f"trained on {completer.n_queries_:,} queries in {seconds:.1f} s; saved to {path} "
        f"({path.stat().st_size / 1e6:.1f} MB)"
    )
    return 0


def _complete(args: argparse.Namespace) -> int:
    if args.model:
        defaults = Completer.options_defaults()
        given = [
            _option_flag(name)
            for name, value in _model_options(args).items()
            if value != defaults[name]
        ]
        if given:
            raise UsageError(f"{', '.join(given)}: options of training; --model is trained")
        completer = Completer.load(args.model, mmap=True)
    else:
        completer, _ = _train(args, [args.log])
    _print_completions(completer, args.prev, args.prefix, args.k)
    return 0


def _eval(args: argparse.Namespace) -> int:
    completer = Completer.load(args.model, mmap=True)
    pairs: Iterable[tuple[str | tuple[str, ...], str]]
    if args.prev_only:
        pairs = session_pairs(args.log, gap_minutes=args.gap_minutes, errors=args.errors)
    else:
        pairs = session_histories(args.log, gap_minutes=args.gap_minutes, errors=args.errors)
    report = evaluate_batch(lambda p, x: completer.complete_batch(p, x, args.k), pairs, k=args.k)
    if report.cases == 0:
        raise UsageError(
            f"{args.log}: no case to score: the log has no two different consecutive queries "
            "in one session"
        )
    print(report.row())
    return 0


def _retrieve(args: argparse.Namespace) -> int:
    if not args.model and not (args.judgments and args.catalogue):
        raise UsageError("give --model, or both --judgments and --catalogue to train on")
    target = _writable_target(args.output, RETRIEVER_FILE) if args.output else None
    titles = read_catalogue(args.catalogue, errors=args.errors) if args.catalogue else {}
    if args.model:
        retriever = ProductRetriever.load(args.model, mmap=True)
    else:
        start = time.perf_counter()
        if args.min_relevance <= args.zero_relevance:
            raise UsageError(
                f"--min-relevance ({args.min_relevance}) must be above --zero-relevance "
                f"({args.zero_relevance})"
            )
        judged = list(read_judgments(args.judgments, errors=args.errors))
        missing = next((p for _, p, _ in judged if p not in titles), None)
        if missing is not None:
            raise UsageError(
                f"{args.judgments}: product {missing!r} is not in the catalogue {args.catalogue}"
            )
        relevant = sum(r >= args.min_relevance for _, _, r in judged)
        if not relevant:
            raise UsageError(
                f"{args.judgments}: no judgment reaches --min-relevance {args.min_relevance}"
            )
        retriever = ProductRetriever(relevant_gain=args.min_relevance - args.zero_relevance).fit(
            [q for q, _, _ in judged],
            [p for _, p, _ in judged],
            titles,
            relevance=[max(r - args.zero_relevance, 0.0) for _, _, r in judged],
        )
        print(
            f"trained on {len(judged):,} judgments ({relevant:,} relevant) "
            f"in {time.perf_counter() - start:.1f} s"
        )
        if target:
            print(f"saved to {retriever.save(target)}")
    # The titles kept with the retriever, unless a catalogue was given.
    titles = titles or {str(p): t for p, t in retriever.titles().items()}
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


def _serve(args: argparse.Namespace) -> int:
    host = "127.0.0.1" if args.host == "localhost" else args.host
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        raise UsageError(
            f"--host must be an IP address (or localhost), got {args.host!r}"
        ) from None
    if not loopback:
        print(
            f"xrcomplete: warning: listening on {host}: other machines can reach this server",
            file=sys.stderr,
        )
    admin_key = args.admin_key or os.environ.get("XRCOMPLETE_ADMIN_KEY") or None
    record_keys = list(args.record_key) + _env_keys("XRCOMPLETE_RECORD_KEYS")
    if args.record_key_file:
        try:
            text = Path(args.record_key_file).read_text(encoding="utf-8")
        except OSError as e:
            raise UsageError(f"--record-key-file: {e.strerror}: {args.record_key_file}") from None
        record_keys += [k.strip() for k in text.splitlines() if k.strip()]
    search_keys = list(args.search_key) + _env_keys("XRCOMPLETE_SEARCH_KEYS")

    # Not given: the model's live options (saved with it).
    hours = args.live_half_life_hours
    live = {
        "live_half_life": None if hours is None else hours * 3600.0,
        "live_cap": args.live_cap,
        "live_min_clients": args.live_min_clients,
    }

    def started(server: Server) -> None:
        print(
            f"xrcomplete: serving model {server.model_id} at {server.url}/ "
            "(Ctrl-C or SIGTERM stops, SIGHUP reloads the model)",
            flush=True,
        )

    serve(
        args.model,
        host=host,
        port=args.port,
        workers=args.workers,
        max_k=args.max_k,
        session_ttl=args.session_minutes * 60.0,
        max_sessions=args.max_sessions,
        session_history=args.session_history,
        watch=1.0 if args.watch else None,
        events=args.events,
        fsync=args.fsync,
        live_half_life=live["live_half_life"],
        live_cap=live["live_cap"],
        blocklist=args.blocklist,
        on_start=started,
        admin_key=admin_key,
        record_keys=record_keys,
        search_keys=search_keys,
        trusted_proxies=args.trusted_proxy,
        cors_origins=args.cors_origin,
        live_min_clients=live["live_min_clients"],
        record_rate=args.record_rate or None,
        record_burst=args.record_burst,
        complete_rate=args.complete_rate or None,
        complete_burst=args.complete_burst,
        header_timeout=args.header_timeout,
        max_connections=args.max_connections,
        products=args.products,
    )
    print("xrcomplete: stopped", flush=True)
    return 0


def _env_keys(name: str) -> list[str]:
    """Keys from an environment variable, separated by commas."""
    return [k.strip() for k in os.environ.get(name, "").split(",") if k.strip()]


def _compact(args: argparse.Namespace) -> int:
    target = _writable_target(args.output, MODEL_FILE)
    floor = args.live_min_clients or "the model's floor of"
    report = compact(
        args.model,
        args.events,
        target,
        retrain=args.retrain,
        min_clients=args.live_min_clients,
    )
    what = "trained on the log and" if args.retrain else "folded"
    print(
        f"{what} {report['folded']:,} of {report['searches']:,} searches into {target}; "
        f"{report['unknown']:,} of queries the model does not know were left out"
        + (" (--retrain LOG adds them)" if report["unknown"] else "")
        + (
            f"; {report['below_floor']:,} of queries fewer than {floor} clients searched were "
            "left out"
            if report["below_floor"]
            else ""
        )
        + (
            f"; {report['damaged']} damaged stretch(es) of the log skipped"
            if report["damaged"]
            else ""
        )
    )
    print(
        "a server serving it: POST /admin/reload with "
        f'{{"events_folded": {report["searches"]}}} drops the folded searches from its log'
    )
    return 0


def _whole(low: int, high: int | None = None) -> Callable[[str], int]:
    """An option's type: a whole number from ``low`` (to ``high``), else a one-line usage error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if high is None and value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        if high is not None and not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, got {value}")
        return value

    return parse


_positive = _whole(1)


def _minutes(text: str) -> float:
    try:
        value = float(text)
        check_gap(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text!r}: {err}") from None
    return value


def _number(allowed: Callable[[float], bool], what: str) -> Callable[[str], float]:
    """An option's type: a float for which ``allowed`` holds, else a one-line usage error."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not allowed(value):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value

    return parse


_count = _number(lambda v: 0 <= v < math.inf, "a finite number >= 0")
_relevance = _number(math.isfinite, "a finite number")


def _add_errors_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--errors",
        choices=ERRORS,
        default="strict",
        help="an unreadable row: stop with its file:line, or skip it and count it",
    )


def _option_value(declared: dict[str, Any]) -> Callable[[str], object]:
    """A model option's type: the text read as the option's type and checked by the core's
    declaration, else a one-line usage error."""
    name = declared["name"]
    number = "min_inclusive" in declared  # else a whole number (the other typed options)

    def parse(text: str) -> object:
        value: object = None
        if text != "None" or number:
            try:
                value = float(text) if number else int(text)
            except ValueError:
                what = "a number" if number else "a whole number"
                raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        try:
            # This option's own type and bounds: options that depend on each other are
            # checked together once all are read.
            return _core.Options.check_value(name, value)
        except (TypeError, ValueError) as err:
            raise argparse.ArgumentTypeError(str(err).removeprefix("invalid input: ")) from None

    return parse


def _switch(text: str) -> bool | str:
    """An option that is on, off, or chosen by the fit ("auto")."""
    values: dict[str, bool | str] = {"auto": "auto", "on": True, "off": False}
    if text not in values:
        raise argparse.ArgumentTypeError(f"must be auto, on or off, got {text!r}")
    return values[text]


def _option_flag(name: str) -> str:
    return "--" + name.lower().replace("_", "-")


def _add_training_options(parser: argparse.ArgumentParser) -> None:
    _add_model_options(parser)
    parser.add_argument(
        "--gap-minutes", type=_minutes, default=30.0, help="a new session after this long a gap"
    )
    _add_errors_option(parser)


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    """A flag per option of ``Completer``, with the core's default and doc."""
    group = parser.add_argument_group("model options (the Completer's; saved with the model)")
    for d in Completer.options():
        flag, name, default = _option_flag(d["name"]), d["name"], d["default"]
        if d["type"] == "True or False":
            group.add_argument(
                flag,
                dest=name,
                action=argparse.BooleanOptionalAction,
                default=default,
                help=d["doc"],
            )
        elif d["type"].startswith("True, False or"):
            group.add_argument(
                flag,
                dest=name,
                type=_switch,
                metavar="{auto,on,off}",
                default=default,
                help=d["doc"],
            )
        elif "choices" in d:
            group.add_argument(
                flag, dest=name, choices=d["choices"], default=default, help=d["doc"]
            )
        elif d["type"] == "a list of strings":
            group.add_argument(
                flag,
                dest=name,
                action="append",
                metavar="TERM",
                help=d["doc"] + " One a flag; repeat the flag for more (default: none).",
            )
        else:
            group.add_argument(
                flag,
                dest=name,
                type=_option_value(d),
                default=default,
                metavar="N",
                help=d["doc"],
            )


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The description as written; every option with a default shows it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        shown = default not in (None, "", False, argparse.SUPPRESS)
        if shown and action.option_strings and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    """A usage error is one line, like every other error, with where to find the usage.
    Options are never abbreviated (with a flag per model option, abbreviations collide)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="xrcomplete", description=__doc__, formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"xrcomplete {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    quick = sub.add_parser(
        "quickstart",
        help="train and score on the bundled AOL slice",
        formatter_class=_HelpFormatter,
    )
    quick.add_argument("-k", type=_positive, default=5, help="completions shown per prefix")
    quick.add_argument(
        "--products",
        metavar="DIR",
        help="instead, suggestions and products of one shop, trained in seconds on a slice of "
        f"the Home Depot product search data in DIR ({' and '.join(SHOP_FILES)}; not "
        "bundled: see the README)",
    )
    quick.add_argument(
        "-o",
        "--output",
        default="shop",
        help="with --products: the folder the two models are saved in",
    )
    _add_training_options(quick)
    quick.set_defaults(run=_quickstart)

    train = sub.add_parser(
        "train", help="train a completer on a query log, save it", formatter_class=_HelpFormatter
    )
    train.add_argument(
        "logs",
        nargs="+",
        metavar="log",
        help="log in AOL's layout (AnonID, Query, QueryTime); several files are one log, in order",
    )
    train.add_argument("-o", "--output", required=True, help="model file or directory")
    train.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="read the files and train the matcher's subtrees on this Ray cluster ('auto', "
        "'ray://head:10001'; 'local': start one here); the same model "
        "(pip install 'xrcomplete[ray]')",
    )
    train.add_argument(
        "--pairs",
        action="store_true",
        help="the input is tab-separated (previous query, next query) pairs, not a log",
    )
    _add_training_options(train)
    train.set_defaults(run=_train_command)

    complete = sub.add_parser(
        "complete", help="complete prefixes after a previous query", formatter_class=_HelpFormatter
    )
    complete.add_argument("prefix", nargs="+", help="prefixes to complete")
    source = complete.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="a completer saved by 'xrcomplete train'")
    source.add_argument("--log", help="train on this log first (AOL's layout)")
    complete.add_argument(
        "--prev",
        action="append",
        default=[],
        help="the session's searches so far, oldest first (repeat --prev; the last is the "
        "previous query)",
    )
    complete.add_argument("-k", type=_positive, default=10, help="completions per prefix")
    _add_training_options(complete)
    complete.set_defaults(run=_complete)

    evaluate_ = sub.add_parser(
        "eval",
        help="MRR@k of a saved completer on a log's sessions",
        formatter_class=_HelpFormatter,
    )
    evaluate_.add_argument("model", help="a completer saved by 'xrcomplete train'")
    evaluate_.add_argument("log", help="log in AOL's layout to score on")
    evaluate_.add_argument("-k", type=_positive, default=10, help="completions per case")
    evaluate_.add_argument(
        "--prev-only",
        action="store_true",
        help="give each case the previous query alone (the PECOS protocol), not its session",
    )
    evaluate_.add_argument(
        "--gap-minutes", type=_minutes, default=30.0, help="a new session after this long a gap"
    )
    _add_errors_option(evaluate_)
    evaluate_.set_defaults(run=_eval)
    retrieve = sub.add_parser(
        "retrieve", help="product retrieval: a query -> products", formatter_class=_HelpFormatter
    )
    retrieve.add_argument("query", nargs="+", help="customer queries")
    retrieve.add_argument("--model", help="a retriever saved by a previous --output")
    retrieve.add_argument("--judgments", help="train on: query, product id, relevance (TSV)")
    retrieve.add_argument("--catalogue", help="product id, title (TSV); titles are shown too")
    retrieve.add_argument(
        "--min-relevance", type=_relevance, default=2.33, help="judgments this high are relevant"
    )
    retrieve.add_argument(
        "--zero-relevance",
        type=_relevance,
        default=1.0,
        help="the grade of 'not relevant': a judgment's gain is its grade minus this",
    )
    _add_errors_option(retrieve)
    retrieve.add_argument("-o", "--output", help="save the trained retriever here")
    retrieve.add_argument("-k", type=_positive, default=10, help="products per query")
    retrieve.set_defaults(run=_retrieve)

    serve_ = sub.add_parser(
        "serve",
        help="serve a saved completer over HTTP (JSON API and a demo page)",
        formatter_class=_HelpFormatter,
    )
    serve_.add_argument("model", help="a completer saved by 'xrcomplete train'")
    serve_.add_argument(
        "--products",
        metavar="RETRIEVER",
        help="a product retriever saved by 'xrcomplete retrieve --output', served at "
        "/v1/products and reloaded with the model",
    )
    serve_.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (other than loopback: say so)"
    )
    serve_.add_argument(
        "--port", type=_whole(0, 65535), default=8000, help="port (0: any free one)"
    )
    serve_.add_argument(
        "--workers",
        type=_whole(0, 1024),
        default=0,
        help="threads answering requests (0: one per core)",
    )
    serve_.add_argument(
        "--max-k", type=_positive, default=100, help="the largest k a request may ask"
    )
    serve_.add_argument(
        "--session-minutes",
        type=_minutes,
        default=30.0,
        help="a session's last search is forgotten after this long without a search",
    )
    serve_.add_argument(
        "--max-sessions", type=_positive, default=100_000, help="sessions remembered at most"
    )
    serve_.add_argument(
        "--session-history",
        type=_positive,
        default=5,
        help="searches of each session remembered (the completer uses the last "
        "session_history of them, its own option)",
    )
    serve_.add_argument(
        "--watch",
        action="store_true",
        help="reload the model when its file changes (checked every second)",
    )
    serve_.add_argument(
        "--events",
        help="write-ahead log of recorded searches: appended before each answer, replayed at start",
    )
    serve_.add_argument(
        "--fsync",
        choices=["always", "never"],
        default="always",
        help="sync the event log before answering (always), or leave it to the system (never)",
    )
    serve_.add_argument(
        "--live-half-life-hours",
        type=_number(lambda v: v > 0, "a positive number of hours"),
        help="recorded searches count half as much after this long (default: the model's "
        "live_half_life, 24 hours unless trained otherwise)",
    )
    serve_.add_argument(
        "--live-cap",
        type=_positive,
        help="distinct recorded queries held at most (default: the model's live_cap)",
    )
    serve_.add_argument(
        "--blocklist",
        help="file of terms blocked at run time (POST /admin/blocklist): kept across restarts",
    )
    keys = serve_.add_argument_group(
        "facing the internet (README § Deploying)",
        "keys are at least 16 characters; prefer the environment or a file to the command "
        "line, which other users of the machine can read",
    )
    keys.add_argument(
        "--admin-key",
        metavar="KEY",
        help="needed (Authorization: Bearer KEY) by /admin/*, which are off without one "
        "(default: $XRCOMPLETE_ADMIN_KEY)",
    )
    keys.add_argument(
        "--record-key",
        metavar="KEY",
        action="append",
        default=[],
        help="lets the site's backend record searches with count, time and user (repeatable; "
        "also $XRCOMPLETE_RECORD_KEYS, comma-separated)",
    )
    keys.add_argument("--record-key-file", metavar="FILE", help="record keys, one a line")
    keys.add_argument(
        "--search-key",
        metavar="KEY",
        action="append",
        default=[],
        help="when given, completions and searches need a key (repeatable; also "
        "$XRCOMPLETE_SEARCH_KEYS)",
    )
    keys.add_argument(
        "--trusted-proxy",
        metavar="CIDR",
        action="append",
        default=[],
        help="a reverse proxy whose X-Forwarded-For names the client (repeatable)",
    )
    keys.add_argument(
        "--cors-origin",
        metavar="ORIGIN",
        action="append",
        default=[],
        help="a site (scheme://host[:port], or *) whose pages may call /v1/* (repeatable)",
    )
    keys.add_argument(
        "--live-min-clients",
        type=_whole(1, 100),
        help="a query searched only by strangers is suggested once this many clients searched it "
        "(default: the model's live_min_clients)",
    )
    keys.add_argument(
        "--record-rate",
        type=_number(lambda v: v >= 0, "a number >= 0"),
        default=60.0,
        help="searches a client may record a minute without a record key (0: no limit)",
    )
    keys.add_argument("--record-burst", type=_whole(1, 10_000), default=10, help="... at once")
    keys.add_argument(
        "--complete-rate",
        type=_number(lambda v: v >= 0, "a number >= 0"),
        default=0.0,
        help="completions a client may ask a minute without a record key (0: no limit)",
    )
    keys.add_argument("--complete-burst", type=_whole(1, 10_000), default=10, help="... at once")
    keys.add_argument(
        "--header-timeout",
        type=_number(lambda v: v > 0, "a positive number of seconds"),
        default=30.0,
        help="seconds a client has to send a whole request (also idle kept-alive connections)",
    )
    keys.add_argument(
        "--max-connections", type=_positive, default=10_000, help="connections open at most"
    )
    serve_.set_defaults(run=_serve)

    compact_ = sub.add_parser(
        "compact",
        help="fold a server's event log into a saved completer's counts",
        formatter_class=_HelpFormatter,
    )
    compact_.add_argument("model", help="a completer saved by 'xrcomplete train'")
    compact_.add_argument("events", help="the event log of 'xrcomplete serve --events'")
    compact_.add_argument("-o", "--output", required=True, help="model file or directory")
    compact_.add_argument(
        "--retrain",
        metavar="LOG",
        help="train a new completer (default options) on this log and the searches instead",
    )
    compact_.add_argument(
        "--live-min-clients",
        type=_whole(1, 100),
        help="leave out searches of queries fewer clients searched (as the server's floor; "
        "default: the model's live_min_clients)",
    )
    compact_.set_defaults(run=_compact)
    return parser


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: object = None,
    line: str | None = None,
) -> None:
    """Warnings (rows skipped with --errors skip) as one line, not Python's two."""
    print(f"xrcomplete: warning: {message}", file=sys.stderr)


def _quiet_stdout() -> None:
    """After a broken pipe: what is still buffered for stdout goes nowhere, quietly (else
    Python reports the failed flush at exit)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status (0, 2 for any error; 141 when the reader
    of stdout went away, as a Unix tool killed by SIGPIPE; 130 on Ctrl-C)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = _show_warning
            code: int = args.run(args)
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout()
        return 141
    except KeyboardInterrupt:
        print("xrcomplete: interrupted", file=sys.stderr)
        return 130
    except (OSError, ValueError, TypeError, MemoryError, ImportError) as err:
        print(f"xrcomplete: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # a bug: still one line, never a traceback
        print(
            f"xrcomplete: internal error: {type(err).__name__}: {err} "
            "(please report it, with the command)",
            file=sys.stderr,
        )
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
