//! The compact zone store: one zone's names and RDATA in a few flat arenas, found through an
//! open-addressing index, with no heap allocation per name or record.
//!
//! A zone is a tree below its apex. Each node stores only its own label (in the `labels`
//! arena, original case) and its parent's index, so a name costs one label however deep it
//! is, and the empty non-terminals every name implies (RFC 8020, RFC 4592 §2.2.2) come with it
//! for free. The index maps the hash of a lowercased wire-format name to a node; a lookup
//! hashes the question's name once and compares labels up the parent chain. RRsets are runs of
//! records in the `data` arena, each record its RDATA in uncompressed wire format behind a
//! two-octet length, sorted by type per node; they are decoded into hickory records only when
//! the full resolver builds an answer (the UDP fast path answers from its template cache).
//!
//! For a zone of a million A records this is about 60 bytes per record, against about 1 KB
//! for a map of hickory `Record`s and about 300 bytes in Knot.

use std::hash::Hasher;

use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecoder, Restrict};
use rustc_hash::FxHasher;

/// Index slot with no node.
const EMPTY: u64 = u64::MAX;

/// A name in lowercased wire format with its hash: what a lookup computes once.
pub(crate) struct Key {
    wire: [u8; 255],
    len: usize,
    hash: u32,
}

impl Key {
    /// The key of `name` (lowercased already, as a [`LowerName`] is).
    pub(crate) fn new(name: &LowerName) -> Key {
        let mut key = Key {
            wire: [0; 255],
            len: 0,
            hash: 0,
        };
        for label in name.iter() {
            key.push_label(label);
        }
        key.finish();
        key
    }

    /// The key of a name given in wire format (any case).
    pub(crate) fn from_wire(wire: &[u8]) -> Key {
        let mut key = Key {
            wire: [0; 255],
            len: 0,
            hash: 0,
        };
        for label in Labels(wire) {
            key.push_label(label);
        }
        key.finish();
        key
    }

    fn push_label(&mut self, label: &[u8]) {
        // A name is at most 255 octets (RFC 1035 §3.1); hickory enforces it on parse.
        let end = self.len + 1 + label.len();
        if end >= self.wire.len() {
            return;
        }
        self.wire[self.len] = label.len() as u8;
        for (d, s) in self.wire[self.len + 1..end].iter_mut().zip(label) {
            *d = s.to_ascii_lowercase();
        }
        self.len = end;
    }

    fn finish(&mut self) {
        self.wire[self.len] = 0;
        self.len += 1;
        self.hash = hash(&self.wire[..self.len]);
    }

    /// The lowercased wire format.
    pub(crate) fn wire(&self) -> &[u8] {
        &self.wire[..self.len]
    }

    /// The labels from the first (leftmost) on, without the root.
    fn labels(&self) -> Labels<'_> {
        Labels(self.wire())
    }
}

/// Hash of a lowercased wire-format name, folded to 32 bits. FxHash ends with a multiply, so
/// its low bits (the bucket) are weak for names that differ in a few characters; a final
/// avalanche (MurmurHash3's fmix64) spreads them.
fn hash(wire: &[u8]) -> u32 {
    let mut h = FxHasher::default();
    h.write(wire);
    let mut v = h.finish();
    v ^= v >> 33;
    v = v.wrapping_mul(0xff51_afd7_ed55_8ccd);
    v ^= v >> 33;
    v = v.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    v ^= v >> 33;
    v as u32
}

/// The labels of a wire-format name, leftmost first, up to (not including) the root.
struct Labels<'a>(&'a [u8]);

impl<'a> Iterator for Labels<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let (&len, rest) = self.0.split_first()?;
        if len == 0 || rest.len() < len as usize {
            return None;
        }
        let (label, rest) = rest.split_at(len as usize);
        self.0 = rest;
        Some(label)
    }
}

/// One name of the zone.
#[derive(Debug, Clone, Copy)]
struct NodeEntry {
    /// Offset of the label (a length octet, then the label) in `labels`; unused at the apex.
    label: u32,
    /// The parent node; the apex is its own parent.
    parent: u32,
    /// First RRset in `sets`.
    sets: u32,
    /// Number of RRsets.
    sets_len: u16,
    /// Labels below the apex (0 for the apex).
    depth: u8,
    /// NS here and not at the apex: a zone cut (RFC 1034 §4.2.1).
    cut: bool,
}

/// One RRset: `count` records from `data` on.
#[derive(Debug, Clone, Copy)]
struct SetEntry {
    rtype: u16,
    ttl: u32,
    data: u32,
    count: u32,
}

