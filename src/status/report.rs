//! The status report: one serializable picture of pools, backends and query counters. The HTML
//! page and `/status.json` are rendered from it, and `lbns status` reads the JSON back into it
//! to print a table, so the three always show the same fields.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::listing::{Listing, StateFilter, Trouble, Window};
use super::view::{BackendView, PoolView, Selected};
use crate::metrics::Metrics;
use crate::monitor::PeerStatus;

/// Everything the status page shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// lbns version serving.
    pub(crate) version: String,
    /// The published snapshot's generation: it grows with every reload, health flip, drain.
    pub(crate) generation: u64,
    pub(crate) uptime_seconds: f64,
    /// The config file `lbns reload` reads.
    pub config: String,
    /// Query counters since start.
    pub queries: Queries,
    /// Counts over every pool, whichever are listed.
    #[serde(default)]
    pub(crate) fleet: Fleet,
    /// The search and page `pools` is, when one was asked for (`/?q=…&page=N`); absent when
    /// `pools` is every pool in the config's order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) listing: Option<PageReport>,
    /// Every pool, in the config's order; or, with `listing`, the pools of that page.
    pub pools: Vec<PoolReport>,
    /// The peers (`[cluster]`), in the config's order; empty without.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<PeerReport>,
}

/// Query counters since start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Queries {
    /// Queries received over UDP, AF_XDP included.
    pub udp: u64,
    pub(crate) tcp: u64,
    /// Received but not answered (responses, runts).
    pub(crate) dropped: u64,
    /// UDP answers sent with TC=1.
    pub(crate) truncated: u64,
    /// Answers by rcode name, only those seen.
    pub rcodes: BTreeMap<String, u64>,
    /// Queries by type name (`other` for the rest), only those seen.
    pub(crate) qtypes: BTreeMap<String, u64>,
}

/// Counts over the whole fleet: what the page's cards show, and what its filters find.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Fleet {
    pub(crate) pools: usize,
    /// Pools with no usable backend in a family (IPv4 or IPv6).
    pub(crate) pools_all_down: usize,
    /// Pools with a backend out of answers for any reason but a drain (all down included).
    pub(crate) pools_down: usize,
    /// Pools with a drained backend.
    pub(crate) pools_drained: usize,
    pub(crate) backends: usize,
    /// Backends out of answers other than drained ones: down, not yet probed, stale.
    pub(crate) backends_out: usize,
    pub(crate) backends_drained: usize,
}

impl Fleet {
    /// Adds one pool of `backends` backends and its trouble.
    pub(crate) fn count(&mut self, t: Trouble, backends: usize) {
        self.pools += 1;
        self.pools_all_down += usize::from(t.all_down);
        self.pools_down += usize::from(t.all_down || t.out > 0);
        self.pools_drained += usize::from(t.drained > 0);
        self.backends += backends;
        self.backends_out += t.out;
        self.backends_drained += t.drained;
    }
}

/// Which part of the fleet a report lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PageReport {
    /// The search, as given.
    pub(crate) q: String,
    /// The state filter (`all`, `problems`, `down`, `all-down`, `drained`).
    pub(crate) state: StateFilter,
    /// This page, from 1, of `pages`.
    pub(crate) page: usize,
    pub(crate) pages: usize,
    /// Pools per page.
    pub(crate) per: usize,
    /// Pools found and admitted by the filter, on all pages.
    pub(crate) matched: usize,
}

impl PageReport {
    pub(crate) fn new(l: &Listing, w: &Window) -> PageReport {
        PageReport {
            q: l.q.clone(),
            state: l.state,
            page: w.page,
            pages: w.pages,
            per: l.per,
            matched: w.matched,
        }
    }
}

/// One pool: its settings in force, its answers and its backends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolReport {
    /// The pool's name, absolute (`www.cluster.example.`).
    pub name: String,
    pub(crate) policy: String,
    /// The TTL of answers while no backend is in doubt (with `failover`, derived from it).
    pub(crate) ttl: u32,
    /// The TTL IPv4 (IPv6) answers carry now (adaptive with `failover`).
    #[serde(default)]
    pub(crate) ttl_v4: u32,
    #[serde(default)]
    pub(crate) ttl_v6: u32,
    /// The promised failover time in seconds, if the pool has one.
    #[serde(default)]
    pub(crate) failover_seconds: Option<f64>,
    /// No IPv4 (IPv6) backend is usable: answers follow the pool's `all_down` policy.
    pub(crate) all_down_v4: bool,
    pub(crate) all_down_v6: bool,
    /// A/AAAA answers served for this pool (not the `answers` cap of the config).
    pub served: u64,
    /// Every backend, in the pool's config order.
    pub backends: Vec<BackendReport>,
}

