//! Loads a trained flow-VAE from a checkpoint and estimates its test NLL by importance sampling
//! (k = 1000), with no trainer, optimizer or training loop:
//! `cargo run --release -p vae-model --example evaluate_checkpoint -- RUN/checkpoints/best.safetensors [N]`

use tch::Device;
use vae_data::{Dataset, SplitKind};
use vae_eval::{importance_sampling, IsConfig};
use vae_model::{evaluation_split, Checkpoint, VaeLatentModel};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .ok_or("usage: evaluate_checkpoint CHECKPOINT [N]")?;
    let images: usize = args.get(2).map_or(Ok(500), |n| n.parse())?;
    let ck = Checkpoint::read(path.as_ref())?;
    let vae = ck.load_vae(Device::Cpu)?;
    let cfg = ck.config();
    let data = Dataset::load_default(cfg.data.dataset, cfg.data.splits())?;
    let test = evaluation_split(&data, cfg, SplitKind::Test);
    let x = test.to_tensor(images, Device::Cpu);
    let model = VaeLatentModel::new(&vae, Device::Cpu);
    let r = importance_sampling(&model, &x, &IsConfig::default(), &mut |_, _| {})?;
    let (n, se) = (r.num_examples, r.nll_stderr.unwrap_or(f64::NAN));
    println!(
        "IS NLL (k = 1000), {n} test images: {:.2} ± {se:.2} nats",
        r.nll
    );
    Ok(())
}
