//! The routes and their handlers. Every answer is JSON (but `/metrics` and the demo page); every
//! refusal of a bad request is a 4xx with `{"error": {"code": ..., "message": ...}}`.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{
    ConnectInfo, DefaultBodyLimit, Extension, MatchedPath, RawQuery, Request, State,
};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use xrcomplete_core::live::wal::EventLog;
use xrcomplete_core::live::{client_id, LiveCounts, Recorded, Search};
use xrcomplete_core::qac::{self, normalize_query, CompleteScratch};
use xrcomplete_core::retrieval::{ProductId, RetrieveScratch};

use crate::access::{client_of, KeyError, Keys, Limiter, Refused, Role};
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
    /// The keys accepted.
    pub keys: Keys,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Per-client budget of searches recorded without a record key.
    pub record_limit: Option<Limiter>,
    /// Per-client budget of completions without a record key (off by default).
    pub complete_limit: Option<Limiter>,
}

/// Who sent a request: its address, or the client a trusted proxy forwards
/// ([`crate::access::client_of`]).
#[derive(Debug, Clone, Copy)]
pub struct Client(pub IpAddr);

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
    /// A header the refusal carries (`Retry-After`, `WWW-Authenticate`).
    header: Option<(HeaderName, HeaderValue)>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            header: None,
        }
    }

    fn bad(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 429, with the seconds to wait in `Retry-After` (whole, rounded up).
    fn rate_limited(wait: Duration, what: &str) -> Self {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        ApiError {
            header: Some((header::RETRY_AFTER, HeaderValue::from(seconds.max(1)))),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "too many {what} from this client; retry in {} s",
                    seconds.max(1)
                ),
            )
        }
    }

    /// 401: a key is needed and none was given.
    fn key_required(what: &str) -> Self {
        ApiError {
            header: Some((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))),
            ..ApiError::new(
                StatusCode::UNAUTHORIZED,
                "key_required",
                format!("{what} needs a key: send Authorization: Bearer KEY"),
            )
        }
    }

    /// 403: the key given is no key of this server (or not one for this route).
    fn wrong_key(what: &str) -> Self {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "wrong_key",
            format!("the key given does not allow {what}"),
        )
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
        let mut response = (self.status, Json(body)).into_response();
        if let Some((name, value)) = self.header {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

thread_local! {
    static SCRATCH: RefCell<CompleteScratch> = RefCell::default();
    static PRODUCT_SCRATCH: RefCell<RetrieveScratch> = RefCell::default();
}

/// The router of every route, with its metrics, body limit and timeout; `cors` applies to the
/// public API (`/v1/*`) only, never to the admin routes.
pub fn router(
    state: Arc<AppState>,
    cors: Option<tower_http::cors::CorsLayer>,
    body_timeout: Duration,
) -> Router {
    let mut public = Router::new()
        .route("/v1/complete", get(complete))
        .route("/v1/products", get(products))
        .route("/v1/searches", post(record_search))
        .method_not_allowed_fallback(method_not_allowed);
    if let Some(cors) = cors {
        public = public.layer(cors);
    }
    Router::new()
        .route("/", get(page_index))
        .route("/app.js", get(page_script))
        .route("/style.css", get(page_style))
        .merge(public)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/admin/reload", post(reload))
        .route("/admin/blocklist", get(blocklist).post(edit_blocklist))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        // A client holding half a body is dropped like one holding half a head.
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            body_timeout,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), identify))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// Finds who sent the request ([`Client`]). A request that did not come over the network (as
/// in tests of the router alone) is this machine.
async fn identify(State(st): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |c| c.0.ip());
    let client = client_of(peer, req.headers(), &st.trusted_proxies);
    req.extensions_mut().insert(Client(client));
    next.run(req).await
}

