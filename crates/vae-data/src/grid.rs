//! Image grids for looking at data, samples and reconstructions: `vae_io::grid`, re-exported so
//! that `vae_data::{image_grid, GreyImage}` keep working. [`GreyImage::save_png`] writes a
//! greyscale PNG atomically and returns `vae_io`'s error.

pub use vae_io::grid::{image_grid, GreyImage};
