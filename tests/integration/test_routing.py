"""Read routing and write failover between real meridiand sites.

Two sites, a and b, whose replication links go through wanem (the user-space
WAN emulator), so a test can hold a's record stream to b ("ab" link: the
connection a dials to b) while b's own link to a - which carries b's
heartbeats and brings back a's announced high-water LSN - stays up. b is then
provably behind a. Proxied S3 requests go straight to the peer's S3 port.

What is checked, with real processes, sockets, drives and clients:
  - a caught-up miss is a local 404 (no x-meridian-served-by, counted as a
    local miss), a miss while behind is served by the peer that has the key;
  - a delete marker is answered 404 locally even while behind: a proxy
    never resurrects a deleted key;
  - a site whose drives are all gone serves GETs (and forwards writes) via
    its peer, and serves locally again once the drives are back;
  - write_failover = refuse answers 503 SlowDown;
  - read-your-writes with x-meridian-write-token;
  - drain / undrain through the admin API.
Waits are bounded polls on observable state (admin status), never sleeps
that assume a speed.
"""
import contextlib
import hashlib
import os
import signal
import subprocess
import threading
import time

import boto3
import botocore.config
import botocore.exceptions
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import TOKEN, Site, http, s3_client, vm_hwm_kib, wait_for
from test_s3_ops import streaming_put
from test_wanem import sanitizer_build
from wanem import Wanem, binary_path

CRED = Credentials("AKIATEST", "testsecretkey")


def s3(site, method, path, body=None, headers=None, timeout=20):
    """A SigV4-signed request; returns (status, headers lower-cased, body)."""
    req = AWSRequest(method=method, url=site.s3 + path, data=body or b"",
                     headers=dict(headers or {}))
    req.headers["x-amz-content-sha256"] = (hashlib.sha256(body).hexdigest() if body
                                           else "UNSIGNED-PAYLOAD")
    SigV4Auth(CRED, "s3", "us-east-1").add_auth(req)
    st, hdr, data = http(method, site.s3 + path, headers=dict(req.headers.items()), body=body,
                         timeout=timeout)
    return st, {k.lower(): v for k, v in hdr.items()}, data


def routing(site):
    return site.status()["routing"]


def peer_state(site, name):
    for p in site.status()["peers"]:
        if p["name"] == name:
            return p["state"]
    return None


def configure(site, peers, write_failover="forward", token_wait=300):
    """Rewrites site's config: replication options and peers (name, id, repl addr, s3 port)."""
    with open(site.config) as f:
        text = f.read()
    text = text.replace("secret = test-replication-secret\n",
                        "secret = test-replication-secret\nwrite_failover = %s\n"
                        "token_wait = %d\n" % (write_failover, token_wait))
    for name, sid, repl, s3port in peers:
        text += ("[peer.%s]\nid = %d\nreplication = %s\ns3 = 127.0.0.1:%d\n"
                 % (name, sid, repl, s3port))
    with open(site.config, "w") as f:
        f.write(text)


@contextlib.contextmanager
def running_pair(tmp_path, prepare=None):
    """a (write_failover = refuse) and b (forward), linked through wanem;
    prepare(a, b) runs before they start."""
    if not os.access(binary_path(), os.X_OK):
        pytest.fail("wanem is not built at %s" % binary_path())
    a = Site(str(tmp_path / "a"), name="a", site_id=1)
    b = Site(str(tmp_path / "b"), name="b", site_id=2)
    w = Wanem(log=str(tmp_path / "wanem.log"), seed=7)
    ab = w.add_link("ab", target=("127.0.0.1", b.repl_port))  # a dials b: a's records
    ba = w.add_link("ba", target=("127.0.0.1", a.repl_port))  # b dials a: b's records
    configure(a, [("b", 2, "%s:%d" % ab, b.s3_port)], write_failover="refuse")
    configure(b, [("a", 1, "%s:%d" % ba, a.s3_port)], write_failover="forward")
    try:
        if prepare:
            prepare(a, b)
        a.start()
        b.start()
        # degraded (RTT jitter on a loaded machine) is still routed to
        usable = ("healthy", "degraded")
        wait_for(lambda: peer_state(a, "b") in usable and peer_state(b, "a") in usable,
                 45, "both peers usable")
        yield a, b, w
    finally:
        b.stop()
        a.stop()
        w.close()


