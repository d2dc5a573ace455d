//! TCP connect probes, built to cost little at 10,000 probes a second.
//!
//! Three things keep a probe cheap:
//! - **The socket is kept between probes.** After each probe the socket is disconnected with
//!   `connect(AF_UNSPEC)` (Linux `tcp_disconnect`, the ABORT of RFC 793 §3.8) and reused for the
//!   backend's next probe, which saves the `socket`/`close` pair and the inode and file work
//!   behind them — a quarter of a probe's CPU.
//! - **A connection that succeeded is reset, not closed.** The abort sends RST, as HAProxy's
//!   checks do, so neither side keeps a TIME_WAIT entry (at 10,000 probes a second FIN closes
//!   would pin hundreds of thousands of them) and the backend sees one packet fewer.
//! - **A connect the kernel has already settled is not put in the reactor.** On loopback and
//!   near networks the answer (SYN-ACK or RST) is usually processed before `connect` returns
//!   `EINPROGRESS`, so one zero-timeout `poll` settles it; only a connect still in flight is
//!   registered with tokio and awaited.
//!
//! Kept sockets count against the open-file limit, so only as many are kept as
//! [`set_keep_budget`] allows; past that, probes open and close a socket each time as before.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::{Probe, ProbeFuture, Reading, Target};

/// How many probe sockets may stay open between probes, and how many do.
#[derive(Debug)]
pub(crate) struct KeepBudget {
    limit: AtomicUsize,
    kept: AtomicUsize,
}

impl KeepBudget {
    pub(crate) const fn new(limit: usize) -> KeepBudget {
        KeepBudget {
            limit: AtomicUsize::new(limit),
            kept: AtomicUsize::new(0),
        }
    }

    fn try_take(&self) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        self.kept
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |k| {
                (k < limit).then_some(k + 1)
            })
            .is_ok()
    }
}

/// The process-wide budget every probe loop draws from.
static BUDGET: KeepBudget = KeepBudget::new(1024);

/// Sets how many probe sockets may stay open between probes; callers derive it from the
/// open-file limit, leaving room for listeners, TCP clients and in-flight probes.
pub(crate) fn set_keep_budget(n: usize) {
    BUDGET.limit.store(n, Ordering::Relaxed);
}

/// One backend's TCP probe socket, kept between its probes while the budget allows.
#[derive(Debug)]
pub(crate) struct TcpState {
    socket: Option<Socket>,
    /// The address probes are sent from (`source`); `None`: the kernel's choice.
    source: Option<std::net::IpAddr>,
    budget: &'static KeepBudget,
    /// Holds one unit of `budget`; given back on drop.
    holds_slot: bool,
}

impl Default for TcpState {
    fn default() -> Self {
        TcpState::with_budget(&BUDGET)
    }
}

