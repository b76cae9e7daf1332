"""Topology changes at run time (replicator/PROTOCOL.md section 8) with real
sites and the real CLI: a fourth site added to a running three-site cluster
is learnt by every site, receives everything and replicates its own writes;
removed again, it is cut off and its peers release the WAL they kept for
it; the change survives restarts; a site removed while it was down is
told so even after every other site restarted without it in its file (the
topology remembers the removal); two admins racing at two sites cannot
split the cluster, and the loser is told.
"""
import json
import os
import threading
import time

from conftest import Site, http, TOKEN, wait_for
from test_replication import client, converge, three  # noqa: F401 (fixture)


def sites_of(site):
    st, _, body = http("GET", site.admin + "/admin/v1/sites",
                       headers={"Authorization": "Bearer " + TOKEN})
    assert st == 200, body
    return json.loads(body)


def same_topology(sites, converged=True):
    """The topology when every one of sites holds the same one (and, with
    converged, each sees every peer announce it), else None."""
    tops = [sites_of(s) for s in sites]
    same = all((t["epoch"], t["hash"]) == (tops[0]["epoch"], tops[0]["hash"]) for t in tops)
    return tops[0] if same and (not converged or all(t["converged"] for t in tops)) else None


def new_site(tmp_path, name, site_id, known):
    """A site whose config names the existing ones (it must reach at least one
    to learn the topology); the existing sites do not know it yet."""
    s = Site(str(tmp_path / name), name=name, site_id=site_id)
    for o in known:
        s.add_peer(o)
    return s


def test_add_a_site_then_remove_it(tmp_path, three):
    a, b, c = three
    ca = client(a)
    ca.create_bucket(Bucket="topo")
    for i in range(20):
        ca.put_object(Bucket="topo", Key=f"before/{i}", Body=os.urandom(1000 + i * 10_000))
    converge(three)

    d = new_site(tmp_path, "d", 4, three)
    d.start()
    try:
        # not in anyone's topology yet: the others refuse it
        time.sleep(1.5)
        assert "site id is not a configured peer" in a.read_log()
        before = sites_of(a)
        assert before["epoch"] == 0 and len(before["sites"]) == 3

        r = a.ctl("site", "add", "d", "--id", "4", "--replication", f"127.0.0.1:{d.repl_port}",
                  "--s3", f"127.0.0.1:{d.s3_port}")
        assert r.returncode == 0, r.stderr
        assert "d added at topology epoch 1; every site holds it" in r.stdout, r.stdout
        top = wait_for(lambda: same_topology([a, b, c, d]), what="every site on epoch 1")
        assert top["epoch"] == 1 and [s["name"] for s in top["sites"]] == ["a", "b", "c", "d"]
        # d learnt the full topology from its peers, and everything arrives at d
        snap = converge([a, b, c, d], timeout=60)
        assert len(snap["topo"]) == 20
        # d's own writes reach the others
        client(d).put_object(Bucket="topo", Key="from-d", Body=b"written at d")
        converge([a, b, c, d])
        assert client(b).get_object(Bucket="topo", Key="from-d")["Body"].read() == b"written at d"

        # the CLI's list, as a table and as JSON
        r = b.ctl("site", "list")
        assert r.returncode == 0 and "topology epoch 1" in r.stdout and "all sites hold it: yes" \
            in r.stdout, r.stdout
        r = c.ctl("--json", "site", "info", "d")
        assert r.returncode == 0 and json.loads(r.stdout)["id"] == 4, r.stdout

        # remove d, at another site
        r = b.ctl("site", "remove", "d")
        assert r.returncode == 0, r.stderr
        assert "d removed at topology epoch 2" in r.stdout, r.stdout
        top = wait_for(lambda: same_topology([a, b, c]), what="a, b, c agree on epoch 2")
        assert top["epoch"] == 2 and [s["name"] for s in top["sites"]] == ["a", "b", "c"]
        for s in (a, b, c):
            peers = [p["name"] for p in s.status()["replication"]["peers"]]
            assert peers == sorted(set(peers) - {"d"}) and "d" not in peers, peers
        # writes go on among a, b, c, and nothing is held back for d: lag
        # figures only for the remaining peers, all zero
        ca.put_object(Bucket="topo", Key="after-remove", Body=b"x")
        converge([a, b, c])
        wait_for(lambda: all(p["send"]["lag_records"] == 0
                             for p in a.status()["replication"]["peers"]), what="a's lag 0")
        assert "event=repl.peer.removed peer=d" in a.read_log()
        # d cannot talk to them any more, and is told why: its next Hello gets
        # 410 with the topology, which d adopts (it was cut off before it
        # could learn of the change by the usual announcements)
        wait_for(lambda: "event=repl.peer.told_removed peer=d" in a.read_log() + b.read_log() +
                 c.read_log(), what="a peer telling d it was removed")
        wait_for(lambda: "event=repl.topology.removed_self epoch=2" in d.read_log(),
                 what="d adopting the topology without itself")
        assert [s["name"] for s in sites_of(d)["sites"]] == ["a", "b", "c"]
        # and d leaves its load balancer's pool: not ready, saying why
        st, _, body = http("GET", d.admin + "/health/ready")
        assert st == 503 and b"removed from the cluster's topology at epoch 2" in body, body
        assert d.status()["removed_from_topology_epoch"] == 2
        assert a.status()["removed_from_topology_epoch"] == 0
        assert d.status()["replication"]["peers"] == [] or all(
            p["name"] not in ("a", "b", "c") for p in d.status()["replication"]["peers"])

        # the topology survives a restart, overriding the config's [peer.*]
        a.stop()
        a.start()
        top = sites_of(a)
        assert top["epoch"] == 2 and [s["name"] for s in top["sites"]] == ["a", "b", "c"]
        assert "event=repl.topology.loaded epoch=2" in a.read_log()
    finally:
        d.stop()


