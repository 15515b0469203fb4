//! The hostile-input suite: what a hostile or clumsy user gives `vae` (and the sweep reader),
//! one table of cases across every class of the reliability promise, each with its expected
//! exit status and message. The promise (README, "Bad input and failures"): a message and exit
//! status 2, never a panic (101) or a hang, and nothing written where it must not be.
//!
//! Every case runs against one small trained run (`Fixture`); the cases that must not touch it
//! are checked together at the end: the run folder is byte for byte what it was.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{configs, stderr, tiny_dataset, train_smoke};

/// What a case runs.
enum Action {
    /// `vae ARGS`.
    Vae(Vec<String>),
    /// `vae ARGS` while this test process holds the run lock of the folder.
    VaeWhileLocked(PathBuf, Vec<String>),
    /// A sweep file's text through `vae_sweep::Sweep::parse` (what `cargo xtask sweep` reads).
    Sweep(String),
}

/// One hostile input.
struct Case {
    /// The class of the reliability issue it belongs to.
    class: &'static str,
    /// What the user did.
    what: String,
    action: Action,
    /// Expected exit status (`vae`), or 2 for a sweep file that must be refused.
    code: i32,
    /// Substrings the message must contain.
    expect: Vec<String>,
}

fn case(class: &'static str, what: &str, args: &[&str], code: i32, expect: &[&str]) -> Case {
    Case {
        class,
        what: what.into(),
        action: Action::Vae(args.iter().map(|s| s.to_string()).collect()),
        code,
        expect: expect.iter().map(|s| s.to_string()).collect(),
    }
}

/// The trained run and a scratch folder the cases write their inputs into.
struct Fixture {
    data: PathBuf,
    run: PathBuf,
    scratch: PathBuf,
    smoke: String,
}

impl Fixture {
    fn s(p: &Path) -> String {
        p.to_str().expect("UTF-8 path").to_string()
    }

    /// A file in the scratch folder with `bytes`, its path.
    fn file(&self, name: &str, bytes: impl AsRef<[u8]>) -> String {
        let p = self.scratch.join(name);
        std::fs::write(&p, bytes).unwrap();
        Self::s(&p)
    }

    /// A copy of the trained run (folders and files), its path.
    fn copy_run(&self, name: &str) -> PathBuf {
        let to = self.scratch.join(name);
        copy_dir(&self.run, &to);
        // A copied lock file is just a file; the lock itself is not copied.
        to
    }

    /// `train --check --config smoke.json --set ...`.
    fn check(&self, sets: &[&str]) -> Vec<String> {
        let mut a = vec!["train", "--check", "--config", &self.smoke];
        for s in sets {
            a.extend(["--set", s]);
        }
        a.iter().map(|s| s.to_string()).collect()
    }

