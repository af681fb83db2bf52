"""The server deployed in front of the world: behind a real nginx (Debian's, started by the test),
admin routes need the admin key though nginx connects from loopback, and the client is the
address nginx forwards (rate limits and the live floor are per forwarded client, and a peer
that is no trusted proxy cannot pick its address); keys over real sockets; CORS for a page of
another origin in a real browser (Chromium) and in preflights, never on /admin/*; a flood of
searches from one client never shows its query; half-open connections neither delay requests
nor stay open past the header timeout."""

from __future__ import annotations

import http.client
import json
import re
import resource
import selectors
import socket
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pytest
from helpers import headless_chromium
from nginx import nginx_in_front

from xrcomplete import Completer
from xrcomplete.server import Server, start

if TYPE_CHECKING:
    from selenium import webdriver

ADMIN = "admin-key-0123456789abcdef"
RECORD = "record-key-0123456789abcdef"
SEARCH = "search-key-0123456789abcdef"
WRONG = "wrong-key-0123456789abcdef"
LOOPBACK = ["127.0.0.1/32"]
# New queries: the sample model knows neither (it only echoes them back as "composed" when
# they are typed whole).
NEW = "iphone 17 pro max"
OTHER = "zorblax quintet"


class Address(Protocol):
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...


@dataclass(frozen=True)
class Reply:
    status: int
    headers: http.client.HTTPMessage  # names are case-insensitive
    body: Any  # the decoded JSON body, else the raw bytes

    @property
    def code(self) -> str:
        code: str = self.body["error"]["code"]
        return code


