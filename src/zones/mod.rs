//! Static zone data: master files loaded, checked, and indexed for lookups.
//!
//! A [`ZoneSet`] is immutable once built and shared by every snapshot until the next reload.
//! Loading checks what BIND's `named-checkzone` and Knot's `kzonecheck` check (one SOA at the
//! apex, apex NS, CNAME exclusivity, out-of-zone data) plus the pools that live in the zones:
//! a pool name must be inside a zone, not below a delegation, and not collide with A, AAAA or
//! CNAME data from the file.

mod file;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};

use crate::config::{Place, ZoneConfig};
use crate::domain::Pool;
use file::SourcedRecord;

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

/// All records of one type at one owner name.
#[derive(Debug, Clone)]
pub(crate) struct RRset {
    pub(crate) rtype: RecordType,
    pub(crate) records: Vec<Record>,
}

/// One owner name in a zone. Empty non-terminals (RFC 8020) are nodes with no data.
#[derive(Debug, Default)]
pub(crate) struct Node {
    /// Sorted by type code, so ANY picks the same RRset every time.
    pub(crate) rrsets: Vec<RRset>,
    /// NS here and not at the apex: a zone cut (RFC 1034 §4.2.1).
    pub(crate) cut: bool,
    /// Index of the pool answering A/AAAA at this name, if any.
    pub(crate) pool: Option<usize>,
}

impl Node {
    pub(crate) fn rrset(&self, rtype: RecordType) -> Option<&RRset> {
        self.rrsets.iter().find(|s| s.rtype == rtype)
    }

    /// True if the node holds nothing: an empty non-terminal.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.rrsets.is_empty() && self.pool.is_none()
    }
}

/// One authoritative zone.
#[derive(Debug)]
pub struct Zone {
    /// The apex, from `[[zone]] origin`.
    pub origin: Name,
    pub(crate) lower_origin: LowerName,
    /// The SOA for negative answers: TTL = min(SOA TTL, SOA MINIMUM) (RFC 2308 §3).
    pub(crate) negative_soa: Record,
    nodes: HashMap<LowerName, Node>,
}

impl Zone {
    pub(crate) fn node(&self, name: &LowerName) -> Option<&Node> {
        self.nodes.get(name)
    }

    /// Number of owner names, empty non-terminals included.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when the zone has no names; never for a loaded zone, whose apex holds its SOA.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

/// Every served zone, found by closest enclosing origin.
#[derive(Debug, Default)]
pub struct ZoneSet {
    zones: Vec<Zone>,
    by_origin: HashMap<LowerName, usize>,
    /// Label count of the deepest origin, to skip hashing names that are too long to match.
    max_labels: u8,
}

impl ZoneSet {
    /// Loads every zone and places the pools in them. Collects every error before returning.
    pub fn load(
        zones: &[ZoneConfig],
        pools: &[Pool],
    ) -> Result<(ZoneSet, Vec<ZoneWarning>), Vec<ZoneError>> {
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        let mut set = ZoneSet::default();
        for zc in zones {
            let (records, mut syntax) =
                file::read_zone_file(&zc.file, &zc.origin, &zc.include_dirs);
            let unreadable = matches!(syntax.first(), Some(ZoneError::Read { .. }));
            errors.append(&mut syntax);
            if unreadable {
                continue;
            }
            match build_zone(zc, records, &mut warnings) {
                Ok(zone) => {
                    set.max_labels = set.max_labels.max(zone.lower_origin.num_labels());
                    set.by_origin
                        .insert(zone.lower_origin.clone(), set.zones.len());
                    set.zones.push(zone);
                }
                Err(mut e) => errors.append(&mut e),
            }
        }
        if errors.is_empty() {
            for (index, pool) in pools.iter().enumerate() {
                if let Err(e) = set.place_pool(index, pool) {
                    errors.push(e);
                }
            }
        }
        if errors.is_empty() {
            Ok((set, warnings))
        } else {
            Err(errors)
        }
    }

    /// The zone with the longest origin that is `name` or an ancestor of it.
    pub(crate) fn find(&self, name: &LowerName) -> Option<&Zone> {
        let labels = name.num_labels();
        let mut candidate = if labels > self.max_labels {
            LowerName::new(&Name::from(name).trim_to(self.max_labels as usize))
        } else {
            name.clone()
        };
        loop {
            if let Some(&i) = self.by_origin.get(&candidate) {
                return Some(&self.zones[i]);
            }
            if candidate.is_root() {
                return None;
            }
            candidate = candidate.base_name();
        }
    }

