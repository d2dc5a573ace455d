//! `RawConfig`: the TOML file as written, before any cross-field validation.
//!
//! Every struct mirrors one TOML table and rejects unknown keys. Values stay as the operator
//! typed them (strings for names, addresses and durations) so that `Config::from_raw` can report
//! every problem with its place instead of stopping at the first one serde meets.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};

/// `[server]`: listeners and protocol limits. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Addresses to answer on, UDP and TCP both (default `["127.0.0.1:5353"]`).
    pub listen: Option<Vec<String>>,
    /// UDP worker threads per listen address; 0 means one per CPU core (default 0).
    pub udp_workers: Option<usize>,
    /// How long an idle TCP connection stays open, e.g. `"10s"` (default 10 s, RFC 7766 §6.2.3).
    pub tcp_idle_timeout: Option<String>,
    /// Concurrent TCP connections accepted before new ones are closed (default 256).
    pub tcp_max_connections: Option<usize>,
    /// Largest UDP response lbns sends and the size it advertises in EDNS (default 1232, the
    /// DNS Flag Day 2020 value that avoids IP fragmentation).
    pub edns_udp_size: Option<u16>,
}

/// One `[[zone]]`: an origin served from an RFC 1035 master file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawZone {
    /// Zone apex, e.g. `"cluster.example."`. Names in the config are always absolute.
    pub origin: String,
    /// Master file, relative to the directory of the config file.
    pub file: String,
}

/// One `[[pool]]`: a name answered with the addresses of its backends.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    /// Owner name of the pool; must sit inside a served zone.
    pub name: String,
    /// TTL of pool answers in seconds (default 5).
    pub ttl: Option<u32>,
    /// Most addresses per answer; 0 or absent means all of them.
    pub answers: Option<usize>,
    /// Members: an address string, or a table `{ address, name, weight }`.
    pub backends: Vec<RawBackend>,
}

/// A backend as written: `"127.0.0.2"` or `{ address = "127.0.0.2", name = "web1", weight = 2 }`.
#[derive(Debug)]
pub struct RawBackend {
    pub address: String,
    pub name: Option<String>,
    pub weight: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackendTable {
    address: String,
    name: Option<String>,
    weight: Option<u32>,
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
                    name: None,
                    weight: None,
                })
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawBackend, A::Error> {
                let t = RawBackendTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawBackend {
                    address: t.address,
                    name: t.name,
                    weight: t.weight,
                })
            }
        }

        deserializer.deserialize_any(BackendVisitor)
    }
}
