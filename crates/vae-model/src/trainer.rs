//! The training loop: epochs of Adam steps on the warm-up-weighted negative ELBO, validation
//! every epoch, best-model tracking and exact resumption from checkpoints.
//!
//! Reproducibility: tch's RNG cannot be saved (docs/TOOLCHAIN.md §5), so it is re-seeded before
//! every step from `(seed, epoch, step)`, and the data's shuffles and Bernoulli draws are keyed the
//! same way (vae-data). A run resumed from a checkpoint taken at any step boundary therefore
//! replays exactly what the uninterrupted run would have done.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};
use vae_data::binarize::stream_seed;
use vae_data::{BatchConfig, Batches, Binarization, Dataset, Split, SplitKind};

use crate::adam::Adam;
use crate::checkpoint::Checkpoint;
use crate::config::ExperimentConfig;
use crate::error::{Error, Result};
use crate::schedule;
use crate::splits::{evaluation_split, training_split};
use crate::vae::Vae;

const TAG_STEP: u64 = 0x57e9;
const TAG_EVAL: u64 = 0xe7a1;

fn one() -> f64 {
    1.0
}

/// Where training stands; saved in every checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Completed epochs.
    pub epochs_done: usize,
    /// Steps already taken in the current (incomplete) epoch.
    pub step_in_epoch: usize,
    /// Optimizer steps taken in total.
    pub global_step: u64,
    /// Best validation negative ELBO so far (nats), with its 1-based epoch.
    pub best: Option<(f64, usize)>,
    /// Running sums of the current epoch: rec, kl, grad norm, steps.
    pub partial: [f64; 4],
    /// Multiplier of the scheduled learning rate: halved by every rollback.
    #[serde(default = "one")]
    pub lr_scale: f64,
    /// Rollbacks to a checkpoint after non-finite steps.
    #[serde(default)]
    pub rollbacks: usize,
    /// Non-finite steps skipped in total, and in a row now.
    #[serde(default)]
    pub skipped: (u64, usize),
}

impl Default for TrainState {
    fn default() -> Self {
        TrainState {
            epochs_done: 0,
            step_in_epoch: 0,
            global_step: 0,
            best: None,
            partial: [0.0; 4],
            lr_scale: 1.0,
            rollbacks: 0,
            skipped: (0, 0),
        }
    }
}

/// What one step did.
#[derive(Debug, Clone, Copy)]
pub struct StepReport {
    /// 1-based epoch.
    pub epoch: usize,
    /// Steps taken in this epoch, this one included.
    pub step_in_epoch: usize,
    /// Steps per epoch.
    pub steps_per_epoch: usize,
    /// Mean reconstruction loss of the batch, nats (BN in training mode).
    pub rec: f64,
    /// Mean single-sample KL of the batch, nats.
    pub kl: f64,
    /// The warm-up factor used.
    pub warmup: f64,
    /// The learning rate used.
    pub lr: f64,
    /// Global gradient L2 norm before the update.
    pub grad_norm: f64,
    /// The loss or a gradient was not finite, so no update was applied.
    pub skipped: bool,
}

/// Negative ELBO of a data split, BN in inference mode, one posterior sample per image.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Mean `rec + kl`, nats.
    pub neg_elbo: f64,
    /// Mean reconstruction loss, nats.
    pub rec: f64,
    /// Mean KL, nats.
    pub kl: f64,
    /// Images evaluated.
    pub images: usize,
}

/// What one completed epoch did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochReport {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean train negative ELBO (`rec + kl`, unweighted by warm-up, BN in training mode).
    pub train_neg_elbo: f64,
    /// Mean train reconstruction loss.
    pub train_rec: f64,
    /// Mean train KL.
    pub train_kl: f64,
    /// Warm-up factor used during the epoch.
    pub warmup: f64,
    /// Learning rate used during the epoch.
    pub lr: f64,
    /// Mean gradient norm over the epoch's steps.
    pub grad_norm: f64,
    /// Validation numbers (absent without a validation split).
    pub validation: Option<EvalReport>,
    /// Whether this epoch is the best so far by validation negative ELBO (always true without
    /// validation, so "best" means "last" then).
    pub improved: bool,
    /// Wall-clock seconds of the epoch, validation included.
    pub seconds: f64,
    /// Steps of this epoch skipped because the loss or a gradient was not finite.
    pub skipped: usize,
}