    /// The loaded zones, in the config's order.
    pub fn zones(&self) -> &[Zone] {
        &self.zones
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
        let Some(zone_index) = self.find(&name).map(|z| self.by_origin[&z.lower_origin]) else {
            return Err(fail("is not inside any configured zone".into()));
        };
        let zone = &mut self.zones[zone_index];
        if let Some(cut) = zone.cut_above(&name) {
            return Err(fail(format!(
                "is at or below the delegation {cut} in zone {}",
                zone.origin
            )));
        }
        let origin = zone.lower_origin.clone();
        let node = zone.nodes.entry(name.clone()).or_default();
        for rtype in [RecordType::A, RecordType::AAAA, RecordType::CNAME] {
            if node.rrset(rtype).is_some() {
                return Err(fail(format!(
                    "zone {origin} already has {rtype} records at this name; the pool owns A and AAAA"
                )));
            }
        }
        node.pool = Some(index);
        add_ancestors(&mut zone.nodes, &name, &origin);
        Ok(())
    }
}

impl Zone {
    /// The highest zone cut at or above `name` (strictly below the apex), if any.
    pub(crate) fn cut_above(&self, name: &LowerName) -> Option<LowerName> {
        let mut found = None;
        let mut n = name.clone();
        while n != self.lower_origin && !n.is_root() {
            if self.nodes.get(&n).is_some_and(|node| node.cut) {
                found = Some(n.clone());
            }
            n = n.base_name();
        }
        found
    }
}

/// Inserts empty nodes for the ancestors of `name` below `origin`, so that empty non-terminals
/// answer NODATA rather than NXDOMAIN (RFC 8020, RFC 4592 §2.2.2).
fn add_ancestors(nodes: &mut HashMap<LowerName, Node>, name: &LowerName, origin: &LowerName) {
    let mut n = name.clone();
    while n != *origin && !n.is_root() {
        n = n.base_name();
        nodes.entry(n.clone()).or_default();
    }
}

fn build_zone(
    zc: &ZoneConfig,
    records: Vec<SourcedRecord>,
    warnings: &mut Vec<ZoneWarning>,
) -> Result<Zone, Vec<ZoneError>> {
    let origin = zc.origin.clone();
    let lower_origin = LowerName::new(&origin);
    let zone_name = origin.to_ascii();
    let mut errors = Vec::new();
    let data_error = |r: &SourcedRecord, message: String| ZoneError::Data {
        file: r.file.clone(),
        line: r.line,
        zone: zone_name.clone(),
        message,
    };

    // Group into RRsets, remembering where each set was first seen.
    let mut sets: HashMap<(LowerName, RecordType), (RRset, SourcedRecord)> = HashMap::new();
    let mut order: Vec<(LowerName, RecordType)> = Vec::new();
    for r in records {
        let owner = LowerName::new(&r.record.name);
        if !lower_origin.zone_of(&owner) {
            errors.push(data_error(
                &r,
                format!("{} is outside the zone", r.record.name),
            ));
            continue;
        }
        let rtype = r.record.record_type();
        let key = (owner, rtype);
        match sets.get_mut(&key) {
            None => {
                order.push(key.clone());
                let set = RRset {
                    rtype,
                    records: vec![r.record.clone()],
                };
                sets.insert(key, (set, r));
            }
            Some((set, first)) => {
                if rtype == RecordType::SOA {
                    errors.push(data_error(
                        &r,
                        format!("second SOA record (the first is at line {})", first.line),
                    ));
                    continue;
                }
                if rtype == RecordType::CNAME {
                    errors.push(data_error(
                        &r,
                        format!(
                            "second CNAME at {} (the first is at line {}); RFC 2181 §10.1 allows one",
                            r.record.name, first.line
                        ),
                    ));
                    continue;
                }
                // RFC 2181 §5: duplicate RRs in a set are meaningless; keep one.
                if set.records.iter().any(|x| x.data == r.record.data) {
                    continue;
                }
                let mut rec = r.record.clone();
                if rec.ttl != set.records[0].ttl {
                    // RFC 2181 §5.2: all TTLs in an RRset must match. Use the first, as BIND does.
                    warnings.push(ZoneWarning {
                        file: r.file.clone(),
                        line: r.line,
                        message: format!(
                            "TTL {} differs from the {rtype} set's TTL {} at {}; using {}",
                            rec.ttl, set.records[0].ttl, rec.name, set.records[0].ttl
                        ),
                    });
                    rec.ttl = set.records[0].ttl;
                }
                set.records.push(rec);
            }
        }
    }

    let mut nodes: HashMap<LowerName, Node> = HashMap::new();
    for key in &order {
        let (set, _) = &sets[key];
        nodes
            .entry(key.0.clone())
            .or_default()
            .rrsets
            .push(set.clone());
    }

    // SOA: exactly one, at the apex (RFC 1035 §5.2).
    let soa = match sets.get(&(lower_origin.clone(), RecordType::SOA)) {
        Some((set, _)) => Some(set.records[0].clone()),
        None => {
            errors.push(ZoneError::Data {
                file: zc.file.clone(),
                line: 1,
                zone: zone_name.clone(),
                message: "no SOA record at the apex".into(),
            });
            None
        }
    };
    if !sets.contains_key(&(lower_origin.clone(), RecordType::NS)) {
        errors.push(ZoneError::Data {
            file: zc.file.clone(),
            line: 1,
            zone: zone_name.clone(),
            message: "no NS records at the apex".into(),
        });
    }

    for key in &order {
        let (set, first) = &sets[key];
        let (owner, rtype) = key;
        let at_apex = *owner == lower_origin;
        match rtype {
            RecordType::SOA if !at_apex => {
                errors.push(data_error(first, "SOA record below the apex".into()));
            }
            RecordType::CNAME => {
                // RFC 1034 §3.6.2 / RFC 2181 §10.1: a CNAME owner has no other data.
                let node = &nodes[owner];
                if let Some(other) = node.rrsets.iter().find(|s| s.rtype != RecordType::CNAME) {
                    errors.push(data_error(
                        first,
                        format!(
                            "CNAME at {} cannot coexist with its {} records",
                            set.records[0].name, other.rtype
                        ),
                    ));
                }
            }
            RecordType::NS if !at_apex => {
                if let Some(node) = nodes.get_mut(owner) {
                    node.cut = true;
                }
            }
            _ => {}
        }
    }

    // Data below a cut is occluded (RFC 1034 §4.2.1): only address glue belongs there.
    let cuts: Vec<LowerName> = nodes
        .iter()
        .filter(|(_, n)| n.cut)
        .map(|(k, _)| k.clone())
        .collect();
    for key in &order {
        let (owner, rtype) = key;
        let below_cut = cuts.iter().any(|c| c != owner && c.zone_of(owner));
        let at_cut_ok = matches!(rtype, RecordType::NS | RecordType::DS);
        let is_glue = matches!(rtype, RecordType::A | RecordType::AAAA);
        let at_cut = cuts.contains(owner);
        if (below_cut && !is_glue) || (at_cut && !at_cut_ok && !is_glue) {
            let (_, first) = &sets[key];
            warnings.push(ZoneWarning {
                file: first.file.clone(),
                line: first.line,
                message: format!(
                    "{rtype} at {} is below a delegation and will not be served",
                    first.record.name
                ),
            });
        }
    }

    for node in nodes.values_mut() {
        node.rrsets.sort_by_key(|s| u16::from(s.rtype));
    }
    let names: Vec<LowerName> = nodes.keys().cloned().collect();
    for n in &names {
        add_ancestors(&mut nodes, n, &lower_origin);
    }

    if !errors.is_empty() {
        return Err(errors);
    }
    let mut negative_soa = soa.expect("checked above");
    if let RData::SOA(s) = &negative_soa.data {
        negative_soa.ttl = negative_soa.ttl.min(s.minimum);
    }
    Ok(Zone {
        origin,
        lower_origin,
        negative_soa,
        nodes,
    })
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
        ZoneSet::load(&config.zones, &model.pools).map_err(|errs| {
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
        assert_eq!(zone.origin.to_ascii(), "cluster.example.");
        assert!(set.find(&lower("example.")).is_none());
        assert!(
            zone.node(&lower("b.c.cluster.example."))
                .unwrap()
                .is_empty()
        );
        assert_eq!(zone.negative_soa.ttl, 60);
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
        let zone = &set.zones()[0];
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
}
