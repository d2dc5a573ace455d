//! Peers: the messages instances of one cluster exchange — each one's own view of every backend
//! and its drained set — authenticated with HMAC-SHA256 under a shared key, bounded in size,
//! and rejected when forged, malformed, replayed or too old.
//!
//! A datagram is a 32-byte tag, HMAC-SHA256(key, body), then the body, JSON:
//!
//! ```text
//! {"v":1,"boot":B,"seq":N,"sent":MS,"drain_version":V,"drains":[[pool,backend],...],
//!  "views":[[pool,address,"up"|"down",load|null,age_ms],...]}
//! ```
//!
//! `boot` (the sender's start time) and `seq` (counting up within one boot) make every
//! message unique: a receiver takes only messages newer than the last it took from that peer,
//! so a replayed message is refused. `sent` (the sender's wall clock, milliseconds since the
//! Unix epoch) must be within `peer_max_age` of the receiver's: instances keep their clocks in
//! sync (NTP), as they must for logs anyway. A view's `age_ms` says how old the observation
//! was when sent, so the receiver dates it on its own monotonic clock.

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::domain::HealthState;

/// The tag's length: HMAC-SHA256.
const TAG_LEN: usize = 32;
/// The largest datagram sent or taken; a sender splits its views over several messages.
pub(crate) const MAX_DATAGRAM: usize = 60_000;
/// The shortest key accepted: 128 bits.
const MIN_KEY: usize = 16;
/// The longest key file read.
const MAX_KEY_FILE: u64 = 4096;

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// It cannot be read.
    #[error("cluster key_file {path}: cannot read: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Others may read it: the key would not be a secret.
    #[error("cluster key_file {path}: readable by others (mode {mode:o}); chmod 600 or 640")]
    WorldReadable {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// Too short or too long to be a key.
    #[error(
        "cluster key_file {path}: the key must be {MIN_KEY} to {MAX_KEY_FILE} bytes (e.g. `head -c 32 /dev/urandom | base64`)"
    )]
    Size {
        /// The file.
        path: String,
    },
}

/// The cluster's shared secret. Its `Debug` never shows the bytes.
#[derive(Clone)]
pub(crate) struct PeerKey(Vec<u8>);

impl std::fmt::Debug for PeerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerKey(..)")
    }
}

impl PeerKey {
    /// Reads the key from `path`: a regular file not readable by others, its content (trimmed
    /// of surrounding whitespace) 16 to 4096 bytes.
    pub(crate) fn load(path: &Path) -> Result<PeerKey, KeyError> {
        let shown = path.display().to_string();
        let read = |source| KeyError::Read {
            path: shown.clone(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read)?;
        if !meta.is_file() || meta.len() > MAX_KEY_FILE {
            return Err(KeyError::Size { path: shown });
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o004 != 0 {
            return Err(KeyError::WorldReadable { path: shown, mode });
        }
        let bytes = std::fs::read(path).map_err(read)?;
        let text = bytes.trim_ascii();
        if text.len() < MIN_KEY {
            return Err(KeyError::Size { path: shown });
        }
        Ok(PeerKey(text.to_vec()))
    }

    #[cfg(test)]
    pub(crate) fn from_bytes(bytes: &[u8]) -> PeerKey {
        PeerKey(bytes.to_vec())
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length")
    }
}

/// One backend as a message names it, with the sender's view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct WireView(
    /// Pool name, absolute.
    pub(crate) String,
    /// Backend address, as text.
    pub(crate) String,
    /// `up` or `down`.
    pub(crate) String,
    /// Reported load.
    pub(crate) Option<f64>,
    /// How old the observation was when sent, in milliseconds.
    pub(crate) u64,
);

/// One message's body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Message {
    /// Format version: 1.
    pub(crate) v: u32,
    /// The sender's start, milliseconds since the Unix epoch.
    pub(crate) boot: u64,
    /// Counts up within one boot.
    pub(crate) seq: u64,
    /// The sender's wall clock when sending, milliseconds since the Unix epoch.
    pub(crate) sent: u64,
    /// The version of `drains` (see the health table).
    pub(crate) drain_version: u64,
    /// The sender's drained set, (pool, backend) by name.
    pub(crate) drains: Vec<(String, String)>,
    /// The sender's own views.
    pub(crate) views: Vec<WireView>,
}