/// The names and data of one zone, immutable once built. See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Store {
    labels: Vec<u8>,
    nodes: Vec<NodeEntry>,
    /// `hash << 32 | node`, or [`EMPTY`]; the bucket is `hash & (len - 1)`.
    index: Vec<u64>,
    sets: Vec<SetEntry>,
    data: Vec<u8>,
    /// Labels of the apex name, to tell how deep a question is below it.
    apex_labels: u8,
    /// The apex in lowercased wire format: a name is in the zone only if it ends so.
    apex: Vec<u8>,
    /// True when the zone has a delegation: otherwise no lookup needs to look for one.
    pub(crate) has_cuts: bool,
}

/// A node of a [`Store`], by index.
pub(crate) type NodeId = u32;

impl Store {
    /// An empty store for the zone at `apex`, holding only the apex node.
    pub(crate) fn new(apex: &LowerName) -> Store {
        let key = Key::new(apex);
        let mut store = Store {
            apex_labels: key.labels().count() as u8,
            apex: key.wire().to_vec(),
            ..Store::default()
        };
        store.nodes.push(NodeEntry {
            label: 0,
            parent: 0,
            sets: 0,
            sets_len: 0,
            depth: 0,
            cut: false,
        });
        store.index = vec![EMPTY; 16];
        store.insert_slot(key.hash, 0);
        store
    }

    /// Number of names, empty non-terminals included.
    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Bytes held by the arenas (for `lbns check` and the tests' memory accounting).
    pub(crate) fn bytes(&self) -> usize {
        self.labels.capacity()
            + self.nodes.capacity() * size_of::<NodeEntry>()
            + self.index.capacity() * size_of::<u64>()
            + self.sets.capacity() * size_of::<SetEntry>()
            + self.data.capacity()
    }

    /// The node named `key`; `None` for a name not in the zone (nor below its apex).
    pub(crate) fn find(&self, key: &Key) -> Option<NodeId> {
        let depth = self.depth_of(key)?;
        let mask = self.index.len() - 1;
        let mut slot = key.hash as usize & mask;
        loop {
            let entry = self.index[slot];
            if entry == EMPTY {
                return None;
            }
            if (entry >> 32) as u32 == key.hash {
                let id = entry as u32;
                if self.matches(id, key, depth) {
                    return Some(id);
                }
            }
            slot = (slot + 1) & mask;
        }
    }

    /// How many labels `key` has below the apex, if it is at or below it.
    fn depth_of(&self, key: &Key) -> Option<usize> {
        let labels = key.labels().count();
        let depth = labels.checked_sub(self.apex_labels as usize)?;
        let wire = key.wire();
        let suffix = wire.len().checked_sub(self.apex.len())?;
        (wire[suffix..] == self.apex[..]).then_some(depth)
    }

    /// True if node `id` is the name `key`, `depth` labels below the apex.
    fn matches(&self, id: NodeId, key: &Key, depth: usize) -> bool {
        if self.nodes[id as usize].depth as usize != depth {
            return false;
        }
        let mut node = id;
        for label in key.labels().take(depth) {
            let n = &self.nodes[node as usize];
            if !self.label(n).eq_ignore_ascii_case(label) {
                return false;
            }
            node = n.parent;
        }
        true
    }

    fn label(&self, n: &NodeEntry) -> &[u8] {
        let start = n.label as usize;
        let len = self.labels[start] as usize;
        &self.labels[start + 1..start + 1 + len]
    }

    /// The name of node `id`: its labels as stored (the file's case) under `apex`.
    pub(crate) fn name(&self, id: NodeId, apex: &Name) -> Name {
        let mut labels: Vec<&[u8]> = Vec::new();
        let mut node = id;
        while node != 0 {
            let n = &self.nodes[node as usize];
            labels.push(self.label(n));
            node = n.parent;
        }
        labels.extend(apex.iter());
        Name::from_labels(labels).unwrap_or_else(|_| apex.clone())
    }

    /// True if `id` is a zone cut (NS below the apex).
    pub(crate) fn is_cut(&self, id: NodeId) -> bool {
        self.nodes[id as usize].cut
    }

    /// The node's parent (the apex is its own).
    #[cfg(test)]
    fn parent(&self, id: NodeId) -> NodeId {
        self.nodes[id as usize].parent
    }

    /// The node's RRsets, sorted by type code.
    pub(crate) fn rrsets(&self, id: NodeId) -> impl Iterator<Item = RRset<'_>> {
        let n = &self.nodes[id as usize];
        self.sets[n.sets as usize..n.sets as usize + n.sets_len as usize]
            .iter()
            .map(move |set| RRset { store: self, set })
    }

