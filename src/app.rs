//! The running server: binds every listener, starts the monitor and [`Control`], and stops
//! on request. `main` drives it from signals; tests drive it in-process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::{Config, ControlConfig, ServerConfig, StatusConfig};
use crate::control::{self, Control, LoadError, Loaded};
use crate::dns::RateTable;
use crate::domain::Model;
use crate::metrics::Metrics;
use crate::monitor::Monitor;
use crate::monitor::peers::Link;
#[cfg(feature = "xdp")]
use crate::net::xdp;
use crate::net::{NetError, tcp, udp};
use crate::privdrop::{self, PrivError};
use crate::querylog::QueryLog;
use crate::snapshot::Snapshot;
use crate::state::{SavedState, StateError};
use crate::status;

/// Raises the open-file limit and lets TCP probes keep a socket each within it; says so when
/// some backends will have to open a socket per probe instead.
fn set_probe_socket_budget(model: &Model, tcp_max_connections: usize) {
    let nofile = crate::limits::raise_nofile();
    let budget = crate::limits::probe_socket_budget(nofile, tcp_max_connections);
    crate::probe::tcp::set_keep_budget(budget);
    let tcp_probed = model
        .pools
        .iter()
        .flat_map(|p| &p.backends)
        .filter(|b| b.probe.as_ref().is_some_and(|p| p.kind == "tcp"))
        .count();
    if tcp_probed > budget {
        tracing::warn!(
            tcp_probed,
            kept = budget,
            open_files = nofile,
            "the open-file limit lets only some TCP probes keep their socket; the rest open one \
             per probe (raise LimitNOFILE / ulimit -n)"
        );
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The config, its probes or its zones.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A listener could not be bound or set up.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The state file could not be read.
    #[error(transparent)]
    State(#[from] StateError),
    /// The user or group could not be resolved or switched to.
    #[error(transparent)]
    Privileges(#[from] PrivError),
    /// The control socket could not be set up.
    #[error(transparent)]
    Control(#[from] status::SocketError),
}

/// A running lbns: listeners bound and answering.
pub struct Server {
    control: Arc<Control>,
    udp_addrs: Vec<SocketAddr>,
    tcp_addrs: Vec<SocketAddr>,
    status_addrs: Vec<SocketAddr>,
    control_socket: PathBuf,
    cancel: CancellationToken,
    udp: udp::Workers,
    /// AF_XDP workers (`[server] xdp`), only in a build with the `xdp` feature.
    #[cfg(feature = "xdp")]
    xdp: Option<xdp::Workers>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Saves the drained sets taken from peers (`[cluster]` only).
    peer_drains: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Loads the zones and the state file, binds every listener (DNS and status), drops
    /// privileges if configured, and starts answering. Must run inside a tokio runtime (TCP
    /// and the status listener run on it).
    pub async fn start(config: Config) -> Result<Server, AppError> {
        let Loaded {
            config,
            model,
            zones,
            warnings,
            peer_key,
        } = control::check(config)?;
        // The parser's buffers are freed by now; give them back to the system.
        crate::limits::release_memory();
        for w in &warnings {
            tracing::warn!("{w}");
        }
        // Every key of `[server]` and `[status]` is named here, with no `..`: one added to the
        // config that nobody wires in does not compile. Those marked `_` reach the query path
        // through the model.
        let ServerConfig {
            listen,
            udp_workers,
            tcp_idle_timeout,
            tcp_max_connections,
            tcp_max_connections_per_client,
            tcp_write_timeout,
            edns_udp_size: _,
            identity: _,
            version: _,
            nsid: _,
            state_file,
            query_log_sample,
            user,
            group,
            xdp: xdp_iface,
            // Read by the zone loader, in `check` above.
            include_dirs: _,
        } = config.server.clone();
        let StatusConfig {
            listen: status_listen,
            allow,
            header_timeout,
            idle_timeout,
            max_connections,
            // Read at each scrape, from the config in force (`Control::metrics_per_backend`).
            metrics_per_backend: _,
        } = config.status.clone();
        let ControlConfig {
            socket: control_path,
            group: control_group,
        } = config.control.clone();
        // Everything that can fail on a typo fails here, before a socket is opened.
        let identity = privdrop::resolve(user.as_deref(), group.as_deref())?;
        let control_gid = match &control_group {
            Some(g) => Some(privdrop::lookup_group(g)?.gid),
            None => None,
        };
        let saved = SavedState::load(&state_file)?;
        SavedState::remove_orphans(&state_file);

        // Bind first (a busy port fails fast), answer only after the first probe round.
        let mut udp_sockets = Vec::new();
        let mut tcp_listeners = Vec::new();
        let mut udp_addrs = Vec::new();
        let mut tcp_addrs = Vec::new();
        for &addr in &listen {
            let (sockets, listener) = bind_pair(addr, udp_workers)?;
            udp_addrs.push(sockets[0].local_addr().expect("bound"));
            tcp_addrs.push(listener.local_addr().expect("bound"));
            udp_sockets.extend(sockets);
            tcp_listeners.push(listener);
        }
        // The peers' socket, bound with the others (its port may be privileged too).
        let cluster_socket = match &model.cluster {
            Some(c) => {
                Some(
                    std::net::UdpSocket::bind(c.listen).map_err(|source| NetError::Bind {
                        proto: "cluster udp",
                        addr: c.listen,
                        source,
                    })?,
                )
            }
            None => None,
        };
        let status_listeners = status_listen
            .iter()
            .map(|&a| status::bind(a))
            .collect::<Result<Vec<_>, _>>()?;
        let status_addrs: Vec<SocketAddr> = status_listeners
            .iter()
            .map(|l| l.local_addr().expect("bound"))
            .collect();
        // Needs CAP_NET_ADMIN and CAP_BPF: before privileges go.
        #[cfg(feature = "xdp")]
        let xdp = match &xdp_iface {
            Some(iface) => Some(xdp::open(iface, &udp_addrs)?),
            None => None,
        };
        #[cfg(feature = "xdp")]
        if cfg!(feature = "bench-floor") && xdp.is_some() {
            tracing::warn!(
                "built with the bench-floor feature: queries through AF_XDP are sent back \
                 unanswered (benches/dnsperf.sh --floor); do not serve with this binary"
            );
        }
        // Config::parse refuses the key in such a build; this is for a Config made in code.
        #[cfg(not(feature = "xdp"))]
        if let Some(iface) = &xdp_iface {
            return Err(NetError::Xdp {
                iface: iface.clone(),
                reason: "this lbns was built without AF_XDP support (cargo build --features xdp)"
                    .to_owned(),
            }
            .into());
        }

        // Last of the sockets, so that a start failing above leaves no socket file (dropping
        // it removes the file, too).
        let control_socket = status::socket::bind(&control_path, control_gid)?;

        // Every socket is bound: nothing below needs root.
        match &identity {
            Some(target) => privdrop::drop_to(target)?,
            None if privdrop::is_root() => tracing::warn!(
                "running as root; set [server] user (and group) to drop privileges after binding"
            ),
            None => {}
        }

        let allow: Arc<[ipnet::IpNet]> = allow.into();
        let (zones_n, pools_n) = (config.zones.len(), config.pools.len());
        set_probe_socket_budget(&model, tcp_max_connections);
        let link = match (cluster_socket, peer_key, &model.cluster) {
            (Some(socket), Some(key), Some(c)) => Some(
                Link::new(socket, key, c.peers.clone(), c.peer_max_age).map_err(|source| {
                    NetError::Bind {
                        proto: "cluster udp",
                        addr: c.listen,
                        source,
                    }
                })?,
            ),
            _ => None,
        };
        let monitor = Arc::new(Monitor::start(model, zones, link).await);
        let cell = monitor.cell();

        let cancel = CancellationToken::new();
        let metrics = Arc::new(Metrics::default());
        let query_log = Arc::new(QueryLog::new(query_log_sample));
        // Allocated once, whether `[rrl]` is on or not: a reload may turn it on.
        let limiter = Arc::new(RateTable::new(config.rrl.table_size));
        let control = Arc::new(Control::new(
            monitor,
            metrics.clone(),
            query_log.clone(),
            config,
        ));
        // Before any listener runs, so no query ever sees a drained backend.
        control.restore_drained(&saved);
        let peer_drains = control
            .monitor()
            .has_peers()
            .then(|| control.save_peer_drains());
        let udp = udp::Workers::spawn(
            udp_sockets,
            cell.clone(),
            limiter.clone(),
            metrics.clone(),
            query_log.clone(),
        );
        #[cfg(feature = "xdp")]
        let xdp = xdp.map(|x| x.spawn(cell.clone(), limiter, metrics.clone(), query_log.clone()));
        let limits = tcp::Limits {
            idle_timeout: tcp_idle_timeout,
            write_timeout: tcp_write_timeout,
            max_connections: tcp_max_connections,
            max_per_client: tcp_max_connections_per_client,
        };
        let mut tasks: Vec<_> = tcp_listeners
            .into_iter()
            .map(|l| {
                tokio::spawn(tcp::serve(
                    l,
                    cell.clone(),
                    metrics.clone(),
                    query_log.clone(),
                    limits,
                    cancel.clone(),
                ))
            })
            .collect();
        let http_limits = status::Limits {
            header_timeout,
            idle_timeout,
            max_connections,
        };
        tasks.extend(status_listeners.into_iter().map(|l| {
            tokio::spawn(status::serve(
                l,
                control.clone(),
                allow.clone(),
                http_limits,
                cancel.clone(),
            ))
        }));
        let control_path = control_socket.path().to_owned();
        tasks.push(tokio::spawn(status::serve_control(
            control_socket,
            control.clone(),
            http_limits,
            cancel.clone(),
        )));
        tracing::info!(
            udp = ?udp_addrs,
            tcp = ?tcp_addrs,
            status = ?status_addrs,
            control = %control_path.display(),
            zones = zones_n,
            pools = pools_n,
            "lbns answering"
        );
        Ok(Server {
            control,
            udp_addrs,
            tcp_addrs,
            status_addrs,
            control_socket: control_path,
            cancel,
            udp,
            #[cfg(feature = "xdp")]
            xdp,
            tasks,
            peer_drains,
        })
    }

    /// The UDP addresses actually bound (ports filled in when the config said 0).
    pub fn udp_addrs(&self) -> &[SocketAddr] {
        &self.udp_addrs
    }

    /// The TCP listeners' addresses, one per `[server] listen` entry (ports filled in when the
    /// config said 0).
    pub fn tcp_addrs(&self) -> &[SocketAddr] {
        &self.tcp_addrs
    }

    /// The status listener's addresses (empty when `[status]` turns it off).
    pub fn status_addrs(&self) -> &[SocketAddr] {
        &self.status_addrs
    }

    /// The control socket's path (`[control] socket`).
    pub fn control_socket(&self) -> &Path {
        &self.control_socket
    }

    /// The published snapshot, for inspection.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.control.monitor().cell().load_full()
    }

    /// Reload, drain and status, as the status listener uses them.
    pub fn control(&self) -> &Arc<Control> {
        &self.control
    }

    /// Stops accepting, lets in-flight TCP answers and status requests finish, and joins the
    /// UDP workers.
    pub async fn shutdown(self) {
        self.control.monitor().stopped().await;
        if let Some(t) = self.peer_drains {
            t.abort();
            let _ = t.await;
        }
        self.cancel.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        let udp = self.udp;
        #[cfg(feature = "xdp")]
        let xdp = self.xdp;
        let _ = tokio::task::spawn_blocking(move || {
            #[cfg(feature = "xdp")]
            if let Some(x) = xdp {
                x.stop();
            }
            udp.stop();
        })
        .await;
        tracing::info!("lbns stopped");
    }
}

/// Binds UDP workers and TCP on one address. With port 0 the TCP port must match the UDP one
/// the kernel chose; if that port is taken for TCP, try again with a fresh one.
fn bind_pair(
    addr: SocketAddr,
    workers: usize,
) -> Result<(Vec<std::net::UdpSocket>, std::net::TcpListener), NetError> {
    let mut attempts = 0;
    loop {
        let sockets = udp::bind(addr, workers)?;
        let bound = sockets[0].local_addr().expect("bound");
        match tcp::bind(bound) {
            Ok(l) => return Ok((sockets, l)),
            Err(e) if addr.port() == 0 && attempts < 16 => {
                attempts += 1;
                tracing::debug!(error = %e, "tcp port taken; retrying");
            }
            Err(e) => return Err(e),
        }
    }
}
