//! HTTP health probes with reqwest: status, optional body text and load header, redirects not
//! followed (a redirect to a maintenance page is not "up"), body size capped.

use std::net::IpAddr;
use std::time::Duration;

use super::{Probe, ProbeFuture, Reading, Target};

/// Most body bytes read when the body is checked, unless `max_body` says otherwise.
pub(crate) const DEFAULT_MAX_BODY: usize = 64 * 1024;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Filled into `{port}`; required when the URL uses `{port}` (the default URL does).
    port: Option<u16>,
    /// URL template; `{address}` and `{port}` are filled in (default `http://{address}:{port}/`).
    url: Option<String>,
    /// Host header to send instead of the address.
    host: Option<String>,
    /// Status codes that mean up (default `[200]`).
    expect_status: Option<Vec<u16>>,
    /// The body must contain this text.
    body_contains: Option<String>,
    /// A response header carrying the backend's load as a number.
    load_header: Option<String>,
    /// Most body bytes read (default 65536).
    max_body: Option<usize>,
    /// The address to connect from.
    source: Option<IpAddr>,
}

/// `kind = "http"`: up when a GET answers with an expected status (and body text, and a load
/// header, when asked for).
pub(crate) fn build(table: &toml::Table, target: &Target<'_>) -> Result<Box<dyn Probe>, String> {
    let Settings {
        port,
        url,
        host,
        expect_status,
        body_contains,
        load_header,
        max_body,
        source,
    } = super::settings("http", table)?;
    super::check_source(source, target)?;
    let template = url.unwrap_or_else(|| "http://{address}:{port}/".to_owned());
    if template.contains("{port}") && port.is_none() {
        return Err(format!(
            "http probe URL `{template}` uses {{port}} but no port is set"
        ));
    }
    let address = match target.address {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    };
    let url = template
        .replace("{address}", &address)
        .replace("{port}", &port.unwrap_or(80).to_string());
    match reqwest::Url::parse(&url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {}
        Ok(_) => return Err(format!("probe URL `{url}` is not http or https")),
        Err(e) => return Err(format!("probe URL `{url}` is not a URL: {e}")),
    }
    Ok(Box::new(HttpProbe {
        // A client of its own when it must connect from a given address.
        client: source.map_or_else(
            || target.shared.http.clone(),
            |s| {
                builder()
                    .local_address(s)
                    .build()
                    .expect("building the HTTP client")
            },
        ),
        timeout: target.timeout,
        url,
        host,
        expect_status: expect_status.unwrap_or_else(|| vec![200]),
        body_contains,
        load_header,
        max_body: max_body.unwrap_or(DEFAULT_MAX_BODY),
    }))
}

/// One backend's HTTP probe, its URL filled in.
#[derive(Debug)]
struct HttpProbe {
    client: reqwest::Client,
    timeout: Duration,
    /// The URL with `{address}` and `{port}` filled in for this backend.
    url: String,
    host: Option<String>,
    expect_status: Vec<u16>,
    body_contains: Option<String>,
    load_header: Option<String>,
    max_body: usize,
}

impl Probe for HttpProbe {
    fn run(&mut self) -> ProbeFuture<'_> {
        Box::pin(async move {
            probe(&self.client, self, self.timeout)
                .await
                .map(|(load, detail)| Reading {
                    load,
                    lbcd: None,
                    detail,
                })
        })
    }

    fn describe(&self) -> String {
        format!("http {}", self.url)
    }
}

/// The shared client: no redirects, no proxies from the environment (probes go straight to the
/// backend), no connection reuse (a probe must see a fresh connect to notice a dead process).
pub(crate) fn client() -> reqwest::Client {
    builder().build().expect("building the HTTP client")
}

fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .pool_max_idle_per_host(0)
        .user_agent(concat!("lbns/", env!("CARGO_PKG_VERSION"), " health-check"))
}

/// One HTTP probe. Ok carries the reported load (if `load_header` is set) and a note.
async fn probe(
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
