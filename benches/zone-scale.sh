#!/usr/bin/env bash
# benches/zone-scale.sh -- large zones and many pools: lbns against Knot DNS (knotd) and NSD.
#
# What it measures, in order, for --rounds rounds (medians over rounds):
#   1. load: for each size (--sizes, default 10k, 100k and 1M A records h0..h<N-1>.scale.example.
#      plus SOA and NS, generated once per run into a temp dir) and each server (lbns serve with
#      that one zone and no pools; knotd; nsd), started in turn on its own 127.0.0.1 port: the
#      time from start until the LAST name, h<N-1>, is answered (a UDP query every 10 ms), then,
#      1 s later, the RSS of all the server's processes (VmRSS summed: NSD forks), their peak
#      (VmHWM summed) and PSS (shared pages split between NSD's processes);
#   2. reload, on the largest size, while dnsperf asks at a fixed rate (--rate, default 20k qps;
#      each run bounded by --reload-limit seconds): lbns (`lbns reload`) and Knot
#      (`knotc -b zone-reload`) reload the unchanged zone (time until the command returns; peak
#      RSS during it, VmHWM reset before) and then the zone with one record changed (h0's address,
#      serial + 1; time until the new address is answered); dnsperf's lost queries (1 s timeout)
#      and maximum latency over each run;
#   3. `lbns check` on each size: wall time and maximum RSS;
#   4. many pools: benches/pool-scale.sh when it exists; otherwise a config with --pools (default
#      10,000) pools of 2 unprobed backends each: `lbns check`, start until the last pool answers,
#      and `lbns reload` of it, medians of 3.
# Then it prints a table with ratios to Knot (lbns / knot, for time and RSS), writes it with the
# command line to benches/results/zone-scale.md, and exits 1 if a target is missed:
#   - lbns RSS after load <= Knot's at the largest size, and lbns memory per record (RSS growth
#     from the smallest to the largest size over the records added) <= Knot's;
#   - lbns load time <= 1.25 x Knot's, at every size;
#   - reload of the unchanged largest zone (1M records by default) < 100 ms;
#   - reload of the 10,000-pool config < 1 s.
# (A target whose peer was not run, --only without knot, is not judged.)
#
# Servers: one UDP worker each (lbns `udp_workers = 1`, knot `udp-workers: 1`, nsd
# `server-count: 1`), not pinned: loading uses whatever the machine has. Knot: zonefile-load
# whole, no journal, zone file never written, its rundir and storage (timers) in the temp dir,
# semantic checks at its default (off). NSD: `database: ""` (NSD 4.x compiles the zone at start),
# every path in the temp dir. Nothing listens outside 127.0.0.1, every server this script
# started is stopped by its PID (and its descendants' PIDs) on exit, and the temp dir removed.
#
# Usage: benches/zone-scale.sh [--sizes N1,N2,...] [--rounds N] [--only lbns,knot,nsd]
#                              [--rate QPS] [--reload-limit S] [--pools N] [--load-timeout S]
#                              [--no-build] [--no-write] [--keep-tmp]
# Needs bash, python3 and dnsperf; root only to install missing Debian packages (knot, nsd,
# dnsperf), which is done with /usr/sbin/policy-rc.d refusing service starts, as
# benches/dnsperf.sh does.
set -euo pipefail

SIZES="10000,100000,1000000"
ROUNDS=3
ONLY="lbns,knot,nsd"
RATE=20000
RELOAD_LIMIT=120    # seconds: bound of each dnsperf run across a reload
POOLS=10000
LOAD_TIMEOUT=300    # seconds a server may take to answer the last name
BUILD=1
WRITE=1
KEEP_TMP=0
CMDLINE="$(printf '%q ' "$0" "$@")"
CMDLINE="${CMDLINE% }"

usage() { sed -n '/^# Usage:/,/^# Needs/p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "zone-scale.sh: error: $*" >&2; exit 2; }
log() { echo "== $*" >&2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --sizes) SIZES="${2:?--sizes needs a list}"; shift 2 ;;
        --rounds) ROUNDS="${2:?--rounds needs a number}"; shift 2 ;;
        --only) ONLY="${2:?--only needs a list}"; shift 2 ;;
        --rate) RATE="${2:?--rate needs a number}"; shift 2 ;;
        --reload-limit) RELOAD_LIMIT="${2:?}"; shift 2 ;;
        --pools) POOLS="${2:?}"; shift 2 ;;
        --load-timeout) LOAD_TIMEOUT="${2:?}"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --no-write) WRITE=0; shift ;;
        --keep-tmp) KEEP_TMP=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done
