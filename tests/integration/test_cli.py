"""meridianctl's conflicts, object status and drive commands against live
sites: a three-site lab cluster (tests/multisite/lab, replication through
wanem so links can be cut) and single sites from conftest.

A real conflict is made the only way one happens: site a is cut off from
its peers, the same key is written at a and at b, and the partition heals.
Every wait is bounded; nothing depends on tight timing."""
import json
import os
import subprocess
import sys
import time

import boto3
import pytest
from botocore.config import Config

import conftest
from conftest import MERIDIANCTL, TOKEN, Site, http

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "multisite", "lab"))
import lab  # noqa: E402


def s3(site, access=lab.ACCESS_KEY, secret=lab.SECRET_KEY):
    return boto3.client(
        "s3", endpoint_url=site.s3, aws_access_key_id=access, aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                      connect_timeout=5, read_timeout=30))


def ctl(site, *args, token=lab.TOKEN):
    cmd = [MERIDIANCTL, "--endpoint", f"127.0.0.1:{site.admin_port}", "--token", token]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=30)


def ctl_json(site, *args):
    r = ctl(site, "--json", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def current_ids(doc):
    """{site: current version id or None} from `object status --json`."""
    out = {}
    for s in doc["sites"]:
        cur = s["object"]["current"] if s["answered"] else None
        out[s["site"]] = cur["version_id"] if cur else None
    return out


def wait_for(fn, what, timeout=30):
    """conftest.wait_for for an fn that returns (done, value): returns value,
    and a timeout names the last value seen."""
    seen = {}

    def pred():
        done, seen["last"] = fn()
        return done
    try:
        conftest.wait_for(pred, timeout=timeout, what=what)
    except AssertionError as e:
        raise AssertionError(f"{e}; last value: {seen.get('last')!r}") from None
    return seen["last"]


@pytest.fixture
def cluster(tmp_path):
    c = lab.Cluster({"sites": ["a", "b", "c"], "drives": 6}, str(tmp_path / "lab"), seed=3)
    try:
        c.start_all()
        yield c
    finally:  # also when a site fails to start: no process outlives the test
        c.close()


def test_conflict_is_listed_with_winner_and_retrievable_loser(cluster):
    a, b, c = (cluster.site(n) for n in "abc")
    ca, cb = s3(a), s3(b)
    ca.create_bucket(Bucket="race")
    ca.put_object(Bucket="race", Key="other", Body=b"not in conflict")
    wait_for(lambda: (set(current_ids(ctl_json(a, "object", "status", "race", "other"))
                          .values()) == {True} or None not in
                      current_ids(ctl_json(a, "object", "status", "race", "other")).values(),
                      None), "the key everywhere")
    for s in (a, b, c):
        assert ctl_json(s, "conflicts", "list")["conflicts"] == []

    # a is cut off; both a and b write the same key without seeing each other
    cluster.isolate("a")
    ca.put_object(Bucket="race", Key="photo.jpg", Body=b"written at a")
    time.sleep(0.05)  # b's write gets the later HLC stamp, so b's version wins
    cb.put_object(Bucket="race", Key="photo.jpg", Body=b"written at b, later")
    va = ca.head_object(Bucket="race", Key="photo.jpg")["ResponseMetadata"]["HTTPHeaders"][
        "x-meridian-version-id"]
    vb = cb.head_object(Bucket="race", Key="photo.jpg")["ResponseMetadata"]["HTTPHeaders"][
        "x-meridian-version-id"]
    assert va != vb

    # during the partition: every site answers (admin ports are not cut), a
    # holds its own version, and at b (the origin of b's version) a is PENDING
    def pending():
        doc = ctl_json(b, "object", "status", "race", "photo.jpg")
        ids = current_ids(doc)
        at_b = next(s["object"] for s in doc["sites"] if s["site"] == "b")
        repl = {p["peer"]: p["status"] for p in at_b["replication"]}
        return ids == {"a": va, "b": vb, "c": vb} and repl == {"a": "PENDING",
                                                              "c": "COMPLETED"}, (ids, repl)
    wait_for(pending, "b's version at b and c, pending for a")
    assert ctl_json(b, "object", "status", "race", "photo.jpg")["converged"] is False
    r = ctl(b, "object", "status", "race", "photo.jpg")
    assert r.returncode == 0, r.stderr
    assert "NOT CONVERGED" in r.stdout and "PENDING" in r.stdout
    assert ctl_json(a, "conflicts", "list")["conflicts"] == []  # a has not heard of b's yet

    cluster.rejoin("a")

    def converged():
        ids = current_ids(ctl_json(c, "object", "status", "race", "photo.jpg"))
        return len(set(ids.values())) == 1 and None not in ids.values(), ids
    ids = wait_for(converged, "one current version everywhere")
    assert ctl_json(b, "object", "status", "race", "photo.jpg")["converged"] is True
    winner = ids["a"]
    assert winner == vb, "the later write (larger HLC) wins among concurrent writes"
    loser = va
    r = ctl(a, "object", "status", "race", "photo.jpg")
    assert r.returncode == 0 and "converged: every site" in r.stdout, r.stdout

    for s in (a, b, c):
        doc = wait_for(lambda: (len(ctl_json(s, "conflicts", "list")["conflicts"]) == 1,
                                ctl_json(s, "conflicts", "list")), f"conflict logged at {s.name}")
        assert doc["site"] == s.name and doc["total"] == 1
        rec = doc["conflicts"][0]
        assert (rec["bucket"], rec["key"]) == ("race", "photo.jpg")
        assert rec["winner"]["version_id"] == winner and rec["winner"]["origin_name"] == "b"
        assert rec["loser"]["version_id"] == loser and rec["loser"]["origin_name"] == "a"
        assert rec["loser"]["kept"] == "hidden" and rec["loser_present"] is True
        # concurrent vectors: each names only its own site
        assert list(rec["winner"]["vv"]) == [str(b.id)] and list(rec["loser"]["vv"]) == [str(a.id)]
        assert rec["winner"]["hlc"] > rec["loser"]["hlc"]
        # the loser's bytes are still there, at every site
        got = s3(s).get_object(Bucket="race", Key="photo.jpg", VersionId=loser)
        assert got["Body"].read() == b"written at a"
        assert s3(s).get_object(Bucket="race", Key="photo.jpg")["Body"].read() == \
            b"written at b, later"
        # filters, show, the table and /metrics
        assert ctl_json(s, "conflicts", "list", "--key", "other")["conflicts"] == []
        assert len(ctl_json(s, "conflicts", "list", "--bucket", "race")["conflicts"]) == 1
        shown = ctl_json(s, "conflicts", "show", str(rec["id"]))
        assert shown["loser"]["version_id"] == loser
        t = ctl(s, "conflicts", "list")
        assert t.returncode == 0 and "race/photo.jpg" in t.stdout and f"{winner}@b" in t.stdout
        t = ctl(s, "conflicts", "show", str(rec["id"]))
        assert "--version-id " + loser in t.stdout and "hidden conflict version" in t.stdout
        st, _, body = http("GET", s.admin + "/metrics")
        assert st == 200 and "\nmeridian_conflicts_total 1\n" in body.decode()
        # the loser version appears in object status as a kept conflict
        obj = next(x["object"] for x in ctl_json(s, "object", "status", "race", "photo.jpg")
                   ["sites"] if x["site"] == s.name)
        assert {v["version_id"]: v["role"] for v in obj["versions"]} == {winner: "current",
                                                                        loser: "conflict"}

    # the log is durable: a restart keeps it
    cluster.stop("c")
    cluster.start("c")
    assert ctl_json(c, "conflicts", "list")["conflicts"][0]["loser"]["version_id"] == loser
    r = ctl(c, "conflicts", "show", "99")
    assert r.returncode == 2 and "NoSuchConflict" in r.stderr and len(r.stderr.splitlines()) == 1


def test_object_status_shows_a_site_that_does_not_answer(cluster):
    a, c = cluster.site("a"), cluster.site("c")
    s3(a).create_bucket(Bucket="obj")
    s3(a).put_object(Bucket="obj", Key="k", Body=b"v")
    s3(a).put_object(Bucket="obj", Key="k/under", Body=b"w")
    s3(a).put_object(Bucket="obj", Key="j/under", Body=b"x")
    # a key's versions only, never those of the keys it prefixes
    here = ctl_json(a, "object", "status", "obj", "k")["sites"][0]["object"]
    assert [v["version_id"] for v in here["versions"]] == [here["current"]["version_id"]]
    here = ctl_json(a, "object", "status", "obj", "j")["sites"][0]["object"]
    assert here["current"] is None and here["versions"] == []
    cluster.stop("c")
    r = ctl(a, "object", "status", "obj", "k")
    assert r.returncode == 1
    line = next(l for l in r.stdout.splitlines() if l.startswith("c "))
    assert "NO ANSWER" in line and "cannot reach the admin API" in line
    assert "NOT CONFIRMED: 2 of 3 sites answered" in r.stdout
    doc = json.loads(ctl(a, "--json", "object", "status", "obj", "k").stdout)
    assert [(s["site"], s["answered"]) for s in doc["sites"]] == [("a", True), ("b", True),
                                                                  ("c", False)]
    # a missing key is reported per site, not as an error
    r = ctl(a, "--json", "object", "status", "obj", "nosuch")
    assert json.loads(r.stdout)["sites"][0]["object"]["current"] is None
    cluster.start("c")
    r = ctl(a, "object", "status", "obj", "nosuch")
    assert r.returncode == 0 and "converged: the key is absent at every site" in r.stdout
    assert all(l.split()[1] == "absent" for l in r.stdout.splitlines()
               if l[:2] in ("a ", "b ", "c ")), r.stdout


def test_drive_list_shows_a_failed_drive_and_heal_rebuilds(tmp_path):
    site = Site(str(tmp_path / "a"))
    try:
        site.start()
        cl = s3(site, "AKIATEST", "testsecretkey")
        cl.create_bucket(Bucket="drv")
        body = os.urandom(1 << 20)  # striped over the drives, not inline
        cl.put_object(Bucket="drv", Key="before", Body=body)
        doc = json.loads(site.ctl("--json", "drive", "list").stdout)
        assert [d["state"] for d in doc["drives"]] == ["online"] * 6

        lost = site.drives[2]
        os.rename(lost, lost + ".lost")
        open(lost, "w").close()  # every open under it now fails
        for i in range(4):  # written with a shard missing: queued for heal
            cl.put_object(Bucket="drv", Key=f"during{i}", Body=body)

        def failed():
            d = json.loads(site.ctl("--json", "drive", "list").stdout)
            return d["drives"][2]["state"] == "failed", d["drives"][2]
        drive = wait_for(failed, "drive 2 failed", timeout=25)
        assert drive["error"]
        # the writes went on with 5 shards: flagged degraded, queued for heal
        d = json.loads(site.ctl("--json", "drive", "list").stdout)
        assert d["degraded_writes"] >= 4 and d["heal"]["queue"] >= 4, d
        pool = d["shard_file_pool"]  # every striped write took pre-created files or made its own
        assert pool["hits"] + pool["misses"] == 5 and pool["ready"] >= 0, pool
        # /admin/v1/status shows the drive lost at run time, once probed
        wait_for(lambda: (json.loads(site.ctl("--json", "status").stdout)["drives"][2]["state"]
                          == "offline", None), "status: drive 2 offline", timeout=25)
        r = site.ctl("drive", "list")
        assert r.returncode == 0
        row = next(l for l in r.stdout.splitlines() if l.startswith("2 "))
        assert "failed" in row and "error:" in row

        os.unlink(lost)
        os.rename(lost + ".lost", lost)
        r = site.ctl("drive", "heal")
        assert r.returncode == 0, r.stderr
        assert "heal started" in r.stdout and "heal: idle" in r.stdout
        d = json.loads(site.ctl("--json", "drive", "list").stdout)
        assert d["heal"]["running"] is False
        assert d["heal"]["objects_checked"] >= 5 and d["heal"]["shards_rebuilt"] >= 4, d["heal"]
        wait_for(lambda: (json.loads(site.ctl("--json", "drive", "list").stdout)["drives"][2]
                          ["state"] == "online", None), "drive 2 back online", timeout=25)
        for i in range(4):
            assert cl.get_object(Bucket="drv", Key=f"during{i}")["Body"].read() == body
    finally:
        site.stop()


def test_errors_help_and_usage(site):
    for args in (["conflicts", "list"], ["object", "status", "b", "k"], ["drive", "list"]):
        r = site.ctl(*args, token="wrong-token")
        assert r.returncode == 2, args
        assert r.stderr.startswith("meridianctl: Unauthorized (HTTP 401)") and \
            len(r.stderr.splitlines()) == 1, r.stderr
        r = subprocess.run([MERIDIANCTL, "--endpoint", "127.0.0.1:1", "--token", TOKEN] + args,
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 2 and "cannot reach the admin API at 127.0.0.1:1" in r.stderr
        assert len(r.stderr.splitlines()) == 1
    for args in (["conflicts"], ["conflicts", "show"], ["conflicts", "show", "x1"],
                 ["conflicts", "list", "--limit", "0"], ["object", "status", "b"],
                 ["drive", "fix"], ["drive", "heal", "--bogus"]):
        r = site.ctl(*args)
        assert r.returncode == 2 and r.stderr.startswith("meridianctl: "), (args, r.stderr)
    for cmd in ("status", "lag", "resync", "bandwidth", "conflicts", "object", "drive",
                "failover"):
        r = site.ctl(cmd, "--help")
        assert r.returncode == 0 and r.stdout.startswith("usage: meridianctl " + cmd), cmd
        assert site.ctl("help", cmd).stdout == r.stdout
    assert site.ctl("help", "nosuch").returncode == 2
    # an unknown peer name is refused by the site with a one-line message
    r = site.ctl("resync", "start", "--peer", "nosuch")
    assert r.returncode == 2 and "NoSuchPeer" in r.stderr and len(r.stderr.splitlines()) == 1
    # the admin API validates its own input too
    st, _, body = http("GET", site.admin + "/admin/v1/conflicts/abc",
                       headers={"Authorization": "Bearer " + TOKEN})
    assert st == 400 and json.loads(body)["error"] == "InvalidArgument"
    st, _, body = http("GET", site.admin + "/admin/v1/object?bucket=x",
                       headers={"Authorization": "Bearer " + TOKEN})
    assert st == 400
    st, _, _ = http("GET", site.admin + "/admin/v1/drives/heal",
                    headers={"Authorization": "Bearer " + TOKEN})
    assert st == 405


def test_failover_drain_and_undrain(cluster):
    a, b = cluster.site("a"), cluster.site("b")
    s3(a).create_bucket(Bucket="drn")
    s3(a).put_object(Bucket="drn", Key="k", Body=b"hello")
    wait_for(lambda: (None not in current_ids(ctl_json(a, "object", "status", "drn", "k"))
                      .values(), None), "k everywhere")
    # a drained site with no healthy peer serves locally: wait for one
    wait_for(lambda: (ctl_json(b, "failover", "show")["routing"]["nearest_peer"] is not None,
                      None), "a healthy peer for b")
    r = ctl(b, "failover")
    assert r.returncode == 0 and "SITE b: serving locally" in r.stdout, r.stdout
    r = ctl(b, "failover", "drain")
    assert r.returncode == 0 and "DRAINED" in r.stdout, r.stdout
    assert ctl_json(b, "failover", "show")["routing"]["drained"] is True
    got = s3(b).get_object(Bucket="drn", Key="k")
    assert got["Body"].read() == b"hello"
    assert got["ResponseMetadata"]["HTTPHeaders"]["x-meridian-served-by"] in ("a", "c")
    assert ctl_json(b, "failover", "show")["routing"]["proxied"]["drain"] >= 1
    assert ctl(b, "failover", "drain").returncode == 0  # idempotent
    r = ctl(b, "failover", "undrain")
    assert r.returncode == 0 and "serving locally" in r.stdout
    got = s3(b).get_object(Bucket="drn", Key="k")
    assert "x-meridian-served-by" not in got["ResponseMetadata"]["HTTPHeaders"]
    assert ctl(b, "failover", "sideways").returncode == 2
    r = ctl(b, "failover", "drain", token="wrong-token")
    assert r.returncode == 2 and "Unauthorized" in r.stderr
