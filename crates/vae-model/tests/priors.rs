//! Every prior of PRIORS §1 in two dimensions: its density integrates to 1 by quadrature, its
//! sampler draws from that density (Kolmogorov–Smirnov on projections), the VampPrior is the
//! mixture of the encoder's bases at its pseudo-inputs, and the flow prior's density is the
//! change of variables of its sampler.
//!
//! Parameters are randomised (not left at their initial values, where the mixture weights are
//! equal and the flow is the identity). Seeds are fixed, so every outcome is deterministic; the
//! thresholds are derived in the comments.

use tch::{nn, Device, Kind, Tensor};
use vae_model::prior::{DiagMixture, FlowPrior, MogPrior, StandardNormal};
use vae_model::{LatentPrior, ModelConfig, PriorDensity, Vae};

/// The tests draw from tch's process-wide generator after seeding it: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const LN_2PI: f64 = 1.837_877_066_409_345_3;

fn v(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

/// Moves every variable away from its initial value: `t ← t + relative · t · n + additive · n`,
/// `n` standard normal; running variances become `|n| / 2 + 1/2`.
fn perturb(vs: &nn::VarStore, relative: f64, additive: f64) {
    // In name order: the store's map iterates in a random order.
    let mut vars: Vec<_> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| {
        for (name, mut t) in vars {
            let noise = t.randn_like();
            if name.ends_with("running_var") {
                t.copy_(&(noise.abs() * 0.5 + 0.5));
            } else {
                let step = &t * &noise * relative + noise * additive;
                let _ = t.g_add_(&step);
            }
        }
    });
}

/// A mixture of 4 Gaussians in 2-D, f64: means `N(0, 1.5²)`, standard deviations in about
/// `[0.3, 1]`, unequal weights.
fn mog_2d() -> DiagMixture {
    tch::manual_seed(1);
    let mut vs = nn::VarStore::new(Device::Cpu);
    vs.set_kind(Kind::Double);
    let mog = MogPrior::new(&(vs.root() / "prior"), 2, 4).unwrap();
    let mut vars: Vec<_> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| {
        for (name, mut t) in vars {
            let r = t.randn_like();
            let new = match name.as_str() {
                "prior.means" => r * 1.5,
                "prior.log_sigmas" => (r * 0.4 - 0.6).clamp(-1.2, 0.0),
                _ => r,
            };
            t.copy_(&new);
        }
    });
    mog.mixture().detach()
}

/// A 2-layer flow prior in 2-D, f64, every weight perturbed (the zero heads included).
fn flow_2d() -> (nn::VarStore, FlowPrior) {
    tch::manual_seed(2);
    let mut vs = nn::VarStore::new(Device::Cpu);
    vs.set_kind(Kind::Double);
    let flow = FlowPrior::new(&(vs.root() / "prior"), 2, 2, &[8, 8]).unwrap();
    perturb(&vs, 0.3, 0.3);
    (vs, flow)
}

/// A VAE with latent 2 and a VampPrior of 5 pseudo-inputs, every variable perturbed (BN's
/// running statistics included, so that evaluation mode differs from training mode).
fn vamp_vae() -> (nn::VarStore, Vae) {
    tch::manual_seed(3);
    let vs = nn::VarStore::new(Device::Cpu);
    let cfg: ModelConfig = serde_json::from_value(serde_json::json!({
        "latent": 2,
        "log_sigma_offset": 0.5,
        "encoder": {"type": "mlp", "hidden": [16]},
        "decoder": {"type": "mlp", "hidden": [16]},
        "flow": null,
        "prior": {"kind": "vampprior", "pseudo_inputs": 5},
    }))
    .unwrap();
    let vae = Vae::new(&vs.root(), &cfg).unwrap();
    perturb(&vs, 0.3, 0.02);
    (vs, vae)
}

/// The VampPrior's mixture as the VAE resolves it, in f64.
fn vamp_mixture(vae: &Vae) -> DiagMixture {
    match tch::no_grad(|| vae.prior_density()) {
        PriorDensity::Mixture(m) => m.to_kind(Kind::Double),
        other => panic!("a VampPrior resolves to a mixture, not {other:?}"),
    }
}