SIZES="${SIZES//,/ }"
for v in $SIZES; do case "$v" in ''|*[!0-9]*|0) die "--sizes: '$v' is not a positive integer" ;; esac; done
[ -n "$SIZES" ] || die "--sizes needs at least one size"
for v in ROUNDS RATE RELOAD_LIMIT POOLS LOAD_TIMEOUT; do
    case "${!v}" in ''|*[!0-9]*|0) die "$v must be a positive integer, got '${!v}'" ;; esac
done
SERVERS=""
for s in lbns knot nsd; do case ",$ONLY," in *",$s,"*) SERVERS="$SERVERS $s" ;; esac; done
SERVERS="${SERVERS# }"
for s in ${ONLY//,/ }; do case "$s" in lbns|knot|nsd) ;; *) die "--only: unknown server '$s' (known: lbns knot nsd)" ;; esac; done
[ -n "$SERVERS" ] || die "--only selected no server"
has() { case " $SERVERS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
LARGEST="$(printf '%s\n' $SIZES | sort -n | tail -1)"

cd "$(dirname "$0")/.."
REPO="$(pwd)"
# Before anything is written: the report itself would make the tree look dirty.
COMMIT="$(git describe --always --dirty 2>/dev/null || echo unknown)"
LBNS="$REPO/target/release/lbns"
PY=(python3 "$REPO/benches/zone-scale.py")

# ---------------------------------------------------------------------------------------------
# Packages: installed only when missing, never started (benches/dnsperf.sh does the same).
# ---------------------------------------------------------------------------------------------
need=""
have() { command -v "$1" >/dev/null 2>&1; }
have python3 || need="$need python3"
have dnsperf || need="$need dnsperf"
has knot && { { have knotd && have knotc; } || need="$need knot"; }
has nsd && { { have nsd && have nsd-checkconf; } || need="$need nsd"; }
daemon_pids() { { pgrep -x knotd; pgrep -x nsd; } 2>/dev/null | sort -n || true; }
if [ -n "$need" ]; then
    [ "$(id -u)" -eq 0 ] || die "missing packages:$need (run as root to install them)"
    # Debian's invoke-rc.d asks /usr/sbin/policy-rc.d before starting a service; exit code 101
    # means "not allowed". Make sure it says so before installing any daemon.
    rc=0
    [ -x /usr/sbin/policy-rc.d ] && { /usr/sbin/policy-rc.d >/dev/null 2>&1 || rc=$?; }
    if [ "$rc" -ne 101 ]; then
        log "installing /usr/sbin/policy-rc.d (exit 101) so that no service auto-starts"
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
    fi
    before="$(daemon_pids)"
    log "installing from Debian:$need"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
    # If a service started anyway (policy ignored), it was started by this install: stop it by PID.
    for pid in $(comm -13 <(echo "$before") <(daemon_pids)); do
        log "apt-get started a daemon anyway (pid $pid, $(cat "/proc/$pid/comm" 2>/dev/null)); stopping it"
        kill "$pid" 2>/dev/null || true
    done
fi

if [ "$BUILD" -eq 1 ]; then
    log "cargo build --release"
    cargo build --release -q
fi
[ -x "$LBNS" ] || die "$LBNS missing: build it or drop --no-build"

# ---------------------------------------------------------------------------------------------
# Temp dir, ports, cleanup. Every process started in the background is in STARTED; on exit each
# of them and its descendants (NSD's children) get SIGTERM, then SIGKILL, by PID.
# ---------------------------------------------------------------------------------------------
TMP="$(mktemp -d "${TMPDIR:-/tmp}/lbns-zscale.XXXXXX")"
STARTED=()
track() { STARTED+=("$1"); }
# Called once a process has been waited for: its PID may be reused by an unrelated process.
untrack() {
    local keep=() p
    for p in "${STARTED[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    STARTED=("${keep[@]}")
}
stop_pid() { # pid: TERM it and its descendants, wait up to 5 s, then KILL those left
    local root="$1" pids p
    pids="$("${PY[@]}" tree "$root" 2>/dev/null || true)"
    if [ -n "$pids" ]; then
        for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
        for _ in $(seq 1 50); do
            [ -z "$("${PY[@]}" alive $pids 2>/dev/null)" ] && break
            sleep 0.1
        done
        for p in $("${PY[@]}" alive $pids 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
    fi
    wait "$root" 2>/dev/null || true
    untrack "$root"
}
cleanup() {
    local rc=$? p
    trap - EXIT INT TERM
    for p in "${STARTED[@]}"; do stop_pid "$p"; done
    if [ "$KEEP_TMP" -eq 1 ]; then echo "temp dir kept: $TMP" >&2; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A port free for both UDP and TCP on 127.0.0.1 (chosen by the kernel, so two runs side by side
# do not collide).
free_port() {
    python3 -c '
import socket
while True:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0)); p = u.getsockname()[1]
    t = socket.socket()
    try:
        t.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass'
}
declare -A PORT
for s in lbns knot nsd pools; do PORT[$s]="$(free_port)"; done
ORIGIN="scale.example."

# ---------------------------------------------------------------------------------------------
# Zones: one per size, generated once. h<i> A 10.a.b.c; the changed copy gives h0 192.0.2.99
# and serial 2.
# ---------------------------------------------------------------------------------------------
gen_zone() { # N serial h0-address
    printf '$ORIGIN %s\n$TTL 3600\n@ IN SOA ns1 hostmaster %s 3600 600 86400 60\n@ IN NS ns1\nns1 IN A 127.0.0.1\n' "$ORIGIN" "$2"
    awk -v n="$1" -v h0="$3" 'BEGIN { print "h0 IN A " h0
        for (i = 1; i < n; i++) printf "h%d IN A 10.%d.%d.%d\n", i, int(i / 65536) % 256, int(i / 256) % 256, i % 256 }'
}
for n in $SIZES; do
    mkdir -p "$TMP/z$n"
    log "generating the $n-record zone"
    gen_zone "$n" 1 10.0.0.0 >"$TMP/z$n/$ORIGIN""zone"
    printf 'h0.%s A\nh%d.%s A\nh%d.%s A\n%s SOA\n' "$ORIGIN" $((n / 2)) "$ORIGIN" $((n - 1)) "$ORIGIN" "$ORIGIN" >"$TMP/z$n/queries"
done
gen_zone "$LARGEST" 2 192.0.2.99 >"$TMP/changed.zone"
NEW_ADDR=192.0.2.99

# Configs, per size: lbns (its control socket, state file and zone beside its config), Knot, NSD.
conf_lbns() { # N -> dir
    local d="$TMP/lbns-$1"; mkdir -p "$d"
    ln -f "$TMP/z$1/${ORIGIN}zone" "$d/serve.zone" 2>/dev/null || cp "$TMP/z$1/${ORIGIN}zone" "$d/serve.zone"
    printf '[server]\nlisten = ["127.0.0.1:%s"]\nudp_workers = 1\n\n[status]\nenabled = false\n\n[[zone]]\norigin = "%s"\nfile = "serve.zone"\n' \
        "${PORT[lbns]}" "$ORIGIN" >"$d/lbns.toml"
}
conf_knot() {
    local d="$TMP/knot-$1"; mkdir -p "$d/db"
    cp "$TMP/z$1/${ORIGIN}zone" "$d/serve.zone"
    cat >"$d/knot.conf" <<EOF
server:
    rundir: "$d"
    pidfile: "$d/knot.pid"
    listen: 127.0.0.1@${PORT[knot]}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "$d/db"
control:
    listen: "$d/knot.sock"
log:
  - target: stderr
    any: info
template:
  - id: default
    storage: "$d/db"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
zone:
  - domain: $ORIGIN
    file: "$d/serve.zone"
EOF
}
conf_nsd() {
    local d="$TMP/nsd-$1"; mkdir -p "$d/xfr"
    cat >"$d/nsd.conf" <<EOF
server:
    ip-address: 127.0.0.1@${PORT[nsd]}
    server-count: 1
    tcp-count: 16
    username: ""
    chroot: ""
    zonesdir: "$TMP/z$1"
    database: ""
    zonelistfile: "$d/zone.list"
    xfrdfile: "$d/xfrd.state"
    xfrdir: "$d/xfr"
    pidfile: "$d/nsd.pid"
    logfile: "$d/nsd.log"
    verbosity: 1
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
remote-control:
    control-enable: no
zone:
    name: $ORIGIN
    zonefile: "$TMP/z$1/${ORIGIN}zone"
EOF
}
for n in $SIZES; do
    has lbns && conf_lbns "$n"
    has knot && conf_knot "$n"
    has nsd && conf_nsd "$n"
done
# The checkers of the peers, once on the smallest size, so a config mistake is reported as the
# daemon sees it (lbns check is measured below).
SMALLEST="$(printf '%s\n' $SIZES | sort -n | head -1)"
has knot && { knotc -c "$TMP/knot-$SMALLEST/knot.conf" conf-check >"$TMP/knot.check" 2>&1 || { cat "$TMP/knot.check" >&2; die "knotc conf-check failed"; }; }
has nsd && { nsd-checkconf "$TMP/nsd-$SMALLEST/nsd.conf" >"$TMP/nsd.check" 2>&1 || { cat "$TMP/nsd.check" >&2; die "nsd-checkconf failed"; }; }

# ---------------------------------------------------------------------------------------------
# Starting and stopping one server.
# ---------------------------------------------------------------------------------------------
SPID=""
START_NS=0
start() { # server N
    local s="$1" n="$2" port="${PORT[$1]}"
    if ss -Hlnu "sport = :$port" 2>/dev/null | grep -q .; then die "UDP port $port (for $s) is already in use"; fi
    START_NS="$(date +%s%N)"
    # The pid file is written after the server started: the poller (started before) reads it.
    case "$s" in
        lbns) "$LBNS" --log-level info serve --config "$TMP/lbns-$n/lbns.toml" >"$TMP/$s-$n.log" 2>&1 & ;;
        knot) knotd -c "$TMP/knot-$n/knot.conf" >"$TMP/$s-$n.log" 2>&1 & ;;
        nsd) nsd -d -c "$TMP/nsd-$n/nsd.conf" >"$TMP/$s-$n.log" 2>&1 & ;;
    esac
    SPID=$!
    track "$SPID"
    echo "$SPID" >"$TMP/spid.new" && mv -f "$TMP/spid.new" "$TMP/spid"
}
stop() {
    [ -n "$SPID" ] || return 0
    stop_pid "$SPID"
    SPID=""
}
server_log() { cat "$TMP/$1-$2.log" 2>/dev/null; [ "$1" = nsd ] && cat "$TMP/nsd-$2/nsd.log" 2>/dev/null; true; }

