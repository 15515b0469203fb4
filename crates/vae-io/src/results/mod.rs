//! The result files of a run, one serde type each, written by `vae` and read by any tool:
//!
//! | File | Type | Written |
//! |---|---|---|
//! | `results.json` | [`TrainResults`] | once, when training ends |
//! | `metrics.jsonl` | [`EpochMetrics`], one line per epoch | after every epoch, rewritten atomically |
//! | `eval-<method>-<split>.json` | [`EvalSummary`] (IS, AIS or BDMC) | by `vae eval` |
//! | `eval-<method>-<split>.csv` | [`IsRow`], [`AisRow`] or [`BdmcRow`] ([`CsvRow`]) | by `vae eval` |
//! | `shard-I-of-N.json` and `.csv` | the same, with a [`ShardInfo`] | by `vae eval --shard I/N` |
//! | `shard-I-of-N.progress.json` | [`ShardProgress`] | while a shard runs |
//!
//! Every writer goes through [`crate::write_atomic`]: a reader sees the old file or the new
//! one, never a part. Every reader returns [`Error::NotJson`], [`Error::BadKey`] or
//! [`Error::BadCsv`] naming the file, the place in it and the key (`test.neg_elbo`,
//! `iwae_curve[2].k`) that is missing, unknown or of the wrong type.
//!
//! JSON has no NaN: a non-finite number is written as `null`, and every `f64` field reads
//! `null` back as NaN (an `Option<f64>` field reads it as `None`). The JSON objects are written
//! with their keys sorted, as `vae` has always written them.

mod csv;
mod eval;
mod metrics;
mod shard;
mod train;

pub use csv::{read_csv, write_csv, AisRow, BdmcRow, CsvRow, IsRow};
pub use eval::{
    AisCheck, AisEstimate, AisTrace, BdmcEstimate, Estimate, EvalSummary, IsEstimate, IwaePoint,
    Reestimate, BDMC_SIMULATED_DATA,
};
pub use metrics::{EpochMetrics, Progress};
pub use shard::{ShardInfo, ShardProgress, ShardTime};
pub use train::{SplitElbo, TrainResults};

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Error, Result};

/// Writes `value` as pretty JSON with its object keys sorted at every level (through
/// `serde_json::Value`, whose maps are sorted), atomically.
fn write_sorted_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let value = serde_json::to_value(value).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })?;
    crate::write_json(path, &value)
}

/// Reads a file as text; a missing or unreadable file is [`Error::Io`].
fn read_text(path: &Path) -> Result<String> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    crate::require_regular_file(path).map_err(io)?;
    std::fs::read_to_string(path).map_err(io)
}

/// Parses `text` (all of `path`, or its line `line` when given) as a `T`, naming the key that
/// failed.
fn parse_json<T: DeserializeOwned>(path: &Path, text: &str, line: Option<usize>) -> Result<T> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| json_error(path, line, &e.path().to_string(), e.into_inner()))?;
    // Trailing characters after the document.
    de.end().map_err(|e| json_error(path, line, ".", e))?;
    Ok(value)
}

/// Converts a `T` from a parsed JSON value of `path`, naming the key that failed (no
/// position: a value has none).
fn from_value<T: DeserializeOwned>(path: &Path, value: serde_json::Value) -> Result<T> {
    serde_path_to_error::deserialize(value)
        .map_err(|e| json_error(path, None, &e.path().to_string(), e.into_inner()))
}

/// The error of `path` for a failed parse at `key` (serde_path_to_error's path, `.` for the
/// top): [`Error::NotJson`] for bad syntax, [`Error::BadKey`] for a JSON document that is not
/// the type. `line`, for one line of a JSON-lines file, replaces serde_json's (always 1) line.
fn json_error(path: &Path, line: Option<usize>, key: &str, inner: serde_json::Error) -> Error {
    let (l, c) = (inner.line(), inner.column());
    let mut reason = inner.to_string();
    if l > 0 {
        if let Some(r) = reason.strip_suffix(&format!(" at line {l} column {c}")) {
            reason = r.to_string();
        }
    }
    let (line, column) = match (line, l) {
        (Some(n), _) => (Some(n), (c > 0).then_some(c)),
        (None, 0) => (None, None),
        (None, l) => (Some(l), Some(c)),
    };
    let path = path.to_path_buf();
    if !inner.is_data() {
        return Error::NotJson {
            path,
            line,
            column,
            reason,
        };
    }
    Error::BadKey {
        path,
        line,
        column,
        key: full_key(key, &reason),
        reason,
    }
}

/// serde reports a missing field at the object that lacks it (`iwae_curve[0]`, or `.` at the
/// top): the key is that object's path with the field's name added.
fn full_key(path: &str, reason: &str) -> String {
    let missing = reason
        .strip_prefix("missing field `")
        .and_then(|r| r.split('`').next());
    match (path, missing) {
        (".", Some(field)) => field.to_string(),
        (p, Some(field)) => format!("{p}.{field}"),
        (".", None) => "(the top level)".to_string(),
        (p, None) => p.to_string(),
    }
}

/// `null` (how JSON writes a non-finite number) as NaN.
fn nan_if_null<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// [`nan_if_null`] for every element of a list.
fn nans_if_null<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<f64>, D::Error> {
    Ok(Vec::<Option<f64>>::deserialize(d)?
        .into_iter()
        .map(|x| x.unwrap_or(f64::NAN))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_missing_fields() {
        assert_eq!(full_key(".", "missing field `test`"), "test");
        assert_eq!(
            full_key("iwae_curve[0]", "missing field `nll`"),
            "iwae_curve[0].nll"
        );
        assert_eq!(full_key("lr", "invalid type: string"), "lr");
        assert_eq!(full_key(".", "invalid type: map"), "(the top level)");
    }
}
