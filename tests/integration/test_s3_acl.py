"""Canned bucket ACLs (private, public-read) and anonymous requests against
real meridiand processes, driven by boto3 (signed, and unsigned with
botocore.UNSIGNED) and plain curl.

What is checked: Put/GetBucketAcl and CreateBucket with x-amz-acl; the
canned ACLs and grant forms that are not implemented answer 501; anonymous
GET/HEAD/ListObjects(V2) of a public-read bucket are served, every other
anonymous request (writes, deletes, sub-resources, ListBuckets, a private
bucket, a bucket switched back to private) is AccessDenied; the ACL
replicates to a second site; an anonymous read that a drained site forwards
to its peer is served, or refused, by the peer's copy of the ACL.
"""
import subprocess

import boto3
import botocore
import pytest
from botocore.config import Config

from conftest import TOKEN, Site, err_code, http, s3_client, s3cmd_command, wait_for

KEY, SECRET = "AKIATEST", "testsecretkey"
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


client = s3_client


def anonymous(site):
    return boto3.client("s3", endpoint_url=site.s3, region_name="us-east-1",
                        config=Config(retries={"max_attempts": 1},
                                      signature_version=botocore.UNSIGNED,
                                      s3={"addressing_style": "path"}))


def curl(method, url):
    """(status, body) of a plain unsigned curl request."""
    args = ["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", "10"]
    args += ["-I"] if method == "HEAD" else ["-X", method]
    out = subprocess.run(args + [url], capture_output=True, timeout=20).stdout
    body, _, status = out.rpartition(b"\n")
    return int(status), body


code = err_code


def public(c, bucket):
    """True when GetBucketAcl shows the AllUsers READ grant."""
    grants = c.get_bucket_acl(Bucket=bucket)["Grants"]
    return any(g["Grantee"].get("URI") == ALL_USERS and g["Permission"] == "READ"
               for g in grants)


def denied(call, **kw):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call(**kw)
    assert code(e) in ("AccessDenied", "403"), e.value.response
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    return e.value.response["ResponseMetadata"]["HTTPHeaders"]


def test_put_and_get_bucket_acl(site):
    c = client(site)
    c.create_bucket(Bucket="aclb")
    acl = c.get_bucket_acl(Bucket="aclb")
    assert acl["Owner"]["ID"] == KEY
    assert acl["Grants"] == [{"Grantee": {"ID": KEY, "DisplayName": KEY, "Type": "CanonicalUser"},
                              "Permission": "FULL_CONTROL"}]
    c.put_bucket_acl(Bucket="aclb", ACL="public-read")
    grants = c.get_bucket_acl(Bucket="aclb")["Grants"]
    assert len(grants) == 2 and grants[0]["Permission"] == "FULL_CONTROL"
    assert grants[1] == {"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"}
    c.put_bucket_acl(Bucket="aclb", ACL="private")
    assert not public(c, "aclb")

    # what is not implemented says so, and changes nothing
    for kw in ({"ACL": "public-read-write"}, {"ACL": "authenticated-read"},
               {"GrantRead": "uri=" + ALL_USERS},
               {"AccessControlPolicy": {"Owner": {"ID": KEY}, "Grants": [
                   {"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"}]}}):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            c.put_bucket_acl(Bucket="aclb", **kw)
        assert code(e) == "NotImplemented", kw
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 501
    assert not public(c, "aclb")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.create_bucket(Bucket="aclrw", ACL="public-read-write")
    assert code(e) == "NotImplemented"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.head_bucket(Bucket="aclrw")  # refused before anything was created
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.get_bucket_acl(Bucket="nosuchbucket")
    assert code(e) == "NoSuchBucket"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.put_bucket_acl(Bucket="nosuchbucket", ACL="public-read")
    assert code(e) == "NoSuchBucket"


