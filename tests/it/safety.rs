//! Safe on the host: control needs the socket's permission, the status listener changes
//! nothing and closes slow, idle and excess clients, zone files are confined and bounded, old
//! snapshots are freed off the query path, and the CLI survives a closed stdout.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

use crate::ops::named_config;
use crate::support::*;

async fn start_named(extra: &str) -> TestServer {
    TestServer::start(
        &named_config(extra),
        &[("cluster.example.zone", EXAMPLE_ZONE)],
    )
    .await
}

/// Every address answered for www over enough queries to see each rotation.
fn www(s: &TestServer) -> std::collections::HashSet<String> {
    (0..6)
        .flat_map(|_| addrs(&ask(s.udp, "www.cluster.example.", RecordType::A)))
        .collect()
}

/// `lbns ARGS` run as `uid`:`gid` with no supplementary groups (setpriv; needs root).
async fn lbns_as(uid: u32, gid: u32, args: &[&str]) -> (bool, String) {
    let setpriv = require_tool("setpriv");
    assert!(
        lbns::privdrop::is_root(),
        "this test runs the CLI as other users (setpriv): run the tests as root, as \
         scripts/test.sh does in CI"
    );
    let mut cmd = Command::new(setpriv);
    cmd.args([
        &format!("--reuid={uid}"),
        &format!("--regid={gid}"),
        "--clear-groups",
    ])
    .arg(lbns_bin())
    .args(args);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// The control socket decides who may act by its file permissions: 0600 lets only its owner
/// (and root) in, `[control] group` adds one group (0660); everyone else is refused by the
/// kernel before lbns reads a byte, and nothing changes.
#[tokio::test(flavor = "multi_thread")]
async fn control_is_refused_without_the_socket_permission_and_accepted_with_it() {
    let all = ["127.0.0.2", "127.0.0.3", "127.0.0.4"].map(str::to_owned);
    let (nobody, nogroup, daemon) = (65534, 65534, 1);

    // Owner only.
    let s = start_named("").await;
    // Others may reach the directory: only the socket's own mode stands in their way.
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let meta = std::fs::metadata(&s.control).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), 0);
    let socket = s.control.to_str().unwrap().to_owned();
    let drain = ["drain", "--socket", &socket, "www.cluster.example.", "web2"];
    let (ok, out) = lbns_as(nobody, nogroup, &drain).await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("Permission denied") && out.contains("only the socket's owner"),
        "{out}"
    );
    assert_eq!(www(&s), all.iter().cloned().collect());
    assert!(!s.dir.path().join("lbns.state").exists());
    // Its owner (root here) may.
    let (ok, out, err) = lbns_cli(&drain).await;
    assert!(ok, "{out}{err}");
    assert!(!www(&s).contains("127.0.0.3"));
    s.stop().await;

    // A group too.
    let s = start_named("[control]\ngroup = \"nogroup\"\n").await;
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let meta = std::fs::metadata(&s.control).unwrap();
    assert_eq!((meta.mode() & 0o777, meta.gid()), (0o660, nogroup));
    let socket = s.control.to_str().unwrap().to_owned();
    let drain = ["drain", "--socket", &socket, "www.cluster.example.", "web3"];
    let (ok, out) = lbns_as(daemon, daemon, &drain).await;
    assert!(!ok && out.contains("Permission denied"), "{out}");
    assert!(www(&s).contains("127.0.0.4"));
    let (ok, out) = lbns_as(nobody, nogroup, &drain).await;
    assert!(ok, "{out}");
    assert_eq!(out, "drained web3 in www.cluster.example.\n");
    assert!(!www(&s).contains("127.0.0.4"));
    s.stop().await;
}

/// One raw HTTP/1.1 exchange over TCP: the status code and the body.
fn raw_http(addr: std::net::SocketAddr, request: &str) -> (u16, String) {
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    c.read_to_string(&mut response).unwrap();
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not HTTP: {response:?}"));
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (code, body.to_owned())
}

/// What a web page open in a browser on the DNS host can make the browser send without a
/// preflight (a "simple" cross-origin POST) changes nothing: the status listener refuses every
/// control request, and the control socket cannot be reached from a browser.
#[tokio::test(flavor = "multi_thread")]
async fn a_cross_site_post_changes_nothing() {
    let s = start_named("").await;
    let addr = s.status();
    let generation = s.server.snapshot().generation;
    for (path, kind) in [
        (
            "/drain?pool=www.cluster.example.&backend=web2",
            "text/plain",
        ),
        (
            "/drain?pool=www.cluster.example.&backend=web2",
            "application/x-www-form-urlencoded",
        ),
        ("/reload", "multipart/form-data; boundary=x"),
    ] {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://evil.example\r\n\
             Content-Type: {kind}\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx"
        );
        let (code, body) = tokio::task::spawn_blocking(move || raw_http(addr, &request))
            .await
            .unwrap();
        assert_eq!(code, 403, "{path} {kind}: {body}");
    }
    assert_eq!(
        www(&s),
        ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
            .map(str::to_owned)
            .into()
    );
    assert!(!s.dir.path().join("lbns.state").exists(), "nothing saved");
    assert_eq!(
        s.server.snapshot().generation,
        generation,
        "nothing reloaded"
    );
    s.stop().await;
}

