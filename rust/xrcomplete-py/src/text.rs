//! Fitted text vectorizers. Matrices leave as numpy arrays that own the Rust buffers (no copy);
//! `xrcomplete.text` wraps them into `scipy.sparse.csr_matrix`.

use std::sync::Arc;

use numpy::{PyArray1, PyArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyString};

use xrcomplete_core::text::{
    Analyzer, AnalyzerConfig, ConcatScratch, DocFreq, FeatureConcat, Norm, PositionScope,
    PositionWeight, RowScratch, TfidfConfig, TfidfVectorizer,
};
use xrcomplete_core::CsrMatrix;

use crate::persist;

use crate::errors::{to_py_err, type_name};

/// The parts of a CSR matrix for scipy: (data, indices, indptr, shape).
pub(crate) type CsrParts<'py> = (
    Bound<'py, PyArray1<f32>>,
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
    (usize, usize),
);

/// One sparse row for numpy: (indices, data).
pub(crate) type RowParts<'py> = (Bound<'py, PyArray1<i32>>, Bound<'py, PyArray1<f32>>);

/// Hands a CSR matrix to numpy without copying `data` and `indices`: int32 indices while they
/// fit (scipy's default), int64 beyond.
pub(crate) fn csr_to_py(py: Python<'_>, m: CsrMatrix) -> CsrParts<'_> {
    let shape = (m.n_rows(), m.n_cols);
    let small = m.nnz() <= i32::MAX as usize && m.n_cols <= i32::MAX as usize;
    let (indices, indptr) = if small {
        // Same size and alignment: the collect reuses the buffer.
        let indices: Vec<i32> = m.indices.into_iter().map(|c| c as i32).collect();
        let indptr: Vec<i32> = m.indptr.into_iter().map(|p| p as i32).collect();
        (
            PyArray1::from_vec(py, indices).into_any(),
            PyArray1::from_vec(py, indptr).into_any(),
        )
    } else {
        let indices: Vec<i64> = m.indices.into_iter().map(i64::from).collect();
        let indptr: Vec<i64> = m.indptr.into_iter().map(|p| p as i64).collect();
        (
            PyArray1::from_vec(py, indices).into_any(),
            PyArray1::from_vec(py, indptr).into_any(),
        )
    };
    (PyArray1::from_vec(py, m.data), indices, indptr, shape)
}

/// Reads an iterable of str (a list, a tuple, a numpy array of str, a generator).
pub(crate) fn extract_texts(texts: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<String>> {
    if texts.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(format!(
            "{what} must be an iterable of str, not a single str"
        )));
    }
    let mut out = Vec::with_capacity(texts.len().unwrap_or(0));
    for (i, item) in texts.try_iter()?.enumerate() {
        let item = item?;
        let s = item.cast::<PyString>().map_err(|_| {
            PyTypeError::new_err(format!(
                "{what}[{i}] must be a str, got {}",
                type_name(&item)
            ))
        })?;
        out.push(s.to_cow()?.into_owned());
    }
    Ok(out)
}

fn parse_doc_freq(value: &Bound<'_, PyAny>, name: &str) -> PyResult<DocFreq> {
    if value.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err(format!(
            "{name} must be an int or a float, not bool"
        )));
    }
    if value.is_instance_of::<PyInt>() {
        let count: i64 = value.extract()?;
        return usize::try_from(count).map(DocFreq::Count).map_err(|_| {
            PyValueError::new_err(format!("{name} as a count must be >= 0, got {count}"))
        });
    }
    if value.is_instance_of::<PyFloat>() {
        return Ok(DocFreq::Proportion(value.extract()?));
    }
    Err(PyTypeError::new_err(format!(
        "{name} must be an int (a number of documents) or a float (a proportion)"
    )))
}

fn parse_choice<T: Copy>(value: &str, name: &str, choices: &[(&str, T)]) -> PyResult<T> {
    choices
        .iter()
        .find(|(k, _)| *k == value)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<&str> = choices.iter().map(|(k, _)| *k).collect();
            PyValueError::new_err(format!("{name} must be one of {names:?}, got {value:?}"))
        })
}

