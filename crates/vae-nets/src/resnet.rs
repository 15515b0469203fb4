//! The ResNet encoder and decoder, `IAF_ENCODER` and `IAF_DECODER` of the original, the default
//! networks (ORIGINAL §3.1.1 and §3.2.1).

use tch::nn;
use tch::Tensor;

use crate::config::{validate_latent, validate_offset, BatchNormSettings};
use crate::layers::{
    elu, flatten_nhwc, nearest_double, nearest_half, BatchNorm, Conv2d, ConvTranspose2d, Dense,
    Padding,
};
use crate::{check_code_input, check_image_input, Decoder, Encoder, EncoderOutput, Result};

/// Filters in every residual block (hard-coded in the original, ORIGINAL §3.1.1).
pub const FILTERS: i64 = 64;
/// Width of the encoder's dense hidden layer, `|h_last|` (ORIGINAL §3.1.1).
pub const ENCODER_HIDDEN: i64 = 450;
/// Scale of the residual branch: `out = skip + RESIDUAL_SCALE * h` (ORIGINAL §3.1.1).
pub const RESIDUAL_SCALE: f64 = 0.1;

/// Encoder residual block `Block(in, downsample)` (ORIGINAL §3.1.1):
///
/// ```text
/// skip = downsample ? NearestResize(in, 0.5) : in
/// h = ELU(BN(in)); h = Conv3x3(h, stride = downsample ? 2 : 1, SAME, no bias)
/// h = ELU(BN(h));  h = Conv3x3(h, stride 1, SAME, no bias)
/// out = skip + 0.1 * h
/// ```
///
/// Parameters `bn1`, `conv1`, `bn2`, `conv2` under the block's path.
#[derive(Debug)]
struct EncoderBlock {
    bn1: BatchNorm,
    conv1: Conv2d,
    bn2: BatchNorm,
    conv2: Conv2d,
    downsample: bool,
}

impl EncoderBlock {
    fn new(p: &nn::Path, input: i64, downsample: bool, bn: BatchNormSettings) -> Result<Self> {
        let stride = if downsample { 2 } else { 1 };
        Ok(EncoderBlock {
            bn1: BatchNorm::new(&(p / "bn1"), input, 0.0, bn)?,
            conv1: Conv2d::new(
                &(p / "conv1"),
                input,
                FILTERS,
                3,
                stride,
                Padding::Same,
                false,
            )?,
            bn2: BatchNorm::new(&(p / "bn2"), FILTERS, 0.0, bn)?,
            conv2: Conv2d::new(&(p / "conv2"), FILTERS, FILTERS, 3, 1, Padding::Same, false)?,
            downsample,
        })
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let skip = if self.downsample {
            nearest_half(x)
        } else {
            x.shallow_clone()
        };
        let h = self.conv1.forward(&elu(&self.bn1.forward_t(x, train)));
        let h = self.conv2.forward(&elu(&self.bn2.forward_t(&h, train)));
        // In block 1 `skip` has one channel and broadcasts across the 64 of `h`
        // (ORIGINAL §3.1.1 row 1).
        skip + h * RESIDUAL_SCALE
    }
}

/// The original's default encoder, `IAF_ENCODER` (ORIGINAL §3.1.1): six residual blocks of 64
/// filters (28 → 28 → 28 → 14 → 14 → 7 → 7), BN, NHWC flatten, dense 3136 → 450 with BN and ELU
/// (`h_last`), dense 450 → 2D with BN (`mu`, `log_std_raw`).
///
/// Parameters, with `D` = latent size: 1 877 574 for `D = 64` (ORIGINAL §3.3). Paths:
/// `block1` … `block6` (each `bn1`, `conv1`, `bn2`, `conv2`), `bn_final`, `fc_hidden`,
/// `bn_hidden`, `fc_out`, `bn_out`.
#[derive(Debug)]
pub struct ResNetEncoder {
    blocks: Vec<EncoderBlock>,
    bn_final: BatchNorm,
    fc_hidden: Dense,
    bn_hidden: BatchNorm,
    fc_out: Dense,
    bn_out: BatchNorm,
    latent: i64,
    log_sigma_offset: f64,
}

