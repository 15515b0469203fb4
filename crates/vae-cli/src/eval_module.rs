//! `vae eval --model FILE.pt --data FILE`: the estimators on a TorchScript module that flowvae did
//! not train (vae-eval's `TorchScriptModel`), on the user's examples (vae-data's `array_file`),
//! with the same summary and CSV as a run's evaluation.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use tch::{Device, Kind, Tensor};
use vae_data::array_file::read_examples;
use vae_eval::torchscript::TorchScriptModel;

use crate::args::{BinarizeArg, EvalArgs, EvalMethod, EvalStart};
use crate::eval_cmd::{evaluate, Target};

/// Loads the data and the module, checks that the module has what the method needs, and
/// evaluates.
pub fn run(args: &EvalArgs, model_path: &Path, device: Device) -> Result<()> {
    let data_path = args
        .data
        .as_ref()
        .context("--model needs --data FILE: the examples to evaluate")?;
    let mut examples = read_examples(data_path)?;
    if let Some(n) = args.n {
        examples = examples.truncated(n);
    }
    let binarization = match args.binarize {
        BinarizeArg::Fixed => {
            examples
                .binarize_fixed(args.binarize_seed)
                .map_err(anyhow::Error::msg)?;
            format!("fixed, seed {}", args.binarize_seed)
        }
        BinarizeArg::None => "none".to_string(),
    };
    let shape: Vec<i64> = examples.shape.iter().map(|&d| d as i64).collect();
    let x = Tensor::from_slice(&examples.values)
        .reshape(&shape)
        .to_kind(Kind::Float)
        .to_device(device);
    let n = examples.len();
    let probe = x.narrow(0, 0, n.min(2) as i64);
    let model = TorchScriptModel::load(model_path, device, args.latent_dim, &probe)?;
    match args.method {
        EvalMethod::Is if !model.has_propose() => bail!(
            "{}: importance sampling needs the module's proposal, `propose(x, k: int) -> (z [k, \
             N, latent_dim], log q [k, N])`, which it lacks; export one, or use --method ais \
             (from the prior)",
            model_path.display()
        ),
        EvalMethod::Bdmc if !model.has_sample_data() => bail!(
            "{}: BDMC simulates its data from the model and needs `sample_data(z) -> x [N, ...]`, \
             which the module lacks",
            model_path.display()
        ),
        EvalMethod::Ais | EvalMethod::Bdmc if args.start.is_some_and(|s| s != EvalStart::Prior) => {
            bail!(
                "--start {}: a TorchScript module has no Gaussian base or flow to start from; \
                 use --start prior",
                format!("{:?}", args.start.unwrap_or(EvalStart::Prior)).to_lowercase()
            )
        }
        _ => {}
    }
    let method = format!("{:?}", args.method).to_lowercase();
    let stem = model_path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("model")
        .to_string();
    let folder: PathBuf = model_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let target = Target {
        x,
        name: stem.clone(),
        split: format!("{} (binarization: {binarization})", examples.source),
        checkpoint: model_path.display().to_string(),
        checksum: None,
        run: model_path.display().to_string(),
        default_out: Box::new(move |shard| match shard {
            Some((i, n)) => folder
                .join(format!("{stem}-shards"))
                .join(format!("eval-{method}"))
                .join(format!("shard-{i}-of-{n}.json")),
            None => folder.join(format!("{stem}.eval-{method}.json")),
        }),
    };
    evaluate(args, &model, &target, &|| model.take_failure())
}
