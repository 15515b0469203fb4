//! Flow and batch-norm settings, serde-ready, with the original's defaults (ORIGINAL §3.4.4).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Batch-norm settings shared by every BN layer in the flow and the context predictor
/// (ORIGINAL §2.1), the same type as vae-nets' (see [`vae_nn`]).
pub use vae_nn::BatchNormSettings;

/// What follows each masked layer of the IAF cMADE (NORMALIZATION §1, §4), the same type as the
/// MLP networks' in vae-nets (see [`vae_nn`]).
pub use vae_nn::Normalization;

/// Which flow each layer is (ORIGINAL §3.4, FLOWS §1): one kind for every layer or a list.
pub use crate::kind::FlowKind;

/// How each cMADE receives the context vector (ORIGINAL §3.4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContextMode {
    /// (a), the original's default (`cmade_context_SNF_like = True`): the context is added,
    /// unprojected, after the first masked layer's BN and ELU. Requires
    /// `context_size == hidden[0]`.
    SnfLike,
    /// (b), as in the IAF paper: an unmasked, bias-free `W_c c` (`context_size → hidden[0]`, per
    /// flow layer) is added to the first masked layer's output before its BN.
    Linear,
}

/// Flow hyperparameters. Defaults are the original's (ORIGINAL §3.4.4).
///
/// ```
/// let cfg = vae_flows::FlowConfig { batch_norm: false, ..Default::default() };
/// assert_eq!(cfg.layers, 8);
/// ```
// `remote = "Self"`: the derived forms are the inherent `FlowConfig::{serialize, deserialize}`,
// and the trait impls (below) wrap them to read the deprecated `batch_norm` (NORMALIZATION §1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, remote = "Self")]
pub struct FlowConfig {
    /// `flow_type` (§3.4): one kind name for all layers, or a list of names, one per layer,
    /// whose length must equal `layers` (FLOWS §1.2). Default [`FlowKind::Iaf`].
    pub kind: FlowKind,
    /// `flow_layers`: number of flow steps (§3.4.4). Default 8.
    pub layers: usize,
    /// `cmade_hidden_layers`: hidden widths of every cMADE (§3.4.1). Default `[1920, 1920]`.
    /// Consecutive widths in `[D] + hidden + [D]` must divide each other; multiples of `D`
    /// always give autoregressive masks.
    pub hidden: Vec<i64>,
    /// Deprecated alias of [`normalization`](Self::normalization), the original's
    /// `cmade_batchnorm` (§3.4.2): `false` means `none`; `true`, the default, leaves it to
    /// `normalization`. Old configs and checkpoints load with it; configs are written without
    /// it. Read through [`cmade_normalization`](Self::cmade_normalization).
    #[serde(
        deserialize_with = "deserialize_batch_norm",
        skip_serializing_if = "is_true"
    )]
    pub batch_norm: bool,
    /// What follows each masked layer of the IAF cMADEs: `batch_norm` (the original's BN, no
    /// biases), `weight_norm` (weight normalization with data-dependent initialisation) or
    /// `none` (biases), NORMALIZATION §1, §4. `null` (the default) means `batch_norm` unless
    /// the deprecated `batch_norm` is `false`; a config that sets both to different things is
    /// refused, naming both. Read through [`cmade_normalization`](Self::cmade_normalization).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub normalization: Option<Normalization>,
    /// `cmade_context_SNF_like` (§3.4.2). Default [`ContextMode::SnfLike`].
    pub context: ContextMode,
    /// `context_size`: width of the context vector fed to every step; 0 means no context (§3.1,
    /// §3.4.4). Default 1920.
    pub context_size: i64,
    /// `flow_shift_only`: `z' = z + m` with log-det 0; the `s` head is not built (§3.4.3).
    /// Default `false`.
    pub shift_only: bool,
    /// Householder flow: reflections per layer, `K ≥ 1` (FLOWS §4). Default 1. Other kinds
    /// accept and ignore it.
    pub householder_reflections: usize,
    /// Sylvester flows: `M`, the orthonormal columns of `Q` in `sylvester_orthogonal` and
    /// `sylvester_householder` layers, `1 ≤ M ≤ D` (`D` is checked by [`crate::Flow::new`]);
    /// `null` means `M = D` (FLOWS §5). Default `null`. `sylvester_triangular` always has
    /// `M = D`; other kinds accept and ignore it.
    pub sylvester_vectors: Option<usize>,
    /// `sylvester_householder`: reflections whose product gives `Q`, `≥ 1` (FLOWS §5.2).
    /// Default 8. Other kinds accept and ignore it.
    pub sylvester_reflections: usize,
    /// `sylvester_orthogonal`: the most updates `Q ← Q(I + ½(I − QᵀQ))`, `≥ 1`; it stops
    /// earlier once `max |QᵀQ − I| ≤ 1e-12` (f64) or `1e-5` (f32) (FLOWS §5.1). Default 100.
    /// Other kinds accept and ignore it.
    pub orthogonal_iterations: usize,
    /// NAF: sigmoid units `K ≥ 1` of each latent's deep sigmoidal transformer (FLOWS §6).
    /// Default 8. Other kinds accept and ignore it.
    pub naf_units: usize,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            kind: FlowKind::Iaf,
            layers: 8,
            hidden: vec![1920, 1920],
            batch_norm: true,
            normalization: None,
            context: ContextMode::SnfLike,
            context_size: 1920,
            shift_only: false,
            householder_reflections: 1,
            sylvester_vectors: None,
            sylvester_reflections: 8,
            orthogonal_iterations: crate::orthogonal::DEFAULT_ORTHOGONAL_ITERATIONS,
            naf_units: 8,
        }
    }
}

