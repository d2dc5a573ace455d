//! DNS over TCP (RFC 7766): length-prefixed messages, pipelined queries answered in order, and
//! the limits that keep one client from holding what others need (RFC 7766 §6.2.3, §10):
//!
//! - the idle timeout runs from the last complete query, so bytes that complete none (a
//!   message trickled in, a length prefix alone) do not extend it; a zero-length frame, which
//!   no DNS message is, closes the connection at once;
//! - a write timeout: a response the client does not take within it closes the connection;
//! - a cap per client (one IPv4 address, one IPv6 /64) and a global cap; at the global cap the
//!   connection that has gone longest without a complete query is closed to make room, rather
//!   than refusing the newcomer — a client that stops reading stops completing queries, so
//!   it ages too;
//! - queries that carry edns-tcp-keepalive are told the idle timeout (RFC 7828).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::NetError;
use crate::dns::{Transport, handle_tcp};
use crate::metrics::Metrics;
use crate::querylog::QueryLog;
use crate::snapshot::SnapshotCell;

/// Answers of a pipelined burst are written together, up to this many octets at a time.
const WRITE_BATCH: usize = 16 * 1024;

/// Binds a TCP listener on `addr`.
pub(crate) fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, NetError> {
    let err = |source| NetError::Bind {
        proto: "tcp",
        addr,
        source,
    };
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .map_err(err)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(err)?;
    }
    socket.set_reuse_address(true).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    socket.listen(1024).map_err(err)?;
    socket.set_nonblocking(true).map_err(err)?;
    Ok(socket.into())
}

/// Limits applied to every connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Longest time from one complete query (or the accept) to the next complete query.
    pub(crate) idle_timeout: Duration,
    /// Longest time one write of answers may take.
    pub(crate) write_timeout: Duration,
    /// Open connections in all; at the cap the stalest one is closed for a new one.
    pub(crate) max_connections: usize,
    /// Open connections per client (IPv4 address, IPv6 /64); over it new ones are closed.
    pub(crate) max_per_client: usize,
}

/// Accepts connections until `cancel` fires.
pub(crate) async fn serve(
    listener: std::net::TcpListener,
    cell: SnapshotCell,
    metrics: Arc<Metrics>,
    query_log: Arc<QueryLog>,
    limits: Limits,
    cancel: CancellationToken,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "tcp listener");
            return;
        }
    };
    let table = Arc::new(Table::new(limits));
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off briefly rather than spin.
                    tracing::warn!(error = %e, "tcp accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(slot) = table.admit(peer.ip(), &cancel) else {
            tracing::debug!(client = %peer, "tcp connections per client at the cap; closing");
            drop(stream);
            continue;
        };
        let cell = cell.clone();
        let metrics = metrics.clone();
        let query_log = query_log.clone();
        tokio::spawn(async move {
            tokio::select! {
                // Server shutdown, or closed to make room for a newer connection.
                _ = slot.close.cancelled() => {}
                _ = connection(stream, peer, cell, metrics, query_log, limits, &slot) => {}
            }
        });
    }
}

/// The open connections: what the caps count and what making room picks from.
struct Table {
    limits: Limits,
    /// Activity times are kept as milliseconds since this instant, in an atomic per
    /// connection, so recording a query takes no lock.
    epoch: Instant,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    connections: HashMap<u64, Entry>,
    per_client: HashMap<IpAddr, usize>,
    next_id: u64,
}

/// One open connection as the table sees it.
struct Entry {
    client: IpAddr,
    activity: Arc<AtomicU64>,
    close: CancellationToken,
}

/// A connection's place in the table; dropping it gives the place back.
struct Slot {
    table: Arc<Table>,
    id: u64,
    /// Milliseconds since the table's epoch of the last complete query (or of the accept).
    activity: Arc<AtomicU64>,
    /// Fires at server shutdown or when the table closes this connection to make room.
    close: CancellationToken,
}

