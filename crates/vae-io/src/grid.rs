//! Image grids for looking at data, samples and reconstructions, saved as greyscale PNG.

use std::path::Path;

use crate::error::Result;

/// An 8-bit greyscale picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GreyImage {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `width * height` grey values, row-major, 0 = black.
    pub pixels: Vec<u8>,
}

impl GreyImage {
    /// The picture as a greyscale PNG.
    pub fn to_png(&self) -> Result<Vec<u8>> {
        crate::png::encode_grey(self.width, self.height, &self.pixels)
    }

    /// Writes the picture as a greyscale PNG file, atomically.
    pub fn save_png(&self, path: &Path) -> Result<()> {
        crate::write_atomic(path, &self.to_png()?)
    }
}

/// Tiles square images into a `rows x cols` grid with `pad` pixels of mid-grey between them.
///
/// `images` holds values in [0, 1] (binary pixels or Bernoulli means), `side * side` per image,
/// filled row by row; cells past the last image, and images given as `None`, stay blank.
pub fn image_grid(
    images: &[Option<&[f32]>],
    side: usize,
    rows: usize,
    cols: usize,
    pad: usize,
) -> GreyImage {
    let width = cols * side + (cols + 1) * pad;
    let height = rows * side + (rows + 1) * pad;
    let mut pixels = vec![96u8; width * height];
    for (k, img) in images.iter().enumerate().take(rows * cols) {
        let Some(img) = img else { continue };
        let (r, c) = (k / cols, k % cols);
        let (y0, x0) = (pad + r * (side + pad), pad + c * (side + pad));
        for y in 0..side {
            for x in 0..side {
                let v = img[y * side + x].clamp(0.0, 1.0);
                pixels[(y0 + y) * width + x0 + x] = (v * 255.0).round() as u8;
            }
        }
    }
    GreyImage {
        width,
        height,
        pixels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_images_row_by_row() {
        let a = [1.0f32; 4];
        let b = [0.0f32; 4];
        let g = image_grid(&[Some(&a), None, Some(&b)], 2, 2, 2, 1);
        assert_eq!((g.width, g.height), (7, 7));
        assert_eq!(g.pixels[7 + 1], 255); // first cell
        assert_eq!(g.pixels[7 + 4], 96); // second cell left blank
        assert_eq!(g.pixels[4 * 7 + 1], 0); // third cell, second row
        assert_eq!(g.pixels[0], 96); // padding
    }

    #[test]
    fn saves_a_greyscale_png() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("grid.png");
        let g = image_grid(&[Some(&[0.5; 4])], 2, 1, 1, 1);
        g.save_png(&f).unwrap();
        let (w, h, channels, pixels) = crate::png::decode(&std::fs::read(&f).unwrap());
        assert_eq!((w, h, channels), (4, 4, 1));
        assert_eq!(pixels, g.pixels);
    }
}
