//! The MLP encoder and decoder, `NONCONV_ENCODER` and `NONCONV_DECODER` of the original
//! (ORIGINAL §3.1.3 and §3.2.3): every layer sees its input concatenated with the network's
//! input (the image for the encoder, the code for the decoder). Each layer's dense map is
//! followed by batch norm (the original), or weight-normalized, or plain with a bias, as the
//! config's `normalization` says (NORMALIZATION §1–§2).

use tch::nn;
use tch::Tensor;
use vae_nn::{hold_running_statistics, Normalization, WeightNormLinear};

use crate::config::{validate_hidden, validate_latent, validate_offset, BatchNormSettings};
use crate::layers::{elu, glorot_uniform, BatchNorm, Dense};
use crate::{
    check_code_input, check_image_input, Decoder, Encoder, EncoderOutput, FrozenDecoder, Result,
    IMAGE_PIXELS,
};

/// The pre-activation of one layer, `W · concat(h, skip)` normalized as configured, before any
/// activation. Its variables live under the layer's path.
#[derive(Debug)]
enum Affine {
    /// `BN(W · input)`, no bias: `dense.weight`, `bn.*` (the original, ORIGINAL §3.1.3).
    BatchNorm { dense: Dense, bn: BatchNorm },
    /// `g · (v · input) / ‖v‖ + b` per unit: `dense.weight_v`, `dense.weight_g`, `dense.bias`
    /// (NORMALIZATION §2).
    WeightNorm(WeightNormLinear),
    /// `W · input + b`: `dense.weight`, `dense.bias`.
    Plain(Dense),
}

impl Affine {
    /// Builds the layer `input` → `width` under `p` for `normalization`. The weight (or `v`) is
    /// Glorot uniform in every case, from the same random draws; biases and β start at 0.
    fn new(
        p: &nn::Path,
        input: i64,
        width: i64,
        normalization: Normalization,
        bn: BatchNormSettings,
    ) -> Result<Self> {
        let dense = p / "dense";
        Ok(match normalization {
            Normalization::BatchNorm => Affine::BatchNorm {
                dense: Dense::new(&dense, input, width, false)?,
                bn: BatchNorm::new(&(p / "bn"), width, 0.0, bn)?,
            },
            Normalization::WeightNorm => Affine::WeightNorm(WeightNormLinear::new(
                &dense,
                input,
                width,
                glorot_uniform(input, width),
                0.0,
            )?),
            Normalization::None => Affine::Plain(Dense::new(&dense, input, width, true)?),
        })
    }

    /// `[B, ·]` inputs → the pre-activation `[B, width]` (see [`skip_linear`] for `same`).
    fn forward_t(&self, h: &Tensor, skip: &Tensor, same: bool, train: bool) -> Tensor {
        match self {
            Affine::BatchNorm { dense, bn } => {
                bn.forward_t(&skip_linear(&dense.ws, None, h, skip, same), train)
            }
            Affine::WeightNorm(layer) => {
                skip_linear(&layer.weight(), Some(&layer.norm.b), h, skip, same)
            }
            Affine::Plain(dense) => skip_linear(&dense.ws, dense.bs.as_ref(), h, skip, same),
        }
    }

    /// The evaluation-mode pre-activation as one dense layer `W' · concat(h, skip) + b'`
    /// (with `same`, `W'` acts on `skip` alone, see [`skip_linear`]): the batch norm folded in
    /// (`W' = diag(scale) · W`, `b' = shift`, from [`BatchNorm::eval_affine`]), the weight norm
    /// folded (`W' = g · v / ‖v‖`, NORMALIZATION §5), or the plain layer as it is. Weight
    /// `[out, in]` and bias `[out]`, detached copies.
    fn folded(&self, same: bool) -> (Tensor, Tensor) {
        match self {
            Affine::BatchNorm { dense, bn } => {
                let (scale, shift) = bn.eval_affine();
                let w = tch::no_grad(|| joint_weight(&dense.ws, same) * scale.unsqueeze(1));
                (w, shift)
            }
            Affine::WeightNorm(layer) => {
                let (w, b) = layer.folded();
                (joint_weight(&w, same), b)
            }
            Affine::Plain(dense) => {
                let b = match &dense.bs {
                    Some(b) => b.detach().copy(),
                    None => unreachable!("plain MLP layers have a bias"),
                };
                (joint_weight(&dense.ws, same), b)
            }
        }
    }

