//! The Slurm backend of sharded evaluations: one sbatch array job per evaluation, one task per
//! unfinished shard (the array index is the shard's `I`), followed with `squeue` by the sweep
//! engine's helpers (`crate::slurm`); a task that ends without its shard finished (failed,
//! cancelled, killed) is resubmitted once. Finished shards are read from their files, exactly as
//! the local backend reads them, and merged on this machine afterwards.
//!
//! Each evaluation's script and records lie in `RUN/shards/eval-<method>-<split>/slurm-of-N/`:
//! `eval.sbatch` (resubmit tasks by hand with `sbatch --array=LIST eval.sbatch`), `jobs.json`
//! (the jobs submitted, which a later invocation follows instead of submitting them again) and
//! `exit/<I>` (each task's exit status). Each task appends its output to the shard's log beside
//! its summary, as the local backend does. The repository, the run folder and the data must be on
//! a file system the compute nodes share.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use super::plan::{EvalPlan, PlannedEval, ShardState};
use super::{progress_bar, Result};
use crate::slurm::{
    array_spec, ended, query_patiently, read_job_ids, require, sbatch, sh_quote, GRACE, PASSED_ENV,
    POLL,
};

/// The folder of `e`'s Slurm script and records.
fn slurm_dir(e: &PlannedEval) -> PathBuf {
    e.dir.join(format!("slurm-of-{}", e.shards))
}

/// `RUN/shards/eval-<method>-<split>/slurm-of-N/eval.sbatch`.
pub(crate) fn script_path(e: &PlannedEval) -> PathBuf {
    slurm_dir(e).join("eval.sbatch")
}

fn jobs_file(e: &PlannedEval) -> PathBuf {
    slurm_dir(e).join("jobs.json")
}

fn exit_file(e: &PlannedEval, i: usize) -> PathBuf {
    slurm_dir(e).join(format!("exit/{i}"))
}

/// The sbatch array script of evaluation `e`: task `I` evaluates shard `I/N`.
pub(crate) fn script(plan: &EvalPlan, e: &PlannedEval, max_parallel: Option<usize>) -> String {
    let sl = &plan.file.slurm;
    let q = |p: &std::path::Path| sh_quote(&p.to_string_lossy());
    let n = e.shards;
    let all: Vec<usize> = (1..=n).collect();
    let mut s = String::from("#!/bin/bash\n");
    let _ = writeln!(
        s,
        "# flowvae evaluation {} of {}: {n} shards, one array task each (task I evaluates shard \
         I/{n}).\n# Written by `cargo xtask eval --backend slurm` from {}. Resubmit shards with \
         `sbatch --array=LIST {}`.",
        e.entry.name(),
        e.run.display(),
        plan.source.display(),
        script_path(e).display()
    );
    let mut opt = |o: String| {
        let _ = writeln!(s, "#SBATCH {o}");
    };
    opt(format!("--job-name=flowvae-eval-{}", e.entry.name()));
    opt(format!("--array={}", array_spec(&all, max_parallel)));
    opt(format!("--cpus-per-task={}", sl.cpus_per_task));
    if let Some(p) = &sl.partition {
        opt(format!("--partition={p}"));
    }
    if let Some(m) = &sl.mem {
        opt(format!("--mem={m}"));
    }
    if let Some(t) = &sl.time {
        opt(format!("--time={t}"));
    }
    if sl.gpus > 0 {
        opt(format!("--gres=gpu:{}", sl.gpus));
    }
    // The shard's log, as the local backend keeps it; a resubmitted task appends to it.
    opt(format!(
        "--output={}",
        e.dir.join(format!("shard-%a-of-{n}.log")).display()
    ));
    opt("--open-mode=append".into());
    opt(format!("--chdir={}", plan.root.display()));
    for x in &sl.extra {
        opt(x.clone());
    }
    s += "set -euo pipefail\n\n";
    let _ = writeln!(s, "VAE={}", q(&plan.vae));
    let _ = writeln!(s, "SLURM_DIR={}", q(&slurm_dir(e)));
    for var in PASSED_ENV {
        if let Some(v) = std::env::var_os(var) {
            let v = std::env::current_dir()
                .map(|d| d.join(&v))
                .unwrap_or_else(|_| PathBuf::from(&v));
            let _ = writeln!(s, "export {var}={}", q(&v));
        }
    }
    s += "THREADS=\"${SLURM_CPUS_PER_TASK:-1}\"\n";
    s += "TASK=\"${SLURM_ARRAY_TASK_ID:?this script runs as a Slurm array task}\"\n";
    let _ = writeln!(
        s,
        "case \"$TASK\" in\n\
         \x20 ''|*[!0-9]*) echo \"task $TASK: not a shard number\" >&2; exit 2 ;;\n\
         esac\n\
         if [ \"$TASK\" -lt 1 ] || [ \"$TASK\" -gt {n} ]; then\n\
         \x20 echo \"task $TASK: no such shard (1 to {n})\" >&2; exit 2\n\
         fi\n"
    );
    s += "mkdir -p \"$SLURM_DIR/exit\"\n";
    s += "trap 'echo $? > \"$SLURM_DIR/exit/$TASK\"' EXIT\n";
    // Without it a task cancelled while `vae` runs records the status 0.
    s += "trap 'exit 143' TERM\n";
    let _ = writeln!(
        s,
        "echo \"task $TASK: shard $TASK/{n} of {} on $(hostname) with $THREADS threads\"",
        e.entry.name()
    );
    let args: Vec<String> = plan
        .shard_args(e, "$TASK", "$THREADS")
        .iter()
        .map(|a| match a.as_str() {
            "$THREADS" => "\"$THREADS\"".to_string(),
            a if a == format!("$TASK/{n}") => format!("\"$TASK/{n}\""),
            a => sh_quote(a),
        })
        .collect();
    let _ = writeln!(s, "\"$VAE\" {}", args.join(" "));
    s
}

