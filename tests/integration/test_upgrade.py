"""Rolling upgrade: a site running an earlier build and one running this
build replicate to each other, and the earlier site, restarted on this
build over the same drives, meta directory and WAL, serves everything it
held and keeps replicating.

Sites are upgraded one at a time, so for a while every pair of builds in
a cluster must agree on the peer protocol (replicator/PROTOCOL.md), the
WAL records they exchange (wal/FORMAT.md) and, across the restart, on the
index and store formats (store/FORMAT.md). This test builds meridiand at
BASE (from this clone's history, once, into build-upgrade-<BASE>/) and
checks all of that with real processes, sockets and disks.

BASE is the last commit of the previous session's work (its multipart
upload ids name no site, which this build still serves). Move it forward
when a release is cut; if a change breaks compatibility on purpose, this
test is where that shows.
"""
import hashlib
import os
import subprocess

import pytest

from conftest import MERIDIAND, REPO, Site, s3_client, wait_for

BASE = "d7ee98735f2fc1a4c52c77c7a4f5d6e04ec2b584"


def base_meridiand():
    """meridiand built at BASE (cached); skips when BASE is not in this clone."""
    out = os.path.join(REPO, "build-upgrade-" + BASE[:12])
    binary = os.path.join(out, "build", "gateway", "meridiand")
    if os.access(binary, os.X_OK):
        return binary
    if subprocess.run(["git", "-C", REPO, "cat-file", "-e", BASE + "^{commit}"],
                      capture_output=True).returncode != 0:
        pytest.skip("commit %s is not in this clone (a shallow clone?)" % BASE[:12])
    src = os.path.join(out, "src")
    os.makedirs(src, exist_ok=True)
    archive = subprocess.run(["git", "-C", REPO, "archive", BASE], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", src], input=archive.stdout, check=True)
    build = os.path.join(out, "build")
    for cmd in (["cmake", "-S", src, "-B", build, "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
                 "-DBUILD_TESTING=OFF"],
                ["cmake", "--build", build, "-j%d" % (os.cpu_count() or 2), "--target",
                 "meridiand"]):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return binary


def peer_up(site, name):
    return any(p["name"] == name and p["state"] in ("healthy", "degraded")
               for p in site.status()["peers"])


def digest(client, bucket, key):
    """sha256 of an object's bytes, or None when it is not there (yet)."""
    try:
        return hashlib.sha256(client.get_object(Bucket=bucket, Key=key)["Body"].read()).hexdigest()
    except client.exceptions.ClientError:
        return None


def versions(client, bucket, key):
    r = client.list_object_versions(Bucket=bucket, Prefix=key)
    return sorted((v["VersionId"], v["ETag"]) for v in r.get("Versions", []))


def test_an_earlier_build_and_this_one_replicate_and_upgrade_in_place(tmp_path):
    old = base_meridiand()
    a = Site(str(tmp_path / "a"), name="a", site_id=1)
    b = Site(str(tmp_path / "b"), name="b", site_id=2)
    a.add_peer(b)
    b.add_peer(a)
    a.binary = old
    try:
        a.start()
        b.start()
        wait_for(lambda: peer_up(a, "b") and peer_up(b, "a"), 30, "a and b to see each other")
        ca, cb = s3_client(a), s3_client(b)

        # written at the earlier build: inline and erasure-coded objects, a
        # delete, versions
        ca.create_bucket(Bucket="upg")
        ca.create_bucket(Bucket="upv")
        ca.put_bucket_versioning(Bucket="upv", VersioningConfiguration={"Status": "Enabled"})
        data = {"small": os.urandom(1000), "big": os.urandom(3 << 20)}
        for k, body in data.items():
            ca.put_object(Bucket="upg", Key=k, Body=body, Metadata={"from": "old"})
        ca.put_object(Bucket="upg", Key="gone", Body=b"x")
        ca.delete_object(Bucket="upg", Key="gone")
        for body in (b"v1", b"v2"):
            ca.put_object(Bucket="upv", Key="k", Body=body)
        # written at this build
        wait_for(lambda: digest(cb, "upg", "small") is not None, 20, "a's writes at b")
        data["from-new"] = os.urandom(2 << 20)
        cb.put_object(Bucket="upg", Key="from-new", Body=data["from-new"])

        want = {k: hashlib.sha256(v).hexdigest() for k, v in data.items()}
        for c, where in ((ca, "a (earlier build)"), (cb, "b (this build)")):
            wait_for(lambda c=c: all(digest(c, "upg", k) == h for k, h in want.items()), 30,
                     "every object with its bytes at " + where)
            assert digest(c, "upg", "gone") is None
            wait_for(lambda c=c: len(versions(c, "upv", "k")) == 2, 20, "both versions at " + where)
        assert versions(ca, "upv", "k") == versions(cb, "upv", "k")
        assert cb.head_object(Bucket="upg", Key="big")["Metadata"] == {"from": "old"}
        # a multipart upload begun at the earlier build (whose ids name no site)
        uid = ca.create_multipart_upload(Bucket="upg", Key="mp")["UploadId"]
        assert "-" not in uid, uid
        part1 = os.urandom(5 << 20)
        e1 = ca.upload_part(Bucket="upg", Key="mp", UploadId=uid, PartNumber=1, Body=part1)["ETag"]

        # a is upgraded in place: same drives, meta directory and WAL
        a.stop()
        a.logf.close()
        a.binary = MERIDIAND
        a.start()
        ca = s3_client(a)
        for k, h in want.items():
            assert digest(ca, "upg", k) == h, k
        assert digest(ca, "upg", "gone") is None
        assert versions(ca, "upv", "k") == versions(cb, "upv", "k")
        wait_for(lambda: peer_up(a, "b") and peer_up(b, "a"), 30, "a and b to see each other again")
        # ... finished at this build
        e2 = ca.upload_part(Bucket="upg", Key="mp", UploadId=uid, PartNumber=2, Body=b"end")["ETag"]
        ca.complete_multipart_upload(Bucket="upg", Key="mp", UploadId=uid, MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
        wait_for(lambda: digest(cb, "upg", "mp") == hashlib.sha256(part1 + b"end").hexdigest(), 20,
                 "the upload's object at b")
        ca.put_object(Bucket="upg", Key="after-a", Body=b"written after the upgrade")
        cb.put_object(Bucket="upg", Key="after-b", Body=b"and at b")
        wait_for(lambda: digest(cb, "upg", "after-a") is not None, 20, "a's new write at b")
        wait_for(lambda: digest(ca, "upg", "after-b") is not None, 20, "b's new write at a")
    finally:
        a.stop()
        b.stop()
