//! Reference models whose `log p(x)` is known exactly, for testing estimators.
//!
//! - [`LinearGaussian`]: `z ~ N(0, I_D)`, `x | z ~ N(W z + b, σ² I_P)`. Closed forms for `log p(x)`,
//!   the posterior, and the ELBO of its Gaussian proposal.
//! - [`BernoulliLogistic`]: `z ~ N(0, I_D)` with `D ∈ {1, 2}`, `x_p | z ~ Bernoulli(σ(W z + b)_p)`,
//!   as a VAE decoder but linear. `log p(x)` by dense quadrature on a grid.
//! - [`MogLinearGaussian`]: [`LinearGaussian`]'s likelihood under a mixture-of-Gaussians prior
//!   `z ~ Σ_k π_k N(μ_k, diag σ_k²)`: closed-form `log p(x)`, and a prior other than the default
//!   `N(0, I)`, with its own sampler and a gradient by autograd.
//!
//! All three implement [`LatentModel`](crate::LatentModel) (all three parts) with a deliberately imperfect (tunable) proposal, so that the
//! estimators have something to correct. They live in the library, not only in tests, so that the
//! runnable example and downstream self-checks can use them.

use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};

mod gaussian_proposal;
mod linear_likelihood;
use crate::model::{
    diag_normal_log_density, standard_normal_log_density, AmortizedProposal, DataSimulator,
    JointDensity, LN_2PI,
};
use gaussian_proposal::GaussianProposal;

/// The proposal of [`LinearGaussian`]: the exact posterior `N(m, Σ)`, distorted.
///
/// `q = N(m + mean_shift · 1, scale² Σ)` if `full_covariance`, built as the identity base
/// `N(0, I)` followed by the affine flow `z = scale · chol(Σ) z0 + m + mean_shift`; otherwise
/// `q = N(m + mean_shift · 1, scale² diag Σ)` as a Gaussian base with the identity flow.
/// [`Proposal::EXACT`] is the exact posterior.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Proposal {
    /// Added to every coordinate of the posterior mean.
    pub mean_shift: f64,
    /// Multiplies the posterior standard deviations.
    pub scale: f64,
    /// Keep the posterior correlations (through the affine flow) or drop them (diagonal base).
    pub full_covariance: bool,
}

impl Proposal {
    /// The exact posterior, through the flow: every importance weight equals `p(x)`.
    pub const EXACT: Proposal = Proposal {
        mean_shift: 0.0,
        scale: 1.0,
        full_covariance: true,
    };
}

/// A linear-Gaussian latent model (probabilistic PCA / factor analysis), `P` observed and `D`
/// latent dimensions: `log p(x) = log N(x; b, W Wᵀ + σ² I)`.
#[derive(Debug)]
pub struct LinearGaussian {
    /// `[P, D]`, in the model's kind.
    w: Tensor,
    /// `[P]`.
    b: Tensor,
    sigma: f64,
    /// The proposal around the exact posterior.
    q: GaussianProposal,
    /// f64 copies on the CPU for the closed forms.
    w64: Tensor,
    b64: Tensor,
    /// Posterior covariance `Σ = (I + WᵀW / σ²)⁻¹`, `[D, D]`, f64, CPU.
    post_cov: Tensor,
    /// `Σ Wᵀ / σ²`, `[D, P]`, f64, CPU: the posterior mean is `gain (x − b)`.
    gain: Tensor,
}

/// What [`LinearGaussian::encode`](AmortizedProposal::encode) computes: the proposal's mean, `[B, D]`.
#[derive(Debug)]
pub struct LinearGaussianPosterior {
    mean: Tensor,
}

