#!/usr/bin/env bash
# benches/dnsperf.sh -- side-by-side benchmark of lbns against Knot DNS (knotd), NSD and gdnsd.
#
# What it does, in order:
#   1. installs what is missing from Debian (knot, nsd, gdnsd, dnsperf, bind9-dnsutils), with
#      /usr/sbin/policy-rc.d refusing service starts, so no packaged daemon is ever auto-started;
#   2. builds lbns (`cargo build --release`, with --xdp `--features xdp`) unless --no-build;
#   3. generates, in a temp dir, one zone `cluster.example.` for every server: lbns gets the
#      bundled zones/cluster.example.zone plus the pools of zones/lbns.toml; the peers have no
#      pools, so each pool name becomes static A/AAAA RRsets (same addresses, same TTL) appended to
#      the same zone file;
#   4. checks every config with the daemon's own checker, starts each server in the foreground on
#      its own loopback port, pinned to CPU $SERVER_CPU with one worker/thread (every thread; knotd
#      re-pins its UDP workers itself and is pinned back), and verifies with dig that all of them
#      give the same answers;
#   5. runs dnsperf (pinned to CPU $CLIENT_CPU) at fixed rates (--rates, default 20k, 50k and
#      100k qps) with per-query output (-v), interleaving the servers (lbns, knot, nsd, gdnsd,
#      lbns, ...) for --rounds rounds of --duration seconds per query set and rate: the primary
#      comparison, every server doing the same work per second; each run's latency p99 comes
#      from the per-query times (dnsperf 2.10 prints no percentiles);
#   6. runs dnsperf at maximum throughput, interleaving the servers
#      (lbns, knot, nsd, gdnsd, lbns, ...) for --rounds rounds of --duration seconds, per query set,
#      and measures the server's CPU time (utime+stime from /proc, whole process tree) and its
#      sleeps (voluntary context switches of all its threads) per run;
#      on a shared machine it waits for quiet before each run and repeats runs that other
#      processes disturbed (--noise-limit, --retries, --quiet-wait);
#      (at full load dnsperf's own core is the bottleneck: it uses ~10 s of CPU in every 10 s run,
#      so full-load CPU per query compares servers at different loads; it is reported second);
#   7. prints a markdown table and writes it, with the date and the command line, to
#      benches/results/latest.md;
#   8. on exit (trap) kills every server it started, by PID, and removes the temp dir.
#
# With --xdp, everything runs in a private network namespace (unshare -n: the XDP programs never
# touch the machine's own loopback), and two more servers join: lbns-xdp (lbns with
# `xdp = "lo"`, port 5304) and knot-xdp (knotd with `xdp: listen: lo@5305`), both answering UDP
# through AF_XDP in generic mode (lbns is then built with `--features xdp`, and lbns and lbns-xdp
# are the same binary). One interface holds one XDP program at a time, so each of
# these two is started just before each of its runs and stopped after it (start-up is not
# measured); the others run throughout as without --xdp. knot-xdp counts as a peer.
#
# --floor (with --xdp) adds lbns-floor (port 5306): lbns built with `--features bench-floor`
# (into target/floor), whose AF_XDP worker sends every query back as it came, QR set, without
# answering it. It does everything lbns-xdp does per query but the DNS work, so its CPU per query
# is the floor under any AF_XDP server on this machine and kernel; what lbns-xdp spends above it
# is lbns's own. It is not a peer, its answers are checked only for being echoes, and it is not
# measured by the criterion benches or the tests.
#
# --cookies adds two query sets, static+cookie and pools+cookie: the same queries, each carrying
# a DNS client cookie (dnsperf -E 10:...), as dig and BIND-based resolvers send with every
# query. lbns answers them on its fast path, making a server cookie for each; Knot (without its
# cookies module), gdnsd and NSD (without answer-cookie) ignore the option.
#
# --rrl adds lbns-rrl (port 5307): lbns with response rate limiting on (`[rrl]
# responses_per_second = 1000000`, never reached here), measured like the others: the cost of
# RRL below its limit.
#
# --flood adds, after the rest, runs of lbns-flood (port 5308: `[rrl] responses_per_second = 10,
# slip = 2`, as examples/production.toml) and lbns (RRL off) at each fixed rate from one source
# address: nearly every response is over the limit (half dropped, half sent empty with TC=1),
# and the report compares the server's CPU per query *received* with RRL off.
#
# Usage: benches/dnsperf.sh [--rounds N] [--duration S] [--no-build] [--only lbns,knot,nsd,gdnsd]
#                           [--rates Q1,Q2,...] [--latency-duration S] [--no-full-load]
#                           [--cookies] [--rrl] [--flood] [--clients C]
#                           [--outstanding Q] [--threads T] [--buffer KB] [--edns] [--keep-tmp]
#                           [--no-write] [--results FILE] [--verify-only] [--noise-limit PCT] [--retries N]
#                           [--quiet-wait S] [--xdp [--floor]]
# Environment: SERVER_CPU (default 1) and CLIENT_CPU (default 0) choose the pinning.
#
# The servers listen on 127.0.0.1:5300 (lbns), 5301 (knot), 5302 (nsd), 5303 (gdnsd), UDP and TCP
# (with --xdp also 5304 (lbns-xdp) and 5305 (knot-xdp); with --floor 5306 (lbns-floor)).
# Needs bash (arrays), root only to install missing packages. Nothing is written outside the temp
# dir except target/ (cargo), benches/results/latest.md and, when packages are missing, what
# apt-get installs (and /usr/sbin/policy-rc.d if it did not refuse service starts).
set -euo pipefail

# ---------------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------------
ROUNDS=3            # measured rounds; each round runs every server once per query set
DURATION=10         # seconds per dnsperf run
BUILD=1             # cargo build --release first
ONLY=""            # default: every server
XDP=0              # --xdp: add lbns-xdp and knot-xdp, in a private network namespace
FLOOR=0            # --floor: add lbns-floor (needs --xdp)
RATES="20000,50000,100000"  # fixed rates of the primary comparison (--latency-qps Q: just Q)
LAT_DURATION=""     # seconds of each fixed-rate run (default: --duration)
FULL_LOAD=1         # --no-full-load: skip the full-load runs
COOKIES=0           # --cookies: add the query sets with a client cookie
RRL=0               # --rrl: add lbns-rrl (rate limiting on, below its limit)
FLOOD=0             # --flood: add the one-source flood runs against lbns-flood
COOKIE_OPT="10:0102030405060708"  # dnsperf -E: the client cookie of the +cookie sets
CLIENTS=4           # dnsperf -c: UDP sockets (source ports) it uses
OUTSTANDING=100     # dnsperf -q: queries in flight. 100 keeps one server core busy; at 500 the
                    # first burst overflows the kernel-default (208 KB) UDP receive buffers of
                    # knot and gdnsd (~600 queries lost per run); lbns (8 MB) and NSD (2 MB)
                    # set bigger ones and lose none
THREADS=1           # dnsperf -T: thread pairs (send + receive); on one client core 1 is best
EDNS=0              # dnsperf -e: send an EDNS(0) OPT with every query
BUFFER=""           # dnsperf -b: socket buffer size in KB (default: dnsperf's/kernel's)
KEEP_TMP=0          # keep the temp dir (configs, logs, raw dnsperf outputs) for inspection
VERIFY_ONLY=0       # start the servers, check their answers, print them, stop (no dnsperf)
NOISE_LIMIT=3       # other load (% of a core) above which a run counts as disturbed; p99
                    # latency already suffers at 5-8 %, while an idle machine stays under 2 %
RETRIES=2           # repeat a disturbed run at most this many times
QUIET_WAIT=60       # wait at most this many seconds for a quiet machine before each run
WRITE=1             # write the results file
RESULTS_FILE=""     # --results FILE (default benches/results/latest.md)
SERVER_CPU="${SERVER_CPU:-1}"
CLIENT_CPU="${CLIENT_CPU:-0}"

# The exact command line, shell-quoted, for the results file (kept across the --xdp re-exec).
ARGS=("$@")
CMDLINE="${LBNS_BENCH_CMDLINE:-$(printf '%q ' "$0" "$@")}"
CMDLINE="${CMDLINE% }"

usage() { sed -n '/^# Usage:/,/^# Environment:/p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "dnsperf.sh: error: $*" >&2; exit 1; }
log() { echo "== $*" >&2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS="${2:?--rounds needs a number}"; shift 2 ;;
        --duration) DURATION="${2:?--duration needs seconds}"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --only) ONLY="${2:?--only needs a list}"; shift 2 ;;
        --latency-qps|--rates) RATES="${2:?}"; shift 2 ;;
        --no-full-load) FULL_LOAD=0; shift ;;
        --cookies) COOKIES=1; shift ;;
        --rrl) RRL=1; shift ;;
        --flood) FLOOD=1; shift ;;
        --latency-duration) LAT_DURATION="${2:?}"; shift 2 ;;
        --clients) CLIENTS="${2:?}"; shift 2 ;;
        --outstanding) OUTSTANDING="${2:?}"; shift 2 ;;
        --threads) THREADS="${2:?}"; shift 2 ;;
        --edns) EDNS=1; shift ;;
        --buffer) BUFFER="${2:?}"; shift 2 ;;
        --keep-tmp) KEEP_TMP=1; shift ;;
        --verify-only) VERIFY_ONLY=1; shift ;;
        --noise-limit) NOISE_LIMIT="${2:?}"; shift 2 ;;
        --retries) RETRIES="${2:?}"; shift 2 ;;
        --quiet-wait) QUIET_WAIT="${2:?}"; shift 2 ;;
        --no-write) WRITE=0; shift ;;
        --results) RESULTS_FILE="${2:?--results needs a file}"; shift 2 ;;
        --xdp) XDP=1; shift ;;
        --floor) FLOOR=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done
