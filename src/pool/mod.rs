//! Pools and the [`Snapshot`]: everything the query path reads, compiled and swapped as one.
//!
//! The probe side (and reload) builds a new `Snapshot` beside the current one and publishes it
//! with a single atomic pointer swap ([`SnapshotCell`]); queries load it without locks. A
//! snapshot is immutable except for the per-pool rotation counters, which are shared from one
//! snapshot to the next so rotation continues smoothly across swaps.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rustc_hash::FxHashMap;

use crate::config::{Config, Policy, PoolConfig};
use crate::health::Health;
use crate::select::{Candidate, FamilyAnswer, select};
use crate::zones::ZoneSet;

/// The compiled, ready-to-answer state of one pool.
#[derive(Debug)]
pub struct PoolAnswer {
    pub name: Name,
    pub v4: FamilyAnswer,
    pub v6: FamilyAnswer,
    /// Rotation counter, shared across snapshots of the same pool (see module docs).
    pub counter: Arc<AtomicUsize>,
}

impl PoolAnswer {
    pub fn family(&self, rtype: RecordType) -> &FamilyAnswer {
        if rtype == RecordType::AAAA {
            &self.v6
        } else {
            &self.v4
        }
    }

    /// Picks the rotation for the next query: one relaxed atomic add, no lock.
    pub fn next_rotation(&self) -> usize {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }

    /// The answer records for `rtype` (A or AAAA) at rotation `rotation`, owned by `owner`.
    pub fn records(&self, rtype: RecordType, rotation: usize, owner: &Name) -> Vec<Record> {
        let family = self.family(rtype);
        family
            .addresses(rotation)
            .map(|ip| {
                let rdata = match ip {
                    IpAddr::V4(a) => RData::A(A(a)),
                    IpAddr::V6(a) => RData::AAAA(AAAA(a)),
                };
                Record::from_rdata(owner.clone(), family.ttl, rdata)
            })
            .collect()
    }
}

/// Everything a query needs, immutable once published.
#[derive(Debug)]
pub struct Snapshot {
    /// Increases with every publish; shown on the status page and in logs.
    pub generation: u64,
    pub zones: Arc<ZoneSet>,
    /// Indexed like `Config::pools`; zone nodes refer to pools by this index.
    pub pools: Vec<PoolAnswer>,
    /// What `[server]` says about EDNS, needed when encoding answers.
    pub edns_udp_size: u16,
    /// CHAOS identity and NSID payload (`None` when NSID is off).
    pub identity: String,
    pub version: Option<String>,
    pub nsid: Option<Vec<u8>>,
    /// Lowercased wire-format pool names → pool index, for the fast path.
    pub pool_keys: FxHashMap<Box<[u8]>, usize>,
}

/// `name` in wire format, lowercased, uncompressed.
pub fn wire_key(name: &Name) -> Box<[u8]> {
    let mut out = Vec::with_capacity(name.len() + 1);
    for label in name.iter() {
        out.push(label.len() as u8);
        out.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    out.push(0);
    out.into_boxed_slice()
}

impl Snapshot {
    /// Compiles the snapshot for `config` from the backends' health at `now`: the selection
    /// chain runs here, once per publish, never per query.
    pub fn compile(
        config: &Config,
        zones: Arc<ZoneSet>,
        generation: u64,
        health: &[Vec<Health>],
        now: Instant,
        counters: &mut dyn FnMut(&PoolConfig) -> Arc<AtomicUsize>,
    ) -> Snapshot {
        let pools = config
            .pools
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let candidates: Vec<Candidate> = p
                    .backends
                    .iter()
                    .zip(&health[i])
                    .map(|(b, h)| Candidate {
                        address: b.address,
                        weight: b.weight,
                        tier: b.tier,
                        usable: h.usable(now, p.max_age),
                        load: h.load(),
                        lbcd: h.lbcd(),
                    })
                    .collect();
                // Seeded by generation so random orders differ between publishes.
                let seed = generation.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i as u64;
                let counter = counters(p);
                // lbnamed's `best` restarts its increments from fresh weights after every poll;
                // every other policy keeps rotating where it was, so frequent republishes
                // (load updates) do not pin answers to the head of the list.
                let origin = match p.policy {
                    Policy::Best => counter.load(Ordering::Relaxed),
                    _ => 0,
                };
                let mut v4 = select(p, &candidates, false, seed);
                let mut v6 = select(p, &candidates, true, seed.rotate_left(17));
                v4.origin = origin;
                v6.origin = origin;
                PoolAnswer {
                    name: p.name.clone(),
                    v4,
                    v6,
                    counter,
                }
            })
            .collect();
        let pool_keys = config
            .pools
            .iter()
            .enumerate()
            .map(|(i, p)| (wire_key(&p.name), i))
            .collect();
        Snapshot {
            generation,
            zones,
            pools,
            edns_udp_size: config.server.edns_udp_size,
            identity: config.server.identity.clone(),
            version: config.server.version.clone(),
            nsid: config
                .server
                .nsid
                .then(|| config.server.identity.clone().into_bytes()),
            pool_keys,
        }
    }
}

/// The published snapshot: readers `load()`, the builder `store()`s a new one.
pub type SnapshotCell = Arc<ArcSwap<Snapshot>>;
