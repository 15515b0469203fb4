//! `vae eval --shard I/N` and `vae eval-merge` on a freshly trained smoke run: 60 test images
//! evaluated whole and as 4 shards (and as 1) give the same per-image CSV, byte for byte, and the
//! same summary apart from the wall times; mismatched shards are refused with a message that names
//! the difference.

mod common;

use std::path::Path;

use common::{stderr, tiny_dataset, train_smoke, vae};
use serde_json::Value;

/// `vae eval --run RUN --out OUT --threads 1` plus `extra` (split at spaces); must succeed.
fn eval(data: &Path, run: &Path, out: &Path, extra: &str) {
    let o = common::eval_run(data, run, out, extra);
    assert!(o.status.success(), "{extra}: {}", stderr(&o));
}

/// `vae eval-merge` of `shards` into `out`; returns the output.
fn merge(data: &Path, shards: &[&Path], out: &Path) -> std::process::Output {
    let mut args = vec!["eval-merge"];
    args.extend(shards.iter().map(|p| p.to_str().unwrap()));
    args.extend(["--out", out.to_str().unwrap()]);
    vae(data, &args)
}

/// The summary without what differs between a whole and a merged run: the wall times and the
/// shards' list.
fn comparable(path: &Path) -> Value {
    let mut v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let m = v.as_object_mut().unwrap();
    for k in ["wall_seconds", "ms_per_image", "shards"] {
        m.remove(k);
    }
    v
}

/// Evaluates `extra` whole into `dir/whole`, and as `n` shards into `dir/shards-n`, merged into
/// `dir/merged-n`; checks CSV and summary equal. Returns the shard summaries' paths.
fn whole_equals_merged(
    data: &Path,
    run: &Path,
    dir: &Path,
    method: &str,
    extra: &str,
    n: usize,
) -> Vec<std::path::PathBuf> {
    let whole = dir.join(format!("whole/eval-{method}-test.json"));
    if !whole.exists() {
        eval(data, run, &whole, extra);
    }
    let shard_dir = dir.join(format!("shards-{method}-{n}"));
    let mut shards = Vec::new();
    for i in 1..=n {
        let p = shard_dir.join(format!("shard-{i}-of-{n}.json"));
        eval(data, run, &p, &format!("{extra} --shard {i}/{n}"));
        let s: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        assert_eq!(s["shard"]["index"], i);
        // The shard reported its progress, finished.
        let progress: Value =
            serde_json::from_slice(&std::fs::read(p.with_extension("progress.json")).unwrap())
                .unwrap();
        assert_eq!(progress["done"], progress["total"], "{progress}");
        shards.push(p);
    }
    let merged_dir = dir.join(format!("merged-{method}-{n}"));
    let o = merge(data, &[&shard_dir], &merged_dir);
    assert!(o.status.success(), "{}", stderr(&o));
    let merged = merged_dir.join(format!("eval-{method}-test.json"));
    assert_eq!(
        std::fs::read_to_string(merged.with_extension("csv")).unwrap(),
        std::fs::read_to_string(whole.with_extension("csv")).unwrap(),
        "{method}, {n} shards: the per-image CSV"
    );
    let (a, b) = (comparable(&merged), comparable(&whole));
    if method == "ais" {
        // The traces are means over the shards weighted by their images: equal to rounding.
        let close = |k: &str| {
            let (x, y) = (
                a["trace"][k].as_array().unwrap(),
                b["trace"][k].as_array().unwrap(),
            );
            assert_eq!(x.len(), y.len());
            for (x, y) in x.iter().zip(y) {
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                assert!((x - y).abs() <= 1e-12 * y.abs().max(1.0), "{k}: {x} vs {y}");
            }
        };
        close("acceptance");
        close("step_size_mean");
        let strip = |mut v: Value| {
            for k in ["acceptance", "step_size_mean"] {
                v["trace"].as_object_mut().unwrap().remove(k);
            }
            v
        };
        assert_eq!(strip(a), strip(b), "{method}, {n} shards: the summary");
    } else {
        assert_eq!(a, b, "{method}, {n} shards: the summary");
    }
    let m: Value = serde_json::from_slice(&std::fs::read(&merged).unwrap()).unwrap();
    assert_eq!(m["shards"].as_array().unwrap().len(), n);
    if method == "is" {
        assert!(merged.with_extension("png").exists());
    }
    shards
}