/// How a client connection ended, and when.
#[derive(Debug)]
struct Closed {
    /// Bytes the server sent before closing.
    got: Vec<u8>,
    /// From the start given to the close.
    after: Duration,
}

/// Reads `c` until the server closes it (EOF or reset), for at most `limit`.
fn until_closed(mut c: impl Read, start: Instant, limit: Duration) -> Closed {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(start.elapsed() < limit, "still open after {limit:?}");
            }
            Err(e) => panic!("{e}"),
        }
    }
    Closed {
        got,
        after: start.elapsed(),
    }
}

fn connect(addr: std::net::SocketAddr) -> std::net::TcpStream {
    let c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    c
}

/// Every listener closes slow and idle clients within its timeouts, and closes connections
/// past its cap at once, while DNS keeps answering: an idle client, one that sends its request
/// head a byte at a time, a keep-alive client after its answer, one past `max_connections`,
/// and an idle client of the control socket.
#[tokio::test(flavor = "multi_thread")]
async fn slow_idle_and_excess_clients_are_closed_within_the_limits() {
    let s = start_named(
        "[status]\nlisten = \"127.0.0.1:0\"\nheader_timeout = \"1s\"\nidle_timeout = \"2s\"\n\
         max_connections = 3\n",
    )
    .await;
    let addr = s.status();
    let control = s.control.clone();
    let udp = s.udp;
    let result = tokio::task::spawn_blocking(move || {
        let limit = Duration::from_secs(6);
        let idle = std::thread::spawn(move || {
            let start = Instant::now();
            until_closed(connect(addr), start, limit)
        });
        let slow = std::thread::spawn(move || {
            let mut c = connect(addr);
            let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ";
            let start = Instant::now();
            // One byte every 200 ms: always moving, never done.
            for &b in head.iter().chain(std::iter::repeat(&b'a')) {
                if c.write_all(&[b]).is_err() {
                    break;
                }
                let mut buf = [0u8; 1];
                match c.read(&mut buf) {
                    Ok(_) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => break,
                }
                std::thread::sleep(Duration::from_millis(100));
                assert!(start.elapsed() < limit, "slow client still served");
            }
            start.elapsed()
        });
        let kept = std::thread::spawn(move || {
            let mut c = connect(addr);
            c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            while !String::from_utf8_lossy(&got).ends_with("ok\n") {
                match c.read(&mut buf) {
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("{e}"),
                }
            }
            until_closed(c, Instant::now(), limit)
        });
        std::thread::sleep(Duration::from_millis(300));
        // Three open: a fourth is closed at once, without an answer.
        let fourth = {
            let mut c = connect(addr);
            let _ = c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
            until_closed(c, Instant::now(), limit)
        };
        let control_idle = std::thread::spawn(move || {
            let c = std::os::unix::net::UnixStream::connect(&control).unwrap();
            c.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            until_closed(c, Instant::now(), limit)
        });
        // DNS answers all along.
        let mut dns = Vec::new();
        let asking = Instant::now();
        while asking.elapsed() < Duration::from_millis(2500) {
            let t = Instant::now();
            let m = ask(udp, "www.cluster.example.", RecordType::A);
            dns.push((addrs(&m).len(), t.elapsed()));
            std::thread::sleep(Duration::from_millis(50));
        }
        (
            idle.join().unwrap(),
            slow.join().unwrap(),
            kept.join().unwrap(),
            fourth,
            control_idle.join().unwrap(),
            dns,
        )
    })
    .await
    .unwrap();
    let (idle, slow, kept, fourth, control_idle, dns) = result;
    eprintln!(
        "closed: idle {:?}, slow header {slow:?}, keep-alive {:?}, over the cap {:?}, \
         control idle {:?}",
        idle.after, kept.after, fourth.after, control_idle.after
    );
    let within = |d: Duration, lo: u64, hi: u64| {
        d >= Duration::from_millis(lo) && d <= Duration::from_millis(hi)
    };
    assert!(
        within(idle.after, 1900, 3000) && idle.got.is_empty(),
        "{idle:?}"
    );
    assert!(within(slow, 900, 2000), "slow header closed after {slow:?}");
    assert!(
        within(kept.after, 1900, 3000) && kept.got.is_empty(),
        "{kept:?}"
    );
    assert!(
        fourth.after < Duration::from_millis(500) && fourth.got.is_empty(),
        "{fourth:?}"
    );
    assert!(within(control_idle.after, 1900, 3000), "{control_idle:?}");
    assert!(dns.len() >= 20, "{dns:?}");
    assert!(
        dns.iter()
            .all(|&(n, t)| n == 3 && t < Duration::from_millis(100)),
        "{dns:?}"
    );
    // The slots are free again.
    assert_eq!(http("GET", addr, "/healthz").await.0, 200);
    s.stop().await;
}

