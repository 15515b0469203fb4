//! Puts libtorch on the RPATH of this crate's tests and examples (see `flowvae-build`).
fn main() {
    flowvae_build::link_libtorch(false);
}