@pytest.fixture
def pair(tmp_path):
    with running_pair(tmp_path) as p:
        yield p


def put(site, bucket, key, body, headers=None):
    st, hdr, data = s3(site, "PUT", "/%s/%s" % (bucket, key), body=body, headers=headers)
    assert st == 200, data
    return hdr


def local_copy(site, bucket, key):
    """True once site serves key itself (no x-meridian-served-by)."""
    st, hdr, _ = s3(site, "HEAD", "/%s/%s" % (bucket, key))
    return st == 200 and "x-meridian-served-by" not in hdr


def make_behind(a, b, w, bucket):
    """Holds a's record stream to b and writes at a until b knows it is behind a."""
    w.partition("ab")
    put(a, bucket, "marker-%d" % time.time_ns(), b"x")
    wait_for(lambda: "a" in routing(b)["behind"], 10, "b to see that it is behind a")


def test_caught_up_miss_is_local_behind_miss_is_proxied(pair):
    a, b, w = pair
    assert s3(a, "PUT", "/rtb")[0] == 200
    wait_for(lambda: s3(b, "HEAD", "/rtb")[0] == 200, 10, "bucket at b")
    put(a, "rtb", "old", b"old bytes")
    wait_for(lambda: local_copy(b, "rtb", "old"), 10, "old at b")
    wait_for(lambda: routing(b)["behind"] == [], 10, "b caught up")

    # caught up: a miss is answered here, no WAN trip
    before = routing(b)
    st, hdr, body = s3(b, "GET", "/rtb/nothing-here")
    assert st == 404 and b"NoSuchKey" in body
    assert "x-meridian-served-by" not in hdr
    after = routing(b)
    assert after["local_misses"] == before["local_misses"] + 1
    assert after["proxied"] == before["proxied"]
    metrics = http("GET", b.admin + "/metrics")[2].decode()
    assert "meridian_route_local_misses_total %d" % after["local_misses"] in metrics
    assert 'meridian_route_proxied_total{reason="behind"} 0' in metrics

    # behind: a key only a has is served by a, bytes and headers intact
    make_behind(a, b, w, "rtb")
    data = os.urandom(3 * 1024 * 1024 + 17)  # striped, several proxy slices
    put(a, "rtb", "fresh", data, headers={"x-amz-meta-color": "blue",
                                         "Content-Type": "image/png"})
    st, hdr, body = s3(b, "GET", "/rtb/fresh")
    assert st == 200 and body == data
    assert hdr["x-meridian-served-by"] == "a"
    assert hdr["x-amz-meta-color"] == "blue" and hdr["content-type"] == "image/png"
    st, hdr, _ = s3(b, "GET", "/rtb/fresh", headers={"Range": "bytes=100-199"})
    assert st == 206 and hdr["x-meridian-served-by"] == "a"
    st, hdr, body = s3(b, "HEAD", "/rtb/fresh")
    assert st == 200 and body == b"" and int(hdr["content-length"]) == len(data)
    # a key nobody has: a answers the 404, through b
    st, hdr, _ = s3(b, "GET", "/rtb/nowhere")
    assert st == 404 and hdr["x-meridian-served-by"] == "a"
    # a key b has is served locally even while behind
    st, hdr, body = s3(b, "GET", "/rtb/old")
    assert st == 200 and body == b"old bytes" and "x-meridian-served-by" not in hdr
    assert routing(b)["proxied"]["behind"] >= 4
    assert routing(a)["served_for_peers"] >= 4
    assert routing(b)["proxy_reused"] >= 1  # keep-alive connections to a

    # healed: the record stream catches up and b serves the key itself
    w.heal("ab")
    wait_for(lambda: local_copy(b, "rtb", "fresh"), 20, "fresh replicated to b")
    st, hdr, body = s3(b, "GET", "/rtb/fresh")
    assert st == 200 and body == data and "x-meridian-served-by" not in hdr


def test_delete_marker_is_never_resurrected_by_a_proxy(pair):
    a, b, w = pair
    assert s3(a, "PUT", "/del")[0] == 200
    put(a, "del", "gone", b"doomed")
    wait_for(lambda: local_copy(b, "del", "gone"), 10, "gone at b")
    assert s3(a, "DELETE", "/del/gone")[0] == 204
    wait_for(lambda: s3(b, "HEAD", "/del/gone")[0] == 404, 10, "delete applied at b")
    # caught up with a delete: local 404
    st, hdr, _ = s3(b, "GET", "/del/gone")
    assert st == 404 and "x-meridian-served-by" not in hdr
    # behind a, and a has the key again? No: b's delete marker is still an
    # answer, never a gap to fill from a peer.
    make_behind(a, b, w, "del")
    st, hdr, _ = s3(b, "GET", "/del/gone")
    assert st == 404 and "x-meridian-served-by" not in hdr
    w.heal("ab")


