//! Product retrieval: training on (query, relevant product) pairs and a catalogue; `retrieve`.

use std::sync::Arc;

use pyo3::prelude::*;

use pyo3::exceptions::PyTypeError;
use pyo3::IntoPyObjectExt;
use xrcomplete_core::index::kmeans::KMeansParams;
use xrcomplete_core::rank::RankerTrainParams;
use xrcomplete_core::retrieval::{
    feature_groups, Bm25Params, FitParams, ProductId, ProductIds, ProductRetriever, RetrieveParams,
    RetrieveScratch, FEATURES,
};
use xrcomplete_core::xr::Progress;

use crate::errors::{check_k, count, to_py_err, type_name};
use crate::persist;
use crate::text::{extract_texts, TfidfOptions};
use crate::xr::{train_params, ProgressCounter};

/// A trained product retriever. Immutable; `retrieve` releases the GIL and may run from many
/// threads.
#[pyclass(module = "xrcomplete._core", frozen)]
pub(crate) struct ProductRetrieverModel {
    inner: Arc<ProductRetriever>,
}

impl ProductRetrieverModel {
    fn params(
        &self,
        beam_size: Option<usize>,
        candidates: Option<usize>,
        posting_limit: Option<usize>,
    ) -> PyResult<RetrieveParams> {
        let base = self.inner.rank_params();
        let params = RetrieveParams {
            beam_size: beam_size.unwrap_or(base.beam_size),
            candidates: candidates.unwrap_or(base.candidates),
            posting_limit: posting_limit.unwrap_or(base.posting_limit),
        };
        params.check().map_err(to_py_err)?;
        Ok(params)
    }

    fn named(&self, py: Python<'_>, found: Vec<(u32, f32)>) -> PyResult<Vec<Hit>> {
        found
            .into_iter()
            .map(|(p, s)| Ok((id_to_py(py, self.inner.product(p))?, s)))
            .collect()
    }
}

/// (product id, score), the id as Python gave it.
type Hit = (Py<PyAny>, f32);

/// A product id as Python gave it: `str` or `int`.
fn id_to_py(py: Python<'_>, id: ProductId<'_>) -> PyResult<Py<PyAny>> {
    match id {
        ProductId::Text(id) => id.into_py_any(py),
        ProductId::Integer(id) => id.into_py_any(py),
    }
}

/// A list of product ids, all `str` or all `int` (64-bit).
fn extract_ids(ids: &Bound<'_, PyAny>) -> PyResult<ProductIds> {
    if let Ok(text) = ids.extract::<Vec<String>>() {
        return Ok(ProductIds::Text(text));
    }
    ids.extract::<Vec<i64>>()
        .map(ProductIds::Integer)
        .map_err(|_| {
            PyTypeError::new_err(format!(
                "products must be a list of str or a list of 64-bit int ids, got {}",
                type_name(ids)
            ))
        })
}

#[pymethods]
impl ProductRetrieverModel {
    /// Trains: `judged[i]` lists the (product index into `products`, gain) judgements of
    /// `queries[i]` (gain 0: judged not relevant); `titles[j]` is the title of `products[j]`.
    #[staticmethod]
    #[pyo3(signature = (
        queries, judged, products, titles, words, chars, *, titles_as_queries = true,
        branching = 16, max_leaf_size = 100, kmeans_max_iter = 20, seed = 0, cp = 1.0, cn = 1.0,
        bias = 1.0, threshold = 0.1, max_iter = 100, eps = 0.1, loss = "squared_hinge",
        beam_size = 10, candidates = 100, posting_limit = 2_000, k1 = 0.6, b = 0.75,
        relevant_gain = 1.0, rank_folds = 2, ranker_bins = 8, features_off = Vec::new(), progress = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn fit(
        py: Python<'_>,
        queries: &Bound<'_, PyAny>,
        judged: Vec<Vec<(u32, f32)>>,
        products: &Bound<'_, PyAny>,
        titles: &Bound<'_, PyAny>,
        words: &TfidfOptions,
        chars: &TfidfOptions,
        titles_as_queries: bool,
        branching: usize,
        max_leaf_size: usize,
        kmeans_max_iter: usize,
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
        posting_limit: usize,
        k1: f32,
        b: f32,
        relevant_gain: f32,
        rank_folds: usize,
        ranker_bins: usize,
        features_off: Vec<String>,
        progress: Option<PyRef<'_, ProgressCounter>>,
    ) -> PyResult<Self> {
        let params = FitParams {
            words: words.config.clone(),
            chars: chars.config.clone(),
            kmeans: KMeansParams {
                branching,
                max_leaf_size,
                max_iter: kmeans_max_iter,
                seed,
            },
            train: train_params(cp, cn, bias, threshold, max_iter, eps, seed, loss)?,
            titles_as_queries,
            rank: RetrieveParams {
                beam_size,
                candidates,
                posting_limit,
            },
            bm25: Bm25Params { k1, b },
            relevant_gain,
            rank_folds,
            ranker: RankerTrainParams {
                bins: ranker_bins,
                ..RankerTrainParams::default()
            },
            features_off,
        };
        let queries = extract_texts(queries, "queries")?;
        let titles = extract_texts(titles, "titles")?;
        let products = extract_ids(products)?;
        let progress =
            progress.map_or_else(|| Arc::new(Progress::default()), |p| Arc::clone(&p.inner));
        let model = py
            .detach(|| {
                ProductRetriever::fit(&queries, &judged, products, &titles, &params, &progress)
            })
            .map_err(to_py_err)?;
        Ok(ProductRetrieverModel {
            inner: Arc::new(model),
        })
    }

