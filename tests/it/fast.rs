//! Differential test: the UDP fast path and the full hickory-proto handler give the same
//! answers over a corpus of queries (static, pool, NXDOMAIN, NODATA, EDNS, DNS cookies, odd
//! case, referral, wildcard, truncation, malformed); and the fast path allocates nothing once
//! warm.

use std::sync::atomic::Ordering;

use hickory_proto::op::{Edns, Message};
use hickory_proto::rr::RecordType;
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use lbns::dns::fast::FastPath;
use lbns::dns::{Client, CookieCheck, handle_from};

use crate::support::alloc::allocations;
use crate::support::*;

const NAMES: &[&str] = &[
    "cluster.example.",
    "CLUSTER.example.",
    "www.cluster.example.",
    "WwW.ClUsTeR.eXaMpLe.",
    "api.cluster.example.",
    "ns1.cluster.example.",
    "mail.cluster.example.",
    "Mail.Cluster.Example.",
    "web.cluster.example.",
    "big.cluster.example.",
    "nope.cluster.example.",
    "deep.nope.cluster.example.",
    "x.apps.cluster.example.",
    "X.Apps.cluster.example.",
    "apps.cluster.example.",
    "host.sub.cluster.example.",
    "sub.cluster.example.",
    "_http._tcp.cluster.example.",
    "www.example.com.",
    "example.",
];

const TYPES: &[RecordType] = &[
    RecordType::A,
    RecordType::AAAA,
    RecordType::MX,
    RecordType::TXT,
    RecordType::NS,
    RecordType::SOA,
    RecordType::SRV,
    RecordType::CNAME,
    RecordType::CAA,
    RecordType::DS,
    RecordType::ANY,
];

/// The client every query of the corpus comes from, at one fixed time, so both paths make the
/// same server cookies.
fn client() -> Client {
    Client {
        ip: "192.0.2.53".parse().unwrap(),
        now: 1_700_000_000,
    }
}

/// `q` with a COOKIE option holding `data` (client cookie, then any server cookie).
fn with_cookie(mut q: Message, data: &[u8]) -> Message {
    q.edns
        .get_or_insert_with(Edns::new)
        .options_mut()
        .insert(EdnsOption::Unknown(10, data.to_vec()));
    q
}

/// The server cookie lbns gives `client()` for client cookie `client_cookie`.
fn server_cookie(snap: &lbns::snapshot::Snapshot, client_cookie: &[u8]) -> Vec<u8> {
    let q = with_cookie(
        query("ns1.cluster.example.", RecordType::A, Some(1232)),
        client_cookie,
    );
    let mut out = Vec::new();
    handle_from(snap, &q.to_vec().unwrap(), &client(), &mut out).unwrap();
    match Message::from_vec(&out)
        .unwrap()
        .edns
        .unwrap()
        .option(EdnsCode::Cookie)
    {
        Some(EdnsOption::Unknown(10, data)) => data[8..].to_vec(),
        other => panic!("no cookie in the reply: {other:?}"),
    }
}

