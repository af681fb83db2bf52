"""Reading query logs: events, sessions, and (previous query, next query) pairs.

The AOL layout: tab-separated ``AnonID, Query, QueryTime`` (``YYYY-MM-DD HH:MM:SS``) with an
optional header, one row per query event, sorted by user then time. Everything streams: a log
larger than memory is read one line at a time.

The evaluation protocol of the project (see the data README): a session is a user's events in
time order, a new one after a gap of more than 30 minutes; pairs are consecutive queries of a
session with ``next != prev``, lower-cased and stripped.
"""

from __future__ import annotations

import io
import math
import os
import random
import re
import warnings
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import BinaryIO, TypeVar, Union

import numpy as np

from xrcomplete import _core

PathLike = Union[str, Path]
T = TypeVar("T")

#: The bundled slice of the AOL log (research use only; see ``xrcomplete/data/README.md``).
SAMPLE_TRAIN = "aol_sample_train.tsv"
SAMPLE_VALID = "aol_sample_valid.tsv"


def sample_path(name: str = SAMPLE_TRAIN) -> Path:
    """The path of a bundled sample file (``SAMPLE_TRAIN`` or ``SAMPLE_VALID``)."""
    if name not in (SAMPLE_TRAIN, SAMPLE_VALID):
        raise ValueError(
            f"no bundled sample named {name!r}; use {SAMPLE_TRAIN!r} or {SAMPLE_VALID!r}"
        )
    path = Path(str(resources.files("xrcomplete") / "data" / name))
    if not path.is_file():
        raise FileNotFoundError(f"bundled sample {name!r} is missing from the installation: {path}")
    return path


def normalize_query(query: str) -> str:
    """Lower-cases and strips a query, as the evaluation protocol does (Python's ``str.lower``
    and ``str.strip``; computed by the compiled core, the same function the completer uses)."""
    return _core.normalize_query(query)


class LogFormatError(ValueError):
    """A row of an input file that cannot be read, named ``path:line: reason``.

    ``path``, ``line`` (1-based) and ``reason`` are attributes too.
    """

    def __init__(self, path: str, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")
        self.path, self.line, self.reason = path, line, reason

    def __reduce__(self) -> tuple[type[LogFormatError], tuple[str, int, str]]:
        return type(self), (self.path, self.line, self.reason)


class SkippedRowsWarning(UserWarning):
    """Rows of an input file were dropped (``errors="skip"``); the message counts them."""


#: What a reader does with a row it cannot read: raise ``LogFormatError``, or drop it and count.
ERRORS = ("strict", "skip")
#: Reasons kept by a ``ReadReport`` (the count is exact).
MAX_EXAMPLES = 5


@dataclass
class ReadReport:
    """What a reader met in a file: data rows read, rows dropped (``errors="skip"``) with the
    first few reasons, and how far it is (bytes, for a progress line). Pass one to a reader to
    see it as the file is read."""

    path: str = ""
    rows: int = 0
    skipped: int = 0
    examples: list[str] = field(default_factory=list)
    bytes_read: int = 0
    size: int = 0

    def absorb(self, other: ReadReport) -> None:
        """Adds what ``other`` met (another file of the same log)."""
        self.rows += other.rows
        self.skipped += other.skipped
        self.examples.extend(other.examples[: MAX_EXAMPLES - len(self.examples)])
        self.bytes_read += other.bytes_read
        self.size += other.size

    def summary(self) -> str:
        """One line: how many rows were skipped, and the first reason."""
        first = ""
        if self.examples:
            first = f" (the first at line {self.examples[0].removeprefix(self.path + ':')})"
        total = self.rows + self.skipped
        return f"{self.path}: skipped {self.skipped:,} unreadable rows of {total:,}{first}"


class _BadRow(Exception):
    """A row's reason to be refused, raised by a row parser; the reader adds the place."""


_SURROGATE = re.compile("[\udc80-\udcff]")
_PROGRESS_EVERY = 8192  # lines between updates of ReadReport.bytes_read


def _decoded(raw: BinaryIO) -> io.TextIOWrapper:
    """UTF-8 lines of ``raw``, a leading byte-order mark dropped, bad bytes kept as surrogates."""
    return io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="")


