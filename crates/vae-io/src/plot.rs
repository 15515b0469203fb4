//! The project's two plots, drawn with `plotters` into RGB pictures: the IWAE curve of
//! `vae eval` ([`iwae_curve`]) and a sweep's summary ([`sweep_summary`]).
//!
//! Text is anti-aliased DejaVu Sans, which the `dejavu` crate ships inside the binary and
//! `ab_glyph` rasterises, so a plot comes out the same on every machine and no system font is
//! read. The callers turn their own types (vae-eval's points, a sweep's runs) into the plain
//! ones here, so vae-io depends on neither.
//!
//! plotters 0.3.7 places each glyph without its left side bearing, so letter spacing is a
//! little uneven; text is 13 px and up, where it stays easy to read.

use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};

use crate::error::{Error, Result};

/// An RGB colour.
pub type Rgb = [u8; 3];

/// The IWAE curve's line and dots.
pub const IWAE_LINE: Rgb = [31, 119, 180];
/// The IWAE curve's error bars.
const IWAE_BAR: Rgb = [150, 190, 220];
/// Grid lines.
const GRID: Rgb = [225, 225, 225];
/// Secondary text.
const DARK: Rgb = [90, 90, 90];
/// Matplotlib's tab10 palette: the sweep summary's series colours, in order.
pub const PALETTE: [Rgb; 10] = [
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

/// The font family name the plots register DejaVu Sans under.
const FAMILY: &str = "DejaVu Sans";

/// An 8-bit RGB picture, row-major, origin at the top left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `3 * width * height` bytes, pixel by pixel, row by row.
    pub pixels: Vec<u8>,
}

impl RgbImage {
    /// The pixel at (x, y); panics outside the picture, as indexing does.
    pub fn get(&self, x: usize, y: usize) -> Rgb {
        assert!(
            x < self.width && y < self.height,
            "({x}, {y}) is outside the picture"
        );
        let i = 3 * (y * self.width + x);
        [self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]]
    }

    /// The picture as an 8-bit RGB PNG; write it with [`write_atomic`](crate::write_atomic).
    pub fn to_png(&self) -> Result<Vec<u8>> {
        crate::png::encode_rgb(self.width, self.height, &self.pixels)
    }
}

/// One point of an IWAE curve: the bound from the first `k` importance samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CurvePoint {
    /// Importance samples per image.
    pub k: usize,
    /// The NLL estimate, nats.
    pub nll: f64,
    /// Its standard error over images, where known.
    pub stderr: Option<f64>,
}

/// The IWAE bound against k on a log axis, 720 x 460 pixels: a line through the points, a dot
/// and its value at each, ±1 standard error as bars. `title` goes on top, shortened to fit;
/// `points` are in increasing k, with finite values (others are left out).
pub fn iwae_curve(title: &str, points: &[CurvePoint]) -> Result<RgbImage> {
    let points: Vec<CurvePoint> = points
        .iter()
        .copied()
        .filter(|p| p.k > 0 && p.nll.is_finite() && p.stderr.is_none_or(f64::is_finite))
        .collect();
    render(720, 460, "IWAE curve", |root| {
        let title = fit(root, title, &font(20.0), 700);
        let se = |p: &CurvePoint| p.stderr.unwrap_or(0.0);
        let (lo, hi) = span(points.iter().flat_map(|p| [p.nll - se(p), p.nll + se(p)]));
        let pad = ((hi - lo) * 0.08).max(0.05);
        let (y0, y1) = (lo - pad, hi + pad);
        let k_max = points.last().map_or(1, |p| p.k).max(10) as f64;
        let (_, decimals) = ticks(y0, y1, 6, false);
        let mut chart = ChartBuilder::on(root)
            .caption(title, font(20.0))
            .margin(16)
            .margin_right(30)
            .x_label_area_size(52)
            .y_label_area_size(78)
            .build_cartesian_2d(
                (10f64.powf(-0.15)..k_max * 10f64.powf(0.15)).log_scale(),
                y0..y1,
            )?;
        chart
            .configure_mesh()
            .bold_line_style(rgb(GRID))
            .max_light_lines(0)
            .y_labels(7)
            .label_style(font(13.0))
            .axis_desc_style(font(14.0))
            .x_label_formatter(&|k| format!("{k}"))
            .y_label_formatter(&|v| format!("{v:.decimals$}"))
            .x_desc("k, importance samples per image (log scale)")
            .y_desc("NLL estimate (nats), ±1 s.e. over images")
            .draw()?;
        let at = |p: &CurvePoint| (p.k as f64, p.nll);
        chart.draw_series(points.iter().filter_map(|p| {
            let s = p.stderr?;
            let style = rgb(IWAE_BAR).stroke_width(2);
            Some(ErrorBar::new_vertical(
                p.k as f64,
                p.nll - s,
                p.nll,
                p.nll + s,
                style,
                10,
            ))
        }))?;
        chart.draw_series(LineSeries::new(
            points.iter().map(at),
            rgb(IWAE_LINE).stroke_width(2),
        ))?;
        chart.draw_series(
            points
                .iter()
                .map(|p| Circle::new(at(p), 5, rgb(IWAE_LINE).filled())),
        )?;
        chart.draw_series(points.iter().map(|p| {
            EmptyElement::at(at(p)) + Text::new(format!("{:.2}", p.nll), (8, -20), font(12.0))
        }))?;
        Ok(())
    })
}

