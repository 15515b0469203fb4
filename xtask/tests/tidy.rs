//! Repository-wide rules that `cargo test` enforces (rust-analyzer's `tidy`): module docs, the
//! crate dependency direction of ARCHITECTURE.md (xtask links nothing that links libtorch), no
//! source shared by path, no should-panic tests, versions on path deps.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    xtask::project_root()
}

/// Files below `dir` whose names end with one of `extensions`, outside build outputs, fuzz
/// corpora and run folders.
fn files_with(dir: &Path, extensions: &[&str], out: &mut Vec<PathBuf>) {
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
                files_with(&p, extensions, out);
            }
        } else if extensions.iter().any(|ext| name.ends_with(ext)) {
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
        files_with(&root().join(dir), &[".rs"], &mut files);
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

/// The workspace's path crates, by package name, with their folders (from the root's
/// `[workspace.dependencies]`).
fn path_crates() -> Vec<(String, PathBuf)> {
    let text = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    text.lines()
        .filter_map(|line| {
            let (name, rest) = line.split_once('=')?;
            let path = rest.split("path = \"").nth(1)?.split('"').next()?;
            Some((name.trim().to_string(), root().join(path)))
        })
        .collect()
}

#[test]
fn crate_dependencies_point_downwards() {
    // vae-io (file I/O, no libtorch) and vae-nn (the layers vae-nets and vae-flows share) are
    // below everything; level 1 crates know nothing of each other (vae-sweep, the sweep engine,
    // is on vae-io alone); vae-model composes them; vae-cli sits on top.
    let level = |name: &str| match name {
        "vae-io" | "vae-nn" => Some(0),
        "vae-data" | "vae-nets" | "vae-flows" | "vae-eval" | "vae-sweep" => Some(1),
        "vae-model" => Some(2),
        "vae-cli" => Some(3),
        _ => None,
    };
    for entry in std::fs::read_dir(root().join("crates")).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.path().join("Cargo.toml").exists() {
            continue;
        }
        let Some(own) = level(&name) else {
            panic!("crates/{name} has no level here: place it in the dependency order")
        };
        for dep in dependencies(&entry.path().join("Cargo.toml")) {
            if let Some(l) = level(&dep) {
                assert!(
                    l < own,
                    "{name} (level {own}) must not depend on {dep} (level {l})"
                );
            }
        }
    }
    let workspace: Vec<String> = path_crates().into_iter().map(|(n, _)| n).collect();
    for dep in dependencies(&root().join("crates/vae-io/Cargo.toml")) {
        assert!(
            !workspace.contains(&dep) && dep != "tch" && dep != "torch-sys",
            "vae-io must depend on no workspace crate and no libtorch, but depends on {dep}"
        );
    }
    for dep in dependencies(&root().join("crates/vae-sweep/Cargo.toml")) {
        assert!(
            dep == "vae-io" || (!workspace.contains(&dep) && dep != "tch" && dep != "torch-sys"),
            "vae-sweep must depend on vae-io alone of the workspace and on no libtorch: {dep}"
        );
    }
    for dep in dependencies(&root().join("crates/vae-nn/Cargo.toml")) {
        assert!(
            !workspace.contains(&dep),
            "vae-nn must depend on no workspace crate, but depends on {dep}"
        );
    }
}

#[test]
fn xtask_links_no_crate_that_links_libtorch() {
    // xtask bootstraps libtorch, so nothing it links may need libtorch: follow its
    // `[dependencies]` through the workspace's path crates (registry crates never link tch).
    let crates = path_crates();
    let mut chain = vec![vec!["xtask".to_string()]];
    let mut seen = Vec::new();
    while let Some(path) = chain.pop() {
        let name = path.last().unwrap();
        let manifest = if name == "xtask" {
            root().join("xtask/Cargo.toml")
        } else {
            match crates.iter().find(|(n, _)| n == name) {
                Some((_, dir)) => dir.join("Cargo.toml"),
                None => continue, // a registry crate
            }
        };
        for dep in dependencies(&manifest) {
            assert!(
                dep != "tch" && dep != "torch-sys",
                "xtask must link no crate that links libtorch, but {} depends on {dep}",
                path.join(" -> ")
            );
            if !seen.contains(&dep) {
                seen.push(dep.clone());
                chain.push([path.clone(), vec![dep]].concat());
            }
        }
    }
}

#[test]
fn no_source_is_shared_by_path() {
    // A `path` attribute compiles one crate's file into another; shared code goes into a crate
    // instead (vae-io for file I/O). tests/ is exempt: its test files are separate crates of
    // vae-cli that share `tests/common/` among themselves.
    let needle = ["#[", "path"].concat();
    let mut offenders = Vec::new();
    for file in all_rust_files() {
        let rel = file
            .strip_prefix(root())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if rel.starts_with("tests/") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for line in text.lines().map(str::trim) {
            let attribute =
                line.starts_with(&needle) && line[needle.len()..].trim_start().starts_with('=');
            if attribute {
                offenders.push(format!("{rel}: {line}"));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "share code through a crate (vae-io), not by path: {offenders:#?}"
    );
}

/// Text files of the repository that a reader follows references from (sources, manifests,
/// scripts, docs), outside build outputs and fuzz corpora.
fn text_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let extensions = [".rs", ".md", ".toml", ".py", ".sh", ".json", ".yml"];
    files_with(&root(), &extensions, &mut files);
    files
}

#[test]
fn no_reference_leaves_the_repository() {
    // A clone has docs/ORIGINAL.md and docs/TOOLCHAIN.md, not the workplace's shared folder.
    let needles = [["SEED", "-SPEC"].concat(), ["shared", "/"].concat()];
    let mut offenders = Vec::new();
    for file in text_files() {
        let rel = file
            .strip_prefix(root())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for (i, line) in text.lines().enumerate() {
            if needles.iter().any(|n| line.contains(n.as_str())) {
                offenders.push(format!("{rel}:{}: {}", i + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "cite docs/ORIGINAL.md or docs/TOOLCHAIN.md instead: {offenders:#?}"
    );
}

#[test]
fn no_test_passes_by_printing_skip() {
    // A test that cannot run somewhere is #[ignore = "why"]; `cargo xtask test` runs the ignored
    // ones a machine allows.
    let needle = ["\"SKIP", " "].concat();
    let offenders: Vec<_> = all_rust_files()
        .into_iter()
        .filter(|p| std::fs::read_to_string(p).unwrap().contains(&needle))
        .collect();
    assert!(
        offenders.is_empty(),
        "use #[ignore = \"why\"]: {offenders:#?}"
    );
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
