//! The session-aware completer: training on a log, `complete(prev, prefix)`.

use std::sync::{Arc, Mutex, PoisonError, RwLock};

use numpy::PyReadonlyArray1;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PySequence, PyString};

use xrcomplete_core::live::{self, wal, LiveCounts, LiveParams, Search};
use xrcomplete_core::persist::Persist;
use xrcomplete_core::qac::{
    self, Answer, CompleteScratch, Completer, OptionKind, RankParams, Request,
};
use xrcomplete_core::rank::Ranker;
use xrcomplete_core::text::Interner;
use xrcomplete_core::xr::Progress;
use xrcomplete_core::{Error as CoreError, Result as CoreResult};

use crate::errors::{check_k, count, to_py_err, type_name};
use crate::options::{declared_option, to_value, Options};
use crate::persist;
use crate::text::{extract_texts, TfidfModel, TfidfOptions};
use crate::xr::ProgressCounter;

/// The distinct queries of a fit, numbered in order of first use: the query table of
/// `Completer.fit`, held here rather than as a Python dict of strings and ints (at ten million
/// queries, 1.0 GiB less RSS at the same point of the fit, measured), in the core's `Interner`
/// (the strings back to back in one buffer). `CompleterModel.fit` takes the queries out of it
/// (it is empty after) and reads them in place.
#[pyclass(module = "xrcomplete._core")]
#[derive(Debug, Default)]
pub struct QueryIds {
    ids: Interner,
}

#[pymethods]
impl QueryIds {
    #[new]
    fn new() -> Self {
        QueryIds::default()
    }

    fn __len__(&self) -> usize {
        self.ids.len()
    }

    /// The id of `query` (as given), numbered next if it is new.
    fn id_of(&mut self, query: &str) -> PyResult<u32> {
        if let Some(id) = self.ids.id(query) {
            return Ok(id);
        }
        u32::try_from(self.ids.len())
            .map_err(|_| PyValueError::new_err("more than 2^32 distinct queries"))?;
        Ok(self.ids.insert(query).0)
    }

    /// The id of `query`, or None when it has none.
    fn get(&self, query: &str) -> Option<u32> {
        self.ids.id(query)
    }
}

impl QueryIds {
    /// The queries, taken out (the table is empty after).
    fn take(&mut self) -> Interner {
        std::mem::take(&mut self.ids)
    }
}

/// The shards of a fit's pairs, held by a Python object (the distributed engine): `sizes()`,
/// `map(task)`, `shuffle(task, n_parts)` and `n_parts()` as the core's `PairShards` says. The
/// engine's entry into the core's fit.
#[derive(Debug)]
struct PyPairShards {
    engine: Py<PyAny>,
    /// What the engine raised, re-raised once the fit has stopped.
    error: Mutex<Option<PyErr>>,
}

impl PyPairShards {
    fn new(engine: Py<PyAny>) -> Self {
        PyPairShards {
            engine,
            error: Mutex::new(None),
        }
    }

    fn take_error(&self) -> Option<PyErr> {
        self.error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// `engine.method(*args)` extracted as `T`; what it raised is kept for the fit to re-raise.
    fn call<T>(
        &self,
        method: &str,
        args: impl for<'py> FnOnce(Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyTuple>>,
    ) -> CoreResult<T>
    where
        T: for<'a, 'py> FromPyObject<'a, 'py>,
    {
        Python::attach(|py| {
            let got = args(py).and_then(|args| {
                self.engine
                    .bind(py)
                    .call_method1(method, args)?
                    .extract::<T>()
                    .map_err(Into::into)
            });
            got.map_err(|e| {
                let message = format!("the engine's {method} raised {e}");
                *self.error.lock().unwrap_or_else(PoisonError::into_inner) = Some(e);
                CoreError::Engine(message)
            })
        })
    }
}

impl qac::PairShards for PyPairShards {
    fn sizes(&self) -> CoreResult<Vec<u64>> {
        self.call("sizes", |py| Ok(pyo3::types::PyTuple::empty(py)))
    }

