//! Core errors to Python exceptions, and checks of Python arguments.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use xrcomplete_core as core;

/// Maps a core error to the Python exception for its kind.
pub(crate) fn to_py_err(err: core::Error) -> PyErr {
    match err {
        core::Error::EmptyString { .. }
        | core::Error::NonFiniteWeight { .. }
        | core::Error::TooLarge { .. }
        | core::Error::InvalidInput(_) => PyValueError::new_err(err.to_string()),
    }
}

/// Checks a count argument from Python (`k`), which may be negative there.
pub(crate) fn check_k(k: i64) -> PyResult<usize> {
    usize::try_from(k).map_err(|_| PyValueError::new_err(format!("k must be >= 0, got {k}")))
}
