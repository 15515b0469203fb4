//! Batch normalization with the original's TF constants (ORIGINAL §2.1): libtorch's kernel, or
//! for training-mode `[B, C]` CPU batches, elementwise ops on the calling thread (small batches)
//! and the kernel with one intra-op thread (medium ones), which wake OpenMP's workers less.

use std::cell::Cell;

use serde::{Deserialize, Serialize};
use tch::nn::{self, Init};
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};

/// Batch-normalization constants shared by every BN layer of a network (ORIGINAL §2.1): the
/// original hard-codes TF-contrib's decay 0.999 and ε = 1e-3; they are settings here only so
/// that experiments can vary them.
///
/// In JSON: `{"momentum": 0.001, "eps": 0.001}`; a missing field takes its default, an unknown
/// one is refused. Deserialising does not validate; [`validate`](Self::validate) and
/// [`BatchNorm::new`] do.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchNormSettings {
    /// Weight of the new batch statistic in the running averages, PyTorch's convention:
    /// `running = (1 − momentum) · running + momentum · batch`. The original's TF decay 0.999
    /// is momentum 0.001 (ORIGINAL §2.1, docs/TOOLCHAIN.md §5). Valid range `(0, 1]`.
    pub momentum: f64,
    /// Added to the variance before the square root; 1e-3 in the original (ORIGINAL §2.1).
    /// Must be finite and `> 0`.
    pub eps: f64,
}

impl Default for BatchNormSettings {
    /// The original's constants: momentum 0.001 (TF decay 0.999), ε 1e-3.
    fn default() -> Self {
        BatchNormSettings {
            momentum: 0.001,
            eps: 1e-3,
        }
    }
}

impl BatchNormSettings {
    /// Checks both fields: [`Error::InvalidSetting`] names the field (`batch_norm.momentum`,
    /// `batch_norm.eps`), its value and the valid range.
    pub fn validate(&self) -> Result<()> {
        // Written so that NaN fails too.
        if !(self.momentum > 0.0 && self.momentum <= 1.0) {
            return Err(Error::invalid(
                "batch_norm.momentum",
                self.momentum,
                "a number in (0, 1] (TF decay 0.999 is momentum 0.001)",
            ));
        }
        if !(self.eps > 0.0 && self.eps.is_finite()) {
            return Err(Error::invalid(
                "batch_norm.eps",
                self.eps,
                "a finite number > 0 (the original uses 1e-3)",
            ));
        }
        Ok(())
    }
}

/// Libtorch's grain size (`at::internal::GRAIN_SIZE`): its elementwise ops and reductions over
/// fewer elements run on the calling thread, without an OpenMP parallel region.
const SERIAL_NUMEL: usize = 32_768;

/// The largest training-mode `[B, C]` CPU batch that [`BatchNorm::forward_t`] has libtorch's
/// kernel normalise on the calling thread (2^19 values: `[200, 1000]`, the original MLP's
/// width, and `[200, 1920]`, its cMADE's, fit).
///
/// Measured on 2 cores with `OMP_WAIT_POLICY=passive` (PyTorch 2.11, `BatchNorm1d` forward in
/// training mode): one thread took 74 µs for `[200, 500]` where two took 471, 182 µs against
/// 592 for `[200, 1000]`, 303 µs against 589 for `[200, 1920]`, and was still level at
/// `[1000, 1920]` (1.09 ms against 1.16): the kernel opens about six parallel regions, each
/// waking the sleeping worker. Its backward pass runs inside `backward()`, where the thread
/// count cannot be chosen per op.
const CALLING_THREAD_NUMEL: usize = 1 << 19;

/// Batch normalization as TF-contrib `batch_norm` with `center` and `scale` (ORIGINAL §2.1),
/// over `[B, C]` (statistics over the batch) or `[B, C, H, W]` (over batch, height and width
/// per channel).
///
/// Variables under its path, as PyTorch's `BatchNorm1d`/`BatchNorm2d` name them (so checkpoint
/// tensors load by name in Python): `weight` (γ, `[C]`, init 1), `bias` (β, `[C]`, init
/// `beta_init`), and the untrained buffers `running_mean` (`[C]`, init 0) and `running_var`
/// (`[C]`, init 1).
///
/// In training mode the batch statistics are used, with gradients through them, and the
/// running averages move by `momentum`; in evaluation mode the running averages are used, so
/// each example's output is independent of the rest of the batch.
///
/// Libtorch updates the running variance with the unbiased batch variance (`n / (n − 1)` times
/// the one used for normalising). With `n = B·H·W` or `B = 200` the difference from TF is
/// 0.5 % or less of the variance estimate.
///
/// Training mode needs more than one value per channel: a `[1, C]` input would normalise every
/// output to β and write NaN into the running variance (libtorch divides by `n − 1 = 0`),
/// silently ruining later evaluations. [`BatchNorm::forward_t`] panics on it instead, as
/// PyTorch's Python layer does; use evaluation mode for single examples.
#[derive(Debug)]
pub struct BatchNorm {
    /// γ, `[C]` (variable `weight`).
    pub ws: Tensor,
    /// β, `[C]` (variable `bias`).
    pub bs: Tensor,
    /// Running mean, `[C]` (not trainable).
    pub running_mean: Tensor,
    /// Running variance, `[C]` (not trainable).
    pub running_var: Tensor,
    settings: BatchNormSettings,
}