# Starts the server and times it until the last name is answered (ms since its start, in
# $LOAD_MS). The poller starts first and polls before the server is started, so that its own
# start-up (tens of ms for python) is not counted into small zones' load times.
start_timed() { # server N
    local s="$1" n="$2" ppid_ i rc=0
    rm -f "$TMP/spid" "$TMP/spid.ready" "$TMP/load.ms"
    "${PY[@]}" wait "${PORT[$s]}" "h$((n - 1)).$ORIGIN" - 0 "$LOAD_TIMEOUT" "$TMP/spid" >"$TMP/load.ms" &
    ppid_=$!
    track "$ppid_"
    for i in $(seq 1 200); do [ -e "$TMP/spid.ready" ] && break; sleep 0.05; done
    [ -e "$TMP/spid.ready" ] || die "the poller did not start"
    start "$s" "$n"
    wait "$ppid_" || rc=$?
    untrack "$ppid_"
    if [ "$rc" -ne 0 ]; then
        server_log "$s" "$n" | tail -20 >&2
        die "$s did not answer h$((n - 1)).$ORIGIN within ${LOAD_TIMEOUT}s"
    fi
    LOAD_MS="$(awk -v a="$(cat "$TMP/load.ms")" -v t="$START_NS" 'BEGIN { printf "%.1f", a - t / 1e6 }')"
}

