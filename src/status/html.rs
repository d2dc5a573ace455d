//! The status page: one server-rendered HTML document with inline CSS and no scripts or
//! external assets, so it works from an air-gapped host and through any proxy. Every piece of
//! text from the config, a probe or the request (the search, echoed in the form and links) is
//! escaped.
//!
//! It shows one page of pools (`listing.rs`: a search, a state filter, pools in trouble first),
//! a plain GET form to change them, and previous/next links that keep them; the cards above
//! count the whole fleet and link to its pools in trouble.

use std::fmt::Write as _;

use super::listing::{StateFilter, href};
use super::report::{BackendReport, PageReport, Report, age, millis};

/// The page refreshes itself this often (seconds): health changes within seconds.
const REFRESH: u32 = 10;

const STYLE: &str = r#"
:root { --fg: #1d2330; --muted: #667085; --line: #e4e7ec; --bg: #f6f7f9; --card: #fff;
  --up: #137a3a; --up-bg: #e3f5e9; --down: #b42318; --down-bg: #fde7e5;
  --unknown: #475467; --unknown-bg: #eceff3; --drained: #93520a; --drained-bg: #fdf0d5; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px 32px; background: var(--bg); color: var(--fg);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
header { display: flex; align-items: baseline; gap: 16px; flex-wrap: wrap; margin-bottom: 16px; }
h1 { font-size: 22px; margin: 0; }
h2 { font-size: 16px; margin: 0; font-family: ui-monospace, "DejaVu Sans Mono", monospace; }
.meta { color: var(--muted); }
.cards { display: flex; gap: 12px; flex-wrap: wrap; margin-bottom: 20px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: 10px 14px; min-width: 110px; }
.card .n { font-size: 20px; font-weight: 600; }
.card .k { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card.wide { flex: 1; min-width: 260px; }
.pairs span { display: inline-block; margin-right: 14px; white-space: nowrap; }
.pairs b { font-weight: 600; }
section.pool { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  margin-bottom: 16px; overflow: hidden; }
.pool-head { display: flex; align-items: center; gap: 12px; flex-wrap: wrap;
  padding: 10px 14px; border-bottom: 1px solid var(--line); }
.pool-head .meta span { margin-right: 12px; }
table { width: 100%; border-collapse: collapse; }
th, td { text-align: left; padding: 6px 14px; border-bottom: 1px solid var(--line);
  vertical-align: top; }
tr:last-child td { border-bottom: 0; }
th { font-size: 12px; color: var(--muted); font-weight: 600; text-transform: uppercase;
  letter-spacing: .04em; background: #fafbfc; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th.num { text-align: right; }
.mono { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 13px; }
.detail { color: var(--muted); overflow-wrap: anywhere; }
td.probe { white-space: nowrap; color: var(--muted); }
.badge { display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: 12px;
  font-weight: 600; }
.up { color: var(--up); background: var(--up-bg); }
.down { color: var(--down); background: var(--down-bg); }
.unknown { color: var(--unknown); background: var(--unknown-bg); }
.drained { color: var(--drained); background: var(--drained-bg); }
.fail { color: var(--down); }
a.card { color: inherit; text-decoration: none; }
a.card:hover { border-color: var(--muted); }
.card.alert .n { color: var(--down); }
.card .sub { color: var(--muted); font-size: 12px; }
form.find { display: flex; gap: 8px; flex-wrap: wrap; align-items: center; margin-bottom: 12px; }
form.find input[type=search] { flex: 1; min-width: 240px; max-width: 480px; padding: 6px 10px;
  font: inherit; border: 1px solid var(--line); border-radius: 6px; }
form.find select, form.find button { padding: 6px 10px; font: inherit;
  border: 1px solid var(--line); border-radius: 6px; background: var(--card); }
nav.pages { display: flex; gap: 14px; align-items: baseline; flex-wrap: wrap;
  margin: 0 0 14px; color: var(--muted); }
nav.pages a { color: inherit; }
footer { color: var(--muted); font-size: 12px; margin-top: 8px; }
footer a { color: inherit; }
"#;

/// Renders the whole page.
pub(crate) fn page(r: &Report) -> String {
    let mut o = String::with_capacity(8192 + r.pools.len() * 2048);
    let _ = write!(
        o,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"refresh\" content=\"{REFRESH}\">\n<title>lbns status</title>\n\
         <style>{STYLE}</style>\n</head>\n<body>\n"
    );
    let _ = writeln!(
        o,
        "<header><h1>lbns status</h1><div class=\"meta\">version {} · generation {} · up {} · \
         config <span class=\"mono\">{}</span></div></header>",
        esc(&r.version),
        r.generation,
        esc(&age(r.uptime_seconds)),
        esc(&r.config)
    );
    counters(&mut o, r);
    fleet(&mut o, r);
    if let Some(l) = &r.listing {
        search(&mut o, l);
        pages(&mut o, l, r.pools.len());
    }
    if r.pools.is_empty() {
        o.push_str(if r.fleet.pools == 0 {
            "<p class=\"meta\">No pools configured.</p>\n"
        } else {
            "<p class=\"meta\">No pool found.</p>\n"
        });
    }
    for p in &r.pools {
        let _ = write!(
            o,
            "<section class=\"pool\">\n<div class=\"pool-head\"><h2>{}</h2>{}\
             <div class=\"meta\"><span>policy {}</span><span>TTL {}s</span>{}\
             <span>{} served</span></div></div>\n",
            esc(&p.name),
            p.all_down_note().map_or(String::new(), |n| format!(
                "<span class=\"badge down\">all down: {}</span>",
                esc(n)
            )),
            esc(&p.policy),
            esc(&p.ttl_now()),
            p.failover_seconds
                .map_or(String::new(), |f| format!("<span>failover {f}s</span>")),
            p.served
        );
        o.push_str(
            "<table>\n<thead><tr><th>Backend</th><th>Address</th><th>State</th>\
             <th>In answers</th><th class=\"num\">Load</th><th class=\"num\">Latency</th>\
             <th class=\"num\">Flips</th><th>Probe</th><th>Last probe</th></tr></thead>\n<tbody>\n",
        );
        for b in &p.backends {
            backend_row(&mut o, b);
        }
        o.push_str("</tbody>\n</table>\n</section>\n");
    }
    if let Some(l) = r.listing.as_ref().filter(|_| r.pools.len() > 10) {
        // Again under a long page, where the reader ends up.
        pages(&mut o, l, r.pools.len());
    }
    o.push_str(
        "<footer>Also as <a href=\"status.json\">status.json</a> and \
         <a href=\"metrics\">metrics</a>. Refreshes every 10 s.</footer>\n</body>\n</html>\n",
    );
    o
}

fn counters(o: &mut String, r: &Report) {
    let q = &r.queries;
    o.push_str("<div class=\"cards\">\n");
    for (k, n) in [
        ("UDP queries", q.udp),
        ("TCP queries", q.tcp),
        ("Dropped", q.dropped),
        ("Truncated", q.truncated),
    ] {
        let _ = writeln!(
            o,
            "<div class=\"card\"><div class=\"k\">{k}</div><div class=\"n\">{n}</div></div>"
        );
    }
    for (k, m) in [
        ("Responses by rcode", &q.rcodes),
        ("Queries by type", &q.qtypes),
    ] {
        let _ = write!(
            o,
            "<div class=\"card wide\"><div class=\"k\">{k}</div><div class=\"pairs\">"
        );
        if m.is_empty() {
            o.push_str("<span>none yet</span>");
        }
        for (name, n) in m {
            let _ = write!(o, "<span>{} <b>{n}</b></span>", esc(name));
        }
        o.push_str("</div></div>\n");
    }
    o.push_str("</div>\n");
}

/// Whole-fleet counts; those that are not zero link to the pools they count.
fn fleet(o: &mut String, r: &Report) {
    let f = &r.fleet;
    o.push_str("<div class=\"cards fleet\">\n");
    let _ = writeln!(
        o,
        "<a class=\"card\" href=\"./\"><div class=\"k\">Pools</div><div class=\"n\">{}</div>\
         <div class=\"sub\">{}</div></a>",
        f.pools,
        backends(f.backends)
    );
    for (k, n, sub, state) in [
        (
            "All down",
            f.pools_all_down,
            String::new(),
            StateFilter::AllDown,
        ),
        (
            "With a backend down",
            f.pools_down,
            format!("{} out of answers", backends(f.backends_out)),
            StateFilter::Down,
        ),
        (
            "With a backend drained",
            f.pools_drained,
            format!("{} drained", backends(f.backends_drained)),
            StateFilter::Drained,
        ),
    ] {
        let alert = if n > 0 && state != StateFilter::Drained {
            " alert"
        } else {
            ""
        };
        let _ = writeln!(
            o,
            "<a class=\"card{alert}\" href=\"{}\"><div class=\"k\">{k}</div>\
             <div class=\"n\">{n}</div><div class=\"sub\">{sub}</div></a>",
            esc(&href("", state, super::listing::PER_PAGE, 1))
        );
    }
    o.push_str("</div>\n");
}

/// `1 backend`, `2 backends`.
fn backends(n: usize) -> String {
    format!("{n} backend{}", if n == 1 { "" } else { "s" })
}

/// The search form: a plain GET of this page, so it needs no script.
fn search(o: &mut String, l: &PageReport) {
    let _ = write!(
        o,
        "<form class=\"find\" method=\"get\" action=\"./\" role=\"search\">\
         <input type=\"search\" name=\"q\" value=\"{}\" \
         placeholder=\"pool, backend or address\" aria-label=\"Find pools\">\
         <select name=\"state\" aria-label=\"Pools to show\">",
        esc(&l.q)
    );
    for f in StateFilter::ALL {
        let _ = write!(
            o,
            "<option value=\"{}\"{}>{}</option>",
            f.as_str(),
            if f == l.state { " selected" } else { "" },
            f.label()
        );
    }
    o.push_str("</select>");
    if l.per != super::listing::PER_PAGE {
        let _ = write!(
            o,
            "<input type=\"hidden\" name=\"per\" value=\"{}\">",
            l.per
        );
    }
    o.push_str("<button type=\"submit\">Find</button></form>\n");
}

/// Which pools these are, and links to the pages before and after.
fn pages(o: &mut String, l: &PageReport, shown: usize) {
    o.push_str("<nav class=\"pages\">");
    let first = (l.page - 1) * l.per;
    let _ = write!(
        o,
        "<span class=\"found\">{} of {} pool{}",
        if shown == 0 {
            "none".to_owned()
        } else {
            format!("{}–{}", first + 1, first + shown)
        },
        l.matched,
        if l.matched == 1 { "" } else { "s" },
    );
    if !l.q.is_empty() {
        let _ = write!(o, " matching “{}”", esc(&l.q));
    }
    if l.state != StateFilter::All {
        let _ = write!(o, " with {}", l.state.label());
    }
    o.push_str(" · trouble first</span>");
    if l.page > 1 {
        let _ = write!(
            o,
            "<a rel=\"prev\" href=\"{}\">← previous</a>",
            esc(&href(&l.q, l.state, l.per, l.page - 1))
        );
    }
    let _ = write!(o, "<span>page {} of {}</span>", l.page, l.pages);
    if l.page < l.pages {
        let _ = write!(
            o,
            "<a rel=\"next\" href=\"{}\">next →</a>",
            esc(&href(&l.q, l.state, l.per, l.page + 1))
        );
    }
    o.push_str("</nav>\n");
}

fn backend_row(o: &mut String, b: &BackendReport) {
    let state_class = match b.state.as_str() {
        "up" => "up",
        "down" => "down",
        _ => "unknown",
    };
    let answers = match b.in_answers() {
        "yes" => "<span class=\"badge up\">yes</span>",
        "drained" => "<span class=\"badge drained\">drained</span>",
        _ => "<span class=\"badge down\">no</span>",
    };
    let last = match (b.last_probe_age_seconds, b.last_ok) {
        (Some(a), Some(ok)) => format!(
            "{} ago · <span class=\"{}\">{}</span> <span class=\"detail\">{}</span>",
            esc(&age(a)),
            if ok { "" } else { "fail" },
            if ok { "ok" } else { "failed" },
            esc(b.last_result.as_deref().unwrap_or(""))
        ),
        _ if b.probe == "none" => "<span class=\"meta\">not probed</span>".to_owned(),
        _ => "<span class=\"meta\">not yet</span>".to_owned(),
    };
    let _ = writeln!(
        o,
        "<tr><td><b>{}</b></td><td class=\"mono\">{}</td>\
         <td><span class=\"badge {state_class}\">{}</span></td><td>{answers}</td>\
         <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
         <td class=\"mono probe\" title=\"{}\">{}</td><td>{last}</td></tr>",
        esc(&b.name),
        esc(&b.address),
        esc(&b.state),
        b.load.map_or("–".to_owned(), |l| format!("{l:.2}")),
        b.latency_seconds.map_or("–".to_owned(), millis),
        b.flips,
        esc(&b.probe),
        // Just the kind (`http`, `tcp:80`, `lbcd v3:4330`); an HTTP probe's URL, which the
        // result text repeats anyway, is in the tooltip, so the result keeps room to read.
        esc(b.probe.split(' ').next().unwrap_or_default()),
    );
}

/// HTML-escapes text for element content and double-quoted attributes.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::report::tests::sample;

    #[test]
    fn escapes_everything_it_prints() {
        assert_eq!(
            esc("<b a=\"x\">&'</b>"),
            "&lt;b a=&quot;x&quot;&gt;&amp;&#39;&lt;/b&gt;"
        );
        let mut r = sample();
        r.pools[0].backends[0].name = "<script>alert(1)</script>".into();
        r.pools[0].backends[0].last_result = Some("HTTP 500 <html>".into());
        let html = page(&r);
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("HTTP 500 &lt;html&gt;"));
    }

    fn paged(q: &str, state: StateFilter, page: usize, pages: usize) -> Report {
        let mut r = sample();
        r.listing = Some(PageReport {
            q: q.into(),
            state,
            page,
            pages,
            per: 50,
            matched: 120,
        });
        r
    }

    #[test]
    fn echoes_the_search_escaped_in_the_form_and_links() {
        let q = "\"><script>alert(1)</script>&x=1 é";
        let html = page(&paged(q, StateFilter::Down, 2, 3));
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains(
                "name=\"q\" value=\"&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&amp;x=1 é\""
            ),
            "{html}"
        );
        assert!(
            html.contains("matching “&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&amp;x=1 é”"),
            "{html}"
        );
        // Links carry the search percent-encoded, then HTML-escaped (`&` between keys).
        let q_enc = "%22%3E%3Cscript%3Ealert%281%29%3C%2Fscript%3E%26x%3D1%20%C3%A9";
        assert!(
            html.contains(&format!(
                "<a rel=\"prev\" href=\"?q={q_enc}&amp;state=down&amp;page=1\">"
            )),
            "{html}"
        );
        assert!(
            html.contains(&format!(
                "<a rel=\"next\" href=\"?q={q_enc}&amp;state=down&amp;page=3\">"
            )),
            "{html}"
        );
        assert!(html.contains("<option value=\"down\" selected>"), "{html}");
        assert!(html.contains("51–51 of 120 pools"), "{html}");
    }

    #[test]
    fn first_and_last_pages_link_one_way_and_cards_count_the_fleet() {
        let html = page(&paged("", StateFilter::All, 1, 3));
        assert!(!html.contains("rel=\"prev\""), "{html}");
        assert!(html.contains("<a rel=\"next\" href=\"?page=2\">"), "{html}");
        assert!(html.contains("<span>page 1 of 3</span>"), "{html}");
        let html = page(&paged("", StateFilter::All, 3, 3));
        assert!(html.contains("<a rel=\"prev\" href=\"?page=2\">"), "{html}");
        assert!(!html.contains("rel=\"next\""), "{html}");
        // The cards: whole-fleet counts, linking to the pools in trouble.
        assert!(
            html.contains(
                "<a class=\"card alert\" href=\"?state=all-down&amp;page=1\"><div class=\"k\">All down</div><div class=\"n\">1</div>"
            ),
            "{html}"
        );
        assert!(html.contains("2 backends</div>"), "{html}");
        assert!(html.contains("1 backend drained</div>"), "{html}");
        // Nothing found.
        let mut r = paged("nothing", StateFilter::All, 1, 1);
        r.pools.clear();
        assert!(page(&r).contains("No pool found."));
    }

    #[test]
    fn shows_pools_backends_states_and_counters() {
        let html = page(&sample());
        assert!(html.starts_with("<!doctype html>"));
        assert!(html.contains("<h2>www.example.</h2>"));
        assert!(html.contains("<span class=\"badge down\">all down: IPv6</span>"));
        assert!(html.contains("<b>web1</b>"));
        assert!(html.contains("<span class=\"badge up\">up</span>"));
        assert!(html.contains("<span class=\"badge drained\">drained</span>"));
        assert!(html.contains("NOERROR <b>11</b>"));
        assert!(html.contains("up 1h02m"));
        // Self-contained: no external stylesheet, script or image.
        assert!(!html.contains("<script") && !html.contains("<link") && !html.contains("<img"));
    }
}