#[test]
fn sharded_evaluations_merge_into_the_unsharded_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tiny_dataset(d, 800, 100);
    let run = d.join("run");
    let out = train_smoke(d, &run, &[]);
    assert!(out.status.success(), "{}", stderr(&out));

    // 5 images per model call (5000 rows of 1000 samples): shards cut at whole calls.
    let is = "--k 1000 --n 60 --max-rows 5000";
    let is_shards = whole_equals_merged(d, &run, d, "is", is, 4);
    whole_equals_merged(d, &run, d, "is", is, 1);
    // AIS: groups of 10 images share a step size (20 rows of 2 chains), so the 60 images are 6
    // units, cut 1 + 2 + 1 + 2.
    let ais = "--method ais --steps 20 --chains 2 --leapfrog 2 --n 60 --max-rows 20";
    let ais_shards = whole_equals_merged(d, &run, d, "ais", ais, 4);
    let sizes: Vec<u64> = ais_shards
        .iter()
        .map(|p| {
            let s: Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
            s["images"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(sizes, [10, 20, 10, 20]);
    let bdmc = "--method bdmc --steps 10 --chains 2 --leapfrog 2 --n 20 --max-rows 10";
    whole_equals_merged(d, &run, d, "bdmc", bdmc, 2);

    // Mismatched shards: each refusal names the difference.
    let refused = |shards: &[&Path], want: &str| {
        let o = merge(d, shards, &d.join("refused"));
        assert!(!o.status.success());
        assert_ne!(o.status.code(), Some(101), "panicked: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{want}: {}", stderr(&o));
    };
    let other_seed = d.join("other/shard-2-of-4.json");
    eval(d, &run, &other_seed, &format!("{is} --shard 2/4 --seed 7"));
    refused(&[&is_shards[0], &other_seed], "settings");
    let other_ck = d.join("other-ck/shard-2-of-4.json");
    eval(
        d,
        &run,
        &other_ck,
        &format!("{is} --shard 2/4 --checkpoint last"),
    );
    refused(&[&is_shards[0], &other_ck], "checkpoint");
    refused(
        &[&is_shards[0], &is_shards[1], &is_shards[3]],
        "3/4 missing",
    );
    refused(&[&is_shards[0], &is_shards[0]], "given twice");
    refused(&[&is_shards[0], &ais_shards[1]], "method");
    let whole = d.join("whole/eval-is-test.json");
    refused(&[&whole], "not a shard summary");

    // Bad --shard values and shard counts: a message, never a panic.
    let bad = |extra: &str, want: &str| {
        let mut args = vec!["eval", "--run", run.to_str().unwrap(), "--threads", "1"];
        args.extend(extra.split_whitespace());
        let o = vae(d, &args);
        assert!(!o.status.success());
        assert_ne!(o.status.code(), Some(101), "panicked: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{extra}: {}", stderr(&o));
    };
    bad("--n 10 --shard 0/4", "is not I/N");
    bad("--n 10 --shard 5/4", "is not I/N");
    bad("--n 10 --shard two", "is not I/N");
    bad(
        "--method ais --n 30 --chains 2 --max-rows 20 --shard 1/4",
        "use at most 3 shards",
    );
    bad("--n 10 --k 0 --shard 1/2", "num_samples");
    bad("--method ais --chains 0 --n 10 --shard 1/2", "num_chains");
    bad(
        "--n 10 --shard 1/2 --reestimate-flagged",
        "--reestimate-flagged with --shard",
    );
}