# ---------------------------------------------------------------------------------------------
# Reload under dnsperf: one run per kind, in this shell (so that every process it starts is
# tracked). Appends "cmd_ms answered_ms peak_kib rss_after_kib sent lost max_latency_ms" to
# $TMP/reload.line.
# ---------------------------------------------------------------------------------------------
reload_cmd() { # server N
    case "$1" in
        lbns) echo "$LBNS --log-level warn reload --config $TMP/lbns-$2/lbns.toml" ;;
        knot) echo "knotc -c $TMP/knot-$2/knot.conf -b zone-reload $ORIGIN" ;;
    esac
}
serve_file() { case "$1" in lbns) echo "$TMP/lbns-$2/serve.zone" ;; knot) echo "$TMP/knot-$2/serve.zone" ;; esac; }
replace_zone() { # server N source: replaced by rename, as an editor or a deployment does
    cp "$3" "$(serve_file "$1" "$2").new"
    mv -f "$(serve_file "$1" "$2").new" "$(serve_file "$1" "$2")"
}
reload_run() { # server N kind(unchanged|changed)
    local s="$1" n="$2" kind="$3" perf dpid rpid t0 cmd_s cmd_ms ans_ms=- rc mem sent lost max
    perf="$TMP/perf-$s-$kind"
    dnsperf -s 127.0.0.1 -p "${PORT[$s]}" -d "$TMP/z$n/queries" -l "$RELOAD_LIMIT" -Q "$RATE" -t 1 -c 4 >"$perf" 2>&1 &
    dpid=$!
    track "$dpid"
    sleep 1
    [ "$kind" = changed ] && replace_zone "$s" "$n" "$TMP/changed.zone"
    "${PY[@]}" clear "$SPID" || true
    # shellcheck disable=SC2046
    "${PY[@]}" timed "$TMP/reload.time" $(reload_cmd "$s" "$n") &
    rpid=$!
    track "$rpid"
    if [ "$kind" = changed ]; then
        # The time the new address was first answered (ms since the epoch), set against the
        # moment the reload command was started (both on the same clock).
        if ! ans_ms="$("${PY[@]}" wait "${PORT[$s]}" "h0.$ORIGIN" "$NEW_ADDR" 0 "$RELOAD_LIMIT" "$SPID")"; then
            server_log "$s" "$n" | tail >&2
            die "$s: the changed record was never answered"
        fi
    fi
    wait "$rpid" || true
    untrack "$rpid"
    read -r cmd_s _ rc t0 <"$TMP/reload.time"
    [ "$rc" = 0 ] || { cat "$TMP/reload.time.log" >&2; die "$s: reload failed: $(reload_cmd "$s" "$n")"; }
    cmd_ms="$(awk -v s="$cmd_s" 'BEGIN { printf "%.1f", s * 1000 }')"
    [ "$ans_ms" = - ] || ans_ms="$(awk -v a="$ans_ms" -v t="$t0" 'BEGIN { printf "%.1f", a - t / 1e6 }')"
    # Queries sent during the reload are answered or time out (1 s) before dnsperf stops; the
    # replaced data has been freed by then too.
    sleep 2
    mem="$("${PY[@]}" mem "$SPID")"
    kill -INT "$dpid" 2>/dev/null || true
    wait "$dpid" || true
    untrack "$dpid"
    sent="$(sed -n 's/^ *Queries sent: *\([0-9]*\).*/\1/p' "$perf")"
    lost="$(sed -n 's/^ *Queries lost: *\([0-9]*\).*/\1/p' "$perf")"
    max="$(sed -n 's/^ *Average Latency (s):.*max \([0-9.]*\)).*/\1/p' "$perf")"
    [ -n "$sent" ] && [ -n "$lost" ] && [ -n "$max" ] || { cat "$perf" >&2; die "$s: no dnsperf statistics"; }
    set -- $mem
    echo "$cmd_ms $ans_ms $2 $1 $sent $lost $(awk -v m="$max" 'BEGIN { printf "%.1f", m * 1000 }')" >"$TMP/reload.line"
}