    /// The node's RRset of type `rtype`.
    pub(crate) fn rrset(&self, id: NodeId, rtype: RecordType) -> Option<RRset<'_>> {
        let code = u16::from(rtype);
        self.rrsets(id).find(|s| s.set.rtype == code)
    }

    fn insert_slot(&mut self, hash: u32, id: NodeId) {
        let mask = self.index.len() - 1;
        let mut slot = hash as usize & mask;
        while self.index[slot] != EMPTY {
            slot = (slot + 1) & mask;
        }
        self.index[slot] = (u64::from(hash) << 32) | u64::from(id);
    }

    /// Doubles the index when it is 3/4 full, re-placing entries by their stored hash.
    fn grow_if_needed(&mut self) {
        if (self.nodes.len() + 1) * 4 < self.index.len() * 3 {
            return;
        }
        let size = self.index.len() * 2;
        let old = std::mem::replace(&mut self.index, vec![EMPTY; size]);
        for entry in old {
            if entry != EMPTY {
                self.insert_slot((entry >> 32) as u32, entry as u32);
            }
        }
    }

    /// The node named `wire` (any case, at or below the apex), added with its missing
    /// ancestors if new. `None` if the name is not below the apex.
    pub(crate) fn intern(&mut self, wire: &[u8]) -> Option<NodeId> {
        let key = Key::from_wire(wire);
        if let Some(id) = self.find(&key) {
            return Some(id);
        }
        // Not found: a new name below the apex (depth 0 would be the apex, always present).
        let depth = self.depth_of(&key).filter(|&d| d > 0)?;
        // The parent: the name without its first label.
        let first = wire[0] as usize;
        let parent = self.intern(&wire[1 + first..])?;
        self.grow_if_needed();
        let id = u32::try_from(self.nodes.len()).ok()?;
        let label = u32::try_from(self.labels.len()).ok()?;
        self.labels.extend_from_slice(&wire[..1 + first]);
        self.nodes.push(NodeEntry {
            label,
            parent,
            sets: 0,
            sets_len: 0,
            depth: depth as u8,
            cut: false,
        });
        self.insert_slot(key.hash, id);
        Some(id)
    }

    /// Appends one RRset for node `id` (whose sets must be appended together, in type order):
    /// each of `rdatas` is one record's RDATA in wire format.
    pub(crate) fn push_set<'r>(
        &mut self,
        id: NodeId,
        rtype: RecordType,
        ttl: u32,
        rdatas: impl Iterator<Item = &'r [u8]>,
    ) {
        let data = self.data.len() as u32;
        let mut count = 0;
        for r in rdatas {
            self.data.extend_from_slice(&(r.len() as u16).to_be_bytes());
            self.data.extend_from_slice(r);
            count += 1;
        }
        let set_index = self.sets.len() as u32;
        self.sets.push(SetEntry {
            rtype: rtype.into(),
            ttl,
            data,
            count,
        });
        let node = &mut self.nodes[id as usize];
        if node.sets_len == 0 {
            node.sets = set_index;
        }
        node.sets_len += 1;
    }

    /// Marks node `id` as a zone cut (NS below the apex, RFC 1034 §4.2.1).
    pub(crate) fn mark_cut(&mut self, id: NodeId) {
        self.nodes[id as usize].cut = true;
        self.has_cuts = true;
    }

    /// True if a name strictly above `id` and below the apex is a zone cut.
    pub(crate) fn below_cut(&self, id: NodeId) -> bool {
        let mut node = self.nodes[id as usize].parent;
        while node != 0 {
            let n = &self.nodes[node as usize];
            if n.cut {
                return true;
            }
            node = n.parent;
        }
        false
    }

    /// Gives back what the arenas reserved beyond their contents.
    pub(crate) fn shrink(&mut self) {
        self.labels.shrink_to_fit();
        self.nodes.shrink_to_fit();
        self.sets.shrink_to_fit();
        self.data.shrink_to_fit();
    }
}

/// One RRset of a [`Store`].
#[derive(Clone, Copy)]
pub(crate) struct RRset<'s> {
    store: &'s Store,
    set: &'s SetEntry,
}

impl<'s> RRset<'s> {
    /// The set's type.
    pub(crate) fn rtype(&self) -> RecordType {
        RecordType::from(self.set.rtype)
    }

    /// Each record's RDATA, in wire format.
    pub(crate) fn rdatas(&self) -> impl Iterator<Item = &'s [u8]> + 's {
        let mut at = self.set.data as usize;
        let data = &self.store.data;
        (0..self.set.count).map(move |_| {
            let len = u16::from_be_bytes([data[at], data[at + 1]]) as usize;
            let r = &data[at + 2..at + 2 + len];
            at += 2 + len;
            r
        })
    }

