//! The query path: DNS messages in, DNS messages out, read from the current snapshot.

pub mod fast;
mod handler;
mod resolve;
#[cfg(test)]
mod testing;

pub(crate) use handler::handle_truncated;
pub use handler::{Outcome, Transport, handle};
