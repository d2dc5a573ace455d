//! Client side of the lbcd UDP load protocol (Stanford's lbcd, the daemon lbnamed polls):
//! request encoding, strict reply decoding, and one query over a connected UDP socket.
//!
//! The wire format is lbcd's `server/protocol.h` (lbcd 3.5.2), all integers big-endian:
//!
//! ```text
//! header   (8)  u16 version (2|3), u16 id, u16 op (1 = LBCD_OP_LBINFO), u16 status
//! request       header; v3 only: status = number of services (at most 5), then that many
//!               32-byte NUL-padded service names
//! reply    (36) header (status 1 = LBCD_STATUS_OK), u32 boot_time, u32 current_time,
//!               u32 user_mtime, u16 l1, u16 l5, u16 l15 (load x 100), u16 tot_users,
//!               u16 uniq_users, u8 on_console, u8 reserved, u8 tmp_full, u8 tmpdir_full,
//!               u8 pad, u8 services
//!          then (services + 1) x {u32 host_weight, u32 host_incr}: the default service
//!               first, then each requested service in request order
//! ```
//!
//! An error reply is the bare 8-byte header with an error status (lbcd.c `send_status`), and
//! always says version 3 whatever version was asked, which is why the status is checked before
//! the version.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::UdpSocket;

use super::{Probe, ProbeFuture, Reading, Target};

/// lbcd's default UDP port (`LBCD_PORTNUM` in protocol.h, `-p` in lbcd(8)).
pub const DEFAULT_PORT: u16 = 4330;

/// The most services a v3 request may name (`LBCD_MAX_SERVICES`); lbcd silently drops
/// requests with more, so asking for more could only ever time out.
pub(crate) const MAX_SERVICES: usize = 5;

/// The on-wire service name field (`lbcd_name_type`, `char[32]`), NUL-terminated, so names
/// are at most 31 bytes (lbcdclient(1) enforces the same limit).
const NAME_LEN: usize = 32;
const HEADER_LEN: usize = 8;
/// Header plus the fixed part of `struct lbcd_reply`, before the weights.
const FIXED_LEN: usize = 36;
/// One `struct lbcd_service`.
const WEIGHT_LEN: usize = 8;
/// `LBCD_OP_LBINFO`, the only operation.
const OP_LBINFO: u16 = 1;
/// `LBCD_STATUS_OK`: the only status of a successful reply (0 marks a request).
const STATUS_OK: u16 = 1;
/// `LBCD_MAXMESG`: far above the largest real reply (36 + 6 x 8 = 84 bytes); anything
/// bigger is rejected by the length checks anyway.
const RECV_BUF: usize = 2048;

/// One service's weight and increment: the load balancer should take `weight` as the host's
/// load and add `increment` for each client it sends there until the next poll (lbcd(8)).
pub use crate::domain::LbcdWeight;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// lbcd's UDP port (default 4330).
    port: Option<u16>,
    /// Protocol version 2 or 3 (default 3).
    version: Option<u8>,
    /// Service whose weight to ask for (v3); default: the host's own weight.
    service: Option<String>,
    /// The address to ask from (lbnamed matches replies by source address).
    source: Option<IpAddr>,
}

/// `kind = "lbcd"`: up when lbcd answers; its load and weight order the `best` and
/// `least-loaded` policies.
pub(crate) fn build(table: &toml::Table, target: &Target<'_>) -> Result<Box<dyn Probe>, String> {
    let Settings {
        port,
        version,
        service,
        source,
    } = super::settings("lbcd", table)?;
    super::check_source(source, target)?;
    let version = version.unwrap_or(3);
    if !matches!(version, 2 | 3) {
        return Err(format!("lbcd version {version} is not 2 or 3"));
    }
    if let Some(s) = &service
        && (s.len() >= NAME_LEN || version == 2)
    {
        return Err(format!(
            "lbcd service `{s}` needs version 3 and at most {} bytes",
            NAME_LEN - 1
        ));
    }
    Ok(Box::new(LbcdProbe {
        server: SocketAddr::new(target.address, port.unwrap_or(DEFAULT_PORT)),
        version,
        service,
        timeout: target.timeout,
        source,
    }))
}

