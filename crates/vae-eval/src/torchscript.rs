//! A latent-variable model given as a TorchScript module, so that the estimators of this crate
//! (IS, AIS/HAIS, BDMC) evaluate any PyTorch model without a line ported.
//!
//! The interface is a set of methods on the module (export those other than `forward` with
//! `@torch.jit.export`), all per row, in nats:
//!
//! | Method | Shapes | Needed by |
//! |---|---|---|
//! | `log_likelihood(x, z)` | `x` `[N, ...]`, `z` `[N, D]` → `[N]`: `log p(x | z)` | every estimator (required) |
//! | `log_prior(z)` | `[N, D]` → `[N]` | optional, default `N(0, I)` |
//! | `sample_prior(n: int)` | → `[n, D]` | optional, default `N(0, I)` |
//! | `propose(x, k: int)` | → `(z [k, N, D], log q(z | x) [k, N])` | importance sampling |
//! | `propose_from_noise(x, eps)` | `eps` `[k, N, D]` standard normal → as `propose` | optional: IS with the estimator's noise |
//! | `sample_data(z)` | `[N, D]` → `[N, ...]`: `x ~ p(x | z)` | BDMC |
//!
//! AIS and BDMC differentiate `log_likelihood` (and `log_prior`) in `z` through libtorch's
//! autograd, so the module must be differentiable there. The latent size `D` is read from
//! `sample_prior(1)` or `propose`, or given ([`TorchScriptModel::load`]); tch's `CModule` calls
//! methods but cannot read a module's attributes, so a `latent_dim: int` attribute is not seen.
//!
//! [`TorchScriptModel::load`] calls every method once on two examples of the data and checks
//! what comes back (shape, dtype, finiteness), so that a module that breaks the interface is
//! refused before a long run, with the method, the shapes expected and seen. The trait methods
//! the estimators call cannot return an error: a call that fails during the run yields NaN,
//! which the estimators refuse, and the module's own message is kept
//! ([`TorchScriptModel::take_failure`]).
//!
//! A module's `propose` draws its own noise, from libtorch's global generator, which the
//! estimators seed: results repeat for the same settings, but, unlike a native model's, the
//! noise of an example depends on how the examples are chunked (`max_rows`). A module whose
//! proposal is a reparameterised draw can export `propose_from_noise(x, eps)` instead (or as
//! well): IS then passes it the noise it draws for each example from `(seed, index)`, exactly as
//! for flowvae's own models, so the estimate of a model exported from flowvae equals the native
//! one, and shards and chunking do not change it.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use tch::{CModule, Device, IValue, Kind, Tensor};

use crate::error::{Error, Result};
use crate::model::{standard_normal_log_density, AmortizedProposal, DataSimulator, JointDensity};

/// A TorchScript module as a [`LatentModel`](crate::LatentModel) (see the [module](self) docs
/// for the methods it must have).
#[derive(Debug)]
pub struct TorchScriptModel {
    module: CModule,
    path: PathBuf,
    device: Device,
    latent_dim: i64,
    has_log_prior: bool,
    has_sample_prior: bool,
    has_propose: bool,
    has_propose_from_noise: bool,
    has_sample_data: bool,
    /// The first failure of a method call during a run (the trait methods return no errors).
    failure: RefCell<Option<String>>,
}

/// What [`TorchScriptModel::encode`](AmortizedProposal::encode) keeps: the examples, for
/// `propose`.
#[derive(Debug)]
pub struct TorchScriptPosterior {
    x: Tensor,
}

/// Whether a libtorch error says the module has no such method.
fn is_missing_method(e: &tch::TchError) -> bool {
    let m = e.to_string();
    m.contains("is not defined") || m.contains("does not have a method")
}

