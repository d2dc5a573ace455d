//! UDP: one worker thread per core, each with its own `SO_REUSEPORT` socket on the same address,
//! so the kernel spreads datagrams across workers with no shared queue and no task per packet.
//!
//! Workers block in `recv_from` with a short timeout so they notice shutdown without signals.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use super::NetError;
use crate::dns::{Transport, handle};
use crate::metrics::Metrics;
use crate::pool::SnapshotCell;

/// How often an idle worker wakes to check for shutdown.
const POLL: Duration = Duration::from_millis(100);

/// Binds `workers` sockets on `addr` (all on the port the first one got, if `addr` has port 0).
pub fn bind(addr: SocketAddr, workers: usize) -> Result<Vec<UdpSocket>, NetError> {
    let mut sockets = Vec::with_capacity(workers);
    let mut addr = addr;
    for _ in 0..workers.max(1) {
        let socket = reuseport_socket(addr).map_err(|source| NetError::Bind {
            proto: "udp",
            addr,
            source,
        })?;
        addr = socket.local_addr().expect("bound socket has an address");
        sockets.push(socket);
    }
    Ok(sockets)
}

fn reuseport_socket(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_port(true)?;
    // Bursts from dnsperf-style load arrive faster than one wakeup; a deeper queue avoids drops.
    let _ = socket.set_recv_buffer_size(4 << 20);
    let _ = socket.set_send_buffer_size(4 << 20);
    socket.bind(&addr.into())?;
    let socket: UdpSocket = socket.into();
    socket.set_read_timeout(Some(POLL))?;
    Ok(socket)
}

/// Starts one worker thread per socket. They stop within [`POLL`] of `stop` being set.
pub fn spawn(
    sockets: Vec<UdpSocket>,
    cell: SnapshotCell,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
) -> Vec<JoinHandle<()>> {
    sockets
        .into_iter()
        .enumerate()
        .map(|(i, socket)| {
            let cell = cell.clone();
            let stop = stop.clone();
            let metrics = metrics.clone();
            std::thread::Builder::new()
                .name(format!("lbns-udp-{i}"))
                .spawn(move || worker(socket, cell, metrics, stop))
                .expect("spawning a thread")
        })
        .collect()
}

fn worker(socket: UdpSocket, cell: SnapshotCell, metrics: Arc<Metrics>, stop: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 65535];
    let mut out = Vec::with_capacity(4096);
    while !stop.load(Ordering::Relaxed) {
        let (n, src) = match socket.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => {
                // ICMP errors from earlier sends surface here (ECONNREFUSED); not fatal.
                tracing::debug!(error = %e, "udp receive");
                continue;
            }
        };
        let snapshot = cell.load();
        let outcome = handle(&snapshot, &buf[..n], Transport::Udp, &mut out);
        metrics.record(Transport::Udp, outcome.as_ref());
        if outcome.is_some()
            && let Err(e) = socket.send_to(&out, src)
        {
            tracing::debug!(error = %e, client = %src, "udp send");
        }
    }
}