impl FlowConfig {
    /// Checks the fields that do not depend on the latent size. Mask divisibility and
    /// `sylvester_vectors ≤ D` need `D` and are checked by [`crate::Flow::new`].
    ///
    /// Only the settings some layer's kind uses are checked (FLOWS §1.4): for identity layers
    /// only `context_size >= 0`; `hidden` and the SNF-like context size only with IAF or NAF
    /// layers. A `kind` list must have `layers` entries ([`Error::LayersMismatch`]).
    pub fn validate(&self) -> Result<()> {
        self.cmade_normalization()?;
        if self.context_size < 0 {
            return Err(Error::InvalidConfig {
                field: "context_size",
                value: self.context_size.to_string(),
                expected: "0 (no context) or a positive width",
            });
        }
        let kinds = self.checked_layer_kinds()?;
        let identity_only = !kinds.is_empty() && kinds.iter().all(|k| *k == FlowKind::Identity);
        if self.kind == FlowKind::Identity || identity_only {
            return Ok(());
        }
        if self.layers == 0 {
            return Err(Error::InvalidConfig {
                field: "layers",
                value: "0".into(),
                expected: "at least one flow layer (use no flow, or `kind: identity`)",
            });
        }
        self.validate_kind_settings(&kinds)?;
        if !kinds.iter().any(FlowKind::uses_made) {
            return Ok(());
        }
        if self.hidden.is_empty() {
            return Err(Error::InvalidConfig {
                field: "hidden",
                value: "[]".into(),
                expected: "at least one hidden cMADE width",
            });
        }
        if self.hidden.iter().any(|&h| h <= 0) {
            return Err(Error::InvalidConfig {
                field: "hidden",
                value: format!("{:?}", self.hidden),
                expected: "positive widths",
            });
        }
        if self.context_size > 0
            && self.context == ContextMode::SnfLike
            && self.context_size != self.hidden[0]
        {
            return Err(Error::SnfContextSize {
                context_size: self.context_size,
                first_hidden: self.hidden[0],
            });
        }
        Ok(())
    }

    /// The cMADE widths `[D] + hidden + [D]` for latent size `latent`.
    pub fn units(&self, latent: i64) -> Vec<usize> {
        std::iter::once(latent)
            .chain(self.hidden.iter().copied())
            .chain(std::iter::once(latent))
            .map(|u| u.max(0) as usize)
            .collect()
    }

    /// Whether the flow's layers consume a context vector: `context_size > 0` and some layer is
    /// not an identity layer (every other kind takes the context, FLOWS §1.3).
    pub fn uses_context(&self) -> bool {
        self.context_size > 0 && self.layer_kinds().iter().any(|k| *k != FlowKind::Identity)
    }

