//! `cargo xtask <command>`: bootstrap and test flowvae on a fresh machine, train the default
//! model, run sweeps.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use xtask::bootstrap::{self, Layout};
use xtask::cargo;
use xtask::sweep;

mod eval;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "flowvae project automation")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what is missing: libtorch 2.11.0, MNIST (and Fashion-MNIST when apt is usable)
    Bootstrap,
    /// Bootstrap, train the default CPU model (configs/mnist-mlp-iaf-cpu.json), then evaluate
    /// its test NLL by importance sampling (k = 1000) and print a summary
    Train {
        /// Run config
        #[arg(long, default_value = "configs/mnist-mlp-iaf-cpu.json")]
        config: String,
        /// Run folder [default: runs/<config file stem>]
        #[arg(long)]
        out: Option<String>,
        /// Extra `vae train` arguments, e.g. `-- --set train.epochs=5`
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run a sweep file (configs/sweeps/*.json) here or on Slurm, resumably, and summarise it in
    /// summary.md, summary.csv and summary.png
    Sweep {
        /// Sweep file
        file: PathBuf,
        /// Where the runs execute
        #[arg(long, value_enum, default_value = "local")]
        backend: BackendArg,
        /// Local: runs at a time [default: the sweep file's `jobs`, else 1]. Slurm: most array
        /// tasks at a time [default: no limit]
        #[arg(long)]
        jobs: Option<usize>,
        /// Local: libtorch threads per run [default: cores / jobs]
        #[arg(long)]
        threads: Option<usize>,
        /// Print the runs (and the Slurm script) without starting anything
        #[arg(long)]
        dry_run: bool,
        /// Output folder [default: runs/sweeps/<sweep name>]
        #[arg(long)]
        out: Option<PathBuf>,
        /// The `vae` binary the runs use, as it is [default: target/release/vae, built first]
        #[arg(long)]
        vae: Option<PathBuf>,
    },
    /// Evaluate a trained run as an eval file (configs/eval/*.json) says: each evaluation cut
    /// into shards run here or as a Slurm array, resumably, then merged into the run folder's
    /// eval-<method>-<split>.json/.csv as one unsharded `vae eval` writes them
    Eval {
        /// Eval file
        file: PathBuf,
        /// Where the shards execute
        #[arg(long, value_enum, default_value = "local")]
        backend: BackendArg,
        /// Shards per evaluation [default: the file's `shards`; an evaluation's own `shards`
        /// wins]
        #[arg(long)]
        shards: Option<usize>,
        /// Local: shards at a time [default: the file's `jobs`, else 1]. Slurm: most array tasks
        /// of one evaluation at a time [default: no limit]
        #[arg(long)]
        jobs: Option<usize>,
        /// Local: libtorch threads per shard [default: cores / jobs]
        #[arg(long)]
        threads: Option<usize>,
        /// Print the shards, commands (and Slurm scripts) without starting anything
        #[arg(long)]
        dry_run: bool,
        /// The `vae` binary the shards use, as it is [default: target/release/vae, built first]
        #[arg(long)]
        vae: Option<PathBuf>,
    },
    /// Benchmark flowvae beside its PyTorch reference; writes BENCHMARKS.md and BENCHMARKS.json
    Bench {
        /// Few repeats and images on the heavy rows (a few minutes on 2 cores)
        #[arg(long)]
        quick: bool,
        /// cpu or cuda
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Threads for both implementations [default: all cores]
        #[arg(long)]
        threads: Option<usize>,
        /// Only rows whose key contains this (cpu-default, seed-mlp, seed-gatedconv, seed-resnet);
        /// the other rows of BENCHMARKS.md keep their figures from the last run on the same setup
        #[arg(long)]
        only: Vec<String>,
        /// Rounds per phase, flowvae and PyTorch alternating; the ratio is the rounds' median
        /// [default: 2 with --quick, else 3]
        #[arg(long)]
        rounds: Option<usize>,
        /// Build target/gpu-kit for scripts/gpu-check.sh instead of benchmarking
        #[arg(long)]
        gpu_kit: bool,
        /// Rewrite BENCHMARKS.md from BENCHMARKS.json and benches/gpu-results.json only
        #[arg(long)]
        render_only: bool,
    },
    /// Bootstrap, then run every test of the workspace (extra arguments go to `cargo test`)
    Test {
        /// Passed to `cargo test` after `--workspace`
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// Where the runs execute (`vae_sweep::Backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    /// On this machine, `--jobs` runs at a time
    Local,
    /// As one Slurm array job (sbatch), one task per run
    Slurm,
}

impl From<BackendArg> for vae_sweep::Backend {
    fn from(b: BackendArg) -> Self {
        match b {
            BackendArg::Local => vae_sweep::Backend::Local,
            BackendArg::Slurm => vae_sweep::Backend::Slurm,
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let root = xtask::project_root();
    let layout = Layout::new(root.clone())?;
    match cli.command {
        Cmd::Bootstrap => bootstrap::run(&layout),
        Cmd::Train { config, out, args } => train(&root, &layout, &config, out, &args),
        Cmd::Sweep {
            file,
            backend,
            jobs,
            threads,
            dry_run,
            out,
            vae,
        } => sweep::run(
            &root,
            &file,
            &sweep::Options {
                backend: match backend {
                    BackendArg::Local => vae_sweep::Backend::Local,
                    BackendArg::Slurm => vae_sweep::Backend::Slurm,
                },
                jobs,
                threads,
                dry_run,
                out,
                vae,
            },
        ),
        Cmd::Eval {
            file,
            backend,
            shards,
            jobs,
            threads,
            dry_run,
            vae,
        } => eval::run(
            &root,
            &file,
            &eval::Options {
                backend: backend.into(),
                shards,
                jobs,
                threads,
                dry_run,
                vae,
            },
        ),
        Cmd::Bench {
            quick,
            device,
            threads,
            only,
            rounds,
            gpu_kit,
            render_only,
        } => xtask::bench::run(
            &root,
            &layout,
            &xtask::bench::Options {
                quick,
                device,
                threads,
                only,
                rounds,
                gpu_kit,
                render_only,
            },
        ),
        Cmd::Test { args } => {
            bootstrap::run(&layout)?;
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            cargo(&root, &[&["test", "--workspace"][..], &args].concat())?;
            ignored_tests(&root, &layout, &args)
        }
    }
}

/// Runs the `#[ignore]`d tests whose needs this machine meets, and says which it leaves and
/// why: the real-Slurm sweep and sharded evaluation (where `scripts/slurm-start.sh` can start
/// Slurm: root with apt) and the PyTorch reference's ELBO (where `cargo xtask bench` installed
/// an importable torch).
fn ignored_tests(root: &std::path::Path, layout: &Layout, extra: &[&str]) -> Result<()> {
    let mut left = Vec::new();
    let slurm = std::process::Command::new("bash")
        .arg(root.join("scripts/slurm-start.sh"))
        .output()
        .context("running scripts/slurm-start.sh")?;
    match slurm.status.code() {
        Some(0) => {
            // --workspace, as in the first pass: the same feature resolution, so nothing rebuilds.
            // The sweep's and the sharded evaluation's tests on the real Slurm.
            let tests = ["--test", "sweep_slurm", "--test", "eval_shards"];
            let args = [&["test", "--workspace"][..], &tests, extra];
            cargo(root, &[&args.concat()[..], &["--", "--ignored"]].concat())?;
        }
        // 77: Slurm is absent and cannot be installed here (not root, or no apt).
        Some(77) => {
            let why = String::from_utf8_lossy(&slurm.stderr);
            let why = why
                .trim()
                .lines()
                .last()
                .unwrap_or("no reason given")
                .to_string();
            left.push(format!("sweep_slurm and eval_shards (need Slurm: {why})"));
        }
        _ => bail!(
            "scripts/slurm-start.sh failed ({}):\n{}",
            slurm.status,
            String::from_utf8_lossy(&slurm.stderr)
        ),
    }
    if xtask::bench::torch_python_ready(layout).is_some() {
        let args = [
            &["test", "--workspace", "--test", "bench_reference"][..],
            extra,
        ];
        cargo(root, &[&args.concat()[..], &["--", "--ignored"]].concat())?;
    } else {
        left.push(
            "bench_reference (needs an importable torch 2.11.0, which `cargo xtask bench` \
             installs)"
                .to_string(),
        );
    }
    for t in left {
        eprintln!("xtask test: not run here: {t}");
    }
    Ok(())
}

/// `cargo xtask train`: resumable; a finished run is only evaluated again.
fn train(
    root: &std::path::Path,
    layout: &Layout,
    config: &str,
    out: Option<String>,
    extra: &[String],
) -> Result<()> {
    let start = std::time::Instant::now();
    bootstrap::run(layout)?;
    cargo(root, &["build", "--release", "--quiet", "-p", "vae-cli"])?;
    let vae = root.join("target/release/vae");
    let stem = std::path::Path::new(config)
        .file_stem()
        .with_context(|| format!("--config {config}: not a file name"))?
        .to_string_lossy()
        .into_owned();
    let out = root.join(out.unwrap_or_else(|| format!("runs/{stem}")));
    let out_s = out.to_string_lossy().into_owned();
    let run = vae_io::RunDir::new(&out);
    if run.results().exists() {
        eprintln!("xtask: {out_s} is already trained; evaluating it again");
    } else if run.config().exists() {
        eprintln!("xtask: resuming the unfinished run in {out_s}");
        run_vae(
            root,
            &vae,
            &[&["train", "--resume", &out_s][..], &strs(extra)].concat(),
        )?;
    } else {
        run_vae(
            root,
            &vae,
            &[
                &["train", "--config", config, "--out", &out_s][..],
                &strs(extra),
            ]
            .concat(),
        )?;
    }
    let trained = start.elapsed().as_secs_f64();
    if !run.results().exists() {
        bail!("training stopped before the end; run `cargo xtask train` again to continue it");
    }
    run_vae(
        root,
        &vae,
        &[
            "eval", "--run", &out_s, "--method", "is", "--k", "1000", "--split", "test",
        ],
    )?;
    let total = start.elapsed().as_secs_f64();
    let manifest = read_json(&run.manifest());
    let step_ms = manifest["ms_per_step"].as_f64();
    let batch = read_json(&run.config())["train"]["batch_size"]
        .as_u64()
        .and_then(|b| usize::try_from(b).ok());
    // On a quiet machine, after the run: the speed this user gets beside PyTorch's, where the
    // run trained on the CPU.
    let side_by_side = match (manifest["device"].as_str(), batch) {
        (Some("Cpu"), Some(batch)) => xtask::bench::step_side_by_side(root, layout, config, batch)
            .unwrap_or_else(|e| {
                eprintln!("xtask: the side-by-side step measurement failed: {e:#}");
                None
            }),
        _ => None,
    };
    let results = run.read_results()?;
    let is = run.read_eval("is", "test")?;
    let nan = f64::NAN;
    println!();
    println!("flowvae: {stem}");
    match results.best_epoch {
        Some(epoch) => println!("  best epoch            {epoch}"),
        None => println!("  best epoch            none (no validation split)"),
    }
    if let Some(v) = &results.validation {
        println!("  validation -ELBO      {:.3} nats", v.neg_elbo);
    }
    println!("  test -ELBO            {:.3} nats", results.test.neg_elbo);
    println!(
        "  test NLL (IS, k=1000) {:.3} +- {:.3} nats on {} images",
        is.nll().unwrap_or(nan),
        is.nll_stderr().unwrap_or(nan),
        is.images
    );
    match step_ms {
        Some(ms) => {
            println!("  training step         {ms:.1} ms (mean over this run's last session)")
        }
        None => println!("  training step         – (no ms_per_step in the run's manifest)"),
    }
    match &side_by_side {
        Some((ours, theirs)) => {
            let f = |v: &serde_json::Value| v["median_ms"].as_f64();
            match (f(ours), f(theirs)) {
                (Some(a), Some(b)) => println!(
                    "  measured just now     flowvae {a:.1} ms, PyTorch {b:.1} ms per step \
                     (each with its defaults, same model, batches and batch size): ratio {:.2}",
                    a / b
                ),
                _ => println!("  measured just now     failed: see target/bench/train-speed/*.log"),
            }
        }
        None => println!(
            "  PyTorch's step        not measured (needs torch 2.11.0: `cargo xtask bench` \
             installs it)"
        ),
    }
    println!(
        "  wall time             {:.1} min (training {:.1} min)",
        total / 60.0,
        trained / 60.0
    );
    println!("  run folder            {out_s}");
    Ok(())
}

/// A JSON file of the run folder (its manifest or resolved config), `Null` when it cannot be read:
/// the figures taken from it are then reported as missing.
fn read_json(path: &std::path::Path) -> serde_json::Value {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn run_vae(root: &std::path::Path, vae: &std::path::Path, args: &[&str]) -> Result<()> {
    let status = Command::new(vae)
        .args(args)
        .current_dir(root)
        .status()
        .with_context(|| format!("starting {}", vae.display()))?;
    if !status.success() {
        bail!("vae {} failed ({status})", args.join(" "));
    }
    Ok(())
}