impl AppState {
    /// The role of a request to a public route: its key's, or None without one (then a
    /// configured search key makes it a 401).
    fn public_role(&self, headers: &HeaderMap, what: &str) -> Result<Option<Role>, ApiError> {
        let role = self
            .keys
            .role(headers)
            .map_err(|KeyError::Wrong| ApiError::wrong_key(what))?;
        if role.is_none() && !self.keys.search.is_empty() {
            return Err(ApiError::key_required(what));
        }
        Ok(role)
    }

    /// The per-client rate of completions (and product searches) of a caller without a
    /// record key: 429 past it.
    fn check_search_rate(
        &self,
        client: Client,
        role: Option<Role>,
        what: &str,
    ) -> Result<(), ApiError> {
        match (&self.complete_limit, role < Some(Role::Record)) {
            (Some(limit), true) => limit.check(client.0).map_err(|refused| {
                self.metrics.completion_limited();
                match refused {
                    Refused::Wait(wait) => ApiError::rate_limited(wait, what),
                    // One request never exceeds a burst of at least 1.
                    Refused::TooMany { .. } => ApiError::rate_limited(Duration::ZERO, what),
                }
            }),
            _ => Ok(()),
        }
    }

    /// Admin routes need the admin key, whoever asks (a proxy on this machine makes every
    /// request look local); without one configured they are off.
    fn check_admin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if self.keys.admin.is_none() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "admin_off",
                "the admin routes are off: start the server with --admin-key (or \
                 XRCOMPLETE_ADMIN_KEY) to use them; SIGHUP and --watch still reload",
            ));
        }
        match self.keys.role(headers) {
            Ok(Some(Role::Admin)) => Ok(()),
            Ok(None) => Err(ApiError::key_required("the admin routes")),
            Ok(Some(_)) | Err(KeyError::Wrong) => Err(ApiError::wrong_key("the admin routes")),
        }
    }
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
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route {}", req.uri().path()),
    )
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
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
    /// The session's searches, oldest first (`prev` repeated), the last
    /// [`qac::MAX_SESSION_HISTORY`] of them.
    prev: Option<Vec<String>>,
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

