//! A tiny MNIST-shaped dataset for end-to-end tests: `tests/` (the `vae` binary) and
//! `xtask/tests/` (sweeps) train on the same bytes.

use std::path::Path;

use crate::error::Result;
use crate::idx::{write_images, write_labels, IdxImages};

/// Writes the four MNIST IDX files into `dir/mnist`: `n_train` training and `n_test` test
/// images of 28x28. Image `i` has label `i % 10` and is a bright blob whose position depends on
/// the label on a faint patterned background, so there is something to learn.
pub fn write_tiny_mnist(dir: &Path, n_train: usize, n_test: usize) -> Result<()> {
    let d = dir.join("mnist");
    std::fs::create_dir_all(&d).map_err(|source| crate::Error::Write {
        path: d.clone(),
        source,
    })?;
    let images = |r: std::ops::Range<usize>| IdxImages {
        count: r.len(),
        rows: 28,
        cols: 28,
        pixels: r.flat_map(image).collect(),
    };
    let labels = |r: std::ops::Range<usize>| r.map(|i| (i % 10) as u8).collect::<Vec<u8>>();
    let test = n_train..n_train + n_test;
    write_images(&d.join("train-images-idx3-ubyte"), &images(0..n_train))?;
    write_labels(&d.join("train-labels-idx1-ubyte"), &labels(0..n_train))?;
    write_images(&d.join("t10k-images-idx3-ubyte"), &images(test.clone()))?;
    write_labels(&d.join("t10k-labels-idx1-ubyte"), &labels(test))
}

/// Image `i`: a disc of radius 4 at a place set by its label, over values 0 to 7.
fn image(i: usize) -> Vec<u8> {
    let label = i % 10;
    let (cy, cx) = (6 + (label / 5) * 14, 3 + (label % 5) * 5);
    (0..784)
        .map(|p| {
            let (y, x) = (p / 28, p % 28);
            let d2 = (y as i64 - cy as i64).pow(2) + (x as i64 - cx as i64).pow(2);
            if d2 < 16 {
                200 + (i % 50) as u8
            } else {
                (i * 7 + p) as u8 % 8
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_parse_with_the_promised_counts_and_labels() {
        let dir = tempfile::tempdir().unwrap();
        write_tiny_mnist(dir.path(), 12, 3).unwrap();
        let d = dir.path().join("mnist");
        let train = crate::idx::read_images(&d.join("train-images-idx3-ubyte")).unwrap();
        assert_eq!((train.count, train.rows, train.cols), (12, 28, 28));
        let test_labels = crate::idx::read_labels(&d.join("t10k-labels-idx1-ubyte")).unwrap();
        assert_eq!(test_labels, [2, 3, 4]);
        // Image 0 (label 0) is bright at its blob's centre (6, 3) and dark far from it.
        assert_eq!(train.pixels[6 * 28 + 3], 200);
        assert!(train.pixels[20 * 28 + 20] < 8);
    }
}