/// `lbns check --config CONFIG` run to completion: (exit code, what it printed without its
/// debug lines, its peak resident memory in KiB). The peak is what the process itself read
/// from /proc/self/status (VmHWM) as it finished, logged at debug level: the kernel's
/// accounting seen from here (wait4's ru_maxrss) would count the pages of this test process
/// the child shared before exec.
fn run_measured(config: &Path) -> (i32, String, u64) {
    let out = Command::new(lbns_bin())
        .env("RUST_LOG", "lbns=debug")
        .args(["check", "--config"])
        .arg(config)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let rss = text
        .lines()
        .find_map(|l| l.split("vm_hwm_kib=").nth(1))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no vm_hwm_kib in:\n{text}"));
    let shown = text
        .lines()
        .filter(|l| !l.contains("DEBUG"))
        .map(|l| format!("{l}\n"))
        .collect();
    (out.status.code().unwrap_or(-1), shown, rss)
}

/// A config serving `cluster.example.` from `zone_file` (as written in the config), with
/// `server` keys.
fn zone_config(zone_file: &str, server: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n{server}\n[[zone]]\norigin = \"cluster.example.\"\n\
         file = \"{zone_file}\"\n"
    )
}

/// `lbns check` on `dir/lbns.toml`: it must fail, within a few seconds, saying `expected`, in
/// a few lines, having used little memory.
fn check_refuses(dir: &Path, expected: &str) -> String {
    let config = dir.join("lbns.toml");
    let started = Instant::now();
    let (code, out, rss) = run_measured(&config);
    eprintln!("{expected}: {rss} KiB peak, {:?}", started.elapsed());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(expected), "expected {expected:?} in:\n{out}");
    assert!(out.len() < 1000, "{} bytes of output:\n{out}", out.len());
    assert!(rss < 32 * 1024, "peak RSS {rss} KiB:\n{out}");
    assert!(started.elapsed() < Duration::from_secs(10));
    out
}

/// The head of a zone, then `rest`.
fn zone_with(rest: &str) -> String {
    format!("$TTL 60\n@ SOA ns1 hostmaster 1 3600 600 86400 60\n@ NS ns1\nns1 A 127.0.0.1\n{rest}")
}

const OUTSIDE: &str = "outside the config file's directory and [server] include_dirs";

