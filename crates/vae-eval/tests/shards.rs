//! An evaluation split into contiguous slices ("shards"), each run with its
//! `first_example`, gives every example exactly the estimates of the unsplit run: importance
//! sampling for any split, forward AIS, reverse AIS and BDMC for splits at multiples of
//! `AisConfig::examples_per_group`. A slice starting mid-group still runs.
//!
//! The models are those of `linear_gaussian.rs` (`z ~ N(0, I_2)`, `x | z ~ N(W z + b, 0.8² I_6)`,
//! seed 1) and `bernoulli.rs` (16 Bernoulli pixels, `W` entries `N(0, 1.5²)`, seed 3), on 24
//! simulated examples.

use tch::Tensor;
use vae_eval::analytic::{BernoulliLogistic, LinearGaussian, Proposal};
use vae_eval::{
    ais, ais_from_prior, bdmc, bdmc_from_prior, importance_sampling, reverse_ais_from_prior,
    simulate, AisConfig, AisResult, AisStart, BdmcResult, Error, HmcConfig, IsConfig, IsResult,
};

/// Examples in the whole evaluation.
const B: usize = 24;

/// `q = N(m + 0.3, 1.3² Σ)` with the posterior's correlations, as in `linear_gaussian.rs`.
const SHIFTED: Proposal = Proposal {
    mean_shift: 0.3,
    scale: 1.3,
    full_covariance: true,
};

fn linear_gaussian() -> LinearGaussian {
    LinearGaussian::random(6, 2, 1.0, 0.8, 1, SHIFTED)
}

fn bernoulli() -> BernoulliLogistic {
    BernoulliLogistic::random(16, 2, 1.5, 0.75, 3)
}

/// The tensors here are tiny: one intra-op thread is fastest, and avoids OpenMP threads
/// spinning against each other when the machine is busy.
fn setup() {
    tch::set_num_threads(1);
}

fn no_progress() -> impl FnMut(u64, u64) {
    |_, _| {}
}

/// `(first, len)` of consecutive slices of the given sizes, which must cover the `B` examples.
fn slices(sizes: &[usize]) -> Vec<(usize, usize)> {
    assert_eq!(sizes.iter().sum::<usize>(), B);
    let mut first = 0;
    sizes
        .iter()
        .map(|&len| {
            first += len;
            (first - len, len)
        })
        .collect()
}

/// Rows `first..first + len` of `t`.
fn rows(t: &Tensor, first: usize, len: usize) -> Tensor {
    t.narrow(0, first as i64, len as i64)
}

/// `run(first, len)` on each slice of the given sizes, in order.
fn split_runs<R>(sizes: &[usize], mut run: impl FnMut(usize, usize) -> R) -> Vec<R> {
    slices(sizes)
        .into_iter()
        .map(|(first, len)| run(first, len))
        .collect()
}

/// The per-example values of one or more results, concatenated in example order: what must not
/// depend on the split.
#[derive(Debug, Default, PartialEq)]
struct PerExample {
    log_px: Vec<f64>,
    log_px_stderr: Vec<Option<f64>>,
    log_px_mc_se: Vec<Option<f64>>,
    ess: Vec<f64>,
    /// IS: `khat`; AIS: empty.
    khat: Vec<Option<f64>>,
    /// IS: the ELBO; AIS: the mean log-weight bound.
    mean_log_weight: Vec<f64>,
    /// AIS: every chain's log-weight; IS: empty.
    log_weights: Vec<Vec<f64>>,
}

