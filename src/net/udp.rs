//! UDP: one worker thread per core, each with its own `SO_REUSEPORT` socket on the same address,
//! so the kernel spreads datagrams across workers with no shared queue and no task per packet.
//!
//! Workers take datagrams in batches with `recvmmsg` and answer with one `sendmmsg`, trying the
//! allocation-free fast path first. They block without a timeout (a receive timeout would arm and
//! cancel a kernel timer on every wait, which at low rates is every query); [`Workers::stop`]
//! wakes them by shutting their sockets down.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, SockAddrStorage, Socket, Type};

use super::{Answerer, NetError, join_within};
use crate::dns::{RateTable, handle_truncated};
use crate::metrics::{LocalMetrics, Metrics};
use crate::querylog::QueryLog;
use crate::snapshot::SnapshotCell;

/// Binds `workers` sockets on `addr` (all on the port the first one got, if `addr` has port 0).
pub(crate) fn bind(addr: SocketAddr, workers: usize) -> Result<Vec<UdpSocket>, NetError> {
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
    dont_fragment(&socket, addr)?;
    // Bursts from dnsperf-style load arrive faster than one wakeup; a deeper queue avoids drops.
    let _ = socket.set_recv_buffer_size(4 << 20);
    let _ = socket.set_send_buffer_size(4 << 20);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Sends every response with DF set (IPv4) and never fragments it (IPv6), sized against the
/// interface MTU, not a path MTU learned from ICMP (RFC 9715 §3.1: avoid IP fragmentation; a
/// spoofed "fragmentation needed" cannot shrink our packets). With DF set the kernel also skips
/// the IPv4 ID hash it needs for fragmentable packets (`__ip_select_ident`: a shared table
/// every sending CPU writes to). An answer larger than the interface MTU fails with
/// `EMSGSIZE`; the worker then sends it truncated instead (see [`worker`]).
fn dont_fragment(socket: &Socket, addr: SocketAddr) -> std::io::Result<()> {
    let (level, name, value) = if addr.is_ipv4() {
        (
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_PROBE,
        )
    } else {
        (
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_PROBE,
        )
    };
    // SAFETY: a valid fd and a c_int option value that lives for the call.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The running UDP workers of every listen address.
pub(crate) struct Workers {
    sockets: Vec<Arc<UdpSocket>>,
    threads: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl Workers {
    /// Starts one worker thread per socket.
    pub(crate) fn spawn(
        sockets: Vec<UdpSocket>,
        cell: SnapshotCell,
        limiter: Arc<RateTable>,
        metrics: Arc<Metrics>,
        query_log: Arc<QueryLog>,
    ) -> Workers {
        let stop = Arc::new(AtomicBool::new(false));
        let sockets: Vec<Arc<UdpSocket>> = sockets.into_iter().map(Arc::new).collect();
        let threads = sockets
            .iter()
            .enumerate()
            .map(|(i, socket)| {
                let socket = socket.clone();
                let cell = cell.clone();
                let stop = stop.clone();
                let metrics = metrics.clone();
                let query_log = query_log.clone();
                let answerer = Answerer::new(limiter.clone(), LocalMetrics::default(), query_log);
                std::thread::Builder::new()
                    .name(format!("lbns-udp-{i}"))
                    .spawn(move || worker(&socket, cell, metrics, answerer, &stop))
                    .expect("spawning a thread")
            })
            .collect();
        Workers {
            sockets,
            threads,
            stop,
        }
    }

    /// Stops every worker and waits for it, at most [`STOP_GRACE`] in all (blocking: call off
    /// the async runtime). Queries already received are answered first.
    pub(crate) fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for socket in &self.sockets {
            // On Linux, shutdown of an unconnected UDP socket fails with ENOTCONN but still
            // marks it shut and wakes its waiters (inet_shutdown), so a worker blocked in
            // recvmmsg returns (with an empty datagram) and sees `stop`.
            // SAFETY: the fd is open: `self.sockets` holds a reference.
            unsafe { libc::shutdown(socket.as_raw_fd(), libc::SHUT_RD) };
        }
        join_within(self.threads, STOP_GRACE);
    }
}

/// How long [`Workers::stop`] (and the AF_XDP workers' stop) waits for the workers to finish.
pub(super) const STOP_GRACE: Duration = Duration::from_secs(5);

/// Datagrams taken per `recvmmsg` call.
const BATCH: usize = 32;
/// Largest query accepted; longer datagrams are truncated by the kernel and get FORMERR.
const QUERY_MAX: usize = 4096;

fn worker(
    socket: &UdpSocket,
    cell: SnapshotCell,
    metrics: Arc<Metrics>,
    mut answerer: Answerer,
    stop: &AtomicBool,
) {
    let fd = socket.as_raw_fd();
    let mut bufs = vec![[0u8; QUERY_MAX]; BATCH];
    let mut outs: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(4096)).collect();
    // SAFETY: all-zero is a valid value for these plain C structs.
    let mut addrs: Vec<libc::sockaddr_storage> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let mut iov: Vec<libc::iovec> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let mut hdrs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let mut send_iov: Vec<libc::iovec> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let mut send_hdrs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];
    // For each response in the send batch, the datagram it answers.
    let mut origin = [0usize; BATCH];

    while !stop.load(Ordering::Relaxed) {
        for i in 0..BATCH {
            iov[i] = libc::iovec {
                iov_base: bufs[i].as_mut_ptr().cast(),
                iov_len: QUERY_MAX,
            };
            let h = &mut hdrs[i].msg_hdr;
            h.msg_name = (&raw mut addrs[i]).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &raw mut iov[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
            hdrs[i].msg_len = 0;
        }
        // SAFETY: every header points at buffers that live for this call; MSG_WAITFORONE blocks
        // for the first datagram only, then takes what is queued.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n <= 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                // ICMP errors from earlier sends surface here (ECONNREFUSED); not fatal.
                tracing::debug!(error = %e, "udp receive");
            }
            continue;
        }
        let snapshot = cell.load();
        let mut nsend = 0;
        for i in 0..n as usize {
            let len = hdrs[i].msg_len as usize;
            let query = &bufs[i][..len.min(QUERY_MAX)];
            let out = &mut outs[i];
            let namelen = hdrs[i].msg_hdr.msg_namelen;
            let ip = client_ip(&addrs[i]);
            let outcome = answerer.answer(&snapshot, query, ip, out, || client(&addrs[i], namelen));
            if outcome.is_none() {
                continue;
            }
            send_iov[nsend] = libc::iovec {
                iov_base: out.as_mut_ptr().cast(),
                iov_len: out.len(),
            };
            let h = &mut send_hdrs[nsend].msg_hdr;
            h.msg_name = (&raw mut addrs[i]).cast();
            h.msg_namelen = hdrs[i].msg_hdr.msg_namelen;
            h.msg_iov = &raw mut send_iov[nsend];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
            origin[nsend] = i;
            nsend += 1;
        }
        let mut sent = 0;
        let mut shrunk = usize::MAX;
        while sent < nsend {
            // SAFETY: headers `sent..nsend` point at live buffers and addresses.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    send_hdrs[sent..].as_mut_ptr(),
                    (nsend - sent) as libc::c_uint,
                    0,
                )
            };
            if r <= 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                let i = origin[sent];
                // Larger than the interface MTU and not to be fragmented: send it truncated,
                // so the client asks again over TCP (RFC 9715 §3.1). Once per response.
                if e.raw_os_error() == Some(libc::EMSGSIZE) && shrunk != sent {
                    let query = &bufs[i][..(hdrs[i].msg_len as usize).min(QUERY_MAX)];
                    if handle_truncated(&snapshot, query, &mut outs[i]).is_some() {
                        tracing::debug!(
                            size = send_iov[sent].iov_len,
                            "udp response exceeds the interface MTU; sent truncated"
                        );
                        send_iov[sent] = libc::iovec {
                            iov_base: outs[i].as_mut_ptr().cast(),
                            iov_len: outs[i].len(),
                        };
                        shrunk = sent;
                        answerer.late_truncation();
                        continue;
                    }
                }
                // One bad destination must not drop the rest of the batch: skip it.
                tracing::debug!(error = %e, "udp send");
                sent += 1;
            } else {
                sent += r as usize;
            }
        }
        answerer.flush(&metrics);
    }
}

