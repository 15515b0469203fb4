//! `vae eval`: log-likelihood estimates of a trained run by IS, AIS or BDMC (vae-eval), with a
//! progress bar, a JSON summary and a per-example CSV.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use tch::Tensor;
use vae_eval::{AisConfig, AisStart, HmcConfig, IsConfig, IsPasses, StepSizeAdaptation};
use vae_io::results::{
    write_csv, AisCheck, AisEstimate, AisRow, AisTrace, BdmcEstimate, BdmcRow, Estimate,
    EvalSummary, IsEstimate, IsRow, IwaePoint, Reestimate, BDMC_SIMULATED_DATA,
};
use vae_model::{evaluation_split, Checkpoint, VaeLatentModel};

use crate::args::{AdaptationArg, EvalArgs, EvalMethod, EvalStart, IsPassesArg};
use crate::config::RunConfig;
use crate::run_dir::{write_atomic, RunDir};
use crate::train_cmd::{device, load_dataset, set_threads};

/// `vae eval`: the checkpoint's model alone (no trainer, no optimizer) on the split's images.
pub fn run(args: EvalArgs) -> Result<()> {
    let run = RunDir::new(args.run.clone());
    let cfg = RunConfig::load(&run.config(), &[])
        .with_context(|| format!("--run {}: reading the run's config", run.root.display()))?;
    for (set, flag) in [
        (args.check_with_ais, "--check-with-ais"),
        (args.reestimate_flagged, "--reestimate-flagged"),
    ] {
        if set && args.method != EvalMethod::Is {
            bail!(
                "{flag} works on importance sampling's flags; it does nothing with --method {}",
                format!("{:?}", args.method).to_lowercase()
            );
        }
    }
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
    let data = load_dataset(&cfg.data, args.data_dir.clone())?;
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
        .unwrap_or_else(|| run.eval_summary(&method, &split_name));
    // Make the output folder before the (long) estimation, so that a bad --out fails first.
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("--out {}: creating {}", out.display(), parent.display()))?;
    }
    bar.set_message(format!("{method} on {n} images"));
    let start = Instant::now();
    let mut plot = None;
    let (estimate, rows): (Estimate, Rows) = match args.method {
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
                replicates: args.replicates,
            };
            let x = split.to_tensor(n, device);
            let r = vae_eval::importance_sampling(&model, &x, &config, &mut progress)?;
            // An independent lower bound per image: IS far below it missed posterior mass that
            // its weights cannot show.
            let check = if args.check_with_ais {
                bar.set_message(format!("AIS check on {n} images"));
                let ais_config = AisConfig::is_check(args.seed);
                Some(vae_eval::ais(&model, &x, &ais_config, &mut progress)?)
            } else {
                None
            };
            let mut below = vec![false; n];
            if let Some(a) = &check {
                for i in r.below_ais(a)? {
                    below[i] = true;
                }
            }
            let flags: Vec<String> = (0..n)
                .map(|i| {
                    r.flags(i)
                        .iter()
                        .map(|f| f.name())
                        .chain(below[i].then_some("ais"))
                        .collect::<Vec<_>>()
                        .join(";")
                })
                .collect();
            let flagged: Vec<usize> = (0..n).filter(|&i| !flags[i].is_empty()).collect();
            // The flagged images again, by the full AIS of the AIS flags, from the prior: the
            // estimator that needs no proposal.
            let full_config = ais_config(&args, AisStart::Prior);
            let full = if args.reestimate_flagged && !flagged.is_empty() {
                bar.set_message(format!(
                    "AIS re-estimate of {} flagged images",
                    flagged.len()
                ));
                let index: Vec<i64> = flagged.iter().map(|&i| i as i64).collect();
                let xf = x.index_select(0, &Tensor::from_slice(&index).to_device(device));
                Some(vae_eval::ais(&model, &xf, &full_config, &mut progress)?)
            } else {
                None
            };
            let mut ais_log_px: Vec<Option<f64>> = vec![None; n];
            let mut log_px = r.log_px.clone();
            let mut mc_se = r.log_px_mc_se.clone();
            if let Some(a) = &full {
                for (j, &i) in flagged.iter().enumerate() {
                    ais_log_px[i] = Some(a.log_px[j]);
                    log_px[i] = a.log_px[j];
                    mc_se[i] = a.log_px_mc_se[j];
                }
            }
            let reestimated = args.reestimate_flagged.then(|| {
                let neg: Vec<f64> = log_px.iter().map(|v| -v).collect();
                let (estimate_nll, stderr) = vae_eval::stats::mean_and_stderr(&neg);
                Reestimate {
                    images: flagged.len(),
                    steps: full_config.anneal_steps,
                    chains: full_config.num_chains,
                    estimate_nll,
                    stderr,
                    mc_stderr_replicates: vae_eval::stats::combined_stderr(&mc_se),
                    ais_flagged: full.as_ref().map_or(0, |a| a.flagged()),
                }
            });
            let rows = (0..r.num_examples)
                .map(|i| IsRow {
                    index: i,
                    log_px: r.log_px[i],
                    log_px_stderr: r.log_px_stderr[i],
                    elbo: r.elbo[i],
                    ess: r.ess[i],
                    khat: r.khat[i],
                    log_px_mc_se: r.log_px_mc_se[i],
                    flag: flags[i].clone(),
                    ais_check_log_px: check.as_ref().map(|a| a.log_px[i]),
                    ais_log_px: ais_log_px[i],
                })
                .collect();
            let estimate = Estimate::Is(IsEstimate {
                estimate_nll: r.nll,
                stderr: r.nll_stderr,
                mc_stderr: r.nll_mc_stderr,
                mc_stderr_replicates: r.nll_mc_stderr_replicates,
                khat_above_0_5: r.khat_above_0_5,
                khat_above_0_7: r.khat_above_0_7,
                flagged: flagged.len(),
                ais_check: check.as_ref().map(|a| AisCheck {
                    steps: a.config.anneal_steps,
                    chains: a.config.num_chains,
                    estimate_nll: a.nll,
                    below: below.iter().filter(|&&b| b).count(),
                }),
                reestimated,
                neg_elbo: r.neg_elbo,
                neg_elbo_stderr: r.neg_elbo_stderr,
                iwae_curve: r
                    .iwae
                    .iter()
                    .map(|p| IwaePoint {
                        k: p.k,
                        nll: p.nll,
                        nll_stderr: p.nll_stderr,
                    })
                    .collect(),
                settings: serde_json::to_value(&r.config)?,
            });
            let title = format!("IWAE bound: {} {split_name}, {n} images", cfg.name);
            plot = Some(crate::iwae_plot::iwae_curve_png(&title, &r.iwae));
            (estimate, Rows::Is(rows))
        }
        EvalMethod::Ais | EvalMethod::Bdmc => {
            let config = ais_config(
                &args,
                match args.start {
                    EvalStart::Prior => AisStart::Prior,
                    EvalStart::Base => AisStart::EncoderBase,
                    EvalStart::Posterior => AisStart::FlowPosterior,
                },
            );
            if args.method == EvalMethod::Ais {
                let r = vae_eval::ais(&model, &split.to_tensor(n, device), &config, &mut progress)?;
                let rows = (0..r.num_examples)
                    .map(|i| AisRow {
                        index: i,
                        log_px: r.log_px[i],
                        log_px_stderr: r.log_px_stderr[i],
                        mean_log_weight: r.log_px_mean_log_weight[i],
                        ess: r.ess[i],
                        log_px_mc_se: r.log_px_mc_se[i],
                        flag: r
                            .flags(i)
                            .iter()
                            .map(|f| f.name())
                            .collect::<Vec<_>>()
                            .join(";"),
                    })
                    .collect();
                let estimate = Estimate::Ais(AisEstimate {
                    estimate_nll: r.nll,
                    stderr: r.nll_stderr,
                    mc_stderr: r.nll_mc_stderr,
                    mc_stderr_replicates: r.nll_mc_stderr_replicates,
                    flagged: r.flagged(),
                    nll_mean_log_weight: r.nll_mean_log_weight,
                    trace: AisTrace {
                        acceptance: r.trace.acceptance,
                        step_size_mean: r.trace.step_size_mean,
                        step_size_min: r.trace.step_size_min,
                        step_size_max: r.trace.step_size_max,
                    },
                    settings: serde_json::to_value(&r.config)?,
                });
                (estimate, Rows::Ais(rows))
            } else {
                // BDMC needs data whose latent is known: simulate it from the model.
                let (x, z) = vae_eval::simulate(&model, n, args.seed)?;
                let r = vae_eval::bdmc(&model, &x, &z, &config, &mut progress)?;
                let rows = (0..r.gap_per_example.len())
                    .map(|i| BdmcRow {
                        index: i,
                        forward_log_px: r.forward.log_px[i],
                        reverse_log_px: r.reverse.log_px[i],
                        gap: r.gap_per_example[i],
                    })
                    .collect();
                let estimate = Estimate::Bdmc(BdmcEstimate {
                    lower_bound_log_px: r.lower,
                    upper_bound_log_px: r.upper,
                    gap: r.gap,
                    gap_stderr: r.gap_stderr,
                    settings: serde_json::to_value(&r.forward.config)?,
                    data: BDMC_SIMULATED_DATA.into(),
                });
                (estimate, Rows::Bdmc(rows))
            }
        }
    };
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    let summary = EvalSummary {
        split: split_name,
        images: n,
        checkpoint: args.checkpoint.clone(),
        wall_seconds: seconds,
        ms_per_image: seconds * 1e3 / n as f64,
        estimate,
    };
    summary.write(&out)?;
    let csv = out.with_extension("csv");
    rows.write(&csv)?;
    let png = out.with_extension("png");
    if let Some(bytes) = &plot {
        write_atomic(&png, bytes)?;
    }
    match &summary.estimate {
        Estimate::Bdmc(b) => println!(
            "bdmc on {n} simulated images: log p(x) in [{:.3}, {:.3}], gap {:.3} nats ({seconds:.1} s)",
            b.lower_bound_log_px, b.upper_bound_log_px, b.gap,
        ),
        _ => println!(
            "{method} NLL on {n} {} images: {:.3} +- {:.3} nats ({seconds:.1} s, {:.1} ms per image)",
            summary.split,
            summary.nll().unwrap_or(f64::NAN),
            summary.nll_stderr().unwrap_or(f64::NAN),
            summary.ms_per_image,
        ),
    }
    let mc = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.3}"));
    if let Estimate::Ais(e) = &summary.estimate {
        println!(
            "Monte Carlo error of the mean: {} (chains as replicates), {} (delta method); {} of \
             {n} images flagged (chains that disagree by more than a nat, or an ESS below half \
             the chains: the CSV's flag column)",
            mc(e.mc_stderr_replicates),
            mc(e.mc_stderr),
            e.flagged,
        );
    }
    if let Estimate::Is(e) = &summary.estimate {
        println!(
            "Monte Carlo error of the mean: {} (replicates), {} (delta method); PSIS k-hat above \
             0.7 on {} images, above 0.5 on {}; {} of {n} images flagged (k-hat > 0.7, a small \
             ESS{}: the CSV's flag column)",
            mc(e.mc_stderr_replicates),
            mc(e.mc_stderr),
            e.khat_above_0_7,
            e.khat_above_0_5,
            e.flagged,
            match &e.ais_check {
                Some(c) => format!(
                    ", or IS below a {}-step AIS from the prior, on {} images (AIS NLL {:.3})",
                    c.steps, c.below, c.estimate_nll
                ),
                None => String::new(),
            },
        );
        if let Some(r) = &e.reestimated {
            println!(
                "with the {} flagged images re-estimated by a {}-step, {}-chain AIS from the \
                 prior: NLL {:.3} +- {:.3} nats, Monte Carlo error {} ({} of them flagged by \
                 AIS)",
                r.images,
                r.steps,
                r.chains,
                r.estimate_nll,
                r.stderr.unwrap_or(f64::NAN),
                mc(r.mc_stderr_replicates),
                r.ais_flagged,
            );
        }
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

/// The AIS settings of the AIS/BDMC flags (`--steps`, `--chains`, ...), from `start`.
fn ais_config(args: &EvalArgs, start: AisStart) -> AisConfig {
    AisConfig {
        num_chains: args.chains,
        anneal_steps: args.steps,
        start,
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
    }
}

/// The per-image rows of one method, for its CSV.
enum Rows {
    Is(Vec<IsRow>),
    Ais(Vec<AisRow>),
    Bdmc(Vec<BdmcRow>),
}

impl Rows {
    /// Writes the CSV atomically (vae-io's one writer of each row type).
    fn write(&self, path: &std::path::Path) -> Result<()> {
        match self {
            Rows::Is(r) => write_csv(path, r),
            Rows::Ais(r) => write_csv(path, r),
            Rows::Bdmc(r) => write_csv(path, r),
        }?;
        Ok(())
    }
}
