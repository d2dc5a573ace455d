//! Response rate limiting and DNS cookies over real sockets: queries counted over one aligned
//! second from several loopback addresses (as BIND's rrl system test counts them), TCP never
//! limited, a valid server cookie never limited, and the cookie round trip with dig and kdig.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Edns, Message, ResponseCode};
use hickory_proto::rr::RecordType;
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};

use crate::support::*;

/// What came back for a burst of queries.
#[derive(Debug, Default, PartialEq)]
struct Tally {
    /// Answers with data, or NXDOMAIN, not truncated.
    full: usize,
    /// Empty, TC=1 (slipped).
    truncated: usize,
    /// BADCOOKIE (slipped, to a client that sent a cookie).
    badcookie: usize,
    /// No reply (dropped).
    none: usize,
}

/// Sleeps until 20 ms into the next second of the wall clock: a burst sent then stays inside
/// one second, as BIND's rrl system test aligns its bursts.
fn align_to_second() {
    let into = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_millis();
    std::thread::sleep(Duration::from_millis(u64::from(1020 - into)));
}

/// Sends `queries` (one message per ID) from `from` to `server` as fast as one socket sends,
/// then reads replies until 500 ms pass without one, and sorts them.
fn burst(server: SocketAddr, from: &str, queries: &[Message]) -> Tally {
    let socket = UdpSocket::bind((from, 0)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let start = Instant::now();
    for q in queries {
        socket.send_to(&q.to_vec().unwrap(), server).unwrap();
    }
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "sending the burst took {:?}: not one second's burst",
        start.elapsed()
    );
    let mut replies: HashMap<u16, Message> = HashMap::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = socket.recv(&mut buf) {
        let m = Message::from_vec(&buf[..n]).expect("reply parses");
        assert!(
            replies.insert(m.id, m).is_none(),
            "two replies to one query"
        );
    }
    let mut tally = Tally::default();
    for q in queries {
        match replies.get(&q.id) {
            None => tally.none += 1,
            Some(r) if r.metadata.response_code == ResponseCode::BADCOOKIE => {
                assert!(r.answers.is_empty() && !r.metadata.truncation, "{r:?}");
                tally.badcookie += 1;
            }
            Some(r) if r.metadata.truncation => {
                assert!(r.answers.is_empty() && r.authorities.is_empty(), "{r:?}");
                tally.truncated += 1;
            }
            Some(_) => tally.full += 1,
        }
    }
    tally
}

/// `n` copies of `name`/`rtype` with EDNS 1232, IDs 1..=n.
fn copies(name: &str, rtype: RecordType, n: u16) -> Vec<Message> {
    (1..=n)
        .map(|id| {
            let mut q = query(name, rtype, Some(1232));
            q.metadata.id = id;
            q
        })
        .collect()
}

fn assert_near(what: &str, got: usize, want: usize) {
    assert!(
        got.abs_diff(want) <= 1,
        "{what}: {got}, expected {want} ± 1"
    );
}

const RRL: &str = r#"
[rrl]
responses_per_second = 10
slip = 2
exempt = ["127.0.2.0/24"]
"#;