def test_write_token_reads_your_writes(pair):
    a, b, w = pair
    assert s3(a, "PUT", "/tok")[0] == 200
    put(a, "tok", "k", b"version 1")
    wait_for(lambda: local_copy(b, "tok", "k"), 10, "k at b")
    make_behind(a, b, w, "tok")
    hdr = put(a, "tok", "k", b"version 2")
    token = hdr["x-meridian-write-token"]
    assert token.startswith("a:")
    # without the token b serves what it has (stale, local)
    st, h, body = s3(b, "GET", "/tok/k")
    assert st == 200 and body == b"version 1" and "x-meridian-served-by" not in h
    # with it, b waits (token_wait = 300 ms), then asks the origin
    st, h, body = s3(b, "GET", "/tok/k", headers={"x-meridian-write-token": token})
    assert st == 200 and body == b"version 2" and h["x-meridian-served-by"] == "a"
    assert routing(b)["proxied"]["token"] == 1
    # a malformed token is the client's error
    st, _, body = s3(b, "GET", "/tok/k", headers={"x-meridian-write-token": "nosuch:12"})
    assert st == 400 and b"InvalidArgument" in body
    # healed: the token is satisfied here
    w.heal("ab")
    wait_for(lambda: s3(b, "GET", "/tok/k")[2] == b"version 2", 20, "v2 at b")
    st, h, body = s3(b, "GET", "/tok/k", headers={"x-meridian-write-token": token})
    assert st == 200 and body == b"version 2" and "x-meridian-served-by" not in h
    r = routing(b)
    assert r["token_local"] + r["token_waited"] >= 1
    # a DELETE carries a token too, and so does a completed multipart upload
    st, h, _ = s3(a, "DELETE", "/tok/k")
    assert st == 204 and h["x-meridian-write-token"].startswith("a:")
    c = boto3.client("s3", endpoint_url=a.s3, aws_access_key_id="AKIATEST",
                     aws_secret_access_key="testsecretkey", region_name="us-east-1",
                     config=botocore.config.Config(s3={"addressing_style": "path"}))
    up = c.create_multipart_upload(Bucket="tok", Key="mp")["UploadId"]
    etag = c.upload_part(Bucket="tok", Key="mp", UploadId=up, PartNumber=1,
                         Body=b"p" * 1024)["ETag"]
    r = c.complete_multipart_upload(Bucket="tok", Key="mp", UploadId=up, MultipartUpload={
        "Parts": [{"ETag": etag, "PartNumber": 1}]})
    mp_token = r["ResponseMetadata"]["HTTPHeaders"]["x-meridian-write-token"]
    st, h, body = s3(b, "GET", "/tok/mp", headers={"x-meridian-write-token": mp_token})
    assert st == 200 and body == b"p" * 1024


def break_drives(site):
    """Makes every data dir unusable: moved away, a plain file in its place."""
    for d in site.drives:
        os.rename(d, d + ".away")
        with open(d, "w") as f:
            f.write("not a directory\n")


def restore_drives(site):
    for d in site.drives:
        os.unlink(d)
        os.rename(d + ".away", d)


def drives_online(site):
    return sum(1 for d in site.status()["drives"] if d["state"] == "online")


