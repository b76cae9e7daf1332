"""Data checks a sender of this build never sends, refused by a real receiver.

A records request (PROTOCOL.md section 6) is crafted here in Python, byte by
byte (protobuf by hand, the HMAC request signature of section 2, the
CRC32C or Poly1305 data check after the object data), and sent over a real
HTTP/2 connection on loopback by the nghttp client (nghttp2-client, in the
install script's test packages) to a real meridiand, which knows the
crafted sender as one of its configured peers (a site that never runs):
  - a CRC32C check on an h2c link, where it would prove nothing against an
    on-path attacker, is answered 400;
  - a Poly1305 check to a site without a replication secret (mutual TLS
    alone, so the crafted peer presents a pinned client certificate) is
    answered 400: that site has no key to check it with.
Each refused request is otherwise valid: the same object sent next with
the check that link takes (Poly1305 on h2c, CRC32C on TLS) is answered 200
and readable, so the refusal is the check's alone. The object refused is
not readable afterwards, the daemon keeps running, and a real peer started
afterwards replicates to it as usual. Every wait is bounded.
"""
import hashlib
import hmac
import os
import re
import shutil
import struct
import subprocess
import time

from conftest import s3_client, wait_for
from test_replication import body_at, mesh
from test_tls import mtls_mesh

SECRET = b"test-replication-secret"  # conftest.Site's
BUCKET = "dcheck"
CRC32C, POLY1305 = 1, 2
WAL_REC_OBJECT_PUT = 1


# ---- protobuf, by hand (proto/repl.proto, proto/wal.proto) ---------------

def varint(n):
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def pb_int(num, val):
    return varint(num << 3) + varint(val) if val else b""


def pb_bytes(num, val):
    if isinstance(val, str):
        val = val.encode()
    return varint(num << 3 | 2) + varint(len(val)) + val if val else b""


def records_head(origin, key, data, check, nonce=b""):
    """The framed batch head (u32 length | RecordBatch) of one object put of
    data to BUCKET/key, originated at site origin as its LSN 1."""
    hlc = int(time.time() * 1000) << 16
    vv = pb_bytes(1, pb_int(1, origin) + pb_int(2, 1))  # VersionVector{entries: {origin, 1}}
    put = (pb_bytes(1, BUCKET) + pb_bytes(2, key) + pb_bytes(3, "%016x%08x" % (hlc, origin))
           + pb_bytes(4, vv) + pb_int(5, hlc) + pb_bytes(6, hashlib.md5(data).hexdigest())
           + pb_int(7, len(data)) + pb_bytes(8, "application/octet-stream"))
    wal_record = pb_bytes(1, put) + pb_int(15, 1)  # WalRecord{object_put, format 1}
    record = (pb_int(1, 1) + pb_int(2, WAL_REC_OBJECT_PUT) + pb_bytes(3, wal_record)
              + pb_int(4, len(data)) + pb_int(5, check) + pb_bytes(6, nonce))
    batch = pb_int(1, 1) + pb_int(2, 1) + pb_bytes(3, record)
    return struct.pack(">I", len(batch)) + batch


# ---- the data checks -------------------------------------------------------

_CRC_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC_TABLE.append(_c)


