//! The UDP fast path: answers the common queries straight from bytes, with no parsing into a
//! `Message` and no allocation once warm.
//!
//! A query qualifies when it is a plain QUERY with one IN question, no records besides at most
//! one OPT (version 0, no option but a well-formed COOKIE), and no trailing bytes. A COOKIE is
//! checked and answered in place (RFC 7873, [`super::cookie`]). Pool A/AAAA answers are written from
//! the snapshot's address lists (one counter increment picks the rotation); everything else is
//! answered from a per-worker cache of templates made by the full resolver the first time a
//! (name, type) is asked, and dropped when the zones change. Anything unusual — and any answer
//! that might not fit 512 octets — goes to [`super::handler::handle`], and the differential test
//! (tests/it/fast.rs) checks both paths give the same answers.

use std::net::IpAddr;
use std::ops::Range;
use std::sync::{Arc, Weak};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use rustc_hash::FxHashMap;

use super::Outcome;
use super::cookie::{self, Client, CookieCheck, KeyCache};
use super::resolve::resolve;
use super::rrl::{Answered, RateKey, rate_key};
use crate::snapshot::Snapshot;
use crate::zones::ZoneSet;

/// Every fast answer fits plain DNS over UDP, whatever the client's EDNS size.
const LIMIT: usize = 512;
/// The OPT record we append: root, type, class=payload, TTL=ext-rcode/version/flags, rdlen.
const OPT_LEN: usize = 11;
/// Most cached templates per worker; the cache is cleared when full (a flood of random names
/// must not grow memory without bound).
const CACHE_MAX: usize = 16 * 1024;

/// A pre-encoded response minus header and question.
#[derive(Debug)]
struct Template {
    /// AA and rcode for the header.
    aa: bool,
    rcode: u8,
    counts: [u16; 3],
    /// Answer, authority and additional sections, encoded as if the question were at offset
    /// 12; pointers into the question stay valid when the client's own question is copied in.
    body: Box<[u8]>,
    /// What response rate limiting counts the answer as.
    rate: RateKey,
}

/// Per-worker state: the template cache and the zones it was built from.
pub struct FastPath {
    /// Only compared, never read through: a weak reference, so this worker never holds old
    /// zones alive, and never frees them (a million records take a while to free; the
    /// reclaimer does it off the query path). It still keeps their allocation from being
    /// reused, so a new zone set can never be mistaken for this one.
    zones: Weak<ZoneSet>,
    cache: FxHashMap<Box<[u8]>, Option<Template>>,
    key: Vec<u8>,
    /// Server cookie keys derived so far (a rotating secret's key changes once a period).
    cookie_keys: KeyCache,
}

impl Default for FastPath {
    fn default() -> Self {
        FastPath::new()
    }
}

/// The question as found in the query.
struct Parsed {
    /// End of the question section (start of the answer in our response).
    qend: usize,
    /// QTYPE as sent; the lowercased QNAME and QTYPE are in `FastPath::key`.
    qtype: u16,
    edns: Option<(u16, bool)>,
    /// The COOKIE option's data in the query, when cookies are on.
    cookie: Option<Range<usize>>,
}

/// The OPT of our response: the DO bit to copy and the COOKIE option to send.
struct Opt {
    dnssec_ok: bool,
    cookie: Option<[u8; cookie::REPLY_LEN]>,
}

impl Opt {
    fn len(&self) -> usize {
        let cookie = if self.cookie.is_some() {
            cookie::REPLY_LEN
        } else {
            0
        };
        OPT_LEN + cookie
    }
}

impl FastPath {
    /// An empty template cache; it fills as queries come and empties when the zones change.
    pub fn new() -> FastPath {
        FastPath {
            zones: Weak::new(),
            cache: FxHashMap::default(),
            key: Vec::with_capacity(260),
            cookie_keys: KeyCache::default(),
        }
    }

