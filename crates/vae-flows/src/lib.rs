//! Posterior flows for flow-VAEs, on tch: the original's inverse autoregressive flow (cMADE
//! masks, conditional MADEs with batch norm and context, gated and shift-only IAF steps, the
//! encoder-side context predictor; ORIGINAL §3.1, §3.4), and flowvae's planar, radial,
//! Householder, Sylvester and NAF layers amortized from the same context, one kind per stack or
//! per layer (docs/FLOWS.md). This crate knows nothing about datasets, encoders or decoders.
#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod amortize;
pub mod cmade;
pub mod config;
pub mod context;
pub mod error;
pub mod flow;
pub mod householder;
pub mod iaf;
pub mod kind;
pub mod layers;
pub mod mask;
pub mod naf;
pub mod orthogonal;
pub mod planar;
pub mod radial;
mod root;
pub mod step;
pub mod sylvester;

pub use cmade::{Cmade, S_BIAS_INIT, S_BN_BETA_INIT};
pub use config::{BatchNormSettings, ContextMode, FlowConfig, FlowKind};
pub use context::ContextPredictor;
pub use error::{Error, Result};
pub use flow::{Flow, FrozenFlow};
pub use householder::HouseholderStep;
pub use iaf::IafStep;
pub use layers::MaskedLinear;
pub use mask::{connectivity, made_masks, Mask, MaskOrder};
pub use naf::{NafParams, NafStep};
pub use planar::{PlanarParams, PlanarStep};
pub use radial::{RadialParams, RadialStep};
pub use step::FlowLayer;
pub use sylvester::{SylvesterParams, SylvesterQ, SylvesterStep};
