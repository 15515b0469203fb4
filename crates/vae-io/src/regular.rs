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
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file (a folder, FIFO or device)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
