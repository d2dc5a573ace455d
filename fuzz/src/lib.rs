//! What the fuzz targets share: the bundled example served as a snapshot, a fixed client, and
//! the checks every response must pass. Each target is a thin `fuzz_target!` around one of the
//! functions here.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hickory_proto::op::Message;
use lbns::config::Config;
use lbns::dns::fast::FastPath;
use lbns::dns::{Client, handle_from};
use lbns::domain::{Model, Verdict};
use lbns::snapshot::Snapshot;
use lbns::zones::ZoneSet;

/// The payload lbns advertises and never exceeds over UDP (`edns_udp_size`, default 1232).
const UDP_MAX: usize = 1232;

/// The repository's `zones/` directory: the bundled example.
fn zones_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../zones")
}

/// The snapshot `lbns serve` publishes for the bundled example (every backend up), its zone
/// grown by a TXT of about 2 KB so that truncation is reachable.
pub fn snapshot() -> &'static Arc<Snapshot> {
    static SNAPSHOT: OnceLock<(tempfile::TempDir, Arc<Snapshot>)> = OnceLock::new();
    &SNAPSHOT
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let config = std::fs::read_to_string(zones_dir().join("lbns.toml")).unwrap();
            let mut zone =
                std::fs::read_to_string(zones_dir().join("cluster.example.zone")).unwrap();
            for i in 0..10 {
                zone.push_str(&format!(
                    "large 300 IN TXT \"{}\"\n",
                    i.to_string().repeat(200)
                ));
            }
            std::fs::write(dir.path().join("lbns.toml"), &config).unwrap();
            std::fs::write(dir.path().join("cluster.example.zone"), zone).unwrap();
            let snapshot = compile(&dir.path().join("lbns.toml"))
                .unwrap_or_else(|e| panic!("the bundled example does not load: {e}"));
            (dir, snapshot)
        })
        .1
}

/// Loads the config at `path` and its zones into a snapshot with every backend up.
fn compile(path: &Path) -> Result<Arc<Snapshot>, String> {
    let config = Config::load(path).map_err(|e| e.to_string())?;
    snapshot_of(&config)
}

fn snapshot_of(config: &Config) -> Result<Arc<Snapshot>, String> {
    let model = Model::new(config);
    let (zones, _, _) = ZoneSet::load(&config.zones, &model.pools, None).map_err(|errors| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    let up = Verdict {
        usable: true,
        ..Verdict::default()
    };
    let verdicts: Vec<Vec<Verdict>> = model
        .pools
        .iter()
        .map(|p| vec![up; p.backends.len()])
        .collect();
    Ok(Arc::new(Snapshot::compile(
        &model,
        Arc::new(zones),
        1,
        &verdicts,
    )))
}

/// Every query comes from this client at this time, so both paths make the same cookies.
pub fn client() -> Client {
    Client {
        ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 53)),
        now: 1_700_000_000,
    }
}

/// What every response to `query` must be: a header at least, the query's ID, QR set, within
/// `limit` octets, and a message that parses.
fn check_response(query: &[u8], response: &[u8], limit: usize, what: &str) {
    assert!(
        response.len() >= 12 && response.len() <= limit,
        "{what}: {} octets, limit {limit}",
        response.len()
    );
    assert_eq!(response[..2], query[..2], "{what}: the ID is echoed");
    assert_ne!(response[2] & 0x80, 0, "{what}: QR is set");
    if let Err(e) = Message::from_vec(response) {
        panic!("{what}: the response does not parse: {e}\n{response:02x?}");
    }
}

/// The UDP size limit for `query`: the client's EDNS payload clamped to [512, 1232], 512
/// without EDNS; 1232 when the query does not parse (then only a header goes back).
fn udp_limit(query: &[u8]) -> usize {
    match Message::from_vec(query) {
        Ok(m) => m
            .edns
            .map_or(512, |e| usize::from(e.max_payload()).clamp(512, UDP_MAX)),
        Err(_) => UDP_MAX,
    }
}

/// Query bytes through the full handler, as each listener calls it: UDP (with cookies), TCP
/// (with edns-tcp-keepalive) and the truncated UDP answer.
pub fn query(data: &[u8]) {
    let snap = snapshot();
    let mut out = Vec::new();
    if handle_from(snap, data, &client(), &mut out).is_some() {
        check_response(data, &out, udp_limit(data), "udp");
    }
    if lbns::fuzzing::handle_tcp(snap, data, Duration::from_secs(10), &mut out).is_some() {
        check_response(data, &out, 65535, "tcp");
    }
    if lbns::fuzzing::handle_truncated(snap, data, &mut out).is_some() {
        check_response(data, &out, udp_limit(data), "truncated");
        let m = Message::from_vec(&out).unwrap();
        assert!(
            m.answers.is_empty() && m.authorities.is_empty(),
            "truncated: no records"
        );
    }
}

thread_local! {
    /// One fast path for the whole run, as a UDP worker keeps its template cache.
    static FAST: RefCell<FastPath> = RefCell::new(FastPath::new());
}

