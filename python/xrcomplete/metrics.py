"""Evaluation of query autocompletion, by the project's protocol (see the data README).

Every (previous query, next query) pair gives one case per prefix of the next query (1 to
``len(next)`` characters); the answer is the next query. MRR@k is the mean of 1/rank of the
answer among the first k completions (0 when absent), overall and by prefix length: 1-3, 4-7,
8+ characters. Success@k is the share of cases with the answer among the first k.

Two more figures per pair: ``pair_mrr`` weighs every pair alike (PECOS's qp2q protocol: one
prefix per pair, its length uniform over 1..len(next), computed in expectation: the mean
reciprocal rank over a pair's prefixes, then over pairs), and ``keystrokes_saved`` is the share
of the next query's characters a user need not type: those after the shortest prefix at which
the answer is the first suggestion (0 when it never is).

>>> pairs = [("weather", "wells fargo")]
>>> report = evaluate(lambda prev, prefix: ["wells fargo", "walmart"], pairs, k=10)
>>> report.mrr, report.cases, report.pair_mrr, round(report.keystrokes_saved, 3)
(1.0, 11, 1.0, 0.909)
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

#: Prefix-length buckets of the protocol: (name, shortest, longest or None).
BUCKETS: tuple[tuple[str, int, int | None], ...] = (("1-3", 1, 3), ("4-7", 4, 7), ("8+", 8, None))

#: What a case's prefix is typed after: the previous query, or the session's searches so far,
#: oldest first (``xrcomplete.data.session_histories``).
Prev = Union[str, Sequence[str]]
Complete = Callable[[Prev, str], Sequence[str]]
CompleteBatch = Callable[[list[Prev], list[str]], Sequence[Sequence[Any]]]


def bucket_of(prefix_length: int) -> str:
    """The protocol's bucket of a prefix length (>= 1)."""
    if prefix_length < 1:
        raise ValueError(f"prefix lengths start at 1, got {prefix_length}")
    for name, low, high in BUCKETS:
        if prefix_length >= low and (high is None or prefix_length <= high):
            return name
    raise AssertionError("the buckets cover every length")  # pragma: no cover


def cases(pairs: Iterable[tuple[Prev, str]]) -> Iterator[tuple[Prev, str, str]]:
    """(previous query, prefix, next query) for every prefix of every pair's next query (the
    previous query as given: a str, or the session's searches)."""
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
    bleu_sum: float = 0.0
    pbleu_sum: float = 0.0
    by_bucket: dict[str, list[float]] = field(
        default_factory=lambda: {name: [0.0, 0.0, 0.0] for name, _, _ in BUCKETS}
    )  # bucket -> [cases, sum of reciprocal ranks, hits]
    pair_mrr_sum: float = 0.0
    saved_share_sum: float = 0.0

    @property
    def pair_mrr(self) -> float:
        """MRR@k per pair: each pair's mean over its prefixes, averaged over pairs."""
        return self.pair_mrr_sum / self.pairs if self.pairs else 0.0

    @property
    def keystrokes_saved(self) -> float:
        """Mean share of a next query's characters after the shortest prefix that has it first."""
        return self.saved_share_sum / self.pairs if self.pairs else 0.0

    def add_pair(self, reciprocal_ranks: Sequence[float]) -> None:
        """Counts one pair from the reciprocal ranks of its prefixes of 1, 2, ... characters
        (each already counted by ``add``)."""
        n = len(reciprocal_ranks)
        self.pairs += 1
        if n:
            self.pair_mrr_sum += sum(reciprocal_ranks) / n
            first = next((i for i, rr in enumerate(reciprocal_ranks) if rr == 1.0), None)
            if first is not None:
                self.saved_share_sum += (n - (first + 1)) / n

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

    @property
    def bleu(self) -> float:
        """Mean BLEU of the top suggestion against the answer (0 for no suggestion)."""
        return self.bleu_sum / self.cases if self.cases else 0.0

    @property
    def pbleu(self) -> float:
        """Mean ``prefix_bleu`` of the top suggestion."""
        return self.pbleu_sum / self.cases if self.cases else 0.0

    def add(self, prefix: str, found: Sequence[str], answer: str) -> float:
        """Counts one case: the first ``k`` suggestions ``found`` for ``prefix``, best first.
        Returns its reciprocal rank."""
        found = list(found)[: self.k]
        rr = 1.0 / (found.index(answer) + 1) if answer in found else 0.0
        self.cases += 1
        self.reciprocal_ranks += rr
        self.hits += rr > 0
        if found:
            self.bleu_sum += bleu(found[0], answer)
            self.pbleu_sum += prefix_bleu(found[0], answer, prefix)
        stats = self.by_bucket[bucket_of(len(prefix))]
        stats[0] += 1
        stats[1] += rr
        stats[2] += rr > 0
        return rr

    def row(self) -> str:
        """One line: overall MRR, then by bucket."""
        buckets = "  ".join(f"{n}: {self.bucket_mrr(n):.3f}" for n, _, _ in BUCKETS)
        return (
            f"MRR@{self.k} {self.mrr:.3f}  ({buckets})  per pair {self.pair_mrr:.3f}  "
            f"success@{self.k} {self.success:.3f}  keystrokes saved {self.keystrokes_saved:.3f}  "
            f"BLEU {self.bleu:.3f}  PBLEU {self.pbleu:.3f}"
        )


