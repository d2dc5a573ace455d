#!/usr/bin/env bash
# benches/failover-resolver.sh -- the failover promise as a client behind a caching resolver sees
# it: how long after a backend dies (SIGKILL: connections refused) or hangs (SIGSTOP: the kernel
# still accepts connections into the listen backlog, nothing ever answers) a client that asks a
# caching resolver keeps receiving that backend's address.
#
# lbns only controls when the backend leaves its own answers (the probe bound) and the TTL it
# gives them; the client sees the backend until the resolver's cached copy expires after that.
# The promise is that the client stops receiving it within the pool's `failover` time.
#
# What it does, in order:
#   1. installs what is missing (scripts/install-deps.sh: unbound, python3, unshare, ip, nft;
#      with --kresd also knot-resolver), with /usr/sbin/policy-rc.d refusing service starts, so no
#      packaged daemon is ever auto-started; exits non-zero if a required tool is still missing;
#   2. builds lbns (`cargo build --release`) unless --no-build;
#   3. re-runs itself in a private, empty network namespace (unshare -n): only a loopback, no
#      route anywhere else, so the resolvers can reach nothing but lbns (checked: the script stops
#      if any non-loopback address is routable);
#   4. starts four HTTP backends (a tiny python3 server answering 200 "ok") on 127.0.0.2-.5:8080,
#      two lbns (127.0.0.53:53 and 127.0.0.54:53) serving zone lb.test. with the pool
#      www.lb.test. = those four backends, http probe on port 8080, default probe settings and
#      the pool settings in POOL_SETTINGS below; and unbound on 127.0.0.1:53 (no daemonizing, no
#      chroot, no DNSSEC, no prefetch, no serve-expired, one thread) with lb.test. as a stub zone
#      on both lbns -- no forwarders; with --kresd also Knot Resolver on 127.0.0.1:5353 with a
#      STUB policy for lb.test. to both lbns (its default cache.min_ttl of 5 s stays in force);
#   5. a python3 client asks every resolver (and, directly, the lbns on 127.0.0.53) for
#      www.lb.test. A every 100 ms, with a raw UDP query, and records each answer's addresses and
#      TTLs; a reply lost (none within 1 s), unparseable, truncated, not NOERROR or without an A
#      record is a failed query, never a drop;
#   6. runs the trials, killed and hung interleaved, each on the next backend in turn: wait until
#      the victim is in every answer and the caches are warm; sleep a random 0..TTL s (a random
#      phase of the resolver's cache cycle); SIGKILL or SIGSTOP it; record the *client-visible
#      time*, from the signal to the last answer that still holds the victim (the client stops
#      receiving it after that), watching until every target has gone --settle seconds (default:
#      the largest TTL seen + 1 s) without it; then restart it (killed) or SIGCONT it (hung) and
#      wait until it is back in every answer;
#   7. with --cluster: the two lbns run with `[cluster]` (each the other's peer, a shared key,
#      `quorum = "majority"`), each probing from its own address (`source`), and the client asks
#      both lbns directly too; after the killed and hung trials come two more cases:
#      - one-sided loss: an nftables rule in the namespace drops one instance's probes to one
#        backend (by source address) for --cut seconds (default 20); measured: how long the
#        two instances answer differently, when each drops the backend, what the client behind
#        the resolver receives, and each instance's own view at the end of the cut (the cut
#        one must see it down, or the rule did not take);
#      - restart: SIGKILL one lbns (alternating) with every backend up, start it again --down
#        seconds later (default 5); measured: the client's failed queries (the resolver should
#        retry the other nameserver), when the restarted instance answers, and whether its
#        first answer is its peer's;
#   8. prints and writes to benches/results/failover-resolver.md the percentiles per case and
#      per resolver (and lbns's own time-to-drop, from the direct queries), how many trials were
#      within the failover bound, the failed queries, and every trial, with the command line,
#      date and the lbns git revision; a --cluster run replaces only its own section of that
#      file (between the `cluster-report` markers), and a run without it keeps that section;
#   9. on exit (trap on EXIT, INT, TERM) stops every process it started, by PID.
#
# Usage: benches/failover-resolver.sh [--trials N] [--killed N] [--hung N] [--kresd]
#                                     [--cluster] [--one-sided N] [--restarts N] [--cut S]
#                                     [--down S]
#                                     [--pool 'TOML'] [--settle S] [--max-wait S] [--seed N]
#                                     [--no-build] [--no-install] [--no-write] [--lbns PATH]
#                                     [--workdir DIR] [--keep-tmp]
#   --trials N     killed and hung trials each (default 20), and with --cluster one-sided and
#                  restart trials each; --killed / --hung / --one-sided / --restarts set one
#   --kresd        measure through Knot Resolver too (in the same trials)
#   --cluster      the two lbns decide together (`[cluster]`); adds the one-sided and restart
#                  cases (needs nft: scripts/install-deps.sh installs nftables)
#   --cut S        one-sided trials: how long the cut lasts (default 20)
#   --down S       restart trials: how long the killed lbns stays down (default 5)
#   --pool 'TOML'  the pool's timing keys (default: POOL_SETTINGS below)
#   --no-install   never install: a missing tool is an error (the test uses this)
#   --lbns PATH    the lbns binary (default target/release/lbns)
#   --workdir DIR  put configs and logs in DIR and keep them (default: a temp dir, removed)
#   --no-write     do not write benches/results/failover-resolver.md
# Environment: LBNS_FAILOVER_NETNS=1 means "already in a fresh network namespace" (set by the
# re-run, and by tests/it/resolver.rs, which runs this under its own `unshare -n`).
#
# Needs root (unshare -n, port 53, installing packages). Nothing is written outside the work
# dir except target/ (cargo), benches/results/failover-resolver.md and what apt-get installs.
set -euo pipefail

# The pool's timing, the one line to change (or --pool): `failover = "5s"` (lbns derives the
# TTLs from it); before [[pool]] had that key it was `ttl = 5` with the default probe settings
# (lbns's own bound 3.4 s, within that TTL, but not counting the resolver's cache).
POOL_SETTINGS='failover = "5s"'
# The promise: a client stops receiving a dead or hung backend within this many seconds.
FAILOVER_S=5

TRIALS_KILLED=20
TRIALS_HUNG=20
ONE_SIDED=""
RESTARTS=""
TRIALS=""
CUT_S=20
DOWN_S=5
CLUSTER=0
KRESD=0
BUILD=1
INSTALL=1
WRITE=1
KEEP_TMP=0
SETTLE=auto
MAX_WAIT=30
SEED=""
LBNS=""
WORKDIR=""

ARGS=("$@")
CMDLINE="${LBNS_FAILOVER_CMDLINE:-$(printf '%q ' "$0" "$@")}"
CMDLINE="${CMDLINE% }"

