//! Batch norm for the flow's layers: tch's `nn::BatchNorm`, computed from elementwise ops for
//! small CPU batches in training mode and on the calling thread for larger ones (fewer OpenMP
//! wake-ups).

use tch::{nn, Device, Tensor};

use crate::config::BatchNormSettings;

/// Libtorch's grain size (`at::internal::GRAIN_SIZE`): its elementwise ops and reductions over
/// fewer elements run on the calling thread, without an OpenMP parallel region.
const SERIAL_NUMEL: usize = 32_768;

/// The largest training-mode `[B, C]` CPU batch that libtorch's kernel normalises on the
/// calling thread (2^19 values: `[200, 1920]`, the original's cMADE width, fits).
///
/// Measured on 2 cores with `OMP_WAIT_POLICY=passive` (PyTorch 2.11, `BatchNorm1d` forward in
/// training mode): one thread took 74 µs for `[200, 500]` where two took 471, 303 µs against
/// 589 for `[200, 1920]`, and was still level at `[1000, 1920]` (1.09 ms against 1.16): the
/// kernel opens about six parallel regions, each waking the sleeping worker. Its backward pass
/// runs inside `backward()`, where the thread count cannot be chosen per op.
const CALLING_THREAD_NUMEL: usize = 1 << 19;

/// tch's `nn::BatchNorm` (variables `weight`, `bias`, `running_mean`, `running_var` under its
/// path) with the settings it was made with.
#[derive(Debug)]
pub(crate) struct FlowBatchNorm {
    bn: nn::BatchNorm,
    settings: BatchNormSettings,
}

impl FlowBatchNorm {
    /// `channels` channels under `p`, β initialised to `beta_init`.
    pub(crate) fn new(
        p: nn::Path,
        channels: i64,
        settings: BatchNormSettings,
        beta_init: f64,
    ) -> Self {
        FlowBatchNorm {
            bn: nn::batch_norm1d(p, channels, settings.tch_config(beta_init)),
            settings,
        }
    }

    /// Evaluation mode as `y = x · scale + shift` per channel, each `[C]` in the weights' kind,
    /// detached: `scale = γ / √(running_var + ε)`, `shift = β − running_mean · scale` (γ = 1
    /// and β = 0 where the layer has none). Computed in f64 from the current values.
    pub(crate) fn eval_affine(&self) -> (Tensor, Tensor) {
        let bn = &self.bn;
        tch::no_grad(|| {
            let f64 = |t: &Tensor| t.detach().to_kind(tch::Kind::Double);
            let mut scale = (f64(&bn.running_var) + self.settings.eps).rsqrt();
            if let Some(ws) = &bn.ws {
                scale *= f64(ws);
            }
            let mut shift = -(f64(&bn.running_mean) * &scale);
            if let Some(bs) = &bn.bs {
                shift += f64(bs);
            }
            let kind = bn.running_mean.kind();
            (scale.to_kind(kind), shift.to_kind(kind))
        })
    }

    /// `[B, C]` → `[B, C]`: batch statistics when `train`, running ones otherwise.
    ///
    /// A training-mode CPU batch of fewer than [`SERIAL_NUMEL`] values (the `m` and `s`
    /// outputs, `[B, D]`) is normalised from elementwise ops: the same statistics,
    /// running-average update and gradients as libtorch's kernel, which splits even a
    /// `[200, 32]` batch over the OpenMP threads in about ten parallel regions forward and
    /// backward; each wakes the sleeping worker (`OMP_WAIT_POLICY=passive`, which `vae` sets),
    /// 25–50 µs apiece on 2 cores, where the whole computation takes a few µs on one thread.
    /// Up to [`CALLING_THREAD_NUMEL`] values, libtorch's kernel runs on the calling thread.
    pub(crate) fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let bn = &self.bn;
        let cpu_2d = x.dim() == 2 && x.device() == Device::Cpu;
        let small = cpu_2d && x.numel() < SERIAL_NUMEL;
        match (&bn.ws, &bn.bs) {
            (Some(ws), Some(bs)) if train && small => {
                let BatchNormSettings { momentum, eps } = self.settings;
                let n = x.size()[0] as f64;
                let kind = x.kind();
                let mean = x.mean_dim(0, true, kind); // [1, C]
                let centred = x - &mean;
                let var = centred.square().mean_dim(0, true, kind); // biased, for normalising
                let y = centred * ((&var + eps).rsqrt() * ws) + bs;
                tch::no_grad(|| {
                    // As libtorch: running = (1 − momentum) · running + momentum · batch,
                    // with the unbiased variance.
                    let mut rm = bn.running_mean.shallow_clone();
                    let mut rv = bn.running_var.shallow_clone();
                    let _ = rm
                        .g_mul_scalar_(1.0 - momentum)
                        .g_add_(&(mean.squeeze_dim(0) * momentum));
                    let unbiased = var.squeeze_dim(0) * (n / (n - 1.0) * momentum);
                    let _ = rv.g_mul_scalar_(1.0 - momentum).g_add_(&unbiased);
                });
                y
            }
            _ if train && cpu_2d && x.numel() <= CALLING_THREAD_NUMEL => {
                on_calling_thread(|| nn::ModuleT::forward_t(bn, x, train))
            }
            _ => nn::ModuleT::forward_t(bn, x, train),
        }
    }
}

