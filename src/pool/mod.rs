//! Pools and the [`Snapshot`]: everything the query path reads, compiled and swapped as one.
//!
//! The probe side (and reload) builds a new `Snapshot` beside the current one and publishes it
//! with a single atomic pointer swap ([`SnapshotCell`]); queries load it without locks. A
//! snapshot is immutable except for the per-pool rotation counters, which are shared from one
//! snapshot to the next so rotation continues smoothly across swaps.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arc_swap::ArcSwap;
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::config::{Config, PoolConfig};
use crate::zones::ZoneSet;

/// The answers of one pool for one address family, in the order the policy chose.
#[derive(Debug, Clone, Default)]
pub struct FamilyAnswer {
    /// Addresses in base order; a query starts at some rotation of this list.
    pub addrs: Vec<IpAddr>,
}

/// The compiled, ready-to-answer state of one pool.
#[derive(Debug)]
pub struct PoolAnswer {
    pub name: Name,
    pub ttl: u32,
    /// Most addresses per answer (`usize::MAX` when unlimited).
    pub cap: usize,
    pub v4: FamilyAnswer,
    pub v6: FamilyAnswer,
    /// Rotation counter, shared across snapshots of the same pool (see module docs).
    pub counter: Arc<AtomicUsize>,
}

impl PoolAnswer {
    fn family(&self, rtype: RecordType) -> &FamilyAnswer {
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

    /// The addresses answered for `rtype` (A or AAAA) at rotation `rotation`, capped.
    pub fn addresses(&self, rtype: RecordType, rotation: usize) -> impl Iterator<Item = IpAddr> {
        let addrs = &self.family(rtype).addrs;
        let n = addrs.len();
        let start = if n == 0 { 0 } else { rotation % n };
        addrs
            .iter()
            .cycle()
            .skip(start)
            .take(n.min(self.cap))
            .copied()
    }

    /// The answer records for `rtype` at rotation `rotation`, owned by `owner`.
    pub fn records(&self, rtype: RecordType, rotation: usize, owner: &Name) -> Vec<Record> {
        self.addresses(rtype, rotation)
            .map(|ip| {
                let rdata = match ip {
                    IpAddr::V4(a) => RData::A(A(a)),
                    IpAddr::V6(a) => RData::AAAA(AAAA(a)),
                };
                Record::from_rdata(owner.clone(), self.ttl, rdata)
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
}

impl Snapshot {
    /// Builds the snapshot for `config` with every backend counted as up.
    pub fn all_up(
        config: &Config,
        zones: Arc<ZoneSet>,
        generation: u64,
        counters: &dyn Fn(&PoolConfig) -> Arc<AtomicUsize>,
    ) -> Snapshot {
        let pools = config
            .pools
            .iter()
            .map(|p| {
                let (v4, v6): (Vec<IpAddr>, Vec<IpAddr>) = p
                    .backends
                    .iter()
                    .map(|b| b.address)
                    .partition(IpAddr::is_ipv4);
                PoolAnswer {
                    name: p.name.clone(),
                    ttl: p.ttl,
                    cap: p.answers,
                    v4: FamilyAnswer { addrs: v4 },
                    v6: FamilyAnswer { addrs: v6 },
                    counter: counters(p),
                }
            })
            .collect();
        Snapshot {
            generation,
            zones,
            pools,
            edns_udp_size: config.server.edns_udp_size,
        }
    }
}

/// The published snapshot: readers `load()`, the builder `store()`s a new one.
pub type SnapshotCell = Arc<ArcSwap<Snapshot>>;
