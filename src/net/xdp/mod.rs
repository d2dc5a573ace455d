//! AF_XDP: UDP queries taken from an interface's receive queues before the kernel's IP and UDP
//! layers, answered by the same fast path and handler, and sent back through the same queues
//! (`[server] xdp`), as Knot DNS's XDP mode does.
//!
//! An XDP program (see [`bpf`]) redirects datagrams for our listen addresses to one AF_XDP
//! socket per receive queue; a worker thread per socket parses the frame ([`frame`]), answers,
//! rewrites the frame into the reply in place and queues it for transmission. The ordinary
//! UDP sockets stay bound: they answer what the program passes (IP options, fragments, other
//! interfaces) and keep the port ours. Setting this up needs CAP_NET_ADMIN and CAP_BPF; it
//! happens before privileges are dropped, and closing the program's link when lbns exits
//! (however it exits) detaches it.

mod bpf;
mod frame;
mod xsk;

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

use super::udp::STOP_GRACE;
use super::{Answerer, NetError, join_within};
use crate::dns::{RateTable, handle_truncated};
use crate::metrics::{LocalMetrics, Metrics};
use crate::querylog::QueryLog;
use crate::snapshot::SnapshotCell;
use xsk::Xsk;

/// Received frames handled per round before the replies are sent.
const BATCH: u32 = 64;
/// How often the kernel's drop counters are read at most.
const STATS_EVERY: Duration = Duration::from_secs(1);
/// Under constant load (no sleep), look at the clock for them once in this many rounds.
const STATS_BATCHES: u32 = 1024;
/// How often the interface's MTU is read again (an operator may change it while lbns runs).
const MTU_EVERY: Duration = Duration::from_secs(1);

/// AF_XDP sockets bound and the program attached, not yet answering.
pub(crate) struct Opened {
    iface: String,
    /// Kept to read the MTU again while running.
    ifsock: IfSock,
    mtu: usize,
    sockets: Vec<Xsk>,
    attached: bpf::Attached,
}

/// Attaches the steering program to `iface` and opens a socket per receive queue, for the UDP
/// addresses `listen` (ports already bound).
pub(crate) fn open(iface: &str, listen: &[SocketAddr]) -> Result<Opened, NetError> {
    let err = |step: &str, e: String| NetError::Xdp {
        iface: iface.to_owned(),
        reason: format!("{step}: {e}"),
    };
    let name = std::ffi::CString::new(iface).map_err(|e| err("interface name", e.to_string()))?;
    // SAFETY: a NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        return Err(err(
            "no such interface",
            io::Error::last_os_error().to_string(),
        ));
    }
    // Asked of the kernel, not /sys/class/net: sysfs shows the namespace it was mounted in,
    // which need not be ours.
    let ifsock = IfSock::new(iface).map_err(|e| err("interface settings", e.to_string()))?;
    let info = ifsock
        .settings()
        .map_err(|e| err("interface settings", e.to_string()))?;
    let (mtu, loopback, queues) = (info.mtu, info.loopback, info.queues);
    if loopback && listen.iter().any(SocketAddr::is_ipv4) {
        // A frame sent through AF_XDP carries no route, so on loopback the kernel routes our
        // reply as if it had arrived from outside: from and to a local 127/8 address, a
        // martian, unless both of these allow it (either the interface's or `all`).
        let on = |key: &str| {
            ["all", iface].iter().any(|dev| {
                std::fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{dev}/{key}"))
                    .is_ok_and(|v| v.trim() == "1")
            })
        };
        let missing: Vec<String> = ["route_localnet", "accept_local"]
            .into_iter()
            .filter(|k| !on(k))
            .map(|k| format!("net.ipv4.conf.{iface}.{k}=1"))
            .collect();
        if !missing.is_empty() {
            return Err(err(
                "IPv4 on a loopback interface",
                format!(
                    "the kernel would drop every reply as a martian; set {} (sysctl -w), \
                     or listen on IPv6 only",
                    missing.join(" and ")
                ),
            ));
        }
    }
    let attached = bpf::Attached::load(listen, ifindex, queues).map_err(|e| err("bpf", e))?;
    let mut sockets = Vec::new();
    for q in 0..queues {
        let xsk = Xsk::open(ifindex, q)
            .map_err(|e| err(&format!("AF_XDP socket for queue {q}"), e.to_string()))?;
        attached
            .insert(q, xsk.fd())
            .map_err(|e| err("adding the socket to the map", e.to_string()))?;
        sockets.push(xsk);
    }
    Ok(Opened {
        iface: iface.to_owned(),
        ifsock,
        mtu,
        sockets,
        attached,
    })
}

