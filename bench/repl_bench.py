#!/usr/bin/python3
"""bench/repl_bench.py - replication throughput and lag between two sites on
loopback, next to the raw HTTP/2 ceiling measured in the same run.

    bench/repl_bench.py [--build DIR] [--mib N] [--lag-seconds S] [--json FILE]
    bench/repl_bench.py --wan [--rtt-ms 50] [--rate-mbit 1000] [--mib N] [--json FILE]

What it measures:
  ceiling   h2load against nghttpd on loopback, one connection, 16 streams,
            GETs of a file of the object size: what one HTTP/2 connection
            moves on this machine (replication uses one connection per pair).
  durable   the same disk's ceiling for the same objects, for 1 MiB: 16
            threads each create the object's six 4+2 shard files (256 KiB),
            write and fdatasync them, as the receiver's store must before it
            acks (without hashing, encoding or the WAL and index): the most
            any durable replication could reach here. Replication far below
            the HTTP/2 ceiling but near this one is bound by the disk.
  catch-up  site b is stopped, mrdbench PUTs N MiB of objects at site a,
            b is started: the time from b's start until a reports b's lag 0
            (everything applied, fsynced and acked) gives the replication
            throughput, for 1 MiB and 64 KiB objects. The CPU seconds each
            daemon spent on it (and the load average at its start) are
            printed too: on a shared machine they are steadier than MB/s.
  capacity  16 client threads PUT 1 MiB objects at a as fast as they can
            for 10 s while a replicates to b; the bytes over the time until
            b has them all is the live capacity: both sites share this
            machine, so it is well below the catch-up rate, where a is idle.
  lag       1 MiB PUTs at site a, paced by 16 threads at 50% and then 90%
            of the live capacity just measured, while every
            100 ms a probe PUTs one byte at a and HEADs it at b every
            millisecond until it is there: the lag from a's 200 to
            readable at b, p50, p99 and max, for --lag-seconds at each load.
With --wan the two sites' replication links run through wanem
(tests/multisite/wanem, the lab's emulator: default 50 ms RTT, 1 Gbit/s):
  tcp       iperf3, one stream, through a wanem link with the same delay and
            cap: what one TCP connection gets across this emulated WAN.
  catch-up  as above (1 MiB objects), through the emulated links.
  lag       1 MiB PUTs paced at 50% and then 90% of the catch-up throughput,
            probes as above every 100 ms: p50, p99 and max lag.
Results print as a table; --json writes them. Needs h2load and nghttpd
(nghttp2-client), iperf3 for --wan, the build's meridiand and mrdbench, boto3.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
from conftest import free_port  # noqa: E402


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


def durable_ceiling(size, tmp, total_mib, k=4, m=2, conc=16):
    """Object MB/s when each object's k+m shard files are created, written
    and fdatasynced, conc objects at once, in tmp (the sites' disk)."""
    root = tempfile.mkdtemp(prefix="durable.", dir=tmp)
    count = max(conc, (total_mib << 20) // size)
    shard = os.urandom(-(-size // k))
    next_obj = iter(range(count))
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                i = next(next_obj, None)
            if i is None:
                return
            for j in range(k + m):
                fd = os.open(os.path.join(root, f"{i}.{j}"), os.O_WRONLY | os.O_CREAT, 0o644)
                try:
                    os.write(fd, shard)
                    os.fdatasync(fd)
                finally:
                    os.close(fd)

    threads = [threading.Thread(target=worker) for _ in range(conc)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    secs = time.monotonic() - t0
    shutil.rmtree(root, ignore_errors=True)
    return count * size / secs / 1e6


def lag_of(site, peer):
    for p in site.status()["replication"]["peers"]:
        if p["name"] == peer:
            return p["send"]["lag_records"]
    raise KeyError(peer)


def mrdbench(build, site, size, seconds=None, count=None, concurrency=16, prefix="b/", js=None,
             keys=("AKIATEST", "testsecretkey")):
    cmd = [os.path.join(build, "bench", "mrdbench"), "--endpoint", site.s3, "--op", "put",
           "--access-key", keys[0], "--secret-key", keys[1], "--bucket", "rbench",
           "--prefix", prefix, "--size", str(size), "--concurrency", str(concurrency),
           "--create-bucket", "--unsigned-payload", "--quiet"]
    cmd += ["--duration", str(seconds)] if seconds else ["--count", str(count)]
    if js:
        cmd += ["--json", js]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def cpu_seconds(site):
    """User + system CPU seconds of a site's meridiand so far."""
    with open(f"/proc/{site.proc.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def catch_up(build, a, b, size, mib, stop_b=None, start_b=None, keys=("AKIATEST", "testsecretkey"),
             tmp=None, cpu=None, timing=None):
    """Returns (objects, MB/s, seconds, local PUT MB/s), timed from b's
    start; fills cpu (a dict) with the CPU seconds each daemon spent on the
    catch-up when given (b's since its start, a's from then on), and timing
    (a dict) with "first_ack_s", when a's lag for b first fell (b up,
    connected, the first object applied), and "streaming_MBps", the rate
    from then on."""
    count = (mib << 20) // size
    (stop_b or b.stop)()
    js = os.path.join(tmp or os.path.dirname(a.root), f"put{size}.json")
    t_put = time.monotonic()
    p = mrdbench(build, a, size, count=count, concurrency=32, prefix=f"c{size}/", js=js, keys=keys)
    _, err = p.communicate(timeout=600)
    if p.returncode != 0:
        raise RuntimeError("mrdbench failed: " + err.decode())
    ingest = count * size / (time.monotonic() - t_put) / 1e6
    a_cpu0 = cpu_seconds(a) if cpu is not None else 0
    lag0 = lag_of(a, "b")
    t0 = time.monotonic()
    (start_b or b.start)()
    t_first = None
    while True:
        lag = lag_of(a, "b")
        if t_first is None and lag < lag0:
            t_first = time.monotonic() - t0
        if lag == 0:
            break
        if time.monotonic() - t0 > 600:
            raise RuntimeError("b did not catch up")
        time.sleep(0.01)
    secs = time.monotonic() - t0
    if timing is not None:
        timing["first_ack_s"] = round(t_first, 3)
        timing["streaming_MBps"] = round(count * size / max(secs - t_first, 1e-6) / 1e6, 1)
    if cpu is not None:
        cpu["sender"] = round(cpu_seconds(a) - a_cpu0, 2)
        cpu["receiver"] = round(cpu_seconds(b), 2)
    return count, count * size / secs / 1e6, secs, ingest


def probe_once(ca, cb, key, timeout=10):
    """PUT a 1-byte object at a, HEAD it at b every millisecond: ms from a's
    200 until b has it."""
    ca.put_object(Bucket="rbench", Key=key, Body=b"p")
    t0 = time.monotonic()
    while True:
        try:
            cb.head_object(Bucket="rbench", Key=key)
            return (time.monotonic() - t0) * 1000
        except Exception:
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"probe {key} never arrived")
            time.sleep(0.001)


def pct(sorted_vals, q):
    return sorted_vals[min(len(sorted_vals) - 1, int(len(sorted_vals) * q))]


def iperf_through(wanem, delay_ms, rate, seconds=8):
    """One iperf3 stream through a wanem link with the given one-way delay
    and cap: Mbit/s received."""
    port = free_port()
    srv = subprocess.Popen(["iperf3", "-s", "-1", "-p", str(port)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        host, lport = wanem.add_link("bench.tcp", target=("127.0.0.1", port), delay=delay_ms,
                                     rate=rate)
        out = subprocess.run(["iperf3", "-c", host, "-p", str(lport), "-t", str(seconds), "-J"],
                             capture_output=True, text=True, timeout=seconds + 30).stdout
        return json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e6
    finally:
        srv.kill()
        srv.wait()


class PutLoad:
    """16 threads PUTting 1 MiB objects at a (boto3 clients from
    new_client_a) under prefix, paced to rate_MBps, or as fast as they can
    when rate_MBps is None, until stop(); `sent` counts the PUTs."""

    THREADS = 16

    def __init__(self, new_client_a, prefix, rate_MBps=None):
        self.sent = 0
        self._stop = threading.Event()
        self._body = os.urandom(1 << 20)
        self._interval = (self.THREADS * (1 << 20) / (rate_MBps * 1e6)) if rate_MBps else 0.0
        # clients are made here: botocore's client creation is not thread-safe
        clients = [new_client_a() for _ in range(self.THREADS)]
        self._threads = [threading.Thread(target=self._run, args=(i, c, prefix), daemon=True)
                         for i, c in enumerate(clients)]
        for t in self._threads:
            t.start()

    def _run(self, i, s3, prefix):
        nxt = time.monotonic() + i * self._interval / self.THREADS
        n = 0
        while not self._stop.is_set():
            if self._interval:
                time.sleep(max(0.0, nxt - time.monotonic()))
                nxt += self._interval
            s3.put_object(Bucket="rbench", Key=f"{prefix}/{i}/{n % 8}", Body=self._body)
            self.sent += 1
            n += 1

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)


def paced_lag(new_client_a, cb, rate_MBps, seconds, tag):
    """1 MiB PUTs at a, paced to rate_MBps (PutLoad), while a probe every
    100 ms PUTs one byte at a and polls HEAD at b (client cb). Returns
    (sorted lags, MB/s put)."""
    ca = new_client_a()
    load = PutLoad(new_client_a, "load", rate_MBps)
    lags, t0, i = [], time.monotonic(), 0
    time.sleep(1.0)
    while time.monotonic() - t0 < seconds:
        lags.append(probe_once(ca, cb, f"probe/{tag}/{i}"))
        i += 1
        time.sleep(0.1)
    load.stop()
    return sorted(lags), load.sent * (1 << 20) / (time.monotonic() - t0) / 1e6


def live_capacity(new_client_a, lag_to_b, seconds=10):
    """What the pair sustains live: PutLoad unpaced at a for `seconds` while
    a replicates to b, then the time until b has applied all of it. Returns
    MB/s of 1 MiB objects over that whole time (PUT window + drain): the
    load at which replication keeps up, with both sites sharing this
    machine."""
    t0 = time.monotonic()
    load = PutLoad(new_client_a, "cap")
    time.sleep(seconds)
    load.stop()
    while lag_to_b() != 0:
        if time.monotonic() - t0 > seconds + 300:
            raise RuntimeError("b did not catch up after the capacity run")
        time.sleep(0.01)
    return load.sent * (1 << 20) / (time.monotonic() - t0) / 1e6


def lag_at_loads(new_client_a, cb, mbs, seconds, res):
    """paced_lag at 50% and 90% of mbs (MB/s of 1 MiB objects, measured in
    the same run); results go into res."""
    for frac in (0.5, 0.9):
        lags, put_rate = paced_lag(new_client_a, cb, mbs * frac, seconds, f"{int(frac * 100)}")
        res[f"lag_at_{int(frac * 100)}pct"] = {
            "load_MBps": round(put_rate, 1), "target_MBps": round(mbs * frac, 1),
            "probes": len(lags), "p50_ms": round(pct(lags, 0.5), 1),
            "p99_ms": round(pct(lags, 0.99), 1), "max_ms": round(lags[-1], 1)}
        print(f"lag at {int(frac * 100)}% load ({put_rate:.1f} MB/s of 1 MiB PUTs, target "
              f"{mbs * frac:.1f}): p50 {pct(lags, 0.5):.1f} ms, p99 {pct(lags, 0.99):.1f} ms, "
              f"max {lags[-1]:.1f} ms over {len(lags)} probes")


def wan(args, tmp):
    """Two sites through wanem: TCP ceiling, catch-up throughput, lag at
    50% and 90% load."""
    sys.path.insert(0, os.path.join(REPO, "tests", "multisite", "lab"))
    import lab
    keys = (lab.ACCESS_KEY, lab.SECRET_KEY)
    rate = int(args.rate_mbit * 1e6 / 8)
    spec = {"sites": ["a", "b"], "rtt_ms": {"a-b": args.rtt_ms}, "rate": rate}
    res = {"rtt_ms": args.rtt_ms, "rate_mbit": args.rate_mbit, "mib": args.mib}
    with lab.Cluster(spec, os.path.join(tmp, "wan")) as c:
        tcp = iperf_through(c.wanem, args.rtt_ms / 2, rate)
        c.start_all()
        a, b = c.site("a"), c.site("b")
        n, mbs, secs, ingest = catch_up(args.build, a, b, 1 << 20, args.mib,
                                        stop_b=lambda: c.stop("b"), start_b=lambda: c.start("b"),
                                        keys=keys, tmp=tmp)
        res["tcp_Mbit"] = round(tcp, 1)
        res["repl_Mbit"] = round(mbs * 8, 1)
        res["ratio_to_tcp"] = round(mbs * 8 / tcp, 3)
        res["catch_up"] = {"objects": n, "seconds": round(secs, 2), "local_put_MBps": round(ingest, 1)}
        print(f"tcp through wanem ({args.rtt_ms} ms RTT, {args.rate_mbit} Mbit/s cap): "
              f"{tcp:.0f} Mbit/s; replication catch-up of {n} x 1 MiB: {mbs * 8:.0f} Mbit/s "
              f"in {secs:.2f} s (ratio {mbs * 8 / tcp:.2f})")
        import workload
        lag_at_loads(lambda: workload.s3_client(a, read_timeout=30), workload.s3_client(b), mbs,
                     args.lag_seconds, res)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.environ.get("MERIDIAN_BUILD_DIR", os.path.join(REPO, "build")))
    ap.add_argument("--mib", type=int, default=1024, help="MiB written per catch-up run")
    ap.add_argument("--json")
    ap.add_argument("--wan", action="store_true", help="through wanem (see above)")
    ap.add_argument("--rtt-ms", type=float, default=50)
    ap.add_argument("--rate-mbit", type=float, default=1000)
    ap.add_argument("--lag-seconds", type=float, default=15)
    args = ap.parse_args()
    os.environ["MERIDIAN_BUILD_DIR"] = args.build
    from conftest import Site
    tmp = tempfile.mkdtemp(prefix="repl_bench.")
    res = {"mib": args.mib}
    try:
        if args.wan:
            res = wan(args, tmp)
            return finish(args, res)
        a, b = Site(os.path.join(tmp, "a"), name="a", site_id=1), Site(os.path.join(tmp, "b"), name="b", site_id=2)
        a.add_peer(b)
        b.add_peer(a)
        a.start()
        b.start()
        for size, label in ((1 << 20, "1MiB"), (64 << 10, "64KiB")):
            ceil = h2_ceiling(size, tmp, min(args.mib, 2048))
            cpu, timing = {}, {}
            load = os.getloadavg()[0]
            n, mbs, secs, ingest = catch_up(args.build, a, b, size, args.mib, cpu=cpu,
                                            timing=timing)
            res[label] = {"objects": n, "repl_MBps": round(mbs, 1), "seconds": round(secs, 2),
                          **timing,
                          "h2_ceiling_MBps": round(ceil, 1), "ratio": round(mbs / ceil, 3),
                          "local_put_MBps": round(ingest, 1),
                          "ratio_to_local_put": round(mbs / ingest, 3),
                          "cpu_seconds": cpu, "load_average": round(load, 2)}
            print(f"{label:>6}: {n} objects replicated at {mbs:8.1f} MB/s in {secs:.2f} s; "
                  f"h2 ceiling {ceil:8.1f} MB/s (ratio {mbs / ceil:.2f}); local PUT of the "
                  f"same objects {ingest:8.1f} MB/s (ratio {mbs / ingest:.2f}); CPU s sender "
                  f"{cpu['sender']:.2f} receiver {cpu['receiver']:.2f}; load {load:.1f}")
            print(f"{'':>6}  timed from b's start; the first object was applied "
                  f"{timing['first_ack_s']:.2f} s after it, and from then on the rate was "
                  f"{timing['streaming_MBps']:.1f} MB/s (ratio {timing['streaming_MBps'] / ceil:.2f})")
            if size == 1 << 20:
                dur = durable_ceiling(size, tmp, min(args.mib, 1024))
                res[label].update({"durable_ceiling_MBps": round(dur, 1),
                                   "ratio_to_durable": round(mbs / dur, 3),
                                   "streaming_ratio_to_durable":
                                       round(timing["streaming_MBps"] / dur, 3)})
                print(f"{'':>6}  durable ceiling of this disk for the same objects (six shard "
                      f"files each, write + fdatasync, 16 at once) {dur:8.1f} MB/s: replication "
                      f"at {mbs / dur:.2f} of it ({timing['streaming_MBps'] / dur:.2f} from the "
                      f"first object on)")
        from test_replication import client
        cap = live_capacity(lambda: client(a), lambda: lag_of(a, "b"))
        res["live_capacity_MBps"] = round(cap, 1)
        print(f"live capacity (1 MiB PUTs at a, 16 clients, until b has them all): "
              f"{cap:.1f} MB/s")
        lag_at_loads(lambda: client(a), client(b), cap, args.lag_seconds, res)
        a.stop()
        b.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    finish(args, res)


def finish(args, res):
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
