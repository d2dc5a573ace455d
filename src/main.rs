//! The `lbns` binary: parses the command line, sets up logging, runs a subcommand.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

use lbns::app::Server;
use lbns::cli::{Cli, Command, LogFormat, StatusTarget};
use lbns::config::{Config, DEFAULT_STATUS_LISTEN};
use lbns::control;
use lbns::status::client::{self, Client};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, &cli.log_level);
    let result = match cli.command {
        Command::Check { config } => check(&config),
        Command::Serve { config } => serve(&config),
        Command::Status { target, json } => remote(&target, async |c: Client| {
            if json {
                c.status_json().await
            } else {
                c.report().await.map(|r| r.to_text())
            }
        }),
        Command::Reload { target } => remote(&target, async |c: Client| c.reload().await),
        Command::Drain {
            target,
            pool,
            backend,
        } => remote(&target, async |c: Client| {
            c.set_drained(&pool, &backend, true).await
        }),
        Command::Undrain {
            target,
            pool,
            backend,
        } => remote(&target, async |c: Client| {
            c.set_drained(&pool, &backend, false).await
        }),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lbns: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// `lbns check`: every problem on stderr, one per line, like `named-checkconf -z`.
fn check(path: &Path) -> anyhow::Result<ExitCode> {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    match control::check(config) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("{w}");
            }
            for z in loaded.zones.zones() {
                println!("zone {}: loaded, {} names", z.origin, z.len());
            }
            for p in &loaded.config.pools {
                if let Some(f) = &p.failover {
                    println!("pool {}: {}", p.name, failover_proof(f));
                }
            }
            println!(
                "{}: OK ({} zones, {} pools)",
                path.display(),
                loaded.config.zones.len(),
                loaded.config.pools.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
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
                        Ok(warnings) => warnings.iter().for_each(|w| tracing::warn!("{w}")),
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

/// Runs one request against a running lbns's status listener and prints its answer.
fn remote<F>(target: &StatusTarget, request: F) -> anyhow::Result<ExitCode>
where
    F: AsyncFnOnce(Client) -> Result<String, client::ClientError>,
{
    let addr = match (&target.status_addr, &target.config) {
        (Some(addr), _) => addr.clone(),
        (None, Some(path)) => {
            let config = Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
            client::reachable(&config.status.listen)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "{}: [status] has no listen address a client can use (off, or port 0)",
                        path.display()
                    )
                })?
                .to_string()
        }
        (None, None) => DEFAULT_STATUS_LISTEN.to_owned(),
    };
    let client = Client::new(&addr)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let text = runtime.block_on(request(client))?;
    print!("{text}");
    if !text.ends_with('\n') {
        println!();
    }
    Ok(ExitCode::SUCCESS)
}
