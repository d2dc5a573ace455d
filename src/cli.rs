//! Command-line interface: the `lbns` subcommands and their flags.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// lbns: a load-balancing authoritative DNS server.
#[derive(Debug, Parser)]
#[command(version, about, propagate_version = true)]
pub struct Cli {
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Log filter, in `RUST_LOG` syntax (e.g. `info`, `lbns=debug`). `RUST_LOG` overrides it.
    #[arg(long, default_value = "info", global = true)]
    pub log_level: String,
    /// What to do: serve, or check a config, or talk to a running lbns.
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written to stderr (`--log-format`). The variants' docs are kept out of
/// `--help` (`help = None`): with them clap would switch every help page to its long layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines, one per event.
    #[value(help = None)]
    Text,
    /// One JSON object per event, for log collectors.
    #[value(help = None)]
    Json,
}

/// The subcommands; the ones that talk to a running lbns go through its control socket (or,
/// for `status --status-addr`, its status listener).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Answer queries until SIGTERM or SIGINT; SIGHUP reloads config and zones.
    Serve {
        /// Configuration file.
        #[arg(short, long, default_value = "zones/lbns.toml")]
        config: PathBuf,
    },
    /// Check the configuration and every zone file, list every problem, exit non-zero if any.
    Check {
        /// Configuration file.
        #[arg(short, long, default_value = "zones/lbns.toml")]
        config: PathBuf,
    },
    /// Print the state of every pool and backend, from a running lbns.
    Status {
        /// The running lbns to ask.
        #[command(flatten)]
        target: StatusTarget,
        /// Print the raw JSON (`/status.json`) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Make a running lbns reload the config file it was started with.
    Reload {
        /// The running lbns to ask.
        #[command(flatten)]
        target: ControlTarget,
    },
    /// Take a backend out of answers at once; kept across restarts until `undrain`.
    Drain {
        /// The running lbns to ask.
        #[command(flatten)]
        target: ControlTarget,
        /// Pool name, e.g. www.cluster.example. (the final dot may be left out).
        pool: String,
        /// Backend name or address.
        backend: String,
    },
    /// Put a drained backend back into answers (when its health allows).
    Undrain {
        /// The running lbns to ask.
        #[command(flatten)]
        target: ControlTarget,
        /// Pool name, e.g. www.cluster.example. (the final dot may be left out).
        pool: String,
        /// Backend name or address.
        backend: String,
    },
}

/// Which running lbns `status` asks: its status listener at `--status-addr`, else its control
/// socket (`--socket`, else the `[control] socket` of `--config`).
#[derive(Debug, Args)]
pub struct StatusTarget {
    /// Address of its status listener, host:port (it answers reads only).
    #[arg(long, value_name = "ADDR", conflicts_with_all = ["config", "socket"])]
    pub status_addr: Option<String>,
    /// The control socket.
    #[command(flatten)]
    pub control: ControlTarget,
}

/// Which running lbns to change: its control socket, `--socket`, else the `[control] socket`
/// of `--config` (default `zones/lbns.toml`, as for `serve`).
#[derive(Debug, Args)]
pub struct ControlTarget {
    /// Path of its control socket.
    #[arg(long, value_name = "PATH", conflicts_with = "config")]
    pub socket: Option<PathBuf>,
    /// Read the control socket's path from this configuration file [default: zones/lbns.toml].
    #[arg(short, long)]
    pub config: Option<PathBuf>,
}