def _ngrams(words: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def bleu(candidate: str, reference: str, max_n: int = 4) -> float:
    """Sentence BLEU of ``candidate`` against ``reference`` over words: the geometric mean of
    the modified n-gram precisions for n = 1..``max_n``, add-one smoothed for n > 1 (Lin and Och,
    2004; short queries have few n-grams), times the brevity penalty. 0 for an empty candidate.

    >>> bleu("cheap flights to boston", "cheap flights to boston")
    1.0
    >>> round(bleu("cheap flights", "cheap flights to boston"), 3)
    0.368
    """
    cand, ref = candidate.split(), reference.split()
    if not cand or not ref:
        return 0.0
    log_sum = 0.0
    for n in range(1, max_n + 1):
        c, r = _ngrams(cand, n), _ngrams(ref, n)
        matches = sum(min(v, r[g]) for g, v in c.items())
        total = max(len(cand) - n + 1, 0)
        if n == 1:
            if matches == 0:
                return 0.0
            log_sum += math.log(matches / total)
        else:
            log_sum += math.log((matches + 1) / (total + 1))
    brevity = min(0.0, 1.0 - len(ref) / len(cand))
    return math.exp(log_sum / max_n + brevity)


def prefix_bleu(candidate: str, reference: str, prefix: str) -> float:
    """BLEU of what the suggestion adds to the typed prefix: ``bleu`` of the candidate's and the
    reference's text after ``prefix`` (the completed part of the current word onwards). When the
    reference ends with the prefix, 1.0 if the candidate does too, else 0."""
    if not (candidate.startswith(prefix) and reference.startswith(prefix)):
        return 0.0
    start = prefix.rfind(" ") + 1  # the word being typed counts whole
    cand, ref = candidate[start:], reference[start:]
    if not reference[len(prefix) :]:
        return 1.0 if candidate == reference else 0.0
    return bleu(cand, ref)


def evaluate(complete: Complete, pairs: Iterable[tuple[Prev, str]], k: int = 10) -> Report:
    """Scores ``complete(prev, prefix) -> completions, best first`` on every case of ``pairs``."""
    return evaluate_batch(
        lambda prevs, prefixes: [complete(p, x) for p, x in zip(prevs, prefixes)], pairs, k, 1
    )


def evaluate_batch(
    complete_batch: CompleteBatch,
    pairs: Iterable[tuple[Prev, str]],
    k: int = 10,
    chunk: int = 4096,
) -> Report:
    """As ``evaluate``, with ``complete_batch(prevs, prefixes) -> completions per case`` called
    on up to ``chunk`` cases at a time (e.g. ``Completer.complete_batch``, which runs them in
    parallel)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    report = Report(k=k)
    batch: list[tuple[Prev, str, str]] = []
    pair_rrs: list[float] = []  # the reciprocal ranks of the pair being scored

    def flush() -> None:
        found_all = complete_batch([c[0] for c in batch], [c[1] for c in batch])
        if len(found_all) != len(batch):
            raise ValueError(f"complete_batch gave {len(found_all)} answers for {len(batch)} cases")
        for (_, prefix, answer), found in zip(batch, found_all):
            top = [q if isinstance(q, str) else q[0] for q in list(found)[:k]]
            pair_rrs.append(report.add(prefix, top, answer))
            if len(prefix) == len(answer):  # the pair's last case
                report.add_pair(pair_rrs)
                pair_rrs.clear()
        batch.clear()

    for _prev, nxt in pairs:
        if not nxt:
            report.add_pair([])
            continue
        batch.extend(cases([(_prev, nxt)]))
        if len(batch) >= chunk:
            flush()
    if batch:
        flush()
    return report


def recall_at_k(found: Sequence[str], relevant: Iterable[str], k: int) -> float:
    """Share of the ``relevant`` items among the first ``k`` of ``found`` (0 if none is
    relevant).

    >>> recall_at_k(["a", "x", "b"], {"a", "b", "c", "d"}, k=2)
    0.25
    """
    wanted = set(relevant)
    if not wanted:
        return 0.0
    return len(wanted.intersection(found[:k])) / len(wanted)


def ndcg_at_k(found: Sequence[str], gains: Mapping[str, float], k: int) -> float:
    """Normalised discounted cumulative gain of the first ``k`` of ``found``: gain
    ``gains.get(item, 0)`` at rank ``i`` counts ``gain / log2(i + 1)``; divided by the best
    possible order of ``gains`` (0 when every gain is 0).

    >>> gains = {"a": 2.0, "b": 1.0}
    >>> ndcg_at_k(["a", "b"], gains, k=10), round(ndcg_at_k(["b", "a"], gains, k=10), 3)
    (1.0, 0.86)
    """
    dcg = sum(gains.get(item, 0.0) / math.log2(i + 2) for i, item in enumerate(found[:k]))
    ideal = sorted((g for g in gains.values() if g > 0), reverse=True)[:k]
    best = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / best if best > 0 else 0.0
