//! Which pools one status page lists: a search (`q`), a state filter (`state`), pools in trouble
//! first, and one page (`page`, `per`) of the result. Pure: it sees each pool only as its name,
//! its backends and a [`Trouble`] summary, so the server builds the full view of the pools on
//! the page and of no other; a fleet of 10,000 pools costs one cheap pass, not 10,000 tables.

use std::fmt::Write as _;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Pools on a page unless `per=` says otherwise: one screenful or two of one-backend pools.
pub(crate) const PER_PAGE: usize = 50;
/// The most `per=` may ask: a page of 500 ten-backend pools is still under a few MB.
pub(crate) const MAX_PER_PAGE: usize = 500;
/// Longer searches are cut here (no pool name is longer than 255 octets, RFC 1035 §2.3.4).
const MAX_QUERY: usize = 255;

/// The query string of `/` and `/status.json`, as given. Every key is optional, and a value
/// that does not parse falls back to its default rather than failing the page.
#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct Params {
    /// Case-insensitive text to find in a pool's name, a backend's name or address.
    pub(crate) q: Option<String>,
    /// `all` (default), `problems`, `down`, `all-down` or `drained`.
    pub(crate) state: Option<String>,
    /// 1-based page number (default 1; past the last page: the last page).
    pub(crate) page: Option<String>,
    /// Pools per page (default [`PER_PAGE`], at most [`MAX_PER_PAGE`]).
    pub(crate) per: Option<String>,
}

impl Params {
    /// No key given at all: `/status.json` then answers with every pool, in config order, as
    /// it always has (`lbns status` reads it so).
    pub(crate) fn is_empty(&self) -> bool {
        self.q.is_none() && self.state.is_none() && self.page.is_none() && self.per.is_none()
    }
}

/// What is wrong with one pool, as the listing sorts and filters by it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Trouble {
    /// No backend of a family (IPv4 or IPv6) is usable: answers follow `all_down`.
    pub(crate) all_down: bool,
    /// Backends out of answers other than drained ones: down, not yet probed, stale, outvoted.
    pub(crate) out: usize,
    /// Backends an operator drained.
    pub(crate) drained: usize,
}

impl Trouble {
    /// How bad: 3 all down, 2 a backend out, 1 a backend drained, 0 fine. Pools are listed
    /// from the worst down, so the first page shows what needs a person.
    pub(crate) fn rank(self) -> u8 {
        if self.all_down {
            3
        } else if self.out > 0 {
            2
        } else if self.drained > 0 {
            1
        } else {
            0
        }
    }
}

/// `state=`: which pools to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum StateFilter {
    /// Every pool.
    All,
    /// Pools with anything to look at: all down, a backend out, or a backend drained.
    Problems,
    /// Pools with a backend out of answers (all down included), drains aside.
    Down,
    /// Pools with no usable backend in a family.
    AllDown,
    /// Pools with a drained backend.
    Drained,
}

impl StateFilter {
    /// Every filter, in the order the page's menu offers them.
    pub(crate) const ALL: [StateFilter; 5] = [
        StateFilter::All,
        StateFilter::Problems,
        StateFilter::Down,
        StateFilter::AllDown,
        StateFilter::Drained,
    ];

    /// Its `state=` value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            StateFilter::All => "all",
            StateFilter::Problems => "problems",
            StateFilter::Down => "down",
            StateFilter::AllDown => "all-down",
            StateFilter::Drained => "drained",
        }
    }

    /// How the page's menu names it.
    pub(crate) fn label(self) -> &'static str {
        match self {
            StateFilter::All => "all pools",
            StateFilter::Problems => "any problem",
            StateFilter::Down => "a backend down",
            StateFilter::AllDown => "all down",
            StateFilter::Drained => "a backend drained",
        }
    }

    fn parse(s: &str) -> Option<StateFilter> {
        StateFilter::ALL
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(s.trim()))
    }

    fn admits(self, t: Trouble) -> bool {
        match self {
            StateFilter::All => true,
            StateFilter::Problems => t.rank() > 0,
            StateFilter::Down => t.all_down || t.out > 0,
            StateFilter::AllDown => t.all_down,
            StateFilter::Drained => t.drained > 0,
        }
    }
}

/// One request's listing, parsed from its [`Params`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listing {
    /// The search as given (trimmed, cut at 255 characters): echoed back in the form.
    pub(crate) q: String,
    /// The same, lowercased: what names are matched against.
    needle: String,
    pub(crate) state: StateFilter,
    /// The page asked for, from 1.
    pub(crate) page: usize,
    pub(crate) per: usize,
}

