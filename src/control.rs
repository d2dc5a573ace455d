//! Control: what changes a running server — reload from the config file, drain and undrain
//! with their state-file write — and `check`, which builds everything a reload would without
//! applying it. Signals and the status listener act through [`Control`].

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::config::{Config, ConfigError, ConfigErrors, ControlConfig, ServerConfig, StatusConfig};
use crate::domain::Model;
use crate::metrics::Metrics;
use crate::monitor::Monitor;
use crate::monitor::peers::PeerKey;
use crate::probe;
use crate::querylog::QueryLog;
use crate::state::{SavedState, StateError};
use crate::zones::{LoadStats, ZoneError, ZoneSet, ZoneWarning};

/// Why a config could not be loaded: `lbns check`, start and reload all say it alike.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The config file, or the probe settings it gives.
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// The zone files.
    #[error("{}", ZoneErrors(.0))]
    Zones(Vec<ZoneError>),
    /// The cluster's key file.
    #[error(transparent)]
    ClusterKey(#[from] crate::monitor::peers::KeyError),
}

struct ZoneErrors<'a>(&'a [ZoneError]);

impl fmt::Display for ZoneErrors<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::config::write_lines(f, self.0)
    }
}

/// Why a drain or undrain was refused or only half done.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DrainError {
    /// No pool of that name.
    #[error("no pool `{pool}`")]
    NoPool { pool: String },
    /// The pool has no backend of that name or address.
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

/// A config with everything built from it: the model, the zones, and what `check` warns about.
pub struct Loaded {
    /// The config that was checked, handed back for the caller to report on or serve.
    pub config: Config,
    pub(crate) model: Model,
    /// Every zone, loaded, with the pools placed in it.
    pub zones: ZoneSet,
    /// What the zone checks flag without refusing the config; `lbns check` prints them.
    pub warnings: Vec<ZoneWarning>,
    /// The cluster's shared secret, read from `[cluster] key_file`.
    pub(crate) peer_key: Option<PeerKey>,
}

/// Everything `lbns check` verifies: the model of the config (each probe's own keys included)
/// and every zone it names.
pub fn check(config: Config) -> Result<Loaded, LoadError> {
    load(config, None).map(|(loaded, _)| loaded)
}

/// [`check`], reusing the zones of `previous` whose files have not changed.
fn load(config: Config, previous: Option<&ZoneSet>) -> Result<(Loaded, LoadStats), LoadError> {
    let model = Model::new(&config);
    let shared = probe::Shared::new();
    let mut errors = Vec::new();
    for p in &model.pools {
        for b in &p.backends {
            let Some(spec) = &b.probe else { continue };
            if let Err(message) = probe::build(spec, b.address, &shared) {
                errors.push(ConfigError::Invalid {
                    place: p.place.clone(),
                    message: format!("pool {}: backend {}: {message}", p.name, b.name),
                });
            }
        }
    }
    if !errors.is_empty() {
        return Err(LoadError::Config(ConfigErrors(errors)));
    }
    let peer_key = match &config.cluster {
        Some(c) => Some(PeerKey::load(&c.key_file)?),
        None => None,
    };
    let (zones, warnings, stats) =
        ZoneSet::load(&config.zones, &model.pools, previous).map_err(LoadError::Zones)?;
    Ok((
        Loaded {
            config,
            model,
            zones,
            warnings,
            peer_key,
        },
        stats,
    ))
}

/// What a reload did.
#[derive(Debug)]
pub struct Reloaded {
    /// What the zone checks flag without refusing the config.
    pub warnings: Vec<ZoneWarning>,
    /// Zones read from their files, and zones kept because none of their files changed.
    pub stats: LoadStats,
}

/// What signals and the status listener act on: reload, drain, and what the status view reads.
pub struct Control {
    monitor: Arc<Monitor>,
    metrics: Arc<Metrics>,
    query_log: Arc<QueryLog>,
    /// The config in force (what reload compares the new one with).
    config: std::sync::Mutex<Arc<Config>>,
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
    /// Control over a started monitor. `config` is the one it was started with.
    pub(crate) fn new(
        monitor: Arc<Monitor>,
        metrics: Arc<Metrics>,
        query_log: Arc<QueryLog>,
        config: Config,
    ) -> Control {
        Control {
            monitor,
            metrics,
            query_log,
            config_path: config.path.clone(),
            state_file: config.server.state_file.clone(),
            config: std::sync::Mutex::new(Arc::new(config)),
            reload_lock: Mutex::new(()),
            drain_lock: std::sync::Mutex::new(()),
            started: Instant::now(),
            started_at: SystemTime::now(),
        }
    }

