"""Active-active replication between real meridiand processes on loopback.

Three sites (a, b, c), full mesh, each with its own drives and WAL. The
tests write through boto3 at every site and then poll until every site
holds the same thing, comparing bytes, ETag, size, content type, user
metadata and the internal version id (x-meridian-version-id). Every wait is
bounded; a site that never converges fails the test with the difference.
"""
import concurrent.futures
import contextlib
import hashlib
import os
import re
import signal
import time

import botocore
import pytest

from conftest import Site, s3_client, vm_hwm_kib, wait_for


def client(site):
    return s3_client(site, connect_timeout=5, read_timeout=60)


def mesh(tmp_path, names=("a", "b", "c")):
    sites = [Site(str(tmp_path / n), name=n, site_id=i + 1) for i, n in enumerate(names)]
    for s in sites:
        for o in sites:
            if o is not s:
                s.add_peer(o)
    return sites


@pytest.fixture
def three(tmp_path):
    sites = mesh(tmp_path)
    for s in sites:
        s.start()
    yield sites
    for s in sites:
        s.stop()


def snapshot(site, with_bytes=True):
    """{bucket: {key: (etag, size, content_type, metadata, version_id, sha256)}}."""
    c = client(site)
    out = {}
    for b in c.list_buckets().get("Buckets", []):
        name = b["Name"]
        objs = {}
        for page in c.get_paginator("list_objects_v2").paginate(Bucket=name):
            for o in page.get("Contents", []):
                r = c.get_object(Bucket=name, Key=o["Key"])
                body = r["Body"].read() if with_bytes else b""
                objs[o["Key"]] = (r["ETag"], r["ContentLength"], r["ContentType"],
                                  tuple(sorted(r["Metadata"].items())),
                                  r["ResponseMetadata"]["HTTPHeaders"].get("x-meridian-version-id"),
                                  hashlib.sha256(body).hexdigest())
        out[name] = objs
    return out


def converge(sites, timeout=30):
    """Polls until every site's snapshot is equal; returns it."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            snaps = [snapshot(s) for s in sites]
        except Exception as e:  # a key listed then deleted under us: try again
            last = repr(e)
            time.sleep(0.2)
            continue
        if all(x == snaps[0] for x in snaps[1:]):
            return snaps[0]
        last = snaps
        time.sleep(0.2)
    raise AssertionError(f"sites did not converge in {timeout}s: {last}")


def wait_caught_up(sites, timeout=30):
    """Every site's every peer has acked everything it holds (lag 0)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        lag = {s.name: [p["send"]["lag_records"] for p in s.status()["replication"]["peers"]]
               for s in sites}
        if all(v == 0 for ls in lag.values() for v in ls):
            return
        time.sleep(0.1)
    raise AssertionError(f"replication lag did not reach 0: {lag}")


def test_every_write_kind_converges(three):
    a, b, c = three
    ca, cb, cc = client(a), client(b), client(c)
    big = os.urandom(3 * 1024 * 1024 + 17)  # striped across the drives, not inline
    for i, (site, cl) in enumerate(zip(three, (ca, cb, cc))):
        bucket = f"from-{site.name}"
        cl.create_bucket(Bucket=bucket)
        cl.put_object(Bucket=bucket, Key="small", Body=b"hello from " + site.name.encode(),
                      ContentType="text/plain", Metadata={"origin": site.name, "n": str(i)})
        cl.put_object(Bucket=bucket, Key="dir/big.bin", Body=big)
        cl.put_object(Bucket=bucket, Key="overwritten", Body=b"first")
        cl.put_object(Bucket=bucket, Key="overwritten", Body=b"second version")
        cl.put_object(Bucket=bucket, Key="deleted", Body=b"gone soon")
        cl.delete_object(Bucket=bucket, Key="deleted")
        cl.create_bucket(Bucket=f"tmp-{site.name}")
        cl.delete_bucket(Bucket=f"tmp-{site.name}")
    snap = converge(three)
    assert set(snap) == {"from-a", "from-b", "from-c"}  # tmp buckets deleted everywhere
    for s in three:
        objs = snap[f"from-{s.name}"]
        assert set(objs) == {"small", "dir/big.bin", "overwritten"}
        assert objs["small"][2] == "text/plain"
        assert dict(objs["small"][3])["origin"] == s.name
        assert objs["dir/big.bin"][1] == len(big)
        assert objs["dir/big.bin"][5] == hashlib.sha256(big).hexdigest()
        assert objs["overwritten"][5] == hashlib.sha256(b"second version").hexdigest()
        # the version id names the origin site: the same copy everywhere
        assert int(objs["small"][4][16:], 16) == s.site_id
    wait_caught_up(three)
    for s in three:
        for p in s.status()["replication"]["peers"]:
            assert p["send"]["errors"] == 0 and p["receive"]["errors"] == 0, p


def test_outage_then_catch_up_applies_deletes(three):
    a, b, c = three
    ca, cb = client(a), client(b)
    ca.create_bucket(Bucket="drtest")
    for i in range(20):
        ca.put_object(Bucket="drtest", Key=f"k{i:02d}", Body=f"v{i}".encode())
    converge(three)

    c.stop(signal.SIGKILL)  # a crash, not a clean stop
    for i in range(0, 10):
        (ca if i % 2 else cb).delete_object(Bucket="drtest", Key=f"k{i:02d}")
    for i in range(20, 30):
        cb.put_object(Bucket="drtest", Key=f"k{i:02d}", Body=f"while c was down {i}".encode())
    ca.put_object(Bucket="drtest", Key="k15", Body=b"overwritten while c was down")
    time.sleep(1.0)
    # c has not applied it: the origin says PENDING, b (a replica) REPLICA
    assert ca.head_object(Bucket="drtest", Key="k15")["ReplicationStatus"] == "PENDING"
    assert cb.head_object(Bucket="drtest", Key="k15")["ReplicationStatus"] == "REPLICA"
    c.start()
    snap = converge(three)
    keys = set(snap["drtest"])
    assert keys == {f"k{i:02d}" for i in range(10, 30)}, sorted(keys)
    assert snap["drtest"]["k15"][5] == hashlib.sha256(b"overwritten while c was down").hexdigest()
    wait_caught_up(three)
    deadline = time.time() + 5
    while ca.head_object(Bucket="drtest", Key="k15")["ReplicationStatus"] != "COMPLETED":
        assert time.time() < deadline, "origin never reported COMPLETED"
        time.sleep(0.05)
    assert client(c).head_object(Bucket="drtest", Key="k15")["ReplicationStatus"] == "REPLICA"


def test_concurrent_writes_settle_on_one_version(three):
    clients = [client(s) for s in three]
    clients[0].create_bucket(Bucket="race")
    converge(three)
    keys = [f"key{i}" for i in range(30)]

    def writer(idx):
        cl = clients[idx]
        for k in keys:
            cl.put_object(Bucket="race", Key=k, Body=f"{k} from site {idx}".encode() * 10)

    with concurrent.futures.ThreadPoolExecutor(3) as ex:
        list(ex.map(writer, range(3)))
    snap = converge(three)
    assert set(snap["race"]) == set(keys)
    winners = {}
    for k in keys:
        vid = snap["race"][k][4]
        winners[int(vid[16:], 16)] = winners.get(int(vid[16:], 16), 0) + 1
    # every key has one current version everywhere (converge checked that);
    # report how the races went
    print("winning sites per key:", winners)
    wait_caught_up(three)



def version_listing(site, bucket):
    """[(key, version id, is latest, is delete marker)] of one site, in
    the server's order within each kind (boto3 splits versions and markers)."""
    r = client(site).list_object_versions(Bucket=bucket)
    return sorted([(v["Key"], v["VersionId"], v["IsLatest"], False) for v in r.get("Versions", [])]
                  + [(m["Key"], m["VersionId"], m["IsLatest"], True)
                     for m in r.get("DeleteMarkers", [])])


def converge_versions(sites, bucket, timeout=30):
    """Polls until every site lists the same versions; returns the listing."""
    last = None

    def same():
        nonlocal last
        last = [version_listing(s, bucket) for s in sites]
        return all(x == last[0] for x in last[1:]) and last[0]
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = same()
        if got is not False:
            return got
        time.sleep(0.2)
    raise AssertionError(f"versions did not converge in {timeout}s: {last}")


def wait_versioning(clients, bucket, status="Enabled", timeout=30):
    """Polls until every client's site reports the bucket's versioning."""
    deadline = time.time() + timeout
    for cl in clients:
        while True:
            try:
                if cl.get_bucket_versioning(Bucket=bucket).get("Status") == status:
                    break
            except botocore.exceptions.ClientError:
                pass  # the bucket itself has not arrived yet
            assert time.time() < deadline, "versioning never replicated"
            time.sleep(0.1)


