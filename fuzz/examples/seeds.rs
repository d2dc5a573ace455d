//! Writes the seed corpus in `fuzz/seeds/`: the queries of the tests (tests/it/fast.rs,
//! tests/it/dns.rs, src/dns/handler.rs), the bundled and test zones and configs, lbcd replies
//! as the probe's tests lay them out, and HTTP responses. Run it after changing any of those:
//!
//!     cargo run --manifest-path fuzz/Cargo.toml --example seeds
//!
//! Each file is named after what it holds; the fuzz runs read `seeds/<target>/`.

use std::path::{Path, PathBuf};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

fn seeds() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds")
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = seeds().join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn query(name: &str, qtype: RecordType, edns: Option<u16>) -> Message {
    let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.edns = Some(e);
    }
    m
}

fn with_option(mut m: Message, code: u16, data: &[u8]) -> Message {
    m.edns
        .get_or_insert_with(Edns::new)
        .options_mut()
        .insert(EdnsOption::Unknown(code, data.to_vec()));
    m
}

/// The names and types of tests/it/fast.rs's differential corpus.
const NAMES: &[&str] = &[
    "cluster.example.",
    "WwW.ClUsTeR.eXaMpLe.",
    "www.cluster.example.",
    "api.cluster.example.",
    "mail.cluster.example.",
    "web.cluster.example.",
    "big.cluster.example.",
    "large.cluster.example.",
    "nope.cluster.example.",
    "x.apps.cluster.example.",
    "apps.cluster.example.",
    "host.sub.cluster.example.",
    "_http._tcp.cluster.example.",
    "www.example.com.",
];

const TYPES: &[RecordType] = &[
    RecordType::A,
    RecordType::AAAA,
    RecordType::MX,
    RecordType::TXT,
    RecordType::NS,
    RecordType::SOA,
    RecordType::SRV,
    RecordType::ANY,
];

