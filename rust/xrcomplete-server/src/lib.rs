//! # xrcomplete-server
//!
//! The typeahead service of xrcomplete: a saved completer served over HTTP by axum on tokio.
//! The request path is Rust only (no Python, no GIL), the model is read into the server's own
//! memory (a file changed under it changes nothing) and shared by every worker, and a reload
//! swaps a new model in without failing a request.
//!
//! Routes (JSON unless said otherwise):
//! - `GET /v1/complete?prefix=..&prev=..&k=10` (`prev` repeated: the session's searches, oldest
//!   first; or `session=..` instead, whose last searches the server keeps): the suggestions,
//!   each with its score, the typed part (`highlight`) and its source.
//! - `POST /v1/searches` `{"query": .., "prev" or "session": .., "time": ..}` (or a list): recorded
//!   into the live counts (and the event log, before the answer); the session's previous query.
//! - `GET /healthz`, `GET /readyz`, `GET /metrics` (OpenMetrics text).
//! - `POST /admin/reload`, `GET|POST /admin/blocklist` (the admin key only): load the model
//!   file again and serve it if good; the run-time blocklist.
//! - `GET /`: the demo page (HTML, CSS and JS compiled into the binary).
//!
//! Facing strangers ([`Access`]): admin routes need the admin key whoever asks; searches
//! without a record key count once, now, per client (its address, or the client a trusted
//! proxy forwards), at most once per query per half-life, within a per-client rate, and a
//! query only strangers searched is suggested once enough distinct clients searched it; CORS
//! for the allowed origins on `/v1/*` only; a client holding half a request is dropped.
//!
//! ```no_run
//! use xrcomplete_server::{Config, Server};
//!
//! let server = Server::start(Config::new("model.xrc")).unwrap();
//! println!("listening on http://{}", server.addr());
//! server.join().unwrap(); // until SIGTERM (when `signals` is on) or `shutdown()`
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use xrcomplete_core::live::wal::{EventLog, SyncPolicy};
use xrcomplete_core::live::{LiveCounts, LiveParams};
use xrcomplete_core::qac;

mod access;
mod api;
mod metrics;
mod model;
pub mod query;
mod sessions;

pub use access::{trusted_proxy, Key, Keys, Rate, MIN_KEY_BYTES};
pub use api::{Limits, MAX_SESSION_BYTES};
pub use model::Reloaded;
pub use sessions::Sessions;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The model file is missing or is not a good completer.
    #[error(transparent)]
    Model(#[from] xrcomplete_core::Error),
    /// An option is out of range.
    #[error("invalid server option: {0}")]
    Config(String),
    /// The address could not be bound (in use, not allowed, not on this machine).
    #[error("cannot listen on {addr}: {message}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the system said.
        message: String,
    },
    /// The runtime or the listener failed.
    #[error("server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// How to serve. [`Config::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// The saved completer (a file written by `Completer.save`).
    pub model_path: PathBuf,
    /// A saved product retriever (`ProductRetriever.save`) served at `GET /v1/products`,
    /// loaded, watched and reloaded with the completer (None: that route answers 404).
    pub products_path: Option<PathBuf>,
    /// The address to listen on (default 127.0.0.1: this machine only).
    pub host: IpAddr,
    /// The port (default 8000; 0 picks a free one, see [`Server::addr`]).
    pub port: u16,
    /// Threads answering requests (0: one per core).
    pub workers: usize,
    /// Limits on requests.
    pub limits: Limits,
    /// A session is forgotten this long after its last search (default 30 minutes: the gap
    /// that ends a session in the training log).
    pub session_ttl: Duration,
    /// At most this many sessions are remembered (the least recently searching is dropped).
    pub max_sessions: usize,
    /// Each session's last searches kept (default 5), the session a completion with its id is
    /// typed in: the completer uses the last `session_history` of them (its own option).
    pub session_history: usize,
    /// Once shutdown is asked, requests in flight get this long to finish.
    pub drain_timeout: Duration,
    /// How the live counts decay and how much they hold: what is not given here, the model's
    /// options say (`live_half_life`, `live_cap`, `live_min_clients`, saved with it).
    pub live: LiveOverrides,
    /// The event log: every accepted search is appended before it is acknowledged, and the log
    /// is replayed into the live counts at start.
    pub events: Option<PathBuf>,
    /// When appended searches reach the disk.
    pub fsync: SyncPolicy,
    /// Check the model file this often, and reload it when it has changed (its inode, size or
    /// modification time): a new model saved over the path is served without a signal.
    pub watch: Option<Duration>,
    /// Handle SIGTERM (graceful shutdown) and SIGHUP (reload). For a process whose job is to
    /// serve: once handled, the default action of these signals is gone for the process.
    pub signals: bool,
    /// The run-time blocklist: terms blocked (or unblocked) through `POST /admin/blocklist`,
    /// kept in this file and applied to every model served, also after a reload or a restart.
    pub blocklist: Option<PathBuf>,
    /// Keys, trusted proxies, CORS origins and per-client rates.
    pub access: Access,
    /// A client that has not sent a whole request head this long after connecting (or after
    /// its last answer, on a kept-alive connection), or a whole body this long after its head,
    /// is dropped (default 30 s).
    pub header_timeout: Duration,
    /// Connections open at most; more wait to be accepted (default 10,000).
    pub max_connections: usize,
}