/// One backend: health, drain, load and its latest probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendReport {
    /// The backend's name in its pool (its address unless the config names it).
    pub name: String,
    pub(crate) address: String,
    /// How it is probed, e.g. `tcp:80`, `http http://…`, `none`.
    pub probe: String,
    /// Health: `up`, `down` or `unknown`.
    pub state: String,
    /// In answers now: up, fresh and not drained.
    pub usable: bool,
    /// Taken out of answers by `lbns drain`; kept across restarts until `lbns undrain`.
    pub drained: bool,
    /// Last load the backend reported, if its probe reports one.
    pub load: Option<f64>,
    pub(crate) last_probe_age_seconds: Option<f64>,
    /// Last probe's result text (`200 OK`, `connection refused`, …).
    pub last_result: Option<String>,
    pub(crate) last_ok: Option<bool>,
    pub(crate) latency_seconds: Option<f64>,
    pub(crate) flips: u64,
    pub(crate) probes_ok: u64,
    pub(crate) probes_failed: u64,
    /// With peers: each peer's view of the backend (`up`, `down`, `stale`, `-`), in the order
    /// of the report's `peers`; `usable` is the verdict of the quorum.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) peer_views: Vec<String>,
}

/// One peer of the cluster, as this instance hears it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerReport {
    /// Its `[cluster] listen` address.
    pub address: String,
    /// Seconds since its last message was taken; none yet: `null`.
    pub last_heard_seconds: Option<f64>,
    /// Messages taken from it.
    pub received: u64,
    /// Datagrams from it refused (forged, malformed, replayed, stale, oversized, too many).
    pub rejected: u64,
}

impl PeerReport {
    fn new(p: &PeerStatus) -> PeerReport {
        PeerReport {
            address: p.address.to_string(),
            last_heard_seconds: p.last_heard.map(|d| d.as_secs_f64()),
            received: p.received,
            rejected: p.rejected,
        }
    }
}

impl Report {
    /// Builds the report from the pools selected (by `listing`, if any), the peers and the
    /// query counters.
    pub(crate) fn new(
        selected: &Selected,
        listing: Option<&Listing>,
        peers: &[PeerStatus],
        metrics: &Metrics,
        uptime: Duration,
        config: &std::path::Path,
    ) -> Report {
        Report {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            generation: selected.generation,
            uptime_seconds: uptime.as_secs_f64(),
            config: config.display().to_string(),
            queries: Queries {
                udp: metrics.udp_queries.load(Ordering::Relaxed),
                tcp: metrics.tcp_queries.load(Ordering::Relaxed),
                dropped: metrics.dropped.load(Ordering::Relaxed),
                truncated: metrics.truncated.load(Ordering::Relaxed),
                rcodes: metrics.rcode_counts().into_iter().collect(),
                qtypes: metrics.qtype_counts().into_iter().collect(),
            },
            fleet: selected.fleet.clone(),
            listing: listing.map(|l| PageReport::new(l, &selected.window)),
            pools: selected.pools.iter().map(PoolReport::new).collect(),
            peers: peers.iter().map(PeerReport::new).collect(),
        }
    }

    /// A plain-text table for `lbns status`.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let q = &self.queries;
        let _ = writeln!(
            out,
            "lbns {}  generation {}  up {}  config {}",
            self.version,
            self.generation,
            age(self.uptime_seconds),
            self.config
        );
        let _ = writeln!(
            out,
            "queries: udp {}  tcp {}  dropped {}  truncated {}",
            q.udp, q.tcp, q.dropped, q.truncated
        );
        let counts = |m: &BTreeMap<String, u64>| {
            if m.is_empty() {
                return "-".to_owned();
            }
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join("  ")
        };
        let _ = writeln!(out, "rcodes: {}", counts(&q.rcodes));
        let _ = writeln!(out, "qtypes: {}", counts(&q.qtypes));
        for peer in &self.peers {
            let _ = writeln!(
                out,
                "peer {}: heard {}  taken {}  refused {}",
                peer.address,
                peer.last_heard_seconds
                    .map_or("never".to_owned(), |s| format!("{} ago", age(s))),
                peer.received,
                peer.rejected
            );
        }
        for p in &self.pools {
            let _ = writeln!(
                out,
                "\npool {}  policy {}  ttl {}{}  served {}{}",
                p.name,
                p.policy,
                p.ttl_now(),
                p.failover_seconds
                    .map_or(String::new(), |f| format!("  failover {f}s")),
                p.served,
                p.all_down_note()
                    .map_or(String::new(), |n| format!("  ALL DOWN: {n}"))
            );
            // The probe's result text is the one long, ragged column: it goes last.
            let mut rows = vec![
                [
                    "BACKEND",
                    "ADDRESS",
                    "STATE",
                    "IN ANSWERS",
                    "LOAD",
                    "LATENCY",
                    "FLIPS",
                    "PEERS",
                    "PROBE",
                    "LAST PROBE",
                ]
                .map(String::from)
                .to_vec(),
            ];
            for b in &p.backends {
                rows.push(vec![
                    b.name.clone(),
                    b.address.clone(),
                    b.state.clone(),
                    b.in_answers().to_owned(),
                    b.load.map_or("-".to_owned(), |l| format!("{l:.2}")),
                    b.latency_seconds.map_or("-".to_owned(), millis),
                    b.flips.to_string(),
                    if b.peer_views.is_empty() {
                        "-".to_owned()
                    } else {
                        b.peer_views.join(",")
                    },
                    b.probe.clone(),
                    b.last_probe(),
                ]);
            }
            if self.peers.is_empty() {
                // Without peers the column says nothing.
                for row in &mut rows {
                    row.remove(7);
                }
            }
            table(&mut out, &rows);
        }
        out
    }
}

