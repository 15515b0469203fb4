//! `vae eval --model FILE.pt --data FILE`: the estimators on TorchScript modules that flowvae
//! did not train, end to end through the binary, against the exact `log p(x)` of the fixtures
//! in `crates/vae-eval/tests/fixtures/torchscript/` (made once by `make_fixtures.py` there; no
//! Python runs here), and each malformed module or data file with its message.

mod common;

use std::path::{Path, PathBuf};

use common::{stderr, vae};
use serde_json::Value;
use vae_io::results::{read_csv, AisRow, Estimate, EvalSummary, IsRow};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../vae-eval/tests/fixtures/torchscript")
        .join(name)
}

fn exact_mean(model: &str) -> f64 {
    let v: Value =
        serde_json::from_slice(&std::fs::read(fixture("answers.json")).unwrap()).unwrap();
    let lp: Vec<f64> = serde_json::from_value(v[model]["log_px"].clone()).unwrap();
    lp.iter().sum::<f64>() / lp.len() as f64
}

/// `vae eval --model M --data D --out OUT --threads 1 EXTRA`.
fn eval(dir: &Path, model: &str, data: &str, out: &Path, extra: &str) -> std::process::Output {
    let (m, d) = (fixture(model), fixture(data));
    let mut args = vec![
        "eval",
        "--model",
        m.to_str().unwrap(),
        "--data",
        d.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--threads",
        "1",
    ];
    args.extend(extra.split_whitespace());
    vae(dir, &args)
}

#[test]
fn a_torchscript_module_is_evaluated_like_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // IS with the module's proposal, k = 1000: within 3 Monte Carlo errors of the closed form
    // (the Jensen bias is below a tenth of the error, see crates/vae-eval/tests/torchscript.rs).
    let is = d.join("lg/eval-is.json");
    let o = eval(
        d,
        "linear_gaussian.pt",
        "linear_gaussian_x.npy",
        &is,
        "--k 1000",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let s = EvalSummary::read(&is).unwrap();
    let Estimate::Is(e) = &s.estimate else {
        panic!("{s:?}")
    };
    let err = -e.estimate_nll - exact_mean("linear_gaussian");
    let se = e.mc_stderr_replicates.unwrap();
    assert!(err.abs() < 3.0 * se, "IS off by {err}, se {se}");
    assert_eq!(s.images, 64);
    assert!(
        s.checkpoint.ends_with("linear_gaussian.pt"),
        "{}",
        s.checkpoint
    );
    assert!(s.split.contains("linear_gaussian_x.npy"), "{}", s.split);
    assert_eq!(
        read_csv::<IsRow>(&is.with_extension("csv")).unwrap().len(),
        64
    );
    assert!(is.with_extension("png").exists());

    // AIS from the module's own prior on the same binary images as uint8 .npy and as
    // .safetensors: within 0.05 nats of the quadrature value, and the same estimates.
    let mut means = Vec::new();
    for data in ["bernoulli_x.npy", "bernoulli_x.safetensors"] {
        let ais = d.join(format!("b/{data}.json"));
        let o = eval(
            d,
            "bernoulli.pt",
            data,
            &ais,
            "--method ais --steps 500 --chains 16 --leapfrog 5 --step-size 0.1",
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let s = EvalSummary::read(&ais).unwrap();
        let err = -s.nll().unwrap() - exact_mean("bernoulli");
        assert!(err.abs() < 0.05, "{data}: AIS off by {err}");
        let rows = read_csv::<AisRow>(&ais.with_extension("csv")).unwrap();
        means.push(rows.iter().map(|r| r.log_px).sum::<f64>());
    }
    assert_eq!(means[0], means[1], "the two files hold the same images");

    // BDMC on data the module simulates: the bounds bracket log p(x), up to 3 standard errors
    // of their gap (16 examples, 300 steps: the gap is small and noisy).
    let bdmc = d.join("b/bdmc.json");
    let o = eval(
        d,
        "bernoulli.pt",
        "bernoulli_x.npy",
        &bdmc,
        "--method bdmc --steps 300 --chains 8 --leapfrog 5 --step-size 0.1 --n 16",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let s = EvalSummary::read(&bdmc).unwrap();
    let Estimate::Bdmc(b) = &s.estimate else {
        panic!("{s:?}")
    };
    assert!(
        b.lower_bound_log_px <= b.upper_bound_log_px + 3.0 * b.gap_stderr.unwrap(),
        "{b:?}"
    );

    // Without --out the summary goes beside the module; here, into a copy of it.
    let copy = d.join("mine.pt");
    std::fs::copy(fixture("linear_gaussian.pt"), &copy).unwrap();
    let data = fixture("linear_gaussian_x.npy");
    let o = vae(
        d,
        &[
            "eval",
            "--model",
            copy.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--k",
            "10",
            "--n",
            "3",
            "--threads",
            "1",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(d.join("mine.eval-is.json").exists());
}

#[test]
fn malformed_modules_and_data_are_refused_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("bad.json");
    let refused = |model: &str, data: &str, extra: &str, want: &str| {
        let o = eval(d, model, data, &out, extra);
        assert_eq!(o.status.code(), Some(2), "{model} {extra}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{model} {extra}: {}", stderr(&o));
        assert!(!out.exists(), "nothing written");
    };
    let lg = "linear_gaussian_x.npy";
    refused(
        "broken_no_log_likelihood.pt",
        lg,
        "",
        "has no `log_likelihood(x, z)`",
    );
    refused(
        "broken_wrong_shape.pt",
        lg,
        "",
        "expected [2] (one value per row)",
    );
    refused(
        "broken_wrong_dtype.pt",
        lg,
        "",
        "expected a floating-point one",
    );
    refused("broken_nan.pt", lg, "", "returned NaN or an infinity");
    refused(
        "broken_not_torchscript.pt",
        lg,
        "",
        "not a TorchScript module",
    );
    refused(
        "broken_newer_version.pt",
        lg,
        "",
        "Attempted to read a PyTorch file with version 99",
    );
    refused(
        "linear_gaussian.pt",
        lg,
        "--method bdmc",
        "needs `sample_data(z)",
    );
    refused(
        "linear_gaussian.pt",
        lg,
        "--method ais --start base",
        "use --start prior",
    );
    refused(
        "linear_gaussian.pt",
        lg,
        "--latent-dim 5",
        "--latent-dim says the latent size is 5",
    );
    refused(
        "linear_gaussian.pt",
        lg,
        "--binarize fixed",
        "outside [0, 1]",
    );
    refused("linear_gaussian.pt", "answers.json", "", "unknown format");
    refused(
        "linear_gaussian.pt",
        "bernoulli_x.npy",
        "",
        "method `propose`: RuntimeError: The size of tensor a (16) must match the size of \
         tensor b (6) at non-singleton dimension 1 (File \"",
    );
    // --model without --data, and --run with --model: clap's messages.
    let m = fixture("linear_gaussian.pt");
    let o = vae(d, &["eval", "--model", m.to_str().unwrap()]);
    assert!(
        !o.status.success() && stderr(&o).contains("--data"),
        "{}",
        stderr(&o)
    );
    let o = vae(
        d,
        &[
            "eval",
            "--model",
            m.to_str().unwrap(),
            "--run",
            "x",
            "--data",
            "y",
        ],
    );
    assert!(
        !o.status.success() && stderr(&o).contains("cannot be used with"),
        "{}",
        stderr(&o)
    );
}
