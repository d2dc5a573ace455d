//! Listeners: UDP worker threads and the TCP accept loop, both feeding the query handler.

pub(crate) mod tcp;
pub(crate) mod udp;
#[cfg(feature = "xdp")]
pub(crate) mod xdp;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::dns::fast::FastPath;
use crate::dns::{
    Answered, Client, CookieCheck, Outcome, RateTable, Transport, Verdict, handle, handle_from,
    monotonic_us, slip,
};
use crate::metrics::{LocalMetrics, Metrics};
use crate::querylog::QueryLog;
use crate::snapshot::Snapshot;

/// A listener that could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A socket could not be created, configured or bound.
    #[error("cannot listen on {proto} {addr}: {source}")]
    Bind {
        /// Which listener: `udp`, `tcp` or `status http`.
        proto: &'static str,
        /// The address from the config.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `[server] xdp` could not be put to work (or this build has no AF_XDP support).
    #[error("cannot answer through AF_XDP on {iface}: {reason}")]
    Xdp {
        /// The interface from `[server] xdp`.
        iface: String,
        /// The step that failed and why.
        reason: String,
    },
}

/// What a UDP worker (socket or AF_XDP) answers each query with: its fast-path cache, the
/// response rate limiter's table (shared by all workers), its metrics tally and the query log.
pub(crate) struct Answerer {
    fast: FastPath,
    limiter: Arc<RateTable>,
    local: LocalMetrics,
    query_log: Arc<QueryLog>,
}

impl Answerer {
    pub(crate) fn new(
        limiter: Arc<RateTable>,
        local: LocalMetrics,
        query_log: Arc<QueryLog>,
    ) -> Answerer {
        Answerer {
            fast: FastPath::new(),
            limiter,
            local,
            query_log,
        }
    }

    /// Answers `query` from `ip` into `out` — the fast path if it can, else the full handler
    /// — applies response rate limiting, counts it, and logs it when sampled (`src` is asked
    /// for only then). `None`: no reply.
    pub(crate) fn answer(
        &mut self,
        snap: &Snapshot,
        query: &[u8],
        ip: Option<IpAddr>,
        out: &mut Vec<u8>,
        src: impl FnOnce() -> Option<SocketAddr>,
    ) -> Option<Outcome> {
        let client = ip.map(Client::now);
        let (answered, was_fast) = match client {
            Some(c) => match self.fast.answer(snap, query, &c, out) {
                Some(a) => (Some(a), true),
                None => (handle_from(snap, query, &c, out), false),
            },
            // Not an IP source (never for UDP): no cookie, no rate limit.
            None => (
                handle(snap, query, Transport::Udp, out).map(|outcome| Answered {
                    outcome,
                    rate: crate::dns::RateKey::error(),
                    cookie: CookieCheck::Absent,
                }),
                false,
            ),
        };
        let outcome = match (answered, ip) {
            (Some(a), Some(ip)) => self.limit(snap, a, ip, out),
            (a, _) => a.map(|a| a.outcome),
        };
        if outcome.is_some() || answered.is_none() {
            self.local.record(outcome.as_ref(), was_fast);
        } else {
            self.local.record_unanswered(was_fast);
        }
        if self.query_log.every() != 0
            && let Some(src) = src()
        {
            self.query_log
                .record(src, Transport::Udp, query, outcome.as_ref());
        }
        outcome
    }

    /// Response rate limiting (`[rrl]`, UDP only): sends `answered` as it is, slipped, or not
    /// at all. A valid server cookie proves the source address is real, so it is never
    /// limited (RFC 7873 §5.2.5); nor is an exempt network.
    fn limit(
        &mut self,
        snap: &Snapshot,
        mut answered: Answered,
        ip: IpAddr,
        out: &mut Vec<u8>,
    ) -> Option<Outcome> {
        let Some(limit) = &snap.answering.rate_limit else {
            return Some(answered.outcome);
        };
        if answered.cookie == CookieCheck::Valid || limit.exempts(ip) {
            return Some(answered.outcome);
        }
        let now = monotonic_us();
        let verdict = self.limiter.check(limit, ip, answered.rate, now);
        if verdict == Verdict::Send {
            return Some(answered.outcome);
        }
        self.limiter.log_limited(limit, ip, answered.rate, now);
        if limit.log_only {
            self.local.record_limited(false, false);
            return Some(answered.outcome);
        }
        if verdict == Verdict::Slip && slip(&mut answered, out) {
            self.local.record_limited(true, false);
            return Some(answered.outcome);
        }
        self.local.record_limited(false, true);
        None
    }

    /// A response already counted went out truncated after all (see
    /// [`LocalMetrics::record_late_truncation`]).
    pub(crate) fn late_truncation(&mut self) {
        self.local.record_late_truncation();
    }

    /// Adds the tally to the shared metrics (once per batch).
    pub(crate) fn flush(&mut self, metrics: &Metrics) {
        self.local.flush(metrics);
    }
}

/// Joins worker threads, waiting at most `grace` in all (blocking: call off the async
/// runtime), so a worker stuck in the kernel cannot turn SIGTERM into a hang.
pub(crate) fn join_within(threads: Vec<JoinHandle<()>>, grace: Duration) {
    let deadline = Instant::now() + grace;
    for t in threads {
        while !t.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if t.is_finished() {
            let _ = t.join();
        } else {
            tracing::warn!(
                thread = t.thread().name(),
                "worker did not stop; leaving it"
            );
        }
    }
}
