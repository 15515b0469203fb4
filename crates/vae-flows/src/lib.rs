//! Inverse autoregressive flows (IAF) for flow-VAE posteriors, on tch: the original's cMADE masks,
//! conditional MADEs with batch norm and context, gated and shift-only IAF steps, and the
//! encoder-side context predictor (ORIGINAL §3.1, §3.4). This crate knows nothing about datasets,
//! encoders or decoders.
//!
//! # Brief overview
//!
//! - [`made_masks`] builds the block-degree masks of one cMADE for widths `[D, h1, .., D]` and a
//!   [`MaskOrder`], as plain-Rust [`Mask`]es, checking divisibility and the autoregressive
//!   property ([`connectivity`] gives the latent-to-latent product).
//! - [`Cmade`] maps `z` (and a context) to the shift `m` and gate pre-activation `s`, through
//!   [`MaskedLinear`] layers with BN and ELU; [`ContextMode`] picks SNF-like or linear context.
//! - [`IafStep`] applies `z' = σ(s) z + (1 − σ(s)) m` with log-det `Σ log σ(s)`, or the shift-only
//!   `z' = z + m`.
//! - [`Flow`] stacks [`FlowConfig::layers`] steps with alternating order (or identity layers) and
//!   returns `(z', log_det [B])`; [`Flow::inverse`] undoes it in eval mode (`layers × D` cMADE
//!   passes) and [`Flow::inverse_with_log_det`] also gives the log-det for `log q(z)` at any `z`.
//! - [`ContextPredictor`] computes `context = BN(W h_last)` on the encoder side.
//! - [`FlowConfig`] and [`BatchNormSettings`] hold the settings, with the original's defaults.
//!
//! **Architecture Invariants:** MADE masks make `∂out_b/∂z_a = 0` for every `a` at or after `b`
//! in the layer's order; the log-det is per example, shape `[batch]`, in nats; masked-out weights
//! never reach the output (the mask is applied on every forward pass).
//!
//! ```
//! use tch::{nn, Device, Kind, Tensor};
//! use vae_flows::{BatchNormSettings, Flow, FlowConfig};
//!
//! let vs = nn::VarStore::new(Device::Cpu);
//! // A small flow: D = 4, two layers of cMADE [8], no context.
//! let cfg = FlowConfig { layers: 2, hidden: vec![8], context_size: 0, ..Default::default() };
//! let flow = Flow::new(&(vs.root() / "flow"), 4, &cfg, BatchNormSettings::default()).unwrap();
//! assert_eq!(flow.context_size(), None);
//!
//! let z = Tensor::randn([3, 4], (Kind::Float, Device::Cpu));
//! let (z_out, log_det) = flow.forward_t(&z, None, false);
//! assert_eq!(z_out.size(), [3, 4]);
//! assert_eq!(log_det.size(), [3]);
//! // Each gate starts near σ(3), so the log-det is negative.
//! assert!(log_det.max().double_value(&[]) < 0.0);
//! // The inverse recovers z.
//! let back = flow.inverse(&z_out, None);
//! assert!(back.allclose(&z, 1e-5, 1e-5, false));
//! ```

#![deny(missing_docs)]

pub mod cmade;
pub mod config;
pub mod context;
pub mod error;
pub mod flow;
pub mod iaf;
pub mod layers;
pub mod mask;

pub use cmade::{Cmade, S_BIAS_INIT, S_BN_BETA_INIT};
pub use config::{BatchNormSettings, ContextMode, FlowConfig, FlowKind};
pub use context::ContextPredictor;
pub use error::{Error, Result};
pub use flow::{Flow, FrozenFlow};
pub use iaf::IafStep;
pub use layers::MaskedLinear;
pub use mask::{connectivity, made_masks, Mask, MaskOrder};
