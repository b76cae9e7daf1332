"""HTTP/1.1 edge cases on the S3 port of a real meridiand, with raw sockets
where clients would hide what goes over the wire:
  - Expect: 100-continue: "100 Continue" only once the PUT's bucket is
    known; a missing bucket or a bad signature is answered instead, and the
    body is never sent (boto3 then gets NoSuchBucket without uploading);
  - pipelined requests answered in order;
  - an oversized header section, request target or malformed request: the
    HTTP status (431, 414, 400) with an S3 XML error and x-amz-request-id,
    and the daemon keeps serving;
  - an early answer (404, 403) reaches a client still sending its body:
    the daemon half-closes and drains instead of resetting;
  - request bodies in plain chunked transfer-encoding (not aws-chunked):
    UNSIGNED-PAYLOAD and a signed SHA-256, also from curl reading stdin.
"""
import hashlib
import io
import os
import re
import socket
import subprocess
import time

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from conftest import s3_client, wait_for

KEY, SECRET = "AKIATEST", "testsecretkey"


client = s3_client


def sign(site, method, path, payload_sha, extra=None):
    req = AWSRequest(method=method, url=site.s3 + path, headers=dict(extra or {}))
    req.headers["x-amz-content-sha256"] = payload_sha
    SigV4Auth(Credentials(KEY, SECRET), "s3", "us-east-1").add_auth(req)
    return dict(req.headers.items())


