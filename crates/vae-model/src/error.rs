//! The crate's one error type.

use std::path::PathBuf;

/// What can go wrong while building, training, checkpointing or evaluating a VAE.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A config value is out of range.
    #[error("invalid config value `{field}` = {value}: expected {expected}")]
    BadConfig {
        /// Dotted path of the field, e.g. `train.batch_size`.
        field: String,
        /// The bad value, printed.
        value: String,
        /// What would be valid.
        expected: String,
    },
    /// The encoder or decoder config is invalid.
    #[error(transparent)]
    Nets(#[from] vae_nets::Error),
    /// The flow config is invalid.
    #[error(transparent)]
    Flows(#[from] vae_flows::Error),
    /// Loading or splitting the data failed.
    #[error(transparent)]
    Data(#[from] vae_data::Error),
    /// An estimator failed.
    #[error(transparent)]
    Eval(#[from] vae_eval::Error),
    /// A checkpoint cannot be used.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// Training kept producing non-finite losses or gradients.
    #[error("training diverged: {steps} non-finite steps in a row at global step {global_step}, after {rollbacks} rollback(s) with the learning rate halved each time (now x{lr_scale}); lower train.learning_rate or check the data")]
    Diverged {
        /// Consecutive non-finite steps.
        steps: usize,
        /// Where it happened.
        global_step: u64,
        /// Rollbacks already done.
        rollbacks: usize,
        /// Current learning-rate multiplier.
        lr_scale: f64,
    },
    /// A file could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file could not be written (vae-io's message names it).
    #[error(transparent)]
    File(#[from] vae_io::Error),
    /// A tensor operation failed.
    #[error("tensor error: {0}")]
    Tch(#[from] tch::TchError),
}

impl Error {
    pub(crate) fn bad(field: &str, value: impl std::fmt::Display, expected: &str) -> Error {
        Error::BadConfig {
            field: field.into(),
            value: value.to_string(),
            expected: expected.into(),
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
