"""The S3 API of one meridiand, driven by real clients: awscli and boto3.

Every test starts its own daemon (conftest's Site) on fresh drives. Objects
are compared byte for byte after a round trip; errors are checked by their
S3 Code, as clients switch on it. The durability test SIGKILLs the daemon
right after acknowledged PUTs and reads every one back after a restart.
"""
import base64
import hashlib
import os
import signal
import subprocess
import threading
import time
import urllib.request

import botocore
import pytest

from conftest import err_code, err_status, http, s3_client, sanitized, vm_hwm_kib, wait_for

AWS = "/usr/bin/aws"
KEY, SECRET = "AKIATEST", "testsecretkey"


def aws_env(tmp_path):
    # No user config or credentials file may leak in: a private, empty config
    # (awscli's defaults: files from 8 MiB on go multipart).
    cfg = tmp_path / "aws.cfg"
    cfg.write_text("[default]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET, AWS_DEFAULT_REGION="us-east-1",
               AWS_CONFIG_FILE=str(cfg), AWS_SHARED_CREDENTIALS_FILE="/dev/null", AWS_PAGER="",
               AWS_EC2_METADATA_DISABLED="true")
    return env


def aws(site, env, *args, check=True):
    r = subprocess.run([AWS, "--endpoint-url", site.s3, *args], env=env, capture_output=True,
                       text=True, timeout=60)
    if check:
        assert r.returncode == 0, r.stderr
    return r


client = s3_client
code = err_code
status = err_status


def test_awscli_roundtrip_sizes_and_listing(site, tmp_path):
    env = aws_env(tmp_path)
    aws(site, env, "s3", "mb", "s3://data")
    assert "data" in aws(site, env, "s3", "ls").stdout
    sizes = {"empty": 0, "one": 1, "mib3": (1 << 20) + 3, "big": 20 << 20}
    for name, n in sizes.items():
        src = tmp_path / name
        src.write_bytes(os.urandom(n))
        aws(site, env, "s3", "cp", str(src), f"s3://data/dir/{name}")
    for name, n in sizes.items():
        dst = tmp_path / (name + ".back")
        aws(site, env, "s3", "cp", f"s3://data/dir/{name}", str(dst))
        assert dst.read_bytes() == (tmp_path / name).read_bytes(), name
    out = aws(site, env, "s3", "ls", "s3://data/dir/").stdout
    for name, n in sizes.items():
        assert f" {n} {name}\n" in out
    assert "PRE dir/" in aws(site, env, "s3", "ls", "s3://data/").stdout
    aws(site, env, "s3", "rm", "s3://data/dir/one")
    assert " one\n" not in aws(site, env, "s3", "ls", "s3://data/dir/").stdout
    # a bucket with objects cannot go; an emptied one can
    r = aws(site, env, "s3", "rb", "s3://data", check=False)
    assert r.returncode != 0 and "BucketNotEmpty" in r.stderr
    for name in ("empty", "mib3", "big"):
        aws(site, env, "s3api", "delete-object", "--bucket", "data", "--key", f"dir/{name}")
    aws(site, env, "s3", "rb", "s3://data")
    assert "data" not in aws(site, env, "s3", "ls").stdout


def test_boto3_objects_ranges_metadata(site):
    s3 = client(site)
    s3.create_bucket(Bucket="bk1")
    body = os.urandom(3 * (1 << 20) + 17)
    put = s3.put_object(Bucket="bk1", Key="k/obj.bin", Body=body, ContentType="application/x-test",
                        Metadata={"colour": "blue"}, CacheControl="max-age=5")
    assert put["ETag"] == '"%s"' % hashlib.md5(body).hexdigest()
    got = s3.get_object(Bucket="bk1", Key="k/obj.bin")
    assert got["Body"].read() == body
    assert got["ContentType"] == "application/x-test"
    assert got["Metadata"] == {"colour": "blue"}
    assert got["CacheControl"] == "max-age=5"
    head = s3.head_object(Bucket="bk1", Key="k/obj.bin")
    assert head["ContentLength"] == len(body) and head["ETag"] == put["ETag"]
    # single ranges: first bytes, middle across a stripe, suffix, open end
    for rng, want in (("bytes=0-9", body[:10]),
                      ("bytes=1048570-2097160", body[1048570:2097161]),
                      ("bytes=-5", body[-5:]),
                      (f"bytes={len(body) - 3}-", body[-3:])):
        r = s3.get_object(Bucket="bk1", Key="k/obj.bin", Range=rng)
        assert r["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert r["Body"].read() == want, rng
        assert r["ContentRange"].endswith(f"/{len(body)}")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket="bk1", Key="k/obj.bin", Range=f"bytes={len(body)}-")
    assert code(e) == "InvalidRange" and status(e) == 416
    # overwrite replaces, delete hides
    s3.put_object(Bucket="bk1", Key="k/obj.bin", Body=b"short")
    assert s3.get_object(Bucket="bk1", Key="k/obj.bin")["Body"].read() == b"short"
    s3.delete_object(Bucket="bk1", Key="k/obj.bin")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket="bk1", Key="k/obj.bin")
    assert code(e) == "NoSuchKey"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.head_object(Bucket="bk1", Key="k/obj.bin")
    assert status(e) == 404
    s3.delete_object(Bucket="bk1", Key="never-existed")  # S3: 204 all the same


