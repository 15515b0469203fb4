//! A run's folder: vae-io's [`RunDir`] (every file's name, the result types' readers) and the
//! atomic writers, plus what only the binary knows for the manifest: the git commit and the
//! time.

/// The files of one run (`vae_io::run_dir`).
pub use vae_io::RunDir;
/// The project's one atomic writer (temporary file, fsync, rename, fsync of the folder) and its
/// pretty-JSON form; their errors name the file.
pub use vae_io::{write_atomic, write_json};

/// The current git commit of the working folder, or "unknown".
pub fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Now, as RFC 3339 UTC with seconds.
pub fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
