//! Authoritative lookup (RFC 1034 §4.3.2): from a question to answer, authority and additional
//! records, read from one [`Snapshot`]. Pure: no I/O, no clock, no errors — every outcome is an
//! rcode.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};

use crate::snapshot::Snapshot;
use crate::zones::{Node, Served};

/// Longest CNAME chain followed inside our zones before answering with what we have (BIND
/// uses 16, Knot 5; a chain this long in one operator's zones is a mistake anyway).
const MAX_CNAME_CHAIN: usize = 8;

/// The sections of a response, before encoding.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Answer {
    pub(crate) rcode: ResponseCode,
    pub(crate) authoritative: bool,
    pub(crate) answers: Vec<Record>,
    pub(crate) authorities: Vec<Record>,
    pub(crate) additionals: Vec<Record>,
    /// The additionals are referral glue that must not be dropped silently: if they do not fit,
    /// the response is truncated instead (RFC 9471).
    pub(crate) glue_required: bool,
    /// Pool data went into this answer (or could have): it changes with health and rotation,
    /// so the fast path must not cache it.
    pub(crate) volatile: bool,
}

impl Answer {
    pub(crate) fn refused() -> Answer {
        Answer {
            rcode: ResponseCode::Refused,
            ..Answer::default()
        }
    }
}

/// Answers `qname`/`qtype` (class IN) from `snap`. Pool answers advance the pool's rotation
/// counter, so consecutive queries see rotated orders.
pub(crate) fn resolve(snap: &Snapshot, qname: &Name, qtype: RecordType) -> Answer {
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
                Some((node, _)) => node,
                None => {
                    answer.rcode = ResponseCode::NXDomain;
                    answer.authorities.push(zone.zone().negative_soa.clone());
                    return answer;
                }
            },
        };
        answer.volatile |= node.pool.is_some();
        match node_answer(snap, &node, &name, qtype) {
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
                answer.authorities.push(zone.zone().negative_soa.clone());
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
fn node_answer(snap: &Snapshot, node: &Node<'_>, owner: &Name, qtype: RecordType) -> NodeAnswer {
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
        return match node.first_rrset() {
            Some(set) => NodeAnswer::Records(set.records(owner)),
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
        return NodeAnswer::Records(set.records(owner));
    }
    if let Some(set) = node.rrset(RecordType::CNAME)
        && let Some(record) = set.records(owner).into_iter().next()
    {
        return NodeAnswer::Cname(Box::new(record));
    }
    NodeAnswer::NoData
}

/// The wildcard that synthesizes answers for `name` when no node has that name (for response
/// rate limiting, which counts such answers under the wildcard, as BIND and NSD do).
pub(crate) fn wildcard_source(snap: &Snapshot, name: &LowerName) -> Option<LowerName> {
    let zone = snap.zones.find(name)?;
    if zone.node(name).is_some() {
        return None;
    }
    wildcard(zone, name).map(|(_, star)| star)
}

/// The wildcard node that synthesizes an answer for `name`, with its name (RFC 4592 §3.3.1):
/// find the closest encloser; if `*.<closest encloser>` exists, it is the source of synthesis.
fn wildcard<'z>(zone: &'z Served, name: &LowerName) -> Option<(Node<'z>, LowerName)> {
    let mut encloser = name.base_name();
    loop {
        if zone.node(&encloser).is_some() {
            let star = LowerName::new(&Name::from(&encloser).prepend_label("*").ok()?);
            return zone.node(&star).map(|node| (node, star));
        }
        if encloser == zone.zone().lower_origin || encloser.is_root() {
            return None;
        }
        encloser = encloser.base_name();
    }
}

