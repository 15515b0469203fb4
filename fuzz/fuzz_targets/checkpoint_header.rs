//! Fuzzes a checkpoint's safetensors header: the input replaces the JSON header of a real
//! checkpoint (tensor names, dtypes, shapes, data offsets) in front of its unchanged data
//! section, with the length prefix adjusted, then the file is read, loaded and resumed as
//! `vae train --resume` would. Offsets past the data, overlapping tensors, dtypes that do not
//! fit the bytes, shapes whose product overflows: each must be a message naming the file.
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
    /// The seed checkpoint's data section (everything after its header).
    static DATA: Vec<u8> = {
        let bytes = flowvae_fuzz::seed_checkpoint().bytes;
        let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
        bytes[8 + n..].to_vec()
    };
}

fn file() -> &'static Path {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| flowvae_fuzz::scratch_file("header.safetensors"))
}

fuzz_target!(init: { tch::set_num_threads(1); }, |header: &[u8]| {
    let path = file();
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    DATA.with(|d| bytes.extend_from_slice(d));
    std::fs::write(path, &bytes).expect("writing the scratch file");
    TRAINER.with(|t| flowvae_fuzz::load_and_resume(&mut t.borrow_mut(), path));
});
