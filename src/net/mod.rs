//! Listeners: UDP worker threads and the TCP accept loop, both feeding the query handler.

pub mod tcp;
pub mod udp;
pub mod xdp;

use std::io;
use std::net::SocketAddr;

/// A listener that could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot listen on {proto} {addr}: {source}")]
    Bind {
        proto: &'static str,
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("cannot answer through AF_XDP on {iface}: {reason}")]
    Xdp { iface: String, reason: String },
}