impl Table {
    fn new(limits: Limits) -> Table {
        Table {
            limits,
            epoch: Instant::now(),
            open: Mutex::new(Open::default()),
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Admits a connection from `ip`; `None` when its client already holds its share. At the
    /// global cap, the connection with the oldest activity is closed to make room.
    fn admit(self: &Arc<Self>, ip: IpAddr, shutdown: &CancellationToken) -> Option<Slot> {
        let client = client_key(ip);
        let now = self.now();
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.per_client.get(&client).copied().unwrap_or(0) >= self.limits.max_per_client {
            return None;
        }
        if open.connections.len() >= self.limits.max_connections {
            let stalest = open
                .connections
                .iter()
                .min_by_key(|(_, e)| e.activity.load(Ordering::Relaxed))
                .map(|(&id, _)| id);
            if let Some(id) = stalest
                && let Some(entry) = open.remove(id)
            {
                tracing::debug!(
                    client = %entry.client,
                    idle_ms = now.saturating_sub(entry.activity.load(Ordering::Relaxed)),
                    "tcp connection cap reached; closing the stalest connection"
                );
                entry.close.cancel();
            }
        }
        let id = open.next_id;
        open.next_id += 1;
        let activity = Arc::new(AtomicU64::new(now));
        let close = shutdown.child_token();
        open.connections.insert(
            id,
            Entry {
                client,
                activity: activity.clone(),
                close: close.clone(),
            },
        );
        *open.per_client.entry(client).or_default() += 1;
        Some(Slot {
            table: self.clone(),
            id,
            activity,
            close,
        })
    }
}

impl Open {
    /// Takes connection `id` out of the counts (once: eviction and the slot's drop both call
    /// this).
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let entry = self.connections.remove(&id)?;
        if let Some(n) = self.per_client.get_mut(&entry.client) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&entry.client);
            }
        }
        Some(entry)
    }
}

impl Slot {
    /// A query was read in full: the idle clock and the stalest-first order restart here.
    fn touch(&self) {
        self.activity.store(self.table.now(), Ordering::Relaxed);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|e| e.into_inner());
        open.remove(self.id);
    }
}

/// Whom the per-client cap counts: an IPv4 address, or an IPv6 /64, since one IPv6 host
/// commonly holds a whole /64 (RFC 4941 temporary addresses).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & !(u128::from(u64::MAX)))),
    }
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// A zero-length frame came.
    EmptyFrame,
    /// The client closed or reset it.
    Closed,
    /// No complete query within the idle timeout.
    Idle,
    /// Answers were not taken within the write timeout.
    WriteTimeout,
}

/// What reading the next frame found.
enum Frame {
    /// A message of at least one octet, now in the query buffer.
    Query,
    /// A zero-length frame.
    Empty,
}

/// Reads one length-prefixed message into `query`.
async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    query: &mut Vec<u8>,
) -> io::Result<Frame> {
    let mut len = [0u8; 2];
    reader.read_exact(&mut len).await?;
    let len = usize::from(u16::from_be_bytes(len));
    if len == 0 {
        return Ok(Frame::Empty);
    }
    query.resize(len, 0);
    reader.read_exact(query).await?;
    Ok(Frame::Query)
}

/// Whether `buffered` already holds a whole frame, so reading it will not wait.
fn frame_buffered(buffered: &[u8]) -> bool {
    buffered.len() >= 2
        && buffered.len() - 2 >= usize::from(u16::from_be_bytes([buffered[0], buffered[1]]))
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    cell: SnapshotCell,
    metrics: Arc<Metrics>,
    query_log: Arc<QueryLog>,
    limits: Limits,
    slot: &Slot,
) {
    let _ = stream.set_nodelay(true);
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let mut query = Vec::with_capacity(512);
    let mut out = Vec::with_capacity(4096);
    let mut pending: Vec<u8> = Vec::with_capacity(4096);
    // RFC 7766 §6.2.3: the idle timer runs from the accept, then from each complete query.
    let mut deadline = tokio::time::Instant::now() + limits.idle_timeout;
    let end = loop {
        match tokio::time::timeout_at(deadline, read_frame(&mut reader, &mut query)).await {
            Ok(Ok(Frame::Query)) => {}
            Ok(Ok(Frame::Empty)) => break End::EmptyFrame,
            Ok(Err(_)) => break End::Closed,
            Err(_) => break End::Idle,
        }
        deadline = tokio::time::Instant::now() + limits.idle_timeout;
        slot.touch();
        let answered = {
            let snapshot = cell.load();
            let outcome = handle_tcp(&snapshot, &query, limits.idle_timeout, &mut out);
            metrics.record(Transport::Tcp, outcome.as_ref());
            query_log.record(peer, Transport::Tcp, &query, outcome.as_ref());
            outcome.is_some()
        };
        if answered {
            pending.extend_from_slice(&(out.len() as u16).to_be_bytes());
            pending.extend_from_slice(&out);
        }
        // Write when no further pipelined query is already waiting, so the answers to a burst
        // go out together but a lone query is never held back.
        if !pending.is_empty() && (!frame_buffered(reader.buffer()) || pending.len() >= WRITE_BATCH)
        {
            if !write(&mut writer, &pending, limits.write_timeout).await {
                break End::WriteTimeout;
            }
            pending.clear();
        }
    };
    // Answers to queries before a zero-length frame still go out.
    if !pending.is_empty() && end == End::EmptyFrame {
        let _ = write(&mut writer, &pending, limits.write_timeout).await;
    }
    tracing::trace!(client = %peer, ?end, "tcp connection closed");
}

