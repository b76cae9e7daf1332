"""S3 bucket versioning and bucket tagging against one real meridiand, driven
by boto3 and awscli: enabling and suspending versioning, versions kept by
overwrites, GET/HEAD/DELETE by versionId, delete markers, ListObjectVersions
with its pagination and delimiter, the null version of suspended buckets,
CopyObject from a version, DeleteObjects with VersionIds, bucket tagging, and
the error cases (MalformedXML, NoSuchVersion, NoSuchTagSet, 405 on a delete
marker). Unversioned buckets keep answering as before (no x-amz-version-id).
"""
import json
import os
import subprocess

import botocore
import pytest
from conftest import err_code, err_status, s3_client

KEY, SECRET = "AKIATEST", "testsecretkey"


client = s3_client
code = err_code
status = err_status


def headers(resp):
    return resp["ResponseMetadata"]["HTTPHeaders"]


def versions(c, bucket, **kw):
    """[(key, version_id, is_latest, is_marker)] in listing order, all pages."""
    out = []
    for page in c.get_paginator("list_object_versions").paginate(Bucket=bucket, **kw):
        entries = [(v["Key"], v["VersionId"], v["IsLatest"], False, v["LastModified"])
                   for v in page.get("Versions", [])]
        entries += [(m["Key"], m["VersionId"], m["IsLatest"], True, m["LastModified"])
                    for m in page.get("DeleteMarkers", [])]
        out += entries
    return out


def test_versioning_state_and_overwrites_keep_versions(site):
    c = client(site)
    c.create_bucket(Bucket="vers")
    assert "Status" not in c.get_bucket_versioning(Bucket="vers")
    r = c.put_object(Bucket="vers", Key="k", Body=b"before")
    assert "VersionId" not in r  # unversioned: no x-amz-version-id, as before
    c.put_bucket_versioning(Bucket="vers", VersioningConfiguration={"Status": "Enabled"})
    assert c.get_bucket_versioning(Bucket="vers")["Status"] == "Enabled"

    ids = [c.put_object(Bucket="vers", Key="k", Body=b"v%d" % i)["VersionId"] for i in range(3)]
    assert len(set(ids)) == 3 and "null" not in ids
    g = c.get_object(Bucket="vers", Key="k")
    assert g["Body"].read() == b"v2" and g["VersionId"] == ids[2]
    for i, vid in enumerate(ids):
        g = c.get_object(Bucket="vers", Key="k", VersionId=vid)
        assert g["Body"].read() == b"v%d" % i and g["VersionId"] == vid
        h = c.head_object(Bucket="vers", Key="k", VersionId=vid)
        assert h["ContentLength"] == 2 and h["VersionId"] == vid
    # the version written before versioning is the null version
    g = c.get_object(Bucket="vers", Key="k", VersionId="null")
    assert g["Body"].read() == b"before" and g["VersionId"] == "null"

    listed = versions(c, "vers")
    assert [(k, v, latest) for k, v, latest, _, _ in listed] == \
        [("k", ids[2], True), ("k", ids[1], False), ("k", ids[0], False), ("k", "null", False)]
    # newest first
    times = [t for *_, t in listed]
    assert times == sorted(times, reverse=True)

    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.get_object(Bucket="vers", Key="k", VersionId="0" * 24)
    assert code(e) == "NoSuchVersion"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.head_object(Bucket="vers", Key="k", VersionId="0" * 24)
    assert status(e) == 404


