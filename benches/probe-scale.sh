#!/bin/sh
# Probing at scale does not slow answers: lbns serving static names with no probes ("idle"),
# then with 10,000 backends probed every second ("scale"), measured with dnsperf in the same run.
#
# The backends are live: one Python process (pinned to dnsperf's CPU, as if the backends were
# other machines) listens on every backend address (127.1.x.y, one port) and accepts, so each
# probe is a real connect + accept + RST. Some of them flip: every --flip-period seconds (default
# 4) the listeners of --flip-percent of the backends (default 1 %) close or reopen, so those
# backends alternate between accepting and refusing, their health flips and lbns publishes new
# snapshots all along; the run checks in lbns's /metrics (lbns_snapshot_generation,
# lbns_backend_flips_total) that it did, and fails if not.
#
# TARGET: lbns's CPU per probe <= gdnsd's (its tcp_connect monitor, the peer), measured in the
# same run against the same live backends: each of them, alone on CPU 1 with no queries, probes
# all the backends every 2 s (gdnsd's shortest interval) for --duration seconds; CPU per probe is
# its utime+stime over the connections the backends accepted meanwhile. On loopback the kernel
# does both ends of each TCP handshake in the prober's context, so this is mostly kernel work, and
# the same for both.
#
# Reported beside it (not a target, see below): lbns's CPU per answered query with probes and
# idle, and their ratio (1.10 x was the aim when the probes went to a closed port; a live
# backend's handshake costs lbns's core about twice as much on loopback). CPU per query is the lbns
# process's utime+stime (/proc/PID/stat) over the dnsperf run divided by the queries dnsperf got
# answered. The qps ratio is printed too, but is no target: dnsperf's core is the bottleneck at
# full load (lbns idles part of the time), so probe work that lbns absorbs in its idle time does
# not show in qps, only in CPU per query.
# Also printed: the probe rate achieved (lbns_probe_results_total), publishes/s, lbns RSS and open files,
# and the CPU the backend listener used. With 1 s intervals and up to 200 ms jitter, a backend is
# probed every 1.1 s on average, so 10,000 backends make about 9,100 probes/s.
#
# Rounds alternate idle and probing so drift on a shared machine hits both; medians are shown.
# The table, the per-round numbers and the command line go to benches/results/probe-scale.md;
# the exit status is 1 when the target is missed (after printing and writing everything).
# gdnsd is installed from Debian if missing (never started by the package: policy-rc.d says 101).
#
# Usage: benches/probe-scale.sh [--duration S] [--rounds N] [--backends N] [--flip-percent P]
#                               [--flip-period S] [--no-build] [--no-write]
set -eu
cd "$(dirname "$0")/.."

DURATION=10
ROUNDS=5
BACKENDS=10000
FLIP_PERCENT=1
FLIP_PERIOD=4
BUILD=1
WRITE=1
ARGS="$*"
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION=$2; shift 2 ;;
        --backends) BACKENDS=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --flip-percent) FLIP_PERCENT=$2; shift 2 ;;
        --flip-period) FLIP_PERIOD=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --no-write) WRITE=0; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
for v in "$DURATION" "$ROUNDS" "$BACKENDS" "$FLIP_PERCENT" "$FLIP_PERIOD"; do
    case "$v" in ''|*[!0-9]*) echo "options take non-negative integers, got '$v'" >&2; exit 2 ;; esac
done

