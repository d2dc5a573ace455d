//! Peers (`[cluster]`) under real one-sided packet loss: three lbns processes in a private
//! network namespace probe the same two HTTP backends over http, each from its own address,
//! and an nftables rule inside the namespace cuts one instance's probes to one backend. The
//! answers every instance gives are read every 100 ms while the loss comes and goes.
//!
//! Needs root (unshare -n, port 53, nft in the namespace), python3 (the backends and the
//! client) and nft (scripts/install-deps.sh installs nftables; scripts/test.sh runs it first).

use crate::support::*;

/// The longest the instances may give different answers, seconds: one probe interval (1 s with
/// the default timing used here) plus one exchange (500 ms). docs/config.md's `[cluster]`
/// section promises less — every instance follows within one exchange of the view that made
/// the majority — so this also covers the client's 100 ms sampling.
const MAX_DISAGREEMENT: f64 = 1.5;

/// Worst case for one instance to see a cut backend down, seconds, with the default probe
/// timing: (interval 1 s + jitter 200 ms) × fall 2 + timeout 500 ms.
const DETECTION: f64 = 2.9;

/// Worst case for one instance to see a restored backend up again: (interval + jitter) × rise 2
/// plus a probe's latency.
const RECOVERY: f64 = 2.5;

/// One exchange interval (the default 500 ms) plus the monitor's 100 ms tick.
const EXCHANGE: f64 = 0.6;

/// Measurement granularity, not lbns: the client samples every 100 ms, from a python process
/// sharing two cores with three lbns, two backends and the rest of the test suite.
const MARGIN: f64 = 0.5;

/// The client, the nftables cuts and the measurement, run by the script below once the
/// backends and the three lbns are started: one python3 process, so every time is read on one
/// clock.
const DRIVER: &str = r#"
import json, socket, struct, subprocess, sys, time, urllib.request

INSTANCES = ["127.0.0.53", "127.0.0.54", "127.0.0.55"]
TWO, THREE = "127.0.0.2", "127.0.0.3"
NFT = sys.argv[1]
INTERVAL = 0.1

def query(qid):
    q = struct.pack(">HHHHHH", qid, 0, 1, 0, 0, 0)
    for label in ("www", "lb", "test"):
        q += bytes([len(label)]) + label.encode()
    return q + b"\0" + struct.pack(">HH", 1, 1)

def parse(buf, qid):
    rid, flags, qd, an, _, _ = struct.unpack_from(">HHHHHH", buf)
    if rid != qid or not flags & 0x8000 or flags & 0xF:
        return None
    off = 12
    for _ in range(qd):
        while buf[off] != 0:
            off += 1 + buf[off]
        off += 5
    out, ttls = set(), set()
    for _ in range(an):
        off += 2 if buf[off] & 0xC0 == 0xC0 else 0
        rtype, _, ttl, rdlen = struct.unpack_from(">HHIH", buf, off)
        off += 10
        if rtype == 1 and rdlen == 4:
            out.add(socket.inet_ntoa(buf[off:off + 4]))
            ttls.add(ttl)
        off += rdlen
    return frozenset(out), min(ttls, default=None)

socks = {}
for ip in INSTANCES:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((ip, 53))
    s.settimeout(1.0)
    socks[ip] = s
qid = 0

def ask(ip):
    """The addresses instance `ip` answers now and their TTL, or None (lost or bad reply)."""
    global qid
    qid = (qid + 1) & 0xFFFF
    s = socks[ip]
    s.send(query(qid))
    try:
        while True:
            r = parse(s.recv(4096), qid)
            if r is not None:
                return r
    except (socket.timeout, OSError, struct.error, IndexError):
        return None

SAMPLES = []
TTLS = {}

def sample():
    """One sample: (time, each instance's addresses or None); TTLS keeps each answer's TTL."""
    t = time.monotonic()
    replies = [ask(ip) for ip in INSTANCES]
    row = (t, [r[0] if r else None for r in replies])
    TTLS[t] = [r[1] if r else None for r in replies]
    SAMPLES.append(row)
    return row

