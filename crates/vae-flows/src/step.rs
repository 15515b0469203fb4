//! One flow layer of any kind (FLOWS §1): building it, running it, and the per-kind sizes the
//! config reports (parameters, multiply-adds, widest activation).

use tch::{nn, Tensor};

use crate::config::{ContextMode, FlowConfig, FlowKind};
use crate::error::{Error, Result};
use crate::householder::HouseholderStep;
use crate::iaf::IafStep;
use crate::mask::MaskOrder;
use crate::naf::NafStep;
use crate::planar::PlanarStep;
use crate::radial::RadialStep;
use crate::sylvester::{SylvesterQ, SylvesterStep};

/// Orthogonalization updates assumed per forward pass in [`FlowConfig::forward_macs`]: the
/// iteration stops at its tolerance, typically after 10–25 updates for random square inputs.
const ORTHOGONAL_ITERATIONS_ESTIMATE: usize = 20;

/// A layer as the flow stores it; IAF steps live in their own list (index here), so that
/// [`crate::Flow::steps`] can lend them as a slice.
#[derive(Debug)]
pub(crate) enum Layer {
    Iaf(usize),
    Identity,
    Planar(PlanarStep),
    Radial(RadialStep),
    Householder(HouseholderStep),
    Sylvester(SylvesterStep),
    Naf(NafStep),
}

