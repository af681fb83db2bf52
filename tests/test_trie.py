"""Properties of the Trie through the public Python API, checked against plain-Python references."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
from helpers import run_in_threads
from hypothesis import given, settings
from hypothesis import strategies as st

from xrcomplete import Trie

# Small alphabets make shared prefixes (and ties) common; multi-byte characters make branch
# points fall between the bytes of one character ('é' and 'è' share their first UTF-8 byte).
ALPHABET = st.sampled_from(list("ab é\u00e8中😀\u0301"))
keys = st.text(ALPHABET, min_size=1, max_size=6)
any_keys = st.text(min_size=1, max_size=12)  # all of Unicode but surrogates
weights = st.one_of(st.integers(-3, 5).map(float), st.floats(-1e6, 1e6, allow_nan=False))
items_st = st.lists(st.tuples(keys, weights), max_size=60)


def reference(items: Sequence[tuple[str, float]]) -> dict[str, float]:
    """Weights summed in input order, as the trie promises."""
    summed: dict[str, float] = {}
    for key, weight in items:
        summed[key] = summed.get(key, 0.0) + weight
    return summed


def brute_completions(ref: dict[str, float], prefix: str, k: int) -> list[tuple[str, float]]:
    matching = sorted((key, w) for key, w in ref.items() if key.startswith(prefix))
    # Stable sort on weight over key order: ties stay in key order.
    return sorted(matching, key=lambda kw: -kw[1])[:k]


def prefixes_of(strings: list[str]) -> list[str]:
    found = {""}
    for s in strings:
        found.update(s[:i] for i in range(1, len(s) + 1))
    return sorted(found)


@given(items_st, st.lists(any_keys, max_size=5))
def test_every_key_is_found_with_its_summed_weight_and_nothing_else(
    items: list[tuple[str, float]], probes: list[str]
) -> None:
    trie = Trie(items)
    ref = reference(items)
    assert len(trie) == len(ref)
    for key, weight in ref.items():
        assert key in trie
        assert trie[key] == weight
        assert trie.get(key) == weight
    for probe in probes:
        assert (probe in trie) == (probe in ref)
        assert trie.get(probe, "absent") == ref.get(probe, "absent")


@given(st.lists(st.tuples(any_keys, weights), max_size=40))
def test_iteration_equals_the_sorted_distinct_input(items: list[tuple[str, float]]) -> None:
    trie = Trie(items)
    ref = reference(items)
    assert list(trie) == sorted(ref)
    assert trie.keys() == sorted(ref)
    assert trie.items() == sorted(ref.items())
    for i, key in enumerate(sorted(ref)):
        assert trie.id_of(key) == i
        assert trie.key_of(i) == key


@given(items_st, st.lists(keys, max_size=3), st.integers(0, 12))
def test_completions_equal_a_brute_force_sort(
    items: list[tuple[str, float]], probes: list[str], k: int
) -> None:
    trie = Trie(items)
    ref = reference(items)
    for prefix in prefixes_of([key for key, _ in items] + probes):
        got = trie.completions(prefix, k)
        assert got == brute_completions(ref, prefix, k), prefix
        assert all(key.startswith(prefix) for key, _ in got)


@given(items_st, st.lists(keys, max_size=3))
def test_prefix_range_holds_exactly_the_ids_of_keys_with_the_prefix(
    items: list[tuple[str, float]], probes: list[str]
) -> None:
    trie = Trie(items)
    ordered = sorted(reference(items))
    for prefix in prefixes_of([key for key, _ in items] + probes):
        ids = [i for i, key in enumerate(ordered) if key.startswith(prefix)]
        expected = (ids[0], ids[-1] + 1) if ids else None
        assert trie.prefix_range(prefix) == expected, prefix


@settings(max_examples=20, deadline=None)
@given(st.lists(st.tuples(keys, weights), min_size=1, max_size=200))
def test_answers_are_identical_from_eight_threads_at_once(items: list[tuple[str, float]]) -> None:
    trie = Trie(items)
    prefixes = prefixes_of([key for key, _ in items])
    serial = [(trie.completions(p, 5), trie.prefix_range(p)) for p in prefixes]

    def work() -> list[object]:
        out: list[object] = []
        for _ in range(20):
            out = [(trie.completions(p, 5), trie.prefix_range(p)) for p in prefixes]
        return out

    assert all(r == serial for r in run_in_threads(work))


def test_inputs_of_every_accepted_shape() -> None:
    assert Trie().items() == []
    assert Trie({"b": 2, "a": 1.5}).items() == [("a", 1.5), ("b", 2.0)]
    assert Trie(["x", "y", "x"]).items() == [("x", 2.0), ("y", 1.0)]
    mixed: list[str | tuple[str, float]] = [("x", 1), "x"]
    assert Trie(iter(mixed)).items() == [("x", 2.0)]  # an iterator, mixed shapes
    assert Trie([("n", True)]).items() == [("n", 1.0)]  # bool is an int in Python


def test_completions_of_an_unknown_or_empty_prefix() -> None:
    trie = Trie({"apple": 3, "apricot": 5, "banana": 1})
    assert trie.completions("zzz") == []
    assert trie.prefix_range("zzz") is None
    assert trie.prefix_range("apx") is None
    assert trie.completions("", k=2) == [("apricot", 5.0), ("apple", 3.0)]
    assert trie.completions("a", k=0) == []
    assert trie.completions("a", k=10**15) == [("apricot", 5.0), ("apple", 3.0)]


@pytest.mark.parametrize(
    ("items", "error", "message"),
    [
        ([("", 1.0)], ValueError, "empty key"),
        ([("a", math.nan)], ValueError, "finite"),
        ([("a", math.inf)], ValueError, "finite"),
        ([("a", 1e308), ("a", 1e308)], ValueError, "finite"),
        ("abc", TypeError, "not a single str"),
        ([("a", 1.0, 2.0)], TypeError, "item 0"),
        ([1], TypeError, "item 0 must be a str"),
        ([("a", "heavy")], TypeError, "must be a number"),
        ([(1, 2.0)], TypeError, "item 0"),
        (5, TypeError, "not iterable"),
        (["\ud800"], UnicodeEncodeError, "surrogate"),
    ],
)
def test_bad_input_raises_a_clear_exception(items: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        Trie(items)  # type: ignore[arg-type]


def test_bad_arguments_to_queries_raise_clear_exceptions() -> None:
    trie = Trie({"a": 1.0})
    with pytest.raises(ValueError, match="k must be >= 0"):
        trie.completions("a", -1)
    assert trie.completions("a", 10**30) == [("a", 1.0)]  # beyond 64 bits: all of them
    with pytest.raises(ValueError, match="k must be >= 0"):
        trie.completions("a", -(10**30))
    with pytest.raises(TypeError):
        trie.completions(None, 3)  # type: ignore[arg-type]
    with pytest.raises(IndexError, match="out of range"):
        trie.key_of(1)
    with pytest.raises(IndexError, match="out of range"):
        trie.key_of(-1)
    with pytest.raises(KeyError):
        trie["b"]
    with pytest.raises(KeyError):
        trie[3]  # type: ignore[index]
    assert 3 not in trie
    with pytest.raises(UnicodeEncodeError):
        trie.completions("\udc80")


def test_very_long_keys_and_prefixes() -> None:
    long_key = "q" * 1_000_000
    trie = Trie([(long_key, 2.0), ("q", 1.0), (long_key + "é", 3.0)])
    assert trie[long_key] == 2.0
    assert trie.completions(long_key[:500_000], 2) == [(long_key + "é", 3.0), (long_key, 2.0)]
    assert trie.prefix_range(long_key + "x") is None


def test_the_iterator_walks_in_order_and_stops() -> None:
    it = iter(Trie(["b", "a"]))
    assert iter(it) is it
    assert list(it) == ["a", "b"]
    assert list(it) == []