    /// The probe side: health, drains, the published snapshot.
    pub(crate) fn monitor(&self) -> &Arc<Monitor> {
        &self.monitor
    }

    /// Query counters.
    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The config file reload reads.
    pub(crate) fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Time since start.
    pub(crate) fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Whether `/metrics` has per-backend series (`[status] metrics_per_backend`), as the
    /// config in force says.
    pub(crate) fn metrics_per_backend(&self) -> bool {
        self.config
            .lock()
            .expect("config lock")
            .status
            .metrics_per_backend
    }

    /// Wall-clock time of start, for `/metrics`.
    pub(crate) fn started_at(&self) -> SystemTime {
        self.started_at
    }

    /// Replaces config and zones. Everything is built beside the running snapshot; on any error
    /// the old one keeps serving and the error is returned. What needs a restart (listeners,
    /// privileges, the state file, the status listener) is named in a warning.
    pub(crate) async fn reload(&self, config: Config) -> Result<Reloaded, LoadError> {
        let _guard = self.reload_lock.lock().await;
        // Reading a large zone takes seconds: off the runtime threads, which also answer DNS
        // over TCP. What a rejected load built is freed there too.
        // Zones whose files did not change are taken from the snapshot in force, not read.
        let previous = self.monitor.cell().load().zones.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let loaded = load(config, Some(&previous));
            // What reading built and dropped (the parser's buffers, a rejected zone) goes
            // back to the system, not only to the allocator.
            crate::limits::release_memory();
            loaded
        })
        .await;
        let loaded = match loaded {
            Ok(loaded) => loaded,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        let (
            Loaded {
                config,
                model,
                zones,
                warnings,
                // Peers are set up at start only (see `restart_only_changes`).
                peer_key: _,
            },
            stats,
        ) = loaded?;
        let old = self.config.lock().expect("config lock").clone();
        let pending = restart_only_changes(&old, &config);
        if !pending.is_empty() {
            tracing::warn!(
                keys = pending.join(", "),
                "these settings apply at the next restart; the rest of the configuration applies now"
            );
        }
        self.query_log.set_every(config.server.query_log_sample);
        let (zones_n, pools_n) = (config.zones.len(), config.pools.len());
        self.monitor.reload(model, zones).await;
        *self.config.lock().expect("config lock") = Arc::new(config);
        self.log_unknown_drained(&self.monitor.drained());
        // The old model and config are gone by now: their memory goes back to the system too.
        tokio::task::spawn_blocking(crate::limits::release_memory);
        tracing::info!(
            generation = self.monitor.cell().load().generation,
            zones = zones_n,
            zones_read = stats.read,
            zones_reused = stats.reused,
            pools = pools_n,
            "reloaded"
        );
        Ok(Reloaded { warnings, stats })
    }

    /// Reloads from the config file the server started with (SIGHUP and `lbns reload`).
    pub async fn reload_from_file(&self) -> Result<Reloaded, LoadError> {
        // Parsing the config of ten thousand pools takes a while too: off the runtime threads.
        let path = self.config_path.clone();
        let config = match tokio::task::spawn_blocking(move || Config::load(&path)).await {
            Ok(config) => config?,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        self.reload(config).await
    }

    /// Restores the drained set saved in the state file, before any listener answers.
    pub(crate) fn restore_drained(&self, saved: &SavedState) {
        let drained: HashSet<(String, String)> = saved
            .drained_set()
            .into_iter()
            .map(|(p, b)| self.monitor.drain_key(&p, &b).unwrap_or((p, b)))
            .collect();
        if drained.is_empty() {
            return;
        }
        self.log_unknown_drained(&drained);
        tracing::info!(
            count = drained.len(),
            state_file = %self.state_file.display(),
            "restored drained backends"
        );
        self.monitor.restore_drained(drained, saved.drain_version);
    }

    /// Saves the drained set whenever a peer's newer one is taken, so it survives a restart of
    /// this instance too. Runs until the monitor stops.
    pub(crate) fn save_peer_drains(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let control = self.clone();
        let mut changes = self.monitor.drains_changed();
        tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                let c = control.clone();
                // The state file is fsynced: off the runtime threads.
                let _ = tokio::task::spawn_blocking(move || {
                    let _guard = c.drain_lock.lock().expect("drain lock");
                    let saved = SavedState::from_drained(
                        &c.monitor.drained(),
                        c.monitor.drain_version(),
                    );
                    match saved.save(&c.state_file) {
                        Ok(()) => tracing::info!(
                            count = saved.drained.len(),
                            "took the drained set of a peer"
                        ),
                        Err(e) => tracing::error!(error = %e, "took the drained set of a peer, but could not save it"),
                    }
                })
                .await;
            }
        })
    }

    /// Drains (or undrains) a backend: out of (back into) answers at once, and saved to the
    /// state file. `pool` may omit the final dot; `backend` is a name or an address. Returns
    /// the pool and backend as the config names them.
    pub(crate) fn set_drained(
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
        SavedState::from_drained(&self.monitor.drained(), self.monitor.drain_version())
            .save(&self.state_file)
            .map_err(|source| DrainError::Persist {
                pool: pool.clone(),
                backend: backend.clone(),
                verb,
                source,
            })?;
        Ok((pool, backend))
    }

    /// Warns about drained entries that name no backend of the model in force. They are kept: a
    /// backend removed by one reload and added back by the next should still be drained.
    fn log_unknown_drained(&self, drained: &HashSet<(String, String)>) {
        for (pool, backend) in drained {
            if self.monitor.drain_key(pool, backend).as_ref()
                != Some(&(pool.clone(), backend.clone()))
            {
                tracing::warn!(
                    pool = %pool,
                    backend = %backend,
                    "drained backend is not in the configuration; kept in the state file"
                );
            }
        }
    }
}

