//! Response rate limiting (RRL) for UDP, as BIND, Knot and NSD have it: an authoritative
//! server must not be a reflector that answers a spoofed source thousands of times a second.
//!
//! Responses are counted per key: the client's prefix (`ipv4_prefix`, `ipv6_prefix`), the
//! response's class and a name. Classes and names follow NSD and BIND: a positive answer
//! counts under its QNAME and QTYPE (an answer made by a wildcard under the wildcard),
//! NXDOMAIN and NODATA under the zone apex (so a flood of random names shares one count), a
//! referral under the delegation point, every error under the root.
//!
//! Each key may have `responses_per_second`, with a burst of one second's worth; responses
//! over it are dropped, and every `slip`th of them is sent instead as header, question and OPT
//! with TC=1, so a real client behind a spoofed flood still gets through over TCP. A key's
//! state is its "theoretical arrival time" (the generic cell rate algorithm): each response
//! pushes it one interval (1 s / rate) later, never beyond now + 1 s + `window`, and a
//! response is sent while it is at most one second ahead of now. Limited responses push it
//! too, so a flood stays limited until it has stopped for up to `window` seconds, as in BIND.
//!
//! The table is allocated once: `table_size` buckets in groups of four sharing a cache line;
//! a key takes a bucket of its group by hash (SipHash with a per-process key, so a flood
//! cannot aim at another client's bucket), or the idlest one. A bucket is two atomics updated
//! with compare-and-swap: no lock and no allocation per query.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use hickory_proto::rr::{LowerName, Name};
use ipnet::IpNet;
use rustc_hash::FxHasher;

use super::cookie::CookieCheck;
use super::handler::Outcome;
use super::resolve::wildcard_source;
use super::wire::{self, HEADER};
use crate::domain::RateLimit;
use crate::snapshot::{Snapshot, wire_key};

/// A UDP answer with what the listener decides on after it: how rate limiting counts it and
/// what the query's DNS cookie showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answered {
    /// What was answered, for logs and metrics.
    pub outcome: Outcome,
    /// The key response rate limiting counts it under (class and name).
    pub(crate) rate: RateKey,
    /// What the query's COOKIE option showed.
    pub cookie: CookieCheck,
}

/// Response classes, each counted on its own (NSD's and BIND's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RateClass {
    /// A non-empty answer.
    Answer,
    NxDomain,
    /// NOERROR with an empty answer, not a referral.
    NoData,
    Referral,
    /// Any other rcode.
    Error,
}

impl fmt::Display for RateClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RateClass::Answer => "answer",
            RateClass::NxDomain => "nxdomain",
            RateClass::NoData => "nodata",
            RateClass::Referral => "referral",
            RateClass::Error => "error",
        })
    }
}

/// What a response counts as: its class and a hash of the name (and, for answers, the type)
/// it counts under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateKey {
    pub(crate) class: RateClass,
    pub(crate) name: u64,
}

impl RateKey {
    /// Every error counts under the root, whatever was asked.
    pub(crate) fn error() -> RateKey {
        RateKey {
            class: RateClass::Error,
            name: name_hash(&[0], None),
        }
    }

    /// A positive answer for `qname` (lowercased wire format) and `qtype`.
    pub(crate) fn answer(qname: &[u8], qtype: u16) -> RateKey {
        RateKey {
            class: RateClass::Answer,
            name: name_hash(qname, Some(qtype)),
        }
    }
}

/// A fixed (unkeyed) hash of a lowercased wire-format name: the table's keyed hash is taken
/// over it with the client prefix, so a name cannot be chosen to land on another's bucket.
fn name_hash(wire: &[u8], qtype: Option<u16>) -> u64 {
    let mut h = FxHasher::default();
    h.write(wire);
    if let Some(t) = qtype {
        h.write_u16(t);
    }
    h.finish()
}

/// How rate limiting counts `response` (one lbns made): see the module docs.
pub(crate) fn rate_key(snap: &Snapshot, response: &[u8]) -> RateKey {
    rate_key_of(snap, response).unwrap_or_else(RateKey::error)
}