/// The fast path against the full handler on the same bytes: the fast path answers exactly
/// as the full handler does, or leaves the query to it.
pub fn fast_vs_full(data: &[u8]) {
    let snap = snapshot();
    let (mut fast_out, mut full_out) = (Vec::new(), Vec::new());
    // The same rotation for both.
    let rewind = || {
        for p in &snap.pools {
            p.counter.store(7, Ordering::Relaxed);
        }
    };
    rewind();
    let fast = FAST.with(|f| f.borrow_mut().answer(snap, data, &client(), &mut fast_out));
    rewind();
    let full = handle_from(snap, data, &client(), &mut full_out);
    let Some(fast) = fast else { return };
    let full = full.expect("the full handler answers what the fast path answers");
    assert_eq!(fast, full, "outcome, rate-limiting key and cookie verdict");
    check_response(data, &fast_out, udp_limit(data), "fast");
    let (f, h) = (
        Message::from_vec(&fast_out).unwrap(),
        Message::from_vec(&full_out).unwrap(),
    );
    assert_eq!(f, h, "the same message");
    // Names compare case-insensitively in `Message`: the question must match exactly.
    let names =
        |m: &Message| -> Vec<String> { m.queries.iter().map(|q| q.name().to_ascii()).collect() };
    assert_eq!(names(&f), names(&h), "the question as sent");
    assert!(
        fast_out.len() <= full_out.len(),
        "the fast answer is not larger"
    );
}

/// A config with one zone, `example.`, read from `zone.db` beside it, and a pool inside it.
const ZONE_CONFIG: &str = "[server]\nlisten = [\"127.0.0.1:0\"]\n\
    [[zone]]\norigin = \"example.\"\nfile = \"zone.db\"\n\
    [[pool]]\nname = \"www.example.\"\nbackends = [\"192.0.2.1\", \"2001:db8::1\"]\n";

/// Master-file text through the zone reader and the zone checks; a zone that loads is then
/// served, and a few queries answered from it.
pub fn zone_file(data: &[u8]) {
    static SETUP: OnceLock<(tempfile::TempDir, Config)> = OnceLock::new();
    let (dir, config) = SETUP.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("lbns.toml");
        std::fs::write(&path, ZONE_CONFIG).unwrap();
        let config = Config::load(&path).expect("the zone config loads");
        (dir, config)
    });
    std::fs::write(dir.path().join("zone.db"), data).unwrap();
    let Ok(snap) = snapshot_of(config) else {
        return;
    };
    let mut out = Vec::new();
    for (name, qtype) in [
        ("example.", hickory_proto::rr::RecordType::SOA),
        ("www.example.", hickory_proto::rr::RecordType::A),
        ("x.y.example.", hickory_proto::rr::RecordType::TXT),
        ("example.", hickory_proto::rr::RecordType::ANY),
    ] {
        let mut q = Message::new(
            0x4242,
            hickory_proto::op::MessageType::Query,
            hickory_proto::op::OpCode::Query,
        );
        q.add_query(hickory_proto::op::Query::query(
            hickory_proto::rr::Name::from_ascii(name).unwrap(),
            qtype,
        ));
        let bytes = q.to_vec().unwrap();
        if lbns::fuzzing::handle_tcp(&snap, &bytes, Duration::from_secs(10), &mut out).is_some() {
            check_response(&bytes, &out, 65535, "zone answer");
        }
    }
}

/// TOML text through the config reader and, when it is valid, the model built from it.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text, Path::new("/nonexistent/lbns/lbns.toml")) {
        Ok(config) => {
            let _ = Model::new(&config);
        }
        Err(errors) => assert!(!errors.to_string().is_empty(), "a problem is named"),
    }
}

/// A datagram through the lbcd reply decoder, as a probe that asked with the ID the datagram
/// carries (so the fuzzer gets past the ID check) and the version it claims (2, else 3).
pub fn lbcd_reply(data: &[u8]) {
    let id = match data {
        [_, _, hi, lo, ..] => u16::from_be_bytes([*hi, *lo]),
        _ => 0,
    };
    let version = if data.get(1) == Some(&2) { 2 } else { 3 };
    match lbns::fuzzing::lbcd_reply(data, id, version) {
        Ok(reply) => {
            assert_eq!(reply.version, version);
            assert!(reply.weights.len() <= 256);
            assert!(reply.load1().is_finite());
        }
        Err(e) => {
            let message = e.to_string();
            assert!(
                !message.is_empty() && message.len() < 300,
                "short: {message}"
            );
        }
    }
}

/// An HTTP response, as a backend's health endpoint would send it, through the HTTP probe
/// (reqwest and hyper underneath): up with a load, or down with a reason, never a panic.
pub fn http_probe(data: &[u8]) {
    struct Setup {
        runtime: tokio::runtime::Runtime,
        listener: tokio::net::TcpListener,
        probe: tokio::sync::Mutex<lbns::fuzzing::HttpProbe>,
    }
    static SETUP: OnceLock<Setup> = OnceLock::new();
    let setup = SETUP.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let probe = runtime.block_on(async { lbns::fuzzing::HttpProbe::new(port) });
        Setup {
            runtime,
            listener,
            probe: tokio::sync::Mutex::new(probe.expect("the probe builds")),
        }
    });
    setup.runtime.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let backend = async {
            let (mut stream, _) = setup.listener.accept().await.unwrap();
            // The request head, then the response, then the end of the stream.
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let _ = stream.write_all(data).await;
            let _ = stream.shutdown().await;
        };
        let mut probe = setup.probe.lock().await;
        let (_, result) = tokio::join!(backend, probe.run());
        if let Ok(Some(load)) = result {
            assert!(load.is_finite() && load >= 0.0, "load {load}");
        }
    });
}