def test_versioning_replicates_with_identical_version_ids(three):
    a, b, c = three
    ca, cb, cc = client(a), client(b), client(c)
    ca.create_bucket(Bucket="vrep")
    ca.put_bucket_versioning(Bucket="vrep", VersioningConfiguration={"Status": "Enabled"})
    wait_versioning((cb, cc), "vrep")
    # one version written at each site, in turn
    written = []
    for cl in (ca, cb, cc):
        written.append(cl.put_object(Bucket="vrep", Key="k", Body=b"from %d" % len(written))
                       ["VersionId"])
        converge_versions(three, "vrep")
    listing = converge_versions(three, "vrep")
    assert sorted(v for _, v, _, _ in listing) == sorted(written)
    assert [v for _, v, latest, _ in listing if latest] == [written[2]]
    # the origin site is in the id: every site wrote one
    assert sorted(int(v[16:], 16) for v in written) == [1, 2, 3]
    for s in three:
        r = client(s).get_object(Bucket="vrep", Key="k", VersionId=written[0])
        assert r["Body"].read() == b"from 0" and r["VersionId"] == written[0]

    # removed by id at b: gone everywhere, the others stay
    cb.delete_object(Bucket="vrep", Key="k", VersionId=written[0])
    listing = converge_versions(three, "vrep")
    assert sorted(v for _, v, _, _ in listing) == sorted(written[1:])
    # a delete marker at c hides the key everywhere, versions kept
    marker = cc.delete_object(Bucket="vrep", Key="k")["VersionId"]
    listing = converge_versions(three, "vrep")
    assert ("k", marker, True, True) in listing and len(listing) == 3
    for s in three:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            client(s).get_object(Bucket="vrep", Key="k")
        assert e.value.response["Error"]["Code"] == "NoSuchKey"
    # bucket tagging set at c arrives everywhere
    cc.put_bucket_tagging(Bucket="vrep", Tagging={"TagSet": [{"Key": "t", "Value": "v"}]})
    for cl in (ca, cb):
        deadline = time.time() + 30
        while True:
            try:
                if cl.get_bucket_tagging(Bucket="vrep")["TagSet"] == [{"Key": "t", "Value": "v"}]:
                    break
            except botocore.exceptions.ClientError:
                pass
            assert time.time() < deadline, "bucket tagging never replicated"
            time.sleep(0.1)
    wait_caught_up(three)


def test_concurrent_writes_in_versioned_bucket_keep_every_version(three):
    clients = [client(s) for s in three]
    clients[0].create_bucket(Bucket="vrace")
    clients[0].put_bucket_versioning(Bucket="vrace",
                                     VersioningConfiguration={"Status": "Enabled"})
    converge(three)
    wait_versioning(clients, "vrace")
    keys = [f"key{i}" for i in range(10)]
    written = [[] for _ in range(3)]

    def writer(idx):
        cl = clients[idx]
        for k in keys:
            for n in range(3):
                written[idx].append(cl.put_object(Bucket="vrace", Key=k,
                                                  Body=f"{k} {n} from {idx}".encode())
                                    ["VersionId"])

    with concurrent.futures.ThreadPoolExecutor(3) as ex:
        list(ex.map(writer, range(3)))
    listing = converge_versions(three, "vrace")
    # every acknowledged write is kept, everywhere, under the same id
    assert sorted(v for _, v, _, _ in listing) == sorted(sum(written, []))
    # one latest per key, the same at every site (converge_versions)
    latest = [k for k, _, is_latest, _ in listing if is_latest]
    assert sorted(latest) == keys
    snap = converge(three)
    for k in keys:
        assert snap["vrace"][k][4] == [v for kk, v, lt, _ in listing if kk == k and lt][0]
    wait_caught_up(three)

class PatternBody:
    """A seekable read-only stream of size bytes: block repeated, made on
    the fly, so a multi-GiB body needs neither a file nor the memory."""

    def __init__(self, block, size):
        self.block, self.size, self.pos = block, size, 0

    def read(self, n=-1):
        n = self.size - self.pos if n is None or n < 0 else min(n, self.size - self.pos)
        out = bytearray()
        while len(out) < n:
            off = (self.pos + len(out)) % len(self.block)
            out += self.block[off:off + n - len(out)]
        self.pos += n
        return bytes(out)

    def seek(self, off, whence=0):
        self.pos = {0: off, 1: self.pos + off, 2: self.size + off}[whence]
        return self.pos

    def tell(self):
        return self.pos

    def __len__(self):
        return self.size


def test_large_object_replicates_with_bounded_memory(tmp_path):
    """A 2 GiB object (the issue's size; MERIDIAN_REPL_BIG_MIB picks
    another) replicates whole, and neither daemon's peak RSS comes near
    it: the sender reads 1 MiB chunks, the receiver holds at most one
    stream window (16 MiB) plus a stripe."""
    a, b = mesh(tmp_path, ("a", "b"))
    a.start()
    b.start()
    try:
        ca, cb = client(a), client(b)
        ca.create_bucket(Bucket="big")
        size = int(os.environ.get("MERIDIAN_REPL_BIG_MIB", "2048")) << 20
        block = os.urandom((1 << 20) + 7)  # not a divisor of any chunk size
        want = hashlib.sha256()
        body = PatternBody(block, size)
        while True:
            chunk = body.read(8 << 20)
            if not chunk:
                break
            want.update(chunk)
        body.seek(0)
        t0 = time.time()
        ca.put_object(Bucket="big", Key="obj", Body=body)
        t_put = time.time() - t0
        wait_caught_up([a, b], timeout=300)
        t_repl = time.time() - t0
        r = cb.get_object(Bucket="big", Key="obj")
        h = hashlib.sha256()
        n = 0
        for chunk in r["Body"].iter_chunks(1 << 20):
            h.update(chunk)
            n += len(chunk)
        assert n == size and h.hexdigest() == want.hexdigest()
        hwm_a, hwm_b = vm_hwm_kib(a.proc.pid), vm_hwm_kib(b.proc.pid)
        print(f"{size >> 20} MiB: put {t_put:.2f}s, replicated {t_repl:.2f}s, "
              f"VmHWM a={hwm_a >> 10} MiB b={hwm_b >> 10} MiB")
        assert hwm_a < 96 * 1024 and hwm_b < 96 * 1024, (hwm_a, hwm_b)
    finally:
        a.stop()
        b.stop()


def peer_of(site, name):
    """site's /admin/v1/status entry for its peer name."""
    return [p for p in site.status()["replication"]["peers"] if p["name"] == name][0]


def fill_past_retention(s3, bucket, key="k", first=0, count=240):
    """24 MiB of inline objects (240 x 100 KiB, keys key000..key239): more
    than small_wal_pair's WAL keeps, so a peer down meanwhile falls past
    retention. first and count pick a part of them (keys keyFIRST...)."""
    blob = os.urandom(100 * 1024)
    for i in range(first, first + count):
        s3.put_object(Bucket=bucket, Key=f"{key}{i:03d}", Body=blob + b"%d" % i)


def body_at(s3, bucket, key):
    """bucket/key's bytes at s3's site, None when it has no such object."""
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except botocore.exceptions.ClientError:
        return None


def early_pair(a, b, bucket):
    """Clients of a and b, once bucket (made at a) holds "early" at both."""
    ca, cb = client(a), client(b)
    ca.create_bucket(Bucket=bucket)
    ca.put_object(Bucket=bucket, Key="early", Body=b"before the outage")
    wait_caught_up([a, b])
    return ca, cb


def throttled_resync(a, b, rate):
    """b is down and past a's retention: once a marks it, limits a's sending
    to b to rate, starts b and waits until a's resync pass to b sends
    versions (its snapshot is fixed, and the stream resumed after it)."""
    wait_for(lambda: peer_of(a, "b")["send"]["needs_resync"], 30,
             "a to mark b as needing a resync")
    assert a.ctl("bandwidth", "--peer", "b", rate).returncode == 0
    b.start()
    wait_for(lambda: peer_of(a, "b")["anti_entropy"]["versions_sent"] > 0, 30,
             "the pass to send versions")


def small_wal(*sites):
    """Caps the sites' WALs at 16 MiB (1 MiB segments), before they start."""
    for s in sites:
        with open(s.config, "a") as f:
            f.write("[wal]\nsegment_size = 1MiB\nretention_max = 16MiB\n")


def small_wal_pair(tmp_path, a_conf="", both_conf=""):
    """Sites a and b, started, with a WAL capped at 16 MiB (1 MiB segments):
    24 MiB of writes while b is down put b past a's retention. a_conf is
    appended to a's configuration, both_conf to both."""
    a, b = mesh(tmp_path, ("a", "b"))
    small_wal(a, b)
    for s, conf in ((a, a_conf + both_conf), (b, both_conf)):
        with open(s.config, "a") as f:
            f.write(conf)
    a.start()
    b.start()
    return a, b


