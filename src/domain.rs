//! The domain model: pools, backends, probe specs, health states, observations and verdicts —
//! the values the runtime works with, built once from the validated [`Config`].
//!
//! Config types mirror the file; these mirror what lbns does. [`Model::new`] destructures every
//! config struct it reads with no `..`, so a key added to the config that nobody wires into the
//! model does not compile.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use hickory_proto::rr::Name;
use ipnet::IpNet;

use crate::config::{
    self, BackendConfig, Config, CookieSecret, CookieSecrets, CookiesConfig, Place, PoolConfig,
    ProbeConfig, ProbeTiming, RrlConfig, ServerConfig,
};

/// Everything about pools and answers that a reload can change.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// Indexed as in the config; zone nodes and snapshots refer to pools by this index.
    pub pools: Vec<Pool>,
    pub(crate) answering: Answering,
    /// The peers whose views combine with this instance's (`[cluster]`), if any.
    pub(crate) cluster: Option<Cluster>,
}

/// The instances that decide together (`[cluster]`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cluster {
    /// Where this instance receives peer messages and sends them from.
    pub(crate) listen: std::net::SocketAddr,
    /// The other instances, by address; a peer's index here names it in the health table.
    pub(crate) peers: Vec<std::net::SocketAddr>,
    /// How the fresh views combine.
    pub(crate) quorum: crate::config::Quorum,
    /// Time between two messages to each peer.
    pub(crate) exchange_interval: Duration,
    /// A peer's view not heard again within this does not count.
    pub(crate) peer_max_age: Duration,
}

impl Model {
    /// The model of a validated config.
    pub fn new(config: &Config) -> Model {
        Model {
            pools: config.pools.iter().map(Pool::from_config).collect(),
            answering: Answering::from_config(&config.server, &config.rrl, &config.cookies),
            cluster: config.cluster.as_ref().map(|c| {
                let crate::config::ClusterConfig {
                    listen,
                    peers,
                    // Read by `control::check` and at start; the model never holds the secret.
                    key_file: _,
                    quorum,
                    exchange_interval,
                    peer_max_age,
                } = c;
                Cluster {
                    listen: *listen,
                    peers: peers.clone(),
                    quorum: *quorum,
                    exchange_interval: *exchange_interval,
                    peer_max_age: *peer_max_age,
                }
            }),
        }
    }

    /// The pool of this name (any case, final dot optional), with its index.
    pub(crate) fn find_pool(&self, text: &str) -> Option<(usize, &Pool)> {
        self.pools
            .iter()
            .enumerate()
            .find(|(_, p)| name_matches(&p.name, text))
    }
}

/// Whether `name` is `text`, ignoring case and a missing final dot.
fn name_matches(name: &Name, text: &str) -> bool {
    let text = text.strip_suffix('.').unwrap_or(text);
    let ascii = name.to_ascii();
    let ascii = ascii.strip_suffix('.').unwrap_or(&ascii);
    ascii.eq_ignore_ascii_case(text)
}

/// What encoding an answer needs from `[server]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Answering {
    /// Largest UDP response and the payload size advertised (512..=4096).
    pub(crate) edns_udp_size: u16,
    /// CHAOS id.server / hostname.bind answer.
    pub(crate) identity: String,
    /// CHAOS version.bind answer; `None` keeps the version private.
    pub(crate) version: Option<String>,
    /// NSID payload (RFC 5001), `None` when NSID is off.
    pub(crate) nsid: Option<Vec<u8>>,
    /// Response rate limiting on UDP (`[rrl]`); `None` when off.
    pub(crate) rate_limit: Option<RateLimit>,
    /// DNS cookies (`[cookies]`); `None` when off: a COOKIE option is then ignored.
    pub(crate) cookies: Option<CookieKeys>,
}

impl Answering {
    fn from_config(server: &ServerConfig, rrl: &RrlConfig, cookies: &CookiesConfig) -> Answering {
        let RrlConfig {
            responses_per_second,
            slip,
            ipv4_prefix,
            ipv6_prefix,
            window,
            exempt,
            log_only,
            // The table is allocated once, at start (`app`).
            table_size: _,
        } = rrl;
        let CookiesConfig { enabled, secrets } = cookies;
        Answering {
            edns_udp_size: server.edns_udp_size,
            identity: server.identity.clone(),
            version: server.version.clone(),
            nsid: server.nsid.then(|| server.identity.clone().into_bytes()),
            rate_limit: (*responses_per_second > 0).then(|| RateLimit {
                responses_per_second: *responses_per_second,
                slip: *slip,
                ipv4_prefix: *ipv4_prefix,
                ipv6_prefix: *ipv6_prefix,
                window: *window,
                exempt: exempt.clone(),
                log_only: *log_only,
            }),
            cookies: enabled.then(|| match secrets {
                CookieSecrets::Rotating(every) => CookieKeys::Rotating {
                    every_secs: every.as_secs().max(1),
                },
                CookieSecrets::Shared { file: _, secrets } => CookieKeys::Shared(secrets.clone()),
            }),
        }
    }
}

