//! Pool settings after validation: selection policy, all-down policy, probes, and the failover
//! bound that ties probe timing to the pool TTL.

use std::fmt;
use std::net::IpAddr;
use std::ops::Range;
use std::time::Duration;

use super::Cx;
use super::raw::RawProbe;

/// Default probe timing. With the default pool TTL of 5 s the worst-case detection is
/// 1 s × 2 + 1 s + 0.2 s = 3.2 s, inside one TTL.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_JITTER: Duration = Duration::from_millis(200);
pub const DEFAULT_RISE: u32 = 2;
pub const DEFAULT_FALL: u32 = 2;
pub const DEFAULT_ALL_DOWN_TTL: u32 = 1;
pub const DEFAULT_HTTP_MAX_BODY: usize = 64 * 1024;
pub const DEFAULT_LBCD_PORT: u16 = 4330;

/// How a pool orders its healthy backends (see docs/config.md).
#[derive(Debug, Clone, PartialEq)]
pub enum Policy {
    /// Rotation per query (DNS round robin).
    RoundRobin,
    /// A random order per query.
    Random,
    /// mod_backhand byLoad: least reported load first, ties rotated.
    LeastLoaded,
    /// Weighted choice by configured weight, optionally divided by (1 + load).
    Weighted { scale_by_load: bool },
    /// gdnsd multifo/metafo: the first tier alone while `min_healthy` of it are up.
    Priority { min_healthy: usize },
    /// lbnamed: the single least-loaded host, its increment added after each answer.
    Best,
}

/// As written in the config, with the policy's own setting when it has one.
impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Policy::RoundRobin => f.write_str("round-robin"),
            Policy::Random => f.write_str("random"),
            Policy::LeastLoaded => f.write_str("least-loaded"),
            Policy::Weighted {
                scale_by_load: false,
            } => f.write_str("weighted"),
            Policy::Weighted {
                scale_by_load: true,
            } => f.write_str("weighted, scale_by_load"),
            Policy::Priority { min_healthy } => write!(f, "priority, min_healthy {min_healthy}"),
            Policy::Best => f.write_str("best"),
        }
    }
}

/// What a pool answers when none of its backends of a family is up.
#[derive(Debug, Clone, PartialEq)]
pub enum AllDown {
    /// Every configured backend: a dead pool is no worse than DNS without health checks.
    ServeAll,
    NoData,
    ServFail,
    Fallback(Vec<IpAddr>),
}

/// How one backend is probed.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeConfig {
    pub kind: ProbeKind,
    pub interval: Duration,
    pub timeout: Duration,
    /// Each wait is `interval` plus a random part of up to `jitter`, so probes of many
    /// backends do not fire in lockstep.
    pub jitter: Duration,
    pub rise: u32,
    pub fall: u32,
}

impl ProbeConfig {
    /// Always up, never probed.
    pub fn none() -> ProbeConfig {
        ProbeConfig {
            kind: ProbeKind::None,
            interval: DEFAULT_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
            jitter: DEFAULT_JITTER,
            rise: DEFAULT_RISE,
            fall: DEFAULT_FALL,
        }
    }