def test_delete_markers_and_delete_by_version(site):
    c = client(site)
    c.create_bucket(Bucket="dm1")
    c.put_bucket_versioning(Bucket="dm1", VersioningConfiguration={"Status": "Enabled"})
    v1 = c.put_object(Bucket="dm1", Key="k", Body=b"one")["VersionId"]
    v2 = c.put_object(Bucket="dm1", Key="k", Body=b"two")["VersionId"]

    d = c.delete_object(Bucket="dm1", Key="k")
    assert d["DeleteMarker"] is True
    marker = d["VersionId"]
    assert marker not in (v1, v2, "null")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.get_object(Bucket="dm1", Key="k")
    assert code(e) == "NoSuchKey"
    assert e.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-delete-marker"] == "true"
    # the marker by id: 405
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.get_object(Bucket="dm1", Key="k", VersionId=marker)
    assert status(e) == 405
    assert e.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-delete-marker"] == "true"
    # older versions are kept and listable; the key is gone from ListObjects
    assert c.get_object(Bucket="dm1", Key="k", VersionId=v1)["Body"].read() == b"one"
    assert "Contents" not in c.list_objects_v2(Bucket="dm1")
    listed = versions(c, "dm1")
    assert ("k", marker, True, True) in [x[:4] for x in listed]
    assert ("k", v2, False, False) in [x[:4] for x in listed]

    # removing the marker brings v2 back
    d = c.delete_object(Bucket="dm1", Key="k", VersionId=marker)
    assert d["DeleteMarker"] is True and d["VersionId"] == marker
    assert c.get_object(Bucket="dm1", Key="k")["Body"].read() == b"two"
    # removing the current version makes the previous one current
    d = c.delete_object(Bucket="dm1", Key="k", VersionId=v2)
    assert d["VersionId"] == v2 and not d.get("DeleteMarker")
    g = c.get_object(Bucket="dm1", Key="k")
    assert g["Body"].read() == b"one" and g["VersionId"] == v1
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.get_object(Bucket="dm1", Key="k", VersionId=v2)
    assert code(e) == "NoSuchVersion"
    assert [x[:4] for x in versions(c, "dm1")] == [("k", v1, True, False)]
    # removing the last version: the key is gone, the bucket can be deleted
    c.delete_object(Bucket="dm1", Key="k", VersionId=v1)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.get_object(Bucket="dm1", Key="k")
    assert code(e) == "NoSuchKey"
    assert versions(c, "dm1") == []
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.delete_object(Bucket="dm1", Key="k", VersionId="not-an-id")
    assert code(e) == "InvalidArgument"
    c.delete_bucket(Bucket="dm1")


def test_versioned_bucket_with_data_is_not_empty(site):
    c = client(site)
    c.create_bucket(Bucket="full")
    c.put_bucket_versioning(Bucket="full", VersioningConfiguration={"Status": "Enabled"})
    vid = c.put_object(Bucket="full", Key="k", Body=b"x")["VersionId"]
    c.delete_object(Bucket="full", Key="k")  # only a marker is current now
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.delete_bucket(Bucket="full")
    assert code(e) == "BucketNotEmpty"
    c.delete_object(Bucket="full", Key="k", VersionId=vid)
    c.delete_bucket(Bucket="full")


