"""The session-aware Completer: learning a session pattern, answers that respect the prefix,
persistence, threads, and clear errors."""

from __future__ import annotations

import pickle
import random
from collections import Counter
from pathlib import Path

import pytest
from helpers import run_in_threads
from hypothesis import given, settings
from hypothesis import strategies as st

from xrcomplete import Completer, ModelFormatError, NotFittedError
from xrcomplete.completer import MODEL_FILE
from xrcomplete.data import normalize_query, session_pairs


def synthetic_pairs(seed: int = 0) -> list[tuple[str, str]]:
    """After a query starting with "a", users always search a query starting with "b"; other
    sessions start with popular queries ("bing", "best buy") that win without context."""
    rng = random.Random(seed)
    pairs: list[tuple[str, str]] = []
    follow = {"apple store": "banana bread", "amazon": "barnes and noble", "aol": "bank of america"}
    for _ in range(30):
        for prev, nxt in follow.items():
            pairs.append((prev, nxt))
            pairs.append(("", prev))
        for popular in ("bing", "best buy", "bing maps", "craigslist"):
            pairs.append(("", popular))
            pairs.append((rng.choice(["weather", "news", "craigslist"]), popular))
    rng.shuffle(pairs)
    return pairs


@pytest.fixture(scope="module", params=["trie", "hybrid", "kmeans"])
def completer(request: pytest.FixtureRequest) -> Completer:
    return Completer(index=request.param, max_leaf_size=4, progress=False).fit(synthetic_pairs())


def names(found: list[tuple[str, float]]) -> list[str]:
    return [q for q, _ in found]


def test_the_session_pattern_is_learned(completer: Completer) -> None:
    # Without context "b" goes to the popular queries; after an "a..." query, to its follower.
    # "bing", "best buy" and "bing maps" are searched equally often.
    assert names(completer.complete("", "b", k=1))[0] in ("bing", "best buy", "bing maps")
    for prev, nxt in [
        ("apple store", "banana bread"),
        ("amazon", "barnes and noble"),
        ("aol", "bank of america"),
    ]:
        assert names(completer.complete(prev, "b", k=1)) == [nxt]
        assert names(completer.complete(prev.upper(), " B", k=1)) == [nxt]  # normalised
        assert names(completer.complete(prev, "ba", k=1)) == [nxt]


def test_a_known_prefix_never_gets_an_empty_answer(completer: Completer) -> None:
    queries = {q for pair in synthetic_pairs() for q in pair if q}
    for query in queries:
        for n in range(1, len(query) + 1):
            found = completer.complete("weather", query[:n], k=10)
            assert query in names(found) or len(found) == 10
            # Each starts with what was typed, or says which correction of it.
            for c in found:
                fixed = c.source == "fuzzy" and c.query.startswith(c.matched)
                assert c.query.startswith(query[:n]) or fixed, c


def test_unseen_queries_are_composed_and_marked(completer: Completer) -> None:
    # "bing bread" was never searched: the language model composes it from the log's words,
    # and says so.
    found = completer.complete("", "banana br", k=5)
    assert names(found)[0] == "banana bread"
    assert found[0].source == "seen"
    found = completer.complete("", "bing bre", k=5)
    assert names(found)[0] == "bing bread"
    assert all(c.source == "composed" and c.query.startswith("bing bre") for c in found)
    assert len(set(names(found))) == len(found)
    assert completer.model.complete("", "bing bre", 5, generate=False) == []
    assert completer.complete("", "zzz", k=5) == []


@settings(max_examples=150, deadline=None)
@given(
    prev=st.text(max_size=30),
    prefix=st.one_of(st.text(max_size=12), st.sampled_from(["b", "ba", " B", "bing ", "c"])),
    k=st.integers(0, 25),
    range_rows=st.booleans(),
)
def test_every_answer_starts_with_the_normalised_prefix(
    prev: str, prefix: str, k: int, range_rows: bool
) -> None:
    completer = _small(range_rows)
    found = completer.complete(prev, prefix, k)
    assert len(found) <= k
    typed = prefix.lstrip().lower()
    for c in found:
        # A fuzzy answer starts with a corrected prefix (a typo fixed), and says which.
        assert c.query.startswith(c.matched)
        assert c.matched == typed or c.source == "fuzzy", c
        assert c.source != "fuzzy" or not c.query.startswith(typed), c
    scores = [s for _, s in found]
    assert scores == sorted(scores, reverse=True)
    assert len(set(names(found))) == len(found)


_SMALL: dict[bool, Completer] = {}


