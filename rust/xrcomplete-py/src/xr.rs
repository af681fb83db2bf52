//! XR-Linear: training over a label tree, beam-search prediction.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use numpy::{PyArray1, PyReadonlyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use xrcomplete_core::index::{self, kmeans, TreeSpec};
use xrcomplete_core::xr::{
    self, Loss, PostProcessor, PredictParams, PredictScratch, Progress, TrainParams, XrLinear,
};
use xrcomplete_core::CsrMatrix;

use crate::errors::{count, to_py_err};
use crate::persist;
use crate::text::{csr_to_py, CsrParts, RowParts};

/// Reads a CSR matrix given as scipy's arrays (int64 indptr, int32 indices, float32 data).
fn csr_from_py(
    indptr: PyReadonlyArray1<'_, i64>,
    indices: PyReadonlyArray1<'_, i32>,
    data: PyReadonlyArray1<'_, f32>,
    n_cols: usize,
    what: &str,
) -> PyResult<CsrMatrix> {
    let bad = |why: &str| PyValueError::new_err(format!("{what}: {why}"));
    let indptr = indptr
        .as_slice()?
        .iter()
        .map(|&p| usize::try_from(p).map_err(|_| bad("negative indptr")))
        .collect::<PyResult<Vec<usize>>>()?;
    let indices = indices
        .as_slice()?
        .iter()
        .map(|&c| u32::try_from(c).map_err(|_| bad("negative column index")))
        .collect::<PyResult<Vec<u32>>>()?;
    CsrMatrix::from_parts(n_cols, indptr, indices, data.as_slice()?.to_vec(), what)
        .map_err(to_py_err)
}

fn parse_post(name: &str) -> PyResult<PostProcessor> {
    match name {
        "l3-hinge" => Ok(PostProcessor::L3Hinge),
        "sigmoid" => Ok(PostProcessor::Sigmoid),
        _ => Err(PyValueError::new_err(format!(
            "post_processor must be 'l3-hinge' or 'sigmoid', got {name:?}"
        ))),
    }
}

fn predict_params(beam_size: i64, topk: i64, post_processor: &str) -> PyResult<PredictParams> {
    let count = |v: i64, name: &str, min: i64| {
        usize::try_from(v)
            .ok()
            .filter(|&u| u as i64 >= min)
            .ok_or_else(|| PyValueError::new_err(format!("{name} must be >= {min}, got {v}")))
    };
    Ok(PredictParams {
        beam_size: count(beam_size, "beam_size", 1)?,
        topk: count(topk, "topk", 0)?,
        post_processor: parse_post(post_processor)?,
    })
}

/// The label tree named by `tree` ("kmeans", "trie" or "hybrid") with its options.
pub(crate) fn tree_spec(
    tree: &str,
    trie_depth: usize,
    branching: usize,
    max_leaf_size: usize,
    kmeans_max_iter: usize,
    seed: u64,
) -> PyResult<TreeSpec> {
    let kmeans = kmeans::KMeansParams {
        branching,
        max_leaf_size,
        max_iter: kmeans_max_iter,
        seed,
    };
    match tree {
        "trie" => Ok(TreeSpec::Trie {
            depth: trie_depth,
            max_group: max_leaf_size,
        }),
        "hybrid" => Ok(TreeSpec::Hybrid {
            depth: trie_depth,
            kmeans,
        }),
        "kmeans" => Ok(TreeSpec::KMeans(kmeans)),
        _ => Err(PyValueError::new_err(format!(
            "tree must be 'kmeans', 'trie' or 'hybrid', got {tree:?}"
        ))),
    }
}

/// Training options of the node models, checked.
#[allow(clippy::too_many_arguments)]
pub(crate) fn train_params(
    cp: f64,
    cn: f64,
    bias: f64,
    threshold: f64,
    max_iter: usize,
    eps: f64,
    seed: u64,
    loss: &str,
) -> PyResult<TrainParams> {
    let params = TrainParams {
        cp,
        cn,
        bias,
        threshold,
        max_iter,
        eps,
        seed,
        loss: match loss {
            "squared_hinge" => Loss::SquaredHinge,
            "logistic" => Loss::Logistic,
            _ => {
                return Err(PyValueError::new_err(format!(
                    "loss must be 'squared_hinge' or 'logistic', got {loss:?}"
                )))
            }
        },
    };
    params.check().map_err(to_py_err)?;
    Ok(params)
}