    /// The records, decoded, with owner `owner`. RDATA that does not decode (it was encoded
    /// by the same library at load, so never in practice) is left out rather than failing
    /// the answer.
    pub(crate) fn records(&self, owner: &Name) -> Vec<Record> {
        let rtype = self.rtype();
        self.rdatas()
            .filter_map(|bytes| {
                let data = decode(rtype, bytes)?;
                Some(Record::from_rdata(owner.clone(), self.set.ttl, data))
            })
            .collect()
    }
}

/// RDATA of type `rtype` from its wire format.
pub(crate) fn decode(rtype: RecordType, bytes: &[u8]) -> Option<RData> {
    let mut decoder = BinDecoder::new(bytes);
    RData::read(&mut decoder, rtype, Restrict::new(bytes.len() as u16)).ok()
}

/// `name` in wire format, as written (case kept), uncompressed.
pub(crate) fn wire(name: &Name, out: &mut Vec<u8>) {
    for label in name.iter() {
        out.push(label.len() as u8);
        out.extend_from_slice(label);
    }
    out.push(0);
}

/// A name read back from wire format (for messages about it); the root if it does not parse.
pub(crate) fn name_from_wire(wire: &[u8]) -> Name {
    use hickory_proto::serialize::binary::BinDecodable;
    Name::read(&mut BinDecoder::new(wire)).unwrap_or_else(|_| Name::root())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lower(s: &str) -> LowerName {
        LowerName::new(&Name::from_ascii(s).unwrap())
    }

    fn w(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        wire(&Name::from_ascii(s).unwrap(), &mut out);
        out
    }

    #[test]
    fn names_are_found_case_blind_with_their_ancestors() {
        let mut s = Store::new(&lower("Example.COM."));
        let deep = s.intern(&w("A.b.C.example.com.")).unwrap();
        assert_eq!(s.len(), 4, "apex, c, b.c, a.b.c");
        assert_eq!(s.find(&Key::new(&lower("a.b.c.example.com."))), Some(deep));
        let bc = s.find(&Key::new(&lower("B.c.EXAMPLE.com."))).unwrap();
        assert_eq!(s.parent(deep), bc);
        assert_eq!(s.find(&Key::new(&lower("example.com."))), Some(0));
        assert_eq!(s.find(&Key::new(&lower("x.c.example.com."))), None);
        assert_eq!(s.find(&Key::new(&lower("a.b.c.example.org."))), None);
        assert_eq!(
            s.name(deep, &Name::from_ascii("example.com.").unwrap())
                .to_ascii(),
            "A.b.C.example.com."
        );
        assert_eq!(s.intern(&w("www.example.org.")), None);
        assert_eq!(s.intern(&w("a.b.c.example.org.")), None);
        // Same labels below a different apex: not this zone's name, whatever the hash says.
        assert_eq!(s.find(&Key::new(&lower("a.b.c.example.net."))), None);
        assert_eq!(s.find(&Key::new(&lower("com."))), None);
        assert_eq!(s.intern(&w("A.B.c.Example.com.")), Some(deep));
    }

    #[test]
    fn the_index_grows_and_every_name_stays_found() {
        let mut s = Store::new(&lower("z."));
        let ids: Vec<NodeId> = (0..5000)
            .map(|i| s.intern(&w(&format!("h{i}.g{}.z.", i % 7))).unwrap())
            .collect();
        for (i, id) in ids.iter().enumerate() {
            let key = Key::new(&lower(&format!("H{i}.G{}.Z.", i % 7)));
            assert_eq!(s.find(&key), Some(*id));
        }
        assert_eq!(s.len(), 5000 + 7 + 1);
    }

    #[test]
    fn rrsets_round_trip_their_rdata() {
        let mut s = Store::new(&lower("z."));
        let id = s.intern(&w("a.z.")).unwrap();
        s.push_set(
            id,
            RecordType::A,
            30,
            [[192, 0, 2, 1].as_slice(), &[192, 0, 2, 2]].into_iter(),
        );
        s.push_set(id, RecordType::NS, 60, [w("ns.z.").as_slice()].into_iter());
        assert!(!s.is_cut(id));
        s.mark_cut(id);
        let below = s.intern(&w("x.a.z.")).unwrap();
        assert!(s.is_cut(id) && s.has_cuts && s.below_cut(below) && !s.below_cut(id));
        let a = s.rrset(id, RecordType::A).unwrap();
        let owner = Name::from_ascii("A.z.").unwrap();
        let text: Vec<String> = a.records(&owner).iter().map(ToString::to_string).collect();
        assert_eq!(text, ["A.z. 30 IN A 192.0.2.1", "A.z. 30 IN A 192.0.2.2"]);
        assert_eq!(s.rrsets(id).count(), 2);
        assert!(s.rrset(id, RecordType::TXT).is_none());
        assert_eq!(name_from_wire(&w("ns.z.")).to_ascii(), "ns.z.");
    }
}
