//! Importance sampling with the model's proposal: `log p(x) ≈ log (1/k) Σ_j p(x, z_j) / q(z_j | x)`.
//!
//! This is the original's reported estimator (ORIGINAL §5.1), with its defects fixed: the encoder
//! runs once per chunk of examples and the `k` samples are drawn in chunks vectorised over samples
//! and examples (D6); log-weights are averaged with a max-shifted log-sum-exp in f64 (D17); the
//! seed makes the draw reproducible (D2).
//!
//! # Random stream and chunking
//!
//! The proposal noise of example `b` of the `x` passed in is one `[k, D]` standard normal draw
//! from tch's generator seeded with a hash of `(seed, first_example + b)`, where
//! [`IsConfig::first_example`] is the index of `x`'s first example in the whole evaluation (0
//! unless the evaluation is split). The draws therefore do not depend on [`IsConfig::max_rows`],
//! on the other examples, or on how the evaluation is split into slices, and neither does the
//! result, up to how the model's floating-point reductions depend on batch shape. (Streams are
//! per device kind: the same seed gives different draws on CPU and CUDA.)
//!
//! # Sharding
//!
//! An evaluation of `B` examples may be split into contiguous slices `x[first..first + len]`
//! run separately (in other processes, on other machines), each with `first_example = first`:
//! every example then gets the noise, and so the estimates, it gets in the unsplit run, and the
//! per-example results of the slices, concatenated, are the whole run's. (The aggregates —
//! `nll`, the IWAE curve, the standard errors over examples — are the slice's own; recompute
//! them from the concatenated per-example values.)
//!
//! To the bit when every slice starts at a multiple of the examples per model call,
//! [`chunk_shape`](IsConfig::chunk_shape)`().0` of the [resolved](IsConfig::resolved) config
//! (the same `max_rows` in every slice): each call then holds the examples of one call of the
//! whole run. Other splits put other numbers of examples in a call, and a model whose f32
//! arithmetic depends on that (libtorch computes a one-row product with a matrix-vector kernel,
//! for one) moves the estimates by its rounding: on the Bernoulli model of `tests/shards.rs`,
//! up to 6e-9 relative in `log p̂(x)` and 2e-5 in k-hat.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::checks::{check_finite, check_shape, num_examples, to_vec_f64};
use crate::error::{bad, Error, Result};
use crate::model::{AmortizedProposal, JointDensity};
use crate::psis::pareto_khat;
use crate::rng::{rng_guard, stream_seed, TAG_IS};
use crate::stats::{
    combined_stderr, effective_sample_size, log_mean_exp, log_mean_exp_stderr, mean_and_stderr,
    tail_scaled_replicate_stderr,
};

/// Settings of [`importance_sampling`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IsConfig {
    /// `k`, proposal samples per example. The original uses 1000 (ORIGINAL §5.1,
    /// `num_is_samples_nll`).
    pub num_samples: usize,
    /// Memory budget: the most rows (samples × examples) in one call of the model's
    /// `sample_posterior` and `log_joint`. Examples are grouped `⌊max_rows / k⌋` at a time with all
    /// their `k` samples; if one example's `k` samples exceed the budget, they are drawn in chunks
    /// of `max_rows`. The original used 200 rows (one sample for each of 200 images).
    /// `None` (the default): as many rows as keep one call's activations within
    /// [`IS_ACTIVATION_BUDGET`] by the model's own estimate
    /// ([`JointDensity::activation_bytes_per_row`]), at most [`IS_MAX_ROWS_CAP`], or
    /// [`IS_ROWS_UNKNOWN_MODEL`] for a model without an estimate ([`IsConfig::rows_for`]). The
    /// result's config holds the number used.
    pub max_rows: Option<usize>,
    /// Seed of the proposal noise (see the [module documentation](self)).
    pub seed: u64,
    /// How samples are laid out in model calls. [`IsPasses::Batched`] unless you are measuring
    /// what batching buys.
    pub passes: IsPasses,
    /// `R`, the groups of consecutive samples whose spread gives the replicate-based Monte Carlo
    /// error [`IsResult::log_px_mc_se`] (each group holds `⌊k/R⌋` samples). `None` (the
    /// default): `min(10, ⌊k/100⌋)`, so each group keeps at least 100 samples, and no replicate
    /// error when that is below 2 (`k < 200`); see [`replicate_groups`](Self::replicate_groups).
    /// Set, it must be between 2 and `k`. Left out of the JSON when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicates: Option<usize>,
    /// The index, in the whole evaluation, of `x`'s first example: the noise of `x`'s example
    /// `b` is seeded by `(seed, first_example + b)`, so a slice evaluated with its offset gets
    /// exactly the estimates of the whole — to the bit when the slice starts at a multiple of
    /// the examples per model call, else up to the model's f32 rounding (see
    /// [Sharding](self#sharding)). 0 (the default) for an evaluation that is not split;
    /// `first_example + B` must fit in a `usize`. Left out of the JSON when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub first_example: usize,
}

/// Whether a count is 0 (serde: leave [`IsConfig::first_example`] out of the JSON, so that the
/// settings of an unsplit run read as before the field existed).
fn is_zero(v: &usize) -> bool {
    *v == 0
}

/// Checks that the evaluation indices `first_example .. first_example + b` of `b` examples fit
/// in a `usize` ([`IsConfig::first_example`], [`crate::AisConfig::first_example`]).
pub(crate) fn check_first_example(first_example: usize, b: usize) -> Result<()> {
    match first_example.checked_add(b) {
        Some(_) => Ok(()),
        None => Err(bad(
            "first_example",
            first_example,
            "small enough that first_example + the number of examples fits in a usize",
        )),
    }
}

