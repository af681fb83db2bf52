//! Saving and loading through the core's model format, shared by every class.

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3::PyClass;

use xrcomplete_core::persist::{self, Persist};

use crate::errors::to_py_err;

/// What `__reduce__` returns: `(cls.from_bytes, (bytes,))`.
pub(crate) type Reduced<'py> = (Bound<'py, PyAny>, (Bound<'py, PyBytes>,));

pub(crate) fn to_bytes<'py, T: Persist + Sync>(py: Python<'py>, model: &T) -> Bound<'py, PyBytes> {
    let bytes = py.detach(|| model.to_bytes());
    PyBytes::new(py, &bytes)
}

pub(crate) fn from_bytes<T: Persist + Send>(py: Python<'_>, data: &[u8]) -> PyResult<Arc<T>> {
    py.detach(|| T::from_bytes(data))
        .map(Arc::new)
        .map_err(to_py_err)
}

pub(crate) fn save<T: Persist + Sync>(py: Python<'_>, model: &T, path: PathBuf) -> PyResult<()> {
    py.detach(|| model.save(&path)).map_err(to_py_err)
}

pub(crate) fn load<T: Persist + Send>(py: Python<'_>, path: PathBuf) -> PyResult<Arc<T>> {
    py.detach(|| persist::read_file(&path).and_then(|b| T::from_bytes(&b)))
        .map(Arc::new)
        .map_err(to_py_err)
}

/// Pickles through the model format: no Python objects inside, nothing run on load.
pub(crate) fn reduce<'py, C: PyClass>(
    slf: &Bound<'py, C>,
    bytes: Bound<'py, PyBytes>,
) -> PyResult<Reduced<'py>> {
    Ok((slf.as_any().get_type().getattr("from_bytes")?, (bytes,)))
}