@contextlib.contextmanager
def pair_with_wan_link(tmp_path, sender, cut=False, **link):
    """Sites a and b, WALs capped by small_wal, started, with the link that
    carries sender's records to the other site going through a wanem link
    named "<sender>-<other>" (link: its settings; cut: it starts
    partitioned); yields (a, b, wan) and stops both at the end."""
    from wanem import Wanem
    a = Site(str(tmp_path / "a"), name="a", site_id=1)
    b = Site(str(tmp_path / "b"), name="b", site_id=2)
    src, dst = (a, b) if sender == "a" else (b, a)
    name = f"{src.name}-{dst.name}"
    with Wanem(log=str(tmp_path / "wanem.log")) as wan:
        host, port = wan.add_link(name, target=("127.0.0.1", dst.repl_port), **link)
        if cut:
            wan.partition(name)
        dst.add_peer(src)
        with open(src.config, "a") as f:
            f.write(f"[peer.{dst.name}]\nid = {dst.site_id}\nreplication = {host}:{port}\n")
        small_wal(a, b)
        a.start()
        b.start()
        try:
            yield a, b, wan
        finally:
            a.stop()
            b.stop()


def b_cut_from_a(tmp_path):
    """pair_with_wan_link with b's records to a going through a link that
    starts cut."""
    return pair_with_wan_link(tmp_path, "b", cut=True)


def heal_and_check_no_resync(a, b, wan, ca):
    """Heals b's link to a, then checks b tells a of the range its cap moved
    over with one empty range, never marks a for a resync nor sends it a
    pass, and that b's own writes still reach a."""
    wan.heal("b-a")
    wait_for(lambda: "event=repl.send.skip peer=a" in b.read_log(), 30,
             "b to tell a of the range it skipped")
    wait_for(lambda: peer_of(b, "a")["send"]["streaming"] and
             peer_of(a, "b")["receive"]["applied_lsn"] >= 240, 30,
             "a to hold b's cursor past the skipped range")
    pb = peer_of(b, "a")
    assert not pb["send"]["needs_resync"] and pb["anti_entropy"]["runs"] == 0, pb
    assert peer_of(a, "b")["receive"]["resync_versions"] == 0
    assert "event=repl.peer.needs_resync" not in b.read_log()
    client(b).put_object(Bucket="echo", Key="from-b", Body=b"after the skip")
    wait_for(lambda: body_at(ca, "echo", "from-b") == b"after the skip", 30,
             "b's write at a")


def test_a_log_full_of_replicated_applies_does_not_resync_a_peer(tmp_path):
    """b's WAL (capped at 16 MiB) fills with a's records while b's own link
    to a is cut, so b's cursor for a waits for acks that cannot come. Those
    segments hold only replicated applies, which b never sends a, so the cap
    moves b's cursor for a past them instead of marking a for a resync; once
    the link heals, b tells a so with one empty range, and no pass sends a
    back what a wrote (before: a was marked, and b's resync pass sent a its
    own 240 objects)."""
    with b_cut_from_a(tmp_path) as (a, b, wan):
        ca = client(a)
        ca.create_bucket(Bucket="echo")
        fill_past_retention(ca, "echo")  # 24 MiB: past b's cap too
        wait_for(lambda: peer_of(a, "b")["send"]["lag_records"] == 0, 60,
                 "b to apply a's records")
        assert "event=repl.peer.needs_resync peer=a" not in b.read_log()
        # what the cap did is shown: in status, and to Prometheus
        wal = b.status()["wal"]
        assert wal["cap_cursor_skips"] >= 1 and wal["cap_resyncs"] == 0, wal
        assert wal["segments_deleted"] >= 1 and wal["retention_bytes"] == 16 << 20, wal
        assert wal["first_lsn"] > 1 and wal["durable_lsn"] == wal["next_lsn"] - 1, wal
        _, _, metrics = __import__("conftest").http("GET", b.admin + "/metrics")
        assert re.search(rb"^meridian_wal_cap_cursor_skips_total [1-9]", metrics, re.M), metrics
        assert re.search(rb"^meridian_wal_cap_resyncs_total 0$", metrics, re.M), metrics
        heal_and_check_no_resync(a, b, wan, ca)


def test_replicated_applies_do_not_resync_a_peer_across_restarts(tmp_path):
    """As test_a_log_full_of_replicated_applies_does_not_resync_a_peer, with
    b restarted twice while its link to a is cut: once half way through
    taking in a's records (the cap then meets segments b found at open, and
    must still know they hold only replicated applies), and once after the
    cap moved b's cursor for a, before b could tell a (the range moved over
    must survive the restart). Neither restart may mark a for a resync
    (before: the open's retention ran before b's cursor for a was loaded and
    dropped the segments a needed; without that, the first restart made the
    cap mark a, and the second left b's sender finding the LSNs gone with no
    range to tell a of)."""
    with b_cut_from_a(tmp_path) as (a, b, wan):
        b_wal = os.path.join(b.meta, "wal")
        ca = client(a)
        ca.create_bucket(Bucket="echo")
        caught_up = lambda: peer_of(a, "b")["send"]["lag_records"] == 0
        # 12 MiB: under b's cap, so nothing of b's WAL goes yet
        fill_past_retention(ca, "echo", first=0, count=120)
        wait_for(caught_up, 60, "b to apply a's first records")
        b.stop()
        b.start()
        # still all there: b's cursor for a holds them
        assert "0000000000000001.wal" in os.listdir(b_wal)
        # 12 MiB more: past b's cap, which now deletes segments b found at
        # open (a never acked any: b's cursor for a is where it started)
        fill_past_retention(ca, "echo", first=120, count=120)
        wait_for(caught_up, 60, "b to apply a's other records")
        wait_for(lambda: "0000000000000001.wal" not in os.listdir(b_wal), 30,
                 "b's WAL to drop its first segment")
        b.stop()
        assert "event=repl.peer.needs_resync" not in b.read_log()
        b.start()
        heal_and_check_no_resync(a, b, wan, ca)


def test_anti_entropy_brings_a_site_past_retention_level(tmp_path):
    """b is down while a writes more than a's WAL retention: a's WAL drops
    b's records, so b can only be brought level by anti-entropy, and only
    the versions b lacks are sent."""
    a, b = small_wal_pair(tmp_path)
    try:
        ca = client(a)
        ca.create_bucket(Bucket="aetest")
        for i in range(50):
            ca.put_object(Bucket="aetest", Key=f"old{i:03d}", Body=b"before the outage %d" % i)
        converge([a, b])
        b.stop()
        # 24 MiB of inline objects: their bytes live in the WAL records
        fill_past_retention(ca, "aetest", key="new")
        for i in range(10):
            ca.delete_object(Bucket="aetest", Key=f"old{i:03d}")
        # the WAL has dropped records b never acked, and a knows: only then is
        # b back (a b that returns first streams them before they are gone)
        wait_for(lambda: peer_of(a, "b")["send"]["needs_resync"], 30,
                 "a to mark b as needing a resync")
        assert a.status()["wal"]["cap_resyncs"] >= 1, a.status()["wal"]
        b.start()
        snap = converge([a, b], timeout=60)
        assert len(snap["aetest"]) == 40 + 240
        peer = peer_of(a, "b")
        print("anti-entropy:", peer["anti_entropy"])
        # the resync pass's own result (status shows the latest pass, which
        # may be a push b asked for afterwards)
        done = wait_for(lambda: re.search(r'event=repl\.sync\.done peer=b mode=resync '
                                          r'leaves_differ=\d+ versions_sent=(\d+) .*'
                                          r'result="resynced: ', a.read_log()), 30,
                        "a's resync pass to b to end")
        # b lacked 240 new keys and 10 delete markers, and is told nothing
        # else: what b holds in the differing leaves (the 10 versions the
        # markers hide) is asked first, and nothing it already has is sent
        assert int(done.group(1)) == 250, done.group(0)
        # the other direction: b pushes what it holds in those leaves, except
        # what a would drop (the 10 versions a's markers supersede)
        pushed = wait_for(lambda: re.search(r'event=repl\.sync\.done peer=a mode=push '
                                            r'leaves_differ=\d+ versions_sent=(\d+) '
                                            r'versions_skipped=(\d+)', b.read_log()), 30,
                          "b's push pass to a to end")
        # (and any of a's versions that reach b during its walk: skipped too)
        assert int(pushed.group(1)) == 0 and int(pushed.group(2)) >= 10, pushed.group(0)
        assert not peer["send"]["needs_resync"]
        assert "needs_resync" in a.read_log()
        # streaming resumed after the resync: new writes flow again
        ca.put_object(Bucket="aetest", Key="after", Body=b"after the resync")
        converge([a, b])
        wait_caught_up([a, b])
    finally:
        a.stop()
        b.stop()


