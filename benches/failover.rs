//! Failover measurement: how long lbns keeps answering an HTTP backend after it fails, asked
//! directly (no resolver; benches/failover-resolver.sh measures what a client behind one sees).
//! Two cases, interleaved, 20 trials each by default, default probe settings, pool TTL 5 s:
//!
//! - *refused*: the backend's listener is closed (a killed process): connects are refused;
//! - *hung*: the listener stays open and accepts, but nothing is ever read or answered (a hung
//!   process): each probe runs into its timeout.
//!
//! Each failure comes at a random phase of the probe cadence (a random part of the probe
//! interval after the backend came back). lbns is asked every 5 ms; a lost (no reply within
//! 500 ms) or unparseable reply counts as a failed query, never as a drop. Prints time-to-drop
//! p50/p95/p99/max per case (a percentile only where the sample supports it), how many drops
//! were within the TTL, and the time back after the backend recovers.
//!
//! Run: `cargo bench --bench failover` (add `-- --trials N` for N trials per case).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use lbns::app::Server;
use lbns::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const TTL: u64 = 5;
/// The probe interval (the default): a failure comes at a random point within one.
const INTERVAL: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Case {
    Refused,
    Hung,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::Refused => "refused (listener closed)",
            Case::Hung => "hung (accepts, never answers)",
        }
    }
}

/// An HTTP backend answering 200 until closed (refused) or told to hang.
struct Backend {
    addr: SocketAddr,
    hang: Arc<AtomicBool>,
    task: Option<JoinHandle<()>>,
}

impl Backend {
    async fn start(addr: SocketAddr) -> Backend {
        let mut b = Backend {
            addr,
            hang: Arc::new(AtomicBool::new(false)),
            task: None,
        };
        b.listen().await;
        b
    }

    async fn listen(&mut self) {
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        };
        let hang = self.hang.clone();
        self.task = Some(tokio::spawn(async move {
            // Connections accepted while hung: held open, never read, never answered.
            let mut held = Vec::new();
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    continue;
                };
                if hang.load(Ordering::SeqCst) {
                    held.push(s);
                    continue;
                }
                held.clear();
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
        }));
    }

    async fn fail(&mut self, case: Case) {
        match case {
            // Aborting the task drops the listener: the port refuses connections.
            Case::Refused => drop(self.task.take().map(|t| t.abort())),
            Case::Hung => self.hang.store(true, Ordering::SeqCst),
        }
    }

    async fn recover(&mut self, case: Case) {
        match case {
            Case::Refused => self.listen().await,
            Case::Hung => self.hang.store(false, Ordering::SeqCst),
        }
    }
}

/// The A addresses lbns answers with, or `None` for a lost (no reply within 500 ms) or
/// unparseable reply: a failed query, never a drop.
fn answers(socket: &std::net::UdpSocket, id: u16) -> Option<Vec<String>> {
    let mut q = Message::new(id, MessageType::Query, OpCode::Query);
    q.add_query(Query::query(
        Name::from_ascii("www.f.example.").unwrap(),
        RecordType::A,
    ));
    socket.send(&q.to_vec().unwrap()).ok()?;
    let mut buf = [0u8; 1500];
    let deadline = Instant::now() + Duration::from_millis(500);
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        socket
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let n = socket.recv(&mut buf).ok()?;
        let m = Message::from_vec(&buf[..n]).ok()?;
        if m.metadata.id != id {
            continue; // a late reply to an earlier query
        }
        let addrs: Vec<String> = m
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.0.to_string()),
                _ => None,
            })
            .collect();
        return (!addrs.is_empty()).then_some(addrs);
    }
}

