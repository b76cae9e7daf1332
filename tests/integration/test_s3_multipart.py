"""S3 multipart upload on real meridiand processes, with real clients.

awscli's `s3 cp` with its default settings (8 MiB threshold and parts),
boto3's low-level calls (create, upload_part, upload_part_copy, complete,
abort, list_parts, list_multipart_uploads) and the S3 errors of each, a
kill -9 in the middle of an upload (acknowledged parts survive it, the
upload completes after the restart), the shard files on the drives (no
leftovers after abort, complete, overwrite), and a two-site test that a
completed upload replicates as one object.
"""
import base64
import hashlib
import os
import signal
import socket
import subprocess
import time

import botocore
import pytest

from conftest import Site, err_code, http, s3_client, sanitized, vm_hwm_kib

AWS = "/usr/bin/aws"
KEY, SECRET = "AKIATEST", "testsecretkey"
MIB = 1 << 20


def aws_env(tmp_path):
    cfg = tmp_path / "aws.cfg"
    cfg.write_text("[default]\n")  # awscli's defaults: multipart from 8 MiB on
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET, AWS_DEFAULT_REGION="us-east-1",
               AWS_CONFIG_FILE=str(cfg), AWS_SHARED_CREDENTIALS_FILE="/dev/null", AWS_PAGER="",
               AWS_EC2_METADATA_DISABLED="true")
    return env


def aws(site, env, *args, check=True, timeout=120):
    r = subprocess.run([AWS, "--endpoint-url", site.s3, *args], env=env, capture_output=True,
                       text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def client(site):
    return s3_client(site, read_timeout=60)


code = err_code


def sha(b):
    return hashlib.sha256(b).hexdigest()


def asan(site):
    """Peak RSS means nothing under a sanitizer (conftest.sanitized)."""
    return sanitized(site.proc.pid)


def mpu_etag(parts):
    md5s = b"".join(hashlib.md5(p).digest() for p in parts)
    return '"%s-%d"' % (hashlib.md5(md5s).hexdigest(), len(parts))


def shard_files(site):
    """Shard files holding data on every drive: {tmp: n, obj: n}. Empty ones
    are the store's files pre-created for future writes (store/FORMAT.md)."""
    n = {"tmp": 0, "obj": 0}
    for d in site.drives:
        for sub in ("tmp", "obj"):
            for root, _, files in os.walk(os.path.join(d, sub)):
                n[sub] += sum(1 for f in files if f.rsplit(".", 1)[-1].isdigit()
                              and os.path.getsize(os.path.join(root, f)) > 0)
    return n


def upload(c, bucket, key, parts, **create_kw):
    up = c.create_multipart_upload(Bucket=bucket, Key=key, **create_kw)["UploadId"]
    done = []
    for i, p in enumerate(parts, 1):
        r = c.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=i, Body=p)
        done.append({"PartNumber": i, "ETag": r["ETag"]})
    return up, done


def test_awscli_cp_default_settings_goes_multipart(site, tmp_path):
    env = aws_env(tmp_path)
    aws(site, env, "s3", "mb", "s3://mlx")
    src = tmp_path / "ckpt.bin"
    data = os.urandom(40 * MIB + 12345)
    src.write_bytes(data)
    aws(site, env, "s3", "cp", str(src), "s3://mlx/run1/ckpt.bin")
    c = client(site)
    head = c.head_object(Bucket="mlx", Key="run1/ckpt.bin")
    assert head["ContentLength"] == len(data)
    # awscli cut it into 8 MiB parts: a multipart ETag, computed like AWS does
    parts = [data[i:i + 8 * MIB] for i in range(0, len(data), 8 * MIB)]
    assert head["ETag"] == mpu_etag(parts)
    dst = tmp_path / "back.bin"
    aws(site, env, "s3", "cp", "s3://mlx/run1/ckpt.bin", str(dst))
    assert sha(dst.read_bytes()) == sha(data)
    # ranged reads: inside a part, across part boundaries, the tail
    for a, b in [(5, 100), (8 * MIB - 10, 8 * MIB + 10), (3 * 8 * MIB - 1, 4 * 8 * MIB + 1),
                 (len(data) - 7, len(data) - 1)]:
        r = c.get_object(Bucket="mlx", Key="run1/ckpt.bin", Range=f"bytes={a}-{b}")
        assert r["Body"].read() == data[a:b + 1]
    # listing shows the object with its size and ETag
    lst = c.list_objects_v2(Bucket="mlx")["Contents"]
    assert [(o["Key"], o["Size"], o["ETag"]) for o in lst] == [
        ("run1/ckpt.bin", len(data), mpu_etag(parts))]
    # the upload is gone, and no shard is left in tmp/
    assert c.list_multipart_uploads(Bucket="mlx").get("Uploads", []) == []
    assert shard_files(site)["tmp"] == 0