def _small(range_rows: bool = False) -> Completer:
    """A completer of the synthetic log (its matcher trained with ``range_rows`` or not)."""
    if range_rows not in _SMALL:
        completer = Completer(index="trie", progress=False, range_rows=range_rows)
        _SMALL[range_rows] = completer.fit(synthetic_pairs())
    return _SMALL[range_rows]


def test_odd_input_gets_answers_or_clear_errors() -> None:
    c = _small()
    assert c.complete("", "", k=3)  # the empty prefix: the most likely queries
    assert c.complete("x" * 1_000_000, "b" + "\u0301" * 1000, k=3) == []
    assert c.complete("\u202eaol", "\x00", k=3) == []
    assert c.complete("", "b", k=10**12)  # a huge k is not a huge allocation
    with pytest.raises(ValueError, match="k must be >= 0"):
        c.complete("", "b", k=-1)
    with pytest.raises(TypeError):
        c.complete(None, "b")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="model_floor"):
        c.model.complete("", "b", 3, model_floor=0.0)
    with pytest.raises(ValueError, match="previous queries but"):
        c.complete_batch(["a", "b"], ["b"])


def test_training_input_is_checked() -> None:
    with pytest.raises(ValueError, match="index must be"):
        Completer(index="btree")
    with pytest.raises(ValueError, match="ranker must be"):
        Completer(ranker="lightgbm")
    with pytest.raises(ValueError, match="ranker_leaves must be >= 2, got 1"):
        Completer(ranker_leaves=1)
    with pytest.raises(TypeError, match="beam_size must be a whole number >= 1, got str"):
        Completer(beam_size="10")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match='unknown option "beam_sise"; did you mean beam_size'):
        Completer(beam_sise=10)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="fuzzy_two"):
        Completer(fuzzy_one=6, fuzzy_two=3)
    with pytest.raises(NotFittedError):
        Completer().complete("", "b")
    with pytest.raises(TypeError, match="pair 1"):
        Completer(progress=False).fit([("a", "b"), ("just one",)])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="must be str"):
        Completer(progress=False).fit([("a", 3)])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="no training pair"):
        Completer(progress=False).fit([("a", "  ")])
    with pytest.raises(ValueError, match="ngram_range"):
        from xrcomplete import TfidfVectorizer

        Completer(prefix_features=TfidfVectorizer(ngram_range=(0, 2))).fit([("a", "b")])


def test_batch_and_threads_give_the_serial_answers() -> None:
    c = _small()
    rng = random.Random(1)
    queries = sorted({q for pair in synthetic_pairs() for q in pair})
    calls = [(rng.choice(queries), rng.choice(queries)[: rng.randint(0, 4)]) for _ in range(300)]
    serial = [c.complete(prev, prefix, 5) for prev, prefix in calls]
    assert c.complete_batch([p for p, _ in calls], [x for _, x in calls], 5) == serial
    results = run_in_threads(lambda: [c.complete(p, x, 5) for p, x in calls], n=8)
    assert all(r == serial for r in results)


def test_save_load_and_pickle_give_identical_answers(tmp_path: Path) -> None:
    c = Completer(index="hybrid", copy=0.25, progress=False).fit(synthetic_pairs())
    calls = [("aol", "b"), ("", "b"), ("weather", "bing "), ("", "")]
    want = [c.complete(p, x) for p, x in calls]
    file = c.save(tmp_path / "model.xrc")
    folder = c.save(str(tmp_path / "dir") + "/")
    assert folder == tmp_path / "dir" / MODEL_FILE and folder.is_file()
    for loaded in (
        Completer.load(file),
        Completer.load(tmp_path / "dir"),
        pickle.loads(pickle.dumps(c)),
    ):
        got = [loaded.complete(p, x) for p, x in calls]
        assert got == want
        assert [[c.source for c in found] for found in got] == [
            [c.source for c in found] for found in want
        ]
        assert loaded.copy == pytest.approx(0.25)
    assert file.read_bytes() == folder.read_bytes()


def test_bad_model_files_raise_model_format_error(tmp_path: Path) -> None:
    file = _small().save(tmp_path / "m.xrc")
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "bad.xrc").write_bytes(bytes(data))
    with pytest.raises(ModelFormatError):
        Completer.load(tmp_path / "bad.xrc")
    (tmp_path / "short.xrc").write_bytes(bytes(data[:100]))
    with pytest.raises(ModelFormatError):
        Completer.load(tmp_path / "short.xrc")
    with pytest.raises(FileNotFoundError):
        Completer.load(tmp_path / "missing.xrc")
    from xrcomplete import Trie

    Trie(["a"]).save(tmp_path / "trie.xrc")
    with pytest.raises(ModelFormatError, match="Completer"):
        Completer.load(tmp_path / "trie.xrc")


