//! The model interface the estimators need, in three parts so that a model implements only
//! what its estimator uses (a missing part is a compile error naming the trait):
//!
//! - [`JointDensity`]: `log p(x, z)`, `log p(z)`, their gradients in `z`, prior draws. AIS and
//!   BDMC from the prior ([`crate::ais_from_prior`], [`crate::bdmc_from_prior`]) need no more.
//! - [`AmortizedProposal`]: the amortised `q(z | x)` (encoder, Gaussian base, flow): importance
//!   sampling, and AIS or BDMC that may start from the encoder ([`crate::ais()`],
//!   [`crate::bdmc()`]).
//! - [`DataSimulator`]: `x ~ p(x | z)`, for [`crate::simulate`] (BDMC's data).
//!
//! [`LatentModel`] is all three, implemented automatically for any type that has them.
//!
//! A model with a density alone (here `z ~ N(0, 1)`, `x | z ~ N(z, 1)`, so `p(x) = N(x; 0, 2)`)
//! gets AIS from the prior:
//!
//! ```
//! use tch::{Device, Tensor};
//! use vae_eval::model::{standard_normal_log_density, JointDensity};
//! use vae_eval::{ais_from_prior, AisConfig};
//!
//! struct Shift;
//! impl JointDensity for Shift {
//!     fn latent_dim(&self) -> i64 { 1 }
//!     fn device(&self) -> Device { Device::Cpu }
//!     fn log_joint(&self, x: &Tensor, z: &Tensor) -> Tensor {
//!         // x [B, 1] against z [S, B, 1]: log p(z) + log N(x; z, 1).
//!         standard_normal_log_density(z) + standard_normal_log_density(&(x.unsqueeze(0) - z))
//!     }
//! }
//! let x = Tensor::from_slice(&[0.5f32]).view([1, 1]);
//! let r = ais_from_prior(&Shift, &x, &AisConfig::default(), &mut |_, _| {}).unwrap();
//! let exact = -0.5 * (2.0 * std::f64::consts::PI * 2.0).ln() - 0.25 * 0.25;
//! let se = r.log_px_stderr[0].unwrap();
//! assert!((r.log_px[0] - exact).abs() < 4.0 * se, "{} ± {se} vs {exact}", r.log_px[0]);
//! ```
//!
//! Importance sampling needs a proposal, so the same model does not compile there:
//!
//! ```compile_fail
//! # use tch::{Device, Tensor};
//! # use vae_eval::model::JointDensity;
//! # struct Shift;
//! # impl JointDensity for Shift {
//! #     fn latent_dim(&self) -> i64 { 1 }
//! #     fn device(&self) -> Device { Device::Cpu }
//! #     fn log_joint(&self, x: &Tensor, z: &Tensor) -> Tensor { unimplemented!() }
//! # }
//! let x = Tensor::zeros([1, 1], (tch::Kind::Float, Device::Cpu));
//! // error[E0277]: the trait bound `Shift: AmortizedProposal` is not satisfied
//! vae_eval::importance_sampling(&Shift, &x, &Default::default(), &mut |_, _| {});
//! ```
//!
//! # Conventions
//!
//! - `B` is the number of examples in a call, `D` the latent dimension ([`JointDensity::latent_dim`]),
//!   `S` the number of samples (IS) or chains (AIS) per example.
//! - Latents that go with a batch of examples have **rank 3, `[S, B, D]`, sample-major**: row
//!   `(s, b)` belongs to sample (or chain) `s` of example `b`, and pairs with `x[b]`. Flattened to
//!   `[S * B, D]` this is the original's chain-major layout `r = s * B + b` (ORIGINAL §5.2), so a
//!   model may `view` it and tile `x` with `x.repeat([S, 1, ...])`, or better, broadcast
//!   `x.unsqueeze(0)` against `[S, B, ...]` outputs.
//! - Every log-density is in **nats**, per row, summed over latent and data dimensions, with all
//!   normalising constants included (`½ log 2π` terms), so that `log p(x)` estimates are
//!   comparable with other papers.
//! - Latents and model outputs are in [`JointDensity::kind`] (f32 by default) on
//!   [`JointDensity::device`]; the estimators accumulate log-weights in f64 themselves.
//!
//! # Who does what about modes and gradients
//!
//! - **Inference mode is the implementor's job.** The trait has no `train` flag: every method must
//!   evaluate the networks as with `train = false` (batch norm with running statistics, no
//!   dropout). Then one example's result does not depend on the others in the call, which the
//!   chunking of the estimators relies on.
//! - **`no_grad` is the estimators' job.** Every estimator runs inside [`tch::no_grad`] and turns
//!   gradient tracking back on ([`tch::with_grad`]) only around the calls that differentiate with
//!   respect to `z`: [`JointDensity::log_joint_and_grad`], [`JointDensity::log_prior_and_grad`], and,
//!   when annealing in the flow's base space, [`AmortizedProposal::flow`] and
//!   [`JointDensity::log_joint`] composed. Implementations need not call either. Only gradients with
//!   respect to `z` are computed (`torch.autograd.grad` semantics): the parameters' `.grad` are never
//!   touched, and nothing the estimators return carries a graph.
//! - The estimators call [`AmortizedProposal::encode`] under `no_grad`, once per chunk of examples; the
//!   posterior handle therefore holds plain tensors.

