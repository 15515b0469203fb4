//! The result-file types: every type written and read back equal, NaN as `null`, the key order
//! `vae` has always written, and malformed files reported with the file, the place and the key.

use std::path::Path;

use serde_json::json;
use vae_io::results::{
    read_csv, write_csv, AisEstimate, AisRow, AisTrace, BdmcEstimate, BdmcRow, EpochMetrics,
    Estimate, EvalSummary, IsEstimate, IsRow, IwaePoint, Progress, SplitElbo, TrainResults,
    BDMC_SIMULATED_DATA,
};
use vae_io::{Error, RunDir};

fn elbo(neg_elbo: f64, images: usize) -> SplitElbo {
    SplitElbo {
        neg_elbo,
        rec: neg_elbo - 20.0,
        kl: 20.0,
        images,
    }
}

fn train_results() -> TrainResults {
    TrainResults {
        checkpoint: "best".into(),
        best_epoch: Some(2),
        validation: Some(elbo(140.2214106440544, 1000)),
        test: elbo(139.09203732509613, 10000),
        test_binarization: "fixed".into(),
    }
}

fn epoch(epoch: usize, best: bool) -> EpochMetrics {
    EpochMetrics {
        epoch,
        epochs: 3,
        global_step: 5 * epoch as u64,
        train_neg_elbo: 210.577 - epoch as f64,
        train_rec: 182.621,
        train_kl: 27.956,
        warmup: 0.5,
        lr: 1e-3,
        grad_norm: 12.5,
        validation: Some(elbo(158.437, 200)),
        best,
        skipped: 0,
        seconds: 4.5 + epoch as f64,
        end_time: "2026-12-05T19:32:33Z".into(),
    }
}

fn is_summary() -> EvalSummary {
    EvalSummary {
        split: "test".into(),
        images: 1,
        checkpoint: "best".into(),
        wall_seconds: 0.042423342,
        ms_per_image: 42.423342000000005,
        estimate: Estimate::Is(IsEstimate {
            estimate_nll: 98.60035280280047,
            stderr: None,
            mc_stderr: Some(0.31147909098353005),
            mc_stderr_replicates: None,
            khat_above_0_5: 0,
            khat_above_0_7: 0,
            flagged: 0,
            ais_check: None,
            reestimated: None,
            neg_elbo: 98.79234161376954,
            neg_elbo_stderr: None,
            iwae_curve: vec![
                IwaePoint {
                    k: 1,
                    nll: 98.24940967559814,
                    nll_stderr: None,
                },
                IwaePoint {
                    k: 5,
                    nll: 98.60035280280047,
                    nll_stderr: None,
                },
            ],
            settings: json!({"max_rows": 20000, "num_samples": 5, "passes": "batched", "seed": 0}),
        }),
        shard: None,
        shards: None,
    }
}

fn ais_summary() -> EvalSummary {
    EvalSummary {
        split: "validation".into(),
        images: 5,
        checkpoint: "last".into(),
        wall_seconds: 0.03,
        ms_per_image: 6.0,
        estimate: Estimate::Ais(AisEstimate {
            estimate_nll: 276.5637789346395,
            stderr: Some(30.5),
            mc_stderr: Some(0.447213595499958),
            mc_stderr_replicates: Some(0.5),
            flagged: 1,
            nll_mean_log_weight: 366.04518855171875,
            trace: AisTrace {
                acceptance: vec![0.5, 0.75],
                step_size_mean: vec![0.01, 0.0102],
                step_size_min: vec![0.01, 0.0101],
                step_size_max: vec![0.01, 0.0103],
            },
            settings: json!({"num_chains": 2, "schedule": {"kind": "sigmoid", "radius": 4.0}}),
        }),
        shard: None,
        shards: None,
    }
}

fn bdmc_summary() -> EvalSummary {
    EvalSummary {
        split: "test".into(),
        images: 4,
        checkpoint: "best".into(),
        wall_seconds: 0.026361465,
        ms_per_image: 6.59036625,
        estimate: Estimate::Bdmc(BdmcEstimate {
            lower_bound_log_px: -258.8906557060466,
            upper_bound_log_px: -84.21265408721209,
            gap: 174.67800161883446,
            gap_stderr: Some(25.628024114551952),
            settings: json!({"anneal_steps": 10}),
            data: BDMC_SIMULATED_DATA.into(),
        }),
        shard: None,
        shards: None,
    }
}