impl BatchNorm {
    /// Creates `weight` (1), `bias` (`beta_init`), `running_mean` (0) and `running_var` (1),
    /// each `[channels]`, under `p`, in that order.
    ///
    /// Errors: [`Error::InvalidSetting`] for invalid `settings` or `channels < 1`,
    /// [`Error::DuplicateParameter`] when `p` already holds one of the names (tch would rename
    /// it silently).
    pub fn new(
        p: &nn::Path,
        channels: i64,
        beta_init: f64,
        settings: BatchNormSettings,
    ) -> Result<Self> {
        settings.validate()?;
        if channels < 1 {
            return Err(Error::invalid("channels", channels, "at least one channel"));
        }
        Ok(BatchNorm {
            ws: new_var(p, "weight", channels, 1.0)?,
            bs: new_var(p, "bias", channels, beta_init)?,
            running_mean: unused(p, "running_mean")?
                .f_zeros_no_train("running_mean", &[channels])?,
            running_var: unused(p, "running_var")?.f_ones_no_train("running_var", &[channels])?,
            settings,
        })
    }

    /// The settings the layer was made with.
    pub fn settings(&self) -> BatchNormSettings {
        self.settings
    }

    /// `[B, C]` or `[B, C, H, W]` → same shape: batch statistics (and a running-average update)
    /// when `train`, running statistics otherwise.
    ///
    /// The result is libtorch's batch norm (cuDNN's on a GPU) in every case; what differs is how
    /// a training-mode `[B, C]` CPU batch gets there:
    ///
    /// - under libtorch's grain size (32768 values), from elementwise ops on the calling
    ///   thread: the same statistics, running-average update and gradients as the kernel,
    ///   which splits even a `[200, 32]` batch over the OpenMP threads in about ten parallel
    ///   regions forward and backward; each wakes the sleeping worker (`OMP_WAIT_POLICY=passive`,
    ///   which `vae` sets), 25–50 µs apiece on 2 cores, where the whole computation takes a few
    ///   µs on one thread;
    /// - up to 2^19 values, by libtorch's kernel with this thread's intra-op thread count at one
    ///   for the call (restored afterwards, also on a panic).
    ///
    /// Inside [`hold_running_statistics`], training mode normalises by the batch statistics
    /// with libtorch's kernel and leaves the running averages as they are.
    ///
    /// Panics on another rank, on a channel count other than the layer's, and in training mode
    /// when there is only one value per channel (`B·H·W = 1`).
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let size = x.size();
        assert!(
            size.len() == 2 || size.len() == 4,
            "BatchNorm input: expected [B, C] or [B, C, H, W], got shape {size:?}"
        );
        let channels = self.ws.size()[0];
        assert!(
            size[1] == channels,
            "BatchNorm input: expected {channels} channels (dimension 1), got shape {size:?}"
        );
        if train {
            let per_channel: i64 = size[0] * size[2..].iter().product::<i64>();
            assert!(
                per_channel > 1,
                "BatchNorm in training mode needs more than one value per channel, got shape \
                 {size:?}: use evaluation mode (train = false) for a single example"
            );
        }
        if train && HOLD_RUNNING_STATISTICS.get() {
            return self.batch_statistics_only(x);
        }
        if train && size.len() == 2 && x.device() == Device::Cpu {
            if x.numel() < SERIAL_NUMEL {
                return self.small_batch(x);
            }
            if x.numel() <= CALLING_THREAD_NUMEL {
                return on_calling_thread(|| self.kernel(x, train));
            }
        }
        self.kernel(x, train)
    }

    /// Evaluation mode as one affine map per channel, `y = x · scale + shift` with
    /// `scale = γ / √(running_var + ε)` and `shift = β − running_mean · scale`, each `[C]` in
    /// the weights' kind, detached: the form that folds into the preceding layer's weights and
    /// bias (`W' = diag(scale) · W`, `b' = scale · b + shift`). Computed in f64 from the current
    /// values; a later update of them does not change the result.
    pub fn eval_affine(&self) -> (Tensor, Tensor) {
        tch::no_grad(|| {
            let f64 = |t: &Tensor| t.detach().to_kind(Kind::Double);
            let scale = f64(&self.ws) * (f64(&self.running_var) + self.settings.eps).rsqrt();
            let shift = f64(&self.bs) - f64(&self.running_mean) * &scale;
            let kind = self.ws.kind();
            (scale.to_kind(kind), shift.to_kind(kind))
        })
    }

    /// Training mode without running statistics: the batch's mean and variance normalise `x`
    /// and the running averages are left as they are (see [`hold_running_statistics`]).
    fn batch_statistics_only(&self, x: &Tensor) -> Tensor {
        x.batch_norm(
            Some(&self.ws),
            Some(&self.bs),
            None::<&Tensor>,
            None::<&Tensor>,
            true,
            self.settings.momentum,
            self.settings.eps,
            true,
        )
    }

    /// Libtorch's batch-norm kernel (cuDNN's on a GPU) on `x`.
    fn kernel(&self, x: &Tensor, train: bool) -> Tensor {
        x.batch_norm(
            Some(&self.ws),
            Some(&self.bs),
            Some(&self.running_mean),
            Some(&self.running_var),
            train,
            self.settings.momentum,
            self.settings.eps,
            true,
        )
    }

    /// Training mode on a `[B, C]` CPU batch of fewer than [`SERIAL_NUMEL`] values, from
    /// elementwise ops (see [`forward_t`](Self::forward_t)).
    fn small_batch(&self, x: &Tensor) -> Tensor {
        let BatchNormSettings { momentum, eps } = self.settings;
        let n = x.size()[0] as f64;
        let kind = x.kind();
        let mean = x.mean_dim(0, true, kind); // [1, C]
        let centred = x - &mean;
        let var = centred.square().mean_dim(0, true, kind); // biased, as for normalising
        let y = centred * ((&var + eps).rsqrt() * &self.ws) + &self.bs;
        tch::no_grad(|| {
            // As libtorch: running = (1 − momentum) · running + momentum · batch, with the
            // unbiased variance.
            let (mut rm, mut rv) = (
                self.running_mean.shallow_clone(),
                self.running_var.shallow_clone(),
            );
            let _ = rm
                .g_mul_scalar_(1.0 - momentum)
                .g_add_(&(mean.squeeze_dim(0) * momentum));
            let unbiased = var.squeeze_dim(0) * (n / (n - 1.0) * momentum);
            let _ = rv.g_mul_scalar_(1.0 - momentum).g_add_(&unbiased);
        });
        y
    }
}