impl Drop for TcpState {
    fn drop(&mut self) {
        if self.holds_slot {
            self.budget.kept.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl TcpState {
    pub(crate) fn with_budget(budget: &'static KeepBudget) -> TcpState {
        TcpState {
            socket: None,
            source: None,
            budget,
            holds_slot: false,
        }
    }

    fn take_socket(&mut self, addr: SocketAddr) -> std::io::Result<Socket> {
        match self.socket.take() {
            Some(s) => Ok(s),
            None => {
                let socket = Socket::new(
                    Domain::for_address(addr),
                    Type::STREAM.nonblocking(),
                    Some(Protocol::TCP),
                )?;
                // Bound to the address only: a kept socket keeps it across disconnects (the
                // kernel locks an explicitly bound address) and gets a fresh port each connect.
                if let Some(ip) = self.source {
                    socket.bind(&SocketAddr::new(ip, 0).into())?;
                }
                Ok(socket)
            }
        }
    }

    /// Aborts whatever the socket holds and keeps it for the next probe, if the budget allows.
    /// `was_open`: the connect succeeded or may still be in flight, so the abort leaves an
    /// error to clear (a refused connect leaves the socket CLOSED with nothing pending).
    fn keep(&mut self, socket: Socket, was_open: bool) {
        if !self.holds_slot {
            if !self.budget.try_take() {
                return;
            }
            self.holds_slot = true;
        }
        if disconnect(&socket, was_open).is_ok() {
            self.socket = Some(socket);
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// The port to connect to (required).
    port: Option<u16>,
    /// The address to connect from.
    source: Option<std::net::IpAddr>,
}

/// `kind = "tcp"`: up when a connect to `port` is accepted.
pub(crate) fn build(table: &toml::Table, target: &Target<'_>) -> Result<Box<dyn Probe>, String> {
    let Settings { port, source } = super::settings("tcp", table)?;
    let port = port.filter(|&p| p != 0).ok_or("a tcp probe needs a port")?;
    super::check_source(source, target)?;
    let mut state = TcpState::default();
    state.source = source;
    let addr = SocketAddr::new(target.address, port);
    Ok(Box::new(TcpProbe {
        addr,
        state,
        connected: format!("tcp {addr} connected"),
    }))
}

/// One backend's TCP probe and the socket it keeps between runs.
struct TcpProbe {
    addr: SocketAddr,
    state: TcpState,
    /// What a good probe reports, written once: formatting it per probe cost more than the
    /// rest of the probe's own work at 10,000 probes a second.
    connected: String,
}

impl Probe for TcpProbe {
    fn run(&mut self) -> ProbeFuture<'_> {
        Box::pin(async move {
            let addr = self.addr;
            connect(addr, &mut self.state)
                .await
                .map(|()| Reading {
                    detail: self.connected.clone(),
                    ..Reading::default()
                })
                .map_err(|e| format!("tcp {addr}: {e}"))
        })
    }

    fn describe(&self) -> String {
        format!("tcp:{}", self.addr.port())
    }
}

/// Connects to `addr`: `Ok` if the connection was accepted.
pub(crate) async fn connect(addr: SocketAddr, state: &mut TcpState) -> std::io::Result<()> {
    let socket = state.take_socket(addr)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {
            state.keep(socket, true);
            return Ok(());
        }
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => {
            state.keep(socket, false);
            return Err(e);
        }
    }
    if settled(&socket) {
        let result = outcome(&socket);
        state.keep(socket, result.is_ok());
        return result;
    }
    // Still in flight: wait in the reactor. If the probe times out, this future is dropped with
    // the socket in it (closing it aborts the connect); the next probe opens a fresh one.
    // SAFETY: a socket2::Socket owns its fd and always returns the same one; it stays open
    // until `into_inner` or the drop of the AsyncFd.
    let fd = unsafe { AsyncFd::register_with_interest(socket, Interest::WRITABLE) }
        .map_err(|e| e.into_parts().1)?;
    let _ = fd.writable().await?;
    let socket = fd.into_inner();
    let result = outcome(&socket);
    state.keep(socket, result.is_ok());
    result
}

/// True if the connect has finished, either way (writable, or an error/hang-up pending).
fn settled(socket: &Socket) -> bool {
    let mut pfd = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call; timeout 0 never blocks.
    unsafe { libc::poll(&mut pfd, 1, 0) == 1 }
}

/// The result of a finished connect: the pending socket error, if any.
fn outcome(socket: &Socket) -> std::io::Result<()> {
    match socket.take_error()? {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// `connect(AF_UNSPEC)`: the kernel aborts the connection (RST if one was open) and returns
/// the socket to CLOSED with its port released, ready for another `connect`.
fn disconnect(socket: &Socket, was_open: bool) -> std::io::Result<()> {
    // SAFETY: all-zero is a valid sockaddr; only its family (AF_UNSPEC = 0) is read.
    let unspec: libc::sockaddr = unsafe { std::mem::zeroed() };
    // SAFETY: a valid fd and a sockaddr that lives for the call.
    let r = unsafe {
        libc::connect(
            socket.as_raw_fd(),
            &unspec,
            std::mem::size_of::<libc::sockaddr>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // Aborting an open (or opening) connection leaves ECONNRESET pending; clear it so the next
    // probe does not read it as its own result.
    if was_open {
        let _ = socket.take_error();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sockets in TIME_WAIT (state 06) with `port` at either end, from /proc/net/tcp.
    fn time_wait_on(port: u16) -> usize {
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
        let hex = format!(":{port:04X}");
        table
            .lines()
            .skip(1)
            .filter(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f[3] == "06" && (f[1].ends_with(&hex) || f[2].ends_with(&hex))
            })
            .count()
    }

    /// Whether the kept socket still holds the local address it last connected from: another
    /// socket (without SO_REUSEADDR) cannot bind it then. Kept sockets must not pin ports:
    /// 10,000 of them would take a third of the default ephemeral range.
    fn holds_port(state: &TcpState, last: SocketAddr) -> bool {
        assert!(state.socket.is_some(), "a socket is kept");
        let probe = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        probe.bind(&last.into()).is_err()
    }

    /// The source port the kept socket last used, as getsockname still reports it.
    fn kept_sport(state: &TcpState) -> u16 {
        let socket = state.socket.as_ref().expect("a socket is kept");
        let port = socket.local_addr().unwrap().as_socket().unwrap().port();
        assert_ne!(
            port, 0,
            "getsockname no longer reports the last port; find another check"
        );
        port
    }

    /// One kept socket alternates between an open and a closed port and always reports the
    /// truth: no stale error or state leaks from one probe into the next. Accepted probes are
    /// aborted with RST, so no TIME_WAIT entry is left behind, and no port stays bound.
    #[tokio::test]
    async fn reused_socket_reports_each_probe_truthfully() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        static B: KeepBudget = KeepBudget::new(1);
        let mut state = TcpState::with_budget(&B);
        for round in 0..5 {
            connect(open, &mut state)
                .await
                .unwrap_or_else(|e| panic!("round {round}: open port refused: {e}"));
            let (_, local) = listener.accept().unwrap();
            assert!(
                !holds_port(&state, local),
                "round {round}: {local} still bound"
            );
            let e = connect(closed, &mut state).await.unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
            // getsockname keeps the old port number after the disconnect (address 0.0.0.0).
            let port = kept_sport(&state);
            let local = SocketAddr::from(([127, 0, 0, 1], port));
            assert!(
                !holds_port(&state, local),
                "round {round}: {local} still bound"
            );
        }
        assert_eq!(time_wait_on(open.port()), 0);
        // The check above does see a bound address: the listener's.
        assert!(holds_port(&state, open));
        drop(state);
        assert_eq!(B.kept.load(Ordering::Relaxed), 0, "slot given back");
    }

    /// A connect the kernel has not settled when `connect` returns waits in the reactor, and
    /// the socket is still kept afterwards. The listener's accept queue is full, so our SYN is
    /// dropped until the queue drains and TCP retransmits it (after about a second).
    #[tokio::test]
    async fn connect_in_flight_waits_in_the_reactor() {
        let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        listener
            .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        listener.listen(0).unwrap();
        let addr = listener.local_addr().unwrap().as_socket().unwrap();
        // Fill the queue (backlog 0 admits one) so the next SYN is dropped.
        let mut fillers = Vec::new();
        for _ in 0..2 {
            let s = Socket::new(Domain::IPV4, Type::STREAM.nonblocking(), None).unwrap();
            let _ = s.connect(&addr.into());
            fillers.push(s);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let drain = std::thread::spawn({
            let done = done.clone();
            move || {
                std::thread::sleep(std::time::Duration::from_millis(300));
                let mut accepted = Vec::new();
                listener.set_nonblocking(true).unwrap();
                while !done.load(Ordering::Relaxed) {
                    if let Ok((s, _)) = listener.accept() {
                        accepted.push(s);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
        });
        static B: KeepBudget = KeepBudget::new(1);
        let mut state = TcpState::with_budget(&B);
        let start = std::time::Instant::now();
        let result = connect(addr, &mut state).await;
        let took = start.elapsed();
        done.store(true, Ordering::Relaxed);
        drain.join().unwrap();
        result.unwrap();
        assert!(
            took >= std::time::Duration::from_millis(300),
            "settled before the queue drained ({took:?}): the SYN was not held back"
        );
        assert!(state.socket.is_some(), "socket kept after a slow connect");
    }

    /// Past the budget, probes still work; they just do not keep their socket.
    #[tokio::test]
    async fn over_budget_probes_open_a_socket_each_time() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap();
        static B: KeepBudget = KeepBudget::new(2);
        let mut states: Vec<TcpState> = (0..3).map(|_| TcpState::with_budget(&B)).collect();
        for _ in 0..2 {
            for s in &mut states {
                connect(open, s).await.unwrap();
            }
        }
        let kept: Vec<bool> = states.iter().map(|s| s.socket.is_some()).collect();
        assert_eq!(kept, [true, true, false]);
    }

    #[tokio::test]
    async fn probes_connect_from_their_source_address() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let table: toml::Table =
            toml::from_str(&format!("port = {port}\nsource = \"127.0.0.9\"")).unwrap();
        let shared = crate::probe::Shared::new();
        let target = Target {
            address: [127, 0, 0, 1].into(),
            timeout: std::time::Duration::from_secs(1),
            shared: &shared,
        };
        let mut probe = build(&table, &target).unwrap();
        // Twice: the kept socket keeps its source across the disconnect.
        for _ in 0..2 {
            let r = crate::probe::observe(probe.as_mut(), target.timeout).await;
            assert!(r.ok, "{}", r.detail);
            let (_, from) = listener.accept().unwrap();
            assert_eq!(from.ip(), std::net::IpAddr::from([127, 0, 0, 9]));
        }
        let table: toml::Table = toml::from_str("port = 80\nsource = \"::1\"").unwrap();
        assert_eq!(
            build(&table, &target).err().unwrap(),
            "probe source ::1 is not of the backend's address family"
        );
    }
}
