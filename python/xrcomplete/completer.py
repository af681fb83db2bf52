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

import math
import os
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

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


class Completion(tuple[str, float]):
    """One suggestion: a ``(query, score)`` pair (scores: higher is better, not probabilities),
    with ``source``: ``"seen"`` for a query of the log, ``"composed"`` for one the language
    model put together from the log's words, ``"live"`` for one searched since the model was
    built (``Completer.record``), ``"fuzzy"`` for one (seen or composed) that starts with a
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
    (``"seen"``, ``"composed"`` or ``"live"``) and its ranking features by name."""

    query: str
    score: float
    source: str
    features: dict[str, float]


_new_tuple = tuple.__new__


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


class Completer:
    """Query autocompletion from a search log, aware of the previous query of the session.

    ``index``: the label tree of the model, "trie" (the trie of the queries, up to
    ``trie_depth`` levels, default 8, and groups of at most ``max_leaf_size`` queries below
    them), "hybrid" (``trie_depth`` trie levels, default 2, then k-means) or "kmeans" (PECOS's
    default). Weights are stored as half floats. Training samples ``prefixes_per_pair`` prefix
    lengths of every (previous, next) pair; queries searched fewer than ``min_count`` times are
    never suggested whole. ``prev_features`` and ``prefix_features`` are unfitted
    ``TfidfVectorizer`` s giving the options of the two feature blocks. The candidate options
    (``beam_size``, ``candidates``, ``model_floor``, ``generate``: compose queries with the
    language model, ``compose_beam``, ``compose_words``, ``copy``: the share of the previous
    query's words in the language model's next-word choice, ``follow``: the share of the word
    after the query's last one in the previous query, growing with each word of a copied run,
    which may then go past ``compose_words``) are defaults that
    ``completer.model.complete`` may override; see the README. The ranking stage learns from
    the latest ``rank_holdout`` share of the pairs (``rank_prefixes`` prefixes each) ranked by
    parts trained on the rest: ``ranker="trees"`` (LambdaMART: ``ranker_trees`` boosted trees of
    at most ``ranker_leaves`` leaves and ``ranker_depth`` levels over the features, which can
    learn how they interact; a log of fewer than 2,000 usable held-out lists learns the additive
    ranker instead, and ``model.ranker_kind`` says which ranks) or
    ``"additive"`` (a weight and ``ranker_bins`` bin offsets per feature); ``rank_typos`` of those
    prefixes long enough for typo tolerance get one random edit, so that it learns how far to
    trust a corrected prefix against the typed one; ``features_off`` leaves
    ranking features out (for ablations). ``range_rows``: each node of the matcher learns only from
    the training prefixes whose label range leaves its choice open (the beam is always restricted
    to the prefix's range): 3.6x faster training on aol_train, MRR@10 0.0006 lower on aol_valid;
    off by default (every prefix under its parent, as PECOS). ``progress``: a
    progress bar on stderr while the model trains (True, False, or "auto": when stderr is a
    terminal).

    Searches made after training are recorded with ``record`` (live counts: decayed by half
    every ``live_half_life`` seconds, at most ``live_cap`` distinct queries held) and complete
    at once: as candidates, and as two features of the ranking (``live``, ``live_after``).

    ``blocklist``: words and phrases no suggestion may contain, seen or composed (matched as
    whole words after NFKC and lower-casing: "ass" blocks "kick-ass", not "class"); ``block``
    and ``unblock`` change it on a trained completer, and ``save`` keeps it.
    """

    def __init__(
        self,
        index: str = "trie",
        *,
        trie_depth: int | None = None,
        prefixes_per_pair: int = 3,
        min_count: float = 1,
        min_users: float = 1,
        fuzzy_one: int = 5,
        fuzzy_two: int = 9,
        prev_features: TfidfVectorizer | None = None,
        prefix_features: TfidfVectorizer | None = None,
        branching: int = 16,
        max_leaf_size: int = 100,
        threshold: float = 0.1,
        Cp: float = 1.0,
        Cn: float = 1.0,
        seed: int = 0,
        beam_size: int = 10,
        candidates: int = 10,
        model_floor: float = 1e-4,
        generate: bool = True,
        compose_beam: int = 6,
        compose_words: int = 2,
        copy: float = 0.2,
        follow: float = 0.3,
        lm_discount: float = 0.9,
        lm_count_power: float = 0.5,
        rank_holdout: float = 0.1,
        rank_prefixes: int = 12,
        rank_typos: float = 0.08,
        ranker: str = "trees",
        ranker_bins: int = 8,
        ranker_trees: int = 100,
        ranker_leaves: int = 31,
        ranker_depth: int = 5,
        features_off: Sequence[str] = (),
        range_rows: bool = False,
        live_half_life: float = 86_400.0,
        live_cap: int = 100_000,
        blocklist: Iterable[str] = (),
        progress: bool | str = "auto",
    ) -> None:
        if index not in _INDEXES:
            raise ValueError(f"index must be one of {_INDEXES}, got {index!r}")
        if trie_depth is not None and trie_depth < 0:
            raise ValueError(f"trie_depth must be >= 0, got {trie_depth}")
        if ranker not in ("trees", "additive"):
            raise ValueError(f"ranker must be 'trees' or 'additive', got {ranker!r}")
        self.index = index
        self.trie_depth = trie_depth
        self.prefixes_per_pair = prefixes_per_pair
        self.min_count = min_count
        self.min_users = min_users
        self.fuzzy_one = fuzzy_one
        self.fuzzy_two = fuzzy_two
        self.prev_features = prev_features or default_prev_features()
        self.prefix_features = prefix_features or default_prefix_features()
        self.branching = branching
        self.max_leaf_size = max_leaf_size
        self.threshold = threshold
        self.Cp = Cp
        self.Cn = Cn
        self.seed = seed
        self.beam_size = beam_size
        self.candidates = candidates
        self.model_floor = model_floor
        self.generate = generate
        self.compose_beam = compose_beam
        self.compose_words = compose_words
        self.copy = copy
        self.follow = follow
        self.lm_discount = lm_discount
        self.lm_count_power = lm_count_power
        self.rank_holdout = rank_holdout
        self.rank_prefixes = rank_prefixes
        self.rank_typos = rank_typos
        self.ranker = ranker
        self.ranker_bins = ranker_bins
        self.ranker_trees = ranker_trees
        self.ranker_leaves = ranker_leaves
        self.ranker_depth = ranker_depth
        self.features_off = tuple(features_off)
        self.range_rows = range_rows
        self.live_half_life = live_half_life
        self.live_cap = live_cap
        # Set by reset_live(min_clients=...): the floor of searches recorded with a client.
        self.live_min_clients = 3
        if isinstance(blocklist, str):
            raise TypeError("blocklist must be an iterable of str, not a single str")
        self.blocklist = tuple(blocklist)
        self.progress = progress
        #: What ``fit_log`` read: rows, rows skipped and why (None before it runs).
        self.read_report_: ReadReport | None = None
        self._model: _core.CompleterModel | None = None

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
                f"min_users = {self.min_users} needs how many users searched each query: "
                "fit(pairs, counts, users=...) or fit_log (which counts them)"
            )
        trie_depth = self.trie_depth
        if trie_depth is None:
            trie_depth = 8 if self.index == "trie" else 2
        self._model = self._fit_model(
            ids,
            popularity,
            prev_ids,
            next_ids,
            times,
            users_of,
            user_offsets,
            user_ids,
            trie_depth,
            line,
            shards,
            Engine.min_subtrees if engine is None else engine.min_subtrees,
        )
        self._model.reset_live(self.live_half_life, self.live_cap, self.live_min_clients)
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
        trie_depth: int,
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
                times=times if here else None,
                users=users_of,
                user_offsets=user_offsets,
                user_ids=user_ids,
                min_users=float(self.min_users),
                fuzzy_one=self.fuzzy_one,
                fuzzy_two=self.fuzzy_two,
                tree=self.index,
                trie_depth=trie_depth,
                branching=self.branching,
                max_leaf_size=self.max_leaf_size,
                prefixes_per_pair=self.prefixes_per_pair,
                min_count=self.min_count,
                seed=self.seed,
                cp=self.Cp,
                cn=self.Cn,
                threshold=self.threshold,
                beam_size=self.beam_size,
                candidates=self.candidates,
                model_floor=self.model_floor,
                generate=self.generate,
                compose_beam=self.compose_beam,
                compose_words=self.compose_words,
                copy=self.copy,
                follow=self.follow,
                lm_discount=self.lm_discount,
                lm_count_power=self.lm_count_power,
                rank_holdout=self.rank_holdout,
                rank_prefixes=self.rank_prefixes,
                rank_typos=self.rank_typos,
                ranker=self.ranker,
                ranker_bins=self.ranker_bins,
                ranker_trees=self.ranker_trees,
                ranker_leaves=self.ranker_leaves,
                ranker_depth=self.ranker_depth,
                features_off=list(self.features_off),
                live_half_life=self.live_half_life,
                blocklist=list(self.blocklist),
                progress=counter,
                shards=shards,
                min_subtrees=min_subtrees,
                range_rows=self.range_rows,
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

    def complete(self, prev_query: str, prefix: str, k: int = 10) -> list[Completion]:
        """The best ``k`` completions of ``prefix`` typed after ``prev_query`` (``""`` when
        none): ``[(query, score), ...]``, best first. Scores are log-scale ranking scores
        (higher is better), not probabilities. Every query starts with the normalised prefix;
        each says where it came from (``.source``: ``"seen"`` or ``"composed"``)."""
        return _completions(self.model.complete(prev_query, prefix, k))

    def complete_batch(
        self, prev_queries: Sequence[str], prefixes: Sequence[str], k: int = 10
    ) -> list[list[Completion]]:
        """``complete`` for each ``(prev_queries[i], prefixes[i])``, in parallel."""
        return [
            _completions(found) for found in self.model.complete_batch(prev_queries, prefixes, k)
        ]

    def explain(self, prev_query: str, prefix: str, k: int = 10) -> list[Candidate]:
        """Every candidate ``complete(prev_query, prefix, k)`` ranks (with the default options),
        best first, with its ranking features: those that may be suggested (the blocklist and
        the privacy floor applied), of the prefix as typed and, for a prefix that looks
        mistyped, of its corrections (source "fuzzy", with their ``edits``). For seeing why an
        answer ranks where it does.

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
        prev: str = "",
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
        ``live_min_clients`` distinct clients searched it (``reset_live(min_clients=...)``)."""
        return self.model.record(query, prev, count, time, client)

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
        if half_life is not None:
            self.live_half_life = half_life
        if cap is not None:
            self.live_cap = cap
        if min_clients is not None:
            self.live_min_clients = min_clients
        self.model.reset_live(self.live_half_life, self.live_cap, self.live_min_clients)

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
        completer = cls(progress=False)
        completer._model = _core.CompleterModel.load(_model_path(path, saving=False), mmap=mmap)
        rank = completer._model.rank_params()
        completer.beam_size = int(rank["beam_size"])
        completer.candidates = int(rank["candidates"])
        completer.model_floor = rank["model_floor"]
        completer.generate = bool(rank["generate"])
        completer.compose_beam = int(rank["compose_beam"])
        completer.compose_words = int(rank["compose_words"])
        completer.copy = rank["copy"]
        completer.follow = rank["follow"]
        return completer

    def __getstate__(self) -> dict[str, object]:
        state = dict(vars(self))
        state["_model"] = None if self._model is None else self._model.to_bytes()
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        data = state.pop("_model")
        self.read_report_ = None  # absent from pickles made before it existed
        self.live_half_life, self.live_cap = 86_400.0, 100_000  # likewise
        self.live_min_clients = 3
        self.range_rows = False  # likewise
        vars(self).update(state)
        self._model = None if not isinstance(data, bytes) else _core.CompleterModel.from_bytes(data)
        if self._model is not None:
            # Live counts are not pickled (nor saved): they stay with the running object.
            self._model.reset_live(self.live_half_life, self.live_cap, self.live_min_clients)