def test_awscli_256mib_bounded_memory(site, tmp_path):
    """awscli sends 10 parts at once; each streams through two 1 MiB buffers
    and one stripe, so the daemon stays far below the object's size."""
    env = aws_env(tmp_path)
    aws(site, env, "s3", "mb", "s3://mem")
    src = tmp_path / "big.bin"
    h = hashlib.sha256()
    with open(src, "wb") as f:
        for _ in range(256):
            chunk = os.urandom(MIB)
            h.update(chunk)
            f.write(chunk)
    aws(site, env, "s3", "cp", str(src), "s3://mem/big.bin")
    hwm = vm_hwm_kib(site.proc.pid)
    assert asan(site) or hwm < 96 * 1024, f"peak RSS {hwm} KiB for a 256 MiB multipart upload"
    dst = tmp_path / "back.bin"
    aws(site, env, "s3", "cp", "s3://mem/big.bin", str(dst))
    with open(dst, "rb") as f:
        back = hashlib.sha256()
        for chunk in iter(lambda: f.read(MIB), b""):
            back.update(chunk)
    assert back.hexdigest() == h.hexdigest()


def zeros_sha256(size):
    """SHA-256 of size zero bytes (a whole number of MiB)."""
    h, zero = hashlib.sha256(), bytes(MIB)
    for _ in range(size // MIB):
        h.update(zero)
    return h.hexdigest()


@pytest.mark.skipif(os.environ.get("MERIDIAN_TEST_BIG") != "1",
                    reason="5 GiB through awscli takes minutes: set MERIDIAN_TEST_BIG=1")
def test_awscli_5gib_multipart_peak_rss(site, tmp_path):
    """The issue's acceptance run: a 5 GiB `aws s3 cp` with awscli's defaults
    (640 parts of 8 MiB, 10 in flight) keeps the daemon under 256 MiB. The
    source is a sparse file (zeros: the daemon hashes and encodes them like
    any bytes); the object is read back and hashed as it streams."""
    env = aws_env(tmp_path)
    aws(site, env, "s3", "mb", "s3://big")
    src = tmp_path / "zeros.bin"
    size = 5 << 30
    with open(src, "wb") as f:
        f.truncate(size)
    t = time.time()
    aws(site, env, "s3", "cp", str(src), "s3://big/zeros.bin", timeout=1800)
    put_s = time.time() - t
    hwm = vm_hwm_kib(site.proc.pid)
    print(f"5 GiB multipart PUT: {size / put_s / 1e6:.1f} MB/s, peak RSS {hwm / 1024:.1f} MiB")
    assert asan(site) or hwm < 256 * 1024, f"peak RSS {hwm} KiB"
    head = client(site).head_object(Bucket="big", Key="zeros.bin")
    assert head["ContentLength"] == size and head["ETag"].endswith('-640"')
    h = hashlib.sha256()
    body = client(site).get_object(Bucket="big", Key="zeros.bin")["Body"]
    for chunk in iter(lambda: body.read(MIB), b""):
        h.update(chunk)
    assert h.hexdigest() == zeros_sha256(size)
    hwm = vm_hwm_kib(site.proc.pid)
    print(f"after the GET: peak RSS {hwm / 1024:.1f} MiB")
    assert asan(site) or hwm < 256 * 1024


@pytest.mark.skipif(os.environ.get("MERIDIAN_TEST_BIG") != "1",
                    reason="5 GiB through curl takes minutes: set MERIDIAN_TEST_BIG=1")
def test_curl_5gib_single_put_peak_rss(site, tmp_path):
    """The issue's other acceptance run: one 5 GiB PUT (S3's single-PUT
    limit) with curl --aws-sigv4 keeps the daemon under 256 MiB, and so does
    reading it back with curl. A sparse source, as above."""
    client(site).create_bucket(Bucket="big")
    src = tmp_path / "zeros.bin"
    size = 5 << 30
    with open(src, "wb") as f:
        f.truncate(size)
    curl = ["curl", "-sS", "--fail-with-body", "--max-time", "1800", "--aws-sigv4",
            "aws:amz:us-east-1:s3", "--user", "AKIATEST:testsecretkey",
            "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"]
    t = time.time()
    r = subprocess.run(curl + ["-T", str(src), site.s3 + "/big/single"], capture_output=True,
                       timeout=1900)
    assert r.returncode == 0, r.stdout + r.stderr
    put_s = time.time() - t
    hwm = vm_hwm_kib(site.proc.pid)
    print(f"5 GiB single PUT: {size / put_s / 1e6:.1f} MB/s, peak RSS {hwm / 1024:.1f} MiB")
    assert asan(site) or hwm < 256 * 1024, f"peak RSS {hwm} KiB"
    head = client(site).head_object(Bucket="big", Key="single")
    assert head["ContentLength"] == size and "-" not in head["ETag"]
    # read back through curl into sha256sum: the object streams out whole
    p = subprocess.Popen(curl + [site.s3 + "/big/single"], stdout=subprocess.PIPE)
    h, n = hashlib.sha256(), 0
    for chunk in iter(lambda: p.stdout.read(MIB), b""):
        h.update(chunk)
        n += len(chunk)
    assert p.wait(timeout=1800) == 0 and n == size
    assert h.hexdigest() == zeros_sha256(size)
    hwm = vm_hwm_kib(site.proc.pid)
    print(f"after the GET: peak RSS {hwm / 1024:.1f} MiB")
    assert asan(site) or hwm < 256 * 1024


def test_boto3_lifecycle(site):
    c = client(site)
    c.create_bucket(Bucket="bkt")
    p1, p2, p3 = os.urandom(5 * MIB), os.urandom(5 * MIB + 1), os.urandom(777)
    up = c.create_multipart_upload(Bucket="bkt", Key="a/obj", ContentType="application/x-ckpt",
                                   Metadata={"step": "1000"})["UploadId"]
    other = c.create_multipart_upload(Bucket="bkt", Key="b/other")["UploadId"]
    ups = c.list_multipart_uploads(Bucket="bkt")["Uploads"]
    assert [(u["Key"], u["UploadId"]) for u in ups] == [("a/obj", up), ("b/other", other)]
    assert [u["Key"] for u in c.list_multipart_uploads(Bucket="bkt", Prefix="b/")["Uploads"]] \
        == ["b/other"]
    page = c.list_multipart_uploads(Bucket="bkt", MaxUploads=1)
    assert page["IsTruncated"] and page["NextKeyMarker"] == "a/obj"
    page = c.list_multipart_uploads(Bucket="bkt", KeyMarker=page["NextKeyMarker"],
                                    UploadIdMarker=page["NextUploadIdMarker"])
    assert [u["Key"] for u in page["Uploads"]] == ["b/other"]
    # with a delimiter, keys roll up into CommonPrefixes (each counts once)
    extra = [c.create_multipart_upload(Bucket="bkt", Key=k)["UploadId"]
             for k in ("b/x/1", "b/x/2", "top")]
    page = c.list_multipart_uploads(Bucket="bkt", Delimiter="/")
    assert [p["Prefix"] for p in page["CommonPrefixes"]] == ["a/", "b/"]
    assert [u["Key"] for u in page["Uploads"]] == ["top"]
    page = c.list_multipart_uploads(Bucket="bkt", Prefix="b/", Delimiter="/", MaxUploads=1)
    assert [u["Key"] for u in page["Uploads"]] == ["b/other"] and page["IsTruncated"]
    assert page.get("CommonPrefixes", []) == []
    page = c.list_multipart_uploads(Bucket="bkt", Prefix="b/", Delimiter="/", MaxUploads=1,
                                    KeyMarker=page["NextKeyMarker"],
                                    UploadIdMarker=page["NextUploadIdMarker"])
    assert [p["Prefix"] for p in page["CommonPrefixes"]] == ["b/x/"]
    assert page.get("Uploads", []) == [] and not page["IsTruncated"]
    for k, u in zip(("b/x/1", "b/x/2", "top"), extra):
        c.abort_multipart_upload(Bucket="bkt", Key=k, UploadId=u)

    e1 = c.upload_part(Bucket="bkt", Key="a/obj", UploadId=up, PartNumber=1,
                       Body=os.urandom(5 * MIB))["ETag"]
    # a part uploaded again replaces the first one (and its data is freed)
    e1 = c.upload_part(Bucket="bkt", Key="a/obj", UploadId=up, PartNumber=1, Body=p1,
                       ContentMD5=base64.b64encode(hashlib.md5(p1).digest()).decode())["ETag"]
    assert e1 == '"%s"' % hashlib.md5(p1).hexdigest()
    e3 = c.upload_part(Bucket="bkt", Key="a/obj", UploadId=up, PartNumber=3, Body=p3)["ETag"]
    e2 = c.upload_part(Bucket="bkt", Key="a/obj", UploadId=up, PartNumber=2, Body=p2)["ETag"]
    lp = c.list_parts(Bucket="bkt", Key="a/obj", UploadId=up)
    assert [(p["PartNumber"], p["Size"], p["ETag"]) for p in lp["Parts"]] == \
        [(1, len(p1), e1), (2, len(p2), e2), (3, len(p3), e3)]
    lp = c.list_parts(Bucket="bkt", Key="a/obj", UploadId=up, MaxParts=2)
    assert lp["IsTruncated"] and lp["NextPartNumberMarker"] == 2
    lp = c.list_parts(Bucket="bkt", Key="a/obj", UploadId=up, PartNumberMarker=2)
    assert [p["PartNumber"] for p in lp["Parts"]] == [3]

    r = c.complete_multipart_upload(
        Bucket="bkt", Key="a/obj", UploadId=up,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2},
                                   {"PartNumber": 3, "ETag": e3}]})
    assert r["ETag"] == mpu_etag([p1, p2, p3])
    g = c.get_object(Bucket="bkt", Key="a/obj")
    assert sha(g["Body"].read()) == sha(p1 + p2 + p3)
    assert g["ContentType"] == "application/x-ckpt" and g["Metadata"] == {"step": "1000"}
    assert g["ETag"] == r["ETag"]
    # GET/HEAD ?partNumber= serve one part (206 with its range)
    g2 = c.get_object(Bucket="bkt", Key="a/obj", PartNumber=2)
    assert g2["Body"].read() == p2 and g2["PartsCount"] == 3
    assert g2["ContentRange"] == f"bytes {len(p1)}-{len(p1) + len(p2) - 1}/{len(p1 + p2 + p3)}"
    assert c.head_object(Bucket="bkt", Key="a/obj", PartNumber=3)["ContentLength"] == len(p3)
    with pytest.raises(botocore.exceptions.ClientError) as ei:
        c.get_object(Bucket="bkt", Key="a/obj", PartNumber=4)
    assert code(ei) == "InvalidPartNumber"
    with pytest.raises(botocore.exceptions.ClientError) as ei:
        c.get_object(Bucket="bkt", Key="a/obj", PartNumber=1, Range="bytes=0-1")
    assert code(ei) == "InvalidRequest"
    c.put_object(Bucket="bkt", Key="plain", Body=b"not multipart")
    assert c.get_object(Bucket="bkt", Key="plain", PartNumber=1)["Body"].read() == \
        b"not multipart"
    with pytest.raises(botocore.exceptions.ClientError) as ei:
        c.get_object(Bucket="bkt", Key="plain", PartNumber=2)
    assert code(ei) == "InvalidPartNumber"
    c.delete_object(Bucket="bkt", Key="plain")
    # the upload is gone
    assert [u["Key"] for u in c.list_multipart_uploads(Bucket="bkt")["Uploads"]] == ["b/other"]
    with pytest.raises(botocore.exceptions.ClientError) as ei:
        c.list_parts(Bucket="bkt", Key="a/obj", UploadId=up)
    assert code(ei) == "NoSuchUpload"

    # abort frees the parts; a part after the abort is refused
    before = shard_files(site)["obj"]
    c.upload_part(Bucket="bkt", Key="b/other", UploadId=other, PartNumber=1,
                  Body=os.urandom(2 * MIB))
    assert shard_files(site)["obj"] == before + 6
    c.abort_multipart_upload(Bucket="bkt", Key="b/other", UploadId=other)
    assert shard_files(site)["obj"] == before
    assert c.list_multipart_uploads(Bucket="bkt").get("Uploads", []) == []
    with pytest.raises(botocore.exceptions.ClientError) as ei:
        c.upload_part(Bucket="bkt", Key="b/other", UploadId=other, PartNumber=2, Body=b"x")
    assert code(ei) == "NoSuchUpload"
    with pytest.raises(botocore.exceptions.ClientError) as ei:
        c.abort_multipart_upload(Bucket="bkt", Key="b/other", UploadId=other)
    assert code(ei) == "NoSuchUpload"

    # overwriting the object with a plain PUT frees every part's shards
    c.put_object(Bucket="bkt", Key="a/obj", Body=b"small")
    assert shard_files(site) == {"tmp": 0, "obj": 0}


