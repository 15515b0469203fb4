//! `cargo xtask sweep --backend slurm` on a real single-node Slurm, which scripts/slurm-start.sh
//! installs (Debian's slurm-wlm and munge) and starts. The smoke sweep must reach the same
//! summary as the local backend, and a task cancelled in the middle must be resubmitted once and
//! resume from its checkpoint.
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
         {slurm_done:.1?}, resubmission at {:.1?} (cancelled with a trained epoch checkpointed: \
         {cancelled_with_checkpoint})",
        start.elapsed()
    );
}
