#!/usr/bin/python3
"""What a GC sweep costs (docs/benchmarks.md, "GC sweeps"; engine/engine_gc.c).

    /usr/bin/python3 bench/gc_bench.py [--build DIR] [--keys N] [--deleted N]

One site on loopback (no peers: its stable point is its own clock), sweeps
every 2 s with a one-second grace. mrdbench PUTs N keys of 16 bytes, then
DELETEs the first D of them (each leaves a null delete marker). The bench
waits until every marker is purged and reports:
  - how long the purge took after the deletes (sweeps, purge records and
    their index commits);
  - the last sweep over the keys left: keys walked and milliseconds, as
    keys per second, the figure that says what gc_interval costs on a big
    index;
  - the index's pages used and free after the PUTs and after the purge
    (mdb_stat, when installed): the purged records' pages are free for
    later writes (LMDB does not shrink its file).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
import conftest  # noqa: E402


def mrdbench(build, site, op, count, extra=()):
    cmd = [os.path.join(build, "bench", "mrdbench"), "--endpoint", site.s3, "--access-key",
           "AKIATEST", "--secret-key", "testsecretkey", "--bucket", "gcbench", "--prefix", "k",
           "--op", op, "--count", str(count), "--size", "16", "--concurrency", "32",
           "--quiet"] + list(extra)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(out.stdout + out.stderr)


def index_pages(site):
    """(pages used, pages free) of the index (mdb_stat), or None without the
    tool."""
    if not shutil.which("mdb_stat"):
        return None
    out = subprocess.run(["mdb_stat", "-ef", site.meta], capture_output=True, text=True)
    used = free = None
    for line in out.stdout.splitlines():
        if "Number of pages used:" in line:
            used = int(line.split(":")[1])
        elif "Free pages:" in line:
            free = int(line.split(":")[1])
    return used, free


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--keys", type=int, default=200000)
    ap.add_argument("--deleted", type=int, default=100000)
    args = ap.parse_args()
    conftest.MERIDIAND = os.path.join(args.build, "gateway", "meridiand")
    tmp = tempfile.mkdtemp(prefix="gc_bench.")
    site = conftest.Site(os.path.join(tmp, "a"), name="a")
    with open(site.config, "a") as f:
        f.write("[replication]\ngc_interval = 2\ngc_grace = 1\n")
    site.start()
    try:
        t = time.time()
        mrdbench(args.build, site, "put", args.keys, ["--create-bucket"])
        put_s = time.time() - t
        pages_before = index_pages(site)
        t = time.time()
        mrdbench(args.build, site, "delete", args.deleted, ["--no-prepare", "--keys",
                                                            str(args.deleted)])
        del_s = time.time() - t
        t = time.time()
        deadline = t + 600
        g = site.status()["gc"]
        while g["markers_purged"] < args.deleted and time.time() < deadline:
            time.sleep(0.5)
            g = site.status()["gc"]
        purge_s = time.time() - t
        # one more sweep over what is left, with nothing to purge
        sweeps = g["sweeps"]
        while site.status()["gc"]["sweeps"] < sweeps + 2 and time.time() < deadline:
            time.sleep(0.5)
        g = site.status()["gc"]
        res = {
            "keys": args.keys, "deleted": args.deleted, "put_s": round(put_s, 1),
            "delete_s": round(del_s, 1), "markers_purged": g["markers_purged"],
            "purge_s_after_deletes": round(purge_s, 1),
            "sweep_keys": g["last_keys"], "sweep_ms": g["last_duration_ms"],
            "sweep_keys_per_s": round(g["last_keys"] * 1000 / max(g["last_duration_ms"], 1)),
            "index_pages_used_free_after_puts": pages_before, "index_pages_used_free_after_purge": index_pages(site),
        }
        print(json.dumps(res, indent=1))
        return 0 if g["markers_purged"] == args.deleted else 1
    finally:
        site.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
