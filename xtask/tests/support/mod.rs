//! Helpers shared by the sweep tests: the xtask command, a tiny MNIST-shaped dataset, and what a
//! run folder says about its run (read here independently of xtask's own reading).

#![allow(dead_code)] // each test file uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant, SystemTime};

/// The repository root.
pub fn root() -> PathBuf {
    xtask::project_root()
}

/// The smoke sweep's runs, in sweep order.
pub const SMOKE_RUNS: [&str; 4] = ["iaf0,seed=1", "iaf0,seed=2", "iaf2,seed=1", "iaf2,seed=2"];

/// Builds the debug `vae` binary (`cargo build -p vae-cli`, which `cargo test --workspace` has
/// usually built already) and returns its path, for the sweeps' `--vae`: the tests run the
/// workspace's debug build instead of compiling a release one. It lies beside the xtask binary
/// under test, so a `CARGO_TARGET_DIR` is followed.
pub fn build_vae() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "-p", "vae-cli"])
        .current_dir(root())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cargo build -p vae-cli failed");
    let vae = Path::new(env!("CARGO_BIN_EXE_xtask")).with_file_name("vae");
    assert!(
        vae.is_file(),
        "no {} after cargo build -p vae-cli",
        vae.display()
    );
    vae
}

/// `xtask ARGS` with `FLOWVAE_DATA=data`, from the repository root.
pub fn xtask(data: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
    c.args(args).env("FLOWVAE_DATA", data).current_dir(root());
    c
}

/// Output as text, for messages.
pub fn text(o: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Waits for `child`, killing its process group after `limit`.
pub fn wait_or_kill(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if start.elapsed() > limit {
            kill_group(child.id(), "KILL");
            panic!("still running after {limit:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends `signal` to every process of the group `pgid`.
pub fn kill_group(pgid: u32, signal: &str) {
    let status = Command::new("kill")
        .args(["-s", signal, "--", &format!("-{pgid}")])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -s {signal} -- -{pgid} failed");
}

/// What a run folder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Folder {
    /// Nothing, or training before its first checkpoint.
    Early,
    /// A checkpoint and no results yet.
    Checkpointed,
    /// `results.json` and no evaluation yet.
    Trained,
    /// `results.json` and `eval-is-test.json`.
    Complete,
}

/// Reads a run folder.
pub fn folder(dir: &Path) -> Folder {
    if dir.join("results.json").exists() {
        if dir.join("eval-is-test.json").exists() {
            Folder::Complete
        } else {
            Folder::Trained
        }
    } else if dir.join("checkpoints/last.safetensors").exists() {
        Folder::Checkpointed
    } else {
        Folder::Early
    }
}

/// The epoch lines of a run's `train.log` (`epoch    1/2 ...`), by epoch number.
pub fn epoch_lines(dir: &Path) -> Vec<u64> {
    std::fs::read_to_string(dir.join("train.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let k = l.strip_prefix("epoch")?.split_whitespace().next()?;
            k.split_once('/')?.0.parse().ok()
        })
        .collect()
}

/// Modification time of a file.
pub fn mtime(p: &Path) -> SystemTime {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// How many lines of a run's `train.log` start a new run and how many resume one.
pub fn starts_and_resumes(dir: &Path) -> (usize, usize) {
    let log = std::fs::read_to_string(dir.join("train.log")).unwrap_or_default();
    (
        log.lines().filter(|l| l.contains(" starting run ")).count(),
        log.lines().filter(|l| l.contains(" resuming run ")).count(),
    )
}

/// Writes the end-to-end tests' tiny MNIST-shaped dataset (`vae_io::fixture`) into `dir/mnist`.
pub fn tiny_dataset(dir: &Path, n_train: usize, n_test: usize) {
    vae_io::fixture::write_tiny_mnist(dir, n_train, n_test).expect("writing the tiny dataset");
}

/// `summary.csv` without its wall-time column, which differs between any two sweeps.
pub fn summary_without_wall_time(out: &Path) -> Vec<String> {
    let csv = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let wall = header.iter().position(|h| *h == "wall_seconds").unwrap();
    csv.lines()
        .map(|l| {
            // Fields never hold quoted commas here except run names, which come before wall time
            // and are the same in both; cut from the end instead.
            let fields: Vec<&str> = l.split(',').collect();
            let from_end = header.len() - wall;
            let cut = fields.len() - from_end;
            let mut kept: Vec<&str> = fields[..cut].to_vec();
            kept.extend(&fields[cut + 1..]);
            kept.join(",")
        })
        .collect()
}

/// One column of `summary.csv`'s `run` rows, in sweep order. Only run names hold quoted commas,
/// and they come before every numeric column: fields are counted from the end of the line.
pub fn summary_run_column(out: &Path, column: &str) -> Vec<String> {
    let csv = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let at = header.iter().position(|h| *h == column).unwrap();
    assert!(at > header.iter().position(|h| *h == "run").unwrap());
    csv.lines()
        .filter(|l| l.starts_with("run,"))
        .map(|l| {
            let fields: Vec<&str> = l.split(',').collect();
            fields[fields.len() - (header.len() - at)].to_string()
        })
        .collect()
}
