//! The routes and their handlers. Every answer is JSON (but `/metrics` and the demo page); every
//! refusal of a bad request is a 4xx with `{"error": {"code": ..., "message": ...}}`.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use xrcomplete_core::live::wal::EventLog;
use xrcomplete_core::live::{LiveCounts, Search};
use xrcomplete_core::qac::{normalize_prefix, normalize_query, CompleteScratch, Origin};

use crate::metrics::Metrics;
use crate::model::{BlocklistError, ModelSlot};
use crate::query;
use crate::sessions::Sessions;

/// The longest session id accepted, in bytes.
pub const MAX_SESSION_BYTES: usize = 128;

/// Limits on what a request may ask.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest `k`.
    pub max_k: usize,
    /// The longest prefix, previous query or recorded query, in bytes (UTF-8).
    pub max_text_bytes: usize,
    /// The largest request body, in bytes.
    pub max_body_bytes: usize,
}

/// What the handlers share.
#[derive(Debug)]
pub struct AppState {
    /// The model served.
    pub model: ModelSlot,
    /// The last search of each session.
    pub sessions: Mutex<Sessions>,
    /// Counters and histograms of `/metrics`.
    pub metrics: Metrics,
    /// Limits on requests.
    pub limits: Limits,
    /// Set once shutdown has begun: `/readyz` then says 503 so balancers stop sending.
    pub draining: AtomicBool,
    /// Searches recorded since the model was built; `complete` consults them.
    pub live: Arc<LiveCounts>,
    /// Where every accepted search is written before it is acknowledged (`--events`).
    pub events: Option<EventLog>,
}

impl AppState {
    /// The session table (a poisoned lock is still a valid table: every update is one call).
    pub fn sessions(&self) -> MutexGuard<'_, Sessions> {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A refused request: its status, a stable code, and a message for people.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn bad(code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: &self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

thread_local! {
    static SCRATCH: RefCell<CompleteScratch> = RefCell::default();
}

/// The router of every route, with its metrics and body limit.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(page_index))
        .route("/app.js", get(page_script))
        .route("/style.css", get(page_style))
        .route("/v1/complete", get(complete))
        .route("/v1/searches", post(record_search))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/admin/reload", post(reload))
        .route("/admin/blocklist", get(blocklist).post(edit_blocklist))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// Counts every request by route and status, and times it.
async fn track(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let start = Instant::now();
    let response = next.run(req).await;
    st.metrics.request(
        &route,
        response.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    response
}

async fn not_found(req: Request) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        code: "not_found",
        message: format!("no route {}", req.uri().path()),
    }
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: "method_not_allowed",
        message: format!("{} is not allowed on {}", req.method(), req.uri().path()),
    }
}

fn static_file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

async fn page_index() -> Response {
    static_file(
        "text/html; charset=utf-8",
        include_str!("../static/index.html"),
    )
}

async fn page_script() -> Response {
    static_file(
        "text/javascript; charset=utf-8",
        include_str!("../static/app.js"),
    )
}

async fn page_style() -> Response {
    static_file(
        "text/css; charset=utf-8",
        include_str!("../static/style.css"),
    )
}

/// The parameters of `GET /v1/complete`, checked.
#[derive(Debug, Default)]
struct CompleteParams {
    prefix: Option<String>,
    prev: Option<String>,
    session: Option<String>,
    k: Option<usize>,
}

fn check_text(name: &str, text: &str, limits: &Limits) -> Result<(), ApiError> {
    if text.len() > limits.max_text_bytes {
        return Err(ApiError::bad(
            "too_long",
            format!(
                "{name} is {} bytes; the limit is {}",
                text.len(),
                limits.max_text_bytes
            ),
        ));
    }
    Ok(())
}

fn check_session(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > MAX_SESSION_BYTES {
        return Err(ApiError::bad(
            "bad_session",
            format!(
                "session must be 1 to {MAX_SESSION_BYTES} bytes, got {}",
                id.len()
            ),
        ));
    }
    Ok(())
}

