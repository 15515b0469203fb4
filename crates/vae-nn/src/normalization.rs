//! Which normalization a network puts after its dense (or masked) layers (NORMALIZATION §1).

use serde::{Deserialize, Serialize};

/// The normalization of a network's dense or masked layers, chosen per network in a config
/// (`"normalization": "batch_norm" | "weight_norm" | "none"`, NORMALIZATION §1). It applies to
/// the MLP encoder and decoder (vae-nets) and to the cMADE (vae-flows); the other networks keep
/// the normalization the original gives them.
///
/// - [`BatchNorm`](Self::BatchNorm), the default and the original's: the layer has no bias and
///   a [`BatchNorm`](crate::BatchNorm) after it (γ and β per unit, running statistics).
/// - [`WeightNorm`](Self::WeightNorm): `y = g · (v · x) / ‖v‖ + b` per output unit
///   ([`WeightNorm`](crate::WeightNorm)), `g` and `b` set from the first training batch
///   (data-dependent initialisation, NORMALIZATION §2–§3). No batch statistics: an example's
///   output never depends on the rest of its batch.
/// - [`None`](Self::None): a plain layer with a bias.
///
/// Each costs the same parameters per output unit, except `none` (one instead of two).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalization {
    /// Batch normalization after the layer, no bias in the layer (ORIGINAL §2.1).
    #[default]
    BatchNorm,
    /// Weight normalization with data-dependent initialisation (NORMALIZATION §2).
    WeightNorm,
    /// No normalization; the layer has a bias.
    None,
}

impl Normalization {
    /// The name a config uses: `batch_norm`, `weight_norm` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            Normalization::BatchNorm => "batch_norm",
            Normalization::WeightNorm => "weight_norm",
            Normalization::None => "none",
        }
    }

    /// Whether this is the default, [`Normalization::BatchNorm`] (configs leave it out when
    /// writing it, so that batch-norm configs read as they did before the setting existed).
    pub fn is_batch_norm(&self) -> bool {
        *self == Normalization::BatchNorm
    }

    /// Trainable parameters per output unit besides the weight row: γ and β, `g` and `b`, or a
    /// bias.
    pub fn parameters_per_unit(self) -> i64 {
        match self {
            Normalization::BatchNorm | Normalization::WeightNorm => 2,
            Normalization::None => 1,
        }
    }
}

impl std::fmt::Display for Normalization {
    /// The config name, [`as_str`](Normalization::as_str).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
