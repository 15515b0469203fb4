//! Where Adam's tensors live: the trainable parameters, the moments and (from the first step)
//! the gradients are views into three flat buffers, so that an update or a pass over the
//! gradients is a handful of kernels whatever the number of variables.
//!
//! This file holds that storage and everything that depends on its layout: binding the
//! buffers, the `intact` check before each use and the fallback to one variable at a time when
//! something replaced a storage, and the gradients' access through the buffer
//! ([`Adam::backward`] filling it with one `cat`, `zero_grad`, the norm, the NaN check). It is
//! apart from the update rules (`update.rs`) because the two change for different reasons: this
//! is about storage identity and kernel launches, they are about TF's arithmetic, and they see
//! the buffers only once [`flat_ready`](Adam::flat_ready) has vouched for them.

use tch::{Kind, Tensor};

use super::Adam;

/// The flat buffers: every parameter (and, once bound, its gradient) is a view into them.
#[derive(Debug)]
pub(super) struct Flat {
    pub(super) params: Tensor,
    pub(super) m: Tensor,
    pub(super) v: Tensor,
    /// The gradient buffer, after the first step found every gradient defined.
    pub(super) grads: Option<Tensor>,
    /// Working space of the update, as large as the buffers (made on the first update).
    scratch: Option<Tensor>,
    /// `(offset, numel)` of each variable in the buffers.
    pub(super) spans: Vec<(i64, i64)>,
}

/// Views into the flat buffer `buf`, one per tensor of `like`, at its span and in its shape.
pub(super) fn views(buf: &Tensor, like: &[Tensor], spans: &[(i64, i64)]) -> Vec<Tensor> {
    like.iter()
        .zip(spans)
        .map(|(t, &(off, n))| buf.narrow(0, off, n).view(t.size().as_slice()))
        .collect()
}

/// Concatenates `tensors` into one new flat buffer and makes each of them a view into it, at
/// `spans`, with the same values; returns the buffer. The copy runs under `no_grad`, so the
/// buffer carries no autograd history.
fn rebind_as_views(tensors: &mut [Tensor], spans: &[(i64, i64)]) -> Tensor {
    let flat = tch::no_grad(|| {
        Tensor::cat(
            &tensors.iter().map(|t| t.reshape([-1])).collect::<Vec<_>>(),
            0,
        )
    });
    let views = views(&flat, tensors, spans);
    for (t, view) in tensors.iter_mut().zip(views) {
        t.set_data(&view);
    }
    flat
}

impl Flat {
    /// Makes every parameter a view into one new flat tensor, with the same values.
    pub(super) fn bind(params: &mut [Tensor]) -> Option<Flat> {
        let first = params.first()?;
        let (kind, device) = (first.kind(), first.device());
        if params
            .iter()
            .any(|p| p.kind() != kind || p.device() != device)
        {
            return None;
        }
        let mut spans = Vec::with_capacity(params.len());
        let mut total = 0;
        for p in params.iter() {
            let n = p.numel() as i64;
            spans.push((total, n));
            total += n;
        }
        let flat = rebind_as_views(params, &spans);
        Some(Flat {
            m: flat.zeros_like(),
            v: flat.zeros_like(),
            params: flat,
            grads: None,
            scratch: None,
            spans,
        })
    }

    /// Whether every parameter (and gradient, if bound) still lives in the flat buffers.
    fn intact(&self, params: &[Tensor]) -> bool {
        let elt = self.params.kind().elt_size_in_bytes();
        let at = |base: &Tensor, off: i64| base.data_ptr() as usize + off as usize * elt;
        params.iter().zip(&self.spans).all(|(p, &(off, _))| {
            p.data_ptr() as usize == at(&self.params, off)
                && self.grads.as_ref().is_none_or(|g| {
                    let pg = p.grad();
                    pg.defined() && pg.data_ptr() as usize == at(g, off)
                })
        })
    }

    /// Moves every (defined) gradient into one flat buffer, as views; `None` if one is missing.
    fn bind_grads(&mut self, params: &[Tensor]) -> Option<()> {
        let mut grads: Vec<Tensor> = params.iter().map(Tensor::grad).collect();
        if grads
            .iter()
            .any(|g| !g.defined() || g.kind() != self.params.kind())
        {
            return None;
        }
        let flat = rebind_as_views(&mut grads, &self.spans);
        self.grads = Some(flat);
        Some(())
    }

    /// The working buffer of an update (a view of it: it is made on the first call).
    pub(super) fn scratch(&mut self) -> Tensor {
        let params = &self.params;
        self.scratch
            .get_or_insert_with(|| params.empty_like())
            .shallow_clone()
    }
}

impl Adam {
    /// Whether the flat buffers can be used for an update (binding the gradients on the first
    /// call); gives them up for good when a storage was replaced.
    pub(super) fn flat_ready(&mut self) -> bool {
        let Some(f) = self.flat.as_mut() else {
            return false;
        };
        if f.grads.is_none() && f.bind_grads(&self.params).is_none() {
            return false;
        }
        if !f.intact(&self.params) {
            // Something replaced a parameter's or gradient's storage: one variable at a time
            // from now on (the moments stay views into the flat buffers, which is harmless).
            self.flat = None;
            return false;
        }
        true
    }