/// Response rate limiting as the UDP listeners apply it (docs/config.md, `[rrl]`): per client
/// prefix, response class and name, `responses_per_second` responses, the excess remembered
/// for `window` seconds; every `slip`th limited response is sent empty with TC=1, the others
/// dropped.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RateLimit {
    /// Never 0 here.
    pub(crate) responses_per_second: u32,
    /// 0: drop every limited response.
    pub(crate) slip: u32,
    pub(crate) ipv4_prefix: u8,
    pub(crate) ipv6_prefix: u8,
    /// Seconds.
    pub(crate) window: u32,
    /// Clients never limited.
    pub(crate) exempt: Vec<IpNet>,
    /// Count and log, but send every response.
    pub(crate) log_only: bool,
}

impl RateLimit {
    /// Whether `ip` is in an `exempt` network.
    pub(crate) fn exempts(&self, ip: IpAddr) -> bool {
        self.exempt.iter().any(|n| n.contains(&ip))
    }
}

/// The keys server cookies are made with (RFC 9018 §4.4).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CookieKeys {
    /// A key this process derives from its own random secret for each period of
    /// `every_secs` seconds; a cookie is checked with the key of the period of its timestamp,
    /// so the previous period's stays good for as long as the cookie does.
    Rotating { every_secs: u64 },
    /// Shared with peers through a file: the first makes cookies, every one is accepted.
    Shared(Vec<CookieSecret>),
}

/// A load-balanced name and its backends.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    /// The name whose A/AAAA queries the pool answers, absolute.
    pub name: Name,
    /// TTL of answers while backends are usable.
    pub ttl: u32,
    /// Most addresses per answer, per family (`usize::MAX` when unlimited).
    pub max_answers: usize,
    /// How usable backends are ordered in answers.
    pub policy: Policy,
    /// What a family with no usable backend answers.
    pub all_down: AllDown,
    /// TTL of answers while no backend of a family is usable.
    pub all_down_ttl: u32,
    /// byAge: a backend whose last good probe is older than this counts as down.
    pub max_age: Duration,
    /// With `failover`: TTLs shortened while a backend is in doubt and during recovery.
    pub adaptive: Option<AdaptiveTtl>,
    /// The members, in config order; health tables and verdicts are indexed the same way.
    pub backends: Vec<Backend>,
    /// Where the pool is defined, for messages about it.
    pub place: Place,
}

impl Pool {
    fn from_config(p: &PoolConfig) -> Pool {
        let PoolConfig {
            name,
            ttl,
            answers,
            backends,
            policy,
            all_down,
            all_down_ttl,
            max_age,
            failover,
            place,
        } = p;
        Pool {
            name: name.clone(),
            ttl: *ttl,
            max_answers: *answers,
            policy: Policy::from_config(policy),
            all_down: AllDown::from_config(all_down),
            all_down_ttl: *all_down_ttl,
            max_age: *max_age,
            adaptive: failover.as_ref().map(|f| AdaptiveTtl {
                within: f.within,
                min_up: f.min_up,
            }),
            backends: backends.iter().map(Backend::from_config).collect(),
            place: place.clone(),
        }
    }

    /// Whether `other` is the same pool as configured, where it is written aside (`place`
    /// moves whenever a line is added above it): the same name, in the same case, and the same
    /// keys and backends. A reload keeps such a pool's compiled answer and its probes.
    pub(crate) fn same_as(&self, other: &Pool) -> bool {
        let Pool {
            name,
            ttl,
            max_answers,
            policy,
            all_down,
            all_down_ttl,
            max_age,
            adaptive,
            backends,
            place: _,
        } = self;
        name.eq_case(&other.name)
            && *ttl == other.ttl
            && *max_answers == other.max_answers
            && *policy == other.policy
            && *all_down == other.all_down
            && *all_down_ttl == other.all_down_ttl
            && *max_age == other.max_age
            && *adaptive == other.adaptive
            && *backends == other.backends
    }
}

/// How a pool with `failover` adapts its TTL (gdnsd's DYNA TTL): an answer that holds a
/// backend in doubt carries no more than the whole seconds left until that backend can be
/// declared down, and while fewer than `min_up` of a family's backends are usable, answers
/// carry the all-down TTL, so a backend that just recovered is not pinned into caches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveTtl {
    /// The promised failover time, for the status page.
    pub(crate) within: Duration,
    /// The usable fraction of a family below which answers carry the all-down TTL.
    pub(crate) min_up: f64,
}

/// One member of a pool.
#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    /// Label in logs and on the status page; the address unless configured.
    pub name: String,
    /// What answers carry for it (A or AAAA by family) and what its probe connects to.
    pub address: IpAddr,
    /// Relative share for weighted policies.
    pub weight: u32,
    /// Tier for the priority policy, 1 first.
    pub tier: u32,
    /// How it is probed; `None`: never probed, always up.
    pub probe: Option<ProbeSpec>,
}

impl Backend {
    fn from_config(b: &BackendConfig) -> Backend {
        let BackendConfig {
            name,
            address,
            weight,
            tier,
            probe,
        } = b;
        Backend {
            name: name.clone(),
            address: *address,
            weight: *weight,
            tier: *tier,
            probe: ProbeSpec::from_config(probe),
        }
    }
}

