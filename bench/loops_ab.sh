#!/bin/sh
# bench/loops_ab.sh - A/B of [s3] loops: the same meridiand build with
# loops = A and loops = B, alternated round by round on one data set, each
# round running mrdbench PUT 4 KiB and GET 4 KiB at 16 and 64 in flight.
#
#   bench/loops_ab.sh [--build DIR] [--rounds N] [--duration S] [--a N] [--b N]
#
# Prints one line per run (loops, op, concurrency, ops/s, p99 ms, the
# daemon's CPU time per operation: utime + stime over the run) and the load
# average before each round. GET reads the 1000 keys the PUT before it
# wrote. docs/benchmarks.md quotes its output.
# Loopback only; everything lives in a temporary directory removed at exit.
set -eu

BUILD=build
ROUNDS=3
DUR=5
A=1
B=2
while [ $# -gt 0 ]; do
    case "$1" in
    --build) BUILD=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --duration) DUR=$2; shift 2 ;;
    --a) A=$2; shift 2 ;;
    --b) B=$2; shift 2 ;;
    *) echo "usage: $0 [--build DIR] [--rounds N] [--duration S] [--a N] [--b N]" >&2; exit 1 ;;
    esac
done

D=$BUILD/gateway/meridiand
MB=$BUILD/bench/mrdbench
[ -x "$D" ] && [ -x "$MB" ] || { echo "build meridiand and mrdbench in $BUILD first" >&2; exit 1; }
W=$(mktemp -d /tmp/loops-ab.XXXXXX)
PID=
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    rm -rf "$W"
}
trap cleanup EXIT INT TERM

port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
S3=$(port); REPL=$(port); ADM=$(port)

start() { # $1 = loops
    cat > "$W/site.ini" <<EOF
[site]
id = 1
name = bench
[listen]
s3 = 127.0.0.1:$S3
replication = 127.0.0.1:$REPL
admin = 127.0.0.1:$ADM
[s3]
loops = $1
[store]
data_dirs = $W/d0, $W/d1, $W/d2, $W/d3, $W/d4, $W/d5
ec_k = 4
ec_m = 2
meta_dir = $W/meta
[admin]
token = bench-admin-token-0123456789
[log]
level = warn
[user.bench]
access_key = AKIABENCH
secret_key = benchsecretkey
EOF
    "$D" --config "$W/site.ini" >> "$W/log" 2>&1 &
    PID=$!
    i=0
    until curl -sf "http://127.0.0.1:$ADM/health/ready" >/dev/null; do
        i=$((i + 1)); [ $i -lt 200 ] || { cat "$W/log" >&2; exit 1; }
        sleep 0.05
    done
}

stop() { kill "$PID"; wait "$PID" || true; PID=; }

cpu_ticks() { # utime + stime of the daemon, in clock ticks
    awk '{print $14 + $15}' "/proc/$PID/stat"
}

run() { # $1 loops, $2 op, $3 concurrency
    T0=$(cpu_ticks)
    "$MB" --endpoint "http://127.0.0.1:$S3" --access-key AKIABENCH --secret-key benchsecretkey \
        --bucket loopsab --create-bucket --op "$2" --size 4KiB --concurrency "$3" --threads 2 \
        --duration "$DUR" --keys 1000 $([ "$2" = get ] && echo --no-prepare) --quiet --json "$W/r.json" > "$W/mb.out" 2>&1 || tail -3 "$W/mb.out" >&2
    T1=$(cpu_ticks)
    /usr/bin/python3 - "$1" "$2" "$3" "$W/r.json" "$((T1 - T0))" "$(getconf CLK_TCK)" <<'EOF'
import json, sys
loops, op, conc, path, ticks, hz = sys.argv[1:]
try:
    r = json.load(open(path))
    # the daemon's CPU over the run, per op
    us = int(ticks) / int(hz) * 1e6 / max(r["ops"], 1)
    print(f"loops={loops} op={op} conc={conc} ops_s={r['ops_per_s']:.0f} "
          f"p99_ms={r['lat_ms']['p99']:.1f} cpu_us_per_op={us:.0f} errors={r['errors']}")
except Exception as e:  # noqa
    print(f"loops={loops} op={op} conc={conc} failed: {e}")
EOF
}

# the 1000 keys every GET run reads, written once before the rounds
start "$A"
"$MB" --endpoint "http://127.0.0.1:$S3" --access-key AKIABENCH --secret-key benchsecretkey \
    --bucket loopsab --create-bucket --op get --size 4KiB --keys 1000 --count 1 --quiet \
    > "$W/mb.out" 2>&1 || { cat "$W/mb.out" >&2; exit 1; }
stop

r=1
while [ $r -le "$ROUNDS" ]; do
    for L in $A $B; do
        echo "round $r loops=$L load: $(cut -d' ' -f1-3 /proc/loadavg)"
        start "$L"
        for c in 16 64; do
            run "$L" put "$c"
            run "$L" get "$c"
        done
        stop
    done
    r=$((r + 1))
done
