//! The MLP encoder and decoder, `NONCONV_ENCODER` and `NONCONV_DECODER` of the original
//! (ORIGINAL §3.1.3 and §3.2.3): every layer sees its input concatenated with the network's
//! input (the image for the encoder, the code for the decoder).

use tch::nn;
use tch::Tensor;

use crate::config::{validate_hidden, validate_latent, validate_offset, BatchNormSettings};
use crate::layers::{elu, BatchNorm, Dense};
use crate::{
    check_code_input, check_image_input, Decoder, Encoder, EncoderOutput, FrozenDecoder, Result,
    IMAGE_PIXELS,
};

/// One hidden layer `h = ELU(BN(W · concat(h, skip)))`, no bias. Paths `dense`, `bn`.
#[derive(Debug)]
struct HiddenLayer {
    dense: Dense,
    bn: BatchNorm,
}

impl HiddenLayer {
    /// The layer's evaluation-mode pre-activation `BN(W · concat(h, skip))` as one dense layer
    /// `W' · concat(h, skip) + b'` (`W' = diag(scale) · W`, `b' = shift`, from
    /// [`BatchNorm::eval_affine`]); with `same`, `W'` acts on `skip` alone (see [`skip_linear`]).
    /// Weight `[out, in]` and bias `[out]`, detached copies.
    fn folded(&self, same: bool) -> (Tensor, Tensor) {
        let (scale, shift) = self.bn.eval_affine();
        let w = tch::no_grad(|| joint_weight(&self.dense, same) * scale.unsqueeze(1));
        (w, shift)
    }

    fn new(p: &nn::Path, input: i64, width: i64, bn: BatchNormSettings) -> Result<Self> {
        Ok(HiddenLayer {
            dense: Dense::new(&(p / "dense"), input, width, false)?,
            bn: BatchNorm::new(&(p / "bn"), width, 0.0, bn)?,
        })
    }

    fn forward_t(&self, h: &Tensor, skip: &Tensor, same: bool, train: bool) -> Tensor {
        elu(&self
            .bn
            .forward_t(&skip_linear(&self.dense, h, skip, same), train))
    }
}

/// `W · concat(h, skip)` (no bias). When `same` (the first layer, where `h` is `skip` itself), the
/// two column blocks of `W` act on the same input and are summed first: `(W_h + W_skip) · skip`,
/// the same function and gradients with half the multiply-adds and no concatenation.
///
/// The blocks are the two halves of `W` viewed `[out, 2, n]` and unbound along the middle axis:
/// their gradients then go back in one `stack`, where adding two `narrow`s gave each its own
/// zero-filled `slice_backward` plus an accumulation, five kernels (launches, on a GPU) instead
/// of one. PyTorch 2.11, 2 threads, the encoder's `[500, 1568]` weight with a batch of 200:
/// forward and backward 2.47 ms against 2.80 for the `narrow`s and 2.43–2.55 for a `sum` over
/// the middle axis, whose forward alone took 210 µs against 95 for the addition.
fn skip_linear(dense: &Dense, h: &Tensor, skip: &Tensor, same: bool) -> Tensor {
    if same {
        skip.linear::<Tensor>(&summed_blocks(&dense.ws), None)
    } else {
        dense.forward(&Tensor::cat(&[h, skip], 1))
    }
}

/// `W_h + W_skip`, `[out, n]`, from a weight `[out, 2n]`: its two column blocks, summed.
fn summed_blocks(w: &Tensor) -> Tensor {
    let out = w.size()[0];
    let blocks = w.view([out, 2, -1]).unbind(1);
    &blocks[0] + &blocks[1]
}

/// The weight that [`skip_linear`] applies, `[out, in]`: `W`, or with `same` the sum of its two
/// column blocks; a detached copy.
fn joint_weight(dense: &Dense, same: bool) -> Tensor {
    tch::no_grad(|| {
        let w = dense.ws.detach();
        if same {
            summed_blocks(&w)
        } else {
            w.copy()
        }
    })
}