/// The norms by their Python names (None is `Norm::None`).
const NORMS: [(&str, Norm); 2] = [("l2", Norm::L2), ("l1", Norm::L1)];

fn parse_norm(norm: Option<&str>) -> PyResult<Norm> {
    match norm {
        None => Ok(Norm::None),
        Some(n) => parse_choice(n, "norm", &NORMS),
    }
}

fn norm_name(norm: Norm) -> Option<&'static str> {
    NORMS
        .iter()
        .find(|(_, n)| *n == norm)
        .map(|(name, _)| *name)
}

/// Checked options of a TF-IDF vectorizer, before fitting.
#[pyclass(module = "xrcomplete._core", frozen)]
pub(crate) struct TfidfOptions {
    pub(crate) config: TfidfConfig,
}

#[pymethods]
impl TfidfOptions {
    /// Options as scikit-learn's TfidfVectorizer, plus prefix weighting: "none", "harmonic"
    /// (1/(i+1)) or "exponential" (1 + alpha * decay**i), by position in the "string" or in the
    /// "word". Checked here, so a bad option fails before any fitting.
    #[new]
    #[pyo3(signature = (
        *, analyzer = "char_wb", ngram_range = (1, 4), lowercase = true, nfkc = false,
        prefix_weighting = "none", alpha = 1.0, decay = 0.5, position_scope = "string",
        min_df = None, max_df = None, max_features = None, sublinear_tf = false, use_idf = true,
        smooth_idf = true, norm = Some("l2"),
    ))]
    #[pyo3(
        text_signature = "(*, analyzer='char_wb', ngram_range=(1, 4), lowercase=True, \
        nfkc=False, prefix_weighting='none', alpha=1.0, decay=0.5, position_scope='string', \
        min_df=None, max_df=None, max_features=None, sublinear_tf=False, use_idf=True, \
        smooth_idf=True, norm='l2')"
    )]
    #[allow(clippy::too_many_arguments)]
    fn new(
        analyzer: &str,
        ngram_range: (i64, i64),
        lowercase: bool,
        nfkc: bool,
        prefix_weighting: &str,
        alpha: f64,
        decay: f64,
        position_scope: &str,
        min_df: Option<&Bound<'_, PyAny>>,
        max_df: Option<&Bound<'_, PyAny>>,
        max_features: Option<i64>,
        sublinear_tf: bool,
        use_idf: bool,
        smooth_idf: bool,
        norm: Option<&str>,
    ) -> PyResult<Self> {
        let analyzer = parse_choice(
            analyzer,
            "analyzer",
            &[
                ("char_wb", Analyzer::CharWb),
                ("char", Analyzer::Char),
                ("word", Analyzer::Word),
            ],
        )?;
        let position_weight = parse_choice(
            prefix_weighting,
            "prefix_weighting",
            &[
                ("none", PositionWeight::Uniform),
                ("harmonic", PositionWeight::Harmonic),
                ("exponential", PositionWeight::Exponential { alpha, decay }),
            ],
        )?;
        let position_scope = parse_choice(
            position_scope,
            "position_scope",
            &[
                ("string", PositionScope::String),
                ("word", PositionScope::Word),
            ],
        )?;
        let bad_range = || {
            PyValueError::new_err(format!(
                "ngram_range must be (min_n, max_n) with 1 <= min_n <= max_n, got {ngram_range:?}"
            ))
        };
        let ngram_range = (
            usize::try_from(ngram_range.0).map_err(|_| bad_range())?,
            usize::try_from(ngram_range.1).map_err(|_| bad_range())?,
        );
        let max_features = match max_features {
            None => None,
            Some(m) => Some(usize::try_from(m).map_err(|_| {
                PyValueError::new_err(format!("max_features must be >= 1, got {m}"))
            })?),
        };
        let config = TfidfConfig {
            analyzer: AnalyzerConfig {
                analyzer,
                ngram_range,
                lowercase,
                nfkc,
                position_weight,
                position_scope,
            },
            min_df: min_df.map_or(Ok(DocFreq::Count(1)), |v| parse_doc_freq(v, "min_df"))?,
            max_df: max_df.map_or(Ok(DocFreq::Proportion(1.0)), |v| {
                parse_doc_freq(v, "max_df")
            })?,
            max_features,
            sublinear_tf,
            use_idf,
            smooth_idf,
            norm: parse_norm(norm)?,
        };
        config.check().map_err(to_py_err)?;
        Ok(TfidfOptions { config })
    }
}

