//! Prints each family's parameter count and output shapes at the default latent size.
//!
//! `cargo run -p vae-nets --example shapes`

use tch::{nn, Device, Kind, Tensor};
use vae_nets::{
    build_decoder, build_encoder, BatchNormSettings, DecoderConfig, EncoderConfig,
    DEFAULT_LOG_SIGMA_OFFSET,
};

fn count(vs: &nn::VarStore, prefix: &str) -> i64 {
    vs.variables()
        .iter()
        .filter(|(n, t)| n.starts_with(prefix) && t.requires_grad())
        .map(|(_, t)| t.numel() as i64)
        .sum()
}

fn main() -> Result<(), vae_nets::Error> {
    let latent = 64;
    let batch = 4;
    let bn = BatchNormSettings::default();
    let families = [
        (
            "resnet (IAF_*)",
            EncoderConfig::Resnet,
            DecoderConfig::Resnet,
        ),
        (
            "gated_conv (SNF_*)",
            EncoderConfig::GatedConv,
            DecoderConfig::GatedConv,
        ),
        (
            "mlp [1000, 1000, 1000] (NONCONV_*)",
            EncoderConfig::mlp(vec![1000; 3]),
            DecoderConfig::mlp(vec![1000; 3]),
        ),
    ];
    println!("latent D = {latent}, batch B = {batch}, input x: [{batch}, 1, 28, 28]");
    for (name, enc_cfg, dec_cfg) in families {
        let vs = nn::VarStore::new(Device::Cpu);
        let enc = build_encoder(
            &(vs.root() / "enc"),
            &enc_cfg,
            latent,
            DEFAULT_LOG_SIGMA_OFFSET,
            bn,
        )?;
        let dec = build_decoder(&(vs.root() / "dec"), &dec_cfg, latent, bn)?;
        let x = Tensor::rand([batch, 1, 28, 28], (Kind::Float, Device::Cpu)).round();
        let (out, logits) = tch::no_grad(|| {
            let out = enc.forward_t(&x, false);
            let logits = dec.forward_t(&out.mu, false);
            (out, logits)
        });
        println!("\n{name}");
        println!("  encoder parameters: {:>10}", count(&vs, "enc."));
        println!("  decoder parameters: {:>10}", count(&vs, "dec."));
        println!(
            "  mu {:?}  log_sigma {:?}  h {:?}  logits {:?}",
            out.mu.size(),
            out.log_sigma.size(),
            out.h.size(),
            logits.size()
        );
    }
    Ok(())
}