: "${LAT_DURATION:=$DURATION}"
RATES="${RATES//,/ }"
for r in $RATES; do case "$r" in ''|*[!0-9]*|0) die "--rates: '$r' is not a positive integer" ;; esac; done
[ -n "$RATES" ] || die "--rates needs at least one rate"
for v in ROUNDS DURATION LAT_DURATION CLIENTS OUTSTANDING THREADS SERVER_CPU CLIENT_CPU \
         NOISE_LIMIT RETRIES QUIET_WAIT; do
    case "${!v}" in ''|*[!0-9]*) die "$v must be a non-negative integer, got '${!v}'" ;; esac
done
[ "$ROUNDS" -ge 1 ] && [ "$DURATION" -ge 1 ] || die "--rounds and --duration must be >= 1"
[ "$FLOOR" -eq 0 ] || [ "$XDP" -eq 1 ] || die "--floor needs --xdp"

# Servers in interleaving order, filtered by --only (which may list them in any order).
ALL_SERVERS="lbns knot nsd gdnsd"
[ "$XDP" -eq 1 ] && ALL_SERVERS="lbns lbns-xdp knot knot-xdp nsd gdnsd"
[ "$FLOOR" -eq 1 ] && ALL_SERVERS="lbns lbns-xdp lbns-floor knot knot-xdp nsd gdnsd"
[ "$RRL" -eq 1 ] && ALL_SERVERS="${ALL_SERVERS/lbns /lbns lbns-rrl }"
: "${ONLY:=${ALL_SERVERS// /,}}"
SERVERS=""
for s in $ALL_SERVERS; do
    case ",$ONLY," in *",$s,"*) SERVERS="$SERVERS $s" ;; esac
done
SERVERS="${SERVERS# }"
for s in ${ONLY//,/ }; do
    case " $ALL_SERVERS " in *" $s "*) ;; *) die "--only: unknown server '$s' (known: $ALL_SERVERS)" ;; esac
done
[ -n "$SERVERS" ] || die "--only selected no server"

port_of() {
    case "$1" in lbns) echo 5300 ;; knot) echo 5301 ;; nsd) echo 5302 ;; gdnsd) echo 5303 ;;
                 lbns-xdp) echo 5304 ;; knot-xdp) echo 5305 ;; lbns-floor) echo 5306 ;;
                 lbns-rrl) echo 5307 ;; lbns-flood) echo 5308 ;; esac
}
is_peer() { case "$1" in lbns*) return 1 ;; *) return 0 ;; esac; }
# Servers that attach an XDP program to lo: one at a time, so started around each run.
is_exclusive() { case "$1" in *-xdp|lbns-floor) return 0 ;; *) return 1 ;; esac; }

cd "$(dirname "$0")/.."
REPO="$(pwd)"
# Before anything is written: the report itself would make the tree look dirty.
LBNS_VERSION="$(git -C "$REPO" describe --always --dirty 2>/dev/null) (branch $(git -C "$REPO" rev-parse --abbrev-ref HEAD 2>/dev/null))"
ZONE_SRC="$REPO/zones/cluster.example.zone"
case "$RESULTS_FILE" in "") RESULTS_FILE="$REPO/benches/results/latest.md" ;; /*) ;; *) RESULTS_FILE="$REPO/$RESULTS_FILE" ;; esac
CONF_SRC="$REPO/zones/lbns.toml"
ORIGIN="cluster.example."
LBNS="$REPO/target/release/lbns"
# --floor: its own target dir, so that the ordinary build is neither replaced nor rebuilt.
LBNS_FLOOR="$REPO/target/floor/release/lbns"
lbns_bin() { case "$1" in lbns-floor) echo "$LBNS_FLOOR" ;; *) echo "$LBNS" ;; esac; }

# ---------------------------------------------------------------------------------------------
# 1. Packages. Installed only when missing; never started.
# ---------------------------------------------------------------------------------------------
need=""
have() { command -v "$1" >/dev/null 2>&1; }
have dnsperf || need="$need dnsperf"
have dig || need="$need bind9-dnsutils"
have taskset || need="$need util-linux"
case " $SERVERS " in *" knot "*|*" knot-xdp "*) { have knotd && have knotc; } || need="$need knot" ;; esac
[ "$XDP" -eq 1 ] && { have unshare || need="$need util-linux"; have ip || need="$need iproute2"; }
case " $SERVERS " in *" nsd "*) { have nsd && have nsd-checkconf && have nsd-checkzone; } || need="$need nsd" ;; esac
case " $SERVERS " in *" gdnsd "*) have gdnsd || need="$need gdnsd" ;; esac

# PIDs of packaged daemons running now, to tell afterwards whether apt-get started any.
daemon_pids() { { pgrep -x knotd; pgrep -x nsd; pgrep -x gdnsd; } 2>/dev/null | sort -n || true; }

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

# ---------------------------------------------------------------------------------------------
# 2. Build lbns.
# ---------------------------------------------------------------------------------------------
if [ "$BUILD" -eq 1 ]; then
    # AF_XDP is behind the `xdp` feature (default builds refuse `[server] xdp`).
    LBNS_FEATURES=()
    [ "$XDP" -eq 1 ] && LBNS_FEATURES=(--features xdp)
    log "cargo build --release ${LBNS_FEATURES[*]}"
    cargo build --release "${LBNS_FEATURES[@]}"
    if [ "$FLOOR" -eq 1 ]; then
        log "cargo build --release --features bench-floor --target-dir target/floor"
        cargo build --release --features bench-floor --target-dir "$REPO/target/floor"
    fi
fi
for s in $SERVERS; do
    case "$s" in lbns*) [ -x "$(lbns_bin "$s")" ] || die "$(lbns_bin "$s") missing: build it or drop --no-build" ;; esac
done

# --xdp: the rest runs in a private network namespace with its own loopback, so the XDP programs
# and the sysctls below touch nothing of the machine's.
if [ "$XDP" -eq 1 ] && [ -z "${LBNS_BENCH_NETNS:-}" ]; then
    [ "$(id -u)" -eq 0 ] || die "--xdp needs root (unshare -n, XDP programs)"
    log "re-running in a private network namespace (unshare -n)"
    exec unshare -n env LBNS_BENCH_NETNS=1 LBNS_BENCH_CMDLINE="$CMDLINE" \
        bash "$REPO/benches/dnsperf.sh" "${ARGS[@]}" --no-build
fi
if [ -n "${LBNS_BENCH_NETNS:-}" ]; then
    ip link set lo up
    # A reply sent through AF_XDP carries no route, so the kernel routes it as if it came from
    # outside: from and to 127.0.0.1, a martian unless these allow it (docs/config.md, `xdp`).
    echo 1 >/proc/sys/net/ipv4/conf/lo/route_localnet
    echo 1 >/proc/sys/net/ipv4/conf/lo/accept_local
fi

NCPU="$(nproc)"
if [ "$NCPU" -le "$SERVER_CPU" ] || [ "$NCPU" -le "$CLIENT_CPU" ]; then
    die "CPU $SERVER_CPU or $CLIENT_CPU does not exist ($NCPU CPUs); set SERVER_CPU/CLIENT_CPU"
fi
CLK_TCK="$(getconf CLK_TCK)"
# Other load on the machine skews everything; record it in the results.
LOADAVG_START="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------------------------------------
# Temp dir and cleanup: every server we start is recorded in PID[name] and killed by that PID on exit.
# ---------------------------------------------------------------------------------------------
TMP="$(mktemp -d "${TMPDIR:-/tmp}/lbns-bench.XXXXXX")"
declare -A PID=()
cleanup() {
    local rc=$? s p
    trap - EXIT INT TERM
    # A measurement still running (interrupted): stop it and its dnsperf first.
    if [ -n "${MPID:-}" ]; then
        for p in $(tree_pids "$MPID"); do kill -TERM "$p" 2>/dev/null || true; done
    fi
    for s in "${!PID[@]}"; do
        p="${PID[$s]}"
        if kill -0 "$p" 2>/dev/null; then
            kill -TERM "$p" 2>/dev/null || true
        fi
    done
    # Give them a moment to exit cleanly (NSD reaps its children), then insist.
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        local alive=0
        for p in "${PID[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ "$alive" -eq 0 ] && break
        sleep 0.2
    done
    for p in "${PID[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "$KEEP_TMP" -eq 1 ]; then
        echo "temp dir kept: $TMP" >&2
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir -p "$TMP/zone" "$TMP/queries" "$TMP/runs"

# ---------------------------------------------------------------------------------------------
# 3. Zones and configs.
# ---------------------------------------------------------------------------------------------
# Pools of zones/lbns.toml as "name ttl address" lines, one per backend. A small awk reader for
# the subset of TOML the bundled file uses: in each [[pool]] table, `name = "..."` and `ttl = N`
# at the start of a line, and every quoted string that is an IP address inside `backends`
# (plain strings or `address = "..."` in inline tables; backend labels are never addresses).
pool_backends() {
    awk '
        function flush() { if (name != "") for (i = 1; i <= n; i++) print name, ttl, addr[i]; name = ""; n = 0; ttl = 5 }
        /^[[:space:]]*\[/ { flush(); inpool = ($0 ~ /^[[:space:]]*\[\[pool\]\]/); inback = 0; next }
        !inpool { next }
        { sub(/[[:space:]]#.*$/, ""); sub(/^#.*$/, "") }
        /^[[:space:]]*name[[:space:]]*=/ { s = $0; sub(/^[^"]*"/, "", s); sub(/".*$/, "", s); name = s; if (name !~ /\.$/) name = name "."; next }
        /^[[:space:]]*ttl[[:space:]]*=/ { s = $0; sub(/^[^=]*=[[:space:]]*/, "", s); ttl = s + 0; next }
        /^[[:space:]]*backends[[:space:]]*=/ { inback = 1 }
        inback {
            s = $0
            while (match(s, /"[^"]*"/)) {
                a = substr(s, RSTART + 1, RLENGTH - 2); s = substr(s, RSTART + RLENGTH)
                if (a ~ /^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$/ || (a ~ /:/ && a ~ /^[0-9A-Fa-f:.]+$/)) addr[++n] = a
            }
            if ($0 ~ /\][[:space:]]*$/ && $0 !~ /\{[^}]*\][[:space:]]*$/) inback = 0
        }
        END { flush() }
    ' "$CONF_SRC"
}
POOLS="$TMP/pools.txt"
pool_backends | awk -v o="$ORIGIN" '{ n = tolower($1) } n == o || substr(n, length(n) - length(o)) == "." o' >"$POOLS"
[ -s "$POOLS" ] || die "found no pools inside $ORIGIN in $CONF_SRC"
log "pools from $CONF_SRC (name ttl address):"
sed 's/^/     /' "$POOLS" >&2

