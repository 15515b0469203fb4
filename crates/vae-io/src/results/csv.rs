//! `eval-<method>-<split>.csv`: one row per image of `vae eval`, one row type per method, one
//! writer and one reader.
//!
//! The format is plain: a header line, then one line per image, cells separated by commas
//! with no quoting (every cell is a number, except the `flag` columns: reasons joined by `;`, none of
//! them with a comma), each ending in a newline. Numbers are Rust's
//! shortest round-trip form (`1`, `-97.17213116621068`, `NaN`, `inf`); an absent value (a
//! standard error of one sample) is an empty cell.

use std::path::Path;

use super::read_text;
use crate::error::{Error, Result};

/// A row of a per-image CSV.
pub trait CsvRow: Sized {
    /// The column names, in order: the header line.
    const COLUMNS: &'static [&'static str];

    /// How many of [`COLUMNS`](Self::COLUMNS) the first version of the file had. Columns are
    /// only ever appended, each accepting an empty cell, so [`read_csv`] reads a file written
    /// before them (its header a prefix of `COLUMNS`) as if their cells were empty.
    const FIRST_VERSION_COLUMNS: usize;

    /// The row's cells, one per column.
    fn cells(&self) -> Vec<String>;

    /// The row from its cells (as many as [`CsvRow::COLUMNS`]); an error gives the index of
    /// the bad cell and why.
    fn from_cells(cells: &[&str]) -> std::result::Result<Self, (usize, String)>;
}

/// One image of an importance-sampling evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct IsRow {
    /// The image's index in the evaluated split.
    pub index: usize,
    /// `log p̂(x)` from all k samples, nats.
    pub log_px: f64,
    /// Its Monte Carlo standard error (`None` for one sample).
    pub log_px_stderr: Option<f64>,
    /// The ELBO of the same samples, nats.
    pub elbo: f64,
    /// The effective sample size of the importance weights.
    pub ess: f64,
    /// The PSIS k-hat of the weights (`None` when too few samples fit a tail).
    pub khat: Option<f64>,
    /// The replicate-based Monte Carlo error of `log_px` (spread of independent groups of
    /// samples; `None` for fewer than 200 samples).
    pub log_px_mc_se: Option<f64>,
    /// Why the estimate should not be trusted: `khat`, `ess`, `ais` (below the AIS check),
    /// joined by `;`; empty when fine.
    pub flag: String,
    /// The AIS check's `log p̂(x)` (`--check-with-ais`), nats.
    pub ais_check_log_px: Option<f64>,
    /// The full AIS re-estimate of a flagged image (`--reestimate-flagged`), nats.
    pub ais_log_px: Option<f64>,
}

/// One image of an AIS evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct AisRow {
    /// The image's index in the evaluated split.
    pub index: usize,
    /// `log p̂(x)`, the log-mean-exp of the chains' weights, nats.
    pub log_px: f64,
    /// Its Monte Carlo standard error (`None` for one chain).
    pub log_px_stderr: Option<f64>,
    /// The chains' mean log-weight (the original's number), nats.
    pub mean_log_weight: f64,
    /// The effective sample size of the chains' weights.
    pub ess: f64,
    /// The replicate-based Monte Carlo error of `log_px`: the chains' spread over `√K`
    /// (`None` for one chain).
    pub log_px_mc_se: Option<f64>,
    /// Why the estimate should not be trusted: `spread` (the chains disagree by more than a
    /// nat), `ess` (below half the chains), joined by `;`; empty when fine.
    pub flag: String,
}

/// One simulated image of a BDMC evaluation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BdmcRow {
    /// The simulated image's index.
    pub index: usize,
    /// Forward AIS's lower bound on `log p(x)`, nats.
    pub forward_log_px: f64,
    /// Reverse AIS's upper bound on `log p(x)`, nats.
    pub reverse_log_px: f64,
    /// `reverse - forward`.
    pub gap: f64,
}

fn num(cells: &[&str], i: usize) -> std::result::Result<f64, (usize, String)> {
    cells[i]
        .parse()
        .map_err(|_| (i, format!("`{}` is not a number", cells[i])))
}

fn opt_num(cells: &[&str], i: usize) -> std::result::Result<Option<f64>, (usize, String)> {
    if cells[i].is_empty() {
        return Ok(None);
    }
    num(cells, i).map(Some)
}

fn index(cells: &[&str]) -> std::result::Result<usize, (usize, String)> {
    cells[0]
        .parse()
        .map_err(|_| (0, format!("`{}` is not an image index", cells[0])))
}

/// Cell `i` as a `;`-joined list of names from `valid` (empty for none).
fn flags(cells: &[&str], i: usize, valid: &[&str]) -> std::result::Result<String, (usize, String)> {
    let flag = cells[i];
    if flag.is_empty() || flag.split(';').all(|f| valid.contains(&f)) {
        Ok(flag.to_string())
    } else {
        Err((
            i,
            format!("`{flag}` is not a `;`-joined list of {}", valid.join(", ")),
        ))
    }
}

fn opt_cell(x: Option<f64>) -> String {
    x.map(|v| v.to_string()).unwrap_or_default()
}

