//! Probes: how lbns learns whether a backend is up and how loaded it is.
//!
//! Each kind is one file implementing `Probe` plus one line in `KINDS`: a `build` function
//! that checks the kind's own keys (from `probe = { ... }`) for one backend and returns the
//! probe that runs for it. A probe never returns an error to its caller: `observe` turns
//! every outcome, timeouts included, into an `Observation`.

mod exec;
mod file;
mod http;
pub mod lbcd;
pub(crate) mod tcp;

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::domain::{LbcdWeight, Observation, ProbeSpec};

/// What a successful probe learned beyond "up".
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Reading {
    /// Load the backend reported (lower = better).
    pub(crate) load: Option<f64>,
    /// lbcd's weight and increment for the asked service.
    pub(crate) lbcd: Option<LbcdWeight>,
    /// A short note for the status page, e.g. `http://127.0.0.2/: status 200`.
    pub(crate) detail: String,
}

/// The future one probe run returns: a reading, or why the backend is not up.
pub(crate) type ProbeFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Reading, String>> + Send + 'a>>;

/// One backend's probe of one kind. It lives as long as the backend's schedule and may keep
/// state between runs (the TCP probe keeps its socket).
pub(crate) trait Probe: Send {
    /// Probes once. The caller bounds the run by the probe's timeout.
    fn run(&mut self) -> ProbeFuture<'_>;

    /// How the status page names this probe, e.g. `tcp:80`, `http http://127.0.0.2:80/`.
    fn describe(&self) -> String;
}

/// What every kind's `build` gets: the backend and what probes share.
pub(crate) struct Target<'a> {
    pub(crate) address: IpAddr,
    /// The probe's timeout (a kind may pass it on, as HTTP does to its client).
    pub(crate) timeout: Duration,
    pub(crate) shared: &'a Shared,
}

/// Checks a kind's keys for one backend and builds its probe; the error is one line naming the
/// problem (the caller adds the pool and backend).
pub(crate) type Build = fn(&toml::Table, &Target<'_>) -> Result<Box<dyn Probe>, String>;

/// Every probe kind: its name in `kind = "..."` and its builder. A new kind is a file and a line
/// here.
pub(crate) const KINDS: &[(&str, Build)] = &[
    ("tcp", tcp::build),
    ("http", http::build),
    ("lbcd", lbcd::build),
    ("exec", exec::build),
    ("file", file::build),
];

/// What probes of every backend share. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Shared {
    /// One HTTP client for every HTTP probe (no connection reuse; see [`http::client`]).
    pub(crate) http: reqwest::Client,
}

impl Default for Shared {
    fn default() -> Self {
        Shared::new()
    }
}

impl Shared {
    /// Builds the shared parts (the HTTP client).
    pub(crate) fn new() -> Shared {
        Shared {
            http: http::client(),
        }
    }
}

/// Builds the probe `spec` describes for the backend at `address`.
pub(crate) fn build(
    spec: &ProbeSpec,
    address: IpAddr,
    shared: &Shared,
) -> Result<Box<dyn Probe>, String> {
    let target = Target {
        address,
        timeout: spec.timing.timeout,
        shared,
    };
    let Some((_, build)) = KINDS.iter().find(|(name, _)| *name == spec.kind) else {
        let names: Vec<&str> = KINDS.iter().map(|(n, _)| *n).collect();
        return Err(format!(
            "probe kind `{}` is not one of none, {}",
            spec.kind,
            names.join(", ")
        ));
    };
    build(&spec.settings, &target)
}

/// Checks a probe's `source` address (multi-homed hosts; lbnamed matches lbcd replies by
/// source address): of the backend's family.
pub(crate) fn check_source(source: Option<IpAddr>, target: &Target<'_>) -> Result<(), String> {
    match source {
        Some(s) if s.is_ipv4() != target.address.is_ipv4() => Err(format!(
            "probe source {s} is not of the backend's address family"
        )),
        _ => Ok(()),
    }
}

/// Runs `probe` once, bounded by `timeout`, and says what it saw.
pub(crate) async fn observe(probe: &mut dyn Probe, timeout: Duration) -> Observation {
    let start = Instant::now();
    let mut run = probe.run();
    // Polled once before any timer is set: most probes of a near backend are settled by then
    // (a loopback connect is), and a timer per probe is a good part of what a probe costs at
    // 10,000 a second. Only a probe still pending gets one, for what is left of its timeout.
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(run.as_mut().poll(cx))).await;
    let result = match first {
        std::task::Poll::Ready(r) => Ok(r),
        std::task::Poll::Pending => {
            tokio::time::timeout(timeout.saturating_sub(start.elapsed()), run).await
        }
    };
    let latency = start.elapsed();
    match result {
        Ok(Ok(r)) => Observation {
            ok: true,
            load: r.load,
            lbcd: r.lbcd,
            detail: r.detail,
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

/// Reads a kind's keys into its settings struct (`#[serde(deny_unknown_fields)]`), turning
/// serde's message into one line such as ``probe key `version` does not apply to kind =
/// "http"``.
pub(crate) fn settings<T: DeserializeOwned>(kind: &str, table: &toml::Table) -> Result<T, String> {
    T::deserialize(toml::Value::Table(table.clone())).map_err(|e| {
        let message = e.message().trim().to_owned();
        match message.strip_prefix("unknown field `") {
            Some(rest) => {
                let key = rest.split('`').next().unwrap_or(rest);
                format!("probe key `{key}` does not apply to kind = \"{kind}\"")
            }
            None => format!("{kind} probe: {message}"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProbeTiming;

    fn spec(kind: &str, settings: &str) -> ProbeSpec {
        ProbeSpec {
            kind: kind.to_owned(),
            settings: toml::from_str(settings).unwrap(),
            timing: ProbeTiming::default(),
        }
    }

    fn check(kind: &str, settings: &str) -> Result<(), String> {
        build(&spec(kind, settings), [127, 0, 0, 2].into(), &Shared::new()).map(|_| ())
    }

    #[test]
    fn each_kind_checks_its_own_keys() {
        assert!(check("tcp", "port = 80").is_ok());
        assert_eq!(
            check("tcp", "").unwrap_err(),
            "a tcp probe needs a port",
            "tcp without a port"
        );
        assert_eq!(
            check("http", "version = 2").unwrap_err(),
            "probe key `version` does not apply to kind = \"http\""
        );
        assert_eq!(
            check("ping", "").unwrap_err(),
            "probe kind `ping` is not one of none, tcp, http, lbcd, exec, file"
        );
        assert!(
            check("lbcd", "version = 4")
                .unwrap_err()
                .contains("lbcd version 4 is not 2 or 3")
        );
    }
}
