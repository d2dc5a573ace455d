//! Configuration: the TOML file (`RawConfig`) turned into a validated [`Config`].
//!
//! Loading never stops at the first problem. The document is parsed once with spans; each
//! section is deserialized on its own, then `from_raw` checks values and cross-field rules. Every
//! problem found is returned together, each with `file:line:col`, so `lbns check` can list them
//! all the way `named-checkconf` does.

mod cidr;
mod cluster;
mod cookies;
mod pool;
mod raw;
mod rrl;

use std::cell::OnceCell;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hickory_proto::rr::{LowerName, Name};
use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

pub(crate) use cidr::parse_cidr;
pub use cluster::{ClusterConfig, DEFAULT_EXCHANGE_INTERVAL, Quorum};
pub(crate) use cookies::{CookieSecret, CookieSecrets, CookiesConfig};
pub use pool::*;
pub(crate) use raw::{RawControl, RawPool, RawProbe, RawServer, RawStatus, RawZone};
pub(crate) use rrl::RrlConfig;

/// Default listen address: loopback on an unprivileged port, so a first run needs no root.
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:5353";
/// Default pool TTL in seconds: short, so a dead backend leaves caches quickly.
pub(crate) const DEFAULT_POOL_TTL: u32 = 5;
/// Default idle timeout for TCP connections (RFC 7766 §6.2.3 suggests seconds, not minutes).
pub(crate) const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default cap on concurrent TCP connections.
pub(crate) const DEFAULT_TCP_MAX_CONNECTIONS: usize = 256;
/// Default cap on concurrent TCP connections from one client (RFC 7766 §6.2.2 asks clients to
/// keep few; a server may enforce it).
pub(crate) const DEFAULT_TCP_MAX_CONNECTIONS_PER_CLIENT: usize = 16;
/// Default time one TCP response may take to be written: a 64 KiB answer needs a few round
/// trips, a client that does not read never finishes.
pub(crate) const DEFAULT_TCP_WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Default EDNS UDP payload (DNS Flag Day 2020): fits a 1280-octet IPv6 MTU without fragments.
pub(crate) const DEFAULT_EDNS_UDP_SIZE: u16 = 1232;
/// Default state file, beside the config file.
pub(crate) const DEFAULT_STATE_FILE: &str = "lbns.state";
/// Default status listener: loopback only, and a port that needs no privileges.
pub const DEFAULT_STATUS_LISTEN: &str = "127.0.0.1:8053";
/// Default status allowlist: loopback only. The listener changes nothing (control is on the
/// Unix socket), but the page names backends and addresses: wider is the operator's choice.
pub(crate) const DEFAULT_STATUS_ALLOW: [&str; 2] = ["127.0.0.0/8", "::1/128"];
/// Default time a status client has to send a whole request head: a slow sender is closed.
pub(crate) const DEFAULT_STATUS_HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time a status connection may sit with no request and no byte moving.
pub(crate) const DEFAULT_STATUS_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default cap on concurrent status connections (each listener, and the control socket).
pub(crate) const DEFAULT_STATUS_MAX_CONNECTIONS: usize = 64;
/// Default control socket, beside the state file.
pub(crate) const DEFAULT_CONTROL_SOCKET: &str = "lbns.sock";
/// Longest path a Unix socket address holds (`sun_path` is 108 bytes with the final NUL).
const MAX_SOCKET_PATH: usize = 107;

/// The validated configuration. Built only by [`Config::load`] / [`Config::parse`].
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from; zone files are resolved against its directory.
    pub(crate) path: PathBuf,
    pub(crate) server: ServerConfig,
    /// The HTTP status listener (read only).
    pub status: StatusConfig,
    /// The control socket; `lbns reload --config` finds it here.
    pub control: ControlConfig,
    /// Response rate limiting on UDP.
    pub(crate) rrl: RrlConfig,
    /// DNS cookies and their secret.
    pub(crate) cookies: CookiesConfig,
    /// The peers this instance shares observations and drains with (`[cluster]`), if any.
    pub cluster: Option<ClusterConfig>,
    /// The zones to serve, in file order.
    pub zones: Vec<ZoneConfig>,
    /// The pools, in file order: the model, snapshots and status page keep this order.
    pub pools: Vec<PoolConfig>,
}

/// Listener and protocol settings from `[server]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ServerConfig {
    /// Each address gets UDP workers and a TCP listener on the same port.
    pub(crate) listen: Vec<SocketAddr>,
    /// UDP worker threads per listen address (resolved: never 0 here).
    pub(crate) udp_workers: usize,
    pub(crate) tcp_idle_timeout: Duration,
    pub(crate) tcp_max_connections: usize,
    pub(crate) tcp_max_connections_per_client: usize,
    pub(crate) tcp_write_timeout: Duration,
    /// Largest UDP response we send and the payload size we advertise (512..=4096).
    pub(crate) edns_udp_size: u16,
    /// CHAOS id.server / hostname.bind answer and NSID payload.
    pub(crate) identity: String,
    /// CHAOS version.bind answer; `None` keeps the version private.
    pub(crate) version: Option<String>,
    /// Whether NSID is answered.
    pub(crate) nsid: bool,
    /// Where the drained set is persisted (already joined with the config's dir).
    pub(crate) state_file: PathBuf,
    /// Log one query in this many; 0 = off. The only `[server]` key a reload applies.
    pub(crate) query_log_sample: u64,
    /// Switch to this user after binding.
    pub(crate) user: Option<String>,
    /// Switch to this group after binding (default: the user's primary group).
    pub(crate) group: Option<String>,
    /// Network interface whose UDP queries are taken through AF_XDP.
    pub(crate) xdp: Option<String>,
    /// Where a zone may `$INCLUDE` from: the config file's directory, then `include_dirs`
    /// (joined with the config's dir).
    pub(crate) include_dirs: Vec<PathBuf>,
}

/// The HTTP status listener, from `[status]`.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusConfig {
    /// Addresses to listen on; empty when the listener is off.
    pub listen: Vec<SocketAddr>,
    /// Connections from outside every one of these are closed as soon as they are accepted.
    pub(crate) allow: Vec<IpNet>,
    /// A request head must be complete this long after its first byte.
    pub(crate) header_timeout: Duration,
    /// A connection with no request in progress and no byte moving this long is closed.
    pub(crate) idle_timeout: Duration,
    /// Concurrent connections per listener; more are closed at once.
    pub(crate) max_connections: usize,
    /// `/metrics` has series per backend (health, drain, load, probes); per pool and global
    /// ones always. Off, a fleet of 10,000 backends scrapes in kilobytes, not megabytes.
    pub(crate) metrics_per_backend: bool,
}

/// The control socket, from `[control]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlConfig {
    /// The Unix socket reload, drain and undrain go through (joined with the config's dir).
    pub socket: PathBuf,
    /// A group allowed to use the socket too (mode 0660); `None`: its owner only (0600).
    pub(crate) group: Option<String>,
}

/// A zone to serve, from `[[zone]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneConfig {
    pub(crate) origin: Name,
    /// Absolute or relative to the working directory (already joined with the config's dir).
    pub(crate) file: PathBuf,
    /// Directories whose files `$INCLUDE` may read: `[server] include_dirs` and the config
    /// file's own directory.
    pub(crate) include_dirs: Vec<PathBuf>,
    /// Where the `[[zone]]` table sits in the config, for messages about it.
    pub(crate) place: Place,
}

