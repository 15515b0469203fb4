//! The Slurm backend: one sbatch array script (one task per run),
//! submitted, followed with `squeue`, failed tasks resubmitted once, results read from the run
//! folders exactly as the local backend reads them.
//!
//! The script carries the same rule as the local backend, in bash: a task whose run has
//! `results.json` only evaluates, a run with a checkpoint continues with `vae train --resume`, a
//! run that died before its first checkpoint starts again. A resubmitted task therefore resumes,
//! and so does one submitted by hand with `sbatch --array=3 sweep.sbatch`.
//!
//! Task states come from `squeue -t all` while Slurm remembers the job, and from the run folders
//! (the ground truth: a task succeeded when its run is complete); neither accounting (`sacct`)
//! nor the job-completion log is needed. Each task also writes its exit status to
//! `slurm/exit/<index>` for the messages. The repository, the output folder and the data must be
//! on a file system the compute nodes share.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::error::{Error, Result};
use crate::plan::{Plan, RunState};

/// Seconds between two `squeue` calls.
pub(crate) const POLL: Duration = Duration::from_secs(2);
/// How long a task that left the queue may take for its files to show up (shared file systems
/// cache attributes), before it counts as failed.
pub(crate) const GRACE: Duration = Duration::from_secs(30);

/// Environment variables the tasks get from the submitting shell, written into the script so
/// that resubmitting it by hand works the same.
pub(crate) const PASSED_ENV: &[&str] = &["FLOWVAE_DATA", "FLOWVAE_CACHE"];

/// `<out>/slurm/sweep.sbatch`.
pub fn script_path(plan: &Plan) -> PathBuf {
    plan.out.join("slurm/sweep.sbatch")
}

/// Quotes a string for bash.
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/=,+:@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// `0-3,5,7-8`, plus `%N` to run at most N tasks at a time.
pub fn array_spec(indices: &[usize], max_parallel: Option<usize>) -> String {
    let mut sorted = indices.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1] == sorted[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            sorted[i].to_string()
        } else {
            format!("{}-{}", sorted[i], sorted[j])
        });
        i = j + 1;
    }
    let mut s = parts.join(",");
    if let Some(n) = max_parallel {
        s += &format!("%{n}");
    }
    s
}

