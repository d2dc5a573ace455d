//! The running server: loads a [`Config`], publishes snapshots, owns the listeners, and reloads
//! or stops on request. `main` drives it from signals; tests drive it in-process.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigErrors};
use crate::metrics::Metrics;
use crate::monitor::Monitor;
use crate::net::{NetError, tcp, udp};
use crate::pool::Snapshot;
use crate::zones::{ZoneError, ZoneSet, ZoneWarning};

/// Why the server could not start or a reload was rejected.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    #[error("{}", ZoneErrors(.0))]
    Zones(Vec<ZoneError>),
    #[error(transparent)]
    Net(#[from] NetError),
}

struct ZoneErrors<'a>(&'a [ZoneError]);

impl fmt::Display for ZoneErrors<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Everything `lbns check` verifies: the config and every zone it names.
pub fn check(config: &Config) -> Result<(ZoneSet, Vec<ZoneWarning>), AppError> {
    ZoneSet::load(&config.zones, &config.pools).map_err(AppError::Zones)
}

/// A running lbns: listeners bound and answering.
pub struct Server {
    monitor: Arc<Monitor>,
    metrics: Arc<Metrics>,
    /// Serializes reloads.
    reload_lock: Mutex<()>,
    udp_addrs: Vec<SocketAddr>,
    tcp_addrs: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
    cancel: CancellationToken,
    threads: Vec<JoinHandle<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Loads the zones, binds every listener and starts answering. Must run inside a tokio
    /// runtime (TCP runs on it).
    pub async fn start(config: Config) -> Result<Server, AppError> {
        let (zones, warnings) = check(&config)?;
        for w in &warnings {
            tracing::warn!("{w}");
        }

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

        let server_config = config.server.clone();
        let (zones_n, pools_n) = (config.zones.len(), config.pools.len());
        let monitor = Arc::new(Monitor::start(config, zones).await);
        let cell = monitor.cell();

        let stop = Arc::new(AtomicBool::new(false));
        let cancel = CancellationToken::new();
        let metrics = Arc::new(Metrics::default());
        let threads = udp::spawn(udp_sockets, cell.clone(), metrics.clone(), stop.clone());
        let limits = tcp::Limits {
            idle_timeout: server_config.tcp_idle_timeout,
            max_connections: server_config.tcp_max_connections,
        };
        let tasks = tcp_listeners
            .into_iter()
            .map(|l| {
                tokio::spawn(tcp::serve(
                    l,
                    cell.clone(),
                    metrics.clone(),
                    limits,
                    cancel.clone(),
                ))
            })
            .collect();
        tracing::info!(
            udp = ?udp_addrs,
            tcp = ?tcp_addrs,
            zones = zones_n,
            pools = pools_n,
            "lbns answering"
        );
        Ok(Server {
            monitor,
            metrics,
            reload_lock: Mutex::new(()),
            udp_addrs,
            tcp_addrs,
            stop,
            cancel,
            threads,
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

    /// The published snapshot, for inspection.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.monitor.cell().load_full()
    }

    /// Query counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The probe side: health, drain, status.
    pub fn monitor(&self) -> &Arc<Monitor> {
        &self.monitor
    }

    /// Replaces config and zones. Everything is built beside the running snapshot; on any error
    /// the old one keeps serving and the error is returned. Listener changes need a restart.
    pub async fn reload(&self, config: Config) -> Result<Vec<ZoneWarning>, AppError> {
        let _guard = self.reload_lock.lock().await;
        let (zones, warnings) = check(&config)?;
        if self.monitor.config().server != config.server {
            tracing::warn!("[server] changed; listener settings take effect at the next restart");
        }
        let (zones_n, pools_n) = (config.zones.len(), config.pools.len());
        self.monitor.reload(config, zones).await;
        tracing::info!(
            generation = self.snapshot().generation,
            zones = zones_n,
            pools = pools_n,
            "reloaded"
        );
        Ok(warnings)
    }

    /// Stops accepting, lets in-flight TCP answers finish, and joins the UDP workers.
    pub async fn shutdown(self) {
        self.monitor.stop();
        self.stop.store(true, Ordering::Relaxed);
        self.cancel.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
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
