//! Starts and stops the HTTP service (`xrcomplete-server`); nothing of it runs in Python.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;

use xrcomplete_core::live::wal::SyncPolicy;
use xrcomplete_core::live::LiveParams;
use xrcomplete_server::{Config, Key, LiveOverrides, Rate, ServeError};

use crate::errors::to_py_err;

/// A running typeahead server. Requests are answered by Rust threads of its own; Python is not
/// involved (and the GIL not held) after it starts.
#[pyclass(module = "xrcomplete._core", frozen)]
pub(crate) struct Server {
    inner: xrcomplete_server::Server,
}

fn serve_err(err: ServeError) -> PyErr {
    match err {
        ServeError::Model(e) => to_py_err(e),
        ServeError::Config(_) => PyValueError::new_err(err.to_string()),
        ServeError::Bind { .. } | ServeError::Io(_) => PyOSError::new_err(err.to_string()),
    }
}

fn host_addr(host: &str) -> PyResult<IpAddr> {
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::from([127, 0, 0, 1]));
    }
    host.parse().map_err(|_| {
        PyValueError::new_err(format!(
            "host must be an IP address (or 'localhost'), got {host:?}"
        ))
    })
}

fn seconds(name: &str, value: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "{name} must be a positive number of seconds, got {value}"
            ))
        })
}

fn keys(name: &str, secrets: Vec<String>) -> PyResult<Vec<Key>> {
    secrets
        .iter()
        .map(|k| Key::new(k).map_err(|why| PyValueError::new_err(format!("{name}: {why}"))))
        .collect()
}

/// A per-minute rate (None or 0: no limit).
fn rate(name: &str, per_minute: Option<f64>, burst: u32) -> PyResult<Option<Rate>> {
    match per_minute {
        None => Ok(None),
        Some(0.0) => Ok(None),
        Some(per_minute) => {
            let rate = Rate { per_minute, burst };
            rate.check(name).map_err(PyValueError::new_err)?;
            Ok(Some(rate))
        }
    }
}

