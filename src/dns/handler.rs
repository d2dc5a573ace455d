//! The general query handler: wire bytes in, wire bytes out, through hickory-proto's `Message`.
//!
//! Every query can be answered here; the UDP fast path answers the common ones without
//! parsing into a `Message` and must agree with this handler byte for byte. The handler never
//! fails: a bad query gets FORMERR, an unsupported one NOTIMP or REFUSED, and a query that is
//! itself a response is dropped (RFC 1035 §7.3 — answering responses invites loops).

use hickory_proto::op::{Edns, Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption, NSIDPayload};
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};

use super::cookie::Client;
use super::resolve::{Answer, resolve};
use super::rrl::Answered;
use crate::snapshot::Snapshot;

/// Which transport a query came in on; it decides the size limit of the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The limit is the client's EDNS payload clamped to [512, `edns_udp_size`] (512 without
    /// EDNS); over it, optional additional data goes first, then the answer is cut (TC=1).
    Udp,
    /// 65,535 octets, the most the two-octet length prefix can frame (RFC 1035 §4.2.2).
    Tcp,
}

/// What was sent, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub(crate) rcode: ResponseCode,
    pub(crate) qtype: Option<RecordType>,
    pub(crate) truncated: bool,
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
    answer(snap, query, transport, None, None, out)
}

/// Answers `query` received over TCP, whose listener closes a connection after `idle` with no
/// complete query: a query carrying edns-tcp-keepalive is told so (RFC 7828 §3.3.2).
pub(crate) fn handle_tcp(
    snap: &Snapshot,
    query: &[u8],
    idle: std::time::Duration,
    out: &mut Vec<u8>,
) -> Option<Outcome> {
    // The option counts in units of 100 ms (RFC 7828 §3.1).
    let units = u16::try_from(idle.as_millis() / 100).unwrap_or(u16::MAX);
    answer(snap, query, Transport::Tcp, None, Some(units), out)
}

/// Answers `query` from `client` over UDP, as the UDP listeners do: with DNS cookies (RFC 7873,
/// see [`super::cookie`]), and with what response rate limiting counts the answer as.
pub fn handle_from(
    snap: &Snapshot,
    query: &[u8],
    client: &Client,
    out: &mut Vec<u8>,
) -> Option<Answered> {
    super::cookie::answer_udp(snap, query, client, out, |limit, out| {
        answer(snap, query, Transport::Udp, limit, None, out)
    })
}

/// Answers `query` over UDP with header, question and OPT only, TC=1, so the client retries
/// over TCP (RFC 9715 §3.1): for an answer the link could not carry unfragmented.
pub(crate) fn handle_truncated(
    snap: &Snapshot,
    query: &[u8],
    out: &mut Vec<u8>,
) -> Option<Outcome> {
    answer(snap, query, Transport::Udp, Some(0), None, out)
}

