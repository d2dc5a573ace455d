//! `RawConfig`: the TOML file as written, before any cross-field validation.
//!
//! Every struct mirrors one TOML table and rejects unknown keys. Values stay as the operator
//! typed them (strings for names, addresses and durations) so that `Config::from_raw` can report
//! every problem with its place instead of stopping at the first one serde meets. Keys that are
//! checked there keep their place (`Spanned`), so a problem points at the value as written.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};
use toml::Spanned;

/// `[server]`: listeners and protocol limits. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    /// Addresses to answer on, UDP and TCP both (default `["127.0.0.1:5353"]`).
    pub(crate) listen: Option<Spanned<Vec<String>>>,
    /// UDP worker threads per listen address; 0 means one per CPU core (default 0).
    pub(crate) udp_workers: Option<usize>,
    /// How long an idle TCP connection stays open, e.g. `"10s"` (default 10 s, RFC 7766 §6.2.3).
    pub(crate) tcp_idle_timeout: Option<Spanned<String>>,
    /// Concurrent TCP connections; at the cap, the one longest without a complete query is
    /// closed to make room (default 256).
    pub(crate) tcp_max_connections: Option<Spanned<usize>>,
    /// Concurrent TCP connections from one client address, IPv6 counted per /64 (default 16).
    pub(crate) tcp_max_connections_per_client: Option<Spanned<usize>>,
    /// How long one TCP response may take to be written before the connection is closed, e.g.
    /// `"2s"` (default 2 s): a client that does not read loses its slot.
    pub(crate) tcp_write_timeout: Option<Spanned<String>>,
    /// Largest UDP response lbns sends and the size it advertises in EDNS (default 1232, the
    /// DNS Flag Day 2020 value that avoids IP fragmentation).
    pub(crate) edns_udp_size: Option<Spanned<u16>>,
    /// Answer to CHAOS TXT id.server / hostname.bind and the NSID payload (default: the host
    /// name).
    pub(crate) identity: Option<String>,
    /// Answer to CHAOS TXT version.bind / version.server; absent = refused (not disclosed).
    pub(crate) version: Option<String>,
    /// Send NSID (RFC 5001) with the identity when a query asks for it (default false).
    pub(crate) nsid: Option<bool>,
    /// Where the drained set is kept across restarts (default `lbns.state` beside the config).
    pub(crate) state_file: Option<Spanned<String>>,
    /// Log one query in N at info level; 0 (default) logs none, 1 logs every query.
    pub(crate) query_log_sample: Option<u64>,
    /// Switch to this user once every socket is bound (default: stay as started).
    pub(crate) user: Option<Spanned<String>>,
    /// Switch to this group once every socket is bound (default: the user's primary group).
    pub(crate) group: Option<Spanned<String>>,
    /// Answer UDP arriving on this network interface through AF_XDP (default: off).
    pub(crate) xdp: Option<Spanned<String>>,
    /// Directories besides the config file's whose files a zone may `$INCLUDE`.
    pub(crate) include_dirs: Option<Spanned<Vec<String>>>,
}

/// `[status]`: the HTTP status and control listener. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStatus {
    /// `false` turns the listener off (default `true`).
    pub(crate) enabled: Option<bool>,
    /// One address or a list (default `"127.0.0.1:8053"`); `[]` turns the listener off.
    pub(crate) listen: Option<Spanned<OneOrMany>>,
    /// Client networks allowed in, as CIDR (default `["127.0.0.0/8", "::1/128"]`).
    pub(crate) allow: Option<Spanned<Vec<String>>>,
    /// How long a request head may take to arrive, e.g. `"5s"` (default 5 s).
    pub(crate) header_timeout: Option<Spanned<String>>,
    /// How long a connection may sit with no request and no byte moving (default 10 s).
    pub(crate) idle_timeout: Option<Spanned<String>>,
    /// Concurrent connections accepted before new ones are closed (default 64).
    pub(crate) max_connections: Option<Spanned<usize>>,
    /// `false` leaves the per-backend series out of `/metrics` (default `true`).
    pub(crate) metrics_per_backend: Option<bool>,
}

/// `[control]`: the Unix socket that reload, drain and undrain go through. Every key is
/// optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawControl {
    /// Path of the socket (default `lbns.sock` beside the state file).
    pub(crate) socket: Option<Spanned<String>>,
    /// Group allowed to use the socket besides its owner (default: none, mode 0600).
    pub(crate) group: Option<Spanned<String>>,
}

/// A string or a list of strings: `listen = "127.0.0.1:8053"` and `listen = ["..."]` both work.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OneOrMany(pub(crate) Vec<String>);

// Hand-written for serde's precise type errors, as for `RawBackend` below.
impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OneOrManyVisitor;

        impl<'de> Visitor<'de> for OneOrManyVisitor {
            type Value = OneOrMany;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an address string or a list of them")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![v.to_owned()]))
            }

            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(OneOrMany(out))
            }
        }

        deserializer.deserialize_any(OneOrManyVisitor)
    }
}

/// One `[[zone]]`: an origin served from an RFC 1035 master file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawZone {
    /// Zone apex, e.g. `"cluster.example."`. Names in the config are always absolute.
    pub(crate) origin: Spanned<String>,
    /// Master file, relative to the directory of the config file.
    pub(crate) file: String,
}