/// How a call to [`Trainer::run_epoch`] ended.
#[derive(Debug)]
pub enum EpochOutcome {
    /// The epoch finished.
    Completed(Box<EpochReport>),
    /// Stopped between steps (by the stop flag or the step limit); the state says where.
    Interrupted,
    /// `train.max_consecutive_skips` non-finite steps in a row: call
    /// [`Trainer::rollback`] with the last good checkpoint. The state's step counters name the
    /// step that made it so; with deferred read-back (CUDA) the weights may already include up
    /// to 31 later steps.
    Diverged,
}

/// Trains a [`Vae`] on a dataset; usable without the CLI.
pub struct Trainer {
    cfg: ExperimentConfig,
    device: Device,
    vs: nn::VarStore,
    vae: Vae,
    adam: Adam,
    train: Split,
    validation: Split,
    test: Split,
    state: TrainState,
    /// Test-only fault injection: make the loss NaN for `.1` steps from global step `.0`.
    nan_injection: Option<(u64, u64)>,
    /// Whether a step's skip decision stays on the device and its figures are read back every
    /// few steps (on CUDA: the host never waits for the GPU inside an epoch) or after every
    /// step (on the CPU, where nothing waits).
    deferred_readback: bool,
    /// The model has weight-normalized layers whose data-dependent initialisation is still to
    /// run, on the first step's batch (NORMALIZATION §6): a fresh run, or a checkpoint from
    /// before the first step.
    data_init_pending: bool,
}

