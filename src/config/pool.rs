//! Pool settings after validation: selection policy, all-down policy, probes, and the failover
//! promise that ties probe timing to the TTLs served ([`Failover::prove`]).

use std::net::IpAddr;
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use super::raw::RawProbe;
use super::{Cx, key};

/// Default probe timing. The worst-case detection is (1 s + 200 ms) × 2 + 500 ms = 2.9 s and
/// the first evidence of a failure comes within 1 s + 200 ms + 500 ms = 1.7 s, so with
/// `failover = "5s"` the steady TTL is 2 s (see [`Failover::prove`]).
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// Default probe timeout: a hung backend is known as failing half a second after a probe starts.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);
/// Default jitter added to each probe interval.
pub(crate) const DEFAULT_JITTER: Duration = Duration::from_millis(200);
/// Default successes in a row that bring a backend up.
pub(crate) const DEFAULT_RISE: u32 = 2;
/// Default failures in a row that take a backend down.
pub(crate) const DEFAULT_FALL: u32 = 2;
/// Default TTL of all-down answers (and, with `failover`, of answers under `min_up`).
pub(crate) const DEFAULT_ALL_DOWN_TTL: u32 = 1;
/// Default `min_up`: with `failover`, answers carry the short TTL while fewer than half of a
/// family's backends are usable (gdnsd's `up_thresh`).
pub(crate) const DEFAULT_MIN_UP: f64 = 0.5;
/// How long past its TTL a resolver may still serve a record: unbound keeps it through the
/// whole second in which its TTL reaches 0.
pub const RESOLVER_SLACK: Duration = Duration::from_secs(1);

/// `failover = "..."` proven against the probe settings: the promise that a client behind a
/// caching resolver stops receiving a dead or hung backend within `within`, and the TTLs that
/// keep it.
#[derive(Debug, Clone, PartialEq)]
pub struct Failover {
    /// The promised time, as `failover = "..."` gives it.
    pub within: Duration,
    /// The lowest TTL the clients' resolvers keep a record for (`resolver_min_ttl`).
    pub resolver_min_ttl: u32,
    /// The usable fraction of a family under which answers carry the short TTL.
    pub(crate) min_up: f64,
    /// Worst case from a backend's death to the first failed probe's result: interval +
    /// jitter + timeout (the slowest backend of the pool).
    pub first_evidence: Duration,
    /// Worst case from a backend's death to its removal: (interval + jitter) × fall + timeout,
    /// plus the peer exchange delay with `[cluster]`.
    pub detection: Duration,
    /// The TTL answers carry while no backend is in doubt, in seconds.
    pub steady_ttl: u32,
}