def call(
    where: Address,
    method: str,
    target: str,
    body: object = None,
    *,
    key: str | None = None,
    xff: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """One request on a fresh connection to ``where`` (a server or nginx in front of one)."""
    sent = dict(headers or {})
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        sent["Content-Type"] = "application/json"
    if key is not None:
        sent["Authorization"] = f"Bearer {key}"
    if xff is not None:
        sent["X-Forwarded-For"] = xff
    conn = http.client.HTTPConnection(where.host, where.port, timeout=30)
    try:
        conn.request(method, target, body=data, headers=sent)
        response = conn.getresponse()
        payload = response.read()
        kind = response.headers.get("Content-Type", "")
        decoded = (
            json.loads(payload) if payload and kind.startswith("application/json") else payload
        )
        return Reply(response.status, response.headers, decoded)
    finally:
        conn.close()


def complete_url(prefix: str, k: int = 10) -> str:
    return "/v1/complete?" + urllib.parse.urlencode({"prefix": prefix, "k": str(k)})


def served(where: Address, prefix: str) -> list[tuple[str, float, str]]:
    reply = call(where, "GET", complete_url(prefix))
    assert reply.status == 200, reply
    return [(s["text"], s["score"], s["source"]) for s in reply.body["suggestions"]]


def library(completer: Completer, prefix: str, prev: str = "") -> list[tuple[str, float, str]]:
    return [(c.query, c.score, c.source) for c in completer.complete(prev, prefix, 10)]


def prefixes(query: str) -> list[str]:
    return [query[:n] for n in range(1, len(query) + 1)]


def assert_invisible(where: Address, completer: Completer, query: str) -> None:
    """Under the floor, a query's live counts are no candidate and no feature: every prefix of
    the query is answered as the model alone answers it (the sample completer records nothing)."""
    for prefix in prefixes(query):
        assert served(where, prefix) == library(completer, prefix), prefix
        assert (query, "live") not in [(t, s) for t, _, s in served(where, prefix)]


def assert_live(where: Address, query: str) -> None:
    """Above the floor, a new query searched a few times is suggested from its live counts for
    its prefixes of 3+ characters (README: searched once, it tops them)."""
    for prefix in [query[:3], query[: len(query) // 2], query]:
        assert (query, "live") in [(t, s) for t, _, s in served(where, prefix)], prefix


def metric(where: Address, name: str) -> float:
    reply = call(where, "GET", "/metrics")
    assert reply.status == 200
    text = reply.body.decode()
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert found, f"no {name} in /metrics"
    return float(found.group(1))


def search(where: Address, query: str, xff: str | None = None, **fields: object) -> Reply:
    return call(where, "POST", "/v1/searches", {"query": query, **fields}, xff=xff)


# --- nginx in front ----------------------------------------------------------------------------


def test_behind_nginx_admin_needs_the_key_though_nginx_connects_from_loopback(
    sample_model: tuple[Completer, Path], tmp_path: Path
) -> None:
    model = sample_model[1]
    with start(model, port=0, admin_key=ADMIN, trusted_proxies=LOOPBACK) as server:
        with nginx_in_front(tmp_path / "nginx", server.port) as front:
            for method, target in [("POST", "/admin/reload"), ("GET", "/admin/blocklist")]:
                refused = call(front, method, target)
                assert (refused.status, refused.code) == (401, "key_required"), refused
                # A client claiming to be the server's own machine is no better.
                claimed = call(front, method, target, xff="127.0.0.1")
                assert (claimed.status, claimed.code) == (401, "key_required"), claimed
                wrong = call(front, method, target, key=WRONG)
                assert (wrong.status, wrong.code) == (403, "wrong_key"), wrong
            reloaded = call(front, "POST", "/admin/reload", key=ADMIN)
            assert reloaded.status == 200, reloaded
            assert reloaded.body["model"] == server.model_id
            assert call(front, "GET", "/admin/blocklist", key=ADMIN).status == 200
            # Only the keyed reload happened.
            assert metric(server, 'xrcomplete_model_reloads_total{result="ok"}') == 1


def test_behind_nginx_rate_limits_are_per_forwarded_client(
    sample_model: tuple[Completer, Path], tmp_path: Path
) -> None:
    model = sample_model[1]
    with start(model, port=0, trusted_proxies=LOOPBACK, record_rate=2, record_burst=2) as server:
        with nginx_in_front(tmp_path / "nginx", server.port) as front:
            first = [search(front, "weather", xff="203.0.113.7") for _ in range(3)]
            assert [r.status for r in first] == [200, 200, 429], first
            limited = first[2]
            assert limited.code == "rate_limited"
            # 2 a minute: the next search is allowed in 30 s.
            retry = limited.headers.get("Retry-After")
            assert retry is not None and 1 <= int(retry) <= 60, limited.headers
            # Another address through the same nginx has its own bucket.
            assert search(front, "weather", xff="203.0.113.8").status == 200
            # The client is the rightmost address nginx did not add: what the client itself put
            # to the left of it cannot make it another client.
            spoofed = [
                search(front, "weather", xff=f"198.51.100.{i}, 203.0.113.9") for i in (1, 2, 3)
            ]
            assert [r.status for r in spoofed] == [200, 200, 429]
            # IPv6 clients count per /64.
            v6 = [search(front, "weather", xff=f"2001:db8::{i}") for i in (1, 2, 3)]
            assert [r.status for r in v6] == [200, 200, 429]
            assert search(front, "weather", xff="2001:db8:0:1::1").status == 200
            assert metric(server, 'xrcomplete_searches_refused_total{reason="rate_limited"}') == 3
    # A peer that is no trusted proxy is the client, whatever X-Forwarded-For it sends.
    with start(model, port=0, record_rate=2, record_burst=2) as direct:
        statuses = [search(direct, "weather", xff=f"203.0.113.{i}").status for i in (1, 2, 3)]
        assert statuses == [200, 200, 429]


def test_behind_nginx_a_new_query_shows_once_three_forwarded_clients_searched_it(
    sample_model: tuple[Completer, Path], tmp_path: Path
) -> None:
    completer, model = sample_model
    with start(model, port=0, trusted_proxies=LOOPBACK) as server:
        with nginx_in_front(tmp_path / "nginx", server.port) as front:
            # Two clients, each twice: the second search of each is accepted but not counted.
            for xff in ["203.0.113.1", "203.0.113.2", "203.0.113.1", "203.0.113.2"]:
                reply = search(front, NEW, xff=xff)
                assert (reply.status, reply.body["recorded"]) == (200, 1), reply
            assert_invisible(front, completer, NEW)
            assert metric(server, "xrcomplete_live_waiting") == 1
            assert metric(server, "xrcomplete_searches_capped_total") == 2
            assert search(front, NEW, xff="203.0.113.3").status == 200
            assert_live(front, NEW)
            assert_live(server, NEW)
            assert metric(server, "xrcomplete_live_waiting") == 0
    # From a peer that is no trusted proxy, three forwarded addresses are one client.
    with start(model, port=0) as direct:
        for i in (1, 2, 3):
            assert search(direct, NEW, xff=f"203.0.113.{i}").status == 200
        assert_invisible(direct, completer, NEW)
        assert metric(direct, "xrcomplete_live_waiting") == 1


# --- keys over real sockets --------------------------------------------------------------------


def test_admin_routes_need_the_admin_key_even_from_loopback(
    sample_model: tuple[Completer, Path],
) -> None:
    model = sample_model[1]
    routes = [("POST", "/admin/reload"), ("GET", "/admin/blocklist"), ("POST", "/admin/blocklist")]
    with start(model, port=0, admin_key=ADMIN, record_keys=[RECORD]) as server:
        before = server.model_id
        for method, target in routes:
            body = {"block": ["weather"]} if target == "/admin/blocklist" else None
            refused = call(server, method, target, body)
            assert (refused.status, refused.code) == (401, "key_required"), (target, refused)
            # Wrong keys: another, the record key, and the admin key cut short or lengthened.
            for key in [WRONG, RECORD, ADMIN[:-1], ADMIN + "x"]:
                wrong = call(server, method, target, body, key=key)
                assert (wrong.status, wrong.code) == (403, "wrong_key"), (target, key, wrong)
            basic = call(server, method, target, body, headers={"Authorization": f"Basic {ADMIN}"})
            assert basic.status in (401, 403), (target, basic)
        # Nothing was blocked by the refused requests.
        blocklist = call(server, "GET", "/admin/blocklist", key=ADMIN)
        assert blocklist.status == 200 and "weather" not in blocklist.body["blocked"], blocklist
        reloaded = call(server, "POST", "/admin/reload", key=ADMIN)
        assert reloaded.status == 200 and reloaded.body["model"] == before, reloaded
        # Authorised, the blocklist route answers as it does (no --blocklist file here).
        no_file = call(server, "POST", "/admin/blocklist", {"block": ["weather"]}, key=ADMIN)
        assert (no_file.status, no_file.code) == (409, "no_blocklist_file"), no_file
    # Without an admin key, admin routes are off, whatever the request sends.
    with start(model, port=0) as server:
        for method, target in routes:
            for sent in [None, ADMIN]:
                off = call(server, method, target, key=sent)
                assert (off.status, off.code) == (403, "admin_off"), (target, off)


def test_counts_times_and_users_need_a_record_key(sample_model: tuple[Completer, Path]) -> None:
    model = sample_model[1]
    with start(model, port=0, admin_key=ADMIN, record_keys=[RECORD]) as server:
        for body in [
            {"query": NEW, "count": 50},
            {"query": NEW, "time": time.time()},
            {"query": NEW, "user": "u1"},
            [{"query": "weather"}, {"query": NEW, "count": 2}],
        ]:
            refused = call(server, "POST", "/v1/searches", body)
            assert (refused.status, refused.code) == (403, "needs_record_key"), (body, refused)
            wrong = call(server, "POST", "/v1/searches", body, key=WRONG)
            assert (wrong.status, wrong.code) == (403, "wrong_key"), (body, wrong)
        assert server.live_stats()["events"] == 0  # a batch is all or nothing
        # Each refusal is counted (the batch's two searches maybe each).
        assert metric(server, 'xrcomplete_searches_refused_total{reason="needs_record_key"}') >= 4
        assert metric(server, 'xrcomplete_searches_refused_total{reason="wrong_key"}') >= 4
        # A plain search needs no key.
        assert search(server, "weather").status == 200


def test_a_keyed_search_with_a_count_is_trusted_as_the_library_records_it(
    sample_model: tuple[Completer, Path],
) -> None:
    model = sample_model[1]
    library_side = Completer.load(model)  # its own live counts
    now = time.time()
    with start(model, port=0, admin_key=ADMIN, record_keys=[RECORD]) as server:
        batch = [{"query": NEW, "count": 50, "time": now}]
        keyed = call(server, "POST", "/v1/searches", batch, key=RECORD)
        assert (keyed.status, keyed.body["recorded"]) == (200, 1), keyed
        # The admin key is a record key too.
        one = {"query": OTHER, "count": 7, "time": now + 1}
        by_admin = call(server, "POST", "/v1/searches", one, key=ADMIN)
        assert by_admin.status == 200, by_admin
        library_side.record(NEW, count=50.0, time=now)
        library_side.record(OTHER, count=7.0, time=now + 1)
        for prefix in [*prefixes(NEW)[:4], "iphone 1", NEW, OTHER[:3], OTHER]:
            assert served(server, prefix) == library(library_side, prefix), prefix
        top, _, source = served(server, NEW[:4])[0]
        assert (top, source) == (NEW, "live")


def test_keyed_searches_naming_a_user_or_session_count_per_user(
    sample_model: tuple[Completer, Path],
) -> None:
    completer, model = sample_model
    with start(model, port=0, record_keys=[RECORD]) as server:
        # Two users, twice each, from one address: two clients.
        for user in ["u1", "u2", "u1", "u2"]:
            keyed = call(server, "POST", "/v1/searches", {"query": NEW, "user": user}, key=RECORD)
            assert keyed.status == 200, keyed
        assert_invisible(server, completer, NEW)
        third = call(server, "POST", "/v1/searches", {"query": NEW, "session": "s3"}, key=RECORD)
        assert third.status == 200, third
        assert_live(server, NEW)


def test_search_keys_close_the_api_but_not_health(sample_model: tuple[Completer, Path]) -> None:
    model = sample_model[1]
    with start(
        model, port=0, admin_key=ADMIN, record_keys=[RECORD], search_keys=[SEARCH]
    ) as server:
        for method, target, body in [
            ("GET", complete_url("ch"), None),
            ("POST", "/v1/searches", {"query": "weather"}),
        ]:
            refused = call(server, method, target, body)
            assert (refused.status, refused.code) == (401, "key_required"), refused
            wrong = call(server, method, target, body, key=WRONG)
            assert (wrong.status, wrong.code) == (403, "wrong_key"), wrong
            for key in [SEARCH, RECORD, ADMIN]:
                assert call(server, method, target, body, key=key).status == 200, (target, key)
        counted = call(server, "POST", "/v1/searches", {"query": NEW, "count": 3}, key=SEARCH)
        assert (counted.status, counted.code) == (403, "needs_record_key")
        assert call(server, "GET", "/healthz").status == 200
        assert call(server, "GET", "/readyz").status == 200


@pytest.mark.parametrize(
    ("option", "value", "named"),
    [
        ("admin_key", "short-key", "key"),
        ("admin_key", "a key with spaces in it", "key"),
        ("admin_key", "ключ-ключ-ключ-ключ", "key"),
        ("record_keys", [RECORD, "tab\tinside-the-key-0123"], "key"),
        ("search_keys", ["short"], "key"),
        ("trusted_proxies", ["10.0.0.0/33"], r"(?i)prox|cidr|network|address"),
        ("trusted_proxies", ["bogus"], r"(?i)prox|cidr|network|address"),
        ("cors_origins", ["http://127.0.0.1:8000/page"], r"(?i)origin"),
        ("record_rate", -1.0, "record_rate"),
        ("header_timeout", 0.0, "header_timeout"),
    ],
)
def test_bad_deployment_options_are_value_errors_that_never_echo_a_key(
    sample_model: tuple[Completer, Path], option: str, value: str | list[str] | float, named: str
) -> None:
    with pytest.raises(ValueError, match=named) as raised:
        start(sample_model[1], port=0, **{option: value}).shutdown()  # type: ignore[arg-type]
    keys = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    if option.endswith(("_key", "_keys")):
        for key in keys:
            assert key not in str(raised.value), "a key is never echoed"


# --- CORS ----------------------------------------------------------------------------------------


def allows(header: str | None, item: str) -> bool:
    """Whether an Access-Control-Allow-* list names ``item`` (or is ``*``)."""
    listed = {part.strip().lower() for part in (header or "").split(",")}
    return item.lower() in listed or "*" in listed


def test_cors_preflights_answer_configured_origins_on_v1_only(
    sample_model: tuple[Completer, Path],
) -> None:
    model = sample_model[1]
    page = "http://127.0.0.1:9"
    evil = "http://evil.example"
    with start(model, port=0, cors_origins=[page], admin_key=ADMIN) as server:
        asks_get = {"Origin": page, "Access-Control-Request-Method": "GET"}
        pre = call(server, "OPTIONS", complete_url("ch"), headers=asks_get)
        assert 200 <= pre.status < 300, pre
        assert pre.headers.get("Access-Control-Allow-Origin") == page
        assert allows(pre.headers.get("Access-Control-Allow-Methods"), "GET")
        asks_post = {
            "Origin": page,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        }
        pre = call(server, "OPTIONS", "/v1/searches", headers=asks_post)
        assert 200 <= pre.status < 300, pre
        assert pre.headers.get("Access-Control-Allow-Origin") == page
        assert allows(pre.headers.get("Access-Control-Allow-Methods"), "POST")
        assert allows(pre.headers.get("Access-Control-Allow-Headers"), "content-type")
        got = call(server, "GET", complete_url("ch"), headers={"Origin": page})
        assert got.status == 200 and got.headers.get("Access-Control-Allow-Origin") == page
        # Another origin is answered (the browser withholds the answer), without the header.
        for method, headers in [
            ("OPTIONS", {**asks_get, "Origin": evil}),
            ("GET", {"Origin": evil}),
        ]:
            other = call(server, method, complete_url("ch"), headers=headers)
            assert "Access-Control-Allow-Origin" not in other.headers, (method, other)
        # Admin routes never carry it, even for the configured origin and with the key.
        for method, target, key in [
            ("OPTIONS", "/admin/reload", None),
            ("GET", "/admin/reload", None),
            ("POST", "/admin/reload", None),
            ("POST", "/admin/reload", ADMIN),
            ("OPTIONS", "/admin/blocklist", None),
            ("GET", "/admin/blocklist", ADMIN),
        ]:
            asks = {"Origin": page, "Access-Control-Request-Method": "POST"}
            reply = call(server, method, target, key=key, headers=asks)
            assert "Access-Control-Allow-Origin" not in reply.headers, (method, target, reply)
            if key is not None:
                assert reply.status == 200, (method, target, reply)
    with start(model, port=0, cors_origins=["*"]) as anyone:
        got = call(anyone, "GET", complete_url("ch"), headers={"Origin": evil})
        assert got.headers.get("Access-Control-Allow-Origin") == "*"
    with start(model, port=0) as closed:
        for method, headers in [("OPTIONS", asks_get), ("GET", {"Origin": page})]:
            reply = call(closed, method, complete_url("ch"), headers=headers)
            assert "Access-Control-Allow-Origin" not in reply.headers, (method, reply)


PAGE = b"""<!doctype html>
<meta charset="utf-8">
<title>another origin</title>
<p id="status">loading</p>
<ul id="suggestions"></ul>
<script>
const params = new URLSearchParams(location.search);
const api = params.get("api");
async function run() {
  const session = params.get("session");
  if (params.get("search")) {
    const posted = await fetch(api + "/v1/searches", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({query: params.get("search"), session: session}),
    });
    if (!posted.ok) throw new Error("search: HTTP " + posted.status);
  }
  let url = api + "/v1/complete?prefix=" + encodeURIComponent(params.get("prefix"));
  if (session) url += "&session=" + encodeURIComponent(session);
  const answer = await fetch(url);
  if (!answer.ok) throw new Error("complete: HTTP " + answer.status);
  const body = await answer.json();
  const list = document.getElementById("suggestions");
  for (const s of body.suggestions) {
    const li = document.createElement("li");
    li.dataset.text = s.text;
    li.textContent = s.text;
    list.append(li);
  }
}
const status = document.getElementById("status");
run().then(
  () => { status.textContent = "ok"; },
  (err) => { status.textContent = "error: " + err; },
);
</script>
"""


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet


@contextmanager
def page_origin() -> Iterator[str]:
    """A second origin on a free loopback port serving PAGE; yields its origin."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    """Headless Chromium, as in test_browser.py."""
    with headless_chromium() as driver:
        yield driver


def open_page(driver: webdriver.Chrome, origin: str, **params: str) -> tuple[str, list[str]]:
    """Opens the page of ``origin`` with ``params``; once its script has finished: its status
    ("ok" or "error: ...") and the suggestions it shows."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{origin}/?{urllib.parse.urlencode(params)}")
    script = "return document.getElementById('status').textContent"
    WebDriverWait(driver, 20).until(lambda d: d.execute_script(script) != "loading")
    status: str = driver.execute_script(script)
    texts: list[str] = driver.execute_script(
        "return [...document.querySelectorAll('#suggestions li')].map(li => li.dataset.text)"
    )
    return status, texts


def test_a_page_of_another_origin_completes_only_with_cors(
    browser: webdriver.Chrome, sample_model: tuple[Completer, Path]
) -> None:
    completer, model = sample_model
    prefix = "ch"
    want = [c.query for c in completer.complete("", prefix, 10)]
    assert want
    with page_origin() as origin:
        with start(model, port=0, cors_origins=[origin]) as server:
            assert open_page(browser, origin, api=server.url, prefix=prefix) == ("ok", want)
            # A JSON search (a preflighted request), then the session's next suggestions.
            session = uuid.uuid4().hex
            after = [c.query for c in completer.complete(want[0], "ho", 10)]
            assert after != [c.query for c in completer.complete("", "ho", 10)]
            got = open_page(
                browser, origin, api=server.url, prefix="ho", search=want[0], session=session
            )
            assert got == ("ok", after)
        with start(model, port=0) as closed:
            # The same page, the same request: without CORS the browser withholds the answer.
            status, shown = open_page(browser, origin, api=closed.url, prefix=prefix)
            assert status.startswith("error: ") and shown == [], status
            assert call(closed, "GET", complete_url(prefix)).status == 200  # it does answer


# --- floods --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record_rate", "sessions"),
    [(0.0, "none"), (0.0, "random"), (0.0, "distinct"), (None, "distinct")],
)
def test_a_flood_from_one_client_never_shows_its_query(
    sample_model: tuple[Completer, Path], record_rate: float | None, sessions: str
) -> None:
    completer, model = sample_model
    options: dict[str, Any] = {} if record_rate is None else {"record_rate": record_rate}
    with start(model, port=0, **options) as server:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
        statuses = []
        began = time.monotonic()
        try:
            for i in range(300):
                body: dict[str, str] = {"query": NEW}
                if sessions == "random":
                    body["session"] = uuid.uuid4().hex[: 1 + i % 20]
                elif sessions == "distinct":
                    body["session"] = f"flood-{i}"
                headers = {"Content-Type": "application/json"}
                conn.request("POST", "/v1/searches", body=json.dumps(body), headers=headers)
                response = conn.getresponse()
                response.read()
                statuses.append(response.status)
        finally:
            conn.close()
        if record_rate is None:
            # The default bucket (60 a minute, 10 at once): the burst, then 429s.
            assert statuses[:10] == [200] * 10 and set(statuses) == {200, 429}, statuses
            # One more a second at most while the flood lasted.
            assert statuses.count(200) <= 11 + time.monotonic() - began, statuses
        else:
            assert statuses == [200] * 300
            assert metric(server, "xrcomplete_searches_capped_total") == 299
        assert_invisible(server, completer, NEW)
        assert metric(server, "xrcomplete_live_waiting") == 1


# --- connections ---------------------------------------------------------------------------------

HALF_OPEN = 500
PARTIAL_HEAD = b"GET /v1/complete?prefix=a HTTP/1.1\r\nHost: x\r\n"  # no blank line: never ends


@contextmanager
def enough_files(needed: int) -> Iterator[None]:
    """Raises the soft limit of open files to ``needed`` for the block (server and clients share
    this process)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"needs {needed} open files, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def open_half(server: Server, n: int) -> list[socket.socket]:
    held: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.create_connection((server.host, server.port), timeout=10)
            held.append(s)
            s.sendall(PARTIAL_HEAD)
    except BaseException:
        for s in held:
            s.close()
        raise
    return held


def closed_within(held: list[socket.socket], seconds: float) -> int:
    """Waits up to ``seconds`` for the server to close each socket (end of stream or a reset;
    whatever it sends first, such as a 408, is read and dropped); returns how many it closed."""
    deadline = time.monotonic() + seconds
    with selectors.DefaultSelector() as selector:
        for s in held:
            selector.register(s, selectors.EVENT_READ)
        closed = 0
        while closed < len(held) and time.monotonic() < deadline:
            for ready, _ in selector.select(timeout=max(0.0, deadline - time.monotonic())):
                sock: socket.socket = ready.fileobj  # type: ignore[assignment]
                try:
                    data = sock.recv(65536)
                except (ConnectionResetError, BrokenPipeError):
                    data = b""
                if not data:
                    selector.unregister(sock)
                    closed += 1
    return closed


def test_half_open_connections_do_not_delay_requests_nor_outstay_the_header_timeout(
    sample_model: tuple[Completer, Path],
) -> None:
    model = sample_model[1]
    with enough_files(4 * HALF_OPEN + 1024):
        # The default header timeout (30 s): they stay while requests are answered at once.
        with start(model, port=0) as server:
            held = open_half(server, HALF_OPEN)
            try:
                for _ in range(5):
                    began = time.monotonic()
                    reply = call(server, "GET", complete_url("ch"))
                    assert reply.status == 200 and time.monotonic() - began < 1.0
                assert closed_within(held, 0.5) == 0
            finally:
                for s in held:
                    s.close()
        with start(model, port=0, header_timeout=1.0) as server:
            held = open_half(server, HALF_OPEN)
            # An idle kept-alive connection is dropped too.
            idle = http.client.HTTPConnection(server.host, server.port, timeout=10)
            try:
                began = time.monotonic()
                assert call(server, "GET", complete_url("ch")).status == 200
                assert time.monotonic() - began < 1.0
                idle.request("GET", complete_url("ch"))
                idle.getresponse().read()
                assert idle.sock is not None
                held.append(idle.sock)
                closed = closed_within(held, 6.0)
                assert closed == HALF_OPEN + 1, f"{HALF_OPEN + 1 - closed} still open after 6 s"
                assert call(server, "GET", complete_url("ch")).status == 200
            finally:
                for s in held:
                    s.close()
                idle.close()