impl Trainer {
    /// Builds the model (initialised from `cfg.train.seed`), the optimizer and the data.
    /// Validation and test sets are binarized once here with `cfg.data.eval_binarization_seed`.
    /// Weight-normalized layers get their data-dependent initialisation on the first training
    /// batch, right before the first step (NORMALIZATION §6).
    pub fn new(cfg: ExperimentConfig, data: Dataset, device: Device) -> Result<Trainer> {
        cfg.validate()?;
        if cfg.train.batch_size > data.train.len() {
            return Err(Error::bad(
                "train.batch_size",
                cfg.train.batch_size,
                &format!("at most the {} training images", data.train.len()),
            ));
        }
        // tch has one process-wide generator: hold vae-eval's lock from seeding to the last draw
        // so that trainers and estimators on other threads cannot interleave their draws.
        let rng = vae_eval::rng_guard();
        tch::manual_seed(cfg.train.seed as i64);
        let vs = nn::VarStore::new(device);
        let vae = Vae::new(&vs.root(), &cfg.model)?;
        drop(rng);
        // Batch norm in training mode normalises over the batch: one image per batch has no
        // variance to divide by (vae-nn refuses it with a panic, as an invariant of the step).
        let has_batch_norm = vs.variables().keys().any(|k| k.ends_with("running_var"));
        if has_batch_norm && cfg.train.batch_size < 2 {
            return Err(Error::bad(
                "train.batch_size",
                cfg.train.batch_size,
                "at least 2: this model has batch norm, which needs two images per batch",
            ));
        }
        let data_init_pending = vae.uses_weight_norm();
        if data_init_pending && cfg.train.batch_size < 2 {
            return Err(Error::bad(
                "train.batch_size",
                cfg.train.batch_size,
                "at least 2: this model has weight norm, whose data-dependent initialisation \
                 needs two images to measure a variance (NORMALIZATION §6)",
            ));
        }
        let adam = Adam::new(&vs, cfg.train.adam);
        Ok(Trainer {
            validation: evaluation_split(&data, &cfg, SplitKind::Validation),
            test: evaluation_split(&data, &cfg, SplitKind::Test),
            train: training_split(&data, &cfg),
            cfg,
            device,
            vs,
            vae,
            adam,
            state: TrainState::default(),
            nan_injection: None,
            deferred_readback: device.is_cuda(),
            data_init_pending,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ExperimentConfig {
        &self.cfg
    }
    /// The model.
    pub fn vae(&self) -> &Vae {
        &self.vae
    }
    /// The variables (weights and BN statistics).
    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }
    /// The optimizer's state as a checkpoint stores it: `adam.m.<var>`, `adam.v.<var>` (shaped as
    /// the variables) and `adam.step` (`[1]`, int64), sorted by variable name.
    pub fn adam_state(&self) -> Vec<(String, Tensor)> {
        self.adam.state_tensors()
    }
    /// Where training stands.
    pub fn state(&self) -> &TrainState {
        &self.state
    }
    /// The device.
    pub fn device(&self) -> Device {
        self.device
    }
    /// Test-only switch: from global step `from`, the next `count` steps get a NaN loss (once).
    pub fn inject_nan(&mut self, from: u64, count: u64) {
        self.nan_injection = Some((from, count));
    }

    /// Chooses how step figures come back from the device (default: deferred on CUDA, per step
    /// on the CPU). Both give the same training; the switch lets tests run the deferred path
    /// on a CPU.
    pub fn set_deferred_readback(&mut self, deferred: bool) {
        self.deferred_readback = deferred;
    }

    /// Restores the last good checkpoint after [`EpochOutcome::Diverged`], halving the learning
    /// rate; fails with [`Error::Diverged`] once `train.max_rollbacks` is exhausted.
    pub fn rollback(&mut self, checkpoint: &Path) -> Result<()> {
        let (rollbacks, lr_scale) = (self.state.rollbacks + 1, self.state.lr_scale * 0.5);
        let (skipped, at) = (self.state.skipped, self.state.global_step);
        if rollbacks > self.cfg.train.max_rollbacks {
            return Err(Error::Diverged {
                steps: skipped.1,
                global_step: at,
                rollbacks: self.state.rollbacks,
                lr_scale: self.state.lr_scale,
            });
        }
        self.load_checkpoint(checkpoint)?;
        self.state.rollbacks = rollbacks;
        self.state.lr_scale = lr_scale;
        self.state.skipped = (skipped.0, 0);
        Ok(())
    }

    /// Optimizer steps per epoch (the incomplete last batch is dropped).
    pub fn steps_per_epoch(&self) -> usize {
        self.train.len() / self.cfg.train.batch_size
    }
    /// Whether every configured epoch is done.
    pub fn is_done(&self) -> bool {
        self.state.epochs_done >= self.cfg.train.epochs
    }
    /// The fixed-binarized validation or test set, or the training images.
    pub fn split(&self, which: SplitKind) -> &Split {
        match which {
            SplitKind::Train => &self.train,
            SplitKind::Validation => &self.validation,
            SplitKind::Test => &self.test,
        }
    }

    /// Training batches; static binarization was already applied in `new`.
    fn batches_of<'a>(train: &'a Split, cfg: &ExperimentConfig, device: Device) -> Batches<'a> {
        let binarization = match cfg.data.train_binarization {
            Binarization::Static => Binarization::None,
            b => b,
        };
        let bc = BatchConfig {
            batch_size: cfg.train.batch_size,
            shuffle: true,
            drop_last: true,
            binarization,
        };
        Batches::new(train, bc, cfg.train.seed, device)
            .expect("batch size was validated in Trainer::new")
    }

