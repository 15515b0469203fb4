//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong while reading, encoding or writing a file.
///
/// Every variant that concerns a file names it; the others carry the bad value. The messages of
/// the IDX variants are the ones `vae_data` has always printed, which its tests check.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file could not be written (temporary file, fsync or rename).
    #[error("cannot write {path}: {source}")]
    Write {
        /// The final name of the file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A value could not be serialized as JSON.
    #[error("cannot write {path}: the value is not JSON: {source}")]
    Json {
        /// The file it was meant for.
        path: PathBuf,
        /// serde_json's reason.
        source: serde_json::Error,
    },
    /// The file has no bytes at all.
    #[error("{path} is empty: an IDX file has at least a 4-byte magic number")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The first bytes are not an IDX magic number `00 00 <dtype> <rank>`.
    #[error("{path} is not an IDX file: magic number {found:02x?}, expected 00 00 08 {expected_rank:02x} (unsigned bytes, rank {expected_rank})")]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The four bytes found.
        found: [u8; 4],
        /// The rank this file should have (3 for images, 1 for labels).
        expected_rank: u8,
    },
    /// The header promises more bytes than the file holds.
    #[error("{path} is truncated: its header promises {expected} bytes, the file has {found}")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Bytes the header implies (header plus data).
        expected: u64,
        /// Bytes present.
        found: u64,
    },
    /// The file holds more bytes than its header describes.
    #[error("{path} has {extra} bytes after the data its header describes")]
    TrailingBytes {
        /// The file.
        path: PathBuf,
        /// Number of unexpected bytes.
        extra: u64,
    },
    /// plotters could not draw a plot (in memory, so only a font or a layout can fail).
    #[error("cannot draw the {what}: {reason}")]
    Plot {
        /// Which plot.
        what: &'static str,
        /// plotters' reason.
        reason: String,
    },
    /// A picture's pixel buffer does not match its size, or PNG cannot hold that size.
    #[error("cannot encode a {width}x{height} {colour} picture from {found} bytes: {reason}")]
    BadPicture {
        /// Width in pixels.
        width: usize,
        /// Height in pixels.
        height: usize,
        /// `grey` or `RGB`.
        colour: &'static str,
        /// Bytes given.
        found: usize,
        /// What is wrong.
        reason: String,
    },
    /// A result file, or one line of a JSON-lines file, is not JSON at all.
    #[error("{}: not JSON: {reason}", at(.path, .line, .column))]
    NotJson {
        /// The file.
        path: PathBuf,
        /// 1-based line of the file, where known.
        line: Option<usize>,
        /// 1-based column, where known.
        column: Option<usize>,
        /// serde_json's reason, without its position.
        reason: String,
    },
    /// A result file's key is missing, unknown, or holds a value of the wrong type.
    #[error("{}: key `{key}`: {reason}", at(.path, .line, .column))]
    BadKey {
        /// The file.
        path: PathBuf,
        /// 1-based line of the file, where known.
        line: Option<usize>,
        /// 1-based column, where known.
        column: Option<usize>,
        /// The key, as a path from the top: `test.neg_elbo`, `iwae_curve[2].k`.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A result CSV's header or one of its cells is not what its row type says.
    #[error("{}: column `{column}`: {reason}", at(.path, &Some(*.line), &None))]
    BadCsv {
        /// The file.
        path: PathBuf,
        /// 1-based line of the file (the header is line 1).
        line: usize,
        /// The column's name (`header` for the header line).
        column: String,
        /// What is wrong.
        reason: String,
    },
    /// Another process (or another [`crate::lock::RunLock`] of this one) holds a run folder's
    /// lock.
    #[error("another flowvae process ({holder}) is writing into {}; wait for it to finish or stop it", .dir.display())]
    Locked {
        /// The run folder.
        dir: PathBuf,
        /// `pid N, `WHAT`` as the holder wrote it into the lock file, or `pid unknown`.
        holder: String,
    },
}

/// `path`, `path:line` or `path:line:column`, as compilers name a place in a file.
fn at(path: &std::path::Path, line: &Option<usize>, column: &Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!("{}:{l}:{c}", path.display()),
        (Some(l), None) => format!("{}:{l}", path.display()),
        _ => path.display().to_string(),
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
