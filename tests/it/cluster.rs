//! Peers (`[cluster]`): instances decide each backend by quorum over all their views, share
//! drains, refuse forged and replayed messages, and a restarted instance answers with the
//! peers' view at once. One-sided views are made with a `file` probe per instance, each
//! reading its own state file, so one instance can see a backend down while the others see it
//! up.

use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::support::{TestServer, addrs, ask, control_http};

const KEY: &str = "a shared secret of the test cluster";

const ZONE: &str = "$ORIGIN lb.test.\n$TTL 60\n\
@ IN SOA ns hostmaster 1 3600 600 86400 60\n@ IN NS ns\nns IN A 127.0.0.1\n";

/// The cluster address of instance `i` (127.0.80.i:8055), unique to these tests.
fn peer(i: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 80, i], 8055))
}

/// The config of instance `me` among `all`: pool `www.lb.test.` of .2 and .3, probed by
/// reading `states` every 200 ms.
fn config(me: u8, all: &[u8], states: &Path) -> String {
    let peers: Vec<String> = all
        .iter()
        .filter(|&&i| i != me)
        .map(|&i| format!("\"{}\"", peer(i)))
        .collect();
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n\n\
         [cluster]\nlisten = \"{}\"\npeers = [{}]\nkey_file = \"peer.key\"\n\n\
         [[zone]]\norigin = \"lb.test.\"\nfile = \"lb.test.zone\"\n\n\
         [[pool]]\nname = \"www.lb.test.\"\nbackends = [\"127.0.0.2\", \"127.0.0.3\"]\n\
         probe = {{ kind = \"file\", path = \"{}\", interval = \"200ms\", timeout = \"100ms\", jitter = \"0s\" }}\n",
        peer(me),
        peers.join(", "),
        states.display()
    )
}

/// Writes what instance `i`'s probe reads: `.2` up, `.3` up or down.
fn see(states: &Path, three_up: bool) {
    let text = format!(
        "127.0.0.2 up\n127.0.0.3 {}\n",
        if three_up { "up" } else { "down" }
    );
    // Write beside and rename, so a probe never reads half a file.
    let tmp = states.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, states).unwrap();
}

/// Starts instance `me` of `all` in a fresh directory with its own state file.
async fn start(me: u8, all: &[u8], states: &Path) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("lb.test.zone"), ZONE).unwrap();
    let key = dir.path().join("peer.key");
    std::fs::write(&key, KEY).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(
        dir.path().join("lbns.toml"),
        format!(
            "{}\n[status]\nlisten = \"127.0.0.1:0\"\n",
            config(me, all, states)
        ),
    )
    .unwrap();
    TestServer::start_in(dir).await
}

fn answer(s: &TestServer) -> BTreeSet<String> {
    addrs(&ask(s.udp, "www.lb.test.", RecordType::A))
        .into_iter()
        .collect()
}

