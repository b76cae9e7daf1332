"""S3 operations beyond plain PUT/GET, against one real meridiand: aws-chunked
uploads (signed per chunk, signed with a signed trailing checksum, and
unsigned with trailing checksums), conditional
GET/HEAD, DeleteObjects and CopyObject, each driven by the real clients that
use them (minio-go, boto3, awscli, s3cmd, rclone) plus hand-built requests for
the failure cases clients never produce.

minio-go (Debian's golang-github-minio-minio-go-v7-dev, built here with
Debian's Go in GOPATH mode, no network) is the real client of
STREAMING-AWS4-HMAC-SHA256-PAYLOAD: over plain HTTP it signs every single PUT
that way. Debian's botocore and awscli never send it; botocore sends
STREAMING-UNSIGNED-PAYLOAD-TRAILER (its AwsChunkedWrapper) when a checksum
algorithm is asked for over TLS, and a before-call hook makes it do so over
our plain-HTTP port. Neither sends STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER
(newer SDKs do), so those requests are built and signed here by hand, the
signature chain computed in Python with hmac/hashlib.
"""
import base64
import binascii
import datetime
import hashlib
import hmac
import http.client
import os
import shutil
import signal
import subprocess
import time

import botocore
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from conftest import err_code, s3_client

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
KEY, SECRET = "AKIATEST", "testsecretkey"
EMPTY_SHA = hashlib.sha256(b"").hexdigest()


client = s3_client
code = err_code


@pytest.fixture(scope="module")
def minio_put(tmp_path_factory):
    """Builds the minio-go uploader once per run (about 6 s)."""
    go = shutil.which("go") or "/usr/bin/go"
    assert os.path.exists(go), "Go is missing: scripts/install-deps.sh --test installs golang-go"
    out = tmp_path_factory.mktemp("minio") / "minio_put"
    env = dict(os.environ, GO111MODULE="off", GOPATH="/usr/share/gocode",
               GOCACHE=str(out.parent / "cache"), GOFLAGS="")
    r = subprocess.run([go, "build", "-o", str(out),
                        os.path.join(REPO, "tests/integration/clients/minio_put.go")],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return str(out)


def run_minio_put(exe, site, bucket, key, path, size, stdin=None):
    return subprocess.run([exe, site.s3.replace("http://", ""), KEY, SECRET, bucket, key, path,
                           str(size)], input=stdin, capture_output=True, timeout=60)


# ---- hand-built aws-chunked requests ---------------------------------------


def signed_head(site, path, headers):
    """Signs a PUT head with botocore's SigV4Auth, taking x-amz-content-sha256
    as given; returns (headers, seed signature, amz date, scope)."""
    req = AWSRequest(method="PUT", url=site.s3 + path, headers=headers)
    SigV4Auth(Credentials(KEY, SECRET), "s3", "us-east-1").add_auth(req)
    h = dict(req.headers.items())
    seed = h["Authorization"].rsplit("Signature=", 1)[1]
    amz_date = h["X-Amz-Date"]
    return h, seed, amz_date, f"{amz_date[:8]}/us-east-1/s3/aws4_request"


def signing_key(date):
    k = hmac.new(b"AWS4" + SECRET.encode(), date.encode(), hashlib.sha256).digest()
    for part in ("us-east-1", "s3", "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return k


def chunk_stream(data, chunk, seed, amz_date, scope, corrupt_chunk=None):
    """The aws-chunked body of data, every chunk signed in a chain from seed
    (computed here in Python, independently of the daemon's signer)."""
    return signed_chunks(data, chunk, seed, amz_date, scope, corrupt_chunk)[0]


def signed_chunks(data, chunk, seed, amz_date, scope, corrupt_chunk=None):
    """chunk_stream's body and the last (empty) chunk's signature."""
    key = signing_key(amz_date[:8])
    prev, out, i = seed, [], 0
    pieces = [data[o:o + chunk] for o in range(0, len(data), chunk)] + [b""]
    for piece in pieces:
        sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, prev, EMPTY_SHA,
                         hashlib.sha256(piece).hexdigest()])
        sig = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
        prev = sig
        if i == corrupt_chunk:
            sig = ("0" if sig[0] != "0" else "1") + sig[1:]
        out.append(b"%x;chunk-signature=%s\r\n%s\r\n" % (len(piece), sig.encode(), piece))
        i += 1
    return b"".join(out), prev


