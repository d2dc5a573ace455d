#!/bin/sh
# A reload never pauses answers, whatever it drops: lbns serves a zone of a million records
# (--records) while dnsperf asks at a fixed rate (--rate); then the zone is swapped for a
# small one and reloaded (SIGHUP), so the snapshot holding the million records is replaced
# and freed. dnsperf's maximum latency and lost count over the run show any pause; a round
# with no reload, measured in the same run, is the reference. Target: no answer over 50 ms
# and none lost across the reload.
#
# --peer BINARY measures another lbns build the same way in the same run, rounds interleaved
# (e.g. one built from an older commit, to show what the change bought).
# The table, the per-round numbers and the command line go to benches/results/reload-pause.md.
#
# Usage: benches/reload-pause.sh [--records N] [--rate QPS] [--rounds N] [--peer BINARY]
#                                [--peer-name NAME] [--binary BINARY] [--no-build] [--no-write]
# --binary: the lbns to measure (default: target/release/lbns, built first unless --no-build).
set -eu
cd "$(dirname "$0")/.."

RECORDS=1000000
RATE=20000
ROUNDS=3
PEER=""
PEER_NAME=""
LBNS=""
BUILD=1
WRITE=1
ARGS="$*"
while [ $# -gt 0 ]; do
    case "$1" in
        --records) RECORDS=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --peer) PEER=$(realpath "$2"); shift 2 ;;
        --peer-name) PEER_NAME=$2; shift 2 ;;
        --binary) LBNS=$(realpath "$2"); BUILD=0; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --no-write) WRITE=0; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

scripts/install-deps.sh
[ "$BUILD" = 1 ] && cargo build --release -q
[ -n "$LBNS" ] || LBNS=$PWD/target/release/lbns
TMP=$(mktemp -d /tmp/lbns-reload.XXXXXX)
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT INT TERM

PORT=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
head() {
    printf '$TTL 3600\n@ SOA ns1 hostmaster 1 3600 600 86400 60\n@ NS ns1\nns1 A 127.0.0.1\nmail A 127.0.0.8\n'
}
head > "$TMP/small.zone"
{ head; awk -v n="$RECORDS" 'BEGIN { for (i = 0; i < n; i++)
    printf "r%d A 10.%d.%d.%d\n", i, int(i / 65536), int(i / 256) % 256, i % 256 }'; } > "$TMP/large.zone"
# No status listener, and the control socket in the temporary directory: nothing on a fixed
# port or path, so a second run beside this one does not collide.
printf '[server]\nlisten = ["127.0.0.1:%s"]\nudp_workers = 2\n\n[status]\nenabled = false\n\n[[zone]]\norigin = "big.example."\nfile = "serve.zone"\n\n[[pool]]\nname = "www.big.example."\nbackends = ["127.0.0.2", "127.0.0.3"]\n' \
    "$PORT" > "$TMP/lbns.toml"
# An older lbns rejects keys it does not know: the config stays within what every build reads.
printf 'mail.big.example. A\nwww.big.example. A\nnope.big.example. A\nbig.example. SOA\n' > "$TMP/queries"

# The addresses answered, nothing else (dig +short prints its errors on stdout too).
ask() { dig @127.0.0.1 -p "$PORT" +short +time=1 +tries=1 "$@" 2>/dev/null | grep -E '^[0-9]' || true; }
# Seconds dnsperf runs; the reload is sent DURATION/3 in.
DURATION=9