impl LinearGaussian {
    /// A model from `w` (`[P, D]`) and `b` (`[P]`), any float kind on any device (the model
    /// computes in f32 on that device), observation noise `sigma > 0`, and a proposal.
    pub fn new(w: &Tensor, b: &Tensor, sigma: f64, proposal: Proposal) -> Self {
        let device = w.device();
        let w64 = w.to_kind(Kind::Double).to_device(Device::Cpu);
        let b64 = b.to_kind(Kind::Double).to_device(Device::Cpu);
        let d = w64.size()[1];
        let precision =
            Tensor::eye(d, (Kind::Double, Device::Cpu)) + w64.tr().matmul(&w64) / (sigma * sigma);
        let post_cov = precision.inverse();
        let post_cov = (&post_cov + post_cov.tr()) * 0.5;
        let gain = post_cov.matmul(&w64.tr()) / (sigma * sigma);
        let on = |t: &Tensor| t.to_kind(Kind::Float).to_device(device);
        LinearGaussian {
            w: on(&w64),
            b: on(&b64),
            sigma,
            q: GaussianProposal::new(&post_cov, proposal, device),
            w64,
            b64,
            post_cov,
            gain,
        }
    }

    /// A model with `W` entries `N(0, w_scale²)` and `b` entries `N(0, 1)`, drawn from tch's
    /// generator seeded with `seed`, on the CPU.
    pub fn random(p: i64, d: i64, w_scale: f64, sigma: f64, seed: i64, proposal: Proposal) -> Self {
        let (w, b) = {
            let _rng = crate::rng_guard();
            tch::manual_seed(seed);
            let opts = (Kind::Double, Device::Cpu);
            (
                Tensor::randn([p, d], opts) * w_scale,
                Tensor::randn([p], opts),
            )
        };
        Self::new(&w, &b, sigma, proposal)
    }

    /// The same model computing on `device` (the closed forms stay on the CPU in f64).
    pub fn to_device(&self, device: Device) -> Self {
        Self::new(
            &self.w64.to_device(device),
            &self.b64.to_device(device),
            self.sigma,
            self.q.settings(),
        )
    }

    /// Exact posterior mean `Σ Wᵀ (x − b) / σ²`, `[B, D]`, f64, CPU.
    pub fn posterior_mean(&self, x: &Tensor) -> Tensor {
        let r = x.to_kind(Kind::Double).to_device(Device::Cpu) - &self.b64;
        r.matmul(&self.gain.tr())
    }

    /// Exact posterior covariance `(I + WᵀW / σ²)⁻¹`, `[D, D]`, f64, CPU.
    pub fn posterior_covariance(&self) -> Tensor {
        self.post_cov.shallow_clone()
    }

    /// Exact `log p(x) = log N(x; b, W Wᵀ + σ² I)` for `x` `[B, P]`, nats.
    pub fn log_px(&self, x: &Tensor) -> Vec<f64> {
        let p = self.w64.size()[0];
        let cov = self.w64.matmul(&self.w64.tr())
            + Tensor::eye(p, (Kind::Double, Device::Cpu)) * (self.sigma * self.sigma);
        let lp = linear_likelihood::gaussian_log_density(x, &self.b64, &cov);
        Vec::<f64>::try_from(&lp).expect("a [B] f64 tensor")
    }

    /// Exact ELBO `E_q[log p(x, z) − log q(z | x)]` of the model's proposal, for `x` `[B, P]`, nats.
    pub fn elbo(&self, x: &Tensor) -> Vec<f64> {
        let (p, d) = (self.w64.size()[0], self.w64.size()[1]);
        let pr = self.q.settings();
        let m = self.posterior_mean(x) + pr.mean_shift; // [B, D]
        let cov = if pr.full_covariance {
            &self.post_cov * (pr.scale * pr.scale)
        } else {
            self.post_cov.diagonal(0, 0, 1).diag_embed(0, 0, 1) * (pr.scale * pr.scale)
        };
        let tr_s = cov.trace().double_value(&[]);
        let tr_wsw = self
            .w64
            .matmul(&cov)
            .matmul(&self.w64.tr())
            .trace()
            .double_value(&[]);
        let log_det_s = cov.logdet().double_value(&[]);
        let x64 = x.to_kind(Kind::Double).to_device(Device::Cpu);
        let resid = (x64 - &self.b64 - m.matmul(&self.w64.tr()))
            .square()
            .sum_dim_intlist(1, false, Kind::Double);
        let m2 = m.square().sum_dim_intlist(1, false, Kind::Double);
        let s2 = self.sigma * self.sigma;
        let e_log_prior = (m2 + tr_s) * -0.5 - 0.5 * LN_2PI * d as f64;
        let e_log_lik = (resid + tr_wsw) * (-0.5 / s2) - 0.5 * p as f64 * (LN_2PI + s2.ln());
        let entropy = 0.5 * d as f64 * (1.0 + LN_2PI) + 0.5 * log_det_s;
        let elbo = e_log_prior + e_log_lik + entropy;
        Vec::<f64>::try_from(&elbo).expect("a [B] f64 tensor")
    }