def test_list_object_versions_pagination_prefix_delimiter(site):
    c = client(site)
    c.create_bucket(Bucket="pages")
    c.put_bucket_versioning(Bucket="pages", VersioningConfiguration={"Status": "Enabled"})
    want = []
    for key in ("a", "b", "dir/x", "dir/y"):
        ids = [c.put_object(Bucket="pages", Key=key, Body=key.encode() * i)["VersionId"]
               for i in range(1, 5)]
        want += [(key, v) for v in reversed(ids)]
    marker = c.delete_object(Bucket="pages", Key="b")["VersionId"]
    want.insert(4, ("b", marker))

    got, km, vm, pages = [], None, None, 0
    while True:
        kw = {"Bucket": "pages", "MaxKeys": 3}
        if km is not None:
            kw.update(KeyMarker=km, VersionIdMarker=vm)
        r = c.list_object_versions(**kw)
        entries = [(v["Key"], v["VersionId"]) for v in r.get("Versions", [])] + \
                  [(m["Key"], m["VersionId"]) for m in r.get("DeleteMarkers", [])]
        assert len(entries) <= 3
        # within a page, keep the server's order: markers and versions of a
        # key sorted newest first
        order = {kv: i for i, kv in enumerate(want)}
        assert all(kv in order for kv in entries), (entries, want, kw)
        got += sorted(entries, key=lambda kv: order[kv])
        pages += 1
        if not r["IsTruncated"]:
            break
        km, vm = r["NextKeyMarker"], r.get("NextVersionIdMarker", "")
    assert got == want
    assert pages == 6

    r = c.list_object_versions(Bucket="pages", Prefix="dir/")
    assert {v["Key"] for v in r["Versions"]} == {"dir/x", "dir/y"} and len(r["Versions"]) == 8
    r = c.list_object_versions(Bucket="pages", Delimiter="/")
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["dir/"]
    assert {v["Key"] for v in r["Versions"]} == {"a", "b"}
    r = c.list_object_versions(Bucket="pages", KeyMarker="b")
    assert {v["Key"] for v in r["Versions"]} == {"dir/x", "dir/y"}
    r = c.list_object_versions(Bucket="pages", Prefix="dir/", EncodingType="url", MaxKeys=1)
    assert r["IsTruncated"] and len(r["Versions"]) == 1


def test_suspended_bucket_null_version(site):
    c = client(site)
    c.create_bucket(Bucket="susp")
    c.put_bucket_versioning(Bucket="susp", VersioningConfiguration={"Status": "Enabled"})
    real = c.put_object(Bucket="susp", Key="k", Body=b"real")["VersionId"]
    c.put_bucket_versioning(Bucket="susp", VersioningConfiguration={"Status": "Suspended"})
    assert c.get_bucket_versioning(Bucket="susp")["Status"] == "Suspended"
    assert c.put_object(Bucket="susp", Key="k", Body=b"null1")["VersionId"] == "null"
    assert c.put_object(Bucket="susp", Key="k", Body=b"null2")["VersionId"] == "null"
    listed = [x[:4] for x in versions(c, "susp")]
    # the second null write replaced the first; the real version stays
    assert listed == [("k", "null", True, False), ("k", real, False, False)]
    g = c.get_object(Bucket="susp", Key="k")
    assert g["Body"].read() == b"null2" and g["VersionId"] == "null"
    # a delete writes a null marker that replaces the null version
    d = c.delete_object(Bucket="susp", Key="k")
    assert d["DeleteMarker"] is True and d["VersionId"] == "null"
    listed = {x[:4] for x in versions(c, "susp")}  # boto3 lists markers apart
    assert listed == {("k", "null", True, True), ("k", real, False, False)}
    assert c.get_object(Bucket="susp", Key="k", VersionId=real)["Body"].read() == b"real"


def test_copy_from_version_and_multi_delete_with_versions(site):
    c = client(site)
    c.create_bucket(Bucket="cpv")
    c.put_bucket_versioning(Bucket="cpv", VersioningConfiguration={"Status": "Enabled"})
    v1 = c.put_object(Bucket="cpv", Key="k", Body=b"first")["VersionId"]
    v2 = c.put_object(Bucket="cpv", Key="k", Body=b"second")["VersionId"]
    # restore v1 by copying it over the key
    r = c.copy_object(Bucket="cpv", Key="k", CopySource={"Bucket": "cpv", "Key": "k",
                                                         "VersionId": v1})
    assert r["CopySourceVersionId"] == v1 and r["VersionId"] not in (v1, v2)
    assert c.get_object(Bucket="cpv", Key="k")["Body"].read() == b"first"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.copy_object(Bucket="cpv", Key="other",
                      CopySource={"Bucket": "cpv", "Key": "k", "VersionId": "0" * 24})
    assert code(e) == "NoSuchVersion"

    c.put_object(Bucket="cpv", Key="x", Body=b"x")
    r = c.delete_objects(Bucket="cpv", Delete={"Objects": [
        {"Key": "k", "VersionId": v2}, {"Key": "x"}, {"Key": "k", "VersionId": "bad"}]})
    deleted = {(d["Key"], d.get("VersionId")): d for d in r["Deleted"]}
    assert ("k", v2) in deleted and not deleted[("k", v2)].get("DeleteMarker")
    assert deleted[("x", None)]["DeleteMarker"] is True
    assert deleted[("x", None)]["DeleteMarkerVersionId"] not in ("", "null")
    assert [(e["Key"], e["Code"]) for e in r["Errors"]] == [("k", "InvalidArgument")]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.get_object(Bucket="cpv", Key="k", VersionId=v2)
    assert code(e) == "NoSuchVersion"
    # removing the marker by id through DeleteObjects says it was a marker
    mk = deleted[("x", None)]["DeleteMarkerVersionId"]
    r = c.delete_objects(Bucket="cpv", Delete={"Objects": [{"Key": "x", "VersionId": mk}]})
    assert r["Deleted"][0]["DeleteMarker"] is True
    assert c.get_object(Bucket="cpv", Key="x")["Body"].read() == b"x"