# lbns: the bundled zone file as is, and the bundled config with our own [server] table.
mkdir -p "$TMP/lbns"
cp "$ZONE_SRC" "$TMP/lbns/cluster.example.zone"
{
    echo "# generated by benches/dnsperf.sh from $CONF_SRC"
    echo "[server]"
    echo "listen = [\"127.0.0.1:$(port_of lbns)\"]"
    echo "udp_workers = 1"
    echo
    # Everything but the original [server] table (and its keys), zones and pools unchanged.
    awk '/^[[:space:]]*\[/ { skip = ($0 ~ /^[[:space:]]*\[server\]/) } !skip' "$CONF_SRC"
} >"$TMP/lbns/lbns.toml"

# lbns-xdp: the same, on its own port, answering UDP through AF_XDP on lo.
mkdir -p "$TMP/lbns-xdp"
cp "$ZONE_SRC" "$TMP/lbns-xdp/cluster.example.zone"
# Its status listener moves over one port too (both lbns run at once).
sed -e "0,/^listen = .*/s//listen = [\"127.0.0.1:$(port_of lbns-xdp)\"]\nxdp = \"lo\"/" \
    -e 's/^\(listen = .*127\.0\.0\.1:\)8053/\18054/' \
    "$TMP/lbns/lbns.toml" >"$TMP/lbns-xdp/lbns.toml"
# lbns-floor: lbns-xdp's config on the next ports (it runs alone, but beside the shared servers).
mkdir -p "$TMP/lbns-floor"
cp "$ZONE_SRC" "$TMP/lbns-floor/cluster.example.zone"
sed -e "s/127\.0\.0\.1:$(port_of lbns-xdp)/127.0.0.1:$(port_of lbns-floor)/" \
    -e 's/^\(listen = .*127\.0\.0\.1:\)8054/\18055/' \
    "$TMP/lbns-xdp/lbns.toml" >"$TMP/lbns-floor/lbns.toml"

# lbns-rrl and lbns-flood: lbns's config with response rate limiting on, on their own ports.
# The bundled config says `responses_per_second = 0` in its [rrl] table; that line is replaced.
grep -q '^responses_per_second = 0$' "$TMP/lbns/lbns.toml" \
    || die "$CONF_SRC has no \`responses_per_second = 0\` line for --rrl/--flood to replace"
rrl_variant() { # name rate slip
    mkdir -p "$TMP/$1"
    cp "$ZONE_SRC" "$TMP/$1/cluster.example.zone"
    sed -e "s/127\.0\.0\.1:$(port_of lbns)/127.0.0.1:$(port_of "$1")/" \
        -e "s/^\(listen = .*127\.0\.0\.1:\)8053/\1$(( 8050 + $(port_of "$1") - 5300 ))/" \
        -e "s/^responses_per_second = 0\$/responses_per_second = $2\nslip = $3/" \
        "$TMP/lbns/lbns.toml" >"$TMP/$1/lbns.toml"
}
rrl_variant lbns-rrl 1000000 2
rrl_variant lbns-flood 10 2

# Peers: the bundled zone plus every pool as static RRsets with the pool TTL. The zone file has
# no A/AAAA/CNAME at pool names (lbns rejects that), so this adds no conflicting data.
PEER_ZONE="$TMP/zone/cluster.example.zone"
{
    cat "$ZONE_SRC"
    echo
    echo "; --- lbns pools from lbns.toml, as static RRsets (added by benches/dnsperf.sh) ---"
    awk '{ print $1 "\t" $2 "\tIN\t" (index($3, ":") ? "AAAA" : "A") "\t" $3 }' "$POOLS"
} >"$PEER_ZONE"

# Knot DNS: everything (rundir, databases, control socket, pid file) inside the temp dir;
# zone file loaded whole and never written back, no journal.
mkdir -p "$TMP/knot/db"
cat >"$TMP/knot/knot.conf" <<EOF
server:
    rundir: "$TMP/knot"
    pidfile: "$TMP/knot/knot.pid"
    listen: 127.0.0.1@$(port_of knot)
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "$TMP/knot/db"
control:
    listen: "$TMP/knot/knot.sock"
log:
  - target: stderr
    any: info
template:
  - id: default
    storage: "$TMP/knot/db"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
    semantic-checks: on
zone:
  - domain: $ORIGIN
    file: "$PEER_ZONE"
EOF

# knot-xdp: the same Knot configuration on its own port and directories, plus XDP on lo.
# route-check off is Knot's default, written out because the report names it: no route lookup
# per reply.
mkdir -p "$TMP/knot-xdp/db"
sed -e "s|$TMP/knot|$TMP/knot-xdp|g" -e "s|@$(port_of knot)\$|@$(port_of knot-xdp)|" \
    "$TMP/knot/knot.conf" | awk -v port="$(port_of knot-xdp)" '
        { print }
        /^    background-workers:/ { print "xdp:\n    listen: lo@" port "\n    route-check: off" }
    ' >"$TMP/knot-xdp/knot.conf"

# NSD: no database file, no privilege drop, no remote control; every path in the temp dir.
# minimal-responses: NSD otherwise adds the apex NS RRset (and glue) to every positive answer,
# which Knot, gdnsd and lbns do not: it would compare different response sizes.
mkdir -p "$TMP/nsd/xfr"
cat >"$TMP/nsd/nsd.conf" <<EOF
server:
    ip-address: 127.0.0.1@$(port_of nsd)
    server-count: 1
    tcp-count: 16
    username: ""
    chroot: ""
    zonesdir: "$TMP/zone"
    database: ""
    zonelistfile: "$TMP/nsd/zone.list"
    xfrdfile: "$TMP/nsd/xfrd.state"
    xfrdir: "$TMP/nsd/xfr"
    pidfile: "$TMP/nsd/nsd.pid"
    logfile: "$TMP/nsd/nsd.log"
    verbosity: 1
    minimal-responses: yes
    # Debian builds NSD with response rate limiting on (200 qps per /24 by default): a benchmark
    # from 127.0.0.1 would measure the rate limiter. Off, like the other servers' defaults.
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
remote-control:
    control-enable: no
zone:
    name: $ORIGIN
    zonefile: "$PEER_ZONE"
EOF

# gdnsd: config dir with `config` and `zones/<zone name>`; run_dir (control socket, lock) and
# state_dir inside the temp dir.
mkdir -p "$TMP/gdnsd/zones" "$TMP/gdnsd/run" "$TMP/gdnsd/state"
cp "$PEER_ZONE" "$TMP/gdnsd/zones/${ORIGIN%.}"
cat >"$TMP/gdnsd/config" <<EOF
options => {
    listen => [ 127.0.0.1:$(port_of gdnsd) ]
    udp_threads => 1
    tcp_threads => 1
    run_dir => "$TMP/gdnsd/run"
    state_dir => "$TMP/gdnsd/state"
}
EOF