fn variants(name: &str, rtype: RecordType, valid: &[u8]) -> Vec<Message> {
    let mut out = Vec::new();
    for edns in [None, Some(512), Some(1232), Some(4096)] {
        let mut q = query(name, rtype, edns);
        q.metadata.recursion_desired = edns == Some(4096);
        q.metadata.checking_disabled = edns == Some(512);
        if let (Some(e), Some(4096)) = (q.edns.as_mut(), edns) {
            e.set_dnssec_ok(true);
        }
        out.push(q);
    }
    // DNS cookies as dig and resolvers send them: a client cookie alone, with the server
    // cookie lbns made, with one another server made, and with a forged one.
    let client_cookie = [1, 2, 3, 4, 5, 6, 7, 8];
    let base = query(name, rtype, Some(1232));
    out.push(with_cookie(base.clone(), &client_cookie));
    out.push(with_cookie(
        base.clone(),
        &[&client_cookie[..], valid].concat(),
    ));
    out.push(with_cookie(
        base.clone(),
        &[&client_cookie[..], &[9; 8]].concat(),
    ));
    let mut forged = [&client_cookie[..], valid].concat();
    forged[23] ^= 1;
    out.push(with_cookie(base, &forged));
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn fast_path_and_full_handler_agree() {
    let s = TestServer::example().await;
    let snap = s.server.snapshot();
    let valid = server_cookie(&snap, &[1, 2, 3, 4, 5, 6, 7, 8]);
    let mut fast = FastPath::new();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let mut compared = 0;
    let mut fast_answered = 0;
    let mut cookies_seen = [0usize; 4];
    for name in NAMES {
        for &rtype in TYPES {
            for q in variants(name, rtype, &valid) {
                let bytes = q.to_vec().unwrap();
                // Same rotation for both paths.
                for p in &snap.pools {
                    p.counter.store(7, Ordering::Relaxed);
                }
                let fast_outcome = fast.answer(&snap, &bytes, &client(), &mut a);
                for p in &snap.pools {
                    p.counter.store(7, Ordering::Relaxed);
                }
                let full_outcome = handle_from(&snap, &bytes, &client(), &mut b);
                compared += 1;
                let Some(fo) = fast_outcome else { continue };
                fast_answered += 1;
                cookies_seen[fo.cookie as usize] += 1;
                // Outcome, rate-limiting key and cookie verdict alike.
                assert_eq!(Some(fo), full_outcome, "{name} {rtype}");
                let fm = Message::from_vec(&a).unwrap();
                let hm = Message::from_vec(&b).unwrap();
                // Names compare case-insensitively; the question must match exactly.
                assert_eq!(
                    fm,
                    hm,
                    "{name} {rtype} edns={:?}",
                    q.edns.as_ref().map(Edns::max_payload)
                );
                assert_eq!(fm.queries[0].name().to_ascii(), *name);
                assert!(a.len() <= b.len(), "fast answer larger than the full one");
            }
        }
    }
    // The fast path must actually carry the common cases, cookies of every kind included.
    assert!(
        fast_answered * 10 >= compared * 6,
        "fast path answered {fast_answered} of {compared}"
    );
    assert!(
        cookies_seen.iter().all(|&n| n > 0),
        "fast path cookie verdicts: {cookies_seen:?}"
    );
    assert_eq!(CookieCheck::Valid as usize, 3);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unusual_queries_take_the_full_path() {
    let s = TestServer::example().await;
    let snap = s.server.snapshot();
    let mut fast = FastPath::new();
    let mut out = Vec::new();
    let base = query("www.cluster.example.", RecordType::A, Some(1232));
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    // EDNS version 1.
    let mut q = base.clone();
    q.edns.as_mut().unwrap().set_version(1);
    cases.push(("edns version", q.to_vec().unwrap()));
    // An EDNS option (NSID request).
    let mut q = base.clone();
    q.edns.as_mut().unwrap().options_mut().insert(
        hickory_proto::rr::rdata::opt::EdnsOption::Unknown(3, vec![]),
    );
    cases.push(("edns option", q.to_vec().unwrap()));
    // Trailing garbage.
    let mut bytes = base.to_vec().unwrap();
    bytes.push(0);
    cases.push(("trailing byte", bytes));
    // A response.
    let mut q = base.clone();
    q.metadata.message_type = hickory_proto::op::MessageType::Response;
    cases.push(("response", q.to_vec().unwrap()));
    // Opcode NOTIFY.
    let mut q = base.clone();
    q.metadata.op_code = hickory_proto::op::OpCode::Notify;
    cases.push(("opcode", q.to_vec().unwrap()));
    // CHAOS class.
    let mut q = base.clone();
    q.queries[0].set_query_class(hickory_proto::rr::DNSClass::CH);
    cases.push(("class", q.to_vec().unwrap()));
    // 40 A records do not fit 512: truncation is decided by the full handler.
    cases.push((
        "big",
        query("big.cluster.example.", RecordType::A, None)
            .to_vec()
            .unwrap(),
    ));
    // ANY.
    cases.push((
        "any",
        query("cluster.example.", RecordType::ANY, None)
            .to_vec()
            .unwrap(),
    ));
    // A malformed COOKIE (9 octets: FORMERR, RFC 7873 §5.2.2), and a COOKIE beside another
    // option.
    cases.push((
        "malformed cookie",
        with_cookie(base.clone(), &[7; 9]).to_vec().unwrap(),
    ));
    let mut q = with_cookie(base.clone(), &[7; 8]);
    q.edns
        .as_mut()
        .unwrap()
        .options_mut()
        .insert(EdnsOption::Unknown(3, vec![]));
    cases.push(("cookie and nsid", q.to_vec().unwrap()));
    for (what, bytes) in cases {
        assert!(
            fast.answer(&snap, &bytes, &client(), &mut out).is_none(),
            "{what} took the fast path"
        );
    }
    s.stop().await;
}

/// The fast path allocates nothing per query once warm: static names, pool names
/// (every rotation), a capped pool, NXDOMAIN, NODATA, EDNS, DNS cookies and odd case, counted
/// on this thread by the binary's counting allocator.
#[tokio::test(flavor = "multi_thread")]
async fn fast_path_answers_without_allocating_once_warm() {
    let s = TestServer::example().await;
    let snap = s.server.snapshot();
    let corpus: Vec<(&str, Vec<u8>)> = [
        ("static A", "ns1.cluster.example.", RecordType::A, None),
        (
            "apex MX + EDNS",
            "cluster.example.",
            RecordType::MX,
            Some(1232),
        ),
        ("odd case", "MaIl.ClUsTeR.example.", RecordType::AAAA, None),
        ("pool A", "www.cluster.example.", RecordType::A, None),
        (
            "pool AAAA + EDNS",
            "www.cluster.example.",
            RecordType::AAAA,
            Some(4096),
        ),
        (
            "pool capped",
            "API.cluster.example.",
            RecordType::A,
            Some(512),
        ),
        ("NXDOMAIN", "nope.cluster.example.", RecordType::A, None),
        (
            "NODATA",
            "ns1.cluster.example.",
            RecordType::TXT,
            Some(1232),
        ),
    ]
    .into_iter()
    .map(|(what, name, rtype, edns)| (what, query(name, rtype, edns).to_vec().unwrap()))
    .collect();
    // Cookies: the server cookie is checked (or made) and written in place.
    let client_cookie = [1, 2, 3, 4, 5, 6, 7, 8];
    let valid = [&client_cookie[..], &server_cookie(&snap, &client_cookie)].concat();
    let mut corpus = corpus;
    for (what, name, data) in [
        (
            "pool A + client cookie",
            "www.cluster.example.",
            &client_cookie[..],
        ),
        (
            "static A + server cookie",
            "ns1.cluster.example.",
            &valid[..],
        ),
        (
            "NXDOMAIN + server cookie",
            "nope.cluster.example.",
            &valid[..],
        ),
    ] {
        let q = with_cookie(query(name, RecordType::A, Some(1232)), data);
        corpus.push((what, q.to_vec().unwrap()));
    }
    let mut fast = FastPath::new();
    let mut out = Vec::with_capacity(4096);
    // Warm: the template cache fills on first sight of each (name, type).
    for (what, q) in &corpus {
        assert!(
            fast.answer(&snap, q, &client(), &mut out).is_some(),
            "{what}: not on the fast path"
        );
    }
    // 1,000 rounds: every rotation of every pool comes up many times.
    let before = allocations();
    for _ in 0..1000 {
        for (_, q) in &corpus {
            std::hint::black_box(fast.answer(&snap, q, &client(), &mut out));
        }
    }
    let made = allocations() - before;
    assert_eq!(
        made,
        0,
        "the fast path allocated {made} times in {} warm queries",
        1000 * corpus.len()
    );
    // The counter does count on this thread (so 0 above is not vacuous).
    let before = allocations();
    std::hint::black_box(vec![0u8; 64]);
    assert_eq!(allocations() - before, 1);
    s.stop().await;
}
