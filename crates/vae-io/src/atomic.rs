//! Atomic file writes: a reader of the final name sees the old bytes or the new ones, never a
//! mixture, whatever happens to the writer (a crash, a kill, a full disk).
//!
//! The new bytes go to a temporary file in the same folder (a rename is only atomic within one
//! filesystem), are fsynced, and the temporary file is renamed over the final name; then the
//! folder is fsynced so the rename itself survives a power cut. The temporary name carries the
//! process id and a per-process counter and is opened with `create_new`, so two processes or two
//! threads never write into the same temporary file.
//!
//! A writer killed between creating its temporary file and the rename (SIGKILL, a power cut)
//! leaves that file behind; [`remove_stale_temps`] removes such leftovers of dead processes.

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

/// Creates `.<name>.<pid>.<n>.h<host>.tmp` in `dir`, a name no other writer uses; `<host>` is
/// [`host_tag`], so a later cleanup knows whether the pid is one of this machine's.
fn create_temp(dir: &Path, name: &std::ffi::OsStr) -> std::io::Result<(PathBuf, File)> {
    let pid = std::process::id();
    let host = host_tag();
    loop {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut tmp_name = OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{pid}.{n}.h{host:08x}.tmp"));
        let tmp = dir.join(tmp_name);
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(f) => return Ok((tmp, f)),
            // Left by a killed process that had our pid; the counter moves on to a free name.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// This machine's tag in temporary names: a 32-bit FNV-1a hash of its host name (Linux:
/// `/proc/sys/kernel/hostname`; 0 where none can be read). Written by hand: eight lines, where
/// a hashing crate would add a dependency for one call, and the hash need only tell machines
/// apart, not resist anyone.
fn host_tag() -> u32 {
    let name = std::fs::read("/proc/sys/kernel/hostname").unwrap_or_default();
    name.trim_ascii().iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ b as u32).wrapping_mul(0x0100_0193)
    })
}

/// How long a temporary file of another machine (or of a flowvae before host tags) must have
/// gone unmodified before [`remove_stale_temps`] may remove it. The process id in its name only
/// says whether the writer is alive on the machine that wrote it; a writer on another node of a
/// shared filesystem looks dead here, but keeps modifying its file until it renames it, and no
/// write takes ten minutes between its last byte and its rename. A file of this machine whose
/// writer is dead is removed at once.
pub const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

/// Removes the temporary files that [`write_atomic`] writers killed before their rename left in
/// `dir` (not its subfolders); returns how many it removed.
///
/// A file is removed only when all of this holds: it is a plain file named exactly
/// `.<name>.<pid>.<n>.h<host>.tmp` or, from before host tags, `.<name>.<pid>.<n>.tmp` (a
/// non-empty name, decimal pid and counter, eight hex digits of host); the process `pid` is not
/// alive (on Linux: `/proc/<pid>` does not exist; on other systems nothing is known to be dead,
/// so nothing is removed), and it is not this process; and the file was written on this machine
/// (its host tag is this machine's) or has not been modified for [`STALE_AFTER`]. Anything else
/// in the folder is never touched. A missing folder holds nothing to remove.
pub fn remove_stale_temps(dir: &Path) -> Result<usize> {
    remove_stale_temps_older_than(dir, STALE_AFTER)
}

/// [`remove_stale_temps`] with the minimum age `min_age` instead of [`STALE_AFTER`].
pub(crate) fn remove_stale_temps_older_than(
    dir: &Path,
    min_age: std::time::Duration,
) -> Result<usize> {
    let read_fail = |source| Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(read_fail(e)),
    };
    let now = std::time::SystemTime::now();
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(read_fail)?;
        let name = entry.file_name();
        let Some((pid, host)) = name.to_str().and_then(temp_writer) else {
            continue;
        };
        let ours = host == Some(host_tag());
        if pid == std::process::id() || !process_is_dead(pid) {
            continue;
        }
        // Not followed: a link or a folder of that name is not a temporary file of ours.
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
            continue; // gone meanwhile
        };
        let age = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok());
        if !meta.file_type().is_file() || (!ours && age.is_none_or(|a| a < min_age)) {
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(Error::Write {
                    path: entry.path(),
                    source,
                })
            }
        }
    }
    Ok(removed)
}

/// The writer's pid and host tag when `file_name` is exactly `.<name>.<pid>.<n>.h<host>.tmp`
/// ([`create_temp`]), or its pid alone for the untagged `.<name>.<pid>.<n>.tmp` of earlier
/// versions.
fn temp_writer(file_name: &str) -> Option<(u32, Option<u32>)> {
    let rest = file_name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let tagged = rest.rsplit_once('.').and_then(|(rest, tag)| {
        let hex = tag.strip_prefix('h')?;
        if hex.len() != 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some((rest, u32::from_str_radix(hex, 16).ok()?))
    });
    match tagged {
        Some((rest, host)) => Some((untagged_pid(rest)?, Some(host))),
        None => Some((untagged_pid(rest)?, None)),
    }
}

/// The pid of `<name>.<pid>.<n>`.
fn untagged_pid(rest: &str) -> Option<u32> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (rest, n) = rest.rsplit_once('.')?;
    let (name, pid) = rest.rsplit_once('.')?;
    if name.is_empty() || !digits(pid) || !digits(n) {
        return None;
    }
    n.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// Whether process `pid` is known not to exist: on Linux, `/proc/<pid>` is absent (with `/proc`
