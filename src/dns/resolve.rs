//! Authoritative lookup (RFC 1034 §4.3.2): from a question to answer, authority and additional
//! records, read from one [`Snapshot`]. Pure: no I/O, no clock, no errors — every outcome is an
//! rcode.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};

use crate::pool::Snapshot;
use crate::zones::{Node, Zone};

/// Longest CNAME chain followed inside our zones before answering with what we have (BIND
/// uses 16, Knot 5; a chain this long in one operator's zones is a mistake anyway).
const MAX_CNAME_CHAIN: usize = 8;

/// The sections of a response, before encoding.
#[derive(Debug, Default, PartialEq)]
pub struct Answer {
    pub rcode: ResponseCode,
    pub authoritative: bool,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
    /// The additionals are referral glue that must not be dropped silently: if they do not fit,
    /// the response is truncated instead (RFC 9471).
    pub glue_required: bool,
    /// Pool data went into this answer (or could have): it changes with health and rotation,
    /// so the fast path must not cache it.
    pub volatile: bool,
}

impl Answer {
    pub fn refused() -> Answer {
        Answer {
            rcode: ResponseCode::Refused,
            ..Answer::default()
        }
    }
}

/// Answers `qname`/`qtype` (class IN) from `snap`. Pool answers advance the pool's rotation
/// counter, so consecutive queries see rotated orders.
pub fn resolve(snap: &Snapshot, qname: &Name, qtype: RecordType) -> Answer {
    let mut answer = Answer::default();
    let mut name = qname.clone();
    let mut lower = LowerName::new(&name);
    let Some(mut zone) = snap.zones.find(&lower) else {
        return Answer::refused();
    };
    answer.authoritative = true;

    for _ in 0..=MAX_CNAME_CHAIN {
        // A zone cut at or above the name: refer, unless the question is for the DS at the cut,
        // which belongs to the parent side (RFC 4035 §3.1.4.1).
        if let Some(cut) = zone.cut_above(&lower)
            && !(qtype == RecordType::DS && cut == lower)
        {
            referral(snap, zone, &cut, &mut answer);
            // AA covers the answer section; a pure referral is not authoritative.
            answer.authoritative = !answer.answers.is_empty();
            return answer;
        }

        let node = match zone.node(&lower) {
            Some(node) => node,
            None => match wildcard(zone, &lower) {
                Some(node) => node,
                None => {
                    answer.rcode = ResponseCode::NXDomain;
                    answer.authorities.push(zone.negative_soa.clone());
                    return answer;
                }
            },
        };
        answer.volatile |= node.pool.is_some();
        match node_answer(snap, node, &name, qtype) {
            NodeAnswer::Records(records) => {
                answer.answers.extend(records);
                additional(snap, &mut answer);
                return answer;
            }
            NodeAnswer::Cname(record) => {
                let RData::CNAME(target) = &record.data else {
                    unreachable!("node_answer returns CNAME records only here")
                };
                let target = target.0.clone();
                answer.answers.push(*record);
                let target_lower = LowerName::new(&target);
                // Follow the chain only through zones we serve (RFC 1034 §4.3.2 step 3a);
                // otherwise the resolver continues from the CNAME.
                match snap.zones.find(&target_lower) {
                    Some(z) => zone = z,
                    None => return answer,
                }
                if answer
                    .answers
                    .iter()
                    .any(|r| LowerName::new(&r.name) == target_lower)
                {
                    // A loop: answer with the chain so far.
                    return answer;
                }
                name = target;
                lower = target_lower;
            }
            NodeAnswer::ServFail => {
                return Answer {
                    rcode: ResponseCode::ServFail,
                    ..Answer::default()
                };
            }
            NodeAnswer::NoData => {
                answer.authorities.push(zone.negative_soa.clone());
                return answer;
            }
        }
    }
    answer
}

enum NodeAnswer {
    Records(Vec<Record>),
    /// A pool with every backend down and `all_down = "servfail"`.
    ServFail,
    Cname(Box<Record>),
    NoData,
}

