"""Hypothesis over the public API with hostile input: any Unicode text (NUL, combining marks,
right-to-left, ideographs, emoji), 1 MB strings, and k of 0, negative or huge. Every call returns
a well-formed answer or raises ValueError / TypeError; nothing else (a Rust panic would surface
as pyo3's PanicException and fail these tests)."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xrcomplete import Completer, FeatureConcat, ProductRetriever, TfidfVectorizer, Trie

# NUL, a combining accent, RTL marks and letters, a space, CJK, an emoji, a BOM.
ODD_CHARACTERS = "\x00\u0301\u200f\u202e\u05d0\u0627 a\u4e2d\U0001f600\ufeff"
HOSTILE = st.one_of(
    st.text(max_size=50),
    st.text(
        alphabet=st.sampled_from("\x00\u0301\u200f\u202e\u05d0\u0627 a\u4e2d\U0001f600\ufeff"),
        max_size=30,
    ),
    st.sampled_from(["", " ", "\x00", "a" * 1_000_000, "\u0301" * 10_000, "é" * 100_000]),
)
KS = st.one_of(st.integers(-3, 40), st.sampled_from([0, 2**31, 2**62]))

_MODELS: dict[str, object] = {}


def models() -> dict[str, object]:
    if not _MODELS:
        words = ["hotels", "hot dogs", "home depot", "\u05d0\u05d1", "中文 查询", "cafe\u0301"]
        pairs = [("", w) for w in words] + [(a, b) for a, b in zip(words, words[1:])]
        _MODELS["trie"] = Trie(words)
        prefix = TfidfVectorizer(
            analyzer="char_wb", ngram_range=(1, 3), prefix_weighting="harmonic"
        )
        _MODELS["concat"] = FeatureConcat([TfidfVectorizer(analyzer="word"), prefix]).fit(
            words, words
        )
        _MODELS["completer"] = Completer(index="trie", progress=False).fit(pairs * 3)
        _MODELS["retriever"] = ProductRetriever(max_leaf_size=2, progress=False).fit(
            words, [f"p{i}" for i in range(len(words))], {f"p{i}": w for i, w in enumerate(words)}
        )
    return _MODELS


def ok_or_value_error(call: object) -> object:
    try:
        return call()  # type: ignore[operator]
    except (ValueError, TypeError):
        return None


#: Examples per run: 200 in the test suite (derandomized), more (random) with
#: XRCOMPLETE_FUZZ_EXAMPLES (benches/fuzz.py).
EXAMPLES = int(os.environ.get("XRCOMPLETE_FUZZ_EXAMPLES", "200"))


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize="XRCOMPLETE_FUZZ_EXAMPLES"
    not in os.environ,  # the suite: the same examples each run
)
@given(text=HOSTILE, other=HOSTILE, k=KS)
def test_hostile_input_gets_answers_or_clear_errors(text: str, other: str, k: int) -> None:
    m = models()
    trie, concat = m["trie"], m["concat"]
    completer, retriever = m["completer"], m["retriever"]
    assert isinstance(trie, Trie) and isinstance(concat, FeatureConcat)
    assert isinstance(completer, Completer) and isinstance(retriever, ProductRetriever)

    found = ok_or_value_error(lambda: trie.completions(text, k))
    assert (found is None) == (k < 0)
    has_range = trie.prefix_range(text) is not None
    assert has_range == any(key.startswith(text) for key in trie.keys())
    indices, values = concat.transform_one(other, text)
    assert len(indices) == len(values)

    got = ok_or_value_error(lambda: completer.complete(other, text, k))
    if k < 0:
        assert got is None
    else:
        assert isinstance(got, list) and len(got) <= k
        typed = text.lstrip().lower()
        assert all(isinstance(q, str) and q.startswith(typed) for q, _ in got)

    hits = ok_or_value_error(lambda: retriever.retrieve(text, k))
    if k < 0:
        assert hits is None
    else:
        assert isinstance(hits, list) and len(hits) <= min(k, 6)


@pytest.mark.parametrize("k", [-1, -(2**63), -(2**64), -(10**30)])
def test_negative_k_is_a_value_error_everywhere(k: int) -> None:
    m = models()
    with pytest.raises(ValueError, match="k must be >= 0"):
        m["completer"].complete("", "h", k)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="k must be >= 0"):
        m["retriever"].retrieve("h", k)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="k must be >= 0"):
        m["trie"].completions("h", k)  # type: ignore[attr-defined]


@pytest.mark.parametrize("k", [2**63 - 1, 2**63, 2**64, 10**20])
def test_a_k_beyond_anything_held_means_all_of_them(k: int) -> None:
    # It used to raise OverflowError past 64 bits (a traceback from `xrcomplete complete -k`).
    m = models()
    completer, trie, retriever = m["completer"], m["trie"], m["retriever"]
    assert isinstance(completer, Completer) and isinstance(trie, Trie)
    assert isinstance(retriever, ProductRetriever)
    assert completer.complete("", "h", k) == completer.complete("", "h", 1000)
    assert completer.complete_batch(["", "x"], ["h", "w"], k) == completer.complete_batch(
        ["", "x"], ["h", "w"], 1000
    )
    assert trie.completions("h", k) == trie.completions("h", 10**6)
    assert retriever.retrieve("drill", k) == retriever.retrieve("drill", 1000)