impl Default for Listing {
    fn default() -> Listing {
        Listing::new(&Params::default())
    }
}

impl Listing {
    /// Parses the query string leniently: an unknown state lists all pools, a page that is not
    /// a number is page 1, `per` is kept within 1..=[`MAX_PER_PAGE`].
    pub(crate) fn new(p: &Params) -> Listing {
        let q: String =
            p.q.as_deref()
                .unwrap_or("")
                .trim()
                .chars()
                .take(MAX_QUERY)
                .collect();
        let number = |s: &Option<String>| s.as_deref().and_then(|s| s.trim().parse::<usize>().ok());
        Listing {
            needle: q.to_lowercase(),
            q,
            state: p
                .state
                .as_deref()
                .and_then(StateFilter::parse)
                .unwrap_or(StateFilter::All),
            page: number(&p.page).unwrap_or(1).max(1),
            per: number(&p.per).unwrap_or(PER_PAGE).clamp(1, MAX_PER_PAGE),
        }
    }

    /// Whether a pool is found by the search: its name, or one of its backends' names or
    /// addresses, contains `q`, ignoring ASCII case. An empty search finds every pool.
    pub(crate) fn finds<'a>(
        &self,
        pool: &str,
        backends: impl IntoIterator<Item = (&'a str, IpAddr)>,
    ) -> bool {
        if self.needle.is_empty() || contains(pool, &self.needle) {
            return true;
        }
        // An address can only match text made of what addresses are written with.
        let address_like = self
            .needle
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == '.' || c == ':');
        let mut text = String::new();
        backends.into_iter().any(|(name, address)| {
            contains(name, &self.needle)
                || address_like && {
                    text.clear();
                    let _ = write!(text, "{address}");
                    contains(&text, &self.needle)
                }
        })
    }

    /// The page of pools to show, from each found pool's index and trouble (in config order):
    /// those the state filter admits, the worst first and in config order among equals.
    pub(crate) fn window(&self, found: impl IntoIterator<Item = (usize, Trouble)>) -> Window {
        let mut admitted: Vec<(u8, usize)> = found
            .into_iter()
            .filter(|(_, t)| self.state.admits(*t))
            .map(|(i, t)| (t.rank(), i))
            .collect();
        // Stable: config order within a rank.
        admitted.sort_by_key(|&(rank, _)| std::cmp::Reverse(rank));
        let matched = admitted.len();
        let pages = matched.div_ceil(self.per).max(1);
        let page = self.page.min(pages);
        let pools = admitted
            .into_iter()
            .skip((page - 1) * self.per)
            .take(self.per)
            .map(|(_, i)| i)
            .collect();
        Window {
            pools,
            matched,
            page,
            pages,
        }
    }
}

