"""Training on a Ray cluster, when a log outgrows one machine (``pip install 'xrcomplete[ray]'``).

>>> from xrcomplete import Completer                                      # doctest: +SKIP
>>> from xrcomplete.distributed import RayEngine                          # doctest: +SKIP
>>> Completer().fit_log(["logs/part-01.tsv", "logs/part-02.tsv"],
...                     engine=RayEngine("ray://head:10001"))             # doctest: +SKIP

What runs where (the math stays in the core; this module only moves work and bytes):

- **Reading.** Each file of the log is one task (``read_log_shard`` on a worker): its sessions,
  pairs, query counts and users. The driver merges what the files say of their queries, in
  order: query ids, counts and users as reading the files in a row gives. The pairs stay in the
  cluster: a task per file maps them to the whole log's query ids and joins a session that
  runs on from the file before, so they are the pairs of one machine. Each file's pairs are a
  shard.
- **Training.** The core's fit sends each of its stages as a task to every shard
  (``_core.shard_answer`` / ``_core.shard_pieces`` on a worker), and gets back counts, never
  rows:
  - which pairs are held out for the ranker (the latest, found by counting keys of their times
    under pivots, a few rounds), how often each query was a next query, and the transitions
    between queries; the held-out pairs themselves (at most a million) come to the driver,
    where the ranker learns from them;
  - the matcher: the shards count their training rows, then the terms of those rows (the
    driver merges the counts into the vectorizers), then vectorise their rows and cut them
    into pieces of the training jobs (the top levels of the label tree, and groups of its
    subtrees). The pieces of each job go from the shards' workers to the worker that trains
    it (``_core.part_answer``); only the trained columns come back.

  Each node's problem only reads its parent's rows, in their order, and is seeded by its place
  in the whole tree, so the model is the one trained on one machine, byte for byte.
- **Failures.** A task whose worker dies is run again (``max_retries``, Ray's task retries);
  its answer does not depend on where or how often it ran. An error of the input (a bad row
  with ``errors="strict"``) is raised on the driver as it would be locally.

The files must be readable at the same path from every worker (a shared file system, or the one
machine of a local cluster), and the workers need xrcomplete installed.
"""

from __future__ import annotations

import os
import warnings
from array import array
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from xrcomplete import _core
from xrcomplete.data import (
    LogShard,
    PathLike,
    ReadReport,
    SkippedRowsWarning,
    global_pairs,
    read_log_shard,
)
from xrcomplete.progress import ProgressLine

__all__ = ["Engine", "PairShards", "RayEngine", "RayShards"]

#: Pairs: the ids of their previous queries (-1: none) and next queries, and their times.
_Pairs = tuple[np.ndarray, np.ndarray, "np.ndarray | None"]


class Engine:
    """Where ``Completer.fit_log`` reads the files of a log and trains the matcher.
    ``RayEngine`` is the one there is; the base class says what an engine does."""

    #: The subtrees trained apart are those under the shallowest tree level with at least this
    #: many nodes.
    min_subtrees = 64

    def read_shards(
        self,
        paths: Sequence[PathLike],
        gap_minutes: float,
        errors: str,
        floor: int,
        line: ProgressLine,
    ) -> Iterator[LogShard]:
        """``read_log_shard`` of every file, yielded in the files' order."""
        raise NotImplementedError

    def shards(self, held: list[tuple[object, np.ndarray, int]], rest: _Pairs) -> PairShards:
        """The pairs of a fit as shards where the engine runs the fit's work: ``held``, the
        pairs of files the engine read and left where they were read (its handle, the id in
        the whole log of each of the file's queries, and the previous query of the file's
        first pair, or -1), then ``rest``, pairs given here (query ids, -1: no previous query;
        their times, or None)."""
        raise NotImplementedError


class PairShards:
    """The shards of a fit's pairs, as ``_core.CompleterModel.fit(shards=...)`` calls them:
    ``sizes()`` (pairs per shard, in order), ``timed()`` (whether the pairs have times),
    ``map(task)`` (``_core.shard_answer`` of every shard), ``shuffle(task, n_parts)``
    (``_core.shard_pieces`` of every shard, then ``_core.part_answer`` of each part's pieces)
    and ``n_parts()``. ``close()`` lets them go."""

    def sizes(self) -> list[int]:
        raise NotImplementedError

    def timed(self) -> bool:
        raise NotImplementedError

    def map(self, task: bytes) -> list[bytes]:
        raise NotImplementedError

    def shuffle(self, task: bytes, n_parts: int) -> list[bytes]:
        raise NotImplementedError

    def n_parts(self) -> int:
        raise NotImplementedError

    def close(self) -> None:
        """Frees the shards (after the fit)."""


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ImportError("training on Ray needs Ray: pip install 'xrcomplete[ray]'") from None
    return ray


