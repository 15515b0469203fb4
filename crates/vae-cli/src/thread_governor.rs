//! The thread governor: libtorch's CPU threads follow the cores that other processes leave free.
//!
//! Why: libgomp's workers spin for a few milliseconds after each parallel region (its default
//! when `OMP_WAIT_POLICY` is unset), which makes a step fastest on an idle machine; beside a busy
//! process, a spinning worker and that process share a core and a step takes several times
//! longer. Letting the workers sleep instead (`passive`) protects the busy case and costs the
//! idle one about a third of a step (README, "CPU threads", has the measurements). So `vae` keeps
//! the spinning and, at the first tick a [`WINDOW`] or more after its last look, measures how
//! much CPU the other processes used meanwhile (the machine's busy time in `/proc/stat` minus
//! this process's own in `/proc/self/stat`) and sets libtorch's thread count to the cores they
//! left, at least one. With one thread libtorch opens no parallel region, so no worker spins
//! against the other process.
//!
//! It must run on the thread that runs the tensor operations (OpenMP's and MKL's thread counts
//! are per calling thread), so it is ticked from the training and evaluation loops' progress
//! callbacks rather than from a thread of its own. `--threads N` or `OMP_NUM_THREADS` fix the
//! count and turn it off; so does a machine whose `/proc/stat` does not list exactly the cores
//! this process may use (a container restricted to some of the host's cores), where the other
//! processes' time cannot be told apart.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How much work passes between two looks at the machine's load.
pub const WINDOW: Duration = Duration::from_millis(500);

/// The other processes' share of a core above which the governor counts that core as taken:
/// background daemons stay below it; a busy process sharing a core with a spinning worker
/// still gets more than this.
pub const TAKEN: f64 = 0.25;

/// CPU time counters at one instant, in clock ticks (USER_HZ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuSample {
    /// Every CPU's time of every kind, idle included, summed over the CPUs.
    pub all: u64,
    /// Every CPU's non-idle time (user, nice, system, irq, softirq, steal), summed.
    pub busy: u64,
    /// This process's user and system time (all its threads).
    pub own: u64,
}

impl CpuSample {
    /// Reads `/proc/stat` and `/proc/self/stat`, with the number of CPUs `/proc/stat` lists.
    pub fn read() -> Option<(CpuSample, usize)> {
        use procfs::{CurrentSI, KernelStats};
        let stats = KernelStats::current().ok()?;
        let t = &stats.total;
        let opt = |v: Option<u64>| v.unwrap_or(0);
        let busy = t.user + t.nice + t.system + opt(t.irq) + opt(t.softirq) + opt(t.steal);
        let all = busy + t.idle + opt(t.iowait);
        let own = procfs::process::Process::myself().ok()?.stat().ok()?;
        Some((
            CpuSample {
                all,
                busy,
                own: own.utime + own.stime,
            },
            stats.cpu_time.len(),
        ))
    }
}

/// The cores the other processes used between two samples (0 to `cores`), or `None` when no
/// time passed between them.
pub fn others_cores(before: CpuSample, after: CpuSample, cores: usize) -> Option<f64> {
    let all = after.all.checked_sub(before.all)?;
    if all == 0 {
        return None;
    }
    let busy = after.busy.saturating_sub(before.busy);
    let own = after.own.saturating_sub(before.own);
    let others = busy.saturating_sub(own) as f64 / all as f64 * cores as f64;
    Some(others.clamp(0.0, cores as f64))
}

/// The threads to use when the other processes use `others` cores of `cores`: the cores they
/// leave, counting a core as taken once they use more than [`TAKEN`] of it; at least 1.
pub fn threads_for(others: f64, cores: usize) -> usize {
    let taken = (others - TAKEN).ceil().max(0.0) as usize;
    cores.saturating_sub(taken).max(1)
}

/// Sets libtorch's thread count from the machine's load, or leaves it fixed.
#[derive(Debug)]
pub struct ThreadGovernor {
    adaptive: Option<Adaptive>,
    /// Seconds spent at each thread count.
    seconds_at: BTreeMap<usize, f64>,
    current: usize,
    since: Instant,
    changes: u64,
}

#[derive(Debug)]
struct Adaptive {
    cores: usize,
    last: CpuSample,
    last_at: Instant,
    /// A proposal seen once: a change needs two windows in a row that agree.
    pending: Option<usize>,
}

impl Adaptive {
    /// Takes a new sample; the thread count to change to, if this window and the one before
    /// both asked for the same count other than `current`.
    fn observe(&mut self, now: CpuSample, current: usize) -> Option<usize> {
        let proposal = others_cores(self.last, now, self.cores).map(|o| threads_for(o, self.cores));
        self.last = now;
        self.last_at = Instant::now();
        let Some(want) = proposal.filter(|&w| w != current) else {
            self.pending = None;
            return None;
        };
        if self.pending != Some(want) {
            self.pending = Some(want);
            return None;
        }
        self.pending = None;
        Some(want)
    }
}

