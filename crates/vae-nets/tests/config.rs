//! Configuration: serde forms, defaults, and one message per invalid field (no panics).

use tch::{nn, Device, Kind, Tensor};
use vae_nets::{
    build_decoder, build_encoder, BatchNormSettings, DecoderConfig, EncoderConfig,
    GatedConvDecoder, GatedConvEncoder, MlpDecoder, MlpEncoder, ResNetDecoder, ResNetEncoder,
};

const BN: BatchNormSettings = BatchNormSettings {
    momentum: 0.001,
    eps: 1e-3,
};

/// The message of building an encoder with these settings (which must fail).
fn enc_err(cfg: &EncoderConfig, latent: i64, offset: f64, bn: BatchNormSettings) -> String {
    let vs = nn::VarStore::new(Device::Cpu);
    build_encoder(&vs.root(), cfg, latent, offset, bn)
        .expect_err("expected an error")
        .to_string()
}

/// The message of building a decoder with these settings (which must fail).
fn dec_err(cfg: &DecoderConfig, latent: i64, bn: BatchNormSettings) -> String {
    let vs = nn::VarStore::new(Device::Cpu);
    build_decoder(&vs.root(), cfg, latent, bn)
        .expect_err("expected an error")
        .to_string()
}

#[test]
fn latent_size_must_be_positive() {
    let msg = "invalid network setting `latent` = 0: expected an integer >= 1";
    let mlp_enc = EncoderConfig::mlp(vec![5]);
    let mlp_dec = DecoderConfig::mlp(vec![5]);
    for cfg in [EncoderConfig::Resnet, EncoderConfig::GatedConv, mlp_enc] {
        assert_eq!(enc_err(&cfg, 0, -3.0, BN), msg, "{cfg:?}");
    }
    for cfg in [DecoderConfig::Resnet, DecoderConfig::GatedConv, mlp_dec] {
        assert_eq!(dec_err(&cfg, 0, BN), msg, "{cfg:?}");
    }
    assert_eq!(
        enc_err(&EncoderConfig::Resnet, -4, -3.0, BN),
        "invalid network setting `latent` = -4: expected an integer >= 1"
    );
    // The concrete constructors check too.
    let vs = nn::VarStore::new(Device::Cpu);
    let p = vs.root();
    assert_eq!(
        ResNetEncoder::new(&p, 0, -3.0, BN).unwrap_err().to_string(),
        msg
    );
    assert_eq!(ResNetDecoder::new(&p, 0, BN).unwrap_err().to_string(), msg);
    assert_eq!(
        GatedConvEncoder::new(&p, 0, -3.0).unwrap_err().to_string(),
        msg
    );
    assert_eq!(GatedConvDecoder::new(&p, 0).unwrap_err().to_string(), msg);
    assert_eq!(
        MlpEncoder::new(&p, &[3], 0, -3.0, BN)
            .unwrap_err()
            .to_string(),
        msg
    );
    assert_eq!(
        MlpDecoder::new(&p, &[3], 0, BN).unwrap_err().to_string(),
        msg
    );
    // Nothing was created by the failed constructors.
    assert!(vs.variables().is_empty());
}

#[test]
fn hidden_widths_must_be_positive() {
    let enc = EncoderConfig::mlp(vec![100, 0, 50]);
    assert_eq!(
        enc_err(&enc, 8, -3.0, BN),
        "invalid network setting `hidden[1]` = 0: expected a layer width of at least 1"
    );
    assert_eq!(
        enc.validate().unwrap_err().to_string(),
        "invalid network setting `hidden[1]` = 0: expected a layer width of at least 1"
    );
    let dec = DecoderConfig::mlp(vec![-7]);
    assert_eq!(
        dec_err(&dec, 8, BN),
        "invalid network setting `hidden[0]` = -7: expected a layer width of at least 1"
    );
    let vs = nn::VarStore::new(Device::Cpu);
    assert_eq!(
        MlpDecoder::new(&vs.root(), &[4, 0], 8, BN)
            .unwrap_err()
            .to_string(),
        "invalid network setting `hidden[1]` = 0: expected a layer width of at least 1"
    );
}

#[test]
fn batch_norm_settings_are_checked() {
    assert_eq!(BatchNormSettings::default(), BN);
    BN.validate().unwrap();
    BatchNormSettings {
        momentum: 1.0,
        eps: 1e-5,
    }
    .validate()
    .unwrap();
    let momentum_msg = |v: &str| {
        format!("invalid network setting `batch_norm.momentum` = {v}: expected a number in (0, 1] (TF decay 0.999 is momentum 0.001)")
    };
    let eps_msg = |v: &str| {
        format!("invalid network setting `batch_norm.eps` = {v}: expected a finite number > 0 (the original uses 1e-3)")
    };
    let cases = [
        (
            BatchNormSettings {
                momentum: 0.0,
                ..BN
            },
            momentum_msg("0"),
        ),
        (
            BatchNormSettings {
                momentum: -0.1,
                ..BN
            },
            momentum_msg("-0.1"),
        ),
        (
            BatchNormSettings {
                momentum: 1.5,
                ..BN
            },
            momentum_msg("1.5"),
        ),
        (
            BatchNormSettings {
                momentum: f64::NAN,
                ..BN
            },
            momentum_msg("NaN"),
        ),
        (BatchNormSettings { eps: 0.0, ..BN }, eps_msg("0")),
        (BatchNormSettings { eps: -1e-3, ..BN }, eps_msg("-0.001")),
        (
            BatchNormSettings {
                eps: f64::INFINITY,
                ..BN
            },
            eps_msg("inf"),
        ),
    ];
    for (bn, msg) in cases {
        assert_eq!(bn.validate().unwrap_err().to_string(), msg);
        // Every family refuses them, with or without BN layers.
        for cfg in [EncoderConfig::Resnet, EncoderConfig::GatedConv] {
            assert_eq!(enc_err(&cfg, 8, -3.0, bn), msg);
        }
        assert_eq!(dec_err(&DecoderConfig::mlp(vec![]), 8, bn), msg);
        let vs = nn::VarStore::new(Device::Cpu);
        assert_eq!(
            ResNetDecoder::new(&vs.root(), 8, bn)
                .unwrap_err()
                .to_string(),
            msg
        );
    }
}

