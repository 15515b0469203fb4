//! Puts libtorch on the RPATH of the `vae` binary and records libtorch's version in it.
fn main() {
    flowvae_build::link_libtorch(false);
    flowvae_build::emit_libtorch_version();
}