/// The x axis of a sweep summary.
#[derive(Debug, Clone, PartialEq)]
pub enum XAxis {
    /// Numbers, with ticks at whole numbers only when `integer`.
    Numeric {
        /// Whether every swept value is a whole number.
        integer: bool,
    },
    /// One tick per label, at x = 0, 1, 2, ...
    Categorical {
        /// The settings' names, in x order.
        labels: Vec<String>,
    },
}

/// The mean and spread over seeds of one setting of one series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SettingStat {
    /// Index into [`SummaryPlot::series`].
    pub series: usize,
    /// The swept value (or the category's index).
    pub x: f64,
    /// Mean over the setting's finished runs.
    pub mean: f64,
    /// Their standard deviation, when there are two or more.
    pub sd: Option<f64>,
}

/// One finished run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunValue {
    /// Index into [`SummaryPlot::series`].
    pub series: usize,
    /// The swept value (or the category's index).
    pub x: f64,
    /// The run's value (test NLL or -ELBO).
    pub value: f64,
    /// The run's place among its setting's runs (0, 1, ...), so that seeds sit side by side.
    pub column: usize,
}

/// What a sweep summary shows.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryPlot {
    /// The title, shortened to fit.
    pub title: String,
    /// The x axis' description.
    pub x_label: String,
    /// The y axis' description.
    pub y_label: String,
    /// Numeric or categorical x.
    pub x_axis: XAxis,
    /// Series names in order of first appearance (colours follow [`PALETTE`]); unnamed series
    /// (`""`) get no legend entry.
    pub series: Vec<String>,
    /// Means and spreads, one per setting that has finished runs.
    pub settings: Vec<SettingStat>,
    /// Every finished run.
    pub runs: Vec<RunValue>,
}