/// 100 identical queries in one second from one address: 10 answers, 45 TC=1, 45 nothing
/// (± 1); 10 from another /24 at the same time: every answer; 100 from an exempt network:
/// every answer; NXDOMAIN for
/// 30 different names counts as one key; over TCP nothing is limited; the counters agree.
#[tokio::test(flavor = "multi_thread")]
async fn one_second_of_identical_queries_is_limited_per_prefix() {
    let s = TestServer::start(
        &example_config(RRL),
        &[("cluster.example.zone", EXAMPLE_ZONE)],
    )
    .await;
    let (udp, tcp, status) = (s.udp, s.tcp, s.status());
    tokio::task::spawn_blocking(move || {
        align_to_second();
        let www = copies("www.cluster.example.", RecordType::A, 100);
        let limited = burst(udp, "127.0.0.1", &www);
        assert_near("answers", limited.full, 10);
        assert_near("slipped (TC=1)", limited.truncated, 45);
        assert_near("dropped", limited.none, 45);
        assert_eq!(limited.badcookie, 0);
        // Another /24 in the same second, within the rate: every answer, whatever the flood
        // next door does. An exempt network: every answer to a flood.
        let other = burst(udp, "127.0.1.1", &www[..10]);
        assert_eq!(other.full, 10, "another /24: {other:?}");
        let exempt = burst(udp, "127.0.2.1", &www);
        assert_eq!(exempt.full, 100, "exempt: {exempt:?}");
        // Random names under one zone: NXDOMAIN counts per zone, not per name.
        let random: Vec<Message> = (1..=30)
            .map(|i| {
                let mut q = query(
                    &format!("r{i}x{}.nope.cluster.example.", rand::random::<u32>()),
                    RecordType::A,
                    Some(1232),
                );
                q.metadata.id = i;
                q
            })
            .collect();
        let nx = burst(udp, "127.0.3.1", &random);
        assert_near("NXDOMAIN answers", nx.full, 10);
        assert_eq!(nx.full + nx.truncated + nx.none, 30);
        // TCP from the limited address: never limited.
        let mut stream = TcpStream::connect(tcp).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        for q in &www[..20] {
            tcp_send(&mut stream, &q.to_vec().unwrap());
            let r = Message::from_vec(&tcp_recv(&mut stream).unwrap()).unwrap();
            assert_eq!(r.answers.len(), 3, "over TCP: {r:?}");
        }
        // The counters say what the clients saw.
        let slipped = metric(status, "lbns_rrl_slipped_total") as usize;
        let dropped = metric(status, "lbns_rrl_dropped_total") as usize;
        let limitedn = metric(status, "lbns_rrl_limited_total") as usize;
        assert_eq!(slipped, limited.truncated + nx.truncated);
        assert_eq!(dropped, limited.none + nx.none);
        assert_eq!(limitedn, slipped + dropped);
    })
    .await
    .unwrap();
    s.stop().await;
}

/// `q` with a COOKIE option holding `data`.
fn with_cookie(mut q: Message, data: &[u8]) -> Message {
    q.edns
        .get_or_insert_with(Edns::new)
        .options_mut()
        .insert(EdnsOption::Unknown(10, data.to_vec()));
    q
}

/// The COOKIE option data of a reply.
fn cookie_of(m: &Message) -> Vec<u8> {
    match m.edns.as_ref().and_then(|e| e.option(EdnsCode::Cookie)) {
        Some(EdnsOption::Unknown(10, data)) => data.clone(),
        other => panic!("no COOKIE in {m:?}: {other:?}"),
    }
}

/// A client that shows a valid server cookie is never limited (its address is not spoofed);
/// one that sends a client cookie alone is, and its slipped replies are BADCOOKIE with the
/// server cookie to use, as BIND sends them.
#[tokio::test(flavor = "multi_thread")]
async fn a_valid_server_cookie_passes_the_rate_limit() {
    let s = TestServer::start(
        &example_config(RRL),
        &[("cluster.example.zone", EXAMPLE_ZONE)],
    )
    .await;
    let (udp, status) = (s.udp, s.status());
    tokio::task::spawn_blocking(move || {
        let client_cookie = [0x5a; 8];
        let first = with_cookie(
            query("www.cluster.example.", RecordType::A, Some(1232)),
            &client_cookie,
        );
        let socket = UdpSocket::bind("127.0.4.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        socket.send_to(&first.to_vec().unwrap(), udp).unwrap();
        let mut buf = [0u8; 4096];
        let n = socket.recv(&mut buf).unwrap();
        let full = cookie_of(&Message::from_vec(&buf[..n]).unwrap());
        assert_eq!((full.len(), &full[..8]), (24, &client_cookie[..]));

        align_to_second();
        let with = |cookie: &[u8]| -> Vec<Message> {
            copies("www.cluster.example.", RecordType::A, 60)
                .into_iter()
                .map(|q| with_cookie(q, cookie))
                .collect()
        };
        let valid = burst(udp, "127.0.4.1", &with(&full));
        assert_eq!(valid.full, 60, "with a valid server cookie: {valid:?}");
        let client_only = burst(udp, "127.0.4.1", &with(&client_cookie));
        assert!(client_only.full <= 10, "{client_only:?}");
        assert_eq!(client_only.truncated, 0, "{client_only:?}");
        assert!(client_only.badcookie >= 20, "{client_only:?}");
        let badcookie = metric(status, "lbns_responses_total{rcode=\"BADCOOKIE\"}") as usize;
        assert_eq!(badcookie, client_only.badcookie);
    })
    .await
    .unwrap();
    s.stop().await;
}

/// Runs `tool` (dig or kdig) against `server` with `args`.
fn run(tool: &str, server: SocketAddr, args: &[&str]) -> String {
    let out = Command::new(require_tool(tool))
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), "+time=2"])
        .arg(if tool == "kdig" {
            "+retry=0"
        } else {
            "+tries=1"
        })
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The COOKIE hex digits in dig's or kdig's output (`; COOKIE: …` / `;; COOKIE: …`), lowercase.
fn printed_cookie(out: &str) -> String {
    out.lines()
        .find_map(|l| l.trim_start_matches(';').trim().strip_prefix("COOKIE: "))
        .unwrap_or_else(|| panic!("no COOKIE in:\n{out}"))
        .split_whitespace()
        .next()
        .unwrap()
        .to_ascii_lowercase()
}