usage() { sed -n '/^# Usage:/,/^# Environment:/p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "failover-resolver.sh: error: $*" >&2; exit 1; }
log() { echo "== $*" >&2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --trials) TRIALS_KILLED="${2:?--trials needs a number}"; TRIALS_HUNG="$2"; TRIALS="$2"; shift 2 ;;
        --killed) TRIALS_KILLED="${2:?--killed needs a number}"; shift 2 ;;
        --hung) TRIALS_HUNG="${2:?--hung needs a number}"; shift 2 ;;
        --one-sided) ONE_SIDED="${2:?--one-sided needs a number}"; shift 2 ;;
        --restarts) RESTARTS="${2:?--restarts needs a number}"; shift 2 ;;
        --cut) CUT_S="${2:?--cut needs seconds}"; shift 2 ;;
        --down) DOWN_S="${2:?--down needs seconds}"; shift 2 ;;
        --cluster) CLUSTER=1; shift ;;
        --kresd) KRESD=1; shift ;;
        --pool) POOL_SETTINGS="${2:?--pool needs TOML}"; shift 2 ;;
        --settle) SETTLE="${2:?--settle needs seconds}"; shift 2 ;;
        --max-wait) MAX_WAIT="${2:?--max-wait needs seconds}"; shift 2 ;;
        --seed) SEED="${2:?--seed needs a number}"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --no-install) INSTALL=0; shift ;;
        --no-write) WRITE=0; shift ;;
        --lbns) LBNS="${2:?--lbns needs a path}"; shift 2 ;;
        --workdir) WORKDIR="${2:?--workdir needs a directory}"; shift 2 ;;
        --keep-tmp) KEEP_TMP=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done
# The one-sided and restart cases run by default only with --cluster (as many as --trials
# says, else 20); asked for without it, they measure two instances that decide alone.
if [ "$CLUSTER" -eq 1 ]; then
    : "${ONE_SIDED:=${TRIALS:-20}}" "${RESTARTS:=${TRIALS:-20}}"
else
    : "${ONE_SIDED:=0}" "${RESTARTS:=0}"
fi
for v in TRIALS_KILLED TRIALS_HUNG ONE_SIDED RESTARTS MAX_WAIT CUT_S DOWN_S; do
    case "${!v}" in ''|*[!0-9]*) die "$v must be a non-negative integer, got '${!v}'" ;; esac
done
[ $((TRIALS_KILLED + TRIALS_HUNG + ONE_SIDED + RESTARTS)) -ge 1 ] || die "no trials to run"
[ "$(id -u)" -eq 0 ] || die "needs root (unshare -n, port 53, packages)"

cd "$(dirname "$0")/.."
REPO="$(pwd)"
: "${LBNS:=$REPO/target/release/lbns}"
# Before anything is written: the report itself would make the tree look dirty.
LBNS_VERSION="${LBNS_FAILOVER_VERSION:-$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown) (branch $(git -C "$REPO" rev-parse --abbrev-ref HEAD 2>/dev/null || echo unknown))}"

have() { command -v "$1" >/dev/null 2>&1; }
# The packaged daemons' programs live in /usr/sbin, which a non-login PATH may lack.
PATH="$PATH:/usr/sbin:/sbin"

# ---------------------------------------------------------------------------------------------
# 1. Tools. Installed only when missing (outside the namespace: apt-get needs the network); the
#    daemons are never started by the install (policy-rc.d exits 101).
# ---------------------------------------------------------------------------------------------
if [ -z "${LBNS_FAILOVER_NETNS:-}" ] && [ "$INSTALL" -eq 1 ]; then
    daemon_pids() { { pgrep -x unbound; pgrep -x kresd; } 2>/dev/null | sort -n || true; }
    before="$(daemon_pids)"
    log "scripts/install-deps.sh (unbound, python3, unshare, ip, ...)"
    "$REPO/scripts/install-deps.sh"
    if [ "$KRESD" -eq 1 ] && ! have kresd; then
        # The same guard as scripts/install-deps.sh: no service may start during the install.
        rc=0
        [ -x /usr/sbin/policy-rc.d ] && { /usr/sbin/policy-rc.d >/dev/null 2>&1 || rc=$?; }
        if [ "$rc" -ne 101 ]; then
            log "installing /usr/sbin/policy-rc.d (exit 101) so that no service auto-starts"
            printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
            chmod 755 /usr/sbin/policy-rc.d
        fi
        log "installing from Debian: knot-resolver"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends knot-resolver >/dev/null \
            || log "knot-resolver could not be installed"
    fi
    # If a resolver started anyway (policy ignored), this install started it: stop it by PID.
    for pid in $(comm -13 <(echo "$before") <(daemon_pids)); do
        log "the install started a daemon anyway (pid $pid, $(cat "/proc/$pid/comm" 2>/dev/null)); stopping it"
        kill "$pid" 2>/dev/null || true
    done
fi
missing=""
for tool in unbound python3 unshare ip; do have "$tool" || missing="$missing $tool"; done
[ "$ONE_SIDED" -gt 0 ] && { have nft || missing="$missing nft (Debian package nftables)"; }
[ "$KRESD" -eq 1 ] && { have kresd || missing="$missing kresd (Debian package knot-resolver)"; }
[ -z "$missing" ] || die "missing after install:$missing (run scripts/install-deps.sh as root)"
# The Debian python3, when there is one: it starts faster than a version-manager shim.
PY="$(command -v /usr/bin/python3 || command -v python3)"

# ---------------------------------------------------------------------------------------------
# 2. Build lbns.
# ---------------------------------------------------------------------------------------------
if [ -z "${LBNS_FAILOVER_NETNS:-}" ] && [ "$BUILD" -eq 1 ]; then
    log "cargo build --release"
    cargo build --release
fi
[ -x "$LBNS" ] || die "$LBNS missing: build it (cargo build --release) or pass --lbns"

# ---------------------------------------------------------------------------------------------
# 3. A private network namespace: re-run there.
# ---------------------------------------------------------------------------------------------
if [ -z "${LBNS_FAILOVER_NETNS:-}" ]; then
    log "re-running in a private network namespace (unshare -n)"
    exec unshare -n env LBNS_FAILOVER_NETNS=1 LBNS_FAILOVER_CMDLINE="$CMDLINE" \
        LBNS_FAILOVER_VERSION="$LBNS_VERSION" bash "$REPO/benches/failover-resolver.sh" "${ARGS[@]}"
fi
ip link set lo up
# 127.0.0.0/8 is all local on lo (the kernel's `local 127.0.0.0/8` route); add an address only
# if that is not so here.
for a in 127.0.0.2 127.0.0.3 127.0.0.4 127.0.0.5 127.0.0.53 127.0.0.54; do
    ip -o route get "$a" 2>/dev/null | grep -q '^local ' || ip addr add "$a/32" dev lo
done
# The namespace must be empty: no route to anything but loopback (so no resolver can try the
# root servers or anything else).
for a in 192.0.2.1 198.41.0.4; do
    if ip -o route get "$a" >/dev/null 2>&1; then
        die "$a is routable here: not a private, empty network namespace ($(ip -o route get "$a"))"
    fi
done

# ---------------------------------------------------------------------------------------------
# Work dir and cleanup: every process started is listed in $TMP/pids (pid per line, backends
# restarted by the driver included) and stopped by that PID on exit.
# ---------------------------------------------------------------------------------------------
if [ -n "$WORKDIR" ]; then
    mkdir -p "$WORKDIR"; TMP="$(cd "$WORKDIR" && pwd)"; KEEP_TMP=1
else
    TMP="$(mktemp -d "${TMPDIR:-/tmp}/lbns-failover.XXXXXX")"
