"""Training on a Ray cluster, when a log outgrows one machine (``pip install 'xrcomplete[ray]'``).

>>> from xrcomplete import Completer                                      # doctest: +SKIP
>>> from xrcomplete.distributed import RayEngine                          # doctest: +SKIP
>>> Completer().fit_log(["logs/part-01.tsv", "logs/part-02.tsv"],
...                     engine=RayEngine("ray://head:10001"))             # doctest: +SKIP

What runs where (the math stays in the core; this module only moves work and bytes):

- **Reading.** Each file of the log is one task (``read_log_shard`` on a worker): its sessions,
  pairs, query counts and users. The driver merges the files' summaries in order: query ids,
  counts and users as reading the files in a row gives, and a session that runs on from one
  file into the next joined, so the pairs are those of one machine.
- **Training the matcher.** The core trains the top levels of the label tree on the driver, cuts
  the tree below them into subtrees (the subtrees of the shallowest level with at least
  ``min_subtrees`` nodes) and hands their jobs here: the tasks run ``_core.train_subtree`` on
  workers, and the core puts the answers back in place. Each node's problem only reads its
  parent's rows and is seeded by its place in the whole tree, so the model is the one trained on
  one machine, byte for byte.
- **Failures.** A task whose worker dies is run again (``max_retries``, Ray's task retries);
  its answer does not depend on where or how often it ran. An error of the input (a bad row
  with ``errors="strict"``) is raised on the driver as it would be locally.

The files must be readable at the same path from every worker (a shared file system, or the one
machine of a local cluster), and the workers need xrcomplete installed.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from xrcomplete import _core
from xrcomplete.data import LogShard, PathLike, ReadReport, SkippedRowsWarning, read_log_shard
from xrcomplete.progress import ProgressLine

__all__ = ["Engine", "RayEngine"]


class Engine:
    """Where ``Completer.fit_log`` reads the files of a log and trains the matcher's subtrees.
    ``RayEngine`` is the one there is; the base class says what an engine does."""

    #: The subtrees given to ``run_subtrees`` are those under the shallowest tree level with at
    #: least this many nodes.
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

    def run_subtrees(self, jobs: list[bytes]) -> list[bytes]:
        """``_core.train_subtree`` of every job, in the jobs' order."""
        raise NotImplementedError


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


def _read_shard(path: str, gap_minutes: float, errors: str, floor: int) -> LogShard:
    """A task: one file of the log, read on a worker (its warnings are the driver's to give)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedRowsWarning)
        return read_log_shard(path, gap_minutes, errors=errors, floor=floor, report=ReadReport())


def _train_subtrees(jobs: list[bytes], marker: str | None) -> list[bytes]:
    """A task: subtree jobs trained on a worker."""
    _die_once(marker)
    return [_core.train_subtree(job) for job in jobs]


def _chunks(jobs: list[bytes], n: int) -> list[list[bytes]]:
    """``jobs`` cut into at most ``n`` runs of consecutive jobs of about equal bytes."""
    total = sum(len(j) for j in jobs)
    out: list[list[bytes]] = [[]]
    size = 0
    for job in jobs:
        if out[-1] and size + len(job) / 2 > total * len(out) / n:
            out.append([])
        out[-1].append(job)
        size += len(job)
    return out


class RayEngine(Engine):
    """Reads the files of a log and trains the matcher's subtrees on a Ray cluster.

    ``address``: the cluster (``ray.init``'s: ``"auto"``, ``"ray://head:10001"``; None: the
    ``RAY_ADDRESS`` environment variable, else a local cluster of ``num_cpus`` CPUs started for
    this process). A connection already made with ``ray.init`` is used as it is.
    ``max_retries``: runs of a task whose worker died. ``min_subtrees``: the subtrees trained on
    workers are those under the shallowest tree level with at least this many nodes.
    ``tasks_per_cpu``: subtree jobs are grouped into about this many tasks per CPU of the
    cluster."""

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
        task = ray.remote(max_retries=self.max_retries)(_read_shard)
        refs = [task.remote(os.path.abspath(p), gap_minutes, errors, floor) for p in paths]
        for i, ref in enumerate(refs):
            line.update(f"reading {len(paths)} files on Ray: {i} merged", force=True)
            shard: LogShard = self._get(ray, ref)
            if shard.report.skipped:
                warnings.warn(shard.report.summary(), SkippedRowsWarning, stacklevel=3)
            yield shard

    def run_subtrees(self, jobs: list[bytes]) -> list[bytes]:
        ray = self._ray()
        cpus = int(ray.cluster_resources().get("CPU", 1)) or 1
        task = ray.remote(max_retries=self.max_retries)(_train_subtrees)
        refs = [
            task.remote(chunk, self._marker)
            for chunk in _chunks(jobs, max(1, cpus * self.tasks_per_cpu))
        ]
        return [answer for answers in self._get(ray, refs) for answer in answers]
