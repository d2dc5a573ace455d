#!/usr/bin/env bash
# Health checks and failover in one command: starts three HTTP backends on 127.0.0.2, .3 and .4
# port 8080 and lbns with examples/demo.toml (DNS on 127.0.0.1:5354, status on 127.0.0.1:8054),
# then prints once a second what `dig www.cluster.example. A` answers, its TTL and each backend's
# state; after 5 s it kills backend 127.0.0.3, after 15 s it brings it back, after 25 s it stops
# everything it started and exits 0. Ctrl-C stops everything at any time.
#
# Builds lbns first (`cargo build --release`, a no-op when up to date); runs scripts/install-deps.sh
# when dig or python3 is missing. LBNS_DEMO_CONFIG=FILE runs it with another config, which must
# use the same addresses and pool.
set -eu
cd "$(dirname "$0")/.."

CONFIG=${LBNS_DEMO_CONFIG:-examples/demo.toml}
LBNS=target/release/lbns
DNS_ADDR=127.0.0.1
DNS_PORT=5354
STATUS_ADDR=127.0.0.1:8054
POOL=www.cluster.example.
BACKENDS="127.0.0.2 127.0.0.3 127.0.0.4"
BACKEND_PORT=8080
VICTIM=127.0.0.3
STEADY=5         # seconds before the kill
DOWN=10          # seconds with the victim dead
BACK=10          # seconds after it is back

die() { echo "demo: $*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

# --- processes this script started, stopped by PID only --------------------------------------
LBNS_PID=""
declare -A BACKEND_PID=()
TMP=""

# True while PID is running (a zombie, already dead but not yet reaped, counts as gone).
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ]
}

# Stops one child: SIGTERM, up to 3 s to exit, then SIGKILL; reaps it.
stop_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 30); do
        alive "$pid" || break
        sleep 0.1
    done
    if alive "$pid"; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# Runs a command in the background and waits for it. Bash runs a SIGINT trap only once the
# foreground command ends, and not at all when that command catches SIGINT itself (dig does);
# `wait` returns at once on a trapped signal. The command ignores SIGINT (background, no job
# control), so Ctrl-C reaches only this script, which then stops everything.
CHILD=""
in_bg() {
    local rc=0
    "$@" &
    CHILD=$!
    wait "$CHILD" || rc=$?
    CHILD=""
    return "$rc"
}

CLEANED=""
cleanup() {
    [ -n "$CLEANED" ] && return
    CLEANED=1
    trap '' INT TERM HUP
    local i
    if [ -n "$CHILD" ]; then
        # A dig or sleep that ends within a second or two by itself.
        for i in $(seq 30); do
            alive "$CHILD" || break
            sleep 0.1
        done
        stop_pid "$CHILD"
        CHILD=""
    fi
    [ -n "$LBNS_PID" ] && stop_pid "$LBNS_PID"
    LBNS_PID=""
    local ip
    for ip in "${!BACKEND_PID[@]}"; do
        stop_pid "${BACKEND_PID[$ip]}"
    done
    BACKEND_PID=()
    [ -n "$TMP" ] && rm -rf "$TMP"
    TMP=""
}
trap cleanup EXIT
trap 'echo; echo "interrupted: stopping everything"; cleanup; exit 130' INT
trap 'echo "terminated: stopping everything"; cleanup; exit 143' TERM HUP

# --- tools, build, config ----------------------------------------------------------------------
if ! have dig || ! have python3; then
    scripts/install-deps.sh
fi
have dig || die "dig is missing and scripts/install-deps.sh did not install it"
have python3 || die "python3 is missing and scripts/install-deps.sh did not install it"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/lbns-demo.XXXXXX")

# Quiet unless it fails: a build of a tree being worked on can print pages of warnings.
if have cargo; then
    echo "building lbns: cargo build --release (a first build takes a few minutes)"
    if ! cargo build --release >"$TMP/build.log" 2>&1; then
        tail -n 40 "$TMP/build.log" >&2
        die "cargo build --release failed (last 40 lines above)"
    fi
fi
[ -x "$LBNS" ] || die "$LBNS is missing (no cargo to build it?)"

if ! out=$("$LBNS" check --config "$CONFIG" 2>&1); then
    echo "$out" >&2
    die "$CONFIG does not pass \`$LBNS check\`"
fi

# --- every port must be free: an lbns already on 5354 (SO_REUSEPORT) would share our queries ----
python3 - "$DNS_ADDR" "$DNS_PORT" "$STATUS_ADDR" "$BACKEND_PORT" $BACKENDS <<'EOF' || exit 1
import socket, sys
dns, dns_port, status, backend_port, *backends = sys.argv[1:]
status_host, _, status_port = status.rpartition(":")
want = [(dns, int(dns_port), "udp", "DNS"), (dns, int(dns_port), "tcp", "DNS"),
        (status_host, int(status_port), "tcp", "status listener")]
