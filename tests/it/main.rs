//! Integration tests: lbns over real loopback sockets, in-process and as a process.

mod support;

mod browser;
mod cli;
mod cluster;
mod cluster_netns;
mod dist;
mod dns;
mod fast;
mod health;
mod layers;
mod lbcd;
mod logs;
mod ops;
mod policy;
mod probe_kinds;
mod resolver;
mod rrl;
mod safety;
mod tcp;
#[cfg(feature = "xdp")]
mod xdp;
mod zone_scale;