impl ResNetEncoder {
    /// Builds the encoder under `p` for latent size `latent` (`D`). `log_sigma_offset` is added
    /// to the log-std output (`approx_post_offset`, -3.0 in the original, ORIGINAL §3.1).
    pub fn new(
        p: &nn::Path,
        latent: i64,
        log_sigma_offset: f64,
        bn: BatchNormSettings,
    ) -> Result<Self> {
        validate_latent(latent)?;
        validate_offset(log_sigma_offset)?;
        bn.validate()?;
        // (input channels, downsample) of blocks 1..6. Block 1 sees the 1-channel image.
        let plan = [
            (1, false),
            (FILTERS, false),
            (FILTERS, true),
            (FILTERS, false),
            (FILTERS, true),
            (FILTERS, false),
        ];
        let blocks = plan
            .iter()
            .enumerate()
            .map(|(i, &(input, down))| {
                EncoderBlock::new(&(p / format!("block{}", i + 1)), input, down, bn)
            })
            .collect::<Result<Vec<_>>>()?;
        let flat = 7 * 7 * FILTERS;
        Ok(ResNetEncoder {
            blocks,
            bn_final: BatchNorm::new(&(p / "bn_final"), FILTERS, 0.0, bn)?,
            fc_hidden: Dense::new(&(p / "fc_hidden"), flat, ENCODER_HIDDEN, false)?,
            bn_hidden: BatchNorm::new(&(p / "bn_hidden"), ENCODER_HIDDEN, 0.0, bn)?,
            fc_out: Dense::new(&(p / "fc_out"), ENCODER_HIDDEN, 2 * latent, false)?,
            bn_out: BatchNorm::new(&(p / "bn_out"), 2 * latent, 0.0, bn)?,
            latent,
            log_sigma_offset,
        })
    }
}

impl Encoder for ResNetEncoder {
    fn forward_t(&self, x: &Tensor, train: bool) -> EncoderOutput {
        check_image_input(x, "ResNetEncoder");
        let mut h = x.shallow_clone();
        for block in &self.blocks {
            h = block.forward_t(&h, train);
        }
        // Row 7: BN with no activation; row 8: flatten in NHWC order.
        let h = flatten_nhwc(&self.bn_final.forward_t(&h, train));
        let h_last = elu(&self.bn_hidden.forward_t(&self.fc_hidden.forward(&h), train));
        let out = self.bn_out.forward_t(&self.fc_out.forward(&h_last), train);
        EncoderOutput::split(&out, self.latent, self.log_sigma_offset, h_last)
    }

    fn hidden_size(&self) -> i64 {
        ENCODER_HIDDEN
    }

    fn latent_size(&self) -> i64 {
        self.latent
    }
}

/// Decoder residual block `BlockT(in, upsample)` (ORIGINAL §3.2.1):
///
/// ```text
/// h = ELU(BN(in)); h = Conv3x3(h, s1, SAME, no bias)
/// h = ELU(BN(h))
/// upsample: h = ConvTranspose3x3(h, stride 2, SAME, no bias); skip = NearestResize(in, x2)
/// else:     h = Conv3x3(h, s1, SAME, no bias);                skip = in
/// out = skip + 0.1 * h
/// ```
///
/// Parameters `bn1`, `conv1`, `bn2` and `conv2` (or `convt2` when upsampling, whose weight has
/// the transposed layout `[in, out, 3, 3]`).
#[derive(Debug)]
struct DecoderBlock {
    bn1: BatchNorm,
    conv1: Conv2d,
    bn2: BatchNorm,
    second: Second,
}

