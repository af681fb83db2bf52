"""The evaluation protocol: cases, buckets, reciprocal ranks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xrcomplete.metrics import bleu, bucket_of, cases, evaluate, evaluate_batch, prefix_bleu


def test_every_prefix_of_the_next_query_is_a_case() -> None:
    assert list(cases([("p", "abc")])) == [
        ("p", "a", "abc"),
        ("p", "ab", "abc"),
        ("p", "abc", "abc"),
    ]


def test_buckets_follow_the_protocol() -> None:
    assert [bucket_of(n) for n in (1, 3, 4, 7, 8, 40)] == ["1-3", "1-3", "4-7", "4-7", "8+", "8+"]
    with pytest.raises(ValueError):
        bucket_of(0)


def test_reciprocal_ranks_by_hand() -> None:
    # Next query "abcd": prefixes a, ab, abc (bucket 1-3) and abcd (bucket 4-7).
    answers = {
        "a": ["x", "abcd"],
        "ab": ["abcd"],
        "abc": ["x", "y", "z"],
        "abcd": ["y", "z", "abcd"],
    }
    report = evaluate(lambda prev, prefix: answers[prefix], [("prev", "abcd")], k=10)
    assert report.cases == 4 and report.pairs == 1
    assert report.mrr == pytest.approx((1 / 2 + 1 + 0 + 1 / 3) / 4)
    assert report.bucket_mrr("1-3") == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert report.bucket_mrr("4-7") == pytest.approx(1 / 3)
    assert report.bucket_mrr("8+") == 0.0
    assert report.success == pytest.approx(3 / 4)
    # One pair: per pair = per case; first at rank 1 after 2 of 4 characters: 2 / 4 saved.
    assert report.pair_mrr == pytest.approx(report.mrr)
    assert report.keystrokes_saved == pytest.approx(2 / 4)
    # Only the first k completions count.
    assert evaluate(lambda prev, prefix: answers[prefix], [("prev", "abcd")], k=1).mrr == 0.25
    with pytest.raises(ValueError, match="k must be >= 1"):
        evaluate(lambda prev, prefix: [], [], k=0)


def test_batch_evaluation_equals_one_call_at_a_time() -> None:
    pairs = [("p", "abcd"), ("", "abx"), ("q", "zz")]

    def complete(prev: str, prefix: str) -> list[str]:
        return [q for q in ("abx", "abcd", "zz" + prev) if q.startswith(prefix)]

    one = evaluate(complete, pairs, k=2)
    for chunk in (1, 3, 100):
        batch = evaluate_batch(
            lambda ps, xs: [[(q, 0.0) for q in complete(p, x)] for p, x in zip(ps, xs)],
            pairs,
            k=2,
            chunk=chunk,
        )
        assert (batch.mrr, batch.cases, batch.pairs, batch.bleu) == (
            one.mrr,
            one.cases,
            one.pairs,
            one.bleu,
        )
        assert batch.by_bucket == one.by_bucket
        assert (batch.pair_mrr, batch.keystrokes_saved) == (one.pair_mrr, one.keystrokes_saved)
    with pytest.raises(ValueError, match="answers for"):
        evaluate_batch(lambda ps, xs: [], pairs)


def test_bleu_and_prefix_bleu() -> None:
    assert bleu("a b c d", "a b c d") == pytest.approx(1.0)
    assert bleu("", "a") == 0.0 and bleu("x y", "a b") == 0.0
    # Shorter candidates pay the brevity penalty; more shared n-grams score higher.
    assert bleu("a b", "a b c d") < bleu("a b c", "a b c d") < 1.0
    # PBLEU scores what follows the word being typed: a wrong completion of it scores low.
    assert prefix_bleu("cheap flights", "cheap flowers", "cheap fl") == 0.0
    assert prefix_bleu("cheap flights to rome", "cheap flights", "cheap fl") < 1.0
    assert prefix_bleu("cheap flights", "cheap flights", "cheap flights") == 1.0
    assert prefix_bleu("cheap flights x", "cheap flights", "cheap flights") == 0.0
    assert prefix_bleu("dog", "cheap", "ch") == 0.0
    report = evaluate(lambda prev, prefix: ["abc"], [("", "abc")])
    assert report.bleu == 1.0 and report.pbleu == 1.0


@given(
    pairs=st.lists(
        st.tuples(st.sampled_from(["", "p"]), st.text("ab", min_size=1, max_size=6)),
        max_size=8,
    ),
    chunk=st.integers(1, 9),
)
def test_per_pair_mrr_weighs_every_pair_alike(pairs: list[tuple[str, str]], chunk: int) -> None:
    # A completer that knows only queries of even length, and suggests them shortest first.
    known = sorted({n for _, n in pairs if len(n) % 2 == 0}, key=lambda q: (len(q), q))

    def complete(prev: str, prefix: str) -> list[str]:
        return [q for q in known if q.startswith(prefix)]

    report = evaluate_batch(
        lambda ps, xs: [complete(p, x) for p, x in zip(ps, xs)], pairs, 3, chunk
    )
    per_pair, saved = [], []
    for _, nxt in pairs:
        rrs = []
        for n in range(1, len(nxt) + 1):
            top = complete("", nxt[:n])[:3]
            rrs.append(1 / (top.index(nxt) + 1) if nxt in top else 0.0)
        per_pair.append(sum(rrs) / len(rrs))
        first = [n for n, rr in enumerate(rrs, 1) if rr == 1.0]
        saved.append((len(nxt) - first[0]) / len(nxt) if first else 0.0)
    assert report.pairs == len(pairs)
    assert report.pair_mrr == pytest.approx(sum(per_pair) / len(pairs) if pairs else 0.0)
    assert report.keystrokes_saved == pytest.approx(sum(saved) / len(pairs) if pairs else 0.0)
    assert 0.0 <= report.keystrokes_saved < 1.0
