//! Ethernet, IPv4/IPv6 and UDP framing for the AF_XDP path: finds the DNS message in a received
//! frame and rewrites the frame into its reply in place.
//!
//! The kernel's IP and UDP layers are bypassed, so their checks are done here: header lengths,
//! no fragments, and the checksums a host must verify (RFC 1122 §3.2.1.2 for the IPv4 header,
//! §4.1.3.4 for UDP; RFC 8200 §8.1: a zero UDP checksum over IPv6 is discarded).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;

/// Ethernet header: destination, source, EtherType.
const ETH: usize = 14;
const IPV4: usize = 20;
const IPV6: usize = 40;
const UDP: usize = 8;
const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const ETHERTYPE_IPV6: [u8; 2] = [0x86, 0xdd];
const PROTO_UDP: u8 = 17;
/// TTL / hop limit of our replies (the common host default).
const HOPS: u8 = 64;

/// A UDP datagram found in a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Datagram {
    /// Where the DNS message is in the frame.
    pub(crate) payload: Range<usize>,
    /// The client.
    pub(crate) src: SocketAddr,
}

impl Datagram {
    /// Length of the Ethernet + IP + UDP headers in front of the payload.
    pub(crate) fn headers(&self) -> usize {
        self.payload.start
    }

    /// Bytes of the IP packet that carries `payload_len` octets of DNS in our reply.
    pub(crate) fn ip_len(&self, payload_len: usize) -> usize {
        self.payload.start - ETH + payload_len
    }
}

/// Parses a frame as Ethernet + IPv4 (no options, not a fragment) or IPv6 (UDP as the next
/// header) + UDP with a correct checksum. `None`: not one we answer; the caller drops it.
///
/// A UDP checksum field holding just the folded pseudo-header sum is accepted too: that is
/// what a Linux sender leaves for checksum offload (CHECKSUM_PARTIAL) on virtual links —
/// loopback, veth — where the frame never crosses a wire and the kernel's own receive path
/// trusts it without looking. A corrupted packet matches that value by chance once in 65,536.
pub(crate) fn parse(frame: &[u8]) -> Option<Datagram> {
    if frame.len() < ETH + IPV4 + UDP {
        return None;
    }
    let ip = &frame[ETH..];
    // Where UDP starts and where the IP payload ends, from the IP header's own length.
    let (udp_at, ip_end, src_ip, pseudo) = match [frame[12], frame[13]] {
        ETHERTYPE_IPV4 => {
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            if ip[0] != 0x45
                || ip[9] != PROTO_UDP
                || u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0
                || total < IPV4 + UDP
                || total > ip.len()
                || fold(sum(&ip[..IPV4], 0)) != 0xffff
            {
                return None;
            }
            let src = Ipv4Addr::from(<[u8; 4]>::try_from(&ip[12..16]).ok()?);
            // Pseudo-header: addresses, protocol, UDP length (added below).
            let pseudo = sum(&ip[12..20], u32::from(PROTO_UDP));
            (ETH + IPV4, ETH + total, IpAddr::V4(src), pseudo)
        }
        ETHERTYPE_IPV6 => {
            if frame.len() < ETH + IPV6 + UDP || ip[0] >> 4 != 6 || ip[6] != PROTO_UDP {
                return None;
            }
            let payload = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            if payload < UDP || IPV6 + payload > ip.len() {
                return None;
            }
            let src = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[8..24]).ok()?);
            let pseudo = sum(&ip[8..40], u32::from(PROTO_UDP));
            (ETH + IPV6, ETH + IPV6 + payload, IpAddr::V6(src), pseudo)
        }
        _ => return None,
    };
    let udp = &frame[udp_at..];
    let len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    if len < UDP || udp_at + len > ip_end {
        return None;
    }
    let checksum = u16::from_be_bytes([udp[6], udp[7]]);
    // IPv4 may omit the checksum (zero); IPv6 may not.
    if checksum != 0 || src_ip.is_ipv6() {
        let pseudo = pseudo + len as u32;
        let partial = checksum == fold(pseudo);
        if checksum == 0 || !(partial || fold(sum(&udp[..len], pseudo)) == 0xffff) {
            return None;
        }
    }
    let port = u16::from_be_bytes([udp[0], udp[1]]);
    Some(Datagram {
        payload: udp_at + UDP..udp_at + len,
        src: SocketAddr::new(src_ip, port),
    })
}

