//! Query counters shared by every listener: plain relaxed atomics, read by the status page and
//! `/metrics`. Counting costs a few uncontended-cache-line increments per query.

use std::sync::atomic::{AtomicU64, Ordering};

use hickory_proto::rr::RecordType;

use crate::dns::{Outcome, Transport};

/// Query types counted by name; everything else is `other`.
pub(crate) const QTYPES: [RecordType; 12] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::NS,
    RecordType::SOA,
    RecordType::MX,
    RecordType::TXT,
    RecordType::CNAME,
    RecordType::SRV,
    RecordType::PTR,
    RecordType::CAA,
    RecordType::DS,
    RecordType::ANY,
];

/// Slot in the rcode counters: the 12-bit rcode, the last slot collecting anything above.
#[inline]
fn rcode_index(o: &Outcome) -> usize {
    usize::from(u16::from(o.rcode)).min(RCODE_SLOTS - 1)
}

/// Slot in the qtype counters: the position in [`QTYPES`], or the last slot for any other.
#[inline]
fn qtype_index(o: &Outcome) -> usize {
    o.qtype
        .and_then(|t| QTYPES.iter().position(|q| *q == t))
        .unwrap_or(QTYPES.len())
}

/// Number of rcode counters (0..=23 covers every rcode lbns sends, BADVERS included).
const RCODE_SLOTS: usize = 24;

/// Counters since start. One per process; `Arc`-shared.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) udp_queries: AtomicU64,
    pub(crate) tcp_queries: AtomicU64,
    /// Queries dropped without an answer (responses, runts).
    pub(crate) dropped: AtomicU64,
    pub(crate) truncated: AtomicU64,
    /// Indexed by the 12-bit rcode's low 4 bits plus EDNS extension folded in (0..=23).
    pub(crate) rcodes: [AtomicU64; RCODE_SLOTS],
    /// Indexed like [`QTYPES`], then one for any other type.
    pub(crate) qtypes: [AtomicU64; QTYPES.len() + 1],
    /// Answers served by the UDP fast path (the rest went through the full handler).
    pub(crate) fast_path: AtomicU64,
    /// UDP queries taken through AF_XDP (`[server] xdp`) instead of a UDP socket.
    pub(crate) xdp_queries: AtomicU64,
    /// Datagrams the kernel dropped at lbns's AF_XDP sockets (rings full), as last read.
    pub(crate) xdp_dropped: AtomicU64,
    /// UDP responses over the rate limit (`[rrl]`): slipped, dropped, or sent under
    /// `log_only`.
    pub(crate) rrl_limited: AtomicU64,
    /// Limited responses sent empty with TC=1 (or BADCOOKIE).
    pub(crate) rrl_slipped: AtomicU64,
    /// Limited responses not sent.
    pub(crate) rrl_dropped: AtomicU64,
}

impl Metrics {
    /// Counts one handled query.
    #[inline]
    pub(crate) fn record(&self, transport: Transport, outcome: Option<&Outcome>) {
        match transport {
            Transport::Udp => self.udp_queries.fetch_add(1, Ordering::Relaxed),
            Transport::Tcp => self.tcp_queries.fetch_add(1, Ordering::Relaxed),
        };
        let Some(o) = outcome else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        self.rcodes[rcode_index(o)].fetch_add(1, Ordering::Relaxed);
        self.qtypes[qtype_index(o)].fetch_add(1, Ordering::Relaxed);
        if o.truncated {
            self.truncated.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// (rcode name, count) for every rcode seen.
    pub(crate) fn rcode_counts(&self) -> Vec<(String, u64)> {
        self.rcodes
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let n = c.load(Ordering::Relaxed);
                (n > 0).then(|| (rcode_name(i as u16), n))
            })
            .collect()
    }

    /// (qtype name, count) for every type seen.
    pub(crate) fn qtype_counts(&self) -> Vec<(String, u64)> {
        self.qtypes
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let n = c.load(Ordering::Relaxed);
                let name = QTYPES.get(i).map_or("other".to_owned(), |t| t.to_string());
                (n > 0).then_some((name, n))
            })
            .collect()
    }
}

/// The mnemonic of an rcode (RFC 6895 §2.3), as dig prints it.
pub(crate) fn rcode_name(code: u16) -> String {
    let name = match code {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        16 => "BADVERS",
        23 => "BADCOOKIE",
        n => return format!("RCODE{n}"),
    };
    name.to_owned()
}

/// A worker's private tally, added to the shared [`Metrics`] once per receive batch so the hot
/// loop touches no shared cache line per query.
#[derive(Debug, Default)]
pub(crate) struct LocalMetrics {
    queries: u64,
    dropped: u64,
    truncated: u64,
    fast: u64,
    rrl_limited: u64,
    rrl_slipped: u64,
    rrl_dropped: u64,
    rcodes: [u64; RCODE_SLOTS],
    qtypes: [u64; QTYPES.len() + 1],
    /// This worker takes its queries through AF_XDP.
    xdp: bool,
}

impl LocalMetrics {
    /// The tally of an AF_XDP worker: its queries also count in `xdp_queries`.
    #[cfg(feature = "xdp")]
    pub(crate) fn xdp() -> LocalMetrics {
        LocalMetrics {
            xdp: true,
            ..LocalMetrics::default()
        }
    }

    #[inline]
    pub(crate) fn record(&mut self, outcome: Option<&Outcome>, fast: bool) {
        self.queries += 1;
        self.fast += u64::from(fast);
        let Some(o) = outcome else {
            self.dropped += 1;
            return;
        };
        self.rcodes[rcode_index(o)] += 1;
        self.qtypes[qtype_index(o)] += 1;
        self.truncated += u64::from(o.truncated);
    }

    /// A response over the rate limit: `slipped` (sent empty), dropped (not sent, and then
    /// not recorded otherwise), or neither (sent under `log_only`).
    pub(crate) fn record_limited(&mut self, slipped: bool, dropped: bool) {
        self.rrl_limited += 1;
        self.rrl_slipped += u64::from(slipped);
        self.rrl_dropped += u64::from(dropped);
    }

    /// A query whose response rate limiting dropped: counted as a query, not as a response.
    pub(crate) fn record_unanswered(&mut self, fast: bool) {
        self.queries += 1;
        self.fast += u64::from(fast);
    }

    /// A response already recorded went out truncated after all: it did not fit the interface
    /// MTU (see `net::udp`).
    pub(crate) fn record_late_truncation(&mut self) {
        self.truncated += 1;
    }

    /// Adds the tally to `shared` (UDP) and resets it.
    pub(crate) fn flush(&mut self, shared: &Metrics) {
        if self.queries == 0 {
            return;
        }
        let add = |a: &AtomicU64, v: u64| {
            if v > 0 {
                a.fetch_add(v, Ordering::Relaxed);
            }
        };
        add(&shared.udp_queries, self.queries);
        add(&shared.dropped, self.dropped);
        add(&shared.truncated, self.truncated);
        add(&shared.fast_path, self.fast);
        add(&shared.rrl_limited, self.rrl_limited);
        add(&shared.rrl_slipped, self.rrl_slipped);
        add(&shared.rrl_dropped, self.rrl_dropped);
        if self.xdp {
            add(&shared.xdp_queries, self.queries);
        }
        for (a, v) in shared.rcodes.iter().zip(self.rcodes) {
            add(a, v);
        }
        for (a, v) in shared.qtypes.iter().zip(self.qtypes) {
            add(a, v);
        }
        *self = LocalMetrics {
            xdp: self.xdp,
            ..LocalMetrics::default()
        };
    }
}