#[derive(Debug)]
struct Task {
    job: u64,
    attempts: u32,
    state: String,
    left_queue: Option<Instant>,
    settled: bool,
}

/// Submits every evaluation's unfinished shards and follows them; returns the shards that did
/// not finish, each with the reason and its log.
pub(crate) fn run(plan: &EvalPlan, max_parallel: Option<usize>) -> Result<Vec<String>> {
    for tool in ["sbatch", "squeue"] {
        require(tool)?;
    }
    let bar = progress_bar();
    let say = |line: String| bar.suspend(|| eprintln!("{line}"));
    let mut tasks: BTreeMap<(usize, usize), Task> = BTreeMap::new();
    let mut total = 0;
    for (k, e) in plan.evals.iter().enumerate() {
        let dir = slurm_dir(e);
        std::fs::create_dir_all(dir.join("exit"))
            .map_err(crate::Error::io("creating", dir.join("exit")))?;
        vae_io::write_atomic(&script_path(e), script(plan, e, max_parallel).as_bytes())?;
        // Tasks an earlier invocation submitted that are still queued or running are followed,
        // not submitted again beside themselves.
        let mut alive: BTreeMap<usize, (u64, String)> = BTreeMap::new();
        for ((job, i), st) in query_patiently(&read_job_ids(&jobs_file(e)))? {
            if !ended(&st) && (1..=e.shards).contains(&i) {
                alive.insert(i, (job, st));
            }
        }
        let mut to_submit = Vec::new();
        let mut followed = 0;
        for i in 1..=e.shards {
            let state = e.state(i);
            if state == ShardState::Done {
                continue;
            }
            total += 1;
            if let Some((job, st)) = alive.get(&i) {
                followed += 1;
                tasks.insert((k, i), task(*job, st));
                continue;
            }
            if let ShardState::Stale(why) = state {
                say(format!(
                    "xtask: shard {} is evaluated again: {why}",
                    e.shard_name(i)
                ));
            }
            to_submit.push(i);
        }
        say(format!(
            "xtask: {} ({}): {} shards, {} finished, {followed} followed from an earlier \
             submission, {} to submit; logs beside them in {}",
            e.label,
            e.entry.describe(),
            e.shards,
            e.shards - followed - to_submit.len(),
            to_submit.len(),
            e.dir.display()
        ));
        if !to_submit.is_empty() {
            let job = submit(plan, e, &to_submit, max_parallel)?;
            say(format!(
                "xtask: submitted array job {job} (tasks {}) with {}",
                array_spec(&to_submit, max_parallel),
                script_path(e).display()
            ));
            for &i in &to_submit {
                tasks.insert((k, i), task(job, "PENDING"));
            }
        }
    }
    if tasks.is_empty() {
        return Ok(Vec::new());
    }
    say("xtask: following the tasks; Ctrl-C stops following, not the jobs (`scancel JOB` cancels them, and running this command again follows them)".into());

    let mut failed = Vec::new();
    let mut done = 0;
    while tasks.values().any(|t| !t.settled) {
        std::thread::sleep(POLL);
        let mut jobs: Vec<u64> = tasks
            .values()
            .filter(|t| !t.settled)
            .map(|t| t.job)
            .collect();
        jobs.sort_unstable();
        jobs.dedup();
        let states = query_patiently(&jobs)?;
        let mut resubmit: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (&(k, i), t) in tasks.iter_mut().filter(|(_, t)| !t.settled) {
            let e = &plan.evals[k];
            let listed = states.get(&(t.job, i));
            if let Some(st) = listed {
                t.state = st.clone();
                if !ended(st) {
                    t.left_queue = None;
                    continue;
                }
            }
            if e.state(i) == ShardState::Done {
                t.settled = true;
                done += 1;
                say(format!(
                    "xtask: [{done}/{total}] shard {} finished (job {}_{i})",
                    e.shard_name(i),
                    t.job
                ));
                continue;
            }
            let since = *t.left_queue.get_or_insert_with(Instant::now);
            let clean_exit = listed.is_none_or(|st| st == "COMPLETED");
            if clean_exit && since.elapsed() < GRACE {
                continue; // the files may not have reached this machine yet
            }
            let exit = std::fs::read_to_string(exit_file(e, i))
                .map(|s| format!("exit status {}", s.trim()))
                .unwrap_or_else(|_| "no exit status".into());
            let state = if listed.is_some() {
                t.state.clone()
            } else {
                "gone from the queue".into()
            };
            if t.attempts < 2 {
                say(format!(
                    "xtask: shard {} (job {}_{i}) ended {state} with {exit} and did not finish; \
                     resubmitting it once; see {}",
                    e.shard_name(i),
                    t.job,
                    e.log(i).display()
                ));
                resubmit.entry(k).or_default().push(i);
            } else {
                say(format!(
                    "xtask: shard {} (job {}_{i}) FAILED again: {state}, {exit}; see {}",
                    e.shard_name(i),
                    t.job,
                    e.log(i).display()
                ));
                failed.push(format!(
                    "shard {} failed twice ({state}, {exit}; log: {})",
                    e.shard_name(i),
                    e.log(i).display()
                ));
                t.settled = true;
            }
        }
        for (k, shards) in resubmit {
            let e = &plan.evals[k];
            let job = submit(plan, e, &shards, max_parallel)?;
            say(format!(
                "xtask: resubmitted shards {} of {} as array job {job}",
                array_spec(&shards, None),
                e.label
            ));
            for i in shards {
                let t = tasks.get_mut(&(k, i)).expect("a followed task");
                t.job = job;
                t.attempts += 1;
                t.state = "PENDING".into();
                t.left_queue = None;
            }
        }
        let (mut running, mut pending) = (0, 0);
        for t in tasks.values().filter(|t| !t.settled) {
            match t.state.as_str() {
                "PENDING" => pending += 1,
                _ => running += 1,
            }
        }
        let (pos, len) = plan.progress(|k, i| {
            tasks
                .get(&(k, i))
                .is_none_or(|t| t.settled && plan.evals[k].state(i) == ShardState::Done)
        });
        bar.set_length(len);
        bar.set_position(pos);
        bar.set_message(format!(
            "{done}/{total} shards done, {running} running, {pending} pending"
        ));
    }
    bar.finish_and_clear();
    Ok(failed)
}