    /// Runs the rest of the current epoch, then validates. Stops early, between steps, when
    /// `stop` is set or `global_step` reaches `max_steps`.
    pub fn run_epoch(
        &mut self,
        stop: &AtomicBool,
        max_steps: Option<u64>,
        mut on_step: impl FnMut(&StepReport),
    ) -> Result<EpochOutcome> {
        let start = Instant::now();
        let epochs_done = self.state.epochs_done;
        let warmup = schedule::warmup(&self.cfg.train, epochs_done);
        let lr = schedule::learning_rate(&self.cfg.train, epochs_done) * self.state.lr_scale;
        let steps = self.steps_per_epoch();
        let seed = self.cfg.train.seed;
        let deferred = self.deferred_readback;
        let mut ledger = StepLedger {
            epoch: epochs_done + 1,
            steps_per_epoch: steps,
            warmup,
            lr,
            max_consecutive_skips: self.cfg.train.max_consecutive_skips,
            pending: PendingSteps::default(),
            skipped: 0,
        };
        {
            let batches = Self::batches_of(&self.train, &self.cfg, self.device);
            for batch in batches
                .epoch(epochs_done as u64)
                .skip(self.state.step_in_epoch)
            {
                if stop.load(Ordering::Relaxed)
                    || max_steps.is_some_and(|m| self.state.global_step >= m)
                {
                    return Ok(ledger
                        .settle(&mut self.state, &mut on_step)
                        .unwrap_or(EpochOutcome::Interrupted));
                }
                if self.data_init_pending {
                    crate::data_init::initialise_for_training(&self.vae, &batch.images, seed)?;
                    self.data_init_pending = false;
                }
                let rng = vae_eval::rng_guard();
                tch::manual_seed(stream_seed(&[
                    TAG_STEP,
                    seed,
                    epochs_done as u64,
                    self.state.step_in_epoch as u64,
                ]) as i64);
                let terms = self.vae.elbo_terms(&batch.images, true);
                drop(rng);
                let rec = terms.rec.mean(Kind::Float);
                let kl = terms.kl.mean(Kind::Float);
                let mut loss = &rec + &kl * warmup;
                if let Some((from, left)) = self.nan_injection {
                    if self.state.global_step >= from && left > 0 {
                        loss *= f64::NAN;
                        self.nan_injection = Some((from, left - 1));
                    }
                }
                self.adam.backward(&loss);
                let grad_sq = self.adam.grad_sq_norm();
                let figures = stack_f64(&[&loss, &rec, &kl, &grad_sq]);
                // A non-finite loss or gradient skips the update (the original has no guard).
                let figures = if deferred {
                    // Decided on the device, read back later: see `deferred_readback`.
                    // The rule of `update_allowed`, on the device.
                    let ok = loss.isfinite().logical_and(&grad_sq.isfinite());
                    self.adam.step_if(lr, &ok);
                    figures
                } else {
                    let figures = figures.to_device(Device::Cpu);
                    let [l, g] = [0, 3].map(|i| figures.double_value(&[i]));
                    if update_allowed(l, g) {
                        self.adam.step(lr);
                    }
                    figures
                };
                self.state.step_in_epoch += 1;
                self.state.global_step += 1;
                ledger.pending.push(self.state.step_in_epoch, figures);
                let due = !deferred || ledger.pending.due();
                if let Some(outcome) = due
                    .then(|| ledger.settle(&mut self.state, &mut on_step))
                    .flatten()
                {
                    return Ok(outcome);
                }
            }
        }
        if let Some(outcome) = ledger.settle(&mut self.state, &mut on_step) {
            return Ok(outcome);
        }
        let [rec, kl, gn, n] = self.state.partial;
        let n = n.max(1.0);
        let validation =
            (!self.validation.is_empty()).then(|| self.evaluate(SplitKind::Validation));
        let improved = match (validation, self.state.best) {
            (None, _) | (Some(_), None) => true,
            (Some(v), Some((best, _))) => v.neg_elbo < best,
        };
        self.state.epochs_done += 1;
        self.state.step_in_epoch = 0;
        self.state.partial = [0.0; 4];
        if improved {
            let value = validation.map(|v| v.neg_elbo).unwrap_or((rec + kl) / n);
            self.state.best = Some((value, self.state.epochs_done));
        }
        Ok(EpochOutcome::Completed(Box::new(EpochReport {
            epoch: self.state.epochs_done,
            train_neg_elbo: (rec + kl) / n,
            train_rec: rec / n,
            train_kl: kl / n,
            warmup,
            lr,
            grad_norm: gn / n,
            validation,
            improved,
            seconds: start.elapsed().as_secs_f64(),
            skipped: ledger.skipped,
        })))
    }