def test_lost_drives_reads_and_writes_go_to_the_peer_then_fail_back(pair):
    a, b, w = pair
    assert s3(a, "PUT", "/drv")[0] == 200
    data = os.urandom(2 * 1024 * 1024)
    put(a, "drv", "big", data)
    wait_for(lambda: local_copy(b, "drv", "big"), 15, "big at b")

    break_drives(b)
    st, hdr, body = s3(b, "GET", "/drv/big")
    assert st == 200 and body == data and hdr["x-meridian-served-by"] == "a"
    # the failed read probed the drives: writes now fail over (b: forward)
    wait_for(lambda: drives_online(b) == 0, 15, "b's drives offline")
    assert routing(b)["writes"] == "forward"
    payload = os.urandom(512 * 1024)
    st, hdr, _ = s3(b, "PUT", "/drv/from-b", body=payload)
    assert st == 200 and hdr["x-meridian-served-by"] == "a"
    st, _, body = s3(a, "GET", "/drv/from-b")
    assert st == 200 and body == payload  # durable at the peer before the 200
    assert "event=route.writes" in b.read_log()

    # drives back: b serves locally again (failback needs no action)
    restore_drives(b)
    wait_for(lambda: drives_online(b) == len(b.drives), 20, "b's drives online")
    wait_for(lambda: routing(b)["reads"] == "local", 15, "b reads local")
    st, hdr, body = s3(b, "GET", "/drv/big")
    assert st == 200 and body == data and "x-meridian-served-by" not in hdr

    # a (write_failover = refuse) without drives: 503 SlowDown, reads via b
    break_drives(a)
    st, hdr, body = s3(a, "GET", "/drv/big")
    assert st == 200 and body == data and hdr["x-meridian-served-by"] == "b"
    wait_for(lambda: drives_online(a) == 0, 15, "a's drives offline")
    st, _, body = s3(a, "PUT", "/drv/refused", body=os.urandom(300 * 1024))
    assert st == 503 and b"SlowDown" in body
    assert routing(a)["writes_refused"] >= 1
    restore_drives(a)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_full_wal_disk_forwards_writes(tmp_path):
    """b's index and WAL sit on a 6 MiB tmpfs. Once it is full, the engine
    refuses writes until restart: b's PUTs go to a (write_failover =
    forward) and are durable there; b keeps serving reads."""
    mounted = []

    def small_meta(a, b):
        os.makedirs(b.meta)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", b.meta], check=True)
        mounted.append(b.meta)

    try:
        with running_pair(tmp_path, small_meta) as (a, b, w):
            assert s3(b, "PUT", "/full")[0] == 200
            wait_for(lambda: s3(a, "HEAD", "/full")[0] == 200, 10, "bucket at a")
            failures, forwarded = [], {}
            for i in range(300):  # inline objects travel in the WAL: it fills
                body = os.urandom(100_000)
                st, hdr, _ = s3(b, "PUT", "/full/k%d" % i, body=body)
                if st != 200:
                    failures.append(st)
                elif hdr.get("x-meridian-served-by") == "a":
                    forwarded["k%d" % i] = body
                if len(forwarded) >= 3:
                    break
            assert len(forwarded) >= 3, "no write was forwarded (failures %s)" % failures[:5]
            assert all(st >= 500 for st in failures), failures  # never a false 200
            for key, body in forwarded.items():
                assert s3(a, "GET", "/full/" + key)[2] == body
            assert routing(b)["writes"] == "forward"
            assert b.proc.poll() is None
    finally:
        for m in mounted:
            subprocess.run(["umount", "-l", m], capture_output=True)


def test_drain_routes_everything_to_the_peer(pair):
    a, b, w = pair
    assert s3(a, "PUT", "/drn")[0] == 200
    put(a, "drn", "k", b"hello")
    wait_for(lambda: local_copy(b, "drn", "k"), 10, "k at b")
    auth = {"Authorization": "Bearer " + TOKEN}
    st, _, body = http("POST", b.admin + "/admin/v1/failover/drain", headers=auth)
    assert st == 200 and b'"drained":true' in body
    assert routing(b)["drained"] is True
    st, hdr, body = s3(b, "GET", "/drn/k")
    assert st == 200 and body == b"hello" and hdr["x-meridian-served-by"] == "a"
    st, hdr, _ = s3(b, "PUT", "/drn/via-b", body=b"written through b")
    assert st == 200 and hdr["x-meridian-served-by"] == "a"
    assert s3(a, "GET", "/drn/via-b")[2] == b"written through b"
    # aws-chunked with signed chunks: the peer checks the client's chain too
    chunked = os.urandom(150_000)
    st, hdr, body = streaming_put(b, "/drn/chunky", chunked, chunk=65536)
    assert st == 200, body
    assert {k.lower(): v for k, v in hdr.items()}["x-meridian-served-by"] == "a"
    assert s3(a, "GET", "/drn/chunky")[2] == chunked
    st, _, body = streaming_put(b, "/drn/bad", chunked, chunk=65536, corrupt_chunk=1)
    assert st == 403 and b"SignatureDoesNotMatch" in body
    assert s3(a, "HEAD", "/drn/bad")[0] == 404
    st, hdr, _ = s3(b, "GET", "/drn?list-type=2")
    assert st == 200 and hdr["x-meridian-served-by"] == "a"
    assert http("GET", b.admin + "/admin/v1/failover/drain", headers=auth)[0] == 405
    st, _, body = http("POST", b.admin + "/admin/v1/failover/undrain", headers=auth)
    assert st == 200 and b'"drained":false' in body
    st, hdr, _ = s3(b, "GET", "/drn/k")
    assert st == 200 and "x-meridian-served-by" not in hdr
    assert "event=route.drain" in b.read_log() and "event=route.undrain" in b.read_log()