def test_complete_uses_subset_and_frees_the_rest(site):
    c = client(site)
    c.create_bucket(Bucket="bkt")
    parts = [os.urandom(5 * MIB), os.urandom(3 * MIB), os.urandom(5 * MIB)]
    up, done = upload(c, "bkt", "k", parts)
    assert shard_files(site)["obj"] == 3 * 6
    r = c.complete_multipart_upload(Bucket="bkt", Key="k", UploadId=up,
                                    MultipartUpload={"Parts": [done[0], done[2]]})
    assert r["ETag"] == mpu_etag([parts[0], parts[2]])
    assert c.get_object(Bucket="bkt", Key="k")["Body"].read() == parts[0] + parts[2]
    assert shard_files(site)["obj"] == 2 * 6  # part 2 was not used: freed


def test_errors(site):
    c = client(site)
    c.create_bucket(Bucket="bkt")
    small, big = os.urandom(1 * MIB), os.urandom(5 * MIB)
    up, done = upload(c, "bkt", "k", [small, big])

    def complete(parts, upload_id=up):
        with pytest.raises(botocore.exceptions.ClientError) as ei:
            c.complete_multipart_upload(Bucket="bkt", Key="k", UploadId=upload_id,
                                        MultipartUpload={"Parts": parts})
        return code(ei)

    assert complete([done[0], done[1]]) == "EntityTooSmall"
    assert complete([done[1], done[0]]) == "InvalidPartOrder"
    assert complete([done[0], {"PartNumber": 1, "ETag": done[0]["ETag"]}]) == "InvalidPartOrder"
    assert complete([{"PartNumber": 1, "ETag": '"%s"' % ("0" * 32)}]) == "InvalidPart"
    assert complete([{"PartNumber": 7, "ETag": done[0]["ETag"]}]) == "InvalidPart"
    assert complete([done[0]], upload_id="nosuchupload") == "NoSuchUpload"
    # each failed Complete left the upload intact: it still completes
    r = c.complete_multipart_upload(Bucket="bkt", Key="k", UploadId=up,
                                    MultipartUpload={"Parts": [done[1]]})
    assert r["ETag"] == mpu_etag([big])
    assert complete([done[1]]) == "NoSuchUpload"  # already completed

    with pytest.raises(botocore.exceptions.ClientError) as ei:
        c.upload_part(Bucket="bkt", Key="k", UploadId="nosuchupload", PartNumber=1, Body=b"x")
    assert code(ei) == "NoSuchUpload"
    with pytest.raises(botocore.exceptions.ClientError) as ei:
        c.list_parts(Bucket="bkt", Key="k", UploadId="nosuchupload")
    assert code(ei) == "NoSuchUpload"
    with pytest.raises(botocore.exceptions.ClientError) as ei:
        c.create_multipart_upload(Bucket="nosuchbucket", Key="k")
    assert code(ei) == "NoSuchBucket"

    up2 = c.create_multipart_upload(Bucket="bkt", Key="k2")["UploadId"]
    with pytest.raises(botocore.exceptions.ClientError) as ei:
        c.upload_part(Bucket="bkt", Key="k2", UploadId=up2, PartNumber=1, Body=b"abc",
                      ContentMD5=base64.b64encode(hashlib.md5(b"abd").digest()).decode())
    assert code(ei) == "BadDigest"
    with pytest.raises(botocore.exceptions.ClientError) as ei:
        c.upload_part(Bucket="bkt", Key="k2", UploadId=up2, PartNumber=10001, Body=b"abc")
    assert code(ei) == "InvalidArgument"
    assert c.list_parts(Bucket="bkt", Key="k2", UploadId=up2).get("Parts", []) == []
    # an upload id is bound to its key
    with pytest.raises(botocore.exceptions.ClientError) as ei:
        c.upload_part(Bucket="bkt", Key="other", UploadId=up2, PartNumber=1, Body=b"abc")
    assert code(ei) == "NoSuchUpload"

    # malformed Complete bodies, sent raw (boto3 always sends good XML)
    def raw_complete(body):
        req = botocore.awsrequest.AWSRequest(
            method="POST", url=f"{site.s3}/bkt/k2?uploadId={up2}", data=body)
        botocore.auth.S3SigV4Auth(botocore.credentials.Credentials(KEY, SECRET), "s3",
                                  "us-east-1").add_auth(req)
        p = req.prepare()
        st, _, b = http("POST", p.url, headers=dict(p.headers), body=body)
        return st, b

    for body in [b"", b"<CompleteMultipartUpload>", b"not xml",
                 b"<CompleteMultipartUpload></CompleteMultipartUpload>",
                 b"<!DOCTYPE x [<!ENTITY a 'b'>]><CompleteMultipartUpload/>",
                 b"<CompleteMultipartUpload><Part><PartNumber>x</PartNumber>"
                 b"<ETag>e</ETag></Part></CompleteMultipartUpload>"]:
        st, b = raw_complete(body)
        assert st == 400 and b"<Code>MalformedXML</Code>" in b, (body, st, b)
    assert site.proc.poll() is None


