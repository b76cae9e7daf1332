"""GC of delete markers and tombstones across three real sites on loopback.

A null delete marker (an S3 DELETE in an unversioned bucket) and the
tombstone of a version removed by id must outlive every copy of what they
hide, and then go: otherwise a bucket of temporary files grows one index
record per key ever deleted. The sites purge them once every site has
applied them (the stable point, from the replication acks) and the grace
has passed (docs/conflicts.md section 6). These tests run the sweep every
second with a one-second grace and check, through the admin API:
  - the markers go at every site, and only once all three have them;
  - a site that is down holds every purge back, and the status names it;
  - removing that site from the topology lets the purges go on;
  - a hidden conflict loser is kept for its retention window, then purged
    with its data, and a losing delete marker goes as soon as it is stable;
  - a purged record that anti-entropy sends back from a site that has not
    purged it is dropped as a ghost, not stored again.
"""
import json
import os
import re
import time
import urllib.parse

from conftest import TOKEN, http, s3_client, wait_for
from test_replication import converge, mesh

GC_FAST = "[replication]\ngc_interval = 1\ngc_grace = 1\n"


def start_three(tmp_path, conf=(GC_FAST, GC_FAST, GC_FAST)):
    sites = mesh(tmp_path)
    for s, extra in zip(sites, conf):
        with open(s.config, "a") as f:
            f.write(extra)
        s.start()
    return sites


def versions(site, bucket, key):
    """The versions site keeps of key (delete markers included)."""
    q = urllib.parse.urlencode({"bucket": bucket, "key": key})
    st, _, body = http("GET", site.admin + "/admin/v1/object?" + q,
                       headers={"Authorization": "Bearer " + TOKEN})
    assert st == 200, body
    return json.loads(body)["versions"]


def gc(site):
    return site.status()["gc"]


def purged_everywhere(sites, bucket, keys):
    return all(not versions(s, bucket, k) for s in sites for k in keys)


def test_delete_markers_are_purged_once_every_site_has_them(tmp_path):
    sites = start_three(tmp_path)
    a, b, c = sites
    try:
        ca, cb = s3_client(a), s3_client(b)
        ca.create_bucket(Bucket="scratch")
        for i in range(20):
            ca.put_object(Bucket="scratch", Key=f"k{i:02d}", Body=b"x" * (i + 1))
        converge(sites)
        gone = [f"k{i:02d}" for i in range(12)]
        for k in gone[:8]:
            ca.delete_object(Bucket="scratch", Key=k)
        for k in gone[8:]:
            cb.delete_object(Bucket="scratch", Key=k)
        snap = converge(sites)
        assert sorted(snap["scratch"]) == [f"k{i:02d}" for i in range(12, 20)]

        wait_for(lambda: purged_everywhere(sites, "scratch", gone), 30,
                 "the delete markers to be purged at every site")
        for s in sites:
            g = gc(s)
            assert g["markers_purged"] == 12, (s.name, g)
            assert g["tombstones_purged"] == 0, (s.name, g)
            assert g["sweeps"] >= 1 and g["last_error"] == "", (s.name, g)
            assert g["stable_age_ms"] is not None and g["stable_age_ms"] < 30000, (s.name, g)
            assert "event=gc.sweep " in s.read_log()
            # the live keys are untouched: one current version each
            for i in range(12, 20):
                vs = versions(s, "scratch", f"k{i:02d}")
                assert [v["role"] for v in vs] == ["current"], (s.name, vs)
        assert converge(sites) == snap
        out = a.ctl("status")
        assert out.returncode == 0, out.stderr
        assert "STABLE   every write older than " in out.stdout, out.stdout
        assert "GC       12 delete markers, 0 tombstones and 0 conflict losers (0 B) purged" in out.stdout, out.stdout
    finally:
        for s in sites:
            s.stop()


def delete_while_c_is_down(sites, bucket, n):
    """n keys written at a and replicated everywhere, then c stopped and the
    keys deleted at a; returns once b holds every delete marker, plus three
    sweeps (twice the grace past the deletes) in which nothing may purge."""
    a, b, c = sites
    ca = s3_client(a)
    ca.create_bucket(Bucket=bucket)
    for i in range(n):
        ca.put_object(Bucket=bucket, Key=f"k{i}", Body=b"data")
    converge(sites)
    c.stop()
    for i in range(n):
        ca.delete_object(Bucket=bucket, Key=f"k{i}")
    # b applies the deletes at once; c cannot: neither a nor b may purge
    wait_for(lambda: all(versions(b, bucket, f"k{i}") for i in range(n)), 10,
             "b to hold the delete markers")
    time.sleep(3)


