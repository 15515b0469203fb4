//! Fuzzes `vae_data::idx`: `parse_images` and `parse_labels` on the whole input, the pair of them
//! fed to `Split::from_idx`, and gzipped input through `read_images` / `read_labels`.
//!
//! Checks beyond "no panic": every error names its file (ARCHITECTURE.md, vae-data invariant), a
//! parsed file encodes back to the same bytes, and a split that loads has 28x28 images, one
//! label in 0..=9 per image.
//!
//! Input layout for the pair: two bytes (little-endian) give the length of the images file; the
//! labels file is the rest.

#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vae_data::{idx, Split, IMAGE_PIXELS};

const IMAGES: &str = "fuzz-images.idx";
const LABELS: &str = "fuzz-labels.idx";

fn names_file<T, E: std::fmt::Display>(r: &Result<T, E>, file: &str) {
    if let Err(e) = r {
        let msg = e.to_string();
        assert!(msg.contains(file), "error without the file name: {msg}");
    }
}

fn gz_file() -> &'static Path {
    static FILE: OnceLock<std::path::PathBuf> = OnceLock::new();
    FILE.get_or_init(|| flowvae_fuzz::scratch_file("idx.gz"))
}

fuzz_target!(|data: &[u8]| {
    let (images_path, labels_path) = (Path::new(IMAGES), Path::new(LABELS));

    let images = idx::parse_images(data, images_path);
    names_file(&images, IMAGES);
    if let Ok(im) = &images {
        assert_eq!(im.pixels.len(), im.count * im.rows * im.cols);
        assert_eq!(idx::encode_images(im), data, "images do not encode back");
    }
    let labels = idx::parse_labels(data, labels_path);
    names_file(&labels, LABELS);
    if let Ok(l) = &labels {
        assert_eq!(idx::encode_labels(l), data, "labels do not encode back");
    }

    if data.len() >= 2 {
        let cut = (u16::from_le_bytes([data[0], data[1]]) as usize).min(data.len() - 2);
        let (a, b) = data[2..].split_at(cut);
        if let (Ok(im), Ok(l)) = (
            idx::parse_images(a, images_path),
            idx::parse_labels(b, labels_path),
        ) {
            let count = im.count;
            let split = Split::from_idx(im, l, images_path, labels_path);
            match &split {
                Ok(s) => {
                    assert_eq!(s.len(), count);
                    assert_eq!(s.pixels.len(), count * IMAGE_PIXELS);
                    assert!(s.labels.iter().all(|&l| l <= 9));
                }
                Err(e) => {
                    let msg = e.to_string();
                    assert!(
                        msg.contains(IMAGES) || msg.contains(LABELS),
                        "error without a file name: {msg}"
                    );
                }
            }
        }
    }

    // Gzipped files are inflated first (at most 1 GiB; a 64 KiB input inflates to ~64 MiB).
    if data.starts_with(&[0x1f, 0x8b]) {
        let file = gz_file();
        std::fs::write(file, data).expect("writing the scratch file");
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let images = idx::read_images(file);
        names_file(&images, &name);
        let labels = idx::read_labels(file);
        names_file(&labels, &name);
    }
});