/// A load-balanced name, from `[[pool]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    /// The name answered with the pool's addresses, absolute; it must lie inside a zone.
    pub name: Name,
    pub(crate) ttl: u32,
    /// Most addresses per answer, per address family (`usize::MAX` when unlimited).
    pub(crate) answers: usize,
    pub(crate) backends: Vec<BackendConfig>,
    pub(crate) policy: Policy,
    pub(crate) all_down: AllDown,
    /// TTL of answers while no backend of the family is up.
    pub(crate) all_down_ttl: u32,
    /// byAge: a backend whose last good probe is older than this counts as down. Defaults to
    /// the largest detection bound of its backends, so a stalled prober also obeys the TTL.
    pub(crate) max_age: Duration,
    /// The failover promise, proven (`failover = "..."`); `None`: TTLs are fixed, as `ttl`.
    pub failover: Option<Failover>,
    pub(crate) place: Place,
}

/// One member of a pool.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BackendConfig {
    /// Label used in logs and the status page; defaults to the address.
    pub(crate) name: String,
    pub(crate) address: IpAddr,
    /// Relative share for weighted policies (default 1).
    pub(crate) weight: u32,
    /// Tier for the priority policy, 1 first.
    pub(crate) tier: u32,
    pub(crate) probe: ProbeConfig,
}

/// A position in a config or zone file, printed as `file:line:col`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The file, as its path was given (for the config, the path passed to [`Config::load`]).
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in bytes.
    pub col: usize,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.col)
    }
}

/// One problem in the configuration file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key, or a value of the wrong type.
    #[error("{place}: {message}")]
    Toml { place: Place, message: String },
    /// A value that parsed but is not acceptable, or a rule across values.
    #[error("{place}: {message}")]
    Invalid { place: Place, message: String },
}

/// Every problem found in one configuration file.
#[derive(Debug)]
pub struct ConfigErrors(pub(crate) Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_lines(f, &self.0)
    }
}

/// Writes one item per line, as `lbns check` lists problems.
pub(crate) fn write_lines<T: fmt::Display>(f: &mut fmt::Formatter<'_>, items: &[T]) -> fmt::Result {
    for (i, e) in items.iter().enumerate() {
        if i > 0 {
            writeln!(f)?;
        }
        write!(f, "{e}")?;
    }
    Ok(())
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|source| {
            ConfigErrors(vec![ConfigError::Read {
                path: path.to_owned(),
                source,
            }])
        })?;
        Config::parse(&text, path)
    }

    /// Validates `text` as if it were the contents of `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
        let mut cx = Cx {
            text,
            path,
            line_starts: OnceCell::new(),
            errors: Vec::new(),
        };
        let config = cx.document();
        if cx.errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(cx.errors))
        }
    }
}

/// Whether `name` is at or below one of `origins`: its ancestors are looked up, so the cost
/// is its label count, not the number of zones.
fn inside_any(origins: &HashSet<LowerName>, name: &LowerName) -> bool {
    let mut n = name.clone();
    loop {
        if origins.contains(&n) {
            return true;
        }
        if n.is_root() {
            return false;
        }
        n = n.base_name();
    }
}

/// The system host name, the default identity (as BIND and Knot use it).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "lbns".to_owned())
}

/// A key as written: its value, if given, and where a problem with it points: the value, or
/// `table` (its table's header) when the key is absent.
fn key<T>(value: Option<Spanned<T>>, table: &Range<usize>) -> (Option<T>, Range<usize>) {
    match value {
        Some(v) => {
            let span = v.span();
            (Some(v.into_inner()), span)
        }
        None => (None, table.clone()),
    }
}

/// Parse context: the source (for turning spans into places) and the problems found so far.
struct Cx<'a> {
    text: &'a str,
    path: &'a Path,
    /// The offset of each line's first byte, made at the first `place`: every pool has a
    /// place, and counting newlines from the top for each would be quadratic in pools.
    line_starts: OnceCell<Vec<usize>>,
    errors: Vec<ConfigError>,
}

