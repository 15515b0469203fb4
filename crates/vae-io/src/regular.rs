//! The one check before flowvae reads a file a user named (a checkpoint, a data file, a result
//! file): it must be a regular file. A FIFO would block the read forever, a character device
//! (`/dev/zero`) would never end, and a folder gives an unhelpful OS error.

use std::path::Path;

/// `Ok` when `path` is a regular file (a symbolic link counts as what it points to); else an
/// `InvalidInput` error saying it is not one, or the OS error when it cannot be looked at.
pub fn require_regular_file(path: &Path) -> std::io::Result<()> {
    if std::fs::metadata(path)?.is_file() {
        Ok(())
    } else {
        Err(not_regular())
    }
}

/// The error of a path that is a folder, FIFO or device.
fn not_regular() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        "not a regular file (a folder, FIFO or device)",
    )
}

/// The largest settings file (config, sweep or evaluation file) [`read_settings_text`] reads,
/// bytes; flowvae's own are a few kilobytes.
pub const MAX_SETTINGS_BYTES: u64 = 1 << 20;

/// Reads a settings file as text: a regular file ([`require_regular_file`]: a FIFO would block
/// the read, a device never end it) of at most [`MAX_SETTINGS_BYTES`], else an `InvalidInput`
/// error that says which limit, or the OS error.
pub fn read_settings_text(path: &Path) -> std::io::Result<String> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(not_regular());
    }
    let len = meta.len();
    if len > MAX_SETTINGS_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{len} bytes; a settings file is at most {MAX_SETTINGS_BYTES} bytes"),
        ));
    }
    std::fs::read_to_string(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_text_is_bounded_and_regular() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("a.json");
        std::fs::write(&small, "{}").unwrap();
        assert_eq!(read_settings_text(&small).unwrap(), "{}");
        let big = dir.path().join("b.json");
        std::fs::write(&big, vec![b' '; MAX_SETTINGS_BYTES as usize + 1]).unwrap();
        let e = read_settings_text(&big).unwrap_err();
        assert!(e.to_string().contains("at most 1048576 bytes"), "{e}");
        for p in [dir.path(), Path::new("/dev/zero")] {
            let e = read_settings_text(p).unwrap_err();
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::InvalidInput,
                "{}",
                p.display()
            );
        }
    }

    #[test]
    fn only_regular_files_pass() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        require_regular_file(&file).unwrap();
        for p in [dir.path(), Path::new("/dev/null")] {
            let e = require_regular_file(p).unwrap_err();
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::InvalidInput,
                "{}",
                p.display()
            );
        }
        let e = require_regular_file(&dir.path().join("missing")).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    }
}