impl Failover {
    /// Proves the promise for backends probed with `timings`, or says which term breaks it and
    /// what to change. The terms (docs/config.md, `failover`):
    ///
    /// - an answer handed out before the first failed probe carries the steady TTL `T`; a
    ///   resolver keeps it at most `max(T, resolver_min_ttl)` + 1 s of slack, so
    ///   `first_evidence + max(T, resolver_min_ttl) + 1 s ≤ within`, and `T` is that room
    ///   rounded down to whole seconds (at least 1);
    /// - an answer handed out after it carries at most the whole seconds left until the
    ///   backend can be declared down (rounded down, so the last second is served with TTL 0),
    ///   which a resolver may raise to `resolver_min_ttl`: `detection + resolver_min_ttl + 1 s
    ///   ≤ within`.
    ///
    /// With peers (`[cluster]`) a backend leaves the answers when a quorum of instances sees it
    /// down, up to `peer_delay` after this instance does ([`crate::config::ClusterConfig::detection_delay`]):
    /// it is added to `detection`.
    ///
    /// `max_ttl` (the `ttl` key, if set) caps `T`. Backends never probed are never taken out,
    /// so they do not enter the proof; a pool of only those gets `T` = `within` − 1 s.
    pub(crate) fn prove(
        within: Duration,
        resolver_min_ttl: u32,
        min_up: f64,
        timings: impl Iterator<Item = ProbeTiming>,
        max_ttl: Option<u32>,
        peer_delay: Duration,
    ) -> Result<Failover, String> {
        let f = humantime::format_duration;
        let secs = |d: Duration| f(Duration::from_millis(d.as_millis() as u64));
        let floor = Duration::from_secs(u64::from(resolver_min_ttl));
        let mut first_evidence = Duration::ZERO;
        let mut worst: Option<ProbeTiming> = None;
        for t in timings {
            first_evidence = first_evidence.max(t.interval + t.jitter + t.timeout);
            if worst.is_none_or(|w| t.detection_bound() > w.detection_bound()) {
                worst = Some(t);
            }
        }
        let local = worst.map_or(Duration::ZERO, |t| t.detection_bound());
        let detection = local + worst.map_or(Duration::ZERO, |_| peer_delay);
        if let Some(t) = worst {
            let total = detection + floor + RESOLVER_SLACK;
            if total > within {
                let peers = if peer_delay.is_zero() {
                    String::new()
                } else {
                    format!(" + peer exchange {}", secs(peer_delay))
                };
                return Err(format!(
                    "failover {} cannot be kept: detection (interval {} + jitter {}) × fall {} + timeout {} = {}{peers} + resolver_min_ttl {}s + resolver slack 1s = {} exceeds it; lower interval, jitter, fall or timeout, or raise failover",
                    secs(within),
                    secs(t.interval),
                    secs(t.jitter),
                    t.fall,
                    secs(t.timeout),
                    secs(local),
                    resolver_min_ttl,
                    secs(total),
                ));
            }
        }
        let room = within.saturating_sub(first_evidence + RESOLVER_SLACK);
        let steady = room.as_secs().min(u64::from(u32::MAX)) as u32;
        if steady < 1 || floor > room {
            let needed = first_evidence + floor.max(Duration::from_secs(1)) + RESOLVER_SLACK;
            return Err(format!(
                "failover {} cannot be kept: first evidence (interval + jitter + timeout) {} + a TTL of {}s + resolver slack 1s = {} exceeds it; lower interval, jitter or timeout, or raise failover",
                secs(within),
                secs(first_evidence),
                resolver_min_ttl.max(1),
                secs(needed),
            ));
        }
        Ok(Failover {
            within,
            resolver_min_ttl,
            min_up,
            first_evidence,
            detection,
            steady_ttl: max_ttl.map_or(steady, |m| m.min(steady)),
        })
    }
}

/// How a pool orders its healthy backends (see docs/config.md).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Policy {
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

/// What a pool answers when none of its backends of a family is up.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AllDown {
    /// Every configured backend: a dead pool is no worse than DNS without health checks.
    ServeAll,
    NoData,
    ServFail,
    Fallback(Vec<IpAddr>),
}

/// The kind name of "never probed, always up".
pub(crate) const PROBE_NONE: &str = "none";

/// How one backend is probed, as configured: the kind and its own keys are checked by the probe
/// layer (`src/probe/`), which alone knows each kind; the timing is checked here.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProbeConfig {
    /// `none` or a probe kind's name.
    pub(crate) kind: String,
    /// The kind's own keys (pool keys overlaid by the backend's), as written.
    pub(crate) settings: toml::Table,
    pub(crate) timing: ProbeTiming,
}

impl ProbeConfig {
    /// Whether this backend is probed at all.
    pub(crate) fn is_probed(&self) -> bool {
        self.kind != PROBE_NONE
    }
}

/// When a backend is probed and how many results flip it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ProbeTiming {
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
    /// Each wait is `interval` plus a random part of up to `jitter`, so probes of many
    /// backends do not fire in lockstep.
    pub(crate) jitter: Duration,
    /// Successes in a row that bring a down backend up.
    pub(crate) rise: u32,
    /// Failures in a row that take an up backend down.
    pub(crate) fall: u32,
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
    pub(crate) fn detection_bound(&self) -> Duration {
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
        ttl: Option<u32>,
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
        // Without `failover` (`ttl` given), the older bound: a dead backend leaves lbns's own
        // answers within one TTL.
        if let Some(ttl) = ttl.filter(|_| probe.is_probed()) {
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
