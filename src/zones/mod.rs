//! Static zone data: master files loaded, checked, and indexed for lookups.
//!
//! A [`ZoneSet`] is immutable once built and shared by every snapshot until the next reload.
//! Loading checks what BIND's `named-checkzone` and Knot's `kzonecheck` check (one SOA at the
//! apex, apex NS, CNAME exclusivity, out-of-zone data) plus the pools that live in the zones:
//! a pool name must be inside a zone, not below a delegation, and not collide with A, AAAA or
//! CNAME data from the file.

mod file;
mod store;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use rustc_hash::FxHashMap;

use crate::config::{Place, ZoneConfig};
use crate::domain::Pool;
use file::{Source, Stamp};
pub(crate) use store::RRset;
use store::{Key, NodeId, Store};

/// A problem that stops a zone from loading.
#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    /// The zone's file could not be read (an unreadable `$INCLUDE` is a [`ZoneError::Syntax`]
    /// at the directive).
    #[error("{}: cannot read zone file: {source}", file.display())]
    Read {
        /// The path from `[[zone]] file`, joined with the config's directory.
        file: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file does not parse as a master file.
    #[error("{}:{line}: {message}", file.display())]
    Syntax {
        /// The file the entry is in: the zone's, or one it includes.
        file: PathBuf,
        /// Line of the problem, 1-based (an entry's first line when parentheses continue it).
        line: usize,
        /// What is wrong, e.g. ``unknown record type `BOGUS` ``.
        message: String,
    },
    /// The file parses but breaks a rule of DNS data (RFC 1034/2181).
    #[error("{}:{line}: zone {zone}: {message}", file.display())]
    Data {
        /// The file the record is in (the zone's own file, line 1, for a missing apex SOA or
        /// NS).
        file: PathBuf,
        /// Line of the offending record, 1-based.
        line: usize,
        /// The zone's origin, as text.
        zone: String,
        /// The rule broken, e.g. `no NS records at the apex`.
        message: String,
    },
    /// A pool that cannot live where the config puts it.
    #[error("{place}: pool {pool}: {message}")]
    Pool {
        /// Where the `[[pool]]` is in the config.
        place: Place,
        /// The pool's name, as text.
        pool: String,
        /// Why, e.g. `is not inside any configured zone`.
        message: String,
    },
}

/// Something suspicious that does not stop loading; `lbns check` prints these.
#[derive(Debug, Clone)]
pub struct ZoneWarning {
    pub(crate) file: PathBuf,
    pub(crate) line: usize,
    pub(crate) message: String,
}

impl fmt::Display for ZoneWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: warning: {}",
            self.file.display(),
            self.line,
            self.message
        )
    }
}

/// One authoritative zone's data, as read from its files: immutable, and shared between
/// reloads while none of its files changes. Pools are placed beside it, in a [`ZoneSet`].
#[derive(Debug)]
pub struct Zone {
    /// The apex, from `[[zone]] origin`.
    pub origin: Name,
    pub(crate) lower_origin: LowerName,
    /// The SOA for negative answers: TTL = min(SOA TTL, SOA MINIMUM) (RFC 2308 §3).
    pub(crate) negative_soa: Record,
    store: Store,
    /// The `[[zone]]` it was loaded for.
    config: ZoneConfig,
    /// The files it was read from, with their versions then.
    sources: Vec<Source>,
    /// What loading it warned about, given again when it is reused.
    warnings: Vec<ZoneWarning>,
    /// Records kept (duplicates dropped).
    records: usize,
}

impl Zone {
    /// Number of owner names, empty non-terminals included.
    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// True when the zone has no names; never for a loaded zone, whose apex holds its SOA.
    pub fn is_empty(&self) -> bool {
        self.store.len() == 0
    }

    /// Number of records.
    pub fn records(&self) -> usize {
        self.records
    }

    /// Bytes its names, records and index take.
    pub fn bytes(&self) -> usize {
        self.store.bytes()
    }