fn task(job: u64, state: &str) -> Task {
    Task {
        job,
        attempts: 1,
        state: state.into(),
        left_queue: None,
        settled: false,
    }
}

/// Submits shards `indices` of `e` as one array job; their progress files and exit statuses
/// from an earlier attempt are removed first.
fn submit(
    plan: &EvalPlan,
    e: &PlannedEval,
    indices: &[usize],
    max_parallel: Option<usize>,
) -> Result<u64> {
    for &i in indices {
        let _ = std::fs::remove_file(exit_file(e, i));
        let _ = std::fs::remove_file(e.progress(i));
    }
    let spec = array_spec(indices, max_parallel);
    Ok(sbatch(&script_path(e), &plan.root, &spec, &jobs_file(e))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::EvalFile;
    use std::process::Command;

    /// Runs the generated script with bash and a stand-in `vae` that records its arguments: a
    /// task evaluates its own shard with the plan's arguments, and records its exit status.
    #[test]
    fn the_script_evaluates_its_tasks_shard_and_records_the_exit_status() {
        let tmp = tempfile::tempdir().unwrap();
        let file = EvalFile::parse(
            r#"{"run": "my run", "shards": 3,
                "slurm": {"cpus_per_task": 2, "partition": "cpu", "extra": ["--account=ml"]},
                "evals": [{"method": "ais", "steps": 7, "start": "base"}]}"#,
        )
        .unwrap();
        let mut plan =
            EvalPlan::from_file(tmp.path(), &tmp.path().join("e.json"), file, None).unwrap();
        let calls = tmp.path().join("calls.txt");
        plan.vae = tmp.path().join("fake vae");
        std::fs::write(
            &plan.vae,
            format!(
                "#!/bin/bash\nprintf '%s\\n' \"$@\" > '{}'\n[ \"$FAIL\" = 1 ] && exit 5\nexit 0\n",
                calls.display()
            ),
        )
        .unwrap();
        Command::new("chmod")
            .arg("+x")
            .arg(&plan.vae)
            .status()
            .unwrap();
        let e = &plan.evals[0];
        let text = script(&plan, e, Some(2));
        for line in [
            "#SBATCH --array=1-3%2",
            "#SBATCH --cpus-per-task=2",
            "#SBATCH --partition=cpu",
            "#SBATCH --account=ml",
            "#SBATCH --open-mode=append",
        ] {
            assert!(text.contains(line), "{line}: {text}");
        }
        assert!(
            text.contains(&format!(
                "#SBATCH --output={}/shard-%a-of-3.log",
                e.dir.display()
            )),
            "{text}"
        );
        std::fs::create_dir_all(&e.dir).unwrap();
        let sbatch = tmp.path().join("eval.sbatch");
        std::fs::write(&sbatch, &text).unwrap();
        let task = |i: &str, fail: bool| {
            Command::new("bash")
                .arg(&sbatch)
                .env("SLURM_ARRAY_TASK_ID", i)
                .env("SLURM_CPUS_PER_TASK", "2")
                .env("FAIL", if fail { "1" } else { "0" })
                .output()
                .unwrap()
        };
        let exit = |i: usize| std::fs::read_to_string(exit_file(e, i)).unwrap();
        let o = task("2", false);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let args: Vec<String> = std::fs::read_to_string(&calls)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        assert_eq!(args, plan.shard_args(e, "2", "2"));
        assert!(args.contains(&"--shard".to_string()) && args.contains(&"2/3".to_string()));
        assert_eq!(exit(2).trim(), "0");
        assert_eq!(task("3", true).status.code(), Some(5));
        assert_eq!(exit(3).trim(), "5");
        for bad in ["0", "4", "x"] {
            assert_eq!(task(bad, false).status.code(), Some(2), "task {bad:?}");
        }
    }
}