impl PoolReport {
    fn new(p: &PoolView) -> PoolReport {
        PoolReport {
            name: p.name.clone(),
            policy: p.policy.clone(),
            ttl: p.ttl,
            ttl_v4: p.ttl_v4,
            ttl_v6: p.ttl_v6,
            failover_seconds: p.failover.map(|f| f.as_secs_f64()),
            all_down_v4: p.all_down_v4,
            all_down_v6: p.all_down_v6,
            served: p.served,
            backends: p.backends.iter().map(BackendReport::new).collect(),
        }
    }

    /// The TTL answers carry now: one number, or IPv4/IPv6 when they differ.
    pub(crate) fn ttl_now(&self) -> String {
        if self.ttl_v4 == self.ttl_v6 {
            self.ttl_v4.to_string()
        } else {
            format!("{}/{}", self.ttl_v4, self.ttl_v6)
        }
    }

    /// Which families are all down, if any: `IPv4`, `IPv6` or both.
    pub(crate) fn all_down_note(&self) -> Option<&'static str> {
        match (self.all_down_v4, self.all_down_v6) {
            (true, true) => Some("IPv4 and IPv6"),
            (true, false) => Some("IPv4"),
            (false, true) => Some("IPv6"),
            (false, false) => None,
        }
    }
}

impl BackendReport {
    fn new(b: &BackendView) -> BackendReport {
        BackendReport {
            name: b.name.clone(),
            address: b.address.to_string(),
            probe: b.probe.clone(),
            state: b.state.as_str().to_owned(),
            usable: b.usable,
            drained: b.drained,
            load: b.load,
            last_probe_age_seconds: b.last_probe_age.map(|d| d.as_secs_f64()),
            last_result: b.last_result.clone(),
            last_ok: b.last_ok,
            latency_seconds: b.last_latency.map(|d| d.as_secs_f64()),
            flips: b.flips,
            probes_ok: b.probes.ok,
            probes_failed: b.probes.failed,
            peer_views: b.peer_views.clone(),
        }
    }

    /// `yes`, `no`, or `drained` (which says why better than `no`).
    pub(crate) fn in_answers(&self) -> &'static str {
        match (self.usable, self.drained) {
            (_, true) => "drained",
            (true, false) => "yes",
            (false, false) => "no",
        }
    }

    /// `1.2s ago: ok 200 OK`, or `-` when never probed.
    pub(crate) fn last_probe(&self) -> String {
        match (self.last_probe_age_seconds, &self.last_ok) {
            (Some(a), Some(ok)) => format!(
                "{} ago: {}{}",
                age(a),
                if *ok { "ok" } else { "FAILED" },
                self.last_result
                    .as_deref()
                    .filter(|r| !r.is_empty())
                    .map_or(String::new(), |r| format!(" {r}"))
            ),
            _ => "-".to_owned(),
        }
    }
}

/// A duration in seconds as `850ms`, `12.3s`, `4m05s`, `2h03m`, `3d04h`.
pub(crate) fn age(secs: f64) -> String {
    let s = secs.max(0.0);
    if s < 1.0 {
        format!("{}ms", (s * 1000.0).round() as u64)
    } else if s < 60.0 {
        format!("{s:.1}s")
    } else {
        let whole = s as u64;
        let (d, h, m, sec) = (
            whole / 86400,
            whole / 3600 % 24,
            whole / 60 % 60,
            whole % 60,
        );
        if d > 0 {
            format!("{d}d{h:02}h")
        } else if h > 0 {
            format!("{h}h{m:02}m")
        } else {
            format!("{m}m{sec:02}s")
        }
    }
}

