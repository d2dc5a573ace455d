//! The probe path: one task per probed backend on a fixed cadence, a health table, and the
//! publisher that compiles and swaps in a new [`Snapshot`] when answers must change.
//!
//! Probers never touch the snapshot; they send observations to the publisher, which applies
//! them, logs flips once, and republishes — at once after a flip, at most every
//! [`LOAD_REPUBLISH`] for load changes, and whenever a backend goes stale (byAge).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hickory_proto::rr::Name;
use rand::Rng;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

use crate::config::{Config, ProbeConfig, ProbeKind};
use crate::health::{Health, Observation, ProbeStats, State};
use crate::pool::{Snapshot, SnapshotCell};
use crate::probe::{ProbeState, Prober};
use crate::zones::ZoneSet;

/// Most probes in flight at once, so 10,000 backends cannot exhaust sockets or file handles.
pub const MAX_CONCURRENT_PROBES: usize = 512;
/// Load-only changes (no flip) are published at most this often.
pub const LOAD_REPUBLISH: Duration = Duration::from_millis(500);
/// How often staleness (byAge) is re-evaluated without new observations.
const TICK: Duration = Duration::from_millis(100);

/// One observation from a prober task. `epoch` discards results of a replaced config.
struct Report {
    epoch: u64,
    pool: usize,
    backend: usize,
    at: Instant,
    obs: Observation,
}

/// What the status page and the CLI show for one backend.
#[derive(Debug, Clone)]
pub struct BackendStatus {
    pub name: String,
    pub address: IpAddr,
    pub probe: String,
    pub state: State,
    pub usable: bool,
    pub drained: bool,
    pub load: Option<f64>,
    pub last_probe_age: Option<Duration>,
    pub last_result: Option<String>,
    pub last_ok: Option<bool>,
    pub last_latency: Option<Duration>,
    pub flips: u64,
    pub probes: ProbeStats,
}

#[derive(Debug, Clone)]
pub struct PoolStatus {
    pub name: String,
    pub policy: String,
    pub ttl: u32,
    pub all_down_v4: bool,
    pub all_down_v6: bool,
    /// A/AAAA answers given for this pool (its rotation counter; kept across reloads).
    pub answers: u64,
    pub backends: Vec<BackendStatus>,
}

/// Everything mutable about the probe side, behind one lock held only briefly.
struct Table {
    config: Arc<Config>,
    zones: Arc<ZoneSet>,
    health: Vec<Vec<Health>>,
    /// (pool name, backend name) taken out of answers by an operator.
    drained: HashSet<(String, String)>,
    /// `drained` resolved against the config, indexed like `health` (no string work per probe).
    drained_flags: Vec<Vec<bool>>,
    generation: u64,
    epoch: u64,
    counters: HashMap<Name, Arc<AtomicUsize>>,
    /// The usable set at the last publish, to notice staleness changes.
    published_usable: Vec<Vec<bool>>,
    load_dirty: bool,
    last_publish: Instant,
}

impl Table {
    /// Recomputes `drained_flags` after the drained set or the config changed.
    fn refresh_drained(&mut self) {
        self.drained_flags = self
            .config
            .pools
            .iter()
            .map(|p| {
                let pool = p.name.to_ascii();
                p.backends
                    .iter()
                    .map(|b| self.drained.contains(&(pool.clone(), b.name.clone())))
                    .collect()
            })
            .collect();
    }

    fn usable(&self, now: Instant) -> Vec<Vec<bool>> {
        self.config
            .pools
            .iter()
            .zip(&self.health)
            .zip(&self.drained_flags)
            .map(|((p, hs), ds)| {
                hs.iter()
                    .zip(ds)
                    .map(|(h, d)| h.usable(now, p.max_age) && !d)
                    .collect()
            })
            .collect()
    }

    /// Compiles the snapshot from the current table.
    fn compile(&mut self, now: Instant) -> Snapshot {
        self.generation += 1;
        let usable = self.usable(now);
        // Drained backends compile as not usable: clone the health with their state forced.
        let mut health = self.health.clone();
        for (p, hs) in health.iter_mut().enumerate() {
            for (b, h) in hs.iter_mut().enumerate() {
                if !usable[p][b] {
                    h.state = State::Down;
                }
            }
        }
        let counters = &mut self.counters;
        let snapshot = Snapshot::compile(
            &self.config,
            self.zones.clone(),
            self.generation,
            &health,
            now,
            &mut |p| counters.entry(p.name.clone()).or_default().clone(),
        );
        self.published_usable = usable;
        self.load_dirty = false;
        self.last_publish = now;
        snapshot
    }
}

