//! Reading and patching DNS messages in wire format (RFC 1035 §4.1) without parsing them into a
//! `Message`: what cookies and rate limiting need to find in a query or change in a response,
//! done in place with no allocation. Every read is bounds-checked; a message that does not
//! parse gives `None`.

use std::ops::Range;

/// Length of the header.
pub(crate) const HEADER: usize = 12;
/// RR type of OPT (RFC 6891 §6.1.1).
const OPT: u16 = 41;
/// Most compression pointers followed in one name (a loop otherwise).
const MAX_POINTERS: usize = 32;

fn u16_at(m: &[u8], pos: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*m.get(pos)?, *m.get(pos + 1)?]))
}

/// QDCOUNT, ANCOUNT, NSCOUNT, ARCOUNT.
pub(crate) fn counts(m: &[u8]) -> Option<[u16; 4]> {
    Some([u16_at(m, 4)?, u16_at(m, 6)?, u16_at(m, 8)?, u16_at(m, 10)?])
}

/// The offset just past the name at `pos` (labels ending in the root, or in a pointer).
pub(crate) fn skip_name(m: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *m.get(pos)?;
        match len {
            0 => return Some(pos + 1),
            l if l & 0xc0 == 0xc0 => return (pos + 2 <= m.len()).then_some(pos + 2),
            l if l & 0xc0 != 0 => return None,
            l => pos += 1 + usize::from(l),
        }
    }
}

/// Copies the name at `pos`, lowercased and uncompressed, into `buf`; returns its length.
pub(crate) fn read_name(m: &[u8], mut pos: usize, buf: &mut [u8; 255]) -> Option<usize> {
    let mut n = 0;
    let mut jumps = 0;
    loop {
        let len = *m.get(pos)?;
        match len {
            0 => {
                *buf.get_mut(n)? = 0;
                return Some(n + 1);
            }
            l if l & 0xc0 == 0xc0 => {
                jumps += 1;
                if jumps > MAX_POINTERS {
                    return None;
                }
                pos = usize::from(u16_at(m, pos)? & 0x3fff);
            }
            l if l & 0xc0 != 0 => return None,
            l => {
                let l = usize::from(l);
                let label = m.get(pos + 1..pos + 1 + l)?;
                // Room for this label and the root after it.
                if n + 1 + l + 1 > buf.len() {
                    return None;
                }
                buf[n] = l as u8;
                for (d, s) in buf[n + 1..n + 1 + l].iter_mut().zip(label) {
                    *d = s.to_ascii_lowercase();
                }
                n += 1 + l;
                pos += 1 + l;
            }
        }
    }
}

/// The offset just past the record starting at `pos`.
pub(crate) fn skip_record(m: &[u8], pos: usize) -> Option<usize> {
    let rdata = skip_name(m, pos)? + 10;
    let end = rdata + usize::from(u16_at(m, rdata - 2)?);
    (end <= m.len()).then_some(end)
}

/// The offset just past the question section.
pub(crate) fn question_end(m: &[u8]) -> Option<usize> {
    let [qd, ..] = counts(m)?;
    let mut pos = HEADER;
    for _ in 0..qd {
        pos = skip_name(m, pos)? + 4;
    }
    (pos <= m.len()).then_some(pos)
}

/// Where a message's OPT record is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OptAt {
    /// The whole record, from its owner name (the root) to the end of its RDATA.
    pub(crate) record: Range<usize>,
    /// The options (RDATA).
    pub(crate) rdata: Range<usize>,
}

impl OptAt {
    /// The requestor's UDP payload size (the CLASS field).
    pub(crate) fn payload(&self, m: &[u8]) -> u16 {
        u16_at(m, self.record.start + 3).unwrap_or(0)
    }

    /// The extended RCODE (high 8 bits of the 12-bit RCODE).
    pub(crate) fn ext_rcode(&self, m: &[u8]) -> u8 {
        m[self.record.start + 5]
    }
}

/// The OPT record of the additional section, if there is one. `None` also when the message
/// does not parse.
pub(crate) fn find_opt(m: &[u8]) -> Option<OptAt> {
    let [_, an, ns, ar] = counts(m)?;
    let mut pos = question_end(m)?;
    for _ in 0..u32::from(an) + u32::from(ns) {
        pos = skip_record(m, pos)?;
    }
    for _ in 0..ar {
        let end = skip_record(m, pos)?;
        let name_end = skip_name(m, pos)?;
        if u16_at(m, name_end)? == OPT && name_end == pos + 1 {
            return Some(OptAt {
                record: pos..end,
                rdata: name_end + 10..end,
            });
        }
        pos = end;
    }
    None
}

/// The data of the first option `code` in OPT RDATA `rdata`: `Some(Err(()))` when the options
/// run past their RDATA.
pub(crate) fn find_option(rdata: &[u8], code: u16) -> Option<Result<Range<usize>, ()>> {
    let mut pos = 0;
    while pos < rdata.len() {
        let (Some(c), Some(len)) = (u16_at(rdata, pos), u16_at(rdata, pos + 2)) else {
            return Some(Err(()));
        };
        let data = pos + 4..pos + 4 + usize::from(len);
        if data.end > rdata.len() {
            return Some(Err(()));
        }
        if c == code {
            return Some(Ok(data));
        }
        pos = data.end;
    }
    None
}

