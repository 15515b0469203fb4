//! `vae`: the flowvae command line. A thin layer over the library crates (ripgrep style): it parses
//! arguments, reads and writes files, and reports errors; the maths lives in the libraries.

use std::process::ExitCode;

/// jemalloc serves every allocation of the process, libtorch's too (see Cargo.toml).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod args;
mod bench_cmd;
mod board;
mod data_cmd;
mod eval_cmd;
mod eval_merge;
mod eval_module;
mod iwae_plot;
mod memory;
mod pictures;
mod run_dir;
mod thread_governor;
mod train_cmd;

/// The run config, shared with the library target (the fuzzers read configs through it).
use vae_cli::config;

fn main() -> ExitCode {
    early_env();
    match run(args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: args::Cli) -> anyhow::Result<()> {
    // A flag in libtorch's global context, read when a convolution first runs on CUDA
    // (measured both ways on an H100: BENCHMARKS.md).
    tch::Cuda::cudnn_set_benchmark(cli.cudnn_benchmark == args::Switch::On);
    match cli.command {
        args::Command::Data(cmd) => data_cmd::run(cmd),
        args::Command::Train(a) => train_cmd::run(a),
        args::Command::Eval(a) => eval_cmd::run(a),
        args::Command::EvalMerge(a) => eval_merge::run(a),
        args::Command::Bench(a) => bench_cmd::run(a),
    }
}

/// Settings read by libraries before `main` can run, each applied only when the variable is
/// unset (a user's value wins), as `(variable, value)`:
///
/// - `MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1`: jemalloc (the global allocator, see
///   Cargo.toml) otherwise hands freed pages back to the kernel within seconds, and every step
///   page-faults its activations back in: the original MLP config's CPU step went from 1.85 s to
///   0.90 s with this. The process keeps its peak memory instead (about the same peak RSS).
///
/// `OMP_WAIT_POLICY` is left to libgomp's default (workers spin a few milliseconds between
/// parallel regions, fastest on an idle machine); what protects a step beside busy processes
/// is the thread governor (`thread_governor.rs`), which gives up the cores they take.
const EARLY_ENV: [(&str, &str); 1] = [("MALLOC_CONF", "dirty_decay_ms:-1,muzzy_decay_ms:-1")];

/// Re-executes the binary once with [`EARLY_ENV`] where those variables are unset: libgomp and
/// jemalloc read them when they load, before `main`.
fn early_env() {
    use std::os::unix::process::CommandExt;
    let missing: Vec<_> = EARLY_ENV
        .iter()
        .filter(|(k, _)| std::env::var_os(k).is_none())
        .collect();
    if missing.is_empty() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.args(std::env::args_os().skip(1));
    for (k, v) in missing {
        cmd.env(k, v);
    }
    let err = cmd.exec();
    eprintln!("warning: could not re-execute with {EARLY_ENV:?} ({err}); continuing");
}
