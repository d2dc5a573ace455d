#!/bin/sh
# The status page, /status.json and /metrics of a large fleet: bytes and time to first byte
# (the server renders a whole body before sending, so this is its render time plus one
# loopback round trip), least and median of 21 requests each (the least is the cost, the
# median adds what a shared machine adds).
#
# The fleet: N pools of one backend each, unprobed, except every 1,000th pool, whose backend
# is probed by TCP on a closed port (so it is down, and its pool all down); 5 backends are
# drained. /metrics is measured with [status] metrics_per_backend = true, then false (a
# reload: the key applies at once).
#
# Usage: benches/status-scale.sh [--pools N] [--no-build]
set -eu
cd "$(dirname "$0")/.."

POOLS=10000
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --pools) POOLS=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
command -v curl >/dev/null || { echo "needs curl" >&2; exit 1; }
[ "$BUILD" = 1 ] && cargo build --release -q
LBNS=$PWD/target/release/lbns
TMP=$(mktemp -d /tmp/lbns-status-scale.XXXXXX)
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
DNS=$(free_port)
HTTP=$(free_port)
CLOSED=$(free_port)
printf '$TTL 3600\n@ SOA ns1 hostmaster 1 3600 600 86400 60\n@ NS ns1\nns1 A 127.0.0.1\n' \
    > "$TMP/scale.zone"
config() { # $1 = metrics_per_backend
    printf '[server]\nlisten = ["127.0.0.1:%s"]\nudp_workers = 1\n\n' "$DNS"
    printf '[status]\nlisten = "127.0.0.1:%s"\nmetrics_per_backend = %s\n\n' "$HTTP" "$1"
    printf '[control]\nsocket = "lbns.sock"\n\n'
    printf '[[zone]]\norigin = "scale.example."\nfile = "scale.zone"\n'
    python3 - "$POOLS" "$CLOSED" <<'PY'
import sys
n, closed = int(sys.argv[1]), int(sys.argv[2])
for p in range(n):
    print('\n[[pool]]\nname = "p%d.scale.example."\nbackends = ["127.1.%d.%d"]'
          % (p, p // 250, 1 + p % 250))
    if p % 1000 == 999:
        print('probe = { kind = "tcp", port = %d }' % closed)
PY
}
config true > "$TMP/lbns.toml"

"$LBNS" --log-level warn serve --config "$TMP/lbns.toml" 2>"$TMP/lbns.log" &
PID=$!
i=0
until curl -sf -o /dev/null "http://127.0.0.1:$HTTP/healthz"; do
    i=$((i + 1))
    [ $i -gt 100 ] && { cat "$TMP/lbns.log" >&2; exit 1; }
    sleep 0.2
done
for p in 1 2 3 4 5; do
    "$LBNS" drain --socket "$TMP/lbns.sock" "p$((p * 17)).scale.example." "127.1.0.$((p * 17 + 1))" \
        >/dev/null
done
sleep 2 # the probed backends fall (rise/fall 2 at 1 s)

measure() { # $1 = path
    url="http://127.0.0.1:$HTTP$1"
    bytes=$(curl -s -o /dev/null -w '%{size_download}' "$url")
    ms=$(for _ in $(seq 21); do
        curl -s -o /dev/null -w '%{time_starttransfer}\n' "$url"
    done | sort -n | awk 'NR == 1 { m = $1 } NR == 11 { printf "%.1f | %.1f", m * 1000, $1 * 1000 }')
    printf '| `%s` | %s | %s |\n' "$1" "$bytes" "$ms"
}
echo "$POOLS pools, $(nproc) cores, $(date -u +%Y-%m-%d)"
echo
echo "| request | bytes | time to first byte, least (ms) | median (ms) |"
echo "|---|---:|---:|---:|"
for path in / "/?page=2" "/?page=$((POOLS / 50))" "/?q=p9876." "/?q=127.1.3" \
    "/?state=problems" "/?state=drained" "/?per=500" /status.json "/status.json?page=1" \
    /metrics; do
    measure "$path"
done
config false > "$TMP/lbns.toml"
"$LBNS" reload --socket "$TMP/lbns.sock" >/dev/null
printf '| `/metrics` (metrics_per_backend = false) | '
measure /metrics | cut -d'|' -f3-
