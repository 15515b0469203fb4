//! Command-line arguments: the "low" parsing stage, which checks only what the user typed.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use vae_data::{Binarization, DatasetKind, SplitKind};

/// Train and evaluate variational autoencoders with inverse autoregressive flows.
#[derive(Debug, Parser)]
#[command(name = "vae", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// CUDA only: let cuDNN time its convolution algorithms on the first batch of each shape
    /// and keep the fastest (`on`), or take its heuristic choice (`off`, PyTorch's default;
    /// on an H100 `on` gained nothing per training step and made ResNet IS 1.4x and AIS 1.7x
    /// slower, BENCHMARKS.md). CPU runs are unaffected
    #[arg(long, global = true, value_enum, default_value = "off")]
    pub cudnn_benchmark: Switch,
}

/// An on/off setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    /// Enabled
    On,
    /// Disabled
    Off,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inspect the installed datasets
    #[command(subcommand)]
    Data(DataCommand),
    /// Train a flow-VAE from a config file, or resume a run
    Train(TrainArgs),
    /// Estimate the log-likelihood of a trained run (IS, AIS or BDMC)
    Eval(EvalArgs),
    /// Merge the shard summaries of `vae eval --shard I/N` into the summary, CSV and plot that
    /// one unsharded `vae eval` writes
    EvalMerge(EvalMergeArgs),
    /// One measured phase of `cargo xtask bench` (JSON out)
    #[command(hide = true)]
    Bench(BenchArgs),
}

/// Log-likelihood estimators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EvalMethod {
    /// Importance sampling with the flow posterior as proposal
    Is,
    /// Annealed importance sampling with HMC transitions
    Ais,
    /// Bidirectional Monte Carlo on data simulated from the model: AIS lower and reverse-AIS upper bounds
    Bdmc,
}

/// Where AIS chains start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EvalStart {
    /// The prior N(0, I)
    Prior,
    /// The encoder's Gaussian base q0(z|x)
    Base,
    /// The full flow posterior q(z|x), annealing in the flow's base space
    Posterior,
}