def test_a_site_that_is_down_holds_every_purge_back(tmp_path):
    sites = start_three(tmp_path)
    a, b, c = sites
    try:
        delete_while_c_is_down(sites, "held", 6)
        for s in (a, b):
            g = gc(s)
            assert g["markers_purged"] == 0, (s.name, g)
            assert "c" in (g["held_by"]["origin"], g["held_by"]["site"]), (s.name, g)
            for i in range(6):
                vs = versions(s, "held", f"k{i}")
                assert len(vs) == 1 and vs[0]["delete_marker"], (s.name, vs)
        out = a.ctl("status")
        assert re.search(r"STABLE   .* \(slowest: .*c", out.stdout), out.stdout
        c.start()
        converge(sites)
        wait_for(lambda: purged_everywhere(sites, "held", [f"k{i}" for i in range(6)]), 30,
                 "the markers to be purged once c has them")
        for s in sites:
            assert gc(s)["markers_purged"] == 6, (s.name, gc(s))
    finally:
        for s in sites:
            s.stop()


def test_purged_records_sent_back_by_anti_entropy_are_dropped_as_ghosts(tmp_path):
    # c never sweeps: it keeps the marker and the tombstone that a and b purge
    sites = start_three(tmp_path, (GC_FAST, GC_FAST, "[replication]\ngc_interval = 0\n"))
    a, b, c = sites
    try:
        ca = s3_client(a)
        ca.create_bucket(Bucket="ghost")
        ca.put_object(Bucket="ghost", Key="tmp", Body=b"scratch")
        ca.create_bucket(Bucket="vghost")
        ca.put_bucket_versioning(Bucket="vghost", VersioningConfiguration={"Status": "Enabled"})
        v1 = ca.put_object(Bucket="vghost", Key="doc", Body=b"one")["VersionId"]
        v2 = ca.put_object(Bucket="vghost", Key="doc", Body=b"two")["VersionId"]
        converge(sites)
        ca.delete_object(Bucket="ghost", Key="tmp")
        ca.delete_object(Bucket="vghost", Key="doc", VersionId=v1)
        converge(sites)
        wait_for(lambda: all(not versions(s, "ghost", "tmp") for s in (a, b)) and
                 all(gc(s)["tombstones_purged"] == 1 for s in (a, b)), 30,
                 "a and b to purge the marker and the tombstone")
        assert versions(c, "ghost", "tmp"), "c (no sweeps) keeps its marker"
        assert gc(c)["markers_purged"] == 0
        before = gc(a)

        # c's pass sends a what a lacks: the marker and the removal
        out = c.ctl("resync", "start", "--peer", "a")
        assert out.returncode == 0, out.stderr
        wait_for(lambda: gc(a)["ghosts_dropped"] >= 2, 30, "a to drop the records c sent back")
        after = gc(a)
        assert after["markers_purged"] == before["markers_purged"], after
        assert after["tombstones_purged"] == before["tombstones_purged"], after
        assert not versions(a, "ghost", "tmp")
        assert len(versions(a, "vghost", "doc")) == 1
        r = ca.list_object_versions(Bucket="vghost")
        assert [v["VersionId"] for v in r.get("Versions", [])] == [v2], r
    finally:
        for s in sites:
            s.stop()


def test_a_delete_that_lost_a_concurrent_write_is_purged_and_the_race_stays_logged(tmp_path):
    sites = start_three(tmp_path)
    a, b, c = sites
    try:
        s3_client(a).create_bucket(Bucket="race")
        s3_client(a).put_object(Bucket="race", Key="k", Body=b"v0")
        converge(sites)
        a.stop()
        s3_client(b).delete_object(Bucket="race", Key="k")  # a does not see it
        wait_for(lambda: versions(c, "race", "k")[0]["delete_marker"], 10, "c to apply the delete")
        b.stop()
        a.start()
        s3_client(a).put_object(Bucket="race", Key="k", Body=b"v1")  # nor b this put
        b.start()
        snap = converge(sites)
        assert snap["race"]["k"][1] == 2  # the later put won the race
        wait_for(lambda: all([v["role"] for v in versions(s, "race", "k")] == ["current"]
                             for s in sites), 30, "the losing delete marker to be purged")
        for s in sites:
            assert gc(s)["markers_purged"] == 1, (s.name, gc(s))
            st, _, body = http("GET", s.admin + "/admin/v1/conflicts?bucket=race",
                               headers={"Authorization": "Bearer " + TOKEN})
            assert st == 200 and json.loads(body)["conflicts"], (s.name, body)
    finally:
        for s in sites:
            s.stop()


