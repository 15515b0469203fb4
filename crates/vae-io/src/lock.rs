//! An advisory lock per run folder, so that two processes never write into one run at once.
//!
//! [`RunLock::acquire`] takes an exclusive lock on `DIR/.flowvae.lock` (std's [`File::try_lock`]:
//! `flock` on Unix, `LockFileEx` on Windows) and writes the holder's process id and what it is
//! doing into the file, for the message a second process gets. The lock lives as long as the
//! [`RunLock`]; the operating system releases it when the file is closed, which includes the
//! holder dying in any way (SIGKILL, a crash, a node's reboot). So a lock left by a dead process
//! is no lock at all: the next [`RunLock::acquire`] takes it over, and the stale pid in the file
//! is overwritten. The file itself stays in the folder; only the lock on it matters.
//!
//! The lock is advisory: it stops flowvae processes that ask for it, nothing else. On a network
//! filesystem it works where that filesystem supports `flock` across machines (NFS through its
//! byte-range locks; Lustre only when mounted with `flock`); where the filesystem refuses locks
//! altogether, [`RunLock::acquire`] says so in [`RunLock::unlocked_reason`] instead of failing.

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The lock file's name in the run folder.
pub const LOCK_FILE: &str = ".flowvae.lock";

/// An exclusive lock on a run folder, held until dropped.
#[derive(Debug)]
pub struct RunLock {
    /// The open lock file: closing it releases the lock.
    _file: File,
    path: PathBuf,
    unlocked_reason: Option<String>,
}

impl RunLock {
    /// Takes the lock of run folder `dir` (which must exist) for `what` (e.g. `vae train`),
    /// without waiting: [`Error::Locked`], naming the holder's pid and `what`, when another
    /// process (or another [`RunLock`] of this process) holds it.
    pub fn acquire(dir: &Path, what: &str) -> Result<RunLock> {
        Self::acquire_at(dir.join(LOCK_FILE), dir, what)
    }

    /// Takes the lock of one output file `out` (e.g. an evaluation's summary, whose CSV and
    /// picture go beside it): `.<name>.lock` in its folder, which must exist. Two evaluations
    /// writing the same files cannot run at once; an evaluation and a training of the same run
    /// can, since they write different files. [`Error::Locked`] names `out`.
    pub fn acquire_output(out: &Path, what: &str) -> Result<RunLock> {
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let folder = out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Self::acquire_at(folder.join(format!(".{name}.lock")), out, what)
    }

    /// Locks `path`, naming `target` (what the lock protects) in the error.
    fn acquire_at(path: PathBuf, target: &Path, what: &str) -> Result<RunLock> {
        let dir = target;
        let write_fail = |source| Error::Write {
            path: path.clone(),
            source,
        };
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false) // the holder's pid is in it until we hold the lock
            .open(&path)
            .map_err(write_fail)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = read_holder(&mut file);
                return Err(Error::Locked {
                    dir: dir.to_path_buf(),
                    holder,
                });
            }
            Err(TryLockError::Error(e)) if lock_unsupported(&e) => {
                return Ok(RunLock {
                    _file: file,
                    path,
                    unlocked_reason: Some(e.to_string()),
                });
            }
            Err(TryLockError::Error(e)) => return Err(write_fail(e)),
        }
        (|| {
            file.set_len(0)?;
            file.rewind()?;
            writeln!(file, "{} {what}", std::process::id())?;
            file.flush()
        })()
        .map_err(write_fail)?;
        Ok(RunLock {
            _file: file,
            path,
            unlocked_reason: None,
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Why the folder is not locked although this [`RunLock`] exists: the filesystem does not
    /// support locks (the OS error). `None` when the lock is held.
    pub fn unlocked_reason(&self) -> Option<&str> {
        self.unlocked_reason.as_deref()
    }
}

/// `pid N, `WHAT`` from the lock file, or what is known of it. The holder writes the file just
/// after locking it, so an empty file is read again a few times before giving up.
fn read_holder(file: &mut File) -> String {
    let mut text = String::new();
    for _ in 0..5 {
        text.clear();
        let read = file.rewind().and_then(|()| file.read_to_string(&mut text));
        if read.is_ok() && text.contains('\n') {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let line = text.lines().next().unwrap_or("").trim();
    match line.split_once(' ') {
        Some((pid, what)) if pid.parse::<u32>().is_ok() => format!("pid {pid}, `{what}`"),
        _ if line.parse::<u32>().is_ok() => format!("pid {line}"),
        _ => "pid unknown".into(),
    }
}

/// Whether `e` says the filesystem cannot lock files at all (ENOSYS, ENOLCK, EOPNOTSUPP), rather
/// than that this lock failed.
fn lock_unsupported(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::Unsupported
        || (cfg!(target_os = "linux") && matches!(e.raw_os_error(), Some(37 | 38 | 95)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_lock_is_per_file_and_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("eval-is-test.json");
        let run = RunLock::acquire(dir.path(), "vae train").unwrap();
        // The run's lock does not stop an evaluation writing its own files into the folder.
        let first = RunLock::acquire_output(&out, "vae eval").unwrap();
        assert_eq!(first.path(), dir.path().join(".eval-is-test.json.lock"));
        let other = RunLock::acquire_output(&dir.path().join("eval-ais-test.json"), "vae eval");
        assert!(other.is_ok());
        let err = RunLock::acquire_output(&out, "vae eval")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("`vae eval`) is writing into {}", out.display())),
            "{err}"
        );
        drop((run, first));
        assert!(RunLock::acquire_output(&out, "vae eval").is_ok());
    }

    #[test]
    fn a_second_lock_fails_naming_the_holder_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path(), "vae train").unwrap();
        assert_eq!(first.unlocked_reason(), None);
        assert_eq!(first.path(), dir.path().join(LOCK_FILE));
        let pid = std::process::id();
        assert_eq!(
            std::fs::read_to_string(first.path()).unwrap(),
            format!("{pid} vae train\n")
        );
        // Another open file description of the same file conflicts, even in this process.
        let err = RunLock::acquire(dir.path(), "vae train").unwrap_err();
        assert!(matches!(err, Error::Locked { .. }));
        assert_eq!(
            err.to_string(),
            format!(
                "another flowvae process (pid {pid}, `vae train`) is writing into {}; wait for \
                 it to finish or stop it",
                dir.path().display()
            )
        );
        // The failed attempt left the holder's line alone.
        assert_eq!(
            std::fs::read_to_string(first.path()).unwrap(),
            format!("{pid} vae train\n")
        );
        drop(first);
        // Released: taken again, and the stale holder's longer line is replaced whole.
        let again = RunLock::acquire(dir.path(), "x").unwrap();
        assert_eq!(
            std::fs::read_to_string(again.path()).unwrap(),
            format!("{pid} x\n")
        );
    }

    #[test]
    fn a_lock_file_without_a_holder_line_still_gives_a_message() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_FILE);
        // Locked by a handle that wrote nothing (a holder between its lock and its write).
        let file = File::create(&path).unwrap();
        file.try_lock().unwrap();
        let err = RunLock::acquire(dir.path(), "vae train").unwrap_err();
        assert!(err.to_string().contains("(pid unknown)"), "{err}");
        drop(file);
        // A missing folder is an error naming the lock file, not a panic.
        let err = RunLock::acquire(&dir.path().join("none"), "vae train").unwrap_err();
        assert!(err.to_string().contains(LOCK_FILE), "{err}");
    }
}