impl CompleteParams {
    fn parse(raw: Option<&str>, limits: &Limits) -> Result<Self, ApiError> {
        let pairs = query::parse(raw.unwrap_or(""))
            .map_err(|e| ApiError::bad("bad_encoding", e.to_string()))?;
        let mut p = CompleteParams::default();
        for (name, value) in pairs {
            let slot = match name.as_str() {
                "prefix" => &mut p.prefix,
                "prev" => &mut p.prev,
                "session" => &mut p.session,
                "k" => {
                    if p.k.is_some() {
                        return Err(ApiError::bad("repeated_parameter", "k is given twice"));
                    }
                    let k = value.parse::<usize>().ok().filter(|&k| k <= limits.max_k);
                    p.k = Some(k.ok_or_else(|| {
                        ApiError::bad(
                            "bad_k",
                            format!(
                                "k must be an integer from 0 to {}, got {value:?}",
                                limits.max_k
                            ),
                        )
                    })?);
                    continue;
                }
                _ => {
                    return Err(ApiError::bad(
                        "unknown_parameter",
                        format!(
                            "unknown parameter {name:?}; the parameters are prefix, prev, \
                             session and k"
                        ),
                    ))
                }
            };
            if slot.is_some() {
                return Err(ApiError::bad(
                    "repeated_parameter",
                    format!("{name} is given twice"),
                ));
            }
            check_text(&name, &value, limits)?;
            *slot = Some(value);
        }
        if p.prefix.is_none() {
            return Err(ApiError::bad("missing_prefix", "prefix is required"));
        }
        if p.prev.is_some() && p.session.is_some() {
            return Err(ApiError::bad(
                "prev_and_session",
                "give prev or session, not both",
            ));
        }
        if let Some(id) = &p.session {
            check_session(id)?;
        }
        Ok(p)
    }
}

#[derive(Serialize)]
struct Suggestion {
    text: String,
    /// As f64, so that it reads back as exactly the f32 the completer gave.
    score: f64,
    /// The typed prefix's part of `text`, in Unicode code points: `[0, len)`.
    highlight: [usize; 2],
    source: &'static str,
}

#[derive(Serialize)]
struct CompleteAnswer {
    suggestions: Vec<Suggestion>,
    /// The previous query the suggestions were conditioned on (given, or the session's).
    prev: String,
    took_us: u64,
    model: String,
}

async fn complete(
    State(st): State<Arc<AppState>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<CompleteAnswer>, ApiError> {
    let p = CompleteParams::parse(raw.as_deref(), &st.limits)?;
    let prefix = p.prefix.unwrap_or_default();
    let prev = match (&p.prev, &p.session) {
        (Some(prev), _) => prev.clone(),
        (None, Some(id)) => st.sessions().prev(id, Instant::now()).unwrap_or_default(),
        (None, None) => String::new(),
    };
    let k = p.k.unwrap_or(10);
    let served = st.model.current();
    let start = Instant::now();
    let found = SCRATCH.with_borrow_mut(|scratch| {
        let c = &served.completer;
        c.complete_live(&prev, &prefix, k, c.rank_params(), Some(&st.live), scratch)
    });
    let took_us = start.elapsed().as_micros() as u64;
    let found = found.map_err(|e| ApiError::bad("bad_input", e.to_string()))?;
    let typed = normalize_prefix(&prefix).chars().count();
    Ok(Json(CompleteAnswer {
        suggestions: found
            .into_iter()
            .map(|(text, score, origin)| {
                // A fuzzy answer's highlight is the corrected prefix it matched.
                let matched = match origin {
                    Origin::Fuzzy { matched } => {
                        text.get(..matched).map_or(0, |m| m.chars().count())
                    }
                    _ => typed,
                };
                Suggestion {
                    text,
                    score: f64::from(score),
                    highlight: [0, matched],
                    source: origin.name(),
                }
            })
            .collect(),
        prev: normalize_query(&prev),
        took_us,
        model: served.id.clone(),
    }))
}

/// One search of `POST /v1/searches`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchBody {
    query: String,
    #[serde(default)]
    prev: Option<String>,
    #[serde(default)]
    session: Option<String>,
    /// Seconds (Unix time); default: now.
    #[serde(default)]
    time: Option<f64>,
    #[serde(default)]
    count: Option<f64>,
}

