//! Writes the seed inputs of every fuzz target into `fuzz/corpus/<target>/seed-*` when it starts:
//! `cargo fuzz run seeds -- -runs=0`. The seeds are small valid (and a few near-valid) inputs: IDX files,
//! a protocol-2 MNIST-style pickle, the repository's configs and sweep files, and real
//! checkpoints of the `checkpoint` target's trainer written by `Trainer::save_checkpoint`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(init: {
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let written = flowvae_fuzz::seeds::write_all(&corpus).expect("writing the seeds");
    eprintln!("wrote {written} seed files under {}", corpus.display());
}, |_data: &[u8]| {});
