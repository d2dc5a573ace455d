//! The sampled query log: one query in N logged at info level (target `lbns::query`) with the
//! client, name, type, rcode and transport.
//!
//! Off by default: a log line per query costs far more than answering it. The listeners call
//! [`QueryLog::record`] after each handled query; when sampling is off that is one relaxed
//! atomic load, and the question is decoded only for the queries actually logged.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use hickory_proto::rr::Name;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use crate::dns::{Outcome, Transport};
use crate::metrics::rcode_name;

/// The sampler: shared by every listener of a server, so "one in N" holds across them.
#[derive(Debug, Default)]
pub(crate) struct QueryLog {
    /// N; 0 = off. Atomic so that a reload can change it under running listeners.
    every: AtomicU64,
    /// Queries seen while sampling is on.
    seen: AtomicU64,
}

impl QueryLog {
    /// A sampler logging one query in `every` (0 = none).
    pub(crate) fn new(every: u64) -> QueryLog {
        QueryLog {
            every: AtomicU64::new(every),
            seen: AtomicU64::new(0),
        }
    }

    /// Changes N (reload applies `[server] query_log_sample` this way).
    pub(crate) fn set_every(&self, every: u64) {
        self.every.store(every, Ordering::Relaxed);
    }

    pub(crate) fn every(&self) -> u64 {
        self.every.load(Ordering::Relaxed)
    }

    /// Whether this query is one to log: the first and then every N-th.
    #[inline]
    pub(crate) fn sample(&self) -> bool {
        match self.every.load(Ordering::Relaxed) {
            0 => false,
            1 => true,
            n => self.seen.fetch_add(1, Ordering::Relaxed).is_multiple_of(n),
        }
    }

    /// Samples, and logs the query if chosen. `query` is the request as received; `outcome` is
    /// what the handler returned (`None`: nothing was sent).
    #[inline]
    pub(crate) fn record(
        &self,
        client: SocketAddr,
        transport: Transport,
        query: &[u8],
        outcome: Option<&Outcome>,
    ) {
        if self.sample() {
            log_query(client, transport, query, outcome);
        }
    }
}

/// Logs one query at info level, target `lbns::query`. Unconditional: callers sample first
/// (or use [`QueryLog::record`]).
pub(crate) fn log_query(
    client: SocketAddr,
    transport: Transport,
    query: &[u8],
    outcome: Option<&Outcome>,
) {
    let qname = question_name(query).map_or_else(|| "-".to_owned(), |n| n.to_ascii());
    let qtype = outcome
        .and_then(|o| o.qtype)
        .map_or_else(|| "-".to_owned(), |t| t.to_string());
    // `None` from the handler means the datagram was dropped unanswered (a response or a runt).
    let rcode = outcome.map_or_else(|| "dropped".to_owned(), |o| rcode_name(u16::from(o.rcode)));
    let transport = match transport {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
    };
    tracing::info!(
        target: "lbns::query",
        client = %client,
        qname = %qname,
        qtype = %qtype,
        rcode = %rcode,
        transport,
        "query"
    );
}

/// The first question's name, if the message has one that decodes.
fn question_name(message: &[u8]) -> Option<Name> {
    // QDCOUNT is octets 4-5 of the header (RFC 1035 §4.1.1); the question starts at 12.
    if message.len() < 12 || u16::from_be_bytes([message[4], message[5]]) == 0 {
        return None;
    }
    let mut decoder = BinDecoder::new(message);
    decoder.read_slice(12).ok()?;
    Name::read(&mut decoder).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_off_every_and_one_in_n() {
        let off = QueryLog::new(0);
        assert!((0..100).all(|_| !off.sample()));
        let all = QueryLog::new(1);
        assert!((0..100).all(|_| all.sample()));
        let third = QueryLog::new(3);
        let picked: Vec<bool> = (0..7).map(|_| third.sample()).collect();
        assert_eq!(picked, [true, false, false, true, false, false, true]);
        third.set_every(0);
        assert!(!third.sample());
    }

    #[test]
    fn question_name_is_decoded_from_the_wire() {
        // Header with QDCOUNT 1, then www.example. A IN.
        let mut q = vec![0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x03www\x07example\x00\x00\x01\x00\x01");
        assert_eq!(question_name(&q).unwrap().to_ascii(), "www.example.");
        assert!(question_name(&q[..12]).is_none());
        assert!(question_name(&q[..5]).is_none());
        // No question: nothing to name.
        q[5] = 0;
        assert!(question_name(&q).is_none());
    }
}