    /// True if this zone is what loading `zc` would give now: the same origin, file and
    /// include directories, and none of the files it read has changed since.
    fn unchanged(&self, zc: &ZoneConfig) -> bool {
        self.config.origin == zc.origin
            && self.config.file == zc.file
            && self.config.include_dirs == zc.include_dirs
            && self
                .sources
                .iter()
                .all(|s| Stamp::now(&s.path) == Some(s.stamp))
    }

    /// Reads and checks the zone of `zc`.
    fn load(zc: &ZoneConfig) -> Result<Zone, Vec<ZoneError>> {
        let lower_origin = LowerName::new(&zc.origin);
        let mut builder = Builder {
            store: Store::new(&lower_origin),
            pending: Vec::new(),
            data: Vec::new(),
            owner: Vec::new(),
            last: None,
            outside: Vec::new(),
            too_large: None,
        };
        let (mut errors, sources) =
            file::read_zone_file(&zc.file, &zc.origin, &zc.include_dirs, &mut builder);
        if matches!(errors.first(), Some(ZoneError::Read { .. })) {
            return Err(errors);
        }
        match builder.finish(zc, sources) {
            Ok(zone) if errors.is_empty() => Ok(zone),
            Ok(_) => Err(errors),
            Err(mut e) => {
                errors.append(&mut e);
                Err(errors)
            }
        }
    }
}

/// One record read, waiting to be grouped into its RRset.
#[derive(Debug, Clone, Copy)]
struct Pending {
    node: NodeId,
    rtype: u16,
    len: u16,
    ttl: u32,
    /// Offset of the RDATA in the builder's `data`.
    data: u32,
    file: u32,
    line: u32,
}

/// Collects records as the reader streams them: each owner name goes into the store at once
/// (with its ancestors), each RDATA into one arena; [`Builder::finish`] groups them into
/// RRsets and checks the zone's rules.
struct Builder {
    store: Store,
    pending: Vec<Pending>,
    data: Vec<u8>,
    /// The last owner in wire format, and its node: consecutive records mostly share one.
    owner: Vec<u8>,
    last: Option<NodeId>,
    /// Records whose owner is outside the zone: file, line, owner.
    outside: Vec<(u32, usize, String)>,
    /// Where the record data first went past [`MAX_RDATA_BYTES`]: file, line.
    too_large: Option<(u32, usize)>,
}

impl file::Sink for Builder {
    fn record(
        &mut self,
        owner: &[u8],
        rtype: RecordType,
        ttl: u32,
        rdata: &[u8],
        file: u32,
        line: usize,
    ) {
        if owner != self.owner {
            self.owner.clear();
            self.owner.extend_from_slice(owner);
            self.last = self.store.intern(owner);
        }
        let Some(node) = self.last else {
            if self.outside.len() <= MAX_DATA_ERRORS {
                self.outside
                    .push((file, line, store::name_from_wire(owner).to_ascii()));
            }
            return;
        };
        // Offsets into the arenas are 32-bit; names in RDATA are stored whole, so a file of
        // short relative names under a long origin can grow many times over in wire format.
        if self.data.len() + rdata.len() > MAX_RDATA_BYTES {
            self.too_large.get_or_insert((file, line));
            return;
        }
        let data = self.data.len() as u32;
        self.data.extend_from_slice(rdata);
        self.pending.push(Pending {
            node,
            rtype: rtype.into(),
            len: rdata.len() as u16,
            ttl,
            data,
            file,
            line: line as u32,
        });
    }
}

/// Most RDATA one zone may hold, in wire format: far above what the largest zone file allowed
/// (`file::MAX_ZONE_BYTES`) holds in practice, and below the store's 32-bit offsets.
const MAX_RDATA_BYTES: usize = 1 << 30;

/// Data errors reported per zone; the rest are counted.
const MAX_DATA_ERRORS: usize = 100;

