#!/bin/sh
# Probing at scale does not slow answers: lbns serving static names with no probes ("idle"),
# then with 10,000 backends probed every second (TCP connect to a closed loopback port, so
# each probe is a real connect + RST), measured with dnsperf in the same run.
# Prints qps, the probe rate achieved, lbns CPU, memory and open files for both, and the ratio
# (target: >= 0.90). With 1 s intervals and up to 200 ms jitter, a backend is probed every
# 1.1 s on average, so 10,000 backends make about 9,100 probes/s.
#
# Rounds alternate idle and probing so drift on a shared machine hits both; medians are shown.
# The table, the per-round numbers and the command line go to benches/results/probe-scale.md.
#
# Usage: benches/probe-scale.sh [--duration S] [--rounds N] [--backends N] [--no-build] [--no-write]
set -eu
cd "$(dirname "$0")/.."

DURATION=10
ROUNDS=5
BACKENDS=10000
BUILD=1
WRITE=1
ARGS="$*"
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION=$2; shift 2 ;;
        --backends) BACKENDS=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --no-write) WRITE=0; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

scripts/install-deps.sh
[ "$BUILD" = 1 ] && cargo build --release -q
LBNS=$PWD/target/release/lbns
TMP=$(mktemp -d /tmp/lbns-scale.XXXXXX)
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT INT TERM

# A port nothing listens on.
CLOSED=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
PORT=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

cat > "$TMP/scale.zone" <<ZONE
\$TTL 3600
@ SOA ns1 hostmaster 1 3600 600 86400 60
@ NS ns1
ns1 A 127.0.0.1
mail A 127.0.0.8
@ MX 10 mail
ZONE
header() {
    printf '[server]\nlisten = ["127.0.0.1:%s"]\nudp_workers = 1\n\n[[zone]]\norigin = "scale.example."\nfile = "scale.zone"\n' "$PORT"
}
header > "$TMP/idle.toml"
{
    header
    # 100 backends per pool on 127.1.x.y, each probed by TCP every second.
    python3 - "$BACKENDS" "$CLOSED" <<'PY'
import sys
n, port = int(sys.argv[1]), int(sys.argv[2])
per = 100
for p in range((n + per - 1) // per):
    addrs = []
    for i in range(p * per, min(n, (p + 1) * per)):
        addrs.append('"127.1.%d.%d"' % (i // 250, 1 + i % 250))
    print('\n[[pool]]\nname = "p%d.scale.example."\nttl = 5\nbackends = [%s]' % (p, ", ".join(addrs)))
    print('probe = { kind = "tcp", port = %d, interval = "1s", timeout = "500ms", jitter = "200ms" }' % port)
PY
} > "$TMP/scale.toml"
printf 'mail.scale.example. A\nscale.example. MX\nns1.scale.example. A\nscale.example. SOA\n' > "$TMP/queries"

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# TCP connects made on this host (ActiveOpens in /proc/net/snmp): during a run only lbns's probes
# open TCP connections (dnsperf is UDP), so the difference is the probe rate actually achieved.
opens() { awk '/^Tcp:/ {n++; if (n == 2) print $6}' /proc/net/snmp; }
run() { # $1 = config name
    taskset -c 1 "$LBNS" --log-level warn serve --config "$TMP/$1.toml" 2>"$TMP/$1.log" &
    PID=$!
    i=0
    until dig @127.0.0.1 -p "$PORT" +short +time=1 +tries=1 ns1.scale.example. 2>/dev/null | grep -q 127.0.0.1; do
        i=$((i + 1)); [ $i -gt 200 ] && { echo "lbns did not start ($1):" >&2; tail "$TMP/$1.log" >&2; exit 1; }
        sleep 0.1
    done
    sleep 3   # let probing reach its steady state
    t0=$(ticks "$PID"); o0=$(opens)
    out=$(taskset -c 0 dnsperf -s 127.0.0.1 -p "$PORT" -d "$TMP/queries" -l "$DURATION" -c 4 -q 200 2>&1)
    t1=$(ticks "$PID"); o1=$(opens)
    fds=$(ls "/proc/$PID/fd" | wc -l)
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$PID/status")
    threads=$(awk '/Threads/ {print $2}' "/proc/$PID/status")
    kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
    qps=$(echo "$out" | awk '/Queries per second/ {print $4}')
    lost=$(echo "$out" | awk '/Queries lost/ {print $3}')
    cpu=$(echo "$t0 $t1 $(getconf CLK_TCK) $DURATION" | awk '{printf "%.0f", ($2-$1)/$3/$4*100}')
    probes=$(( (o1 - o0) / DURATION ))
    echo "$1 $qps $lost $cpu $rss $threads $probes $fds"
}

echo "dnsperf ${DURATION}s x $ROUNDS rounds, lbns pinned to CPU 1 (1 UDP worker), dnsperf to CPU 0" >&2
: > "$TMP/results"
r=0
while [ $r -lt "$ROUNDS" ]; do
    run idle >> "$TMP/results"
    run scale >> "$TMP/results"
    r=$((r + 1))
done
median() { # $1 = config, $2 = column
    awk -v c="$1" -v k="$2" '$1 == c {print $k}' "$TMP/results" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}
table() {
echo "| lbns | backends | probes/s done | median qps | lost (sum) | lbns CPU % | RSS MiB | open fds |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for c in idle scale; do
    n=0; [ "$c" = scale ] && n=$BACKENDS
    lost=$(awk -v c="$c" '$1 == c {s += $3} END {print s}' "$TMP/results")
    printf '| %s | %s | %s | %.0f | %s | %s | %.1f | %s |\n' "$c" "$n" "$(median $c 7)" "$(median $c 2)" "$lost" "$(median $c 4)" "$(echo "$(median $c 5)" | awk '{print $1/1024}')" "$(median $c 8)"
done
echo
echo "$(median idle 2) $(median scale 2)" | awk '{r = $2 / $1; printf "qps ratio with probes / idle: %.3f (target >= 0.90): %s\n", r, (r >= 0.9 ? "PASS" : "FAIL")}'
}
echo
table
echo "per-round: config qps lost cpu% rss_kib threads probes/s fds" >&2
cat "$TMP/results" >&2
if [ "$WRITE" = 1 ]; then
    {
        echo "# benches/probe-scale.sh — $(date -u +%Y-%m-%d)"
        echo
        echo "Command: \`benches/probe-scale.sh $ARGS\` at commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)."
        echo "$BACKENDS backends, TCP probe every 1 s + up to 200 ms jitter, $ROUNDS rounds of ${DURATION} s;"
        echo "lbns on CPU 1 with one UDP worker, dnsperf on CPU 0."
        echo
        table
        echo
        echo "Per round (config qps lost cpu% rss_kib threads probes/s fds):"
        echo
        echo '```'
        cat "$TMP/results"
        echo '```'
    } > benches/results/probe-scale.md
    echo "wrote benches/results/probe-scale.md" >&2
fi