/// The query string (`?q=…&state=…&page=N`, percent-encoded, not HTML-escaped) of page `page`
/// of a listing; keys at their defaults are left out.
pub(crate) fn href(q: &str, state: StateFilter, per: usize, page: usize) -> String {
    let mut out = String::from("?");
    let mut pair = |k: &str, v: &str| {
        if out.len() > 1 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        percent_encode(&mut out, v);
    };
    if !q.is_empty() {
        pair("q", q);
    }
    if state != StateFilter::All {
        pair("state", state.as_str());
    }
    if per != PER_PAGE {
        pair("per", &per.to_string());
    }
    pair("page", &page.to_string());
    out
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Window {
    /// Indices (in the model) of the pools on the page, in the order shown.
    pub(crate) pools: Vec<usize>,
    /// Pools found and admitted, on every page.
    pub(crate) matched: usize,
    /// The page shown, from 1: the one asked for, or the last if that is past the end.
    pub(crate) page: usize,
    /// Pages in all (1 when nothing matched).
    pub(crate) pages: usize,
}

/// `haystack` contains `needle` (already lowercase), ignoring ASCII case.
fn contains(haystack: &str, needle: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    n.len() <= h.len() && h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

/// Appends `v` percent-encoded for a query string: everything but RFC 3986 §2.3's unreserved
/// characters is written as `%XX` of its UTF-8 octets.
fn percent_encode(out: &mut String, v: &str) {
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(q: &str, state: &str, page: &str, per: &str) -> Params {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        Params {
            q: some(q),
            state: some(state),
            page: some(page),
            per: some(per),
        }
    }

    const FINE: Trouble = Trouble {
        all_down: false,
        out: 0,
        drained: 0,
    };

    #[test]
    fn parses_leniently_and_caps_per() {
        let l = Listing::new(&Params::default());
        assert_eq!(
            (l.q.as_str(), l.state, l.page, l.per),
            ("", StateFilter::All, 1, 50)
        );
        let l = Listing::new(&params("  Web ", "ALL-DOWN", "3", "20"));
        assert_eq!(
            (l.q.as_str(), l.state, l.page, l.per),
            ("Web", StateFilter::AllDown, 3, 20)
        );
        let l = Listing::new(&params("", "bogus", "-2", "100000"));
        assert_eq!(
            (l.state, l.page, l.per),
            (StateFilter::All, 1, MAX_PER_PAGE)
        );
        let l = Listing::new(&params("", "", "0", "0"));
        assert_eq!((l.page, l.per), (1, 1));
        let l = Listing::new(&params(&"x".repeat(1000), "", "", ""));
        assert_eq!(l.q.len(), MAX_QUERY);
        assert!(Params::default().is_empty() && !params("", "", "2", "").is_empty());
    }

    #[test]
    fn finds_pools_by_name_backend_or_address_ignoring_case() {
        let l = Listing::new(&params("WWW.Cluster", "", "", ""));
        let addr: IpAddr = "10.1.2.3".parse().unwrap();
        assert!(l.finds("www.cluster.example.", []));
        assert!(!l.finds("api.cluster.example.", [("web1", addr)]));
        let l = Listing::new(&params("web1", "", "", ""));
        assert!(l.finds("api.cluster.example.", [("WEB1", addr)]));
        let l = Listing::new(&params("10.1.2", "", "", ""));
        assert!(l.finds("api.", [("a", "10.9.9.9".parse().unwrap()), ("b", addr)]));
        assert!(!l.finds("api.", [("a", "10.9.9.9".parse().unwrap())]));
        let l = Listing::new(&params("::1", "", "", ""));
        assert!(l.finds("api.", [("six", "::1".parse().unwrap())]));
        // Nothing to find: every pool.
        assert!(Listing::default().finds("anything.", []));
        // Longer than the name: no match, no panic.
        assert!(!Listing::new(&params("a-very-long-search", "", "", "")).finds("a.", []));
    }

    #[test]
    fn windows_put_trouble_first_and_page_through() {
        // 0: fine, 1: drained, 2: all down, 3: fine, 4: a backend out, 5: out and drained.
        let pools = [
            FINE,
            Trouble { drained: 1, ..FINE },
            Trouble {
                all_down: true,
                out: 2,
                ..FINE
            },
            FINE,
            Trouble { out: 1, ..FINE },
            Trouble {
                out: 1,
                drained: 1,
                ..FINE
            },
        ];
        let found = || pools.iter().copied().enumerate();
        let window = |state: &str, page: &str, per: &str| {
            Listing::new(&params("", state, page, per)).window(found())
        };
        let w = window("", "", "");
        assert_eq!(w.pools, [2, 4, 5, 1, 0, 3]);
        assert_eq!((w.matched, w.page, w.pages), (6, 1, 1));
        let w = window("", "2", "4");
        assert_eq!(
            (w.pools.as_slice(), w.page, w.pages),
            ([0, 3].as_slice(), 2, 2)
        );
        // Past the end: the last page.
        assert_eq!(window("", "9", "4").page, 2);
        assert_eq!(window("problems", "", "").pools, [2, 4, 5, 1]);
        assert_eq!(window("down", "", "").pools, [2, 4, 5]);
        assert_eq!(window("all-down", "", "").pools, [2]);
        assert_eq!(window("drained", "", "").pools, [5, 1]);
        // Nothing admitted: one empty page.
        let w =
            Listing::new(&params("", "all-down", "3", "")).window(found().filter(|(i, _)| *i != 2));
        assert_eq!((w.pools.len(), w.matched, w.page, w.pages), (0, 0, 1, 1));
        // 10,000 pools, 50 a page: 200 pages, the last one full.
        let w = Listing::new(&params("", "", "200", "")).window((0..10_000).map(|i| (i, FINE)));
        assert_eq!((w.pools.len(), w.pools[0], w.pages), (50, 9950, 200));
    }

    #[test]
    fn hrefs_keep_the_search_and_encode_it() {
        let l = Listing::new(&params("a b&c=\"<d>\"é", "down", "1", "20"));
        assert_eq!(
            href(&l.q, l.state, l.per, 2),
            "?q=a%20b%26c%3D%22%3Cd%3E%22%C3%A9&state=down&per=20&page=2"
        );
        assert_eq!(href("", StateFilter::All, PER_PAGE, 3), "?page=3");
    }
}
