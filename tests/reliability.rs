//! Failures and bad input end to end: NaN guard with rollback, 20 runs interrupted by kill -9,
//! SIGTERM or SIGINT at random points then resumed, SIGTERM then resume, a second trainer on a running run's folder, corrupt checkpoints,
//! and failed writes. Every case checks the message and that no
//! panic (exit status 101) happened.

mod common;

use std::time::{Duration, Instant};

use common::{model_tensors, smoke_command, stderr, tiny_dataset, train_smoke, vae};

#[test]
fn nan_losses_are_skipped_then_rolled_back_and_the_run_finishes() {
    let dir = tempfile::tempdir().unwrap();
    tiny_dataset(dir.path(), 800, 100);
    let run = dir.path().join("run");
    // Steps 7..=11 are NaN; with 5 allowed in a row the trainer rolls back once.
    let out = smoke_command(
        dir.path(),
        &run,
        &[
            "--set",
            "train.max_consecutive_skips=5",
            "--set",
            "train.epochs=3",
        ],
    )
    .env("FLOWVAE_TEST_INJECT_NAN", "7:5")
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let log = std::fs::read_to_string(run.join("train.log")).unwrap();
    assert!(
        log.contains("5 non-finite steps in a row at global step 12: rolling back"),
        "{log}"
    );
    let results = std::fs::read_to_string(run.join("results.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&results).unwrap();
    assert!(
        v["test"]["neg_elbo"].as_f64().unwrap().is_finite(),
        "{results}"
    );
    // The resumed state carries the halved learning rate.
    let last = tch::Tensor::read_safetensors(run.join("checkpoints/last.safetensors")).unwrap();
    let meta = last.iter().find(|(k, _)| k == "meta.json").unwrap();
    let meta: serde_json::Value =
        serde_json::from_slice(&Vec::<u8>::try_from(&meta.1).unwrap()).unwrap();
    assert_eq!(meta["state"]["lr_scale"], 0.5);
    assert_eq!(meta["state"]["rollbacks"], 1);
}

#[test]
fn endless_nans_stop_with_a_report_after_the_allowed_rollbacks() {
    let dir = tempfile::tempdir().unwrap();
    tiny_dataset(dir.path(), 800, 100);
    let run = dir.path().join("run");
    let out = smoke_command(
        dir.path(),
        &run,
        &[
            "--set",
            "train.max_consecutive_skips=2",
            "--set",
            "train.max_rollbacks=2",
        ],
    )
    .env("FLOWVAE_TEST_INJECT_NAN", "0:1000")
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("training diverged: 2 non-finite steps in a row"),
        "{err}"
    );
    assert!(err.contains("after 2 rollback(s)"), "{err}");
    assert!(!run.join("results.json").exists());
}

/// The signals the 20 interrupted runs get: kill -9 (a crash, a lost node), SIGTERM (Slurm's
/// time limit, `kill`'s default) and SIGINT (Ctrl-C).
const SIGNALS: [&str; 3] = ["KILL", "TERM", "INT"];

/// A small linear congruential generator (Knuth's MMIX constants): the kill times and signals
/// are pseudo-random but the same on every run of the test.
struct Lcg(u64);

impl Lcg {
    /// Uniform in [0, 1).
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// 20 runs, each interrupted one to three times at pseudo-random points (start-up, steps,
/// validation, checkpoint writes) by kill -9, SIGTERM or SIGINT and resumed each time: every one
/// ends with the weights of the uninterrupted run, and no temporary file is left in its folder.
#[cfg(unix)]
#[test]
fn twenty_runs_killed_at_random_points_resume_to_the_uninterrupted_weights() {
    let dir = tempfile::tempdir().unwrap();
    tiny_dataset(dir.path(), 800, 100);
    let straight = dir.path().join("straight");
    let t0 = Instant::now();
    let out = train_smoke(dir.path(), &straight, &["--set", "train.epochs=4"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let full_ms = t0.elapsed().as_millis() as f64;

    let mut rng = Lcg(20);
    let plans: Vec<Vec<(f64, &str)>> = (0..20)
        .map(|_| {
            let kills = 1 + (rng.next() * 3.0) as usize;
            (0..kills)
                .map(|_| {
                    (
                        0.05 + 0.75 * rng.next(),
                        SIGNALS[(rng.next() * 3.0) as usize],
                    )
                })
                .collect()
        })
        .collect();
    // Two runs at a time, one thread each, as the straight run had.
    let results = common::two_at_a_time(&plans, |i, plan| {
        let run = dir.path().join(format!("run{i:02}"));
        let done = interrupt_and_resume(dir.path(), &run, plan, full_ms);
        (i, run, done)
    });
    let mut by_signal = std::collections::BTreeMap::new();
    for (i, run, done) in &results {
        assert!(!done.is_empty(), "run {i} was never interrupted");
        for s in done {
            *by_signal.entry(*s).or_insert(0) += 1;
        }
        assert_same_weights(&straight, run, done.len());
        for folder in [run.clone(), run.join("checkpoints")] {
            let temps: Vec<_> = std::fs::read_dir(&folder)
                .unwrap()
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".tmp"))
                .collect();
            assert!(
                temps.is_empty(),
                "run {i}: {temps:?} left in {}",
                folder.display()
            );
        }
    }
    eprintln!("interruptions by signal: {by_signal:?}");
    for s in SIGNALS {
        assert!(by_signal.get(s).copied().unwrap_or(0) >= 3, "{by_signal:?}");
    }
}

/// Trains the 4-epoch smoke model into `run`, sending the planned signals at their times
/// (fractions of `full_ms`, from each start) and resuming after each, then to the end. A signal
/// planned after a start's run has already ended is tried again at half the time in a fresh
/// folder, so every planned interruption happens. Returns the signals sent.
fn interrupt_and_resume(
    data: &std::path::Path,
    run: &std::path::Path,
    plan: &[(f64, &'static str)],
    full_ms: f64,
) -> Vec<&'static str> {
    let mut scale = 1.0;
    'attempt: loop {
        let _ = std::fs::remove_dir_all(run);
        let mut sent = Vec::new();
        let mut pending = plan.iter();
        loop {
            let mut c = if run.join("config.json").exists() {
                common::command(
                    data,
                    &["train", "--resume", run.to_str().unwrap(), "--threads", "1"],
                )
            } else {
                smoke_command(data, run, &["--set", "train.epochs=4"])
            };
            let mut child = c
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let start = Instant::now();
            let planned = pending.next();
            let mut signaled = false;
            let status = loop {
                if let Some(status) = child.try_wait().unwrap() {
                    break status;
                }
                if let Some((f, signal)) = planned {
                    if start.elapsed().as_millis() as f64 >= f * scale * full_ms {
                        send_signal(child.id(), signal);
                        sent.push(*signal);
                        signaled = true;
                        break child.wait().unwrap();
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            };
            match (planned, signaled) {
                // The last start: it runs to the end.
                (None, _) => {
                    assert!(status.success(), "the resumed run {} failed", run.display());
                    return sent;
                }
                (Some(_), true) => {}
                // The run ended before its signal: this plan again, sooner, from scratch.
                (Some(_), false) => {
                    assert!(status.success(), "{} failed", run.display());
                    scale /= 2.0;
                    assert!(
                        scale > 0.01,
                        "{}: runs end before any signal",
                        run.display()
                    );
                    continue 'attempt;
                }
            }
        }
    }
}

/// The model tensors of the two runs' last checkpoints are identical.
fn assert_same_weights(straight: &std::path::Path, run: &std::path::Path, kills: usize) {
    let a = model_tensors(&straight.join("checkpoints/last.safetensors"));
    let b = model_tensors(&run.join("checkpoints/last.safetensors"));
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(x.equal(y), "{name} differs after {kills} kills");
    }
}

/// Waits (at most 2 minutes) until `run`'s train.log contains `needle`.
fn wait_for_log(run: &std::path::Path, needle: &str) {
    let start = Instant::now();
    while !std::fs::read_to_string(run.join("train.log"))
        .unwrap_or_default()
        .contains(needle)
    {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no {needle:?} in train.log after 2 minutes"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `signal` (`TERM`, `INT`, ...) to process `pid` with `kill`.
fn send_signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

/// The global step N of the `stopped at ... (global step N); continue with: ...` line.
fn stopped_at_global_step(stderr: &str) -> u64 {
    let (_, rest) = stderr
        .split_once("(global step ")
        .unwrap_or_else(|| panic!("no stop line in {stderr}"));
    rest.split_once(')').unwrap().0.parse().unwrap()
}

/// SIGTERM (Slurm's time limit, `kill`'s default) stops a run as Ctrl-C does: the step ends, a
/// checkpoint is written, status 0 and the resume command; resuming then gives the weights of an
/// uninterrupted run.
#[cfg(unix)]
#[test]
fn sigterm_stops_like_ctrl_c_and_resume_gives_the_uninterrupted_weights() {
    let dir = tempfile::tempdir().unwrap();
    tiny_dataset(dir.path(), 800, 100);
    let run = dir.path().join("run");
    let long = ["--set", "train.epochs=1000"];
    let child = smoke_command(dir.path(), &run, &long)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_log(&run, "epoch    1/");
    send_signal(child.id(), "TERM");
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let resume = format!("continue with: vae train --resume {}", run.display());
    assert!(err.contains(&resume), "{err}");
    let log = std::fs::read_to_string(run.join("train.log")).unwrap();
    assert!(log.contains(&resume), "{log}");
    assert!(!run.join("results.json").exists());
    // A few steps past the stop, resumed and straight.
    let end = (stopped_at_global_step(&err) + 4).to_string();
    let out = vae(
        dir.path(),
        &[
            "train",
            "--resume",
            run.to_str().unwrap(),
            "--threads",
            "1",
            "--max-steps",
            &end,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stopped_at_global_step(&stderr(&out)).to_string(), end);
    let straight = dir.path().join("straight");
    let out = train_smoke(
        dir.path(),
        &straight,
        &[&long[..], &["--max-steps", &end]].concat(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_same_weights(&straight, &run, 1);
}

/// A second `vae train` into the folder of a running one fails at once, naming the first's pid,
/// and writes nothing there; the first goes on undisturbed.
#[cfg(unix)]
#[test]
fn a_second_trainer_on_a_running_runs_folder_is_refused_naming_the_first() {
    let dir = tempfile::tempdir().unwrap();
    tiny_dataset(dir.path(), 800, 100);
    let run = dir.path().join("run");
    let child = smoke_command(dir.path(), &run, &["--set", "train.epochs=1000"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    wait_for_log(&run, "starting run");
    let out = vae(
        dir.path(),
        &["train", "--resume", run.to_str().unwrap(), "--threads", "1"],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "another flowvae process (pid {pid}, `vae train`) is writing into {}; wait for it to \
             finish or stop it",
            run.display()
        )),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(run.join(".flowvae.lock")).unwrap(),
        format!("{pid} vae train\n")
    );
    // The first run carries on: it completes an epoch and stops cleanly when asked to.
    wait_for_log(&run, "epoch    1/");
    send_signal(pid, "TERM");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let log = std::fs::read_to_string(run.join("train.log")).unwrap();
    assert!(!log.contains("resuming"), "{log}");
    assert!(log.contains("continue with: vae train --resume"), "{log}");
}

#[test]
fn corrupt_checkpoints_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    tiny_dataset(dir.path(), 800, 100);
    let run = dir.path().join("run");
    assert!(train_smoke(dir.path(), &run, &["--max-steps", "3"])
        .status
        .success());
    let last = run.join("checkpoints/last.safetensors");
    let good = std::fs::read(&last).unwrap();
    let resume = || {
        vae(
            dir.path(),
            &["train", "--resume", run.to_str().unwrap(), "--threads", "1"],
        )
    };
    let check = |expect: &str| {
        let out = resume();
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(
            stderr(&out).contains(expect),
            "expected {expect:?} in {}",
            stderr(&out)
        );
    };
    // Truncated.
    std::fs::write(&last, &good[..good.len() / 3]).unwrap();
    check("may be truncated or corrupt");
    // One bit flipped in the tensor data (the end of the file is data, not header).
    let mut flipped = good.clone();
    let at = flipped.len() / 2; // inside a weight tensor: the header and meta.json are small
    flipped[at] ^= 0x10;
    std::fs::write(&last, &flipped).unwrap();
    check("integrity check failed");
    // A checkpoint of another format version.
    let mut tensors = tch::Tensor::read_safetensors(run.join("checkpoints/best.safetensors")).ok();
    if tensors.is_none() {
        std::fs::write(&last, &good).unwrap();
        tensors = tch::Tensor::read_safetensors(&last).ok();
    }
    let tensors: Vec<(String, tch::Tensor)> = tensors
        .unwrap()
        .into_iter()
        .map(|(k, t)| {
            if k == "meta.json" {
                let text = String::from_utf8(Vec::<u8>::try_from(&t).unwrap()).unwrap();
                let text = text.replacen("\"format\":1", "\"format\":99", 1);
                (k, tch::Tensor::from_slice(text.as_bytes()))
            } else {
                (k, t)
            }
        })
        .collect();
    tch::Tensor::write_safetensors(&tensors, &last).unwrap();
    check("format version Some(99), this flowvae reads version 1");
    // Not a flowvae checkpoint at all.
    tch::Tensor::write_safetensors(&[("x", tch::Tensor::from_slice(&[1.0f32]))], &last).unwrap();
    check("not a flowvae checkpoint");
}

#[test]
fn a_failed_write_stops_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    tiny_dataset(dir.path(), 800, 100);
    let run = dir.path().join("run");
    // A folder where results.json should go: the final atomic rename fails (as root, permission
    // bits would not stop the write, so a folder stands in for an unwritable file).
    std::fs::create_dir_all(run.join("results.json/blocker")).unwrap();
    let out = train_smoke(dir.path(), &run, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("results.json"), "{}", stderr(&out));
    // The checkpoints written before the failure are intact and resumable.
    assert!(model_tensors(&run.join("checkpoints/last.safetensors")).len() > 10);
}

/// Two evaluations writing the same output files cannot run at once: the second gets the
/// first's pid; the run's own lock (training) is another file, so it does not stop them.
#[test]
fn a_second_evaluation_of_the_same_outputs_is_refused_naming_the_first() {
    let dir = tempfile::tempdir().unwrap();
    tiny_dataset(dir.path(), 800, 100);
    let run = dir.path().join("run");
    assert!(train_smoke(dir.path(), &run, &["--max-steps", "3"])
        .status
        .success());
    let r = run.to_str().unwrap();
    // `last`: three steps end before the first epoch, which writes `best`.
    let eval = |steps: &str| {
        let args = "--method ais --chains 2 --leapfrog 2 --n 2 --threads 1 --checkpoint last";
        let mut v = vec!["eval", "--run", r, "--steps", steps];
        v.extend(args.split(' '));
        v.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let slow = eval("1000000");
    let slow: Vec<&str> = slow.iter().map(String::as_str).collect();
    let child = common::command(dir.path(), &slow)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let lock = run.join(".eval-ais-test.json.lock");
    let held = format!("{pid} vae eval\n");
    let start = Instant::now();
    while std::fs::read_to_string(&lock).ok().as_deref() != Some(held.as_str()) {
        if start.elapsed() > Duration::from_secs(60) {
            send_signal(pid, "KILL");
            let out = child.wait_with_output().unwrap();
            panic!("the first evaluation never locked: {}", stderr(&out));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = vae(dir.path(), &slow);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "another flowvae process (pid {pid}, `vae eval`) is writing into {}",
            run.join("eval-ais-test.json").display()
        )),
        "{err}"
    );
    send_signal(pid, "KILL");
    let _ = child.wait_with_output();
    // The lock died with its holder.
    let fast = eval("5");
    let fast: Vec<&str> = fast.iter().map(String::as_str).collect();
    let out = vae(dir.path(), &fast);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// `--resume` never starts over on top of a run's work: without `last` it continues from `best`
/// (saying so), and without any checkpoint it refuses, leaving `results.json` as it was.
#[test]
fn resume_without_last_continues_from_best_and_without_checkpoints_refuses() {
    let dir = tempfile::tempdir().unwrap();
    tiny_dataset(dir.path(), 800, 100);
    let run = dir.path().join("run");
    assert!(train_smoke(dir.path(), &run, &[]).status.success());
    let results = std::fs::read(run.join("results.json")).unwrap();
    let resume = |extra: &[&str]| {
        let mut a = vec!["train", "--resume", run.to_str().unwrap(), "--threads", "1"];
        a.extend(extra);
        vae(dir.path(), &a)
    };
    std::fs::remove_file(run.join("checkpoints/last.safetensors")).unwrap();
    // Stopped one step past the smoke run's 12: the results of the earlier end, which describe
    // a `best` the new epochs may replace, are gone until the run ends again.
    let out = resume(&["--set", "train.epochs=3", "--max-steps", "13"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for expected in [
        "resuming from checkpoints/best.safetensors",
        "its results.json was removed and is written again at the end",
    ] {
        assert!(stderr(&out).contains(expected), "{}", stderr(&out));
    }
    assert!(run.join("checkpoints/last.safetensors").exists());
    assert!(!run.join("results.json").exists());
    let out = resume(&["--set", "train.epochs=3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let results = std::fs::read(run.join("results.json")).unwrap_or(results);
    for name in ["last", "best"] {
        std::fs::remove_file(run.join(format!("checkpoints/{name}.safetensors"))).unwrap();
    }
    let out = resume(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("has trained") && stderr(&out).contains("no checkpoint left"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(run.join("results.json")).unwrap(), results);
    assert!(!run.join("checkpoints/best.safetensors").exists());
}

/// A checkpoint copied in from another run (same architecture, other training settings) is not
/// resumed silently: the differences are listed, and `--force` accepts them.
#[test]
fn a_checkpoint_of_another_run_is_not_resumed_without_a_word() {
    let dir = tempfile::tempdir().unwrap();
    tiny_dataset(dir.path(), 800, 100);
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for (run, lr) in [(&a, "0.001"), (&b, "0.002")] {
        let set = format!("train.learning_rate={lr}");
        assert!(
            train_smoke(dir.path(), run, &["--max-steps", "3", "--set", &set])
                .status
                .success()
        );
    }
    std::fs::copy(
        b.join("checkpoints/last.safetensors"),
        a.join("checkpoints/last.safetensors"),
    )
    .unwrap();
    let resume = |extra: &[&str]| {
        let mut args = vec!["train", "--resume", a.to_str().unwrap(), "--max-steps", "4"];
        args.extend(extra);
        vae(dir.path(), &args)
    };
    let out = resume(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("train.learning_rate: 0.002 -> 0.001")
            && stderr(&out).contains("pass --force"),
        "{}",
        stderr(&out)
    );
    let out = resume(&["--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// TensorBoard's writer (tensorboard-rs) panics on I/O errors: a TensorBoard folder that cannot
/// be made is an error with its path before training starts, never a panic.
#[test]
fn an_unusable_tensorboard_folder_is_a_message_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    tiny_dataset(dir.path(), 800, 100);
    let run = dir.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("tensorboard"), b"a file where the folder goes").unwrap();
    let out = train_smoke(dir.path(), &run, &["--max-steps", "2"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("creating the TensorBoard folder"),
        "{}",
        stderr(&out)
    );
}
