//! `vae bench` (hidden): one measured phase of `cargo xtask bench` for one config, as a JSON
//! object. Each phase runs in its own process so that its peak memory is its own.
//!
//! - `export`: writes the initial checkpoint (`model.safetensors`) and the batches
//!   (`data.safetensors`: `train_grey`, the grey training images of the timed steps in the
//!   trainer's order, and `test_bin`, the fixed-binarized test images) that the PyTorch reference
//!   (`benches/reference/flowvae_ref.py`) reads, so both sides do the same work.
//! - `train`: `Trainer::run_epoch` for `warmup` steps, then `steps` more in up to 5 timed
//!   repeats; the figure is the median over repeats of the time per step (binarization,
//!   forward, backward, gradient norm, Adam, and the read-back of the step's figures).
//! - `is`: importance sampling with `k` samples on the first `images` test images.
//! - `ais`: AIS from the prior with `chains` chains and `leapfrog` steps, then the time of one
//!   gradient of `log p(x, z)` at the same shape, to give AIS's overhead over its gradients.
//! - `matmul`: the f32 matrix-product peak of libtorch on the device.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use tch::{Device, Kind, Tensor};
use vae_data::{Binarization, SplitKind};
use vae_eval::JointDensity;
use vae_eval::{AisConfig, AisStart, HmcConfig, IsConfig, IsPasses};
use vae_model::{EpochOutcome, Trainer, VaeLatentModel};

use crate::args::{BenchArgs, BenchPhase};
use crate::config::RunConfig;
use crate::run_dir::write_json;
use crate::thread_governor::ThreadGovernor;
use crate::train_cmd::device;
use vae_model::cost;

/// `vae bench`.
pub fn run(args: BenchArgs) -> Result<()> {
    let device = device(&args.device)?;
    if let Some(n) = args.threads {
        tch::set_num_threads(n.max(1) as i32);
    }
    // As `vae train` and `vae eval` run: the thread count follows the machine's load unless
    // --threads fixes it.
    let mut governor = ThreadGovernor::new(args.threads);
    let mut out = match args.phase {
        BenchPhase::Matmul => matmul(device, args.matmul_size)?,
        phase => {
            let mut cfg = RunConfig::load(&args.config, &args.set)?;
            cfg.train.batch_size = args.batch;
            let mut trainer = build_trainer(&cfg, device, &args)?;
            let mut v = match phase {
                BenchPhase::Export => export(&trainer, &args)?,
                BenchPhase::Train => train(&mut trainer, &args, &mut governor)?,
                BenchPhase::Is => is(&trainer, &cfg, device, &args, &mut governor)?,
                BenchPhase::Ais => ais(&trainer, device, &args, &mut governor)?,
                BenchPhase::Matmul => unreachable!("handled above"),
            };
            v["config"] = cfg.name.clone().into();
            v["parameters"] = parameter_count(&trainer).into();
            v
        }
    };
    out["phase"] = format!("{:?}", args.phase).to_lowercase().into();
    out["implementation"] = "flowvae".into();
    out["device"] = args.device.clone().into();
    out["device_name"] = device_name(device).into();
    out["threads"] = tch::get_num_threads().into();
    out["thread_governor"] = governor.summary();
    out["libtorch"] = env!("FLOWVAE_LIBTORCH_VERSION").into();
    out["peak_rss_bytes"] = peak_rss_bytes().into();
    out["gpu_memory_mib"] = gpu_memory_mib(device).into();
    match &args.out {
        Some(path) => write_json(path, &out)?,
        None => println!("{}", serde_json::to_string_pretty(&out)?),
    }
    Ok(())
}

fn build_trainer(cfg: &RunConfig, device: Device, args: &BenchArgs) -> Result<Trainer> {
    let data = crate::train_cmd::load_dataset(&cfg.data, args.data_dir.clone())?;
    let mut trainer = Trainer::new(cfg.experiment(), data, device)?;
    if let Some(ck) = &args.checkpoint {
        trainer.load_checkpoint(ck)?;
    }
    Ok(trainer)
}

