//! Annealed importance sampling with Hamiltonian Monte Carlo transitions (AIS-HMC), with optional
//! partial momentum refresh (HAIS, Sohl-Dickstein & Culpepper 2012), and its reverse run for BDMC.
//!
//! # The algorithm (ORIGINAL §5.2, with D3, D4, D12, D13 fixed)
//!
//! For each example, `K` chains anneal from a normalised start density `p_0(z)` to the
//! unnormalised target `f_1(z) = p(x, z)`, whose normaliser is `p(x)`, through
//! `log f_β = (1 − β) log p_0 + β log f_1` for the `N` inverse temperatures `β_0 = 0 < … <
//! β_{N−1} = 1` of a [`Schedule`]:
//!
//! ```text
//! z ~ p_0;  W = 0                                   # per chain, f64
//! for t in 1..N:
//!     W += (β_t − β_{t−1}) · [log f_1(z) − log p_0(z)]
//!     if t < N − 1: z = HMC move leaving f_{β_t} invariant
//! log p̂(x) = logsumexp_c W_c − log K                # AIS estimate (D3)
//! ```
//!
//! `E[exp W] = p(x)`, so `log p̂(x)` is a stochastic lower bound on `log p(x)`, and the original's
//! `mean_c W_c` ([`AisResult::log_px_mean_log_weight`]) is a looser one. The move after the last
//! weight update, which the original makes, cannot change `W` and is skipped, so a run makes
//! `N − 2` moves. `log f_1 − log p_0` and its gradient are cached at the current state, so each
//! step costs `L` gradient evaluations of the model, none of them repeated (D12). The values
//! are needed only at a trajectory's end: the `L − 1` steps before it ask for gradients alone
//! ([`JointDensity::grad_log_prior`] for the prior start), which saves the prior's four
//! kernels at each (a launch each on a GPU, where the small models' AIS is launch-bound).
//!
//! # Start densities ([`AisStart`])
//!
//! - `Prior`: `p_0 = p(z)`, as the original by default.
//! - `EncoderBase`: `p_0 = q0(z | x) = N(mu, sigma²)`, the Gaussian base of the proposal, as the
//!   original's `use_encoder`.
//! - `FlowPosterior`: annealing in the flow's base space (D4): the state is `z0`, `p_0(z0) =
//!   N(z0; mu, sigma²)` and `f_1(z0) = p(x, f(z0)) · |det ∂f/∂z0|`, which has the same normaliser
//!   `p(x)`, so the chains start from the full flow posterior `q(z | x)` without inverting the flow.
//!
//! # HMC move
//!
//! Momentum `v ← α v + √(1 − α²) n`, `n ~ N(0, I)`, with `α` =
//! [`HmcConfig::momentum_refresh`] (`α = 0`: full resampling, the original). Then `L` leapfrog
//! steps of size `ε` (`L` position updates, half momentum steps at both ends), and a Metropolis
//! test per chain on `H = −log f_β(z) + |v|²/2`. A rejected move keeps `z` and negates `v` (which
//! only matters for `α > 0`).
//!
//! # Step-size adaptation (ORIGINAL §5.2, simultaneous semantics)
//!
//! With `a` the running acceptance rate (initially the target), after each move with step size
//! `ε` and acceptance indicators `acc`:
//!
//! ```text
//! ε ← clip( (a > target ? inc : dec) · ε, min, max )      # uses the PRE-move a
//! a ← λ · a + (1 − λ) · mean(acc)
//! ```
//!
//! The mean runs over all chains of the run ([`StepSizeAdaptation::Global`], the original), over
//! the `K` chains of each example (`PerExample`), or is the chain's own indicator (`PerChain`).
//! The state is reset for every group of examples (D12): results do not depend on what was
//! evaluated before. Under `Global`, the group is [`AisConfig::max_rows`]` / K` examples.
//!
//! # Adaptation and unbiasedness
//!
//! Each move's step size depends on earlier acceptances, including those of the chain itself,
//! so strictly the transitions are not fixed in advance and `E[exp W] = p(x)` holds only
//! approximately. Under `Global` adaptation one chain contributes `1 / (K·G)` of the rate that
//! sets its step size; under `PerChain` all of it. [`StepSizeAdaptation::Fixed`] keeps the
//! estimator exactly unbiased, and the BDMC bounds exact bounds in expectation. (In this crate's
//! tests no bias from adaptation is detectable at the 0.02-nat level.)
//!
//! # Layout and random streams
//!
//! Chains of a group of `G` examples are held as `[K, G, D]`: chain-major, like the original's
//! `(K·B, D)` with row `c·B + b` (see [`crate::model`]). Each group re-seeds tch's generator from
//! `(seed, direction, first_example + b0)`, where `b0` is the index in `x` of the group's first
//! example and [`AisConfig::first_example`] that of `x`'s first example in the whole evaluation
//! (0 unless the evaluation is split).
//!
//! # Sharding
//!
//! An evaluation of `B` examples may be split into contiguous slices `x[first..first + len]`
//! run separately, each with `first_example = first`. Groups are formed from the start of the
//! `x` passed in, so a slice whose `first` is a multiple of
//! [`examples_per_group`](AisConfig::examples_per_group) has the groups of the whole run, with
//! their seeds, and every example gets exactly the estimates it gets in the unsplit run. A slice
//! starting elsewhere runs, but groups its examples differently: each group's random stream,
//! and under [`StepSizeAdaptation::Global`] the step sizes its chains share, then differ from
//! the whole run's, and so do the estimates (equally valid, not equal). For BDMC the caller
//! simulates all `B` examples ([`crate::simulate`] draws them together) and slices `x` and
//! `z_exact` alike; the forward and reverse runs both use `first_example`.

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::checks::{check_finite, check_shape, num_examples, to_vec_f64};
use crate::error::{bad, Error, Result};
use crate::importance::check_first_example;
use crate::model::{diag_normal_log_density, value_and_grad, AmortizedProposal, JointDensity};
use crate::rng::{rng_guard, stream_seed, TAG_AIS_FORWARD, TAG_AIS_REVERSE};
use crate::schedule::Schedule;
use crate::stats::{
    combined_stderr, effective_sample_size, log_mean_exp, log_mean_exp_stderr, mean_and_stderr,
    replicate_log_mean_exp_stderr,
};

/// Where the chains start: the normalised density `p_0` of the annealing path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AisStart {
    /// The prior `p(z)` (the original's default, `use_encoder = false`).
    Prior,
    /// The Gaussian base `q0(z | x)` of the proposal, ignoring the flow (the original's
    /// `use_encoder = true`).
    EncoderBase,
    /// The full flow posterior, by annealing in the flow's base space (see the
    /// [module documentation](self)). Forward AIS only.
    FlowPosterior,
}

