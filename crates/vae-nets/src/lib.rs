//! Encoder and decoder networks of the flow-VAE, built from a tch [`nn::Path`] with the geometry,
//! batch-norm placement and initialisation of the original TensorFlow code (ORIGINAL §2–§3).
#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod config;
pub mod error;
pub mod gated;
pub mod layers;
pub mod mlp;
pub mod resnet;

use tch::{nn, Tensor};

pub use config::{BatchNormSettings, DecoderConfig, EncoderConfig, Normalization};
pub use error::{Error, Result};
pub use gated::{GatedConvDecoder, GatedConvEncoder};
pub use mlp::{FrozenMlpDecoder, MlpDecoder, MlpEncoder};
pub use resnet::{ResNetDecoder, ResNetEncoder};

/// Pixels per image, `28 * 28`: the MLP networks' input and output width.
pub const IMAGE_PIXELS: i64 = 784;

/// The original's `approx_post_offset`, added to the encoder's log-std output (ORIGINAL §3.1).
pub const DEFAULT_LOG_SIGMA_OFFSET: f64 = -3.0;

/// What an encoder returns for a batch of `B` images.
#[derive(Debug)]
pub struct EncoderOutput {
    /// Posterior mean, `[B, D]`: the first `D` units of the output layer.
    pub mu: Tensor,
    /// Posterior log-std, `[B, D]`: the last `D` units plus the log-std offset (-3.0 by default).
    /// `sigma = exp(log_sigma)`.
    pub log_sigma: Tensor,
    /// The last hidden features `h_last`, `[B, H]` with `H = `[`Encoder::hidden_size`]: the
    /// input of a flow's context predictor.
    pub h: Tensor,
}

impl EncoderOutput {
    /// Splits an output layer `[B, 2D]` into `mu` (first `D`) and `log_sigma` (last `D` plus
    /// `offset`), ORIGINAL §3.1.
    pub(crate) fn split(out: &Tensor, latent: i64, offset: f64, h: Tensor) -> Self {
        EncoderOutput {
            mu: out.narrow(1, 0, latent),
            log_sigma: out.narrow(1, latent, latent) + offset,
            h,
        }
    }
}

/// An amortised posterior network `x → (mu, log_sigma, h)`.
pub trait Encoder: std::fmt::Debug + Send {
    /// Encodes binarized images `x`, `[B, 1, 28, 28]` f32. `train` selects batch statistics (and
    /// updates the BN running averages) instead of the running averages.
    ///
    /// Panics if `x` is not `[B, 1, 28, 28]`, and in training mode with `B = 1` where the
    /// encoder has a batch-normalized dense layer (ResNet and MLP; see
    /// [`layers::BatchNorm::forward_t`]).
    fn forward_t(&self, x: &Tensor, train: bool) -> EncoderOutput;

    /// Data-dependent initialisation on the batch `x` `[B, 1, 28, 28]` (NORMALIZATION §3): every
    /// weight-normalized layer, in network order, sets its gain and bias so that its
    /// pre-activation has mean 0 and variance 1 on the batch, seeing the outputs of the layers
    /// before it after their own initialisation. Returns the encoder's output on `x` after it,
    /// as a training-mode pass gives it, detached. No gradients are recorded, and batch norms
    /// use the batch's statistics without moving their running averages.
    ///
    /// Default (networks without weight norm): nothing to set; the training-mode output with
    /// the running statistics held ([`vae_nn::hold_running_statistics`]).
    ///
    /// Errors: [`Error::Layer`] when a weight-normalized layer gets fewer than two examples or
    /// non-finite pre-activations. Panics as [`forward_t`](Self::forward_t).
    fn data_dependent_init(&self, x: &Tensor) -> Result<EncoderOutput> {
        Ok(tch::no_grad(|| {
            vae_nn::hold_running_statistics(|| self.forward_t(x, true))
        }))
    }

    /// Width `H` of [`EncoderOutput::h`].
    fn hidden_size(&self) -> i64;
    /// Latent size `D`.
    fn latent_size(&self) -> i64;
}

/// A generative network `z → logits`.
pub trait Decoder: std::fmt::Debug + Send {
    /// Decodes codes `z`, `[B, D]`, to Bernoulli logits `[B, 1, 28, 28]` (`p = σ(logits)`).
    ///
    /// Panics if `z` is not `[B, D]`, and in training mode with `B = 1` where the decoder has a
    /// batch-normalized dense layer (MLP with hidden layers).
    fn forward_t(&self, z: &Tensor, train: bool) -> Tensor;

