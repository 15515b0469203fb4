//! `vae train`: trains a run, with progress bars, logs, TensorBoard curves, pictures,
//! checkpoints, Ctrl-C handling and exact resumption.
//!
//! Ctrl-C, SIGTERM (`kill`, Slurm at a time limit) and SIGHUP all stop a run the same way: the
//! step finishes, a checkpoint is written, and the resume command is printed. The run folder is
//! locked for the whole run (`vae_io::RunLock`), so a second `vae train` into it fails at once
//! instead of both writing into it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tch::{Device, Tensor};
use vae_data::{default_data_dir, Dataset, SplitKind};
use vae_io::results::{EpochMetrics, SplitElbo, TrainResults};
use vae_model::{DataConfig, EpochOutcome, EpochReport, EvalReport, Trainer};

use crate::args::TrainArgs;
use crate::board::Board;
use crate::config::RunConfig;
use crate::pictures;
use crate::run_dir::{git_commit, now, write_json, RunDir};
use crate::thread_governor::ThreadGovernor;

/// Parses `cpu`, `cuda` or `cuda:N` and checks that the device exists.
pub fn device(name: &str) -> Result<Device> {
    let d = match name {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => 0,
        other => match other
            .strip_prefix("cuda:")
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(n) => n,
            None => bail!("unknown device `{other}`: expected cpu, cuda or cuda:N"),
        },
    };
    if !tch::Cuda::is_available() {
        bail!(
            "--device {name}: no CUDA device is available (this machine has no usable GPU, or \
             this binary was built without the `cuda` feature); use --device cpu"
        );
    }
    let count = tch::Cuda::device_count() as usize;
    if d >= count {
        bail!("--device {name}: only {count} CUDA device(s) are visible");
    }
    Ok(Device::Cuda(d))
}

/// Applies `--threads`.
pub fn set_threads(threads: Option<usize>) -> Result<()> {
    if let Some(n) = threads {
        if n == 0 {
            bail!("--threads 0: expected at least 1");
        }
        // More threads than cores only adds contention (and thousands exhaust the process's
        // limits): capped, saying so.
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        let n = if n > cores {
            eprintln!("--threads {n}: this machine has {cores} cores; using {cores}");
            cores
        } else {
            n
        };
        tch::set_num_threads(n as i32);
    }
    Ok(())
}

/// Loads the run's dataset from `data_dir` or the default data folder, split as `data` says.
pub fn load_dataset(data: &DataConfig, data_dir: Option<std::path::PathBuf>) -> Result<Dataset> {
    let dir = data_dir.unwrap_or_else(default_data_dir);
    Dataset::load(data.dataset, &dir, data.splits())
        .with_context(|| format!("loading {} from {}", data.dataset, dir.display()))
}

/// Loads the run's dataset (from `data_dir` or the default data folder) and builds its trainer.
pub fn build_trainer(
    cfg: &RunConfig,
    data_dir: Option<std::path::PathBuf>,
    device: Device,
) -> Result<Trainer> {
    let data = load_dataset(&cfg.data, data_dir)?;
    Ok(Trainer::new(cfg.experiment(), data, device)?)
}

/// Lists the dotted paths where two JSON values differ.
pub fn json_differences(
    a: &serde_json::Value,
    b: &serde_json::Value,
    path: &str,
    out: &mut Vec<String>,
) {
    match (a, b) {
        (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                let null = serde_json::Value::Null;
                json_differences(
                    x.get(k).unwrap_or(&null),
                    y.get(k).unwrap_or(&null),
                    &p,
                    out,
                );
            }
        }
        _ if a != b => out.push(format!("{path}: {a} -> {b}")),
        _ => {}
    }
}

/// The settings that differ between `a` and `b` (`key: a -> b`), apart from `train.epochs`:
/// extending a run is the one change that cannot alter what was computed.
fn settings_differences(
    a: &impl serde::Serialize,
    b: &impl serde::Serialize,
) -> Result<Vec<String>> {
    let mut diffs = Vec::new();
    json_differences(
        &serde_json::to_value(a)?,
        &serde_json::to_value(b)?,
        "",
        &mut diffs,
    );
    diffs.retain(|d| !d.starts_with("train.epochs:"));
    Ok(diffs)
}