/// A sweep's summary, 820 x 520 pixels: one small dot per run, the mean over seeds with a ±1
/// s.d. bar per setting, a line through the means of each series, and a legend above the
/// frame. Series that share an x sit a few pixels apart so that none hides another. Without
/// runs it says "no finished runs yet".
pub fn sweep_summary(plot: &SummaryPlot) -> Result<RgbImage> {
    render(820, 520, "sweep summary", |root| {
        let colour = |s: usize| PALETTE[s % PALETTE.len()];
        let title = fit(root, &plot.title, &font(20.0), 800);
        let root = root.titled(&title, font(20.0))?;
        // The legend: one line per named series, then what the marks mean.
        let mut legend: Vec<(Option<Rgb>, String)> = plot
            .series
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.is_empty())
            .map(|(i, s)| (Some(colour(i)), fit(&root, s, &font(14.0), 680)))
            .collect();
        legend.push((
            None,
            "small dots: runs; big dots and bars: mean ± 1 s.d. over seeds".into(),
        ));
        let dark = rgb(DARK);
        let line_height = 18;
        let (top, area) = root.split_vertically(line_height * legend.len() as i32 + 12);
        for (i, (c, text)) in legend.iter().enumerate() {
            let y = 4 + line_height * i as i32;
            match c {
                Some(c) => {
                    top.draw(&Circle::new((96, y + 8), 5, rgb(*c).filled()))?;
                    top.draw_text(text, &font(14.0), (108, y))?;
                }
                None => top.draw_text(text, &font(14.0).color(&dark), (90, y))?,
            }
        }

        let values: Vec<f64> = plot
            .runs
            .iter()
            .map(|r| r.value)
            .filter(|v| v.is_finite())
            .collect();
        if values.is_empty() {
            let (w, h) = area.dim_in_pixel();
            let dark = rgb(DARK);
            let style = font(22.0)
                .color(&dark)
                .pos(Pos::new(HPos::Center, VPos::Center));
            area.draw_text("no finished runs yet", &style, (w as i32 / 2, h as i32 / 2))?;
            return Ok(());
        }
        let spreads = plot
            .settings
            .iter()
            .filter_map(|g| Some([g.mean - g.sd?, g.mean + g.sd?]))
            .flatten();
        let (lo, hi) = span(values.iter().copied().chain(spreads));
        let (y0, y1) = padded(lo, hi, 0.08, 0.5);
        let (x0, x1) = match &plot.x_axis {
            XAxis::Numeric { .. } => {
                let (lo, hi) = span(plot.runs.iter().map(|r| r.x));
                padded(lo, hi, 0.06, 1.0)
            }
            XAxis::Categorical { labels } => (-0.5, labels.len() as f64 - 0.5),
        };
        // plotters places round ticks itself; at most one per unit on a whole-number axis.
        let (x_count, xd) = match &plot.x_axis {
            XAxis::Numeric { integer: true } => ((x1 - x0).floor().clamp(1.0, 8.0) as usize, 0),
            XAxis::Numeric { integer: false } => (8, ticks(x0, x1, 8, false).1),
            XAxis::Categorical { labels } => (labels.len().max(1), 0),
        };
        let (_, yd) = ticks(y0, y1, 6, false);
        let mut chart = ChartBuilder::on(&area)
            .margin_left(14)
            .margin_right(30)
            .margin_bottom(10)
            .x_label_area_size(56)
            .y_label_area_size(76)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        let (width_px, _) = chart.plotting_area().dim_in_pixel();
        let room = match &plot.x_axis {
            XAxis::Categorical { labels } => width_px as i32 / labels.len().max(1) as i32 - 8,
            XAxis::Numeric { .. } => width_px as i32,
        };
        let x_text = |x: &f64| match &plot.x_axis {
            XAxis::Numeric { .. } => format!("{x:.xd$}"),
            XAxis::Categorical { labels } => labels
                .get(x.round().max(0.0) as usize)
                .map(|l| fit(&area, l, &font(13.0), room))
                .unwrap_or_default(),
        };
        chart
            .configure_mesh()
            .bold_line_style(rgb(GRID))
            .max_light_lines(0)
            .x_labels(x_count)
            .y_labels(7)
            .label_style(font(13.0))
            .axis_desc_style(font(14.0))
            .x_label_formatter(&x_text)
            .y_label_formatter(&|y| format!("{y:.yd$}"))
            .x_desc(fit(&area, &plot.x_label, &font(14.0), width_px as i32))
            .y_desc(fit(&area, &plot.y_label, &font(14.0), 400))
            .draw()?;
        // A full frame, not only the two axes.
        chart.draw_series(std::iter::once(Rectangle::new(
            [(x0, y0), (x1, y1)],
            rgb([0, 0, 0]).stroke_width(1),
        )))?;

        // Offsets in pixels become offsets in x: series side by side, runs right of their bar.
        let per_px = (x1 - x0) / f64::from(width_px.max(1));
        let n = plot.series.len().max(1) as f64;
        let dodge = |s: usize| (14.0 * s as f64 - 7.0 * (n - 1.0)) * per_px;
        for s in 0..plot.series.len() {
            let mut means: Vec<(f64, f64)> = plot
                .settings
                .iter()
                .filter(|g| g.series == s && g.mean.is_finite())
                .map(|g| (g.x + dodge(s), g.mean))
                .collect();
            means.sort_by(|a, b| a.0.total_cmp(&b.0));
            chart.draw_series(LineSeries::new(means, rgb(colour(s)).stroke_width(2)))?;
        }
        for g in plot.settings.iter().filter(|g| g.mean.is_finite()) {
            let (x, style) = (g.x + dodge(g.series), rgb(colour(g.series)));
            if let Some(sd) = g.sd.filter(|sd| sd.is_finite()) {
                chart.draw_series(std::iter::once(ErrorBar::new_vertical(
                    x,
                    g.mean - sd,
                    g.mean,
                    g.mean + sd,
                    style.stroke_width(2),
                    10,
                )))?;
            }
            chart.draw_series(std::iter::once(Circle::new((x, g.mean), 5, style.filled())))?;
        }
        for r in plot.runs.iter().filter(|r| r.value.is_finite()) {
            let x = r.x + dodge(r.series) + (9.0 + 4.0 * r.column as f64) * per_px;
            let c = colour(r.series);
            chart.draw_series([
                Circle::new((x, r.value), 3, rgb(c).filled()),
                Circle::new((x, r.value), 2, rgb(lighter(c)).filled()),
            ])?;
        }
        Ok(())
    })
}

