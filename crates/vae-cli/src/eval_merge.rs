//! `vae eval-merge`: the shards of one `vae eval --shard I/N` evaluation joined into the summary,
//! per-image CSV and (IS) plot that one unsharded `vae eval` writes.
//!
//! The shards must belong together: the same run, checkpoint (name and checksum), method, split,
//! settings (apart from each shard's `first_example`), `N` and image count, every shard `1..=N`
//! once, their images contiguous and complete. Every aggregate is recomputed from the per-image
//! values in image order with the functions vae-eval uses, so each equals the unsharded run's
//! bit for bit; the exceptions, which agree to rounding, are AIS's step-size and acceptance
//! traces (means over the shards weighted by their images) and the IS re-estimate's Monte Carlo
//! error (which `--shard` refuses anyway).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use vae_eval::stats::{combined_stderr, mean_and_stderr};
use vae_io::results::{
    read_csv, write_csv, AisEstimate, AisRow, AisTrace, BdmcEstimate, BdmcRow, CsvRow, Estimate,
    EvalSummary, IsEstimate, IsRow, IwaePoint, ShardInfo, ShardTime,
};
use vae_io::RunDir;

use crate::args::EvalMergeArgs;
use crate::run_dir::write_atomic;

/// One shard: its summary, where it was read, and its slice.
struct Shard {
    path: PathBuf,
    summary: EvalSummary,
    info: ShardInfo,
}

/// `vae eval-merge SHARD... [--out DIR]`.
pub fn run(args: EvalMergeArgs) -> Result<()> {
    let mut shards = Vec::new();
    for p in shard_files(&args.shards)? {
        let summary = EvalSummary::read(&p)?;
        let Some(info) = summary.shard.clone() else {
            bail!(
                "{}: not a shard summary (no `shard` key): `vae eval --shard I/N` writes those",
                p.display()
            );
        };
        shards.push(Shard {
            path: p,
            summary,
            info,
        });
    }
    check_together(&mut shards)?;
    let first = &shards[0];
    let (method, split) = (first.summary.method(), first.summary.split.clone());
    let out_dir = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(&first.info.run));
    let out = RunDir::new(&out_dir).eval_summary(method, &split);
    crate::eval_cmd::check_outputs(&[
        out.clone(),
        out.with_extension("csv"),
        out.with_extension("png"),
    ])?;
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("--out {}: creating it", out_dir.display()))?;
    let _lock = crate::eval_cmd::output_lock(&out, "vae eval-merge")?;
    let total = first.info.total_images;
    let csv = out.with_extension("csv");
    let mut plot = None;
    let estimate = match &first.summary.estimate {
        Estimate::Is(_) => {
            let rows: Vec<IsRow> = rows_of(&shards)?;
            let (e, png) = merge_is(&shards, &rows)?;
            plot = Some(png);
            write_csv(&csv, &rows)?;
            Estimate::Is(e)
        }
        Estimate::Ais(_) => {
            let rows: Vec<AisRow> = rows_of(&shards)?;
            let e = merge_ais(&shards, &rows)?;
            write_csv(&csv, &rows)?;
            Estimate::Ais(e)
        }
        Estimate::Bdmc(b) => {
            let rows: Vec<BdmcRow> = rows_of(&shards)?;
            let lower: Vec<f64> = rows.iter().map(|r| r.forward_log_px).collect();
            let upper: Vec<f64> = rows.iter().map(|r| r.reverse_log_px).collect();
            let gap: Vec<f64> = rows.iter().map(|r| r.gap).collect();
            // As vae-eval: the bounds are −nll of each run, i.e. means of −log p̂ negated.
            let lower_nll = mean_and_stderr(&neg(&lower)).0;
            let upper_nll = mean_and_stderr(&neg(&upper)).0;
            let (gap_mean, gap_stderr) = mean_and_stderr(&gap);
            write_csv(&csv, &rows)?;
            Estimate::Bdmc(BdmcEstimate {
                lower_bound_log_px: -lower_nll,
                upper_bound_log_px: -upper_nll,
                gap: gap_mean,
                gap_stderr,
                settings: unsharded_settings(&b.settings),
                data: b.data.clone(),
            })
        }
    };
    let wall_seconds: f64 = shards.iter().map(|s| s.summary.wall_seconds).sum();
    let summary = EvalSummary {
        split,
        images: total,
        checkpoint: first.summary.checkpoint.clone(),
        wall_seconds,
        ms_per_image: wall_seconds * 1e3 / total as f64,
        estimate,
        shard: None,
        shards: Some(
            shards
                .iter()
                .map(|s| ShardTime {
                    index: s.info.index,
                    images: s.summary.images,
                    wall_seconds: s.summary.wall_seconds,
                })
                .collect(),
        ),
    };
    summary.write(&out)?;
    let png = out.with_extension("png");
    if let Some(bytes) = &plot {
        write_atomic(&png, bytes)?;
    }
    println!(
        "merged {} shards of {method} on {total} {} images: {}",
        shards.len(),
        summary.split,
        match (&summary.estimate, summary.nll()) {
            (Estimate::Bdmc(b), _) => format!(
                "log p(x) in [{:.3}, {:.3}], gap {:.3} nats",
                b.lower_bound_log_px, b.upper_bound_log_px, b.gap
            ),
            (_, nll) => format!(
                "NLL {:.3} +- {:.3} nats",
                nll.unwrap_or(f64::NAN),
                summary.nll_stderr().unwrap_or(f64::NAN)
            ),
        }
    );
    crate::eval_cmd::print_written(&out, &csv, plot.is_some().then_some(png.as_path()));
    Ok(())
}