@pytest.mark.parametrize("mmap", [False, True])
def test_model_file_errors_name_the_file(tmp_path: Path, mmap: bool) -> None:
    (tmp_path / "short.xrc").write_bytes(b"\0" * 20)
    with pytest.raises(ModelFormatError, match=r"short\.xrc: invalid model file: 20 bytes"):
        Completer.load(tmp_path / "short.xrc", mmap=mmap)
    from xrcomplete import Trie

    Trie(["a"]).save(tmp_path / "trie.xrc")
    with pytest.raises(ModelFormatError, match=r"trie\.xrc: the model file holds a Trie"):
        Completer.load(tmp_path / "trie.xrc", mmap=mmap)


@pytest.mark.parametrize(
    "pairs",
    [
        [("", "hello world"), *[("", "help me")] * 5, ("", "walmart")],
        [("a", "hello world"), *[("", "help me")] * 5],  # "a" yields no word
    ],
)
@pytest.mark.parametrize("index", ["trie", "hybrid", "kmeans"])
def test_a_log_with_no_previous_query_trains_and_completes_by_popularity(
    pairs: list[tuple[str, str]], index: str
) -> None:
    c = Completer(index=index, progress=False).fit(pairs)
    assert names(c.complete("", "hel", k=2))[0] == "help me"  # searched 5 times
    assert set(names(c.complete("anything at all", "he", k=2))) == {"help me", "hello world"}
    assert pickle.loads(pickle.dumps(c)).complete("x", "h") == c.complete("x", "h")


def test_fit_log_counts_every_search_and_pairs_sessions(tmp_path: Path) -> None:
    log = tmp_path / "log.tsv"
    rows = ["AnonID\tQuery\tQueryTime"]
    for user in range(20):
        rows.append(f"{user}\tWeather\t2006-03-01 10:00:00")
        rows.append(f"{user}\twells fargo\t2006-03-01 10:01:00")
        rows.append(f"{user}\twalmart\t2006-03-01 12:00:00")  # a new session
        rows.append(f"{user}\twalmart\t2006-03-01 12:01:00")  # searched twice
    log.write_text("\n".join(rows) + "\n", encoding="utf-8")
    c = Completer(index="trie", progress=False).fit_log(log)
    assert names(c.complete("", "w", k=3)) == ["walmart", "weather", "wells fargo"]
    assert names(c.complete("weather", "w", k=1)) == ["wells fargo"]
    assert c.n_queries_ == 3
    assert Counter(session_pairs(log, first_queries=True))[("", "walmart")] == 20


# Characters this Python's Unicode database assigns: the core lower-cases with the Unicode
# version of Rust's std, which may be newer (U+A7DA is a capital letter since Unicode 16; Python
# 3.11, on Unicode 14, leaves it as it is).
@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(exclude_categories=["Cn", "Cs"])))
def test_normalisation_is_python_strip_and_lower(query: str) -> None:
    assert normalize_query(query) == query.strip().lower()


def test_the_types_of_public_signatures_are_exported() -> None:
    import typing

    import xrcomplete
    from xrcomplete import ProductRetriever

    assert typing.get_type_hints(Completer.complete)["return"] == list[xrcomplete.Completion]
    assert typing.get_type_hints(ProductRetriever.retrieve)["return"] == list[xrcomplete.Hit]
    assert all(hasattr(xrcomplete, name) for name in xrcomplete.__all__)
    assert "about as long" not in (Completer.load.__doc__ or "")


def combination_pairs(users: int = 1500, seed: int = 3) -> list[tuple[str, str]]:
    """Sessions "a <thing>" -> "<colour> <thing>": 24 things in 20 colours, so many combinations
    are first searched late in the log, and a learned ranker sees composed answers be right."""
    rng = random.Random(seed)
    things = ["belts"] + [f"thing{i}" for i in range(23)]
    colours = ["pink"] + [f"colour{i}" for i in range(19)]
    pairs: list[tuple[str, str]] = []
    for _ in range(users):
        thing, colour = rng.choice(things), rng.choice(colours)
        pairs += [("", f"a {thing}"), (f"a {thing}", f"{colour} {thing}")]
    return pairs


_LEARNED: list[Completer] = []


