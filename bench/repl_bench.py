#!/usr/bin/python3
"""bench/repl_bench.py - replication throughput and lag between two sites on
loopback, next to the raw HTTP/2 ceiling measured in the same run.

    bench/repl_bench.py [--build DIR] [--mib N] [--probes N] [--json FILE]

What it measures:
  ceiling   h2load against nghttpd on loopback, one connection, 16 streams,
            GETs of a file of the object size: what one HTTP/2 connection
            moves on this machine (replication uses one connection per pair).
  catch-up  site b is stopped, mrdbench PUTs N MiB of objects at site a,
            b is started: the time from b's start until a reports b's lag 0
            (everything applied, fsynced and acked) gives the replication
            throughput, for 1 MiB and 64 KiB objects.
  lag       with mrdbench loading site a (PUT, 64 KiB, 4 in flight), probes
            PUT a small object at a, then HEAD it at b every millisecond
            until it is there: the lag from a's 200 to readable at b, p50
            and p99, with the load's share of the catch-up throughput.
Results print as a table; --json writes them. Needs h2load and nghttpd
(nghttp2-client), the build's meridiand and mrdbench, boto3.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def h2_ceiling(size, tmp, total_mib):
    docroot = os.path.join(tmp, "h2root")
    os.makedirs(docroot, exist_ok=True)
    with open(os.path.join(docroot, "obj"), "wb") as f:
        f.write(os.urandom(size))
    port = free_port()
    srv = subprocess.Popen(["nghttpd", "--no-tls", "-d", docroot, str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        n = max(16, (total_mib << 20) // size)
        out = subprocess.run(["h2load", "-n", str(n), "-c", "1", "-m", "16",
                              f"http://127.0.0.1:{port}/obj"],
                             capture_output=True, text=True, timeout=300).stdout
        for line in out.splitlines():
            if line.startswith("finished in"):
                # "finished in 1.23s, 812.3 req/s, 812.30MB/s"
                t = line.split()[2].rstrip(",")
                secs = float(t[:-2]) / 1000 if t.endswith("ms") else float(t.rstrip("s"))
                return n * size / secs / 1e6
        raise RuntimeError("h2load output not understood:\n" + out)
    finally:
        srv.send_signal(signal.SIGTERM)
        srv.wait()


def lag_of(site, peer):
    for p in site.status()["replication"]["peers"]:
        if p["name"] == peer:
            return p["send"]["lag_records"]
    raise KeyError(peer)


def mrdbench(build, site, size, seconds=None, count=None, concurrency=16, prefix="b/", js=None):
    cmd = [os.path.join(build, "bench", "mrdbench"), "--endpoint", site.s3, "--op", "put",
           "--access-key", "AKIATEST", "--secret-key", "testsecretkey", "--bucket", "rbench",
           "--prefix", prefix, "--size", str(size), "--concurrency", str(concurrency),
           "--create-bucket", "--unsigned-payload", "--quiet"]
    cmd += ["--duration", str(seconds)] if seconds else ["--count", str(count)]
    if js:
        cmd += ["--json", js]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def catch_up(build, a, b, size, mib):
    count = (mib << 20) // size
    b.stop()
    js = os.path.join(os.path.dirname(a.root), f"put{size}.json")
    t_put = time.monotonic()
    p = mrdbench(build, a, size, count=count, concurrency=32, prefix=f"c{size}/", js=js)
    _, err = p.communicate(timeout=600)
    if p.returncode != 0:
        raise RuntimeError("mrdbench failed: " + err.decode())
    ingest = count * size / (time.monotonic() - t_put) / 1e6
    t0 = time.monotonic()
    b.start()
    while lag_of(a, "b") != 0:
        if time.monotonic() - t0 > 600:
            raise RuntimeError("b did not catch up")
        time.sleep(0.01)
    secs = time.monotonic() - t0
    return count, count * size / secs / 1e6, secs, ingest


def lag_probes(build, a, b, probes):
    from test_replication import client
    ca, cb = client(a), client(b)
    load = mrdbench(build, a, 64 * 1024, seconds=3600, concurrency=4, prefix="load/")
    lags = []
    try:
        time.sleep(1.0)
        for i in range(probes):
            key = f"probe/{i}"
            ca.put_object(Bucket="rbench", Key=key, Body=b"p")
            t0 = time.monotonic()
            while True:
                try:
                    cb.head_object(Bucket="rbench", Key=key)
                    break
                except Exception:
                    if time.monotonic() - t0 > 10:
                        raise RuntimeError(f"probe {key} never arrived")
                    time.sleep(0.001)
            lags.append((time.monotonic() - t0) * 1000)
        st = [p for p in a.status()["replication"]["peers"] if p["name"] == "b"][0]["send"]
    finally:
        load.send_signal(signal.SIGINT)
        load.wait()
    lags.sort()
    return lags[len(lags) // 2], lags[min(len(lags) - 1, int(len(lags) * 0.99))], st


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.environ.get("MERIDIAN_BUILD_DIR", os.path.join(REPO, "build")))
    ap.add_argument("--mib", type=int, default=1024, help="MiB written per catch-up run")
    ap.add_argument("--probes", type=int, default=300)
    ap.add_argument("--json")
    args = ap.parse_args()
    os.environ["MERIDIAN_BUILD_DIR"] = args.build
    from conftest import Site
    tmp = tempfile.mkdtemp(prefix="repl_bench.")
    res = {"mib": args.mib}
    try:
        a, b = Site(os.path.join(tmp, "a"), name="a", site_id=1), Site(os.path.join(tmp, "b"), name="b", site_id=2)
        a.add_peer(b)
        b.add_peer(a)
        a.start()
        b.start()
        for size, label in ((1 << 20, "1MiB"), (64 << 10, "64KiB")):
            ceil = h2_ceiling(size, tmp, min(args.mib, 2048))
            n, mbs, secs, ingest = catch_up(args.build, a, b, size, args.mib)
            res[label] = {"objects": n, "repl_MBps": round(mbs, 1), "seconds": round(secs, 2),
                          "h2_ceiling_MBps": round(ceil, 1), "ratio": round(mbs / ceil, 3),
                          "local_put_MBps": round(ingest, 1),
                          "ratio_to_local_put": round(mbs / ingest, 3)}
            print(f"{label:>6}: {n} objects replicated at {mbs:8.1f} MB/s in {secs:.2f} s; "
                  f"h2 ceiling {ceil:8.1f} MB/s (ratio {mbs / ceil:.2f}); local PUT of the "
                  f"same objects {ingest:8.1f} MB/s (ratio {mbs / ingest:.2f})")
        p50, p99, st = lag_probes(args.build, a, b, args.probes)
        res["lag_ms"] = {"p50": round(p50, 2), "p99": round(p99, 2), "probes": args.probes}
        print(f"lag under load (64 KiB PUTs, 4 in flight): p50 {p50:.1f} ms, p99 {p99:.1f} ms "
              f"over {args.probes} probes")
        a.stop()
        b.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