def test_proxy_streams_with_bounded_memory(pair):
    """64 MiB up and down through a drained site: its peak RSS barely moves."""
    a, b, w = pair
    assert s3(a, "PUT", "/mem")[0] == 200
    wait_for(lambda: s3(b, "HEAD", "/mem")[0] == 200, 10, "bucket at b")
    auth = {"Authorization": "Bearer " + TOKEN}
    assert http("POST", b.admin + "/admin/v1/failover/drain", headers=auth)[0] == 200
    base = vm_hwm_kib(b.proc.pid)
    data = os.urandom(64 * 1024 * 1024)
    st, hdr, _ = s3(b, "PUT", "/mem/big", body=data, timeout=120)
    assert st == 200 and hdr["x-meridian-served-by"] == "a"
    st, hdr, body = s3(b, "GET", "/mem/big", timeout=120)
    assert st == 200 and hdr["x-meridian-served-by"] == "a"
    assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    grown = vm_hwm_kib(b.proc.pid) - base
    print("b's peak RSS grew by %d KiB for 64 MiB each way" % grown)
    # Bounded, not proportional: 64 MiB and 160 MiB each way both grow it by
    # about 25 MiB (the proxy's ~2 MiB per stream, the loops' buffer caches,
    # and the heap glibc keeps under meridiand's mallopt settings).
    if not sanitizer_build():  # a sanitizer's shadow memory is not the daemon's
        assert grown < 32 * 1024, grown


def test_forged_peer_request_is_refused(pair):
    a, b, w = pair
    assert s3(a, "PUT", "/frg")[0] == 200
    st, _, body = http("GET", b.s3 + "/frg/x", headers={
        "x-meridian-site-id": "1", "x-meridian-time": str(int(time.time() * 1000)),
        "x-meridian-auth": "0" * 64})
    assert st == 403 and b"AccessDenied" in body
    assert "event=route.peer_auth_failed" in b.read_log()


@pytest.fixture
def trio(tmp_path):
    """a, b, c, full mesh, every link through wanem; from b, a is ~10 ms away
    and c ~40 ms (delay on b's own outbound links, which carry its heartbeats)."""
    if not os.access(binary_path(), os.X_OK):
        pytest.fail("wanem is not built at %s" % binary_path())
    sites = {n: Site(str(tmp_path / n), name=n, site_id=i + 1) for i, n in enumerate("abc")}
    w = Wanem(log=str(tmp_path / "wanem.log"), seed=11)
    delay = {("b", "a"): 5, ("b", "c"): 20}
    for x, sx in sites.items():
        peers = []
        for y, sy in sites.items():
            if x == y:
                continue
            link = w.add_link(x + y, target=("127.0.0.1", sy.repl_port),
                              delay=delay.get((x, y), 0))
            peers.append((y, sy.site_id, "%s:%d" % link, sy.s3_port))
        configure(sx, peers)
    for s in sites.values():
        s.start()
    a, b, c = sites["a"], sites["b"], sites["c"]
    try:
        def ready():
            st = {p["name"]: p for p in b.status()["peers"]}
            return (st["a"]["state"] == "healthy" and st["c"]["state"] == "healthy"
                    and 0 < st["a"]["rtt_ms"] < st["c"]["rtt_ms"])
        wait_for(ready, 45, "b to see a healthy and nearer than c")
        yield a, b, c, w
    finally:
        for s in sites.values():
            s.stop()
        w.close()


def served_by(site, path):
    st, hdr, _ = s3(site, "GET", path)
    return hdr.get("x-meridian-served-by") if st == 200 else None


