//! Fuzzes `xtask::mnist_pickle`: `parse` on arbitrary bytes, then `to_idx` and `verify` on what
//! parses.
//!
//! Checks beyond "no panic": a parsed pickle has 784 pixel bytes and one label in 0..=9 per image,
//! and the IDX files `to_idx` writes are read back by `vae_data` (parse, then `Split::from_idx`)
//! with the same pixels and labels: the converter and the loader agree.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use vae_data::{idx, Split};
use xtask::mnist_pickle;

fn load(images: &[u8], labels: &[u8]) -> Split {
    let (ip, lp) = (Path::new("images"), Path::new("labels"));
    let im = idx::parse_images(images, ip).expect("converted images parse");
    let l = idx::parse_labels(labels, lp).expect("converted labels parse");
    Split::from_idx(im, l, ip, lp).expect("converted files load")
}

fuzz_target!(|data: &[u8]| {
    let Ok(splits) = mnist_pickle::parse(data) else {
        return;
    };
    for s in &splits {
        assert_eq!(s.pixels.len(), s.labels.len() * 784);
        assert!(s.labels.iter().all(|&l| l <= 9));
    }
    let files = mnist_pickle::to_idx(&splits);
    let train = load(&files[0].1, &files[1].1);
    assert_eq!(
        train.pixels,
        [splits[0].pixels.as_slice(), &splits[1].pixels].concat()
    );
    assert_eq!(
        train.labels,
        [splits[0].labels.as_slice(), &splits[1].labels].concat()
    );
    let test = load(&files[2].1, &files[3].1);
    assert_eq!(test.pixels, splits[2].pixels);
    assert_eq!(test.labels, splits[2].labels);
    // Only the real MNIST passes; anything else must be an error, not a panic.
    assert!(mnist_pickle::verify(&files).is_err());
});