def _check_errors(errors: str) -> None:
    if errors not in ERRORS:
        raise ValueError(f"errors must be one of {ERRORS}, got {errors!r}")


def _records(
    path: PathLike,
    parse: Callable[[list[str]], T],
    is_header: Callable[[list[str]], bool],
    errors: str = "strict",
    report: ReadReport | None = None,
) -> Iterator[T]:
    """``parse(fields)`` of every data line of a tab-separated UTF-8 file, streaming.

    A byte-order mark before the first line is dropped, a first line that ``is_header`` says is
    a header is skipped, and so are blank lines. Lines end at ``\\n``, ``\\r\\n`` or ``\\r``.
    A line that is not valid UTF-8, or that ``parse`` refuses by raising ``_BadRow``, raises
    ``LogFormatError`` naming it, or with ``errors="skip"`` is counted in ``report`` and dropped
    (a ``SkippedRowsWarning`` says how many when the file is done).
    """
    _check_errors(errors)
    report = report if report is not None else ReadReport()
    report.path = str(path)
    # surrogateescape: a bad byte becomes a lone surrogate in its line, so that line alone fails.
    with open(path, "rb") as raw, _decoded(raw) as f:
        report.size = os.fstat(raw.fileno()).st_size
        for lineno, line in enumerate(f, start=1):
            if lineno % _PROGRESS_EVERY == 0:
                report.bytes_read = raw.tell()
            text = line.rstrip("\r\n")
            try:
                if not text.isascii() and (bad := _SURROGATE.search(text)):
                    byte = ord(bad.group()) - 0xDC00
                    raise _BadRow(
                        f"invalid UTF-8 (byte 0x{byte:02x} at character {bad.start() + 1})"
                    )
                fields = text.split("\t")
                if fields == [""] or (lineno == 1 and is_header(fields)):
                    continue
                record = parse(fields)
            except _BadRow as err:
                error = LogFormatError(str(path), lineno, str(err))
                if errors == "strict":
                    raise error from None
                report.skipped += 1
                if len(report.examples) < MAX_EXAMPLES:
                    report.examples.append(str(error))
                continue
            report.rows += 1
            yield record
        report.bytes_read = report.size
    if report.skipped:
        warnings.warn(report.summary(), SkippedRowsWarning, stacklevel=2)


def _shown(fields: list[str]) -> str:
    """A row as it was, for an error message (cut to 80 characters)."""
    line = "\t".join(fields)
    return repr(line if len(line) <= 80 else line[:80] + "…")


def _log_fields(fields: list[str], columns: int) -> list[str]:
    if len(fields) < columns:
        raise _BadRow(f"expected tab-separated AnonID, Query, QueryTime; got {_shown(fields)}")
    return fields


def _is_log_header(fields: list[str]) -> bool:
    return fields[0] == "AnonID"


def read_queries(
    path: PathLike, *, errors: str = "strict", report: ReadReport | None = None
) -> Iterator[str]:
    """Yields the normalised, non-empty queries of an AOL-layout log, one per event, streaming.

    A header line (first field ``AnonID``) is skipped, as is a UTF-8 byte-order mark. A row
    without a query column, or not valid UTF-8, raises ``LogFormatError`` naming ``path:line``;
    with ``errors="skip"`` such rows are dropped and counted (in ``report``, and in a
    ``SkippedRowsWarning``).
    """
    rows = _records(path, lambda f: _log_fields(f, 2)[1], _is_log_header, errors, report)
    for query in rows:
        query = normalize_query(query)
        if query:
            yield query


def _event(fields: list[str]) -> tuple[str, str, datetime] | None:
    _log_fields(fields, 3)
    query = normalize_query(fields[1])
    if not query:
        return None
    try:
        when = datetime.fromisoformat(fields[2].strip())
    except ValueError:
        raise _BadRow(f"QueryTime {fields[2]!r} is not YYYY-MM-DD HH:MM:SS") from None
    return fields[0], query, when


