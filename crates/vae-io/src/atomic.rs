//! Atomic file writes: a reader of the final name sees the old bytes or the new ones, never a
//! mixture, whatever happens to the writer (a crash, a kill, a full disk).
//!
//! The new bytes go to a temporary file in the same folder (a rename is only atomic within one
//! filesystem), are fsynced, and the temporary file is renamed over the final name; then the
//! folder is fsynced so the rename itself survives a power cut. The temporary name carries the
//! process id and a per-process counter and is opened with `create_new`, so two processes or two
//! threads never write into the same temporary file.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Numbers this process's temporary files; with the process id it makes their names unique.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` through a temporary file in the same folder, fsync, rename and an
/// fsync of the folder, so a crash never leaves a half-written file under the final name. The
/// temporary file is removed when any step fails.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with_hook(path, bytes, |_| {})
}

/// Writes `value` as pretty JSON with a trailing newline, atomically ([`write_atomic`]).
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let mut text = serde_json::to_vec_pretty(value).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })?;
    text.push(b'\n');
    write_atomic(path, &text)
}

/// [`write_atomic`] with `before_rename` called on the temporary file's path once its bytes are
/// on disk and before the rename: the test's window for killing the writer.
pub(crate) fn write_atomic_with_hook(
    path: &Path,
    bytes: &[u8],
    before_rename: impl FnOnce(&Path),
) -> Result<()> {
    let fail = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let name = path.file_name().ok_or_else(|| {
        fail(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the path names no file",
        ))
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let (tmp, mut file) = create_temp(dir, name).map_err(fail)?;
    let result = (|| {
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        before_rename(&tmp);
        std::fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        // Gone already when only the folder's fsync failed; nothing else to do then.
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(fail)
}

/// Creates `.<name>.<pid>.<n>.tmp` in `dir`, a name no other writer uses.
fn create_temp(dir: &Path, name: &std::ffi::OsStr) -> std::io::Result<(PathBuf, File)> {
    let pid = std::process::id();
    loop {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut tmp_name = OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{pid}.{n}.tmp"));
        let tmp = dir.join(tmp_name);
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(f) => return Ok((tmp, f)),
            // Left by a killed process that had our pid; the counter moves on to a free name.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir; // Other systems cannot open a folder as a file; the rename is all there is.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The files in `dir`, by name.
    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn writes_replaces_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.json");
        write_atomic(&f, b"one").unwrap();
        write_atomic(&f, b"two").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"two");
        assert_eq!(names(dir.path()), ["a.json"]);
    }

    #[test]
    fn json_is_pretty_with_a_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("v.json");
        write_json(&f, &serde_json::json!({"a": [1, 2]})).unwrap();
        let text = std::fs::read_to_string(&f).unwrap();
        assert_eq!(text, "{\n  \"a\": [\n    1,\n    2\n  ]\n}\n");
        // A map with non-string keys is not JSON: an error naming the file, and no file.
        let bad: std::collections::BTreeMap<Vec<u8>, u8> = [(vec![1], 2)].into();
        let g = dir.path().join("bad.json");
        let msg = write_json(&g, &bad).unwrap_err().to_string();
        assert!(
            msg.starts_with(&format!(
                "cannot write {}: the value is not JSON",
                g.display()
            )),
            "{msg}"
        );
        assert_eq!(names(dir.path()), ["v.json"]);
    }

    #[test]
    fn a_failed_rename_removes_the_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // A folder under the final name: the rename fails after the bytes are written.
        let target = dir.path().join("taken");
        std::fs::create_dir(&target).unwrap();
        let msg = write_atomic(&target, b"x").unwrap_err().to_string();
        assert!(
            msg.starts_with(&format!("cannot write {}: ", target.display())),
            "{msg}"
        );
        assert_eq!(names(dir.path()), ["taken"]);
        // A missing folder and a path with no file name are errors too, not panics.
        let missing = dir.path().join("no/such/folder/f.json");
        let msg = write_atomic(&missing, b"x").unwrap_err().to_string();
        assert!(msg.contains("no/such/folder/f.json"), "{msg}");
        assert!(write_atomic(Path::new("/"), b"x").is_err());
    }

    #[test]
    fn concurrent_writers_never_share_a_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("shared.bin");
        let payloads: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 100_000]).collect();
        std::thread::scope(|s| {
            for p in &payloads {
                let f = &f;
                s.spawn(move || {
                    for _ in 0..5 {
                        write_atomic(f, p).unwrap();
                    }
                });
            }
        });
        let got = std::fs::read(&f).unwrap();
        assert!(payloads.contains(&got), "a mixture of writes");
        assert_eq!(names(dir.path()), ["shared.bin"]);
    }

    /// Set in the child process of `a_killed_writer_leaves_the_old_file`: the file to write.
    const CHILD_TARGET: &str = "VAE_IO_ATOMIC_CHILD_TARGET";
    /// The child's marker line: the temporary file's path follows it.
    const READY: &str = "TEMPORARY FILE WRITTEN: ";

    /// Does nothing in a normal run. In the child process that the next test starts, writes the
    /// target and stops for good between the fsync and the rename, for the parent to kill.
    #[test]
    fn child_writer_stops_before_rename() {
        let Some(target) = std::env::var_os(CHILD_TARGET) else {
            return;
        };
        write_atomic_with_hook(Path::new(&target), b"new bytes", |tmp| {
            println!("{READY}{}", tmp.display());
            std::io::stdout().flush().unwrap();
            loop {
                std::thread::sleep(std::time::Duration::from_secs(60));
            }
        })
        .unwrap();
    }

    /// SIGKILL between write and rename: the final name still holds the old bytes.
    #[cfg(unix)]
    #[test]
    fn a_killed_writer_leaves_the_old_file() {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("results.json");
        write_atomic(&target, b"old bytes").unwrap();
        // This test binary again, running only the child test above.
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "atomic::tests::child_writer_stops_before_rename",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_TARGET, &target)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        // Blocks until the child is in the hook; ends at EOF if the child failed before it.
        let tmp = stdout
            .lines()
            .map_while(|l| l.ok())
            .find_map(|l| l.split_once(READY).map(|(_, p)| PathBuf::from(p)));
        let Some(tmp) = tmp else {
            let _ = child.kill();
            panic!(
                "the child exited before reaching the rename: {:?}",
                child.wait()
            );
        };
        assert_eq!(std::fs::read(&tmp).unwrap(), b"new bytes");
        child.kill().unwrap(); // SIGKILL: no destructor, no cleanup
        assert!(!child.wait().unwrap().success());
        assert_eq!(std::fs::read(&target).unwrap(), b"old bytes");
        // The dead writer's temporary file stays, under a name no later write takes.
        write_atomic(&target, b"later bytes").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"later bytes");
        assert_eq!(std::fs::read(&tmp).unwrap(), b"new bytes");
    }
}
