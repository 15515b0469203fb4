//! Repository-wide rules that `cargo test` enforces (rust-analyzer's `tidy`): module docs, the
//! crate dependency direction of ARCHITECTURE.md, no should-panic tests, versions on path deps.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    xtask::project_root()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if p.is_dir() {
            if !["target", ".git", ".libtorch", "corpus", "artifacts", "runs"]
                .contains(&name.as_str())
            {
                rust_files(&p, out);
            }
        } else if name.ends_with(".rs") {
            out.push(p);
        }
    }
}

fn all_rust_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in [
        "crates",
        "xtask",
        "build-support",
        "tests",
        "fuzz",
        "benches",
    ] {
        rust_files(&root().join(dir), &mut files);
    }
    files
}

#[test]
fn every_file_starts_with_a_module_doc() {
    let missing: Vec<_> = all_rust_files()
        .into_iter()
        .filter(|p| !std::fs::read_to_string(p).unwrap().starts_with("//!"))
        .collect();
    assert!(
        missing.is_empty(),
        "files without a leading `//!` doc: {missing:#?}"
    );
}

#[test]
fn no_should_panic() {
    let needle = ["#[should", "_panic"].concat();
    let offenders: Vec<_> = all_rust_files()
        .into_iter()
        .filter(|p| std::fs::read_to_string(p).unwrap().contains(&needle))
        .collect();
    assert!(
        offenders.is_empty(),
        "assert the Err instead of {needle}: {offenders:#?}"
    );
}

/// Names under `[dependencies]` (not dev- or build-) of a manifest.
fn dependencies(manifest: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).unwrap();
    let mut in_deps = false;
    let mut deps = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if in_deps && !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['=', '.', ' ']).next().unwrap().trim();
            deps.push(name.to_string());
        }
    }
    deps
}

#[test]
fn crate_dependencies_point_downwards() {
    // Level 0 crates know nothing of each other; vae-model composes them; vae-cli sits on top.
    let level = |name: &str| match name {
        "vae-data" | "vae-nets" | "vae-flows" | "vae-eval" => Some(0),
        "vae-model" => Some(1),
        "vae-cli" => Some(2),
        _ => None,
    };
    for entry in std::fs::read_dir(root().join("crates")).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(own) = level(&name) else { continue };
        for dep in dependencies(&entry.path().join("Cargo.toml")) {
            if let Some(l) = level(&dep) {
                assert!(
                    l < own,
                    "{name} (level {own}) must not depend on {dep} (level {l})"
                );
            }
        }
    }
    for dep in dependencies(&root().join("xtask/Cargo.toml")) {
        assert!(
            !dep.starts_with("vae-") && dep != "tch" && dep != "torch-sys",
            "xtask must link no libtorch and no workspace crate, but depends on {dep}"
        );
    }
}

#[test]
fn internal_path_dependencies_have_versions() {
    let text = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    for line in text.lines().filter(|l| l.contains("path = ")) {
        assert!(
            line.contains("version = "),
            "path dependency without a version: {line}"
        );
    }
}
