"""Faults through a real daemon. A full disk, no hooks: the WAL and index
live on a tiny tmpfs that fills up under PUTs. A failing fdatasync, through
the WAL's fault hook (MERIDIAN_TEST_WAL_FAULT): no file system here can be
made to fail fdatasync on demand. Either way every PUT answered 200 must be
durable and readable, every failure must be a 5xx S3 error (never a false
200), the daemon must stay up and say why it refuses writes, and after the
fault is gone and the daemon restarts, every acknowledged object is still
there with the right bytes. A daemon started on a full meta_dir exits with
an error saying so (never a SIGBUS out of LMDB's lock file) and starts once
there is room."""
import errno
import hashlib
import json
import os
import subprocess

import botocore.config
import botocore.exceptions
import pytest

from conftest import TOKEN, Site, http, s3_client, wait_for

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


def fill_up(path):
    """Writes path/filler until its file system has no room; returns the file's name."""
    name = os.path.join(path, "filler")
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        while os.write(fd, b"\1" * 4096) > 0:
            pass
    except OSError as e:
        assert e.errno == errno.ENOSPC, e
    finally:
        os.close(fd)
    return name


@needs_root
def test_start_on_full_meta_disk_refuses_cleanly(tmp_path):
    """LMDB creates its lock file sparse and writes it through a shared map:
    on a full meta_dir that used to kill meridiand with SIGBUS at start. Now
    it exits with status 2 and says the disk is full; given room, the same
    site starts and serves. Full again once the index exists, it starts,
    serves reads and refuses writes with a 5xx."""
    s = Site(str(tmp_path / "a"))
    os.makedirs(s.meta)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", s.meta], check=True)
    try:
        filler = fill_up(s.meta)
        with pytest.raises(RuntimeError, match="exited"):
            s.start()
        assert s.proc.returncode == 2, f"exit status {s.proc.returncode} (-7 is SIGBUS)"
        s.stop()
        log = s.read_log()
        line = [ln for ln in log.splitlines() if "event=store.index_open" in ln]
        assert len(line) == 1, log
        assert 'err="No space left on device" cause="disk full"' in line[0], line
        assert f"path={s.meta}/lock.mdb" in line[0], line
        assert "cannot open the store and WAL: No space left on device" in log
        os.unlink(filler)
        s.start()
        c = client(s)
        c.create_bucket(Bucket="full")
        c.put_object(Bucket="full", Key="k", Body=b"written with room")
        assert c.get_object(Bucket="full", Key="k")["Body"].read() == b"written with room"
        # data.mdb is mapped read-only (LMDB writes it with pwrite: ENOSPC is
        # an error, not a fault); the lock file, mapped writable, has blocks
        maps = open(f"/proc/{s.proc.pid}/maps").read().splitlines()
        assert {m.split()[1] for m in maps if m.endswith("/data.mdb")} == {"r--s"}, maps
        st = os.stat(os.path.join(s.meta, "lock.mdb"))
        assert st.st_blocks * 512 >= st.st_size
        s.stop()
        fill_up(s.meta)
        s.start()
        c = client(s)
        assert c.get_object(Bucket="full", Key="k")["Body"].read() == b"written with room"
        acked, failures = put_until_refused(c, "full", n=20, stop_after=2)
        assert failures and all(code >= 500 for code, _ in failures), (acked, failures)
        assert s.proc.poll() is None, "daemon died on a full disk"
    finally:
        s.stop()
        subprocess.run(["umount", "-l", s.meta], capture_output=True)


def peer_of(site, name):
    return [p for p in site.status()["replication"]["peers"] if p["name"] == name][0]


def sent(a):
    """What a's status says of its records streaming to b."""
    return peer_of(a, "b")["send"]


def put_until_b_refuses(ca, a, n, size):
    """PUTs n objects of size random bytes into bucket "full" at a (a takes
    them all), then waits until a's status shows b refusing its records.
    Returns {key: md5}."""
    md5 = {}
    for i in range(n):
        body = os.urandom(size)
        ca.put_object(Bucket="full", Key=f"k{i:03d}", Body=body)
        md5[f"k{i:03d}"] = hashlib.md5(body).hexdigest()
    wait_for(lambda: sent(a)["errors"] > 0 and sent(a)["lag_records"] > 0,
             timeout=30, what="a to see b refuse records")
    print("a's send status for b:", sent(a))
    return md5


