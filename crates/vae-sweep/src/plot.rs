//! `summary.png`: test NLL (or test -ELBO when the sweep does not evaluate) against the swept
//! value, one dot per run, the mean over seeds with a ±1 s.d. bar per setting, a line through
//! the means of each series, and a legend when there are several series; drawn by
//! `vae_io::plot::sweep_summary` from this sweep's runs and groups.

use vae_io::plot::{sweep_summary, RgbImage, RunValue, SettingStat, SummaryPlot, XAxis};

use crate::plan::Plan;
use crate::results::RunResult;
use crate::spec::Axis;
use crate::summary::Group;

/// Draws the plot.
pub fn draw(plan: &Plan, results: &[RunResult], groups: &[Group]) -> vae_io::Result<RgbImage> {
    let use_nll = results.iter().any(|r| r.test_nll.is_some());
    let value = |r: &RunResult| {
        if use_nll {
            r.test_nll
        } else {
            r.test_neg_elbo
        }
    };
    let stat = |g: &Group| if use_nll { g.nll } else { g.test };
    let what = if use_nll {
        match &plan.sweep.eval {
            Some(e) => format!("test NLL ({})", e.describe()),
            None => "test NLL".into(),
        }
    } else {
        "test -ELBO".into()
    };
    let (x_label, x_axis) = match plan.sweep.axis(&plan.runs) {
        Axis::Numeric { label } => {
            let integer = plan.runs.iter().all(|r| r.x.fract() == 0.0);
            (label, XAxis::Numeric { integer })
        }
        Axis::Categorical { labels } => ("setting".to_string(), XAxis::Categorical { labels }),
    };
    // Series in order of first appearance.
    let mut series: Vec<String> = Vec::new();
    for r in &plan.runs {
        if !series.contains(&r.series) {
            series.push(r.series.clone());
        }
    }
    let index = |s: &str| series.iter().position(|x| x == s).unwrap_or(0);
    let settings = groups
        .iter()
        .filter_map(|g| {
            let s = stat(g);
            Some(SettingStat {
                series: index(&g.series),
                x: g.x,
                mean: s.mean?,
                sd: s.sd,
            })
        })
        .collect();
    let runs = plan
        .runs
        .iter()
        .zip(results)
        .filter_map(|(r, res)| {
            Some(RunValue {
                series: index(&r.series),
                x: r.x,
                value: value(res)?,
                // One column per seed, in run order.
                column: plan
                    .runs
                    .iter()
                    .filter(|o| o.setting == r.setting && o.index < r.index)
                    .count(),
            })
        })
        .collect();
    sweep_summary(&SummaryPlot {
        title: format!("{}: {what} vs {x_label}", plan.sweep.name),
        y_label: format!("{what}, nats"),
        x_label,
        x_axis,
        series: series.clone(),
        settings,
        runs,
    })
}
