//! How much memory a training run needs, estimated from its config before anything is
//! allocated: `vae train` compares it with the memory available and refuses a run that cannot
//! fit (a width of 10⁹ would otherwise abort libtorch on an allocation of terabytes, or be
//! killed by the kernel after swapping for minutes).
//!
//! The estimate is deliberately simple and errs high: the parameters counted layer by layer
//! (ORIGINAL §3), four copies of each (weights, gradients and Adam's two moments), the
//! activations one training example keeps for the backward pass, six copies of every layer's
//! output (pre-activation, normalised, activated, and their gradients), the training images as
//! f32, and a fixed allowance for libtorch itself. It decides only whether a run can start; it
//! sizes nothing.

use vae_nets::{DecoderConfig, EncoderConfig};

use crate::config::{ExperimentConfig, ModelConfig};
use crate::prior::PriorKind;

const PIXELS: f64 = 784.0;
const FILTERS: f64 = 64.0;
/// Bytes of one f32.
const F32: f64 = 4.0;
/// Weights, gradients and Adam's first and second moments.
const COPIES_PER_PARAMETER: f64 = 4.0;
/// Live tensors per layer output during a training step (see the module doc).
const COPIES_PER_ACTIVATION: f64 = 6.0;
/// libtorch's own code, allocator caches and the process: measured RSS of a smoke run before
/// its first step is about 0.4 GiB.
const FIXED_BYTES: f64 = 0.5 * (1u64 << 30) as f64;
/// The MNIST training file as f32.
const DATA_BYTES: f64 = 60_000.0 * PIXELS * F32;

/// Trainable parameters and activations per example (values) of the encoder, and its hidden
/// width (what the context predictor reads).
fn encoder(cfg: &EncoderConfig, latent: f64) -> (f64, f64, f64) {
    match cfg {
        EncoderConfig::Mlp { hidden, .. } => {
            let (mut params, mut acts, mut prev) = (0.0, PIXELS, PIXELS);
            for &w in hidden {
                let w = w as f64;
                params += (prev + PIXELS) * w + 2.0 * w;
                acts += w;
                prev = w;
            }
            (params + (prev + PIXELS) * 2.0 * latent, acts, prev)
        }
        // Twelve 3×3 convolutions of 64 channels (ORIGINAL §3.1.1), then 3136 → 450 → 2D.
        EncoderConfig::Resnet => (
            12.0 * FILTERS * FILTERS * 9.0 + 3136.0 * 450.0 + 450.0 * 2.0 * latent,
            FILTERS * (5.0 * 784.0 + 4.0 * 196.0 + 4.0 * 49.0),
            450.0,
        ),
        // Two branches of six 5×5 convolutions up to 64 channels and a 7×7 one to 256 (§3.1.2).
        EncoderConfig::GatedConv => (
            2.0 * (32.0 * 25.0 * (1.0 + 32.0 + 64.0) + 64.0 * 64.0 * 50.0 + 64.0 * 256.0 * 49.0)
                + 256.0 * 2.0 * latent,
            2.0 * (32.0 * 784.0 + 96.0 * 196.0 + 128.0 * 49.0),
            256.0,
        ),
    }
}

/// Trainable parameters and activations per example (values) of the decoder.
fn decoder(cfg: &DecoderConfig, latent: f64) -> (f64, f64) {
    match cfg {
        DecoderConfig::Mlp { hidden, .. } => {
            let (mut params, mut acts, mut prev) = (0.0, PIXELS, latent);
            for &w in hidden {
                let w = w as f64;
                params += (prev + latent) * w + 2.0 * w;
                acts += w;
                prev = w;
            }
            (params + (prev + latent) * PIXELS, acts)
        }
        DecoderConfig::Resnet => (
            latent * 49.0 * FILTERS + 12.0 * FILTERS * FILTERS * 9.0,
            FILTERS * (4.0 * 49.0 + 4.0 * 196.0 + 5.0 * 784.0),
        ),
        DecoderConfig::GatedConv => (
            latent * 49.0 * 64.0 + 2.0 * 25.0 * (64.0 * 64.0 + 64.0 * 32.0 + 3.0 * 32.0 * 32.0),
            2.0 * (64.0 * 98.0 + 32.0 * (2.0 * 196.0 + 784.0)),
        ),
    }
}

/// Parameters, activations per example and the prior's batch-independent activations of a
/// model config, in f32 values.
struct Sizes {
    params: f64,
    per_example: f64,
    prior_fixed_acts: f64,
}