    /// The flat gradient buffer, when every parameter and gradient still lives in the flat
    /// buffers (one kernel then does what one per variable would).
    pub(super) fn flat_grads(&self) -> Option<&Tensor> {
        let f = self.flat.as_ref()?;
        let g = f.grads.as_ref()?;
        f.intact(&self.params).then_some(g)
    }

    /// The gradients of `loss` (a 0-dim tensor) with respect to every variable, in place of
    /// the previous ones: [`zero_grad`](Self::zero_grad) and `loss.backward()` in one.
    ///
    /// Once the flat gradient buffer is bound (after the first [`step`](Self::step)), autograd
    /// hands the gradients back (`torch.autograd.grad` semantics) instead of adding each into its
    /// variable's `.grad`, and one `cat` writes them all into the buffer: no `zero_` of the
    /// buffer and no `add_` per variable, which on a GPU are a launch each (the CPU default has
    /// 43 variables). The gradients autograd returns all live until the `cat`: the peak holds
    /// one more copy of the gradients (11 MB for the CPU default's 2.7 M parameters). A variable
    /// the loss does not reach gets a zero gradient, as `zero_grad` would leave it.
    pub fn backward(&mut self, loss: &Tensor) {
        if !self.flat_ready() {
            self.zero_grad();
            loss.backward();
            return;
        }
        let f = self
            .flat
            .as_ref()
            .expect("flat_ready() was checked: the flat buffers exist");
        let buffer = f
            .grads
            .as_ref()
            .expect("flat_ready() was checked: the flat buffers exist");
        let grads = Tensor::run_backward(&[loss], &self.params, false, false);
        let (kind, device) = (buffer.kind(), buffer.device());
        let pieces: Vec<Tensor> = grads
            .iter()
            .zip(&f.spans)
            .map(|(g, &(_, n))| match g.defined() {
                true => g.reshape([-1]),
                false => Tensor::zeros([n], (kind, device)),
            })
            .collect();
        let _ = tch::no_grad(|| Tensor::cat_out(buffer, &pieces, 0));
    }

    /// Clears the gradients of every variable.
    pub fn zero_grad(&mut self) {
        if let Some(g) = self.flat_grads() {
            let _ = tch::no_grad(|| g.shallow_clone().zero_());
            return;
        }
        for p in &mut self.params {
            p.zero_grad();
        }
    }

    /// Global L2 norm of the current gradients (0 for variables without one).
    pub fn grad_norm(&self) -> f64 {
        self.grad_sq_norm().double_value(&[]).sqrt()
    }

    /// Squared global L2 norm of the current gradients, as a 0-dim f64 tensor on their device:
    /// computed without waiting for the device, so that a caller can read it back together
    /// with other values in one transfer.
    ///
    /// Each norm is libtorch's one-pass f32 reduction, squared in f64: summing the squares in
    /// f64 took a cast, a temporary and two more passes over every gradient (1.9 ms against
    /// 0.3 ms for 2.7 M parameters on 2 cores, a thirtieth of the CPU default's step). A
    /// gradient whose f32 sum of squares overflows (norm > 1.8e19) counts as non-finite.
    pub fn grad_sq_norm(&self) -> Tensor {
        let sq = |g: &Tensor| g.norm().to_kind(Kind::Double).square();
        if let Some(g) = self.flat_grads() {
            return tch::no_grad(|| sq(g));
        }
        // Before the flat buffer exists (a process's first step), the same reduction over the
        // same values in the same order: the gradients concatenated as the buffer holds them.
        // Summing per-variable norms instead rounds differently, and a resumed run's first
        // epoch would report another mean gradient norm than the uninterrupted run's.
        tch::no_grad(|| {
            let parts: Vec<Tensor> = self
                .params
                .iter()
                .map(|p| p.grad())
                .filter(|g| g.defined())
                .map(|g| g.flatten(0, -1))
                .collect();
            match parts.is_empty() {
                true => Tensor::zeros([], (Kind::Double, self.device())),
                false => sq(&Tensor::cat(&parts, 0)),
            }
        })
    }

    /// Where the variables live (the CPU if there are none).
    fn device(&self) -> tch::Device {
        self.params.first().map_or(tch::Device::Cpu, Tensor::device)
    }

    /// Whether every gradient is finite.
    pub fn grads_finite(&self) -> bool {
        if let Some(g) = self.flat_grads() {
            return tch::no_grad(|| g.isfinite().all().int64_value(&[]) == 1);
        }
        tch::no_grad(|| {
            self.params
                .iter()
                .map(|p| p.grad())
                .filter(|g| g.defined())
                .all(|g| g.isfinite().all().int64_value(&[]) == 1)
        })
    }
}