def behind_both(a, b, c, w, data):
    """Bucket "near" everywhere, key "k" at a and c only, b behind both."""
    assert s3(a, "PUT", "/near")[0] == 200
    wait_for(lambda: s3(b, "HEAD", "/near")[0] == 200 and s3(c, "HEAD", "/near")[0] == 200,
             15, "bucket everywhere")
    w.partition("ab")
    w.partition("cb")
    put(a, "near", "k", data)
    put(c, "near", "from-c", b"c")
    wait_for(lambda: local_copy(c, "near", "k"), 15, "k at c")
    wait_for(lambda: sorted(routing(b)["behind"]) == ["a", "c"], 15, "b behind a and c")


def test_stopped_peer_is_bypassed_within_a_heartbeat_or_two(trio):
    a, b, c, w = trio
    data = os.urandom(100_000)
    behind_both(a, b, c, w, data)
    # a is nearer; on a loaded machine RTT jitter may demote it to degraded
    # for a moment (then c, healthy, is preferred), hence the wait
    wait_for(lambda: served_by(b, "/near/k") == "a", 20, "b reading through a")
    a.proc.send_signal(signal.SIGSTOP)  # accepts TCP, answers nothing
    try:
        t0 = time.time()
        st, hdr, body = s3(b, "GET", "/near/k", timeout=30)
        took = time.time() - t0
        assert st == 200 and body == data and hdr["x-meridian-served-by"] == "c"
        print("GET at b with a stopped: %.2f s" % took)
        assert took < 8, took  # a few heartbeat intervals, not a hang
        st, hdr, _ = s3(b, "GET", "/near/k")
        assert hdr["x-meridian-served-by"] == "c"
    finally:
        a.proc.send_signal(signal.SIGCONT)
    w.heal("ab")
    w.heal("cb")


def test_nearest_peer_then_the_next_when_it_dies(trio):
    a, b, c, w = trio
    data = os.urandom(300 * 1024)
    behind_both(a, b, c, w, data)
    # a is nearer (see test_stopped_peer_... for why this is a wait)
    wait_for(lambda: served_by(b, "/near/k") == "a", 20, "b reading through a")

    # a dies: the very next read at b goes to c (connection refused -> next
    # peer), long before a's heartbeats have failed enough to mark it down
    a.proc.kill()
    a.proc.wait()
    st, hdr, body = s3(b, "GET", "/near/k")
    assert st == 200 and body == data and hdr["x-meridian-served-by"] == "c"
    # reads keep answering through a's absence, and c never notices
    errors = []
    deadline = time.time() + 4  # past 3 heartbeat intervals: a is down
    while time.time() < deadline:
        for site in (b, c):
            st, hdr, body = s3(site, "GET", "/near/k")
            if st != 200 or body != data:
                errors.append((site.name, st))
    assert not errors, errors[:5]
    wait_for(lambda: peer_state(b, "a") == "down", 10, "a down at b")
    assert routing(b)["nearest_peer"] == "c"
    assert s3(b, "GET", "/near/k")[1]["x-meridian-served-by"] == "c"
    a.logf.close()
    a.start()
    wait_for(lambda: peer_state(b, "a") == "healthy", 20, "a healthy again at b")
    wait_for(lambda: served_by(b, "/near/k") == "a", 20, "b reading through a again")
    assert s3(b, "GET", "/near/k")[2] == data
    w.heal("ab")
    w.heal("cb")


def test_sites_stay_available_while_a_peer_is_killed_and_restarted(trio):
    """Issue 8's availability during failover: a is killed with SIGKILL and
    restarted three times while clients at b and c keep writing their own
    keys and reading them and keys written at a before. Every request at b
    and c succeeds with the right bytes, and once a is back for good, it
    has every write b and c made meanwhile."""
    a, b, c, w = trio
    assert s3(a, "PUT", "/avail")[0] == 200
    shared = {f"pre{i}": os.urandom(20_000 + i) for i in range(10)}
    for k, v in shared.items():
        put(a, "avail", k, v)
    for s in (b, c):
        wait_for(lambda: all(local_copy(s, "avail", k) for k in shared), 20,
                 f"a's writes at {s.name}")
    stop = threading.Event()
    errors, written = [], {}

    def client(site):
        n = 0
        while not stop.is_set():
            n += 1
            key = f"{site.name}/{n}"
            body = os.urandom(1000 + n)
            st, _, _ = s3(site, "PUT", f"/avail/{key}", body=body)
            if st != 200:
                errors.append((site.name, "PUT", key, st))
                continue
            written[key] = body
            for k in (key, f"pre{n % 10}"):
                st, _, got = s3(site, "GET", f"/avail/{k}")
                if st != 200 or got != written.get(k, shared.get(k)):
                    errors.append((site.name, "GET", k, st))

    threads = [threading.Thread(target=client, args=(s,)) for s in (b, c)]
    for t in threads:
        t.start()
    try:
        for _ in range(3):
            time.sleep(1.5)
            a.proc.kill()
            a.proc.wait()
            time.sleep(1.5)
            a.start()
        time.sleep(1.5)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert len(written) > 20 and not errors, (len(written), errors[:5])
    for key, body in written.items():  # a caught up with everything
        wait_for(lambda: local_copy(a, "avail", key), 30, f"{key} at a")
        assert s3(a, "GET", f"/avail/{key}")[2] == body


