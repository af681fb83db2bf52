//! Core errors to Python exceptions, and checks of Python arguments.

use pyo3::create_exception;
use pyo3::exceptions::{
    PyFileNotFoundError, PyOSError, PyOverflowError, PyRuntimeError, PyTypeError, PyValueError,
};
use pyo3::prelude::*;

use xrcomplete_core as core;

create_exception!(
    _core,
    ModelFormatError,
    PyValueError,
    "A model file (or bytes) that is not a valid xrcomplete model of the expected kind: \
     truncated, corrupt, of another format version, or holding another kind of object."
);

/// Maps a core error to the Python exception for its kind.
pub(crate) fn to_py_err(err: core::Error) -> PyErr {
    let message = err.to_string();
    match err.cause() {
        core::Error::EmptyString { .. }
        | core::Error::NonFiniteWeight { .. }
        | core::Error::TooLarge { .. }
        | core::Error::EmptyVocabulary { .. }
        | core::Error::InvalidInput(_) => PyValueError::new_err(message),
        core::Error::InvalidType(_) => PyTypeError::new_err(message),
        // cause() looks through InFile; were it nested oddly, it is still a file's error.
        core::Error::Format { .. }
        | core::Error::InFile { .. }
        | core::Error::Version { .. }
        | core::Error::WrongKind { .. } => ModelFormatError::new_err(message),
        core::Error::Io {
            not_found: true, ..
        } => PyFileNotFoundError::new_err(message),
        core::Error::Io { .. } => PyOSError::new_err(message),
        core::Error::Engine(_) => PyRuntimeError::new_err(message),
    }
}

/// Reads a count argument from Python (`k`, `topk`; `#[pyo3(from_py_with = count)]`): any
/// `int`. One beyond 64 bits saturates (a count larger than anything a model holds means "all of
/// them"); a negative one is refused by the check that reads it.
pub(crate) fn count(obj: &Bound<'_, PyAny>) -> PyResult<i64> {
    match obj.extract::<i64>() {
        Ok(v) => Ok(v),
        Err(err) if err.is_instance_of::<PyOverflowError>(obj.py()) => {
            Ok(if obj.gt(0)? { i64::MAX } else { i64::MIN })
        }
        Err(err) => Err(err),
    }
}

/// Checks a count argument from Python (`k`), which may be negative there.
pub(crate) fn check_k(k: i64) -> PyResult<usize> {
    usize::try_from(k).map_err(|_| PyValueError::new_err(format!("k must be >= 0, got {k}")))
}

/// The name of `obj`'s type, for error messages ("?" if it has none).
pub(crate) fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}
