//! Probes: how lbns learns whether a backend is up and how loaded it is.
//!
//! One [`Prober`] runs any probe kind and turns the result into an [`Observation`]; it never
//! returns an error — a failed probe is an observation with `ok = false` and the cause.

pub mod http;
pub mod lbcd;
pub mod tcp;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::config::ProbeKind;
use crate::health::Observation;

/// What one backend's probes keep from one run to the next: its TCP socket (see [`tcp`]).
#[derive(Debug, Default)]
pub struct ProbeState {
    tcp: tcp::TcpState,
}

/// Runs probes. Cheap to clone (the HTTP client is shared).
#[derive(Clone)]
pub struct Prober {
    http: reqwest::Client,
}

impl Default for Prober {
    fn default() -> Self {
        Prober::new()
    }
}

impl Prober {
    pub fn new() -> Prober {
        Prober {
            http: http::client(),
        }
    }

    /// Probes `address` once; the whole probe (connect, request, body) is bounded by `timeout`.
    pub async fn probe(
        &self,
        kind: &ProbeKind,
        address: IpAddr,
        timeout: Duration,
        state: &mut ProbeState,
    ) -> Observation {
        let start = Instant::now();
        let result = tokio::time::timeout(timeout, self.run(kind, address, timeout, state)).await;
        let latency = start.elapsed();
        match result {
            Ok(Ok((load, lbcd, detail))) => Observation {
                ok: true,
                load,
                lbcd,
                detail,
                latency,
            },
            Ok(Err(detail)) => Observation {
                ok: false,
                load: None,
                lbcd: None,
                detail,
                latency,
            },
            Err(_) => Observation {
                ok: false,
                load: None,
                lbcd: None,
                detail: format!("timed out after {}", humantime::format_duration(timeout)),
                latency,
            },
        }
    }

    #[allow(clippy::type_complexity)]
    async fn run(
        &self,
        kind: &ProbeKind,
        address: IpAddr,
        timeout: Duration,
        state: &mut ProbeState,
    ) -> Result<(Option<f64>, Option<(u32, u32)>, String), String> {
        match kind {
            ProbeKind::None => Ok((None, None, "not probed".into())),
            ProbeKind::Tcp { port } => {
                let addr = SocketAddr::new(address, *port);
                tcp::connect(addr, &mut state.tcp)
                    .await
                    .map(|_| (None, None, format!("tcp {addr} connected")))
                    .map_err(|e| format!("tcp {addr}: {e}"))
            }
            ProbeKind::Http(h) => http::probe(&self.http, h, timeout)
                .await
                .map(|(load, detail)| (load, None, detail)),
            ProbeKind::Lbcd {
                port,
                version,
                service,
            } => {
                let addr = SocketAddr::new(address, *port);
                let services: Vec<&str> = service.iter().map(String::as_str).collect();
                match lbcd::query(addr, *version, &services, timeout).await {
                    Ok(reply) => {
                        // The last weight pair is the asked service's (or the host default).
                        let weight = reply.weights.last().map(|w| (w.weight, w.increment));
                        // v2 replies carry lbcd's weight in the load fields (lbcd(8)), so only
                        // v3 reports a real load.
                        let load = (*version >= 3).then(|| reply.load1());
                        let detail = match (load, weight) {
                            (Some(l), Some((w, _))) => {
                                format!("lbcd {addr}: load {l:.2}, weight {w}")
                            }
                            (Some(l), None) => format!("lbcd {addr}: load {l:.2}"),
                            (None, Some((w, _))) => format!("lbcd {addr}: weight {w}"),
                            (None, None) => format!("lbcd {addr}: answered"),
                        };
                        Ok((load, weight, detail))
                    }
                    Err(e) => Err(format!("lbcd {addr}: {e}")),
                }
            }
        }
    }
}
