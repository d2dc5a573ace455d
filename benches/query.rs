//! Criterion benches of the query path (bytes in → bytes out) for the fast path and the full
//! handler, with and without a DNS cookie, and of selection (compiling a pool's orderings).
//!
//! Run: `cargo bench --bench query`.

use std::hint::black_box;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::{Name, RecordType};
use lbns::config::{Config, Place};
use lbns::dns::fast::FastPath;
use lbns::dns::{Client, handle_from};
use lbns::domain::{AllDown, Backend, Model, Policy, Pool, Verdict};
use lbns::select::select;
use lbns::snapshot::Snapshot;
use lbns::zones::ZoneSet;

fn snapshot() -> Snapshot {
    let config = Config::load(Path::new("zones/lbns.toml")).expect("bundled config");
    let model = Model::new(&config);
    let (zones, _, _) = ZoneSet::load(&config.zones, &model.pools, None).expect("bundled zone");
    let up = Verdict {
        usable: true,
        ..Verdict::default()
    };
    let verdicts: Vec<Vec<Verdict>> = model
        .pools
        .iter()
        .map(|p| vec![up; p.backends.len()])
        .collect();
    Snapshot::compile(&model, Arc::new(zones), 1, &verdicts)
}

fn query(name: &str, rtype: RecordType, cookie: Option<&[u8]>) -> Vec<u8> {
    let mut m = Message::new(0x4242, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    let mut e = Edns::new();
    e.set_max_payload(1232);
    if let Some(data) = cookie {
        e.options_mut()
            .insert(EdnsOption::Unknown(10, data.to_vec()));
    }
    m.edns = Some(e);
    m.to_vec().unwrap()
}

fn query_path(c: &mut Criterion) {
    let snap = snapshot();
    let client = Client::now("192.0.2.1".parse().unwrap());
    // A client cookie alone (a first query), as dig and resolvers send one.
    let cookie = Some(&[1u8, 2, 3, 4, 5, 6, 7, 8][..]);
    let cases = [
        (
            "static A",
            query("mail.cluster.example.", RecordType::A, None),
        ),
        ("pool A", query("www.cluster.example.", RecordType::A, None)),
        (
            "pool AAAA",
            query("www.cluster.example.", RecordType::AAAA, None),
        ),
        (
            "NXDOMAIN",
            query("nope.cluster.example.", RecordType::A, None),
        ),
        (
            "MX + additional",
            query("cluster.example.", RecordType::MX, None),
        ),
        (
            "static A + cookie",
            query("mail.cluster.example.", RecordType::A, cookie),
        ),
        (
            "pool A + cookie",
            query("www.cluster.example.", RecordType::A, cookie),
        ),
    ];
    let mut out = Vec::with_capacity(4096);
    let mut fast = FastPath::new();
    for (what, q) in &cases {
        c.bench_function(&format!("fast path: {what}"), |b| {
            b.iter(|| {
                let o = fast.answer(&snap, black_box(q), &client, &mut out);
                assert!(o.is_some());
                black_box(&out);
            })
        });
        c.bench_function(&format!("full handler: {what}"), |b| {
            b.iter(|| {
                handle_from(&snap, black_box(q), &client, &mut out);
                black_box(&out);
            })
        });
    }
}

fn selection(c: &mut Criterion) {
    for n in [10usize, 1000] {
        let backends: Vec<Backend> = (0..n)
            .map(|i| Backend {
                name: i.to_string(),
                address: IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]),
                weight: 1 + (i % 5) as u32,
                tier: 1 + (i % 2) as u32,
                probe: None,
            })
            .collect();
        let verdicts: Vec<Verdict> = (0..n)
            .map(|i| Verdict {
                usable: i % 7 != 0,
                load: Some((i % 13) as f64 / 4.0),
                lbcd: None,
                ttl_cap: None,
            })
            .collect();
        for policy in [
            Policy::RoundRobin,
            Policy::LeastLoaded,
            Policy::Weighted {
                scale_by_load: true,
            },
            Policy::Priority { min_healthy: 2 },
            Policy::Best,
        ] {
            let pool = Pool {
                name: Name::from_ascii("p.example.").unwrap(),
                ttl: 5,
                max_answers: 4,
                adaptive: None,
                backends: backends.clone(),
                policy: policy.clone(),
                all_down: AllDown::ServeAll,
                all_down_ttl: 1,
                max_age: std::time::Duration::from_secs(5),
                place: Place {
                    file: "bench".into(),
                    line: 1,
                    col: 1,
                },
            };
            c.bench_function(&format!("select {policy:?} over {n} backends"), |b| {
                b.iter(|| black_box(select(&pool, black_box(&verdicts), false, 1)))
            });
        }
    }
}

criterion_group!(benches, query_path, selection);
criterion_main!(benches);