/// The shard summaries named: files as given, folders by their `shard-I-of-N.json` files.
fn shard_files(args: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for a in args {
        if a.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(a)
                .with_context(|| format!("{}: listing the folder", a.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(is_shard_name)
                })
                .collect();
            if found.is_empty() {
                bail!(
                    "{}: no shard summaries (shard-I-of-N.json) in this folder",
                    a.display()
                );
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(a.clone());
        }
    }
    Ok(files)
}

/// `shard-<I>-of-<N>.json`.
fn is_shard_name(name: &str) -> bool {
    let Some(rest) = name
        .strip_prefix("shard-")
        .and_then(|r| r.strip_suffix(".json"))
    else {
        return false;
    };
    let mut parts = rest.split("-of-");
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(i), Some(n), None) if i.parse::<usize>().is_ok() && n.parse::<usize>().is_ok()
    )
}

/// The estimator's settings without the shard's offset: what an unsharded run records.
fn unsharded_settings(settings: &Value) -> Value {
    let mut s = settings.clone();
    if let Value::Object(m) = &mut s {
        m.remove("first_example");
    }
    s
}

/// Sorts the shards by index and checks that they are the `N` slices of one evaluation.
fn check_together(shards: &mut [Shard]) -> Result<()> {
    shards.sort_by_key(|s| (s.info.index, s.path.clone()));
    let first = &shards[0];
    let name = |s: &Shard| s.path.display().to_string();
    for s in shards.iter().skip(1) {
        let settings = |s: &Shard| unsharded_settings(s.summary.settings()).to_string();
        let pairs = [
            ("run", first.info.run.clone(), s.info.run.clone()),
            (
                "checkpoint",
                first.summary.checkpoint.clone(),
                s.summary.checkpoint.clone(),
            ),
            (
                "checkpoint checksum",
                format!("{:?}", first.info.checkpoint_checksum),
                format!("{:?}", s.info.checkpoint_checksum),
            ),
            (
                "method",
                first.summary.method().into(),
                s.summary.method().into(),
            ),
            (
                "split",
                first.summary.split.clone(),
                s.summary.split.clone(),
            ),
            (
                "shard count N",
                first.info.count.to_string(),
                s.info.count.to_string(),
            ),
            (
                "images in the evaluation",
                first.info.total_images.to_string(),
                s.info.total_images.to_string(),
            ),
            ("settings", settings(first), settings(s)),
        ];
        if let Some((what, a, b)) = pairs.iter().find(|(_, a, b)| a != b) {
            bail!(
                "{} and {} are not shards of one evaluation: {what} {a} vs {b}",
                name(first),
                name(s)
            );
        }
    }
    let n = first.info.count;
    let mut seen: BTreeMap<usize, &Shard> = BTreeMap::new();
    for s in shards.iter() {
        if let Some(other) = seen.insert(s.info.index, s) {
            bail!(
                "shard {}/{n} given twice: {} and {}",
                s.info.index,
                name(other),
                name(s)
            );
        }
    }
    let missing: Vec<String> = (1..=n)
        .filter(|i| !seen.contains_key(i))
        .map(|i| format!("{i}/{n}"))
        .collect();
    if !missing.is_empty() {
        bail!(
            "shard(s) {} missing: run `vae eval ... --shard I/N` for each before merging",
            missing.join(", ")
        );
    }
    let mut next = 0;
    for s in shards.iter() {
        if s.info.first_image != next {
            bail!(
                "{}: its images start at {}, where the shards before it end at {next} (images \
                 missing or evaluated twice)",
                name(s),
                s.info.first_image
            );
        }
        next += s.summary.images;
    }
    if next != first.info.total_images {
        bail!(
            "the shards hold {next} images, the evaluation {}",
            first.info.total_images
        );
    }
    Ok(())
}