/// One layer of a [`crate::Flow`], borrowed, from [`crate::Flow::layers`].
#[derive(Debug, Clone, Copy)]
pub enum FlowLayer<'a> {
    /// An IAF step (ORIGINAL §3.4.3).
    Iaf(&'a IafStep),
    /// An identity layer.
    Identity,
    /// A planar layer (FLOWS §2).
    Planar(&'a PlanarStep),
    /// A radial layer (FLOWS §3).
    Radial(&'a RadialStep),
    /// A Householder layer (FLOWS §4).
    Householder(&'a HouseholderStep),
    /// A Sylvester layer of any `Q` variant (FLOWS §5).
    Sylvester(&'a SylvesterStep),
    /// A NAF layer (FLOWS §6).
    Naf(&'a NafStep),
}

/// How layer `t` of Sylvester kind `kind` builds `Q`.
fn sylvester_q(cfg: &FlowConfig, kind: &FlowKind, t: usize) -> SylvesterQ {
    match kind {
        FlowKind::SylvesterOrthogonal => SylvesterQ::Orthogonal {
            iterations: cfg.orthogonal_iterations,
        },
        FlowKind::SylvesterHouseholder => SylvesterQ::Householder {
            reflections: cfg.sylvester_reflections,
        },
        _ => SylvesterQ::Triangular {
            reversed: MaskOrder::for_layer(t) == MaskOrder::Reversed,
        },
    }
}

impl Layer {
    /// Builds layer `t` of single kind `kind` other than the IAF under `p` (the layer's own
    /// path, `…/step{t}`). `cfg` has been validated.
    pub(crate) fn build(
        p: &nn::Path,
        t: usize,
        kind: &FlowKind,
        latent: i64,
        cfg: &FlowConfig,
    ) -> Result<Layer> {
        let c = cfg.context_size;
        Ok(match kind {
            FlowKind::Identity => Layer::Identity,
            FlowKind::Planar => Layer::Planar(PlanarStep::new(p, latent, c)?),
            FlowKind::Radial => Layer::Radial(RadialStep::new(p, latent, c)?),
            FlowKind::Householder => Layer::Householder(HouseholderStep::new(
                p,
                latent,
                cfg.householder_reflections,
                c,
            )?),
            FlowKind::SylvesterOrthogonal
            | FlowKind::SylvesterHouseholder
            | FlowKind::SylvesterTriangular => {
                let m = cfg.sylvester_vectors.unwrap_or(latent as usize);
                if kind != &FlowKind::SylvesterTriangular && m as i64 > latent {
                    return Err(Error::LatentSetting {
                        field: "sylvester_vectors",
                        value: m.to_string(),
                        latent,
                        expected: "at most the latent size (or null for M = latent size)",
                    });
                }
                Layer::Sylvester(SylvesterStep::new(
                    p,
                    latent,
                    m,
                    sylvester_q(cfg, kind, t),
                    c,
                )?)
            }
            FlowKind::Naf => Layer::Naf(NafStep::new(p, latent, cfg, MaskOrder::for_layer(t))?),
            FlowKind::Iaf | FlowKind::PerLayer(_) => {
                unreachable!("the flow builds IAF steps itself and passes single kinds")
            }
        })
    }

    /// The layer's forward pass `(z' [B, D], log-det [B])`; `None` for an IAF index, which
    /// the flow runs itself.
    pub(crate) fn forward(&self, z: &Tensor, context: Option<&Tensor>) -> Option<(Tensor, Tensor)> {
        Some(match self {
            Layer::Iaf(_) => return None,
            Layer::Identity => (
                z.shallow_clone(),
                Tensor::zeros([z.size()[0]], (z.kind(), z.device())),
            ),
            Layer::Planar(s) => s.forward(z, context),
            Layer::Radial(s) => s.forward(z, context),
            Layer::Householder(s) => s.forward(z, context),
            Layer::Sylvester(s) => s.forward(z, context),
            Layer::Naf(s) => s.forward(z, context),
        })
    }

    /// The layer's inverse; `None` for an IAF index or a Sylvester layer (no inverse).
    pub(crate) fn inverse(&self, z: &Tensor, context: Option<&Tensor>) -> Option<Tensor> {
        Some(match self {
            Layer::Iaf(_) | Layer::Sylvester(_) => return None,
            Layer::Identity => z.shallow_clone(),
            Layer::Planar(s) => s.inverse(z, context),
            Layer::Radial(s) => s.inverse(z, context),
            Layer::Householder(s) => s.inverse(z, context),
            Layer::Naf(s) => s.inverse(z, context),
        })
    }
}

impl FlowConfig {
    /// [`layer_parameters`](Self::layer_parameters) for every kind but the IAF; a list counts
    /// the sum of its layers.
    pub(crate) fn other_layer_parameters(&self, kind: &FlowKind, latent: i64) -> i64 {
        let c = self.context_size.max(0);
        match kind {
            FlowKind::Iaf => self.layer_parameters(kind, latent),
            FlowKind::Identity => 0,
            FlowKind::Planar => PlanarStep::parameter_count(latent, c),
            FlowKind::Radial => RadialStep::parameter_count(latent, c),
            FlowKind::Householder => {
                HouseholderStep::parameter_count(latent, self.householder_reflections, c)
            }
            FlowKind::SylvesterOrthogonal
            | FlowKind::SylvesterHouseholder
            | FlowKind::SylvesterTriangular => SylvesterStep::parameter_count(
                latent,
                self.sylvester_vectors.unwrap_or(latent as usize),
                sylvester_q(self, kind, 0),
                c,
            ),
            FlowKind::Naf => NafStep::parameter_count(self, latent),
            FlowKind::PerLayer(kinds) => {
                kinds.iter().map(|k| self.layer_parameters(k, latent)).sum()
            }
        }
    }

    /// Multiply-adds of one example's pass through the flow's layers (not the context
    /// predictor), counting matrix products only, masked matrices in full (FLOWS §7):
    /// IAF and NAF their MADEs, the other kinds their amortizing heads (`P·C`) and their
    /// transforms; orthogonal Sylvester layers count 20 orthogonalization updates. An estimate
    /// for throughput figures.
    pub fn forward_macs(&self, latent: i64) -> f64 {
        let d = latent as f64;
        let c = self.context_size.max(0) as f64;
        let head = |values: i64| values as f64 * c;
        let made = |outputs: f64| {
            let mut widths: Vec<f64> = vec![d];
            widths.extend(self.hidden.iter().map(|&h| h as f64));
            widths.push(outputs);
            let mut n: f64 = widths.windows(2).map(|w| w[0] * w[1]).sum();
            if self.context == ContextMode::Linear && c > 0.0 {
                n += c * widths[1];
            }
            n
        };
        let per_layer = |kind: &FlowKind| -> f64 {
            match kind {
                FlowKind::Iaf => {
                    let heads = if self.shift_only { 1.0 } else { 2.0 };
                    let last = self.hidden.last().copied().unwrap_or(0) as f64;
                    made(d) + (heads - 1.0) * last * d
                }
                FlowKind::Identity => 0.0,
                FlowKind::Planar => head(2 * latent + 1) + 4.0 * d,
                FlowKind::Radial => head(latent + 2) + 2.0 * d,
                FlowKind::Householder => {
                    let k = self.householder_reflections as i64;
                    head(k * latent) + 2.0 * (k as f64) * d
                }
                FlowKind::SylvesterOrthogonal
                | FlowKind::SylvesterHouseholder
                | FlowKind::SylvesterTriangular => {
                    let mi = self.sylvester_vectors.unwrap_or(latent as usize) as i64;
                    let (mi, q_inputs, q_macs) = match kind {
                        FlowKind::SylvesterOrthogonal => {
                            let m = mi as f64;
                            let updates = self
                                .orthogonal_iterations
                                .min(ORTHOGONAL_ITERATIONS_ESTIMATE);
                            (mi, latent * mi, 2.0 * d * m * m * updates as f64)
                        }
                        FlowKind::SylvesterHouseholder => {
                            let k = self.sylvester_reflections as f64;
                            (
                                mi,
                                self.sylvester_reflections as i64 * latent,
                                2.0 * k * d * mi as f64,
                            )
                        }
                        _ => (latent, 0, 0.0),
                    };
                    let m = mi as f64;
                    let transform = if q_inputs == 0 { 0.0 } else { 2.0 * d * m } + 2.0 * m * m;
                    head(mi * mi + 2 * mi + q_inputs) + q_macs + transform
                }
                FlowKind::Naf => made(3.0 * self.naf_units as f64 * d),
                FlowKind::PerLayer(_) => 0.0,
            }
        };
        (self.kind_runs().into_iter())
            .map(|(k, n)| per_layer(k) * n as f64)
            .sum()
    }

    /// The widest per-example activation of the flow's layers, in values (FLOWS §7): MADE
    /// hidden widths and the context for IAF and NAF (and NAF's `3·K·D` outputs), the amortized
    /// parameter vectors and `Q` (`D·M`) for the others, 0 without layers or for identity layers
    /// only. For memory estimates.
    pub fn largest_activation(&self, latent: i64) -> i64 {
        let c = if self.uses_context() {
            self.context_size
        } else {
            0
        };
        let made = || {
            self.hidden
                .iter()
                .copied()
                .chain([self.context_size])
                .max()
                .unwrap_or(0)
        };
        let per_layer = |kind: &FlowKind| -> i64 {
            match kind {
                FlowKind::Iaf => made(),
                FlowKind::Naf => made().max(3 * self.naf_units as i64 * latent),
                FlowKind::Identity | FlowKind::PerLayer(_) => 0,
                FlowKind::Planar => c.max(2 * latent + 1),
                FlowKind::Radial => c.max(latent + 2),
                FlowKind::Householder => c.max(self.householder_reflections as i64 * latent),
                FlowKind::SylvesterOrthogonal
                | FlowKind::SylvesterHouseholder
                | FlowKind::SylvesterTriangular => {
                    let m = match kind {
                        FlowKind::SylvesterTriangular => latent,
                        _ => self.sylvester_vectors.unwrap_or(latent as usize) as i64,
                    };
                    let q_inputs = match kind {
                        FlowKind::SylvesterHouseholder => {
                            self.sylvester_reflections as i64 * latent
                        }
                        _ => latent * m,
                    };
                    c.max(m * m + 2 * m + q_inputs).max(latent * m)
                }
            }
        };
        (self.kind_runs().into_iter())
            .filter(|(_, n)| *n > 0)
            .map(|(k, _)| per_layer(k))
            .max()
            .unwrap_or(0)
    }

    /// Number of IAF layers.
    pub fn iaf_layers(&self) -> usize {
        (self.kind_runs().into_iter())
            .filter(|(k, _)| **k == FlowKind::Iaf)
            .map(|(_, n)| n)
            .sum()
    }

    /// For memory estimates, the layers that are not IAF steps (FLOWS §7): `(trainable
    /// parameters, activation values one training example keeps for the backward pass)`, summed
    /// over those layers, in f64 so that no setting overflows. Rough and on the high side:
    /// every head's output, the transform's intermediate vectors, `Q` and the Gram matrix of 20
    /// orthogonalization updates, NAF's hidden layers and eight `[D, K]` tensors. The IAF steps
    /// are left to the caller's cMADE estimate ([`iaf_layers`](Self::iaf_layers) of them).
    pub fn other_layers_memory(&self, latent: i64) -> (f64, f64) {
        let d = latent as f64;
        let c = self.context_size.max(0) as f64;
        let heads = |values: f64| values * (c + 1.0);
        let m_of = |kind: &FlowKind| match kind {
            FlowKind::SylvesterTriangular => d,
            _ => self.sylvester_vectors.map_or(d, |m| m as f64),
        };
        let per_layer = |kind: &FlowKind| -> (f64, f64) {
            match kind {
                FlowKind::Iaf | FlowKind::Identity | FlowKind::PerLayer(_) => (0.0, 0.0),
                FlowKind::Planar => (heads(2.0 * d + 1.0), 2.0 * d + 1.0 + 3.0 * d),
                FlowKind::Radial => (heads(d + 2.0), d + 2.0 + 3.0 * d),
                FlowKind::Householder => {
                    let p = self.householder_reflections as f64 * d;
                    (heads(p), 3.0 * p)
                }
                FlowKind::SylvesterOrthogonal
                | FlowKind::SylvesterHouseholder
                | FlowKind::SylvesterTriangular => {
                    let m = m_of(kind);
                    let (q_inputs, q_values) = match kind {
                        FlowKind::SylvesterOrthogonal => (
                            d * m,
                            (d * m + m * m) * ORTHOGONAL_ITERATIONS_ESTIMATE as f64,
                        ),
                        FlowKind::SylvesterHouseholder => {
                            let k = self.sylvester_reflections as f64;
                            (k * d, k * d * m)
                        }
                        _ => (0.0, 0.0),
                    };
                    let p = m * m + 2.0 * m + q_inputs;
                    (heads(p), p + q_values + 3.0 * m * m + 4.0 * m + 2.0 * d)
                }
                FlowKind::Naf => {
                    let out = 3.0 * self.naf_units as f64 * d;
                    let mut widths = vec![d];
                    widths.extend(self.hidden.iter().map(|&h| h as f64));
                    widths.push(out);
                    let mut params: f64 = widths.windows(2).map(|w| w[0] * w[1] + w[1]).sum();
                    if self.context == ContextMode::Linear {
                        params += c * widths[1];
                    }
                    let hidden: f64 = self.hidden.iter().map(|&h| h as f64).sum();
                    (params, hidden + out + 8.0 * self.naf_units as f64 * d)
                }
            }
        };
        (self.kind_runs().into_iter()).fold((0.0, 0.0), |(p, a), (k, n)| {
            let (lp, la) = per_layer(k);
            (p + lp * n as f64, a + la * n as f64)
        })
    }
}
