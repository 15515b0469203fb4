//! The crate's one error type.

use crate::kind::FlowKind;
use crate::mask::MaskOrder;

/// Everything that can go wrong while building masks, a cMADE, a flow or a context predictor.
///
/// Every variant carries the offending numbers, so a message says what to change in the config.
/// Forward passes do not return errors: by then shapes are program invariants and a mismatch
/// panics with the expected and actual sizes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Two consecutive cMADE widths do not divide each other (ORIGINAL §3.4.1, divisibility rule).
    #[error(
        "cMADE widths {n_in} and {n_out} (mask {layer}) don't evenly divide each other: the larger \
         must be an integer multiple of the smaller to construct suitable masks"
    )]
    Indivisible {
        /// Index of the mask (0 = latent to first hidden layer).
        layer: usize,
        /// Width feeding the mask.
        n_in: usize,
        /// Width fed by the mask.
        n_out: usize,
    },
    /// The masks built for `units` are not strictly triangular, so the flow would not be
    /// autoregressive. The original checks this at build time too (ORIGINAL §3.4.1); it can happen
    /// for pairwise-divisible widths whose hidden sizes are not multiples of the latent size,
    /// e.g. `[64, 32, 64, 64]`.
    #[error(
        "cMADE widths {units:?} give non-autoregressive {order:?} masks: output {output} depends \
         on input {input}; use hidden widths that are multiples of the latent size"
    )]
    NotAutoregressive {
        /// The widths `[D, h1, .., D]`.
        units: Vec<usize>,
        /// The order whose masks failed.
        order: MaskOrder,
        /// A latent input that reaches `output` although it must not.
        input: usize,
        /// The latent output.
        output: usize,
    },
    /// SNF-like context is added unprojected to the first hidden layer, so both widths must match
    /// (ORIGINAL §3.4.2 (a); the original asserts the same).
    #[error(
        "SNF-like context needs context_size == first cMADE hidden width, got context_size \
         {context_size} and hidden[0] = {first_hidden}; set them equal or use `context: linear`"
    )]
    SnfContextSize {
        /// The configured context size.
        context_size: i64,
        /// The first hidden width of the cMADE.
        first_hidden: i64,
    },
    /// Two masks whose widths do not chain were multiplied.
    #[error(
        "cannot chain masks: the left one has {left_out} outputs, the right one {right_in} inputs"
    )]
    MaskShapes {
        /// Outputs of the left mask.
        left_out: usize,
        /// Inputs of the right mask.
        right_in: usize,
    },
    /// A configuration value is out of range.
    #[error("invalid flow setting `{field}` = {value}: {expected}")]
    InvalidConfig {
        /// The field name, as in the config file.
        field: &'static str,
        /// The bad value, printed.
        value: String,
        /// What would be valid.
        expected: &'static str,
    },
    /// A per-layer `kind` list whose length is not `layers` (FLOWS §1.2).
    #[error(
        "flow `kind` lists {kinds} kinds (one per layer) but `layers` = {layers}: set `layers` \
         to {kinds}, or give one kind name for all layers"
    )]
    LayersMismatch {
        /// The configured `layers`.
        layers: usize,
        /// The length of the `kind` list.
        kinds: usize,
    },
    /// A flow setting that can only be checked against the latent size is out of range, such as
    /// a Sylvester flow with more orthonormal vectors than latents (FLOWS §5).
    #[error("invalid flow setting `{field}` = {value} for latent size {latent}: {expected}")]
    LatentSetting {
        /// The field name, as in the config file.
        field: &'static str,
        /// The bad value, printed.
        value: String,
        /// The latent size `D`.
        latent: i64,
        /// What would be valid.
        expected: &'static str,
    },
    /// [`crate::Flow::inverse`] was asked to undo a layer whose kind has no inverse here (the
    /// Sylvester flows, FLOWS §5.5).
    #[error(
        "flow layer {layer} is `{kind}`, which has no inverse in flowvae (Sylvester flows are \
         invertible but their inverse is not implemented); only the forward pass and its \
         log-det are available"
    )]
    NoInverse {
        /// The layer index (0 = first in forward order).
        layer: usize,
        /// The layer's kind.
        kind: FlowKind,
    },
    /// A tensor operation failed while creating variables (device unavailable, out of memory).
    #[error("tensor error: {0}")]
    Tch(#[from] tch::TchError),
    /// A batch-norm layer (vae-nn) refused to be built for a reason this type has no variant
    /// of, such as a name the variable store already holds; its settings errors arrive as
    /// [`Error::InvalidConfig`].
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
            } => Error::InvalidConfig {
                field,
                value,
                expected,
            },
            vae_nn::Error::Tch(e) => Error::Tch(e),
            e => Error::Layer(e),
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
