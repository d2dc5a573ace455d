//! The general query handler: wire bytes in, wire bytes out, through hickory-proto's `Message`.
//!
//! Every query can be answered here; the UDP fast path (issue 6) answers the common ones without
//! parsing into a `Message` and must agree with this handler byte for byte. The handler never
//! fails: a bad query gets FORMERR, an unsupported one NOTIMP or REFUSED, and a query that is
//! itself a response is dropped (RFC 1035 §7.3 — answering responses invites loops).

use hickory_proto::op::{Edns, Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption, NSIDPayload};
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};

use super::resolve::{Answer, resolve};
use crate::pool::Snapshot;

/// Which transport a query came in on; it decides the size limit of the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// What was sent, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub rcode: ResponseCode,
    pub qtype: Option<RecordType>,
    pub truncated: bool,
}

/// Largest DNS message: the 16-bit length prefix of TCP framing (RFC 1035 §4.2.2).
const TCP_MAX: usize = 65535;
/// Plain DNS over UDP without EDNS (RFC 1035 §2.3.4).
const UDP_PLAIN: usize = 512;

/// Answers `query` into `out` (cleared first). Returns `None` when nothing must be sent.
pub fn handle(
    snap: &Snapshot,
    query: &[u8],
    transport: Transport,
    out: &mut Vec<u8>,
) -> Option<Outcome> {
    answer(snap, query, transport, None, out)
}

/// Answers `query` over UDP with header, question and OPT only, TC=1, so the client retries
/// over TCP (RFC 9715 §3.1): for an answer the link could not carry unfragmented.
pub fn handle_truncated(snap: &Snapshot, query: &[u8], out: &mut Vec<u8>) -> Option<Outcome> {
    answer(snap, query, Transport::Udp, Some(0), out)
}

/// [`handle`], with the size limit forced to `limit` when given.
fn answer(
    snap: &Snapshot,
    query: &[u8],
    transport: Transport,
    limit: Option<usize>,
    out: &mut Vec<u8>,
) -> Option<Outcome> {
    out.clear();
    // Too short for a header, or a response (QR=1): drop without a word.
    if query.len() < 12 || query[2] & 0x80 != 0 {
        return None;
    }
    let request = match Message::from_vec(query) {
        Ok(m) => m,
        Err(_) => return Some(header_only(query, ResponseCode::FormErr, out)),
    };

    let mut response = Message::response(request.id, request.op_code);
    response.metadata.recursion_desired = request.recursion_desired;
    response.metadata.checking_disabled = request.checking_disabled;
    response.queries = request.queries.clone();
    // RFC 6891 §6.1.1: a query with OPT gets OPT back, advertising our own payload size.
    if let Some(req_edns) = &request.edns {
        let mut edns = Edns::new();
        edns.set_max_payload(snap.edns_udp_size);
        edns.set_version(0);
        // RFC 3225 §3: the DO bit is copied into the response.
        edns.set_dnssec_ok(req_edns.flags().dnssec_ok);
        // RFC 5001 §2.1: NSID only when asked for, and only if the operator enabled it.
        if let Some(nsid) = &snap.nsid
            && req_edns.option(EdnsCode::NSID).is_some()
            && let Ok(payload) = NSIDPayload::new(nsid.clone())
        {
            edns.options_mut().insert(EdnsOption::NSID(payload));
        }
        response.edns = Some(edns);
    }
    let limit = limit.unwrap_or(match transport {
        Transport::Tcp => TCP_MAX,
        Transport::Udp => match &request.edns {
            Some(e) => usize::from(e.max_payload().clamp(512, snap.edns_udp_size)),
            None => UDP_PLAIN,
        },
    });
    let qtype = request.queries.first().map(Query::query_type);

    let rcode = if request.op_code != OpCode::Query {
        ResponseCode::NotImp
    } else if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
        // RFC 6891 §6.1.3: we speak version 0 only.
        ResponseCode::BADVERS
    } else if request.queries.len() != 1
        || !request.answers.is_empty()
        || !request.authorities.is_empty()
    {
        ResponseCode::FormErr
    } else {
        let q = &request.queries[0];
        let answer = question(snap, q);
        response.metadata.authoritative = answer.authoritative;
        let rcode = answer.rcode;
        return Some(encode(response, answer, rcode, qtype, limit, out));
    };
    Some(encode(
        response,
        Answer::default(),
        rcode,
        qtype,
        limit,
        out,
    ))
}