def read_events(
    path: PathLike, *, errors: str = "strict", report: ReadReport | None = None
) -> Iterator[tuple[str, str, datetime]]:
    """Yields (user, normalised query, time) for every event with a non-empty query.

    Rows with fewer than three columns, an unparsable time or invalid UTF-8 raise
    ``LogFormatError`` naming ``path:line``, or with ``errors="skip"`` are dropped and counted.
    """
    for event in _records(path, _event, _is_log_header, errors, report):
        if event is not None:
            yield event


#: The longest gap between two searches of one session that a time difference can hold.
MAX_GAP_MINUTES = timedelta.max.total_seconds() / 60


def check_gap(gap_minutes: float) -> None:
    """Refuses a session gap that is not a number of minutes > 0 (and below ``MAX_GAP_MINUTES``:
    ``float("inf")`` would overflow the time arithmetic)."""
    if not 0 < gap_minutes <= MAX_GAP_MINUTES:
        raise ValueError(
            f"gap_minutes must be > 0 and at most {MAX_GAP_MINUTES:.3g}, got {gap_minutes}"
        )


def session_pairs(
    path: PathLike,
    gap_minutes: float = 30.0,
    first_queries: bool = False,
    *,
    errors: str = "strict",
    report: ReadReport | None = None,
) -> Iterator[tuple[str, str]]:
    """Yields (previous query, next query) for consecutive events of one session, ``next !=
    previous``. A session ends at a new user or after a gap of more than ``gap_minutes``.

    With ``first_queries``, the first query of every session also comes as ``("", query)``: a
    completer learns what users type with no previous query. (The evaluation protocol uses the
    pairs only.) ``errors`` and ``report``: as ``read_events``.
    """
    check_gap(gap_minutes)
    _check_errors(errors)
    yield from session_pairs_of(
        read_events(path, errors=errors, report=report), gap_minutes, first_queries
    )


def session_pairs_of(
    events: Iterable[tuple[str, str, datetime]], gap_minutes: float, first_queries: bool = False
) -> Iterator[tuple[str, str]]:
    """``session_pairs`` of (user, query, time) events already read (``read_events``)."""
    gap = timedelta(minutes=gap_minutes)
    last: tuple[str, str, datetime] | None = None
    for user, query, when in events:
        same_session = last is not None and last[0] == user and when - last[2] <= gap
        if same_session and last is not None and query != last[1]:
            yield last[1], query
        elif not same_session and first_queries:
            yield "", query
        last = (user, query, when)


def session_histories(
    path: PathLike,
    gap_minutes: float = 30.0,
    *,
    errors: str = "strict",
    report: ReadReport | None = None,
) -> Iterator[tuple[tuple[str, ...], str]]:
    """``session_pairs``, each with the whole session before it: ``(history, next)``, where
    ``history`` is the session's earlier queries, oldest first (its last is the previous
    query; a query repeated right away counts once, as in the pairs)."""
    check_gap(gap_minutes)
    _check_errors(errors)
    yield from session_histories_of(read_events(path, errors=errors, report=report), gap_minutes)


def session_histories_of(
    events: Iterable[tuple[str, str, datetime]], gap_minutes: float
) -> Iterator[tuple[tuple[str, ...], str]]:
    """``session_histories`` of (user, query, time) events already read (``read_events``)."""
    gap = timedelta(minutes=gap_minutes)
    last: tuple[str, str, datetime] | None = None
    history: list[str] = []
    for user, query, when in events:
        same_session = last is not None and last[0] == user and when - last[2] <= gap
        if not same_session:
            history = [query]
        elif query != history[-1]:
            yield tuple(history), query
            history.append(query)
        last = (user, query, when)


#: An event as a log shard remembers its first and last: (user, query, time), the time in seconds
#: of the log's clock (its naive date and time read as UTC: differences are those of the log).
Event = tuple[str, str, float]