/// About `target` round tick values (1, 2 or 5 times a power of ten, whole numbers only when
/// `integer`) inside [lo, hi], and the decimals they need.
pub fn ticks(lo: f64, hi: f64, target: usize, integer: bool) -> (Vec<f64>, usize) {
    let span = (hi - lo).abs().max(1e-9);
    let raw = span / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let mut step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= target as f64 * 1.2)
        .unwrap_or(10.0 * mag);
    if integer && step < 1.0 {
        step = 1.0;
    }
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    ((first..=last).map(|i| i as f64 * step).collect(), decimals)
}

/// Draws with `draw` on a white `width x height` picture; `what` names the plot in errors.
fn render(
    width: u32,
    height: u32,
    what: &'static str,
    draw: impl FnOnce(
        &DrawingArea<BitMapBackend, Shift>,
    ) -> std::result::Result<(), Box<dyn std::error::Error>>,
) -> Result<RgbImage> {
    let fail = |reason: String| Error::Plot { what, reason };
    font_registered().map_err(fail)?;
    let mut pixels = vec![255u8; 3 * width as usize * height as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        draw(&root).map_err(|e| fail(e.to_string()))?;
        root.present().map_err(|e| fail(e.to_string()))?;
    }
    Ok(RgbImage {
        width: width as usize,
        height: height as usize,
        pixels,
    })
}

/// Registers DejaVu Sans with plotters once per process.
fn font_registered() -> std::result::Result<(), String> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE
        .get_or_init(|| register_font(FAMILY, FontStyle::Normal, dejavu::sans::regular()).is_ok());
    ok.then_some(())
        .ok_or_else(|| "the embedded DejaVu Sans does not parse".to_string())
}

fn font(size: f64) -> TextStyle<'static> {
    (FAMILY, size).into_font().color(&BLACK)
}

fn rgb(c: Rgb) -> RGBColor {
    RGBColor(c[0], c[1], c[2])
}

fn lighter(c: Rgb) -> Rgb {
    c.map(|v| ((v as u16 + 2 * 255) / 3) as u8)
}

/// `text`, cut and ended with `…` until it is at most `max_px` wide in `style`.
fn fit<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    text: &str,
    style: &TextStyle,
    max_px: i32,
) -> String {
    let width = |t: &str| {
        area.estimate_text_size(t, style)
            .map_or(0, |(w, _)| w as i32)
    };
    if width(text) <= max_px {
        return text.to_string();
    }
    let mut chars: Vec<char> = text.chars().collect();
    while !chars.is_empty() {
        chars.pop();
        let cut: String = chars.iter().collect::<String>() + "…";
        if width(&cut) <= max_px {
            return cut;
        }
    }
    "…".into()
}

/// The smallest and largest finite value; (0, 1) when there is none.
fn span(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if lo <= hi {
        (lo, hi)
    } else {
        (0.0, 1.0)
    }
}

