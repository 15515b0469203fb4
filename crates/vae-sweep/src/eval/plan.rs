//! An eval file ready to execute ([`EvalPlan`]): each evaluation's shards, their files and `vae`
//! arguments, what a shard's files say about it ([`ShardState`]), the merge, and the progress of
//! all shards from their progress files.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use vae_io::results::{read_csv, AisRow, BdmcRow, EvalSummary, IsRow, ShardProgress};
use vae_io::RunDir;

use super::spec::{EvalEntry, EvalFile, FileError, Method};
use super::{Error, Merged, Result};
use crate::slurm::array_spec;

/// An eval file ready to execute: its evaluations with their shard counts and folders.
#[derive(Debug, Clone)]
pub struct EvalPlan {
    /// The eval file's content.
    pub file: EvalFile,
    /// The eval file (absolute), for messages.
    pub source: PathBuf,
    /// The run folder (absolute): `file.run` in the repository root.
    pub run: PathBuf,
    /// The `vae` binary (absolute).
    pub vae: PathBuf,
    /// The repository root: working folder of every `vae` process.
    pub root: PathBuf,
    /// The evaluations, in file order.
    pub evals: Vec<PlannedEval>,
}

/// One evaluation of a plan.
#[derive(Debug, Clone)]
pub struct PlannedEval {
    /// Its place in the file's `evals`.
    pub index: usize,
    /// Its settings.
    pub entry: EvalEntry,
    /// Its name in messages: `<method>-<split>`, or `<run>: <method>-<split>` when a plan
    /// evaluates several runs (a sweep's).
    pub label: String,
    /// `N`: its shards.
    pub shards: usize,
    /// The run folder (absolute).
    pub run: PathBuf,
    /// Where its shards go: `RUN/shards/eval-<method>-<split>`.
    pub dir: PathBuf,
}

/// What a shard's files say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardState {
    /// Its summary reads back as shard `I/N` of the evaluation, and its CSV has a row per image.
    Done,
    /// No summary yet.
    Missing,
    /// A summary that is not the finished shard (unreadable, another shard's, no CSV): the shard
    /// is evaluated again. The reason, for the messages.
    Stale(String),
}

impl EvalPlan {
    /// Reads `file` (taken relative to the current folder) and plans it; `shards` replaces the
    /// file's `shards` (an entry's own `shards` still wins). The run folder is `file.run` in
    /// `root`, and the `vae` binary `root/target/release/vae` (set [`EvalPlan::vae`] to use
    /// another).
    pub fn new(root: &Path, file: &Path, shards: Option<usize>) -> Result<EvalPlan> {
        let cwd = std::env::current_dir().map_err(|error| crate::Error::CurrentDir { error })?;
        let source = cwd.join(file);
        let file = EvalFile::load(&source)?;
        Self::from_file(root, &source, file, shards)
    }

    /// Plans an [`EvalFile`] already read from `source`.
    pub fn from_file(
        root: &Path,
        source: &Path,
        file: EvalFile,
        shards: Option<usize>,
    ) -> Result<EvalPlan> {
        let bad = |error: FileError| Error::File {
            path: source.to_path_buf(),
            error,
        };
        if shards == Some(0) {
            return Err(crate::Error::Zero { option: "--shards" }.into());
        }
        let run = root.join(&file.run);
        let mut evals = Vec::new();
        for (index, entry) in file.evals.iter().enumerate() {
            let n_shards = entry.shards.or(shards).unwrap_or(file.shards);
            // AIS and BDMC cut at whole groups of images that share a step size: with `n` known,
            // too many shards are refused here rather than by every shard's `vae eval`.
            if let (Some(n), Some(group)) = (entry.n, entry.images_per_group()) {
                let units = n.div_ceil(group);
                if n_shards as u64 > units {
                    let (key, set) = match (entry.shards, shards) {
                        (Some(_), _) => (format!("evals[{index}].shards"), "this".to_string()),
                        (None, Some(_)) => (String::new(), "--shards".to_string()),
                        (None, None) => (
                            "shards".to_string(),
                            format!("`shards`, or `evals[{index}].shards` for this evaluation"),
                        ),
                    };
                    return Err(bad(FileError::Invalid {
                        key,
                        message: format!(
                            "{n_shards} shards of evals[{index}] ({}) would leave some empty: its \
                             {n} images make {units} group(s) of {group} that share a step size \
                             (max_rows / chains), and a shard holds whole groups; set {set} to at \
                             most {units}",
                            entry.describe()
                        ),
                    }));
                }
            }
            evals.push(PlannedEval::new(index, entry, n_shards, &run, entry.name()));
        }
        Ok(EvalPlan {
            file,
            source: source.to_path_buf(),
            run,
            vae: root.join("target/release/vae"),
            root: root.to_path_buf(),
            evals,
        })
    }

