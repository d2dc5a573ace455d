//! DNS over TCP (RFC 7766): framing, pipelining, idle timeout, connection cap.

use std::io::Read;
use std::net::TcpStream;
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

#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_are_closed_and_the_cap_holds() {
    let config = example_config("").replace(
        "udp_workers = 2",
        "udp_workers = 1\ntcp_idle_timeout = \"300ms\"\ntcp_max_connections = 1",
    );
    let s = TestServer::start(&config, &[("cluster.example.zone", EXAMPLE_ZONE)]).await;

    // The first connection holds the only slot; a second is closed without an answer.
    let mut first = TcpStream::connect(s.tcp).unwrap();
    first
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    tcp_send(
        &mut first,
        &query("www.cluster.example.", RecordType::A, None)
            .to_vec()
            .unwrap(),
    );
    tcp_recv(&mut first).unwrap();
    let mut second = TcpStream::connect(s.tcp).unwrap();
    second
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    tcp_send(
        &mut second,
        &query("www.cluster.example.", RecordType::A, None)
            .to_vec()
            .unwrap(),
    );
    assert!(tcp_recv(&mut second).is_err(), "over the cap: closed");

    // Idle past the timeout: the server closes the first connection (read returns EOF).
    let start = Instant::now();
    let mut buf = [0u8; 1];
    let n = first.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0);
    let waited = start.elapsed();
    assert!(
        waited < Duration::from_millis(1500),
        "closed after {waited:?}"
    );

    // The slot is free again.
    let m = tcp(s.tcp, &query("www.cluster.example.", RecordType::A, None));
    assert_eq!(addrs(&m).len(), 3);
    s.stop().await;
}
