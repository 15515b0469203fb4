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
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inspect the installed datasets
    #[command(subcommand)]
    Data(DataCommand),
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