def resync_done(site, peer):
    """The match of site's log line for the end of its resync pass to peer:
    groups versions_sent, summary_pages."""
    return wait_for(lambda: re.search(rf'event=repl\.sync\.done peer={peer} mode=resync '
                                      r'leaves_differ=\d+ versions_sent=(\d+) .*'
                                      r'result="resynced: [^"]*" summary_pages=(\d+)',
                                      site.read_log()), 30, f"the resync pass to {peer} to end")


def push_done(site, peer):
    """The match of site's log line for the end of its push pass to peer:
    groups versions_sent, versions_skipped, summary_pages."""
    return wait_for(lambda: re.search(rf'event=repl\.sync\.done peer={peer} mode=push '
                                      r'leaves_differ=\d+ versions_sent=(\d+) '
                                      r'versions_skipped=(\d+) .* summary_pages=(\d+)',
                                      site.read_log()), 30, f"the push pass to {peer} to end")


def test_anti_entropy_summaries_come_in_pages(tmp_path):
    """Summaries pages of 4 KiB (about 45 versions each): what a site holds
    in the differing leaves comes page by page, and every page counts. b,
    back past a's retention, holds 110 versions a superseded (100 keys a
    overwrote, 10 it deleted); b's push leaves out all 110 though a's
    summaries of those leaves take several pages, and a sends b exactly the
    350 versions it lacks. With one page only, b would push back every one
    of its 110 versions past the first page."""
    a, b = small_wal_pair(tmp_path, both_conf="[replication]\nanti_entropy_page = 4KiB\n")
    try:
        ca = client(a)
        ca.create_bucket(Bucket="pages")
        for i in range(300):
            ca.put_object(Bucket="pages", Key=f"k{i:03d}", Body=b"first %d" % i)
        converge([a, b])
        b.stop()
        for i in range(100):
            ca.put_object(Bucket="pages", Key=f"k{i:03d}", Body=b"second %d" % i)
        for i in range(100, 110):
            ca.delete_object(Bucket="pages", Key=f"k{i:03d}")
        fill_past_retention(ca, "pages", key="new")
        wait_for(lambda: peer_of(a, "b")["send"]["needs_resync"], 30,
                 "a to mark b as needing a resync")
        b.start()
        snap = converge([a, b], timeout=90)
        assert len(snap["pages"]) == 290 + 240
        done = resync_done(a, "b")
        assert int(done.group(1)) == 350, done.group(0)
        pushed = push_done(b, "a")
        sent, skipped, pages = (int(x) for x in pushed.groups())
        # the 110, and any of a's versions that reached b during the walk
        assert sent == 0 and skipped >= 110, pushed.group(0)
        assert pages >= 2, pushed.group(0)
        print(f"a's resync read {done.group(2)} page(s) of b's summaries, "
              f"b's push {pages} of a's")
        wait_caught_up([a, b])
    finally:
        a.stop()
        b.stop()


def test_anti_entropy_pages_split_one_keys_versions(tmp_path):
    """One key with 150 versions, more than a 4 KiB summaries page holds
    (about 45): a page can end inside a key's versions and the next one
    starts after the last version the walk visited (summaries_from_version).
    b, back past a's retention, lacks one new version of that key and a new
    bucket of 240 keys: a's resync sends b exactly those 241 versions and
    one bucket record (not counted as a version), and b's push sends a none
    of the 150 both hold. Before, a page ending inside the key made no
    progress, ended the paging, and every version of the key from there on
    was sent: a sent b all 151, and b pushed back about 105."""
    a, b = small_wal_pair(tmp_path, both_conf="[replication]\nanti_entropy_page = 4KiB\n")
    try:
        ca = client(a)
        ca.create_bucket(Bucket="deep")
        ca.put_bucket_versioning(Bucket="deep", VersioningConfiguration={"Status": "Enabled"})
        for i in range(150):
            ca.put_object(Bucket="deep", Key="k", Body=b"version %d" % i)
        wait_for(lambda: len(version_listing(b, "deep")) == 150, 60, "b to hold all 150 versions")
        wait_caught_up([a, b])
        b.stop()
        ca.put_object(Bucket="deep", Key="k", Body=b"version 150")
        ca.create_bucket(Bucket="fresh")
        fill_past_retention(ca, "fresh", key="new")
        wait_for(lambda: peer_of(a, "b")["send"]["needs_resync"], 30,
                 "a to mark b as needing a resync")
        b.start()
        wait_for(lambda: len(version_listing(b, "deep")) == 151, 90, "b to hold every version")
        done = resync_done(a, "b")
        assert int(done.group(1)) == 241, done.group(0)
        assert int(done.group(2)) >= 4, done.group(0)
        assert "buckets_sent=1 " in done.group(0), done.group(0)
        assert peer_of(a, "b")["anti_entropy"]["buckets_sent"] == 1
        assert len(snapshot(b, with_bytes=False)["fresh"]) == 240
        pushed = push_done(b, "a")
        sent, skipped, pages = (int(x) for x in pushed.groups())
        assert sent == 0 and skipped >= 150, pushed.group(0)
        print(f"a's resync read {done.group(2)} page(s) of b's summaries, b's push {pages} of a's")
        wait_caught_up([a, b])
        assert version_listing(a, "deep") == version_listing(b, "deep")
        assert peer_of(b, "a")["anti_entropy"]["buckets_sent"] == 0
    finally:
        a.stop()
        b.stop()


def test_a_peer_shows_one_sites_writes_in_the_order_they_were_made(tmp_path):
    """Per-origin order: b applies a's writes in a's WAL order, so a write
    made after another at a is never visible at b before it. The ML case:
    a checkpoint, then the small "latest" pointer naming it; whenever b
    shows the pointer, b holds that checkpoint, whole. The cost is that the
    pointer waits for the checkpoint's data (measured and printed)."""
    a, b = mesh(tmp_path, ("a", "b"))
    a.start()
    b.start()
    try:
        ca, cb = client(a), client(b)
        ca.create_bucket(Bucket="ckpt")
        wait_caught_up([a, b])
        blob = os.urandom(24 << 20)
        for step in range(3):
            key = f"step-{step}.ckpt"
            ca.put_object(Bucket="ckpt", Key=key, Body=blob[step:])
            t0 = time.monotonic()
            ca.put_object(Bucket="ckpt", Key="latest", Body=key.encode())
            deadline = t0 + 60
            while body_at(cb, "ckpt", "latest") != key.encode():
                # until the pointer moves, the checkpoint may or may not be there
                assert time.monotonic() < deadline, "the pointer never reached b"
                time.sleep(0.005)
            seen = time.monotonic() - t0
            # the pointer is there: so is the checkpoint it names, every byte
            head = cb.head_object(Bucket="ckpt", Key=key)
            assert head["ContentLength"] == len(blob) - step, head
            assert body_at(cb, "ckpt", key) == blob[step:]
            print(f"step {step}: the pointer showed at b {seen * 1000:.0f} ms after its PUT")
        wait_caught_up([a, b])
    finally:
        a.stop()
        b.stop()


def test_lag_shows_the_writes_a_down_peer_misses(tmp_path):
    """meridianctl lag: with b stopped, N writes at a show as N records of
    lag and a growing time lag; once b is back the lag returns to 0."""
    a, b = mesh(tmp_path, ("a", "b"))
    a.start()
    b.start()
    try:
        ca = client(a)
        ca.create_bucket(Bucket="lagtest")
        wait_caught_up([a, b])
        b.stop()
        for i in range(25):
            ca.put_object(Bucket="lagtest", Key=f"k{i}", Body=b"x" * 100)
        time.sleep(0.3)
        peer = peer_of(a, "b")
        assert peer["send"]["lag_records"] == 25, peer["send"]
        assert peer["send"]["lag_ms"] >= 300, peer["send"]
        out = a.ctl("lag")
        assert out.returncode == 0, out.stderr
        row = [ln for ln in out.stdout.splitlines() if ln.startswith("b ")][0]
        assert row.split()[3] == "25", out.stdout  # LAG-RECS
        out = a.ctl("lag", "--watch", "--interval", "0.2", "--count", "2")
        assert out.returncode == 0 and out.stdout.count("LAG-RECS") == 2, out.stdout
        assert a.ctl("lag", "--bogus").returncode == 2
        b.start()
        wait_caught_up([a, b])
        peer = peer_of(a, "b")
        assert peer["send"]["lag_ms"] == 0 and peer["send"]["acked_lsn"] >= 26, peer["send"]
    finally:
        a.stop()
        b.stop()


