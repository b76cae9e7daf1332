#!/usr/bin/env bash
# Runs every libFuzzer target in a fuzz build for a few seconds each:
#   scripts/fuzz-smoke.sh BUILD_DIR SECONDS
# Seeds come from tests/fuzz/corpus/<target>/ when present; new inputs go to a
# scratch dir so the committed corpus only changes on purpose. A crash fails
# the run and leaves the reproducer (crash-*) in the current directory.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bdir=$top/${1:-build-fuzz}
secs=${2:-15}
rc=0 n=0
for bin in "$bdir"/tests/fuzz/fuzz_*; do
    [ -x "$bin" ] || continue
    name=$(basename "$bin")
    scratch=$(mktemp -d)
    seeds=()
    [ -d "$top/tests/fuzz/corpus/$name" ] && seeds=("$top/tests/fuzz/corpus/$name")
    echo "--- $name (${secs}s)"
    "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=1024 -print_final_stats=1 \
        "$scratch" "${seeds[@]}" > "$scratch.log" 2>&1
    r=$?
    grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|==[0-9]+==ERROR|SUMMARY|Test unit written)" "$scratch.log"
    if [ $r -ne 0 ]; then rc=1; echo "!!! $name failed (exit $r)"; tail -40 "$scratch.log"; fi
    rm -f "$scratch.log"
    rm -rf "$scratch"
    n=$((n + 1))
done
[ $n -gt 0 ] || { echo "no fuzz targets found in $bdir"; exit 1; }
exit $rc