    /// Negative ELBO of a split with BN in inference mode and one posterior sample per image,
    /// drawn from a fixed seed so repeated evaluations of the same weights agree.
    pub fn evaluate(&self, which: SplitKind) -> EvalReport {
        let split = self.split(which);
        let tag = match which {
            SplitKind::Train => 0,
            SplitKind::Validation => 1,
            SplitKind::Test => 2,
        };
        let _rng = vae_eval::rng_guard();
        tch::manual_seed(stream_seed(&[TAG_EVAL, self.cfg.train.seed, tag]) as i64);
        let binarization = match which {
            SplitKind::Train => Binarization::Fixed,
            _ => Binarization::None, // validation and test were binarized in `new`
        };
        let cfg = BatchConfig {
            batch_size: self.cfg.train.eval_batch_size,
            shuffle: false,
            drop_last: false,
            binarization,
        };
        let batches = Batches::new(
            split,
            cfg,
            self.cfg.data.eval_binarization_seed,
            self.device,
        )
        .expect("eval batch size was validated");
        let (mut rec, mut kl) = (0.0, 0.0);
        tch::no_grad(|| {
            for batch in batches.epoch(0) {
                let t = self.vae.elbo_terms(&batch.images, false);
                rec += t.rec.sum(Kind::Double).double_value(&[]);
                kl += t.kl.sum(Kind::Double).double_value(&[]);
            }
        });
        let n = split.len().max(1) as f64;
        EvalReport {
            neg_elbo: (rec + kl) / n,
            rec: rec / n,
            kl: kl / n,
            images: split.len(),
        }
    }

    /// Writes weights, BN statistics, Adam state, training state and the config into one
    /// safetensors file, atomically ([`checkpoint::write`](crate::checkpoint::write)).
    pub fn save_checkpoint(&self, path: &Path) -> Result<()> {
        crate::checkpoint::write(
            path,
            &self.vs,
            self.adam.state_tensors(),
            &self.cfg,
            &self.state,
        )
    }

    /// Reads a checkpoint's config without loading its tensors into a model.
    pub fn checkpoint_config(path: &Path) -> Result<(ExperimentConfig, TrainState)> {
        let ck = Checkpoint::read(path)?;
        Ok((ck.config().clone(), ck.state().clone()))
    }

    /// Restores a checkpoint written by [`save_checkpoint`](Self::save_checkpoint). Fails, naming
    /// the difference, when it was written for another architecture.
    pub fn load_checkpoint(&mut self, path: &Path) -> Result<()> {
        self.restore(&Checkpoint::read(path)?)
    }

    /// [`load_checkpoint`](Self::load_checkpoint) from a checkpoint already read (e.g. one
    /// whose settings the caller has compared with its own).
    pub fn restore(&mut self, ck: &Checkpoint) -> Result<()> {
        let path = ck.path();
        // Every tensor is checked before anything is copied, so that a checkpoint refused here
        // leaves the model and the optimizer as they were (a rollback can then try the other
        // checkpoint; an error in the middle must not leave half-loaded weights).
        let restore = ck.restore_model(&self.vs, &self.cfg.model)?;
        // Checks all of its tensors before it copies any.
        self.adam.load_state(ck.tensors(), path)?;
        restore.apply();
        self.state = ck.state().clone();
        // g and b come from the checkpoint; one written before the first step holds them as
        // built, and initialises again as the uninterrupted run did (NORMALIZATION §6).
        self.data_init_pending = self.vae.uses_weight_norm() && self.state.global_step == 0;
        Ok(())
    }
}

/// The steps of one `run_epoch` call whose figures have not been accounted for yet, and what
/// their reports share.
struct StepLedger {
    epoch: usize,
    steps_per_epoch: usize,
    warmup: f64,
    lr: f64,
    max_consecutive_skips: usize,
    pending: PendingSteps,
    /// Steps of this call skipped so far.
    skipped: usize,
}