#[test]
fn train_results_round_trip_with_sorted_keys() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("results.json");
    let r = train_results();
    r.write(&p).unwrap();
    assert_eq!(TrainResults::read(&p).unwrap(), r);
    // The bytes `vae` wrote with `serde_json::json!` before the type existed.
    let text = std::fs::read_to_string(&p).unwrap();
    let old = json!({
        "checkpoint": "best",
        "best_epoch": 2,
        "validation": r.validation,
        "test": r.test,
        "test_binarization": "fixed",
    });
    let mut want = serde_json::to_string_pretty(&old).unwrap();
    want.push('\n');
    assert_eq!(text, want);
    assert!(text.starts_with("{\n  \"best_epoch\": 2,\n  \"checkpoint\""));

    // No validation split and no epoch: nulls, read back as None.
    let none = TrainResults {
        best_epoch: None,
        validation: None,
        ..r
    };
    none.write(&p).unwrap();
    assert_eq!(TrainResults::read(&p).unwrap(), none);
    assert_eq!(RunDir::new(dir.path()).read_results().unwrap(), none);
}

#[test]
fn nan_is_written_as_null_and_read_back_as_nan() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("results.json");
    let mut r = train_results();
    r.test.neg_elbo = f64::NAN;
    r.test.kl = f64::INFINITY;
    r.write(&p).unwrap();
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(text.contains("\"neg_elbo\": null"), "{text}");
    let back = TrainResults::read(&p).unwrap();
    assert!(back.test.neg_elbo.is_nan() && back.test.kl.is_nan());
    assert_eq!(back.test.rec, r.test.rec);
}

#[test]
fn metrics_lines_append_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("metrics.jsonl");
    assert!(matches!(EpochMetrics::read_all(&p), Err(Error::Io { .. })));
    let lines = [epoch(1, true), epoch(2, false), epoch(3, true)];
    for (i, m) in lines.iter().enumerate() {
        m.append(&p).unwrap();
        assert_eq!(EpochMetrics::read_all(&p).unwrap(), lines[..=i]);
    }
    let text = std::fs::read_to_string(&p).unwrap();
    assert_eq!(text.lines().count(), 3);
    assert!(text.ends_with("}\n"));
    assert!(text.starts_with("{\"epoch\":1,\"epochs\":3,\"global_step\":5,"));
    // Nothing but the file: no temporary file is left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    let p2 = Progress::read(&p).unwrap().unwrap();
    assert_eq!(p2.epochs_done, 3);
    assert_eq!(p2.epochs_total, 3);
    assert_eq!(p2.epochs_run, 3);
    assert_eq!(p2.best_epoch, Some(3));
    assert_eq!(p2.seconds, 5.5 + 6.5 + 7.5);
    assert_eq!(p2.seconds_per_epoch(), 6.5);
    assert_eq!(p2.fraction(), 1.0);
    assert_eq!(Progress::of(&[]), None);
    assert_eq!(lines[0].valid_neg_elbo(), Some(158.437));

    // A NaN loss (every step skipped) is a null, read back as NaN.
    let mut nan = epoch(4, false);
    nan.train_neg_elbo = f64::NAN;
    nan.validation = None;
    nan.append(&p).unwrap();
    let all = EpochMetrics::read_all(&p).unwrap();
    assert!(all[3].train_neg_elbo.is_nan());
    assert_eq!(all[3].validation, None);
}