#[derive(Debug)]
enum Second {
    Conv(Conv2d),
    Up(ConvTranspose2d),
}

impl DecoderBlock {
    fn new(p: &nn::Path, upsample: bool, bn: BatchNormSettings) -> Result<Self> {
        let second = if upsample {
            Second::Up(ConvTranspose2d::new(
                &(p / "convt2"),
                FILTERS,
                FILTERS,
                3,
                2,
                Padding::Same,
                false,
            )?)
        } else {
            Second::Conv(Conv2d::new(
                &(p / "conv2"),
                FILTERS,
                FILTERS,
                3,
                1,
                Padding::Same,
                false,
            )?)
        };
        Ok(DecoderBlock {
            bn1: BatchNorm::new(&(p / "bn1"), FILTERS, 0.0, bn)?,
            conv1: Conv2d::new(&(p / "conv1"), FILTERS, FILTERS, 3, 1, Padding::Same, false)?,
            bn2: BatchNorm::new(&(p / "bn2"), FILTERS, 0.0, bn)?,
            second,
        })
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let h = self.conv1.forward(&elu(&self.bn1.forward_t(x, train)));
        let h = elu(&self.bn2.forward_t(&h, train));
        match &self.second {
            Second::Up(convt) => nearest_double(x) + convt.forward(&h) * RESIDUAL_SCALE,
            Second::Conv(conv) => x + conv.forward(&h) * RESIDUAL_SCALE,
        }
    }
}

/// The original's default decoder, `IAF_DECODER` (ORIGINAL §3.2.1): a 7×7 VALID transposed
/// convolution `D → 64` on the `1×1×D` code (no bias, ELU, no BN), six residual blocks
/// (7 → 7 → 7 → 14 → 14 → 28 → 28), BN, and a 1×1 convolution with bias to one channel of
/// Bernoulli logits.
///
/// Parameters: 644 801 for `D = 64` (ORIGINAL §3.3). Paths: `proj` (weight `[D, 64, 7, 7]`),
/// `block1` … `block6`, `bn_final`, `logits`.
#[derive(Debug)]
pub struct ResNetDecoder {
    proj: ConvTranspose2d,
    blocks: Vec<DecoderBlock>,
    bn_final: BatchNorm,
    logits: Conv2d,
    latent: i64,
}

impl ResNetDecoder {
    /// Builds the decoder under `p` for latent size `latent` (`D`).
    pub fn new(p: &nn::Path, latent: i64, bn: BatchNormSettings) -> Result<Self> {
        validate_latent(latent)?;
        bn.validate()?;
        let upsample = [false, false, true, false, true, false];
        let blocks = upsample
            .iter()
            .enumerate()
            .map(|(i, &up)| DecoderBlock::new(&(p / format!("block{}", i + 1)), up, bn))
            .collect::<Result<Vec<_>>>()?;
        Ok(ResNetDecoder {
            proj: ConvTranspose2d::new(
                &(p / "proj"),
                latent,
                FILTERS,
                7,
                1,
                Padding::Valid,
                false,
            )?,
            blocks,
            bn_final: BatchNorm::new(&(p / "bn_final"), FILTERS, 0.0, bn)?,
            logits: Conv2d::new(&(p / "logits"), FILTERS, 1, 1, 1, Padding::Same, true)?,
            latent,
        })
    }
}

impl Decoder for ResNetDecoder {
    fn forward_t(&self, z: &Tensor, train: bool) -> Tensor {
        check_code_input(z, self.latent, "ResNetDecoder");
        // Row 0: the code as a 1x1 image with D channels; row 1: 7x7 VALID transposed conv.
        let mut h = elu(&self.proj.forward(&z.unsqueeze(-1).unsqueeze(-1)));
        for block in &self.blocks {
            h = block.forward_t(&h, train);
        }
        self.logits.forward(&self.bn_final.forward_t(&h, train))
    }
}
