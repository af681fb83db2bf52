//! XR-Linear: per-level sparse linear matchers over a label tree, and beam search.
//!
//! - [`train()`]: one L2-loss SVM or logistic regression per node (dual coordinate descent),
//!   negatives from siblings,
//!   small weights pruned, nodes in parallel.
//! - [`train_with`]: the same, the subtrees below the top levels trained elsewhere (other
//!   processes or machines) through a [`SubtreeRunner`]: the same model.
//! - [`XrLinear`]: the immutable trained model; [`XrLinear::predict_one`] on the caller's
//!   thread, [`XrLinear::predict`] in parallel; an optional label-id range restricts answers.

mod block;
mod model;
mod subtree;
mod train;

pub use model::{LevelWeights, PostProcessor, PredictParams, PredictScratch, XrLinear};
pub(crate) use subtree::{read_train_params, write_train_params, JobPlan};
pub use subtree::{train_pieces, train_subtree, Offload, SubtreeJob, SubtreeRunner};
pub(crate) use train::train_levels_with;
pub use train::{train, train_with, Loss, Progress, Stage, TrainParams};
