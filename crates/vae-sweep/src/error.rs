//! The crate's error types: [`Error`] for everything a sweep can run into, [`SpecError`] for
//! what is wrong with a sweep file.
//!
//! Every message is complete on its own (`{}` shows the file, the key and the bad value); the
//! underlying I/O or JSON error is part of the message rather than a separate `source`, so that
//! printing the chain (anyhow's `{:#}`) does not repeat it.

use std::path::PathBuf;
use std::process::ExitStatus;

/// What is wrong with a sweep file: a key with a bad value, an unknown or missing key, or
/// settings that contradict each other. Keys are named by their path in the file
/// (`variants[1].set`, `grid.model.latent`, `slurm.extra[0]`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// A value of the wrong type or range, an unknown key or a malformed config key, as the
    /// parser found it: `key` is its path in the file (empty for the top level), `message` says
    /// what was found and what is valid (with the line and column when parsed from text).
    #[error("{}{message}", key_prefix(key))]
    Invalid {
        /// Path of the key, e.g. `seeds[1]`.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The text is not JSON.
    #[error("not valid JSON: {error}")]
    NotJson {
        /// serde_json's reason, with line and column.
        error: serde_json::Error,
    },
    /// No `base`.
    #[error("missing key `base`: the run config every run starts from")]
    MissingBase,
    /// A variant without `set`.
    #[error("`variants[{index}]`: missing key `set` (the variant's overrides)")]
    MissingVariantSet {
        /// Position in `variants`.
        index: usize,
    },
    /// A `name` that cannot be a folder name.
    #[error("`name`: {name:?} must not contain `/` or start with `.`")]
    BadName {
        /// The name.
        name: String,
    },
    /// `base` names no file.
    #[error("`base`: {} does not exist", path.display())]
    BaseNotFound {
        /// The path, resolved against the sweep file's folder.
        path: PathBuf,
    },
    /// `base` exists but cannot be resolved to an absolute path.
    #[error("`base`: resolving {}: {error}", path.display())]
    BaseUnresolved {
        /// The path, resolved against the sweep file's folder.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A seed listed twice.
    #[error("`seeds`: seed {seed} is listed twice")]
    SeedTwice {
        /// The seed.
        seed: u64,
    },
    /// `eval.k` with a method other than `is`.
    #[error("`eval.k`: only the \"is\" method takes k; give AIS settings in `eval.args`")]
    KWithoutIs,
    /// `x_key` names no grid key.
    #[error("`x_key`: `{key}` is not a key of `grid`")]
    XKeyNotInGrid {
        /// The key.
        key: String,
    },
    /// `x_key` names a grid key with values that are not all numbers.
    #[error("`x_key`: the values of `grid.{key}` are not all numbers")]
    XKeyNotNumeric {
        /// The key.
        key: String,
    },
    /// A config key set in two places (`set`, `variants`, `grid`, `seeds`).
    #[error("`{place}`: `{key}` is also set in `{other}`; set each key in one place")]
    SetTwice {
        /// Where it is set the second time.
        place: &'static str,
        /// The config key.
        key: String,
        /// Where it is set first.
        other: &'static str,
    },
    /// A config key inside another that a different place sets (`model.flow.layers` in the
    /// grid, `model.flow` in `set`).
    #[error("`{place}`: `{key}` lies inside `{outer}`, which `{outer_place}` sets; set them in one place")]
    SetInside {
        /// Where the inner key is set.
        place: &'static str,
        /// The inner key.
        key: String,
        /// The outer key.
        outer: String,
        /// Where the outer key is set.
        outer_place: &'static str,
    },
    /// More runs than [`crate::spec::MAX_RUNS`].
    #[error(
        "the sweep has {} runs: {}, more than the {max} a sweep may hold; split it into several \
         sweep files",
        runs.map_or_else(|| "too many".to_string(), |n| n.to_string()),
        factors.iter().map(|(what, n)| format!("{n} ({what})")).collect::<Vec<_>>().join(" x ")
    )]
    TooManyRuns {
        /// The number of runs (`None` when it overflows).
        runs: Option<usize>,
        /// Its factors: `variants`, each grid key, `seeds`, with their lengths.
        factors: Vec<(String, usize)>,
        /// The limit.
        max: usize,
    },
    /// Two runs whose overrides give the same folder name.
    #[error(
        "runs {first} and {second} would share the folder `{name}`: give the variants distinct \
         labels or values"
    )]
    SharedFolder {
        /// Index of the first run.
        first: usize,
        /// Index of the second run.
        second: usize,
        /// The folder name.
        name: String,
    },
}

