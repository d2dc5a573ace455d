//! HTTP health probes with reqwest: status, optional body text and load header, redirects not
//! followed (a redirect to a maintenance page is not "up"), body size capped.

use std::time::Duration;

use crate::config::HttpProbe;

/// The shared client: no redirects, no proxies from the environment (probes go straight to the
/// backend), no connection reuse (a probe must see a fresh connect to notice a dead process).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .pool_max_idle_per_host(0)
        .user_agent(concat!("lbns/", env!("CARGO_PKG_VERSION"), " health-check"))
        .build()
        .expect("building the HTTP client")
}

/// One HTTP probe. Ok carries the reported load (if `load_header` is set) and a note.
pub async fn probe(
    client: &reqwest::Client,
    h: &HttpProbe,
    timeout: Duration,
) -> Result<(Option<f64>, String), String> {
    let mut request = client.get(&h.url).timeout(timeout);
    if let Some(host) = &h.host {
        request = request.header(reqwest::header::HOST, host);
    }
    let mut response = request.send().await.map_err(|e| describe(&h.url, &e))?;
    let status = response.status().as_u16();
    if !h.expect_status.contains(&status) {
        return Err(format!(
            "{}: status {status}, expected {:?}",
            h.url, h.expect_status
        ));
    }
    let load = match &h.load_header {
        Some(name) => {
            let value = response
                .headers()
                .get(name)
                .ok_or_else(|| format!("{}: no {name} header", h.url))?;
            let text = value.to_str().unwrap_or("").trim();
            Some(
                text.parse::<f64>()
                    .ok()
                    .filter(|l| l.is_finite() && *l >= 0.0)
                    .ok_or_else(|| format!("{}: {name} `{text}` is not a load", h.url))?,
            )
        }
        None => None,
    };
    if let Some(needle) = &h.body_contains {
        let mut body = Vec::new();
        while body.len() < h.max_body {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => return Err(describe(&h.url, &e)),
            }
        }
        body.truncate(h.max_body);
        let needle = needle.as_bytes();
        if !body.windows(needle.len().max(1)).any(|w| w == needle) {
            return Err(format!(
                "{}: body (first {} bytes) lacks {:?}",
                h.url,
                body.len(),
                String::from_utf8_lossy(needle)
            ));
        }
    }
    Ok((load, format!("{}: status {status}", h.url)))
}

/// reqwest's errors nest the useful part (connection refused) in sources.
fn describe(url: &str, e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    format!("{url}: {text}")
}
