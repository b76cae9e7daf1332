"""Several S3 event loops ([s3] loops): real meridiand processes, real
clients (boto3, curl, raw sockets for requests that stall on purpose).

Connections are spread over the loops by the kernel (SO_REUSEPORT), so the
tests make many connections and assert on what /admin/v1/status and
/metrics say each loop did, never on which loop one connection landed on.
"""
import concurrent.futures
import re
import select
import signal
import socket
import subprocess
import time
import urllib.parse

from conftest import MERIDIAND, Site, http, s3_client, wait_for


def loops_site(tmp_path, n, name="a"):
    s = Site(str(tmp_path / name), name=name)
    with open(s.config, "a") as f:
        f.write(f"[s3]\nloops = {n}\n")
    return s


def loop_stats(site):
    return site.status()["s3_loops"]


def presigned_put(s3, bucket, key):
    return s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": key},
                                     ExpiresIn=600)


def start_stalled_put(url, total, sent):
    """A PUT whose head and first `sent` of `total` body bytes go out, then
    nothing: the request sits mid-body on its loop. Returns the socket."""
    u = urllib.parse.urlsplit(url)
    s = socket.create_connection((u.hostname, u.port), timeout=30)
    head = (f"PUT {u.path}?{u.query} HTTP/1.1\r\nHost: {u.netloc}\r\n"
            f"Content-Length: {total}\r\n\r\n").encode()
    s.sendall(head + b"x" * sent)
    return s


def finish_put(s, total, sent):
    s.sendall(b"x" * (total - sent))
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else None


def test_many_clients_are_served_by_several_loops(tmp_path):
    site = loops_site(tmp_path, 4).start()
    try:
        st = loop_stats(site)
        assert [l["loop"] for l in st] == [0, 1, 2, 3]
        s3_client(site).create_bucket(Bucket="loops")

        def client(i):
            c = s3_client(site)  # its own connection pool
            for j in range(5):
                body = f"object {i}.{j}".encode() * 100
                c.put_object(Bucket="loops", Key=f"k{i}/{j}", Body=body)
                assert c.get_object(Bucket="loops", Key=f"k{i}/{j}")["Body"].read() == body
            return i

        with concurrent.futures.ThreadPoolExecutor(24) as ex:
            assert sorted(ex.map(client, range(24))) == list(range(24))
        # curl, one connection each
        for i in range(8):
            r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                site.s3 + "/health/ready"], capture_output=True, text=True,
                               timeout=10)
            assert r.stdout == "200"
        st = loop_stats(site)
        served = [l["requests"] for l in st]
        assert sum(served) >= 24 * 10 + 8, served
        assert sum(1 for n in served if n > 0) > 1, served
        # the same counts in /metrics
        _, _, body = http("GET", site.admin + "/metrics")
        m = dict(re.findall(r'^meridian_s3_loop_requests_total\{loop="(\d+)"\} (\d+)$',
                            body.decode(), re.M))
        assert len(m) == 4
        assert sum(1 for v in m.values() if int(v) > 0) > 1, m
        assert "meridian_s3_loops 4" in body.decode()
        # request ids stay unique across loops
        ids = set()
        for i in range(20):
            _, h, _ = http("GET", site.s3 + "/loops/missing-" + str(i))
            ids.add(h["x-amz-request-id"])
        assert len(ids) == 20
    finally:
        assert site.stop() == 0


def test_a_stalled_request_does_not_stop_the_others(tmp_path):
    site = loops_site(tmp_path, 2).start()
    try:
        s3 = s3_client(site)
        s3.create_bucket(Bucket="stall")
        total, sent = 1 << 20, 4096
        base = loop_stats(site)  # boto3 keeps its connection open
        stalled = start_stalled_put(presigned_put(s3, "stall", "slow"), total, sent)
        busy = wait_for(lambda: [l for l, b in zip(loop_stats(site), base)
                                 if l["connections_open"] > b["connections_open"]],
                        what="the stalled connection to show")
        stalled_loop = busy[0]["loop"]
        before = busy[0]["requests"]

        def one(i):
            c = s3_client(site)
            c.put_object(Bucket="stall", Key=f"fast{i}", Body=b"fast" * i)
            return c.get_object(Bucket="stall", Key=f"fast{i}")["Body"].read() == b"fast" * i

        t0 = time.time()
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            assert all(ex.map(one, range(16)))
        assert time.time() - t0 < 30
        after = [l for l in loop_stats(site) if l["loop"] == stalled_loop][0]
        # the loop holding the stalled request kept serving other connections
        assert after["requests"] > before + 2, (before, after)
        assert finish_put(stalled, total, sent) == 200
        assert len(s3.get_object(Bucket="stall", Key="slow")["Body"].read()) == total
    finally:
        assert site.stop() == 0