/// The parameter `k` (`given` if it came before): an integer from 0 to `max_k`.
fn parse_k(given: Option<usize>, value: &str, limits: &Limits) -> Result<usize, ApiError> {
    if given.is_some() {
        return Err(ApiError::bad("repeated_parameter", "k is given twice"));
    }
    let k = value.parse::<usize>().ok().filter(|&k| k <= limits.max_k);
    k.ok_or_else(|| {
        ApiError::bad(
            "bad_k",
            format!(
                "k must be an integer from 0 to {}, got {value:?}",
                limits.max_k
            ),
        )
    })
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
                "prev" => {
                    check_text(&name, &value, limits)?;
                    let history = p.prev.get_or_insert_with(Vec::new);
                    if history.len() == qac::MAX_SESSION_HISTORY {
                        history.remove(0);
                    }
                    history.push(value);
                    continue;
                }
                "session" => &mut p.session,
                "k" => {
                    p.k = Some(parse_k(p.k, &value, limits)?);
                    continue;
                }
                _ => {
                    return Err(ApiError::bad(
                        "unknown_parameter",
                        format!(
                            "unknown parameter {name:?}; the parameters are prefix, prev \
                             (repeated: the session's searches, oldest first), session and k"
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
    /// The session's searches they were conditioned on, oldest first (the last is `prev`;
    /// empty: none).
    history: Vec<String>,
    took_us: u64,
    model: String,
}

async fn complete(
    State(st): State<Arc<AppState>>,
    Extension(client): Extension<Client>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Json<CompleteAnswer>, ApiError> {
    let role = st.public_role(&headers, "completions")?;
    st.check_search_rate(client, role, "completions")?;
    let p = CompleteParams::parse(raw.as_deref(), &st.limits)?;
    let prefix = p.prefix.unwrap_or_default();
    let history = match (p.prev, &p.session) {
        (Some(history), _) => history,
        (None, Some(id)) => st
            .sessions()
            .history(id, Instant::now())
            .unwrap_or_default(),
        (None, None) => Vec::new(),
    };
    let k = p.k.unwrap_or(10);
    let served = st.model.current();
    let start = Instant::now();
    let found = SCRATCH.with_borrow_mut(|scratch| {
        let c = &served.completer;
        let history: Vec<&str> = history.iter().map(String::as_str).collect();
        let request = qac::Request::in_session(&history, &prefix, k).with_live(Some(&st.live));
        c.complete(&request, scratch)
    });
    let took_us = start.elapsed().as_micros() as u64;
    let found = found.map_err(|e| ApiError::bad("bad_input", e.to_string()))?;
    Ok(Json(CompleteAnswer {
        suggestions: found
            .into_iter()
            .map(|a| Suggestion {
                text: a.query,
                score: f64::from(a.score),
                highlight: [0, a.matched],
                source: a.origin.name(),
            })
            .collect(),
        prev: history
            .last()
            .map(|q| normalize_query(q))
            .unwrap_or_default(),
        history: history.iter().map(|q| normalize_query(q)).collect(),
        took_us,
        model: served.id.clone(),
    }))
}

/// The parameters of `GET /v1/products`, checked.
#[derive(Debug)]
struct ProductParams {
    q: String,
    k: usize,
}

impl ProductParams {
    fn parse(raw: Option<&str>, limits: &Limits) -> Result<Self, ApiError> {
        let pairs = query::parse(raw.unwrap_or(""))
            .map_err(|e| ApiError::bad("bad_encoding", e.to_string()))?;
        let (mut q, mut k) = (None, None);
        for (name, value) in pairs {
            match name.as_str() {
                "q" if q.is_some() => {
                    return Err(ApiError::bad("repeated_parameter", "q is given twice"))
                }
                "q" => {
                    check_text(&name, &value, limits)?;
                    q = Some(value);
                }
                "k" => k = Some(parse_k(k, &value, limits)?),
                _ => {
                    return Err(ApiError::bad(
                        "unknown_parameter",
                        format!("unknown parameter {name:?}; the parameters are q and k"),
                    ))
                }
            }
        }
        Ok(ProductParams {
            q: q.ok_or_else(|| ApiError::bad("missing_q", "q is required"))?,
            k: k.unwrap_or(10),
        })
    }
}

/// A product id as the catalogue gave it: a JSON string or integer.
#[derive(Serialize)]
#[serde(untagged)]
enum ProductIdJson<'a> {
    Text(&'a str),
    Integer(i64),
}

#[derive(Serialize)]
struct Product<'a> {
    id: ProductIdJson<'a>,
    /// The catalogue's title.
    title: &'a str,
    /// As f64, so that it reads back as exactly the f32 the retriever gave.
    score: f64,
}

#[derive(Serialize)]
struct ProductsAnswer<'a> {
    products: Vec<Product<'a>>,
    took_us: u64,
    /// The id of the product retriever (a fingerprint of its file).
    model: &'a str,
}

/// `GET /v1/products?q=&k=10`: the products of `ProductRetriever.retrieve(q, k)`, exactly,
/// with their titles; under the keys and the completions' rate of `/v1/complete`.
async fn products(
    State(st): State<Arc<AppState>>,
    Extension(client): Extension<Client>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let role = st.public_role(&headers, "products")?;
    let served = st.model.current();
    let Some(products) = &served.products else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_products",
            "this server serves no product retriever: start it with --products RETRIEVER",
        ));
    };
    st.check_search_rate(client, role, "products")?;
    let p = ProductParams::parse(raw.as_deref(), &st.limits)?;
    let r = &products.retriever;
    let start = Instant::now();
    let found =
        PRODUCT_SCRATCH.with_borrow_mut(|scratch| r.retrieve(&p.q, p.k, r.rank_params(), scratch));
    let took_us = start.elapsed().as_micros() as u64;
    let found = found.map_err(|e| ApiError::bad("bad_input", e.to_string()))?;
    let answer = ProductsAnswer {
        products: found
            .into_iter()
            .map(|(label, score)| Product {
                id: match r.product(label) {
                    ProductId::Text(id) => ProductIdJson::Text(id),
                    ProductId::Integer(id) => ProductIdJson::Integer(id),
                },
                title: r.title(label),
                score: f64::from(score),
            })
            .collect(),
        took_us,
        model: &products.id,
    };
    Ok(Json(answer).into_response())
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
    /// Who searched, as the site knows them (record key only): the per-client rules count
    /// per user.
    #[serde(default)]
    user: Option<String>,
    /// Seconds (Unix time); default: now. Record key only.
    #[serde(default)]
    time: Option<f64>,
    /// Record key only.
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

/// Checks one search of a request (`i`: its place in a batch, for messages): the search, its
/// query normalised, at `now` unless it says when, not yet after a previous query nor by a
/// client.
fn check_search(
    b: &SearchBody,
    i: Option<usize>,
    limits: &Limits,
    now: f64,
) -> Result<Search, ApiError> {
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
    if let Some(user) = &b.user {
        check_session(user).map_err(|_| {
            ApiError::bad(
                "bad_user",
                at(format!("user must be 1 to {MAX_SESSION_BYTES} bytes")),
            )
        })?;
    }
    if b.prev.is_some() && b.session.is_some() {
        return Err(ApiError::bad(
            "prev_and_session",
            at("give prev or session, not both".into()),
        ));
    }
    // The library's check: the query normalised and not empty, a positive count, a time.
    let count = b.count.unwrap_or(1.0);
    Search::new(&b.query, "", count, b.time.unwrap_or(now), None)
        .map_err(|bad| ApiError::bad(bad.code(), at(bad.to_string())))
}

async fn record_search(
    State(st): State<Arc<AppState>>,
    Extension(client): Extension<Client>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SearchAnswer>, ApiError> {
    let role = st
        .public_role(&headers, "recording searches")
        .inspect_err(|e| {
            st.metrics.refused(e.code, 1);
        })?;
    let trusted = role >= Some(Role::Record);
    let body = body.map_err(|r| {
        let code = if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            "body_too_large"
        } else {
            "bad_body"
        };
        ApiError::new(r.status(), code, r.body_text())
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
    let now = unix_now();
    let checked = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| check_search(b, (!single).then_some(i), &st.limits, now))
        .collect::<Result<Vec<Search>, ApiError>>()?;
    if !trusted {
        if let Some(i) = bodies
            .iter()
            .position(|b| b.count.is_some() || b.time.is_some() || b.user.is_some())
        {
            st.metrics.refused("needs_record_key", bodies.len() as u64);
            let at = if single {
                String::new()
            } else {
                format!("search {i}: ")
            };
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "needs_record_key",
                format!(
                    "{at}count, time and user need a record key (Authorization: Bearer KEY); \
                     a search without one counts once, now, for the client that sent it"
                ),
            ));
        }
        if let Some(limit) = &st.record_limit {
            limit.check_n(client.0, bodies.len()).map_err(|refused| {
                st.metrics.refused("rate_limited", bodies.len() as u64);
                match refused {
                    Refused::Wait(wait) => ApiError::rate_limited(wait, "searches"),
                    Refused::TooMany { burst } => ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "batch_too_large",
                        format!(
                            "{} searches in one request without a record key; the limit is \
                             {burst}",
                            bodies.len()
                        ),
                    ),
                }
            })?;
        }
    }
    // Whom the per-client rules count: the address of a stranger; for the site's backend
    // (a record key), the user or session it names, or nobody (trusted as given).
    let anonymous = client_id(&format!("ip:{}", client.0));
    // Sessions are resolved in order (a batch may chain one session's searches).
    let mut sessions = st.sessions();
    let at = Instant::now();
    let mut searches = Vec::with_capacity(bodies.len());
    let mut chained: std::collections::HashMap<&str, String> = std::collections::HashMap::new();
    for (b, search) in bodies.iter().zip(checked) {
        let prev = match (&b.prev, &b.session) {
            (Some(prev), _) => normalize_query(prev),
            (None, Some(id)) => match chained.get(id.as_str()) {
                Some(p) => p.clone(),
                None => sessions.prev(id, at).unwrap_or_default(),
            },
            (None, None) => String::new(),
        };
        if let Some(id) = &b.session {
            chained.insert(id, search.query.clone());
        }
        let who = match (trusted, &b.user, &b.session) {
            (false, _, _) => Some(anonymous),
            (true, Some(user), _) => Some(client_id(&format!("user:{user}"))),
            (true, None, Some(session)) => Some(client_id(&format!("session:{session}"))),
            (true, None, None) => None,
        };
        searches.push(Search {
            prev,
            client: who,
            ..search
        });
    }
    drop(sessions);
    let accepted = searches.len();
    // Only what counts is written and counted: a repeat of a client within a half-life is
    // accepted (its session moves on) but counts nothing, now or when the log is replayed.
    searches.retain(|s| st.live.claim(s) == Recorded::Counted);
    st.metrics.capped((accepted - searches.len()) as u64);
    // Checked above: recording into the live counts cannot fail.
    let record = || {
        for s in &searches {
            let _ = st.live.record_claimed(s);
        }
    };
    if let Some(log) = &st.events {
        // Written (and synced, as the policy says) before anything is acknowledged; counted
        // live in the same order as written (see `reload`'s rewrite of the log).
        let log_result = tokio::task::block_in_place(|| log.append(&searches, record));
        if let Err(e) = log_result {
            eprintln!("xrcomplete serve: cannot write the event log: {e}");
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "events_unavailable",
                format!("the searches were not recorded: the event log failed: {e}"),
            ));
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
        (true, Some(id)) => (Some(id.clone()), chained.get(id.as_str()).cloned()),
        _ => (None, None),
    };
    Ok(Json(SearchAnswer {
        recorded: accepted,
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
    let live = st.live.stats();
    st.metrics.live(live.queries, live.waiting);
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

/// The body of an admin request, with the admin key ([`AppState::check_admin`]).
async fn admin_body(st: &AppState, req: Request) -> Result<axum::body::Bytes, ApiError> {
    st.check_admin(req.headers())?;
    axum::body::to_bytes(req.into_body(), st.limits.max_body_bytes)
        .await
        .map_err(|e| ApiError::bad("bad_body", e.to_string()))
}

/// Runs `work` (which blocks: file I/O, loading a model) off the async workers.
async fn off_workers<T: Send + 'static>(
    what: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the {what} task failed: {e}"),
        )
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
    st.check_admin(req.headers())?;
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
        Err(BlocklistError::NoFile) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_blocklist_file",
            "start the server with --blocklist FILE to change the blocklist at run \
                      time (the file keeps the changes across reloads and restarts)",
        )),
        Err(BlocklistError::BadTerm(why)) => Err(ApiError::bad("bad_term", why)),
        Err(BlocklistError::Io(e)) => {
            eprintln!("xrcomplete serve: the blocklist file was not written: {e}");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "blocklist_unavailable",
                format!("the blocklist file was not written, nothing changed: {e}"),
            ))
        }
    }
}

/// Loads the model file again and, after a compaction, drops the folded searches from the event
/// log and the live counts. Blocking.
fn reload_now(st: &AppState, events_folded: Option<usize>) -> Result<ReloadAnswer, ApiError> {
    let r = st.model.reload(&st.metrics).map_err(|err| {
        eprintln!("xrcomplete serve: reload refused, the old model serves on: {err}");
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "model_refused",
            format!("the model file was refused; the old model serves on: {err}"),
        )
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
                let _ = st.live.record_replayed(s);
            }
            kept_n = kept.len();
        })
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "events_unavailable",
                format!("the new model serves, but the event log was not rewritten: {e}"),
            )
        })?;
        answer.events_dropped = Some(dropped.get());
        answer.events_kept = Some(kept_n);
    }
    Ok(answer)
}