/// The layout of the `k × B` proposal samples in model calls.
///
/// Both layouts draw the same noise (see the [module documentation](self)) and give the same
/// estimates up to floating-point reduction order; they differ only in cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IsPasses {
    /// Encode each chunk of examples once, then draw their samples vectorised over samples and
    /// examples, up to [`IsConfig::max_rows`] rows per call (the fix of ORIGINAL D6).
    #[default]
    Batched,
    /// The original's structure (ORIGINAL §5.1): each pass takes up to
    /// [`IsConfig::max_rows`] examples (the original: 200), re-runs the encoder on them and draws
    /// one sample for each; `k` passes per chunk of examples. For measuring the speed-up of
    /// [`IsPasses::Batched`]; it holds the chunk's `k × max_rows × D` noise in memory.
    OneSamplePerPass,
}

/// Activation memory, in bytes, that one IS model call may use when the rows per call are left
/// to the model (2 GiB).
pub const IS_ACTIVATION_BUDGET: u64 = 1 << 31;
/// The most rows per IS model call whatever the budget allows.
pub const IS_MAX_ROWS_CAP: usize = 20_000;
/// Rows per IS model call for a model that does not estimate its activation memory.
pub const IS_ROWS_UNKNOWN_MODEL: usize = 1000;

/// The rows per IS model call that keep its activations within [`IS_ACTIVATION_BUDGET`] when
/// each row holds `bytes_per_row` bytes, between 1 and [`IS_MAX_ROWS_CAP`].
pub fn rows_within_budget(bytes_per_row: u64) -> usize {
    ((IS_ACTIVATION_BUDGET / bytes_per_row.max(1)) as usize).clamp(1, IS_MAX_ROWS_CAP)
}

impl Default for IsConfig {
    fn default() -> Self {
        IsConfig {
            num_samples: 1000,
            max_rows: None,
            seed: 0,
            passes: IsPasses::Batched,
            replicates: None,
            first_example: 0,
        }
    }
}

impl IsConfig {
    /// `(examples, samples)` per model call: with [`IsPasses::Batched`] whole examples per
    /// chunk when their `k` samples fit in `max_rows`, else one example in sample chunks of
    /// `max_rows`; with [`IsPasses::OneSamplePerPass`] `max_rows` examples, one sample of each.
    /// The last chunk of a run may hold fewer. Assumes a [validated](Self::validate) config.
    /// A config whose `max_rows` is `None` is taken as [`IS_ROWS_UNKNOWN_MODEL`]; pass it
    /// through [`resolved`](Self::resolved) first to get the model's figure.
    pub fn chunk_shape(&self) -> (usize, usize) {
        let k = self.num_samples;
        let rows = self.max_rows.unwrap_or(IS_ROWS_UNKNOWN_MODEL);
        match self.passes {
            IsPasses::Batched if k <= rows => (rows / k, k),
            IsPasses::Batched => (1, rows),
            IsPasses::OneSamplePerPass => (rows, 1),
        }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        if self.num_samples == 0 {
            return Err(bad("num_samples", self.num_samples, "at least 1"));
        }
        if self.max_rows == Some(0) {
            return Err(bad(
                "max_rows",
                0,
                "at least 1, or None for the model's own figure",
            ));
        }
        if let Some(r) = self.replicates {
            if r < 2 || r > self.num_samples {
                return Err(bad(
                    "replicates",
                    r,
                    "between 2 and num_samples, or None for min(10, num_samples / 100)",
                ));
            }
        }
        Ok(())
    }

    /// The replicate groups `R` of [`IsResult::log_px_mc_se`]: `replicates` when set, else
    /// `min(10, ⌊k/100⌋)`. Below 2 (`k < 200` by default) there is no replicate error.
    pub fn replicate_groups(&self) -> usize {
        self.replicates
            .unwrap_or_else(|| (self.num_samples / 100).min(10))
    }

    /// The rows per model call for `model`: `max_rows` when set, else the most that keep one
    /// call's activations within [`IS_ACTIVATION_BUDGET`] by
    /// [`JointDensity::activation_bytes_per_row`], between 1 and [`IS_MAX_ROWS_CAP`], else
    /// [`IS_ROWS_UNKNOWN_MODEL`].
    pub fn rows_for<M: JointDensity + ?Sized>(&self, model: &M) -> usize {
        self.max_rows.unwrap_or_else(|| {
            model
                .activation_bytes_per_row()
                .map_or(IS_ROWS_UNKNOWN_MODEL, rows_within_budget)
        })
    }

    /// This config with `max_rows` set to [`rows_for`](Self::rows_for) `model`.
    pub fn resolved<M: JointDensity + ?Sized>(&self, model: &M) -> IsConfig {
        IsConfig {
            max_rows: Some(self.rows_for(model)),
            ..self.clone()
        }
    }
}

/// One point of the IWAE-bound curve: the estimate from the first `k` of the `k_max` samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IwaePoint {
    /// Number of samples used.
    pub k: usize,
    /// `−mean_x log (1/k) Σ_{j<k} w_j(x)`, nats per example. Its expectation is the negative
    /// IWAE-`k` bound, which never increases with `k`; `k = 1` is the negative ELBO.
    pub nll: f64,
    /// Standard error of `nll` over examples, nats; `None` for one example.
    pub nll_stderr: Option<f64>,
}

