//! Puts libtorch on the RPATH of this crate's tests and examples (see `flowvae-build`), and links
//! `libtorch_cuda` into them with the `cuda` feature.
fn main() {
    println!("cargo:rerun-if-env-changed=CARGO_FEATURE_CUDA");
    flowvae_build::link_libtorch(std::env::var_os("CARGO_FEATURE_CUDA").is_some());
}
