//! `/metrics`: the Prometheus text exposition format, version 0.0.4.
//!
//! Written by hand rather than through a metrics crate: the counters already live in
//! [`Metrics`] and the monitor, so rendering is one pass over them at scrape time and the query
//! path pays nothing extra.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use super::view::{BackendView, PoolView};
use crate::domain::HealthState;
use crate::metrics::{Metrics, QTYPES, rcode_name};
use crate::monitor::PeerStatus;
use crate::monitor::health::LATENCY_BUCKETS;

/// The Content-Type of this format.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Rcodes always exported (at 0 until seen), so dashboards have every series from the start.
const COMMON_RCODES: [u16; 6] = [0, 1, 2, 3, 4, 5];

/// Renders every metric; the per-backend families (`lbns_backend_*`, `lbns_probe_*`) only
/// with `per_backend` (`[status] metrics_per_backend`): with 10,000 backends they are
/// megabytes a scrape, and the per-pool families still say which pools are in trouble.
pub(crate) fn render(
    pools: &[PoolView],
    peers: &[PeerStatus],
    metrics: &Metrics,
    generation: u64,
    started: SystemTime,
    per_backend: bool,
) -> String {
    let mut w = Writer::default();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);

    w.family(
        "lbns_build_info",
        "gauge",
        "Always 1; the version label says which lbns is running.",
    );
    w.sample(
        "lbns_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    w.family(
        "lbns_start_time_seconds",
        "gauge",
        "When this lbns started, in seconds since the Unix epoch.",
    );
    let start = started
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    w.sample("lbns_start_time_seconds", &[], start);
    w.family(
        "lbns_snapshot_generation",
        "gauge",
        "Generation of the published snapshot; grows with every reload, health flip and drain.",
    );
    w.sample("lbns_snapshot_generation", &[], generation as f64);

    w.family(
        "lbns_queries_total",
        "counter",
        "DNS queries received, by transport.",
    );
    for (t, c) in [("udp", &metrics.udp_queries), ("tcp", &metrics.tcp_queries)] {
        w.sample("lbns_queries_total", &[("transport", t)], load(c) as f64);
    }
    w.family(
        "lbns_responses_total",
        "counter",
        "DNS responses sent, by rcode.",
    );
    for (i, c) in metrics.rcodes.iter().enumerate() {
        let n = load(c);
        if n > 0 || COMMON_RCODES.contains(&(i as u16)) {
            let rcode = rcode_name(i as u16);
            w.sample("lbns_responses_total", &[("rcode", &rcode)], n as f64);
        }
    }
    w.family(
        "lbns_queries_by_qtype_total",
        "counter",
        "DNS queries answered, by query type (other: any type not listed).",
    );
    for (i, c) in metrics.qtypes.iter().enumerate() {
        let qtype = QTYPES.get(i).map_or("other".to_owned(), |t| t.to_string());
        w.sample(
            "lbns_queries_by_qtype_total",
            &[("qtype", &qtype)],
            load(c) as f64,
        );
    }
    w.family(
        "lbns_dropped_total",
        "counter",
        "Messages received and not answered (responses, runts).",
    );
    w.sample("lbns_dropped_total", &[], load(&metrics.dropped) as f64);
    w.family(
        "lbns_truncated_total",
        "counter",
        "UDP responses sent truncated (TC=1).",
    );
    w.sample("lbns_truncated_total", &[], load(&metrics.truncated) as f64);
    w.family(
        "lbns_udp_fast_path_total",
        "counter",
        "UDP answers served by the fast path without the full handler.",
    );
    w.sample(
        "lbns_udp_fast_path_total",
        &[],
        load(&metrics.fast_path) as f64,
    );
    for (name, help, c) in [
        (
            "lbns_rrl_limited_total",
            "UDP responses over the [rrl] rate limit (slipped, dropped, or sent under log_only).",
            &metrics.rrl_limited,
        ),
        (
            "lbns_rrl_slipped_total",
            "Rate-limited UDP responses sent empty with TC=1, or BADCOOKIE to a client with a cookie.",
            &metrics.rrl_slipped,
        ),
        (
            "lbns_rrl_dropped_total",
            "Rate-limited UDP responses not sent.",
            &metrics.rrl_dropped,
        ),
    ] {
        w.family(name, "counter", help);
        w.sample(name, &[], load(c) as f64);
    }
    w.family(
        "lbns_udp_xdp_total",
        "counter",
        "UDP queries taken through AF_XDP ([server] xdp) instead of a UDP socket.",
    );
    w.sample("lbns_udp_xdp_total", &[], load(&metrics.xdp_queries) as f64);
    w.family(
        "lbns_udp_xdp_dropped_total",
        "counter",
        "Datagrams the kernel dropped at the AF_XDP sockets before lbns took them (rings full; read at most once a second).",
    );
    w.sample(
        "lbns_udp_xdp_dropped_total",
        &[],
        load(&metrics.xdp_dropped) as f64,
    );

    w.family(
        "lbns_pool_answers_total",
        "counter",
        "A/AAAA answers given for a pool.",
    );
    for p in pools {
        w.sample(
            "lbns_pool_answers_total",
            &[("pool", &p.name)],
            p.served as f64,
        );
    }
    if !peers.is_empty() {
        w.family(
            "lbns_cluster_peer_messages_total",
            "counter",
            "Messages from a peer taken, and datagrams from it refused (forged, malformed, replayed, stale, oversized, too many).",
        );
        for p in peers {
            let peer = p.address.to_string();
            for (result, n) in [("taken", p.received), ("refused", p.rejected)] {
                w.sample(
                    "lbns_cluster_peer_messages_total",
                    &[("peer", &peer), ("result", result)],
                    n as f64,
                );
            }
        }
        w.family(
            "lbns_cluster_peer_last_heard_seconds",
            "gauge",
            "Seconds since a peer's last message was taken (absent until one is).",
        );
        for p in peers {
            if let Some(d) = p.last_heard {
                w.sample(
                    "lbns_cluster_peer_last_heard_seconds",
                    &[("peer", &p.address.to_string())],
                    d.as_secs_f64(),
                );
            }
        }
    }
    w.family(
        "lbns_pool_ttl_seconds",
        "gauge",
        "The TTL a pool's answers of the family carry now (adaptive with failover).",
    );
    for p in pools {
        for (family, ttl) in [("ipv4", p.ttl_v4), ("ipv6", p.ttl_v6)] {
            w.sample(
                "lbns_pool_ttl_seconds",
                &[("pool", &p.name), ("family", family)],
                f64::from(ttl),
            );
        }
    }
    w.family(
        "lbns_pool_all_down",
        "gauge",
        "1 when no backend of the family is usable and the all_down policy answers.",
    );
    for p in pools {
        for (family, down) in [("ipv4", p.all_down_v4), ("ipv6", p.all_down_v6)] {
            w.sample(
                "lbns_pool_all_down",
                &[("pool", &p.name), ("family", family)],
                bool_value(down),
            );
        }
    }
    if per_backend {
        backend_families(&mut w, pools);
    }
    w.0
}

