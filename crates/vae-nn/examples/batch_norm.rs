//! Trains a batch norm on shifted, scaled data and shows its running statistics approach the
//! data's, checks that the folded evaluation mode (`eval_affine`) equals evaluation mode, and
//! times a training-mode forward and backward pass of each `[B, C]` path against libtorch's
//! kernel called as it is.
//!
//! ```text
//! cargo run -p vae-nn --example batch_norm
//! ```

use std::time::Instant;

use anyhow::{ensure, Result};
use tch::{nn, Device, Kind, Tensor};
use vae_nn::{BatchNorm, BatchNormSettings};

fn main() -> Result<()> {
    tch::manual_seed(0);
    let cpu = (Kind::Float, Device::Cpu);

    // Four channels with means [-2, 0, 1, 5] and standard deviations [0.5, 1, 2, 3].
    let mean = Tensor::from_slice(&[-2.0f32, 0.0, 1.0, 5.0]);
    let std = Tensor::from_slice(&[0.5f32, 1.0, 2.0, 3.0]);
    let vs = nn::VarStore::new(Device::Cpu);
    let settings = BatchNormSettings {
        momentum: 0.05,
        ..Default::default()
    };
    let bn = BatchNorm::new(&(vs.root() / "bn"), 4, 0.0, settings)?;
    for _ in 0..300 {
        let x = Tensor::randn([200, 4], cpu) * &std + &mean; // [B, C]
        let _ = bn.forward_t(&x, true);
    }
    println!("variables: {:?}", sorted_names(&vs));
    println!("running mean     {:?}", values(&bn.running_mean));
    println!("data mean        {:?}", values(&mean));
    println!("running variance {:?}", values(&bn.running_var));
    println!("data variance    {:?}", values(&std.square()));
    let err = (&bn.running_mean - &mean).abs().max().double_value(&[]);
    ensure!(err < 0.2, "running mean is {err} away from the data's");

    let x = Tensor::randn([16, 4], cpu) * &std + &mean;
    let (scale, shift) = bn.eval_affine();
    let fold = (&x * &scale + &shift - bn.forward_t(&x, false))
        .abs()
        .max()
        .double_value(&[]);
    println!("eval_affine against evaluation mode: max difference {fold:.1e}");
    ensure!(fold < 1e-5, "the folded evaluation mode differs by {fold}");

    println!(
        "\ntraining-mode forward + backward, µs per call ({} threads):",
        tch::get_num_threads()
    );
    for (shape, path) in [
        ([200, 64], "elementwise, calling thread"),
        ([200, 1000], "kernel, calling thread"),
        ([1000, 1920], "kernel, thread pool"),
    ] {
        let vs = nn::VarStore::new(Device::Cpu);
        let ours = BatchNorm::new(&(vs.root() / "ours"), shape[1], 0.0, settings)?;
        let kernel = nn::batch_norm1d(
            vs.root() / "kernel",
            shape[1],
            nn::BatchNormConfig {
                momentum: settings.momentum,
                eps: settings.eps,
                ..Default::default()
            },
        );
        let x = Tensor::randn(shape, cpu).set_requires_grad(true);
        let time = |f: &dyn Fn() -> Tensor| {
            let reps = 200;
            let start = Instant::now();
            for _ in 0..reps {
                f().sum(Kind::Float).backward();
            }
            start.elapsed().as_secs_f64() * 1e6 / reps as f64
        };
        let a = time(&|| ours.forward_t(&x, true));
        let b = time(&|| nn::ModuleT::forward_t(&kernel, &x, true));
        println!("  {shape:?} ({path}): {a:.0} against the kernel's {b:.0}");
    }
    Ok(())
}

fn values(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t).expect("a float vector")
}

fn sorted_names(vs: &nn::VarStore) -> Vec<String> {
    let mut names: Vec<String> = vs.variables().into_keys().collect();
    names.sort();
    names
}
