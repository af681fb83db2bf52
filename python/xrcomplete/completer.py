"""Session-aware query autocompletion: train on a search log, then ``complete(prev, prefix)``.

>>> pairs = [("", "home depot"), ("cheap flights", "hotels in boston")] * 5
>>> completer = Completer(index="trie", progress=False).fit(pairs)
>>> [query for query, score in completer.complete("cheap flights", "ho", k=2)]
['hotels in boston', 'home depot']

One call does everything in Rust, with the GIL released: normalise both strings, gather
candidates from every source (the XR-Linear beam restricted to the label-id range of the queries
that start with the prefix, the most popular queries of that range, the queries seen after the
previous query, and queries composed by a word language model that copies from the previous
query), and order them by the ranking stage learned from the log's later searches. Every answer
starts with the normalised prefix, and says whether it is a query of the log or composed
(``Completion.source``).
"""

from __future__ import annotations

import inspect
import math
import os
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, Union

import numpy as np

from xrcomplete import _core
from xrcomplete.data import (
    Event,
    LogShard,
    PathLike,
    ReadReport,
    admit_users,
    check_gap,
    global_pairs,
    read_log_shard,
)
from xrcomplete.distributed import Engine, PairShards, RayEngine
from xrcomplete.progress import ProgressLine, bar, with_progress
from xrcomplete.text import NotFittedError, TfidfVectorizer

if TYPE_CHECKING:
    from typing_extensions import Unpack


class Completion(tuple[str, float]):
    """One suggestion: a ``(query, score)`` pair (scores: higher is better, not probabilities),
    with ``source``: ``"seen"`` for a query of the log, ``"composed"`` for one the language
    model put together from the log's words, ``"live"`` for one searched since the model was
    built (``Completer.record``), ``"session"`` for one of the session's own searches (given as
    ``prev``) that is in neither, ``"fuzzy"`` for one (seen or composed) that starts with a
    corrected prefix (a typo fixed) instead of the typed one; and ``matched``: the start of the
    query that the typed prefix (for a fuzzy one, the corrected prefix) covers."""

    source: str
    matched: str

    def __new__(
        cls, query: str, score: float, source: str = "seen", matched: int | None = None
    ) -> Completion:
        made = super().__new__(cls, (query, score))
        made.source = source
        made.matched = query if matched is None else query[:matched]
        return made

    @property
    def query(self) -> str:
        """The suggested query."""
        return self[0]

    @property
    def score(self) -> float:
        """Its ranking score."""
        return self[1]

    def __getnewargs__(self) -> tuple[str, float, str, int]:
        return (self[0], self[1], self.source, len(self.matched))


@dataclass(frozen=True)
class Candidate:
    """A candidate of ``Completer.explain``: the query, its ranking score, where it came from
    (``"seen"``, ``"composed"``, ``"live"``, ``"session"`` or ``"fuzzy"``) and its ranking
    features by name."""

    query: str
    score: float
    source: str
    features: dict[str, float]


_new_tuple = tuple.__new__


#: What a completion is typed after: the previous query (``""``: none), or the session's
#: searches so far, oldest first (the last is the previous query).
History = Union[str, Sequence[str]]


def _previous(history: History) -> str:
    """The previous query of ``history`` (``""``: none)."""
    if isinstance(history, str):
        return history
    if not isinstance(history, Sequence):
        raise TypeError(f"prev must be a str or a sequence of str, got {type(history).__name__}")
    return history[-1] if len(history) else ""


def _completions(found: list[tuple[str, float, str, int]]) -> list[Completion]:
    # Completion(q, s, src, n), without the two Python calls of its __new__: this runs on every
    # keystroke, and the calls cost more than the rest of the conversion (2 of 5 µs for ten).
    out = []
    for q, s, src, n in found:
        made = _new_tuple(Completion, (q, s))
        made.source = src
        made.matched = q[:n]
        out.append(made)
    return out


_DRAW_EVERY = 4096  # pairs read between looks at the progress line
#: The file a completer is saved to when ``save`` is given a directory.
MODEL_FILE = "completer.xrc"
_INDEXES = ("kmeans", "trie", "hybrid")


class _UserSets:
    """Who searched each query (``fit_log``; at least up to the privacy floor), read once the
    sets are filled."""

    def __init__(self, sets: Mapping[str, Iterable[str]]) -> None:
        self._sets = sets

    def csr(self, ids: _core.QueryIds) -> tuple[np.ndarray, np.ndarray]:
        """The sets' members as integers, per query id of ``ids``: (offsets, members)."""
        number: dict[str, int] = {}
        per_query: list[list[int]] = [[] for _ in range(len(ids))]
        for query, members in self._sets.items():
            at = ids.get(query)
            if at is not None:
                per_query[at] = [number.setdefault(m, len(number)) for m in sorted(members)]
        offsets = np.zeros(len(ids) + 1, dtype=np.uint64)
        offsets[1:] = np.cumsum([len(m) for m in per_query], dtype=np.uint64)
        flat = np.fromiter(
            (u for m in per_query for u in m), dtype=np.uint32, count=int(offsets[-1])
        )
        return offsets, flat


