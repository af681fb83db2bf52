//! # xrcomplete-core
//!
//! The pure-Rust core of xrcomplete: session-aware query autocompletion framed as extreme
//! multi-label ranking (XMR), PECOS-style. No Python here; the `xrcomplete-py` crate binds it.
//!
//! The types, by stage:
//! - [`Trie`]: the label strings (previously seen queries) in lexicographic id order, so that a
//!   prefix is a contiguous id range; ranked completions by weight (most-popular completion).
//! - [`RangeTopK`]: the k heaviest ids in any id range, in time independent of the range's size.
//! - [`text`]: features: character n-gram TF-IDF with prefix weighting, word n-gram TF-IDF,
//!   and their concatenation into one row ([`text::FeatureConcat`]).
//! - [`index`]: label trees ([`index::LabelTree`]): hierarchical balanced spherical k-means on
//!   PIFA label embeddings.
//! - [`xr`]: XR-Linear, per-level sparse linear matchers trained over a label tree, and the
//!   thread-safe beam search ([`xr::XrLinear`]).
//! - [`qac`]: the session-aware completer ([`qac::Completer`]): features, model, popularity,
//!   session transitions and last-word completion behind one `complete(prev, prefix)` call.
//! - [`live`]: searches recorded since a model was built ([`live::LiveCounts`], decayed) and
//!   their write-ahead log ([`live::wal::EventLog`]).
//! - [`rank`]: the learned ranking stage ([`rank::AdditiveRanker`]), trained listwise on lists of
//!   candidates.
//! - [`retrieval`]: product retrieval on the same engine ([`retrieval::ProductRetriever`]).
//! - [`CsrMatrix`]: sparse rows laid out as scipy's CSR.
//! - [`persist`]: the one on-disk format (versioned, checksummed sections) of every saved object.
//! - [`progress`]: how far a fit has come ([`progress::Progress`]), for a progress line.
//! - [`Error`]: the one error type; no input reaching the core panics.
//! - [`HugePageAlloc`]: the global allocator of the bindings: large arrays on huge pages.

mod error;
pub mod hugepages;
pub mod index;
pub mod live;
#[cfg(test)]
mod loader_fuzz;
pub mod persist;
pub mod progress;
pub mod qac;
pub mod rank;
pub mod retrieval;
mod rng;
mod sparse;
mod strings;
pub mod text;
mod topk;
mod trie;
pub mod xr;

pub use error::{Error, Result};
pub use hugepages::HugePageAlloc;
pub use sparse::{CsrMatrix, OneLabelRows, RowBuf, SparseRows};
pub use topk::RangeTopK;
pub use trie::{FuzzyMatch, Trie};
