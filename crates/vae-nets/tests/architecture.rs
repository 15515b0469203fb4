//! Architecture checks: output shapes, parameter counts against the original's layer lists,
//! parameter names and initialisation (ORIGINAL §2.2, §3, §10 item 7).

mod common;

use common::*;
use tch::{nn, Device, Kind, Tensor};
use vae_nets::{
    BatchNormSettings, MlpDecoder, MlpEncoder, ResNetDecoder, ResNetEncoder,
    DEFAULT_LOG_SIGMA_OFFSET,
};

fn images(batch: i64) -> Tensor {
    Tensor::rand([batch, 1, 28, 28], (Kind::Float, Device::Cpu)).round()
}

/// Shapes of `mu`, `log_sigma`, `h` and the logits for `batch` images.
fn check_shapes(fam: &Family, latent: i64, batch: i64, train: bool) {
    let vs = nn::VarStore::new(Device::Cpu);
    let (enc, dec) = build(&vs, fam, latent);
    let _guard = tch::no_grad_guard();
    let out = enc.forward_t(&images(batch), train);
    let ctx = format!("{} D={latent} B={batch} train={train}", fam.name);
    assert_eq!(out.mu.size(), [batch, latent], "{ctx}: mu");
    assert_eq!(out.log_sigma.size(), [batch, latent], "{ctx}: log_sigma");
    assert_eq!(out.h.size(), [batch, enc.hidden_size()], "{ctx}: h");
    assert_eq!(enc.latent_size(), latent, "{ctx}");
    let logits = dec.forward_t(&out.mu, train);
    assert_eq!(logits.size(), [batch, 1, 28, 28], "{ctx}: logits");
    for (what, t) in [
        ("mu", &out.mu),
        ("log_sigma", &out.log_sigma),
        ("logits", &logits),
    ] {
        let finite = t.isfinite().all().int64_value(&[]) == 1;
        assert!(finite, "{ctx}: {what} has non-finite values");
    }
}

#[test]
fn shapes_for_every_family_batch_sizes_and_latent_sizes() {
    tch::manual_seed(0);
    for fam in families() {
        for latent in [32, 64] {
            check_shapes(&fam, latent, 1, false);
            check_shapes(&fam, latent, 200, false);
        }
        check_shapes(&fam, 64, 200, true);
        // Without BN, training mode at batch size 1 is well defined too.
        if !fam.has_bn {
            check_shapes(&fam, 64, 1, true);
        }
    }
}

#[test]
fn hidden_sizes() {
    let expected = [("resnet", 450), ("gated_conv", 256), ("mlp", 200)];
    for (fam, (name, h)) in families().iter().zip(expected) {
        assert_eq!(fam.name, name);
        let vs = nn::VarStore::new(Device::Cpu);
        let (enc, _) = build(&vs, fam, 8);
        assert_eq!(enc.hidden_size(), h, "{name}");
    }
}

/// The spec's own totals for the default configuration (ORIGINAL §3.1.1, §3.2.1, §3.3).
#[test]
fn spec_layer_lists_reproduce_the_spec_totals() {
    let total = |l: Vec<LayerParams>| spec_numels(&l).iter().sum::<i64>();
    assert_eq!(total(spec_resnet_encoder(64)), 1_877_574);
    assert_eq!(total(spec_resnet_decoder(64)), 644_801);
}

/// Parameter tensors (their element counts, as a multiset) and the total match the layer lists of
/// ORIGINAL §3, for every family at two latent sizes.
#[test]
fn parameter_counts_match_the_original() {
    let mlp_widths: [&[i64]; 3] = [&[1000, 1000, 1000], &[300, 200], &[]];
    for latent in [32, 64] {
        let mut cases: Vec<(
            String,
            vae_nets::EncoderConfig,
            vae_nets::DecoderConfig,
            _,
            _,
        )> = vec![
            (
                "resnet".into(),
                vae_nets::EncoderConfig::Resnet,
                vae_nets::DecoderConfig::Resnet,
                spec_resnet_encoder(latent),
                spec_resnet_decoder(latent),
            ),
            (
                "gated_conv".into(),
                vae_nets::EncoderConfig::GatedConv,
                vae_nets::DecoderConfig::GatedConv,
                spec_gated_encoder(latent),
                spec_gated_decoder(latent),
            ),
        ];
        for w in mlp_widths {
            cases.push((
                format!("mlp{w:?}"),
                vae_nets::EncoderConfig::mlp(w.to_vec()),
                vae_nets::DecoderConfig::mlp(w.to_vec()),
                spec_mlp_encoder(w, latent),
                spec_mlp_decoder(w, latent),
            ));
        }
        for (name, enc, dec, spec_enc, spec_dec) in cases {
            let fam = Family {
                name: "case",
                enc,
                dec,
                has_bn: true,
            };
            let vs = nn::VarStore::new(Device::Cpu);
            let _nets = build(&vs, &fam, latent);
            for (part, spec) in [("enc.", spec_enc), ("dec.", spec_dec)] {
                let got = store_numels(&vs, part);
                let want = spec_numels(&spec);
                assert_eq!(
                    got.iter().sum::<i64>(),
                    want.iter().sum::<i64>(),
                    "{name} D={latent} {part} total"
                );
                assert_eq!(got, want, "{name} D={latent} {part} tensors");
            }
        }
    }
}