impl PerExample {
    fn from_is<'a>(results: impl IntoIterator<Item = &'a IsResult>) -> Self {
        let mut out = PerExample::default();
        for r in results {
            out.log_px.extend(&r.log_px);
            out.log_px_stderr.extend(&r.log_px_stderr);
            out.log_px_mc_se.extend(&r.log_px_mc_se);
            out.ess.extend(&r.ess);
            out.khat.extend(&r.khat);
            out.mean_log_weight.extend(&r.elbo);
        }
        out
    }

    fn from_ais<'a>(results: impl IntoIterator<Item = &'a AisResult>) -> Self {
        let mut out = PerExample::default();
        for r in results {
            out.log_px.extend(&r.log_px);
            out.log_px_stderr.extend(&r.log_px_stderr);
            out.log_px_mc_se.extend(&r.log_px_mc_se);
            out.ess.extend(&r.ess);
            out.mean_log_weight.extend(&r.log_px_mean_log_weight);
            let w = r.log_weights.as_ref().expect("record_log_weights is set");
            out.log_weights.extend(w.iter().cloned());
        }
        out
    }
}

/// Importance sampling, slices that start at multiples of the examples per model call
/// (`IsConfig::chunk_shape`): every model call of a slice holds the examples of one call of the
/// whole run, with the same noise, so each example's `log p̂(x)`, both Monte Carlo errors, ELBO,
/// ESS and k-hat are the whole run's, to the bit.
#[test]
fn is_slices_match_the_whole_run() {
    setup();
    let lg = linear_gaussian();
    let bern = bernoulli();
    let (x_lg, _) = simulate(&lg, B, 5).unwrap();
    let (x_bern, _) = simulate(&bern, B, 6).unwrap();
    // k = 300: three replicate groups, so log_px_mc_se is set, and a k-hat (k > 20). 900 rows
    // make calls of three examples, 1200 of four.
    let splits: [(usize, [&[usize]; 2]); 2] = [
        (900, [&[6, 6, 6, 6], &[3, 9, 12]]),
        (1200, [&[4, 8, 12], &[12, 8, 4]]),
    ];
    for (max_rows, sizes_list) in splits {
        let config = |first_example| IsConfig {
            num_samples: 300,
            max_rows: Some(max_rows),
            seed: 17,
            first_example,
            ..IsConfig::default()
        };
        let per_call = config(0).chunk_shape().0;
        let run_lg = |first: usize, len: usize| {
            let x = rows(&x_lg, first, len);
            importance_sampling(&lg, &x, &config(first), &mut no_progress()).unwrap()
        };
        let run_bern = |first: usize, len: usize| {
            let x = rows(&x_bern, first, len);
            importance_sampling(&bern, &x, &config(first), &mut no_progress()).unwrap()
        };
        let whole_lg = PerExample::from_is([&run_lg(0, B)]);
        let whole_bern = PerExample::from_is([&run_bern(0, B)]);
        assert!(whole_lg.log_px_mc_se.iter().all(Option::is_some));
        assert!(whole_lg.khat.iter().all(Option::is_some));
        for sizes in sizes_list {
            assert!(slices(sizes).iter().all(|(first, _)| first % per_call == 0));
            let split = split_runs(sizes, run_lg);
            for (r, (first, len)) in split.iter().zip(slices(sizes)) {
                assert_eq!((r.num_examples, r.config.first_example), (len, first));
            }
            assert_eq!(
                PerExample::from_is(&split),
                whole_lg,
                "linear Gaussian, max_rows {max_rows}, slices {sizes:?}"
            );
            assert_eq!(
                PerExample::from_is(&split_runs(sizes, run_bern)),
                whole_bern,
                "Bernoulli, max_rows {max_rows}, slices {sizes:?}"
            );
        }
    }

    // The offset is what gives a slice the whole run's noise: without it, the slice x[6..12]
    // draws the noise of examples 0..6, and its estimates move.
    let config = IsConfig {
        num_samples: 300,
        seed: 17,
        ..IsConfig::default()
    };
    let whole = importance_sampling(&lg, &x_lg, &config, &mut no_progress()).unwrap();
    let unshifted =
        importance_sampling(&lg, &rows(&x_lg, 6, 6), &config, &mut no_progress()).unwrap();
    let moved = (unshifted.log_px.iter().zip(&whole.log_px[6..12]))
        .map(|(u, v)| (u - v).abs())
        .fold(0.0, f64::max);
    assert!(
        moved > 1e-3,
        "a slice without its offset moved by {moved} only"
    );
}