/// Who may do what ([`Config::access`]).
#[derive(Debug, Clone)]
pub struct Access {
    /// The admin, record and search keys.
    pub keys: Keys,
    /// Proxies (CIDR blocks) whose `X-Forwarded-For` says who the client is.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Origins whose pages may call `/v1/*` from a browser (`*`: any).
    pub cors_origins: Vec<String>,
    /// Searches a client may record without a record key (None: no limit; default 60 a
    /// minute, bursts of 10).
    pub record_rate: Option<Rate>,
    /// Completions a client may ask without a record key (default None: no limit).
    pub complete_rate: Option<Rate>,
}

impl Default for Access {
    fn default() -> Self {
        Access {
            keys: Keys::default(),
            trusted_proxies: Vec::new(),
            cors_origins: Vec::new(),
            record_rate: Some(Rate {
                per_minute: 60.0,
                burst: 10,
            }),
            complete_rate: None,
        }
    }
}

impl Access {
    /// The CORS layer of the allowed origins (None when there are none).
    fn cors(&self) -> Result<Option<tower_http::cors::CorsLayer>, ServeError> {
        use axum::http::{header, HeaderValue, Method};
        use tower_http::cors::{AllowOrigin, CorsLayer};
        if self.cors_origins.is_empty() {
            return Ok(None);
        }
        let origins = if self.cors_origins.iter().any(|o| o == "*") {
            AllowOrigin::any()
        } else {
            let list = self
                .cors_origins
                .iter()
                .map(|o| check_origin(o))
                .collect::<Result<Vec<HeaderValue>, ServeError>>()?;
            AllowOrigin::list(list)
        };
        Ok(Some(
            CorsLayer::new()
                .allow_origin(origins)
                .allow_methods([Method::GET, Method::POST])
                .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION])
                .expose_headers([header::RETRY_AFTER])
                .max_age(Duration::from_secs(600)),
        ))
    }
}

/// An origin as browsers send it: `scheme://host[:port]`, nothing after.
fn check_origin(origin: &str) -> Result<axum::http::HeaderValue, ServeError> {
    let bad = || {
        ServeError::Config(format!(
            "a CORS origin is scheme://host[:port] (as browsers send it, no path, no trailing \
             slash) or *, got {origin:?}"
        ))
    };
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or_else(bad)?;
    if rest.is_empty() || rest.contains(['/', '?', '#', ' ', '@']) {
        return Err(bad());
    }
    axum::http::HeaderValue::from_str(origin).map_err(|_| bad())
}

impl Config {
    /// The defaults, serving the completer saved at `model_path`.
    pub fn new(model_path: impl Into<PathBuf>) -> Self {
        Config {
            model_path: model_path.into(),
            products_path: None,
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 8000,
            workers: 0,
            limits: Limits {
                max_k: 100,
                max_text_bytes: 1024,
                max_body_bytes: 64 * 1024,
            },
            session_ttl: Duration::from_secs(30 * 60),
            max_sessions: 100_000,
            session_history: 5,
            drain_timeout: Duration::from_secs(10),
            live: LiveOverrides::default(),
            events: None,
            fsync: SyncPolicy::Always,
            watch: None,
            signals: false,
            blocklist: None,
            access: Access::default(),
            header_timeout: Duration::from_secs(30),
            max_connections: 10_000,
        }
    }

    /// The files the model is read from: the completer's, then the product retriever's.
    fn watched(&self) -> impl Iterator<Item = &Path> {
        std::iter::once(self.model_path.as_path()).chain(self.products_path.as_deref())
    }