/// A fitted TF-IDF vectorizer (vocabulary sorted by term, idf). Immutable; thread-safe.
#[pyclass(module = "xrcomplete._core", frozen)]
pub(crate) struct TfidfModel {
    pub(crate) inner: Arc<TfidfVectorizer>,
}

#[pymethods]
impl TfidfModel {
    /// Fits on `docs` with `options` (in parallel, the GIL released).
    #[staticmethod]
    fn fit(py: Python<'_>, docs: &Bound<'_, PyAny>, options: &TfidfOptions) -> PyResult<Self> {
        let config = options.config.clone();
        let docs = extract_texts(docs, "docs")?;
        let fitted = py
            .detach(|| TfidfVectorizer::fit(config, &docs))
            .map_err(to_py_err)?;
        Ok(TfidfModel {
            inner: Arc::new(fitted),
        })
    }

    /// (data, indices, indptr, shape) of the CSR rows of `docs`, computed in parallel.
    fn transform<'py>(&self, py: Python<'py>, docs: &Bound<'py, PyAny>) -> PyResult<CsrParts<'py>> {
        let docs = extract_texts(docs, "docs")?;
        let m = py.detach(|| self.inner.transform(&docs));
        Ok(csr_to_py(py, m))
    }

    /// (indices, data) of one document's row: the per-keystroke path.
    fn transform_one<'py>(&self, py: Python<'py>, doc: &str) -> RowParts<'py> {
        let mut row = (Vec::new(), Vec::new());
        ROW_SCRATCH.with_borrow_mut(|scratch| self.inner.transform_one(doc, scratch, &mut row));
        let indices: Vec<i32> = row.0.into_iter().map(|c| c as i32).collect();
        (
            PyArray1::from_vec(py, indices),
            PyArray1::from_vec(py, row.1),
        )
    }

    /// Number of features (columns).
    #[getter]
    fn n_features(&self) -> usize {
        self.inner.n_features()
    }

    /// The terms, in column order.
    fn terms(&self) -> Vec<&str> {
        self.inner.terms().collect()
    }

    /// The idf of each column (float64).
    fn idf<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        let idf = PyArray1::from_slice(py, self.inner.idf());
        idf.readwrite().make_nonwriteable();
        idf
    }

    /// The column of `term`, or None.
    fn column(&self, term: &str) -> Option<u32> {
        self.inner.column(term)
    }

    /// The options it was fitted with, as keyword arguments of `fit`.
    fn params<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = self.inner.config();
        let a = &c.analyzer;
        let d = PyDict::new(py);
        let analyzer = match a.analyzer {
            Analyzer::CharWb => "char_wb",
            Analyzer::Char => "char",
            Analyzer::Word => "word",
        };
        d.set_item("analyzer", analyzer)?;
        d.set_item("ngram_range", a.ngram_range)?;
        d.set_item("lowercase", a.lowercase)?;
        d.set_item("nfkc", a.nfkc)?;
        let (weighting, alpha, decay) = match a.position_weight {
            PositionWeight::Uniform => ("none", 1.0, 0.5),
            PositionWeight::Harmonic => ("harmonic", 1.0, 0.5),
            PositionWeight::Exponential { alpha, decay } => ("exponential", alpha, decay),
        };
        d.set_item("prefix_weighting", weighting)?;
        d.set_item("alpha", alpha)?;
        d.set_item("decay", decay)?;
        let scope = match a.position_scope {
            PositionScope::String => "string",
            PositionScope::Word => "word",
        };
        d.set_item("position_scope", scope)?;
        for (name, df) in [("min_df", c.min_df), ("max_df", c.max_df)] {
            match df {
                DocFreq::Count(n) => d.set_item(name, n)?,
                DocFreq::Proportion(p) => d.set_item(name, p)?,
            }
        }
        d.set_item("max_features", c.max_features)?;
        d.set_item("sublinear_tf", c.sublinear_tf)?;
        d.set_item("use_idf", c.use_idf)?;
        d.set_item("smooth_idf", c.smooth_idf)?;
        d.set_item("norm", norm_name(c.norm))?;
        Ok(d)
    }
}

