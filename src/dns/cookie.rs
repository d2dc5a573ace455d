//! DNS cookies (RFC 7873): the server side, with server cookies built as RFC 9018 §4 builds
//! them, so that servers of any make sharing a secret accept each other's.
//!
//! A query's COOKIE option is checked and the reply's option written into a fixed buffer, with
//! no allocation: the fast path answers queries that carry one (dig and BIND-based resolvers
//! send one with every query). The full handler gets the same option through
//! [`answer_udp`], which also answers the RFC 7873 §5.4 cases (a query with no question) and
//! FORMERR for a malformed option (§5.2.2).

use std::hash::Hasher;
use std::net::IpAddr;
use std::sync::OnceLock;

use hickory_proto::op::ResponseCode;
use siphasher::sip::SipHasher24;

use super::handler::Outcome;
use super::rrl::{Answered, RateKey, rate_key};
use super::wire::{self, HEADER, OptAt};
use crate::domain::CookieKeys;
use crate::snapshot::Snapshot;

/// The COOKIE option code (RFC 7873 §4).
pub(crate) const CODE: u16 = 10;
/// The option lbns sends: code, length, the client cookie and a 16-octet server cookie.
pub(crate) const REPLY_LEN: usize = 4 + 8 + 16;
/// Server cookie version 1 (RFC 9018 §4.1).
const VERSION: u8 = 1;
/// A server cookie is good for an hour (RFC 9018 §4.3)...
const MAX_AGE: i32 = 3600;
/// ...may come from a clock up to 5 minutes ahead...
const MAX_AHEAD: i32 = 300;
/// ...and is made anew once it is half an hour old; a younger one is sent back as it came.
const RENEW_AGE: i32 = 1800;

/// Who sent a query and when: what a server cookie is bound to besides the client cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    /// The query's source address.
    pub ip: IpAddr,
    /// Seconds since the Unix epoch: the timestamp of server cookies made now.
    pub now: u32,
}

impl Client {
    /// `ip`, now (by the coarse real-time clock: a cookie's timestamp counts whole seconds).
    pub fn now(ip: IpAddr) -> Client {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid clock id and a timespec that lives for the call.
        unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &raw mut ts) };
        Client {
            ip,
            // RFC 9018 §4.3: the timestamp is a serial number (RFC 1982): it wraps in 2106.
            now: ts.tv_sec as u32,
        }
    }
}

/// What a query's COOKIE option showed (RFC 7873 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CookieCheck {
    /// No COOKIE option, or cookies are off.
    #[default]
    Absent,
    /// A client cookie only (§5.2.3): a first contact.
    ClientOnly,
    /// A server cookie lbns did not make, for another address, or too old (§5.2.4).
    Invalid,
    /// A server cookie lbns made for this client and address within the hour (§5.2.5): the
    /// address is not spoofed, so response rate limiting lets the answer through.
    Valid,
}

impl CookieCheck {
    /// The client sent a cookie but no valid server cookie: BADCOOKIE tells it the right one.
    pub(crate) fn wants_server_cookie(self) -> bool {
        matches!(self, CookieCheck::ClientOnly | CookieCheck::Invalid)
    }
}

/// Whether COOKIE option data of this length is well formed (RFC 7873 §4): a client cookie of
/// 8 octets, optionally followed by a server cookie of 8 to 32.
pub(crate) fn well_formed(len: usize) -> bool {
    len == 8 || (16..=40).contains(&len)
}

/// The secret this process makes cookies with when no `secret_file` is given: random, never
/// written anywhere, the root of every rotating key.
fn process_secret() -> &'static [u8; 16] {
    static SECRET: OnceLock<[u8; 16]> = OnceLock::new();
    SECRET.get_or_init(rand::random)
}

/// The key of rotation period `period` of the process secret.
fn derive(period: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    for (half, out) in key.chunks_exact_mut(8).enumerate() {
        let mut h = SipHasher24::new_with_key(process_secret());
        h.write(b"lbns server cookie key");
        h.write(&period.to_le_bytes());
        h.write_u8(half as u8);
        out.copy_from_slice(&h.finish().to_le_bytes());
    }
    key
}

/// The rotating keys last derived, so that a worker derives each one once per period.
#[derive(Debug)]
pub(crate) struct KeyCache {
    /// (period, key), the most recent first; `u64::MAX` is no period.
    keys: [(u64, [u8; 16]); 2],
}

