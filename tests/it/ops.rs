//! Operating lbns: the status listener (page, JSON, metrics, allowlist), drain with its state
//! file across restarts, reload through the control socket and the CLI, reload under dnsperf
//! load, the sampled query log, and dropping privileges.

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use lbns::status::Report;

use crate::support::*;

/// The example zone with named backends, so drain can use names.
pub(crate) fn named_config(extra: &str) -> String {
    format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
udp_workers = 1

[[zone]]
origin = "cluster.example."
file = "cluster.example.zone"

[[pool]]
name = "www.cluster.example."
backends = [
    {{ address = "127.0.0.2", name = "web1" }},
    {{ address = "127.0.0.3", name = "web2" }},
    {{ address = "127.0.0.4", name = "web3" }},
]
{extra}"#
    )
}

async fn start_named(extra: &str) -> TestServer {
    TestServer::start(
        &named_config(extra),
        &[("cluster.example.zone", EXAMPLE_ZONE)],
    )
    .await
}

/// Every address answered for `name` over enough queries to see each rotation.
fn answered(s: &TestServer, name: &str) -> HashSet<String> {
    (0..6)
        .flat_map(|_| addrs(&ask(s.udp, name, RecordType::A)))
        .collect()
}

fn set(addrs: &[&str]) -> HashSet<String> {
    addrs.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn status_page_json_metrics_and_healthz() {
    let s = start_named("").await;
    ask(s.udp, "www.cluster.example.", RecordType::A);
    ask(s.udp, "nope.cluster.example.", RecordType::A);
    let addr = s.status();

    let (code, kind, body) = http("GET", addr, "/healthz").await;
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    assert!(kind.starts_with("text/plain"), "{kind}");

    let (code, kind, page) = http("GET", addr, "/").await;
    assert_eq!(code, 200);
    assert_eq!(kind, "text/html; charset=utf-8");
    for needle in [
        "<h2>www.cluster.example.</h2>",
        "<b>web2</b>",
        "127.0.0.3",
        "<span class=\"badge up\">up</span>",
        "round-robin",
        "NXDOMAIN <b>1</b>",
    ] {
        assert!(page.contains(needle), "missing {needle}:\n{page}");
    }

    let (code, kind, json) = http("GET", addr, "/status.json").await;
    assert_eq!((code, kind.as_str()), (200, "application/json"));
    let report: Report = serde_json::from_str(&json).unwrap();
    assert_eq!(report.queries.udp, 2);
    assert_eq!(report.queries.rcodes["NXDOMAIN"], 1);
    let pool = &report.pools[0];
    assert_eq!(pool.name, "www.cluster.example.");
    assert_eq!(pool.served, 1);
    let names: Vec<&str> = pool.backends.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["web1", "web2", "web3"]);
    assert!(pool.backends.iter().all(|b| b.state == "up" && b.usable));
    assert_eq!(
        report.config,
        s.config_path().display().to_string(),
        "the file reload reads"
    );

    let (code, kind, metrics) = http("GET", addr, "/metrics").await;
    assert_eq!(code, 200);
    assert_eq!(kind, "text/plain; version=0.0.4; charset=utf-8");
    let generation = s.server.snapshot().generation;
    for line in [
        "lbns_queries_total{transport=\"udp\"} 2".to_owned(),
        "lbns_responses_total{rcode=\"NXDOMAIN\"} 1".to_owned(),
        "lbns_queries_by_qtype_total{qtype=\"A\"} 2".to_owned(),
        "lbns_pool_answers_total{pool=\"www.cluster.example.\"} 1".to_owned(),
        "lbns_backend_up{pool=\"www.cluster.example.\",backend=\"web2\"} 1".to_owned(),
        "lbns_backend_flips_total{pool=\"www.cluster.example.\",backend=\"web2\"} 0".to_owned(),
        format!("lbns_snapshot_generation {generation}"),
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line}:\n{metrics}"
        );
    }

    // The status listener changes nothing: control paths are refused whatever the method (they
    // are on the control socket), other paths take GET only.
    for (method, path) in [("POST", "/reload"), ("GET", "/drain"), ("POST", "/undrain")] {
        let (code, _, body) = http(method, addr, path).await;
        assert_eq!(code, 403, "{method} {path}: {body}");
        assert!(body.contains("control socket"), "{body}");
    }
    assert_eq!(
        s.server.snapshot().generation,
        generation,
        "nothing reloaded"
    );
    let (code, _, _) = http("POST", addr, "/").await;
    assert_eq!(code, 405);
    let (code, _, _) = http("GET", addr, "/nothing-here").await;
    assert_eq!(code, 404);
    s.stop().await;
}