/// Training progress (nodes done / in all), readable while `fit` runs in another thread.
#[pyclass(module = "xrcomplete._core", frozen)]
pub(crate) struct ProgressCounter {
    pub(crate) inner: Arc<Progress>,
}

#[pymethods]
impl ProgressCounter {
    #[new]
    fn new() -> Self {
        ProgressCounter {
            inner: Arc::new(Progress::default()),
        }
    }

    /// Nodes trained so far.
    #[getter]
    fn done(&self) -> u64 {
        self.inner.done.load(Ordering::Relaxed)
    }

    /// Nodes to train in all (0 until training starts).
    #[getter]
    fn total(&self) -> u64 {
        self.inner.total.load(Ordering::Relaxed)
    }

    /// The step the fit is in: "preparing", "vectorising", "building the label tree",
    /// "training" or "finishing".
    #[getter]
    fn stage(&self) -> &'static str {
        self.inner.stage().name()
    }
}

/// A trained XR-Linear model. Immutable; predictions release the GIL and may run from many
/// threads at once.
#[pyclass(module = "xrcomplete._core", frozen)]
pub(crate) struct XRLinearModel {
    inner: Arc<XrLinear>,
}

#[pymethods]
impl XRLinearModel {
    /// Trains on X (rows x features) and Y (rows x labels), both as scipy CSR arrays, over a
    /// label tree: "kmeans" (hierarchical k-means on PIFA embeddings), "trie" (the trie of the
    /// label strings `labels`, `trie_depth` levels at most) or "hybrid" (`trie_depth` trie
    /// levels, k-means inside large trie nodes).
    #[staticmethod]
    #[pyo3(signature = (
        x_indptr, x_indices, x_data, x_cols, y_indptr, y_indices, y_data, y_cols, *,
        tree = "kmeans", labels = None, trie_depth = 2, branching = 16, max_leaf_size = 100,
        kmeans_max_iter = 20, seed = 0, cp = 1.0, cn = 1.0, bias = 1.0, threshold = 0.1,
        max_iter = 100, eps = 0.1, loss = "squared_hinge", progress = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn fit(
        py: Python<'_>,
        x_indptr: PyReadonlyArray1<'_, i64>,
        x_indices: PyReadonlyArray1<'_, i32>,
        x_data: PyReadonlyArray1<'_, f32>,
        x_cols: usize,
        y_indptr: PyReadonlyArray1<'_, i64>,
        y_indices: PyReadonlyArray1<'_, i32>,
        y_data: PyReadonlyArray1<'_, f32>,
        y_cols: usize,
        tree: &str,
        labels: Option<Vec<String>>,
        trie_depth: usize,
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
        progress: Option<PyRef<'_, ProgressCounter>>,
    ) -> PyResult<Self> {
        let spec = tree_spec(
            tree,
            trie_depth,
            branching,
            max_leaf_size,
            kmeans_max_iter,
            seed,
        )?;
        let labels = match (tree, labels) {
            ("kmeans", _) => Vec::new(),
            (_, Some(labels)) if labels.len() == y_cols => labels,
            (_, Some(labels)) => {
                return Err(PyValueError::new_err(format!(
                    "{} label strings for {y_cols} label columns",
                    labels.len()
                )))
            }
            (_, None) => {
                return Err(PyValueError::new_err(format!(
                    "tree={tree:?} needs the label strings (labels=...)"
                )))
            }
        };
        let x = csr_from_py(x_indptr, x_indices, x_data, x_cols, "X")?;
        let y = csr_from_py(y_indptr, y_indices, y_data, y_cols, "Y")?;
        let params = train_params(cp, cn, bias, threshold, max_iter, eps, seed, loss)?;
        let progress =
            progress.map_or_else(|| Arc::new(Progress::default()), |p| Arc::clone(&p.inner));
        let model = py
            .detach(|| {
                let tree = index::build(&spec, &labels, &x, &y)?;
                xr::train(&x, &y, tree, &params, &progress)
            })
            .map_err(to_py_err)?;
        Ok(XRLinearModel {
            inner: Arc::new(model),
        })
    }

