"""Live counts: searches recorded after training complete at once, through the learned ranking
(a trending query rises to the top of its prefixes), bad searches are clear errors, the cap
holds, threads record and complete together with exact counts; the server records into them,
writes every search to its event log before answering, and a kill -9 loses no acknowledged
search."""

from __future__ import annotations

import http.client
import itertools
import json
import math
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import ADMIN_KEY, RECORD_KEY, bearer, run_in_threads, serve_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xrcomplete import Completer
from xrcomplete.cli import main
from xrcomplete.data import sample_path
from xrcomplete.server import start

NEW = "iphone 17 pro max"


@pytest.fixture
def completer(sample_model: tuple[Completer, Path]) -> Completer:
    """A fresh copy of the sample model (its own live counts)."""
    return Completer.load(sample_model[1])


def test_a_new_query_searched_a_few_times_tops_its_prefixes(completer: Completer) -> None:
    assert completer.model.ranker_kind == "trees"
    assert all(c.query != NEW for c in completer.complete("", "iphone 17", 10))
    needed = {}
    searched = 0
    for n in range(1, 151):
        completer.record(NEW, time=1000.0 + n)
        searched = n
        for length in range(1, len(NEW) + 1):
            prefix = NEW[:length]
            if prefix not in needed and completer.complete("", prefix, 1)[0].query == NEW:
                needed[prefix] = n
        if len(needed) == len(NEW):
            break
    # Searched a few times within a minute, it tops its prefixes of 2+ characters. The one
    # character prefix is the log's most popular session start's: the trees learned a live
    # count's worth from the counts they saw (monotone: more never ranks lower), so it takes
    # many more searches there (it may top it within the 150 or not); the additive ranker's
    # weights go on growing.
    assert max(needed[NEW[:n]] for n in range(2, len(NEW) + 1)) <= 5, needed
    assert NEW in [c.query for c in completer.complete("", NEW[:1], 2)]
    found = completer.complete("", "iphone 1", 3)
    assert found[0].query == NEW and found[0].source == "live"
    # Searched a second apart with a one-day half-life: nearly no decay yet.
    assert completer.live_count(NEW) == pytest.approx(searched, rel=1e-3)


def test_with_the_additive_ranker_a_new_query_searched_often_tops_one_character() -> None:
    completer = Completer(ranker="additive", progress=False).fit_log(sample_path())
    for n in range(1, 101):
        completer.record(NEW, time=1000.0 + n)
        if completer.complete("", NEW[:1], 1)[0].query == NEW:
            break
    assert completer.complete("", NEW[:1], 1)[0].query == NEW
    assert n > 5  # where popular queries sit, it takes more than a few searches


def test_counts_decay_and_the_previous_query_counts_too(completer: Completer) -> None:
    completer.reset_live(half_life=3600.0)
    completer.record("Weather Boston", prev="boston", count=4.0, time=0.0)
    completer.record("other", time=7200.0)  # two half-lives later
    assert completer.live_count("weather boston") == pytest.approx(1.0)
    assert completer.live_count("weather boston", prev="Boston") == pytest.approx(1.0)
    assert completer.live_count("weather boston", prev="nowhere") == 0.0
    stats = completer.live_stats()
    assert (stats["queries"], stats["prevs"], stats["events"]) == (2, 1, 2)
    assert stats["half_life"] == 3600.0 and stats["clock"] == 7200.0


def test_bad_searches_are_clear_errors_and_batches_all_or_nothing(completer: Completer) -> None:
    for query, count, when in [("  ", 1.0, 0.0), ("q", 0.0, 0.0), ("q", -2, 0.0),
                               ("q", math.nan, 0.0), ("q", 1.0, math.inf)]:  # fmt: skip
        with pytest.raises(ValueError):
            completer.record(query, count=count, time=when)
    with pytest.raises(ValueError, match="empty once normalised"):
        completer.record_batch(["fine", "   "])
    with pytest.raises(ValueError, match="2 queries but 1 prevs"):
        completer.record_batch(["a", "b"], prevs=["x"])
    assert completer.live_stats()["events"] == 0
    assert completer.record_batch(["a", "b"], counts=[1, 2], times=[5.0, 6.0]) == 2
    with pytest.raises(ValueError):
        completer.reset_live(half_life=0.0)


@settings(max_examples=20, deadline=None)
@given(cap=st.integers(1, 40), seed=st.integers(0, 10**6))
def test_the_cap_holds_with_ten_times_more_queries(
    sample_model: tuple[Completer, Path], cap: int, seed: int
) -> None:
    c = sample_model[0]
    c.reset_live(half_life=math.inf, cap=cap)
    for i in range(cap * 10):
        c.record(f"query {seed} {i}", time=float(i))
        assert c.live_stats()["queries"] <= cap
    assert c.live_stats()["evicted"] > 0
    c.reset_live()


