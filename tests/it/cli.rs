//! The `lbns` binary as users run it: `check`, and `serve` queried by the real `dig`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill(2) on the PID of a child we started and have not reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, sig) };
}

/// Copies the bundled example to a temp dir, listening (DNS and status) on free ports: the
/// directory, the DNS address and the status address.
fn example_dir() -> (
    tempfile::TempDir,
    std::net::SocketAddr,
    std::net::SocketAddr,
) {
    let port = free_port();
    let status: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = std::fs::read_to_string("zones/lbns.toml")
        .unwrap()
        .replace("127.0.0.1:5353", &format!("127.0.0.1:{port}"))
        .replace("127.0.0.1:8053", &status.to_string());
    let dir = config_dir(&config, EXAMPLE_ZONE);
    (dir, format!("127.0.0.1:{port}").parse().unwrap(), status)
}

fn wait_until_answering(addr: std::net::SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if dig(addr, &["+short", "ns1.cluster.example."]).contains("127.0.0.1") {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("lbns did not answer on {addr}");
}

#[test]
fn check_accepts_the_bundled_example() {
    let out = Command::new(lbns_bin())
        .args(["check", "--config", "zones/lbns.toml"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("OK (1 zones, 2 pools)"), "{stdout}");
}

#[test]
fn check_lists_every_problem_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.zone"),
        "$TTL 60\n@ SOA ns1 h 1 1 1 1 1\n@ NS ns1\nns1 A 300.1.1.1\nwww CNAME a\nwww A 127.0.0.1\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("lbns.toml"),
        "[[zone]]\norigin = \"c.example.\"\nfile = \"bad.zone\"\n\n\
         [[pool]]\nname = \"p.c.example.\"\nbackends = [\"not-an-ip\"]\nttl = 0\n",
    )
    .unwrap();
    let err = check_fails(dir.path());
    assert!(
        err.contains("`not-an-ip` is not an IPv4 or IPv6 address"),
        "{err}"
    );
    assert!(err.contains("ttl must be at least 1"), "{err}");
    // Config problems are reported first; fix them and the zone problems show, all of them.
    std::fs::write(
        dir.path().join("lbns.toml"),
        "[[zone]]\norigin = \"c.example.\"\nfile = \"bad.zone\"\n",
    )
    .unwrap();
    let err = check_fails(dir.path());
    assert!(err.contains("bad.zone:4:"), "{err}");
    assert!(err.contains("CNAME"), "{err}");
}