/// Owns the probe tasks and publishes snapshots.
pub struct Monitor {
    table: Arc<Mutex<Table>>,
    cell: SnapshotCell,
    prober: Prober,
    slots: Arc<Semaphore>,
    reports: mpsc::UnboundedSender<Report>,
    probe_tasks: Mutex<Vec<JoinHandle<()>>>,
    publisher: JoinHandle<()>,
}

impl Monitor {
    /// Runs one probe round (bounded by the probes' timeouts) so that no known-dead backend is
    /// ever answered, publishes the first snapshot, then starts probing on schedule.
    pub async fn start(config: Config, zones: ZoneSet) -> Monitor {
        let prober = Prober::new();
        let slots = Arc::new(Semaphore::new(MAX_CONCURRENT_PROBES));
        let config = Arc::new(config);
        let mut health = fresh_health(&config, None);
        first_round(&prober, &slots, &config, &mut health).await;
        let now = Instant::now();
        let mut table = Table {
            config,
            zones: Arc::new(zones),
            health,
            drained: HashSet::new(),
            drained_flags: Vec::new(),
            generation: 0,
            epoch: 1,
            counters: HashMap::new(),
            published_usable: Vec::new(),
            load_dirty: false,
            last_publish: now,
        };
        table.refresh_drained();
        let snapshot = table.compile(now);
        let cell: SnapshotCell = Arc::new(ArcSwap::from_pointee(snapshot));
        let table = Arc::new(Mutex::new(table));
        let (tx, rx) = mpsc::unbounded_channel();
        let publisher = tokio::spawn(publish_loop(table.clone(), cell.clone(), rx));
        let monitor = Monitor {
            table,
            cell,
            prober,
            slots,
            reports: tx,
            probe_tasks: Mutex::new(Vec::new()),
            publisher,
        };
        monitor.spawn_probers();
        monitor
    }

    /// The cell the query path reads.
    pub fn cell(&self) -> SnapshotCell {
        self.cell.clone()
    }

    pub fn config(&self) -> Arc<Config> {
        self.table.lock().expect("table lock").config.clone()
    }

    /// Swaps in a new config and zones. Backends whose pool, address and probe are unchanged
    /// keep their health; new ones get one probe round before the new snapshot is published.
    pub async fn reload(&self, config: Config, zones: ZoneSet) {
        let config = Arc::new(config);
        let mut health = {
            let t = self.table.lock().expect("table lock");
            fresh_health(&config, Some((&t.config, &t.health)))
        };
        first_round(&self.prober, &self.slots, &config, &mut health).await;
        let snapshot = {
            let mut t = self.table.lock().expect("table lock");
            t.config = config;
            t.zones = Arc::new(zones);
            t.health = health;
            t.refresh_drained();
            t.epoch += 1;
            let names: HashSet<Name> = t.config.pools.iter().map(|p| p.name.clone()).collect();
            t.counters.retain(|n, _| names.contains(n));
            t.compile(Instant::now())
        };
        self.cell.store(Arc::new(snapshot));
        self.spawn_probers();
    }

    /// Takes a backend out of answers (or puts it back) regardless of health. Returns false if
    /// no such pool/backend exists.
    pub fn set_drained(&self, pool: &str, backend: &str, drained: bool) -> bool {
        let snapshot = {
            let mut t = self.table.lock().expect("table lock");
            let Some(key) = drain_key(&t.config, pool, backend) else {
                return false;
            };
            if drained {
                t.drained.insert(key);
            } else {
                t.drained.remove(&key);
            }
            t.refresh_drained();
            t.compile(Instant::now())
        };
        self.cell.store(Arc::new(snapshot));
        true
    }

    /// Replaces the whole drained set (used when restoring state at start).
    pub fn restore_drained(&self, drained: HashSet<(String, String)>) {
        let snapshot = {
            let mut t = self.table.lock().expect("table lock");
            t.drained = drained;
            t.refresh_drained();
            t.compile(Instant::now())
        };
        self.cell.store(Arc::new(snapshot));
    }

    pub fn drained(&self) -> HashSet<(String, String)> {
        self.table.lock().expect("table lock").drained.clone()
    }

    /// Whether a pool of this name (any case, final dot optional) is configured.
    pub fn has_pool(&self, pool: &str) -> bool {
        let t = self.table.lock().expect("table lock");
        t.config.pools.iter().any(|p| name_matches(&p.name, pool))
    }

    /// The drained-set key for `pool` (any case, final dot optional) and `backend` (its name
    /// or address) in the current config, or `None` if there is no such backend.
    pub fn drain_key(&self, pool: &str, backend: &str) -> Option<(String, String)> {
        drain_key(
            &self.table.lock().expect("table lock").config,
            pool,
            backend,
        )
    }

