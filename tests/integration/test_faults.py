"""Faults through a real daemon. A full disk, no hooks: the WAL and index
live on a tiny tmpfs that fills up under PUTs. A failing fdatasync, through
the WAL's fault hook (MERIDIAN_TEST_WAL_FAULT): no file system here can be
made to fail fdatasync on demand. Either way every PUT answered 200 must be
durable and readable, every failure must be a 5xx S3 error (never a false
200), the daemon must stay up and say why it refuses writes, and after the
fault is gone and the daemon restarts, every acknowledged object is still
there with the right bytes."""
import hashlib
import os
import subprocess

import botocore.config
import botocore.exceptions
import pytest

from conftest import Site, http, s3_client

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


client = s3_client


def put_until_refused(c, bucket, n=200, stop_after=5):
    """PUTs distinct objects until stop_after have failed; returns
    ({key: md5 of acknowledged}, [(status, code) of failures])."""
    acked, failures = {}, []
    for i in range(n):
        body = os.urandom(100_000)  # small objects travel inline in the WAL record
        key = f"k{i}"
        try:
            c.put_object(Bucket=bucket, Key=key, Body=body)
            acked[key] = hashlib.md5(body).hexdigest()
        except botocore.exceptions.ClientError as e:
            failures.append((e.response["ResponseMetadata"]["HTTPStatusCode"],
                             e.response["Error"]["Code"]))
        except botocore.exceptions.BotoCoreError as e:
            failures.append((0, type(e).__name__))
        if len(failures) >= stop_after:
            break
    return acked, failures


def test_failed_fdatasync_never_acknowledges_and_says_why(tmp_path, monkeypatch):
    s = Site(str(tmp_path / "a"))
    monkeypatch.setenv("MERIDIAN_TEST_WAL_FAULT", "sync:25")
    s.start()
    try:
        c = client(s)
        c.create_bucket(Bucket="sync")
        acked, failures = put_until_refused(c, "sync")
        assert failures and len(acked) > 5, (len(acked), failures)
        assert all(code >= 500 for code, _ in failures), failures
        assert s.proc.poll() is None, "daemon died on a failed fdatasync"
        st, _, why = http("GET", s.admin + "/health/ready")
        assert st == 503 and b"writes refused after a WAL or index failure" in why
        log = s.read_log()
        assert "event=test.fault_armed wal_op=sync" in log
        line = [ln for ln in log.splitlines() if "event=engine.writes_refused" in ln]
        assert len(line) == 1 and 'what=wal op="fdatasync" error="Input/output error"' in line[0]
        for key, md5 in acked.items():  # reads still work
            assert hashlib.md5(c.get_object(Bucket="sync", Key=key)["Body"].read()).hexdigest() == md5
        s.stop()
        monkeypatch.delenv("MERIDIAN_TEST_WAL_FAULT")
        s.start()
        c = client(s)
        for key, md5 in acked.items():  # nothing acknowledged was lost
            assert hashlib.md5(c.get_object(Bucket="sync", Key=key)["Body"].read()).hexdigest() == md5
        c.put_object(Bucket="sync", Key="after", Body=b"ok")
        assert http("GET", s.admin + "/health/ready")[0] == 200
    finally:
        s.stop()


@needs_root
def test_full_meta_disk_never_acknowledges_a_lost_write(tmp_path):
    s = Site(str(tmp_path / "a"))
    os.makedirs(s.meta)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", s.meta], check=True)
    try:
        s.start()
        c = client(s)
        c.create_bucket(Bucket="full")
        acked, failures = put_until_refused(c, "full")
        print(f"acked={len(acked)} failures={failures[:5]}")
        assert failures, "the 6 MiB disk never filled up"
        assert len(acked) > 5
        # a full disk is a server-side failure: 5xx with an S3 error code
        assert all(code >= 500 for code, _ in failures), failures
        assert s.proc.poll() is None, "daemon died on a full disk"
        assert http("GET", s.admin + "/health/live")[0] == 200
        st, _, why = http("GET", s.admin + "/health/ready")
        assert st == 503 and b"writes refused after a WAL or index failure" in why
        assert "event=s3.put_failed" in s.read_log()
        refused = [ln for ln in s.read_log().splitlines() if "event=engine.writes_refused" in ln]
        assert len(refused) == 1 and 'cause="disk full"' in refused[0], refused
        for key, md5 in acked.items():  # reads still work on the full site
            assert hashlib.md5(c.get_object(Bucket="full", Key=key)["Body"].read()).hexdigest() == md5
        s.stop()
        # give the disk room and restart: nothing acknowledged is missing
        subprocess.run(["mount", "-o", "remount,size=64m", s.meta], check=True)
        s.start()
        c = client(s)
        for key, md5 in acked.items():
            assert hashlib.md5(c.get_object(Bucket="full", Key=key)["Body"].read()).hexdigest() == md5
        c.put_object(Bucket="full", Key="after", Body=b"ok")  # writable again
        assert http("GET", s.admin + "/health/ready")[0] == 200
    finally:
        s.stop()
        subprocess.run(["umount", "-l", s.meta], capture_output=True)
