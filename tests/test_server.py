"""The HTTP service from Python: the API gives exactly `Completer.complete`'s answers, sessions,
bad input is a 4xx with a JSON error (never a 5xx), reload under load fails no request, a bad
file is refused, and `xrcomplete serve` stops cleanly on SIGTERM and reloads on SIGHUP."""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import shutil
import signal
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import ADMIN_KEY, bearer, serve_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xrcomplete import Completer, ModelFormatError
from xrcomplete._core import normalize_prefix
from xrcomplete.cli import main
from xrcomplete.data import read_queries, sample_path
from xrcomplete.server import Server, start

QUERIES = sorted(set(read_queries(sample_path())))[:2000]


def request(
    server: Server,
    method: str,
    target: str,
    body: object = None,
    raw: bytes | None = None,
    key: str | None = None,
) -> tuple[int, Any]:
    """One request on a fresh connection (with ``key``, if any): (status, decoded JSON body)."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json", **(bearer(key) if key else {})}
        conn.request(method, target, body=data, headers=headers)
        response = conn.getresponse()
        payload = response.read()
        return response.status, json.loads(payload) if payload else None
    finally:
        conn.close()


def complete_url(prefix: str, k: int | None = None, **extra: str) -> str:
    params = {"prefix": prefix, **extra}
    if k is not None:
        params["k"] = str(k)
    return "/v1/complete?" + urllib.parse.urlencode(params)


def as_served(found: list[Any], prefix: str) -> list[dict[str, Any]]:
    return [
        {"text": c.query, "score": c.score, "highlight": [0, len(c.matched)], "source": c.source}
        for c in found
    ]


texts = st.one_of(
    st.sampled_from(QUERIES).flatmap(lambda q: st.integers(0, len(q)).map(lambda n: q[:n])),
    st.text(max_size=12),
)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(prev=st.one_of(st.just(""), st.sampled_from(QUERIES), st.text(max_size=10)), prefix=texts,
       k=st.integers(0, 25))  # fmt: skip
def test_answers_are_exactly_the_completers(
    server: Server, sample_model: tuple[Completer, Path], prev: str, prefix: str, k: int
) -> None:
    completer = sample_model[0]
    status, got = request(server, "GET", complete_url(prefix, k, prev=prev))
    assert status == 200, got
    assert got["suggestions"] == as_served(completer.complete(prev, prefix, k), prefix)
    assert got["model"] == server.model_id and got["prev"] == prev.strip().lower()
    for s in got["suggestions"]:
        start_, end = s["highlight"]
        # The typed prefix; for a fuzzy answer, the corrected prefix it matched.
        assert s["source"] == "fuzzy" or s["text"][start_:end] == normalize_prefix(prefix)


def test_a_session_stands_for_its_last_search(
    server: Server, sample_model: tuple[Completer, Path]
) -> None:
    completer = sample_model[0]
    status, got = request(
        server, "POST", "/v1/searches", {"query": "Cheap Flights ", "session": "s"}
    )
    assert (status, got) == (200, {"recorded": 1, "session": "s", "prev": "cheap flights"})
    _, by_session = request(server, "GET", complete_url("h", session="s"))
    _, by_prev = request(server, "GET", complete_url("h", prev="cheap flights"))
    assert by_session["suggestions"] == by_prev["suggestions"]
    assert by_session["suggestions"] == as_served(completer.complete("cheap flights", "h"), "h")
    _, fresh = request(server, "GET", complete_url("h", session="other"))
    assert fresh["suggestions"] == as_served(completer.complete("", "h"), "h")


def test_sessions_expire_and_are_capped(sample_model: tuple[Completer, Path]) -> None:
    with start(sample_model[1], port=0, session_ttl=0.5, max_sessions=2) as server:
        for s in ["a", "b", "c"]:
            assert (
                request(server, "POST", "/v1/searches", {"query": "weather", "session": s})[0]
                == 200
            )
        prevs = {s: request(server, "GET", complete_url("w", session=s))[1]["prev"] for s in "abc"}
        assert prevs == {"a": "", "b": "weather", "c": "weather"}
        time.sleep(0.8)
        assert request(server, "GET", complete_url("w", session="c"))[1]["prev"] == ""


@pytest.mark.parametrize(
    ("method", "target", "body", "status", "code"),
    [
        ("GET", "/v1/complete?k=3", None, 400, "missing_prefix"),
        ("GET", "/v1/complete?prefix=a&k=x", None, 400, "bad_k"),
        ("GET", "/v1/complete?prefix=a&k=101", None, 400, "bad_k"),
        ("GET", "/v1/complete?prefix=a&k=-2", None, 400, "bad_k"),
        ("GET", "/v1/complete?prefix=%C3%28", None, 400, "bad_encoding"),
        ("GET", "/v1/complete?prefix=%G1", None, 400, "bad_encoding"),
        ("GET", "/v1/complete?prefix=" + "a" * 1025, None, 400, "too_long"),
        ("GET", "/v1/complete?prefix=a&page=2", None, 400, "unknown_parameter"),
        ("DELETE", "/v1/complete?prefix=a", None, 405, "method_not_allowed"),
        ("GET", "/nowhere", None, 404, "not_found"),
        ("POST", "/v1/searches", b"[1, 2]", 400, "bad_json"),
        ("POST", "/v1/searches", b"\xff\xfe", 400, "bad_json"),
        ("POST", "/v1/searches", b'{"query": "' + b"x" * 70000 + b'"}', 413, "body_too_large"),
    ],
)  # fmt: skip
def test_bad_requests_are_4xx_with_a_json_error(
    server: Server, method: str, target: str, body: bytes | None, status: int, code: str
) -> None:
    got_status, got = request(server, method, target, raw=body)
    assert (got_status, got["error"]["code"]) == (status, code), got
    assert got["error"]["message"]
    assert request(server, "GET", "/healthz")[0] == 200


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(query=st.text(alphabet=st.sampled_from("pk=&%+1aé\x00x-F"), max_size=20))
def test_no_query_string_gets_a_5xx(server: Server, query: str) -> None:
    target = "/v1/complete?" + urllib.parse.quote(query, safe="=&%+")
    status, got = request(server, "GET", target)
    assert status in (200, 400), (target, got)


@pytest.fixture
def two_models(tmp_path: Path, sample_model: tuple[Completer, Path]) -> Iterator[list[bytes]]:
    """The sample model's bytes, and a second, different model's."""
    tiny = tmp_path / "tiny.tsv"
    lines = sample_path().read_text(encoding="utf-8").splitlines()[:600]
    tiny.write_text("\n".join(lines) + "\n", encoding="utf-8")
    other = Completer(progress=False).fit_log(tiny).save(tmp_path / "other.xrc")
    yield [sample_model[1].read_bytes(), other.read_bytes()]


def replace_file(path: Path, data: bytes) -> None:
    """Writes a new file and renames it over ``path`` (the way ``Completer.save`` replaces one)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class Hammer:
    """Clients that ask completions of ``server`` on threads of their own until stopped,
    counting answers and keeping what failed (a status other than 200, or an error)."""

    def __init__(self, server: Server, clients: int = 4) -> None:
        self.server = server
        self.failures: list[str] = []
        self.answered = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, args=(i,)) for i in range(clients)]

    def _client(self, seed: int) -> None:
        rng = random.Random(seed)
        conn = http.client.HTTPConnection(self.server.host, self.server.port, timeout=30)
        try:
            while not self._stop.is_set():
                conn.request("GET", complete_url(rng.choice(QUERIES)[:3]))
                response = conn.getresponse()
                body = response.read()
                if response.status != 200:
                    self.failures.append(f"{response.status}: {body[:200]!r}")
                self.answered += 1
        except Exception as err:
            self.failures.append(repr(err))
        finally:
            conn.close()

    def __enter__(self) -> Hammer:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)


