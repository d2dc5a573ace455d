//! The status listener's client allowlist: CIDR networks (`127.0.0.0/8`, `::1/128`, or a bare
//! address meaning just that host).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// One network: an address and a prefix length, host bits zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// Why a CIDR did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("not an address or address/prefix such as 127.0.0.0/8")]
    Syntax,
    #[error("prefix /{prefix} is longer than {max} bits")]
    Prefix { prefix: u8, max: u8 },
    #[error("host bits are set; the network is {0}")]
    HostBits(Cidr),
}

impl Cidr {
    /// Whether `ip` is inside. IPv4-mapped IPv6 clients (`::ffff:127.0.0.1`, what a dual-stack
    /// socket reports for an IPv4 peer) are matched as the IPv4 address they are.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                mask(u128::from(u32::from(ip)), self.prefix, 32) == u128::from(u32::from(net))
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                mask(u128::from(ip), self.prefix, 128) == u128::from(net)
            }
            _ => false,
        }
    }
}

/// `bits` with everything after the first `prefix` of `width` bits cleared.
fn mask(bits: u128, prefix: u8, width: u8) -> u128 {
    if prefix == 0 {
        return 0;
    }
    let host = u32::from(width - prefix);
    bits >> host << host
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let network: IpAddr = addr.parse().map_err(|_| CidrError::Syntax)?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().map_err(|_| CidrError::Syntax)?
            }
            Some(_) => return Err(CidrError::Syntax),
        };
        if prefix > max {
            return Err(CidrError::Prefix { prefix, max });
        }
        // `10.1.2.3/8` is almost always a typo for a host or for 10.0.0.0/8; say which it means.
        let masked = match network {
            IpAddr::V4(a) => {
                Ipv4Addr::from(mask(u128::from(u32::from(a)), prefix, 32) as u32).into()
            }
            IpAddr::V6(a) => Ipv6Addr::from(mask(u128::from(a), prefix, 128)).into(),
        };
        if masked != network {
            return Err(CidrError::HostBits(Cidr {
                network: masked,
                prefix,
            }));
        }
        Ok(Cidr { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn loopback_defaults_match_loopback_only() {
        let v4: Cidr = "127.0.0.0/8".parse().unwrap();
        let v6: Cidr = "::1/128".parse().unwrap();
        assert!(v4.contains(ip("127.0.0.1")));
        assert!(v4.contains(ip("127.255.0.9")));
        assert!(!v4.contains(ip("128.0.0.1")));
        assert!(!v4.contains(ip("::1")));
        // A dual-stack socket reports IPv4 peers as mapped addresses.
        assert!(v4.contains(ip("::ffff:127.0.0.1")));
        assert!(v6.contains(ip("::1")));
        assert!(!v6.contains(ip("::2")));
    }

    #[test]
    fn bare_addresses_zero_prefixes_and_errors() {
        let host: Cidr = "192.0.2.7".parse().unwrap();
        assert_eq!(host.to_string(), "192.0.2.7/32");
        assert!(host.contains(ip("192.0.2.7")) && !host.contains(ip("192.0.2.8")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.1")));
        let net6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(net6.contains(ip("2001:db8:1::1")) && !net6.contains(ip("2001:db9::1")));
        assert_eq!("nonsense".parse::<Cidr>(), Err(CidrError::Syntax));
        assert_eq!("10.0.0.0/x".parse::<Cidr>(), Err(CidrError::Syntax));
        assert_eq!(
            "10.0.0.0/33".parse::<Cidr>(),
            Err(CidrError::Prefix {
                prefix: 33,
                max: 32
            })
        );
        assert_eq!(
            "10.1.2.3/8".parse::<Cidr>().unwrap_err().to_string(),
            "host bits are set; the network is 10.0.0.0/8"
        );
    }
}
