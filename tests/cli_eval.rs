//! End-to-end tests of `vae eval` on a freshly trained smoke run: the JSON summary, the
//! per-example CSV and the IWAE-curve PNG of each method, each read back by vae-io's typed
//! readers, the original's one-sample-per-pass layout giving the same estimate, and the
//! messages for bad arguments.

mod common;

use std::path::Path;

use common::{stderr, tiny_dataset, train_smoke, vae};
use vae_io::results::{read_csv, AisRow, BdmcRow, Estimate, EvalSummary, IsRow};
use vae_io::RunDir;

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// `vae eval --run RUN --out OUT --threads 1` plus `extra` (split at spaces).
fn eval(data: &Path, run: &Path, out: &Path, extra: &str) -> std::process::Output {
    common::eval_run(data, run, out, extra)
}

/// [`eval`] that must succeed; returns the summary JSON.
fn eval_ok(data: &Path, run: &Path, out: &Path, extra: &str) -> serde_json::Value {
    let o = eval(data, run, out, extra);
    assert!(o.status.success(), "{extra}: {}", stderr(&o));
    json(out)
}

#[test]
fn eval_writes_summary_csv_and_plot_for_each_method() {
    let dir = tempfile::tempdir().unwrap();
    tiny_dataset(dir.path(), 800, 100);
    let run = dir.path().join("run");
    let out = train_smoke(dir.path(), &run, &[]);
    assert!(out.status.success(), "{}", stderr(&out));

    // IS: summary, 30 CSV rows, the IWAE curve k = 1, 10, 100, 200 and its picture; the
    // output folder is created.
    let is = dir.path().join("evals/is.json");
    let s = eval_ok(dir.path(), &run, &is, "--k 200 --n 30");
    assert_eq!(s["method"], "is");
    assert_eq!(s["images"], 30);
    let nll = s["estimate_nll"].as_f64().unwrap();
    assert!(nll.is_finite() && nll > 0.0, "{s}");
    assert!(s["stderr"].as_f64().unwrap() > 0.0);
    let curve: Vec<(u64, f64)> = s["iwae_curve"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["k"].as_u64().unwrap(), p["nll"].as_f64().unwrap()))
        .collect();
    assert_eq!(
        curve.iter().map(|p| p.0).collect::<Vec<_>>(),
        [1, 10, 100, 200]
    );
    assert_eq!(curve[3].1, nll, "the last point is the estimate");
    // One sample is a looser bound than 200 by a margin (several nats on this barely trained
    // model) far above its noise over 30 images.
    assert!(curve[0].1 > nll, "{curve:?}");
    let csv = std::fs::read_to_string(dir.path().join("evals/is.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "index,log_px,log_px_stderr,elbo,ess,khat,log_px_mc_se,flag,ais_check_log_px,ais_log_px"
    );
    assert_eq!(lines.len(), 31);
    let mean_log_px: f64 = lines[1..]
        .iter()
        .map(|l| l.split(',').nth(1).unwrap().parse::<f64>().unwrap())
        .sum::<f64>()
        / 30.0;
    assert!((-mean_log_px - nll).abs() < 1e-9, "CSV and summary agree");
    // The typed readers: the same numbers, and the summary written back is the same JSON.
    let typed = EvalSummary::read(&is).unwrap();
    let Estimate::Is(e) = &typed.estimate else {
        panic!("{typed:?}")
    };
    assert_eq!(
        (typed.method(), typed.images, typed.nll()),
        ("is", 30, Some(nll))
    );
    assert_eq!(e.iwae_curve.len(), 4);
    assert_eq!(e.settings["num_samples"], 200);
    assert_eq!(serde_json::to_value(&typed).unwrap(), s);
    let rows = read_csv::<IsRow>(&is.with_extension("csv")).unwrap();
    assert_eq!(rows.len(), 30);
    // k = 200: a PSIS k-hat for every image and two replicate groups of 100 for its error; the
    // summary counts what the CSV shows.
    assert!(rows
        .iter()
        .all(|r| r.khat.is_some() && r.log_px_mc_se.is_some()));
    let above = |t: f64| rows.iter().filter(|r| r.khat.unwrap() > t).count();
    assert_eq!(
        (e.khat_above_0_5, e.khat_above_0_7),
        (above(0.5), above(0.7))
    );
    assert_eq!(
        e.flagged,
        rows.iter().filter(|r| !r.flag.is_empty()).count()
    );
    assert!(rows
        .iter()
        .all(|r| r.flag.contains("khat") == (r.khat.unwrap() > 0.7)));
    assert!(e.mc_stderr_replicates.is_some_and(|v| v > 0.0));
    assert!(rows.iter().enumerate().all(|(i, r)| r.index == i
        && r.log_px_stderr.is_some()
        && r.ess >= 1.0 - 1e-9
        && r.elbo <= r.log_px + 1e-9));
    let png = std::fs::read(dir.path().join("evals/is.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&png[16..24], [0, 0, 2, 208, 0, 0, 1, 204], "720 x 460");

    // --check-with-ais: a short AIS from the prior beside IS; the images where IS falls below it
    // carry the `ais` flag, and the summary counts them.
    let checked = dir.path().join("evals/checked.json");
    let c = eval_ok(
        dir.path(),
        &run,
        &checked,
        "--k 200 --n 5 --check-with-ais --replicates 4",
    );
    assert_eq!(c["settings"]["replicates"], 4);
    let typed = EvalSummary::read(&checked).unwrap();
    let Estimate::Is(c) = &typed.estimate else {
        panic!("{typed:?}")
    };
    let check = c.ais_check.as_ref().expect("the AIS check ran");
    assert_eq!((check.steps, check.chains), (300, 8));
    assert!(check.estimate_nll.is_finite());
    let rows = read_csv::<IsRow>(&checked.with_extension("csv")).unwrap();
    assert_eq!(
        rows.iter().filter(|r| r.flag.contains("ais")).count(),
        check.below
    );
    assert!(rows.iter().all(|r| r.ais_check_log_px.is_some()));
    let mean_check = rows
        .iter()
        .map(|r| r.ais_check_log_px.unwrap())
        .sum::<f64>()
        / 5.0;
    assert!((-mean_check - check.estimate_nll).abs() < 1e-9);

    // --reestimate-flagged: the flagged images (the barely trained model flags some) by a full
    // AIS from the prior with the AIS flags; the summary's NLL is the IS one with theirs
    // replaced, as the CSV's columns show.
    let re = dir.path().join("evals/re.json");
    eval_ok(
        dir.path(),
        &run,
        &re,
        "--k 200 --n 8 --check-with-ais --reestimate-flagged --steps 30 --chains 3 --leapfrog 2",
    );
    let typed = EvalSummary::read(&re).unwrap();
    let Estimate::Is(e) = &typed.estimate else {
        panic!("{typed:?}")
    };
    let rows = read_csv::<IsRow>(&re.with_extension("csv")).unwrap();
    let r = e.reestimated.as_ref().expect("re-estimated");
    assert_eq!((r.steps, r.chains, r.images), (30, 3, e.flagged));
    assert!(
        e.flagged > 0,
        "the smoke model's IS should be flagged somewhere"
    );
    assert!(rows
        .iter()
        .all(|row| row.ais_log_px.is_some() != row.flag.is_empty()));
    let mixed = rows
        .iter()
        .map(|row| row.ais_log_px.unwrap_or(row.log_px))
        .sum::<f64>()
        / 8.0;
    assert!((-mixed - r.estimate_nll).abs() < 1e-9, "{mixed} vs {r:?}");

    // The original's structure: one sample of 7 images per pass, the encoder re-run each pass.
    // Same noise, so the same estimate up to float reduction order.
    let one = dir.path().join("evals/one.json");
    let s1 = eval_ok(
        dir.path(),
        &run,
        &one,
        "--k 200 --n 30 --passes one-sample --max-rows 7",
    );
    assert_eq!(s1["settings"]["passes"], "one-sample-per-pass");
    assert!(
        (s1["estimate_nll"].as_f64().unwrap() - nll).abs() < 1e-4,
        "{} vs {nll}",
        s1["estimate_nll"]
    );

    // AIS from the prior and from the flow posterior: summary and CSV, no plot.
    for start in ["prior", "posterior"] {
        let ais = dir.path().join(format!("evals/ais-{start}.json"));
        let a = eval_ok(
            dir.path(),
            &run,
            &ais,
            &format!("--method ais --steps 20 --chains 2 --leapfrog 2 --n 5 --start {start}"),
        );
        assert_eq!(a["method"], "ais");
        assert!(a["estimate_nll"].as_f64().unwrap().is_finite(), "{a}");
        assert!(
            a["nll_mean_log_weight"].as_f64().unwrap() >= a["estimate_nll"].as_f64().unwrap(),
            "the mean log-weight is the looser bound: {a}"
        );
        let csv = std::fs::read_to_string(ais.with_extension("csv")).unwrap();
        assert_eq!(csv.lines().count(), 6);
        let typed = EvalSummary::read(&ais).unwrap();
        let Estimate::Ais(e) = &typed.estimate else {
            panic!("{typed:?}")
        };
        let t = &e.trace;
        assert!(!t.acceptance.is_empty());
        assert!([&t.step_size_mean, &t.step_size_min, &t.step_size_max]
            .iter()
            .all(|v| v.len() == t.acceptance.len()));
        assert_eq!(serde_json::to_value(&typed).unwrap(), a);
        let rows = read_csv::<AisRow>(&ais.with_extension("csv")).unwrap();
        // Two chains each: a replicate error per image, and the flags the summary counts.
        assert!(rows.iter().all(|r| r.log_px_mc_se.is_some()));
        assert!(e.mc_stderr_replicates.is_some_and(|v| v > 0.0));
        assert_eq!(
            e.flagged,
            rows.iter().filter(|r| !r.flag.is_empty()).count()
        );
        let mean = rows.iter().map(|r| r.log_px).sum::<f64>() / 5.0;
        assert!(
            (-mean - e.estimate_nll).abs() < 1e-9,
            "CSV and summary agree"
        );
        assert!(!ais.with_extension("png").exists());
    }

    // Every AIS setting of the library is a flag, and the settings written say what was used.
    let hais = dir.path().join("evals/hais.json");
    let h = eval_ok(
        dir.path(),
        &run,
        &hais,
        "--method ais --steps 20 --chains 2 --leapfrog 2 --n 3 --step-size 0.05 \
         --adaptation per-chain --target-acceptance 0.8 --momentum-refresh 0.5 --max-rows 4",
    );
    let hmc = &h["settings"]["hmc"];
    assert_eq!(
        (
            hmc["step_size"].as_f64(),
            hmc["adaptation"].as_str(),
            hmc["target_acceptance"].as_f64(),
            hmc["momentum_refresh"].as_f64(),
            h["settings"]["max_rows"].as_u64()
        ),
        (Some(0.05), Some("per_chain"), Some(0.8), Some(0.5), Some(4)),
        "{h}"
    );
    // With --adaptation fixed every move uses --step-size.
    let fixed = dir.path().join("evals/fixed.json");
    let f = eval_ok(
        dir.path(),
        &run,
        &fixed,
        "--method ais --steps 10 --chains 2 --leapfrog 2 --n 2 --step-size 0.03 --adaptation fixed",
    );
    assert_eq!(f["settings"]["hmc"]["step_size"].as_f64(), Some(0.03));
    for key in ["step_size_min", "step_size_max"] {
        let v: Vec<f64> = f["trace"][key]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert!(
            !v.is_empty() && v.iter().all(|&e| (e - 0.03).abs() < 1e-12),
            "{key}: {v:?}"
        );
    }

    // BDMC: lower bound below upper bound on simulated data.
    let bdmc = dir.path().join("evals/bdmc.json");
    let b = eval_ok(
        dir.path(),
        &run,
        &bdmc,
        "--method bdmc --steps 20 --chains 2 --leapfrog 2 --n 4",
    );
    assert!(
        b["lower_bound_log_px"].as_f64().unwrap() <= b["upper_bound_log_px"].as_f64().unwrap(),
        "{b}"
    );
    let typed = EvalSummary::read(&bdmc).unwrap();
    let Estimate::Bdmc(e) = &typed.estimate else {
        panic!("{typed:?}")
    };
    assert_eq!((typed.method(), typed.nll()), ("bdmc", None));
    assert_eq!(serde_json::to_value(&typed).unwrap(), b);
    let rows = read_csv::<BdmcRow>(&bdmc.with_extension("csv")).unwrap();
    assert_eq!(rows.len(), 4);
    let gap = rows.iter().map(|r| r.gap).sum::<f64>() / 4.0;
    assert!((gap - e.gap).abs() < 1e-9, "{gap} vs {}", e.gap);

    // Without --out: eval-<method>-<split>.json in the run folder, where RunDir finds it.
    let o = vae(
        dir.path(),
        &[
            "eval",
            "--run",
            run.to_str().unwrap(),
            "--k",
            "5",
            "--n",
            "3",
            "--threads",
            "1",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let r = RunDir::new(&run);
    let s = r.read_eval("is", "test").unwrap();
    assert_eq!(
        (s.images, s.split.as_str(), s.checkpoint.as_str()),
        (3, "test", "best")
    );
    assert!(r.eval_summary("is", "test").with_extension("csv").exists());

    // Bad arguments: a message naming the flag and the valid values, never a panic.
    let bad = |extra: &str, want: &str| {
        let o = eval(dir.path(), &run, &dir.path().join("evals/bad.json"), extra);
        assert!(!o.status.success());
        assert_ne!(o.status.code(), Some(101), "panicked: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{extra}: {}", stderr(&o));
    };
    bad("--checkpoint newest", "expected best or last");
    bad("--passes naive", "possible values: batched, one-sample");
    bad("--k 0", "num_samples");
    bad("--k 200 --replicates 300", "replicates");
    // A flag the method does not use is refused rather than silently ignored.
    bad(
        "--steps 100",
        "--steps is an AIS/BDMC setting (with IS, only --reestimate-flagged uses it)",
    );
    bad(
        "--method ais --k 10",
        "--k is an importance-sampling setting",
    );
    bad(
        "--method bdmc --passes one-sample",
        "--passes is an importance-sampling setting",
    );
    // Sizes whose buffers cannot fit are refused before any allocation.
    bad(
        "--k 100000000000",
        "--k 100000000000: its buffers alone need about",
    );
    bad("--method ais --steps 1000000000000", "more than the");
    // More threads than cores: capped, saying so.
    let o = vae(
        dir.path(),
        &[
            "eval",
            "--run",
            run.to_str().unwrap(),
            "--k",
            "10",
            "--n",
            "2",
            "--threads",
            "100000",
            "--out",
            dir.path().join("evals/threads.json").to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--threads 100000: this machine has"),
        "{}",
        stderr(&o)
    );
    // An --out that would replace a run's own files, a folder or a device is refused before any
    // estimation, and nothing is written.
    let config_before = std::fs::read(run.join("config.json")).unwrap();
    let samples_before = std::fs::read(run.join("samples.png")).unwrap();
    let refused_out = |out: &Path, want: &str| {
        let o = eval(dir.path(), &run, out, "--k 10 --n 2");
        assert_eq!(
            o.status.code(),
            Some(2),
            "{}: {}",
            out.display(),
            stderr(&o)
        );
        assert!(
            stderr(&o).contains(want),
            "{}: {}",
            out.display(),
            stderr(&o)
        );
    };
    refused_out(&run.join("config.json"), "is the run's own config.json");
    refused_out(&run.join("samples.json"), "is the run's own samples.png");
    refused_out(
        &run.join("checkpoints/eval.json"),
        "inside the checkpoints/ folder",
    );
    refused_out(&run, "is a folder");
    refused_out(Path::new("/dev/null"), "not a regular file");
    assert_eq!(
        std::fs::read(run.join("config.json")).unwrap(),
        config_before
    );
    assert_eq!(
        std::fs::read(run.join("samples.png")).unwrap(),
        samples_before
    );
    assert!(!run.join("checkpoints/eval.json").exists());
    bad("--split dev", "dev");
    bad("--method ais --momentum-refresh 1.5", "momentum_refresh");
    bad("--method ais --target-acceptance 0", "target_acceptance");
    bad(
        "--method ais --adaptation sometimes",
        "possible values: global, per-example",
    );
    bad("--method ais --chains 4 --max-rows 2", "max_rows");
    bad(
        "--method ais --check-with-ais",
        "--check-with-ais works on importance sampling's flags",
    );
    bad(
        "--method bdmc --reestimate-flagged",
        "--reestimate-flagged works on importance sampling's flags",
    );
}