    /// Answers `query` from `client` into `out` if it qualifies; `None` means: use the full
    /// handler ([`super::handle_from`]), which gives the same answer to every query this does.
    pub fn answer(
        &mut self,
        snap: &Snapshot,
        query: &[u8],
        client: &Client,
        out: &mut Vec<u8>,
    ) -> Option<Answered> {
        let p = self.parse(snap, query)?;
        let qtype = RecordType::from(p.qtype);
        let (opt, check) = self.opt(snap, &p, query, client);
        let answered = |outcome: Outcome, rate: RateKey| Answered {
            outcome,
            rate,
            cookie: check,
        };
        // Pool addresses: straight from the snapshot.
        if matches!(qtype, RecordType::A | RecordType::AAAA)
            && let Some(&i) = snap.pool_keys.get(&self.key[..self.key.len() - 2])
        {
            let outcome = pool_answer(snap, i, qtype, query, &p, opt.as_ref(), out)?;
            let rate = RateKey::answer(&self.key[..self.key.len() - 2], p.qtype);
            return Some(answered(outcome, rate));
        }
        // Everything else: a cached template, made on first use by the full resolver.
        if !std::ptr::eq(self.zones.as_ptr(), Arc::as_ptr(&snap.zones)) {
            self.cache.clear();
            self.zones = Arc::downgrade(&snap.zones);
        }
        // One lookup on a hit; a miss resolves and stores the template (negative too).
        if let Some(cached) = self.cache.get(&self.key[..]) {
            let t = cached.as_ref()?;
            let outcome = emit_template(snap, t, qtype, query, &p, opt.as_ref(), out)?;
            return Some(answered(outcome, t.rate));
        }
        if self.cache.len() >= CACHE_MAX {
            self.cache.clear();
        }
        let template = make_template(snap, &self.key, qtype);
        let cached = self
            .cache
            .entry(self.key.clone().into_boxed_slice())
            .or_insert(template);
        let t = cached.as_ref()?;
        let outcome = emit_template(snap, t, qtype, query, &p, opt.as_ref(), out)?;
        Some(answered(outcome, t.rate))
    }

    /// The OPT of the response, if the query had one, and what the query's cookie showed: the
    /// cookie is checked, and the reply's made, before anything is written.
    fn opt(
        &mut self,
        snap: &Snapshot,
        p: &Parsed,
        query: &[u8],
        client: &Client,
    ) -> (Option<Opt>, CookieCheck) {
        let Some((_, dnssec_ok)) = p.edns else {
            return (None, CookieCheck::Absent);
        };
        let (cookie, check) = match (p.cookie.clone(), &snap.answering.cookies) {
            (Some(data), Some(keys)) => {
                let mut reply = [0u8; cookie::REPLY_LEN];
                let keys_cache = &mut self.cookie_keys;
                let check = cookie::check(keys, keys_cache, &query[data], client, &mut reply);
                (Some(reply), check)
            }
            _ => (None, CookieCheck::Absent),
        };
        (Some(Opt { dnssec_ok, cookie }), check)
    }