/// Two RDATAs of one type are the same record: for the types that are a single domain name,
/// compared without case (RFC 4343), else octet for octet.
fn same_rdata(rtype: RecordType, a: &[u8], b: &[u8]) -> bool {
    if just_a_name(rtype) {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

/// Types whose RDATA is one domain name. Label length octets are below 64, so ASCII case
/// folding of such RDATA touches only the labels.
fn just_a_name(rtype: RecordType) -> bool {
    matches!(
        rtype,
        RecordType::NS | RecordType::CNAME | RecordType::PTR | RecordType::DNAME
    )
}

impl Builder {
    fn finish(mut self, zc: &ZoneConfig, sources: Vec<Source>) -> Result<Zone, Vec<ZoneError>> {
        let origin = zc.origin.clone();
        let zone_name = origin.to_ascii();
        let file_of = |i: u32| {
            sources
                .get(i as usize)
                .map_or_else(|| zc.file.clone(), |s| s.path.clone())
        };
        let mut errors = Vec::new();
        let mut suppressed = 0usize;
        let mut error = |file: u32, line: u32, message: String| {
            if errors.len() >= MAX_DATA_ERRORS {
                suppressed += 1;
                return;
            }
            errors.push(ZoneError::Data {
                file: file_of(file),
                line: line as usize,
                zone: zone_name.clone(),
                message,
            });
        };
        if let Some((file, line)) = self.too_large {
            error(
                file,
                line as u32,
                format!(
                    "the zone's record data passes {} MiB here, more than lbns holds for one zone",
                    MAX_RDATA_BYTES >> 20
                ),
            );
        }
        for (file, line, owner) in std::mem::take(&mut self.outside) {
            error(file, line as u32, format!("{owner} is outside the zone"));
        }
        let mut warnings = Vec::new();
        let mut pending = std::mem::take(&mut self.pending);
        // Stable: within a set, records keep the file's order (the first one's TTL wins).
        pending.sort_by_key(|p| (p.node, p.rtype));

        // Zone cuts first: whether data is below one does not depend on the order read.
        for p in &pending {
            if p.rtype == u16::from(RecordType::NS) && p.node != 0 {
                self.store.mark_cut(p.node);
            }
        }

        let data = std::mem::take(&mut self.data);
        let bytes = |p: &Pending| &data[p.data as usize..p.data as usize + p.len as usize];
        let mut kept: Vec<Pending> = Vec::new();
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        let mut records = 0;
        let mut i = 0;
        while i < pending.len() {
            let node = pending[i].node;
            let mut cname: Option<Pending> = None;
            let mut other: Option<RecordType> = None;
            while i < pending.len() && pending[i].node == node {
                let start = i;
                let code = pending[i].rtype;
                while i < pending.len() && pending[i].node == node && pending[i].rtype == code {
                    i += 1;
                }
                let group = &pending[start..i];
                let first = group[0];
                let rtype = RecordType::from(code);
                kept.clear();
                seen.clear();
                for p in group {
                    if !kept.is_empty() && rtype == RecordType::SOA {
                        error(
                            p.file,
                            p.line,
                            format!("second SOA record (the first is at line {})", first.line),
                        );
                        continue;
                    }
                    if !kept.is_empty() && rtype == RecordType::CNAME {
                        error(
                            p.file,
                            p.line,
                            format!(
                                "second CNAME at {} (the first is at line {}); RFC 2181 §10.1 \
                                 allows one",
                                self.store.name(node, &origin),
                                first.line
                            ),
                        );
                        continue;
                    }
                    // RFC 2181 §5: duplicate RRs in a set are meaningless; keep one. A large
                    // set is checked through a hash set, so a big RRset is not quadratic.
                    let duplicate = if group.len() <= 16 {
                        kept.iter().any(|k| same_rdata(rtype, bytes(k), bytes(p)))
                    } else {
                        let mut key = bytes(p).to_vec();
                        if just_a_name(rtype) {
                            key.make_ascii_lowercase();
                        }
                        !seen.insert(key)
                    };
                    if duplicate {
                        continue;
                    }
                    if p.ttl != first.ttl {
                        // RFC 2181 §5.2: all TTLs in an RRset must match. Use the first, as
                        // BIND does.
                        warnings.push(ZoneWarning {
                            file: file_of(p.file),
                            line: p.line as usize,
                            message: format!(
                                "TTL {} differs from the {rtype} set's TTL {} at {}; using {}",
                                p.ttl,
                                first.ttl,
                                self.store.name(node, &origin),
                                first.ttl
                            ),
                        });
                    }
                    kept.push(*p);
                }
                records += kept.len();
                self.store
                    .push_set(node, rtype, first.ttl, kept.iter().map(bytes));
                match rtype {
                    RecordType::SOA if node != 0 => {
                        error(first.file, first.line, "SOA record below the apex".into());
                    }
                    RecordType::CNAME => cname = Some(first),
                    _ => {
                        other.get_or_insert(rtype);
                    }
                }
                if self.store.has_cuts {
                    // Data below a cut is occluded (RFC 1034 §4.2.1): only address glue
                    // belongs there, and at the cut only NS and DS.
                    let is_glue = matches!(rtype, RecordType::A | RecordType::AAAA);
                    let at_cut_ok = matches!(rtype, RecordType::NS | RecordType::DS);
                    let at_cut = self.store.is_cut(node);
                    let below_cut = self.store.below_cut(node);
                    if (below_cut && !is_glue) || (at_cut && !at_cut_ok && !is_glue) {
                        warnings.push(ZoneWarning {
                            file: file_of(first.file),
                            line: first.line as usize,
                            message: format!(
                                "{rtype} at {} is below a delegation and will not be served",
                                self.store.name(node, &origin)
                            ),
                        });
                    }
                }
            }
            // RFC 1034 §3.6.2 / RFC 2181 §10.1: a CNAME owner has no other data.
            if let (Some(c), Some(other)) = (cname, other) {
                error(
                    c.file,
                    c.line,
                    format!(
                        "CNAME at {} cannot coexist with its {other} records",
                        self.store.name(node, &origin)
                    ),
                );
            }
        }
        drop(pending);
        drop(data);

        // SOA: exactly one, at the apex (RFC 1035 §5.2).
        let soa = self
            .store
            .rrset(0, RecordType::SOA)
            .and_then(|s| s.records(&origin).into_iter().next());
        let apex_error = |message: &str| ZoneError::Data {
            file: zc.file.clone(),
            line: 1,
            zone: zone_name.clone(),
            message: message.into(),
        };
        if soa.is_none() {
            errors.push(apex_error("no SOA record at the apex"));
        }
        if self.store.rrset(0, RecordType::NS).is_none() {
            errors.push(apex_error("no NS records at the apex"));
        }
        if suppressed > 0 {
            errors.push(ZoneError::Data {
                file: zc.file.clone(),
                line: 1,
                zone: zone_name.clone(),
                message: format!("{suppressed} more problems, not shown"),
            });
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut negative_soa = soa.expect("checked above");
        if let RData::SOA(s) = &negative_soa.data {
            negative_soa.ttl = negative_soa.ttl.min(s.minimum);
        }
        self.store.shrink();
        Ok(Zone {
            lower_origin: LowerName::new(&origin),
            origin,
            negative_soa,
            store: self.store,
            config: zc.clone(),
            sources,
            warnings,
            records,
        })
    }
}

/// Where a pool sits in a served zone: its index, or `None` for an empty non-terminal above a
/// pool (a name with no data of its own, RFC 8020).
#[derive(Debug, Clone, Copy)]
struct PoolSpot(Option<usize>);

/// A zone with the config's pools placed in it: what the resolver reads.
#[derive(Debug)]
pub(crate) struct Served {
    zone: Arc<Zone>,
    /// Lowercased wire-format names of pools and of the names above them that the zone
    /// lacks.
    pools: FxHashMap<Box<[u8]>, PoolSpot>,
}

/// A name of a served zone: zone data, a pool, or both (an empty non-terminal has neither).
#[derive(Clone, Copy)]
pub(crate) struct Node<'z> {
    zone: &'z Zone,
    id: Option<NodeId>,
    /// Index of the pool answering A/AAAA at this name, if any.
    pub(crate) pool: Option<usize>,
}

impl<'z> Node<'z> {
    /// The RRset of type `rtype` from the zone's files.
    pub(crate) fn rrset(&self, rtype: RecordType) -> Option<RRset<'z>> {
        self.zone.store.rrset(self.id?, rtype)
    }

    /// The RRset with the lowest type code (what ANY answers, RFC 8482 §4.2).
    pub(crate) fn first_rrset(&self) -> Option<RRset<'z>> {
        self.zone.store.rrsets(self.id?).next()
    }

    /// The name as the zone's file writes it.
    pub(crate) fn name(&self) -> Option<Name> {
        self.id
            .map(|id| self.zone.store.name(id, &self.zone.origin))
    }

    /// True if the node holds nothing: an empty non-terminal.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.pool.is_none() && self.first_rrset().is_none()
    }
}

