//! `vae eval`: log-likelihood estimates of a trained run by IS, AIS or BDMC (vae-eval), with a
//! progress bar, a JSON summary and a per-example CSV.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use tch::Tensor;
use vae_data::{default_data_dir, Dataset, Split, SplitConfig};
use vae_eval::{AisConfig, AisStart, HmcConfig, IsConfig, IsPasses, StepSizeAdaptation};
use vae_model::{evaluation_split, Checkpoint, VaeLatentModel};

use crate::args::{AdaptationArg, EvalArgs, EvalMethod, EvalStart, IsPassesArg};
use crate::config::RunConfig;
use crate::run_dir::{write_atomic, write_json, RunDir};
use crate::train_cmd::{device, set_threads};

fn images(split: &Split, n: usize, device: tch::Device) -> Tensor {
    let x: Vec<f32> = split.pixels[..n * vae_data::IMAGE_PIXELS]
        .iter()
        .map(|&p| p as f32 / 255.0)
        .collect();
    Tensor::from_slice(&x)
        .view([n as i64, 1, 28, 28])
        .to_device(device)
}

/// `vae eval`: the checkpoint's model alone (no trainer, no optimizer) on the split's images.
pub fn run(args: EvalArgs) -> Result<()> {
    let run = RunDir {
        root: args.run.clone(),
    };
    let cfg = RunConfig::load(&run.config(), &[])
        .with_context(|| format!("--run {}: reading the run's config", run.root.display()))?;
    let device = device(&args.device)?;
    set_threads(args.threads)?;
    let ck = run.checkpoint(&args.checkpoint);
    if !ck.exists() {
        bail!(
            "--checkpoint {}: {} does not exist (expected best or last)",
            args.checkpoint,
            ck.display()
        );
    }
    let ck = Checkpoint::read(&ck)?;
    if ck.config().model != cfg.model {
        bail!(
            "checkpoint {}: it was written for another architecture (model config {}), the \
             run's config.json has {}",
            ck.path().display(),
            serde_json::to_string(&ck.config().model).unwrap_or_default(),
            serde_json::to_string(&cfg.model).unwrap_or_default()
        );
    }
    let vae = ck.load_vae(device)?;
    let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
    let data = Dataset::load(
        cfg.data.dataset,
        &data_dir,
        SplitConfig {
            validation: cfg.data.validation,
        },
    )
    .with_context(|| format!("loading {} from {}", cfg.data.dataset, data_dir.display()))?;
    let split = evaluation_split(&data, &cfg.experiment(), args.split);
    drop(data);
    let n = args.n.unwrap_or(split.len()).min(split.len());
    if n == 0 {
        bail!("the {:?} split is empty: nothing to evaluate", args.split);
    }
    let model = VaeLatentModel::new(&vae, device);
    let bar = ProgressBar::new(1);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {percent}%  {elapsed_precise} elapsed, ETA {eta_precise}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let mut progress = |done: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let method = format!("{:?}", args.method).to_lowercase();
    let split_name = format!("{:?}", args.split).to_lowercase();
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| run.root.join(format!("eval-{method}-{split_name}.json")));
    // Make the output folder before the (long) estimation, so that a bad --out fails first.
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("--out {}: creating {}", out.display(), parent.display()))?;
    }
    bar.set_message(format!("{method} on {n} images"));
    let start = Instant::now();
    let mut plot = None;
    let (summary, rows): (serde_json::Value, Vec<String>) = match args.method {
        EvalMethod::Is => {
            let config = IsConfig {
                num_samples: args.k,
                // None: the model's activation estimate sizes the calls (vae-model's cost).
                max_rows: args.max_rows,
                seed: args.seed,
                passes: match args.passes {
                    IsPassesArg::Batched => IsPasses::Batched,
                    IsPassesArg::OneSample => IsPasses::OneSamplePerPass,
                },
            };
            let r = vae_eval::importance_sampling(
                &model,
                &images(&split, n, device),
                &config,
                &mut progress,
            )?;
            let rows: Vec<String> = (0..r.num_examples)
                .map(|i| {
                    format!(
                        "{i},{},{},{},{}",
                        r.log_px[i],
                        opt(r.log_px_stderr[i]),
                        r.elbo[i],
                        r.ess[i]
                    )
                })
                .collect();
            let s = serde_json::json!({
                "estimate_nll": r.nll, "stderr": r.nll_stderr, "mc_stderr": r.nll_mc_stderr,
                "neg_elbo": r.neg_elbo, "neg_elbo_stderr": r.neg_elbo_stderr,
                "iwae_curve": r.iwae, "settings": r.config,
            });
            let title = format!("IWAE bound: {} {split_name}, {n} images", cfg.name);
            plot = Some(crate::iwae_plot::iwae_curve_png(&title, &r.iwae));
            (
                s,
                std::iter::once("index,log_px,log_px_stderr,elbo,ess".to_string())
                    .chain(rows)
                    .collect(),
            )
        }
        EvalMethod::Ais | EvalMethod::Bdmc => {
            let config = AisConfig {
                num_chains: args.chains,
                anneal_steps: args.steps,
                start: match args.start {
                    EvalStart::Prior => AisStart::Prior,
                    EvalStart::Base => AisStart::EncoderBase,
                    EvalStart::Posterior => AisStart::FlowPosterior,
                },
                hmc: HmcConfig {
                    leapfrog_steps: args.leapfrog,
                    step_size: args.step_size,
                    adaptation: match args.adaptation {
                        AdaptationArg::Global => StepSizeAdaptation::Global,
                        AdaptationArg::PerExample => StepSizeAdaptation::PerExample,
                        AdaptationArg::PerChain => StepSizeAdaptation::PerChain,
                        AdaptationArg::Fixed => StepSizeAdaptation::Fixed,
                    },
                    target_acceptance: args.target_acceptance,
                    momentum_refresh: args.momentum_refresh,
                    ..Default::default()
                },
                max_rows: args.max_rows.unwrap_or(AisConfig::default().max_rows),
                seed: args.seed,
                ..Default::default()
            };
            if args.method == EvalMethod::Ais {
                let r = vae_eval::ais(&model, &images(&split, n, device), &config, &mut progress)?;
                let rows: Vec<String> = (0..r.num_examples)
                    .map(|i| {
                        format!(
                            "{i},{},{},{},{}",
                            r.log_px[i],
                            opt(r.log_px_stderr[i]),
                            r.log_px_mean_log_weight[i],
                            r.ess[i]
                        )
                    })
                    .collect();
                let s = serde_json::json!({
                    "estimate_nll": r.nll, "stderr": r.nll_stderr, "mc_stderr": r.nll_mc_stderr,
                    "nll_mean_log_weight": r.nll_mean_log_weight, "trace": r.trace, "settings": r.config,
                });
                (
                    s,
                    std::iter::once("index,log_px,log_px_stderr,mean_log_weight,ess".to_string())
                        .chain(rows)
                        .collect(),
                )
            } else {
                // BDMC needs data whose latent is known: simulate it from the model.
                let (x, z) = vae_eval::simulate(&model, n, args.seed)?;
                let r = vae_eval::bdmc(&model, &x, &z, &config, &mut progress)?;
                let rows: Vec<String> = (0..r.gap_per_example.len())
                    .map(|i| {
                        format!(
                            "{i},{},{},{}",
                            r.forward.log_px[i], r.reverse.log_px[i], r.gap_per_example[i]
                        )
                    })
                    .collect();
                let s = serde_json::json!({
                    "lower_bound_log_px": r.lower, "upper_bound_log_px": r.upper,
                    "gap": r.gap, "gap_stderr": r.gap_stderr, "settings": r.forward.config,
                    "data": "simulated from the model",
                });
                (
                    s,
                    std::iter::once("index,forward_log_px,reverse_log_px,gap".to_string())
                        .chain(rows)
                        .collect(),
                )
            }
        }
    };
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    let mut summary = summary;
    summary["method"] = method.clone().into();
    summary["split"] = split_name.into();
    summary["images"] = n.into();
    summary["checkpoint"] = args.checkpoint.clone().into();
    summary["wall_seconds"] = seconds.into();
    summary["ms_per_image"] = (seconds * 1e3 / n as f64).into();
    write_json(&out, &summary)?;
    let csv = out.with_extension("csv");
    write_atomic(&csv, (rows.join("\n") + "\n").as_bytes())?;
    let png = out.with_extension("png");
    if let Some(bytes) = &plot {
        write_atomic(&png, bytes)?;
    }
    match args.method {
        EvalMethod::Bdmc => println!(
            "bdmc on {n} simulated images: log p(x) in [{:.3}, {:.3}], gap {:.3} nats ({seconds:.1} s)",
            summary["lower_bound_log_px"].as_f64().unwrap_or(f64::NAN),
            summary["upper_bound_log_px"].as_f64().unwrap_or(f64::NAN),
            summary["gap"].as_f64().unwrap_or(f64::NAN),
        ),
        _ => println!(
            "{method} NLL on {n} {} images: {:.3} +- {:.3} nats ({seconds:.1} s, {:.1} ms per image)",
            summary["split"].as_str().unwrap_or(""),
            summary["estimate_nll"].as_f64().unwrap_or(f64::NAN),
            summary["stderr"].as_f64().unwrap_or(f64::NAN),
            seconds * 1e3 / n as f64,
        ),
    }
    match plot {
        Some(_) => println!(
            "wrote {}, {} and {}",
            out.display(),
            csv.display(),
            png.display()
        ),
        None => println!("wrote {} and {}", out.display(), csv.display()),
    }
    Ok(())
}

fn opt(v: Option<f64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}