def test_sigterm_drains_requests_on_every_loop(tmp_path):
    site = loops_site(tmp_path, 4).start()
    s3 = s3_client(site)
    s3.create_bucket(Bucket="drain")
    total, sent = 256 << 10, 1024
    base = loop_stats(site)  # boto3 keeps its connection open
    socks = [start_stalled_put(presigned_put(s3, "drain", f"o{i}"), total, sent)
             for i in range(12)]

    def in_flight():
        now = loop_stats(site)
        more = [l["connections_open"] - b["connections_open"] for l, b in zip(now, base)]
        return sum(more) == 12 and [n for n in more if n > 0]

    busy = wait_for(in_flight, what="12 uploads in flight")
    assert len(busy) > 1, busy
    site.proc.send_signal(signal.SIGTERM)
    # new connections are refused once every loop stopped listening
    wait_for(lambda: _refused(site.s3_port), timeout=5, what="the S3 listeners to close")
    assert [finish_put(s, total, sent) for s in socks] == [200] * 12
    site.proc.wait(10)
    assert site.stop() == 0
    assert "shutdown.complete" in site.read_log()
    site.start()
    s3 = s3_client(site)
    try:
        for i in range(12):
            assert len(s3.get_object(Bucket="drain", Key=f"o{i}")["Body"].read()) == total
    finally:
        assert site.stop() == 0


def _refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except OSError:
        return True


def test_loops_config_and_a_port_held_by_another_socket(tmp_path):
    site = loops_site(tmp_path, 0)
    r = subprocess.run([MERIDIAND, "--config", site.config, "--check-config"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 1 and "loops" in r.stderr and "1..64" in r.stderr, r.stderr

    one = loops_site(tmp_path, 1, name="one").start()
    try:
        assert [l["loop"] for l in loop_stats(one)] == [0]
        s3_client(one).create_bucket(Bucket="single")
        assert loop_stats(one)[0]["requests"] >= 1
    finally:
        assert one.stop() == 0

    # SO_REUSEPORT must not let a daemon share a port another socket holds,
    # even one that set SO_REUSEPORT itself
    two = loops_site(tmp_path, 2, name="two")
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(("127.0.0.1", two.s3_port))
    holder.listen(1)
    try:
        p = subprocess.run([MERIDIAND, "--config", two.config], capture_output=True, text=True,
                           timeout=20)
        assert p.returncode == 2, p.stderr
        assert f"127.0.0.1:{two.s3_port}" in p.stderr
    finally:
        holder.close()


def test_max_connections_is_one_limit_for_every_loop(tmp_path):
    """[s3] max_connections counts the connections of all loops together:
    with 4 loops and a limit of 6, of 8 open connections 2 are answered 503
    (Retry-After) and closed, wherever the kernel put them, and slots that
    free up are usable again. Before the limit was shared, each loop had
    its own and all 8 were kept."""
    bad = loops_site(tmp_path, 2, name="bad")
    with open(bad.config, "a") as f:
        f.write("max_connections = 0\n")
    r = subprocess.run([MERIDIAND, "--config", bad.config, "--check-config"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 1 and "max_connections" in r.stderr, r.stderr

    site = loops_site(tmp_path, 4)
    with open(site.config, "a") as f:
        f.write("max_connections = 6\n")
    site.start()
    held = []
    try:
        # raw connections first (the admin API, which status comes from, is
        # not an S3 connection): 6 are kept, the other 2 refused
        for _ in range(8):
            held.append(socket.create_connection(("127.0.0.1", site.s3_port), timeout=10))
        wait_for(lambda: site.status()["s3_http"]["connections_open"] >= 6, 20,
                 "6 S3 connections open")
        # several loops accepting at once must not go past the limit together
        time.sleep(0.3)
        assert site.status()["s3_http"]["connections_open"] == 6
        refused, deadline = [], time.time() + 5
        while len(refused) < 2 and time.time() < deadline:
            ready, _, _ = select.select([s for s in held if s not in refused], [], [], 0.2)
            for s in ready:
                refused.append(s)
        assert len(refused) == 2, len(refused)
        for s in refused:
            data = s.recv(4096)
            assert data.startswith(b"HTTP/1.1 503") and b"Retry-After: 1" in data, data
        # the 6 kept ones are open and waiting for a request
        assert not select.select([s for s in held if s not in refused], [], [], 0.3)[0]
        assert site.status()["s3_http"]["connections_open"] == 6
        log = site.read_log()
        assert "event=http.conn_limit" in log and "max_connections=6" in log
        for s in held:
            s.close()
        held = []
        # the slots free up: requests are served again
        wait_for(lambda: site.status()["s3_http"]["connections_open"] == 0, 20,
                 "the raw connections to be closed")
        s3 = s3_client(site)
        s3.create_bucket(Bucket="limits")
        s3.put_object(Bucket="limits", Key="k", Body=b"after the limit")
        assert s3.get_object(Bucket="limits", Key="k")["Body"].read() == b"after the limit"
    finally:
        for s in held:
            s.close()
        assert site.stop() == 0