    /// The best `k` products for `query`: [(product id, score)], best first.
    #[pyo3(signature = (
        query, k = 10, *, beam_size = None, candidates = None,
        posting_limit = None,
    ))]
    fn retrieve(
        &self,
        py: Python<'_>,
        query: &str,
        #[pyo3(from_py_with = count)] k: i64,
        beam_size: Option<usize>,
        candidates: Option<usize>,
        posting_limit: Option<usize>,
    ) -> PyResult<Vec<Hit>> {
        let k = check_k(k)?;
        let params = self.params(beam_size, candidates, posting_limit)?;
        let found = py
            .detach(|| {
                SCRATCH.with_borrow_mut(|scratch| self.inner.retrieve(query, k, &params, scratch))
            })
            .map_err(to_py_err)?;
        self.named(py, found)
    }

    /// `retrieve` for every query, in parallel.
    #[pyo3(signature = (
        queries, k = 10, *, beam_size = None, candidates = None,
        posting_limit = None,
    ))]
    fn retrieve_batch(
        &self,
        py: Python<'_>,
        queries: &Bound<'_, PyAny>,
        #[pyo3(from_py_with = count)] k: i64,
        beam_size: Option<usize>,
        candidates: Option<usize>,
        posting_limit: Option<usize>,
    ) -> PyResult<Vec<Vec<Hit>>> {
        let k = check_k(k)?;
        let params = self.params(beam_size, candidates, posting_limit)?;
        let queries = extract_texts(queries, "queries")?;
        let found = py
            .detach(|| self.inner.retrieve_batch(&queries, k, &params))
            .map_err(to_py_err)?;
        found.into_iter().map(|f| self.named(py, f)).collect()
    }

    /// Product ids, by label id (`str`, or `int` for a catalogue keyed by integers).
    fn products(&self, py: Python<'_>) -> PyResult<Vec<Py<PyAny>>> {
        self.inner.products().map(|id| id_to_py(py, id)).collect()
    }

    /// Product titles as the catalogue gave them, by label id (aligned with `products()`; ""
    /// for a product outside the catalogue, or in a file saved before titles were kept).
    fn titles(&self) -> Vec<&str> {
        (0..self.inner.products().len())
            .map(|i| self.inner.title(i as u32))
            .collect()
    }

    /// The default candidate options, as a dict.
    fn rank_params(&self) -> std::collections::BTreeMap<&'static str, usize> {
        let r = self.inner.rank_params();
        [
            ("beam_size", r.beam_size),
            ("candidates", r.candidates),
            ("posting_limit", r.posting_limit),
        ]
        .into_iter()
        .collect()
    }

    /// The candidates of `query` with their ranking features (in the order of
    /// `ranking_features()`): [(product id, [values])], by product index.
    #[pyo3(signature = (query, *, beam_size = None, candidates = None, posting_limit = None))]
    fn candidates(
        &self,
        py: Python<'_>,
        query: &str,
        beam_size: Option<usize>,
        candidates: Option<usize>,
        posting_limit: Option<usize>,
    ) -> PyResult<Vec<(Py<PyAny>, Vec<f32>)>> {
        let params = self.params(beam_size, candidates, posting_limit)?;
        let found = py
            .detach(|| {
                SCRATCH.with_borrow_mut(|scratch| self.inner.candidates(query, &params, scratch))
            })
            .map_err(to_py_err)?;
        found
            .into_iter()
            .map(|(p, x)| Ok((id_to_py(py, self.inner.product(p))?, x.to_vec())))
            .collect()
    }

    /// True when the ranking stage was learned from the judgements (False: the fixed rule of
    /// too few judged queries).
    #[getter]
    fn ranker_learned(&self) -> bool {
        self.inner.ranker_learned()
    }

    /// The names of the ranking features, in order.
    #[staticmethod]
    fn ranking_features() -> Vec<&'static str> {
        FEATURES.to_vec()
    }

    /// Feature groups for ablations: {group: [feature names]}.
    #[staticmethod]
    fn ranking_feature_groups() -> std::collections::BTreeMap<&'static str, Vec<&'static str>> {
        feature_groups().into_iter().collect()
    }

    /// Stored weights of the model (after pruning).
    #[getter]
    fn nnz(&self) -> usize {
        self.inner.model().nnz()
    }

    /// Bytes of memory the retriever holds (approximately).
    #[getter]
    fn nbytes(&self) -> usize {
        self.inner.memory_bytes()
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<RetrieveScratch> = std::cell::RefCell::new(RetrieveScratch::default());
}

persist::persistable!(ProductRetrieverModel);