/// The sbatch array script of the sweep.
pub fn script(plan: &Plan, max_parallel: Option<usize>) -> String {
    let sw = &plan.sweep;
    let q = |p: &std::path::Path| sh_quote(&p.to_string_lossy());
    let all: Vec<usize> = (0..plan.runs.len()).collect();
    let mut s = String::from("#!/bin/bash\n");
    let _ = writeln!(
        s,
        "# flowvae sweep `{}`: {} runs, one array task each. Written by `cargo xtask sweep --backend slurm`.\n\
         # Resubmit tasks with `sbatch --array=LIST {}`: each task resumes its run from its last checkpoint.",
        sw.name,
        plan.runs.len(),
        script_path(plan).display()
    );
    let mut opt = |o: String| {
        let _ = writeln!(s, "#SBATCH {o}");
    };
    opt(format!("--job-name=flowvae-{}", sw.name));
    opt(format!("--array={}", array_spec(&all, max_parallel)));
    opt(format!("--cpus-per-task={}", sw.slurm.cpus_per_task));
    if let Some(p) = &sw.slurm.partition {
        opt(format!("--partition={p}"));
    }
    if let Some(m) = &sw.slurm.mem {
        opt(format!("--mem={m}"));
    }
    if let Some(t) = &sw.slurm.time {
        opt(format!("--time={t}"));
    }
    if sw.slurm.gpus > 0 {
        opt(format!("--gres=gpu:{}", sw.slurm.gpus));
    }
    opt(format!(
        "--output={}",
        plan.out.join("slurm/%A_%a.out").display()
    ));
    opt(format!("--chdir={}", plan.root.display()));
    for e in &sw.slurm.extra {
        opt(e.clone());
    }
    s += "set -euo pipefail\n\n";
    let _ = writeln!(s, "VAE={}", q(&plan.vae));
    let _ = writeln!(s, "CONFIG={}", q(&sw.base));
    let _ = writeln!(s, "OUT={}", q(&plan.out));
    for var in PASSED_ENV {
        if let Some(v) = std::env::var_os(var) {
            let v = std::env::current_dir()
                .map(|d| d.join(&v))
                .unwrap_or_else(|_| PathBuf::from(&v));
            let _ = writeln!(s, "export {var}={}", q(&v));
        }
    }
    s += "THREADS=\"${SLURM_CPUS_PER_TASK:-1}\"\n";
    s += "TASK=\"${SLURM_ARRAY_TASK_ID:?this script runs as a Slurm array task}\"\n\n";
    s += "case \"$TASK\" in\n";
    for r in &plan.runs {
        let sets: Vec<String> = r
            .set_args(sw)
            .iter()
            .map(|a| format!("--set {}", sh_quote(a)))
            .collect();
        let _ = writeln!(
            s,
            "  {}) RUN={}\n     SETS=({}) ;;",
            r.index,
            sh_quote(&r.name),
            sets.join(" ")
        );
    }
    s += "  *) echo \"task $TASK: no such run in this sweep\" >&2; exit 2 ;;\nesac\n\n";
    s += "DIR=\"$OUT/$RUN\"\n";
    s += "mkdir -p \"$OUT/slurm/exit\"\n";
    s += "trap 'echo $? > \"$OUT/slurm/exit/$TASK\"' EXIT\n";
    // Without it a task cancelled by scancel (SIGTERM) records exit status 0.
    s += "trap 'exit 143' TERM\n";
    s += "echo \"task $TASK: run $RUN on $(hostname) with $THREADS threads\"\n";
    let device = sh_quote(&sw.device);
    let _ = write!(
        s,
        "if [ ! -e \"$DIR/results.json\" ]; then\n\
         \x20 if [ -e \"$DIR/checkpoints/last.safetensors\" ]; then\n\
         \x20   \"$VAE\" train --resume \"$DIR\" --config \"$CONFIG\" \"${{SETS[@]}}\" --device {device} --threads \"$THREADS\"\n\
         \x20 else\n\
         \x20   # A run stopped before its first checkpoint starts again.\n\
         \x20   if [ -e \"$DIR/config.json\" ]; then rm -rf -- \"$DIR\"; fi\n\
         \x20   \"$VAE\" train --out \"$DIR\" --config \"$CONFIG\" \"${{SETS[@]}}\" --device {device} --threads \"$THREADS\"\n\
         \x20 fi\n\
         fi\n\
         if [ ! -e \"$DIR/results.json\" ]; then\n\
         \x20 echo \"task $TASK: training of $RUN stopped before the end; resubmit the task to resume it\" >&2\n\
         \x20 exit 3\n\
         fi\n"
    );
    if let Some(e) = plan.job_eval() {
        let mut eval = plan.eval_args(&plan.runs[0]).expect("the sweep evaluates");
        // `eval --run DIR` with the task's folder; the device goes last, threads after it.
        eval[2] = "\"$DIR\"".into();
        let args: Vec<String> = eval
            .iter()
            .enumerate()
            .map(|(i, a)| if i == 2 { a.clone() } else { sh_quote(a) })
            .collect();
        let _ = write!(
            s,
            "if [ ! -e \"$DIR/{}\" ]; then\n\
             \x20 \"$VAE\" {} --threads \"$THREADS\"\n\
             fi\n",
            e.output(),
            args.join(" ")
        );
    }
    s
}

pub(crate) fn require(tool: &'static str) -> Result<()> {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    if !found {
        return Err(Error::NoSlurm { tool });
    }
    Ok(())
}

fn submit(plan: &Plan, indices: &[usize], max_parallel: Option<usize>) -> Result<u64> {
    for i in indices {
        let _ = std::fs::remove_file(plan.out.join(format!("slurm/exit/{i}")));
    }
    let spec = array_spec(indices, max_parallel);
    sbatch(
        &script_path(plan),
        &plan.root,
        &spec,
        &plan.out.join("slurm/jobs.json"),
    )
}