/// Midpoint grid of `n × n` cells on `[−l, l]²` in coordinates `w`, mapped to `z = R(θ) w`;
/// returns `z` `[n², 2]` (row `i·n + j` is cell `(i, j)`, `i` along `w₁`) and the spacing.
fn grid(l: f64, n: i64, theta: f64) -> (Tensor, f64) {
    let h = 2.0 * l / n as f64;
    let opts = (Kind::Double, Device::Cpu);
    let axis = Tensor::arange(n, opts) * h + (h / 2.0 - l);
    let mesh = Tensor::meshgrid_indexing(&[&axis, &axis], "ij");
    let (w1, w2) = (mesh[0].reshape([-1]), mesh[1].reshape([-1]));
    let (c, s) = (theta.cos(), theta.sin());
    let z = Tensor::stack(&[&w1 * c - &w2 * s, &w1 * s + &w2 * c], 1);
    (z, h)
}

/// The density on the grid, `[n²]`, in chunks.
fn density_on(prior: &dyn LatentPrior, z: &Tensor) -> Tensor {
    tch::no_grad(|| {
        let chunks: Vec<Tensor> = z
            .split(200_000, 0)
            .iter()
            .map(|c| prior.log_prob(c).exp())
            .collect();
        Tensor::cat(&chunks, 0)
    })
}

/// `∫ p` over `[−l, l]²` by the midpoint rule with `n²` cells.
///
/// For a smooth density decaying like a Gaussian the midpoint rule converges faster than any
/// power of `h`: for one Gaussian of standard deviation σ its relative error is about
/// `2 exp(−2π² σ² / h²)`, below 1e-8 once `h ≤ σ` and below 1e-30 at `h ≤ σ / 2`. Truncation at
/// `±l` costs the mass beyond it.
fn integral(prior: &dyn LatentPrior, l: f64, n: i64) -> f64 {
    let (z, h) = grid(l, n, 0.0);
    density_on(prior, &z).sum(Kind::Double).double_value(&[]) * h * h
}

/// The CDF of the projection `t = (cos θ, sin θ) · z` by quadrature: the density on a grid
/// rotated by θ, summed across `w₂`, cumulated along `w₁`. Returns the cell edges `−l + i h`,
/// `i = 0..=n`, and the CDF there, normalised by the total.
fn projected_cdf(prior: &dyn LatentPrior, l: f64, n: i64, theta: f64) -> (Vec<f64>, Vec<f64>) {
    let (z, h) = grid(l, n, theta);
    let p = density_on(prior, &z)
        .view([n, n])
        .sum_dim_intlist(1, false, Kind::Double);
    let marginal = v(&p);
    let total: f64 = marginal.iter().sum();
    let mut cdf = vec![0.0];
    let mut acc = 0.0;
    for m in &marginal {
        acc += m;
        cdf.push(acc / total);
    }
    let edges = (0..=n).map(|i| -l + i as f64 * h).collect();
    (edges, cdf)
}

/// The two-sided Kolmogorov–Smirnov statistic of `samples` against the piecewise-linear CDF
/// through `(edges, cdf)`.
fn ks_statistic(samples: &mut [f64], edges: &[f64], cdf: &[f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    let n = samples.len() as f64;
    let h = edges[1] - edges[0];
    let last = edges.len() - 1;
    let f = |t: f64| {
        let x = (t - edges[0]) / h;
        if x <= 0.0 {
            return 0.0;
        }
        let i = (x.floor() as usize).min(last - 1);
        let frac = (x - i as f64).min(1.0);
        cdf[i] + (cdf[i + 1] - cdf[i]) * frac
    };
    samples
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            let ft = f(t);
            (ft - i as f64 / n)
                .abs()
                .max(((i + 1) as f64 / n - ft).abs())
        })
        .fold(0.0, f64::max)
}

