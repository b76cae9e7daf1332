#!/usr/bin/python3
"""Read routing latency: a caught-up local 404 against a proxied GET.

Two sites, a and b. Every byte between them - both replication links and
b's forwarded S3 requests to a - goes through wanem with a one-way delay
(default 40 ms, so 80 ms RTT). The client talks to b over loopback on one
keep-alive connection, with SigV4 headers computed before the clock starts.

  1. caught up: GET of a missing key at b -> 404 answered by b alone;
  2. a key b holds -> 200 from b's own store (the reference);
  3. a's record stream to b held (wanem partition), a key written at a ->
     b is behind a and forwards the GET: 200 with x-meridian-served-by: a.

Prints median, p90, p99 and max in ms for each. Usage:
  bench/route_bench.py [--delay-ms 40] [--n 400] [--n-proxied 60] [--size 4096]
(MERIDIAN_BUILD_DIR picks the build, default build/).
"""
import argparse
import http.client
import os
import statistics
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

from botocore.auth import SigV4Auth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402

from conftest import Site  # noqa: E402
from test_routing import configure, peer_state, put, routing, s3, wait_for  # noqa: E402
from wanem import Wanem  # noqa: E402

CRED = Credentials("AKIATEST", "testsecretkey")


def signed(site, method, path):
    req = AWSRequest(method=method, url=site.s3 + path)
    req.headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD"
    SigV4Auth(CRED, "s3", "us-east-1").add_auth(req)
    return dict(req.headers.items())


def timed(site, path, n, want_status, want_served_by):
    conn = http.client.HTTPConnection("127.0.0.1", site.s3_port, timeout=30)
    heads = [signed(site, "GET", path) for _ in range(n)]
    out = []
    for h in heads:
        t0 = time.perf_counter()
        conn.request("GET", path, headers=h)
        r = conn.getresponse()
        r.read()
        out.append((time.perf_counter() - t0) * 1000)
        assert r.status == want_status, (path, r.status)
        assert r.getheader("x-meridian-served-by") == want_served_by, path
    conn.close()
    return out


def summary(name, ms):
    ms = sorted(ms)
    q = lambda p: ms[min(len(ms) - 1, int(p * len(ms)))]  # noqa: E731
    print("%-34s n=%-4d median %8.3f  p90 %8.3f  p99 %8.3f  max %8.3f ms"
          % (name, len(ms), statistics.median(ms), q(0.90), q(0.99), ms[-1]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--delay-ms", type=int, default=40)
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--n-proxied", type=int, default=60)
    ap.add_argument("--size", type=int, default=4096)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="route-bench-")
    a = Site(os.path.join(tmp, "a"), name="a", site_id=1)
    b = Site(os.path.join(tmp, "b"), name="b", site_id=2)
    w = Wanem(log=os.path.join(tmp, "wanem.log"), seed=1)
    d = args.delay_ms
    ab = w.add_link("ab", target=("127.0.0.1", b.repl_port), delay=d)
    ba = w.add_link("ba", target=("127.0.0.1", a.repl_port), delay=d)
    s3a = w.add_link("s3a", target=("127.0.0.1", a.s3_port), delay=d)
    s3b = w.add_link("s3b", target=("127.0.0.1", b.s3_port), delay=d)
    configure(a, [("b", 2, "%s:%d" % ab, s3b[1])])
    configure(b, [("a", 1, "%s:%d" % ba, s3a[1])])
    a.start()
    b.start()
    try:
        wait_for(lambda: peer_state(b, "a") == "healthy", 30, "a healthy at b")
        assert s3(a, "PUT", "/bench")[0] == 200
        body = os.urandom(args.size)
        put(a, "bench", "here", body)
        wait_for(lambda: s3(b, "HEAD", "/bench/here")[0] == 200, 30, "key at b")
        wait_for(lambda: routing(b)["behind"] == [], 30, "b caught up")
        rtt = [p for p in b.status()["peers"] if p["name"] == "a"][0]["rtt_ms"]
        print("peer a seen from b: rtt %.1f ms (wanem one-way delay %d ms)" % (rtt, d))
        timed(b, "/bench/missing", 20, 404, None)  # warm up
        summary("local 404 at b (caught up)", timed(b, "/bench/missing", args.n, 404, None))
        summary("local GET at b (%d B)" % args.size, timed(b, "/bench/here", args.n, 200, None))
        w.partition("ab")
        put(a, "bench", "only-at-a", body)
        wait_for(lambda: "a" in routing(b)["behind"], 30, "b behind a")
        summary("proxied GET at b -> a (%d B)" % args.size,
                timed(b, "/bench/only-at-a", args.n_proxied, 200, "a"))
        w.heal("ab")
    finally:
        b.stop()
        a.stop()
        w.close()


if __name__ == "__main__":
    main()
