"""The evaluation protocol: cases, buckets, reciprocal ranks."""

from __future__ import annotations

import pytest

from xrcomplete.metrics import bucket_of, cases, evaluate


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
    # Only the first k completions count.
    assert evaluate(lambda prev, prefix: answers[prefix], [("prev", "abcd")], k=1).mrr == 0.25
    with pytest.raises(ValueError, match="k must be >= 1"):
        evaluate(lambda prev, prefix: [], [], k=0)