/// One backend's lbcd probe.
struct LbcdProbe {
    server: SocketAddr,
    version: u8,
    service: Option<String>,
    timeout: Duration,
    source: Option<IpAddr>,
}

impl Probe for LbcdProbe {
    fn run(&mut self) -> ProbeFuture<'_> {
        Box::pin(async move {
            let addr = self.server;
            let services: Vec<&str> = self.service.iter().map(String::as_str).collect();
            let reply = query_from(addr, self.source, self.version, &services, self.timeout)
                .await
                .map_err(|e| format!("lbcd {addr}: {e}"))?;
            // The last weight pair is the asked service's (or the host default).
            let weight = reply.weights.last().copied();
            // v2 replies carry lbcd's weight in the load fields (lbcd(8)), so only v3 reports
            // a real load.
            let load = (self.version >= 3).then(|| reply.load1());
            let detail = match (load, weight) {
                (Some(l), Some(w)) => format!("lbcd {addr}: load {l:.2}, weight {}", w.weight),
                (Some(l), None) => format!("lbcd {addr}: load {l:.2}"),
                (None, Some(w)) => format!("lbcd {addr}: weight {}", w.weight),
                (None, None) => format!("lbcd {addr}: answered"),
            };
            Ok(Reading {
                load,
                lbcd: weight,
                detail,
            })
        })
    }

    fn describe(&self) -> String {
        format!("lbcd v{}:{}", self.version, self.server.port())
    }
}

/// A decoded, validated lbcd reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbcdReply {
    /// The protocol version of the reply (2 or 3), equal to the one asked.
    pub version: u8,
    /// When the host booted, in seconds since the epoch by the host's clock.
    pub boot_time: u32,
    /// The host's clock when it answered, in seconds since the epoch.
    pub current_time: u32,
    /// When the logged-in user information last changed (0 if unknown).
    pub(crate) user_mtime: u32,
    /// 1, 5 and 15 minute load averages, times 100. In a v2 reply, unless lbcd runs with
    /// `-S`, all three are replaced by the default service weight (lbcd(8): lbnamed only
    /// understands loads), and the user counts are zeroed.
    pub load: [u16; 3],
    /// Login sessions on the host (`tot_users`).
    pub total_users: u16,
    /// Distinct users logged in (`uniq_users`).
    pub unique_users: u16,
    pub(crate) on_console: bool,
    /// How full /tmp is, in percent.
    pub tmp_full: u8,
    /// How full `P_tmpdir` (/var/tmp) is, in percent.
    pub tmpdir_full: u8,
    /// The default service first, then one per requested service in request order. Empty only
    /// for a v2 reply from a daemon that sends no weights at all (the 36-byte form).
    pub weights: Vec<LbcdWeight>,
}

impl LbcdReply {
    /// The one-minute load (or, in a v2 reply without `-S`, the default weight / 100).
    pub fn load1(&self) -> f64 {
        f64::from(self.load[0]) / 100.0
    }
}

