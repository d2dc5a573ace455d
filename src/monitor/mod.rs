//! The probe side, as three parts with one-way flow:
//!
//! ```text
//! scheduler ──Observed──▶ health table ──verdicts──▶ publisher ──Snapshot──▶ query path
//! (when to probe)         (pure: obs + now → state)  (recompiles changed pools only)
//! ```
//!
//! [`Monitor`] composes them: it owns the model and zones in force, runs the loop that applies
//! observations and republishes — at once after a flip, at most every [`LOAD_REPUBLISH`] for
//! load changes, and on a [`TICK`] when a backend goes stale (byAge) — and takes drains and
//! reloads. The status view reads it through [`Monitor::inspect`]; it is not defined here.

pub(crate) mod health;
pub(crate) mod peers;
pub(crate) mod publisher;
mod reclaim;
pub(crate) mod scheduler;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::rr::Name;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::domain::{HealthState, Model};
use crate::snapshot::SnapshotCell;
use crate::zones::ZoneSet;
use health::{Flip, HealthTable, PeerView};
use peers::{Link, Received, WireView};
use publisher::{Change, Publisher};
use scheduler::{Observed, Scheduler};

/// Load-only changes (no flip) are published at most this often.
pub(crate) const LOAD_REPUBLISH: Duration = Duration::from_millis(500);
/// How often staleness (byAge) is re-evaluated without new observations.
pub(crate) const TICK: Duration = Duration::from_millis(100);

/// The model in force, its health, and what was published from them; behind one lock held
/// only briefly.
struct Inner {
    model: Arc<Model>,
    table: HealthTable,
    publisher: Publisher,
    /// Observations of another epoch were made under a replaced model and are dropped.
    epoch: u64,
    /// How the status page names each backend's probe, indexed like the model.
    probes: Vec<Vec<String>>,
    /// Pools whose loads changed since they were last compiled.
    load_dirty: BTreeSet<usize>,
    /// Per pool, when its verdicts can next change with no new observation (a backend going
    /// stale or overdue, see [`HealthTable::pool_deadline`]): the tick recompiles only pools
    /// past theirs, and those in `in_doubt`.
    deadlines: Vec<Instant>,
    /// Pools where an observation failed or ended a run of failures since the last tick: their
    /// adaptive TTL changes with time from now on, whatever their deadline says.
    in_doubt: BTreeSet<usize>,
    last_load_publish: Instant,
    /// (lowercased pool name, address) → (pool, backend), to place peers' views.
    backends: HashMap<(String, IpAddr), (usize, usize)>,
    /// With peers: whether none was heard within `peer_max_age` at the last tick.
    alone: bool,
    /// Told the drain version whenever a peer's drained set is taken, so control saves it.
    drains_changed: watch::Sender<u64>,
}

/// One peer as the status page shows it.
#[derive(Debug, Clone)]
pub(crate) struct PeerStatus {
    /// The peer's cluster address.
    pub(crate) address: SocketAddr,
    /// How long ago its last message was taken.
    pub(crate) last_heard: Option<Duration>,
    /// Messages taken from it.
    pub(crate) received: u64,
    /// Datagrams from it refused.
    pub(crate) rejected: u64,
}

/// A read-only look at the probe side, for the status view.
pub(crate) struct Inspect<'a> {
    /// The model in force.
    pub(crate) model: &'a Model,
    /// Health and drains, indexed like the model.
    pub(crate) table: &'a HealthTable,
    /// Each backend's probe, as [`crate::probe::Probe::describe`] names it (`none` if unprobed).
    pub(crate) probes: &'a [Vec<String>],
    /// The peers, indexed as in the table's peer views (empty without `[cluster]`).
    pub(crate) peers: Vec<PeerStatus>,
    /// The time the table is read at.
    pub(crate) now: Instant,
}

/// Owns the scheduler, the health table and the publisher.
pub(crate) struct Monitor {
    inner: Arc<Mutex<Inner>>,
    cell: SnapshotCell,
    scheduler: Scheduler,
    observed: mpsc::UnboundedSender<Observed>,
    applier: Mutex<Option<JoinHandle<()>>>,
    link: Option<Arc<Link>>,
    receiver: Mutex<Option<JoinHandle<()>>>,
    drains_changed: watch::Receiver<u64>,
}