impl Served {
    /// The zone's data.
    pub(crate) fn zone(&self) -> &Zone {
        &self.zone
    }

    /// The node named `name`, which must be at or below the apex.
    pub(crate) fn node(&self, name: &LowerName) -> Option<Node<'_>> {
        let key = Key::new(name);
        let id = self.zone.store.find(&key);
        let spot = if self.pools.is_empty() {
            None
        } else {
            self.pools.get(key.wire())
        };
        if id.is_none() && spot.is_none() {
            return None;
        }
        Some(Node {
            zone: &self.zone,
            id,
            pool: spot.and_then(|s| s.0),
        })
    }

    /// The highest zone cut at or above `name` (strictly below the apex), if any.
    pub(crate) fn cut_above(&self, name: &LowerName) -> Option<LowerName> {
        if !self.zone.store.has_cuts {
            return None;
        }
        let mut found = None;
        let mut n = name.clone();
        while n != self.zone.lower_origin && !n.is_root() {
            if let Some(id) = self.zone.store.find(&Key::new(&n))
                && self.zone.store.is_cut(id)
            {
                found = Some(n.clone());
            }
            n = n.base_name();
        }
        found
    }
}

/// Every served zone, found by closest enclosing origin.
#[derive(Debug, Default)]
pub struct ZoneSet {
    zones: Vec<Served>,
    by_origin: HashMap<LowerName, usize>,
    /// Label count of the deepest origin, to skip hashing names that are too long to match.
    max_labels: u8,
}