    fn timed(&self) -> CoreResult<bool> {
        self.call("timed", |py| Ok(pyo3::types::PyTuple::empty(py)))
    }

    fn map(&self, task: Vec<u8>) -> CoreResult<Vec<Vec<u8>>> {
        self.call("map", |py| (PyBytes::new(py, &task),).into_pyobject(py))
    }

    fn shuffle(&self, task: Vec<u8>, n_parts: usize) -> CoreResult<Vec<Vec<u8>>> {
        self.call("shuffle", |py| {
            (PyBytes::new(py, &task), n_parts).into_pyobject(py)
        })
    }

    fn n_parts(&self) -> CoreResult<usize> {
        self.call("n_parts", |py| Ok(pyo3::types::PyTuple::empty(py)))
    }
}

/// The pairs of a shard from numpy arrays of query ids (-1: no previous query).
fn shard_pairs(
    prev_ids: &PyReadonlyArray1<'_, i64>,
    next_ids: &PyReadonlyArray1<'_, i64>,
) -> PyResult<Vec<(Option<u32>, u32)>> {
    let (prev_ids, next_ids) = (prev_ids.as_slice()?, next_ids.as_slice()?);
    if prev_ids.len() != next_ids.len() {
        return Err(PyValueError::new_err(format!(
            "{} previous ids but {} next ids",
            prev_ids.len(),
            next_ids.len()
        )));
    }
    let id = |v: i64| {
        u32::try_from(v).map_err(|_| PyValueError::new_err(format!("query id {v} is out of range")))
    };
    prev_ids
        .iter()
        .zip(next_ids)
        .map(|(&p, &n)| Ok((if p == -1 { None } else { Some(id(p)?) }, id(n)?)))
        .collect()
}

/// What shard `shard` of a distributed fit (its pairs as query ids, with their times when the
/// log has them) answers to a task of any stage but the pifa and the pieces ones; the GIL is
/// released.
#[pyfunction]
#[pyo3(signature = (task, shard, prev_ids, next_ids, times = None))]
pub(crate) fn shard_answer(
    py: Python<'_>,
    task: &[u8],
    shard: usize,
    prev_ids: PyReadonlyArray1<'_, i64>,
    next_ids: PyReadonlyArray1<'_, i64>,
    times: Option<PyReadonlyArray1<'_, f64>>,
) -> PyResult<Py<PyBytes>> {
    let pairs = shard_pairs(&prev_ids, &next_ids)?;
    let times = times.as_ref().map(|t| t.as_slice()).transpose()?;
    let answer = py
        .detach(|| qac::shard_answer(task, shard, &pairs, times))
        .map_err(to_py_err)?;
    Ok(PyBytes::new(py, &answer).unbind())
}

/// What shard `shard` answers to a task of the pifa or the pieces stage: for each part of the
/// work, the pieces of its rows (files of jobs); the GIL is released.
#[pyfunction]
#[pyo3(signature = (task, shard, prev_ids, next_ids, times = None))]
pub(crate) fn shard_pieces(
    py: Python<'_>,
    task: &[u8],
    shard: usize,
    prev_ids: PyReadonlyArray1<'_, i64>,
    next_ids: PyReadonlyArray1<'_, i64>,
    times: Option<PyReadonlyArray1<'_, f64>>,
) -> PyResult<Vec<Vec<Py<PyBytes>>>> {
    let pairs = shard_pairs(&prev_ids, &next_ids)?;
    let times = times.as_ref().map(|t| t.as_slice()).transpose()?;
    let parts = py
        .detach(|| qac::shard_pieces(task, shard, &pairs, times))
        .map_err(to_py_err)?;
    Ok(parts
        .iter()
        .map(|jobs| jobs.iter().map(|j| PyBytes::new(py, j).unbind()).collect())
        .collect())
}

/// The answers of one part of a distributed fit's work from its pieces (`pieces[s]`: the
/// pieces shard `s` cut, shards in order): trained columns, or label embeddings; the GIL is
/// released.
#[pyfunction]
pub(crate) fn part_answer(
    py: Python<'_>,
    pieces: Vec<Vec<Bound<'_, PyBytes>>>,
) -> PyResult<Vec<Py<PyBytes>>> {
    let views: Vec<Vec<&[u8]>> = pieces
        .iter()
        .map(|shard| shard.iter().map(|p| p.as_bytes()).collect())
        .collect();
    let answers = py.detach(|| qac::part_answer(&views)).map_err(to_py_err)?;
    Ok(answers
        .iter()
        .map(|a| PyBytes::new(py, a).unbind())
        .collect())
}

/// A trained completer. Immutable; `complete` releases the GIL and may run from many threads.
#[pyclass(module = "xrcomplete._core", frozen)]
pub(crate) struct CompleterModel {
    inner: Arc<Completer>,
    /// Searches recorded since the model was built (`record`), consulted by `complete`.
    live: RwLock<Arc<LiveCounts>>,
}

fn new_live(params: LiveParams) -> PyResult<RwLock<Arc<LiveCounts>>> {
    Ok(RwLock::new(Arc::new(
        LiveCounts::new(params).map_err(to_py_err)?,
    )))
}

fn default_live() -> RwLock<Arc<LiveCounts>> {
    new_live(LiveParams::default()).expect("the default live options are valid")
}

/// Seconds since the Unix epoch.
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A search to record, checked: the query normalised and not empty, the count positive, the
/// time finite.
fn search(
    query: &str,
    prev: &str,
    count: f64,
    time: Option<f64>,
    client: Option<&str>,
) -> PyResult<Search> {
    let time = time.unwrap_or_else(unix_now);
    Search::new(query, prev, count, time, client.map(live::client_id)).map_err(|bad| match bad {
        live::BadSearch::EmptyQuery => {
            PyValueError::new_err(format!("cannot record {query:?}: {bad}"))
        }
        other => to_py_err(other.into()),
    })
}

fn check_min_clients(min_clients: u32) -> PyResult<()> {
    LiveParams {
        min_clients,
        ..LiveParams::default()
    }
    .check()
    .map_err(to_py_err)
}

impl CompleterModel {
    /// The model's ranking options with this call's `overrides` (ranking options by name).
    fn ranking(&self, overrides: Option<&Bound<'_, PyDict>>) -> PyResult<RankParams> {
        let Some(overrides) = overrides.filter(|o| !o.is_empty()) else {
            return Ok(*self.inner.rank_params());
        };
        let mut options = self.inner.options().clone();
        for (name, value) in overrides {
            let name: String = name.extract()?;
            let d = declared_option(&name)?;
            if d.kind != OptionKind::Rank {
                return Err(PyTypeError::new_err(format!(
                    "{name} is a {} option, fixed when the model was trained; a call overrides \
                     ranking options only",
                    d.kind.name()
                )));
            }
            options
                .set(d.name, to_value(d, &value)?)
                .map_err(to_py_err)?;
        }
        options.rank_params().map_err(to_py_err)
    }