/// `$INCLUDE` reads only regular files under the config file's directory (or `[server]
/// include_dirs`), after symlinks; zone files and lines have size limits. Each refusal is a
/// short message naming the path, never the file's contents, and costs little memory.
#[test]
fn zone_files_are_confined_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let write = |zone: &str, config: &str| {
        std::fs::write(d.join("z.zone"), zone).unwrap();
        std::fs::write(d.join("lbns.toml"), config).unwrap();
    };
    let plain = zone_config("z.zone", "");

    // /etc/passwd: refused before it is opened; not one of its lines is printed.
    write(&zone_with("$INCLUDE /etc/passwd\n"), &plain);
    let out = check_refuses(d, &format!("z.zone:5: $INCLUDE /etc/passwd: {OUTSIDE}"));
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    for line in passwd.lines().filter(|l| !l.is_empty()) {
        let user = line.split(':').next().unwrap();
        assert!(
            !out.contains(line) && !out.contains(&format!("{user}:")),
            "{out}"
        );
    }
    // /dev/zero, which once grew one lbns to 23 GB.
    write(&zone_with("$INCLUDE /dev/zero\n"), &plain);
    check_refuses(d, &format!("$INCLUDE /dev/zero: {OUTSIDE}"));
    // A symlink out of the directory, to a file and to a directory.
    std::os::unix::fs::symlink("/etc/passwd", d.join("inc.zone")).unwrap();
    std::os::unix::fs::symlink("/etc", d.join("etc")).unwrap();
    write(&zone_with("$INCLUDE inc.zone\n"), &plain);
    check_refuses(d, &format!("$INCLUDE inc.zone: {OUTSIDE}"));
    write(&zone_with("$INCLUDE etc/passwd\n"), &plain);
    check_refuses(d, &format!("$INCLUDE etc/passwd: {OUTSIDE}"));
    // A FIFO inside it: refused without waiting for a writer.
    let fifo = d.join("fifo.zone");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    write(&zone_with("$INCLUDE fifo.zone\n"), &plain);
    check_refuses(d, "fifo.zone: not a regular file but a FIFO");

    // A 2 GB sparse file, as the zone and as an include: refused from its size alone.
    let big = std::fs::File::create(d.join("big.zone")).unwrap();
    big.set_len(2 << 30).unwrap();
    write("", &zone_config("big.zone", ""));
    check_refuses(
        d,
        "big.zone: cannot read zone file: 2147483648 bytes or more, over the 256 MiB a zone's \
         files may hold",
    );
    write(&zone_with("$INCLUDE big.zone\n"), &plain);
    check_refuses(d, "big.zone: 2147483648 bytes or more");
    // The zone file itself is named by the config, not confined, but must be a regular file.
    write("", &zone_config("/dev/zero", ""));
    check_refuses(
        d,
        "/dev/zero: cannot read zone file: not a regular file but a character device",
    );
    // A line over 64 KiB.
    write(
        &zone_with(&format!("x TXT \"{}\"\n", "a".repeat(70_000))),
        &plain,
    );
    check_refuses(d, "z.zone:5: line longer than 64 KiB");
    // A bad token is quoted short and escaped, never whole.
    let token = format!("{}\x07{}", "k".repeat(20), "s".repeat(500));
    write(&zone_with(&format!("{token} 60 A 127.0.0.9\n")), &plain);
    let out = check_refuses(
        d,
        &format!("z.zone:5: owner `{}\\007sssssssssss...`", "k".repeat(20)),
    );
    assert!(!out.contains(&"s".repeat(40)), "{out}");

    // Files under the config's directory, or a directory listed in include_dirs, are fine.
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("more.zone"), "m A 127.0.0.10\n").unwrap();
    std::fs::write(d.join("here.zone"), "h A 127.0.0.11\n").unwrap();
    let more = other.path().join("more.zone");
    write(
        &zone_with(&format!(
            "$INCLUDE here.zone\n$INCLUDE {}\n",
            more.display()
        )),
        &zone_config(
            "z.zone",
            &format!("include_dirs = [\"{}\"]", other.path().display()),
        ),
    );
    let (code, out, _) = run_measured(&d.join("lbns.toml"));
    assert_eq!(code, 0, "{out}");
    // Without include_dirs, the same include is refused.
    write(
        &zone_with(&format!("$INCLUDE {}\n", more.display())),
        &plain,
    );
    check_refuses(d, OUTSIDE);
}

/// A reload of a zone that includes /etc/passwd is refused, and neither the answer to `lbns
/// reload` nor the log holds a line of it.
#[tokio::test(flavor = "multi_thread")]
async fn a_reload_that_includes_etc_passwd_is_refused_without_echoing_it() {
    let s = start_named("").await;
    std::fs::write(
        s.dir.path().join("cluster.example.zone"),
        format!("{EXAMPLE_ZONE}$INCLUDE /etc/passwd\n"),
    )
    .unwrap();
    let (code, body) = control_http(&s.control, "POST", "/reload").await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body.contains(&format!("$INCLUDE /etc/passwd: {OUTSIDE}")),
        "{body}"
    );
    assert!(!body.contains("root:"), "{body}");
    assert_eq!(
        addrs(&ask(s.udp, "mail.cluster.example.", RecordType::A)),
        ["127.0.0.8"]
    );
    s.stop().await;
}

/// Temporary state files a killed lbns left behind (`.lbns.state.PID.tmp`) are removed at
/// start; one of a process still running is left alone.
#[tokio::test(flavor = "multi_thread")]
async fn orphaned_state_temporary_files_are_removed_at_start() {
    let orphans = [".lbns.state.99999999.tmp", ".lbns.state.99999998.tmp"];
    let live = ".lbns.state.1.tmp";
    let mut files = vec![("cluster.example.zone", EXAMPLE_ZONE)];
    files.extend(orphans.iter().chain([&live]).map(|f| (*f, "{")));
    let s = TestServer::start(&named_config(""), &files).await;
    for f in orphans {
        assert!(!s.dir.path().join(f).exists(), "{f} left");
    }
    assert!(s.dir.path().join(live).exists());
    s.stop().await;
}

