//! The status view: one read of the monitor (model, health table, probes) and the published
//! snapshot, as plain values that the report, the page and `/metrics` render.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::domain::HealthState;
use crate::monitor::health::ProbeStats;
use crate::monitor::{Inspect, Monitor, PeerStatus};
use crate::snapshot::{PoolAnswer, Snapshot};

use super::listing::{Listing, Trouble, Window};
use super::report::Fleet;

/// One pool as the status page shows it.
#[derive(Debug, Clone)]
pub(crate) struct PoolView {
    pub(crate) name: String,
    pub(crate) policy: String,
    /// The TTL of answers while no backend is in doubt (with `failover`, derived from it).
    pub(crate) ttl: u32,
    /// The TTL IPv4 (IPv6) answers carry now: lower than `ttl` while a backend is in doubt or
    /// too few are usable (adaptive TTL, `failover`).
    pub(crate) ttl_v4: u32,
    pub(crate) ttl_v6: u32,
    /// The promised failover time, if the pool has one.
    pub(crate) failover: Option<Duration>,
    /// No IPv4 (IPv6) backend is usable: answers follow the pool's `all_down` policy.
    pub(crate) all_down_v4: bool,
    pub(crate) all_down_v6: bool,
    /// A/AAAA answers served for this pool (its rotation counter; kept across reloads).
    pub(crate) served: u64,
    pub(crate) backends: Vec<BackendView>,
}

/// One backend as the status page shows it.
#[derive(Debug, Clone)]
pub(crate) struct BackendView {
    pub(crate) name: String,
    pub(crate) address: IpAddr,
    /// How it is probed, as the probe describes itself.
    pub(crate) probe: String,
    pub(crate) state: HealthState,
    /// In answers now: up, fresh and not drained.
    pub(crate) usable: bool,
    pub(crate) drained: bool,
    pub(crate) load: Option<f64>,
    pub(crate) last_probe_age: Option<Duration>,
    pub(crate) last_result: Option<String>,
    pub(crate) last_ok: Option<bool>,
    pub(crate) last_latency: Option<Duration>,
    pub(crate) flips: u64,
    pub(crate) probes: ProbeStats,
    /// With peers: each peer's view (`up`, `down`, `stale` when older than `peer_max_age`, `-`
    /// when none), in the order of `[cluster] peers`. The verdict is `usable`.
    pub(crate) peer_views: Vec<String>,
}

/// Each peer now (empty without `[cluster]`).
pub(crate) fn peers(monitor: &Monitor) -> Vec<PeerStatus> {
    monitor.inspect(|i| i.peers.clone())
}

/// How the status page writes one peer's view of one backend.
fn peer_view(i: &Inspect<'_>, pool: usize, backend: usize, peer: usize) -> String {
    let max_age = i
        .model
        .cluster
        .as_ref()
        .map_or(Duration::ZERO, |c| c.peer_max_age);
    match i.table.peer_view(pool, backend, peer) {
        None => "-".to_owned(),
        Some(v) if i.now.saturating_duration_since(v.heard) > max_age => "stale".to_owned(),
        Some(v) => v.state.as_str().to_owned(),
    }
}

/// Every pool now, in config order, with its backends unless `backends` is false (then
/// `backends` of each view is empty), and the generation of the snapshot read.
pub(crate) fn pools(monitor: &Monitor, backends: bool) -> (Vec<PoolView>, u64) {
    let snapshot = monitor.cell().load_full();
    let pools = monitor.inspect(|i| {
        (0..i.model.pools.len())
            .map(|pi| pool_view(i, &snapshot, pi, backends))
            .collect()
    });
    (pools, snapshot.generation)
}

/// One page of pools: the listing's window, and the whole fleet's counts.
#[derive(Debug, Clone)]
pub(crate) struct Selected {
    /// The pools on the page, in the order shown; only these are built in full.
    pub(crate) pools: Vec<PoolView>,
    pub(crate) window: Window,
    pub(crate) fleet: Fleet,
    pub(crate) generation: u64,
}

