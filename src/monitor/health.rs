//! The health-and-drain table: observations in, verdicts out. Per backend, the state machine
//! from probe observations to up/down with rise/fall hysteresis and byAge staleness
//! (mod_backhand); per table, the operator's drained set. Pure: time is passed in as a value,
//! so the same observations at the same times give the same verdicts on every instance.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use hickory_proto::rr::LowerName;
use tokio::time::Instant;

use crate::config::Quorum;
use crate::domain::{Backend, HealthState, LbcdWeight, Model, Observation, ProbeSpec, Verdict};

/// Health of one backend over time.
#[derive(Debug, Clone)]
pub(crate) struct Health {
    pub(crate) state: HealthState,
    /// Consecutive results agreeing with each other, for rise/fall.
    successes: u32,
    failures: u32,
    /// The latest observation and when it was made.
    pub(crate) last: Option<(Instant, Observation)>,
    /// When the latest successful probe was made.
    pub(crate) last_ok: Option<Instant>,
    /// State changes so far.
    pub(crate) flips: u64,
    /// Every probe result so far, for `/metrics`.
    pub(crate) probes: ProbeStats,
}

/// Upper bounds (seconds) of the probe latency histogram buckets: sub-millisecond loopback
/// answers up to the longest timeout the failover bound allows in practice.
pub(crate) const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Counts of probe results and a latency histogram (Prometheus style, not cumulative here).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ProbeStats {
    pub(crate) ok: u64,
    pub(crate) failed: u64,
    /// `buckets[i]` counts probes with latency in `(LATENCY_BUCKETS[i-1], LATENCY_BUCKETS[i]]`;
    /// slower ones are only in the total (`ok + failed`).
    pub(crate) buckets: [u64; LATENCY_BUCKETS.len()],
    pub(crate) latency_sum: Duration,
}

impl ProbeStats {
    /// Counts one probe result.
    pub(crate) fn add(&mut self, obs: &Observation) {
        if obs.ok {
            self.ok += 1;
        } else {
            self.failed += 1;
        }
        let secs = obs.latency.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|&b| secs <= b) {
            self.buckets[i] += 1;
        }
        self.latency_sum += obs.latency;
    }

    /// Probes counted, successful or not.
    pub(crate) fn count(&self) -> u64 {
        self.ok + self.failed
    }
}

/// A change of state, to log once.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Flip {
    pub(crate) from: HealthState,
    pub(crate) to: HealthState,
    /// The observation's detail that caused it.
    pub(crate) cause: String,
}

impl Default for Health {
    fn default() -> Self {
        Health::new()
    }
}

impl Health {
    /// Not probed yet.
    pub(crate) fn new() -> Health {
        Health {
            state: HealthState::Unknown,
            successes: 0,
            failures: 0,
            last: None,
            last_ok: None,
            flips: 0,
            probes: ProbeStats::default(),
        }
    }

    /// A backend that is never probed (kind `none`).
    pub(crate) fn always_up() -> Health {
        Health {
            state: HealthState::Up,
            ..Health::new()
        }
    }

    /// Applies one observation. From Unknown the first result decides at once (at start a
    /// known-dead backend must not wait `rise` rounds to be excluded, nor a good one to be
    /// included); after that `rise` successes bring a backend up and `fall` failures take it
    /// down.
    pub(crate) fn observe(
        &mut self,
        now: Instant,
        obs: Observation,
        rise: u32,
        fall: u32,
    ) -> Option<Flip> {
        self.probes.add(&obs);
        if obs.ok {
            self.successes += 1;
            self.failures = 0;
            self.last_ok = Some(now);
        } else {
            self.failures += 1;
            self.successes = 0;
        }
        let next = match (self.state, obs.ok) {
            (HealthState::Unknown, true) => HealthState::Up,
            (HealthState::Unknown, false) => HealthState::Down,
            (HealthState::Down, true) if self.successes >= rise => HealthState::Up,
            (HealthState::Up, false) if self.failures >= fall => HealthState::Down,
            (s, _) => s,
        };
        if next == self.state {
            self.last = Some((now, obs));
            return None;
        }
        // The cause is copied only for a flip: most observations change nothing.
        let flip = Flip {
            from: self.state,
            to: next,
            cause: obs.detail.clone(),
        };
        self.last = Some((now, obs));
        self.state = next;
        self.flips += 1;
        Some(flip)
    }

    /// Up and its last good report is no older than `max_age` (byAge).
    pub(crate) fn usable(&self, now: Instant, max_age: Duration) -> bool {
        self.state == HealthState::Up
            && self
                .last_ok
                .is_none_or(|t| now.saturating_duration_since(t) <= max_age)
    }