    /// Plans the evaluations of `file` (its `run` aside) for each of several run folders, each
    /// given with its name for messages: a sweep's sharded evaluation stage. Every evaluation
    /// takes its entry's `shards`, else the file's.
    pub fn for_runs(
        root: &Path,
        source: &Path,
        file: EvalFile,
        runs: &[(String, PathBuf)],
    ) -> EvalPlan {
        let mut evals = Vec::new();
        for (name, run) in runs {
            for (index, entry) in file.evals.iter().enumerate() {
                let shards = entry.shards.unwrap_or(file.shards);
                let label = format!("{name}: {}", entry.name());
                evals.push(PlannedEval::new(index, entry, shards, run, label));
            }
        }
        EvalPlan {
            run: root.join(&file.run),
            file,
            source: source.to_path_buf(),
            vae: root.join("target/release/vae"),
            root: root.to_path_buf(),
            evals,
        }
    }

    /// Every evaluation's run folder must hold a trained run's `config.json`.
    pub(crate) fn check_run(&self) -> Result<()> {
        for e in &self.evals {
            if !RunDir::new(&e.run).config().is_file() {
                return Err(Error::NoRun { run: e.run.clone() });
            }
        }
        Ok(())
    }

    /// `vae eval` arguments of shard `index` of `e`, with `threads` libtorch threads (a number,
    /// or a shell word for the Slurm script).
    pub fn shard_args(&self, e: &PlannedEval, index: &str, threads: &str) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "eval".into(),
            "--run".into(),
            e.run.to_string_lossy().into_owned(),
        ];
        a.extend(e.flags(&self.file.device));
        a.extend([
            "--shard".into(),
            format!("{index}/{}", e.shards),
            "--threads".into(),
            threads.into(),
        ]);
        a
    }

    /// `vae eval-merge` arguments of `e`: its shard summaries, merged into the run folder.
    pub fn merge_args(&self, e: &PlannedEval) -> Vec<String> {
        let mut a: Vec<String> = vec!["eval-merge".into()];
        a.extend((1..=e.shards).map(|i| e.summary(i).to_string_lossy().into_owned()));
        a.extend(["--out".into(), e.run.to_string_lossy().into_owned()]);
        a
    }

    /// Runs `vae eval-merge` of `e`, its output in `merge.log` beside the shards; the error is
    /// the message for people.
    pub(crate) fn merge(&self, e: &PlannedEval) -> std::result::Result<Merged, String> {
        let log = e.dir.join("merge.log");
        let out = Command::new(&self.vae)
            .args(self.merge_args(e))
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .output()
            .map_err(|error| format!("starting {}: {error}", self.vae.display()))?;
        let text = format!(
            "$ {} {}\n{}{}",
            self.vae.display(),
            self.merge_args(e).join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::fs::write(&log, &text);
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim();
            return Err(format!(
                "vae eval-merge exited with {}: {last} (log: {})",
                out.status,
                log.display()
            ));
        }
        Ok(Merged {
            name: e.entry.name(),
            summary: e.merged(),
            output: String::from_utf8_lossy(&out.stdout).into_owned(),
        })
    }

    /// The plan for people: each evaluation, its shards' states and its commands.
    pub fn describe(&self, threads: &str) -> String {
        let mut s = format!(
            "eval file {}: {} evaluation(s) of {}\n",
            self.source.display(),
            self.evals.len(),
            self.run.display()
        );
        for e in &self.evals {
            let (mut done, mut todo, mut stale) = (Vec::new(), Vec::new(), Vec::new());
            for i in 1..=e.shards {
                match e.state(i) {
                    ShardState::Done => done.push(i),
                    ShardState::Missing => todo.push(i),
                    ShardState::Stale(why) => {
                        todo.push(i);
                        stale.push(format!("      shard {i}/{}: {why}\n", e.shards));
                    }
                }
            }
            s += &format!(
                "  {} ({}): {} shards in {}\n",
                e.label,
                e.entry.describe(),
                e.shards,
                e.dir.display()
            );
            let list = |v: &[usize]| {
                if v.is_empty() {
                    "none".to_string()
                } else {
                    array_spec(v, None)
                }
            };
            s += &format!(
                "    finished: {}; to evaluate: {}\n",
                list(&done),
                list(&todo)
            );
            s += &stale.concat();
            s += &format!(
                "    each: {} {}\n",
                self.vae.display(),
                self.shard_args(e, "I", threads).join(" ")
            );
            s += &format!(
                "    then: {} eval-merge <the {} shard summaries> --out {}\n",
                self.vae.display(),
                e.shards,
                e.run.display()
            );
        }
        s
    }

    /// All shards' progress as (units done, units in all), from their progress files: a shard
    /// `finished` says is complete; one with no file yet counts as the mean size of its
    /// evaluation's shards that have one (else of all shards that have one).
    pub(crate) fn progress(&self, finished: impl Fn(usize, usize) -> bool) -> (u64, u64) {
        let mut per_eval: Vec<Vec<(bool, Option<ShardProgress>)>> = Vec::new();
        for (k, e) in self.evals.iter().enumerate() {
            per_eval.push(
                (1..=e.shards)
                    .map(|i| {
                        let p = ShardProgress::read(&e.progress(i))
                            .ok()
                            .filter(|p| p.total > 0);
                        (finished(k, i), p)
                    })
                    .collect(),
            );
        }
        let mean = |v: &mut dyn Iterator<Item = u64>| {
            let (sum, count) = v.fold((0u64, 0u64), |(s, c), t| (s + t, c + 1));
            (count > 0).then(|| sum / count)
        };
        let all = mean(
            &mut per_eval
                .iter()
                .flatten()
                .filter_map(|(_, p)| p.map(|p| p.total)),
        )
        .unwrap_or(1);
        let (mut done, mut total) = (0u64, 0u64);
        for shards in &per_eval {
            let typical =
                mean(&mut shards.iter().filter_map(|(_, p)| p.map(|p| p.total))).unwrap_or(all);
            for (fin, p) in shards {
                let t = p.map_or(typical, |p| p.total);
                total += t;
                done += if *fin {
                    t
                } else {
                    p.map_or(0, |p| p.done.min(t))
                };
            }
        }
        (done, total.max(1))
    }
}

