//! Helpers shared by the integration tests: the three families, and the original's layer lists
//! written out from ORIGINAL §3 (not from this crate's code) to count parameters.

#![allow(dead_code)]

use tch::nn;
use vae_nets::{
    build_decoder, build_encoder, BatchNormSettings, Decoder, DecoderConfig, Encoder,
    EncoderConfig, Normalization, DEFAULT_LOG_SIGMA_OFFSET,
};

/// One encoder/decoder family as the tests use it.
#[derive(Debug, Clone)]
pub struct Family {
    /// Name for messages.
    pub name: &'static str,
    /// Encoder config.
    pub enc: EncoderConfig,
    /// Decoder config.
    pub dec: DecoderConfig,
    /// Whether the family has batch normalization.
    pub has_bn: bool,
}

/// The three families; the MLP with modest widths to keep tests quick.
pub fn families() -> Vec<Family> {
    vec![
        Family {
            name: "resnet",
            enc: EncoderConfig::Resnet,
            dec: DecoderConfig::Resnet,
            has_bn: true,
        },
        Family {
            name: "gated_conv",
            enc: EncoderConfig::GatedConv,
            dec: DecoderConfig::GatedConv,
            has_bn: false,
        },
        Family {
            name: "mlp",
            enc: EncoderConfig::mlp(vec![300, 200]),
            dec: DecoderConfig::mlp(vec![200, 300]),
            has_bn: true,
        },
    ]
}

/// Builds a family's encoder under `enc` and decoder under `dec` with default BN settings and the
/// default log-std offset.
pub fn build(vs: &nn::VarStore, fam: &Family, latent: i64) -> (Box<dyn Encoder>, Box<dyn Decoder>) {
    let bn = BatchNormSettings::default();
    let enc = build_encoder(
        &(vs.root() / "enc"),
        &fam.enc,
        latent,
        DEFAULT_LOG_SIGMA_OFFSET,
        bn,
    )
    .unwrap_or_else(|e| panic!("{}: building the encoder failed: {e}", fam.name));
    let dec = build_decoder(&(vs.root() / "dec"), &fam.dec, latent, bn)
        .unwrap_or_else(|e| panic!("{}: building the decoder failed: {e}", fam.name));
    (enc, dec)
}

/// Parameter tensors of one layer of the original, as element counts.
pub type LayerParams = Vec<i64>;

/// `k`x`k` (transposed) convolution: weight `k*k*cin*cout`, plus a bias of `cout` if `bias`.
pub fn conv(k: i64, cin: i64, cout: i64, bias: bool) -> LayerParams {
    let mut v = vec![k * k * cin * cout];
    if bias {
        v.push(cout);
    }
    v
}

/// Dense `i -> o`, plus a bias if `bias`.
pub fn dense(i: i64, o: i64, bias: bool) -> LayerParams {
    let mut v = vec![i * o];
    if bias {
        v.push(o);
    }
    v
}

/// Batch norm over `c` channels: gamma and beta (moving statistics are not trainable).
pub fn bn(c: i64) -> LayerParams {
    vec![c, c]
}

/// Gated (transposed) convolution: two convolutions with biases.
pub fn gated(k: i64, cin: i64, cout: i64) -> LayerParams {
    [conv(k, cin, cout, true), conv(k, cin, cout, true)].concat()
}

/// ORIGINAL §3.1.1, IAF_ENCODER, row by row.
pub fn spec_resnet_encoder(d: i64) -> Vec<LayerParams> {
    let mut layers = Vec::new();
    // Rows 1-6: Block(in): BN(in), Conv3x3(in -> 64, no bias), BN(64), Conv3x3(64 -> 64, no bias).
    for input in [1, 64, 64, 64, 64, 64] {
        layers.push(bn(input));
        layers.push(conv(3, input, 64, false));
        layers.push(bn(64));
        layers.push(conv(3, 64, 64, false));
    }
    layers.push(bn(64)); // row 7
    layers.push(dense(7 * 7 * 64, 450, false)); // row 9
    layers.push(bn(450));
    layers.push(dense(450, 2 * d, false)); // row 10
    layers.push(bn(2 * d));
    layers
}