/// Which chains share a step size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepSizeAdaptation {
    /// One step size for all chains of all examples of a group (the original, reset per group).
    Global,
    /// One step size per example, shared by its `K` chains.
    PerExample,
    /// One step size per chain, adapted from the chain's own acceptances.
    PerChain,
    /// No adaptation: every move uses [`HmcConfig::step_size`].
    Fixed,
}

/// The HMC transition and its step-size adaptation. Defaults are the original's constructor
/// defaults (ORIGINAL §5.2, hais.py).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HmcConfig {
    /// `L`, leapfrog steps per move (default 10). Each costs one gradient evaluation.
    pub leapfrog_steps: usize,
    /// Initial step size `ε` (default 0.01; run_script.py's example uses 0.1).
    pub step_size: f64,
    /// Which chains share a step size (default [`StepSizeAdaptation::Global`]).
    pub adaptation: StepSizeAdaptation,
    /// Acceptance rate the adaptation aims for (default 0.65).
    pub target_acceptance: f64,
    /// `λ`, slowness of the running acceptance average, in `[0, 1)` (default 0.9).
    pub acceptance_slowness: f64,
    /// Smallest step size (default 1e-4).
    pub step_size_min: f64,
    /// Largest step size (default 0.5).
    pub step_size_max: f64,
    /// Factor applied when the running acceptance is above target, `≥ 1` (default 1.02).
    pub step_size_inc: f64,
    /// Factor applied otherwise, in `(0, 1]` (default 0.98).
    pub step_size_dec: f64,
    /// `α`, correlation of the momentum across moves, in `[0, 1)`: 0 resamples it fully (the
    /// original, "AIS-HMC"); `α > 0` is partial refresh (HAIS, Sohl-Dickstein & Culpepper).
    pub momentum_refresh: f64,
}

impl Default for HmcConfig {
    fn default() -> Self {
        HmcConfig {
            leapfrog_steps: 10,
            step_size: 0.01,
            adaptation: StepSizeAdaptation::Global,
            target_acceptance: 0.65,
            acceptance_slowness: 0.9,
            step_size_min: 1e-4,
            step_size_max: 0.5,
            step_size_inc: 1.02,
            step_size_dec: 0.98,
            momentum_refresh: 0.0,
        }
    }
}

impl HmcConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        let h = self;
        if h.leapfrog_steps == 0 {
            return Err(bad("hmc.leapfrog_steps", h.leapfrog_steps, "at least 1"));
        }
        if !(h.step_size_min > 0.0 && h.step_size_min.is_finite()) {
            return Err(bad(
                "hmc.step_size_min",
                h.step_size_min,
                "a finite number above 0",
            ));
        }
        if !(h.step_size_max >= h.step_size_min && h.step_size_max.is_finite()) {
            return Err(bad(
                "hmc.step_size_max",
                h.step_size_max,
                "a finite number at least hmc.step_size_min",
            ));
        }
        if !(h.step_size >= h.step_size_min && h.step_size <= h.step_size_max) {
            return Err(bad(
                "hmc.step_size",
                h.step_size,
                "a number in [hmc.step_size_min, hmc.step_size_max]",
            ));
        }
        if !(h.target_acceptance > 0.0 && h.target_acceptance < 1.0) {
            return Err(bad(
                "hmc.target_acceptance",
                h.target_acceptance,
                "a number in (0, 1)",
            ));
        }
        if !(h.acceptance_slowness >= 0.0 && h.acceptance_slowness < 1.0) {
            return Err(bad(
                "hmc.acceptance_slowness",
                h.acceptance_slowness,
                "a number in [0, 1)",
            ));
        }
        if !(h.step_size_inc >= 1.0 && h.step_size_inc.is_finite()) {
            return Err(bad(
                "hmc.step_size_inc",
                h.step_size_inc,
                "a finite number at least 1",
            ));
        }
        if !(h.step_size_dec > 0.0 && h.step_size_dec <= 1.0) {
            return Err(bad(
                "hmc.step_size_dec",
                h.step_size_dec,
                "a number in (0, 1]",
            ));
        }
        if !(h.momentum_refresh >= 0.0 && h.momentum_refresh < 1.0) {
            return Err(bad(
                "hmc.momentum_refresh",
                h.momentum_refresh,
                "a number in [0, 1) (0 = full resampling)",
            ));
        }
        Ok(())
    }
}

/// Settings of [`ais()`] and [`reverse_ais`]. Defaults are the original's (ORIGINAL §5.2), except
/// that the estimate is the AIS one (D3) and the adaptation is reset per group (D12).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AisConfig {
    /// `K`, chains per example (default 16).
    pub num_chains: usize,
    /// `N`, the number of schedule points, giving `N − 1` weight updates and `N − 2` HMC moves
    /// (default 500). `N = 1` is treated as 2, as in the original.
    pub anneal_steps: usize,
    /// Spacing of the inverse temperatures (default: sigmoid, radius 4).
    pub schedule: Schedule,
    /// The start density (default: the prior).
    pub start: AisStart,
    /// The transition.
    pub hmc: HmcConfig,
    /// Memory budget: the most rows (chains × examples) in one model call; examples are annealed
    /// in groups of `⌊max_rows / K⌋` (default 3200, the original's 16 chains × 200 images).
    /// Gradient evaluations keep the model's activations for the backward pass, so this budget
    /// should be smaller than IS's.
    pub max_rows: usize,
    /// Seed of the chains' randomness.
    pub seed: u64,
    /// Keep every chain's final log-weight in [`AisResult::log_weights`] (`B × K` numbers).
    pub record_log_weights: bool,
    /// The index, in the whole evaluation, of `x`'s first example: the noise of the group of
    /// examples starting at `x`'s example `b0` is seeded by `(seed, first_example + b0)`, so a
    /// slice evaluated with its offset gets exactly the estimates of the whole — when the slice
    /// starts at a multiple of [`examples_per_group`](Self::examples_per_group) of the whole
    /// evaluation. Elsewhere it groups examples differently from the whole run (other streams
    /// and, under [`StepSizeAdaptation::Global`], other shared step sizes), and its estimates
    /// differ (see [Sharding](self#sharding)). 0 (the default) for an evaluation that is not
    /// split; `first_example + B` must fit in a `usize`. Left out of the JSON when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub first_example: usize,
}

/// Whether a count is 0 (serde: leave [`AisConfig::first_example`] out of the JSON, so that the
/// settings of an unsplit run read as before the field existed).
fn is_zero(v: &usize) -> bool {
    *v == 0
}

impl Default for AisConfig {
    fn default() -> Self {
        AisConfig {
            num_chains: 16,
            anneal_steps: 500,
            schedule: Schedule::default(),
            start: AisStart::Prior,
            hmc: HmcConfig::default(),
            max_rows: 3200,
            seed: 0,
            record_log_weights: false,
            first_example: 0,
        }
    }
}