    /// The state of every pool and backend, for the status page.
    pub fn status(&self) -> Vec<PoolStatus> {
        let now = Instant::now();
        let snapshot = self.cell.load();
        let t = self.table.lock().expect("table lock");
        let usable = t.usable(now);
        t.config
            .pools
            .iter()
            .enumerate()
            .map(|(pi, p)| {
                // A reload may land between loading the snapshot and taking the lock; then
                // the index no longer names the same pool and the fields read as zero.
                let answer = snapshot.pools.get(pi).filter(|a| a.name == p.name);
                PoolStatus {
                    name: p.name.to_ascii(),
                    policy: p.policy.to_string(),
                    ttl: p.ttl,
                    all_down_v4: answer.is_some_and(|a| a.v4.all_down),
                    all_down_v6: answer.is_some_and(|a| a.v6.all_down),
                    answers: answer.map_or(0, |a| a.counter.load(Ordering::Relaxed) as u64),
                    backends: p
                        .backends
                        .iter()
                        .enumerate()
                        .map(|(bi, b)| {
                            let h = &t.health[pi][bi];
                            BackendStatus {
                                name: b.name.clone(),
                                address: b.address,
                                probe: b.probe.kind.to_string(),
                                state: h.state,
                                usable: usable[pi][bi],
                                drained: t.drained_flags[pi][bi],
                                load: h.load(),
                                last_probe_age: h
                                    .last
                                    .as_ref()
                                    .map(|(at, _)| now.saturating_duration_since(*at)),
                                last_result: h.last.as_ref().map(|(_, o)| o.detail.clone()),
                                last_ok: h.last.as_ref().map(|(_, o)| o.ok),
                                last_latency: h.last.as_ref().map(|(_, o)| o.latency),
                                flips: h.flips,
                                probes: h.probes.clone(),
                            }
                        })
                        .collect(),
                }
            })
            .collect()
    }

    /// Stops every probe and the publisher.
    pub fn stop(&self) {
        for t in self.probe_tasks.lock().expect("tasks lock").drain(..) {
            t.abort();
        }
        self.publisher.abort();
    }

