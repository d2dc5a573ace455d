//! The scheduler: when each backend is probed. One task per probed backend runs its probe on a
//! fixed cadence and sends what it saw to the publisher; it never touches health or snapshots.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::rr::LowerName;
use rand::Rng;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::ProbeTiming;
use crate::domain::{Model, Observation, ProbeSpec};
use crate::monitor::health::HealthTable;
use crate::probe::{self, Probe, Shared};

/// Most probes in flight at once, so 10,000 backends cannot exhaust sockets or file handles.
pub(crate) const MAX_CONCURRENT_PROBES: usize = 512;

/// One observation of one backend, as a probe task sends it. `epoch` tells the publisher
/// whether it was made under the current model (a reload starts a new epoch).
#[derive(Debug)]
pub(crate) struct Observed {
    pub(crate) epoch: u64,
    pub(crate) pool: usize,
    pub(crate) backend: usize,
    pub(crate) at: Instant,
    pub(crate) obs: Observation,
}

/// Where a probe task's observations go: the epoch and the indexes of its backend in the
/// model in force. A reload that keeps the task rewrites it (under the monitor's lock, with
/// the new epoch), so the task goes on with its socket and cadence under the new model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tag {
    pub(crate) epoch: u64,
    pub(crate) pool: usize,
    pub(crate) backend: usize,
}

/// One running probe task.
struct Task {
    /// What it probes with: a backend whose probe changes gets a new task.
    spec: ProbeSpec,
    tag: Arc<Mutex<Tag>>,
    described: String,
    handle: JoinHandle<()>,
}

/// The backends' probe tasks, by (lowercased pool name, address): what a backend keeps its
/// health by across a reload, too.
type Tasks = HashMap<(LowerName, IpAddr), Task>;

/// Owns the probe tasks.
pub(crate) struct Scheduler {
    shared: Shared,
    slots: Arc<Semaphore>,
    tasks: Mutex<Tasks>,
}

impl Default for Scheduler {
    fn default() -> Self {
        Scheduler::new()
    }
}

impl Scheduler {
    /// A scheduler with no tasks yet.
    pub(crate) fn new() -> Scheduler {
        Scheduler {
            shared: Shared::new(),
            slots: Arc::new(Semaphore::new(MAX_CONCURRENT_PROBES)),
            tasks: Mutex::new(HashMap::new()),
        }
    }

    /// Probes every backend of `model` whose health in `table` is still unknown, all at once
    /// (bounded by the probes' timeouts), and returns what each saw.
    pub(crate) async fn first_round(&self, model: &Model, table: &HealthTable) -> Vec<Observed> {
        let mut jobs = tokio::task::JoinSet::new();
        for (pi, bi, b) in HealthTable::probed(model) {
            if table.health(pi, bi).state != crate::domain::HealthState::Unknown {
                continue;
            }
            let Some(spec) = b.probe.clone() else {
                continue;
            };
            let mut probe = build(&spec, b.address, &self.shared);
            let slots = self.slots.clone();
            jobs.spawn(async move {
                let _permit = slots.acquire_owned().await;
                let obs = probe::observe(probe.as_mut(), spec.timing.timeout).await;
                Observed {
                    epoch: 0,
                    pool: pi,
                    backend: bi,
                    at: Instant::now(),
                    obs,
                }
            });
        }
        let mut seen = Vec::new();
        while let Some(Ok(o)) = jobs.join_next().await {
            seen.push(o);
        }
        seen
    }