    /// Worst-case time from a backend's death to its removal from answers: it dies just after
    /// a good probe; `fall` more probes must fail, each up to `interval + jitter` apart, the
    /// last taking the full `timeout`.
    pub fn detection_bound(&self) -> Duration {
        (self.interval + self.jitter) * self.fall + self.timeout
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ProbeKind {
    None,
    Tcp {
        port: u16,
    },
    Http(HttpProbe),
    Lbcd {
        port: u16,
        version: u8,
        service: Option<String>,
    },
}

impl fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeKind::None => f.write_str("none"),
            ProbeKind::Tcp { port } => write!(f, "tcp:{port}"),
            ProbeKind::Http(h) => write!(f, "http {}", h.url),
            ProbeKind::Lbcd { port, version, .. } => write!(f, "lbcd v{version}:{port}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpProbe {
    /// The URL with `{address}` and `{port}` filled in for this backend.
    pub url: String,
    pub host: Option<String>,
    pub expect_status: Vec<u16>,
    pub body_contains: Option<String>,
    pub load_header: Option<String>,
    pub max_body: usize,
}

impl Cx<'_> {
    pub(super) fn policy(
        &mut self,
        span: &Range<usize>,
        what: &str,
        policy: Option<String>,
        scale_by_load: Option<bool>,
        min_healthy: Option<usize>,
    ) -> Policy {
        let policy = match policy.as_deref().unwrap_or("round-robin") {
            "round-robin" => Policy::RoundRobin,
            "random" => Policy::Random,
            "least-loaded" => Policy::LeastLoaded,
            "weighted" => Policy::Weighted {
                scale_by_load: scale_by_load.unwrap_or(false),
            },
            "priority" => Policy::Priority {
                min_healthy: min_healthy.unwrap_or(1),
            },
            "best" => Policy::Best,
            other => {
                self.invalid(
                    span.clone(),
                    format!(
                        "{what}: policy `{other}` is not one of round-robin, random, \
                         least-loaded, weighted, priority, best"
                    ),
                );
                Policy::RoundRobin
            }
        };
        if scale_by_load.is_some() && !matches!(policy, Policy::Weighted { .. }) {
            self.invalid(
                span.clone(),
                format!("{what}: scale_by_load applies only to policy = \"weighted\""),
            );
        }
        if let Some(n) = min_healthy {
            if !matches!(policy, Policy::Priority { .. }) {
                self.invalid(
                    span.clone(),
                    format!("{what}: min_healthy applies only to policy = \"priority\""),
                );
            } else if n == 0 {
                self.invalid(
                    span.clone(),
                    format!("{what}: min_healthy must be at least 1"),
                );
            }
        }
        policy
    }

    pub(super) fn all_down(
        &mut self,
        span: &Range<usize>,
        what: &str,
        all_down: Option<String>,
        fallback: Option<Vec<String>>,
    ) -> AllDown {
        let mut addrs = Vec::new();
        for a in fallback.iter().flatten() {
            match a.parse::<IpAddr>() {
                Ok(ip) => addrs.push(ip),
                Err(_) => self.invalid(
                    span.clone(),
                    format!("{what}: fallback `{a}` is not an IPv4 or IPv6 address"),
                ),
            }
        }
        match all_down.as_deref().unwrap_or("serve-all") {
            "serve-all" | "nodata" | "servfail" if fallback.is_some() => {
                self.invalid(
                    span.clone(),
                    format!("{what}: fallback needs all_down = \"fallback\""),
                );
                AllDown::ServeAll
            }
            "serve-all" => AllDown::ServeAll,
            "nodata" => AllDown::NoData,
            "servfail" => AllDown::ServFail,
            "fallback" => {
                if fallback.as_ref().is_none_or(|f| f.is_empty()) {
                    self.invalid(
                        span.clone(),
                        format!("{what}: all_down = \"fallback\" needs a non-empty fallback list"),
                    );
                }
                AllDown::Fallback(addrs)
            }
            other => {
                self.invalid(
                    span.clone(),
                    format!("{what}: all_down `{other}` is not one of serve-all, nodata, servfail, fallback"),
                );
                AllDown::ServeAll
            }
        }
    }

    pub(super) fn duration(
        &mut self,
        span: &Range<usize>,
        what: &str,
        text: Option<&str>,
        default: Duration,
    ) -> Duration {
        let Some(t) = text else { return default };
        match humantime::parse_duration(t) {
            Ok(d) => d,
            Err(e) => {
                self.invalid(
                    span.clone(),
                    format!("{what}: `{t}` is not a duration such as \"500ms\" or \"2s\": {e}"),
                );
                default
            }
        }
    }

    /// Validates the effective probe of one backend (pool keys overlaid by backend keys).
    pub(super) fn probe(
        &mut self,
        span: &Range<usize>,
        what: &str,
        raw: &RawProbe,
        address: IpAddr,
        ttl: u32,
    ) -> ProbeConfig {
        let interval = self.duration(
            span,
            &format!("{what}: probe interval"),
            raw.interval.as_deref(),
            DEFAULT_INTERVAL,
        );
        let timeout = self.duration(
            span,
            &format!("{what}: probe timeout"),
            raw.timeout.as_deref(),
            DEFAULT_TIMEOUT,
        );
        let jitter = self.duration(
            span,
            &format!("{what}: probe jitter"),
            raw.jitter.as_deref(),
            DEFAULT_JITTER,
        );
        let rise = raw.rise.unwrap_or(DEFAULT_RISE);
        let fall = raw.fall.unwrap_or(DEFAULT_FALL);
        if interval.is_zero() || timeout.is_zero() {
            self.invalid(
                span.clone(),
                format!("{what}: probe interval and timeout must be more than 0"),
            );
        }
        if timeout > interval {
            // Probes run on a fixed cadence; a timeout longer than the interval would let probes
            // of one backend overlap and break the detection bound below.
            self.invalid(
                span.clone(),
                format!("{what}: probe timeout must not exceed the interval"),
            );
        }
        if rise == 0 || fall == 0 {
            self.invalid(
                span.clone(),
                format!("{what}: probe rise and fall must be at least 1"),
            );
        }
        let kind_name = raw.kind.as_deref().unwrap_or("none");
        let http_only = [
            ("url", raw.url.is_some()),
            ("host", raw.host.is_some()),
            ("expect_status", raw.expect_status.is_some()),
            ("body_contains", raw.body_contains.is_some()),
            ("load_header", raw.load_header.is_some()),
            ("max_body", raw.max_body.is_some()),
        ];
        let lbcd_only = [
            ("version", raw.version.is_some()),
            ("service", raw.service.is_some()),
        ];
        let misplaced = |keys: &[(&str, bool)], cx: &mut Self| {
            for (k, set) in keys {
                if *set {
                    cx.invalid(
                        span.clone(),
                        format!("{what}: probe key `{k}` does not apply to kind = \"{kind_name}\""),
                    );
                }
            }
        };
        let kind = match kind_name {
            "none" => {
                misplaced(&http_only, self);
                misplaced(&lbcd_only, self);
                ProbeKind::None
            }
            "tcp" => {
                misplaced(&http_only, self);
                misplaced(&lbcd_only, self);
                match raw.port {
                    Some(port) if port != 0 => ProbeKind::Tcp { port },
                    _ => {
                        self.invalid(span.clone(), format!("{what}: a tcp probe needs a port"));
                        ProbeKind::None
                    }
                }
            }
            "lbcd" => {
                misplaced(&http_only, self);
                let version = raw.version.unwrap_or(3);
                if !matches!(version, 2 | 3) {
                    self.invalid(
                        span.clone(),
                        format!("{what}: lbcd version {version} is not 2 or 3"),
                    );
                }
                if let Some(s) = &raw.service
                    && (s.len() > 31 || version == 2)
                {
                    self.invalid(
                        span.clone(),
                        format!("{what}: lbcd service `{s}` needs version 3 and at most 31 bytes"),
                    );
                }
                ProbeKind::Lbcd {
                    port: raw.port.unwrap_or(DEFAULT_LBCD_PORT),
                    version,
                    service: raw.service.clone(),
                }
            }
            "http" => {
                misplaced(&lbcd_only, self);
                let template = raw
                    .url
                    .clone()
                    .unwrap_or_else(|| "http://{address}:{port}/".to_owned());
                let host = match address {
                    IpAddr::V4(a) => a.to_string(),
                    IpAddr::V6(a) => format!("[{a}]"),
                };
                if template.contains("{port}") && raw.port.is_none() {
                    self.invalid(
                        span.clone(),
                        format!(
                            "{what}: http probe URL `{template}` uses {{port}} but no port is set"
                        ),
                    );
                }
                let url = template
                    .replace("{address}", &host)
                    .replace("{port}", &raw.port.unwrap_or(80).to_string());
                match reqwest::Url::parse(&url) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                    Ok(_) => self.invalid(
                        span.clone(),
                        format!("{what}: probe URL `{url}` is not http or https"),
                    ),
                    Err(e) => self.invalid(
                        span.clone(),
                        format!("{what}: probe URL `{url}` is not a URL: {e}"),
                    ),
                }
                ProbeKind::Http(HttpProbe {
                    url,
                    host: raw.host.clone(),
                    expect_status: raw.expect_status.clone().unwrap_or_else(|| vec![200]),
                    body_contains: raw.body_contains.clone(),
                    load_header: raw.load_header.clone(),
                    max_body: raw.max_body.unwrap_or(DEFAULT_HTTP_MAX_BODY),
                })
            }
            other => {
                self.invalid(
                    span.clone(),
                    format!("{what}: probe kind `{other}` is not one of none, tcp, http, lbcd"),
                );
                ProbeKind::None
            }
        };
        let probe = ProbeConfig {
            kind,
            interval,
            timeout,
            jitter,
            rise,
            fall,
        };
        if probe.kind != ProbeKind::None {
            // The failover bound (issue 3): a dead backend must leave the answers within one TTL.
            let bound = probe.detection_bound();
            if bound > Duration::from_secs(u64::from(ttl)) {
                self.invalid(
                    span.clone(),
                    format!(
                        "{what}: worst-case failure detection (interval {} + jitter {}) × fall {} + timeout {} = {} exceeds the pool TTL {ttl}s; lower interval, jitter, fall or timeout, or raise ttl",
                        humantime::format_duration(interval),
                        humantime::format_duration(jitter),
                        fall,
                        humantime::format_duration(timeout),
                        humantime::format_duration(bound),
                    ),
                );
            }
        }
        probe
    }
}