/// The run's config and folder, new or resumed, and for a resume the checkpoint it continues
/// from (`last`, else `best`; `None` for a new run or one killed before its first checkpoint),
/// read once here, where its settings are compared with the run's.
fn prepare(args: &TrainArgs) -> Result<(RunConfig, RunDir, Option<vae_model::Checkpoint>)> {
    if let Some(dir) = &args.resume {
        let run = RunDir::new(dir);
        let saved_path = run.config();
        let saved = RunConfig::load(&saved_path, &[])
            .with_context(|| format!("--resume {}: reading the run's config", dir.display()))?;
        let wanted = match &args.config {
            Some(path) => RunConfig::load(path, &args.set)?,
            None => RunConfig::from_value(serde_json::to_value(&saved)?, &args.set)?,
        };
        let diffs = settings_differences(&saved, &wanted)?;
        if !diffs.is_empty() && !args.force {
            bail!(
                "--resume {}: the config differs from the run's ({}); pass --force to resume anyway",
                dir.display(),
                diffs.join("; ")
            );
        }
        let from =
            if run.checkpoint("last").exists() {
                Some("last")
            } else if run.checkpoint("best").exists() {
                // `last` removed (e.g. after a checksum error): continue from `best`, which only
                // an improvement replaces, rather than start over and overwrite it.
                eprintln!(
                    "--resume {}: checkpoints/last.safetensors is missing; resuming from \
                 checkpoints/best.safetensors (the epochs after it are trained again)",
                    dir.display()
                );
                Some("best")
            } else if run.results().exists() || run.metrics().exists() {
                bail!(
                "--resume {}: the run has trained ({} exists) but has no checkpoint left in {}; \
                 starting over would replace its results: start a new run with --out, or \
                 restore a checkpoint",
                dir.display(),
                if run.results().exists() { run.results() } else { run.metrics() }.display(),
                run.checkpoints().display()
            );
            } else {
                // Killed before its first checkpoint: nothing was trained, so start it over.
                None
            };
        // The checkpoint may come from another run copied in: its own settings must match too.
        let Some(name) = from else {
            return Ok((wanted, run, None));
        };
        let ck = vae_model::Checkpoint::read(&run.checkpoint(name))?;
        let diffs = settings_differences(ck.config(), &wanted.experiment())?;
        if !diffs.is_empty() && !args.force {
            bail!(
                "--resume {}: checkpoints/{name}.safetensors was written with other settings \
                 than the run's ({}); pass --force to resume anyway",
                dir.display(),
                diffs.join("; ")
            );
        }
        return Ok((wanted, run, Some(ck)));
    }
    let Some(path) = &args.config else {
        bail!("give --config FILE for a new run, or --resume DIR to continue one");
    };
    let cfg = RunConfig::load(path, &args.set)?;
    let root = args
        .out
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from("runs").join(&cfg.name));
    let run = RunDir::new(root);
    if run.config().exists() {
        bail!(
            "{} already holds a run: continue it with --resume {}, or choose another folder with --out",
            run.root.display(),
            run.root.display()
        );
    }
    Ok((cfg, run, None))
}

/// `vae train --check`: the config read and validated, its memory estimate compared with the
/// memory available, and the model built once on the CPU (the only check of shapes that only
/// the networks know, such as cMADE widths that give no autoregressive masks); nothing is
/// written and no data is read.
fn check(args: &TrainArgs) -> Result<()> {
    let Some(path) = &args.config else {
        bail!("--check needs --config FILE");
    };
    let cfg = RunConfig::load(path, &args.set)?;
    let experiment = cfg.experiment();
    crate::memory::check_training(&experiment)?;
    let vs = tch::nn::VarStore::new(Device::Cpu);
    vae_model::Vae::new(&vs.root(), &cfg.model)
        .with_context(|| format!("config {}: model", path.display()))?;
    let parameters: i64 = vs
        .trainable_variables()
        .iter()
        .map(|t| t.numel() as i64)
        .sum();
    println!(
        "config {} is valid: run {:?}, {parameters} parameters, about {:.1} GiB to train",
        path.display(),
        cfg.name,
        crate::memory::gib(vae_model::memory::train_bytes(&experiment))
    );
    Ok(())
}