use tch::{Device, Kind, Tensor};

/// `ln(2π)`.
pub const LN_2PI: f64 = 1.837_877_066_409_345_3;

/// The density a latent-variable model `p(x, z) = p(z) p(x | z)` defines, as the estimators
/// see it: the target of AIS and the numerator of importance weights.
///
/// See the [module documentation](self) for the shape conventions, units and the split of
/// responsibilities over inference mode and `no_grad`. Methods return tensors and may panic on
/// internal failures, as tch's `forward` does; the estimators check the shapes they get back and
/// report mismatches as [`crate::Error::Shape`].
pub trait JointDensity {
    /// The latent dimension `D`.
    fn latent_dim(&self) -> i64;

    /// The device on which the estimators create noise, momenta and latents.
    fn device(&self) -> Device;

    /// The floating-point kind of latents (and of the noise the estimators draw). Default f32.
    fn kind(&self) -> Kind {
        Kind::Float
    }

    /// `log p(x, z) = log p(z) + log p(x | z)`, per row, nats.
    ///
    /// - `x`: `[B, ...]`, a batch of examples (the trailing shape is the model's business).
    /// - `z`: `[S, B, D]`, `S` latents per example; row `(s, b)` goes with `x[b]`.
    /// - returns `[S, B]`.
    ///
    /// Must be differentiable with respect to `z` (the default [`log_joint_and_grad`] and
    /// annealing in the base space use autograd through it).
    ///
    /// [`log_joint_and_grad`]: Self::log_joint_and_grad
    fn log_joint(&self, x: &Tensor, z: &Tensor) -> Tensor;

    /// `log p(x, z)` and its gradient with respect to `z`.
    ///
    /// Shapes as [`log_joint`](Self::log_joint); the gradient is `[S, B, D]`, nats per unit of `z`.
    /// Both results are detached. The default runs autograd through `log_joint` (under
    /// [`tch::with_grad`], whatever the caller's mode); override it with a closed form where one
    /// exists.
    fn log_joint_and_grad(&self, x: &Tensor, z: &Tensor) -> (Tensor, Tensor) {
        value_and_grad(z, |z| self.log_joint(x, z))
    }

    /// `log p(z)`, the prior, summed over the last dimension: `z` `[..., D]` gives `[...]`, nats.
    ///
    /// Default: the standard normal `N(0, I)`, `Σ_d (−z_d²/2 − ½ ln 2π)`. A model that overrides
    /// this must override [`sample_prior`](Self::sample_prior) to match.
    fn log_prior(&self, z: &Tensor) -> Tensor {
        standard_normal_log_density(z)
    }

    /// `log p(z)` and its gradient, shapes as [`log_prior`](Self::log_prior) and `z`; detached.
    /// Default: autograd through [`log_prior`](Self::log_prior).
    fn log_prior_and_grad(&self, z: &Tensor) -> (Tensor, Tensor) {
        value_and_grad(z, |z| self.log_prior(z))
    }

    /// `∇ log p(z)` alone, shaped as `z`; detached. AIS asks for it at every leapfrog step but
    /// the last, where the prior's value would go unused. Default: the gradient of
    /// [`log_prior_and_grad`](Self::log_prior_and_grad).
    fn grad_log_prior(&self, z: &Tensor) -> Tensor {
        self.log_prior_and_grad(z).1
    }

    /// `n` draws from the prior, `[n, D]`, using tch's global RNG. Default: `N(0, I)`.
    fn sample_prior(&self, n: i64) -> Tensor {
        Tensor::randn([n, self.latent_dim()], (self.kind(), self.device()))
    }

    /// Bytes of activations that one row (one example-sample pair) of a model call holds at
    /// its peak, if the model can estimate it. Importance sampling sizes its calls from it
    /// when [`IsConfig::max_rows`](crate::IsConfig::max_rows) is `None`; the default, `None`,
    /// gives [`IS_ROWS_UNKNOWN_MODEL`](crate::importance::IS_ROWS_UNKNOWN_MODEL) rows.
    fn activation_bytes_per_row(&self) -> Option<u64> {
        None
    }
}