/// The largest KS statistic of `samples` `[N, 2]` over projections at 0°, 60° and 120°.
fn max_ks(prior: &dyn LatentPrior, samples: &Tensor, l: f64, n: i64) -> f64 {
    let s = samples.to_kind(Kind::Double);
    [0.0f64, 60.0, 120.0]
        .iter()
        .map(|deg| {
            let theta = deg.to_radians();
            let dir = Tensor::from_slice(&[theta.cos(), theta.sin()]);
            let mut t = v(&s.matmul(&dir));
            let (edges, cdf) = projected_cdf(prior, l, n, theta);
            ks_statistic(&mut t, &edges, &cdf)
        })
        .fold(0.0, f64::max)
}

/// Samples for the KS tests.
const N_SAMPLES: i64 = 20_000;

/// The KS rejection threshold at level α = 0.001 for N samples: the asymptotic Kolmogorov
/// distribution gives `P(√N D > c) ≈ 2 exp(−2c²)`, so `c = √(−ln(α/2) / 2) = 1.9495`. Each prior
/// is tested on 3 projections, 12 tests in all; a correct sampler fails one with probability
/// at most 1.2 % (Bonferroni), and the seeds are fixed. The quadrature CDF's own error (grid
/// spacing ≤ 0.03, interpolation between edges) is below 1e-4, under 1 % of the threshold.
fn ks_threshold() -> f64 {
    let alpha: f64 = 0.001;
    (-(alpha / 2.0).ln() / 2.0).sqrt() / (N_SAMPLES as f64).sqrt()
}

/// Half-width for a mixture: every component's mean plus 9 of its standard deviations inside,
/// so each component leaves at most `2 · P(|N(0,1)| > 9) ≈ 4e-19` of its mass outside per axis.
fn mixture_half_width(m: &DiagMixture) -> f64 {
    let reach = m.means().abs() + m.log_sigmas().exp() * 9.0;
    reach.max().double_value(&[]).max(4.0)
}

#[test]
fn every_prior_integrates_to_one() {
    let _serial = serial();
    tch::set_num_threads(1);
    // N(0, I): by quadrature on [−9, 9]², h = 0.06.
    let sn = StandardNormal::new(2, Kind::Double, Device::Cpu);
    let mog = mog_2d();
    let (_vs, vae) = vamp_vae();
    let vamp = vamp_mixture(&vae);
    let (_fvs, flow) = flow_2d();
    let sigma_min = |m: &DiagMixture| m.log_sigmas().exp().min().double_value(&[]);
    let cases: Vec<(&str, &dyn LatentPrior, f64, f64)> = vec![
        ("standard_normal", &sn, 9.0, 1.0),
        ("mog", &mog, mixture_half_width(&mog), sigma_min(&mog)),
        (
            "vampprior",
            &vamp,
            mixture_half_width(&vamp),
            sigma_min(&vamp),
        ),
        // The flow's tails are checked by the result itself: its mass inside ±14 must be 1.
        ("flow", &flow, 14.0, 0.3),
    ];
    for (name, prior, l, sigma) in cases {
        // Spacing at most half the narrowest component's standard deviation, at most 0.03.
        let n = (2.0 * l / (sigma / 2.0).min(0.03)).ceil() as i64;
        assert!(n <= 3000, "{name}: {n}² cells");
        let total = integral(prior, l, n);
        eprintln!("{name}: ∫ p = {total:.8} on [−{l:.2}, {l:.2}]² with {n}² cells");
        assert!((total - 1.0).abs() < 1e-4, "{name}: integral {total}");
    }
    // The mixtures are not trivial: their components differ in width (and in place).
    for m in [&mog, &vamp] {
        let s = m.log_sigmas().exp();
        let (lo, hi) = (s.min().double_value(&[]), s.max().double_value(&[]));
        eprintln!("component standard deviations {lo:.3}..{hi:.3}");
        assert!(hi > 1.5 * lo, "{lo}..{hi}");
    }
}

