//! Fuzzes configs: `vae_model::ExperimentConfig` from JSON, its `validate()`, and `Vae::new` on
//! every config that validates (when small, see `flowvae_fuzz::small_enough`); and the CLI's
//! `RunConfig::from_value` with `--set` overrides (vae-cli's `config.rs`, compiled in).
//!
//! Input layout: the JSON text, then `--set` arguments, each after a NUL byte.
//!
//! Checks beyond "no panic": a config survives a JSON round trip unchanged (run folders and
//! checkpoints store it as JSON, and resuming compares configs); a run config that loads also
//! validates as an experiment config; building the model of a valid config fails with an error,
//! never a panic, and a model that builds runs a forward pass (batch 2, train and eval mode).

#![no_main]

use flowvae_fuzz::run_config::RunConfig;
use libfuzzer_sys::fuzz_target;
use tch::{nn, Device, Kind, Tensor};
use vae_model::{ExperimentConfig, ModelConfig, Vae};

fn round_trip(cfg: &ExperimentConfig) {
    let text = serde_json::to_string(cfg).expect("a config serializes");
    let back: ExperimentConfig = serde_json::from_str(&text).expect("a written config parses");
    assert_eq!(&back, cfg, "JSON round trip changed the config: {text}");
}

fn build(model: &ModelConfig) {
    if !flowvae_fuzz::small_enough(model) {
        return;
    }
    let vs = nn::VarStore::new(Device::Cpu);
    let Ok(vae) = Vae::new(&vs.root(), model) else {
        return;
    };
    if flowvae_fuzz::convolutional(model) {
        return;
    }
    tch::manual_seed(0);
    let x = Tensor::rand([2, 1, 28, 28], (Kind::Float, Device::Cpu)).round();
    tch::no_grad(|| {
        for train in [true, false] {
            let t = vae.elbo_terms(&x, train);
            assert_eq!(t.rec.size(), [2]);
            assert_eq!(t.kl.size(), [2]);
        }
    });
}

fuzz_target!(init: { tch::set_num_threads(1); }, |data: &[u8]| {
    let mut parts = data.split(|&b| b == 0);
    let json = parts.next().unwrap_or_default();
    let overrides: Vec<String> = parts
        .take(8)
        .filter_map(|p| std::str::from_utf8(p).ok())
        .map(str::to_string)
        .collect();

    if let Ok(cfg) = serde_json::from_slice::<ExperimentConfig>(json) {
        round_trip(&cfg);
        if cfg.validate().is_ok() {
            build(&cfg.model);
        }
    }

    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(json) {
        if let Ok(run) = RunConfig::from_value(value, &overrides) {
            let exp = run.experiment();
            assert!(exp.validate().is_ok(), "RunConfig validated, its experiment does not");
            round_trip(&exp);
            build(&exp.model);
        }
    }
});