def test_bandwidth_limit_holds_and_changes_at_run_time(tmp_path):
    """A catch-up of 48 MiB to a peer limited to 8 MiB/s goes at 8 MiB/s
    within 20%; lifting the limit at run time (meridianctl bandwidth)
    lets the rest go at full speed; meridianctl resync runs a pass."""
    a, b = mesh(tmp_path, ("a", "b"))
    a.start()
    b.start()
    try:
        ca = client(a)
        ca.create_bucket(Bucket="bwtest")
        wait_caught_up([a, b])
        b.stop()
        blob = os.urandom(1 << 20)
        for i in range(48):
            ca.put_object(Bucket="bwtest", Key=f"k{i}", Body=blob)
        out = a.ctl("bandwidth", "--peer", "b", "8MiB")
        assert out.returncode == 0, out.stderr
        peer = peer_of(a, "b")
        assert peer["send"]["bandwidth_bps"] == 8 << 20
        b.start()

        def received():
            # wire bytes a sent to b (nghttp2 round-robins the 16 objects in
            # flight, so b's applied-bytes counter moves in steps of 16 MiB)
            p = peer_of(a, "b")
            return p["bytes_out"], time.monotonic()

        deadline = time.time() + 15  # a redials b with backoff: wait for its session
        while not peer_of(a, "b")["send"]["streaming"]:
            assert time.time() < deadline, "a never reconnected to b"
            time.sleep(0.05)
        time.sleep(1.0)  # past the first burst
        b1, t1 = received()
        time.sleep(3.0)
        b2, t2 = received()
        rate = (b2 - b1) / (t2 - t1) / (1 << 20)
        print(f"limit 8 MiB/s: {rate:.2f} MiB/s sent over {t2 - t1:.1f} s")
        assert 8 * 0.8 <= rate <= 8 * 1.2, rate
        wait_caught_up([a, b], timeout=60)

        # run time change: lift the limit mid-way through the next catch-up
        b.stop()
        for i in range(48, 96):
            ca.put_object(Bucket="bwtest", Key=f"k{i}", Body=blob)
        assert a.ctl("bandwidth", "--peer", "b", "1MiB").returncode == 0
        t0 = time.monotonic()
        b.start()
        time.sleep(1.0)
        assert a.ctl("bandwidth", "--peer", "b", "0").returncode == 0
        wait_caught_up([a, b], timeout=60)
        secs = time.monotonic() - t0
        assert secs < 10, secs  # 48 MiB at 1 MiB/s would take 48 s
        converge([a, b])

        assert a.ctl("bandwidth", "--peer", "nosuch", "1MiB").returncode == 2
        assert a.ctl("bandwidth", "--peer", "b", "lots").returncode == 2
        out = a.ctl("resync", "start", "--peer", "b")
        assert out.returncode == 0, out.stderr
        deadline = time.time() + 20
        while True:
            ae = peer_of(a, "b")["anti_entropy"]
            if not ae["running"] and ae["result"]:
                break
            assert time.time() < deadline, ae
            time.sleep(0.1)
        assert ae["result"] == "in sync", ae
        out = a.ctl("resync", "status")
        assert out.returncode == 0 and "in sync" in out.stdout, out.stdout
    finally:
        a.stop()
        b.stop()


def test_resync_can_be_throttled_cancelled_and_restarted(tmp_path):
    a, b = small_wal_pair(tmp_path)
    try:
        ca = client(a)
        ca.create_bucket(Bucket="cancelme")
        wait_caught_up([a, b])
        b.stop()
        fill_past_retention(ca, "cancelme")
        assert a.ctl("bandwidth", "--peer", "b", "256KiB").returncode == 0
        b.start()

        def ae():
            p = peer_of(a, "b")
            return p["anti_entropy"], p["send"]

        deadline = time.time() + 20
        while not ae()[0]["running"]:
            assert time.time() < deadline, ae()
            time.sleep(0.05)
        time.sleep(1.0)
        # progress against the digest's estimate: b lacks all 240 (its
        # bucket is empty, so every leaf differs and the estimate is exact)
        state, _ = ae()
        assert state["versions_estimate"] == 240 and 0 < state["versions_sent"] < 240, state
        out = a.ctl("resync", "status", "--peer", "b")
        assert out.returncode == 0 and "/~240" in out.stdout and "%" in out.stdout, out.stdout
        out = a.ctl("resync", "cancel", "--peer", "b")
        assert out.returncode == 0, out.stderr
        state, send = ae()
        assert state["result"] == "cancelled" and not state["running"], state
        runs = state["runs"]
        time.sleep(1.5)  # a cancelled resync is not restarted on its own
        state, send = ae()
        assert state["runs"] == runs and send["needs_resync"], (state, send)
        # b is past retention: a pass limited to one bucket cannot bring it
        # level, so the limit is ignored, and said
        out = a.ctl("resync", "start", "--peer", "b", "--bucket", "cancelme", "--bandwidth", "0")
        assert out.returncode == 0 and "over bucket cancelme" in out.stdout, out.stderr
        snap = converge([a, b], timeout=60)
        assert len(snap["cancelme"]) == 240
        assert "event=repl.sync.bucket_ignored peer=b bucket=cancelme" in a.read_log()
        # the pass's own result from the log: status shows the latest pass,
        # which may be a push b asked for since
        wait_for(lambda: re.search(r'event=repl\.sync\.done peer=b mode=resync .*'
                                   r'result="resynced: ', a.read_log()), 30,
                 "a's resync pass to b to end")
        wait_for(lambda: not ae()[1]["needs_resync"], 10, "b no longer needing a resync")
        # a pass over one bucket of a level peer: runs, finds it in sync
        in_sync = a.read_log().count('result="in sync"')
        runs = ae()[0]["runs"]
        out = a.ctl("resync", "start", "--peer", "b", "--bucket", "cancelme", "--bandwidth",
                    "100MiB/s")
        assert out.returncode == 0, out.stderr
        deadline = time.time() + 20
        while ae()[0]["runs"] == runs or ae()[0]["running"]:
            assert time.time() < deadline, ae()
            time.sleep(0.1)
        wait_for(lambda: a.read_log().count('result="in sync"') > in_sync, 10,
                 "the pass over cancelme to find it in sync")
        assert a.ctl("resync", "start", "--peer", "b", "--bucket", "No_Such").returncode == 2
    finally:
        a.stop()
        b.stop()


def test_live_writes_reach_a_peer_while_its_resync_runs(tmp_path):
    """b comes back past a's WAL retention, and a's resync pass to it is slow
    (a bandwidth limit): live writes at a still reach b while the pass runs,
    a cancelled pass leaves streaming on and the mark set, and a pass
    restarted (then cut by a restart of a, after which it runs again) brings
    b level without losing anything b applied meanwhile."""
    a, b = small_wal_pair(tmp_path)
    try:
        ca, cb = early_pair(a, b, "livesync")
        b.stop()
        fill_past_retention(ca, "livesync")
        ca.delete_object(Bucket="livesync", Key="early")
        # 24 MiB at 512 KiB/s: the pass would take about 48 s. A write from
        # before the pass's snapshot is the pass's to send.
        throttled_resync(a, b, "512KiB")

        def at_b(key):
            return body_at(cb, "livesync", key)

        # a live write during the pass reaches b long before the pass ends
        ca.put_object(Bucket="livesync", Key="live1", Body=b"written during the resync")
        wait_for(lambda: at_b("live1") == b"written during the resync", 15,
                 "the live write to reach b")
        p = peer_of(a, "b")
        assert p["anti_entropy"]["running"] and p["send"]["needs_resync"], p
        assert p["anti_entropy"]["versions_sent"] < 240, p["anti_entropy"]
        out = a.ctl("lag")
        row = [ln for ln in out.stdout.splitlines() if ln.startswith("b ")][0]
        assert "*" in row and "past WAL retention" in out.stdout, out.stdout
        # the stream resumed after the pass's snapshot: b is level with a's
        # live writes although the pass is far from done
        ca.put_object(Bucket="livesync", Key="live2", Body=b"second")
        wait_for(lambda: at_b("live2") == b"second", 15, "the second live write to reach b")

        # cancelled midway: the mark stays (b still lacks versions), and
        # streaming goes on
        out = a.ctl("resync", "cancel", "--peer", "b")
        assert out.returncode == 0, out.stderr
        p = peer_of(a, "b")
        assert not p["anti_entropy"]["running"] and p["send"]["needs_resync"], p
        ca.put_object(Bucket="livesync", Key="live3", Body=b"after the cancel")
        ca.delete_object(Bucket="livesync", Key="live1")
        wait_for(lambda: at_b("live3") == b"after the cancel" and at_b("live1") is None, 15,
                 "live writes after the cancel to reach b")
        assert peer_of(a, "b")["send"]["needs_resync"]
        missing = [k for k in ("k000", "k120", "k239") if at_b(k) is None]
        assert missing, "the cancelled pass should not have sent everything"

        # restarted, and cut short by a restart of a: the mark is durable, so
        # a runs the pass again on its own (unthrottled: the limit was set at
        # run time), and b ends level with what it applied meanwhile
        out = a.ctl("resync", "start", "--peer", "b")
        assert out.returncode == 0, out.stderr
        wait_for(lambda: peer_of(a, "b")["anti_entropy"]["running"], 20, "the pass to run again")
        marks = a.read_log().count("event=repl.peer.needs_resync peer=b")
        a.stop()
        a.start()
        wait_for(lambda: a.read_log().count("event=repl.peer.needs_resync peer=b") > marks, 20,
                 "the resync mark to outlive a's restart")
        snap = converge([a, b], timeout=90)
        assert set(snap["livesync"]) == {f"k{i:03d}" for i in range(240)} | {"live2", "live3"}
        wait_for(lambda: not peer_of(a, "b")["send"]["needs_resync"], 30, "the resync mark to clear")
        log = a.read_log()
        assert re.search(r'event=repl\.sync\.done peer=b mode=resync .*result="resynced: ', log)
        ca.put_object(Bucket="livesync", Key="after", Body=b"after the resync")
        wait_for(lambda: at_b("after") == b"after the resync", 15, "a write after the resync")
        wait_caught_up([a, b])
    finally:
        a.stop()
        b.stop()