def test_boto3_list_objects_v2_and_v1(site):
    s3 = client(site)
    s3.create_bucket(Bucket="lst")
    keys = ["a/1", "a/2", "a/b/3", "c", "d/4", "d/5", "e"] + [f"p/{i:03d}" for i in range(25)]
    for k in keys:
        s3.put_object(Bucket="lst", Key=k, Body=k.encode())
    r = s3.list_objects_v2(Bucket="lst", Delimiter="/")
    assert [c["Key"] for c in r["Contents"]] == ["c", "e"]
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["a/", "d/", "p/"]
    r = s3.list_objects_v2(Bucket="lst", Prefix="a/", Delimiter="/")
    assert [c["Key"] for c in r["Contents"]] == ["a/1", "a/2"]
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["a/b/"]
    assert r["Contents"][0]["Size"] == 3
    # pagination with max-keys and continuation tokens sees every key once
    seen, token = [], None
    while True:
        kw = {"Bucket": "lst", "Prefix": "p/", "MaxKeys": 7}
        if token:
            kw["ContinuationToken"] = token
        r = s3.list_objects_v2(**kw)
        seen += [c["Key"] for c in r.get("Contents", [])]
        assert r["KeyCount"] <= 7
        if not r["IsTruncated"]:
            break
        token = r["NextContinuationToken"]
    assert seen == [f"p/{i:03d}" for i in range(25)]
    r = s3.list_objects_v2(Bucket="lst", StartAfter="d/4")
    assert [c["Key"] for c in r["Contents"]][:2] == ["d/5", "e"]
    # paginator over v1 (marker) sees them all too
    pages = s3.get_paginator("list_objects").paginate(Bucket="lst", PaginationConfig={"PageSize": 4})
    assert sorted(c["Key"] for p in pages for c in p.get("Contents", [])) == sorted(keys)
    # keys that need escaping in XML and URLs
    odd = "odd key & <x> +%/ü.txt"
    s3.put_object(Bucket="lst", Key=odd, Body=b"odd")
    assert s3.get_object(Bucket="lst", Key=odd)["Body"].read() == b"odd"
    r = s3.list_objects_v2(Bucket="lst", Prefix="odd")
    assert [c["Key"] for c in r["Contents"]] == [odd]


def test_errors_by_code(site):
    s3 = client(site)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client(site, secret="wrong-secret").list_buckets()
    assert code(e) == "SignatureDoesNotMatch" and status(e) == 403
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client(site, key="AKIANOBODY").list_buckets()
    assert code(e) == "InvalidAccessKeyId" and status(e) == 403
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket="nobucket", Key="x")
    assert code(e) == "NoSuchBucket"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object(Bucket="nobucket", Key="x", Body=b"1")
    assert code(e) == "NoSuchBucket"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.head_bucket(Bucket="nobucket")
    assert status(e) == 404
    s3.create_bucket(Bucket="errs")
    s3.head_bucket(Bucket="errs")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.create_bucket(Bucket="errs")
    assert code(e) == "BucketAlreadyOwnedByYou"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.create_bucket(Bucket="Bad_Name")
    assert code(e) == "InvalidBucketName"
    # Content-MD5 of other bytes: BadDigest, and nothing is stored
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object(Bucket="errs", Key="md5", Body=b"hello",
                      ContentMD5=base64.b64encode(hashlib.md5(b"other").digest()).decode())
    assert code(e) == "BadDigest"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.head_object(Bucket="errs", Key="md5")
    assert status(e) == 404
    s3.put_object(Bucket="errs", Key="keep", Body=b"x")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.delete_bucket(Bucket="errs")
    assert code(e) == "BucketNotEmpty" and status(e) == 409
    # every answer, error or not, carries a request id
    st, hdr, body = http("GET", site.s3 + "/errs/keep")
    assert st == 403 and b"<Code>AccessDenied</Code>" in body and "x-amz-request-id" in hdr
    assert b"<RequestId>" in body