fn key_prefix(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!("`{key}`: ")
    }
}

/// Everything that can go wrong while planning, running or summarising a sweep.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The sweep file could not be read.
    #[error("reading sweep file {}: {error}", path.display())]
    Read {
        /// The sweep file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The sweep file is not JSON.
    #[error("sweep file {} is not valid JSON: {error}", path.display())]
    NotJson {
        /// The sweep file.
        path: PathBuf,
        /// serde_json's reason, with line and column.
        error: serde_json::Error,
    },
    /// The sweep file is JSON but not a valid sweep.
    #[error("sweep file {}: {error}", path.display())]
    Spec {
        /// The sweep file.
        path: PathBuf,
        /// What is wrong, naming the key.
        error: SpecError,
    },
    /// An option of the command that must be at least 1 is 0 (`--jobs 0`).
    #[error("{option} 0: expected at least 1")]
    Zero {
        /// The option, e.g. `--jobs`.
        option: &'static str,
    },
    /// The current folder could not be read (paths on the command line are relative to it).
    #[error("reading the current folder: {error}")]
    CurrentDir {
        /// Why.
        error: std::io::Error,
    },
    /// A file or folder operation failed.
    #[error("{action} {}: {error}", path.display())]
    Io {
        /// What was being done, e.g. `creating`.
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// An atomic write (plan, script, summary) failed.
    #[error("{0}")]
    Write(Box<vae_io::Error>),
    /// The summary plot could not be encoded or written.
    #[error("writing the plot {}: {error}", path.display())]
    Plot {
        /// `summary.png`.
        path: PathBuf,
        /// Why.
        error: Box<vae_io::Error>,
    },
    /// `vae train --check` refused the config of one or more runs ([`crate::validate`]).
    #[error("{message}")]
    InvalidRuns {
        /// The count, and each refused run with `vae`'s reason.
        message: String,
    },
    /// A program could not be started or waited for.
    #[error("starting {program}: {error}")]
    Start {
        /// The program, e.g. `sbatch` or the `vae` binary's path.
        program: String,
        /// Why.
        error: std::io::Error,
    },
    /// `vae` exited with a failure.
    #[error("vae {command} exited with {status}: {last_line} (log: {})", log.display())]
    VaeFailed {
        /// `train` or `eval`.
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// The last line it printed.
        last_line: String,
        /// The log file with everything it printed.
        log: PathBuf,
    },
    /// A `vae` process of an earlier sweep still works on a run.
    #[error(
        "run {run} is still being worked on by process {pid} ({cmdline}), left by an earlier \
         sweep: wait for it to end, or stop it with `kill -INT {pid}` (it then checkpoints)"
    )]
    StillRunning {
        /// The run's name.
        run: String,
        /// The process id.
        pid: String,
        /// Its command line.
        cmdline: String,
    },
    /// A Slurm command is not on `PATH`.
    #[error(
        "the slurm backend needs `{tool}` on PATH: run it on a Slurm login node, or start a \
         single-node Slurm here with scripts/slurm-start.sh"
    )]
    NoSlurm {
        /// `sbatch` or `squeue`.
        tool: &'static str,
    },
    /// A Slurm command failed.
    #[error("{command} failed ({status}): {stderr}")]
    SlurmFailed {
        /// The command line, e.g. `sbatch --array=0-3 sweep.sbatch`.
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// `sbatch --parsable` printed something other than a job id.
    #[error("sbatch printed {stdout:?}, not a job id")]
    NoJobId {
        /// What it printed.
        stdout: String,
    },
    /// Runs did not finish (the summary was written all the same).
    #[error(
        "{} of {total} runs did not finish: {}; run the same command again to resume them",
        failed.len(),
        failed.join("; ")
    )]
    Unfinished {
        /// Each unfinished run with the reason.
        failed: Vec<String>,
        /// The sweep's number of runs.
        total: usize,
    },
}

impl From<vae_io::Error> for Error {
    fn from(e: vae_io::Error) -> Error {
        Error::Write(Box::new(e))
    }
}

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |error| Error::Io {
            action,
            path,
            error,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
