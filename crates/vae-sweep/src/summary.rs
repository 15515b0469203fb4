//! The sweep summary: `summary.md`, `summary.csv` and `summary.png`, read from the run folders
//! alone, so every backend (and a half-finished sweep) gets the same one.

use std::fmt::Write as _;

use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::plot;
use crate::results::{collect, RunResult};
use crate::spec::{Override, Run};

/// Mean and sample standard deviation (none for a single value).
pub fn mean_sd(xs: &[f64]) -> Option<(f64, Option<f64>)> {
    if xs.is_empty() {
        return None;
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let sd = (xs.len() > 1)
        .then(|| (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
    Some((mean, sd))
}

/// One setting's runs, summarised over seeds.
#[derive(Debug, Clone)]
pub struct Group {
    /// Setting label.
    pub label: String,
    /// Swept overrides.
    pub overrides: String,
    /// Runs of the setting, and how many of them have each number.
    pub runs: usize,
    /// Validation -ELBO: mean, s.d., count.
    pub valid: Stat,
    /// Test -ELBO.
    pub test: Stat,
    /// Test NLL.
    pub nll: Stat,
    /// Plot position.
    pub x: f64,
    /// Plot series.
    pub series: String,
}

/// Mean and s.d. of the runs that have a value, and their count.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stat {
    /// Mean.
    pub mean: Option<f64>,
    /// Sample standard deviation (two values or more).
    pub sd: Option<f64>,
    /// Number of values.
    pub n: usize,
}

impl Stat {
    fn of(xs: &[f64]) -> Stat {
        match mean_sd(xs) {
            Some((mean, sd)) => Stat {
                mean: Some(mean),
                sd,
                n: xs.len(),
            },
            None => Stat::default(),
        }
    }

    fn show(&self, runs: usize) -> String {
        let Some(m) = self.mean else {
            return "–".into();
        };
        let mut s = match self.sd {
            Some(sd) => format!("{m:.2} ± {sd:.2}"),
            None => format!("{m:.2}"),
        };
        if self.n < runs {
            s += &format!(" ({} of {runs})", self.n);
        }
        s
    }
}

/// Groups runs by setting, in sweep order.
pub fn groups(runs: &[Run], results: &[RunResult]) -> Vec<Group> {
    let mut out: Vec<Group> = Vec::new();
    for (run, _) in runs.iter().zip(results) {
        if out.len() > run.setting {
            continue;
        }
        let members: Vec<&RunResult> = runs
            .iter()
            .zip(results)
            .filter(|(r, _)| r.setting == run.setting)
            .map(|(_, res)| res)
            .collect();
        let pick = |f: fn(&RunResult) -> Option<f64>| -> Vec<f64> {
            members.iter().filter_map(|m| f(m)).collect()
        };
        out.push(Group {
            label: run.setting_label.clone(),
            overrides: overrides_text(&run.overrides),
            runs: members.len(),
            valid: Stat::of(&pick(|m| m.valid_neg_elbo)),
            test: Stat::of(&pick(|m| m.test_neg_elbo)),
            nll: Stat::of(&pick(|m| m.test_nll)),
            x: run.x,
            series: run.series.clone(),
        });
    }
    out
}

fn overrides_text(o: &[Override]) -> String {
    o.iter()
        .map(Override::display)
        .collect::<Vec<_>>()
        .join(" ")
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn f2(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "–".into())
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|")
}

/// `summary.csv`: one `run` row per run, then `mean` and `sd` rows per setting.
pub fn csv(runs: &[Run], results: &[RunResult], groups: &[Group]) -> String {
    let mut s = String::from(
        "kind,setting,run,overrides,seed,n,epochs,best_epoch,valid_neg_elbo,test_neg_elbo,test_nll,test_nll_stderr,nll_images,wall_seconds,status\n",
    );
    let num = |v: Option<f64>| v.map(|v| format!("{v:.6}")).unwrap_or_default();
    for (run, r) in runs.iter().zip(results) {
        let _ = writeln!(
            s,
            "run,{},{},{},{},1,{},{},{},{},{},{},{},{},{}",
            csv_field(&run.setting_label),
            csv_field(&run.name),
            csv_field(&overrides_text(&run.overrides)),
            opt(run.seed),
            opt(r.epochs),
            opt(r.best_epoch),
            num(r.valid_neg_elbo),
            num(r.test_neg_elbo),
            num(r.test_nll),
            num(r.test_nll_stderr),
            opt(r.nll_images),
            r.wall_seconds
                .map(|v| format!("{v:.1}"))
                .unwrap_or_default(),
            csv_field(&r.status_text())
        );
    }
    for g in groups {
        for (kind, f) in [
            ("mean", (|s: &Stat| s.mean) as fn(&Stat) -> Option<f64>),
            ("sd", |s: &Stat| s.sd),
        ] {
            let _ = writeln!(
                s,
                "{kind},{},,{},,{},,,{},{},{},,,,",
                csv_field(&g.label),
                csv_field(&g.overrides),
                g.nll.n.max(g.test.n),
                num(f(&g.valid)),
                num(f(&g.test)),
                num(f(&g.nll)),
            );
        }
    }
    s
}

/// The settings table (mean ± s.d. over seeds), in Markdown.
pub fn settings_table(groups: &[Group]) -> String {
    let mut s = String::from(
        "| setting | runs | best validation -ELBO | test -ELBO | test NLL |\n|---|---:|---:|---:|---:|\n",
    );
    for g in groups {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            md_cell(&g.label),
            g.runs,
            g.valid.show(g.runs),
            g.test.show(g.runs),
            g.nll.show(g.runs)
        );
    }
    s
}

/// `summary.md`.
pub fn markdown(plan: &Plan, results: &[RunResult], groups: &[Group], plot_file: &str) -> String {
    let sweep = &plan.sweep;
    let done = results.iter().filter(|r| r.status == "done").count();
    let base = sweep
        .base
        .strip_prefix(&plan.root)
        .unwrap_or(&sweep.base)
        .display()
        .to_string();
    let mut s = format!("# Sweep `{}`\n\n", sweep.name);
    let _ = writeln!(
        s,
        "{} runs of `{base}` on {}, {done} finished{}.",
        plan.runs.len(),
        sweep.device,
        match &sweep.eval {
            Some(e) => format!("; test NLL by {}", e.describe()),
            None => "; no NLL evaluation".into(),
        }
    );
    if !sweep.set.is_empty() {
        let _ = writeln!(
            s,
            "Every run: `{}`.",
            sweep
                .set
                .iter()
                .map(Override::display)
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    s += "\n## Settings (mean ± s.d. over seeds, nats)\n\n";
    s += &settings_table(groups);
    s += "\n## Runs\n\n| run | overrides | seed | epochs | best epoch | best validation -ELBO | test -ELBO | test NLL ± s.e. | wall time | status |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---|\n";
    for (run, r) in plan.runs.iter().zip(results) {
        let nll = match (r.test_nll, r.test_nll_stderr) {
            (Some(v), Some(se)) => format!("{v:.2} ± {se:.2}"),
            (Some(v), None) => format!("{v:.2}"),
            _ => "–".into(),
        };
        let wall = r
            .wall_seconds
            .map(|w| {
                if w < 600.0 {
                    format!("{w:.1} s")
                } else {
                    format!("{:.1} min", w / 60.0)
                }
            })
            .unwrap_or_else(|| "–".into());
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {nll} | {wall} | {} |",
            md_cell(&run.name),
            md_cell(&overrides_text(&run.overrides)),
            run.seed
                .map(|v| v.to_string())
                .unwrap_or_else(|| "–".into()),
            r.epochs
                .map(|v| v.to_string())
                .unwrap_or_else(|| "–".into()),
            r.best_epoch
                .map(|v| v.to_string())
                .unwrap_or_else(|| "–".into()),
            f2(r.valid_neg_elbo),
            f2(r.test_neg_elbo),
            md_cell(&r.status_text())
        );
    }
    let unreadable = problems(plan, results);
    if !unreadable.is_empty() {
        s += "\n## Unreadable result files\n\nTheir numbers are left out above.\n\n";
        for p in &unreadable {
            let _ = writeln!(s, "- {p}");
        }
    }
    let _ = write!(
        s,
        "\n![test NLL against the swept value]({plot_file})\n\n\
         -ELBO values are those of the checkpoint that was best on validation; the test set is \
         evaluated once, with that checkpoint. Wall time is the sum of the training epochs in \
         `metrics.jsonl` (resumed segments included) and the NLL evaluation. Each run's folder is \
         `{}/<run>`.\n",
        plan.out.display()
    );
    s
}

/// One line per malformed result file: `` `run`: `` and vae-io's message (file, line, key).
pub fn problems(plan: &Plan, results: &[RunResult]) -> Vec<String> {
    plan.runs
        .iter()
        .zip(results)
        .flat_map(|(run, r)| {
            r.unreadable
                .iter()
                .map(move |u| format!("`{}`: {}", run.name, u.message))
        })
        .collect()
}

/// Files written by [`write()`], and the settings table for the terminal.
#[derive(Debug)]
pub struct Written {
    /// Paths written.
    pub files: Vec<String>,
    /// The settings table, Markdown.
    pub settings_table: String,
    /// The malformed result files, one line each ([`problems`]); `summary.md` lists them too.
    pub problems: Vec<String>,
}

/// Reads every run folder and writes `summary.md`, `summary.csv` and `summary.png`.
pub fn write(plan: &Plan) -> Result<Written> {
    let results: Vec<RunResult> = plan.runs.iter().map(|r| collect(plan, r)).collect();
    let groups = groups(&plan.runs, &results);
    let (md, csv_path, png) = (
        plan.out.join("summary.md"),
        plan.out.join("summary.csv"),
        plan.out.join("summary.png"),
    );
    vae_io::write_atomic(
        &md,
        markdown(plan, &results, &groups, "summary.png").as_bytes(),
    )?;
    vae_io::write_atomic(&csv_path, csv(&plan.runs, &results, &groups).as_bytes())?;
    plot::draw(plan, &results, &groups)
        .and_then(|image| image.to_png())
        .and_then(|bytes| vae_io::write_atomic(&png, &bytes))
        .map_err(|error| Error::Plot {
            path: png.clone(),
            error: Box::new(error),
        })?;
    Ok(Written {
        files: [md, csv_path, png]
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        settings_table: settings_table(&groups),
        problems: problems(plan, &results),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{epoch, eval_is, train_results, write_finished_run};
    use vae_io::run_dir::RunDir;

    #[test]
    fn mean_and_sample_sd() {
        let (m, sd) = mean_sd(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(m, 2.5);
        assert!((sd.unwrap() - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(mean_sd(&[7.0]), Some((7.0, None)));
        assert_eq!(mean_sd(&[]), None);
    }

    #[test]
    fn summary_reads_run_folders() {
        let tmp = tempfile::tempdir().unwrap();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let plan = Plan::new(
            &root,
            &root.join("configs/sweeps/smoke.json"),
            Some(tmp.path()),
        )
        .unwrap();
        // Two seeds of the first setting are complete, one run of the second is half done.
        for (i, nll) in [(0, 100.0), (1, 104.0)] {
            write_finished_run(
                &plan.run_dir(&plan.runs[i]),
                &[1.5, 2.5],
                &train_results(2, nll + 10.0, nll + 5.0),
                &eval_is(nll, 0.5, 100, 1.0),
            );
        }
        let dir = RunDir::new(plan.run_dir(&plan.runs[2]));
        std::fs::create_dir_all(dir.checkpoints()).unwrap();
        std::fs::write(dir.checkpoint("last"), "").unwrap();
        epoch(1, 2, 3.0, true).append(&dir.metrics()).unwrap();

        let results: Vec<RunResult> = plan.runs.iter().map(|r| collect(&plan, r)).collect();
        assert_eq!(results[0].epochs, Some(2));
        assert_eq!(results[0].wall_seconds, Some(5.0));
        assert_eq!(results[0].test_nll, Some(100.0));
        assert_eq!(results[2].status, "unfinished");
        assert_eq!(results[2].epochs, Some(1));
        assert_eq!(results[2].wall_seconds, Some(3.0));
        assert_eq!(results[3].status, "not started");
        let g = groups(&plan.runs, &results);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].nll.mean, Some(102.0));
        assert!((g[0].nll.sd.unwrap() - 8f64.sqrt()).abs() < 1e-12);
        assert_eq!(g[1].nll.n, 0);
        let table = settings_table(&g);
        assert!(
            table.contains("| iaf0 | 2 | 112.00 ± 2.83 | 107.00 ± 2.83 | 102.00 ± 2.83 |"),
            "{table}"
        );
        let c = csv(&plan.runs, &results, &g);
        let lines: Vec<&str> = c.lines().collect();
        assert_eq!(lines.len(), 1 + 4 + 4);
        assert!(lines[1].starts_with("run,iaf0,\"iaf0,seed=1\",model.flow=null,1,1,2,2,110.000000,105.000000,100.000000,0.500000,100,5.0,done"), "{}", lines[1]);
        assert!(
            lines[5].starts_with("mean,iaf0,,model.flow=null,,2,,,112.000000"),
            "{}",
            lines[5]
        );
        let md = markdown(&plan, &results, &g, "summary.png");
        assert!(md.contains("| 100.00 ± 0.50 | 5.0 s | done |"), "{md}");
        assert!(!md.contains("Unreadable"), "{md}");
        let written = write(&plan).unwrap();
        assert!(written.problems.is_empty(), "{:?}", written.problems);
        assert!(tmp.path().join("summary.png").is_file());

        // A malformed results.json is reported for its run, with the key; the sweep goes on.
        let dir = RunDir::new(plan.run_dir(&plan.runs[1]));
        std::fs::write(dir.results(), r#"{"best_epoch": 2}"#).unwrap();
        let written = write(&plan).unwrap();
        assert_eq!(written.problems.len(), 1, "{:?}", written.problems);
        let problem = &written.problems[0];
        assert!(problem.starts_with("`iaf0,seed=2`: "), "{problem}");
        assert!(
            problem.contains("results.json:1:17: key `checkpoint`: missing field"),
            "{problem}"
        );
        let md = std::fs::read_to_string(tmp.path().join("summary.md")).unwrap();
        assert!(md.contains("| done (unreadable: results.json) |"), "{md}");
        assert!(
            md.contains(&format!(
                "## Unreadable result files\n\nTheir numbers are left out above.\n\n- {problem}\n"
            )),
            "{md}"
        );
        assert!(
            md.contains("| iaf0 | 2 | 110.00 (1 of 2) | 105.00 (1 of 2) | 102.00 ± 2.83 |"),
            "{md}"
        );
        let csv = std::fs::read_to_string(tmp.path().join("summary.csv")).unwrap();
        assert!(
            csv.lines()
                .nth(2)
                .unwrap()
                .ends_with(",5.0,done (unreadable: results.json)"),
            "{csv}"
        );
    }
}
