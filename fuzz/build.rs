//! Puts libtorch on the RPATH of the fuzz targets (see `flowvae-build`).
fn main() {
    flowvae_build::link_libtorch(false);
}