/// What [`importance_sampling`] found: the aggregate estimates, the IWAE curve and per-example
/// values. All log-likelihoods are in nats per example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IsResult {
    /// The settings used.
    pub config: IsConfig,
    /// Number of examples evaluated.
    pub num_examples: usize,
    /// The IS estimate of the negative log-likelihood: `−mean_x log p̂(x)`. A stochastic upper
    /// bound on the true NLL (Jensen), tight as `k` grows.
    pub nll: f64,
    /// Standard error of `nll` over examples (spread of `log p̂(x)` across the data set divided by
    /// √B): the error bar for the data set's expected NLL. `None` for one example.
    pub nll_stderr: Option<f64>,
    /// Monte Carlo standard error of `nll` for these examples, `√(Σ_x se_x²) / B` from the
    /// per-example delta-method [`log_px_stderr`](Self::log_px_stderr): the error bar of the
    /// estimator alone. `None` for `k = 1`. Compare
    /// [`nll_mc_stderr_replicates`](Self::nll_mc_stderr_replicates).
    pub nll_mc_stderr: Option<f64>,
    /// The same Monte Carlo standard error of `nll` from the replicate-based per-example errors
    /// [`log_px_mc_se`](Self::log_px_mc_se): `√(Σ_x se_x²) / B`. `None` when any of them is
    /// (`k < 200` with the default replicates). Much larger than
    /// [`nll_mc_stderr`](Self::nll_mc_stderr) means the delta method is fooled by heavy tails.
    #[serde(default)]
    pub nll_mc_stderr_replicates: Option<f64>,
    /// `−mean_x mean_j log w_j(x)`: the mean of the log-weights, an unbiased estimate of the
    /// negative ELBO, and always `≥ nll` (ORIGINAL §10.4).
    pub neg_elbo: f64,
    /// Standard error of `neg_elbo` over examples; `None` for one example.
    pub neg_elbo_stderr: Option<f64>,
    /// The IWAE-bound curve for `k' = 1, 10, 100, …` below `k`, and `k` itself, all from the
    /// first `k'` samples of the same draw.
    pub iwae: Vec<IwaePoint>,
    /// Each example's `log p̂_k'(x)` behind each point of [`iwae`](Self::iwae) (outer: the
    /// points, inner: the examples in the order of `x`), nats: what a merge of shards needs to
    /// recompute the curve's means and standard errors.
    #[serde(default)]
    pub iwae_log_px: Vec<Vec<f64>>,
    /// `log p̂(x) = log (1/k) Σ_j w_j(x)` per example, in the order of `x`.
    pub log_px: Vec<f64>,
    /// Delta-method Monte Carlo standard error of each `log p̂(x)`, `√((k/ESS − 1)/(k − 1))`
    /// ([`crate::stats::log_mean_exp_stderr`]); `None` for `k = 1`. Too small when the weights are
    /// heavy-tailed: check [`ess`](Self::ess), [`khat`](Self::khat) and
    /// [`log_px_mc_se`](Self::log_px_mc_se).
    pub log_px_stderr: Vec<Option<f64>>,
    /// Replicate-based Monte Carlo standard error of each `log p̂(x)`: the `k` samples split into
    /// `R` consecutive groups ([`IsConfig::replicate_groups`]; the last `k mod R` samples left
    /// out of this error only), the standard deviation of the groups' estimates carried to all
    /// `k` samples at the rate the weights' tail allows: divided by `√R` where
    /// [`khat`](Self::khat) is at most 0.5, by `R^{1−k̂}` above
    /// ([`crate::stats::tail_scaled_replicate_stderr`]). No weight variance is estimated, so
    /// heavy tails fool it far less than the delta method; `None` when `R < 2`.
    #[serde(default)]
    pub log_px_mc_se: Vec<Option<f64>>,
    /// Per-example ELBO estimate `mean_j log w_j(x)`.
    pub elbo: Vec<f64>,
    /// Per-example effective sample size `(Σ w)² / Σ w²`, in `[1, k]`.
    pub ess: Vec<f64>,
    /// The smallest of [`ess`](Self::ess). When it is a small fraction of `k` (say below 100 or
    /// `k / 100`), a few weights dominate: the standard errors above are then unreliable (they
    /// are too small), and the estimate is likely far above the true NLL. Look at the IWAE curve.
    pub ess_min: f64,
    /// Per-example PSIS k-hat of the `k` weights ([`crate::psis::pareto_khat`], as arviz's
    /// `psislw` computes it): the generalized-Pareto shape of their upper tail. Below 0.5 the
    /// weights have finite variance and both standard errors can be trusted; between 0.5 and
    /// 0.7 the estimate converges slowly; above 0.7 it is unreliable (Vehtari et al., "Pareto
    /// smoothed importance sampling"). `None` for `k ≤ 20` or a degenerate tail (equal weights).
    #[serde(default)]
    pub khat: Vec<Option<f64>>,
    /// Examples whose [`khat`](Self::khat) is above 0.5 (`None` counts in neither).
    #[serde(default)]
    pub khat_above_0_5: usize,
    /// Examples whose [`khat`](Self::khat) is above 0.7.
    #[serde(default)]
    pub khat_above_0_7: usize,
}

/// k-hat above which an example's IS estimate is flagged: Vehtari et al. find importance
/// sampling unreliable beyond 0.7, whatever the number of samples.
pub const KHAT_FLAG: f64 = 0.7;

/// Why an example's IS estimate should not be trusted ([`IsResult::flags`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsFlag {
    /// Its PSIS k-hat is above [`KHAT_FLAG`]: the weights' tail is too heavy.
    Khat,
    /// Its effective sample size is below [`IsResult::ess_flag_threshold`].
    Ess,
}

impl IsFlag {
    /// The flag's name in reports: `khat` or `ess`.
    pub fn name(self) -> &'static str {
        match self {
            IsFlag::Khat => "khat",
            IsFlag::Ess => "ess",
        }
    }
}

impl IsResult {
    /// The ESS under which an example is flagged: a tenth of `k`, at most 100 (PSIS's rule of
    /// thumb for a usable Monte Carlo error is an ESS above 100).
    pub fn ess_flag_threshold(&self) -> f64 {
        (self.config.num_samples as f64 / 10.0).min(100.0)
    }

