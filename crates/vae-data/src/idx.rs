//! The IDX file format of MNIST and Fashion-MNIST, parsed without panics: `vae_io::idx` with this
//! crate's [`Error`](crate::Error), so that a dataset's errors are one type.
//!
//! The parsing, gzip handling, size bounds and the encoder live in vae-io, where xtask's MNIST
//! conversion and the test datasets use them too; see that module for the format.

use std::path::Path;

use crate::error::Result;

pub use vae_io::idx::{encode_images, encode_labels, IdxImages};

/// Parses a rank-3 IDX file's bytes (already inflated). `path` is only used in error messages.
pub fn parse_images(bytes: &[u8], path: &Path) -> Result<IdxImages> {
    Ok(vae_io::idx::parse_images(bytes, path)?)
}

/// Parses a rank-1 IDX file's bytes (already inflated). `path` is only used in error messages.
pub fn parse_labels(bytes: &[u8], path: &Path) -> Result<Vec<u8>> {
    Ok(vae_io::idx::parse_labels(bytes, path)?)
}

/// Reads and parses an images file, inflating it first when it is gzipped.
pub fn read_images(path: &Path) -> Result<IdxImages> {
    Ok(vae_io::idx::read_images(path)?)
}

/// Reads and parses a labels file, inflating it first when it is gzipped.
pub fn read_labels(path: &Path) -> Result<Vec<u8>> {
    Ok(vae_io::idx::read_labels(path)?)
}

/// Returns the file's bytes, inflated when they start with the gzip magic `1f 8b`.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    Ok(vae_io::idx::read_maybe_gz(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    /// vae-io's IDX errors arrive as this crate's variants, with the same messages.
    #[test]
    fn errors_keep_their_variants_and_messages() {
        let path = Path::new("test.idx");
        let err = parse_images(&[], path).unwrap_err();
        assert!(matches!(err, Error::Empty { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "test.idx is empty: an IDX file has at least a 4-byte magic number"
        );
        let bytes = encode_labels(&[1, 2, 3]);
        assert!(matches!(
            parse_labels(&bytes[..9], path),
            Err(Error::Truncated {
                expected: 11,
                found: 9,
                ..
            })
        ));
        assert!(matches!(
            parse_labels(&[bytes.as_slice(), &[0]].concat(), path),
            Err(Error::TrailingBytes { extra: 1, .. })
        ));
        assert!(matches!(
            parse_images(&bytes, path),
            Err(Error::BadMagic {
                expected_rank: 3,
                ..
            })
        ));
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.idx");
        let err = read_labels(&missing).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
        assert!(err.to_string().starts_with("cannot read "), "{err}");
    }
}
