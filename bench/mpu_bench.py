#!/usr/bin/python3
"""bench/mpu_bench.py - `aws s3 cp` of one large file against one meridiand,
as multipart (awscli's defaults: 8 MiB parts, 10 in flight) and as a single
PUT, then back: throughput and the daemon's peak RSS (VmHWM) after each.

    bench/mpu_bench.py [--build DIR] [--mib N]

The daemon is a fresh site on loopback (6 data dirs under a temp dir, EC
4+2), started once per mode, so each peak RSS belongs to that mode alone.
Needs /usr/bin/aws and the build's meridiand.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--mib", type=int, default=1024)
    a = ap.parse_args()
    os.environ["MERIDIAN_BUILD_DIR"] = os.path.abspath(a.build)
    sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
    from conftest import Site, vm_hwm_kib

    tmp = tempfile.mkdtemp(prefix="mpu_bench.")
    try:
        src = os.path.join(tmp, "src.bin")
        with open(src, "wb") as f:
            for _ in range(a.mib):
                f.write(os.urandom(1 << 20))
        size = a.mib << 20
        print(f"| mode | object | PUT MB/s | peak RSS after PUT MiB | GET MB/s | "
              f"peak RSS after GET MiB |\n|---|---|---|---|---|---|")
        for mode, threshold in (("multipart (awscli defaults)", None),
                                ("single PUT", "5GB")):
            site = Site(os.path.join(tmp, mode.split()[0])).start()
            try:
                cfg = os.path.join(tmp, "aws.cfg")
                with open(cfg, "w") as f:
                    f.write("[default]\n")
                    if threshold:
                        f.write(f"s3 =\n  multipart_threshold = {threshold}\n")
                env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
                env.update(AWS_ACCESS_KEY_ID="AKIATEST", AWS_SECRET_ACCESS_KEY="testsecretkey",
                           AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE=cfg,
                           AWS_SHARED_CREDENTIALS_FILE="/dev/null", AWS_PAGER="")

                def aws(*args):
                    r = subprocess.run(["/usr/bin/aws", "--endpoint-url", site.s3, *args],
                                       env=env, capture_output=True, text=True, timeout=3600)
                    if r.returncode != 0:
                        raise SystemExit(r.stderr)

                aws("s3", "mb", "s3://bench")
                t = time.time()
                aws("s3", "cp", src, "s3://bench/obj")
                put = size / (time.time() - t) / 1e6
                hwm_put = vm_hwm_kib(site.proc.pid) / 1024
                t = time.time()
                aws("s3", "cp", "s3://bench/obj", os.path.join(tmp, "back.bin"))
                get = size / (time.time() - t) / 1e6
                hwm_get = vm_hwm_kib(site.proc.pid) / 1024
                os.unlink(os.path.join(tmp, "back.bin"))
                print(f"| {mode} | {a.mib} MiB | {put:.1f} | {hwm_put:.1f} | {get:.1f} | "
                      f"{hwm_get:.1f} |")
            finally:
                site.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
