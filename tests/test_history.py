"""Completing from the whole session: ``complete(history, prefix)`` with the session's earlier
searches, oldest first (the last is the previous query)."""

from __future__ import annotations

import http.client
import json
import math
import pickle
import random
import urllib.parse
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import get_json
from hypothesis import given, settings
from hypothesis import strategies as st

from xrcomplete import Completer
from xrcomplete.completer import Candidate
from xrcomplete.data import sample_path, session_histories, session_pairs
from xrcomplete.server import Server, start

CITIES = [f"city{i:03d}" for i in range(150)]
POOL = ["cheap flights", "movie times", "pizza near me", "bank of america", "maps", "news"]


def returns_log(path: Path, users: int = 1200, seed: int = 0) -> Path:
    """A log where each user looks up the weather of a city, two other things (the same for
    everyone, whatever the city), then the weather of that city again; and others search
    "weather channel" alone, so that after one of the two other things the most likely
    "weather ..." is not the user's city."""
    rng = random.Random(seed)
    start_time = datetime(2006, 3, 1)
    rows = ["AnonID\tQuery\tQueryTime"]
    for user in range(users):
        at = start_time + timedelta(minutes=97 * user)
        if user % 3 == 0:
            queries = [rng.choice(POOL), "weather channel"]
        else:
            city = CITIES[(user // 3) % len(CITIES)]
            first, second = rng.sample(POOL, 2)
            queries = [f"weather {city}", first, second, f"weather {city}"]
        for i, query in enumerate(queries):
            rows.append(f"{user}\t{query}\t{(at + timedelta(minutes=i)):%Y-%m-%d %H:%M:%S}")
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def returns(tmp_path_factory: pytest.TempPathFactory) -> Completer:
    log = returns_log(tmp_path_factory.mktemp("returns") / "log.tsv")
    return Completer(progress=False).fit_log(log)


def test_a_user_returning_to_the_first_search_gets_it_from_the_history(
    returns: Completer,
) -> None:
    rng = random.Random(1)
    with_history = after_prev = 0
    for city in CITIES:
        first, second = rng.sample(POOL, 2)
        want = f"weather {city}"
        history = [want, first, second]
        with_history += returns.complete(history, "weather ", 1)[0].query == want
        after_prev += returns.complete(second, "weather ", 1)[0].query == want
    # The previous query alone cannot tell the city; the session can.
    assert with_history >= 0.9 * len(CITIES), (with_history, after_prev)
    assert after_prev <= 0.2 * len(CITIES), (with_history, after_prev)


def test_the_history_features_are_learned_and_explained(returns: Completer) -> None:
    found = returns.explain(["weather city007", "maps", "news"], "weather ")
    best = found[0]
    assert best.query == "weather city007"
    assert best.features["earlier_query"] == pytest.approx(0.5)  # three searches back
    assert best.features["session_length"] > 0


@pytest.fixture(scope="module")
def sample() -> Completer:
    return Completer(progress=False).fit_log(sample_path())


def sample_histories(n: int = 300) -> list[tuple[tuple[str, ...], str]]:
    found = [h for h in session_histories(sample_path()) if len(h[0]) >= 2]
    return random.Random(0).sample(found, min(n, len(found)))


def test_a_history_of_one_search_is_the_previous_query(sample: Completer) -> None:
    for history, nxt in sample_histories(100):
        prefix = nxt[:2]
        assert sample.complete([history[-1]], prefix) == sample.complete(history[-1], prefix)
    assert sample.complete([], "we") == sample.complete("", "we")
    assert sample.complete((), "we") == sample.complete("", "we")


def test_only_the_last_searches_are_used(sample: Completer) -> None:
    history, nxt = sample_histories(1)[0]
    huge = [f"filler query {i}" for i in range(1000)] + list(history)
    prefix = nxt[:3]
    # The default: the last 5 (the previous query and the 4 before it).
    assert sample.complete(huge, prefix) == sample.complete(huge[-5:], prefix)
    # As many as asked, up to 32.
    wide = sample.model.complete(huge, prefix, 10, session_history=32)
    assert wide == sample.model.complete(huge[-32:], prefix, 10, session_history=32)
    assert sample.model.complete(huge, prefix, 10, session_history=1) == sample.model.complete(
        history[-1], prefix, 10
    )
    with pytest.raises(ValueError, match="session_history"):
        sample.model.complete(huge, prefix, 10, session_history=33)


def test_a_bad_history_is_a_type_error(sample: Completer) -> None:
    for bad in [b"weather", {"weather"}, 3, ["weather", 3], None]:
        with pytest.raises(TypeError, match="prev"):
            sample.complete(bad, "we")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="prevs"):
        sample.complete_batch("weather", ["we"])  # type: ignore[arg-type]


@settings(max_examples=30, deadline=None)
@given(
    history=st.lists(st.sampled_from(["weather", "cheap flights", "maps", "news", ""]), max_size=8),
    prefix=st.sampled_from(["w", "we", "ch", "m", "n", "weather ", "x"]),
)
def test_answers_are_deterministic_and_batched_alike(
    sample: Completer, history: list[str], prefix: str
) -> None:
    once = sample.complete(history, prefix)
    assert sample.complete(tuple(history), prefix) == once
    assert sample.complete_batch([history, history], [prefix, prefix]) == [once, once]
    assert all(c.query.startswith(prefix.strip().lower()) or c.source == "fuzzy" for c in once)


@settings(max_examples=60, deadline=None)
@given(
    case=st.sampled_from(sample_histories(200)),
    length=st.integers(1, 12),
    floor=st.sampled_from([0.0, 0.002, 0.01, 0.05, 0.2]),
)
def test_composed_answers_the_ranker_is_unsure_of_are_left_out(
    sample: Completer, case: tuple[tuple[str, ...], str], length: int, floor: float
) -> None:
    history, nxt = list(case[0]), case[1]
    prefix = nxt[:length]
    explained = sample.explain(history, prefix, k=100)
    best = max((e.score for e in explained), default=0.0)
    total = sum(math.exp(e.score - best) for e in explained)

    def made_up(e: Candidate) -> bool:
        # Composed: never searched, nor one of the session's (a correction's completions too).
        f = e.features
        of_session = f["is_prev"] > 0 or f["earlier_query"] > 0
        return e.source == "composed" or (e.source == "fuzzy" and not f["seen"] and not of_session)

    def kept(at: float) -> list[str]:
        return [
            e.query for e in explained if not made_up(e) or math.exp(e.score - best) >= at * total
        ][:100]

    got = [a[0] for a in sample.model.complete(history, prefix, 100, composed_floor=floor)]
    # The share of the candidates' softmax, as the ranker scores them (f32: a little slack).
    loose, strict = kept(floor * (1 - 1e-4)), kept(floor * (1 + 1e-4))
    assert set(strict) <= set(got) <= set(loose)
    assert got == [q for q in loose if q in got]
    if floor == 0.0:
        assert got == [e.query for e in explained][:100]


def test_save_load_mmap_and_pickle_answer_alike(sample: Completer, tmp_path: Path) -> None:
    path = sample.save(tmp_path / "c.xrc")
    others = [
        Completer.load(path),
        Completer.load(path, mmap=True),
        pickle.loads(pickle.dumps(sample)),
    ]
    cases = sample_histories(100)
    want = [sample.complete(h, n[:2]) for h, n in cases]
    for other in others:
        assert [other.complete(h, n[:2]) for h, n in cases] == want


def test_the_histories_give_the_session_pairs() -> None:
    histories = list(session_histories(sample_path()))
    assert [(h[-1], n) for h, n in histories] == list(session_pairs(sample_path()))
    assert all(n not in h[-1:] for h, n in histories)


def get(server: Server, target: str) -> tuple[int, Any]:
    return get_json(server.port, target)


def post(server: Server, body: object) -> int:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        conn.request("POST", "/v1/searches", json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_the_servers_session_history_is_the_list_form(
    sample_model: tuple[Completer, Path],
) -> None:
    searches = ["weather", "cheap flights", "maps", "news", "bank of america", "movie times"]
    with start(sample_model[1], port=0, session_history=3) as server:
        for query in searches:
            assert post(server, {"query": query, "session": "s1"}) == 200
        _, by_session = get(
            server, "/v1/complete?" + urllib.parse.urlencode({"prefix": "w", "session": "s1"})
        )
        # The session keeps its last 3 searches, oldest first.
        assert by_session["history"] == searches[-3:]
        assert by_session["prev"] == searches[-1]
        listed = [("prefix", "w")] + [("prev", q) for q in searches[-3:]]
        _, by_list = get(server, "/v1/complete?" + urllib.parse.urlencode(listed))
        assert by_list["suggestions"] == by_session["suggestions"]
        assert by_list["history"] == searches[-3:]
        # As many prevs as a client sends: the completer uses its last session_history.
        many = [("prefix", "w")] + [("prev", f"q{i}") for i in range(100)]
        status, answer = get(server, "/v1/complete?" + urllib.parse.urlencode(many))
        assert status == 200
        assert len(answer["history"]) == 32


def test_the_command_line_takes_a_session(
    sample_model: tuple[Completer, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from xrcomplete.cli import main

    completer, path = sample_model
    history = ["weather", "cheap flights"]
    assert (
        main(["complete", "--model", str(path), "--prev", history[0], "--prev", history[1], "w"])
        == 0
    )
    out = capsys.readouterr().out
    assert "after 'weather' -> 'cheap flights', typing 'w'" in out
    assert all(c.query in out for c in completer.complete(history, "w"))
    rows = {}
    for flags in ([], ["--prev-only"]):
        assert main(["eval", str(path), str(sample_path()), *flags]) == 0
        rows[bool(flags)] = capsys.readouterr().out
    assert rows[False] != rows[True]


def test_a_word_of_an_earlier_search_the_log_never_had_is_copied() -> None:
    # A brand searched, then the weather, then the brand's reviews; the last 150 brands are new
    # when first searched, so the ranker's held-out pairs show it a word copied from two
    # searches back (one the log never had) being right.
    rng = random.Random(7)
    brands = [f"brand{i}" for i in range(60)]
    pairs: list[tuple[str, str]] = []
    for i in range(1000):
        brand = rng.choice(brands) if i < 850 else f"brand{i}"
        pairs += [("", brand), (brand, "weather"), ("weather", f"{brand} reviews")]
    c = Completer(index="trie", progress=False).fit(pairs)
    found = c.complete(["zorbix", "weather"], "zo", k=3)
    assert found and found[0].query == "zorbix reviews" and found[0].source == "composed", found
    # The previous query alone knows no word that starts so.
    assert c.complete("weather", "zo", k=3) == []
    # The brand itself, searched two back and in no log, is shown back as the session's own.
    back = {f.query: f.source for f in c.complete(["zorbix", "weather"], "zorb", k=10)}
    assert back.get("zorbix") == "session", back
    assert {e.query: e.source for e in c.explain(["zorbix", "weather"], "zorb")}["zorbix"] == (
        "session"
    )
    best = c.explain(["zorbix", "weather"], "zo")[0]
    # All of the search two back: its weight is 1 / (2 - 1).
    assert best.features["earlier_words"] == 1.0 and best.features["earlier_coverage"] == 1.0
