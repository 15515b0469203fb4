//! The IDX file format of MNIST and Fashion-MNIST, parsed without panics.
//!
//! flowvae parses IDX itself instead of calling the `mnist` crate: that crate panics on any bad file,
//! asserts exactly 60 000 + 10 000 items, cannot read the gzipped files Debian ships for
//! Fashion-MNIST, and its validation split silently takes training items.
//! The format is small: a magic number `00 00 08 <rank>` (`08` = unsigned bytes), `rank` big-endian
//! `u32` dimensions, then the row-major data. Gzipped files (`1f 8b`) are inflated transparently,
//! up to 1 GiB. [`encode_images`] and [`encode_labels`] are the project's one IDX writer (the
//! MNIST conversion of `cargo xtask bootstrap` and the test datasets use them).

use std::io::Read;
use std::path::Path;

use crate::atomic::write_atomic;
use crate::error::{Error, Result};

/// IDX data type code for unsigned bytes, the only type MNIST-like datasets use.
const DTYPE_U8: u8 = 0x08;
/// Inflated files larger than this are rejected (MNIST's largest file is 47 MB).
const MAX_INFLATED_BYTES: u64 = 1 << 30;

/// A stack of greyscale images as stored in an IDX rank-3 file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxImages {
    /// Number of images.
    pub count: usize,
    /// Rows per image.
    pub rows: usize,
    /// Columns per image.
    pub cols: usize,
    /// `count * rows * cols` pixel values in 0..=255, row-major.
    pub pixels: Vec<u8>,
}

/// Parses a rank-3 IDX file's bytes (already inflated). `path` is only used in error messages.
pub fn parse_images(bytes: &[u8], path: &Path) -> Result<IdxImages> {
    let dims = parse_header(bytes, path, 3)?;
    let (count, rows, cols) = (dims[0], dims[1], dims[2]);
    let data = check_len(bytes, path, 3, &dims)?;
    Ok(IdxImages {
        count,
        rows,
        cols,
        pixels: data.to_vec(),
    })
}

/// Parses a rank-1 IDX file's bytes (already inflated). `path` is only used in error messages.
pub fn parse_labels(bytes: &[u8], path: &Path) -> Result<Vec<u8>> {
    let dims = parse_header(bytes, path, 1)?;
    Ok(check_len(bytes, path, 1, &dims)?.to_vec())
}

/// Reads and parses an images file, inflating it first when it is gzipped.
pub fn read_images(path: &Path) -> Result<IdxImages> {
    parse_images(&read_maybe_gz(path)?, path)
}

/// Reads and parses a labels file, inflating it first when it is gzipped.
pub fn read_labels(path: &Path) -> Result<Vec<u8>> {
    parse_labels(&read_maybe_gz(path)?, path)
}

/// Encodes images as a rank-3 IDX file (the inverse of [`parse_images`]).
pub fn encode_images(images: &IdxImages) -> Vec<u8> {
    encode(&[images.count, images.rows, images.cols], &images.pixels)
}

/// Encodes labels as a rank-1 IDX file (the inverse of [`parse_labels`]).
pub fn encode_labels(labels: &[u8]) -> Vec<u8> {
    encode(&[labels.len()], labels)
}

/// Writes images as a rank-3 IDX file, atomically.
pub fn write_images(path: &Path, images: &IdxImages) -> Result<()> {
    write_atomic(path, &encode_images(images))
}

/// Writes labels as a rank-1 IDX file, atomically.
pub fn write_labels(path: &Path, labels: &[u8]) -> Result<()> {
    write_atomic(path, &encode_labels(labels))
}

fn encode(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 4 * dims.len() + data.len());
    out.extend_from_slice(&[0, 0, DTYPE_U8, dims.len() as u8]);
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

/// Returns the file's bytes, inflated when they start with the gzip magic `1f 8b`.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    crate::require_regular_file(path).map_err(io)?;
    let raw = std::fs::read(path).map_err(io)?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .take(MAX_INFLATED_BYTES)
            .read_to_end(&mut out)
            .map_err(io)?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn parse_header(bytes: &[u8], path: &Path, rank: u8) -> Result<Vec<usize>> {
    if bytes.is_empty() {
        return Err(Error::Empty {
            path: path.to_path_buf(),
        });
    }
    let mut magic = [0u8; 4];
    let n = bytes.len().min(4);
    magic[..n].copy_from_slice(&bytes[..n]);
    if n < 4 || magic != [0, 0, DTYPE_U8, rank] {
        return Err(Error::BadMagic {
            path: path.to_path_buf(),
            found: magic,
            expected_rank: rank,
        });
    }
    let header_len = 4 + 4 * rank as usize;
    if bytes.len() < header_len {
        return Err(Error::Truncated {
            path: path.to_path_buf(),
            expected: header_len as u64,
            found: bytes.len() as u64,
        });
    }
    Ok(bytes[4..header_len]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect())
}