def test_upload_part_copy_from_a_version_with_conditions(site):
    """UploadPartCopy takes ?versionId= in its source and the
    x-amz-copy-source-if-* conditions, as CopyObject does."""
    c = client(site)
    c.create_bucket(Bucket="pcv")
    c.put_bucket_versioning(Bucket="pcv", VersioningConfiguration={"Status": "Enabled"})
    old = os.urandom(6 << 20)
    v1 = c.put_object(Bucket="pcv", Key="src", Body=old)["VersionId"]
    e1 = c.head_object(Bucket="pcv", Key="src", VersionId=v1)["ETag"]
    c.put_object(Bucket="pcv", Key="src", Body=b"the current version")
    up = c.create_multipart_upload(Bucket="pcv", Key="dst")["UploadId"]
    r = c.upload_part_copy(Bucket="pcv", Key="dst", UploadId=up, PartNumber=1,
                           CopySource={"Bucket": "pcv", "Key": "src", "VersionId": v1},
                           CopySourceRange="bytes=0-%d" % ((5 << 20) - 1), CopySourceIfMatch=e1)
    assert r["CopySourceVersionId"] == v1
    p1 = r["CopyPartResult"]["ETag"]
    r = c.upload_part_copy(Bucket="pcv", Key="dst", UploadId=up, PartNumber=2,
                           CopySource={"Bucket": "pcv", "Key": "src", "VersionId": v1},
                           CopySourceRange="bytes=%d-%d" % (5 << 20, len(old) - 1))
    p2 = r["CopyPartResult"]["ETag"]
    # the conditions are weighed against the named version, any failure 412
    for kw in ({"CopySourceIfMatch": '"0123"'}, {"CopySourceIfNoneMatch": e1}):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            c.upload_part_copy(Bucket="pcv", Key="dst", UploadId=up, PartNumber=3,
                               CopySource={"Bucket": "pcv", "Key": "src", "VersionId": v1}, **kw)
        assert code(e) == "PreconditionFailed" and err_status(e) == 412
    for vid, want in (("0" * 24, "NoSuchVersion"), ("bad id", "InvalidArgument")):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            c.upload_part_copy(Bucket="pcv", Key="dst", UploadId=up, PartNumber=3,
                               CopySource={"Bucket": "pcv", "Key": "src", "VersionId": vid})
        assert code(e) == want
    c.complete_multipart_upload(Bucket="pcv", Key="dst", UploadId=up, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": p1}, {"PartNumber": 2, "ETag": p2}]})
    assert c.get_object(Bucket="pcv", Key="dst")["Body"].read() == old
    # a delete marker cannot be a copy source
    mk = c.delete_object(Bucket="pcv", Key="src")["VersionId"]
    up = c.create_multipart_upload(Bucket="pcv", Key="dst2")["UploadId"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.upload_part_copy(Bucket="pcv", Key="dst2", UploadId=up, PartNumber=1,
                           CopySource={"Bucket": "pcv", "Key": "src", "VersionId": mk})
    assert code(e) == "InvalidRequest"
    c.abort_multipart_upload(Bucket="pcv", Key="dst2", UploadId=up)


def test_object_tagging_by_version(site):
    c = client(site)
    c.create_bucket(Bucket="tagv")
    c.put_bucket_versioning(Bucket="tagv", VersioningConfiguration={"Status": "Enabled"})
    v1 = c.put_object(Bucket="tagv", Key="k", Body=b"1", Tagging="gen=one")["VersionId"]
    v2 = c.put_object(Bucket="tagv", Key="k", Body=b"2")["VersionId"]
    r = c.get_object_tagging(Bucket="tagv", Key="k", VersionId=v1)
    assert r["TagSet"] == [{"Key": "gen", "Value": "one"}] and r["VersionId"] == v1
    assert c.get_object_tagging(Bucket="tagv", Key="k")["TagSet"] == []
    c.put_object_tagging(Bucket="tagv", Key="k", VersionId=v1,
                         Tagging={"TagSet": [{"Key": "gen", "Value": "old"}]})
    assert c.get_object_tagging(Bucket="tagv", Key="k", VersionId=v1)["TagSet"] == \
        [{"Key": "gen", "Value": "old"}]
    assert c.get_object_tagging(Bucket="tagv", Key="k", VersionId=v2)["TagSet"] == []
    c.delete_object_tagging(Bucket="tagv", Key="k", VersionId=v1)
    assert c.get_object_tagging(Bucket="tagv", Key="k", VersionId=v1)["TagSet"] == []
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.get_object_tagging(Bucket="tagv", Key="k", VersionId="0" * 24)
    assert code(e) == "NoSuchVersion"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.put_object_tagging(Bucket="tagv", Key="k", VersionId="0" * 24,
                             Tagging={"TagSet": [{"Key": "a", "Value": "b"}]})
    assert code(e) == "NoSuchVersion"


def test_bucket_tagging(site):
    c = client(site)
    c.create_bucket(Bucket="tagged")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.get_bucket_tagging(Bucket="tagged")
    assert code(e) == "NoSuchTagSet"
    tags = [{"Key": "team", "Value": "storage"}, {"Key": "env", "Value": ""}]
    c.put_bucket_tagging(Bucket="tagged", Tagging={"TagSet": tags})
    assert c.get_bucket_tagging(Bucket="tagged")["TagSet"] == tags
    # tagging and versioning are separate registers
    c.put_bucket_versioning(Bucket="tagged", VersioningConfiguration={"Status": "Enabled"})
    assert c.get_bucket_tagging(Bucket="tagged")["TagSet"] == tags
    c.put_bucket_tagging(Bucket="tagged", Tagging={"TagSet": [{"Key": "a", "Value": "b"}]})
    assert c.get_bucket_tagging(Bucket="tagged")["TagSet"] == [{"Key": "a", "Value": "b"}]
    assert c.get_bucket_versioning(Bucket="tagged")["Status"] == "Enabled"
    c.delete_bucket_tagging(Bucket="tagged")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.get_bucket_tagging(Bucket="tagged")
    assert code(e) == "NoSuchTagSet"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.put_bucket_tagging(Bucket="tagged", Tagging={"TagSet": [
            {"Key": "k", "Value": "1"}, {"Key": "k", "Value": "2"}]})
    assert code(e) == "InvalidTag"
    # S3 takes 50 tags on a bucket (10 on an object)
    fifty = [{"Key": f"k{i:02d}", "Value": "v" * 256} for i in range(50)]
    c.put_bucket_tagging(Bucket="tagged", Tagging={"TagSet": fifty})
    assert c.get_bucket_tagging(Bucket="tagged")["TagSet"] == fifty
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.put_bucket_tagging(Bucket="tagged", Tagging={"TagSet": fifty + [
            {"Key": "one-more", "Value": ""}]})
    assert code(e) == "InvalidTag"
    assert c.get_bucket_tagging(Bucket="tagged")["TagSet"] == fifty
    c.put_object(Bucket="tagged", Key="obj", Body=b"x")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.put_object_tagging(Bucket="tagged", Key="obj", Tagging={"TagSet": fifty[:11]})
    assert code(e) == "InvalidTag"
    c.put_object_tagging(Bucket="tagged", Key="obj", Tagging={"TagSet": fifty[:10]})
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.put_object(Bucket="tagged", Key="obj2", Body=b"x",
                     Tagging="&".join(f"k{i}=v" for i in range(11)))
    assert code(e) == "InvalidTag"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.get_bucket_tagging(Bucket="no-such-bucket")
    assert code(e) == "NoSuchBucket"


def test_bad_versioning_bodies_and_missing_bucket(site):
    c = client(site)
    c.create_bucket(Bucket="badxml")

    def put_raw(body):
        def swap(request, **kw):
            request.data = body
            if "Content-MD5" in request.headers:
                del request.headers["Content-MD5"]
        c.meta.events.register_first("before-sign.s3.PutBucketVersioning", swap)
        try:
            c.put_bucket_versioning(Bucket="badxml",
                                    VersioningConfiguration={"Status": "Enabled"})
        finally:
            c.meta.events.unregister("before-sign.s3.PutBucketVersioning", swap)

    for body in (b"<VersioningConfiguration><Status>On</Status></VersioningConfiguration>",
                 b"<VersioningConfiguration>", b"not xml at all",
                 b"<!DOCTYPE x [<!ENTITY a 'b'>]><VersioningConfiguration/>"):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            put_raw(body)
        assert code(e) == "MalformedXML", body
    assert "Status" not in c.get_bucket_versioning(Bucket="badxml")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.put_bucket_versioning(Bucket="nobucket", VersioningConfiguration={"Status": "Enabled"})
    assert code(e) == "NoSuchBucket"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.list_object_versions(Bucket="nobucket")
    assert code(e) == "NoSuchBucket"


def test_awscli_s3api_versioning(site, tmp_path):
    env = dict(os.environ, AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET,
               AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE="/dev/null",
               AWS_SHARED_CREDENTIALS_FILE="/dev/null")

    def aws(*args):
        r = subprocess.run(["/usr/bin/aws", "--endpoint-url", site.s3, "s3api", *args],
                           capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout) if r.stdout.strip() else {}

    aws("create-bucket", "--bucket", "cli-vers")
    aws("put-bucket-versioning", "--bucket", "cli-vers",
        "--versioning-configuration", "Status=Enabled")
    assert aws("get-bucket-versioning", "--bucket", "cli-vers")["Status"] == "Enabled"
    body = tmp_path / "body"
    body.write_bytes(b"cli one")
    v1 = aws("put-object", "--bucket", "cli-vers", "--key", "k", "--body", str(body))["VersionId"]
    body.write_bytes(b"cli two")
    v2 = aws("put-object", "--bucket", "cli-vers", "--key", "k", "--body", str(body))["VersionId"]
    listed = aws("list-object-versions", "--bucket", "cli-vers")
    assert [(v["VersionId"], v["IsLatest"]) for v in listed["Versions"]] == \
        [(v2, True), (v1, False)]
    out = tmp_path / "out"
    aws("get-object", "--bucket", "cli-vers", "--key", "k", "--version-id", v1, str(out))
    assert out.read_bytes() == b"cli one"
    aws("delete-object", "--bucket", "cli-vers", "--key", "k", "--version-id", v2)
    aws("get-object", "--bucket", "cli-vers", "--key", "k", str(out))
    assert out.read_bytes() == b"cli one"
