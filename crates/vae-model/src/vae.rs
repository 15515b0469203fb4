//! The flow-VAE: encoder, Gaussian base with the log-std offset, context predictor, IAF stack,
//! prior (standard normal as in ORIGINAL §2, or another of PRIORS §1) and Bernoulli decoder.

use tch::{nn, Kind, Reduction, Tensor};
use vae_eval::model::LN_2PI;
use vae_flows::{ContextPredictor, Flow, FrozenFlow};
use vae_nets::{Decoder, Encoder, FrozenDecoder};

use crate::config::{Likelihood, ModelConfig};
use crate::error::Result;
use crate::prior::{LatentPrior, Prior, PriorDensity};

/// A flow-VAE built under one `nn::Path` (`enc`, `ctx`, `flow`, `dec` and `prior` below it).
#[derive(Debug)]
pub struct Vae {
    pub(crate) encoder: Box<dyn Encoder>,
    pub(crate) context: Option<ContextPredictor>,
    pub(crate) flow: Option<Flow>,
    pub(crate) decoder: Box<dyn Decoder>,
    prior: Prior,
    cfg: ModelConfig,
    /// The variables, when this VAE owns them ([`Vae::load`]); `None` when it was built under
    /// a caller's `nn::Path`, whose `VarStore` the caller keeps.
    store: Option<nn::VarStore>,
}

/// The per-example terms of the negative ELBO for one posterior sample.
#[derive(Debug)]
pub struct ElboTerms {
    /// Reconstruction loss `−log p(x | zT)`, shape `[B]`, nats.
    pub rec: Tensor,
    /// Single-sample KL `log q(zT | x) − log p(zT)`, shape `[B]`, nats (ORIGINAL §4.2).
    pub kl: Tensor,
}

impl ElboTerms {
    /// The negative ELBO `rec + kl`, `[B]`, nats.
    pub fn neg_elbo(&self) -> Tensor {
        &self.rec + &self.kl
    }
}

impl Vae {
    /// Builds the VAE described by `cfg` under `p`, validating every part.
    pub fn new(p: &nn::Path, cfg: &ModelConfig) -> Result<Vae> {
        let bn = cfg.batch_norm;
        let encoder = vae_nets::build_encoder(
            &(p / "enc"),
            &cfg.encoder,
            cfg.latent,
            cfg.log_sigma_offset,
            bn.nets(),
        )?;
        let decoder = vae_nets::build_decoder(&(p / "dec"), &cfg.decoder, cfg.latent, bn.nets())?;
        let flow = match &cfg.flow {
            Some(f) => Some(Flow::new(&(p / "flow"), cfg.latent, f, bn.flows())?),
            None => None,
        };
        // The context predictor exists only when a flow consumes a context (fixes D21).
        let context = match flow.as_ref().and_then(Flow::context_size) {
            Some(c) => Some(ContextPredictor::new(
                &(p / "ctx"),
                encoder.hidden_size(),
                c,
                bn.flows(),
            )?),
            None => None,
        };
        // Last, so that the other parts draw the same initial values whatever the prior.
        let prior = Prior::new(&(p / "prior"), cfg.latent, &cfg.prior)?;
        Ok(Vae {
            encoder,
            context,
            flow,
            decoder,
            prior,
            cfg: cfg.clone(),
            store: None,
        })
    }

    /// The VAE of the checkpoint at `path` on `device`, ready for inference: weights and BN
    /// statistics loaded, no gradients on its variables, no optimizer, no data
    /// ([`Checkpoint::load_vae`](crate::Checkpoint::load_vae); use
    /// [`Checkpoint::read`](crate::Checkpoint::read) to see the config and training state too).
    pub fn load(path: &std::path::Path, device: tch::Device) -> Result<Vae> {
        crate::checkpoint::Checkpoint::read(path)?.load_vae(device)
    }

    /// This VAE, keeping `vs` (the store it was built under) alive with it.
    pub(crate) fn owning(mut self, vs: nn::VarStore) -> Vae {
        self.store = Some(vs);
        self
    }

    /// The variables, when this VAE owns them (a VAE from [`Vae::load`]).
    pub fn var_store(&self) -> Option<&nn::VarStore> {
        self.store.as_ref()
    }

    /// The architecture this VAE was built from.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Latent size `D`.
    pub fn latent(&self) -> i64 {
        self.cfg.latent
    }

    /// Encoder pass: `(mu, log_sigma, context)` for images `x` `[B, 1, 28, 28]`; each `[B, ·]`.
    pub fn encode(&self, x: &Tensor, train: bool) -> (Tensor, Tensor, Option<Tensor>) {
        let out = self.encoder.forward_t(x, train);
        let ctx = self.context.as_ref().map(|c| c.forward_t(&out.h, train));
        (out.mu, out.log_sigma, ctx)
    }

    /// The flow `z0 → zT` with `log |det ∂zT/∂z0|` `[B]`; the identity without a flow.
    /// `z0` is `[B, D]` and `context` `[B, C]` (rows paired).
    pub fn flow(&self, z0: &Tensor, context: Option<&Tensor>, train: bool) -> (Tensor, Tensor) {
        match &self.flow {
            Some(f) => f.forward_t(z0, context, train),
            None => (
                z0.shallow_clone(),
                z0.zeros_like().sum_dim_intlist(-1, false, z0.kind()),
            ),
        }
    }

    /// The prior's parameters (PRIORS §1).
    pub fn prior(&self) -> &Prior {
        &self.prior
    }