/// Searches in one request at most.
pub const MAX_BATCH: usize = 1000;

#[derive(Serialize)]
struct SearchAnswer {
    recorded: usize,
    /// For one search with a session: the session, and its previous query from now on (the
    /// search, normalised).
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prev: Option<String>,
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Checks one search of a request (`i`: its place in a batch, for messages); its query,
/// normalised.
fn check_search(b: &SearchBody, i: Option<usize>, limits: &Limits) -> Result<String, ApiError> {
    let at = |m: String| match i {
        Some(i) => format!("search {i}: {m}"),
        None => m,
    };
    let text = |name: &str, t: &str| {
        check_text(name, t, limits).map_err(|e| ApiError::bad(e.code, at(e.message)))
    };
    text("query", &b.query)?;
    if let Some(prev) = &b.prev {
        text("prev", prev)?;
    }
    if let Some(id) = &b.session {
        check_session(id).map_err(|e| ApiError::bad(e.code, at(e.message)))?;
    }
    if b.prev.is_some() && b.session.is_some() {
        return Err(ApiError::bad(
            "prev_and_session",
            at("give prev or session, not both".into()),
        ));
    }
    let query = normalize_query(&b.query);
    if query.is_empty() {
        return Err(ApiError::bad(
            "empty_query",
            at("query is empty once normalised".into()),
        ));
    }
    if b.count.is_some_and(|c| !(c > 0.0 && c.is_finite())) {
        return Err(ApiError::bad(
            "bad_count",
            at("count must be a positive number".into()),
        ));
    }
    if b.time.is_some_and(|t| !t.is_finite()) {
        return Err(ApiError::bad(
            "bad_time",
            at("time must be a number of seconds".into()),
        ));
    }
    Ok(query)
}

async fn record_search(
    State(st): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SearchAnswer>, ApiError> {
    let body = body.map_err(|r| ApiError {
        status: r.status(),
        code: if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            "body_too_large"
        } else {
            "bad_body"
        },
        message: r.body_text(),
    })?;
    let shape = "the body must be {\"query\": string, \"prev\" or \"session\": string, \
                 \"time\": seconds, \"count\": number} (all but query optional), or a list of them";
    let bad_json = |e: serde_json::Error| ApiError::bad("bad_json", format!("{shape}: {e}"));
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(bad_json)?;
    let (bodies, single) = match value {
        serde_json::Value::Array(items) => (
            items
                .into_iter()
                .map(serde_json::from_value::<SearchBody>)
                .collect::<Result<Vec<_>, _>>()
                .map_err(bad_json)?,
            false,
        ),
        one => (vec![serde_json::from_value(one).map_err(bad_json)?], true),
    };
    if bodies.len() > MAX_BATCH {
        return Err(ApiError::bad(
            "batch_too_large",
            format!(
                "{} searches in one request; the limit is {MAX_BATCH}",
                bodies.len()
            ),
        ));
    }
    let queries = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| check_search(b, (!single).then_some(i), &st.limits))
        .collect::<Result<Vec<String>, ApiError>>()?;
    let now = unix_now();
    // Sessions are resolved in order (a batch may chain one session's searches).
    let mut sessions = st.sessions();
    let at = Instant::now();
    let mut searches = Vec::with_capacity(bodies.len());
    let mut chained: std::collections::HashMap<&str, String> = std::collections::HashMap::new();
    for (b, query) in bodies.iter().zip(queries) {
        let prev = match (&b.prev, &b.session) {
            (Some(prev), _) => normalize_query(prev),
            (None, Some(id)) => match chained.get(id.as_str()) {
                Some(p) => p.clone(),
                None => sessions.prev(id, at).unwrap_or_default(),
            },
            (None, None) => String::new(),
        };
        if let Some(id) = &b.session {
            chained.insert(id, query.clone());
        }
        searches.push(Search {
            query,
            prev,
            count: b.count.unwrap_or(1.0),
            time: b.time.unwrap_or(now),
        });
    }
    drop(sessions);
    // Checked above: recording into the live counts cannot fail.
    let record = || {
        for s in &searches {
            let _ = st.live.record(s);
        }
    };
    if let Some(log) = &st.events {
        // Written (and synced, as the policy says) before anything is acknowledged; counted
        // live in the same order as written (see `reload`'s rewrite of the log).
        let log_result = tokio::task::block_in_place(|| log.append(&searches, record));
        if let Err(e) = log_result {
            eprintln!("xrcomplete serve: cannot write the event log: {e}");
            return Err(ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "events_unavailable",
                message: format!("the searches were not recorded: the event log failed: {e}"),
            });
        }
    } else {
        record();
    }
    let mut sessions = st.sessions();
    for (id, query) in &chained {
        sessions.record(id, query.clone(), at);
    }
    st.metrics.sessions(sessions.len());
    drop(sessions);
    st.metrics.searches(searches.len() as u64);
    // One search with a session: say what the session's previous query is now.
    let (session, prev) = match (single, bodies.first().and_then(|b| b.session.as_ref())) {
        (true, Some(id)) => (Some(id.clone()), searches.first().map(|s| s.query.clone())),
        _ => (None, None),
    };
    Ok(Json(SearchAnswer {
        recorded: searches.len(),
        session,
        prev,
    }))
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    model: String,
}