impl Monitor {
    /// Runs one probe round (bounded by the probes' timeouts) so that no known-dead backend is
    /// ever answered, publishes the first snapshot, then starts probing on schedule.
    ///
    /// With peers (`link`), it also takes their current views and drains first: it listens
    /// while its own round runs and then until every peer was heard, or two exchange
    /// intervals, so a restarted instance answers with the cluster's view at once.
    pub(crate) async fn start(model: Model, zones: ZoneSet, link: Option<Link>) -> Monitor {
        let scheduler = Scheduler::new();
        let mut table = HealthTable::new(&model, None);
        let link = link.map(Arc::new);
        let (peer_tx, mut peer_rx) = mpsc::unbounded_channel();
        let receiver = link.clone().map(|l| {
            tokio::spawn(async move {
                l.receive(peer_tx).await;
            })
        });
        let seen = scheduler.first_round(&model, &table).await;
        apply_round(&model, &mut table, seen);
        let backends = backend_index(&model);
        let (drains_tx, drains_rx) = watch::channel(0);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let probes = scheduler.start(&model, 1, &tx);
        if let (Some(l), Some(c)) = (&link, &model.cluster) {
            // Probing and telling the peers go on meanwhile: every instance of a cluster that
            // starts at once waits like this one.
            let deadline = Instant::now() + c.exchange_interval * 2;
            let mut send = tokio::time::interval(c.exchange_interval);
            let mut heard = vec![false; l.peers.len()];
            while heard.contains(&false) {
                tokio::select! {
                    Some(r) = peer_rx.recv() => {
                        heard[r.peer] = true;
                        if apply_peer(&model, &backends, &mut table, r) {
                            drains_tx.send_replace(table.drain_version());
                        }
                    }
                    Some(o) = rx.recv() => {
                        table.observe(&model, o.pool, o.backend, o.at, o.obs);
                    }
                    _ = send.tick() => {
                        let (version, drains, views) = own_views(&model, &table);
                        l.send(version, drains, views);
                    }
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
            let n = heard.iter().filter(|h| **h).count();
            tracing::info!(
                heard = n,
                peers = heard.len(),
                "took the peers' views before answering"
            );
        }
        let now = Instant::now();
        let publisher = Publisher::new(&model, Arc::new(zones), table.verdicts(&model, now));
        let cell = publisher.cell().clone();
        let model = Arc::new(model);
        let inner = Arc::new(Mutex::new(Inner {
            model: model.clone(),
            table,
            publisher,
            epoch: 1,
            probes,
            load_dirty: BTreeSet::new(),
            deadlines: vec![now; model.pools.len()],
            in_doubt: BTreeSet::new(),
            last_load_publish: now,
            backends,
            alone: false,
            drains_changed: drains_tx,
        }));
        let applier = tokio::spawn(apply_loop(inner.clone(), rx, peer_rx, link.clone()));
        Monitor {
            inner,
            cell,
            scheduler,
            observed: tx,
            applier: Mutex::new(Some(applier)),
            link,
            receiver: Mutex::new(receiver),
            drains_changed: drains_rx,
        }
    }

    /// Changes to the drained set that came from a peer (the value is its version): control
    /// saves them to the state file.
    pub(crate) fn drains_changed(&self) -> watch::Receiver<u64> {
        self.drains_changed.clone()
    }

    /// The cell the query path reads.
    pub(crate) fn cell(&self) -> SnapshotCell {
        self.cell.clone()
    }

    /// Swaps in a new model and zones. Backends whose pool, address and probe are unchanged
    /// keep their health and their running probe; new ones get one probe round before the new
    /// snapshot is published. Pools unchanged, with unchanged verdicts, keep their compiled
    /// answers.
    pub(crate) async fn reload(&self, model: Model, zones: ZoneSet) {
        // Which backends the round must probe: those whose health would not carry over.
        let carried = {
            let i = self.lock();
            HealthTable::new(&model, Some((&i.model, &i.table)))
        };
        let seen = self.scheduler.first_round(&model, &carried).await;
        drop(carried);
        let model = Arc::new(model);
        let mut guard = self.lock();
        let i = &mut *guard;
        // Carried over again, now: what the kept probes saw while the round ran, and drains
        // made meanwhile, are in the table in force.
        let mut table = HealthTable::new(&model, Some((&i.model, &i.table)));
        apply_round(&model, &mut table, seen);
        i.backends = backend_index(&model);
        let verdicts = table.verdicts(&model, Instant::now());
        i.publisher
            .replace(Some(&i.model), &model, Some(Arc::new(zones)), verdicts);
        i.model = model.clone();
        i.table = table;
        i.load_dirty.clear();
        i.deadlines = vec![Instant::now(); model.pools.len()];
        i.in_doubt.clear();
        i.epoch += 1;
        // Under the lock, so the status page never names the old probes of the new model, and
        // no observation of a kept probe is tagged with the new epoch but old indexes.
        i.probes = self.scheduler.start(&model, i.epoch, &self.observed);
    }

    /// Takes a backend out of answers (or puts it back) regardless of health. `pool` and
    /// `backend` are the names [`Monitor::drain_key`] gives. Returns false if there is no such
    /// backend in the model in force.
    pub(crate) fn set_drained(&self, pool: &str, backend: &str, drained: bool) -> bool {
        let mut guard = self.lock();
        let i = &mut *guard;
        let Some((pi, _)) = locate(&i.model, pool, backend) else {
            return false;
        };
        i.table.set_drained(
            &i.model,
            (pool.to_owned(), backend.to_owned()),
            drained,
            peers::now_ms(),
        );
        let verdicts = i.table.pool_verdicts(&i.model, pi, Instant::now());
        i.publisher
            .update(&i.model, [(pi, verdicts)], Change::Usable);
        true
    }

    /// Takes the drained set saved in the state file at start, unless peers already gave a
    /// newer one.
    pub(crate) fn restore_drained(&self, drained: HashSet<(String, String)>, version: u64) {
        let mut guard = self.lock();
        let i = &mut *guard;
        if i.table.drain_version() > version {
            return;
        }
        i.table.replace_drained(&i.model, drained, version);
        let now = Instant::now();
        let verdicts: Vec<_> = (0..i.model.pools.len())
            .map(|pi| (pi, i.table.pool_verdicts(&i.model, pi, now)))
            .collect();
        i.publisher.update(&i.model, verdicts, Change::Usable);
    }

    /// Whether this instance has peers (`[cluster]`).
    pub(crate) fn has_peers(&self) -> bool {
        self.link.is_some()
    }

    /// The drained set's version (see the health table).
    pub(crate) fn drain_version(&self) -> u64 {
        self.lock().table.drain_version()
    }

    /// The drained set, by (pool name, backend name).
    pub(crate) fn drained(&self) -> HashSet<(String, String)> {
        self.lock().table.drained().clone()
    }

    /// Whether a pool of this name (any case, final dot optional) is configured.
    pub(crate) fn has_pool(&self, pool: &str) -> bool {
        self.lock().model.find_pool(pool).is_some()
    }

    /// The drained-set key for `pool` (any case, final dot optional) and `backend` (its name
    /// or address) in the model in force, or `None` if there is no such backend.
    pub(crate) fn drain_key(&self, pool: &str, backend: &str) -> Option<(String, String)> {
        let i = self.lock();
        let (pi, bi) = locate(&i.model, pool, backend)?;
        let p = &i.model.pools[pi];
        Some((p.name.to_ascii(), p.backends[bi].name.clone()))
    }

    /// Runs `f` on a consistent view of the model, health table and probes (under the lock:
    /// keep `f` short).
    pub(crate) fn inspect<R>(&self, f: impl FnOnce(&Inspect<'_>) -> R) -> R {
        let i = self.lock();
        let now = Instant::now();
        let peers = self.link.as_ref().map_or(Vec::new(), |l| {
            l.peers
                .iter()
                .zip(&l.stats)
                .map(|(a, s)| PeerStatus {
                    address: *a,
                    last_heard: s
                        .last_heard
                        .lock()
                        .expect("peer stats lock")
                        .map(|t| now.saturating_duration_since(t)),
                    received: s.received.load(std::sync::atomic::Ordering::Relaxed),
                    rejected: s.rejected.load(std::sync::atomic::Ordering::Relaxed),
                })
                .collect()
        });
        f(&Inspect {
            model: &i.model,
            table: &i.table,
            probes: &i.probes,
            peers,
            now,
        })
    }

    /// Stops every probe and the loop that applies their observations.
    pub(crate) fn stop(&self) {
        self.scheduler.stop();
        for task in [&self.applier, &self.receiver] {
            if let Some(t) = task.lock().expect("task lock").as_ref() {
                t.abort();
            }
        }
    }

    /// Stops as [`Monitor::stop`] does and waits until the stopped tasks are gone, so the
    /// sockets they held (the peers' one) are closed and can be bound again.
    pub(crate) async fn stopped(&self) {
        self.stop();
        let tasks: Vec<JoinHandle<()>> = [&self.applier, &self.receiver]
            .into_iter()
            .filter_map(|t| t.lock().expect("task lock").take())
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("monitor lock")
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Pool and backend indexes of `pool` (any case, final dot optional) and `backend` (a name or
/// an address) in `model`.
fn locate(model: &Model, pool: &str, backend: &str) -> Option<(usize, usize)> {
    let (pi, p) = model.find_pool(pool)?;
    let bi = p
        .backends
        .iter()
        .position(|b| b.name == backend || b.address.to_string() == backend)?;
    Some((pi, bi))
}

/// Applies what a first round (see [`Scheduler::first_round`]) saw.
fn apply_round(model: &Model, table: &mut HealthTable, seen: Vec<Observed>) {
    for o in seen {
        if let Some(flip) = table.observe(model, o.pool, o.backend, o.at, o.obs) {
            let p = &model.pools[o.pool];
            let b = &p.backends[o.backend];
            log_flip(&p.name, &b.name, b.address, &flip);
        }
    }
}

fn log_flip(pool: &Name, backend: &str, address: IpAddr, flip: &Flip) {
    match flip.to {
        HealthState::Down => tracing::warn!(
            pool = %pool, backend, %address, from = flip.from.as_str(), cause = %flip.cause,
            "backend down"
        ),
        _ => tracing::info!(
            pool = %pool, backend, %address, from = flip.from.as_str(), cause = %flip.cause,
            "backend up"
        ),
    }
}

/// Applies observations and republishes when the answers would change.
async fn apply_loop(
    inner: Arc<Mutex<Inner>>,
    mut rx: mpsc::UnboundedReceiver<Observed>,
    mut peer_rx: mpsc::UnboundedReceiver<Received>,
    link: Option<Arc<Link>>,
) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let exchange = inner
        .lock()
        .expect("monitor lock")
        .model
        .cluster
        .as_ref()
        .map_or(Duration::from_secs(3600), |c| c.exchange_interval);
    let mut send = tokio::time::interval(exchange);
    send.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let first = tokio::select! {
            r = rx.recv() => match r {
                Some(r) => Some(r),
                None => return,
            },
            Some(r) = peer_rx.recv() => {
                // Peers' views take effect at the next tick, which looks at every pool.
                let mut guard = inner.lock().expect("monitor lock");
                let i = &mut *guard;
                if apply_peer(&i.model, &i.backends, &mut i.table, r) {
                    i.drains_changed.send_replace(i.table.drain_version());
                    let now = Instant::now();
                    let verdicts: Vec<_> = (0..i.model.pools.len())
                        .map(|pi| (pi, i.table.pool_verdicts(&i.model, pi, now)))
                        .collect();
                    i.publisher.update(&i.model, verdicts, Change::Usable);
                }
                continue;
            }
            _ = send.tick(), if link.is_some() => {
                if let Some(l) = &link {
                    let (version, drains, views) = {
                        let i = inner.lock().expect("monitor lock");
                        own_views(&i.model, &i.table)
                    };
                    l.send(version, drains, views);
                }
                continue;
            }
            _ = tick.tick() => None,
        };
        let ticked = first.is_none();
        let mut guard = inner.lock().expect("monitor lock");
        let i = &mut *guard;
        if ticked && let Some(l) = &link {
            let alone = l.fresh_peers(Instant::now()) == 0;
            if alone != i.alone {
                i.alone = alone;
                if alone {
                    tracing::warn!(
                        "no peer heard within peer_max_age: deciding from this instance's probes alone"
                    );
                } else {
                    tracing::info!("peers heard again: deciding by quorum");
                }
            }
        }
        let mut flipped = BTreeSet::new();
        // Drain everything already queued so a burst of observations costs one compile.
        let mut next = first;
        while let Some(o) = next {
            apply(i, o, &mut flipped);
            next = rx.try_recv().ok();
        }
        let now = Instant::now();
        if !flipped.is_empty() {
            let verdicts: Vec<_> = flipped
                .iter()
                .map(|&pi| (pi, i.table.pool_verdicts(&i.model, pi, now)))
                .collect();
            i.publisher.update(&i.model, verdicts, Change::Usable);
        }
        if !i.load_dirty.is_empty() && now.duration_since(i.last_load_publish) >= LOAD_REPUBLISH {
            let dirty = std::mem::take(&mut i.load_dirty);
            let verdicts: Vec<_> = dirty
                .into_iter()
                .map(|pi| (pi, i.table.pool_verdicts(&i.model, pi, now)))
                .collect();
            i.publisher.update(&i.model, verdicts, Change::Any);
            i.last_load_publish = now;
        }
        // Staleness (byAge) and the adaptive TTL's countdown are checked on the tick only:
        // comparing every backend on every observation would cost O(backends) per probe. And
        // only in pools where time can have changed something: at 10,000 backends, looking at
        // every pool ten times a second was most of what the probe side cost beyond the
        // probes themselves.
        if ticked {
            let in_doubt = std::mem::take(&mut i.in_doubt);
            let due: Vec<usize> = (0..i.model.pools.len())
                .filter(|pi| i.deadlines[*pi] <= now || in_doubt.contains(pi))
                .collect();
            let verdicts: Vec<_> = due
                .iter()
                .map(|&pi| (pi, i.table.pool_verdicts(&i.model, pi, now)))
                .collect();
            for &pi in &due {
                i.deadlines[pi] = i.table.pool_deadline(&i.model, pi, now);
            }
            log_stale(i, &verdicts, now);
            i.publisher.update(&i.model, verdicts, Change::Usable);
        }
    }
}

/// (lowercased pool name, address) → (pool, backend) of `model`.
fn backend_index(model: &Model) -> HashMap<(String, IpAddr), (usize, usize)> {
    let mut index = HashMap::new();
    for (pi, p) in model.pools.iter().enumerate() {
        let name = p.name.to_ascii().to_ascii_lowercase();
        for (bi, b) in p.backends.iter().enumerate() {
            index.insert((name.clone(), b.address), (pi, bi));
        }
    }
    index
}

/// Applies a peer's message: its views of the backends this instance also has, and its
/// drained set if newer. True if the drained set was taken.
fn apply_peer(
    model: &Model,
    backends: &HashMap<(String, IpAddr), (usize, usize)>,
    table: &mut HealthTable,
    r: Received,
) -> bool {
    for peers::WireView(pool, address, state, load, age_ms) in &r.message.views {
        let (Ok(address), Some(state)) = (address.parse::<IpAddr>(), peers::Message::state(state))
        else {
            continue;
        };
        let Some(&(pi, bi)) = backends.get(&(pool.to_ascii_lowercase(), address)) else {
            continue;
        };
        let at =
            r.at.checked_sub(Duration::from_millis(*age_ms))
                .unwrap_or(r.at);
        table.set_peer_view(
            pi,
            bi,
            r.peer,
            PeerView {
                state,
                load: *load,
                at,
                heard: r.at,
            },
        );
    }
    let version = r.message.drain_version;
    version > 0 && table.adopt_drains(model, r.message.drained_set(), version)
}

/// What this instance tells its peers: its drained set and its own view of every probed
/// backend it has a view of.
fn own_views(model: &Model, table: &HealthTable) -> (u64, Vec<(String, String)>, Vec<WireView>) {
    let now = Instant::now();
    let mut views = Vec::new();
    for (pi, p) in model.pools.iter().enumerate() {
        let name = p.name.to_ascii();
        for (bi, b) in p.backends.iter().enumerate() {
            if b.probe.is_none() {
                continue;
            }
            let Some(up) = table.own_view(model, pi, bi, now) else {
                continue;
            };
            let h = table.health(pi, bi);
            let age = h.last.as_ref().map_or(0, |(at, _)| {
                now.saturating_duration_since(*at).as_millis() as u64
            });
            views.push(WireView(
                name.clone(),
                b.address.to_string(),
                if up { "up" } else { "down" }.to_owned(),
                h.load(),
                age,
            ));
        }
    }
    let mut drains: Vec<(String, String)> = table.drained().iter().cloned().collect();
    drains.sort();
    (table.drain_version(), drains, views)
}

/// Logs each backend that byAge takes out of answers (up, not drained, but its last good
/// probe older than `max_age`), once, like a flip.
fn log_stale(i: &Inner, verdicts: &[(usize, Vec<crate::domain::Verdict>)], now: Instant) {
    for (pi, new) in verdicts {
        let published = i.publisher.published(*pi);
        for (bi, (was, is)) in published.iter().zip(new).enumerate() {
            let h = i.table.health(*pi, bi);
            if was.usable
                && !is.usable
                && h.state == HealthState::Up
                && !i.table.is_drained(*pi, bi)
            {
                let p = &i.model.pools[*pi];
                let b = &p.backends[bi];
                let age = h.last_ok.map(|t| now.saturating_duration_since(t));
                tracing::warn!(
                    pool = %p.name,
                    backend = %b.name,
                    address = %b.address,
                    from = "up",
                    cause = %format!(
                        "no successful probe for {} (max_age {})",
                        age.map_or("ever".to_owned(), |a| humantime::format_duration(
                            Duration::from_millis(a.as_millis() as u64)
                        )
                        .to_string()),
                        humantime::format_duration(p.max_age)
                    ),
                    "backend stale"
                );
            }
        }
    }
}

/// Applies one observation: logs a flip and notes which pools need a look.
fn apply(i: &mut Inner, o: Observed, flipped: &mut BTreeSet<usize>) {
    if o.epoch != i.epoch {
        return;
    }
    let h = i.table.health(o.pool, o.backend);
    let old_load = (h.load(), h.lbcd());
    let was_ok = h.last_ok_result();
    let ok = o.obs.ok;
    let flip = i.table.observe(&i.model, o.pool, o.backend, o.at, o.obs);
    let h = i.table.health(o.pool, o.backend);
    if (h.load(), h.lbcd()) != old_load {
        i.load_dirty.insert(o.pool);
    }
    // A failure puts an up backend in doubt (its TTL counts down from now on); a success after
    // failures ends it. Neither moves the pool's deadline, so the next tick looks at it.
    if !ok || was_ok == Some(false) {
        i.in_doubt.insert(o.pool);
    }
    if let Some(f) = flip {
        let p = &i.model.pools[o.pool];
        let b = &p.backends[o.backend];
        log_flip(&p.name, &b.name, b.address, &f);
        flipped.insert(o.pool);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model_of(text: &str) -> Model {
        Model::new(&crate::config::Config::parse(text, std::path::Path::new("t.toml")).unwrap())
    }

    /// A config of the pools given, each a `[[pool]]` body.
    fn config(pools: &[String]) -> String {
        let mut text = "[[zone]]\norigin = \"example.\"\nfile = \"example.zone\"\n".to_owned();
        for p in pools {
            text.push_str(&format!("\n[[pool]]\n{p}"));
        }
        text
    }

    /// A pool of one backend, 127.0.0.1, probed by TCP at `port` every `interval`.
    fn pool(name: &str, ttl: u32, port: u16, interval: &str) -> String {
        format!(
            "name = \"{name}.example.\"\nttl = {ttl}\nbackends = [\"127.0.0.1\"]\n\
             probe = {{ kind = \"tcp\", port = {port}, interval = \"{interval}\", timeout = \"500ms\", jitter = \"0s\" }}\n"
        )
    }

    /// Probes done and flips of backend 0 of pool `pool`, as the table in force counts them.
    fn probed(m: &Monitor, pool: usize) -> (u64, u64, HealthState) {
        m.inspect(|v| {
            let h = v.table.health(pool, 0);
            (h.probes.ok + h.probes.failed, h.flips, h.state)
        })
    }

    #[tokio::test]
    async fn a_reload_keeps_what_did_not_change() {
        // Three backends that accept (the kernel completes the handshake; nobody need accept).
        let mut ports = Vec::new();
        let mut listeners = Vec::new();
        for _ in 0..3 {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            ports.push(l.local_addr().unwrap().port());
            listeners.push(l);
        }
        let (pa, pb, pc) = (ports[0], ports[1], ports[2]);
        let name = |n: &str| Name::from_ascii(format!("{n}.example.")).unwrap();
        let localhost: IpAddr = "127.0.0.1".parse().unwrap();
        // `a` is probed every second, `b` every ten minutes (so never again in this test).
        let first = model_of(&config(&[
            pool("a", 5, pa, "1s"),
            pool("b", 3600, pb, "600s"),
        ]));
        let m = Monitor::start(first, ZoneSet::default(), None).await;
        let before = m.cell().load_full();
        assert_eq!(probed(&m, 1), (1, 1, HealthState::Up), "b: its first round");
        before.pools[0].next_rotation();
        before.pools[0].next_rotation();
        before.pools[1].next_rotation();
        let a_task = m.scheduler.tag(&name("a"), localhost).unwrap();
        let b_task = m.scheduler.tag(&name("b"), localhost).unwrap();

        // `c` is new and comes first, so `a` and `b` move; `b`'s TTL changes, its probe does not.
        let second = model_of(&config(&[
            pool("c", 3600, pc, "600s"),
            pool("a", 5, pa, "1s"),
            pool("b", 1800, pb, "600s"),
        ]));
        m.reload(second, ZoneSet::default()).await;
        let after = m.cell().load_full();
        assert!(after.generation > before.generation);

        // `a`: the same compiled answer, counter and all, and the same probe task, retagged.
        assert!(
            Arc::ptr_eq(&before.pools[0], &after.pools[1]),
            "a recompiled"
        );
        assert_eq!(after.pools[1].next_rotation(), 2);
        let a_again = m.scheduler.tag(&name("a"), localhost).unwrap();
        assert!(Arc::ptr_eq(&a_task, &a_again), "a's probe task restarted");
        let epoch = m.lock().epoch;
        assert_eq!(
            *a_again.lock().unwrap(),
            scheduler::Tag {
                epoch,
                pool: 1,
                backend: 0
            }
        );
        // `b`: recompiled with its new TTL, its rotation carried over; its health carried
        // over without a probe (the only one is still the start's), its task kept.
        assert!(!Arc::ptr_eq(&before.pools[1], &after.pools[2]), "b reused");
        assert_eq!(after.pools[2].v4.ttl, 1800);
        assert_eq!(after.pools[2].next_rotation(), 1);
        assert_eq!(probed(&m, 2), (1, 1, HealthState::Up), "b was probed again");
        let b_again = m.scheduler.tag(&name("b"), localhost).unwrap();
        assert!(Arc::ptr_eq(&b_task, &b_again), "b's probe task restarted");
        // `c`: probed once before the snapshot that has it was published.
        assert_eq!(probed(&m, 0), (1, 1, HealthState::Up), "c: its first round");
        assert_eq!(after.pools[0].v4.addrs, [localhost]);

        // The kept task of `a` reports under the new model: its probes count up at index 1.
        let (n, flips, _) = probed(&m, 1);
        let deadline = Instant::now() + Duration::from_secs(5);
        while probed(&m, 1).0 == n {
            assert!(Instant::now() < deadline, "a's kept probe reported nothing");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(probed(&m, 1).1, flips, "a flipped");

        // A probe that changes gets a task of its own and a first round.
        let third = model_of(&config(&[
            pool("c", 3600, pc, "600s"),
            pool("a", 5, pa, "1s"),
            pool("b", 1800, pa, "600s"),
        ]));
        m.reload(third, ZoneSet::default()).await;
        let b_new = m.scheduler.tag(&name("b"), localhost).unwrap();
        assert!(
            !Arc::ptr_eq(&b_task, &b_new),
            "b's changed probe kept its task"
        );
        assert_eq!(
            probed(&m, 2),
            (1, 1, HealthState::Up),
            "b's new probe: one round"
        );
        m.stopped().await;
        drop(listeners);
    }
}