impl AisConfig {
    /// The short forward AIS from the prior that checks importance sampling
    /// ([`crate::IsResult::below_ais`], `vae eval --check-with-ais`): 300 steps, 8 chains, 5
    /// leapfrog steps, an initial step size of 0.1 and a cap of 3.0 (near `β = 0` the chains
    /// see the prior, whose best step is near 1: the original's 0.01 start, growing 2% a move,
    /// left them still for the first hundred moves). The same gradient evaluations per image as
    /// 4 chains of 10 leapfrog steps, which, with the original's step sizes, missed a fifth of
    /// the images where IS had lost a mode (`tests/error_bars.rs`); these settings missed none
    /// of 240 over 20 seeds.
    pub fn is_check(seed: u64) -> AisConfig {
        AisConfig {
            num_chains: 8,
            anneal_steps: 300,
            start: AisStart::Prior,
            hmc: HmcConfig {
                leapfrog_steps: 5,
                step_size: 0.1,
                step_size_max: 3.0,
                ..HmcConfig::default()
            },
            seed,
            ..AisConfig::default()
        }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        if self.num_chains == 0 {
            return Err(bad("num_chains", self.num_chains, "at least 1"));
        }
        if self.anneal_steps == 0 {
            return Err(bad("anneal_steps", self.anneal_steps, "at least 1"));
        }
        if self.max_rows < self.num_chains {
            return Err(bad(
                "max_rows",
                self.max_rows,
                "at least num_chains (one example's chains per model call)",
            ));
        }
        self.schedule.validate()?;
        self.hmc.validate()
    }

    /// Examples annealed together: `⌊max_rows / num_chains⌋`, at least 1 once validated. The
    /// one statement of the grouping rule, for the run and for what a progress bar counts.
    ///
    /// Groups start at `x`'s first example, and each has its own random stream and (under
    /// [`StepSizeAdaptation::Global`]) its own shared step size: an evaluation split into slices
    /// reproduces the unsplit run's estimates exactly only when every slice starts at a
    /// multiple of this number (see [`first_example`](Self::first_example)).
    pub fn examples_per_group(&self) -> usize {
        self.max_rows / self.num_chains
    }
}

/// Which way the chains ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From `p_0` to the posterior: `log p̂(x)` is a stochastic lower bound.
    Forward,
    /// From an exact posterior sample back to `p_0`: `log p̂(x)` is a stochastic upper bound.
    Reverse,
}

/// Per-move diagnostics, one entry per HMC move (`N − 2` of them), averaged over groups of
/// examples (weighted by group size; min and max over groups).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AisTrace {
    /// Fraction of chains whose move was accepted.
    pub acceptance: Vec<f64>,
    /// Mean step size used for the move, over chains.
    pub step_size_mean: Vec<f64>,
    /// Smallest step size used by any chain.
    pub step_size_min: Vec<f64>,
    /// Largest step size used by any chain.
    pub step_size_max: Vec<f64>,
}

/// What [`ais()`] or [`reverse_ais`] found. Log-likelihoods in nats per example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AisResult {
    /// The settings used.
    pub config: AisConfig,
    /// Forward (lower bound) or reverse (upper bound).
    pub direction: Direction,
    /// Number of examples.
    pub num_examples: usize,
    /// `−mean_x log p̂(x)`.
    pub nll: f64,
    /// Standard error of `nll` over examples; `None` for one example.
    pub nll_stderr: Option<f64>,
    /// Monte Carlo standard error of `nll` from the per-example delta-method errors (rough for
    /// small `K`); `None` for `K = 1`.
    pub nll_mc_stderr: Option<f64>,
    /// `−mean_x` of [`log_px_mean_log_weight`](Self::log_px_mean_log_weight): the original's
    /// reported number (D3), a looser bound: `≥ nll` forward, `≤ nll` reverse.
    pub nll_mean_log_weight: f64,
    /// Per-example estimate. Forward: `logsumexp_c W_c − log K`, a stochastic lower bound on
    /// `log p(x)`. Reverse: `−(logsumexp_c W_c − log K)`, a stochastic upper bound.
    pub log_px: Vec<f64>,
    /// Per-example delta-method standard error of `log_px`; `None` for `K = 1`.
    pub log_px_stderr: Vec<Option<f64>>,
    /// Per-example mean log-weight bound: `mean_c W_c` forward, `−mean_c W_c` reverse.
    pub log_px_mean_log_weight: Vec<f64>,
    /// Per-example Monte Carlo error of `log_px` from the chains as replicates: the standard
    /// deviation of the `K` chains' log-weights `W_c` divided by `√K`
    /// ([`crate::stats::replicate_log_mean_exp_stderr`] with one chain per group). It needs no
    /// variance of the weights `exp W_c`, so heavy tails fool it less than the delta method;
    /// `None` for `K = 1`.
    #[serde(default)]
    pub log_px_mc_se: Vec<Option<f64>>,
    /// The Monte Carlo error of `nll` from [`log_px_mc_se`](Self::log_px_mc_se), `√(Σ_x se_x²) /
    /// B`; `None` for `K = 1`.
    #[serde(default)]
    pub nll_mc_stderr_replicates: Option<f64>,
    /// Per-example effective sample size of the `K` chain weights, in `[1, K]`.
    pub ess: Vec<f64>,
    /// The smallest of [`ess`](Self::ess). Values near 1 mean one chain dominates some example:
    /// the standard errors are then unreliable and longer chains are needed.
    pub ess_min: f64,
    /// Acceptance and step-size traces.
    pub trace: AisTrace,
    /// If [`AisConfig::record_log_weights`]: `log_weights[b][c]` is chain `c`'s `W` for example `b`.
    pub log_weights: Option<Vec<Vec<f64>>>,
}

/// The standard deviation of an example's chain log-weights, nats, above which its AIS estimate
/// is flagged ([`AisFlag::Spread`]). Below it the weights `exp W_c` are nearly lognormal with a
/// relative variance `e^{s²} − 1 < 1.7`, and both error bars describe the estimate; above it the
/// log-mean-exp is set by the luckiest chain, and neither does.
pub const AIS_SPREAD_FLAG: f64 = 1.0;

/// Why an example's AIS estimate should not be trusted ([`AisResult::flags`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AisFlag {
    /// Its chains disagree: their log-weights' standard deviation is above [`AIS_SPREAD_FLAG`].
    Spread,
    /// The effective sample size of its `K` final weights is below `K / 2`: one or two chains
    /// carry the estimate.
    Ess,
}

