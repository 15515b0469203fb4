//! Sample and reconstruction grids (ORIGINAL §6.4, with D7 and D8 fixed: the trained decoder in
//! eval mode, and a fixed subset of the test set that the metrics never share an iterator with).

use anyhow::Result;
use tch::{Kind, Tensor};
use vae_data::{image_grid, GreyImage, IMAGE_PIXELS, IMAGE_SIDE};
use vae_model::Vae;

fn rows(t: &Tensor) -> Result<Vec<f32>> {
    Ok(Vec::<f32>::try_from(
        t.to_kind(Kind::Float)
            .to_device(tch::Device::Cpu)
            .flatten(0, -1),
    )?)
}

/// 100 prior samples shown as Bernoulli means, 10 x 10.
pub fn samples(vae: &Vae, device: tch::Device) -> Result<GreyImage> {
    let means = rows(&vae.sample_means(100, device))?;
    let cells: Vec<Option<&[f32]>> = means.chunks(IMAGE_PIXELS).map(Some).collect();
    Ok(image_grid(&cells, IMAGE_SIDE, 10, 10, 2))
}

/// 10 rows x 21 columns: 10 binary inputs, a blank column, their 10 reconstructions (Bernoulli
/// means of one posterior sample each). `x` is `[100, 1, 28, 28]`.
pub fn reconstructions(vae: &Vae, x: &Tensor) -> Result<GreyImage> {
    let inputs = rows(x)?;
    let recon = rows(&vae.reconstruct(x))?;
    let mut cells: Vec<Option<&[f32]>> = Vec::with_capacity(210);
    for r in 0..10 {
        for c in 0..10 {
            cells.push(Some(&inputs[(10 * r + c) * IMAGE_PIXELS..][..IMAGE_PIXELS]));
        }
        cells.push(None);
        for c in 0..10 {
            cells.push(Some(&recon[(10 * r + c) * IMAGE_PIXELS..][..IMAGE_PIXELS]));
        }
    }
    Ok(image_grid(&cells, IMAGE_SIDE, 10, 21, 2))
}

/// The grey picture as interleaved RGB bytes with tensorboard-rs's `[3, W, H]` dims.
pub fn tensorboard_rgb(img: &GreyImage) -> (Vec<u8>, [usize; 3]) {
    let rgb = img.pixels.iter().flat_map(|&p| [p, p, p]).collect();
    (rgb, [3, img.width, img.height])
}
