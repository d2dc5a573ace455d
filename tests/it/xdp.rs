//! `[server] xdp`: UDP through AF_XDP, in a fresh network namespace (the XDP program must not
//! touch the machine's own loopback), checked with dig and the metrics.

use crate::support::*;

/// With `xdp = "lo"`, every UDP query (IPv4 and IPv6; fast path, full handler, NXDOMAIN, an
/// answer over the MTU) is taken and answered through AF_XDP — `lbns_udp_xdp_total` counts all
/// of them and `ip link` shows the program — with the answers the socket path gives (the same
/// fast path and handler); answers follow a change of the MTU while it runs; and the program is
/// gone once lbns stops; without the capabilities,
/// or on loopback without the sysctls, it refuses to start and says why. Needs root (unshare,
/// CAP_BPF, CAP_NET_ADMIN).
#[test]
fn udp_is_answered_through_af_xdp_and_the_program_goes_with_lbns() {
    let ip = require_tool("ip");
    let dig = require_tool("dig");
    let curl = require_tool("curl");
    let setpriv = require_tool("setpriv");
    let python3 = require_tool("python3");
    let dir = config_dir(
        "[server]\nlisten = [\"127.0.0.1:5353\", \"[::1]:5353\"]\nudp_workers = 1\n\
         edns_udp_size = 4096\nidentity = \"xdp-test\"\nxdp = \"lo\"\n\n\
         [[zone]]\norigin = \"cluster.example.\"\nfile = \"cluster.example.zone\"\n\n\
         [[pool]]\nname = \"www.cluster.example.\"\nttl = 5\n\
         backends = [\"127.0.0.2\", \"127.0.0.3\", \"::1\"]\n\n\
         [status]\nlisten = \"127.0.0.1:8053\"\n",
        &zone_with_large_txt(),
    );
    let script = format!(
        r#"
{ip} link set lo mtu 1300 up
# Without these lbns refuses IPv4 on loopback (its replies would be martians).
echo "== refused"
{lbns} serve --config {dir}/lbns.toml 2>&1 && echo "started anyway"
echo 1 >/proc/sys/net/ipv4/conf/lo/route_localnet
echo 1 >/proc/sys/net/ipv4/conf/lo/accept_local
# Without CAP_BPF / CAP_NET_ADMIN it says what it needs.
echo "== unprivileged"
chmod 755 {dir}; chmod 644 {dir}/*
{setpriv} --reuid=65534 --regid=65534 --clear-groups {lbns} serve --config {dir}/lbns.toml 2>&1 \
    && echo "started anyway"
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
# The MTU is read again every second: raised, the large answer goes whole; lowered, it is
# truncated again.
{ip} link set lo mtu 9000; sleep 2
echo "== mtu raised"; q 127.0.0.1 +ignore large.cluster.example. TXT
{ip} link set lo mtu 1300; sleep 2
echo "== mtu lowered"; q 127.0.0.1 +ignore large.cluster.example. TXT
# Stopped, lbns cannot take 3,000 datagrams: the kernel keeps 1,024 (its RX ring) and drops
# the rest, and the drop counter accounts for every one of them once lbns runs again.
kill -STOP $pid
{python3} -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
q = bytes.fromhex("123400000001000000000000036e733107636c7573746572076578616d706c650000010001")
for _ in range(3000):
    s.sendto(q, ("127.0.0.1", 5353))
'
kill -CONT $pid
sleep 2
echo "== flood"; {curl} -s http://127.0.0.1:8053/metrics | grep -E '^lbns_udp_xdp'
kill $pid; wait $pid
echo "== detached"; {ip} link show lo
"#,
        curl = curl.display(),
        ip = ip.display(),
        setpriv = setpriv.display(),
        python3 = python3.display(),
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
    out.expect(
        "unprivileged",
        &["Operation not permitted", "needs CAP_BPF and CAP_NET_ADMIN"],
    );
    assert!(!out.section("unprivileged").contains("started anyway"));
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
    out.expect_lines(
        "metrics",
        &[
            "lbns_udp_xdp_total 8",
            "lbns_queries_total{transport=\"udp\"} 8",
            "lbns_truncated_total 2",
        ],
    );
    out.expect("mtu raised", &["flags: qr aa;", "ANSWER: 10,"]);
    out.expect("mtu lowered", &["flags: qr aa tc;", "ANSWER: 0,"]);
    let flood = out.section("flood");
    let counter = |name: &str| -> u64 {
        flood
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{flood}"))
    };
    let (taken, dropped) = (
        counter("lbns_udp_xdp_total ") - 10,
        counter("lbns_udp_xdp_dropped_total "),
    );
    assert!(dropped > 0, "no drops counted:\n{flood}");
    assert_eq!(
        taken + dropped,
        3000,
        "every datagram taken or counted:\n{flood}"
    );
    assert!(
        !out.section("detached").contains("xdp"),
        "XDP program still attached after lbns stopped:\n{}",
        out.section("detached")
    );
}

/// On a veth pair — a driver with its own (native) XDP mode, real MAC addresses, and a peer
/// that leaves UDP checksums to offload — a client in another network namespace is answered
/// through AF_XDP.
///
/// Both ends use 127.99.0.0/24, as every address a test runs on is loopback-range: each
/// namespace keeps only 127.0.0.1 local on lo (instead of the whole 127/8) and allows 127/8 on
/// its veth (route_localnet). IPv6 has no loopback-range address that may cross a link (::1 is
/// dropped off lo, RFC 4291 §2.5.3), so this test is IPv4 only; IPv6 through AF_XDP is tested on
/// lo above and in the frame unit tests (including offloaded checksums).
#[test]
fn a_client_across_a_veth_pair_is_answered_through_af_xdp() {
    let ip = require_tool("ip");
    let dig = require_tool("dig");
    let curl = require_tool("curl");
    let nsenter = require_tool("nsenter");
    let unshare = require_tool("unshare");
    let dir = config_dir(
        "[server]\nlisten = [\"127.99.0.1:53\"]\nudp_workers = 1\n\
         xdp = \"veth0\"\n\n[[zone]]\norigin = \"cluster.example.\"\n\
         file = \"cluster.example.zone\"\n\n[[pool]]\nname = \"www.cluster.example.\"\n\
         ttl = 5\nbackends = [\"127.99.0.5\", \"127.99.0.6\"]\n\n\
         [status]\nlisten = \"127.0.0.1:8053\"\n",
        EXAMPLE_ZONE,
    );
    let script = format!(
        r#"
# In both namespaces only 127.0.0.1 stays local to lo, so the rest of 127/8 can be routed
# over the pair.
{ip} link set lo up
{ip} addr del 127.0.0.1/8 dev lo
{ip} addr add 127.0.0.1/32 dev lo
# The client's namespace: a child of this one, holding the other end of the pair.
{unshare} -n sleep 60 &
client=$!
sleep 0.2
{ip} link add veth0 type veth peer name veth1 netns /proc/$client/ns/net
echo 1 >/proc/sys/net/ipv4/conf/veth0/route_localnet
{ip} addr add 127.99.0.1/24 dev veth0
{ip} link set veth0 up
c() {{ {nsenter} -t $client -n "$@"; }}
c {ip} link set lo up
c {ip} addr del 127.0.0.1/8 dev lo
c {ip} addr add 127.0.0.1/32 dev lo
c sh -c 'echo 1 >/proc/sys/net/ipv4/conf/veth1/route_localnet'
c {ip} addr add 127.99.0.2/24 dev veth1
c {ip} link set veth1 up
{lbns} serve --config {dir}/lbns.toml 2>{dir}/lbns.log &
pid=$!
q() {{ s=$1; shift; c {dig} @"$s" -p 53 +norec +time=2 +tries=1 "$@"; }}
for i in $(seq 100); do
    q 127.99.0.1 +tcp +short ns1.cluster.example. | grep -q . && break
    sleep 0.1
done
echo "== attached"; {ip} link show veth0
echo "== pool"; q 127.99.0.1 www.cluster.example. A
echo "== soa"; q 127.99.0.1 cluster.example. SOA
echo "== metrics"; {curl} -s http://127.0.0.1:8053/metrics | grep -E '^lbns_(udp_xdp|queries)_total'
kill $pid $client; wait $pid
"#,
        curl = curl.display(),
        ip = ip.display(),
        nsenter = nsenter.display(),
        unshare = unshare.display(),
        lbns = lbns_bin().display(),
        dir = dir.path().display(),
        dig = dig.display(),
    );
    let out = Sections::run_in_netns(&script, &dir.path().join("lbns.log"));
    out.expect("attached", &["xdp"]);
    out.expect(
        "pool",
        &[
            "status: NOERROR",
            "flags: qr aa;",
            "ANSWER: 2,",
            "127.99.0.5",
            "127.99.0.6",
        ],
    );
    out.expect("soa", &["status: NOERROR", "IN\tSOA\tns1.cluster.example."]);
    out.expect_lines(
        "metrics",
        &[
            "lbns_udp_xdp_total 2",
            "lbns_queries_total{transport=\"udp\"} 2",
        ],
    );
}

/// Response rate limiting applies through AF_XDP as on sockets (the workers share the answer
/// step): 100 identical queries from one address in a burst, at `responses_per_second = 10`
/// and `slip = 2`, get 10 answers, 45 empty TC=1 responses and 45 nothing (± 1), every one of
/// them taken through AF_XDP. Needs root.
#[test]
fn rate_limiting_applies_through_af_xdp() {
    let ip = require_tool("ip");
    let dig = require_tool("dig");
    let curl = require_tool("curl");
    let python3 = require_tool("python3");
    let dir = config_dir(
        "[server]\nlisten = [\"127.0.0.1:5353\"]\nudp_workers = 1\nxdp = \"lo\"\n\n\
         [rrl]\nresponses_per_second = 10\nslip = 2\n\n\
         [[zone]]\norigin = \"cluster.example.\"\nfile = \"cluster.example.zone\"\n\n\
         [[pool]]\nname = \"www.cluster.example.\"\nbackends = [\"127.0.0.2\", \"127.0.0.3\"]\n\n\
         [status]\nlisten = \"127.0.0.1:8053\"\n",
        EXAMPLE_ZONE,
    );
    let script = format!(
        r#"
{ip} link set lo up
echo 1 >/proc/sys/net/ipv4/conf/lo/route_localnet
echo 1 >/proc/sys/net/ipv4/conf/lo/accept_local
{lbns} serve --config {dir}/lbns.toml 2>{dir}/lbns.log &
pid=$!
for i in $(seq 100); do
    {dig} @127.0.0.1 -p 5353 +tcp +short +time=1 ns1.cluster.example. | grep -q . && break
    sleep 0.1
done
echo "== burst"
{python3} -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
name = bytes.fromhex("03777777 07636c7573746572 076578616d706c65 00")
for i in range(1, 101):
    q = i.to_bytes(2, "big") + bytes.fromhex("0000 0001 0000 0000 0000") + name + bytes.fromhex("0001 0001")
    s.sendto(q, ("127.0.0.1", 5353))
seen = {{}}
s.settimeout(0.5)
try:
    while True:
        r = s.recv(4096)
        seen[int.from_bytes(r[:2], "big")] = r
except socket.timeout:
    pass
print("full", sum(1 for r in seen.values() if r[2] & 2 == 0 and r[7] > 0))
print("tc", sum(1 for r in seen.values() if r[2] & 2 and r[7] == 0))
print("none", 100 - len(seen))
'
echo "== metrics"; {curl} -s http://127.0.0.1:8053/metrics | grep -E '^lbns_(udp_xdp|rrl_[a-z]*)_total'
kill $pid; wait $pid
"#,
        curl = curl.display(),
        ip = ip.display(),
        python3 = python3.display(),
        lbns = lbns_bin().display(),
        dir = dir.path().display(),
        dig = dig.display(),
    );
    let out = Sections::run_in_netns(&script, &dir.path().join("lbns.log"));
    let burst = out.section("burst");
    let count = |what: &str| -> u64 {
        burst
            .lines()
            .find_map(|l| l.strip_prefix(what)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {what} in:\n{burst}"))
    };
    let (full, tc, none) = (count("full"), count("tc"), count("none"));
    assert!(full.abs_diff(10) <= 1, "answers: {full}\n{burst}");
    assert!(tc.abs_diff(45) <= 1, "TC=1: {tc}\n{burst}");
    assert!(none.abs_diff(45) <= 1, "nothing: {none}\n{burst}");
    out.expect_lines(
        "metrics",
        &[
            "lbns_udp_xdp_total 100",
            &format!("lbns_rrl_slipped_total {tc}"),
            &format!("lbns_rrl_dropped_total {none}"),
            &format!("lbns_rrl_limited_total {}", tc + none),
        ],
    );
}