def _learned() -> Completer:
    """A completer whose ranker was learned, trained without ever seeing "pink belts"."""
    if not _LEARNED:
        pairs = [p for p in combination_pairs() if p[1] != "pink belts"]
        _LEARNED.append(Completer(index="trie", progress=False).fit(pairs))
    return _LEARNED[0]


def test_an_unseen_combination_of_seen_words_is_completed() -> None:
    c = _learned()
    assert c.model.ranker_learned
    found = c.complete("a belts", "pi", k=3)
    assert found[0].query == "pink belts" and found[0].source == "composed"
    # Without the session, "pi" is just one of the pink things.
    assert all(f.query.startswith("pi") for f in c.complete("", "pi", k=3))


def test_the_additive_ranker_learns_the_unseen_combination_too(tmp_path: Path) -> None:
    pairs = [p for p in combination_pairs() if p[1] != "pink belts"]
    c = Completer(index="trie", ranker="additive", progress=False).fit(pairs)
    assert c.model.ranker_learned and c.model.ranker_kind == "additive"
    assert _learned().model.ranker_kind == "trees"
    # A log too small for trees learns the additive ranker; one too small for any, the rule.
    assert Completer(progress=False).fit(pairs[:600]).model.ranker_kind == "additive"
    assert Completer(progress=False).fit(pairs[:20]).model.ranker_kind == "fixed"
    found = c.complete("a belts", "pi", k=3)
    assert found[0].query == "pink belts" and found[0].source == "composed"
    # Each kind of ranker is saved as itself: the same answers after loading.
    for model in (c, _learned()):
        loaded = Completer.load(model.save(tmp_path / "m.xrc"))
        assert loaded.complete("a thing2", "co", k=5) == model.complete("a thing2", "co", k=5)
    assert c.model.to_bytes() != _learned().model.to_bytes()


def test_the_learned_ranker_is_deterministic_given_the_seed() -> None:
    pairs = [p for p in combination_pairs() if p[1] != "pink belts"]
    again = Completer(index="trie", progress=False).fit(pairs)
    assert again.model.to_bytes() == _learned().model.to_bytes()
    other = Completer(index="trie", seed=1, progress=False).fit(pairs)
    assert other.model.ranker_learned


@settings(max_examples=200, deadline=None)
@given(
    prev=st.sampled_from(["", "a belts", "a thing3", "colour2 thing4", "pink", "x y z"]),
    prefix=st.lists(
        st.sampled_from(["a ", "pink ", "colour1 ", "belts ", "b", "pi", "t", "x", " ", "c"]),
        max_size=4,
    ).map("".join),
    k=st.integers(1, 30),
)
def test_composed_answers_start_with_the_prefix_and_are_new_and_distinct(
    prev: str, prefix: str, k: int
) -> None:
    c = _learned()
    known = {q for pair in combination_pairs() for q in pair if q and q != "pink belts"}
    found = c.complete(prev, prefix, k)
    typed = prefix.lstrip().lower()
    assert len(found) <= k
    assert len({f.query for f in found}) == len(found)
    for f in found:
        assert f.source in ("seen", "composed", "fuzzy", "session")
        if f.source == "fuzzy":  # a typo fixed: it starts with the corrected prefix
            assert f.query.startswith(f.matched) and not f.query.startswith(typed), f
            continue
        assert f.query.startswith(typed)
        assert (f.source == "seen") == (f.query in known), f
        if f.source == "session":  # the session's own search shown back: the previous query
            assert f.query == " ".join(prev.lower().split()), f
    assert [f.score for f in found] == sorted((f.score for f in found), reverse=True)


def run_pairs(users: int = 1200, seed: int = 5) -> list[tuple[str, str]]:
    """Sessions "<activity> in <city> <state>" -> "part time jobs in <city> <state>": the job
    query copies a run of words from the one before."""
    rng = random.Random(seed)
    places = [(f"city{i}", f"st{i % 7}") for i in range(400)]
    activities = ["swim lessons", "dog parks", "pizza", "used cars", "dentists"]
    pairs: list[tuple[str, str]] = []
    for _ in range(users):
        (city, state), activity = rng.choice(places[1:]), rng.choice(activities)
        prev = f"{activity} in {city} {state}"
        pairs += [("", prev), (prev, f"part time jobs in {city} {state}")]
    # The first place is searched, but never followed by a job search.
    pairs += [("", f"pizza in {places[0][0]} {places[0][1]}")] * 3
    return pairs