fn check_len<'a>(bytes: &'a [u8], path: &Path, rank: u8, dims: &[usize]) -> Result<&'a [u8]> {
    let header_len = 4 + 4 * rank as u64;
    // u128 product: three u32 dimensions cannot overflow it, and 2^96 is far beyond any file.
    let data_len: u128 = dims.iter().map(|&d| d as u128).product();
    let expected = header_len as u128 + data_len;
    let found = bytes.len() as u128;
    if found < expected {
        return Err(Error::Truncated {
            path: path.to_path_buf(),
            expected: expected.min(u64::MAX as u128) as u64,
            found: found as u64,
        });
    }
    if found > expected {
        return Err(Error::TrailingBytes {
            path: path.to_path_buf(),
            extra: (found - expected) as u64,
        });
    }
    Ok(&bytes[header_len as usize..])
}

#[cfg(test)]
mod tests {

    #[test]
    fn non_regular_files_are_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        for path in [dir.path(), Path::new("/dev/null")] {
            let e = read_maybe_gz(path).unwrap_err().to_string();
            assert!(e.contains("not a regular file"), "{}: {e}", path.display());
            let e = crate::results::EvalSummary::read(path)
                .unwrap_err()
                .to_string();
            assert!(e.contains("not a regular file"), "{}: {e}", path.display());
        }
    }

    use super::*;

    fn path() -> &'static Path {
        Path::new("test.idx")
    }

    fn images(count: usize) -> IdxImages {
        IdxImages {
            count,
            rows: 2,
            cols: 3,
            pixels: (0..count * 6).map(|i| i as u8).collect(),
        }
    }

    #[test]
    fn round_trip() {
        let im = images(4);
        assert_eq!(parse_images(&encode_images(&im), path()).unwrap(), im);
        let labels = vec![3, 1, 4, 1, 5];
        assert_eq!(
            parse_labels(&encode_labels(&labels), path()).unwrap(),
            labels
        );
    }

    #[test]
    fn empty_file() {
        let err = parse_images(&[], path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "test.idx is empty: an IDX file has at least a 4-byte magic number"
        );
    }

    #[test]
    fn wrong_magic() {
        let mut bytes = encode_images(&images(2));
        bytes[2] = 0x0d; // float data
        let msg = parse_images(&bytes, path()).unwrap_err().to_string();
        assert!(
            msg.contains("is not an IDX file: magic number [00, 00, 0d, 03]"),
            "{msg}"
        );
        // A labels file given where images are expected has rank 1, not 3.
        let msg = parse_images(&encode_labels(&[1, 2]), path())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("expected 00 00 08 03"), "{msg}");
        // Fewer than four bytes.
        let msg = parse_labels(&[0, 0], path()).unwrap_err().to_string();
        assert!(msg.contains("magic number [00, 00, 00, 00]"), "{msg}");
    }

    #[test]
    fn truncated_header_and_data() {
        let bytes = encode_images(&images(2));
        let msg = parse_images(&bytes[..10], path()).unwrap_err().to_string();
        assert_eq!(
            msg,
            "test.idx is truncated: its header promises 16 bytes, the file has 10"
        );
        let msg = parse_images(&bytes[..bytes.len() - 1], path())
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            "test.idx is truncated: its header promises 28 bytes, the file has 27"
        );
    }

    #[test]
    fn dimension_mismatch_is_reported_as_size_disagreement() {
        // Header says 3 images of 2x3, data holds 2: the dimensions disagree with the data.
        let mut bytes = encode_images(&images(2));
        bytes[7] = 3;
        assert!(matches!(
            parse_images(&bytes, path()),
            Err(Error::Truncated { expected: 34, .. })
        ));
        bytes[7] = 1;
        let msg = parse_images(&bytes, path()).unwrap_err().to_string();
        assert_eq!(
            msg,
            "test.idx has 6 bytes after the data its header describes"
        );
    }

    #[test]
    fn huge_dimensions_do_not_overflow() {
        let mut bytes = vec![0, 0, 8, 3];
        for _ in 0..3 {
            bytes.extend_from_slice(&u32::MAX.to_be_bytes());
        }
        assert!(matches!(
            parse_images(&bytes, path()),
            Err(Error::Truncated { .. })
        ));
    }

    #[test]
    fn gzip_is_inflated() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("labels.gz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&encode_labels(&[7, 2, 1])).unwrap();
        std::fs::write(&file, gz.finish().unwrap()).unwrap();
        assert_eq!(read_labels(&file).unwrap(), vec![7, 2, 1]);
        // A corrupt gzip stream is an I/O error naming the file, not a panic.
        std::fs::write(&file, [0x1f, 0x8b, 0, 1, 2]).unwrap();
        let msg = read_labels(&file).unwrap_err().to_string();
        assert!(
            msg.starts_with(&format!("cannot read {}", file.display())),
            "{msg}"
        );
    }

    #[test]
    fn written_files_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let (fi, fl) = (dir.path().join("i.idx"), dir.path().join("l.idx"));
        write_images(&fi, &images(3)).unwrap();
        write_labels(&fl, &[1, 2, 3]).unwrap();
        assert_eq!(read_images(&fi).unwrap(), images(3));
        assert_eq!(read_labels(&fl).unwrap(), [1, 2, 3]);
        let missing = dir.path().join("missing.idx");
        let msg = read_labels(&missing).unwrap_err().to_string();
        assert!(msg.contains("missing.idx"), "{msg}");
    }
}