fn rate_key_of(snap: &Snapshot, response: &[u8]) -> Option<RateKey> {
    let [qd, an, ns, _] = wire::counts(response)?;
    let ext = wire::find_opt(response).map_or(0, |o| o.ext_rcode(response));
    let rcode = u16::from(response[3] & 0x0f) | u16::from(ext) << 4;
    if qd == 0 || !matches!(rcode, 0 | 3) {
        return None;
    }
    let mut qname = [0u8; 255];
    let qlen = wire::read_name(response, HEADER, &mut qname)?;
    let qend = wire::skip_name(response, HEADER)?;
    let qtype = u16::from_be_bytes([*response.get(qend)?, *response.get(qend + 1)?]);
    if rcode == 0 && an > 0 {
        let name = Name::from_labels(labels(&qname[..qlen])).ok()?;
        return Some(match wildcard_source(snap, &LowerName::new(&name)) {
            Some(star) => RateKey::answer(&wire_key(&Name::from(star)), qtype),
            None => RateKey::answer(&qname[..qlen], qtype),
        });
    }
    // The first authority record: the SOA of a negative answer, the NS of a referral.
    let mut pos = qend + 4;
    for _ in 0..an {
        pos = wire::skip_record(response, pos)?;
    }
    let mut owner = [0u8; 255];
    let (len, rtype) = if ns > 0 {
        let len = wire::read_name(response, pos, &mut owner)?;
        let at = wire::skip_name(response, pos)?;
        (
            len,
            u16::from_be_bytes([*response.get(at)?, *response.get(at + 1)?]),
        )
    } else {
        (1, 0)
    };
    let class = match (rcode, rtype) {
        (3, _) => RateClass::NxDomain,
        (_, 2) => RateClass::Referral,
        _ => RateClass::NoData,
    };
    Some(RateKey {
        class,
        name: name_hash(&owner[..len], None),
    })
}

/// The labels of an uncompressed wire-format name.
fn labels(wire: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        let len = usize::from(*wire.get(pos)?);
        if len == 0 {
            return None;
        }
        let label = wire.get(pos + 1..pos + 1 + len)?;
        pos += 1 + len;
        Some(label)
    })
}

/// What to do with a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Within the rate: send it.
    Send,
    /// Over: send it empty with TC=1 (or BADCOOKIE, to a client that sent a cookie).
    Slip,
    /// Over: send nothing.
    Drop,
}

/// One microsecond is the table's unit of time.
const SECOND: u64 = 1_000_000;
/// Buckets per group: four of 16 bytes fill one cache line.
const GROUP: usize = 4;
/// The state word: the slip count in the top 8 bits, the theoretical arrival time below.
const TIME_BITS: u32 = 56;
const TIME_MASK: u64 = (1 << TIME_BITS) - 1;
/// Compare-and-swap attempts before letting a response through: only a pathological race
/// would use them up, and failing open is the safe side for a DNS server.
const ATTEMPTS: usize = 8;

#[derive(Debug, Default)]
#[repr(align(16))]
struct Bucket {
    /// The key's hash (never 0); 0 is a bucket never used.
    key: AtomicU64,
    state: AtomicU64,
}

/// The counts of every key, shared by all UDP workers for the life of the process.
#[derive(Debug)]
pub(crate) struct RateTable {
    buckets: Box<[Bucket]>,
    hasher: RandomState,
    /// The second (of the monotonic clock) the last "limited" line was logged in, and the
    /// limited responses not logged since.
    logged_at: AtomicU64,
    unlogged: AtomicU64,
}

impl RateTable {
    /// A table of `size` buckets (rounded up to a whole group), all empty.
    pub(crate) fn new(size: usize) -> RateTable {
        let groups = size.div_ceil(GROUP).max(1);
        RateTable {
            buckets: (0..groups * GROUP).map(|_| Bucket::default()).collect(),
            hasher: RandomState::new(),
            logged_at: AtomicU64::new(0),
            unlogged: AtomicU64::new(0),
        }
    }