/// The series of each backend: health, drain, load, and its probes.
fn backend_families(w: &mut Writer, pools: &[PoolView]) {
    let backends = || {
        pools
            .iter()
            .flat_map(|p| p.backends.iter().map(move |b| (p.name.as_str(), b)))
    };
    // Probe series only for probed backends: for `kind = "none"` they would be empty noise.
    let probed = || backends().filter(|(_, b)| b.probe != "none");
    type Value = fn(&BackendView) -> Option<f64>;
    let per_backend: [(&str, &str, &str, bool, Value); 8] = [
        (
            "lbns_backend_up",
            "gauge",
            "1 when the backend's health is up (probes pass, or it is not probed).",
            false,
            |b| Some(bool_value(b.state == HealthState::Up)),
        ),
        (
            "lbns_backend_usable",
            "gauge",
            "1 when the backend is in answers: up, fresh and not drained.",
            false,
            |b| Some(bool_value(b.usable)),
        ),
        (
            "lbns_backend_drained",
            "gauge",
            "1 when an operator drained the backend.",
            false,
            |b| Some(bool_value(b.drained)),
        ),
        (
            "lbns_backend_load",
            "gauge",
            "Load last reported by the backend (lbcd or an HTTP load header).",
            false,
            |b| b.load,
        ),
        (
            "lbns_backend_flips_total",
            "counter",
            "Health changes (up to down and back) of the backend.",
            false,
            |b| Some(b.flips as f64),
        ),
        (
            "lbns_probe_success",
            "gauge",
            "1 when the backend's last probe succeeded.",
            true,
            |b| b.last_ok.map(bool_value),
        ),
        (
            "lbns_probe_latency_seconds",
            "gauge",
            "Duration of the backend's last probe.",
            true,
            |b| b.last_latency.map(|d| d.as_secs_f64()),
        ),
        (
            "lbns_probe_age_seconds",
            "gauge",
            "Time since the backend's last probe finished.",
            true,
            |b| b.last_probe_age.map(|d| d.as_secs_f64()),
        ),
    ];
    for (name, kind, help, probes_only, value) in per_backend {
        w.family(name, kind, help);
        for (pool, b) in backends() {
            if probes_only && b.probe == "none" {
                continue;
            }
            if let Some(v) = value(b) {
                w.sample(name, &[("pool", pool), ("backend", &b.name)], v);
            }
        }
    }
    w.family(
        "lbns_probe_results_total",
        "counter",
        "Probe results of the backend, by result.",
    );
    for (pool, b) in probed() {
        for (result, n) in [("ok", b.probes.ok), ("fail", b.probes.failed)] {
            w.sample(
                "lbns_probe_results_total",
                &[("pool", pool), ("backend", &b.name), ("result", result)],
                n as f64,
            );
        }
    }
    w.family(
        "lbns_probe_duration_seconds",
        "histogram",
        "Probe durations of the backend.",
    );
    for (pool, b) in probed() {
        let mut cumulative = 0;
        for (bound, n) in LATENCY_BUCKETS.iter().zip(b.probes.buckets) {
            cumulative += n;
            w.sample(
                "lbns_probe_duration_seconds_bucket",
                &[("pool", pool), ("backend", &b.name), ("le", &float(*bound))],
                cumulative as f64,
            );
        }
        let labels = [("pool", pool), ("backend", b.name.as_str())];
        w.sample(
            "lbns_probe_duration_seconds_bucket",
            &[labels[0], labels[1], ("le", "+Inf")],
            b.probes.count() as f64,
        );
        w.sample(
            "lbns_probe_duration_seconds_sum",
            &labels,
            b.probes.latency_sum.as_secs_f64(),
        );
        w.sample(
            "lbns_probe_duration_seconds_count",
            &labels,
            b.probes.count() as f64,
        );
    }
}

