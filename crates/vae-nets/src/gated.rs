//! The gated-convolution encoder and decoder, `SNF_ENCODER` and `SNF_DECODER` of the original
//! (ORIGINAL §3.1.2 and §3.2.2). They have no batch normalization, so training and evaluation
//! mode give the same result.

use tch::nn;
use tch::Tensor;

use crate::config::{validate_latent, validate_offset};
use crate::layers::{Conv2d, Dense, GatedConv2d, GatedConvTranspose2d, Padding};
use crate::{check_code_input, check_image_input, Decoder, Encoder, EncoderOutput, Result};

/// Width of the gated encoder's last features, `|h_last|` (ORIGINAL §3.1.2 row 7).
pub const GATED_HIDDEN: i64 = 256;

/// `(in, out, kernel, stride, padding)` of the encoder's six gated convolutions
/// (ORIGINAL §3.1.2): 28 → 28 → 14 → 14 → 7 → 7 → 1.
const ENCODER_PLAN: [(i64, i64, i64, i64, Padding); 6] = [
    (1, 32, 5, 1, Padding::Same),
    (32, 32, 5, 2, Padding::Same),
    (32, 64, 5, 1, Padding::Same),
    (64, 64, 5, 2, Padding::Same),
    (64, 64, 5, 1, Padding::Same),
    (64, GATED_HIDDEN, 7, 1, Padding::Valid),
];

/// `(out, kernel, stride, padding)` of the decoder's six gated transposed convolutions; the
/// first takes `D` channels (ORIGINAL §3.2.2): 1 → 7 → 7 → 14 → 14 → 28 → 28.
const DECODER_PLAN: [(i64, i64, i64, Padding); 6] = [
    (64, 7, 1, Padding::Valid),
    (64, 5, 1, Padding::Same),
    (32, 5, 2, Padding::Same),
    (32, 5, 1, Padding::Same),
    (32, 5, 2, Padding::Same),
    (32, 5, 1, Padding::Same),
];

/// `SNF_ENCODER` (ORIGINAL §3.1.2): six gated convolutions
/// `σ(Conv_g(x)) ⊙ ELU(Conv_h(x))` with biases, the last a 7×7 VALID one to `1×1×256`
/// (`h_last`), then a dense layer 256 → 2D **with bias** and no BN. The gate applies the sigmoid
/// once (the latest revision).
///
/// Paths: `gconv1` … `gconv6` (each `gate` and `value`), `fc_out`.
#[derive(Debug)]
pub struct GatedConvEncoder {
    layers: Vec<GatedConv2d>,
    fc_out: Dense,
    latent: i64,
    log_sigma_offset: f64,
}

impl GatedConvEncoder {
    /// Builds the encoder under `p` for latent size `latent`; `log_sigma_offset` is added to the
    /// log-std output (ORIGINAL §3.1).
    pub fn new(p: &nn::Path, latent: i64, log_sigma_offset: f64) -> Result<Self> {
        validate_latent(latent)?;
        validate_offset(log_sigma_offset)?;
        let layers = ENCODER_PLAN
            .iter()
            .enumerate()
            .map(|(i, &(input, output, k, s, pad))| {
                GatedConv2d::new(&(p / format!("gconv{}", i + 1)), input, output, k, s, pad)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(GatedConvEncoder {
            layers,
            fc_out: Dense::new(&(p / "fc_out"), GATED_HIDDEN, 2 * latent, true)?,
            latent,
            log_sigma_offset,
        })
    }
}

impl Encoder for GatedConvEncoder {
    fn forward_t(&self, x: &Tensor, _train: bool) -> EncoderOutput {
        check_image_input(x, "GatedConvEncoder");
        let mut h = x.shallow_clone();
        for layer in &self.layers {
            h = layer.forward(&h);
        }
        // [B, 256, 1, 1] -> [B, 256]; with 1x1 spatial size NCHW and NHWC orders agree.
        let h_last = h.flatten(1, -1);
        let out = self.fc_out.forward(&h_last);
        EncoderOutput::split(&out, self.latent, self.log_sigma_offset, h_last)
    }

    fn hidden_size(&self) -> i64 {
        GATED_HIDDEN
    }

    fn latent_size(&self) -> i64 {
        self.latent
    }
}

/// `SNF_DECODER` (ORIGINAL §3.2.2): six gated transposed convolutions with biases on the
/// `1×1×D` code, then a 1×1 convolution with bias to one channel of logits. No BN.
///
/// TF's SAME transposed convolutions give 7 → 14 → 28 directly (the original's
/// `output_padding` argument is ignored); here they are computed as in
/// [`ConvTranspose2d`](crate::layers::ConvTranspose2d).
///
/// Paths: `gconvt1` … `gconvt6` (each `gate` and `value`), `logits`.
#[derive(Debug)]
pub struct GatedConvDecoder {
    layers: Vec<GatedConvTranspose2d>,
    logits: Conv2d,
    latent: i64,
}

impl GatedConvDecoder {
    /// Builds the decoder under `p` for latent size `latent`.
    pub fn new(p: &nn::Path, latent: i64) -> Result<Self> {
        validate_latent(latent)?;
        let mut layers = Vec::with_capacity(DECODER_PLAN.len());
        let mut input = latent;
        for (i, &(output, k, s, pad)) in DECODER_PLAN.iter().enumerate() {
            layers.push(GatedConvTranspose2d::new(
                &(p / format!("gconvt{}", i + 1)),
                input,
                output,
                k,
                s,
                pad,
            )?);
            input = output;
        }
        Ok(GatedConvDecoder {
            layers,
            logits: Conv2d::new(&(p / "logits"), input, 1, 1, 1, Padding::Same, true)?,
            latent,
        })
    }
}

impl Decoder for GatedConvDecoder {
    fn forward_t(&self, z: &Tensor, _train: bool) -> Tensor {
        check_code_input(z, self.latent, "GatedConvDecoder");
        let mut h = z.unsqueeze(-1).unsqueeze(-1);
        for layer in &self.layers {
            h = layer.forward(&h);
        }
        self.logits.forward(&h)
    }
}
