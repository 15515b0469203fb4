//! Loads a trained flow-VAE from a checkpoint and estimates its test NLL by importance sampling
//! (k = 1000), with no trainer, optimizer or training loop:
//! `cargo run --release -p vae-model --example evaluate_checkpoint -- RUN/checkpoints/best.safetensors [IMAGES]`

use tch::{Device, Kind, Tensor};
use vae_data::{Dataset, SplitConfig, SplitKind};
use vae_eval::{importance_sampling, IsConfig};
use vae_model::{evaluation_split, Checkpoint, VaeLatentModel};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: evaluate_checkpoint CHECKPOINT [IMAGES]")?;
    let images: usize = args.next().map_or(Ok(500), |n| n.parse())?;
    let ck = Checkpoint::read(path.as_ref())?;
    let vae = ck.load_vae(Device::Cpu)?;
    let cfg = ck.config();
    let data = Dataset::load_default(
        cfg.data.dataset,
        SplitConfig {
            validation: cfg.data.validation,
        },
    )?;
    let test = evaluation_split(&data, cfg, SplitKind::Test);
    let n = images.min(test.len());
    let x = Tensor::from_slice(&test.pixels[..n * 784])
        .to_kind(Kind::Float)
        .view([n as i64, 1, 28, 28])
        / 255.0;
    let model = VaeLatentModel::new(&vae, Device::Cpu);
    let r = importance_sampling(&model, &x, &IsConfig::default(), &mut |_, _| {})?;
    let se = r.nll_stderr.unwrap_or(f64::NAN);
    println!(
        "IS NLL on {n} test images (k = 1000): {:.2} ± {se:.2} nats",
        r.nll
    );
    Ok(())
}