def test_a_hidden_conflict_loser_is_kept_for_its_retention_window_then_purged(tmp_path):
    fast = "[replication]\ngc_interval = 1\ngc_grace = 1\nconflict_retention = 6\n"
    sites = start_three(tmp_path, (fast, fast, fast))
    a, b, c = sites
    try:
        s3_client(a).create_bucket(Bucket="lose")
        s3_client(a).put_object(Bucket="lose", Key="ckpt", Body=b"v0")
        converge(sites)
        a.stop()
        s3_client(b).put_object(Bucket="lose", Key="ckpt", Body=b"B" * 300000)  # a misses it
        wait_for(lambda: versions(c, "lose", "ckpt")[0]["size"] == 300000, 10, "c to apply b's put")
        b.stop()
        a.start()
        s3_client(a).put_object(Bucket="lose", Key="ckpt", Body=b"A" * 1000)  # b misses this
        b.start()
        b_up = time.time()  # no site can know the race stable before b has both writes
        snap = converge(sites)
        assert snap["lose"]["ckpt"][1] == 1000  # the later write won

        # every site keeps the loser hidden, and it can be read back by id
        def loser_at(s):
            vs = versions(s, "lose", "ckpt")
            return [v for v in vs if v["role"] == "conflict"]
        wait_for(lambda: all(loser_at(s) for s in sites), 10, "the loser to be hidden everywhere")
        lid = loser_at(a)[0]["version_id"]
        r = s3_client(a).get_object(Bucket="lose", Key="ckpt", VersionId=lid)
        assert r["Body"].read() == b"B" * 300000

        wait_for(lambda: not any(loser_at(s) for s in sites), 40,
                 "the loser to be purged after its retention window")
        assert time.time() - b_up >= 5, "purged before its 6 s retention window ended"
        for s in sites:
            g = gc(s)
            assert g["losers_purged"] == 1 and g["loser_bytes_purged"] == 300000, (s.name, g)
            assert g["conflict_retention_s"] == 6
            assert [v["role"] for v in versions(s, "lose", "ckpt")] == ["current"]
        try:
            s3_client(a).get_object(Bucket="lose", Key="ckpt", VersionId=lid)
            raise AssertionError("the purged loser is still readable")
        except Exception as e:  # noqa: BLE001 - botocore's ClientError
            assert "NoSuchVersion" in str(e) or "404" in str(e), e
        assert converge(sites) == snap
    finally:
        for s in sites:
            s.stop()


def test_removing_a_dead_site_from_the_topology_lets_the_purges_go_on(tmp_path):
    sites = start_three(tmp_path)
    a, b, c = sites
    try:
        delete_while_c_is_down(sites, "gone", 4)  # c dies for good
        assert gc(a)["markers_purged"] == 0 and gc(b)["markers_purged"] == 0
        r = a.ctl("site", "remove", "c")
        assert r.returncode == 0, r.stderr
        wait_for(lambda: purged_everywhere((a, b), "gone", [f"k{i}" for i in range(4)]), 30,
                 "a and b to purge once c left the topology")
        for s in (a, b):
            g = gc(s)
            assert g["markers_purged"] == 4, (s.name, g)
            assert "c" not in (g["held_by"]["origin"], g["held_by"]["site"]), (s.name, g)
    finally:
        for s in sites:
            s.stop()


def test_sweeps_keep_their_interval_under_a_shifted_clock(make_site, monkeypatch):
    """Under libfaketime (what the lab's clock-skew faults load) a timed wait
    on the monotonic clock returned at once, and the GC thread swept some
    30,000 times a second. It sweeps once per interval either way."""
    lib = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"
    assert os.path.exists(lib), "faketime is a test dependency (scripts/install-deps.sh)"
    s = make_site()
    with open(s.config, "a") as f:
        f.write(GC_FAST)
    for skew in ("+300s", "-300s"):
        monkeypatch.setenv("LD_PRELOAD", lib)
        monkeypatch.setenv("FAKETIME", skew)
        monkeypatch.setenv("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        monkeypatch.setenv("FAKETIME_NO_CACHE", "1")
        s.start()
        monkeypatch.delenv("LD_PRELOAD")
        first = gc(s)["sweeps"]
        time.sleep(3)
        swept = gc(s)["sweeps"] - first
        assert 1 <= swept <= 5, (skew, swept)
        s.stop()
        s.logf.close()