    /// `(x − W z − b) / σ²` for `z` `[S, B, D]`, `x` `[B, P]`: `[S, B, P]`.
    fn scaled_residual(&self, x: &Tensor, z: &Tensor) -> Tensor {
        (x - z.matmul(&self.w.tr()) - &self.b) / (self.sigma * self.sigma)
    }
}

impl JointDensity for LinearGaussian {
    fn latent_dim(&self) -> i64 {
        self.w.size()[1]
    }

    fn device(&self) -> Device {
        self.w.device()
    }

    fn log_joint(&self, x: &Tensor, z: &Tensor) -> Tensor {
        standard_normal_log_density(z)
            + linear_likelihood::log_likelihood(&self.w, &self.b, self.sigma, x, z)
    }

    /// Closed form: `∇_z = −z + Wᵀ (x − W z − b) / σ²`.
    fn log_joint_and_grad(&self, x: &Tensor, z: &Tensor) -> (Tensor, Tensor) {
        let grad = -z + self.scaled_residual(x, z).matmul(&self.w);
        (self.log_joint(x, z), grad)
    }
}

impl AmortizedProposal for LinearGaussian {
    type Posterior = LinearGaussianPosterior;

    fn encode(&self, x: &Tensor) -> LinearGaussianPosterior {
        self.q.encode(self.posterior_mean(x), self.device())
    }

    fn base(&self, posterior: &LinearGaussianPosterior) -> (Tensor, Tensor) {
        self.q.base(posterior)
    }

    fn flow(&self, posterior: &LinearGaussianPosterior, z0: &Tensor) -> (Tensor, Tensor) {
        self.q.flow(posterior, z0)
    }
}

impl DataSimulator for LinearGaussian {
    fn sample_data(&self, z: &Tensor) -> Tensor {
        linear_likelihood::sample(&self.w, &self.b, self.sigma, z)
    }
}

/// A Bernoulli decoder that is logistic-linear in the latent (exact `log p(x)` by quadrature
/// for 1 or 2 latent dimensions):
/// `log p(x | z) = Σ_p [x_p ℓ_p − softplus(ℓ_p)]` with `ℓ = W z + b`, prior `N(0, I)`.
///
/// The proposal is a Gaussian `N(mean, proposal_std² I)` whose mean comes from a linearisation
/// (`σ(ℓ) ≈ σ(b) + W z / 4`, precision `Λ = I + WᵀW / 4`, mean `Λ⁻¹ Wᵀ (x − σ(b))`). It ignores
/// the nonlinearity and the correlations, so it is imperfect. Because the posterior is bounded by
/// `N(z; 0, I) / p(x)`, the importance weights have finite variance when `proposal_std² > 1/2`.
#[derive(Debug)]
pub struct BernoulliLogistic {
    w: Tensor,
    b: Tensor,
    /// `Λ⁻¹ Wᵀ`, `[D, P]`.
    enc_gain: Tensor,
    /// `σ(b)`, `[P]`.
    enc_offset: Tensor,
    /// `log proposal_std`.
    enc_log_sigma: f64,
}

/// What [`BernoulliLogistic::encode`](AmortizedProposal::encode) computes.
#[derive(Debug)]
pub struct BernoulliPosterior {
    mean: Tensor,
    log_sigma: Tensor,
}

impl BernoulliLogistic {
    /// A model from `w` (`[P, D]`, `D ∈ {1, 2}`) and `b` (`[P]`), any float kind on any device
    /// (the model computes in f32 there; `w` is used as given, so gradient tracking on it is
    /// kept), with the proposal's standard deviation `proposal_std`.
    pub fn new(w: &Tensor, b: &Tensor, proposal_std: f64) -> Self {
        let d = w.size()[1];
        let w = w.to_kind(Kind::Float);
        let (enc_gain, enc_offset) = tch::no_grad(|| {
            let w = w.detach();
            let lambda = Tensor::eye(d, (Kind::Float, w.device())) + w.tr().matmul(&w) * 0.25;
            (
                lambda.inverse().matmul(&w.tr()),
                b.to_kind(Kind::Float).sigmoid(),
            )
        });
        BernoulliLogistic {
            enc_gain,
            enc_offset,
            enc_log_sigma: proposal_std.ln(),
            w,
            b: b.to_kind(Kind::Float),
        }
    }

