//! The client side of lbns's HTTP listeners, for `lbns status`, `reload`, `drain`, `undrain`:
//! the control socket (a Unix socket, everything) or the status listener (TCP, reads only).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{Method, Request, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
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
    #[error("cannot reach lbns at {url}: {reason}\n({hint})")]
    Unreachable {
        /// The request's URL, or `control socket PATH`.
        url: String,
        /// The innermost cause, e.g. `Connection refused (os error 111)`, or `timed out`.
        reason: String,
        /// What to check.
        hint: &'static str,
    },
    /// lbns answered, and said no.
    #[error("{}", body.trim_end())]
    Refused {
        /// The HTTP status, e.g. 403 for a control request to the status listener, 422 for a
        /// rejected reload.
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

/// Where requests go.
enum Target {
    /// A status listener: `http://host:port/`.
    Http { base: Url, http: reqwest::Client },
    /// A control socket.
    Socket(PathBuf),
}

/// Talks to one running lbns.
pub struct Client {
    target: Target,
}

impl Client {
    /// The status listener at `addr`, `host:port` (e.g. `127.0.0.1:8053`, `[::1]:8053`): it
    /// answers reads only.
    pub fn new(addr: &str) -> Result<Client, ClientError> {
        let base = Url::parse(&format!("http://{addr}/"))
            .ok()
            .filter(|u| u.host().is_some() && u.port().is_some() && u.path() == "/")
            .ok_or_else(|| ClientError::Address(addr.to_owned()))?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("a plain HTTP client builds");
        Ok(Client {
            target: Target::Http { base, http },
        })
    }

    /// The control socket at `path` (`[control] socket`): reads and changes.
    pub fn socket(path: &Path) -> Client {
        Client {
            target: Target::Socket(path.to_owned()),
        }
    }

    /// `GET /status.json`.
    pub async fn report(&self) -> Result<Report, ClientError> {
        let body = self.status_json().await?;
        serde_json::from_str(&body).map_err(|e| ClientError::BadReport {
            url: self.describe("status.json", &[]),
            message: e.to_string(),
        })
    }

    /// `GET /status.json`, as sent.
    pub async fn status_json(&self) -> Result<String, ClientError> {
        self.send(Method::GET, "status.json", &[], READ_TIMEOUT)
            .await
    }

    /// `POST /reload`; the server's message.
    pub async fn reload(&self) -> Result<String, ClientError> {
        self.send(Method::POST, "reload", &[], CONTROL_TIMEOUT)
            .await
    }

    /// `POST /drain` or `/undrain`; the server's message.
    pub async fn set_drained(
        &self,
        pool: &str,
        backend: &str,
        drained: bool,
    ) -> Result<String, ClientError> {
        let path = if drained { "drain" } else { "undrain" };
        let query = [("pool", pool), ("backend", backend)];
        self.send(Method::POST, path, &query, CONTROL_TIMEOUT).await
    }

    /// `path?query`, relative to `/`, percent-encoded.
    fn url(base: &Url, path: &str, query: &[(&str, &str)]) -> Url {
        let mut url = base.join(path).expect("a relative path joins");
        if !query.is_empty() {
            // Percent-encodes, so pool and backend names need no care from callers.
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// What a message names as the request's target.
    fn describe(&self, path: &str, query: &[(&str, &str)]) -> String {
        match &self.target {
            Target::Http { base, .. } => Client::url(base, path, query).to_string(),
            Target::Socket(p) => format!("control socket {}", p.display()),
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<String, ClientError> {
        let (status, body) = match &self.target {
            Target::Http { base, http } => {
                let url = Client::url(base, path, query);
                http_request(http, method, &url, timeout).await?
            }
            Target::Socket(socket) => {
                // Any URL will do for its path and query; the socket is the address.
                let base = Url::parse("http://lbns/").expect("a valid URL");
                let url = Client::url(&base, path, query);
                let uri = match url.query() {
                    Some(q) => format!("{}?{q}", url.path()),
                    None => url.path().to_owned(),
                };
                tokio::time::timeout(timeout, socket_request(socket, method, &uri))
                    .await
                    .unwrap_or_else(|_| Err(unreachable_socket(socket, "timed out".to_owned())))?
            }
        };
        if (200..300).contains(&status) {
            Ok(body)
        } else {
            Err(ClientError::Refused { status, body })
        }
    }
}

async fn http_request(
    http: &reqwest::Client,
    method: Method,
    url: &Url,
    timeout: Duration,
) -> Result<(u16, String), ClientError> {
    let unreachable = |e: reqwest::Error| ClientError::Unreachable {
        url: url.to_string(),
        reason: root_cause(&e),
        hint: "is lbns running, with its [status] listener on this address?",
    };
    let response = http
        .request(method, url.clone())
        .timeout(timeout)
        .send()
        .await
        .map_err(unreachable)?;
    let status = response.status().as_u16();
    let body = response.text().await.map_err(unreachable)?;
    Ok((status, body))
}

fn unreachable_socket(socket: &Path, reason: String) -> ClientError {
    let hint = if reason.contains("os error 13") {
        "only the socket's owner (the user lbns runs as), root and its [control] group may \
         use it"
    } else {
        "is lbns running, with this [control] socket?"
    };
    ClientError::Unreachable {
        url: format!("control socket {}", socket.display()),
        reason,
        hint,
    }
}

/// One HTTP/1.1 request over the control socket: (status, body).
async fn socket_request(
    socket: &Path,
    method: Method,
    uri: &str,
) -> Result<(u16, String), ClientError> {
    let fail = |e: &dyn std::error::Error| unreachable_socket(socket, innermost(e));
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| fail(&e))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| fail(&e))?;
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, "lbns")
        .body(Empty::<Bytes>::new())
        .expect("a valid request");
    let exchange = async {
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok::<_, hyper::Error>((status, String::from_utf8_lossy(&body).into_owned()))
    };
    // The connection is driven beside the exchange; it ends when the answer is in.
    tokio::select! {
        r = exchange => r.map_err(|e| fail(&e)),
        Err(e) = connection => Err(fail(&e)),
    }
}

/// The innermost cause's text ("Permission denied (os error 13)").
fn innermost(e: &dyn std::error::Error) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// The innermost error's text ("Connection refused (os error 111)"), which is the useful part
/// of reqwest's chain.
fn root_cause(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".to_owned();
    }
    innermost(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_urls() {
        let c = Client::new("127.0.0.1:8053").unwrap();
        assert_eq!(
            c.describe("drain", &[("pool", "www.example."), ("backend", "a b&c")]),
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
