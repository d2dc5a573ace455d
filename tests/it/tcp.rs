//! DNS over TCP (RFC 7766): framing, pipelining, and the limits that keep one client from
//! holding what others need: idle timeout from the last complete query, write timeout, caps
//! per client and in all (the stalest connection makes room), edns-tcp-keepalive (RFC 7828).

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn pipelined_queries_on_one_connection_are_all_answered() {
    let s = TestServer::example().await;
    let mut stream = TcpStream::connect(s.tcp).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let names = [
        "www.cluster.example.",
        "mail.cluster.example.",
        "nope.cluster.example.",
    ];
    for (i, n) in names.iter().enumerate() {
        let mut q = query(n, RecordType::A, None);
        q.metadata.id = i as u16 + 100;
        tcp_send(&mut stream, &q.to_vec().unwrap());
    }
    for (i, name) in names.iter().enumerate() {
        let m = Message::from_vec(&tcp_recv(&mut stream).unwrap()).unwrap();
        assert_eq!(m.id, i as u16 + 100);
        assert_eq!(m.queries[0].name().to_ascii(), *name);
    }
    s.stop().await;
}

/// The example config with `[server]` TCP settings replaced by `tcp`.
fn tcp_config(tcp: &str) -> String {
    example_config("").replace("udp_workers = 2", &format!("udp_workers = 1\n{tcp}"))
}

async fn start(tcp: &str) -> TestServer {
    TestServer::start(&tcp_config(tcp), &[("cluster.example.zone", EXAMPLE_ZONE)]).await
}

/// A TCP connection to `server` from `source` (any 127/8 address is ours on loopback), with a
/// 2 s read timeout; `rcvbuf` sets a small receive buffer before connecting.
fn connect_from(source: &str, server: SocketAddr, rcvbuf: Option<usize>) -> TcpStream {
    let source: IpAddr = source.parse().unwrap();
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .unwrap();
    if let Some(size) = rcvbuf {
        socket.set_recv_buffer_size(size).unwrap();
    }
    socket.bind(&SocketAddr::new(source, 0).into()).unwrap();
    socket.connect(&server.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    stream
}

fn framed(message: &Message) -> Vec<u8> {
    let bytes = message.to_vec().unwrap();
    let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(&bytes);
    out
}

/// Waits up to `within` for the server to close `stream` (EOF or reset), reading and dropping
/// whatever answers come first; returns how long that took, or `None` if it stayed open.
fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while start.elapsed() < within {
        match stream.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

/// Asserts that a fresh connection from `source` is answered.
fn answered_from(source: &str, server: SocketAddr) {
    let mut c = connect_from(source, server, None);
    tcp_send(
        &mut c,
        &query("www.cluster.example.", RecordType::A, None)
            .to_vec()
            .unwrap(),
    );
    let m = Message::from_vec(&tcp_recv(&mut c).expect("an answer")).unwrap();
    assert_eq!(addrs(&m).len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_are_closed_and_the_stalest_makes_room_at_the_cap() {
    let s = start("tcp_idle_timeout = \"300ms\"\ntcp_max_connections = 1").await;
    // The first connection holds the only slot.
    let mut first = connect_from("127.0.0.1", s.tcp, None);
    tcp_send(
        &mut first,
        &query("www.cluster.example.", RecordType::A, None)
            .to_vec()
            .unwrap(),
    );
    tcp_recv(&mut first).unwrap();
    // A second one is answered: the first, the stalest, is closed to make room.
    answered_from("127.0.0.1", s.tcp);
    assert!(closed_within(&mut first, Duration::from_secs(1)).is_some());

    // Idle past the timeout: the server closes the connection (read returns EOF).
    let mut idle = connect_from("127.0.0.1", s.tcp, None);
    let waited = closed_within(&mut idle, Duration::from_secs(3)).expect("closed when idle");
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_millis(1500),
        "closed after {waited:?}"
    );
    s.stop().await;
}

/// A client that sends queries and never reads its answers fills the socket buffers; the
/// server's write then waits, and after `tcp_write_timeout` the connection is closed.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_does_not_read_is_closed_within_the_write_timeout() {
    let s = start("tcp_idle_timeout = \"30s\"\ntcp_write_timeout = \"500ms\"").await;
    let mut c = connect_from("127.0.0.1", s.tcp, Some(4096));
    c.set_write_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    // 40 A records: about 700 octets of answer per 40-octet query.
    let q = framed(&query("big.cluster.example.", RecordType::A, None));
    let start = Instant::now();
    let mut sent = 0;
    let closed = loop {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "still open after {sent} queries and {:?}",
            start.elapsed()
        );
        match c.write_all(&q) {
            Ok(()) => sent += 1,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                std::thread::sleep(Duration::from_millis(20));
            }
            // Reset by the server: it gave up on us.
            Err(_) => break start.elapsed(),
        }
    };
    // The answers to the first queries fill the buffers in well under 100 ms; the rest is
    // the write timeout (500 ms) and the detection here.
    assert!(
        closed < Duration::from_millis(2500),
        "closed after {closed:?} ({sent} queries sent)"
    );
    assert!(sent > 10, "{sent} queries sent");
    // Others are served meanwhile and after.
    answered_from("127.0.0.2", s.tcp);
    s.stop().await;
}