impl Message {
    /// The view's state, if it is one a peer may send.
    pub(crate) fn state(text: &str) -> Option<HealthState> {
        match text {
            "up" => Some(HealthState::Up),
            "down" => Some(HealthState::Down),
            _ => None,
        }
    }

    /// The drained set as the health table keeps it.
    pub(crate) fn drained_set(&self) -> HashSet<(String, String)> {
        self.drains.iter().cloned().collect()
    }
}

/// Why [`open`] refused a datagram (counted per peer, never logged per datagram; strangers
/// and replays are refused by [`Link::receive`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Too short or too long.
    Size,
    /// The tag does not match: a forgery, or another key.
    Forged,
    /// Not a message of this format.
    Malformed,
    /// Sent longer ago than `peer_max_age` (or from the future by as much).
    Stale,
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Encodes `message` under `key`: tag, then body. `None` if it would exceed
/// [`MAX_DATAGRAM`] (the sender splits its views first).
pub(crate) fn seal(key: &PeerKey, message: &Message) -> Option<Vec<u8>> {
    let body = serde_json::to_vec(message).expect("a message serializes");
    if body.len() + TAG_LEN > MAX_DATAGRAM {
        return None;
    }
    let mut mac = key.mac();
    mac.update(&body);
    let mut out = mac.finalize().into_bytes().to_vec();
    out.extend_from_slice(&body);
    Some(out)
}

/// Checks and decodes one datagram: size, tag (in constant time), format, age. Replays are
/// the caller's to refuse (it keeps each peer's last `(boot, seq)`).
pub(crate) fn open(
    key: &PeerKey,
    datagram: &[u8],
    now_ms: u64,
    max_age: Duration,
) -> Result<Message, Refusal> {
    if datagram.len() <= TAG_LEN || datagram.len() > MAX_DATAGRAM {
        return Err(Refusal::Size);
    }
    let (tag, body) = datagram.split_at(TAG_LEN);
    let mut mac = key.mac();
    mac.update(body);
    mac.verify_slice(tag).map_err(|_| Refusal::Forged)?;
    let message: Message = serde_json::from_slice(body).map_err(|_| Refusal::Malformed)?;
    if message.v != 1 {
        return Err(Refusal::Malformed);
    }
    if now_ms.abs_diff(message.sent) > max_age.as_millis() as u64 {
        return Err(Refusal::Stale);
    }
    Ok(message)
}

/// Splits `views` into messages of at most [`MAX_DATAGRAM`] bytes; drains go in the first.
pub(crate) fn split(
    mut template: Message,
    views: Vec<WireView>,
    key: &PeerKey,
    seq: &AtomicU64,
) -> Vec<Vec<u8>> {
    // About 80 bytes a view: a chunk of 500 stays well under the limit.
    const CHUNK: usize = 500;
    let mut out = Vec::new();
    let mut chunks: Vec<Vec<WireView>> = views.chunks(CHUNK).map(<[_]>::to_vec).collect();
    if chunks.is_empty() {
        chunks.push(Vec::new());
    }
    for (i, chunk) in chunks.into_iter().enumerate() {
        if i > 0 {
            // Drains ride in the first part only: a later part must not pass for an empty set.
            template.drains.clear();
            template.drain_version = 0;
        }
        template.seq = seq.fetch_add(1, Ordering::Relaxed);
        template.views = chunk;
        if let Some(d) = seal(key, &template) {
            out.push(d);
        }
    }
    out
}

/// Most datagrams taken from one peer in one second; more are refused (a peer sends a few per
/// exchange interval: one per 500 views).
const MAX_PER_SECOND: u32 = 200;

/// What this instance knows of one peer, for the status page and `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct PeerStats {
    /// Messages taken.
    pub(crate) received: AtomicU64,
    /// Datagrams refused: forged, malformed, replayed, stale, oversized or too many.
    pub(crate) rejected: AtomicU64,
    /// When the last message was taken.
    pub(crate) last_heard: std::sync::Mutex<Option<tokio::time::Instant>>,
}

