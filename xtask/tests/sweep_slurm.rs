//! `cargo xtask sweep --backend slurm` on a real single-node Slurm, which scripts/slurm-start.sh
//! installs (Debian's slurm-wlm and munge) and starts. The smoke sweep must reach the same
//! summary as the local backend, its runs evaluated again with `eval.shards` (the eval engine's
//! Slurm array jobs) must get the same files and summary, and a task cancelled in the middle
//! must be resubmitted once and resume from its checkpoint.
//!
//! It needs root and apt (or an installed Slurm), so it is `#[ignore]`d; `cargo xtask test` runs
//! it where `scripts/slurm-start.sh` can start Slurm, and `--ignored` elsewhere fails, saying why.

mod support;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use support::{
    build_vae, epoch_lines, folder, root, starts_and_resumes, summary_without_wall_time, text,
    tiny_dataset, wait_or_kill, xtask, Folder, SMOKE_RUNS,
};

/// Runs `xtask args` in its own process group, output to files; returns (success, output).
fn sweep_in_background(data: &Path, args: &[&str], logs: &Path) -> std::process::Child {
    xtask(data, args)
        .process_group(0)
        .stdout(Stdio::from(
            std::fs::File::create(logs.with_extension("out")).unwrap(),
        ))
        .stderr(Stdio::from(
            std::fs::File::create(logs.with_extension("err")).unwrap(),
        ))
        .spawn()
        .unwrap()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn jobs(out: &Path) -> Vec<u64> {
    let v: serde_json::Value =
        serde_json::from_str(&read(&out.join("slurm/jobs.json"))).unwrap_or_default();
    v["jobs"]
        .as_array()
        .map(|a| a.iter().filter_map(|j| j.as_u64()).collect())
        .unwrap_or_default()
}

#[test]
#[ignore = "needs a real Slurm, which scripts/slurm-start.sh installs and starts as root with \
            apt; `cargo xtask test` runs it where it can"]
fn the_smoke_sweep_runs_on_a_real_single_node_slurm() {
    let start = Instant::now();
    let o = Command::new("bash")
        .arg(root().join("scripts/slurm-start.sh"))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "scripts/slurm-start.sh could not start Slurm here:\n{}",
        text(&o)
    );
    let started = start.elapsed();
    let vae = build_vae();
    let vae = vae.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    tiny_dataset(&data, 3000, 200);
    let sweep = root().join("configs/sweeps/smoke.json");
    let sweep = sweep.to_str().unwrap();

    // The local backend with one thread per run, as each Slurm task has (cpus_per_task = 1).
    let local = tmp.path().join("local");
    let o = xtask(
        &data,
        &[
            "sweep",
            sweep,
            "--out",
            local.to_str().unwrap(),
            "--jobs",
            "2",
            "--threads",
            "1",
            "--vae",
            vae,
        ],
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let local_done = start.elapsed();

    // The same sweep on Slurm.
    let slurm = tmp.path().join("slurm");
    let logs = tmp.path().join("slurm-sweep");
    let mut child = sweep_in_background(
        &data,
        &[
            "sweep",
            sweep,
            "--backend",
            "slurm",
            "--out",
            slurm.to_str().unwrap(),
            "--vae",
            vae,
        ],
        &logs,
    );
    let status = wait_or_kill(&mut child, Duration::from_secs(600));
    let err = read(&logs.with_extension("err"));
    assert!(status.success(), "{status}\n{err}");
    assert!(err.contains("submitted array job"), "{err}");
    assert_eq!(jobs(&slurm).len(), 1, "{err}");
    for name in SMOKE_RUNS {
        assert_eq!(folder(&slurm.join(name)), Folder::Complete, "{name}\n{err}");
    }
    let script = read(&slurm.join("slurm/sweep.sbatch"));
    assert!(script.contains("#SBATCH --array=0-3"), "{script}");
    assert_eq!(
        summary_without_wall_time(&slurm),
        summary_without_wall_time(&local),
        "the Slurm and local summaries differ"
    );
    assert!(slurm.join("summary.md").is_file() && slurm.join("summary.png").is_file());
    let slurm_done = start.elapsed();

    // The same runs with a sharded evaluation (`eval.shards`: 2, IS cut at model calls of 10
    // images: `--max-rows 1000` at k=100): their trained folders copied without the evaluation,
    // so the training stage has nothing to do and each run's evaluation goes through the eval
    // engine's Slurm path (one array job of 2 shards per run), merged into the files one
    // unsharded `vae eval` with the same settings writes, byte for byte.
    let mut spec: serde_json::Value = serde_json::from_str(&read(Path::new(sweep))).unwrap();
    spec["base"] = root().join("configs/smoke.json").to_str().unwrap().into();
    spec["eval"]["shards"] = 2.into();
    spec["eval"]["args"] = serde_json::json!(["--max-rows", "1000"]);
    let file = tmp.path().join("sharded.json");
    std::fs::write(&file, spec.to_string()).unwrap();
    let sharded = tmp.path().join("sharded");
    for name in SMOKE_RUNS {
        std::fs::create_dir_all(&sharded).unwrap();
        let o = Command::new("cp")
            .arg("-a")
            .arg(slurm.join(name))
            .arg(&sharded)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        for ext in ["json", "csv", "png"] {
            let _ = std::fs::remove_file(sharded.join(name).join(format!("eval-is-test.{ext}")));
        }
        assert_eq!(folder(&sharded.join(name)), Folder::Trained, "{name}");
    }
    let logs = tmp.path().join("sharded-sweep");
    let mut child = sweep_in_background(
        &data,
        &[
            "sweep",
            file.to_str().unwrap(),
            "--backend",
            "slurm",
            "--out",
            sharded.to_str().unwrap(),
            "--vae",
            vae,
        ],
        &logs,
    );
    let status = wait_or_kill(&mut child, Duration::from_secs(600));
    let err = read(&logs.with_extension("err"));
    assert!(status.success(), "{status}\n{err}");
    assert!(
        err.contains("evaluating 4 trained run(s) in 2 shards each"),
        "{err}"
    );
    assert_eq!(err.matches("submitted array job").count(), 4, "{err}");
    for name in SMOKE_RUNS {
        let dir = sharded.join(name);
        assert_eq!(folder(&dir), Folder::Complete, "{name}\n{err}");
        assert!(
            dir.join("shards/eval-is-test/slurm-of-2/eval.sbatch")
                .is_file(),
            "{name}\n{err}"
        );
        let whole = tmp.path().join(format!("whole-{name}/eval-is-test.json"));
        std::fs::create_dir_all(whole.parent().unwrap()).unwrap();
        let o = Command::new(vae)
            .args(["eval", "--run", dir.to_str().unwrap(), "--method", "is"])
            .args([
                "--split",
                "test",
                "--k",
                "100",
                "--n",
                "200",
                "--max-rows",
                "1000",
            ])
            .args(["--device", "cpu", "--threads", "1", "--out"])
            .arg(&whole)
            .env("FLOWVAE_DATA", &data)
            .current_dir(root())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(
            read(&dir.join("eval-is-test.csv")),
            read(&whole.with_extension("csv")),
            "{name}: the sharded evaluation differs from an unsharded one"
        );
    }
    let csv = read(&sharded.join("summary.csv"));
    assert_eq!(
        csv.lines().filter(|l| l.ends_with(",done")).count(),
        4,
        "{csv}"
    );
    assert!(!csv.contains("not evaluated"), "{csv}");
    let sharded_done = start.elapsed();

    // A task cancelled in the middle is resubmitted once and resumes from its checkpoint.
    let file = tmp.path().join("resubmit.json");
    std::fs::write(
        &file,
        serde_json::json!({
            "name": "resubmit",
            "base": root().join("configs/smoke.json"),
            "set": {"train.epochs": 8},
            "seeds": [1],
            "eval": {"method": "is", "k": 10, "n": 50},
        })
        .to_string(),
    )
    .unwrap();
    let out = tmp.path().join("resubmit");
    let logs = tmp.path().join("resubmit-sweep");
    let mut child = sweep_in_background(
        &data,
        &[
            "sweep",
            file.to_str().unwrap(),
            "--backend",
            "slurm",
            "--out",
            out.to_str().unwrap(),
            "--vae",
            vae,
        ],
        &logs,
    );
    let run = out.join("seed=1");
    let wait = Instant::now();
    // Cancel once a trained epoch is checkpointed (vae also writes a checkpoint at step 0).
    let mut epoch_seen = None;
    loop {
        if epoch_seen.is_none() && !epoch_lines(&run).is_empty() {
            epoch_seen = Some(SystemTime::now());
        }
        let checkpoint = std::fs::metadata(run.join("checkpoints/last.safetensors"))
            .and_then(|m| m.modified())
            .ok();
        if let (Some(seen), Some(ck)) = (epoch_seen, checkpoint) {
            if ck > seen && folder(&run) == Folder::Checkpointed {
                break;
            }
        }
        assert!(
            folder(&run) != Folder::Complete && wait.elapsed() < Duration::from_secs(300),
            "never saw the run with a trained epoch checkpointed and no results: {:?}\n{}",
            folder(&run),
            read(&logs.with_extension("err"))
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let job = jobs(&out)[0];
    let o = Command::new("scancel")
        .arg(format!("{job}_0"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    std::thread::sleep(Duration::from_secs(1));
    let cancelled_with_checkpoint = folder(&run) == Folder::Checkpointed;
    let status = wait_or_kill(&mut child, Duration::from_secs(300));
    let err = read(&logs.with_extension("err"));
    assert!(status.success(), "{status}\n{err}");
    assert!(err.contains("resubmitting it once"), "{err}");
    assert_eq!(jobs(&out).len(), 2, "{err}");
    assert_eq!(folder(&run), Folder::Complete);
    if cancelled_with_checkpoint {
        assert_eq!(starts_and_resumes(&run), (1, 1), "{err}");
        let manifest: serde_json::Value =
            serde_json::from_str(&read(&run.join("manifest.json"))).unwrap();
        assert!(
            manifest["resumed_from_epoch"].as_u64().unwrap() >= 1,
            "{manifest}"
        );
    }
    eprintln!(
        "slurm-start {started:.1?}, local sweep done at {local_done:.1?}, slurm sweep at \
         {slurm_done:.1?}, its sharded evaluation at {sharded_done:.1?}, resubmission at {:.1?} \
         (cancelled with a trained epoch checkpointed: {cancelled_with_checkpoint})",
        start.elapsed()
    );
}