/// `sbatch --parsable --array=SPEC SCRIPT`, run in `root`; the job id is returned and appended
/// to `jobs_file` (`{"jobs": [...]}`), which a later invocation reads to follow the tasks.
pub(crate) fn sbatch(script: &Path, root: &Path, spec: &str, jobs_file: &Path) -> Result<u64> {
    let out = Command::new("sbatch")
        .arg("--parsable")
        .arg(format!("--array={spec}"))
        .arg(script)
        .current_dir(root)
        .output()
        .map_err(|error| Error::Start {
            program: "sbatch".into(),
            error,
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(Error::SlurmFailed {
            command: format!("sbatch --array={spec} {}", script.display()),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    let id = stdout
        .trim()
        .split(';')
        .next()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| Error::NoJobId {
            stdout: stdout.to_string(),
        })?;
    let mut jobs = read_job_ids(jobs_file);
    jobs.push(id);
    vae_io::write_json(jobs_file, &serde_json::json!({ "jobs": jobs }))?;
    Ok(id)
}

fn read_jobs(plan: &Plan) -> Vec<u64> {
    read_job_ids(&plan.out.join("slurm/jobs.json"))
}

/// The job ids [`sbatch`] recorded in `jobs_file`; none when it is missing or unreadable.
pub(crate) fn read_job_ids(jobs_file: &Path) -> Vec<u64> {
    std::fs::read_to_string(jobs_file)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| {
            v["jobs"]
                .as_array()
                .map(|a| a.iter().filter_map(|j| j.as_u64()).collect())
        })
        .unwrap_or_default()
}

/// Parses `squeue -h -r -o '%i|%T'` lines into (job, array index, state); pending tasks that
/// squeue still shows folded (`12_[3-5%2]`) are unfolded.
pub fn parse_squeue(text: &str) -> Vec<(u64, usize, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((id, state)) = line.trim().split_once('|') else {
            continue;
        };
        let Some((job, task)) = id.split_once('_') else {
            continue;
        };
        let Ok(job) = job.parse::<u64>() else {
            continue;
        };
        let task = task.trim_start_matches('[').trim_end_matches(']');
        let task = task.split('%').next().unwrap_or("");
        for part in task.split(',') {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                for i in a..=b {
                    out.push((job, i, state.trim().to_string()));
                }
            }
        }
    }
    out
}

/// States in which a task has ended; anything else is waiting or running.
pub(crate) fn ended(state: &str) -> bool {
    matches!(
        state,
        "COMPLETED"
            | "FAILED"
            | "CANCELLED"
            | "TIMEOUT"
            | "NODE_FAIL"
            | "OUT_OF_MEMORY"
            | "PREEMPTED"
            | "BOOT_FAIL"
            | "DEADLINE"
    )
}

/// The state of every task of `jobs` that Slurm still lists, keyed by (job, index).
fn query(jobs: &[u64]) -> Result<BTreeMap<(u64, usize), String>> {
    let mut states = BTreeMap::new();
    for &job in jobs {
        let out = Command::new("squeue")
            .args(["-h", "-r", "-t", "all", "-o", "%i|%T", "-j"])
            .arg(job.to_string())
            .output()
            .map_err(|error| Error::Start {
                program: "squeue".into(),
                error,
            })?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            if stderr.contains("Invalid job id") {
                continue; // finished long ago and forgotten
            }
            return Err(Error::SlurmFailed {
                command: format!("squeue -j {job}"),
                status: out.status,
                stderr: stderr.trim().to_string(),
            });
        }
        for (j, i, st) in parse_squeue(&String::from_utf8_lossy(&out.stdout)) {
            states.insert((j, i), st);
        }
    }
    Ok(states)
}

