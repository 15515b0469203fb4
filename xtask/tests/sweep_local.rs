//! `cargo xtask sweep` with the local backend, end to end on a tiny dataset: the smoke sweep is
//! killed in the middle (its whole process group, SIGKILL, as a crash or a lost machine would)
//! and completes on re-run without repeating finished runs; `--dry-run` and bad sweep files start
//! nothing.

mod support;

use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use support::{
    build_vae, epoch_lines, folder, kill_group, mtime, root, starts_and_resumes,
    summary_run_column, text, tiny_dataset, xtask, Folder, SMOKE_RUNS,
};

#[test]
fn a_killed_sweep_completes_on_rerun_without_repeating_finished_runs() {
    let vae = build_vae();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // 5000 training, 1000 validation (smoke.json) and 200 test images: 50 steps an epoch.
    tiny_dataset(&data, 6000, 200);
    let out = tmp.path().join("out");
    let sweep = root().join("configs/sweeps/smoke.json");
    let args = [
        "sweep",
        sweep.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--jobs",
        "1",
        "--vae",
        vae.to_str().unwrap(),
    ];
    let dirs: Vec<_> = SMOKE_RUNS.iter().map(|r| out.join(r)).collect();

    // 1. Start the sweep and kill it, with its `vae` processes, as soon as one run is complete
    //    and another has trained an epoch (and checkpointed it) but has no results.
    let log = tmp.path().join("first.txt");
    let mut child = xtask(&data, &args)
        .process_group(0)
        .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
        .stderr(Stdio::from(
            std::fs::File::create(tmp.path().join("first-err.txt")).unwrap(),
        ))
        .spawn()
        .unwrap();
    let start = Instant::now();
    // When each run's first epoch line was seen: a checkpoint written after that holds at least
    // one trained epoch (vae also writes one at step 0).
    let mut epoch_seen: Vec<Option<SystemTime>> = vec![None; 4];
    loop {
        let states: Vec<Folder> = dirs.iter().map(|d| folder(d)).collect();
        for (i, d) in dirs.iter().enumerate() {
            if epoch_seen[i].is_none() && !epoch_lines(d).is_empty() {
                epoch_seen[i] = Some(SystemTime::now());
            }
        }
        let mid_run = |i: usize| {
            states[i] == Folder::Checkpointed
                && epoch_seen[i].is_some_and(|t| {
                    std::fs::metadata(dirs[i].join("checkpoints/last.safetensors"))
                        .and_then(|m| m.modified())
                        .is_ok_and(|m| m > t)
                })
        };
        if states.contains(&Folder::Complete) && (0..4).any(mid_run) {
            kill_group(child.id(), "KILL");
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the sweep ended ({status}) before it could be killed in the middle: {states:?}\n{}",
                std::fs::read_to_string(tmp.path().join("first-err.txt")).unwrap()
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "no run finished in 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.wait().unwrap();
    let killed_after = start.elapsed();
    // Read the folders once everything is dead.
    let states: Vec<Folder> = dirs.iter().map(|d| folder(d)).collect();
    let finished: Vec<usize> = (0..4).filter(|&i| states[i] == Folder::Complete).collect();
    let interrupted: Vec<usize> = (0..4)
        .filter(|&i| states[i] == Folder::Checkpointed && !epoch_lines(&dirs[i]).is_empty())
        .collect();
    let epochs_before: Vec<Vec<u64>> = dirs.iter().map(|d| epoch_lines(d)).collect();
    assert!(
        !finished.is_empty() && !interrupted.is_empty(),
        "the kill came too late: {states:?}"
    );
    let stamps: Vec<_> = finished
        .iter()
        .map(|&i| {
            (
                mtime(&dirs[i].join("results.json")),
                mtime(&dirs[i].join("eval-is-test.json")),
            )
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50)); // distinct mtimes for anything rewritten

    // 2. Run it again: it finishes, resuming the interrupted run and skipping the finished ones.
    let start = Instant::now();
    let mut again = xtask(&data, &args);
    let o = again.output().unwrap();
    let rerun = start.elapsed();
    assert!(o.status.success(), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(&format!("{} already finished", finished.len())),
        "{stderr}"
    );
    for (k, &i) in finished.iter().enumerate() {
        let d = &dirs[i];
        assert_eq!(
            stamps[k],
            (
                mtime(&d.join("results.json")),
                mtime(&d.join("eval-is-test.json"))
            ),
            "{} was trained or evaluated again",
            SMOKE_RUNS[i]
        );
        assert_eq!(starts_and_resumes(d), (1, 0), "{}", SMOKE_RUNS[i]);
    }
    for &i in &interrupted {
        assert_eq!(
            starts_and_resumes(&dirs[i]),
            (1, 1),
            "{} should have resumed from its checkpoint",
            SMOKE_RUNS[i]
        );
        // It went on from the epoch of its checkpoint: what was checkpointed is not trained again.
        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dirs[i].join("manifest.json")).unwrap())
                .unwrap();
        let from = manifest["resumed_from_epoch"].as_u64().unwrap();
        assert!(from >= 1, "{} resumed from epoch {from}", SMOKE_RUNS[i]);
        let mut expected = epochs_before[i].clone();
        expected.extend(from + 1..=2);
        assert_eq!(epoch_lines(&dirs[i]), expected, "{}", SMOKE_RUNS[i]);
    }
    for d in &dirs {
        assert_eq!(folder(d), Folder::Complete, "{}", d.display());
    }

    // 3. The summary: a row per run, mean and s.d. per setting, a plot.
    let csv = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 1 + 4 + 2 * 2, "{csv}");
    assert!(rows[1..5].iter().all(|r| r.ends_with(",done")), "{csv}");
    for (i, name) in SMOKE_RUNS.iter().enumerate() {
        assert!(rows[1 + i].contains(&format!("\"{name}\"")), "{csv}");
    }
    assert!(rows[5].starts_with("mean,iaf0,"), "{csv}");
    // Epochs and training time come from each run's metrics.jsonl, the resumed ones included.
    assert_eq!(summary_run_column(&out, "epochs"), ["2"; 4], "{csv}");
    for wall in summary_run_column(&out, "wall_seconds") {
        assert!(wall.parse::<f64>().is_ok_and(|w| w > 0.0), "{csv}");
    }
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md.contains("4 finished"), "{md}");
    assert!(!md.contains("Unreadable"), "{md}");
    assert!(md.contains("| iaf2 | 2 |"), "{md}");
    let png = std::fs::read(out.join("summary.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");

    // 4. A third invocation has nothing to do.
    let o = xtask(&data, &args).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("4 already finished, 0 to do"),
        "{}",
        text(&o)
    );
    eprintln!(
        "killed after {killed_after:.1?} with {} finished and {} interrupted; the re-run took {rerun:.1?}",
        finished.len(),
        interrupted.len()
    );
}

