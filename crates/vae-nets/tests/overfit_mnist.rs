//! Each family, paired with its decoder as a plain autoencoder (`mu` as the code), overfits 64
//! binarized MNIST images: the reconstruction loss halves within a fixed number of Adam steps.
//!
//! Needs MNIST in the data folder (`cargo xtask bootstrap`); without it the test fails with a
//! message saying so rather than being skipped.

mod common;

use common::*;
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};
use vae_data::{BatchConfig, Batches, Dataset, DatasetKind};

/// Images to overfit.
const IMAGES: usize = 64;
/// Seed of the fixed binarization.
const BINARIZATION_SEED: u64 = 2024;

/// The first 64 training images, binarized once with a fixed seed, `[64, 1, 28, 28]`.
fn mnist_64() -> Tensor {
    let ds = Dataset::load_default(DatasetKind::Mnist, Default::default()).unwrap_or_else(|e| {
        panic!(
            "this test needs MNIST: {e} (data folder: {})",
            vae_data::default_data_dir().display()
        )
    });
    let split = ds.train.slice(0..IMAGES);
    let batches = Batches::new(
        &split,
        BatchConfig::eval(IMAGES),
        BINARIZATION_SEED,
        Device::Cpu,
    )
    .expect("batching 64 images");
    let x = batches.epoch(0).next().expect("one batch").images;
    assert_eq!(x.size(), [IMAGES as i64, 1, 28, 28]);
    x
}

/// Bernoulli negative log-likelihood from logits, nats per image.
fn rec_loss(logits: &Tensor, x: &Tensor) -> Tensor {
    (logits.softplus() - x * logits)
        .sum_dim_intlist([1i64, 2, 3].as_slice(), false, Kind::Float)
        .mean(Kind::Float)
}

/// Reconstruction loss of all 64 images, BN in training mode, without gradients.
fn full_loss(enc: &dyn vae_nets::Encoder, dec: &dyn vae_nets::Decoder, x: &Tensor) -> f64 {
    tch::no_grad(|| rec_loss(&dec.forward_t(&enc.forward_t(x, true).mu, true), x)).double_value(&[])
}

/// Trains the family's encoder (its `mu`) and decoder as an autoencoder with Adam, lr 1e-3, BN
/// in training mode, cycling through the 64 images in mini-batches of `batch` (fixed order), and
/// checks that the loss of all 64 images falls to half its initial value within `max_steps`.
///
/// Training stops early once the mean training loss over one pass through the 64 images is at
/// most half the initial loss; the assertion is then made on the loss of all 64 images.
fn check(x: &Tensor, fam_name: &str, latent: i64, batch: i64, max_steps: usize) {
    let fam = families()
        .into_iter()
        .find(|f| f.name == fam_name)
        .expect("known family");
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let (enc, dec) = build(&vs, &fam, latent);
    let mut opt = nn::Adam::default().build(&vs, 1e-3).expect("Adam");
    let initial = full_loss(enc.as_ref(), dec.as_ref(), x);
    let per_pass = (IMAGES as i64 / batch) as usize;
    let mut losses = Vec::with_capacity(max_steps);
    for step in 0..max_steps {
        let xb = x.narrow(0, (step % per_pass) as i64 * batch, batch);
        let loss = rec_loss(&dec.forward_t(&enc.forward_t(&xb, true).mu, true), &xb);
        opt.backward_step(&loss);
        losses.push(loss.double_value(&[]));
        if losses.len() % per_pass == 0 {
            let pass_mean = losses[losses.len() - per_pass..].iter().sum::<f64>() / per_pass as f64;
            if pass_mean <= 0.5 * initial {
                break;
            }
        }
    }
    let last = full_loss(enc.as_ref(), dec.as_ref(), x);
    eprintln!(
        "{fam_name}: loss of the 64 images {initial:.1} -> {last:.1} nats/image after {} steps of {batch}",
        losses.len()
    );
    assert!(
        last <= 0.5 * initial,
        "{fam_name}: the loss did not halve within {max_steps} steps: initial {initial:.1}, final \
         {last:.1}, training losses {losses:.1?}"
    );
}

/// One test for the three families, run one after the other: `tch::manual_seed` seeds a global
/// generator, which tests running in parallel threads would share.
#[test]
fn each_family_overfits_64_mnist_images() {
    let x = mnist_64();
    // (family, latent size, mini-batch, step budget). The ResNet and gated networks are costly
    // on two CPU cores, so they train on mini-batches of 16; the MLP on all 64 images at once.
    check(&x, "resnet", 32, 16, 40);
    check(&x, "gated_conv", 32, 16, 60);
    check(&x, "mlp", 32, 64, 60);
}
