//! The flow prior: a masked autoregressive flow (MAF direction) of `N(0, I)` (PRIORS §5).

use tch::{nn, Tensor};
use vae_eval::model::standard_normal_log_density;
use vae_flows::{made_masks, MaskOrder, MaskedLinear};

use super::LatentPrior;
use crate::error::Result;

/// One MADE of the flow prior: `z [..., D]` to a shift `m` and a log-scale `s`, each `[..., D]`,
/// output `d` depending only on the latents before `d` in the layer's [`MaskOrder`] (PRIORS §5.1).
///
/// ```text
/// h = ELU((M_0 ⊙ W_0) z + b_0),  h = ELU((M_l ⊙ W_l) h + b_l)  for each hidden width
/// m = (M_L ⊙ W_m) h + b_m,       s = (M_L ⊙ W_s) h + b_s
/// ```
///
/// Variables: `h{i}.weight`, `h{i}.bias` (Glorot uniform and 0, as vae-flows' layers),
/// `m.weight`, `m.bias`, `s.weight`, `s.bias` (all 0, PRIORS §5.3).
#[derive(Debug)]
pub struct MadeLayer {
    order: MaskOrder,
    hidden: Vec<MaskedLinear>,
    m: MaskedLinear,
    s: MaskedLinear,
}

impl MadeLayer {
    /// A MADE for `latent` dimensions with hidden widths `hidden` (at least one) in `order`,
    /// variables under `p`. Errors from vae-flows' mask rule (indivisible widths).
    pub fn new(p: &nn::Path, latent: i64, hidden: &[i64], order: MaskOrder) -> Result<MadeLayer> {
        let mut units = vec![latent as usize];
        units.extend(hidden.iter().map(|&h| h as usize));
        units.push(latent as usize);
        let masks = made_masks(&units, order)?;
        let (last, inner) = masks
            .split_last()
            .expect("made_masks gives one mask per layer");
        let hidden = inner
            .iter()
            .enumerate()
            .map(|(i, mask)| MaskedLinear::new(&(p / format!("h{i}")), mask, Some(0.0)))
            .collect::<vae_flows::Result<Vec<_>>>()?;
        let head = |name: &str| -> Result<MaskedLinear> {
            let q = p / name;
            let shape = [last.n_out() as i64, last.n_in() as i64];
            let weight = q.f_var("weight", &shape, nn::Init::Const(0.0))?;
            let bias = q.f_var("bias", &shape[..1], nn::Init::Const(0.0))?;
            Ok(MaskedLinear::from_tensors(weight, Some(bias), last)?)
        };
        Ok(MadeLayer {
            order,
            hidden,
            m: head("m")?,
            s: head("s")?,
        })
    }

    /// The layer's autoregressive order.
    pub fn order(&self) -> MaskOrder {
        self.order
    }

    /// `(m, s)`, each shaped as `z` `[..., D]`.
    pub fn forward(&self, z: &Tensor) -> (Tensor, Tensor) {
        let mut h = z.shallow_clone();
        for layer in &self.hidden {
            h = layer.forward(&h).elu();
        }
        (self.m.forward(&h), self.s.forward(&h))
    }

    /// The layer in the density direction, `u = (z − m(z)) ⊙ exp(−s(z))`, with `Σ_d s_d`
    /// `[...]` (`log |det ∂u/∂z| = −Σ_d s_d`): one pass.
    pub fn to_noise(&self, z: &Tensor) -> (Tensor, Tensor) {
        let (m, s) = self.forward(z);
        let u = (z - m) * (-&s).exp();
        (u, s.sum_dim_intlist(-1, false, s.kind()))
    }

    /// The inverse, `z = u ⊙ exp(s(z)) + m(z)`, solved one coordinate at a time in the layer's
    /// order: after pass `i` the first `i` coordinates of that order are exact, because their
    /// `m` and `s` depend only on coordinates before them; `D` passes.
    pub fn from_noise(&self, u: &Tensor) -> Tensor {
        let d = *u.size().last().expect("u has a latent dimension");
        let mut z = u.zeros_like();
        for _ in 0..d {
            let (m, s) = self.forward(&z);
            z = u * s.exp() + m;
        }
        z
    }
}

