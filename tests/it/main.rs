//! Integration tests: lbns over real loopback sockets, in-process and as a process.

mod support;

mod browser;
mod cli;
mod dist;
mod dns;
mod fast;
mod health;
mod layers;
mod lbcd;
mod ops;
mod policy;
mod probe_kinds;
mod resolver;
mod tcp;
#[cfg(feature = "xdp")]
mod xdp;