impl StepLedger {
    /// Reads back the pending steps' figures (one transfer), counts skips and sums for the
    /// epoch report, and reports each step; `Some(Diverged)` once `train.max_consecutive_skips`
    /// steps in a row were skipped. With deferred read-back the steps after that one have
    /// already run (as skips or updates): the caller rolls back to a checkpoint anyway.
    fn settle(
        &mut self,
        state: &mut TrainState,
        on_step: &mut impl FnMut(&StepReport),
    ) -> Option<EpochOutcome> {
        for (step_in_epoch, [loss, rec, kl, grad_sq]) in self.pending.read_back() {
            let grad_norm = grad_sq.sqrt();
            let finite = update_allowed(loss, grad_sq);
            if finite {
                state.skipped.1 = 0;
                let p = &mut state.partial;
                p[0] += rec;
                p[1] += kl;
                p[2] += grad_norm;
                p[3] += 1.0;
            } else {
                state.skipped.0 += 1;
                state.skipped.1 += 1;
                self.skipped += 1;
            }
            on_step(&StepReport {
                epoch: self.epoch,
                step_in_epoch,
                steps_per_epoch: self.steps_per_epoch,
                rec,
                kl,
                warmup: self.warmup,
                lr: self.lr,
                grad_norm,
                skipped: !finite,
            });
            if state.skipped.1 >= self.max_consecutive_skips {
                // The counters name the step that diverged (the weights may hold later steps).
                let ahead = state.step_in_epoch - step_in_epoch;
                state.step_in_epoch = step_in_epoch;
                state.global_step -= ahead as u64;
                return Some(EpochOutcome::Diverged);
            }
        }
        None
    }
}

/// Whether a step with this loss and squared gradient norm updates the weights: both finite
/// (the original has no guard). The deferred path applies the same rule on the device.
fn update_allowed(loss: f64, grad_sq: f64) -> bool {
    loss.is_finite() && grad_sq.is_finite()
}

/// 0-dim tensors stacked as one f64 vector on their device.
fn stack_f64(scalars: &[&Tensor]) -> Tensor {
    tch::no_grad(|| {
        Tensor::stack(
            &scalars
                .iter()
                .map(|t| t.to_kind(Kind::Double))
                .collect::<Vec<_>>(),
            0,
        )
    })
}

/// Steps whose figures (loss, rec, kl, squared gradient norm) are still on the device.
#[derive(Default)]
struct PendingSteps {
    /// `(step_in_epoch after the step, [4] f64 figures on the device or the host)`.
    steps: Vec<(usize, Tensor)>,
    /// When the first step now held was pushed.
    since: Option<Instant>,
}

impl PendingSteps {
    /// Read back after this many steps at the latest...
    const MAX_STEPS: usize = 32;
    /// ... or this long after the first one, so that progress stays live.
    const MAX_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

    fn push(&mut self, step_in_epoch: usize, figures: Tensor) {
        self.since.get_or_insert_with(Instant::now);
        self.steps.push((step_in_epoch, figures));
    }

    fn due(&self) -> bool {
        self.steps.len() >= Self::MAX_STEPS
            || self.since.is_some_and(|t| t.elapsed() >= Self::MAX_WAIT)
    }

    /// Every pending step's figures, in order, in one transfer.
    fn read_back(&mut self) -> Vec<(usize, [f64; 4])> {
        self.since = None;
        let steps = std::mem::take(&mut self.steps);
        if steps.is_empty() {
            return Vec::new();
        }
        let all = tch::no_grad(|| {
            Tensor::stack(&steps.iter().map(|(_, t)| t).collect::<Vec<_>>(), 0)
                .to_device(Device::Cpu)
        });
        let values = Vec::<f64>::try_from(all.reshape([-1])).expect("f64 figures");
        steps
            .iter()
            .enumerate()
            .map(|(i, (at, _))| (*at, std::array::from_fn(|j| values[4 * i + j])))
            .collect()
    }
}