    /// Makes the probe tasks those of `model`: one per probed backend, each sending to
    /// `observed` tagged with `epoch` and the backend's indexes in `model`. A task already
    /// running for the same pool, address and probe is kept, retagged, with its socket and
    /// cadence (a reload that leaves a backend alone does not restart its probing); the others
    /// are stopped, and new ones started.
    ///
    /// Returns how each backend's probe describes itself, indexed like the model's pools and
    /// backends (`none` for a backend never probed), for the status page.
    pub(crate) fn start(
        &self,
        model: &Model,
        epoch: u64,
        observed: &mpsc::UnboundedSender<Observed>,
    ) -> Vec<Vec<String>> {
        let mut described: Vec<Vec<String>> = model
            .pools
            .iter()
            .map(|p| vec![crate::config::PROBE_NONE.to_owned(); p.backends.len()])
            .collect();
        let mut tasks = self.tasks.lock().expect("tasks lock");
        let mut old = std::mem::take(&mut *tasks);
        for (pi, p) in model.pools.iter().enumerate() {
            let pool = LowerName::new(&p.name);
            for (bi, b) in p.backends.iter().enumerate() {
                let Some(spec) = &b.probe else { continue };
                let key = (pool.clone(), b.address);
                let tag = Tag {
                    epoch,
                    pool: pi,
                    backend: bi,
                };
                let task = match old.remove(&key) {
                    Some(t) if t.spec == *spec && !t.handle.is_finished() => {
                        *t.tag.lock().expect("tag lock") = tag;
                        t
                    }
                    stale => {
                        if let Some(t) = stale {
                            t.handle.abort();
                        }
                        let probe = build(spec, b.address, &self.shared);
                        let tag = Arc::new(Mutex::new(tag));
                        Task {
                            spec: spec.clone(),
                            described: probe.describe(),
                            handle: tokio::spawn(probe_loop(
                                probe,
                                spec.timing,
                                self.slots.clone(),
                                tag.clone(),
                                observed.clone(),
                            )),
                            tag,
                        }
                    }
                };
                described[pi][bi] = task.described.clone();
                tasks.insert(key, task);
            }
        }
        for t in old.into_values() {
            t.handle.abort();
        }
        described
    }

    /// The tag of the task probing `address` in pool `pool`, if one runs: the same `Arc` for
    /// as long as the task runs.
    #[cfg(test)]
    pub(crate) fn tag(
        &self,
        pool: &hickory_proto::rr::Name,
        address: IpAddr,
    ) -> Option<Arc<Mutex<Tag>>> {
        let tasks = self.tasks.lock().expect("tasks lock");
        Some(tasks.get(&(LowerName::new(pool), address))?.tag.clone())
    }

