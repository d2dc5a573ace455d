//! The client side of the status listener, for `lbns status`, `reload`, `drain`, `undrain`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use reqwest::Url;

use super::Report;

/// How long one request may take. A reload re-probes new backends (bounded by their
/// timeouts), so it gets longer than the reads.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
const CONTROL_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a request to lbns failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address given is not `host:port`; holds it as given.
    #[error("{0} is not a host:port address such as 127.0.0.1:8053")]
    Address(String),
    /// No HTTP answer: refused, timed out, or cut off mid-body.
    #[error(
        "cannot reach lbns at {url}: {reason}\n(is lbns running, with its [status] listener on this address?)"
    )]
    Unreachable {
        /// The request's URL.
        url: String,
        /// The innermost cause, e.g. `Connection refused (os error 111)`, or `timed out`.
        reason: String,
    },
    /// lbns answered, and said no.
    #[error("{}", body.trim_end())]
    Refused {
        /// The HTTP status, e.g. 403 from outside `[status] allow`, 422 for a rejected reload.
        status: u16,
        /// lbns's explanation, printed as the error.
        body: String,
    },
    /// `/status.json` answered with something that is not a [`Report`].
    #[error("{url} did not answer with a status report: {message}")]
    BadReport {
        /// The request's URL.
        url: String,
        /// serde_json's message.
        message: String,
    },
}

/// The address a client on this host should use for a status listener bound to `listen`:
/// the first one, with a wildcard address replaced by loopback. `None` when the listener is
/// off or its port is chosen at bind time (0).
pub fn reachable(listen: &[SocketAddr]) -> Option<SocketAddr> {
    let mut addr = *listen.first()?;
    if addr.port() == 0 {
        return None;
    }
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            IpAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        });
    }
    Some(addr)
}

/// Talks to one lbns status listener.
pub struct Client {
    base: Url,
    http: reqwest::Client,
}

impl Client {
    /// `addr` is `host:port` (e.g. `127.0.0.1:8053`, `[::1]:8053`).
    pub fn new(addr: &str) -> Result<Client, ClientError> {
        let base = Url::parse(&format!("http://{addr}/"))
            .ok()
            .filter(|u| u.host().is_some() && u.port().is_some() && u.path() == "/")
            .ok_or_else(|| ClientError::Address(addr.to_owned()))?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("a plain HTTP client builds");
        Ok(Client { base, http })
    }

    /// `GET /status.json`.
    pub async fn report(&self) -> Result<Report, ClientError> {
        let body = self.status_json().await?;
        serde_json::from_str(&body).map_err(|e| ClientError::BadReport {
            url: self.url("status.json", &[]).to_string(),
            message: e.to_string(),
        })
    }

    /// `GET /status.json`, as sent.
    pub async fn status_json(&self) -> Result<String, ClientError> {
        let url = self.url("status.json", &[]);
        self.send(self.http.get(url.clone()).timeout(READ_TIMEOUT), &url)
            .await
    }

    /// `POST /reload`; the server's message.
    pub async fn reload(&self) -> Result<String, ClientError> {
        self.post("reload", &[]).await
    }

    /// `POST /drain` or `/undrain`; the server's message.
    pub async fn set_drained(
        &self,
        pool: &str,
        backend: &str,
        drained: bool,
    ) -> Result<String, ClientError> {
        let path = if drained { "drain" } else { "undrain" };
        self.post(path, &[("pool", pool), ("backend", backend)])
            .await
    }

    async fn post(&self, path: &str, query: &[(&str, &str)]) -> Result<String, ClientError> {
        let url = self.url(path, query);
        self.send(self.http.post(url.clone()).timeout(CONTROL_TIMEOUT), &url)
            .await
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> Url {
        let mut url = self.base.join(path).expect("a relative path joins");
        if !query.is_empty() {
            // Percent-encodes, so pool and backend names need no care from callers.
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        url: &Url,
    ) -> Result<String, ClientError> {
        let response = request.send().await.map_err(|e| ClientError::Unreachable {
            url: url.to_string(),
            reason: root_cause(&e),
        })?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| ClientError::Unreachable {
                url: url.to_string(),
                reason: root_cause(&e),
            })?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(ClientError::Refused {
                status: status.as_u16(),
                body,
            })
        }
    }
}

/// The innermost error's text ("Connection refused (os error 111)"), which is the useful part
/// of reqwest's chain.
fn root_cause(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".to_owned();
    }
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_urls() {
        let c = Client::new("127.0.0.1:8053").unwrap();
        assert_eq!(
            c.url("drain", &[("pool", "www.example."), ("backend", "a b&c")])
                .as_str(),
            "http://127.0.0.1:8053/drain?pool=www.example.&backend=a+b%26c"
        );
        assert!(Client::new("[::1]:8053").is_ok());
        let addrs = |s: &[&str]| s.iter().map(|a| a.parse().unwrap()).collect::<Vec<_>>();
        assert_eq!(
            reachable(&addrs(&["0.0.0.0:8053", "[::1]:9"])),
            Some("127.0.0.1:8053".parse().unwrap())
        );
        assert_eq!(
            reachable(&addrs(&["[::]:8053"])),
            Some("[::1]:8053".parse().unwrap())
        );
        assert_eq!(reachable(&addrs(&["127.0.0.1:0"])), None);
        assert_eq!(reachable(&[]), None);
        for bad in ["127.0.0.1", "http://x:1", "x:1/path", ""] {
            assert!(
                matches!(Client::new(bad), Err(ClientError::Address(_))),
                "{bad}"
            );
        }
    }
}