def watch(seconds, done=None):
    """Samples every 100 ms for `seconds`, or until done(samples so far) holds."""
    start = len(SAMPLES)
    end = time.monotonic() + seconds
    tick = time.monotonic()
    while time.monotonic() < end:
        sample()
        if done is not None and done(SAMPLES[start:]):
            break
        tick += INTERVAL
        time.sleep(max(0.0, tick - time.monotonic()))
    return SAMPLES[start:]

def disagree(row):
    seen = {a for a in row[1] if a is not None}
    return len(seen) > 1

def longest_disagreement(rows):
    """Longest run of samples whose answers differ: from its first sample to the first sample
    that agrees again (to the last sample if none does)."""
    longest, start = 0.0, None
    for t, answers in rows:
        if disagree((t, answers)):
            if start is None:
                start = t
        elif start is not None:
            longest, start = max(longest, t - start), None
    if start is not None:
        longest = max(longest, rows[-1][0] - start)
    return longest

def failed(rows):
    return sum(1 for _, answers in rows for a in answers if a is None)

def settled(rows, i, has_three):
    """Time of the sample from which instance i answers (has_three) and keeps answering so."""
    at = None
    for t, answers in rows:
        a = answers[i]
        if a is None:
            continue
        if (THREE in a) == has_three:
            if at is None:
                at = t
        else:
            at = None
    return at

def stays(rows, has_three, seconds):
    if not rows:
        return False
    ats = [settled(rows, i, has_three) for i in range(len(INSTANCES))]
    return all(a is not None and rows[-1][0] - a >= seconds for a in ats)

def status(ip):
    with urllib.request.urlopen("http://%s:8053/status.json" % ip, timeout=2) as r:
        report = json.load(r)
    b = [x for x in report["pools"][0]["backends"] if x["name"] == THREE][0]
    return "status %s state=%s usable=%s peers=%s" % (
        ip, b["state"], str(b["usable"]).lower(), ",".join(b.get("peer_views", [])))

def nft(*args):
    subprocess.run([NFT] + list(args), check=True)

def transition(name, t0, has_three, limit):
    rows = watch(limit, lambda r: stays(r, has_three, 2.0))
    ats = [settled(rows, i, has_three) for i in range(len(INSTANCES))]
    print("== " + name)
    word = "back" if has_three else "drop"
    times = " ".join("%s=%s" % (ip, "never" if a is None else "%.3f" % (a - t0))
                     for ip, a in zip(INSTANCES, ats))
    done = [a for a in ats if a is not None]
    spread = (max(done) - min(done)) if len(done) == len(ats) else float("inf")
    print("%s %s spread=%.3f longest_disagreement=%.3f failed=%d samples=%d" % (
        word, times, spread, longest_disagreement(rows), failed(rows), len(rows)))

# Every instance answers both backends before anything is cut.
rows = watch(30, lambda r: all(a == frozenset([TWO, THREE]) for a in r[-1][1]))
if not all(a == frozenset([TWO, THREE]) for a in rows[-1][1]):
    sys.exit("not every instance answers both backends after 30 s: %s" % (rows[-1][1],))

# One-sided loss: .53's probes to .3 are dropped; .54 and .55 still reach it.
nft("add", "table", "inet", "t")
nft("add", "chain", "inet", "t", "out", "{ type filter hook output priority 0; }")
nft("add", "rule", "inet", "t", "out", "ip", "saddr", "127.0.0.53", "ip", "daddr", THREE,
    "tcp", "dport", "8080", "drop")
t0 = time.monotonic()
rows = watch(10)
print("== one-sided")
without = ["%s@%.1f" % (ip, t - t0) for t, answers in rows
           for ip, a in zip(INSTANCES, answers) if a is not None and THREE not in a]
print("without3=%d longest_disagreement=%.3f failed=%d samples=%d" % (
    len(without), longest_disagreement(rows), failed(rows), len(rows)))