    /// `W` entries `N(0, w_scale²)`, `b` entries `N(0, 1)`, from tch's generator seeded with `seed`.
    pub fn random(p: i64, d: i64, w_scale: f64, proposal_std: f64, seed: i64) -> Self {
        let (w, b) = {
            let _rng = crate::rng_guard();
            tch::manual_seed(seed);
            let opts = (Kind::Float, Device::Cpu);
            (
                Tensor::randn([p, d], opts) * w_scale,
                Tensor::randn([p], opts),
            )
        };
        Self::new(&w, &b, proposal_std)
    }

    /// `log p(x)` for `x` `[B, P]` by the midpoint rule on a grid of `points^D` nodes over
    /// `[−half_width, half_width]^D`, in f64, nats.
    ///
    /// The integrand `p(x, z)` is smooth and decays like the prior, so with `half_width ≥ 8` the
    /// truncation error is below `e^{−32}` relative, and the grid error falls faster than any
    /// power of the spacing once it resolves the posterior width (check it by halving the spacing).
    ///
    /// Errors with [`Error::Unsupported`] for more than 2 latent dimensions.
    pub fn log_px_quadrature(&self, x: &Tensor, half_width: f64, points: i64) -> Result<Vec<f64>> {
        let d = self.w.size()[1];
        if d > 2 {
            return Err(Error::Unsupported(format!(
                "quadrature over {d} latent dimensions (at most 2)"
            )));
        }
        let h = 2.0 * half_width / points as f64;
        let opts = (Kind::Double, Device::Cpu);
        let axis = Tensor::arange(points, opts) * h + (h / 2.0 - half_width);
        let grid = if d == 1 {
            axis.unsqueeze(1)
        } else {
            let mesh = Tensor::meshgrid_indexing(&[&axis, &axis], "ij");
            Tensor::stack(&[mesh[0].reshape([-1]), mesh[1].reshape([-1])], 1)
        }; // [G, D]
        let w = self.w.detach().to_kind(Kind::Double).to_device(Device::Cpu);
        let b = self.b.to_kind(Kind::Double).to_device(Device::Cpu);
        let logits = grid.matmul(&w.tr()) + b; // [G, P]
        let log_prior = standard_normal_log_density(&grid); // [G]
        let softplus = logits.softplus().sum_dim_intlist(1, false, Kind::Double);
        let x64 = x.to_kind(Kind::Double).to_device(Device::Cpu); // [B, P]
        let log_joint = x64.matmul(&logits.tr()) - softplus + log_prior; // [B, G]
        let lp = log_joint.logsumexp(1, false) + d as f64 * h.ln();
        Ok(Vec::<f64>::try_from(&lp)?)
    }
}

impl JointDensity for BernoulliLogistic {
    fn latent_dim(&self) -> i64 {
        self.w.size()[1]
    }

    fn device(&self) -> Device {
        self.w.device()
    }

    fn log_joint(&self, x: &Tensor, z: &Tensor) -> Tensor {
        let logits = z.matmul(&self.w.tr()) + &self.b; // [S, B, P]
        let log_lik = (x * &logits - logits.softplus()).sum_dim_intlist(-1, false, Kind::Float);
        standard_normal_log_density(z) + log_lik
    }
}

impl AmortizedProposal for BernoulliLogistic {
    type Posterior = BernoulliPosterior;

    fn encode(&self, x: &Tensor) -> BernoulliPosterior {
        let mean = (x.to_kind(Kind::Float) - &self.enc_offset).matmul(&self.enc_gain.tr());
        let log_sigma = mean.full_like(self.enc_log_sigma);
        BernoulliPosterior { mean, log_sigma }
    }

    fn base(&self, posterior: &BernoulliPosterior) -> (Tensor, Tensor) {
        (
            posterior.mean.shallow_clone(),
            posterior.log_sigma.shallow_clone(),
        )
    }
}