/// Runs `f` with libtorch's intra-op thread count at one on this thread (no OpenMP parallel
/// region), then restores the count, also when `f` panics.
///
/// Libtorch keeps the count per thread (OpenMP's per-thread setting), so other threads are
/// unaffected, except one that makes its first parallel libtorch call inside `f`: it starts
/// with the last count set process-wide, here one.
fn on_calling_thread<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(i32);
    impl Drop for Restore {
        fn drop(&mut self) {
            tch::set_num_threads(self.0);
        }
    }
    let threads = tch::get_num_threads();
    if threads <= 1 {
        return f();
    }
    tch::set_num_threads(1);
    let _restore = Restore(threads);
    f()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    /// A CPU batch norm of `channels` channels (momentum 0.1, ε 1e-3, β 0.3) and its store.
    fn new_bn(channels: i64) -> (nn::VarStore, FlowBatchNorm) {
        let settings = BatchNormSettings {
            momentum: 0.1,
            eps: 1e-3,
        };
        let vs = nn::VarStore::new(Device::Cpu);
        let bn = FlowBatchNorm::new(vs.root() / "bn", channels, settings, 0.3);
        (vs, bn)
    }

    /// Output, running statistics and gradients (input, γ, β) agree with libtorch's kernel,
    /// over three steps that move the running averages.
    #[test]
    fn small_batches_match_libtorch() {
        let ((_va, a), (_vb, fb)) = (new_bn(7), new_bn(7));
        let b = &fb.bn;
        for step in 0..3 {
            let x = Tensor::randn([5, 7], (Kind::Float, Device::Cpu)) * (step + 1) as f64 + 2.0;
            let w = Tensor::randn([5, 7], (Kind::Float, Device::Cpu));
            let xa = x.detach().set_requires_grad(true);
            let xb = x.detach().set_requires_grad(true);
            let ya = a.forward_t(&xa, true);
            let yb = nn::ModuleT::forward_t(b, &xb, true);
            let close = |p: &Tensor, q: &Tensor, what: &str| {
                let d = (p - q).abs().max().double_value(&[]);
                assert!(d < 1e-5, "step {step}: {what} differs by {d}");
            };
            close(&ya, &yb, "output");
            (&ya * &w).sum(Kind::Float).backward();
            (&yb * &w).sum(Kind::Float).backward();
            close(&xa.grad(), &xb.grad(), "input gradient");
            for (p, q, what) in [
                (&a.bn.ws, &b.ws, "γ gradient"),
                (&a.bn.bs, &b.bs, "β gradient"),
            ] {
                close(
                    &p.as_ref().unwrap().grad(),
                    &q.as_ref().unwrap().grad(),
                    what,
                );
            }
            close(&a.bn.running_mean, &b.running_mean, "running mean");
            close(&a.bn.running_var, &b.running_var, "running variance");
            for t in [&a.bn.ws, &a.bn.bs, &b.ws, &b.bs] {
                let _ = t.as_ref().unwrap().grad().zero_();
            }
        }
        // Evaluation mode is libtorch's path, on the running statistics.
        let x = Tensor::randn([5, 7], (Kind::Float, Device::Cpu));
        let d = (a.forward_t(&x, false) - nn::ModuleT::forward_t(b, &x, false))
            .abs()
            .max()
            .double_value(&[]);
        assert!(d < 1e-5, "eval output differs by {d}");
    }

    /// A `[200, 320]` batch (libtorch's kernel on the calling thread) gives the kernel's
    /// output and running statistics as computed with two threads, and leaves this thread's
    /// count as it was, also when the work inside panics.
    #[test]
    fn calling_thread_batches_match_and_restore_the_thread_count() {
        tch::set_num_threads(2);
        let ((_va, a), (_vb, b)) = (new_bn(320), new_bn(320));
        let x = Tensor::randn([200, 320], (Kind::Float, Device::Cpu)) * 3.0 + 1.0;
        let ya = a.forward_t(&x, true);
        assert_eq!(tch::get_num_threads(), 2, "thread count after forward_t");
        let yb = nn::ModuleT::forward_t(&b.bn, &x, true);
        for (p, q, what) in [
            (&ya, &yb, "output"),
            (&a.bn.running_mean, &b.bn.running_mean, "running mean"),
            (&a.bn.running_var, &b.bn.running_var, "running variance"),
        ] {
            let d = (p - q).abs().max().double_value(&[]);
            assert!(d < 1e-5, "{what} differs by {d}");
        }
        let inside = std::panic::catch_unwind(|| {
            on_calling_thread(|| {
                assert_eq!(tch::get_num_threads(), 1);
                panic!("work inside the scope failed")
            })
        });
        assert!(inside.is_err());
        assert_eq!(tch::get_num_threads(), 2, "thread count after a panic");
    }
}