    fn live(&self) -> Arc<LiveCounts> {
        self.live
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// A candidate of `explain` for Python: (query, score, source, ranking segment, features).
type ExplainedCandidate = (String, f32, &'static str, u32, Vec<f32>);

/// A suggestion for Python: (query, score, source, characters of the query that the typed
/// prefix, or for a fuzzy one the corrected prefix, covers).
type Suggestion = (String, f32, &'static str, usize);

fn suggestions(found: Vec<Answer>) -> Vec<Suggestion> {
    found
        .into_iter()
        .map(|a| (a.query, a.score, a.origin.name(), a.matched))
        .collect()
}

/// A session's searches as Python gives them: a str (the previous query; "": none) or a
/// sequence of str, oldest first, the last the previous query.
fn extract_history(history: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<String>> {
    if let Ok(s) = history.cast::<PyString>() {
        return Ok(vec![s.to_cow()?.into_owned()]);
    }
    if !history.is_instance_of::<PySequence>() || history.is_instance_of::<PyBytes>() {
        return Err(PyTypeError::new_err(format!(
            "{what} must be a str or a sequence of str (the session's searches, oldest \
             first), got {}",
            type_name(history)
        )));
    }
    extract_texts(history, what)
}

#[pymethods]
impl CompleterModel {
    /// Trains on a log: `queries` (distinct, normalised; a list, or a `QueryIds` whose queries
    /// are taken out rather than copied) searched `counts` times, and the
    /// (previous, next) pairs as indices into `queries` (`prev_ids` -1 for a session's first
    /// query), with their `times` (or None: the pairs are in time order). Or, instead of the
    /// pairs (None), the `shards` that hold them (`xrcomplete.distributed.PairShards`): the
    /// same model, trained where the pairs are.
    #[staticmethod]
    #[pyo3(signature = (
        queries, counts, prev_ids, next_ids, prev_features, prefix_features, options, *,
        times = None, users = None, user_offsets = None, user_ids = None, progress = None,
        shards = None, min_subtrees = 64,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn fit(
        py: Python<'_>,
        queries: &Bound<'_, PyAny>,
        counts: PyReadonlyArray1<'_, f64>,
        prev_ids: Option<PyReadonlyArray1<'_, i64>>,
        next_ids: Option<PyReadonlyArray1<'_, i64>>,
        prev_features: &TfidfOptions,
        prefix_features: &TfidfOptions,
        options: &Options,
        times: Option<PyReadonlyArray1<'_, f64>>,
        users: Option<PyReadonlyArray1<'_, f64>>,
        user_offsets: Option<PyReadonlyArray1<'_, u64>>,
        user_ids: Option<PyReadonlyArray1<'_, u32>>,
        progress: Option<PyRef<'_, ProgressCounter>>,
        shards: Option<Py<PyAny>>,
        min_subtrees: usize,
    ) -> PyResult<Self> {
        let params = options
            .inner
            .fit_params(prev_features.config.clone(), prefix_features.config.clone())
            .map_err(to_py_err)?;
        let engine = shards.map(|engine| Arc::new(PyPairShards::new(engine)));
        let sharding = engine.clone().map(|shards| qac::Sharding {
            shards,
            min_subtrees: min_subtrees.max(1),
        });
        // The strings stay where they are (the table's buffer, or the list's copies).
        let (table, listed);
        let queries: Vec<&str> = match queries.cast::<QueryIds>() {
            Ok(ids) => {
                table = ids.borrow_mut().take();
                table.iter().collect()
            }
            Err(_) => {
                listed = extract_texts(queries, "queries")?;
                listed.iter().map(String::as_str).collect()
            }
        };
        let pairs = match (&prev_ids, &next_ids, &sharding) {
            (Some(prev_ids), Some(next_ids), None) => shard_pairs(prev_ids, next_ids)?,
            (None, None, Some(_)) if times.is_none() => Vec::new(),
            _ => {
                return Err(PyValueError::new_err(
                    "the pairs (prev_ids, next_ids and their times) are given, or the shards \
                     that hold them: one of the two",
                ))
            }
        };
        let counts = counts.as_slice()?;
        let times = times.as_ref().map(|t| t.as_slice()).transpose()?;
        let users = users.as_ref().map(|u| u.as_slice()).transpose()?;
        let ids = match (&user_offsets, &user_ids) {
            (Some(o), Some(i)) => Some((o.as_slice()?, i.as_slice()?)),
            (None, None) => None,
            _ => {
                return Err(PyValueError::new_err(
                    "user_offsets and user_ids come together",
                ))
            }
        };
        let users = users.map(|counts| qac::QueryUsers { counts, ids });
        let progress =
            progress.map_or_else(|| Arc::new(Progress::default()), |p| Arc::clone(&p.inner));
        let model = py
            .detach(|| match &sharding {
                Some(sharding) => {
                    Completer::fit_on_shards(&queries, counts, users, sharding, &params, &progress)
                }
                None => Completer::fit_with_users(
                    &queries, counts, users, &pairs, times, &params, &progress,
                ),
            })
            .map_err(|e| match engine.and_then(|r| r.take_error()) {
                // The engine's own exception (a Ray task that failed for good, say).
                Some(raised) => raised,
                None => to_py_err(e),
            })?;
        Ok(CompleterModel {
            inner: Arc::new(model),
            live: default_live(),
        })
    }

    /// The best `k` completions of `prefix` after `prev`: [(query, score, source, matched)],
    /// best first; source is "seen", "composed", "live", "session" or "fuzzy". Keyword
    /// arguments override the model's ranking options for this call (`beam_size=20`).
    #[pyo3(signature = (prev, prefix, k = 10, **overrides))]
    fn complete(
        &self,
        py: Python<'_>,
        prev: &Bound<'_, PyAny>,
        prefix: &str,
        #[pyo3(from_py_with = count)] k: i64,
        overrides: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Vec<Suggestion>> {
        let k = check_k(k)?;
        let params = self.ranking(overrides)?;
        let history = extract_history(prev, "prev")?;
        let history: Vec<&str> = history.iter().map(String::as_str).collect();
        let live = self.live();
        let request = Request::in_session(&history, prefix, k)
            .ranked(&params)
            .with_live(Some(&live));
        py.detach(|| SCRATCH.with_borrow_mut(|scratch| self.inner.complete(&request, scratch)))
            .map(suggestions)
            .map_err(to_py_err)
    }

    /// Every candidate `complete(prev, prefix, k)` ranks that may be suggested (blocklist and
    /// privacy floor applied; the corrections of a prefix that looks mistyped included),
    /// ranked: [(query, score, source, segment, features)], the features named by
    /// `ranking_features()`. Overrides as for `complete`; `candidates` is per source.
    #[pyo3(signature = (prev, prefix, k = 10, **overrides))]
    fn explain(
        &self,
        py: Python<'_>,
        prev: &Bound<'_, PyAny>,
        prefix: &str,
        #[pyo3(from_py_with = count)] k: i64,
        overrides: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Vec<ExplainedCandidate>> {
        let k = check_k(k)?;
        let params = self.ranking(overrides)?;
        let history = extract_history(prev, "prev")?;
        let history: Vec<&str> = history.iter().map(String::as_str).collect();
        let live = self.live();
        let request = Request::in_session(&history, prefix, k)
            .ranked(&params)
            .with_live(Some(&live));
        py.detach(|| SCRATCH.with_borrow_mut(|scratch| self.inner.explain(&request, scratch)))
            .map(|all| {
                all.into_iter()
                    .map(|e| {
                        let source = e.origin.name();
                        (e.query, e.score, source, e.segment, e.features.to_vec())
                    })
                    .collect()
            })
            .map_err(to_py_err)
    }

    /// `complete` for every (prevs[i], prefixes[i]), in parallel.
    #[pyo3(signature = (prevs, prefixes, k = 10, **overrides))]
    fn complete_batch(
        &self,
        py: Python<'_>,
        prevs: &Bound<'_, PyAny>,
        prefixes: &Bound<'_, PyAny>,
        #[pyo3(from_py_with = count)] k: i64,
        overrides: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Vec<Vec<Suggestion>>> {
        let k = check_k(k)?;
        let params = self.ranking(overrides)?;
        if prevs.is_instance_of::<PyString>() {
            return Err(PyTypeError::new_err(
                "prevs must be an iterable of str or of sequences of str, not a single str",
            ));
        }
        let prevs = prevs
            .try_iter()?
            .enumerate()
            .map(|(i, item)| extract_history(&item?, &format!("prevs[{i}]")))
            .collect::<PyResult<Vec<_>>>()?;
        let prefixes = extract_texts(prefixes, "prefixes")?;
        if prevs.len() != prefixes.len() {
            return Err(PyValueError::new_err(format!(
                "{} previous queries but {} prefixes",
                prevs.len(),
                prefixes.len()
            )));
        }
        let live = self.live();
        let histories: Vec<Vec<&str>> = prevs
            .iter()
            .map(|h| h.iter().map(String::as_str).collect())
            .collect();
        let requests: Vec<Request<'_>> = histories
            .iter()
            .zip(&prefixes)
            .map(|(history, prefix)| {
                Request::in_session(history, prefix, k)
                    .ranked(&params)
                    .with_live(Some(&live))
            })
            .collect();
        py.detach(|| self.inner.complete_batch(&requests))
            .map(|all| all.into_iter().map(suggestions).collect())
            .map_err(to_py_err)
    }

    /// Records one search (the query and previous query normalised first) into the live
    /// counts; `time` in seconds (default: now, Unix time). With `client` (who searched), the
    /// per-client rules apply; returns False when the search was not counted (its client had
    /// counted the query within a half-life).
    #[pyo3(signature = (query, prev = "", count = 1.0, time = None, client = None))]
    fn record(
        &self,
        py: Python<'_>,
        query: &str,
        prev: &str,
        count: f64,
        time: Option<f64>,
        client: Option<&str>,
    ) -> PyResult<bool> {
        let s = search(query, prev, count, time, client)?;
        let live = self.live();
        py.detach(|| live.record(&s))
            .map(|r| r == live::Recorded::Counted)
            .map_err(to_py_err)
    }

    /// Records many searches: all are checked before any is recorded. Returns how many were
    /// counted.
    #[pyo3(signature = (queries, prevs = None, counts = None, times = None, clients = None))]
    fn record_batch(
        &self,
        py: Python<'_>,
        queries: &Bound<'_, PyAny>,
        prevs: Option<&Bound<'_, PyAny>>,
        counts: Option<Vec<f64>>,
        times: Option<Vec<f64>>,
        clients: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<usize> {
        let queries = extract_texts(queries, "queries")?;
        let prevs = prevs
            .map(|p| extract_texts(p, "prevs"))
            .transpose()?
            .unwrap_or_else(|| vec![String::new(); queries.len()]);
        let clients = clients.map(|c| extract_texts(c, "clients")).transpose()?;
        let n = queries.len();
        for (name, len) in [
            ("prevs", prevs.len()),
            ("clients", clients.as_ref().map_or(n, Vec::len)),
            ("counts", counts.as_ref().map_or(n, Vec::len)),
            ("times", times.as_ref().map_or(n, Vec::len)),
        ] {
            if len != n {
                return Err(PyValueError::new_err(format!(
                    "{n} queries but {len} {name}"
                )));
            }
        }
        let now = unix_now();
        let searches = (0..n)
            .map(|i| {
                let count = counts.as_ref().map_or(1.0, |c| c[i]);
                let time = times.as_ref().map_or(now, |t| t[i]);
                let client = clients.as_ref().map(|c| c[i].as_str());
                search(&queries[i], &prevs[i], count, Some(time), client)
            })
            .collect::<PyResult<Vec<Search>>>()?;
        let live = self.live();
        let counted = py
            .detach(|| {
                searches
                    .iter()
                    .map(|s| live.record(s))
                    .collect::<xrcomplete_core::Result<Vec<_>>>()
            })
            .map_err(to_py_err)?;
        Ok(counted
            .iter()
            .filter(|&&r| r == live::Recorded::Counted)
            .count())
    }

    /// The completer saved at `model` with the searches of the event log `events` folded into
    /// its counts (see `xrcomplete compact`), and what was done: searches (in the log), folded,
    /// unknown (of queries the model cannot suggest, left out), below_floor (of queries fewer
    /// than `min_clients` clients searched, left out; default: the model's `live_min_clients`),
    /// damaged (stretches skipped).
    #[staticmethod]
    #[pyo3(signature = (model, events, min_clients = None))]
    fn compact(
        py: Python<'_>,
        model: std::path::PathBuf,
        events: std::path::PathBuf,
        min_clients: Option<u32>,
    ) -> PyResult<(Self, std::collections::BTreeMap<&'static str, u64>)> {
        if let Some(m) = min_clients {
            check_min_clients(m)?;
        }
        let (completer, folded, replay, below) = py
            .detach(|| -> xrcomplete_core::Result<_> {
                let completer = Completer::load(&model)?;
                // Not given: the floor the model was trained to be served with.
                let min_clients = match min_clients {
                    Some(m) => m,
                    None => completer.options().live_params()?.min_clients,
                };
                let replay = wal::read_log(&events)?;
                let past = live::past_the_floor(&replay.searches, min_clients);
                let kept: Vec<Search> = replay
                    .searches
                    .iter()
                    .zip(&past)
                    .filter(|(_, &p)| p)
                    .map(|(s, _)| s.clone())
                    .collect();
                let below = replay.searches.len() - kept.len();
                let (completer, folded) = completer.fold(&kept)?;
                Ok((completer, folded, replay, below))
            })
            .map_err(to_py_err)?;
        let report = [
            ("searches", replay.searches.len() as u64),
            ("folded", folded.folded as u64),
            ("unknown", folded.unknown as u64),
            ("below_floor", below as u64),
            (
                "damaged",
                replay.skipped + u64::from(replay.truncated_bytes > 0),
            ),
        ]
        .into_iter()
        .collect();
        let model = CompleterModel {
            inner: Arc::new(completer),
            live: default_live(),
        };
        Ok((model, report))
    }

    /// The decayed live count of `query` (after `prev`, when given), normalised first.
    #[pyo3(signature = (query, prev = ""))]
    fn live_count(&self, query: &str, prev: &str) -> f64 {
        let live = self.live();
        let query = qac::normalize_query(query);
        if prev.is_empty() {
            live.count(&query)
        } else {
            live.transition(&qac::normalize_query(prev), &query)
        }
    }

    /// Forgets the live counts and sets their options: a count halves every `half_life`
    /// seconds (inf: never), at most `cap` distinct queries are held.
    #[pyo3(signature = (half_life = 86_400.0, cap = 100_000, min_clients = 3))]
    fn reset_live(&self, half_life: f64, cap: usize, min_clients: u32) -> PyResult<()> {
        let fresh = LiveCounts::new(LiveParams {
            half_life,
            cap,
            min_clients,
        })
        .map_err(to_py_err)?;
        *self
            .live
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(fresh);
        Ok(())
    }

    /// What the live counts hold: queries, prevs, events, evicted, memory_bytes, clock,
    /// half_life, cap.
    fn live_stats(&self) -> std::collections::BTreeMap<&'static str, f64> {
        let live = self.live();
        let s = live.stats();
        let p = live.params();
        [
            ("queries", s.queries as f64),
            ("prevs", s.prevs as f64),
            ("events", s.events as f64),
            ("evicted", s.evicted as f64),
            ("memory_bytes", s.memory_bytes as f64),
            ("waiting", s.waiting as f64),
            ("capped", s.capped as f64),
            ("clock", s.clock),
            ("half_life", p.half_life),
            ("cap", p.cap as f64),
            ("min_clients", f64::from(p.min_clients)),
        ]
        .into_iter()
        .collect()
    }

    /// The options it was trained with (a file saved before options were: its ranking
    /// options, privacy floor and blocklist, the rest at their defaults).
    fn options(&self) -> Options {
        Options {
            inner: self.inner.options().clone(),
        }
    }

    /// The fitted vectorizers of the previous query and of the prefix.
    fn vectorizers(&self) -> (TfidfModel, TfidfModel) {
        let blocks = self.inner.features().blocks();
        // A completer has two blocks (checked when it is built or read).
        let block = |i: usize| TfidfModel {
            inner: Arc::clone(&blocks[i]),
        };
        (block(0), block(1))
    }

    /// Blocks `terms` (words or phrases, matched as whole words after NFKC and lower-casing)
    /// from every later answer; returns how many were new.
    fn block(&self, py: Python<'_>, terms: &Bound<'_, PyAny>) -> PyResult<usize> {
        let terms = extract_texts(terms, "terms")?;
        py.detach(|| self.inner.block(&terms)).map_err(to_py_err)
    }

    /// Unblocks `terms`; returns how many were blocked.
    fn unblock(&self, py: Python<'_>, terms: &Bound<'_, PyAny>) -> PyResult<usize> {
        let terms = extract_texts(terms, "terms")?;
        py.detach(|| self.inner.unblock(&terms)).map_err(to_py_err)
    }

    /// The blocked terms (normalised), sorted.
    fn blocked(&self) -> Vec<String> {
        self.inner.blocklist().terms().map(str::to_owned).collect()
    }

    /// True when the ranking stage was learned from the log (False: the fixed rule of a log too
    /// small to learn from).
    #[getter]
    fn ranker_learned(&self) -> bool {
        self.inner.ranker().1
    }

    /// Which ranking stage ranks: "trees", "additive" (learned), or "fixed" (the rule of a log
    /// too small to learn from). A log of fewer than 2,000 usable held-out lists learns the
    /// additive ranker even where trees were asked for.
    #[getter]
    fn ranker_kind(&self) -> &'static str {
        match self.inner.ranker() {
            (Ranker::Trees(_), _) => "trees",
            (Ranker::Additive(_), true) => "additive",
            (Ranker::Additive(_), false) => "fixed",
        }
    }

    /// The names of the ranking features, in order.
    #[staticmethod]
    fn ranking_features() -> Vec<&'static str> {
        qac::FEATURES.to_vec()
    }

    /// Feature groups for ablations: {group: [feature names]}.
    #[staticmethod]
    fn ranking_feature_groups() -> std::collections::BTreeMap<&'static str, Vec<&'static str>> {
        qac::feature_groups().into_iter().collect()
    }

    /// Number of queries that can be suggested whole (the model's labels).
    #[getter]
    fn n_queries(&self) -> usize {
        self.inner.queries().len()
    }

    /// Number of distinct words of the language model.
    #[getter]
    fn n_words(&self) -> usize {
        self.inner.lm().n_words()
    }

    /// Nodes per level of the label tree.
    fn level_sizes(&self) -> Vec<usize> {
        let tree = self.inner.model().tree();
        (0..tree.depth()).map(|l| tree.n_nodes(l)).collect()
    }

    /// Bytes of memory the completer holds (approximately).
    #[getter]
    fn nbytes(&self) -> usize {
        self.inner.memory_bytes()
    }
}

/// A search of an event log for Python: (query, previous query, count, time).
type LoggedSearch = (String, String, f64, f64);

/// The searches of an event log (`xrcomplete serve --events`) of queries past the floor
/// (searched by `min_clients` distinct clients, or trusted): ([(query, prev, count, time)],
/// damaged stretches skipped, searches left out below the floor). ModelFormatError for a file
/// that is not an event log.
#[pyfunction]
#[pyo3(signature = (path, min_clients = 3))]
pub(crate) fn read_event_log(
    py: Python<'_>,
    path: std::path::PathBuf,
    min_clients: u32,
) -> PyResult<(Vec<LoggedSearch>, u64, usize)> {
    check_min_clients(min_clients)?;
    let replay = py.detach(|| wal::read_log(&path)).map_err(to_py_err)?;
    let damaged = replay.skipped + u64::from(replay.truncated_bytes > 0);
    let past = live::past_the_floor(&replay.searches, min_clients);
    let below = past.iter().filter(|&&p| !p).count();
    let searches = replay
        .searches
        .into_iter()
        .zip(past)
        .filter(|(_, p)| *p)
        .map(|(s, _)| (s.query, s.prev, s.count, s.time))
        .collect();
    Ok((searches, damaged, below))
}

/// How the completer normalises a query (lower-case, surrounding whitespace removed).
#[pyfunction]
pub(crate) fn normalize_query(query: &str) -> String {
    qac::normalize_query(query)
}

/// How the completer normalises a typed prefix (lower-case, leading whitespace removed).
#[pyfunction]
pub(crate) fn normalize_prefix(prefix: &str) -> String {
    qac::normalize_prefix(prefix)
}

thread_local! {
    /// Scratch of `complete`, per thread: no allocation per call but the results.
    static SCRATCH: std::cell::RefCell<CompleteScratch> = std::cell::RefCell::new(CompleteScratch::default());
}

persist::persistable!(CompleterModel, live: default_live());
