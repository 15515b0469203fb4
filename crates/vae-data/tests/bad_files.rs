//! Every malformed dataset folder gives its own error, naming the file, and never panics.

use std::path::Path;

use vae_data::idx::{encode_images, encode_labels, IdxImages};
use vae_data::{Dataset, DatasetKind, Error, SplitConfig};

fn write_dataset(dir: &Path, n_train: usize, n_train_labels: usize, side: usize) {
    let d = dir.join("mnist");
    std::fs::create_dir_all(&d).unwrap();
    let images = |n| IdxImages {
        count: n,
        rows: side,
        cols: side,
        pixels: vec![7; n * side * side],
    };
    std::fs::write(
        d.join("train-images-idx3-ubyte"),
        encode_images(&images(n_train)),
    )
    .unwrap();
    std::fs::write(
        d.join("train-labels-idx1-ubyte"),
        encode_labels(&vec![3; n_train_labels]),
    )
    .unwrap();
    std::fs::write(d.join("t10k-images-idx3-ubyte"), encode_images(&images(4))).unwrap();
    std::fs::write(d.join("t10k-labels-idx1-ubyte"), encode_labels(&[1; 4])).unwrap();
}

fn load(dir: &Path, validation: usize) -> Result<Dataset, Error> {
    Dataset::load(DatasetKind::Mnist, dir, SplitConfig { validation })
}

#[test]
fn small_valid_dataset_loads() {
    let dir = tempfile::tempdir().unwrap();
    write_dataset(dir.path(), 10, 10, 28);
    let ds = load(dir.path(), 2).unwrap();
    assert_eq!(
        (ds.train.len(), ds.validation.len(), ds.test.len()),
        (8, 2, 4)
    );
}

#[test]
fn missing_dataset_says_how_to_install() {
    let dir = tempfile::tempdir().unwrap();
    let msg = load(dir.path(), 0).unwrap_err().to_string();
    assert!(msg.starts_with("mnist is not installed:"), "{msg}");
    assert!(msg.contains("cargo xtask bootstrap"), "{msg}");
}

#[test]
fn label_count_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    write_dataset(dir.path(), 10, 9, 28);
    let msg = load(dir.path(), 0).unwrap_err().to_string();
    assert!(
        msg.contains("train-images-idx3-ubyte holds 10 images but"),
        "{msg}"
    );
    assert!(
        msg.contains("train-labels-idx1-ubyte holds 9 labels"),
        "{msg}"
    );
}

#[test]
fn wrong_image_size() {
    let dir = tempfile::tempdir().unwrap();
    write_dataset(dir.path(), 10, 10, 14);
    let msg = load(dir.path(), 0).unwrap_err().to_string();
    assert!(
        msg.ends_with("holds 14x14 images; flowvae's networks need 28x28"),
        "{msg}"
    );
}

#[test]
fn truncated_and_empty_files() {
    let dir = tempfile::tempdir().unwrap();
    write_dataset(dir.path(), 10, 10, 28);
    let f = dir.path().join("mnist/t10k-images-idx3-ubyte");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..100]).unwrap();
    let msg = load(dir.path(), 0).unwrap_err().to_string();
    assert!(
        msg.contains(
            "t10k-images-idx3-ubyte is truncated: its header promises 3152 bytes, the file has 100"
        ),
        "{msg}"
    );
    std::fs::write(&f, b"").unwrap();
    assert!(matches!(load(dir.path(), 0), Err(Error::Empty { .. })));
}

#[test]
fn labels_outside_digits_and_bad_split() {
    let dir = tempfile::tempdir().unwrap();
    write_dataset(dir.path(), 10, 10, 28);
    let msg = load(dir.path(), 10).unwrap_err().to_string();
    assert_eq!(
        msg,
        "invalid split: validation size 10 must be below the 10 training items"
    );
    std::fs::write(
        dir.path().join("mnist/t10k-labels-idx1-ubyte"),
        encode_labels(&[1, 1, 11, 1]),
    )
    .unwrap();
    let msg = load(dir.path(), 0).unwrap_err().to_string();
    assert!(
        msg.ends_with("label 11 at item 2 is outside 0..=9"),
        "{msg}"
    );
}