impl Default for KeyCache {
    fn default() -> KeyCache {
        KeyCache {
            keys: [(u64::MAX, [0; 16]); 2],
        }
    }
}

impl KeyCache {
    fn key(&mut self, period: u64) -> [u8; 16] {
        if self.keys[0].0 == period {
            return self.keys[0].1;
        }
        if self.keys[1].0 == period {
            self.keys.swap(0, 1);
            return self.keys[0].1;
        }
        self.keys[1] = self.keys[0];
        self.keys[0] = (period, derive(period));
        self.keys[0].1
    }
}

/// The hash of a server cookie (RFC 9018 §4.4): SipHash-2-4 keyed with the secret over the
/// client cookie, version, reserved octets, timestamp and client address.
fn hash(key: &[u8; 16], client: &[u8], head: &[u8], ip: IpAddr) -> [u8; 8] {
    let mut h = SipHasher24::new_with_key(key);
    h.write(client);
    h.write(head);
    match ip {
        IpAddr::V4(a) => h.write(&a.octets()),
        IpAddr::V6(a) => h.write(&a.octets()),
    }
    h.finish().to_le_bytes()
}

/// Checks the COOKIE option `data` of a query (well formed: see [`well_formed`]) from
/// `client`, and writes the option of the reply: code, length, the client cookie and a server
/// cookie — the one received if it is valid and under half an hour old, else a new one.
pub(crate) fn check(
    keys: &CookieKeys,
    cache: &mut KeyCache,
    data: &[u8],
    client: &Client,
    reply: &mut [u8; REPLY_LEN],
) -> CookieCheck {
    let (client_cookie, server) = data.split_at(8);
    reply[..4].copy_from_slice(&[0, CODE as u8, 0, (REPLY_LEN - 4) as u8]);
    reply[4..12].copy_from_slice(client_cookie);
    let verdict = if server.is_empty() {
        CookieCheck::ClientOnly
    } else if server.len() == 16 && server[0] == VERSION {
        let stamp = u32::from_be_bytes([server[4], server[5], server[6], server[7]]);
        // Serial-number arithmetic (RFC 1982): the age is signed and survives the wrap.
        let age = client.now.wrapping_sub(stamp) as i32;
        let valid = (-MAX_AHEAD..=MAX_AGE).contains(&age)
            && verifying_keys(keys, cache, stamp)
                .any(|k| hash(&k, client_cookie, &server[..8], client.ip) == server[8..]);
        if valid && age <= RENEW_AGE {
            reply[12..].copy_from_slice(server);
            return CookieCheck::Valid;
        }
        if valid {
            CookieCheck::Valid
        } else {
            CookieCheck::Invalid
        }
    } else {
        CookieCheck::Invalid
    };
    // A new server cookie: version 1, reserved zero, now, the hash (RFC 9018 §4.2).
    let mut head = [VERSION, 0, 0, 0, 0, 0, 0, 0];
    head[4..].copy_from_slice(&client.now.to_be_bytes());
    let key = making_key(keys, cache, client.now);
    reply[12..20].copy_from_slice(&head);
    reply[20..].copy_from_slice(&hash(&key, client_cookie, &head, client.ip));
    verdict
}

/// The key new cookies are made with at `now`.
fn making_key(keys: &CookieKeys, cache: &mut KeyCache, now: u32) -> [u8; 16] {
    match keys {
        CookieKeys::Rotating { every_secs } => cache.key(u64::from(now) / every_secs),
        CookieKeys::Shared(secrets) => secrets.first().map_or([0; 16], |s| s.0),
    }
}

/// The keys a cookie stamped `stamp` may have been made with: with a rotating secret, the key
/// of that stamp's period (so the previous period's key is accepted as long as its cookies
/// are good); with a shared file, every secret in it.
fn verifying_keys<'a>(
    keys: &'a CookieKeys,
    cache: &'a mut KeyCache,
    stamp: u32,
) -> impl Iterator<Item = [u8; 16]> + 'a {
    let (rotating, shared) = match keys {
        CookieKeys::Rotating { every_secs } => {
            (Some(cache.key(u64::from(stamp) / every_secs)), &[][..])
        }
        CookieKeys::Shared(secrets) => (None, &secrets[..]),
    };
    rotating.into_iter().chain(shared.iter().map(|s| s.0))
}

