//! The UDP fast path allocates nothing per query once warm (issue 6): a counting global
//! allocator, per thread so the runtime's other threads do not count, around `FastPath::answer`
//! for static names, pool names (every rotation), NXDOMAIN, NODATA, EDNS and odd case.
//!
//! A test binary of its own, so the counting allocator wraps no other test.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use lbns::app::Server;
use lbns::config::Config;
use lbns::dns::fast::FastPath;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

struct Counting;

// SAFETY: defers to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

const CONFIG: &str = r#"
[server]
listen = ["127.0.0.1:0"]
udp_workers = 1

[[zone]]
origin = "cluster.example."
file = "cluster.example.zone"

[[pool]]
name = "www.cluster.example."
backends = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "::1"]

[[pool]]
name = "api.cluster.example."
answers = 2
backends = ["127.0.0.5", "127.0.0.6", "127.0.0.7"]

[status]
listen = "127.0.0.1:0"
"#;

fn query(name: &str, rtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut m = Message::new(0x4242, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.edns = Some(e);
    }
    m.to_vec().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn fast_path_answers_without_allocating_once_warm() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("lbns.toml"), CONFIG).unwrap();
    std::fs::write(
        dir.path().join("cluster.example.zone"),
        include_str!("../zones/cluster.example.zone"),
    )
    .unwrap();
    let config = Config::load(&dir.path().join("lbns.toml")).unwrap();
    let server = Server::start(config).await.unwrap();
    let snap = server.snapshot();

    let corpus: Vec<(&str, Vec<u8>)> = vec![
        (
            "static A",
            query("ns1.cluster.example.", RecordType::A, None),
        ),
        (
            "apex MX + EDNS",
            query("cluster.example.", RecordType::MX, Some(1232)),
        ),
        (
            "odd case",
            query("MaIl.ClUsTeR.example.", RecordType::AAAA, None),
        ),
        ("pool A", query("www.cluster.example.", RecordType::A, None)),
        (
            "pool AAAA + EDNS",
            query("www.cluster.example.", RecordType::AAAA, Some(4096)),
        ),
        (
            "pool capped",
            query("API.cluster.example.", RecordType::A, Some(512)),
        ),
        (
            "NXDOMAIN",
            query("nope.cluster.example.", RecordType::A, None),
        ),
        (
            "NODATA",
            query("ns1.cluster.example.", RecordType::TXT, Some(1232)),
        ),
    ];
    let mut fast = FastPath::new();
    let mut out = Vec::with_capacity(4096);
    // Warm: the template cache fills on first sight of each (name, type).
    for (what, q) in &corpus {
        assert!(
            fast.answer(&snap, q, &mut out).is_some(),
            "{what}: not on the fast path"
        );
    }
    // 1,000 rounds: every rotation of every pool comes up many times.
    let before = allocations();
    for _ in 0..1000 {
        for (_, q) in &corpus {
            std::hint::black_box(fast.answer(&snap, q, &mut out));
        }
    }
    let per_query = allocations() - before;
    assert_eq!(
        per_query,
        0,
        "the fast path allocated {per_query} times in {} warm queries",
        1000 * corpus.len()
    );
    // The counter does count on this thread (so 0 above is not vacuous).
    let before = allocations();
    std::hint::black_box(vec![0u8; 64]);
    assert_eq!(allocations() - before, 1);
    server.shutdown().await;
}
