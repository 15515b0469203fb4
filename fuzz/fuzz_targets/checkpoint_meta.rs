//! Fuzzes a checkpoint's metadata past its integrity sum: the input is the JSON of `meta.json`'s
//! covered part (`format`, `config`, `state`), sealed with correct sums around the tensors of a
//! real checkpoint (`vae_model::checkpoint::write_sealed`), then read, loaded and resumed as
//! `vae train --resume` would. A checkpoint edited by someone who also recomputed the sums, or
//! written by a buggy tool, must end in a message, never a panic; and what loads must train.
//!
//! Checks beyond "no panic": those of `flowvae_fuzz::load_and_resume`.

#![no_main]

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vae_model::Trainer;

thread_local! {
    static TRAINER: RefCell<Trainer> = RefCell::new(flowvae_fuzz::tiny_trainer());
    static SEED: flowvae_fuzz::SeedCheckpoint = flowvae_fuzz::seed_checkpoint();
}

fn file() -> &'static Path {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| flowvae_fuzz::scratch_file("meta.safetensors"))
}

fuzz_target!(init: { tch::set_num_threads(1); }, |data: &[u8]| {
    let Ok(covered) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let path = file();
    let tensors = SEED.with(|s| {
        s.tensors
            .iter()
            .map(|(k, t)| (k.clone(), t.shallow_clone()))
            .collect::<Vec<_>>()
    });
    if vae_model::checkpoint::write_sealed(path, tensors, covered).is_err() {
        return; // not an object: nothing to seal
    }
    TRAINER.with(|t| flowvae_fuzz::load_and_resume(&mut t.borrow_mut(), path));
});