/// The full handler's side of cookies, over UDP: `answer(limit, out)` runs the handler with
/// the response size limit lowered to leave room for the COOKIE option, whose reply this adds
/// to the response; a query with no question but a cookie gets NOERROR or BADCOOKIE (RFC 7873
/// §5.4), a malformed COOKIE option FORMERR (§5.2.2).
pub(crate) fn answer_udp(
    snap: &Snapshot,
    query: &[u8],
    client: &Client,
    out: &mut Vec<u8>,
    answer: impl FnOnce(Option<usize>, &mut Vec<u8>) -> Option<Outcome>,
) -> Option<Answered> {
    // Responses and runts are dropped by the handler, cookie or not (RFC 1035 §7.3).
    let is_query = query.len() >= HEADER && query[2] & 0x80 == 0;
    let found = snap
        .answering
        .cookies
        .as_ref()
        .filter(|_| is_query)
        .and_then(|keys| Some((keys, in_query(query)?)));
    let Some((keys, (opt, found))) = found else {
        let outcome = answer(None, out)?;
        return Some(Answered {
            rate: rate_key(snap, out),
            outcome,
            cookie: CookieCheck::Absent,
        });
    };
    let data = match found {
        Ok(data) => data,
        Err(()) => return Some(formerr(snap, query, &opt, out)),
    };
    let room = usize::from(opt.payload(query).clamp(512, snap.answering.edns_udp_size));
    let mut outcome = answer(Some(room - REPLY_LEN), out)?;
    let mut reply = [0u8; REPLY_LEN];
    let verdict = check(
        keys,
        &mut KeyCache::default(),
        &query[data],
        client,
        &mut reply,
    );
    if let Some(out_opt) = wire::find_opt(out) {
        // §5.4: a QUERY with no question, only the cookie, learns (or confirms) the server
        // cookie: NOERROR, or BADCOOKIE when the server cookie sent is not valid. The handler
        // has said FORMERR (no question); nothing else is wrong with it if the rcode is that.
        if query[4..8] == [0, 0, 0, 0]
            && query[2] & 0x78 == 0
            && outcome.rcode == ResponseCode::FormErr
        {
            let rcode = if verdict == CookieCheck::Invalid {
                ResponseCode::BADCOOKIE
            } else {
                ResponseCode::NoError
            };
            wire::set_rcode(out, u16::from(rcode), Some(&out_opt));
            outcome.rcode = rcode;
        }
        wire::append_option(out, &out_opt, &reply);
    }
    Some(Answered {
        rate: rate_key(snap, out),
        outcome,
        cookie: verdict,
    })
}

/// The query's OPT and its first COOKIE option's data (`Err` if malformed), if it has both.
fn in_query(query: &[u8]) -> Option<(OptAt, Result<std::ops::Range<usize>, ()>)> {
    let opt = wire::find_opt(query)?;
    let found = match wire::find_option(&query[opt.rdata.clone()], CODE)? {
        Ok(r) if well_formed(r.len()) => Ok(opt.rdata.start + r.start..opt.rdata.start + r.end),
        _ => Err(()),
    };
    Some((opt, found))
}

/// FORMERR for a malformed COOKIE option (RFC 7873 §5.2.2): header (ID, opcode and RD
/// copied), the question as sent, and our OPT with the DO bit copied.
fn formerr(snap: &Snapshot, query: &[u8], opt: &OptAt, out: &mut Vec<u8>) -> Answered {
    // The question goes back only if it parses where it stands: a compression pointer in a
    // malformed query may point anywhere, and a copy of it would not parse either.
    let qend = wire::question_end(query)
        .filter(|&end| question_parses(query, end))
        .unwrap_or(HEADER);
    let qdcount = if qend > HEADER { &query[4..6] } else { &[0, 0] };
    out.clear();
    out.extend_from_slice(&query[..2]);
    out.push(0x80 | (query[2] & 0x79));
    out.push(ResponseCode::FormErr.low());
    out.extend_from_slice(qdcount);
    out.extend_from_slice(&[0, 0, 0, 0, 0, 1]);
    out.extend_from_slice(&query[HEADER..qend]);
    let dnssec_ok = query[opt.record.start + 7] & 0x80;
    out.extend_from_slice(&[0, 0, 41]);
    out.extend_from_slice(&snap.answering.edns_udp_size.to_be_bytes());
    out.extend_from_slice(&[0, 0, dnssec_ok, 0, 0, 0]);
    let qtype = (qend > HEADER)
        .then(|| query.get(qend - 4..qend - 2))
        .flatten()
        .map(|t| u16::from_be_bytes([t[0], t[1]]).into());
    Answered {
        outcome: Outcome {
            rcode: ResponseCode::FormErr,
            qtype,
            truncated: false,
        },
        rate: RateKey::error(),
        cookie: CookieCheck::Absent,
    }
}