print("without3_at " + " ".join(without))
# failover = "5s": the steady TTL is 2 s. .53, outvoted (its probes see .3 down, the quorum
# keeps it), answers with TTL 0 once it took .3 down (by 2.9 s); the others with the steady TTL.
late = [TTLS[t] for t, _ in rows if t >= t0 + 5]
print("ttls " + " ".join("%s=%s" % (ip, ",".join(str(x) for x in sorted({r[i] for r in late if r[i] is not None})))
                         for i, ip in enumerate(INSTANCES)))
for ip in INSTANCES:
    print(status(ip))

# .54 loses it too: the majority sees it down.
t0 = time.monotonic()
nft("add", "rule", "inet", "t", "out", "ip", "saddr", "127.0.0.54", "ip", "daddr", THREE,
    "tcp", "dport", "8080", "drop")
transition("majority-down", t0, False, 15)

# The rules go: .3 comes back on all.
t0 = time.monotonic()
nft("delete", "table", "inet", "t")
transition("restored", t0, True, 15)

print("== total")
print("longest_disagreement=%.3f failed=%d samples=%d" % (
    longest_disagreement(SAMPLES), failed(SAMPLES), len(SAMPLES)))
"#;

/// Three instances with `[cluster]` (127.0.0.53-.55), each probing `www.lb.test.` (HTTP
/// backends .2 and .3) from its own address with the default probe timing. Cutting .53 from
/// .3 (one-sided loss) leaves .3 in every instance's answers, since two of three see it up,
/// and (the pool has `failover = "5s"`) .53, outvoted, answers with TTL 0 while the others
/// keep the steady 2 s; cutting .54 too takes it out of all three; removing the cuts brings it
/// back on all. The instances never disagree for longer than `MAX_DISAGREEMENT`, and no query
/// fails. About 25 s of wall time; the script is stopped (and stops what it started) at 120 s.
#[test]
fn three_instances_agree_through_one_sided_loss_made_with_nftables() {
    // Fails, never skips, when a tool is missing.
    let nft = require_tool("nft");
    let python3 = require_tool("python3");
    let ip = require_tool("ip");
    let timeout = require_tool("timeout");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("driver.py"), DRIVER).unwrap();
    let key = d.join("cluster.key");
    std::fs::write(&key, "a shared secret of the nftables cluster test\n").unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let zone = "$ORIGIN lb.test.\n$TTL 60\n@ IN SOA ns1 hostmaster 1 3600 600 86400 60\n\
                @ IN NS ns1\n@ IN NS ns2\n@ IN NS ns3\nns1 IN A 127.0.0.53\n\
                ns2 IN A 127.0.0.54\nns3 IN A 127.0.0.55\n";
    let all = ["127.0.0.53", "127.0.0.54", "127.0.0.55"];
    for me in all {
        let peers: Vec<String> = all
            .iter()
            .filter(|&&p| p != me)
            .map(|p| format!("\"{p}:8055\""))
            .collect();
        let inst = d.join(me);
        std::fs::create_dir(&inst).unwrap();
        std::fs::write(inst.join("lb.test.zone"), zone).unwrap();
        std::fs::write(
            inst.join("lbns.toml"),
            format!(
                "[server]\nlisten = [\"{me}:53\"]\nudp_workers = 1\n\n\
                 [status]\nlisten = \"{me}:8053\"\n\n\
                 [cluster]\nlisten = \"{me}:8055\"\npeers = [{peers}]\nkey_file = \"{key}\"\n\n\
                 [[zone]]\norigin = \"lb.test.\"\nfile = \"lb.test.zone\"\n\n\
                 [[pool]]\nname = \"www.lb.test.\"\nbackends = [\"127.0.0.2\", \"127.0.0.3\"]\n\
                 failover = \"5s\"\n\
                 probe = {{ kind = \"http\", port = 8080, source = \"{me}\" }}\n",
                peers = peers.join(", "),
                key = key.display(),
            ),
        )
        .unwrap();
    }
    let script = format!(
        r#"
pids=""
stop() {{
    for p in $pids; do kill "$p" 2>/dev/null; done
    for p in $pids; do wait "$p" 2>/dev/null; done
    for i in {all}; do echo "--- lbns $i"; cat {d}/$i.log; done >{d}/lbns.log 2>&1
}}
trap stop EXIT
{ip} link set lo up
# 127.0.0.0/8 is local on lo; add an address only where that is not so.
for a in 127.0.0.2 127.0.0.3 {all}; do
    {ip} -o route get "$a" | grep -q '^local ' || {ip} addr add "$a/32" dev lo
done
mkdir -p {d}/www
for b in 127.0.0.2 127.0.0.3; do
    {py} -m http.server --bind $b --directory {d}/www 8080 >{d}/backend-$b.log 2>&1 &
    pids="$pids $!"
done
# Listening before lbns starts: a backend refused by the first probe round would be down.
for b in 127.0.0.2 127.0.0.3; do
    for i in $(seq 100); do {py} -c "import socket; socket.create_connection(('$b', 8080), 1)" \
        2>/dev/null && break; sleep 0.1; done
done
for i in {all}; do
    {lbns} serve --config {d}/$i/lbns.toml >/dev/null 2>{d}/$i.log &
    pids="$pids $!"
done
{timeout} 120 {py} -u {d}/driver.py {nft}
"#,
        all = all.join(" "),
        d = d.display(),
        ip = ip.display(),
        py = python3.display(),
        lbns = lbns_bin().display(),
        timeout = timeout.display(),
        nft = nft.display(),
    );
    let out = Sections::run_in_netns(&script, &d.join("lbns.log"));
    let report = format!(
        "{}{}{}{}",
        out.section("one-sided"),
        out.section("majority-down"),
        out.section("restored"),
        out.section("total")
    );
    // Shown with `--nocapture`: what was measured.
    println!("{report}");
    let field = |section: &str, key: &str| -> f64 {
        let text = out.section(section);
        let value = text
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}= in {section}:\n{report}"));
        if value == "never" {
            f64::INFINITY
        } else {
            value
                .parse()
                .unwrap_or_else(|_| panic!("{key}={value} is not a number:\n{report}"))
        }
    };

    // One-sided loss: the cut took (.53's own probe sees .3 down, its peers up), yet every
    // answer of every instance held .3.
    out.expect_lines(
        "one-sided",
        &[
            "status 127.0.0.53 state=down usable=true peers=up,up",
            "status 127.0.0.54 state=up usable=true peers=down,up",
            "status 127.0.0.55 state=up usable=true peers=down,up",
            // Outvoted, .53 answers with TTL 0 (docs/config.md, `[cluster]`, the failover
            // promise); its peers with the steady TTL of `failover = "5s"`.
            "ttls 127.0.0.53=0 127.0.0.54=2 127.0.0.55=2",
        ],
    );
    assert_eq!(
        field("one-sided", "without3"),
        0.0,
        "an instance dropped .3 though two of three see it up:\n{report}"
    );

    // Majority down: every instance drops it, within the second instance's detection and
    // one exchange, and within MAX_DISAGREEMENT of each other.
    for i in all {
        let at = field("majority-down", i);
        assert!(
            at <= DETECTION + EXCHANGE + MARGIN,
            "{i} dropped .3 {at} s after the second cut (bound {} s):\n{report}",
            DETECTION + EXCHANGE + MARGIN
        );
    }
    // Restored: back on all three, within a rise and one exchange.
    for i in all {
        let at = field("restored", i);
        assert!(
            at <= RECOVERY + EXCHANGE + MARGIN,
            "{i} answered .3 again {at} s after the cuts were removed (bound {} s):\n{report}",
            RECOVERY + EXCHANGE + MARGIN
        );
    }
    for section in ["majority-down", "restored"] {
        let spread = field(section, "spread");
        assert!(
            spread <= MAX_DISAGREEMENT,
            "{section}: the first and last instance changed {spread} s apart:\n{report}"
        );
    }
    let longest = field("total", "longest_disagreement");
    assert!(
        longest <= MAX_DISAGREEMENT,
        "the instances gave different answers for {longest} s at once (at most \
         {MAX_DISAGREEMENT} s):\n{report}"
    );
    assert_eq!(
        field("total", "failed"),
        0.0,
        "queries lost or answered badly:\n{report}"
    );
}