    /// Data-dependent initialisation on the batch `(h, skip)` (NORMALIZATION §3): a
    /// weight-normalized layer sets `g` and `b` from its pre-activations; the others have
    /// nothing to set. Returns the pre-activation after it, as in training mode (a batch
    /// norm's running statistics held), detached.
    fn data_init(&self, h: &Tensor, skip: &Tensor, same: bool) -> Result<Tensor> {
        tch::no_grad(|| match self {
            Affine::WeightNorm(layer) => {
                let t = skip_linear(&layer.direction(), None, h, skip, same);
                Ok(layer.norm.init_from_preactivations(&t)?)
            }
            _ => Ok(hold_running_statistics(|| {
                self.forward_t(h, skip, same, true)
            })),
        })
    }
}

/// One hidden layer `h = ELU(pre-activation)` (see [`Affine`]). Path `hidden{i}`.
#[derive(Debug)]
struct HiddenLayer {
    affine: Affine,
}

impl HiddenLayer {
    fn forward_t(&self, h: &Tensor, skip: &Tensor, same: bool, train: bool) -> Tensor {
        elu(&self.affine.forward_t(h, skip, same, train))
    }

    fn data_init(&self, h: &Tensor, skip: &Tensor, same: bool) -> Result<Tensor> {
        Ok(elu(&self.affine.data_init(h, skip, same)?))
    }
}

/// `W · concat(h, skip) + b` for a weight `w` `[out, 2n]` or `[out, n_h + n_skip]`. When `same`
/// (the first layer, where `h` is `skip` itself), the two column blocks of `W` act on the same
/// input and are summed first: `(W_h + W_skip) · skip`, the same function and gradients with
/// half the multiply-adds and no concatenation.
///
/// The blocks are the two halves of `W` viewed `[out, 2, n]` and unbound along the middle axis:
/// their gradients then go back in one `stack`, where adding two `narrow`s gave each its own
/// zero-filled `slice_backward` plus an accumulation, five kernels (launches, on a GPU) instead
/// of one. PyTorch 2.11, 2 threads, the encoder's `[500, 1568]` weight with a batch of 200:
/// forward and backward 2.47 ms against 2.80 for the `narrow`s and 2.43–2.55 for a `sum` over
/// the middle axis, whose forward alone took 210 µs against 95 for the addition.
fn skip_linear(w: &Tensor, b: Option<&Tensor>, h: &Tensor, skip: &Tensor, same: bool) -> Tensor {
    if same {
        skip.linear(&summed_blocks(w), b)
    } else {
        Tensor::cat(&[h, skip], 1).linear(w, b)
    }
}

/// `W_h + W_skip`, `[out, n]`, from a weight `[out, 2n]`: its two column blocks, summed.
fn summed_blocks(w: &Tensor) -> Tensor {
    let out = w.size()[0];
    let blocks = w.view([out, 2, -1]).unbind(1);
    &blocks[0] + &blocks[1]
}