    /// The prior's density with the current parameters ([`Prior::density`]). The VampPrior runs
    /// its pseudo-inputs through the encoder in evaluation mode, also while training (PRIORS
    /// §4.2): batch norm then uses its running statistics, so the prior neither mixes the
    /// pseudo-inputs' batch statistics into the data's nor depends on the batch, and it is the
    /// same density in training and in evaluation. Gradients reach the pseudo-inputs and the
    /// encoder's weights when they are on.
    pub fn prior_density(&self) -> PriorDensity<'_> {
        let encoder = |u: &Tensor| {
            let out = self.encoder.forward_t(u, false);
            (out.mu, out.log_sigma)
        };
        self.prior.density(&encoder)
    }

    /// Decoder logits `[B, 1, 28, 28]` for codes `z` `[B, D]`.
    pub fn decode(&self, z: &Tensor, train: bool) -> Tensor {
        self.decoder.forward_t(z, train)
    }

    /// The flow's evaluation-mode function with the current parameters and its batch norms
    /// folded ([`Flow::freeze`]); `None` without a flow (use [`flow`](Self::flow)).
    pub fn freeze_flow(&self) -> Option<FrozenFlow<'_>> {
        self.flow.as_ref().map(Flow::freeze)
    }

    /// The decoder's evaluation-mode function with the current parameters
    /// ([`Decoder::freeze`]): what the estimators call thousands of times on a fixed model.
    pub fn freeze_decoder(&self) -> Box<dyn FrozenDecoder + '_> {
        self.decoder.freeze()
    }

    /// `−log p(x | z)` per example from logits: `[B]`, nats, in the configured form.
    pub fn reconstruction_loss(&self, logits: &Tensor, x: &Tensor) -> Tensor {
        let b = logits.size()[0];
        match self.cfg.likelihood {
            Likelihood::Logits => logits
                .binary_cross_entropy_with_logits::<Tensor>(x, None, None, Reduction::None)
                .view([b, -1])
                .sum_dim_intlist(-1, false, Kind::Float),
            Likelihood::ClippedProbabilities => {
                // ORIGINAL §4.1, verbatim: lik = 1 − x + (2x − 1) p, clipped at 1e-10 (the upper
                // clip 1 − 1e-10 rounds to 1 in f32).
                let p = logits.sigmoid();
                let lik = (x * 2.0 - 1.0) * p - x + 1.0;
                -lik.clamp(1e-10, 1.0 - 1e-10)
                    .log()
                    .view([b, -1])
                    .sum_dim_intlist(-1, false, Kind::Float)
            }
        }
    }

    /// One-sample ELBO terms for images `x` `[B, 1, 28, 28]`, with `eps ~ N(0, I)` drawn from
    /// tch's global RNG (ORIGINAL §4.2).
    pub fn elbo_terms(&self, x: &Tensor, train: bool) -> ElboTerms {
        let b = x.size()[0];
        let eps = Tensor::randn([b, self.cfg.latent], (Kind::Float, x.device()));
        self.elbo_terms_with_noise(x, &eps, train)
    }

    /// [`elbo_terms`](Self::elbo_terms) with the base noise `eps` `[B, D]` given.
    pub fn elbo_terms_with_noise(&self, x: &Tensor, eps: &Tensor, train: bool) -> ElboTerms {
        let (mu, log_sigma, ctx) = self.encode(x, train);
        let z0 = &mu + log_sigma.exp() * eps;
        let (zt, log_det) = self.flow(&z0, ctx.as_ref(), train);
        let logits = self.decode(&zt, train);
        let rec = self.reconstruction_loss(&logits, x);
        // log q0(z0) = Σ −log_sigma − eps²/2 − ½ log 2π. For the standard normal prior the
        // −½ log 2π terms cancel against log p(zT) = Σ −zT²/2 − ½ log 2π and are left out of both,
        // as the original does; any other prior's log-density carries its own constants, so q0
        // gets all of its own (PRIORS §6.1).
        let log_q0 = (-&log_sigma - eps.square() * 0.5).sum_dim_intlist(-1, false, Kind::Float);
        let prior = self.prior_density();
        let (log_q0, log_p) = if prior.is_standard_normal() {
            let log_p = (zt.square() * -0.5).sum_dim_intlist(-1, false, Kind::Float);
            (log_q0, log_p)
        } else {
            let d = self.cfg.latent as f64;
            (log_q0 - 0.5 * LN_2PI * d, prior.log_prob(&zt))
        };
        ElboTerms {
            rec,
            kl: log_q0 - log_det - log_p,
        }
    }

    /// Bernoulli means `σ(ℓ)` `[B, 1, 28, 28]` of one posterior sample per image, eval mode.
    pub fn reconstruct(&self, x: &Tensor) -> Tensor {
        tch::no_grad(|| {
            let (mu, log_sigma, ctx) = self.encode(x, false);
            let z0 = &mu + log_sigma.exp() * mu.randn_like();
            let (zt, _) = self.flow(&z0, ctx.as_ref(), false);
            self.decode(&zt, false).sigmoid()
        })
    }

    /// Bernoulli means of `n` prior samples `z ~ p(z)` `[n, 1, 28, 28]` (the configured prior's
    /// sampler, [`LatentPrior::sample`]), decoded by the trained decoder in eval mode (fixes D7).
    /// `device` is where the VAE's variables live.
    pub fn sample_means(&self, n: i64, device: tch::Device) -> Tensor {
        tch::no_grad(|| {
            let prior = self.prior_density();
            let z = if prior.is_standard_normal() {
                Tensor::randn([n, self.cfg.latent], (Kind::Float, device))
            } else {
                prior.sample(n).to_device(device)
            };
            self.decode(&z, false).sigmoid()
        })
    }
}
