//! Puts libtorch on the RPATH of the `vae` binary and records libtorch's version in it; with the
//! `cuda` feature, also links `libtorch_cuda.so` (docs/TOOLCHAIN.md §4).
fn main() {
    flowvae_build::link_libtorch(std::env::var_os("CARGO_FEATURE_CUDA").is_some());
    flowvae_build::emit_libtorch_version();
}