class _PairTable:
    """The pairs of a fit as ids: the distinct queries in order of first use (next query, then
    previous), and per pair the two ids (-1: no previous query) and, when known, a time."""

    def __init__(self) -> None:
        self.ids = _core.QueryIds()
        self._prev: list[np.ndarray] = []
        self._next: list[np.ndarray] = []
        self._times: list[np.ndarray] = []
        self._timed = True
        self._row_prev, self._row_next, self._row_times = array("q"), array("q"), array("d")
        self._n = 0
        #: The pairs of files read elsewhere, left where they were read (before the pairs
        #: here): (the engine's handle, the id of each of the file's queries, the previous
        #: query of its first pair or -1).
        self.held: list[tuple[object, np.ndarray, int]] = []

    def __len__(self) -> int:
        return self._n

    def id_of(self, query: str) -> int:
        return self.ids.id_of(query)

    def add(self, prev: str, nxt: str, time: float | None = None) -> None:
        """One pair of queries as given (normalised here; a blank next query is skipped)."""
        nxt = _core.normalize_query(nxt)
        if not nxt:
            return
        prev = _core.normalize_query(prev)
        self._row_next.append(self.id_of(nxt))
        self._row_prev.append(self.id_of(prev) if prev else -1)
        if time is None:
            self._timed = False
        else:
            self._row_times.append(time)
        self._n += 1

    def add_shard(self, shard: LogShard, joined: str | None) -> None:
        """The pairs of a file of the log; ``joined``: the previous query of its first pair,
        when its session runs on from the file before (the pair is dropped when that is the
        same query)."""
        self._flush()
        local = self._ids_of(shard)
        before = -1 if joined is None else self.id_of(joined)
        if shard.held is not None:
            if self._n:
                raise ValueError("pairs held elsewhere come before any pair given here")
            self.held.append((shard.held, local, before))
            return
        prev, nxt, times = global_pairs(
            local,
            np.frombuffer(shard.prev_ids, dtype=np.int64),
            np.frombuffer(shard.next_ids, dtype=np.int64),
            np.frombuffer(shard.times, dtype=np.float64),
            before,
        )
        self._next.append(nxt)
        self._prev.append(prev)
        self._times.append(times)
        self._n += len(nxt)

    def _ids_of(self, shard: LogShard) -> np.ndarray:
        """The id of each query of ``shard`` (numbered here if new)."""
        return np.fromiter(
            (self.id_of(q) for q in shard.queries), dtype=np.int64, count=len(shard.queries)
        )

    def _flush(self) -> None:
        if self._row_next:
            self._next.append(np.frombuffer(self._row_next, dtype=np.int64).copy())
            self._prev.append(np.frombuffer(self._row_prev, dtype=np.int64).copy())
            self._times.append(np.frombuffer(self._row_times, dtype=np.float64).copy())
            self._row_prev, self._row_next, self._row_times = array("q"), array("q"), array("d")

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(previous ids, next ids)."""
        self._flush()
        if not self._next:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate(self._prev), np.concatenate(self._next)

    def time_array(self) -> np.ndarray | None:
        """The times of the pairs, or None when some pair has none."""
        self._flush()
        return np.concatenate(self._times) if self._timed and self._times else None


def _read_here(
    paths: list[PathLike], gap_minutes: float, errors: str, floor: int, line: ProgressLine
) -> Iterator[LogShard]:
    """The files of a log read in this process, in order, drawn on ``line``."""
    for path in paths:
        report = ReadReport()

        def tick(pairs: int, report: ReadReport = report, force: bool = False) -> None:
            percent = 100 * report.bytes_read // report.size if report.size else 100
            done = bar(report.bytes_read, report.size)
            line.update(f"reading {report.path} {done} {percent}%: {pairs:,} pairs", force=force)

        shard = read_log_shard(
            path, gap_minutes, errors=errors, floor=floor, report=report, tick=tick
        )
        tick(len(shard.next_ids), force=True)
        yield shard


def _engine(engine: str | Engine) -> Engine | None:
    """The engine ``fit_log`` was given: None for this process."""
    if isinstance(engine, str):
        if engine == "local":
            return None
        if engine == "ray":
            return RayEngine()
        raise ValueError(f"engine must be 'local', 'ray' or a RayEngine, got {engine!r}")
    if not isinstance(engine, Engine):
        raise TypeError(f"engine must be 'local', 'ray' or a RayEngine, got {engine!r}")
    return engine


def default_prev_features() -> TfidfVectorizer:
    """Word 1-2 gram TF-IDF of the previous query."""
    return TfidfVectorizer(analyzer="word", ngram_range=(1, 2))


def default_prefix_features() -> TfidfVectorizer:
    """Character 1-4 gram TF-IDF of the prefix (inside words), harmonic prefix weighting."""
    return TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), prefix_weighting="harmonic")


def _model_path(path: PathLike, saving: bool, name: str = MODEL_FILE) -> Path:
    """``path`` itself, or ``path/name`` when ``path`` is a directory (or, when saving, ends with
    a separator)."""
    p = Path(path)
    if p.is_dir() or (saving and str(path).endswith(("/", os.sep))):
        if saving:
            p.mkdir(parents=True, exist_ok=True)
        return p / name
    return p


class CompleterOptions(TypedDict, total=False):
    """The keyword options of ``Completer`` and their types (the core declares them, with their
    defaults, bounds and docs: ``Completer.options()``; a test checks the two agree)."""

    trie_depth: int | None
    branching: int
    max_leaf_size: int
    kmeans_max_iter: int
    prefixes_per_pair: int
    min_count: float
    min_users: float
    seed: int
    Cp: float
    Cn: float
    bias: float
    threshold: float
    max_iter: int
    eps: float
    loss: str
    range_rows: bool | str
    lm_discount: float
    lm_count_power: float
    rank_holdout: float
    rank_prefixes: int
    rank_typos: float
    ranker: str
    ranker_bins: int
    ranker_trees: int
    ranker_leaves: int
    ranker_depth: int
    features_off: Sequence[str]
    blocklist: Iterable[str]
    beam_size: int
    candidates: int
    model_floor: float
    generate: bool
    use_model: bool
    use_popular: bool
    use_transitions: bool
    compose_beam: int
    compose_words: int
    copy: float
    follow: float
    fuzzy_one: int
    fuzzy_two: int
    session_history: int
    composed_floor: float
    live_half_life: float
    live_cap: int
    live_min_clients: int


#: The core's declaration of every option: name, kind, type, default, doc (and bounds).
_DECLARED: list[dict[str, Any]] = _core.Options.declarations()
_NAMES = frozenset(d["name"] for d in _DECLARED)
_DEFAULT_INDEX: str = next(d["default"] for d in _DECLARED if d["name"] == "index")
#: Parameters of ``Completer`` that are not model options: Python objects or how to report.
_OTHER_PARAMS = ("prev_features", "prefix_features", "progress")


def _same(given: Any, stored: Any) -> bool:
    """Whether ``given`` is the value the core stored (a list given where it keeps a tuple is
    not: ``get_params`` then shows the tuple)."""
    try:
        return type(given) is not list and bool(given == stored)
    except (TypeError, ValueError):
        return False


def _options_doc() -> str:
    kinds = {
        "fit": "Training",
        "rank": "Ranking (defaults of the trained model)",
        "live": "Live counts",
    }
    lines = []
    for kind, title in kinds.items():
        lines.append(f"    {title}:")
        for d in _DECLARED:
            if d["kind"] == kind:
                lines.append(f"      ``{d['name']}`` = {d['default']!r} ({d['type']}): {d['doc']}")
    return "\n".join(lines)


class Completer:
    """Query autocompletion from a search log, aware of the previous query of the session.

    Training samples prefixes of every (previous, next) pair of the log and teaches an
    XR-Linear matcher over a label tree of the queries; a language model composes queries never
    searched whole; a ranker learned on the log's latest searches orders the candidates of
    every source. ``prev_features`` and ``prefix_features`` are unfitted ``TfidfVectorizer`` s
    giving the options of the two feature blocks (default: word 1-2 grams of the previous
    query, prefix-weighted character 1-4 grams of the prefix). ``progress``: a progress bar on
    stderr while the model trains (True, False, or "auto": when stderr is a terminal).

    Every other option is declared once, in the core, with its bounds; a bad one raises
    ``TypeError`` or ``ValueError`` here. The trained model keeps them: ``load`` and pickle
    give back a completer whose ``get_params()`` equal the ones it was trained with.
    ``get_params`` and ``set_params`` follow scikit-learn's convention; an option set on a
    trained completer takes effect at the next ``fit``.

    Searches made after training are recorded with ``record`` (live counts) and complete at
    once: as candidates, and as two features of the ranking (``live``, ``live_after``).

    ``blocklist``: words and phrases no suggestion may contain, seen or composed (matched as
    whole words after NFKC and lower-casing: "ass" blocks "kick-ass", not "class"); ``block``
    and ``unblock`` change it on a trained completer, and ``save`` keeps it.

    The options, with their defaults:

    """

    # The options' values live in one checked core object; attributes read and write it.
    # ``_values`` holds the Python objects given for them where they equal the core's (so that
    # ``get_params`` gives back the very objects, as scikit-learn's ``clone`` checks).
    _options: _core.Options
    _values: dict[str, Any]

    def __init__(
        self,
        index: str = _DEFAULT_INDEX,
        *,
        prev_features: TfidfVectorizer | None = None,
        prefix_features: TfidfVectorizer | None = None,
        progress: bool | str = "auto",
        **options: Unpack[CompleterOptions],
    ) -> None:
        self._set_options(_core.Options(index=index, **options), {"index": index, **options})
        self.prev_features = prev_features or default_prev_features()
        self.prefix_features = prefix_features or default_prefix_features()
        self.progress = progress
        #: What ``fit_log`` read: rows, rows skipped and why (None before it runs).
        self.read_report_: ReadReport | None = None
        self._model: _core.CompleterModel | None = None

    def _set_options(self, options: _core.Options, given: Mapping[str, Any]) -> None:
        values = options.to_dict()
        for name, value in given.items():
            if name in values and _same(value, values[name]):
                values[name] = value
        object.__setattr__(self, "_options", options)
        object.__setattr__(self, "_values", values)

    def __getattr__(self, name: str) -> Any:
        # Called only when normal lookup fails: the options, read from the core object.
        if name in _NAMES and "_values" in vars(self):
            return self._values[name]
        # Lookup again without this hook: the error it raised (a property's NotFittedError).
        return object.__getattribute__(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _NAMES:
            self.set_params(**{name: value})
        else:
            object.__setattr__(self, name, value)

    @staticmethod
    def options() -> list[dict[str, Any]]:
        """Every option's declaration: name, kind ("fit", "rank", "live"), type, default, doc,
        and where they apply choices, min and max."""
        return [dict(d) for d in _DECLARED]

    @staticmethod
    def options_defaults() -> dict[str, Any]:
        """Every option's default, by name."""
        return {d["name"]: d["default"] for d in _DECLARED}

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The parameters (scikit-learn's convention): every option, the two vectorizers and
        ``progress``; with ``deep``, the vectorizers' own parameters too, as
        ``prev_features__ngram_range``."""
        params: dict[str, Any] = dict(self._values)
        for name in _OTHER_PARAMS:
            params[name] = getattr(self, name)
        if deep:
            for name in ("prev_features", "prefix_features"):
                for key, value in getattr(self, name).get_params().items():
                    params[f"{name}__{key}"] = value
        return params

    def set_params(self, **params: Any) -> Completer:
        """Sets parameters (``get_params``' names, nested ones with ``__``), all checked before
        any is set; returns the completer. A trained model changes at the next ``fit``."""
        options = {k: v for k, v in params.items() if k in _NAMES}
        nested: dict[str, dict[str, Any]] = {}
        for key, value in params.items():
            if key in _NAMES or key in _OTHER_PARAMS:
                continue
            owner, _, name = key.partition("__")
            if owner not in ("prev_features", "prefix_features") or not name:
                raise ValueError(f"invalid parameter {key!r} for Completer")
            nested.setdefault(owner, {})[name] = value
        checked = self._options.replace(**options)
        vectorizers = {
            owner: params.get(owner, getattr(self, owner))
            for owner in ("prev_features", "prefix_features")
        }
        for owner, changes in nested.items():
            merged = {**vectorizers[owner].get_params(), **changes}
            TfidfVectorizer(**merged).options()  # checked before anything is set
            vectorizers[owner] = TfidfVectorizer(**merged)
        self._set_options(checked, {**self._values, **options})
        for owner, vectorizer in vectorizers.items():
            setattr(self, owner, vectorizer)
        if "progress" in params:
            self.progress = params["progress"]
        return self

    def __repr__(self) -> str:
        shown = [f"{name}={self._options[name]!r}" for name in self._options.changed()]
        for name, default in (
            ("prev_features", default_prev_features()),
            ("prefix_features", default_prefix_features()),
        ):
            if getattr(self, name).get_params() != default.get_params():
                shown.append(f"{name}={getattr(self, name)!r}")
        if self.progress != "auto":
            shown.append(f"progress={self.progress!r}")
        return f"Completer({', '.join(shown)})"

    def fit(
        self,
        pairs: Iterable[tuple[str, str]],
        counts: Mapping[str, float] | None = None,
        users: Mapping[str, float] | None = None,
    ) -> Completer:
        """Trains on (previous query, next query) pairs; a previous query of ``""`` marks the
        first query of a session (a log where nobody searched twice trains too: it completes
        from popularity). ``counts``: how often each query was searched (its popularity; it
        replaces, query by query, the default: how often the query comes as a next query, 1 for
        a query seen only as a previous one; queries only in ``counts`` can be suggested too).
        Queries are normalised (lower-cased, stripped); pairs with an empty next query are
        skipped. Streams ``pairs``: only the distinct queries and two integer arrays are held.
        ``users``: how many distinct users searched each query (a query not in it: none),
        needed by the privacy floor ``min_users`` above 1."""
        with ProgressLine(self.progress) as line:
            return self._fit(pairs, counts, line, users=users)

    def _fit(
        self,
        pairs: Iterable[tuple[str, str]],
        counts: Mapping[str, float] | None,
        line: ProgressLine,
        users: Mapping[str, float] | None = None,
    ) -> Completer:
        """``fit``, drawing on ``line`` as ``pairs`` are read and while the model trains."""
        table = _PairTable()
        for i, pair in enumerate(pairs):
            if i % _DRAW_EVERY == 0:
                line.update(f"reading pairs: {i:,}")
            try:
                prev, nxt = pair
            except (TypeError, ValueError):
                raise TypeError(
                    f"pair {i}: expected (previous query, next query), got {pair!r}"
                ) from None
            if not isinstance(prev, str) or not isinstance(nxt, str):
                raise TypeError(f"pair {i}: queries must be str, got {pair!r}")
            table.add(prev, nxt)
        line.update(f"reading pairs: {len(table):,}", force=True)
        return self._train(table, counts, line, users=users)

    def _train(
        self,
        table: _PairTable,
        counts: Mapping[str, float] | None,
        line: ProgressLine,
        users: Mapping[str, float] | _UserSets | None = None,
        engine: Engine | None = None,
    ) -> Completer:
        """Trains the core model on the pairs of ``table``; ``engine``, if given, holds them
        and runs the fit's work on them where they are (``xrcomplete.distributed``)."""
        shards = None
        if engine is not None:
            shards = engine.shards(table.held, (*table.arrays(), table.time_array()))
        try:
            return self._train_on(table, counts, line, users, shards, engine)
        finally:
            if shards is not None:
                shards.close()

    def _train_on(
        self,
        table: _PairTable,
        counts: Mapping[str, float] | None,
        line: ProgressLine,
        users: Mapping[str, float] | _UserSets | None,
        shards: PairShards | None,
        engine: Engine | None,
    ) -> Completer:
        n_pairs = len(table) if shards is None else sum(shards.sizes())
        if not n_pairs:
            raise ValueError("no training pair: pairs is empty or every next query is blank")
        normalize = _core.normalize_query
        ids = table.ids
        prev_ids, next_ids = table.arrays()
        times = table.time_array()
        given: dict[int, float] = {}
        for query, n in (counts or {}).items():
            query = normalize(query)
            if query:
                given[table.id_of(query)] = float(n)
        # Searched at least once: a query seen only as a previous query counts 1. (In a log
        # read elsewhere every next query was searched, and counted: the pairs are not needed.)
        popularity = np.ones(len(ids), dtype=np.float64)
        if shards is None:
            as_next = np.bincount(next_ids, minlength=len(ids))
            popularity[: len(as_next)] = np.where(as_next > 0, as_next, 1.0)
        if given:
            popularity[np.fromiter(given, dtype=np.int64)] = np.fromiter(
                given.values(), dtype=np.float64
            )
        users_of: np.ndarray | None = None
        user_offsets = user_ids = None
        if isinstance(users, _UserSets):
            # Who searched what (fit_log): the language model counts word sequences by distinct
            # users in any query, not only in the queries above the floor.
            user_offsets, user_ids = users.csr(ids)
            users_of = np.diff(user_offsets).astype(np.float64)
        elif users is not None:
            users_of = np.zeros(len(ids), dtype=np.float64)
            for query, n in users.items():
                found = ids.get(normalize(query))
                if found is not None:
                    users_of[found] = n
        elif self.min_users > 1:
            raise ValueError(
                f"min_users = {self.min_users:g} needs how many users searched each query: "
                "fit(pairs, counts, users=...) or fit_log (which counts them)"
            )
        self._model = self._fit_model(
            ids,
            popularity,
            prev_ids,
            next_ids,
            times,
            users_of,
            user_offsets,
            user_ids,
            line,
            shards,
            Engine.min_subtrees if engine is None else engine.min_subtrees,
        )
        self._reset_live()
        return self

    def _fit_model(
        self,
        ids: _core.QueryIds,
        popularity: np.ndarray,
        prev_ids: np.ndarray,
        next_ids: np.ndarray,
        times: np.ndarray | None,
        users_of: np.ndarray | None,
        user_offsets: np.ndarray | None,
        user_ids: np.ndarray | None,
        line: ProgressLine,
        shards: PairShards | None,
        min_subtrees: int,
    ) -> _core.CompleterModel:
        """``_core.CompleterModel.fit`` with this completer's options."""
        prev_opts = self.prev_features.options()
        prefix_opts = self.prefix_features.options()
        # With shards, they hold the pairs: the fit reads them there.
        here = shards is None
        return with_progress(
            lambda counter: _core.CompleterModel.fit(
                ids,  # taken out by the fit: no copy of the queries is left here
                popularity,
                prev_ids if here else None,
                next_ids if here else None,
                prev_opts,
                prefix_opts,
                self._options,
                times=times if here else None,
                users=users_of,
                user_offsets=user_offsets,
                user_ids=user_ids,
                progress=counter,
                shards=shards,
                min_subtrees=min_subtrees,
            ),
            self.progress,
            line,
        )

    def fit_log(
        self,
        path: PathLike | Sequence[PathLike],
        gap_minutes: float = 30.0,
        *,
        errors: str = "strict",
        searches: Iterable[tuple[str, str, float, float]] = (),
        engine: str | Engine = "local",
    ) -> Completer:
        """Trains on a log in AOL's layout (AnonID, Query, QueryTime; tab-separated, header
        and byte-order mark optional): popularity = every search of a query, pairs =
        consecutive queries of a session (a new session after ``gap_minutes`` without a
        search), first queries of sessions paired with ``""``. ``path``: a file, or a list of
        files read as one log, in their order. Reads each file once, streaming.

        A row that cannot be read (not UTF-8, too few columns, a time that does not parse)
        raises ``LogFormatError`` naming ``path:line``; with ``errors="skip"`` it is dropped, and
        a ``SkippedRowsWarning`` says how many were. ``read_report_`` tells what was read.

        ``searches``: (query, previous query, count, time in seconds) searched after the log
        (e.g. ``_core.read_event_log`` of a server's event log), trained on after it: each a
        pair, its count added to the query's popularity.

        ``engine``: ``"local"`` (this process), or ``"ray"`` / an ``xrcomplete.distributed.
        RayEngine``: the files are read and the matcher trained on a Ray cluster
        (``pip install 'xrcomplete[ray]'``), giving the same model."""
        check_gap(gap_minutes)
        paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
        if not paths:
            raise ValueError("fit_log needs at least one file")
        runner = _engine(engine)
        # The privacy floor: the distinct users of each query, up to the floor (enough to
        # decide; only when there is a floor).
        floor = math.ceil(self.min_users) if self.min_users > 1 else 0
        table = _PairTable()
        counts: dict[str, float] = {}
        users: dict[str, list[str]] = {}
        report = ReadReport(path=", ".join(str(p) for p in paths))
        with ProgressLine(self.progress) as line:
            shards = (
                _read_here(paths, gap_minutes, errors, floor, line)
                if runner is None
                else runner.read_shards(paths, gap_minutes, errors, floor, line)
            )
            before: Event | None = None
            for shard in shards:
                joins = shard.first_pair_joins(before, gap_minutes)
                table.add_shard(shard, before[1] if joins and before is not None else None)
                for query, n in shard.counts.items():
                    counts[query] = counts.get(query, 0.0) + n
                for query, members in shard.users.items():
                    admit_users(users.setdefault(query, []), members, floor)
                report.absorb(shard.report)
                before = shard.last or before
            for query, prev, count, when in searches:
                query = _core.normalize_query(query)
                if query:
                    counts[query] = counts.get(query, 0.0) + count
                    table.add(prev, query, when)
            self._train(
                table,
                counts,
                line,
                users=_UserSets(users) if floor else None,
                engine=runner,
            )
        self.read_report_ = report
        return self

    @property
    def model(self) -> _core.CompleterModel:
        """The trained core model (raises ``NotFittedError`` before ``fit``)."""
        if self._model is None:
            raise NotFittedError("this Completer is not trained yet: call fit() or fit_log()")
        return self._model

    def complete(self, prev_query: History, prefix: str, k: int = 10) -> list[Completion]:
        """The best ``k`` completions of ``prefix`` typed after ``prev_query``: the previous
        query (``""`` when none), or the session's searches so far, oldest first (the last is
        the previous query; only the last ``session_history``, 5 by default, are used):
        ``[(query, score), ...]``, best first. Scores are log-scale ranking scores (higher is
        better), not probabilities. Every query starts with the normalised prefix; each says
        where it came from (``.source``: ``"seen"``, ``"composed"``, ``"live"``, ``"session"``
        or ``"fuzzy"``, see ``Completion``).

        >>> pairs = [("", "weather boston"), ("weather boston", "boston hotels"),
        ...          ("boston hotels", "red sox tickets")] * 5
        >>> completer = Completer(index="trie", progress=False).fit(pairs)
        >>> completer.complete(["weather boston", "boston hotels"], "r", 1)[0].query
        'red sox tickets'
        """
        return _completions(self.model.complete(prev_query, prefix, k))

    def complete_batch(
        self, prev_queries: Sequence[History], prefixes: Sequence[str], k: int = 10
    ) -> list[list[Completion]]:
        """``complete`` for each ``(prev_queries[i], prefixes[i])``, in parallel; each
        previous query a str or the session's searches so far, oldest first."""
        return [
            _completions(found) for found in self.model.complete_batch(prev_queries, prefixes, k)
        ]

    def explain(self, prev_query: History, prefix: str, k: int = 10) -> list[Candidate]:
        """Every candidate ``complete(prev_query, prefix, k)`` ranks (with the default options),
        best first, with its ranking features: those that may be suggested (the blocklist and
        the privacy floor applied), of the prefix as typed and, for a prefix that looks
        mistyped, of its corrections (source "fuzzy", with their ``edits``); composed ones below
        ``composed_floor`` too, which ``complete`` leaves out. For seeing why an answer ranks
        where it does.

        >>> pairs = [("", "home depot"), ("cheap flights", "hotels in boston")] * 5
        >>> completer = Completer(index="trie", progress=False).fit(pairs)
        >>> best = completer.explain("cheap flights", "ho")[0]
        >>> best.query, best.source, best.features["transitions"] > 0
        ('hotels in boston', 'seen', True)
        """
        names = self.model.ranking_features()
        return [
            Candidate(query, score, source, dict(zip(names, features)))
            for query, score, source, _, features in self.model.explain(prev_query, prefix, k)
        ]

    def record(
        self,
        query: str,
        prev: History = "",
        count: float = 1.0,
        time: float | None = None,
        client: str | None = None,
    ) -> bool:
        """Records that ``query`` was searched (after ``prev``; ``count`` times; at ``time``, in
        seconds, default now). It completes at once; counts decay relative to the latest time
        recorded. A query empty once normalised raises ``ValueError``.

        Without ``client`` the search is trusted (counted as given). With ``client`` (who
        searched: an address, a user id) the rules that ``xrcomplete serve`` applies to
        strangers hold: the client adds at most one count to a query per half-life (a repeat
        is not counted and this returns False), and a query stays unseen until
        ``live_min_clients`` distinct clients searched it (``reset_live(min_clients=...)``).
        ``prev`` may be the session's searches before ``query``, oldest first, as for
        ``complete``: live counts keep what followed the last of them."""
        return self.model.record(query, _previous(prev), count, time, client)

    def record_batch(
        self,
        queries: Sequence[str],
        prevs: Sequence[str] | None = None,
        counts: Sequence[float] | None = None,
        times: Sequence[float] | None = None,
        clients: Sequence[str] | None = None,
    ) -> int:
        """``record`` for each search (all checked before any is recorded); returns how many
        were counted."""
        return self.model.record_batch(
            queries,
            prevs,
            None if counts is None else [float(c) for c in counts],
            None if times is None else [float(t) for t in times],
            clients,
        )

    def live_stats(self) -> dict[str, float]:
        """What the live counts hold: ``queries``, ``prevs`` (distinct previous queries),
        ``events`` recorded, ``evicted`` queries, ``memory_bytes``, ``clock`` (the latest time
        recorded), ``half_life``, ``cap``."""
        return self.model.live_stats()

    def live_count(self, query: str, prev: str = "") -> float:
        """The decayed count of ``query`` among the recorded searches (of ``query`` right after
        ``prev``, when given)."""
        return self.model.live_count(query, prev)

    def reset_live(
        self,
        half_life: float | None = None,
        cap: int | None = None,
        min_clients: int | None = None,
    ) -> None:
        """Forgets what was recorded; optionally sets a new ``half_life`` (seconds; ``inf``:
        no decay), ``cap`` and ``min_clients`` (the distinct clients a query recorded with
        ``client=`` needs before it is seen)."""
        changes = {"live_half_life": half_life, "live_cap": cap, "live_min_clients": min_clients}
        self.set_params(**{k: v for k, v in changes.items() if v is not None})
        self._reset_live()

    def block(self, terms: Iterable[str]) -> int:
        """Blocks ``terms`` (words or phrases) from every later answer, at once, also in
        threads completing meanwhile; returns how many were new. ``ValueError`` for a term
        without any word character."""
        return self.model.block(terms)

    def unblock(self, terms: Iterable[str]) -> int:
        """Unblocks ``terms``; returns how many were blocked."""
        return self.model.unblock(terms)

    @property
    def blocked(self) -> list[str]:
        """The blocked terms, normalised (lower-cased words joined by one space), sorted."""
        return self.model.blocked()

    @property
    def n_queries_(self) -> int:
        """Number of queries that can be suggested whole."""
        return self.model.n_queries

    @property
    def level_sizes_(self) -> list[int]:
        """Nodes per level of the model's label tree."""
        return self.model.level_sizes()

    @property
    def nbytes(self) -> int:
        """Approximate memory held by the trained completer, in bytes."""
        return self.model.nbytes

    def save(self, path: PathLike) -> Path:
        """Saves the trained completer atomically to ``path``, or to ``path/completer.xrc`` when
        ``path`` is a directory (or ends with a separator). Returns the file written."""
        target = _model_path(path, saving=True)
        self.model.save(target)
        return target

    @classmethod
    def load(cls, path: PathLike, *, mmap: bool = False) -> Completer:
        """Loads a completer saved by ``save`` (a file, or a directory holding
        ``completer.xrc``). A bad file raises ``ModelFormatError``; a missing one
        ``FileNotFoundError``.

        ``mmap=True`` maps the file instead of reading it: nothing is copied or rebuilt and no
        private memory is added, and processes serving the same file share its pages. Loading
        still reads every page once (the checksum) and checks bounds in time linear in the
        labels, so it grows with the file: about 4.5x faster than a read load, 28 ms for the
        239 MB AOL completer and 142 ms for a 1.25 GB one of a million labels on the machine
        of ``benches/load.py`` (see the README). The file must then stay unchanged while the
        model is in use; ``save`` never changes a file in place (it writes a new file and renames
        it), so saving a new model over a mapped one is safe.
        """
        return cls._of_model(_core.CompleterModel.load(_model_path(path, saving=False), mmap=mmap))

    @classmethod
    def _of_model(cls, model: _core.CompleterModel, progress: bool | str = "auto") -> Completer:
        """A completer serving ``model``, with the options and vectorizers it was trained with."""
        prev, prefix = model.vectorizers()
        completer = cls(
            prev_features=TfidfVectorizer(**prev.params()),
            prefix_features=TfidfVectorizer(**prefix.params()),
            progress=progress,
        )
        completer._set_options(model.options(), {})
        completer._model = model
        completer._reset_live()
        return completer

    def __getstate__(self) -> dict[str, object]:
        # Data only: the options as plain values, the model as its file's bytes (which hold
        # the options it was trained with), and the other attributes (a subclass's too).
        state: dict[str, object] = {
            k: v for k, v in vars(self).items() if k not in ("_options", "_values", "_model")
        }
        state["options"] = self._options.to_dict()
        state["_model"] = None if self._model is None else self._model.to_bytes()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        data = state.pop("_model", None)
        old = "options" not in state  # a pickle made before options were declared
        given = state.pop("options", {}) if not old else dict(state)
        # Options this version does not declare (renamed, removed) are left out.
        options = {k: v for k, v in given.items() if k in _NAMES}
        for name in options if old else ():
            state.pop(name)
        vectorizers: list[TfidfVectorizer | None] = []
        for name in ("prev_features", "prefix_features"):
            v = state.pop(name, None)
            vectorizers.append(TfidfVectorizer(**v) if isinstance(v, dict) else v)
        Completer.__init__(
            self,
            prev_features=vectorizers[0],
            prefix_features=vectorizers[1],
            progress=state.pop("progress", "auto"),
            **options,
        )
        vars(self).update(state)  # read_report_, and a subclass's attributes
        if isinstance(data, bytes):
            self._model = _core.CompleterModel.from_bytes(data)
            if old:
                # The model knows its ranking options; the attributes knew the rest.
                self._set_options(self._model.options().replace(**options), options)
            # Live counts are not pickled (nor saved): they stay with the running object.
            self._reset_live()

    def _reset_live(self) -> None:
        self.model.reset_live(self.live_half_life, self.live_cap, self.live_min_clients)


def _signature() -> inspect.Signature:
    """``Completer.__init__`` as ``help`` and ``inspect`` should show it: every option with its
    declared default (the code takes them as ``**options``)."""
    keyword = inspect.Parameter.KEYWORD_ONLY
    params = [
        inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        inspect.Parameter("index", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=_DEFAULT_INDEX),
    ]
    params += [
        inspect.Parameter(d["name"], keyword, default=d["default"])
        for d in _DECLARED
        if d["name"] != "index"
    ]
    params += [
        inspect.Parameter("prev_features", keyword, default=None),
        inspect.Parameter("prefix_features", keyword, default=None),
        inspect.Parameter("progress", keyword, default="auto"),
    ]
    return inspect.Signature(params)


Completer.__doc__ = (Completer.__doc__ or "") + _options_doc() + "\n"
Completer.__init__.__signature__ = _signature()  # type: ignore[attr-defined]