/// A probe as configured for one backend: its kind, the kind's own settings (checked and
/// turned into a running probe by the probe layer) and its timing.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSpec {
    /// A registered probe kind (`tcp`, `http`, `lbcd`, `exec`, `file`).
    pub(crate) kind: String,
    /// The kind's own keys, as written (pool keys overlaid by the backend's).
    pub(crate) settings: toml::Table,
    pub(crate) timing: ProbeTiming,
}

impl ProbeSpec {
    fn from_config(p: &ProbeConfig) -> Option<ProbeSpec> {
        let ProbeConfig {
            kind,
            settings,
            timing,
        } = p;
        (kind != config::PROBE_NONE).then(|| ProbeSpec {
            kind: kind.clone(),
            settings: settings.clone(),
            timing: *timing,
        })
    }
}

/// How a pool orders its usable backends (docs/config.md, `policy`).
#[derive(Debug, Clone, PartialEq)]
pub enum Policy {
    /// Rotation per query (DNS round robin).
    RoundRobin,
    /// A random order per query.
    Random,
    /// mod_backhand byLoad: least reported load first, ties rotated.
    LeastLoaded,
    /// Weighted choice by configured weight, optionally divided by (1 + load).
    Weighted {
        /// Divide each weight by (1 + reported load).
        scale_by_load: bool,
    },
    /// gdnsd multifo/metafo: the first tier alone while `min_healthy` of it are up.
    Priority {
        /// Usable backends a tier needs to be answered alone.
        min_healthy: usize,
    },
    /// lbnamed: the single least-loaded host, its increment added after each answer.
    Best,
}

impl Policy {
    fn from_config(p: &config::Policy) -> Policy {
        match *p {
            config::Policy::RoundRobin => Policy::RoundRobin,
            config::Policy::Random => Policy::Random,
            config::Policy::LeastLoaded => Policy::LeastLoaded,
            config::Policy::Weighted { scale_by_load } => Policy::Weighted { scale_by_load },
            config::Policy::Priority { min_healthy } => Policy::Priority { min_healthy },
            config::Policy::Best => Policy::Best,
        }
    }
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

/// What a pool answers for a family none of whose backends is usable.
#[derive(Debug, Clone, PartialEq)]
pub enum AllDown {
    /// Every configured backend: a dead pool is no worse than DNS without health checks.
    ServeAll,
    /// An empty answer (NODATA).
    NoData,
    /// SERVFAIL, so resolvers try elsewhere.
    ServFail,
    /// These addresses instead.
    Fallback(Vec<IpAddr>),
}

impl AllDown {
    fn from_config(a: &config::AllDown) -> AllDown {
        match a {
            config::AllDown::ServeAll => AllDown::ServeAll,
            config::AllDown::NoData => AllDown::NoData,
            config::AllDown::ServFail => AllDown::ServFail,
            config::AllDown::Fallback(list) => AllDown::Fallback(list.clone()),
        }
    }
}

/// A backend's health state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HealthState {
    /// Not probed yet. Counts as down for answers; the first observation decides directly.
    Unknown,
    /// Answered: `rise` probes in a row succeeded (or the first one did).
    Up,
    /// Left out: `fall` probes in a row failed (or the first one did).
    Down,
}

impl HealthState {
    /// `unknown`, `up` or `down`, as logs and the status page write it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            HealthState::Unknown => "unknown",
            HealthState::Up => "up",
            HealthState::Down => "down",
        }
    }
}

/// lbcd's weight for a service and the increment lbnamed adds after each answer (lower weight
/// = better).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LbcdWeight {
    /// The host's load for the service as lbcd computes it; the `best` policy answers the
    /// lowest.
    pub weight: u32,
    /// Added to `weight` after each answer that names the host, until the next poll (lbnamed's
    /// rule, which `best` follows), so answers spread by spare capacity.
    pub increment: u32,
}

/// What one probe of one backend saw.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Observation {
    pub(crate) ok: bool,
    /// Load reported by the backend (lbcd 1-minute load, an HTTP load header, exec output).
    pub(crate) load: Option<f64>,
    /// lbcd's weight and increment for the asked service.
    pub(crate) lbcd: Option<LbcdWeight>,
    /// Why it failed, or a short success note; shown on the status page and in flip logs.
    pub(crate) detail: String,
    pub(crate) latency: Duration,
}

/// What selection needs to know about one backend at one moment: the health table's output.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Verdict {
    /// Up, fresh (byAge) and not drained.
    pub usable: bool,
    /// The load its latest probe reported, if any (lower = better), for load-aware policies.
    pub load: Option<f64>,
    /// lbcd's weight and increment from its latest probe, for the `best` policy.
    pub lbcd: Option<LbcdWeight>,
    /// With an adaptive TTL: the whole seconds (rounded down) until this usable backend can
    /// be declared down, when it is in doubt (its latest probe failed, or a result is overdue).
    pub ttl_cap: Option<u32>,
}