/// Builds hidden layers `hidden1`, `hidden2`, … for widths `hidden`, each seeing the previous
/// layer's output (`first_input` wide before the first) concatenated with `skip` units.
fn hidden_stack(
    p: &nn::Path,
    hidden: &[i64],
    first_input: i64,
    skip: i64,
    bn: BatchNormSettings,
) -> Result<(Vec<HiddenLayer>, i64)> {
    let mut layers = Vec::with_capacity(hidden.len());
    let mut prev = first_input;
    for (i, &width) in hidden.iter().enumerate() {
        layers.push(HiddenLayer::new(
            &(p / format!("hidden{}", i + 1)),
            prev + skip,
            width,
            bn,
        )?);
        prev = width;
    }
    Ok((layers, prev))
}

/// `NONCONV_ENCODER` (ORIGINAL §3.1.3):
///
/// ```text
/// h = x                                        (x: the flattened 784-pixel image)
/// for width in hidden: h = ELU(BN(W · concat(h, x)))      no bias; first layer sees 1568 inputs
/// linear_output = BN(W_out · concat(h, x))                2D units, no bias, no activation
/// h_last = h
/// ```
///
/// With `hidden` empty, `h_last = x` (784 features) and the output layer sees `concat(x, x)`.
/// Paths: `hidden1`, `hidden2`, … (each `dense`, `bn`), `out` (`dense`, `bn`).
#[derive(Debug)]
pub struct MlpEncoder {
    layers: Vec<HiddenLayer>,
    out_dense: Dense,
    out_bn: BatchNorm,
    hidden_size: i64,
    latent: i64,
    log_sigma_offset: f64,
}

impl MlpEncoder {
    /// Builds the encoder under `p` with hidden widths `hidden` (each at least 1; may be empty)
    /// for latent size `latent`; `log_sigma_offset` is added to the log-std (ORIGINAL §3.1).
    pub fn new(
        p: &nn::Path,
        hidden: &[i64],
        latent: i64,
        log_sigma_offset: f64,
        bn: BatchNormSettings,
    ) -> Result<Self> {
        validate_hidden(hidden)?;
        validate_latent(latent)?;
        validate_offset(log_sigma_offset)?;
        bn.validate()?;
        let (layers, last) = hidden_stack(p, hidden, IMAGE_PIXELS, IMAGE_PIXELS, bn)?;
        let out = p / "out";
        Ok(MlpEncoder {
            layers,
            out_dense: Dense::new(&(&out / "dense"), last + IMAGE_PIXELS, 2 * latent, false)?,
            out_bn: BatchNorm::new(&(&out / "bn"), 2 * latent, 0.0, bn)?,
            hidden_size: last,
            latent,
            log_sigma_offset,
        })
    }
}

impl Encoder for MlpEncoder {
    fn forward_t(&self, x: &Tensor, train: bool) -> EncoderOutput {
        check_image_input(x, "MlpEncoder");
        let x = x.flatten(1, -1);
        let mut h = x.shallow_clone();
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward_t(&h, &x, i == 0, train);
        }
        let out = self.out_bn.forward_t(
            &skip_linear(&self.out_dense, &h, &x, self.layers.is_empty()),
            train,
        );
        EncoderOutput::split(&out, self.latent, self.log_sigma_offset, h)
    }

    fn hidden_size(&self) -> i64 {
        self.hidden_size
    }

    fn latent_size(&self) -> i64 {
        self.latent
    }
}

/// `NONCONV_DECODER` (ORIGINAL §3.2.3):
///
/// ```text
/// h = z
/// for width in hidden: h = ELU(BN(W · concat(h, z)))      no bias
/// logits = W_out · concat(h, z)                           784 outputs, no BN and no bias
/// ```
///
/// Paths: `hidden1`, `hidden2`, … (each `dense`, `bn`), `logits` (weight only).
#[derive(Debug)]
pub struct MlpDecoder {
    layers: Vec<HiddenLayer>,
    logits: Dense,
    latent: i64,
}

