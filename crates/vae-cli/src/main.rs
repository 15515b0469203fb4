//! `vae`: the flowvae command line. A thin layer over the library crates (ripgrep style): it parses
//! arguments, reads and writes files, and reports errors; the maths lives in the libraries.

use std::process::ExitCode;

/// jemalloc serves every allocation of the process, libtorch's too (see Cargo.toml).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod args;
mod bench_cmd;
mod config;
mod cost;
mod data_cmd;
mod eval_cmd;
mod pictures;
mod run_dir;
mod train_cmd;

fn main() -> ExitCode {
    passive_openmp();
    match run(args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: args::Cli) -> anyhow::Result<()> {
    match cli.command {
        args::Command::Data(cmd) => data_cmd::run(cmd),
        args::Command::Train(a) => train_cmd::run(a),
        args::Command::Eval(a) => eval_cmd::run(a),
        args::Command::Bench(a) => bench_cmd::run(a),
    }
}

/// Re-executes the binary once with `OMP_WAIT_POLICY=passive` unless the variable is set.
///
/// libtorch's OpenMP (libgomp) workers spin between parallel regions by default; as soon as
/// anything else wants the cores (the data loader's threads, another process) a spinning worker
/// holds a core that a working one needs, and a training step took 3 to 10 times longer on a
/// loaded 2-core machine (cargo xtask bench). libgomp reads the policy when it loads, before
/// `main`, hence the re-execution.
fn passive_openmp() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("OMP_WAIT_POLICY").is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("OMP_WAIT_POLICY", "passive")
        .exec();
    eprintln!("warning: could not re-execute with OMP_WAIT_POLICY=passive ({err}); continuing");
}