/// How a [`ZoneSet::load`] went: zones read, and zones kept from the previous set.
#[derive(Debug, Default, Clone, Copy)]
pub struct LoadStats {
    /// Zones read from their files.
    pub read: usize,
    /// Zones reused unchanged from the previous set.
    pub reused: usize,
}

impl ZoneSet {
    /// Loads every zone and places the pools in them. Collects every error before returning.
    /// A zone of `previous` whose config and files have not changed is reused, not read again.
    pub fn load(
        zones: &[ZoneConfig],
        pools: &[Pool],
        previous: Option<&ZoneSet>,
    ) -> Result<(ZoneSet, Vec<ZoneWarning>, LoadStats), Vec<ZoneError>> {
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        let mut stats = LoadStats::default();
        let mut set = ZoneSet::default();
        for zc in zones {
            let old = previous.and_then(|p| {
                p.zones
                    .iter()
                    .find(|s| s.zone.unchanged(zc))
                    .map(|s| s.zone.clone())
            });
            let zone = match old {
                Some(z) => {
                    stats.reused += 1;
                    z
                }
                None => match Zone::load(zc) {
                    Ok(z) => {
                        stats.read += 1;
                        Arc::new(z)
                    }
                    Err(mut e) => {
                        errors.append(&mut e);
                        continue;
                    }
                },
            };
            warnings.extend(zone.warnings.iter().cloned());
            set.max_labels = set.max_labels.max(zone.lower_origin.num_labels());
            set.by_origin
                .insert(zone.lower_origin.clone(), set.zones.len());
            set.zones.push(Served {
                zone,
                pools: FxHashMap::default(),
            });
        }
        if errors.is_empty() {
            for (index, pool) in pools.iter().enumerate() {
                if let Err(e) = set.place_pool(index, pool) {
                    errors.push(e);
                }
            }
        }
        if errors.is_empty() {
            Ok((set, warnings, stats))
        } else {
            Err(errors)
        }
    }