/// Turns the frame holding `query` into the reply whose DNS message is already written at
/// `frame[query.headers()..][..dns_len]`: swaps the addresses and ports, and writes lengths
/// and checksums. Returns the frame length.
pub(crate) fn reply(frame: &mut [u8], query: &Datagram, dns_len: usize) -> usize {
    let udp_at = query.headers() - UDP;
    let udp_len = UDP + dns_len;
    // Ethernet: back to where it came from.
    let (dst, src) = frame[..12].split_at_mut(6);
    dst.swap_with_slice(src);
    let pseudo = if query.src.is_ipv4() {
        let ip = &mut frame[ETH..ETH + IPV4];
        let total = (IPV4 + udp_len) as u16;
        ip[1] = 0; // DSCP/ECN
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        // ID 0 with DF set: an atomic datagram (RFC 6864 §4.1); never fragmented (RFC 9715).
        ip[4..8].copy_from_slice(&[0, 0, 0x40, 0]);
        ip[8] = HOPS;
        ip[10..12].copy_from_slice(&[0, 0]);
        let (a, b) = ip[12..20].split_at_mut(4);
        a.swap_with_slice(b);
        let check = !fold(sum(ip, 0));
        ip[10..12].copy_from_slice(&check.to_be_bytes());
        sum(&ip[12..20], u32::from(PROTO_UDP))
    } else {
        let ip = &mut frame[ETH..ETH + IPV6];
        ip[..4].copy_from_slice(&[0x60, 0, 0, 0]);
        ip[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
        ip[7] = HOPS;
        let (a, b) = ip[8..40].split_at_mut(16);
        a.swap_with_slice(b);
        sum(&ip[8..40], u32::from(PROTO_UDP))
    };
    let udp = &mut frame[udp_at..udp_at + udp_len];
    let (sport, dport) = udp[..4].split_at_mut(2);
    sport.swap_with_slice(dport);
    udp[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    udp[6..8].copy_from_slice(&[0, 0]);
    // RFC 768: a computed zero is sent as all ones.
    let check = match !fold(sum(udp, pseudo + udp_len as u32)) {
        0 => 0xffff,
        c => c,
    };
    udp[6..8].copy_from_slice(&check.to_be_bytes());
    udp_at + udp_len
}

/// Adds `data` as big-endian 16-bit words (odd length padded with zero) to `acc` (RFC 1071).
fn sum(data: &[u8], mut acc: u32) -> u32 {
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        acc += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

/// Folds the carries of a ones'-complement sum into 16 bits.
fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame as a kernel would send it: client 127.0.0.9:40000 (or [::1]:40000) to the
    /// server on port 53, with a correct checksum.
    fn query_frame(v6: bool, dns: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
        let udp_len = UDP + dns.len();
        let pseudo = if v6 {
            f.extend_from_slice(&ETHERTYPE_IPV6);
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&(udp_len as u16).to_be_bytes());
            f.extend_from_slice(&[PROTO_UDP, 64]);
            f.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
            f.extend_from_slice(&"::2".parse::<Ipv6Addr>().unwrap().octets());
            sum(&f[ETH + 8..ETH + 40], u32::from(PROTO_UDP))
        } else {
            f.extend_from_slice(&ETHERTYPE_IPV4);
            let total = (IPV4 + udp_len) as u16;
            f.extend_from_slice(&[0x45, 0]);
            f.extend_from_slice(&total.to_be_bytes());
            f.extend_from_slice(&[0x12, 0x34, 0, 0, 64, PROTO_UDP, 0, 0]);
            f.extend_from_slice(&[127, 0, 0, 9, 127, 0, 0, 1]);
            let check = !fold(sum(&f[ETH..ETH + IPV4], 0));
            f[ETH + 10..ETH + 12].copy_from_slice(&check.to_be_bytes());
            sum(&f[ETH + 12..ETH + 20], u32::from(PROTO_UDP))
        };
        let udp_at = f.len();
        f.extend_from_slice(&40000u16.to_be_bytes());
        f.extend_from_slice(&53u16.to_be_bytes());
        f.extend_from_slice(&(udp_len as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(dns);
        let check = !fold(sum(&f[udp_at..], pseudo + udp_len as u32));
        f[udp_at + 6..udp_at + 8].copy_from_slice(&check.to_be_bytes());
        f
    }

    #[test]
    fn parses_ipv4_and_ipv6_queries() {
        let dns = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01";
        let f = query_frame(false, dns);
        let d = parse(&f).expect("valid IPv4 frame");
        assert_eq!(&f[d.payload.clone()], dns);
        assert_eq!(d.src, "127.0.0.9:40000".parse().unwrap());
        let f = query_frame(true, dns);
        let d = parse(&f).expect("valid IPv6 frame");
        assert_eq!(&f[d.payload.clone()], dns);
        assert_eq!(d.src, "[::1]:40000".parse().unwrap());
    }

    #[test]
    fn rejects_bad_checksums_fragments_and_short_frames() {
        let dns = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01";
        for v6 in [false, true] {
            let good = query_frame(v6, dns);
            let mut f = good.clone();
            *f.last_mut().unwrap() ^= 1;
            assert_eq!(parse(&f), None, "corrupt payload, v6={v6}");
            // As a sender using checksum offload leaves it: the pseudo-header sum only.
            let udp_at = if v6 { ETH + IPV6 } else { ETH + IPV4 };
            let addrs = if v6 {
                ETH + 8..ETH + 40
            } else {
                ETH + 12..ETH + 20
            };
            let udp_len = (good.len() - udp_at) as u32;
            let partial = fold(sum(&good[addrs], u32::from(PROTO_UDP)) + udp_len);
            let mut f = good.clone();
            f[udp_at + 6..udp_at + 8].copy_from_slice(&partial.to_be_bytes());
            assert!(parse(&f).is_some(), "offloaded checksum, v6={v6}");
            f[udp_at + 6] ^= 0x40;
            assert_eq!(parse(&f), None, "wrong checksum, v6={v6}");
            assert_eq!(parse(&good[..good.len() - 1]), None, "cut short, v6={v6}");
        }
        let mut f = query_frame(false, dns);
        f[ETH + 6] = 0x20; // MF: the first fragment of several
        assert_eq!(parse(&f), None);
        // IPv6 without a checksum is not allowed; IPv4 without one is.
        let mut f = query_frame(true, dns);
        f[ETH + IPV6 + 6..ETH + IPV6 + 8].copy_from_slice(&[0, 0]);
        assert_eq!(parse(&f), None);
        let mut f = query_frame(false, dns);
        f[ETH + IPV4 + 6..ETH + IPV4 + 8].copy_from_slice(&[0, 0]);
        assert!(parse(&f).is_some());
    }

    #[test]
    fn a_reply_is_a_valid_frame_back_to_the_client() {
        let dns = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01";
        let answer = b"\x12\x34\x85\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01xyz";
        for v6 in [false, true] {
            let mut f = query_frame(v6, dns);
            let q = parse(&f).unwrap();
            f.resize(q.headers() + answer.len(), 0);
            f[q.headers()..].copy_from_slice(answer);
            let len = reply(&mut f, &q, answer.len());
            assert_eq!(len, f.len());
            // The reply parses (so both checksums hold) and goes back to the client's port.
            let r = parse(&f).expect("reply is a valid frame");
            assert_eq!(&f[r.payload.clone()], answer);
            assert_eq!(r.src.port(), 53);
            assert_eq!(f[..6], [2, 0, 0, 0, 0, 1]);
            let udp = &f[q.headers() - UDP..];
            assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), 40000);
            if v6 {
                assert_eq!(r.src.ip(), "::2".parse::<IpAddr>().unwrap());
                assert_eq!(f[ETH + 24..ETH + 40], Ipv6Addr::LOCALHOST.octets());
            } else {
                assert_eq!(r.src.ip(), IpAddr::from([127, 0, 0, 1]));
                assert_eq!(f[ETH + 16..ETH + 20], [127, 0, 0, 9]);
                assert_eq!(f[ETH + 6], 0x40, "DF set");
            }
        }
    }
}
