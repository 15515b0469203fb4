//! Every run's config checked before anything starts: `vae train --check` on the base config
//! with the run's overrides, so a misspelt key or an impossible value fails the plan once, at
//! `--dry-run` or before the first run, instead of every run separately after it was queued.
//!
//! The check runs the plan's own `vae` (this crate links no libtorch, and only `vae` knows the
//! config's schema and the networks' shapes); runs with the same overrides are checked once.

use std::collections::HashMap;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::spec::Run;

/// At most this many failing runs are quoted in the error; the rest are counted.
const QUOTED: usize = 5;

/// `vae train --check` arguments for `run`: the base config and the run's `--set` overrides,
/// as [`Plan::train_args`] gives them to the real run.
pub fn check_args(plan: &Plan, run: &Run) -> Vec<String> {
    let mut a = vec![
        "train".to_string(),
        "--check".into(),
        "--config".into(),
        plan.sweep.base.to_string_lossy().into_owned(),
    ];
    for s in run.set_args(&plan.sweep) {
        a.push("--set".into());
        a.push(s);
    }
    a
}

/// Checks every run's config with `plan.vae` (which must exist), one run after another. Returns
/// [`Error::InvalidRuns`] listing the runs whose config `vae` refused, each with `vae`'s
/// message (which names the key, the value and what is valid).
pub fn validate(plan: &Plan) -> Result<()> {
    let mut failures: Vec<(String, String)> = Vec::new();
    // Identical argument lists (only the seed differs, say, or nothing) give identical verdicts.
    let mut verdicts: HashMap<Vec<String>, Option<String>> = HashMap::new();
    for run in &plan.runs {
        let args = check_args(plan, run);
        let verdict = match verdicts.get(&args) {
            Some(v) => v.clone(),
            None => {
                let v = check_one(plan, &args)?;
                verdicts.insert(args, v.clone());
                v
            }
        };
        if let Some(message) = verdict {
            failures.push((run.name.clone(), message));
        }
    }
    if failures.is_empty() {
        return Ok(());
    }
    let total = plan.runs.len();
    let mut message = format!(
        "{} of {total} runs have an invalid config; nothing was started:",
        failures.len()
    );
    for (name, why) in failures.iter().take(QUOTED) {
        message += &format!("\n  run {name}: {why}");
    }
    if failures.len() > QUOTED {
        message += &format!("\n  ... and {} more", failures.len() - QUOTED);
    }
    Err(Error::InvalidRuns { message })
}

/// `vae train --check ARGS`: `None` when the config is valid, else `vae`'s message.
fn check_one(plan: &Plan, args: &[String]) -> Result<Option<String>> {
    let out = Command::new(&plan.vae)
        .args(args)
        .current_dir(&plan.root)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| Error::Start {
            program: plan.vae.display().to_string(),
            error,
        })?;
    if out.status.success() {
        return Ok(None);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let message = stderr
        .lines()
        .map(|l| l.trim_start_matches("error: ").trim())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    Ok(Some(if message.is_empty() {
        format!("`vae train --check` failed ({})", out.status)
    } else {
        message
    }))
}
