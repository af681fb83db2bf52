//! `Trie`: weighted strings with ranked prefix completions.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use pyo3::exceptions::{PyIndexError, PyKeyError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyMapping, PyString, PyTuple};

use crate::persist;
use xrcomplete_core as core;

use crate::errors::{check_k, count, to_py_err, type_name};

/// Reads one `(key, weight)` item: a `str` counts as `(str, 1.0)`.
fn extract_item(item: &Bound<'_, PyAny>, index: usize) -> PyResult<(String, f64)> {
    if let Ok(key) = item.cast::<PyString>() {
        return Ok((key.to_cow()?.into_owned(), 1.0));
    }
    let bad = || {
        PyTypeError::new_err(format!(
            "item {index} must be a str or a (str, weight) pair, got {}",
            type_name(item)
        ))
    };
    let pair = item.cast::<PyTuple>().map_err(|_| bad())?;
    if pair.len() != 2 {
        return Err(bad());
    }
    let key = pair.get_item(0)?;
    let key = key
        .cast::<PyString>()
        .map_err(|_| bad())?
        .to_cow()?
        .into_owned();
    let weight: f64 = pair.get_item(1)?.extract().map_err(|_| {
        PyTypeError::new_err(format!(
            "item {index}: the weight of {key:?} must be a number"
        ))
    })?;
    Ok((key, weight))
}

/// A set of weighted strings (e.g. queries with their counts) with ranked prefix completions.
///
/// Keys have ids in lexicographic order, so the keys with a given prefix form one id range.
/// Immutable; safe to query from many threads at once (the GIL is released).
#[pyclass(module = "xrcomplete._core", frozen)]
pub(crate) struct Trie {
    inner: Arc<core::Trie>,
}

#[pymethods]
impl Trie {
    /// Builds from a mapping {key: weight}, or an iterable of keys (weight 1 each) and/or
    /// (key, weight) pairs. Weights of duplicate keys add up.
    #[new]
    #[pyo3(signature = (items = None))]
    fn new(py: Python<'_>, items: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let mut pairs: Vec<(String, f64)> = Vec::new();
        if let Some(items) = items {
            if items.is_instance_of::<PyString>() {
                return Err(PyTypeError::new_err(
                    "Trie(items) takes an iterable of keys or (key, weight) pairs, not a single str",
                ));
            }
            let iterable = match items.cast::<PyMapping>() {
                Ok(mapping) => mapping.items()?.into_any(),
                Err(_) => items.clone(),
            };
            if let Ok(len) = iterable.len() {
                pairs.reserve(len);
            }
            for (index, item) in iterable.try_iter()?.enumerate() {
                pairs.push(extract_item(&item?, index)?);
            }
        }
        let trie = py.detach(|| core::Trie::new(pairs)).map_err(to_py_err)?;
        Ok(Trie {
            inner: Arc::new(trie),
        })
    }

    /// The k heaviest keys starting with `prefix`, as (key, weight) pairs, heaviest first;
    /// ties in key order. `prefix=""` ranks all keys.
    #[pyo3(signature = (prefix, k = 10))]
    fn completions<'py>(
        &self,
        py: Python<'py>,
        prefix: &str,
        #[pyo3(from_py_with = count)] k: i64,
    ) -> PyResult<Bound<'py, PyList>> {
        let k = check_k(k)?;
        let trie = &self.inner;
        let ids = py.detach(|| match trie.prefix_range(prefix) {
            Some((lo, hi)) => trie.top_k_in_range(lo, hi, k),
            None => Vec::new(),
        });
        let items = ids.into_iter().map(|id| {
            let key = trie.key(id).expect("id from the trie");
            let weight = trie.weight(id).expect("id from the trie");
            (key, weight)
        });
        PyList::new(py, items)
    }

    /// The ids (start, end) of the keys starting with `prefix`, or None when no key does.
    fn prefix_range(&self, py: Python<'_>, prefix: &str) -> Option<(u32, u32)> {
        py.detach(|| self.inner.prefix_range(prefix))
    }

    /// The weight of `key`, or `default` when absent.
    #[pyo3(signature = (key, default = None))]
    fn get(&self, py: Python<'_>, key: &str, default: Option<Py<PyAny>>) -> Py<PyAny> {
        match self.inner.get(key) {
            Some(w) => w.into_pyobject(py).expect("float").into_any().unbind(),
            None => default.unwrap_or_else(|| py.None()),
        }
    }

    /// The id of `key`, or None when absent.
    fn id_of(&self, key: &str) -> Option<u32> {
        self.inner.id(key)
    }

    /// The key with id `id`; IndexError when out of range.
    fn key_of(&self, id: i64) -> PyResult<String> {
        u32::try_from(id)
            .ok()
            .and_then(|id| self.inner.key(id))
            .map(str::to_owned)
            .ok_or_else(|| {
                PyIndexError::new_err(format!(
                    "id {id} out of range for a trie of {} keys",
                    self.inner.len()
                ))
            })
    }

    /// All keys, in id (lexicographic) order.
    fn keys(&self) -> Vec<&str> {
        self.inner.keys().collect()
    }

    /// All (key, weight) pairs, in id order.
    fn items(&self) -> Vec<(&str, f64)> {
        self.inner.iter().collect()
    }

    /// Bytes of memory the trie holds.
    #[getter]
    fn nbytes(&self) -> usize {
        self.inner.memory_bytes()
    }

    /// Number of nodes (the root included).
    #[getter]
    fn node_count(&self) -> usize {
        self.inner.node_count()
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __contains__(&self, key: &Bound<'_, PyAny>) -> bool {
        // Like dict: a non-str is simply not a key.
        match key.cast::<PyString>() {
            Ok(s) => s.to_cow().is_ok_and(|s| self.inner.contains(&s)),
            Err(_) => false,
        }
    }

    fn __getitem__(&self, key: &Bound<'_, PyAny>) -> PyResult<f64> {
        let s = key
            .cast::<PyString>()
            .map_err(|_| PyKeyError::new_err(key.clone().unbind()))?;
        self.inner
            .get(&s.to_cow()?)
            .ok_or_else(|| PyKeyError::new_err(key.clone().unbind()))
    }

    fn __iter__(&self) -> TrieKeys {
        TrieKeys {
            trie: Arc::clone(&self.inner),
            next: AtomicU32::new(0),
        }
    }

    fn __repr__(&self) -> String {
        format!("Trie(<{} keys>)", self.inner.len())
    }
}

/// Iterator over a trie's keys in id order.
#[pyclass(module = "xrcomplete._core", frozen)]
pub(crate) struct TrieKeys {
    trie: Arc<core::Trie>,
    next: AtomicU32,
}

#[pymethods]
impl TrieKeys {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self) -> Option<String> {
        // Advance only while keys remain, so the counter never wraps around to the start.
        let len = self.trie.len() as u32;
        let id = self
            .next
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |i| {
                (i < len).then_some(i + 1)
            })
            .ok()?;
        self.trie.key(id).map(str::to_owned)
    }
}

persist::persistable!(Trie);
