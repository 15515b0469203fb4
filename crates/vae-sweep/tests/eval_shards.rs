//! Sharded evaluations (`vae_sweep::eval`, what `cargo xtask eval` runs) with the workspace's
//! debug `vae` on a freshly trained smoke run: the local backend's merged CSV equals one
//! unsharded `vae eval`'s byte for byte, a rerun evaluates only the shards that are missing,
//! unreadable or failed (a failure is retried once, a second one is reported with its log), eval
//! files with mistakes are refused naming the key, and (ignored unless Slurm runs here) the Slurm
//! backend reaches the local result with one task cancelled in the middle and resubmitted.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use vae_sweep::eval::{EvalFile, EvalPlan, Options, ShardState};
use vae_sweep::Backend;

/// The repository root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Builds `vae` in this test's profile (`cargo build -p vae-cli`, usually done already by
/// `cargo test --workspace`) and returns its path: it lies in the target folder's profile folder,
/// the parent of this test binary's `deps/`.
fn built_vae() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut c = Command::new(cargo);
    c.args(["build", "--quiet", "-p", "vae-cli"])
        .current_dir(root());
    if !cfg!(debug_assertions) {
        c.arg("--release");
    }
    assert!(
        c.status().unwrap().success(),
        "cargo build -p vae-cli failed"
    );
    let exe = std::env::current_exe().unwrap();
    let vae = exe.parent().unwrap().parent().unwrap().join("vae");
    assert!(vae.is_file(), "no {} after cargo build", vae.display());
    vae
}

