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
/// use vae_flows::config::Normalization;
/// let cfg = vae_flows::FlowConfig { normalization: Normalization::None, ..Default::default() };
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
    /// What follows each masked layer of the IAF cMADEs: `batch_norm` (the original's
    /// `cmade_batchnorm`: BN, no biases; the default), `weight_norm` (weight normalization with
    /// data-dependent initialisation) or `none` (biases), NORMALIZATION §1, §4. Written only
    /// when it is not `batch_norm`. Read through
    /// [`cmade_normalization`](Self::cmade_normalization), which also honours `batch_norm`.
    #[serde(
        deserialize_with = "deserialize_normalization",
        skip_serializing_if = "Normalization::is_batch_norm"
    )]
    pub normalization: Normalization,
    /// Deprecated: the boolean `batch_norm` of older configs and checkpoints (the original's
    /// `cmade_batchnorm`), an alias of [`normalization`](Self::normalization): `false` means
    /// `none`, `true` `batch_norm`. Reading a config moves it into `normalization` (a config
    /// that gives both in disagreement is refused, naming both) and leaves `None`; it is never
    /// written. Set `normalization` instead.
    #[serde(skip_serializing)]
    pub batch_norm: Option<bool>,
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
            normalization: Normalization::BatchNorm,
            batch_norm: None,
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
        self.check_kind_list()?;
        let runs = self.kind_runs();
        let identity_only = runs.iter().all(|(k, _)| **k == FlowKind::Identity);
        if identity_only {
            return Ok(());
        }
        if self.layers == 0 {
            return Err(Error::InvalidConfig {
                field: "layers",
                value: "0".into(),
                expected: "at least one flow layer (use no flow, or `kind: identity`)",
            });
        }
        self.validate_kind_settings()?;
        if !runs.iter().any(|(k, _)| k.uses_made()) {
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
        self.context_size > 0
            && (self.kind_runs().iter()).any(|(k, n)| **k != FlowKind::Identity && *n > 0)
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
        (self.kind_runs().into_iter())
            .filter(|(_, n)| *n > 0)
            .map(|(k, _)| self.layer_parameters(k, latent))
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
        (self.kind_runs().into_iter())
            .map(|(k, n)| self.layer_parameters(k, latent) * n as i64)
            .sum()
    }
}

/// `FlowConfig`'s `normalization` and its deprecated alias `batch_norm` (NORMALIZATION §1):
/// which one a config gave, their meaning, and the one form configs are read into and written
/// from.
mod normalization_setting {
    use std::cell::Cell;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{FlowConfig, Normalization};
    use crate::error::{Error, Result};

    thread_local! {
        /// Whether the `FlowConfig` being read on this thread gave `normalization`.
        static NORMALIZATION_GIVEN: Cell<bool> = const { Cell::new(false) };
    }

    /// Reads `normalization` and notes that it was given (its absence and an explicit
    /// `batch_norm` are otherwise the same value).
    pub(super) fn deserialize_normalization<'de, D: Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<Normalization, D::Error> {
        let value = Normalization::deserialize(d)?;
        NORMALIZATION_GIVEN.set(true);
        Ok(value)
    }

    /// What the deprecated `batch_norm` means.
    fn alias(batch_norm: bool) -> Normalization {
        if batch_norm {
            Normalization::BatchNorm
        } else {
            Normalization::None
        }
    }

    /// The message for `batch_norm` and `normalization` that say different things.
    fn conflict(batch_norm: bool, normalization: Normalization) -> Error {
        Error::InvalidConfig {
            field: "batch_norm",
            value: format!("{batch_norm} with `normalization` = {normalization}"),
            expected: "one of them: `batch_norm` is the deprecated alias of `normalization` \
                       (true = batch_norm, false = none); remove `batch_norm` (or set it to null)",
        }
    }

    impl FlowConfig {
        /// The cMADE's normalization (NORMALIZATION §1): `normalization`, or what the
        /// deprecated `batch_norm` means when it is set and `normalization` is at its default.
        ///
        /// Errors: [`Error::InvalidConfig`] naming both fields when `batch_norm` is set and
        /// `normalization` is another non-default value than it means.
        pub fn cmade_normalization(&self) -> Result<Normalization> {
            match (self.batch_norm, self.normalization) {
                (None, n) => Ok(n),
                (Some(b), Normalization::BatchNorm) => Ok(alias(b)),
                (Some(b), n) if n == alias(b) => Ok(n),
                (Some(b), n) => Err(conflict(b, n)),
            }
        }

        /// This config with `batch_norm` moved into `normalization`, so that equal settings
        /// compare and serialise equal whichever key gave them. Errors as
        /// [`cmade_normalization`](Self::cmade_normalization).
        pub fn canonical(&self) -> Result<FlowConfig> {
            Ok(FlowConfig {
                normalization: self.cmade_normalization()?,
                batch_norm: None,
                ..self.clone()
            })
        }
    }

    impl<'de> Deserialize<'de> for FlowConfig {
        /// The derived form, then [`FlowConfig::canonical`]. A `batch_norm` given with a
        /// `normalization` that means something else is an error naming both (also
        /// `"batch_norm": false` with `"normalization": "batch_norm"`).
        fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
            NORMALIZATION_GIVEN.set(false);
            let raw = FlowConfig::deserialize(d);
            let given = NORMALIZATION_GIVEN.replace(false);
            let raw = raw?;
            if let (Some(b), true) = (raw.batch_norm, given) {
                if raw.normalization != alias(b) {
                    return Err(serde::de::Error::custom(conflict(b, raw.normalization)));
                }
            }
            raw.canonical().map_err(serde::de::Error::custom)
        }
    }

    impl Serialize for FlowConfig {
        /// The derived form of [`FlowConfig::canonical`] (of the config as it is, if its
        /// settings conflict): `batch_norm` is never written.
        fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            match self.canonical() {
                Ok(c) => FlowConfig::serialize(&c, s),
                Err(_) => FlowConfig::serialize(self, s),
            }
        }
    }
}

use normalization_setting::deserialize_normalization;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_originals() {
        let cfg = FlowConfig::default();
        assert_eq!(cfg.kind, FlowKind::Iaf);
        assert_eq!(cfg.layers, 8);
        assert_eq!(cfg.hidden, [1920, 1920]);
        assert!(cfg.normalization == Normalization::BatchNorm && !cfg.shift_only);
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