    /// Checks the query qualifies and fills `self.key` with the lowercased QNAME and QTYPE.
    fn parse(&mut self, snap: &Snapshot, q: &[u8]) -> Option<Parsed> {
        // Header: QR=0, opcode 0; QDCOUNT 1, ANCOUNT 0, NSCOUNT 0, ARCOUNT 0 or 1.
        if q.len() < 17
            || q[2] & 0xf8 != 0
            || q[4..10] != [0, 1, 0, 0, 0, 0]
            || q[10] != 0
            || q[11] > 1
        {
            return None;
        }
        self.key.clear();
        let mut pos = 12;
        loop {
            let len = *q.get(pos)? as usize;
            if len == 0 {
                self.key.push(0);
                pos += 1;
                break;
            }
            // Compression in a question is legal but odd; let the full parser handle it.
            if len > 63 || pos + 1 + len > q.len() || self.key.len() + len + 2 > 255 {
                return None;
            }
            self.key.push(len as u8);
            self.key
                .extend(q[pos + 1..pos + 1 + len].iter().map(u8::to_ascii_lowercase));
            pos += 1 + len;
        }
        let qtype = u16::from_be_bytes([*q.get(pos)?, *q.get(pos + 1)?]);
        let qclass = u16::from_be_bytes([*q.get(pos + 2)?, *q.get(pos + 3)?]);
        let qend = pos + 4;
        // IN only; meta types (OPT, AXFR, IXFR, ANY, ...) take the full path.
        if qclass != 1 || qtype == 41 || qtype >= 128 || qtype == 0 {
            return None;
        }
        self.key.extend_from_slice(&qtype.to_be_bytes());
        let (edns, cookie, end) = if q[11] == 1 {
            // OPT: root owner, type 41, class = payload, ext-rcode 0, version 0, and no option
            // but one COOKIE (code 10) of a well-formed length (RFC 7873 §4).
            let o = q.get(qend..qend + OPT_LEN)?;
            if o[0] != 0 || o[1..3] != [0, 41] || o[5] != 0 || o[6] != 0 {
                return None;
            }
            let rdlen = usize::from(u16::from_be_bytes([o[9], o[10]]));
            let cookie = match q.get(qend + OPT_LEN..qend + OPT_LEN + rdlen)? {
                [] => None,
                [0, 10, hi, lo, data @ ..]
                    if usize::from(u16::from_be_bytes([*hi, *lo])) == data.len()
                        && cookie::well_formed(data.len()) =>
                {
                    // With cookies off the option is ignored, as the full handler ignores it.
                    snap.answering
                        .cookies
                        .is_some()
                        .then(|| qend + OPT_LEN + 4..qend + OPT_LEN + rdlen)
                }
                _ => return None,
            };
            let edns = (u16::from_be_bytes([o[3], o[4]]), o[7] & 0x80 != 0);
            (Some(edns), cookie, qend + OPT_LEN + rdlen)
        } else {
            (None, None, qend)
        };
        if end != q.len() {
            return None;
        }
        Some(Parsed {
            qend,
            qtype,
            edns,
            cookie,
        })
    }
}

/// Writes a cached answer: header, the client's own question, the template's sections, OPT.
fn emit_template(
    snap: &Snapshot,
    t: &Template,
    qtype: RecordType,
    query: &[u8],
    p: &Parsed,
    opt: Option<&Opt>,
    out: &mut Vec<u8>,
) -> Option<Outcome> {
    // A cookie makes the OPT longer: over 512 octets, the full handler decides.
    if p.qend + t.body.len() + opt.map_or(0, Opt::len) > LIMIT {
        return None;
    }
    out.clear();
    header(out, query, t.aa, t.rcode, t.counts, opt.is_some());
    out.extend_from_slice(&query[12..p.qend]);
    out.extend_from_slice(&t.body);
    write_opt(out, snap, opt);
    Some(Outcome {
        rcode: ResponseCode::from_low(t.rcode),
        qtype: Some(qtype),
        truncated: false,
    })
}

/// Writes the response header: ID copied, QR, AA as given, RD and CD copied, RA clear.
fn header(out: &mut Vec<u8>, q: &[u8], aa: bool, rcode: u8, counts: [u16; 3], edns: bool) {
    out.extend_from_slice(&q[..2]);
    out.push(0x80 | if aa { 0x04 } else { 0 } | (q[2] & 0x01));
    out.push((q[3] & 0x10) | (rcode & 0x0f));
    out.extend_from_slice(&[0, 1]);
    out.extend_from_slice(&counts[0].to_be_bytes());
    out.extend_from_slice(&counts[1].to_be_bytes());
    out.extend_from_slice(&(counts[2] + u16::from(edns)).to_be_bytes());
}