impl MlpDecoder {
    /// Builds the decoder under `p` with hidden widths `hidden` (each at least 1; may be empty)
    /// for latent size `latent`.
    pub fn new(p: &nn::Path, hidden: &[i64], latent: i64, bn: BatchNormSettings) -> Result<Self> {
        validate_hidden(hidden)?;
        validate_latent(latent)?;
        bn.validate()?;
        let (layers, last) = hidden_stack(p, hidden, latent, latent, bn)?;
        Ok(MlpDecoder {
            layers,
            logits: Dense::new(&(p / "logits"), last + latent, IMAGE_PIXELS, false)?,
            latent,
        })
    }
}

impl Decoder for MlpDecoder {
    fn forward_t(&self, z: &Tensor, train: bool) -> Tensor {
        check_code_input(z, self.latent, "MlpDecoder");
        let mut h = z.shallow_clone();
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward_t(&h, z, i == 0, train);
        }
        skip_linear(&self.logits, &h, z, self.layers.is_empty()).view([-1, 1, 28, 28])
    }

    fn freeze(&self) -> Box<dyn FrozenDecoder + '_> {
        Box::new(FrozenMlpDecoder {
            hidden: (self.layers.iter().enumerate())
                .map(|(i, layer)| layer.folded(i == 0))
                .collect(),
            logits: joint_weight(&self.logits, self.layers.is_empty()),
            latent: self.latent,
        })
    }
}

/// [`MlpDecoder`] in evaluation mode with each batch norm folded into its dense layer, from
/// [`Decoder::freeze`]:
///
/// ```text
/// h = z
/// for (W', b') in hidden: h = ELU(W' · concat(h, z) + b')    (the first layer: W' · z + b')
/// logits = W_out · concat(h, z)
/// ```
///
/// One `addmm` per hidden layer where the decoder runs a matrix product and a batch norm (and,
/// backward, the batch norm's gradient): AIS takes the decoder's gradient at every leapfrog
/// step. The tensors are copies: training the decoder further does not change them.
#[derive(Debug)]
pub struct FrozenMlpDecoder {
    /// Folded weight `[out, in]` and bias `[out]` of each hidden layer.
    hidden: Vec<(Tensor, Tensor)>,
    /// Output weight `[784, in]`.
    logits: Tensor,
    latent: i64,
}