    /// Replaces the prober tasks with one per probed backend of the current config.
    fn spawn_probers(&self) {
        let (config, epoch) = {
            let t = self.table.lock().expect("table lock");
            (t.config.clone(), t.epoch)
        };
        let mut tasks = self.probe_tasks.lock().expect("tasks lock");
        for t in tasks.drain(..) {
            t.abort();
        }
        for (pi, p) in config.pools.iter().enumerate() {
            for (bi, b) in p.backends.iter().enumerate() {
                if b.probe.kind == ProbeKind::None {
                    continue;
                }
                tasks.push(tokio::spawn(probe_loop(
                    self.prober.clone(),
                    self.slots.clone(),
                    b.probe.clone(),
                    b.address,
                    epoch,
                    pi,
                    bi,
                    self.reports.clone(),
                )));
            }
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop();
    }
}

/// See [`Monitor::drain_key`].
fn drain_key(config: &Config, pool: &str, backend: &str) -> Option<(String, String)> {
    let p = config.pools.iter().find(|p| name_matches(&p.name, pool))?;
    let b = p
        .backends
        .iter()
        .find(|b| b.name == backend || b.address.to_string() == backend)?;
    Some((p.name.to_ascii(), b.name.clone()))
}

fn name_matches(name: &Name, text: &str) -> bool {
    let mut a = name.to_ascii().to_ascii_lowercase();
    let mut b = text.to_ascii_lowercase();
    if !a.ends_with('.') {
        a.push('.');
    }
    if !b.ends_with('.') {
        b.push('.');
    }
    a == b
}

/// Initial health for `config`: carried over from `old` where pool, address and probe are the
/// same; `Up` for unprobed backends; `Unknown` otherwise.
fn fresh_health(config: &Config, old: Option<(&Config, &Vec<Vec<Health>>)>) -> Vec<Vec<Health>> {
    config
        .pools
        .iter()
        .map(|p| {
            p.backends
                .iter()
                .map(|b| {
                    if b.probe.kind == ProbeKind::None {
                        return Health::always_up();
                    }
                    old.and_then(|(oc, oh)| {
                        let pi = oc.pools.iter().position(|op| op.name == p.name)?;
                        let bi = oc.pools[pi]
                            .backends
                            .iter()
                            .position(|ob| ob.address == b.address && ob.probe == b.probe)?;
                        Some(oh[pi][bi].clone())
                    })
                    .unwrap_or_default()
                })
                .collect()
        })
        .collect()
}

/// Probes every backend still `Unknown`, all at once, and applies the results.
async fn first_round(
    prober: &Prober,
    slots: &Arc<Semaphore>,
    config: &Config,
    health: &mut [Vec<Health>],
) {
    let mut jobs = tokio::task::JoinSet::new();
    for (pi, p) in config.pools.iter().enumerate() {
        for (bi, b) in p.backends.iter().enumerate() {
            if health[pi][bi].state != State::Unknown {
                continue;
            }
            let prober = prober.clone();
            let slots = slots.clone();
            let probe = b.probe.clone();
            let address = b.address;
            jobs.spawn(async move {
                let _permit = slots.acquire_owned().await;
                let obs = prober
                    .probe(
                        &probe.kind,
                        address,
                        probe.timeout,
                        &mut ProbeState::default(),
                    )
                    .await;
                (pi, bi, obs)
            });
        }
    }
    while let Some(Ok((pi, bi, obs))) = jobs.join_next().await {
        let p = &config.pools[pi];
        let b = &p.backends[bi];
        if let Some(flip) = health[pi][bi].observe(Instant::now(), obs, b.probe.rise, b.probe.fall)
        {
            log_flip(&p.name, &b.name, b.address, &flip);
        }
    }
}

fn log_flip(pool: &Name, backend: &str, address: IpAddr, flip: &crate::health::Flip) {
    match flip.to {
        State::Down => tracing::warn!(
            pool = %pool, backend, %address, from = flip.from.as_str(), cause = %flip.cause,
            "backend down"
        ),
        _ => tracing::info!(
            pool = %pool, backend, %address, from = flip.from.as_str(), cause = %flip.cause,
            "backend up"
        ),
    }
}

/// Probes one backend forever on a fixed cadence: each start is `interval` plus a random part
/// of `jitter` after the previous start, whatever the probe took (timeout ≤ interval is
/// enforced by the config), which is what the detection bound assumes.
#[allow(clippy::too_many_arguments)]
async fn probe_loop(
    prober: Prober,
    slots: Arc<Semaphore>,
    probe: ProbeConfig,
    address: IpAddr,
    epoch: u64,
    pool: usize,
    backend: usize,
    reports: mpsc::UnboundedSender<Report>,
) {
    let mut next = tokio::time::Instant::now();
    let mut state = ProbeState::default();
    loop {
        let jitter = if probe.jitter.is_zero() {
            Duration::ZERO
        } else {
            rand::rng().random_range(Duration::ZERO..=probe.jitter)
        };
        next += probe.interval + jitter;
        tokio::time::sleep_until(next).await;
        let obs = {
            let _permit = slots.acquire().await;
            prober
                .probe(&probe.kind, address, probe.timeout, &mut state)
                .await
        };
        let report = Report {
            epoch,
            pool,
            backend,
            at: Instant::now(),
            obs,
        };
        if reports.send(report).is_err() {
            return;
        }
        // If probing fell behind (a long stall), restart the cadence from now rather than
        // firing a burst of catch-up probes.
        let now = tokio::time::Instant::now();
        if next + probe.interval < now {
            next = now;
        }
    }
}

/// Applies reports and republishes when the answers would change.
async fn publish_loop(
    table: Arc<Mutex<Table>>,
    cell: SnapshotCell,
    mut rx: mpsc::UnboundedReceiver<Report>,
) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let first = tokio::select! {
            r = rx.recv() => match r {
                Some(r) => Some(r),
                None => return,
            },
            _ = tick.tick() => None,
        };
        let ticked = first.is_none();
        let snapshot = {
            let mut t = table.lock().expect("table lock");
            let mut flipped = false;
            // Drain everything already queued so a burst of reports costs one compile.
            let mut next = first;
            while let Some(r) = next {
                flipped |= apply(&mut t, r);
                next = rx.try_recv().ok();
            }
            let now = Instant::now();
            // Staleness (byAge) is checked on the tick only: comparing every backend on every
            // report would cost O(backends) per probe.
            let stale_changed = ticked && t.usable(now) != t.published_usable;
            let load_due = t.load_dirty && now.duration_since(t.last_publish) >= LOAD_REPUBLISH;
            (flipped || stale_changed || load_due).then(|| t.compile(now))
        };
        if let Some(s) = snapshot {
            cell.store(Arc::new(s));
        }
    }
}

/// Applies one report; true if the backend flipped.
fn apply(t: &mut Table, r: Report) -> bool {
    if r.epoch != t.epoch {
        return false;
    }
    let p = &t.config.pools[r.pool];
    let b = &p.backends[r.backend];
    let h = &mut t.health[r.pool][r.backend];
    let old_load = (h.load(), h.lbcd());
    let flip = h.observe(r.at, r.obs, b.probe.rise, b.probe.fall);
    if (h.load(), h.lbcd()) != old_load {
        t.load_dirty = true;
    }
    match flip {
        Some(f) => {
            log_flip(&p.name, &b.name, b.address, &f);
            true
        }
        None => false,
    }
}
