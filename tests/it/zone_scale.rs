//! Large zones: a generated zone of 300,000 records served by a `lbns serve` process within a
//! memory bound read from /proc (peak and resident), reloads that keep an unchanged zone without
//! reading it, and memory given back after a changed zone replaces it.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::support::*;

/// Records in the generated zone, besides the few of every kind around them.
const RECORDS: usize = 300_000;

/// A zone of `RECORDS` A records under `scale.example.`, plus a wildcard, an empty
/// non-terminal, a delegation with glue, a CNAME chain and a TXT set.
fn big_zone() -> String {
    let mut z = String::with_capacity(RECORDS * 24);
    z.push_str(
        "$TTL 3600\n@ SOA ns1 hostmaster 1 3600 600 86400 60\n@ NS ns1\nns1 A 127.0.0.1\n\
         *.wild A 192.0.2.80\na.b.c A 192.0.2.5\nsub NS ns.sub\nns.sub A 192.0.2.53\n\
         alias CNAME h7\ntxt TXT \"one\" \"two\"\n",
    );
    for i in 0..RECORDS {
        z.push_str(&format!(
            "h{i} A 10.{}.{}.{}\n",
            (i >> 16) & 255,
            (i >> 8) & 255,
            i & 255
        ));
    }
    z
}

/// A process's memory from /proc: (resident now, peak resident), KiB.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Polls until `name` answers `want` or a minute passes.
fn wait_for(dns: std::net::SocketAddr, name: &str, want: &str, proc: &mut Proc) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = udp_try(dns, name);
        if m.as_ref().is_some_and(|m| addrs(m) == [want]) {
            return;
        }
        if let Some(status) = proc.0.try_wait().unwrap() {
            panic!("lbns exited with {status}");
        }
        assert!(Instant::now() < deadline, "{name} not answered {want}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One query, or `None` when nothing answered within 200 ms (the server may not be up yet).
fn udp_try(dns: std::net::SocketAddr, name: &str) -> Option<hickory_proto::op::Message> {
    let bytes = query(name, RecordType::A, None).to_vec().unwrap();
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    sock.send_to(&bytes, dns).ok()?;
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).ok()?;
    hickory_proto::op::Message::from_vec(&buf[..n]).ok()
}

async fn reload(config: &Path) -> String {
    let (ok, out, err) = lbns_cli(&["reload", "--config", config.to_str().unwrap()]).await;
    assert!(ok, "{out}{err}");
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_zone_loads_within_a_memory_bound_and_reloads_cost_what_changed() {
    let dns_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("lbns.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = [\"127.0.0.1:{dns_port}\"]\nudp_workers = 1\n\n\
             [[zone]]\norigin = \"scale.example.\"\nfile = \"scale.zone\"\n"
        ),
    )
    .unwrap();
    let zone_path = dir.path().join("scale.zone");
    let zone = big_zone();
    std::fs::write(&zone_path, &zone).unwrap();
    let dns = format!("127.0.0.1:{dns_port}").parse().unwrap();

    let mut proc = spawn_serve(&[], &config, Stdio::null());
    let pid = proc.0.id();
    let last = format!("h{}.scale.example.", RECORDS - 1);
    let last_addr = format!(
        "10.{}.{}.{}",
        ((RECORDS - 1) >> 16) & 255,
        ((RECORDS - 1) >> 8) & 255,
        (RECORDS - 1) & 255
    );
    wait_for(dns, &last, &last_addr, &mut proc);
    let (rss, peak) = memory(pid);
    eprintln!(
        "{RECORDS} records ({} bytes of zone file): RSS {rss} KiB, peak {peak} KiB",
        zone.len()
    );
    // The bound: a small server (~10 MiB) plus 200 bytes per record at the peak of loading
    // (the store keeps about 60; reading holds each record's RDATA twice for a moment). A map
    // of parsed records, as lbns kept before, peaked at about 2 KB per record.
    let bound = 24 * 1024 + (RECORDS as u64 * 200) / 1024;
    assert!(peak < bound, "peak {peak} KiB, bound {bound} KiB");
    assert!(rss < bound, "RSS {rss} KiB, bound {bound} KiB");

    // The kinds of answer around the big set still hold.
    let a = |name: &str| addrs(&ask(dns, name, RecordType::A));
    assert_eq!(a("h12345.scale.example."), ["10.0.48.57"]);
    assert_eq!(a("anything.wild.scale.example."), ["192.0.2.80"]);
    let ent = ask(dns, "b.c.scale.example.", RecordType::A);
    assert_eq!(
        (ent.response_code, ent.answers.len()),
        (ResponseCode::NoError, 0)
    );
    let nx = ask(dns, "nothere.scale.example.", RecordType::A);
    assert_eq!(nx.response_code, ResponseCode::NXDomain);
    let referral = ask(dns, "x.sub.scale.example.", RecordType::A);
    assert_eq!(referral.authorities.len(), 1);
    assert_eq!(
        addrs(&ask(dns, "alias.scale.example.", RecordType::A)),
        ["10.0.0.7"]
    );

    // Unchanged: kept, not read; the peak does not move (reading it again would add tens of
    // MiB).
    let out = reload(&config).await;
    assert!(out.ends_with("(zones: 0 read, 1 unchanged)\n"), "{out}");
    let (_, peak_after) = memory(pid);
    assert!(
        peak_after < peak + 4 * 1024,
        "peak {peak} KiB -> {peak_after} KiB over an unchanged reload"
    );

    // One record changed: read again, answered, and the old zone's memory given back.
    std::fs::write(
        &zone_path,
        zone.replace("h7 A 10.0.0.7\n", "h7 A 10.9.9.9\n"),
    )
    .unwrap();
    let out = reload(&config).await;
    assert!(out.ends_with("(zones: 1 read, 0 unchanged)\n"), "{out}");
    wait_for(dns, "h7.scale.example.", "10.9.9.9", &mut proc);
    let deadline = Instant::now() + Duration::from_secs(10);
    let settled = loop {
        let (now, _) = memory(pid);
        // The old zone goes to the reclaimer thread, which trims the heap after freeing it.
        if now < rss + rss / 4 || Instant::now() > deadline {
            break now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("after a changed reload: RSS {settled} KiB (was {rss} KiB)");
    assert!(
        settled < rss + rss / 4,
        "RSS {rss} KiB before the reload, {settled} KiB after: memory not given back"
    );
}