def test_eight_threads_record_while_eight_complete(completer: Completer) -> None:
    completer.reset_live(half_life=math.inf)
    words = ["apple pie", "apricot jam", "banana bread", "berry tart"]
    stop = time.monotonic() + 3.0
    slots = itertools.count()

    def work(slot: int) -> int:
        n = 0
        while time.monotonic() < stop:
            if slot % 2 == 0:
                completer.record(words[n % 4], prev="dessert", time=float(n))
            else:
                found = completer.complete("dessert", words[n % 4][:2], 5)
                assert all(c.query.startswith(words[n % 4][:2]) for c in found)
                assert len({c.query for c in found}) == len(found)
            n += 1
        return n if slot % 2 == 0 else 0

    counts = run_in_threads(lambda: work(next(slots)), n=16, timeout=60)
    recorded = sum(counts)
    assert recorded > 0
    assert completer.live_stats()["events"] == recorded
    total = sum(completer.live_count(w) for w in words)
    assert total == recorded  # exact: whole counts, no decay
    assert sum(completer.live_count(w, prev="dessert") for w in words) == recorded


def request(
    port: int, method: str, target: str, body: object = None, key: str | None = RECORD_KEY
) -> tuple[int, dict]:
    """One request, by default with the record key (the site's backend, trusted with counts
    and times)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = bearer(key) if key else {}
        conn.request(
            method, target, body=None if body is None else json.dumps(body), headers=headers
        )
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_the_server_and_the_library_answer_alike_with_the_same_searches(
    sample_model: tuple[Completer, Path], completer: Completer
) -> None:
    searches = [{"query": NEW, "time": 100.0 + i} for i in range(6)]
    searches += [{"query": "hotels in paris", "prev": "cheap flights", "time": 110.0}]
    for s in searches:
        completer.record(s["query"], prev=str(s.get("prev", "")), time=float(s["time"]))
    with start(sample_model[1], port=0, record_keys=[RECORD_KEY]) as server:
        status, got = request(server.port, "POST", "/v1/searches", searches)
        assert (status, got) == (200, {"recorded": 7})
        for prev, prefix in [("", "iph"), ("", "iphone 17"), ("cheap flights", "ho"), ("", "h")]:
            query = f"/v1/complete?prefix={prefix.replace(' ', '+')}&prev={prev.replace(' ', '+')}"
            _, answer = request(server.port, "GET", query)
            want = [(c.query, c.score, c.source) for c in completer.complete(prev, prefix)]
            assert [(s["text"], s["score"], s["source"]) for s in answer["suggestions"]] == want
        assert server.live_stats()["events"] == 7


def replayed(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    found = re.search(r"^xrcomplete_events_replayed_total (\d+)", text, re.M)
    assert found, text
    return int(found.group(1))


def test_kill_9_loses_no_acknowledged_search(
    sample_model: tuple[Completer, Path], tmp_path: Path
) -> None:
    events = tmp_path / "events.log"
    acked = sent = 0
    for round_, run_for in enumerate([0.6, 1.1, 0.4]):
        proc, port = serve_cli(sample_model[1], "--events", str(events), "--record-key", RECORD_KEY)
        try:
            assert replayed(port) >= acked, "an acknowledged search was lost"
            assert replayed(port) <= sent
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            killer = threading.Timer(run_for, lambda p=proc: p.send_signal(signal.SIGKILL))
            killer.start()
            try:
                while True:
                    body = json.dumps({"query": f"search {round_} {sent}", "time": float(sent)})
                    conn.request("POST", "/v1/searches", body=body, headers=bearer(RECORD_KEY))
                    sent += 1
                    response = conn.getresponse()
                    response.read()
                    assert response.status == 200
                    acked += 1
            except (OSError, http.client.HTTPException):
                pass  # the server was killed mid-stream
            finally:
                killer.join()
                conn.close()
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
    assert acked > 1000, acked
    proc, port = serve_cli(sample_model[1], "--events", str(events))
    try:
        assert acked <= replayed(port) <= sent
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)


def test_a_damaged_event_log_is_replayed_up_to_the_damage_with_a_warning(
    sample_model: tuple[Completer, Path], tmp_path: Path
) -> None:
    events = tmp_path / "events.log"
    with start(sample_model[1], port=0, events=events, record_keys=[RECORD_KEY]) as server:
        batch = [{"query": f"q{i}", "time": float(i)} for i in range(50)]
        assert request(server.port, "POST", "/v1/searches", batch)[0] == 200
    with events.open("ab") as f:
        f.write(b"\x30\x00\x00\x00torn")  # a record cut short
    proc, port = serve_cli(sample_model[1], "--events", str(events))
    try:
        assert replayed(port) == 50
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert "event log" in err and "damaged" in err and "Traceback" not in err
    events.write_text("not an event log\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "xrcomplete.cli", "serve", str(sample_model[1]), "--port", "0",
         "--events", str(events)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "not an xrcomplete event log" in proc.stderr
    assert events.read_text(encoding="utf-8") == "not an event log\n"


def test_compact_folds_the_log_and_the_reload_drops_what_was_folded(
    sample_model: tuple[Completer, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    completer, path = sample_model
    served = tmp_path / "served.xrc"
    served.write_bytes(path.read_bytes())
    events = tmp_path / "events.log"
    known = "hotmail"
    assert any(c.query == known and c.source == "seen" for c in completer.complete("", known))

    def score_after_weather(model: Path) -> float:
        found = Completer.load(model).complete("weather", "hotm", 20)
        return next(c.score for c in found if c.query == known)

    before = score_after_weather(served)
    keys = {"record_keys": [RECORD_KEY], "admin_key": ADMIN_KEY}
    with start(served, port=0, events=events, **keys) as server:
        first = [{"query": known, "prev": "weather", "time": 1.0}] * 40 + [{"query": NEW}]
        assert request(server.port, "POST", "/v1/searches", first)[1] == {"recorded": 41}
        # Compact what the log holds now (41 searches) ...
        assert main(["compact", str(served), str(events), "-o", str(tmp_path / "new.xrc")]) == 0
        out = capsys.readouterr().out
        assert "folded 40 of 41 searches" in out and "1 of queries" in out
        # ... while another search arrives, then serve the compacted model.
        assert request(server.port, "POST", "/v1/searches", {"query": known})[0] == 200
        (tmp_path / "new.xrc").replace(served)
        status, got = request(
            server.port, "POST", "/admin/reload", {"events_folded": 41}, key=ADMIN_KEY
        )
        assert status == 200 and (got["events_dropped"], got["events_kept"]) == (40, 2), got
        stats = server.live_stats()
        assert stats["queries"] == 2  # NEW and the late search of the known query
        status, got = request(
            server.port, "POST", "/admin/reload", {"events_folded": "x"}, key=ADMIN_KEY
        )
        assert status == 400 and got["error"]["code"] == "bad_json"
    # The folded counts are in the new model: the known query after "weather" scores higher.
    assert score_after_weather(served) > before
    # The log kept the 2 searches not folded: a restart replays them.
    with start(served, port=0, events=events, **keys) as again:
        assert again.live_stats()["events"] == 2


def test_compact_with_retrain_makes_new_queries_suggestable(
    sample_model: tuple[Completer, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "events.log"
    with start(sample_model[1], port=0, events=events, record_keys=[RECORD_KEY]) as server:
        batch = [{"query": NEW, "prev": "apple", "time": 1.2e9 + i} for i in range(3)]
        assert request(server.port, "POST", "/v1/searches", batch)[0] == 200
    new = tmp_path / "new.xrc"
    args = [str(sample_model[1]), str(events), "-o", str(new), "--retrain", str(sample_path())]
    assert main(["compact", *args]) == 0
    assert "trained on the log and 3 of 3 searches" in capsys.readouterr().out
    found = Completer.load(new).complete("apple", "iphone 17", 3)
    assert (found[0].query, found[0].source) == (NEW, "seen")


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    searches=st.lists(
        st.tuples(st.integers(0, 4), st.sampled_from(["zorblax one", "zorblax two", "hotmail"])),
        max_size=40,
    ),
    min_clients=st.integers(1, 4),
)
def test_searches_with_a_client_count_once_each_and_show_past_the_floor(
    completer: Completer, searches: list[tuple[int, str]], min_clients: int
) -> None:
    """The rules the server applies to strangers, through the library: each client counts a
    query once (no decay here), and a query's count is seen only from ``min_clients`` distinct
    clients on; a search without a client is trusted at once."""
    completer.reset_live(half_life=math.inf, min_clients=min_clients)
    who: dict[str, set[int]] = {}
    for i, (client, query) in enumerate(searches):
        first = client not in who.setdefault(query, set())
        who[query].add(client)
        assert completer.record(query, client=f"203.0.113.{client}", time=float(i)) == first
    for query, clients in who.items():
        seen = len(clients) >= min_clients
        assert completer.live_count(query) == (len(clients) if seen else 0)
        shown = [c.query for c in completer.complete("", query[:4], 10) if c.source == "live"]
        assert (query in shown) <= seen
    assert completer.live_stats()["waiting"] == sum(len(c) < min_clients for c in who.values())
    assert completer.record("zorblax three", count=2.0) is True
    assert completer.live_count("zorblax three") == 2.0
