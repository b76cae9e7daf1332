#!/usr/bin/python3
"""Where a receiving site's CPU goes during a catch-up over mutual TLS, with
and without the [replication] secret (docs/benchmarks.md, "Replication over
mutual TLS without a secret").

    /usr/bin/python3 bench/repl_auth_profile.py [--size BYTES] [--mib N] [--runs R]

Two sites on loopback, pinned mutual TLS (scripts/gen-site-certs.sh). Per
run and mode: b is stopped, N MiB of objects are PUT at a (mrdbench), b is
started under `perf record` and catches up. Prints the catch-up rate, both
daemons' CPU seconds and the receiver's perf samples by library: with a
secret the receiver hashes every record batch head (SHA-256) and HMACs it,
without one it does neither, so the libcrypto share differs by that work
(TLS record decryption and the per-object MD5 check stay in both). Modes
alternate so both see the same machine load. Needs perf and the build's
meridiand and mrdbench.
"""
import argparse
import os
import pathlib
import signal
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
sys.path.insert(0, os.path.join(REPO, "bench"))
import repl_bench  # noqa: E402
from conftest import BUILD, wait_for  # noqa: E402
from test_tls import mtls_mesh, peer, up  # noqa: E402


def dso_shares(data):
    out = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "dso",
                          "--stdio", "-g", "none"], capture_output=True, text=True,
                         timeout=120).stdout
    shares = {}
    for line in out.splitlines():
        if line.strip() and not line.startswith("#") and "%" in line:
            pct, name = line.split("%", 1)
            shares[name.strip()] = float(pct)
    return shares


def one(root, mode, size, mib):
    sites, _ = mtls_mesh(root, names=("a", "b"),
                         no_secret=() if mode == "secret" else ("a", "b"))
    a, b = sites
    data = str(root / "perf.data")
    rec = {}

    def start_b():
        b.start()
        rec["perf"] = subprocess.Popen(["perf", "record", "-F", "999", "-o", data, "-p",
                                        str(b.proc.pid)], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
    try:
        a.start()
        b.start()
        wait_for(lambda: up(peer(a, "b")) and up(peer(b, "a")), 15, "a <-> b up")
        cpu = {}
        _, mbs, _, _ = repl_bench.catch_up(BUILD, a, b, size, mib, tmp=str(root), cpu=cpu,
                                           start_b=start_b)
    finally:
        if "perf" in rec:
            rec["perf"].send_signal(signal.SIGINT)
            rec["perf"].wait(60)
        a.stop()
        b.stop()
    return mbs, cpu, dso_shares(data)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=64 << 10)
    ap.add_argument("--mib", type=int, default=128)
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="repl_auth_profile."))
    for r in range(args.runs):
        for mode in ("secret", "nosecret"):
            mbs, cpu, sh = one(tmp / f"{mode}{r}", mode, args.size, args.mib)
            print(f"{mode:>8}: {mbs:6.1f} MB/s; CPU s sender {cpu['sender']:.2f} receiver "
                  f"{cpu['receiver']:.2f}; receiver samples: libcrypto "
                  f"{sh.get('libcrypto.so.3', 0):.1f}%, kernel "
                  f"{sh.get('[kernel.kallsyms]', 0):.1f}%, libc {sh.get('libc.so.6', 0):.1f}%",
                  flush=True)
    subprocess.run(["rm", "-rf", str(tmp)])


if __name__ == "__main__":
    main()