    /// Best `topk` labels of every row of X, in parallel: (data, indices, indptr, shape).
    #[pyo3(signature = (x_indptr, x_indices, x_data, x_cols, beam_size = 10, topk = 10, post_processor = "l3-hinge"))]
    #[allow(clippy::too_many_arguments)]
    fn predict<'py>(
        &self,
        py: Python<'py>,
        x_indptr: PyReadonlyArray1<'_, i64>,
        x_indices: PyReadonlyArray1<'_, i32>,
        x_data: PyReadonlyArray1<'_, f32>,
        x_cols: usize,
        #[pyo3(from_py_with = count)] beam_size: i64,
        #[pyo3(from_py_with = count)] topk: i64,
        post_processor: &str,
    ) -> PyResult<CsrParts<'py>> {
        let params = predict_params(beam_size, topk, post_processor)?;
        let x = csr_from_py(x_indptr, x_indices, x_data, x_cols, "X")?;
        let m = py
            .detach(|| self.inner.predict(&x, &params))
            .map_err(to_py_err)?;
        Ok(csr_to_py(py, m))
    }

    /// Best labels of one row given as (sorted feature ids, values): (labels, scores), best
    /// first. `label_range=(lo, hi)` keeps only labels with ids in lo..hi.
    #[pyo3(signature = (indices, data, beam_size = 10, topk = 10, post_processor = "l3-hinge", label_range = None))]
    #[allow(clippy::too_many_arguments)]
    fn predict_one<'py>(
        &self,
        py: Python<'py>,
        indices: PyReadonlyArray1<'_, i32>,
        data: PyReadonlyArray1<'_, f32>,
        #[pyo3(from_py_with = count)] beam_size: i64,
        #[pyo3(from_py_with = count)] topk: i64,
        post_processor: &str,
        label_range: Option<(u32, u32)>,
    ) -> PyResult<RowParts<'py>> {
        let params = predict_params(beam_size, topk, post_processor)?;
        let indices = indices.as_slice()?;
        let data = data.as_slice()?;
        let features: Vec<u32> = indices
            .iter()
            .map(|&c| {
                u32::try_from(c)
                    .map_err(|_| PyValueError::new_err(format!("negative feature id {c}")))
            })
            .collect::<PyResult<_>>()?;
        if features.windows(2).any(|w| w[0] >= w[1]) {
            return Err(PyValueError::new_err(
                "feature ids must be sorted and distinct",
            ));
        }
        let found = py
            .detach(|| {
                SCRATCH.with_borrow_mut(|scratch| {
                    self.inner
                        .predict_one(&features, data, &params, label_range, scratch)
                })
            })
            .map_err(to_py_err)?;
        let (labels, scores): (Vec<u32>, Vec<f32>) = found.into_iter().unzip();
        let labels: Vec<i32> = labels.into_iter().map(|l| l as i32).collect();
        Ok((
            PyArray1::from_vec(py, labels),
            PyArray1::from_vec(py, scores),
        ))
    }

    /// Number of labels.
    #[getter]
    fn n_labels(&self) -> usize {
        self.inner.n_labels()
    }

    /// Number of input features.
    #[getter]
    fn n_features(&self) -> usize {
        self.inner.n_features()
    }

    /// Nodes per level of the label tree (the last level: the labels).
    fn level_sizes(&self) -> Vec<usize> {
        let tree = self.inner.tree();
        (0..tree.depth()).map(|l| tree.n_nodes(l)).collect()
    }

    /// Stored weights (after pruning).
    #[getter]
    fn nnz(&self) -> usize {
        self.inner.nnz()
    }

    /// Bytes of memory the model holds.
    #[getter]
    fn nbytes(&self) -> usize {
        self.inner.memory_bytes()
    }
}

thread_local! {
    /// Scratch of the single-row path, per thread: no allocation per call but the results.
    static SCRATCH: std::cell::RefCell<PredictScratch> = std::cell::RefCell::new(PredictScratch::default());
}

persist::persistable!(XRLinearModel);