/// itself mounted); elsewhere nothing is known.
fn process_is_dead(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new("/proc/self").exists() && !Path::new(&format!("/proc/{pid}")).exists()
    } else {
        false
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
        // The writer was of this machine and is dead: the next cleanup removes its file at
        // once, and only it.
        if cfg!(target_os = "linux") {
            assert_eq!(remove_stale_temps(dir.path()).unwrap(), 1);
            assert_eq!(names(dir.path()), ["results.json"]);
        }
    }

    /// Sets `path`'s modification time an hour back, past [`STALE_AFTER`].
    #[cfg(unix)]
    fn backdate(path: &Path) {
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(hour_ago)
            .unwrap();
    }

    /// The pid of a process that has exited and been reaped.
    #[cfg(target_os = "linux")]
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    fn temporary_names_are_recognised_exactly() {
        assert_eq!(temp_writer(".a.json.123.4.tmp"), Some((123, None)));
        assert_eq!(temp_writer(".last.safetensors.7.0.tmp"), Some((7, None)));
        assert_eq!(
            temp_writer(".a.json.123.4.h00ff00aa.tmp"),
            Some((123, Some(0x00ff_00aa)))
        );
        // What create_temp makes is recognised with this machine's tag.
        let dir = tempfile::tempdir().unwrap();
        let (tmp, _) = create_temp(dir.path(), std::ffi::OsStr::new("x.json")).unwrap();
        let name = tmp.file_name().unwrap().to_str().unwrap();
        assert_eq!(
            temp_writer(name),
            Some((std::process::id(), Some(host_tag())))
        );
        for other in [
            "a.json.123.4.tmp",
            ".a.json.123.4.tmp.bak",
            ".a.json.123.4.TMP",
            "..123.4.tmp",
            ".123.4.tmp",
            ".a.json.12x.4.tmp",
            ".a.json.123..tmp",
            ".a.json.-123.4.tmp",
            ".a.json.+123.4.tmp",
            ".a.json.99999999999.4.tmp",
            ".tmp",
            ".flowvae.lock",
            ".a.json.123.4.h00ff00a.tmp",
            ".a.json.123.h00ff00aa.tmp",
            ".h00ff00aa.tmp",
        ] {
            assert_eq!(temp_writer(other), None, "{other}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn stale_temporary_files_of_dead_processes_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dead_pid();
        let me = std::process::id();
        let dead_temp = format!(".a.json.{dead}.0.tmp");
        let keep = [
            format!(".a.json.{me}.0.tmp"),  // ours: a write in progress
            ".a.json.1.0.tmp".to_string(),  // init's: alive
            format!("a.json.{dead}.0.tmp"), // look-alikes
            format!(".a.json.{dead}.0.tmp.bak"),
            format!(".{dead}.0.tmp"),
            format!(".a.json.{dead}.x.tmp"),
            "a.json".to_string(),
        ];
        for name in keep.iter().chain([&dead_temp]) {
            std::fs::write(dir.path().join(name), b"x").unwrap();
            backdate(&dir.path().join(name));
        }
        // A dead writer's file that is still fresh, a folder of that name, and one in a
        // subfolder stay too.
        let fresh = format!(".b.json.{dead}.1.tmp");
        std::fs::write(dir.path().join(&fresh), b"x").unwrap();
        std::fs::create_dir(dir.path().join(format!(".c.{dead}.2.tmp"))).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let nested = dir.path().join(format!("sub/.d.{dead}.3.tmp"));
        std::fs::write(&nested, b"x").unwrap();
        backdate(&nested);

        let before = names(dir.path());
        assert_eq!(remove_stale_temps(dir.path()).unwrap(), 1);
        let after = names(dir.path());
        let expected: Vec<String> = before.into_iter().filter(|n| *n != dead_temp).collect();
        assert_eq!(after, expected);
        assert!(nested.exists());
        assert_eq!(remove_stale_temps(dir.path()).unwrap(), 0);
        // With no minimum age the fresh one goes as well; a missing folder holds nothing.
        assert_eq!(
            remove_stale_temps_older_than(dir.path(), std::time::Duration::ZERO).unwrap(),
            1
        );
        assert!(!dir.path().join(&fresh).exists());
        assert_eq!(remove_stale_temps(&dir.path().join("none")).unwrap(), 0);
    }

    /// A dead writer's file of this machine goes at once; one of another machine (another host
    /// tag: its pid says nothing here) only once it has gone unmodified for [`STALE_AFTER`].
    #[cfg(target_os = "linux")]
    #[test]
    fn host_tags_decide_whether_a_fresh_file_may_go() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dead_pid();
        let here = format!(".a.json.{dead}.0.h{:08x}.tmp", host_tag());
        let elsewhere = format!(".a.json.{dead}.1.h{:08x}.tmp", host_tag() ^ 1);
        let alive_here = format!(".a.json.1.2.h{:08x}.tmp", host_tag());
        for name in [&here, &elsewhere, &alive_here] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        assert_eq!(remove_stale_temps(dir.path()).unwrap(), 1);
        let mut left = vec![elsewhere.clone(), alive_here.clone()];
        left.sort();
        assert_eq!(names(dir.path()), left);
        backdate(&dir.path().join(&elsewhere));
        assert_eq!(remove_stale_temps(dir.path()).unwrap(), 1);
        assert_eq!(names(dir.path()), [alive_here]);
    }
}
