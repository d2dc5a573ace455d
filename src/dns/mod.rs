//! The query path: DNS messages in, DNS messages out, read from the current snapshot.

mod cookie;
pub mod fast;
mod handler;
mod resolve;
mod rrl;
#[cfg(test)]
mod testing;
mod wire;

pub use cookie::{Client, CookieCheck};
pub use handler::{Outcome, Transport, handle, handle_from};
pub(crate) use handler::{handle_tcp, handle_truncated};
pub use rrl::Answered;
pub(crate) use rrl::{RateKey, RateTable, Verdict, monotonic_us, slip};