def test_stale_epoch_is_refused(three):
    a = three[0]
    st, _, body = http("POST", a.admin + "/admin/v1/sites?epoch=7&name=x&id=9&replication="
                       "127.0.0.1:1", headers={"Authorization": "Bearer " + TOKEN})
    assert st == 409 and b"TopologyChanged" in body and b"epoch 0" in body, body
    st, _, body = http("POST", a.admin + "/admin/v1/sites?epoch=0&name=b&id=9&replication="
                       "127.0.0.1:1", headers={"Authorization": "Bearer " + TOKEN})
    assert st == 409 and b"SiteExists" in body, body
    st, _, body = http("DELETE", a.admin + "/admin/v1/sites/a?epoch=0",
                       headers={"Authorization": "Bearer " + TOKEN})
    assert st == 400 and b"cannot remove itself" in body, body
    st, _, body = http("DELETE", a.admin + "/admin/v1/sites/zz?epoch=0",
                       headers={"Authorization": "Bearer " + TOKEN})
    assert st == 404, body
    r = a.ctl("site", "add", "x", "--id", "9")
    assert r.returncode == 2 and "--replication" in r.stderr
    r = a.ctl("site", "add", "x", "--id", "9", "--replication", "127.0.0.1:1", token="wrong" * 4)
    assert r.returncode == 2 and "401" in r.stderr