/// A connection from outside `[status] allow` is closed when accepted: no byte is read from it
/// and none is sent.
#[tokio::test(flavor = "multi_thread")]
async fn clients_outside_the_allowlist_are_closed_at_once() {
    let s = start_named("[status]\nlisten = \"127.0.0.1:0\"\nallow = [\"10.0.0.0/8\"]\n").await;
    let addr = s.status();
    let answer = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let started = Instant::now();
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // The request may or may not be written before the close reaches us.
        let _ = c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut got = Vec::new();
        let r = c.read_to_end(&mut got);
        (r.map_err(|e| e.kind()), got, started.elapsed())
    })
    .await
    .unwrap();
    let (result, got, took) = answer;
    assert!(
        matches!(result, Ok(0) | Err(std::io::ErrorKind::ConnectionReset)),
        "{result:?}"
    );
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    assert!(took < Duration::from_secs(1), "closed after {took:?}");
    s.stop().await;

    let s = start_named("[status]\nlisten = \"127.0.0.1:0\"\nallow = [\"127.0.0.1\"]\n").await;
    assert_eq!(http("GET", s.status(), "/healthz").await.0, 200);
    s.stop().await;

    // Off: no listener at all.
    let s = start_named("[status]\nenabled = false\n").await;
    assert!(s.status.is_none());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn drain_is_immediate_survives_a_restart_and_undrain_restores() {
    let s = start_named("").await;
    let all = set(&["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
    assert_eq!(answered(&s, "www.cluster.example."), all);

    // The final dot may be left out; the reply names the pool as configured.
    let (code, body) = control_http(
        &s.control,
        "POST",
        "/drain?pool=www.cluster.example&backend=web2",
    )
    .await;
    assert_eq!(
        (code, body.as_str()),
        (200, "drained web2 in www.cluster.example.\n")
    );
    // At once: the very next answers leave it out.
    assert_eq!(
        answered(&s, "www.cluster.example."),
        set(&["127.0.0.2", "127.0.0.4"])
    );
    let state_file = s.dir.path().join("lbns.state");
    let state = std::fs::read_to_string(&state_file).unwrap();
    assert!(
        state.contains("\"pool\": \"www.cluster.example.\"")
            && state.contains("\"backend\": \"web2\""),
        "{state}"
    );
    let report: Report =
        serde_json::from_str(&http("GET", s.status(), "/status.json").await.2).unwrap();
    let web2 = &report.pools[0].backends[1];
    assert!(web2.drained && !web2.usable && web2.state == "up");

    // Unknown names are 404s that say what is missing.
    let (code, body) = control_http(
        &s.control,
        "POST",
        "/drain?pool=www.cluster.example.&backend=nope",
    )
    .await;
    assert_eq!(
        (code, body.as_str()),
        (404, "no backend `nope` in pool `www.cluster.example.`\n")
    );
    let (code, body) =
        control_http(&s.control, "POST", "/drain?pool=zzz.example.&backend=web1").await;
    assert_eq!((code, body.as_str()), (404, "no pool `zzz.example.`\n"));
    let (code, _) = control_http(&s.control, "POST", "/drain?pool=www.cluster.example.").await;
    assert_eq!(code, 400);

    // A new server on the same files: still drained before it answers anything.
    let s = s.restart().await;
    assert_eq!(
        answered(&s, "www.cluster.example."),
        set(&["127.0.0.2", "127.0.0.4"])
    );
    let metrics = http("GET", s.status(), "/metrics").await.2;
    assert!(
        metrics
            .lines()
            .any(|l| l == "lbns_backend_drained{pool=\"www.cluster.example.\",backend=\"web2\"} 1"),
        "{metrics}"
    );

    // The CLI, by socket: undrain by backend address, then a bad name fails loudly.
    let socket = s.control.to_str().unwrap().to_owned();
    let (ok, out, err) = lbns_cli(&[
        "undrain",
        "--socket",
        &socket,
        "www.cluster.example.",
        "127.0.0.3",
    ])
    .await;
    assert!(ok, "{out}{err}");
    assert_eq!(out, "undrained web2 in www.cluster.example.\n");
    assert_eq!(answered(&s, "www.cluster.example."), all);
    let state = std::fs::read_to_string(&state_file).unwrap();
    assert!(state.contains("\"drained\": []"), "{state}");

    let (ok, _, err) =
        lbns_cli(&["drain", "--socket", &socket, "www.cluster.example.", "nope"]).await;
    assert!(!ok);
    assert_eq!(
        err,
        "lbns: no backend `nope` in pool `www.cluster.example.`\n"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn state_file_entries_for_unknown_backends_are_kept() {
    let config = named_config("").replace(
        "udp_workers = 1",
        "udp_workers = 1\nstate_file = \"run/drained.json\"",
    ) + "\n[status]\nlisten = \"127.0.0.1:0\"\n";
    let dir = config_dir(&config, EXAMPLE_ZONE);
    std::fs::create_dir(dir.path().join("run")).unwrap();
    // Hand-written: one entry without the final dot, one for a backend that is gone.
    std::fs::write(
        dir.path().join("run/drained.json"),
        r#"{ "version": 1, "drained": [
            { "pool": "www.cluster.example", "backend": "web3" },
            { "pool": "old.cluster.example.", "backend": "gone" } ] }"#,
    )
    .unwrap();
    let s = TestServer::start_in(dir).await;
    assert_eq!(
        answered(&s, "www.cluster.example."),
        set(&["127.0.0.2", "127.0.0.3"])
    );
    control_http(
        &s.control,
        "POST",
        "/drain?pool=www.cluster.example.&backend=web1",
    )
    .await;
    let state = std::fs::read_to_string(s.dir.path().join("run/drained.json")).unwrap();
    let state: lbns::state::SavedState = serde_json::from_str(&state).unwrap();
    let entries: Vec<(&str, &str)> = state
        .drained
        .iter()
        .map(|d| (d.pool.as_str(), d.backend.as_str()))
        .collect();
    assert_eq!(
        entries,
        [
            ("old.cluster.example.", "gone"),
            ("www.cluster.example.", "web1"),
            ("www.cluster.example.", "web3"),
        ]
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_endpoint_and_cli_apply_the_file_or_report_every_problem() {
    let s = start_named("").await;
    let path = s.config_path();
    let before = s.server.snapshot().generation;
    // Add a backend on disk; reload picks it up from the file the server started on.
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace(
            "{ address = \"127.0.0.4\", name = \"web3\" },",
            "{ address = \"127.0.0.4\", name = \"web3\" },\n    \"127.0.0.9\",",
        ),
    )
    .unwrap();
    let addr = s.status().to_string();
    let socket = s.control.to_str().unwrap().to_owned();
    let (ok, out, err) = lbns_cli(&["reload", "--socket", &socket]).await;
    assert!(ok, "{out}{err}");
    // Only the config changed: the zone is kept, not read again.
    assert_eq!(
        out,
        format!("reloaded {} (zones: 0 read, 1 unchanged)\n", path.display())
    );
    assert!(s.server.snapshot().generation > before);
    assert!(answered(&s, "www.cluster.example.").contains("127.0.0.9"));

    // A changed zone file is read again: its new name answers.
    let zone_path = path.with_file_name("cluster.example.zone");
    let mut zone = std::fs::read_to_string(&zone_path).unwrap();
    zone.push_str("added A 192.0.2.99\n");
    std::fs::write(&zone_path, zone).unwrap();
    let (ok, out, err) = lbns_cli(&["reload", "--socket", &socket]).await;
    assert!(ok, "{out}{err}");
    assert_eq!(
        out,
        format!("reloaded {} (zones: 1 read, 0 unchanged)\n", path.display())
    );
    assert_eq!(
        addrs(&ask(s.udp, "added.cluster.example.", RecordType::A)),
        ["192.0.2.99"]
    );

    // A broken file: 422 with file:line:col, and the old config keeps serving.
    std::fs::write(
        &path,
        text.replace("udp_workers = 1", "udp_workers = \"one\""),
    )
    .unwrap();
    let (code, body) = control_http(&s.control, "POST", "/reload").await;
    assert_eq!(code, 422);
    assert!(
        body.starts_with("reload rejected, still serving the old configuration:\n"),
        "{body}"
    );
    assert!(body.contains("lbns.toml:4:15: [server]"), "{body}");
    let (ok, _, err) = lbns_cli(&["reload", "--socket", &socket]).await;
    assert!(!ok);
    assert!(err.starts_with("lbns: reload rejected"), "{err}");
    assert!(answered(&s, "www.cluster.example.").contains("127.0.0.9"));

    // `lbns status` prints the table.
    let (ok, out, err) = lbns_cli(&["status", "--status-addr", &addr]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("pool www.cluster.example.  policy round-robin  ttl 5"),
        "{out}"
    );
    assert!(out.contains("web2") && out.contains("127.0.0.9"), "{out}");
    let (ok, out, _) = lbns_cli(&["status", "--json", "--status-addr", &addr]).await;
    assert!(ok);
    serde_json::from_str::<Report>(&out).unwrap();
    s.stop().await;

    // Nobody listening: a clear message and a failure exit.
    let (ok, _, err) = lbns_cli(&["status", "--status-addr", &addr]).await;
    assert!(!ok);
    assert!(
        err.starts_with(&format!(
            "lbns: cannot reach lbns at http://{addr}/status.json: "
        )),
        "{err}"
    );
    // Its control socket went with it.
    let (ok, _, err) = lbns_cli(&["reload", "--socket", &socket]).await;
    assert!(!ok);
    assert!(
        err.starts_with(&format!(
            "lbns: cannot reach lbns at control socket {socket}: No such file"
        )),
        "{err}"
    );
}

/// The acceptance test for reloads: dnsperf at a fixed rate against lbns while it reloads
/// again and again; every query must be answered.
#[tokio::test(flavor = "multi_thread")]
async fn no_query_is_lost_while_reloading_under_dnsperf() {
    let dnsperf = require_tool("dnsperf");
    let _alone = LOAD_TESTS.lock().await;
    let s = start_named("").await;
    let queries = s.dir.path().join("queries.txt");
    std::fs::write(
        &queries,
        "www.cluster.example. A\nmail.cluster.example. A\nnope.cluster.example. A\n\
         cluster.example. SOA\nwww.cluster.example. AAAA\n",
    )
    .unwrap();
    let child = Command::new(dnsperf)
        .args(["-s", "127.0.0.1", "-p", &s.udp.port().to_string(), "-d"])
        .arg(&queries)
        .args(["-l", "3", "-Q", "5000", "-t", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Reload every 100 ms or so while dnsperf runs, alternating two real changes to the files.
    let path = s.config_path();
    let zone = s.dir.path().join("cluster.example.zone");
    let text = std::fs::read_to_string(&path).unwrap();
    let generation = s.server.snapshot().generation;
    let mut reloads = 0;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    while started.elapsed() < Duration::from_millis(2700) {
        let flip = reloads % 2 == 1;
        std::fs::write(
            &path,
            if flip {
                text.replace("web3", "web-3")
            } else {
                text.clone()
            },
        )
        .unwrap();
        std::fs::write(
            &zone,
            if flip {
                EXAMPLE_ZONE.replace("127.0.0.8", "127.0.0.88")
            } else {
                EXAMPLE_ZONE.to_owned()
            },
        )
        .unwrap();
        let (code, body) = control_http(&s.control, "POST", "/reload").await;
        assert_eq!(code, 200, "{body}");
        reloads += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let count = |label: &str| -> u64 {
        let line = report
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no `{label}` in:\n{report}"));
        line.trim_start()[label.len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (sent, lost) = (count("Queries sent:"), count("Queries lost:"));
    eprintln!("dnsperf during {reloads} reloads: sent {sent}, lost {lost}");
    assert!(reloads >= 8, "only {reloads} reloads");
    assert!(s.server.snapshot().generation >= generation + reloads);
    // 3 s at 5000 q/s; a loaded test machine may fall a little short of the rate.
    assert!(sent >= 10_000, "{report}");
    assert_eq!(lost, 0, "{report}");
    s.stop().await;
}

/// Polls `/healthz` until the child answers or `deadline` passes.
async fn wait_healthy(addr: std::net::SocketAddr, proc: &mut Proc) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(r) = reqwest::get(format!("http://{addr}/healthz")).await
            && r.status() == 200
        {
            return;
        }
        if let Some(status) = proc.0.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = proc.0.stderr.take() {
                std::io::Read::read_to_string(&mut e, &mut err).unwrap();
            }
            panic!("lbns exited with {status}:\n{err}");
        }
        assert!(Instant::now() < deadline, "lbns not healthy on {addr}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes the example as a child process would run it: DNS and status on free ports.
fn child_dir(server_extra: &str) -> (tempfile::TempDir, String, String) {
    let (dns, status) = (free_port(), free_port());
    let config = named_config("").replace(
        "listen = [\"127.0.0.1:0\"]\nudp_workers = 1",
        &format!("listen = [\"127.0.0.1:{dns}\"]\nudp_workers = 1\n{server_extra}"),
    ) + &format!("\n[status]\nlisten = \"127.0.0.1:{status}\"\n");
    let dir = config_dir(&config, EXAMPLE_ZONE);
    (
        dir,
        format!("127.0.0.1:{dns}"),
        format!("127.0.0.1:{status}"),
    )
}

fn serve(dir: &tempfile::TempDir, args: &[&str]) -> Proc {
    spawn_serve(args, &dir.path().join("lbns.toml"), Stdio::piped())
}

#[tokio::test(flavor = "multi_thread")]
async fn query_log_samples_tcp_and_udp_queries_as_json_and_cli_reads_the_config() {
    let (dir, dns, status) = child_dir("query_log_sample = 2");
    let mut proc = serve(&dir, &["--log-format", "json"]);
    wait_healthy(status.parse().unwrap(), &mut proc).await;
    for name in [
        "www.cluster.example.",
        "nope.cluster.example.",
        "mail.cluster.example.",
    ] {
        tcp(dns.parse().unwrap(), &query(name, RecordType::A, None));
    }
    // The CLI finds the status listener through --config.
    let config = dir.path().join("lbns.toml");
    let (ok, out, err) = lbns_cli(&["status", "--config", config.to_str().unwrap()]).await;
    assert!(ok, "{err}");
    assert!(out.contains("queries: udp 0  tcp 3"), "{out}");
    // UDP (the fast path) is sampled by the same counter: the second of these is logged.
    for name in ["api.cluster.example.", "ns1.cluster.example."] {
        udp(
            dns.parse().unwrap(),
            &query(name, RecordType::A, Some(1232)),
        );
    }

    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(proc.0.id() as libc::pid_t, libc::SIGTERM) };
    let mut stderr = proc.0.stderr.take().unwrap();
    let log = tokio::task::spawn_blocking(move || {
        let mut log = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut log).unwrap();
        log
    })
    .await
    .unwrap();
    let queries: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "lbns::query")
        .collect();
    // One in two: the first and the third over TCP, then the second over UDP.
    assert_eq!(queries.len(), 3, "{log}");
    assert_eq!(queries[2]["fields"]["qname"], "ns1.cluster.example.");
    assert_eq!(queries[2]["fields"]["transport"], "udp");
    let f = &queries[0]["fields"];
    assert_eq!(f["message"], "query");
    assert_eq!(f["qname"], "www.cluster.example.");
    assert_eq!(f["qtype"], "A");
    assert_eq!(f["rcode"], "NOERROR");
    assert_eq!(f["transport"], "tcp");
    assert!(
        f["client"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{f}"
    );
    assert_eq!(queries[0]["level"], "INFO");
    assert_eq!(queries[1]["fields"]["qname"], "mail.cluster.example.");
}

#[tokio::test(flavor = "multi_thread")]
async fn privileges_are_dropped_after_binding() {
    let (dir, dns, status) = child_dir("user = \"nobody\"");
    let mut proc = serve(&dir, &[]);
    if !lbns::privdrop::is_root() {
        // Not root: asking to switch users must fail the start, loudly.
        let out = proc.0.wait().unwrap();
        assert!(!out.success());
        let mut err = String::new();
        std::io::Read::read_to_string(&mut proc.0.stderr.take().unwrap(), &mut err).unwrap();
        assert!(err.contains("lbns is not running as root"), "{err}");
        return;
    }
    wait_healthy(status.parse().unwrap(), &mut proc).await;
    let nobody = lbns::privdrop::lookup_user("nobody").unwrap();
    let proc_status = std::fs::read_to_string(format!("/proc/{}/status", proc.0.id())).unwrap();
    let field = |name: &str| -> Vec<u32> {
        let line = proc_status
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in {proc_status}"));
        line[name.len()..]
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect()
    };
    // Real, effective, saved and filesystem ids all switched; no supplementary group kept.
    assert_eq!(field("Uid:"), [nobody.uid; 4]);
    assert_eq!(field("Gid:"), [nobody.gid; 4]);
    assert_eq!(field("Groups:"), [nobody.gid]);
    assert_eq!(field("CapEff:"), [0], "no capabilities left");
    // Every thread, not just the main one: the runtime and UDP workers were running already.
    for task in std::fs::read_dir(format!("/proc/{}/task", proc.0.id())).unwrap() {
        let t = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        let uid = t.lines().find(|l| l.starts_with("Uid:")).unwrap();
        assert!(
            uid.split_whitespace()
                .skip(1)
                .all(|n| n == nobody.uid.to_string()),
            "{uid}"
        );
    }
    // Still answering on the sockets bound as root.
    let m = tcp(
        dns.parse().unwrap(),
        &query("www.cluster.example.", RecordType::A, None),
    );
    assert_eq!(addrs(&m).len(), 3);
    drop(proc);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_that_does_not_exist_stops_the_start() {
    let (dir, dns, _) = child_dir("user = \"no-such-user-lbns\"");
    let config = dir.path().join("lbns.toml");
    let (ok, _, err) = lbns_cli(&["serve", "--config", config.to_str().unwrap()]).await;
    assert!(!ok);
    assert_eq!(
        err.lines().last().unwrap(),
        "lbns: [server] user `no-such-user-lbns` does not exist"
    );
    // Nothing was bound: the port is still free.
    std::net::UdpSocket::bind(&dns).unwrap();
}

/// `/status.json` takes the page's search, filter and page; without them it is every pool in
/// config order. `[status] metrics_per_backend = false` takes effect at a reload and leaves
/// every series naming a backend out of `/metrics`.
#[tokio::test(flavor = "multi_thread")]
async fn status_json_pages_and_metrics_per_backend() {
    let mut extra = String::from("[status]\nlisten = \"127.0.0.1:0\"\n");
    for i in 0..12 {
        extra.push_str(&format!(
            "\n[[pool]]\nname = \"a{i}.cluster.example.\"\nbackends = [\"127.0.3.{}\"]\n",
            i + 1
        ));
    }
    let s = start_named(&extra).await;
    let (code, _) = control_http(
        &s.control,
        "POST",
        "/drain?pool=a7.cluster.example.&backend=127.0.3.8",
    )
    .await;
    assert_eq!(code, 200);
    let json = |path: &'static str| {
        let addr = s.status();
        async move {
            let (code, _, body) = http("GET", addr, path).await;
            assert_eq!(code, 200, "{path}: {body}");
            serde_json::from_str::<serde_json::Value>(&body).unwrap()
        }
    };
    let names = |v: &serde_json::Value| -> Vec<String> {
        v["pools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    };

    let all = json("/status.json").await;
    assert_eq!(names(&all).len(), 13);
    assert_eq!(names(&all)[0], "www.cluster.example.", "config order");
    assert!(all.get("listing").is_none(), "{all}");
    assert_eq!(all["fleet"]["pools"], 13);
    assert_eq!(all["fleet"]["pools_drained"], 1);
    assert_eq!(all["fleet"]["backends"], 15);

    // Trouble first, 5 a page; page 3 of 3 holds the last three of config order.
    let page = json("/status.json?per=5").await;
    assert_eq!(names(&page)[0], "a7.cluster.example.");
    assert_eq!(names(&page).len(), 5);
    assert_eq!(page["listing"]["pages"], 3);
    let last = json("/status.json?per=5&page=3").await;
    assert_eq!(
        names(&last),
        [
            "a9.cluster.example.",
            "a10.cluster.example.",
            "a11.cluster.example."
        ]
    );
    let found = json("/status.json?q=A1").await;
    assert_eq!(
        names(&found),
        [
            "a1.cluster.example.",
            "a10.cluster.example.",
            "a11.cluster.example."
        ]
    );
    assert_eq!(found["listing"]["matched"], 3);
    assert_eq!(found["fleet"]["pools"], 13, "the fleet counts stay whole");
    let drained = json("/status.json?state=drained").await;
    assert_eq!(names(&drained), ["a7.cluster.example."]);
    // The whole report still reads back as what `lbns status` reads.
    let (_, _, body) = http("GET", s.status(), "/status.json?state=drained").await;
    let report: Report = serde_json::from_str(&body).unwrap();
    assert_eq!(report.pools.len(), 1);

    let metrics = http("GET", s.status(), "/metrics").await.2;
    assert!(
        metrics
            .contains("lbns_backend_drained{pool=\"a7.cluster.example.\",backend=\"127.0.3.8\"} 1"),
        "{metrics}"
    );
    let text = std::fs::read_to_string(s.config_path())
        .unwrap()
        .replace("[status]\n", "[status]\nmetrics_per_backend = false\n");
    std::fs::write(s.config_path(), text).unwrap();
    let (code, body) = control_http(&s.control, "POST", "/reload").await;
    assert_eq!(code, 200, "{body}");
    let metrics = http("GET", s.status(), "/metrics").await.2;
    assert!(!metrics.contains("backend=\""), "{metrics}");
    assert!(!metrics.contains("lbns_probe_"), "{metrics}");
    assert!(
        metrics
            .lines()
            .any(|l| l == "lbns_pool_answers_total{pool=\"a7.cluster.example.\"} 0"),
        "{metrics}"
    );
    s.stop().await;
}