# ---------------------------------------------------------------------------------------------
# The rounds.
# ---------------------------------------------------------------------------------------------
LOADS="$TMP/loads"        # round size server load_ms rss hwm pss procs
RELOADS="$TMP/reloads"    # round server kind cmd_ms answered_ms peak rss_after sent lost max_ms
CHECKS="$TMP/checks"      # round size wall_s maxrss_kib
: >"$LOADS"; : >"$RELOADS"; : >"$CHECKS"
LOADAVG_START="$(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$ROUNDS"); do
    for n in $SIZES; do
        for s in $SERVERS; do
            start_timed "$s" "$n"
            ms="$LOAD_MS"
            sleep 1
            mem="$("${PY[@]}" mem "$SPID")"
            echo "$r $n $s $ms $mem" >>"$LOADS"
            log "round $r, $n records, $s: last name answered after $ms ms; rss hwm pss (KiB) procs: $mem"
            if [ "$n" = "$LARGEST" ] && { [ "$s" = lbns ] || [ "$s" = knot ]; }; then
                for kind in unchanged changed; do
                    reload_run "$s" "$n" "$kind"
                    line="$(cat "$TMP/reload.line")"
                    echo "$r $s $kind $line" >>"$RELOADS"
                    log "round $r, $s reload ($kind): cmd_ms answered_ms peak rss_after sent lost max_ms: $line"
                done
                # The next round starts from the original zone again.
                replace_zone "$s" "$n" "$TMP/z$n/${ORIGIN}zone"
            fi
            stop
        done
        if has lbns; then
            "${PY[@]}" timed "$TMP/check.time" "$LBNS" --log-level warn check --config "$TMP/lbns-$n/lbns.toml"
            read -r wall maxrss rc _ <"$TMP/check.time"
            [ "$rc" = 0 ] || { cat "$TMP/check.time.log" >&2; die "lbns check failed on the $n-record zone"; }
            echo "$r $n $wall $maxrss" >>"$CHECKS"
            log "round $r, lbns check on $n records: $wall s, max RSS $maxrss KiB"
        fi
    done
done

# ---------------------------------------------------------------------------------------------
# Many pools.
# ---------------------------------------------------------------------------------------------
POOL_SECTION=""
POOL_RC=0
POOL_RELOAD_MS=""
if [ -x "$REPO/benches/pool-scale.sh" ]; then
    log "benches/pool-scale.sh exists: running it for the pools section"
    popts=()
    grep -q -- '--no-build' "$REPO/benches/pool-scale.sh" && popts+=(--no-build)
    POOL_SECTION="$("$REPO/benches/pool-scale.sh" "${popts[@]}" 2>&1)" || POOL_RC=$?
    POOL_SECTION="Output of \`benches/pool-scale.sh ${popts[*]}\` (exit $POOL_RC):