fn dns_queries() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mut add = |name: String, m: &Message| out.push((name, m.to_vec().unwrap()));
    for name in NAMES {
        for &qtype in TYPES {
            let label = name.trim_end_matches('.').replace('.', "_");
            add(format!("{label}-{qtype}"), &query(name, qtype, None));
            let mut q = query(name, qtype, Some(1232));
            q.metadata.recursion_desired = true;
            add(format!("{label}-{qtype}-edns"), &q);
        }
    }
    let base = || query("www.cluster.example.", RecordType::A, Some(1232));
    let mut q = query("www.cluster.example.", RecordType::A, Some(4096));
    q.edns.as_mut().unwrap().set_dnssec_ok(true);
    q.metadata.checking_disabled = true;
    add("do-cd-4096".into(), &q);
    add(
        "edns-512".into(),
        &query("big.cluster.example.", RecordType::A, Some(512)),
    );
    // DNS cookies: a client cookie, with a server cookie, malformed.
    add(
        "cookie-client".into(),
        &with_option(base(), 10, &[1, 2, 3, 4, 5, 6, 7, 8]),
    );
    add(
        "cookie-server".into(),
        &with_option(
            base(),
            10,
            &[[1u8; 8], [1, 0, 0, 0, 0x65, 0x53, 0xf1, 0x00], [7; 8]].concat(),
        ),
    );
    add("cookie-malformed".into(), &with_option(base(), 10, &[7; 9]));
    let mut only_cookie = Message::new(7, MessageType::Query, OpCode::Query);
    only_cookie.edns = Some(Edns::new());
    add(
        "cookie-no-question".into(),
        &with_option(only_cookie, 10, &[1; 8]),
    );
    // NSID, edns-tcp-keepalive (asked, and with a TIMEOUT), EDNS version 1.
    add("nsid".into(), &with_option(base(), 3, &[]));
    add("keepalive".into(), &with_option(base(), 11, &[]));
    add(
        "keepalive-timeout".into(),
        &with_option(base(), 11, &[0, 100]),
    );
    let mut q = base();
    q.edns.as_mut().unwrap().set_version(1);
    add("edns-version-1".into(), &q);
    // Zone transfers: AXFR, IXFR in its RFC 1995 form (the client's SOA in AUTHORITY).
    add(
        "axfr".into(),
        &query("cluster.example.", RecordType::AXFR, None),
    );
    let mut q = query("cluster.example.", RecordType::IXFR, None);
    let n = |s: &str| Name::from_ascii(s).unwrap();
    q.add_authority(Record::from_rdata(
        n("cluster.example."),
        3600,
        RData::SOA(SOA::new(
            n("ns1.cluster.example."),
            n("hostmaster.cluster.example."),
            1,
            3600,
            600,
            86400,
            60,
        )),
    ));
    add("ixfr-rfc1995".into(), &q);
    // CHAOS identity, another class, other opcodes, two questions, none, a response.
    let mut q = query("id.server.", RecordType::TXT, None);
    q.queries[0].set_query_class(DNSClass::CH);
    add("chaos-id-server".into(), &q);
    let mut q = base();
    q.queries[0].set_query_class(DNSClass::HS);
    add("class-hs".into(), &q);
    let mut q = base();
    q.metadata.op_code = OpCode::Notify;
    add("opcode-notify".into(), &q);
    let mut q = base();
    q.add_query(Query::query(n("mail.cluster.example."), RecordType::MX));
    add("two-questions".into(), &q);
    add(
        "no-question".into(),
        &Message::new(9, MessageType::Query, OpCode::Query),
    );
    let mut q = base();
    q.metadata.message_type = MessageType::Response;
    add("response".into(), &q);
    let mut raw: Vec<(String, Vec<u8>)> = Vec::new();
    // A truncated NSID option (hickory-proto warns), trailing octets, a compression pointer
    // in the question, a label past the end, a bare header.
    let mut bytes = query("www.cluster.example.", RecordType::A, None)
        .to_vec()
        .unwrap();
    bytes[11] = 1;
    bytes.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 4, 0, 3, 0, 4]);
    raw.push(("nsid-truncated".into(), bytes));
    let mut bytes = base().to_vec().unwrap();
    bytes.push(0);
    raw.push(("trailing-octet".into(), bytes));
    raw.push((
        "question-pointer".into(),
        [
            &[0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0][..],
            &[0xc0, 12, 0, 1, 0, 1],
        ]
        .concat(),
    ));
    raw.push((
        "label-past-end".into(),
        vec![0xab, 0xcd, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x3f, b'x'],
    ));
    raw.push((
        "header-only".into(),
        vec![0x12, 0x34, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    ));
    out.extend(raw);
    out
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let _ = std::fs::remove_dir_all(seeds());
    for (name, bytes) in dns_queries() {
        write("query", &name, &bytes);
        write("fast_vs_full", &name, &bytes);
    }
    // Zones: the bundled one, and the directives and forms of the reader's tests.
    let zone = std::fs::read(root.join("zones/cluster.example.zone")).unwrap();
    write("zone_file", "cluster.example", &zone);
    write(
        "zone_file",
        "directives",
        b"$ORIGIN example.\n$TTL 300\n@ IN SOA ns1 hostmaster ( 1 3600 600\n  86400 60 ) ; serial\n\
          @ NS ns1\nns1 A 192.0.2.1\n  AAAA 2001:db8::1\nwww CNAME ns1\n\
          *.apps TXT \"a \\\"quoted\\\" string\" \"two\"\nsub NS ns.sub\nns.sub A 192.0.2.9\n\
          mx 600 IN MX 10 ns1\n_sip._udp SRV 0 5 5060 ns1\n@ CAA 0 issue \"ca.example\"\n",
    );
    write(
        "zone_file",
        "include",
        b"$TTL 60\n@ SOA ns1 hostmaster 1 2 3 4 5\n@ NS ns1\nns1 A 192.0.2.1\n$INCLUDE zone.db sub\n",
    );
    write(
        "zone_file",
        "errors",
        b"@ SOA ns1\nwww A 999.1.1.1\n) \nfoo BADTYPE x\n$TTL x\n",
    );
    // Configs: the bundled one and every example.
    write(
        "config",
        "lbns.toml",
        &std::fs::read(root.join("zones/lbns.toml")).unwrap(),
    );
    for entry in std::fs::read_dir(root.join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            write("config", &name, &std::fs::read(&path).unwrap());
        }
    }
    // lbcd replies as lbcd.c lays them out: v3 with services, v2 with a weight, the
    // weightless 36-octet v2, an error status, and a short one.
    let reply = |version: u16, id: u16, status: u16, weights: &[(u32, u32)]| {
        let mut b = Vec::new();
        for v in [version, id, 1, status] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        for v in [1_700_000_000u32, 1_700_086_400, 1_700_050_000] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        for v in [132u16, 71, 37, 5, 3] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        let services = u8::try_from(weights.len().saturating_sub(1)).unwrap();
        b.extend_from_slice(&[1, 0, 67, 12, 0, services]);
        for (w, i) in weights {
            b.extend_from_slice(&w.to_be_bytes());
            b.extend_from_slice(&i.to_be_bytes());
        }
        b
    };
    write(
        "lbcd_reply",
        "v3-services",
        &reply(3, 0x4242, 1, &[(396, 200), (1, 1), (u32::MAX, 7)]),
    );
    write("lbcd_reply", "v2-weight", &reply(2, 9, 1, &[(612, 200)]));
    write("lbcd_reply", "v2-legacy", &reply(2, 9, 1, &[]));
    write("lbcd_reply", "error-status", &reply(3, 5, 3, &[]));
    write("lbcd_reply", "short", &reply(3, 5, 1, &[])[..20]);
    // HTTP responses: up with a load, down, chunked, a redirect, no body, a bad header.
    let http: &[(&str, &str)] = &[
        (
            "ok-load",
            "HTTP/1.1 200 OK\r\nx-load: 0.42\r\nContent-Length: 3\r\n\r\nok\n",
        ),
        (
            "ok-no-load",
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        ),
        (
            "down",
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\ndown",
        ),
        (
            "chunked",
            "HTTP/1.1 200 OK\r\nx-load: 1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\no\r\n1\r\nk\r\n0\r\n\r\n",
        ),
        (
            "redirect",
            "HTTP/1.1 302 Found\r\nLocation: /maintenance\r\n\r\n",
        ),
        (
            "close-delimited",
            "HTTP/1.0 200 OK\r\nx-load: 3e2\r\n\r\nall ok",
        ),
        (
            "bad-load",
            "HTTP/1.1 200 OK\r\nx-load: -1\r\nContent-Length: 2\r\n\r\nok",
        ),
        ("not-http", "SSH-2.0-OpenSSH_9.2\r\n"),
    ];
    for (name, text) in http {
        write("http_probe", name, text.as_bytes());
    }
    println!("seeds written to {}", seeds().display());
}
