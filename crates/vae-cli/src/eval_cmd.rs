//! `vae eval`: log-likelihood estimates of a trained run by IS, AIS or BDMC (vae-eval), with a
//! progress bar, a JSON summary and a per-example CSV.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use tch::Tensor;
use vae_eval::{
    AisConfig, AisStart, HmcConfig, IsConfig, IsPasses, LatentModel, StepSizeAdaptation,
};
use vae_io::results::{
    write_csv, AisCheck, AisEstimate, AisRow, AisTrace, BdmcEstimate, BdmcRow, Estimate,
    EvalSummary, IsEstimate, IsRow, IwaePoint, Reestimate, ShardInfo, ShardProgress,
    BDMC_SIMULATED_DATA,
};
use vae_model::{evaluation_split, Checkpoint, VaeLatentModel};

use crate::args::{AdaptationArg, EvalArgs, EvalMethod, EvalStart, IsPassesArg};
use crate::config::RunConfig;
use crate::run_dir::{write_atomic, RunDir};
use crate::thread_governor::ThreadGovernor;
use crate::train_cmd::{device, load_dataset, set_threads};

/// `vae eval`: a run's checkpoint (`--run`) or a TorchScript module (`--model`) on its images.
pub fn run(args: EvalArgs) -> Result<()> {
    if args.reestimate_flagged && args.shard.is_some() {
        bail!(
            "--reestimate-flagged with --shard: the flagged images of different shards would \
             share AIS step sizes differently than in one run, so the merged re-estimate would \
             not be the unsharded one; re-estimate after merging, or run --method ais sharded"
        );
    }
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
    if let Some((flag, family)) = args.unused_flags().first() {
        bail!(
            "{flag} is {family}; --method {} does not use it",
            format!("{:?}", args.method).to_lowercase()
        );
    }
    let device = device(&args.device)?;
    set_threads(args.threads)?;
    match &args.model {
        Some(path) => crate::eval_module::run(&args, path, device),
        None => run_checkpoint(&args, device),
    }
}

/// What is evaluated and how its outputs are named, whatever it was loaded from.
pub(crate) struct Target {
    /// The examples, `[n, ...]`, on the device.
    pub x: Tensor,
    /// The model's name, for the plot's title.
    pub name: String,
    /// The summary's `split`: the split's name, or the data file.
    pub split: String,
    /// The summary's `checkpoint`: `best`/`last`, or the module file.
    pub checkpoint: String,
    /// The checkpoint's checksum (shards compare it).
    pub checksum: Option<u64>,
    /// The run folder or module file, as given.
    pub run: String,
    /// Where the summary goes without `--out`: for a shard `(index, count)`, or the whole.
    pub default_out: DefaultOut,
}

/// Where a summary goes without `--out`: for shard `(I, N)`, or the whole evaluation.
pub(crate) type DefaultOut = Box<dyn Fn(Option<(usize, usize)>) -> std::path::PathBuf>;

/// `vae eval --run DIR`: the checkpoint's model alone (no trainer, no optimizer) on the split's
/// images.
fn run_checkpoint(args: &EvalArgs, device: tch::Device) -> Result<()> {
    let Some(run_path) = args.run.clone() else {
        bail!(
            "give a run folder (--run DIR) or a TorchScript module (--model FILE.pt --data FILE)"
        );
    };
    let run = RunDir::new(run_path.clone());
    let cfg = RunConfig::load(&run.config(), &[])
        .with_context(|| format!("--run {}: reading the run's config", run.root.display()))?;
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
    crate::memory::check_model(&ck.config().model, ck.path())?;
    let vae = ck.load_vae(device)?;
    let data = load_dataset(&cfg.data, args.data_dir.clone())?;
    let split = evaluation_split(&data, &cfg.experiment(), args.split);
    drop(data);
    let n = args.n.unwrap_or(split.len()).min(split.len());
    if n == 0 {
        bail!("the {:?} split is empty: nothing to evaluate", args.split);
    }
    let model = VaeLatentModel::new(&vae, device);
    let method = format!("{:?}", args.method).to_lowercase();
    let split_name = format!("{:?}", args.split).to_lowercase();
    let target = Target {
        x: split.to_tensor(n, device),
        name: cfg.name.clone(),
        split: split_name.clone(),
        checkpoint: args.checkpoint.clone(),
        checksum: ck.checksum(),
        run: run_path.display().to_string(),
        default_out: Box::new(move |shard| match shard {
            Some((i, n)) => run.eval_shard(&method, &split_name, i, n),
            None => run.eval_summary(&method, &split_name),
        }),
    };
    evaluate(args, &model, &target, &|| None)
}

