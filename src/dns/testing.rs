//! Test data for the query path: a [`Snapshot`] built from config and zone text, and queries
//! run through the full handler.
//!
//! Every construction of `Config`, `Model`, `ZoneSet` and `Snapshot` lives in [`snapshot`], so
//! a change to how a snapshot is compiled touches this one function only.

use std::sync::Arc;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};

use super::handler::{Outcome, Transport, handle};
use crate::config::Config;
use crate::domain::{Model, Verdict};
pub(crate) use crate::snapshot::Snapshot;
use crate::zones::ZoneSet;

/// The file name under which [`snapshot`] stores the zone text: a config refers to it as
/// `file = "zone.db"` (zone files are relative to the config's directory).
pub(crate) const ZONE_FILE: &str = "zone.db";

/// The snapshot the server would publish for `config_toml` with `zone_text` as the master file
/// `zone.db`, every pool backend healthy, generation 1 and fresh rotation counters.
pub(crate) fn snapshot(config_toml: &str, zone_text: &str) -> Arc<Snapshot> {
    let dir = tempfile::tempdir().expect("temporary directory");
    std::fs::write(dir.path().join(ZONE_FILE), zone_text).expect("write zone file");
    // The config file itself never exists; its path only places relative zone files.
    let config = Config::parse(config_toml, &dir.path().join("lbns.toml"))
        .unwrap_or_else(|e| panic!("test config does not parse:\n{e}"));
    let model = Model::new(&config);
    let (zones, _warnings, _) =
        ZoneSet::load(&config.zones, &model.pools, None).unwrap_or_else(|errs| {
            let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
            panic!("test zone does not load:\n{}", text.join("\n"))
        });
    let all_up = Verdict {
        usable: true,
        ..Verdict::default()
    };
    let verdicts: Vec<Vec<Verdict>> = model
        .pools
        .iter()
        .map(|p| vec![all_up; p.backends.len()])
        .collect();
    Arc::new(Snapshot::compile(&model, Arc::new(zones), 1, &verdicts))
}

/// A standard query: ID 0x1234, RD set, one question of class IN, no EDNS.
pub(crate) fn query(name: &str, qtype: RecordType) -> Message {
    let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(
        Name::from_ascii(name).expect("query name"),
        qtype,
    ));
    m
}

/// `message` in wire format.
pub(crate) fn wire(message: &Message) -> Vec<u8> {
    message.to_vec().expect("encode query")
}

/// Runs raw `bytes` through [`handle`]: `None` when the handler sends nothing.
pub(crate) fn run(
    snap: &Snapshot,
    bytes: &[u8],
    transport: Transport,
) -> Option<(Outcome, Vec<u8>)> {
    let mut out = Vec::new();
    let outcome = handle(snap, bytes, transport, &mut out)?;
    Some((outcome, out))
}

/// A response from the handler, parsed, with its wire form.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) outcome: Outcome,
    pub(crate) message: Message,
    pub(crate) wire: Vec<u8>,
}

/// Parses a response the handler wrote.
pub(crate) fn reply(outcome: Outcome, wire: Vec<u8>) -> Reply {
    let message = Message::from_vec(&wire).expect("the handler's response parses");
    Reply {
        outcome,
        message,
        wire,
    }
}

/// Sends `query` through [`handle`] and parses the response; panics if nothing is sent.
pub(crate) fn ask(snap: &Snapshot, query: &Message, transport: Transport) -> Reply {
    let (outcome, wire) = run(snap, &wire(query), transport).expect("the handler answers");
    reply(outcome, wire)
}
