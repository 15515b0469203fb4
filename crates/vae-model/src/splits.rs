//! Which images training and evaluation see for each split: one statement of the rule, used by
//! the [`Trainer`](crate::Trainer) and by evaluation without one.
//!
//! Validation and test images are binarized once with `data.eval_binarization_seed`, so every
//! run and every estimator sees the same binary images (the fix of ORIGINAL §9 D2).
//! Training images are binarized once with `train.seed` under static binarization and stay
//! grey otherwise (drawn per epoch by vae-data's batches).

use vae_data::binarize::binarize_once;
use vae_data::{Binarization, Dataset, Split, SplitKind};

use crate::config::ExperimentConfig;

/// The training images as the trainer holds them: binarized once with `train.seed` under
/// static binarization, grey otherwise.
pub fn training_split(data: &Dataset, cfg: &ExperimentConfig) -> Split {
    match cfg.data.train_binarization {
        Binarization::Static => binarize_once(&data.train, cfg.train.seed),
        _ => data.train.clone(),
    }
}

/// The binary images an evaluation of `which` sees: validation and test binarized once with
/// `data.eval_binarization_seed`; the training images as [`training_split`] holds them, then
/// binarized once with the same evaluation seed.
pub fn evaluation_split(data: &Dataset, cfg: &ExperimentConfig, which: SplitKind) -> Split {
    let seed = cfg.data.eval_binarization_seed;
    match which {
        SplitKind::Train => binarize_once(&training_split(data, cfg), seed),
        other => binarize_once(data.split(other), seed),
    }
}