scripts/install-deps.sh
if ! command -v gdnsd >/dev/null 2>&1; then
    [ "$(id -u)" -eq 0 ] || { echo "gdnsd is missing (run as root to install it)" >&2; exit 2; }
    rc=0
    [ -x /usr/sbin/policy-rc.d ] && { /usr/sbin/policy-rc.d >/dev/null 2>&1 || rc=$?; }
    if [ "$rc" -ne 101 ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
    fi
    before=$(pgrep -x gdnsd || true)
    echo "installing gdnsd from Debian" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gdnsd >/dev/null
    # A daemon the package started despite the policy is this install's: stop it by PID.
    for pid in $(pgrep -x gdnsd || true); do
        echo "$before" | grep -qx "$pid" || kill "$pid" 2>/dev/null || true
    done
fi
[ "$BUILD" = 1 ] && cargo build --release -q
LBNS=$PWD/target/release/lbns
COMMIT=$(git describe --always --dirty 2>/dev/null || echo unknown)
TMP=$(mktemp -d /tmp/lbns-scale.XXXXXX)
PID=""
LPID=""
# Only what this script started, by PID: lbns and the backend listener.
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null
    [ -n "$LPID" ] && kill "$LPID" 2>/dev/null
    wait 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { # $1 = SOCK_STREAM or SOCK_DGRAM
    python3 -c "import socket; s=socket.socket(socket.AF_INET, socket.$1); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"
}
BPORT=$(free_port SOCK_STREAM)
PORT=$(free_port SOCK_DGRAM)
SPORT=$(free_port SOCK_STREAM)

cat > "$TMP/scale.zone" <<ZONE
\$TTL 3600
@ SOA ns1 hostmaster 1 3600 600 86400 60
@ NS ns1
ns1 A 127.0.0.1
mail A 127.0.0.8
@ MX 10 mail
ZONE
# The status listener on a free port: /metrics shows the publishes.
header() {
    printf '[server]\nlisten = ["127.0.0.1:%s"]\nudp_workers = 1\n\n[status]\nlisten = "127.0.0.1:%s"\n\n[[zone]]\norigin = "scale.example."\nfile = "scale.zone"\n' "$PORT" "$SPORT"
}
addr() { echo "127.1.$(($1 / 250)).$((1 + $1 % 250))"; }
header > "$TMP/idle.toml"
{
    header
    # 100 backends per pool on 127.1.x.y, each probed by TCP every second.
    python3 - "$BACKENDS" "$BPORT" <<'PY'
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

# The backends: one listening socket per backend address, all on BPORT, accepting (in batches,
# every 20 ms) and closing (with an RST: SO_LINGER 0, so no TIME_WAIT piles up). Every FLIP_PERIOD seconds the flipping
# ones (every (100 / FLIP_PERCENT)th backend) close or reopen their listener: closed, a connect
# is refused. Prints "ready" once every listener is bound, then "flip N" at each flip.
cat > "$TMP/backends.py" <<'PY'
import os, resource, select, socket, struct, sys, time
n, port, percent, period = (int(a) for a in sys.argv[1:5])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
if hard < n + 100:
    sys.exit("backends.py: open-file limit %d is below %d backends" % (hard, n))
addr = lambda i: "127.1.%d.%d" % (i // 250, 1 + i % 250)
step = 100 // percent if percent else 0
flipping = set(range(0, n, step)) if step else set()
ep = select.epoll()
listeners = {}   # fd -> socket
by_index = {}    # backend index -> socket
def listen(i):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr(i), port))
    s.listen(64)
    s.setblocking(False)
    ep.register(s.fileno(), select.EPOLLIN)
    listeners[s.fileno()] = s
    by_index[i] = s
def close(i):
    s = by_index.pop(i)
    ep.unregister(s.fileno())
    del listeners[s.fileno()]
    s.close()
for i in range(n):
    listen(i)
print("ready", flush=True)
linger = struct.pack("ii", 1, 0)
up = True
next_flip = time.monotonic() + period if flipping and period else float("inf")
# Connections accepted so far, written to accepts.txt beside this script about every 100 ms.
accepted = 0
count_file = os.path.join(os.path.dirname(os.path.abspath(__file__)), "accepts.txt")
next_count = 0.0
while True:
    # Accept in batches every 20 ms, never waiting in epoll: on loopback the kernel runs the
    # backend's side of each handshake in the connecting process's context, and a listener
    # waiting in epoll_wait would be woken (an IPI to its CPU) once per probe and charged to
    # lbns. A remote backend costs lbns nothing of the kind.
    time.sleep(max(0.0, min(0.02, next_flip - time.monotonic())))
    for fd, _ in ep.poll(0):
        s = listeners.get(fd)
        while s is not None:
            try:
                c, _ = s.accept()
            except (BlockingIOError, InterruptedError):
                break
            except ConnectionAbortedError:
                continue
            except OSError:
                break
            accepted += 1
            try:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            except OSError:
                pass
            c.close()
    if time.monotonic() >= next_count:
        with open(count_file + ".new", "w") as f:
            f.write("%d\n" % accepted)
        os.replace(count_file + ".new", count_file)
        next_count = time.monotonic() + 0.1
    if time.monotonic() >= next_flip:
        up = not up
        for i in flipping:
            listen(i) if up else close(i)
        print("flip %s" % ("up" if up else "down"), flush=True)
        next_flip += period
PY

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Busy ticks of CPU 1 (everything but idle and iowait): less lbns's own, it is what else ran on
# lbns's core during the run. On a shared machine, other load there starves lbns (most when it
# has the fewest runnable threads, idle) and moves its qps and CPU per query.
busy1() { awk '$1 == "cpu1" {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
# One metric from lbns's /metrics, summed over its labels.
metric() { # $1 = file, $2 = name
    awk -v m="$2" '$1 == m || index($1, m "{") == 1 { s += $NF } END { printf "%d\n", s }' "$1"
}
scrape() { curl -sf --max-time 10 "http://127.0.0.1:$SPORT/metrics" > "$1" || { echo "cannot read lbns's /metrics" >&2; exit 1; }; }

start_backends() { # [$1 = flip percent, default --flip-percent]
    rm -f "$TMP/backends.out" "$TMP/accepts.txt"
    taskset -c 0 python3 "$TMP/backends.py" "$BACKENDS" "$BPORT" "${1:-$FLIP_PERCENT}" "$FLIP_PERIOD" > "$TMP/backends.out" 2>&1 &
    LPID=$!
    i=0
    until grep -q '^ready' "$TMP/backends.out" 2>/dev/null; do
        i=$((i + 1))
        if [ $i -gt 600 ] || ! kill -0 "$LPID" 2>/dev/null; then
            echo "backend listener did not start:" >&2; cat "$TMP/backends.out" >&2; exit 1
        fi
        sleep 0.1
    done
}
stop_backends() { kill "$LPID" 2>/dev/null || true; wait "$LPID" 2>/dev/null || true; LPID=""; }

run() { # $1 = config name; appends one line of figures to $TMP/results (see cost())
    # The listener runs in both configurations (idle: nothing connects to it), so both measure
    # the same machine.
    start_backends
    taskset -c 1 "$LBNS" --log-level warn serve --config "$TMP/$1.toml" 2>"$TMP/$1.log" &
    PID=$!
    i=0
    until dig @127.0.0.1 -p "$PORT" +short +time=1 +tries=1 ns1.scale.example. 2>/dev/null | grep -q 127.0.0.1; do
        i=$((i + 1)); [ $i -gt 200 ] && { echo "lbns did not start ($1):" >&2; tail "$TMP/$1.log" >&2; exit 1; }
        sleep 0.1
    done
    sleep 5   # let probing reach its steady state (rise = 2 probes) and the flips begin
    scrape "$TMP/m0"
    t0=$(ticks "$PID"); l0=$(ticks "$LPID"); b0=$(busy1)
    out=$(taskset -c 0 dnsperf -s 127.0.0.1 -p "$PORT" -d "$TMP/queries" -l "$DURATION" -c 4 -q 200 2>&1)
    t1=$(ticks "$PID"); l1=$(ticks "$LPID"); b1=$(busy1)
    scrape "$TMP/m1"
    fds=$(ls "/proc/$PID/fd" | wc -l)
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$PID/status")
    threads=$(awk '/Threads/ {print $2}' "/proc/$PID/status")
    kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
    stop_backends
    qps=$(echo "$out" | awk '/Queries per second/ {print $4}')
    lost=$(echo "$out" | awk '/Queries lost/ {print $3}')
    answered=$(echo "$out" | awk '/Queries completed/ {print $3}')
    [ -n "$qps" ] && [ -n "$answered" ] && [ "$answered" -gt 0 ] || { echo "dnsperf failed:" >&2; echo "$out" >&2; exit 1; }
    hz=$(getconf CLK_TCK)
    cpu=$(echo "$t0 $t1 $hz $DURATION" | awk '{printf "%.0f", ($2-$1)/$3/$4*100}')
    us=$(echo "$t0 $t1 $hz $answered" | awk '{printf "%.4f", ($2-$1)/$3/$4*1e6}')
    lcpu=$(echo "$l0 $l1 $hz $DURATION" | awk '{printf "%.0f", ($2-$1)/$3/$4*100}')
    other=$(echo "$b0 $b1 $t0 $t1 $hz $DURATION" | awk '{o = (($2-$1) - ($4-$3))/$5/$6*100; printf "%.0f", (o < 0 ? 0 : o)}')
    # The probes this lbns made (the host's TCP counters would count other processes' too).
    probes=$(( ($(metric "$TMP/m1" lbns_probe_results_total) - $(metric "$TMP/m0" lbns_probe_results_total)) / DURATION ))
    gens=$(( $(metric "$TMP/m1" lbns_snapshot_generation) - $(metric "$TMP/m0" lbns_snapshot_generation) ))
    flips=$(( $(metric "$TMP/m1" lbns_backend_flips_total) - $(metric "$TMP/m0" lbns_backend_flips_total) ))
    pubs=$(echo "$gens $DURATION" | awk '{printf "%.1f", $1/$2}')
    flipr=$(echo "$flips $DURATION" | awk '{printf "%.1f", $1/$2}')
    if [ "$1" = scale ] && [ "$FLIP_PERCENT" -gt 0 ] && [ "$gens" -le 0 ]; then
        echo "no snapshot was published during the run: the flipping backends did not flip" >&2
        cat "$TMP/backends.out" >&2; tail "$TMP/$1.log" >&2; exit 1
    fi
    echo "$1 $qps $lost $cpu $rss $threads $probes $fds $us $answered $pubs $flipr $lcpu $other" >> "$TMP/results"
}

echo "dnsperf ${DURATION}s x $ROUNDS rounds, lbns pinned to CPU 1 (1 UDP worker), dnsperf and the backend listener to CPU 0" >&2
: > "$TMP/results"
r=0
while [ $r -lt "$ROUNDS" ]; do
    run idle
    tail -1 "$TMP/results" >&2
    run scale
    tail -1 "$TMP/results" >&2
    r=$((r + 1))
done
# CPU per probe, lbns against gdnsd: the same backends (none flipping), every 2 s, no queries.
header > "$TMP/cost.toml"
python3 - "$BACKENDS" "$BPORT" >> "$TMP/cost.toml" <<'PY'
import sys
n, port = int(sys.argv[1]), int(sys.argv[2])
for p in range((n + 99) // 100):
    addrs = ", ".join('"127.1.%d.%d"' % (i // 250, 1 + i % 250) for i in range(p * 100, min(n, (p + 1) * 100)))
    print('\n[[pool]]\nname = "p%d.scale.example."\nttl = 10\nbackends = [%s]' % (p, addrs))
    print('probe = { kind = "tcp", port = %d, interval = "2s", timeout = "1s", jitter = "200ms" }' % port)
PY
# gdnsd's config, on a fresh port at each start: a port free for UDP and TCP and none of the
# ports above (the previous gdnsd's port may not be free again at once).
gdnsd_config() {
GPORT=$(python3 - "$BPORT" "$PORT" "$SPORT" <<'PY'
import socket, sys
taken = {int(p) for p in sys.argv[1:]}
while True:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    port = u.getsockname()[1]
    t = socket.socket()
    try:
        t.bind(("127.0.0.1", port))
    except OSError:
        continue
    if port not in taken:
        print(port)
        break
PY
)
mkdir -p "$TMP/gdnsd/zones" "$TMP/gdnsd/run" "$TMP/gdnsd/state"
python3 - "$BACKENDS" "$BPORT" "$GPORT" "$TMP/gdnsd" > "$TMP/gdnsd/config" <<'PY'
import sys
n, port, dns, d = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
print('options => { listen => [ 127.0.0.1:%d ], run_dir => "%s/run", state_dir => "%s/state", udp_threads => 1, tcp_threads => 1 }' % (dns, d, d))
print('service_types => { bk => { plugin => tcp_connect, port => %d, interval => 2, timeout => 1 } }' % port)
print('plugins => { multifo => { service_types => bk')
for p in range((n + 99) // 100):
    addrs = ", ".join("127.1.%d.%d" % (i // 250, 1 + i % 250) for i in range(p * 100, min(n, (p + 1) * 100)))
    print('  p%d => { addrs_v4 => [ %s ] }' % (p, addrs))
print('} }')
PY
}
mkdir -p "$TMP/gdnsd/zones" "$TMP/gdnsd/run" "$TMP/gdnsd/state"
printf '$TTL 3600\n@ SOA ns1 hostmaster 1 3600 600 86400 60\n@ NS ns1\nns1 A 127.0.0.1\np0 DYNA multifo!p0\n' > "$TMP/gdnsd/zones/scale.example"
accepts() { cat "$TMP/accepts.txt" 2>/dev/null || echo 0; }
cost() { # $1 = lbns | gdnsd; appends "name probes/s cpu% us/probe" to $TMP/cost
    start_backends 0
    case "$1" in
        lbns) taskset -c 1 "$LBNS" --log-level warn serve --config "$TMP/cost.toml" 2>"$TMP/cost-lbns.log" & ;;
        gdnsd) gdnsd_config; taskset -c 1 gdnsd -c "$TMP/gdnsd" start 2>"$TMP/cost-gdnsd.log" & ;;
    esac
    PID=$!
    sleep 6   # every backend probed at least twice: the steady state
    if ! kill -0 "$PID" 2>/dev/null; then
        echo "$1 did not start:" >&2; tail "$TMP/cost-$1.log" >&2
        PID=""; stop_backends; exit 1
    fi
    t0=$(ticks "$PID"); a0=$(accepts)
    sleep "$DURATION"
    t1=$(ticks "$PID"); a1=$(accepts)
    kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
    stop_backends
    hz=$(getconf CLK_TCK)
    echo "$1 $t0 $t1 $a0 $a1 $hz $DURATION" | awk '{n = $5 - $4; c = ($3 - $2) / $6;
        printf "%s %.0f %.1f %.2f\n", $1, n / $7, c / $7 * 100, (n > 0 ? c / n * 1e6 : 0)}' >> "$TMP/cost"
}
echo "CPU per probe: lbns and gdnsd in turn, ${DURATION}s x $ROUNDS rounds, probes every 2 s, no queries" >&2
: > "$TMP/cost"
r=0
while [ $r -lt "$ROUNDS" ]; do
    # Called without a redirection (cost() appends itself): a function call with one may run
    # in a subshell, whose `exit` neither stops the script nor lets its cleanup see the
    # listener it started.
    cost lbns; tail -1 "$TMP/cost" >&2
    cost gdnsd; tail -1 "$TMP/cost" >&2
    r=$((r + 1))
done
cmed() { # $1 = server, $2 = column
    awk -v s="$1" -v k="$2" '$1 == s {print $k}' "$TMP/cost" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

median() { # $1 = config, $2 = column
    awk -v c="$1" -v k="$2" '$1 == c {print $k}' "$TMP/results" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}
query_ratio() {
    echo "$(median idle 9) $(median scale 9)" | awk '{printf "%.3f", $2 / $1}'
}
verdict() {
    echo "$(cmed lbns 4) $(cmed gdnsd 4)" | awk '{r = $1 / $2; printf "%.3f %s", r, (r <= 1.0 ? "PASS" : "FAIL")}'
}
table() {
echo "| lbns | backends | probes/s done | publishes/s | flips/s | median qps | lost (sum) | lbns CPU % | lbns CPU µs/query | RSS MiB | open fds | listener CPU % | other load on CPU 1 % |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for c in idle scale; do
    n=0; [ "$c" = scale ] && n=$BACKENDS
    lost=$(awk -v c="$c" '$1 == c {s += $3} END {print s}' "$TMP/results")
    printf '| %s | %s | %s | %s | %s | %.0f | %s | %s | %.3f | %.1f | %s | %s | %s |\n' "$c" "$n" "$(median $c 7)" "$(median $c 11)" "$(median $c 12)" \
        "$(median $c 2)" "$lost" "$(median $c 4)" "$(median $c 9)" "$(echo "$(median $c 5)" | awk '{print $1/1024}')" "$(median $c 8)" "$(median $c 13)" "$(median $c 14)"
done
echo
echo "| prober (no queries, every backend every 2 s) | probes/s (accepted) | CPU % | CPU µs/probe |"
echo "|---|---:|---:|---:|"
for srv in lbns gdnsd; do
    echo "| $srv | $(cmed $srv 2) | $(cmed $srv 3) | $(cmed $srv 4) |"
done
echo
set -- $(verdict)
echo "lbns CPU per probe / gdnsd's: $1 (target <= 1.00): $2"
echo "lbns CPU per query with probes / idle: $(query_ratio) (reported, not a target)"
echo "$(median idle 14) $(median scale 14)" | awk '$1 > 10 || $2 > 10 {
    printf "⚠ other processes took %d%% (idle) and %d%% (scale) of lbns'"'"'s core: the comparison is unreliable, run it on a quiet machine\n", $1, $2 }'
echo "$(median idle 2) $(median scale 2)" | awk '{printf "qps with probes / idle: %.3f (not a target: dnsperf is the bottleneck)\n", $2 / $1}'
}
echo
table
echo "per-round: config qps lost cpu% rss_kib threads probes/s fds cpu_us/query answered publishes/s flips/s listener_cpu% other_cpu1%" >&2
cat "$TMP/results" >&2
if [ "$WRITE" = 1 ]; then
    {
        echo "# benches/probe-scale.sh — $(date -u +%Y-%m-%d)"
        echo
        echo "Command: \`benches/probe-scale.sh $ARGS\` at commit $COMMIT."
        echo "$BACKENDS live backends (one Python listener, accepting), TCP probe every 1 s + up to 200 ms jitter;"
        echo "$FLIP_PERCENT % of them alternate between accepting and refusing every $FLIP_PERIOD s; $ROUNDS rounds of ${DURATION} s;"
        echo "lbns on CPU 1 with one UDP worker, dnsperf and the backend listener on CPU 0."
        echo "Machine: $(nproc) CPUs, load average at the end $(cut -d' ' -f1-3 /proc/loadavg)."
        echo
        table
        echo
        echo "*lbns CPU µs/query*: utime+stime of lbns over the dnsperf run / queries answered. *probes/s*: growth of"
        echo "\`lbns_probe_results_total\` (all pools, backends and results) over the run. *publishes/s*: growth of"
        echo "\`lbns_snapshot_generation\` over the run; *flips/s*: of \`lbns_backend_flips_total\`. *listener CPU %*: the"
        echo "Python process standing in for the backends. *other load on CPU 1*: busy time of lbns's core (/proc/stat) not"
        echo "spent by lbns: other processes there starve lbns and move its qps and CPU per query."
        echo
        echo "*CPU µs/probe*: the prober's utime+stime over the connections the backends accepted, with every backend"
        echo "probed every 2 s (gdnsd's shortest interval), no flips and no queries."
        echo
        echo "Per round, CPU per probe (server probes/s cpu% us/probe):"
        echo
        echo '```'
        cat "$TMP/cost"
        echo '```'
        echo
        echo "Per round (config qps lost cpu% rss_kib threads probes/s fds cpu_us/query answered publishes/s flips/s listener_cpu% other_cpu1%):"
        echo
        echo '```'
        cat "$TMP/results"
        echo '```'
    } > benches/results/probe-scale.md
    echo "wrote benches/results/probe-scale.md" >&2
fi
set -- $(verdict)
[ "$2" = PASS ] || { echo "target missed: lbns CPU per probe is $1 x gdnsd's (target <= 1.00)" >&2; exit 1; }
