//! Serde-ready configuration of the networks, with the original's defaults and one `validate()`
//! per type.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Batch-normalization constants shared by every BN layer of a network (ORIGINAL §2.1), the
/// same type as vae-flows' (see [`vae_nn`]).
pub use vae_nn::BatchNormSettings;

/// Which encoder family to build (ORIGINAL §3.1).
///
/// In JSON: `{"type": "resnet"}`, `{"type": "gated_conv"}` or `{"type": "mlp", "hidden": [1000,
/// 1000, 1000]}`. `hidden` has no default, as in the original (`nn_hidden_layers` is required for
/// `NONCONV_ENCODER`); an empty list is valid and makes `h_last = x` (ORIGINAL §3.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    deny_unknown_fields,
    from = "EncoderRepr"
)]
pub enum EncoderConfig {
    /// `IAF_ENCODER`: the ResNet CNN, the original's default (ORIGINAL §3.1.1).
    Resnet,
    /// `SNF_ENCODER`: gated convolutions, no BN, no residuals (ORIGINAL §3.1.2).
    GatedConv,
    /// `NONCONV_ENCODER`: an MLP with the input concatenated to every layer (ORIGINAL §3.1.3).
    Mlp {
        /// Hidden widths, in order (the original's `nn_hidden_layers`; `[1000, 1000, 1000]` is
        /// the width suggested there). Each must be at least 1.
        hidden: Vec<i64>,
    },
}

/// Which decoder family to build (ORIGINAL §3.2). Same JSON shape as [`EncoderConfig`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    deny_unknown_fields,
    from = "DecoderRepr"
)]
pub enum DecoderConfig {
    /// `IAF_DECODER`: the ResNet CNN with two upsampling blocks, the default (ORIGINAL §3.2.1).
    Resnet,
    /// `SNF_DECODER`: gated transposed convolutions, no BN (ORIGINAL §3.2.2).
    GatedConv,
    /// `NONCONV_DECODER`: an MLP with the code concatenated to every layer (ORIGINAL §3.2.3).
    Mlp {
        /// Hidden widths, in order; may be empty (then the logits are a linear function of
        /// `concat(z, z)`). Each must be at least 1.
        hidden: Vec<i64>,
    },
}

/// What configs deserialize through. Serde's `deny_unknown_fields` is not enforced on the unit
/// variants of an internally tagged enum (`{"type": "resnet", "filters": 32}` would be accepted),
/// so the field-less families are read as empty struct variants, which do refuse extra fields.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum EncoderRepr {
    Resnet {},
    GatedConv {},
    Mlp { hidden: Vec<i64> },
}

impl From<EncoderRepr> for EncoderConfig {
    fn from(r: EncoderRepr) -> Self {
        match r {
            EncoderRepr::Resnet {} => EncoderConfig::Resnet,
            EncoderRepr::GatedConv {} => EncoderConfig::GatedConv,
            EncoderRepr::Mlp { hidden } => EncoderConfig::Mlp { hidden },
        }
    }
}

/// See [`EncoderRepr`].
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum DecoderRepr {
    Resnet {},
    GatedConv {},
    Mlp { hidden: Vec<i64> },
}

impl From<DecoderRepr> for DecoderConfig {
    fn from(r: DecoderRepr) -> Self {
        match r {
            DecoderRepr::Resnet {} => DecoderConfig::Resnet,
            DecoderRepr::GatedConv {} => DecoderConfig::GatedConv,
            DecoderRepr::Mlp { hidden } => DecoderConfig::Mlp { hidden },
        }
    }
}

impl Default for EncoderConfig {
    /// The original's default, `IAF_ENCODER` (ORIGINAL §7).
    fn default() -> Self {
        EncoderConfig::Resnet
    }
}

impl Default for DecoderConfig {
    /// The original's default, `IAF_DECODER` (ORIGINAL §7).
    fn default() -> Self {
        DecoderConfig::Resnet
    }
}

/// Checks MLP widths: every entry at least 1. An empty list is valid.
pub(crate) fn validate_hidden(hidden: &[i64]) -> Result<()> {
    for (i, &w) in hidden.iter().enumerate() {
        if w < 1 {
            return Err(Error::bad(
                format!("hidden[{i}]"),
                w,
                "a layer width of at least 1",
            ));
        }
    }
    Ok(())
}

impl EncoderConfig {
    /// Checks every field; the error names the field, its value and the valid range.
    pub fn validate(&self) -> Result<()> {
        match self {
            EncoderConfig::Resnet | EncoderConfig::GatedConv => Ok(()),
            EncoderConfig::Mlp { hidden } => validate_hidden(hidden),
        }
    }
}

impl DecoderConfig {
    /// Checks every field; the error names the field, its value and the valid range.
    pub fn validate(&self) -> Result<()> {
        match self {
            DecoderConfig::Resnet | DecoderConfig::GatedConv => Ok(()),
            DecoderConfig::Mlp { hidden } => validate_hidden(hidden),
        }
    }
}

/// Checks the latent size `D`: at least 1.
pub(crate) fn validate_latent(latent: i64) -> Result<()> {
    if latent < 1 {
        return Err(Error::bad("latent", latent, "an integer >= 1"));
    }
    Ok(())
}

/// Checks the log-std offset: any finite number (the original uses -3.0, ORIGINAL §3.1).
pub(crate) fn validate_offset(log_sigma_offset: f64) -> Result<()> {
    if !log_sigma_offset.is_finite() {
        return Err(Error::bad(
            "log_sigma_offset",
            log_sigma_offset,
            "a finite number (the original uses -3.0)",
        ));
    }
    Ok(())
}