thread_local! {
    /// Scratch of the single-document path: no allocation per call but the returned arrays.
    static ROW_SCRATCH: std::cell::RefCell<RowScratch> = std::cell::RefCell::new(RowScratch::default());
    static CONCAT_SCRATCH: std::cell::RefCell<ConcatScratch> = std::cell::RefCell::new(ConcatScratch::default());
}

/// Fitted vectorizers side by side (e.g. previous query | prefix), the row renormalised.
#[pyclass(module = "xrcomplete._core", frozen)]
pub(crate) struct FeatureConcatModel {
    inner: Arc<FeatureConcat>,
}

#[pymethods]
impl FeatureConcatModel {
    #[new]
    #[pyo3(signature = (blocks, norm = Some("l2")), text_signature = "(blocks, norm='l2')")]
    fn new(blocks: Vec<PyRef<'_, TfidfModel>>, norm: Option<&str>) -> PyResult<Self> {
        let blocks = blocks.iter().map(|b| Arc::clone(&b.inner)).collect();
        let inner = FeatureConcat::new(blocks, parse_norm(norm)?).map_err(to_py_err)?;
        Ok(FeatureConcatModel {
            inner: Arc::new(inner),
        })
    }

    /// (data, indices, indptr, shape) for rows given as one sequence of texts per block.
    fn transform<'py>(
        &self,
        py: Python<'py>,
        columns: Vec<Bound<'py, PyAny>>,
    ) -> PyResult<CsrParts<'py>> {
        let columns = columns
            .iter()
            .enumerate()
            .map(|(i, c)| extract_texts(c, &format!("column {i}")))
            .collect::<PyResult<Vec<_>>>()?;
        let slices: Vec<&[String]> = columns.iter().map(|c| &c[..]).collect();
        let m = py
            .detach(|| self.inner.transform(&slices))
            .map_err(to_py_err)?;
        Ok(csr_to_py(py, m))
    }

    /// (indices, data) of one row, `texts[b]` for block `b`.
    fn transform_one<'py>(&self, py: Python<'py>, texts: Vec<String>) -> PyResult<RowParts<'py>> {
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        let mut row = (Vec::new(), Vec::new());
        CONCAT_SCRATCH
            .with_borrow_mut(|scratch| self.inner.transform_one(&texts, scratch, &mut row))
            .map_err(to_py_err)?;
        let indices: Vec<i32> = row.0.into_iter().map(|c| c as i32).collect();
        Ok((
            PyArray1::from_vec(py, indices),
            PyArray1::from_vec(py, row.1),
        ))
    }

    /// Total number of features.
    #[getter]
    fn n_features(&self) -> usize {
        self.inner.n_features()
    }

    /// The first column of each block.
    fn offsets(&self) -> Vec<usize> {
        self.inner.offsets().to_vec()
    }

    /// The blocks, in column order.
    fn blocks(&self) -> Vec<TfidfModel> {
        self.inner
            .blocks()
            .iter()
            .map(|b| TfidfModel {
                inner: Arc::clone(b),
            })
            .collect()
    }

    /// The row normalisation after concatenation ("l2", "l1" or None).
    #[getter]
    fn norm(&self) -> Option<&'static str> {
        norm_name(self.inner.norm())
    }
}

persist::persistable!(TfidfModel);
persist::persistable!(FeatureConcatModel);