/// Routes one question by class and type.
fn question(snap: &Snapshot, q: &Query) -> Answer {
    let qtype = q.query_type();
    match qtype {
        // Meta types that are not questions (RFC 6891 §6.1.1 for OPT).
        RecordType::OPT => Answer {
            rcode: ResponseCode::FormErr,
            ..Answer::default()
        },
        // Zone transfers are not offered.
        RecordType::AXFR | RecordType::IXFR => Answer::refused(),
        _ => match q.query_class() {
            // QCLASS ANY asks about every class; IN is the only one we hold data in.
            DNSClass::IN | DNSClass::ANY => resolve(snap, q.name(), qtype),
            DNSClass::CH => chaos(snap, q),
            _ => Answer::refused(),
        },
    }
}

/// CHAOS-class TXT queries for the server's identity, as BIND, Knot and NSD answer them
/// (RFC 4892): id.server / hostname.bind, and version.bind / version.server if configured.
fn chaos(snap: &Snapshot, q: &Query) -> Answer {
    let name = q.name().to_ascii().to_ascii_lowercase();
    let text = match name.trim_end_matches('.') {
        "id.server" | "hostname.bind" => Some(snap.identity.as_str()),
        "version.bind" | "version.server" => snap.version.as_deref(),
        _ => None,
    };
    let Some(text) = text else {
        return Answer::refused();
    };
    let mut answer = Answer {
        authoritative: true,
        ..Answer::default()
    };
    if matches!(q.query_type(), RecordType::TXT | RecordType::ANY) {
        let mut record = Record::from_rdata(
            q.name().clone(),
            0,
            RData::TXT(TXT::new(vec![text.to_owned()])),
        );
        record.dns_class = DNSClass::CH;
        answer.answers.push(record);
    }
    answer
}

/// Encodes the response, truncating to `limit`: first drop optional additional data; if the
/// answer still does not fit (or glue that must go with a referral would be lost), send the
/// header, question and OPT with TC=1 so the client retries over TCP (RFC 2181 §9, RFC 9471).
fn encode(
    mut response: Message,
    answer: Answer,
    rcode: ResponseCode,
    qtype: Option<RecordType>,
    limit: usize,
    out: &mut Vec<u8>,
) -> Outcome {
    response.metadata.response_code = rcode;
    response.answers = answer.answers;
    response.authorities = answer.authorities;
    response.additionals = answer.additionals;

    emit(&response, out);
    let mut truncated = false;
    if out.len() > limit && !response.additionals.is_empty() && !answer.glue_required {
        response.additionals.clear();
        emit(&response, out);
    }
    if out.len() > limit {
        truncated = true;
        response.answers.clear();
        response.authorities.clear();
        response.additionals.clear();
        response.metadata.truncation = true;
        emit(&response, out);
    }
    Outcome {
        rcode,
        qtype,
        truncated,
    }
}

fn emit(message: &Message, out: &mut Vec<u8>) {
    out.clear();
    let mut encoder = BinEncoder::new(out);
    if message.emit(&mut encoder).is_err() {
        // Only possible for data we built ourselves and never over 64 KiB; fall back to an
        // empty SERVFAIL rather than sending half a message.
        out.clear();
        let mut m = Message::response(message.id, message.op_code);
        m.metadata.response_code = ResponseCode::ServFail;
        m.queries = message.queries.clone();
        let mut encoder = BinEncoder::new(out);
        let _ = m.emit(&mut encoder);
    }
}

/// A bare header echoing the query's ID, opcode and RD, for queries we cannot parse.
fn header_only(query: &[u8], rcode: ResponseCode, out: &mut Vec<u8>) -> Outcome {
    out.clear();
    out.extend_from_slice(&query[..2]);
    // QR=1, opcode and RD kept; AA/TC clear.
    out.push(0x80 | (query[2] & 0x79));
    out.push(rcode.low() & 0x0f);
    out.extend_from_slice(&[0; 8]);
    Outcome {
        rcode,
        qtype: None,
        truncated: false,
    }
}
