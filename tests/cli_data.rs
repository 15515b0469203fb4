//! End-to-end tests of `vae data`, run against the built binary (a `vae-cli` integration test).

use std::path::Path;
use std::process::{Command, Output};

fn vae(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vae"))
        .args(args)
        .env("FLOWVAE_DATA", data)
        .output()
        .expect("the vae binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes a tiny MNIST-shaped dataset: 30 training and 10 test images of one grey level each.
fn tiny_dataset(dir: &Path) {
    let d = dir.join("mnist");
    std::fs::create_dir_all(&d).unwrap();
    let idx = |dims: &[u32], data: Vec<u8>| {
        let mut out = vec![0, 0, 8, dims.len() as u8];
        dims.iter()
            .for_each(|d| out.extend_from_slice(&d.to_be_bytes()));
        out.extend(data);
        out
    };
    let images = |n: usize| {
        (0..n)
            .flat_map(|i| vec![(i * 8) as u8; 784])
            .collect::<Vec<u8>>()
    };
    let labels = |n: usize| (0..n).map(|i| (i % 10) as u8).collect::<Vec<u8>>();
    std::fs::write(
        d.join("train-images-idx3-ubyte"),
        idx(&[30, 28, 28], images(30)),
    )
    .unwrap();
    std::fs::write(d.join("train-labels-idx1-ubyte"), idx(&[30], labels(30))).unwrap();
    std::fs::write(
        d.join("t10k-images-idx3-ubyte"),
        idx(&[10, 28, 28], images(10)),
    )
    .unwrap();
    std::fs::write(d.join("t10k-labels-idx1-ubyte"), idx(&[10], labels(10))).unwrap();
}

#[test]
fn info_reports_counts_means_and_labels_as_json() {
    let dir = tempfile::tempdir().unwrap();
    tiny_dataset(dir.path());
    let out = vae(
        dir.path(),
        &["data", "info", "--validation", "10", "--json"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["splits"]["train"]["count"], 20);
    assert_eq!(v["splits"]["validation"]["count"], 10);
    assert_eq!(
        v["splits"]["test"]["label_counts"],
        serde_json::json!([1, 1, 1, 1, 1, 1, 1, 1, 1, 1])
    );
    // Test image i has grey level 8 i / 255: the mean is 8 * 4.5 / 255.
    let mean = v["splits"]["test"]["mean_pixel"].as_f64().unwrap();
    assert!((mean - 36.0 / 255.0).abs() < 1e-12, "{mean}");
}

#[test]
fn grid_writes_a_png() {
    let dir = tempfile::tempdir().unwrap();
    tiny_dataset(dir.path());
    let png = dir.path().join("grid.png");
    let out = vae(
        dir.path(),
        &[
            "data",
            "grid",
            "--validation",
            "0",
            "--split",
            "test",
            "--out",
            png.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
}

#[test]
fn missing_data_is_a_clear_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let out = vae(dir.path(), &["data", "info"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("mnist is not installed"), "{err}");
    assert!(err.contains("cargo xtask bootstrap"), "{err}");
}

#[test]
fn bad_flag_values_name_the_valid_choices() {
    let dir = tempfile::tempdir().unwrap();
    let out = vae(dir.path(), &["data", "info", "--dataset", "cifar"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("expected `mnist` or `fashion-mnist`"),
        "{}",
        stderr(&out)
    );
    let out = vae(
        dir.path(),
        &["data", "grid", "--binarize", "half", "--out", "x.png"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("expected dynamic, fixed, static or none"),
        "{}",
        stderr(&out)
    );
}