#[pymethods]
impl Server {
    /// Loads the completer at `path` (and the product retriever at `products`; both read into
    /// memory), binds `host:port` (port 0: a free one) and starts serving; returns once
    /// requests are accepted.
    #[new]
    #[pyo3(signature = (
        path, *, host = "127.0.0.1", port = 8000, workers = 0, max_k = 100,
        max_text_bytes = 1024, max_body_bytes = 65536, session_ttl = 1800.0,
        max_sessions = 100_000, session_history = 5, drain_timeout = 10.0, watch = None,
        events = None,
        fsync = "always", live_half_life = None, live_cap = None, signals = false,
        blocklist = None, admin_key = None, record_keys = Vec::new(), search_keys = Vec::new(),
        trusted_proxies = Vec::new(), cors_origins = Vec::new(), live_min_clients = None,
        record_rate = Some(60.0), record_burst = 10, complete_rate = None, complete_burst = 10,
        header_timeout = 30.0, max_connections = 10_000, products = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        host: &str,
        port: u16,
        workers: usize,
        max_k: usize,
        max_text_bytes: usize,
        max_body_bytes: usize,
        session_ttl: f64,
        max_sessions: usize,
        session_history: usize,
        drain_timeout: f64,
        watch: Option<f64>,
        events: Option<PathBuf>,
        fsync: &str,
        live_half_life: Option<f64>,
        live_cap: Option<usize>,
        signals: bool,
        blocklist: Option<PathBuf>,
        admin_key: Option<String>,
        record_keys: Vec<String>,
        search_keys: Vec<String>,
        trusted_proxies: Vec<String>,
        cors_origins: Vec<String>,
        live_min_clients: Option<u32>,
        record_rate: Option<f64>,
        record_burst: u32,
        complete_rate: Option<f64>,
        complete_burst: u32,
        header_timeout: f64,
        max_connections: usize,
        products: Option<PathBuf>,
    ) -> PyResult<Self> {
        let mut config = Config::new(path);
        config.products_path = products;
        config.host = host_addr(host)?;
        config.port = port;
        config.workers = workers;
        config.limits.max_k = max_k;
        config.limits.max_text_bytes = max_text_bytes;
        config.limits.max_body_bytes = max_body_bytes;
        config.session_ttl = seconds("session_ttl", session_ttl)?;
        config.max_sessions = max_sessions;
        config.session_history = session_history;
        config.drain_timeout = seconds("drain_timeout", drain_timeout)?;
        config.watch = watch.map(|w| seconds("watch", w)).transpose()?;
        config.events = events;
        config.fsync = match fsync {
            "always" => SyncPolicy::Always,
            "never" => SyncPolicy::Never,
            other => {
                return Err(PyValueError::new_err(format!(
                    "fsync must be 'always' or 'never', got {other:?}"
                )))
            }
        };
        config.live = LiveOverrides {
            half_life: live_half_life,
            cap: live_cap,
            min_clients: live_min_clients,
        };
        // What is given is checked now (what the model says was checked when it was saved).
        config
            .live
            .over(LiveParams::default())
            .check()
            .map_err(to_py_err)?;
        config.signals = signals;
        config.blocklist = blocklist;
        config.access.keys.admin = keys("admin_key", admin_key.into_iter().collect())?.pop();
        config.access.keys.record = keys("record_keys", record_keys)?;
        config.access.keys.search = keys("search_keys", search_keys)?;
        config.access.trusted_proxies = trusted_proxies
            .iter()
            .map(|p| xrcomplete_server::trusted_proxy(p).map_err(PyValueError::new_err))
            .collect::<PyResult<_>>()?;
        config.access.cors_origins = cors_origins;
        config.access.record_rate = rate("record_rate", record_rate, record_burst)?;
        config.access.complete_rate = rate("complete_rate", complete_rate, complete_burst)?;
        config.header_timeout = seconds("header_timeout", header_timeout)?;
        config.max_connections = max_connections;
        let inner = py
            .detach(|| xrcomplete_server::Server::start(config))
            .map_err(serve_err)?;
        Ok(Server { inner })
    }

    /// The address served.
    #[getter]
    fn host(&self) -> String {
        self.inner.addr().ip().to_string()
    }

    /// The port served (the one picked when 0 was asked).
    #[getter]
    fn port(&self) -> u16 {
        self.inner.addr().port()
    }

    /// `http://host:port`.
    #[getter]
    fn url(&self) -> String {
        format!("http://{}", self.inner.addr())
    }

    /// The id of the model being served: a fingerprint of its file, in hex.
    #[getter]
    fn model_id(&self) -> String {
        self.inner.model_id()
    }

    /// Loads the model file again and serves it if it is good (else `ModelFormatError`, and the
    /// old model serves on). Returns the new model's id.
    fn reload(&self, py: Python<'_>) -> PyResult<String> {
        py.detach(|| self.inner.reload())
            .map(|r| r.id)
            .map_err(to_py_err)
    }

    /// What the live counts hold: queries, prevs, events, evicted, memory_bytes, waiting
    /// (queries below the floor), capped (searches not counted: a client's repeat).
    fn live_stats(&self) -> std::collections::BTreeMap<&'static str, f64> {
        let s = self.inner.live_stats();
        [
            ("queries", s.queries as f64),
            ("prevs", s.prevs as f64),
            ("events", s.events as f64),
            ("evicted", s.evicted as f64),
            ("memory_bytes", s.memory_bytes as f64),
            ("waiting", s.waiting as f64),
            ("capped", s.capped as f64),
        ]
        .into_iter()
        .collect()
    }

    /// Asks the server to stop (it drains requests in flight); returns at once.
    fn shutdown(&self) {
        self.inner.shutdown();
    }

    /// True once the server has stopped.
    #[getter]
    fn finished(&self) -> bool {
        self.inner.is_finished()
    }

    /// Waits until the server has stopped (`timeout` seconds at most; `None`: no limit).
    /// Returns True when it has. Python signal handlers run meanwhile (Ctrl-C raises
    /// `KeyboardInterrupt` here; the server keeps running until `shutdown`).
    #[pyo3(signature = (timeout = None))]
    fn join(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let deadline = match timeout {
            Some(t) if !(t >= 0.0 && t.is_finite()) => {
                return Err(PyValueError::new_err(format!(
                    "timeout must be a number of seconds >= 0, got {t}"
                )))
            }
            Some(t) => Some(Instant::now() + Duration::from_secs_f64(t)),
            None => None,
        };
        loop {
            if self.inner.is_finished() {
                py.detach(|| self.inner.join()).map_err(serve_err)?;
                return Ok(true);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            py.detach(|| std::thread::sleep(Duration::from_millis(20)));
            py.check_signals()?;
        }
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Stops the server and waits for it.
    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.inner.shutdown();
        py.detach(|| self.inner.join()).map_err(serve_err)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!("Server(url={:?}, model={:?})", self.url(), self.model_id())
    }
}
