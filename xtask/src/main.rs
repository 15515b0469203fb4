//! `cargo xtask <command>`: bootstrap and test flowvae on a fresh machine.

use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use xtask::bootstrap::{self, Layout};

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
    /// Bootstrap, then run every test of the workspace (extra arguments go to `cargo test`)
    Test {
        /// Passed to `cargo test` after `--workspace`
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
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
        Cmd::Test { args } => {
            bootstrap::run(&layout)?;
            cargo(
                &root,
                &[
                    &["test", "--workspace"][..],
                    &args.iter().map(String::as_str).collect::<Vec<_>>(),
                ]
                .concat(),
            )
        }
    }
}

/// Runs the cargo that runs us, in the repo root so `.cargo/config.toml` applies.
fn cargo(root: &std::path::Path, args: &[&str]) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(&cargo)
        .args(args)
        .current_dir(root)
        .status()
        .with_context(|| format!("starting cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}