/// The cookie round trip as dig and kdig do it: a client cookie gets a server cookie back; that
/// cookie sent again is valid and comes back as it was; a forged one with no question gets
/// BADCOOKIE (RFC 7873 §5.4). dig sends a cookie with every query, and the fast path answers
/// those queries.
#[tokio::test(flavor = "multi_thread")]
async fn cookie_round_trip_with_dig_and_kdig() {
    let s = TestServer::example().await;
    let (udp, status) = (s.udp, s.status());
    tokio::task::spawn_blocking(move || {
        let fast_before = metric(status, "lbns_udp_fast_path_total");
        let out = run("dig", udp, &["+norec", "www.cluster.example.", "A"]);
        assert!(
            out.contains("status: NOERROR") && out.contains("(good)"),
            "{out}"
        );
        let cookie = printed_cookie(&out);
        assert_eq!(cookie.len(), 48, "client and RFC 9018 server cookie: {out}");
        // Sent back within the half hour: valid, and returned as it came.
        let out = run(
            "dig",
            udp,
            &[
                "+norec",
                &format!("+cookie={cookie}"),
                "www.cluster.example.",
                "A",
            ],
        );
        assert_eq!(printed_cookie(&out), cookie, "{out}");
        assert!(out.contains("ANSWER: 3"), "{out}");
        // Both went through the fast path, cookie and all.
        let fast = metric(status, "lbns_udp_fast_path_total") - fast_before;
        assert!(fast >= 2.0, "fast path answered {fast} of dig's 2 queries");

        // No question, a forged server cookie: BADCOOKIE (+nobadcookie: dig does not retry).
        let forged = format!("{}{}", &cookie[..40], "00000000");
        let out = run(
            "dig",
            udp,
            &["+header-only", "+nobadcookie", &format!("+cookie={forged}")],
        );
        assert!(out.contains("status: BADCOOKIE"), "{out}");
        assert_ne!(printed_cookie(&out), forged, "{out}");
        // No question, the client cookie alone: NOERROR and a server cookie.
        let out = run(
            "dig",
            udp,
            &["+header-only", &format!("+cookie={}", &cookie[..16])],
        );
        assert!(out.contains("status: NOERROR"), "{out}");
        assert_eq!(printed_cookie(&out).len(), 48, "{out}");

        // kdig sends a cookie only when asked.
        let out = run("kdig", udp, &["+cookie", "www.cluster.example.", "A"]);
        assert!(out.contains("status: NOERROR"), "{out}");
        let kcookie = printed_cookie(&out);
        assert_eq!(kcookie.len(), 48, "{out}");
        let out = run(
            "kdig",
            udp,
            &[&format!("+cookie={kcookie}"), "www.cluster.example.", "A"],
        );
        assert_eq!(printed_cookie(&out), kcookie, "{out}");
        // A server cookie lbns did not make is replaced.
        let other = format!("{}{}", &kcookie[..16], "0".repeat(32));
        let out = run(
            "kdig",
            udp,
            &[&format!("+cookie={other}"), "www.cluster.example.", "A"],
        );
        let renewed = printed_cookie(&out);
        assert_eq!(&renewed[..16], &kcookie[..16], "{out}");
        assert_ne!(renewed, other, "{out}");
    })
    .await
    .unwrap();
    s.stop().await;
}
