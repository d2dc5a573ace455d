//! Pool settings after validation: selection policy, all-down policy, probes, and the failover
//! bound that ties probe timing to the pool TTL.

use std::fmt;
use std::net::IpAddr;
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use super::raw::RawProbe;
use super::{Cx, key};

/// Default probe timing. With the default pool TTL of 5 s the worst-case detection is
/// 1 s × 2 + 1 s + 0.2 s = 3.2 s, inside one TTL.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_JITTER: Duration = Duration::from_millis(200);
pub const DEFAULT_RISE: u32 = 2;
pub const DEFAULT_FALL: u32 = 2;
pub const DEFAULT_ALL_DOWN_TTL: u32 = 1;

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

/// The kind name of "never probed, always up".
pub const PROBE_NONE: &str = "none";

/// How one backend is probed, as configured: the kind and its own keys are checked by the probe
/// layer (`src/probe/`), which alone knows each kind; the timing is checked here.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeConfig {
    /// `none` or a probe kind's name.
    pub kind: String,
    /// The kind's own keys (pool keys overlaid by the backend's), as written.
    pub settings: toml::Table,
    pub timing: ProbeTiming,
}

impl ProbeConfig {
    /// Always up, never probed.
    pub fn none() -> ProbeConfig {
        ProbeConfig {
            kind: PROBE_NONE.to_owned(),
            settings: toml::Table::new(),
            timing: ProbeTiming::default(),
        }
    }

    /// Whether this backend is probed at all.
    pub fn is_probed(&self) -> bool {
        self.kind != PROBE_NONE
    }
}

/// When a backend is probed and how many results flip it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeTiming {
    pub interval: Duration,
    pub timeout: Duration,
    /// Each wait is `interval` plus a random part of up to `jitter`, so probes of many
    /// backends do not fire in lockstep.
    pub jitter: Duration,
    /// Successes in a row that bring a down backend up.
    pub rise: u32,
    /// Failures in a row that take an up backend down.
    pub fall: u32,
}

impl Default for ProbeTiming {
    fn default() -> Self {
        ProbeTiming {
            interval: DEFAULT_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
            jitter: DEFAULT_JITTER,
            rise: DEFAULT_RISE,
            fall: DEFAULT_FALL,
        }
    }
}

impl ProbeTiming {
    /// Worst-case time from a backend's death to its removal from answers: it dies just after
    /// a good probe; `fall` more probes must fail, each up to `interval + jitter` apart, the
    /// last taking the full `timeout`.
    pub fn detection_bound(&self) -> Duration {
        (self.interval + self.jitter) * self.fall + self.timeout
    }
}

impl Cx<'_> {
    pub(super) fn policy(
        &mut self,
        span: &Range<usize>,
        what: &str,
        policy: Option<Spanned<String>>,
        scale_by_load: Option<Spanned<bool>>,
        min_healthy: Option<Spanned<usize>>,
    ) -> Policy {
        let (policy, policy_at) = key(policy, span);
        let (scale_by_load, scale_by_load_at) = key(scale_by_load, span);
        let (min_healthy, min_healthy_at) = key(min_healthy, span);
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
                    policy_at,
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
                scale_by_load_at,
                format!("{what}: scale_by_load applies only to policy = \"weighted\""),
            );
        }
        if let Some(n) = min_healthy {
            if !matches!(policy, Policy::Priority { .. }) {
                self.invalid(
                    min_healthy_at,
                    format!("{what}: min_healthy applies only to policy = \"priority\""),
                );
            } else if n == 0 {
                self.invalid(
                    min_healthy_at,
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
        all_down: Option<Spanned<String>>,
        fallback: Option<Spanned<Vec<String>>>,
    ) -> AllDown {
        let (all_down, all_down_at) = key(all_down, span);
        // A missing fallback list is a problem with `all_down = "fallback"`: point there.
        let (fallback, fallback_at) = key(fallback, &all_down_at);
        let mut addrs = Vec::new();
        for a in fallback.iter().flatten() {
            match a.parse::<IpAddr>() {
                Ok(ip) => addrs.push(ip),
                Err(_) => self.invalid(
                    fallback_at.clone(),
                    format!("{what}: fallback `{a}` is not an IPv4 or IPv6 address"),
                ),
            }
        }
        match all_down.as_deref().unwrap_or("serve-all") {
            "serve-all" | "nodata" | "servfail" if fallback.is_some() => {
                self.invalid(
                    fallback_at,
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
                        fallback_at,
                        format!("{what}: all_down = \"fallback\" needs a non-empty fallback list"),
                    );
                }
                AllDown::Fallback(addrs)
            }
            other => {
                self.invalid(
                    all_down_at,
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
        let kind = raw.kind.clone().unwrap_or_else(|| PROBE_NONE.to_owned());
        // A backend may switch its pool's probe off with `kind = "none"`; the pool's other
        // keys then mean nothing for it and are dropped.
        let settings = if kind == PROBE_NONE {
            toml::Table::new()
        } else {
            raw.settings.clone()
        };
        let probe = ProbeConfig {
            kind,
            settings,
            timing: ProbeTiming {
                interval,
                timeout,
                jitter,
                rise,
                fall,
            },
        };
        if probe.is_probed() {
            // The failover bound: a dead backend must leave the answers within one TTL.
            let bound = probe.timing.detection_bound();
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
