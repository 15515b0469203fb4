//! Writes a picture grid, the two plots and an IDX file into a folder, atomically:
//! `cargo run -p vae-io --example pictures -- OUT_DIR` (default: a folder under the system's
//! temporary folder).

use std::path::PathBuf;

use vae_io::plot::{
    iwae_curve, sweep_summary, CurvePoint, RunValue, SettingStat, SummaryPlot, XAxis,
};
use vae_io::{idx, image_grid, write_atomic};

fn main() -> Result<(), vae_io::Error> {
    let out = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("vae-io-example"));
    std::fs::create_dir_all(&out).map_err(|source| vae_io::Error::Write {
        path: out.clone(),
        source,
    })?;

    // Ten 28x28 gradients, brighter to the right and the further down the list.
    let cells: Vec<Vec<f32>> = (0..10)
        .map(|k| {
            (0..784)
                .map(|p| (p % 28) as f32 / 27.0 * (k + 1) as f32 / 10.0)
                .collect()
        })
        .collect();
    let refs: Vec<Option<&[f32]>> = cells.iter().map(|c| Some(c.as_slice())).collect();
    let grid = out.join("grid.png");
    image_grid(&refs, 28, 2, 5, 2).save_png(&grid)?;

    // An IWAE curve and a sweep summary with two series.
    let curve: Vec<CurvePoint> = [(1, 89.31, 0.42), (10, 87.18, 0.40), (100, 86.47, 0.39)]
        .into_iter()
        .chain([(1000, 86.12, 0.39), (5000, 86.05, 0.39)])
        .map(|(k, nll, se)| CurvePoint {
            k,
            nll,
            stderr: Some(se),
        })
        .collect();
    let iwae = out.join("iwae.png");
    write_atomic(
        &iwae,
        &iwae_curve(
            "IWAE bound, mnist test (10000 images), k up to 5000",
            &curve,
        )?
        .to_png()?,
    )?;
    let mut settings = Vec::new();
    let mut runs = Vec::new();
    for (series, offset) in [(0, 0.0), (1, -1.5)] {
        for steps in [0, 2, 4, 8] {
            let mean = 92.0 - 3.0 * (steps as f64 + 1.0).ln() + offset;
            for (column, noise) in [-0.4, 0.5].into_iter().enumerate() {
                runs.push(RunValue {
                    series,
                    x: steps as f64,
                    value: mean + noise,
                    column,
                });
            }
            settings.push(SettingStat {
                series,
                x: steps as f64,
                mean: mean + 0.05,
                sd: Some(0.64),
            });
        }
    }
    let plot = SummaryPlot {
        title: "iaf-depth: test NLL (IS, k = 5000) vs flow.layers".into(),
        x_label: "flow.layers".into(),
        y_label: "test NLL (IS, k = 5000), nats".into(),
        x_axis: XAxis::Numeric { integer: true },
        series: vec!["hidden=[320,320]".into(), "hidden=[640,640]".into()],
        settings,
        runs,
    };
    let summary = out.join("summary.png");
    write_atomic(&summary, &sweep_summary(&plot)?.to_png()?)?;

    let labels = out.join("labels-idx1-ubyte");
    idx::write_labels(&labels, &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9])?;
    for f in [grid, iwae, summary, labels] {
        println!("wrote {}", f.display());
    }
    Ok(())
}