impl TorchScriptModel {
    /// Loads the module at `path` onto `device`, in inference mode, and checks it on `probe`,
    /// a few examples of the data to evaluate (`[n, ...]`, `n ≥ 1`, float, on `device`): every
    /// method it has is called once and what it returns is checked.
    ///
    /// `latent_dim`: the latent size when given; else read from `sample_prior(1)` or `propose`.
    ///
    /// Errors ([`Error::Module`]) name the file, the method and what was wrong: not a
    /// TorchScript archive (or one this libtorch cannot read, e.g. from a newer PyTorch), no
    /// `log_likelihood`, a wrong shape, dtype or a non-finite value, a latent size that cannot
    /// be told or disagrees with `latent_dim`.
    pub fn load(
        path: &Path,
        device: Device,
        latent_dim: Option<i64>,
        probe: &Tensor,
    ) -> Result<TorchScriptModel> {
        let err = |method: &str, reason: String| Error::Module {
            path: path.to_path_buf(),
            method: method.to_string(),
            reason,
        };
        let mut module = CModule::load_on_device(path, device).map_err(|e| {
            err(
                "(loading)",
                format!(
                    "not a TorchScript module this libtorch ({}) can read: {}",
                    crate::torchscript::LIBTORCH_VERSION,
                    first_line(&e.to_string())
                ),
            )
        })?;
        module
            .f_set_eval()
            .map_err(|e| err("(eval mode)", e.to_string()))?;
        let n = probe.size().first().copied().unwrap_or(0);
        if n == 0 {
            return Err(err("(probe)", "no examples to check the module on".into()));
        }
        let x = probe.to_kind(Kind::Float);
        // The probes' `sample_prior` and `propose` draw from tch's generator: hold the guard, so
        // that an estimator running on another thread keeps its stream.
        let _rng = crate::rng_guard();
        let call = |method: &str, args: &[IValue]| -> Result<Option<IValue>> {
            match module.method_is(method, args) {
                Ok(v) => Ok(Some(v)),
                Err(e) if is_missing_method(&e) => Ok(None),
                Err(e) => Err(err(method, first_line(&e.to_string()))),
            }
        };
        let tensor = |method: &str, v: IValue, what: &str| -> Result<Tensor> {
            match v {
                IValue::Tensor(t) => Ok(t),
                other => Err(err(
                    method,
                    format!("returned {}, expected {what}", ivalue_kind(&other)),
                )),
            }
        };
        let mut dims: Vec<(&str, i64)> = Vec::new();
        let has_sample_prior = match call("sample_prior", &[IValue::Int(2)])? {
            Some(v) => {
                let z = tensor("sample_prior", v, "a tensor [n, latent_dim]")?;
                check_float("sample_prior", &z, path)?;
                let s = z.size();
                if s.len() != 2 || s[0] != 2 {
                    return Err(err(
                        "sample_prior",
                        format!("sample_prior(2) returned shape {s:?}, expected [2, latent_dim]"),
                    ));
                }
                dims.push(("sample_prior(2)", s[1]));
                true
            }
            None => false,
        };
        let has_propose = match call(
            "propose",
            &[IValue::Tensor(x.shallow_clone()), IValue::Int(3)],
        )? {
            Some(IValue::Tuple(v)) if v.len() == 2 => {
                let [z, lq]: [IValue; 2] = v
                    .try_into()
                    .map_err(|_| err("propose", "expected the pair (z, log q)".into()))?;
                let z = tensor("propose", z, "z [k, N, latent_dim]")?;
                let lq = tensor("propose", lq, "log q [k, N]")?;
                check_float("propose", &z, path)?;
                check_float("propose", &lq, path)?;
                let (sz, sq) = (z.size(), lq.size());
                if sz.len() != 3 || sz[..2] != [3, n] || sq != [3, n] {
                    return Err(err(
                        "propose",
                        format!(
                            "propose(x [{n}, ...], 3) returned z {sz:?} and log q {sq:?}, expected \
                             [3, {n}, latent_dim] and [3, {n}]"
                        ),
                    ));
                }
                check_finite("propose", &lq, path)?;
                dims.push(("propose", sz[2]));
                true
            }
            Some(other) => {
                return Err(err(
                    "propose",
                    format!(
                        "returned {}, expected a tuple (z [k, N, latent_dim], log q [k, N])",
                        ivalue_kind(&other)
                    ),
                ))
            }
            None => false,
        };
        if let Some(d) = latent_dim {
            dims.insert(0, ("--latent-dim", d));
        }
        let Some(&(_, d)) = dims.first() else {
            return Err(err(
                "(latent size)",
                "cannot tell the latent size: export `sample_prior(n: int)` or `propose(x, k: \
                 int)`, or give it (`--latent-dim`)"
                    .into(),
            ));
        };
        if let Some((who, other)) = dims.iter().find(|(_, v)| *v != d) {
            return Err(err(
                "(latent size)",
                format!(
                    "{} says the latent size is {d}, {who} says {other}",
                    dims[0].0
                ),
            ));
        }
        if d < 1 {
            return Err(err(
                "(latent size)",
                format!("latent size {d}, expected ≥ 1"),
            ));
        }
        let eps = Tensor::zeros([3, n, d], (Kind::Float, device));
        let has_propose_from_noise = match call(
            "propose_from_noise",
            &[IValue::Tensor(x.shallow_clone()), IValue::Tensor(eps)],
        )? {
            Some(IValue::Tuple(v)) if v.len() == 2 => {
                let [z, lq]: [IValue; 2] = v.try_into().map_err(|_| {
                    err("propose_from_noise", "expected the pair (z, log q)".into())
                })?;
                let z = tensor("propose_from_noise", z, "z")?;
                let lq = tensor("propose_from_noise", lq, "log q")?;
                check_float("propose_from_noise", &z, path)?;
                check_float("propose_from_noise", &lq, path)?;
                if z.size() != [3, n, d] || lq.size() != [3, n] {
                    return Err(err(
                        "propose_from_noise",
                        format!(
                            "propose_from_noise(x [{n}, ...], eps [3, {n}, {d}]) returned z {:?} \
                             and log q {:?}, expected [3, {n}, {d}] and [3, {n}]",
                            z.size(),
                            lq.size()
                        ),
                    ));
                }
                check_finite("propose_from_noise", &lq, path)?;
                true
            }
            Some(other) => {
                return Err(err(
                    "propose_from_noise",
                    format!(
                        "returned {}, expected a tuple (z [k, N, latent_dim], log q [k, N])",
                        ivalue_kind(&other)
                    ),
                ))
            }
            None => false,
        };
        let z = Tensor::zeros([n, d], (Kind::Float, device));
        let Some(ll) = call(
            "log_likelihood",
            &[
                IValue::Tensor(x.shallow_clone()),
                IValue::Tensor(z.shallow_clone()),
            ],
        )?
        else {
            return Err(err(
                "log_likelihood",
                "the module has no `log_likelihood(x, z)` (export it with @torch.jit.export); \
                 every estimator needs it"
                    .into(),
            ));
        };
        let ll = tensor("log_likelihood", ll, "a tensor [N]")?;
        check_rows("log_likelihood", &ll, n, path)?;
        let has_log_prior = match call("log_prior", &[IValue::Tensor(z.shallow_clone())])? {
            Some(v) => {
                let lp = tensor("log_prior", v, "a tensor [N]")?;
                check_rows("log_prior", &lp, n, path)?;
                true
            }
            None => false,
        };
        let has_sample_data = match call("sample_data", &[IValue::Tensor(z.shallow_clone())])? {
            Some(v) => {
                let xs = tensor("sample_data", v, "a tensor [N, ...] like the data")?;
                check_float("sample_data", &xs, path)?;
                if xs.size() != x.size() {
                    return Err(err(
                        "sample_data",
                        format!(
                            "sample_data(z [{n}, {d}]) returned shape {:?}, expected the data's {:?}",
                            xs.size(),
                            x.size()
                        ),
                    ));
                }
                true
            }
            None => false,
        };
        Ok(TorchScriptModel {
            module,
            path: path.to_path_buf(),
            device,
            latent_dim: d,
            has_log_prior,
            has_sample_prior,
            has_propose,
            has_propose_from_noise,
            has_sample_data,
            failure: RefCell::new(None),
        })
    }

