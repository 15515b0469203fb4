//! Adam's update rules: TF's placement of ε (or PyTorch's), the bias corrections, and the
//! denominator `√v + ε` taken from `rsqrt` and one scalar division; [`Adam::step`] on the host
//! and [`Adam::step_if`] decided on the device, both through one `Flat::add_update` so that they
//! round alike, and the per-variable update for when the flat buffers are gone.
//!
//! Apart from the storage (`flat.rs`) and the checkpoint state (`state.rs`) because this is the
//! arithmetic that decides the trained weights bit for bit (`tests/resume.rs`): its three paths
//! stay side by side here, where a change to one is read against the other two.

use tch::{Kind, Tensor};

use super::flat::Flat;
use super::{Adam, EpsPlacement};
use crate::config::AdamConfig;

impl Adam {
    /// Brings the host's step count up to date and drops the device's.
    fn host_step(&mut self) {
        if self.device_step.is_some() {
            self.step = self.step_count();
            self.device_step = None;
        }
    }

    /// Applies one update with learning rate `lr` from the gradients accumulated by `backward`.
    pub fn step(&mut self, lr: f64) {
        let AdamConfig {
            beta1: b1,
            beta2: b2,
            eps,
        } = self.cfg;
        self.host_step();
        self.step += 1;
        let t = self.step as i32;
        let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        if self.flat_ready() {
            self.flat_step(lr, c1, c2);
            return;
        }
        tch::no_grad(|| {
            for ((p, m), v) in self.params.iter_mut().zip(&mut self.m).zip(&mut self.v) {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let _ = m.g_mul_scalar_(b1).g_add_(&(&g * (1.0 - b1)));
                let _ = v.g_mul_scalar_(b2).g_add_(&(g.square() * (1.0 - b2)));
                let update = match self.placement {
                    EpsPlacement::Tf => &*m / (v.sqrt() + eps) * (lr * c2.sqrt() / c1),
                    EpsPlacement::Torch => &*m / ((&*v / c2).sqrt() + eps) * (lr / c1),
                };
                let _ = p.g_sub_(&update);
            }
        });
    }

    /// [`step`](Self::step) when `ok` (a 0-dim bool tensor on the variables' device, e.g. "the
    /// loss and gradient norm are finite") holds, and no change at all otherwise, decided on
    /// the device: the host need not wait for `ok`, so it can queue the next step's kernels
    /// while the GPU works (cargo xtask bench). On a skip the gradient buffer is zeroed in
    /// place first, so that its NaNs cannot reach the moments through the zero weight.
    /// Without the flat buffers this reads `ok` back and calls `step`.
    pub fn step_if(&mut self, lr: f64, ok: &Tensor) {
        if !self.flat_ready() {
            if ok.to_kind(Kind::Int64).int64_value(&[]) != 0 {
                self.step(lr);
            }
            return;
        }
        let AdamConfig {
            beta1: b1,
            beta2: b2,
            eps,
        } = self.cfg;
        let placement = self.placement;
        let f = self
            .flat
            .as_mut()
            .expect("flat_ready() was checked: the flat buffers exist");
        let mut g = f
            .grads
            .as_ref()
            .expect("flat_ready() was checked: the flat buffers exist")
            .shallow_clone();
        let host_t = self.step as f64;
        let t = self
            .device_step
            .get_or_insert_with(|| Tensor::from(host_t).to_device(f.params.device()));
        tch::no_grad(|| {
            let mut scratch = f.scratch();
            let ok_f = ok.to_kind(f.m.kind());
            let _ = g.masked_fill_(&ok.logical_not(), 0.0);
            // A weight of 0 leaves the moments exactly as they were.
            let _ = f.m.lerp_tensor_(&g, &(&ok_f * (1.0 - b1)));
            let _ = g.square_out(&scratch);
            let _ = f.v.lerp_tensor_(&scratch, &(&ok_f * (1.0 - b2)));
            let _ = t.g_add_(&ok.to_kind(Kind::Double));
            let c1 = Tensor::pow_scalar(b1, &*t).neg() + 1.0;
            let c2 = Tensor::pow_scalar(b2, &*t).neg() + 1.0;
            // flat_step's denominator d = c / rsqrt(v) + e, from device-side c and e, through
            // the same `add_update`. A skipped step takes c = 0 and e = −∞: d = −∞ everywhere,
            // also where rsqrt(v) = ∞, and m / d adds exactly ±0; the step-size terms, infinite
            // or NaN at t = 0, are then not used.
            let (c, e) = match placement {
                EpsPlacement::Tf => {
                    let per_step = (c2.sqrt() / c1 * lr).reciprocal();
                    (-&per_step, per_step * -eps)
                }
                EpsPlacement::Torch => {
                    let per_step = (c1.reciprocal() * lr).reciprocal();
                    (-(&per_step / c2.sqrt()), per_step * -eps)
                }
            };
            let c = c.where_scalarother(ok, 0.0);
            let e = e.where_scalarother(ok, f64::NEG_INFINITY);
            f.add_update(&mut scratch, &c, &e);
        });
    }