/// Whether the question section of `query`, which ends at `end`, parses as it stands: every
/// name well formed, pointers only back to a prior occurrence (RFC 1035 §4.1.4).
fn question_parses(query: &[u8], end: usize) -> bool {
    use hickory_proto::op::Query;
    use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
    let count = u16::from_be_bytes([query[4], query[5]]);
    let mut decoder = BinDecoder::new(&query[..end]);
    decoder.read_slice(HEADER).is_ok()
        && (0..count).all(|_| Query::read(&mut decoder).is_ok())
        && decoder.index() == end
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::{Edns, Message};
    use hickory_proto::rr::RecordType;
    use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};

    use super::*;
    use crate::config::CookieSecret;
    use crate::dns::handle_from;
    use crate::dns::testing::{query, snapshot, wire};

    fn hex<const N: usize>(s: &str) -> [u8; N] {
        let mut out = [0u8; N];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    fn shared(secrets: &[&str]) -> CookieKeys {
        CookieKeys::Shared(secrets.iter().map(|s| CookieSecret(hex(s))).collect())
    }

    fn run(keys: &CookieKeys, data: &[u8], ip: &str, now: u32) -> (CookieCheck, [u8; 16]) {
        let mut reply = [0u8; REPLY_LEN];
        let client = Client {
            ip: ip.parse().unwrap(),
            now,
        };
        let v = check(keys, &mut KeyCache::default(), data, &client, &mut reply);
        assert_eq!(reply[..12], [&[0, 10, 0, 24][..], &data[..8]].concat()[..]);
        (v, reply[12..].try_into().unwrap())
    }

    /// RFC 9018 Appendix A: the server cookies the RFC's examples show, byte for byte.
    #[test]
    fn rfc_9018_appendix_a() {
        let a = shared(&["e5e973e5a6b2a43f48e7dc849e37bfcf"]);
        let v4 = "198.51.100.100";
        // A.1: a first query, client cookie only.
        let client: [u8; 8] = hex("2464c4abcf10c957");
        let (v, server) = run(&a, &client, v4, 1559731985);
        assert_eq!(v, CookieCheck::ClientOnly);
        assert_eq!(server, hex::<16>("010000005cf79f111f8130c3eee29480"));
        // A.2: 40 minutes later the cookie is valid but over half an hour old: a new one.
        let data = [&client[..], &server[..]].concat();
        let (v, renewed) = run(&a, &data, v4, 1559734385);
        assert_eq!(v, CookieCheck::Valid);
        assert_eq!(renewed, hex::<16>("010000005cf7a871d4a564a1442aca77"));
        // 10 minutes later it is valid and sent back as it came.
        assert_eq!(
            run(&a, &data, v4, 1559731985 + 600),
            (CookieCheck::Valid, server)
        );
        // Another address, another client cookie, or over an hour: not valid.
        assert_eq!(
            run(&a, &data, "198.51.100.101", 1559731985).0,
            CookieCheck::Invalid
        );
        let mut other = data.clone();
        other[7] ^= 1;
        assert_eq!(run(&a, &other, v4, 1559731985).0, CookieCheck::Invalid);
        assert_eq!(
            run(&a, &data, v4, 1559731985 + 3601).0,
            CookieCheck::Invalid
        );
        assert_eq!(run(&a, &data, v4, 1559731985 - 301).0, CookieCheck::Invalid);
        assert_eq!(run(&a, &data, v4, 1559731985 - 300).0, CookieCheck::Valid);
        // A.3: reserved octets another server set are covered by the hash as received.
        let client3: [u8; 8] = hex("fc93fc62807ddb86");
        let theirs: [u8; 16] = hex("01abcdef5cf78f71a314227b6679ebf5");
        let data3 = [&client3[..], &theirs[..]].concat();
        let (v, server) = run(&a, &data3, "203.0.113.203", 1559727985 + 600);
        assert_eq!((v, server), (CookieCheck::Valid, theirs));
        let (_, server) = run(&a, &client3, "203.0.113.203", 1559734700);
        assert_eq!(server, hex::<16>("010000005cf7a9acf73a7810aca2381e"));
        // A.4: IPv6, during a secret rollover: the new secret makes, the old one still checks.
        let v6 = "2001:db8:220:1:59de:d0f4:8769:82b8";
        let old = "dd3bdf9344b678b185a6f5cb60fca715";
        let new = "445536bcd2513298075a5d379663c962";
        let client4: [u8; 8] = hex("22681ab97d52c298");
        let (_, made) = run(&shared(&[old]), &client4, v6, 1559741817);
        assert_eq!(made, hex::<16>("010000005cf7c57926556bd0934c72f8"));
        let data4 = [&client4[..], &made[..]].concat();
        let (v, server) = run(&shared(&[new, old]), &data4, v6, 1559741961);
        assert_eq!((v, server), (CookieCheck::Valid, made));
        let (_, renewed) = run(&shared(&[new, old]), &client4, v6, 1559741961);
        assert_eq!(renewed, hex::<16>("010000005cf7c609a6bb79d16625507a"));
        assert_eq!(
            run(&shared(&[new]), &data4, v6, 1559741961).0,
            CookieCheck::Invalid
        );
    }

    #[test]
    fn other_server_cookies_are_invalid_and_replaced() {
        let a = shared(&["e5e973e5a6b2a43f48e7dc849e37bfcf"]);
        let client = [1, 2, 3, 4, 5, 6, 7, 8];
        for server in [&[9u8; 8][..], &[1u8; 16][..], &[2u8; 32][..]] {
            let data = [&client[..], server].concat();
            let (v, made) = run(&a, &data, "192.0.2.1", 1_700_000_000);
            assert_eq!(v, CookieCheck::Invalid);
            assert_eq!(made[..8], [1, 0, 0, 0, 0x65, 0x53, 0xf1, 0x00]);
        }
        assert!(well_formed(8) && well_formed(16) && well_formed(40));
        assert!(!well_formed(7) && !well_formed(9) && !well_formed(15) && !well_formed(41));
    }

    #[test]
    fn rotating_keys_accept_the_previous_period_while_the_cookie_is_good() {
        let keys = CookieKeys::Rotating { every_secs: 3600 };
        let client = [8, 7, 6, 5, 4, 3, 2, 1];
        // Made 10 s before the end of a period, checked 20 minutes into the next one.
        let made_at = 3600 * 1000 - 10;
        let (_, server) = run(&keys, &client, "2001:db8::1", made_at);
        let data = [&client[..], &server[..]].concat();
        assert_eq!(
            run(&keys, &data, "2001:db8::1", made_at + 1200).0,
            CookieCheck::Valid
        );
        // The key did change: the same stamp made in the next period would differ.
        assert_ne!(derive(999), derive(1000));
        let mut cache = KeyCache::default();
        assert_eq!(cache.key(5), cache.key(5));
        assert_eq!(cache.key(6), derive(6));
        assert_eq!(cache.key(5), derive(5));
    }

    const ZONE: &str = "$TTL 300\n@ SOA ns1 h 1 3600 600 86400 60\n  NS ns1\nns1 A 192.0.2.1\n";
    const CONFIG: &str = "[[zone]]\norigin = \"example.\"\nfile = \"zone.db\"\n";

    fn with_cookie(mut m: Message, data: &[u8]) -> Message {
        m.edns
            .get_or_insert_with(Edns::new)
            .options_mut()
            .insert(EdnsOption::Unknown(CODE, data.to_vec()));
        m
    }

    fn ask(snap: &Snapshot, m: &Message) -> Option<(Answered, Message)> {
        let client = Client {
            ip: "192.0.2.9".parse().unwrap(),
            now: 1_700_000_000,
        };
        let mut out = Vec::new();
        let a = handle_from(snap, &wire(m), &client, &mut out)?;
        Some((a, Message::from_vec(&out).unwrap()))
    }

    fn reply_cookie(m: &Message) -> Option<Vec<u8>> {
        match m.edns.as_ref()?.option(EdnsCode::Cookie)? {
            EdnsOption::Unknown(CODE, data) => Some(data.clone()),
            _ => None,
        }
    }

    /// Found by fuzzing (fuzz/, target `query`): a malformed option list (a one-octet OPT
    /// RDATA) after two questions, the second compressed with a pointer past the end. FORMERR
    /// echoed the question as sent, pointer and all, and the response did not parse. Now the
    /// question goes back only if it parses: here FORMERR with none.
    #[test]
    fn formerr_never_echoes_a_question_that_does_not_parse() {
        let snap = snapshot(CONFIG, ZONE);
        let crash = b"\x12\x34\x00\x00\x00\x02\x00\x00\x00\x00\x00\x01\x03www\x07cluster\
            \x07example\x00\x00\x01\x00\x01\x04mail\xc0\xf0\xf5\x0f\x00\x01\x00\x00\x29\x04\xd0\
            \x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03\x00";
        let client = Client {
            ip: "192.0.2.9".parse().unwrap(),
            now: 1_700_000_000,
        };
        let mut out = Vec::new();
        let a = handle_from(&snap, crash, &client, &mut out).expect("an answer");
        assert_eq!(a.outcome.rcode, ResponseCode::FormErr);
        let m = Message::from_vec(&out).expect("the response parses");
        assert_eq!((m.queries.len(), a.outcome.qtype), (0, None));
        assert!(m.edns.is_some());
        // A malformed option after a question that parses: the question is echoed.
        let mut q = wire(&query("ns1.example.", RecordType::A));
        q[11] = 1;
        q.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 1, 0]);
        let a = handle_from(&snap, &q, &client, &mut out).expect("an answer");
        let m = Message::from_vec(&out).expect("the response parses");
        assert_eq!(a.outcome.rcode, ResponseCode::FormErr);
        assert_eq!(m.queries[0].name().to_ascii(), "ns1.example.");
    }

    /// The full handler's side: the cookie added to an answer; FORMERR for a malformed option
    /// (§5.2.2); a question-less query learns its cookie or gets BADCOOKIE (§5.4); a response
    /// is never answered; with cookies off, the option is ignored.
    #[test]
    fn the_handler_answers_the_rfc_7873_cases() {
        let snap = snapshot(CONFIG, ZONE);
        let q = query("ns1.example.", RecordType::A);
        let (a, m) = ask(&snap, &with_cookie(q.clone(), &[1; 8])).unwrap();
        assert_eq!(a.cookie, CookieCheck::ClientOnly);
        assert_eq!(m.answers.len(), 1);
        let cookie = reply_cookie(&m).unwrap();
        assert_eq!((cookie.len(), &cookie[..8]), (24, &[1u8; 8][..]));
        let (a, m) = ask(&snap, &with_cookie(q.clone(), &cookie)).unwrap();
        assert_eq!(a.cookie, CookieCheck::Valid);
        assert_eq!(reply_cookie(&m).unwrap(), cookie);

        let (a, m) = ask(&snap, &with_cookie(q.clone(), &[1; 9])).unwrap();
        assert_eq!(a.outcome.rcode, ResponseCode::FormErr);
        assert_eq!((m.queries.len(), m.answers.len()), (1, 0));
        assert!(m.edns.is_some() && reply_cookie(&m).is_none());
        let mut response = with_cookie(q.clone(), &[1; 9]);
        response.metadata.message_type = hickory_proto::op::MessageType::Response;
        assert!(ask(&snap, &response).is_none());

        let mut bare = with_cookie(q.clone(), &[2; 8]);
        bare.queries.clear();
        let (a, m) = ask(&snap, &bare).unwrap();
        assert_eq!(
            (a.outcome.rcode, a.cookie),
            (ResponseCode::NoError, CookieCheck::ClientOnly)
        );
        assert_eq!(reply_cookie(&m).unwrap().len(), 24);
        let mut forged = cookie.clone();
        forged[..8].copy_from_slice(&[2; 8]);
        let mut bare = with_cookie(q.clone(), &forged);
        bare.queries.clear();
        let (a, m) = ask(&snap, &bare).unwrap();
        assert_eq!(a.outcome.rcode, ResponseCode::BADCOOKIE);
        assert_eq!(m.metadata.response_code, ResponseCode::BADCOOKIE);
        assert_ne!(reply_cookie(&m).unwrap(), forged);

        let off = snapshot(&format!("[cookies]\nenabled = false\n{CONFIG}"), ZONE);
        let (a, m) = ask(&off, &with_cookie(q, &[1; 9])).unwrap();
        assert_eq!(
            (a.outcome.rcode, a.cookie),
            (ResponseCode::NoError, CookieCheck::Absent)
        );
        assert!(reply_cookie(&m).is_none());
    }
}
