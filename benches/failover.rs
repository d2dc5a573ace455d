//! Failover measurement: kills an HTTP backend 20 times and prints how long lbns kept
//! answering it (time-to-drop p50/p99/max) against the pool TTL. Default probe settings.
//!
//! Run: `cargo bench --bench failover` (add `-- --trials N` for more).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use lbns::app::Server;
use lbns::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const TTL: u64 = 5;

async fn backend(addr: SocketAddr) -> JoinHandle<()> {
    let listener = loop {
        match TcpListener::bind(addr).await {
            Ok(l) => break l,
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    };
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
                    )
                    .await;
            });
        }
    })
}

fn answers(server: SocketAddr) -> Vec<String> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut q = Message::new(1, MessageType::Query, OpCode::Query);
    q.add_query(Query::query(
        Name::from_ascii("www.f.example.").unwrap(),
        RecordType::A,
    ));
    socket.send_to(&q.to_vec().unwrap(), server).unwrap();
    let mut buf = [0u8; 1500];
    let Ok((n, _)) = socket.recv_from(&mut buf) else {
        return Vec::new();
    };
    Message::from_vec(&buf[..n])
        .map(|m| {
            m.answers
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(a.0.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let trials: usize = std::env::args()
        .skip_while(|a| a != "--trials")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let ips = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];
    let addrs: Vec<SocketAddr> = ips
        .iter()
        .map(|ip| format!("{ip}:{port}").parse().unwrap())
        .collect();
    let mut tasks = Vec::new();
    for a in &addrs {
        tasks.push(Some(backend(*a).await));
    }

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("f.zone"),
        "$TTL 60\n@ SOA ns1 h 1 3600 600 86400 60\n@ NS ns1\nns1 A 127.0.0.1\n",
    )
    .unwrap();
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_workers = 1\n\
         [status]\nenabled = false\n\
         [[zone]]\norigin = \"f.example.\"\nfile = \"f.zone\"\n\
         [[pool]]\nname = \"www.f.example.\"\nttl = {TTL}\n\
         backends = [\"127.0.0.2\", \"127.0.0.3\", \"127.0.0.4\"]\n\
         probe = {{ kind = \"http\", port = {port} }}\n"
    );
    std::fs::write(dir.path().join("lbns.toml"), config).unwrap();
    let config = Config::load(&dir.path().join("lbns.toml")).unwrap();
    let server = Server::start(config).await.unwrap();
    let dns = server.udp_addrs()[0];

    let mut drops = Vec::new();
    let mut returns = Vec::new();
    for t in 0..trials {
        let i = t % 3;
        let victim = ips[i].to_owned();
        // Start each trial at a random phase of the probe cadence.
        tokio::time::sleep(Duration::from_millis(137 * (t as u64 % 7))).await;
        tasks[i].take().unwrap().abort();
        let killed = Instant::now();
        let d = tokio::task::spawn_blocking(move || {
            loop {
                if !answers(dns).contains(&victim) {
                    return killed.elapsed();
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
        .await
        .unwrap();
        drops.push(d);
        tasks[i] = Some(backend(addrs[i]).await);
        let restarted = Instant::now();
        let victim = ips[i].to_owned();
        let r = tokio::task::spawn_blocking(move || {
            loop {
                if answers(dns).contains(&victim) {
                    return restarted.elapsed();
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
        .await
        .unwrap();
        returns.push(r);
        println!(
            "trial {:2}: killed {} dropped after {:>7.3?}, back {:>7.3?} after restart",
            t + 1,
            ips[i],
            d,
            r
        );
    }
    drops.sort();
    returns.sort();
    let ttl = Duration::from_secs(TTL);
    let within = drops.iter().filter(|d| **d <= ttl).count();
    println!();
    println!("probe: http, interval 1s, timeout 1s, jitter 200ms, rise 2, fall 2; pool TTL {TTL}s");
    println!(
        "time-to-drop over {trials} kills: p50 {:.3?}  p99 {:.3?}  max {:.3?}  (TTL {TTL}s; {within}/{trials} within)",
        percentile(&drops, 0.5),
        percentile(&drops, 0.99),
        drops[drops.len() - 1]
    );
    println!(
        "time-to-return after restart:   p50 {:.3?}  p99 {:.3?}  max {:.3?}",
        percentile(&returns, 0.5),
        percentile(&returns, 0.99),
        returns[returns.len() - 1]
    );
    server.shutdown().await;
    assert_eq!(within, trials, "a killed backend outlived the TTL");
}