# round BINARY KIND -> "sent lost max_ms reload_ms rss_before_kib rss_after_kib"
# KIND: away (large → small), none (large, no reload: the reference).
round() {
    cp "$TMP/large.zone" "$TMP/serve.zone"
    "$1" --log-level warn serve --config "$TMP/lbns.toml" 2>>"$TMP/lbns.log" &
    PID=$!
    i=0
    until [ -n "$(ask r0.big.example. A)" ]; do
        i=$((i + 1)); [ "$i" -lt 600 ] || { echo "lbns did not start" >&2; cat "$TMP/lbns.log" >&2; exit 1; }
        sleep 0.1
    done
    rss_before=$(awk '/VmRSS/ {print $2}' "/proc/$PID/status")
    dnsperf -s 127.0.0.1 -p "$PORT" -d "$TMP/queries" -l "$DURATION" -Q "$RATE" -t 1 >"$TMP/perf" 2>&1 &
    perf=$!
    sleep $((DURATION / 3))
    reload_ms=-
    if [ "$2" = away ]; then
        cp "$TMP/small.zone" "$TMP/serve.zone"
        start=$(date +%s%N)
        kill -HUP "$PID"
        i=0
        while [ -n "$(ask r0.big.example. A)" ]; do
            i=$((i + 1)); [ "$i" -lt 600 ] || { echo "reload never applied" >&2; exit 1; }
            sleep 0.01
        done
        reload_ms=$(( ($(date +%s%N) - start) / 1000000 ))
    fi
    wait "$perf"
    sleep 1
    rss_after=$(awk '/VmRSS/ {print $2}' "/proc/$PID/status")
    kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
    sent=$(sed -n 's/^ *Queries sent: *\([0-9]*\).*/\1/p' "$TMP/perf")
    lost=$(sed -n 's/^ *Queries lost: *\([0-9]*\).*/\1/p' "$TMP/perf")
    max=$(sed -n 's/^ *Average Latency (s):.*max \([0-9.]*\)).*/\1/p' "$TMP/perf")
    [ -n "$sent" ] && [ -n "$lost" ] && [ -n "$max" ] || { cat "$TMP/perf" >&2; exit 1; }
    printf '%s %s %s %s %s %s\n' "$sent" "$lost" "$(awk -v m="$max" 'BEGIN { printf "%.1f", m * 1000 }')" \
        "$reload_ms" "$rss_before" "$rss_after"
}

SERVERS="lbns"
[ -n "$PEER" ] && SERVERS="lbns peer"
: > "$TMP/rounds"
r=1
while [ "$r" -le "$ROUNDS" ]; do
    for s in $SERVERS; do
        bin=$LBNS; [ "$s" = peer ] && bin=$PEER
        for kind in none away; do
            line=$(round "$bin" "$kind")
            echo "round $r $s $kind: sent lost max_ms reload_ms rss_before rss_after = $line" >&2
            echo "$s $kind $line" >> "$TMP/rounds"
        done
    done
    r=$((r + 1))
done

# server kind -> "max of max_ms, total lost, median reload_ms"
summary() {
    median=$(awk -v s="$1" -v k="$2" '$1 == s && $2 == k { print $6 }' "$TMP/rounds" | sort -n |
        awk '{ v[NR] = $1 } END { print (NR ? v[int((NR + 1) / 2)] : "-") }')
    awk -v s="$1" -v k="$2" -v m="$median" '$1 == s && $2 == k {
        if ($5 + 0 > max + 0) max = $5; lost += $4 }
        END { printf "%s %d %s", max, lost, m }' "$TMP/rounds"
}
report() {
    echo "# Reload pause: dnsperf across a reload that drops a $RECORDS-record zone"
    echo
    echo "Measured $(date -u +%Y-%m-%d) on $(nproc) CPUs, commit $(git rev-parse --short HEAD)$(git diff --quiet || echo ' + local changes'),"
    echo "with \`benches/reload-pause.sh $ARGS\`: $ROUNDS rounds; each round starts lbns on the"
    echo "$RECORDS-record zone and runs dnsperf at $RATE queries/s for $DURATION s; in an *away* round"
    echo "the zone file is replaced by a 5-record one and lbns reloaded (SIGHUP) $((DURATION / 3)) s in; a"
    echo "*none* round does not reload (the reference). Max latency is dnsperf's maximum over the run."
    echo
    echo "| server | reload | max latency, worst round (ms) | lost, all rounds | reload applied in (median, ms) |"
    echo "|---|---|---:|---:|---:|"
    for s in $SERVERS; do
        for kind in none away; do
            set -- $(summary "$s" "$kind")
            name=$s; [ "$s" = peer ] && name="peer: ${PEER_NAME:-$PEER}"
            echo "| $name | $kind | $1 | $2 | $3 |"
        done
    done
    echo
    echo "Every round (server, reload, sent, lost, max ms, reload ms, RSS KiB before and after):"
    echo
    echo '```'
    cat "$TMP/rounds"
    echo '```'
}
report
if [ "$WRITE" = 1 ]; then
    mkdir -p benches/results
    report > benches/results/reload-pause.md
fi
