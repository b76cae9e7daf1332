#!/usr/bin/python3
"""Catch-ups of two builds, interleaved so both see the same machine load
(docs/benchmarks.md, "data checks in place of the receiver's MD5").

    /usr/bin/python3 bench/repl_ab.py BUILD_A BUILD_B [--size BYTES] [--mib N] [--rounds R]

Per round and build: two fresh sites on loopback, b stopped, N MiB of
objects PUT at a (mrdbench), b started; the catch-up is timed from b's
start and from the first object b applied (repl_bench.catch_up). Prints
each run and the medians: both rates and each daemon's CPU seconds. Each
build directory needs gateway/meridiand and bench/mrdbench.
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
sys.path.insert(0, os.path.join(REPO, "bench"))
import conftest  # noqa: E402
import repl_bench  # noqa: E402

FIELDS = ("from start MB/s", "streaming MB/s", "sender CPU s", "receiver CPU s")


def one_run(build, size, mib):
    conftest.MERIDIAND = os.path.join(build, "gateway", "meridiand")
    tmp = tempfile.mkdtemp(prefix="repl_ab.")
    a = conftest.Site(os.path.join(tmp, "a"), name="a", site_id=1)
    b = conftest.Site(os.path.join(tmp, "b"), name="b", site_id=2)
    a.add_peer(b)
    b.add_peer(a)
    a.start()
    b.start()
    try:
        cpu, timing = {}, {}
        _, mbs, _, _ = repl_bench.catch_up(build, a, b, size, mib, cpu=cpu, timing=timing, tmp=tmp)
        return (mbs, timing["streaming_MBps"], cpu["sender"], cpu["receiver"])
    finally:
        a.stop()
        b.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("builds", nargs=2)
    ap.add_argument("--size", type=int, default=1 << 20)
    ap.add_argument("--mib", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()
    rows = {b: [] for b in args.builds}
    for _ in range(args.rounds):
        for build in args.builds:
            r = one_run(build, args.size, args.mib)
            rows[build].append(r)
            print(build + ": " + ", ".join(f"{f} {v:.2f}" for f, v in zip(FIELDS, r)), flush=True)
    for build, rs in rows.items():
        med = [statistics.median(r[i] for r in rs) for i in range(len(FIELDS))]
        print(f"median of {len(rs)}, {build}: " +
              ", ".join(f"{f} {v:.2f}" for f, v in zip(FIELDS, med)))


if __name__ == "__main__":
    main()