impl AisFlag {
    /// The flag's name in reports: `spread` or `ess`.
    pub fn name(self) -> &'static str {
        match self {
            AisFlag::Spread => "spread",
            AisFlag::Ess => "ess",
        }
    }
}

impl AisResult {
    /// The reasons to distrust example `i`'s estimate; empty when there are none, and always
    /// for one chain (nothing to compare). Longer chains (more annealing steps) are the cure
    /// for both.
    pub fn flags(&self, i: usize) -> Vec<AisFlag> {
        let k = self.config.num_chains;
        let mut out = Vec::new();
        // log_px_mc_se is the chains' standard deviation over √K.
        if self
            .log_px_mc_se
            .get(i)
            .copied()
            .flatten()
            .is_some_and(|se| se * (k as f64).sqrt() > AIS_SPREAD_FLAG)
        {
            out.push(AisFlag::Spread);
        }
        if k >= 2 && self.ess.get(i).is_some_and(|&e| e < k as f64 / 2.0) {
            out.push(AisFlag::Ess);
        }
        out
    }

    /// How many examples have at least one [flag](Self::flags).
    pub fn flagged(&self) -> usize {
        (0..self.num_examples)
            .filter(|&i| !self.flags(i).is_empty())
            .count()
    }
}

/// Forward AIS: estimates `log p(x)` for each example of `x` (`[B, ...]`, on the model's device)
/// with `K` annealed chains from [`AisConfig::start`], any of them (the encoder starts use the
/// model's [`AmortizedProposal`]; [`ais_from_prior`] needs only the [`JointDensity`]).
///
/// `progress(done, total)` is called after each annealing step of each group of examples
/// (`total = groups · (N − 1)`). Runs under [`tch::no_grad`] (gradients in `z` are taken under
/// [`tch::with_grad`] internally, see [`crate::model`]); seeds tch's global generator, holding
/// [`crate::rng_guard`]; the model must be in inference mode. No gradient flows out.
pub fn ais<M: AmortizedProposal + ?Sized>(
    model: &M,
    x: &Tensor,
    config: &AisConfig,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<AisResult> {
    anneal(model, x, None, config, progress)
}

/// [`ais()`] for a model without a proposal: the chains start from the prior, so
/// `config.start` must be [`AisStart::Prior`] (anything else is [`Error::Unsupported`]).
pub fn ais_from_prior<M: JointDensity + ?Sized>(
    model: &M,
    x: &Tensor,
    config: &AisConfig,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<AisResult> {
    check_prior_start(config.start)?;
    anneal(&PriorOnly(model), x, None, config, progress)
}

/// Reverse AIS: runs the chains from exact posterior samples `z_exact` (`[B, D]`, one per
/// example, e.g. the latents that generated `x` by [`crate::simulate`]) back to `p_0`.
///
/// The weights satisfy `E[exp W] = 1 / p(x)`, so the returned `log_px` is a stochastic upper bound
/// on `log p(x)` (Grosse et al. 2015). All `K` chains of an example start from its one exact
/// sample. Not available with [`AisStart::FlowPosterior`], which would need the inverse flow.
/// Progress, modes and seeding as [`ais()`].
pub fn reverse_ais<M: AmortizedProposal + ?Sized>(
    model: &M,
    x: &Tensor,
    z_exact: &Tensor,
    config: &AisConfig,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<AisResult> {
    anneal(model, x, Some(z_exact), config, progress)
}

/// [`reverse_ais`] for a model without a proposal: `config.start` must be [`AisStart::Prior`].
pub fn reverse_ais_from_prior<M: JointDensity + ?Sized>(
    model: &M,
    x: &Tensor,
    z_exact: &Tensor,
    config: &AisConfig,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<AisResult> {
    check_prior_start(config.start)?;
    anneal(&PriorOnly(model), x, Some(z_exact), config, progress)
}

/// Forward AIS (`z_exact` `None`) or reverse AIS from `z_exact`: validation, progress total,
/// the generator's lock and `no_grad` around [`run`].
fn anneal<M: AmortizedProposal + ?Sized>(
    model: &M,
    x: &Tensor,
    z_exact: Option<&Tensor>,
    config: &AisConfig,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<AisResult> {
    config.validate()?;
    let b = num_examples(x)?;
    let total = steps_total(config, b)?;
    let _rng = rng_guard();
    tch::no_grad(|| {
        run(
            model,
            x,
            z_exact,
            config,
            &mut Progress::new(progress, 0, total),
        )
    })
}

/// A model without a proposal, seen as one whose proposal is never asked for: the estimators
/// for such models ([`ais_from_prior`] and friends) refuse every start but the prior before
/// they run ([`check_prior_start`]), and the annealing code encodes only for the other starts, so the
/// proposal methods below are never called.
pub(crate) struct PriorOnly<'a, M: JointDensity + ?Sized>(pub(crate) &'a M);

impl<M: JointDensity + ?Sized> JointDensity for PriorOnly<'_, M> {
    fn latent_dim(&self) -> i64 {
        self.0.latent_dim()
    }
    fn device(&self) -> tch::Device {
        self.0.device()
    }
    fn kind(&self) -> Kind {
        self.0.kind()
    }
    fn log_joint(&self, x: &Tensor, z: &Tensor) -> Tensor {
        self.0.log_joint(x, z)
    }
    fn log_joint_and_grad(&self, x: &Tensor, z: &Tensor) -> (Tensor, Tensor) {
        self.0.log_joint_and_grad(x, z)
    }
    fn log_prior(&self, z: &Tensor) -> Tensor {
        self.0.log_prior(z)
    }
    fn log_prior_and_grad(&self, z: &Tensor) -> (Tensor, Tensor) {
        self.0.log_prior_and_grad(z)
    }
    fn grad_log_prior(&self, z: &Tensor) -> Tensor {
        self.0.grad_log_prior(z)
    }
    fn sample_prior(&self, n: i64) -> Tensor {
        self.0.sample_prior(n)
    }
    fn activation_bytes_per_row(&self) -> Option<u64> {
        self.0.activation_bytes_per_row()
    }
}

impl<M: JointDensity + ?Sized> AmortizedProposal for PriorOnly<'_, M> {
    type Posterior = ();
    fn encode(&self, _x: &Tensor) {
        unreachable!("check_prior_start admits only the prior start for a model without a proposal")
    }
    fn base(&self, _posterior: &()) -> (Tensor, Tensor) {
        unreachable!("check_prior_start admits only the prior start for a model without a proposal")
    }
}

/// Refuses a start from the encoder for a model without a proposal (the `_from_prior`
/// estimators).
pub(crate) fn check_prior_start(start: AisStart) -> Result<()> {
    if start != AisStart::Prior {
        let name = match start {
            AisStart::Prior => "prior",
            AisStart::EncoderBase => "encoder_base",
            AisStart::FlowPosterior => "flow_posterior",
        };
        return Err(Error::Unsupported(format!(
            "start = {name} needs the model's proposal q(z | x): use the estimator for models \
             with an AmortizedProposal (ais, reverse_ais, bdmc), or start = prior"
        )));
    }
    Ok(())
}

/// Annealing steps over all groups: what a progress bar counts.
pub(crate) fn steps_total(config: &AisConfig, b: usize) -> Result<u64> {
    let betas = config.schedule.betas(config.anneal_steps)?;
    let group = config.examples_per_group();
    Ok((b.div_ceil(group) * (betas.len() - 1)) as u64)
}

/// A progress callback with an offset, so that BDMC can report its two runs as one.
pub(crate) struct Progress<'a> {
    callback: &'a mut dyn FnMut(u64, u64),
    done: u64,
    total: u64,
}

impl<'a> Progress<'a> {
    pub(crate) fn new(callback: &'a mut dyn FnMut(u64, u64), done: u64, total: u64) -> Self {
        Progress {
            callback,
            done,
            total,
        }
    }
    fn step(&mut self) {
        self.done += 1;
        (self.callback)(self.done, self.total);
    }
}

pub(crate) fn run<M: AmortizedProposal + ?Sized>(
    model: &M,
    x: &Tensor,
    z_exact: Option<&Tensor>,
    config: &AisConfig,
    progress: &mut Progress<'_>,
) -> Result<AisResult> {
    let b_total = num_examples(x)?;
    check_first_example(config.first_example, b_total)?;
    let d = model.latent_dim();
    let k = config.num_chains;
    let direction = if z_exact.is_some() {
        Direction::Reverse
    } else {
        Direction::Forward
    };
    if let Some(z) = z_exact {
        if config.start == AisStart::FlowPosterior {
            return Err(Error::Unsupported(
                "reverse AIS (BDMC) with start = flow_posterior needs the latent in the flow's \
                 base space, i.e. the inverse flow; use start = prior or encoder_base"
                    .into(),
            ));
        }
        check_shape("z_exact", z, &[b_total as i64, d])?;
    }
    let betas = config.schedule.betas(config.anneal_steps)?;
    let group = config.examples_per_group();

    let mut log_weights: Vec<Vec<f64>> = Vec::with_capacity(b_total);
    let mut traces: Vec<(usize, Vec<[f64; 4]>)> = Vec::new();
    for b0 in (0..b_total).step_by(group) {
        let g = group.min(b_total - b0);
        let tag = match direction {
            Direction::Forward => TAG_AIS_FORWARD,
            Direction::Reverse => TAG_AIS_REVERSE,
        };
        let first = (config.first_example + b0) as u64;
        tch::manual_seed(stream_seed(&[tag, config.seed, first]));
        let xs = x.f_narrow(0, b0 as i64, g as i64)?;
        let z0 = match z_exact {
            Some(z) => Some(z.f_narrow(0, b0 as i64, g as i64)?),
            None => None,
        };
        let out = run_group(model, &xs, z0.as_ref(), config, &betas, b0, progress)?;
        for j in 0..g {
            log_weights.push((0..k).map(|c| out.log_w[c * g + j]).collect());
        }
        traces.push((g, out.trace));
    }

    let sign = match direction {
        Direction::Forward => 1.0,
        Direction::Reverse => -1.0,
    };
    let log_px: Vec<f64> = log_weights.iter().map(|w| sign * log_mean_exp(w)).collect();
    let log_px_mean_log_weight: Vec<f64> = log_weights
        .iter()
        .map(|w| sign * w.iter().sum::<f64>() / k as f64)
        .collect();
    let log_px_stderr: Vec<Option<f64>> =
        log_weights.iter().map(|w| log_mean_exp_stderr(w)).collect();
    let ess: Vec<f64> = log_weights
        .iter()
        .map(|w| effective_sample_size(w))
        .collect();
    let log_px_mc_se: Vec<Option<f64>> = log_weights
        .iter()
        .map(|w| replicate_log_mean_exp_stderr(w, w.len()))
        .collect();
    let neg = |v: &[f64]| v.iter().map(|x| -x).collect::<Vec<_>>();
    let (nll, nll_stderr) = mean_and_stderr(&neg(&log_px));
    let (nll_mean_log_weight, _) = mean_and_stderr(&neg(&log_px_mean_log_weight));
    Ok(AisResult {
        config: config.clone(),
        direction,
        num_examples: b_total,
        nll,
        nll_stderr,
        nll_mc_stderr: combined_stderr(&log_px_stderr),
        nll_mean_log_weight,
        log_px,
        log_px_stderr,
        log_px_mean_log_weight,
        nll_mc_stderr_replicates: combined_stderr(&log_px_mc_se),
        log_px_mc_se,
        ess_min: ess.iter().copied().fold(f64::INFINITY, f64::min),
        ess,
        trace: merge_traces(&traces, b_total),
        log_weights: config.record_log_weights.then_some(log_weights),
    })
}

fn merge_traces(traces: &[(usize, Vec<[f64; 4]>)], b_total: usize) -> AisTrace {
    let moves = traces.first().map_or(0, |(_, t)| t.len());
    let mut out = AisTrace::default();
    for m in 0..moves {
        let weighted = |i: usize| {
            traces.iter().map(|(g, t)| *g as f64 * t[m][i]).sum::<f64>() / b_total as f64
        };
        out.acceptance.push(weighted(0));
        out.step_size_mean.push(weighted(1));
        out.step_size_min.push(
            traces
                .iter()
                .map(|(_, t)| t[m][2])
                .fold(f64::INFINITY, f64::min),
        );
        out.step_size_max.push(
            traces
                .iter()
                .map(|(_, t)| t[m][3])
                .fold(f64::NEG_INFINITY, f64::max),
        );
    }
    out
}

struct GroupOut {
    /// `[K, G]` row-major: chain `c` of example `j` at `c * G + j`.
    log_w: Vec<f64>,
    /// Per move: acceptance rate, mean, min and max step size.
    trace: Vec<[f64; 4]>,
}

/// Anneals one group of `G` examples (`xs` `[G, ...]`) with `K` chains each.
fn run_group<M: AmortizedProposal + ?Sized>(
    model: &M,
    xs: &Tensor,
    z_exact: Option<&Tensor>,
    config: &AisConfig,
    betas: &[f64],
    offset: usize,
    progress: &mut Progress<'_>,
) -> Result<GroupOut> {
    let k = config.num_chains as i64;
    let g = xs.size()[0];
    let d = model.latent_dim();
    let (kind, device) = (model.kind(), model.device());
    let state_shape = [k, g, d];

    let posterior = match config.start {
        AisStart::Prior => None,
        AisStart::EncoderBase | AisStart::FlowPosterior => Some(model.encode(xs)),
    };
    let base = match &posterior {
        Some(p) => {
            let (mu, log_sigma) = model.base(p);
            check_shape("mu from base", &mu, &[g, d])?;
            check_shape("log_sigma from base", &log_sigma, &[g, d])?;
            Some((mu, log_sigma))
        }
        None => None,
    };
    let target = Target {
        model,
        x: xs,
        start: config.start,
        posterior: posterior.as_ref(),
        base: base.as_ref(),
        shape: state_shape,
    };

    let mut z = match (z_exact, &base) {
        (Some(z), _) => z
            .f_to_device(device)?
            .f_to_kind(kind)?
            .f_unsqueeze(0)?
            .f_expand(state_shape, false)?
            .f_contiguous()?,
        (None, None) => {
            let z = model.sample_prior(k * g);
            check_shape("z from sample_prior", &z, &[k * g, d])?;
            z.f_view(state_shape)?
        }
        (None, Some((mu, log_sigma))) => {
            mu + log_sigma.exp() * Tensor::randn(state_shape, (kind, device))
        }
    };
    let mut cache = target.eval(&z)?;
    let mut momentum = Tensor::randn(state_shape, (kind, device));
    let mut adapt = StepSizeController::new(&config.hmc, [k, g], device);
    let mut log_w = Tensor::zeros([k, g], (Kind::Double, device));
    let mut trace_rows: Vec<Tensor> = Vec::new();

    let t_max = betas.len() - 1;
    for step in 1..=t_max {
        // Forward: weight from β_{t−1} to β_t, then move at β_t. Reverse: the same path walked
        // back, from β_t to β_{t−1} with t = t_max, …, 1, each followed by a move at β_{t−1}.
        let (dbeta, move_beta) = match z_exact {
            None => (
                betas[step] - betas[step - 1],
                (step < t_max).then(|| betas[step]),
            ),
            Some(_) => {
                let t = t_max + 1 - step;
                (betas[t - 1] - betas[t], (t > 1).then(|| betas[t - 1]))
            }
        };
        log_w += cache.delta().f_to_kind(Kind::Double)? * dbeta;
        if let Some(beta) = move_beta {
            let eps = adapt.step_size.shallow_clone();
            let accept = hmc_move(
                &target,
                beta,
                &mut z,
                &mut cache,
                &mut momentum,
                &eps,
                &config.hmc,
            )?;
            let acc = accept.to_kind(Kind::Double);
            let acc_mean = acc.mean(Kind::Double);
            let (eps_min, eps_max) = eps.aminmax(None, false);
            trace_rows.push(Tensor::stack(
                &[&acc_mean, &eps.mean(Kind::Double), &eps_min, &eps_max],
                0,
            ));
            adapt.update(&acc, &acc_mean);
        }
        progress.step();
    }

    let log_w = to_vec_f64(&log_w)?;
    check_finite("AIS log-weight", &log_w, g as usize, offset)?;
    let trace = if trace_rows.is_empty() {
        Vec::new()
    } else {
        to_vec_f64(&Tensor::stack(&trace_rows, 0))?
            .chunks_exact(4)
            .map(|c| [c[0], c[1], c[2], c[3]])
            .collect()
    };
    Ok(GroupOut { log_w, trace })
}

/// `log p_0`, `log f_1` and their gradients at one state `[K, G, D]`.
struct Eval {
    /// `log p_0(z)`, `[K, G]`.
    lp0: Tensor,
    /// `log f_1(z)`, `[K, G]`.
    lf1: Tensor,
    /// `∇ log p_0(z)`, `[K, G, D]`.
    g0: Tensor,
    /// `∇ log f_1(z)`, `[K, G, D]`.
    g1: Tensor,
}

impl Eval {
    // `lerp` gives (1 − β)·a + β·b in one kernel: the HMC loop is launch-bound on a GPU.
    /// `log f_β = (1 − β) log p_0 + β log f_1`, `[K, G]`.
    fn log_pi(&self, beta: f64) -> Tensor {
        self.lp0.lerp(&self.lf1, beta)
    }
    /// `∇ log f_β`, `[K, G, D]`.
    fn grad(&self, beta: f64) -> Tensor {
        self.g0.lerp(&self.g1, beta)
    }
    /// `log f_1 − log p_0`, `[K, G]`: the per-step log-weight increment divided by `Δβ`.
    fn delta(&self) -> Tensor {
        &self.lf1 - &self.lp0
    }
    /// Rows where `accept` (`[K, G]`) holds from `other`, the rest from `self`.
    fn select(&self, accept: &Tensor, other: &Eval) -> Eval {
        let a3 = accept.unsqueeze(-1);
        Eval {
            lp0: other.lp0.where_self(accept, &self.lp0),
            lf1: other.lf1.where_self(accept, &self.lf1),
            g0: other.g0.where_self(&a3, &self.g0),
            g1: other.g1.where_self(&a3, &self.g1),
        }
    }
}

/// The two ends of the annealing path for one group.
struct Target<'a, M: AmortizedProposal + ?Sized> {
    model: &'a M,
    x: &'a Tensor,
    start: AisStart,
    posterior: Option<&'a M::Posterior>,
    /// `(mu, log_sigma)`, each `[G, D]`, for the encoder starts.
    base: Option<&'a (Tensor, Tensor)>,
    shape: [i64; 3],
}

