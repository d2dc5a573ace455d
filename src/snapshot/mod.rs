//! The [`Snapshot`]: everything the query path reads (zones, each pool's compiled answers,
//! answer settings), compiled and swapped as one.
//!
//! The probe side (and reload) builds a new `Snapshot` beside the current one and publishes it
//! with a single atomic pointer swap (`SnapshotCell`); queries load it without locks. A
//! snapshot is immutable except for the per-pool rotation counters, which are shared from one
//! snapshot to the next so rotation continues smoothly across swaps.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arc_swap::ArcSwap;
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rustc_hash::FxHashMap;

use crate::domain::{Answering, Model, Policy, Pool, Verdict};
use crate::select::{FamilyAnswer, select};
use crate::zones::ZoneSet;

/// The compiled, ready-to-answer state of one pool.
#[derive(Debug)]
pub struct PoolAnswer {
    pub(crate) name: Name,
    pub(crate) v4: FamilyAnswer,
    pub(crate) v6: FamilyAnswer,
    /// Rotation counter, shared across snapshots of the same pool (see module docs).
    pub counter: Arc<AtomicUsize>,
}

impl PoolAnswer {
    pub(crate) fn family(&self, rtype: RecordType) -> &FamilyAnswer {
        if rtype == RecordType::AAAA {
            &self.v6
        } else {
            &self.v4
        }
    }

    /// Picks the rotation for the next query: one relaxed atomic add, no lock.
    pub(crate) fn next_rotation(&self) -> usize {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }

    /// The answer records for `rtype` (A or AAAA) at rotation `rotation`, owned by `owner`.
    pub(crate) fn records(&self, rtype: RecordType, rotation: usize, owner: &Name) -> Vec<Record> {
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
    pub(crate) zones: Arc<ZoneSet>,
    /// Indexed like the model's pools; zone nodes refer to pools by this index. A pool whose
    /// verdicts did not change keeps its compiled answer from one snapshot to the next.
    pub pools: Vec<Arc<PoolAnswer>>,
    /// What `[server]` says about EDNS, CHAOS and NSID, needed when encoding answers.
    pub(crate) answering: Answering,
    /// Lowercased wire-format pool names → pool index, for the fast path. Shared by every
    /// snapshot of one model: a health change does not rebuild it.
    pub(crate) pool_keys: PoolKeys,
}

/// See [`Snapshot::pool_keys`].
pub(crate) type PoolKeys = Arc<FxHashMap<Box<[u8]>, usize>>;

/// The fast path's pool index of `model`.
pub(crate) fn pool_keys(model: &Model) -> PoolKeys {
    Arc::new(
        model
            .pools
            .iter()
            .enumerate()
            .map(|(i, p)| (wire_key(&p.name), i))
            .collect(),
    )
}

/// `name` in wire format, lowercased, uncompressed.
pub(crate) fn wire_key(name: &Name) -> Box<[u8]> {
    let mut out = Vec::with_capacity(name.len() + 1);
    for label in name.iter() {
        out.push(label.len() as u8);
        out.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    out.push(0);
    out.into_boxed_slice()
}

impl PoolAnswer {
    /// Compiles pool number `index` from its backends' verdicts: the selection chain runs
    /// here, once per publish, never per query.
    pub(crate) fn compile(
        pool: &Pool,
        index: usize,
        verdicts: &[Verdict],
        generation: u64,
        counter: Arc<AtomicUsize>,
    ) -> PoolAnswer {
        // Seeded by generation so random orders differ between compiles.
        let seed = generation.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ index as u64;
        // lbnamed's `best` restarts its increments from fresh weights after every poll; every
        // other policy keeps rotating where it was, so frequent republishes (load updates) do
        // not pin answers to the head of the list.
        let rotation_base = match pool.policy {
            Policy::Best => counter.load(Ordering::Relaxed),
            _ => 0,
        };
        let mut v4 = select(pool, verdicts, false, seed);
        let mut v6 = select(pool, verdicts, true, seed.rotate_left(17));
        v4.rotation_base = rotation_base;
        v6.rotation_base = rotation_base;
        PoolAnswer {
            name: pool.name.clone(),
            v4,
            v6,
            counter,
        }
    }
}

impl Snapshot {
    /// Compiles every pool of `model` from `verdicts` (indexed like its pools and backends)
    /// with fresh rotation counters: a snapshot on its own, for `check`-like uses, tests and
    /// benchmarks. A running server publishes through the monitor's publisher instead, which
    /// keeps counters and unchanged pools across snapshots.
    pub fn compile(
        model: &Model,
        zones: Arc<ZoneSet>,
        generation: u64,
        verdicts: &[Vec<Verdict>],
    ) -> Snapshot {
        let pools = model
            .pools
            .iter()
            .zip(verdicts)
            .enumerate()
            .map(|(i, (p, v))| {
                let counter = Arc::new(AtomicUsize::new(0));
                Arc::new(PoolAnswer::compile(p, i, v, generation, counter))
            })
            .collect();
        Snapshot::new(model, zones, generation, pools, pool_keys(model))
    }

    /// Assembles a snapshot of `model` from its compiled pools (indexed like `model.pools`) and
    /// its [`pool_keys`].
    pub(crate) fn new(
        model: &Model,
        zones: Arc<ZoneSet>,
        generation: u64,
        pools: Vec<Arc<PoolAnswer>>,
        pool_keys: PoolKeys,
    ) -> Snapshot {
        Snapshot {
            generation,
            zones,
            pools,
            answering: model.answering.clone(),
            pool_keys,
        }
    }
}

/// The published snapshot: readers `load()`, the builder `store()`s a new one.
pub(crate) type SnapshotCell = Arc<ArcSwap<Snapshot>>;