# Each daemon's own checker, so a config or zone mistake is reported as the daemon sees it.
check() {
    local name="$1"; shift
    if ! "$@" >"$TMP/$name.check.log" 2>&1; then
        cat "$TMP/$name.check.log" >&2
        die "$name: configuration check failed: $*"
    fi
}
for s in $SERVERS; do
    case "$s" in
        lbns*) check "$s" "$(lbns_bin "$s")" check --config "$TMP/$s/lbns.toml" ;;
        knot) check knot knotc -c "$TMP/knot/knot.conf" conf-check
              check knot-zone knotc -c "$TMP/knot/knot.conf" zone-check ;;
        knot-xdp) check knot-xdp knotc -c "$TMP/knot-xdp/knot.conf" conf-check ;;
        nsd) check nsd nsd-checkconf "$TMP/nsd/nsd.conf"
             check nsd-zone nsd-checkzone "$ORIGIN" "$PEER_ZONE" ;;
        gdnsd) check gdnsd gdnsd -c "$TMP/gdnsd" checkconf ;;
    esac
done
log "configuration checks passed for: $SERVERS"

# ---------------------------------------------------------------------------------------------
# 4. Start the servers (foreground, pinned, one worker) and check them.
# ---------------------------------------------------------------------------------------------
start_server() {
    local s="$1" port; port="$(port_of "$s")"
    # The port must be free: another process there would be measured instead of ours.
    if ss -Hlnu "sport = :$port" 2>/dev/null | grep -q .; then
        die "UDP port $port (for $s) is already in use"
    fi
    # taskset execs the daemon, so $! is the daemon's own PID.
    case "$s" in
        lbns*) taskset -c "$SERVER_CPU" "$(lbns_bin "$s")" serve --config "$TMP/$s/lbns.toml" \
                                    >"$TMP/$s.log" 2>&1 & ;;
        knot) taskset -c "$SERVER_CPU" knotd -c "$TMP/knot/knot.conf" >"$TMP/knot.log" 2>&1 & ;;
        knot-xdp) taskset -c "$SERVER_CPU" knotd -c "$TMP/knot-xdp/knot.conf" >"$TMP/knot-xdp.log" 2>&1 & ;;
        nsd) taskset -c "$SERVER_CPU" nsd -d -c "$TMP/nsd/nsd.conf" >"$TMP/nsd.stderr.log" 2>&1 & ;;
        gdnsd) taskset -c "$SERVER_CPU" gdnsd -c "$TMP/gdnsd" start >"$TMP/gdnsd.log" 2>&1 & ;;
    esac
    PID[$s]=$!
}

server_log() {
    case "$1" in nsd) cat "$TMP/nsd.stderr.log" "$TMP/nsd/nsd.log" 2>/dev/null ;; *) cat "$TMP/$1.log" ;; esac
}

DIG=(dig +norec +time=1 +tries=1)
wait_ready() {
    local s="$1" port; port="$(port_of "$s")"
    for _ in $(seq 1 50); do
        kill -0 "${PID[$s]}" 2>/dev/null || { server_log "$s" >&2; die "$s exited at startup"; }
        if "${DIG[@]}" @127.0.0.1 -p "$port" "$ORIGIN" SOA 2>/dev/null | grep -q 'status: NOERROR'; then
            return 0
        fi
        sleep 0.2
    done
    server_log "$s" >&2
    die "$s does not answer on 127.0.0.1:$port"
}

# The servers that run throughout; the exclusive ones (XDP) come and go with their runs.
SHARED=""
for s in $SERVERS; do is_exclusive "$s" || SHARED="$SHARED $s"; done
SHARED="${SHARED# }"
for s in $SHARED; do
    start_server "$s"
done
# The PIDs of a process and all its descendants (NSD forks: the PID we started becomes its xfrd
# process, with "nsd: main" as child and the "nsd: server N" workers below that).
tree_pids() {
    local root="$1" f line
    for f in /proc/[0-9]*/stat; do
        { read -r line <"$f"; } 2>/dev/null || continue
        echo "${f#/proc/} ${line##*) }"
    done | awk -v root="$root" '
        { split($1, p, "/"); ppid[p[1]] = $3 }
        END { for (pid in ppid) { q = pid; while (q != "" && q != root && q > 1) q = ppid[q]; if (q == root) print pid } }'
}

# Every thread of every process of the server must stay on SERVER_CPU. taskset at exec time is
# not enough: knotd pins each UDP worker thread itself (worker i -> CPU i mod ncpus, no option to
# turn it off), which would put its only UDP worker on CPU 0, beside dnsperf. So re-pin all
# threads (`taskset -a`) after start-up, and check before every run that none has moved.
pin_tree() {
    local p
    for p in $(tree_pids "$1"); do taskset -a -p -c "$SERVER_CPU" "$p" >/dev/null 2>&1 || true; done
}
check_pinned() { # server -> warns and re-pins if any thread runs elsewhere
    local s="$1" p t bad=""
    for p in $(tree_pids "${PID[$s]}"); do
        for t in /proc/"$p"/task/*; do
            [ "$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' "$t/status" 2>/dev/null)" = "$SERVER_CPU" ] \
                || bad="$bad ${t##*/}($(cat "$t/comm" 2>/dev/null))"
        done
    done
    if [ -n "$bad" ]; then
        log "$s: threads not on CPU $SERVER_CPU:$bad; re-pinning"
        pin_tree "${PID[$s]}"
    fi
}

ready() {
    local s="$1"
    wait_ready "$s"
    pin_tree "${PID[$s]}"
    check_pinned "$s"
    log "$s is up: pid ${PID[$s]}, 127.0.0.1:$(port_of "$s"), $(tree_pids "${PID[$s]}" | wc -l) process(es), $(cat /proc/"${PID[$s]}"/task/*/stat 2>/dev/null | wc -l) thread(s) in the first, all on CPU $SERVER_CPU"
}
for s in $SHARED; do
    ready "$s"
done

# An exclusive server is started before each of its runs and stopped after it; it must be gone
# (its XDP program detached) before the next one starts. No-ops for the others.
bring_up() {
    is_exclusive "$1" || return 0
    start_server "$1"
    ready "$1"
}
take_down() {
    local s="$1" p
    is_exclusive "$s" || return 0
    p="${PID[$s]}"
    kill -TERM "$p" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    unset "PID[$s]"
    # knotd leaves its program attached when it exits (to reuse it next time); lbns's goes with
    # it. Either way nothing may stay on lo: generic XDP would tax every packet of the next runs.
    if ip link show dev lo | grep -q xdp; then
        [ "$s" = knot-xdp ] || die "$s left an XDP program on lo: $(ip link show dev lo | grep xdp)"
        ip link set dev lo xdpgeneric off
    fi
}

# Query sets. (a) static: names from the zone file, including the apex MX and TXT and names that
# do not exist (NXDOMAIN); (b) pools: the load-balanced names (static RRsets on the peers).
cat >"$TMP/queries/static" <<EOF
ns1.$ORIGIN A
ns2.$ORIGIN A
mail.$ORIGIN A
mail.$ORIGIN AAAA
$ORIGIN MX
$ORIGIN TXT
nope.$ORIGIN A
nx1.$ORIGIN A
nx2.$ORIGIN AAAA
missing.$ORIGIN MX
EOF
awk '{ print $1 " " (index($3, ":") ? "AAAA" : "A") }' "$POOLS" | awk '!seen[$0]++' >"$TMP/queries/pools"
SETS="static pools"
# The +cookie sets are the same files, sent with a client cookie (see set_args).
[ "$COOKIES" -eq 1 ] && SETS="static pools static+cookie pools+cookie"
log "query sets:"
for q in $SETS; do echo "     $q: $(tr '\n' ';' <"$TMP/queries/${q%+cookie}")" >&2; done

