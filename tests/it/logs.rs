//! Logs that clients cause are rate limited: a flood of packets that each make a library warn
//! leaves a few lines in the log of a running `lbns serve`, and the count of those left out.

use std::net::{SocketAddr, UdpSocket};
use std::process::Stdio;
use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;

use crate::support::*;

/// A query whose OPT announces a 4-octet NSID option and then ends: hickory-proto logs a WARN
/// ("incomplete or poorly formatted EDNS options") for each, drops the options, and the query
/// is answered.
fn truncated_nsid(id: u16) -> Vec<u8> {
    let mut bytes = query("www.cluster.example.", RecordType::A, None)
        .to_vec()
        .unwrap();
    bytes[..2].copy_from_slice(&id.to_be_bytes());
    // ARCOUNT 1; OPT: root, type 41, payload 1232, TTL 0, RDLENGTH 4: code 3 (NSID), length 4,
    // and no data.
    bytes[11] = 1;
    bytes.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 4, 0, 3, 0, 4]);
    bytes
}

/// Sends `n` queries in windows of 50 sent before their 50 answers are read (so the server's
/// socket buffer never overflows); returns how many were answered.
fn flood(socket: &UdpSocket, server: SocketAddr, n: usize) -> usize {
    let mut answered = 0;
    let mut buf = [0u8; 1500];
    for window in 0..n.div_ceil(50) {
        let count = 50.min(n - window * 50);
        for i in 0..count {
            socket
                .send_to(&truncated_nsid((window * 50 + i) as u16), server)
                .unwrap();
        }
        for _ in 0..count {
            match socket.recv_from(&mut buf) {
                Ok((len, _)) => {
                    let m = Message::from_vec(&buf[..len]).unwrap();
                    assert_eq!(addrs(&m).len(), 3, "the query is answered");
                    answered += 1;
                }
                Err(_) => break,
            }
        }
    }
    answered
}

#[test]
fn a_flood_of_packets_that_make_a_library_warn_leaves_a_few_lines() {
    let port = free_port();
    let config = example_config("")
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"))
        .replace("udp_workers = 2", "udp_workers = 1")
        // Cookies off: with them on, lbns's own scan of the options answers FORMERR before the
        // library parses them (and warns).
        + "\n[status]\nlisten = []\n[cookies]\nenabled = false\n";
    let dir = config_dir(&config, EXAMPLE_ZONE);
    let log_path = dir.path().join("stderr.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut lbns = spawn_serve(
        &["--log-format", "json"],
        &dir.path().join("lbns.toml"),
        Stdio::from(log),
    );
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    // Wait until it answers (a plain query: no line).
    let deadline = Instant::now() + Duration::from_secs(10);
    let plain = query("www.cluster.example.", RecordType::A, None);
    while udp_raw(server, &plain.to_vec().unwrap()).is_none() {
        assert!(Instant::now() < deadline, "lbns did not answer on {server}");
    }
    let before = std::fs::read_to_string(&log_path).unwrap().lines().count();

    // 20,000 packets, then one more after a pause so the count of the last window is written.
    let start = Instant::now();
    let mut answered = flood(&socket, server, 20_000);
    let seconds = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(1100));
    answered += flood(&socket, server, 1);
    // Give the last line a moment to reach the file, then stop lbns.
    std::thread::sleep(Duration::from_millis(200));
    let _ = lbns.0.kill();
    let _ = lbns.0.wait();

    let text = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<&str> = text.lines().skip(before).collect();
    let json: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let warned = json
        .iter()
        .filter(|l| {
            l["target"] == "hickory_proto::rr::rdata::opt"
                && l["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("incomplete or poorly formatted EDNS options"))
        })
        .count();
    let suppressed: u64 = json
        .iter()
        .filter(|l| l["target"] == "lbns::logging")
        .map(|l| l["fields"]["suppressed"].as_u64().unwrap())
        .sum();
    assert!(answered >= 19_000, "only {answered} of 20,001 answered");
    // One line a second at most (plus the one after the pause), and every packet accounted
    // for: written or counted as left out.
    assert!(warned >= 2, "{warned} lines:\n{}", lines.join("\n"));
    assert!(
        warned as f64 <= seconds.ceil() + 2.0,
        "{warned} lines in {seconds:.1} s:\n{}",
        lines.join("\n")
    );
    assert_eq!(
        warned as u64 + suppressed,
        answered as u64,
        "{}",
        lines.join("\n")
    );
    assert!(
        lines.len() <= warned * 2 + 2 && text.len() < 16 * 1024,
        "{} lines, {} octets:\n{}",
        lines.len(),
        text.len(),
        lines.join("\n")
    );
}