def test_abandoned_uploads_expire(tmp_path):
    site = Site(str(tmp_path / "a"))
    with open(site.config) as f:
        cfg = f.read()
    with open(site.config, "w") as f:
        f.write(cfg.replace("[store]\n", "[store]\nmultipart_expire = 2\n"))
    site.start()
    try:
        c = client(site)
        c.create_bucket(Bucket="bkt")
        up, _ = upload(c, "bkt", "old", [os.urandom(MIB)])
        assert shard_files(site)["obj"] == 6
        deadline = time.time() + 45  # checked on the daemon's 10 s timer
        while time.time() < deadline and c.list_multipart_uploads(Bucket="bkt").get("Uploads"):
            time.sleep(0.5)
        assert c.list_multipart_uploads(Bucket="bkt").get("Uploads", []) == []
        assert shard_files(site)["obj"] == 0
        with pytest.raises(botocore.exceptions.ClientError) as ei:
            c.list_parts(Bucket="bkt", Key="old", UploadId=up)
        assert code(ei) == "NoSuchUpload"
        assert "event=store.mpu_expired" in site.read_log()
    finally:
        site.stop()


def test_upload_part_copy(site):
    c = client(site)
    c.create_bucket(Bucket="src")
    c.create_bucket(Bucket="dst")
    data = os.urandom(12 * MIB + 5)
    c.put_object(Bucket="src", Key="dir/big blob", Body=data)
    up = c.create_multipart_upload(Bucket="dst", Key="copy")["UploadId"]
    ranges = [(0, 5 * MIB - 1), (5 * MIB, 11 * MIB - 1), (11 * MIB, len(data) - 1)]
    parts = []
    for i, (a, b) in enumerate(ranges, 1):
        r = c.upload_part_copy(Bucket="dst", Key="copy", UploadId=up, PartNumber=i,
                               CopySource={"Bucket": "src", "Key": "dir/big blob"},
                               CopySourceRange=f"bytes={a}-{b}")
        assert r["CopyPartResult"]["ETag"] == '"%s"' % hashlib.md5(data[a:b + 1]).hexdigest()
        parts.append({"PartNumber": i, "ETag": r["CopyPartResult"]["ETag"]})
    c.complete_multipart_upload(Bucket="dst", Key="copy", UploadId=up,
                                MultipartUpload={"Parts": parts})
    assert sha(c.get_object(Bucket="dst", Key="copy")["Body"].read()) == sha(data)
    # a whole-object copy into a part, and the errors
    up2 = c.create_multipart_upload(Bucket="dst", Key="copy2")["UploadId"]
    r = c.upload_part_copy(Bucket="dst", Key="copy2", UploadId=up2, PartNumber=1,
                           CopySource="src/dir/big blob")
    assert r["CopyPartResult"]["ETag"] == '"%s"' % hashlib.md5(data).hexdigest()
    for kw, want in [({"CopySource": {"Bucket": "src", "Key": "nope"}}, "NoSuchKey"),
                     ({"CopySource": {"Bucket": "src", "Key": "dir/big blob"},
                       "CopySourceRange": f"bytes=0-{len(data)}"}, "InvalidRange")]:
        with pytest.raises(botocore.exceptions.ClientError) as ei:
            c.upload_part_copy(Bucket="dst", Key="copy2", UploadId=up2, PartNumber=2, **kw)
        assert code(ei) == want