/// Sets the 12-bit RCODE of a response: the low 4 bits in the header, the high 8 in its OPT
/// (RFC 6891 §6.1.3). Codes above 15 need an OPT: `false` when there is none.
pub(crate) fn set_rcode(m: &mut [u8], rcode: u16, opt: Option<&OptAt>) -> bool {
    let high = (rcode >> 4) as u8;
    match opt {
        Some(o) => m[o.record.start + 5] = high,
        None if high != 0 => return false,
        None => {}
    }
    m[3] = (m[3] & 0xf0) | (rcode as u8 & 0x0f);
    true
}

/// Cuts a response down to header, question and OPT (the sections emptied), in place.
pub(crate) fn strip(m: &mut Vec<u8>) -> Option<Option<OptAt>> {
    let qend = question_end(m)?;
    let opt = find_opt(m);
    let opt = match opt {
        Some(o) => {
            let len = o.record.len();
            m.copy_within(o.record.clone(), qend);
            m.truncate(qend + len);
            Some(OptAt {
                record: qend..qend + len,
                rdata: qend + 11..qend + len,
            })
        }
        None => {
            m.truncate(qend);
            None
        }
    };
    m[6..12].copy_from_slice(&[0, 0, 0, 0, 0, u8::from(opt.is_some())]);
    Some(opt)
}

/// Appends an option (code, length and data, as `option` holds them) to the OPT record, which
/// must end the message, as it does in every response lbns encodes. `false` if it does not.
pub(crate) fn append_option(m: &mut Vec<u8>, opt: &OptAt, option: &[u8]) -> bool {
    if opt.record.end != m.len() {
        return false;
    }
    let at = opt.rdata.start - 2;
    let Some(len) = u16_at(m, at).and_then(|l| l.checked_add(option.len() as u16)) else {
        return false;
    };
    m[at..at + 2].copy_from_slice(&len.to_be_bytes());
    m.extend_from_slice(option);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `www.example.` A with an OPT (payload 1232, DO) holding one option (code 10, 8 bytes).
    fn query() -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
        m.extend_from_slice(b"\x03WwW\x07example\x00\x00\x01\x00\x01");
        m.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 12, 0, 10, 0, 8]);
        m.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        m
    }

    #[test]
    fn finds_the_question_opt_and_option() {
        let m = query();
        assert_eq!(question_end(&m), Some(29));
        let opt = find_opt(&m).unwrap();
        assert_eq!(opt.record, 29..52);
        assert_eq!(opt.payload(&m), 1232);
        assert_eq!(
            find_option(&m[opt.rdata.clone()], 10),
            Some(Ok(4..12)),
            "code 10 at the start of the RDATA"
        );
        assert_eq!(find_option(&m[opt.rdata.clone()], 3), None);
        // An option running past the RDATA.
        assert_eq!(find_option(&[0, 10, 0, 9, 1, 2], 10), Some(Err(())));
        assert_eq!(find_option(&[0, 10, 0], 10), Some(Err(())));
        let mut buf = [0u8; 255];
        let n = read_name(&m, 12, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"\x03www\x07example\x00");
    }

    #[test]
    fn truncated_and_looping_messages_do_not_parse() {
        let m = query();
        for cut in 0..m.len() {
            // Every prefix either parses to an OPT inside it or not at all.
            if let Some(o) = find_opt(&m[..cut]) {
                assert!(o.record.end <= cut);
            }
        }
        // A pointer to itself.
        let mut looping = m[..12].to_vec();
        looping.extend_from_slice(&[0xc0, 12]);
        let mut buf = [0u8; 255];
        assert_eq!(read_name(&looping, 12, &mut buf), None);
        // A reserved label type.
        assert_eq!(skip_name(&[0x40, 0], 0), None);
    }

    #[test]
    fn strips_to_question_and_opt_and_appends_options() {
        let mut m = query();
        // Pretend it is a response with an answer before the OPT.
        m[7] = 1;
        let answer = [0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1];
        m.splice(29..29, answer);
        assert_eq!(find_opt(&m).unwrap().record, 45..68);
        let opt = strip(&mut m).unwrap().unwrap();
        assert_eq!(counts(&m), Some([1, 0, 0, 1]));
        assert_eq!(m.len(), 29 + 23);
        assert_eq!(find_opt(&m), Some(opt.clone()));
        assert!(append_option(&mut m, &opt, &[0, 99, 0, 1, 7]));
        let opt = find_opt(&m).unwrap();
        assert_eq!(find_option(&m[opt.rdata.clone()], 99), Some(Ok(16..17)));
        assert!(set_rcode(&mut m, 23, Some(&opt)));
        assert_eq!((m[3] & 0x0f, opt.ext_rcode(&m)), (7, 1));
        assert!(!set_rcode(&mut m[..29].to_vec(), 23, None));
    }
}
