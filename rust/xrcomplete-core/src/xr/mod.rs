//! XR-Linear: per-level sparse linear matchers over a label tree, and beam search.
//!
//! - [`train()`]: one L2-loss SVM or logistic regression per node (dual coordinate descent),
//!   negatives from siblings,
//!   small weights pruned, nodes in parallel.
//! - [`train_with`]: the same, each row trained only where its label range (a completer's
//!   prefix range) leaves a choice open.
//! - [`train_pieces`]: the jobs of a training cut apart ([`SubtreeJob`]), trained on other
//!   processes or machines (Ray): the same model.
//! - [`XrLinear`]: the immutable trained model; [`XrLinear::predict_one`] on the caller's
//!   thread, [`XrLinear::predict`] in parallel; an optional label-id range restricts answers.

mod block;
mod model;
mod params;
mod subtree;
mod train;

pub use model::{LevelWeights, PostProcessor, PredictParams, PredictScratch, XrLinear};
pub use params::{Loss, TrainParams};
pub(crate) use subtree::{read_train_params, write_train_params, JobPlan};
pub use subtree::{train_pieces, SubtreeJob};
pub(crate) use train::train_levels_with;
pub use train::{train, train_with};
// Where they lived before they served every fit.
pub use crate::progress::{Progress, Stage};
