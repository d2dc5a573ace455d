//! Selection policies over real sockets, and every example config in the repository.

use std::collections::HashMap;
use std::path::Path;

use hickory_proto::rr::RecordType;
use lbns::config::Config;

use crate::support::backend::HttpBackend;
use crate::support::*;

const ZONE: &str = "$TTL 60\n@ SOA ns1 hostmaster 1 3600 600 86400 60\n@ NS ns1\nns1 A 127.0.0.1\n";

fn config(pool: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_workers = 2\n\n\
         [[zone]]\norigin = \"p.example.\"\nfile = \"p.zone\"\n\n{pool}"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn weighted_spreads_first_answers_by_weight_over_udp() {
    let pool = "[[pool]]\nname = \"w.p.example.\"\npolicy = \"weighted\"\n\
                backends = [{ address = \"127.0.0.2\", weight = 1 }, { address = \"127.0.0.3\", weight = 3 }]\n";
    let s = TestServer::start(&config(pool), &[("p.zone", ZONE)]).await;
    let n = 1200;
    let mut firsts: HashMap<String, usize> = HashMap::new();
    for _ in 0..n {
        let a = addrs(&ask(s.udp, "w.p.example.", RecordType::A));
        assert_eq!(a.len(), 2);
        *firsts.entry(a[0].clone()).or_default() += 1;
    }
    // 1:3 within 3 percentage points (exact over whole 120-query cycles when no other query
    // shares the counter).
    let share = firsts["127.0.0.3"] as f64 / n as f64;
    assert!((share - 0.75).abs() < 0.03, "{firsts:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn priority_falls_through_to_the_next_tier() {
    let mut backends = HttpBackend::start_same_port(&["127.0.0.2", "127.0.0.3"]).await;
    let port = backends[0].addr.port();
    let pool = format!(
        "[[pool]]\nname = \"db.p.example.\"\npolicy = \"priority\"\nmin_healthy = 1\n\
         backends = [\"127.0.0.2\", {{ address = \"127.0.0.3\", tier = 2 }}]\n\
         probe = {{ kind = \"tcp\", port = {port}, interval = \"200ms\", timeout = \"200ms\", jitter = \"0s\", fall = 1 }}\n"
    );
    let s = TestServer::start(&config(&pool), &[("p.zone", ZONE)]).await;
    for _ in 0..5 {
        assert_eq!(
            addrs(&ask(s.udp, "db.p.example.", RecordType::A)),
            vec!["127.0.0.2"]
        );
    }
    backends[0].kill().await;
    let start = std::time::Instant::now();
    while addrs(&ask(s.udp, "db.p.example.", RecordType::A)) != vec!["127.0.0.3"] {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(3),
            "tier 2 not used"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    s.stop().await;
}

/// Every config in examples/ and zones/ loads and its zones check out.
#[test]
fn every_example_config_loads() {
    let mut seen = 0;
    for dir in ["zones", "examples"] {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let config =
                    Config::load(&path).unwrap_or_else(|e| panic!("{}:\n{e}", path.display()));
                if let Err(e) = lbns::control::check(config) {
                    panic!("{}:\n{e}", path.display());
                }
                seen += 1;
            }
        }
    }
    assert!(seen >= 4, "only {seen} example configs found");
}

/// Every ```toml block in the docs parses as a config (pool snippets get the example zone).
#[test]
fn every_toml_block_in_the_docs_parses() {
    let mut blocks = 0;
    for doc in ["README.md", "docs/config.md"] {
        let text = std::fs::read_to_string(doc).unwrap();
        for block in text.split("```toml\n").skip(1) {
            let body = block.split("```").next().unwrap();
            let mut config = body.to_owned();
            if !body.contains("[[zone]]") {
                config = format!(
                    "[[zone]]\norigin = \"cluster.example.\"\nfile = \"zones/cluster.example.zone\"\n{body}"
                );
            }
            Config::parse(&config, Path::new("doc.toml"))
                .unwrap_or_else(|e| panic!("{doc}: block\n{body}\n{e}"));
            blocks += 1;
        }
    }
    assert!(blocks >= 3, "{blocks}");
}
