//! The server's metrics, exposed at `GET /metrics` in the OpenMetrics text format (which
//! Prometheus reads). Written with `prometheus-client`, the Prometheus project's own Rust client:
//! its encoder gets the escaping and the exposition format right.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    reason: &'static str,
}

/// Why searches were refused, each a label of `searches_refused_total` from the start.
pub const REFUSALS: [&str; 4] = [
    "rate_limited",
    "needs_record_key",
    "wrong_key",
    "key_required",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    result: &'static str,
}

fn latency_histogram() -> Histogram {
    // 25 µs .. ~1.6 s, doubling.
    Histogram::new(exponential_buckets(25e-6, 2.0, 17))
}

/// Every metric the server keeps, and the registry that names them.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    model: Family<ModelLabels, Gauge>,
    model_load_seconds: Gauge<f64, AtomicU64>,
    model_loaded_at: Gauge<f64, AtomicU64>,
    sessions: Gauge,
    reloads: Family<ReloadLabels, Counter>,
    searches: Counter,
    replayed: Counter,
    damaged: Counter,
    live_queries: Gauge,
    refused: Family<RefusedLabels, Counter>,
    capped: Counter,
    live_waiting: Gauge,
    completions_limited: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("xrcomplete");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route and status",
            requests.clone(),
        );
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from request to response, by route",
            latency.clone(),
        );
        let model = Family::<ModelLabels, Gauge>::default();
        registry.register(
            "model_info",
            "The model being served (1 for its id: a fingerprint of its file)",
            model.clone(),
        );
        let model_load_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "model_load_seconds",
            "Time it took to load and check the model being served",
            model_load_seconds.clone(),
        );
        let model_loaded_at = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "model_loaded_timestamp_seconds",
            "When the model being served was loaded (Unix time)",
            model_loaded_at.clone(),
        );
        let sessions = Gauge::default();
        registry.register(
            "sessions",
            "Sessions whose last search is remembered",
            sessions.clone(),
        );
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "model_reloads",
            "Model reloads, by result: ok, or refused (the file was bad; the old model serves on)",
            reloads.clone(),
        );
        let searches = Counter::default();
        registry.register(
            "searches_recorded",
            "Searches recorded (POST /v1/searches), into the live counts and the event log",
            searches.clone(),
        );
        let replayed = Counter::default();
        registry.register(
            "events_replayed",
            "Searches replayed from the event log at start",
            replayed.clone(),
        );
        let damaged = Counter::default();
        registry.register(
            "events_damaged",
            "Damaged stretches of the event log skipped at start (a torn end counts one)",
            damaged.clone(),
        );
        let live_queries = Gauge::default();
        registry.register(
            "live_queries",
            "Distinct queries held in the live counts",
            live_queries.clone(),
        );
        let refused = Family::<RefusedLabels, Counter>::default();
        registry.register(
            "searches_refused",
            "Searches refused (POST /v1/searches), by reason: rate_limited (the client's \
             budget), needs_record_key (count, time or user without a record key), wrong_key, \
             key_required (a search key is configured)",
            refused.clone(),
        );
        for reason in REFUSALS {
            let _ = refused.get_or_create(&RefusedLabels { reason });
        }
        let capped = Counter::default();
        registry.register(
            "searches_capped",
            "Searches accepted but not counted: their client had counted the query within a \
             half-life",
            capped.clone(),
        );
        let live_waiting = Gauge::default();
        registry.register(
            "live_waiting",
            "Queries searched live by fewer distinct clients than the floor: held, not shown",
            live_waiting.clone(),
        );
        let completions_limited = Counter::default();
        registry.register(
            "completions_rate_limited",
            "Completions refused by the per-client rate limit (--complete-rate)",
            completions_limited.clone(),
        );
        // Both results are shown from the start, at 0.
        for result in ["ok", "refused"] {
            let _ = reloads.get_or_create(&ReloadLabels { result });
        }
        Metrics {
            registry,
            requests,
            latency,
            model,
            model_load_seconds,
            model_loaded_at,
            sessions,
            reloads,
            searches,
            replayed,
            damaged,
            live_queries,
            refused,
            capped,
            live_waiting,
            completions_limited,
        }
    }
}

impl Metrics {
    /// Counts one answered request.
    pub fn request(&self, route: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .observe(seconds);
    }

    /// Sets the model being served.
    pub fn model_loaded(&self, id: &str, load_seconds: f64, unix_time: f64) {
        self.model.clear();
        self.model
            .get_or_create(&ModelLabels { id: id.to_owned() })
            .set(1);
        self.model_load_seconds.set(load_seconds);
        self.model_loaded_at.set(unix_time);
    }

    /// Counts a reload, `ok` or refused.
    pub fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "refused" };
        self.reloads.get_or_create(&ReloadLabels { result }).inc();
    }

    /// Counts recorded searches.
    pub fn searches(&self, n: u64) {
        self.searches.inc_by(n);
    }

    /// What the replay of the event log found.
    pub fn replayed(&self, searches: u64, damaged: u64) {
        self.replayed.inc_by(searches);
        self.damaged.inc_by(damaged);
    }

    /// Sets what the live counts hold: queries, and those below the floor.
    pub fn live(&self, queries: usize, waiting: usize) {
        self.live_queries
            .set(i64::try_from(queries).unwrap_or(i64::MAX));
        self.live_waiting
            .set(i64::try_from(waiting).unwrap_or(i64::MAX));
    }

    /// Counts `n` searches refused for `reason` (one of [`REFUSALS`]).
    pub fn refused(&self, reason: &'static str, n: u64) {
        self.refused
            .get_or_create(&RefusedLabels { reason })
            .inc_by(n);
    }

    /// Counts searches accepted but not counted (the per-client cap).
    pub fn capped(&self, n: u64) {
        self.capped.inc_by(n);
    }

    /// Counts a completion refused by the rate limit.
    pub fn completion_limited(&self) {
        self.completions_limited.inc();
    }

    /// Sets the number of sessions held.
    pub fn sessions(&self, n: usize) {
        self.sessions.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