def test_signed_payload_is_checked_and_presigned_urls_expire(site):
    s3 = client(site)
    s3.create_bucket(Bucket="sig")
    # a signed payload whose bytes differ from the declared SHA-256
    req = botocore.awsrequest.AWSRequest(method="PUT", url=site.s3 + "/sig/tampered",
                                         data=b"original")
    creds = botocore.credentials.Credentials(KEY, SECRET)
    botocore.auth.S3SigV4Auth(creds, "s3", "us-east-1").add_auth(req)
    prepared = req.prepare()
    r = urllib.request.Request(prepared.url, data=b"tampered", method="PUT",
                               headers=dict(prepared.headers))
    st = None
    try:
        urllib.request.urlopen(r, timeout=5)
    except urllib.error.HTTPError as e:
        st, body = e.code, e.read()
    assert st == 400 and b"XAmzContentSHA256Mismatch" in body
    with pytest.raises(botocore.exceptions.ClientError):
        s3.head_object(Bucket="sig", Key="tampered")
    # presigned GET works, and stops working after X-Amz-Expires
    s3.put_object(Bucket="sig", Key="p", Body=b"presigned!")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "sig", "Key": "p"},
                                    ExpiresIn=1)
    st, _, body = http("GET", url)
    assert st == 200 and body == b"presigned!"
    time.sleep(2.1)
    st, _, body = http("GET", url)
    assert st == 403 and b"Request has expired" in body
    # a request signed 20 minutes ago is refused as skewed
    req = botocore.awsrequest.AWSRequest(method="GET", url=site.s3 + "/sig/p")
    old = time.time() - 1200
    with pytest.MonkeyPatch.context() as mp:
        import datetime
        fixed = datetime.datetime.utcfromtimestamp(old)

        class FakeDT(datetime.datetime):
            @classmethod
            def utcnow(cls):
                return fixed
        mp.setattr(botocore.auth.datetime, "datetime", FakeDT)
        botocore.auth.S3SigV4Auth(creds, "s3", "us-east-1").add_auth(req)
    p = req.prepare()
    st, _, body = http("GET", p.url, headers=dict(p.headers))
    assert st == 403 and b"RequestTimeTooSkewed" in body