    /// Counts one response of `key` to `ip` at `now` (microseconds of [`monotonic_us`]) and
    /// says what to do with it.
    pub(crate) fn check(&self, limit: &RateLimit, ip: IpAddr, key: RateKey, now: u64) -> Verdict {
        let hash = self
            .hasher
            .hash_one((prefix(ip, limit), key.class as u8, key.name));
        let id = hash | 1;
        let groups = (self.buckets.len() / GROUP) as u64;
        // Lemire's multiply-shift: the top bits pick the group, with no division.
        let group = (((hash >> 32) * groups) >> 32) as usize * GROUP;
        let group = &self.buckets[group..group + GROUP];
        let interval = (SECOND / u64::from(limit.responses_per_second)).max(1);
        let ceiling = now + SECOND + u64::from(limit.window) * SECOND;
        for _ in 0..ATTEMPTS {
            let (bucket, state) = match group.iter().find(|b| b.key.load(Ordering::Acquire) == id) {
                Some(b) => (b, b.state.load(Ordering::Acquire)),
                None => {
                    // Take the bucket whose key is idlest (earliest arrival time): an empty
                    // one, else the one furthest in the past.
                    let (b, old) = group
                        .iter()
                        .map(|b| (b, b.state.load(Ordering::Acquire)))
                        .min_by_key(|(_, s)| s & TIME_MASK)
                        .expect("a group has buckets");
                    if b.state
                        .compare_exchange(old, 0, Ordering::AcqRel, Ordering::Relaxed)
                        .is_err()
                    {
                        continue;
                    }
                    b.key.store(id, Ordering::Release);
                    (b, 0)
                }
            };
            let slips = state >> TIME_BITS;
            let base = (state & TIME_MASK).max(now);
            let allowed = base + interval <= now + SECOND;
            let (verdict, slips) = match limit.slip {
                _ if allowed => (Verdict::Send, slips),
                0 => (Verdict::Drop, 0),
                n if slips + 1 >= u64::from(n) => (Verdict::Slip, 0),
                _ => (Verdict::Drop, slips + 1),
            };
            let next = (base + interval).min(ceiling) & TIME_MASK;
            if bucket
                .state
                .compare_exchange(
                    state,
                    slips << TIME_BITS | next,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                return verdict;
            }
        }
        Verdict::Send
    }

    /// Logs a limited response, at most one line a second for the whole table, with the number
    /// of limited responses since the last line (a flood must not become a log flood).
    pub(crate) fn log_limited(&self, limit: &RateLimit, ip: IpAddr, key: RateKey, now: u64) {
        let second = now / SECOND + 1;
        let last = self.logged_at.load(Ordering::Relaxed);
        if last == second
            || self
                .logged_at
                .compare_exchange(last, second, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            self.unlogged.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let (bits, prefix) = match ip {
            IpAddr::V4(_) => (32, limit.ipv4_prefix),
            IpAddr::V6(_) => (128, limit.ipv6_prefix),
        };
        let client =
            IpNet::new(ip, prefix.min(bits)).map_or(ip.to_string(), |n| n.trunc().to_string());
        tracing::info!(
            client = %client,
            class = %key.class,
            log_only = limit.log_only,
            also_limited = self.unlogged.swap(0, Ordering::Relaxed),
            "response rate limit exceeded"
        );
    }
}

/// The client's network as the table counts it: family and masked address.
fn prefix(ip: IpAddr, limit: &RateLimit) -> (u8, u128) {
    let mask = |bits: u32, prefix: u8| -> u128 {
        match prefix {
            0 => 0,
            p => u128::MAX << (bits - u32::from(p).min(bits)),
        }
    };
    match ip {
        IpAddr::V4(a) => (4, u128::from(u32::from(a)) & mask(32, limit.ipv4_prefix)),
        IpAddr::V6(a) => (6, u128::from(a) & mask(128, limit.ipv6_prefix)),
    }
}

/// Microseconds of the coarse monotonic clock (a few milliseconds' resolution, a few
/// nanoseconds to read): the rate table's time.
pub(crate) fn monotonic_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a timespec that lives for the call.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &raw mut ts) };
    ts.tv_sec as u64 * SECOND + ts.tv_nsec as u64 / 1000
}