def test_racing_admins_cannot_split_the_cluster(tmp_path, three):
    """Two admins add two different sites at two sites at the same moment,
    both against epoch 0. Both changes make epoch 1; every site ends on the
    same one, and exactly the command whose change survived reports success."""
    a, b, c = three
    x = new_site(tmp_path, "x", 7, three)
    y = new_site(tmp_path, "y", 8, three)
    results = {}

    def add(at, site):
        results[site.name] = at.ctl("site", "add", site.name, "--id", str(site.site_id),
                                    "--replication", f"127.0.0.1:{site.repl_port}",
                                    "--wait", "8")

    ts = [threading.Thread(target=add, args=(a, x)), threading.Thread(target=add, args=(b, y))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    # x and y are never started: the topology may name sites that are down
    top = wait_for(lambda: same_topology([a, b, c], converged=False),
                   what="one topology everywhere")
    names = [s["name"] for s in top["sites"]]
    if top["epoch"] == 2:
        # the two commands did not overlap (the first change reached b before
        # b's command read the epoch): both changes, one after the other
        assert "x" in names and "y" in names
        assert results["x"].returncode == 0 and results["y"].returncode == 0
        return
    assert top["epoch"] == 1
    won = "x" if "x" in names else "y"
    lost = "y" if won == "x" else "x"
    assert lost not in names
    assert results[won].returncode == 0, results[won].stderr
    # the loser either saw the other change first (409 at its POST) or made
    # its own epoch 1 and then lost to the greater hash: told either way
    err = results[lost].stderr
    assert results[lost].returncode == 1 and ("superseded" in err or "TopologyChanged" in err), \
        (results[lost].stdout, err)


def test_two_changes_of_one_epoch_settle_on_one(tmp_path, three):
    """Two adds posted at the same moment at two sites, both against epoch 0
    (no command in between to serialise them): both sites accept, both make
    epoch 1, and every site ends on the one with the greater hash."""
    a, b, c = three
    codes = {}

    def post(at, name, sid):
        codes[name] = http("POST", at.admin + f"/admin/v1/sites?epoch=0&name={name}&id={sid}"
                           f"&replication=127.0.0.1:{sid}", headers={"Authorization":
                                                                    "Bearer " + TOKEN})[0]

    ts = [threading.Thread(target=post, args=(a, "x", 7)),
          threading.Thread(target=post, args=(b, "y", 8))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert sorted(codes.values()) in ([200, 200], [200, 409]), codes
    top = wait_for(lambda: same_topology([a, b, c], converged=False),
                   what="one topology everywhere")
    names = {s["name"] for s in top["sites"]}
    assert top["epoch"] == 1 and len(names & {"x", "y"}) == 1, top


def strip_peer(site, name):
    """Removes [peer.NAME] from site's config file, as an operator cleaning up
    after `site remove` would."""
    with open(site.config) as f:
        lines = f.read().splitlines()
    out, skip = [], False
    for line in lines:
        if line.startswith("["):
            skip = line == f"[peer.{name}]"
        if not skip:
            out.append(line)
    with open(site.config, "w") as f:
        f.write("\n".join(out) + "\n")


def removed_site_is_told_after_restarts(sites):
    """The last of sites (d) is removed while it is down; every remaining site
    then forgets it in its file and restarts, so none has d in memory any
    more. When d comes back its Hello must still get the 410 and the
    topology (the topology itself remembers the removal), and d must leave
    its load balancer's pool. Stops every site at the end."""
    *rest, d = sites
    a = rest[0]
    try:
        for s in sites:
            s.start()
        wait_for(lambda: all(x["self"] or x.get("connected") for s in sites
                             for x in sites_of(s)["sites"]), what="a full mesh")
        d.stop()
        r = a.ctl("site", "remove", "d")
        assert r.returncode == 0, r.stderr
        top = wait_for(lambda: same_topology(rest), what="the others agree on epoch 1")
        assert top["epoch"] == 1 and [s["name"] for s in top["sites"]] == [s.name for s in rest]
        assert [(x["name"], x["id"], x["removed_at_epoch"]) for x in top["removed"]] == \
            [("d", d.site_id, 1)], top
        assert "removed: d (id 4) at epoch 1" in a.ctl("site", "list").stdout
        for s in rest:
            s.stop()
            strip_peer(s, "d")
            s.start()
        logs = lambda: "".join(s.read_log() for s in rest)  # noqa: E731
        for s in rest:
            assert "event=repl.topology.loaded epoch=1" in s.read_log()
            assert "[peer.d]" not in open(s.config).read()
        assert "event=repl.peer.told_removed" not in logs()

        d.start(wait_ready=False)
        wait_for(lambda: "event=repl.topology.removed_self epoch=1" in d.read_log(),
                 what="d adopting the topology without itself")
        assert "event=repl.peer.told_removed peer=d" in logs()
        assert "claimed_site=4" not in logs()  # no 401 "not a configured peer"
        assert [s["name"] for s in sites_of(d)["sites"]] == [s.name for s in rest]
        st, _, body = http("GET", d.admin + "/health/ready")
        assert st == 503 and b"removed from the cluster's topology at epoch 1" in body, body
        assert d.status()["removed_from_topology_epoch"] == 1

        # a removed id is not given again: its peers keep that origin's
        # applied progress, which a wiped site reusing it would fall behind
        r = a.ctl("site", "add", "d2", "--id", "4", "--replication", "127.0.0.1:1",
                  "--tls-pin", "ab" * 32)
        assert r.returncode == 1 and "SiteIdRemoved" in r.stderr, (r.stdout, r.stderr)
    finally:
        for s in sites:
            s.stop()


def test_removed_site_is_told_after_its_peers_restart(tmp_path):
    from test_replication import mesh
    removed_site_is_told_after_restarts(mesh(tmp_path, names=("a", "b", "c", "d")))