/// Seconds as milliseconds with a useful precision: `0.21ms`, `3.4ms`, `120ms`.
pub(crate) fn millis(secs: f64) -> String {
    let ms = secs * 1000.0;
    if ms < 1.0 {
        format!("{ms:.2}ms")
    } else if ms < 10.0 {
        format!("{ms:.1}ms")
    } else {
        format!("{ms:.0}ms")
    }
}

/// Appends `rows` as left-aligned columns two spaces apart, indented by two.
fn table(out: &mut String, rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let mut line = String::from(" ");
        for (c, cell) in row.iter().enumerate() {
            line.push(' ');
            line.push_str(cell);
            if c + 1 < row.len() {
                let pad = widths[c] - cell.chars().count() + 1;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn backend(name: &str, state: &str, usable: bool, drained: bool) -> BackendReport {
        BackendReport {
            name: name.into(),
            address: "127.0.0.2".into(),
            probe: "tcp:80".into(),
            state: state.into(),
            usable,
            drained,
            load: Some(0.5),
            last_probe_age_seconds: Some(0.25),
            last_result: Some("connected".into()),
            last_ok: Some(true),
            latency_seconds: Some(0.0004),
            flips: 1,
            probes_ok: 3,
            probes_failed: 0,
            peer_views: Vec::new(),
        }
    }

    pub(crate) fn sample() -> Report {
        Report {
            version: "0.1.0".into(),
            generation: 7,
            uptime_seconds: 3725.0,
            config: "/etc/lbns/lbns.toml".into(),
            queries: Queries {
                udp: 10,
                tcp: 2,
                dropped: 0,
                truncated: 1,
                rcodes: [("NOERROR".to_owned(), 11), ("NXDOMAIN".to_owned(), 1)].into(),
                qtypes: [("A".to_owned(), 12)].into(),
            },
            peers: Vec::new(),
            fleet: Fleet {
                pools: 1,
                pools_all_down: 1,
                pools_down: 1,
                pools_drained: 1,
                backends: 2,
                backends_out: 0,
                backends_drained: 1,
            },
            listing: None,
            pools: vec![PoolReport {
                name: "www.example.".into(),
                policy: "round-robin".into(),
                ttl: 5,
                ttl_v4: 5,
                ttl_v6: 5,
                failover_seconds: None,
                all_down_v4: false,
                all_down_v6: true,
                served: 12,
                backends: vec![
                    backend("web1", "up", true, false),
                    backend("web-two", "up", false, true),
                ],
            }],
        }
    }

    #[test]
    fn text_table_lines_up() {
        let text = sample().to_text();
        assert!(
            text.starts_with("lbns 0.1.0  generation 7  up 1h02m  config /etc/lbns/lbns.toml\n"),
            "{text}"
        );
        assert!(text.contains("rcodes: NOERROR 11  NXDOMAIN 1\n"), "{text}");
        assert!(
            text.contains(
                "pool www.example.  policy round-robin  ttl 5  served 12  ALL DOWN: IPv6"
            ),
            "{text}"
        );
        let lines: Vec<&str> = text.lines().collect();
        let header = lines.iter().position(|l| l.contains("BACKEND")).unwrap();
        let col = lines[header].find("STATE").unwrap();
        assert_eq!(&lines[header + 1][col..col + 2], "up", "{text}");
        assert!(lines[header + 2].contains("drained"), "{text}");
        assert!(
            lines[header + 1].contains("250ms ago: ok connected"),
            "{text}"
        );
        assert!(lines[header + 1].contains("0.40ms"), "{text}");
    }

    #[test]
    fn json_round_trips() {
        let r = sample();
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Report>(&text).unwrap(), r);
        // A page of a search, with its place in the listing.
        let mut r = sample();
        r.listing = Some(PageReport {
            q: "www".into(),
            state: StateFilter::AllDown,
            page: 2,
            pages: 3,
            per: 10,
            matched: 25,
        });
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.contains("\"state\":\"all-down\""), "{text}");
        assert_eq!(serde_json::from_str::<Report>(&text).unwrap(), r);
    }

    #[test]
    fn ages_read_naturally() {
        assert_eq!(age(0.0123), "12ms");
        assert_eq!(age(12.34), "12.3s");
        assert_eq!(age(245.0), "4m05s");
        assert_eq!(age(7380.0), "2h03m");
        assert_eq!(age(273600.0), "3d04h");
        assert_eq!(millis(0.00021), "0.21ms");
        assert_eq!(millis(0.0034), "3.4ms");
        assert_eq!(millis(0.12), "120ms");
    }
}
