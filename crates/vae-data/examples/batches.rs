//! Loads MNIST from the cache, prints the splits, and draws one training batch.
//!
//! `cargo run -p vae-data --example batches` (after `cargo xtask bootstrap`).

use vae_data::{BatchConfig, Batches, Dataset, DatasetKind, SplitConfig};

fn main() -> Result<(), vae_data::Error> {
    let ds = Dataset::load_default(DatasetKind::Mnist, SplitConfig::default())?;
    for (name, split) in [
        ("train", &ds.train),
        ("validation", &ds.validation),
        ("test", &ds.test),
    ] {
        println!(
            "{name:<10} {:>6} images, mean grey {:.4}",
            split.len(),
            split.mean_grey()
        );
    }
    let batches = Batches::new(&ds.train, BatchConfig::train(200), 0, tch::Device::Cpu)?;
    let batch = batches.epoch(0).next().expect("one batch");
    println!(
        "{} batches per epoch; first batch {:?}, mean of its binary pixels {:.4}",
        batches.num_batches(),
        batch.images.size(),
        batch.images.mean(tch::Kind::Float).double_value(&[])
    );
    Ok(())
}