impl DataSimulator for BernoulliLogistic {
    fn sample_data(&self, z: &Tensor) -> Tensor {
        (z.matmul(&self.w.tr()) + &self.b).sigmoid().bernoulli()
    }
}

/// A linear-Gaussian likelihood under a mixture-of-Gaussians prior, `P` observed and `D` latent
/// dimensions, `K` components:
///
/// ```text
/// z ~ Σ_k π_k N(μ_k, diag σ_k²),   x | z ~ N(W z + b, s² I_P)
/// log p(x) = logsumexp_k [log π_k + log N(x; W μ_k + b, W diag(σ_k²) Wᵀ + s² I_P)]
/// ```
///
/// The prior is the model's own ([`JointDensity::log_prior`] and [`JointDensity::sample_prior`]
/// overridden), and its gradient is left to autograd (the trait's defaults), so that AIS from the
/// prior starts from the mixture's draws and differentiates its density as it would a learned
/// prior's.
///
/// The proposal is the exact posterior of the *moment-matched* model, the one whose prior is the
/// Gaussian `N(m̄, Σ̄)` with the mixture's mean and covariance, distorted by a [`Proposal`]:
/// `N(S (Σ̄⁻¹ m̄ + Wᵀ (x − b) / s²) + mean_shift, scale² S)` with `S = (Σ̄⁻¹ + WᵀW / s²)⁻¹`,
/// through the affine flow when `full_covariance` (as [`LinearGaussian`]'s). `Σ̄` is at least
/// every component's covariance (it adds the spread of the means), so `S` is at least every
/// posterior component's, and with `scale² > 1/2` the importance weights have finite variance.
/// [`Proposal::EXACT`] is not exact here.
#[derive(Debug)]
pub struct MogLinearGaussian {
    /// `[P, D]`, f32 on the model's device.
    w: Tensor,
    /// `[P]`.
    b: Tensor,
    sigma: f64,
    /// Normalised `log π` `[K]`, f32 on the model's device.
    log_weights: Tensor,
    /// `μ` `[K, D]`.
    means: Tensor,
    /// `log σ` `[K, D]`.
    log_sigmas: Tensor,
    /// The proposal around the moment-matched model's posterior.
    q: GaussianProposal,
    /// f64 CPU copies for the closed forms.
    w64: Tensor,
    b64: Tensor,
    log_weights64: Tensor,
    means64: Tensor,
    log_sigmas64: Tensor,
    /// The moment-matched model's posterior covariance `S`, `[D, D]`, f64, CPU.
    post_cov: Tensor,
    /// `S Wᵀ / s²`, `[D, P]`, f64, CPU.
    gain: Tensor,
    /// `S Σ̄⁻¹ m̄`, `[D]`, f64, CPU: the posterior mean is `offset + gain (x − b)`.
    offset: Tensor,
}

impl MogLinearGaussian {
    /// A model from `w` `[P, D]`, `b` `[P]`, observation noise `sigma > 0`, the mixture's
    /// unnormalised log-weights `[K]`, means `[K, D]` and log standard deviations `[K, D]` (any
    /// float kind on any device: the model computes in f32 on `w`'s device), and a proposal.
    pub fn new(
        w: &Tensor,
        b: &Tensor,
        sigma: f64,
        log_weights: &Tensor,
        means: &Tensor,
        log_sigmas: &Tensor,
        proposal: Proposal,
    ) -> Self {
        let device = w.device();
        let cpu = |t: &Tensor| t.to_kind(Kind::Double).to_device(Device::Cpu);
        let (w64, b64) = (cpu(w), cpu(b));
        let log_weights64 = cpu(log_weights).log_softmax(0, Kind::Double);
        let (means64, log_sigmas64) = (cpu(means), cpu(log_sigmas));
        // Moment matching: m̄ = Σ π μ, Σ̄ = Σ π (diag σ² + μ μᵀ) − m̄ m̄ᵀ.
        let pi = log_weights64.exp(); // [K]
        let m_bar = pi.matmul(&means64); // [D]
        let second = (means64.unsqueeze(2) * means64.unsqueeze(1)
            + (&log_sigmas64 * 2.0).exp().diag_embed(0, 1, 2))
            * pi.view([-1, 1, 1]);
        let cov_bar = second.sum_dim_intlist(0, false, Kind::Double)
            - m_bar.unsqueeze(1) * m_bar.unsqueeze(0);
        let prec_bar = ((&cov_bar + cov_bar.tr()) * 0.5).inverse();
        let s2 = sigma * sigma;
        let post_cov = (&prec_bar + w64.tr().matmul(&w64) / s2).inverse();
        let post_cov = (&post_cov + post_cov.tr()) * 0.5;
        let gain = post_cov.matmul(&w64.tr()) / s2;
        let offset = post_cov.matmul(&prec_bar).matmul(&m_bar);
        let on = |t: &Tensor| t.to_kind(Kind::Float).to_device(device);
        MogLinearGaussian {
            w: on(&w64),
            b: on(&b64),
            sigma,
            log_weights: on(&log_weights64),
            means: on(&means64),
            log_sigmas: on(&log_sigmas64),
            q: GaussianProposal::new(&post_cov, proposal, device),
            w64,
            b64,
            log_weights64,
            means64,
            log_sigmas64,
            post_cov,
            gain,
            offset,
        }
    }

