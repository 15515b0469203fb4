//! The picture `vae eval --method is` writes beside its JSON: the IWAE bound (the estimated NLL
//! from the first k of the samples) against k on a log axis, with ±1 standard error over images.

use vae_eval::IwaePoint;
use vae_io::raster::{text_width, ticks, Canvas, Rgb, BLACK, GLYPH, WHITE};

const W: i64 = 720;
const H: i64 = 460;
const LEFT: i64 = 90;
const RIGHT: i64 = 40;
const TOP: i64 = 60;
const BOTTOM: i64 = 70;
const GRID: Rgb = [200, 200, 200];
const LINE: Rgb = [31, 119, 180];
const BAR: Rgb = [150, 190, 220];

/// The PNG of [`draw`].
pub fn iwae_curve_png(title: &str, points: &[IwaePoint]) -> Vec<u8> {
    draw(title, points)
        .to_png()
        .expect("a 720 x 460 canvas always encodes") // fixed size, whatever the points
}

/// Draws the curve, 720 x 460 pixels. `title` goes on top (cut to fit); `points` are in
/// increasing k, each with a finite `nll`.
fn draw(title: &str, points: &[IwaePoint]) -> Canvas {
    let mut c = Canvas::new(W as usize, H as usize, WHITE);
    let max_chars = ((W - 20) / (2 * GLYPH)) as usize;
    let (title, scale) = if title.chars().count() <= max_chars {
        (title.to_string(), 2)
    } else {
        (title.chars().take(2 * max_chars).collect(), 1)
    };
    c.text(
        (W - text_width(&title, scale)) / 2,
        16,
        &title,
        scale,
        BLACK,
    );

    let se = |p: &IwaePoint| p.nll_stderr.unwrap_or(0.0);
    let lo = points
        .iter()
        .map(|p| p.nll - se(p))
        .fold(f64::INFINITY, f64::min);
    let hi = points
        .iter()
        .map(|p| p.nll + se(p))
        .fold(f64::NEG_INFINITY, f64::max);
    let pad = ((hi - lo) * 0.08).max(0.05);
    let (y0, y1) = (lo - pad, hi + pad);
    let k_max = points.last().map_or(1, |p| p.k).max(10) as f64;
    let (x0, x1) = (-0.15, k_max.log10() + 0.15);
    let px = |k: f64| LEFT + ((k.log10() - x0) / (x1 - x0) * (W - LEFT - RIGHT) as f64) as i64;
    let py = |v: f64| H - BOTTOM - ((v - y0) / (y1 - y0) * (H - TOP - BOTTOM) as f64) as i64;

    // Grid and tick labels: y at round values, x at each power of ten.
    let (yt, decimals) = ticks(y0, y1, 6, false);
    for v in yt {
        c.dashed((LEFT, py(v)), (W - RIGHT, py(v)), GRID);
        let label = format!("{v:.decimals$}");
        c.text(
            LEFT - 8 - text_width(&label, 1),
            py(v) - GLYPH / 2,
            &label,
            1,
            BLACK,
        );
    }
    let mut k = 1.0;
    while k <= k_max * 1.0001 {
        c.dashed((px(k), TOP), (px(k), H - BOTTOM), GRID);
        let label = format!("{k}");
        c.text(
            px(k) - text_width(&label, 1) / 2,
            H - BOTTOM + 8,
            &label,
            1,
            BLACK,
        );
        k *= 10.0;
    }
    c.line((LEFT, TOP), (LEFT, H - BOTTOM), 1, BLACK);
    c.line((LEFT, H - BOTTOM), (W - RIGHT, H - BOTTOM), 1, BLACK);
    let x_label = "k, importance samples per image (log scale)";
    c.text(
        LEFT + (W - LEFT - RIGHT - text_width(x_label, 1)) / 2,
        H - BOTTOM + 32,
        x_label,
        1,
        BLACK,
    );
    let y_label = "NLL estimate (nats), +-1 s.e. over images";
    c.text_up(
        16,
        TOP + (H - TOP - BOTTOM - text_width(y_label, 1)) / 2,
        y_label,
        1,
        BLACK,
    );

    for p in points {
        let x = px(p.k as f64);
        if let Some(s) = p.nll_stderr {
            let (a, b) = (py(p.nll - s), py(p.nll + s));
            c.line((x, a), (x, b), 2, BAR);
            c.line((x - 5, a), (x + 5, a), 2, BAR);
            c.line((x - 5, b), (x + 5, b), 2, BAR);
        }
    }
    for w in points.windows(2) {
        let a = (px(w[0].k as f64), py(w[0].nll));
        let b = (px(w[1].k as f64), py(w[1].nll));
        c.line(a, b, 2, LINE);
    }
    for p in points {
        let (x, y) = (px(p.k as f64), py(p.nll));
        c.disc(x, y, 5, LINE);
        let label = format!("{:.2}", p.nll);
        c.text(x + 8, y - GLYPH - 6, &label, 1, BLACK);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(k: usize, nll: f64) -> IwaePoint {
        IwaePoint {
            k,
            nll,
            nll_stderr: Some(0.5),
        }
    }

    /// A well-formed PNG of the expected size; the curve falls from the top left (k = 1, the
    /// largest NLL) to the lower right; no panic for a single point or a flat curve.
    #[test]
    fn draws_a_falling_curve_and_a_png() {
        let pts = [
            point(1, 89.3),
            point(10, 87.2),
            point(100, 86.5),
            point(1000, 86.1),
        ];
        let canvas = draw("IWAE bound", &pts);
        let curve: Vec<(usize, usize)> = (0..canvas.height)
            .flat_map(|y| (0..canvas.width).map(move |x| (x, y)))
            .filter(|&(x, y)| canvas.get(x, y) == LINE)
            .collect();
        let top = curve.iter().min_by_key(|p| p.1).unwrap();
        let bottom = curve.iter().max_by_key(|p| p.1).unwrap();
        assert!(top.0 < 200, "k = 1 is at the left: {top:?}");
        assert!(bottom.0 > 500, "k = 1000 is at the right: {bottom:?}");
        assert!(bottom.1 > top.1 + 150, "{top:?} {bottom:?}");
        let png = iwae_curve_png("IWAE bound", &pts);
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[16..24], [0, 0, 2, 208, 0, 0, 1, 204]); // 720 x 460
        for pts in [&pts[..1], &[point(1, 5.0), point(10, 5.0)][..]] {
            assert_eq!(&iwae_curve_png("t", pts)[..8], b"\x89PNG\r\n\x1a\n");
        }
    }
}
