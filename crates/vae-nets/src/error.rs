//! The crate's one error type.

/// Everything that can go wrong while building a network.
///
/// Forward passes do not return errors: once a network is built, shapes are program invariants
/// and a wrong input shape panics with the expected and the actual shape.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is out of range.
    #[error("invalid network setting `{field}` = {value}: expected {expected}")]
    BadConfig {
        /// The field, as written in a config (`latent`, `hidden[1]`, `batch_norm.eps`, ...).
        field: String,
        /// The bad value, printed.
        value: String,
        /// The valid range.
        expected: &'static str,
    },
    /// A parameter would be created under a name that the variable store already holds.
    ///
    /// `tch` would silently rename the second one to `name__N`; that breaks checkpoint names, so
    /// it is refused instead. It happens when two networks are built under the same `nn::Path`.
    #[error("parameter `{path}` already exists in the variable store: build each network under its own path segment")]
    DuplicateParameter {
        /// The full dotted name of the parameter.
        path: String,
    },
    /// A tensor operation failed (device unavailable, out of memory).
    #[error("tensor error: {0}")]
    Tch(#[from] tch::TchError),
    /// A shared layer (vae-nn) refused to be built for a reason this type has no variant of;
    /// its settings errors arrive as [`Error::BadConfig`], its name clashes as
    /// [`Error::DuplicateParameter`].
    #[error(transparent)]
    Layer(vae_nn::Error),
}

impl From<vae_nn::Error> for Error {
    fn from(e: vae_nn::Error) -> Self {
        match e {
            vae_nn::Error::InvalidSetting {
                field,
                value,
                expected,
            } => Error::BadConfig {
                field: field.into(),
                value,
                expected,
            },
            vae_nn::Error::DuplicateParameter { path } => Error::DuplicateParameter { path },
            vae_nn::Error::Tch(e) => Error::Tch(e),
            e => Error::Layer(e),
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Shorthand for [`Error::BadConfig`].
    pub(crate) fn bad(
        field: impl Into<String>,
        value: impl ToString,
        expected: &'static str,
    ) -> Self {
        Error::BadConfig {
            field: field.into(),
            value: value.to_string(),
            expected,
        }
    }
}