/// Data simulation `x ~ p(x | z)`: what BDMC needs to make data whose latents are known.
pub trait DataSimulator: JointDensity {
    /// One draw `x ~ p(x | z)` per row of `z` `[n, D]`: returns `[n, ...]`, shaped like the
    /// examples `log_joint` takes. Uses tch's global RNG.
    fn sample_data(&self, z: &Tensor) -> Tensor;
}

/// A reparameterised, amortised proposal `q(z | x)`: what importance sampling needs, and AIS when
/// it starts from the encoder.
///
/// The proposal is a Gaussian base `q0(z0 | x) = N(mu, diag sigma²)` followed by an invertible map
/// `z = f(z0; x)` (a normalising flow, the identity by default), so that
/// `log q(z | x) = log q0(z0 | x) − log |det ∂f/∂z0|`.
pub trait AmortizedProposal: JointDensity {
    /// What [`encode`](Self::encode) computes once per batch of examples and the proposal methods
    /// reuse for every sample: for a VAE, the encoder's `mu`, `log_sigma` and flow context, each
    /// `[B, ...]`. Opaque to the estimators.
    type Posterior;

    /// Runs the inference network once on `x` `[B, ...]` and returns what the proposal methods
    /// need. Called under `no_grad`; must be in inference mode.
    fn encode(&self, x: &Tensor) -> Self::Posterior;

    /// The Gaussian base `q0(z0 | x) = N(mu, diag sigma²)` of the proposal: `(mu, log_sigma)`, each
    /// `[B, D]`, where `log_sigma` is the natural log of the standard deviation (for the original's
    /// encoder, `log_std_raw − 3`, ORIGINAL §3.1).
    fn base(&self, posterior: &Self::Posterior) -> (Tensor, Tensor);

    /// The flow `z = f(z0; x)` from the base space to the latent space, with its log-determinant.
    ///
    /// - `z0`: `[S, B, D]`, row `(s, b)` uses the context of example `b` of `posterior`.
    /// - returns `(z, log_det)`: `z` `[S, B, D]` and `log |det ∂z/∂z0|` `[S, B]`, nats.
    ///
    /// Must be differentiable with respect to `z0` (annealing in the base space,
    /// [`crate::AisStart::FlowPosterior`], uses autograd through it). Default: the identity, with
    /// log-det zero.
    fn flow(&self, posterior: &Self::Posterior, z0: &Tensor) -> (Tensor, Tensor) {
        let _ = posterior;
        let size = z0.size();
        (
            z0.shallow_clone(),
            Tensor::zeros(&size[..size.len() - 1], (z0.kind(), z0.device())),
        )
    }

    /// A reparameterised proposal draw from standard-normal noise, with its log-density.
    ///
    /// - `eps`: `[S, B, D]`, standard normal noise (drawn by the estimator, so that draws do not
    ///   depend on how the work is chunked).
    /// - returns `(z, log_q)`: `z = f(mu + sigma ⊙ eps)` `[S, B, D]` and `log q(z | x)` `[S, B]`,
    ///   nats, `= Σ_d (−eps_d²/2 − log_sigma_d − ½ ln 2π) − log |det ∂f/∂z0|`.
    ///
    /// The default composes [`base`](Self::base) and [`flow`](Self::flow); override it only to
    /// fuse the two.
    fn sample_posterior(&self, posterior: &Self::Posterior, eps: &Tensor) -> (Tensor, Tensor) {
        let (mu, log_sigma) = self.base(posterior);
        let z0 = &mu + log_sigma.exp() * eps;
        let log_q0 = (eps.square() * -0.5 - &log_sigma - 0.5 * LN_2PI).sum_dim_intlist(
            -1,
            false,
            eps.kind(),
        );
        let (z, log_det) = self.flow(posterior, &z0);
        (z, log_q0 - log_det)
    }
}

/// A model every estimator can use: [`JointDensity`], [`AmortizedProposal`] and
/// [`DataSimulator`] together.
/// Implemented automatically; implement the three parts instead.
pub trait LatentModel: JointDensity + AmortizedProposal + DataSimulator {}

impl<M: JointDensity + AmortizedProposal + DataSimulator + ?Sized> LatentModel for M {}

/// `Σ_d (−z_d²/2 − ½ ln 2π)` over the last dimension: `[..., D]` gives `[...]`, nats.
pub fn standard_normal_log_density(z: &Tensor) -> Tensor {
    let d = *z.size().last().expect("z has at least one dimension") as f64;
    z.square().sum_dim_intlist(-1, false, z.kind()) * -0.5 - 0.5 * LN_2PI * d
}

