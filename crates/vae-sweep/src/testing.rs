//! Result files for the tests, complete and valid, made with vae-io's types (its readers refuse
//! partial ones): what `vae train` and `vae eval` would write, with the numbers a test picks.

use std::path::Path;

use vae_io::results::{
    EpochMetrics, Estimate, EvalSummary, IsEstimate, IwaePoint, SplitElbo, TrainResults,
};
use vae_io::run_dir::RunDir;

fn split(neg_elbo: f64, images: usize) -> SplitElbo {
    SplitElbo {
        neg_elbo,
        rec: neg_elbo - 20.0,
        kl: 20.0,
        images,
    }
}

/// One line of `metrics.jsonl`: epoch `epoch` of `epochs`, `seconds` long.
pub fn epoch(epoch: usize, epochs: usize, seconds: f64, best: bool) -> EpochMetrics {
    EpochMetrics {
        epoch,
        epochs,
        global_step: 50 * epoch as u64,
        train_neg_elbo: 150.0,
        train_rec: 130.0,
        train_kl: 20.0,
        warmup: 1.0,
        lr: 1e-3,
        grad_norm: 10.0,
        validation: Some(split(140.0, 1000)),
        best,
        skipped: 0,
        seconds,
        end_time: "2026-01-01T00:00:00Z".into(),
    }
}

/// `results.json` of a run whose best epoch is `best_epoch`.
pub fn train_results(best_epoch: usize, valid_neg_elbo: f64, test_neg_elbo: f64) -> TrainResults {
    TrainResults {
        checkpoint: "best".into(),
        best_epoch: Some(best_epoch),
        validation: Some(split(valid_neg_elbo, 1000)),
        test: split(test_neg_elbo, 10000),
        test_binarization: "fixed".into(),
    }
}

/// An IS summary (`eval-is-test.json`) with NLL `nll` and standard error `stderr`.
pub fn eval_is(nll: f64, stderr: f64, images: usize, wall_seconds: f64) -> EvalSummary {
    EvalSummary {
        split: "test".into(),
        images,
        checkpoint: "best".into(),
        wall_seconds,
        ms_per_image: 1000.0 * wall_seconds / images as f64,
        estimate: Estimate::Is(IsEstimate {
            estimate_nll: nll,
            stderr: Some(stderr),
            mc_stderr: Some(0.01),
            mc_stderr_replicates: None,
            khat_above_0_5: 0,
            khat_above_0_7: 0,
            flagged: 0,
            ais_check: None,
            reestimated: None,
            neg_elbo: nll + 3.0,
            neg_elbo_stderr: Some(stderr),
            iwae_curve: vec![IwaePoint {
                k: 100,
                nll,
                nll_stderr: Some(stderr),
            }],
            settings: serde_json::json!({"num_samples": 100, "seed": 0}),
        }),
        shard: None,
        shards: None,
    }
}

/// Writes a trained and IS-evaluated run into `dir`: `metrics.jsonl` with one line per entry
/// of `epoch_seconds` (epochs 1, 2, ... of as many), `results.json` and `eval-is-test.json`.
pub fn write_finished_run(
    dir: &Path,
    epoch_seconds: &[f64],
    results: &TrainResults,
    eval: &EvalSummary,
) {
    let run = RunDir::new(dir);
    std::fs::create_dir_all(dir).unwrap();
    let n = epoch_seconds.len();
    for (i, s) in epoch_seconds.iter().enumerate() {
        epoch(i + 1, n, *s, true).append(&run.metrics()).unwrap();
    }
    results.write(&run.results()).unwrap();
    eval.write(&run.eval_summary("is", "test")).unwrap();
}