    fn index_of(&self, name: &LowerName) -> Option<usize> {
        let labels = name.num_labels();
        let mut candidate = if labels > self.max_labels {
            LowerName::new(&Name::from(name).trim_to(self.max_labels as usize))
        } else {
            name.clone()
        };
        loop {
            if let Some(&i) = self.by_origin.get(&candidate) {
                return Some(i);
            }
            if candidate.is_root() {
                return None;
            }
            candidate = candidate.base_name();
        }
    }

    /// The zone with the longest origin that is `name` or an ancestor of it.
    pub(crate) fn find(&self, name: &LowerName) -> Option<&Served> {
        self.index_of(name).map(|i| &self.zones[i])
    }

    /// The loaded zones, in the config's order.
    pub fn zones(&self) -> impl Iterator<Item = &Zone> {
        self.zones.iter().map(|s| &*s.zone)
    }

    fn place_pool(&mut self, index: usize, pool: &Pool) -> Result<(), ZoneError> {
        let name = LowerName::new(&pool.name);
        let fail = |message: String| ZoneError::Pool {
            place: pool.place.clone(),
            pool: pool.name.to_ascii(),
            message,
        };
        if pool.name.is_wildcard() {
            return Err(fail("a pool name cannot be a wildcard".into()));
        }
        let Some(zone_index) = self.index_of(&name) else {
            return Err(fail("is not inside any configured zone".into()));
        };
        let served = &mut self.zones[zone_index];
        if let Some(cut) = served.cut_above(&name) {
            return Err(fail(format!(
                "is at or below the delegation {cut} in zone {}",
                served.zone.origin
            )));
        }
        if let Some(node) = served.node(&name) {
            for rtype in [RecordType::A, RecordType::AAAA, RecordType::CNAME] {
                if node.rrset(rtype).is_some() {
                    return Err(fail(format!(
                        "zone {} already has {rtype} records at this name; the pool owns A and AAAA",
                        served.zone.lower_origin
                    )));
                }
            }
        }
        let key = Key::new(&name);
        served
            .pools
            .insert(key.wire().into(), PoolSpot(Some(index)));
        // The names above the pool that the zone lacks answer NODATA, not NXDOMAIN (RFC 8020).
        let mut n = name.base_name();
        while n != served.zone.lower_origin && !n.is_root() {
            let key = Key::new(&n);
            if served.zone.store.find(&key).is_none() {
                served
                    .pools
                    .entry(key.wire().into())
                    .or_insert(PoolSpot(None));
            }
            n = n.base_name();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn load(zone: &str, pools: &[&str]) -> Result<(ZoneSet, Vec<ZoneWarning>), String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("z.zone"), zone).unwrap();
        let mut toml = format!(
            "[[zone]]\norigin = \"cluster.example.\"\nfile = \"{}\"\n",
            dir.path().join("z.zone").display()
        );
        for p in pools {
            toml.push_str(&format!(
                "[[pool]]\nname = \"{p}\"\nbackends = [\"127.0.0.2\"]\n"
            ));
        }
        let config = crate::config::Config::parse(&toml, Path::new("t.toml")).unwrap();
        let model = crate::domain::Model::new(&config);
        ZoneSet::load(&config.zones, &model.pools, None)
            .map(|(set, warnings, _)| (set, warnings))
            .map_err(|errs| {
                errs.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            })
    }