/// Every shard's CSV rows, in order, each shard's checked against its slice.
fn rows_of<R: CsvRow + HasIndex>(shards: &[Shard]) -> Result<Vec<R>> {
    let mut rows = Vec::new();
    for s in shards {
        let csv = s.path.with_extension("csv");
        let part: Vec<R> = read_csv(&csv)?;
        let want = s.info.first_image..s.info.first_image + s.summary.images;
        if part.len() != want.len() || part.iter().zip(want.clone()).any(|(r, i)| r.index() != i) {
            bail!(
                "{}: expected one row for each image {} to {}, in order",
                csv.display(),
                want.start,
                want.end.saturating_sub(1)
            );
        }
        rows.extend(part);
    }
    Ok(rows)
}

/// A CSV row's image index.
trait HasIndex {
    fn index(&self) -> usize;
}
impl HasIndex for IsRow {
    fn index(&self) -> usize {
        self.index
    }
}
impl HasIndex for AisRow {
    fn index(&self) -> usize {
        self.index
    }
}
impl HasIndex for BdmcRow {
    fn index(&self) -> usize {
        self.index
    }
}

fn neg(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| -x).collect()
}

/// The IS summary and IWAE plot of the merged rows.
fn merge_is(shards: &[Shard], rows: &[IsRow]) -> Result<(IsEstimate, Vec<u8>)> {
    let parts: Vec<&IsEstimate> = shards
        .iter()
        .map(|s| match &s.summary.estimate {
            Estimate::Is(e) => e,
            _ => unreachable!("check_together compared the methods"),
        })
        .collect();
    let first = parts[0];
    let log_px: Vec<f64> = rows.iter().map(|r| r.log_px).collect();
    let (estimate_nll, stderr) = mean_and_stderr(&neg(&log_px));
    let elbo: Vec<f64> = rows.iter().map(|r| r.elbo).collect();
    let (neg_elbo, neg_elbo_stderr) = mean_and_stderr(&neg(&elbo));
    let se = |f: fn(&IsRow) -> Option<f64>| rows.iter().map(f).collect::<Vec<_>>();
    let above = |t: f64| {
        rows.iter()
            .filter(|r| r.khat.is_some_and(|k| k > t))
            .count()
    };
    // The IWAE curve from each image's values, as vae-eval computes it.
    let points = first.iwae_curve.len();
    let mut iwae_curve = Vec::with_capacity(points);
    for p in 0..points {
        let mut values = Vec::with_capacity(rows.len());
        for s in shards {
            let v = s
                .info
                .iwae_log_px
                .get(p)
                .filter(|v| v.len() == s.summary.images);
            let Some(v) = v else {
                bail!(
                    "{}: `shard.iwae_log_px` lacks point {p} of the IWAE curve for its {} images",
                    s.path.display(),
                    s.summary.images
                );
            };
            values.extend_from_slice(v);
        }
        let (nll, nll_stderr) = mean_and_stderr(&neg(&values));
        iwae_curve.push(IwaePoint {
            k: first.iwae_curve[p].k,
            nll,
            nll_stderr,
        });
    }
    let checks = rows
        .iter()
        .map(|r| r.ais_check_log_px)
        .collect::<Option<Vec<f64>>>();
    let ais_check = match (checks, first.ais_check.clone()) {
        (Some(check), Some(c)) => Some(vae_io::results::AisCheck {
            estimate_nll: mean_and_stderr(&neg(&check)).0,
            below: rows.iter().filter(|r| r.flag.contains("ais")).count(),
            ..c
        }),
        _ => None,
    };
    let e = IsEstimate {
        estimate_nll,
        stderr,
        mc_stderr: combined_stderr(&se(|r| r.log_px_stderr)),
        mc_stderr_replicates: combined_stderr(&se(|r| r.log_px_mc_se)),
        khat_above_0_5: above(0.5),
        khat_above_0_7: above(0.7),
        flagged: rows.iter().filter(|r| !r.flag.is_empty()).count(),
        ais_check,
        // --shard refuses --reestimate-flagged.
        reestimated: None,
        neg_elbo,
        neg_elbo_stderr,
        iwae_curve,
        settings: unsharded_settings(&first.settings),
    };
    let vae_iwae: Vec<vae_eval::IwaePoint> = e
        .iwae_curve
        .iter()
        .map(|p| vae_eval::IwaePoint {
            k: p.k,
            nll: p.nll,
            nll_stderr: p.nll_stderr,
        })
        .collect();
    let title = format!(
        "IWAE bound: {} {}, {} images",
        shards[0].info.run_name,
        shards[0].summary.split,
        rows.len()
    );
    Ok((e, crate::iwae_plot::iwae_curve_png(&title, &vae_iwae)))
}