fi
PIDS="$TMP/pids"
: >"$PIDS"
started() { echo "$1" >>"$PIDS"; }
cleanup() {
    local rc=$? p
    trap - EXIT INT TERM
    # TERM first (SIGCONT too: a stopped backend would hold TERM pending), KILL what is left.
    for p in $(sort -u "$PIDS" 2>/dev/null); do
        kill -TERM "$p" 2>/dev/null && kill -CONT "$p" 2>/dev/null || true
    done
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        local alive=0
        for p in $(sort -u "$PIDS" 2>/dev/null); do kill -0 "$p" 2>/dev/null && alive=1; done
        [ "$alive" -eq 0 ] && break
        sleep 0.2
    done
    for p in $(sort -u "$PIDS" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "$KEEP_TMP" -eq 1 ]; then
        echo "work dir kept: $TMP" >&2
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# The client, the backends and the trial driver, in one python3 file.
# ---------------------------------------------------------------------------------------------
DRIVER="$TMP/failover_driver.py"
cat >"$DRIVER" <<'PY'
"""benches/failover-resolver.sh's DNS client, HTTP backend and trial driver."""
import argparse
import bisect
import http.server
import math
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

NAME = "www.lb.test."
TIMEOUT = 1.0  # a reply that has not come within this is lost
NFT_TABLE = "lbns_bench"  # --cluster: the table of the one-sided cuts, in the namespace only


class BadReply(Exception):
    pass


def query_bytes(qid, rd):
    q = struct.pack(">HHHHHH", qid, 0x0100 if rd else 0, 1, 0, 0, 1)
    for label in NAME.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack(">HH", 1, 1)  # A, IN
    q += b"\0" + struct.pack(">HHIH", 41, 1232, 0, 0)  # OPT: EDNS(0), 1232
    return q


def skip_name(buf, off):
    for _ in range(128):
        if off >= len(buf):
            raise BadReply("name past the end")
        n = buf[off]
        if n == 0:
            return off + 1
        if n & 0xC0 == 0xC0:
            return off + 2
        if n & 0xC0:
            raise BadReply("bad label type")
        off += 1 + n
    raise BadReply("name too long")


def parse(buf, qid):
    """[(address, ttl)] of the A records; None for another query's (late) reply."""
    if len(buf) < 12:
        raise BadReply("short reply")
    rid, flags, qd, an, _, _ = struct.unpack_from(">HHHHHH", buf)
    if rid != qid:
        return None
    if not flags & 0x8000:
        raise BadReply("not a response")
    if flags & 0x0200:
        raise BadReply("truncated")
    if flags & 0xF:
        raise BadReply("rcode %d" % (flags & 0xF))
    off = 12
    for _ in range(qd):
        off = skip_name(buf, off) + 4
    out = []
    for _ in range(an):
        off = skip_name(buf, off)
        if off + 10 > len(buf):
            raise BadReply("record past the end")
        rtype, rclass, ttl, rdlen = struct.unpack_from(">HHIH", buf, off)
        off += 10
        if off + rdlen > len(buf):
            raise BadReply("rdata past the end")
        if rtype == 1 and rclass == 1 and rdlen == 4:
            out.append((socket.inet_ntoa(buf[off:off + 4]), ttl))
        off += rdlen
    if not out:
        raise BadReply("no A record")
    return out


def ask(sock, rd):
    """One query on a connected socket: ([(address, ttl)], None) or (None, why it failed)."""
    qid = random.getrandbits(16)
    sock.send(query_bytes(qid, rd))
    deadline = time.monotonic() + TIMEOUT
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None, "lost"
        sock.settimeout(left)
        try:
            data = sock.recv(4096)
        except socket.timeout:
            return None, "lost"
        except OSError as e:
            return None, "error: %s" % e
        try:
            records = parse(data, qid)
        except BadReply as e:
            return None, "bad reply: %s" % e
        if records is not None:
            return records, None


class Entry:
    __slots__ = ("t0", "t1", "addrs", "ttl", "err")

    def __init__(self, t0, t1, records, err):
        self.t0, self.t1, self.err = t0, t1, err
        self.addrs = frozenset(a for a, _ in records) if records else None
        self.ttl = max(t for _, t in records) if records else None


class Target(threading.Thread):
    """Asks one server every `interval` seconds (fixed cadence; a late reply skips ticks)."""

    def __init__(self, name, spec, rd, interval, stop):
        super().__init__(daemon=True)
        self.label = name
        host, port = spec.rsplit(":", 1)
        self.addr = (host, int(port))
        self.rd, self.interval, self.stop = rd, interval, stop
        self.lock = threading.Lock()
        self.log, self.t0s = [], []

    def run(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.connect(self.addr)
        tick = time.monotonic()
        while not self.stop.is_set():
            t0 = time.monotonic()
            records, err = ask(sock, self.rd)
            e = Entry(t0, time.monotonic(), records, err)
            with self.lock:
                self.log.append(e)
                self.t0s.append(t0)
            tick += self.interval
            now = time.monotonic()
            if tick < now:
                tick = now
            self.stop.wait(tick - now)

    def since(self, t):
        with self.lock:
            return self.log[bisect.bisect_left(self.t0s, t):]


def last_with(entries, victim):
    ts = [e.t1 for e in entries if e.addrs is not None and victim in e.addrs]
    return max(ts) if ts else None


def wait_until(pred, limit):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def percentile(sorted_values, p):
    """Nearest rank. A p-th percentile is only reported when the sample has a value above it:
    n >= 1/(1-p), so p95 needs 20 samples and p99 needs 100; below that it would just be the
    maximum, or a number the data cannot support ("n/a")."""
    n = len(sorted_values)
    if n == 0 or n < round(1 / (1 - p)):
        return None
    return sorted_values[max(0, math.ceil(p * n) - 1)]


def fmt(v, unit="s"):
    if v is None:
        return "n/a"
    if math.isinf(v):
        return "never"
    return "%.2f %s" % (v, unit)


def backend(argv):
    host, port = argv[0], int(argv[1])

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"ok\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    class S(http.server.ThreadingHTTPServer):
        # A hung (stopped) backend's kernel keeps accepting into this backlog.
        request_queue_size = 128
        daemon_threads = True

    S((host, port), H).serve_forever()


def http_ready(argv):
    """Exit 0 once every backend (comma list) answers GET / on `port` with 200."""
    import urllib.request
    hosts, port, limit = argv[0].split(","), int(argv[1]), float(argv[2])
    end = time.monotonic() + limit
    for h in hosts:
        while True:
            try:
                with urllib.request.urlopen("http://%s:%d/" % (h, port), timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > end:
                print("backend %s:%d not answering after %.0fs" % (h, port, limit), file=sys.stderr)
                return 1
            time.sleep(0.05)
    return 0


def ready(argv):
    """Exit 0 once `server` answers www.lb.test. with every address in `want` (comma list)."""
    server, want, limit = argv[0], set(argv[1].split(",")), float(argv[2])
    host, port = server.rsplit(":", 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((host, int(port)))
    end = time.monotonic() + limit
    last = None
    while time.monotonic() < end:
        records, err = ask(sock, True)
        last = records or err
        if records and want <= {a for a, _ in records}:
            print("%s answers %s" % (server, " ".join("%s/%d" % r for r in records)))
            return 0
        time.sleep(0.1)
    print("%s not ready after %.0fs; last: %s" % (server, limit, last), file=sys.stderr)
    return 1


def run(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--resolver", action="append", default=[], help="name=addr:port")
    ap.add_argument("--direct", required=True, help="name=addr:port (lbns itself)")
    ap.add_argument("--also", action="append", default=[],
                    help="name=addr:port: another lbns, asked directly too (--cluster)")
    ap.add_argument("--instances", default="",
                    help="the lbns addresses (comma list), in the order of --direct and --also")
    ap.add_argument("--lbns", default=None, help="the lbns binary (to restart an instance)")
    ap.add_argument("--one-sided", type=int, default=0)
    ap.add_argument("--restarts", type=int, default=0)
    ap.add_argument("--cut", type=float, default=20.0)
    ap.add_argument("--down", type=float, default=5.0)
    ap.add_argument("--nft", default="nft")
    ap.add_argument("--backends", required=True)
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--killed", type=int, default=20)
    ap.add_argument("--hung", type=int, default=20)
    ap.add_argument("--bound", type=float, default=5.0)
    ap.add_argument("--settle", default="auto")
    ap.add_argument("--max-wait", type=float, default=30.0)
    ap.add_argument("--interval", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--table", required=True)
    a = ap.parse_args(argv)
    rng = random.Random(a.seed)
    backends = a.backends.split(",")
    stop = threading.Event()
    resolvers = []
    for spec in a.resolver:
        name, addr = spec.split("=", 1)
        resolvers.append(Target(name, addr, True, a.interval, stop))
    dname, daddr = a.direct.split("=", 1)
    direct = Target(dname, daddr, False, a.interval, stop)
    lbns_targets = [direct]
    for spec in a.also:
        name, addr = spec.split("=", 1)
        lbns_targets.append(Target(name, addr, False, a.interval, stop))
    instances = a.instances.split(",") if a.instances else []
    targets = resolvers + lbns_targets
    # Windows in which an lbns was killed on purpose (restart trials): its own queries failing
    # then are expected, not failures. (label, from, to)
    down_windows = []
    for t in targets:
        t.start()

    def pidfile(b):
        return os.path.join(a.workdir, "backend-%s.pid" % b)

    pids = {b: int(open(pidfile(b)).read().split()[-1]) for b in backends}
    children = []

    def restart(b):
        log = open(os.path.join(a.workdir, "backend-%s.log" % b), "ab")
        p = subprocess.Popen([sys.executable, __file__, "backend", b, str(a.port)],
                             stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        children.append(p)
        with open(os.path.join(a.workdir, "pids"), "a") as f:
            f.write("%d\n" % p.pid)
        with open(pidfile(b), "w") as f:
            f.write("%d\n" % p.pid)
        pids[b] = p.pid

    def recent_ok(t, n):
        return [e for e in t.since(time.monotonic() - 2.0) if e.addrs is not None][-n:]

    def in_answers(t, victim, n):
        ok = recent_ok(t, n)
        return len(ok) == n and all(victim in e.addrs for e in ok)

    def all_in_answers(t, wanted, n):
        ok = recent_ok(t, n)
        return len(ok) == n and all(set(wanted) <= e.addrs for e in ok)

    def nft(*args):
        subprocess.run([a.nft] + list(args), check=True)

    def own_state(ip, victim):
        """An instance's own probe state of `victim`, from its status.json."""
        import json
        import urllib.request
        try:
            with urllib.request.urlopen("http://%s:8053/status.json" % ip, timeout=2) as r:
                report = json.load(r)
        except OSError as e:
            return "unreadable (%s)" % e
        for b in report["pools"][0]["backends"]:
            if b["name"] == victim:
                return b["state"]
        return "absent"

    def restart_lbns(ip):
        log = open(os.path.join(a.workdir, "lbns-%s.log" % ip), "ab")
        p = subprocess.Popen([a.lbns, "serve", "--config",
                              os.path.join(a.workdir, "lbns-%s" % ip, "lbns.toml")],
                             stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL)
        children.append(p)
        with open(os.path.join(a.workdir, "pids"), "a") as f:
            f.write("%d\n" % p.pid)
        with open(os.path.join(a.workdir, "lbns-%s.pid" % ip), "w") as f:
            f.write("%d\n" % p.pid)

    def disagreement(ts, t_from, t_to, step=0.05):
        """Longest and total time within [t_from, t_to] in which the instances' latest answers
        differ, on a 50 ms grid (each instance's answer at a moment: its latest reply)."""
        logs = []
        for t in ts:
            e = [x for x in t.since(t_from - 1.0) if x.addrs is not None]
            logs.append(([x.t1 for x in e], [x.addrs for x in e]))
        longest = total = run = 0.0
        g = t_from
        while g <= t_to:
            now = []
            for t1s, addrs in logs:
                i = bisect.bisect_right(t1s, g) - 1
                now.append(addrs[i] if i >= 0 else None)
            if None not in now and len(set(now)) > 1:
                run += step
                total += step
                longest = max(longest, run)
            else:
                run = 0.0
            g += step
        return longest, total

    one_sided_rows, restart_rows = [], []
    plan = []
    for i in range(max(a.killed, a.hung)):
        if i < a.killed:
            plan.append("killed")
        if i < a.hung:
            plan.append("hung")
    rows = []
    print("== trials", flush=True)
    try:
        for n, case in enumerate(plan, 1):
            victim = backends[(n - 1) % len(backends)]
            # The victim is in every target's last three answers: the caches are warm with it.
            if not wait_until(lambda: all(in_answers(t, victim, 3) for t in targets), a.max_wait):
                raise SystemExit("trial %d: %s never in every answer before the kill" % (n, victim))
            ttls = [e.ttl for t in targets for e in recent_ok(t, 3)]
            ttl = max(e.ttl for e in recent_ok(direct, 1))
            settle = float(a.settle) if a.settle != "auto" else max(ttls) + 1.0
            phase = rng.uniform(0, ttl)
            time.sleep(phase)
            pid = pids[victim]
            os.kill(pid, signal.SIGKILL if case == "killed" else signal.SIGSTOP)
            t_kill = time.monotonic()

            def settled():
                now = time.monotonic()
                for t in targets:
                    e = t.since(t_kill)
                    start = last_with(e, victim) or t_kill
                    clean = [x for x in e if x.addrs is not None and victim not in x.addrs and x.t1 > start]
                    if not clean or now - start < settle:
                        return False
                return True

            dropped = wait_until(settled, a.max_wait)
            row = {"n": n, "case": case, "victim": victim, "phase": phase, "ttl": ttl}
            for t in targets:
                e = t.since(t_kill)
                last = last_with(e, victim)
                still = e and e[-1].addrs is not None and victim in e[-1].addrs
                row[t.label] = math.inf if (not dropped and still) else (last - t_kill if last else 0.0)
                row[t.label + "_failed"] = sum(1 for x in e if x.addrs is None)
            # Restore, and wait until it is back everywhere.
            if case == "killed":
                for p in children:
                    if p.pid == pid:
                        p.wait()
                restart(victim)
            else:
                os.kill(pid, signal.SIGCONT)
            t_back = time.monotonic()
            wait_until(lambda: all(in_answers(t, victim, 1) for t in targets), a.max_wait)
            for t in targets:
                e = t.since(t_back)
                first = [x.t1 for x in e if x.addrs is not None and victim in x.addrs]
                row[t.label + "_back"] = (first[0] - t_back) if first else math.inf
                row[t.label + "_failed"] += sum(1 for x in e if x.addrs is None)
            rows.append(row)
            print("trial=%d case=%s victim=%s ttl=%d phase=%.2f %s %s failed=%d" % (
                n, case, victim, ttl, phase,
                " ".join("%s=%.3f" % (t.label, row[t.label]) for t in targets),
                " ".join("%s_back=%.2f" % (t.label, row[t.label + "_back"]) for t in targets),
                sum(row[t.label + "_failed"] for t in targets)), flush=True)

        # One-sided loss: one instance's probes to one backend are dropped (nftables, by the
        # probe's source address) for `--cut` seconds; the other instance still reaches it.
        if a.one_sided:
            nft("add", "table", "inet", NFT_TABLE)
            nft("add", "chain", "inet", NFT_TABLE, "out",
                "{ type filter hook output priority 0; }")
        for n in range(1, a.one_sided + 1):
            cut_ip = instances[(n - 1) % len(instances)]
            cut_t = lbns_targets[(n - 1) % len(lbns_targets)]
            victim = backends[(n - 1) % len(backends)]
            if not wait_until(lambda: all(in_answers(t, victim, 3) for t in targets), a.max_wait):
                raise SystemExit("one-sided %d: %s never in every answer before the cut" % (n, victim))
            nft("add", "rule", "inet", NFT_TABLE, "out", "ip", "saddr", cut_ip, "ip", "daddr",
                victim, "tcp", "dport", str(a.port), "drop")
            t_cut = time.monotonic()
            time.sleep(a.cut)
            # What each instance's own probes say of the victim now: the cut instance's must be
            # down (the rule took), the other's up.
            views = {ip: own_state(ip, victim) for ip in instances}
            nft("flush", "chain", "inet", NFT_TABLE, "out")
            t_restore = time.monotonic()
            wait_until(lambda: all(in_answers(t, victim, 1) for t in targets), a.max_wait)
            time.sleep(1.0)
            t_end = time.monotonic()
            row = {"n": n, "cut": cut_ip, "victim": victim, "views": views}
            longest, total = disagreement(lbns_targets, t_cut, t_end)
            row["disagree_longest"], row["disagree_total"] = longest, total
            for t in targets:
                during = [e for e in t.since(t_cut) if e.t0 < t_restore]
                last = last_with(during, victim)
                still = bool(during) and during[-1].addrs is not None and victim in during[-1].addrs
                row[t.label] = math.inf if still else (last - t_cut if last else 0.0)
                late = [e for e in during if e.t0 >= t_cut + a.bound and e.addrs is not None]
                row[t.label + "_held"] = (sum(1 for e in late if victim in e.addrs), len(late))
                after = [e.t1 for e in t.since(t_restore) if e.addrs is not None and victim in e.addrs]
                row[t.label + "_back"] = (after[0] - t_restore) if after else math.inf
                row[t.label + "_failed"] = sum(1 for e in t.since(t_cut) if e.t0 < t_end and e.addrs is None)
            one_sided_rows.append(row)
            print("one-sided=%d cut=%s victim=%s own=%s disagree=%.2f disagree_total=%.2f %s %s failed=%d" % (
                n, cut_ip, victim, ",".join("%s:%s" % kv for kv in views.items()), longest, total,
                " ".join("%s=%.3f" % (t.label, row[t.label]) for t in targets),
                " ".join("%s_back=%.2f" % (t.label, row[t.label + "_back"]) for t in targets),
                sum(row[t.label + "_failed"] for t in targets)), flush=True)

        # An lbns instance killed (SIGKILL) and restarted while the client asks the resolvers.
        for n in range(1, a.restarts + 1):
            ip = instances[(n - 1) % len(instances)]
            me = lbns_targets[(n - 1) % len(lbns_targets)]
            if not wait_until(lambda: all(all_in_answers(t, backends, 3) for t in targets), a.max_wait):
                raise SystemExit("restart %d: not every backend in every answer before the kill" % n)
            pid = int(open(os.path.join(a.workdir, "lbns-%s.pid" % ip)).read().split()[-1])
            os.kill(pid, signal.SIGKILL)
            t_kill = time.monotonic()
            for p in children:
                if p.pid == pid:
                    p.wait()
            time.sleep(a.down)
            restart_lbns(ip)
            t_start = time.monotonic()
            wait_until(lambda: any(e.addrs is not None for e in me.since(t_start)), a.max_wait)
            first = [e for e in me.since(t_start) if e.addrs is not None]
            t_first = first[0].t1 if first else math.inf
            down_windows.append((me.label, t_kill, t_first))
            # Its first answer, against what its peer answered at that moment.
            peer_t = [t for t in lbns_targets if t is not me]
            same = None
            if first and peer_t:
                before = [e for e in peer_t[0].since(t_kill) if e.addrs is not None and e.t1 <= t_first]
                same = bool(before) and before[-1].addrs == first[0].addrs
            time.sleep(2.0)
            t_end = time.monotonic()
            row = {"n": n, "killed": ip, "answers_after": t_first - t_start, "same": same,
                   "restarted_at": t_start - t_kill, "failures": []}
            for t in targets:
                window = [e for e in t.since(t_kill) if e.t0 < t_end]
                if t is me:
                    window = [e for e in window if e.t0 >= t_first]
                row[t.label + "_failed"] = sum(1 for e in window if e.addrs is None)
                row[t.label + "_asked"] = len(window)
                # When each failed query was sent, from the kill, and why it failed.
                row["failures"] += ["%s %.2f s: %s" % (t.label, e.t0 - t_kill, e.err)
                                    for e in window if e.addrs is None]
                if t in resolvers:
                    row["client_failed_while_down"] = row.get("client_failed_while_down", 0) + sum(
                        1 for e in window if e.addrs is None and e.t0 < t_start)
            restart_rows.append(row)
            print("restart=%d killed=%s answers_after=%.2f first_answer_as_peer=%s %s%s" % (
                n, ip, row["answers_after"], same,
                " ".join("%s_failed=%d/%d" % (t.label, row[t.label + "_failed"], row[t.label + "_asked"])
                         for t in targets),
                "".join(" [%s]" % f for f in row["failures"])), flush=True)
    finally:
        stop.set()
        for t in targets:
            t.join(2 * TIMEOUT)

    # Summary.
    print("== summary", flush=True)
    def expected(t, e):
        """A query to an instance killed on purpose, sent while it was down."""
        return any(lbl == t.label and f - TIMEOUT <= e.t0 < to for lbl, f, to in down_windows)

    totals = {t.label: (len(t.log), sum(1 for e in t.log if e.addrs is None and not expected(t, e)))
              for t in targets}
    errors = {}
    for t in targets:
        for e in t.log:
            if e.err and not expected(t, e):
                errors.setdefault(t.label, {}).setdefault(e.err, 0)
                errors[t.label][e.err] += 1
    ttl_seen = {t.label: sorted({e.ttl for e in t.log if e.ttl is not None}) for t in targets}
    lines = []
    sub = "###" if a.also else "##"
    if rows:
        lines.append("| case | measured at | trials | p50 | p95 | p99 | max | within %g s | back after restore: p50 / max |" % a.bound)
        lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    case_names = {"killed": "killed (SIGKILL: refused)", "hung": "hung (SIGSTOP: accepted, never answered)"}
    for case in ("killed", "hung"):
        cr = [r for r in rows if r["case"] == case]
        if not cr:
            continue
        for t in targets:
            v = sorted(r[t.label] for r in cr)
            back = sorted(r[t.label + "_back"] for r in cr)
            within = sum(1 for x in v if x <= a.bound)
            where = ("client via %s (%s:%d)" % (t.label, *t.addr)) if t not in lbns_targets \
                else "lbns itself (%s:%d, direct)" % t.addr
            lines.append("| %s | %s | %d | %s | %s | %s | %s | %d/%d | %s / %s |" % (
                case_names[case], where, len(v), fmt(percentile(v, 0.5)), fmt(percentile(v, 0.95)),
                fmt(percentile(v, 0.99)), fmt(v[-1]), within, len(v),
                fmt(percentile(back, 0.5)), fmt(back[-1])))
            print("summary case=%s target=%s n=%d p50=%s p95=%s p99=%s max=%s within=%d/%d" % (
                case, t.label, len(v), fmt(percentile(v, 0.5), ""), fmt(percentile(v, 0.95), ""),
                fmt(percentile(v, 0.99), ""), fmt(v[-1], ""), within, len(v)))
    print("failures " + " ".join("%s=%d" % (k, f) for k, (_, f) in totals.items()))
    if rows:
        lines.append("")
    lines.append("Failed queries (lost: no reply within %g s; or unparseable, truncated, not NOERROR, no A record), whole run%s: %s." % (
        TIMEOUT, " (not counting queries to an lbns while it was killed on purpose)" if down_windows else "",
        "; ".join("%s %d of %d%s" % (k, f, q, (" (" + ", ".join("%s: %d" % kv for kv in errors[k].items()) + ")") if k in errors else "")
                           for k, (q, f) in totals.items())))
    lines.append("")
    lines.append("TTLs seen in answers: %s." % "; ".join(
        "%s %s" % (k, ", ".join(map(str, v)) or "none") for k, v in ttl_seen.items()))
    lines.extend(one_sided_summary(a, one_sided_rows, resolvers, lbns_targets, sub))
    lines.extend(restart_summary(a, restart_rows, resolvers, lbns_targets, sub))
    if rows:
        lines.append("")
        lines.append("%s Every trial" % sub)
        lines.append("")
        lines.append("Times in seconds from the signal; *back*: from the restart or SIGCONT to the first answer holding it again.")
        lines.append("")
        lines.append("| trial | case | victim | lbns TTL | phase | " + " | ".join(t.label for t in targets) + " | " +
                     " | ".join(t.label + " back" for t in targets) + " | failed queries |")
        lines.append("|---:|---|---|---:|---:|" + "---:|" * (2 * len(targets)) + "---:|")
    for r in rows:
        lines.append("| %d | %s | %s | %d | %.2f | %s | %s | %d |" % (
            r["n"], r["case"], r["victim"], r["ttl"], r["phase"],
            " | ".join("%.3f" % r[t.label] if not math.isinf(r[t.label]) else "never" for t in targets),
            " | ".join("%.2f" % r[t.label + "_back"] if not math.isinf(r[t.label + "_back"]) else "never" for t in targets),
            sum(r[t.label + "_failed"] for t in targets)))
    lines.extend(one_sided_trials(one_sided_rows, targets, sub))
    lines.extend(restart_trials(restart_rows, targets, sub))
    with open(a.table, "w") as f:
        f.write("\n".join(lines) + "\n")
    return 0


def p50_max(values):
    v = sorted(values)
    return "%s | %s" % (fmt(percentile(v, 0.5)), fmt(v[-1]) if v else "n/a")


def one_sided_summary(a, rows, resolvers, lbns_targets, sub):
    if not rows:
        return []
    n = len(rows)
    cut_of = {ip: t for ip, t in zip(a.instances.split(","), lbns_targets)}
    out = ["", "%s One-sided loss" % sub, "",
           "One instance's probes to one backend dropped (nftables, by the probe's source address) "
           "for %g s while the other instance still reaches it; the cut instance alternates, the "
           "backend rotates. %d trials." % (a.cut, n), "",
           "| measured | p50 | max |", "|---|---:|---:|",
           "| the two lbns answer differently: longest stretch | %s |" % p50_max(r["disagree_longest"] for r in rows),
           "| the two lbns answer differently: total per trial | %s |" % p50_max(r["disagree_total"] for r in rows),
           "| the cut lbns drops the backend after | %s |" % p50_max(r[cut_of[r["cut"]].label] for r in rows),
           "| the other lbns drops it after | %s |" % p50_max(
               r[t.label] for r in rows for t in lbns_targets if t is not cut_of[r["cut"]])]
    for t in resolvers:
        out.append("| client via %s stops receiving it after | %s |" % (t.label, p50_max(r[t.label] for r in rows)))
        out.append("| client via %s gets it back after the cut ends | %s |" % (
            t.label, p50_max(r[t.label + "_back"] for r in rows)))
    out.append("")
    cut_down = sum(1 for r in rows if r["views"].get(r["cut"]) == "down")
    other_up = sum(1 for r in rows if all(v == "up" for ip, v in r["views"].items() if ip != r["cut"]))
    held = {t.label: tuple(map(sum, zip(*(r[t.label + "_held"] for r in rows)))) for t in resolvers + lbns_targets}
    out.append("At the end of each cut the cut instance's own probes saw the backend down in %d of %d "
               "trials and the other instance's up in %d of %d. From %g s after the cut to its end, "
               "answers holding the cut backend: %s. With two instances and `quorum = \"majority\"`, "
               "one up view against one down view is a tie, and a tie is down: the backend leaves "
               "both instances' answers, as docs/config.md says (with three instances one cut keeps "
               "it in all answers: tests/it/cluster_netns.rs)." % (
                   cut_down, n, other_up, n, a.bound,
                   "; ".join("%s %d of %d" % (k, h, m) for k, (h, m) in held.items())))
    return out


def one_sided_trials(rows, targets, sub):
    if not rows:
        return []
    out = ["", "%s Every one-sided trial" % sub, "",
           "Times in seconds from the cut; *back*: from the end of the cut to the first answer "
           "holding it again; *own*: each instance's own probe state of the backend at the end "
           "of the cut.", "",
           "| trial | cut lbns | backend | own | disagree: longest | disagree: total | " +
           " | ".join(t.label for t in targets) + " | " + " | ".join(t.label + " back" for t in targets) +
           " | failed queries |",
           "|---:|---|---|---|---:|---:|" + "---:|" * (2 * len(targets)) + "---:|"]
    for r in rows:
        out.append("| %d | %s | %s | %s | %.2f | %.2f | %s | %s | %d |" % (
            r["n"], r["cut"], r["victim"], ", ".join("%s %s" % kv for kv in r["views"].items()),
            r["disagree_longest"], r["disagree_total"],
            " | ".join("%.3f" % r[t.label] if not math.isinf(r[t.label]) else "never" for t in targets),
            " | ".join("%.2f" % r[t.label + "_back"] if not math.isinf(r[t.label + "_back"]) else "never" for t in targets),
            sum(r[t.label + "_failed"] for t in targets)))
    return out


def restart_summary(a, rows, resolvers, lbns_targets, sub):
    if not rows:
        return []
    n = len(rows)
    out = ["", "%s An lbns instance killed and restarted" % sub, "",
           "SIGKILL one instance (alternating) with every backend up, restart it %g s later, "
           "while the client asks every 100 ms; counted from the kill to 2 s after the restarted "
           "instance's first answer. %d trials." % (a.down, n), "",
           "| measured | value |", "|---|---:|"]
    for t in resolvers:
        failed = sum(r[t.label + "_failed"] for r in rows)
        asked = sum(r[t.label + "_asked"] for r in rows)
        out.append("| client via %s: failed queries | %d of %d |" % (t.label, failed, asked))
    for t in lbns_targets:
        failed = sum(r[t.label + "_failed"] for r in rows)
        asked = sum(r[t.label + "_asked"] for r in rows)
        out.append("| lbns %s:%d asked directly, while up: failed queries | %d of %d |" % (
            t.addr[0], t.addr[1], failed, asked))
    out.append("| the restarted instance answers after: p50 / max | %s |" % p50_max(
        r["answers_after"] for r in rows).replace(" | ", " / "))
    out.append("| its first answer is its peer's answer | %d of %d |" % (sum(1 for r in rows if r["same"]), n))
    failed = sum(r[t.label + "_failed"] for r in rows for t in resolvers)
    if failed:
        down = sum(r.get("client_failed_while_down", 0) for r in rows)
        out.append("")
        out.append("%d of the %d failed client queries were sent while the killed instance was down "
                   "(before its restart), %d after. The instance that stayed up answered every "
                   "query sent to it directly, so these are the resolver's: with one of its two "
                   "nameservers dead it did not answer within the client's %g s timeout." % (
                       down, failed, failed - down, TIMEOUT))
    return out


def restart_trials(rows, targets, sub):
    if not rows:
        return []
    out = ["", "%s Every restart trial" % sub, "",
           "*failed*: failed queries of all asked, from the kill to 2 s after the first answer "
           "(for the killed instance itself: from its first answer); *failures*: when each was "
           "sent, in seconds from the kill (the restart came %s s after it), and why." % (
               "%.1f" % rows[0]["restarted_at"]), "",
           "| trial | killed | answers after (s) | first answer as its peer's | " +
           " | ".join(t.label + " failed" for t in targets) + " | failures |",
           "|---:|---|---:|---|" + "---:|" * len(targets) + "---|"]
    for r in rows:
        out.append("| %d | %s | %.2f | %s | %s | %s |" % (
            r["n"], r["killed"], r["answers_after"], "yes" if r["same"] else "no",
            " | ".join("%d/%d" % (r[t.label + "_failed"], r[t.label + "_asked"]) for t in targets),
            "; ".join(r["failures"]) or "-"))
    return out


if __name__ == "__main__":
    mode, rest = sys.argv[1], sys.argv[2:]
    sys.exit({"backend": backend, "http-ready": http_ready, "ready": ready, "run": run}[mode](rest))
PY

# ---------------------------------------------------------------------------------------------
# 4. Backends, lbns, resolvers.
# ---------------------------------------------------------------------------------------------
BACKENDS="127.0.0.2 127.0.0.3 127.0.0.4 127.0.0.5"
BACKENDS_TOML="$(printf '"%s", ' $BACKENDS)"
BACKENDS_TOML="${BACKENDS_TOML%, }"
for b in $BACKENDS; do
    "$PY" "$DRIVER" backend "$b" 8080 >"$TMP/backend-$b.log" 2>&1 &
    started $!
    echo $! >"$TMP/backend-$b.pid"
    # Out of the job table: bash would report each one the driver kills ("Killed").
    disown $!
done
# Listening before lbns starts: its first probe round decides, and a backend refused then
# would be down (served only as all-down) until `rise` probes later.
"$PY" "$DRIVER" http-ready "${BACKENDS// /,}" 8080 10 || die "the backends did not start"

printf '%s\n' '$TTL 300' \
    '@       SOA ns1 hostmaster 1 3600 600 86400 60' \
    '@       NS  ns1' '@       NS  ns2' 'ns1     A   127.0.0.53' 'ns2     A   127.0.0.54' >"$TMP/lb.test.zone"
INSTANCES="127.0.0.53 127.0.0.54"
# --cluster: each instance the other's peer, one shared key (lbns refuses a key others may read),
# and probes sent from the instance's own address, so that an nftables rule can cut one
# instance's probes and not the other's.
CLUSTER_TOML=""
PROBE_SOURCE=""
if [ "$CLUSTER" -eq 1 ]; then
    (umask 077 && head -c 32 /dev/urandom | base64 >"$TMP/cluster.key")
fi
for ip in $INSTANCES; do
    if [ "$CLUSTER" -eq 1 ]; then
        peers=""
        for p in $INSTANCES; do [ "$p" = "$ip" ] || peers="$peers\"$p:8055\", "; done
        CLUSTER_TOML="[cluster]
listen = \"$ip:8055\"
peers = [${peers%, }]
key_file = \"$TMP/cluster.key\"
"
        PROBE_SOURCE=", source = \"$ip\""
    fi
    mkdir -p "$TMP/lbns-$ip"
    cp "$TMP/lb.test.zone" "$TMP/lbns-$ip/lb.test.zone"
    cat >"$TMP/lbns-$ip/lbns.toml" <<EOF
# generated by benches/failover-resolver.sh
[server]
listen = ["$ip:53"]
udp_workers = 1

[status]
listen = "$ip:8053"

$CLUSTER_TOML
[[zone]]
origin = "lb.test."
file = "lb.test.zone"

[[pool]]
name = "www.lb.test."
$POOL_SETTINGS
backends = [$BACKENDS_TOML]
probe = { kind = "http", port = 8080$PROBE_SOURCE }
EOF
    "$LBNS" check --config "$TMP/lbns-$ip/lbns.toml" >"$TMP/lbns-$ip.check" 2>&1 \
        || { cat "$TMP/lbns-$ip.check" >&2; die "lbns check rejected the config (pool settings: $POOL_SETTINGS)"; }
    "$LBNS" serve --config "$TMP/lbns-$ip/lbns.toml" >/dev/null 2>"$TMP/lbns-$ip.log" &
    started $!
    # The restart trials kill it by this PID and start it again.
    echo $! >"$TMP/lbns-$ip.pid"
    disown $!
done
WANT="${BACKENDS// /,}"
for ip in $INSTANCES; do
    "$PY" "$DRIVER" ready "$ip:53" "$WANT" 30 >&2 || { cat "$TMP/lbns-$ip.log" >&2; die "lbns on $ip did not serve all four backends"; }
done

# unbound: a stub zone on both lbns and nothing else -- no forwarders, no DNSSEC (so no trust
# anchor and nothing to fetch), no root priming for anything but lb.test. (and in this namespace
# no route out anyway). test. is one of unbound's default (static, NXDOMAIN) local zones: off.
mkdir -p "$TMP/unbound"
cat >"$TMP/unbound/unbound.conf" <<EOF
server:
    interface: 127.0.0.1
    port: 53
    do-ip6: no
    do-not-query-localhost: no
    access-control: 127.0.0.0/8 allow
    prefetch: no
    serve-expired: no
    num-threads: 1
    module-config: "iterator"
    chroot: ""
    username: ""
    directory: "$TMP/unbound"
    pidfile: "$TMP/unbound/unbound.pid"
    logfile: "$TMP/unbound/unbound.log"
    use-syslog: no
    verbosity: 1
    local-zone: "test." nodefault
remote-control:
    control-enable: no
stub-zone:
    name: "lb.test."
    stub-addr: 127.0.0.53
    stub-addr: 127.0.0.54
EOF
unbound-checkconf "$TMP/unbound/unbound.conf" >&2 || die "unbound-checkconf rejected the config"
unbound -d -c "$TMP/unbound/unbound.conf" >"$TMP/unbound/stderr.log" 2>&1 &
started $!
RESOLVERS=(--resolver "unbound=127.0.0.1:53")
"$PY" "$DRIVER" ready 127.0.0.1:53 "$WANT" 30 >&2 \
    || { cat "$TMP/unbound/unbound.log" "$TMP/unbound/stderr.log" >&2; die "unbound does not answer"; }

KRESD_VERSION=""
if [ "$KRESD" -eq 1 ]; then
    mkdir -p "$TMP/kresd/cache"
    cat >"$TMP/kresd/kresd.conf" <<EOF
-- generated by benches/failover-resolver.sh
net.listen('127.0.0.1', 5353, { kind = 'dns' })
-- No DNSSEC: lb.test. is unsigned and there is no root to prove it insecure.
trust_anchors.remove('.')
-- Nothing but lb.test. is ever asked: no root priming, no time-skew check of the root's NS.
for _, m in ipairs({'priming', 'detect_time_skew', 'detect_time_jump', 'ta_signal_query', 'ta_sentinel'}) do
    pcall(modules.unload, m)
end
cache.open(10 * MB, 'lmdb://$TMP/kresd/cache')
policy.add(policy.suffix(policy.STUB({'127.0.0.53', '127.0.0.54'}), {todname('lb.test.')}))
-- Left at its default on purpose: the 5 s floor this measures.
print('cache.min_ttl', cache.min_ttl())
EOF
    kresd -n -c "$TMP/kresd/kresd.conf" "$TMP/kresd" >"$TMP/kresd/kresd.log" 2>&1 </dev/null &
    started $!
    RESOLVERS+=(--resolver "kresd=127.0.0.1:5353")
    "$PY" "$DRIVER" ready 127.0.0.1:5353 "$WANT" 30 >&2 \
        || { cat "$TMP/kresd/kresd.log" >&2; die "kresd does not answer"; }
    KRESD_VERSION="$(kresd --version 2>&1 | head -1)"
fi

# ---------------------------------------------------------------------------------------------
# 5-6. Trials.
# ---------------------------------------------------------------------------------------------
log "trials: $TRIALS_KILLED killed, $TRIALS_HUNG hung; pool: $POOL_SETTINGS; bound ${FAILOVER_S}s"
SEED_ARGS=()
[ -n "$SEED" ] && SEED_ARGS=(--seed "$SEED")
# The cluster cases ask the second lbns directly too, and cut or restart either instance.
EXTRA_ARGS=()
if [ "$CLUSTER" -eq 1 ] || [ $((ONE_SIDED + RESTARTS)) -gt 0 ]; then
    log "then: $ONE_SIDED one-sided (${CUT_S}s cuts), $RESTARTS restarts (${DOWN_S}s down)$([ "$CLUSTER" -eq 1 ] && echo "; [cluster] on")"
    EXTRA_ARGS=(--also "lbns2=127.0.0.54:53" --instances "${INSTANCES// /,}" --lbns "$LBNS"
        --one-sided "$ONE_SIDED" --restarts "$RESTARTS" --cut "$CUT_S" --down "$DOWN_S")
    [ "$ONE_SIDED" -gt 0 ] && EXTRA_ARGS+=(--nft "$(command -v nft)")
fi
"$PY" -u "$DRIVER" run "${RESOLVERS[@]}" --direct "lbns=127.0.0.53:53" \
    --backends "${BACKENDS// /,}" --port 8080 --workdir "$TMP" \
    --killed "$TRIALS_KILLED" --hung "$TRIALS_HUNG" --bound "$FAILOVER_S" \
    --settle "$SETTLE" --max-wait "$MAX_WAIT" --table "$TMP/table.md" "${SEED_ARGS[@]}" \
    "${EXTRA_ARGS[@]}" &
DRIVER_PID=$!
started "$DRIVER_PID"
wait "$DRIVER_PID" || die "the trial driver failed (logs in $TMP; --keep-tmp keeps them)"

# ---------------------------------------------------------------------------------------------
# 7. Report.
# ---------------------------------------------------------------------------------------------
echo
cat "$TMP/table.md"
OUT="$REPO/benches/results/failover-resolver.md"
# A --cluster run's report is one block of $OUT, between these lines: each kind of run replaces
# only its own part and keeps the other's.
BEGIN_MARK='<!-- cluster-report: begin (written by benches/failover-resolver.sh --cluster) -->'
END_MARK='<!-- cluster-report: end -->'
# block 1: the cluster block of $OUT; block 0: the rest, without trailing blank lines.
block() {
    [ -f "$OUT" ] || return 0
    awk -v b="$BEGIN_MARK" -v e="$END_MARK" -v want="$1" '
        $0 == b { inb = 1 }
        (inb ? 1 : 0) == want { if ($0 == "") blank++; else { for (; blank > 0; blank--) print ""; print } }
        $0 == e { inb = 0 }' "$OUT"
}
meta() {
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- command: \`$CMDLINE\`"
    echo "- lbns $LBNS_VERSION, release build"
    echo "- $(unbound -V 2>&1 | head -1 | sed 's/^Version/unbound/')$([ -n "$KRESD_VERSION" ] && echo "; $KRESD_VERSION")"
    echo "- machine: $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), $(uname -sr), shared with other work; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- setup (all in a private network namespace, \`unshare -n\`): four HTTP backends on 127.0.0.2-.5:8080; two lbns on 127.0.0.53:53 and 127.0.0.54:53, zone \`lb.test.\`, pool \`www.lb.test.\` with \`$POOL_SETTINGS\`, \`probe = { kind = \"http\", port = 8080$([ -n "$PROBE_SOURCE" ] && echo ", source = \"<its own address>\"") }\` (the default probe timing: interval 1 s, timeout 500 ms, jitter 200 ms, rise 2, fall 2); unbound on 127.0.0.1:53 with \`stub-zone\` lb.test. → both lbns, \`prefetch: no\`, \`serve-expired: no\`, \`module-config: \"iterator\"\`, one thread$([ "$KRESD" -eq 1 ] && echo "; kresd on 127.0.0.1:5353 with \`policy.STUB\` lb.test. → both lbns, default \`cache.min_ttl\` (5 s)")"
    if [ "$CLUSTER" -eq 1 ]; then
        echo "- \`[cluster]\` on both lbns: each the other's peer (127.0.0.53:8055, 127.0.0.54:8055), one key file (chmod 600), the defaults \`quorum = \"majority\"\`, \`exchange_interval = \"500ms\"\`, \`peer_max_age\` 1.5 s; each probes from its own address (\`source\`), so an nftables rule can cut one instance's probes"
    fi
    echo "- client: a python3 UDP query for \`www.lb.test. A\` every 100 ms to each resolver and to the lbns on 127.0.0.53 (*lbns itself*)$([ -n "${EXTRA_ARGS[*]}" ] && echo " and on 127.0.0.54 (*lbns2*)"); a reply not back within 1 s, unparseable, truncated, not NOERROR or without an A record is a failed query, not a drop"
    if [ $((TRIALS_KILLED + TRIALS_HUNG)) -gt 0 ]; then
        echo "- each killed or hung trial: wait until the victim (the next backend in turn) is in every answer; sleep a random 0..TTL s (a random phase of the cache cycle); SIGKILL it (*killed*: connections refused) or SIGSTOP it (*hung*: the kernel still accepts connections into its 128-deep backlog, nothing answers); the **client-visible time** runs from the signal to the last answer still holding it, watched until every target went $([ "$SETTLE" = auto ] && echo "the largest TTL seen + 1 s" || echo "$SETTLE s") without it (or $MAX_WAIT s: *never*); then restart / SIGCONT it and wait until it is back everywhere. Killed and hung trials alternate."
        echo "- the promise: the client stops receiving it within the pool's failover time, ${FAILOVER_S} s (*within*). Percentiles are nearest-rank; p95 is shown only with at least 20 trials and p99 only with at least 100 (below that they would be the maximum)"
    fi
}
if [ "$WRITE" -eq 1 ]; then
    NEW="$OUT.new.$$"
    if [ "$CLUSTER" -eq 1 ]; then
        {
            block 0
            echo
            echo "$BEGIN_MARK"
            echo
            echo "## With \`[cluster]\`: the two lbns decide together"
            echo
            meta
            echo
            [ $((TRIALS_KILLED + TRIALS_HUNG)) -gt 0 ] && { echo "### Killed and hung backends"; echo; }
            cat "$TMP/table.md"
            echo
            echo "$END_MARK"
        } >"$NEW"
    else
        {
            echo "# Failover as a client behind a caching resolver sees it"
            echo
            meta
            echo
            echo "## Summary"
            echo
            cat "$TMP/table.md"
            kept="$(block 1)"
            [ -z "$kept" ] || printf '\n%s\n' "$kept"
        } >"$NEW"
    fi
    mv "$NEW" "$OUT"
    log "wrote benches/results/failover-resolver.md"
fi