    /// For a usable backend in doubt, the whole seconds (rounded down) until it can be
    /// declared down; `None` while it is not in doubt. In doubt: its latest probe failed
    /// (`fall - failures` more failures, each up to `interval + jitter` after the previous
    /// start, the last taking up to `timeout`), or a result is overdue (no probe has ended
    /// within `interval + jitter + timeout` of the last one, so byAge will remove it at
    /// `last_ok + max_age`).
    pub(crate) fn seconds_left(
        &self,
        now: Instant,
        spec: &ProbeSpec,
        max_age: Duration,
    ) -> Option<u32> {
        let (at, obs) = self.last.as_ref()?;
        let t = spec.timing;
        let stale_at = self.last_ok.map(|ok| ok + max_age);
        let deadline = if !obs.ok && self.state == HealthState::Up {
            // The failed probe started `latency` before it ended; the next starts are due on
            // the schedule from there.
            let started = at.checked_sub(obs.latency).unwrap_or(*at);
            let left = t.fall.saturating_sub(self.failures).max(1);
            let fall_at = started + (t.interval + t.jitter) * left + t.timeout;
            Some(stale_at.map_or(fall_at, |s| s.min(fall_at)))
        } else if now.saturating_duration_since(*at) > t.interval + t.jitter + t.timeout {
            stale_at
        } else {
            None
        }?;
        let left = deadline.saturating_duration_since(now).as_secs();
        Some(left.min(u64::from(u32::MAX)) as u32)
    }

    /// Whether the latest probe succeeded; `None` before the first.
    pub(crate) fn last_ok_result(&self) -> Option<bool> {
        self.last.as_ref().map(|(_, o)| o.ok)
    }

    /// The latest reported load, if the probe reports one.
    pub(crate) fn load(&self) -> Option<f64> {
        self.last.as_ref().and_then(|(_, o)| o.load)
    }

    /// lbcd's latest weight, if the probe is lbcd.
    pub(crate) fn lbcd(&self) -> Option<LbcdWeight> {
        self.last.as_ref().and_then(|(_, o)| o.lbcd)
    }
}

/// The health of every backend of a [`Model`] and the operator's drained set, indexed like the
/// model's pools and backends.
#[derive(Debug, Clone, Default)]
pub(crate) struct HealthTable {
    rows: Vec<Vec<Health>>,
    /// (pool name, backend name) taken out of answers by an operator. Kept by name, so a
    /// backend removed by one reload and added back by the next is still drained.
    drained: HashSet<(String, String)>,
    /// `drained` resolved against the model, indexed like `rows`.
    drained_flags: Vec<Vec<bool>>,
    /// When the drained set last changed (milliseconds since the Unix epoch, on the instance
    /// that changed it): across peers the newest set wins.
    drain_version: u64,
    /// With peers: per backend, each peer's latest view (indexed like the model's peers).
    peer_views: Vec<Vec<Vec<Option<PeerView>>>>,
}

/// One peer's view of one backend, as its latest message said.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PeerView {
    /// The peer's own state of the backend (its rise/fall over its own probes).
    pub(crate) state: HealthState,
    /// The load the peer's probe last reported.
    pub(crate) load: Option<f64>,
    /// When the peer made the observation, on this instance's clock: orders views.
    pub(crate) at: Instant,
    /// When the message carrying it was taken: a view counts while it is repeated within
    /// `peer_max_age`. Not `at`: a peer repeats an unchanged observation until its next probe,
    /// up to interval + jitter + one exchange later (1.7 s with the defaults), so dating
    /// freshness by the observation would let a live peer's view lapse between two probes
    /// and, with `majority`, turn the other views into a tie (down).
    pub(crate) heard: Instant,
}

/// Whether the views (`true` = up) make a backend up under `quorum`. No view: not up.
pub(crate) fn quorum_up(up: usize, views: usize, quorum: Quorum) -> bool {
    views > 0
        && match quorum {
            Quorum::Majority => up * 2 > views,
            Quorum::AtLeast(k) => up >= k.min(views),
        }
}