def test_reload_under_load_fails_no_request(tmp_path: Path, two_models: list[bytes]) -> None:
    path = tmp_path / "served.xrc"
    replace_file(path, two_models[0])
    with start(path, port=0, workers=2, admin_key=ADMIN_KEY) as server:
        ids = {server.model_id}
        with Hammer(server) as load:
            for round_ in range(8):
                replace_file(path, two_models[(round_ + 1) % 2])
                status, got = request(server, "POST", "/admin/reload", key=ADMIN_KEY)
                assert status == 200, got
                ids.add(got["model"])
                time.sleep(0.05)
    assert not load.failures, load.failures[:3]
    assert len(ids) == 2 and load.answered > 50


def test_cp_over_the_served_file_fails_no_request_and_is_served_once_whole(
    tmp_path: Path, two_models: list[bytes]
) -> None:
    """What an operator does by routine: ``cp new.xrc live.xrc`` (the same file truncated and
    written in place), truncation and deletion, while 4 clients hammer the server. It once
    died of SIGBUS here (the file was mapped); now it serves on, and the watch loads the new
    file once its copy is whole."""
    path = tmp_path / "served.xrc"
    path.write_bytes(two_models[0])
    new = tmp_path / "new.xrc"
    new.write_bytes(two_models[1])
    with start(path, port=0, workers=2, watch=0.1) as server, Hammer(server) as load:
        first = server.model_id
        for _ in range(3):
            with path.open("r+b") as f:
                f.truncate(100)  # cut short under the server
            time.sleep(0.15)
            path.unlink()
            time.sleep(0.15)
            shutil.copyfile(new, path)  # cp: created, written in place
            with path.open("r+b") as f:
                f.truncate(0)  # cp over an existing file truncates it first
                f.write(two_models[0][: len(two_models[0]) // 2])
            time.sleep(0.15)
            with path.open("r+b") as f:
                f.truncate(0)
                f.write(two_models[0])
        shutil.copyfile(new, path)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            status, got = request(server, "GET", complete_url("ho"))
            if status == 200 and got["model"] != first:
                break
            time.sleep(0.05)
        assert server.model_id != first
    assert Completer.load(new).complete("", "ho") == Completer.load(path).complete("", "ho")
    assert not load.failures, load.failures[:3]
    assert load.answered > 50


def test_a_watched_model_is_served_anew_once_saved_over(
    tmp_path: Path, two_models: list[bytes]
) -> None:
    path = tmp_path / "served.xrc"
    replace_file(path, two_models[0])
    with start(path, port=0, watch=0.05) as server:
        before = server.model_id
        replace_file(path, two_models[1])
        deadline = time.monotonic() + 10
        while server.model_id == before and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.model_id != before
        assert request(server, "GET", complete_url("ho"))[0] == 200
    with pytest.raises(ValueError, match="watch"):
        start(path, port=0, watch=0)


def test_a_bad_file_is_refused_and_the_old_model_serves_on(
    tmp_path: Path, two_models: list[bytes]
) -> None:
    path = tmp_path / "served.xrc"
    replace_file(path, two_models[0])
    with start(path, port=0, admin_key=ADMIN_KEY) as server:
        before = server.model_id
        corrupt = bytearray(two_models[1])
        corrupt[len(corrupt) // 3] ^= 0x55
        for bad in [bytes(corrupt), two_models[1][:1000], b"XRCMODEL"]:
            replace_file(path, bad)
            with pytest.raises(ModelFormatError):
                server.reload()
            status, got = request(server, "POST", "/admin/reload", key=ADMIN_KEY)
            assert status == 422 and got["error"]["code"] == "model_refused"
            assert server.model_id == before
            assert request(server, "GET", complete_url("ho"))[0] == 200
        conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
        conn.request("GET", "/metrics")
        metrics = conn.getresponse().read().decode()
        conn.close()
        assert 'xrcomplete_model_reloads_total{result="refused"} 6' in metrics


def test_start_errors_are_typed(
    tmp_path: Path, server: Server, sample_model: tuple[Completer, Path]
) -> None:
    with pytest.raises(FileNotFoundError):
        start(tmp_path / "none.xrc", port=0)
    (tmp_path / "bad.xrc").write_bytes(b"not a model")
    with pytest.raises(ModelFormatError):
        start(tmp_path / "bad.xrc", port=0)
    model = sample_model[1]
    with pytest.raises(OSError, match="cannot listen"):
        start(model, port=server.port)
    with pytest.raises(ValueError, match="host"):
        start(model, host="example.com", port=0)
    with pytest.raises(ValueError, match="session_ttl"):
        start(model, port=0, session_ttl=0)


def test_cli_serve_reloads_on_sighup_and_drains_on_sigterm(
    tmp_path: Path, two_models: list[bytes]
) -> None:
    path = tmp_path / "served.xrc"
    replace_file(path, two_models[0])
    proc, port = serve_cli(path)
    try:

        def get(target: str) -> tuple[int, Any]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", target)
            response = conn.getresponse()
            status, body = response.status, json.loads(response.read())
            conn.close()
            return status, body

        first = get("/healthz")[1]["model"]
        replace_file(path, two_models[1])
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while get("/healthz")[1]["model"] == first and time.monotonic() < deadline:
            time.sleep(0.05)
        assert get("/healthz")[1]["model"] != first
        assert get(complete_url("ho"))[0] == 200
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "xrcomplete: stopped" in out and "Traceback" not in err


def test_cli_serve_stops_on_ctrl_c(sample_model: tuple[Completer, Path]) -> None:
    proc, _ = serve_cli(sample_model[1])
    try:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0 and "xrcomplete: stopped" in out, err
    assert "Traceback" not in err


def test_cli_serve_errors_are_one_line(
    tmp_path: Path, sample_model: tuple[Completer, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", str(tmp_path / "none.xrc"), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xrcomplete: error:") and "none.xrc" in err and len(err.splitlines()) == 1
    model = tmp_path / "m.xrc"
    shutil.copyfile(sample_model[1], model)
    assert main(["serve", str(model), "--host", "example.com"]) == 2
    assert "--host" in capsys.readouterr().err
    for bad in (["--port", "70000"], ["--workers", "-1"]):
        with pytest.raises(SystemExit) as exit_:
            main(["serve", str(model), *bad])
        assert exit_.value.code == 2


_BLOCKABLE = sorted({w for q in QUERIES for w in q.split() if re.fullmatch(r"\w+", w)})


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    blocked=st.lists(st.sampled_from(_BLOCKABLE), min_size=1, max_size=5),
    prefixes=st.lists(texts, min_size=1, max_size=6),
)
def test_blocked_terms_never_come_back_through_the_server_nor_after_a_restart(
    sample_model: tuple[Completer, Path], tmp_path_factory: pytest.TempPathFactory,
    blocked: list[str], prefixes: list[str],
) -> None:  # fmt: skip
    file = tmp_path_factory.mktemp("blocklist") / "blocked.txt"

    def check(server: Server) -> None:
        for prefix in prefixes:
            status, got = request(server, "GET", complete_url(prefix, 10))
            assert status == 200, got
            for s in got["suggestions"]:
                assert not set(re.findall(r"\w+", s["text"])) & set(blocked), (s, blocked)

    with start(sample_model[1], port=0, workers=2, blocklist=file, admin_key=ADMIN_KEY) as server:
        status, got = request(server, "POST", "/admin/blocklist", {"block": blocked}, key=ADMIN_KEY)
        assert status == 200 and set(blocked) <= set(got["blocked"]), got
        check(server)
    with start(sample_model[1], port=0, workers=2, blocklist=file, admin_key=ADMIN_KEY) as server:
        answer = request(server, "GET", "/admin/blocklist", key=ADMIN_KEY)[1]
        assert answer["blocked"] == sorted(set(blocked))
        check(server)