def repl_status(s3, bucket, key):
    """x-amz-replication-status of bucket/key (HEAD through boto3)."""
    return s3.head_object(Bucket=bucket, Key=key).get("ReplicationStatus")


def test_replication_status_is_precise_while_a_resync_pass_runs(tmp_path):
    """b comes back past a's WAL retention and a's resync pass to it is
    throttled: a write at a made after the pass began reads COMPLETED as soon
    as b holds it, although the pass goes on; older writes b still lacks
    (the pass's to send) read PENDING, and nothing reads COMPLETED that b
    lacks, also after a restarts mid-pass; once the pass has ended every
    write reads COMPLETED."""
    a, b = small_wal_pair(tmp_path)
    try:
        ca, cb = early_pair(a, b, "statsync")
        wait_for(lambda: repl_status(ca, "statsync", "early") == "COMPLETED", 15,
                 "the first write to read COMPLETED")
        b.stop()
        fill_past_retention(ca, "statsync")
        throttled_resync(a, b, "256KiB")  # 24 MiB: the pass would take about 96 s

        def at_b(key):
            return body_at(cb, "statsync", key)

        ca.put_object(Bucket="statsync", Key="live", Body=b"written during the resync")
        wait_for(lambda: at_b("live") == b"written during the resync", 15,
                 "the live write to reach b")
        wait_for(lambda: repl_status(ca, "statsync", "live") == "COMPLETED", 15,
                 "the live write to read COMPLETED during the pass")
        p = peer_of(a, "b")
        assert p["anti_entropy"]["running"] and p["send"]["needs_resync"], p

        # writes from before the pass: what a says of each, then what b holds
        keys = [f"k{i:03d}" for i in range(0, 240, 3)]

        def holes_pending(ca):
            said = {k: repl_status(ca, "statsync", k) for k in keys}
            held = {k: at_b(k) is not None for k in keys}
            assert peer_of(a, "b")["send"]["needs_resync"], "the pass ended too soon for the test"
            lacking = [k for k in keys if not held[k]]
            assert lacking, "the throttled pass should not have sent everything yet"
            assert all(said[k] == "PENDING" for k in lacking), said
            assert not [k for k in keys if said[k] == "COMPLETED" and not held[k]], (said, held)
        holes_pending(ca)
        assert repl_status(ca, "statsync", "early") == "COMPLETED"

        # a restarts mid-pass, throttled by its file now: the resync mark is
        # read before any ack counts, so b's holes still read PENDING, and a
        # write made after the new pass began reads COMPLETED once at b
        a.stop()
        with open(a.config) as f:
            text = f.read()
        with open(a.config, "w") as f:
            f.write(text.replace("[peer.b]\n", "[peer.b]\nbandwidth = 256KiB\n"))
        a.start()
        ca = client(a)
        wait_for(lambda: peer_of(a, "b")["send"]["streaming"], 20, "a's stream to b to resume")
        holes_pending(ca)
        # the point the first pass resumed the stream from is stored: what b
        # acked after it still reads COMPLETED (the new pass needs no marker)
        wait_for(lambda: repl_status(ca, "statsync", "live") == "COMPLETED", 15,
                 "the live write to read COMPLETED again after a's restart")
        wait_for(lambda: peer_of(a, "b")["anti_entropy"]["versions_sent"] > 0, 30,
                 "the pass to run again")
        ca.put_object(Bucket="statsync", Key="live2", Body=b"after the restart")
        wait_for(lambda: at_b("live2") == b"after the restart", 15, "live2 to reach b")
        wait_for(lambda: repl_status(ca, "statsync", "live2") == "COMPLETED", 15,
                 "live2 to read COMPLETED during the pass")
        holes_pending(ca)

        # the pass ends: everything reads COMPLETED
        assert a.ctl("bandwidth", "--peer", "b", "0").returncode == 0
        wait_for(lambda: not peer_of(a, "b")["send"]["needs_resync"], 90,
                 "the resync mark to clear")
        wait_for(lambda: all(repl_status(ca, "statsync", k) == "COMPLETED"
                             for k in keys + ["live", "live2", "early"]), 15,
                 "every write to read COMPLETED after the pass")
        assert all(at_b(k) is not None for k in keys)
    finally:
        a.stop()
        b.stop()


def test_failed_list_and_status_agree_while_a_resync_pass_runs(tmp_path):
    """failed_after = 2 s at a, and b's resync pass throttled: a write made
    after the pass began that b has applied never reads FAILED and is never
    listed, though older than the deadline; older writes b lacks read
    FAILED, and the FAILED list says it is partial for b until the pass
    ends, when it is empty and everything reads COMPLETED."""
    a, b = small_wal_pair(tmp_path, "[replication]\nfailed_after = 2\n")
    try:
        ca, cb = early_pair(a, b, "failsync")
        b.stop()
        fill_past_retention(ca, "failsync")
        throttled_resync(a, b, "256KiB")
        ca.put_object(Bucket="failsync", Key="live", Body=b"written during the resync")
        written = time.time()
        wait_for(lambda: body_at(cb, "failsync", "live") is not None, 15, "live to reach b")
        wait_for(lambda: repl_status(ca, "failsync", "live") == "COMPLETED", 15,
                 "live to read COMPLETED")
        time.sleep(max(0.0, written + 2.5 - time.time()))

        assert repl_status(ca, "failsync", "live") == "COMPLETED"
        keys = [f"k{i:03d}" for i in range(0, 240, 3)]
        said = {k: repl_status(ca, "failsync", k) for k in keys}
        st, doc = failed_list(a, peer="b")
        lacking = [k for k in keys if body_at(cb, "failsync", k) is None]
        assert peer_of(a, "b")["send"]["needs_resync"], "the pass ended too soon for the test"
        assert lacking and all(said[k] == "FAILED" for k in lacking), (lacking, said)
        assert st == 200 and doc["peers"][0]["failed_unknown"], doc
        assert "live" not in [e["key"] for e in doc["failed"]], doc

        assert a.ctl("bandwidth", "--peer", "b", "0").returncode == 0
        wait_for(lambda: not peer_of(a, "b")["send"]["needs_resync"], 90,
                 "the resync mark to clear")
        wait_for(lambda: all(repl_status(ca, "failsync", k) == "COMPLETED"
                             for k in keys + ["live"]), 15, "every write to read COMPLETED")
        st, doc = failed_list(a, peer="b")
        assert doc["failed"] == [] and not doc["peers"][0]["failed_unknown"], doc
    finally:
        a.stop()
        b.stop()


