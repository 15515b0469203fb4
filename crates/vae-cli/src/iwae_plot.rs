//! The picture `vae eval --method is` writes beside its JSON: the IWAE bound (the estimated NLL
//! from the first k of the samples) against k on a log axis, with ±1 standard error over images,
//! drawn by `vae_io::plot`.

use vae_eval::IwaePoint;
use vae_io::plot::{iwae_curve, CurvePoint, RgbImage};

/// The PNG of [`draw`].
pub fn iwae_curve_png(title: &str, points: &[IwaePoint]) -> Vec<u8> {
    draw(title, points)
        .to_png()
        .expect("a 720 x 460 picture always encodes") // fixed size, whatever the points
}

/// Draws the curve, 720 x 460 pixels. `title` goes on top (cut to fit); `points` are in
/// increasing k, each with a finite `nll`.
fn draw(title: &str, points: &[IwaePoint]) -> RgbImage {
    let points: Vec<CurvePoint> = points
        .iter()
        .map(|p| CurvePoint {
            k: p.k,
            nll: p.nll,
            stderr: p.nll_stderr,
        })
        .collect();
    // Drawing happens in memory with the font compiled into the binary: nothing can fail.
    iwae_curve(title, &points).expect("plotters draws the IWAE curve in memory")
}

#[cfg(test)]
mod tests {
    use super::*;
    use vae_io::plot::IWAE_LINE as LINE;

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