    const HEAD: &str =
        "$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 60\n  NS ns1\nns1 A 127.0.0.1\n";

    #[test]
    fn finds_closest_zone_and_empty_non_terminals() {
        let (set, warnings) = load(&format!("{HEAD}a.b.c A 127.0.0.5\n"), &[]).unwrap();
        assert!(warnings.is_empty());
        let lower = |s: &str| LowerName::new(&Name::from_ascii(s).unwrap());
        let zone = set.find(&lower("x.y.CLUSTER.example.")).unwrap();
        assert_eq!(zone.zone().origin.to_ascii(), "cluster.example.");
        assert!(set.find(&lower("example.")).is_none());
        assert!(
            zone.node(&lower("b.c.cluster.example."))
                .unwrap()
                .is_empty()
        );
        assert_eq!(zone.zone().negative_soa.ttl, 60);
    }

    #[test]
    fn data_rules_are_enforced() {
        let err = load(
            &format!(
                "{HEAD}www CNAME a\nwww TXT x\nother.example. A 127.0.0.1\n@ SOA ns1 h 2 1 1 1 1\n"
            ),
            &[],
        )
        .unwrap_err();
        assert!(err.contains("z.zone:5: zone cluster.example.: CNAME at www.cluster.example. cannot coexist with its TXT"), "{err}");
        assert!(err.contains("other.example. is outside the zone"), "{err}");
        assert!(
            err.contains("second SOA record (the first is at line 2)"),
            "{err}"
        );
        let err = load("$TTL 1\nwww A 127.0.0.1\n", &[]).unwrap_err();
        assert!(err.contains("no SOA record at the apex"), "{err}");
        assert!(err.contains("no NS records at the apex"), "{err}");
    }

    #[test]
    fn pools_must_fit_their_zone() {
        let zone = format!("{HEAD}www A 127.0.0.9\nsub NS ns.sub\nns.sub A 127.0.0.10\n");
        let err = load(&zone, &["www.cluster.example.", "x.sub.cluster.example."]).unwrap_err();
        assert!(
            err.contains("pool www.cluster.example.: zone cluster.example. already has A records"),
            "{err}"
        );
        assert!(
            err.contains(
                "pool x.sub.cluster.example.: is at or below the delegation sub.cluster.example."
            ),
            "{err}"
        );
        let (set, _) = load(&zone, &["api.deep.cluster.example."]).unwrap();
        let zone = &set.zones[0];
        let deep = LowerName::new(&Name::from_ascii("deep.cluster.example.").unwrap());
        assert!(zone.node(&deep).unwrap().is_empty());
    }

    #[test]
    fn ttl_mismatch_and_occluded_data_warn() {
        let (_, warnings) = load(
            &format!("{HEAD}a 10 A 127.0.0.2\na 20 A 127.0.0.3\nsub NS ns1\nx.sub TXT hi\n"),
            &[],
        )
        .unwrap();
        let text: Vec<String> = warnings.iter().map(ToString::to_string).collect();
        assert!(
            text.iter().any(|w| w.contains("TTL 20 differs")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|w| w.contains("TXT at x.sub.cluster.example. is below a delegation")),
            "{text:?}"
        );
    }

