//! A cost model of the architectures: multiply-add counts for the benchmark's GFLOP/s, and the
//! activation memory per model row that sizes importance sampling's chunks
//! ([`VaeLatentModel`](crate::VaeLatentModel) reports it to vae-eval, so a library user's
//! `IsConfig::default()` fits the model).
//!
//! Both are computed from the config alone (ORIGINAL §3), so `vae eval` and `vae bench` agree
//! on them without running the model.

use vae_nets::{DecoderConfig, EncoderConfig};

use crate::config::ModelConfig;

const PIXELS: f64 = 784.0;
const FILTERS: f64 = 64.0;

/// Multiply-adds of a `k`×`k` convolution producing `out_hw`² pixels of `c_out` channels from
/// `c_in` channels, or of a transposed one reading `out_hw`² input pixels.
fn conv(out_hw: f64, c_in: f64, c_out: f64, k: f64) -> f64 {
    out_hw * out_hw * c_in * c_out * k * k
}

fn encoder_macs(cfg: &EncoderConfig, latent: f64) -> (f64, f64) {
    match cfg {
        EncoderConfig::Mlp { hidden, .. } => {
            let (mut macs, mut prev) = (0.0, PIXELS);
            for &w in hidden {
                macs += (prev + PIXELS) * w as f64;
                prev = w as f64;
            }
            (macs + (prev + PIXELS) * 2.0 * latent, prev)
        }
        EncoderConfig::Resnet => {
            let f = FILTERS;
            // Blocks 1..6 (ORIGINAL §3.1.1): two 3x3 convolutions each.
            let blocks = conv(28.0, 1.0, f, 3.0)
                + conv(28.0, f, f, 3.0)
                + 2.0 * conv(28.0, f, f, 3.0)
                + 2.0 * conv(14.0, f, f, 3.0)
                + 2.0 * conv(14.0, f, f, 3.0)
                + 2.0 * conv(7.0, f, f, 3.0)
                + 2.0 * conv(7.0, f, f, 3.0);
            let dense = 3136.0 * 450.0 + 450.0 * 2.0 * latent;
            (blocks + dense, 450.0)
        }
        EncoderConfig::GatedConv => {
            let layers = conv(28.0, 1.0, 32.0, 5.0)
                + conv(14.0, 32.0, 32.0, 5.0)
                + conv(14.0, 32.0, 64.0, 5.0)
                + conv(7.0, 64.0, 64.0, 5.0)
                + conv(7.0, 64.0, 64.0, 5.0)
                + conv(1.0, 64.0, 256.0, 7.0);
            (2.0 * layers + 256.0 * 2.0 * latent, 256.0)
        }
    }
}

fn decoder_macs(cfg: &DecoderConfig, latent: f64) -> f64 {
    match cfg {
        DecoderConfig::Mlp { hidden, .. } => {
            let (mut macs, mut prev) = (0.0, latent);
            for &w in hidden {
                macs += (prev + latent) * w as f64;
                prev = w as f64;
            }
            macs + (prev + latent) * PIXELS
        }
        DecoderConfig::Resnet => {
            let f = FILTERS;
            // Projection (a dense D -> 7x7x64), then blocks at 7, 7, 7->14, 14, 14->28, 28 with
            // two 3x3 convolutions each; the transposed ones scatter from their input pixels.
            latent * 49.0 * f
                + 6.0 * conv(7.0, f, f, 3.0)
                + 4.0 * conv(14.0, f, f, 3.0)
                + 2.0 * conv(28.0, f, f, 3.0)
                + 28.0 * 28.0 * f
        }
        DecoderConfig::GatedConv => {
            let layers = latent * 49.0 * 64.0
                + conv(7.0, 64.0, 64.0, 5.0)
                + conv(7.0, 64.0, 32.0, 5.0)
                + conv(14.0, 32.0, 32.0, 5.0)
                + conv(14.0, 32.0, 32.0, 5.0)
                + conv(28.0, 32.0, 32.0, 5.0);
            2.0 * layers + 28.0 * 28.0 * 32.0
        }
    }
}