fn bar_style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("a constant template indicatif accepts: every run of this command draws it")
        .progress_chars("=> ")
}

/// `vae train`.
pub fn run(args: TrainArgs) -> Result<()> {
    if args.check {
        return check(&args);
    }
    let (cfg, run, resume_from) = prepare(&args)?;
    crate::memory::check_training(&cfg.experiment())?;
    let resuming = resume_from.is_some();
    let device = device(&args.device)?;
    set_threads(args.threads)?;
    std::fs::create_dir_all(run.checkpoints())
        .with_context(|| format!("creating {}", run.root.display()))?;
    // Held until this function returns; the OS releases it if the process dies.
    let lock = vae_io::RunLock::acquire(&run.root, "vae train")?;
    if let Some(reason) = lock.unlocked_reason() {
        eprintln!(
            "warning: cannot lock {} ({reason}): nothing stops a second process from writing \
             into this run folder",
            run.root.display()
        );
    }
    // Only once the folder is ours: the temporary files of writers killed before their rename.
    let mut stale_temps = 0;
    for dir in [run.root.clone(), run.checkpoints()] {
        stale_temps += vae_io::atomic::remove_stale_temps(&dir)?;
    }
    let mut trainer = build_trainer(&cfg, args.data_dir.clone(), device)?;
    if let Some(ck) = &resume_from {
        trainer.restore(ck)?;
    }
    // A finished run trained further (from `best` after `last` was lost, or with more epochs
    // under --force): its results.json describes a `best` that training may now replace. It is
    // removed until the end writes the new one, so it never describes checkpoints not there.
    let stale_results = resuming && !trainer.is_done() && run.results().exists();
    if stale_results {
        std::fs::remove_file(run.results())
            .with_context(|| format!("removing the stale {}", run.results().display()))?;
        eprintln!(
            "--resume {}: the run trains again from epoch {}; its results.json was removed and \
             is written again at the end",
            run.root.display(),
            trainer.state().epochs_done
        );
    }
    // Test-only fault injection (README, "Bad input and failures"): NaN losses from a step on.
    if let Ok(spec) = std::env::var("FLOWVAE_TEST_INJECT_NAN") {
        let parsed = spec
            .split_once(':')
            .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)));
        let (from, count) = parsed.with_context(|| {
            format!("FLOWVAE_TEST_INJECT_NAN={spec:?}: expected STEP:COUNT, e.g. 5:3")
        })?;
        trainer.inject_nan(from, count);
    }
    write_json(&run.config(), &cfg)?;
    let started = now();
    let mut manifest = serde_json::json!({
        "name": cfg.name,
        "git_commit": git_commit(),
        "flowvae_version": env!("CARGO_PKG_VERSION"),
        "tch_version": "0.24.0",
        "libtorch_version": env!("FLOWVAE_LIBTORCH_VERSION"),
        "seed": cfg.train.seed,
        "eval_binarization_seed": cfg.data.eval_binarization_seed,
        "device": format!("{device:?}"),
        "threads": tch::get_num_threads(),
        "resumed_from_epoch": resuming.then(|| trainer.state().epochs_done),
        "start_time": started,
        "end_time": null,
        "ms_per_step": null,
    });
    write_json(&run.manifest(), &manifest)?;
    run.log_line(&format!(
        "{started} {} run {} in {} on {device:?}, {} threads",
        if resuming { "resuming" } else { "starting" },
        cfg.name,
        run.root.display(),
        tch::get_num_threads()
    ))?;
    if stale_temps > 0 {
        run.log_line(&format!(
            "removed {stale_temps} temporary file(s) left by killed writers"
        ))?;
    }

    if !resuming {
        // A good checkpoint exists from the start, so a rollback always has somewhere to go.
        trainer.save_checkpoint(&run.checkpoint("last"))?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        // Ctrl-C, SIGTERM and SIGHUP (ctrlc's `termination` feature). A second signal is not
        // caught twice: the handler only sets the flag, and the run stops after this step.
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))
            .context("installing the Ctrl-C/SIGTERM handler")?;
    }
    let mut tb = Board::open(&run.tensorboard())?;
    let picture_input = trainer
        .split(SplitKind::Test)
        .slice(0..100.min(trainer.split(SplitKind::Test).len()));

    let steps_per_epoch = trainer.steps_per_epoch() as u64;
    // Saturating: `train.epochs` may be any usize; the bar just shows no ETA at such lengths.
    let total = (cfg.train.epochs as u64).saturating_mul(steps_per_epoch);
    let multi = MultiProgress::new();
    let overall = multi.add(ProgressBar::new(total));
    overall.set_style(bar_style(
        "overall [{bar:30}] {pos}/{len} steps  {elapsed_precise} elapsed, ETA {eta_precise}",
    ));
    overall.set_position(trainer.state().global_step);
    let epoch_bar = multi.add(ProgressBar::new(steps_per_epoch));
    epoch_bar.set_style(bar_style(
        "epoch {prefix:>5} [{bar:30}] {pos}/{len}  ETA {eta}  {msg}",
    ));

    let mut step_ms = (0.0f64, 0u64);
    let mut governor = ThreadGovernor::new(args.threads);
    let interrupted = loop {
        if trainer.is_done() {
            break false;
        }
        let epoch = trainer.state().epochs_done + 1;
        epoch_bar.set_prefix(format!("{epoch}/{}", cfg.train.epochs));
        epoch_bar.set_position(trainer.state().step_in_epoch as u64);
        epoch_bar.reset_eta();
        let mut last = Instant::now();
        let outcome = trainer.run_epoch(&stop, args.max_steps, |s| {
            let dt = last.elapsed().as_secs_f64() * 1e3;
            last = Instant::now();
            step_ms = (step_ms.0 + dt, step_ms.1 + 1);
            governor.tick();
            epoch_bar.set_position(s.step_in_epoch as u64);
            epoch_bar.set_message(format!("-elbo {:.2}", s.rec + s.kl));
            overall.inc(1);
        })?;
        let report = match outcome {
            EpochOutcome::Completed(r) => r,
            EpochOutcome::Interrupted => break true,
            EpochOutcome::Diverged => {
                let s = trainer.state();
                let line = format!(
                    "{} non-finite steps in a row at global step {}: rolling back to {} with the \
                     learning rate halved",
                    s.skipped.1,
                    s.global_step,
                    run.checkpoint("last").display()
                );
                multi.println(&line).ok();
                run.log_line(&line)?;
                if let Err(e) = trainer.rollback(&run.checkpoint("last")) {
                    run.log_line(&format!("stopped: {e}"))?;
                    return Err(e.into());
                }
                overall.set_position(trainer.state().global_step);
                continue;
            }
        };
        // The same record makes the train.log line and the metrics.jsonl line.
        let metrics = epoch_metrics(&report, cfg.train.epochs, trainer.state().global_step);
        let line = epoch_line(&metrics);
        multi.println(&line).ok();
        run.log_line(&line)?;
        metrics.append(&run.metrics())?;
        tb.epoch(&report);
        if report.improved {
            trainer.save_checkpoint(&run.checkpoint("best"))?;
        }
        if report.epoch % cfg.logging.checkpoint_every == 0 {
            trainer.save_checkpoint(&run.checkpoint("last"))?;
        }
        if report.epoch % cfg.logging.images_every == 0 || trainer.is_done() {
            write_pictures(
                &trainer,
                &run,
                &mut tb,
                &picture_input,
                report.epoch,
                device,
            )?;
        }
        tb.flush();
    };
    epoch_bar.finish_and_clear();
    overall.finish_and_clear();
    trainer.save_checkpoint(&run.checkpoint("last"))?;
    manifest["end_time"] = now().into();
    manifest["thread_governor"] = governor.summary();
    if step_ms.1 > 0 {
        manifest["ms_per_step"] = (step_ms.0 / step_ms.1 as f64).into();
    }
    write_json(&run.manifest(), &manifest)?;
    if interrupted {
        let s = trainer.state();
        let line = format!(
            "stopped at epoch {} step {} (global step {}); continue with: vae train --resume {}",
            s.epochs_done + 1,
            s.step_in_epoch,
            s.global_step,
            run.root.display()
        );
        run.log_line(&line)?;
        eprintln!("{line}");
        return Ok(());
    }
    finish(&mut trainer, &run)
}