#[test]
fn eval_summaries_round_trip_as_one_flat_object() {
    let dir = tempfile::tempdir().unwrap();
    for s in [is_summary(), ais_summary(), bdmc_summary()] {
        let p = dir.path().join(format!("eval-{}-test.json", s.method()));
        s.write(&p).unwrap();
        assert_eq!(EvalSummary::read(&p).unwrap(), s);
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        assert_eq!(v["method"], s.method());
        assert_eq!(v["images"], s.images);
        // serde's own entry point agrees with the reader.
        let via_serde: EvalSummary = serde_json::from_value(v).unwrap();
        assert_eq!(via_serde, s);
    }
    assert_eq!(is_summary().nll(), Some(98.60035280280047));
    assert_eq!(is_summary().nll_stderr(), None);
    assert_eq!(ais_summary().nll_stderr(), Some(30.5));
    assert_eq!(bdmc_summary().nll(), None);
    assert_eq!(bdmc_summary().settings()["anneal_steps"], 10);
}

#[test]
fn an_is_summary_has_the_bytes_vae_wrote_before() {
    // The file `vae eval --k 5 --n 1` wrote with `serde_json::json!`, before the type existed
    // and before the PSIS and replicate keys: it still reads, and written back it has the same
    // bytes once those four keys are taken out.
    let before = r#"{
  "checkpoint": "best",
  "estimate_nll": 98.60035280280047,
  "images": 1,
  "iwae_curve": [
    {
      "k": 1,
      "nll": 98.24940967559814,
      "nll_stderr": null
    },
    {
      "k": 5,
      "nll": 98.60035280280047,
      "nll_stderr": null
    }
  ],
  "mc_stderr": 0.31147909098353005,
  "method": "is",
  "ms_per_image": 42.423342000000005,
  "neg_elbo": 98.79234161376954,
  "neg_elbo_stderr": null,
  "settings": {
    "max_rows": 20000,
    "num_samples": 5,
    "passes": "batched",
    "seed": 0
  },
  "split": "test",
  "stderr": null,
  "wall_seconds": 0.042423342
}
"#;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("eval-is-test.json");
    std::fs::write(&p, before).unwrap();
    let s = EvalSummary::read(&p).unwrap();
    assert_eq!(s, is_summary());
    s.write(&p).unwrap();
    let written = std::fs::read_to_string(&p).unwrap();
    let new_keys = [
        "  \"flagged\": 0,\n",
        "  \"khat_above_0_5\": 0,\n",
        "  \"khat_above_0_7\": 0,\n",
        "  \"mc_stderr_replicates\": null,\n",
    ];
    for k in new_keys {
        assert!(written.contains(k), "{k} in {written}");
    }
    let without = new_keys.iter().fold(written, |w, k| w.replace(k, ""));
    assert_eq!(without, before);
}

#[test]
fn csv_rows_round_trip_with_the_columns_of_before_then_the_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("is.csv");
    let is = vec![
        IsRow {
            index: 0,
            log_px: -97.17213116621068,
            log_px_stderr: Some(0.2183440332991098),
            elbo: -98.09222426891327,
            ess: 14.987867050392602,
            khat: Some(0.41),
            log_px_mc_se: Some(0.25),
            flag: String::new(),
            ais_check_log_px: Some(-97.5),
            ais_log_px: None,
        },
        IsRow {
            index: 1,
            log_px: -193.5,
            log_px_stderr: None,
            elbo: -195.0,
            ess: 1.0,
            khat: None,
            log_px_mc_se: None,
            flag: "khat;ess".into(),
            ais_check_log_px: None,
            ais_log_px: Some(-190.25),
        },
    ];
    write_csv(&p, &is).unwrap();
    assert_eq!(
        std::fs::read_to_string(&p).unwrap(),
        "index,log_px,log_px_stderr,elbo,ess,khat,log_px_mc_se,flag,ais_check_log_px,ais_log_px\n\
         0,-97.17213116621068,0.2183440332991098,-98.09222426891327,14.987867050392602,0.41,0.25,,\
         -97.5,\n\
         1,-193.5,,-195,1,,,khat;ess,,-190.25\n"
    );
    assert_eq!(read_csv::<IsRow>(&p).unwrap(), is);

    let ais = vec![AisRow {
        index: 0,
        log_px: -173.1468866825112,
        log_px_stderr: Some(1.0),
        mean_log_weight: -340.3309037773251,
        ess: 1.0,
        log_px_mc_se: Some(2.5),
        flag: "spread;ess".into(),
    }];
    write_csv(&p, &ais).unwrap();
    assert!(std::fs::read_to_string(&p).unwrap().starts_with(
        "index,log_px,log_px_stderr,mean_log_weight,ess,log_px_mc_se,flag\n\
             0,-173.1468866825112,1,"
    ));
    assert_eq!(read_csv::<AisRow>(&p).unwrap(), ais);

    let bdmc = vec![BdmcRow {
        index: 0,
        forward_log_px: -309.2440190005247,
        reverse_log_px: f64::NEG_INFINITY,
        gap: f64::INFINITY,
    }];
    write_csv(&p, &bdmc).unwrap();
    assert_eq!(
        std::fs::read_to_string(&p).unwrap(),
        "index,forward_log_px,reverse_log_px,gap\n0,-309.2440190005247,-inf,inf\n"
    );
    assert_eq!(read_csv::<BdmcRow>(&p).unwrap(), bdmc);
    // Another method's rows: the header says so.
    let msg = read_csv::<IsRow>(&p).unwrap_err().to_string();
    assert!(
        msg.starts_with(&format!("{}:1: column `header`", p.display())),
        "{msg}"
    );
}

