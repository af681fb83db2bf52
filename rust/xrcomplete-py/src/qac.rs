//! The session-aware completer: training on a log, `complete(prev, prefix)`.

use std::sync::Arc;

use numpy::PyReadonlyArray1;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use xrcomplete_core::qac::{self, CompleteScratch, Completer, Completion, FitParams, RankParams};
use xrcomplete_core::xr::Progress;

use crate::errors::{check_k, count, to_py_err};
use crate::persist;
use crate::text::{extract_texts, TfidfOptions};
use crate::xr::{train_params, tree_spec, ProgressCounter};

/// A trained completer. Immutable; `complete` releases the GIL and may run from many threads.
#[pyclass(module = "xrcomplete._core", frozen)]
pub(crate) struct CompleterModel {
    inner: Arc<Completer>,
}

impl CompleterModel {
    /// The model's default ranking with the options given (`Some`) replaced, checked.
    #[allow(clippy::too_many_arguments)]
    fn params(
        &self,
        beam_size: Option<usize>,
        candidates: Option<usize>,
        model_floor: Option<f32>,
        popularity_weight: Option<f32>,
        transition_weight: Option<f32>,
        generate: Option<bool>,
    ) -> PyResult<RankParams> {
        let base = self.inner.rank_params();
        let params = RankParams {
            beam_size: beam_size.unwrap_or(base.beam_size),
            candidates: candidates.unwrap_or(base.candidates),
            model_floor: model_floor.unwrap_or(base.model_floor),
            popularity_weight: popularity_weight.unwrap_or(base.popularity_weight),
            transition_weight: transition_weight.unwrap_or(base.transition_weight),
            generate: generate.unwrap_or(base.generate),
        };
        params.check().map_err(to_py_err)?;
        Ok(params)
    }
}

#[pymethods]
impl CompleterModel {
    /// Trains on a log: `queries` (distinct, normalised) searched `counts` times, and the
    /// (previous, next) pairs as indices into `queries` (`prev_ids` -1 for a session's first
    /// query).
    #[staticmethod]
    #[pyo3(signature = (
        queries, counts, prev_ids, next_ids, prev_features, prefix_features, *,
        tree = "hybrid", trie_depth = 2, branching = 16, max_leaf_size = 100,
        kmeans_max_iter = 20, prefixes_per_pair = 3, min_count = 1.0, seed = 0, cp = 1.0,
        cn = 1.0, bias = 1.0, threshold = 0.1, max_iter = 100, eps = 0.1,
        loss = "squared_hinge", beam_size = 10, candidates = 10, model_floor = 1e-4,
        popularity_weight = 0.5, transition_weight = 2.0, generate = true, progress = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn fit(
        py: Python<'_>,
        queries: &Bound<'_, PyAny>,
        counts: PyReadonlyArray1<'_, f64>,
        prev_ids: PyReadonlyArray1<'_, i64>,
        next_ids: PyReadonlyArray1<'_, i64>,
        prev_features: &TfidfOptions,
        prefix_features: &TfidfOptions,
        tree: &str,
        trie_depth: usize,
        branching: usize,
        max_leaf_size: usize,
        kmeans_max_iter: usize,
        prefixes_per_pair: usize,
        min_count: f64,
        seed: u64,
        cp: f64,
        cn: f64,
        bias: f64,
        threshold: f64,
        max_iter: usize,
        eps: f64,
        loss: &str,
        beam_size: usize,
        candidates: usize,
        model_floor: f32,
        popularity_weight: f32,
        transition_weight: f32,
        generate: bool,
        progress: Option<PyRef<'_, ProgressCounter>>,
    ) -> PyResult<Self> {
        let rank = RankParams {
            beam_size,
            candidates,
            model_floor,
            popularity_weight,
            transition_weight,
            generate,
        };
        rank.check().map_err(to_py_err)?;
        let params = FitParams {
            prev: prev_features.config.clone(),
            prefix: prefix_features.config.clone(),
            tree: tree_spec(
                tree,
                trie_depth,
                branching,
                max_leaf_size,
                kmeans_max_iter,
                seed,
            )?,
            train: train_params(cp, cn, bias, threshold, max_iter, eps, seed, loss)?,
            prefixes_per_pair,
            min_count,
            seed,
            rank,
        };
        let queries = extract_texts(queries, "queries")?;
        let (prev_ids, next_ids) = (prev_ids.as_slice()?, next_ids.as_slice()?);
        if prev_ids.len() != next_ids.len() {
            return Err(PyValueError::new_err(format!(
                "{} previous ids but {} next ids",
                prev_ids.len(),
                next_ids.len()
            )));
        }
        let id = |v: i64| {
            u32::try_from(v)
                .map_err(|_| PyValueError::new_err(format!("query id {v} is out of range")))
        };
        let pairs = prev_ids
            .iter()
            .zip(next_ids)
            .map(|(&p, &n)| Ok((if p == -1 { None } else { Some(id(p)?) }, id(n)?)))
            .collect::<PyResult<Vec<_>>>()?;
        let counts = counts.as_slice()?;
        let progress =
            progress.map_or_else(|| Arc::new(Progress::default()), |p| Arc::clone(&p.inner));
        let model = py
            .detach(|| Completer::fit(&queries, counts, &pairs, &params, &progress))
            .map_err(to_py_err)?;
        Ok(CompleterModel {
            inner: Arc::new(model),
        })
    }

