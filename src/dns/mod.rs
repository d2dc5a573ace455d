//! The query path: DNS messages in, DNS messages out, read from the current snapshot.

pub mod fast;
pub mod handler;
pub mod resolve;
#[cfg(test)]
mod testing;

pub use handler::{Outcome, Transport, handle, handle_truncated};