    /// The update over the flat buffers, which [`flat_ready`](Self::flat_ready) checked: seven
    /// kernels, with no allocation after the first step (`scratch` holds `g²`, then the
    /// denominator).
    ///
    /// The denominator comes from `rsqrt`: `c / rsqrt(v) + e` is `−(√v + ε) / step` (TF) or
    /// `−(√v̂ + ε) / step` (torch), and `v = 0` gives `c / ∞ + e = e`, ε's term alone, as it
    /// should. libtorch's CPU `sqrt` calls MKL's vector library, which is slow on zeros and
    /// subnormals (masked cMADE weights and never-lit border pixels keep `v = 0` for good):
    /// 2.7 M values took 8.1 ms of zeros, 1.5 ms of random ones, against 0.8 ms for `rsqrt` and
    /// 0.3 ms for the division, one thread. The whole update took 2.7–3.5 ms on two threads
    /// against 3.0–4.4 with `sqrt` (PyTorch 2.11). The result differs from `√v` by rounding
    /// only (relative 2.4e-7 measured).
    fn flat_step(&mut self, lr: f64, c1: f64, c2: f64) {
        let AdamConfig {
            beta1: b1,
            beta2: b2,
            eps,
        } = self.cfg;
        // p += m / d with d = c / rsqrt(v) + e.
        let (c, e) = match self.placement {
            EpsPlacement::Tf => {
                let step = lr * c2.sqrt() / c1;
                (-1.0 / step, -eps / step)
            }
            EpsPlacement::Torch => {
                let step = lr / c1;
                (-1.0 / (step * c2.sqrt()), -eps / step)
            }
        };
        let f = self
            .flat
            .as_mut()
            .expect("flat_ready() was checked: the flat buffers exist");
        let g = f
            .grads
            .as_ref()
            .expect("flat_ready() was checked: the flat buffers exist")
            .shallow_clone();
        tch::no_grad(|| {
            let mut scratch = f.scratch();
            let _ = f.m.lerp_(&g, 1.0 - b1);
            let _ = g.square_out(&scratch);
            let _ = f.v.lerp_(&scratch, 1.0 - b2);
            f.add_update(&mut scratch, &Tensor::from(c), &Tensor::from(e));
        });
    }
}

impl Flat {
    /// `params += m / d` with `d = c / rsqrt(v) + e` (`c`, `e` 0-dim tensors, which libtorch
    /// treats as scalars), computed in `scratch`. Both flat updates end here, so they run the
    /// same kernels and round alike (`tests/resume.rs` compares the two paths' training).
    fn add_update(&mut self, scratch: &mut Tensor, c: &Tensor, e: &Tensor) {
        let _ = self.v.rsqrt_out(scratch);
        let _ = c.div_out(scratch, scratch);
        let _ = scratch.g_add_(e);
        let _ = self.params.addcdiv_(&self.m, scratch);
    }
}
