//! Saving and loading through the core's model format, shared by every class.

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3::PyClass;

use xrcomplete_core::persist::Persist;

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

pub(crate) fn load<T: Persist + Send>(
    py: Python<'_>,
    path: PathBuf,
    mmap: bool,
) -> PyResult<Arc<T>> {
    py.detach(|| {
        if mmap {
            T::load_mmap(&path)
        } else {
            T::load(&path)
        }
    })
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

/// Gives a `#[pyclass]` holding `inner: Arc<T: Persist>` the model-format methods: `to_bytes`,
/// `from_bytes`, `save`, `load` and `__reduce__` (pickle through the same bytes).
/// Fields beside `inner` are given with their initial values: `persistable!(T, live: init())`.
macro_rules! persistable {
    ($class:ty $(, $field:ident: $init:expr)*) => {
        #[pyo3::pymethods]
        impl $class {
            /// The object in xrcomplete's model format (bytes).
            fn to_bytes<'py>(
                &self,
                py: pyo3::Python<'py>,
            ) -> pyo3::Bound<'py, pyo3::types::PyBytes> {
                $crate::persist::to_bytes(py, &*self.inner)
            }

            /// Reads bytes written by `to_bytes`; ModelFormatError when they are not valid.
            #[classmethod]
            fn from_bytes(
                _cls: &pyo3::Bound<'_, pyo3::types::PyType>,
                py: pyo3::Python<'_>,
                data: &[u8],
            ) -> pyo3::PyResult<Self> {
                Ok(Self {
                    inner: $crate::persist::from_bytes(py, data)?,
                    $($field: $init,)*
                })
            }

            /// Saves to `path` atomically (a temporary file renamed over `path`).
            fn save(&self, py: pyo3::Python<'_>, path: std::path::PathBuf) -> pyo3::PyResult<()> {
                $crate::persist::save(py, &*self.inner, path)
            }

            /// Loads an object saved by `save`; ModelFormatError for a bad file. With
            /// `mmap=True` the file is mapped and its arrays used in place (no copy); it must
            /// not be changed while the object lives (`save` never changes a file in place).
            #[classmethod]
            #[pyo3(signature = (path, *, mmap=false))]
            fn load(
                _cls: &pyo3::Bound<'_, pyo3::types::PyType>,
                py: pyo3::Python<'_>,
                path: std::path::PathBuf,
                mmap: bool,
            ) -> pyo3::PyResult<Self> {
                Ok(Self {
                    inner: $crate::persist::load(py, path, mmap)?,
                    $($field: $init,)*
                })
            }

            fn __reduce__<'py>(
                slf: &pyo3::Bound<'py, Self>,
            ) -> pyo3::PyResult<$crate::persist::Reduced<'py>> {
                $crate::persist::reduce(slf, slf.get().to_bytes(slf.py()))
            }
        }
    };
}

pub(crate) use persistable;
