//! The crate's one error type.

/// Everything that can go wrong while building a layer or initialising it from data.
///
/// Forward passes do not return errors: once a layer is built, shapes are program invariants
/// and a wrong input shape panics with the expected and the actual shape.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is out of range.
    #[error("invalid network setting `{field}` = {value}: expected {expected}")]
    InvalidSetting {
        /// The field, as written in a config (`batch_norm.momentum`, `batch_norm.eps`) or the
        /// constructor's argument (`channels`, `units`, `inputs`, `target_mean`).
        field: &'static str,
        /// The bad value, printed.
        value: String,
        /// The valid range.
        expected: &'static str,
    },
    /// A variable would be created under a name that the variable store already holds.
    ///
    /// `tch` would silently rename the second one to `name__N`; that breaks checkpoint names, so
    /// it is refused instead. It happens when two layers are built under the same `nn::Path`.
    #[error("parameter `{path}` already exists in the variable store: build each layer under its own path segment")]
    DuplicateParameter {
        /// The full dotted name of the variable.
        path: String,
    },
    /// Data-dependent initialisation (NORMALIZATION §3) was given fewer than two examples:
    /// there is no variance to measure.
    #[error(
        "data-dependent initialisation of `{layer}` needs a batch of at least 2 examples to \
         measure each unit's variance, got {examples}"
    )]
    InitBatch {
        /// The layer's gain variable (`….weight_g`).
        layer: String,
        /// Examples in the batch.
        examples: i64,
    },
    /// Data-dependent initialisation (NORMALIZATION §3) saw a NaN or an infinity in a layer's
    /// pre-activations on the init batch.
    #[error(
        "data-dependent initialisation of `{layer}`: the init batch gives non-finite \
         pre-activations; check the data and the layers before it"
    )]
    NonFiniteInit {
        /// The layer's gain variable (`….weight_g`).
        layer: String,
    },
    /// A tensor operation failed (device unavailable, out of memory).
    #[error("tensor error: {0}")]
    Tch(#[from] tch::TchError),
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Shorthand for [`Error::InvalidSetting`].
    pub(crate) fn invalid(
        field: &'static str,
        value: impl ToString,
        expected: &'static str,
    ) -> Self {
        Error::InvalidSetting {
            field,
            value: value.to_string(),
            expected,
        }
    }
}