def crc32c(data):
    c = 0xFFFFFFFF
    for byte in data:
        c = _CRC_TABLE[(c ^ byte) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283  # the check value of CRC-32C


def poly1305(key, msg):
    """RFC 8439 section 2.5, on Python's integers."""
    r = int.from_bytes(key[:16], "little") & 0x0FFFFFFC0FFFFFFC0FFFFFFC0FFFFFFF
    s = int.from_bytes(key[16:32], "little")
    p, acc = (1 << 130) - 5, 0
    for i in range(0, len(msg), 16):
        acc = (acc + int.from_bytes(msg[i:i + 16] + b"\x01", "little")) * r % p
    return ((acc + s) & ((1 << 128) - 1)).to_bytes(16, "little")


# RFC 8439 section 2.5.2's test vector
assert poly1305(bytes.fromhex("85d6be7857556d337f4452fe42d506a80103808afb0db2fd4abff6af4149f51b"),
                b"Cryptographic Forum Research Group").hex() == "a8061dc1305136c6c22b8baf0c0127a9"


def records_body(origin, key, data, check, secret=SECRET):
    """(framed head, whole body): the head, the data, then the check."""
    nonce = os.urandom(16) if check == POLY1305 else b""
    head = records_head(origin, key, data, check, nonce)
    if check == CRC32C:
        trailer = struct.pack(">I", crc32c(data))
    else:
        otk = hmac.new(secret, b"MRD-REPL-DATA-1\n" + nonce, hashlib.sha256).digest()
        trailer = poly1305(otk, head + data)
    return head, head + data + trailer


# ---- the request -----------------------------------------------------------

def post_records(tmp_path, port, origin, key, data, check, tls=None):
    """POSTs a crafted /repl/v1/records to the replication listener on port
    as site origin, over h2c, or over TLS with tls = (cert, key) and no
    secret; returns (HTTP status, nghttp's output)."""
    nghttp = shutil.which("nghttp")
    assert nghttp, "nghttp missing: scripts/install-deps.sh --test installs nghttp2-client"
    head, body = records_body(origin, key, data, check)
    path = "/repl/v1/records"
    now = str(int(time.time() * 1000))
    if tls:
        auth = "mtls"  # no secret: the client certificate names the site
    else:
        to_sign = (f"MRD-REPL-1\nPOST\n{path}\n{origin}\n{now}\n"
                   + hashlib.sha256(head).hexdigest()).encode()
        auth = hmac.new(SECRET, to_sign, hashlib.sha256).hexdigest()
    body_file = tmp_path / f"body-{key}"
    body_file.write_bytes(body)
    cmd = [nghttp, "-v", "-y", "-d", str(body_file),
           "-H", f"x-meridian-site-id: {origin}", "-H", f"x-meridian-time: {now}",
           "-H", f"x-meridian-auth: {auth}", "-H", "content-type: application/x-protobuf"]
    if tls:
        cmd += ["--cert", tls[0], "--key", tls[1]]
    cmd.append(f"{'https' if tls else 'http'}://127.0.0.1:{port}{path}")
    r = subprocess.run(cmd, capture_output=True, timeout=15)
    out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    status = re.findall(r"recv \(stream_id=\d+\) :status: (\d+)", out)
    return (int(status[-1]) if status else None), out


def rejects(site, peer, why):
    return [ln for ln in site.read_log().splitlines()
            if "event=repl.recv.reject" in ln and f"peer={peer} " in ln and why in ln]


def refused_then_taken(tmp_path, b, origin, peer, refused, taken, why, tls=None):
    """At b, which holds BUCKET: the object sent with check refused is
    answered 400 naming why and is not applied; the same object sent with
    check taken is answered 200 and applied."""
    cb = s3_client(b)
    data = os.urandom(300 * 1024)  # striped on the drives, not inline
    st, out = post_records(tmp_path, b.repl_port, origin, "refused", data, refused, tls)
    assert st == 400, out[-3000:]
    assert why in out, out[-3000:]  # the answer's text/plain reason
    assert len(rejects(b, peer, why)) == 1, b.read_log()[-3000:]
    assert "status=400" in rejects(b, peer, why)[0]
    assert body_at(cb, BUCKET, "refused") is None
    assert b.proc.poll() is None

    st, out = post_records(tmp_path, b.repl_port, origin, "taken", data, taken, tls)
    assert st == 200, out[-3000:]
    assert body_at(cb, BUCKET, "taken") == data
    assert body_at(cb, BUCKET, "refused") is None


def real_peer_replicates(a, b):
    """a, started now, gets b's bucket and replicates a write to b."""
    a.start()
    ca, cb = s3_client(a), s3_client(b)
    wait_for(lambda: BUCKET in [x["Name"] for x in ca.list_buckets()["Buckets"]], 15,
             "the bucket to reach a")
    data = os.urandom(200 * 1024)
    ca.put_object(Bucket=BUCKET, Key="from-a", Body=data)
    wait_for(lambda: body_at(cb, BUCKET, "from-a") == data, 15, "a's write to reach b")


def test_crc32c_data_check_on_an_h2c_link_is_refused(tmp_path):
    """A CRC32C check proves nothing on a link without TLS: 400, nothing
    applied. x is a configured peer of b that never runs: its requests are
    crafted here, signed with the shared secret."""
    a, b, x = mesh(tmp_path, ("a", "b", "x"))
    b.start()
    try:
        s3_client(b).create_bucket(Bucket=BUCKET)
        refused_then_taken(tmp_path, b, x.site_id, "x", CRC32C, POLY1305,
                           "a CRC32C data check on a link without TLS")
        real_peer_replicates(a, b)
        assert b.proc.poll() is None
    finally:
        a.stop()
        b.stop()


def test_poly1305_data_check_to_a_site_without_secret_is_refused(tmp_path):
    """Mutual TLS without a replication secret: a Poly1305 check has no key
    at the receiver, 400, nothing applied. The crafted requests come over
    TLS 1.3 with ALPN h2 and c's pinned certificate; c never runs."""
    names = ("a", "b", "c")
    sites, pki = mtls_mesh(tmp_path, names=names, no_secret=names)
    a, b, c = sites
    b.start()
    try:
        s3_client(b).create_bucket(Bucket=BUCKET)
        refused_then_taken(tmp_path, b, c.site_id, "c", POLY1305, CRC32C,
                           "a Poly1305 data check on a site without the replication secret",
                           tls=(f"{pki}/c.crt", f"{pki}/c.key"))
        real_peer_replicates(a, b)
        assert b.proc.poll() is None
    finally:
        a.stop()
        b.stop()
