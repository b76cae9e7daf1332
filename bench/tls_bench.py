#!/usr/bin/python3
"""S3 PUT and GET of one 64 MiB object over TLS against plain HTTP, on one
loopback site (docs/benchmarks.md, "S3 over TLS").

    /usr/bin/python3 bench/tls_bench.py [--runs N] [--mib M]

Starts a meridiand (EC 4+2, six data dirs in a temp dir) with both S3
listeners, a throwaway CA and server certificate made with the openssl CLI,
and drives it with curl --aws-sigv4 (UNSIGNED-PAYLOAD), alternating plain and
TLS so both see the same machine load. Prints, per operation and transport,
the median wall time (and MiB/s) and the median CPU seconds used by meridiand
and by curl for one transfer.
"""
import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
from test_tls import TlsSite, make_server_cert  # noqa: E402


def proc_cpu(pid):
    f = open(f"/proc/{pid}/stat").read().split(")")[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--mib", type=int, default=64)
    a = ap.parse_args()
    root = tempfile.mkdtemp(prefix="mrd-tls-bench-")
    site = None
    try:
        ca, crt, key = make_server_cert(os.path.join(root, "pki"))
        site = TlsSite(os.path.join(root, "a"))
        site.enable_s3_tls(crt, key)
        site.start()
        src = os.path.join(root, "obj")
        with open(src, "wb") as f:
            f.write(os.urandom(a.mib << 20))
        curl = ["curl", "-sS", "--fail", "--cacert", ca, "--aws-sigv4", "aws:amz:us-east-1:s3",
                "--user", "AKIATEST:testsecretkey", "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD",
                "-o", "/dev/null"]
        subprocess.run(curl + ["-X", "PUT", site.s3 + "/bench"], check=True)
        res = {}
        for _ in range(a.runs):
            for op in ("PUT", "GET"):
                for label, url in (("plain", site.s3), ("tls", site.s3s)):
                    c0, t0 = proc_cpu(site.proc.pid), time.time()
                    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                    args = ["-T", src] if op == "PUT" else []
                    subprocess.run(curl + args + [url + "/bench/obj"], check=True)
                    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                    res.setdefault((op, label), []).append(
                        (time.time() - t0, proc_cpu(site.proc.pid) - c0,
                         r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime))
        print(f"{a.mib} MiB object, {a.runs} runs each, medians; load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        for (op, label), v in sorted(res.items()):
            wall = statistics.median(x[0] for x in v)
            print(f"{op:4} {label:5}  wall {wall:6.3f} s  {a.mib / wall:7.0f} MiB/s  "
                  f"meridiand cpu {statistics.median(x[1] for x in v):6.3f} s  "
                  f"curl cpu {statistics.median(x[2] for x in v):6.3f} s")
    finally:
        if site:
            site.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