    /// A model with `W` entries `N(0, w_scale²)`, `b` entries `N(0, 1)`, and `k` components with
    /// means `N(0, spread²)`, standard deviations uniform in `[0.5, 1]` and log-weights
    /// `N(0, 1)` before normalisation, drawn from tch's generator seeded with `seed`, on the CPU.
    #[allow(clippy::too_many_arguments)]
    pub fn random(
        p: i64,
        d: i64,
        k: i64,
        w_scale: f64,
        spread: f64,
        sigma: f64,
        seed: i64,
        proposal: Proposal,
    ) -> Self {
        let (w, b, lw, mu, ls) = {
            let _rng = crate::rng_guard();
            tch::manual_seed(seed);
            let opts = (Kind::Double, Device::Cpu);
            (
                Tensor::randn([p, d], opts) * w_scale,
                Tensor::randn([p], opts),
                Tensor::randn([k], opts),
                Tensor::randn([k, d], opts) * spread,
                (Tensor::rand([k, d], opts) * 0.5 + 0.5).log(),
            )
        };
        Self::new(&w, &b, sigma, &lw, &mu, &ls, proposal)
    }

    /// The mixture's normalised log-weights `[K]`, means `[K, D]` and log standard deviations
    /// `[K, D]`, f64, CPU.
    pub fn prior_parameters(&self) -> (Tensor, Tensor, Tensor) {
        (
            self.log_weights64.shallow_clone(),
            self.means64.shallow_clone(),
            self.log_sigmas64.shallow_clone(),
        )
    }

    /// The moment-matched model's posterior mean (the proposal's centre before `mean_shift`),
    /// `[B, D]`, f64, CPU.
    pub fn posterior_mean(&self, x: &Tensor) -> Tensor {
        let r = x.to_kind(Kind::Double).to_device(Device::Cpu) - &self.b64;
        r.matmul(&self.gain.tr()) + &self.offset
    }

    /// The moment-matched model's posterior covariance `S`, `[D, D]`, f64, CPU.
    pub fn posterior_covariance(&self) -> Tensor {
        self.post_cov.shallow_clone()
    }

    /// Exact `log p(x)` for `x` `[B, P]`, nats: the mixture of the `K` Gaussian marginals.
    pub fn log_px(&self, x: &Tensor) -> Vec<f64> {
        let p = self.w64.size()[0];
        let per: Vec<Tensor> = (0..self.means64.size()[0])
            .map(|k| {
                let var = (self.log_sigmas64.get(k) * 2.0).exp(); // [D]
                let cov = (&self.w64 * var.unsqueeze(0)).matmul(&self.w64.tr())
                    + Tensor::eye(p, (Kind::Double, Device::Cpu)) * (self.sigma * self.sigma);
                let mean = self.w64.matmul(&self.means64.get(k)) + &self.b64; // [P]
                linear_likelihood::gaussian_log_density(x, &mean, &cov) + self.log_weights64.get(k)
            })
            .collect();
        let lp = Tensor::stack(&per, 0).logsumexp([0], false);
        Vec::<f64>::try_from(&lp).expect("a [B] f64 tensor")
    }

