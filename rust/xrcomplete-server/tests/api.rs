//! The server over real loopback connections: answers equal the completer's, sessions, every
//! bad-input case, metrics, reload (also under load, also of a bad file), shutdown.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use xrcomplete_core::index::TreeSpec;
use xrcomplete_core::persist::Persist;
use xrcomplete_core::qac::{CompleteScratch, Completer, FitParams, Request};
use xrcomplete_core::retrieval::{
    FitParams as RetrievalParams, ProductId, ProductIds, ProductRetriever, RetrieveScratch,
};
use xrcomplete_core::xr::Progress;
use xrcomplete_server::{Config, Key, Server};

/// After "cheap flights" users search "hotels in boston"; "home depot" is the popular h-query.
fn train(extra_weight: f64) -> Completer {
    let queries = [
        "home depot",
        "hotels in boston",
        "cheap flights",
        "weather",
        "wells fargo",
        "walmart",
        "hot dogs",
        "café au lait",
    ];
    let counts = [50.0 + extra_weight, 10.0, 10.0, 10.0, 10.0, 40.0, 5.0, 3.0];
    let mut pairs = Vec::new();
    for _ in 0..10 {
        pairs.extend([
            (Some(2), 1),
            (Some(3), 4),
            (None, 0),
            (None, 5),
            (Some(5), 0),
            (Some(0), 6),
            (None, 7),
        ]);
    }
    let params = FitParams {
        tree: TreeSpec::trie(2),
        ..FitParams::default()
    };
    Completer::fit(
        &queries,
        &counts,
        &pairs,
        None,
        &params,
        &Progress::default(),
    )
    .unwrap()
}

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("xrc-server-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
    fn model(&self, completer: &Completer) -> PathBuf {
        let path = self.0.join("model.xrc");
        completer.save(&path).unwrap();
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The admin key of the servers of these tests.
const ADMIN: &str = "admin-key-of-the-tests";
/// Their record key.
const RECORD: &str = "record-key-of-the-tests";

fn start(path: &Path, tweak: impl FnOnce(&mut Config)) -> Server {
    let mut config = Config::new(path);
    config.port = 0;
    config.workers = 2;
    config.access.keys.admin = Some(Key::new(ADMIN).unwrap());
    config.access.keys.record = vec![Key::new(RECORD).unwrap()];
    tweak(&mut config);
    Server::start(config).unwrap()
}

/// One HTTP/1.1 exchange: the response's head, lower-cased, and its body (de-chunked).
fn head_and_body_of(addr: SocketAddr, request: &[u8]) -> (String, String) {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    conn.write_all(request).unwrap();
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (head, body)
}

/// One HTTP/1.1 exchange: (status, body).
fn exchange(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let (head, body) = head_and_body_of(addr, request);
    (head.split(' ').nth(1).unwrap().parse().unwrap(), body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}

fn get(addr: SocketAddr, target: &str) -> (u16, String) {
    let req = format!("GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    exchange(addr, req.as_bytes())
}

fn post(addr: SocketAddr, target: &str, body: &str) -> (u16, String) {
    send(addr, "POST", target, "", body)
}

/// A request with these extra header lines (each ending in \r\n).
fn request(method: &str, target: &str, headers: &str, body: &str) -> String {
    format!(
        "{method} {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// [`request`]'s exchange: (status, body).
fn send(addr: SocketAddr, method: &str, target: &str, headers: &str, body: &str) -> (u16, String) {
    exchange(addr, request(method, target, headers, body).as_bytes())
}

/// [`request`]'s exchange: the head, lower-cased, and the body.
fn head_and_body(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &str,
    body: &str,
) -> (String, String) {
    head_and_body_of(addr, request(method, target, headers, body).as_bytes())
}

/// A POST with the record key (the site's backend).
fn record_post(addr: SocketAddr, target: &str, body: &str) -> (u16, String) {
    send(
        addr,
        "POST",
        target,
        &format!("Authorization: Bearer {RECORD}\r\n"),
        body,
    )
}

/// A POST with the admin key.
fn admin_post(addr: SocketAddr, target: &str, body: &str) -> (u16, String) {
    let auth = format!("Authorization: Bearer {ADMIN}\r\n");
    send(addr, "POST", target, &auth, body)
}

/// A GET with the admin key.
fn admin_get(addr: SocketAddr, target: &str) -> (u16, String) {
    let auth = format!("Authorization: Bearer {ADMIN}\r\n");
    send(addr, "GET", target, &auth, "")
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'0'..=b'9' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn answers_equal_the_completers() {
    let dir = Dir::new("equal");
    let c = train(0.0);
    let server = start(&dir.model(&c), |_| {});
    let mut scratch = CompleteScratch::default();
    for (prev, prefix, k) in [
        ("", "h", 10),
        ("cheap flights", "h", 3),
        ("Weather ", "W", 10),
        ("", "Caf", 5),
        ("", "zzz", 10),
        ("walmart", "", 4),
        ("", "ho", 0),
    ] {
        let (status, body) = get(
            server.addr(),
            &format!(
                "/v1/complete?prefix={}&prev={}&k={k}",
                enc(prefix),
                enc(prev)
            ),
        );
        assert_eq!(status, 200, "{body}");
        let got = json_of(&body);
        let want = c
            .complete(&Request::new(prev, prefix, k), &mut scratch)
            .unwrap();
        let typed = xrcomplete_core::qac::normalize_prefix(prefix)
            .chars()
            .count();
        let suggestions = got["suggestions"].as_array().unwrap();
        assert_eq!(suggestions.len(), want.len());
        for (s, a) in suggestions.iter().zip(&want) {
            assert_eq!(s["text"], json!(a.query));
            // Exactly the completer's f32.
            assert_eq!(s["score"].as_f64().unwrap(), f64::from(a.score));
            assert_eq!(s["source"], json!(a.origin.name()));
            assert_eq!(s["highlight"], json!([0, typed]));
        }
        assert_eq!(got["model"], json!(server.model_id()));
        assert!(got["took_us"].is_u64());
    }
    // The session signal comes through.
    let (_, body) = get(
        server.addr(),
        "/v1/complete?prefix=h&prev=cheap+flights&k=1",
    );
    assert_eq!(json_of(&body)["suggestions"][0]["text"], "hotels in boston");
    // k defaults to 10.
    let (_, body) = get(server.addr(), "/v1/complete?prefix=w");
    let n = json_of(&body)["suggestions"].as_array().unwrap().len();
    let want = c
        .complete(&Request::new("", "w", 10), &mut scratch)
        .unwrap();
    assert_eq!(n, want.len());
    assert!(n > 1);
}

#[test]
fn a_session_stands_for_its_last_search_until_it_expires_or_is_evicted() {
    let dir = Dir::new("sessions");
    let server = start(&dir.model(&train(0.0)), |c| {
        c.session_ttl = Duration::from_millis(600);
        c.max_sessions = 2;
    });
    let addr = server.addr();
    let top = |session: &str| {
        let (status, body) = get(
            addr,
            &format!("/v1/complete?prefix=h&k=1&session={session}"),
        );
        assert_eq!(status, 200, "{body}");
        let v = json_of(&body);
        (
            v["suggestions"][0]["text"].as_str().unwrap().to_owned(),
            v["prev"].as_str().unwrap().to_owned(),
        )
    };
    assert_eq!(top("a"), ("home depot".into(), "".into()));
    let (status, body) = post(
        addr,
        "/v1/searches",
        r#"{"query": " Cheap Flights", "session": "a"}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        json_of(&body),
        json!({"recorded": 1, "session": "a", "prev": "cheap flights"})
    );
    assert_eq!(
        top("a"),
        ("hotels in boston".into(), "cheap flights".into())
    );
    // Past the cap of 2, the least recent searcher is forgotten.
    for id in ["b", "c"] {
        assert_eq!(
            post(
                addr,
                "/v1/searches",
                &format!(r#"{{"query": "weather", "session": "{id}"}}"#)
            )
            .0,
            200
        );
    }
    assert_eq!(top("a").1, "");
    assert_eq!(top("c").1, "weather");
    let (_, metrics) = get(addr, "/metrics");
    assert!(metrics.contains("xrcomplete_sessions 2"), "{metrics}");
    // Idle past the time to live: gone, and swept from the table.
    std::thread::sleep(Duration::from_millis(900));
    assert_eq!(top("c").1, "");
    let (_, metrics) = get(addr, "/metrics");
    assert!(metrics.contains("xrcomplete_sessions 0"), "{metrics}");
}

#[test]
fn bad_requests_get_a_4xx_with_a_json_error() {
    let dir = Dir::new("bad");
    let server = start(&dir.model(&train(0.0)), |c| {
        c.limits.max_k = 50;
        c.limits.max_text_bytes = 64;
        c.limits.max_body_bytes = 256;
    });
    let addr = server.addr();
    let long = "a".repeat(65);
    let cases: Vec<(u16, &str, (u16, String))> = vec![
        (400, "missing_prefix", get(addr, "/v1/complete?k=3")),
        (400, "bad_k", get(addr, "/v1/complete?prefix=h&k=")),
        (400, "bad_k", get(addr, "/v1/complete?prefix=h&k=ten")),
        (400, "bad_k", get(addr, "/v1/complete?prefix=h&k=-1")),
        (400, "bad_k", get(addr, "/v1/complete?prefix=h&k=2.5")),
        (400, "bad_k", get(addr, "/v1/complete?prefix=h&k=51")),
        (
            400,
            "bad_k",
            get(addr, "/v1/complete?prefix=h&k=99999999999999999999999"),
        ),
        (
            400,
            "too_long",
            get(addr, &format!("/v1/complete?prefix={long}")),
        ),
        (
            400,
            "too_long",
            get(addr, &format!("/v1/complete?prefix=h&prev={long}")),
        ),
        (400, "bad_encoding", get(addr, "/v1/complete?prefix=%FF%FE")),
        (400, "bad_encoding", get(addr, "/v1/complete?prefix=ab%zz")),
        (
            400,
            "unknown_parameter",
            get(addr, "/v1/complete?prefix=h&kk=3"),
        ),
        (
            400,
            "repeated_parameter",
            get(addr, "/v1/complete?prefix=h&prefix=w"),
        ),
        (
            400,
            "prev_and_session",
            get(addr, "/v1/complete?prefix=h&prev=a&session=b"),
        ),
        (
            400,
            "bad_session",
            get(addr, "/v1/complete?prefix=h&session="),
        ),
        (404, "not_found", get(addr, "/v2/complete?prefix=h")),
        (
            405,
            "method_not_allowed",
            post(addr, "/v1/complete?prefix=h", ""),
        ),
        (405, "method_not_allowed", get(addr, "/v1/searches")),
        (400, "bad_json", post(addr, "/v1/searches", "{not json")),
        (
            400,
            "bad_json",
            post(addr, "/v1/searches", r#"{"session": "x"}"#),
        ),
        (
            400,
            "bad_count",
            post(addr, "/v1/searches", r#"{"query": "x", "count": -1}"#),
        ),
        (
            400,
            "prev_and_session",
            post(
                addr,
                "/v1/searches",
                r#"[{"query": "x"}, {"query": "y", "prev": "a", "session": "b"}]"#,
            ),
        ),
        (
            400,
            "bad_json",
            post(addr, "/v1/searches", r#"{"query": 3, "session": "s"}"#),
        ),
        (
            400,
            "bad_json",
            post(
                addr,
                "/v1/searches",
                r#"{"query": "x", "session": "s", "extra": 1}"#,
            ),
        ),
        (
            400,
            "empty_query",
            post(addr, "/v1/searches", r#"{"query": "  ", "session": "s"}"#),
        ),
        (
            400,
            "too_long",
            post(
                addr,
                "/v1/searches",
                &format!(r#"{{"query": "{long}", "session": "s"}}"#),
            ),
        ),
        (
            400,
            "bad_session",
            post(
                addr,
                "/v1/searches",
                &format!(r#"{{"query": "x", "session": "{}"}}"#, "s".repeat(129)),
            ),
        ),
        (
            413,
            "body_too_large",
            post(
                addr,
                "/v1/searches",
                &format!(r#"{{"query": "{}", "session": "s"}}"#, "x".repeat(300)),
            ),
        ),
    ];
    for (status, code, (got_status, body)) in cases {
        assert_eq!(got_status, status, "{code}: {body}");
        assert_eq!(json_of(&body)["error"]["code"], code, "{body}");
    }
    // Raw bytes that are not UTF-8 in the request target: refused by the HTTP layer (a 400).
    let (status, _) = exchange(
        addr,
        b"GET /v1/complete?prefix=\xff\xfe HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 400);
    // Every refusal was counted, and no 5xx was ever answered.
    let (_, metrics) = get(addr, "/metrics");
    assert!(
        metrics.contains(r#"xrcomplete_http_requests_total{route="/v1/complete",status="400"} 15"#),
        "{metrics}"
    );
    assert!(!metrics.contains(r#"status="5"#), "{metrics}");
    // Still serving.
    assert_eq!(get(addr, "/v1/complete?prefix=h").0, 200);
}

#[test]
fn recorded_searches_complete_at_once_and_survive_a_restart_through_the_event_log() {
    let dir = Dir::new("live");
    let c = train(0.0);
    let path = dir.model(&c);
    let events = dir.0.join("events.log");
    let with_log = |c: &mut Config| {
        c.events = Some(events.clone());
        c.live.half_life = Some(f64::INFINITY);
    };
    let top = |addr, prefix: &str| {
        let (_, body) = get(addr, &format!("/v1/complete?prefix={prefix}&k=1"));
        json_of(&body)["suggestions"][0].clone()
    };
    {
        let server = start(&path, with_log);
        let addr = server.addr();
        assert_ne!(top(addr, "hol")["text"], "holiday inn express");
        let one = r#"{"query": "Holiday Inn Express", "time": 1000}"#;
        assert_eq!(
            json_of(&record_post(addr, "/v1/searches", one).1),
            json!({"recorded": 1})
        );
        let batch: Vec<Value> = (0..29)
            .map(|i| json!({"query": "holiday inn express", "prev": "weather", "time": 1001 + i}))
            .collect();
        let (status, body) = record_post(addr, "/v1/searches", &Value::from(batch).to_string());
        assert_eq!((status, json_of(&body)), (200, json!({"recorded": 29})));
        // An empty batch records nothing (it used to index its first search and panic).
        let (status, body) = record_post(addr, "/v1/searches", "[]");
        assert_eq!((status, json_of(&body)), (200, json!({"recorded": 0})));
        // The log is too small to learn a ranker from (the fixed rule ranks): the recorded
        // query is a candidate, marked live. (The learned ranker's use of live counts is tested
        // from Python, on the bundled AOL slice.)
        let (_, body) = get(addr, "/v1/complete?prefix=hol&k=10");
        let found = json_of(&body)["suggestions"].as_array().unwrap().clone();
        assert!(
            found
                .iter()
                .any(|s| s["text"] == "holiday inn express" && s["source"] == "live"),
            "{found:?}"
        );
        assert_eq!(server.live_stats().events, 30);
    }
    // Restarted on the same log: the 30 searches are back.
    let server = start(&path, with_log);
    assert_eq!(server.live_stats().events, 30);
    let (_, body) = get(server.addr(), "/v1/complete?prefix=hol&k=10");
    assert!(
        body.contains(r#""text":"holiday inn express","score""#),
        "{body}"
    );
    let (_, metrics) = get(server.addr(), "/metrics");
    assert!(
        metrics.contains("xrcomplete_events_replayed_total 30"),
        "{metrics}"
    );
    drop(server);
    // A file that is not an event log is refused at start, and left alone.
    std::fs::write(&events, b"my notes").unwrap();
    let mut config = Config::new(&path);
    config.port = 0;
    config.events = Some(events.clone());
    let err = Server::start(config).unwrap_err();
    assert!(
        err.to_string().contains("not an xrcomplete event log"),
        "{err}"
    );
    assert_eq!(std::fs::read(&events).unwrap(), b"my notes");
}

#[test]
fn health_readiness_metrics_and_the_demo_page() {
    let dir = Dir::new("health");
    let server = start(&dir.model(&train(0.0)), |_| {});
    let addr = server.addr();
    let id = server.model_id();
    assert_eq!(id.len(), 16);
    assert_eq!(
        json_of(&get(addr, "/healthz").1),
        json!({"status": "ok", "model": id})
    );
    assert_eq!(
        json_of(&get(addr, "/readyz").1),
        json!({"status": "ready", "model": id})
    );
    let (status, page) = get(addr, "/");
    assert_eq!(status, 200);
    assert!(page.contains("<script src=\"app.js\">"));
    assert!(get(addr, "/app.js").1.contains("v1/complete"));
    assert_eq!(get(addr, "/style.css").0, 200);
    get(addr, "/v1/complete?prefix=ho");
    let (status, metrics) = get(addr, "/metrics");
    assert_eq!(status, 200);
    for line in [
        r#"xrcomplete_http_requests_total{route="/v1/complete",status="200"} 1"#.to_owned(),
        r#"xrcomplete_http_request_duration_seconds_count{route="/v1/complete"} 1"#.to_owned(),
        format!(r#"xrcomplete_model_info{{id="{id}"}} 1"#),
        r#"xrcomplete_model_reloads_total{result="refused"} 0"#.to_owned(),
        "xrcomplete_model_load_seconds ".to_owned(),
    ] {
        assert!(metrics.contains(&line), "{line} not in {metrics}");
    }
}

/// Saves `c` to a temporary file and renames it over `path` (as `Completer.save` does).
fn replace(path: &Path, c: &Completer) {
    c.save(path).unwrap();
}

#[test]
fn reload_serves_a_good_file_and_refuses_a_bad_one() {
    let dir = Dir::new("reload");
    let path = dir.model(&train(0.0));
    let server = start(&path, |_| {});
    let addr = server.addr();
    let old = server.model_id();
    replace(&path, &train(100.0));
    let (status, body) = admin_post(addr, "/admin/reload", "");
    assert_eq!(status, 200, "{body}");
    let new = json_of(&body)["model"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(json_of(&body)["previous"], json!(old));
    assert_eq!(server.model_id(), new);
    // A corrupt file and a file of another kind are refused; the model serves on.
    let good = std::fs::read(&path).unwrap();
    let mut corrupt = good.clone();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0xff;
    let tmp = dir.0.join("tmp");
    for bad in [corrupt, b"not a model".to_vec(), {
        let t = xrcomplete_core::Trie::new([("a", 1.0)]).unwrap();
        t.to_bytes()
    }] {
        std::fs::write(&tmp, &bad).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        let (status, body) = admin_post(addr, "/admin/reload", "");
        assert_eq!(status, 422, "{body}");
        assert_eq!(json_of(&body)["error"]["code"], "model_refused");
        assert_eq!(server.model_id(), new);
        assert_eq!(get(addr, "/v1/complete?prefix=h").0, 200);
    }
    std::fs::remove_file(&path).unwrap();
    assert_eq!(admin_post(addr, "/admin/reload", "").0, 422);
    let (_, metrics) = get(addr, "/metrics");
    assert!(metrics.contains(r#"xrcomplete_model_reloads_total{result="refused"} 4"#));
    assert!(metrics.contains(r#"xrcomplete_model_reloads_total{result="ok"} 1"#));
}

#[test]
fn a_watched_model_file_is_reloaded_when_it_changes() {
    let dir = Dir::new("watch");
    let path = dir.model(&train(0.0));
    let server = start(&path, |c| c.watch = Some(Duration::from_millis(50)));
    let old = server.model_id();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(server.model_id(), old, "an unchanged file is not reloaded");
    replace(&path, &train(100.0));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server.model_id() == old && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_ne!(server.model_id(), old);
    // A bad file is refused once; the model serves on.
    let current = server.model_id();
    std::fs::write(dir.0.join("tmp"), b"garbage").unwrap();
    std::fs::rename(dir.0.join("tmp"), &path).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(server.model_id(), current);
    let (_, metrics) = get(server.addr(), "/metrics");
    assert!(
        metrics.contains(r#"xrcomplete_model_reloads_total{result="refused"} 1"#),
        "{metrics}"
    );
}

#[test]
fn reloads_under_load_fail_no_request() {
    let dir = Dir::new("load");
    let models = [train(0.0), train(100.0)];
    let path = dir.model(&models[0]);
    let server = Arc::new(start(&path, |_| {}));
    let addr = server.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let (stop, answered) = (stop.clone(), answered.clone());
            std::thread::spawn(move || {
                let prefixes = ["h", "w", "ho", "c"];
                while !stop.load(Ordering::Relaxed) {
                    let (status, body) = get(addr, &format!("/v1/complete?prefix={}", prefixes[i]));
                    assert_eq!(status, 200, "{body}");
                    assert!(!json_of(&body)["suggestions"].as_array().unwrap().is_empty());
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for round in 0..10 {
        replace(&path, &models[(round + 1) % 2]);
        let (status, body) = admin_post(addr, "/admin/reload", "");
        assert_eq!(status, 200, "{body}");
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    assert!(answered.load(Ordering::Relaxed) > 10);
}

#[test]
fn shutdown_stops_accepting_and_ends_cleanly() {
    let dir = Dir::new("shutdown");
    let server = start(&dir.model(&train(0.0)), |_| {});
    let addr = server.addr();
    assert_eq!(get(addr, "/v1/complete?prefix=h").0, 200);
    // A client holding an idle kept-alive connection does not hold the shutdown up.
    let idle = TcpStream::connect(addr).unwrap();
    server.shutdown();
    server.join().unwrap();
    assert!(server.is_finished());
    assert!(TcpStream::connect(addr).is_err());
    drop(idle);
}

#[test]
fn start_errors_are_typed() {
    let dir = Dir::new("start");
    let missing = Server::start(Config::new(dir.0.join("none.xrc"))).unwrap_err();
    assert!(missing.to_string().contains("none.xrc"), "{missing}");
    let path = dir.model(&train(0.0));
    let first = start(&path, |_| {});
    let mut taken = Config::new(&path);
    taken.port = first.addr().port();
    assert!(matches!(
        Server::start(taken),
        Err(xrcomplete_server::ServeError::Bind { .. })
    ));
    let mut bad = Config::new(&path);
    bad.max_sessions = 0;
    assert!(matches!(
        Server::start(bad),
        Err(xrcomplete_server::ServeError::Config(_))
    ));
}

#[test]
fn blocked_terms_are_kept_in_their_file_across_reloads_and_restarts() {
    let dir = Dir::new("blocklist");
    let path = dir.model(&train(0.0));
    let texts = |addr: SocketAddr, query: &str| -> Vec<String> {
        let (status, body) = get(addr, &format!("/v1/complete?k=10&{query}"));
        assert_eq!(status, 200, "{body}");
        json_of(&body)["suggestions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["text"].as_str().unwrap().to_owned())
            .collect()
    };
    // Without --blocklist, run-time edits are refused: they could not be kept.
    let server = start(&path, |_| {});
    let (status, body) = admin_post(server.addr(), "/admin/blocklist", r#"{"block": ["hot"]}"#);
    assert_eq!(status, 409, "{body}");
    assert_eq!(json_of(&body)["error"]["code"], "no_blocklist_file");
    server.shutdown();
    server.join().unwrap();

    let file = dir.0.join("blocked.txt");
    let server = start(&path, |c| c.blocklist = Some(file.clone()));
    let addr = server.addr();
    assert!(texts(addr, "prefix=ho").contains(&"hotels in boston".to_string()));
    let (status, body) = admin_post(addr, "/admin/blocklist", r#"{"block": ["BOSTON", "hot"]}"#);
    assert_eq!(status, 200, "{body}");
    assert_eq!(json_of(&body)["added"], 2);
    assert_eq!(json_of(&body)["blocked"], json!(["boston", "hot"]));
    let after = texts(addr, "prefix=ho");
    assert!(after.contains(&"home depot".to_string()));
    assert!(after
        .iter()
        .all(|t| !t.contains("boston") && !t.starts_with("hot ")));
    assert!(texts(addr, "prev=cheap+flights&prefix=")
        .iter()
        .all(|t| !t.contains("boston")));
    // Bad edits change nothing.
    for bad in [
        r#"{"block": ["--"]}"#,
        r#"{"block": "x"}"#,
        r#"{"nope": []}"#,
        "not json",
    ] {
        let (status, body) = admin_post(addr, "/admin/blocklist", bad);
        assert_eq!(status, 400, "{bad}: {body}");
    }
    assert_eq!(
        json_of(&admin_get(addr, "/admin/blocklist").1)["blocked"],
        json!(["boston", "hot"])
    );
    // A reload of a new model file: the blocked terms still apply.
    replace(&path, &train(100.0));
    assert_eq!(admin_post(addr, "/admin/reload", "").0, 200);
    assert!(texts(addr, "prefix=ho")
        .iter()
        .all(|t| !t.contains("boston")));
    let (status, body) = admin_post(addr, "/admin/blocklist", r#"{"unblock": ["hot"]}"#);
    assert_eq!(
        (status, json_of(&body)["removed"].clone()),
        (200, json!(1)),
        "{body}"
    );
    server.shutdown();
    server.join().unwrap();
    // A restart reads the file.
    let server = start(&path, |c| c.blocklist = Some(file.clone()));
    let addr = server.addr();
    assert_eq!(
        json_of(&admin_get(addr, "/admin/blocklist").1)["blocked"],
        json!(["boston"])
    );
    assert!(texts(addr, "prefix=ho")
        .iter()
        .all(|t| !t.contains("boston")));
    assert!(texts(addr, "prefix=hot").contains(&"hot dogs".to_string()));
    server.shutdown();
    server.join().unwrap();
    // A file with a term that blocks nothing is a start error naming the line.
    std::fs::write(&file, "boston\n\n# note\n?!\n").unwrap();
    let mut config = Config::new(&path);
    config.port = 0;
    config.blocklist = Some(file.clone());
    let err = Server::start(config).unwrap_err().to_string();
    assert!(err.contains("blocked.txt:4"), "{err}");
}

#[test]
fn admin_routes_need_the_admin_key_from_loopback_too() {
    let dir = Dir::new("admin");
    let path = dir.model(&train(0.0));
    let server = start(&path, |_| {});
    let addr = server.addr();
    let code = |r: (u16, String)| (r.0, json_of(&r.1)["error"]["code"].clone());
    assert_eq!(
        code(post(addr, "/admin/reload", "")),
        (401, json!("key_required"))
    );
    assert_eq!(
        code(get(addr, "/admin/blocklist")),
        (401, json!("key_required"))
    );
    for wrong in [RECORD, "admin-key-of-the-test", "admin-key-of-the-testss"] {
        let auth = format!("Authorization: Bearer {wrong}\r\n");
        let got = send(addr, "POST", "/admin/reload", &auth, "");
        assert_eq!(code(got), (403, json!("wrong_key")), "{wrong}");
    }
    assert_eq!(admin_post(addr, "/admin/reload", "").0, 200);
    drop(server);
    // Without an admin key the admin routes are off, whoever asks.
    let server = start(&path, |c| c.access.keys.admin = None);
    let got = admin_post(server.addr(), "/admin/reload", "");
    assert_eq!(code(got.clone()), (403, json!("admin_off")), "{}", got.1);
    assert!(got.1.contains("--admin-key"), "{}", got.1);
}

#[test]
fn strangers_cannot_move_what_others_see() {
    let dir = Dir::new("floor");
    let server = start(&dir.model(&train(0.0)), |c| {
        c.access.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        c.access.record_rate = None;
    });
    let addr = server.addr();
    let from = |ip: &str, body: &str| {
        send(
            addr,
            "POST",
            "/v1/searches",
            &format!("X-Forwarded-For: {ip}\r\n"),
            body,
        )
    };
    let shown = |prefix: &str| -> Vec<String> {
        let (_, body) = get(addr, &format!("/v1/complete?prefix={}&k=10", enc(prefix)));
        json_of(&body)["suggestions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["text"].as_str().unwrap().to_owned())
            .collect()
    };
    let evil = "walmart scam evil example";
    // Count and time need a record key.
    for body in [
        format!(r#"{{"query": "{evil}", "count": 1000000}}"#),
        format!(r#"{{"query": "{evil}", "time": 1}}"#),
        format!(r#"[{{"query": "x"}}, {{"query": "{evil}", "user": "u"}}]"#),
    ] {
        let (status, got) = from("203.0.113.1", &body);
        assert_eq!(
            (status, json_of(&got)["error"]["code"].clone()),
            (403, json!("needs_record_key"))
        );
    }
    // A flood from one client, under any session ids: one count, below the floor.
    for i in 0..300 {
        let body = format!(r#"{{"query": "{evil}", "session": "s{i}"}}"#);
        assert_eq!(from("203.0.113.1", &body).0, 200);
    }
    let (_, metrics) = get(addr, "/metrics");
    assert!(
        metrics.contains("xrcomplete_searches_capped_total 299"),
        "{metrics}"
    );
    assert!(metrics.contains("xrcomplete_live_waiting 1"), "{metrics}");
    // A second client: still not shown; a third: shown.
    assert_eq!(
        from("203.0.113.2", &format!(r#"{{"query": "{evil}"}}"#)).0,
        200
    );
    // (Typed whole, any text is echoed back as a candidate: strict prefixes only.)
    for n in 1..evil.len() {
        assert!(!shown(&evil[..n]).iter().any(|s| s == evil), "{n}");
    }
    // A header from an untrusted peer names nobody: not a third client (tested through a
    // second server that trusts no proxy, sharing nothing, below).
    assert_eq!(
        from("203.0.113.3", &format!(r#"{{"query": "{evil}"}}"#)).0,
        200
    );
    assert!(shown("walmart s").iter().any(|s| s == evil));
    drop(server);
    let server = start(&dir.model(&train(0.0)), |c| c.access.record_rate = None);
    let addr = server.addr();
    for ip in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
        let body = format!(r#"{{"query": "{evil}"}}"#);
        send(
            addr,
            "POST",
            "/v1/searches",
            &format!("X-Forwarded-For: {ip}\r\n"),
            &body,
        );
    }
    let (_, body) = get(addr, "/v1/complete?prefix=walmart+s&k=10");
    assert!(!body.contains(evil), "{body}");
    // The site's backend, with a record key, is trusted with counts.
    let keyed = format!(r#"{{"query": "{evil}", "count": 50}}"#);
    assert_eq!(record_post(addr, "/v1/searches", &keyed).0, 200);
    let (_, body) = get(addr, "/v1/complete?prefix=walmart+s&k=10");
    assert!(body.contains(evil), "{body}");
}

#[test]
fn a_client_past_its_rate_waits_and_others_do_not() {
    let dir = Dir::new("rate");
    let server = start(&dir.model(&train(0.0)), |c| {
        c.access.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        c.access.record_rate = Some(xrcomplete_server::Rate {
            per_minute: 2.0,
            burst: 2,
        });
    });
    let addr = server.addr();
    let from = |ip: &str| {
        let xff = format!("X-Forwarded-For: {ip}\r\n");
        head_and_body(
            addr,
            "POST",
            "/v1/searches",
            &xff,
            r#"{"query": "weather"}"#,
        )
    };
    let status = |head: &str| head.split(' ').nth(1).unwrap().to_owned();
    assert_eq!(status(&from("203.0.113.1").0), "200");
    assert_eq!(status(&from("203.0.113.1").0), "200");
    let (head, body) = from("203.0.113.1");
    assert_eq!(status(&head), "429", "{body}");
    let wait: u64 = head
        .lines()
        .find_map(|l| l.strip_prefix("retry-after: "))
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(json_of(&body)["error"]["code"], "rate_limited");
    assert_eq!(status(&from("203.0.113.2").0), "200");
    // A batch larger than a burst never fits: refused for what it is, not to be retried.
    let three = r#"[{"query": "a"}, {"query": "b"}, {"query": "c"}]"#;
    let xff = "X-Forwarded-For: 203.0.113.3\r\n";
    let (status, body) = send(addr, "POST", "/v1/searches", xff, three);
    assert_eq!(
        (status, json_of(&body)["error"]["code"].clone()),
        (413, json!("batch_too_large"))
    );
    // The record key is not limited.
    let one = r#"{"query": "weather"}"#;
    let keyed = |_| record_post(addr, "/v1/searches", one).0;
    assert!((0..5).map(keyed).all(|s| s == 200));
}

#[test]
fn cors_answers_allowed_origins_on_the_public_routes_only() {
    let dir = Dir::new("cors");
    let server = start(&dir.model(&train(0.0)), |c| {
        c.access.cors_origins = vec!["https://shop.example.com".into()];
    });
    let addr = server.addr();
    let preflight = |origin: &str, target: &str| {
        head_and_body(addr, "OPTIONS", target, &format!(
            "Origin: {origin}\r\nAccess-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: content-type\r\n"
        ), "")
        .0
    };
    let head = preflight("https://shop.example.com", "/v1/complete?prefix=h");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains("access-control-allow-origin: https://shop.example.com"),
        "{head}"
    );
    assert!(head.contains("access-control-allow-methods"), "{head}");
    let head = head_and_body(
        addr,
        "GET",
        "/v1/complete?prefix=h",
        "Origin: https://shop.example.com\r\n",
        "",
    )
    .0;
    assert!(
        head.contains("access-control-allow-origin: https://shop.example.com"),
        "{head}"
    );
    for (origin, target) in [
        ("https://evil.example.com", "/v1/complete?prefix=h"),
        ("https://shop.example.com", "/admin/reload"),
        ("https://shop.example.com", "/metrics"),
    ] {
        let head = preflight(origin, target);
        assert!(
            !head.contains("access-control-allow-origin"),
            "{origin} {target}: {head}"
        );
    }
    let auth = format!("Origin: https://shop.example.com\r\nAuthorization: Bearer {ADMIN}\r\n");
    let head = head_and_body(addr, "POST", "/admin/reload", &auth, "").0;
    assert!(
        head.starts_with("http/1.1 200") && !head.contains("access-control"),
        "{head}"
    );
    // A bad origin is refused at start.
    let mut config = Config::new(dir.0.join("model.xrc"));
    config.access.cors_origins = vec!["https://shop.example.com/".into()];
    assert!(Server::start(config)
        .unwrap_err()
        .to_string()
        .contains("CORS origin"));
}

#[test]
fn clients_holding_half_a_request_are_dropped_and_delay_nobody() {
    let dir = Dir::new("slow");
    let server = start(&dir.model(&train(0.0)), |c| {
        c.header_timeout = Duration::from_millis(800);
    });
    let addr = server.addr();
    let mut held: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(b"GET /v1/complete?prefix=h HTTP/1.1\r\nHost: t\r\n")
                .unwrap();
            c
        })
        .collect();
    let start_at = std::time::Instant::now();
    assert_eq!(get(addr, "/v1/complete?prefix=h").0, 200);
    assert!(start_at.elapsed() < Duration::from_secs(1));
    std::thread::sleep(Duration::from_millis(2500));
    for c in &mut held {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 256];
        // Closed by the server: end of stream (or a reset), and no answer to half a request.
        match c.read(&mut buf) {
            Ok(n) => assert!(n == 0 || buf.starts_with(b"HTTP/1.1 408"), "{n}"),
            Err(e) => assert_ne!(e.kind(), std::io::ErrorKind::WouldBlock, "still open"),
        }
    }
    assert_eq!(get(addr, "/v1/complete?prefix=h").0, 200);
}

#[test]
fn a_model_file_copied_over_while_served_crashes_nothing() {
    let dir = Dir::new("cp");
    let path = dir.model(&train(0.0));
    let other = dir.0.join("other.xrc");
    train(100.0).save(&other).unwrap();
    let other_bytes = std::fs::read(&other).unwrap();
    let server = start(&path, |_| {});
    let addr = server.addr();
    let first = server.model_id();
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let hammers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, failed, done) = (stop.clone(), failed.clone(), done.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if get(addr, "/v1/complete?prefix=h").0 != 200 {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // As `cp` does: the same file truncated, then written in pieces; then truncated short,
    // then removed, then written whole again.
    for _ in 0..3 {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        for piece in other_bytes.chunks(4096) {
            f.write_all(piece).unwrap();
        }
        drop(f);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(100)
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::remove_file(&path).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    std::fs::write(&path, &other_bytes).unwrap();
    let (status, body) = admin_post(addr, "/admin/reload", "");
    stop.store(true, Ordering::Relaxed);
    for h in hammers {
        h.join().unwrap();
    }
    assert_eq!(status, 200, "{body}");
    assert_ne!(server.model_id(), first);
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    assert!(done.load(Ordering::Relaxed) > 20);
}

/// A product retriever of four products with integer ids, each the answer to one query.
fn retriever(titles: [&str; 4]) -> ProductRetriever {
    let params = RetrievalParams {
        kmeans: xrcomplete_core::index::kmeans::KMeansParams {
            branching: 2,
            max_leaf_size: 2,
            ..Default::default()
        },
        ..RetrievalParams::default()
    };
    let judged: Vec<Vec<(u32, f32)>> = (0..4).map(|p| vec![(p, 1.0)]).collect();
    ProductRetriever::fit(
        &["couch", "power screwdriver", "fan", "hose"],
        &judged,
        ProductIds::Integer(vec![100, 101, 102, 9_007_199_254_740_993]),
        &titles,
        &params,
        &Progress::default(),
    )
    .unwrap()
}

const TITLES: [&str; 4] = [
    "Leather Sofa in Brown",
    "Cordless Drill 18V",
    "Ceiling Fan with Light",
    "Garden Hose 50 ft.",
];

#[test]
fn products_are_the_retrievers_answers_with_their_titles() {
    let dir = Dir::new("products");
    let model = dir.model(&train(0.0));
    let r = retriever(TITLES);
    let products = dir.0.join("retriever.xrc");
    r.save(&products).unwrap();
    // Without a retriever, the route is a 404 with a JSON error; completions are as before.
    let plain = start(&model, |_| {});
    let (status, body) = get(plain.addr(), "/v1/products?q=couch");
    assert_eq!(status, 404, "{body}");
    assert_eq!(json_of(&body)["error"]["code"], "no_products");
    assert_eq!(get(plain.addr(), "/v1/complete?prefix=h").0, 200);
    drop(plain);
    let server = start(&model, |c| c.products_path = Some(products.clone()));
    let addr = server.addr();
    let mut scratch = RetrieveScratch::default();
    for (q, k) in [
        ("couch", 3),
        ("garden hose", 10),
        ("ceiling fan", 1),
        ("", 5),
        ("zz", 5),
    ] {
        let (status, body) = get(addr, &format!("/v1/products?q={}&k={k}", enc(q)));
        assert_eq!(status, 200, "{body}");
        let found = r.retrieve(q, k, r.rank_params(), &mut scratch).unwrap();
        let want: Vec<Value> = found
            .iter()
            .map(|&(label, score)| {
                let id = match r.product(label) {
                    ProductId::Integer(id) => json!(id),
                    ProductId::Text(id) => json!(id),
                };
                json!({"id": id, "title": r.title(label), "score": f64::from(score)})
            })
            .collect();
        let answer = json_of(&body);
        assert_eq!(answer["products"], Value::Array(want), "{q}");
        assert!(answer["took_us"].is_u64());
        assert_eq!(answer["model"].as_str().unwrap().len(), 16);
    }
    let (_, body) = get(addr, "/v1/products?q=garden%20hose&k=1");
    assert_eq!(
        json_of(&body)["products"][0]["id"],
        json!(9_007_199_254_740_993i64)
    );
    assert_eq!(json_of(&body)["products"][0]["title"], "Garden Hose 50 ft.");
    // Bad input: a JSON 4xx, never a 5xx.
    let long = "a".repeat(1025);
    for (target, code) in [
        ("/v1/products", "missing_q"),
        ("/v1/products?k=3", "missing_q"),
        (&format!("/v1/products?q={long}")[..], "too_long"),
        ("/v1/products?q=couch&k=abc", "bad_k"),
        ("/v1/products?q=couch&k=101", "bad_k"),
        ("/v1/products?q=couch&k=-1", "bad_k"),
        ("/v1/products?q=couch&q=sofa", "repeated_parameter"),
        ("/v1/products?q=couch&k=1&k=2", "repeated_parameter"),
        ("/v1/products?q=couch&prefix=c", "unknown_parameter"),
        ("/v1/products?q=%ff", "bad_encoding"),
    ] {
        let (status, body) = get(addr, target);
        assert_eq!(status, 400, "{target}: {body}");
        assert_eq!(json_of(&body)["error"]["code"], code, "{target}");
    }
    assert_eq!(post(addr, "/v1/products?q=couch", "").0, 405);
    let (_, metrics) = get(addr, "/metrics");
    assert!(metrics.contains(r#"route="/v1/products""#), "{metrics}");
}

#[test]
fn the_retriever_is_reloaded_with_the_model_or_not_at_all() {
    let dir = Dir::new("products-reload");
    let model = dir.model(&train(0.0));
    let products = dir.0.join("retriever.xrc");
    retriever(TITLES).save(&products).unwrap();
    let server = start(&model, |c| c.products_path = Some(products.clone()));
    let addr = server.addr();
    let title = |addr| {
        let (_, body) = get(addr, "/v1/products?q=couch&k=1");
        json_of(&body)["products"][0]["title"].clone()
    };
    let first_id = json_of(&get(addr, "/v1/products?q=couch").1)["model"].clone();
    assert_eq!(title(addr), "Leather Sofa in Brown");
    let mut renamed = TITLES;
    renamed[0] = "Leather Sofa in Tan";
    retriever(renamed).save(&products).unwrap();
    let (status, body) = admin_post(addr, "/admin/reload", "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(title(addr), "Leather Sofa in Tan");
    assert_ne!(
        json_of(&get(addr, "/v1/products?q=couch").1)["model"],
        first_id
    );
    // A bad retriever file (here, a completer) is refused: both models serve on.
    let completer_id = server.model_id();
    std::fs::copy(&model, &products).unwrap();
    let (status, body) = admin_post(addr, "/admin/reload", "");
    assert_eq!(status, 422, "{body}");
    assert_eq!(title(addr), "Leather Sofa in Tan");
    assert_eq!(server.model_id(), completer_id);
    // A start with a bad retriever file is a typed error.
    let mut config = Config::new(&model);
    config.port = 0;
    config.products_path = Some(products.clone());
    assert!(Server::start(config).is_err());
}

#[test]
fn a_watched_retriever_file_is_reloaded_when_it_changes() {
    let dir = Dir::new("products-watch");
    let model = dir.model(&train(0.0));
    let products = dir.0.join("retriever.xrc");
    retriever(TITLES).save(&products).unwrap();
    let server = start(&model, |c| {
        c.products_path = Some(products.clone());
        c.watch = Some(Duration::from_millis(50));
    });
    let title = || {
        let (_, body) = get(server.addr(), "/v1/products?q=couch&k=1");
        json_of(&body)["products"][0]["title"].clone()
    };
    assert_eq!(title(), "Leather Sofa in Brown");
    let mut renamed = TITLES;
    renamed[0] = "Leather Sofa in Tan";
    let tmp = dir.0.join("tmp.xrc");
    retriever(renamed).save(&tmp).unwrap();
    std::fs::rename(&tmp, &products).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while title() != "Leather Sofa in Tan" && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(title(), "Leather Sofa in Tan");
}