    /// Whether the module has `propose` or `propose_from_noise` (importance sampling needs
    /// one).
    pub fn has_propose(&self) -> bool {
        self.has_propose || self.has_propose_from_noise
    }

    /// Whether the module has `sample_data` (BDMC needs it).
    pub fn has_sample_data(&self) -> bool {
        self.has_sample_data
    }

    /// Whether the module has its own prior (`log_prior`, `sample_prior`); else `N(0, I)`.
    pub fn has_prior(&self) -> (bool, bool) {
        (self.has_log_prior, self.has_sample_prior)
    }

    /// The first method call that failed during a run, with the module's message; cleared.
    pub fn take_failure(&self) -> Option<String> {
        self.failure.borrow_mut().take()
    }

    fn fail(&self, method: &str, reason: String) {
        let mut f = self.failure.borrow_mut();
        if f.is_none() {
            *f = Some(format!(
                "{}: method `{method}`: {reason}",
                self.path.display()
            ));
        }
    }

    /// Calls `method` expecting one tensor of shape `want` (float); on any failure records it
    /// and returns NaN of that shape, which the estimators refuse.
    fn call_tensor(&self, method: &str, args: &[IValue], want: &[i64]) -> Tensor {
        let nan = || Tensor::full(want, f64::NAN, (Kind::Float, self.device));
        match self.module.method_is(method, args) {
            Ok(IValue::Tensor(t)) if t.size() == want && is_float(t.kind()) => {
                t.to_kind(Kind::Float)
            }
            Ok(IValue::Tensor(t)) => {
                self.fail(
                    method,
                    format!(
                        "returned {:?} of shape {:?}, expected float of shape {want:?}",
                        t.kind(),
                        t.size()
                    ),
                );
                nan()
            }
            Ok(other) => {
                self.fail(
                    method,
                    format!("returned {}, expected a tensor", ivalue_kind(&other)),
                );
                nan()
            }
            Err(e) => {
                self.fail(method, first_line(&e.to_string()));
                nan()
            }
        }
    }
}