/// A message taken from a peer, for the monitor to apply.
#[derive(Debug)]
pub(crate) struct Received {
    /// The peer's index in the model's peer list.
    pub(crate) peer: usize,
    /// What it said.
    pub(crate) message: Message,
    /// When it arrived.
    pub(crate) at: tokio::time::Instant,
}

/// This instance's end of the cluster: its socket, the key, and what it counts of each peer.
#[derive(Debug)]
pub(crate) struct Link {
    socket: tokio::net::UdpSocket,
    key: PeerKey,
    /// The peers, by address; indexes match the model's.
    pub(crate) peers: Vec<std::net::SocketAddr>,
    /// Per peer, indexed like `peers`.
    pub(crate) stats: Vec<PeerStats>,
    /// Datagrams from addresses that are not peers.
    pub(crate) strangers: AtomicU64,
    max_age: Duration,
    boot: u64,
    seq: AtomicU64,
}

impl Link {
    /// The link over `socket` (bound to the cluster's listen address before privileges were
    /// dropped).
    pub(crate) fn new(
        socket: std::net::UdpSocket,
        key: PeerKey,
        peers: Vec<std::net::SocketAddr>,
        max_age: Duration,
    ) -> io::Result<Link> {
        socket.set_nonblocking(true)?;
        Ok(Link {
            socket: tokio::net::UdpSocket::from_std(socket)?,
            key,
            stats: peers.iter().map(|_| PeerStats::default()).collect(),
            peers,
            strangers: AtomicU64::new(0),
            max_age,
            boot: now_ms(),
            seq: AtomicU64::new(1),
        })
    }

    /// Sends this instance's drains and views to every peer (several datagrams if needed).
    /// UDP, best effort: a full socket buffer drops a message, and the next exchange repeats
    /// everything anyway.
    pub(crate) fn send(
        &self,
        drain_version: u64,
        drains: Vec<(String, String)>,
        views: Vec<WireView>,
    ) {
        let template = Message {
            v: 1,
            boot: self.boot,
            seq: 0,
            sent: now_ms(),
            drain_version,
            drains,
            views: Vec::new(),
        };
        for datagram in split(template, views, &self.key, &self.seq) {
            for peer in &self.peers {
                let _ = self.socket.try_send_to(&datagram, *peer);
            }
        }
    }

