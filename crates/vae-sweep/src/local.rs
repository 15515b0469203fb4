//! The local backend: `jobs` runs at a time on this machine, each with cores / jobs libtorch
//! threads, under one progress bar.
//!
//! Each worker thread takes the next run, brings it to [`RunState::Complete`] with `vae train`
//! (new, resumed, or restarted when it died before its first checkpoint) and `vae eval` (unless
//! the sweep's evaluation is sharded: then it comes after, in [`execute`](crate::execute)), and
//! sends the outcome back. Ctrl-C reaches every `vae` process of the terminal's process group:
//! each writes a checkpoint and exits, and the next invocation resumes them.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::error::{Error, Result};
use crate::plan::{Plan, RunState};
use crate::spec::Run;

/// How a run ended in this invocation.
#[derive(Debug)]
enum Outcome {
    /// Trained and evaluated.
    Done,
    /// `vae` exited cleanly without finishing (interrupted): stop starting new runs.
    Stopped,
    /// `vae` failed.
    Failed(String),
}

enum Event {
    Started(usize),
    Finished(usize, Outcome, f64),
}

/// Runs every unfinished run; returns the names (with reasons) of those that did not finish.
pub fn run(plan: &Plan, jobs: usize, threads: Option<usize>) -> Result<Vec<String>> {
    if jobs == 0 {
        return Err(Error::Zero { option: "--jobs" });
    }
    if threads == Some(0) {
        return Err(Error::Zero {
            option: "--threads",
        });
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = threads.unwrap_or((cores / jobs).max(1));
    std::fs::create_dir_all(plan.out.join("logs"))
        .map_err(Error::io("creating", plan.out.join("logs")))?;
    check_no_leftover_processes(plan)?;
    let todo: VecDeque<usize> = plan
        .runs
        .iter()
        .filter(|r| plan.job_state(r) != RunState::Complete)
        .map(|r| r.index)
        .collect();
    let total = plan.runs.len();
    let finished_before = total - todo.len();
    let bar = ProgressBar::new(1000 * total as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "sweep [{bar:30}] {msg}  {elapsed_precise} elapsed, ETA {eta_precise}",
        )
        .expect("a constant template indicatif accepts: every run of this command draws it")
        .progress_chars("=> "),
    );
    let say = |line: String| bar.suspend(|| eprintln!("{line}"));
    say(format!(
        "xtask: sweep {}: {total} runs, {finished_before} already finished, {} to do, {} at a time with {threads} threads each; logs in {}",
        plan.sweep.name,
        todo.len(),
        jobs.min(todo.len().max(1)),
        plan.out.join("logs").display()
    ));
    if todo.is_empty() {
        return Ok(Vec::new());
    }

    let queue = Arc::new(Mutex::new(todo));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let mut failed = Vec::new();
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            let (queue, stop, tx) = (queue.clone(), stop.clone(), tx.clone());
            scope.spawn(move || loop {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let Some(i) = queue.lock().expect("no panics hold the lock").pop_front() else {
                    break;
                };
                if tx.send(Event::Started(i)).is_err() {
                    break;
                }
                let start = Instant::now();
                let outcome = execute(plan, &plan.runs[i], threads)
                    .unwrap_or_else(|e| Outcome::Failed(e.to_string()));
                let secs = start.elapsed().as_secs_f64();
                if tx.send(Event::Finished(i, outcome, secs)).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        let mut running: BTreeMap<usize, Instant> = BTreeMap::new();
        let mut done = finished_before;
        loop {
            match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(Event::Started(i)) => {
                    running.insert(i, Instant::now());
                }
                Ok(Event::Finished(i, outcome, secs)) => {
                    running.remove(&i);
                    let r = &plan.runs[i];
                    match outcome {
                        Outcome::Done => {
                            done += 1;
                            say(format!(
                                "xtask: [{done}/{total}] {} finished ({secs:.1} s)",
                                r.name
                            ));
                        }
                        Outcome::Stopped => {
                            stop.store(true, std::sync::atomic::Ordering::SeqCst);
                            say(format!(
                                "xtask: {} stopped before the end (interrupted); starting no more runs",
                                r.name
                            ));
                            failed.push(format!("{} (interrupted)", r.name));
                        }
                        Outcome::Failed(why) => {
                            say(format!("xtask: {} FAILED: {why}", r.name));
                            failed.push(format!("{} ({why})", r.name));
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            let partial: f64 = running.keys().map(|&i| plan.progress(&plan.runs[i])).sum();
            bar.set_position(((done as f64 + partial) * 1000.0) as u64);
            let names: Vec<&str> = running
                .keys()
                .map(|&i| plan.runs[i].name.as_str())
                .collect();
            bar.set_message(format!(
                "{done}/{total} runs done{}",
                if names.is_empty() {
                    String::new()
                } else {
                    format!(", running {}", names.join(" "))
                }
            ));
        }
    });
    bar.finish_and_clear();
    let never_started: Vec<String> = queue
        .lock()
        .expect("no panics hold the lock")
        .iter()
        .map(|&i| format!("{} (not started)", plan.runs[i].name))
        .collect();
    failed.extend(never_started);
    Ok(failed)
}

/// Brings one run to completion: train (new, resumed or restarted), then evaluate.
fn execute(plan: &Plan, run: &Run, threads: usize) -> Result<Outcome> {
    let dir = plan.run_dir(run);
    let log = plan.log_file(run);
    let threads = threads.to_string();
    let with_threads = |mut a: Vec<String>| {
        a.extend(["--threads".into(), threads.clone()]);
        a
    };
    let state = plan.job_state(run);
    if state == RunState::Started {
        // Killed before its first checkpoint: nothing to resume.
        std::fs::remove_dir_all(&dir).map_err(Error::io("removing the unfinished run", &dir))?;
    }
    match state {
        RunState::Fresh | RunState::Started => {
            vae(plan, &with_threads(plan.train_args(run, false)), &log)?
        }
        RunState::Resumable => vae(plan, &with_threads(plan.train_args(run, true)), &log)?,
        RunState::Trained | RunState::Complete => {}
    }
    if !vae_io::run_dir::RunDir::new(&dir).results().is_file() {
        return Ok(Outcome::Stopped);
    }
    if plan.job_state(run) == RunState::Trained {
        let args = plan.eval_args(run).expect("Trained implies an evaluation");
        vae(plan, &with_threads(args), &log)?;
    }
    Ok(match plan.job_state(run) {
        RunState::Complete => Outcome::Done,
        _ => Outcome::Failed(format!(
            "the evaluation wrote no {}",
            dir.join(
                plan.sweep
                    .eval
                    .as_ref()
                    .map(|e| e.output())
                    .unwrap_or_default()
            )
            .display()
        )),
    })
}

/// Runs `vae args`, appending its output to `log`; a pid file beside the log marks it running.
fn vae(plan: &Plan, args: &[String], log: &Path) -> Result<()> {
    run_logged(&plan.vae, &plan.root, args, log)
}

/// Runs the `vae` binary with `args` in `root`, its output appended to `log` (whose folder is
/// made), a pid file beside the log while it runs; a failure names the log's last line. The
/// sweep's runs and the sharded evaluations' shards both run this way.
pub(crate) fn run_logged(vae: &Path, root: &Path, args: &[String], log: &Path) -> Result<()> {
    use std::io::Write;
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).map_err(Error::io("creating", dir))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(Error::io("opening", log))?;
    writeln!(f, "\n$ {} {}", vae.display(), args.join(" ")).map_err(Error::io("writing", log))?;
    let err: File = f.try_clone().map_err(Error::io("opening", log))?;
    let mut child = Command::new(vae)
        .args(args)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(f)
        .stderr(err)
        .spawn()
        .map_err(|error| Error::Start {
            program: vae.display().to_string(),
            error,
        })?;
    let pid_file = log.with_extension("pid");
    std::fs::write(&pid_file, child.id().to_string()).map_err(Error::io("writing", &pid_file))?;
    let status = child.wait();
    let _ = std::fs::remove_file(&pid_file);
    let status = status.map_err(Error::io("waiting for", vae))?;
    if !status.success() {
        let tail = std::fs::read_to_string(log).unwrap_or_default();
        let last = tail
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim();
        return Err(Error::VaeFailed {
            command: args[0].clone(),
            status,
            last_line: last.to_string(),
            log: log.to_path_buf(),
        });
    }
    Ok(())
}

/// A sweep killed on its own (not with its process group) leaves its `vae` processes running;
/// starting the same runs beside them would corrupt their folders.
fn check_no_leftover_processes(plan: &Plan) -> Result<()> {
    for run in &plan.runs {
        let pid_file = plan.log_file(run).with_extension("pid");
        let Ok(pid) = std::fs::read_to_string(&pid_file) else {
            continue;
        };
        let pid = pid.trim();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&*plan.run_dir(run).to_string_lossy()) {
            return Err(Error::StillRunning {
                run: run.name.clone(),
                pid: pid.to_string(),
                cmdline: cmdline.trim().to_string(),
            });
        }
        let _ = std::fs::remove_file(&pid_file);
    }
    Ok(())
}