    /// Data-dependent initialisation on the codes `z` `[B, D]`, as
    /// [`Encoder::data_dependent_init`] (NORMALIZATION §3); returns the logits on `z` after it,
    /// `[B, 1, 28, 28]`, detached.
    ///
    /// Default (networks without weight norm): nothing to set; the training-mode logits with
    /// the running statistics held ([`vae_nn::hold_running_statistics`]).
    ///
    /// Errors as [`Encoder::data_dependent_init`]; panics as [`forward_t`](Self::forward_t).
    fn data_dependent_init(&self, z: &Tensor) -> Result<Tensor> {
        Ok(tch::no_grad(|| {
            vae_nn::hold_running_statistics(|| self.forward_t(z, true))
        }))
    }

    /// The evaluation-mode function `z ↦ forward_t(z, false)` with the parameters as they are
    /// now, for code that evaluates a fixed model many times (the estimators: thousands of
    /// decoder gradients per AIS chain). Gradients flow to `z` only.
    ///
    /// Default: this decoder itself in evaluation mode, borrowed (so it sees later parameter
    /// updates). [`MlpDecoder`] returns a copy with each batch norm folded into the weights
    /// and bias of the layer before it ([`mlp::FrozenMlpDecoder`]): fewer kernels per call, and
    /// no batch-norm backward.
    fn freeze(&self) -> Box<dyn FrozenDecoder + '_> {
        Box::new(EvalMode(self))
    }
}

/// A decoder's evaluation-mode function, from [`Decoder::freeze`].
pub trait FrozenDecoder: std::fmt::Debug {
    /// Codes `z`, `[B, D]`, to logits `[B, 1, 28, 28]`, as the decoder's `forward_t(z, false)`
    /// when frozen (to rounding: a folded batch norm reorders the arithmetic). Panics as it does.
    fn forward(&self, z: &Tensor) -> Tensor;
}

/// [`Decoder::freeze`]'s default: the decoder itself, in evaluation mode.
#[derive(Debug)]
struct EvalMode<'a, T: ?Sized>(&'a T);

impl<T: Decoder + ?Sized> FrozenDecoder for EvalMode<'_, T> {
    fn forward(&self, z: &Tensor) -> Tensor {
        self.0.forward_t(z, false)
    }
}

/// Panics unless `z` is `[B, latent]` (codes come from the program's own sampling).
pub(crate) fn check_code_input(z: &Tensor, latent: i64, who: &str) {
    let size = z.size();
    assert!(
        size.len() == 2 && size[1] == latent,
        "{who}: expected z of shape [B, {latent}], got {size:?}"
    );
}

/// Panics unless `x` is `[B, 1, 28, 28]` (a program invariant once data is loaded).
pub(crate) fn check_image_input(x: &Tensor, who: &str) {
    let size = x.size();
    assert!(
        size.len() == 4 && size[1..] == [1, 28, 28],
        "{who}: expected images of shape [B, 1, 28, 28], got {size:?}"
    );
}

/// Validates `cfg`, `latent` (≥ 1), `log_sigma_offset` (finite; [`DEFAULT_LOG_SIGMA_OFFSET`] in
/// the original) and `bn`, then builds the chosen encoder under `p`.
///
/// `bn` is validated for every family, although [`GatedConvEncoder`] has no BN (nor an MLP
/// without batch norm).
pub fn build_encoder(
    p: &nn::Path,
    cfg: &EncoderConfig,
    latent: i64,
    log_sigma_offset: f64,
    bn: BatchNormSettings,
) -> Result<Box<dyn Encoder>> {
    cfg.validate()?;
    bn.validate()?;
    Ok(match cfg {
        EncoderConfig::Resnet => Box::new(ResNetEncoder::new(p, latent, log_sigma_offset, bn)?),
        EncoderConfig::GatedConv => Box::new(GatedConvEncoder::new(p, latent, log_sigma_offset)?),
        EncoderConfig::Mlp {
            hidden,
            normalization,
        } => Box::new(MlpEncoder::with_normalization(
            p,
            hidden,
            latent,
            log_sigma_offset,
            bn,
            *normalization,
        )?),
    })
}

/// Validates `cfg`, `latent` (≥ 1) and `bn`, then builds the chosen decoder under `p`.
///
/// `bn` is validated for every family, although [`GatedConvDecoder`] has no BN (nor an MLP
/// without batch norm).
pub fn build_decoder(
    p: &nn::Path,
    cfg: &DecoderConfig,
    latent: i64,
    bn: BatchNormSettings,
) -> Result<Box<dyn Decoder>> {
    cfg.validate()?;
    bn.validate()?;
    Ok(match cfg {
        DecoderConfig::Resnet => Box::new(ResNetDecoder::new(p, latent, bn)?),
        DecoderConfig::GatedConv => Box::new(GatedConvDecoder::new(p, latent)?),
        DecoderConfig::Mlp {
            hidden,
            normalization,
        } => Box::new(MlpDecoder::with_normalization(
            p,
            hidden,
            latent,
            bn,
            *normalization,
        )?),
    })
}