    /// Takes datagrams until `to` closes: each one from a peer that opens, is newer than the
    /// last taken from it and within the rate goes to `to`; the rest are counted.
    pub(crate) async fn receive(&self, to: tokio::sync::mpsc::UnboundedSender<Received>) {
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        let mut last: Vec<Option<(u64, u64)>> = vec![None; self.peers.len()];
        let mut window: Vec<(u64, u32)> = vec![(0, 0); self.peers.len()];
        loop {
            let Ok((n, from)) = self.socket.recv_from(&mut buf).await else {
                continue;
            };
            let Some(peer) = self.peers.iter().position(|p| *p == from) else {
                self.strangers.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let stats = &self.stats[peer];
            let now = now_ms();
            let second = now / 1000;
            let w = &mut window[peer];
            if w.0 != second {
                *w = (second, 0);
            }
            w.1 += 1;
            if w.1 > MAX_PER_SECOND {
                stats.rejected.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let message = match open(&self.key, &buf[..n], now, self.max_age) {
                Ok(m) => m,
                Err(_) => {
                    stats.rejected.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            };
            if last[peer].is_some_and(|l| (message.boot, message.seq) <= l) {
                stats.rejected.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            last[peer] = Some((message.boot, message.seq));
            stats.received.fetch_add(1, Ordering::Relaxed);
            let at = tokio::time::Instant::now();
            *stats.last_heard.lock().expect("peer stats lock") = Some(at);
            if to.send(Received { peer, message, at }).is_err() {
                return;
            }
        }
    }

    /// Peers heard from within `max_age` of `now`.
    pub(crate) fn fresh_peers(&self, now: tokio::time::Instant) -> usize {
        self.stats
            .iter()
            .filter(|s| {
                s.last_heard
                    .lock()
                    .expect("peer stats lock")
                    .is_some_and(|t| now.saturating_duration_since(t) <= self.max_age)
            })
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PeerKey {
        PeerKey::from_bytes(b"0123456789abcdef0123456789abcdef")
    }

    fn message(sent: u64) -> Message {
        Message {
            v: 1,
            boot: 1,
            seq: 7,
            sent,
            drain_version: 3,
            drains: vec![("www.lb.test.".into(), "web1".into())],
            views: vec![WireView(
                "www.lb.test.".into(),
                "127.0.0.2".into(),
                "up".into(),
                Some(0.5),
                120,
            )],
        }
    }

    #[test]
    fn a_sealed_message_opens_with_the_key_only() {
        let m = message(10_000);
        let d = seal(&key(), &m).unwrap();
        assert_eq!(open(&key(), &d, 10_100, Duration::from_secs(2)), Ok(m));
        let other = PeerKey::from_bytes(b"another key, just as long as it");
        assert_eq!(
            open(&other, &d, 10_100, Duration::from_secs(2)),
            Err(Refusal::Forged)
        );
        // One flipped bit anywhere is a forgery.
        for i in [0, 31, 32, d.len() - 1] {
            let mut bad = d.clone();
            bad[i] ^= 1;
            assert_eq!(
                open(&key(), &bad, 10_100, Duration::from_secs(2)),
                Err(Refusal::Forged),
                "bit flipped at {i}"
            );
        }
    }

    #[test]
    fn old_short_long_and_malformed_datagrams_are_refused() {
        let d = seal(&key(), &message(10_000)).unwrap();
        assert_eq!(
            open(&key(), &d, 12_001, Duration::from_secs(2)),
            Err(Refusal::Stale)
        );
        assert_eq!(
            open(&key(), &d[..20], 10_000, Duration::from_secs(2)),
            Err(Refusal::Size)
        );
        assert_eq!(
            open(
                &key(),
                &vec![0; MAX_DATAGRAM + 1],
                0,
                Duration::from_secs(2)
            ),
            Err(Refusal::Size)
        );
        // Authentic but not a message: signed garbage.
        let mut mac = key().mac();
        mac.update(b"{\"v\":1}");
        let mut signed = mac.finalize().into_bytes().to_vec();
        signed.extend_from_slice(b"{\"v\":1}");
        assert_eq!(
            open(&key(), &signed, 0, Duration::from_secs(2)),
            Err(Refusal::Malformed)
        );
    }

    #[test]
    fn many_views_split_into_bounded_datagrams() {
        let views: Vec<WireView> = (0..2_000)
            .map(|i| {
                WireView(
                    "a-rather-long-pool-name.cluster.example.".into(),
                    format!("2001:db8::{i:x}"),
                    "down".into(),
                    Some(12.5),
                    999,
                )
            })
            .collect();
        let seq = AtomicU64::new(1);
        let parts = split(message(5), views, &key(), &seq);
        assert_eq!(parts.len(), 4);
        let mut total = 0;
        for (i, p) in parts.iter().enumerate() {
            assert!(p.len() <= MAX_DATAGRAM);
            let m = open(&key(), p, 5, Duration::from_secs(1)).unwrap();
            assert_eq!(m.seq, i as u64 + 1, "each part has its own seq");
            assert_eq!(m.drains.is_empty(), i > 0, "drains ride in the first part");
            total += m.views.len();
        }
        assert_eq!(total, 2_000);
    }

    #[test]
    fn a_key_file_must_be_private_and_long_enough() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "0123456789abcdef0123\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(PeerKey::load(&path).is_ok());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = PeerKey::load(&path).unwrap_err().to_string();
        assert!(e.contains("readable by others (mode 644)"), "{e}");
        std::fs::write(&path, "short").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = PeerKey::load(&path).unwrap_err().to_string();
        assert!(e.contains("must be 16 to 4096 bytes"), "{e}");
        // The message names the file, never its content.
        assert!(!e.contains("short"), "{e}");
    }
}