impl PlannedEval {
    /// Evaluation `index` of a file, `entry`, of the run folder `run` in `shards` shards.
    fn new(index: usize, entry: &EvalEntry, shards: usize, run: &Path, label: String) -> Self {
        let dir = RunDir::new(run)
            .eval_shard(entry.method().as_str(), entry.split(), 1, shards)
            .parent()
            .expect("a shard summary lies in a folder")
            .to_path_buf();
        PlannedEval {
            index,
            entry: entry.clone(),
            label,
            shards,
            run: run.to_path_buf(),
            dir,
        }
    }

    /// The `vae eval` flags of the settings and the device: what every shard shares.
    pub fn flags(&self, device: &str) -> Vec<String> {
        let mut a = self.entry.flags();
        a.extend(["--device".into(), device.into()]);
        a
    }

    /// Shard `i`'s summary, where `vae eval --shard i/N` writes it by default.
    pub fn summary(&self, i: usize) -> PathBuf {
        RunDir::new(&self.run).eval_shard(
            self.entry.method().as_str(),
            self.entry.split(),
            i,
            self.shards,
        )
    }

    /// Shard `i`'s per-image CSV.
    pub fn csv(&self, i: usize) -> PathBuf {
        self.summary(i).with_extension("csv")
    }

    /// Shard `i`'s progress file.
    pub fn progress(&self, i: usize) -> PathBuf {
        ShardProgress::path_for(&self.summary(i))
    }