def test_object_acl_is_its_buckets(site, tmp_path):
    """GetObjectAcl shows the bucket's ACL (objects hold none of their own);
    PutObjectAcl succeeds when it asks for that, and says NotImplemented
    otherwise; s3cmd's setacl and info work on objects."""
    c = client(site)
    c.create_bucket(Bucket="oacl")
    put = c.put_object(Bucket="oacl", Key="k", Body=b"x")
    owner = {"Grantee": {"ID": KEY, "DisplayName": KEY, "Type": "CanonicalUser"},
             "Permission": "FULL_CONTROL"}
    acl = c.get_object_acl(Bucket="oacl", Key="k")
    assert acl["Owner"]["ID"] == KEY and acl["Grants"] == [owner], acl
    c.put_object_acl(Bucket="oacl", Key="k", ACL="private")
    for kw in ({"ACL": "public-read"}, {"ACL": "public-read-write"},
               {"GrantRead": "uri=" + ALL_USERS}):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            c.put_object_acl(Bucket="oacl", Key="k", **kw)
        assert code(e) == "NotImplemented", kw
    c.put_bucket_acl(Bucket="oacl", ACL="public-read")
    grants = c.get_object_acl(Bucket="oacl", Key="k")["Grants"]
    assert grants == [owner, {"Grantee": {"Type": "Group", "URI": ALL_USERS},
                              "Permission": "READ"}], grants
    c.put_object_acl(Bucket="oacl", Key="k", ACL="public-read")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.put_object_acl(Bucket="oacl", Key="k", ACL="private")
    assert code(e) == "NotImplemented"
    assert "bucket" in e.value.response["Error"]["Message"]
    # the version must exist; anonymous ACL requests are refused
    for kw, want in (({"Key": "nokey"}, "NoSuchKey"), ({"Key": "k", "VersionId": "nope"},
                                                         "InvalidArgument")):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            c.get_object_acl(Bucket="oacl", **kw)
        assert code(e) == want, kw
    if put.get("VersionId"):
        c.get_object_acl(Bucket="oacl", Key="k", VersionId=put["VersionId"])
    denied(anonymous(site).get_object_acl, Bucket="oacl", Key="k")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.get_object_acl(Bucket="nosuchbucket", Key="k")
    assert code(e) == "NoSuchBucket"
    # a real client: s3cmd sets private on objects of a private bucket
    c.put_bucket_acl(Bucket="oacl", ACL="private")
    s3cmd = s3cmd_command(site, tmp_path)
    out = subprocess.run(s3cmd + ["setacl", "--acl-private", "s3://oacl/k"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    out = subprocess.run(s3cmd + ["info", "s3://oacl/k"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and f"ACL:       {KEY}: FULL_CONTROL" in out.stdout, out.stdout


def test_anonymous_reads_of_a_public_read_bucket(site):
    c, anon = client(site), anonymous(site)
    c.create_bucket(Bucket="pub", ACL="public-read")
    assert public(c, "pub")
    c.put_object(Bucket="pub", Key="dir/hello.txt", Body=b"hello world", ContentType="text/plain")
    c.put_object(Bucket="pub", Key="other", Body=b"x" * 1000)

    r = anon.get_object(Bucket="pub", Key="dir/hello.txt")
    assert r["Body"].read() == b"hello world" and r["ContentType"] == "text/plain"
    assert anon.get_object(Bucket="pub", Key="other", Range="bytes=10-19")["Body"].read() == \
        b"x" * 10
    assert anon.head_object(Bucket="pub", Key="other")["ContentLength"] == 1000
    anon.head_bucket(Bucket="pub")  # s3:ListBucket, which public-read grants
    assert [o["Key"] for o in anon.list_objects(Bucket="pub")["Contents"]] == \
        ["dir/hello.txt", "other"]
    assert [p["Prefix"] for p in anon.list_objects_v2(Bucket="pub", Delimiter="/")
            ["CommonPrefixes"]] == ["dir/"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        anon.get_object(Bucket="pub", Key="missing")
    assert code(e) == "NoSuchKey"

    # plain curl, no client library
    assert curl("GET", site.s3 + "/pub/dir/hello.txt") == (200, b"hello world")
    st, head = curl("HEAD", site.s3 + "/pub/other")
    assert st == 200 and b"content-length: 1000" in head.lower()
    st, body = curl("GET", site.s3 + "/pub?list-type=2&prefix=dir/")
    assert st == 200 and b"<Key>dir/hello.txt</Key>" in body and b"<Key>other</Key>" not in body

    # everything else stays refused
    denied(anon.put_object, Bucket="pub", Key="new", Body=b"no")
    denied(anon.delete_object, Bucket="pub", Key="other")
    denied(anon.delete_objects, Bucket="pub", Delete={"Objects": [{"Key": "other"}]})
    denied(anon.get_bucket_acl, Bucket="pub")
    denied(anon.put_bucket_acl, Bucket="pub", ACL="private")
    denied(anon.get_object_tagging, Bucket="pub", Key="other")
    denied(anon.get_object, Bucket="pub", Key="other", VersionId="null")
    denied(anon.list_object_versions, Bucket="pub")
    denied(anon.list_buckets)
    denied(anon.create_bucket, Bucket="anonmade")
    assert curl("PUT", site.s3 + "/pub/new")[0] == 403
    st, body = curl("DELETE", site.s3 + "/pub/other")
    assert st == 403 and b"<Code>AccessDenied</Code>" in body
    assert c.head_object(Bucket="pub", Key="other")["ContentLength"] == 1000
    assert "Contents" not in c.list_objects_v2(Bucket="pub", Prefix="new")

    # a forged or unknown signature is not anonymous: it is checked and refused
    st, _, body = http("GET", site.s3 + "/pub/other",
                       headers={"Authorization": "AWS4-HMAC-SHA256 Credential=nobody/20250101/"
                                "us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00"})
    assert st in (400, 403) and b"<Error>" in body and b"xxxx" not in body
    st, _, body = http("GET", site.s3 + "/pub/other?X-Amz-Signature=00")
    assert st in (400, 403) and b"xxxx" not in body
    # a client cannot claim to be a forwarding peer
    assert http("GET", site.s3 + "/pub/other", headers={"x-meridian-auth": "x"})[0] == 403

    # back to private: refused again
    c.put_bucket_acl(Bucket="pub", ACL="private")
    denied(anon.get_object, Bucket="pub", Key="other")
    denied(anon.head_object, Bucket="pub", Key="other")
    denied(anon.head_bucket, Bucket="pub")
    denied(anon.list_objects_v2, Bucket="pub")
    assert curl("GET", site.s3 + "/pub/dir/hello.txt")[0] == 403
    assert c.get_object(Bucket="pub", Key="other")["Body"].read() == b"x" * 1000


def test_anonymous_requests_to_a_private_bucket_are_refused(site):
    c, anon = client(site), anonymous(site)
    c.create_bucket(Bucket="priv")
    c.put_object(Bucket="priv", Key="k", Body=b"secret")
    denied(anon.get_object, Bucket="priv", Key="k")
    denied(anon.get_object, Bucket="priv", Key="absent")  # no hint whether it exists
    denied(anon.head_object, Bucket="priv", Key="k")
    denied(anon.head_bucket, Bucket="priv")
    denied(anon.list_objects, Bucket="priv")
    denied(anon.list_objects_v2, Bucket="priv")
    st, body = curl("GET", site.s3 + "/priv/k")
    assert st == 403 and b"<Code>AccessDenied</Code>" in body and b"secret" not in body
    c.create_bucket(Bucket="priv2", ACL="private")
    assert not public(c, "priv2")
    assert curl("GET", site.s3 + "/priv2")[0] == 403
    assert c.get_object(Bucket="priv", Key="k")["Body"].read() == b"secret"


def two_sites(tmp_path):
    """a and b, replicating to each other, each knowing the other's S3 port
    (so a drained b forwards to a)."""
    a = Site(str(tmp_path / "a"), name="a", site_id=1)
    b = Site(str(tmp_path / "b"), name="b", site_id=2)
    for s, o in ((a, b), (b, a)):
        with open(s.config, "a") as f:
            f.write(f"[peer.{o.name}]\nid = {o.site_id}\nreplication = 127.0.0.1:{o.repl_port}\n"
                    f"s3 = 127.0.0.1:{o.s3_port}\n")
    return a, b


def test_acl_replicates_and_forwarded_anonymous_reads_keep_it(tmp_path):
    a, b = two_sites(tmp_path)
    a.start()
    b.start()
    try:
        ca, cb = client(a), client(b)
        ca.create_bucket(Bucket="rep", ACL="public-read")
        ca.put_object(Bucket="rep", Key="obj", Body=b"replicated")

        def b_public():
            try:
                return public(cb, "rep")
            except botocore.exceptions.ClientError:
                return False
        wait_for(b_public, 30, "the public-read ACL at b")
        wait_for(lambda: curl("GET", b.s3 + "/rep/obj") == (200, b"replicated"), 30,
                 "an anonymous GET at b")
        assert anonymous(b).list_objects_v2(Bucket="rep")["KeyCount"] == 1

        # b drained: its anonymous reads are forwarded to a, still anonymous there
        wait_for(lambda: any(p["name"] == "a" and p["state"] in ("healthy", "degraded")
                             for p in b.status()["peers"]), 45, "a usable from b")
        auth = {"Authorization": "Bearer " + TOKEN}
        assert http("POST", b.admin + "/admin/v1/failover/drain", headers=auth)[0] == 200
        r = anonymous(b).get_object(Bucket="rep", Key="obj")
        assert r["Body"].read() == b"replicated"
        assert r["ResponseMetadata"]["HTTPHeaders"]["x-meridian-served-by"] == "a"
        denied(anonymous(b).put_object, Bucket="rep", Key="via-b", Body=b"no")
        ca.put_bucket_acl(Bucket="rep", ACL="private")
        # a's ACL refuses it
        assert denied(anonymous(b).get_object, Bucket="rep", Key="obj")[
            "x-meridian-served-by"] == "a"
        assert denied(anonymous(b).list_objects_v2, Bucket="rep")["x-meridian-served-by"] == "a"
        # a client's own x-meridian-anonymous is dropped, not forwarded: still signed
        signed = client(b)
        signed.meta.events.register(
            "before-sign.s3.GetObject",
            lambda request, **kw: request.headers.add_header("x-meridian-anonymous", "1"))
        r = signed.get_object(Bucket="rep", Key="obj")
        assert r["Body"].read() == b"replicated"
        assert r["ResponseMetadata"]["HTTPHeaders"]["x-meridian-served-by"] == "a"
        assert http("POST", b.admin + "/admin/v1/failover/undrain", headers=auth)[0] == 200

        # and the private ACL replicated to b: refused there too
        wait_for(lambda: not b_public(), 30, "the private ACL at b")
        denied(anonymous(b).get_object, Bucket="rep", Key="obj")
        assert curl("GET", b.s3 + "/rep/obj")[0] == 403
        assert cb.get_object(Bucket="rep", Key="obj")["Body"].read() == b"replicated"
    finally:
        b.stop()
        a.stop()
