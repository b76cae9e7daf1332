#!/usr/bin/env bash
# Runs every libFuzzer target in a fuzz build for a few seconds each:
#   scripts/fuzz-smoke.sh BUILD_DIR SECONDS [JOBS]
# Seeds come from tests/fuzz/corpus/<target>/ when present; new inputs go to a
# scratch dir so the committed corpus only changes on purpose. A crash fails
# the run and leaves the reproducer (crash-*) in the current directory.
# JOBS targets run at once (default: the number of CPUs), each on one core;
# a target's lines are printed together when it ends.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bdir=$top/${1:-build-fuzz}
secs=${2:-15}
jobs=${3:-$(nproc 2>/dev/null || echo 1)}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# one target: its report goes to $out/<name>.report, its exit to $out/<name>.rc
run_one() {
    local bin=$1 name scratch seeds=() r
    name=$(basename "$bin")
    scratch=$(mktemp -d)
    [ -d "$top/tests/fuzz/corpus/$name" ] && seeds=("$top/tests/fuzz/corpus/$name")
    "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=1024 -print_final_stats=1 \
        "$scratch" "${seeds[@]}" > "$scratch.log" 2>&1
    r=$?
    {
        echo "--- $name (${secs}s)"
        grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|==[0-9]+==ERROR|SUMMARY|Test unit written)" "$scratch.log"
        if [ $r -ne 0 ]; then echo "!!! $name failed (exit $r)"; tail -40 "$scratch.log"; fi
    } > "$out/$name.report"
    echo $r > "$out/$name.rc"
    rm -f "$scratch.log"
    rm -rf "$scratch"
}

n=0
for bin in "$bdir"/tests/fuzz/fuzz_*; do
    [ -x "$bin" ] || continue
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
    run_one "$bin" &
    n=$((n + 1))
done
wait
[ $n -gt 0 ] || { echo "no fuzz targets found in $bdir"; exit 1; }
rc=0
for f in "$out"/*.report; do
    cat "$f"
    [ "$(cat "${f%.report}.rc")" = 0 ] || rc=1
done
exit $rc
