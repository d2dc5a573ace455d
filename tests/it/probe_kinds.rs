//! The `exec` and `file` probe kinds end to end: lbns runs a real command per backend, or reads
//! a real state file, and the answers follow.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use lbns::status::Report;

use crate::support::*;

const ZONE: &str = "$TTL 60\n@ SOA ns1 hostmaster 1 3600 600 86400 60\nns1 A 127.0.0.1\n@ NS ns1\n";

/// Short probe timing, so a flip shows within a second or so (rise = fall = 2).
const TIMING: &str = "interval = \"300ms\", timeout = \"300ms\", jitter = \"50ms\"";

fn config(pool: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_workers = 1\n\n\
         [[zone]]\norigin = \"p.example.\"\nfile = \"p.zone\"\n\n{pool}"
    )
}

fn answer_set(s: &TestServer, name: &str) -> HashSet<String> {
    addrs(&ask(s.udp, name, RecordType::A))
        .into_iter()
        .collect()
}

fn set(addresses: &[&str]) -> HashSet<String> {
    addresses.iter().map(|a| (*a).to_owned()).collect()
}

/// Polls the answers for `name` until they are exactly `want` (at most 10 s).
async fn wait_for(s: &TestServer, name: &str, want: &[&str]) {
    let want = set(want);
    let start = Instant::now();
    loop {
        let got = answer_set(s, name);
        if got == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{name}: still {got:?} after 10 s, expected {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the status listener says of `backend` in the first pool.
async fn backend_report(s: &TestServer, backend: &str) -> lbns::status::report::BackendReport {
    let json = http("GET", s.status(), "/status.json").await.2;
    let report: Report = serde_json::from_str(&json).unwrap();
    report.pools[0]
        .backends
        .iter()
        .find(|b| b.name == backend)
        .unwrap_or_else(|| panic!("no backend {backend} in {json}"))
        .clone()
}

/// Replaces `path` with `text` the way writers should: a new file renamed into place.
fn write_atomically(path: &Path, text: &str) {
    let next = path.with_extension("new");
    std::fs::write(&next, text).unwrap();
    std::fs::rename(&next, path).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_probe_follows_the_commands_exit_status() {
    // The check: down (exit 1, with a word on stderr) while a flag file for the address exists,
    // else up with load 0.5.
    let work = tempfile::tempdir().unwrap();
    let script = work.path().join("check.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\n\
         if [ -e \"$(dirname \"$0\")/down.$1\" ]; then echo \"flagged down\" >&2; exit 1; fi\n\
         echo 0.5\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let script = script.to_str().unwrap();
    let pool = format!(
        "[[pool]]\nname = \"x.p.example.\"\nbackends = [\"127.0.0.2\", \"127.0.0.3\"]\n\
         probe = {{ kind = \"exec\", command = [{script:?}], load = true, {TIMING} }}\n"
    );
    let s = TestServer::start(&config(&pool), &[("p.zone", ZONE)]).await;
    assert_eq!(
        answer_set(&s, "x.p.example."),
        set(&["127.0.0.2", "127.0.0.3"])
    );
    let up = backend_report(&s, "127.0.0.3").await;
    assert_eq!(up.probe, format!("exec {script}"));
    assert_eq!(up.load, Some(0.5));

    let flag = work.path().join("down.127.0.0.3");
    std::fs::write(&flag, "").unwrap();
    wait_for(&s, "x.p.example.", &["127.0.0.2"]).await;
    let down = backend_report(&s, "127.0.0.3").await;
    assert_eq!(
        down.last_result.as_deref(),
        Some(format!("exec {script}: exit 1: \"flagged down\"").as_str())
    );
    std::fs::remove_file(&flag).unwrap();
    wait_for(&s, "x.p.example.", &["127.0.0.2", "127.0.0.3"]).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn file_probe_follows_the_state_file() {
    let work = tempfile::tempdir().unwrap();
    let states = work.path().join("states");
    write_atomically(&states, "# cluster states\n127.0.0.2 up\n127.0.0.3 down\n");
    let pool = format!(
        "[[pool]]\nname = \"f.p.example.\"\nbackends = [\"127.0.0.2\", \"127.0.0.3\"]\n\
         probe = {{ kind = \"file\", path = {:?}, {TIMING} }}\n",
        states.to_str().unwrap()
    );
    let s = TestServer::start(&config(&pool), &[("p.zone", ZONE)]).await;
    // The first probe round decides: only .2 from the first answer on.
    assert_eq!(answer_set(&s, "f.p.example."), set(&["127.0.0.2"]));

    write_atomically(&states, "127.0.0.2 DOWN\n127.0.0.3 UP 2\n");
    wait_for(&s, "f.p.example.", &["127.0.0.3"]).await;
    let r = backend_report(&s, "127.0.0.3").await;
    assert_eq!(r.load, Some(2.0));

    // Rewritten in place, as a plain `echo >` would: seen too.
    std::fs::write(&states, "127.0.0.2 up\n127.0.0.3 up\n").unwrap();
    wait_for(&s, "f.p.example.", &["127.0.0.2", "127.0.0.3"]).await;

    // A backend missing from the file is down, with the reason on the status page.
    std::fs::write(&states, "127.0.0.2 up\n").unwrap();
    wait_for(&s, "f.p.example.", &["127.0.0.2"]).await;
    let r = backend_report(&s, "127.0.0.3").await;
    assert_eq!(
        r.last_result.as_deref(),
        Some(format!("file {}: no line for 127.0.0.3", states.display()).as_str())
    );
    s.stop().await;
}

/// `lbns check` refuses a probe whose own keys are wrong, naming the pool and backend.
#[tokio::test(flavor = "multi_thread")]
async fn check_rejects_bad_exec_and_file_probes() {
    let pool = "[[pool]]\nname = \"x.p.example.\"\nbackends = [\"127.0.0.2\"]\n\
                probe = { kind = \"exec\", command = [] }\n\n\
                [[pool]]\nname = \"f.p.example.\"\nbackends = [\"127.0.0.2\"]\n\
                probe = { kind = \"file\" }\n";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("lbns.toml"), config(pool)).unwrap();
    std::fs::write(dir.path().join("p.zone"), ZONE).unwrap();
    let config_path = dir.path().join("lbns.toml");
    let (ok, stdout, stderr) =
        lbns_cli(&["check", "--config", config_path.to_str().unwrap()]).await;
    assert!(!ok, "{stdout}");
    assert!(
        stderr.contains("pool x.p.example.: backend 127.0.0.2: exec probe command is empty"),
        "{stderr}"
    );
    assert!(
        stderr.contains("pool f.p.example.: backend 127.0.0.2: a file probe needs a path"),
        "{stderr}"
    );
}
