//! Importance sampling, AIS and BDMC on a linear-Gaussian model, against the exact `log p(x)`.
//!
//! ```text
//! cargo run -p vae-eval --example linear_gaussian [-- DEVICE [P D B]]
//! ```
//!
//! `DEVICE` is `cpu` (default) or `cuda` (build with `--features cuda`); `P`, `D`, `B` are the
//! data and latent dimensions and the number of examples (default 12, 4, 16).

use std::time::Instant;

use tch::Device;
use vae_eval::analytic::{LinearGaussian, Proposal};
use vae_eval::{
    ais, bdmc, importance_sampling, simulate, AisConfig, AisStart, HmcConfig, IsConfig,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let device = match args.first().map(String::as_str) {
        None | Some("cpu") => Device::Cpu,
        Some("cuda") if tch::Cuda::is_available() => Device::Cuda(0),
        Some(other) => return Err(format!("device `{other}` is not available").into()),
    };
    let dim = |i: usize, default: i64| -> Result<i64, Box<dyn std::error::Error>> {
        Ok(args
            .get(i)
            .map(|s| s.parse())
            .transpose()?
            .unwrap_or(default))
    };
    let (p, d, n) = (dim(1, 12)?, dim(2, 4)?, dim(3, 16)?);
    if device == Device::Cpu {
        // Tiny tensors: one intra-op thread is fastest, and avoids OpenMP threads spinning
        // against each other on a busy machine.
        tch::set_num_threads(1);
    }

    // z ~ N(0, I_D), x | z ~ N(W z + b, 0.5² I_P). The proposal keeps the posterior's
    // correlations (through an affine flow) but widens it by 1.2 and shifts its mean by 0.1.
    let proposal = Proposal {
        mean_shift: 0.1,
        scale: 1.2,
        full_covariance: true,
    };
    let model = LinearGaussian::random(p, d, 1.0, 0.5, 1, proposal).to_device(device);
    let (x, z) = simulate(&model, n as usize, 2)?;
    let b = n as f64;
    let exact_nll = -model.log_px(&x).iter().sum::<f64>() / b;
    let exact_neg_elbo = -model.elbo(&x).iter().sum::<f64>() / b;
    println!("{n} examples, P = {p}, D = {d}, on {device:?}; NLL in nats per example");
    println!("exact NLL                          {exact_nll:10.4}");
    println!("exact negative ELBO of q           {exact_neg_elbo:10.4}");

    let t = Instant::now();
    let config = IsConfig {
        num_samples: 5000,
        ..Default::default()
    };
    let is = importance_sampling(&model, &x, &config, &mut |_, _| {})?;
    println!(
        "IS, k = 5000                       {:10.4} ± {:.4} (Monte Carlo)   [{:.2?}]",
        is.nll,
        is.nll_mc_stderr.unwrap_or(f64::NAN),
        t.elapsed()
    );
    for point in &is.iwae {
        println!(
            "  IWAE bound, k = {:<5}            {:10.4}",
            point.k, point.nll
        );
    }
    println!("  -mean log w (ELBO estimate)      {:10.4}", is.neg_elbo);

    let hmc = HmcConfig {
        leapfrog_steps: 5,
        step_size: 0.1,
        // The original caps the step size at 0.5; near the prior the best one is larger.
        step_size_max: 3.0,
        ..Default::default()
    };
    for (name, start) in [
        ("prior", AisStart::Prior),
        ("flow posterior", AisStart::FlowPosterior),
    ] {
        let t = Instant::now();
        let config = AisConfig {
            num_chains: 16,
            anneal_steps: 500,
            start,
            hmc: hmc.clone(),
            ..Default::default()
        };
        let r = ais(&model, &x, &config, &mut |_, _| {})?;
        let late = &r.trace.acceptance[r.trace.acceptance.len() / 2..];
        println!(
            "AIS from the {name:<15} N = 500 {:10.4}   (mean log-weight {:.4}, acceptance {:.2})   [{:.2?}]",
            r.nll,
            r.nll_mean_log_weight,
            late.iter().sum::<f64>() / late.len() as f64,
            t.elapsed()
        );
    }

    for steps in [10, 100] {
        let t = Instant::now();
        let config = AisConfig {
            num_chains: 8,
            anneal_steps: steps,
            hmc: hmc.clone(),
            ..Default::default()
        };
        let r = bdmc(&model, &x, &z, &config, &mut |_, _| {})?;
        println!(
            "BDMC, N = {steps:<3}: {:.4} <= log p(x) = {:.4} <= {:.4}, gap {:.4}   [{:.2?}]",
            r.lower,
            -exact_nll,
            r.upper,
            r.gap,
            t.elapsed()
        );
    }
    Ok(())
}
