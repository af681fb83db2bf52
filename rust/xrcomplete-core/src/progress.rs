//! How far a fit has come: its stage and the nodes trained, readable from another thread while
//! it runs (the bindings' progress line). Every fit reports here: the completer's, the
//! retriever's and XR-Linear's.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// The steps of a fit, in order, as [`Progress::stage`] reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Stage {
    /// Not started, or checking and indexing the input.
    Preparing = 0,
    /// Fitting the vectorizers and vectorising the training rows.
    Vectorizing = 1,
    /// Building the label tree (trie, k-means).
    Clustering = 2,
    /// Training the per-node linear models ([`Progress::done`] of [`Progress::total`]).
    Training = 3,
    /// Building the serving structures around the trained model.
    Finishing = 4,
    /// Learning the ranking stage from the candidates of later searches (a completer trains
    /// its parts on the earlier searches first, then again on all of them).
    Ranking = 5,
}

impl Stage {
    /// A few words for a progress line.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Preparing => "preparing",
            Stage::Vectorizing => "vectorising",
            Stage::Clustering => "building the label tree",
            Stage::Training => "training",
            Stage::Finishing => "finishing",
            Stage::Ranking => "learning the ranker",
        }
    }
}

/// The stage of a fit and the nodes trained so far and in all, readable from another thread
/// while a fit runs.
#[derive(Debug, Default)]
pub struct Progress {
    /// Nodes done.
    pub done: AtomicU64,
    /// Nodes in all (set when training starts).
    pub total: AtomicU64,
    stage: AtomicU8,
}

impl Progress {
    /// Enters `stage`.
    pub fn set_stage(&self, stage: Stage) {
        self.stage.store(stage as u8, Ordering::Relaxed);
    }

    /// The stage entered last.
    pub fn stage(&self) -> Stage {
        match self.stage.load(Ordering::Relaxed) {
            1 => Stage::Vectorizing,
            2 => Stage::Clustering,
            3 => Stage::Training,
            4 => Stage::Finishing,
            5 => Stage::Ranking,
            _ => Stage::Preparing,
        }
    }
}
