//! Checks on the MNIST files that `cargo xtask bootstrap` converts into the cache, and on the
//! binarization and batching of real images.

use tch::{Device, Kind, Tensor};
use vae_data::{
    binarize, Batch, BatchConfig, Batches, Binarization, Dataset, DatasetKind, SplitConfig,
};

fn mnist(validation: usize) -> Dataset {
    Dataset::load_default(DatasetKind::Mnist, SplitConfig { validation })
        .unwrap_or_else(|e| panic!("{e} (run `cargo xtask bootstrap` first)"))
}

#[test]
fn known_first_labels_and_counts() {
    let ds = mnist(0);
    assert_eq!(ds.train.len(), 60_000);
    assert_eq!(ds.test.len(), 10_000);
    assert_eq!(&ds.train.labels[..10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
    assert_eq!(&ds.test.labels[..10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]);
    assert_eq!(
        ds.train.label_counts(),
        [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    // The default split is the classic 50k / 10k one, in file order.
    let split = mnist(10_000);
    assert_eq!(
        (split.train.len(), split.validation.len()),
        (50_000, 10_000)
    );
    assert_eq!(split.validation.image(0), ds.train.image(50_000));
}

#[test]
fn binarized_mean_agrees_with_grey_mean() {
    let test = mnist(10_000).test;
    let bin = binarize::binarize_once(&test, 1234);
    let n = test.pixels.len() as f64;
    let ones = bin.pixels.iter().filter(|&&p| p == 255).count() as f64;
    // Each pixel is an independent Bernoulli(p_i): the binary mean has expectation mean(p_i) and
    // variance sum p_i (1 - p_i) / n^2.
    let var: f64 = test
        .pixels
        .iter()
        .map(|&p| p as f64 / 255.0)
        .map(|p| p * (1.0 - p))
        .sum();
    let se = var.sqrt() / n;
    let grey = test.mean_grey();
    assert!(
        (ones / n - grey).abs() < 4.0 * se,
        "binary {} grey {grey} se {se}",
        ones / n
    );
    assert!(bin.pixels.iter().all(|&p| p == 0 || p == 255));
}

fn epoch_tensors(b: &Batches, epoch: u64) -> Vec<Batch> {
    b.epoch(epoch).take(3).collect()
}

fn same(a: &[Batch], b: &[Batch]) -> bool {
    a.iter()
        .zip(b)
        .all(|(x, y)| x.indices == y.indices && x.images.equal(&y.images))
}

#[test]
fn dynamic_batches_reproduce_from_their_seed() {
    let train = mnist(10_000).train.slice(0..2_000);
    let cfg = BatchConfig::train(100);
    let a = Batches::new(&train, cfg, 7, Device::Cpu).unwrap();
    let b = Batches::new(&train, cfg, 7, Device::Cpu).unwrap();
    let c = Batches::new(&train, cfg, 8, Device::Cpu).unwrap();
    assert!(same(&epoch_tensors(&a, 0), &epoch_tensors(&b, 0)));
    assert!(!same(&epoch_tensors(&a, 0), &epoch_tensors(&c, 0)));
    // A new epoch reshuffles and redraws.
    assert!(!same(&epoch_tensors(&a, 0), &epoch_tensors(&a, 1)));
    // Resuming mid-epoch with nth() gives the batch an uninterrupted epoch gives.
    let third = a.epoch(0).nth(2).unwrap();
    assert!(same(&[third], &epoch_tensors(&a, 0)[2..]));
    // Same images drawn twice within one epoch at a different position would still be identical:
    // draws depend on (seed, epoch, image) only, so batch size does not matter.
    let big = Batches::new(&train, BatchConfig::train(200), 7, Device::Cpu).unwrap();
    let first_big = big.epoch(0).next().unwrap();
    let idx = first_big.indices[0];
    let small = a.batch_of(&[idx], 0);
    assert!(small.images.get(0).equal(&first_big.images.get(0)));
}

#[test]
fn fixed_binarization_gives_the_same_test_set_every_time() {
    let test = mnist(10_000).test;
    let cfg = BatchConfig::eval(500);
    let a = Batches::new(&test, cfg, 0, Device::Cpu).unwrap();
    let b = Batches::new(&test, cfg, 0, Device::Cpu).unwrap();
    let all = |x: &Batches, e| Tensor::cat(&x.epoch(e).map(|b| b.images).collect::<Vec<_>>(), 0);
    let first = all(&a, 0);
    assert_eq!(first.size(), [10_000, 1, 28, 28]);
    assert!(first.equal(&all(&b, 0)));
    assert!(
        first.equal(&all(&a, 5)),
        "fixed images must not change with the epoch"
    );
    // Binary values only, and in file order.
    let ones = first
        .eq(1.0)
        .logical_or(&first.eq(0.0))
        .all()
        .int64_value(&[]);
    assert_eq!(ones, 1);
    let labels = Tensor::cat(&a.epoch(0).map(|b| b.labels).collect::<Vec<_>>(), 0);
    assert_eq!(
        labels.slice(0, 0, 3, 1).to_kind(Kind::Int64),
        Tensor::from_slice(&[7i64, 2, 1])
    );
    // Grey levels with `none`.
    let grey = Batches::new(
        &test,
        BatchConfig {
            binarization: Binarization::None,
            ..cfg
        },
        0,
        Device::Cpu,
    )
    .unwrap();
    let g = grey.epoch(0).next().unwrap().images;
    let mean = g.mean(Kind::Double).double_value(&[]);
    assert!((mean - test.slice(0..500).mean_grey()).abs() < 1e-6);
}