/// What the XDP path needs to know of its interface.
struct Iface {
    mtu: usize,
    loopback: bool,
    /// Receive queues (an AF_XDP socket per queue).
    queues: u32,
}

/// `struct ifreq` (netdevice(7)) with the union members used here.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    data: IfData,
}

#[repr(C)]
union IfData {
    int: libc::c_int,
    short: libc::c_short,
    ptr: *mut libc::c_void,
    _size: [u8; 24],
}

/// A socket to ask the kernel about one interface (netdevice(7) ioctls).
struct IfSock {
    fd: Socket,
    name: [u8; libc::IFNAMSIZ],
}

impl IfSock {
    fn new(name: &str) -> io::Result<IfSock> {
        let mut n = [0; libc::IFNAMSIZ];
        let len = name.len().min(libc::IFNAMSIZ - 1);
        n[..len].copy_from_slice(&name.as_bytes()[..len]);
        Ok(IfSock {
            fd: Socket::new(Domain::IPV4, Type::DGRAM, None)?,
            name: n,
        })
    }

    fn ioctl(&self, req: libc::c_ulong, data: IfData) -> io::Result<IfData> {
        let mut r = IfReq {
            name: self.name,
            data,
        };
        // SAFETY: `r` is a valid ifreq for these requests and lives for the call.
        if unsafe { libc::ioctl(self.fd.as_raw_fd(), req, &raw mut r) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(r.data)
    }

    fn mtu(&self) -> io::Result<usize> {
        // SAFETY: the kernel filled the member the request names.
        let mtu = unsafe { self.ioctl(libc::SIOCGIFMTU, IfData { int: 0 })?.int };
        Ok(usize::try_from(mtu).unwrap_or(1500))
    }

    fn settings(&self) -> io::Result<Iface> {
        // SAFETY: as in `mtu`.
        let flags = unsafe { self.ioctl(libc::SIOCGIFFLAGS, IfData { short: 0 })?.short };
        // ETHTOOL_GCHANNELS: struct ethtool_channels is cmd then eight counts, of which
        // rx_count [5] and combined_count [8] (veth reports its queues as both); drivers
        // without channels (lo) have one queue. Counting short is safe: the program passes
        // what arrives on a queue without a socket to the kernel's UDP sockets.
        let mut ch = [0u32; 9];
        ch[0] = 0x3c;
        let queues = match self.ioctl(
            libc::SIOCETHTOOL,
            IfData {
                ptr: ch.as_mut_ptr().cast(),
            },
        ) {
            Ok(_) => ch[5].max(ch[8]).max(1),
            Err(_) => 1,
        };
        Ok(Iface {
            mtu: self.mtu()?,
            loopback: flags as libc::c_int & libc::IFF_LOOPBACK != 0,
            queues,
        })
    }
}

/// The running AF_XDP workers.
pub(crate) struct Workers {
    threads: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    wake: OwnedFd,
    /// Dropped after the workers stop: detaches the program.
    _attached: bpf::Attached,
}

impl Opened {
    /// Starts one worker per socket.
    pub(crate) fn spawn(
        self,
        cell: SnapshotCell,
        limiter: Arc<RateTable>,
        metrics: Arc<Metrics>,
        query_log: Arc<QueryLog>,
    ) -> Workers {
        // SAFETY: plain eventfd(2).
        let wake = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        assert!(wake >= 0, "eventfd: {}", io::Error::last_os_error());
        // SAFETY: a new descriptor nothing else owns.
        let wake = unsafe { OwnedFd::from_raw_fd(wake) };
        let stop = Arc::new(AtomicBool::new(false));
        let mtu = Arc::new(AtomicUsize::new(self.mtu));
        tracing::info!(
            iface = %self.iface,
            queues = self.sockets.len(),
            mtu = self.mtu,
            "answering UDP through AF_XDP"
        );
        let watch = MtuWatch {
            iface: self.iface,
            ifsock: self.ifsock,
            mtu: mtu.clone(),
            stop: stop.clone(),
            wake: wake.as_raw_fd(),
        };
        let mut threads: Vec<JoinHandle<()>> = self
            .sockets
            .into_iter()
            .enumerate()
            .map(|(i, xsk)| {
                let ctx = Worker {
                    cell: cell.clone(),
                    limiter: limiter.clone(),
                    metrics: metrics.clone(),
                    query_log: query_log.clone(),
                    stop: stop.clone(),
                    wake: wake.as_raw_fd(),
                    mtu: mtu.clone(),
                };
                std::thread::Builder::new()
                    .name(format!("lbns-xdp-{i}"))
                    .spawn(move || ctx.run(xsk))
                    .expect("spawning a thread")
            })
            .collect();
        threads.push(
            std::thread::Builder::new()
                .name("lbns-xdp-mtu".into())
                .spawn(move || watch.run())
                .expect("spawning a thread"),
        );
        Workers {
            threads,
            stop,
            wake,
            _attached: self.attached,
        }
    }
}

impl Workers {
    /// Stops and joins the workers, at most [`STOP_GRACE`] in all (blocking), then detaches
    /// the program.
    pub(crate) fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let one = 1u64;
        // SAFETY: writing 8 bytes to our eventfd wakes every poll on it.
        unsafe { libc::write(self.wake.as_raw_fd(), (&raw const one).cast(), 8) };
        join_within(self.threads, STOP_GRACE);
    }
}