async fn healthz(State(st): State<Arc<AppState>>) -> Json<Health> {
    Json(Health {
        status: "ok",
        model: st.model.current().id.clone(),
    })
}

async fn readyz(State(st): State<Arc<AppState>>) -> Response {
    let model = st.model.current().id.clone();
    if st.draining.load(Ordering::Relaxed) {
        let body = Health {
            status: "draining",
            model,
        };
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    Json(Health {
        status: "ready",
        model,
    })
    .into_response()
}

async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    st.metrics.sessions(st.sessions().len());
    st.metrics.live_queries(st.live.stats().queries);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        st.metrics.encode(),
    )
        .into_response()
}

#[derive(Serialize)]
struct ReloadAnswer {
    model: String,
    previous: String,
    load_seconds: f64,
    /// With `events_folded`: searches dropped from the event log (folded into the new model),
    /// and those kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    events_dropped: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    events_kept: Option<usize>,
}

/// The body of `POST /admin/reload`, optional.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReloadBody {
    /// The first this many searches of the event log were folded into the new model file
    /// (`xrcomplete compact`): those of queries the new model knows are dropped from the log
    /// and from the live counts.
    #[serde(default)]
    events_folded: Option<usize>,
}

/// Admin routes answer only clients on this machine (a request that did not come over the
/// network, as in tests, is local).
fn check_local(req: &Request) -> Result<(), ApiError> {
    match req.extensions().get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(peer)) if !peer.ip().is_loopback() => Err(ApiError {
            status: StatusCode::FORBIDDEN,
            code: "forbidden",
            message: "admin routes answer only clients on the server's own machine".into(),
        }),
        _ => Ok(()),
    }
}

/// The body of an admin request, from a client on this machine ([`check_local`]).
async fn admin_body(st: &AppState, req: Request) -> Result<axum::body::Bytes, ApiError> {
    check_local(&req)?;
    axum::body::to_bytes(req.into_body(), st.limits.max_body_bytes)
        .await
        .map_err(|e| ApiError::bad("bad_body", e.to_string()))
}

/// Runs `work` (which blocks: file I/O, loading a model) off the async workers.
async fn off_workers<T: Send + 'static>(
    what: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: format!("the {what} task failed: {e}"),
        })
}

