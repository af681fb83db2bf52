"""The blocklist: no answer ever contains a blocked term, seen or composed, at fit time or added
later, saved with the model; clear errors for terms that could block nothing."""

from __future__ import annotations

import pickle
import re
import unicodedata
from pathlib import Path

import pytest
from helpers import run_in_threads
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xrcomplete import Completer
from xrcomplete.data import read_queries, sample_path

QUERIES = sorted(set(read_queries(sample_path())))[:3000]


def words(text: str) -> list[str]:
    return re.findall(r"\w+", unicodedata.normalize("NFKC", text).lower())


# Terms: words of the log, or two words that follow each other in some query (those that have
# a word character: "&" could block nothing and is refused).
WORDS = sorted({w for q in QUERIES for w in q.split() if words(w)})
PHRASES = sorted({" ".join(q.split()[i : i + 2]) for q in QUERIES for i in range(2)} - {""})
PHRASES = [p for p in PHRASES if words(p)]


def contains(text: str, term: str) -> bool:
    """The definition: the term's words occur consecutively among the text's words."""
    t, w = words(text), words(term)
    return any(t[i : i + len(w)] == w for i in range(len(t) - len(w) + 1))


@pytest.fixture(scope="module")
def model_path(sample_model: tuple[Completer, Path]) -> Path:
    return sample_model[1]


terms = st.lists(st.sampled_from(WORDS) | st.sampled_from(PHRASES), min_size=1, max_size=6)
cases = st.lists(
    st.tuples(
        st.sampled_from(["", *QUERIES[:300]]),
        st.sampled_from(QUERIES).flatmap(lambda q: st.integers(0, len(q)).map(lambda n: q[:n])),
    ),
    min_size=1,
    max_size=8,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(blocked=terms, later=terms, asked=cases)
def test_no_answer_ever_contains_a_blocked_term(
    model_path: Path, blocked: list[str], later: list[str], asked: list[tuple[str, str]]
) -> None:
    completer = Completer.load(model_path)
    completer.block(blocked)
    for prev, prefix in asked:
        for c in completer.complete(prev, prefix, 10):
            assert not any(contains(c.query, t) for t in blocked), (c, blocked)
        # Nor does any candidate that explain shows.
        for x in completer.explain(prev, prefix):
            assert not any(contains(x.query, t) for t in blocked), (x, blocked)
    # Added later, and after a save and load: still never.
    completer.block(later)
    again = pickle.loads(pickle.dumps(completer))
    for model in (completer, again):
        for prev, prefix in asked:
            for c in model.complete(prev, prefix, 10):
                assert not any(contains(c.query, t) for t in blocked + later), (c, blocked, later)


def test_blocking_at_fit_time_at_run_time_and_undoing_it(tmp_path: Path) -> None:
    completer = Completer(progress=False, blocklist=["Weather"]).fit_log(sample_path())
    assert completer.blocked == ["weather"]
    answers = [c.query for c in completer.complete("", "wea", 10)]
    assert answers and not any(contains(q, "weather") for q in answers)
    assert "weatherchannel" in answers  # whole words only
    before = [c.query for c in completer.complete("", "yahoo", 10)]
    assert "yahoo mail" in before
    assert completer.block(["YAHOO  mail", "yahoo mail"]) == 1
    after = [c.query for c in completer.complete("", "yahoo", 10)]
    assert "yahoo mail" not in after and not any(contains(q, "yahoo mail") for q in after)
    assert "yahoo" in after
    saved = completer.save(tmp_path / "c.xrc")
    for loaded in (Completer.load(saved), Completer.load(saved, mmap=True)):
        assert loaded.blocked == ["weather", "yahoo mail"]
        assert [c.query for c in loaded.complete("", "yahoo", 10)] == after
    assert completer.unblock(["yahoo mail", "nothing"]) == 1
    assert [c.query for c in completer.complete("", "yahoo", 10)] == before


def test_blocking_while_other_threads_complete(sample_model: tuple[Completer, Path]) -> None:
    completer = pickle.loads(pickle.dumps(sample_model[0]))
    prefixes = ["ya", "yahoo", "g", "goo", "m"]

    def work() -> bool:
        for _ in range(30):
            for p in prefixes:
                completer.complete("", p, 10)
        return True

    def block_all() -> bool:
        for w in ["yahoo", "google", "mail", "map"]:
            completer.block([w])
        return True

    assert all(run_in_threads(lambda: work() and block_all(), n=4))
    for p in prefixes:
        for c in completer.complete("", p, 10):
            assert not any(contains(c.query, w) for w in ["yahoo", "google", "mail", "map"])


def test_terms_that_could_block_nothing_are_refused(sample_model: tuple[Completer, Path]) -> None:
    completer = pickle.loads(pickle.dumps(sample_model[0]))
    with pytest.raises(ValueError, match="has no word character"):
        completer.block(["ok", " -- "])
    assert completer.blocked == []  # none of a refused batch is added
    with pytest.raises(TypeError, match="not a single str"):
        completer.block("yahoo")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"terms\[1\] must be a str"):
        completer.block(["a", 1])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="at most 1024"):
        completer.block(["a" * 2000])
    with pytest.raises(TypeError, match="not a single str"):
        Completer(blocklist="yahoo")
    with pytest.raises(ValueError, match="has no word character"):
        Completer(progress=False, blocklist=["?"]).fit_log(sample_path())