/// Multiply-adds of the flow and its context predictor per example (masked matrices counted in
/// full, as the dense products compute them; the flow's count per kind is vae-flows'
/// [`FlowConfig::forward_macs`](vae_flows::FlowConfig::forward_macs)).
fn flow_macs(m: &ModelConfig, hidden_size: f64) -> f64 {
    let Some(flow) = &m.flow else { return 0.0 };
    let ctx = if flow.uses_context() {
        flow.context_size as f64
    } else {
        0.0
    };
    flow.forward_macs(m.latent) + hidden_size * ctx
}

/// Multiply-adds of one forward pass of one example through encoder, context, flow and decoder.
pub fn forward_macs(m: &ModelConfig) -> f64 {
    let latent = m.latent as f64;
    let (enc, hidden) = encoder_macs(&m.encoder, latent);
    enc + flow_macs(m, hidden) + decoder_macs(&m.decoder, latent)
}

/// FLOPs of one training step at batch `b`: forward, then backward to inputs and to weights,
/// i.e. 3 × 2 × the forward multiply-adds of the matrix products and convolutions. Elementwise
/// operations (BN, activations, Adam) are not counted.
pub fn train_step_flops(m: &ModelConfig, b: usize) -> f64 {
    6.0 * forward_macs(m) * b as f64
}

/// The largest activation one model row of an IS call holds (flow and decoder), in f32 values.
fn largest_row_activation(m: &ModelConfig) -> f64 {
    let latent = m.latent as f64;
    let decoder = match &m.decoder {
        DecoderConfig::Mlp { hidden, .. } => hidden
            .iter()
            .map(|&w| w as f64 + latent)
            .fold(PIXELS, f64::max),
        DecoderConfig::Resnet => FILTERS * 28.0 * 28.0,
        // Two branches of 32 channels at 28x28 are alive together.
        DecoderConfig::GatedConv => 2.0 * 32.0 * 28.0 * 28.0,
    };
    let flow = m
        .flow
        .as_ref()
        .map(|f| f.largest_activation(m.latent) as f64)
        .unwrap_or(0.0);
    decoder.max(flow)
}

/// Bytes of activations one model row costs in an IS call: the largest activation, times the
/// eight that can be alive together (input, BN and ELU outputs, convolution output, skip, sum,
/// logits and the likelihood's temporaries), in f32.
pub fn is_bytes_per_row(m: &ModelConfig) -> u64 {
    (largest_row_activation(m) * 4.0 * 8.0).ceil() as u64
}

/// The rows per importance-sampling call that keep one call's activations within vae-eval's
/// `IS_ACTIVATION_BUDGET`: 1 337 rows for the ResNet decoder at 2 GiB, the cap of 20 000 for
/// the MLP models.
pub fn is_max_rows(m: &ModelConfig) -> usize {
    vae_eval::rows_within_budget(is_bytes_per_row(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(encoder: EncoderConfig, decoder: DecoderConfig) -> ModelConfig {
        ModelConfig {
            encoder,
            decoder,
            ..Default::default()
        }
    }

    #[test]
    fn resnet_counts_match_the_architecture() {
        let m = seed(EncoderConfig::Resnet, DecoderConfig::Resnet);
        // The flow: 8 x (64*1920 + 1920*1920 + 2*1920*64) plus the context predictor 450*1920.
        let flow = 8.0 * (64.0 * 1920.0 + 1920.0 * 1920.0 + 2.0 * 1920.0 * 64.0) + 450.0 * 1920.0;
        assert_eq!(flow_macs(&m, 450.0), flow);
        // Encoder 124.8 M, flow and context 33.3 M, decoder 97.8 M multiply-adds.
        let total = forward_macs(&m);
        assert!((2.55e8..2.57e8).contains(&total), "{total}");
        assert_eq!(is_max_rows(&m), 1337);
    }

    #[test]
    fn mlp_rows_keep_the_cap() {
        let m = seed(
            EncoderConfig::mlp(vec![1000; 3]),
            DecoderConfig::mlp(vec![1000; 3]),
        );
        assert_eq!(is_max_rows(&m), vae_eval::IS_MAX_ROWS_CAP);
        // Encoder: 1568*1000 + 2 * 1784*1000 + 1784*128.
        let (enc, h) = encoder_macs(&m.encoder, 64.0);
        assert_eq!(h, 1000.0);
        assert_eq!(enc, 1568e3 + 2.0 * 1784e3 + 1784.0 * 128.0);
    }
}