@pytest.fixture
def mesh3(tmp_path):
    """a, b, c, full mesh on loopback (no wanem), each knowing the others'
    S3 ports, so requests can be forwarded between any two."""
    sites = {n: Site(str(tmp_path / n), name=n, site_id=i + 1) for i, n in enumerate("abc")}
    for x, sx in sites.items():
        configure(sx, [(y, sy.site_id, "127.0.0.1:%d" % sy.repl_port, sy.s3_port)
                       for y, sy in sites.items() if y != x])
    try:
        for s in sites.values():
            s.start()
        for s in sites.values():
            for o in sites:
                if o != s.name:
                    wait_for(lambda s=s, o=o: peer_state(s, o) in ("healthy", "degraded"), 30,
                             "%s to see %s" % (s.name, o))
        yield sites["a"], sites["b"], sites["c"]
    finally:
        for s in sites.values():
            s.stop()


MIB5 = 5 << 20


def test_multipart_upload_follows_its_site_from_any_site(mesh3):
    """An upload's parts live at the site that created it. A client whose
    requests land on different sites (a load balancer, a failover) still
    completes it: each request for the upload is forwarded to the site its
    id names. That site down: 503 ServiceUnavailable (retry later), and the
    upload goes on once it is back."""
    a, b, c = mesh3
    ca, cb, cc = s3_client(a), s3_client(b), s3_client(c)
    ca.create_bucket(Bucket="mpu")
    wait_for(lambda: all(s3(s, "HEAD", "/mpu")[0] == 200 for s in (b, c)), 15, "bucket everywhere")
    parts = [os.urandom(MIB5), os.urandom(MIB5), os.urandom(1000)]
    uid = ca.create_multipart_upload(Bucket="mpu", Key="ckpt", ContentType="x/ckpt",
                                     Metadata={"step": "7"})["UploadId"]
    assert uid.endswith("-1") and len(uid) == 32, uid  # names a, as long as ids were
    done = []
    for n, (cl, body) in enumerate(zip((cb, cc, cb), parts), start=1):
        r = cl.upload_part(Bucket="mpu", Key="ckpt", UploadId=uid, PartNumber=n, Body=body)
        assert r["ResponseMetadata"]["HTTPHeaders"]["x-meridian-served-by"] == "a"
        done.append({"PartNumber": n, "ETag": r["ETag"]})
    listed = cc.list_parts(Bucket="mpu", Key="ckpt", UploadId=uid)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in listed] == [(1, MIB5), (2, MIB5), (3, 1000)]
    r = cb.complete_multipart_upload(Bucket="mpu", Key="ckpt", UploadId=uid,
                                     MultipartUpload={"Parts": done})
    assert r["ETag"].endswith('-3"')
    whole = b"".join(parts)
    for s, cl in ((a, ca), (b, cb), (c, cc)):
        wait_for(lambda s=s: local_copy(s, "mpu", "ckpt"), 20, "ckpt at " + s.name)
        o = cl.get_object(Bucket="mpu", Key="ckpt")
        assert o["Body"].read() == whole and o["ETag"] == r["ETag"]
        assert o["ContentType"] == "x/ckpt" and o["Metadata"] == {"step": "7"}
    assert routing(b)["proxied"]["upload"] == 3 and routing(c)["proxied"]["upload"] == 2
    assert routing(a)["proxied"]["upload"] == 0

    # abort through another site; the upload is gone at its own site
    uid2 = cc.create_multipart_upload(Bucket="mpu", Key="gone")["UploadId"]
    assert uid2.endswith("-3")
    ca.upload_part(Bucket="mpu", Key="gone", UploadId=uid2, PartNumber=1, Body=b"x")
    ca.abort_multipart_upload(Bucket="mpu", Key="gone", UploadId=uid2)
    with pytest.raises(botocore.exceptions.ClientError) as ei:
        cc.list_parts(Bucket="mpu", Key="gone", UploadId=uid2)
    assert ei.value.response["Error"]["Code"] == "NoSuchUpload"

    # the upload's site is down: 503 with the reason, nothing lost
    uid3 = cc.create_multipart_upload(Bucket="mpu", Key="later")["UploadId"]
    one = os.urandom(MIB5)
    p1 = cb.upload_part(Bucket="mpu", Key="later", UploadId=uid3, PartNumber=1, Body=one)
    c.stop()
    with pytest.raises(botocore.exceptions.ClientError) as ei:
        cb.upload_part(Bucket="mpu", Key="later", UploadId=uid3, PartNumber=2, Body=b"two")
    err = ei.value.response
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert err["Error"]["Code"] == "ServiceUnavailable"
    assert "site c" in err["Error"]["Message"]
    c.logf.close()
    c.start()
    wait_for(lambda: peer_state(b, "c") == "healthy", 30, "c healthy at b")
    p2 = cb.upload_part(Bucket="mpu", Key="later", UploadId=uid3, PartNumber=2, Body=b"two")
    ca.complete_multipart_upload(Bucket="mpu", Key="later", UploadId=uid3, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": p1["ETag"]}, {"PartNumber": 2, "ETag": p2["ETag"]}]})
    wait_for(lambda: local_copy(a, "mpu", "later"), 20, "later at a")
    assert ca.get_object(Bucket="mpu", Key="later")["Body"].read() == one + b"two"

    # an id without a site (as made before ids named one) is the site's own
    with pytest.raises(botocore.exceptions.ClientError) as ei:
        cb.list_parts(Bucket="mpu", Key="ckpt", UploadId="0" * 32)
    assert ei.value.response["Error"]["Code"] == "NoSuchUpload"
    # a site id no topology has: no forward, NoSuchUpload
    with pytest.raises(botocore.exceptions.ClientError) as ei:
        cb.list_parts(Bucket="mpu", Key="ckpt", UploadId="0" * 32 + "-9")
    assert ei.value.response["Error"]["Code"] == "NoSuchUpload"


def test_upload_created_while_drained_stays_with_the_peer_that_took_it(mesh3):
    """CreateMultipartUpload at a drained site goes to a peer, and the id
    names that peer: once the site is undrained, the rest of the upload sent
    to it still reaches the parts."""
    a, b, c = mesh3
    cb = s3_client(b)
    cb.create_bucket(Bucket="drn2")
    wait_for(lambda: all(s3(s, "HEAD", "/drn2")[0] == 200 for s in (a, c)), 15, "bucket everywhere")
    auth = {"Authorization": "Bearer " + TOKEN}
    assert http("POST", b.admin + "/admin/v1/failover/drain", headers=auth)[0] == 200
    r = cb.create_multipart_upload(Bucket="drn2", Key="k")
    holder = r["ResponseMetadata"]["HTTPHeaders"]["x-meridian-served-by"]
    assert holder in ("a", "c") and r["UploadId"].endswith("-%d" % (" abc".index(holder)))
    uid = r["UploadId"]
    p1 = cb.upload_part(Bucket="drn2", Key="k", UploadId=uid, PartNumber=1, Body=os.urandom(MIB5))
    assert http("POST", b.admin + "/admin/v1/failover/undrain", headers=auth)[0] == 200
    p2 = cb.upload_part(Bucket="drn2", Key="k", UploadId=uid, PartNumber=2, Body=b"tail")
    assert p2["ResponseMetadata"]["HTTPHeaders"]["x-meridian-served-by"] == holder
    cb.complete_multipart_upload(Bucket="drn2", Key="k", UploadId=uid, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": p1["ETag"]}, {"PartNumber": 2, "ETag": p2["ETag"]}]})
    wait_for(lambda: local_copy(b, "drn2", "k"), 20, "k at b")
    assert cb.head_object(Bucket="drn2", Key="k")["ContentLength"] == MIB5 + 4
    # the create went by the drain; the rest by the id, drained or not
    assert routing(b)["proxied"]["upload"] == 3