#[test]
fn samples_follow_the_density() {
    let _serial = serial();
    tch::set_num_threads(1);
    let sn = StandardNormal::new(2, Kind::Double, Device::Cpu);
    let mog = mog_2d();
    let (_vs, vae) = vamp_vae();
    let vamp = vamp_mixture(&vae);
    let (_fvs, flow) = flow_2d();
    let threshold = ks_threshold();
    let cases: Vec<(&str, &dyn LatentPrior, f64)> = vec![
        ("standard_normal", &sn, 9.0),
        ("mog", &mog, mixture_half_width(&mog)),
        ("vampprior", &vamp, mixture_half_width(&vamp)),
        ("flow", &flow, 14.0),
    ];
    for (i, (name, prior, l)) in cases.iter().enumerate() {
        tch::manual_seed(100 + i as i64);
        let z = prior.sample(N_SAMPLES);
        assert_eq!(z.size(), [N_SAMPLES, 2], "{name}");
        let d = max_ks(*prior, &z, *l, 1000);
        eprintln!("{name}: largest KS statistic {d:.4}, threshold {threshold:.4}");
        assert!(d < threshold, "{name}: KS {d} >= {threshold}");
    }
    // The test has power: the mixture's density against standard normal samples, and the
    // VampPrior's against the mixture's samples, are rejected by far.
    tch::manual_seed(200);
    let wrong = sn.sample(N_SAMPLES);
    let d = max_ks(&mog, &wrong, mixture_half_width(&mog), 1000);
    assert!(
        d > 5.0 * threshold,
        "N(0, I) samples against the mixture: KS {d}"
    );
    let wrong = mog.sample(N_SAMPLES);
    let d = max_ks(
        &vamp,
        &wrong,
        mixture_half_width(&mog).max(mixture_half_width(&vamp)),
        1000,
    );
    assert!(
        d > 5.0 * threshold,
        "mixture samples against the VampPrior: KS {d}"
    );
}

/// The VampPrior in the VAE is `(1/K) Σ_k N(z; mu(u_k), sigma(u_k)²)` with the encoder in
/// evaluation mode on each pseudo-input alone, recomputed here in plain f64 arithmetic.
#[test]
fn the_vampprior_is_the_mixture_over_its_pseudo_inputs() {
    let _serial = serial();
    tch::set_num_threads(1);
    let (_vs, vae) = vamp_vae();
    let vae_model::Prior::VampPrior(vamp) = vae.prior() else {
        panic!("a VampPrior");
    };
    let u = tch::no_grad(|| vamp.pseudo_inputs());
    assert_eq!(u.size(), [5, 1, 28, 28]);
    let (lo, hi) = (u.min().double_value(&[]), u.max().double_value(&[]));
    assert!(lo > 0.0 && hi < 1.0, "pseudo-inputs in (0, 1): {lo}..{hi}");
    // Each pseudo-input through the encoder on its own (batch of one, evaluation mode).
    let components: Vec<(Vec<f64>, Vec<f64>)> = (0..5)
        .map(|k| {
            let (mu, ls, _) = tch::no_grad(|| vae.encode(&u.narrow(0, k, 1), false));
            (v(&mu), v(&ls))
        })
        .collect();
    tch::manual_seed(5);
    let z = Tensor::randn([64, 2], (Kind::Float, Device::Cpu)) * 1.5;
    let got = v(&tch::no_grad(|| vae.prior_density().log_prob(&z)));
    for (row, zr) in v(&z).chunks(2).enumerate() {
        let logs: Vec<f64> = components
            .iter()
            .map(|(mu, ls)| {
                (0..2)
                    .map(|d| {
                        let r = (zr[d] - mu[d]) / ls[d].exp();
                        -0.5 * r * r - ls[d] - 0.5 * LN_2PI
                    })
                    .sum::<f64>()
            })
            .collect();
        let max = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let direct = max + (logs.iter().map(|l| (l - max).exp()).sum::<f64>() / 5.0).ln();
        // f32 evaluation of terms of size up to ~100 nats: 1e-4 relative.
        assert!(
            (got[row] - direct).abs() < 1e-4 * direct.abs().max(1.0),
            "row {row}: {} vs {direct}",
            got[row]
        );
    }
    // In a training step the pseudo-inputs go through the encoder in evaluation mode too: the
    // prior with gradients on is the same density, and the BN running statistics are untouched
    // by it (the pseudo-inputs never enter the data's batch statistics).
    let running = |vae: &Vae| -> Vec<f64> {
        let _ = vae;
        let mut vars: Vec<_> = _vs
            .variables()
            .into_iter()
            .filter(|(k, _)| k.contains("running"))
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        vars.iter().flat_map(|(_, t)| v(t)).collect()
    };
    let stats = running(&vae);
    assert!(!stats.is_empty());
    let with_grad = vae.prior_density().log_prob(&z);
    assert!(
        with_grad.requires_grad(),
        "the training-time prior carries gradients"
    );
    assert_eq!(v(&with_grad), got);
    assert_eq!(running(&vae), stats);
}

