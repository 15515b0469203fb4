//! Informative timing: one training-mode forward and backward pass of encoder and decoder, per
//! family, at batch 200 and latent size 64 (the original's training setting).
//!
//! `cargo run -p vae-nets --example bench [-- ITERATIONS]` (default 3, after one warm-up).

use std::time::Instant;

use tch::{nn, Device, Kind, Tensor};
use vae_nets::{
    build_decoder, build_encoder, BatchNormSettings, DecoderConfig, EncoderConfig,
    DEFAULT_LOG_SIGMA_OFFSET,
};

fn main() -> Result<(), vae_nets::Error> {
    let iterations: u32 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let device = Device::cuda_if_available();
    let (batch, latent) = (200, 64);
    let bn = BatchNormSettings::default();
    println!(
        "device {device:?}, {} torch threads, batch {batch}, D = {latent}, {iterations} iterations",
        tch::get_num_threads()
    );
    let families = [
        ("resnet", EncoderConfig::Resnet, DecoderConfig::Resnet),
        (
            "gated_conv",
            EncoderConfig::GatedConv,
            DecoderConfig::GatedConv,
        ),
        (
            "mlp [1000; 3]",
            EncoderConfig::mlp(vec![1000; 3]),
            DecoderConfig::mlp(vec![1000; 3]),
        ),
    ];
    for (name, enc_cfg, dec_cfg) in families {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(device);
        let enc = build_encoder(
            &(vs.root() / "enc"),
            &enc_cfg,
            latent,
            DEFAULT_LOG_SIGMA_OFFSET,
            bn,
        )?;
        let dec = build_decoder(&(vs.root() / "dec"), &dec_cfg, latent, bn)?;
        let x = Tensor::rand([batch, 1, 28, 28], (Kind::Float, device)).round();
        let step = || {
            let out = enc.forward_t(&x, true);
            let z = &out.mu + out.log_sigma.exp() * out.mu.randn_like();
            let logits = dec.forward_t(&z, true);
            let loss = (logits.softplus() - &x * &logits).sum(Kind::Float) / batch as f64;
            loss.backward();
            if device.is_cuda() {
                tch::Cuda::synchronize(0);
            }
        };
        step();
        let t = Instant::now();
        for _ in 0..iterations {
            step();
        }
        let per = t.elapsed().as_secs_f64() / f64::from(iterations);
        println!("{name:>14}: {:8.1} ms per forward+backward", per * 1e3);
    }
    Ok(())
}