#[test]
fn log_sigma_offset_must_be_finite() {
    for (v, shown) in [(f64::NAN, "NaN"), (f64::NEG_INFINITY, "-inf")] {
        assert_eq!(
            enc_err(&EncoderConfig::GatedConv, 8, v, BN),
            format!("invalid network setting `log_sigma_offset` = {shown}: expected a finite number (the original uses -3.0)")
        );
    }
}

#[test]
fn serde_forms() {
    let cases = [
        (EncoderConfig::Resnet, r#"{"type":"resnet"}"#),
        (EncoderConfig::GatedConv, r#"{"type":"gated_conv"}"#),
        (
            EncoderConfig::mlp(vec![1000, 1000, 1000]),
            r#"{"type":"mlp","hidden":[1000,1000,1000]}"#,
        ),
        (EncoderConfig::mlp(vec![]), r#"{"type":"mlp","hidden":[]}"#),
    ];
    for (cfg, json) in cases {
        assert_eq!(serde_json::to_string(&cfg).unwrap(), json);
        assert_eq!(serde_json::from_str::<EncoderConfig>(json).unwrap(), cfg);
    }
    let dec: DecoderConfig = serde_json::from_str(r#"{"type":"mlp","hidden":[7]}"#).unwrap();
    assert_eq!(dec, DecoderConfig::mlp(vec![7]));
    assert_eq!(EncoderConfig::default(), EncoderConfig::Resnet);
    assert_eq!(DecoderConfig::default(), DecoderConfig::Resnet);

    let bn: BatchNormSettings = serde_json::from_str("{}").unwrap();
    assert_eq!(bn, BatchNormSettings::default());
    let bn: BatchNormSettings = serde_json::from_str(r#"{"eps":1e-5}"#).unwrap();
    assert_eq!(bn, BatchNormSettings { eps: 1e-5, ..BN });
}

#[test]
fn serde_errors() {
    let err = |json: &str| {
        serde_json::from_str::<EncoderConfig>(json)
            .unwrap_err()
            .to_string()
    };
    // `hidden` is required for the MLP: the original has no default (ORIGINAL §3.1.3, §7).
    assert!(
        err(r#"{"type":"mlp"}"#).contains("missing field `hidden`"),
        "{}",
        err(r#"{"type":"mlp"}"#)
    );
    assert!(err(r#"{"type":"mlp","hidden":[3],"width":4}"#).contains("unknown field `width`"));
    assert!(err(r#"{"type":"resnet","filters":32}"#).contains("unknown field `filters`"));
    assert!(err(r#"{"type":"gated_conv","hidden":[3]}"#).contains("unknown field `hidden`"));
    let dec_err = |json: &str| {
        serde_json::from_str::<DecoderConfig>(json)
            .unwrap_err()
            .to_string()
    };
    assert!(dec_err(r#"{"type":"resnet","latent":64}"#).contains("unknown field `latent`"));
    assert!(dec_err(r#"{"type":"mlp"}"#).contains("missing field `hidden`"));
    assert!(err(r#"{"type":"conv"}"#).contains("unknown variant `conv`"));
    assert!(err(r#"{"hidden":[3]}"#).contains("missing field `type`"));
    let bn_err = serde_json::from_str::<BatchNormSettings>(r#"{"decay":0.999}"#)
        .unwrap_err()
        .to_string();
    assert!(bn_err.contains("unknown field `decay`"), "{bn_err}");
    // Deserialising does not validate; validate() does.
    let cfg: EncoderConfig = serde_json::from_str(r#"{"type":"mlp","hidden":[0]}"#).unwrap();
    assert!(cfg.validate().is_err());
}

/// An empty `hidden` list is valid: the encoder's `h` is the flattened image itself
/// (ORIGINAL §3.1.3), and the decoder's logits are linear in `concat(z, z)`.
#[test]
fn empty_hidden_list() {
    tch::manual_seed(5);
    let vs = nn::VarStore::new(Device::Cpu);
    let enc = build_encoder(
        &(vs.root() / "enc"),
        &EncoderConfig::mlp(vec![]),
        6,
        -3.0,
        BN,
    )
    .unwrap();
    let dec = build_decoder(&(vs.root() / "dec"), &DecoderConfig::mlp(vec![]), 6, BN).unwrap();
    assert_eq!(enc.hidden_size(), 784);
    let x = Tensor::rand([3, 1, 28, 28], (Kind::Float, Device::Cpu)).round();
    let out = enc.forward_t(&x, false);
    assert!(out.h.equal(&x.view([3, 784])));
    assert_eq!(dec.forward_t(&out.mu, true).size(), [3, 1, 28, 28]);
    assert_eq!(vs.variables()["enc.out.dense.weight"].size(), [12, 1568]);
    assert_eq!(vs.variables()["dec.logits.weight"].size(), [784, 12]);
}