/// Runs the chosen estimator on `target`'s examples and writes the summary, CSV and plot.
/// `failure` says why the model failed, when it can (a TorchScript module's own message).
pub(crate) fn evaluate<M: LatentModel>(
    args: &EvalArgs,
    model: &M,
    target: &Target,
    failure: &dyn Fn() -> Option<String>,
) -> Result<()> {
    evaluate_inner(args, model, target).map_err(|e| match failure() {
        Some(f) => e.context(f),
        None => e,
    })
}

fn evaluate_inner<M: LatentModel>(args: &EvalArgs, model: &M, target: &Target) -> Result<()> {
    let n = target.x.size()[0] as usize;
    // The images this process evaluates: all n, or a shard's slice of them. AIS cuts at whole
    // groups of images (they share an adapted step size), so that each image gets the estimate
    // an unsharded run gives it; so does IS with its AIS check.
    let align = match args.method {
        // Whole model calls too, whose f32 rounding can depend on their row count.
        EvalMethod::Is => {
            // Checked first: the shapes below divide by its sizes.
            let config = is_config(args);
            config.validate()?;
            let call = config.resolved(model).chunk_shape().0;
            if args.check_with_ais {
                lcm(call, AisConfig::is_check(0).examples_per_group())
            } else {
                call
            }
        }
        EvalMethod::Ais | EvalMethod::Bdmc => {
            let config = ais_config(args, AisStart::Prior);
            config.validate()?;
            config.examples_per_group()
        }
    };
    check_memory(args, model.latent_dim())?;
    let (first, len) = match args.shard {
        Some(s) => s.slice(n, align).map_err(anyhow::Error::msg)?,
        None => (0, n),
    };
    let bar = ProgressBar::new(1);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {percent}%  {elapsed_precise} elapsed, ETA {eta_precise}",
        )
        .expect("a constant template indicatif accepts: every run of this command draws it")
        .progress_chars("=> "),
    );
    let method = format!("{:?}", args.method).to_lowercase();
    let split_name = target.split.clone();
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| (target.default_out)(args.shard.map(|s| (s.index, s.count))));
    // A shard reports its progress in a file too, for the driver of a sharded evaluation.
    let progress_file = args.shard.map(|_| ShardProgress::path_for(&out));
    let started = Instant::now();
    let mut last_write: Option<Instant> = None;
    let mut governor = ThreadGovernor::new(args.threads);
    let mut progress = |done: u64, total: u64| {
        governor.tick();
        bar.set_length(total);
        bar.set_position(done);
        if let Some(p) = &progress_file {
            if last_write.is_none_or(|t| t.elapsed().as_secs_f64() >= 2.0) || done == total {
                last_write = Some(Instant::now());
                let state = ShardProgress {
                    done,
                    total,
                    seconds: started.elapsed().as_secs_f64(),
                };
                // Progress is a convenience: a failed write must not stop the estimate.
                let _ = state.write(p);
            }
        }
    };
    // Check the outputs and make their folder before the (long) estimation, so that a bad --out
    // fails first.
    let mut outputs = vec![
        out.clone(),
        out.with_extension("csv"),
        out.with_extension("png"),
    ];
    outputs.extend(progress_file.clone());
    check_outputs(&outputs)?;
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("--out {}: creating {}", out.display(), parent.display()))?;
    }
    // One evaluation at a time writes these files (a second gets the holder's pid).
    let _lock = output_lock(&out, "vae eval")?;
    let n_all = n;
    let n = len;
    bar.set_message(format!("{method} on {n} images"));
    let start = Instant::now();
    let mut plot = None;
    // IS: each image's IWAE-curve values, which a shard passes on to the merge.
    let mut iwae_log_px = Vec::new();
    let (estimate, rows): (Estimate, Rows) = match args.method {
        EvalMethod::Is => {
            let config = IsConfig {
                first_example: first,
                ..is_config(args)
            };
            let x = target.x.narrow(0, first as i64, n as i64);
            let r = vae_eval::importance_sampling(model, &x, &config, &mut progress)?;
            // An independent lower bound per image: IS far below it missed posterior mass that
            // its weights cannot show.
            let check = if args.check_with_ais {
                bar.set_message(format!("AIS check on {n} images"));
                let ais_config = AisConfig {
                    first_example: first,
                    ..AisConfig::is_check(args.seed)
                };
                Some(vae_eval::ais(model, &x, &ais_config, &mut progress)?)
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
            let full_config = ais_config(args, AisStart::Prior);
            let full = if args.reestimate_flagged && !flagged.is_empty() {
                bar.set_message(format!(
                    "AIS re-estimate of {} flagged images",
                    flagged.len()
                ));
                let index: Vec<i64> = flagged.iter().map(|&i| i as i64).collect();
                let xf = x.index_select(0, &Tensor::from_slice(&index).to_device(x.device()));
                Some(vae_eval::ais(model, &xf, &full_config, &mut progress)?)
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
                    index: first + i,
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
            let title = format!("IWAE bound: {} {split_name}, {n} images", target.name);
            plot = Some(crate::iwae_plot::iwae_curve_png(&title, &r.iwae));
            if args.shard.is_some() {
                iwae_log_px = r.iwae_log_px.clone();
            }
            (estimate, Rows::Is(rows))
        }
        EvalMethod::Ais | EvalMethod::Bdmc => {
            let config = AisConfig {
                first_example: first,
                ..ais_config(
                    args,
                    match args.start.unwrap_or(EvalStart::Prior) {
                        EvalStart::Prior => AisStart::Prior,
                        EvalStart::Base => AisStart::EncoderBase,
                        EvalStart::Posterior => AisStart::FlowPosterior,
                    },
                )
            };
            if args.method == EvalMethod::Ais {
                let x = target.x.narrow(0, first as i64, n as i64);
                let r = vae_eval::ais(model, &x, &config, &mut progress)?;
                let rows = (0..r.num_examples)
                    .map(|i| AisRow {
                        index: first + i,
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
                // All the images are simulated at once from the seed, then sliced: every
                // shard sees the data of the unsharded run.
                let (x, z) = vae_eval::simulate(model, n_all, args.seed)?;
                let (x, z) = (
                    x.narrow(0, first as i64, n as i64),
                    z.narrow(0, first as i64, n as i64),
                );
                let r = vae_eval::bdmc(model, &x, &z, &config, &mut progress)?;
                let rows = (0..r.gap_per_example.len())
                    .map(|i| BdmcRow {
                        index: first + i,
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
        checkpoint: target.checkpoint.clone(),
        wall_seconds: seconds,
        ms_per_image: seconds * 1e3 / n as f64,
        estimate,
        shard: args.shard.map(|s| ShardInfo {
            index: s.index,
            count: s.count,
            first_image: first,
            total_images: n_all,
            run: target.run.clone(),
            run_name: target.name.clone(),
            checkpoint_checksum: target.checksum,
            iwae_log_px,
        }),
        shards: None,
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
    print_written(&out, &csv, plot.is_some().then_some(png.as_path()));
    Ok(())
}

/// Refuses sizes whose buffers alone would not fit in the memory available (they would abort
/// in an allocation, or swap for hours): IS holds `k` noise vectors and log-weights per example
/// of a model call, AIS a schedule and traces per annealing step.
fn check_memory(args: &EvalArgs, latent: i64) -> Result<()> {
    let Some(available) = crate::memory::available() else {
        return Ok(());
    };
    let gib = crate::memory::gib;
    let (flag, value, bytes) = match args.method {
        EvalMethod::Is => {
            let c = is_config(args);
            let rows = c.num_samples.max(c.max_rows.unwrap_or(0)) as f64;
            // Per row: the noise (f32 x D) and the log-weight read back and copied (f64 x 3).
            ("--k", c.num_samples, rows * (4.0 * latent as f64 + 24.0))
        }
        EvalMethod::Ais | EvalMethod::Bdmc => {
            let c = ais_config(args, AisStart::Prior);
            // Per step: the inverse temperature and four trace values per group, f64.
            ("--steps", c.anneal_steps, c.anneal_steps as f64 * 48.0)
        }
    };
    if bytes > 0.8 * available as f64 {
        bail!(
            "{flag} {value}: its buffers alone need about {:.1} GiB, more than the {:.1} GiB of \
             memory available here; use a smaller {flag}",
            gib(bytes),
            gib(available as f64)
        );
    }
    Ok(())
}

/// The lock of an evaluation's output files, held until they are written; a warning where the
/// filesystem cannot lock.
pub(crate) fn output_lock(out: &Path, what: &str) -> Result<vae_io::lock::RunLock> {
    let lock = vae_io::lock::RunLock::acquire_output(out, what)?;
    if let Some(why) = lock.unlocked_reason() {
        eprintln!(
            "warning: {} cannot be locked ({why}); make sure no other evaluation writes it",
            out.display()
        );
    }
    Ok(lock)
}

/// Refuses outputs that would replace something other than a result file: a folder, a device, a
/// run's own files (vae-io's `output_conflict`).
pub(crate) fn check_outputs(paths: &[std::path::PathBuf]) -> Result<()> {
    for p in paths {
        if let Some(why) = vae_io::run_dir::output_conflict(p) {
            bail!("--out: {why}; nothing was written");
        }
    }
    Ok(())
}

/// The "wrote ..." line of `vae eval` and `vae eval-merge`: the summary, the CSV and the plot
/// when there is one.
pub(crate) fn print_written(out: &Path, csv: &Path, png: Option<&Path>) {
    match png {
        Some(png) => println!(
            "wrote {}, {} and {}",
            out.display(),
            csv.display(),
            png.display()
        ),
        None => println!("wrote {} and {}", out.display(), csv.display()),
    }
}

/// The IS settings of the flags.
pub(crate) fn is_config(args: &EvalArgs) -> IsConfig {
    IsConfig {
        num_samples: args.k.unwrap_or(1000),
        // None: the model's activation estimate sizes the calls (vae-model's cost).
        max_rows: args.max_rows,
        seed: args.seed,
        passes: match args.passes.unwrap_or(IsPassesArg::Batched) {
            IsPassesArg::Batched => IsPasses::Batched,
            IsPassesArg::OneSample => IsPasses::OneSamplePerPass,
        },
        replicates: args.replicates,
        first_example: 0,
    }
}

/// The least common multiple of two positive counts.
fn lcm(a: usize, b: usize) -> usize {
    let gcd = |mut a: usize, mut b: usize| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    a / gcd(a, b).max(1) * b
}

/// The AIS settings of the AIS/BDMC flags (`--steps`, `--chains`, ...), from `start`.
fn ais_config(args: &EvalArgs, start: AisStart) -> AisConfig {
    AisConfig {
        num_chains: args.chains.unwrap_or(8),
        anneal_steps: args.steps.unwrap_or(2000),
        start,
        hmc: HmcConfig {
            leapfrog_steps: args.leapfrog.unwrap_or(10),
            step_size: args.step_size.unwrap_or(0.01),
            adaptation: match args.adaptation.unwrap_or(AdaptationArg::Global) {
                AdaptationArg::Global => StepSizeAdaptation::Global,
                AdaptationArg::PerExample => StepSizeAdaptation::PerExample,
                AdaptationArg::PerChain => StepSizeAdaptation::PerChain,
                AdaptationArg::Fixed => StepSizeAdaptation::Fixed,
            },
            target_acceptance: args.target_acceptance.unwrap_or(0.65),
            momentum_refresh: args.momentum_refresh.unwrap_or(0.0),
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
