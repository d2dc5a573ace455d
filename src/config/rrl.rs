//! `[rrl]`: response rate limiting, as BIND, Knot and NSD have it. Off unless
//! `responses_per_second` is set; the semantics are in docs/config.md.

use std::ops::Range;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use super::{Cx, key, parse_cidr};

/// Default: off. The bundled example leaves it off; examples/production.toml turns it on.
pub(crate) const DEFAULT_RRL_RATE: u32 = 0;
/// Every second limited response goes out empty with TC=1 (BIND, Knot and NSD default 2).
pub(crate) const DEFAULT_RRL_SLIP: u32 = 2;
/// Clients are counted per /24 (IPv4) and /56 (IPv6), as BIND, Knot and NSD count them.
pub(crate) const DEFAULT_RRL_IPV4_PREFIX: u8 = 24;
pub(crate) const DEFAULT_RRL_IPV6_PREFIX: u8 = 56;
/// Seconds of excess a flood is remembered for (BIND's default window).
pub(crate) const DEFAULT_RRL_WINDOW: u32 = 15;
/// Buckets in the table: 1 MiB, allocated once at start.
pub(crate) const DEFAULT_RRL_TABLE_SIZE: usize = 65_536;

/// Highest `responses_per_second`: one response per microsecond, the table's time unit.
const MAX_RATE: u32 = 1_000_000;
/// Highest `slip` (Knot's limit).
const MAX_SLIP: u32 = 100;
/// Longest `window` (BIND's limit).
const MAX_WINDOW: u32 = 3600;
/// Table size bounds: at least one group of buckets, at most 16 Mi (256 MiB).
const TABLE_SIZE: Range<usize> = 4..(16 << 20) + 1;

/// `[rrl]` as written. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRrl {
    /// Responses per second allowed to one client prefix for one (class, name); 0 turns rate
    /// limiting off (default 0).
    pub(crate) responses_per_second: Option<Spanned<u32>>,
    /// Every Nth limited response is sent empty with TC=1 instead of dropped; 0 drops them all
    /// (default 2).
    pub(crate) slip: Option<Spanned<u32>>,
    /// Prefix length an IPv4 client is counted by (default 24).
    pub(crate) ipv4_prefix: Option<Spanned<u8>>,
    /// Prefix length an IPv6 client is counted by (default 56).
    pub(crate) ipv6_prefix: Option<Spanned<u8>>,
    /// Seconds of excess remembered: a flood stays limited up to this long after it stops
    /// (default 15).
    pub(crate) window: Option<Spanned<u32>>,
    /// Client networks never limited, as CIDR.
    pub(crate) exempt: Option<Spanned<Vec<String>>>,
    /// Count and log what would be limited, but send every response (default false).
    pub(crate) log_only: Option<bool>,
    /// Buckets in the table, allocated at start (default 65536).
    pub(crate) table_size: Option<Spanned<usize>>,
}

/// The validated `[rrl]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RrlConfig {
    /// 0: off.
    pub(crate) responses_per_second: u32,
    pub(crate) slip: u32,
    pub(crate) ipv4_prefix: u8,
    pub(crate) ipv6_prefix: u8,
    /// In seconds.
    pub(crate) window: u32,
    pub(crate) exempt: Vec<IpNet>,
    pub(crate) log_only: bool,
    /// Applied at start only: the table is allocated once.
    pub(crate) table_size: usize,
}

impl Cx<'_> {
    pub(super) fn rrl(&mut self, raw: RawRrl, table: Range<usize>) -> RrlConfig {
        let RawRrl {
            responses_per_second,
            slip,
            ipv4_prefix,
            ipv6_prefix,
            window,
            exempt,
            log_only,
            table_size,
        } = raw;
        let mut bounded =
            |value: Option<Spanned<u32>>, default: u32, name: &str, range: Range<u32>| {
                let (value, at) = key(value, &table);
                let value = value.unwrap_or(default);
                if !range.contains(&value) {
                    self.invalid(
                        at,
                        format!(
                            "rrl {name} {value} is outside {}..={}",
                            range.start,
                            range.end - 1
                        ),
                    );
                    return default;
                }
                value
            };
        let responses_per_second = bounded(
            responses_per_second,
            DEFAULT_RRL_RATE,
            "responses_per_second",
            0..MAX_RATE + 1,
        );
        let slip = bounded(slip, DEFAULT_RRL_SLIP, "slip", 0..MAX_SLIP + 1);
        let window = bounded(window, DEFAULT_RRL_WINDOW, "window", 1..MAX_WINDOW + 1);
        let mut prefix = |value: Option<Spanned<u8>>, default: u8, name: &str, max: u8| {
            let (value, at) = key(value, &table);
            let value = value.unwrap_or(default);
            if value > max {
                self.invalid(at, format!("rrl {name} /{value} is longer than {max} bits"));
                return default;
            }
            value
        };
        let ipv4_prefix = prefix(ipv4_prefix, DEFAULT_RRL_IPV4_PREFIX, "ipv4_prefix", 32);
        let ipv6_prefix = prefix(ipv6_prefix, DEFAULT_RRL_IPV6_PREFIX, "ipv6_prefix", 128);
        let (exempt_text, at) = key(exempt, &table);
        let mut exempt = Vec::new();
        for text in exempt_text.unwrap_or_default() {
            match parse_cidr(&text) {
                Ok(net) => exempt.push(net),
                Err(e) => self.invalid(at.clone(), format!("rrl exempt: `{text}`: {e}")),
            }
        }
        let (table_size, at) = key(table_size, &table);
        let table_size = table_size.unwrap_or(DEFAULT_RRL_TABLE_SIZE);
        if !TABLE_SIZE.contains(&table_size) {
            self.invalid(
                at,
                format!(
                    "rrl table_size {table_size} is outside {}..={}",
                    TABLE_SIZE.start,
                    TABLE_SIZE.end - 1
                ),
            );
        }
        RrlConfig {
            responses_per_second,
            slip,
            ipv4_prefix,
            ipv6_prefix,
            window,
            exempt,
            log_only: log_only.unwrap_or(false),
            table_size: table_size.clamp(TABLE_SIZE.start, TABLE_SIZE.end - 1),
        }
    }
}