/// `lbns check | head` and friends: a stdout closed before lbns writes is not a panic (exit
/// 101) but a quiet success, for `check` and for the commands that talk to a server.
#[tokio::test(flavor = "multi_thread")]
async fn a_closed_stdout_is_a_quiet_success() {
    let s = start_named("").await;
    let socket = s.control.to_str().unwrap().to_owned();
    for args in [
        vec!["check", "--config", "zones/lbns.toml"],
        vec!["status", "--socket", &socket],
        vec!["status", "--json", "--socket", &socket],
    ] {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let out = tokio::task::spawn_blocking(move || {
            let (reader, writer) = std::io::pipe().unwrap();
            // Nobody will ever read: every write gets EPIPE.
            drop(reader);
            Command::new(lbns_bin())
                .args(&args)
                .stdout(writer)
                .stderr(Stdio::piped())
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    s.stop().await;
}

/// A zone of `n` A records besides the SOA and NS.
fn large_zone(n: usize) -> String {
    let mut zone = zone_with("");
    zone.reserve(n * 24);
    for i in 0..n {
        zone.push_str(&format!(
            "r{i} A 10.{}.{}.{}\n",
            i >> 16,
            (i >> 8) & 255,
            i & 255
        ));
    }
    zone
}

/// The numbers dnsperf prints: `(sent, lost, max latency)`.
pub(crate) fn dnsperf_numbers(report: &str) -> (u64, u64, f64) {
    let after = |label: &str| -> &str {
        let line = report
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no `{label}` in:\n{report}"));
        line.trim_start()[label.len()..].trim_start()
    };
    let first = |s: &str| s.split_whitespace().next().unwrap().to_owned();
    let sent = first(after("Queries sent:")).parse().unwrap();
    let lost = first(after("Queries lost:")).parse().unwrap();
    // "Average Latency (s):  0.000094 (min 0.000015, max 0.010816)"
    let latency = after("Average Latency (s):");
    let max = latency
        .split("max ")
        .nth(1)
        .and_then(|m| m.trim_end_matches(')').parse().ok())
        .unwrap_or_else(|| panic!("no max latency in {latency:?}"));
    (sent, lost, max)
}

/// Reloading away from a zone of a million records never pauses answers: the old snapshot,
/// and the zone in it, are freed by the reclaimer thread, not by the UDP worker that last read
/// them. dnsperf queries at a fixed rate across the reload; no query may be lost or wait 50 ms.
/// (Before the reclaimer, the worker that dropped the last reference froze for 0.3–0.9 s here,
/// losing queries; benches/reload-pause.sh measures both builds side by side.)
#[tokio::test(flavor = "multi_thread")]
async fn reload_away_from_a_large_zone_does_not_pause_answers() {
    let dnsperf = require_tool("dnsperf");
    let _alone = LOAD_TESTS.lock().await;
    let config = named_config("").replace("udp_workers = 1", "udp_workers = 2");
    let s = TestServer::start(&config, &[("cluster.example.zone", &large_zone(1_000_000))]).await;
    assert_eq!(
        addrs(&ask(s.udp, "r999999.cluster.example.", RecordType::A)),
        ["10.15.66.63"]
    );
    let queries = s.dir.path().join("queries.txt");
    std::fs::write(
        &queries,
        "www.cluster.example. A\nns1.cluster.example. A\nnope.cluster.example. A\n\
         cluster.example. SOA\n",
    )
    .unwrap();
    let child = Command::new(dnsperf)
        .args(["-s", "127.0.0.1", "-p", &s.udp.port().to_string(), "-d"])
        .arg(&queries)
        .args(["-l", "4", "-Q", "4000", "-t", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Away from the large zone: the small one replaces it.
    std::fs::write(s.dir.path().join("cluster.example.zone"), EXAMPLE_ZONE).unwrap();
    let generation = s.server.snapshot().generation;
    let (code, body) = control_http(&s.control, "POST", "/reload").await;
    assert_eq!(code, 200, "{body}");
    assert!(s.server.snapshot().generation > generation);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}");
    let (sent, lost, max) = dnsperf_numbers(&report);
    eprintln!("dnsperf across the reload: sent {sent}, lost {lost}, max latency {max} s");
    assert!(sent >= 10_000, "{report}");
    assert_eq!(lost, 0, "{report}");
    assert!(max < 0.050, "an answer waited {max} s:\n{report}");
    // The large zone is gone.
    let m = ask(s.udp, "r999999.cluster.example.", RecordType::A);
    assert!(addrs(&m).is_empty());
    s.stop().await;
}