/// Evaluates the best checkpoint on the test set, once, and writes `results.json`.
fn finish(trainer: &mut Trainer, run: &RunDir) -> Result<()> {
    let best = trainer.state().best;
    trainer.load_checkpoint(&run.checkpoint("best"))?;
    let test = trainer.evaluate(SplitKind::Test);
    let validation = (!trainer.split(SplitKind::Validation).is_empty())
        .then(|| trainer.evaluate(SplitKind::Validation));
    let results = TrainResults {
        checkpoint: "best".into(),
        best_epoch: best.map(|b| b.1),
        validation: validation.map(split_elbo),
        test: split_elbo(test),
        test_binarization: "fixed".into(),
    };
    results.write(&run.results())?;
    let line = format!(
        "best epoch {}: test -elbo {:.3} (rec {:.3}, kl {:.3}) on {} fixed-binarized test images",
        best.map(|b| b.1).unwrap_or(0),
        test.neg_elbo,
        test.rec,
        test.kl,
        test.images
    );
    run.log_line(&line)?;
    println!("{line}");
    println!("run folder: {}", run.root.display());
    Ok(())
}

/// vae-model's report of a split as vae-io's result type.
fn split_elbo(r: EvalReport) -> SplitElbo {
    SplitElbo {
        neg_elbo: r.neg_elbo,
        rec: r.rec,
        kl: r.kl,
        images: r.images,
    }
}

