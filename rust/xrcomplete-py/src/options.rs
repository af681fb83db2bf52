//! The completer's options for Python: the core's declarations ([`qac::OPTIONS`]) and a checked
//! set of values, converted by each option's declared type.

use pyo3::exceptions::{PyKeyError, PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyList, PyString, PyTuple};

use xrcomplete_core::qac::{self, Declared, OptionType, Value};
use xrcomplete_core::Error;

use crate::errors::to_py_err;
use crate::text::extract_texts;

/// Every option of a `Completer` with a value, each checked against its declaration (type and
/// bounds) and all of them together. Immutable: `replace` gives a changed copy.
#[pyclass(module = "xrcomplete._core", frozen, eq)]
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Options {
    pub(crate) inner: qac::Options,
}

/// `obj` as the value of option `d`, or a TypeError naming the option and what it takes.
pub(crate) fn to_value(d: &Declared, obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    let wrong = || {
        let got = obj
            .get_type()
            .name()
            .map_or_else(|_| "?".to_owned(), |n| n.to_string());
        PyTypeError::new_err(format!("{} must be {}, got {got}", d.name, d.ty))
    };
    // Python's and numpy's bools (never an int for a flag, never a flag for a number).
    let flag = || obj.extract::<bool>().ok();
    // Any integer (numpy's too, through __index__), not a bool, not a float; one beyond 64 bits
    // is out of every bound.
    let whole = || -> PyResult<Option<Value>> {
        if flag().is_some() || obj.is_instance_of::<PyFloat>() {
            return Ok(None);
        }
        match obj.extract::<i64>() {
            Ok(i) => Ok(Some(Value::Int(i))),
            Err(e) if e.is_instance_of::<PyOverflowError>(obj.py()) => Err(PyValueError::new_err(
                format!("{} must be {}, got {obj}", d.name, d.ty),
            )),
            Err(_) => Ok(None),
        }
    };
    let value = match d.ty {
        OptionType::Bool => flag().map(Value::Bool),
        OptionType::BoolOrAuto if obj.is_instance_of::<PyString>() => {
            Some(Value::Text(obj.extract()?))
        }
        OptionType::BoolOrAuto => flag().map(Value::Bool),
        OptionType::IntOrNone { .. } if obj.is_none() => Some(Value::None),
        OptionType::Int { .. } | OptionType::IntOrNone { .. } => whole()?,
        // Any real number (ints and numpy's floats too), not a bool, not a string.
        OptionType::Float { .. } if flag().is_none() && !obj.is_instance_of::<PyString>() => {
            obj.extract::<f64>().ok().map(Value::Float)
        }
        OptionType::Float { .. } => None,
        OptionType::Choice(_) if obj.is_instance_of::<PyString>() => {
            Some(Value::Text(obj.extract()?))
        }
        OptionType::Choice(_) => None,
        OptionType::Texts if obj.is_instance_of::<PyString>() || obj.try_iter().is_ok() => {
            Some(Value::Texts(extract_texts(obj, d.name)?))
        }
        OptionType::Texts => None,
    };
    d.check(value.ok_or_else(wrong)?).map_err(to_py_err)
}

/// The declaration of option `name`, or a TypeError naming the closest ones.
pub(crate) fn declared_option(name: &str) -> PyResult<&'static Declared> {
    qac::declared(name).map_err(|e| match e {
        Error::InvalidInput(message) => PyTypeError::new_err(message),
        other => to_py_err(other),
    })
}

fn to_py<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Int(i) => i.into_pyobject(py)?.into_any(),
        Value::Float(x) => x.into_pyobject(py)?.into_any(),
        Value::Text(t) => PyString::new(py, t).into_any(),
        Value::Texts(ts) => PyTuple::new(py, ts)?.into_any(),
        Value::None => py.None().into_bound(py),
    })
}

impl Options {
    /// These options with those of `changes` (names to values) set, checked together.
    fn with(&self, changes: Option<&Bound<'_, PyDict>>) -> PyResult<Options> {
        let mut inner = self.inner.clone();
        for (name, obj) in changes.into_iter().flatten() {
            let name: String = name
                .extract()
                .map_err(|_| PyTypeError::new_err("option names are str"))?;
            let d = declared_option(&name)?;
            inner.set(d.name, to_value(d, &obj)?).map_err(to_py_err)?;
        }
        inner.check().map_err(to_py_err)?;
        Ok(Options { inner })
    }
}

#[pymethods]
impl Options {
    /// The defaults, with the options given changed: `Options(index="kmeans", copy=0.25)`.
    /// An unknown name or a value of the wrong type is a TypeError; a value out of its bounds
    /// (or options that disagree, as `fuzzy_two` below `fuzzy_one`) a ValueError.
    #[new]
    #[pyo3(signature = (**options), text_signature = "(**options)")]
    fn new(options: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        Options::default().with(options)
    }

    /// `value` as option `name` stores it (a whole number given to a number option: a float),
    /// checked against that option's type and bounds alone (TypeError, ValueError).
    #[staticmethod]
    fn check_value<'py>(
        py: Python<'py>,
        name: &str,
        value: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let d = declared_option(name)?;
        to_py(py, &to_value(d, value)?)
    }

    /// A copy with the options given changed (checked as the constructor does).
    #[pyo3(signature = (**options))]
    fn replace(&self, options: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        self.with(options)
    }

    /// The value of option `name` (KeyError for an unknown one).
    fn __getitem__<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
        let value = self
            .inner
            .get(name)
            .map_err(|e| PyKeyError::new_err(e.to_string()))?;
        to_py(py, value)
    }

    /// Every option and its value, in the declared order.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let out = PyDict::new(py);
        for (d, v) in self.inner.iter() {
            out.set_item(d.name, to_py(py, v)?)?;
        }
        Ok(out)
    }

    /// The names of the options not at their default.
    fn changed(&self) -> Vec<&'static str> {
        self.inner.changed()
    }

    fn __repr__(&self) -> String {
        let changed: Vec<String> = self
            .inner
            .iter()
            .filter(|(d, _)| self.inner.changed().contains(&d.name))
            .map(|(d, v)| format!("{}={v}", d.name))
            .collect();
        format!("Options({})", changed.join(", "))
    }

    /// Every option's declaration, in order: dicts of name, kind ("fit", "rank", "live"),
    /// type (in words), default, doc, and where they apply choices, min and max.
    #[staticmethod]
    fn declarations(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
        let out = PyList::empty(py);
        for d in qac::OPTIONS {
            let item = PyDict::new(py);
            item.set_item("name", d.name)?;
            item.set_item("kind", d.kind.name())?;
            item.set_item("type", d.ty.to_string())?;
            item.set_item("default", to_py(py, &Value::from(d.default))?)?;
            item.set_item("doc", d.doc)?;
            match d.ty {
                OptionType::Choice(words) => item.set_item("choices", words.to_vec())?,
                OptionType::Int { min, max } => {
                    item.set_item("min", min)?;
                    item.set_item("max", (max != i64::MAX).then_some(max))?;
                }
                OptionType::IntOrNone { min } => item.set_item("min", min)?,
                OptionType::Float {
                    min,
                    min_inclusive,
                    max,
                    max_inclusive,
                } => {
                    item.set_item("min", min)?;
                    item.set_item("min_inclusive", min_inclusive)?;
                    item.set_item("max", (max != f64::MAX).then_some(max))?;
                    item.set_item("max_inclusive", max_inclusive)?;
                }
                OptionType::Bool | OptionType::BoolOrAuto | OptionType::Texts => {}
            }
            out.append(item)?;
        }
        Ok(out)
    }
}
