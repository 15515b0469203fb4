//! Serde-ready configuration of the networks, with the original's defaults and one `validate()`
//! per type.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Batch-normalization constants shared by every BN layer of a network (ORIGINAL §2.1), the
/// same type as vae-flows' (see [`vae_nn`]).
pub use vae_nn::BatchNormSettings;

/// The normalization of the MLP networks' layers (NORMALIZATION §1), the same type as the
/// cMADE's in vae-flows (see [`vae_nn`]).
pub use vae_nn::Normalization;

/// Which encoder family to build (ORIGINAL §3.1).
///
/// In JSON: `{"type": "resnet"}`, `{"type": "gated_conv"}` or `{"type": "mlp", "hidden": [1000,
/// 1000, 1000]}`, the MLP optionally with `"normalization": "batch_norm" | "weight_norm" |
/// "none"` (default `batch_norm`, the original's; left out when writing the default, so that
/// batch-norm configs read as before the setting existed, NORMALIZATION §1). `hidden` has no
/// default, as in the original (`nn_hidden_layers` is required for `NONCONV_ENCODER`); an empty
/// list is valid and makes `h_last = x` (ORIGINAL §3.1.3). The ResNet and gated-conv families
/// take no `normalization`: the ResNet keeps its batch norm, the gated convolutions have none
/// (a config that sets it is refused, naming the family).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    deny_unknown_fields,
    try_from = "EncoderRepr"
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
        /// What follows each dense layer (the hidden ones and the output layer): batch norm
        /// (the original), weight norm with data-dependent initialisation, or nothing but a
        /// bias (NORMALIZATION §1–§2).
        #[serde(default, skip_serializing_if = "Normalization::is_batch_norm")]
        normalization: Normalization,
    },
}

/// Which decoder family to build (ORIGINAL §3.2). Same JSON shape as [`EncoderConfig`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    deny_unknown_fields,
    try_from = "DecoderRepr"
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
        /// What follows each hidden dense layer; the logits layer has no normalization and no
        /// bias whatever this says, as in the original (NORMALIZATION §1–§2).
        #[serde(default, skip_serializing_if = "Normalization::is_batch_norm")]
        normalization: Normalization,
    },
}

/// What configs deserialize through. Serde's `deny_unknown_fields` is not enforced on the unit
/// variants of an internally tagged enum (`{"type": "resnet", "filters": 32}` would be accepted),
/// so the field-less families are read as struct variants, which do refuse extra fields; their
/// `normalization` is read only to be refused with a message that says why.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum EncoderRepr {
    Resnet {
        normalization: Option<Normalization>,
    },
    GatedConv {
        normalization: Option<Normalization>,
    },
    Mlp {
        hidden: Vec<i64>,
        #[serde(default)]
        normalization: Normalization,
    },
}

/// The message for a `normalization` given to a family that has no such setting.
fn not_configurable(network: &str, family: &str, keeps: &str) -> String {
    format!(
        "`normalization` applies to the MLP {network} only (`\"type\": \"mlp\"`): the {family} \
         {network} {keeps}; remove the key"
    )
}

impl TryFrom<EncoderRepr> for EncoderConfig {
    type Error = String;
    fn try_from(r: EncoderRepr) -> std::result::Result<Self, String> {
        match r {
            EncoderRepr::Resnet {
                normalization: None,
            } => Ok(EncoderConfig::Resnet),
            EncoderRepr::GatedConv {
                normalization: None,
            } => Ok(EncoderConfig::GatedConv),
            EncoderRepr::Mlp {
                hidden,
                normalization,
            } => Ok(EncoderConfig::Mlp {
                hidden,
                normalization,
            }),
            EncoderRepr::Resnet { .. } => Err(not_configurable(
                "encoder",
                "resnet",
                "keeps its batch norm (ORIGINAL §3.1.1)",
            )),
            EncoderRepr::GatedConv { .. } => Err(not_configurable(
                "encoder",
                "gated_conv",
                "has no normalization (ORIGINAL §3.1.2)",
            )),
        }
    }
}

/// See [`EncoderRepr`].
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum DecoderRepr {
    Resnet {
        normalization: Option<Normalization>,
    },
    GatedConv {
        normalization: Option<Normalization>,
    },
    Mlp {
        hidden: Vec<i64>,
        #[serde(default)]
        normalization: Normalization,
    },
}

impl TryFrom<DecoderRepr> for DecoderConfig {
    type Error = String;
    fn try_from(r: DecoderRepr) -> std::result::Result<Self, String> {
        match r {
            DecoderRepr::Resnet {
                normalization: None,
            } => Ok(DecoderConfig::Resnet),
            DecoderRepr::GatedConv {
                normalization: None,
            } => Ok(DecoderConfig::GatedConv),
            DecoderRepr::Mlp {
                hidden,
                normalization,
            } => Ok(DecoderConfig::Mlp {
                hidden,
                normalization,
            }),
            DecoderRepr::Resnet { .. } => Err(not_configurable(
                "decoder",
                "resnet",
                "keeps its batch norm (ORIGINAL §3.2.1)",
            )),
            DecoderRepr::GatedConv { .. } => Err(not_configurable(
                "decoder",
                "gated_conv",
                "has no normalization (ORIGINAL §3.2.2)",
            )),
        }
    }
}

impl EncoderConfig {
    /// The MLP family with hidden widths `hidden` and the original's batch norm.
    pub fn mlp(hidden: Vec<i64>) -> Self {
        EncoderConfig::Mlp {
            hidden,
            normalization: Normalization::BatchNorm,
        }
    }

    /// The configured normalization: `Some` for the MLP, `None` for the families without the
    /// setting.
    pub fn normalization(&self) -> Option<Normalization> {
        match self {
            EncoderConfig::Mlp { normalization, .. } => Some(*normalization),
            EncoderConfig::Resnet | EncoderConfig::GatedConv => None,
        }
    }
}

impl DecoderConfig {
    /// The MLP family with hidden widths `hidden` and the original's batch norm.
    pub fn mlp(hidden: Vec<i64>) -> Self {
        DecoderConfig::Mlp {
            hidden,
            normalization: Normalization::BatchNorm,
        }
    }

    /// The configured normalization: `Some` for the MLP, `None` for the families without the
    /// setting.
    pub fn normalization(&self) -> Option<Normalization> {
        match self {
            DecoderConfig::Mlp { normalization, .. } => Some(*normalization),
            DecoderConfig::Resnet | DecoderConfig::GatedConv => None,
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
            EncoderConfig::Mlp { hidden, .. } => validate_hidden(hidden),
        }
    }
}

impl DecoderConfig {
    /// Checks every field; the error names the field, its value and the valid range.
    pub fn validate(&self) -> Result<()> {
        match self {
            DecoderConfig::Resnet | DecoderConfig::GatedConv => Ok(()),
            DecoderConfig::Mlp { hidden, .. } => validate_hidden(hidden),
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