impl ThreadGovernor {
    /// A governor for this process. `fixed` (from `--threads`) or `OMP_NUM_THREADS` in the
    /// environment keep libtorch's count as it is; otherwise the count adapts, starting from
    /// every core this process may use.
    pub fn new(fixed: Option<usize>) -> ThreadGovernor {
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        let adaptive = (fixed.is_none() && std::env::var_os("OMP_NUM_THREADS").is_none())
            .then(CpuSample::read)
            .flatten()
            .filter(|&(_, listed)| listed == cores && cores > 1)
            .map(|(last, _)| Adaptive {
                cores,
                last,
                last_at: Instant::now(),
                pending: None,
            });
        if adaptive.is_some() {
            tch::set_num_threads(cores as i32);
        }
        ThreadGovernor {
            adaptive,
            seconds_at: BTreeMap::new(),
            current: tch::get_num_threads().max(1) as usize,
            since: Instant::now(),
            changes: 0,
        }
    }

    /// Whether the thread count follows the machine's load.
    pub fn is_adaptive(&self) -> bool {
        self.adaptive.is_some()
    }

    /// Looks at the machine once a [`WINDOW`] has passed since the last look, and changes the
    /// thread count when two looks in a row ask for the same new one. Call it from the thread
    /// that runs the tensor operations; between looks it costs one clock read.
    pub fn tick(&mut self) {
        let Some(a) = &mut self.adaptive else {
            return;
        };
        if a.last_at.elapsed() < WINDOW {
            return;
        }
        let Some((now, _)) = CpuSample::read() else {
            return;
        };
        let Some(want) = a.observe(now, self.current) else {
            return;
        };
        self.account();
        tch::set_num_threads(want as i32);
        self.current = want;
        self.changes += 1;
    }

    fn account(&mut self) {
        *self.seconds_at.entry(self.current).or_default() += self.since.elapsed().as_secs_f64();
        self.since = Instant::now();
    }

    /// For the run's manifest: whether the count adapted, how often it changed and the seconds
    /// spent at each count.
    pub fn summary(&mut self) -> serde_json::Value {
        self.account();
        let at: serde_json::Map<String, serde_json::Value> = self
            .seconds_at
            .iter()
            .map(|(n, s)| (n.to_string(), ((s * 10.0).round() / 10.0).into()))
            .collect();
        serde_json::json!({
            "adaptive": self.is_adaptive(),
            "changes": self.changes,
            "seconds_at_threads": at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(all: u64, busy: u64, own: u64) -> CpuSample {
        CpuSample { all, busy, own }
    }

    #[test]
    fn others_are_the_busy_time_that_is_not_ours() {
        // 2 cores for 1 s at 100 ticks/s: 200 ticks; we used 120, the machine 200.
        let o = others_cores(sample(0, 0, 0), sample(200, 200, 120), 2).unwrap();
        assert!((o - 0.8).abs() < 1e-12, "{o}");
        // Idle apart from us.
        let o = others_cores(sample(0, 0, 0), sample(200, 150, 150), 2).unwrap();
        assert_eq!(o, 0.0);
        // Our own counter may run ahead of the machine's within a tick: never negative.
        let o = others_cores(sample(0, 0, 0), sample(200, 150, 160), 2).unwrap();
        assert_eq!(o, 0.0);
        // No time passed, or counters that went backwards: no figure.
        assert_eq!(others_cores(sample(5, 1, 1), sample(5, 1, 1), 2), None);
        assert_eq!(others_cores(sample(9, 1, 1), sample(5, 1, 1), 2), None);
    }

    #[test]
    fn threads_are_the_cores_left() {
        assert_eq!(threads_for(0.0, 2), 2);
        assert_eq!(threads_for(TAKEN, 2), 2, "background noise takes no core");
        // A busy process sharing a core with a spinning worker gets about half of it.
        assert_eq!(threads_for(0.5, 2), 1);
        assert_eq!(threads_for(1.0, 2), 1);
        assert_eq!(threads_for(2.0, 2), 1, "never fewer than one");
        assert_eq!(threads_for(1.0, 16), 15);
        assert_eq!(threads_for(3.2, 16), 13);
    }

    #[test]
    fn this_machine_can_be_read() {
        // Linux only (the project's platform): the counters exist and only grow.
        let (a, cpus) = CpuSample::read().expect("/proc/stat and /proc/self/stat");
        assert!(cpus >= 1);
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let (b, _) = CpuSample::read().unwrap();
        assert!(b.all >= a.all && b.busy >= a.busy && b.own >= a.own);
    }

    #[test]
    fn a_change_needs_two_windows_that_agree() {
        let mut a = Adaptive {
            cores: 2,
            last: sample(0, 0, 0),
            last_at: Instant::now(),
            pending: None,
        };
        // Windows of 200 ticks; we use 100 of them (1 core) each time.
        let mut t = 0;
        let mut window = |a: &mut Adaptive, others: u64, current: usize| {
            t += 200;
            let own = a.last.own + 100;
            let busy = a.last.busy + 100 + others;
            a.observe(sample(t, busy, own), current)
        };
        assert_eq!(window(&mut a, 0, 2), None, "idle: stays at 2");
        assert_eq!(window(&mut a, 100, 2), None, "one busy window: only noted");
        assert_eq!(window(&mut a, 100, 2), Some(1), "a second one: down to 1");
        assert_eq!(window(&mut a, 100, 1), None);
        assert_eq!(window(&mut a, 0, 1), None, "one idle window: only noted");
        assert_eq!(
            window(&mut a, 100, 1),
            None,
            "busy again: the note is dropped"
        );
        assert_eq!(window(&mut a, 0, 1), None);
        assert_eq!(window(&mut a, 0, 1), Some(2));
    }
}