async fn reload(
    State(st): State<Arc<AppState>>,
    req: Request,
) -> Result<Json<ReloadAnswer>, ApiError> {
    let bytes = admin_body(&st, req).await?;
    let body: ReloadBody = if bytes.iter().all(u8::is_ascii_whitespace) {
        ReloadBody::default()
    } else {
        serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::bad(
                "bad_json",
                format!("the body must be empty or {{\"events_folded\": count}}: {e}"),
            )
        })?
    };
    if body.events_folded.is_some() && st.events.is_none() {
        return Err(ApiError::bad(
            "no_event_log",
            "events_folded needs an event log (--events)",
        ));
    }
    let worker = st.clone();
    let done = off_workers("reload", move || reload_now(&worker, body.events_folded)).await??;
    Ok(Json(done))
}

#[derive(Serialize)]
struct BlocklistAnswer {
    blocked: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    added: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    removed: Option<usize>,
}

/// The body of `POST /admin/blocklist`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BlocklistBody {
    #[serde(default)]
    block: Vec<String>,
    #[serde(default)]
    unblock: Vec<String>,
}

async fn blocklist(
    State(st): State<Arc<AppState>>,
    req: Request,
) -> Result<Json<BlocklistAnswer>, ApiError> {
    check_local(&req)?;
    Ok(Json(BlocklistAnswer {
        blocked: st.model.blocked(),
        added: None,
        removed: None,
    }))
}

async fn edit_blocklist(
    State(st): State<Arc<AppState>>,
    req: Request,
) -> Result<Json<BlocklistAnswer>, ApiError> {
    let bytes = admin_body(&st, req).await?;
    let body: BlocklistBody = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad(
            "bad_json",
            format!("the body must be {{\"block\": [terms], \"unblock\": [terms]}}: {e}"),
        )
    })?;
    let worker = st.clone();
    let edit = off_workers("blocklist", move || {
        worker.model.edit_blocklist(&body.block, &body.unblock)
    })
    .await?;
    match edit {
        Ok(done) => Ok(Json(BlocklistAnswer {
            blocked: done.blocked,
            added: Some(done.added),
            removed: Some(done.removed),
        })),
        Err(BlocklistError::NoFile) => Err(ApiError {
            status: StatusCode::CONFLICT,
            code: "no_blocklist_file",
            message: "start the server with --blocklist FILE to change the blocklist at run \
                      time (the file keeps the changes across reloads and restarts)"
                .into(),
        }),
        Err(BlocklistError::BadTerm(why)) => Err(ApiError::bad("bad_term", why)),
        Err(BlocklistError::Io(e)) => {
            eprintln!("xrcomplete serve: the blocklist file was not written: {e}");
            Err(ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "blocklist_unavailable",
                message: format!("the blocklist file was not written, nothing changed: {e}"),
            })
        }
    }
}

/// Loads the model file again and, after a compaction, drops the folded searches from the event
/// log and the live counts. Blocking.
fn reload_now(st: &AppState, events_folded: Option<usize>) -> Result<ReloadAnswer, ApiError> {
    let r = st.model.reload(&st.metrics).map_err(|err| {
        eprintln!("xrcomplete serve: reload refused, the old model serves on: {err}");
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "model_refused",
            message: format!("the model file was refused; the old model serves on: {err}"),
        }
    })?;
    let mut answer = ReloadAnswer {
        model: r.id,
        previous: r.previous,
        load_seconds: r.load_seconds,
        events_dropped: None,
        events_kept: None,
    };
    if let (Some(n), Some(log)) = (events_folded, &st.events) {
        let model = st.model.current();
        let dropped = std::cell::Cell::new(0usize);
        let keep = |i: usize, s: &Search| {
            let kept = i >= n || model.completer.queries().id(&s.query).is_none();
            dropped.set(dropped.get() + usize::from(!kept));
            kept
        };
        let mut kept_n = 0;
        log.rewrite(keep, |kept| {
            // Under the log's lock: no search is recorded meanwhile.
            st.live.clear();
            for s in kept {
                let _ = st.live.record(s);
            }
            kept_n = kept.len();
        })
        .map_err(|e| ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "events_unavailable",
            message: format!("the new model serves, but the event log was not rewritten: {e}"),
        })?;
        answer.events_dropped = Some(dropped.get());
        answer.events_kept = Some(kept_n);
    }
    Ok(answer)
}