    /// The reasons to distrust example `i`'s estimate; empty when there are none. IS cannot see
    /// a posterior region its proposal never visits, so an unflagged example can still be off:
    /// AIS from the prior is the independent check.
    pub fn flags(&self, i: usize) -> Vec<IsFlag> {
        let mut out = Vec::new();
        if self
            .khat
            .get(i)
            .copied()
            .flatten()
            .is_some_and(|k| k > KHAT_FLAG)
        {
            out.push(IsFlag::Khat);
        }
        if self
            .ess
            .get(i)
            .is_some_and(|&e| e < self.ess_flag_threshold())
        {
            out.push(IsFlag::Ess);
        }
        out
    }

    /// The examples whose IS estimate lies below an independent forward AIS estimate on the
    /// same examples (`ais`, e.g. a short run from the prior) by more than twice their combined
    /// standard error. Both are stochastic lower bounds of `log p(x)`, so IS far below AIS means
    /// the proposal missed posterior mass that the weights alone cannot reveal. An example
    /// without a standard error on either side is compared with a margin of 0.
    ///
    /// Errors: `ais` covers another number of examples, or is a reverse run.
    pub fn below_ais(&self, ais: &crate::AisResult) -> Result<Vec<usize>> {
        if ais.num_examples != self.num_examples || ais.direction != crate::Direction::Forward {
            return Err(Error::Unsupported(format!(
                "the AIS check needs a forward AIS run on the same {} examples, got a {:?} run \
                 on {}",
                self.num_examples, ais.direction, ais.num_examples
            )));
        }
        Ok((0..self.num_examples)
            .filter(|&i| {
                let se2 = self.log_px_mc_se[i]
                    .or(self.log_px_stderr[i])
                    .unwrap_or(0.0)
                    .powi(2)
                    + ais.log_px_stderr[i].unwrap_or(0.0).powi(2);
                ais.log_px[i] - self.log_px[i] > 2.0 * se2.sqrt()
            })
            .collect())
    }

    /// How many examples have at least one [flag](Self::flags).
    pub fn flagged(&self) -> usize {
        (0..self.num_examples)
            .filter(|&i| !self.flags(i).is_empty())
            .count()
    }
}

/// The sample counts of the IWAE curve: powers of ten below `k`, then `k`.
pub fn iwae_sample_counts(k: usize) -> Vec<usize> {
    let mut ks = Vec::new();
    let mut p = 1usize;
    while p < k {
        ks.push(p);
        p = p.saturating_mul(10);
    }
    ks.push(k);
    ks
}