/// The source address of a received datagram, read straight from the `sockaddr` (cookies and
/// rate limiting need it for every query; the port only the query log needs).
fn client_ip(sa: &libc::sockaddr_storage) -> Option<IpAddr> {
    match libc::c_int::from(sa.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin = unsafe { &*(&raw const *sa).cast::<libc::sockaddr_in>() };
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                sin.sin_addr.s_addr,
            ))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6 = unsafe { &*(&raw const *sa).cast::<libc::sockaddr_in6>() };
            Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}

/// The client address of a received datagram, for the query log. Called only for a logged
/// query: the copy into socket2's storage is not paid per datagram.
fn client(sa: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let mut storage = SockAddrStorage::zeroed();
    // SAFETY: `SockAddrStorage` is a `sockaddr_storage`; recvmmsg filled `sa` and set `len`.
    unsafe {
        *storage.view_as::<libc::sockaddr_storage>() = *sa;
        SockAddr::new(storage, len)
    }
    .as_socket()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_addresses_of_both_families() {
        for text in ["127.0.0.1:53000", "[::1]:53000", "[fe80::1%2]:53"] {
            let addr: SocketAddr = text.parse().unwrap();
            let sa = SockAddr::from(addr);
            // SAFETY: `as_ptr` points at a whole `sockaddr_storage`.
            let storage: libc::sockaddr_storage = unsafe { std::ptr::read(sa.as_ptr().cast()) };
            assert_eq!(client(&storage, sa.len()), Some(addr));
            assert_eq!(client_ip(&storage), Some(addr.ip()));
        }
        let unix = SockAddr::unix("/nonexistent").unwrap();
        // SAFETY: as above.
        let storage: libc::sockaddr_storage = unsafe { std::ptr::read(unix.as_ptr().cast()) };
        assert_eq!(client(&storage, unix.len()), None);
        assert_eq!(client_ip(&storage), None);
    }
}