/// A trained smoke run on the tiny dataset, and a `vae` wrapper that points it at the dataset,
/// records its arguments in `calls.txt`, and fails a shard on request: `fail-once-<method>-<I>`
/// makes shard I of that method fail once (the file is removed), `fail-always-<method>-<I>`
/// every time.
struct Setup {
    tmp: tempfile::TempDir,
    run: PathBuf,
    vae: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let data = d.join("data");
        vae_io::fixture::write_tiny_mnist(&data, 800, 100).unwrap();
        let real = built_vae();
        let vae = d.join("vae");
        std::fs::write(
            &vae,
            format!(
                "#!/bin/bash\n\
                 export FLOWVAE_DATA={data}\n\
                 echo \"$*\" >> {dir}/calls.txt\n\
                 M=''; S=''; prev=''\n\
                 for a in \"$@\"; do\n\
                 \x20 case \"$prev\" in --method) M=$a ;; --shard) S=${{a%%/*}} ;; esac\n\
                 \x20 prev=$a\n\
                 done\n\
                 if [ -n \"$S\" ]; then\n\
                 \x20 if [ -e {dir}/fail-always-$M-$S ]; then echo \"injected failure of $M shard $S\" >&2; exit 1; fi\n\
                 \x20 if [ -e {dir}/fail-once-$M-$S ]; then rm -f {dir}/fail-once-$M-$S; echo \"injected failure of $M shard $S\" >&2; exit 1; fi\n\
                 fi\n\
                 exec {real} \"$@\"\n",
                data = data.display(),
                dir = d.display(),
                real = real.display()
            ),
        )
        .unwrap();
        Command::new("chmod").arg("+x").arg(&vae).status().unwrap();
        let run = d.join("run");
        let smoke = root().join("configs/smoke.json");
        let o = Command::new(&vae)
            .args(["train", "--config", smoke.to_str().unwrap(), "--out"])
            .arg(&run)
            .args(["--set", "data.validation=200", "--threads", "1"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let _ = std::fs::remove_file(d.join("calls.txt"));
        Setup { tmp, run, vae }
    }

    fn dir(&self) -> &Path {
        self.tmp.path()
    }

    /// The plan of `file` (an eval file's text) on this run, with the wrapper as `vae`.
    fn plan(&self, file: &EvalFile) -> EvalPlan {
        let mut file = file.clone();
        file.run = self.run.clone();
        let mut plan = EvalPlan::from_file(&root(), &self.dir().join("eval.json"), file, None)
            .unwrap_or_else(|e| panic!("{e}"));
        plan.vae = self.vae.clone();
        plan
    }

    /// The `vae` calls since the last call of this function.
    fn calls(&self) -> Vec<String> {
        let p = self.dir().join("calls.txt");
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        let _ = std::fs::remove_file(&p);
        text.lines().map(String::from).collect()
    }

    /// `vae eval` of the whole of `e`, unsharded, into `out`; returns its CSV.
    fn unsharded(&self, plan: &EvalPlan, k: usize, out: &Path) -> String {
        let e = &plan.evals[k];
        let o = Command::new(&self.vae)
            .args(["eval", "--run"])
            .arg(&self.run)
            .args(e.flags(&plan.file.device))
            .args(["--threads", "1", "--out"])
            .arg(out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::read_to_string(out.with_extension("csv")).unwrap()
    }
}

fn local(jobs: usize) -> Options {
    Options {
        backend: Backend::Local,
        jobs: Some(jobs),
        threads: Some(1),
    }
}

/// configs/eval/smoke.json: 4-shard IS (40 images, k 100, 10 images per model call) and AIS
/// (40 images, 20 steps, 2 chains, 2 leapfrog steps, 10 images per step-size group).
fn smoke_file() -> EvalFile {
    EvalFile::load(&root().join("configs/eval/smoke.json")).unwrap()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn local_shards_merge_into_the_unsharded_evaluation() {
    let s = Setup::new();
    let plan = s.plan(&smoke_file());
    assert_eq!(plan.evals.len(), 2);
    let report = vae_sweep::eval::execute(&plan, &local(2)).unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.merged.len(), 2);
    // Every shard finished, with its log and a finished progress file beside it.
    for e in &plan.evals {
        for i in 1..=4 {
            assert_eq!(e.state(i), ShardState::Done, "{}", e.shard_name(i));
            assert!(read(&e.log(i)).contains("--shard"));
            let p: serde_json::Value = serde_json::from_str(&read(&e.progress(i))).unwrap();
            assert_eq!(p["done"], p["total"], "{p}");
        }
    }
    let calls = s.calls();
    assert_eq!(calls.iter().filter(|c| c.contains("--shard")).count(), 8);
    assert_eq!(
        calls.iter().filter(|c| c.starts_with("eval-merge")).count(),
        2
    );
    // The merged files equal one unsharded evaluation's, byte for byte.
    for (k, name) in [(0, "is"), (1, "ais")] {
        let whole = s.unsharded(&plan, k, &s.dir().join(format!("whole/eval-{name}.json")));
        let merged = s.run.join(format!("eval-{name}-test.csv"));
        assert_eq!(read(&merged), whole, "{name}: the merged CSV");
        assert_eq!(whole.lines().count(), 41, "{name}: a header and 40 images");
        let m: serde_json::Value =
            serde_json::from_str(&read(&merged.with_extension("json"))).unwrap();
        assert_eq!(m["images"], 40);
        assert_eq!(m["shards"].as_array().unwrap().len(), 4);
    }
    assert!(s.run.join("eval-is-test.png").is_file());
    // A second invocation has nothing left to evaluate; it merges again.
    s.calls();
    vae_sweep::eval::execute(&plan, &local(2))
        .unwrap()
        .finished()
        .unwrap();
    let calls = s.calls();
    assert!(
        calls.iter().all(|c| c.starts_with("eval-merge")),
        "{calls:?}"
    );
}

#[test]
fn a_rerun_evaluates_only_missing_stale_and_failed_shards() {
    let s = Setup::new();
    let plan = s.plan(&smoke_file());
    vae_sweep::eval::execute(&plan, &local(2))
        .unwrap()
        .finished()
        .unwrap();
    s.calls();
    let merged = |name: &str| read(&s.run.join(format!("eval-{name}-test.csv")));
    let (is_before, ais_before) = (merged("is"), merged("ais"));
    let (is, ais) = (&plan.evals[0], &plan.evals[1]);

    // IS shard 2 lost, IS shard 3 left as garbage, AIS shard 3 with a CSV cut short, AIS shard 4
    // lost and failing once.
    std::fs::remove_file(is.summary(2)).unwrap();
    std::fs::remove_file(is.csv(2)).unwrap();
    std::fs::write(is.summary(3), "{\"split\": \"test\", \"images\": ").unwrap();
    assert!(
        matches!(is.state(3), ShardState::Stale(ref why) if why.contains("does not read back"))
    );
    let csv = read(&ais.csv(3));
    let cut: Vec<&str> = csv.lines().take(3).collect();
    std::fs::write(ais.csv(3), cut.join("\n") + "\n").unwrap();
    assert!(matches!(ais.state(3), ShardState::Stale(ref why) if why.contains("rows for")));
    std::fs::remove_file(ais.summary(4)).unwrap();
    std::fs::write(s.dir().join("fail-once-ais-4"), "").unwrap();
    let dry = vae_sweep::eval::dry_run(&plan, &local(2));
    assert!(dry.contains("finished: 1,4; to evaluate: 2-3"), "{dry}");
    assert!(dry.contains("finished: 1-2; to evaluate: 3-4"), "{dry}");

    let report = vae_sweep::eval::execute(&plan, &local(2)).unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let mut shards: Vec<String> = s
        .calls()
        .iter()
        .filter(|c| c.contains("--shard"))
        .map(|c| {
            let method = c
                .split("--method ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap();
            let shard = c
                .split("--shard ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap();
            format!("{method} {shard}")
        })
        .collect();
    shards.sort();
    assert_eq!(
        shards,
        ["ais 3/4", "ais 4/4", "ais 4/4", "is 2/4", "is 3/4"]
    );
    assert!(read(&ais.log(4)).contains("injected failure of ais shard 4"));
    assert_eq!(merged("is"), is_before);
    assert_eq!(merged("ais"), ais_before);

    // A shard that fails twice is reported with its log; the other evaluation is still merged.
    std::fs::remove_file(ais.summary(1)).unwrap();
    std::fs::remove_file(s.run.join("eval-is-test.json")).unwrap();
    std::fs::write(s.dir().join("fail-always-ais-1"), "").unwrap();
    let report = vae_sweep::eval::execute(&plan, &local(2)).unwrap();
    assert_eq!(report.merged.len(), 1);
    assert_eq!(report.merged[0].name, "is-test");
    assert!(s.run.join("eval-is-test.json").is_file());
    assert_eq!(report.failed.len(), 1, "{:?}", report.failed);
    let f = &report.failed[0];
    assert!(f.starts_with("shard 1/4 of ais-test failed twice: "), "{f}");
    assert!(f.contains("injected failure of ais shard 1"), "{f}");
    assert!(f.contains(&ais.log(1).display().to_string()), "{f}");
    let e = report.finished().unwrap_err().to_string();
    assert!(e.contains("run the same command again to resume"), "{e}");
    std::fs::remove_file(s.dir().join("fail-always-ais-1")).unwrap();
    s.calls();

    // Other settings for a folder that holds shards: refused, naming the folder, before any
    // `vae` runs.
    let mut changed = smoke_file();
    changed.evals[1].steps = Some(30);
    let e = vae_sweep::eval::execute(&s.plan(&changed), &local(2))
        .unwrap_err()
        .to_string();
    assert!(e.contains(&ais.dir.display().to_string()), "{e}");
    assert!(e.contains("--steps 20") && e.contains("--steps 30"), "{e}");
    assert!(s.calls().is_empty());

    // Back to the old settings: only the failed shard is left, and the result is the same.
    vae_sweep::eval::execute(&plan, &local(2))
        .unwrap()
        .finished()
        .unwrap();
    assert_eq!(
        s.calls().iter().filter(|c| c.contains("--shard")).count(),
        1
    );
    assert_eq!(merged("ais"), ais_before);
}

#[test]
fn eval_file_errors_name_the_file_and_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("bad.json");
    let load = |text: &str| {
        std::fs::write(&file, text).unwrap();
        EvalFile::load(&file).unwrap_err().to_string()
    };
    let prefix = format!("eval file {}: ", file.display());
    for (text, want) in [
        (
            r#"{"run": "runs/smoke", "shards": 4, "evals": [{"method": "ais", "steps": 20, "chians": 2}]}"#,
            "`evals[0].chians`: unknown field `chians`, expected one of `method`, `shards`",
        ),
        (
            r#"{"run": "runs/smoke", "shards": 4, "evals": [{"method": "hmc"}]}"#,
            "`evals[0].method`: expected \"is\", \"ais\" or \"bdmc\", found \"hmc\"",
        ),
        (
            r#"{"run": "runs/smoke", "shards": 4, "evals": [{"method": "is"}, {"method": "ais", "leapfrog": 0}]}"#,
            "`evals[1].leapfrog`: expected an integer >= 1, found 0",
        ),
        (
            r#"{"run": "runs/smoke", "shards": 4, "evals": [{"method": "ais", "target_acceptance": 1.5}]}"#,
            "`evals[0].target_acceptance`: expected a number in (0, 1), found 1.5",
        ),
        (
            r#"{"run": "runs/smoke", "shards": 4, "slurm": {"cpus_per_task": 0}, "evals": [{"method": "is"}]}"#,
            "`slurm.cpus_per_task`: expected an integer >= 1, found 0",
        ),
    ] {
        let e = load(text);
        assert!(e.starts_with(&prefix), "{e}");
        assert!(e.contains(want), "{text}\n  got:  {e}\n  want: {want}");
    }
    let e = load("{\"run\": ");
    assert!(
        e.starts_with(&format!("eval file {} is not valid JSON", file.display())),
        "{e}"
    );

    // More shards than an AIS evaluation of known size has step-size groups.
    let f = EvalFile::parse(
        r#"{"run": "runs/smoke", "shards": 5, "evals": [{"method": "ais", "n": 40, "chains": 2, "max_rows": 20}]}"#,
    )
    .unwrap();
    let e = EvalPlan::from_file(&root(), &file, f.clone(), None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`shards`: 5 shards of evals[0] (ais on test, 40 images, 2 chains) would leave some empty: its 40 images make 4 group(s) of 10"),
        "{e}"
    );
    assert!(e.contains("at most 4"), "{e}");
    assert!(EvalPlan::from_file(&root(), &file, f.clone(), Some(4)).is_ok());
    let e = EvalPlan::from_file(&root(), &file, f, Some(8))
        .unwrap_err()
        .to_string();
    assert!(e.contains("set --shards to at most 4"), "{e}");

    // A run folder without a trained run.
    let mut f = smoke_file();
    f.run = tmp.path().join("no-run");
    let plan = EvalPlan::from_file(&root(), &file, f, None).unwrap();
    let e = vae_sweep::eval::execute(&plan, &local(1))
        .unwrap_err()
        .to_string();
    assert!(e.contains("has no config.json"), "{e}");
}

/// Runs `command` and returns its output as text, failing on an error.
fn sh(command: &mut Command) -> String {
    let o = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{command:?}: {text}");
    text
}

#[test]
#[ignore = "needs the Slurm of scripts/slurm-start.sh (root with apt); `cargo xtask test` runs it \
            where it can"]
fn a_cancelled_slurm_task_is_resubmitted_and_the_merge_equals_the_local_one() {
    let start = Instant::now();
    sh(Command::new("bash").arg(root().join("scripts/slurm-start.sh")));
    let s = Setup::new();
    // Long enough in a debug build (a few seconds per shard) to cancel a task in the middle.
    let file = EvalFile::parse(
        r#"{"run": "runs/smoke", "shards": 4, "evals": [
            {"method": "ais", "n": 40, "steps": 4000, "chains": 2, "leapfrog": 2, "max_rows": 20}
        ]}"#,
    )
    .unwrap();
    // The same trained run in a second folder, for the Slurm evaluation.
    let slurm_run = s.dir().join("run-slurm");
    sh(Command::new("cp").arg("-r").arg(&s.run).arg(&slurm_run));

    let plan = s.plan(&file);
    vae_sweep::eval::execute(&plan, &local(2))
        .unwrap()
        .finished()
        .unwrap();
    let local_done = start.elapsed();

    let mut slurm_file = file.clone();
    slurm_file.run = slurm_run.clone();
    let mut slurm_plan =
        EvalPlan::from_file(&root(), &s.dir().join("eval.json"), slurm_file, None).unwrap();
    slurm_plan.vae = s.vae.clone();
    let opts = Options {
        backend: Backend::Slurm,
        jobs: None,
        threads: None,
    };
    let e = slurm_plan.evals[0].clone();
    let (report, cancelled) = std::thread::scope(|scope| {
        let follow = scope.spawn(|| vae_sweep::eval::execute(&slurm_plan, &opts));
        // Cancel task 2 once its shard reports progress, before it can finish.
        let jobs_file = e.dir.join("slurm-of-4/jobs.json");
        let wait = Instant::now();
        let job = loop {
            if e.progress(2).exists() {
                let v: serde_json::Value = serde_json::from_str(&read(&jobs_file)).unwrap();
                break v["jobs"][0].as_u64().unwrap();
            }
            assert!(
                wait.elapsed() < Duration::from_secs(300) && !follow.is_finished(),
                "shard 2 never reported progress"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        sh(Command::new("scancel").arg(format!("{job}_2")));
        let cancelled_before_done = e.state(2) != ShardState::Done;
        (follow.join().unwrap(), cancelled_before_done)
    });
    let report = report.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert!(cancelled, "shard 2 finished before its task was cancelled");
    let jobs: serde_json::Value =
        serde_json::from_str(&read(&e.dir.join("slurm-of-4/jobs.json"))).unwrap();
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 2, "{jobs}");
    // Task 2 ran twice, its output appended to the shard's log.
    let log = read(&e.log(2));
    assert_eq!(log.matches("task 2: shard 2/4").count(), 2, "{log}");
    let script = read(&e.dir.join("slurm-of-4/eval.sbatch"));
    assert!(script.contains("#SBATCH --array=1-4"), "{script}");
    assert_eq!(
        read(&slurm_run.join("eval-ais-test.csv")),
        read(&s.run.join("eval-ais-test.csv")),
        "the Slurm and local merged CSVs differ"
    );
    eprintln!(
        "local done at {local_done:.1?}, Slurm (with the resubmission) at {:.1?}",
        start.elapsed()
    );
}