/// Everything that can go wrong building a request, decoding a reply or querying.
#[derive(Debug, thiserror::Error)]
pub enum LbcdError {
    /// A protocol version other than 2 or 3 was asked for; nothing is sent.
    #[error("unsupported lbcd protocol version {0}: expected 2 or 3")]
    UnsupportedVersion(u8),
    /// A v3 request naming more services than lbcd accepts (5, `LBCD_MAX_SERVICES`).
    #[error("{count} services requested: the lbcd protocol allows at most {MAX_SERVICES}")]
    TooManyServices {
        /// How many services the caller named.
        count: usize,
    },
    /// A service name that does not fit the NUL-terminated 32-byte field.
    #[error(
        "lbcd service name {name:?} is {len} bytes: expected at most 31 (a NUL-terminated \
         32-byte field)"
    )]
    ServiceNameTooLong {
        /// The offending name, as the caller passed it.
        name: String,
        /// Its length in bytes.
        len: usize,
    },
    /// An empty service name, or one containing a NUL byte.
    #[error("lbcd service name {name:?} is invalid: expected a non-empty name without NUL bytes")]
    InvalidServiceName {
        /// The offending name, as the caller passed it.
        name: String,
    },
    /// A reply too short for its header or for the fixed part of a reply.
    #[error("truncated lbcd reply: {len} bytes, expected at least {need} ({what})")]
    Truncated {
        /// Bytes received.
        len: usize,
        /// Bytes the part named by `what` needs.
        need: usize,
        /// The part that was cut short, e.g. `the header`.
        what: &'static str,
    },
    /// [`query`] skips such datagrams and keeps waiting: they answer an earlier query.
    #[error("lbcd reply has id {got}, expected {expected} (a stale or foreign reply)")]
    WrongId {
        /// The id our request carried.
        expected: u16,
        /// The id in the reply.
        got: u16,
    },
    /// A reply in another protocol version than the one asked.
    #[error("lbcd reply has protocol version {got}, expected {expected}")]
    WrongVersion {
        /// The version asked for (2 or 3).
        expected: u8,
        /// The reply's version field.
        got: u16,
    },
    /// A reply to another operation than query-load (`LBCD_OP_LBINFO`, 1).
    #[error("lbcd reply has operation {got}, expected {OP_LBINFO} (query load)")]
    WrongOp {
        /// The reply's operation field.
        got: u16,
    },
    /// An error reply: the bare header with a status other than 1 (ok), e.g. 2 for a service
    /// lbcd was not started to allow (`-a`).
    #[error("lbcd replied with status {status} ({meaning}), expected {STATUS_OK} (ok)")]
    ErrorStatus {
        /// The reply's status field (`enum lbcd_status` in protocol.h).
        status: u16,
        /// What protocol.h says that status means.
        meaning: &'static str,
    },
    /// A reply whose length does not match the service count it announces.
    #[error(
        "lbcd reply is {len} bytes but announces {services} requested service(s): expected \
         {expected} bytes ({FIXED_LEN} + {WEIGHT_LEN} x (1 default + {services}))"
    )]
    ServiceCountMismatch {
        /// The count in the reply's `services` byte.
        services: u8,
        /// Bytes received.
        len: usize,
        /// Bytes that count implies: 36 + 8 x (1 + `services`).
        expected: usize,
    },
    /// Only from [`query`], which knows how many services it asked for.
    #[error("lbcd reply carries weights for {returned} requested service(s), expected {requested}")]
    UnexpectedServices {
        /// Services the request named (always 0 for v2).
        requested: usize,
        /// Weights in the reply besides the default service's.
        returned: usize,
    },
    /// No reply with our id before the deadline.
    #[error("no lbcd reply from {server} within {timeout:?}")]
    Timeout {
        /// The lbcd that was asked.
        server: SocketAddr,
        /// How long [`query`] waited.
        timeout: Duration,
    },
    /// A socket call failed; an ICMP port unreachable shows up here as "Connection refused".
    #[error("lbcd query to {server}: cannot {action}: {source}")]
    Io {
        /// The lbcd that was asked.
        server: SocketAddr,
        /// The step that failed, e.g. `send the request`.
        action: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// What each `enum lbcd_status` value means (protocol.h; the same words as lbcdclient).
fn status_meaning(status: u16) -> &'static str {
    match status {
        0 => "a request packet, not a reply",
        1 => "ok",
        2 => "generic error, e.g. a service that is not allowed with -a",
        3 => "protocol version error",
        4 => "generic protocol error",
        5 => "unknown operation requested",
        _ => "unknown status",
    }
}