    /// The best `k` completions of `prefix` after `prev`: [(query, score)], best first.
    #[pyo3(signature = (
        prev, prefix, k = 10, *, beam_size = None, candidates = None, model_floor = None,
        popularity_weight = None, transition_weight = None, generate = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn complete(
        &self,
        py: Python<'_>,
        prev: &str,
        prefix: &str,
        #[pyo3(from_py_with = count)] k: i64,
        beam_size: Option<usize>,
        candidates: Option<usize>,
        model_floor: Option<f32>,
        popularity_weight: Option<f32>,
        transition_weight: Option<f32>,
        generate: Option<bool>,
    ) -> PyResult<Vec<Completion>> {
        let k = check_k(k)?;
        let params = self.params(
            beam_size,
            candidates,
            model_floor,
            popularity_weight,
            transition_weight,
            generate,
        )?;
        py.detach(|| {
            SCRATCH
                .with_borrow_mut(|scratch| self.inner.complete(prev, prefix, k, &params, scratch))
        })
        .map_err(to_py_err)
    }

    /// `complete` for every (prevs[i], prefixes[i]), in parallel.
    #[pyo3(signature = (
        prevs, prefixes, k = 10, *, beam_size = None, candidates = None, model_floor = None,
        popularity_weight = None, transition_weight = None, generate = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn complete_batch(
        &self,
        py: Python<'_>,
        prevs: &Bound<'_, PyAny>,
        prefixes: &Bound<'_, PyAny>,
        #[pyo3(from_py_with = count)] k: i64,
        beam_size: Option<usize>,
        candidates: Option<usize>,
        model_floor: Option<f32>,
        popularity_weight: Option<f32>,
        transition_weight: Option<f32>,
        generate: Option<bool>,
    ) -> PyResult<Vec<Vec<Completion>>> {
        let k = check_k(k)?;
        let params = self.params(
            beam_size,
            candidates,
            model_floor,
            popularity_weight,
            transition_weight,
            generate,
        )?;
        let prevs = extract_texts(prevs, "prevs")?;
        let prefixes = extract_texts(prefixes, "prefixes")?;
        py.detach(|| self.inner.complete_batch(&prevs, &prefixes, k, &params))
            .map_err(to_py_err)
    }

    /// The default ranking options, as a dict.
    fn rank_params(&self) -> std::collections::BTreeMap<&'static str, f64> {
        let r = self.inner.rank_params();
        [
            ("beam_size", r.beam_size as f64),
            ("candidates", r.candidates as f64),
            ("model_floor", f64::from(r.model_floor)),
            ("popularity_weight", f64::from(r.popularity_weight)),
            ("transition_weight", f64::from(r.transition_weight)),
            ("generate", f64::from(u8::from(r.generate))),
        ]
        .into_iter()
        .collect()
    }

    /// Number of queries that can be suggested whole (the model's labels).
    #[getter]
    fn n_queries(&self) -> usize {
        self.inner.queries().len()
    }

    /// Number of distinct words of the word model.
    #[getter]
    fn n_words(&self) -> usize {
        self.inner.words().n_words()
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

persist::persistable!(CompleterModel);
