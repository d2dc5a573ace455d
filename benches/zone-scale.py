#!/usr/bin/env python3
"""benches/zone-scale.py -- the measuring half of benches/zone-scale.sh.

Small tools the shell scripts call, so that timings are taken close to the event:

  wait PORT NAME EXPECT START_NS TIMEOUT_S PID
      Asks 127.0.0.1:PORT for NAME/A every 10 ms (one UDP query, a reply waited for at most
      10 ms) until an answer holds EXPECT (an IPv4 address; "-" accepts any A record), then
      prints the milliseconds since START_NS (time.time_ns() clock, as `date +%s%N`; 0 prints
      the time itself, in ms). Exits 1 when TIMEOUT_S passes or when process PID is gone.
      PID may be a file instead: the poller then creates FILE.ready once it polls, so that the
      server is started only then (its start-up is not hidden behind the poller's), and reads
      the server's PID from FILE once it exists.
  mem PID
      Sums over PID and all its descendants: VmRSS, VmHWM (KiB) and Pss (KiB, from
      smaps_rollup: shared pages split between the processes that map them), and counts them.
      Prints "rss hwm pss procs".
  clear PID
      Resets the peak RSS (VmHWM) of PID and its descendants (`echo 5 > clear_refs`, Linux 4.0+),
      so that a later `mem` reports the peak of what happened in between.
  timed OUT CMD...
      Runs CMD, writes "wall_seconds max_rss_kib exit_code start_ns" to OUT (max RSS of CMD and
      its children, from getrusage(RUSAGE_CHILDREN); start_ns on the time.time_ns() clock, taken
      just before CMD is started, so that `wait ... 0 ...` results can be set against it); its
      stdout and stderr go to OUT.log.
  cpu PID
      Prints utime+stime of PID (all its threads) in seconds, from /proc/PID/stat.
  tree PID
      Prints PID and all its descendants, one line, space-separated (nothing if PID is gone).
  alive PID...
      Prints those of the PIDs that still run (not exited, not zombies).
"""
import os
import random
import resource
import select
import socket
import struct
import subprocess
import sys
import time


def query(name, qid):
    q = struct.pack(">HHHHHH", qid, 0, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\x00" + struct.pack(">HH", 1, 1)


def skip_name(msg, i):
    while True:
        n = msg[i]
        if n == 0:
            return i + 1
        if n & 0xC0 == 0xC0:
            return i + 2
        i += 1 + n


def a_records(msg, qid):
    """The A addresses in the answer section of a NOERROR reply with id qid, else None."""
    if len(msg) < 12:
        return None
    rid, flags, qd, an = struct.unpack(">HHHH", msg[:8])
    if rid != qid or not flags & 0x8000 or flags & 0x000F != 0:
        return None
    try:
        i = 12
        for _ in range(qd):
            i = skip_name(msg, i) + 4
        out = []
        for _ in range(an):
            i = skip_name(msg, i)
            rtype, _cls, _ttl, rdlen = struct.unpack(">HHIH", msg[i:i + 10])
            i += 10
            if rtype == 1 and rdlen == 4:
                out.append(socket.inet_ntoa(msg[i:i + 4]))
            i += rdlen
        return out
    except (IndexError, struct.error):
        return None


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by the shell) is gone too.
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait(port, name, expect, start_ns, timeout, pid):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(("127.0.0.1", port))
    deadline = time.monotonic() + timeout
    pidfile = None
    if not pid.isdigit():
        pidfile, pid = pid, None
        open(pidfile + ".ready", "w").close()
    else:
        pid = int(pid)
    while time.monotonic() < deadline:
        if pid is None:
            try:
                with open(pidfile) as f:
                    pid = int(f.read().strip())
            except (OSError, ValueError):
                pass  # not started yet, or the PID half written
        if pid is not None and not alive(pid):
            print("process %d exited" % pid, file=sys.stderr)
            return 1
        tick = time.monotonic() + 0.010
        qid = random.randrange(65536)
        try:
            s.send(query(name, qid))
        except ConnectionRefusedError:
            pass
        while True:
            left = tick - time.monotonic()
            if left <= 0 or not select.select([s], [], [], left)[0]:
                break
            try:
                msg = s.recv(65535)
            except ConnectionRefusedError:
                continue  # an ICMP port unreachable: nothing listens yet
            got = a_records(msg, qid)
            if got and (expect == "-" or expect in got):
                print("%.1f" % ((time.time_ns() - start_ns) / 1e6))
                return 0
        left = tick - time.monotonic()
        if left > 0:
            time.sleep(left)
    print("no answer for %s with %s within %ss" % (name, expect, timeout), file=sys.stderr)
    return 1


def tree(root):
    """root and all its descendants (NSD forks)."""
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    parent[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    out = []
    for pid in parent:
        q = pid
        while q > 1 and q != root:
            q = parent.get(q, 0)
        if q == root:
            out.append(pid)
    return out


def status_kib(pid, key):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kib(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def mem(root):
    pids = tree(root)
    print("%d %d %d %d" % (sum(status_kib(p, "VmRSS") for p in pids),
                           sum(status_kib(p, "VmHWM") for p in pids),
                           sum(pss_kib(p) for p in pids), len(pids)))
    return 0


def clear(root):
    ok = True
    for p in tree(root):
        try:
            with open("/proc/%d/clear_refs" % p, "w") as f:
                f.write("5")
        except OSError as e:
            print("cannot reset the peak RSS of %d: %s" % (p, e), file=sys.stderr)
            ok = False
    return 0 if ok else 1


def timed(out, cmd):
    start_ns = time.time_ns()
    t0 = time.monotonic()
    with open(out + ".log", "wb") as log:
        rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
    wall = time.monotonic() - t0
    maxrss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    with open(out, "w") as f:
        f.write("%.4f %d %d %d\n" % (wall, maxrss, rc, start_ns))
    return 0


def cpu(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    print("%.3f" % ((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")))
    return 0


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ""
    if cmd == "wait" and len(argv) == 8:
        return wait(int(argv[2]), argv[3], argv[4], int(argv[5]), float(argv[6]), argv[7])
    if cmd == "mem" and len(argv) == 3:
        return mem(int(argv[2]))
    if cmd == "clear" and len(argv) == 3:
        return clear(int(argv[2]))
    if cmd == "timed" and len(argv) > 3:
        return timed(argv[2], argv[3:])
    if cmd == "cpu" and len(argv) == 3:
        return cpu(int(argv[2]))
    if cmd == "tree" and len(argv) == 3:
        print(" ".join(str(p) for p in tree(int(argv[2]))))
        return 0
    if cmd == "alive":
        print(" ".join(a for a in argv[2:] if alive(int(a))))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