/// The largest of `|a − b| / max(|a|, |b|, 1)` over the pairs.
fn largest_difference(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    (a.iter().zip(b))
        .map(|(u, v)| (u - v).abs() / u.abs().max(v.abs()).max(1.0))
        .fold(0.0, f64::max)
}

/// `largest_difference` of values that are all set.
fn largest_difference_some(a: &[Option<f64>], b: &[Option<f64>]) -> f64 {
    let all = |v: &[Option<f64>]| -> Vec<f64> { v.iter().map(|x| x.unwrap()).collect() };
    largest_difference(&all(a), &all(b))
}

/// Importance sampling, any split (here slices starting mid-call, and one-example slices): each
/// example still gets the whole run's noise, and its estimates agree up to the f32 rounding of
/// the model, which can depend on how many examples a call holds.
///
/// Not to the bit: `BernoulliLogistic`'s encoder is one `[n, 16] × [16, 2]` f32 product, and
/// libtorch computes a one-row product (`n = 1`) with a matrix-vector kernel that sums in
/// another order. That moves the proposal mean by an f32 rounding (~1e-7 relative) and each
/// log-weight by as much. Measured on this crate's CPU build, over these splits and 150 to 7200
/// rows per call, the largest differences, relative to `max(|value|, 1)`, were 6e-9 in
/// `log p̂(x)`, 2e-8 in the ELBO, 2e-7 in the ESS, 2e-5 in k-hat (a fit to the largest weights,
/// which amplifies their rounding) and less in the two Monte Carlo errors; the linear-Gaussian
/// model, whose encoder runs in f64, matched to the bit. (1e-9 relative, the tolerance one
/// would like for "the same estimate", does not hold for `log p̂(x)`.) The tolerances: 1e-6 for
/// the estimates, about one f32 rounding of a log-weight near 10 and 40× the largest difference
/// seen; 1e-3 for the diagnostics, 40× the largest seen and far below their own sampling error
/// (k-hat's is ~0.1 at k = 300).
#[test]
fn is_slices_across_model_calls_match_up_to_f32_rounding() {
    setup();
    let lg = linear_gaussian();
    let bern = bernoulli();
    let (x_lg, _) = simulate(&lg, B, 5).unwrap();
    let (x_bern, _) = simulate(&bern, B, 6).unwrap();
    // Three examples per call: these slices start mid-call, or hold one example.
    let config = |first_example| IsConfig {
        num_samples: 300,
        max_rows: Some(900),
        seed: 17,
        first_example,
        ..IsConfig::default()
    };
    let run_lg = |first: usize, len: usize| {
        let x = rows(&x_lg, first, len);
        importance_sampling(&lg, &x, &config(first), &mut no_progress()).unwrap()
    };
    let run_bern = |first: usize, len: usize| {
        let x = rows(&x_bern, first, len);
        importance_sampling(&bern, &x, &config(first), &mut no_progress()).unwrap()
    };
    let whole_lg = PerExample::from_is([&run_lg(0, B)]);
    let whole_bern = PerExample::from_is([&run_bern(0, B)]);
    for sizes in [&[5, 7, 1, 11][..], &[2, 3, 5, 7, 7], &[1; B]] {
        for (name, split, whole) in [
            ("linear Gaussian", split_runs(sizes, run_lg), &whole_lg),
            ("Bernoulli", split_runs(sizes, run_bern), &whole_bern),
        ] {
            let split = PerExample::from_is(&split);
            let estimates = largest_difference(&split.log_px, &whole.log_px).max(
                largest_difference(&split.mean_log_weight, &whole.mean_log_weight),
            );
            let diagnostics = largest_difference(&split.ess, &whole.ess)
                .max(largest_difference_some(
                    &split.log_px_stderr,
                    &whole.log_px_stderr,
                ))
                .max(largest_difference_some(
                    &split.log_px_mc_se,
                    &whole.log_px_mc_se,
                ))
                .max(largest_difference_some(&split.khat, &whole.khat));
            println!(
                "{name}, slices {sizes:?}: estimates differ by {estimates:.1e}, diagnostics by \
                 {diagnostics:.1e}"
            );
            assert!(estimates <= 1e-6, "{name}, slices {sizes:?}: {estimates}");
            assert!(
                diagnostics <= 1e-3,
                "{name}, slices {sizes:?}: {diagnostics}"
            );
        }
    }
}