/// `vae eval`
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Run folder written by `vae train`
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "model",
        conflicts_with = "model"
    )]
    pub run: Option<PathBuf>,
    /// A TorchScript module to evaluate instead of a run: methods log_likelihood(x, z), and
    /// optionally log_prior(z), sample_prior(n), propose(x, k) (for IS), sample_data(z) (for
    /// BDMC); see the README's "Evaluate your own model"
    #[arg(long, value_name = "FILE.pt", requires = "data")]
    pub model: Option<PathBuf>,
    /// With --model: the examples, a .npy (float32, float64 or uint8), .safetensors (tensor `x`
    /// or the only one) or IDX file of shape [N, ...]
    #[arg(long, value_name = "FILE", requires = "model")]
    pub data: Option<PathBuf>,
    /// With --model: binarize the data once (x = 1 with probability x, drawn from
    /// --binarize-seed, as flowvae's fixed splits), or take them as they are
    #[arg(long, value_enum, default_value = "none", requires = "model")]
    pub binarize: BinarizeArg,
    /// With --model --binarize fixed: the binarization's seed (recorded in the summary)
    #[arg(long, default_value_t = 0, requires = "model")]
    pub binarize_seed: u64,
    /// With --model: the latent size, when the module's sample_prior or propose cannot tell it
    /// (checked against them when they can)
    #[arg(long, requires = "model")]
    pub latent_dim: Option<i64>,
    /// Which checkpoint: best or last
    #[arg(long, default_value = "best")]
    pub checkpoint: String,
    /// Estimator
    #[arg(long, value_enum, default_value = "is")]
    pub method: EvalMethod,
    /// IS: importance samples per image [default: 1000]
    #[arg(long)]
    pub k: Option<usize>,
    /// IS: groups of samples whose spread gives the replicate-based Monte Carlo error
    /// [default: min(10, k/100), so each group keeps 100 samples or more]
    #[arg(long, value_name = "R")]
    pub replicates: Option<usize>,
    /// AIS/BDMC (and IS --reestimate-flagged): annealing steps (schedule points) [default: 2000]
    #[arg(long)]
    pub steps: Option<usize>,
    /// AIS/BDMC: chains per image [default: 8]
    #[arg(long)]
    pub chains: Option<usize>,
    /// AIS/BDMC: leapfrog steps per HMC move [default: 10]
    #[arg(long)]
    pub leapfrog: Option<usize>,
    /// AIS/BDMC: start distribution [default: prior]
    #[arg(long, value_enum)]
    pub start: Option<EvalStart>,
    /// AIS/BDMC: initial HMC step size [default: 0.01]
    #[arg(long)]
    pub step_size: Option<f64>,
    /// AIS/BDMC: which chains share an adapted step size (fixed: no adaptation) [default:
    /// global]
    #[arg(long, value_enum)]
    pub adaptation: Option<AdaptationArg>,
    /// AIS/BDMC: acceptance rate the step-size adaptation aims for, in (0, 1) [default: 0.65]
    #[arg(long)]
    pub target_acceptance: Option<f64>,
    /// AIS/BDMC: momentum kept across HMC moves, in [0, 1) (0: full refresh, the original;
    /// above 0: partial refresh, HAIS) [default: 0]
    #[arg(long)]
    pub momentum_refresh: Option<f64>,
    /// Split to evaluate: train, validation or test (fixed binarization)
    #[arg(long, default_value = "test")]
    pub split: SplitKind,
    /// Evaluate only the first N images of the split
    #[arg(long)]
    pub n: Option<usize>,
    /// Summary JSON [default: DIR/eval-<method>-<split>.json]; the CSV goes beside it
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Seed of the estimator's noise
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Memory budget: most rows per model call (IS: samples x images; AIS/BDMC: chains x
    /// images) [default: IS: what keeps one chunk's activations within 2 GiB for the
    /// architecture, at most 20000; AIS/BDMC: 3200]
    #[arg(long)]
    pub max_rows: Option<usize>,
    /// IS: also run a short AIS from the prior (300 steps, 8 chains) on every image and flag
    /// (`ais`) those where IS falls below it by more than twice their combined error
    #[arg(long)]
    pub check_with_ais: bool,
    /// IS: re-estimate the flagged images (k-hat, ESS, or below the AIS check) by a full AIS
    /// from the prior with the AIS flags (--steps, --chains, --leapfrog, ...), and report the
    /// NLL with their IS estimates replaced, beside the IS one
    #[arg(long)]
    pub reestimate_flagged: bool,
    /// Evaluate only the I-th of N contiguous slices of the images (1 <= I <= N; for AIS and
    /// BDMC cut at whole groups of images that share a step size), writing
    /// DIR/shards/eval-<method>-<split>/shard-I-of-N.json unless --out says otherwise; each
    /// image gets the estimate an unsharded run gives it. `vae eval-merge` joins the shards
    #[arg(long, value_name = "I/N", value_parser = parse_shard)]
    pub shard: Option<Shard>,
    /// IS layout: batched, or the original's one sample per pass with the encoder re-run every
    /// pass (same estimates, for measuring the speed-up; pair it with --max-rows 200) [default:
    /// batched]
    #[arg(long, value_enum)]
    pub passes: Option<IsPassesArg>,
    /// cpu, cuda or cuda:N
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// libtorch threads
    #[arg(long)]
    pub threads: Option<usize>,
    /// Data folder (default: $FLOWVAE_DATA, else $FLOWVAE_CACHE/data, else ~/.cache/flowvae/data)
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// `--shard I/N`: the `index`-th (from 1) of `count` slices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// `I`, from 1 to `count`.
    pub index: usize,
    /// `N`, at least 1.
    pub count: usize,
}

/// Parses `I/N` with `1 <= I <= N`.
fn parse_shard(s: &str) -> Result<Shard, String> {
    let bad = || format!("`{s}` is not I/N with 1 <= I <= N (e.g. 2/8)");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let index: usize = i.trim().parse().map_err(|_| bad())?;
    let count: usize = n.trim().parse().map_err(|_| bad())?;
    if index == 0 || index > count {
        return Err(bad());
    }
    Ok(Shard { index, count })
}

