//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz) into parsers that take bytes from
//! others and that the crate does not otherwise export: the TCP and truncated-UDP answers, the
//! lbcd reply decoder, the HTTP probe. Everything else the targets drive (the UDP handler, the
//! fast path, the config and zone readers) is public already. Hidden from the documentation
//! and not a stable API: nothing but `fuzz/` calls it.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use crate::config::Config;
use crate::dns::Outcome;
use crate::domain::Model;
use crate::probe::lbcd::{LbcdError, LbcdReply};
use crate::probe::{self, Probe, Shared};
use crate::snapshot::Snapshot;

/// Answers `query` as the TCP listener does, its idle timeout `idle` advertised to a query
/// that asks with edns-tcp-keepalive.
pub fn handle_tcp(
    snap: &Snapshot,
    query: &[u8],
    idle: Duration,
    out: &mut Vec<u8>,
) -> Option<Outcome> {
    crate::dns::handle_tcp(snap, query, idle, out)
}

/// The UDP answer sent when the link could not carry the whole one: header, question and OPT
/// with TC=1.
pub fn handle_truncated(snap: &Snapshot, query: &[u8], out: &mut Vec<u8>) -> Option<Outcome> {
    crate::dns::handle_truncated(snap, query, out)
}

/// Decodes a reply datagram as the lbcd probe does after asking with `id` and `version`.
pub fn lbcd_reply(bytes: &[u8], id: u16, version: u8) -> Result<LbcdReply, LbcdError> {
    crate::probe::lbcd::decode_reply(bytes, id, version)
}

/// An `http` probe of 127.0.0.1:`port` that wants status 200, `ok` in the body and a load in
/// the `x-load` header, as a pool would configure it.
pub struct HttpProbe {
    probe: Box<dyn Probe>,
}

impl HttpProbe {
    /// Builds the probe through the config, as `lbns serve` does; `None` if that fails.
    pub fn new(port: u16) -> Option<HttpProbe> {
        let text = format!(
            "[[zone]]\norigin = \"example.\"\nfile = \"example.zone\"\n\
             [[pool]]\nname = \"www.example.\"\nbackends = [\"127.0.0.1\"]\n\
             probe = {{ kind = \"http\", port = {port}, url = \"http://{{address}}:{{port}}/health\", \
             body_contains = \"ok\", load_header = \"x-load\", timeout = \"1s\" }}\n"
        );
        let config = Config::parse(&text, Path::new("/nonexistent/lbns.toml")).ok()?;
        let model = Model::new(&config);
        let spec = model.pools.first()?.backends.first()?.probe.as_ref()?;
        let address = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let probe = probe::build(spec, address, &Shared::new()).ok()?;
        Some(HttpProbe { probe })
    }

    /// Runs the probe once: the load the backend reported (if it is up), or why it is down.
    pub async fn run(&mut self) -> Result<Option<f64>, String> {
        self.probe.run().await.map(|reading| reading.load)
    }
}
