//! DNS behaviour over UDP against the bundled example zone (RFC 1034/1035/2308/6891/8482).

use std::collections::HashSet;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn pool_answers_are_authoritative_and_rotate() {
    let s = TestServer::example().await;
    let mut firsts = Vec::new();
    for _ in 0..3 {
        let m = ask(s.udp, "www.cluster.example.", RecordType::A);
        assert_eq!(m.response_code, ResponseCode::NoError);
        assert!(m.authoritative, "AA must be set");
        assert!(!m.recursion_available, "RA must be clear");
        let a = addrs(&m);
        let set: HashSet<_> = a.iter().cloned().collect();
        assert_eq!(
            set,
            HashSet::from(["127.0.0.2".into(), "127.0.0.3".into(), "127.0.0.4".into()])
        );
        assert!(m.answers.iter().all(|r| r.ttl == 5), "pool TTL");
        firsts.push(a[0].clone());
    }
    let distinct: HashSet<_> = firsts.iter().collect();
    assert_eq!(
        distinct.len(),
        3,
        "three queries, three first addresses: {firsts:?}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pool_families_caps_and_other_types() {
    let s = TestServer::example().await;
    let m = ask(s.udp, "www.cluster.example.", RecordType::AAAA);
    assert_eq!(addrs(&m), vec!["::1"]);
    // answers = 2 caps every answer, and the cap still rotates through all members.
    let mut seen = HashSet::new();
    for _ in 0..3 {
        let a = addrs(&ask(s.udp, "api.cluster.example.", RecordType::A));
        assert_eq!(a.len(), 2);
        seen.extend(a);
    }
    assert_eq!(seen.len(), 3);
    // A pool has no IPv6 backends: AAAA is NODATA with the SOA.
    let m = ask(s.udp, "api.cluster.example.", RecordType::AAAA);
    assert_eq!(m.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    // Other types at a pool name: NODATA.
    let m = ask(s.udp, "www.cluster.example.", RecordType::MX);
    assert!(m.answers.is_empty() && m.authoritative);
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_outside_zones_and_negative_answers_carry_soa() {
    let s = TestServer::example().await;
    let m = ask(s.udp, "www.example.com.", RecordType::A);
    assert_eq!(m.response_code, ResponseCode::Refused);
    assert!(!m.authoritative && m.answers.is_empty());
    let m = ask(s.udp, "nope.cluster.example.", RecordType::A);
    assert_eq!(m.response_code, ResponseCode::NXDomain);
    assert!(m.authoritative);
    let soa = &m.authorities[0];
    assert_eq!(soa.record_type(), RecordType::SOA);
    // RFC 2308 §3: TTL = min(SOA TTL 3600, MINIMUM 60).
    assert_eq!(soa.ttl, 60);
    // NODATA at a static name.
    let m = ask(s.udp, "ns1.cluster.example.", RecordType::TXT);
    assert_eq!(m.response_code, ResponseCode::NoError);
    assert_eq!((m.answers.len(), m.authorities[0].ttl), (0, 60));
    // Empty non-terminal (apps has only *.apps below it): NODATA, not NXDOMAIN (RFC 8020).
    let m = ask(s.udp, "apps.cluster.example.", RecordType::A);
    assert_eq!(m.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn static_data_cname_wildcard_referral() {
    let s = TestServer::example().await;
    let m = ask(s.udp, "cluster.example.", RecordType::MX);
    assert_eq!(m.answers.len(), 1);
    // Additional section: the MX target's addresses.
    assert!(
        m.additionals
            .iter()
            .any(|r| r.record_type() == RecordType::A)
    );

    // A CNAME into a pool: the alias, then the pool's rotated addresses.
    let m = ask(s.udp, "web.cluster.example.", RecordType::A);
    assert_eq!(m.answers[0].record_type(), RecordType::CNAME);
    assert_eq!(addrs(&m).len(), 3);
    assert!(m.authoritative);

    // Wildcard synthesis with the query's own name as owner (RFC 4592 §3.3.1).
    let m = ask(s.udp, "anything.apps.cluster.example.", RecordType::A);
    assert_eq!(addrs(&m), vec!["127.0.0.10"]);
    assert_eq!(
        m.answers[0].name.to_ascii(),
        "anything.apps.cluster.example."
    );

    // Below a delegation: a referral with glue, not authoritative.
    let m = ask(s.udp, "host.sub.cluster.example.", RecordType::A);
    assert_eq!(m.response_code, ResponseCode::NoError);
    assert!(!m.authoritative);
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities[0].record_type(), RecordType::NS);
    let mut glue = m.clone();
    glue.answers = m.additionals.clone();
    assert_eq!(addrs(&glue), vec!["127.0.0.9"]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn question_case_is_preserved_and_any_is_minimal() {
    let s = TestServer::example().await;
    let m = ask(s.udp, "WwW.ClUsTeR.eXaMpLe.", RecordType::A);
    assert_eq!(m.queries[0].name().to_ascii(), "WwW.ClUsTeR.eXaMpLe.");
    assert_eq!(addrs(&m).len(), 3);
    // RFC 8482: ANY gets one RRset, not everything at the name.
    let m = ask(s.udp, "cluster.example.", RecordType::ANY);
    let types: HashSet<_> = m.answers.iter().map(|r| r.record_type()).collect();
    assert_eq!(types.len(), 1, "{types:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn edns_is_echoed_and_capped_and_truncation_sets_tc() {
    let s = TestServer::example().await;
    // A client offering 4096 gets our 1232 back, and DO is copied (RFC 3225).
    let mut q = query("www.cluster.example.", RecordType::A, Some(4096));
    q.edns.as_mut().unwrap().set_dnssec_ok(true);
    let m = udp(s.udp, &q);
    let edns = m.edns.as_ref().expect("OPT in the response");
    assert_eq!(edns.max_payload(), 1232);
    assert!(edns.flags().dnssec_ok);
    // No OPT in, no OPT out.
    let m = udp(s.udp, &query("www.cluster.example.", RecordType::A, None));
    assert!(m.edns.is_none());

    // 40 A records (688 octets) do not fit plain DNS's 512: TC=1, nothing partial.
    let raw = udp_raw(
        s.udp,
        &query("big.cluster.example.", RecordType::A, None)
            .to_vec()
            .unwrap(),
    )
    .unwrap();
    assert!(raw.len() <= 512);
    let m = Message::from_vec(&raw).unwrap();
    assert!(m.truncation && m.answers.is_empty());
    // With EDNS 1232 it fits.
    let m = udp(
        s.udp,
        &query("big.cluster.example.", RecordType::A, Some(1232)),
    );
    assert!(!m.truncation);
    assert_eq!(m.answers.len(), 40);
    // A client that offers 512 with EDNS is still held to 512, and keeps its OPT.
    let m = udp(
        s.udp,
        &query("big.cluster.example.", RecordType::A, Some(512)),
    );
    assert!(m.truncation && m.edns.is_some());
    // TCP carries the whole answer.
    let m = tcp(s.tcp, &query("big.cluster.example.", RecordType::A, None));
    assert!(!m.truncation);
    assert_eq!(m.answers.len(), 40);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_unsupported_queries_get_rcodes() {
    let s = TestServer::example().await;
    // Two questions: FORMERR.
    let mut q = query("www.cluster.example.", RecordType::A, None);
    q.add_query(q.queries[0].clone());
    assert_eq!(udp(s.udp, &q).response_code, ResponseCode::FormErr);
    // Garbage after a valid header: FORMERR with the ID echoed.
    let mut bytes = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    bytes.extend_from_slice(&[0x3f, b'x']);
    let raw = udp_raw(s.udp, &bytes).expect("a FORMERR reply");
    assert_eq!(&raw[..2], &[0xab, 0xcd]);
    assert_eq!(raw[3] & 0x0f, 1, "FORMERR");
    // Unknown opcode: NOTIMP.
    let mut q = query("www.cluster.example.", RecordType::A, None);
    q.metadata.op_code = OpCode::Status;
    assert_eq!(udp(s.udp, &q).response_code, ResponseCode::NotImp);
    // EDNS version 1: BADVERS, answered with a version 0 OPT (RFC 6891 §6.1.3).
    let mut q = query("www.cluster.example.", RecordType::A, None);
    let mut e = Edns::new();
    e.set_version(1);
    q.edns = Some(e);
    let m = udp(s.udp, &q);
    // BADVERS and BADSIG share code 16; hickory decodes it as BADSIG.
    assert_eq!(u16::from(m.response_code), 16);
    assert_eq!(m.edns.unwrap().version(), 0);
    // A response is never answered.
    let mut q = query("www.cluster.example.", RecordType::A, None);
    q.metadata.message_type = MessageType::Response;
    assert!(udp_raw(s.udp, &q.to_vec().unwrap()).is_none());
    // Zone transfers are refused.
    assert_eq!(
        tcp(s.tcp, &query("cluster.example.", RecordType::AXFR, None)).response_code,
        ResponseCode::Refused
    );
    // A class we hold no data in.
    let mut q = query("www.cluster.example.", RecordType::A, None);
    q.queries[0].set_query_class(hickory_proto::rr::DNSClass::HS);
    assert_eq!(udp(s.udp, &q).response_code, ResponseCode::Refused);
    // Empty question section.
    let q = Message::new(7, MessageType::Query, OpCode::Query);
    assert_eq!(udp(s.udp, &q).response_code, ResponseCode::FormErr);
    // Answers in the soa are still authoritative data.
    let m = ask(s.udp, "cluster.example.", RecordType::SOA);
    assert!(matches!(m.answers[0].data, RData::SOA(_)));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn chaos_identity_version_and_nsid() {
    let config = example_config("").replace(
        "udp_workers = 2",
        "udp_workers = 1\nidentity = \"ns-test-1\"\nnsid = true",
    );
    let s = TestServer::start(&config, &[("cluster.example.zone", EXAMPLE_ZONE)]).await;
    // dig, as operators ask it.
    let out = dig(s.udp, &["+short", "CH", "TXT", "id.server."]);
    assert_eq!(out.trim(), "\"ns-test-1\"");
    let out = dig(s.udp, &["+short", "CH", "TXT", "hostname.bind."]);
    assert_eq!(out.trim(), "\"ns-test-1\"");
    // The version is not disclosed unless configured.
    let out = dig(s.udp, &["CH", "TXT", "version.bind."]);
    assert!(out.contains("status: REFUSED"), "{out}");
    // NSID (RFC 5001) with kdig.
    let kdig = require_tool("kdig");
    let out = std::process::Command::new(kdig)
        .arg(format!("@{}", s.udp.ip()))
        .args([
            "-p",
            &s.udp.port().to_string(),
            "+nsid",
            "www.cluster.example.",
            "A",
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.contains("NSID: 6e732d746573742d31") || out.contains("ns-test-1"),
        "{out}"
    );
    s.stop().await;

    // Configured version; NSID off by default.
    let config =
        example_config("").replace("udp_workers = 2", "udp_workers = 1\nversion = \"lbns 0.1\"");
    let s = TestServer::start(&config, &[("cluster.example.zone", EXAMPLE_ZONE)]).await;
    let out = dig(s.udp, &["+short", "CH", "TXT", "version.bind."]);
    assert_eq!(out.trim(), "\"lbns 0.1\"");
    let out = dig(s.udp, &["+nsid", "www.cluster.example."]);
    assert!(!out.contains("NSID"), "{out}");
    s.stop().await;
}

/// Shutdown wakes UDP workers that are blocked waiting for a datagram (they wait without a
/// timeout): after answering, with no traffic, the server stops and its port stops answering.
#[tokio::test(flavor = "multi_thread")]
async fn shutdown_wakes_idle_udp_workers() {
    let t = TestServer::example().await;
    let addr = t.udp;
    let answer = ask(addr, "www.cluster.example.", RecordType::A);
    assert_eq!(answer.response_code, ResponseCode::NoError);
    // Let both workers settle into a blocking receive.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // Workers that are never woken are given up on after 5 s; a healthy stop takes milliseconds.
    tokio::time::timeout(std::time::Duration::from_secs(3), t.stop())
        .await
        .expect("shutdown did not finish: a UDP worker stayed blocked in recvmmsg");
    let q = query("www.cluster.example.", RecordType::A, None)
        .to_vec()
        .unwrap();
    assert_eq!(udp_raw(addr, &q), None, "the stopped server still answers");
}

/// An IXFR query in its RFC 1995 §3 form, as `dig ixfr=1` sends it: the client's SOA in
/// AUTHORITY.
fn ixfr_with_soa(serial: u32) -> Message {
    use hickory_proto::rr::rdata::SOA;
    use hickory_proto::rr::{Name, Record};
    let mut q = query("cluster.example.", RecordType::IXFR, None);
    let name = |n: &str| Name::from_ascii(n).unwrap();
    q.add_authority(Record::from_rdata(
        name("cluster.example."),
        3600,
        RData::SOA(SOA::new(
            name("ns1.cluster.example."),
            name("hostmaster.cluster.example."),
            serial,
            3600,
            600,
            86400,
            60,
        )),
    ));
    q
}

#[tokio::test(flavor = "multi_thread")]
async fn ixfr_with_its_soa_in_authority_is_refused_over_udp_and_tcp() {
    let s = TestServer::example().await;
    let q = ixfr_with_soa(1);
    assert_eq!(q.authorities.len(), 1);
    for (transport, m) in [("udp", udp(s.udp, &q)), ("tcp", tcp(s.tcp, &q))] {
        assert_eq!(m.response_code, ResponseCode::Refused, "{transport}");
        assert_eq!(m.queries[0].query_type(), RecordType::IXFR, "{transport}");
        assert!(
            m.answers.is_empty() && m.authorities.is_empty(),
            "{transport}"
        );
    }
    // A plain query with a record in AUTHORITY is answered, not FORMERR.
    let mut q = query("www.cluster.example.", RecordType::A, Some(1232));
    q.authorities = ixfr_with_soa(1).authorities;
    let m = udp(s.udp, &q);
    assert_eq!(m.response_code, ResponseCode::NoError);
    assert_eq!(addrs(&m).len(), 3);
    // kdig's own IXFR query (its SOA in AUTHORITY too), over UDP and TCP.
    let kdig = require_tool("kdig");
    for transport in ["+notcp", "+tcp"] {
        let out = std::process::Command::new(&kdig)
            .arg(format!("@{}", s.udp.ip()))
            .args(["-p", &s.udp.port().to_string(), transport, "+time=2"])
            .args(["+retry=0", "IXFR=1", "cluster.example."])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(
            text.contains("server replied with error 'REFUSED'"),
            "kdig {transport}:\n{text}{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // dig's, over TCP: the transfer fails without a FORMERR.
    let out = dig(s.udp, &["ixfr=1", "cluster.example."]);
    assert!(out.contains("Transfer failed"), "{out}");
    s.stop().await;
}

/// The EDNS cap from above: a client offering 4096 is held to `edns_udp_size` (1232), so an
/// answer of about 2 KB, which 4096 would carry, comes back empty with TC=1 over UDP.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_offering_4096_is_held_to_1232() {
    let zone = zone_with_large_txt();
    let s = TestServer::start(&example_config(""), &[("cluster.example.zone", &zone)]).await;
    let q = query("large.cluster.example.", RecordType::TXT, Some(4096));
    let whole = tcp(s.tcp, &q);
    assert_eq!(whole.answers.len(), 10);
    let size = whole.to_vec().unwrap().len();
    assert!((1233..4096).contains(&size), "{size} octets");
    let raw = udp_raw(s.udp, &q.to_vec().unwrap()).expect("a UDP reply");
    assert!(raw.len() <= 1232, "{} octets", raw.len());
    let m = Message::from_vec(&raw).unwrap();
    assert!(m.truncation, "TC=1");
    assert!(m.answers.is_empty());
    assert_eq!(m.edns.as_ref().map(Edns::max_payload), Some(1232));
    // dig sees the same: TC, and no answer.
    let out = dig(
        s.udp,
        &["+bufsize=4096", "+ignore", "large.cluster.example.", "TXT"],
    );
    assert!(out.contains(" tc") && out.contains("ANSWER: 0"), "{out}");
    s.stop().await;
}