/// The message of reading `text` as `path` with `read`.
fn message<T: std::fmt::Debug>(
    path: &Path,
    text: &str,
    read: impl Fn(&Path) -> vae_io::Result<T>,
) -> (Error, String) {
    std::fs::write(path, text).unwrap();
    let e = read(path).unwrap_err();
    let m = e.to_string();
    assert!(m.contains(&path.display().to_string()), "{m}");
    (e, m)
}

#[test]
fn malformed_files_name_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("results.json");

    // Not JSON: the place, no key.
    let (e, m) = message(&p, "{\n  \"checkpoint\": \"best\",\n  oops\n}\n", |p| {
        TrainResults::read(p)
    });
    assert!(matches!(e, Error::NotJson { line: Some(3), .. }), "{m}");
    assert!(m.starts_with(&format!("{}:3:", p.display())), "{m}");

    // A value of the wrong type, deep down: its key path.
    let mut v = serde_json::to_value(train_results()).unwrap();
    v["test"]["neg_elbo"] = json!("low");
    let (e, m) = message(&p, &serde_json::to_string_pretty(&v).unwrap(), |p| {
        TrainResults::read(p)
    });
    match &e {
        Error::BadKey { key, .. } => assert_eq!(key, "test.neg_elbo", "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(
        m.contains("key `test.neg_elbo`: invalid type: string \"low\""),
        "{m}"
    );

    // A missing key and an unknown one.
    let mut v = serde_json::to_value(train_results()).unwrap();
    v["validation"].as_object_mut().unwrap().remove("images");
    let (_, m) = message(&p, &v.to_string(), TrainResults::read);
    assert!(
        m.contains("key `validation.images`: missing field `images`"),
        "{m}"
    );
    let mut v = serde_json::to_value(train_results()).unwrap();
    v["tset"] = json!(1);
    let (_, m) = message(&p, &v.to_string(), TrainResults::read);
    assert!(m.contains("key `tset`: unknown field `tset`"), "{m}");

    // metrics.jsonl: the file's line number and the key.
    let p = dir.path().join("metrics.jsonl");
    let good = epoch(1, true).to_line();
    let bad = good.replace("\"lr\":0.001", "\"lr\":\"fast\"");
    let (e, m) = message(&p, &format!("{good}\n{bad}\n"), |p| {
        EpochMetrics::read_all(p)
    });
    assert!(
        matches!(&e, Error::BadKey { line: Some(2), key, .. } if key == "lr"),
        "{m}"
    );
    assert!(m.starts_with(&format!("{}:2:", p.display())), "{m}");
    // A half line (which the atomic writer never leaves) is an error, not skipped.
    let (e, m) = message(&p, &format!("{good}\n{}", &good[..40]), |p| {
        EpochMetrics::read_all(p)
    });
    assert!(matches!(e, Error::NotJson { line: Some(2), .. }), "{m}");

    // Eval summaries: the method, the common keys and the estimate's.
    let p = dir.path().join("eval-is-test.json");
    let summary = serde_json::to_value(is_summary()).unwrap();
    let edit = |f: &dyn Fn(&mut serde_json::Map<String, serde_json::Value>)| {
        let mut v = summary.clone();
        f(v.as_object_mut().unwrap());
        v.to_string()
    };
    let key_of = |text: String| -> String {
        match message(&p, &text, EvalSummary::read) {
            (Error::BadKey { key, .. }, _) => key,
            (other, m) => panic!("{other:?}: {m}"),
        }
    };
    assert_eq!(key_of(edit(&|o| drop(o.remove("method")))), "method");
    assert_eq!(
        key_of(edit(&|o| drop(o.insert("method".into(), json!("vi"))))),
        "method"
    );
    assert_eq!(
        key_of(edit(&|o| drop(o.remove("wall_seconds")))),
        "wall_seconds"
    );
    assert_eq!(
        key_of(edit(&|o| drop(o.remove("estimate_nll")))),
        "estimate_nll"
    );
    assert_eq!(
        key_of(edit(&|o| drop(o.insert("extra".into(), json!(1))))),
        "extra"
    );
    assert_eq!(
        key_of(edit(&|o| o["iwae_curve"][1]["k"] = json!(-5))),
        "iwae_curve[1].k"
    );
    // An AIS key in an IS summary is unknown there.
    assert_eq!(
        key_of(edit(&|o| drop(
            o.insert("nll_mean_log_weight".into(), json!(1.0))
        ))),
        "nll_mean_log_weight"
    );
    let (_, m) = message(&p, "[1, 2]", EvalSummary::read);
    assert!(m.contains("expected an object"), "{m}");

    // CSV: the line and the column.
    let p = dir.path().join("eval-is-test.csv");
    let (_, m) = message(
        &p,
        "index,log_px,log_px_stderr,elbo,ess,khat,log_px_mc_se,flag\n0,-1,,-2,3,,,\n1,-1,0.5,x,3,,,\n",
        read_csv::<IsRow>,
    );
    assert!(
        m.starts_with(&format!(
            "{}:3: column `elbo`: `x` is not a number",
            p.display()
        )),
        "{m}"
    );
    let header = "index,log_px,log_px_stderr,elbo,ess,khat,log_px_mc_se,flag\n";
    let (_, m) = message(&p, &format!("{header}0,-1,,-2\n"), read_csv::<IsRow>);
    assert!(m.contains(":2: column `ess`: 4 cells, expected 8"), "{m}");
    let (_, m) = message(
        &p,
        &format!("{header}0,-1,,-2,3,,,often\n"),
        read_csv::<IsRow>,
    );
    assert!(
        m.contains(":2: column `flag`: `often` is not a `;`-joined list of khat, ess, ais"),
        "{m}"
    );
    let (_, m) = message(&p, "index,log_px,elbo\n", read_csv::<IsRow>);
    assert!(
        m.contains(":1: column `header`: `index,log_px,elbo`, expected"),
        "{m}"
    );
}

/// Files written before the newer columns read back with those cells empty.
#[test]
fn csv_files_of_older_versions_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("eval-is-test.csv");
    std::fs::write(&p, "index,log_px,log_px_stderr,elbo,ess\n0,-1,0.5,-2,3\n").unwrap();
    let rows = read_csv::<IsRow>(&p).unwrap();
    assert_eq!(rows[0].ess, 3.0);
    assert_eq!((rows[0].khat, rows[0].flag.as_str()), (None, ""));
    std::fs::write(
        &p,
        "index,log_px,log_px_stderr,mean_log_weight,ess\n0,-1,,-2,3\n",
    )
    .unwrap();
    let rows = read_csv::<AisRow>(&p).unwrap();
    assert_eq!((rows[0].log_px_mc_se, rows[0].flag.as_str()), (None, ""));
    // A line with the new header's cell count under the old header is still an error.
    std::fs::write(
        &p,
        "index,log_px,log_px_stderr,mean_log_weight,ess\n0,-1,,-2,3,,\n",
    )
    .unwrap();
    let m = read_csv::<AisRow>(&p).unwrap_err().to_string();
    assert!(m.contains("7 cells, expected 5"), "{m}");
}