def test_live_writes_overtake_a_resync_on_a_saturated_link(tmp_path):
    """No bandwidth limit set in Meridian: a's link to b is a 3 MiB/s WAN
    link (wanem) that a resync of 24 MiB fills for about 8 s. Live writes
    made at a during the pass still reach b in well under that: the resync
    may fill only half of the requests in flight, so a live batch is
    submitted at once, and its stream weighs 256 against the resync's 8, so
    HTTP/2 sends it first; only what already sits in the kernel's send
    buffer is ahead of it. (Before, the first such write took 5.7 s.)"""
    with pair_with_wan_link(tmp_path, "a", delay=5) as (a, b, wan):
        ca, cb = client(a), client(b)
        ca.create_bucket(Bucket="prio")
        wait_caught_up([a, b])
        b.stop()
        fill_past_retention(ca, "prio")
        wait_for(lambda: peer_of(a, "b")["send"]["needs_resync"], 30,
                 "a to mark b as needing a resync")
        wan.set("a-b", rate=3 << 20, qmax=256 << 10)
        b.start()
        wait_for(lambda: peer_of(a, "b")["anti_entropy"]["versions_sent"] > 0, 30,
                 "the pass to send versions")
        t_pass = time.monotonic()
        lags = []  # of live writes made while the pass runs
        for i in range(6):
            if not peer_of(a, "b")["anti_entropy"]["running"]:
                break
            t0 = time.monotonic()
            ca.put_object(Bucket="prio", Key=f"live{i}", Body=b"live %d" % i)
            wait_for(lambda: body_at(cb, "prio", f"live{i}") == b"live %d" % i, 30,
                     f"live write {i} to reach b", step=0.05)
            lags.append(time.monotonic() - t0)
            time.sleep(0.2)
        assert len(lags) >= 3, ("the pass ended too soon for the test", lags)
        wait_for(lambda: not peer_of(a, "b")["anti_entropy"]["running"], 60,
                 "the pass to end")
        pass_s = time.monotonic() - t_pass
        print(f"live write lags at b during the resync: "
              f"{', '.join(f'{x * 1000:.0f}' for x in lags)} ms; "
              f"the pass ran {pass_s:.1f} s")
        # each live write made during the pass took a fraction of its time
        assert max(lags) < pass_s / 2, (lags, pass_s)
        snap = converge([a, b], timeout=60)
        assert len(snap["prio"]) == 240 + len(lags)


@pytest.mark.parametrize("check", ["poly1305", "md5"])
def test_object_data_corrupted_in_flight_is_refused_and_sent_again(tmp_path, monkeypatch, check):
    """One byte of a 6 MiB object's data is flipped on its way from a to b,
    above TCP, which cannot notice (wanem's corrupt=N). b refuses the
    request before applying anything, a drops the connection and sends the
    object again, and b ends up with the right bytes. "poly1305": both
    sites of this build on an h2c link, so a sends a Poly1305 tag of the
    head and the data after it; that also covers a multipart object, whose
    ETag is no MD5 of its bytes (before, b stored such an object corrupted).
    "md5": b announces no features, as a build from before them would
    (MERIDIAN_TEST_REPL_FEATURES=0), so a sends no check and b compares a
    plain object's MD5 with its ETag. The flip lands 3 MiB into the
    stream: inside the object's data, but for the 9 bytes of HTTP/2 framing
    per 16 KiB (about 1 in 1,800), which break the connection or the
    request instead; such an attempt is made again with another object."""
    if check == "md5":
        monkeypatch.setenv("MERIDIAN_TEST_REPL_FEATURES", "0")
    why = {"poly1305": "object data does not match its Poly1305 tag",
           "md5": "object data does not match its record (MD5)"}[check]
    with pair_with_wan_link(tmp_path, "a") as (a, b, wan):
        ca, cb = client(a), client(b)
        ca.create_bucket(Bucket="flip")
        wait_caught_up([a, b])
        assert peer_of(a, "b")["send"]["data_check"] == check
        bodies = {}
        for attempt in range(3):
            key = f"obj{attempt}"
            b.stop()
            bodies[key] = body = os.urandom(6 << 20)
            if check == "poly1305":
                up = ca.create_multipart_upload(Bucket="flip", Key=key)["UploadId"]
                parts = []
                for n, (lo, hi) in enumerate(((0, 5 << 20), (5 << 20, 6 << 20)), 1):
                    r = ca.upload_part(Bucket="flip", Key=key, UploadId=up, PartNumber=n,
                                       Body=body[lo:hi])
                    parts.append({"PartNumber": n, "ETag": r["ETag"]})
                ca.complete_multipart_upload(Bucket="flip", Key=key, UploadId=up,
                                             MultipartUpload={"Parts": parts})
            else:
                ca.put_object(Bucket="flip", Key=key, Body=body)
            wan.set("a-b", dir="ab", corrupt=3 << 20)
            b.start()
            wait_for(lambda: body_at(cb, "flip", key) == body, 60, f"{key} to reach b whole")
            assert wan.stats("a-b")["ab.corrupted"] == attempt + 1
            if why in b.read_log():
                break
        rejects = [ln for ln in b.read_log().splitlines()
                   if "event=repl.recv.reject" in ln and why in ln]
        assert len(rejects) == 1, b.read_log()[-4000:]
        assert peer_of(b, "a")["receive"]["errors"] >= 1
        snap = converge([a, b])
        for key, body in bodies.items():
            assert snap["flip"][key][5] == hashlib.sha256(body).hexdigest()


def test_a_data_check_that_cannot_be_computed_fails_the_request_not_the_data(tmp_path,
                                                                           monkeypatch):
    """a's first data check fails to finish (MERIDIAN_TEST_REPL_DCHECK_FAULT=1,
    as when OpenSSL fails Poly1305's last step). a logs an error naming b and
    resets that request rather than end its body without the check (which b
    could only refuse as truncated, and a would retry without saying why),
    then sends the object again: b gets the right bytes, and never sees a
    truncated request."""
    a, b = mesh(tmp_path, ("a", "b"))
    monkeypatch.setenv("MERIDIAN_TEST_REPL_DCHECK_FAULT", "1")
    a.start()
    monkeypatch.delenv("MERIDIAN_TEST_REPL_DCHECK_FAULT")
    b.start()
    try:
        ca, cb = client(a), client(b)
        ca.create_bucket(Bucket="dcfail")
        wait_caught_up([a, b])
        assert peer_of(a, "b")["send"]["data_check"] == "poly1305"
        body = os.urandom(1 << 20)  # not inline: its data follows the record
        ca.put_object(Bucket="dcfail", Key="obj", Body=body)
        wait_for(lambda: body_at(cb, "dcfail", "obj") == body, 30, "obj to reach b whole")
        failed = [ln for ln in a.read_log().splitlines()
                  if "event=repl.data_check_failed" in ln]
        assert len(failed) == 1, a.read_log()[-4000:]
        assert "peer=b" in failed[0] and "check=poly1305" in failed[0], failed[0]
        assert "level=error" in failed[0], failed[0]
        assert any("event=repl.send.fail" in ln and "could not be read or checked" in ln
                   for ln in a.read_log().splitlines()), a.read_log()[-4000:]
        assert "truncated" not in b.read_log(), b.read_log()[-4000:]
        assert peer_of(a, "b")["send"]["errors"] >= 1
    finally:
        a.stop()
        b.stop()


def test_a_peer_that_falls_past_retention_again_during_its_resync_gets_a_new_pass(tmp_path):
    """b's resync pass runs throttled while a writes more than its WAL
    retention: b's stream falls behind again, the WAL drops it, that pass
    ends as failed and a new one (with a new snapshot) brings b level; the
    writes b lacks meanwhile never read COMPLETED."""
    a, b = small_wal_pair(tmp_path)
    try:
        ca, cb = client(a), client(b)
        ca.create_bucket(Bucket="again")
        wait_caught_up([a, b])
        b.stop()
        fill_past_retention(ca, "again")

        throttled_resync(a, b, "256KiB")
        fill_past_retention(ca, "again", key="n")
        wait_for(lambda: "the stream fell past WAL retention again" in a.read_log(), 30,
                 "the pass to end when b's stream is dropped again")
        # the new pass's marker lifts b's applied LSN over the second holes:
        # its new point keeps them from reading COMPLETED while b lacks them
        wait_for(lambda: a.read_log().count("event=repl.sync.streaming peer=b ") >= 2, 30,
                 "the new pass's marker to be acked")
        keys = [f"n{i:03d}" for i in range(0, 240, 3)]
        said = {k: repl_status(ca, "again", k) for k in keys}
        held = {k: body_at(cb, "again", k) is not None for k in keys}
        assert peer_of(a, "b")["send"]["needs_resync"], "the pass ended too soon for the test"
        assert not all(held.values()), "the throttled pass should not have sent everything yet"
        assert not [k for k in keys if said[k] == "COMPLETED" and not held[k]], (said, held)
        assert a.ctl("bandwidth", "--peer", "b", "0").returncode == 0
        snap = converge([a, b], timeout=90)
        assert len(snap["again"]) == 480
        wait_for(lambda: not peer_of(a, "b")["send"]["needs_resync"], 30, "the resync mark to clear")
        log = a.read_log()
        assert len(re.findall(r"event=repl\.sync\.stream peer=b .* marker=1", log)) >= 2, log
        assert re.search(r'event=repl\.sync\.done peer=b mode=resync .*result="resynced: ', log)
        wait_caught_up([a, b])
    finally:
        a.stop()
        b.stop()


def failed_list(site, **q):
    from conftest import TOKEN, http
    import json
    import urllib.parse
    st, _, body = http("GET", site.admin + "/admin/v1/replication/failed?" +
                       urllib.parse.urlencode(q), headers={"Authorization": "Bearer " + TOKEN})
    return st, json.loads(body)