/// [`handle`], with the size limit forced to `limit` when given, and the TCP idle timeout to
/// advertise (in 100 ms units) when the query came over TCP.
fn answer(
    snap: &Snapshot,
    query: &[u8],
    transport: Transport,
    limit: Option<usize>,
    keepalive: Option<u16>,
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
    let mut keepalive_with_timeout = false;
    if let Some(req_edns) = &request.edns {
        let mut edns = Edns::new();
        edns.set_max_payload(snap.answering.edns_udp_size);
        edns.set_version(0);
        // RFC 3225 §3: the DO bit is copied into the response.
        edns.set_dnssec_ok(req_edns.flags().dnssec_ok);
        // RFC 5001 §2.1: NSID only when asked for, and only if the operator enabled it.
        if let Some(nsid) = &snap.answering.nsid
            && req_edns.option(EdnsCode::NSID).is_some()
            && let Ok(payload) = NSIDPayload::new(nsid.clone())
        {
            edns.options_mut().insert(EdnsOption::NSID(payload));
        }
        // RFC 7828 §3: edns-tcp-keepalive over TCP (over UDP it is ignored). A query asks with
        // the option empty and is told our idle timeout; the TIMEOUT field belongs to
        // responses only, so a query carrying one is malformed (FORMERR, as unbound answers).
        if let Some(units) = keepalive
            && let Some(option) = req_edns.option(EdnsCode::Keepalive)
        {
            if option.is_empty() {
                let code = u16::from(EdnsCode::Keepalive);
                let timeout = units.to_be_bytes().to_vec();
                edns.options_mut()
                    .insert(EdnsOption::Unknown(code, timeout));
            } else {
                keepalive_with_timeout = true;
            }
        }
        response.edns = Some(edns);
    }
    let limit = limit.unwrap_or(match transport {
        Transport::Tcp => TCP_MAX,
        Transport::Udp => match &request.edns {
            Some(e) => usize::from(e.max_payload().clamp(512, snap.answering.edns_udp_size)),
            None => UDP_PLAIN,
        },
    });
    let qtype = request.queries.first().map(Query::query_type);

    let rcode = if request.op_code != OpCode::Query {
        ResponseCode::NotImp
    } else if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
        // RFC 6891 §6.1.3: we speak version 0 only.
        ResponseCode::BADVERS
    } else if request.queries.len() != 1 || !request.answers.is_empty() || keepalive_with_timeout {
        // Records in AUTHORITY are not an error (RFC 1035 §4.1.1 does not forbid them): an
        // IXFR query carries the client's SOA there (RFC 1995 §3) and is refused like AXFR
        // below. They are ignored.
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
        "id.server" | "hostname.bind" => Some(snap.answering.identity.as_str()),
        "version.bind" | "version.server" => snap.answering.version.as_deref(),
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
        // Only the questions are left: many of them (a FORMERR, QDCOUNT > 1) can be over the
        // limit on their own, and a UDP response never is.
        if out.len() > limit && response.queries.len() > 1 {
            response.queries.clear();
            emit(&response, out);
        }
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

#[cfg(test)]
mod tests {
    use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
    use hickory_proto::rr::rdata::SOA;
    use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption, NSIDPayload};
    use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

    use super::{Outcome, Transport, handle_tcp, handle_truncated};
    use crate::dns::testing::{Reply, Snapshot, ask, query, reply, run, snapshot, wire};

    const IDENTITY: &str = "ns-test.example";

    /// The config with `server` added to its `[server]` table.
    fn config(server: &str) -> String {
        format!(
            r#"
[server]
identity = "{IDENTITY}"
edns_udp_size = 1232
{server}

[[zone]]
origin = "cluster.example."
file = "zone.db"

[[pool]]
name = "www.cluster.example."
backends = ["192.0.2.2", "192.0.2.3"]
"#
        )
    }

    /// A small zone plus answers of known sizes: `big` (5 × 100-octet TXT, about 600
    /// octets), `huge` (12 of them, about 1,400), `mx` (10 MX whose targets have A and AAAA:
    /// the answer fits 512 octets, the additional section does not) and the delegation
    /// `bigsub` (10 in-bailiwick servers, glue over 512 octets).
    fn zone() -> String {
        let mut z = String::from(
            "$TTL 300\n@ 3600 SOA ns1 hostmaster 1 3600 600 86400 60\n  NS ns1\n\
             ns1 A 192.0.2.1\nhost A 192.0.2.10\n",
        );
        let text = |i: usize| format!("{i:02}{}", "x".repeat(98));
        for i in 0..5 {
            z.push_str(&format!("big TXT \"{}\"\n", text(i)));
        }
        for i in 0..12 {
            z.push_str(&format!("huge TXT \"{}\"\n", text(i)));
        }
        for i in 0..10 {
            z.push_str(&format!(
                "mx MX 10 m{i}\nm{i} A 192.0.2.{}\nm{i} AAAA 2001:db8::1:{i}\n",
                100 + i
            ));
            z.push_str(&format!(
                "bigsub NS ns{i}.bigsub\nns{i}.bigsub A 192.0.2.{}\nns{i}.bigsub AAAA 2001:db8::2:{i}\n",
                200 + i
            ));
        }
        z
    }

    fn snap() -> std::sync::Arc<Snapshot> {
        snapshot(&config(""), &zone())
    }

    fn edns(payload: u16) -> Edns {
        let mut e = Edns::new();
        e.set_max_payload(payload);
        e
    }

    fn with_edns(mut m: Message, e: Edns) -> Message {
        m.edns = Some(e);
        m
    }

    fn in_class(name: &str, qtype: RecordType, class: DNSClass) -> Message {
        let mut m = query(name, qtype);
        m.queries[0].set_query_class(class);
        m
    }

    /// The response as lines: rcode, opcode and the flags set; the question; each record with
    /// its section; the OPT record.
    fn show(m: &Message) -> Vec<String> {
        let h = &m.metadata;
        // hickory decodes RCODE 16 as BADSIG (its TSIG meaning); with OPT it is BADVERS.
        let rcode = match u16::from(h.response_code) {
            16 => "BADVERS".to_owned(),
            _ => format!("{:?}", h.response_code),
        };
        let mut head = format!("{rcode} {:?}", h.op_code);
        for (on, flag) in [
            (h.message_type == MessageType::Response, "qr"),
            (h.authoritative, "aa"),
            (h.truncation, "tc"),
            (h.recursion_desired, "rd"),
            (h.recursion_available, "ra"),
            (h.authentic_data, "ad"),
            (h.checking_disabled, "cd"),
        ] {
            if on {
                head.push(' ');
                head.push_str(flag);
            }
        }
        let mut lines = vec![format!("{head} id={:#06x}", h.id)];
        lines.extend(m.queries.iter().map(|q| format!("qd {q}")));
        for (section, records) in [
            ("an", &m.answers),
            ("ns", &m.authorities),
            ("ar", &m.additionals),
        ] {
            lines.extend(records.iter().map(|r| format!("{section} {r}")));
        }
        if let Some(e) = &m.edns {
            let mut opt = format!("opt {} v{}", e.max_payload(), e.version());
            if e.flags().dnssec_ok {
                opt.push_str(" do");
            }
            if let Some(EdnsOption::NSID(p)) = e.option(EdnsCode::NSID) {
                opt.push_str(&format!(" nsid={}", String::from_utf8_lossy(p.as_ref())));
            }
            lines.push(opt);
        }
        lines
    }

    fn outcome(rcode: ResponseCode, qtype: Option<RecordType>, truncated: bool) -> Outcome {
        Outcome {
            rcode,
            qtype,
            truncated,
        }
    }

    fn udp(s: &Snapshot, m: &Message) -> Reply {
        ask(s, m, Transport::Udp)
    }

    #[test]
    fn answers_echo_the_header_and_question() {
        let s = snap();
        let mut q = query("HoSt.cluster.example.", RecordType::A);
        q.metadata.checking_disabled = true;
        let r = udp(&s, &q);
        assert_eq!(
            show(&r.message),
            [
                "NoError Query qr aa rd cd id=0x1234",
                "qd HoSt.cluster.example. IN A",
                "an HoSt.cluster.example. 300 IN A 192.0.2.10",
            ]
        );
        assert_eq!(
            r.outcome,
            outcome(ResponseCode::NoError, Some(RecordType::A), false)
        );
        // RD clear stays clear; outside the zones: REFUSED, not authoritative.
        let mut q = query("www.example.com.", RecordType::A);
        q.metadata.recursion_desired = false;
        let r = ask(&s, &q, Transport::Tcp);
        assert_eq!(
            show(&r.message),
            ["Refused Query qr id=0x1234", "qd www.example.com. IN A"]
        );
        assert_eq!(
            r.outcome,
            outcome(ResponseCode::Refused, Some(RecordType::A), false)
        );
        // NXDOMAIN and its SOA go through unchanged.
        let r = udp(&s, &query("nope.cluster.example.", RecordType::A));
        assert_eq!(
            show(&r.message),
            [
                "NXDomain Query qr aa rd id=0x1234",
                "qd nope.cluster.example. IN A",
                "ns cluster.example. 60 IN SOA ns1.cluster.example. \
                 hostmaster.cluster.example. 1 3600 600 86400 60",
            ]
        );
    }

    #[test]
    fn short_packets_and_responses_are_dropped() {
        let s = snap();
        for transport in [Transport::Udp, Transport::Tcp] {
            assert!(run(&s, &[], transport).is_none());
            assert!(run(&s, &[0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0], transport).is_none());
            // A well-formed response (QR=1) is never answered (RFC 1035 §7.3).
            let mut m = query("host.cluster.example.", RecordType::A);
            m.metadata.message_type = MessageType::Response;
            assert!(run(&s, &wire(&m), transport).is_none());
            // QR=1 with garbage after the header: dropped, not FORMERR.
            let garbage = [0x12, 0x34, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xff];
            assert!(run(&s, &garbage, transport).is_none());
        }
    }

    #[test]
    fn unparsable_queries_get_a_bare_formerr_header() {
        let s = snap();
        // QDCOUNT 1 and no question: ID, opcode and RD echoed, QR set, counts zero.
        let (o, out) = run(
            &s,
            &[0xab, 0xcd, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0],
            Transport::Udp,
        )
        .expect("FORMERR is sent");
        assert_eq!(out, [0xab, 0xcd, 0x81, 0x01, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(o, outcome(ResponseCode::FormErr, None, false));
        // Opcode 5 with AA and TC set in the query: opcode and RD kept, AA and TC cleared.
        let (_, out) = run(
            &s,
            &[0xab, 0xcd, 0x2f, 0x10, 0, 1, 0, 0, 0, 0, 0, 0, 63],
            Transport::Tcp,
        )
        .expect("FORMERR is sent");
        assert_eq!(out, [0xab, 0xcd, 0xa9, 0x01, 0, 0, 0, 0, 0, 0, 0, 0]);
        // A label running past the end of the packet.
        let mut bad = wire(&query("host.cluster.example.", RecordType::A));
        bad.truncate(20);
        let (o, out) = run(&s, &bad, Transport::Udp).expect("FORMERR is sent");
        assert_eq!(out, [0x12, 0x34, 0x81, 0x01, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(o, outcome(ResponseCode::FormErr, None, false));
    }

    #[test]
    fn question_count_other_than_one_and_meta_qtypes_are_formerr() {
        let s = snap();
        let mut none = query("host.cluster.example.", RecordType::A);
        none.queries.clear();
        let r = udp(&s, &none);
        assert_eq!(show(&r.message), ["FormErr Query qr rd id=0x1234"]);
        assert_eq!(r.outcome, outcome(ResponseCode::FormErr, None, false));

        let mut two = query("host.cluster.example.", RecordType::A);
        two.add_query(Query::query(
            Name::from_ascii("ns1.cluster.example.").unwrap(),
            RecordType::AAAA,
        ));
        let r = udp(&s, &two);
        assert_eq!(
            show(&r.message),
            [
                "FormErr Query qr rd id=0x1234",
                "qd host.cluster.example. IN A",
                "qd ns1.cluster.example. IN AAAA",
            ]
        );
        assert_eq!(
            r.outcome,
            outcome(ResponseCode::FormErr, Some(RecordType::A), false)
        );

        let r = udp(&s, &query("host.cluster.example.", RecordType::OPT));
        assert_eq!(
            show(&r.message),
            [
                "FormErr Query qr rd id=0x1234",
                "qd host.cluster.example. IN OPT"
            ]
        );
    }

    /// Found by fuzzing (fuzz/, target `query`): 39 questions and no EDNS got a FORMERR of
    /// 609 octets over UDP, every question echoed past the 512 the client can take. Now the
    /// questions go too when they alone are over the limit.
    #[test]
    fn many_questions_never_make_a_udp_response_over_its_limit() {
        let s = snap();
        let mut q = query("host.cluster.example.", RecordType::A);
        for i in 0..38 {
            q.add_query(Query::query(
                Name::from_ascii(format!("{i:02}{}.cluster.example.", "x".repeat(58))).unwrap(),
                RecordType::A,
            ));
        }
        let bytes = wire(&q);
        assert!(bytes.len() > 1232, "{} octets", bytes.len());
        let (o, out) = run(&s, &bytes, Transport::Udp).expect("FORMERR is sent");
        assert_eq!(o.rcode, ResponseCode::FormErr);
        assert!(out.len() <= 512, "{} octets", out.len());
        let r = reply(o, out);
        assert!(r.message.queries.is_empty() && r.message.metadata.truncation);
        // With EDNS 1232, the same; over TCP every question is echoed.
        let r = udp(&s, &with_edns(q.clone(), edns(1232)));
        assert!(r.wire.len() <= 1232 && r.message.queries.is_empty());
        assert_eq!(show(&r.message).last().unwrap(), "opt 1232 v0");
        let r = ask(&s, &q, Transport::Tcp);
        assert_eq!(r.message.queries.len(), 39);
        // The input the fuzzer found, as it was.
        let crash = include_bytes!("testdata/fuzz-query-39-questions.bin");
        let (o, out) = run(&s, crash, Transport::Udp).expect("FORMERR is sent");
        assert_eq!(o.rcode, ResponseCode::FormErr);
        assert!(out.len() <= 512, "{} octets", out.len());
    }

    #[test]
    fn other_opcodes_are_notimp() {
        let s = snap();
        for (op, name) in [(OpCode::Status, "Status"), (OpCode::Notify, "Notify")] {
            let mut q = query("cluster.example.", RecordType::SOA);
            q.metadata.op_code = op;
            let r = udp(&s, &q);
            assert_eq!(
                show(&r.message),
                [
                    format!("NotImp {name} qr rd id=0x1234"),
                    "qd cluster.example. IN SOA".to_owned(),
                ]
            );
            assert_eq!(
                r.outcome,
                outcome(ResponseCode::NotImp, Some(RecordType::SOA), false)
            );
        }
        // NOTIMP wins over BADVERS.
        let mut q = with_edns(query("cluster.example.", RecordType::SOA), {
            let mut e = edns(1232);
            e.set_version(1);
            e
        });
        q.metadata.op_code = OpCode::Notify;
        assert_eq!(udp(&s, &q).outcome.rcode, ResponseCode::NotImp);
    }

    #[test]
    fn zone_transfers_are_refused() {
        let s = snap();
        for qtype in [RecordType::AXFR, RecordType::IXFR] {
            for transport in [Transport::Udp, Transport::Tcp] {
                let r = ask(&s, &query("cluster.example.", qtype), transport);
                assert_eq!(
                    show(&r.message),
                    [
                        "Refused Query qr rd id=0x1234".to_owned(),
                        format!("qd cluster.example. IN {qtype}"),
                    ]
                );
                assert_eq!(
                    r.outcome,
                    outcome(ResponseCode::Refused, Some(qtype), false)
                );
            }
        }
    }

    /// An IXFR query in its RFC 1995 §3 form: the client's SOA (serial `serial`) in AUTHORITY.
    fn ixfr(serial: u32) -> Message {
        let zone = Name::from_ascii("cluster.example.").unwrap();
        let mut m = query("cluster.example.", RecordType::IXFR);
        m.add_authority(Record::from_rdata(
            zone.clone(),
            3600,
            RData::SOA(SOA::new(
                Name::from_ascii("ns1.cluster.example.").unwrap(),
                Name::from_ascii("hostmaster.cluster.example.").unwrap(),
                serial,
                3600,
                600,
                86400,
                60,
            )),
        ));
        m
    }

    #[test]
    fn ixfr_with_its_soa_in_authority_is_refused() {
        let s = snap();
        for transport in [Transport::Udp, Transport::Tcp] {
            let r = ask(&s, &ixfr(1), transport);
            // The client's SOA is not echoed: the response has the question only.
            assert_eq!(
                show(&r.message),
                [
                    "Refused Query qr rd id=0x1234",
                    "qd cluster.example. IN IXFR"
                ],
                "{transport:?}"
            );
            assert_eq!(
                r.outcome,
                outcome(ResponseCode::Refused, Some(RecordType::IXFR), false)
            );
        }
    }

    #[test]
    fn records_in_authority_are_ignored_and_in_answer_are_formerr() {
        let s = snap();
        // A plain query carrying a record in AUTHORITY is answered as if it had none.
        let mut q = query("host.cluster.example.", RecordType::A);
        q.authorities = ixfr(7).authorities;
        let plain = udp(&s, &query("host.cluster.example.", RecordType::A));
        for transport in [Transport::Udp, Transport::Tcp] {
            let r = ask(&s, &q, transport);
            assert_eq!(show(&r.message), show(&plain.message), "{transport:?}");
            assert_eq!(r.outcome, plain.outcome);
        }
        // With EDNS too: the OPT after the AUTHORITY record is still found.
        let r = udp(&s, &with_edns(q, edns(1232)));
        assert_eq!(r.message.answers.len(), 1);
        assert_eq!(show(&r.message).last().unwrap(), "opt 1232 v0");
        // ANSWER is for NOTIFY and UPDATE (other opcodes): in a QUERY it is still FORMERR.
        let mut q = query("host.cluster.example.", RecordType::A);
        q.answers = ixfr(7).authorities;
        let r = udp(&s, &q);
        assert_eq!(
            show(&r.message),
            [
                "FormErr Query qr rd id=0x1234",
                "qd host.cluster.example. IN A"
            ]
        );
    }

    #[test]
    fn edns_version_above_zero_is_badvers() {
        let s = snap();
        let mut e = edns(4096);
        e.set_version(1);
        let r = udp(
            &s,
            &with_edns(query("host.cluster.example.", RecordType::A), e),
        );
        assert_eq!(
            show(&r.message),
            [
                "BADVERS Query qr rd id=0x1234",
                "qd host.cluster.example. IN A",
                "opt 1232 v0",
            ]
        );
        assert_eq!(
            r.outcome,
            outcome(ResponseCode::BADVERS, Some(RecordType::A), false)
        );
        // BADVERS is 16: header RCODE 0, extended RCODE 1 in the OPT TTL (RFC 6891 §6.1.3).
        assert_eq!(r.wire[3] & 0x0f, 0);
        assert!(
            r.wire.ends_with(&[0, 0, 41, 0x04, 0xd0, 1, 0, 0, 0, 0, 0]),
            "{:x?}",
            r.wire
        );
    }

    #[test]
    fn edns_answers_advertise_our_payload_and_copy_do() {
        let s = snap();
        let q = query("host.cluster.example.", RecordType::A);
        // No OPT in, no OPT out.
        assert!(udp(&s, &q).message.edns.is_none());
        let mut e = edns(4096);
        e.set_dnssec_ok(true);
        // NSID asked for but not enabled: not sent.
        e.options_mut()
            .insert(EdnsOption::NSID(NSIDPayload::new(Vec::new()).unwrap()));
        let r = udp(&s, &with_edns(q.clone(), e.clone()));
        assert_eq!(
            show(&r.message),
            [
                "NoError Query qr aa rd id=0x1234",
                "qd host.cluster.example. IN A",
                "an host.cluster.example. 300 IN A 192.0.2.10",
                "opt 1232 v0 do",
            ]
        );
        // A small payload is advertised back as ours all the same.
        let r = udp(&s, &with_edns(q.clone(), edns(512)));
        assert_eq!(r.message.edns.as_ref().unwrap().max_payload(), 1232);
        assert!(!r.message.edns.as_ref().unwrap().flags().dnssec_ok);

        // NSID enabled: sent with the identity when asked, and only then (RFC 5001 §2.1).
        let s = snapshot(&config("nsid = true"), &zone());
        let r = udp(&s, &with_edns(q.clone(), e));
        assert_eq!(
            show(&r.message).last().unwrap(),
            &format!("opt 1232 v0 do nsid={IDENTITY}")
        );
        let r = udp(&s, &with_edns(q, edns(1232)));
        assert_eq!(show(&r.message).last().unwrap(), "opt 1232 v0");
    }

    #[test]
    fn tcp_keepalive_advertises_the_idle_timeout_when_asked() {
        let s = snap();
        let keepalive = |m: &Message| {
            m.edns
                .as_ref()
                .and_then(|e| e.option(EdnsCode::Keepalive))
                .map(|o| Vec::<u8>::try_from(o).unwrap())
        };
        let tcp = |q: &Message| {
            let mut out = Vec::new();
            let o = handle_tcp(&s, &wire(q), std::time::Duration::from_secs(10), &mut out)
                .expect("an answer");
            reply(o, out)
        };
        let asking = |data: Vec<u8>| {
            let mut e = edns(1232);
            e.options_mut().insert(EdnsOption::Unknown(11, data));
            with_edns(query("host.cluster.example.", RecordType::A), e)
        };
        // Asked over TCP: 10 s is 100 units of 100 ms (RFC 7828 §3.1).
        let r = tcp(&asking(Vec::new()));
        assert_eq!(r.message.metadata.response_code, ResponseCode::NoError);
        assert_eq!(r.message.answers.len(), 1);
        assert_eq!(keepalive(&r.message), Some(vec![0, 100]));
        // Not asked: not sent. Over UDP: ignored.
        assert_eq!(
            keepalive(
                &tcp(&with_edns(
                    query("host.cluster.example.", RecordType::A),
                    edns(1232)
                ))
                .message
            ),
            None
        );
        let r = udp(&s, &asking(Vec::new()));
        assert_eq!((r.message.answers.len(), keepalive(&r.message)), (1, None));
        // A query carrying a TIMEOUT is malformed over TCP, ignored over UDP.
        let r = tcp(&asking(vec![0, 5]));
        assert_eq!(r.message.metadata.response_code, ResponseCode::FormErr);
        assert_eq!(keepalive(&r.message), None);
        let r = udp(&s, &asking(vec![0, 5]));
        assert_eq!(r.message.metadata.response_code, ResponseCode::NoError);
        // An idle timeout beyond the field's range is advertised as its maximum.
        let mut out = Vec::new();
        let o = handle_tcp(
            &s,
            &wire(&asking(Vec::new())),
            std::time::Duration::from_secs(7200),
            &mut out,
        )
        .unwrap();
        assert_eq!(keepalive(&reply(o, out).message), Some(vec![0xff, 0xff]));
    }

    #[test]
    fn chaos_answers_identity_and_configured_version() {
        let s = snap();
        let ch = |name: &str, qtype| udp(&s, &in_class(name, qtype, DNSClass::CH));
        for name in ["id.server.", "HOSTNAME.bind."] {
            let r = ch(name, RecordType::TXT);
            assert_eq!(
                show(&r.message),
                [
                    "NoError Query qr aa rd id=0x1234".to_owned(),
                    format!("qd {name} CH TXT"),
                    format!("an {name} 0 CH TXT {IDENTITY}"),
                ]
            );
            assert_eq!(
                r.outcome,
                outcome(ResponseCode::NoError, Some(RecordType::TXT), false)
            );
        }
        // ANY gets the TXT; another type gets an empty authoritative answer.
        assert_eq!(
            show(&ch("id.server.", RecordType::ANY).message)[2],
            format!("an id.server. 0 CH TXT {IDENTITY}")
        );
        assert_eq!(
            show(&ch("id.server.", RecordType::A).message),
            ["NoError Query qr aa rd id=0x1234", "qd id.server. CH A"]
        );
        // No version configured: not disclosed. Unknown CHAOS names: refused.
        for name in [
            "version.bind.",
            "version.server.",
            "foo.example.",
            "cluster.example.",
        ] {
            assert_eq!(
                show(&ch(name, RecordType::TXT).message),
                [
                    "Refused Query qr rd id=0x1234".to_owned(),
                    format!("qd {name} CH TXT"),
                ],
                "{name}"
            );
        }
        let s = snapshot(&config("version = \"lbns-test\""), &zone());
        let r = udp(
            &s,
            &in_class("version.bind.", RecordType::TXT, DNSClass::CH),
        );
        assert_eq!(show(&r.message)[2], "an version.bind. 0 CH TXT lbns-test");
    }

    #[test]
    fn classes_other_than_in_any_and_ch_are_refused() {
        let s = snap();
        let r = udp(
            &s,
            &in_class("host.cluster.example.", RecordType::A, DNSClass::HS),
        );
        assert_eq!(
            show(&r.message),
            [
                "Refused Query qr rd id=0x1234",
                "qd host.cluster.example. HS A"
            ]
        );
        // QCLASS ANY is answered from IN data.
        let r = udp(
            &s,
            &in_class("host.cluster.example.", RecordType::A, DNSClass::ANY),
        );
        assert_eq!(
            show(&r.message),
            [
                "NoError Query qr aa rd id=0x1234",
                "qd host.cluster.example. ANY A",
                "an host.cluster.example. 300 IN A 192.0.2.10",
            ]
        );
    }

    #[test]
    fn udp_without_edns_truncates_at_512_to_question_only() {
        let s = snap();
        let q = query("big.cluster.example.", RecordType::TXT);
        let full = ask(&s, &q, Transport::Tcp);
        assert_eq!(full.message.answers.len(), 5);
        assert!(
            full.wire.len() > 512 && full.wire.len() < 1232,
            "{}",
            full.wire.len()
        );
        assert!(!full.message.metadata.truncation);
        assert_eq!(
            full.outcome,
            outcome(ResponseCode::NoError, Some(RecordType::TXT), false)
        );

        let r = udp(&s, &q);
        assert_eq!(
            show(&r.message),
            [
                "NoError Query qr aa tc rd id=0x1234",
                "qd big.cluster.example. IN TXT",
            ]
        );
        assert_eq!(
            r.outcome,
            outcome(ResponseCode::NoError, Some(RecordType::TXT), true)
        );
    }

    #[test]
    fn edns_payload_is_clamped_to_512_and_edns_udp_size() {
        let s = snap();
        let big = query("big.cluster.example.", RecordType::TXT);
        let huge = query("huge.cluster.example.", RecordType::TXT);
        // 4096 asked, 1232 allowed: big fits, huge (which would fit 4096) is truncated.
        let r = udp(&s, &with_edns(big.clone(), edns(4096)));
        assert_eq!((r.message.answers.len(), r.outcome.truncated), (5, false));
        let full = ask(&s, &with_edns(huge.clone(), edns(4096)), Transport::Tcp);
        assert_eq!(full.message.answers.len(), 12);
        assert!(
            full.wire.len() > 1232 && full.wire.len() < 4096,
            "{}",
            full.wire.len()
        );
        let r = udp(&s, &with_edns(huge, edns(4096)));
        assert_eq!(
            show(&r.message),
            [
                "NoError Query qr aa tc rd id=0x1234",
                "qd huge.cluster.example. IN TXT",
                "opt 1232 v0",
            ]
        );
        assert!(r.outcome.truncated);
        // Below 512 counts as 512: big is truncated, keeping its OPT.
        let r = udp(&s, &with_edns(big, edns(100)));
        assert_eq!(
            show(&r.message),
            [
                "NoError Query qr aa tc rd id=0x1234",
                "qd big.cluster.example. IN TXT",
                "opt 1232 v0",
            ]
        );
        assert!(r.outcome.truncated);
    }

    #[test]
    fn additional_data_is_dropped_before_truncating() {
        let s = snap();
        let q = query("mx.cluster.example.", RecordType::MX);
        let full = ask(&s, &q, Transport::Tcp);
        assert_eq!(
            (full.message.answers.len(), full.message.additionals.len()),
            (10, 20)
        );
        assert!(full.wire.len() > 512, "{}", full.wire.len());
        // Over UDP without EDNS: every answer, no additional data, no TC.
        let r = udp(&s, &q);
        assert!(r.wire.len() <= 512);
        assert_eq!(
            (r.message.answers.len(), r.message.additionals.len()),
            (10, 0)
        );
        assert!(!r.message.metadata.truncation);
        assert_eq!(
            r.outcome,
            outcome(ResponseCode::NoError, Some(RecordType::MX), false)
        );
        assert_eq!(show(&r.message)[..3], show(&full.message)[..3]);
        // With room for it, the additional section stays.
        let r = udp(&s, &with_edns(q, edns(1232)));
        assert_eq!(
            (r.message.answers.len(), r.message.additionals.len()),
            (10, 20)
        );
    }

    #[test]
    fn referral_glue_is_never_dropped() {
        let s = snap();
        let q = query("www.bigsub.cluster.example.", RecordType::A);
        let full = ask(&s, &q, Transport::Tcp);
        assert_eq!(
            (
                full.message.metadata.authoritative,
                full.message.authorities.len(),
                full.message.additionals.len()
            ),
            (false, 10, 20)
        );
        assert!(full.wire.len() > 512, "{}", full.wire.len());
        // The referral does not fit 512 with its glue: TC, not a referral without glue.
        let r = udp(&s, &q);
        assert_eq!(
            show(&r.message),
            [
                "NoError Query qr tc rd id=0x1234",
                "qd www.bigsub.cluster.example. IN A",
            ]
        );
        assert_eq!(
            r.outcome,
            outcome(ResponseCode::NoError, Some(RecordType::A), true)
        );
        let r = udp(&s, &with_edns(q, edns(1232)));
        assert_eq!(
            (r.message.authorities.len(), r.message.additionals.len()),
            (10, 20)
        );
        assert!(!r.outcome.truncated);
    }

    #[test]
    fn handle_truncated_sends_header_question_and_opt() {
        let s = snap();
        let mut out = Vec::new();
        let q = with_edns(query("host.cluster.example.", RecordType::A), edns(4096));
        let o = handle_truncated(&s, &wire(&q), &mut out).expect("an answer");
        let r = reply(o, out);
        assert_eq!(
            show(&r.message),
            [
                "NoError Query qr aa tc rd id=0x1234",
                "qd host.cluster.example. IN A",
                "opt 1232 v0",
            ]
        );
        assert_eq!(
            r.outcome,
            outcome(ResponseCode::NoError, Some(RecordType::A), true)
        );
        // The rcode survives; the SOA does not. Without EDNS, no OPT.
        let mut out = Vec::new();
        let q = query("nope.cluster.example.", RecordType::A);
        let o = handle_truncated(&s, &wire(&q), &mut out).expect("an answer");
        assert_eq!(
            show(&reply(o, out).message),
            [
                "NXDomain Query qr aa tc rd id=0x1234",
                "qd nope.cluster.example. IN A",
            ]
        );
        // Responses are still dropped.
        let mut m = q;
        m.metadata.message_type = MessageType::Response;
        let mut out = Vec::new();
        assert!(handle_truncated(&s, &wire(&m), &mut out).is_none());
        assert!(out.is_empty());
    }
}
