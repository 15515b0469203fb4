//! Fuzzes sweep plans with their run-config validation: a sweep file (`vae_sweep::Sweep::parse`)
//! over the smoke config, expanded into runs, and every run's config built as `vae train
//! --check` builds it from the base config and the run's `--set` arguments
//! (`RunConfig::from_value`, vae-cli's library target) — what `cargo xtask sweep` runs for each
//! run at `--dry-run` and before anything starts (`vae_sweep::validate`).
//!
//! Checks beyond "no panic": the `vae train --check` arguments of every run are the base config
//! and exactly its `--set` arguments; a run config that validates survives a JSON round trip and
//! validates again; its training-memory estimate is finite and positive; and a refused one has a
//! message.

#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use flowvae_fuzz::run_config::RunConfig;
use libfuzzer_sys::fuzz_target;
use vae_sweep::{Plan, Sweep};

/// The base config every fuzzed sweep refers to (`"base": "base.json"`): the smoke config.
fn dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = flowvae_fuzz::scratch_dir("sweep_plan");
        let smoke = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/smoke.json");
        std::fs::copy(smoke, dir.join("base.json")).expect("copying the smoke config");
        dir
    })
}

fn base() -> &'static serde_json::Value {
    static BASE: OnceLock<serde_json::Value> = OnceLock::new();
    BASE.get_or_init(|| {
        let text = std::fs::read_to_string(dir().join("base.json")).expect("reading base.json");
        serde_json::from_str(&text).expect("the smoke config is JSON")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(sweep) = Sweep::parse(text, "fuzz", dir()) else {
        return;
    };
    let Ok(runs) = sweep.runs() else {
        return;
    };
    let plan = Plan {
        sweep,
        runs,
        out: dir().join("out"),
        vae: PathBuf::from("/opt/flowvae/vae"),
        root: PathBuf::from("/opt/flowvae"),
    };
    // A few runs per input: the checks are per run, and a grid of thousands adds nothing.
    for run in plan.runs.iter().take(8) {
        let sets = run.set_args(&plan.sweep);
        let args = vae_sweep::validate::check_args(&plan, run);
        assert_eq!(&args[..3], ["train", "--check", "--config"]);
        let given: Vec<&String> = args[4..].iter().skip(1).step_by(2).collect();
        assert_eq!(given, sets.iter().collect::<Vec<_>>());
        match RunConfig::from_value(base().clone(), &sets) {
            Ok(cfg) => {
                let text = serde_json::to_string(&cfg).expect("a run config serializes");
                let back = RunConfig::from_value(
                    serde_json::from_str(&text).expect("a written run config parses"),
                    &[],
                )
                .expect("a valid run config validates again");
                assert_eq!(back, cfg, "JSON round trip changed the run config: {text}");
                let bytes = vae_model::memory::train_bytes(&cfg.experiment());
                assert!(bytes.is_finite() && bytes > 0.0, "{bytes} bytes for {text}");
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
});
