//! Fuzzes sweep files (`vae_sweep::Sweep::parse`, the serde reading of `cargo xtask sweep`), the
//! expansion into runs, the plot axis, the `vae` arguments of every run and the Slurm script
//! (`vae_sweep::slurm::script`).
//!
//! The sweep's `base` is resolved against a scratch folder that holds `base.json`.
//!
//! Checks beyond "no panic": run folder names are unique, at most 100 characters of
//! `[A-Za-z0-9._=,+-]` and do not start with `.`; every `--set KEY=VALUE` argument parses back,
//! as `vae` parses it, to the key and value of the sweep file; and no string of the sweep file
//! breaks out of the script's `#SBATCH` header (every header line starts with `#`).

#![no_main]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vae_sweep::{Plan, Sweep};

fn dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = flowvae_fuzz::scratch_dir("sweep");
        std::fs::write(dir.join("base.json"), "{\"name\": \"base\"}\n").expect("writing base.json");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let sweep = match Sweep::parse(text, "fuzz", dir()) {
        Ok(s) => s,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let runs = sweep.runs().expect("parse expanded the runs once already");
    let _ = sweep.axis(&runs);
    let mut names = HashSet::new();
    for r in &runs {
        assert!(names.insert(r.name.as_str()), "two runs named {}", r.name);
        assert!(!r.name.is_empty() && r.name.len() <= 100, "{:?}", r.name);
        assert!(!r.name.starts_with('.'), "{:?}", r.name);
        assert!(
            r.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._=,+-".contains(c)),
            "{:?}",
            r.name
        );
        let expected: Vec<(String, serde_json::Value)> = sweep
            .set
            .iter()
            .chain(&r.overrides)
            .map(|o| (o.key.clone(), o.value.clone()))
            .chain(r.seed.map(|s| ("train.seed".to_string(), s.into())))
            .collect();
        let args = r.set_args(&sweep);
        assert_eq!(args.len(), expected.len());
        for (arg, (key, value)) in args.iter().zip(&expected) {
            // What vae-cli's `--set` parser does: split at the first `=`, JSON else a string.
            let (k, raw) = arg.split_once('=').expect("key=value");
            let v = serde_json::from_str(raw)
                .unwrap_or_else(|_| serde_json::Value::String(raw.to_string()));
            assert_eq!(k, key, "{arg}");
            // Exact, floats included (serde_json's `float_roundtrip`, which this target found
            // missing: `xtask/tests/fuzz_regressions.rs`).
            assert_eq!(&v, value, "{arg}");
        }
    }
    if let Some(e) = &sweep.eval {
        let _ = (e.describe(), e.output());
    }
    let plan = Plan {
        sweep,
        runs,
        out: dir().join("out"),
        vae: PathBuf::from("/opt/flowvae/vae"),
        root: PathBuf::from("/opt/flowvae"),
    };
    for r in &plan.runs {
        let _ = (
            plan.train_args(r, false),
            plan.train_args(r, true),
            plan.eval_args(r),
        );
    }
    let script = vae_sweep::slurm::script(&plan, Some(2));
    for line in script.lines() {
        if line == "set -euo pipefail" {
            break;
        }
        assert!(
            line.starts_with('#'),
            "a sweep value broke out of the #SBATCH header: {line:?}"
        );
    }
});