#[test]
fn dry_run_prints_the_runs_and_the_script_and_starts_nothing() {
    let vae = build_vae();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let sweep = root().join("configs/sweeps/smoke.json");
    let o = xtask(
        tmp.path(),
        &[
            "sweep",
            sweep.to_str().unwrap(),
            "--backend",
            "slurm",
            "--jobs",
            "2",
            "--dry-run",
            "--out",
            out.to_str().unwrap(),
            "--vae",
            vae.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    for name in SMOKE_RUNS {
        assert!(stdout.contains(name), "{stdout}");
    }
    assert!(stdout.contains("model.flow=null"), "{stdout}");
    for line in [
        "#SBATCH --array=0-3%2",
        "#SBATCH --cpus-per-task=1",
        "#SBATCH --time=00:10:00",
        "\"$VAE\" train --resume \"$DIR\"",
    ] {
        assert!(stdout.contains(line), "{line} missing from:\n{stdout}");
    }
    assert!(stdout.contains("all 4 runs' configs are valid"), "{stdout}");
    assert!(!out.exists(), "a dry run created {}", out.display());
}

/// A misspelt key and an impossible value fail the whole plan at `--dry-run`, and before any
/// run starts without it, each failing run named with `vae`'s message.
#[test]
fn runs_with_invalid_configs_fail_the_plan_before_anything_starts() {
    let vae = build_vae();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let base = root().join("configs/smoke.json");
    let cases = [
        (
            r#""grid": {"train.batch_size": [100, 0]}"#,
            "1 of 2 runs have an invalid config; nothing was started",
            "invalid config value `train.batch_size` = 0: expected an integer >= 1",
        ),
        (
            r#""set": {"model.flow.layer": 2}, "grid": {"model.latent": [4, 8]}"#,
            "2 of 2 runs have an invalid config; nothing was started",
            "unknown field `layer`",
        ),
    ];
    for (i, (body, count, message)) in cases.into_iter().enumerate() {
        let file = tmp.path().join(format!("bad{i}.json"));
        let text_of_file = format!(
            r#"{{"name": "bad{i}", "base": {:?}, {body}}}"#,
            base.to_str().unwrap()
        );
        std::fs::write(&file, text_of_file).unwrap();
        for dry in [true, false] {
            let mut args = vec![
                "sweep",
                file.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ];
            args.extend(["--vae", vae.to_str().unwrap()]);
            if dry {
                args.push("--dry-run");
            }
            let o = xtask(tmp.path(), &args).output().unwrap();
            assert_eq!(o.status.code(), Some(2), "{}", text(&o));
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(err.contains(count) && err.contains(message), "{err}");
            assert!(
                !out.exists(),
                "dry run {dry}: {} was created",
                out.display()
            );
        }
    }
}

#[test]
fn a_bad_sweep_file_is_named_with_its_key() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("bad.json");
    let base = root().join("configs/smoke.json");
    std::fs::write(
        &file,
        format!(
            r#"{{"base": {:?}, "grid": {{"model.latent": [8, 16]}}, "seeds": [1, "two"]}}"#,
            base.to_str().unwrap()
        ),
    )
    .unwrap();
    let o = xtask(tmp.path(), &["sweep", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.json"), "{err}");
    assert!(
        err.contains("`seeds[1]`: expected an integer >= 0, found \"two\""),
        "{err}"
    );
    let o = xtask(
        tmp.path(),
        &[
            "sweep",
            root().join("configs/sweeps/smoke.json").to_str().unwrap(),
            "--jobs",
            "0",
        ],
    )
    .output()
    .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--jobs 0"));
}
