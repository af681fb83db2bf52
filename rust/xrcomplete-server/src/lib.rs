//! # xrcomplete-server
//!
//! The typeahead service of xrcomplete: a saved completer served over HTTP by axum on tokio.
//! The request path is Rust only (no Python, no GIL), the model is mapped read-only and shared
//! by every worker, and a reload swaps a new model in without failing a request.
//!
//! Routes (JSON unless said otherwise):
//! - `GET /v1/complete?prefix=..&prev=..&k=10` (or `session=..` instead of `prev`): the
//!   suggestions, each with its score, the typed part (`highlight`) and its source.
//! - `POST /v1/searches` `{"query": .., "prev" or "session": .., "time": ..}` (or a list): recorded
//!   into the live counts (and the event log, before the answer); the session's previous query.
//! - `GET /healthz`, `GET /readyz`, `GET /metrics` (OpenMetrics text).
//! - `POST /admin/reload` (from this machine only): load the model file again, serve it if good.
//! - `GET /`: the demo page (HTML, CSS and JS compiled into the binary).
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
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::serve::ListenerExt;
use tokio::sync::watch;
use xrcomplete_core::live::wal::{EventLog, SyncPolicy};
use xrcomplete_core::live::{LiveCounts, LiveParams};

mod api;
mod metrics;
mod model;
pub mod query;
mod sessions;

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
    /// Once shutdown is asked, requests in flight get this long to finish.
    pub drain_timeout: Duration,
    /// How the live counts decay and how much they hold.
    pub live: LiveParams,
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
}

impl Config {
    /// The defaults, serving the completer saved at `model_path`.
    pub fn new(model_path: impl Into<PathBuf>) -> Self {
        Config {
            model_path: model_path.into(),
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
            drain_timeout: Duration::from_secs(10),
            live: LiveParams::default(),
            events: None,
            fsync: SyncPolicy::Always,
            watch: None,
            signals: false,
            blocklist: None,
        }
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
        if self.watch.is_some_and(|w| w.is_zero()) {
            return bad("watch must be a positive interval");
        }
        if self.workers > 1024 {
            return bad("workers must be at most 1024");
        }
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

impl Server {
    /// Loads the model, binds the address and starts serving on threads of its own. Returns
    /// once requests are accepted; a missing or bad model, a bad option or an address that
    /// cannot be bound is an error here.
    pub fn start(config: Config) -> Result<Server, ServeError> {
        config.check()?;
        // Taken before the model is read: a file replaced from now on is seen as changed.
        let stamp = file_stamp(&config.model_path);
        let metrics = metrics::Metrics::default();
        let model = model::ModelSlot::open(
            config.model_path.clone(),
            config.blocklist.clone(),
            &metrics,
        )?;
        let live = Arc::new(LiveCounts::new(config.live)?);
        let events = match &config.events {
            Some(path) => {
                let (log, replay) = EventLog::open(path, config.fsync)?;
                for s in &replay.searches {
                    live.record(s)?;
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
        let state = Arc::new(api::AppState {
            model,
            sessions: Mutex::new(Sessions::new(cap, config.session_ttl)),
            metrics,
            limits: config.limits,
            draining: AtomicBool::new(false),
            live,
            events,
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
    stamp: Option<FileStamp>,
) -> Result<(), ServeError> {
    if config.signals {
        tokio::spawn(handle_signals(state.clone(), stop.clone()));
    }
    tokio::spawn(sweep_sessions(state.clone(), config.session_ttl));
    if let Some(every) = config.watch {
        tokio::spawn(watch_model(
            state.clone(),
            config.model_path.clone(),
            every,
            stamp,
        ));
    }
    let app = api::router(state.clone());
    // Small answers on kept-alive connections: no Nagle delay.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let mut on_stop = stopped.clone();
    let draining = state.clone();
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = on_stop.wait_for(|s| *s).await;
        draining.draining.store(true, Ordering::Relaxed);
    });
    let drain_bound = async {
        let _ = stopped.wait_for(|s| *s).await;
        tokio::time::sleep(config.drain_timeout).await;
    };
    tokio::select! {
        served = server => served.map_err(ServeError::Io),
        () = drain_bound => {
            eprintln!(
                "xrcomplete serve: requests still open {:?} after shutdown; stopping anyway",
                config.drain_timeout
            );
            Ok(())
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

/// Reloads the model whenever its file changes (polling: portable, and a model changes rarely).
async fn watch_model(
    state: Arc<api::AppState>,
    path: PathBuf,
    every: Duration,
    mut seen: Option<FileStamp>,
) {
    loop {
        tokio::time::sleep(every).await;
        let now = file_stamp(&path);
        if now.is_none() || now == seen {
            continue;
        }
        seen = now;
        reload_logged(&state, "the model file changed").await;
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
    }
}