fn sizes(m: &ModelConfig) -> Sizes {
    let latent = m.latent as f64;
    let (enc_params, enc_acts, hidden) = encoder(&m.encoder, latent);
    let (dec_params, dec_acts) = decoder(&m.decoder, latent);
    let (flow_params, flow_acts) = match &m.flow {
        Some(f) => {
            let ctx = f.context_size.max(0) as f64;
            // In f64: the integer count (`FlowConfig::parameter_count`) would overflow for the
            // absurd widths this estimate exists to refuse.
            let units: Vec<f64> = std::iter::once(latent)
                .chain(f.hidden.iter().map(|&h| h as f64))
                .chain([latent, latent])
                .collect();
            let weights: f64 = units.windows(2).map(|w| w[0] * w[1] + 2.0 * w[1]).sum();
            let acts: f64 = f.hidden.iter().map(|&h| h as f64).sum::<f64>() + 3.0 * latent;
            // The cMADE estimate for the IAF steps; vae-flows' for the other kinds (FLOWS §7).
            let layers = f.iaf_layers() as f64;
            let (other_params, other_acts) = f.other_layers_memory(m.latent);
            (
                layers * (weights + ctx * f.hidden.first().copied().unwrap_or(0) as f64)
                    + hidden * ctx
                    + 2.0 * ctx
                    + other_params,
                layers * acts + ctx + other_acts,
            )
        }
        None => (0.0, 0.0),
    };
    // The prior (PRIORS §3–§5): a mixture's weights, means and scales; the VampPrior's
    // pseudo-images and their encoder pass (activations of K images, every step, whatever the
    // batch); the flow prior's MADEs.
    let p = &m.prior;
    let (prior_params, prior_fixed_acts, prior_acts) = match p.kind {
        PriorKind::StandardNormal => (0.0, 0.0, 0.0),
        PriorKind::Mog => ((2.0 * latent + 1.0) * p.components as f64, 0.0, 0.0),
        PriorKind::VampPrior => (
            PIXELS * p.pseudo_inputs as f64,
            p.pseudo_inputs as f64 * enc_acts,
            p.pseudo_inputs as f64 * latent,
        ),
        PriorKind::Flow => {
            let units: Vec<f64> = std::iter::once(latent)
                .chain(p.flow_hidden(m.latent).iter().map(|&h| h as f64))
                .chain([latent, latent])
                .collect();
            let made: f64 = units.windows(2).map(|w| w[0] * w[1] + w[1]).sum();
            let acts: f64 = units.iter().sum();
            (p.layers as f64 * made, 0.0, p.layers as f64 * acts)
        }
    };
    Sizes {
        params: enc_params + dec_params + flow_params + prior_params,
        per_example: enc_acts + dec_acts + flow_acts + prior_acts,
        prior_fixed_acts,
    }
}

/// Estimated peak memory of training `cfg`, bytes (see the module doc for what is counted).
/// Finite for every config that passes [`ExperimentConfig::validate`], however wide its layers.
///
/// ```
/// let cfg = vae_model::ExperimentConfig::default();
/// let gib = vae_model::memory::train_bytes(&cfg) / (1u64 << 30) as f64;
/// assert!(gib > 1.0 && gib < 8.0, "{gib}");
/// ```
pub fn train_bytes(cfg: &ExperimentConfig) -> f64 {
    let s = sizes(&cfg.model);
    // Evaluation batches keep nothing for a backward pass: two copies, not six.
    let train = cfg.train.batch_size as f64 * COPIES_PER_ACTIVATION;
    let eval = cfg.train.eval_batch_size as f64 * 2.0;
    FIXED_BYTES
        + DATA_BYTES
        + s.params * COPIES_PER_PARAMETER * F32
        + train.max(eval) * s.per_example * F32
        + s.prior_fixed_acts * COPIES_PER_ACTIVATION * F32
}

/// Estimated memory of the model's weights alone, bytes: what loading a checkpoint of `model`
/// for evaluation allocates before any batch (its parameters in f32 and libtorch itself). A
/// checkpoint is checked against it before its model is built, so a config of absurd widths
/// sealed into a checkpoint ends in a message, not in an allocation failure.
pub fn model_bytes(model: &ModelConfig) -> f64 {
    FIXED_BYTES + sizes(model).params * F32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wider_layers_and_batches_cost_more() {
        let base = ExperimentConfig::default();
        let mut wide = base.clone();
        wide.model.flow.as_mut().unwrap().hidden = vec![1 << 30, 1 << 30];
        assert!(train_bytes(&wide) > 1e18, "{}", train_bytes(&wide));
        let mut big_batch = base.clone();
        big_batch.train.batch_size = 1_000_000;
        assert!(train_bytes(&big_batch) > 100.0 * train_bytes(&base));
        assert!(train_bytes(&wide).is_finite());
        let mut vamp = base.clone();
        vamp.model.prior.kind = PriorKind::VampPrior;
        vamp.model.prior.pseudo_inputs = 65536;
        assert!(train_bytes(&vamp) > train_bytes(&base) + 1e9);
    }

    #[test]
    fn other_flow_kinds_are_counted() {
        let base = ExperimentConfig::default();
        let mut naf = base.clone();
        let flow = naf.model.flow.as_mut().unwrap();
        flow.kind = vae_flows::FlowKind::Naf;
        flow.naf_units = 4096;
        // 8 output layers of 1920 x 3·4096·64 weights alone: about 6e9 parameters.
        assert!(train_bytes(&naf) > 9e10, "{}", train_bytes(&naf));
        assert!(train_bytes(&naf).is_finite());
    }
}