def test_kill9_mid_upload_keeps_acknowledged_parts(tmp_path):
    site = Site(str(tmp_path / "a")).start()
    try:
        c = client(site)
        c.create_bucket(Bucket="bkt")
        p1, p2, p3 = os.urandom(6 * MIB), os.urandom(5 * MIB), os.urandom(3 * MIB)
        up, done = upload(c, "bkt", "ckpt", [p1, p2])

        # a third part in flight when the daemon dies: a presigned PUT whose
        # body stops after 1 MiB of the 8 MiB it announced
        url = c.generate_presigned_url("upload_part", Params={
            "Bucket": "bkt", "Key": "ckpt", "UploadId": up, "PartNumber": 3}, ExpiresIn=300)
        path = url[len(site.s3):]
        sock = socket.create_connection(("127.0.0.1", site.s3_port), timeout=10)
        sock.sendall((f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{site.s3_port}\r\n"
                      f"Content-Length: {8 * MIB}\r\n\r\n").encode())
        sock.sendall(os.urandom(MIB))
        time.sleep(0.5)
        site.stop(sig=signal.SIGKILL)
        sock.close()
        # what a crash between durable data and its record leaves: shard
        # files no record references (planted here, the window is tiny)
        orphan = os.path.join(site.drives[0], "obj", "ab", "ab" + "0" * 30 + ".3")
        with open(orphan, "wb") as f:
            f.write(b"leftover")
        site.start()
        # no shard of the interrupted part is left in tmp/, the orphan is swept
        assert shard_files(site)["tmp"] == 0
        assert not os.path.exists(orphan)
        assert shard_files(site)["obj"] == 2 * 6
        c = client(site)
        lp = c.list_parts(Bucket="bkt", Key="ckpt", UploadId=up)["Parts"]
        assert [(p["PartNumber"], p["ETag"]) for p in lp] == \
            [(d["PartNumber"], d["ETag"]) for d in done]
        e3 = c.upload_part(Bucket="bkt", Key="ckpt", UploadId=up, PartNumber=3, Body=p3)["ETag"]
        r = c.complete_multipart_upload(
            Bucket="bkt", Key="ckpt", UploadId=up,
            MultipartUpload={"Parts": done + [{"PartNumber": 3, "ETag": e3}]})
        assert r["ETag"] == mpu_etag([p1, p2, p3])
        # a completed upload survives kill -9 too (its WAL record is durable)
        site.stop(sig=signal.SIGKILL)
        site.start()
        c = client(site)
        assert sha(c.get_object(Bucket="bkt", Key="ckpt")["Body"].read()) == sha(p1 + p2 + p3)
        assert c.list_multipart_uploads(Bucket="bkt").get("Uploads", []) == []
        assert shard_files(site)["obj"] == 3 * 6
    finally:
        site.stop()