/// HMC settings as in `linear_gaussian.rs`, with the original's `Global` adaptation: the chains
/// of a group of examples share their step size.
fn hmc() -> HmcConfig {
    HmcConfig {
        leapfrog_steps: 5,
        step_size: 0.1,
        step_size_max: 3.0,
        ..HmcConfig::default()
    }
}

/// Short AIS for slice `first..`: 4 chains, 30 steps, 4 × 3 rows per model call, so
/// `examples_per_group` = 3, with every chain's log-weight recorded.
fn ais_config(start: AisStart, first_example: usize) -> AisConfig {
    let config = AisConfig {
        num_chains: 4,
        anneal_steps: 30,
        start,
        hmc: hmc(),
        max_rows: 4 * 3,
        seed: 23,
        record_log_weights: true,
        first_example,
        ..AisConfig::default()
    };
    assert_eq!(config.examples_per_group(), 3);
    config
}

/// Splits at multiples of the group size of 3: the whole, four slices of 6, and 3 + 9 + 12.
const ALIGNED: [&[usize]; 2] = [&[6, 6, 6, 6], &[3, 9, 12]];

/// Forward AIS, from the prior (a model without a proposal) and from the encoder's base:
/// slices at multiples of the group size give each example the chains' log-weights, and so
/// the estimates, of the whole run, to the bit.
#[test]
fn forward_ais_slices_match_the_whole_run() {
    setup();
    let lg = linear_gaussian();
    let (x_lg, _) = simulate(&lg, B, 5).unwrap();
    let run_lg = |first: usize, len: usize| {
        let config = ais_config(AisStart::Prior, first);
        ais_from_prior(&lg, &rows(&x_lg, first, len), &config, &mut no_progress()).unwrap()
    };
    let bern = bernoulli();
    let (x_bern, _) = simulate(&bern, B, 6).unwrap();
    let run_bern = |first: usize, len: usize| {
        let config = ais_config(AisStart::EncoderBase, first);
        ais(
            &bern,
            &rows(&x_bern, first, len),
            &config,
            &mut no_progress(),
        )
        .unwrap()
    };
    let whole_lg = PerExample::from_ais([&run_lg(0, B)]);
    let whole_bern = PerExample::from_ais([&run_bern(0, B)]);
    for sizes in ALIGNED {
        let split = PerExample::from_ais(&split_runs(sizes, run_lg));
        assert_eq!(split, whole_lg, "from the prior, slices {sizes:?}");
        let split = PerExample::from_ais(&split_runs(sizes, run_bern));
        assert_eq!(split, whole_bern, "from the encoder, slices {sizes:?}");
    }
}

/// Reverse AIS from the simulated latents: as forward, with `z_exact` sliced like `x`.
#[test]
fn reverse_ais_slices_match_the_whole_run() {
    setup();
    let model = linear_gaussian();
    let (x, z) = simulate(&model, B, 5).unwrap();
    let run = |first: usize, len: usize| {
        let config = ais_config(AisStart::Prior, first);
        let (xs, zs) = (rows(&x, first, len), rows(&z, first, len));
        reverse_ais_from_prior(&model, &xs, &zs, &config, &mut no_progress()).unwrap()
    };
    let whole = PerExample::from_ais([&run(0, B)]);
    for sizes in ALIGNED {
        let split = PerExample::from_ais(&split_runs(sizes, run));
        assert_eq!(split, whole, "slices {sizes:?}");
    }
}