impl Cx<'_> {
    fn place(&self, span: Range<usize>) -> Place {
        let starts = self.line_starts.get_or_init(|| {
            std::iter::once(0)
                .chain(self.text.match_indices('\n').map(|(i, _)| i + 1))
                .collect()
        });
        let at = span.start.min(self.text.len());
        // The first line starts at 0, so at least one start is <= `at`.
        let line = starts.partition_point(|&s| s <= at);
        let col = at - starts[line - 1] + 1;
        Place {
            file: self.path.to_owned(),
            line,
            col,
        }
    }

    fn invalid(&mut self, span: Range<usize>, message: impl Into<String>) {
        let place = self.place(span);
        self.errors.push(ConfigError::Invalid {
            place,
            message: message.into(),
        });
    }

    fn toml_error(&mut self, fallback: Range<usize>, context: &str, e: toml::de::Error) {
        let place = self.place(e.span().unwrap_or(fallback));
        let message = if context.is_empty() {
            e.message().to_owned()
        } else {
            format!("{context}: {}", e.message())
        };
        self.errors.push(ConfigError::Toml { place, message });
    }

    /// Deserializes one section on its own, so one bad table does not hide the others.
    fn section<'de, T: Deserialize<'de>>(
        &mut self,
        value: Spanned<DeValue<'de>>,
        context: &str,
    ) -> Option<T> {
        let span = value.span();
        match T::deserialize(ValueDeserializer::from(value)) {
            Ok(v) => Some(v),
            Err(e) => {
                self.toml_error(span, context, e);
                None
            }
        }
    }

    fn document(&mut self) -> Config {
        let (doc, syntax) = DeTable::parse_recoverable(self.text);
        let had_syntax_errors = !syntax.is_empty();
        for e in syntax {
            self.toml_error(0..0, "", e);
        }

        let mut server = None;
        let mut status = None;
        let mut control = None;
        let mut rrl = None;
        let mut cookies = None;
        let mut cluster = None;
        let mut zones = Vec::new();
        let mut pools = Vec::new();
        if !had_syntax_errors {
            for (key, value) in doc.into_inner() {
                let key_span = key.span();
                // A table's span is its header: where problems about the table as a whole point.
                let table = value.span();
                match key.get_ref().as_ref() {
                    "server" => {
                        server = self.section::<RawServer>(value, "[server]").map(|s| (s, table));
                    }
                    "status" => {
                        status = self.section::<RawStatus>(value, "[status]").map(|s| (s, table));
                    }
                    "control" => {
                        control = self
                            .section::<RawControl>(value, "[control]")
                            .map(|c| (c, table));
                    }
                    "rrl" => rrl = self.section::<rrl::RawRrl>(value, "[rrl]").map(|r| (r, table)),
                    "cookies" => {
                        cookies = self
                            .section::<cookies::RawCookies>(value, "[cookies]")
                            .map(|c| (c, table));
                    }
                    "cluster" => {
                        cluster = self
                            .section::<cluster::RawCluster>(value, "[cluster]")
                            .map(|c| (c, table));
                    }
                    "zone" => zones = self.array(value, "[[zone]]"),
                    "pool" => pools = self.array(value, "[[pool]]"),
                    other => self.errors.push(ConfigError::Toml {
                        place: self.place(key_span),
                        message: format!(
                            "unknown section `{other}`, expected `server`, `status`, `control`, `rrl`, `cookies`, `cluster`, `zone` or `pool`"
                        ),
                    }),
                }
            }
        }

        let (server, table) = server.unwrap_or_default();
        let server = self.server(server, table);
        let (status, table) = status.unwrap_or_default();
        let status = self.status(status, table, &server);
        let (control, table) = control.unwrap_or_default();
        let control = self.control(control, table, &server);
        let (rrl, table) = rrl.unwrap_or_default();
        let rrl = self.rrl(rrl, table);
        let (cookies, table) = cookies.unwrap_or_default();
        let cookies = self.cookies(cookies, table);
        let cluster = cluster.and_then(|(c, table)| self.cluster(c, table));
        let zones = self.zones(zones, &server.include_dirs);
        let pools = self.pools(pools, &zones, cluster.as_ref());
        Config {
            path: self.path.to_owned(),
            server,
            status,
            control,
            rrl,
            cookies,
            cluster,
            zones,
            pools,
        }
    }

    /// An array of tables, each element deserialized separately and kept with its span.
    fn array<'de, T: Deserialize<'de>>(
        &mut self,
        value: Spanned<DeValue<'de>>,
        what: &str,
    ) -> Vec<(T, Range<usize>)> {
        let span = value.span();
        let DeValue::Array(items) = value.into_inner() else {
            self.invalid(span, format!("{what} must be an array of tables"));
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let span = item.span();
            let context = format!("{what} #{}", i + 1);
            if let Some(v) = self.section::<T>(item, &context) {
                out.push((v, span));
            }
        }
        out
    }

    fn server(&mut self, raw: RawServer, table: Range<usize>) -> ServerConfig {
        let RawServer {
            listen,
            udp_workers,
            tcp_idle_timeout,
            tcp_max_connections,
            tcp_max_connections_per_client,
            tcp_write_timeout,
            edns_udp_size,
            identity,
            version,
            nsid,
            state_file,
            query_log_sample,
            user,
            group,
            xdp,
            include_dirs,
        } = raw;

        let (listen, at) = key(listen, &table);
        let mut addrs = Vec::new();
        for text in listen.unwrap_or_else(|| vec![DEFAULT_LISTEN.to_owned()]) {
            match text.parse::<SocketAddr>() {
                Ok(a) if !addrs.contains(&a) => addrs.push(a),
                Ok(a) => self.invalid(at.clone(), format!("listen address {a} given twice")),
                Err(_) => self.invalid(
                    at.clone(),
                    format!("listen: `{text}` is not an address:port such as 127.0.0.1:5353"),
                ),
            }
        }
        if addrs.is_empty()
            && !self
                .errors
                .iter()
                .any(|e| matches!(e, ConfigError::Invalid { .. }))
        {
            self.invalid(at, "listen: at least one address is needed");
        }

        let udp_workers = match udp_workers.unwrap_or(0) {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };

        let (tcp_idle_timeout, at) = key(tcp_idle_timeout, &table);
        let tcp_idle_timeout = self.timeout(
            tcp_idle_timeout,
            at,
            "tcp_idle_timeout",
            DEFAULT_TCP_IDLE_TIMEOUT,
        );

        let (tcp_max_connections, at) = key(tcp_max_connections, &table);
        let tcp_max_connections = tcp_max_connections.unwrap_or(DEFAULT_TCP_MAX_CONNECTIONS);
        if tcp_max_connections == 0 {
            self.invalid(at, "tcp_max_connections must be at least 1");
        }
        let (per_client, at) = key(tcp_max_connections_per_client, &table);
        let tcp_max_connections_per_client =
            per_client.unwrap_or(DEFAULT_TCP_MAX_CONNECTIONS_PER_CLIENT);
        if tcp_max_connections_per_client == 0 {
            self.invalid(at, "tcp_max_connections_per_client must be at least 1");
        }
        let (tcp_write_timeout, at) = key(tcp_write_timeout, &table);
        let tcp_write_timeout = self.timeout(
            tcp_write_timeout,
            at,
            "tcp_write_timeout",
            DEFAULT_TCP_WRITE_TIMEOUT,
        );

        let (edns_udp_size, at) = key(edns_udp_size, &table);
        let edns_udp_size = edns_udp_size.unwrap_or(DEFAULT_EDNS_UDP_SIZE);
        if !(512..=4096).contains(&edns_udp_size) {
            self.invalid(
                at,
                format!("edns_udp_size {edns_udp_size} is outside 512..=4096"),
            );
        }

        let (state_file, at) = key(state_file, &table);
        let state_file = state_file.unwrap_or_else(|| DEFAULT_STATE_FILE.to_owned());
        if state_file.is_empty() {
            self.invalid(at, "state_file must not be empty");
        }
        let state_file = self.relative_to_config(&state_file);

        let (user, user_at) = key(user, &table);
        let (group, group_at) = key(group, &table);
        let (xdp, xdp_at) = key(xdp, &table);
        for (name, value, at) in [
            ("user", &user, &user_at),
            ("group", &group, &group_at),
            ("xdp", &xdp, &xdp_at),
        ] {
            if value.as_deref().is_some_and(str::is_empty) {
                self.invalid(at.clone(), format!("{name} must not be empty"));
            }
        }
        if xdp.is_some() && !cfg!(feature = "xdp") {
            self.invalid(
                xdp_at,
                "xdp: this lbns was built without AF_XDP support (cargo build --features xdp)",
            );
        }
        let (include_dirs, at) = key(include_dirs, &table);
        let mut dirs = vec![self.config_dir()];
        for dir in include_dirs.unwrap_or_default() {
            if dir.is_empty() {
                self.invalid(at.clone(), "include_dirs: an entry is empty");
                continue;
            }
            dirs.push(self.relative_to_config(&dir));
        }

        ServerConfig {
            listen: addrs,
            udp_workers,
            tcp_idle_timeout,
            tcp_max_connections,
            tcp_max_connections_per_client,
            tcp_write_timeout,
            edns_udp_size,
            identity: identity.unwrap_or_else(host_name),
            version,
            nsid: nsid.unwrap_or(false),
            state_file,
            query_log_sample: query_log_sample.unwrap_or(0),
            user,
            group,
            xdp,
            include_dirs: dirs,
        }
    }

    /// A timeout key: a duration such as `"10s"`, more than zero.
    fn timeout(
        &mut self,
        text: Option<String>,
        at: Range<usize>,
        name: &str,
        default: Duration,
    ) -> Duration {
        let Some(t) = text else { return default };
        match humantime::parse_duration(&t) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                self.invalid(at, format!("{name} must be more than 0"));
                default
            }
            Err(e) => {
                self.invalid(
                    at,
                    format!("{name}: `{t}` is not a duration such as \"10s\": {e}"),
                );
                default
            }
        }
    }

    fn control(
        &mut self,
        raw: RawControl,
        table: Range<usize>,
        server: &ServerConfig,
    ) -> ControlConfig {
        let RawControl { socket, group } = raw;
        let (socket, at) = key(socket, &table);
        let socket = match socket {
            Some(s) if s.is_empty() => {
                self.invalid(at.clone(), "control socket must not be empty");
                PathBuf::from(DEFAULT_CONTROL_SOCKET)
            }
            Some(s) => self.relative_to_config(&s),
            // Beside the state file: a directory lbns may already write to.
            None => server
                .state_file
                .parent()
                .unwrap_or(Path::new("."))
                .join(DEFAULT_CONTROL_SOCKET),
        };
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            self.invalid(
                at,
                format!(
                    "control socket {} is longer than the {MAX_SOCKET_PATH} bytes a Unix socket \
                     path may have",
                    socket.display()
                ),
            );
        }
        let (group, at) = key(group, &table);
        if group.as_deref().is_some_and(str::is_empty) {
            self.invalid(at, "control group must not be empty");
        }
        ControlConfig { socket, group }
    }

    fn status(
        &mut self,
        raw: RawStatus,
        table: Range<usize>,
        server: &ServerConfig,
    ) -> StatusConfig {
        let RawStatus {
            enabled,
            listen,
            allow,
            header_timeout,
            idle_timeout,
            max_connections,
            metrics_per_backend,
        } = raw;
        let (listen, at) = key(listen, &table);
        let listen = listen.map_or_else(|| vec![DEFAULT_STATUS_LISTEN.to_owned()], |l| l.0);
        let mut addrs = Vec::new();
        for text in listen {
            match text.parse::<SocketAddr>() {
                Ok(a) if addrs.contains(&a) => {
                    self.invalid(at.clone(), format!("status listen {a} given twice"))
                }
                // Same port and address as a DNS listener: the DNS side binds TCP there first.
                Ok(a) if a.port() != 0 && server.listen.contains(&a) => self.invalid(
                    at.clone(),
                    format!("status listen {a} is also a [server] listen address"),
                ),
                Ok(a) => addrs.push(a),
                Err(_) => self.invalid(
                    at.clone(),
                    format!(
                        "status listen: `{text}` is not an address:port such as {DEFAULT_STATUS_LISTEN}"
                    ),
                ),
            }
        }
        if enabled == Some(false) {
            addrs.clear();
        }
        let (allow_text, at) = key(allow, &table);
        let allow_text = allow_text.unwrap_or_else(|| {
            DEFAULT_STATUS_ALLOW
                .iter()
                .map(|s| (*s).to_owned())
                .collect()
        });
        let mut allow = Vec::new();
        for text in allow_text {
            match parse_cidr(&text) {
                Ok(net) => allow.push(net),
                Err(e) => self.invalid(at.clone(), format!("status allow: `{text}`: {e}")),
            }
        }
        let (header_timeout, at) = key(header_timeout, &table);
        let header_timeout = self.timeout(
            header_timeout,
            at,
            "status header_timeout",
            DEFAULT_STATUS_HEADER_TIMEOUT,
        );
        let (idle_timeout, at) = key(idle_timeout, &table);
        let idle_timeout = self.timeout(
            idle_timeout,
            at,
            "status idle_timeout",
            DEFAULT_STATUS_IDLE_TIMEOUT,
        );
        let (max_connections, at) = key(max_connections, &table);
        let max_connections = max_connections.unwrap_or(DEFAULT_STATUS_MAX_CONNECTIONS);
        if max_connections == 0 {
            self.invalid(at, "status max_connections must be at least 1");
        }
        StatusConfig {
            listen: addrs,
            allow,
            header_timeout,
            idle_timeout,
            max_connections,
            metrics_per_backend: metrics_per_backend.unwrap_or(true),
        }
    }

    /// A path from the config, relative to the config file's directory unless absolute.
    fn relative_to_config(&self, file: &str) -> PathBuf {
        self.path.parent().unwrap_or(Path::new(".")).join(file)
    }

    /// The config file's directory (`.` for a bare file name).
    fn config_dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        }
    }

    fn zones(
        &mut self,
        raw: Vec<(RawZone, Range<usize>)>,
        include_dirs: &[PathBuf],
    ) -> Vec<ZoneConfig> {
        let mut out: Vec<ZoneConfig> = Vec::new();
        // Lowercased origin → index in `out`.
        let mut seen: HashMap<LowerName, usize> = HashMap::new();
        for (RawZone { origin, file }, span) in raw {
            let at = origin.span();
            let Some(origin) = self.name(origin.get_ref(), at.clone(), "zone origin") else {
                continue;
            };
            if let Some(&first) = seen.get(&LowerName::new(&origin)) {
                let message = format!("zone {origin} is already defined at {}", out[first].place);
                self.invalid(at, message);
                continue;
            }
            seen.insert(LowerName::new(&origin), out.len());
            out.push(ZoneConfig {
                origin,
                file: self.relative_to_config(&file),
                include_dirs: include_dirs.to_vec(),
                place: self.place(span),
            });
        }
        if out.is_empty() && self.errors.is_empty() {
            self.invalid(
                0..0,
                "no [[zone]] configured: lbns needs at least one zone to serve",
            );
        }
        out
    }

    fn pools(
        &mut self,
        raw: Vec<(RawPool, Range<usize>)>,
        zones: &[ZoneConfig],
        cluster: Option<&ClusterConfig>,
    ) -> Vec<PoolConfig> {
        let peer_delay = cluster.map_or(Duration::ZERO, ClusterConfig::detection_delay);
        let origins: HashSet<LowerName> = zones.iter().map(|z| LowerName::new(&z.origin)).collect();
        let mut out: Vec<PoolConfig> = Vec::new();
        // Lowercased pool name → index in `out`.
        let mut seen: HashMap<LowerName, usize> = HashMap::new();
        for (pool, span) in raw {
            let RawPool {
                name,
                ttl,
                answers,
                backends,
                policy,
                scale_by_load,
                min_healthy,
                all_down,
                fallback,
                all_down_ttl,
                max_age,
                failover,
                resolver_min_ttl,
                min_up,
                probe,
            } = pool;
            let name_at = name.span();
            let Some(name) = self.name(name.get_ref(), name_at.clone(), "pool name") else {
                continue;
            };
            let what = format!("pool {name}");
            let lower = LowerName::new(&name);
            if let Some(&first) = seen.get(&lower) {
                let message = format!("{what} is already defined at {}", out[first].place);
                self.invalid(name_at, message);
                continue;
            }
            seen.insert(lower.clone(), out.len());
            if !inside_any(&origins, &lower) {
                self.invalid(
                    name_at.clone(),
                    format!("{what} is not inside any configured zone"),
                );
            }

            let (max_ttl, at) = key(ttl, &span);
            if max_ttl == Some(0) {
                // A zero TTL defeats every cache and multiplies load on lbns (RFC 1035 §3.2.1
                // allows it, but no operator wants it for a pool).
                self.invalid(at, format!("{what}: ttl must be at least 1 second"));
            }
            let (failover, failover_at) = key(failover, &span);
            let failover = failover.map(|text| {
                self.duration(
                    &failover_at,
                    &format!("{what}: failover"),
                    Some(&text),
                    Duration::ZERO,
                )
            });
            let (resolver_min_ttl, resolver_at) = key(resolver_min_ttl, &span);
            let (min_up, min_up_at) = key(min_up, &span);
            if failover.is_none() {
                for (set, at, k) in [
                    (resolver_min_ttl.is_some(), &resolver_at, "resolver_min_ttl"),
                    (min_up.is_some(), &min_up_at, "min_up"),
                ] {
                    if set {
                        self.invalid(
                            at.clone(),
                            format!("{what}: {k} applies only with failover"),
                        );
                    }
                }
            }
            let min_up = min_up.unwrap_or(DEFAULT_MIN_UP);
            if !(0.0..=1.0).contains(&min_up) {
                self.invalid(
                    min_up_at,
                    format!("{what}: min_up {min_up} is not a fraction between 0 and 1"),
                );
            }
            // Without `failover` the TTL is `ttl` (default 5 s) and each probe must detect a
            // death within it; with `failover` the TTLs are derived and `ttl` only caps them.
            let ttl = max_ttl.unwrap_or(DEFAULT_POOL_TTL);
            let backend_ttl_bound = failover.is_none().then_some(ttl);

            if backends.get_ref().is_empty() {
                self.invalid(backends.span(), format!("{what}: backends is empty"));
            }
            let mut members: Vec<BackendConfig> = Vec::new();
            let mut seen = HashSet::new();
            for (i, b) in backends.into_inner().into_iter().enumerate() {
                let n = i + 1;
                // Problems with a backend point at it in the list.
                let at = b.span();
                let b = b.into_inner();
                let address = match b.address.parse::<IpAddr>() {
                    Ok(a) => a,
                    Err(_) => {
                        self.invalid(
                            at.clone(),
                            format!(
                                "{what}: backend #{n}: `{}` is not an IPv4 or IPv6 address",
                                b.address
                            ),
                        );
                        continue;
                    }
                };
                if !seen.insert(address) {
                    self.invalid(
                        at.clone(),
                        format!("{what}: backend #{n}: address {address} is listed twice"),
                    );
                    continue;
                }
                let weight = b.weight.unwrap_or(1);
                if weight == 0 {
                    self.invalid(
                        at.clone(),
                        format!("{what}: backend #{n} ({address}): weight must be at least 1"),
                    );
                }
                let name = b.name.unwrap_or_else(|| address.to_string());
                if members.iter().any(|m| m.name == name) {
                    self.invalid(
                        at.clone(),
                        format!("{what}: backend #{n}: name `{name}` is used twice"),
                    );
                }
                let tier = b.tier.unwrap_or(1);
                if tier == 0 {
                    self.invalid(
                        at.clone(),
                        format!("{what}: backend {name}: tier must be at least 1"),
                    );
                }
                let raw_probe = match (&probe, &b.probe) {
                    (Some(p), Some(o)) => p.overlay(o),
                    (Some(p), None) => p.clone(),
                    (None, Some(o)) => o.clone(),
                    (None, None) => RawProbe::default(),
                };
                let probe = self.probe(
                    &at,
                    &format!("{what}: backend {name}"),
                    &raw_probe,
                    backend_ttl_bound,
                );
                members.push(BackendConfig {
                    name,
                    address,
                    weight,
                    tier,
                    probe,
                });
            }
            let failover = match failover {
                Some(within) => match Failover::prove(
                    within,
                    resolver_min_ttl.unwrap_or(0),
                    min_up,
                    members
                        .iter()
                        .filter(|b| b.probe.is_probed())
                        .map(|b| b.probe.timing),
                    max_ttl,
                    peer_delay,
                ) {
                    Ok(f) => Some(f),
                    Err(message) => {
                        self.invalid(failover_at, format!("{what}: {message}"));
                        None
                    }
                },
                None => None,
            };
            let ttl = failover.as_ref().map_or(ttl, |f| f.steady_ttl);
            let policy = self.policy(&span, &what, policy, scale_by_load, min_healthy);
            let all_down = self.all_down(&span, &what, all_down, fallback);
            let (all_down_ttl, at) = key(all_down_ttl, &span);
            let all_down_ttl = all_down_ttl.unwrap_or(DEFAULT_ALL_DOWN_TTL.min(ttl));
            if all_down_ttl > ttl {
                self.invalid(
                    at,
                    format!("{what}: all_down_ttl {all_down_ttl} exceeds ttl {ttl}"),
                );
            }
            let bound = members
                .iter()
                .filter(|b| b.probe.is_probed())
                .map(|b| b.probe.timing.detection_bound())
                .max()
                .unwrap_or(Duration::from_secs(u64::from(ttl)));
            let (max_age, at) = key(max_age, &span);
            let max_age =
                self.duration(&at, &format!("{what}: max_age"), max_age.as_deref(), bound);

            out.push(PoolConfig {
                name,
                ttl,
                answers: match answers {
                    None | Some(0) => usize::MAX,
                    Some(n) => n,
                },
                backends: members,
                policy,
                all_down,
                all_down_ttl,
                max_age,
                failover,
                place: self.place(span),
            });
        }
        out
    }

    /// Parses a config name. Names in the config are absolute with or without the final dot.
    fn name(&mut self, text: &str, span: Range<usize>, what: &str) -> Option<Name> {
        match Name::from_ascii(text) {
            Ok(mut n) if !text.is_empty() => {
                n.set_fqdn(true);
                Some(n)
            }
            Ok(_) => {
                self.invalid(span, format!("{what} is empty"));
                None
            }
            Err(e) => {
                self.invalid(span, format!("{what} `{text}` is not a domain name: {e}"));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("t.toml")).map_err(|e| e.to_string())
    }

    const MINIMAL: &str = r#"
[[zone]]
origin = "cluster.example."
file = "cluster.example.zone"
"#;

    #[test]
    fn defaults_fill_in() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.server.listen, vec![DEFAULT_LISTEN.parse().unwrap()]);
        assert_eq!(c.server.edns_udp_size, 1232);
        assert!(c.server.udp_workers >= 1);
        assert_eq!(c.zones[0].origin.to_ascii(), "cluster.example.");
        assert_eq!(c.zones[0].file, Path::new("cluster.example.zone"));
    }

    #[test]
    fn control_socket_status_limits_and_include_dirs() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.control.socket, Path::new("lbns.sock"));
        assert_eq!(c.control.group, None);
        let st = &c.status;
        assert_eq!(
            (st.header_timeout, st.idle_timeout, st.max_connections),
            (Duration::from_secs(5), Duration::from_secs(10), 64)
        );
        assert!(st.metrics_per_backend);
        assert_eq!(c.server.include_dirs, [Path::new(".")]);
        assert_eq!(c.zones[0].include_dirs, [Path::new(".")]);
        // The socket follows the state file; include_dirs are relative to the config.
        let c = Config::parse(
            &format!(
                "[server]\nstate_file = \"/var/lib/lbns/lbns.state\"\n\
                 include_dirs = [\"inc\", \"/srv/zones\"]\n{MINIMAL}"
            ),
            Path::new("/etc/lbns/lbns.toml"),
        )
        .unwrap();
        assert_eq!(c.control.socket, Path::new("/var/lib/lbns/lbns.sock"));
        assert_eq!(
            c.zones[0].include_dirs,
            [
                Path::new("/etc/lbns"),
                Path::new("/etc/lbns/inc"),
                Path::new("/srv/zones")
            ]
        );
        let c = parse(&format!(
            "[control]\nsocket = \"/run/lbns/control.sock\"\ngroup = \"adm\"\n\
             [status]\nheader_timeout = \"2s\"\nidle_timeout = \"1m\"\nmax_connections = 8\n\
             metrics_per_backend = false\n{MINIMAL}"
        ))
        .unwrap();
        assert_eq!(c.control.socket, Path::new("/run/lbns/control.sock"));
        assert_eq!(c.control.group.as_deref(), Some("adm"));
        let st = &c.status;
        assert_eq!(
            (st.header_timeout, st.idle_timeout, st.max_connections),
            (Duration::from_secs(2), Duration::from_secs(60), 8)
        );
        assert!(!st.metrics_per_backend);
        // Not a boolean: refused with its place.
        let err = parse(&format!(
            "[status]\nmetrics_per_backend = \"no\"\n{MINIMAL}"
        ))
        .unwrap_err();
        assert!(err.contains("t.toml:2:"), "{err}");
        let long = "/tmp/".to_owned() + &"s".repeat(110);
        let err = parse(&format!(
            "[control]\nsocket = \"{long}\"\ngroup = \"\"\n[status]\nheader_timeout = \"0s\"\n\
             idle_timeout = \"soon\"\nmax_connections = 0\n[server]\ninclude_dirs = [\"\"]\n{MINIMAL}"
        ))
        .unwrap_err();
        for expected in [
            format!(
                "t.toml:2:10: control socket {long} is longer than the 107 bytes a Unix socket \
                 path may have"
            ),
            "t.toml:3:9: control group must not be empty".to_owned(),
            "t.toml:5:18: status header_timeout must be more than 0".to_owned(),
            "t.toml:6:16: status idle_timeout: `soon` is not a duration such as \"10s\": \
             expected number at 0"
                .to_owned(),
            "t.toml:7:19: status max_connections must be at least 1".to_owned(),
            "t.toml:9:16: include_dirs: an entry is empty".to_owned(),
        ] {
            assert!(
                err.lines().any(|l| l == expected),
                "missing {expected}:\n{err}"
            );
        }
    }

    #[test]
    fn operations_keys_default_and_parse() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(
            c.status.listen,
            vec![DEFAULT_STATUS_LISTEN.parse().unwrap()]
        );
        assert_eq!(
            c.status.allow,
            ["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()]
        );
        // Beside the config file, like zone files.
        let c = Config::parse(MINIMAL, Path::new("/etc/lbns/lbns.toml")).unwrap();
        assert_eq!(c.server.state_file, Path::new("/etc/lbns/lbns.state"));
        assert_eq!(c.server.query_log_sample, 0);
        assert_eq!(
            (c.server.user.as_deref(), c.server.group.as_deref()),
            (None, None)
        );

        let text = format!(
            "[server]\nstate_file = \"/var/lib/lbns/lbns.state\"\nquery_log_sample = 100\n\
             user = \"lbns\"\ngroup = \"lbns\"\n\n\
             [status]\nlisten = [\"127.0.0.1:9053\", \"[::1]:9053\"]\nallow = [\"127.0.0.1\", \"10.0.0.0/8\"]\n{MINIMAL}"
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.server.state_file, Path::new("/var/lib/lbns/lbns.state"));
        assert_eq!(c.server.query_log_sample, 100);
        assert_eq!(c.server.user.as_deref(), Some("lbns"));
        assert_eq!(c.server.group.as_deref(), Some("lbns"));
        assert_eq!(c.status.listen.len(), 2);
        assert_eq!(c.status.allow[0].to_string(), "127.0.0.1/32");
        // One address as a plain string; off with [] or enabled = false.
        let status = |body: &str| parse(&format!("[status]\n{body}\n{MINIMAL}"));
        assert_eq!(
            status("listen = \"127.0.0.1:9053\"").unwrap().status.listen,
            vec!["127.0.0.1:9053".parse().unwrap()]
        );
        assert!(status("listen = []").unwrap().status.listen.is_empty());
        assert!(status("enabled = false").unwrap().status.listen.is_empty());
    }

    #[test]
    fn operations_keys_are_checked_with_their_place() {
        let text = format!(
            "[server]\nlisten = [\"127.0.0.1:5353\"]\nuser = \"\"\nstate_file = \"\"\n\n\
             [status]\nlisten = [\"127.0.0.1:5353\", \"localhost\"]\nallow = [\"10.1.2.3/8\", \"::1/129\"]\n{MINIMAL}"
        );
        let err = parse(&text).unwrap_err();
        // Each at the value of its key: `user = ""` is line 3, its value at column 8.
        for expected in [
            "t.toml:3:8: user must not be empty",
            "t.toml:4:14: state_file must not be empty",
            "t.toml:7:10: status listen 127.0.0.1:5353 is also a [server] listen address",
            "t.toml:7:10: status listen: `localhost` is not an address:port such as 127.0.0.1:8053",
            "t.toml:8:9: status allow: `10.1.2.3/8`: host bits are set; the network is 10.0.0.0/8",
            "t.toml:8:9: status allow: `::1/129`: prefix /129 is longer than 128 bits",
        ] {
            assert!(
                err.lines().any(|l| l == expected),
                "missing {expected}:\n{err}"
            );
        }
        let err = parse(&format!("[status]\nlisen = \"x\"\n{MINIMAL}")).unwrap_err();
        assert!(
            err.starts_with("t.toml:2:1: [status]: unknown field `lisen`"),
            "{err}"
        );
        let err = parse(&format!("[status]\nlisten = 8053\n{MINIMAL}")).unwrap_err();
        assert!(
            err.contains("expected an address string or a list of them"),
            "{err}"
        );
    }

    #[test]
    fn problems_point_at_the_key_not_a_comment() {
        // The comment names both tables before either header: nothing may point at it.
        let text = format!(
            "# [server] and [status] are below\n{MINIMAL}\n[server]\nedns_udp_size = 100\nlisten = []\n\n\
             [[pool]]\nname = \"www.elsewhere.example.\"\nttl = 0\npolicy = \"fastest\"\n\
             all_down = \"fallback\"\nbackends = [\"127.0.0.2\", {{ address = \"127.0.0.2\" }}]\n"
        );
        let err = parse(&text).unwrap_err();
        let pool = "pool www.elsewhere.example.";
        let expected = [
            "t.toml:9:10: listen: at least one address is needed".to_owned(),
            "t.toml:8:17: edns_udp_size 100 is outside 512..=4096".to_owned(),
            format!("t.toml:12:8: {pool} is not inside any configured zone"),
            format!("t.toml:13:7: {pool}: ttl must be at least 1 second"),
            // The second backend of the list.
            format!("t.toml:16:26: {pool}: backend #2: address 127.0.0.2 is listed twice"),
            format!(
                "t.toml:14:10: {pool}: policy `fastest` is not one of round-robin, random, \
                 least-loaded, weighted, priority, best"
            ),
            // No fallback list: the problem is with `all_down`.
            format!(
                "t.toml:15:12: {pool}: all_down = \"fallback\" needs a non-empty fallback list"
            ),
        ];
        assert_eq!(err.lines().collect::<Vec<_>>(), expected, "{err}");

        let pool = |keys: &str| {
            format!(
                "{MINIMAL}\n[[pool]]\nname = \"www.cluster.example.\"\nbackends = [\"127.0.0.2\"]\n{keys}\n"
            )
        };
        // Line 9 holds the keys; a type error on a kept-place key still names the type.
        let err = parse(&pool("ttl = \"x\"")).unwrap_err();
        assert!(
            err.starts_with("t.toml:9:7: [[pool]] #1: invalid type: string \"x\", expected u32"),
            "{err}"
        );
        let err = parse(&pool("ttl = 2\nall_down_ttl = 3")).unwrap_err();
        assert!(err.starts_with("t.toml:10:16: "), "{err}");
        let err = parse(&pool("policy = \"weighted\"\nmin_healthy = 2")).unwrap_err();
        assert!(
            err.starts_with("t.toml:10:15: ")
                && err.ends_with("applies only to policy = \"priority\""),
            "{err}"
        );
        let err = parse(&pool("fallback = [\"x\"]")).unwrap_err();
        assert!(
            err.contains("t.toml:9:12: pool www.cluster.example.: fallback `x`"),
            "{err}"
        );
        let err = parse(&pool("max_age = \"soon\"")).unwrap_err();
        assert!(err.starts_with("t.toml:9:11: "), "{err}");
        let err = parse("[[zone]]\norigin = \"\"\nfile = \"z\"\n").unwrap_err();
        assert_eq!(err, "t.toml:2:10: zone origin is empty");
        let err = parse("[[zone]]\nfile = \"z\"\n").unwrap_err();
        assert!(err.contains("missing field `origin`"), "{err}");
    }

    /// `[server] xdp` parses in every build; one built without AF_XDP refuses it with one line.
    #[test]
    #[cfg(not(feature = "xdp"))]
    fn xdp_is_refused_without_the_feature() {
        let err = parse(&format!("[server]\nxdp = \"lo\"\n{MINIMAL}")).unwrap_err();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("t.toml:")
                && err.ends_with(
                    ": xdp: this lbns was built without AF_XDP support (cargo build --features xdp)"
                ),
            "{err}"
        );
    }

    #[test]
    #[cfg(feature = "xdp")]
    fn xdp_parses_with_the_feature() {
        let c = parse(&format!("[server]\nxdp = \"lo\"\n{MINIMAL}")).unwrap();
        assert_eq!(c.server.xdp.as_deref(), Some("lo"));
    }

    #[test]
    fn backends_take_both_spellings() {
        let text = format!(
            "{MINIMAL}\n[[pool]]\nname = \"www.cluster.example\"\nttl = 7\nanswers = 2\n\
             backends = [\"127.0.0.2\", {{ address = \"::1\", name = \"six\", weight = 3 }}]\n"
        );
        let c = parse(&text).unwrap();
        let p = &c.pools[0];
        assert_eq!(p.name.to_ascii(), "www.cluster.example.");
        assert_eq!((p.ttl, p.answers), (7, 2));
        assert_eq!(p.backends[0].name, "127.0.0.2");
        assert_eq!(p.backends[1].name, "six");
        assert_eq!(p.backends[1].weight, 3);
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let text = r#"
[server]
listen = ["127.0.0.1:5353", "nonsense"]
tcp_idle_timeout = "soon"

[[zone]]
origin = "cluster.example."
file = "a.zone"
colour = "blue"

[[pool]]
name = "www.elsewhere.example."
backends = ["127.0.0.300"]

[[pool]]
name = "api.cluster.example."
backends = [{ address = "127.0.0.2", wieght = 2 }]
"#;
        let err = parse(text).unwrap_err();
        let lines: Vec<&str> = err.lines().collect();
        assert!(err.contains("nonsense"), "{err}");
        assert!(err.contains("tcp_idle_timeout: `soon`"), "{err}");
        assert!(
            err.contains("t.toml:9:1: [[zone]] #1: unknown field `colour`"),
            "{err}"
        );
        assert!(err.contains("pool www.elsewhere.example. is not inside any configured zone"));
        assert!(
            err.contains("`127.0.0.300` is not an IPv4 or IPv6 address"),
            "{err}"
        );
        assert!(err.contains("unknown field `wieght`"), "{err}");
        assert_eq!(lines.len(), 6, "{err}");
    }

    #[test]
    fn unknown_section_and_syntax_errors_have_places() {
        let err = parse("[[zones]]\norigin = \"x.\"\n").unwrap_err();
        assert!(
            err.starts_with("t.toml:1:3: unknown section `zones`"),
            "{err}"
        );
        let err = parse("[server\nlisten = 1\n").unwrap_err();
        assert!(err.starts_with("t.toml:1:"), "{err}");
    }

    #[test]
    fn duplicates_are_rejected() {
        let text = format!(
            "{MINIMAL}{MINIMAL}\n[[pool]]\nname = \"a.cluster.example.\"\nbackends = [\"127.0.0.2\", \"127.0.0.2\"]\n"
        );
        let err = parse(&text).unwrap_err();
        assert!(
            err.contains("zone cluster.example. is already defined at t.toml:2:1"),
            "{err}"
        );
        assert!(err.contains("address 127.0.0.2 is listed twice"), "{err}");
    }

    #[test]
    fn failover_bound_is_enforced_with_the_numbers() {
        let pool = |probe: &str| {
            format!(
                "{MINIMAL}\n[[pool]]\nname = \"www.cluster.example.\"\nttl = 5\n\
                 backends = [\"127.0.0.2\"]\nprobe = {{ {probe} }}\n"
            )
        };
        // Defaults: (1s + 200ms) × 2 + 500ms = 2.9s ≤ 5s.
        let c = parse(&pool("kind = \"tcp\", port = 80")).unwrap();
        let b = &c.pools[0].backends[0];
        assert_eq!(
            b.probe.timing.detection_bound(),
            Duration::from_millis(2900)
        );
        assert_eq!(c.pools[0].max_age, Duration::from_millis(2900));
        let err = parse(&pool(
            "kind = \"tcp\", port = 80, interval = \"2s\", fall = 3",
        ))
        .unwrap_err();
        assert!(
            err.contains("pool www.cluster.example.: backend 127.0.0.2: worst-case failure detection (interval 2s + jitter 200ms) × fall 3 + timeout 500ms = 7s 100ms exceeds the pool TTL 5s"),
            "{err}"
        );
        // Probes that never run are not bound.
        assert!(parse(&pool("kind = \"none\"")).is_ok());
    }

    /// A pool of one probed backend with `keys` and `probe`.
    fn failover_pool(keys: &str, probe: &str) -> Result<Config, String> {
        parse(&format!(
            "{MINIMAL}\n[[pool]]\nname = \"www.cluster.example.\"\n{keys}\n\
             backends = [\"127.0.0.2\"]\nprobe = {{ kind = \"tcp\", port = 80{probe} }}\n"
        ))
    }

    #[test]
    fn failover_derives_the_steady_ttl() {
        // Defaults: first evidence 1s + 200ms + 500ms = 1.7s; 5s − 1.7s − 1s = 2.3s → TTL 2.
        let c = failover_pool("failover = \"5s\"", "").unwrap();
        let p = &c.pools[0];
        let f = p.failover.as_ref().unwrap();
        assert_eq!(f.first_evidence, Duration::from_millis(1700));
        assert_eq!(f.detection, Duration::from_millis(2900));
        assert_eq!((f.steady_ttl, p.ttl, p.all_down_ttl), (2, 2, 1));
        assert_eq!(f.min_up, 0.5);
        // `ttl` caps it; a longer failover gives a longer TTL.
        let c = failover_pool("failover = \"5s\"\nttl = 1", "").unwrap();
        assert_eq!(c.pools[0].ttl, 1);
        let c = failover_pool("failover = \"30s\"", "").unwrap();
        assert_eq!(c.pools[0].ttl, 27);
        // A pool of unprobed backends: nothing is detected, a change (drain, reload) shows
        // within failover − 1s.
        let c = parse(&format!(
            "{MINIMAL}\n[[pool]]\nname = \"www.cluster.example.\"\nfailover = \"5s\"\n\
             backends = [\"127.0.0.2\"]\n"
        ))
        .unwrap();
        assert_eq!(c.pools[0].ttl, 4);
    }

    #[test]
    fn failover_is_proven_to_the_100ms() {
        // (1.5s + 250ms) × 2 + 600ms = 4.1s, + 1s of slack = 5.1s: broken by 100 ms. In whole
        // seconds (4 + 1 = 5) it would pass.
        let err = failover_pool(
            "failover = \"5s\"",
            ", interval = \"1500ms\", jitter = \"250ms\", timeout = \"600ms\"",
        )
        .unwrap_err();
        assert!(
            err.contains("pool www.cluster.example.: failover 5s cannot be kept: detection (interval 1s 500ms + jitter 250ms) × fall 2 + timeout 600ms = 4s 100ms + resolver_min_ttl 0s + resolver slack 1s = 5s 100ms exceeds it; lower interval, jitter, fall or timeout, or raise failover"),
            "{err}"
        );
        // 100 ms less timeout keeps it: 4.0s + 1s = 5s.
        let c = failover_pool(
            "failover = \"5s\"",
            ", interval = \"1500ms\", jitter = \"250ms\", timeout = \"500ms\"",
        )
        .unwrap();
        // First evidence 2.25s: 5s − 2.25s − 1s = 1.75s → TTL 1.
        assert_eq!(c.pools[0].ttl, 1);
        // No room for a TTL of one second before the first evidence.
        let err = failover_pool("failover = \"3s\"", ", fall = 1, interval = \"1s\"").unwrap_err();
        assert!(
            err.contains("failover 3s cannot be kept: first evidence (interval + jitter + timeout) 1s 700ms + a TTL of 1s + resolver slack 1s = 3s 700ms exceeds it"),
            "{err}"
        );
    }

    #[test]
    fn cluster_keys_are_checked_and_peers_delay_detection() {
        let cluster = "[cluster]\nlisten = \"127.0.0.53:8055\"\npeers = [\"127.0.0.54:8055\", \"127.0.0.55:8055\"]\nkey_file = \"peer.key\"\n";
        let c = parse(&format!("{cluster}{MINIMAL}")).unwrap();
        let k = c.cluster.as_ref().unwrap();
        assert_eq!(k.quorum, Quorum::Majority);
        assert_eq!(k.exchange_interval, Duration::from_millis(500));
        assert_eq!(k.peer_max_age, Duration::from_millis(1500));
        assert_eq!(k.key_file, Path::new("peer.key"));
        // With peers, a majority learns of a death one exchange later: 2.9s + 0.5s.
        let text = format!(
            "{cluster}{MINIMAL}\n[[pool]]\nname = \"www.cluster.example.\"\nfailover = \"5s\"\n\
             backends = [\"127.0.0.2\"]\nprobe = {{ kind = \"tcp\", port = 80 }}\n"
        );
        let c = parse(&text).unwrap();
        let f = c.pools[0].failover.as_ref().unwrap();
        assert_eq!(f.detection, Duration::from_millis(3400));
        // A quorum one instance can meet waits for a silent peer's view to age out (1.5s).
        let err = parse(&text.replace("[cluster]\n", "[cluster]\nquorum = 1\n")).unwrap_err();
        assert!(
            err.contains("= 2s 900ms + peer exchange 1s 500ms + resolver_min_ttl 0s + resolver slack 1s = 5s 400ms exceeds it"),
            "{err}"
        );
        let err = parse(&format!(
            "[cluster]\nlisten = \"127.0.0.54:8055\"\npeers = [\"127.0.0.54:8055\", \"x\"]\nquorum = 4\n\
             peer_max_age = \"100ms\"\n{MINIMAL}"
        ))
        .unwrap_err();
        for expected in [
            "cluster: peer `x` is not an address:port",
            "cluster: listen 127.0.0.54:8055 is also a peer",
            "cluster: peers need a key_file",
            "cluster: quorum 4 is not \"majority\" or a number from 1 to 2",
            "cluster: peer_max_age must be longer than exchange_interval",
        ] {
            assert!(err.contains(expected), "missing {expected}:\n{err}");
        }
        let err = parse(&format!("[cluster]\nkey_file = \"k\"\n{MINIMAL}")).unwrap_err();
        assert!(err.contains("the other keys need `peers`"), "{err}");
    }

    #[test]
    fn failover_is_proven_for_a_resolver_ttl_floor() {
        // Knot Resolver keeps every record 5 s: 2.9s + 5s + 1s = 8.9s > 5s.
        let err = failover_pool("failover = \"5s\"\nresolver_min_ttl = 5", "").unwrap_err();
        assert!(
            err.contains(
                "= 2s 900ms + resolver_min_ttl 5s + resolver slack 1s = 8s 900ms exceeds it"
            ),
            "{err}"
        );
        // 10 s can be kept behind it: 1.7s + 5s + 1s ≤ 10s and 2.9s + 5s + 1s ≤ 10s.
        let c = failover_pool("failover = \"10s\"\nresolver_min_ttl = 5", "").unwrap();
        assert_eq!(c.pools[0].ttl, 7);
        // The keys that only mean something with failover say so.
        let err = failover_pool("resolver_min_ttl = 5\nmin_up = 0.3", "").unwrap_err();
        assert!(
            err.contains("resolver_min_ttl applies only with failover"),
            "{err}"
        );
        assert!(err.contains("min_up applies only with failover"), "{err}");
        let err = failover_pool("failover = \"5s\"\nmin_up = 1.5", "").unwrap_err();
        assert!(
            err.contains("min_up 1.5 is not a fraction between 0 and 1"),
            "{err}"
        );
    }

    #[test]
    fn probe_policy_and_all_down_keys_are_checked() {
        let text = format!(
            "{MINIMAL}\n[[pool]]\nname = \"a.cluster.example.\"\npolicy = \"fastest\"\n\
             all_down = \"fallback\"\nbackends = [{{ address = \"127.0.0.2\", probe = {{ kind = \"http\", version = 2 }} }}]\n\
             probe = {{ kind = \"tcp\", timeout = \"2s\", port = 1 }}\n"
        );
        let err = parse(&text).unwrap_err();
        assert!(err.contains("policy `fastest` is not one of"), "{err}");
        assert!(err.contains("needs a non-empty fallback list"), "{err}");
        // The kind's own keys are the probe layer's to check (`lbns check`), not the parser's.
        assert!(!err.contains("version"), "{err}");
        assert!(
            err.contains("probe timeout must not exceed the interval"),
            "{err}"
        );
        // A backend override keeps the pool's other keys.
        let text = format!(
            "{MINIMAL}\n[[pool]]\nname = \"a.cluster.example.\"\npolicy = \"priority\"\nmin_healthy = 2\n\
             backends = [\"127.0.0.2\", {{ address = \"127.0.0.3\", tier = 2, probe = {{ port = 8080 }} }}]\n\
             probe = {{ kind = \"http\", port = 80, url = \"http://{{address}}:{{port}}/ping\" }}\n"
        );
        let c = parse(&text).unwrap();
        let b = &c.pools[0].backends;
        assert_eq!(c.pools[0].policy, Policy::Priority { min_healthy: 2 });
        assert_eq!(b[1].tier, 2);
        // The kind's own keys are kept as written; the probe layer checks them.
        assert_eq!(b[1].probe.kind, "http");
        assert_eq!(b[1].probe.settings["port"].as_integer(), Some(8080));
        assert_eq!(
            b[1].probe.settings["url"].as_str(),
            Some("http://{address}:{port}/ping")
        );
    }
}
