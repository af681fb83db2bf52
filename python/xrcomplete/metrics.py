"""Evaluation of query autocompletion, by the project's protocol (see the data README).

Every (previous query, next query) pair gives one case per prefix of the next query (1 to
``len(next)`` characters); the answer is the next query. MRR@k is the mean of 1/rank of the
answer among the first k completions (0 when absent), overall and by prefix length: 1-3, 4-7,
8+ characters. Success@k is the share of cases with the answer among the first k.

>>> pairs = [("weather", "wells fargo")]
>>> report = evaluate(lambda prev, prefix: ["wells fargo", "walmart"], pairs, k=10)
>>> report.mrr, report.cases
(1.0, 11)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

#: Prefix-length buckets of the protocol: (name, shortest, longest or None).
BUCKETS: tuple[tuple[str, int, int | None], ...] = (("1-3", 1, 3), ("4-7", 4, 7), ("8+", 8, None))

Complete = Callable[[str, str], Sequence[str]]


def bucket_of(prefix_length: int) -> str:
    """The protocol's bucket of a prefix length (>= 1)."""
    if prefix_length < 1:
        raise ValueError(f"prefix lengths start at 1, got {prefix_length}")
    for name, low, high in BUCKETS:
        if prefix_length >= low and (high is None or prefix_length <= high):
            return name
    raise AssertionError("the buckets cover every length")  # pragma: no cover


def cases(pairs: Iterable[tuple[str, str]]) -> Iterator[tuple[str, str, str]]:
    """(previous query, prefix, next query) for every prefix of every pair's next query."""
    for prev, nxt in pairs:
        for length in range(1, len(nxt) + 1):
            yield prev, nxt[:length], nxt


@dataclass
class Report:
    """MRR@k and success@k, overall and by prefix-length bucket."""

    k: int
    pairs: int = 0
    cases: int = 0
    reciprocal_ranks: float = 0.0
    hits: int = 0
    by_bucket: dict[str, list[float]] = field(
        default_factory=lambda: {name: [0.0, 0.0, 0.0] for name, _, _ in BUCKETS}
    )  # bucket -> [cases, sum of reciprocal ranks, hits]

    @property
    def mrr(self) -> float:
        """MRR@k over all cases."""
        return self.reciprocal_ranks / self.cases if self.cases else 0.0

    @property
    def success(self) -> float:
        """Success@k over all cases."""
        return self.hits / self.cases if self.cases else 0.0

    def bucket_mrr(self, name: str) -> float:
        """MRR@k over the cases of one bucket ("1-3", "4-7", "8+")."""
        n, rr, _ = self.by_bucket[name]
        return rr / n if n else 0.0

    def row(self) -> str:
        """One line: overall MRR, then by bucket."""
        buckets = "  ".join(f"{n}: {self.bucket_mrr(n):.3f}" for n, _, _ in BUCKETS)
        return f"MRR@{self.k} {self.mrr:.3f}  ({buckets})  success@{self.k} {self.success:.3f}"


def evaluate(complete: Complete, pairs: Iterable[tuple[str, str]], k: int = 10) -> Report:
    """Scores ``complete(prev, prefix) -> completions, best first`` on every case of ``pairs``."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    report = Report(k=k)
    for prev, nxt in pairs:
        report.pairs += 1
        for prev_, prefix, answer in cases([(prev, nxt)]):
            found = list(complete(prev_, prefix))[:k]
            rr = 1.0 / (found.index(answer) + 1) if answer in found else 0.0
            report.cases += 1
            report.reciprocal_ranks += rr
            report.hits += rr > 0
            stats = report.by_bucket[bucket_of(len(prefix))]
            stats[0] += 1
            stats[1] += rr
            stats[2] += rr > 0
    return report
