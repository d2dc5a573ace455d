//! The `lbns` binary: parses the command line, sets up logging, runs a subcommand.
//!
//! Output goes through [`out`], which reports a failed write instead of panicking as `println!`
//! does; a closed stdout (`lbns check | head`) ends the command quietly with success, as
//! ripgrep does: the reader has all it wanted.

use std::fmt::Display;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

use lbns::app::Server;
use lbns::cli::{Cli, Command, ControlTarget, LogFormat, StatusTarget};
use lbns::config::Config;
use lbns::control;
use lbns::logging::RateLimited;
use lbns::status::client::{self, Client};

/// The config file `serve` reads, and the CLI's commands read the control socket from, unless
/// told otherwise.
const DEFAULT_CONFIG: &str = "zones/lbns.toml";

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, &cli.log_level);
    let result = match cli.command {
        Command::Check { config } => {
            let result = check(&config);
            // What reading the zones cost at most: a bounded read keeps this small whatever a
            // zone file includes.
            tracing::debug!(vm_hwm_kib = peak_rss_kib(), "check: peak resident memory");
            result
        }
        Command::Serve { config } => serve(&config),
        Command::Status { target, json } => status_client(&target).and_then(|c| {
            remote(c, async |c: Client| {
                if json {
                    c.status_json().await
                } else {
                    c.report().await.map(|r| r.to_text())
                }
            })
        }),
        Command::Reload { target } => {
            control_client(&target).and_then(|c| remote(c, async |c: Client| c.reload().await))
        }
        Command::Drain {
            target,
            pool,
            backend,
        } => control_client(&target).and_then(|c| {
            remote(c, async |c: Client| {
                c.set_drained(&pool, &backend, true).await
            })
        }),
        Command::Undrain {
            target,
            pool,
            backend,
        } => control_client(&target).and_then(|c| {
            remote(c, async |c: Client| {
                c.set_drained(&pool, &backend, false).await
            })
        }),
    };
    match result {
        Ok(code) => code,
        Err(e) if broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            err(format_args!("lbns: {e:#}"));
            ExitCode::FAILURE
        }
    }
}

/// Writes `text` to stdout and flushes it; a failure (a closed pipe) is returned, not a panic.
fn out(text: impl Display) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    write!(stdout, "{text}")?;
    stdout.flush()
}

/// Writes a line to stderr; if stderr is gone there is nobody to tell.
fn err(text: impl Display) {
    let _ = writeln!(io::stderr().lock(), "{text}");
}

/// This process's peak resident memory in KiB (`VmHWM` in /proc/self/status), 0 if unknown.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Whether `e` is, or was caused by, a write to a closed pipe.
fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

fn init_logging(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: not in a file or the journal.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // Lines clients can cause (library warnings about their packets, the listeners' own)
    // are rate limited: see lbns::logging.
    let lines = tracing_subscriber::fmt::format();
    match format {
        LogFormat::Text => builder.event_format(RateLimited::new(lines)).init(),
        LogFormat::Json => builder
            .json()
            .event_format(RateLimited::new(lines.json()))
            .init(),
    }
}

/// `lbns check`: every problem on stderr, one per line, like `named-checkconf -z`.
fn check(path: &Path) -> anyhow::Result<ExitCode> {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            err(e);
            return Ok(ExitCode::FAILURE);
        }
    };
    match control::check(config) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                err(w);
            }
            let mut text = String::new();
            for z in loaded.zones.zones() {
                text.push_str(&format!(
                    "zone {}: loaded, {} names, {} records, {:.1} MiB\n",
                    z.origin,
                    z.len(),
                    z.records(),
                    z.bytes() as f64 / (1 << 20) as f64
                ));
            }
            for p in &loaded.config.pools {
                if let Some(f) = &p.failover {
                    text.push_str(&format!("pool {}: {}\n", p.name, failover_proof(f)));
                }
            }
            text.push_str(&format!(
                "{}: OK ({} zones, {} pools)\n",
                path.display(),
                loaded.config.zones.len(),
                loaded.config.pools.len()
            ));
            out(text)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            err(e);
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The failover promise of one pool, with the numbers that prove it (docs/config.md).
fn failover_proof(f: &lbns::config::Failover) -> String {
    let d = |d: std::time::Duration| {
        humantime::format_duration(std::time::Duration::from_millis(d.as_millis() as u64))
    };
    if f.detection.is_zero() {
        return format!(
            "failover {}: no backend is probed; a change lbns makes (drain, reload) reaches \
             clients within TTL {}s + slack 1s",
            d(f.within),
            f.steady_ttl
        );
    }
    let floor = std::time::Duration::from_secs(u64::from(f.resolver_min_ttl));
    let steady = std::time::Duration::from_secs(u64::from(f.steady_ttl.max(f.resolver_min_ttl)));
    format!(
        "failover {} holds behind a caching resolver: first evidence {} + TTL {} + slack 1s = {}; \
         detection {} + resolver_min_ttl {} + slack 1s = {}",
        d(f.within),
        d(f.first_evidence),
        d(steady),
        d(f.first_evidence + steady + lbns::config::RESOLVER_SLACK),
        d(f.detection),
        d(floor),
        d(f.detection + floor + lbns::config::RESOLVER_SLACK),
    )
}

fn serve(path: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("lbns-rt")
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async {
        let server = Server::start(config)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => {
                    tracing::info!(config = %path.display(), "SIGHUP: reloading");
                    match server.control().reload_from_file().await {
                        Ok(done) => done.warnings.iter().for_each(|w| tracing::warn!("{w}")),
                        Err(e) => tracing::error!("reload rejected, still serving the old configuration:\n{e}"),
                    }
                }
            }
        }
        tracing::info!("shutting down");
        server.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// The client `lbns status` uses: the status listener at `--status-addr`, else the control
/// socket.
fn status_client(target: &StatusTarget) -> anyhow::Result<Client> {
    match &target.status_addr {
        Some(addr) => Ok(Client::new(addr)?),
        None => control_client(&target.control),
    }
}

/// The control socket: `--socket`, else the `[control] socket` of `--config` (or of the
/// default config).
fn control_client(target: &ControlTarget) -> anyhow::Result<Client> {
    if let Some(socket) = &target.socket {
        return Ok(Client::socket(socket));
    }
    let path = target
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    let config = Config::load(&path).map_err(|e| {
        anyhow::anyhow!(
            "{e}\n(the control socket is named in the config: give --config FILE or --socket PATH)"
        )
    })?;
    Ok(Client::socket(&config.control.socket))
}

/// Runs one request against a running lbns and prints its answer.
fn remote<F>(client: Client, request: F) -> anyhow::Result<ExitCode>
where
    F: AsyncFnOnce(Client) -> Result<String, client::ClientError>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let mut text = runtime.block_on(request(client))?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    out(text)?;
    Ok(ExitCode::SUCCESS)
}