/// The `metrics.jsonl` record of a completed epoch of a run asked for `epochs` epochs, which
/// ended at optimizer step `global_step`.
fn epoch_metrics(r: &EpochReport, epochs: usize, global_step: u64) -> EpochMetrics {
    EpochMetrics {
        epoch: r.epoch,
        epochs,
        global_step,
        train_neg_elbo: r.train_neg_elbo,
        train_rec: r.train_rec,
        train_kl: r.train_kl,
        warmup: r.warmup,
        lr: r.lr,
        grad_norm: r.grad_norm,
        validation: r.validation.map(split_elbo),
        best: r.improved,
        skipped: r.skipped,
        seconds: r.seconds,
        end_time: now(),
    }
}

/// The epoch's `train.log` line.
fn epoch_line(m: &EpochMetrics) -> String {
    let skipped = if m.skipped > 0 {
        format!("  skipped {} non-finite steps", m.skipped)
    } else {
        String::new()
    };
    let valid = match m.validation {
        Some(v) => format!(
            "  valid -elbo {:8.3}{}",
            v.neg_elbo,
            if m.best { " *" } else { "" }
        ),
        None => String::new(),
    };
    format!(
        "epoch {:>4}/{}  train -elbo {:8.3} rec {:8.3} kl {:7.3}  warmup {:.3} lr {:.2e}{valid}  {:.1} s{skipped}",
        m.epoch, m.epochs, m.train_neg_elbo, m.train_rec, m.train_kl, m.warmup, m.lr, m.seconds
    )
}

fn write_pictures(
    trainer: &Trainer,
    run: &RunDir,
    tb: &mut Board,
    input: &vae_data::Split,
    epoch: usize,
    device: Device,
) -> Result<()> {
    if input.len() < 100 {
        return Ok(()); // fewer than 100 test images: no 10 x 10 grids (as the original)
    }
    let x: Vec<f32> = input.pixels.iter().map(|&p| p as f32 / 255.0).collect();
    let x = Tensor::from_slice(&x)
        .view([100, 1, 28, 28])
        .to_device(device);
    tch::manual_seed(epoch as i64);
    let samples = pictures::samples(trainer.vae(), device)?;
    let recon = pictures::reconstructions(trainer.vae(), &x)?;
    samples.save_png(&run.samples())?;
    recon.save_png(&run.reconstructions())?;
    for (tag, img) in [("samples", &samples), ("reconstructions", &recon)] {
        let (rgb, dim) = pictures::tensorboard_rgb(img);
        tb.image(tag, &rgb, &dim, epoch);
    }
    Ok(())
}