/// Builds a query-load request. Version 2 has no service list, so `services` is ignored;
/// version 3 sends each name NUL-padded to 32 bytes, their count in the status field.
pub(crate) fn encode_request(
    version: u8,
    id: u16,
    services: &[&str],
) -> Result<Vec<u8>, LbcdError> {
    let services: &[&str] = match version {
        2 => &[],
        3 => services,
        other => return Err(LbcdError::UnsupportedVersion(other)),
    };
    if services.len() > MAX_SERVICES {
        return Err(LbcdError::TooManyServices {
            count: services.len(),
        });
    }
    let mut out = Vec::with_capacity(HEADER_LEN + NAME_LEN * services.len());
    out.extend_from_slice(&u16::from(version).to_be_bytes());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&OP_LBINFO.to_be_bytes());
    // Bounded by MAX_SERVICES above, so the cast cannot truncate.
    out.extend_from_slice(&(services.len() as u16).to_be_bytes());
    for name in services {
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.contains(&0) {
            return Err(LbcdError::InvalidServiceName {
                name: (*name).to_owned(),
            });
        }
        if bytes.len() >= NAME_LEN {
            return Err(LbcdError::ServiceNameTooLong {
                name: (*name).to_owned(),
                len: bytes.len(),
            });
        }
        let mut field = [0u8; NAME_LEN];
        field[..bytes.len()].copy_from_slice(bytes);
        out.extend_from_slice(&field);
    }
    Ok(out)
}