want += [(b, int(backend_port), "tcp", "backend") for b in backends]
busy = []
for addr, p, proto, what in want:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM)
    if proto == "tcp":
        # Ignore TIME_WAIT leftovers of an earlier run; a listener still makes bind fail.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((addr, p))
    except OSError as e:
        busy.append(f"  {addr}:{p}/{proto} ({what}): {e.strerror}")
    finally:
        s.close()
if busy:
    print("demo: cannot start, these are taken or cannot be bound:", *busy, sep="\n", file=sys.stderr)
    ports = " or ".join(f"sport = :{p}" for p in sorted({dns_port, status_port, backend_port}))
    print(f"demo: see what holds them with: ss -ltnup '{ports}'", file=sys.stderr)
    sys.exit(1)
EOF

# --- backends: answer 200 "ok" to every GET ------------------------------------------------------
cat >"$TMP/backend.py" <<'EOF'
import http.server, sys
class Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), Ok).serve_forever()
EOF

start_backend() {
    local ip=$1 i
    python3 "$TMP/backend.py" "$ip" "$BACKEND_PORT" 2>>"$TMP/backend-$ip.log" &
    BACKEND_PID[$ip]=$!
    for i in $(seq 50); do
        alive "${BACKEND_PID[$ip]}" || { cat "$TMP/backend-$ip.log" >&2; die "backend $ip:$BACKEND_PORT did not start"; }
        (exec 3<>"/dev/tcp/$ip/$BACKEND_PORT") 2>/dev/null && return 0
        in_bg sleep 0.1
    done
    die "backend $ip:$BACKEND_PORT not listening after 5 s"
}

for ip in $BACKENDS; do
    start_backend "$ip"
done

# --- lbns ----------------------------------------------------------------------------------------
"$LBNS" serve --config "$CONFIG" >"$TMP/lbns.log" 2>&1 &
LBNS_PID=$!

ask() { dig +noall +answer +norec +time=1 +tries=1 @"$DNS_ADDR" -p "$DNS_PORT" "$POOL" A 2>/dev/null; }
answering() { "$LBNS" status --status-addr "$STATUS_ADDR" >/dev/null 2>&1 && [ -n "$(ask)" ]; }
ready=""
for i in $(seq 100); do
    alive "$LBNS_PID" || { cat "$TMP/lbns.log" >&2; die "lbns exited at start (log above)"; }
    if in_bg answering; then
        ready=1
        break
    fi
    in_bg sleep 0.1
done
[ -n "$ready" ] || { cat "$TMP/lbns.log" >&2; die "lbns not answering on $DNS_ADDR:$DNS_PORT after 10 s"; }

# --- the show ------------------------------------------------------------------------------------
# One line: elapsed, the sorted addresses, the answer's TTL, each backend's state.
line() {
    local answer addrs ttl states
    answer=$(ask) || answer=""
    addrs=$(printf '%s\n' "$answer" | awk '$4 == "A" { print $5 }' | sort -t. -k4,4n | tr '\n' ' ')
    ttl=$(printf '%s\n' "$answer" | awk '$4 == "A" { print $2; exit }')
    states=$("$LBNS" status --status-addr "$STATUS_ADDR" --json 2>/dev/null | python3 -c '
import json, sys
want = sys.argv[1:]
try:
    pools = json.load(sys.stdin)["pools"]
except Exception:
    print("(status unavailable)"); sys.exit()
seen = {b["address"]: b for p in pools for b in p["backends"]}
out = []
for a in want:
    b = seen.get(a)
    state = "?" if b is None else ("drained" if b["drained"] else b["state"])
    out.append("." + a.rsplit(".", 1)[1] + " " + state)
print("  ".join(out))' $BACKENDS) || states="(status unavailable)"
    printf '%4ds  %-30s ttl %-3s %s\n' "$1" "${addrs:-(no answer)}" "${ttl:--}" "$states"
}

now_ms() { date +%s%3N; }
T0=$(now_ms)
# Prints lines at T0 + FROM .. T0 + TO-1 seconds, one per second.
show() {
    local k wait_ms
    for k in $(seq "$1" $(($2 - 1))); do
        wait_ms=$((T0 + k * 1000 - $(now_ms)))
        [ "$wait_ms" -gt 0 ] && in_bg sleep "$(printf '%d.%03d' $((wait_ms / 1000)) $((wait_ms % 1000)))"
        in_bg line "$(( ($(now_ms) - T0) / 1000 ))"
    done
}

echo "lbns on $DNS_ADDR:$DNS_PORT (status page http://$STATUS_ADDR/), pool $POOL,"
echo "backends $BACKENDS on port $BACKEND_PORT, probed over http every second"
printf '%5s  %-30s %-8s%s\n' time "dig $POOL A" "" "backends (lbns status)"
show 0 "$STEADY"
echo "killing backend $VICTIM (pid ${BACKEND_PID[$VICTIM]})"
stop_pid "${BACKEND_PID[$VICTIM]}"
unset "BACKEND_PID[$VICTIM]"
show "$STEADY" $((STEADY + DOWN))
echo "bringing it back"
start_backend "$VICTIM"
show $((STEADY + DOWN)) $((STEADY + DOWN + BACK))
echo "stopping lbns and the backends"
cleanup
exit 0
