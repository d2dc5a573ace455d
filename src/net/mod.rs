//! Listeners: UDP worker threads and the TCP accept loop, both feeding the query handler.

pub(crate) mod tcp;
pub(crate) mod udp;
#[cfg(feature = "xdp")]
pub(crate) mod xdp;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::dns::fast::FastPath;
use crate::dns::{Outcome, Transport, handle};
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

/// What a UDP worker (socket or AF_XDP) answers each query with: its fast-path cache, its
/// metrics tally and the query log.
pub(crate) struct Answerer {
    fast: FastPath,
    local: LocalMetrics,
    query_log: Arc<QueryLog>,
}

impl Answerer {
    pub(crate) fn new(local: LocalMetrics, query_log: Arc<QueryLog>) -> Answerer {
        Answerer {
            fast: FastPath::new(),
            local,
            query_log,
        }
    }

    /// Answers `query` into `out` — the fast path if it can, else the full handler — counts it,
    /// and logs it when sampled (`src` is asked for only then). `None`: no reply.
    pub(crate) fn answer(
        &mut self,
        snap: &Snapshot,
        query: &[u8],
        out: &mut Vec<u8>,
        src: impl FnOnce() -> Option<SocketAddr>,
    ) -> Option<Outcome> {
        let (outcome, was_fast) = match self.fast.answer(snap, query, out) {
            Some(o) => (Some(o), true),
            None => (handle(snap, query, Transport::Udp, out), false),
        };
        self.local.record(outcome.as_ref(), was_fast);
        if self.query_log.every() != 0
            && let Some(src) = src()
        {
            self.query_log
                .record(src, Transport::Udp, query, outcome.as_ref());
        }
        outcome
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