/// [lo, hi] widened by `frac` of its length on each side, or to ±`min_half` when it is a point.
fn padded(lo: f64, hi: f64, frac: f64, min_half: f64) -> (f64, f64) {
    if hi - lo < 1e-12 {
        (lo - min_half, hi + min_half)
    } else {
        let pad = (hi - lo) * frac;
        (lo - pad, hi + pad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(k: usize, nll: f64) -> CurvePoint {
        CurvePoint {
            k,
            nll,
            stderr: Some(0.5),
        }
    }

    /// Pixels of exactly colour `c`.
    fn pixels_of(img: &RgbImage, c: Rgb) -> Vec<(usize, usize)> {
        (0..img.height)
            .flat_map(|y| (0..img.width).map(move |x| (x, y)))
            .filter(|&(x, y)| img.get(x, y) == c)
            .collect()
    }

    #[test]
    fn iwae_curve_falls_from_left_to_right() {
        let pts = [
            point(1, 89.3),
            point(10, 87.2),
            point(100, 86.5),
            point(1000, 86.1),
        ];
        let img = iwae_curve("IWAE bound", &pts).unwrap();
        assert_eq!((img.width, img.height), (720, 460));
        let curve = pixels_of(&img, IWAE_LINE);
        let top = curve.iter().min_by_key(|p| p.1).unwrap();
        let bottom = curve.iter().max_by_key(|p| p.1).unwrap();
        assert!(top.0 < 200 && bottom.0 > 500, "{top:?} {bottom:?}");
        assert!(bottom.1 > top.1 + 150, "{top:?} {bottom:?}");
        // Text is drawn: dark pixels in the title band.
        assert!((0..720).any(|x| img.get(x, 20)[0] < 100));
        // Degenerate curves draw too.
        for pts in [&pts[..1], &[point(1, 5.0), point(10, 5.0)][..], &[][..]] {
            let png = iwae_curve("t", pts).unwrap().to_png().unwrap();
            assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        }
    }

    fn summary(x_axis: XAxis, runs: Vec<RunValue>) -> SummaryPlot {
        SummaryPlot {
            title: "smoke: test NLL vs flow steps".into(),
            x_label: "flow steps".into(),
            y_label: "test NLL, nats".into(),
            x_axis,
            series: vec!["a".into(), "b".into()],
            settings: vec![
                SettingStat {
                    series: 0,
                    x: 0.0,
                    mean: 95.0,
                    sd: Some(1.0),
                },
                SettingStat {
                    series: 1,
                    x: 2.0,
                    mean: 90.0,
                    sd: None,
                },
            ],
            runs,
        }
    }

    #[test]
    fn sweep_summary_draws_series_in_their_colours() {
        let runs = vec![
            RunValue {
                series: 0,
                x: 0.0,
                value: 94.0,
                column: 0,
            },
            RunValue {
                series: 0,
                x: 0.0,
                value: 96.0,
                column: 1,
            },
            RunValue {
                series: 1,
                x: 2.0,
                value: 90.0,
                column: 0,
            },
        ];
        let img = sweep_summary(&summary(XAxis::Numeric { integer: true }, runs.clone())).unwrap();
        assert_eq!((img.width, img.height), (820, 520));
        let a = pixels_of(&img, PALETTE[0]);
        let b = pixels_of(&img, PALETTE[1]);
        assert!(!a.is_empty() && !b.is_empty());
        // Series b (lower NLL, larger x) is drawn right of and below series a's mean.
        let mean = |v: &[(usize, usize)]| {
            let n = v.len() as f64;
            let (sx, sy) = v
                .iter()
                .fold((0.0, 0.0), |(a, b), p| (a + p.0 as f64, b + p.1 as f64));
            (sx / n, sy / n)
        };
        let (ma, mb) = (mean(&a), mean(&b));
        assert!(mb.0 > ma.0 + 200.0 && mb.1 > ma.1 + 50.0, "{ma:?} {mb:?}");
        let labels = XAxis::Categorical {
            labels: vec!["first".into(), "second".into(), "third".into()],
        };
        assert!(sweep_summary(&summary(labels, runs)).is_ok());
        // No runs: a message instead of a frame.
        let empty = sweep_summary(&summary(XAxis::Numeric { integer: false }, vec![])).unwrap();
        assert!(
            pixels_of(&empty, PALETTE[0]).len() < 200,
            "only the legend's dot"
        );
    }

    #[test]
    fn ticks_are_round_and_inside() {
        let (t, d) = ticks(81.3, 94.9, 6, false);
        assert_eq!(t, [82.0, 84.0, 86.0, 88.0, 90.0, 92.0, 94.0]);
        assert_eq!(d, 0);
        let (t, d) = ticks(-0.5, 8.5, 8, true);
        assert_eq!(t.first(), Some(&0.0));
        assert_eq!(t.last(), Some(&8.0));
        assert_eq!(d, 0);
        let (t, d) = ticks(0.101, 0.149, 5, false);
        assert_eq!(d, 2);
        assert!(t.iter().all(|&v| (0.101..=0.149).contains(&v)), "{t:?}");
        // Whole numbers only on an integer axis, however narrow.
        assert_eq!(ticks(-0.12, 2.12, 8, true), (vec![0.0, 1.0, 2.0], 0));
    }
}