/// Sampling solves the flow sequentially; the density inverts it in one pass. They agree: the
/// density of `z = f⁻¹(u)` equals `log N(u) − log |det ∂z/∂u|` with the Jacobian by autograd
/// through the sequential inverse, in f64.
#[test]
fn the_flow_prior_density_is_the_change_of_variables_of_its_sampler() {
    let _serial = serial();
    tch::set_num_threads(1);
    let (_vs, flow) = flow_2d();
    tch::manual_seed(7);
    let u = Tensor::randn([50, 2], (Kind::Double, Device::Cpu)).set_requires_grad(true);
    let z = flow.from_noise(&u);
    // ∂z/∂u row by row: rows do not interact, so the gradient of Σ_rows z_d is row-wise.
    let mut jac = Vec::new();
    for d in 0..2 {
        let g = Tensor::run_backward(&[z.select(1, d).sum(Kind::Double)], &[&u], true, false);
        jac.push(g[0].shallow_clone()); // [50, 2]: ∂z_d/∂u
    }
    let det = jac[0].select(1, 0) * jac[1].select(1, 1) - jac[0].select(1, 1) * jac[1].select(1, 0);
    let u = u.detach();
    let z = z.detach();
    let log_n = (u.square().sum_dim_intlist(1, false, Kind::Double) * -0.5) - LN_2PI;
    let expected = v(&(log_n - det.abs().log()));
    let got = v(&tch::no_grad(|| flow.log_prob(&z)));
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert!((g - e).abs() < 1e-9, "row {i}: {g} vs {e}");
    }
    // The one-pass direction maps the samples back to their noise.
    let (back, _) = tch::no_grad(|| flow.to_noise(&z));
    let err = (back - &u).abs().max().double_value(&[]);
    assert!(err < 1e-10, "round trip error {err}");
    // The layers are not the identity (the test would be vacuous) and the Jacobian is not
    // triangular in one fixed order: both orders are used.
    let log_det_spread = v(&det.abs().log());
    let (lo, hi) = log_det_spread
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    assert!(hi - lo > 0.1, "log-det varies with u: {lo}..{hi}");
    let off = jac[0].select(1, 1).abs().max().double_value(&[])
        * jac[1].select(1, 0).abs().max().double_value(&[]);
    assert!(
        off > 1e-6,
        "both off-diagonal Jacobian entries are nonzero somewhere"
    );
}

/// At its initial values the flow prior is exactly `N(0, I)` (its heads start at zero).
#[test]
fn the_flow_prior_starts_as_the_standard_normal() {
    let _serial = serial();
    tch::manual_seed(8);
    let vs = nn::VarStore::new(Device::Cpu);
    let flow = FlowPrior::new(&vs.root(), 8, 3, &[32, 32]).unwrap();
    let z = Tensor::randn([16, 8], (Kind::Float, Device::Cpu));
    let diff = (flow.log_prob(&z) - StandardNormal::new(8, Kind::Float, Device::Cpu).log_prob(&z))
        .abs()
        .max()
        .double_value(&[]);
    assert_eq!(diff, 0.0);
}