/// Reads the interface's MTU again every [`MTU_EVERY`], so that answers follow a change
/// within a second: one raised is used (fewer answers truncated), one lowered is respected
/// (a larger frame would be dropped on the link or beyond it).
struct MtuWatch {
    iface: String,
    ifsock: IfSock,
    mtu: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    wake: std::os::fd::RawFd,
}

impl MtuWatch {
    fn run(self) {
        let mut fd = libc::pollfd {
            fd: self.wake,
            events: libc::POLLIN,
            revents: 0,
        };
        while !self.stop.load(Ordering::Relaxed) {
            // SAFETY: `fd` is live for the call; the eventfd becomes readable to stop us.
            unsafe { libc::poll(&raw mut fd, 1, MTU_EVERY.as_millis() as libc::c_int) };
            match self.ifsock.mtu() {
                Ok(now) => {
                    let was = self.mtu.swap(now, Ordering::Relaxed);
                    if was != now {
                        tracing::info!(iface = %self.iface, was, now, "interface MTU changed");
                    }
                }
                // Gone or renamed: the last value stays, and so does the attached program.
                Err(e) => tracing::debug!(iface = %self.iface, error = %e, "reading the MTU"),
            }
        }
    }
}

struct Worker {
    cell: SnapshotCell,
    limiter: Arc<RateTable>,
    metrics: Arc<Metrics>,
    query_log: Arc<QueryLog>,
    stop: Arc<AtomicBool>,
    wake: std::os::fd::RawFd,
    mtu: Arc<AtomicUsize>,
}