def head_bytes(site, method, path, headers, extra_lines=()):
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: 127.0.0.1:%d" % site.s3_port]
    lines += ["%s: %s" % (k, v) for k, v in headers.items() if k.lower() != "host"]
    lines += list(extra_lines)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Conn:
    """A raw connection that reads responses (status, headers, body) one by
    one, interim ones included."""

    def __init__(self, site):
        self.s = socket.create_connection(("127.0.0.1", site.s3_port), timeout=15)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def quiet(self, secs):
        """True when nothing arrives for secs."""
        self.s.settimeout(secs)
        try:
            d = self.s.recv(65536)
        except socket.timeout:
            return not self.buf
        finally:
            self.s.settimeout(15)
        self.buf += d
        return False

    def _fill(self):
        d = self.s.recv(65536)
        if not d:
            raise EOFError("connection closed")
        self.buf += d

    def response(self, head=False):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        raw, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = raw.decode().split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {k.lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
        n = 0 if head or status in (100, 204, 304) else int(hdrs.get("content-length", 0))
        while len(self.buf) < n:
            self._fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, hdrs, body

    def closed(self):
        try:
            self.s.settimeout(5)
            while True:
                d = self.s.recv(65536)
                if not d:
                    return True
                self.buf += d
        except (socket.timeout, ConnectionResetError):
            return False

    def close(self):
        self.s.close()


def code(body):
    m = re.search(rb"<Code>([^<]*)</Code>", body)
    return m.group(1).decode() if m else None


def test_expect_100_continue_waits_for_the_bucket(site):
    client(site).create_bucket(Bucket="expect")
    # the bucket exists: 100 Continue, then the body, then 200
    c = Conn(site)
    c.send(head_bytes(site, "PUT", "/expect/k", sign(site, "PUT", "/expect/k", "UNSIGNED-PAYLOAD"),
                      ["Content-Length: 5", "Expect: 100-continue"]))
    st, _, _ = c.response()
    assert st == 100
    c.send(b"hello")
    st, hdr, _ = c.response()
    assert st == 200 and "connection" not in hdr
    # on the same connection, a missing bucket: the final answer instead of
    # 100 Continue, and the connection closes without the body being sent
    c.send(head_bytes(site, "PUT", "/nobucket/k",
                      sign(site, "PUT", "/nobucket/k", "UNSIGNED-PAYLOAD"),
                      ["Content-Length: 1000000", "Expect: 100-continue"]))
    st, hdr, body = c.response()
    assert st == 404 and code(body) == "NoSuchBucket", body
    assert hdr["connection"] == "close" and hdr["x-amz-request-id"]
    assert c.closed()
    c.close()
    # a bad signature: 403 at once, no 100
    h = sign(site, "PUT", "/expect/k2", "UNSIGNED-PAYLOAD")
    h["Authorization"] = h["Authorization"][:-4] + "0000"
    c = Conn(site)
    c.send(head_bytes(site, "PUT", "/expect/k2", h, ["Content-Length: 5",
                                                      "Expect: 100-continue"]))
    st, _, body = c.response()
    assert st == 403 and code(body) == "SignatureDoesNotMatch"
    c.close()
    # an empty body into a missing bucket: no 100 either, and the
    # connection is not reused (clients misread the next answer otherwise)
    c = Conn(site)
    c.send(head_bytes(site, "PUT", "/nobucket/e",
                      sign(site, "PUT", "/nobucket/e", hashlib.sha256(b"").hexdigest()),
                      ["Content-Length: 0", "Expect: 100-continue"]))
    st, hdr, body = c.response()
    assert st == 404 and hdr["connection"] == "close"
    assert c.closed()
    c.close()
    assert client(site).get_object(Bucket="expect", Key="k")["Body"].read() == b"hello"


class CountingBody(io.BytesIO):
    """A request body that counts what is read from it once armed."""

    def __init__(self, data):
        super().__init__(data)
        self.armed, self.sent = False, 0

    def read(self, *args):
        d = super().read(*args)
        if self.armed:
            self.sent += len(d)
        return d


def test_boto3_put_into_a_missing_bucket_sends_no_body(site):
    """botocore sends Expect: 100-continue: with a missing bucket it gets
    NoSuchBucket without uploading the 64 MiB (what it reads from the body
    after signing is counted), with the bucket present all of it goes."""
    c = client(site)
    c.create_bucket(Bucket="present")
    for bucket, want_sent in (("present", 64 << 20), ("missing-bkt", 0)):
        body = CountingBody(b"\0" * (64 << 20))
        c.meta.events.register("before-send.s3.PutObject",
                               lambda **kw: setattr(body, "armed", True))
        if want_sent:
            c.put_object(Bucket=bucket, Key="big", Body=body)
            assert body.sent >= want_sent
        else:
            with pytest.raises(c.exceptions.NoSuchBucket):
                c.put_object(Bucket=bucket, Key="big", Body=body)
            assert body.sent < (1 << 20), "the body was uploaded anyway"
        c.meta.events.unregister("before-send.s3.PutObject")


def test_pipelined_requests_answer_in_order(site):
    client(site).create_bucket(Bucket="pipe")
    reqs = [("PUT", "/pipe/a", b"first"), ("PUT", "/pipe/b", b"second"),
            ("GET", "/pipe/a", b""), ("HEAD", "/pipe/b", b""), ("GET", "/pipe/missing", b""),
            ("GET", "/pipe/b", b"")]
    data = b""
    for method, path, body in reqs:
        h = sign(site, method, path, hashlib.sha256(body).hexdigest())
        data += head_bytes(site, method, path, h, ["Content-Length: %d" % len(body)]
                           if body else []) + body
    c = Conn(site)
    c.send(data)  # all at once
    got = [c.response(head=(m == "HEAD")) for m, _, _ in reqs]
    assert [g[0] for g in got] == [200, 200, 200, 200, 404, 200]
    assert got[2][2] == b"first" and got[5][2] == b"second"
    assert got[3][1]["content-length"] == "6"
    assert code(got[4][2]) == "NoSuchKey"
    ids = [g[1]["x-amz-request-id"] for g in got]
    assert len(set(ids)) == len(ids)
    c.close()


def test_oversized_and_malformed_heads_get_s3_errors(site):
    client(site).create_bucket(Bucket="big-head")
    h = sign(site, "GET", "/big-head", "UNSIGNED-PAYLOAD")
    cases = [
        (head_bytes(site, "GET", "/big-head", h, ["x-big: " + "a" * 40000]), 431,
         "RequestHeaderSectionTooLarge"),
        (head_bytes(site, "GET", "/big-head", h, ["x-h%d: v" % i for i in range(200)]), 431,
         "RequestHeaderSectionTooLarge"),
        (head_bytes(site, "GET", "/big-head/" + "k" * 9000, h), 414, "InvalidURI"),
        (b"GET /big-head HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
         400, "InvalidRequest"),
        (b"NOT A REQUEST\r\n\r\n", 400, "InvalidRequest"),
    ]
    for raw, status, want in cases:
        c = Conn(site)
        try:
            c.send(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered and closed before all of it went out
        st, hdr, body = c.response()
        assert st == status and code(body) == want, (status, body)
        assert hdr["content-type"] == "application/xml" and hdr["connection"] == "close"
        assert re.fullmatch(r"[0-9A-F]{16}", hdr["x-amz-request-id"])
        assert b"<RequestId>%s</RequestId>" % hdr["x-amz-request-id"].encode() in body
        c.close()
    # the daemon is fine
    assert client(site).list_objects_v2(Bucket="big-head")["KeyCount"] == 0


def test_plain_chunked_request_bodies(site, tmp_path):
    c = client(site)
    c.create_bucket(Bucket="te-chunked")
    body = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    for key, sha, want in (("unsigned", "UNSIGNED-PAYLOAD", 200),
                           ("signed", hashlib.sha256(b"hello world").hexdigest(), 200),
                           ("bad-sha", hashlib.sha256(b"hello worlX").hexdigest(), 400)):
        path = "/te-chunked/" + key
        conn = Conn(site)
        conn.send(head_bytes(site, "PUT", path, sign(site, "PUT", path, sha),
                             ["Transfer-Encoding: chunked"]) + body)
        st, _, resp = conn.response()
        assert st == want, resp
        conn.close()
    assert c.get_object(Bucket="te-chunked", Key="unsigned")["Body"].read() == b"hello world"
    assert c.get_object(Bucket="te-chunked", Key="signed")["Body"].read() == b"hello world"
    with pytest.raises(c.exceptions.ClientError):
        c.head_object(Bucket="te-chunked", Key="bad-sha")
    # curl uploading from a pipe sends Transfer-Encoding: chunked
    data = os.urandom(3 << 20)
    r = subprocess.run(["curl", "-sS", "--fail-with-body", "--max-time", "60", "--aws-sigv4",
                        "aws:amz:us-east-1:s3", "--user", "%s:%s" % (KEY, SECRET), "-H",
                        "x-amz-content-sha256: UNSIGNED-PAYLOAD", "-T", "-", "-v",
                        site.s3 + "/te-chunked/from-curl"],
                       input=data, capture_output=True, timeout=90)
    assert r.returncode == 0, r.stderr[-2000:]
    assert b"Transfer-Encoding: chunked" in r.stderr
    assert c.get_object(Bucket="te-chunked", Key="from-curl")["Body"].read() == data


def test_expect_and_empty_bodies_through_a_drained_site(tmp_path):
    """boto3 through a drained site (every request forwarded to its peer):
    Expect: 100-continue on the way in, an empty PUT (its Content-Length: 0
    must be forwarded too), and a missing bucket answered by the peer."""
    from conftest import TOKEN, http
    from test_routing import running_pair

    with running_pair(tmp_path) as (a, b, w):
        ca, cb = client(a), client(b)
        ca.create_bucket(Bucket="pxe")
        for _ in range(100):
            try:
                cb.head_bucket(Bucket="pxe")
                break
            except cb.exceptions.ClientError:
                time.sleep(0.1)
        assert http("POST", b.admin + "/admin/v1/failover/drain",
                    headers={"Authorization": "Bearer " + TOKEN})[0] == 200
        data = os.urandom(3 << 20)
        r = cb.put_object(Bucket="pxe", Key="k", Body=data)
        assert r["ResponseMetadata"]["HTTPHeaders"]["x-meridian-served-by"] == "a"
        assert ca.get_object(Bucket="pxe", Key="k")["Body"].read() == data
        cb.put_object(Bucket="pxe", Key="empty", Body=b"")
        assert ca.head_object(Bucket="pxe", Key="empty")["ContentLength"] == 0
        with pytest.raises(cb.exceptions.NoSuchBucket):
            cb.put_object(Bucket="no-pxe", Key="k", Body=data)
        cb.put_object(Bucket="pxe", Key="after", Body=b"y")
        assert ca.get_object(Bucket="pxe", Key="after")["Body"].read() == b"y"


def test_early_answer_survives_an_unread_body(site):
    """An answer given before the body is read (missing bucket, bad
    signature) must reach the client that keeps sending its body: the daemon
    half-closes and drains instead of closing into a reset."""
    client(site).create_bucket(Bucket="linger")
    bad = sign(site, "PUT", "/linger/k", "UNSIGNED-PAYLOAD")
    bad["Authorization"] = bad["Authorization"][:-4] + "0000"
    cases = [("/nobucket/k", sign(site, "PUT", "/nobucket/k", "UNSIGNED-PAYLOAD"),
              404, "NoSuchBucket"),
             ("/linger/k", bad, 403, "SignatureDoesNotMatch")]
    for path, hdrs, want, want_code in cases:
        for _ in range(3):
            c = Conn(site)
            # a client without Expect: 100-continue (boto3, urllib3) sends
            # the whole body before it reads the answer: the sends must not
            # fail with a reset
            c.send(head_bytes(site, "PUT", path, hdrs, ["Content-Length: %d" % (16 << 20)]))
            time.sleep(0.2)  # the answer is out and the daemon is closing
            for _ in range(16):
                c.send(b"x" * (1 << 20))
            st, hdr, body = c.response()
            assert st == want and code(body) == want_code, (st, body)
            assert hdr["connection"] == "close"
            c.close()
    assert client(site).list_objects_v2(Bucket="linger")["KeyCount"] == 0


def gate_gauges(site, gate):
    """(active, waiting) of an S3 gate ("uploads" or "downloads") in /metrics."""
    from conftest import http
    body = http("GET", site.admin + "/metrics")[2].decode()
    return tuple(int(re.search(r"^meridian_s3_%s_%s (\d+)$" % (gate, what), body, re.M).group(1))
                 for what in ("active", "waiting"))


def uploads_gauges(site):
    return gate_gauges(site, "uploads")


def upload_begun(site, path, body):
    """A raw connection that sent a PUT of body's head and its first 64 KiB."""
    c = Conn(site)
    hdrs = sign(site, "PUT", path, "UNSIGNED-PAYLOAD", {"Content-Length": str(len(body))})
    c.send(head_bytes(site, "PUT", path, hdrs) + body[:65536])
    return c


def test_max_uploads_holds_large_uploads_back_unread(make_site):
    """[s3] max_uploads = 2 on one loop: of four 2 MiB uploads whose bodies
    are still coming, two hold buffers and two wait with their bodies
    unread; a small PUT passes meanwhile; once the bodies arrive every
    upload is stored whole, in turn; a waiting client that gave up stores
    nothing, and the gauges go back to zero."""
    site = make_site()
    with open(site.config, "a") as f:
        f.write("[s3]\nloops = 1\nmax_uploads = 2\n")
    site.start()
    s3 = client(site)
    s3.create_bucket(Bucket="gate")
    bodies = [os.urandom(2 << 20) for _ in range(5)]
    conns = []
    for i, body in enumerate(bodies):
        conns.append(upload_begun(site, f"/gate/up{i}", body))
        if i < 2:  # in turn: the first two take the slots
            wait_for(lambda: uploads_gauges(site) == (i + 1, 0), 10, f"upload {i} to be admitted")
    wait_for(lambda: uploads_gauges(site) == (2, 3), 10, "three uploads to wait")
    # a small body never waits
    s3.put_object(Bucket="gate", Key="small", Body=b"s" * 1000)
    assert s3.get_object(Bucket="gate", Key="small")["Body"].read() == b"s" * 1000
    # a waiting client gives up: its body is not read, so the site sees it
    # gone only when its turn comes, and then lets the slot go at once
    conns[4].close()
    for c, body in zip(conns[:4], bodies):
        c.send(body[65536:])
    for i, c in enumerate(conns[:4]):
        st, _, out = c.response()
        assert st == 200, (i, st, out)
        c.close()
    for i, body in enumerate(bodies[:4]):
        assert s3.get_object(Bucket="gate", Key=f"up{i}")["Body"].read() == body, i
    wait_for(lambda: uploads_gauges(site) == (0, 0), 10, "every slot to be free")
    with pytest.raises(s3.exceptions.ClientError):
        s3.head_object(Bucket="gate", Key="up4")


def downloads_gauges(site):
    return gate_gauges(site, "downloads")


class SlowReader(Conn):
    """A connection with a small receive buffer that reads nothing until
    asked: the server's sends back up after a few hundred KiB."""

    def __init__(self, site):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        self.s.settimeout(15)
        self.s.connect(("127.0.0.1", site.s3_port))
        self.buf = b""


def test_max_downloads_holds_large_downloads_back_before_their_body(make_site):
    """[s3] max_downloads = 2 on one loop: of five 16 MiB GETs whose clients
    do not read, two hold buffers and three wait after their response head; a
    small GET passes meanwhile; once the clients read, every body arrives
    whole, in turn; a waiting client that gave up does not hold a slot, and
    the gauges go back to zero."""
    site = make_site()
    with open(site.config, "a") as f:
        f.write("[s3]\nloops = 1\nmax_downloads = 2\n")
    site.start()
    s3 = client(site)
    s3.create_bucket(Bucket="dgate")
    bodies = [os.urandom(16 << 20) for _ in range(5)]
    for i, body in enumerate(bodies):
        s3.put_object(Bucket="dgate", Key=f"big{i}", Body=body)
    s3.put_object(Bucket="dgate", Key="small", Body=b"s" * 1000)
    conns = []
    for i in range(5):
        c = SlowReader(site)
        c.send(head_bytes(site, "GET", f"/dgate/big{i}",
                          sign(site, "GET", f"/dgate/big{i}", "UNSIGNED-PAYLOAD")))
        conns.append(c)
        if i < 2:  # in turn: the first two take the slots
            wait_for(lambda: downloads_gauges(site) == (i + 1, 0), 10,
                     f"download {i} to be admitted")
    wait_for(lambda: downloads_gauges(site) == (2, 3), 10, "three downloads to wait")
    assert s3.get_object(Bucket="dgate", Key="small")["Body"].read() == b"s" * 1000
    # a waiting client gives up: the site, which reads nothing more from a
    # connection whose response is under way, sees it gone when its turn
    # comes, and lets the slot go at once
    conns[4].close()
    for i, c in enumerate(conns[:4]):
        st, hdrs, out = c.response()
        assert st == 200 and out == bodies[i], (i, st, len(out))
        c.close()
    wait_for(lambda: downloads_gauges(site) == (0, 0), 10, "every slot to be free")



def test_forwarded_bodies_wait_at_the_gates_of_the_forwarding_site(tmp_path):
    """A request a site forwards to a peer holds buffers there too (the
    proxy's queues), so it passes the same gates. b drained, [s3]
    max_downloads = 2 and max_uploads = 1 on one loop: of five 16 MiB GETs
    whose clients do not read, two hold buffers at b and three wait after
    their head; a small GET passes; every body then arrives whole, through
    a. Of two 2 MiB PUTs whose bodies are still coming, one goes to a and one
    waits unread at b; both are stored whole at a. The gauges go back to
    zero."""
    from conftest import TOKEN, http
    from test_routing import running_pair

    def prepare(a, b):
        with open(b.config, "a") as f:
            f.write("[s3]\nloops = 1\nmax_downloads = 2\nmax_uploads = 1\n")

    with running_pair(tmp_path, prepare) as (a, b, w):
        ca, cb = client(a), client(b)
        ca.create_bucket(Bucket="pxg")
        bodies = [os.urandom(16 << 20) for _ in range(5)]
        for i, body in enumerate(bodies):
            ca.put_object(Bucket="pxg", Key=f"big{i}", Body=body)
        ca.put_object(Bucket="pxg", Key="small", Body=b"s" * 1000)
        assert http("POST", b.admin + "/admin/v1/failover/drain",
                    headers={"Authorization": "Bearer " + TOKEN})[0] == 200
        conns = []
        for i in range(5):
            c = SlowReader(b)
            c.send(head_bytes(b, "GET", f"/pxg/big{i}",
                              sign(b, "GET", f"/pxg/big{i}", "UNSIGNED-PAYLOAD")))
            conns.append(c)
            if i < 2:
                wait_for(lambda: downloads_gauges(b) == (i + 1, 0), 10,
                         f"forwarded download {i} to be admitted")
        wait_for(lambda: downloads_gauges(b) == (2, 3), 10, "three forwarded downloads to wait")
        r = cb.get_object(Bucket="pxg", Key="small")
        assert r["Body"].read() == b"s" * 1000
        assert r["ResponseMetadata"]["HTTPHeaders"]["x-meridian-served-by"] == "a"
        conns[4].close()
        for i, c in enumerate(conns[:4]):
            st, hdrs, out = c.response()
            assert st == 200 and out == bodies[i], (i, st, len(out))
            assert hdrs["x-meridian-served-by"] == "a"
            c.close()
        wait_for(lambda: downloads_gauges(b) == (0, 0), 10, "every download slot to be free")

        ups = [os.urandom(2 << 20) for _ in range(2)]
        conns = []
        for i, body in enumerate(ups):
            conns.append(upload_begun(b, f"/pxg/up{i}", body))
            wait_for(lambda: uploads_gauges(b) == (1, i), 10, f"forwarded upload {i}")
        for c, body in zip(conns, ups):
            c.send(body[65536:])
        for i, c in enumerate(conns):
            st, hdrs, out = c.response()
            assert st == 200 and hdrs["x-meridian-served-by"] == "a", (i, st, out)
            c.close()
        for i, body in enumerate(ups):
            assert ca.get_object(Bucket="pxg", Key=f"up{i}")["Body"].read() == body
        wait_for(lambda: uploads_gauges(b) == (0, 0), 10, "every upload slot to be free")