/// Big-endian readers; callers have checked the length, so indexing is in bounds.
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Decodes and validates one reply datagram. Checks, in order: a full header; the id (so a
/// caller can tell a stale reply from a bad one); the status (error replies carry version 3
/// whatever was asked, so a version check first would hide the real cause); the version; the
/// operation; then that the length is exactly what the service count announces.
///
/// A v2 reply of exactly 36 bytes with no services is accepted with no weights: lbnamed, the
/// v2 client, reads only the fixed part, and lbcdclient(1) ignores weights for v2.
pub(crate) fn decode_reply(
    bytes: &[u8],
    expected_id: u16,
    expected_version: u8,
) -> Result<LbcdReply, LbcdError> {
    let len = bytes.len();
    if len < HEADER_LEN {
        return Err(LbcdError::Truncated {
            len,
            need: HEADER_LEN,
            what: "the header",
        });
    }
    let (version, id, op, status) = (
        be16(bytes, 0),
        be16(bytes, 2),
        be16(bytes, 4),
        be16(bytes, 6),
    );
    if id != expected_id {
        return Err(LbcdError::WrongId {
            expected: expected_id,
            got: id,
        });
    }
    if status != STATUS_OK {
        return Err(LbcdError::ErrorStatus {
            status,
            meaning: status_meaning(status),
        });
    }
    if version != u16::from(expected_version) {
        return Err(LbcdError::WrongVersion {
            expected: expected_version,
            got: version,
        });
    }
    if op != OP_LBINFO {
        return Err(LbcdError::WrongOp { got: op });
    }
    if len < FIXED_LEN {
        return Err(LbcdError::Truncated {
            len,
            need: FIXED_LEN,
            what: "the fixed part of a reply",
        });
    }
    let services = bytes[35];
    let expected = FIXED_LEN + WEIGHT_LEN * (usize::from(services) + 1);
    let legacy_v2 = version == 2 && services == 0 && len == FIXED_LEN;
    if len != expected && !legacy_v2 {
        return Err(LbcdError::ServiceCountMismatch {
            services,
            len,
            expected,
        });
    }
    let weights = bytes[FIXED_LEN..]
        .chunks_exact(WEIGHT_LEN)
        .map(|w| LbcdWeight {
            weight: be32(w, 0),
            increment: be32(w, 4),
        })
        .collect();
    Ok(LbcdReply {
        // Equal to expected_version (a u8) by the check above.
        version: expected_version,
        boot_time: be32(bytes, 8),
        current_time: be32(bytes, 12),
        user_mtime: be32(bytes, 16),
        load: [be16(bytes, 20), be16(bytes, 22), be16(bytes, 24)],
        total_users: be16(bytes, 26),
        unique_users: be16(bytes, 28),
        on_console: bytes[30] != 0,
        // bytes[31] is `reserved`.
        tmp_full: bytes[32],
        tmpdir_full: bytes[33],
        // bytes[34] is `pad`; bytes[35] is `services`.
        weights,
    })
}

/// A request id that differs between calls and between processes: lbcd echoes it, and it is
/// what tells a late reply to an earlier query from the reply to this one.
fn next_id() -> u16 {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mixed = nanos ^ std::process::id().rotate_left(16) ^ n.wrapping_mul(0x9E37_79B9);
    (mixed ^ (mixed >> 16)) as u16
}

/// The ephemeral local address to query `server` from: same family, loopback for a loopback
/// server (so a probe of 127.0.0.x never leaves the host), unspecified otherwise.
fn local_addr_for(server: SocketAddr) -> SocketAddr {
    let ip: IpAddr = match server.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => Ipv4Addr::LOCALHOST.into(),
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(ip) if ip.is_loopback() => Ipv6Addr::LOCALHOST.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    SocketAddr::new(ip, 0)
}

/// Asks the lbcd at `server` for its load with protocol `version` (2 or 3; `services` are
/// sent with 3 only) and waits up to `timeout` for the matching reply.
///
/// The socket is `connect`ed, so the kernel drops datagrams from any other address. That
/// includes replies from a multi-homed lbcd that answers from another address than the one
/// asked: lbcd(8) says to run it with `-b` in that case, as lbnamed has the same problem.
/// Replies whose id is not ours (late answers to an earlier query) are skipped and the wait
/// goes on until the deadline; any other bad reply from the server is returned as an error.
/// An ICMP port unreachable surfaces as [`LbcdError::Io`] ("Connection refused").
pub async fn query(
    server: SocketAddr,
    version: u8,
    services: &[&str],
    timeout: Duration,
) -> Result<LbcdReply, LbcdError> {
    query_from(server, None, version, services, timeout).await
}

/// [`query`] from the local address `source` (the kernel's choice when `None`).
pub(crate) async fn query_from(
    server: SocketAddr,
    source: Option<IpAddr>,
    version: u8,
    services: &[&str],
    timeout: Duration,
) -> Result<LbcdReply, LbcdError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let id = next_id();
    let request = encode_request(version, id, services)?;
    let io = |action| {
        move |source| LbcdError::Io {
            server,
            action,
            source,
        }
    };
    let local = source.map_or_else(|| local_addr_for(server), |ip| SocketAddr::new(ip, 0));
    let socket = UdpSocket::bind(local)
        .await
        .map_err(io("bind a local UDP socket"))?;
    socket.connect(server).await.map_err(io("connect"))?;
    socket
        .send(&request)
        .await
        .map_err(io("send the request"))?;

    let mut buf = vec![0u8; RECV_BUF];
    loop {
        let n = match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
            Err(_elapsed) => return Err(LbcdError::Timeout { server, timeout }),
            Ok(received) => received.map_err(io("receive the reply"))?,
        };
        match decode_reply(&buf[..n], id, version) {
            Err(LbcdError::WrongId { expected, got }) => {
                tracing::debug!(%server, expected, got, "ignoring lbcd reply with another id");
            }
            Err(e) => return Err(e),
            Ok(reply) => {
                // The server answers every requested service or none (lbcd.c drops the
                // request if one is not allowed), so a different count is a broken server.
                let requested = if version == 3 { services.len() } else { 0 };
                let returned = reply.weights.len().saturating_sub(1);
                if returned != requested {
                    return Err(LbcdError::UnexpectedServices {
                        requested,
                        returned,
                    });
                }
                return Ok(reply);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply as lbcd.c `handle_lb_request` lays it out, with distinct values in every field.
    fn reply_bytes(version: u16, id: u16, op: u16, status: u16, weights: &[(u32, u32)]) -> Vec<u8> {
        let mut b = Vec::new();
        for v in [version, id, op, status] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        for v in [1_700_000_000u32, 1_700_086_400, 1_700_050_000] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        for v in [132u16, 71, 37, 5, 3] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        // on_console, reserved, tmp_full, tmpdir_full, pad, services
        let services = u8::try_from(weights.len().saturating_sub(1)).unwrap();
        b.extend_from_slice(&[1, 0, 67, 12, 0, services]);
        for (w, i) in weights {
            b.extend_from_slice(&w.to_be_bytes());
            b.extend_from_slice(&i.to_be_bytes());
        }
        b
    }

    #[test]
    fn encode_v2_golden() {
        let bytes = encode_request(2, 0x1234, &[]).unwrap();
        assert_eq!(bytes, [0, 2, 0x12, 0x34, 0, 1, 0, 0]);
        // v2 has no service list: services are ignored, even ones v3 would reject.
        let ignored = encode_request(2, 0x1234, &["load", &"x".repeat(40)]).unwrap();
        assert_eq!(ignored, bytes);
    }

    #[test]
    fn encode_v3_golden() {
        assert_eq!(
            encode_request(3, 0xBEEF, &[]).unwrap(),
            [0, 3, 0xBE, 0xEF, 0, 1, 0, 0]
        );
        let bytes = encode_request(3, 7, &["load", "http:80"]).unwrap();
        let mut want = vec![0, 3, 0, 7, 0, 1, 0, 2];
        want.extend_from_slice(b"load");
        want.extend_from_slice(&[0; 28]);
        want.extend_from_slice(b"http:80");
        want.extend_from_slice(&[0; 25]);
        assert_eq!(bytes.len(), 8 + 2 * 32);
        assert_eq!(bytes, want);
    }

    #[test]
    fn encode_v3_name_limits() {
        let max = "a".repeat(31);
        let bytes = encode_request(3, 1, &[&max]).unwrap();
        assert_eq!(&bytes[8..39], max.as_bytes());
        assert_eq!(bytes[39], 0, "the name keeps its terminating NUL");

        let long = "a".repeat(32);
        let e = encode_request(3, 1, &["load", &long]).unwrap_err();
        assert!(
            matches!(e, LbcdError::ServiceNameTooLong { len: 32, .. }),
            "{e:?}"
        );
        assert!(
            e.to_string().contains("32 bytes: expected at most 31"),
            "{e}"
        );

        for bad in ["", "lo\0ad"] {
            let e = encode_request(3, 1, &[bad]).unwrap_err();
            assert!(matches!(e, LbcdError::InvalidServiceName { .. }), "{e:?}");
        }
    }

    #[test]
    fn encode_rejects_bad_version_and_too_many_services() {
        for v in [0, 1, 4, 255] {
            let e = encode_request(v, 1, &[]).unwrap_err();
            assert!(
                matches!(e, LbcdError::UnsupportedVersion(x) if x == v),
                "{e:?}"
            );
            assert!(e.to_string().contains("expected 2 or 3"), "{e}");
        }
        let six = ["a", "b", "c", "d", "e", "f"];
        assert_eq!(encode_request(3, 1, &six[..5]).unwrap().len(), 8 + 5 * 32);
        let e = encode_request(3, 1, &six).unwrap_err();
        assert!(
            matches!(e, LbcdError::TooManyServices { count: 6 }),
            "{e:?}"
        );
        assert!(e.to_string().contains("at most 5"), "{e}");
    }

    #[test]
    fn decode_v3_with_services() {
        let bytes = reply_bytes(3, 0x4242, 1, 1, &[(396, 200), (1, 1), (0xFFFF_FFFF, 7)]);
        assert_eq!(bytes.len(), 36 + 3 * 8);
        let r = decode_reply(&bytes, 0x4242, 3).unwrap();
        assert_eq!(
            r,
            LbcdReply {
                version: 3,
                boot_time: 1_700_000_000,
                current_time: 1_700_086_400,
                user_mtime: 1_700_050_000,
                load: [132, 71, 37],
                total_users: 5,
                unique_users: 3,
                on_console: true,
                tmp_full: 67,
                tmpdir_full: 12,
                weights: vec![
                    LbcdWeight {
                        weight: 396,
                        increment: 200
                    },
                    LbcdWeight {
                        weight: 1,
                        increment: 1
                    },
                    LbcdWeight {
                        weight: 0xFFFF_FFFF,
                        increment: 7
                    },
                ],
            }
        );
        assert!((r.load1() - 1.32).abs() < 1e-9);
    }

    #[test]
    fn decode_v2_with_and_without_weights() {
        let r = decode_reply(&reply_bytes(2, 9, 1, 1, &[(612, 200)]), 9, 2).unwrap();
        assert_eq!(r.version, 2);
        assert_eq!(
            r.weights,
            [LbcdWeight {
                weight: 612,
                increment: 200
            }]
        );
        // The weightless 36-byte form, v2 only.
        let legacy = reply_bytes(2, 9, 1, 1, &[]);
        assert_eq!(legacy.len(), 36);
        assert!(decode_reply(&legacy, 9, 2).unwrap().weights.is_empty());
        let e = decode_reply(&reply_bytes(3, 9, 1, 1, &[]), 9, 3).unwrap_err();
        assert!(
            matches!(
                e,
                LbcdError::ServiceCountMismatch {
                    services: 0,
                    len: 36,
                    expected: 44
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn decode_truncated() {
        for len in 0..8 {
            let e = decode_reply(&[0u8; 8][..len], 0, 3).unwrap_err();
            assert!(
                matches!(e, LbcdError::Truncated { need: 8, .. }),
                "{len}: {e:?}"
            );
        }
        let full = reply_bytes(3, 5, 1, 1, &[(1, 1)]);
        for len in 8..36 {
            let e = decode_reply(&full[..len], 5, 3).unwrap_err();
            assert!(
                matches!(e, LbcdError::Truncated { need: 36, .. }),
                "{len}: {e:?}"
            );
        }
        let e = decode_reply(&full[..20], 5, 3).unwrap_err();
        assert_eq!(
            e.to_string(),
            "truncated lbcd reply: 20 bytes, expected at least 36 (the fixed part of a reply)"
        );
    }

    #[test]
    fn decode_wrong_id_version_op() {
        let ok = reply_bytes(3, 5, 1, 1, &[(1, 1)]);
        let e = decode_reply(&ok, 6, 3).unwrap_err();
        assert!(
            matches!(
                e,
                LbcdError::WrongId {
                    expected: 6,
                    got: 5
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("id 5, expected 6"), "{e}");

        let e = decode_reply(&ok, 5, 2).unwrap_err();
        assert!(
            matches!(
                e,
                LbcdError::WrongVersion {
                    expected: 2,
                    got: 3
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("version 3, expected 2"), "{e}");
        let e = decode_reply(&reply_bytes(0x0103, 5, 1, 1, &[(1, 1)]), 5, 3).unwrap_err();
        assert!(
            matches!(e, LbcdError::WrongVersion { got: 0x0103, .. }),
            "{e:?}"
        );

        let e = decode_reply(&reply_bytes(3, 5, 2, 1, &[(1, 1)]), 5, 3).unwrap_err();
        assert!(matches!(e, LbcdError::WrongOp { got: 2 }), "{e:?}");
        assert!(e.to_string().contains("operation 2, expected 1"), "{e}");
    }

    #[test]
    fn decode_error_status() {
        // lbcd.c send_status: a bare header, version 3 even when v2 was asked.
        for (status, word) in [
            (0, "request"),
            (2, "generic error"),
            (3, "version"),
            (4, "protocol"),
            (5, "unknown operation"),
            (77, "unknown status"),
        ] {
            let header = reply_bytes(3, 5, 1, status, &[])[..8].to_vec();
            let e = decode_reply(&header, 5, 2).unwrap_err();
            assert!(
                matches!(e, LbcdError::ErrorStatus { status: s, .. } if s == status),
                "{e:?}"
            );
            let msg = e.to_string();
            assert!(msg.contains(&format!("status {status} (")), "{msg}");
            assert!(
                msg.contains(word) && msg.contains("expected 1 (ok)"),
                "{msg}"
            );
        }
    }

    #[test]
    fn decode_service_count_mismatch() {
        let mut bytes = reply_bytes(3, 5, 1, 1, &[(1, 1), (2, 2)]);
        bytes[35] = 2; // announces two services, carries one
        let e = decode_reply(&bytes, 5, 3).unwrap_err();
        assert!(
            matches!(
                e,
                LbcdError::ServiceCountMismatch {
                    services: 2,
                    len: 52,
                    expected: 60
                }
            ),
            "{e:?}"
        );
        assert!(
            e.to_string().contains("52 bytes") && e.to_string().contains("expected 60"),
            "{e}"
        );

        bytes[35] = 0; // announces none, carries one
        assert!(matches!(
            decode_reply(&bytes, 5, 3).unwrap_err(),
            LbcdError::ServiceCountMismatch {
                services: 0,
                len: 52,
                expected: 44
            }
        ));

        let mut trailing = reply_bytes(3, 5, 1, 1, &[(1, 1)]);
        trailing.push(0);
        assert!(matches!(
            decode_reply(&trailing, 5, 3).unwrap_err(),
            LbcdError::ServiceCountMismatch {
                len: 45,
                expected: 44,
                ..
            }
        ));
        // A half weight pair.
        let full = reply_bytes(3, 5, 1, 1, &[(1, 1)]);
        assert!(matches!(
            decode_reply(&full[..40], 5, 3).unwrap_err(),
            LbcdError::ServiceCountMismatch { len: 40, .. }
        ));
    }

    /// xorshift64: deterministic noise without a crate.
    fn rng(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn decode_never_panics() {
        let mut s = 0x1234_5678_9abc_def0u64;
        // Every prefix of valid replies, with every single byte flipped.
        for weights in [&[][..], &[(1, 2)][..], &[(1, 2), (3, 4), (5, 6)][..]] {
            let good = reply_bytes(3, 7, 1, 1, weights);
            for len in 0..=good.len() {
                let _ = decode_reply(&good[..len], 7, 3);
                let _ = decode_reply(&good[..len], 7, 2);
            }
            for i in 0..good.len() {
                let mut m = good.clone();
                m[i] ^= rng(&mut s) as u8 | 1;
                let _ = decode_reply(&m, 7, 3);
            }
        }
        // Random buffers; half of them get the right header so the deeper checks run.
        for _ in 0..20_000 {
            let len = (rng(&mut s) % 120) as usize;
            let mut buf: Vec<u8> = (0..len).map(|_| rng(&mut s) as u8).collect();
            if len >= 8 && rng(&mut s) & 1 == 0 {
                buf[..8].copy_from_slice(&[0, 3, 0, 7, 0, 1, 0, 1]);
                if len >= 36 {
                    buf[35] = (rng(&mut s) % 8) as u8;
                }
            }
            let _ = decode_reply(&buf, 7, 3);
        }
    }

    #[test]
    fn ids_vary() {
        let ids: std::collections::HashSet<u16> = (0..64).map(|_| next_id()).collect();
        assert!(ids.len() > 60, "{} distinct ids of 64", ids.len());
    }

    #[test]
    fn local_address_follows_the_server_family() {
        let local = |s: &str| local_addr_for(s.parse().unwrap()).to_string();
        assert_eq!(local("127.0.0.9:4330"), "127.0.0.1:0");
        assert_eq!(local("192.0.2.1:4330"), "0.0.0.0:0");
        assert_eq!(local("[::1]:4330"), "[::1]:0");
        assert_eq!(local("[2001:db8::1]:4330"), "[::]:0");
    }
}
