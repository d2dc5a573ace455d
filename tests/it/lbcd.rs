//! The lbcd probe (`lbns::probe::lbcd`) against the real Debian lbcd daemon and against a
//! scripted fake lbcd on a loopback UDP socket.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lbns::probe::lbcd::{self, LbcdError, LbcdWeight};
use tokio::net::UdpSocket;

use crate::support::require_tool;

/// Where our lbcd instances listen: not 127.0.0.1, to show `-b` is honoured, and never the
/// default port 4330, where a packaged lbcd might run.
const LBCD_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 33);
const WAIT: Duration = Duration::from_secs(2);

/// A real `/usr/sbin/lbcd` in the foreground on `LBCD_IP` and a free port; SIGTERM, then
/// SIGKILL, on drop.
pub(crate) struct Lbcd {
    child: Child,
    pub(crate) addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Lbcd {
    /// Starts lbcd with `extra` flags after the ones every instance needs (lbcd(8)):
    /// `-d` foreground with messages to stdout/stderr (our log file) instead of syslog,
    /// `-l` log each request, `-b` bind only this address, so replies come from the address
    /// we query, `-p` the port, `-P` a PID file lbcd writes once its socket is bound.
    fn start(extra: &[&str]) -> Lbcd {
        Lbcd::start_on(LBCD_IP, extra)
    }

    /// Like `start`, on another loopback address (several instances stand for several hosts).
    pub(crate) fn start_on(ip: Ipv4Addr, extra: &[&str]) -> Lbcd {
        let bin = require_tool("lbcd");
        let mut last_log = String::new();
        // The port is free when we look but could be taken before lbcd binds: retry then.
        for _ in 0..5 {
            let port = free_udp_port(ip);
            let dir = tempfile::tempdir().unwrap();
            let pid_file = dir.path().join("lbcd.pid");
            let log = dir.path().join("lbcd.log");
            let out = File::create(&log).unwrap();
            let child = Command::new(&bin)
                .args(["-d", "-l", "-b", &ip.to_string()])
                .args(["-p", &port.to_string()])
                .arg("-P")
                .arg(&pid_file)
                .args(extra)
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
            let mut lbcd = Lbcd {
                child,
                addr: SocketAddr::new(IpAddr::V4(ip), port),
                log,
                _dir: dir,
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if std::fs::read_to_string(&pid_file).is_ok_and(|s| s.trim().parse::<u32>().is_ok())
                {
                    return lbcd;
                }
                if let Some(status) = lbcd.child.try_wait().unwrap() {
                    last_log = format!("exited with {status}: {}", lbcd.log());
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "lbcd did not write its PID file within 10s: {}",
                    lbcd.log()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("lbcd failed to start five times; last: {last_log}");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Lbcd {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            // SAFETY: kill(2) on the PID of a child we started and have not reaped.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(2);
            while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A UDP port free on `ip` right now.
fn free_udp_port(ip: Ipv4Addr) -> u16 {
    std::net::UdpSocket::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The 1, 5 and 15 minute loads from /proc/loadavg, times 100, as lbcd reports them.
fn loadavg_x100() -> [i64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap();
    let mut fields = text
        .split_whitespace()
        .map(|f| (f.parse::<f64>().unwrap() * 100.0).round() as i64);
    [(); 3].map(|_| fields.next().unwrap())
}

fn boot_time() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .expect("btime in /proc/stat")
        .trim()
        .parse()
        .unwrap()
}

/// Queries lbcd while reading /proc/loadavg just before and after, and checks each reported
/// load lies between the two readings (the kernel updates it every 5s, so lbcd saw one of
/// them), allowing 2 for lbcd truncating `load * 100` instead of rounding.
async fn query_checking_load(lbcd: &Lbcd, version: u8, services: &[&str]) -> lbcd::LbcdReply {
    let before = loadavg_x100();
    let reply = lbcd::query(lbcd.addr, version, services, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}; lbcd log: {}", lbcd.log()));
    let after = loadavg_x100();
    for i in 0..3 {
        let (lo, hi) = (before[i].min(after[i]) - 2, before[i].max(after[i]) + 2);
        let got = i64::from(reply.load[i]);
        assert!(
            (lo..=hi).contains(&got),
            "load[{i}] = {got}, /proc/loadavg x100 was {} then {}",
            before[i],
            after[i]
        );
    }
    reply
}

fn assert_clock_plausible(reply: &lbcd::LbcdReply) {
    let now = now();
    assert!(
        u64::from(reply.current_time).abs_diff(now) <= 5,
        "current_time {} vs now {now}",
        reply.current_time
    );
    assert!(
        u64::from(reply.boot_time).abs_diff(boot_time()) <= 5,
        "boot_time {} vs btime {}",
        reply.boot_time,
        boot_time()
    );
    assert!(reply.boot_time <= reply.current_time);
    assert!(
        reply.tmp_full <= 100 && reply.tmpdir_full <= 100,
        "{reply:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn real_lbcd_v3_reports_time_load_and_default_weight() {
    let lbcd = Lbcd::start(&[]);
    let reply = query_checking_load(&lbcd, 3, &[]).await;
    assert_eq!(reply.version, 3);
    assert_clock_plausible(&reply);
    assert_eq!(
        reply.weights.len(),
        1,
        "only the default service: {reply:?}"
    );
    assert!(reply.load1() >= 0.0 && reply.load1() < 100.0, "{reply:?}");
    assert!(
        lbcd.log().contains("(version 3)"),
        "lbcd -l logs the request: {}",
        lbcd.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn real_lbcd_v2_reports_the_weight_as_load() {
    let lbcd = Lbcd::start(&[]);
    let reply = lbcd::query(lbcd.addr, 2, &[], WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}; lbcd log: {}", lbcd.log()));
    assert_eq!(reply.version, 2);
    assert_clock_plausible(&reply);
    // lbcd(8): for lbnamed, a v2 reply carries the default weight (capped to 16 bits) in
    // all three loads, and zero users, unless lbcd runs with -S.
    assert_eq!(reply.weights.len(), 1, "{reply:?}");
    let weight = u16::try_from(reply.weights[0].weight).unwrap_or(u16::MAX);
    assert_eq!(reply.load, [weight; 3], "{reply:?}");
    assert_eq!((reply.total_users, reply.unique_users), (0, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn real_lbcd_v2_with_simple_flag_reports_the_real_load() {
    let lbcd = Lbcd::start(&["-S"]);
    let reply = query_checking_load(&lbcd, 2, &[]).await;
    assert_eq!(reply.version, 2);
    assert_clock_plausible(&reply);
}

#[tokio::test(flavor = "multi_thread")]
async fn real_lbcd_v3_fixed_weight_and_services() {
    // -w 250:7 fixes the default weight and increment; -a rr allows asking for "rr", which
    // answers that same fixed pair (weight.c lbcd_rr_weight).
    let lbcd = Lbcd::start(&["-w", "250:7", "-a", "rr"]);
    let fixed = LbcdWeight {
        weight: 250,
        increment: 7,
    };
    let reply = lbcd::query(lbcd.addr, 3, &[], WAIT).await.unwrap();
    assert_eq!(reply.weights, [fixed]);

    let reply = lbcd::query(lbcd.addr, 3, &["rr", "default"], WAIT)
        .await
        .unwrap();
    assert_eq!(reply.weights, [fixed; 3]);

    let reply = lbcd::query(lbcd.addr, 2, &[], WAIT).await.unwrap();
    assert_eq!(reply.load, [250; 3], "v2 carries the weight as load");

    // A service not allowed with -a: lbcd answers a bare header with status 2.
    let e = lbcd::query(lbcd.addr, 3, &["http:80"], WAIT)
        .await
        .unwrap_err();
    assert!(
        matches!(e, LbcdError::ErrorStatus { status: 2, .. }),
        "{e:?}"
    );
    assert!(
        lbcd.log().contains("service http:80 not allowed"),
        "{}",
        lbcd.log()
    );
}

/// How the fake lbcd answers one request: the datagrams to send back, in order.
type Script = Box<dyn Fn(&[u8]) -> Vec<Vec<u8>> + Send + Sync>;

/// A fake lbcd on 127.0.0.1: answers each request as `script` says and records requests.
struct FakeLbcd {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeLbcd {
    async fn start(script: Script) -> FakeLbcd {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            loop {
                let (n, peer) = socket.recv_from(&mut buf).await.unwrap();
                seen.lock().unwrap().push(buf[..n].to_vec());
                for datagram in script(&buf[..n]) {
                    socket.send_to(&datagram, peer).await.unwrap();
                }
            }
        });
        FakeLbcd {
            addr,
            requests,
            task,
        }
    }
}

impl Drop for FakeLbcd {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A well-formed reply as lbcd.c lays it out, to the request's version and id, with loads
/// `l1`, 71, 37 and the default weight only (plus one per `extra` service).
fn reply_to(request: &[u8], l1: u16, extra: usize) -> Vec<u8> {
    let mut b = request[..6].to_vec(); // version, id, op
    b.extend_from_slice(&1u16.to_be_bytes()); // LBCD_STATUS_OK
    for t in [1_700_000_000u32, 1_700_086_400, 0] {
        b.extend_from_slice(&t.to_be_bytes());
    }
    for v in [l1, 71, 37, 0, 0] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    b.extend_from_slice(&[0, 0, 10, 20, 0, extra as u8]);
    for i in 0..=extra as u32 {
        b.extend_from_slice(&(100 + i).to_be_bytes());
        b.extend_from_slice(&1u32.to_be_bytes());
    }
    b
}

fn request_id(request: &[u8]) -> u16 {
    u16::from_be_bytes([request[2], request[3]])
}

#[tokio::test(flavor = "multi_thread")]
async fn fake_lbcd_good_reply_and_request_on_the_wire() {
    let fake = FakeLbcd::start(Box::new(|req| vec![reply_to(req, 132, 2)])).await;
    let reply = lbcd::query(fake.addr, 3, &["load", "rr"], WAIT)
        .await
        .unwrap();
    assert_eq!(reply.load, [132, 71, 37]);
    assert_eq!(reply.current_time, 1_700_086_400);
    assert_eq!(reply.weights.len(), 3);
    assert_eq!(
        reply.weights[2],
        LbcdWeight {
            weight: 102,
            increment: 1
        }
    );
    let requests = fake.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    let req = &requests[0];
    assert_eq!(req.len(), 8 + 2 * 32);
    assert_eq!(&req[..2], &[0, 3]);
    assert_eq!(&req[4..8], &[0, 1, 0, 2]);
    assert_eq!(&req[8..13], b"load\0");
    assert_eq!(&req[40..43], b"rr\0");
}

#[tokio::test(flavor = "multi_thread")]
async fn fake_lbcd_short_garbage_is_an_error_at_once() {
    let fake = FakeLbcd::start(Box::new(|_| vec![b"hello".to_vec()])).await;
    let started = Instant::now();
    let e = lbcd::query(fake.addr, 3, &[], WAIT).await.unwrap_err();
    assert!(
        matches!(
            e,
            LbcdError::Truncated {
                len: 5,
                need: 8,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        started.elapsed() < WAIT / 2,
        "did not wait for the deadline"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fake_lbcd_garbage_with_the_right_id_is_an_error() {
    // The request's header echoed with OK status and then junk: too short for a reply.
    let fake = FakeLbcd::start(Box::new(|req| {
        let mut b = req[..6].to_vec();
        b.extend_from_slice(&[0, 1]);
        b.extend_from_slice(b"not an lbcd reply");
        vec![b]
    }))
    .await;
    let e = lbcd::query(fake.addr, 2, &[], WAIT).await.unwrap_err();
    assert!(
        matches!(
            e,
            LbcdError::Truncated {
                len: 25,
                need: 36,
                ..
            }
        ),
        "{e:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fake_lbcd_echo_is_a_request_status_error() {
    // A UDP echo service: our own request comes back, status 0 = "request packet".
    let fake = FakeLbcd::start(Box::new(|req| vec![req.to_vec()])).await;
    let e = lbcd::query(fake.addr, 2, &[], WAIT).await.unwrap_err();
    assert!(
        matches!(e, LbcdError::ErrorStatus { status: 0, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("request packet"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn fake_lbcd_long_garbage_with_another_id_is_ignored_until_timeout() {
    let fake = FakeLbcd::start(Box::new(|req| {
        let mut junk = vec![0xA5; 100];
        junk[2..4].copy_from_slice(&(request_id(req) ^ 0xFFFF).to_be_bytes());
        vec![junk]
    }))
    .await;
    let timeout = Duration::from_millis(300);
    let e = lbcd::query(fake.addr, 3, &[], timeout).await.unwrap_err();
    assert!(matches!(e, LbcdError::Timeout { .. }), "{e:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn fake_lbcd_wrong_version() {
    let fake = FakeLbcd::start(Box::new(|req| {
        let mut b = reply_to(req, 132, 0);
        b[..2].copy_from_slice(&2u16.to_be_bytes());
        vec![b]
    }))
    .await;
    let e = lbcd::query(fake.addr, 3, &[], WAIT).await.unwrap_err();
    assert!(
        matches!(
            e,
            LbcdError::WrongVersion {
                expected: 3,
                got: 2
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "lbcd reply has protocol version 2, expected 3"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fake_lbcd_version_error_reply_reports_the_status() {
    // lbcd.c send_status: bare header, version 3 even to a v2 request.
    let fake = FakeLbcd::start(Box::new(|req| {
        let mut b = vec![0, 3];
        b.extend_from_slice(&req[2..6]);
        b.extend_from_slice(&3u16.to_be_bytes());
        vec![b]
    }))
    .await;
    let e = lbcd::query(fake.addr, 2, &[], WAIT).await.unwrap_err();
    assert!(
        matches!(e, LbcdError::ErrorStatus { status: 3, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("protocol version error"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn fake_lbcd_wrong_id_then_right_one() {
    let fake = FakeLbcd::start(Box::new(|req| {
        let mut stale = reply_to(req, 999, 0);
        stale[2..4].copy_from_slice(&(request_id(req).wrapping_add(1)).to_be_bytes());
        vec![stale, reply_to(req, 132, 0)]
    }))
    .await;
    let reply = lbcd::query(fake.addr, 3, &[], WAIT).await.unwrap();
    assert_eq!(reply.load[0], 132, "the stale reply was skipped");
}

#[tokio::test(flavor = "multi_thread")]
async fn fake_lbcd_missing_service_weights() {
    let fake = FakeLbcd::start(Box::new(|req| vec![reply_to(req, 132, 0)])).await;
    let e = lbcd::query(fake.addr, 3, &["rr"], WAIT).await.unwrap_err();
    assert!(
        matches!(
            e,
            LbcdError::UnexpectedServices {
                requested: 1,
                returned: 0
            }
        ),
        "{e:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fake_lbcd_silent_is_a_timeout() {
    let fake = FakeLbcd::start(Box::new(|_| vec![])).await;
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let e = lbcd::query(fake.addr, 3, &[], timeout).await.unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(e, LbcdError::Timeout { .. }), "{e:?}");
    assert!(
        e.to_string()
            .starts_with(&format!("no lbcd reply from {}", fake.addr)),
        "{e}"
    );
    assert!(
        waited >= timeout && waited < timeout + Duration::from_secs(1),
        "{waited:?}"
    );
    assert_eq!(fake.requests.lock().unwrap().len(), 1, "sent exactly once");
}

#[tokio::test(flavor = "multi_thread")]
async fn closed_port_is_refused() {
    // Nothing listens there: the ICMP port unreachable comes back on the connected socket.
    let addr = SocketAddr::new(IpAddr::V4(LBCD_IP), free_udp_port(LBCD_IP));
    let e = lbcd::query(addr, 3, &[], WAIT).await.unwrap_err();
    match &e {
        LbcdError::Io { source, .. } => {
            assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused, "{e}")
        }
        other => panic!("expected Io(ConnectionRefused), got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_arguments_fail_before_sending() {
    let addr = SocketAddr::new(IpAddr::V4(LBCD_IP), lbcd::DEFAULT_PORT);
    let e = lbcd::query(addr, 4, &[], WAIT).await.unwrap_err();
    assert!(matches!(e, LbcdError::UnsupportedVersion(4)), "{e:?}");
    let long = "x".repeat(32);
    let e = lbcd::query(addr, 3, &[&long], WAIT).await.unwrap_err();
    assert!(matches!(e, LbcdError::ServiceNameTooLong { .. }), "{e:?}");
}
