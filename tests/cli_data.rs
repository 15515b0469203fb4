//! End-to-end tests of `vae data`, run against the built binary (a `vae-cli` integration test).

mod common;

use common::{stderr, vae};

/// 30 training and 10 test images; test image `i` has label `i % 10`.
fn tiny_dataset(dir: &std::path::Path) {
    common::tiny_dataset(dir, 30, 10);
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
    // The mean of the written test file's pixel bytes, divided by 255.
    let bytes = std::fs::read(dir.path().join("mnist/t10k-images-idx3-ubyte")).unwrap();
    let want = bytes[16..].iter().map(|&b| b as f64).sum::<f64>() / (7840.0 * 255.0);
    let mean = v["splits"]["test"]["mean_pixel"].as_f64().unwrap();
    assert!((mean - want).abs() < 1e-12, "{mean} vs {want}");
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