/// `query`, retried for a minute: a controller may be briefly unreachable.
pub(crate) fn query_patiently(jobs: &[u64]) -> Result<BTreeMap<(u64, usize), String>> {
    let start = Instant::now();
    loop {
        match query(jobs) {
            Ok(s) => return Ok(s),
            Err(e) if start.elapsed() < Duration::from_secs(60) => {
                eprintln!("xtask: {e}; trying again");
                std::thread::sleep(POLL * 3);
            }
            Err(e) => return Err(e),
        }
    }
}

#[derive(Debug)]
struct Task {
    job: u64,
    attempts: u32,
    state: String,
    left_queue: Option<Instant>,
    settled: bool,
}

/// Submits the unfinished runs and follows them; returns the runs that did not finish.
pub fn run(plan: &Plan, max_parallel: Option<usize>) -> Result<Vec<String>> {
    for tool in ["sbatch", "squeue"] {
        require(tool)?;
    }
    std::fs::create_dir_all(plan.out.join("slurm/exit"))
        .map_err(Error::io("creating", plan.out.join("slurm")))?;
    vae_io::write_atomic(&script_path(plan), script(plan, max_parallel).as_bytes())?;
    let total = plan.runs.len();
    let bar = ProgressBar::new(1000 * total as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "sweep [{bar:30}] {msg}  {elapsed_precise} elapsed, ETA {eta_precise}",
        )
        .expect("a constant template indicatif accepts: every run of this command draws it")
        .progress_chars("=> "),
    );
    let say = |line: String| bar.suspend(|| eprintln!("{line}"));

    // Tasks an earlier invocation submitted that are still queued or running are followed, not
    // submitted again beside themselves.
    let earlier = read_jobs(plan);
    let mut alive: BTreeMap<usize, (u64, String)> = BTreeMap::new();
    for ((job, i), st) in query_patiently(&earlier)? {
        if !ended(&st) && i < total {
            alive.insert(i, (job, st));
        }
    }
    let mut tasks: BTreeMap<usize, Task> = BTreeMap::new();
    let mut to_submit = Vec::new();
    for r in &plan.runs {
        if plan.job_state(r) == RunState::Complete {
            continue;
        }
        match alive.get(&r.index) {
            Some((job, st)) => {
                tasks.insert(
                    r.index,
                    Task {
                        job: *job,
                        attempts: 1,
                        state: st.clone(),
                        left_queue: None,
                        settled: false,
                    },
                );
            }
            None => to_submit.push(r.index),
        }
    }
    let finished_before = total - tasks.len() - to_submit.len();
    say(format!(
        "xtask: sweep {}: {total} runs, {finished_before} already finished, {} followed from an earlier submission, {} to submit",
        plan.sweep.name,
        tasks.len(),
        to_submit.len()
    ));
    if !to_submit.is_empty() {
        let job = submit(plan, &to_submit, max_parallel)?;
        say(format!(
            "xtask: submitted array job {job} (tasks {}) with {}; task output in {}",
            array_spec(&to_submit, max_parallel),
            script_path(plan).display(),
            plan.out.join("slurm").display()
        ));
        for &i in &to_submit {
            tasks.insert(
                i,
                Task {
                    job,
                    attempts: 1,
                    state: "PENDING".into(),
                    left_queue: None,
                    settled: false,
                },
            );
        }
    }
    if !tasks.is_empty() {
        say("xtask: following the tasks; Ctrl-C stops following, not the jobs (`scancel JOB` cancels them, and running this command again follows them)".into());
    }

    let mut failed = Vec::new();
    let mut done = finished_before;
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
        let mut resubmit = Vec::new();
        for (&i, t) in tasks.iter_mut().filter(|(_, t)| !t.settled) {
            let run = &plan.runs[i];
            let listed = states.get(&(t.job, i));
            if let Some(st) = listed {
                t.state = st.clone();
                if !ended(st) {
                    t.left_queue = None;
                    continue;
                }
            }
            if plan.job_state(run) == RunState::Complete {
                t.settled = true;
                done += 1;
                say(format!(
                    "xtask: [{done}/{total}] {} finished (job {}_{i})",
                    run.name, t.job
                ));
                continue;
            }
            let since = *t.left_queue.get_or_insert_with(Instant::now);
            let clean_exit = listed.is_none_or(|st| st == "COMPLETED");
            if clean_exit && since.elapsed() < GRACE {
                continue; // the files may not have reached this machine yet
            }
            let exit = std::fs::read_to_string(plan.out.join(format!("slurm/exit/{i}")))
                .map(|s| format!("exit status {}", s.trim()))
                .unwrap_or_else(|_| "no exit status".into());
            let state = if listed.is_some() {
                t.state.clone()
            } else {
                "gone from the queue".into()
            };
            let output = plan.out.join(format!("slurm/{}_{i}.out", t.job));
            if t.attempts < 2 {
                say(format!(
                    "xtask: {} (job {}_{i}) ended {state} with {exit} and did not finish; resubmitting it once (it resumes from its checkpoint); see {}",
                    run.name,
                    t.job,
                    output.display()
                ));
                resubmit.push(i);
            } else {
                say(format!(
                    "xtask: {} (job {}_{i}) FAILED again: {state}, {exit}; see {}",
                    run.name,
                    t.job,
                    output.display()
                ));
                failed.push(format!(
                    "{} ({state}, {exit}; see {})",
                    run.name,
                    output.display()
                ));
                t.settled = true;
            }
        }
        if !resubmit.is_empty() {
            let job = submit(plan, &resubmit, max_parallel)?;
            say(format!(
                "xtask: resubmitted as array job {job} (tasks {})",
                array_spec(&resubmit, max_parallel)
            ));
            for i in resubmit {
                let t = tasks.get_mut(&i).expect("a followed task");
                t.job = job;
                t.attempts += 1;
                t.state = "PENDING".into();
                t.left_queue = None;
            }
        }
        let (mut running, mut pending, mut partial) = (0, 0, 0.0);
        for (&i, t) in tasks.iter().filter(|(_, t)| !t.settled) {
            match t.state.as_str() {
                "PENDING" => pending += 1,
                _ => running += 1,
            }
            partial += plan.progress(&plan.runs[i]);
        }
        bar.set_position(((done as f64 + partial) * 1000.0) as u64);
        bar.set_message(format!(
            "{done}/{total} runs done, {running} running, {pending} pending"
        ));
    }
    bar.finish_and_clear();
    Ok(failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{eval_is, train_results};

    #[test]
    fn array_specs_fold_ranges() {
        assert_eq!(array_spec(&[0, 1, 2, 3], None), "0-3");
        assert_eq!(array_spec(&[7, 1, 3, 2, 8], Some(2)), "1-3,7-8%2");
        assert_eq!(array_spec(&[5], None), "5");
    }

    #[test]
    fn squeue_lines_parse_folded_or_not() {
        let text = "12_0|RUNNING\n12_[2-3,5%2]|PENDING\n13|RUNNING\nbad\n14_1|COMPLETED\n";
        let p = parse_squeue(text);
        let got: Vec<(u64, usize, &str)> = p.iter().map(|(j, i, s)| (*j, *i, s.as_str())).collect();
        assert_eq!(
            got,
            [
                (12, 0, "RUNNING"),
                (12, 2, "PENDING"),
                (12, 3, "PENDING"),
                (12, 5, "PENDING"),
                (14, 1, "COMPLETED")
            ]
        );
        assert!(ended("TIMEOUT") && !ended("COMPLETING") && !ended("PENDING"));
    }

    #[test]
    fn quoting_survives_bash() {
        assert_eq!(sh_quote("model.flow=null"), "model.flow=null");
        assert_eq!(
            sh_quote("data.dataset=\"mnist\""),
            "'data.dataset=\"mnist\"'"
        );
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote(""), "''");
    }

    /// Runs the generated script with bash and a stand-in `vae` that records its arguments and
    /// writes the files the real one would: the script follows the same rule as the local
    /// backend, with the same arguments.
    #[test]
    fn the_script_resumes_like_the_local_backend() {
        let tmp = tempfile::tempdir().unwrap();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut plan = Plan::new(
            &root,
            &root.join("configs/sweeps/smoke.json"),
            Some(&tmp.path().join("out")),
        )
        .unwrap();
        let calls = tmp.path().join("calls.txt");
        // The result files the stand-in copies into a run: complete ones, as vae writes them.
        let (results, eval) = (
            tmp.path().join("results.json"),
            tmp.path().join("eval.json"),
        );
        train_results(2, 110.0, 105.0).write(&results).unwrap();
        eval_is(100.0, 0.5, 200, 1.0).write(&eval).unwrap();
        plan.vae = tmp.path().join("fake-vae");
        std::fs::write(
            &plan.vae,
            format!(
                "#!/bin/bash\nprintf '%s\\n' \"$*\" >> {calls}\n\
                 case \"$1 $2\" in\n\
                 \x20 'train --out') mkdir -p \"$3\"; touch \"$3/config.json\"; [ \"$STOP\" = 1 ] && mkdir -p \"$3/checkpoints\" && touch \"$3/checkpoints/last.safetensors\" && exit 0; cp {results} \"$3/results.json\" ;;\n\
                 \x20 'train --resume') cp {results} \"$3/results.json\" ;;\n\
                 \x20 'eval --run') cp {eval} \"$3/eval-is-test.json\" ;;\n\
                 esac\n",
                calls = calls.display(),
                results = results.display(),
                eval = eval.display(),
            ),
        )
        .unwrap();
        Command::new("chmod")
            .arg("+x")
            .arg(&plan.vae)
            .status()
            .unwrap();
        let sbatch = tmp.path().join("sweep.sbatch");
        std::fs::write(&sbatch, script(&plan, Some(2))).unwrap();
        let task = |i: usize, stop: bool| {
            Command::new("bash")
                .arg(&sbatch)
                .env("SLURM_ARRAY_TASK_ID", i.to_string())
                .env("SLURM_CPUS_PER_TASK", "3")
                .env("STOP", if stop { "1" } else { "0" })
                .output()
                .unwrap()
        };
        let lines = || -> Vec<String> {
            std::fs::read_to_string(&calls)
                .unwrap_or_default()
                .lines()
                .map(String::from)
                .collect()
        };
        let with_threads = |mut a: Vec<String>| {
            a.extend(["--threads".into(), "3".into()]);
            a.join(" ")
        };
        let run = &plan.runs[2];
        std::fs::create_dir_all(tmp.path().join("out")).unwrap();
        // Interrupted training: the task fails with status 3 and records it.
        let o = task(2, true);
        assert_eq!(
            o.status.code(),
            Some(3),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("out/slurm/exit/2"))
                .unwrap()
                .trim(),
            "3"
        );
        assert_eq!(lines(), [with_threads(plan.train_args(run, false))]);
        // Resubmitted: it resumes, then evaluates.
        let o = task(2, false);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(
            lines()[1..],
            [
                with_threads(plan.train_args(run, true)),
                with_threads(plan.eval_args(run).unwrap())
            ]
        );
        assert_eq!(plan.state(run), RunState::Complete);
        let r = crate::results::collect(&plan, run);
        assert_eq!((r.test_nll, r.test_neg_elbo), (Some(100.0), Some(105.0)));
        assert!(r.unreadable.is_empty(), "{:?}", r.unreadable);
        // A complete run does nothing; an unknown task fails.
        assert!(task(2, false).status.success());
        assert_eq!(lines().len(), 3);
        assert_eq!(task(9, false).status.code(), Some(2));
        // A run that stopped before its first checkpoint starts again from nothing.
        let dir = plan.run_dir(&plan.runs[0]);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), "{}").unwrap();
        std::fs::write(dir.join("stale"), "").unwrap();
        assert!(task(0, false).status.success());
        assert!(!dir.join("stale").exists());
        assert_eq!(
            lines()[3],
            with_threads(plan.train_args(&plan.runs[0], false))
        );
    }
}