    /// Stops every probe task.
    pub(crate) fn stop(&self) {
        for (_, t) in self.tasks.lock().expect("tasks lock").drain() {
            t.handle.abort();
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The probe `spec` describes. A spec that does not build (`lbns check` rejects those before a
/// model is ever started) probes as a failure that says why.
fn build(spec: &ProbeSpec, address: std::net::IpAddr, shared: &Shared) -> Box<dyn Probe> {
    match probe::build(spec, address, shared) {
        Ok(p) => p,
        Err(e) => Box::new(Broken(e)),
    }
}

/// A probe whose settings were rejected: always down, with the reason.
struct Broken(String);

impl Probe for Broken {
    fn run(&mut self) -> probe::ProbeFuture<'_> {
        let e = self.0.clone();
        Box::pin(async move { Err(e) })
    }

    fn describe(&self) -> String {
        format!("invalid: {}", self.0)
    }
}

/// Probe starts are woken on this grid: with thousands of backends each on its own jittered
/// cadence, the runtime would otherwise wake for nearly every millisecond; on a 4 ms grid one
/// wakeup starts a batch (at 10,000 probes a second, about 40). A start is late by less than
/// the grid, and the cadence is kept from the unrounded time.
const WAKE_GRID: Duration = Duration::from_millis(4);

/// `at` rounded up to the next point of [`WAKE_GRID`] (counted from a fixed instant, so every
/// backend shares the grid).
fn on_grid(at: Instant) -> Instant {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    let Some(since) = at.checked_duration_since(origin) else {
        return at;
    };
    let grid = WAKE_GRID.as_nanos();
    let rounded = since.as_nanos().div_ceil(grid) * grid;
    at + Duration::from_nanos((rounded - since.as_nanos()) as u64)
}

/// Probes one backend forever on a fixed cadence: each start is `interval` plus a random part
/// of `jitter` after the previous start, whatever the probe took (timeout ≤ interval is
/// enforced by the config), which is what the detection bound assumes.
async fn probe_loop(
    mut probe: Box<dyn Probe>,
    timing: ProbeTiming,
    slots: Arc<Semaphore>,
    tag: Arc<Mutex<Tag>>,
    observed: mpsc::UnboundedSender<Observed>,
) {
    let mut next = Instant::now();
    // One timer for the backend's life, reset for each start rather than made anew.
    let sleep = tokio::time::sleep_until(next);
    tokio::pin!(sleep);
    loop {
        let jitter = if timing.jitter.is_zero() {
            Duration::ZERO
        } else {
            rand::rng().random_range(Duration::ZERO..=timing.jitter)
        };
        // The next start is due `interval + jitter` after the previous one was, however long
        // that probe took: a probe that ran into its timeout (= interval by default) is
        // followed at once, not an interval later, so a hung backend is probed on schedule.
        next += timing.interval + jitter;
        // Only after a real stall (the process was stopped, the runtime starved) does the
        // cadence restart from now, rather than firing a burst of catch-up probes.
        let now = Instant::now();
        if next + timing.interval < now {
            next = now;
        }
        sleep.as_mut().reset(on_grid(next));
        sleep.as_mut().await;
        let obs = {
            let _permit = slots.acquire().await;
            probe::observe(probe.as_mut(), timing.timeout).await
        };
        // Read after the probe: a reload may have moved the backend meanwhile.
        let Tag {
            epoch,
            pool,
            backend,
        } = *tag.lock().expect("tag lock");
        let o = Observed {
            epoch,
            pool,
            backend,
            at: Instant::now(),
            obs,
        };
        if observed.send(o).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A probe that records when each run starts and takes `takes` (forever if `None`).
    struct Slow {
        starts: Arc<Mutex<Vec<Instant>>>,
        takes: Option<Duration>,
    }

    impl Probe for Slow {
        fn run(&mut self) -> probe::ProbeFuture<'_> {
            self.starts.lock().unwrap().push(Instant::now());
            let takes = self.takes;
            Box::pin(async move {
                match takes {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending::<()>().await,
                }
                Err("slow".to_owned())
            })
        }

        fn describe(&self) -> String {
            "slow".to_owned()
        }
    }

    /// Runs a probe loop for `secs` virtual seconds and returns the gaps between starts.
    async fn gaps(timing: ProbeTiming, takes: Option<Duration>, secs: u64) -> Vec<Duration> {
        let starts = Arc::new(Mutex::new(Vec::new()));
        let probe = Box::new(Slow {
            starts: starts.clone(),
            takes,
        });
        let (tx, mut rx) = mpsc::unbounded_channel();
        let tag = Tag {
            epoch: 1,
            pool: 0,
            backend: 0,
        };
        let task = tokio::spawn(probe_loop(
            probe,
            timing,
            Arc::new(Semaphore::new(1)),
            Arc::new(Mutex::new(tag)),
            tx,
        ));
        tokio::time::sleep(Duration::from_secs(secs)).await;
        task.abort();
        let mut failures = 0;
        while let Ok(o) = rx.try_recv() {
            assert!(!o.obs.ok);
            failures += 1;
        }
        let starts = starts.lock().unwrap().clone();
        assert!(
            failures + 1 >= starts.len(),
            "every finished run was reported"
        );
        starts.windows(2).map(|w| w[1] - w[0]).collect()
    }

    fn timing(interval_ms: u64, timeout_ms: u64) -> ProbeTiming {
        ProbeTiming {
            interval: Duration::from_millis(interval_ms),
            timeout: Duration::from_millis(timeout_ms),
            jitter: Duration::ZERO,
            rise: 2,
            fall: 2,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_backend_is_probed_every_interval() {
        let g = gaps(timing(1000, 1000), None, 10).await;
        assert!(g.len() >= 8, "{g:?}");
        assert!(g.iter().all(|&d| d == Duration::from_secs(1)), "{g:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_that_overruns_its_slot_is_followed_at_once() {
        // Each run takes a little longer than the interval (a timeout plus scheduling slop):
        // the next starts as soon as it ends, never an interval later.
        let g = gaps(timing(1000, 2000), Some(Duration::from_millis(1050)), 12).await;
        assert!(g.len() >= 9, "{g:?}");
        assert!(g.iter().all(|&d| d == Duration::from_millis(1050)), "{g:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_quick_probe_keeps_the_cadence() {
        let mut t = timing(1000, 500);
        t.jitter = Duration::from_millis(200);
        let g = gaps(t, Some(Duration::from_millis(10)), 20).await;
        assert!(g.len() >= 15, "{g:?}");
        // Interval plus up to 200 ms of jitter, each start up to one grid step late.
        assert!(
            g.iter()
                .all(|&d| d >= Duration::from_millis(1000) - WAKE_GRID
                    && d <= Duration::from_millis(1200) + WAKE_GRID),
            "{g:?}"
        );
    }
}