/// ORIGINAL §3.2.1, IAF_DECODER, row by row.
pub fn spec_resnet_decoder(d: i64) -> Vec<LayerParams> {
    let mut layers = vec![conv(7, d, 64, false)]; // row 1, transposed, no bias, no BN
                                                  // Rows 2-7: BlockT: BN, Conv3x3, BN, Conv3x3 or ConvT3x3 (no biases).
    for _ in 0..6 {
        layers.push(bn(64));
        layers.push(conv(3, 64, 64, false));
        layers.push(bn(64));
        layers.push(conv(3, 64, 64, false));
    }
    layers.push(bn(64)); // row 8
    layers.push(conv(1, 64, 1, true)); // row 9
    layers
}

/// ORIGINAL §3.1.2, SNF_ENCODER.
pub fn spec_gated_encoder(d: i64) -> Vec<LayerParams> {
    vec![
        gated(5, 1, 32),
        gated(5, 32, 32),
        gated(5, 32, 64),
        gated(5, 64, 64),
        gated(5, 64, 64),
        gated(7, 64, 256),
        dense(256, 2 * d, true),
    ]
}

/// ORIGINAL §3.2.2, SNF_DECODER.
pub fn spec_gated_decoder(d: i64) -> Vec<LayerParams> {
    vec![
        gated(7, d, 64),
        gated(5, 64, 64),
        gated(5, 64, 32),
        gated(5, 32, 32),
        gated(5, 32, 32),
        gated(5, 32, 32),
        conv(1, 32, 1, true),
    ]
}

/// ORIGINAL §3.1.3, NONCONV_ENCODER.
pub fn spec_mlp_encoder(hidden: &[i64], d: i64) -> Vec<LayerParams> {
    spec_mlp_encoder_with(hidden, d, Normalization::BatchNorm)
}

/// ORIGINAL §3.2.3, NONCONV_DECODER.
pub fn spec_mlp_decoder(hidden: &[i64], d: i64) -> Vec<LayerParams> {
    spec_mlp_decoder_with(hidden, d, Normalization::BatchNorm)
}

/// One MLP layer `i -> o` followed by `norm` (NORMALIZATION §1–§2): a bias-free dense layer and
/// BN's γ, β; weight norm's `v` `[o, i]`, `g` `[o, 1]` and `b` `[o]`; or a dense layer with a
/// bias.
pub fn normalized_dense(i: i64, o: i64, norm: Normalization) -> Vec<LayerParams> {
    match norm {
        Normalization::BatchNorm => vec![dense(i, o, false), bn(o)],
        Normalization::WeightNorm => vec![vec![i * o, o, o]],
        Normalization::None => vec![dense(i, o, true)],
    }
}

/// [`spec_mlp_encoder`] with every layer normalized as `norm` says (NORMALIZATION §2).
pub fn spec_mlp_encoder_with(hidden: &[i64], d: i64, norm: Normalization) -> Vec<LayerParams> {
    let mut layers = Vec::new();
    let mut prev = 784;
    for &w in hidden {
        layers.extend(normalized_dense(prev + 784, w, norm));
        prev = w;
    }
    layers.extend(normalized_dense(prev + 784, 2 * d, norm));
    layers
}

/// [`spec_mlp_decoder`] with the hidden layers normalized as `norm` says; the logits layer has
/// no normalization and no bias in every case (NORMALIZATION §2).
pub fn spec_mlp_decoder_with(hidden: &[i64], d: i64, norm: Normalization) -> Vec<LayerParams> {
    let mut layers = Vec::new();
    let mut prev = d;
    for &w in hidden {
        layers.extend(normalized_dense(prev + d, w, norm));
        prev = w;
    }
    layers.push(dense(prev + d, 784, false)); // no BN, no bias
    layers
}

/// Sorted element counts of every parameter tensor in a spec layer list.
pub fn spec_numels(layers: &[LayerParams]) -> Vec<i64> {
    let mut v: Vec<i64> = layers.iter().flatten().copied().collect();
    v.sort_unstable();
    v
}

/// Sorted element counts of the trainable parameters whose name starts with `prefix`.
pub fn store_numels(vs: &nn::VarStore, prefix: &str) -> Vec<i64> {
    let vars = vs.variables();
    let mut v: Vec<i64> = vars
        .iter()
        .filter(|(name, t)| name.starts_with(prefix) && t.requires_grad())
        .map(|(_, t)| t.numel() as i64)
        .collect();
    v.sort_unstable();
    v
}
