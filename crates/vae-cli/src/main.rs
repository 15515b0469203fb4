//! `vae`: the flowvae command line. A thin layer over the library crates (ripgrep style): it parses
//! arguments, reads and writes files, and reports errors; the maths lives in the libraries.

use std::process::ExitCode;

mod args;
mod config;
mod data_cmd;
mod eval_cmd;
mod pictures;
mod run_dir;
mod train_cmd;

fn main() -> ExitCode {
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
    }
}