/// Writes `bytes` within `timeout`; false if the client did not take them in time (or the
/// connection failed).
async fn write(
    writer: &mut tokio::net::tcp::OwnedWriteHalf,
    bytes: &[u8],
    timeout: Duration,
) -> bool {
    matches!(
        tokio::time::timeout(timeout, writer.write_all(bytes)).await,
        Ok(Ok(()))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_connections: usize, max_per_client: usize) -> Limits {
        Limits {
            idle_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(2),
            max_connections,
            max_per_client,
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        assert_eq!(client_key(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(client_key(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        assert_ne!(
            client_key(ip("2001:db8:1:2::1")),
            client_key(ip("2001:db8:1:3::1"))
        );
    }

    #[test]
    fn the_per_client_cap_refuses_and_frees_on_drop() {
        let table = Arc::new(Table::new(limits(10, 2)));
        let shutdown = CancellationToken::new();
        let a = table.admit(ip("2001:db8::1"), &shutdown).unwrap();
        let _b = table.admit(ip("2001:db8::2"), &shutdown).unwrap();
        // Same /64: over its cap. Another client is still admitted.
        assert!(table.admit(ip("2001:db8::3"), &shutdown).is_none());
        let _c = table.admit(ip("192.0.2.1"), &shutdown).unwrap();
        drop(a);
        assert!(table.admit(ip("2001:db8::3"), &shutdown).is_some());
    }

    #[test]
    fn at_the_global_cap_the_stalest_connection_is_closed() {
        let table = Arc::new(Table::new(limits(3, 3)));
        let shutdown = CancellationToken::new();
        let slots: Vec<Slot> = ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
            .iter()
            .map(|a| table.admit(ip(a), &shutdown).unwrap())
            .collect();
        // The first two have just completed queries; the third has not since its accept.
        slots[0].activity.store(500, Ordering::Relaxed);
        slots[1].activity.store(400, Ordering::Relaxed);
        slots[2].activity.store(100, Ordering::Relaxed);
        let newcomer = table.admit(ip("192.0.2.4"), &shutdown).unwrap();
        assert!(slots[2].close.is_cancelled());
        assert!(!slots[0].close.is_cancelled() && !slots[1].close.is_cancelled());
        assert!(!newcomer.close.is_cancelled());
        {
            let open = table.open.lock().unwrap();
            assert_eq!(open.connections.len(), 3);
            assert!(!open.per_client.contains_key(&ip("192.0.2.3")));
        }
        // The closed connection's slot going away later does not count it twice.
        let mut slots = slots;
        drop(slots.pop());
        assert_eq!(table.open.lock().unwrap().connections.len(), 3);
        // Shutdown reaches every connection.
        shutdown.cancel();
        assert!(newcomer.close.is_cancelled() && slots[0].close.is_cancelled());
    }

    #[test]
    fn frames_are_recognized_whole() {
        assert!(!frame_buffered(&[]));
        assert!(!frame_buffered(&[0]));
        assert!(frame_buffered(&[0, 0]));
        assert!(!frame_buffered(&[0, 3, 1, 2]));
        assert!(frame_buffered(&[0, 3, 1, 2, 3]));
        assert!(frame_buffered(&[0, 1, 9, 0]));
    }
}