/// The libtorch version these bindings link (docs/TOOLCHAIN.md).
pub const LIBTORCH_VERSION: &str = "2.11.0";

/// libtorch's message, shortened: for an error raised inside the module, the Python error line
/// (`RuntimeError: ...`) and where in the module's source it came from; else the first line.
fn first_line(s: &str) -> String {
    let lines: Vec<&str> = s.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let first = lines.first().copied().unwrap_or("").to_string();
    if !s.contains("TorchScript interpreter") {
        return first;
    }
    let reason = lines
        .iter()
        .rev()
        .find(|l| l.contains("Error: "))
        .map_or(first, |l| l.to_string());
    match lines.iter().rev().find(|l| l.starts_with("File ")) {
        Some(place) => format!("{reason} ({place})"),
        None => reason,
    }
}

fn is_float(k: Kind) -> bool {
    matches!(k, Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16)
}

fn ivalue_kind(v: &IValue) -> &'static str {
    match v {
        IValue::None => "None",
        IValue::Tensor(_) => "a tensor",
        IValue::Double(_) => "a float",
        IValue::Int(_) => "an int",
        IValue::Bool(_) => "a bool",
        IValue::Tuple(_) => "a tuple",
        IValue::GenericList(_) | IValue::DoubleList(_) | IValue::IntList(_) => "a list",
        IValue::BoolList(_) | IValue::TensorList(_) => "a list",
        IValue::String(_) | IValue::StringList(_) => "a string",
        IValue::GenericDict(_) => "a dict",
        IValue::Object(_) => "an object",
        _ => "a value of another type",
    }
}

fn check_float(method: &str, t: &Tensor, path: &Path) -> Result<()> {
    if is_float(t.kind()) {
        return Ok(());
    }
    Err(Error::Module {
        path: path.to_path_buf(),
        method: method.into(),
        reason: format!(
            "returned a tensor of dtype {:?}, expected a floating-point one",
            t.kind()
        ),
    })
}

fn check_finite(method: &str, t: &Tensor, path: &Path) -> Result<()> {
    let finite = t.isfinite().all().int64_value(&[]) != 0;
    if finite {
        return Ok(());
    }
    Err(Error::Module {
        path: path.to_path_buf(),
        method: method.into(),
        reason: "returned NaN or an infinity on the first examples of the data".into(),
    })
}

/// A per-row result: float, shape `[n]`, finite.
fn check_rows(method: &str, t: &Tensor, n: i64, path: &Path) -> Result<()> {
    check_float(method, t, path)?;
    if t.size() != [n] {
        return Err(Error::Module {
            path: path.to_path_buf(),
            method: method.into(),
            reason: format!(
                "returned shape {:?} for {n} rows, expected [{n}] (one value per row)",
                t.size()
            ),
        });
    }
    check_finite(method, t, path)
}

impl JointDensity for TorchScriptModel {
    fn latent_dim(&self) -> i64 {
        self.latent_dim
    }

    fn device(&self) -> Device {
        self.device
    }

    fn log_joint(&self, x: &Tensor, z: &Tensor) -> Tensor {
        let (s, b) = (z.size()[0], z.size()[1]);
        let d = self.latent_dim;
        let rows = z.reshape([s * b, d]);
        let mut shape = vec![s * b];
        shape.extend_from_slice(&x.size()[1..]);
        let xs = x
            .to_kind(Kind::Float)
            .unsqueeze(0)
            .expand([&[s][..], &x.size()[..]].concat(), false)
            .reshape(shape);
        let ll = self.call_tensor(
            "log_likelihood",
            &[IValue::Tensor(xs), IValue::Tensor(rows.shallow_clone())],
            &[s * b],
        );
        (ll + self.log_prior(&rows)).reshape([s, b])
    }