def send(site, method, path, headers, body):
    host, port = site.s3.replace("http://", "").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def streaming_put(site, path, data, chunk=65536, corrupt_chunk=None, cut=None, mangle=None):
    hdrs = {"x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
            "Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data))}
    h, seed, amz_date, scope = signed_head(site, path, hdrs)
    body = chunk_stream(data, chunk, seed, amz_date, scope, corrupt_chunk)
    if cut is not None:
        body = body[:cut]
    if mangle:
        body = mangle(body)
    h["Content-Length"] = str(len(body))
    return send(site, "PUT", path, h, body)


def _crc64nvme_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ (0x9a6c9329ac4bc9b5 if c & 1 else 0)
        t.append(c)
    return t


CRC64NVME_TABLE = _crc64nvme_table()


def crc64nvme(data):
    """CRC-64/NVME, written here independently of the daemon's."""
    c = 0xffffffffffffffff
    for b in data:
        c = CRC64NVME_TABLE[(c ^ b) & 0xff] ^ (c >> 8)
    return c ^ 0xffffffffffffffff


def trailer_digest(alg, data):
    if alg == "crc32":
        return binascii.crc32(data).to_bytes(4, "big")
    if alg == "crc64nvme":
        return crc64nvme(data).to_bytes(8, "big")
    return hashlib.new(alg, data).digest()


def trailer_put(site, path, data, chunk=65536, alg="crc32", checksum=None, sig=None,
                trailers=None, aws_example_form=False, corrupt_chunk=None, chain_on_seed=False):
    """A STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER PUT built and signed here
    by hand: signed chunks, then x-amz-checksum-<alg> and its
    x-amz-trailer-signature, chained on the last chunk's signature. checksum
    replaces the right value (still correctly signed), sig replaces the
    signature ("" leaves the line out), trailers the whole trailer block;
    aws_example_form keeps the empty last chunk's own CRLF, as AWS's worked
    example writes it; chain_on_seed signs the trailer on the seed signature
    instead of the last chunk's."""
    name = "x-amz-checksum-" + alg
    hdrs = {"x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
            "Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data)),
            "x-amz-trailer": name}
    h, seed, amz_date, scope = signed_head(site, path, hdrs)
    body, last = signed_chunks(data, chunk, seed, amz_date, scope, corrupt_chunk)
    if not aws_example_form:
        body = body[:-2]  # "0;chunk-signature=...\r\n" and the trailers right after
    if checksum is None:
        checksum = base64.b64encode(trailer_digest(alg, data)).decode()
    line = "%s:%s" % (name, checksum)
    if sig is None:
        sts = "\n".join(["AWS4-HMAC-SHA256-TRAILER", amz_date, scope,
                         seed if chain_on_seed else last,
                         hashlib.sha256((line + "\n").encode()).hexdigest()])
        sig = hmac.new(signing_key(amz_date[:8]), sts.encode(), hashlib.sha256).hexdigest()
    if trailers is None:
        trailers = line + "\r\n" + ("x-amz-trailer-signature:%s\r\n" % sig if sig else "")
        trailers += "\r\n"
    body += trailers.encode()
    h["Content-Length"] = str(len(body))
    return send(site, "PUT", path, h, body)


def xml_code(body):
    s = body.decode()
    return s.split("<Code>")[1].split("</Code>")[0] if "<Code>" in s else None


# ---- 1. aws-chunked ---------------------------------------------------------


def test_minio_go_streaming_signed_put(site, tmp_path, minio_put):
    c = client(site)
    c.create_bucket(Bucket="chunky")
    for size in (0, 1, 65536, 65537, 3 * 1024 * 1024 + 5):
        data = os.urandom(size)
        f = tmp_path / "data"
        f.write_bytes(data)
        r = run_minio_put(minio_put, site, "chunky", f"obj-{size}", str(f), size)
        assert r.returncode == 0, r.stderr
        assert r.stdout.decode().strip() == hashlib.md5(data).hexdigest()
        o = c.get_object(Bucket="chunky", Key=f"obj-{size}")
        assert o["Body"].read() == data
        assert o["ContentType"] == "application/x-test"
        assert o["Metadata"] == {"origin": "minio-go"}
        assert "ContentEncoding" not in o  # aws-chunked is not the object's encoding
    # from a pipe, as a streaming producer would
    data = os.urandom(200_000)
    r = run_minio_put(minio_put, site, "chunky", "piped", "-", len(data), stdin=data)
    assert r.returncode == 0, r.stderr
    assert c.get_object(Bucket="chunky", Key="piped")["Body"].read() == data
    # past 16 MiB minio-go goes multipart: each UploadPart is aws-chunked too
    data = os.urandom(20 * 1024 * 1024 + 3)
    f.write_bytes(data)
    r = run_minio_put(minio_put, site, "chunky", "multi", str(f), len(data))
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip().endswith("-2")
    assert c.get_object(Bucket="chunky", Key="multi")["Body"].read() == data
    # into a missing bucket: the S3 error, before the body
    r = run_minio_put(minio_put, site, "nobucket", "k", "-", 5, stdin=b"hello")
    assert r.returncode == 1 and r.stdout.decode().strip() == "NoSuchBucket"


def test_streaming_bad_chunks_abort_and_leave_nothing(site):
    c = client(site)
    c.create_bucket(Bucket="chunky")
    data = os.urandom(300_000)
    st, _, body = streaming_put(site, "/chunky/good", data, chunk=65536)
    assert st == 200, body
    assert c.get_object(Bucket="chunky", Key="good")["Body"].read() == data

    c.put_object(Bucket="chunky", Key="victim", Body=b"original")
    # the third chunk's signature is wrong: 403, and neither the new key nor
    # an overwrite becomes visible
    for key in ("fresh", "victim"):
        st, _, body = streaming_put(site, f"/chunky/{key}", data, corrupt_chunk=2)
        assert st == 403 and xml_code(body) == "SignatureDoesNotMatch", body
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.head_object(Bucket="chunky", Key="fresh")
    assert e.value.response["Error"]["Code"] == "404"
    assert c.get_object(Bucket="chunky", Key="victim")["Body"].read() == b"original"
    # a bad signature on the final, empty chunk is just as fatal
    st, _, body = streaming_put(site, "/chunky/fresh", data, corrupt_chunk=5)
    assert st == 403 and xml_code(body) == "SignatureDoesNotMatch"

    # truncated before the last chunk (Content-Length says so): IncompleteBody
    st, _, body = streaming_put(site, "/chunky/fresh", data, cut=200_000)
    assert st == 400 and xml_code(body) == "IncompleteBody", body
    # a chunk header past the line limit, and a 17-digit chunk size
    st, _, body = streaming_put(site, "/chunky/fresh", b"abc",
                                mangle=lambda b: b"1" * 5000 + b"\r\n" + b)
    assert st == 400 and xml_code(body) == "InvalidRequest", body
    st, _, body = streaming_put(site, "/chunky/fresh", b"abc",
                                mangle=lambda b: b"10000000000000003" + b[1:])
    assert st == 400 and xml_code(body) == "InvalidRequest", body
    # more data than x-amz-decoded-content-length promised
    st, _, body = streaming_put(site, "/chunky/fresh", b"abc",
                                mangle=lambda b: b.replace(b"3;", b"2;", 1))
    assert st == 400
    with pytest.raises(botocore.exceptions.ClientError):
        c.head_object(Bucket="chunky", Key="fresh")
    # an unknown streaming mode is refused plainly
    h, *_ = signed_head(site, "/chunky/fresh",
                        {"x-amz-content-sha256": "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD",
                         "x-amz-decoded-content-length": "3"})
    st, _, body = send(site, "PUT", "/chunky/fresh", h, b"3\r\nabc\r\n0\r\n\r\n")
    assert st == 501 and xml_code(body) == "NotImplemented"
    # the daemon is fine afterwards
    c.put_object(Bucket="chunky", Key="after", Body=b"ok")
    assert c.get_object(Bucket="chunky", Key="after")["Body"].read() == b"ok"


def test_streaming_signed_trailer(site):
    """STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER: every chunk signature, the
    trailing checksum and the trailer signature are checked; any failure
    stores nothing."""
    c = client(site)
    c.create_bucket(Bucket="signtrail")
    data = os.urandom(300_000)
    assert crc64nvme(b"123456789") == 0xae8b14860a799888  # the published check value
    for alg in ("crc32", "sha256", "sha1", "crc64nvme"):
        st, _, body = trailer_put(site, "/signtrail/" + alg, data, alg=alg)
        assert st == 200, body
        assert c.get_object(Bucket="signtrail", Key=alg)["Body"].read() == data
    st, _, body = trailer_put(site, "/signtrail/bad64", data, alg="crc64nvme",
                              checksum=base64.b64encode(bytes(8)).decode())
    assert st == 400 and xml_code(body) == "BadDigest", body
    st, _, body = trailer_put(site, "/signtrail/aws-form", data, chunk=100_000,
                              aws_example_form=True)
    assert st == 200, body
    assert c.get_object(Bucket="signtrail", Key="aws-form")["Body"].read() == data
    st, _, body = trailer_put(site, "/signtrail/empty", b"")
    assert st == 200, body
    assert c.get_object(Bucket="signtrail", Key="empty")["Body"].read() == b""

    c.put_object(Bucket="signtrail", Key="victim", Body=b"original")
    bad = {
        # the trailer signature is wrong, missing, or chained on the wrong chunk
        "wrong-sig": dict(sig="0" * 64),
        "no-sig": dict(sig=""),
        "chained-on-seed": dict(chain_on_seed=True),
        # a chunk signature is wrong before the trailer is reached
        "bad-chunk": dict(corrupt_chunk=2),
    }
    for key in ("fresh", "victim"):
        for what, kw in bad.items():
            st, _, body = trailer_put(site, "/signtrail/" + key, data, **kw)
            assert st == 403 and xml_code(body) == "SignatureDoesNotMatch", (what, body)
        # a checksum that does not match the body, signed correctly: BadDigest
        st, _, body = trailer_put(site, "/signtrail/" + key, data,
                                  checksum=base64.b64encode(b"\0\0\0\0").decode())
        assert st == 400 and xml_code(body) == "BadDigest", body
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.head_object(Bucket="signtrail", Key="fresh")
    assert e.value.response["Error"]["Code"] == "404"
    assert c.get_object(Bucket="signtrail", Key="victim")["Body"].read() == b"original"

    # UploadPart takes the same encoding
    up = c.create_multipart_upload(Bucket="signtrail", Key="mpu")["UploadId"]
    part1 = os.urandom(5 << 20)
    st, hdr, body = trailer_put(site, "/signtrail/mpu?partNumber=1&uploadId=" + up, part1,
                                chunk=1 << 20)
    assert st == 200, body
    etag1 = {k.lower(): v for k, v in hdr.items()}["etag"]
    st, _, body = trailer_put(site, "/signtrail/mpu?partNumber=2&uploadId=" + up, b"tail",
                              sig="f" * 64)
    assert st == 403 and xml_code(body) == "SignatureDoesNotMatch", body
    etag2 = c.upload_part(Bucket="signtrail", Key="mpu", UploadId=up, PartNumber=2,
                          Body=b"tail")["ETag"]
    c.complete_multipart_upload(Bucket="signtrail", Key="mpu", UploadId=up, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": etag1}, {"PartNumber": 2, "ETag": etag2}]})
    assert c.get_object(Bucket="signtrail", Key="mpu")["Body"].read() == part1 + b"tail"


def force_trailer(params, **kwargs):
    """botocore only puts checksums in a trailer over TLS; ask it to here."""
    alg = params.get("context", {}).get("checksum", {}).get("request_algorithm")
    if isinstance(alg, dict):
        alg["in"] = "trailer"


def test_boto3_unsigned_payload_trailer(site):
    c = client(site)
    c.create_bucket(Bucket="trail")
    c.meta.events.register("before-call.s3.PutObject", force_trailer)
    seen = []
    c.meta.events.register("before-send.s3.PutObject",
                           lambda request, **kw: seen.append(dict(request.headers)))
    for alg in ("CRC32", "CRC32C", "SHA256", "SHA1"):
        data = os.urandom(150_000)
        c.put_object(Bucket="trail", Key=alg, Body=data, ChecksumAlgorithm=alg)
        assert c.get_object(Bucket="trail", Key=alg)["Body"].read() == data
    h = {k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in seen[0].items()}
    assert h["x-amz-content-sha256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER", h
    assert h["content-encoding"] == "aws-chunked" and h["x-amz-trailer"] == "x-amz-checksum-crc32"

    # a trailer that does not match the body: BadDigest, nothing stored
    def raw(trailer_value):
        hdrs = {"x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                "Content-Encoding": "aws-chunked", "x-amz-trailer": "x-amz-checksum-crc32",
                "x-amz-decoded-content-length": "11"}
        h, *_ = signed_head(site, "/trail/raw", hdrs)
        body = b"b\r\nhello world\r\n0\r\nx-amz-checksum-crc32:%s\r\n\r\n" % trailer_value
        h["Content-Length"] = str(len(body))
        return send(site, "PUT", "/trail/raw", h, body)

    good = base64.b64encode(binascii.crc32(b"hello world").to_bytes(4, "big"))
    st, _, body = raw(base64.b64encode(b"\0\0\0\0"))
    assert st == 400 and xml_code(body) == "BadDigest", body
    with pytest.raises(botocore.exceptions.ClientError):
        c.head_object(Bucket="trail", Key="raw")
    st, _, body = raw(good)
    assert st == 200, body
    assert c.get_object(Bucket="trail", Key="raw")["Body"].read() == b"hello world"


# ---- 2. conditional GET/HEAD ------------------------------------------------


def test_conditional_get_and_head(site):
    c = client(site)
    c.create_bucket(Bucket="cond")
    c.put_object(Bucket="cond", Key="k", Body=b"0123456789")
    head = c.head_object(Bucket="cond", Key="k")
    etag, lm = head["ETag"], head["LastModified"]
    before, after = lm - datetime.timedelta(hours=1), lm + datetime.timedelta(hours=1)

    def outcome(call, **kw):
        try:
            r = call(Bucket="cond", Key="k", **kw)
            return r["ResponseMetadata"]["HTTPStatusCode"]
        except botocore.exceptions.ClientError as e:
            err = e.response["Error"]["Code"]
            return {"304": 304, "412": 412, "PreconditionFailed": 412}.get(err, err)

    for call in (c.get_object, c.head_object):
        assert outcome(call, IfMatch=etag) == 200
        assert outcome(call, IfMatch='"nope", ' + etag) == 200
        assert outcome(call, IfMatch="*") == 200
        assert outcome(call, IfMatch='"0123"') == 412
        assert outcome(call, IfNoneMatch=etag) == 304
        assert outcome(call, IfNoneMatch="*") == 304
        assert outcome(call, IfNoneMatch='"other"') == 200
        assert outcome(call, IfModifiedSince=before) == 200
        assert outcome(call, IfModifiedSince=lm) == 304
        assert outcome(call, IfModifiedSince=after) == 304
        assert outcome(call, IfUnmodifiedSince=after) == 200
        assert outcome(call, IfUnmodifiedSince=lm) == 200
        assert outcome(call, IfUnmodifiedSince=before) == 412
        # precedence: a true If-Match overrides a false If-Unmodified-Since
        assert outcome(call, IfMatch=etag, IfUnmodifiedSince=before) == 200
        # a false If-None-Match (the tag changed) overrides If-Modified-Since
        assert outcome(call, IfNoneMatch='"other"', IfModifiedSince=after) == 200
        # If-None-Match matching beats If-Modified-Since saying "modified"
        assert outcome(call, IfNoneMatch=etag, IfModifiedSince=before) == 304
        # 412 wins over 304
        assert outcome(call, IfMatch='"x"', IfNoneMatch=etag) == 412
    # a 412 carries the S3 error body; a 304 the validators and no body
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.get_object(Bucket="cond", Key="k", IfMatch='"x"')
    assert code(e) == "PreconditionFailed"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    st, h, body = send(site, "GET", "/cond/k", signed_get_headers(site, "/cond/k",
                                                                  {"If-None-Match": etag}), None)
    assert st == 304 and body == b"" and h["ETag"] == etag and "Last-Modified" in h
    # ranges apply after the conditions
    r = c.get_object(Bucket="cond", Key="k", Range="bytes=2-4", IfMatch=etag)
    assert r["Body"].read() == b"234"
    # an unparsable date is ignored; a missing key is still NoSuchKey
    st, _, _ = send(site, "GET", "/cond/k",
                    signed_get_headers(site, "/cond/k", {"If-Modified-Since": "yesterday"}), None)
    assert st == 200
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.get_object(Bucket="cond", Key="missing", IfMatch=etag)
    assert code(e) == "NoSuchKey"


def signed_get_headers(site, path, extra):
    req = AWSRequest(method="GET", url=site.s3 + path, headers=dict(extra))
    req.headers["x-amz-content-sha256"] = EMPTY_SHA
    SigV4Auth(Credentials(KEY, SECRET), "s3", "us-east-1").add_auth(req)
    return dict(req.headers.items())


# ---- 3. DeleteObjects -------------------------------------------------------


def keys_of(c, bucket, prefix=""):
    out, token = [], None
    while True:
        kw = {"ContinuationToken": token} if token else {}
        r = c.list_objects_v2(Bucket=bucket, Prefix=prefix, **kw)
        out += [o["Key"] for o in r.get("Contents", [])]
        if not r["IsTruncated"]:
            return out
        token = r["NextContinuationToken"]


def signed_post(site, path, body, extra=None, payload_hash=None):
    req = AWSRequest(method="POST", url=site.s3 + path, data=body, headers=dict(extra or {}))
    req.headers["x-amz-content-sha256"] = payload_hash or hashlib.sha256(body).hexdigest()
    SigV4Auth(Credentials(KEY, SECRET), "s3", "us-east-1").add_auth(req)
    h = dict(req.headers.items())
    h["Content-Length"] = str(len(body))
    return send(site, "POST", path, h, body)


def test_boto3_delete_objects(site):
    c = client(site)
    c.create_bucket(Bucket="multi")
    for i in range(30):
        c.put_object(Bucket="multi", Key=f"k{i:02d}", Body=b"x" * i)
    c.put_object(Bucket="multi", Key="odd <&> name", Body=b"y")
    r = c.delete_objects(Bucket="multi", Delete={"Objects": [
        {"Key": "k00"}, {"Key": "k01"}, {"Key": "missing"}, {"Key": "odd <&> name"},
        {"Key": "k02", "VersionId": "null"}, {"Key": "k03", "VersionId": "abc"}]})
    assert sorted(d["Key"] for d in r["Deleted"]) == ["k00", "k01", "k02", "missing",
                                                      "odd <&> name"]
    # "abc" cannot name a version (versioning: test_s3_versioning.py)
    assert [(e["Key"], e["Code"]) for e in r["Errors"]] == [("k03", "InvalidArgument")]
    left = keys_of(c, "multi")
    assert "k00" not in left and "k02" not in left and "odd <&> name" not in left
    assert "k03" in left and len(left) == 27
    # Quiet: only errors come back
    r = c.delete_objects(Bucket="multi", Delete={"Quiet": True, "Objects": [
        {"Key": "k04"}, {"Key": "k05", "VersionId": "v"}]})
    assert "Deleted" not in r and [e["Key"] for e in r["Errors"]] == ["k05"]
    assert "k04" not in keys_of(c, "multi")
    # 1000 keys in one call; 1001 is MalformedXML
    names = [f"many/{i:04d}" for i in range(1000)]
    for n in names[:50]:
        c.put_object(Bucket="multi", Key=n, Body=b"")
    r = c.delete_objects(Bucket="multi", Delete={"Objects": [{"Key": n} for n in names]})
    assert len(r["Deleted"]) == 1000 and "Errors" not in r
    assert keys_of(c, "multi", "many/") == []
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.delete_objects(Bucket="multi", Delete={"Objects": [{"Key": n} for n in names + ["x"]]})
    assert code(e) == "MalformedXML"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.delete_objects(Bucket="nosuchbucket", Delete={"Objects": [{"Key": "a"}]})
    assert code(e) == "NoSuchBucket"


def test_delete_objects_bad_bodies(site):
    c = client(site)
    c.create_bucket(Bucket="multi")
    c.put_object(Bucket="multi", Key="keep", Body=b"1")
    good = b"<Delete><Object><Key>keep</Key></Object></Delete>"
    md5 = lambda b: base64.b64encode(hashlib.md5(b).digest()).decode()  # noqa: E731
    for body in (b"<Delete><Object><Key>keep</Key></Object>", b"<Delete/>", b"garbage",
                 b"<Nope><Object><Key>keep</Key></Object></Nope>",
                 b'<!DOCTYPE Delete [<!ENTITY a "keep">]><Delete><Object><Key>&a;</Key>'
                 b"</Object></Delete>"):
        st, _, resp = signed_post(site, "/multi?delete", body, {"Content-MD5": md5(body)})
        assert st == 400 and xml_code(resp) == "MalformedXML", (body, resp)
    # Content-MD5 that does not match: BadDigest; that does not decode: InvalidDigest
    st, _, resp = signed_post(site, "/multi?delete", good, {"Content-MD5": md5(b"other")})
    assert st == 400 and xml_code(resp) == "BadDigest"
    st, _, resp = signed_post(site, "/multi?delete", good, {"Content-MD5": "nope"})
    assert st == 400 and xml_code(resp) == "InvalidDigest"
    # unsigned body without Content-MD5: refused, as S3 does
    st, _, resp = signed_post(site, "/multi?delete", good, payload_hash="UNSIGNED-PAYLOAD")
    assert st == 400 and xml_code(resp) == "InvalidRequest"
    # a signed SHA-256 that does not match the body
    st, _, resp = signed_post(site, "/multi?delete", good, payload_hash=EMPTY_SHA)
    assert st == 400 and xml_code(resp) == "XAmzContentSHA256Mismatch"
    assert c.get_object(Bucket="multi", Key="keep")["Body"].read() == b"1"
    # signed body, no Content-MD5: accepted (the SHA-256 covers it)
    st, _, resp = signed_post(site, "/multi?delete", good)
    assert st == 200 and b"<Deleted><Key>keep</Key></Deleted>" in resp, resp
    assert keys_of(c, "multi") == []


def test_clients_batch_delete(site, tmp_path):
    """s3cmd's `del --recursive` batches its deletes with DeleteObjects, and so
    does `aws s3api delete-objects` (`aws s3 rm --recursive` deletes key by
    key, so it does not exercise this)."""
    from test_s3_basic import aws, aws_env
    env = aws_env(tmp_path)
    c = client(site)
    c.create_bucket(Bucket="rmr")
    for i in range(12):
        c.put_object(Bucket="rmr", Key=f"dir/sub{i % 3}/f{i}", Body=b"z")
    c.put_object(Bucket="rmr", Key="other", Body=b"o")
    spec = tmp_path / "del.json"
    spec.write_text('{"Objects": [%s], "Quiet": false}' % ", ".join(
        '{"Key": "dir/sub%d/f%d"}' % (i % 3, i) for i in range(6)))
    r = aws(site, env, "s3api", "delete-objects", "--bucket", "rmr", "--delete",
            f"file://{spec}")
    assert r.stdout.count('"Key"') == 6, r.stdout
    assert len(keys_of(c, "rmr")) == 7

    for i in range(10):
        c.put_object(Bucket="rmr", Key=f"s3cmd/{i}", Body=b"s")
    cfg = tmp_path / "s3cfg"
    host = site.s3.replace("http://", "")
    cfg.write_text(f"[default]\naccess_key = {KEY}\nsecret_key = {SECRET}\nhost_base = {host}\n"
                   f"host_bucket = {host}\nuse_https = False\nsignature_v2 = False\n"
                   "bucket_location = us-east-1\n")
    for prefix in ("s3cmd/", "dir/"):
        r = subprocess.run(["s3cmd", "-c", str(cfg), "--debug", "del", "--recursive",
                            f"s3://rmr/{prefix}"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr[-3000:]
        assert "?delete" in r.stderr  # the batch call, not one DELETE per key
    assert keys_of(c, "rmr") == ["other"]


def test_empty_put_then_put_on_one_connection(site):
    """botocore sends Expect: 100-continue on every PutObject and misreads the
    next response on the connection when an empty one was answered without
    100 Continue; the daemon grants it, so the next PUT does not stall."""
    c = client(site)
    c.create_bucket(Bucket="empties")
    t0 = time.monotonic()
    for body in (b"", b"x", b"", b"xy", b"", b""):
        c.put_object(Bucket="empties", Key="k", Body=body)
        assert c.get_object(Bucket="empties", Key="k")["Body"].read() == body
    assert time.monotonic() - t0 < 20  # a stall is the 60 s idle timeout


# ---- 4. CopyObject ----------------------------------------------------------


def test_boto3_copy_object(site):
    c = client(site)
    c.create_bucket(Bucket="src-b")
    c.create_bucket(Bucket="dst-b")
    for name, size in (("small", 1000), ("big", 3 * 1024 * 1024 + 17), ("empty", 0)):
        data = os.urandom(size)
        c.put_object(Bucket="src-b", Key=name, Body=data, ContentType="text/x-src",
                     Metadata={"colour": "blue"}, CacheControl="max-age=5")
        r = c.copy_object(Bucket="dst-b", Key=f"copy/{name}",
                          CopySource={"Bucket": "src-b", "Key": name})
        assert r["CopyObjectResult"]["ETag"] == '"%s"' % hashlib.md5(data).hexdigest()
        o = c.get_object(Bucket="dst-b", Key=f"copy/{name}")
        assert o["Body"].read() == data
        assert o["ContentType"] == "text/x-src" and o["Metadata"] == {"colour": "blue"}
        assert o["CacheControl"] == "max-age=5"
    # REPLACE takes the request's metadata, also onto the same key
    c.copy_object(Bucket="src-b", Key="small", CopySource="src-b/small",
                  MetadataDirective="REPLACE", ContentType="text/x-new",
                  Metadata={"shape": "round"})
    h = c.head_object(Bucket="src-b", Key="small")
    assert h["ContentType"] == "text/x-new" and h["Metadata"] == {"shape": "round"}
    assert "CacheControl" not in h
    # onto itself without REPLACE: InvalidRequest
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.copy_object(Bucket="src-b", Key="small", CopySource="src-b/small")
    assert code(e) == "InvalidRequest"
    # keys that need escaping
    c.put_object(Bucket="src-b", Key="a dir/ü+&=?.txt", Body=b"odd")
    c.copy_object(Bucket="dst-b", Key="odd copy", CopySource={"Bucket": "src-b",
                                                             "Key": "a dir/ü+&=?.txt"})
    assert c.get_object(Bucket="dst-b", Key="odd copy")["Body"].read() == b"odd"
    # errors: missing source key, source bucket, destination bucket, bad directive
    for kw, want in (({"Bucket": "dst-b", "CopySource": "src-b/nope"}, "NoSuchKey"),
                     ({"Bucket": "dst-b", "CopySource": "nob/small"}, "NoSuchBucket"),
                     ({"Bucket": "nob", "CopySource": "src-b/small"}, "NoSuchBucket"),
                     ({"Bucket": "dst-b", "CopySource": "src-b/small",
                       "MetadataDirective": "MOVE"}, "InvalidArgument")):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            c.copy_object(Key="x", **kw)
        assert code(e) == want, kw
    # conditional copies: any failed condition is 412
    etag = c.head_object(Bucket="src-b", Key="big")["ETag"]
    lm = c.head_object(Bucket="src-b", Key="big")["LastModified"]
    ok = [{"CopySourceIfMatch": etag}, {"CopySourceIfNoneMatch": '"x"'},
          {"CopySourceIfModifiedSince": lm - datetime.timedelta(hours=1)},
          {"CopySourceIfUnmodifiedSince": lm}]
    bad = [{"CopySourceIfMatch": '"x"'}, {"CopySourceIfNoneMatch": etag},
           {"CopySourceIfModifiedSince": lm},
           {"CopySourceIfUnmodifiedSince": lm - datetime.timedelta(hours=1)}]
    for kw in ok:
        c.copy_object(Bucket="dst-b", Key="cond", CopySource="src-b/big", **kw)
    c.delete_object(Bucket="dst-b", Key="cond")
    for kw in bad:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            c.copy_object(Bucket="dst-b", Key="cond", CopySource="src-b/big", **kw)
        assert code(e) == "PreconditionFailed", kw
    with pytest.raises(botocore.exceptions.ClientError):
        c.head_object(Bucket="dst-b", Key="cond")
    # a versionId that cannot name a version is refused plainly
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.copy_object(Bucket="dst-b", Key="v", CopySource={"Bucket": "src-b", "Key": "big",
                                                          "VersionId": "abc"})
    assert code(e) == "InvalidArgument"


def test_copy_clients_and_memory(site, tmp_path):
    """awscli s3 cp between S3 URLs and rclone's server-side copy; a 96 MiB
    copy keeps the daemon's memory bounded."""
    from conftest import sanitized, vm_hwm_kib
    from test_s3_basic import aws, aws_env
    env = aws_env(tmp_path)
    c = client(site)
    c.create_bucket(Bucket="cpy")
    big = tmp_path / "big"
    with open(big, "wb") as f:
        for _ in range(96):
            f.write(os.urandom(1 << 20))
    md5 = hashlib.md5(big.read_bytes()).hexdigest()
    aws(site, env, "s3", "cp", str(big), "s3://cpy/big")
    before = vm_hwm_kib(site.proc.pid)
    # (--copy-props default would also copy tags, which needs object tagging)
    r = aws(site, env, "s3", "cp", "s3://cpy/big", "s3://cpy/big2", "--debug",
            "--copy-props", "metadata-directive")
    assert "x-amz-copy-source" in r.stderr.lower()  # server-side, not download+upload
    after = vm_hwm_kib(site.proc.pid)
    got = c.get_object(Bucket="cpy", Key="big2")["Body"].read()
    assert hashlib.md5(got).hexdigest() == md5
    print("VmHWM KiB before/after the copy:", before, after)
    # peak RSS means nothing under a sanitizer (quarantine, shadow memory)
    assert sanitized(site.proc.pid) or after < 64 * 1024, (before, after)  # KiB: below the 96 MiB copied
    # rclone copies within the remote server-side
    renv = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RCLONE_"))}
    renv.update(RCLONE_CONFIG_M_TYPE="s3", RCLONE_CONFIG_M_PROVIDER="Other",
                RCLONE_CONFIG_M_ACCESS_KEY_ID=KEY, RCLONE_CONFIG_M_SECRET_ACCESS_KEY=SECRET,
                RCLONE_CONFIG_M_ENDPOINT=site.s3, RCLONE_CONFIG_M_REGION="us-east-1",
                RCLONE_CONFIG_M_FORCE_PATH_STYLE="true", RCLONE_CONFIG="/dev/null")
    for i in range(3):
        c.put_object(Bucket="cpy", Key=f"tree/f{i}", Body=b"r" * (i + 1))
    r = subprocess.run(["rclone", "copy", "-vv", "m:cpy/tree", "m:cpy/tree2"], env=renv,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Copied (server-side copy)" in r.stderr, r.stderr[-2000:]
    for i in range(3):
        assert c.get_object(Bucket="cpy", Key=f"tree2/f{i}")["Body"].read() == b"r" * (i + 1)


def test_copies_and_multi_deletes_replicate(tmp_path):
    """A copy is a PUT for the engine and each DeleteObjects key a DELETE: WAL
    records that reach the peer like any other write."""
    from test_replication import converge, mesh, wait_caught_up
    a, b = mesh(tmp_path, ("a", "b"))
    for s in (a, b):
        s.start()
    try:
        ca = client(a)
        ca.create_bucket(Bucket="rep")
        big = os.urandom(2 * 1024 * 1024 + 3)
        ca.put_object(Bucket="rep", Key="orig", Body=big, Metadata={"m": "1"})
        ca.put_object(Bucket="rep", Key="gone1", Body=b"1")
        ca.put_object(Bucket="rep", Key="gone2", Body=b"2")
        ca.copy_object(Bucket="rep", Key="copy", CopySource="rep/orig")
        ca.copy_object(Bucket="rep", Key="copy2", CopySource="rep/orig",
                       MetadataDirective="REPLACE", Metadata={"m": "2"})
        ca.delete_objects(Bucket="rep", Delete={"Objects": [{"Key": "gone1"}, {"Key": "gone2"}]})
        snap = converge([a, b])
        objs = snap["rep"]
        assert set(objs) == {"orig", "copy", "copy2"}
        assert objs["copy"][5] == hashlib.sha256(big).hexdigest() == objs["copy2"][5]
        assert dict(objs["copy"][3]) == {"m": "1"} and dict(objs["copy2"][3]) == {"m": "2"}
        wait_caught_up([a, b])
    finally:
        for s in (a, b):
            s.stop()


# ---- 5. object tagging --------------------------------------------------------


def tagset(c, bucket, key):
    return sorted((t["Key"], t["Value"]) for t in
                  c.get_object_tagging(Bucket=bucket, Key=key)["TagSet"])


def test_boto3_object_tagging(site):
    c = client(site)
    c.create_bucket(Bucket="tags")
    c.put_object(Bucket="tags", Key="k", Body=b"data", Tagging="project=blue%20sky&team=",
                 Metadata={"keep": "me"})
    assert tagset(c, "tags", "k") == [("project", "blue sky"), ("team", "")]
    h = c.head_object(Bucket="tags", Key="k")
    assert h["ResponseMetadata"]["HTTPHeaders"]["x-amz-tagging-count"] == "2"
    assert h["Metadata"] == {"keep": "me"}  # the reserved entries never show
    etag, lm = h["ETag"], h["LastModified"]
    # replace: same version, same data, metadata untouched
    c.put_object_tagging(Bucket="tags", Key="k", Tagging={"TagSet": [
        {"Key": "a&b", "Value": "<x>"}, {"Key": "ü", "Value": "1"}]})
    assert tagset(c, "tags", "k") == [("a&b", "<x>"), ("ü", "1")]
    h2 = c.head_object(Bucket="tags", Key="k")
    assert h2["ETag"] == etag and h2["LastModified"] == lm and h2["Metadata"] == {"keep": "me"}
    assert (h2["ResponseMetadata"]["HTTPHeaders"]["x-meridian-version-id"] ==
            h["ResponseMetadata"]["HTTPHeaders"]["x-meridian-version-id"])
    assert c.get_object(Bucket="tags", Key="k")["Body"].read() == b"data"
    # delete
    r = c.delete_object_tagging(Bucket="tags", Key="k")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert tagset(c, "tags", "k") == []
    assert "x-amz-tagging-count" not in \
        c.head_object(Bucket="tags", Key="k")["ResponseMetadata"]["HTTPHeaders"]
    # errors
    for kw, want in ((dict(Tagging={"TagSet": [{"Key": f"k{i}", "Value": "v"}
                                               for i in range(11)]}), "InvalidTag"),
                     (dict(Tagging={"TagSet": [{"Key": "d", "Value": "1"},
                                               {"Key": "d", "Value": "2"}]}), "InvalidTag"),
                     (dict(Tagging={"TagSet": [{"Key": "x" * 129, "Value": "1"}]}), "InvalidTag")):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            c.put_object_tagging(Bucket="tags", Key="k", **kw)
        assert code(e) == want
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.put_object(Bucket="tags", Key="bad", Body=b"", Tagging="a=1&a=2")
    assert code(e) == "InvalidTag"
    for call in (c.get_object_tagging, c.delete_object_tagging):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call(Bucket="tags", Key="missing")
        assert code(e) == "NoSuchKey"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.put_object_tagging(Bucket="nob", Key="k", Tagging={"TagSet": []})
    assert code(e) == "NoSuchBucket"
    body = b"<Tagging><TagSet><Tag><Key>k</Key></Tag></TagSet></Tagging>"
    req = AWSRequest(method="PUT", url=site.s3 + "/tags/k?tagging", data=body)
    req.headers["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest()
    SigV4Auth(Credentials(KEY, SECRET), "s3", "us-east-1").add_auth(req)
    h = dict(req.headers.items())
    h["Content-Length"] = str(len(body))
    st, _, resp = send(site, "PUT", "/tags/k?tagging", h, body)
    assert st == 400 and xml_code(resp) == "MalformedXML"
    # copies take the tags along unless told otherwise
    c.put_object_tagging(Bucket="tags", Key="k", Tagging={"TagSet": [{"Key": "t", "Value": "1"}]})
    c.copy_object(Bucket="tags", Key="c1", CopySource="tags/k")
    assert tagset(c, "tags", "c1") == [("t", "1")]
    c.copy_object(Bucket="tags", Key="c2", CopySource="tags/k", MetadataDirective="REPLACE",
                  Metadata={"new": "1"})
    assert tagset(c, "tags", "c2") == [("t", "1")]
    assert c.head_object(Bucket="tags", Key="c2")["Metadata"] == {"new": "1"}
    c.copy_object(Bucket="tags", Key="c3", CopySource="tags/k", TaggingDirective="REPLACE",
                  Tagging="u=2")
    assert tagset(c, "tags", "c3") == [("u", "2")]
    # acknowledged tag changes survive kill -9 (the WAL replays them)
    c.put_object_tagging(Bucket="tags", Key="c1", Tagging={"TagSet": [{"Key": "z", "Value": "9"}]})
    site.stop(sig=signal.SIGKILL)
    site.start()
    c = client(site)
    assert tagset(c, "tags", "c1") == [("z", "9")]
    assert c.get_object(Bucket="tags", Key="c1")["Body"].read() == b"data"
    # an overwrite brings its own tags (none)
    c.put_object(Bucket="tags", Key="k", Body=b"v2")
    assert tagset(c, "tags", "k") == []


def test_awscli_copy_with_default_props_and_tags_replicate(tmp_path):
    """`aws s3 cp s3://… s3://…` (default --copy-props reads the tags), and a
    tagging change reaches the peer site as its own record."""
    from test_replication import mesh, wait_caught_up
    from test_s3_basic import aws, aws_env
    a, b = mesh(tmp_path, ("a", "b"))
    for s in (a, b):
        s.start()
    try:
        env = aws_env(tmp_path)
        ca, cb = client(a), client(b)
        ca.create_bucket(Bucket="trep")
        ca.put_object(Bucket="trep", Key="src", Body=b"x" * 1000, Tagging="color=red")
        aws(a, env, "s3", "cp", "s3://trep/src", "s3://trep/dst")
        assert tagset(ca, "trep", "dst") == [("color", "red")]
        ca.put_object_tagging(Bucket="trep", Key="src",
                              Tagging={"TagSet": [{"Key": "color", "Value": "green"}]})
        wait_caught_up([a, b])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if (tagset(cb, "trep", "src") == [("color", "green")] and
                        tagset(cb, "trep", "dst") == [("color", "red")]):
                    break
            except botocore.exceptions.ClientError:
                pass
            time.sleep(0.2)
        assert tagset(cb, "trep", "src") == [("color", "green")]
        assert tagset(cb, "trep", "dst") == [("color", "red")]
        # tags set at b on a's version come back to a; the data is untouched
        cb.delete_object_tagging(Bucket="trep", Key="src")
        wait_caught_up([a, b])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and tagset(ca, "trep", "src"):
            time.sleep(0.2)
        assert tagset(ca, "trep", "src") == []
        assert ca.get_object(Bucket="trep", Key="src")["Body"].read() == b"x" * 1000
    finally:
        for s in (a, b):
            s.stop()
