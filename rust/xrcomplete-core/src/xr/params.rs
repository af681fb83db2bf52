//! The options of XR-Linear's training: the loss and the solver's parameters (PECOS's
//! defaults). Apart from the training, so that the solver ([`super::block`]) and the trainer
//! ([`super::train`]) both read them without depending on each other.

use crate::error::{Error, Result};

/// The loss of the per-node linear models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Loss {
    /// L2-loss (squared hinge) SVM: LIBLINEAR's `L2R_L2LOSS_SVC_DUAL`, PECOS's default.
    SquaredHinge,
    /// Logistic regression: LIBLINEAR's `L2R_LR_DUAL`.
    Logistic,
}

/// Options of [`super::train()`], PECOS's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainParams {
    /// Penalty of errors on positives.
    pub cp: f64,
    /// Penalty of errors on negatives.
    pub cn: f64,
    /// Value of the constant feature appended to every row (0 for none).
    pub bias: f64,
    /// Weights with a smaller magnitude are dropped.
    pub threshold: f64,
    /// Passes over each problem at most.
    pub max_iter: usize,
    /// Stopping tolerance on the projected gradient.
    pub eps: f64,
    /// Seed of the visiting order.
    pub seed: u64,
    /// Loss of the node models.
    pub loss: Loss,
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams {
            cp: 1.0,
            cn: 1.0,
            bias: 1.0,
            threshold: 0.1,
            max_iter: 100,
            eps: 0.1,
            seed: 0,
            loss: Loss::SquaredHinge,
        }
    }
}

impl TrainParams {
    /// Checks every option.
    pub fn check(&self) -> Result<()> {
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if !positive(self.cp) || !positive(self.cn) || !positive(self.eps) {
            return Err(Error::InvalidInput(format!(
                "Cp, Cn and eps must be finite and > 0, got {}, {}, {}",
                self.cp, self.cn, self.eps
            )));
        }
        let non_negative = |v: f64| v.is_finite() && v >= 0.0;
        if !non_negative(self.bias) || !non_negative(self.threshold) {
            return Err(Error::InvalidInput(format!(
                "bias and threshold must be finite and >= 0, got {}, {}",
                self.bias, self.threshold
            )));
        }
        if self.max_iter == 0 {
            return Err(Error::InvalidInput("max_iter must be >= 1".into()));
        }
        Ok(())
    }
}