/// The weight that [`skip_linear`] applies, `[out, in]`: `w`, or with `same` the sum of its two
/// column blocks; a detached copy.
fn joint_weight(w: &Tensor, same: bool) -> Tensor {
    tch::no_grad(|| {
        let w = w.detach();
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
    normalization: Normalization,
    bn: BatchNormSettings,
) -> Result<(Vec<HiddenLayer>, i64)> {
    let mut layers = Vec::with_capacity(hidden.len());
    let mut prev = first_input;
    for (i, &width) in hidden.iter().enumerate() {
        let p = p / format!("hidden{}", i + 1);
        layers.push(HiddenLayer {
            affine: Affine::new(&p, prev + skip, width, normalization, bn)?,
        });
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
///
/// With weight norm every `BN(W · ·)` is `g · (v · ·) / ‖v‖ + b` (variables `dense.weight_v`,
/// `dense.weight_g`, `dense.bias`, no `bn`); with `none` it is `W · · + b` (`dense.weight`,
/// `dense.bias`): NORMALIZATION §2.
#[derive(Debug)]
pub struct MlpEncoder {
    layers: Vec<HiddenLayer>,
    out: Affine,
    hidden_size: i64,
    latent: i64,
    log_sigma_offset: f64,
}

impl MlpEncoder {
    /// Builds the encoder under `p` with hidden widths `hidden` (each at least 1; may be empty)
    /// for latent size `latent`; `log_sigma_offset` is added to the log-std (ORIGINAL §3.1).
    /// Batch norm after every layer, as in the original.
    pub fn new(
        p: &nn::Path,
        hidden: &[i64],
        latent: i64,
        log_sigma_offset: f64,
        bn: BatchNormSettings,
    ) -> Result<Self> {
        Self::with_normalization(
            p,
            hidden,
            latent,
            log_sigma_offset,
            bn,
            Normalization::BatchNorm,
        )
    }

    /// [`new`](Self::new) with the layers normalized as `normalization` says (NORMALIZATION
    /// §2). `bn` is validated whatever the normalization.
    pub fn with_normalization(
        p: &nn::Path,
        hidden: &[i64],
        latent: i64,
        log_sigma_offset: f64,
        bn: BatchNormSettings,
        normalization: Normalization,
    ) -> Result<Self> {
        validate_hidden(hidden)?;
        validate_latent(latent)?;
        validate_offset(log_sigma_offset)?;
        bn.validate()?;
        let (layers, last) =
            hidden_stack(p, hidden, IMAGE_PIXELS, IMAGE_PIXELS, normalization, bn)?;
        Ok(MlpEncoder {
            layers,
            out: Affine::new(
                &(p / "out"),
                last + IMAGE_PIXELS,
                2 * latent,
                normalization,
                bn,
            )?,
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
        let out = self.out.forward_t(&h, &x, self.layers.is_empty(), train);
        EncoderOutput::split(&out, self.latent, self.log_sigma_offset, h)
    }

    /// Initialises the layers in order, each on the outputs of the ones before it after their
    /// own initialisation (NORMALIZATION §3).
    fn data_dependent_init(&self, x: &Tensor) -> Result<EncoderOutput> {
        check_image_input(x, "MlpEncoder");
        let x = x.flatten(1, -1).detach();
        let mut h = x.shallow_clone();
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.data_init(&h, &x, i == 0)?;
        }
        let out = self.out.data_init(&h, &x, self.layers.is_empty())?;
        Ok(EncoderOutput::split(
            &out,
            self.latent,
            self.log_sigma_offset,
            h,
        ))
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
/// Paths: `hidden1`, `hidden2`, … (each `dense`, `bn`), `logits` (weight only). With weight
/// norm or `none`, the hidden layers change as in [`MlpEncoder`]; the logits layer stays as it
/// is (NORMALIZATION §2).
#[derive(Debug)]
pub struct MlpDecoder {
    layers: Vec<HiddenLayer>,
    logits: Dense,
    latent: i64,
}

impl MlpDecoder {
    /// Builds the decoder under `p` with hidden widths `hidden` (each at least 1; may be empty)
    /// for latent size `latent`, with batch norm as in the original.
    pub fn new(p: &nn::Path, hidden: &[i64], latent: i64, bn: BatchNormSettings) -> Result<Self> {
        Self::with_normalization(p, hidden, latent, bn, Normalization::BatchNorm)
    }

    /// [`new`](Self::new) with the hidden layers normalized as `normalization` says
    /// (NORMALIZATION §2). `bn` is validated whatever the normalization.
    pub fn with_normalization(
        p: &nn::Path,
        hidden: &[i64],
        latent: i64,
        bn: BatchNormSettings,
        normalization: Normalization,
    ) -> Result<Self> {
        validate_hidden(hidden)?;
        validate_latent(latent)?;
        bn.validate()?;
        let (layers, last) = hidden_stack(p, hidden, latent, latent, normalization, bn)?;
        Ok(MlpDecoder {
            layers,
            logits: Dense::new(&(p / "logits"), last + latent, IMAGE_PIXELS, false)?,
            latent,
        })
    }

    fn logits(&self, h: &Tensor, z: &Tensor) -> Tensor {
        skip_linear(&self.logits.ws, None, h, z, self.layers.is_empty()).view([-1, 1, 28, 28])
    }
}

impl Decoder for MlpDecoder {
    fn forward_t(&self, z: &Tensor, train: bool) -> Tensor {
        check_code_input(z, self.latent, "MlpDecoder");
        let mut h = z.shallow_clone();
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward_t(&h, z, i == 0, train);
        }
        self.logits(&h, z)
    }

    /// Initialises the hidden layers in order, each on the outputs of the ones before it after
    /// their own initialisation (NORMALIZATION §3); the logits layer has nothing to set.
    fn data_dependent_init(&self, z: &Tensor) -> Result<Tensor> {
        check_code_input(z, self.latent, "MlpDecoder");
        let z = z.detach();
        let mut h = z.shallow_clone();
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.data_init(&h, &z, i == 0)?;
        }
        Ok(tch::no_grad(|| self.logits(&h, &z)))
    }

    fn freeze(&self) -> Box<dyn FrozenDecoder + '_> {
        Box::new(FrozenMlpDecoder {
            hidden: (self.layers.iter().enumerate())
                .map(|(i, layer)| layer.affine.folded(i == 0))
                .collect(),
            logits: joint_weight(&self.logits.ws, self.layers.is_empty()),
            latent: self.latent,
        })
    }
}

/// [`MlpDecoder`] in evaluation mode with each batch norm (or weight norm) folded into its
/// dense layer, from [`Decoder::freeze`]:
///
/// ```text
/// h = z
/// for (W', b') in hidden: h = ELU(W' · concat(h, z) + b')    (the first layer: W' · z + b')
/// logits = W_out · concat(h, z)
/// ```
///
/// One `addmm` per hidden layer where the decoder runs a matrix product and a batch norm (and,
/// backward, the batch norm's gradient), or recomputes `g · v / ‖v‖`: AIS takes the decoder's
/// gradient at every leapfrog step. The tensors are copies: training the decoder further does
/// not change them.
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
        let fast = skip_linear(&dense.ws, None, &x, &x, true);
        let literal = dense.forward(&Tensor::cat(&[&x, &x], 1));
        let max_diff = |a: &Tensor, b: &Tensor| (a - b).abs().max().double_value(&[]);
        assert!(max_diff(&fast, &literal) < 1e-6);
        let (gw_fast, gx_fast) = grads(fast);
        let (gw_lit, gx_lit) = grads(literal);
        assert!(max_diff(&gw_fast, &gw_lit) < 1e-6, "dL/dW");
        assert!(max_diff(&gx_fast, &gx_lit) < 1e-6, "dL/dx");
        assert_eq!(gw_fast.size(), [4, 10]);
    }

    /// A decoder whose normalization parameters are far from their initial values (identity
    /// maps would hide a wrong fold): batch norm with random `γ`, `β`, then three training-mode
    /// batches that move the running averages; weight norm with random `g` and `b`; plain
    /// layers with random biases.
    fn trained_decoder(
        hidden: &[i64],
        latent: i64,
        normalization: Normalization,
    ) -> (nn::VarStore, MlpDecoder) {
        tch::manual_seed(11);
        let vs = nn::VarStore::new(Device::Cpu);
        let bn = BatchNormSettings {
            momentum: 0.5,
            ..BatchNormSettings::default()
        };
        let dec =
            MlpDecoder::with_normalization(&(vs.root() / "dec"), hidden, latent, bn, normalization)
                .unwrap();
        let randomise = |t: &Tensor, positive: bool| {
            let r = if positive {
                t.rand_like() + 0.5
            } else {
                t.randn_like()
            };
            t.shallow_clone().copy_(&r);
        };
        tch::no_grad(|| {
            for layer in &dec.layers {
                match &layer.affine {
                    Affine::BatchNorm { bn, .. } => {
                        randomise(&bn.ws, true);
                        randomise(&bn.bs, false);
                    }
                    Affine::WeightNorm(l) => {
                        randomise(&l.norm.g, true);
                        randomise(&l.norm.b, false);
                    }
                    Affine::Plain(d) => randomise(d.bs.as_ref().unwrap(), false),
                }
            }
            for _ in 0..3 {
                let z = Tensor::randn([16, latent], (Kind::Float, Device::Cpu)) * 2.0 + 1.0;
                let _ = dec.forward_t(&z, true);
            }
        });
        (vs, dec)
    }

    /// The folded decoder is the decoder in evaluation mode: values and gradients with respect
    /// to `z`, with zero, one and two hidden layers, for every normalization, and it keeps the
    /// parameters it was made from.
    #[test]
    fn frozen_decoder_is_the_decoder_in_evaluation_mode() {
        let max_diff = |a: &Tensor, b: &Tensor| (a - b).abs().max().double_value(&[]);
        let norms = [
            Normalization::BatchNorm,
            Normalization::WeightNorm,
            Normalization::None,
        ];
        for (hidden, normalization) in [vec![], vec![7], vec![9, 6]]
            .into_iter()
            .flat_map(|h| norms.map(|n| (h.clone(), n)))
        {
            let (_vs, dec) = trained_decoder(&hidden, 4, normalization);
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
            let hidden = (hidden.clone(), normalization);
            assert!(
                y_ref.abs().max().double_value(&[]) > 0.1,
                "{hidden:?}: a trivial case"
            );
            assert!(max_diff(&y, &y_ref) < 1e-5, "{hidden:?}: values");
            assert!(max_diff(&g, &g_ref) < 1e-5, "{hidden:?}: gradients");
            // Training on changes the decoder, not the frozen copy.
            tch::no_grad(|| {
                match dec.layers.first().map(|l| &l.affine) {
                    Some(Affine::BatchNorm { bn, .. }) => {
                        // The running statistics moved away from their initial 0 and 1.
                        assert!(bn.running_mean.abs().max().double_value(&[]) > 0.1);
                        let _ = bn.running_mean.shallow_clone().fill_(5.0);
                    }
                    Some(Affine::WeightNorm(l)) => {
                        let _ = l.norm.g.shallow_clone().fill_(5.0);
                    }
                    Some(Affine::Plain(d)) => {
                        let _ = d.bs.as_ref().unwrap().shallow_clone().fill_(5.0);
                    }
                    None => {}
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
