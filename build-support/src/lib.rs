//! Build-script helper shared by every flowvae crate whose tests, examples or binaries link tch.
#![doc = include_str!("../README.md")]

use std::path::PathBuf;

/// Emits the `cargo:` lines that put libtorch's `lib/` folder on the RPATH of this crate's
/// executables (tests, examples, binaries, benches).
///
/// With the `cuda` argument set, also forces `libtorch_cuda.so` into the link, which the default
/// `--as-needed` linking would otherwise drop (docs/TOOLCHAIN.md §4). Such a binary cannot start
/// on a machine without the CUDA libraries, so callers make this opt-in with a cargo feature.
pub fn link_libtorch(cuda: bool) {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB") else {
        println!(
            "cargo:warning=DEP_TCH_LIBTORCH_LIB is not set: add `torch-sys` as a direct dependency"
        );
        return;
    };
    // Resolve the `.libtorch` symlink so the RPATH names the real cache folder.
    let lib = PathBuf::from(&lib)
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from(lib));
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    if cuda {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}

/// Sets `FLOWVAE_LIBTORCH_VERSION` for the crate being built (from libtorch's `version.py`), so a
/// binary can record which libtorch it was linked against; "unknown" when it cannot be read.
pub fn emit_libtorch_version() {
    let version = std::env::var_os("DEP_TCH_LIBTORCH_LIB")
        .map(PathBuf::from)
        .and_then(|lib| std::fs::read_to_string(lib.parent()?.join("version.py")).ok())
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("__version__ = '"))
                .map(|v| v.trim_end_matches('\'').to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=FLOWVAE_LIBTORCH_VERSION={version}");
}
