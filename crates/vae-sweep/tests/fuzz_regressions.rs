//! Regression tests for what the `sweep` fuzz target (`fuzz/`) found in sweep files: each input is
//! rebuilt here.

use serde_json::{json, Value};
use vae_sweep::{SpecError, Sweep};

/// Parses the sweep as the fuzz target does, from text; a JSON value (`Sweep::from_value`) must
/// give the same sweep or the same error (without the text's line and column).
fn parse(v: Value) -> Result<Sweep, SpecError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("base.json"), "{}").unwrap();
    let text = Sweep::parse(&v.to_string(), "fuzz", dir.path());
    let value = Sweep::from_value(&v, "fuzz", dir.path());
    match (&text, &value) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(a), Err(b)) => {
            let (a, b) = (a.to_string(), b.to_string());
            assert!(a.starts_with(&b), "{a} vs {b}");
        }
        _ => panic!("text: {text:?}, value: {value:?}"),
    }
    text
}

/// A line break in `name` ended the script's comment line, and one in a `slurm` value its
/// `#SBATCH` line: the rest ran as a command in the Slurm job. Control characters are refused in
/// every string of a sweep file.
#[test]
fn line_breaks_cannot_reach_the_slurm_script() {
    for (file, key) in [
        (
            json!({"base": "base.json", "name": "a\nrm -rf ~"}),
            "`name`",
        ),
        (
            json!({"base": "base.json", "slurm": {"partition": "cpu\ntouch /tmp/x"}}),
            "`slurm.partition`",
        ),
        (
            json!({"base": "base.json", "slurm": {"mem": "2G\r"}}),
            "`slurm.mem`",
        ),
        (
            json!({"base": "base.json", "slurm": {"time": "1:00\u{0}"}}),
            "`slurm.time`",
        ),
        (json!({"base": "base.json", "x_label": "x\ny"}), "`x_label`"),
    ] {
        let err = parse(file.clone()).unwrap_err().to_string();
        assert!(
            err.contains(key) && err.contains("control character"),
            "{file}: {err}"
        );
    }
    // Spaces and other printable characters are still fine.
    parse(json!({"base": "base.json", "name": "my sweep", "slurm": {"partition": "gpu-a"}}))
        .unwrap();
}

/// The `--set` argument of a grid value is the value as compact JSON, which `vae` parses back
/// with serde_json. For `633333333333333333333333333333333333333` (an f64) the written text
/// `6.333333333333333e38` parsed back one ULP off with serde_json's default fast float parser,
/// so the run got a slightly different number than the sweep file says. The workspace now
/// enables serde_json's `float_roundtrip`, and the value arrives exactly (for `vae` too, which
/// shares the workspace's serde_json).
#[test]
fn a_grid_float_reaches_vae_exactly() {
    let s = parse(json!({
        "base": "base.json",
        "grid": {"model.latent": [6, 633333333333333333333333333333333333333.0, 0.1, 1e-7, 2.5e-300]}
    }))
    .unwrap();
    let runs = s.runs().unwrap();
    for (i, run) in runs.iter().enumerate().skip(1) {
        let want = s.grid[0].1[i].as_f64().unwrap();
        let arg = run.set_args(&s).pop().unwrap();
        let raw = arg.strip_prefix("model.latent=").unwrap();
        let got = serde_json::from_str::<Value>(raw)
            .unwrap()
            .as_f64()
            .unwrap();
        assert_eq!(got.to_bits(), want.to_bits(), "{arg}: {got} vs {want}");
    }
}

/// A 1.9 KB sweep file from the fuzzer (`fuzz/artifacts/sweep/slow-unit-3406b069...`): thirteen
/// grid keys of 2 to 4 values each, 221 184 runs. Expanding them took seconds and hundreds of MB
/// per input; the count is now refused before any expansion.
#[test]
fn a_sweep_of_a_quarter_million_runs_is_refused_before_expansion() {
    let text = include_str!("fuzz-inputs/sweep-221184-runs.json");
    let err = parse(serde_json::from_str(text).unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("the sweep has 221184 runs") && err.contains("more than the 10000"),
        "{err}"
    );
}