    /// The compact store against a plain map built by hickory's own master-file parser from
    /// the same text: every name (and every name above one, RFC 8020) is found and nothing else
    /// is, in any case; each RRset holds the same records; zone cuts are where the NS sets are.
    #[test]
    fn the_store_agrees_with_hickorys_parser_on_a_generated_zone() {
        use hickory_proto::serialize::txt::Parser;
        use std::collections::{BTreeMap, BTreeSet};

        // A deterministic generator: names from a small alphabet so that names share
        // ancestors, mixed case, wildcards, delegations with glue, TXT and AAAA sets.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let labels = ["a", "B", "c", "dd", "Ee", "f-g", "h1", "*"];
        let mut text = String::from(HEAD);
        for i in 0..3000 {
            let depth = 1 + next(4);
            let mut name = Vec::new();
            for d in 0..depth {
                let l = labels[next(labels.len() as u64) as usize];
                // `*` only as the first label, as a wildcard.
                if l == "*" && d + 1 != depth {
                    name.push("x".to_owned());
                } else {
                    name.push(l.to_owned());
                }
            }
            name.reverse();
            let owner = name.join(".");
            match next(10) {
                0 if !owner.starts_with('*') => {
                    text.push_str(&format!(
                        "{owner} NS ns.{owner}\nns.{owner} A 192.0.2.{}\n",
                        i % 250
                    ));
                }
                1..=3 => text.push_str(&format!("{owner} TXT \"t{i}\"\n")),
                4 => text.push_str(&format!("{owner} AAAA 2001:db8::{i:x}\n")),
                _ => text.push_str(&format!("{owner} A 10.0.{}.{}\n", i / 250, i % 250)),
            }
        }
        let (set, _) = load(&text, &[]).unwrap();
        let served = &set.zones[0];
        let origin = Name::from_ascii("cluster.example.").unwrap();
        let (_, reference) = Parser::new(text.as_str(), None, Some(origin.clone()))
            .parse()
            .unwrap();

        // Every owner and every name between it and the apex.
        let mut names: BTreeSet<LowerName> = BTreeSet::new();
        let mut sets: BTreeMap<(LowerName, RecordType), BTreeSet<String>> = BTreeMap::new();
        for (key, rrset) in &reference {
            let mut n = key.name.clone();
            loop {
                names.insert(n.clone());
                if n == served.zone.lower_origin {
                    break;
                }
                n = n.base_name();
            }
            let records = rrset.records_without_rrsigs().map(|r| r.data.to_string());
            sets.entry((key.name.clone(), key.record_type))
                .or_default()
                .extend(records);
        }
        let mut asked = 0;
        for name in &names {
            // The same name with its case flipped letter by letter.
            let flipped: String = name
                .to_string()
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    if i % 2 == 0 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect();
            let query = LowerName::new(&Name::from_ascii(&flipped).unwrap());
            let node = served
                .node(&query)
                .unwrap_or_else(|| panic!("{name} not found"));
            for rtype in [
                RecordType::A,
                RecordType::AAAA,
                RecordType::TXT,
                RecordType::NS,
            ] {
                let want = sets.get(&(name.clone(), rtype));
                let got: Option<BTreeSet<String>> = node.rrset(rtype).map(|s| {
                    s.records(&Name::from(name))
                        .iter()
                        .map(|r| r.data.to_string())
                        .collect()
                });
                assert_eq!(got.as_ref(), want, "{name} {rtype}");
            }
            // The highest NS owner strictly between the apex and the name.
            let mut cut = None;
            let mut n = name.clone();
            while n != served.zone.lower_origin {
                if sets.contains_key(&(n.clone(), RecordType::NS)) {
                    cut = Some(n.clone());
                }
                n = n.base_name();
            }
            assert_eq!(served.cut_above(&query), cut, "cut above {name}");
            // A name below it that no record has is not found.
            let missing = LowerName::new(&Name::from(name).prepend_label("zz-none").unwrap());
            assert!(served.node(&missing).is_none(), "{missing} found");
            asked += 1;
        }
        assert_eq!(
            asked,
            served.zone.len(),
            "names in the store and in the reference"
        );
        assert!(asked > 500, "{asked} names only");
    }
}