/// `p(z)`: `L` MADE layers map `z` to `u = f_L ∘ … ∘ f_1 (z)`, `u ~ N(0, I)`, each layer
/// `u = (z − m(z)) ⊙ exp(−s(z))`, so that
/// `log p(z) = log N(u; 0, I) − Σ_layers Σ_d s_d` in one pass (the masked autoregressive flow
/// direction, as the autoregressive-flow prior of the variational lossy autoencoder). Layer `t`
/// uses [`MaskOrder::for_layer`]`(t)`, so the order alternates. Sampling inverts the layers, `D`
/// passes each (PRIORS §5).
///
/// Variables (under the path given to [`FlowPrior::new`]): `l{t}.*` for layer `t`, see
/// [`MadeLayer`]. The heads start at zero, so the initial prior is exactly `N(0, I)`
/// (PRIORS §5.3).
#[derive(Debug)]
pub struct FlowPrior {
    latent: i64,
    layers: Vec<MadeLayer>,
}

impl FlowPrior {
    /// `layers` MADEs of widths `hidden` over `latent` dimensions, under `p`; the hidden
    /// weights are drawn from tch's global generator.
    pub fn new(p: &nn::Path, latent: i64, layers: usize, hidden: &[i64]) -> Result<FlowPrior> {
        let layers = (0..layers)
            .map(|t| {
                MadeLayer::new(
                    &(p / format!("l{t}")),
                    latent,
                    hidden,
                    MaskOrder::for_layer(t),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(FlowPrior { latent, layers })
    }

    /// The layers, first (applied to `z` first) to last.
    pub fn layers(&self) -> &[MadeLayer] {
        &self.layers
    }

    /// `u` (shaped as `z` `[..., D]`) and `log |det ∂u/∂z|` `[...]`: the density direction.
    pub fn to_noise(&self, z: &Tensor) -> (Tensor, Tensor) {
        let mut u = z.shallow_clone();
        let mut log_det: Option<Tensor> = None;
        for layer in &self.layers {
            let (next, sum_s) = layer.to_noise(&u);
            u = next;
            log_det = Some(match log_det {
                None => -sum_s,
                Some(acc) => acc - sum_s,
            });
        }
        let log_det = log_det.expect("a flow prior has at least one layer");
        (u, log_det)
    }

    /// `z` from noise `u` `[..., D]`, the inverse of [`to_noise`](Self::to_noise): the layers in
    /// reverse, each solved sequentially (`D · L` MADE passes).
    pub fn from_noise(&self, u: &Tensor) -> Tensor {
        self.layers
            .iter()
            .rev()
            .fold(u.shallow_clone(), |x, layer| layer.from_noise(&x))
    }
}

impl LatentPrior for FlowPrior {
    fn latent(&self) -> i64 {
        self.latent
    }

    /// `log N(u; 0, I) + log |det ∂u/∂z|`, nats, one pass through the layers.
    fn log_prob(&self, z: &Tensor) -> Tensor {
        let (u, log_det) = self.to_noise(z);
        standard_normal_log_density(&u) + log_det
    }

    /// `u ~ N(0, I)` pushed through [`from_noise`](FlowPrior::from_noise).
    fn sample(&self, n: i64) -> Tensor {
        tch::no_grad(|| {
            let w = &self.layers[0].m.weight;
            let u = Tensor::randn([n, self.latent], (w.kind(), w.device()));
            self.from_noise(&u)
        })
    }

    /// Every layer's hidden activations (before and after the ELU), `m`, `s` and the running
    /// `u`, f32, twice for what the gradient keeps.
    fn bytes_per_row(&self) -> u64 {
        let per_layer: i64 = self
            .layers
            .first()
            .map(|l| l.hidden.iter().map(|h| 2 * h.mask().size()[0]).sum::<i64>())
            .unwrap_or(0)
            + 4 * self.latent;
        8 * (per_layer * self.layers.len() as i64) as u64
    }
}