# Correctness before measuring. For every query of both sets, each server must answer with AA,
# and: static queries get exactly the same rcode and answer RRsets (sorted, with TTLs) on every
# server; pool queries get NOERROR with a non-empty answer whose addresses (over several queries,
# since lbns rotates and may cap the count) are all in the pool, and the union over the queries
# must be the whole pool on every server.
answer_of() { # server name type -> "status" line then sorted answer and authority records
    local port; port="$(port_of "$1")"
    local out; out="$("${DIG[@]}" @127.0.0.1 -p "$port" +noall +comments +answer +authority "$2" "$3")" || return 1
    local flags; flags="$(sed -n 's/^;; flags: \([^;]*\);.*/\1/p' <<<"$out")"
    case " $flags " in *" aa "*) ;; *) echo "NO-AA"; return 0 ;; esac
    sed -n 's/.*status: \([A-Z]*\),.*/\1/p' <<<"$out"
    { grep -v '^;' <<<"$out" | grep . || true; } | awk '{ $1 = tolower($1); print }' | sort
}
verify() {
    local bad=0 s ref refs name type got expected union
    log "verifying answers"
    # dig as the brief shows it, for the log.
    for s in $SERVERS; do
        echo "     $s: dig @127.0.0.1 -p $(port_of "$s") www.$ORIGIN A -> $("${DIG[@]}" @127.0.0.1 -p "$(port_of "$s")" +short "www.$ORIGIN" A | sort | tr '\n' ' ')" >&2
    done
    while read -r name type; do
        ref=""
        for s in $SERVERS; do
            got="$(answer_of "$s" "$name" "$type")" || { echo "  $s: no answer to $name $type" >&2; bad=1; continue; }
            [ "$got" != NO-AA ] || { echo "  $s: $name $type: answer without AA" >&2; bad=1; continue; }
            if [ -z "$ref" ]; then ref="$got"; refs="$s"; continue; fi
            if [ "$got" != "$ref" ]; then
                echo "  $name $type: $s differs from $refs:" >&2
                diff <(echo "$ref") <(echo "$got") | sed 's/^/    /' >&2
                bad=1
            fi
        done
    done <"$TMP/queries/static"
    while read -r name type; do
        expected="$(awk -v n="$name" -v t="$type" 'tolower($1) == tolower(n) && ((t == "AAAA") == (index($3, ":") > 0)) { print $3 }' "$POOLS" | sort -u)"
        for s in $SERVERS; do
            union=""
            for _ in $(seq 1 "$(( $(wc -l <<<"$expected") * 2 ))"); do
                got="$(answer_of "$s" "$name" "$type")" || { bad=1; break; }
                if [ "$(head -1 <<<"$got")" != NOERROR ] || [ "$(wc -l <<<"$got")" -lt 2 ]; then
                    echo "  $s: $name $type: expected NOERROR with addresses, got: $(tr '\n' ' ' <<<"$got")" >&2
                    bad=1; break
                fi
                union="$(printf '%s\n%s\n' "$union" "$(tail -n +2 <<<"$got" | awk '{ print $NF }')" | grep . | sort -u)"
            done
            if [ "$union" != "$expected" ]; then
                echo "  $s: $name $type: addresses {$(tr '\n' ' ' <<<"$union")} != pool {$(tr '\n' ' ' <<<"$expected")}" >&2
                bad=1
            fi
        done
    done <"$TMP/queries/pools"
    [ "$bad" -eq 0 ] || die "servers do not answer alike; see above (logs in $TMP, use --keep-tmp)"
    log "all servers answer alike"
}
# lbns-floor answers nothing: every query must come back as itself with only QR added (no AA,
# no records, rcode 0), or the floor would be measuring something else.
verify_floor() {
    local bad=0 name type out
    log "verifying that lbns-floor sends every query back unanswered"
    while read -r name type; do
        out="$("${DIG[@]}" @127.0.0.1 -p "$(port_of lbns-floor)" +noedns +noadflag "$name" "$type")" \
            || { echo "  lbns-floor: no reply to $name $type" >&2; bad=1; continue; }
        if ! grep -q '^;; flags: qr; QUERY: 1, ANSWER: 0, AUTHORITY: 0, ADDITIONAL: 0$' <<<"$out" \
            || ! grep -q 'status: NOERROR,' <<<"$out" \
            || ! grep -qi "^;$name[[:space:]]*IN[[:space:]]*$type\$" <<<"$out"; then
            echo "  lbns-floor: $name $type: not the query sent back:" >&2
            sed 's/^/    /' <<<"$out" >&2
            bad=1
        fi
    done < <(cat "$TMP/queries/static" "$TMP/queries/pools")
    [ "$bad" -eq 0 ] || die "lbns-floor does not echo queries (built without --features bench-floor?)"
}
# The shared servers together, then each exclusive one beside them (the SERVERS=... prefix
# holds for that one call only).
[ -z "$SHARED" ] || SERVERS="$SHARED" verify
for s in $SERVERS; do
    is_exclusive "$s" || continue
    bring_up "$s"
    if [ "$s" = lbns-floor ]; then verify_floor; else SERVERS="$SHARED $s" verify; fi
    take_down "$s"
done
if [ "$VERIFY_ONLY" -eq 1 ]; then
    # Show every server's full answer to every query of both sets, then stop.
    for s in $SERVERS; do
        bring_up "$s"
        echo "### $s (127.0.0.1:$(port_of "$s"))"
        cat "$TMP/queries/static" "$TMP/queries/pools" | while read -r name type; do
            "${DIG[@]}" @127.0.0.1 -p "$(port_of "$s")" +nocmd +nostats +noquestion "$name" "$type" \
                | grep -v '^;; Got answer\|^$\|OPT PSEUDOSECTION\|^; EDNS'
        done
        take_down "$s"
    done
    exit 0
fi

# ---------------------------------------------------------------------------------------------
# 5. Measurement helpers.
# ---------------------------------------------------------------------------------------------
# CPU clock ticks (utime+stime, plus cutime+cstime of reaped children) of a process and all its
# live descendants: NSD does its work in a forked child; the threaded servers are one process.
# /proc/PID/stat: field 2 (comm) may hold spaces, so cut at the last ') ' first and prefix the
# path; the awk fields are then: $1 "PID/stat", $2 state, $3 ppid, ..., $13 utime, $14 stime,
# $15 cutime, $16 cstime (proc(5) fields 14-17). Bash's `read` keeps this fork-free.
cpu_ticks() {
    local root="$1" f line
    for f in /proc/[0-9]*/stat; do
        { read -r line <"$f"; } 2>/dev/null || continue
        echo "${f#/proc/} ${line##*) }"
    done | awk -v root="$root" '
        { split($1, p, "/"); pid = p[1]; ppid[pid] = $3; t[pid] = $13 + $14 + $15 + $16 }
        END {
            for (pid in t) {
                q = pid
                while (q != "" && q != root && q != 0 && q != 1) q = ppid[q]
                if (q == root) sum += t[pid]
            }
            print sum + 0
        }'
}

# Ticks of the children this (sub)shell has reaped: cutime+cstime of /proc/$BASHPID/stat, into
# the variable REAPED. Not a command substitution: that would read a new subshell's own counters.
reaped_ticks() {
    local line; read -r line <"/proc/$BASHPID/stat"
    local -a f; read -r -a f <<<"${line##*) }"
    REAPED=$(( f[13] + f[14] ))   # proc(5) fields 16 (cutime) and 17 (cstime)
}

# Whole-machine ticks from /proc/stat: "busy steal", busy = user+nice+system+irq+softirq.
machine_ticks() {
    local cpu user nice system idle iowait irq softirq steal rest
    read -r cpu user nice system idle iowait irq softirq steal rest </proc/stat
    echo "$(( user + nice + system + irq + softirq )) $steal"
}

