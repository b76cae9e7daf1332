#!/usr/bin/env bash
# The README's second command (and what .ci/run calls): install everything the
# tests need, build, and run every test. Steps:
#   build     release build with -Werror
#   unit      ctest (tests/unit)
#   integ     pytest tests/integration under /usr/bin/python3, real processes,
#             on 2-4 pytest-xdist workers (by CPU count); the 15 slowest
#             tests are listed at the end
#   format    clang-format check of the whole tree
#   asan      ASan+UBSan build, ctest under it, and replication and GC tests
#             against the sanitized daemon (object data through the
#             receiver's buffer pool, an anti-entropy pass with summaries
#             both ways, object data whose check fails once and is sent
#             again, GC sweeps, purges and ghost drops), then every S3 API,
#             HTTP edge, client, routing/proxy and TLS test against it: a
#             finding stops the daemon, and a report in its log (a leak at
#             exit too) fails the test (conftest.Site.stop)
#   tsan      ThreadSanitizer build of meridiand and the several-S3-loop
#             integration tests under it (a race makes the daemon exit 66,
#             which fails them); about 40 s
#   fuzz      clang libFuzzer build, each target for FUZZ_SECONDS (default 10)
#   bench     bench/run.sh --quick --no-doc: the benchmark smoke test (every
#             tool and every Meridian run works; numbers are not asserted)
# Every step runs even if an earlier one failed (except when the build fails);
# a summary is printed and the exit code is non-zero on any failure.
# TEST_STEPS="unit integ" limits the run to those steps (after the build).
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
export MERIDIAN_BUILD_DIR="$top/build"
steps=${TEST_STEPS:-"unit integ format asan tsan fuzz bench"}
fuzz_seconds=${FUZZ_SECONDS:-10}
jobs=$(nproc)
declare -a names results times
fail=0
integ_log=$(mktemp /tmp/meridian-integ.XXXXXX)

run_step() {
    local name=$1; shift
    local t0=$SECONDS rc
    echo "=== $name: $*"
    "$@"; rc=$?
    names+=("$name"); times+=($((SECONDS - t0)))
    if [ $rc -eq 0 ]; then results+=("ok"); else results+=("FAILED (exit $rc)"); fail=1; fi
    return $rc
}

want() { [[ " $steps " == *" $1 "* ]]; }

summary() {
    echo
    echo "=== test summary"
    for i in "${!names[@]}"; do printf '  %-8s %-20s %4ss\n' "${names[$i]}" "${results[$i]}" "${times[$i]}"; done
    # The failing tests' names again, so a log's tail says which ones failed.
    if [ -s "$integ_log" ] && grep -qE '^(FAILED|ERROR) ' "$integ_log"; then
        echo "  integration failures:"
        grep -E '^(FAILED|ERROR) ' "$integ_log" | sed 's/^/    /'
    fi
    rm -f "$integ_log"
    if [ $fail -eq 0 ]; then echo "ALL PASSED"; else echo "SOME STEPS FAILED"; fi
}

scripts/install-deps.sh --bench || { echo "dependency installation failed"; exit 1; }

if ! run_step build scripts/build.sh build; then summary; exit 1; fi
want unit && run_step unit ctest --test-dir build --output-on-failure -j"$jobs"
# Integration tests run on several pytest-xdist workers: most of a test's time
# is spent waiting for sites to start, replicate and converge, so two workers
# halve the step even on two CPUs (754 s -> 404 s measured). conftest.free_port
# gives each worker its own slice of ports.
integ_workers=$(( jobs < 2 ? 2 : (jobs > 4 ? 4 : jobs) ))
want integ && run_step integ bash -c "set -o pipefail; /usr/bin/python3 -m pytest -q -rfE \
    -p no:cacheprovider -n $integ_workers --durations=15 tests/integration 2>&1 | tee $integ_log"
want format && run_step format scripts/check-format.sh
if want asan; then
    run_step asan bash -c "scripts/build.sh build-asan -DMERIDIAN_ASAN=ON -DCMAKE_BUILD_TYPE=Debug &&
        ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
        ctest --test-dir build-asan --output-on-failure -j$jobs &&
        MERIDIAN_BUILD_DIR=$top/build-asan /usr/bin/python3 -m pytest -q -p no:cacheprovider \
        tests/integration/test_replication.py \
        tests/integration/test_repl_data_check.py tests/integration/test_gc.py \
        -k 'in_the_order or past_retention_level or corrupted_in_flight or cannot_be_computed or refused or purged_once or ghosts or retention_window' &&
        MERIDIAN_BUILD_DIR=$top/build-asan /usr/bin/python3 -m pytest -q -p no:cacheprovider \
        -n $integ_workers tests/integration/test_s3_http_edges.py tests/integration/test_s3_basic.py \
        tests/integration/test_s3_multipart.py tests/integration/test_s3_versioning.py \
        tests/integration/test_s3_ops.py tests/integration/test_s3_acl.py \
        tests/integration/test_s3_vhost.py tests/integration/test_s3_clients.py \
        tests/integration/test_routing.py tests/integration/test_tls.py"
fi
if want tsan; then
    run_step tsan bash -c "cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DMERIDIAN_TSAN=ON >/dev/null && cmake --build build-tsan -j$jobs --target meridiand \
        >/dev/null && MERIDIAN_BUILD_DIR=$top/build-tsan TSAN_OPTIONS=halt_on_error=0 \
        /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration/test_s3_loops.py"
fi
if want fuzz; then
    run_step fuzz bash -c "scripts/build.sh build-fuzz -DMERIDIAN_FUZZ=ON -DCMAKE_C_COMPILER=clang \
        -DBUILD_TESTING=OFF && scripts/fuzz-smoke.sh build-fuzz $fuzz_seconds"
fi
want bench && run_step bench bench/run.sh --quick --no-doc --build build
summary
exit $fail