    fn check(&self) -> Result<(), ServeError> {
        let bad = |what: &str| Err(ServeError::Config(what.to_owned()));
        if self.limits.max_k == 0 {
            return bad("max_k must be at least 1");
        }
        if self.limits.max_text_bytes == 0 || self.limits.max_body_bytes == 0 {
            return bad("the text and body limits must be at least 1 byte");
        }
        if self.session_ttl.is_zero() {
            return bad("session_ttl must be positive");
        }
        if self.max_sessions == 0 {
            return bad("max_sessions must be at least 1");
        }
        if !(1..=qac::MAX_SESSION_HISTORY).contains(&self.session_history) {
            return bad(&format!(
                "session_history must be from 1 to {}",
                qac::MAX_SESSION_HISTORY
            ));
        }
        if self.watch.is_some_and(|w| w.is_zero()) {
            return bad("watch must be a positive interval");
        }
        if self.workers > 1024 {
            return bad("workers must be at most 1024");
        }
        if self.header_timeout.is_zero() {
            return bad("header_timeout must be positive");
        }
        if self.max_connections == 0 {
            return bad("max_connections must be at least 1");
        }
        if let Some(r) = &self.access.record_rate {
            r.check("record_rate").map_err(ServeError::Config)?;
        }
        if let Some(r) = &self.access.complete_rate {
            r.check("complete_rate").map_err(ServeError::Config)?;
        }
        self.access.cors()?;
        Ok(())
    }
}

/// A running server. Dropping it shuts it down and waits for it.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    state: Arc<api::AppState>,
    stop: Arc<watch::Sender<bool>>,
    thread: Mutex<Option<JoinHandle<Result<(), ServeError>>>>,
}

/// The live options a server is given; the others are the model's.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LiveOverrides {
    /// Seconds after which a recorded search counts half as much.
    pub half_life: Option<f64>,
    /// Distinct queries held at most.
    pub cap: Option<usize>,
    /// Distinct clients a query needs before its live counts are seen.
    pub min_clients: Option<u32>,
}

impl LiveOverrides {
    /// `model`'s live options with those given here in their place.
    pub fn over(self, model: LiveParams) -> LiveParams {
        LiveParams {
            half_life: self.half_life.unwrap_or(model.half_life),
            cap: self.cap.unwrap_or(model.cap),
            min_clients: self.min_clients.unwrap_or(model.min_clients),
        }
    }
}