impl CsvRow for IsRow {
    const COLUMNS: &'static [&'static str] = &[
        "index",
        "log_px",
        "log_px_stderr",
        "elbo",
        "ess",
        "khat",
        "log_px_mc_se",
        "flag",
        "ais_check_log_px",
        "ais_log_px",
    ];
    const FIRST_VERSION_COLUMNS: usize = 5;

    fn cells(&self) -> Vec<String> {
        vec![
            self.index.to_string(),
            self.log_px.to_string(),
            opt_cell(self.log_px_stderr),
            self.elbo.to_string(),
            self.ess.to_string(),
            opt_cell(self.khat),
            opt_cell(self.log_px_mc_se),
            self.flag.clone(),
            opt_cell(self.ais_check_log_px),
            opt_cell(self.ais_log_px),
        ]
    }

    fn from_cells(c: &[&str]) -> std::result::Result<Self, (usize, String)> {
        let flag = flags(c, 7, &["khat", "ess", "ais"])?;
        Ok(IsRow {
            index: index(c)?,
            log_px: num(c, 1)?,
            log_px_stderr: opt_num(c, 2)?,
            elbo: num(c, 3)?,
            ess: num(c, 4)?,
            khat: opt_num(c, 5)?,
            log_px_mc_se: opt_num(c, 6)?,
            flag,
            ais_check_log_px: opt_num(c, 8)?,
            ais_log_px: opt_num(c, 9)?,
        })
    }
}

impl CsvRow for AisRow {
    const COLUMNS: &'static [&'static str] = &[
        "index",
        "log_px",
        "log_px_stderr",
        "mean_log_weight",
        "ess",
        "log_px_mc_se",
        "flag",
    ];
    const FIRST_VERSION_COLUMNS: usize = 5;

    fn cells(&self) -> Vec<String> {
        vec![
            self.index.to_string(),
            self.log_px.to_string(),
            opt_cell(self.log_px_stderr),
            self.mean_log_weight.to_string(),
            self.ess.to_string(),
            opt_cell(self.log_px_mc_se),
            self.flag.clone(),
        ]
    }

    fn from_cells(c: &[&str]) -> std::result::Result<Self, (usize, String)> {
        Ok(AisRow {
            index: index(c)?,
            log_px: num(c, 1)?,
            log_px_stderr: opt_num(c, 2)?,
            mean_log_weight: num(c, 3)?,
            ess: num(c, 4)?,
            log_px_mc_se: opt_num(c, 5)?,
            flag: flags(c, 6, &["spread", "ess"])?,
        })
    }
}

impl CsvRow for BdmcRow {
    const COLUMNS: &'static [&'static str] = &["index", "forward_log_px", "reverse_log_px", "gap"];
    const FIRST_VERSION_COLUMNS: usize = 4;

    fn cells(&self) -> Vec<String> {
        vec![
            self.index.to_string(),
            self.forward_log_px.to_string(),
            self.reverse_log_px.to_string(),
            self.gap.to_string(),
        ]
    }

    fn from_cells(c: &[&str]) -> std::result::Result<Self, (usize, String)> {
        Ok(BdmcRow {
            index: index(c)?,
            forward_log_px: num(c, 1)?,
            reverse_log_px: num(c, 2)?,
            gap: num(c, 3)?,
        })
    }
}

/// Writes `rows` under their header, atomically ([`crate::write_atomic`]).
pub fn write_csv<R: CsvRow>(path: &Path, rows: &[R]) -> Result<()> {
    let mut text = R::COLUMNS.join(",");
    text.push('\n');
    for r in rows {
        text.push_str(&r.cells().join(","));
        text.push('\n');
    }
    crate::write_atomic(path, text.as_bytes())
}

/// Reads the rows of a file [`write_csv`] wrote, by this version or an older one (see
/// [`CsvRow::FIRST_VERSION_COLUMNS`]); an error names the file, the line and the column
/// ([`Error::BadCsv`]).
pub fn read_csv<R: CsvRow>(path: &Path) -> Result<Vec<R>> {
    let text = read_text(path)?;
    let bad = |line: usize, column: &str, reason: String| Error::BadCsv {
        path: path.to_path_buf(),
        line,
        column: column.to_string(),
        reason,
    };
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    // This version's header, or an older one: a prefix of at least the first version's columns.
    let columns = (R::FIRST_VERSION_COLUMNS..=R::COLUMNS.len())
        .rev()
        .find(|&n| header == R::COLUMNS[..n].join(","))
        .ok_or_else(|| {
            bad(
                1,
                "header",
                format!(
                    "`{header}`, expected `{}` (or, from an older version, its first {} columns \
                     or more)",
                    R::COLUMNS.join(","),
                    R::FIRST_VERSION_COLUMNS
                ),
            )
        })?;
    let want = R::COLUMNS[..columns].join(",");
    lines
        .enumerate()
        .map(|(i, l)| {
            let line = i + 2;
            let mut cells: Vec<&str> = l.split(',').collect();
            if cells.len() != columns {
                return Err(bad(
                    line,
                    R::COLUMNS[cells.len().min(columns - 1)],
                    format!("{} cells, expected {columns} ({want})", cells.len()),
                ));
            }
            cells.resize(R::COLUMNS.len(), "");
            R::from_cells(&cells).map_err(|(c, reason)| bad(line, R::COLUMNS[c], reason))
        })
        .collect()
}