impl EvalArgs {
    /// The flags set that `--method` does not use, as `(flag, the method family it belongs
    /// to)`: IS flags with AIS or BDMC, and AIS flags with IS unless `--reestimate-flagged` uses
    /// them.
    pub fn unused_flags(&self) -> Vec<(&'static str, &'static str)> {
        let is = [
            ("--k", self.k.is_some()),
            ("--replicates", self.replicates.is_some()),
            ("--passes", self.passes.is_some()),
        ];
        let ais = [
            ("--steps", self.steps.is_some()),
            ("--chains", self.chains.is_some()),
            ("--leapfrog", self.leapfrog.is_some()),
            ("--start", self.start.is_some()),
            ("--step-size", self.step_size.is_some()),
            ("--adaptation", self.adaptation.is_some()),
            ("--target-acceptance", self.target_acceptance.is_some()),
            ("--momentum-refresh", self.momentum_refresh.is_some()),
        ];
        let set = |flags: &[(&'static str, bool)], family: &'static str| {
            flags
                .iter()
                .filter(|(_, on)| *on)
                .map(|(f, _)| (*f, family))
                .collect::<Vec<_>>()
        };
        match self.method {
            EvalMethod::Is if self.reestimate_flagged => Vec::new(),
            EvalMethod::Is => set(
                &ais,
                "an AIS/BDMC setting (with IS, only --reestimate-flagged uses it)",
            ),
            EvalMethod::Ais | EvalMethod::Bdmc => set(&is, "an importance-sampling setting"),
        }
    }
}

impl Shard {
    /// The slice `(first, len)` of `n` images that this shard evaluates: the images are cut
    /// into `⌈n / align⌉` units of `align` (the last may be shorter), and shard `I` takes the
    /// units `⌊(I−1)·U/N⌋ .. ⌊I·U/N⌋`. Errors when a shard would be empty.
    pub fn slice(&self, n: usize, align: usize) -> Result<(usize, usize), String> {
        let align = align.max(1);
        let units = n.div_ceil(align);
        if self.count > units {
            return Err(format!(
                "--shard {}/{}: {n} images make only {units} unit(s) of {align} image(s) (AIS \
                 and BDMC cut at whole groups of images that share a step size), so some of \
                 {} shards would be empty; use at most {units} shards",
                self.index, self.count, self.count
            ));
        }
        let unit = |i: usize| ((i * units / self.count) * align).min(n);
        let first = unit(self.index - 1);
        Ok((first, unit(self.index) - first))
    }
}

/// `vae eval-merge`
#[derive(Debug, Args)]
pub struct EvalMergeArgs {
    /// Shard summaries (shard-I-of-N.json) or folders holding them
    #[arg(required = true, value_name = "SHARD")]
    pub shards: Vec<PathBuf>,
    /// Folder for the merged eval-<method>-<split>.json, .csv and .png [default: the run folder
    /// the shards evaluated]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// `vae eval --model --binarize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BinarizeArg {
    /// Bernoulli draws, once, from --binarize-seed
    Fixed,
    /// The values as they are
    None,
}

/// Which AIS chains share an adapted HMC step size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AdaptationArg {
    /// One step size for all chains of a group of images (the original)
    Global,
    /// One per image, shared by its chains
    PerExample,
    /// One per chain
    PerChain,
    /// No adaptation: every move uses --step-size
    Fixed,
}

/// How IS lays its samples out in forward passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IsPassesArg {
    /// Encode once, then all samples of many images per pass
    Batched,
    /// The original's structure: one sample of each of --max-rows images per pass
    OneSample,
}

/// What `vae bench` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchPhase {
    /// Write the initial checkpoint and the batches for the PyTorch reference
    Export,
    /// Training steps
    Train,
    /// Importance sampling
    Is,
    /// AIS, and one gradient of log p(x, z) at its shape
    Ais,
    /// libtorch's f32 matrix-product peak
    Matmul,
}