/// 300 connections that send queries and never read, from 30 addresses: at the cap of 256
/// the stalest are closed for newcomers, so a new client is answered at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_client_is_answered_while_300_bad_connections_are_open() {
    // Long timeouts: only making room at the cap can serve the newcomer within 2 s.
    let s = start("tcp_idle_timeout = \"60s\"\ntcp_write_timeout = \"60s\"").await;
    let q = framed(&query("big.cluster.example.", RecordType::A, None)).repeat(20);
    let mut bad = Vec::new();
    for i in 0..300 {
        let mut c = connect_from(&format!("127.0.3.{}", 10 + i / 10), s.tcp, Some(4096));
        c.set_write_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        // Whatever fits; the server may already have closed it.
        let _ = c.write_all(&q);
        bad.push(c);
    }
    let start = Instant::now();
    answered_from("127.0.0.2", s.tcp);
    let took = start.elapsed();
    assert!(took < Duration::from_secs(2), "answered after {took:?}");
    // And again, from another address.
    answered_from("127.0.0.3", s.tcp);
    drop(bad);
    s.stop().await;
}

/// The idle timer runs from the last complete query: bytes that complete none do not extend
/// it. Here the next query trickles in, each part well within the idle timeout of the one
/// before, but the whole of it after the timeout: the connection is closed at the timeout.
#[tokio::test(flavor = "multi_thread")]
async fn bytes_that_complete_no_query_do_not_keep_a_connection() {
    let s = start("tcp_idle_timeout = \"1s\"").await;
    let mut c = connect_from("127.0.0.1", s.tcp, None);
    let q = framed(&query("www.cluster.example.", RecordType::A, None));
    c.write_all(&q).unwrap();
    tcp_recv(&mut c).unwrap();
    let answered = Instant::now();
    // The length prefix one octet at a time (at 0.45 s and 0.9 s), then the message in
    // parts every 150 ms: complete at about 2.4 s.
    let mut due: Vec<(Duration, &[u8])> = vec![
        (Duration::from_millis(450), &q[..1]),
        (Duration::from_millis(900), &q[1..2]),
    ];
    for (i, part) in q[2..].chunks(4).enumerate() {
        due.push((Duration::from_millis(1050 + 150 * i as u64), part));
    }
    c.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let mut buf = [0u8; 512];
    let mut next = 0;
    let closed = loop {
        assert!(answered.elapsed() < Duration::from_secs(5), "still open");
        while next < due.len() && due[next].0 <= answered.elapsed() {
            if c.write_all(due[next].1).is_err() {
                break;
            }
            next += 1;
        }
        match c.read(&mut buf) {
            Ok(0) => break answered.elapsed(),
            Ok(n) => panic!(
                "{n} octets of an answer to a query completed {:?} after the last",
                answered.elapsed()
            ),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break answered.elapsed(),
        }
    };
    assert!(
        closed >= Duration::from_millis(900) && closed < Duration::from_millis(2000),
        "closed {closed:?} after the last complete query"
    );
    s.stop().await;
}

/// No DNS message is empty: a zero-length frame closes the connection at once (it used to
/// reset the idle timer, so two zero octets every few seconds kept a slot forever).
#[tokio::test(flavor = "multi_thread")]
async fn a_zero_length_frame_closes_the_connection() {
    let s = start("tcp_idle_timeout = \"30s\"").await;
    let mut c = connect_from("127.0.0.1", s.tcp, None);
    // A query, then an empty frame: the answer still comes, then the close.
    let mut bytes = framed(&query("www.cluster.example.", RecordType::A, None));
    bytes.extend_from_slice(&[0, 0]);
    c.write_all(&bytes).unwrap();
    let m = Message::from_vec(&tcp_recv(&mut c).unwrap()).unwrap();
    assert_eq!(addrs(&m).len(), 3);
    let waited = closed_within(&mut c, Duration::from_secs(5)).expect("closed");
    assert!(waited < Duration::from_secs(1), "closed after {waited:?}");
    // An empty frame first: closed without an answer.
    let mut c = connect_from("127.0.0.1", s.tcp, None);
    c.write_all(&[0, 0]).unwrap();
    let waited = closed_within(&mut c, Duration::from_secs(5)).expect("closed");
    assert!(waited < Duration::from_secs(1), "closed after {waited:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_per_client_are_capped() {
    let s = start("tcp_max_connections_per_client = 2").await;
    let held: Vec<TcpStream> = (0..2)
        .map(|_| connect_from("127.0.0.5", s.tcp, None))
        .collect();
    // Let the server admit both before the third arrives.
    std::thread::sleep(Duration::from_millis(100));
    let mut third = connect_from("127.0.0.5", s.tcp, None);
    let _ = third.write_all(&framed(&query("www.cluster.example.", RecordType::A, None)));
    assert!(
        closed_within(&mut third, Duration::from_secs(2)).is_some(),
        "over the per-client cap: closed"
    );
    // Another client is not affected; the first two still work.
    answered_from("127.0.0.6", s.tcp);
    for mut c in held {
        tcp_send(
            &mut c,
            &query("www.cluster.example.", RecordType::A, None)
                .to_vec()
                .unwrap(),
        );
        tcp_recv(&mut c).expect("an answer on a connection within the cap");
    }
    s.stop().await;
}

/// RFC 7828: dig's `+keepalive` asks, and is told the idle timeout (12.5 s here).
#[tokio::test(flavor = "multi_thread")]
async fn edns_tcp_keepalive_tells_dig_the_idle_timeout() {
    let s = start("tcp_idle_timeout = \"12500ms\"").await;
    let out = dig(s.tcp, &["+tcp", "+keepalive", "www.cluster.example.", "A"]);
    assert!(out.contains("status: NOERROR"), "{out}");
    assert!(out.contains("KEEPALIVE: 12.5 secs"), "{out}");
    // Not asked: not told.
    let out = dig(s.tcp, &["+tcp", "www.cluster.example.", "A"]);
    assert!(
        out.contains("status: NOERROR") && !out.contains("KEEPALIVE"),
        "{out}"
    );
    s.stop().await;
}
