//! Live health: backends probed over real sockets leave and rejoin the answers within the
//! failover bound; load sources order them; all-down policies apply.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::lbcd::Lbcd;
use crate::support::backend::HttpBackend;
use crate::support::*;

const ZONE: &str = "$TTL 60\n@ SOA ns1 hostmaster 1 3600 600 86400 60\n@ NS ns1\nns1 A 127.0.0.1\n";

fn config(pool: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_workers = 1\n\n\
         [[zone]]\norigin = \"h.example.\"\nfile = \"h.zone\"\n\n{pool}"
    )
}

/// Three HTTP backends on 127.0.0.2-4, same port.
async fn three_backends() -> Vec<HttpBackend> {
    HttpBackend::start_same_port(&["127.0.0.2", "127.0.0.3", "127.0.0.4"]).await
}

fn answer_set(s: &TestServer, name: &str) -> HashSet<String> {
    addrs(&ask(s.udp, name, RecordType::A))
        .into_iter()
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_backend_leaves_within_the_ttl_and_returns_after_rise() {
    let mut backends = three_backends().await;
    let port = backends[0].addr.port();
    // Default probe settings (interval 1s, timeout 1s, jitter 200ms, rise 2, fall 2), TTL 5.
    let pool = format!(
        "[[pool]]\nname = \"www.h.example.\"\nttl = 5\n\
         backends = [\"127.0.0.2\", \"127.0.0.3\", \"127.0.0.4\"]\n\
         probe = {{ kind = \"http\", port = {port}, url = \"http://{{address}}:{{port}}/health\", body_contains = \"ok\" }}\n"
    );
    let s = TestServer::start(&config(&pool), &[("h.zone", ZONE)]).await;
    let all: HashSet<String> = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        .map(String::from)
        .into();
    assert_eq!(answer_set(&s, "www.h.example."), all);

    backends[1].kill().await;
    let killed = Instant::now();
    let gone = loop {
        if !answer_set(&s, "www.h.example.").contains("127.0.0.3") {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "still answered after the 5 s TTL"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Once gone it stays gone: every answer for a while excludes it.
    for _ in 0..20 {
        assert!(!answer_set(&s, "www.h.example.").contains("127.0.0.3"));
    }
    // Bound: (interval + jitter) × fall + timeout = 3.4 s.
    assert!(
        gone <= Duration::from_millis(3400),
        "dropped after {gone:?}"
    );

    backends[1].restart().await;
    let back = Instant::now();
    while !answer_set(&s, "www.h.example.").contains("127.0.0.3") {
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "not back after rise successes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // rise = 2: at least one full interval passes before it returns.
    assert!(
        back.elapsed() >= Duration::from_millis(900),
        "back too soon: {:?}",
        back.elapsed()
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_at_start_is_never_served_and_bad_status_counts_as_down() {
    let mut backends = three_backends().await;
    let port = backends[0].addr.port();
    backends[0].kill().await;
    backends[2]
        .status
        .store(503, std::sync::atomic::Ordering::Relaxed);
    let pool = format!(
        "[[pool]]\nname = \"www.h.example.\"\n\
         backends = [\"127.0.0.2\", \"127.0.0.3\", \"127.0.0.4\"]\n\
         probe = {{ kind = \"http\", port = {port} }}\n"
    );
    let s = TestServer::start(&config(&pool), &[("h.zone", ZONE)]).await;
    // The very first answer already reflects the first probe round.
    assert_eq!(
        answer_set(&s, "www.h.example."),
        HashSet::from(["127.0.0.3".to_owned()])
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn all_down_policies_over_the_wire() {
    // Nothing listens on these ports: every backend is down from the first round.
    let port = free_port();
    let pools = format!(
        "[[pool]]\nname = \"all.h.example.\"\nttl = 5\nbackends = [\"127.0.0.2\", \"127.0.0.3\"]\n\
         probe = {{ kind = \"tcp\", port = {port} }}\n\n\
         [[pool]]\nname = \"fail.h.example.\"\nall_down = \"servfail\"\nbackends = [\"127.0.0.2\"]\n\
         probe = {{ kind = \"tcp\", port = {port} }}\n\n\
         [[pool]]\nname = \"none.h.example.\"\nall_down = \"nodata\"\nbackends = [\"127.0.0.2\"]\n\
         probe = {{ kind = \"tcp\", port = {port} }}\n\n\
         [[pool]]\nname = \"fb.h.example.\"\nall_down = \"fallback\"\nfallback = [\"127.0.0.99\"]\n\
         all_down_ttl = 2\nbackends = [\"127.0.0.2\"]\nprobe = {{ kind = \"tcp\", port = {port} }}\n"
    );
    let s = TestServer::start(&config(&pools), &[("h.zone", ZONE)]).await;
    let m = ask(s.udp, "all.h.example.", RecordType::A);
    assert_eq!(addrs(&m).len(), 2, "serve-all answers every backend");
    assert!(
        m.answers.iter().all(|r| r.ttl == 1),
        "with the short all-down TTL"
    );
    let m = ask(s.udp, "fail.h.example.", RecordType::A);
    assert_eq!(m.response_code, ResponseCode::ServFail);
    let m = ask(s.udp, "none.h.example.", RecordType::A);
    assert_eq!(
        (m.response_code, m.answers.len()),
        (ResponseCode::NoError, 0)
    );
    let m = ask(s.udp, "fb.h.example.", RecordType::A);
    assert_eq!(addrs(&m), vec!["127.0.0.99"]);
    assert_eq!(m.answers[0].ttl, 2);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn real_lbcd_daemons_drive_least_loaded_and_best() {
    // Two real lbcd daemons standing for two hosts, with fixed weights (lbcd -w weight:incr).
    let light = Lbcd::start_on(Ipv4Addr::new(127, 0, 0, 41), &["-w", "100:50"]);
    let heavy = Lbcd::start_on(Ipv4Addr::new(127, 0, 0, 42), &["-w", "400:50"]);
    // Each daemon has its own port: the backends override the pool's probe port.
    let backends = format!(
        "backends = [{{ address = \"127.0.0.42\", probe = {{ port = {} }} }}, \
         {{ address = \"127.0.0.41\", probe = {{ port = {} }} }}]",
        heavy.addr.port(),
        light.addr.port()
    );
    let pools = format!(
        "[[pool]]\nname = \"ll.h.example.\"\npolicy = \"least-loaded\"\n{backends}\n\
         probe = {{ kind = \"lbcd\" }}\n\n\
         [[pool]]\nname = \"best.h.example.\"\npolicy = \"best\"\n{backends}\n\
         probe = {{ kind = \"lbcd\" }}\n"
    );
    let s = TestServer::start(&config(&pools), &[("h.zone", ZONE)]).await;
    // least-loaded: the lighter host first in every answer.
    for _ in 0..5 {
        assert_eq!(
            addrs(&ask(s.udp, "ll.h.example.", RecordType::A)),
            vec!["127.0.0.41", "127.0.0.42"]
        );
    }
    // best: one host per answer; the light one until its weight has grown by increments to
    // the heavy one's (100 + 6 × 50 = 400), then they share.
    let firsts: Vec<String> = (0..8)
        .map(|_| addrs(&ask(s.udp, "best.h.example.", RecordType::A)).remove(0))
        .collect();
    assert!(firsts[..6].iter().all(|a| a == "127.0.0.41"), "{firsts:?}");
    assert!(firsts.contains(&"127.0.0.42".to_owned()), "{firsts:?}");
    drop((light, heavy));
    s.stop().await;
}