    /// Trainable parameters of one layer for latent size `latent`: for the IAF, counted from
    /// the layer list, every masked weight matrix in full (the masked-out entries are stored, as
    /// in the original), BN γ and β but not the running statistics (ORIGINAL §3.3); 0 for the
    /// identity flow; the other kinds' counts are in FLOWS §2–§6. For a per-layer `kind` list,
    /// the largest layer's count. Meaningful for a config that passes
    /// [`validate`](Self::validate).
    ///
    /// The default config with `D = 64` gives 4 062 976.
    pub fn parameters_per_layer(&self, latent: i64) -> i64 {
        (self.layer_kinds().iter())
            .map(|k| self.layer_parameters(k, latent))
            .max()
            .unwrap_or(0)
    }

    /// Trainable parameters of one layer of the single kind `kind` (see
    /// [`parameters_per_layer`](Self::parameters_per_layer)).
    pub fn layer_parameters(&self, kind: &FlowKind, latent: i64) -> i64 {
        match kind {
            FlowKind::Iaf => self.iaf_parameters(latent),
            k => self.other_layer_parameters(k, latent),
        }
    }

    /// Trainable parameters of one IAF step (ORIGINAL §3.3).
    fn iaf_parameters(&self, latent: i64) -> i64 {
        // Per output unit of a masked layer: BN has γ and β, no BN has a bias.
        let per_unit = (self.cmade_normalization())
            .unwrap_or_default()
            .parameters_per_unit();
        let units = self.units(latent);
        let hidden_layers = &units[..units.len() - 1];
        let mut n: i64 = hidden_layers
            .windows(2)
            .map(|p| (p[0] * p[1]) as i64 + per_unit * p[1] as i64)
            .sum();
        if self.context == ContextMode::Linear && self.context_size > 0 {
            n += self.context_size * self.hidden[0];
        }
        let last_hidden = *self.hidden.last().unwrap_or(&0);
        let heads = if self.shift_only { 1 } else { 2 };
        n + heads * (last_hidden * latent + per_unit * latent)
    }

    /// Trainable parameters of the whole flow: the sum of [`layer_parameters`] over the layers
    /// (`layers` × [`parameters_per_layer`] for one kind). The default config with `D = 64`
    /// gives 32 503 808 (ORIGINAL §3.3).
    ///
    /// [`layer_parameters`]: Self::layer_parameters
    /// [`parameters_per_layer`]: Self::parameters_per_layer
    pub fn parameter_count(&self, latent: i64) -> i64 {
        (self.layer_kinds().iter())
            .map(|k| self.layer_parameters(k, latent))
            .sum()
    }
}

/// `FlowConfig`'s `batch_norm` and `normalization` (NORMALIZATION §1): which one a config
/// gave, their meaning, and the canonical form configs are compared and written in.
mod normalization_setting {
    use std::cell::Cell;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{FlowConfig, Normalization};
    use crate::error::{Error, Result};

    thread_local! {
        /// Whether the `FlowConfig` being read on this thread gave `batch_norm`.
        static BATCH_NORM_GIVEN: Cell<bool> = const { Cell::new(false) };
    }