    /// `log p(x)` for `x` `[B, P]` by the midpoint rule on `points^D` nodes over
    /// `[−half_width, half_width]^D`, in f64, nats: an independent check of
    /// [`log_px`](Self::log_px).
    ///
    /// Errors with [`Error::Unsupported`] for more than 2 latent dimensions.
    pub fn log_px_quadrature(&self, x: &Tensor, half_width: f64, points: i64) -> Result<Vec<f64>> {
        let d = self.w64.size()[1];
        if d > 2 {
            return Err(Error::Unsupported(format!(
                "quadrature over {d} latent dimensions (at most 2)"
            )));
        }
        let h = 2.0 * half_width / points as f64;
        let opts = (Kind::Double, Device::Cpu);
        let axis = Tensor::arange(points, opts) * h + (h / 2.0 - half_width);
        let grid = if d == 1 {
            axis.unsqueeze(1)
        } else {
            let mesh = Tensor::meshgrid_indexing(&[&axis, &axis], "ij");
            Tensor::stack(&[mesh[0].reshape([-1]), mesh[1].reshape([-1])], 1)
        }; // [G, D]
        let log_prior =
            (diag_normal_log_density(&grid.unsqueeze(1), &self.means64, &self.log_sigmas64)
                + &self.log_weights64)
                .logsumexp([-1], false); // [G]
        let x64 = x.to_kind(Kind::Double).to_device(Device::Cpu); // [B, P]
        let mean = grid.matmul(&self.w64.tr()) + &self.b64; // [G, P]
        let s2 = self.sigma * self.sigma;
        let p = self.w64.size()[0] as f64;
        // |x − mean|² = |x|² − 2 x·mean + |mean|², [B, G].
        let sq = x64.square().sum_dim_intlist(1, true, Kind::Double) - x64.matmul(&mean.tr()) * 2.0
            + mean.square().sum_dim_intlist(1, false, Kind::Double);
        let log_lik = sq * (-0.5 / s2) - 0.5 * p * (LN_2PI + s2.ln());
        let lp = (log_lik + log_prior).logsumexp([1], false) + d as f64 * h.ln();
        Ok(Vec::<f64>::try_from(&lp)?)
    }
}

impl JointDensity for MogLinearGaussian {
    fn latent_dim(&self) -> i64 {
        self.w.size()[1]
    }

    fn device(&self) -> Device {
        self.w.device()
    }

    fn log_joint(&self, x: &Tensor, z: &Tensor) -> Tensor {
        self.log_prior(z) + linear_likelihood::log_likelihood(&self.w, &self.b, self.sigma, x, z)
    }

    /// `logsumexp_k [log π_k + log N(z; μ_k, diag σ_k²)]`, `[..., D]` to `[...]`, nats.
    fn log_prior(&self, z: &Tensor) -> Tensor {
        (diag_normal_log_density(&z.unsqueeze(-2), &self.means, &self.log_sigmas)
            + &self.log_weights)
            .logsumexp([-1], false)
    }

    /// A component `k ~ Categorical(π)` per draw, then `μ_k + σ_k ε`, `ε ~ N(0, I)`.
    fn sample_prior(&self, n: i64) -> Tensor {
        let k = self.log_weights.exp().multinomial(n, true);
        let mu = self.means.index_select(0, &k);
        &mu + self.log_sigmas.index_select(0, &k).exp() * mu.randn_like()
    }
}

impl AmortizedProposal for MogLinearGaussian {
    type Posterior = LinearGaussianPosterior;

    fn encode(&self, x: &Tensor) -> LinearGaussianPosterior {
        self.q.encode(self.posterior_mean(x), self.device())
    }

    fn base(&self, posterior: &LinearGaussianPosterior) -> (Tensor, Tensor) {
        self.q.base(posterior)
    }

    fn flow(&self, posterior: &LinearGaussianPosterior, z0: &Tensor) -> (Tensor, Tensor) {
        self.q.flow(posterior, z0)
    }
}

impl DataSimulator for MogLinearGaussian {
    fn sample_data(&self, z: &Tensor) -> Tensor {
        linear_likelihood::sample(&self.w, &self.b, self.sigma, z)
    }
}