/// What one node holds for `qtype`, with owner `owner` (the query name's case, or the name a
/// wildcard is expanded to, RFC 4592 §3.3.1).
fn node_answer(snap: &Snapshot, node: &Node, owner: &Name, qtype: RecordType) -> NodeAnswer {
    let with_owner = |records: &[Record]| -> Vec<Record> {
        records
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.name = owner.clone();
                r
            })
            .collect()
    };
    let pool = node.pool.map(|i| &snap.pools[i]);

    if qtype == RecordType::ANY {
        // RFC 8482 §4.2: answer with one RRset of our choosing. Pools answer their addresses.
        if let Some(pool) = pool {
            for family in [RecordType::A, RecordType::AAAA] {
                let records = pool.records(family, pool.next_rotation(), owner);
                if !records.is_empty() {
                    return NodeAnswer::Records(records);
                }
            }
        }
        return match node.rrsets.first() {
            Some(set) => NodeAnswer::Records(with_owner(&set.records)),
            None => NodeAnswer::NoData,
        };
    }

    if let Some(pool) = pool
        && matches!(qtype, RecordType::A | RecordType::AAAA)
    {
        let family = pool.family(qtype);
        if family.servfail {
            return NodeAnswer::ServFail;
        }
        if family.is_empty() {
            return NodeAnswer::NoData;
        }
        let records = pool.records(qtype, pool.next_rotation(), owner);
        return if records.is_empty() {
            NodeAnswer::NoData
        } else {
            NodeAnswer::Records(records)
        };
    }
    if let Some(set) = node.rrset(qtype) {
        return NodeAnswer::Records(with_owner(&set.records));
    }
    if let Some(set) = node.rrset(RecordType::CNAME) {
        return NodeAnswer::Cname(Box::new(with_owner(&set.records).remove(0)));
    }
    NodeAnswer::NoData
}

/// The wildcard node that synthesizes an answer for `name` (RFC 4592 §3.3.1): find the closest
/// encloser; if `*.<closest encloser>` exists, it is the source of synthesis.
fn wildcard<'z>(zone: &'z Zone, name: &LowerName) -> Option<&'z Node> {
    let mut encloser = name.base_name();
    loop {
        if zone.node(&encloser).is_some() {
            let star = LowerName::new(&Name::from(&encloser).prepend_label("*").ok()?);
            return zone.node(&star);
        }
        if encloser == zone.lower_origin || encloser.is_root() {
            return None;
        }
        encloser = encloser.base_name();
    }
}

/// A delegation: the cut's NS set in authority, glue for in-bailiwick servers in additional.
fn referral(snap: &Snapshot, zone: &Zone, cut: &LowerName, answer: &mut Answer) {
    let Some(ns) = zone.node(cut).and_then(|n| n.rrset(RecordType::NS)) else {
        return;
    };
    answer.authorities.extend(ns.records.iter().cloned());
    for r in &ns.records {
        if let RData::NS(target) = &r.data {
            let t = LowerName::new(&target.0);
            // Glue is needed only for servers inside the delegated zone (RFC 9471 §2.1).
            if cut.zone_of(&t) {
                answer.glue_required = true;
            }
            answer.volatile |= addresses(snap, zone, &t, &mut answer.additionals);
        }
    }
}

/// Additional section processing for NS, MX and SRV answers (RFC 1034 §3.3, RFC 2782): the
/// addresses of targets we are authoritative for.
fn additional(snap: &Snapshot, answer: &mut Answer) {
    let mut targets = Vec::new();
    for r in &answer.answers {
        match &r.data {
            RData::NS(n) => targets.push(n.0.clone()),
            RData::MX(mx) => targets.push(mx.exchange.clone()),
            RData::SRV(srv) => targets.push(srv.target.clone()),
            _ => {}
        }
    }
    for target in targets {
        let lower = LowerName::new(&target);
        if let Some(zone) = snap.zones.find(&lower) {
            answer.volatile |= addresses(snap, zone, &lower, &mut answer.additionals);
        }
    }
}

/// The A and AAAA records at `name` in `zone` (static data or pool), if not already present.
/// Returns true if the addresses came from a pool.
fn addresses(snap: &Snapshot, zone: &Zone, name: &LowerName, out: &mut Vec<Record>) -> bool {
    let Some(node) = zone.node(name) else {
        return false;
    };
    for rtype in [RecordType::A, RecordType::AAAA] {
        let records = match node.pool {
            Some(i) => {
                let pool = &snap.pools[i];
                // Additional data does not advance the rotation: it is a hint, not an answer.
                pool.records(rtype, 0, &pool.name)
            }
            None => node
                .rrset(rtype)
                .map(|s| s.records.clone())
                .unwrap_or_default(),
        };
        for r in records {
            if !out.contains(&r) {
                out.push(r);
            }
        }
    }
    node.pool.is_some()
}
