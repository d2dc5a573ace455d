//! The running server: loads a [`Config`], publishes snapshots, owns the listeners, and reloads
//! or stops on request. `main` drives it from signals, the status listener from HTTP
//! ([`Control`]); tests drive it in-process.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigErrors};
use crate::metrics::Metrics;
use crate::monitor::Monitor;
use crate::net::{NetError, tcp, udp, xdp};
use crate::pool::Snapshot;
use crate::privdrop::{self, PrivError};
use crate::querylog::QueryLog;
use crate::state::{State, StateError};
use crate::status::{self, Report};
use crate::zones::{ZoneError, ZoneSet, ZoneWarning};

/// Raises the open-file limit and lets TCP probes keep a socket each within it; says so when
/// some backends will have to open a socket per probe instead.
fn set_probe_socket_budget(config: &Config) {
    let nofile = crate::limits::raise_nofile();
    let budget = crate::limits::probe_socket_budget(nofile, config.server.tcp_max_connections);
    crate::probe::tcp::set_keep_budget(budget);
    let tcp_probed = config
        .pools
        .iter()
        .flat_map(|p| &p.backends)
        .filter(|b| matches!(b.probe.kind, crate::config::ProbeKind::Tcp { .. }))
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

/// Why the server could not start or a reload was rejected.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    #[error("{}", ZoneErrors(.0))]
    Zones(Vec<ZoneError>),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Privileges(#[from] PrivError),
}

/// Why a drain or undrain was refused or only half done.
#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    #[error("no pool `{pool}`")]
    NoPool { pool: String },
    #[error("no backend `{backend}` in pool `{pool}`")]
    NoBackend { pool: String, backend: String },
    /// Applied to answers, but it would not survive a restart.
    #[error("{backend} in {pool} is {verb} in answers, but not saved: {source}")]
    Persist {
        pool: String,
        backend: String,
        verb: &'static str,
        #[source]
        source: StateError,
    },
}

struct ZoneErrors<'a>(&'a [ZoneError]);

impl fmt::Display for ZoneErrors<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::config::write_lines(f, self.0)
    }
}

/// Everything `lbns check` verifies: the config and every zone it names.
pub fn check(config: &Config) -> Result<(ZoneSet, Vec<ZoneWarning>), AppError> {
    ZoneSet::load(&config.zones, &config.pools).map_err(AppError::Zones)
}

/// What signals and the status listener act on: reload, drain, status. Shared by the server
/// and every HTTP handler.
pub struct Control {
    monitor: Arc<Monitor>,
    metrics: Arc<Metrics>,
    query_log: Arc<QueryLog>,
    /// The file `reload_from_file` reads: the one the server started with.
    config_path: PathBuf,
    /// Fixed at start, like the listeners.
    state_file: PathBuf,
    /// Serializes reloads.
    reload_lock: Mutex<()>,
    /// Serializes drain changes with their state-file write, so that the file always ends up
    /// holding the latest set, never an older one written last.
    drain_lock: std::sync::Mutex<()>,
    started: Instant,
    started_at: SystemTime,
}