impl<M: AmortizedProposal + ?Sized> Target<'_, M> {
    /// Both ends' values and gradients at `z`.
    fn eval(&self, z: &Tensor) -> Result<Eval> {
        let rows = [self.shape[0], self.shape[1]];
        let (lp0, g0) = match self.base {
            None => self.model.log_prior_and_grad(z),
            Some((mu, log_sigma)) => (diag_normal_log_density(z, mu, log_sigma), self.grad0(z)),
        };
        let (lf1, g1) = self.end1(z);
        check_shape("log p_0", &lp0, &rows)?;
        check_shape("grad log p_0", &g0, &self.shape)?;
        check_shape("log_joint", &lf1, &rows)?;
        check_shape("grad log_joint", &g1, &self.shape)?;
        Ok(Eval { lp0, lf1, g0, g1 })
    }

    /// `∇ log f_β(z)` alone, `[K, G, D]`, the same tensor as `eval(z)?.grad(beta)`: the leapfrog
    /// steps before a trajectory's last use no values, and `p_0`'s would cost kernels (four
    /// for the standard normal prior, launches on a GPU) at each of them.
    fn grad(&self, z: &Tensor, beta: f64) -> Result<Tensor> {
        let g0 = self.grad0(z);
        let (_, g1) = self.end1(z);
        check_shape("grad log p_0", &g0, &self.shape)?;
        check_shape("grad log_joint", &g1, &self.shape)?;
        Ok(g0.lerp(&g1, beta))
    }

    /// `∇ log p_0(z)`.
    fn grad0(&self, z: &Tensor) -> Tensor {
        match self.base {
            None => self.model.grad_log_prior(z),
            Some((mu, log_sigma)) => (mu - z) * (log_sigma * -2.0).exp(),
        }
    }

    /// `log f_1(z)` and its gradient.
    fn end1(&self, z: &Tensor) -> (Tensor, Tensor) {
        match (self.start, self.posterior) {
            (AisStart::FlowPosterior, Some(posterior)) => value_and_grad(z, |z0| {
                let (zt, log_det) = self.model.flow(posterior, z0);
                self.model.log_joint(self.x, &zt) + log_det
            }),
            _ => self.model.log_joint_and_grad(self.x, z),
        }
    }
}