_EPOCH = datetime(1970, 1, 1)


@dataclass
class LogShard:
    """What one file of a log gives training (``read_log_shard``): its session pairs as ids
    into ``queries``, each with the time of its next query, how often each query was searched,
    and who searched it; the file's first and last events, so that a session running on from
    the file before can be joined (``first_pair_joins``)."""

    #: The distinct queries of the pairs, in the order pairs first name them (next, then prev).
    queries: list[str] = field(default_factory=list)
    #: Per pair: the previous query's id (-1: the session's first query) and the next query's.
    prev_ids: array[int] = field(default_factory=lambda: array("q"))
    next_ids: array[int] = field(default_factory=lambda: array("q"))
    #: Per pair: when its next query was searched (seconds since the epoch).
    times: array[float] = field(default_factory=lambda: array("d"))
    #: How often each query was searched, in the order of first search.
    counts: dict[str, float] = field(default_factory=dict)
    #: The first ``floor`` distinct users of each query, in order (empty without a floor).
    users: dict[str, list[str]] = field(default_factory=dict)
    first: Event | None = None
    last: Event | None = None
    report: ReadReport = field(default_factory=ReadReport)
    #: When the pairs stay where the file was read (``xrcomplete.distributed``): the engine's
    #: handle to them (``prev_ids``, ``next_ids`` and ``times`` are then empty).
    held: object | None = None

    def first_pair_joins(self, before: Event | None, gap_minutes: float) -> bool:
        """Whether this file's first event continues the session of ``before`` (the last event
        of the file before): then its first pair is not a session's first query."""
        return (
            before is not None
            and self.first is not None
            and before[0] == self.first[0]
            and self.first[2] - before[2] <= gap_minutes * 60
        )