impl Server {
    /// Loads the model, binds the address and starts serving on threads of its own. Returns
    /// once requests are accepted; a missing or bad model, a bad option or an address that
    /// cannot be bound is an error here.
    pub fn start(config: Config) -> Result<Server, ServeError> {
        config.check()?;
        // Taken before the model is read: a file replaced from now on is seen as changed.
        let stamp = config.watched().map(file_stamp).collect();
        let metrics = metrics::Metrics::default();
        let model = model::ModelSlot::open(
            config.model_path.clone(),
            config.products_path.clone(),
            config.blocklist.clone(),
            &metrics,
        )?;
        let live = config
            .live
            .over(model.current().completer.options().live_params()?);
        let live = Arc::new(LiveCounts::new(live)?);
        let events = match &config.events {
            Some(path) => {
                let (log, replay) = EventLog::open(path, config.fsync)?;
                for s in &replay.searches {
                    live.record_replayed(s)?;
                }
                if replay.skipped > 0 || replay.truncated_bytes > 0 {
                    eprintln!(
                        "xrcomplete serve: warning: the event log {} was damaged: {} damaged \
                         stretch(es) skipped, {} byte(s) of a torn end cut off; {} searches \
                         replayed",
                        path.display(),
                        replay.skipped,
                        replay.truncated_bytes,
                        replay.searches.len()
                    );
                }
                let damaged = replay.skipped + u64::from(replay.truncated_bytes > 0);
                metrics.replayed(replay.searches.len() as u64, damaged);
                Some(log)
            }
            None => None,
        };
        let cap = NonZeroUsize::new(config.max_sessions).expect("checked");
        let keep = NonZeroUsize::new(config.session_history).expect("checked");
        let state = Arc::new(api::AppState {
            model,
            sessions: Mutex::new(Sessions::new(cap, config.session_ttl, keep)),
            metrics,
            limits: config.limits,
            draining: AtomicBool::new(false),
            live,
            events,
            keys: config.access.keys.clone(),
            trusted_proxies: config.access.trusted_proxies.clone(),
            record_limit: config.access.record_rate.map(access::Limiter::new),
            complete_limit: config.access.complete_rate.map(access::Limiter::new),
        });
        let workers = match config.workers {
            0 => std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
            n => n,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("xrcomplete-serve")
            .enable_all()
            .build()?;
        raise_open_files(config.max_connections);
        let addr = SocketAddr::new(config.host, config.port);
        let listener = std::net::TcpListener::bind(addr).map_err(|e| ServeError::Bind {
            addr,
            message: e.to_string(),
        })?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let listener = {
            let _in_runtime = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let (stop, stopped) = watch::channel(false);
        let stop = Arc::new(stop);
        let run = run(
            listener,
            state.clone(),
            stop.clone(),
            stopped,
            config.clone(),
            stamp,
        );
        let thread = std::thread::Builder::new()
            .name("xrcomplete-serve-main".into())
            .spawn(move || {
                let result = runtime.block_on(run);
                runtime.shutdown_timeout(Duration::from_secs(1));
                result
            })?;
        Ok(Server {
            addr,
            state,
            stop,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The address served (with the port picked when 0 was asked).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the live counts hold.
    pub fn live_stats(&self) -> xrcomplete_core::live::LiveStats {
        self.state.live.stats()
    }

    /// The id of the model being served (a fingerprint of its file, in hex).
    pub fn model_id(&self) -> String {
        self.state.model.current().id.clone()
    }

    /// Loads the model file again and serves it if it is good (as `POST /admin/reload`).
    /// Blocking.
    pub fn reload(&self) -> xrcomplete_core::Result<Reloaded> {
        self.state.model.reload(&self.state.metrics)
    }

    /// Asks the server to stop: it stops accepting, lets requests in flight finish (up to the
    /// drain timeout), then ends. Returns at once; [`Server::join`] waits.
    pub fn shutdown(&self) {
        self.stop.send_replace(true);
    }

    /// True once the server has ended.
    pub fn is_finished(&self) -> bool {
        self.lock_thread().as_ref().is_none_or(|t| t.is_finished())
    }

    fn lock_thread(&self) -> std::sync::MutexGuard<'_, Option<JoinHandle<Result<(), ServeError>>>> {
        self.thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until the server has ended (after [`Server::shutdown`] or a SIGTERM) and returns
    /// how it ended. A second call returns `Ok(())`.
    pub fn join(&self) -> Result<(), ServeError> {
        let Some(thread) = self.lock_thread().take() else {
            return Ok(());
        };
        thread
            .join()
            .unwrap_or_else(|_| Err(ServeError::Io(std::io::Error::other("the server panicked"))))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
        let _ = self.join();
    }
}

/// Serves until asked to stop, then drains.
async fn run(
    listener: tokio::net::TcpListener,
    state: Arc<api::AppState>,
    stop: Arc<watch::Sender<bool>>,
    mut stopped: watch::Receiver<bool>,
    config: Config,
    stamp: Vec<Option<FileStamp>>,
) -> Result<(), ServeError> {
    if config.signals {
        tokio::spawn(handle_signals(state.clone(), stop.clone()));
    }
    tokio::spawn(sweep_sessions(state.clone(), config.session_ttl));
    if let Some(every) = config.watch {
        let paths = config.watched().map(Path::to_path_buf).collect();
        tokio::spawn(watch_model(state.clone(), paths, every, stamp));
    }
    let cors = config.access.cors()?;
    let app = api::router(state.clone(), cors, config.header_timeout);
    let mut on_stop = stopped.clone();
    let draining = state.clone();
    let server = serve_connections(
        listener,
        app,
        config.header_timeout,
        config.max_connections,
        async move {
            let _ = on_stop.wait_for(|s| *s).await;
            draining.draining.store(true, Ordering::Relaxed);
        },
    );
    let drain_bound = async {
        let _ = stopped.wait_for(|s| *s).await;
        tokio::time::sleep(config.drain_timeout).await;
    };
    tokio::select! {
        () = server => Ok(()),
        () = drain_bound => {
            eprintln!(
                "xrcomplete serve: requests still open {:?} after shutdown; stopping anyway",
                config.drain_timeout
            );
            Ok(())
        }
    }
}

/// Accepts connections until `stop` completes, then lets those open finish their requests.
/// Each connection is served by hyper's HTTP/1 server with a timer: a client that has not sent
/// a whole request head within `header_timeout` (from its connection, or from its last answer
/// on a kept-alive connection) is dropped. At most `max_connections` are open; more wait in
/// the listen queue. (axum::serve sets no timer, so half-sent requests were held forever.)
async fn serve_connections(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    header_timeout: Duration,
    max_connections: usize,
    stop: impl std::future::Future<Output = ()>,
) {
    use axum::extract::ConnectInfo;
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;

    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let open = Arc::new(tokio::sync::Semaphore::new(max_connections));
    tokio::pin!(stop);
    loop {
        let permit = tokio::select! {
            p = open.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            () = &mut stop => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or a connection reset before it was accepted: the
                    // listener is fine; pause so that a full table can drain.
                    eprintln!("xrcomplete serve: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        // Small answers on kept-alive connections: no Nagle delay.
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let service =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                app.clone().oneshot(req.map(axum::body::Body::new))
            });
        let conn = graceful.watch(http.serve_connection(TokioIo::new(tcp), service));
        tokio::spawn(async move {
            // A connection's errors (a reset, a timeout) end that connection only.
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Raises the soft limit of open files towards what `connections` need (as Go's runtime does
/// at start): the usual soft limit, 1,024, is below the default cap of connections. The hard
/// limit is the operator's, and stays.
fn raise_open_files(connections: usize) {
    let want = (connections as u64).saturating_add(256);
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct given, nothing else.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < want {
            limit.rlim_cur = want.min(limit.rlim_max);
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// SIGTERM: shut down gracefully; SIGHUP: reload the model.
async fn handle_signals(state: Arc<api::AppState>, stop: Arc<watch::Sender<bool>>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        eprintln!("xrcomplete serve: cannot install signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => {
                stop.send_replace(true);
                return;
            }
            _ = hup.recv() => reload_logged(&state, "SIGHUP").await,
        }
    }
}

/// What tells a new file at a path from the old one: inode, size, modification time.
type FileStamp = (u64, u64, std::time::SystemTime);

fn file_stamp(path: &std::path::Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.ino(), meta.len(), meta.modified().ok()?))
}

/// Reloads the model whenever one of its files (the completer's, the product retriever's)
/// changes (polling: portable, and a model changes rarely), once the change is over: the
/// files' stamps (inode, size, modification time) must hold still for one more interval, so
/// that a copy still being written is not read. A file read while it changed fails its
/// checksum; its stamp then moves on, and it is read again.
async fn watch_model(
    state: Arc<api::AppState>,
    paths: Vec<PathBuf>,
    every: Duration,
    mut seen: Vec<Option<FileStamp>>,
) {
    let mut pending: Option<Vec<Option<FileStamp>>> = None;
    loop {
        tokio::time::sleep(every).await;
        let now: Vec<Option<FileStamp>> = paths.iter().map(|p| file_stamp(p)).collect();
        if now.iter().any(Option::is_none) || now == seen {
            pending = None;
            continue;
        }
        if pending.as_ref() != Some(&now) {
            pending = Some(now);
            continue;
        }
        seen = now;
        pending = None;
        reload_logged(&state, "a model file changed").await;
    }
}

/// Reloads the model off the async workers, for a signal or a watched file: the outcome goes to
/// the log (and the metrics), as nobody waits for an answer.
async fn reload_logged(state: &Arc<api::AppState>, why: &str) {
    let st = state.clone();
    match tokio::task::spawn_blocking(move || st.model.reload(&st.metrics)).await {
        Ok(Ok(r)) => eprintln!("xrcomplete serve: {why}: now serving model {}", r.id),
        Ok(Err(e)) => {
            eprintln!("xrcomplete serve: {why}: reload refused, the old model serves on: {e}")
        }
        Err(e) => eprintln!("xrcomplete serve: {why}: reload failed: {e}"),
    }
}

/// Drops expired sessions now and then, so that the table (and `/metrics`) holds live ones.
async fn sweep_sessions(state: Arc<api::AppState>, ttl: Duration) {
    let every = (ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(60));
    loop {
        tokio::time::sleep(every).await;
        let mut sessions = state.sessions();
        sessions.sweep(Instant::now());
        state.metrics.sessions(sessions.len());
        drop(sessions);
        for limit in [&state.record_limit, &state.complete_limit]
            .into_iter()
            .flatten()
        {
            limit.sweep();
        }
    }
}
