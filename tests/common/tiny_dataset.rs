//! A tiny MNIST-shaped IDX dataset for end-to-end tests, shared by `tests/` and `xtask/tests/`
//! (included by path, so it depends on std alone).

use std::path::Path;

/// Writes an MNIST-shaped dataset of `n_train` training and `n_test` test images. Image `i` is a
/// blob whose position depends on its label `i % 10`, so there is something to learn.
pub fn tiny_dataset(dir: &Path, n_train: usize, n_test: usize) {
    let d = dir.join("mnist");
    std::fs::create_dir_all(&d).unwrap();
    let idx = |dims: &[u32], data: Vec<u8>| {
        let mut out = vec![0, 0, 8, dims.len() as u8];
        dims.iter()
            .for_each(|d| out.extend_from_slice(&d.to_be_bytes()));
        out.extend(data);
        out
    };
    let image = |i: usize| -> Vec<u8> {
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
    };
    let images = |r: std::ops::Range<usize>| r.flat_map(image).collect::<Vec<u8>>();
    let labels = |r: std::ops::Range<usize>| r.map(|i| (i % 10) as u8).collect::<Vec<u8>>();
    let (t, e) = (n_train as u32, n_test as u32);
    std::fs::write(
        d.join("train-images-idx3-ubyte"),
        idx(&[t, 28, 28], images(0..n_train)),
    )
    .unwrap();
    std::fs::write(
        d.join("train-labels-idx1-ubyte"),
        idx(&[t], labels(0..n_train)),
    )
    .unwrap();
    let test = n_train..n_train + n_test;
    std::fs::write(
        d.join("t10k-images-idx3-ubyte"),
        idx(&[e, 28, 28], images(test.clone())),
    )
    .unwrap();
    std::fs::write(d.join("t10k-labels-idx1-ubyte"), idx(&[e], labels(test))).unwrap();
}