/// A delegation: the cut's NS set in authority, glue for in-bailiwick servers in additional.
fn referral(snap: &Snapshot, zone: &Served, cut: &LowerName, answer: &mut Answer) {
    let Some(node) = zone.node(cut) else {
        return;
    };
    let Some(ns) = node.rrset(RecordType::NS) else {
        return;
    };
    let records = ns.records(&node.name().unwrap_or_else(|| Name::from(cut)));
    answer.authorities.extend(records.iter().cloned());
    for r in &records {
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
fn addresses(snap: &Snapshot, zone: &Served, name: &LowerName, out: &mut Vec<Record>) -> bool {
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
            None => match (node.rrset(rtype), node.name()) {
                (Some(set), Some(owner)) => set.records(&owner),
                _ => Vec::new(),
            },
        };
        for r in records {
            if !out.contains(&r) {
                out.push(r);
            }
        }
    }
    node.pool.is_some()
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::{Name, RecordType};

    use super::{Answer, resolve};
    use crate::dns::testing::{Snapshot, snapshot};

    const CONFIG: &str = r#"
[[zone]]
origin = "cluster.example."
file = "zone.db"

[[pool]]
name = "www.cluster.example."
backends = ["192.0.2.2", "192.0.2.3", "192.0.2.4", "2001:db8::2", "2001:db8::3"]

[[pool]]
name = "v4only.cluster.example."
backends = ["192.0.2.7"]
"#;

    const ZONE: &str = r#"$TTL 300
@         3600 SOA ns1 hostmaster 1 3600 600 86400 60
               NS  ns1
               MX  10 mail
ns1            A   192.0.2.1
               AAAA 2001:db8::1
mail           A   192.0.2.25
host           A   192.0.2.10
               TXT "hello"
alias          CNAME host
chain          CNAME alias
lb             CNAME www
out            CNAME www.example.net.
dangling       CNAME nothere
loop1          CNAME loop2
loop2          CNAME loop1
*.apps         A   192.0.2.80
               TXT "wild"
a.b.c          A   192.0.2.5
sub            NS  ns.sub
               NS  ns.elsewhere.example.
ns.sub         A   192.0.2.53
ext            NS  ns.elsewhere.example.
tosub          CNAME x.sub
"#;

    /// The negative-answer SOA: TTL min(3600, MINIMUM 60) = 60 (RFC 2308 §3).
    const NEG_SOA: &str = "ns cluster.example. 60 IN SOA ns1.cluster.example. \
                           hostmaster.cluster.example. 1 3600 600 86400 60";

    fn snap() -> std::sync::Arc<Snapshot> {
        snapshot(CONFIG, ZONE)
    }

    fn ask(snap: &Snapshot, name: &str, qtype: RecordType) -> Answer {
        resolve(snap, &Name::from_ascii(name).unwrap(), qtype)
    }

    /// The answer as lines: rcode and flags, then one line per record with its section
    /// (an/ns/ar), TTL and the owner's case as sent.
    fn show(a: &Answer) -> Vec<String> {
        let mut head = format!("{:?}", a.rcode);
        for (on, flag) in [
            (a.authoritative, "aa"),
            (a.glue_required, "glue"),
            (a.volatile, "volatile"),
        ] {
            if on {
                head.push(' ');
                head.push_str(flag);
            }
        }
        let mut lines = vec![head];
        for (section, records) in [
            ("an", &a.answers),
            ("ns", &a.authorities),
            ("ar", &a.additionals),
        ] {
            lines.extend(records.iter().map(|r| format!("{section} {r}")));
        }
        lines
    }

    #[test]
    fn exact_match_is_authoritative_with_the_query_case() {
        let s = snap();
        assert_eq!(
            show(&ask(&s, "host.cluster.example.", RecordType::A)),
            ["NoError aa", "an host.cluster.example. 300 IN A 192.0.2.10"]
        );
        assert_eq!(
            show(&ask(&s, "HOST.Cluster.example.", RecordType::TXT)),
            ["NoError aa", "an HOST.Cluster.example. 300 IN TXT hello"]
        );
        // The apex SOA as in the file, TTL included.
        assert_eq!(
            show(&ask(&s, "cluster.example.", RecordType::SOA)),
            [
                "NoError aa",
                "an cluster.example. 3600 IN SOA ns1.cluster.example. \
                 hostmaster.cluster.example. 1 3600 600 86400 60"
            ]
        );
    }

    #[test]
    fn ns_and_mx_answers_carry_target_addresses() {
        let s = snap();
        assert_eq!(
            show(&ask(&s, "cluster.example.", RecordType::NS)),
            [
                "NoError aa",
                "an cluster.example. 300 IN NS ns1.cluster.example.",
                "ar ns1.cluster.example. 300 IN A 192.0.2.1",
                "ar ns1.cluster.example. 300 IN AAAA 2001:db8::1",
            ]
        );
        assert_eq!(
            show(&ask(&s, "cluster.example.", RecordType::MX)),
            [
                "NoError aa",
                "an cluster.example. 300 IN MX 10 mail.cluster.example.",
                "ar mail.cluster.example. 300 IN A 192.0.2.25",
            ]
        );
    }

    #[test]
    fn any_answers_one_rrset() {
        let s = snap();
        // RFC 8482: the RRset with the lowest type code (A before TXT).
        assert_eq!(
            show(&ask(&s, "host.cluster.example.", RecordType::ANY)),
            ["NoError aa", "an host.cluster.example. 300 IN A 192.0.2.10"]
        );
        // A pool answers its addresses.
        assert_eq!(
            show(&ask(&s, "www.cluster.example.", RecordType::ANY)),
            [
                "NoError aa volatile",
                "an www.cluster.example. 5 IN A 192.0.2.2",
                "an www.cluster.example. 5 IN A 192.0.2.3",
                "an www.cluster.example. 5 IN A 192.0.2.4",
            ]
        );
    }

    #[test]
    fn cname_chains_are_followed_inside_the_zones() {
        let s = snap();
        assert_eq!(
            show(&ask(&s, "alias.cluster.example.", RecordType::A)),
            [
                "NoError aa",
                "an alias.cluster.example. 300 IN CNAME host.cluster.example.",
                "an host.cluster.example. 300 IN A 192.0.2.10",
            ]
        );
        assert_eq!(
            show(&ask(&s, "chain.cluster.example.", RecordType::TXT)),
            [
                "NoError aa",
                "an chain.cluster.example. 300 IN CNAME alias.cluster.example.",
                "an alias.cluster.example. 300 IN CNAME host.cluster.example.",
                "an host.cluster.example. 300 IN TXT hello",
            ]
        );
        // Asking for the CNAME itself does not chase it.
        assert_eq!(
            show(&ask(&s, "alias.cluster.example.", RecordType::CNAME)),
            [
                "NoError aa",
                "an alias.cluster.example. 300 IN CNAME host.cluster.example.",
            ]
        );
        // The target has no data of the type: NODATA for the last name of the chain.
        assert_eq!(
            show(&ask(&s, "alias.cluster.example.", RecordType::MX)),
            [
                "NoError aa",
                "an alias.cluster.example. 300 IN CNAME host.cluster.example.",
                NEG_SOA,
            ]
        );
        // A CNAME into a pool: the pool's rotation, so the answer is volatile.
        assert_eq!(
            show(&ask(&s, "lb.cluster.example.", RecordType::AAAA)),
            [
                "NoError aa volatile",
                "an lb.cluster.example. 300 IN CNAME www.cluster.example.",
                "an www.cluster.example. 5 IN AAAA 2001:db8::2",
                "an www.cluster.example. 5 IN AAAA 2001:db8::3",
            ]
        );
    }

    #[test]
    fn cname_ends_outside_the_zones_at_a_missing_name_or_at_a_loop() {
        let s = snap();
        // Not our zone: the resolver continues from the CNAME.
        assert_eq!(
            show(&ask(&s, "out.cluster.example.", RecordType::A)),
            [
                "NoError aa",
                "an out.cluster.example. 300 IN CNAME www.example.net.",
            ]
        );
        // The target does not exist: NXDOMAIN, with the CNAME (RFC 6604 §3).
        assert_eq!(
            show(&ask(&s, "dangling.cluster.example.", RecordType::A)),
            [
                "NXDomain aa",
                "an dangling.cluster.example. 300 IN CNAME nothere.cluster.example.",
                NEG_SOA,
            ]
        );
        // A loop: the chain until it comes back, then stop.
        assert_eq!(
            show(&ask(&s, "loop1.cluster.example.", RecordType::A)),
            [
                "NoError aa",
                "an loop1.cluster.example. 300 IN CNAME loop2.cluster.example.",
                "an loop2.cluster.example. 300 IN CNAME loop1.cluster.example.",
            ]
        );
    }

    #[test]
    fn cname_chain_stops_at_its_limit() {
        // c0 → c1 → … → c20 → end: more links than MAX_CNAME_CHAIN allows.
        let mut zone = ZONE.to_owned();
        for i in 0..20 {
            zone.push_str(&format!("c{i} CNAME c{}\n", i + 1));
        }
        zone.push_str("c20 CNAME host\n");
        let s = snapshot(CONFIG, &zone);
        let a = ask(&s, "c0.cluster.example.", RecordType::A);
        assert_eq!((a.rcode, a.authoritative), (ResponseCode::NoError, true));
        assert_eq!(a.answers.len(), super::MAX_CNAME_CHAIN + 1);
        assert!(
            a.answers
                .iter()
                .all(|r| r.record_type() == RecordType::CNAME),
            "{:?}",
            show(&a)
        );
        assert!(a.authorities.is_empty());
    }

    #[test]
    fn wildcards_synthesize_with_the_query_name() {
        let s = snap();
        assert_eq!(
            show(&ask(&s, "Foo.apps.cluster.example.", RecordType::A)),
            [
                "NoError aa",
                "an Foo.apps.cluster.example. 300 IN A 192.0.2.80"
            ]
        );
        // Several labels below the closest encloser (apps) still match *.apps.
        assert_eq!(
            show(&ask(&s, "x.y.apps.cluster.example.", RecordType::TXT)),
            ["NoError aa", "an x.y.apps.cluster.example. 300 IN TXT wild"]
        );
        // A type the wildcard has no data for: NODATA.
        assert_eq!(
            show(&ask(&s, "foo.apps.cluster.example.", RecordType::MX)),
            ["NoError aa", NEG_SOA]
        );
        // The wildcard's parent exists (an empty non-terminal): not synthesized.
        assert_eq!(
            show(&ask(&s, "apps.cluster.example.", RecordType::A)),
            ["NoError aa", NEG_SOA]
        );
    }

    #[test]
    fn empty_non_terminals_are_nodata() {
        let s = snap();
        for name in ["b.c.cluster.example.", "c.cluster.example."] {
            assert_eq!(
                show(&ask(&s, name, RecordType::A)),
                ["NoError aa", NEG_SOA],
                "{name}"
            );
        }
        // NODATA at a name with other data.
        assert_eq!(
            show(&ask(&s, "host.cluster.example.", RecordType::AAAA)),
            ["NoError aa", NEG_SOA]
        );
    }

    #[test]
    fn nxdomain_carries_the_negative_soa() {
        let s = snap();
        for name in ["nope.cluster.example.", "x.b.c.cluster.example."] {
            assert_eq!(
                show(&ask(&s, name, RecordType::A)),
                ["NXDomain aa", NEG_SOA],
                "{name}"
            );
        }
        // The other way round: SOA TTL 30 < MINIMUM 3600 gives 30.
        let zone = ZONE.replace(
            "@         3600 SOA ns1 hostmaster 1 3600 600 86400 60",
            "@         30 SOA ns1 hostmaster 1 3600 600 86400 3600",
        );
        let s = snapshot(CONFIG, &zone);
        assert_eq!(
            show(&ask(&s, "nope.cluster.example.", RecordType::A)),
            [
                "NXDomain aa",
                "ns cluster.example. 30 IN SOA ns1.cluster.example. \
                 hostmaster.cluster.example. 1 3600 600 86400 3600"
            ]
        );
    }

    #[test]
    fn delegations_refer_with_glue() {
        let s = snap();
        let referral = [
            "NoError glue",
            "ns sub.cluster.example. 300 IN NS ns.sub.cluster.example.",
            "ns sub.cluster.example. 300 IN NS ns.elsewhere.example.",
            "ar ns.sub.cluster.example. 300 IN A 192.0.2.53",
        ];
        // Below the cut, at the cut, and at the glue's own name: a referral, not authoritative.
        for name in [
            "www.sub.cluster.example.",
            "sub.cluster.example.",
            "ns.sub.cluster.example.",
        ] {
            assert_eq!(show(&ask(&s, name, RecordType::A)), referral, "{name}");
        }
        assert_eq!(
            show(&ask(&s, "sub.cluster.example.", RecordType::NS)),
            referral
        );
        // Servers outside the delegated zone need no glue.
        assert_eq!(
            show(&ask(&s, "a.ext.cluster.example.", RecordType::A)),
            [
                "NoError",
                "ns ext.cluster.example. 300 IN NS ns.elsewhere.example.",
            ]
        );
        // DS at the cut belongs to the parent (RFC 4035 §3.1.4.1): NODATA here.
        assert_eq!(
            show(&ask(&s, "sub.cluster.example.", RecordType::DS)),
            ["NoError aa", NEG_SOA]
        );
        // A CNAME into the delegation: authoritative for the CNAME, then the referral.
        assert_eq!(
            show(&ask(&s, "tosub.cluster.example.", RecordType::A)),
            [
                "NoError aa glue",
                "an tosub.cluster.example. 300 IN CNAME x.sub.cluster.example.",
                "ns sub.cluster.example. 300 IN NS ns.sub.cluster.example.",
                "ns sub.cluster.example. 300 IN NS ns.elsewhere.example.",
                "ar ns.sub.cluster.example. 300 IN A 192.0.2.53",
            ]
        );
    }

    #[test]
    fn pool_addresses_rotate_across_queries() {
        let s = snap();
        let a = |s: &Snapshot| show(&ask(s, "www.cluster.example.", RecordType::A));
        let line = |ip: &str| format!("an www.cluster.example. 5 IN A {ip}");
        for first in 0..3 {
            let mut expected = vec!["NoError aa volatile".to_owned()];
            expected.extend(
                (0..3).map(|i| line(["192.0.2.2", "192.0.2.3", "192.0.2.4"][(first + i) % 3])),
            );
            assert_eq!(a(&s), expected, "query {first}");
        }
        // One counter per pool: AAAA continues at rotation 3 (3 % 2 = 1).
        assert_eq!(
            show(&ask(&s, "WWW.cluster.example.", RecordType::AAAA)),
            [
                "NoError aa volatile",
                "an WWW.cluster.example. 5 IN AAAA 2001:db8::3",
                "an WWW.cluster.example. 5 IN AAAA 2001:db8::2",
            ]
        );
        assert_eq!(
            show(&ask(&s, "www.cluster.example.", RecordType::AAAA)),
            [
                "NoError aa volatile",
                "an www.cluster.example. 5 IN AAAA 2001:db8::2",
                "an www.cluster.example. 5 IN AAAA 2001:db8::3",
            ]
        );
    }

    #[test]
    fn pool_types_without_data_are_nodata() {
        let s = snap();
        assert_eq!(
            show(&ask(&s, "www.cluster.example.", RecordType::MX)),
            ["NoError aa volatile", NEG_SOA]
        );
        assert_eq!(
            show(&ask(&s, "v4only.cluster.example.", RecordType::AAAA)),
            ["NoError aa volatile", NEG_SOA]
        );
        assert_eq!(
            show(&ask(&s, "v4only.cluster.example.", RecordType::A)),
            [
                "NoError aa volatile",
                "an v4only.cluster.example. 5 IN A 192.0.2.7",
            ]
        );
    }

    #[test]
    fn names_outside_every_zone_are_refused() {
        let s = snap();
        for name in ["www.example.com.", "example.", ".", "cluster.example.net."] {
            let a = ask(&s, name, RecordType::A);
            assert_eq!(a, Answer::refused(), "{name}");
            assert_eq!(show(&a), ["Refused"], "{name}");
        }
    }
}
