//! Python bindings of xrcomplete-core, imported as `xrcomplete._core`.
//!
//! Thin by design: each `#[pyclass]` holds an `Arc` of an immutable core object, converts
//! arguments, runs the core call with the GIL released, and converts results. No algorithm here.

use pyo3::prelude::*;

mod errors;
mod options;
mod persist;
mod qac;
mod retrieval;
mod server;
mod text;
mod trie;
mod xr;

/// Large arrays (a model's) on huge pages: fewer TLB misses on the hot path.
#[global_allocator]
static ALLOCATOR: xrcomplete_core::HugePageAlloc = xrcomplete_core::HugePageAlloc;

/// The compiled core of xrcomplete.
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add(
        "ModelFormatError",
        m.py().get_type::<errors::ModelFormatError>(),
    )?;
    m.add_class::<trie::Trie>()?;
    m.add_class::<trie::TrieKeys>()?;
    m.add_class::<text::TfidfOptions>()?;
    m.add_class::<text::TfidfModel>()?;
    m.add_class::<text::FeatureConcatModel>()?;
    m.add_class::<xr::XRLinearModel>()?;
    m.add_class::<xr::ProgressCounter>()?;
    m.add_class::<qac::CompleterModel>()?;
    m.add_class::<options::Options>()?;
    m.add_class::<qac::QueryIds>()?;
    m.add_class::<retrieval::ProductRetrieverModel>()?;
    m.add_class::<server::Server>()?;
    m.add_function(wrap_pyfunction!(qac::normalize_query, m)?)?;
    m.add_function(wrap_pyfunction!(qac::normalize_prefix, m)?)?;
    m.add_function(wrap_pyfunction!(qac::read_event_log, m)?)?;
    m.add_function(wrap_pyfunction!(qac::shard_answer, m)?)?;
    m.add_function(wrap_pyfunction!(qac::shard_pieces, m)?)?;
    m.add_function(wrap_pyfunction!(qac::part_answer, m)?)?;
    Ok(())
}