/// BDMC: all `B` examples simulated at once, then sliced; both runs of each slice use its
/// offset, so the forward and reverse estimates and the gaps are the whole run's.
#[test]
fn bdmc_slices_match_the_whole_run() {
    setup();
    let lg = linear_gaussian();
    let bern = bernoulli();
    let (x_lg, z_lg) = simulate(&lg, B, 5).unwrap();
    let (x_bern, z_bern) = simulate(&bern, B, 6).unwrap();
    let run_lg = |first: usize, len: usize| {
        let config = ais_config(AisStart::Prior, first);
        let (xs, zs) = (rows(&x_lg, first, len), rows(&z_lg, first, len));
        bdmc_from_prior(&lg, &xs, &zs, &config, &mut no_progress()).unwrap()
    };
    let run_bern = |first: usize, len: usize| {
        let config = ais_config(AisStart::EncoderBase, first);
        let (xs, zs) = (rows(&x_bern, first, len), rows(&z_bern, first, len));
        bdmc(&bern, &xs, &zs, &config, &mut no_progress()).unwrap()
    };
    let per_example = |results: &[BdmcResult]| {
        (
            PerExample::from_ais(results.iter().map(|r| &r.forward)),
            PerExample::from_ais(results.iter().map(|r| &r.reverse)),
            results
                .iter()
                .flat_map(|r| r.gap_per_example.iter().copied())
                .collect::<Vec<f64>>(),
        )
    };
    let whole_lg = per_example(&[run_lg(0, B)]);
    let whole_bern = per_example(&[run_bern(0, B)]);
    for sizes in ALIGNED {
        let split = per_example(&split_runs(sizes, run_lg));
        assert_eq!(split, whole_lg, "from the prior, slices {sizes:?}");
        let split = per_example(&split_runs(sizes, run_bern));
        assert_eq!(split, whole_bern, "from the encoder, slices {sizes:?}");
    }
}

/// A slice that starts mid-group (example 4, with groups of 3) runs: its groups, and so its
/// random streams and shared step sizes, are not the whole run's, so its estimates are other
/// valid estimates, not guaranteed equal to the whole run's.
#[test]
fn misaligned_ais_slices_still_run() {
    setup();
    let model = linear_gaussian();
    let (x, z) = simulate(&model, B, 5).unwrap();
    let (first, len) = (4, 7);
    let config = ais_config(AisStart::Prior, first);
    let (xs, zs) = (rows(&x, first, len), rows(&z, first, len));
    let forward = ais_from_prior(&model, &xs, &config, &mut no_progress()).unwrap();
    let reverse = reverse_ais_from_prior(&model, &xs, &zs, &config, &mut no_progress()).unwrap();
    let both = bdmc_from_prior(&model, &xs, &zs, &config, &mut no_progress()).unwrap();
    for r in [&forward, &reverse, &both.forward, &both.reverse] {
        assert_eq!(r.num_examples, len);
        assert_eq!(r.config.first_example, first);
        assert!(r.log_px.iter().all(|v| v.is_finite()), "{:?}", r.log_px);
    }
    // BDMC's two runs are the stand-alone ones, with the same offset.
    assert_eq!(both.forward.log_px, forward.log_px);
    assert_eq!(both.reverse.log_px, reverse.log_px);

    // An offset whose slice would run past usize::MAX is a config error, not a wrapped seed.
    let config = ais_config(AisStart::Prior, usize::MAX - len + 1);
    let err = ais_from_prior(&model, &xs, &config, &mut no_progress());
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
    let err = bdmc_from_prior(&model, &xs, &zs, &config, &mut no_progress());
    assert!(matches!(err, Err(Error::BadConfig { .. })), "{err:?}");
}
