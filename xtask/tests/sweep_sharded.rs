//! `cargo xtask sweep` with a sharded evaluation (`eval.shards`), local backend, end to end on a
//! tiny dataset: each trained run is evaluated in 2 `vae eval --shard I/2` processes and merged
//! into its folder, the merged CSV equals one unsharded `vae eval` of the run byte for byte, the
//! summary reads the merged files, a re-run merges from the finished shards without evaluating
//! them again, and a bad `eval.shards` is named with its key.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{
    build_vae, folder, mtime, root, summary_run_column, text, tiny_dataset, xtask, Folder,
};

const RUNS: [&str; 2] = ["seed=1", "seed=2"];

/// The sweep file: 2 runs of one short epoch, IS with k=20 on 40 test images in 2 shards (of 2
/// model calls of 10 images each: `--max-rows 200`).
fn sweep_file(dir: &Path, shards: serde_json::Value) -> std::path::PathBuf {
    let file = dir.join("sharded.json");
    std::fs::write(
        &file,
        serde_json::json!({
            "name": "sharded",
            "base": root().join("configs/smoke.json"),
            "set": {"train.epochs": 1, "data.validation": 500},
            "seeds": [1, 2],
            "eval": {
                "method": "is", "k": 20, "n": 40, "args": ["--max-rows", "200"], "shards": shards,
            },
            "jobs": 2,
        })
        .to_string(),
    )
    .unwrap();
    file
}

#[test]
fn a_sharded_sweep_evaluation_equals_an_unsharded_one_and_resumes() {
    let start = Instant::now();
    let vae = build_vae();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // 1000 training and 500 validation images (10 steps an epoch), 100 test images.
    tiny_dataset(&data, 1500, 100);
    let file = sweep_file(tmp.path(), 2.into());
    let out = tmp.path().join("out");
    let args = [
        "sweep",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--threads",
        "1",
        "--vae",
        vae.to_str().unwrap(),
    ];

    // 1. The sweep: training, then the sharded evaluations, then the summary.
    let o = xtask(&data, &args).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("evaluating 2 trained run(s) in 2 shards each"),
        "{stderr}"
    );
    let swept = start.elapsed();
    for name in RUNS {
        let dir = out.join(name);
        assert_eq!(folder(&dir), Folder::Complete, "{name}\n{stderr}");
        let shards = dir.join("shards/eval-is-test");
        for i in 1..=2 {
            assert!(
                shards.join(format!("shard-{i}-of-2.json")).is_file(),
                "{name}: no shard {i}/2\n{stderr}"
            );
        }
        // The training job evaluated nothing itself: its log has no plain `vae eval`.
        let log = std::fs::read_to_string(out.join(format!("logs/{name}.txt"))).unwrap();
        assert!(
            log.lines()
                .filter(|l| l.starts_with("$ "))
                .all(|l| !l.contains(" eval ")),
            "{log}"
        );

        // One unsharded `vae eval` with the same settings writes the same CSV.
        let whole = tmp.path().join(format!("whole-{name}/eval-is-test.json"));
        std::fs::create_dir_all(whole.parent().unwrap()).unwrap();
        let o = Command::new(&vae)
            .args(["eval", "--run", dir.to_str().unwrap()])
            .args([
                "--method", "is", "--split", "test", "--k", "20", "--n", "40",
            ])
            .args([
                "--max-rows",
                "200",
                "--device",
                "cpu",
                "--threads",
                "1",
                "--out",
            ])
            .arg(&whole)
            .env("FLOWVAE_DATA", &data)
            .current_dir(root())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        let merged = std::fs::read(dir.join("eval-is-test.csv")).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&merged),
            std::fs::read_to_string(whole.with_extension("csv")).unwrap(),
            "{name}: the merged CSV differs from an unsharded vae eval's"
        );
        let estimate = |p: &Path| -> serde_json::Value {
            let v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
            v["estimate_nll"].clone()
        };
        assert_eq!(
            estimate(&dir.join("eval-is-test.json")),
            estimate(&whole),
            "{name}"
        );
    }

    // 2. The summary reads the merged evaluations.
    let csv = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    let nll = summary_run_column(&out, "test_nll");
    assert_eq!(nll.len(), 2, "{csv}");
    for (name, nll) in RUNS.iter().zip(&nll) {
        let v: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join(name).join("eval-is-test.json")).unwrap(),
        )
        .unwrap();
        let want = v["estimate_nll"].as_f64().unwrap();
        let got: f64 = nll.parse().unwrap_or_else(|_| panic!("{csv}"));
        assert!(
            (got - want).abs() <= 1e-3 * want.abs(),
            "{name}: {got} vs {want}\n{csv}"
        );
    }
    assert_eq!(
        summary_run_column(&out, "nll_images"),
        ["40", "40"],
        "{csv}"
    );
    assert!(
        csv.lines()
            .filter(|l| l.starts_with("run,"))
            .all(|l| l.ends_with(",done")),
        "{csv}"
    );

    // 3. Resumption: with seed=2's merged files gone, a re-run merges its finished shards again
    //    without evaluating them or training anything; seed=1 is left alone.
    let kept = mtime(&out.join("seed=1/eval-is-test.json"));
    let shard = out.join("seed=2/shards/eval-is-test/shard-1-of-2.json");
    let shard_time = mtime(&shard);
    let merged_csv = std::fs::read(out.join("seed=2/eval-is-test.csv")).unwrap();
    std::fs::remove_file(out.join("seed=2/eval-is-test.json")).unwrap();
    std::fs::remove_file(out.join("seed=2/eval-is-test.csv")).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let o = xtask(&data, &args).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("2 already finished, 0 to do"), "{stderr}");
    assert!(
        stderr.contains("evaluating 1 trained run(s) in 2 shards each"),
        "{stderr}"
    );
    assert!(stderr.contains("2 finished, 0 to evaluate"), "{stderr}");
    assert_eq!(
        mtime(&shard),
        shard_time,
        "a finished shard was evaluated again"
    );
    assert_eq!(mtime(&out.join("seed=1/eval-is-test.json")), kept);
    assert_eq!(
        std::fs::read(out.join("seed=2/eval-is-test.csv")).unwrap(),
        merged_csv
    );

    // 4. A third invocation has nothing to do.
    let o = xtask(&data, &args).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!stderr.contains("evaluating"), "{stderr}");
    eprintln!(
        "sweep with sharded evaluations: {swept:.1?}; whole test {:.1?}",
        start.elapsed()
    );
}

#[test]
fn a_bad_eval_shards_is_named_with_its_key() {
    for (shards, want) in [
        (
            serde_json::json!(0),
            "`eval.shards`: expected an integer from 1 to 10000, found 0",
        ),
        (
            serde_json::json!("two"),
            "`eval.shards`: expected an integer from 1 to 10000, found \"two\"",
        ),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let file = sweep_file(tmp.path(), shards);
        let o = xtask(tmp.path(), &["sweep", file.to_str().unwrap(), "--dry-run"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("sharded.json") && err.contains(want), "{err}");
    }
}
