//! Prints the runs of a sweep file and its Slurm script without starting anything, as
//! `cargo xtask sweep FILE --backend slurm --dry-run` does:
//! `cargo run -p vae-sweep --example plan -- [SWEEP_FILE]` (default: the repository's
//! `configs/sweeps/smoke.json`). The output folder it names is under the system's temporary
//! folder; nothing is written there.

use std::path::{Path, PathBuf};

use vae_sweep::{Backend, Options, Plan};

fn main() -> Result<(), vae_sweep::Error> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let file = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("configs/sweeps/smoke.json"));
    let out = std::env::temp_dir().join("vae-sweep-example");
    let plan = Plan::new(&root, &file, Some(&out))?;
    let opts = Options {
        backend: Backend::Slurm,
        jobs: Some(2),
        threads: None,
    };
    print!("{}", vae_sweep::dry_run(&plan, &opts));
    Ok(())
}