# Voluntary context switches of every thread of a process and its descendants: each is a sleep
# (waiting for a query), so a wake-up follows each one. Per query they show how well a server
# batches: on a VM every sleep and every wake-up of the other side costs an exit to the hypervisor.
sleeps() {
    local p
    for p in $(tree_pids "$1"); do cat /proc/"$p"/task/*/status 2>/dev/null; done |
        awk '/^voluntary_ctxt_switches:/ { n += $2 } END { print n + 0 }'
}

# Value of a dnsperf statistics line, e.g. field "Queries per second:".
stat_of() { # file label [field-number after the colon]
    awk -v l="$2" -v n="${3:-1}" 'index($0, l) { s = substr($0, index($0, l) + length(l)); split(s, a, " "); print a[n]; exit }' "$1"
}

# -t 2: a query unanswered after 2 s is lost; -O suppress: no line per timed-out query.
DNSPERF_COMMON=(-s 127.0.0.1 -c "$CLIENTS" -T "$THREADS" -q "$OUTSTANDING" -t 2
                -O suppress=timeouts,congestion)
[ -n "$BUFFER" ] && DNSPERF_COMMON+=(-b "$BUFFER")
[ "$EDNS" -eq 1 ] && DNSPERF_COMMON+=(-e)

# One dnsperf run against server $1 with query set $2, raw output to $3, more dnsperf options
# after that. Must run in its own subshell (it measures the subshell's reaped children).
# Prints: answered lost qps runtime resp_bytes server_s client_s other_s steal_s sleeps
#   server_s  CPU of the server's process tree during the run
#   client_s  CPU of dnsperf
#   other_s   everything else the machine did meanwhile (other processes, interrupts not charged
#             to ours): a measure of interference, should be near 0
#   steal_s   time the hypervisor gave our CPUs to someone else
#   sleeps    voluntary context switches of the server's threads during the run (see sleeps)
measure() {
    local s="$1" set="$2" out="$3"; shift 3
    local t0 t1 c0 c1 m0 m1 v0 v1
    v0="$(sleeps "${PID[$s]}")"
    t0="$(cpu_ticks "${PID[$s]}")"
    reaped_ticks; c0="$REAPED"
    m0="$(machine_ticks)"
    local -a set_args=(-d "$TMP/queries/${set%+cookie}")
    case "$set" in *+cookie) set_args+=(-E "$COOKIE_OPT") ;; esac
    taskset -c "$CLIENT_CPU" dnsperf "${DNSPERF_COMMON[@]}" -p "$(port_of "$s")" \
        "${set_args[@]}" "$@" >"$out" 2>&1 \
        || { tail -20 "$out" >&2; die "dnsperf failed against $s"; }
    m1="$(machine_ticks)"
    reaped_ticks; c1="$REAPED"
    t1="$(cpu_ticks "${PID[$s]}")"
    v1="$(sleeps "${PID[$s]}")"
    kill -0 "${PID[$s]}" 2>/dev/null || { server_log "$s" >&2; die "$s died during the run"; }
    grep -q 'Queries per second:' "$out" || { tail -20 "$out" >&2; die "no statistics from dnsperf against $s"; }
    echo "$(stat_of "$out" "Queries completed:") $(stat_of "$out" "Queries lost:")" \
         "$(stat_of "$out" "Queries per second:") $(stat_of "$out" "Run time (s):")" \
         "$(stat_of "$out" "Average packet size:" 4)" \
         "$(awk -v s=$((t1 - t0)) -v c=$((c1 - c0)) -v m0="$m0" -v m1="$m1" -v hz="$CLK_TCK" 'BEGIN {
               split(m0, a, " "); split(m1, b, " "); busy = b[1] - a[1]; steal = b[2] - a[2]
               o = busy - s - c; if (o < 0) o = 0
               printf "%.3f %.3f %.3f %.3f", s / hz, c / hz, o / hz, steal / hz }') $((v1 - v0))"
}

# Fixed-rate run with per-query output. dnsperf 2.10 prints no percentiles and has no
# latency-histogram option, but -v prints one line per query: "> RCODE name type latency-in-s"
# ("> T ..." for a timed-out query, without latency). Percentiles are over answered queries.
# Prints what measure prints, then: avg_us p50_us p99_us max_us
measure_latency() {
    local s="$1" set="$2" out="$3" rate="$4"
    measure "$s" "$set" "$out" -l "$LAT_DURATION" -Q "$rate" -v | tr '\n' ' '
    awk '/^> / && $2 != "T" { print $NF }' "$out" | sort -g >"$out.sorted"
    local n; n="$(wc -l <"$out.sorted")"
    [ "$n" -gt 0 ] || die "no per-query latencies in dnsperf -v output for $s (format changed?)"
    awk -v n="$n" '
        function idx(p) { i = int(p * n + 0.999999); return i < 1 ? 1 : i }  # nearest rank
        { v[NR] = $1; sum += $1 }
        END { printf "%.0f %.0f %.0f %.0f\n", sum / n * 1e6, v[idx(0.50)] * 1e6, v[idx(0.99)] * 1e6, v[n] * 1e6 }
    ' "$out.sorted"
    rm -f "$out.sorted"
}

# Run a measurement in a background subshell (it needs its own subshell anyway, see measure) and
# wait for it: unlike a foreground command, `wait` returns at once when a signal arrives, so ^C
# stops the benchmark and the EXIT trap kills the run (MPID) with its dnsperf. Output in $m.
MPID=""
in_background() {
    ( "$@" ) >"$TMP/measure.out" &
    MPID=$!
    wait "$MPID" || exit 1
    MPID=""
    m="$(cat "$TMP/measure.out")"
}

# This machine may be shared: anything else running during a run steals CPU from dnsperf or the
# server and distorts qps and latency (CPU µs/query much less). So before each run wait (at most
# --quiet-wait seconds) for a second in which the machine is idle but for NOISE_LIMIT % of a core
# (our idle servers use ~0), and repeat a run (at most --retries times) when measure reports
# other load above NOISE_LIMIT % of a core. Runs still over the limit are flagged in the report.
wait_quiet() {
    local waited=0 m0 m1
    while :; do
        m0="$(machine_ticks)"; sleep 1; m1="$(machine_ticks)"
        if awk -v a="${m0% *}" -v b="${m1% *}" -v hz="$CLK_TCK" -v lim="$NOISE_LIMIT" \
               'BEGIN { exit !((b - a) / hz * 100 <= lim) }'; then
            return 0
        fi
        waited=$((waited + 1))
        if [ "$waited" -ge "$QUIET_WAIT" ]; then
            log "the machine is still busy after ${QUIET_WAIT}s (other processes); measuring anyway"
            return 0
        fi
    done
}
guarded_run() { # server measure-function args... -> $m
    local s="$1" attempt=0 pct; shift
    while :; do
        wait_quiet
        check_pinned "$s"
        in_background "$@"
        # other_s / runtime: fields 8 and 4 of measure's output.
        pct="$(awk '{ printf "%.0f", ($4 > 0 ? $8 / $4 * 100 : 0) }' <<<"$m")"
        [ "$pct" -gt "$NOISE_LIMIT" ] || return 0
        attempt=$((attempt + 1))
        if [ "$attempt" -gt "$RETRIES" ]; then
            log "$s: other load was ${pct}% of a core during the run; keeping it (flagged)"
            return 0
        fi
        log "$s: other load was ${pct}% of a core during the run; repeating it ($attempt/$RETRIES)"
        echo "$s" >>"$TMP/repeated"
    done
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# ---------------------------------------------------------------------------------------------
# 6. Runs.
# ---------------------------------------------------------------------------------------------
# Each row: server set round answered lost qps runtime resp server_s client_s other_s steal_s
#           cpu_us_per_query server_cpu_pct sleeps_per_query [avg_us p50_us p99_us max_us]
RESULTS="$TMP/results.tsv"     # full-load runs
rate_file() { echo "$TMP/rate.$1.tsv"; }  # fixed-rate runs at rate $1
FLOODS="$TMP/flood.tsv"        # --flood runs (round = rate)
: >"$RESULTS"; : >"$FLOODS"
for r in $RATES; do : >"$(rate_file "$r")"; done
row() { # round server set measured-fields... -> TSV: the first 9 fields, then CPU µs/query, CPU %
      # and sleeps per query (from the 10th), then the rest
    local round="$1" s="$2" set="$3"; shift 3
    awk -v r="$round" -v s="$s" -v q="$set" '{
        a = $1; rt = $4; cpu = $6
        printf "%s\t%s\t%s", s, q, r
        for (i = 1; i <= 9; i++) printf "\t%s", $i
        printf "\t%.3f\t%.1f\t%.3f", (a > 0 ? cpu * 1e6 / a : 0), (rt > 0 ? cpu / rt * 100 : 0), (a > 0 ? $10 / a : 0)
        for (i = 11; i <= NF; i++) printf "\t%s", $i
        print ""
    }' <<<"$*"
}
nsets=$(wc -w <<<"$SETS")
nservers=$(wc -w <<<"$SERVERS")

# The primary comparison: every server at the same fixed rates. One fixed-rate run is too noisy
# for a p99 on a shared machine: interleaved rounds, medians.
nruns=$(( ROUNDS * nsets * nservers * $(wc -w <<<"$RATES") ))
log "fixed rates: $RATES qps for ${LAT_DURATION}s each, $ROUNDS round(s) x $nsets query set(s) x [$SERVERS] ($nruns runs, ~$(( nruns * (LAT_DURATION + 3) ))s; dnsperf -v, p99 from per-query times)"
for round in $(seq 1 "$ROUNDS"); do
    for rate in $RATES; do
        for set in $SETS; do
            for s in $SERVERS; do
                bring_up "$s"
                guarded_run "$s" measure_latency "$s" "$set" "$TMP/runs/$s.$set.$rate.$round.txt" "$rate"
                take_down "$s"
                row "$round" "$s" "$set" "$m" | tee -a "$(rate_file "$rate")" | awk -F'\t' -v r="$rate" '{
                    printf "   round %s %6d qps %-10s %-12s %6.0f qps  lost %5d  avg %5d us  p99 %6d us  server %6.2f us/query, %4.2f sleeps/query  (other %4.2fs, steal %4.2fs)\n",
                        $3, r, $1, $2, $6, $5, $16, $18, $13, $15, $11, $12 }' >&2
            done
        done
    done
done

if [ "$FULL_LOAD" -eq 1 ]; then
    nruns=$(( ROUNDS * nsets * nservers ))
    log "full load: $ROUNDS round(s) x $nsets query set(s) x [$SERVERS], ${DURATION}s each ($nruns runs, ~$(( nruns * (DURATION + 2) ))s)"
    i=0
    for round in $(seq 1 "$ROUNDS"); do
        for set in $SETS; do
            for s in $SERVERS; do
                i=$((i + 1))
                bring_up "$s"
                guarded_run "$s" measure "$s" "$set" "$TMP/runs/$s.$set.$round.txt" -l "$DURATION"
                take_down "$s"
                row "$round" "$s" "$set" "$m" | tee -a "$RESULTS" | awk -F'\t' -v i="$i" -v n="$nruns" '{
                    printf "   [%d/%d] round %s %-10s %-12s %8.0f qps  lost %5d  server %5.2fs = %5.1f%% of a core, %6.2f us/query  (dnsperf %4.1fs, other %4.2fs, steal %4.2fs)\n",
                        i, n, $3, $2, $1, $6, $5, $9, $14, $13, $10, $11, $12 }' >&2
            done
        done
    done
fi

# --flood: one source address sends the static set at each fixed rate to lbns-flood (limit 10
# per second per name: nearly every response over it) and to lbns (no limit), with the same
# dnsperf options. Dropped responses time out in dnsperf after 250 ms, so up to a quarter
# second's worth are outstanding: -q is raised to hold them. The measure is the server's CPU per
# query received (answered + lost).
if [ "$FLOOD" -eq 1 ]; then
    start_server lbns-flood
    ready lbns-flood
    case " $SERVERS " in *" lbns "*) ;; *) start_server lbns; ready lbns ;; esac
    log "flood: $RATES qps from one source for ${LAT_DURATION}s, $ROUNDS round(s), lbns and lbns-flood"
    for round in $(seq 1 "$ROUNDS"); do
        for rate in $RATES; do
            for s in lbns lbns-flood; do
                guarded_run "$s" measure "$s" static "$TMP/runs/$s.flood.$rate.$round.txt" \
                    -l "$LAT_DURATION" -Q "$rate" -q "$(( rate / 8 + 1000 ))" -t 0.25
                row "$rate" "$s" static "$m" | tee -a "$FLOODS" | awk -F'\t' '{
                    printf "   round %s qps %-10s sent %8d  answered %8d  lost %8d  server %5.2fs = %6.2f us per query received\n",
                        $3, $1, $4 + $5, $4, $5, $9, ($4 + $5 > 0 ? $9 * 1e6 / ($4 + $5) : 0) }' >&2
            done
        done
    done
fi

# ---------------------------------------------------------------------------------------------
# 7. Report.
# ---------------------------------------------------------------------------------------------
# Values of one column for a server and query set, one per run: only the undisturbed runs (other
# load <= NOISE_LIMIT) when there is any, else all of them.
col() { # file server set column
    awk -F'\t' -v s="$2" -v q="$3" -v c="$4" -v lim="$NOISE_LIMIT" '
        $1 == s && $2 == q { all[++n] = $c; if ($11 / $7 * 100 <= lim) clean[++k] = $c }
        END { if (k) for (i = 1; i <= k; i++) print clean[i]; else for (i = 1; i <= n; i++) print all[i] }' "$1"
}
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# ⚠ when every run of this server and set in the file was disturbed.
flag() { # file server set
    awk -F'\t' -v s="$2" -v q="$3" -v lim="$NOISE_LIMIT" '
        $1 == s && $2 == q { n++; if ($11 / $7 * 100 <= lim) k++ } END { if (n && !k) printf " ⚠" }' "$1"
}
declare -A MQPS MCPU MLOST MPCT MRESP MSLEEP RCPU RQPS RP99 RLOST RSLEEP
for set in $SETS; do
    for s in $SERVERS; do
        if [ "$FULL_LOAD" -eq 1 ]; then
            MQPS[$s.$set]="$(col "$RESULTS" "$s" "$set" 6 | median)"
            MCPU[$s.$set]="$(col "$RESULTS" "$s" "$set" 13 | median)"
            MPCT[$s.$set]="$(col "$RESULTS" "$s" "$set" 14 | median)"
            MSLEEP[$s.$set]="$(col "$RESULTS" "$s" "$set" 15 | median)"
            MLOST[$s.$set]="$(awk -F'\t' -v s="$s" -v q="$set" '$1 == s && $2 == q { t += $5 } END { print t + 0 }' "$RESULTS")"
        fi
        MRESP[$s.$set]="$(col "$(rate_file "${RATES%% *}")" "$s" "$set" 8 | median)"
        for r in $RATES; do
            f="$(rate_file "$r")"
            RCPU[$s.$set.$r]="$(col "$f" "$s" "$set" 13 | median)"
            RQPS[$s.$set.$r]="$(col "$f" "$s" "$set" 6 | median)"
            RP99[$s.$set.$r]="$(col "$f" "$s" "$set" 18 | median)$(flag "$f" "$s" "$set")"
            RSLEEP[$s.$set.$r]="$(col "$f" "$s" "$set" 15 | median)"
            RLOST[$s.$set.$r]="$(awk -F'\t' -v s="$s" -v q="$set" '$1 == s && $2 == q { t += $5 } END { print t + 0 }' "$f")"
        done
    done
done

# Lowest value among the peers of an associative array for a key suffix ("" if no peer ran).
best_peer() { # array-name key-suffix (set, or set.rate)
    local -n arr="$1"; local best="" s
    for s in $SERVERS; do
        is_peer "$s" || continue
        if [ -z "$best" ] || awk -v a="${arr[$s.$2]}" -v b="$best" 'BEGIN { exit !(a < b) }'; then
            best="${arr[$s.$2]}"
        fi
    done
    echo "$best"
}
ratio() { [ -n "$2" ] && awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else printf "n/a" }' || echo "n/a"; }
k() { echo "$(( $1 / 1000 ))k"; }

table() {
    local set s r best head="| server | query set |" line="|---|---|"
    for r in $RATES; do head="$head CPU µs/query at $(k "$r") qps (vs best peer) |"; line="$line---:|"; done
    head="$head achieved qps at $(k "${RATES##* }") | p99 latency µs at $(echo "$RATES" | awk '{ for (i = 1; i <= NF; i++) printf "%s%dk", (i > 1 ? " / " : ""), $i / 1000 }') | sleeps/query at $(k "${RATES%% *}") | lost (fixed rates) | avg resp bytes |"
    line="$line---:|---:|---:|---:|---:|"
    echo "$head"; echo "$line"
    for set in $SETS; do
        for s in $SERVERS; do
            printf '| %s | %s |' "$s" "$set"
            local lost=0 p99=""
            for r in $RATES; do
                best="$(best_peer RCPU "$set.$r")"
                printf ' %.2f (%s) |' "${RCPU[$s.$set.$r]}" "$(ratio "${RCPU[$s.$set.$r]}" "$best")"
                lost=$(( lost + ${RLOST[$s.$set.$r]} ))
                p99="$p99${p99:+ / }${RP99[$s.$set.$r]}"
            done
            r="${RATES##* }"
            printf ' %.0f | %s | %.2f | %s | %.0f |\n' "${RQPS[$s.$set.$r]}" "$p99" "${RSLEEP[$s.$set.${RATES%% *}]}" "$lost" "${MRESP[$s.$set]}"
        done
    done
}

full_load_table() {
    echo "| server | query set | median qps | median CPU µs/query | CPU vs best peer | lost (all rounds) | server CPU % | server sleeps/query |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|"
    local set s best
    for set in $SETS; do
        best="$(best_peer MCPU "$set")"
        for s in $SERVERS; do
            printf '| %s | %s | %.0f%s | %.2f | %s | %s | %.0f | %.2f |\n' "$s" "$set" \
                "${MQPS[$s.$set]}" "$(flag "$RESULTS" "$s" "$set")" "${MCPU[$s.$set]}" "$(ratio "${MCPU[$s.$set]}" "$best")" \
                "${MLOST[$s.$set]}" "${MPCT[$s.$set]}" "${MSLEEP[$s.$set]}"
        done
    done
}

# lbns against itself: RRL on (below its limit) against off, and queries with a cookie against
# the same queries without.
self_table() {
    local r set base
    printf '| lbns CPU per query | query set |'
    for r in $RATES; do printf ' at %s qps |' "$(k "$r")"; done
    [ "$FULL_LOAD" -eq 1 ] && printf ' full load |'
    echo
    printf '|---|---|'; for r in $RATES; do printf -- '---:|'; done; [ "$FULL_LOAD" -eq 1 ] && printf -- '---:|'; echo
    case " $SERVERS " in *" lbns-rrl "*)
        for set in $SETS; do
            printf '| RRL on / off (lbns-rrl / lbns) | %s |' "$set"
            for r in $RATES; do printf ' %s |' "$(ratio "${RCPU[lbns-rrl.$set.$r]}" "${RCPU[lbns.$set.$r]}")"; done
            [ "$FULL_LOAD" -eq 1 ] && printf ' %s |' "$(ratio "${MCPU[lbns-rrl.$set]}" "${MCPU[lbns.$set]}")"
            echo
        done ;;
    esac
    for set in $SETS; do
        case "$set" in *+cookie) ;; *) continue ;; esac
        base="${set%+cookie}"
        for s in $SERVERS; do
            case "$s" in lbns|lbns-rrl) ;; *) continue ;; esac
            printf '| cookie / plain (%s) | %s |' "$s" "$set"
            for r in $RATES; do printf ' %s |' "$(ratio "${RCPU[$s.$set.$r]}" "${RCPU[$s.$base.$r]}")"; done
            [ "$FULL_LOAD" -eq 1 ] && printf ' %s |' "$(ratio "${MCPU[$s.$set]}" "${MCPU[$s.$base]}")"
            echo
        done
    done
}

flood_table() {
    echo "| rate (qps, one source) | server | sent | answered (TC=1 included) | not answered | server CPU µs per query received | vs RRL off |"
    echo "|---:|---|---:|---:|---:|---:|---:|"
    local r s off
    for r in $RATES; do
        off="$(awk -F'\t' -v r="$r" '$1 == "lbns" && $3 == r { print $9 * 1e6 / ($4 + $5) }' "$FLOODS" | median)"
        for s in lbns lbns-flood; do
            awk -F'\t' -v r="$r" -v s="$s" '$1 == s && $3 == r { print $4 + $5, $4, $5, $9 * 1e6 / ($4 + $5) }' "$FLOODS" |
                sort -k4 -g | awk -v r="$r" -v s="$s" -v off="$off" '{ v[NR] = $0 } END {
                    split(v[int((NR + 1) / 2)], m, " ")
                    printf "| %d | %s | %d | %d | %d | %.2f | %.2f× |\n", r, s, m[1], m[2], m[3], m[4], (off > 0 ? m[4] / off : 0) }'
        done
    done
}

runs_table() { # file
    echo "| round | query set | server | answered | lost | qps | server CPU s | CPU µs/query | server CPU % | server sleeps/query | dnsperf CPU s | other CPU s | steal s | p99 µs |"
    echo "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    awk -F'\t' -v lim="$NOISE_LIMIT" '{ printf "| %s | %s | %s | %s | %s | %.0f | %s | %s | %s | %s | %s | %s%s | %s | %s |\n",
                  $3, $2, $1, $4, $5, $6, $9, $13, $14, $15, $10, $11, ($11 / $7 * 100 > lim ? " ⚠" : ""), $12, ($18 == "" ? "-" : $18) }' "$1"
}

# Interference: the largest share of a core that something else used during any run.
INTERFERENCE="$(cat "$RESULTS" "$FLOODS" $(for r in $RATES; do rate_file "$r"; done) | awk -F'\t' -v lim="$NOISE_LIMIT" -v rep="$(cat "$TMP/repeated" 2>/dev/null | wc -l)" '
    $7 > 0 { o = $11 / $7 * 100; st = $12 / $7 * 100; if (o > mo) mo = o; if (st > ms) ms = st; if (o > lim) f++ }
    END { printf "other load: %d run(s) repeated because it exceeded %d%% of a core, %d run(s) kept over it (⚠), largest %.0f%%; largest steal %.0f%% of a core", rep, lim, f, mo, ms }')"

versions() {
    local s
    for s in $SERVERS; do
        case "$s" in
            lbns) echo "- lbns $LBNS_VERSION, release build$([ "$XDP" -eq 1 ] && echo ' with `--features xdp`')" ;;
            lbns-rrl) echo "- lbns-rrl: the same lbns with \`[rrl] responses_per_second = 1000000\` (rate limiting on, never reached)" ;;
            lbns-xdp) echo "- lbns-xdp: the same lbns binary with \`xdp = \"lo\"\` (AF_XDP, generic XDP on loopback)" ;;
            knot) echo "- $(knotd --version 2>&1 | head -1)" ;;
            lbns-floor) echo "- lbns-floor: lbns built with \`--features bench-floor\`, with lbns-xdp's configuration: its AF_XDP worker sends every query back unanswered (QR set), so it does all lbns-xdp does per query but the DNS work — the floor of the AF_XDP path on this machine; not a peer" ;;
            knot-xdp) echo "- knot-xdp: the same knotd with \`xdp: listen: lo@$(port_of knot-xdp)\`, \`route-check: off\` (AF_XDP, Knot's \"emulated mode\" on loopback)" ;;
            nsd) echo "- $(nsd -v 2>&1 | head -1)" ;;
            gdnsd) echo "- $(gdnsd -h 2>&1 | grep -m1 'gdnsd version')" ;;
        esac
    done
    [ "$FLOOD" -eq 1 ] && echo "- lbns-flood: the same lbns with \`[rrl] responses_per_second = 10, slip = 2\`"
    echo "- dnsperf $(dnsperf -h 2>&1 | sed -n 's/^Version //p' | head -1)"
}

TABLE="$(table)"
echo
echo "$TABLE"
SELF=""
if [ "$RRL" -eq 1 ] || [ "$COOKIES" -eq 1 ]; then
    SELF="$(self_table)"
    echo; echo "$SELF"
fi
FLOOD_TABLE=""
if [ "$FLOOD" -eq 1 ]; then
    FLOOD_TABLE="$(flood_table)"
    echo; echo "$FLOOD_TABLE"
fi
FULL_TABLE=""
if [ "$FULL_LOAD" -eq 1 ]; then
    FULL_TABLE="$(full_load_table)"
    echo; echo "$FULL_TABLE"
fi
echo
echo "$INTERFERENCE"

if [ "$WRITE" -eq 1 ]; then
    mkdir -p "$(dirname "$RESULTS_FILE")"
    {
        echo "# lbns vs Knot DNS, NSD, gdnsd — dnsperf"
        echo
        echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
        echo "- command: \`$CMDLINE\`"
        echo "- machine: $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), $(uname -sr); load average at start: $LOADAVG_START; $INTERFERENCE"
        echo "- servers pinned to CPU $SERVER_CPU (\`taskset -c $SERVER_CPU\`), one UDP worker/thread each (lbns \`udp_workers = 1\`, knot \`udp-workers/tcp-workers/background-workers: 1\`, nsd \`server-count: 1\`, gdnsd \`udp_threads = 1\`); dnsperf pinned to CPU $CLIENT_CPU"
        echo "- fixed rates (the primary comparison): \`dnsperf ${DNSPERF_COMMON[*]} -p PORT -d SET -l $LAT_DURATION -Q RATE -v\` at $(echo "$RATES" | sed 's/ /, /g') qps, $ROUNDS round(s), servers interleaved ($SERVERS) within each round, rate and query set; medians over rounds; p99 is the nearest-rank percentile of the per-query latencies \`-v\` prints (dnsperf 2.10 prints no percentiles)"
        [ "$FULL_LOAD" -eq 1 ] && echo "- full load (secondary): \`dnsperf ${DNSPERF_COMMON[*]} -p PORT -d SET -l $DURATION\`, $ROUNDS round(s); dnsperf's own core is the bottleneck there, so servers are compared at different loads"
        [ "$COOKIES" -eq 1 ] && echo "- \`+cookie\` query sets: the same queries with \`-E $COOKIE_OPT\` (a client cookie on every query)"
        [ "$FLOOD" -eq 1 ] && echo "- flood: \`dnsperf ... -d static -l $LAT_DURATION -Q RATE -q RATE/8+1000 -t 0.25\` from one source to lbns-flood and lbns; CPU per query *received* (answered + lost)"
        [ "$XDP" -eq 1 ] && echo "- \`--xdp\`: everything ran in a private network namespace (\`unshare -n\`, with \`net.ipv4.conf.lo.route_localnet\` and \`accept_local\` set to 1 there, which AF_XDP replies on loopback need); lbns-xdp and knot-xdp answer UDP through AF_XDP in generic (copy) mode on lo, and each was started just before each of its runs and stopped after it (one XDP program per interface), the other servers ran throughout"
        echo
        echo "Versions:"
        echo
        versions
        echo
        echo "## Summary: fixed rates"
        echo
        echo "$TABLE"
        echo
        echo "- Medians are over the undisturbed rounds (see *other CPU s* below) when there is at least one, else over all (⚠ after the p99 when every round was disturbed); *lost* sums all rounds."
        echo "- *CPU µs/query*: the server process tree's utime+stime (/proc/PID/stat, $CLK_TCK ticks/s, read before and after the run) divided by the answered queries. *vs best peer*: divided by the lowest of the peers ($(for s in $SERVERS; do is_peer "$s" && printf '%s ' "$s"; done | sed 's/ $//; s/ /, /g')) for the same query set and rate."
        echo "- *sleeps/query*: voluntary context switches of all the server's threads (/proc/PID/task/*/status) per answered query: how often the server went to sleep waiting for queries. Where a sleep and a wake-up cost an exit to the hypervisor, as on this VM, fewer per query means less CPU per query."
        echo "- Query sets: **static** = $(paste -sd';' "$TMP/queries/static" | sed 's/;/; /g'). **pools** = $(paste -sd';' "$TMP/queries/pools" | sed 's/;/; /g'). The peers serve the pool names as static RRsets with the same addresses and TTL; lbns answers \`api\` with at most 2 of its 3 addresses (\`answers = 2\`), the peers with all 3."
        [ "$FLOOR" -eq 1 ] && echo "- *lbns-floor* answers nothing (its responses are the queries, hence the smaller size): its CPU µs/query is what the AF_XDP path costs here before any DNS work. Its ratio to the best peer is the lowest any AF_XDP server could reach in this setup; lbns-xdp minus lbns-floor is what lbns's answering costs."
        if [ -n "$SELF" ]; then
            echo
            echo "## lbns against itself: rate limiting and cookies"
            echo
            echo "$SELF"
        fi
        if [ -n "$FLOOD_TABLE" ]; then
            echo
            echo "## Flood from one source"
            echo
            echo "$FLOOD_TABLE"
        fi
        if [ -n "$FULL_TABLE" ]; then
            echo
            echo "## Full load"
            echo
            echo "$FULL_TABLE"
        fi
        echo
        echo "- *other CPU s* below is everything the machine ran besides the server and dnsperf during the run (other processes, unattributed interrupts); *steal* is time the hypervisor took. Before each run the script waits (up to ${QUIET_WAIT}s) for a quiet machine, and repeats a run (up to $RETRIES times) whose other load exceeded $NOISE_LIMIT % of a core; runs kept over that are marked ⚠ — their qps and latency are unreliable, their CPU µs/query much less affected."
        for r in $RATES; do
            echo
            echo "## Every run at $r qps"
            echo
            runs_table "$(rate_file "$r")"
        done
        if [ "$FLOOD" -eq 1 ]; then
            echo
            echo "## Every flood run (round = rate)"
            echo
            runs_table "$FLOODS"
        fi
        if [ "$FULL_LOAD" -eq 1 ]; then
            echo
            echo "## Every full-load run"
            echo
            runs_table "$RESULTS"
        fi
    } >"$RESULTS_FILE"
    log "wrote $RESULTS_FILE"
fi