    fn log_prior(&self, z: &Tensor) -> Tensor {
        if !self.has_log_prior {
            return standard_normal_log_density(z);
        }
        let lead = z.size()[..z.dim() - 1].to_vec();
        let n: i64 = lead.iter().product();
        let rows = z.reshape([n, self.latent_dim]);
        self.call_tensor("log_prior", &[IValue::Tensor(rows)], &[n])
            .reshape(lead)
    }

    fn sample_prior(&self, n: i64) -> Tensor {
        if !self.has_sample_prior {
            return Tensor::randn([n, self.latent_dim], (Kind::Float, self.device));
        }
        self.call_tensor("sample_prior", &[IValue::Int(n)], &[n, self.latent_dim])
    }
}

impl AmortizedProposal for TorchScriptModel {
    type Posterior = TorchScriptPosterior;

    fn encode(&self, x: &Tensor) -> TorchScriptPosterior {
        TorchScriptPosterior {
            x: x.to_kind(Kind::Float),
        }
    }

    /// The module has no Gaussian base: the encoder starts of AIS use `N(0, I)`, a valid (if
    /// uninformed) start.
    fn base(&self, posterior: &TorchScriptPosterior) -> (Tensor, Tensor) {
        let b = posterior.x.size()[0];
        let zeros = Tensor::zeros([b, self.latent_dim], (Kind::Float, self.device));
        (zeros.shallow_clone(), zeros)
    }

    /// `propose_from_noise(x, eps)` when the module has it, else `propose(x, k)` with `k` the
    /// number of noise rows of `eps` (the module then draws its own).
    fn sample_posterior(&self, posterior: &TorchScriptPosterior, eps: &Tensor) -> (Tensor, Tensor) {
        let k = eps.size()[0];
        let b = posterior.x.size()[0];
        let d = self.latent_dim;
        let nan = |shape: &[i64]| Tensor::full(shape, f64::NAN, (Kind::Float, self.device));
        let want_z = [k, b, d];
        let (method, second) = if self.has_propose_from_noise {
            (
                "propose_from_noise",
                IValue::Tensor(eps.to_kind(Kind::Float)),
            )
        } else {
            ("propose", IValue::Int(k))
        };
        match self.module.method_is(
            method,
            &[IValue::Tensor(posterior.x.shallow_clone()), second],
        ) {
            Ok(IValue::Tuple(v)) if v.len() == 2 => {
                let mut v = v.into_iter();
                match (v.next(), v.next()) {
                    (Some(IValue::Tensor(z)), Some(IValue::Tensor(lq)))
                        if z.size() == want_z
                            && lq.size() == [k, b]
                            && is_float(z.kind())
                            && is_float(lq.kind()) =>
                    {
                        (z.to_kind(Kind::Float), lq.to_kind(Kind::Float))
                    }
                    _ => {
                        self.fail(
                            method,
                            format!("did not return (z {want_z:?}, log q [{k}, {b}]) floats"),
                        );
                        (nan(&want_z), nan(&[k, b]))
                    }
                }
            }
            Ok(other) => {
                self.fail(method, format!("returned {}", ivalue_kind(&other)));
                (nan(&want_z), nan(&[k, b]))
            }
            Err(e) => {
                self.fail(method, first_line(&e.to_string()));
                (nan(&want_z), nan(&[k, b]))
            }
        }
    }
}

impl DataSimulator for TorchScriptModel {
    fn sample_data(&self, z: &Tensor) -> Tensor {
        if !self.has_sample_data {
            self.fail(
                "sample_data",
                "the module has no `sample_data(z)`; BDMC needs it".into(),
            );
        }
        match self
            .module
            .method_is("sample_data", &[IValue::Tensor(z.shallow_clone())])
        {
            Ok(IValue::Tensor(t)) if is_float(t.kind()) => t.to_kind(Kind::Float),
            Ok(other) => {
                self.fail("sample_data", format!("returned {}", ivalue_kind(&other)));
                Tensor::full([z.size()[0]], f64::NAN, (Kind::Float, self.device))
            }
            Err(e) => {
                self.fail("sample_data", first_line(&e.to_string()));
                Tensor::full([z.size()[0]], f64::NAN, (Kind::Float, self.device))
            }
        }
    }
}