/// Runs `lbns check` on `dir/lbns.toml`, asserts it fails, returns what it printed on stderr.
fn check_fails(dir: &std::path::Path) -> String {
    let out = Command::new(lbns_bin())
        .args(["check", "--config"])
        .arg(dir.join("lbns.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The release binary on the bundled example, queried with the real dig.
#[test]
fn serve_answers_dig_reloads_on_sighup_and_stops_on_sigterm() {
    let (dir, addr, status) = example_dir();
    let mut proc = spawn_serve(&[], &dir.path().join("lbns.toml"), Stdio::null());
    wait_until_answering(addr);

    let out = dig(addr, &["www.cluster.example.", "A"]);
    assert!(out.contains("flags: qr aa;"), "{out}");
    assert!(out.contains("status: NOERROR"), "{out}");
    let firsts: std::collections::HashSet<String> = (0..3)
        .map(|_| {
            dig(addr, &["+short", "www.cluster.example."])
                .lines()
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(firsts.len(), 3, "rotation: {firsts:?}");
    // dig sends a DNS cookie with every query: the fast path answers them all the same.
    let fast = metric(status, "lbns_udp_fast_path_total");
    assert!(
        fast >= 4.0,
        "the fast path answered {fast} of dig's queries"
    );

    let out = dig(addr, &["www.example.com."]);
    assert!(out.contains("status: REFUSED"), "{out}");
    let out = dig(addr, &["nope.cluster.example."]);
    assert!(out.contains("status: NXDOMAIN"), "{out}");
    assert!(out.contains("IN\tSOA\tns1.cluster.example."), "{out}");
    let out = dig(addr, &["+noedns", "+ignore", "big.cluster.example."]);
    assert!(out.contains(" tc"), "{out}");
    let out = dig(addr, &["+tcp", "big.cluster.example."]);
    assert!(out.contains("ANSWER: 40"), "{out}");

    // SIGHUP with a broken zone: rejected, old data still served.
    let zone = dir.path().join("cluster.example.zone");
    std::fs::write(&zone, "garbage (\n").unwrap();
    signal(&proc.0, libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    assert!(dig(addr, &["+short", "mail.cluster.example."]).contains("127.0.0.8"));
    // SIGHUP with a changed zone: new data served.
    std::fs::write(&zone, EXAMPLE_ZONE.replace("127.0.0.8", "127.0.0.88")).unwrap();
    signal(&proc.0, libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !dig(addr, &["+short", "mail.cluster.example."]).contains("127.0.0.88") {
        assert!(Instant::now() < deadline, "reload not applied");
        std::thread::sleep(Duration::from_millis(50));
    }

    signal(&proc.0, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(status) = proc.0.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(Instant::now() < deadline, "lbns did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Separate backend processes (python3's http.server on 127.0.0.2 and .3): SIGKILL one and the
/// lbns process stops answering it within the pool TTL.
#[test]
fn killed_backend_process_leaves_dig_answers_within_the_ttl() {
    let python = require_tool("python3");
    let port = free_port();
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("health"), "ok\n").unwrap();
    let mut backends: Vec<Proc> = ["127.0.0.2", "127.0.0.3"]
        .iter()
        .map(|ip| {
            Proc(
                Command::new(&python)
                    .args(["-m", "http.server", &port.to_string(), "--bind", ip])
                    .current_dir(www.path())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    let dns_port = free_port();
    let dir = config_dir(
        &format!(
            "[server]\nlisten = [\"127.0.0.1:{dns_port}\"]\n\
             [status]\nlisten = \"127.0.0.1:0\"\n\
             [[zone]]\norigin = \"cluster.example.\"\nfile = \"cluster.example.zone\"\n\
             [[pool]]\nname = \"www.cluster.example.\"\nttl = 5\nbackends = [\"127.0.0.2\", \"127.0.0.3\"]\n\
             probe = {{ kind = \"http\", port = {port}, url = \"http://{{address}}:{{port}}/health\", body_contains = \"ok\" }}\n"
        ),
        EXAMPLE_ZONE,
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{dns_port}").parse().unwrap();
    // Wait for both backends to be up and answered.
    let deadline = Instant::now() + Duration::from_secs(10);
    let _lbns = loop {
        // python may take a moment to bind; lbns only serves what its first round saw, so
        // (re)start it until both are in.
        let p = spawn_serve(&[], &dir.path().join("lbns.toml"), Stdio::null());
        wait_until_answering(addr);
        let out = dig(addr, &["+short", "www.cluster.example."]);
        if out.contains("127.0.0.2") && out.contains("127.0.0.3") {
            break p;
        }
        assert!(Instant::now() < deadline, "backends never both up: {out}");
        drop(p);
        std::thread::sleep(Duration::from_millis(300));
    };
    let victim = backends.remove(1);
    drop(victim); // SIGKILL
    let killed = Instant::now();
    while dig(addr, &["+short", "www.cluster.example."]).contains("127.0.0.3") {
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "killed backend still answered after the TTL"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(dig(addr, &["+short", "www.cluster.example."]).contains("127.0.0.2"));
}

/// Responses are never IP-fragmented (RFC 9715 §3.1): one larger than the interface MTU goes
/// out over UDP truncated (TC=1, question and OPT kept), and dig gets it whole over TCP. lbns
/// and dig run in a fresh network namespace whose loopback MTU is 1300 octets, so a 2 KB
/// answer cannot fit in one packet; over IPv4 and IPv6. (Before lbns set DF, the kernel
/// fragmented such an answer and it arrived over UDP whole, so this fails on that code.)
#[test]
fn answers_larger_than_the_mtu_are_truncated_not_fragmented() {
    let ip = require_tool("ip");
    let dig = require_tool("dig");
    let curl = require_tool("curl");
    let dir = config_dir(
        "[server]\nlisten = [\"127.0.0.1:5353\", \"[::1]:5353\"]\nudp_workers = 1\n\
         edns_udp_size = 4096\n\n[[zone]]\norigin = \"cluster.example.\"\n\
         file = \"cluster.example.zone\"\n\n[status]\nlisten = \"127.0.0.1:8053\"\n",
        &zone_with_large_txt(),
    );
    let script = format!(
        r#"set -e
{ip} link set lo mtu 1300 up
{lbns} serve --config {dir}/lbns.toml 2>{dir}/lbns.log &
trap 'kill $!' EXIT
q() {{ s=$1; shift; {dig} @"$s" -p 5353 +norec +bufsize=4096 +time=2 +tries=1 "$@"; }}
for i in $(seq 100); do
    q 127.0.0.1 +short ns1.cluster.example. | grep -q . && break
    sleep 0.1
done
for server in 127.0.0.1 ::1; do
    echo "== udp $server"; q $server +ignore large.cluster.example. TXT
    echo "== tcp-retry $server"; q $server large.cluster.example. TXT
    echo "== small $server"; q $server +ignore mail.cluster.example. A
done
echo "== metrics"; {curl} -s http://127.0.0.1:8053/metrics | grep '^lbns_truncated_total'
"#,
        curl = curl.display(),
        ip = ip.display(),
        lbns = lbns_bin().display(),
        dir = dir.path().display(),
        dig = dig.display(),
    );
    let out = Sections::run_in_netns(&script, &dir.path().join("lbns.log"));
    for server in ["127.0.0.1", "::1"] {
        // TC=1 with the question and OPT, nothing else.
        out.expect(
            &format!("udp {server}"),
            &[
                "status: NOERROR",
                "flags: qr aa tc;",
                "ANSWER: 0,",
                "EDNS: version: 0",
            ],
        );
        // dig's retry over TCP gets the whole RRset.
        out.expect(
            &format!("tcp-retry {server}"),
            &["Truncated, retrying in TCP mode", "ANSWER: 10,"],
        );
        // Small answers are untouched.
        out.expect(&format!("small {server}"), &["flags: qr aa;", "ANSWER: 1,"]);
    }
    // Two per family: the +ignore query and the UDP attempt before dig's TCP retry.
    assert_eq!(out.section("metrics").trim(), "lbns_truncated_total 4");
}