/// Turns `answered`'s response in `out` into a slipped one, in place: header, question and
/// OPT with TC=1 so the client asks again over TCP; or, to a client that sent a cookie but no
/// valid server cookie, BADCOOKIE with the server cookie it should use (as BIND does, RFC 7873
/// §5.2.3). `false` if the response does not parse (nothing is sent then).
pub(crate) fn slip(answered: &mut Answered, out: &mut Vec<u8>) -> bool {
    let Some(opt) = wire::strip(out) else {
        return false;
    };
    match opt {
        Some(opt) if answered.cookie.wants_server_cookie() => {
            let rcode = hickory_proto::op::ResponseCode::BADCOOKIE;
            wire::set_rcode(out, u16::from(rcode), Some(&opt));
            // AA covers data this response no longer has.
            out[2] &= !0x04;
            answered.outcome.rcode = rcode;
        }
        _ => {
            out[2] |= 0x02;
            answered.outcome.truncated = true;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::{Edns, Message, ResponseCode};
    use hickory_proto::rr::RecordType;

    use super::*;
    use crate::dns::testing::{query, snapshot, wire};
    use crate::dns::{Client, handle_from};

    fn limit(rate: u32, slip: u32) -> RateLimit {
        RateLimit {
            responses_per_second: rate,
            slip,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
            window: 15,
            exempt: Vec::new(),
            log_only: false,
        }
    }

    fn tally(verdicts: impl Iterator<Item = Verdict>) -> [usize; 3] {
        let mut n = [0; 3];
        for v in verdicts {
            n[v as usize] += 1;
        }
        n
    }

    const T0: u64 = 1_000 * SECOND;

    #[test]
    fn a_burst_gets_the_rate_then_every_slipth_is_slipped() {
        let table = RateTable::new(64);
        let key = RateKey::answer(b"\x03www\x00", 1);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        // 100 queries within 20 ms: 10 sent, of the 90 over, 45 slipped and 45 dropped.
        let n = tally((0..100).map(|i| table.check(&limit(10, 2), ip, key, T0 + i * 200)));
        assert_eq!(n, [10, 45, 45]);
        // The same /24 shares the count; another /24, another name or class does not.
        let same_net: IpAddr = "192.0.2.200".parse().unwrap();
        assert_eq!(
            table.check(&limit(10, 2), same_net, key, T0 + SECOND / 10),
            Verdict::Drop
        );
        let other_net: IpAddr = "192.0.3.7".parse().unwrap();
        let n = tally((0..10).map(|_| table.check(&limit(10, 2), other_net, key, T0)));
        assert_eq!(n, [10, 0, 0]);
        let other_name = RateKey::answer(b"\x03api\x00", 1);
        assert_eq!(
            table.check(&limit(10, 2), ip, other_name, T0),
            Verdict::Send
        );
        // slip 1 slips every limited response, slip 0 drops them all.
        let table = RateTable::new(64);
        let n = tally((0..20).map(|_| table.check(&limit(10, 1), ip, key, T0)));
        assert_eq!(n, [10, 10, 0]);
        let table = RateTable::new(64);
        let n = tally((0..20).map(|_| table.check(&limit(10, 0), ip, key, T0)));
        assert_eq!(n, [10, 0, 10]);
    }

    #[test]
    fn a_steady_client_under_the_rate_is_never_limited_and_a_flood_is_remembered() {
        let table = RateTable::new(64);
        let key = RateKey::error();
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        // 9 per second for a minute: all sent.
        let n = tally((0..540).map(|i| table.check(&limit(10, 2), ip, key, T0 + i * SECOND / 9)));
        assert_eq!(n, [540, 0, 0]);
        // A flood of 1000 in one second, then quiet: limited until the debt (capped at the
        // window) is paid, and no longer.
        let t = T0 + 61 * SECOND;
        for i in 0..1000 {
            table.check(&limit(10, 2), ip, key, t + i * 1000);
        }
        assert_ne!(
            table.check(&limit(10, 2), ip, key, t + 14 * SECOND),
            Verdict::Send
        );
        assert_eq!(
            table.check(&limit(10, 2), ip, key, t + 17 * SECOND),
            Verdict::Send
        );
        // Another address in the same /56 counts with it.
        let neighbour: IpAddr = "2001:db8:0:ff::2".parse().unwrap();
        assert_eq!(prefix(ip, &limit(1, 0)), prefix(neighbour, &limit(1, 0)));
    }

    #[test]
    fn a_full_group_gives_its_idlest_bucket_to_a_new_key() {
        // One group of four buckets, five keys: the fifth takes the idlest bucket.
        let table = RateTable::new(4);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for i in 0..5u16 {
            let key = RateKey::answer(b"\x01x\x00", i);
            assert_eq!(
                table.check(&limit(1, 0), ip, key, T0 + u64::from(i)),
                Verdict::Send
            );
        }
        assert_eq!(
            table
                .buckets
                .iter()
                .filter(|b| b.key.load(Ordering::Relaxed) != 0)
                .count(),
            4
        );
    }

    const ZONE: &str = "$TTL 300\n@ SOA ns1 h 1 3600 600 86400 60\n  NS ns1\nns1 A 192.0.2.1\n\
        sub NS ns.sub\nns.sub A 192.0.2.2\n*.w A 192.0.2.3\n";
    const CONFIG: &str = "[[zone]]\norigin = \"example.\"\nfile = \"zone.db\"\n";

    fn answer(snap: &Snapshot, name: &str, qtype: RecordType) -> (Answered, Vec<u8>) {
        let mut q = query(name, qtype);
        q.edns = Some(Edns::new());
        let client = Client {
            ip: "192.0.2.9".parse().unwrap(),
            now: 1_700_000_000,
        };
        let mut out = Vec::new();
        let a = handle_from(snap, &wire(&q), &client, &mut out).unwrap();
        (a, out)
    }

    #[test]
    fn responses_are_counted_by_class_and_name_as_nsd_and_bind_count_them() {
        let snap = snapshot(CONFIG, ZONE);
        let key = |name: &str, qtype| answer(&snap, name, qtype).0.rate;
        let host = key("NS1.example.", RecordType::A);
        assert_eq!(host, RateKey::answer(b"\x03ns1\x07example\x00", 1));
        assert_ne!(host, key("ns1.example.", RecordType::NS));
        // Negative answers: one key per zone, whatever the name and type.
        let nx = key("a1.example.", RecordType::A);
        assert_eq!(nx.class, RateClass::NxDomain);
        assert_eq!(nx, key("b2.c3.example.", RecordType::MX));
        let nodata = key("ns1.example.", RecordType::TXT);
        assert_eq!(nodata.class, RateClass::NoData);
        assert_eq!(nodata, key("example.", RecordType::CAA));
        assert_eq!(nodata.name, nx.name);
        // Referrals: per delegation. Wildcard answers: per wildcard.
        let referral = key("a.sub.example.", RecordType::A);
        assert_eq!(referral.class, RateClass::Referral);
        assert_eq!(referral, key("b.c.sub.example.", RecordType::A));
        let wild = key("x.w.example.", RecordType::A);
        assert_eq!(wild, RateKey::answer(b"\x01*\x01w\x07example\x00", 1));
        assert_eq!(wild, key("y.w.example.", RecordType::A));
        // Errors: one key.
        assert_eq!(key("www.example.com.", RecordType::A), RateKey::error());
    }

    #[test]
    fn a_slipped_response_is_its_header_question_and_opt() {
        let snap = snapshot(CONFIG, ZONE);
        let (mut a, mut out) = answer(&snap, "ns1.example.", RecordType::NS);
        assert!(slip(&mut a, &mut out));
        let m = Message::from_vec(&out).unwrap();
        assert!(m.metadata.truncation && m.metadata.authoritative);
        assert!(m.answers.is_empty() && m.additionals.is_empty() && m.edns.is_some());
        assert_eq!(m.queries.len(), 1);
        assert!(a.outcome.truncated);
        // To a client that sent a cookie: BADCOOKIE, not TC.
        let (mut a, mut out) = answer(&snap, "ns1.example.", RecordType::A);
        a.cookie = CookieCheck::ClientOnly;
        assert!(slip(&mut a, &mut out));
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::BADCOOKIE);
        assert!(!m.metadata.truncation && !m.metadata.authoritative && m.answers.is_empty());
        assert_eq!(a.outcome.rcode, ResponseCode::BADCOOKIE);
        assert!(!slip(&mut a, &mut vec![0; 5]));
    }
}
