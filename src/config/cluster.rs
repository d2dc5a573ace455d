//! `[cluster]`: the peers an instance shares its probe observations and drains with, the key
//! that authenticates them, and how their views combine into one verdict (quorum).

use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{Cx, key};

/// Default time between two messages to each peer: half the default probe interval, so every
/// probe result reaches the peers before the next one is made.
pub const DEFAULT_EXCHANGE_INTERVAL: Duration = Duration::from_millis(500);

/// `[cluster]` as written. Every key is optional; without `peers` the section is off.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCluster {
    /// UDP address peers send to (and this instance sends from).
    listen: Option<Spanned<String>>,
    /// The other instances' `listen` addresses.
    peers: Option<Spanned<Vec<String>>>,
    /// File holding the shared secret (not readable by others).
    key_file: Option<Spanned<String>>,
    /// `"majority"` or a number of instances that must see a backend up.
    quorum: Option<Spanned<toml::Value>>,
    /// Time between two messages to each peer.
    exchange_interval: Option<Spanned<String>>,
    /// A peer's view not heard again within this does not count.
    peer_max_age: Option<Spanned<String>>,
}

/// How the fresh views of all instances (this one included) decide a backend's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quorum {
    /// Up while more than half of the instances with a fresh view see it up; a tie is down,
    /// so a peer that fell silent cannot hold a dead backend in answers.
    Majority,
    /// Up while at least this many instances with a fresh view see it up (all of them, when
    /// fewer have a fresh view).
    AtLeast(usize),
}

/// The validated `[cluster]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// The UDP address this instance receives peer messages on and sends them from.
    pub listen: SocketAddr,
    /// The other instances, by their `listen` address.
    pub peers: Vec<SocketAddr>,
    /// The shared secret's file (read and checked by `check` and at start).
    pub key_file: PathBuf,
    /// How the views combine.
    pub quorum: Quorum,
    /// Time between two messages to each peer.
    pub exchange_interval: Duration,
    /// A peer's view not heard again within this does not count.
    pub peer_max_age: Duration,
}

impl ClusterConfig {
    /// How much later than its own detection an instance can learn that a backend is down by
    /// quorum: one exchange (a live peer's down vote arrives), or, when a quorum can be met by
    /// one instance, the age at which a silent peer's last up vote stops counting.
    pub fn detection_delay(&self) -> Duration {
        match self.quorum {
            Quorum::Majority => self.exchange_interval,
            Quorum::AtLeast(_) => self.exchange_interval.max(self.peer_max_age),
        }
    }
}

impl Cx<'_> {
    /// Validates `[cluster]`; `None` when it names no peers.
    pub(super) fn cluster(
        &mut self,
        raw: RawCluster,
        table: Range<usize>,
    ) -> Option<ClusterConfig> {
        let RawCluster {
            listen,
            peers,
            key_file,
            quorum,
            exchange_interval,
            peer_max_age,
        } = raw;
        let (peers, peers_at) = key(peers, &table);
        let Some(peers_text) = peers else {
            let others = [
                listen.is_some(),
                key_file.is_some(),
                quorum.is_some(),
                exchange_interval.is_some(),
                peer_max_age.is_some(),
            ];
            if others.contains(&true) {
                self.invalid(table, "cluster: no peers: the other keys need `peers`");
            }
            return None;
        };
        let mut peer_addrs = Vec::new();
        for p in &peers_text {
            match p.parse::<SocketAddr>() {
                Ok(a) if !peer_addrs.contains(&a) => peer_addrs.push(a),
                Ok(a) => self.invalid(peers_at.clone(), format!("cluster: peer {a} given twice")),
                Err(_) => self.invalid(
                    peers_at.clone(),
                    format!("cluster: peer `{p}` is not an address:port such as 127.0.0.54:8055"),
                ),
            }
        }
        let (listen, listen_at) = key(listen, &table);
        let listen = match listen.as_deref().map(str::parse::<SocketAddr>) {
            Some(Ok(a)) if !peer_addrs.contains(&a) => Some(a),
            Some(Ok(a)) => {
                self.invalid(listen_at, format!("cluster: listen {a} is also a peer"));
                None
            }
            Some(Err(_)) => {
                self.invalid(listen_at, "cluster: listen is not an address:port");
                None
            }
            None => {
                self.invalid(table.clone(), "cluster: peers need a listen address");
                None
            }
        };
        let (key_file, key_at) = key(key_file, &table);
        let key_file = match key_file {
            Some(k) if !k.is_empty() => Some(self.relative_to_config(&k)),
            _ => {
                self.invalid(key_at, "cluster: peers need a key_file");
                None
            }
        };
        let (quorum, quorum_at) = key(quorum, &table);
        let quorum = match quorum {
            None => Quorum::Majority,
            Some(toml::Value::String(s)) if s == "majority" => Quorum::Majority,
            Some(toml::Value::Integer(n)) if n >= 1 && (n as usize) <= peer_addrs.len() + 1 => {
                Quorum::AtLeast(n as usize)
            }
            Some(other) => {
                self.invalid(
                    quorum_at,
                    format!(
                        "cluster: quorum {other} is not \"majority\" or a number from 1 to {}",
                        peer_addrs.len() + 1
                    ),
                );
                Quorum::Majority
            }
        };
        let (x, x_at) = key(exchange_interval, &table);
        let exchange_interval = self.duration(
            &x_at,
            "cluster: exchange_interval",
            x.as_deref(),
            DEFAULT_EXCHANGE_INTERVAL,
        );
        if exchange_interval.is_zero() {
            self.invalid(x_at, "cluster: exchange_interval must be more than 0");
        }
        let (age, age_at) = key(peer_max_age, &table);
        let peer_max_age = self.duration(
            &age_at,
            "cluster: peer_max_age",
            age.as_deref(),
            exchange_interval * 3,
        );
        if peer_max_age <= exchange_interval {
            self.invalid(
                age_at,
                "cluster: peer_max_age must be longer than exchange_interval",
            );
        }
        Some(ClusterConfig {
            listen: listen?,
            peers: peer_addrs,
            key_file: key_file?,
            quorum,
            exchange_interval,
            peer_max_age,
        })
    }
}