def test_a_run_of_the_previous_query_is_copied_past_compose_words() -> None:
    pairs = run_pairs()
    target = "part time jobs in city0 st0"
    assert target not in {q for pair in pairs for q in pair}
    c = Completer(index="trie", progress=False).fit(pairs)
    found = c.complete("pizza in city0 st0", "part time j", k=3)
    # Four words after the typed head, where compose_words allows two: only a copied run goes
    # that far.
    assert found[0].query == target and found[0].source == "composed", found
    without = c.model.complete("pizza in city0 st0", "part time j", k=10, follow=0.0)
    assert target not in [q for q, *_ in without]


def test_a_word_of_the_previous_query_the_log_never_had_is_copied() -> None:
    # Brands searched, then their reviews; the last 150 brands are new when first searched, so
    # the ranker's held-out pairs (the latest) show it a copied word the log never had being
    # right. (A log where no composed answer is ever right teaches a learned ranker nothing of
    # them: its trees then place them wherever their leaves fall.)
    rng = random.Random(7)
    brands = [f"brand{i}" for i in range(60)]
    pairs: list[tuple[str, str]] = []
    for i in range(1000):
        brand = rng.choice(brands) if i < 850 else f"brand{i}"
        pairs += [("", brand), (brand, f"{brand} reviews")]
    c = Completer(index="trie", progress=False).fit(pairs)
    found = c.complete("zorbix", "zo", k=3)
    assert found and found[0].query == "zorbix reviews" and found[0].source == "composed", found
    assert c.complete("", "zo", k=3) == []
    # Its features say it was copied from the previous query.
    best = c.explain("zorbix", "zo")[0]
    assert best.query == "zorbix reviews" and best.features["copied_words"] == 1.0
    assert best.features["prev_coverage"] == 1.0


def test_follow_is_an_option_that_is_saved(tmp_path: Path) -> None:
    pairs = run_pairs(users=300)
    c = Completer(index="trie", follow=0.45, progress=False).fit(pairs)
    assert c.model.options()["follow"] == 0.45
    again = Completer.load(c.save(tmp_path / "m"))
    assert again.follow == 0.45
    args = ("pizza in city0 st0", "part time j")
    assert again.complete(*args) == c.complete(*args)
    with pytest.raises(ValueError, match="follow"):
        Completer(index="trie", copy=0.5, follow=0.5, progress=False)
    with pytest.raises(ValueError, match="follow"):
        c.model.complete(*args, follow=-0.1)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(max_size=12),
            st.floats(allow_nan=False),
            st.sampled_from(["seen", "composed", "live", "session", "fuzzy"]),
            st.integers(0, 14),
        ),
        max_size=12,
    )
)
def test_answers_are_built_as_the_completion_constructor_builds_them(
    found: list[tuple[str, float, str, int]],
) -> None:
    from xrcomplete.completer import Completion, _completions

    fast = _completions(found)
    made = [Completion(*f) for f in found]
    assert fast == made
    for a, b in zip(fast, made):
        assert type(a) is Completion
        assert (a.query, a.score, a.source, a.matched) == (b.query, b.score, b.source, b.matched)
        assert pickle.loads(pickle.dumps(a)).matched == b.matched


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(st.characters(exclude_categories=["Cs"]), max_size=6), max_size=40))
def test_the_query_table_numbers_queries_as_a_dict_does(queries: list[str]) -> None:
    from xrcomplete import _core

    table, expected = _core.QueryIds(), {}
    for q in queries:
        assert table.id_of(q) == expected.setdefault(q, len(expected))
    assert len(table) == len(expected)
    for q in [*queries, "never added \u2603"]:
        assert table.get(q) == expected.get(q)


def test_the_fit_takes_the_queries_out_of_the_table_with_their_ids() -> None:
    import numpy as np

    from xrcomplete import _core

    pairs = synthetic_pairs()
    table = _core.QueryIds()
    prev = np.array([table.id_of(p) if p else -1 for p, _ in pairs], dtype=np.int64)
    nxt = np.array([table.id_of(n) for _, n in pairs], dtype=np.int64)
    by_id = {table.get(q): q for p in pairs for q in p if q}
    listed = [by_id[i] for i in range(len(table))]
    counts = np.ones(len(table))
    options = (Completer().prev_features.options(), Completer().prefix_features.options())
    kw = _core.Options(index="trie", max_leaf_size=4, rank_holdout=0.0)
    from_table = _core.CompleterModel.fit(table, counts, prev, nxt, *options, kw)
    assert len(table) == 0  # taken out, not copied
    from_list = _core.CompleterModel.fit(listed, counts, prev, nxt, *options, kw)
    for prefix in ("b", "ba", "c", "a"):
        assert from_table.complete("amazon", prefix, 5) == from_list.complete("amazon", prefix, 5)
