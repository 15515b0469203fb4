//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong while locating, parsing or splitting a dataset.
///
/// Every variant that concerns a file names it, so a user can tell which download to repair.
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
    /// Images are not 28 x 28.
    #[error("{path} holds {rows}x{cols} images; flowvae's networks need 28x28")]
    ImageSize {
        /// The file.
        path: PathBuf,
        /// Rows per image.
        rows: usize,
        /// Columns per image.
        cols: usize,
    },
    /// The images file and the labels file disagree on the number of items.
    #[error("{images} holds {n_images} images but {labels} holds {n_labels} labels")]
    CountMismatch {
        /// The images file.
        images: PathBuf,
        /// The labels file.
        labels: PathBuf,
        /// Items in the images file.
        n_images: usize,
        /// Items in the labels file.
        n_labels: usize,
    },
    /// A label is outside 0..=9.
    #[error("{path}: label {label} at item {index} is outside 0..=9")]
    BadLabel {
        /// The file.
        path: PathBuf,
        /// Item index.
        index: usize,
        /// The label found.
        label: u8,
    },
    /// The dataset's files are not in the data folder.
    #[error("{dataset} is not installed: {path} does not exist ({hint})")]
    NotInstalled {
        /// Dataset name.
        dataset: String,
        /// The missing file.
        path: PathBuf,
        /// What to do about it.
        hint: String,
    },
    /// The requested split does not fit the data.
    #[error(
        "invalid split: validation size {validation} must be below the {available} training items"
    )]
    BadSplit {
        /// Requested validation size.
        validation: usize,
        /// Items in the training file.
        available: usize,
    },
    /// A batch configuration value is out of range.
    #[error("invalid batch setting `{field}` = {value}: {expected}")]
    BadBatchConfig {
        /// The field name.
        field: &'static str,
        /// The bad value, printed.
        value: String,
        /// What would be valid.
        expected: &'static str,
    },
    /// A tensor operation failed (device unavailable, out of memory).
    #[error("tensor error: {0}")]
    Tch(#[from] tch::TchError),
    /// A file error of vae-io that has no variant of its own here.
    #[error(transparent)]
    File(vae_io::Error),
}

/// vae-io's IDX errors become the variants of the same name, so that callers match on one type.
impl From<vae_io::Error> for Error {
    fn from(e: vae_io::Error) -> Error {
        match e {
            vae_io::Error::Io { path, source } => Error::Io { path, source },
            vae_io::Error::Empty { path } => Error::Empty { path },
            vae_io::Error::BadMagic {
                path,
                found,
                expected_rank,
            } => Error::BadMagic {
                path,
                found,
                expected_rank,
            },
            vae_io::Error::Truncated {
                path,
                expected,
                found,
            } => Error::Truncated {
                path,
                expected,
                found,
            },
            vae_io::Error::TrailingBytes { path, extra } => Error::TrailingBytes { path, extra },
            other => Error::File(other),
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
