//! Writes a picture grid, a small plot and an IDX file into a folder, atomically:
//! `cargo run -p vae-io --example pictures -- OUT_DIR` (default: a folder under the system's
//! temporary folder).

use std::path::PathBuf;

use vae_io::raster::{text_width, Canvas, BLACK, WHITE};
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

    // A line and its label on a white canvas.
    let mut c = Canvas::new(200, 100, WHITE);
    c.line((10, 90), (190, 10), 2, [31, 119, 180]);
    let label = "y = x";
    c.text(190 - text_width(label, 1), 80, label, 1, BLACK);
    let plot = out.join("plot.png");
    write_atomic(&plot, &c.to_png()?)?;

    let labels = out.join("labels-idx1-ubyte");
    idx::write_labels(&labels, &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9])?;
    for f in [grid, plot, labels] {
        println!("wrote {}", f.display());
    }
    Ok(())
}