/// The AIS summary of the merged rows; the traces weighted by each shard's images.
fn merge_ais(shards: &[Shard], rows: &[AisRow]) -> Result<AisEstimate> {
    let parts: Vec<(usize, &AisEstimate)> = shards
        .iter()
        .map(|s| match &s.summary.estimate {
            Estimate::Ais(e) => (s.summary.images, e),
            _ => unreachable!("check_together compared the methods"),
        })
        .collect();
    let first = parts[0].1;
    let log_px: Vec<f64> = rows.iter().map(|r| r.log_px).collect();
    let (estimate_nll, stderr) = mean_and_stderr(&neg(&log_px));
    let mlw: Vec<f64> = rows.iter().map(|r| r.mean_log_weight).collect();
    let moves = first.trace.acceptance.len();
    let total = rows.len() as f64;
    let mut trace = AisTrace::default();
    for m in 0..moves {
        let weighted = |f: fn(&AisTrace) -> &Vec<f64>| -> Result<f64> {
            let mut sum = 0.0;
            for (b, e) in &parts {
                let v = f(&e.trace).get(m).copied();
                let Some(v) = v else {
                    bail!("the shards' AIS traces differ in length (settings differ?)");
                };
                sum += *b as f64 * v;
            }
            Ok(sum / total)
        };
        trace.acceptance.push(weighted(|t| &t.acceptance)?);
        trace.step_size_mean.push(weighted(|t| &t.step_size_mean)?);
        let lo = parts
            .iter()
            .filter_map(|(_, e)| e.trace.step_size_min.get(m).copied())
            .fold(f64::INFINITY, f64::min);
        let hi = parts
            .iter()
            .filter_map(|(_, e)| e.trace.step_size_max.get(m).copied())
            .fold(f64::NEG_INFINITY, f64::max);
        trace.step_size_min.push(lo);
        trace.step_size_max.push(hi);
    }
    Ok(AisEstimate {
        estimate_nll,
        stderr,
        mc_stderr: combined_stderr(&rows.iter().map(|r| r.log_px_stderr).collect::<Vec<_>>()),
        mc_stderr_replicates: combined_stderr(
            &rows.iter().map(|r| r.log_px_mc_se).collect::<Vec<_>>(),
        ),
        flagged: rows.iter().filter(|r| !r.flag.is_empty()).count(),
        nll_mean_log_weight: mean_and_stderr(&neg(&mlw)).0,
        trace,
        settings: unsharded_settings(&first.settings),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names() {
        assert!(is_shard_name("shard-1-of-4.json"));
        assert!(is_shard_name("shard-12-of-40.json"));
        assert!(!is_shard_name("shard-1-of-4.progress.json"));
        assert!(!is_shard_name("shard-1-of-4.csv"));
        assert!(!is_shard_name("shard-a-of-4.json"));
        assert!(!is_shard_name("eval-is-test.json"));
    }

    #[test]
    fn settings_lose_only_the_offset() {
        let s = serde_json::json!({"seed": 3, "first_example": 40, "num_samples": 10});
        assert_eq!(
            unsharded_settings(&s),
            serde_json::json!({"seed": 3, "num_samples": 10})
        );
    }
}