/// `log N(z; mu, diag exp(log_sigma)²)` summed over the last dimension, nats. `z` `[..., D]`;
/// `mu` and `log_sigma` broadcast against it; returns `[...]`.
pub fn diag_normal_log_density(z: &Tensor, mu: &Tensor, log_sigma: &Tensor) -> Tensor {
    let u = (z - mu) * (-log_sigma).exp();
    (u.square() * -0.5 - log_sigma - 0.5 * LN_2PI).sum_dim_intlist(-1, false, z.kind())
}

/// Value and gradient of a per-row function of `z`, by autograd, whatever the caller's grad mode.
///
/// `f` maps `z` (any shape) to per-row values; the gradient is that of their sum, so it is the
/// per-row gradient when rows do not interact (they must not: inference mode). Both results are
/// detached, and only `z`'s gradient is computed (the parameters' `.grad` are left alone).
pub fn value_and_grad(z: &Tensor, f: impl FnOnce(&Tensor) -> Tensor) -> (Tensor, Tensor) {
    tch::with_grad(|| {
        let z = z.detach().set_requires_grad(true);
        let value = f(&z);
        let total = value.sum(value.kind());
        let mut grads = Tensor::run_backward(&[&total], &[&z], false, false);
        let grad = grads.pop().expect("one input gives one gradient");
        (value.detach(), grad.detach())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytic::{LinearGaussian, Proposal};

    fn close(a: &Tensor, b: &Tensor, tol: f64) -> bool {
        (a - b).abs().max().double_value(&[]) < tol
    }

    #[test]
    fn analytic_gradient_matches_autograd() {
        let model = LinearGaussian::random(5, 3, 1.0, 0.5, 1, Proposal::EXACT);
        // Draws from tch's generator: keep out of the estimator tests' way.
        let _rng = crate::rng_guard();
        let x = Tensor::randn([4, 5], (Kind::Float, Device::Cpu));
        let z = Tensor::randn([2, 4, 3], (Kind::Float, Device::Cpu));
        let (v1, g1) = model.log_joint_and_grad(&x, &z);
        let (v2, g2) = tch::no_grad(|| value_and_grad(&z, |z| model.log_joint(&x, z)));
        assert!(close(&v1, &v2, 1e-4));
        assert!(close(&g1, &g2, 1e-3));
        assert!(!g2.requires_grad() && !v2.requires_grad());
        // The default prior gradient is −z.
        let (lp, gp) = model.log_prior_and_grad(&z);
        assert!(close(&gp, &(-&z), 1e-6));
        assert!(close(&lp, &standard_normal_log_density(&z), 1e-6));
    }

    #[test]
    fn densities_match_closed_forms() {
        let z = Tensor::from_slice(&[0.0f64, 1.0]).view([1, 2]);
        let lp = standard_normal_log_density(&z).double_value(&[0]);
        assert!((lp - (-0.5 - LN_2PI)).abs() < 1e-12);
        let mu = Tensor::from_slice(&[1.0f64, 1.0]);
        let ls = Tensor::from_slice(&[0.0f64, 2f64.ln()]);
        let ld = diag_normal_log_density(&z, &mu, &ls).double_value(&[0]);
        assert!((ld - (-0.5 - LN_2PI - 2f64.ln())).abs() < 1e-12);
    }

    /// The default `sample_posterior` gives the density of the base pushed through the flow.
    #[test]
    fn default_sample_posterior_log_q() {
        let proposal = Proposal {
            mean_shift: 0.2,
            scale: 1.3,
            full_covariance: true,
        };
        let model = LinearGaussian::random(5, 3, 1.0, 0.5, 1, proposal);
        let _rng = crate::rng_guard();
        let x = Tensor::randn([4, 5], (Kind::Float, Device::Cpu));
        let post = model.encode(&x);
        let eps = Tensor::randn([6, 4, 3], (Kind::Float, Device::Cpu));
        let (z, log_q) = model.sample_posterior(&post, &eps);
        // q = N(m + shift, scale² Σ): evaluate it directly in f64.
        let m = model.posterior_mean(&x) + 0.2;
        let cov = model.posterior_covariance() * 1.69;
        let chol = cov.linalg_cholesky(false);
        let r = (z.to_kind(Kind::Double) - m).unsqueeze(-1); // [6, 4, 3, 1]
        let u = Tensor::linalg_solve_triangular(&chol, &r, false, true, false).squeeze_dim(-1);
        let expected = u.square().sum_dim_intlist(-1, false, Kind::Double) * -0.5
            - chol.diagonal(0, 0, 1).log().sum(Kind::Double)
            - 1.5 * LN_2PI;
        assert!(close(&log_q.to_kind(Kind::Double), &expected, 1e-4));
    }
}