    /// Reads the deprecated `batch_norm` and notes that it was given.
    pub(super) fn deserialize_batch_norm<'de, D: Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<bool, D::Error> {
        let value = bool::deserialize(d)?;
        BATCH_NORM_GIVEN.set(true);
        Ok(value)
    }

    pub(super) fn is_true(b: &bool) -> bool {
        *b
    }

    /// The message for `batch_norm` and `normalization` that say different things.
    fn conflict(batch_norm: bool, normalization: Normalization) -> Error {
        Error::InvalidConfig {
            field: "batch_norm",
            value: format!("{batch_norm} with `normalization` = {normalization}"),
            expected: "one of them: `batch_norm` is the deprecated alias of `normalization` \
                       (true = batch_norm, false = none); remove `batch_norm`",
        }
    }

    impl FlowConfig {
        /// The cMADE's normalization (NORMALIZATION §1): `normalization` if set, else `none`
        /// when the deprecated `batch_norm` is `false`, else `batch_norm`.
        ///
        /// Errors: [`Error::InvalidConfig`] naming both fields when `batch_norm = false` comes
        /// with a `normalization` other than `none` (in a config that was read, also
        /// `batch_norm = true` with one other than `batch_norm`).
        pub fn cmade_normalization(&self) -> Result<Normalization> {
            match (self.batch_norm, self.normalization) {
                (false, None) | (false, Some(Normalization::None)) => Ok(Normalization::None),
                (false, Some(n)) => Err(conflict(false, n)),
                (true, n) => Ok(n.unwrap_or_default()),
            }
        }

        /// This config with the normalization written one way only: `batch_norm` at its
        /// default and `normalization` `None` for batch norm, `Some` otherwise, so that equal
        /// settings compare and serialise equal whichever key gave them. Errors as
        /// [`cmade_normalization`](Self::cmade_normalization).
        pub fn canonical(&self) -> Result<FlowConfig> {
            let n = self.cmade_normalization()?;
            Ok(FlowConfig {
                batch_norm: true,
                normalization: (n != Normalization::BatchNorm).then_some(n),
                ..self.clone()
            })
        }
    }

    impl<'de> Deserialize<'de> for FlowConfig {
        /// The derived form, then [`FlowConfig::canonical`]; a `batch_norm` given alongside a
        /// `normalization` that says otherwise is an error naming both.
        fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
            BATCH_NORM_GIVEN.set(false);
            let raw = FlowConfig::deserialize(d);
            let given = BATCH_NORM_GIVEN.replace(false);
            let raw = raw?;
            if let (true, true, Some(n)) = (given, raw.batch_norm, raw.normalization) {
                if n != Normalization::BatchNorm {
                    return Err(serde::de::Error::custom(conflict(true, n)));
                }
            }
            raw.canonical().map_err(serde::de::Error::custom)
        }
    }

    impl Serialize for FlowConfig {
        /// The derived form of [`FlowConfig::canonical`] (of the config as it is, if its
        /// settings conflict).
        fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            match self.canonical() {
                Ok(c) => FlowConfig::serialize(&c, s),
                Err(_) => FlowConfig::serialize(self, s),
            }
        }
    }
}

use normalization_setting::{deserialize_batch_norm, is_true};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_originals() {
        let cfg = FlowConfig::default();
        assert_eq!(cfg.kind, FlowKind::Iaf);
        assert_eq!(cfg.layers, 8);
        assert_eq!(cfg.hidden, [1920, 1920]);
        assert!(cfg.batch_norm && !cfg.shift_only);
        assert_eq!(cfg.context, ContextMode::SnfLike);
        assert_eq!(cfg.context_size, 1920);
        cfg.validate().unwrap();
        assert_eq!(BatchNormSettings::default().momentum, 0.001);
        assert_eq!(BatchNormSettings::default().eps, 1e-3);
    }

    #[test]
    fn json_round_trips_with_snake_case_names() {
        let cfg = FlowConfig {
            kind: FlowKind::Identity,
            context: ContextMode::Linear,
            ..Default::default()
        };
        let json = serde_json::to_string(&cfg).unwrap();
        assert!(
            json.contains("\"identity\"") && json.contains("\"linear\""),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<FlowConfig>(&json).unwrap(), cfg);
        let partial: FlowConfig =
            serde_json::from_str(r#"{"context": "snf_like", "layers": 2}"#).unwrap();
        assert_eq!(
            partial,
            FlowConfig {
                layers: 2,
                ..Default::default()
            }
        );
        let bn: BatchNormSettings = serde_json::from_str(r#"{"eps": 1e-5}"#).unwrap();
        assert_eq!(bn.momentum, 0.001);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = serde_json::from_str::<FlowConfig>(r#"{"layer": 2}"#).unwrap_err();
        assert!(err.to_string().contains("layer"), "{err}");
        assert!(serde_json::from_str::<BatchNormSettings>(r#"{"decay": 0.999}"#).is_err());
        assert!(serde_json::from_str::<FlowConfig>(r#"{"kind": "IAF"}"#).is_err());
    }

    #[test]
    fn identity_ignores_the_iaf_fields() {
        let cfg = FlowConfig {
            kind: FlowKind::Identity,
            hidden: vec![],
            layers: 0,
            ..Default::default()
        };
        cfg.validate().unwrap();
        assert!(!cfg.uses_context());
    }
}