impl HealthTable {
    /// The table for `model`: health carried over from `old` (with its model) where pool,
    /// address and probe are the same; `Up` for unprobed backends; `Unknown` otherwise. The
    /// drained set is kept.
    pub(crate) fn new(model: &Model, old: Option<(&Model, &HealthTable)>) -> HealthTable {
        // The old model's pools by name: looking each one up by a scan would be quadratic.
        let old_pools: HashMap<LowerName, usize> = old.map_or_else(HashMap::new, |(om, _)| {
            om.pools
                .iter()
                .enumerate()
                .map(|(i, p)| (LowerName::new(&p.name), i))
                .collect()
        });
        let rows = model
            .pools
            .iter()
            .map(|p| {
                let old_pool = old_pools.get(&LowerName::new(&p.name)).copied();
                p.backends
                    .iter()
                    .map(|b| {
                        if b.probe.is_none() {
                            return Health::always_up();
                        }
                        old.and_then(|(om, ot)| {
                            let pi = old_pool?;
                            let bi = om.pools[pi]
                                .backends
                                .iter()
                                .position(|ob| ob.address == b.address && ob.probe == b.probe)?;
                            Some(ot.rows[pi][bi].clone())
                        })
                        .unwrap_or_default()
                    })
                    .collect()
            })
            .collect();
        let peers = model.cluster.as_ref().map_or(0, |c| c.peers.len());
        let peer_views = model
            .pools
            .iter()
            .map(|p| vec![vec![None; peers]; p.backends.len()])
            .collect();
        let mut table = HealthTable {
            rows,
            drained: old.map(|(_, t)| t.drained.clone()).unwrap_or_default(),
            drained_flags: Vec::new(),
            drain_version: old.map_or(0, |(_, t)| t.drain_version),
            peer_views,
        };
        table.resolve_drained(model);
        table
    }

    /// One backend's health.
    pub(crate) fn health(&self, pool: usize, backend: usize) -> &Health {
        &self.rows[pool][backend]
    }

    /// Applies one observation of backend `backend` of pool `pool` (of `model`) made at `at`.
    pub(crate) fn observe(
        &mut self,
        model: &Model,
        pool: usize,
        backend: usize,
        at: Instant,
        obs: Observation,
    ) -> Option<Flip> {
        let timing = model.pools[pool].backends[backend]
            .probe
            .as_ref()
            .map(|p| p.timing)
            .unwrap_or_default();
        self.rows[pool][backend].observe(at, obs, timing.rise, timing.fall)
    }

    /// Records peer `peer`'s view of a backend, unless it is older than the one held; an older
    /// one still counts as hearing the peer (`heard`): a repeat of the same observation can
    /// date a millisecond or two earlier (its age is sent in whole milliseconds, and transit
    /// times differ), and the peer still holds it.
    pub(crate) fn set_peer_view(
        &mut self,
        pool: usize,
        backend: usize,
        peer: usize,
        view: PeerView,
    ) {
        let slot = &mut self.peer_views[pool][backend][peer];
        match slot {
            Some(old) if old.at > view.at => old.heard = old.heard.max(view.heard),
            _ => *slot = Some(view),
        }
    }

    /// Peer `peer`'s latest view of a backend.
    pub(crate) fn peer_view(&self, pool: usize, backend: usize, peer: usize) -> Option<PeerView> {
        self.peer_views[pool][backend][peer]
    }

    /// This instance's own view of a backend: up (and fresh by byAge), down, or none (not
    /// probed yet, or its last good result is stale: the prober stalled).
    pub(crate) fn own_view(
        &self,
        model: &Model,
        pool: usize,
        backend: usize,
        now: Instant,
    ) -> Option<bool> {
        let h = &self.rows[pool][backend];
        match h.state {
            HealthState::Up => h.usable(now, model.pools[pool].max_age).then_some(true),
            HealthState::Down => Some(false),
            HealthState::Unknown => None,
        }
    }

    /// Whether a backend is up: its own view alone, or with peers the quorum over the fresh
    /// views of every instance, this one included.
    fn up(&self, model: &Model, pool: usize, backend: usize, now: Instant) -> bool {
        let own = self.own_view(model, pool, backend, now);
        let Some(cluster) = &model.cluster else {
            return own == Some(true);
        };
        let mut views = usize::from(own.is_some());
        let mut up = usize::from(own == Some(true));
        for v in self.peer_views[pool][backend].iter().flatten() {
            if v.state != HealthState::Unknown
                && now.saturating_duration_since(v.heard) <= cluster.peer_max_age
            {
                views += 1;
                up += usize::from(v.state == HealthState::Up);
            }
        }
        quorum_up(up, views, cluster.quorum)
    }

    /// The drained set's version: see [`HealthTable::adopt_drains`].
    pub(crate) fn drain_version(&self) -> u64 {
        self.drain_version
    }