/// One HMC move at inverse temperature `beta` with per-chain step sizes `eps` (`[K, G]`, f64).
/// Updates `z`, `cache` and `momentum` in place; returns the acceptance indicators, `[K, G]` bool.
fn hmc_move<M: AmortizedProposal + ?Sized>(
    target: &Target<'_, M>,
    beta: f64,
    z: &mut Tensor,
    cache: &mut Eval,
    momentum: &mut Tensor,
    eps: &Tensor,
    hmc: &HmcConfig,
) -> Result<Tensor> {
    let alpha = hmc.momentum_refresh;
    let noise = z.randn_like();
    let v0 = if alpha == 0.0 {
        noise
    } else {
        &*momentum * alpha + noise * (1.0 - alpha * alpha).sqrt()
    };
    let eps3 = eps.to_kind(z.kind()).unsqueeze(-1);
    let half = &eps3 * 0.5;
    // Fused updates (`a.addcmul(b, c)` = a + b·c): one kernel each.
    let mut v = v0.addcmul(&half, &cache.grad(beta));
    let mut zp = z.shallow_clone();
    let mut proposal = None;
    for l in 1..=hmc.leapfrog_steps {
        zp = zp.addcmul(&eps3, &v);
        if l < hmc.leapfrog_steps {
            v = v.addcmul(&eps3, &target.grad(&zp, beta)?);
        } else {
            let e = target.eval(&zp)?;
            v = v.addcmul(&half, &e.grad(beta));
            proposal = Some(e);
        }
    }
    let proposal = proposal.expect("at least one leapfrog step");
    // Accept when log u ≤ H0 − H1 = log f_β(z') − log f_β(z) + (|v0|² − |v|²)/2. The f32
    // difference of the two log-densities is exact (Sterbenz) while they are within a factor
    // of 2, as a proposal's are; the kinetic terms are summed in f64. Thirteen kernels where
    // the two energies in full took eighteen (launches, on a GPU).
    let log_ratio = (proposal.log_pi(beta) - cache.log_pi(beta)).to_kind(Kind::Double);
    let kinetic_gain = (v0.square() - v.square()).sum_dim_intlist(-1, false, Kind::Double);
    let log_u = Tensor::rand(log_ratio.size(), (Kind::Double, log_ratio.device())).log();
    // NaN energies (a diverging trajectory) compare false: rejected.
    let accept = (log_ratio + kinetic_gain * 0.5).ge_tensor(&log_u);
    let a3 = accept.unsqueeze(-1);
    *z = zp.where_self(&a3, z);
    *cache = cache.select(&accept, &proposal);
    *momentum = v.where_self(&a3, &(-v0));
    Ok(accept)
}