def test_acknowledged_puts_survive_sigkill(make_site):
    a = make_site("a").start()
    s3 = client(a)
    s3.create_bucket(Bucket="dur")
    acked = {}
    lock = threading.Lock()

    def writer(t):
        c = client(a)
        for i in range(15):
            body = os.urandom(1000 + (t * 7919 + i * 104729) % 300000)
            c.put_object(Bucket="dur", Key=f"t{t}/{i}", Body=body)
            with lock:
                acked[f"t{t}/{i}"] = hashlib.sha256(body).hexdigest()

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    a.stop(signal.SIGKILL)
    a.start()
    assert "event=engine.open" in a.read_log()
    s3 = client(a)
    for k, digest in acked.items():
        assert hashlib.sha256(s3.get_object(Bucket="dur", Key=k)["Body"].read()).hexdigest() \
            == digest, k
    keys = [c["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket="dur")
            for c in p.get("Contents", [])]
    assert sorted(keys) == sorted(acked)


def test_large_put_streams_in_bounded_memory(site, tmp_path):
    env = aws_env(tmp_path)
    aws(site, env, "s3", "mb", "s3://mem")
    src = tmp_path / "big"
    with open(src, "wb") as f:
        for _ in range(64):
            f.write(os.urandom(1 << 20))
    aws(site, env, "s3", "cp", str(src), "s3://mem/big")
    dst = tmp_path / "big.back"
    aws(site, env, "s3", "cp", "s3://mem/big", str(dst))
    assert hashlib.md5(dst.read_bytes()).digest() == hashlib.md5(src.read_bytes()).digest()
    if sanitized(site.proc.pid):
        pytest.skip("peak RSS is meaningless under a sanitizer (shadow memory, quarantine)")
    assert vm_hwm_kib(site.proc.pid) < 64 * 1024  # a 64 MiB object never sits in memory


def test_missing_payload_hash_says_what_to_send(site):
    # curl --aws-sigv4 signs without x-amz-content-sha256; the answer must say
    # what is missing and what to send instead of a bare "Invalid request".
    import subprocess
    r = subprocess.run(["curl", "-sS", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user",
                        "AKIATEST:testsecretkey", "-X", "PUT", "--data-binary", "hello",
                        site.s3 + "/nohash/key"],
                       capture_output=True, text=True, timeout=10)
    assert "<Code>InvalidRequest</Code>" in r.stdout
    assert "missing x-amz-content-sha256: send the hex SHA-256 of the body or UNSIGNED-PAYLOAD" \
        in r.stdout


def test_keys_longer_than_the_index_holds_get_key_too_long(make_site):
    """The index (LMDB) holds bucket + key + a 32-byte id in at most 511 bytes,
    below S3's 1024: a longer key is refused with KeyTooLongError before any
    byte is stored, the longest that fits works for PUT, GET, listing and
    multipart, and the site keeps accepting writes, also after a SIGKILL."""
    import re
    a = make_site("a").start()
    s3 = client(a)
    bucket = "b" * 63
    s3.create_bucket(Bucket=bucket)

    def too_long(key):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.put_object(Bucket=bucket, Key=key, Body=b"abc")
        assert code(e) == "KeyTooLongError" and status(e) == 400, e.value.response
        return e.value.response["Error"]["Message"]

    for n in (1025, 1024):
        too_long("k" * n)
    msg = too_long("k" * 600)
    limit = int(re.search(r"at most (\d+) bytes", msg).group(1))
    assert limit == 511 - 63 - 2 - 32  # LMDB's key size limit in Debian's build
    too_long("k" * (limit + 1))
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.create_multipart_upload(Bucket=bucket, Key="m" * (limit + 1))
    assert code(e) == "KeyTooLongError"
    # the longest key that fits: single PUT, multipart, listing, delete
    key, mkey = "k" * limit, "m" * limit
    s3.put_object(Bucket=bucket, Key=key, Body=b"fits")
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"fits"
    up = s3.create_multipart_upload(Bucket=bucket, Key=mkey)["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key=mkey, UploadId=up, PartNumber=1, Body=b"p" * 1000)
    s3.complete_multipart_upload(Bucket=bucket, Key=mkey, UploadId=up, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    assert s3.get_object(Bucket=bucket, Key=mkey)["Body"].read() == b"p" * 1000
    keys = [c["Key"] for c in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == [key, mkey]
    s3.put_object(Bucket=bucket, Key="small", Body=b"x")  # still writable
    a.stop(signal.SIGKILL)
    a.start()
    s3 = client(a)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"fits"
    s3.delete_object(Bucket=bucket, Key=key)
    s3.put_object(Bucket=bucket, Key="after", Body=b"y")
    assert sorted(c["Key"] for c in s3.list_objects_v2(Bucket=bucket)["Contents"]) == \
        ["after", mkey, "small"]


def data_shards(site):
    """Shard files holding data in obj/ on every drive (empty ones are the
    store's files pre-created for future writes)."""
    n = 0
    for d in site.drives:
        for root, _, files in os.walk(os.path.join(d, "obj")):
            n += sum(1 for f in files if f.rsplit(".", 1)[-1].isdigit()
                     and os.path.getsize(os.path.join(root, f)) > 0)
    return n


def test_sigkill_mid_put_leaves_nothing_after_restart(make_site):
    """A PUT cut by SIGKILL after some of its stripes reached the drives is
    invisible, and the start-up sweep removes its shards and the dead
    process's pre-created files; acknowledged objects are all there."""
    import http.client
    import urllib.parse
    a = make_site("a").start()
    s3 = client(a)
    s3.create_bucket(Bucket="cut")
    bodies = {f"ok{i}": os.urandom(1 << 20) for i in range(3)}  # striped, not inline
    for k, b in bodies.items():
        s3.put_object(Bucket="cut", Key=k, Body=b)
    assert data_shards(a) == 3 * 6
    url = urllib.parse.urlsplit(s3.generate_presigned_url(
        "put_object", Params={"Bucket": "cut", "Key": "partial"}, ExpiresIn=300))
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    conn.putrequest("PUT", url.path + "?" + url.query)
    conn.putheader("Content-Length", str(64 << 20))
    conn.endheaders()
    chunk = os.urandom(1 << 20)
    for _ in range(12):  # 12 of 64 MiB: several stripes written, no answer yet
        conn.send(chunk)
    wait_for(lambda: data_shards(a) > 3 * 6, timeout=30, what="the partial PUT's shards")
    a.stop(signal.SIGKILL)
    conn.close()
    assert data_shards(a) > 3 * 6  # its stripes are on the drives ...
    a.start()
    s3 = client(a)
    with pytest.raises(botocore.exceptions.ClientError) as e:  # ... but it is not visible
        s3.head_object(Bucket="cut", Key="partial")
    assert status(e) == 404
    for k, b in bodies.items():
        assert s3.get_object(Bucket="cut", Key=k)["Body"].read() == b
    assert data_shards(a) == 3 * 6  # the sweep removed them
    sweeps = [l for l in a.read_log().splitlines() if "event=store.sweep" in l]
    removed = int(sweeps[-1].split("removed=")[1].split()[0])
    assert removed > 6, sweeps[-1]  # the partial PUT's shards and the old pool's files
