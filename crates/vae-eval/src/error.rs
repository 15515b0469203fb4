//! The crate's one error type.

/// Everything that can go wrong when an estimator is configured or run.
///
/// Configuration errors name the field and the bad value. Shape errors name the tensor. Numerical
/// failures (a NaN log-weight) are errors rather than silently propagated NaN estimates, because
/// the whole point of this crate is an honest number.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is out of range.
    #[error("invalid setting `{field}` = {value}: {expected}")]
    BadConfig {
        /// The field name, e.g. `hmc.step_size_min`.
        field: &'static str,
        /// The bad value, printed.
        value: String,
        /// What would be valid.
        expected: &'static str,
    },
    /// A tensor passed in (or returned by the model) has the wrong shape.
    #[error("{what} has shape {got:?}, expected {expected}")]
    Shape {
        /// Which tensor.
        what: &'static str,
        /// The shape that was expected, in words, e.g. `[K, B, D] = [16, 8, 2]`.
        expected: String,
        /// The shape found.
        got: Vec<i64>,
    },
    /// A log-weight (or log-density the estimate depends on) is NaN or `+inf`.
    #[error("{what}: {count} non-finite value(s), first at example {example}")]
    NonFinite {
        /// Which quantity.
        what: &'static str,
        /// How many values are NaN or `+inf`.
        count: usize,
        /// Index (in the batch passed to the estimator) of the first affected example.
        example: usize,
    },
    /// The requested combination of options is not supported.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A TorchScript module ([`crate::torchscript`]) cannot be loaded or breaks the interface.
    #[error("{}: method `{method}`: {reason}", path.display())]
    Module {
        /// The module file.
        path: std::path::PathBuf,
        /// The method at fault, or what was being done (`(loading)`).
        method: String,
        /// What was wrong, with the shapes expected and seen.
        reason: String,
    },
    /// A tensor operation failed (device unavailable, out of memory).
    #[error("tensor error: {0}")]
    Tch(#[from] tch::TchError),
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Shorthand for a [`Error::BadConfig`].
pub(crate) fn bad(
    field: &'static str,
    value: impl std::fmt::Display,
    expected: &'static str,
) -> Error {
    Error::BadConfig {
        field,
        value: value.to_string(),
        expected,
    }
}