/// The pools `listing` puts on its page (without one, every pool in config order), with the
/// counts of the whole fleet. One pass over every pool reads its trouble (from the health
/// table and the snapshot) and, with a search, its names; full views are built for the
/// page's pools only.
pub(crate) fn select(monitor: &Monitor, listing: Option<&Listing>) -> Selected {
    let snapshot = monitor.cell().load_full();
    let (pools, window, fleet) = monitor.inspect(|i| {
        let mut fleet = Fleet::default();
        let mut found = Vec::new();
        let mut name = String::new();
        for (pi, p) in i.model.pools.iter().enumerate() {
            let t = trouble(i, &snapshot, pi);
            fleet.count(t, p.backends.len());
            let finds = listing.is_none_or(|l| {
                // The name as text, in one reused buffer: `Name::to_ascii` allocates and does
                // IDNA work per call, which made a search of 10,000 pools cost milliseconds.
                name.clear();
                for label in p.name.iter() {
                    name.push_str(&String::from_utf8_lossy(label));
                    name.push('.');
                }
                l.finds(
                    &name,
                    p.backends.iter().map(|b| (b.name.as_str(), b.address)),
                )
            });
            if finds {
                found.push((pi, t));
            }
        }
        let window = match listing {
            Some(l) => l.window(found),
            None => Window {
                matched: found.len(),
                pools: found.into_iter().map(|(pi, _)| pi).collect(),
                page: 1,
                pages: 1,
            },
        };
        let pools = window
            .pools
            .iter()
            .map(|&pi| pool_view(i, &snapshot, pi, true))
            .collect();
        (pools, window, fleet)
    });
    Selected {
        pools,
        window,
        fleet,
        generation: snapshot.generation,
    }
}

/// The snapshot's answer for pool `pi`, if it is still the same pool. A reload may land
/// between loading the snapshot and reading the model; then the index no longer names the
/// same pool, and what it would tell reads as zero.
fn answer<'s>(snapshot: &'s Snapshot, i: &Inspect<'_>, pi: usize) -> Option<&'s PoolAnswer> {
    snapshot
        .pools
        .get(pi)
        .filter(|a| a.name == i.model.pools[pi].name)
        .map(|a| &**a)
}

/// What is wrong with pool `pi` now: no view built, nothing but counts.
fn trouble(i: &Inspect<'_>, snapshot: &Snapshot, pi: usize) -> Trouble {
    let answer = answer(snapshot, i, pi);
    let mut t = Trouble {
        all_down: answer.is_some_and(|a| a.v4.all_down || a.v6.all_down),
        ..Trouble::default()
    };
    for (bi, v) in i.table.pool_verdicts(i.model, pi, i.now).iter().enumerate() {
        if i.table.is_drained(pi, bi) {
            t.drained += 1;
        } else if !v.usable {
            t.out += 1;
        }
    }
    t
}

/// Pool `pi`, and its backends in full if `backends`.
fn pool_view(i: &Inspect<'_>, snapshot: &Snapshot, pi: usize, backends: bool) -> PoolView {
    let p = &i.model.pools[pi];
    let answer = answer(snapshot, i, pi);
    let verdicts = if backends {
        i.table.pool_verdicts(i.model, pi, i.now)
    } else {
        Vec::new()
    };
    PoolView {
        name: p.name.to_ascii(),
        policy: p.policy.to_string(),
        ttl: p.ttl,
        ttl_v4: answer.map_or(p.ttl, |a| a.v4.ttl),
        ttl_v6: answer.map_or(p.ttl, |a| a.v6.ttl),
        failover: p.adaptive.map(|a| a.within),
        all_down_v4: answer.is_some_and(|a| a.v4.all_down),
        all_down_v6: answer.is_some_and(|a| a.v6.all_down),
        served: answer.map_or(0, |a| a.counter.load(Ordering::Relaxed) as u64),
        // All of them, or none without `backends` (no verdicts were read then).
        backends: p.backends[..verdicts.len()]
            .iter()
            .enumerate()
            .map(|(bi, b)| {
                let h = i.table.health(pi, bi);
                let last = h.last.as_ref();
                BackendView {
                    name: b.name.clone(),
                    address: b.address,
                    probe: i.probes[pi][bi].clone(),
                    state: h.state,
                    usable: verdicts[bi].usable,
                    drained: i.table.is_drained(pi, bi),
                    load: h.load(),
                    last_probe_age: last.map(|(at, _)| i.now.saturating_duration_since(*at)),
                    last_result: last.map(|(_, o)| o.detail.clone()),
                    last_ok: last.map(|(_, o)| o.ok),
                    last_latency: last.map(|(_, o)| o.latency),
                    flips: h.flips,
                    probes: h.probes.clone(),
                    peer_views: (0..i.peers.len())
                        .map(|peer| peer_view(i, pi, bi, peer))
                        .collect(),
                }
            })
            .collect(),
    }
}
