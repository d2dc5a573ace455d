#!/bin/sh
# Config work scales with pools: with 10,000 pools (2 backends each on 127.2.x.y, half of them
# probed by TCP every second at a closed loopback port, half unprobed) and one small zone,
# `lbns check` and `lbns reload` (over the control socket) must each take under 1 s.
# Reload is timed three ways on one running server: with the config unchanged, with one pool
# changed (its TTL), and with one probed pool's backend replaced (a new address to probe).
#
# Prints the median of --runs runs of each, and exits non-zero when any median is >= 1 s.
# Loopback only: the DNS listener and the probed port are on 127.0.0.1, the control socket and
# the state file in a temporary directory.
#
# Usage: benches/pool-scale.sh [--pools N] [--runs N] [--binary BINARY] [--no-build]
# --binary: the lbns to measure (default: target/release/lbns, built first unless --no-build).
set -eu
cd "$(dirname "$0")/.."

POOLS=10000
RUNS=3
LBNS=""
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --pools) POOLS=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --binary) LBNS=$(realpath "$2"); BUILD=0; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

[ "$BUILD" = 1 ] && cargo build --release -q
[ -n "$LBNS" ] || LBNS=$PWD/target/release/lbns
TMP=$(mktemp -d /tmp/lbns-pools.XXXXXX)
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT INT TERM

# A TCP port nothing listens on (the probes' target) and a UDP port for the DNS listener.
CLOSED=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
PORT=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

printf '$TTL 3600\n@ SOA ns1 hostmaster 1 3600 600 86400 60\n@ NS ns1\nns1 A 127.0.0.1\n' > "$TMP/scale.zone"

# gen VARIANT > file: VARIANT "base", "ttl" (pool p1's TTL changed) or "addr" (pool p0, which
# is probed, has its second backend replaced).
gen() {
    python3 - "$POOLS" "$CLOSED" "$PORT" "$1" <<'PY'
import sys
n, closed, port, variant = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
out = [
    '[server]\nlisten = ["127.0.0.1:%d"]\nudp_workers = 1\nstate_file = "lbns.state"\n' % port,
    '[status]\nenabled = false\n',
    '[control]\nsocket = "lbns.sock"\n',
    '[[zone]]\norigin = "scale.example."\nfile = "scale.zone"\n',
]
def addr(j):
    return "127.2.%d.%d" % (j // 250, 1 + j % 250)
for p in range(n):
    a, b = addr(2 * p), addr(2 * p + 1)
    if variant == "addr" and p == 0:
        b = addr(2 * n)
    ttl = 7 if variant == "ttl" and p == 1 else 5
    pool = '[[pool]]\nname = "p%d.scale.example."\nttl = %d\nbackends = ["%s", "%s"]\n' % (p, ttl, a, b)
    if p % 2 == 0:
        pool += 'probe = { kind = "tcp", port = %d, interval = "1s", timeout = "500ms" }\n' % closed
    out.append(pool)
print("\n".join(out))
PY
}
gen base > "$TMP/base.toml"
gen ttl > "$TMP/ttl.toml"
gen addr > "$TMP/addr.toml"
cp "$TMP/base.toml" "$TMP/lbns.toml"

# secs COMMAND...: runs it (quiet, must succeed) and prints how long it took, in seconds.
secs() {
    t0=$(date +%s.%N)
    "$@" >"$TMP/out" 2>&1 || { echo "failed: $*" >&2; cat "$TMP/out" >&2; exit 1; }
    t1=$(date +%s.%N)
    echo "$t0 $t1" | awk '{printf "%.3f\n", $2 - $1}'
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

check=$(i=0; while [ $i -lt "$RUNS" ]; do secs "$LBNS" --log-level warn check -c "$TMP/lbns.toml"; i=$((i + 1)); done | median)

"$LBNS" --log-level warn serve --config "$TMP/lbns.toml" 2>"$TMP/lbns.log" &
PID=$!
start0=$(date +%s.%N)
i=0
# Up once the DNS listener answers (it starts after the first probe round and the first
# snapshot).
until python3 - "$PORT" <<'PY' 2>/dev/null
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.2)
q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + b"\x03ns1\x05scale\x07example\x00\x00\x01\x00\x01"
s.sendto(q, ("127.0.0.1", int(sys.argv[1])))
r = s.recv(512)
sys.exit(0 if r[:2] == b"\x12\x34" and r[3] & 15 == 0 else 1)
PY
do
    i=$((i + 1)); [ $i -lt 600 ] || { echo "lbns did not start:" >&2; tail "$TMP/lbns.log" >&2; exit 1; }
    kill -0 "$PID" 2>/dev/null || { echo "lbns exited:" >&2; tail "$TMP/lbns.log" >&2; exit 1; }
    sleep 0.1
done
start=$(echo "$start0 $(date +%s.%N)" | awk '{printf "%.3f", $2 - $1}')
rss_start=$(awk '/VmRSS/ {print $2}' "/proc/$PID/status")

reload() { secs "$LBNS" --log-level warn reload --socket "$TMP/lbns.sock"; }
same=$(i=0; while [ $i -lt "$RUNS" ]; do reload; i=$((i + 1)); done | median)
# Alternating two configs, so each reload changes the pool again.
one() { # $1 = variant
    i=0
    while [ $i -lt "$RUNS" ]; do
        cp "$TMP/$1.toml" "$TMP/lbns.toml"; reload
        cp "$TMP/base.toml" "$TMP/lbns.toml"; reload
        i=$((i + 1))
    done | median
}
ttl=$(one ttl)
addr=$(one addr)
sleep 2
rss=$(awk '/VmRSS/ {print $2}' "/proc/$PID/status")
kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""

echo "pool-scale: $POOLS pools ($((POOLS * 2)) backends, $((POOLS / 2 * 2)) probed every 1 s), median of $RUNS runs"
echo "  check                          ${check} s"
echo "  start (until answering)        ${start} s"
echo "  reload, config unchanged       ${same} s"
echo "  reload, one pool's TTL changed ${ttl} s"
echo "  reload, one backend replaced   ${addr} s"
echo "  lbns RSS after start           $((rss_start / 1024)) MiB"
echo "  lbns RSS after the reloads     $((rss / 1024)) MiB"
fail=0
for v in "check $check" "reload-unchanged $same" "reload-ttl $ttl" "reload-backend $addr"; do
    set -- $v
    if [ "$(echo "$2" | awk '{print ($1 >= 1.0)}')" = 1 ]; then
        echo "FAIL: $1 took $2 s (target < 1 s)"
        fail=1
    fi
done
[ "$fail" = 0 ] && echo "PASS: check and reload of $POOLS pools each under 1 s"
exit "$fail"