    /// What shard `i`'s `vae eval` printed, every attempt appended (both backends).
    pub fn log(&self, i: usize) -> PathBuf {
        self.summary(i).with_extension("log")
    }

    /// The merged summary in the run folder.
    pub fn merged(&self) -> PathBuf {
        RunDir::new(&self.run).eval_summary(self.entry.method().as_str(), self.entry.split())
    }

    /// `I/N of <method>-<split>`, for messages.
    pub fn shard_name(&self, i: usize) -> String {
        format!("{i}/{} of {}", self.shards, self.label)
    }

    /// What shard `i`'s files say about it.
    pub fn state(&self, i: usize) -> ShardState {
        let path = self.summary(i);
        if !path.exists() {
            return ShardState::Missing;
        }
        let s = match EvalSummary::read(&path) {
            Ok(s) => s,
            Err(e) => return ShardState::Stale(format!("its summary does not read back: {e}")),
        };
        let Some(info) = &s.shard else {
            return ShardState::Stale(format!(
                "{} is not a shard summary (no `shard` key)",
                path.display()
            ));
        };
        if (info.index, info.count) != (i, self.shards) {
            return ShardState::Stale(format!(
                "{} holds shard {}/{}",
                path.display(),
                info.index,
                info.count
            ));
        }
        if (s.method(), s.split.as_str()) != (self.entry.method().as_str(), self.entry.split()) {
            return ShardState::Stale(format!(
                "{} holds {} on the {} split",
                path.display(),
                s.method(),
                s.split
            ));
        }
        let csv = self.csv(i);
        let rows = match self.entry.method() {
            Method::Is => read_csv::<IsRow>(&csv).map(|r| r.len()),
            Method::Ais => read_csv::<AisRow>(&csv).map(|r| r.len()),
            Method::Bdmc => read_csv::<BdmcRow>(&csv).map(|r| r.len()),
        };
        match rows {
            Ok(n) if n == s.images => ShardState::Done,
            Ok(n) => ShardState::Stale(format!(
                "{} has {n} rows for {} images",
                csv.display(),
                s.images
            )),
            Err(e) => ShardState::Stale(format!("its CSV does not read back: {e}")),
        }
    }

    /// `eval-args.json`: the flags the shards in [`dir`](Self::dir) were made with.
    pub fn settings_file(&self) -> PathBuf {
        self.dir.join("eval-args.json")
    }

    /// Refuses to go on when the folder's shards were made with other flags.
    pub(crate) fn check_settings(&self, device: &str) -> Result<()> {
        let Ok(text) = std::fs::read_to_string(self.settings_file()) else {
            return Ok(());
        };
        let before: Vec<String> = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| serde_json::from_value(v["flags"].clone()).ok())
            .unwrap_or_default();
        let now = self.flags(device);
        if before != now {
            return Err(Error::SettingsChanged {
                dir: self.dir.clone(),
                before: before.join(" "),
                now: now.join(" "),
            });
        }
        Ok(())
    }

    /// Writes [`settings_file`](Self::settings_file), making the folder.
    pub(crate) fn record_settings(&self, device: &str) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(crate::Error::io("creating", &self.dir))?;
        vae_io::write_json(
            &self.settings_file(),
            &serde_json::json!({
                "flags": self.flags(device),
                "written_by": "cargo xtask eval: the vae eval flags of the shards in this folder",
            }),
        )?;
        Ok(())
    }
}
