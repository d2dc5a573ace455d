//! The status listener's client allowlist check (`[status] allow`, parsed by
//! [`crate::config::parse_cidr`]).

use std::net::IpAddr;

use ipnet::IpNet;

/// Whether `ip` is inside one of the `allow` networks. IPv4-mapped IPv6 clients
/// (`::ffff:127.0.0.1`, what a dual-stack socket reports for an IPv4 peer) are matched as the
/// IPv4 address they are.
pub(crate) fn allows(allow: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    allow.iter().any(|net| net.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_cidr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| parse_cidr(s).unwrap()).collect()
    }

    #[test]
    fn loopback_defaults_match_loopback_only() {
        let v4 = nets(&["127.0.0.0/8"]);
        let v6 = nets(&["::1/128"]);
        assert!(allows(&v4, ip("127.0.0.1")));
        assert!(allows(&v4, ip("127.255.0.9")));
        assert!(!allows(&v4, ip("128.0.0.1")));
        assert!(!allows(&v4, ip("::1")));
        // A dual-stack socket reports IPv4 peers as mapped addresses.
        assert!(allows(&v4, ip("::ffff:127.0.0.1")));
        assert!(allows(&v6, ip("::1")));
        assert!(!allows(&v6, ip("::2")));
        let both = nets(&["127.0.0.0/8", "::1/128"]);
        assert!(allows(&both, ip("127.0.0.1")) && allows(&both, ip("::1")));
        assert!(!allows(&both, ip("192.0.2.1")));
        assert!(!allows(&[], ip("127.0.0.1")));
    }

    #[test]
    fn hosts_zero_prefixes_and_ipv6_networks() {
        let host = nets(&["192.0.2.7"]);
        assert!(allows(&host, ip("192.0.2.7")) && !allows(&host, ip("192.0.2.8")));
        let all = nets(&["0.0.0.0/0"]);
        assert!(allows(&all, ip("203.0.113.1")));
        assert!(allows(&all, ip("::ffff:203.0.113.1")));
        assert!(!allows(&all, ip("2001:db8::1")));
        let net6 = nets(&["2001:db8::/32"]);
        assert!(allows(&net6, ip("2001:db8:1::1")) && !allows(&net6, ip("2001:db9::1")));
    }
}