/// One `[[pool]]`: a name answered with the addresses of its backends.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPool {
    /// Owner name of the pool; must sit inside a served zone.
    pub(crate) name: Spanned<String>,
    /// TTL of pool answers in seconds (default 5).
    pub(crate) ttl: Option<Spanned<u32>>,
    /// Most addresses per answer; 0 or absent means all of them.
    pub(crate) answers: Option<usize>,
    /// Members: an address string, or a table `{ address, name, weight, tier, probe }`.
    pub(crate) backends: Spanned<Vec<Spanned<RawBackend>>>,
    /// Selection policy: `round-robin` (default), `random`, `least-loaded`, `weighted`,
    /// `priority`, `best`.
    pub(crate) policy: Option<Spanned<String>>,
    /// `weighted`: scale each weight by 1 / (1 + load) when the probe reports load.
    pub(crate) scale_by_load: Option<Spanned<bool>>,
    /// `priority`: serve a tier alone while at least this many of it are up (default 1).
    pub(crate) min_healthy: Option<Spanned<usize>>,
    /// What to answer when no backend of a family is up: `serve-all` (default), `nodata`,
    /// `servfail`, `fallback`.
    pub(crate) all_down: Option<Spanned<String>>,
    /// Addresses answered under `all_down = "fallback"`.
    pub(crate) fallback: Option<Spanned<Vec<String>>>,
    /// TTL of answers given while all backends are down (default 1).
    pub(crate) all_down_ttl: Option<Spanned<u32>>,
    /// byAge: a backend whose last good report is older than this counts as down.
    pub(crate) max_age: Option<Spanned<String>>,
    /// The promise: a client behind a caching resolver stops receiving a dead or hung backend
    /// within this time, e.g. `"5s"`. lbns derives the TTLs from it and `check` proves it.
    pub(crate) failover: Option<Spanned<String>>,
    /// The lowest TTL the clients' resolvers keep a record for (Knot Resolver: 5), in seconds;
    /// `check` proves `failover` with it (default 0).
    pub(crate) resolver_min_ttl: Option<Spanned<u32>>,
    /// With `failover`: while fewer than this fraction of a family's backends are usable,
    /// answers carry `all_down_ttl` (default 0.5).
    pub(crate) min_up: Option<Spanned<f64>>,
    /// How backends are probed; backends may override single keys.
    pub(crate) probe: Option<RawProbe>,
}

/// `probe = { ... }` on a pool or a backend. Every key is optional; a backend's keys override
/// its pool's, the pool's override the defaults. The timing keys are common to every kind; the
/// rest belong to the kind, which checks them (`src/probe/`).
#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct RawProbe {
    /// `none` (always up, the default) or a probe kind: `tcp`, `http`, `lbcd`, `exec`, `file`.
    pub(crate) kind: Option<String>,
    pub(crate) interval: Option<String>,
    pub(crate) timeout: Option<String>,
    pub(crate) jitter: Option<String>,
    pub(crate) rise: Option<u32>,
    pub(crate) fall: Option<u32>,
    /// The kind's own keys (`port`, `url`, `command`, ...).
    #[serde(flatten)]
    pub(crate) settings: toml::Table,
}

impl RawProbe {
    /// `self` with every key `over` sets replaced.
    pub(crate) fn overlay(&self, over: &RawProbe) -> RawProbe {
        let mut settings = self.settings.clone();
        settings.extend(over.settings.clone());
        RawProbe {
            kind: over.kind.clone().or_else(|| self.kind.clone()),
            interval: over.interval.clone().or_else(|| self.interval.clone()),
            timeout: over.timeout.clone().or_else(|| self.timeout.clone()),
            jitter: over.jitter.clone().or_else(|| self.jitter.clone()),
            rise: over.rise.or(self.rise),
            fall: over.fall.or(self.fall),
            settings,
        }
    }
}

/// A backend as written: `"127.0.0.2"` or `{ address = "127.0.0.2", name = "web1", weight = 2 }`.
#[derive(Debug, Default)]
pub(crate) struct RawBackend {
    pub(crate) address: String,
    pub(crate) name: Option<String>,
    pub(crate) weight: Option<u32>,
    /// `priority` policy tier, 1 first (default 1).
    pub(crate) tier: Option<u32>,
    pub(crate) probe: Option<RawProbe>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackendTable {
    address: String,
    name: Option<String>,
    weight: Option<u32>,
    tier: Option<u32>,
    probe: Option<RawProbe>,
}

// Hand-written so that both spellings work and a bad table still gets serde's precise message
// ("unknown field `wieght`, expected one of ...") instead of an untagged enum's "did not match
// any variant".
impl<'de> Deserialize<'de> for RawBackend {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BackendVisitor;

        impl<'de> Visitor<'de> for BackendVisitor {
            type Value = RawBackend;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an address string or a table with `address`, `name`, `weight`")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawBackend, E> {
                Ok(RawBackend {
                    address: v.to_owned(),
                    ..RawBackend::default()
                })
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawBackend, A::Error> {
                let t = RawBackendTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawBackend {
                    address: t.address,
                    name: t.name,
                    weight: t.weight,
                    tier: t.tier,
                    probe: t.probe,
                })
            }
        }

        deserializer.deserialize_any(BackendVisitor)
    }
}