\`\`\`
$POOL_SECTION
\`\`\`"
elif has lbns; then
    d="$TMP/pools"; mkdir -p "$d"
    printf '$ORIGIN pools.example.\n$TTL 3600\n@ IN SOA ns1 hostmaster 1 3600 600 86400 60\n@ IN NS ns1\nns1 IN A 127.0.0.1\n' >"$d/pools.zone"
    {
        printf '[server]\nlisten = ["127.0.0.1:%s"]\nudp_workers = 1\n\n[status]\nenabled = false\n\n[[zone]]\norigin = "pools.example."\nfile = "pools.zone"\n' "${PORT[pools]}"
        awk -v n="$POOLS" 'BEGIN { for (i = 0; i < n; i++)
            printf "\n[[pool]]\nname = \"p%d.pools.example.\"\nbackends = [\"127.2.%d.%d\", \"127.3.%d.%d\"]\n", i, int(i / 250), 1 + i % 250, int(i / 250), 1 + i % 250 }'
    } >"$d/lbns.toml"
    : >"$TMP/pools.runs"   # kind value_ms maxrss_kib
    for i in 1 2 3; do
        "${PY[@]}" timed "$TMP/pcheck.time" "$LBNS" --log-level warn check --config "$d/lbns.toml"
        read -r wall maxrss rc _ <"$TMP/pcheck.time"
        [ "$rc" = 0 ] || { cat "$TMP/pcheck.time.log" >&2; die "lbns check failed on the $POOLS-pool config"; }
        echo "check $(awk -v s="$wall" 'BEGIN { printf "%.1f", s * 1000 }') $maxrss" >>"$TMP/pools.runs"
    done
    START_NS="$(date +%s%N)"
    "$LBNS" --log-level info serve --config "$d/lbns.toml" >"$TMP/pools.log" 2>&1 &
    SPID=$!; track "$SPID"
    ms="$("${PY[@]}" wait "${PORT[pools]}" "p$((POOLS - 1)).pools.example." - "$START_NS" "$LOAD_TIMEOUT" "$SPID")" \
        || { tail "$TMP/pools.log" >&2; die "lbns did not answer the last pool"; }
    sleep 1
    set -- $("${PY[@]}" mem "$SPID")
    echo "start $ms $1" >>"$TMP/pools.runs"
    for i in 1 2 3; do
        "${PY[@]}" clear "$SPID" || true
        "${PY[@]}" timed "$TMP/preload.time" "$LBNS" --log-level warn reload --config "$d/lbns.toml"
        read -r wall _ rc _ <"$TMP/preload.time"
        [ "$rc" = 0 ] || { cat "$TMP/preload.time.log" >&2; die "lbns reload of the $POOLS-pool config failed"; }
        set -- $("${PY[@]}" mem "$SPID")
        echo "reload $(awk -v s="$wall" 'BEGIN { printf "%.1f", s * 1000 }') $2" >>"$TMP/pools.runs"
    done
    stop
    pmed() { awk -v k="$1" -v c="$2" '$1 == k { print $c }' "$TMP/pools.runs" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
    POOL_RELOAD_MS="$(pmed reload 2)"
    POOL_SECTION="$POOLS pools of 2 backends each (no probes) in one zone; medians of 3 (start: once).

| what | time ms | max / peak RSS MiB |
|---|---:|---:|
| \`lbns check\` | $(pmed check 2) | $(awk -v k="$(pmed check 3)" 'BEGIN { printf "%.1f", k / 1024 }') |
| start until the last pool answers (RSS after) | $(pmed start 2) | $(awk -v k="$(pmed start 3)" 'BEGIN { printf "%.1f", k / 1024 }') |
| \`lbns reload\` (peak during it) | $POOL_RELOAD_MS | $(awk -v k="$(pmed reload 3)" 'BEGIN { printf "%.1f", k / 1024 }') |"
fi

# ---------------------------------------------------------------------------------------------
# Report.
# ---------------------------------------------------------------------------------------------
median() { { grep -E '^[0-9.]+$' || true; } | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
lmed() { awk -v n="$1" -v s="$2" -v c="$3" '$2 == n && $3 == s { print $c }' "$LOADS" | median; }
rmed() { awk -v s="$1" -v k="$2" -v c="$3" '$2 == s && $3 == k { print $c }' "$RELOADS" | median; }
rsum() { awk -v s="$1" -v k="$2" -v c="$3" '$2 == s && $3 == k { t += $c } END { print t + 0 }' "$RELOADS"; }
rmax() { awk -v s="$1" -v k="$2" -v c="$3" '$2 == s && $3 == k && $c + 0 > m + 0 { m = $c } END { print m + 0 }' "$RELOADS"; }
mib() { [ -n "$1" ] && awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }' || echo -; }
ratio() { [ -n "$1" ] && [ -n "$2" ] && awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else printf "n/a" }' || echo -; }

FAILED=0
TARGETS=""
target() { # description measured verdict(PASS|FAIL|n/a)
    TARGETS="$TARGETS| $1 | $2 | $3 |
"
    [ "$3" = FAIL ] && FAILED=1
    return 0
}
pass() { awk "BEGIN { exit !($1) }" && echo PASS || echo FAIL; }

LOAD_TABLE="| records | server | load ms (last name answered) | vs Knot | RSS MiB after load | vs Knot | peak RSS MiB (VmHWM) | vs Knot | PSS MiB | processes |
|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for n in $SIZES; do
    kl="$(has knot && lmed "$n" knot 4 || true)"; kr="$(has knot && lmed "$n" knot 5 || true)"; kh="$(has knot && lmed "$n" knot 6 || true)"
    for s in $SERVERS; do
        l="$(lmed "$n" "$s" 4)"; rss="$(lmed "$n" "$s" 5)"; hwm="$(lmed "$n" "$s" 6)"; pss="$(lmed "$n" "$s" 7)"; procs="$(lmed "$n" "$s" 8)"
        LOAD_TABLE="$LOAD_TABLE
| $n | $s | $l | $(ratio "$l" "$kl") | $(mib "$rss") | $(ratio "$rss" "$kr") | $(mib "$hwm") | $(ratio "$hwm" "$kh") | $(mib "$pss") | $procs |"
    done
    if has lbns && has knot; then
        l="$(lmed "$n" lbns 4)"; rss="$(lmed "$n" lbns 5)"
        # RSS is judged at the largest size only: at small sizes both servers are at their
        # baseline (their binaries and libraries, ~9 MiB of file-backed pages for lbns), which
        # says nothing about zones; memory per record is judged below.
        if [ "$n" = "$LARGEST" ]; then
            target "lbns RSS after load ≤ Knot's, $n records" "$(mib "$rss") / $(mib "$kr") MiB = $(ratio "$rss" "$kr")" "$(pass "$rss <= $kr")"
        fi
        target "lbns load time ≤ 1.25× Knot's, $n records" "$l / $kl ms = $(ratio "$l" "$kl")" "$(pass "$l <= 1.25 * $kl")"
    else
        target "lbns RSS and load time against Knot's, $n records" "-" "n/a (needs lbns and knot)"
    fi
done

# Memory per record: the growth of RSS after load from the smallest to the largest size,
# divided by the records added; each server's baseline cancels out.
SMALLEST="$(echo "$SIZES" | tr ' ' '\n' | sort -n | head -1)"
per_record() { # server -> bytes per record
    awk -v a="$(lmed "$SMALLEST" "$1" 5)" -v b="$(lmed "$LARGEST" "$1" 5)" -v n="$SMALLEST" -v m="$LARGEST" \
        'BEGIN { if (m > n && a != "" && b != "") printf "%.0f", (b - a) * 1024 / (m - n) }'
}
if has lbns && has knot && [ "$SMALLEST" != "$LARGEST" ]; then
    lp="$(per_record lbns)"; kp="$(per_record knot)"
    target "lbns memory per record ≤ Knot's (RSS growth from $SMALLEST to $LARGEST records)" "$lp / $kp bytes = $(ratio "$lp" "$kp")" "$(pass "$lp <= $kp")"
fi

RELOAD_TABLE="| server | reload of the $LARGEST-record zone | command returned ms | new record answered ms | peak RSS MiB during | RSS MiB after | queries sent (all rounds) | lost (all rounds) | max latency ms (worst round) |
|---|---|---:|---:|---:|---:|---:|---:|---:|"
for s in lbns knot; do
    has "$s" || continue
    for kind in unchanged changed; do
        a="$(rmed "$s" "$kind" 5)"; [ -n "$a" ] || a=-
        RELOAD_TABLE="$RELOAD_TABLE
| $s | $kind | $(rmed "$s" "$kind" 4) | $a | $(mib "$(rmed "$s" "$kind" 6)") | $(mib "$(rmed "$s" "$kind" 7)") | $(rsum "$s" "$kind" 8) | $(rsum "$s" "$kind" 9) | $(rmax "$s" "$kind" 10) |"
    done
done
if has lbns; then
    u="$(rmed lbns unchanged 4)"
    target "unchanged $LARGEST-record zone: \`lbns reload\` < 100 ms" "$u ms" "$(pass "$u < 100")"
fi
if [ -n "$POOL_RELOAD_MS" ]; then
    target "$POOLS pools: \`lbns reload\` < 1 s" "$POOL_RELOAD_MS ms" "$(pass "$POOL_RELOAD_MS < 1000")"
elif [ -x "$REPO/benches/pool-scale.sh" ]; then
    target "pools: benches/pool-scale.sh's own targets" "exit $POOL_RC" "$([ "$POOL_RC" = 0 ] && echo PASS || echo FAIL)"
fi

CHECK_TABLE="| records | \`lbns check\` wall s | max RSS MiB |
|---:|---:|---:|"
for n in $SIZES; do
    has lbns || break
    CHECK_TABLE="$CHECK_TABLE
| $n | $(awk -v n="$n" '$2 == n { print $3 }' "$CHECKS" | median) | $(mib "$(awk -v n="$n" '$2 == n { print $4 }' "$CHECKS" | median)") |"
done

TARGET_TABLE="| target | measured | result |
|---|---|---|
${TARGETS%
}"

report() {
    echo "# Zone scale: lbns, Knot DNS and NSD loading and reloading large zones"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), lbns $COMMIT (branch $(git rev-parse --abbrev-ref HEAD 2>/dev/null))"
    echo "- command: \`$CMDLINE\`"
    echo "- machine: $(nproc) CPUs, $(uname -sr); load average at start: $LOADAVG_START, at end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- versions: $(has knot && knotd --version 2>&1 | head -1)$(has nsd && echo "; $(nsd -v 2>&1 | head -1)"); dnsperf $(dnsperf -h 2>&1 | sed -n 's/^Version //p' | head -1)"
    echo "- $ROUNDS round(s), medians over rounds; servers started in turn ($SERVERS), one UDP worker each, not pinned"
    echo
    echo "## Targets"
    echo
    echo "$TARGET_TABLE"
    echo
    echo "## Load: start until the last name (h<N-1>) is answered"
    echo
    echo "$LOAD_TABLE"
    echo
    echo "- *load ms*: from the server's start to the first NOERROR answer with an A record for the last name, asked over UDP every 10 ms. *RSS*, *peak* and *PSS*: summed over the server's processes (NSD forks; its PSS splits the pages they share) 1 s after that answer. *vs Knot*: divided by Knot's."
    echo
    echo "## Reload under dnsperf at $RATE qps"
    echo
    echo "$RELOAD_TABLE"
    echo
    echo "- *unchanged*: \`lbns reload\` / \`knotc -b zone-reload\` with the same files; *changed*: the zone file replaced (by rename) with one where h0 has another address and the serial is 2; *new record answered*: from the command's start until h0 is answered with the new address (asked every 10 ms). *peak RSS during*: VmHWM reset (clear_refs) just before the reload, read 2 s after the command returned, with *RSS after*. dnsperf (\`-Q $RATE -t 1 -c 4\`, queries h0, h<N/2>, h<N-1>, SOA) runs from 1 s before the reload to 2 s after; a query unanswered for 1 s is lost."
    if has lbns; then
        echo
        echo "## lbns check"
        echo
        echo "$CHECK_TABLE"
    fi
    if [ -n "$POOL_SECTION" ]; then
        echo
        echo "## Many pools"
        echo
        echo "$POOL_SECTION"
    fi
    echo
    echo "## Every run"
    echo
    echo "Load (round, records, server, load ms, RSS KiB, peak KiB, PSS KiB, processes):"
    echo
    echo '```'
    cat "$LOADS"
    echo '```'
    if [ -s "$RELOADS" ]; then
        echo
        echo "Reload (round, server, kind, command ms, answered ms, peak KiB, RSS after KiB, sent, lost, max latency ms):"
        echo
        echo '```'
        cat "$RELOADS"
        echo '```'
    fi
    if [ -s "$CHECKS" ]; then
        echo
        echo "lbns check (round, records, wall s, max RSS KiB):"
        echo
        echo '```'
        cat "$CHECKS"
        echo '```'
    fi
}
REPORT="$(report)"
echo
echo "$REPORT" | sed -n '/^## Targets/,/^## Every run/p' | sed '$d'
if [ "$WRITE" -eq 1 ]; then
    mkdir -p "$REPO/benches/results"
    echo "$REPORT" >"$REPO/benches/results/zone-scale.md"
    log "wrote benches/results/zone-scale.md"
fi
if [ "$FAILED" -ne 0 ]; then
    log "a target was missed"
    exit 1
fi
log "no target missed"