/// Accumulates exposition lines.
#[derive(Default)]
struct Writer(String);

impl Writer {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape_label(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {}", float(value));
    }
}

/// Label values escape backslash, double quote and newline (exposition format 0.0.4).
fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// HELP text escapes backslash and newline only.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

fn bool_value(b: bool) -> f64 {
    f64::from(u8::from(b))
}

/// A sample value as Prometheus parses it (`+Inf`, `-Inf`, `NaN` spelled its way).
fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::monitor::health::ProbeStats;

    fn pools() -> Vec<PoolView> {
        let mut probes = ProbeStats {
            ok: 3,
            failed: 1,
            ..ProbeStats::default()
        };
        probes.buckets[0] = 2;
        probes.buckets[3] = 1;
        probes.latency_sum = Duration::from_millis(12);
        let backend = |name: &str, probe: &str| BackendView {
            name: name.into(),
            address: "127.0.0.2".parse().unwrap(),
            probe: probe.into(),
            state: HealthState::Up,
            usable: true,
            drained: false,
            load: None,
            last_probe_age: Some(Duration::from_millis(300)),
            last_result: Some("ok".into()),
            last_ok: Some(true),
            last_latency: Some(Duration::from_micros(250)),
            flips: 2,
            probes: probes.clone(),
            peer_views: Vec::new(),
        };
        vec![PoolView {
            name: "www.example.".into(),
            policy: "round-robin".into(),
            ttl: 5,
            ttl_v4: 5,
            ttl_v6: 2,
            failover: Some(std::time::Duration::from_secs(5)),
            all_down_v4: false,
            all_down_v6: true,
            served: 42,
            backends: vec![backend("web\"1\\\n", "tcp:80"), backend("static", "none")],
        }]
    }

    #[test]
    fn exposition_has_every_family_and_escapes_labels() {
        let m = Metrics::default();
        m.udp_queries.store(5, Ordering::Relaxed);
        m.rcodes[3].store(2, Ordering::Relaxed);
        m.rcodes[16].store(1, Ordering::Relaxed);
        let peers = [PeerStatus {
            address: "127.0.0.54:8055".parse().unwrap(),
            last_heard: Some(Duration::from_millis(250)),
            received: 40,
            rejected: 2,
        }];
        let text = render(&pools(), &peers, &m, 9, SystemTime::UNIX_EPOCH, true);
        for line in [
            "lbns_queries_total{transport=\"udp\"} 5",
            "lbns_responses_total{rcode=\"NXDOMAIN\"} 2",
            "lbns_responses_total{rcode=\"NOERROR\"} 0",
            "lbns_responses_total{rcode=\"BADVERS\"} 1",
            "lbns_queries_by_qtype_total{qtype=\"other\"} 0",
            "lbns_snapshot_generation 9",
            "lbns_pool_answers_total{pool=\"www.example.\"} 42",
            "lbns_pool_ttl_seconds{pool=\"www.example.\",family=\"ipv6\"} 2",
            "lbns_cluster_peer_messages_total{peer=\"127.0.0.54:8055\",result=\"refused\"} 2",
            "lbns_cluster_peer_last_heard_seconds{peer=\"127.0.0.54:8055\"} 0.25",
            "lbns_pool_all_down{pool=\"www.example.\",family=\"ipv6\"} 1",
            "lbns_backend_up{pool=\"www.example.\",backend=\"web\\\"1\\\\\\n\"} 1",
            "lbns_backend_up{pool=\"www.example.\",backend=\"static\"} 1",
            "lbns_backend_flips_total{pool=\"www.example.\",backend=\"static\"} 2",
            "lbns_probe_results_total{pool=\"www.example.\",backend=\"web\\\"1\\\\\\n\",result=\"fail\"} 1",
            "lbns_probe_latency_seconds{pool=\"www.example.\",backend=\"web\\\"1\\\\\\n\"} 0.00025",
            "lbns_probe_duration_seconds_bucket{pool=\"www.example.\",backend=\"web\\\"1\\\\\\n\",le=\"0.0005\"} 2",
            "lbns_probe_duration_seconds_bucket{pool=\"www.example.\",backend=\"web\\\"1\\\\\\n\",le=\"0.005\"} 3",
            "lbns_probe_duration_seconds_bucket{pool=\"www.example.\",backend=\"web\\\"1\\\\\\n\",le=\"+Inf\"} 4",
            "lbns_probe_duration_seconds_sum{pool=\"www.example.\",backend=\"web\\\"1\\\\\\n\"} 0.012",
            "# TYPE lbns_probe_duration_seconds histogram",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
        // The unprobed backend has no probe series.
        assert!(
            !text.contains("lbns_probe_results_total{pool=\"www.example.\",backend=\"static\"")
        );
        // The 0.0.4 grammar: every line is a comment or `name{labels} value`, and every
        // family has HELP and TYPE once.
        for line in text.lines() {
            if line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap();
            assert!(value == "+Inf" || value.parse::<f64>().is_ok(), "{line}");
            let name = series.split('{').next().unwrap();
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{line}"
            );
        }
        let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
        assert_eq!(types, helps);
        // Each family's samples form one group right after its TYPE line.
        let mut current = "";
        let mut seen = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                current = rest.split(' ').next().unwrap();
                assert!(seen.insert(current), "{current} twice");
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|b| *b == current))
                    .unwrap_or(name);
                assert_eq!(base, current, "{line} outside its group");
            }
        }
    }

    #[test]
    fn per_backend_families_can_be_left_out() {
        let m = Metrics::default();
        let with = render(&pools(), &[], &m, 9, SystemTime::UNIX_EPOCH, true);
        let without = render(&pools(), &[], &m, 9, SystemTime::UNIX_EPOCH, false);
        let families = |text: &str| -> Vec<String> {
            text.lines()
                .filter_map(|l| l.strip_prefix("# TYPE "))
                .map(|l| l.split(' ').next().unwrap().to_owned())
                .collect()
        };
        let (all, kept) = (families(&with), families(&without));
        let gone: Vec<&String> = all.iter().filter(|f| !kept.contains(f)).collect();
        assert_eq!(
            gone,
            [
                "lbns_backend_up",
                "lbns_backend_usable",
                "lbns_backend_drained",
                "lbns_backend_load",
                "lbns_backend_flips_total",
                "lbns_probe_success",
                "lbns_probe_latency_seconds",
                "lbns_probe_age_seconds",
                "lbns_probe_results_total",
                "lbns_probe_duration_seconds",
            ]
        );
        // Nothing names a backend any more; the pool and global families are all there.
        assert!(!without.contains("backend=\""), "{without}");
        assert!(kept.iter().all(|f| all.contains(f)));
        for line in [
            "lbns_pool_answers_total{pool=\"www.example.\"} 42",
            "lbns_pool_all_down{pool=\"www.example.\",family=\"ipv6\"} 1",
            "lbns_snapshot_generation 9",
        ] {
            assert!(
                without.lines().any(|l| l == line),
                "missing {line}\n{without}"
            );
        }
    }

    #[test]
    fn special_floats_are_spelled_for_prometheus() {
        assert_eq!(float(f64::NAN), "NaN");
        assert_eq!(float(f64::INFINITY), "+Inf");
        assert_eq!(float(0.25), "0.25");
        assert_eq!(float(3.0), "3");
    }
}