/// Estimates `log p(x)` for each example of `x` by importance sampling with the model's proposal.
///
/// - `x`: `[B, ...]`, on the model's device; `B ≥ 1`.
/// - `progress(done, total)` is called after every chunk, counting samples × examples drawn
///   (`total = k · B`), so that a caller can draw a progress bar with an ETA.
///
/// Runs under [`tch::no_grad`] and seeds tch's global generator, holding [`crate::rng_guard`]
/// (see the [module documentation](self)); the model must be in inference mode.
///
/// Errors: a bad config (including a [`first_example`](IsConfig::first_example) so large that
/// `first_example + B` overflows), an empty `x`, a model returning the wrong shapes
/// ([`Error::Shape`]), or a NaN / `+inf` log-weight or an example whose weights are all zero
/// ([`Error::NonFinite`], whose index counts from `x`'s first example, not from
/// `first_example`).
pub fn importance_sampling<M: AmortizedProposal + ?Sized>(
    model: &M,
    x: &Tensor,
    config: &IsConfig,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<IsResult> {
    config.validate()?;
    let config = config.resolved(model);
    tch::no_grad(|| run(model, x, &config, progress, Pending::MAX_VALUES))
}

/// [`importance_sampling`] reading the log-weights back once `read_back_values` are held.
/// Holds [`crate::rng_guard`] from its first seed to its last draw.
fn run<M: AmortizedProposal + ?Sized>(
    model: &M,
    x: &Tensor,
    config: &IsConfig,
    progress: &mut dyn FnMut(u64, u64),
    read_back_values: usize,
) -> Result<IsResult> {
    let _rng = rng_guard();
    let b_total = num_examples(x)?;
    check_first_example(config.first_example, b_total)?;
    let k = config.num_samples;
    let d = model.latent_dim();
    let (kind, device) = (model.kind(), model.device());
    let (ex_chunk, s_chunk) = config.chunk_shape();
    let reencode = config.passes == IsPasses::OneSamplePerPass;
    let counts = iwae_sample_counts(k);
    let mut iwae_log_px: Vec<Vec<f64>> = vec![Vec::with_capacity(b_total); counts.len()];
    let mut log_px = Vec::with_capacity(b_total);
    let mut log_px_stderr = Vec::with_capacity(b_total);
    let mut elbo = Vec::with_capacity(b_total);
    let mut ess = Vec::with_capacity(b_total);
    let mut log_px_mc_se = Vec::with_capacity(b_total);
    let mut khat = Vec::with_capacity(b_total);
    let replicates = config.replicate_groups();
    let total = (k as u64) * (b_total as u64);
    let mut done = 0u64;

    // The log-weights stay on the model's device until a batch of chunks is read back in one
    // transfer: on a GPU each read waits for the queue to drain, and reading every chunk left
    // the GPU idle while the host queued the next one (a fifth of IS time on the ResNet config,
    // cargo xtask bench on an H100). On a CPU nothing waits, and the estimates are the same.
    let mut pending = Pending {
        max_values: read_back_values,
        ..Pending::default()
    };
    for b0 in (0..b_total).step_by(ex_chunk) {
        let bc = ex_chunk.min(b_total - b0);
        let xs = x.f_narrow(0, b0 as i64, bc as i64)?;
        let once = (!reencode).then(|| model.encode(&xs));
        let noise: Vec<Tensor> = (b0..b0 + bc)
            .map(|b| {
                let example = (config.first_example + b) as u64;
                tch::manual_seed(stream_seed(&[TAG_IS, config.seed, example]));
                Tensor::randn([k as i64, d], (kind, device))
            })
            .collect();
        let noise = Tensor::f_stack(&noise, 1)?; // [k, bc, D]
        let mut chunks = Vec::with_capacity(k.div_ceil(s_chunk));
        for s0 in (0..k).step_by(s_chunk) {
            let sc = s_chunk.min(k - s0);
            let eps = noise.f_narrow(0, s0 as i64, sc as i64)?;
            let fresh;
            let posterior = match &once {
                Some(p) => p,
                None => {
                    fresh = model.encode(&xs);
                    &fresh
                }
            };
            let (z, log_q) = model.sample_posterior(posterior, &eps);
            let rows = [sc as i64, bc as i64];
            check_shape("z from sample_posterior", &z, &[rows[0], rows[1], d])?;
            check_shape("log_q from sample_posterior", &log_q, &rows)?;
            let log_joint = model.log_joint(&xs, &z);
            check_shape("log_joint", &log_joint, &rows)?;
            chunks.push(log_joint.f_to_kind(Kind::Double)? - log_q.f_to_kind(Kind::Double)?);
        }
        // Sample-major: sample s of example j at s * bc + j.
        pending.push(b0, bc, Tensor::f_cat(&chunks, 0)?.f_reshape([-1])?);
        if pending.due() || b0 + bc == b_total {
            for (b0, bc, log_w) in pending.read_back()? {
                check_finite("importance log-weight", &log_w, bc, b0)?;
                let mut column = vec![0f64; k];
                for j in 0..bc {
                    for (s, c) in column.iter_mut().enumerate() {
                        *c = log_w[s * bc + j];
                    }
                    let lp = log_mean_exp(&column);
                    if lp == f64::NEG_INFINITY {
                        return Err(Error::NonFinite {
                            what: "importance estimate log p(x) (every weight is zero)",
                            count: 1,
                            example: b0 + j,
                        });
                    }
                    log_px.push(lp);
                    log_px_stderr.push(log_mean_exp_stderr(&column));
                    elbo.push(column.iter().sum::<f64>() / k as f64);
                    ess.push(effective_sample_size(&column));
                    let k_hat = pareto_khat(&column);
                    log_px_mc_se.push(tail_scaled_replicate_stderr(&column, replicates, k_hat));
                    khat.push(k_hat);
                    for (i, &kk) in counts.iter().enumerate() {
                        iwae_log_px[i].push(log_mean_exp(&column[..kk]));
                    }
                }
                done += (k * bc) as u64;
            }
            progress(done, total);
        }
    }

    let neg = |v: &[f64]| v.iter().map(|x| -x).collect::<Vec<_>>();
    let (nll, nll_stderr) = mean_and_stderr(&neg(&log_px));
    let (neg_elbo, neg_elbo_stderr) = mean_and_stderr(&neg(&elbo));
    let iwae = counts
        .iter()
        .zip(&iwae_log_px)
        .map(|(&k, lp)| {
            let (nll, nll_stderr) = mean_and_stderr(&neg(lp));
            IwaePoint { k, nll, nll_stderr }
        })
        .collect();
    Ok(IsResult {
        config: config.clone(),
        num_examples: b_total,
        nll,
        nll_stderr,
        nll_mc_stderr: combined_stderr(&log_px_stderr),
        neg_elbo,
        neg_elbo_stderr,
        iwae,
        iwae_log_px,
        log_px,
        log_px_stderr,
        elbo,
        ess_min: ess.iter().copied().fold(f64::INFINITY, f64::min),
        ess,
        nll_mc_stderr_replicates: combined_stderr(&log_px_mc_se),
        log_px_mc_se,
        khat_above_0_5: count_above(&khat, 0.5),
        khat_above_0_7: count_above(&khat, 0.7),
        khat,
    })
}

/// How many of `khat` are known and above `threshold`.
fn count_above(khat: &[Option<f64>], threshold: f64) -> usize {
    khat.iter()
        .filter(|k| k.is_some_and(|k| k > threshold))
        .count()
}

/// Log-weights computed but not yet read back from the device, per chunk of examples.
#[derive(Default)]
struct Pending {
    /// `(first example, examples, [k * examples] log-weights)` per chunk.
    chunks: Vec<(usize, usize, Tensor)>,
    /// Values held.
    values: usize,
    /// When the first chunk now held was pushed (read back within MAX_WAIT of it).
    since: Option<std::time::Instant>,
    /// Read back once this many values are held.
    max_values: usize,
}

impl Pending {
    /// At most this many values (8 MiB of f64) wait on the device by default.
    const MAX_VALUES: usize = 1 << 20;
    /// Read back at least this often, so that progress stays live.
    const MAX_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

    fn push(&mut self, b0: usize, bc: usize, log_w: Tensor) {
        self.since.get_or_insert_with(std::time::Instant::now);
        self.values += log_w.numel();
        self.chunks.push((b0, bc, log_w));
    }

    fn due(&self) -> bool {
        self.values >= self.max_values || self.since.is_some_and(|t| t.elapsed() >= Self::MAX_WAIT)
    }

    /// Every held chunk's values, in one transfer.
    fn read_back(&mut self) -> Result<Vec<(usize, usize, Vec<f64>)>> {
        let chunks = std::mem::take(&mut self.chunks);
        self.values = 0;
        self.since = None;
        let all = to_vec_f64(&Tensor::f_cat(
            &chunks.iter().map(|(_, _, t)| t).collect::<Vec<_>>(),
            0,
        )?)?;
        let mut at = 0;
        Ok(chunks
            .into_iter()
            .map(|(b0, bc, t)| {
                let n = t.numel();
                at += n;
                (b0, bc, all[at - n..at].to_vec())
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytic::{LinearGaussian, Proposal};

    fn imperfect() -> LinearGaussian {
        let proposal = Proposal {
            mean_shift: 0.3,
            scale: 1.4,
            full_covariance: false,
        };
        LinearGaussian::random(6, 3, 1.0, 0.7, 7, proposal)
    }

    fn run(model: &LinearGaussian, x: &Tensor, config: &IsConfig) -> IsResult {
        importance_sampling(model, x, config, &mut |_, _| {}).unwrap()
    }

    /// Same seed, same samples: the chunking (examples per call, samples per call) must not
    /// change any number beyond f32 rounding, which depends on the batch shape where the BLAS
    /// picks its kernel by shape (MKL on AVX-512 machines: up to 7e-7 nats on these log-weights
    /// of −9 to −18; a sample drawn from another stream moves them by tenths). Budgets below
    /// cover one sample per call, partial sample chunks, several examples per call with all
    /// their samples, and everything in one call.
    #[test]
    fn chunking_gives_identical_results() {
        let model = imperfect();
        let (x, _) = crate::simulate(&model, 5, 3).unwrap();
        let base = IsConfig {
            num_samples: 50,
            max_rows: Some(250),
            seed: 11,
            ..Default::default()
        };
        let reference = run(&model, &x, &base);
        for max_rows in [1, 7, 49, 50, 101, 10_000] {
            let config = IsConfig {
                max_rows: Some(max_rows),
                ..base.clone()
            };
            let mut calls = Vec::new();
            let r =
                importance_sampling(&model, &x, &config, &mut |d, t| calls.push((d, t))).unwrap();
            // f32 rounding is ~1e-7 of each term; a relative 1e-5 leaves a margin of 10x over
            // the largest difference seen and is 1e-4 of a change of sample.
            let close = |a: &[f64], b: &[f64], what: &str| {
                assert_eq!(a.len(), b.len());
                for (u, v) in a.iter().zip(b) {
                    let tol = 1e-5 * u.abs().max(1.0);
                    assert!(
                        (u - v).abs() <= tol,
                        "max_rows = {max_rows}, {what}: {u} vs {v}"
                    );
                }
            };
            close(&r.log_px, &reference.log_px, "log p(x)");
            close(&r.elbo, &reference.elbo, "ELBO");
            close(&r.ess, &reference.ess, "ESS");
            let iwae = |r: &IsResult| r.iwae.iter().map(|p| p.nll).collect::<Vec<_>>();
            close(&iwae(&r), &iwae(&reference), "IWAE");
            assert_eq!(
                r.iwae.iter().map(|p| p.k).collect::<Vec<_>>(),
                reference.iwae.iter().map(|p| p.k).collect::<Vec<_>>()
            );
            // Progress is monotone and ends at k · B.
            assert!(calls.windows(2).all(|w| w[0].0 < w[1].0));
            assert_eq!(*calls.last().unwrap(), (250, 250));
        }
        // A different seed gives different samples.
        let other = run(&model, &x, &IsConfig { seed: 12, ..base });
        let moved = (other.log_px.iter().zip(&reference.log_px))
            .map(|(u, v)| (u - v).abs())
            .fold(0.0, f64::max);
        assert!(moved > 1e-2, "another seed moved log p(x) by {moved} only");
    }

    /// With the exact posterior (through the affine flow) every weight is `p(x)`: this checks
    /// the composition of base and flow and the sign of the log-determinant.
    #[test]
    fn exact_proposal_gives_exact_log_px() {
        let model = LinearGaussian::random(6, 3, 1.0, 0.7, 7, Proposal::EXACT);
        let (x, _) = crate::simulate(&model, 4, 3).unwrap();
        let r = run(
            &model,
            &x,
            &IsConfig {
                num_samples: 20,
                ..Default::default()
            },
        );
        let exact = model.log_px(&x);
        for (b, e) in exact.iter().enumerate() {
            // f32 arithmetic on values of size ~10: 1e-4 is a few hundred ulps.
            assert!((r.log_px[b] - e).abs() < 1e-4, "{} vs {e}", r.log_px[b]);
            assert!((r.elbo[b] - e).abs() < 1e-4);
            assert!((r.ess[b] - 20.0).abs() < 1e-2);
        }
        assert_eq!(
            r.ess_min,
            r.ess.iter().copied().fold(f64::INFINITY, f64::min)
        );
    }

    #[test]
    fn iwae_counts_and_bound_order() {
        assert_eq!(iwae_sample_counts(1), vec![1]);
        assert_eq!(iwae_sample_counts(10), vec![1, 10]);
        assert_eq!(iwae_sample_counts(1000), vec![1, 10, 100, 1000]);
        assert_eq!(iwae_sample_counts(250), vec![1, 10, 100, 250]);
        let model = imperfect();
        let (x, _) = crate::simulate(&model, 3, 3).unwrap();
        let r = run(
            &model,
            &x,
            &IsConfig {
                num_samples: 250,
                ..Default::default()
            },
        );
        assert_eq!(r.iwae.last().unwrap().nll, r.nll);
        // Jensen, deterministic per example: mean log w <= log mean w (ORIGINAL §10.4).
        for b in 0..3 {
            assert!(r.elbo[b] <= r.log_px[b]);
        }
        assert!(r.neg_elbo >= r.nll);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let model = imperfect();
        let empty = Tensor::zeros([0, 6], (Kind::Float, tch::Device::Cpu));
        let err = importance_sampling(&model, &empty, &IsConfig::default(), &mut |_, _| {});
        assert!(
            matches!(err, Err(Error::Shape { what: "x", .. })),
            "{err:?}"
        );
        let x = Tensor::zeros([2, 6], (Kind::Float, tch::Device::Cpu));
        let err = importance_sampling(
            &model,
            &x,
            &IsConfig {
                num_samples: 0,
                ..Default::default()
            },
            &mut |_, _| {},
        );
        assert!(
            matches!(
                err,
                Err(Error::BadConfig {
                    field: "num_samples",
                    ..
                })
            ),
            "{err:?}"
        );
        // A NaN in the data makes NaN log-weights: reported with the example, not averaged in.
        let x = Tensor::from_slice(&[0f32, 0., 0., 0., 0., 0., 0., 0., f32::NAN, 0., 0., 0.])
            .view([2, 6]);
        let err = importance_sampling(&model, &x, &IsConfig::default(), &mut |_, _| {});
        assert!(
            matches!(err, Err(Error::NonFinite { example: 1, .. })),
            "{err:?}"
        );
    }

    /// Delegates to a model and counts its encoder runs. IS needs no data simulation, so it
    /// implements only the density and the proposal.
    struct CountingEncodes<'a> {
        inner: &'a LinearGaussian,
        encodes: std::cell::Cell<usize>,
    }

    impl JointDensity for CountingEncodes<'_> {
        fn latent_dim(&self) -> i64 {
            self.inner.latent_dim()
        }

        fn device(&self) -> tch::Device {
            self.inner.device()
        }

        fn kind(&self) -> Kind {
            self.inner.kind()
        }

        fn log_joint(&self, x: &Tensor, z: &Tensor) -> Tensor {
            self.inner.log_joint(x, z)
        }
    }

    impl AmortizedProposal for CountingEncodes<'_> {
        type Posterior = <LinearGaussian as AmortizedProposal>::Posterior;

        fn encode(&self, x: &Tensor) -> Self::Posterior {
            self.encodes.set(self.encodes.get() + 1);
            self.inner.encode(x)
        }

        fn base(&self, posterior: &Self::Posterior) -> (Tensor, Tensor) {
            self.inner.base(posterior)
        }

        fn flow(&self, posterior: &Self::Posterior, z0: &Tensor) -> (Tensor, Tensor) {
            self.inner.flow(posterior, z0)
        }

        fn sample_posterior(&self, posterior: &Self::Posterior, eps: &Tensor) -> (Tensor, Tensor) {
            self.inner.sample_posterior(posterior, eps)
        }
    }

    /// The original's layout (one sample per pass, encoder re-run every pass) computes the
    /// same numbers as the batched one: same noise, same weights; only the cost differs.
    #[test]
    fn one_sample_per_pass_matches_batched() {
        let inner = imperfect();
        let (x, _) = crate::simulate(&inner, 7, 3).unwrap();
        let model = CountingEncodes {
            inner: &inner,
            encodes: Default::default(),
        };
        let batched = IsConfig {
            num_samples: 40,
            max_rows: Some(10_000),
            seed: 4,
            passes: IsPasses::Batched,
            replicates: None,
            first_example: 0,
        };
        let b = importance_sampling(&model, &x, &batched, &mut |_, _| {}).unwrap();
        assert_eq!(
            model.encodes.get(),
            1,
            "batched: one encoder run for 7 examples"
        );
        // Three examples per pass: chunks of 3, 3 and 1 examples, 40 passes each.
        let per_pass = IsConfig {
            max_rows: Some(3),
            passes: IsPasses::OneSamplePerPass,
            ..batched
        };
        model.encodes.set(0);
        let mut calls = Vec::new();
        let o = importance_sampling(&model, &x, &per_pass, &mut |d, t| calls.push((d, t))).unwrap();
        assert_eq!(model.encodes.get(), 3 * 40, "one encoder run per pass");
        assert_eq!(*calls.last().unwrap(), (280, 280));
        let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(a, b)| (a - b).abs() < 1e-5);
        assert!(
            close(&o.log_px, &b.log_px),
            "{:?} vs {:?}",
            o.log_px,
            b.log_px
        );
        assert!(close(&o.elbo, &b.elbo));
        assert!((o.nll - b.nll).abs() < 1e-5);
    }

    /// Reading the log-weights back after every chunk of examples (as on a slow device with a
    /// live progress bar) or all at once gives the same estimates, in the same order.
    #[test]
    fn read_back_batches_do_not_change_the_estimates() {
        let model = imperfect();
        let (x, _) = crate::simulate(&model, 7, 3).unwrap();
        let cfg = IsConfig {
            num_samples: 40,
            max_rows: Some(80), // two examples per chunk: chunks of 2, 2, 2, 1
            seed: 4,
            passes: IsPasses::Batched,
            replicates: None,
            first_example: 0,
        };
        let mut calls = Vec::new();
        let each = tch::no_grad(|| super::run(&model, &x, &cfg, &mut |d, t| calls.push((d, t)), 1));
        let each = each.unwrap();
        assert_eq!(calls, [(80, 280), (160, 280), (240, 280), (280, 280)]);
        let once = importance_sampling(&model, &x, &cfg, &mut |_, _| {}).unwrap();
        assert_eq!(each.log_px, once.log_px);
        assert_eq!(each.elbo, once.elbo);
        assert_eq!(each.ess, once.ess);
        assert_eq!(each.nll, once.nll);
    }

    /// The PSIS k-hat and the replicate errors per example, their summaries, and the number of
    /// replicate groups by default and when set.
    #[test]
    fn khat_and_replicate_errors() {
        let model = imperfect();
        let (x, _) = crate::simulate(&model, 4, 3).unwrap();
        let config = IsConfig {
            num_samples: 1000,
            seed: 2,
            ..Default::default()
        };
        assert_eq!(config.replicate_groups(), 10);
        let r = run(&model, &x, &config);
        assert_eq!(r.khat.len(), 4);
        assert_eq!(r.log_px_mc_se.len(), 4);
        assert!(
            r.khat.iter().all(|k| k.is_some_and(|k| k < 1.0)),
            "{:?}",
            r.khat
        );
        let count = |t: f64| r.khat.iter().filter(|k| k.unwrap() > t).count();
        assert_eq!(r.khat_above_0_5, count(0.5));
        assert_eq!(r.khat_above_0_7, count(0.7));
        let ses: Vec<f64> = r.log_px_mc_se.iter().map(|s| s.unwrap()).collect();
        let b = ses.len() as f64;
        let combined = ses.iter().map(|s| s * s).sum::<f64>().sqrt() / b;
        assert!((r.nll_mc_stderr_replicates.unwrap() - combined).abs() < 1e-15);
        // Both errors estimate the same thing; with 10 groups the replicate one is itself
        // uncertain by about 1/√(2·9) ≈ 24% per example, 12% over four.
        let ratio = r.nll_mc_stderr_replicates.unwrap() / r.nll_mc_stderr.unwrap();
        println!(
            "k-hat {:?}, replicate / delta-method error {ratio:.3}",
            r.khat
        );
        assert!((0.5..2.0).contains(&ratio), "replicate / delta = {ratio}");
        // The existing fields do not depend on the replicates.
        let two = run(
            &model,
            &x,
            &IsConfig {
                replicates: Some(2),
                ..config.clone()
            },
        );
        assert_eq!(two.log_px, r.log_px);
        assert_eq!(two.log_px_stderr, r.log_px_stderr);
        assert_eq!(two.khat, r.khat);
        assert_ne!(two.log_px_mc_se, r.log_px_mc_se);
        // k < 200: no replicate error by default; k ≤ 20: no k-hat.
        let small = IsConfig {
            num_samples: 150,
            ..config.clone()
        };
        assert_eq!(small.replicate_groups(), 1);
        let s = run(&model, &x, &small);
        assert_eq!(s.log_px_mc_se, vec![None; 4]);
        assert_eq!(s.nll_mc_stderr_replicates, None);
        assert!(s.khat.iter().all(Option::is_some));
        let tiny = run(
            &model,
            &x,
            &IsConfig {
                num_samples: 20,
                ..config.clone()
            },
        );
        assert_eq!(tiny.khat, vec![None; 4]);
        assert_eq!((tiny.khat_above_0_5, tiny.khat_above_0_7), (0, 0));
        for bad_r in [0, 1, 1001] {
            let err = IsConfig {
                replicates: Some(bad_r),
                ..config.clone()
            }
            .validate();
            assert!(
                matches!(
                    err,
                    Err(Error::BadConfig {
                        field: "replicates",
                        ..
                    })
                ),
                "{bad_r}: {err:?}"
            );
        }
    }

    /// A result written before the k-hat and replicate fields existed still reads, with them
    /// empty; a config without `replicates` is written as before.
    #[test]
    fn older_results_read_back() {
        let model = imperfect();
        let (x, _) = crate::simulate(&model, 2, 3).unwrap();
        let r = run(&model, &x, &IsConfig::default());
        let mut json = serde_json::to_value(&r).unwrap();
        let object = json.as_object_mut().unwrap();
        let config = object["config"].as_object().unwrap();
        assert!(!config.contains_key("replicates"));
        assert!(!config.contains_key("first_example"));
        for key in [
            "khat",
            "khat_above_0_5",
            "khat_above_0_7",
            "log_px_mc_se",
            "nll_mc_stderr_replicates",
        ] {
            assert!(object.remove(key).is_some(), "{key}");
        }
        let old: IsResult = serde_json::from_value(json).unwrap();
        assert_eq!(old.log_px, r.log_px);
        assert!(old.khat.is_empty() && old.log_px_mc_se.is_empty());
        assert_eq!(old.nll_mc_stderr_replicates, None);
        let c: IsConfig = serde_json::from_str(r#"{"replicates": 4}"#).unwrap();
        assert_eq!(c.replicates, Some(4));
    }

    #[test]
    fn config_serde() {
        let c: IsConfig = serde_json::from_str(r#"{"num_samples": 5000}"#).unwrap();
        assert_eq!(
            c,
            IsConfig {
                num_samples: 5000,
                ..Default::default()
            }
        );
        assert!(serde_json::from_str::<IsConfig>(r#"{"k": 5}"#).is_err());
        let c: IsConfig = serde_json::from_str(r#"{"passes": "one-sample-per-pass"}"#).unwrap();
        assert_eq!(c.passes, IsPasses::OneSamplePerPass);
        assert!(serde_json::from_str::<IsConfig>(r#"{"passes": "naive"}"#).is_err());
        // A slice's offset is written, and read back; 0 is left out.
        let slice = IsConfig {
            first_example: 12,
            ..Default::default()
        };
        let json = serde_json::to_string(&slice).unwrap();
        assert!(json.contains(r#""first_example":12"#), "{json}");
        assert_eq!(serde_json::from_str::<IsConfig>(&json).unwrap(), slice);
        let json = serde_json::to_string(&IsConfig::default()).unwrap();
        assert!(!json.contains("first_example"), "{json}");
    }

    /// `first_example + B` must fit in a usize.
    #[test]
    fn first_example_overflow_is_an_error() {
        let model = imperfect();
        let x = Tensor::zeros([2, 6], (Kind::Float, tch::Device::Cpu));
        let config = IsConfig {
            num_samples: 5,
            first_example: usize::MAX - 1,
            ..Default::default()
        };
        let err = importance_sampling(&model, &x, &config, &mut |_, _| {});
        assert!(
            matches!(
                err,
                Err(Error::BadConfig {
                    field: "first_example",
                    ..
                })
            ),
            "{err:?}"
        );
        let last = IsConfig {
            first_example: usize::MAX - 2,
            ..config
        };
        importance_sampling(&model, &x, &last, &mut |_, _| {}).unwrap();
    }
}