    /// Takes a peer's drained set if it is newer than this one's; true if it did.
    pub(crate) fn adopt_drains(
        &mut self,
        model: &Model,
        drained: HashSet<(String, String)>,
        version: u64,
    ) -> bool {
        if version <= self.drain_version {
            return false;
        }
        self.drain_version = version;
        self.drained = drained;
        self.resolve_drained(model);
        true
    }

    /// Whether the operator drained this backend.
    pub(crate) fn is_drained(&self, pool: usize, backend: usize) -> bool {
        self.drained_flags[pool][backend]
    }

    /// The drained set, by (pool name, backend name).
    pub(crate) fn drained(&self) -> &HashSet<(String, String)> {
        &self.drained
    }

    /// Drains or undrains one backend, by name; `version` is the time of the change
    /// (milliseconds since the Unix epoch), kept newer than the set's last version.
    pub(crate) fn set_drained(
        &mut self,
        model: &Model,
        key: (String, String),
        drained: bool,
        version: u64,
    ) {
        self.drain_version = version.max(self.drain_version + 1);
        if drained {
            self.drained.insert(key);
        } else {
            self.drained.remove(&key);
        }
        self.resolve_drained(model);
    }

    /// Replaces the whole drained set and its version (restoring state at start, or keeping
    /// drains across a reload).
    pub(crate) fn replace_drained(
        &mut self,
        model: &Model,
        drained: HashSet<(String, String)>,
        version: u64,
    ) {
        self.drained = drained;
        self.drain_version = version;
        self.resolve_drained(model);
    }

