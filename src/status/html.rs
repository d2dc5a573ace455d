//! The status page: one server-rendered HTML document with inline CSS and no scripts or
//! external assets, so it works from an air-gapped host and through any proxy. Every piece of
//! text from the config or a probe is escaped.

use std::fmt::Write as _;

use super::report::{BackendReport, Report, age, millis};

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
    if r.pools.is_empty() {
        o.push_str("<p class=\"meta\">No pools configured.</p>\n");
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
