//! Bidirectional Monte Carlo (Grosse, Ghahramani & Adams 2015; Wu et al. 2017): sandwich the true
//! `log p(x)` of *simulated* data between forward AIS (stochastic lower bound) and reverse AIS from
//! the exact posterior sample (stochastic upper bound).
//!
//! For data simulated from the model, `(z, x) ~ p(z) p(x | z)`, the latent `z` is an exact sample
//! of `p(z | x)`, which is what reverse AIS needs. The gap `upper − lower` bounds the error of
//! either estimate on such data and shrinks to zero as the chains get longer; a small gap says the
//! AIS settings are good enough for data like this.

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::ais::{check_prior_start, PriorOnly};
use crate::ais::{run, steps_total, AisConfig, AisResult, AisStart, Progress};
use crate::checks::{check_shape, num_examples};
use crate::error::{Error, Result};
use crate::model::{AmortizedProposal, DataSimulator, JointDensity};
use crate::rng::{rng_guard, stream_seed, TAG_SIMULATE};
use crate::stats::mean_and_stderr;

/// What [`bdmc()`] found. Log-likelihoods in nats per example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BdmcResult {
    /// Forward AIS: `log_px` are stochastic lower bounds.
    pub forward: AisResult,
    /// Reverse AIS: `log_px` are stochastic upper bounds.
    pub reverse: AisResult,
    /// `mean_x` of the forward `log p̂(x)`: the lower bound on the mean log-likelihood.
    pub lower: f64,
    /// `mean_x` of the reverse `log p̂(x)`: the upper bound.
    pub upper: f64,
    /// `upper − lower`, nats per example.
    pub gap: f64,
    /// Standard error of `gap` over examples; `None` for one example.
    pub gap_stderr: Option<f64>,
    /// Per-example gaps.
    pub gap_per_example: Vec<f64>,
}

/// Draws `n` examples from the model: `z ~ p(z)` (`[n, D]`) and `x ~ p(x | z)` (`[n, ...]`), with
/// tch's generator seeded from `seed` (holding [`crate::rng_guard`]). Returns `(x, z)`. Runs under
/// [`tch::no_grad`].
///
/// The `n` examples are drawn together, from one stream: the first `m` of `simulate(model, n,
/// seed)` are not `simulate(model, m, seed)`. A BDMC evaluation split into slices therefore
/// simulates all `n` in every slice and passes its slice of `x` and `z` to [`bdmc()`] with
/// [`AisConfig::first_example`] set.
pub fn simulate<M: DataSimulator + ?Sized>(
    model: &M,
    n: usize,
    seed: u64,
) -> Result<(Tensor, Tensor)> {
    let _rng = rng_guard();
    tch::no_grad(|| {
        tch::manual_seed(stream_seed(&[TAG_SIMULATE, seed]));
        let z = model.sample_prior(n as i64);
        check_shape("z from sample_prior", &z, &[n as i64, model.latent_dim()])?;
        let x = model.sample_data(&z);
        if x.size().first() != Some(&(n as i64)) {
            return Err(Error::Shape {
                what: "x from sample_data",
                expected: format!("[{n}, ...]"),
                got: x.size(),
            });
        }
        Ok((x, z))
    })
}

/// Runs forward AIS on `x` and reverse AIS from `z_exact` (`[B, D]`, the latents that generated
/// `x`, e.g. from [`simulate`]) with the same settings, and reports both bounds and their gap.
///
/// `config.start` must be [`crate::AisStart::Prior`] or [`crate::AisStart::EncoderBase`]. The two
/// runs use different random streams and adapt their step sizes independently. `progress(done,
/// total)` counts the annealing steps of both runs together. Modes and seeding as [`crate::ais()`].
///
/// For a slice `x[first..first + len]` of a split evaluation (and the same slice of `z_exact`),
/// set [`AisConfig::first_example`] to `first`: both runs seed their groups from it, so with
/// `first` a multiple of [`AisConfig::examples_per_group`] the slice's bounds and gaps per
/// example are those of the unsplit run (see [Sharding](mod@crate::ais#sharding)). Simulate the
/// data of all slices at once ([`simulate`]).
pub fn bdmc<M: AmortizedProposal + ?Sized>(
    model: &M,
    x: &Tensor,
    z_exact: &Tensor,
    config: &AisConfig,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<BdmcResult> {
    both_ways(model, x, z_exact, config, progress)
}

/// [`bdmc()`] for a model without a proposal: `config.start` must be
/// [`crate::AisStart::Prior`].
pub fn bdmc_from_prior<M: JointDensity + ?Sized>(
    model: &M,
    x: &Tensor,
    z_exact: &Tensor,
    config: &AisConfig,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<BdmcResult> {
    check_prior_start(config.start)?;
    both_ways(&PriorOnly(model), x, z_exact, config, progress)
}

fn both_ways<M: AmortizedProposal + ?Sized>(
    model: &M,
    x: &Tensor,
    z_exact: &Tensor,
    config: &AisConfig,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<BdmcResult> {
    config.validate()?;
    let b = num_examples(x)?;
    check_shape("z_exact", z_exact, &[b as i64, model.latent_dim()])?;
    let half = steps_total(config, b)?;
    if config.start == AisStart::FlowPosterior {
        return Err(Error::Unsupported(
            "BDMC with start = flow_posterior needs the latent in the flow's base space, i.e. the \
             inverse flow; use start = prior or encoder_base"
                .into(),
        ));
    }
    let _rng = rng_guard();
    tch::no_grad(|| {
        let forward = run(
            model,
            x,
            None,
            config,
            &mut Progress::new(progress, 0, 2 * half),
        )?;
        let reverse = run(
            model,
            x,
            Some(z_exact),
            config,
            &mut Progress::new(progress, half, 2 * half),
        )?;
        let gap_per_example: Vec<f64> = reverse
            .log_px
            .iter()
            .zip(&forward.log_px)
            .map(|(u, l)| u - l)
            .collect();
        let (gap, gap_stderr) = mean_and_stderr(&gap_per_example);
        let lower = -forward.nll;
        let upper = -reverse.nll;
        Ok(BdmcResult {
            forward,
            reverse,
            lower,
            upper,
            gap,
            gap_stderr,
            gap_per_example,
        })
    })
}