    /// The last checkpoint of a copy of the run, with `edit` applied to its bytes; the copy's
    /// folder.
    fn edited_checkpoint(&self, name: &str, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
        let run = self.copy_run(name);
        let last = run.join("checkpoints/last.safetensors");
        let mut bytes = std::fs::read(&last).unwrap();
        edit(&mut bytes);
        std::fs::write(&last, bytes).unwrap();
        run
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Replaces the first `from` in `bytes` by `to` (same length), panicking if absent.
fn replace_bytes(bytes: &mut [u8], from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len());
    let at = bytes
        .windows(from.len())
        .position(|w| w == from)
        .unwrap_or_else(|| panic!("{:?} not in the checkpoint", String::from_utf8_lossy(from)));
    bytes[at..at + to.len()].copy_from_slice(to);
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.insert(e.path(), std::fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

fn cases(f: &Fixture) -> Vec<Case> {
    let run = Fixture::s(&f.run);
    let data = Fixture::s(&f.data);
    let s = |p: &Path| Fixture::s(p);
    let mut v = Vec::new();

    // --- Configs: keys, types, values, impossible settings, files that are not configs.
    let config_cases: [(&str, &[&str], &[&str]); 24] = [
        (
            "misspelt key",
            &["train.batch_sise=10"],
            &["unknown field `batch_sise`"],
        ),
        (
            "unknown section",
            &["optimizer.lr=1"],
            &["unknown field `optimizer`"],
        ),
        (
            "type error",
            &["train.epochs=ten"],
            &["`train.epochs`: invalid type: string \"ten\""],
        ),
        (
            "negative count",
            &["train.epochs=-1"],
            &["`train.epochs`: invalid value"],
        ),
        ("zero epochs", &["train.epochs=0"], &["`train.epochs` = 0"]),
        (
            "zero batch",
            &["train.batch_size=0"],
            &["`train.batch_size` = 0"],
        ),
        (
            "negative learning rate",
            &["train.learning_rate=-1"],
            &["`train.learning_rate` = -1"],
        ),
        (
            "decay factor above 1",
            &["train.lr_decay_factor=2"],
            &["`train.lr_decay_factor` = 2"],
        ),
        (
            "beta1 of 1",
            &["train.adam.beta1=1"],
            &["`train.adam.beta1` = 1"],
        ),
        ("zero latent", &["model.latent=0"], &["`model.latent` = 0"]),
        (
            "latent above the limit",
            &["model.latent=70000"],
            &["`model.latent` = 70000"],
        ),
        (
            "number beyond f64",
            &["model.log_sigma_offset=1e999"],
            &["`model.log_sigma_offset`: invalid type: string"],
        ),
        (
            "fixed binarization for training",
            &["data.train_binarization=fixed"],
            &["`data.train_binarization` = fixed"],
        ),
        (
            "unknown dataset",
            &["data.dataset=cifar"],
            &["unknown variant `cifar`"],
        ),
        (
            "run name ..",
            &["name=.."],
            &["invalid config value `name`"],
        ),
        (
            "run name with a slash",
            &["name=a/b"],
            &["invalid config value `name`"],
        ),
        (
            "run name of 101 characters",
            &[&*format!("name={}", "x".repeat(101))],
            &["invalid config value `name`"],
        ),
        (
            "checkpoint cadence 0",
            &["logging.checkpoint_every=0"],
            &["`logging.checkpoint_every` = 0"],
        ),
        (
            "IS samples 0",
            &["eval.is_samples=0"],
            &["`eval.is_samples` = 0"],
        ),
        (
            "cMADE widths that do not divide",
            &["model.flow.hidden=[12]", "model.flow.context_size=12"],
            &["cMADE widths 8 and 12"],
        ),
        (
            "SNF context of another width",
            &["model.flow.context_size=16"],
            &["context_size == first cMADE hidden width"],
        ),
        (
            "widths of a billion",
            &[
                "model.flow.hidden=[1000000000]",
                "model.flow.context_size=1000000000",
            ],
            &["GiB of memory", "more than the"],
        ),
        (
            "a batch of a trillion",
            &["train.batch_size=1000000000000"],
            &["GiB of memory", "train.batch_size = 1000000000000"],
        ),
        (
            "duplicate key in a --set object",
            &["model.flow={\"layers\":2,\"layers\":3}"],
            &["duplicate key `layers`"],
        ),
    ];
    for (what, sets, expect) in config_cases {
        v.push(Case {
            class: "config",
            what: what.into(),
            action: Action::Vae(f.check(sets)),
            code: 2,
            expect: expect.iter().map(|s| s.to_string()).collect(),
        });
    }
    let dup = f.file(
        "dup.json",
        r#"{"name": "d", "train": {"epochs": 1, "epochs": 1000}}"#,
    );
    v.push(case(
        "config",
        "duplicate key in the file",
        &["train", "--check", "--config", &dup],
        2,
        &["duplicate key `train.epochs`"],
    ));
    let not_json = f.file("bad.json", "{\"name\": \"x\",");
    v.push(case(
        "config",
        "truncated JSON",
        &["train", "--check", "--config", &not_json],
        2,
        &["is not valid JSON"],
    ));
    let binary = f.file("binary.json", [0xffu8, 0xfe, 0x00, 0x01]);
    v.push(case(
        "config",
        "binary file as config",
        &["train", "--check", "--config", &binary],
        2,
        &["reading config"],
    ));
    let huge = f.file("huge.json", vec![b' '; (1 << 20) + 1]);
    v.push(case(
        "config",
        "config of over 1 MiB",
        &["train", "--check", "--config", &huge],
        2,
        &["at most 1048576 bytes"],
    ));
    v.push(case(
        "config",
        "missing config",
        &["train", "--check", "--config", "/nonexistent/c.json"],
        2,
        &["reading config /nonexistent/c.json"],
    ));
    v.push(case(
        "config",
        "no config and no resume",
        &["train"],
        2,
        &["give --config FILE"],
    ));
    v.push(case(
        "config",
        "--set without =",
        &["train", "--check", "--config", &f.smoke, "--set", "nokey"],
        2,
        &["expected key=value"],
    ));
    let deep = format!("{}=1", vec!["a"; 20_000].join("."));
    v.push(case(
        "config",
        "--set key 20 000 levels deep",
        &["train", "--check", "--config", &f.smoke, "--set", &deep],
        2,
        &["20000 levels deep"],
    ));

    // --- Non-regular files where a file is read: they would block or never end.
    #[cfg(unix)]
    {
        let fifo = f.scratch.join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let fifo = s(&fifo);
        v.push(case(
            "files",
            "FIFO as config",
            &["train", "--check", "--config", &fifo],
            2,
            &["not a regular file"],
        ));
        v.push(case(
            "files",
            "/dev/zero as config",
            &["train", "--check", "--config", "/dev/zero"],
            2,
            &["not a regular file"],
        ));
        let fifo_ck = f.copy_run("ck-fifo");
        std::fs::remove_file(fifo_ck.join("checkpoints/last.safetensors")).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(fifo_ck.join("checkpoints/last.safetensors"))
            .status()
            .unwrap();
        assert!(made.success());
        v.push(case(
            "files",
            "FIFO as checkpoint",
            &["train", "--resume", &s(&fifo_ck)],
            2,
            &["not a regular file"],
        ));
        let zero_ck = f.copy_run("ck-zero");
        std::fs::remove_file(zero_ck.join("checkpoints/last.safetensors")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", zero_ck.join("checkpoints/last.safetensors"))
            .unwrap();
        v.push(case(
            "files",
            "/dev/zero as checkpoint",
            &["train", "--resume", &s(&zero_ck)],
            2,
            &["not a regular file"],
        ));
        let fifo_data = f.scratch.join("fifo-data/mnist");
        std::fs::create_dir_all(&fifo_data).unwrap();
        for e in std::fs::read_dir(f.data.join("mnist")).unwrap() {
            let e = e.unwrap();
            let status = std::process::Command::new("mkfifo")
                .arg(fifo_data.join(e.file_name()))
                .status()
                .unwrap();
            assert!(status.success());
        }
        v.push(case(
            "files",
            "FIFOs as the dataset",
            &[
                "data",
                "info",
                "--data-dir",
                &s(&f.scratch.join("fifo-data")),
            ],
            2,
            &["not a regular file"],
        ));
    }
    let dir_ck = f.copy_run("ck-dir");
    std::fs::remove_file(dir_ck.join("checkpoints/last.safetensors")).unwrap();
    std::fs::create_dir(dir_ck.join("checkpoints/last.safetensors")).unwrap();
    v.push(case(
        "files",
        "folder as checkpoint",
        &["train", "--resume", &s(&dir_ck)],
        2,
        &["not a regular file"],
    ));
    let truncated_idx = f.scratch.join("short-data/mnist");
    std::fs::create_dir_all(&truncated_idx).unwrap();
    for e in std::fs::read_dir(f.data.join("mnist")).unwrap() {
        let e = e.unwrap();
        let bytes = std::fs::read(e.path()).unwrap();
        std::fs::write(truncated_idx.join(e.file_name()), &bytes[..bytes.len() / 2]).unwrap();
    }
    v.push(case(
        "files",
        "truncated dataset files",
        &[
            "data",
            "info",
            "--data-dir",
            &s(&f.scratch.join("short-data")),
        ],
        2,
        &["short-data"],
    ));
    v.push(case(
        "files",
        "dataset not installed",
        &["data", "info", "--data-dir", "/nonexistent/data"],
        2,
        &["not installed"],
    ));

    // --- Checkpoints: truncated, flipped, edited, foreign, empty.
    let empty = f.edited_checkpoint("ck-empty", |b| b.clear());
    v.push(case(
        "checkpoint",
        "empty file",
        &["train", "--resume", &s(&empty)],
        2,
        &["not a readable safetensors file"],
    ));
    let random = f.edited_checkpoint("ck-random", |b| {
        *b = (0..5000u32).map(|i| (i * 7919 % 251) as u8).collect();
    });
    v.push(case(
        "checkpoint",
        "random bytes",
        &["train", "--resume", &s(&random)],
        2,
        &["not a readable safetensors file"],
    ));
    let claim = f.edited_checkpoint("ck-claim", |b| {
        b[..8].copy_from_slice(&u64::MAX.to_le_bytes())
    });
    v.push(case(
        "checkpoint",
        "a header length of 2^64 - 1",
        &["train", "--resume", &s(&claim)],
        2,
        &["not a readable safetensors file"],
    ));
    let truncated = f.edited_checkpoint("ck-truncated", |b| b.truncate(b.len() / 3));
    v.push(case(
        "checkpoint",
        "truncated",
        &["train", "--resume", &s(&truncated)],
        2,
        &["may be truncated or corrupt"],
    ));
    let flipped = f.edited_checkpoint("ck-flipped", |b| {
        let at = b.len() / 2;
        b[at] ^= 0x10;
    });
    v.push(case(
        "checkpoint",
        "one bit flipped in a weight",
        &["train", "--resume", &s(&flipped)],
        2,
        &["integrity check failed"],
    ));
    let dtype = f.edited_checkpoint("ck-dtype", |b| replace_bytes(b, b"\"F32\"", b"\"I32\""));
    v.push(case(
        "checkpoint",
        "a tensor's dtype edited in the header",
        &["train", "--resume", &s(&dtype)],
        2,
        &["integrity check failed"],
    ));
    let epoch = f.edited_checkpoint("ck-epoch", |b| {
        replace_bytes(b, b"\"epochs_done\":1", b"\"epochs_done\":7")
    });
    v.push(case(
        "checkpoint",
        "the epoch counter edited",
        &["train", "--resume", &s(&epoch)],
        2,
        &["integrity check failed"],
    ));
    let lr = f.edited_checkpoint("ck-lr", |b| {
        replace_bytes(b, b"\"lr_scale\":1.0", b"\"lr_scale\":9.0")
    });
    v.push(case(
        "checkpoint",
        "the learning-rate factor edited",
        &["train", "--resume", &s(&lr)],
        2,
        &["integrity check failed"],
    ));
    let format = f.edited_checkpoint("ck-format", |b| {
        replace_bytes(b, b"\"format\":1", b"\"format\":9")
    });
    v.push(case(
        "checkpoint",
        "another format version",
        &["train", "--resume", &s(&format)],
        2,
        &["format version Some(9)"],
    ));
    let plain = f.edited_checkpoint("ck-plain", |b| {
        *b = [&20u64.to_le_bytes()[..], br#"{"__metadata__":{} }"#].concat();
    });
    v.push(case(
        "checkpoint",
        "a safetensors file that is not a checkpoint",
        &["train", "--resume", &s(&plain)],
        2,
        &["no meta.json tensor: not a flowvae checkpoint"],
    ));

    // A checkpoint whose sums are right but whose config asks for terabytes of weights (written
    // by a tool, or edited by someone who recomputed the sums): refused before its model is built.
    let absurd = f.copy_run("ck-absurd");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(absurd.join("config.json")).unwrap()).unwrap();
    config["model"]["flow"]["hidden"] = serde_json::json!([1_000_000_000_000i64]);
    config["model"]["flow"]["context_size"] = serde_json::json!(1_000_000_000_000i64);
    std::fs::write(absurd.join("config.json"), config.to_string()).unwrap();
    let best = absurd.join("checkpoints/best.safetensors");
    let mut tensors = tch::Tensor::read_safetensors(&best).unwrap();
    let meta = tensors.iter().position(|(k, _)| k == "meta.json").unwrap();
    let meta = Vec::<u8>::try_from(&tensors.remove(meta).1).unwrap();
    let mut covered: serde_json::Value = serde_json::from_slice(&meta).unwrap();
    for key in ["checksum", "integrity"] {
        covered.as_object_mut().unwrap().remove(key);
    }
    covered["config"]["model"] = config["model"].clone();
    vae_model::checkpoint::write_sealed(&best, tensors, covered).unwrap();
    v.push(case(
        "checkpoint",
        "a sealed checkpoint whose config asks for terabytes",
        &[
            "eval",
            "--run",
            &s(&absurd),
            "--k",
            "2",
            "--out",
            &s(&f.scratch.join("absurd.json")),
        ],
        2,
        &[
            "best.safetensors: its model needs about",
            "GiB of memory for its weights alone",
        ],
    ));

    // --- Resume: nothing lost, nothing started over, nothing foreign taken.
    v.push(case(
        "resume",
        "--resume of a folder that holds no run",
        &["train", "--resume", &s(&f.scratch)],
        2,
        &["reading the run's config"],
    ));
    v.push(case(
        "resume",
        "--resume with another config",
        &["train", "--resume", &run, "--set", "model.latent=16"],
        2,
        &["model.latent: 8 -> 16", "pass --force"],
    ));
    v.push(case(
        "resume",
        "--resume with --out",
        &[
            "train",
            "--resume",
            &run,
            "--out",
            &s(&f.scratch.join("elsewhere")),
        ],
        2,
        &["cannot be used with"],
    ));
    let no_ck = f.copy_run("no-checkpoints");
    std::fs::remove_dir_all(no_ck.join("checkpoints")).unwrap();
    std::fs::create_dir(no_ck.join("checkpoints")).unwrap();
    v.push(case(
        "resume",
        "--resume of a trained run with no checkpoint left",
        &["train", "--resume", &s(&no_ck)],
        2,
        &[
            "no checkpoint left",
            "starting over would replace its results",
        ],
    ));
    let foreign = f.copy_run("foreign");
    let other = f.scratch.join("other-settings");
    let out = train_smoke(
        &f.data,
        &other,
        &[
            "--set",
            "train.epochs=1",
            "--set",
            "train.learning_rate=0.002",
            "--max-steps",
            "2",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::copy(
        other.join("checkpoints/last.safetensors"),
        foreign.join("checkpoints/last.safetensors"),
    )
    .unwrap();
    v.push(case(
        "resume",
        "a checkpoint copied from another run",
        &["train", "--resume", &s(&foreign)],
        2,
        &[
            "written with other settings",
            "train.learning_rate: 0.002 -> 0.001",
        ],
    ));
    v.push(case(
        "resume",
        "a new run into a folder that holds one",
        &["train", "--config", &f.smoke, "--out", &run],
        2,
        &["already holds a run"],
    ));

    // --- Output paths: never a run's own files, a folder or a device.
    for (what, out) in [
        ("the run's config", f.run.join("config.json")),
        ("the run's results", f.run.join("results.json")),
        ("a file in checkpoints/", f.run.join("checkpoints/x.json")),
        ("a file in tensorboard/", f.run.join("tensorboard/x.json")),
        ("a folder", f.scratch.clone()),
        ("a device", PathBuf::from("/dev/null")),
    ] {
        v.push(case(
            "output",
            &format!("vae eval --out onto {what}"),
            &["eval", "--run", &run, "--k", "2", "--out", &s(&out)],
            2,
            &["--out", "nothing was written"],
        ));
    }
    v.push(case(
        "output",
        "vae eval-merge of a file that is no shard summary",
        &["eval-merge", &f.file("s1.json", "{}")],
        2,
        &["s1.json", "missing field"],
    ));

    // --- Flags: what the chosen command or method does not use, and impossible sizes.
    v.push(case(
        "flags",
        "--steps with IS",
        &["eval", "--run", &run, "--steps", "10"],
        2,
        &["--steps is an AIS/BDMC setting"],
    ));
    v.push(case(
        "flags",
        "--k with AIS",
        &["eval", "--run", &run, "--method", "ais", "--k", "10"],
        2,
        &["--k"],
    ));
    v.push(case(
        "flags",
        "--k of a hundred billion",
        &["eval", "--run", &run, "--k", "100000000000"],
        2,
        &["GiB", "use a smaller --k"],
    ));
    v.push(case(
        "flags",
        "--steps of a trillion",
        &[
            "eval",
            "--run",
            &run,
            "--method",
            "ais",
            "--steps",
            "1000000000000",
        ],
        2,
        &["GiB", "use a smaller --steps"],
    ));
    v.push(case(
        "flags",
        "--shard 5/4",
        &["eval", "--run", &run, "--shard", "5/4"],
        2,
        &["--shard"],
    ));
    v.push(case(
        "flags",
        "--device cuda without a GPU",
        &[
            "train",
            "--config",
            &f.smoke,
            "--out",
            &s(&f.scratch.join("cuda")),
            "--device",
            "cuda",
        ],
        2,
        &["--device cuda"],
    ));
    v.push(case(
        "flags",
        "--device of an unknown kind",
        &[
            "train",
            "--config",
            &f.smoke,
            "--out",
            &s(&f.scratch.join("tpu")),
            "--device",
            "tpu",
        ],
        2,
        &["unknown device `tpu`: expected cpu, cuda or cuda:N"],
    ));
    v.push(case(
        "flags",
        "an unknown command",
        &["fly"],
        2,
        &["unrecognized subcommand"],
    ));
    v.push(case(
        "flags",
        "--check with --resume",
        &["train", "--check", "--resume", &run],
        2,
        &["cannot be used with"],
    ));

    // --- Locks: a second writer is refused, naming the holder (on a copy: holding the lock
    // writes the holder's pid into the folder's lock file).
    let locked = f.copy_run("locked");
    v.push(Case {
        class: "lock",
        what: "vae train --resume of a run another process writes".into(),
        action: Action::VaeWhileLocked(
            locked.clone(),
            ["train", "--resume", &s(&locked)]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        ),
        code: 2,
        expect: vec![
            format!("pid {}", std::process::id()),
            "hostile-input suite".into(),
        ],
    });

    // --- Sweep files: keys checked, resources bounded, Slurm options one word.
    let base = format!("{:?}", f.smoke);
    for (what, body, expect) in [
        (
            "a seed that is not a number",
            format!(r#""base": {base}, "seeds": [1, "two"]"#),
            "`seeds[1]`",
        ),
        (
            "jobs of a hundred thousand",
            format!(r#""base": {base}, "jobs": 100000"#),
            "`jobs`: expected an integer from 1 to 256",
        ),
        (
            "a Slurm partition with a space",
            format!(r#""base": {base}, "slurm": {{"partition": "cpu gpu"}}"#),
            "contains a space",
        ),
        (
            "a line break in a name",
            format!(r#""name": "a\nb", "base": {base}"#),
            "`name`",
        ),
        (
            "ten thousand and more runs",
            format!(
                r#""base": {base}, "grid": {{"model.latent": [{}], "train.epochs": [{}]}}"#,
                (1..=101)
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                (1..=100)
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            "more than the 10000 a sweep may hold",
        ),
        (
            "an unknown top-level key",
            format!(r#""base": {base}, "sets": {{}}"#),
            "unknown field `sets`",
        ),
        (
            "a duplicate key",
            format!(r#""base": {base}, "jobs": 1, "jobs": 2"#),
            "duplicate",
        ),
    ] {
        v.push(Case {
            class: "sweep",
            what: what.into(),
            action: Action::Sweep(format!("{{{body}}}")),
            code: 2,
            expect: vec![expect.into()],
        });
    }
    let _ = data;
    v
}

#[test]
fn every_hostile_input_gets_its_message_and_status_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    tiny_dataset(&data, 800, 100);
    let run = tmp.path().join("run");
    let out = train_smoke(&data, &run, &["--set", "train.epochs=1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let scratch = tmp.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let f = Fixture {
        data,
        run: run.clone(),
        scratch,
        smoke: Fixture::s(&configs().join("smoke.json")),
    };
    let before = snapshot(&run);
    let cases = cases(&f);
    let mut failures = Vec::new();
    let mut per_class: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &cases {
        *per_class.entry(c.class).or_default() += 1;
    }
    // Two at a time (the machine's cores): every case reads its own inputs, and those aimed at
    // the trained run are all refused before anything could lock or write it.
    failures.extend(
        common::two_at_a_time(&cases, |_, c| run_case(&f, c))
            .into_iter()
            .flatten(),
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
    eprintln!("{} cases: {per_class:?}", cases.len());
    assert!(cases.len() >= 60, "{} cases", cases.len());
    assert_eq!(
        snapshot(&run),
        before,
        "a refused command changed the trained run"
    );
}

/// Runs one case: `None` when it ended as expected, else what went wrong.
fn run_case(f: &Fixture, c: &Case) -> Option<String> {
    let (code, message) = match &c.action {
        Action::Vae(args) => run_vae(&f.data, args, None),
        Action::VaeWhileLocked(dir, args) => run_vae(&f.data, args, Some(dir)),
        Action::Sweep(text) => match vae_sweep::Sweep::parse(text, "hostile", &configs()) {
            Ok(_) => (0, String::new()),
            Err(e) => (2, e.to_string()),
        },
    };
    let missing: Vec<&String> = c.expect.iter().filter(|e| !message.contains(*e)).collect();
    (code != c.code || !missing.is_empty() || message.contains("panicked")).then(|| {
        format!(
            "[{}] {}: status {code} (expected {}), missing {missing:?} in:\n{message}",
            c.class, c.what, c.code
        )
    })
}

/// Runs `vae ARGS` (with `locked`'s run lock held by this process while it runs), at most two
/// minutes: `(exit status, stderr and stdout)`; a hang is a failure of its own.
fn run_vae(data: &Path, args: &[String], locked: Option<&PathBuf>) -> (i32, String) {
    let _lock = locked.map(|dir| vae_io::RunLock::acquire(dir, "hostile-input suite").unwrap());
    let mut child = common::command(data, &args.iter().map(String::as_str).collect::<Vec<_>>())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the vae binary runs");
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            return (-1, format!("hung for 2 minutes: vae {args:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    (out.status.code().unwrap_or(-1), text)
}
