//! The encoder-side context predictor (ORIGINAL §3.1).

use tch::nn;
use tch::Tensor;
use vae_nn::BatchNorm;

use crate::config::BatchNormSettings;
use crate::error::{Error, Result};
use crate::layers::glorot;

/// `context = BN(W_ctx · h_last)`: no bias, no activation (ORIGINAL §3.1). Computed once per
/// input and fed to every flow step.
///
/// Variables: `<p>.fc.weight` (`[context_size, in_features]`, Glorot uniform) and `<p>.bn.*`
/// (γ = 1, β = 0). Build it only when [`crate::Flow::context_size`] is `Some` (D21).
#[derive(Debug)]
pub struct ContextPredictor {
    weight: Tensor,
    bn: BatchNorm,
}

impl ContextPredictor {
    /// Builds the predictor. Returns [`Error::InvalidConfig`] for non-positive sizes or bad BN
    /// settings.
    pub fn new(
        p: &nn::Path,
        in_features: i64,
        context_size: i64,
        bn: BatchNormSettings,
    ) -> Result<Self> {
        for (field, value) in [("in_features", in_features), ("context_size", context_size)] {
            if value <= 0 {
                return Err(Error::InvalidConfig {
                    field,
                    value: value.to_string(),
                    expected: "a positive width",
                });
            }
        }
        bn.validate()?;
        let weight = (p / "fc").f_var(
            "weight",
            &[context_size, in_features],
            glorot(in_features, context_size),
        )?;
        let bn = BatchNorm::new(&(p / "bn"), context_size, 0.0, bn)?;
        Ok(ContextPredictor { weight, bn })
    }

    /// Trainable parameters: the weight plus BN γ and β. 450 → 1920 gives 867 840 (§3.3).
    pub fn parameter_count(in_features: i64, context_size: i64) -> i64 {
        in_features * context_size + 2 * context_size
    }

    /// `h [B, in_features]` → context `[B, context_size]`. `train` selects BN batch or running
    /// statistics.
    ///
    /// Panics when `h` is not `[B, in_features]`.
    pub fn forward_t(&self, h: &Tensor, train: bool) -> Tensor {
        let in_features = self.weight.size()[1];
        let size = h.size();
        assert!(
            size.len() == 2 && size[1] == in_features,
            "context predictor expects h of shape [batch, {in_features}], got {size:?}"
        );
        self.bn
            .forward_t(&h.linear::<Tensor>(&self.weight, None), train)
    }
}
