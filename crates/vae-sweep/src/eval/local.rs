//! The local backend of sharded evaluations: `jobs` shards at a time as `vae eval --shard I/N`
//! processes, under one progress bar fed by the shards' progress files.
//!
//! Each worker thread takes the next unfinished shard (of any evaluation of the file), runs it
//! with its output appended to `shard-I-of-N.log`, and checks that the summary it wrote reads
//! back; a shard that fails is run once more at once, and a second failure is reported with its
//! log. A pid file beside the log marks the shard as running, so that a second invocation does
//! not evaluate it beside a process left by a first one.

use std::collections::{BTreeSet, VecDeque};
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use super::plan::{EvalPlan, PlannedEval, ShardState};
use super::{progress_bar, Error, Result};

enum Event {
    Started(usize, usize),
    Retrying(usize, usize, String),
    Finished(usize, usize, std::result::Result<(), String>),
}

/// Evaluates every unfinished shard of the plan; returns the shards that failed twice, each
/// with the reason and its log.
pub(crate) fn run(plan: &EvalPlan, jobs: usize, threads: usize) -> Result<Vec<String>> {
    let bar = progress_bar();
    let say = |line: String| bar.suspend(|| eprintln!("{line}"));
    let mut todo: VecDeque<(usize, usize)> = VecDeque::new();
    let mut finished: BTreeSet<(usize, usize)> = BTreeSet::new();
    for (k, e) in plan.evals.iter().enumerate() {
        let mut stale = 0;
        for i in 1..=e.shards {
            match e.state(i) {
                ShardState::Done => {
                    finished.insert((k, i));
                }
                ShardState::Missing => todo.push_back((k, i)),
                ShardState::Stale(why) => {
                    say(format!(
                        "xtask: shard {} is evaluated again: {why}",
                        e.shard_name(i)
                    ));
                    stale += 1;
                    todo.push_back((k, i));
                }
            }
        }
        let left = todo.iter().filter(|(j, _)| *j == k).count();
        say(format!(
            "xtask: {} ({}): {} shards, {} finished, {left} to evaluate{}; logs beside them in {}",
            e.label,
            e.entry.describe(),
            e.shards,
            e.shards - left,
            if stale > 0 {
                format!(" ({stale} again)")
            } else {
                String::new()
            },
            e.dir.display()
        ));
    }
    for &(k, i) in &todo {
        check_not_running(&plan.evals[k], i)?;
        // A progress file left by an interrupted attempt would count as progress.
        let _ = std::fs::remove_file(plan.evals[k].progress(i));
    }
    if todo.is_empty() {
        return Ok(Vec::new());
    }
    say(format!(
        "xtask: {} shards, {} at a time with {threads} threads each",
        todo.len(),
        jobs.min(todo.len())
    ));
    let total = todo.len();
    let queue = Arc::new(Mutex::new(todo));
    let (tx, rx) = mpsc::channel();
    let mut failed = Vec::new();
    let (pos, len) = plan.progress(|k, i| finished.contains(&(k, i)));
    bar.set_length(len);
    bar.set_position(pos);
    bar.reset_eta();
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            let (queue, tx) = (queue.clone(), tx.clone());
            scope.spawn(move || loop {
                let Some((k, i)) = queue.lock().expect("no panics hold the lock").pop_front()
                else {
                    break;
                };
                let e = &plan.evals[k];
                if tx.send(Event::Started(k, i)).is_err() {
                    break;
                }
                let mut outcome = shard(plan, e, i, threads);
                if let Err(why) = &outcome {
                    if tx.send(Event::Retrying(k, i, why.clone())).is_err() {
                        break;
                    }
                    outcome = shard(plan, e, i, threads);
                }
                if tx.send(Event::Finished(k, i, outcome)).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        let mut running: BTreeSet<(usize, usize)> = BTreeSet::new();
        let mut ended = 0;
        loop {
            match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(Event::Started(k, i)) => {
                    running.insert((k, i));
                }
                Ok(Event::Retrying(k, i, why)) => say(format!(
                    "xtask: shard {} failed: {why}; trying it once more",
                    plan.evals[k].shard_name(i)
                )),
                Ok(Event::Finished(k, i, outcome)) => {
                    running.remove(&(k, i));
                    ended += 1;
                    let name = plan.evals[k].shard_name(i);
                    match outcome {
                        Ok(()) => {
                            finished.insert((k, i));
                            say(format!("xtask: [{ended}/{total}] shard {name} finished"));
                        }
                        Err(why) => {
                            say(format!(
                                "xtask: [{ended}/{total}] shard {name} FAILED again: {why}"
                            ));
                            failed.push(format!("shard {name} failed twice: {why}"));
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            let (pos, len) = plan.progress(|k, i| finished.contains(&(k, i)));
            bar.set_length(len);
            bar.set_position(pos);
            bar.set_message(format!(
                "{}/{total} shards done, {} running",
                ended,
                running.len()
            ));
        }
    });
    bar.finish_and_clear();
    Ok(failed)
}

/// Evaluates shard `i` of `e`: `vae eval --shard i/N`, then its summary must read back.
fn shard(
    plan: &EvalPlan,
    e: &PlannedEval,
    i: usize,
    threads: usize,
) -> std::result::Result<(), String> {
    let args = plan.shard_args(e, &i.to_string(), &threads.to_string());
    vae(plan, &args, &e.log(i)).map_err(|err| err.to_string())?;
    match e.state(i) {
        ShardState::Done => Ok(()),
        ShardState::Missing => Err(format!(
            "vae eval exited cleanly without writing {} (log: {})",
            e.summary(i).display(),
            e.log(i).display()
        )),
        ShardState::Stale(why) => Err(format!("{why} (log: {})", e.log(i).display())),
    }
}

/// Runs `vae args`, appending its output to `log`; a pid file beside the log marks it running.
fn vae(plan: &EvalPlan, args: &[String], log: &Path) -> Result<()> {
    crate::local::run_logged(&plan.vae, &plan.root, args, log)?;
    Ok(())
}

/// A driver killed on its own (not with its process group) leaves its `vae eval` processes
/// running; evaluating the same shard beside one would only waste its work, and the message
/// says whom to wait for.
fn check_not_running(e: &PlannedEval, i: usize) -> Result<()> {
    let pid_file = e.log(i).with_extension("pid");
    let Ok(pid) = std::fs::read_to_string(&pid_file) else {
        return Ok(());
    };
    let pid = pid.trim();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    let shard = format!("--shard {i}/{} ", e.shards);
    if cmdline.contains(&*e.run.to_string_lossy()) && cmdline.contains(&shard) {
        return Err(Error::StillRunning {
            shard: e.shard_name(i),
            pid: pid.to_string(),
            cmdline: cmdline.trim().to_string(),
        });
    }
    let _ = std::fs::remove_file(&pid_file);
    Ok(())
}
