//! The one error type of the core. Each variant carries the facts needed to act on it; the Python
//! bindings map the variants to specific exceptions.

use thiserror::Error;

/// Every failure the core can report. Input that reaches the core never panics; it ends here.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum Error {
    /// A key or query that must not be empty was empty.
    #[error("empty {what}: {why}")]
    EmptyString {
        /// What was empty ("key", "query", ...).
        what: &'static str,
        /// Why it is not allowed, in a few words.
        why: &'static str,
    },

    /// A weight that is NaN or infinite, or a sum of weights that overflowed to infinity.
    #[error("weight of {key:?} is {weight}; weights must be finite numbers")]
    NonFiniteWeight {
        /// The key the weight belongs to (cut to 80 characters).
        key: String,
        /// The offending value.
        weight: f64,
    },

    /// A structure would exceed the limits of its 32-bit ids or offsets.
    #[error("too large: {what} is {got}, the limit is {limit}")]
    TooLarge {
        /// What outgrew its limit.
        what: &'static str,
        /// The size that was asked for.
        got: u64,
        /// The largest size supported.
        limit: u64,
    },

    /// A model file (or bytes) that is not a valid file of this format: truncated, corrupt,
    /// inconsistent.
    #[error("invalid model file: {what}")]
    Format {
        /// What was wrong, with what was expected and found.
        what: String,
    },

    /// A model file of another format version.
    #[error("model file format version {got}; this build reads version {expected}")]
    Version {
        /// The version this build reads.
        expected: u32,
        /// The version in the file.
        got: u32,
    },

    /// A model file holding another kind of object.
    #[error("the model file holds a {found}, not a {expected}")]
    WrongKind {
        /// The kind that was asked for.
        expected: String,
        /// The kind in the file.
        found: String,
    },

    /// A [`Error::Format`], [`Error::Version`] or [`Error::WrongKind`] of a model file read from
    /// disk, with the file's path.
    #[error("{path}: {source}")]
    InFile {
        /// The model file.
        path: String,
        /// What is wrong with it.
        source: Box<Error>,
    },

    /// Reading or writing a file failed.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The operating system's message.
        message: String,
        /// True when the file (or its folder) does not exist.
        not_found: bool,
    },

    /// A vectorizer fitted on documents that yield no term (all blank, or every term pruned).
    #[error("empty vocabulary: {why}")]
    EmptyVocabulary {
        /// Why no term remains.
        why: &'static str,
    },

    /// An argument of the wrong type (an option given a string where it takes a number).
    #[error("{0}")]
    InvalidType(String),

    /// Any other argument out of its domain.
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// Work run elsewhere failed (the shards of a distributed fit): what the engine said. Never
    /// taken for a fit with nothing to learn from, as an invalid input can be.
    #[error("the engine failed: {0}")]
    Engine(String),
}

impl Error {
    /// Names `path` in a model-format error (an I/O error names its file already).
    pub fn in_file(self, path: &std::path::Path) -> Error {
        match self {
            Error::Format { .. } | Error::Version { .. } | Error::WrongKind { .. } => {
                Error::InFile {
                    path: path.display().to_string(),
                    source: Box::new(self),
                }
            }
            other => other,
        }
    }

    /// The error itself, or the one an [`Error::InFile`] wraps.
    pub fn cause(&self) -> &Error {
        match self {
            Error::InFile { source, .. } => source.cause(),
            other => other,
        }
    }
}

/// `Result` with the core's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Shortens `s` for an error message, on a character boundary.
pub(crate) fn excerpt(s: &str) -> String {
    const MAX_CHARS: usize = 80;
    match s.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}