impl Worker {
    fn run(self, mut xsk: Xsk) {
        let mut out = Vec::with_capacity(xsk::FRAME);
        let mut answerer = Answerer::new(
            self.limiter.clone(),
            LocalMetrics::xdp(),
            self.query_log.clone(),
        );
        let mut fds = [
            libc::pollfd {
                fd: xsk.fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.wake,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // The kernel's drop counters, added to the metrics at most once a second: every
        // STATS_BATCHES rounds, and before sleeping after the RX ring was seen half full or
        // more (how drops happen: ring full, or no free frame), then waking once more for it
        // if the last read was too recent. In ordinary operation the sleep path reads no clock
        // and arms no timer. Returns the time until the next read, if one is owed.
        let (mut dropped, mut stats_at, mut rounds, mut owed) = (0u64, Instant::now(), 0u32, false);
        let mut read_stats = |xsk: &Xsk, owed: &mut bool| -> Option<Duration> {
            let since = stats_at.elapsed();
            if since < STATS_EVERY {
                return (*owed).then(|| STATS_EVERY - since);
            }
            let now = xsk.dropped();
            self.metrics
                .xdp_dropped
                .fetch_add(now.saturating_sub(dropped), Ordering::Relaxed);
            dropped = now;
            stats_at = Instant::now();
            *owed = false;
            None
        };
        while !self.stop.load(Ordering::Relaxed) {
            xsk.refill();
            let (first, n) = xsk.received();
            if n == 0 {
                // A reply the kernel could not take yet: try again soon, else sleep until
                // a frame arrives (poll sees a non-empty RX ring, so none is missed).
                let due = if owed {
                    read_stats(&xsk, &mut owed)
                } else {
                    None
                };
                let timeout = if xsk.tx_pending() {
                    xsk.kick();
                    1
                } else {
                    due.map_or(-1, |d| d.as_millis() as libc::c_int + 1)
                };
                // SAFETY: `fds` is live for the call.
                unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout) };
                continue;
            }
            owed |= n >= xsk::RING / 2;
            let n = n.min(BATCH);

            let snapshot = self.cell.load();
            let mtu = self.mtu.load(Ordering::Relaxed);
            let mut queued = false;
            for i in first..first.wrapping_add(n) {
                let (addr, len, buf) = xsk.rx_frame(i);
                let reply = (|| {
                    let d = frame::parse(&buf[..len.min(buf.len())])?;
                    if cfg!(feature = "bench-floor") {
                        return Some(floor_echo(buf, &d));
                    }
                    let query = &buf[d.payload.clone()];
                    answerer
                        .answer(&snapshot, query, Some(d.src.ip()), &mut out, || Some(d.src))?;
                    let room = buf.len() - d.headers();
                    let fits = |o: &Vec<u8>| o.len() <= room && d.ip_len(o.len()) <= mtu;
                    if !fits(&out) {
                        // Never fragmented (RFC 9715 §3.1): TC=1, as the UDP workers do.
                        handle_truncated(&snapshot, query, &mut out)?;
                        if !fits(&out) {
                            return None;
                        }
                        answerer.late_truncation();
                    }
                    buf[d.headers()..][..out.len()].copy_from_slice(&out);
                    Some(frame::reply(buf, &d, out.len()))
                })();
                match reply {
                    Some(len) => queued |= xsk.send(addr, len),
                    None => xsk.recycle(addr),
                }
            }
            xsk.release_rx(first.wrapping_add(n));
            if queued {
                xsk.kick();
            }
            answerer.flush(&self.metrics);
            rounds = rounds.wrapping_add(1);
            if rounds % STATS_BATCHES == 0 {
                read_stats(&xsk, &mut owed);
            }
        }
    }
}

/// `--features bench-floor`: the query sent back unanswered, with only QR set, for the floor
/// under any answer that benches/dnsperf.sh `--floor` measures (frame checks, rings, the
/// kernel's send path, no DNS work).
fn floor_echo(buf: &mut [u8], d: &frame::Datagram) -> usize {
    let len = d.payload.len();
    // RFC 1035 §4.1.1: QR is the top bit of the third octet.
    buf[d.headers() + 2] |= 0x80;
    frame::reply(buf, d, len)
}
