//! Fuzzes checkpoint loading: `Trainer::checkpoint_config` and `Trainer::load_checkpoint` on
//! arbitrary bytes in a file, into a trainer of `flowvae_fuzz::tiny_experiment`; the corpus holds
//! real checkpoints of it (`cargo fuzz run seeds`).
//!
//! Checks beyond "no panic": every error names the checkpoint file; and a checkpoint that loads
//! can be trained on as `vae train --resume` would: unless its state says the run is done, a
//! resumed epoch (at most two steps, then validation) does not panic either, whatever training
//! state the file claims.

#![no_main]

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vae_model::Trainer;

thread_local! {
    static TRAINER: RefCell<Trainer> = RefCell::new(flowvae_fuzz::tiny_trainer());
}

fn file() -> &'static Path {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| flowvae_fuzz::scratch_file("checkpoint.safetensors"))
}

fn names_file<T>(r: &vae_model::Result<T>, path: &Path) {
    if let Err(e) = r {
        let msg = e.to_string();
        assert!(
            msg.contains(&*path.to_string_lossy()),
            "error without the file name: {msg}"
        );
    }
}

fuzz_target!(init: { tch::set_num_threads(1); }, |data: &[u8]| {
    let path = file();
    std::fs::write(path, data).expect("writing the scratch file");
    let config = Trainer::checkpoint_config(path);
    names_file(&config, path);
    TRAINER.with(|t| {
        let mut t = t.borrow_mut();
        let loaded = t.load_checkpoint(path);
        names_file(&loaded, path);
        if loaded.is_ok() {
            assert!(config.is_ok(), "load_checkpoint accepted what checkpoint_config refused");
            // As `vae train --resume` does: train on unless the state says the run is done.
            if t.is_done() {
                return;
            }
            let max = t.state().global_step.saturating_add(2);
            let stop = AtomicBool::new(false);
            let _ = t.run_epoch(&stop, Some(max), |_| {});
        }
    });
});