fn parameter_count(trainer: &Trainer) -> i64 {
    trainer
        .var_store()
        .trainable_variables()
        .iter()
        .map(|t| t.numel() as i64)
        .sum()
}

fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        0.5 * (s[n / 2 - 1] + s[n / 2])
    }
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// Grey levels or binarized pixels of the first `n` images as `[n, 1, 28, 28]` f32 in [0, 1].
fn export(trainer: &Trainer, args: &BenchArgs) -> Result<Value> {
    let Some(dir) = &args.export else {
        bail!("--phase export needs --export DIR");
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let model = dir.join("model.safetensors");
    trainer.save_checkpoint(&model)?;
    // The timed steps' images, in the order the trainer draws them in epoch 0.
    let train = trainer.split(SplitKind::Train);
    let steps = args.warmup + args.steps;
    let batches = vae_data::Batches::new(
        train,
        vae_data::BatchConfig {
            batch_size: args.batch,
            shuffle: true,
            drop_last: true,
            binarization: Binarization::None,
        },
        trainer.config().train.seed,
        Device::Cpu,
    )?;
    let mut grey = Vec::with_capacity(steps * args.batch * vae_data::IMAGE_PIXELS);
    for batch in batches.epoch(0).take(steps) {
        for &i in &batch.indices {
            grey.extend_from_slice(train.image(i));
        }
    }
    let test = trainer.split(SplitKind::Test);
    let n_test = args.images.min(test.len());
    let tensors = [
        (
            "train_grey".to_string(),
            Tensor::from_slice(&grey).view([-1, vae_data::IMAGE_PIXELS as i64]),
        ),
        (
            "test_bin".to_string(),
            Tensor::from_slice(&test.pixels[..n_test * vae_data::IMAGE_PIXELS])
                .view([n_test as i64, vae_data::IMAGE_PIXELS as i64]),
        ),
    ];
    let data = dir.join("data.safetensors");
    Tensor::write_safetensors(&tensors, &data)
        .with_context(|| format!("writing {}", data.display()))?;
    Ok(json!({
        "model": model.display().to_string(),
        "data": data.display().to_string(),
        "train_images": grey.len() / vae_data::IMAGE_PIXELS,
        "test_images": n_test,
    }))
}

fn train(trainer: &mut Trainer, args: &BenchArgs, governor: &mut ThreadGovernor) -> Result<Value> {
    let total = args.warmup + args.steps;
    if total > trainer.steps_per_epoch() {
        bail!(
            "--warmup + --steps = {total} is more than the {} steps of an epoch",
            trainer.steps_per_epoch()
        );
    }
    let stop = AtomicBool::new(false);
    let device = trainer.device();
    // Timed in a few repeats of several steps each: on CUDA a step's figures come back only
    // every few steps (the host does not wait for the GPU inside an epoch), so single steps
    // cannot be timed from the host; each `run_epoch` call ends by reading its steps back.
    let mut run_to = |trainer: &mut Trainer, step: usize| -> Result<f64> {
        let start = Instant::now();
        let outcome = trainer.run_epoch(&stop, Some(step as u64), |_| governor.tick())?;
        sync(device);
        if !matches!(outcome, EpochOutcome::Interrupted) {
            bail!("the benchmark epoch did not stop at the step limit");
        }
        Ok(start.elapsed().as_secs_f64() * 1e3)
    };
    let warmup_ms = run_to(trainer, args.warmup)?;
    let repeats = args.steps.clamp(1, 5);
    let mut done = args.warmup;
    let mut per_step = Vec::with_capacity(repeats);
    for r in 1..=repeats {
        let to = args.warmup + args.steps * r / repeats;
        if to > done {
            per_step.push(run_to(trainer, to)? / (to - done) as f64);
            done = to;
        }
    }
    let model = &trainer.config().model;
    let flops = cost::train_step_flops(model, args.batch);
    let med = median(&per_step);
    Ok(json!({
        "batch": args.batch,
        "warmup_steps": args.warmup,
        "steps": args.steps,
        "repeat_ms_per_step": per_step,
        "warmup_ms": warmup_ms,
        "median_ms": med,
        "flops_per_step": flops,
        "gflops_per_s": flops / med / 1e6,
    }))
}

fn is(
    trainer: &Trainer,
    cfg: &RunConfig,
    device: Device,
    args: &BenchArgs,
    governor: &mut ThreadGovernor,
) -> Result<Value> {
    let model = VaeLatentModel::new(trainer.vae(), device);
    let x = trainer
        .split(SplitKind::Test)
        .to_tensor(args.images, device);
    let n = x.size()[0] as usize;
    let max_rows = args
        .max_rows
        .unwrap_or_else(|| cost::is_max_rows(&cfg.model));
    let config = IsConfig {
        num_samples: args.k,
        max_rows: Some(max_rows),
        seed: 0,
        passes: IsPasses::Batched,
        replicates: None,
        first_example: 0,
    };
    // Warm-up at every shape of the timed run (allocator, kernels' first use, on a GPU lazy
    // module loading and cuBLAS heuristics, all paid per new shape), not at a smaller one.
    for images in is_warmup_images(n, config.chunk_shape().0) {
        let warm = x.narrow(0, 0, images as i64);
        vae_eval::importance_sampling(&model, &warm, &config, &mut |_, _| governor.tick())?;
    }
    sync(device);
    let start = Instant::now();
    let r = vae_eval::importance_sampling(&model, &x, &config, &mut |_, _| governor.tick())?;
    sync(device);
    let ms = start.elapsed().as_secs_f64() * 1e3;
    Ok(json!({
        "images": n,
        "k": args.k,
        "max_rows": max_rows,
        "bytes_per_row_estimate": cost::is_bytes_per_row(&cfg.model),
        "total_ms": ms,
        "ms_per_image": ms / n as f64,
        "nll": r.nll,
    }))
}

/// The image counts of the IS warm-up calls that together meet every chunk shape of a timed
/// call on `n` images, `per_chunk` images per chunk ([`IsConfig::chunk_shape`]): a full chunk,
/// and the last, shorter one when there is one. The reference (`flowvae_ref.py bench_is`) warms
/// up the same way.
fn is_warmup_images(n: usize, per_chunk: usize) -> Vec<usize> {
    let mut calls = vec![n.min(per_chunk)];
    if n > per_chunk && !n.is_multiple_of(per_chunk) {
        calls.push(n % per_chunk);
    }
    calls
}

fn ais(
    trainer: &Trainer,
    device: Device,
    args: &BenchArgs,
    governor: &mut ThreadGovernor,
) -> Result<Value> {
    let model = VaeLatentModel::new(trainer.vae(), device);
    let x = trainer
        .split(SplitKind::Test)
        .to_tensor(args.images, device);
    let n = x.size()[0];
    if args.anneal_steps < 3 {
        bail!("--anneal-steps must be at least 3 (one HMC move)");
    }
    let config = AisConfig {
        num_chains: args.chains,
        anneal_steps: args.anneal_steps,
        start: AisStart::Prior,
        hmc: HmcConfig {
            leapfrog_steps: args.leapfrog,
            ..Default::default()
        },
        seed: 0,
        ..Default::default()
    };
    // Warm-up: one HMC move on all the images, so at the timed run's shapes (see `is`).
    let warm = AisConfig {
        anneal_steps: 3,
        ..config.clone()
    };
    vae_eval::ais(&model, &x, &warm, &mut |_, _| governor.tick())?;
    sync(device);
    let start = Instant::now();
    let r = vae_eval::ais(&model, &x, &config, &mut |_, _| governor.tick())?;
    sync(device);
    let ms = start.elapsed().as_secs_f64() * 1e3;
    // One gradient of log p(x, z) at the shape AIS uses: [chains, images, D].
    let k = args.chains as i64;
    let z = Tensor::randn([k, n, model.latent_dim()], (Kind::Float, device));
    let grad_ms: Vec<f64> = tch::no_grad(|| {
        let _ = model.log_joint_and_grad(&x, &z);
        sync(device);
        (0..5)
            .map(|_| {
                let t = Instant::now();
                let (v, g) = model.log_joint_and_grad(&x, &z);
                drop((v, g));
                sync(device);
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect()
    });
    let grad = median(&grad_ms);
    let steps = args.anneal_steps;
    let gradients = (steps - 2) * args.leapfrog + 1;
    let pure = gradients as f64 * grad;
    Ok(json!({
        "images": n,
        "chains": args.chains,
        "leapfrog": args.leapfrog,
        "anneal_steps": steps,
        "moves": steps - 2,
        "total_ms": ms,
        "ms_per_image_per_100_steps": ms / n as f64 * 100.0 / (steps - 1) as f64,
        "gradient_ms": grad,
        "gradient_evaluations": gradients,
        "pure_gradient_ms": pure,
        "overhead_ratio": ms / pure,
        "nll": r.nll,
    }))
}

fn matmul(device: Device, n: i64) -> Result<Value> {
    let a = Tensor::randn([n, n], (Kind::Float, device));
    let b = Tensor::randn([n, n], (Kind::Float, device));
    let _ = a.matmul(&b);
    sync(device);
    let ms: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            let c = a.matmul(&b);
            sync(device);
            drop(c);
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let flops = 2.0 * (n as f64).powi(3);
    let best = ms.iter().copied().fold(f64::INFINITY, f64::min);
    Ok(json!({
        "size": n,
        "ms": ms,
        "peak_gflops_per_s": flops / best / 1e6,
        "median_gflops_per_s": flops / median(&ms) / 1e6,
    }))
}

/// Peak resident set size of this process (`VmHWM`), in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn nvidia_smi(args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("nvidia-smi")
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// GPU memory this process holds (the caching allocator keeps its peak reserved), in MiB, from
/// `nvidia-smi`; the whole card's use where the process is not listed (a PID namespace).
fn gpu_memory_mib(device: Device) -> Option<f64> {
    if !device.is_cuda() {
        return None;
    }
    let pid = std::process::id().to_string();
    let apps = nvidia_smi(&[
        "--query-compute-apps=pid,used_memory",
        "--format=csv,noheader,nounits",
    ])?;
    let own = apps.lines().find_map(|l| {
        let mut it = l.split(',').map(str::trim);
        (it.next()? == pid).then(|| it.next()?.parse::<f64>().ok())?
    });
    own.or_else(|| {
        nvidia_smi(&["--query-gpu=memory.used", "--format=csv,noheader,nounits"])?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    })
}

fn device_name(device: Device) -> String {
    if device.is_cuda() {
        if let Some(name) = nvidia_smi(&["--query-gpu=name", "--format=csv,noheader"]) {
            return name.lines().next().unwrap_or("").trim().to_string();
        }
        return "CUDA".into();
    }
    cpu_name(Path::new("/proc/cpuinfo"))
}

fn cpu_name(path: &Path) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "CPU".into())
}

#[cfg(test)]
mod tests {
    use super::is_warmup_images;
    use vae_eval::{IsConfig, IsPasses};

    #[test]
    fn is_warmup_meets_the_full_and_the_last_chunk() {
        let per_chunk = |k, max_rows| {
            let config = IsConfig {
                num_samples: k,
                max_rows: Some(max_rows),
                passes: IsPasses::Batched,
                ..Default::default()
            };
            config.chunk_shape().0
        };
        // 20 images per chunk: 100 images are 5 full chunks; 50 are 2 full and one of 10.
        assert_eq!(is_warmup_images(100, per_chunk(1000, 20_000)), vec![20]);
        assert_eq!(is_warmup_images(50, per_chunk(1000, 20_000)), vec![20, 10]);
        // Fewer images than a chunk: the timed call is one chunk of all of them.
        assert_eq!(is_warmup_images(7, per_chunk(1000, 20_000)), vec![7]);
        // k above max_rows: one image per chunk, its samples split inside the call.
        assert_eq!(is_warmup_images(100, per_chunk(1000, 600)), vec![1]);
        // k = max_rows: one image per chunk, whole.
        assert_eq!(is_warmup_images(3, per_chunk(1000, 1000)), vec![1]);
    }
}
