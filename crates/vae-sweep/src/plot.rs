//! `summary.png`: test NLL (or test -ELBO when the sweep does not evaluate) against the swept
//! value, one dot per run, the mean over seeds with a ±1 s.d. bar per setting, a line through
//! the means of each series, and a legend when there are several series.

use vae_io::raster::{text_width, ticks, Canvas, Rgb, BLACK, GLYPH, WHITE};

use crate::plan::Plan;
use crate::results::RunResult;
use crate::spec::Axis;
use crate::summary::Group;

const W: i64 = 820;
const H: i64 = 520;
const LEFT: i64 = 90;
const RIGHT: i64 = 30;
const BOTTOM: i64 = 70;
const GREY: Rgb = [200, 200, 200];
const DARK: Rgb = [90, 90, 90];
/// Matplotlib's tab10 palette.
const PALETTE: [Rgb; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

fn lighter(c: Rgb) -> Rgb {
    c.map(|v| ((v as u16 + 2 * 255) / 3) as u8)
}

struct Frame {
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
    top: i64,
}

impl Frame {
    fn px(&self, x: f64) -> i64 {
        LEFT + ((x - self.x0) / (self.x1 - self.x0) * (W - LEFT - RIGHT) as f64).round() as i64
    }
    fn py(&self, y: f64) -> i64 {
        H - BOTTOM
            - ((y - self.y0) / (self.y1 - self.y0) * (H - self.top - BOTTOM) as f64).round() as i64
    }
}

fn padded(lo: f64, hi: f64, frac: f64, min_half: f64) -> (f64, f64) {
    if hi - lo < 1e-12 {
        (lo - min_half, hi + min_half)
    } else {
        let pad = (hi - lo) * frac;
        (lo - pad, hi + pad)
    }
}

fn fit(text: &str, max_px: i64) -> String {
    let max_chars = (max_px / GLYPH).max(1) as usize;
    if text.chars().count() <= max_chars {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(max_chars.saturating_sub(1)).collect();
        s.push('~');
        s
    }
}

/// Draws the plot.
pub fn draw(plan: &Plan, results: &[RunResult], groups: &[Group]) -> Canvas {
    let use_nll = results.iter().any(|r| r.test_nll.is_some());
    let value = |r: &RunResult| {
        if use_nll {
            r.test_nll
        } else {
            r.test_neg_elbo
        }
    };
    let stat = |g: &Group| if use_nll { g.nll } else { g.test };
    let mut c = Canvas::new(W as usize, H as usize, WHITE);
    let what = if use_nll {
        match &plan.sweep.eval {
            Some(e) => format!("test NLL ({})", e.describe()),
            None => "test NLL".into(),
        }
    } else {
        "test -ELBO".into()
    };
    let axis = plan.sweep.axis(&plan.runs);
    let x_label = match &axis {
        Axis::Numeric { label } => label.clone(),
        Axis::Categorical { .. } => "setting".into(),
    };
    let title = format!("{}: {what} vs {x_label}", plan.sweep.name);
    let scale = if text_width(&title, 2) <= W - 20 {
        2
    } else {
        1
    };
    let title = fit(&title, (W - 20) / scale);
    c.text(
        (W - text_width(&title, scale)) / 2,
        12,
        &title,
        scale,
        BLACK,
    );

    // Series, in order of first appearance, and the legend above the frame.
    let mut series: Vec<&str> = Vec::new();
    for r in &plan.runs {
        if !series.contains(&r.series.as_str()) {
            series.push(&r.series);
        }
    }
    let colour = |s: &str| PALETTE[series.iter().position(|x| *x == s).unwrap_or(0) % 10];
    let mut legend: Vec<(Option<Rgb>, String)> = series
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| (Some(colour(s)), fit(s, W - LEFT - RIGHT - 20)))
        .collect();
    legend.push((
        None,
        "small dots: runs; big dots and bars: mean +- 1 s.d. over seeds".into(),
    ));
    let legend_top = 34;
    for (i, (col, text)) in legend.iter().enumerate() {
        let y = legend_top + 13 * i as i64;
        match col {
            Some(col) => {
                c.disc(LEFT + 6, y + 3, 4, *col);
                c.text(LEFT + 16, y, text, 1, BLACK);
            }
            None => c.text(LEFT, y, text, 1, DARK),
        }
    }
    let top = legend_top + 13 * legend.len() as i64 + 10;

    let points: Vec<(usize, f64, f64)> = plan
        .runs
        .iter()
        .zip(results)
        .filter_map(|(r, res)| value(res).map(|v| (r.index, r.x, v)))
        .collect();
    if points.is_empty() {
        let msg = "no finished runs yet";
        c.text((W - text_width(msg, 2)) / 2, H / 2, msg, 2, DARK);
        return c;
    }
    let mut ys: Vec<f64> = points.iter().map(|p| p.2).collect();
    for g in groups {
        let s = stat(g);
        if let (Some(m), Some(sd)) = (s.mean, s.sd) {
            ys.extend([m - sd, m + sd]);
        }
    }
    let (ylo, yhi) = ys
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &y| {
            (a.min(y), b.max(y))
        });
    let (y0, y1) = padded(ylo, yhi, 0.08, 0.5);
    let xs: Vec<f64> = plan.runs.iter().map(|r| r.x).collect();
    let (x0, x1) = match &axis {
        Axis::Numeric { .. } => {
            let lo = xs.iter().cloned().fold(f64::INFINITY, f64::min);
            let hi = xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            padded(lo, hi, 0.06, 1.0)
        }
        Axis::Categorical { labels } => (-0.5, labels.len() as f64 - 0.5),
    };
    let f = Frame {
        x0,
        x1,
        y0,
        y1,
        top,
    };
    let (left, right, bottom) = (LEFT, W - RIGHT, H - BOTTOM);

    // Grid, ticks and tick labels.
    let (yt, yd) = ticks(y0, y1, 6, false);
    for y in yt {
        let py = f.py(y);
        c.dashed((left, py), (right, py), GREY);
        c.line((left - 5, py), (left, py), 1, BLACK);
        let label = format!("{y:.yd$}");
        c.text(left - 9 - text_width(&label, 1), py - 3, &label, 1, BLACK);
    }
    match &axis {
        Axis::Numeric { .. } => {
            let integer = xs.iter().all(|x| x.fract() == 0.0);
            let (xt, xd) = ticks(x0, x1, 8, integer);
            for x in xt {
                let px = f.px(x);
                c.dashed((px, top), (px, bottom), GREY);
                c.line((px, bottom), (px, bottom + 5), 1, BLACK);
                let label = format!("{x:.xd$}");
                c.text(
                    px - text_width(&label, 1) / 2,
                    bottom + 10,
                    &label,
                    1,
                    BLACK,
                );
            }
        }
        Axis::Categorical { labels } => {
            let room = (right - left) / labels.len().max(1) as i64 - 8;
            for (i, l) in labels.iter().enumerate() {
                let px = f.px(i as f64);
                c.line((px, bottom), (px, bottom + 5), 1, BLACK);
                let label = fit(l, room);
                c.text(
                    px - text_width(&label, 1) / 2,
                    bottom + 10,
                    &label,
                    1,
                    BLACK,
                );
            }
        }
    }
    c.line((left, top), (left, bottom), 1, BLACK);
    c.line((left, bottom), (right, bottom), 1, BLACK);
    c.line((left, top), (right, top), 1, BLACK);
    c.line((right, top), (right, bottom), 1, BLACK);
    let xl = fit(&x_label, right - left);
    c.text(
        left + (right - left - text_width(&xl, 1)) / 2,
        bottom + 32,
        &xl,
        1,
        BLACK,
    );
    let yl = fit(&format!("{what}, nats"), bottom - top);
    c.text_up(
        14,
        top + (bottom - top - text_width(&yl, 1)) / 2,
        &yl,
        1,
        BLACK,
    );

    // Series that share an x are set a few pixels apart so that none hides another.
    let dodge = |s: &str| {
        let k = series.iter().position(|x| *x == s).unwrap_or(0) as i64;
        14 * k - 7 * (series.len() as i64 - 1)
    };
    // Means: a line per series, bars of ±1 s.d., big dots.
    for s in &series {
        let mut means: Vec<(f64, f64)> = groups
            .iter()
            .filter(|g| g.series == *s)
            .filter_map(|g| stat(g).mean.map(|m| (g.x, m)))
            .collect();
        means.sort_by(|a, b| a.0.total_cmp(&b.0));
        for w in means.windows(2) {
            c.line(
                (f.px(w[0].0) + dodge(s), f.py(w[0].1)),
                (f.px(w[1].0) + dodge(s), f.py(w[1].1)),
                2,
                colour(s),
            );
        }
    }
    for g in groups {
        let st = stat(g);
        let Some(m) = st.mean else { continue };
        let (px, col) = (f.px(g.x) + dodge(&g.series), colour(&g.series));
        if let Some(sd) = st.sd {
            let (a, b) = (f.py(m - sd), f.py(m + sd));
            c.line((px, a), (px, b), 2, col);
            c.line((px - 5, a), (px + 5, a), 2, col);
            c.line((px - 5, b), (px + 5, b), 2, col);
        }
        c.disc(px, f.py(m), 5, col);
    }
    // Runs: small outlined dots just right of their setting's bar, one column per seed.
    for &(i, x, v) in &points {
        let run = &plan.runs[i];
        let k = plan
            .runs
            .iter()
            .filter(|r| r.setting == run.setting && r.index < i)
            .count() as i64;
        let (px, py) = (f.px(x) + dodge(&run.series) + 9 + 4 * k, f.py(v));
        c.disc(px, py, 3, colour(&run.series));
        c.disc(px, py, 2, lighter(colour(&run.series)));
    }
    c
}