def test_multipart_object_replicates_as_one_object(tmp_path):
    a = Site(str(tmp_path / "a"), name="a", site_id=1)
    b = Site(str(tmp_path / "b"), name="b", site_id=2)
    a.add_peer(b)
    b.add_peer(a)
    a.start()
    b.start()
    try:
        ca, cb = client(a), client(b)
        ca.create_bucket(Bucket="mlx")
        parts = [os.urandom(5 * MIB), os.urandom(5 * MIB), os.urandom(2 * MIB + 1)]
        up, done = upload(ca, "mlx", "ckpt", parts, Metadata={"epoch": "3"})
        ca.complete_multipart_upload(Bucket="mlx", Key="ckpt", UploadId=up,
                                     MultipartUpload={"Parts": done})
        want = sha(b"".join(parts))
        deadline = time.time() + 30
        got = None
        while time.time() < deadline:
            try:
                g = cb.get_object(Bucket="mlx", Key="ckpt")
                got = g
                break
            except botocore.exceptions.ClientError:
                time.sleep(0.2)
        assert got is not None, "never replicated"
        assert sha(got["Body"].read()) == want
        assert got["ETag"] == mpu_etag(parts)
        assert got["Metadata"] == {"epoch": "3"}
        ha = ca.head_object(Bucket="mlx", Key="ckpt")
        assert got["ResponseMetadata"]["HTTPHeaders"]["x-meridian-version-id"] == \
            ha["ResponseMetadata"]["HTTPHeaders"]["x-meridian-version-id"]
        # the peer holds one object, never the parts or the upload
        assert cb.list_multipart_uploads(Bucket="mlx").get("Uploads", []) == []
        assert shard_files(b)["obj"] == 6
        # and a ranged read at the peer
        r = cb.get_object(Bucket="mlx", Key="ckpt", Range=f"bytes={5 * MIB - 3}-{5 * MIB + 3}")
        assert r["Body"].read() == b"".join(parts)[5 * MIB - 3:5 * MIB + 4]

        # a peer that was down while an upload completed catches up from the WAL
        b.stop()
        parts2 = [os.urandom(5 * MIB), os.urandom(MIB)]
        up2, done2 = upload(ca, "mlx", "ckpt", parts2)  # overwrites the first one
        ca.complete_multipart_upload(Bucket="mlx", Key="ckpt", UploadId=up2,
                                     MultipartUpload={"Parts": done2})
        b.start()
        cb = client(b)
        deadline = time.time() + 30
        while time.time() < deadline:
            g = cb.get_object(Bucket="mlx", Key="ckpt")
            if g["ETag"] == mpu_etag(parts2):
                break
            time.sleep(0.2)
        assert g["ETag"] == mpu_etag(parts2)
        assert sha(g["Body"].read()) == sha(b"".join(parts2))
        # the first version's shards are freed (right after the index commit
        # that made the new one visible); a keeps the two parts, not copies
        deadline = time.time() + 10
        while time.time() < deadline and shard_files(b)["obj"] != 6:
            time.sleep(0.1)
        assert shard_files(b)["obj"] == 6
        assert shard_files(a)["obj"] == 2 * 6
    finally:
        a.stop()
        b.stop()
