//! The conditions a benchmark runs both implementations under: the machine's state (quiet, or
//! beside one busy process) and the settings each side gets (its own defaults, or the same
//! explicit ones for both).
//!
//! Users run PyTorch with no OpenMP variables and its default thread count, and `vae` with its
//! own defaults; a ratio under settings that one side chose for itself would not say what they
//! meet. So the tables that carry the targets compare each side's defaults, and the
//! equal-setting tables compare the implementations alone.

use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};

/// Variables that change either side's threading or allocator: removed wherever a condition
/// means "as users run it", so that neither the bench's caller nor the bench leaks its own.
const THREADING_VARIABLES: [&str; 9] = [
    "OMP_WAIT_POLICY",
    "OMP_NUM_THREADS",
    "OMP_PROC_BIND",
    "OMP_PLACES",
    "GOMP_SPINCOUNT",
    "MKL_NUM_THREADS",
    "MKL_DYNAMIC",
    "KMP_BLOCKTIME",
    "MALLOC_CONF",
];

/// The ratio flowvae / PyTorch that each side's defaults must reach, quiet or busy.
pub const DEFAULTS_TARGET: f64 = 0.85;

/// How both implementations are run for one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// Each side as its users run it: no thread count given, none of the threading variables
    /// set; nothing else running.
    DefaultsQuiet,
    /// The same beside one busy process (`yes > /dev/null`, started and stopped by the bench).
    DefaultsBusy,
    /// Both given the same thread count and `OMP_WAIT_POLICY=passive` (workers sleep between
    /// parallel regions); nothing else running.
    EqualPassive,
    /// Both given the same thread count and libgomp's default wait policy (the variable
    /// unset: workers spin for a few milliseconds); nothing else running.
    EqualSpin,
}

impl Condition {
    /// Every condition; the first one (the implementations compared alone, as the bench always
    /// has) fills the main tables, the others a table of their own.
    pub const ALL: [Condition; 4] = [
        Condition::EqualPassive,
        Condition::DefaultsQuiet,
        Condition::DefaultsBusy,
        Condition::EqualSpin,
    ];

    /// Short name, used in BENCHMARKS.json and the log files' names.
    pub fn key(self) -> &'static str {
        match self {
            Condition::DefaultsQuiet => "defaults-quiet",
            Condition::DefaultsBusy => "defaults-busy",
            Condition::EqualPassive => "equal-passive",
            Condition::EqualSpin => "equal-spin",
        }
    }

    /// The words a table uses for it.
    pub fn label(self) -> &'static str {
        match self {
            Condition::DefaultsQuiet => "each side's defaults, quiet machine",
            Condition::DefaultsBusy => "each side's defaults, one busy process",
            Condition::EqualPassive => "both passive, same threads",
            Condition::EqualSpin => "both libgomp default, same threads",
        }
    }

    /// Whether one busy process runs beside both implementations.
    pub fn busy(self) -> bool {
        self == Condition::DefaultsBusy
    }

    /// Whether each side keeps its own defaults (the rows the targets apply to).
    pub fn defaults(self) -> bool {
        matches!(self, Condition::DefaultsQuiet | Condition::DefaultsBusy)
    }

    /// The target ratio under this condition for a row whose main-table target is
    /// `row_target`: each side's defaults must give [`DEFAULTS_TARGET`] or better on every row
    /// measured so (what users meet), the equal settings must not be slower (1.0), whatever the
    /// row's own target.
    pub fn target(self, row_target: f64) -> f64 {
        if self.defaults() {
            DEFAULTS_TARGET.min(row_target)
        } else {
            1.0
        }
    }

    /// Sets `cmd`'s threading for this condition: `--threads N` and the wait policy for the
    /// equal-setting ones, nothing (and none of the caller's variables) for the defaults.
    pub fn apply(self, cmd: &mut Command, threads: usize) {
        for var in THREADING_VARIABLES {
            cmd.env_remove(var);
        }
        match self {
            Condition::DefaultsQuiet | Condition::DefaultsBusy => {}
            Condition::EqualPassive => {
                cmd.args(["--threads", &threads.to_string()])
                    .env("OMP_WAIT_POLICY", "passive");
            }
            Condition::EqualSpin => {
                cmd.args(["--threads", &threads.to_string()]);
            }
        }
    }
}

/// One busy process (`yes` into /dev/null) for as long as this lives.
#[derive(Debug)]
pub struct BusyProcess(Child);

impl BusyProcess {
    /// Starts it.
    pub fn start() -> Result<BusyProcess> {
        let child = Command::new("yes")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting `yes > /dev/null` as the busy process")?;
        Ok(BusyProcess(child))
    }
}

impl Drop for BusyProcess {
    fn drop(&mut self) {
        // Already gone is fine; a process left spinning would skew every later figure.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(cmd: &Command) -> Vec<(String, Option<String>)> {
        cmd.get_envs()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.map(|v| v.to_string_lossy().into_owned()),
                )
            })
            .collect()
    }

    #[test]
    fn defaults_clear_every_threading_variable_and_give_no_threads() {
        let mut cmd = Command::new("true");
        cmd.env("OMP_WAIT_POLICY", "active");
        Condition::DefaultsBusy.apply(&mut cmd, 2);
        assert_eq!(cmd.get_args().count(), 0);
        let env = env_of(&cmd);
        for var in THREADING_VARIABLES {
            assert!(env.contains(&(var.to_string(), None)), "{var} not removed");
        }
    }

    #[test]
    fn equal_conditions_fix_the_threads_and_the_policy() {
        let mut cmd = Command::new("true");
        Condition::EqualPassive.apply(&mut cmd, 3);
        let args: Vec<_> = cmd.get_args().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(args, ["--threads", "3"]);
        assert!(env_of(&cmd).contains(&("OMP_WAIT_POLICY".into(), Some("passive".into()))));
        let mut cmd = Command::new("true");
        Condition::EqualSpin.apply(&mut cmd, 2);
        assert!(env_of(&cmd).contains(&("OMP_WAIT_POLICY".into(), None)));
        assert_eq!(Condition::EqualSpin.target(0.85), 1.0);
        assert_eq!(Condition::DefaultsQuiet.target(0.85), 0.85);
        assert_eq!(Condition::DefaultsBusy.target(1.0), DEFAULTS_TARGET);
    }

    #[test]
    fn the_busy_process_runs_until_dropped() {
        let busy = BusyProcess::start().unwrap();
        let pid = busy.0.id();
        let alive = || std::path::Path::new(&format!("/proc/{pid}")).exists();
        assert!(alive());
        drop(busy);
        assert!(!alive(), "yes ({pid}) still running");
    }
}