impl nn::ModuleT for BatchNorm {
    /// [`BatchNorm::forward_t`].
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        BatchNorm::forward_t(self, x, train)
    }
}

thread_local! {
    /// Set inside [`hold_running_statistics`] on this thread.
    static HOLD_RUNNING_STATISTICS: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with every [`BatchNorm`] used in training mode on this thread normalising by its
/// batch's statistics, as in training, but leaving its running averages unchanged
/// (NORMALIZATION §3): a pass that only looks at the data, such as the data-dependent
/// initialisation of the weight-normalized layers of a model whose other networks have batch
/// norm, then changes nothing but what it means to. Evaluation mode is unaffected. Nests, and
/// restores the previous state when `f` returns or panics.
pub fn hold_running_statistics<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            HOLD_RUNNING_STATISTICS.set(self.0);
        }
    }
    let _restore = Restore(HOLD_RUNNING_STATISTICS.replace(true));
    f()
}

/// A trainable `[channels]` variable filled with `value`, refusing a name the store holds.
fn new_var(p: &nn::Path, name: &str, channels: i64, value: f64) -> Result<Tensor> {
    Ok(unused(p, name)?.f_var(name, &[channels], Init::Const(value))?)
}

/// `p`, if it holds no variable `name` yet; [`Error::DuplicateParameter`] otherwise.
pub(crate) fn unused<'a, 'b>(p: &'a nn::Path<'b>, name: &str) -> Result<&'a nn::Path<'b>> {
    match p.get(name) {
        Some(_) => Err(Error::DuplicateParameter { path: p.path(name) }),
        None => Ok(p),
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
    //! Every training-mode path (elementwise ops, the kernel on the calling thread, the kernel
    //! with the thread pool, images) and evaluation mode against libtorch's own layer.

    use super::*;

    /// Checks [`BatchNorm`] on inputs of `shape` against tch's `nn::BatchNorm` (libtorch's
    /// kernel), both with momentum 0.1, ε 1e-3, β 0.3: over three training steps that move the
    /// running averages, the output, the gradients of the input, γ and β, and the running
    /// statistics; then the evaluation-mode output. All to 1e-5, except γ's and β's gradients,
    /// sums over the `n` values per channel in an order that differs between the paths, whose
    /// rounding grows with `n`: 1e-5 · max(1, n / 8) (the largest difference seen at `n = 200`
    /// was a quarter of that).
    /// This thread's intra-op thread count is as it was after every call.
    fn check(shape: &[i64]) {
        let settings = BatchNormSettings {
            momentum: 0.1,
            eps: 1e-3,
        };
        let channels = shape[1];
        let (va, vb) = (
            nn::VarStore::new(Device::Cpu),
            nn::VarStore::new(Device::Cpu),
        );
        let a = BatchNorm::new(&(va.root() / "bn"), channels, 0.3, settings).unwrap();
        let config = nn::BatchNormConfig {
            momentum: settings.momentum,
            eps: settings.eps,
            ws_init: Init::Const(1.0),
            bs_init: Init::Const(0.3),
            ..Default::default()
        };
        let b = match shape.len() {
            2 => nn::batch_norm1d(vb.root() / "bn", channels, config),
            _ => nn::batch_norm2d(vb.root() / "bn", channels, config),
        };
        let (b_ws, b_bs) = (b.ws.as_ref().unwrap(), b.bs.as_ref().unwrap());
        let threads = tch::get_num_threads();
        let per_channel = (shape.iter().product::<i64>() / channels) as f64;
        let sum_tolerance = 1e-5 * (per_channel / 8.0).max(1.0);
        for step in 0..3 {
            let within = |p: &Tensor, q: &Tensor, what: &str, tolerance: f64| {
                let d = (p - q).abs().max().double_value(&[]);
                assert!(
                    d < tolerance,
                    "{shape:?}, step {step}: {what} differs by {d}"
                );
            };
            let close = |p: &Tensor, q: &Tensor, what: &str| within(p, q, what, 1e-5);
            let x = Tensor::randn(shape, (Kind::Float, Device::Cpu)) * (step + 1) as f64 + 2.0;
            let w = Tensor::randn(shape, (Kind::Float, Device::Cpu));
            let xa = x.detach().set_requires_grad(true);
            let xb = x.detach().set_requires_grad(true);
            let ya = a.forward_t(&xa, true);
            assert_eq!(tch::get_num_threads(), threads, "{shape:?}: thread count");
            let yb = nn::ModuleT::forward_t(&b, &xb, true);
            close(&ya, &yb, "output");
            (&ya * &w).sum(Kind::Float).backward();
            (&yb * &w).sum(Kind::Float).backward();
            close(&xa.grad(), &xb.grad(), "input gradient");
            within(&a.ws.grad(), &b_ws.grad(), "γ gradient", sum_tolerance);
            within(&a.bs.grad(), &b_bs.grad(), "β gradient", sum_tolerance);
            close(&a.running_mean, &b.running_mean, "running mean");
            close(&a.running_var, &b.running_var, "running variance");
            for t in [&a.ws, &a.bs, b_ws, b_bs] {
                let _ = t.grad().zero_();
            }
        }
        let x = Tensor::randn(shape, (Kind::Float, Device::Cpu));
        let d = (a.forward_t(&x, false) - nn::ModuleT::forward_t(&b, &x, false))
            .abs()
            .max()
            .double_value(&[]);
        assert!(d < 1e-5, "{shape:?}: evaluation output differs by {d}");
    }

    /// Under 32768 values: the elementwise path.
    #[test]
    fn small_batches_match_libtorch() {
        check(&[5, 7]);
        check(&[200, 64]);
    }

    /// Up to 2^19 values: libtorch's kernel on the calling thread, from two threads, which the
    /// call leaves at two, also when the work inside panics.
    #[test]
    fn calling_thread_batches_match_libtorch_and_restore_the_thread_count() {
        tch::set_num_threads(2);
        check(&[200, 320]);
        check(&[200, 500]);
        let inside = std::panic::catch_unwind(|| {
            on_calling_thread(|| {
                assert_eq!(tch::get_num_threads(), 1);
                panic!("work inside the scope failed")
            })
        });
        assert!(inside.is_err());
        assert_eq!(tch::get_num_threads(), 2, "thread count after a panic");
    }

    /// Larger `[B, C]` batches and `[B, C, H, W]` ones: libtorch's kernel as it is.
    #[test]
    fn large_and_image_batches_match_libtorch() {
        check(&[600, 1000]);
        check(&[4, 3, 5, 5]);
    }
}
