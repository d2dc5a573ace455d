//! Command-line interface: the `lbns` subcommands and their flags.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

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
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

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
}