def test_failed_writes_are_listed_per_peer_until_applied(tmp_path):
    """[replication] failed_after = 2: with b down, a's writes turn FAILED
    after 2 s, are counted (status, /metrics) and listed (admin API,
    meridianctl failed) with b named; once b is back they are COMPLETED and
    the list is empty. Writes younger than the deadline are not listed."""
    a, b = mesh(tmp_path, ("a", "b"))
    with open(a.config, "a") as f:
        f.write("[replication]\nfailed_after = 2\n")
    a.start()
    b.start()
    try:
        ca = client(a)
        ca.create_bucket(Bucket="failtest")
        ca.create_bucket(Bucket="other")
        wait_caught_up([a, b])
        b.stop()
        for i in range(5):
            ca.put_object(Bucket="failtest", Key=f"k{i}", Body=b"x%d" % i)
        ca.delete_object(Bucket="failtest", Key="k4")  # a delete marker
        ca.put_object(Bucket="other", Key="o", Body=b"other bucket")
        h = ca.head_object(Bucket="failtest", Key="k0")
        assert h["ReplicationStatus"] == "PENDING", h
        st, doc = failed_list(a)
        assert st == 200 and doc["failed"] == [], doc  # not late yet
        time.sleep(2.5)
        ca.put_object(Bucket="failtest", Key="young", Body=b"written after the deadline")
        h = ca.head_object(Bucket="failtest", Key="k0")
        assert h["ReplicationStatus"] == "FAILED", h

        def count():
            p = peer_of(a, "b")
            return p["send"]["failed_records"]
        deadline = time.time() + 10
        while count() != 7 and time.time() < deadline:
            time.sleep(0.2)
        assert count() == 7  # 5 puts, 1 delete marker, 1 put in "other"; not "young"
        st, _, metrics = __import__("conftest").http("GET", a.admin + "/metrics")
        assert 'meridian_repl_failed_records{peer="b"} 7' in metrics.decode(), metrics

        st, doc = failed_list(a)
        assert st == 200, doc
        rows = [(e["peer"], e["kind"], e["bucket"], e["key"]) for e in doc["failed"]]
        assert rows == [("b", "put", "failtest", f"k{i}") for i in range(5)] + \
            [("b", "delete_marker", "failtest", "k4"), ("b", "put", "other", "o")], rows
        assert all(e["age_ms"] >= 2000 for e in doc["failed"]), doc
        assert doc["peers"][0]["peer"] == "b" and doc["peers"][0]["failed_records"] == 7
        assert not doc["truncated"]
        st, doc = failed_list(a, bucket="other")
        assert [e["key"] for e in doc["failed"]] == ["o"], doc
        st, doc = failed_list(a, peer="b", limit=3)
        assert [e["key"] for e in doc["failed"]] == ["k0", "k1", "k2"] and doc["truncated"], doc
        nxt = doc["peers"][0]["next_after"]
        st, doc = failed_list(a, peer="b", limit=3, after=nxt)
        assert [e["key"] for e in doc["failed"]] == ["k3", "k4", "k4"], doc
        assert failed_list(a, peer="nosuch")[0] == 404

        out = a.ctl("failed", "--peer", "b")
        assert out.returncode == 0, out.stderr
        assert "peer b" in out.stdout and "failtest/k3" in out.stdout, out.stdout
        assert "delete_marker" in out.stdout and "young" not in out.stdout, out.stdout
        assert a.ctl("failed", "--peer", "nosuch").returncode == 2

        b.start()
        wait_caught_up([a, b])
        deadline = time.time() + 10
        while count() != 0 and time.time() < deadline:
            time.sleep(0.2)
        assert count() == 0
        assert failed_list(a)[1]["failed"] == []
        h = ca.head_object(Bucket="failtest", Key="k0")
        assert h["ReplicationStatus"] == "COMPLETED", h
        assert "(none" in a.ctl("failed").stdout
    finally:
        a.stop()
        b.stop()


def test_anti_entropy_tree_exchanges_only_the_differing_subtrees(tmp_path):
    """10^5 keys at both sites; b misses 5 changes (2 new keys, a tag
    change, a delete marker, an overwritten key) and is pushed past a's WAL
    retention, so only anti-entropy can bring it level. The tree digests
    are compared top-down: the pass exchanges a few KiB of digest (the
    flat leaf array of version 1 was 1 MiB for this bucket) and sends only
    the versions of the differing leaves. The tag change and the delete
    marker arrive."""
    import subprocess
    from conftest import BUILD
    mrdbench = os.path.join(BUILD, "bench", "mrdbench")
    if not os.path.exists(mrdbench):
        pytest.skip("bench/mrdbench not built")
    a, b = mesh(tmp_path, ("a", "b"))
    for s in (a, b):
        with open(s.config, "a") as f:
            f.write("[wal]\nsegment_size = 1MiB\nretention_max = 16MiB\n")
    a.start()
    b.start()
    try:
        n = 100000
        out = subprocess.run([mrdbench, "--endpoint", a.s3, "--access-key", "AKIATEST",
                              "--secret-key", "testsecretkey", "--bucket", "tree",
                              "--create-bucket", "--prefix", "k", "--op", "put", "--count",
                              str(n), "--size", "16", "--concurrency", "32", "--quiet"],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stdout + out.stderr
        print(out.stdout.strip())
        wait_caught_up([a, b], timeout=120)
        b.stop()
        ca = client(a)
        ca.put_object(Bucket="tree", Key="new-1", Body=b"only at a")
        ca.put_object(Bucket="tree", Key="new-2", Body=b"only at a too")
        ca.put_object_tagging(Bucket="tree", Key="k00000007",
                              Tagging={"TagSet": [{"Key": "colour", "Value": "blue"}]})
        ca.delete_object(Bucket="tree", Key="k00000009")
        # 20 MiB of overwrites of one key: b's records leave a's WAL
        blob = os.urandom(100 * 1024)
        for i in range(200):
            ca.put_object(Bucket="tree", Key="filler", Body=blob + b"%d" % i)
        peer = peer_of(a, "b")
        assert peer["send"]["needs_resync"], peer["send"]
        b.start()
        deadline = time.time() + 120
        while time.time() < deadline:
            peer = peer_of(a, "b")
            if "resynced" in peer["anti_entropy"]["result"]:
                break
            time.sleep(0.5)
        ae = peer["anti_entropy"]
        print("anti-entropy a->b:", ae)
        assert "resynced" in ae["result"], ae
        assert ae["tree"], ae
        # 5 differing keys: 5 leaves of 65536 differ; each also holds about
        # 1.5 other keys (10^5 / 65536), which b has already: b says what it
        # holds in those leaves, and only the 5 changes are sent
        assert ae["leaves_differ"] == 5, ae
        assert ae["versions_sent"] == 5, ae
        assert ae["summaries"].endswith("versions held there, 1 page"), ae
        # roots, then 16 children per differing node on 4 levels: a few KiB
        assert ae["digest_bytes"] < 8 * 1024, ae
        assert ae["digest_rounds"] == 7, ae  # roots, 4 levels, the push, the summaries
        cb = client(b)
        assert cb.get_object(Bucket="tree", Key="new-2")["Body"].read() == b"only at a too"
        tags = cb.get_object_tagging(Bucket="tree", Key="k00000007")["TagSet"]
        assert tags == [{"Key": "colour", "Value": "blue"}], tags
        with pytest.raises(cb.exceptions.ClientError):
            cb.head_object(Bucket="tree", Key="k00000009")
        assert cb.get_object(Bucket="tree", Key="filler")["Body"].read() == blob + b"199"
        # the other direction: b was asked to send what it holds in those leaves
        bpeer = [p for p in b.status()["replication"]["peers"] if p["name"] == "a"][0]
        print("push b->a:", bpeer["anti_entropy"], "asked:", ae["push"])
        assert ae["push"] in ("the peer sends what it holds there", "asked"), ae
        deadline = time.time() + 30
        while "pushed" not in bpeer["anti_entropy"]["result"] and time.time() < deadline:
            time.sleep(0.2)
            bpeer = [p for p in b.status()["replication"]["peers"] if p["name"] == "a"][0]
        assert "pushed at the peer's request" in bpeer["anti_entropy"]["result"], bpeer
        # b's copies there are all superseded at a (the old tag set, the
        # version the delete marker hides, the overwritten filler) or held
        # by a as they are: b sends none of them
        assert bpeer["anti_entropy"]["versions_sent"] == 0, bpeer
        assert bpeer["anti_entropy"]["versions_skipped"] >= 3, bpeer
        wait_caught_up([a, b])
        la = ca.list_objects_v2(Bucket="tree", Prefix="new-")["KeyCount"]
        lb = cb.list_objects_v2(Bucket="tree", Prefix="new-")["KeyCount"]
        assert la == lb == 2
    finally:
        a.stop()
        b.stop()
