//! The failover promise as a client behind a caching resolver sees it: a backend that dies or
//! hangs is out of the answers the client gets from its resolver within the pool's `failover`
//! time, whatever the phase of the resolver's cache cycle it died in.
//!
//! Runs benches/failover-resolver.sh — the benchmark's own setup and measurement, with fewer
//! trials — in a private network namespace: four HTTP backends, two lbns (127.0.0.53 and
//! 127.0.0.54) serving `www.lb.test.` with `failover = "5s"`, and unbound on 127.0.0.1 with a
//! stub zone on both (no forwarders, no route out of the namespace). Needs root and unbound
//! (scripts/install-deps.sh installs it; scripts/test.sh runs that first).

use crate::support::*;

/// The pool's failover time, seconds: the script's pool has `failover = "5s"`.
const FAILOVER: f64 = 5.0;

/// Allowed over `FAILOVER` for measurement granularity, not for lbns: the client asks every
/// 100 ms, each answer's time and the kill time are read by a python process that shares two
/// cores with two lbns, unbound and the rest of the test suite, and the script's trial lines
/// round to milliseconds. 0.5 s covers one query interval plus that scheduling delay several
/// times over, while staying far below a TTL step (1 s), so a resolver caching one second too
/// long still fails.
const MARGIN: f64 = 0.5;

/// Three backends killed (SIGKILL: connections refused) and two hung (SIGSTOP: connections
/// accepted by the kernel, never answered), each at a random phase of unbound's cache cycle:
/// every one must be gone from the client's answers within `FAILOVER` + `MARGIN` seconds of the
/// signal, and no query may fail (a lost or unparseable reply is a failure, never a drop).
/// About 50 s of wall time; the script is stopped (and stops everything it started) at 150 s.
#[test]
fn a_client_behind_unbound_stops_getting_a_dead_or_hung_backend_within_failover() {
    // Fails, never skips, when a tool is missing.
    require_tool("unbound");
    require_tool("python3");
    require_tool("ip");
    require_tool("timeout");
    let dir = tempfile::tempdir().unwrap();
    let script = format!(
        "LBNS_FAILOVER_NETNS=1 exec timeout 150 bash {repo}/benches/failover-resolver.sh \
         --no-install --no-build --no-write --lbns {lbns} --workdir {dir} \
         --killed 3 --hung 2 --settle 2 --max-wait 20 --pool 'failover = \"5s\"'",
        repo = env!("CARGO_MANIFEST_DIR"),
        lbns = lbns_bin().display(),
        dir = dir.path().display(),
    );
    let out = Sections::run_in_netns(&script, &dir.path().join("lbns-127.0.0.53.log"));
    let trials = out.section("trials");
    let summary = out.section("summary");
    let report = format!("{trials}{summary}");
    // Shown with `--nocapture`: what each trial measured.
    println!("{report}");

    let field = |line: &str, key: &str| -> String {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}= in {line:?}:\n{report}"))
            .to_owned()
    };
    let lines: Vec<&str> = trials.lines().filter(|l| l.starts_with("trial=")).collect();
    let cases: Vec<String> = lines.iter().map(|l| field(l, "case")).collect();
    assert_eq!(
        (
            cases.iter().filter(|c| *c == "killed").count(),
            cases.iter().filter(|c| *c == "hung").count()
        ),
        (3, 2),
        "expected 3 killed and 2 hung trials:\n{report}"
    );

    let bound = FAILOVER + MARGIN;
    let late: Vec<String> = lines
        .iter()
        .filter(|l| {
            let visible: f64 = field(l, "unbound").parse().unwrap();
            visible > bound || visible.is_nan()
        })
        .map(|l| {
            format!(
                "{} {}: the client got it for {} s (lbns itself dropped it after {} s)",
                field(l, "case"),
                field(l, "victim"),
                field(l, "unbound"),
                field(l, "lbns")
            )
        })
        .collect();
    assert!(
        late.is_empty(),
        "{} of {} trials outlived failover = {FAILOVER} s (+ {MARGIN} s margin) behind unbound:\n{}\n\n{report}",
        late.len(),
        lines.len(),
        late.join("\n")
    );

    let failures = summary
        .lines()
        .find(|l| l.starts_with("failures "))
        .unwrap_or_else(|| panic!("no failures line:\n{report}"));
    for target in ["unbound", "lbns"] {
        assert_eq!(
            field(failures, target),
            "0",
            "failed queries (lost or unparseable replies) to {target}:\n{report}"
        );
    }
}
