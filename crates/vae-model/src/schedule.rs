//! KL warm-up and learning-rate schedules, both step functions of completed epochs (ORIGINAL §4.3).

use crate::config::TrainConfig;

/// Warm-up factor `w` for a step taken after `epochs_done` complete epochs:
/// `min(1, epochs_done / warmup_epochs)`, or 1 without warm-up. So the first epoch trains with
/// `w = 0` and `w` reaches 1 at epoch `warmup_epochs + 1` (1-based), as in the original (D18).
pub fn warmup(cfg: &TrainConfig, epochs_done: usize) -> f64 {
    if cfg.warmup_epochs == 0 {
        1.0
    } else {
        (epochs_done as f64 / cfg.warmup_epochs as f64).min(1.0)
    }
}

/// Learning rate after `epochs_done` complete epochs:
/// `learning_rate * lr_decay_factor ^ floor(epochs_done / lr_decay_epochs)`.
pub fn learning_rate(cfg: &TrainConfig, epochs_done: usize) -> f64 {
    let periods = (epochs_done / cfg.lr_decay_epochs.max(1)) as i32;
    cfg.learning_rate * cfg.lr_decay_factor.powi(periods)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn original_schedule_points() {
        // ORIGINAL §10.8: w(epoch 1) = 0, w(epoch 201) = 1, lr(epoch 801) = 5e-4 (1-based epochs,
        // so epochs_done = epoch - 1).
        let cfg = TrainConfig::default();
        assert_eq!(warmup(&cfg, 0), 0.0);
        assert_eq!(warmup(&cfg, 100), 0.5);
        assert_eq!(warmup(&cfg, 199), 199.0 / 200.0);
        assert_eq!(warmup(&cfg, 200), 1.0);
        assert_eq!(warmup(&cfg, 2000), 1.0);
        assert_eq!(learning_rate(&cfg, 799), 1e-3);
        assert_eq!(learning_rate(&cfg, 800), 5e-4);
        assert_eq!(learning_rate(&cfg, 1600), 2.5e-4);
        assert_eq!(learning_rate(&cfg, 2499), 1.25e-4);
        let none = TrainConfig {
            warmup_epochs: 0,
            ..cfg
        };
        assert_eq!(warmup(&none, 0), 1.0);
    }
}