/// The original's step-size rule (see the [module documentation](self)), with the mean of the
/// acceptances taken over the rows that share a step size.
pub(crate) struct StepSizeController {
    mode: StepSizeAdaptation,
    target: f64,
    slowness: f64,
    min: f64,
    max: f64,
    dec: f64,
    /// Current step size per chain, `[K, G]`, f64.
    pub(crate) step_size: Tensor,
    /// Running acceptance rate per chain, `[K, G]`, f64.
    pub(crate) avg_acceptance: Tensor,
    /// `inc` everywhere, `[K, G]`, f64: the factor tensor is one `where` from it (a `where` of
    /// two scalars would be f32).
    inc_full: Tensor,
}

impl StepSizeController {
    pub(crate) fn new(hmc: &HmcConfig, rows: [i64; 2], device: Device) -> Self {
        let full = |v: f64| Tensor::full(rows, v, (Kind::Double, device));
        StepSizeController {
            mode: hmc.adaptation,
            target: hmc.target_acceptance,
            slowness: hmc.acceptance_slowness,
            min: hmc.step_size_min,
            max: hmc.step_size_max,
            dec: hmc.step_size_dec,
            step_size: full(hmc.step_size),
            avg_acceptance: full(hmc.target_acceptance),
            inc_full: full(hmc.step_size_inc),
        }
    }