/// Asks `dns` every 5 ms until `victim` is absent (`gone`) or present (`!gone`) in an answer;
/// returns the time since `since` and the number of failed queries on the way.
async fn watch(dns: SocketAddr, victim: String, gone: bool, since: Instant) -> (Duration, u32) {
    tokio::task::spawn_blocking(move || {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.connect(dns).unwrap();
        let mut failed = 0;
        let mut id = 0u16;
        loop {
            id = id.wrapping_add(1);
            match answers(&socket, id) {
                Some(a) if a.contains(&victim) != gone => return (since.elapsed(), failed),
                Some(_) => {}
                None => failed += 1,
            }
            assert!(
                since.elapsed() < Duration::from_secs(60),
                "{victim} not {} after 60 s",
                if gone { "dropped" } else { "back" }
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    })
    .await
    .unwrap()
}

/// Nearest-rank percentile, or `None` where the sample cannot support it: a p-th percentile
/// needs n >= 1/(1-p) samples (20 for p95, 100 for p99) to have one above it; below that it
/// would only repeat the maximum.
fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    let n = sorted.len();
    if n == 0 || (n as f64) < (1.0 / (1.0 - p)).round() {
        return None;
    }
    Some(sorted[((p * n as f64).ceil() as usize).max(1) - 1])
}

fn show(d: Option<Duration>, p: f64) -> String {
    match d {
        Some(d) => format!("{:.3}s", d.as_secs_f64()),
        None => format!("n/a (n < {:.0})", (1.0 / (1.0 - p)).round()),
    }
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
    let mut backends = Vec::new();
    for ip in ips {
        backends.push(Backend::start(format!("{ip}:{port}").parse().unwrap()).await);
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

    let cases = [Case::Refused, Case::Hung];
    let mut drops = [Vec::new(), Vec::new()];
    let mut returns = [Vec::new(), Vec::new()];
    let mut failed = [0u32; 2];
    for t in 0..trials * cases.len() {
        let (ci, case) = (t % cases.len(), cases[t % cases.len()]);
        let i = t % ips.len();
        let victim = ips[i].to_owned();
        // In answers again before each failure (the previous trial waited for that).
        let (_, f) = watch(dns, victim.clone(), false, Instant::now()).await;
        failed[ci] += f;
        // A random phase of the probe cadence.
        tokio::time::sleep(INTERVAL.mul_f64(rand::random_range(0.0..1.0))).await;
        backends[i].fail(case).await;
        let failed_at = Instant::now();
        let (d, f) = watch(dns, victim.clone(), true, failed_at).await;
        failed[ci] += f;
        drops[ci].push(d);
        backends[i].recover(case).await;
        let (r, f) = watch(dns, victim.clone(), false, Instant::now()).await;
        failed[ci] += f;
        returns[ci].push(r);
        println!(
            "trial {:2}: {:<29} {} dropped after {:>7.3?}, back {:>7.3?} after recovery",
            t + 1,
            case.name(),
            victim,
            d,
            r
        );
    }
    server.shutdown().await;

    let ttl = Duration::from_secs(TTL);
    println!();
    println!("probe: http, interval 1s, timeout 1s, jitter 200ms, rise 2, fall 2; pool TTL {TTL}s");
    let mut all_within = true;
    for (ci, case) in cases.iter().enumerate() {
        let (d, r) = (&mut drops[ci], &mut returns[ci]);
        d.sort();
        r.sort();
        let within = d.iter().filter(|x| **x <= ttl).count();
        all_within &= within == d.len();
        println!(
            "{:<29} time-to-drop over {} trials: p50 {}  p95 {}  p99 {}  max {:.3}s  (TTL {TTL}s; {within}/{} within); failed queries {}",
            case.name(),
            d.len(),
            show(percentile(d, 0.5), 0.5),
            show(percentile(d, 0.95), 0.95),
            show(percentile(d, 0.99), 0.99),
            d[d.len() - 1].as_secs_f64(),
            d.len(),
            failed[ci]
        );
        println!(
            "{:<29} time back after recovery:        p50 {}  p95 {}  max {:.3}s",
            "",
            show(percentile(r, 0.5), 0.5),
            show(percentile(r, 0.95), 0.95),
            r[r.len() - 1].as_secs_f64()
        );
    }
    assert!(all_within, "a failed backend outlived the TTL");
}
