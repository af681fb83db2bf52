//! Text features: character and word n-gram TF-IDF, with prefix weighting.
//!
//! - [`AnalyzerConfig`] cuts a text into terms (scikit-learn's `word`, `char`, `char_wb`), each
//!   occurrence weighted by its position ([`PositionWeight`]): n-grams near the start of the
//!   string or word count more, so the features of a typed prefix resemble those of the queries
//!   it completes to.
//! - [`TfidfVectorizer`] fits a vocabulary and idf, then maps texts to CSR rows.
//! - [`FeatureConcat`] puts several vectorizers side by side (previous query | prefix).

mod analyzer;
mod concat;
mod interner;
mod terms;
pub(crate) use terms::HashSlots;
mod tfidf;

pub use analyzer::{
    is_py_space, is_py_word, word_runs, Analyzer, AnalyzerConfig, PositionScope, PositionWeight,
    Scratch, MAX_NGRAM,
};
pub use concat::{ConcatScratch, FactoredRows, FeatureConcat};
pub use interner::Interner;
pub use tfidf::{DocFreq, Norm, RowScratch, TermCounts, TfidfConfig, TfidfVectorizer};

/// A query as the log and the evaluation protocol see it: lower-cased (as Python's
/// `str.lower`), surrounding whitespace (Python's `str.isspace`) removed.
pub fn normalize_query(query: &str) -> String {
    query.trim_matches(is_py_space).to_lowercase()
}

/// A typed prefix: lower-cased, leading whitespace removed; trailing whitespace is kept (a
/// space typed after a word is part of what the user means).
pub fn normalize_prefix(prefix: &str) -> String {
    prefix.trim_start_matches(is_py_space).to_lowercase()
}
