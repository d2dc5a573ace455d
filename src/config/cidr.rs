//! `[status] allow` entries: CIDR networks (`127.0.0.0/8`, `::1/128`, or a bare address meaning
//! just that host), read into [`IpNet`] with messages that say what is wrong.

use std::net::IpAddr;

use ipnet::IpNet;

/// Why a CIDR did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CidrError {
    #[error("not an address or address/prefix such as 127.0.0.0/8")]
    Syntax,
    #[error("prefix /{prefix} is longer than {max} bits")]
    Prefix { prefix: u8, max: u8 },
    #[error("host bits are set; the network is {0}")]
    HostBits(IpNet),
}

/// Parses `address/prefix` or a bare address (a /32 or /128). Host bits must be zero:
/// `10.1.2.3/8` is almost always a typo for a host or for 10.0.0.0/8, so the error says which
/// network it would mean.
pub(crate) fn parse_cidr(s: &str) -> Result<IpNet, CidrError> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| CidrError::Syntax)?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        // Digits only: `u8::from_str` would also take `+8`.
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            p.parse::<u8>().map_err(|_| CidrError::Syntax)?
        }
        Some(_) => return Err(CidrError::Syntax),
    };
    let net = IpNet::new(addr, prefix).map_err(|_| CidrError::Prefix { prefix, max })?;
    if net.trunc() != net {
        return Err(CidrError::HostBits(net.trunc()));
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_bare_addresses_and_zero_prefixes() {
        assert_eq!(
            parse_cidr("127.0.0.0/8").unwrap().to_string(),
            "127.0.0.0/8"
        );
        assert_eq!(parse_cidr("::1/128").unwrap().to_string(), "::1/128");
        assert_eq!(parse_cidr("192.0.2.7").unwrap().to_string(), "192.0.2.7/32");
        assert_eq!(parse_cidr("::1").unwrap().to_string(), "::1/128");
        assert_eq!(parse_cidr("0.0.0.0/0").unwrap().to_string(), "0.0.0.0/0");
        assert_eq!(
            parse_cidr("2001:db8::/32").unwrap().to_string(),
            "2001:db8::/32"
        );
        assert_eq!(parse_cidr("10.0.0.0/08").unwrap().to_string(), "10.0.0.0/8");
    }

    #[test]
    fn errors_say_what_is_wrong() {
        for bad in [
            "nonsense",
            "10.0.0.0/x",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/256",
            "/8",
        ] {
            assert_eq!(parse_cidr(bad), Err(CidrError::Syntax), "{bad}");
        }
        assert_eq!(
            parse_cidr("10.0.0.0/33"),
            Err(CidrError::Prefix {
                prefix: 33,
                max: 32
            })
        );
        assert_eq!(
            parse_cidr("::1/129").unwrap_err().to_string(),
            "prefix /129 is longer than 128 bits"
        );
        assert_eq!(
            parse_cidr("10.1.2.3/8").unwrap_err().to_string(),
            "host bits are set; the network is 10.0.0.0/8"
        );
        assert_eq!(
            parse_cidr("2001:db8::1/32").unwrap_err().to_string(),
            "host bits are set; the network is 2001:db8::/32"
        );
    }
}
