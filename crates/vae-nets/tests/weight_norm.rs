//! The MLP networks with `normalization: weight_norm` and `none` (NORMALIZATION §1–§3, §5): the
//! data-dependent initialisation's statistics, recomputed from the variables alone; parameter
//! counts and names for every normalization; the config's JSON forms and refusals; batch
//! independence; gradients; and the initialisation's errors and its no-op on batch norm.

mod common;

use common::*;
use tch::{nn, Device, Kind, Tensor};
use vae_nets::{
    build_decoder, build_encoder, BatchNormSettings, DecoderConfig, EncoderConfig, Error,
    Normalization, DEFAULT_LOG_SIGMA_OFFSET,
};

const NORMS: [Normalization; 3] = [
    Normalization::BatchNorm,
    Normalization::WeightNorm,
    Normalization::None,
];

fn encoder_cfg(hidden: &[i64], normalization: Normalization) -> EncoderConfig {
    EncoderConfig::Mlp {
        hidden: hidden.to_vec(),
        normalization,
    }
}

fn decoder_cfg(hidden: &[i64], normalization: Normalization) -> DecoderConfig {
    DecoderConfig::Mlp {
        hidden: hidden.to_vec(),
        normalization,
    }
}

fn images(batch: i64) -> Tensor {
    Tensor::rand([batch, 1, 28, 28], (Kind::Float, Device::Cpu)).round()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// A layer's pre-activation from the store's variables alone: `input · (g · v / ‖v‖)ᵀ + b`.
fn weight_normed(
    vars: &std::collections::HashMap<String, Tensor>,
    path: &str,
    x: &Tensor,
) -> Tensor {
    let v = &vars[&format!("{path}.weight_v")];
    let g = &vars[&format!("{path}.weight_g")];
    let b = &vars[&format!("{path}.bias")];
    let norm = v.square().sum_dim_intlist(1, true, Kind::Float).sqrt();
    x.linear(&(g * v / norm), Some(b))
}

/// Asserts that every unit (column) of `t` `[B, n]` has batch mean 0 and biased batch variance 1
/// to 1e-4.
fn assert_standardised(t: &Tensor, what: &str) {
    let t = t.to_kind(Kind::Double);
    let mean = t.mean_dim(0, false, Kind::Double);
    let var = (&t - &mean).square().mean_dim(0, false, Kind::Double);
    let worst_mean = mean.abs().max().double_value(&[]);
    let worst_var = (var - 1.0).abs().max().double_value(&[]);
    assert!(
        worst_mean < 1e-4,
        "{what}: a unit's mean is off by {worst_mean}"
    );
    assert!(
        worst_var < 1e-4,
        "{what}: a unit's variance is off by {worst_var}"
    );
}

/// After `data_dependent_init` every weight-normalized unit of the MLP encoder (hidden layers
/// and the output layer, whose units are `mu` and `log_sigma` before the offset) has mean 0 and
/// variance 1 on the init batch, recomputed layer by layer from the variables; the returned
/// output is the encoder's, in training and in evaluation mode alike. Two hidden layers, and
/// none (the output layer then sees `concat(x, x)`).
#[test]
fn encoder_units_are_standardised_on_the_init_batch() {
    tch::manual_seed(1);
    for hidden in [vec![30, 20], vec![]] {
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = encoder_cfg(&hidden, Normalization::WeightNorm);
        let latent = 4;
        let enc = build_encoder(
            &(vs.root() / "enc"),
            &cfg,
            latent,
            DEFAULT_LOG_SIGMA_OFFSET,
            BatchNormSettings::default(),
        )
        .unwrap();
        let x = images(100);
        let out = enc.data_dependent_init(&x).unwrap();
        let vars = vs.variables();
        let flat = x.flatten(1, -1);
        let _no_grad = tch::no_grad_guard();
        let mut h = flat.shallow_clone();
        for k in 1..=hidden.len() {
            let input = Tensor::cat(&[&h, &flat], 1);
            let pre = weight_normed(&vars, &format!("enc.hidden{k}.dense"), &input);
            assert_standardised(&pre, &format!("{hidden:?} hidden{k}"));
            h = pre.elu();
        }
        let pre = weight_normed(&vars, "enc.out.dense", &Tensor::cat(&[&h, &flat], 1));
        assert_standardised(&pre, &format!("{hidden:?} out"));
        let mu = pre.narrow(1, 0, latent);
        let log_sigma = pre.narrow(1, latent, latent) + DEFAULT_LOG_SIGMA_OFFSET;
        for (returned, mode) in [(&out, "init"), (&enc.forward_t(&x, true), "train")] {
            assert!(max_diff(&returned.mu, &mu) < 1e-5, "{hidden:?} {mode}: mu");
            assert!(max_diff(&returned.log_sigma, &log_sigma) < 1e-5, "{mode}");
            assert!(max_diff(&returned.h, &h) < 1e-5, "{mode}: h");
        }
        let eval = enc.forward_t(&x, false);
        assert!(
            max_diff(&eval.mu, &mu) < 1e-5,
            "evaluation mode is training mode"
        );
    }
}

/// The same for the decoder's hidden layers, on codes far from zero mean and unit scale; the
/// returned logits are the decoder's.
#[test]
fn decoder_units_are_standardised_on_the_init_batch() {
    tch::manual_seed(2);
    let latent = 6;
    let hidden = [16, 12];
    let vs = nn::VarStore::new(Device::Cpu);
    let dec = build_decoder(
        &(vs.root() / "dec"),
        &decoder_cfg(&hidden, Normalization::WeightNorm),
        latent,
        BatchNormSettings::default(),
    )
    .unwrap();
    let z = Tensor::randn([80, latent], (Kind::Float, Device::Cpu)) * 3.0 - 1.0;
    let logits = dec.data_dependent_init(&z).unwrap();
    let vars = vs.variables();
    let _no_grad = tch::no_grad_guard();
    let mut h = z.shallow_clone();
    for k in 1..=hidden.len() {
        let pre = weight_normed(
            &vars,
            &format!("dec.hidden{k}.dense"),
            &Tensor::cat(&[&h, &z], 1),
        );
        assert_standardised(&pre, &format!("hidden{k}"));
        h = pre.elu();
    }
    let expected = Tensor::cat(&[&h, &z], 1)
        .linear::<Tensor>(&vars["dec.logits.weight"], None)
        .view([-1, 1, 28, 28]);
    assert!(max_diff(&logits, &expected) < 1e-4);
    assert!(max_diff(&dec.forward_t(&z, true), &expected) < 1e-4);
}

/// Trainable parameters, as element counts, match the layer lists of ORIGINAL §3.1.3 and
/// §3.2.3 with each normalization's per-unit parameters (NORMALIZATION §1–§2); weight norm has
/// as many as batch norm, `none` one fewer per unit.
#[test]
fn parameter_counts_for_every_normalization() {
    let latent = 8;
    for hidden in [vec![300, 200], vec![]] {
        let mut totals = Vec::new();
        for norm in NORMS {
            let fam = Family {
                name: "mlp",
                enc: encoder_cfg(&hidden, norm),
                dec: decoder_cfg(&hidden, norm),
                has_bn: norm == Normalization::BatchNorm,
            };
            let vs = nn::VarStore::new(Device::Cpu);
            let _nets = build(&vs, &fam, latent);
            let mut total = 0;
            for (part, spec) in [
                ("enc.", spec_mlp_encoder_with(&hidden, latent, norm)),
                ("dec.", spec_mlp_decoder_with(&hidden, latent, norm)),
            ] {
                let got = store_numels(&vs, part);
                assert_eq!(got, spec_numels(&spec), "{hidden:?} {norm} {part}");
                total += got.iter().sum::<i64>();
            }
            totals.push(total);
        }
        let units: i64 = 2 * hidden.iter().sum::<i64>() + 2 * latent;
        assert_eq!(
            totals[0], totals[1],
            "{hidden:?}: weight norm counts as batch norm"
        );
        assert_eq!(
            totals[0] - totals[2],
            units,
            "{hidden:?}: none has one per unit"
        );
    }
}

/// Variable names and shapes: weight norm's `weight_v`, `weight_g` `[out, 1]` and `bias` under
/// each layer's `dense`, no `bn`; `none`'s `weight` and `bias`; the logits layer as ever.
#[test]
fn variable_names_for_every_normalization() {
    let latent = 8;
    for norm in NORMS {
        let fam = Family {
            name: "mlp",
            enc: encoder_cfg(&[10, 20], norm),
            dec: decoder_cfg(&[20], norm),
            has_bn: norm == Normalization::BatchNorm,
        };
        let vs = nn::VarStore::new(Device::Cpu);
        let _nets = build(&vs, &fam, latent);
        let vars = vs.variables();
        let shape = |name: &str| {
            vars.get(name)
                .unwrap_or_else(|| panic!("{norm}: no parameter {name}"))
                .size()
        };
        assert_eq!(shape("dec.logits.weight"), [784, 28]);
        assert!(!vars.contains_key("dec.logits.bias"), "{norm}");
        let has_bn = vars.keys().any(|k| k.contains(".bn."));
        assert_eq!(has_bn, norm == Normalization::BatchNorm, "{norm}");
        match norm {
            Normalization::BatchNorm => {
                assert_eq!(shape("enc.hidden1.dense.weight"), [10, 1568]);
                assert_eq!(shape("enc.out.bn.weight"), [16]);
            }
            Normalization::WeightNorm => {
                assert_eq!(shape("enc.hidden1.dense.weight_v"), [10, 1568]);
                assert_eq!(shape("enc.hidden1.dense.weight_g"), [10, 1]);
                assert_eq!(shape("enc.hidden2.dense.bias"), [20]);
                assert_eq!(shape("enc.out.dense.weight_v"), [16, 804]);
                assert_eq!(shape("dec.hidden1.dense.weight_g"), [20, 1]);
                assert_eq!(vars.len(), 3 * 3 + 3 + 1);
            }
            Normalization::None => {
                assert_eq!(shape("enc.hidden2.dense.weight"), [20, 794]);
                assert_eq!(shape("enc.out.dense.bias"), [16]);
                assert_eq!(shape("dec.hidden1.dense.bias"), [20]);
                assert_eq!(vars.len(), 3 * 2 + 2 + 1);
            }
        }
    }
}

/// With weight norm or none, training mode has no batch statistics: an image's code does not
/// depend on the rest of its batch, and a batch of one is fine.
#[test]
fn without_batch_norm_training_mode_is_per_example() {
    tch::manual_seed(3);
    for norm in [Normalization::WeightNorm, Normalization::None] {
        let vs = nn::VarStore::new(Device::Cpu);
        let enc = build_encoder(
            &vs.root(),
            &encoder_cfg(&[12], norm),
            4,
            DEFAULT_LOG_SIGMA_OFFSET,
            BatchNormSettings::default(),
        )
        .unwrap();
        let x = images(7);
        let all = enc.forward_t(&x, true).mu;
        let one = enc.forward_t(&x.narrow(0, 3, 1), true).mu;
        assert!(max_diff(&all.narrow(0, 3, 1), &one) < 1e-6, "{norm}");
    }
}

/// A reconstruction loss through `z = mu + sigma · eps` gives every trainable variable of a
/// weight-normalized encoder and decoder a finite, non-zero gradient (`v`, `g` and `b` alike).
#[test]
fn every_weight_norm_parameter_gets_a_gradient() {
    tch::manual_seed(4);
    let fam = Family {
        name: "mlp",
        enc: encoder_cfg(&[24, 16], Normalization::WeightNorm),
        dec: decoder_cfg(&[16, 24], Normalization::WeightNorm),
        has_bn: false,
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let (enc, dec) = build(&vs, &fam, 5);
    let x = images(32);
    enc.data_dependent_init(&x).unwrap();
    let out = enc.forward_t(&x, true);
    let z = &out.mu + out.log_sigma.exp() * out.mu.randn_like();
    let _ = dec.data_dependent_init(&z.detach()).unwrap();
    let logits = dec.forward_t(&z, true);
    let loss =
        logits.binary_cross_entropy_with_logits::<Tensor>(&x, None, None, tch::Reduction::Sum);
    loss.backward();
    for (name, t) in vs.variables() {
        let g = t.grad();
        assert!(g.defined(), "{name}: no gradient");
        assert!(
            g.isfinite().all().int64_value(&[]) == 1,
            "{name}: non-finite gradient"
        );
        assert!(
            g.abs().max().double_value(&[]) > 0.0,
            "{name}: zero gradient"
        );
    }
}

/// One image cannot initialise a weight-normalized layer: a typed error naming the layer. A
/// batch-norm MLP has nothing to initialise and its running statistics stay where they are.
#[test]
fn init_errors_and_the_batch_norm_no_op() {
    let vs = nn::VarStore::new(Device::Cpu);
    let enc = build_encoder(
        &(vs.root() / "enc"),
        &encoder_cfg(&[5], Normalization::WeightNorm),
        3,
        DEFAULT_LOG_SIGMA_OFFSET,
        BatchNormSettings::default(),
    )
    .unwrap();
    let err = enc.data_dependent_init(&images(1)).unwrap_err();
    assert!(matches!(err, Error::Layer(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "data-dependent initialisation of `enc.hidden1.dense.weight_g` needs a batch of at \
         least 2 examples to measure each unit's variance, got 1"
    );

    let vs = nn::VarStore::new(Device::Cpu);
    let bn = BatchNormSettings {
        momentum: 0.5,
        ..BatchNormSettings::default()
    };
    let enc = build_encoder(
        &(vs.root() / "enc"),
        &encoder_cfg(&[5], Normalization::BatchNorm),
        3,
        DEFAULT_LOG_SIGMA_OFFSET,
        bn,
    )
    .unwrap();
    let before: Vec<(String, Tensor)> = (vs.variables().into_iter())
        .map(|(k, t)| (k, t.copy()))
        .collect();
    let x = images(16);
    let out = enc.data_dependent_init(&x).unwrap();
    for (name, value) in before {
        assert_eq!(
            max_diff(&vs.variables()[&name], &value),
            0.0,
            "{name} moved"
        );
    }
    assert!(
        max_diff(&out.mu, &enc.forward_t(&x, true).mu) < 1e-5,
        "training-mode output"
    );
}

/// JSON: `normalization` on the MLP, batch norm by default and then left out when written;
/// refused on the families without the setting, with a message that says why.
#[test]
fn normalization_in_json() {
    let cfg: EncoderConfig =
        serde_json::from_str(r#"{"type":"mlp","hidden":[3],"normalization":"weight_norm"}"#)
            .unwrap();
    assert_eq!(cfg, encoder_cfg(&[3], Normalization::WeightNorm));
    assert_eq!(cfg.normalization(), Some(Normalization::WeightNorm));
    assert_eq!(
        serde_json::to_string(&cfg).unwrap(),
        r#"{"type":"mlp","hidden":[3],"normalization":"weight_norm"}"#
    );
    let cfg: DecoderConfig =
        serde_json::from_str(r#"{"type":"mlp","hidden":[],"normalization":"none"}"#).unwrap();
    assert_eq!(cfg, decoder_cfg(&[], Normalization::None));
    let explicit: DecoderConfig =
        serde_json::from_str(r#"{"type":"mlp","hidden":[2],"normalization":"batch_norm"}"#)
            .unwrap();
    assert_eq!(explicit, DecoderConfig::mlp(vec![2]));
    assert_eq!(
        serde_json::to_string(&explicit).unwrap(),
        r#"{"type":"mlp","hidden":[2]}"#
    );
    assert_eq!(EncoderConfig::Resnet.normalization(), None);

    let enc_err = |json: &str| {
        serde_json::from_str::<EncoderConfig>(json)
            .unwrap_err()
            .to_string()
    };
    let dec_err = |json: &str| {
        serde_json::from_str::<DecoderConfig>(json)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        enc_err(r#"{"type":"resnet","normalization":"weight_norm"}"#),
        "`normalization` applies to the MLP encoder only (`\"type\": \"mlp\"`): the resnet \
         encoder keeps its batch norm (ORIGINAL §3.1.1); remove the key"
    );
    assert!(enc_err(r#"{"type":"gated_conv","normalization":"none"}"#)
        .contains("the gated_conv encoder has no normalization"));
    assert!(dec_err(r#"{"type":"resnet","normalization":"batch_norm"}"#)
        .contains("the resnet decoder keeps its batch norm"));
    assert!(
        enc_err(r#"{"type":"mlp","hidden":[3],"normalization":"layer_norm"}"#)
            .contains("unknown variant `layer_norm`")
    );
}