    /// One simultaneous update from the move's acceptance indicators `acc` (`[K, G]`, 0.0 / 1.0)
    /// and their mean over all rows, `acc_mean` (0-dim; the trace has it already).
    pub(crate) fn update(&mut self, acc: &Tensor, acc_mean: &Tensor) {
        let rate = match self.mode {
            StepSizeAdaptation::Fixed => return,
            StepSizeAdaptation::Global => acc_mean.expand_as(acc),
            StepSizeAdaptation::PerExample => acc.mean_dim(0, true, Kind::Double).expand_as(acc),
            StepSizeAdaptation::PerChain => acc.shallow_clone(),
        };
        // Pre-move running acceptance decides the factor (simultaneous semantics).
        let above = self.avg_acceptance.gt(self.target);
        let factor = self.inc_full.where_scalarother(&above, self.dec);
        self.step_size = (&self.step_size * factor).clamp(self.min, self.max);
        // a ← slowness · a + (1 − slowness) · rate, in one kernel.
        self.avg_acceptance = self.avg_acceptance.lerp(&rate, 1.0 - self.slowness);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(t: &Tensor) -> Vec<f64> {
        to_vec_f64(t).unwrap()
    }

    /// One controller update from acceptance indicators, with their mean as the AIS loop gives it.
    fn update(c: &mut StepSizeController, acc: &Tensor) {
        c.update(acc, &acc.mean(Kind::Double));
    }

    /// The leapfrog steps' gradient-only evaluation is the full one's gradient, to the bit, for
    /// every start (the prior's gradient through the trait's default, by autograd, here).
    #[test]
    fn gradient_alone_is_the_full_evaluations_gradient() {
        use crate::analytic::{LinearGaussian, Proposal};
        for (start, full_covariance) in [
            (AisStart::Prior, true),
            (AisStart::EncoderBase, false),
            (AisStart::FlowPosterior, true),
        ] {
            let proposal = Proposal {
                mean_shift: 0.3,
                scale: 1.5,
                full_covariance,
            };
            let model = LinearGaussian::random(6, 3, 1.0, 0.5, 4, proposal);
            let _rng = crate::rng_guard();
            tch::manual_seed(8);
            let x = Tensor::randn([5, 6], (Kind::Float, Device::Cpu));
            let z = Tensor::randn([2, 5, 3], (Kind::Float, Device::Cpu));
            let posterior = (start != AisStart::Prior).then(|| model.encode(&x));
            let base = posterior.as_ref().map(|p| model.base(p));
            let target = Target {
                model: &model,
                x: &x,
                start,
                posterior: posterior.as_ref(),
                base: base.as_ref(),
                shape: [2, 5, 3],
            };
            for beta in [0.0, 0.37, 1.0] {
                let full = target.eval(&z).unwrap().grad(beta);
                let alone = target.grad(&z, beta).unwrap();
                assert!(alone.equal(&full), "{start:?} at β = {beta}");
            }
        }
    }

    #[test]
    fn step_size_rule_matches_the_original() {
        let hmc = HmcConfig::default();
        let mut c = StepSizeController::new(&hmc, [2, 1], Device::Cpu);
        // a = target at the start, so the first update multiplies by dec (ORIGINAL §5.2).
        update(&mut c, &Tensor::from_slice(&[1.0f64, 1.0]).view([2, 1]));
        for v in values(&c.step_size) {
            assert!((v - 0.01 * 0.98).abs() < 1e-15);
        }
        // a_new = 0.9 · 0.65 + 0.1 · 1.
        for v in values(&c.avg_acceptance) {
            assert!((v - (0.9 * 0.65 + 0.1)).abs() < 1e-15);
        }
        // Now a > target: the next factor is inc, whatever this move's acceptance.
        update(&mut c, &Tensor::from_slice(&[0.0f64, 0.0]).view([2, 1]));
        for v in values(&c.step_size) {
            assert!((v - 0.01 * 0.98 * 1.02).abs() < 1e-15);
        }
    }

    #[test]
    fn step_size_modes_share_over_the_right_rows() {
        let acc = Tensor::from_slice(&[1.0f64, 0.0, 1.0, 0.0]).view([2, 2]); // [K=2, G=2]
        let run = |mode| {
            let hmc = HmcConfig {
                adaptation: mode,
                acceptance_slowness: 0.0,
                ..HmcConfig::default()
            };
            let mut c = StepSizeController::new(&hmc, [2, 2], Device::Cpu);
            update(&mut c, &acc);
            values(&c.avg_acceptance)
        };
        assert_eq!(run(StepSizeAdaptation::Global), vec![0.5; 4]);
        // Example 0 accepted in both chains, example 1 in neither.
        assert_eq!(
            run(StepSizeAdaptation::PerExample),
            vec![1.0, 0.0, 1.0, 0.0]
        );
        assert_eq!(run(StepSizeAdaptation::PerChain), vec![1.0, 0.0, 1.0, 0.0]);
        assert_eq!(run(StepSizeAdaptation::Fixed), vec![0.65; 4]);
    }

    #[test]
    fn step_size_is_clipped_to_min_and_max() {
        let hmc = HmcConfig {
            step_size: 0.4,
            step_size_inc: 3.0,
            step_size_dec: 0.1,
            ..HmcConfig::default()
        };
        let mut c = StepSizeController::new(&hmc, [1, 1], Device::Cpu);
        let all = Tensor::from_slice(&[1.0f64]).view([1, 1]);
        let none = Tensor::from_slice(&[0.0f64]).view([1, 1]);
        for _ in 0..10 {
            update(&mut c, &all);
            let s = values(&c.step_size)[0];
            assert!((hmc.step_size_min..=hmc.step_size_max).contains(&s));
        }
        assert_eq!(values(&c.step_size)[0], hmc.step_size_max);
        for _ in 0..20 {
            update(&mut c, &none);
        }
        assert_eq!(values(&c.step_size)[0], hmc.step_size_min);
    }

    #[test]
    fn config_validation_names_the_field() {
        let check = |cfg: AisConfig, field: &str| match cfg.validate() {
            Err(Error::BadConfig { field: f, .. }) => assert_eq!(f, field),
            other => panic!("expected a BadConfig for {field}, got {other:?}"),
        };
        assert!(AisConfig::default().validate().is_ok());
        check(
            AisConfig {
                num_chains: 0,
                ..Default::default()
            },
            "num_chains",
        );
        check(
            AisConfig {
                max_rows: 8,
                ..Default::default()
            },
            "max_rows",
        );
        let hmc = |h: HmcConfig| AisConfig {
            hmc: h,
            ..Default::default()
        };
        check(
            hmc(HmcConfig {
                leapfrog_steps: 0,
                ..Default::default()
            }),
            "hmc.leapfrog_steps",
        );
        check(
            hmc(HmcConfig {
                step_size: 0.6,
                ..Default::default()
            }),
            "hmc.step_size",
        );
        check(
            hmc(HmcConfig {
                momentum_refresh: 1.0,
                ..Default::default()
            }),
            "hmc.momentum_refresh",
        );
        check(
            hmc(HmcConfig {
                target_acceptance: 1.0,
                ..Default::default()
            }),
            "hmc.target_acceptance",
        );
        check(
            AisConfig {
                schedule: Schedule::Sigmoid { radius: -1.0 },
                ..Default::default()
            },
            "schedule.radius",
        );
    }

    #[test]
    fn config_serde_defaults_and_unknown_fields() {
        let cfg: AisConfig =
            serde_json::from_str(r#"{"num_chains": 8, "hmc": {"adaptation": "per_chain"}}"#)
                .unwrap();
        assert_eq!(cfg.num_chains, 8);
        assert_eq!(cfg.hmc.adaptation, StepSizeAdaptation::PerChain);
        assert_eq!(cfg.hmc.leapfrog_steps, 10);
        let json = serde_json::to_string(&cfg).unwrap();
        assert_eq!(serde_json::from_str::<AisConfig>(&json).unwrap(), cfg);
        assert!(serde_json::from_str::<AisConfig>(r#"{"chains": 8}"#).is_err());
        assert!(serde_json::from_str::<AisConfig>(r#"{"hmc": {"stepsize": 0.1}}"#).is_err());
        // An unsplit run's settings are written as before the slice offset existed; a slice's
        // offset is written and read back.
        assert!(!json.contains("first_example"), "{json}");
        let slice = AisConfig {
            first_example: 9,
            ..cfg
        };
        let json = serde_json::to_string(&slice).unwrap();
        assert!(json.contains(r#""first_example":9"#), "{json}");
        assert_eq!(serde_json::from_str::<AisConfig>(&json).unwrap(), slice);
    }
}
