//! `vae data info` and `vae data grid`.

use anyhow::{Context, Result};
use vae_data::{
    default_data_dir, image_grid, BatchConfig, Batches, Dataset, SplitConfig, SplitKind,
};

use crate::args::{DataCommand, DataGrid, DataInfo, DataSource};

pub fn run(cmd: DataCommand) -> Result<()> {
    match cmd {
        DataCommand::Info(a) => info(a),
        DataCommand::Grid(a) => grid(a),
    }
}

fn load(src: &DataSource) -> Result<Dataset> {
    let dir = src.data_dir.clone().unwrap_or_else(default_data_dir);
    Dataset::load(
        src.dataset,
        &dir,
        SplitConfig {
            validation: src.validation,
        },
    )
    .with_context(|| format!("loading {} from {}", src.dataset, dir.display()))
}

const SPLITS: [(SplitKind, &str); 3] = [
    (SplitKind::Train, "train"),
    (SplitKind::Validation, "validation"),
    (SplitKind::Test, "test"),
];

fn info(a: DataInfo) -> Result<()> {
    let ds = load(&a.source)?;
    if a.json {
        let splits: serde_json::Map<String, serde_json::Value> = SPLITS
            .iter()
            .map(|&(kind, name)| {
                let s = ds.split(kind);
                let v = serde_json::json!({
                    "count": s.len(),
                    "mean_pixel": s.mean_grey(),
                    "label_counts": s.label_counts(),
                });
                (name.to_string(), v)
            })
            .collect();
        let out = serde_json::json!({ "dataset": ds.kind.name(), "splits": splits });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("dataset {} (mean pixel = pixel / 255)", ds.kind);
    println!(
        "{:<11} {:>6} {:>10}  label counts 0..9",
        "split", "count", "mean pixel"
    );
    for (kind, name) in SPLITS {
        let s = ds.split(kind);
        let counts: Vec<String> = s.label_counts().iter().map(|c| c.to_string()).collect();
        println!(
            "{name:<11} {:>6} {:>10.5}  {}",
            s.len(),
            s.mean_grey(),
            counts.join(" ")
        );
    }
    Ok(())
}

fn grid(a: DataGrid) -> Result<()> {
    let ds = load(&a.source)?;
    let split = ds.split(a.split);
    let n = split.len().min(100);
    let first = split.slice(0..n);
    let cfg = BatchConfig {
        batch_size: n.max(1),
        shuffle: false,
        drop_last: false,
        binarization: a.binarize,
    };
    let batches = Batches::new(&first, cfg, a.seed, tch::Device::Cpu)?;
    let batch = batches.epoch(0).next().context("the split is empty")?;
    let values: Vec<f32> = Vec::<f32>::try_from(batch.images.flatten(0, -1))?;
    let images: Vec<Option<&[f32]>> = values.chunks(vae_data::IMAGE_PIXELS).map(Some).collect();
    let picture = image_grid(&images, vae_data::IMAGE_SIDE, 10, 10, 2);
    picture
        .save_png(&a.out)
        .with_context(|| format!("writing {}", a.out.display()))?;
    println!(
        "wrote {} ({n} {:?} images, {:?} binarization)",
        a.out.display(),
        a.split,
        a.binarize
    );
    Ok(())
}
