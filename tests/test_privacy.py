"""The privacy floor ``min_users``: a query searched by fewer distinct users is never suggested
whole, and the language model composes only words that at least that many users searched (or
that the user's own previous query holds)."""

from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xrcomplete import Completer
from xrcomplete.data import read_events, sample_path

FLOOR = 3

USERS: defaultdict[str, set[str]] = defaultdict(set)
for _user, _query, _ in read_events(sample_path()):
    USERS[_query].add(_user)
ALLOWED = {q for q, u in USERS.items() if len(u) >= FLOOR}
# The language model counts a word by the distinct users who searched it, in any query.
_WORD_USERS: defaultdict[str, set[str]] = defaultdict(set)
for _query, _users in USERS.items():
    for _word in _query.split():
        _WORD_USERS[_word] |= _users
ALLOWED_WORDS = {w for w, u in _WORD_USERS.items() if len(u) >= FLOOR}
RARE = sorted(q for q, u in USERS.items() if len(u) < FLOOR)


@pytest.fixture(scope="module")
def floored() -> Completer:
    return Completer(progress=False, min_users=FLOOR).fit_log(sample_path())


def test_the_floor_keeps_exactly_the_queries_enough_users_searched(floored: Completer) -> None:
    assert floored.n_queries_ == len(ALLOWED) < len(USERS)
    open_ = Completer(progress=False).fit_log(sample_path())
    assert open_.n_queries_ == len(USERS)


@settings(max_examples=150, deadline=None)
@given(
    prev=st.sampled_from(["", *RARE[:200], *sorted(ALLOWED)[:200]]),
    prefix=st.sampled_from(RARE + sorted(ALLOWED)).flatmap(
        lambda q: st.integers(0, len(q)).map(lambda n: q[:n])
    ),
)
def test_no_answer_reveals_a_query_under_the_floor(
    floored: Completer, prev: str, prefix: str
) -> None:
    for c in floored.complete(prev, prefix, 10):
        # What was typed, or for a fuzzy answer its correction.
        typed = (c.matched if c.source == "fuzzy" else prefix).split()
        if c.source == "seen":
            assert c.query in ALLOWED, c
        # Every word past what was typed comes from a query above the floor, or from the
        # user's own previous query (echoing it back reveals nobody else's searches).
        words = c.query.split()
        for i, w in enumerate(words):
            if i < len(typed) - 1 or (i == len(typed) - 1 and w == typed[-1]):
                continue
            assert w in ALLOWED_WORDS or w in prev.split(), (c, w)


def test_the_floor_needs_to_know_the_users() -> None:
    pairs = [("", "a b"), ("", "c d")] * 5
    with pytest.raises(ValueError, match="min_users = 2 needs how many users"):
        Completer(progress=False, min_users=2).fit(pairs)
    c = Completer(progress=False, min_users=2).fit(pairs, users={"a b": 2, "c d": 1})
    assert [x.query for x in c.complete("", "", 5) if x.source == "seen"] == ["a b"]
    with pytest.raises(ValueError, match="min_users must be a finite number >= 1"):
        Completer(progress=False, min_users=0.5).fit(pairs, users={"a b": 2})
    with pytest.raises(ValueError, match="no query is searched at least min_count times"):
        Completer(progress=False, min_users=5).fit(pairs, users={"a b": 2, "c d": 1})