/// The keys of `[server]`, `[status]` and `[control]` that differ between `old` and `new` and
/// apply only at a restart. Every key is named here, so a new one must be sorted into "now" or "restart".
fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let ServerConfig {
        listen,
        udp_workers,
        tcp_idle_timeout,
        tcp_max_connections,
        tcp_max_connections_per_client,
        tcp_write_timeout,
        // Applied at reload: the snapshot and the query log read them.
        edns_udp_size: _,
        identity: _,
        version: _,
        nsid: _,
        query_log_sample: _,
        // Read with the zones at each reload.
        include_dirs: _,
        state_file,
        user,
        group,
        xdp,
    } = &old.server;
    let StatusConfig {
        listen: status_listen,
        allow,
        header_timeout,
        idle_timeout,
        max_connections,
        // Applied at reload: each scrape reads it.
        metrics_per_backend: _,
    } = &old.status;
    let ControlConfig {
        socket,
        group: control_group,
    } = &old.control;
    let n = &new.server;
    let mut changed = Vec::new();
    let mut note = |key: &'static str, differs: bool| {
        if differs {
            changed.push(key);
        }
    };
    note("server.listen", *listen != n.listen);
    note("server.udp_workers", *udp_workers != n.udp_workers);
    note(
        "server.tcp_idle_timeout",
        *tcp_idle_timeout != n.tcp_idle_timeout,
    );
    note(
        "server.tcp_max_connections",
        *tcp_max_connections != n.tcp_max_connections,
    );
    note(
        "server.tcp_max_connections_per_client",
        *tcp_max_connections_per_client != n.tcp_max_connections_per_client,
    );
    note(
        "server.tcp_write_timeout",
        *tcp_write_timeout != n.tcp_write_timeout,
    );
    note("server.state_file", *state_file != n.state_file);
    note("server.user", *user != n.user);
    note("server.group", *group != n.group);
    note("server.xdp", *xdp != n.xdp);
    note("status.listen", *status_listen != new.status.listen);
    note("status.allow", *allow != new.status.allow);
    note(
        "status.header_timeout",
        *header_timeout != new.status.header_timeout,
    );
    note(
        "status.idle_timeout",
        *idle_timeout != new.status.idle_timeout,
    );
    note(
        "status.max_connections",
        *max_connections != new.status.max_connections,
    );
    // The rate table is allocated once; the rest of [rrl] and [cookies] applies at reload.
    note("rrl.table_size", old.rrl.table_size != new.rrl.table_size);
    note("control.socket", *socket != new.control.socket);
    note("control.group", *control_group != new.control.group);
    // The peers' socket, key and quorum are set up once.
    note("cluster", old.cluster != new.cluster);
    changed
}