/// Every parameter has its own readable name: no `__N` suffix from tch's renaming, one segment
/// per sub-module, PyTorch layouts.
#[test]
fn parameter_names() {
    let vs = nn::VarStore::new(Device::Cpu);
    let bn = BatchNormSettings::default();
    ResNetEncoder::new(&(vs.root() / "enc"), 64, DEFAULT_LOG_SIGMA_OFFSET, bn).unwrap();
    ResNetDecoder::new(&(vs.root() / "dec"), 64, bn).unwrap();
    let vars = vs.variables();
    assert!(vars.keys().all(|k| !k.contains("__")), "{:?}", vars.keys());
    let shape = |name: &str| {
        vars.get(name)
            .unwrap_or_else(|| panic!("no parameter {name}"))
            .size()
    };
    assert_eq!(shape("enc.block1.bn1.weight"), [1]);
    assert_eq!(shape("enc.block1.conv1.weight"), [64, 1, 3, 3]);
    assert_eq!(shape("enc.block3.conv1.weight"), [64, 64, 3, 3]);
    assert_eq!(shape("enc.block6.bn2.running_var"), [64]);
    assert_eq!(shape("enc.bn_final.bias"), [64]);
    assert_eq!(shape("enc.fc_hidden.weight"), [450, 3136]);
    assert_eq!(shape("enc.bn_hidden.weight"), [450]);
    assert_eq!(shape("enc.fc_out.weight"), [128, 450]);
    assert_eq!(shape("enc.bn_out.running_mean"), [128]);
    assert_eq!(shape("dec.proj.weight"), [64, 64, 7, 7]);
    assert_eq!(shape("dec.block3.convt2.weight"), [64, 64, 3, 3]);
    assert_eq!(shape("dec.block4.conv2.weight"), [64, 64, 3, 3]);
    assert_eq!(shape("dec.logits.weight"), [1, 64, 1, 1]);
    assert_eq!(shape("dec.logits.bias"), [1]);
    assert!(!vars.contains_key("dec.block3.conv2.weight"));
    assert!(!vars.contains_key("enc.fc_hidden.bias"));

    let vs = nn::VarStore::new(Device::Cpu);
    MlpEncoder::new(&(vs.root() / "enc"), &[10, 20], 4, -3.0, bn).unwrap();
    MlpDecoder::new(&(vs.root() / "dec"), &[20], 4, bn).unwrap();
    let vars = vs.variables();
    let mut names: Vec<_> = vars.keys().cloned().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "dec.hidden1.bn.bias",
            "dec.hidden1.bn.running_mean",
            "dec.hidden1.bn.running_var",
            "dec.hidden1.bn.weight",
            "dec.hidden1.dense.weight",
            "dec.logits.weight",
            "enc.hidden1.bn.bias",
            "enc.hidden1.bn.running_mean",
            "enc.hidden1.bn.running_var",
            "enc.hidden1.bn.weight",
            "enc.hidden1.dense.weight",
            "enc.hidden2.bn.bias",
            "enc.hidden2.bn.running_mean",
            "enc.hidden2.bn.running_var",
            "enc.hidden2.bn.weight",
            "enc.hidden2.dense.weight",
            "enc.out.bn.bias",
            "enc.out.bn.running_mean",
            "enc.out.bn.running_var",
            "enc.out.bn.weight",
            "enc.out.dense.weight",
        ]
    );
    assert_eq!(vars["enc.hidden1.dense.weight"].size(), [10, 1568]);
    assert_eq!(vars["enc.hidden2.dense.weight"].size(), [20, 794]);
    assert_eq!(vars["enc.out.dense.weight"].size(), [8, 804]);
    assert_eq!(vars["dec.hidden1.dense.weight"].size(), [20, 8]);
    assert_eq!(vars["dec.logits.weight"].size(), [784, 24]);
}

/// Building the same network twice under one path is an error, not a silent `weight__N`.
#[test]
fn same_path_twice_is_refused() {
    let vs = nn::VarStore::new(Device::Cpu);
    let p = vs.root() / "enc";
    ResNetEncoder::new(&p, 8, -3.0, BatchNormSettings::default()).unwrap();
    let err = ResNetEncoder::new(&p, 8, -3.0, BatchNormSettings::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "parameter `enc.block1.bn1.weight` already exists in the variable store: build each network under its own path segment"
    );
}

/// The log-std offset is added to the log-std half only, never to the mean (ORIGINAL §3.1).
#[test]
fn offset_applies_to_log_sigma_only() {
    let x = images(5);
    let build_with = |offset: f64| {
        let vs = nn::VarStore::new(Device::Cpu);
        let enc = vae_nets::build_encoder(
            &vs.root(),
            &vae_nets::EncoderConfig::GatedConv,
            6,
            offset,
            BatchNormSettings::default(),
        )
        .unwrap();
        (vs, enc)
    };
    let (vs_a, enc_a) = build_with(0.0);
    let (mut vs_b, enc_b) = build_with(-3.0);
    // Same weights in both (the RNG is shared with tests running in parallel).
    vs_b.copy(&vs_a).unwrap();
    let a = enc_a.forward_t(&x, false);
    let b = enc_b.forward_t(&x, false);
    assert!(a.mu.equal(&b.mu));
    assert!(a.h.equal(&b.h));
    let shift = (&b.log_sigma - &a.log_sigma + 3.0)
        .abs()
        .max()
        .double_value(&[]);
    assert!(shift < 1e-6, "{shift}");
}