impl Control {
    pub fn monitor(&self) -> &Arc<Monitor> {
        &self.monitor
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn query_log(&self) -> &Arc<QueryLog> {
        &self.query_log
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn state_file(&self) -> &Path {
        &self.state_file
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The status page's data.
    pub fn report(&self) -> Report {
        let pools = self.monitor.status();
        let generation = self.monitor.cell().load().generation;
        Report::new(
            &pools,
            &self.metrics,
            generation,
            self.uptime(),
            &self.config_path,
        )
    }

    /// `/metrics`.
    pub fn prometheus(&self) -> String {
        let pools = self.monitor.status();
        let generation = self.monitor.cell().load().generation;
        status::prom::render(&pools, &self.metrics, generation, self.started_at)
    }

    /// Replaces config and zones. Everything is built beside the running snapshot; on any error
    /// the old one keeps serving and the error is returned. Of `[server]` only
    /// `query_log_sample` applies at once; listeners, privileges and the state file need a
    /// restart.
    pub async fn reload(&self, config: Config) -> Result<Vec<ZoneWarning>, AppError> {
        let _guard = self.reload_lock.lock().await;
        let (zones, warnings) = check(&config)?;
        let old = self.monitor.config();
        let restart_only = |c: &Config| {
            let mut server = c.server.clone();
            server.query_log_sample = 0;
            (server, c.status.clone())
        };
        if restart_only(&old) != restart_only(&config) {
            tracing::warn!(
                "[server] or [status] changed; only query_log_sample applies now, the rest at the next restart"
            );
        }
        self.query_log.set_every(config.server.query_log_sample);
        let (zones_n, pools_n) = (config.zones.len(), config.pools.len());
        self.monitor.reload(config, zones).await;
        log_unknown_drained(&self.monitor, &self.monitor.drained());
        tracing::info!(
            generation = self.monitor.cell().load().generation,
            zones = zones_n,
            pools = pools_n,
            "reloaded"
        );
        Ok(warnings)
    }

    /// Reloads from the config file the server started with (SIGHUP and `lbns reload`).
    pub async fn reload_from_file(&self) -> Result<Vec<ZoneWarning>, AppError> {
        let config = Config::load(&self.config_path)?;
        self.reload(config).await
    }

    /// Drains (or undrains) a backend: out of (back into) answers at once, and saved to the
    /// state file. `pool` may omit the final dot; `backend` is a name or an address. Returns
    /// the pool and backend as the config names them.
    pub fn set_drained(
        &self,
        pool: &str,
        backend: &str,
        drained: bool,
    ) -> Result<(String, String), DrainError> {
        let _guard = self.drain_lock.lock().expect("drain lock");
        let Some((pool, backend)) = self.monitor.drain_key(pool, backend) else {
            return Err(if self.monitor.has_pool(pool) {
                DrainError::NoBackend {
                    pool: pool.to_owned(),
                    backend: backend.to_owned(),
                }
            } else {
                DrainError::NoPool {
                    pool: pool.to_owned(),
                }
            });
        };
        let verb = if drained { "drained" } else { "undrained" };
        // A reload between the lookup and here could remove the backend; then say so.
        if !self.monitor.set_drained(&pool, &backend, drained) {
            return Err(DrainError::NoBackend { pool, backend });
        }
        tracing::info!(pool = %pool, backend = %backend, "{verb}");
        State::from_drained(&self.monitor.drained())
            .save(&self.state_file)
            .map_err(|source| DrainError::Persist {
                pool: pool.clone(),
                backend: backend.clone(),
                verb,
                source,
            })?;
        Ok((pool, backend))
    }
}

/// Warns about drained entries that name no backend of the current config. They are kept: a
/// backend removed by one reload and added back by the next should still be drained.
fn log_unknown_drained(monitor: &Monitor, drained: &HashSet<(String, String)>) {
    for (pool, backend) in drained {
        if monitor.drain_key(pool, backend).as_ref() != Some(&(pool.clone(), backend.clone())) {
            tracing::warn!(
                pool = %pool,
                backend = %backend,
                "drained backend is not in the configuration; kept in the state file"
            );
        }
    }
}

/// A running lbns: listeners bound and answering.
pub struct Server {
    control: Arc<Control>,
    udp_addrs: Vec<SocketAddr>,
    tcp_addrs: Vec<SocketAddr>,
    status_addrs: Vec<SocketAddr>,
    cancel: CancellationToken,
    udp: udp::Workers,
    xdp: Option<xdp::Workers>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Loads the zones and the state file, binds every listener (DNS and status), drops
    /// privileges if configured, and starts answering. Must run inside a tokio runtime (TCP
    /// and the status listener run on it).
    pub async fn start(config: Config) -> Result<Server, AppError> {
        let (zones, warnings) = check(&config)?;
        for w in &warnings {
            tracing::warn!("{w}");
        }
        // Everything that can fail on a typo fails here, before a socket is opened.
        let identity = privdrop::resolve(
            config.server.user.as_deref(),
            config.server.group.as_deref(),
        )?;
        let state_file = config.server.state_file.clone();
        let state = State::load(&state_file)?;

        // Bind first (a busy port fails fast), answer only after the first probe round.
        let mut udp_sockets = Vec::new();
        let mut tcp_listeners = Vec::new();
        let mut udp_addrs = Vec::new();
        let mut tcp_addrs = Vec::new();
        for &addr in &config.server.listen {
            let (sockets, listener) = bind_pair(addr, config.server.udp_workers)?;
            udp_addrs.push(sockets[0].local_addr().expect("bound"));
            tcp_addrs.push(listener.local_addr().expect("bound"));
            udp_sockets.extend(sockets);
            tcp_listeners.push(listener);
        }
        let status_listeners = config
            .status
            .listen
            .iter()
            .map(|&a| status::bind(a))
            .collect::<Result<Vec<_>, _>>()?;
        let status_addrs: Vec<SocketAddr> = status_listeners
            .iter()
            .map(|l| l.local_addr().expect("bound"))
            .collect();
        // Needs CAP_NET_ADMIN and CAP_BPF: before privileges go.
        let xdp = match &config.server.xdp {
            Some(iface) => Some(xdp::open(iface, &udp_addrs)?),
            None => None,
        };
        if cfg!(feature = "bench-floor") && xdp.is_some() {
            tracing::warn!(
                "built with the bench-floor feature: queries through AF_XDP are sent back \
                 unanswered (benches/dnsperf.sh --floor); do not serve with this binary"
            );
        }

        // Every socket is bound: nothing below needs root.
        match &identity {
            Some(target) => privdrop::drop_to(target)?,
            None if privdrop::is_root() => tracing::warn!(
                "running as root; set [server] user (and group) to drop privileges after binding"
            ),
            None => {}
        }

        let server_config = config.server.clone();
        let allow: Arc<[status::Cidr]> = config.status.allow.clone().into();
        let config_path = config.path.clone();
        let (zones_n, pools_n) = (config.zones.len(), config.pools.len());
        set_probe_socket_budget(&config);
        let monitor = Arc::new(Monitor::start(config, zones).await);
        // Before any listener runs, so no query ever sees a drained backend.
        let drained: HashSet<(String, String)> = state
            .drained_set()
            .into_iter()
            .map(|(p, b)| monitor.drain_key(&p, &b).unwrap_or((p, b)))
            .collect();
        if !drained.is_empty() {
            log_unknown_drained(&monitor, &drained);
            tracing::info!(
                count = drained.len(),
                state_file = %state_file.display(),
                "restored drained backends"
            );
            monitor.restore_drained(drained);
        }
        let cell = monitor.cell();

        let cancel = CancellationToken::new();
        let metrics = Arc::new(Metrics::default());
        let query_log = Arc::new(QueryLog::new(server_config.query_log_sample));
        let control = Arc::new(Control {
            monitor,
            metrics: metrics.clone(),
            query_log: query_log.clone(),
            config_path,
            state_file,
            reload_lock: Mutex::new(()),
            drain_lock: std::sync::Mutex::new(()),
            started: Instant::now(),
            started_at: SystemTime::now(),
        });
        let udp = udp::Workers::spawn(
            udp_sockets,
            cell.clone(),
            metrics.clone(),
            query_log.clone(),
        );
        let xdp = xdp.map(|x| x.spawn(cell.clone(), metrics.clone(), query_log.clone()));
        let limits = tcp::Limits {
            idle_timeout: server_config.tcp_idle_timeout,
            max_connections: server_config.tcp_max_connections,
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
        tasks.extend(status_listeners.into_iter().map(|l| {
            tokio::spawn(status::serve(
                l,
                control.clone(),
                allow.clone(),
                cancel.clone(),
            ))
        }));
        tracing::info!(
            udp = ?udp_addrs,
            tcp = ?tcp_addrs,
            status = ?status_addrs,
            zones = zones_n,
            pools = pools_n,
            "lbns answering"
        );
        Ok(Server {
            control,
            udp_addrs,
            tcp_addrs,
            status_addrs,
            cancel,
            udp,
            xdp,
            tasks,
        })
    }

    /// The UDP addresses actually bound (ports filled in when the config said 0).
    pub fn udp_addrs(&self) -> &[SocketAddr] {
        &self.udp_addrs
    }

    pub fn tcp_addrs(&self) -> &[SocketAddr] {
        &self.tcp_addrs
    }

    /// The status listener's addresses (empty when `[status]` turns it off).
    pub fn status_addrs(&self) -> &[SocketAddr] {
        &self.status_addrs
    }

    /// The published snapshot, for inspection.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.control.monitor.cell().load_full()
    }

    /// Query counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.control.metrics
    }

    /// The probe side: health, drain, status.
    pub fn monitor(&self) -> &Arc<Monitor> {
        &self.control.monitor
    }

    /// Reload, drain and status, as the status listener uses them.
    pub fn control(&self) -> &Arc<Control> {
        &self.control
    }

    /// See [`Control::reload`].
    pub async fn reload(&self, config: Config) -> Result<Vec<ZoneWarning>, AppError> {
        self.control.reload(config).await
    }

    /// Stops accepting, lets in-flight TCP answers and status requests finish, and joins the
    /// UDP workers.
    pub async fn shutdown(self) {
        self.control.monitor.stop();
        self.cancel.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        let (udp, xdp) = (self.udp, self.xdp);
        let _ = tokio::task::spawn_blocking(move || {
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