@needs_root
def test_replication_into_full_drives_resumes_once_they_have_room(tmp_path):
    """b's six data drives are 4 MiB tmpfs each, so replicating 1 MiB objects
    from a fills them. a goes on acknowledging its clients; b stays up,
    refuses what it cannot store, and both say so (a's send error, b's
    receive errors, log and drive list); b applies nothing half-written and
    still serves reads of what it holds (a full drive is not a failed one). Once the drives
    have room again, b's drive probe brings them back and b catches up:
    every object a acknowledged, and the deletes made meanwhile, reach b
    with the same bytes, and a's lag for b goes back to 0."""
    a = Site(str(tmp_path / "a"), name="a", site_id=1)
    b = Site(str(tmp_path / "b"), name="b", site_id=2)
    a.add_peer(b)
    b.add_peer(a)
    mounted = []
    try:
        for d in b.drives:
            os.makedirs(d)
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", d], check=True)
            mounted.append(d)
        a.start()
        b.start()
        ca, cb = client(a), client(b)
        ca.create_bucket(Bucket="full")
        wait_for(lambda: any(x["Name"] == "full" for x in cb.list_buckets()["Buckets"]),
                 what="the bucket at b")
        md5 = put_until_b_refuses(ca, a, 40, 1 << 20)  # 60 MiB of shards for b's 24 MiB
        assert "No space left on device" in sent(a)["error"], sent(a)
        assert peer_of(b, "a")["receive"]["errors"] > 0
        assert "event=repl.recv.reject" in b.read_log()
        assert "event=store.drive_full" in b.read_log()
        assert b.proc.poll() is None, "b died on full drives"
        assert http("GET", b.admin + "/health/live")[0] == 200
        st, _, body = http("GET", b.admin + "/admin/v1/drives",
                           headers={"Authorization": "Bearer " + TOKEN})
        assert st == 200 and "full" in {d["state"] for d in json.loads(body)["drives"]}, body
        # the status and the metrics say the same as the drive list
        full_now = [i for i, d in enumerate(json.loads(body)["drives"]) if d["state"] == "full"]
        status = json.loads(http("GET", b.admin + "/admin/v1/status",
                                 headers={"Authorization": "Bearer " + TOKEN})[2])
        for i in full_now:
            assert status["drives"][i]["state"] == "full", status["drives"]
            assert "no space" in status["drives"][i]["error"], status["drives"]
        metrics = http("GET", b.admin + "/metrics")[2].decode()
        for i in full_now:
            assert f'meridian_drive_full{{drive="{i}"}} 1' in metrics, metrics
            assert f'meridian_drive_online{{drive="{i}"}} 1' in metrics, metrics
        # b holds only whole objects: each is complete and correct, or absent
        held = [o["Key"] for o in cb.list_objects_v2(Bucket="full").get("Contents", [])]
        assert len(held) < len(md5), "the drives never filled up"
        for key in held:
            got = cb.get_object(Bucket="full", Key=key)["Body"].read()
            assert hashlib.md5(got).hexdigest() == md5[key], key
        # deletes at a while b is full: queued behind the refused puts
        for key in ("k000", "k039"):
            ca.delete_object(Bucket="full", Key=key)
            del md5[key]
        for d in mounted:
            subprocess.run(["mount", "-o", "remount,size=128m", d], check=True)
        wait_for(lambda: sent(a)["lag_records"] == 0, timeout=90, step=0.5,
                 what="b to catch up once its drives have room")
        held = {o["Key"] for o in cb.list_objects_v2(Bucket="full").get("Contents", [])}
        assert held == set(md5)
        for key, want in md5.items():
            got = cb.get_object(Bucket="full", Key=key)["Body"].read()
            assert hashlib.md5(got).hexdigest() == want, key
        st, _, body = http("GET", b.admin + "/admin/v1/drives",
                           headers={"Authorization": "Bearer " + TOKEN})
        assert {d["state"] for d in json.loads(body)["drives"]} == {"online"}, body
        status = json.loads(http("GET", b.admin + "/admin/v1/status",
                                 headers={"Authorization": "Bearer " + TOKEN})[2])
        assert {d["state"] for d in status["drives"]} == {"online"}, status["drives"]
        assert sent(a)["error"] == ""
    finally:
        a.stop()
        b.stop()
        for d in mounted:
            subprocess.run(["umount", "-l", d], capture_output=True)


@needs_root
def test_replication_into_a_full_log_disk_catches_up_after_restart(tmp_path):
    """b's WAL and index live on a 6 MiB tmpfs that a's inline objects fill.
    b refuses writes from then on (its log may hold a torn record), answers
    a's batches 503 and stays up; a keeps acknowledging its clients. Once the
    disk has room and b restarts, b catches up from a's WAL: every object a
    acknowledged reaches b with the same bytes, and a's lag for b is 0."""
    a = Site(str(tmp_path / "a"), name="a", site_id=1)
    b = Site(str(tmp_path / "b"), name="b", site_id=2)
    a.add_peer(b)
    b.add_peer(a)
    os.makedirs(b.meta)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", b.meta], check=True)
    try:
        a.start()
        b.start()
        ca = client(a)
        ca.create_bucket(Bucket="full")
        # 10 MiB of inline objects: more than b's log disk
        md5 = put_until_b_refuses(ca, a, 100, 100_000)
        # the peer is told what failed, not just "durability lost"
        assert "writes refused until restart: meta_dir full" in sent(a)["error"], sent(a)
        assert b.proc.poll() is None, "b died on a full log disk"
        st, _, why = http("GET", b.admin + "/health/ready")
        assert st == 503 and b"writes refused after a WAL or index failure" in why
        refused = [ln for ln in b.read_log().splitlines() if "event=engine.writes_refused" in ln]
        assert len(refused) == 1 and 'cause="disk full"' in refused[0], refused
        b.stop()
        subprocess.run(["mount", "-o", "remount,size=64m", b.meta], check=True)
        b.start()
        wait_for(lambda: sent(a)["lag_records"] == 0, timeout=60, step=0.5,
                 what="b to catch up after its restart")
        cb = client(b)
        held = {o["Key"] for o in cb.list_objects_v2(Bucket="full").get("Contents", [])}
        assert held == set(md5)
        for key, want in md5.items():
            got = cb.get_object(Bucket="full", Key=key)["Body"].read()
            assert hashlib.md5(got).hexdigest() == want, key
    finally:
        a.stop()
        b.stop()
        subprocess.run(["umount", "-l", b.meta], capture_output=True)