def global_pairs(
    ids: np.ndarray,
    prev_local: np.ndarray,
    next_local: np.ndarray,
    times: np.ndarray,
    before: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A shard's pairs (ids into its ``queries``, -1: none) as ids of the whole log (``ids``:
    the id of each of its queries); ``before`` (>= 0): the previous query of its first pair,
    when its session runs on from the file before (the pair is dropped when it is the same
    query)."""
    nxt = ids[next_local]
    prev = np.where(prev_local >= 0, ids[np.maximum(prev_local, 0)], -1)
    if before >= 0 and len(nxt):
        if nxt[0] == before:
            return prev[1:], nxt[1:], times[1:]
        prev[0] = before
    return prev, nxt, times


def admit_users(seen: list[str], users: Iterable[str], floor: int) -> None:
    """Appends to ``seen`` the ``users`` it does not hold, in order, until it holds ``floor``:
    the first ``floor`` distinct users of a query (all a privacy floor needs to decide)."""
    for user in users:
        if len(seen) >= floor:
            return
        if user not in seen:
            seen.append(user)


def read_log_shard(
    path: PathLike,
    gap_minutes: float = 30.0,
    *,
    errors: str = "strict",
    floor: int = 0,
    report: ReadReport | None = None,
    tick: Callable[[int], None] | None = None,
) -> LogShard:
    """Reads one file of a log (AOL's layout, as ``read_events``) into a ``LogShard``: the
    pairs of its sessions (with first queries, as ``session_pairs(..., first_queries=True)``),
    the searches of each query and up to ``floor`` of its users. ``tick(pairs read)`` is called
    now and then (a progress line); ``report`` follows the reading. Files of one log read this
    way, in any order and on any machine, merge into what reading them in a row gives."""
    check_gap(gap_minutes)
    shard = LogShard(report=report if report is not None else ReadReport())
    ids: dict[str, int] = {}
    last: list[tuple[Event, float]] = []  # the last event, and its time as a timestamp

    def id_of(query: str) -> int:
        return ids.setdefault(query, len(ids))

    def counted() -> Iterator[tuple[str, str, datetime]]:
        for event in read_events(path, errors=errors, report=shard.report):
            user, query, when = event
            shard.counts[query] = shard.counts.get(query, 0.0) + 1
            if floor:
                admit_users(shard.users.setdefault(query, []), (user,), floor)
            stamp = (user, query, (when - _EPOCH).total_seconds())
            if shard.first is None:
                shard.first = stamp
            last[:] = [(stamp, when.timestamp())]
            yield event

    for prev, nxt in session_pairs_of(counted(), gap_minutes, first_queries=True):
        if tick is not None and len(shard.next_ids) % 4096 == 0:
            tick(len(shard.next_ids))
        shard.next_ids.append(id_of(nxt))
        shard.prev_ids.append(id_of(prev) if prev else -1)
        shard.times.append(last[0][1])
    shard.last = last[0][0] if last else None
    shard.queries = list(ids)
    return shard


def _pair(fields: list[str]) -> tuple[str, str] | None:
    if len(fields) != 2:
        raise _BadRow(f"expected 'previous query<TAB>next query'; got {_shown(fields)}")
    nxt = normalize_query(fields[1])
    return (normalize_query(fields[0]), nxt) if nxt else None


def read_pairs(
    path: PathLike, *, errors: str = "strict", report: ReadReport | None = None
) -> Iterator[tuple[str, str]]:
    """Yields (previous query, next query) from a file of tab-separated pairs, one per line,
    normalised; an empty previous query marks a session's first query. A header line
    ``prev<TAB>next`` is skipped, as are lines whose next query is blank; a line without a tab
    raises ``LogFormatError`` naming it (``errors="skip"``: dropped and counted). Streams."""
    for pair in _records(path, _pair, lambda f: f[:2] == ["prev", "next"], errors, report):
        if pair is not None:
            yield pair


def prefix_examples(
    pairs: Iterable[tuple[str, str]], per_pair: int = 3, seed: int = 0
) -> Iterator[tuple[str, str, str]]:
    """Yields training examples (previous query, prefix of next, next) from pairs: for each pair,
    ``per_pair`` distinct prefix lengths drawn uniformly from 1..len(next) (all of them when the
    next query is shorter). Deterministic given ``seed``; streams."""
    if per_pair < 1:
        raise ValueError(f"per_pair must be >= 1, got {per_pair}")
    rng = random.Random(seed)
    for prev, nxt in pairs:
        lengths = range(1, len(nxt) + 1)
        chosen = lengths if len(nxt) <= per_pair else sorted(rng.sample(lengths, per_pair))
        for n in chosen:
            yield prev, nxt[:n], nxt


def _judgment(fields: list[str]) -> tuple[str, str, float]:
    try:
        query, product, relevance = fields
        value = float(relevance)
    except ValueError:
        raise _BadRow(
            f"expected 'query<TAB>product id<TAB>relevance'; got {_shown(fields)}"
        ) from None
    if not math.isfinite(value):
        raise _BadRow(f"relevance {relevance!r} is not a finite number")
    return normalize_query(query), product, value


def read_judgments(
    path: PathLike, *, errors: str = "strict", report: ReadReport | None = None
) -> Iterator[tuple[str, str, float]]:
    """Yields (query, product id, relevance) from a tab-separated file of relevance judgments
    (``search_term, product_uid, relevance``, as the Home Depot data; header optional). Queries
    are normalised. A malformed line raises ``LogFormatError`` naming it (``errors="skip"``:
    dropped and counted). Streams."""
    return _records(path, _judgment, lambda f: f[0] == "search_term", errors, report)


def _product(fields: list[str]) -> tuple[str, str]:
    if len(fields) != 2:
        raise _BadRow(f"expected 'product id<TAB>title'; got {_shown(fields)}")
    return fields[0], fields[1]


def read_catalogue(
    path: PathLike, *, errors: str = "strict", report: ReadReport | None = None
) -> dict[str, str]:
    """Product id -> title, from a tab-separated file (``product_uid, product_title``, header
    optional). A malformed line raises ``LogFormatError`` naming it (``errors="skip"``: dropped
    and counted)."""
    return dict(_records(path, _product, lambda f: f[0] == "product_uid", errors, report))