/// Waits until every server answers `want`; returns how long that took.
async fn converge(servers: &[&TestServer], want: &[&str], within: Duration) -> Duration {
    let want: BTreeSet<String> = want.iter().map(|s| (*s).to_owned()).collect();
    let start = Instant::now();
    loop {
        let answers: Vec<_> = servers.iter().map(|s| answer(s)).collect();
        if answers.iter().all(|a| *a == want) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "not every instance answers {want:?} within {within:?}: {answers:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn state_files(dir: &Path, n: u8) -> Vec<PathBuf> {
    (1..=n).map(|i| dir.join(format!("states-{i}"))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_answer_the_majority_view_and_share_drains() {
    let files = tempfile::tempdir().unwrap();
    let states = state_files(files.path(), 3);
    // One-sided loss: instance 1 alone sees .3 down.
    see(&states[0], false);
    see(&states[1], true);
    see(&states[2], true);
    let all = [1, 2, 3];
    let (a, b, c) = tokio::join!(
        start(1, &all, &states[0]),
        start(2, &all, &states[1]),
        start(3, &all, &states[2])
    );
    converge(
        &[&a, &b, &c],
        &["127.0.0.2", "127.0.0.3"],
        Duration::from_secs(3),
    )
    .await;
    // The status of instance 1 shows its own view (down), each peer's (up) and the verdict.
    let (_, _, json) = crate::support::http("GET", a.status(), "/status.json").await;
    let report: lbns::status::Report = serde_json::from_str(&json).unwrap();
    let three = &report.pools[0].backends[1];
    assert_eq!(
        (three.state.as_str(), three.usable),
        ("down", true),
        "{json}"
    );
    assert_eq!(report.peers.len(), 2, "{json}");
    assert!(
        report
            .peers
            .iter()
            .all(|p| p.received > 0 && p.rejected == 0)
    );

    // A second instance loses it too: the majority now sees it down, and all three agree
    // within a probe interval (200 ms) and an exchange (500 ms) or so.
    see(&states[1], false);
    let took = converge(&[&a, &b, &c], &["127.0.0.2"], Duration::from_secs(3)).await;
    eprintln!("converged on the majority's view in {took:?}");

    // Back up for all: a drain on one instance applies on every instance within a second, and
    // each saves it.
    see(&states[0], true);
    see(&states[1], true);
    converge(
        &[&a, &b, &c],
        &["127.0.0.2", "127.0.0.3"],
        Duration::from_secs(3),
    )
    .await;
    let (code, body) = control_http(
        &b.control,
        "POST",
        "/drain?pool=www.lb.test.&backend=127.0.0.2",
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let took = converge(&[&a, &b, &c], &["127.0.0.3"], Duration::from_secs(1)).await;
    eprintln!("the drain reached every instance in {took:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    for s in [&a, &c] {
        let saved = std::fs::read_to_string(s.dir.path().join("lbns.state")).unwrap();
        assert!(saved.contains("127.0.0.2"), "{saved}");
    }
    let (code, _) = control_http(
        &a.control,
        "POST",
        "/undrain?pool=www.lb.test.&backend=127.0.0.2",
    )
    .await;
    assert_eq!(code, 200);

    // A restarted instance answers with the peers' view at once: instance 3 sees both up, the
    // other two see .3 down.
    see(&states[0], false);
    see(&states[1], false);
    converge(&[&a, &b, &c], &["127.0.0.2"], Duration::from_secs(3)).await;
    let c = c.restart().await;
    assert_eq!(
        answer(&c),
        BTreeSet::from(["127.0.0.2".to_owned()]),
        "the first answer after a restart"
    );

    // A peer that stops talking stops counting after peer_max_age (1.5 s): with instance 2
    // (up) gone, instance 1 (down) and 3 (up) are a tie, which is down.
    see(&states[1], true);
    converge(
        &[&a, &b, &c],
        &["127.0.0.2", "127.0.0.3"],
        Duration::from_secs(3),
    )
    .await;
    b.stop().await;
    let took = converge(&[&a, &c], &["127.0.0.2"], Duration::from_secs(4)).await;
    eprintln!("a silent peer stopped counting after {took:?}");
    a.stop().await;
    c.stop().await;
}

/// A datagram as a peer would send it, signed with `key`.
fn sealed(key: &[u8], body: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(body.as_bytes());
    let mut out = mac.finalize().into_bytes().to_vec();
    out.extend_from_slice(body.as_bytes());
    out
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_replayed_and_stale_messages_are_refused() {
    let files = tempfile::tempdir().unwrap();
    let states = state_files(files.path(), 1);
    see(&states[0], true);
    // Instance 5 with one peer, 6, which this test plays.
    let s = start(5, &[5, 6], &states[0]).await;
    let fake = UdpSocket::bind(peer(6)).unwrap();
    let peers = |s: &TestServer| {
        let status = s.status();
        async move {
            let (_, _, json) = crate::support::http("GET", status, "/status.json").await;
            let r: lbns::status::Report = serde_json::from_str(&json).unwrap();
            (r.peers[0].received, r.peers[0].rejected)
        }
    };
    let body = |seq: u64, sent: u128, state: &str| {
        format!(
            "{{\"v\":1,\"boot\":1,\"seq\":{seq},\"sent\":{sent},\"drain_version\":0,\"drains\":[],\
             \"views\":[[\"www.lb.test.\",\"127.0.0.3\",\"{state}\",null,0]]}}"
        )
    };
    let send = |d: &[u8]| fake.send_to(d, peer(5)).unwrap();
    let wait = || tokio::time::sleep(Duration::from_millis(200));

    // A genuine message is taken: with one peer, its down view against this instance's up
    // view is a tie, which takes .3 out.
    let genuine = sealed(KEY.as_bytes(), &body(5, now_ms(), "down"));
    send(&genuine);
    wait().await;
    assert_eq!(peers(&s).await, (1, 0));
    converge(&[&s], &["127.0.0.2"], Duration::from_secs(1)).await;
    // The same bytes again: a replay.
    send(&genuine);
    wait().await;
    assert_eq!(peers(&s).await, (1, 1));
    // Signed with another key, or altered: forged.
    send(&sealed(
        b"not the cluster's key at all, no",
        &body(6, now_ms(), "up"),
    ));
    let mut altered = sealed(KEY.as_bytes(), &body(7, now_ms(), "down"));
    let last = altered.len() - 5;
    altered[last] ^= 0x20;
    send(&altered);
    // Sent ten seconds ago: too old. Not JSON: malformed. Runt: too short.
    send(&sealed(KEY.as_bytes(), &body(8, now_ms() - 10_000, "up")));
    send(&sealed(KEY.as_bytes(), "{\"v\":1}"));
    send(b"short");
    wait().await;
    assert_eq!(peers(&s).await, (1, 6));
    // None of them changed the view: the peer's last taken view still stands, until it is
    // older than peer_max_age (1.5 s) and this instance decides alone again.
    assert_eq!(answer(&s), BTreeSet::from(["127.0.0.2".to_owned()]));
    converge(&[&s], &["127.0.0.2", "127.0.0.3"], Duration::from_secs(3)).await;
    s.stop().await;
}