    fn resolve_drained(&mut self, model: &Model) {
        self.drained_flags = model
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

    /// What selection needs of every backend at `now`: usable (up, fresh, not drained), load.
    pub(crate) fn verdicts(&self, model: &Model, now: Instant) -> Vec<Vec<Verdict>> {
        (0..model.pools.len())
            .map(|pi| self.pool_verdicts(model, pi, now))
            .collect()
    }

    /// The earliest time after which the verdicts of `pool` can differ from what they are at
    /// `now` with no new observation: an up backend going stale (`last_ok + max_age`, byAge)
    /// or, with adaptive TTL, overdue (no result within `interval + jitter + timeout` of its
    /// last, [`Health::seconds_left`]). `now` when that cannot be told so simply: a backend
    /// in doubt (its TTL counts down each second) or peers (their views age).
    /// Observations only move these times later, so a deadline computed earlier is never late.
    pub(crate) fn pool_deadline(&self, model: &Model, pool: usize, now: Instant) -> Instant {
        if model.cluster.is_some() {
            return now;
        }
        let p = &model.pools[pool];
        // Far enough to be "not by time"; the tick looks again then anyway.
        let mut at = now + Duration::from_secs(3600);
        for (h, b) in self.rows[pool].iter().zip(&p.backends) {
            if h.state != HealthState::Up {
                continue;
            }
            if let Some(stale) = h.last_ok.and_then(|ok| ok.checked_add(p.max_age)) {
                at = at.min(stale);
            }
            if let (Some(_), Some(spec), Some((last, obs))) = (&p.adaptive, &b.probe, &h.last) {
                if !obs.ok {
                    return now;
                }
                let t = spec.timing;
                if let Some(overdue) = last.checked_add(t.interval + t.jitter + t.timeout) {
                    at = at.min(overdue);
                }
            }
        }
        at
    }

    /// [`HealthTable::verdicts`] of one pool.
    pub(crate) fn pool_verdicts(&self, model: &Model, pool: usize, now: Instant) -> Vec<Verdict> {
        let p = &model.pools[pool];
        self.rows[pool]
            .iter()
            .zip(&self.drained_flags[pool])
            .zip(&p.backends)
            .enumerate()
            .map(|(bi, ((h, &drained), b))| {
                let usable = !drained && self.up(model, pool, bi, now);
                let ttl_cap = match (&p.adaptive, &b.probe) {
                    // Outvoted: this instance's own probes took it down, the quorum keeps it.
                    // If it is dead, the quorum follows within one peer delay of the others'
                    // detection, and an answer cached with the steady TTL just before would
                    // outlive `failover` (the proof adds only that delay to detection). So,
                    // as in the last second before a fall, TTL 0; in a lasting one-sided loss
                    // this instance's answers for the pool are then not cached (its peers'
                    // are).
                    (Some(_), Some(_))
                        if usable && model.cluster.is_some() && h.state == HealthState::Down =>
                    {
                        Some(0)
                    }
                    (Some(_), Some(spec)) if usable => h.seconds_left(now, spec, p.max_age),
                    _ => None,
                };
                Verdict {
                    usable,
                    load: h.load(),
                    lbcd: h.lbcd(),
                    ttl_cap,
                }
            })
            .collect()
    }

    /// Which backends of `model` are probed, as (pool, backend, backend) triples.
    pub(crate) fn probed(model: &Model) -> impl Iterator<Item = (usize, usize, &Backend)> {
        model.pools.iter().enumerate().flat_map(|(pi, p)| {
            p.backends
                .iter()
                .enumerate()
                .filter(|(_, b)| b.probe.is_some())
                .map(move |(bi, b)| (pi, bi, b))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The model of a config text (zone files are never read here).
    fn model_of(text: &str) -> Model {
        Model::new(&crate::config::Config::parse(text, std::path::Path::new("t.toml")).unwrap())
    }

    fn obs(ok: bool) -> Observation {
        Observation {
            ok,
            load: None,
            lbcd: None,
            detail: if ok { "ok".into() } else { "refused".into() },
            latency: Duration::ZERO,
        }
    }

    #[test]
    fn first_result_decides_then_hysteresis() {
        let t = Instant::now();
        let mut h = Health::new();
        assert!(!h.usable(t, Duration::from_secs(5)));
        let f = h.observe(t, obs(false), 2, 3).unwrap();
        assert_eq!((f.from, f.to), (HealthState::Unknown, HealthState::Down));
        assert_eq!(f.cause, "refused");
        assert_eq!(
            h.observe(t, obs(true), 2, 3),
            None,
            "one success is not rise=2"
        );
        assert_eq!(h.observe(t, obs(true), 2, 3).unwrap().to, HealthState::Up);
        assert!(h.observe(t, obs(false), 2, 3).is_none());
        assert!(h.observe(t, obs(false), 2, 3).is_none());
        assert!(
            h.observe(t, obs(true), 2, 3).is_none(),
            "a success resets the fall count"
        );
        assert!(h.observe(t, obs(false), 2, 3).is_none());
        assert!(h.observe(t, obs(false), 2, 3).is_none());
        assert_eq!(
            h.observe(t, obs(false), 2, 3).unwrap().to,
            HealthState::Down
        );
        assert_eq!(h.flips, 3);
        assert_eq!((h.probes.ok, h.probes.failed), (3, 6));
    }

    #[test]
    fn probe_latencies_fall_into_buckets() {
        let mut s = ProbeStats::default();
        for ms in [0, 1, 3, 700, 5000] {
            s.add(&Observation {
                latency: Duration::from_millis(ms),
                ..obs(true)
            });
        }
        // 0 ms ≤ 0.5 ms; 1 ms ≤ 1 ms; 3 ms ≤ 5 ms; 700 ms ≤ 1 s; 5 s above every bucket.
        assert_eq!(s.buckets, [1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0]);
        assert_eq!(s.count(), 5);
        assert_eq!(s.latency_sum, Duration::from_millis(5704));
    }

    #[test]
    fn stale_reports_count_as_down() {
        let t = Instant::now();
        let mut h = Health::new();
        h.observe(t, obs(true), 1, 1);
        assert!(h.usable(t + Duration::from_secs(3), Duration::from_secs(3)));
        assert!(!h.usable(t + Duration::from_millis(3001), Duration::from_secs(3)));
        assert!(Health::always_up().usable(t, Duration::ZERO));
    }

    /// A model of one pool `p.example.`: backend .2 probed (rise 2, fall 2, max_age 3 s),
    /// backend .3 never probed.
    fn model() -> Model {
        let text = r#"
[[zone]]
origin = "example."
file = "example.zone"

[[pool]]
name = "p.example."
max_age = "3s"
backends = ["127.0.0.2", { address = "127.0.0.3", probe = { kind = "none" } }]
probe = { kind = "tcp", port = 80 }
"#;
        model_of(text)
    }

    fn usable(t: &HealthTable, m: &Model, now: Instant) -> Vec<bool> {
        t.pool_verdicts(m, 0, now)
            .iter()
            .map(|v| v.usable)
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn verdicts_follow_observations_staleness_and_drains() {
        let m = model();
        let mut t = HealthTable::new(&m, None);
        let start = Instant::now();
        // Unknown is not answered; the unprobed backend always is.
        assert_eq!(usable(&t, &m, start), [false, true]);
        let flip = t.observe(&m, 0, 0, start, obs(true)).unwrap();
        assert_eq!(flip.to, HealthState::Up);
        assert_eq!(usable(&t, &m, start), [true, true]);
        // byAge: 3 s after the last good probe it still counts, a moment later it does not.
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(usable(&t, &m, Instant::now()), [true, true]);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(usable(&t, &m, Instant::now()), [false, true]);
        // A fresh success makes it usable again without a flip.
        assert!(t.observe(&m, 0, 0, Instant::now(), obs(true)).is_none());
        assert_eq!(usable(&t, &m, Instant::now()), [true, true]);
        // fall = 2: one failure keeps it, the second takes it out.
        assert!(t.observe(&m, 0, 0, Instant::now(), obs(false)).is_none());
        assert_eq!(usable(&t, &m, Instant::now()), [true, true]);
        assert!(t.observe(&m, 0, 0, Instant::now(), obs(false)).is_some());
        assert_eq!(usable(&t, &m, Instant::now()), [false, true]);
        // Drains take any backend out, by name, and survive a new table for the same model.
        let key = ("p.example.".to_owned(), "127.0.0.3".to_owned());
        t.set_drained(&m, key.clone(), true, 1);
        assert!(t.is_drained(0, 1));
        assert_eq!(usable(&t, &m, Instant::now()), [false, false]);
        let t2 = HealthTable::new(&m, Some((&m, &t)));
        assert!(t2.is_drained(0, 1));
        assert_eq!(
            t2.health(0, 0).state,
            HealthState::Down,
            "health carried over"
        );
        t.set_drained(&m, key, false, 2);
        assert_eq!(usable(&t, &m, Instant::now()), [false, true]);
    }

    #[test]
    fn a_changed_probe_starts_unknown() {
        let m = model();
        let mut t = HealthTable::new(&m, None);
        t.observe(&m, 0, 0, Instant::now(), obs(true));
        let mut m2 = m.clone();
        if let Some(p) = &mut m2.pools[0].backends[0].probe {
            p.settings.insert("port".into(), toml::Value::Integer(81));
        }
        let t2 = HealthTable::new(&m2, Some((&m, &t)));
        assert_eq!(t2.health(0, 0).state, HealthState::Unknown);
        let t3 = HealthTable::new(&m, Some((&m, &t)));
        assert_eq!(t3.health(0, 0).state, HealthState::Up);
    }

    fn obs_took(ok: bool, ms: u64) -> Observation {
        Observation {
            latency: Duration::from_millis(ms),
            ..obs(ok)
        }
    }

    /// One probed backend with the default timing, in a pool with `failover = "5s"`.
    fn adaptive_model() -> Model {
        let text = r#"
[[zone]]
origin = "example."
file = "example.zone"

[[pool]]
name = "p.example."
failover = "5s"
backends = ["127.0.0.2"]
probe = { kind = "tcp", port = 80 }
"#;
        model_of(text)
    }

    fn cap(t: &HealthTable, m: &Model) -> Option<u32> {
        t.pool_verdicts(m, 0, Instant::now())[0].ttl_cap
    }

    #[tokio::test(start_paused = true)]
    async fn a_backend_in_doubt_caps_the_ttl_to_the_seconds_left() {
        let m = adaptive_model();
        let mut t = HealthTable::new(&m, None);
        let start = Instant::now();
        t.observe(&m, 0, 0, start, obs(true));
        assert_eq!(cap(&t, &m), None, "a fresh good result is no doubt");
        // A probe started at 0.5 s fails by timeout at 1.0 s: the next can start by
        // 0.5 + 1.2 = 1.7 s and fail by 2.2 s (fall 2), so it can be down 1.2 s from now.
        tokio::time::advance(Duration::from_secs(1)).await;
        t.observe(&m, 0, 0, Instant::now(), obs_took(false, 500));
        assert_eq!(t.health(0, 0).state, HealthState::Up);
        assert_eq!(cap(&t, &m), Some(1));
        tokio::time::advance(Duration::from_millis(300)).await;
        assert_eq!(cap(&t, &m), Some(0), "the last second is served with TTL 0");
        // A success ends the doubt.
        t.observe(&m, 0, 0, Instant::now(), obs(true));
        assert_eq!(cap(&t, &m), None);
    }

    #[tokio::test(start_paused = true)]
    async fn an_overdue_result_caps_the_ttl_to_staleness() {
        let m = adaptive_model();
        let mut t = HealthTable::new(&m, None);
        t.observe(&m, 0, 0, Instant::now(), obs(true));
        // A result is due within interval + jitter + timeout = 1.7 s.
        tokio::time::advance(Duration::from_millis(1700)).await;
        assert_eq!(cap(&t, &m), None);
        // Overdue: byAge removes it at last good + max_age (2.9 s), 1.1 s from 1.8 s.
        tokio::time::advance(Duration::from_millis(100)).await;
        assert_eq!(cap(&t, &m), Some(1));
        tokio::time::advance(Duration::from_millis(200)).await;
        assert_eq!(cap(&t, &m), Some(0));
        tokio::time::advance(Duration::from_millis(1000)).await;
        assert!(!t.pool_verdicts(&m, 0, Instant::now())[0].usable, "stale");
    }

    #[test]
    fn without_failover_no_ttl_is_capped() {
        let m = model();
        let mut t = HealthTable::new(&m, None);
        let now = Instant::now();
        t.observe(&m, 0, 0, now, obs(true));
        t.observe(&m, 0, 0, now, obs(false));
        assert_eq!(t.pool_verdicts(&m, 0, now)[0].ttl_cap, None);
    }

    /// One probed backend in a pool, with two peers deciding by `quorum`.
    fn cluster_model(quorum: &str) -> Model {
        let text = format!(
            r#"
[cluster]
listen = "127.0.0.53:8055"
peers = ["127.0.0.54:8055", "127.0.0.55:8055"]
key_file = "key"
quorum = {quorum}

[[zone]]
origin = "example."
file = "example.zone"

[[pool]]
name = "p.example."
backends = ["127.0.0.2"]
probe = {{ kind = "tcp", port = 80 }}
"#
        );
        model_of(&text)
    }

    fn view(state: HealthState, at: Instant) -> PeerView {
        PeerView {
            state,
            load: None,
            at,
            heard: at,
        }
    }

    #[test]
    fn quorum_counts_fresh_views() {
        // Majority: more than half; a tie is down.
        assert!(quorum_up(2, 3, Quorum::Majority));
        assert!(!quorum_up(1, 2, Quorum::Majority));
        assert!(quorum_up(1, 1, Quorum::Majority));
        assert!(!quorum_up(0, 0, Quorum::Majority));
        // A number: at least that many, or all when fewer have a view.
        assert!(quorum_up(1, 3, Quorum::AtLeast(1)));
        assert!(!quorum_up(1, 3, Quorum::AtLeast(2)));
        assert!(quorum_up(1, 1, Quorum::AtLeast(2)));
    }

    #[tokio::test(start_paused = true)]
    async fn the_majority_of_fresh_views_decides() {
        let m = cluster_model("\"majority\"");
        let mut t = HealthTable::new(&m, None);
        let now = Instant::now();
        let usable = |t: &HealthTable| t.pool_verdicts(&m, 0, Instant::now())[0].usable;
        // This instance sees it down (one-sided loss), both peers up: up everywhere.
        t.observe(&m, 0, 0, now, obs(false));
        t.set_peer_view(0, 0, 0, view(HealthState::Up, now));
        t.set_peer_view(0, 0, 1, view(HealthState::Up, now));
        assert!(usable(&t));
        // One peer agrees it is down: 2 of 3 down.
        t.set_peer_view(0, 0, 1, view(HealthState::Down, now));
        assert!(!usable(&t));
        // An older view does not replace a newer one.
        t.set_peer_view(0, 0, 1, view(HealthState::Up, now - Duration::from_secs(1)));
        assert!(!usable(&t));
        // Views go stale after peer_max_age (3 × 500 ms): this instance's down view and the
        // up view of a peer that fell silent are a tie, which is down.
        t.set_peer_view(0, 0, 1, view(HealthState::Up, now));
        assert!(usable(&t));
        tokio::time::advance(Duration::from_millis(1501)).await;
        t.set_peer_view(0, 0, 1, view(HealthState::Up, Instant::now()));
        assert!(
            !usable(&t),
            "one fresh up view against this instance's down view"
        );
        tokio::time::advance(Duration::from_millis(1501)).await;
        assert!(!usable(&t), "alone: this instance's own view");
        t.observe(&m, 0, 0, Instant::now(), obs(true));
        t.observe(&m, 0, 0, Instant::now(), obs(true));
        assert!(usable(&t), "alone and up");
    }

    #[tokio::test(start_paused = true)]
    async fn a_view_counts_while_the_peer_repeats_it() {
        let m = cluster_model("\"majority\"");
        let mut t = HealthTable::new(&m, None);
        let usable = |t: &HealthTable| t.pool_verdicts(&m, 0, Instant::now())[0].usable;
        // One-sided loss: this instance sees it down, both peers up, each observation made
        // once a second (the default interval) and repeated every exchange (500 ms).
        let observed = Instant::now();
        t.observe(&m, 0, 0, observed, obs(false));
        for round in 0..5 {
            for peer in 0..2 {
                let heard = Instant::now();
                // Every other repeat dates the observation a millisecond earlier.
                let at = observed - Duration::from_millis(round % 2);
                t.set_peer_view(
                    0,
                    0,
                    peer,
                    PeerView {
                        state: HealthState::Up,
                        load: None,
                        at,
                        heard,
                    },
                );
            }
            // Observed up to 2 s ago, longer than peer_max_age (1.5 s), but heard just now.
            assert!(usable(&t), "a live peer's repeated view lapsed");
            tokio::time::advance(Duration::from_millis(500)).await;
        }
        // Silent for longer than peer_max_age: the peers stop counting.
        tokio::time::advance(Duration::from_millis(1100)).await;
        assert!(!usable(&t));
    }

    /// `failover = "5s"`, one probed backend with the default timing, two peers, majority.
    fn adaptive_cluster_model() -> Model {
        let text = r#"
[cluster]
listen = "127.0.0.53:8055"
peers = ["127.0.0.54:8055", "127.0.0.55:8055"]
key_file = "key"

[[zone]]
origin = "example."
file = "example.zone"

[[pool]]
name = "p.example."
failover = "5s"
backends = ["127.0.0.2"]
probe = { kind = "tcp", port = 80 }
"#;
        model_of(text)
    }

    #[tokio::test(start_paused = true)]
    async fn answers_carry_ttl_zero_while_this_instance_is_outvoted() {
        let m = adaptive_cluster_model();
        let mut t = HealthTable::new(&m, None);
        let start = Instant::now();
        let peers_up = |t: &mut HealthTable| {
            for peer in 0..2 {
                t.set_peer_view(0, 0, peer, view(HealthState::Up, Instant::now()));
            }
        };
        let verdict = |t: &HealthTable| t.pool_verdicts(&m, 0, Instant::now())[0];
        t.observe(&m, 0, 0, start, obs(true));
        peers_up(&mut t);
        assert_eq!(cap(&t, &m), None);
        // Probes fail from 1 s on (each took its 500 ms timeout); at 2 s this instance takes
        // the backend down while both peers still see it up (one-sided loss, or the first of
        // three to see a death). As long as that lasts, TTL 0.
        for s in 1..=8 {
            tokio::time::advance(start + Duration::from_secs(s) - Instant::now()).await;
            t.observe(&m, 0, 0, Instant::now(), obs_took(false, 500));
            peers_up(&mut t);
            let v = verdict(&t);
            assert!(v.usable, "two of three see it up");
            // At 1 s it is in doubt, not down yet: the seconds left until it can be (1.2 s).
            let want = if s == 1 { 1 } else { 0 };
            assert_eq!(v.ttl_cap, Some(want), "at {s} s");
        }
        // A peer agrees: down by quorum, out of the answers.
        t.set_peer_view(0, 0, 1, view(HealthState::Down, Instant::now()));
        assert!(!verdict(&t).usable);
        peers_up(&mut t);
        // It answers again: still down here until rise (2), then up and no doubt is left.
        t.observe(&m, 0, 0, Instant::now(), obs(true));
        assert_eq!(cap(&t, &m), Some(0));
        t.observe(&m, 0, 0, Instant::now(), obs(true));
        assert_eq!(cap(&t, &m), None);
    }

    #[tokio::test(start_paused = true)]
    async fn one_up_view_is_enough_with_quorum_one() {
        let m = cluster_model("1");
        let mut t = HealthTable::new(&m, None);
        t.observe(&m, 0, 0, Instant::now(), obs(false));
        assert!(!t.pool_verdicts(&m, 0, Instant::now())[0].usable);
        t.set_peer_view(0, 0, 1, view(HealthState::Up, Instant::now()));
        assert!(t.pool_verdicts(&m, 0, Instant::now())[0].usable);
    }

    #[test]
    fn the_newest_drained_set_wins() {
        let m = cluster_model("\"majority\"");
        let mut t = HealthTable::new(&m, None);
        let key = ("p.example.".to_owned(), "127.0.0.2".to_owned());
        t.set_drained(&m, key.clone(), true, 100);
        assert_eq!(t.drain_version(), 100);
        // An older set from a peer is ignored; a newer one is taken, even an empty one.
        assert!(!t.adopt_drains(&m, HashSet::new(), 99));
        assert!(t.is_drained(0, 0));
        assert!(t.adopt_drains(&m, HashSet::new(), 101));
        assert!(!t.is_drained(0, 0));
        // A local change after it is newer still, whatever the clock says.
        t.set_drained(&m, key, true, 50);
        assert_eq!(t.drain_version(), 102);
    }
}
