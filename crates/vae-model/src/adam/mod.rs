//! Adam over tch tensors with state that can be saved and restored.
//!
//! tch's `nn::Optimizer` wraps an opaque C++ optimizer whose moments and step cannot be read or
//! written (docs/TOOLCHAIN.md §5), so a resumable run needs its own Adam. This one applies TF's
//! update by default (ORIGINAL §4.3): `lr_t = lr √(1−β2^t)/(1−β1^t)`,
//! `θ −= lr_t m / (√v + ε)`; PyTorch's placement of ε (on the bias-corrected `√v̂`) is available
//! to compare with tch's Adam.
//!
//! Speed: the parameters are views into one flat tensor, and so, from the first step on, are
//! their gradients (which [`Adam::backward`] fills with one `cat`). An update is then about ten
//! kernels over the flat buffers whatever the number of variables, instead of a dozen per
//! variable: what decides a step's time on a GPU, where each launch costs microseconds of host
//! time (cargo xtask bench). Should something replace a parameter's storage (a `VarStore`
//! conversion, say), the update notices and falls back to one variable at a time.
//!
//! This file holds the type, its construction and its step count; its three jobs live in a
//! module each, because each changes for its own reasons:
//!
//! - `update`: the update rules (the ε placements, the `rsqrt` denominator, [`Adam::step`] and
//!   the device-decided [`Adam::step_if`], one variable at a time when the buffers are gone).
//! - `flat`: where the parameters, moments and gradients live (views into three flat buffers,
//!   checked before each use, with the fallback to one variable at a time) and the gradients'
//!   access through them ([`Adam::backward`], [`Adam::zero_grad`], the norm, the NaN check).
//! - `state`: the state a checkpoint stores ([`Adam::state_tensors`], [`Adam::load_state`]).

use tch::{nn, Tensor};

use crate::config::AdamConfig;

mod flat;
mod state;
#[cfg(test)]
mod tests;
mod update;

use flat::{views, Flat};

/// Where ε enters the denominator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpsPlacement {
    /// TF 1.x: `m / (√v + ε)` with the bias corrections folded into the step size.
    Tf,
    /// PyTorch: `m̂ / (√v̂ + ε)` with `m̂ = m/(1−β1^t)`, `v̂ = v/(1−β2^t)`.
    Torch,
}

/// Adam's state for every trainable variable of a `VarStore`, in name order.
#[derive(Debug)]
pub struct Adam {
    cfg: AdamConfig,
    placement: EpsPlacement,
    names: Vec<String>,
    params: Vec<Tensor>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    step: i64,
    /// The step count on the device, once [`step_if`](Adam::step_if) has run: it counts only
    /// the updates the device applied, which the host learns when it reads it back.
    device_step: Option<Tensor>,
    flat: Option<Flat>,
}

impl Adam {
    /// Adam with TF's ε placement over the trainable variables of `vs`, moments at zero.
    pub fn new(vs: &nn::VarStore, cfg: AdamConfig) -> Adam {
        Self::with_placement(vs, cfg, EpsPlacement::Tf)
    }

    /// Adam with the given ε placement.
    pub fn with_placement(vs: &nn::VarStore, cfg: AdamConfig, placement: EpsPlacement) -> Adam {
        let mut vars: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let (names, mut params): (Vec<_>, Vec<_>) = vars.into_iter().unzip();
        let flat = Flat::bind(&mut params);
        let (m, v) = match &flat {
            // The moments are views into the flat moment buffers.
            Some(f) => (
                views(&f.m, &params, &f.spans),
                views(&f.v, &params, &f.spans),
            ),
            None => (
                params.iter().map(Tensor::zeros_like).collect(),
                params.iter().map(Tensor::zeros_like).collect(),
            ),
        };
        Adam {
            cfg,
            placement,
            names,
            params,
            m,
            v,
            step: 0,
            device_step: None,
            flat,
        }
    }

    /// Number of updates applied so far (`t`). After [`step_if`](Self::step_if) this reads the
    /// count back from the device (and waits for it).
    pub fn step_count(&self) -> i64 {
        match &self.device_step {
            Some(t) => t.double_value(&[]) as i64,
            None => self.step,
        }
    }
}
