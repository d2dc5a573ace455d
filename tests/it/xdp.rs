//! `[server] xdp`: UDP through AF_XDP, in a fresh network namespace (the XDP program must not
//! touch the machine's own loopback), checked with dig and the metrics.

use crate::support::*;

/// With `xdp = "lo"`, every UDP query (IPv4 and IPv6; fast path, full handler, NXDOMAIN, an
/// answer over the MTU) is taken and answered through AF_XDP — `lbns_udp_xdp_total` counts all
/// of them and `ip link` shows the program — with the answers the socket path gives (the same
/// fast path and handler), and the program is gone once lbns stops. Needs root (unshare, CAP_BPF, CAP_NET_ADMIN).
#[test]
fn udp_is_answered_through_af_xdp_and_the_program_goes_with_lbns() {
    let ip = require_tool("ip");
    let dig = require_tool("dig");
    let curl = require_tool("curl");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cluster.example.zone"),
        zone_with_large_txt(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("lbns.toml"),
        "[server]\nlisten = [\"127.0.0.1:5353\", \"[::1]:5353\"]\nudp_workers = 1\n\
         edns_udp_size = 4096\nidentity = \"xdp-test\"\nxdp = \"lo\"\n\n\
         [[zone]]\norigin = \"cluster.example.\"\nfile = \"cluster.example.zone\"\n\n\
         [[pool]]\nname = \"www.cluster.example.\"\nttl = 5\n\
         backends = [\"127.0.0.2\", \"127.0.0.3\", \"::1\"]\n\n\
         [status]\nlisten = \"127.0.0.1:8053\"\n",
    )
    .unwrap();
    let script = format!(
        r#"
{ip} link set lo mtu 1300 up
# Without these lbns refuses IPv4 on loopback (its replies would be martians).
echo "== refused"
{lbns} serve --config {dir}/lbns.toml 2>&1 && echo "started anyway"
echo 1 >/proc/sys/net/ipv4/conf/lo/route_localnet
echo 1 >/proc/sys/net/ipv4/conf/lo/accept_local
{lbns} serve --config {dir}/lbns.toml 2>{dir}/lbns.log &
pid=$!
q() {{ s=$1; shift; {dig} @"$s" -p 5353 +norec +bufsize=4096 +time=2 +tries=1 "$@"; }}
# Ready: asked over TCP, so the UDP counters start at zero.
for i in $(seq 100); do
    q 127.0.0.1 +tcp +short ns1.cluster.example. | grep -q . && break
    sleep 0.1
done
echo "== attached"; {ip} link show lo
for server in 127.0.0.1 ::1; do
    echo "== pool $server"; q $server www.cluster.example. A
    echo "== nxdomain $server"; q $server nope.cluster.example. AAAA
    echo "== chaos $server"; q $server id.server. CH TXT
    echo "== large $server"; q $server +ignore large.cluster.example. TXT
done
echo "== metrics"; {curl} -s http://127.0.0.1:8053/metrics | grep -E '^lbns_(udp_xdp|queries|truncated)_total'
kill $pid; wait $pid
echo "== detached"; {ip} link show lo
"#,
        curl = curl.display(),
        ip = ip.display(),
        lbns = lbns_bin().display(),
        dir = dir.path().display(),
        dig = dig.display(),
    );
    let out = Sections::run_in_netns(&script, &dir.path().join("lbns.log"));
    out.expect(
        "refused",
        &["net.ipv4.conf.lo.route_localnet=1 and net.ipv4.conf.lo.accept_local=1"],
    );
    assert!(!out.section("refused").contains("started anyway"));
    out.expect("attached", &["xdp"]);
    for server in ["127.0.0.1", "::1"] {
        out.expect(
            &format!("pool {server}"),
            &[
                "status: NOERROR",
                "flags: qr aa;",
                "ANSWER: 2,",
                "IN\tA\t127.0.0.2",
            ],
        );
        out.expect(
            &format!("nxdomain {server}"),
            &["status: NXDOMAIN", "flags: qr aa;", "IN\tSOA\t"],
        );
        // CHAOS goes through the full handler, not the fast path.
        out.expect(&format!("chaos {server}"), &["\"xdp-test\""]);
        // Over the 1300-octet MTU: sent truncated, never fragmented.
        out.expect(
            &format!("large {server}"),
            &["flags: qr aa tc;", "ANSWER: 0,", "EDNS: version: 0"],
        );
    }
    // Every UDP query went through AF_XDP; the TCP readiness probes did not.
    let metrics = out.section("metrics");
    for line in [
        "lbns_udp_xdp_total 8",
        "lbns_queries_total{transport=\"udp\"} 8",
        "lbns_truncated_total 2",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "expected {line} in:\n{metrics}"
        );
    }
    assert!(
        !out.section("detached").contains("xdp"),
        "XDP program still attached after lbns stopped:\n{}",
        out.section("detached")
    );
}