/// Appends our OPT if the query had one (RFC 6891 §6.1.1), DO copied (RFC 3225), with the
/// COOKIE option of the reply (RFC 7873 §5.2).
fn write_opt(out: &mut Vec<u8>, snap: &Snapshot, opt: Option<&Opt>) {
    if let Some(opt) = opt {
        out.extend_from_slice(&[0, 0, 41]);
        out.extend_from_slice(&snap.answering.edns_udp_size.to_be_bytes());
        let rdlen = (opt.len() - OPT_LEN) as u16;
        out.extend_from_slice(&[0, 0, if opt.dnssec_ok { 0x80 } else { 0 }, 0]);
        out.extend_from_slice(&rdlen.to_be_bytes());
        if let Some(cookie) = &opt.cookie {
            out.extend_from_slice(cookie);
        }
    }
}

/// A pool's A or AAAA answer, written record by record: owner is a pointer to the question.
fn pool_answer(
    snap: &Snapshot,
    pool: usize,
    qtype: RecordType,
    q: &[u8],
    p: &Parsed,
    opt: Option<&Opt>,
    out: &mut Vec<u8>,
) -> Option<Outcome> {
    let pool = &snap.pools[pool];
    let family = pool.family(qtype);
    let n = family.len();
    let rr_len = if qtype == RecordType::A { 16 } else { 28 };
    let size = p.qend + n * rr_len + opt.map_or(0, Opt::len);
    // Empty (NODATA), SERVFAIL and oversized answers take the full path.
    if n == 0 || family.servfail || size > LIMIT {
        return None;
    }
    out.clear();
    header(out, q, true, 0, [n as u16, 0, 0], opt.is_some());
    out.extend_from_slice(&q[12..p.qend]);
    let ttl = family.ttl.to_be_bytes();
    for ip in family.addresses(pool.next_rotation()) {
        out.extend_from_slice(&[0xc0, 0x0c]);
        out.extend_from_slice(&p.qtype.to_be_bytes());
        out.extend_from_slice(&[0, 1]);
        out.extend_from_slice(&ttl);
        match ip {
            IpAddr::V4(a) => {
                out.extend_from_slice(&[0, 4]);
                out.extend_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                out.extend_from_slice(&[0, 16]);
                out.extend_from_slice(&a.octets());
            }
        }
    }
    write_opt(out, snap, opt);
    Some(Outcome {
        rcode: ResponseCode::NoError,
        qtype: Some(qtype),
        truncated: false,
    })
}

/// Resolves (name, type) with the full resolver and encodes the result as a template, or
/// `None` when the answer must not be cached (pool data) or might not fit 512 octets.
fn make_template(snap: &Snapshot, key: &[u8], qtype: RecordType) -> Option<Template> {
    let name = Name::from_labels(labels(&key[..key.len() - 2])).ok()?;
    let answer = resolve(snap, &name, qtype);
    if answer.volatile || answer.rcode.high() != 0 {
        return None;
    }
    let mut m = Message::new(0, MessageType::Response, OpCode::Query);
    m.metadata.authoritative = answer.authoritative;
    m.metadata.response_code = answer.rcode;
    m.queries.push(Query::query(name, qtype));
    m.answers = answer.answers;
    m.authorities = answer.authorities;
    m.additionals = answer.additionals;
    let mut bytes = Vec::with_capacity(512);
    m.emit(&mut BinEncoder::new(&mut bytes)).ok()?;
    if bytes.len() + OPT_LEN > LIMIT {
        return None;
    }
    let qend = 12 + (key.len() - 2) + 4;
    Some(Template {
        rate: rate_key(snap, &bytes),
        aa: answer.authoritative,
        rcode: answer.rcode.low(),
        counts: [
            u16::from_be_bytes([bytes[6], bytes[7]]),
            u16::from_be_bytes([bytes[8], bytes[9]]),
            u16::from_be_bytes([bytes[10], bytes[11]]),
        ],
        body: bytes[qend..].into(),
    })
}

/// The labels of a wire-format name without compression.
fn labels(wire: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < wire.len() && wire[pos] != 0 {
        let len = wire[pos] as usize;
        out.push(&wire[pos + 1..pos + 1 + len]);
        pos += 1 + len;
    }
    out
}