def _die_once(marker: str | None) -> None:
    """For the tests of retries: the first task to claim ``marker`` kills its worker."""
    if marker is None:
        return
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    os._exit(1)


def _read_shard(path: str, gap_minutes: float, errors: str, floor: int) -> tuple[LogShard, _Pairs]:
    """A task: one file of the log, read on a worker (its warnings are the driver's to give):
    what the driver merges, and the pairs, which stay in the cluster."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedRowsWarning)
        shard = read_log_shard(path, gap_minutes, errors=errors, floor=floor, report=ReadReport())
    pairs = (
        np.frombuffer(shard.prev_ids, dtype=np.int64),
        np.frombuffer(shard.next_ids, dtype=np.int64),
        np.frombuffer(shard.times, dtype=np.float64),
    )
    shard.prev_ids, shard.next_ids, shard.times = array("q"), array("q"), array("d")
    return shard, pairs


def _remap(pairs: _Pairs, ids: np.ndarray, before: int) -> tuple[_Pairs, int]:
    """A task: a file's pairs as ids of the whole log (``global_pairs``), and their number."""
    prev, nxt, times = pairs
    assert times is not None
    found = global_pairs(ids, prev, nxt, times, before)
    return found, len(found[1])


def _shard_answer(task: bytes, shard: int, pairs: _Pairs) -> bytes:
    """A task: a stage of the fit that a shard answers with one file."""
    return _core.shard_answer(task, shard, *pairs)


def _shard_pieces(task: bytes, shard: int, pairs: _Pairs, n_parts: int) -> Any:
    """A task: a shard's rows cut into pieces, one return per part of the work."""
    parts = _core.shard_pieces(task, shard, *pairs)
    if len(parts) != n_parts:
        raise ValueError(f"shard {shard} cut {len(parts)} parts, not {n_parts}")
    return parts if n_parts > 1 else parts[0]


def _part_answer(marker: str | None, *pieces: list[bytes]) -> list[bytes]:
    """A task: the pieces of one part of the work (from every shard, in order) trained."""
    _die_once(marker)
    return _core.part_answer(list(pieces))


class RayEngine(Engine):
    """Reads the files of a log and trains the matcher on a Ray cluster.

    ``address``: the cluster (``ray.init``'s: ``"auto"``, ``"ray://head:10001"``; None: the
    ``RAY_ADDRESS`` environment variable, else a local cluster of ``num_cpus`` CPUs started for
    this process). A connection already made with ``ray.init`` is used as it is.
    ``max_retries``: runs of a task whose worker died. ``min_subtrees``: the subtrees trained
    apart are those under the shallowest tree level with at least this many nodes.
    ``tasks_per_cpu``: the pairs are cut into about this many shards per CPU of the cluster,
    and the training into about this many parts."""

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: int | None = None,
        max_retries: int = 3,
        min_subtrees: int = 64,
        tasks_per_cpu: int = 2,
        _die_once: str | None = None,
    ) -> None:
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if min_subtrees < 1 or tasks_per_cpu < 1:
            raise ValueError(
                f"min_subtrees and tasks_per_cpu must be >= 1, got {min_subtrees}, {tasks_per_cpu}"
            )
        self.address = address
        self.num_cpus = num_cpus
        self.max_retries = max_retries
        self.min_subtrees = min_subtrees
        self.tasks_per_cpu = tasks_per_cpu
        self._marker = _die_once

    def __repr__(self) -> str:
        return f"RayEngine(address={self.address!r}, max_retries={self.max_retries})"

    def _ray(self) -> Any:
        ray = _import_ray()
        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False, "logging_level": "warning"}
            if self.address is None and "RAY_ADDRESS" not in os.environ:
                options["num_cpus"] = self.num_cpus
            ray.init(address=self.address, **options)
        return ray

    def _get(self, ray: Any, refs: Any) -> Any:
        """``ray.get``, a task's own exception raised as itself (a ``LogFormatError`` stays one)."""
        try:
            return ray.get(refs)
        except ray.exceptions.RayTaskError as err:
            cause = getattr(err, "cause", None)
            if isinstance(cause, Exception):
                raise cause from None
            raise

    def read_shards(
        self,
        paths: Sequence[PathLike],
        gap_minutes: float,
        errors: str,
        floor: int,
        line: ProgressLine,
    ) -> Iterator[LogShard]:
        ray = self._ray()
        task = ray.remote(max_retries=self.max_retries, num_returns=2)(_read_shard)
        refs = [task.remote(os.path.abspath(p), gap_minutes, errors, floor) for p in paths]
        for i, (summary, pairs) in enumerate(refs):
            line.update(f"reading {len(paths)} files on Ray: {i} merged", force=True)
            shard: LogShard = self._get(ray, summary)
            # The pairs stay in the cluster, where the fit's tasks read them.
            shard.held = pairs
            if shard.report.skipped:
                warnings.warn(shard.report.summary(), SkippedRowsWarning, stacklevel=3)
            yield shard

    def shards(self, held: list[tuple[object, np.ndarray, int]], rest: _Pairs) -> RayShards:
        return RayShards(self, held, rest)