/// `vae bench` (hidden; driven by `cargo xtask bench`)
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Run config (JSON)
    #[arg(
        long,
        value_name = "FILE",
        default_value = "configs/mnist-mlp-iaf-cpu.json"
    )]
    pub config: PathBuf,
    /// Override a config value (repeatable)
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// What to measure
    #[arg(long, value_enum)]
    pub phase: BenchPhase,
    /// cpu, cuda or cuda:N
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// libtorch threads
    #[arg(long)]
    pub threads: Option<usize>,
    /// Training batch size
    #[arg(long, default_value_t = 200)]
    pub batch: usize,
    /// Untimed steps before the timed ones
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Timed training steps
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Test images for IS and AIS
    #[arg(long, default_value_t = 10)]
    pub images: usize,
    /// IS samples per image
    #[arg(long, default_value_t = 1000)]
    pub k: usize,
    /// IS rows per model call [default: as `vae eval`]
    #[arg(long)]
    pub max_rows: Option<usize>,
    /// AIS schedule points
    #[arg(long, default_value_t = 101)]
    pub anneal_steps: usize,
    /// AIS chains per image
    #[arg(long, default_value_t = 8)]
    pub chains: usize,
    /// AIS leapfrog steps per move
    #[arg(long, default_value_t = 10)]
    pub leapfrog: usize,
    /// Matrix size of the matmul peak
    #[arg(long, default_value_t = 2048)]
    pub matmul_size: i64,
    /// Start from this checkpoint instead of the config's seeded initialisation
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// export: the folder for model.safetensors and data.safetensors
    #[arg(long, value_name = "DIR")]
    pub export: Option<PathBuf>,
    /// JSON result file [default: stdout]
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Data folder (default: $FLOWVAE_DATA, else $FLOWVAE_CACHE/data, else ~/.cache/flowvae/data)
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// `vae train`
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Run config (JSON); see configs/ for examples
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Override a config value, e.g. --set train.epochs=10 --set model.flow=null (repeatable)
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Run folder [default: runs/<name>]
    #[arg(long, value_name = "DIR", conflicts_with = "resume")]
    pub out: Option<PathBuf>,
    /// Continue the run in DIR from its last checkpoint (same warm-up, LR, step and data order)
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// Resume even though --config/--set differ from the run's config
    #[arg(long)]
    pub force: bool,
    /// cpu, cuda or cuda:N
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// libtorch threads [default: libtorch's choice, one per core]
    #[arg(long)]
    pub threads: Option<usize>,
    /// Stop (with a checkpoint) after this many optimizer steps in total
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Data folder (default: $FLOWVAE_DATA, else $FLOWVAE_CACHE/data, else ~/.cache/flowvae/data)
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Check the config (every key and value, the model's shapes, the memory the run needs) and
    /// exit, writing nothing; what `cargo xtask sweep` runs for every run of a plan
    #[arg(long, conflicts_with_all = ["resume", "out", "max_steps"])]
    pub check: bool,
}

/// `vae data ...`
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Print counts per split, mean pixel value and the label histogram
    Info(DataInfo),
    /// Write a PNG grid of the first 100 images of a split
    Grid(DataGrid),
}

/// Which dataset and how it is split.
#[derive(Debug, Args)]
pub struct DataSource {
    /// Dataset to read
    #[arg(long, default_value = "mnist")]
    pub dataset: DatasetKind,
    /// Training images held out for validation, taken from the end of the training file
    #[arg(long, default_value_t = 10_000)]
    pub validation: usize,
    /// Data folder (default: $FLOWVAE_DATA, else $FLOWVAE_CACHE/data, else ~/.cache/flowvae/data)
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// `vae data info`
#[derive(Debug, Args)]
pub struct DataInfo {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub source: DataSource,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

/// `vae data grid`
#[derive(Debug, Args)]
pub struct DataGrid {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub source: DataSource,
    /// Split to draw from: train, validation or test
    #[arg(long, default_value = "test")]
    pub split: SplitKind,
    /// Binarization: dynamic, fixed, static or none (grey levels)
    #[arg(long, default_value = "fixed")]
    pub binarize: Binarization,
    /// Seed of the Bernoulli draws
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output PNG file
    #[arg(long)]
    pub out: PathBuf,
}

/// Parses `std::env::args`, exiting with clap's message on bad input.
pub fn parse() -> Cli {
    Cli::parse()
}
