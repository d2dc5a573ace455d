//! lbns: a load-balancing authoritative DNS server.
//!
//! Zones come from RFC 1035 master files; pools of backends answer A/AAAA with the healthy,
//! least-loaded members. See `docs/architecture.md` for how the pieces fit.

#![warn(missing_docs, unreachable_pub)]

pub mod app;
pub mod cli;
pub mod config;
pub mod control;
pub mod dns;
pub mod domain;
#[doc(hidden)]
pub mod fuzzing;
mod limits;
pub mod logging;
mod metrics;
mod monitor;
mod net;
pub mod privdrop;
pub mod probe;
mod querylog;
pub mod select;
pub mod snapshot;
pub mod state;
pub mod status;
pub mod zones;