impl FrozenDecoder for FrozenMlpDecoder {
    fn forward(&self, z: &Tensor) -> Tensor {
        check_code_input(z, self.latent, "FrozenMlpDecoder");
        let joint = |h: &Tensor, first: bool| {
            if first {
                z.shallow_clone()
            } else {
                Tensor::cat(&[h, z], 1)
            }
        };
        let mut h = z.shallow_clone();
        for (i, (w, b)) in self.hidden.iter().enumerate() {
            h = elu(&joint(&h, i == 0).linear(w, Some(b)));
        }
        joint(&h, self.hidden.is_empty())
            .linear::<Tensor>(&self.logits, None)
            .view([-1, 1, 28, 28])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// The first layer's shortcut is the layer it stands for, `W · concat(x, x)`: same values
    /// and same gradients for `W` and `x`.
    #[test]
    fn summed_blocks_match_the_concatenated_input() {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let dense = Dense::new(&(vs.root() / "dense"), 2 * 5, 4, false).unwrap();
        let x = Tensor::randn([3, 5], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let upstream = Tensor::randn([3, 4], (Kind::Float, Device::Cpu));
        let grads = |y: Tensor| {
            let loss = (y * &upstream).sum(Kind::Float);
            let g = Tensor::run_backward(&[loss], &[&dense.ws, &x], false, false);
            (g[0].copy(), g[1].copy())
        };
        let fast = skip_linear(&dense, &x, &x, true);
        let literal = dense.forward(&Tensor::cat(&[&x, &x], 1));
        let max_diff = |a: &Tensor, b: &Tensor| (a - b).abs().max().double_value(&[]);
        assert!(max_diff(&fast, &literal) < 1e-6);
        let (gw_fast, gx_fast) = grads(fast);
        let (gw_lit, gx_lit) = grads(literal);
        assert!(max_diff(&gw_fast, &gw_lit) < 1e-6, "dL/dW");
        assert!(max_diff(&gx_fast, &gx_lit) < 1e-6, "dL/dx");
        assert_eq!(gw_fast.size(), [4, 10]);
    }

    /// A decoder whose batch norms hold running statistics and affine parameters far from
    /// their initial values (identity maps would hide a wrong fold): random `γ`, `β`, then three
    /// training-mode batches that move the running averages.
    fn trained_decoder(hidden: &[i64], latent: i64) -> (nn::VarStore, MlpDecoder) {
        tch::manual_seed(11);
        let vs = nn::VarStore::new(Device::Cpu);
        let bn = BatchNormSettings {
            momentum: 0.5,
            ..BatchNormSettings::default()
        };
        let dec = MlpDecoder::new(&(vs.root() / "dec"), hidden, latent, bn).unwrap();
        tch::no_grad(|| {
            for layer in &dec.layers {
                let c = layer.bn.ws.size()[0];
                layer
                    .bn
                    .ws
                    .shallow_clone()
                    .copy_(&(Tensor::rand([c], (Kind::Float, Device::Cpu)) + 0.5));
                layer
                    .bn
                    .bs
                    .shallow_clone()
                    .copy_(&Tensor::randn([c], (Kind::Float, Device::Cpu)));
            }
            for _ in 0..3 {
                let z = Tensor::randn([16, latent], (Kind::Float, Device::Cpu)) * 2.0 + 1.0;
                let _ = dec.forward_t(&z, true);
            }
        });
        (vs, dec)
    }

    /// The folded decoder is the decoder in evaluation mode: values and gradients with respect
    /// to `z`, with zero, one and two hidden layers, and it keeps the parameters it was made from.
    #[test]
    fn frozen_decoder_is_the_decoder_in_evaluation_mode() {
        let max_diff = |a: &Tensor, b: &Tensor| (a - b).abs().max().double_value(&[]);
        for hidden in [vec![], vec![7], vec![9, 6]] {
            let (_vs, dec) = trained_decoder(&hidden, 4);
            let frozen = dec.freeze();
            let z = Tensor::randn([5, 4], (Kind::Float, Device::Cpu)).set_requires_grad(true);
            let upstream = Tensor::randn([5, 1, 28, 28], (Kind::Float, Device::Cpu));
            let value_and_grad = |y: Tensor| {
                let loss = (&y * &upstream).sum(Kind::Float);
                let g = Tensor::run_backward(&[loss], &[&z], false, false);
                (y.detach(), g[0].copy())
            };
            let (y_ref, g_ref) = value_and_grad(dec.forward_t(&z, false));
            let (y, g) = value_and_grad(frozen.forward(&z));
            assert!(
                y_ref.abs().max().double_value(&[]) > 0.1,
                "{hidden:?}: a trivial case"
            );
            assert!(max_diff(&y, &y_ref) < 1e-5, "{hidden:?}: values");
            assert!(max_diff(&g, &g_ref) < 1e-5, "{hidden:?}: gradients");
            // Training on changes the decoder, not the frozen copy.
            tch::no_grad(|| {
                if let Some(layer) = dec.layers.first() {
                    // The running statistics moved away from their initial 0 and 1.
                    assert!(layer.bn.running_mean.abs().max().double_value(&[]) > 0.1);
                    let _ = layer.bn.running_mean.shallow_clone().fill_(5.0);
                }
                let _ = dec.logits.ws.shallow_clone().fill_(0.0);
            });
            assert!(
                max_diff(&frozen.forward(&z), &y) < 1e-6,
                "{hidden:?}: frozen"
            );
            assert!(
                max_diff(&dec.forward_t(&z, false), &y) > 0.1,
                "{hidden:?}: live"
            );
        }
    }
}
