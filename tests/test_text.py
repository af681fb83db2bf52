"""Text features: equal to scikit-learn with prefix weighting off; the weighting's properties."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from helpers import run_in_threads
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction.text import TfidfVectorizer as SkTfidf
from sklearn.preprocessing import normalize

from xrcomplete import FeatureConcat, NotFittedError, TfidfVectorizer

# Characters that exercise the parts most likely to differ from Python: whitespace that only
# Python's str.isspace knows (U+001C), no-break and ideographic spaces, final sigma, a
# lower-casing that grows ('İ'), titlecase, combining marks (not word characters), CJK, emoji.
ALPHABET = list("aAbBzZ09 _-.'\t\n") + list("\x1c\xa0\u3000ÉéßẞΣσİǅ中文😀\u0301٣")
texts = st.text(st.sampled_from(ALPHABET), max_size=14)
docs_st = st.lists(texts, min_size=1, max_size=12)

options_st = st.fixed_dictionaries(
    {
        "analyzer": st.sampled_from(["char_wb", "char", "word"]),
        "ngram_range": st.tuples(st.integers(1, 3), st.integers(0, 2)).map(
            lambda t: (t[0], t[0] + t[1])
        ),
        "lowercase": st.booleans(),
        "sublinear_tf": st.booleans(),
        "use_idf": st.booleans(),
        "smooth_idf": st.booleans(),
        "norm": st.sampled_from(["l2", "l1", None]),
        "min_df": st.sampled_from([1, 2, 0.0, 0.3]),
        "max_df": st.sampled_from([1.0, 0.8, 5]),
    }
)


def sklearn_result(docs: list[str], probes: list[str], options: dict[str, Any]) -> Any:
    try:
        sk = SkTfidf(dtype=np.float64, **options).fit(docs)
    except ValueError:
        return None
    return sk.get_feature_names_out().tolist(), sk.transform(docs + probes).toarray()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(docs_st, st.lists(texts, max_size=4), options_st)
def test_equals_scikit_learn_without_prefix_weighting(
    docs: list[str], probes: list[str], options: dict[str, Any]
) -> None:
    expected = sklearn_result(docs, probes, options)
    ours = TfidfVectorizer(**options)
    if expected is None:
        # scikit-learn refuses (empty vocabulary, nothing left after pruning): so do we.
        with pytest.raises(ValueError):
            ours.fit(docs)
        return
    names, dense = expected
    ours.fit(docs)
    assert ours.get_feature_names_out().tolist() == names
    x = ours.transform(docs + probes)
    assert x.dtype == np.float32
    assert x.has_sorted_indices
    np.testing.assert_allclose(x.toarray(), dense, rtol=1e-6, atol=1e-6)


def test_max_features_keeps_the_most_frequent_terms_like_scikit_learn() -> None:
    docs = ["aa aa aa bb bb cc", "aa bb dd", "aa ee"]  # counts: aa 5, bb 3, then ties of 1
    for k in (1, 2):
        sk = SkTfidf(analyzer="word", max_features=k).fit(docs)
        ours = TfidfVectorizer(analyzer="word", ngram_range=(1, 1), max_features=k).fit(docs)
        assert ours.get_feature_names_out().tolist() == sk.get_feature_names_out().tolist()
    # Ties are broken by term order (scikit-learn's order for ties is unspecified).
    ours = TfidfVectorizer(analyzer="word", ngram_range=(1, 1), max_features=3).fit(docs)
    assert ours.get_feature_names_out().tolist() == ["aa", "bb", "cc"]


@settings(max_examples=100, deadline=None)
@given(docs_st, st.sampled_from(["char_wb", "char", "word"]), st.floats(0.0, 1.0))
def test_alpha_zero_is_plain_tfidf(docs: list[str], analyzer: str, decay: float) -> None:
    plain = TfidfVectorizer(analyzer=analyzer)
    weighted = TfidfVectorizer(
        analyzer=analyzer, prefix_weighting="exponential", alpha=0.0, decay=decay
    )
    try:
        a = plain.fit_transform(docs)
    except ValueError:
        return
    b = weighted.fit_transform(docs)
    assert (a != b).nnz == 0


@settings(max_examples=100, deadline=None)
@given(
    st.text(st.sampled_from(list("abc")), min_size=2, max_size=12),
    st.sampled_from(["harmonic", "exponential"]),
)
def test_weighting_is_non_increasing_in_position(text: str, scheme: str) -> None:
    # Unigrams of a text of distinct positions: an earlier occurrence of a character never counts
    # less than a later one, so the first character's tf is at least the last one's when both
    # occur once. Checked on the raw tf (no idf, no norm).
    options: dict[str, Any] = dict(
        analyzer="char", ngram_range=(1, 1), use_idf=False, norm=None, lowercase=False
    )
    v = TfidfVectorizer(prefix_weighting=scheme, alpha=1.0, decay=0.7, **options).fit([text])
    tf = dict(zip(v.get_feature_names_out(), v.transform([text]).toarray()[0]))
    first, last = text[0], text[-1]
    if text.count(first) == 1 and text.count(last) == 1:
        assert tf[first] > tf[last]
    counts = TfidfVectorizer(**options).fit([text]).transform([text]).toarray()[0]
    # Every occurrence counts at most 2 (exponential, alpha=1) and more than 0.
    assert np.all(v.transform([text]).toarray()[0] <= 2 * counts + 1e-6)
    assert np.all(v.transform([text]).toarray()[0] > 0)


def cosine(x: sp.csr_matrix, a: int, b: int) -> float:
    return float(x[a].multiply(x[b]).sum())


def test_prefix_weighting_brings_a_prefix_closer_to_its_completions() -> None:
    docs = ["iphone", "zip", "iphone case", "zip code", "ipad", "vip lounge"]
    for scheme in ("harmonic", "exponential"):
        plain = TfidfVectorizer().fit(docs).transform(["ip", "iphone", "zip"])
        weighted = (
            TfidfVectorizer(prefix_weighting=scheme, alpha=4.0, decay=0.3)
            .fit(docs)
            .transform(["ip", "iphone", "zip"])
        )
        gap_plain = cosine(plain, 0, 1) - cosine(plain, 0, 2)
        gap_weighted = cosine(weighted, 0, 1) - cosine(weighted, 0, 2)
        assert gap_weighted > gap_plain, scheme


def test_position_scope_word_restarts_positions_in_each_word() -> None:
    options: dict[str, Any] = dict(
        analyzer="char_wb",
        ngram_range=(2, 2),
        use_idf=False,
        norm=None,
        prefix_weighting="harmonic",
    )
    by_string = TfidfVectorizer(position_scope="string", **options).fit(["ab cd"])
    by_word = TfidfVectorizer(position_scope="word", **options).fit(["ab cd"])
    col = by_string.vocabulary_[" c"]
    # " c" is the 4th bigram of the string but the 1st of its word.
    assert by_string.transform(["ab cd"])[0, col] == pytest.approx(1 / 4)
    assert by_word.transform(["ab cd"])[0, col] == pytest.approx(1.0)


def test_empty_and_blank_strings_give_empty_rows() -> None:
    v = TfidfVectorizer().fit(["hello world"])
    x = v.transform(["", "   ", "\t\u3000"])
    assert x.shape == (3, v.n_features_)
    assert x.nnz == 0
    indices, data = v.transform_one("")
    assert len(indices) == 0 and len(data) == 0


def test_a_one_megabyte_string_works() -> None:
    big = "hello world " * 90_000  # ~1 MB
    v = TfidfVectorizer(prefix_weighting="harmonic").fit(["hello", big])
    x = v.transform([big])
    indices, data = v.transform_one(big)
    np.testing.assert_array_equal(x.indices, indices)
    np.testing.assert_allclose(x.data, data)
    assert np.linalg.norm(data) == pytest.approx(1.0, rel=1e-5)


def test_transform_one_equals_a_row_of_transform() -> None:
    docs = ["cheap flights", "cheap hotels paris", "hotwire"]
    v = TfidfVectorizer(prefix_weighting="exponential", alpha=2.0, decay=0.5).fit(docs)
    docs.append("ho")
    x = v.transform(docs)
    for r, doc in enumerate(docs):
        indices, data = v.transform_one(doc)
        assert indices.dtype == np.int32 and data.dtype == np.float32
        np.testing.assert_array_equal(indices, x[r].indices)
        np.testing.assert_array_equal(data, x[r].data)


def test_rows_are_identical_from_eight_threads() -> None:
    docs = [f"query {i % 101} number {i % 7}" for i in range(3000)]
    v = TfidfVectorizer(prefix_weighting="harmonic").fit(docs)
    serial = v.transform(docs)
    singles = [v.transform_one(d) for d in docs[:300]]

    def work() -> bool:
        same: bool = (v.transform(docs) != serial).nnz == 0
        for d, (i, x) in zip(docs[:300], singles):
            j, y = v.transform_one(d)
            same = same and np.array_equal(i, j) and np.array_equal(x, y)
        return same

    assert all(run_in_threads(work))


def test_feature_concat_equals_stacked_blocks_renormalised() -> None:
    prev = ["cheap flights", "", "weather boston", "cheap flights"]
    nxt = ["hotels", "google", "weather com", "hotwire"]
    blocks = [
        TfidfVectorizer(analyzer="word", ngram_range=(1, 2)),
        TfidfVectorizer(prefix_weighting="harmonic"),
    ]
    both = FeatureConcat(blocks).fit(prev, nxt)
    prefixes = ["ho", "g", "weather c", "hot"]
    x = both.transform(prev, prefixes)
    expected = normalize(sp.hstack([blocks[0].transform(prev), blocks[1].transform(prefixes)]))
    np.testing.assert_allclose(x.toarray(), expected.toarray(), atol=1e-6)
    assert both.offsets_ == [0, blocks[0].n_features_]
    indices, data = both.transform_one("cheap flights", "hot")
    np.testing.assert_array_equal(indices, x[3].indices)
    np.testing.assert_allclose(data, x[3].data, rtol=1e-6)
    # Blocks fitted beforehand are used as they are.
    again = FeatureConcat(blocks)
    assert (again.transform(prev, prefixes) != x).nnz == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"analyzer": "chars"}, "analyzer must be one of"),
        ({"ngram_range": (0, 2)}, "ngram_range"),
        ({"ngram_range": (3, 2)}, "ngram_range"),
        ({"ngram_range": (-1, 2)}, "ngram_range"),
        ({"prefix_weighting": "linear"}, "prefix_weighting must be one of"),
        ({"prefix_weighting": "exponential", "alpha": -1.0}, "alpha"),
        ({"prefix_weighting": "exponential", "decay": 1.5}, "decay"),
        ({"position_scope": "sentence"}, "position_scope"),
        ({"min_df": -1}, "min_df"),
        ({"min_df": 1.5}, "min_df"),
        ({"max_features": 0}, "max_features"),
        ({"norm": "l3"}, "norm must be one of"),
        ({"min_df": 3, "max_df": 2}, "max_df corresponds to fewer documents than min_df"),
    ],
)
def test_bad_options_raise_value_error(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TfidfVectorizer(**options).fit(["some text", "more text"])


def test_bad_documents_and_misuse_raise_clear_errors() -> None:
    with pytest.raises(TypeError, match="not a single str"):
        TfidfVectorizer().fit("just one string")
    with pytest.raises(TypeError, match=r"docs\[1\] must be a str, got int"):
        TfidfVectorizer().fit(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="min_df must be an int or a float, not bool"):
        TfidfVectorizer(min_df=True).fit(["a b"])
    with pytest.raises(ValueError, match="at least one document"):
        TfidfVectorizer().fit([])
    with pytest.raises(ValueError, match="empty vocabulary"):
        TfidfVectorizer().fit(["", "  "])
    with pytest.raises(NotFittedError):
        TfidfVectorizer().transform(["x"])
    with pytest.raises(UnicodeEncodeError):
        TfidfVectorizer().fit(["\ud800"])
    v = TfidfVectorizer().fit(["abc"])
    with pytest.raises(ValueError, match="expected 2 columns"):
        FeatureConcat([v, v]).transform(["abc"])
    with pytest.raises(ValueError, match="column 1 has 2 texts"):
        FeatureConcat([v, v]).transform(["abc"], ["a", "b"])
    with pytest.raises(NotFittedError):
        FeatureConcat([TfidfVectorizer()]).transform(["x"])


def test_nfkc_normalises_compatibility_characters() -> None:
    v = TfidfVectorizer(analyzer="word", ngram_range=(1, 1), nfkc=True).fit(["ﬁle Ｆｕｌｌ"])
    assert v.get_feature_names_out().tolist() == ["file", "full"]