class RayShards(PairShards):
    """A fit's pairs in shards in a Ray cluster's object store, and the fit's work run on them
    as tasks: each file read on the cluster is a shard (its pairs never leave the cluster),
    and pairs given here are cut into about ``tasks_per_cpu`` shards per CPU."""

    def __init__(
        self,
        engine: RayEngine,
        held: list[tuple[object, np.ndarray, int]],
        rest: _Pairs,
    ) -> None:
        self._engine = engine
        self._ray = ray = engine._ray()
        cpus = int(ray.cluster_resources().get("CPU", 1)) or 1
        self._parts = max(1, cpus * engine.tasks_per_cpu)
        options = {"max_retries": engine.max_retries}
        remap = ray.remote(num_returns=2, **options)(_remap)
        found = [remap.remote(handle, ids, before) for handle, ids, before in held]
        self._refs = [pairs for pairs, _ in found]
        self._sizes = [int(n) for n in engine._get(ray, [n for _, n in found])]
        prev_ids, next_ids, times = rest
        n = len(next_ids)
        if n:
            bounds = np.linspace(0, n, min(self._parts, n) + 1).astype(np.int64)
            for a, b in zip(bounds[:-1], bounds[1:]):
                part = (prev_ids[a:b], next_ids[a:b], None if times is None else times[a:b])
                self._refs.append(ray.put(part))
                self._sizes.append(int(b - a))
        self._timed = times is not None or not n
        self._answer = ray.remote(**options)(_shard_answer)
        self._pieces = ray.remote(**options)(_shard_pieces)
        self._part = ray.remote(**options)(_part_answer)
        #: Tasks run on the cluster, by kind (what the tests look at).
        self.tasks = {"answer": 0, "pieces": 0, "part": 0}

    def sizes(self) -> list[int]:
        return list(self._sizes)

    def timed(self) -> bool:
        return self._timed

    def n_parts(self) -> int:
        return self._parts

    def map(self, task: bytes) -> list[bytes]:
        ref = self._ray.put(task)
        refs = [self._answer.remote(ref, s, pairs) for s, pairs in enumerate(self._refs)]
        self.tasks["answer"] += len(refs)
        answers: list[bytes] = self._engine._get(self._ray, refs)
        return answers

    def shuffle(self, task: bytes, n_parts: int) -> list[bytes]:
        ref = self._ray.put(task)
        cut = []
        for s, pairs in enumerate(self._refs):
            pieces = self._pieces.options(num_returns=n_parts).remote(ref, s, pairs, n_parts)
            # The pieces stay in the cluster: each part's task gets them from the shards' workers.
            cut.append(pieces if n_parts > 1 else [pieces])
        marker = self._engine._marker
        refs = [self._part.remote(marker, *[pieces[p] for pieces in cut]) for p in range(n_parts)]
        self.tasks["pieces"] += len(cut)
        self.tasks["part"] += len(refs)
        answers: list[list[bytes]] = self._engine._get(self._ray, refs)
        return [answer for part in answers for answer in part]

    def close(self) -> None:
        self._refs = []
