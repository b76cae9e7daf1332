"""The multi-site lab's own machinery against real daemons: topology through
wanem, crash detection, clock skew with libfaketime, a lost drive and a full
(tiny) drive. The convergence checker and the scenarios build on these."""
import os
import signal
import sys
import time

import pytest

from conftest import wait_for

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "multisite", "lab"))
import lab  # noqa: E402

SPEC = {"sites": ["a", "b", "c"], "rtt_ms": {"a-b": 20, "a-c": 60, "b-c": 40}, "drives": 6}


@pytest.fixture
def cluster(tmp_path):
    c = lab.Cluster(SPEC, str(tmp_path / "lab"), seed=1)
    yield c
    c.close()


def test_topology_routes_peers_through_wanem(cluster):
    cluster.start_all()
    a = cluster.site("a").status()
    wanem_ports = {name: int(cluster.wanem.stats(cluster.link("a", name))["listen"].split(":")[1])
                   for name in ("b", "c")}
    peers = {p["name"]: p for p in a["peers"]}
    assert set(peers) == {"b", "c"}
    for name in ("b", "c"):
        # site a talks to its peers only through its own wanem links
        assert peers[name]["replication"] == f"127.0.0.1:{wanem_ports[name]}"
        assert wanem_ports[name] != cluster.site(name).repl_port
    stats = cluster.wanem.stats(cluster.link("a", "c"))
    assert stats["ab.delay_ms"] == 30 and stats["ba.delay_ms"] == 30  # half of the 60 ms RTT


def test_crash_detection_and_restart(cluster):
    cluster.start_all()
    cluster.kill("c")  # the lab's own kill is not a crash
    assert cluster.crashed() == []
    os.kill(cluster.site("b").proc.pid, signal.SIGKILL)  # an outside death is
    cluster.site("b").proc.wait(5)
    assert cluster.crashed() == ["b"]
    cluster.start("b")
    cluster.start("c")
    assert cluster.crashed() == []
    events = open(os.path.join(cluster.workdir, "events.jsonl")).read()
    assert '"event": "site.signal", "site": "c", "signal": "SIGKILL"' in events


def test_clock_skew_with_libfaketime(cluster):
    cluster.start("a")
    cluster.start("b", skew_s=300)
    now_ms = time.time() * 1000
    a = cluster.site("a").status()["started_at_ms"]
    b = cluster.site("b").status()["started_at_ms"]
    assert abs(a - now_ms) < 10_000
    assert 290_000 < b - now_ms < 310_000  # b's wall clock is 5 minutes ahead


def test_lost_drive_is_offline_after_restart(cluster):
    cluster.start("a")
    cluster.stop("a")
    cluster.lose_drive("a", 3)
    cluster.start("a")
    drives = cluster.site("a").status()["drives"]
    assert [d["state"] for d in drives] == ["online"] * 3 + ["offline"] + ["online"] * 2
    cluster.stop("a")
    cluster.restore_drive("a", 3)
    cluster.start("a")
    assert all(d["state"] == "online" for d in cluster.site("a").status()["drives"])


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs drive needs root")
def test_small_drive_for_disk_full(cluster):
    assert cluster.small_drive("a", 0, size="4m")
    cluster.start("a")
    d0 = cluster.site("a").status()["drives"][0]
    assert d0["state"] == "online" and d0["total_bytes"] == 4 << 20


def wait_states(cluster, want, timeout=15):
    """Waits until every (observer, peer) pair in want has that state."""
    deadline = time.time() + timeout
    while True:
        seen = {}
        for obs in {o for o, _ in want}:
            st = cluster.site(obs).status()
            for p in st["peers"]:
                seen[(obs, p["name"])] = p
        if all(seen.get(k, {}).get("state") == v for k, v in want.items()):
            return seen
        if time.time() > deadline:
            raise AssertionError(f"wanted {want}, saw "
                                 f"{ {k: v.get('state') for k, v in seen.items()} }")
        time.sleep(0.2)


def test_peer_health_through_the_lab(cluster):
    cluster.start_all()
    names = [s.name for s in cluster.sites]
    pairs = [(o, p) for o in names for p in names if o != p]
    wait_states(cluster, {k: "healthy" for k in pairs})

    # the heartbeat RTT reflects each pair's emulated RTT (20/60/40 ms); an
    # average that a stall of the machine pushed up settles within seconds
    def rtt_near(o, p):
        want = cluster.rtt(o, p)
        try:
            peers = cluster.site(o).status()["peers"]
        except OSError:
            return False
        for info in peers:
            if info["name"] == p:
                return (want <= info["rtt_ms"] < want + 25 and info["connected"] is True
                        and info["last_heartbeat_age_ms"] < 3000)
        return False
    for o, p in pairs:
        wait_for(lambda o=o, p=p: rtt_near(o, p), 20, f"{o}'s RTT to {p} near the emulated one")
    # a partition between a and b: each sees the other down, c is unaffected
    cluster.partition("a", "b")
    wait_states(cluster, {("a", "b"): "down", ("b", "a"): "down", ("a", "c"): "healthy",
                          ("c", "b"): "healthy"})
    cluster.heal("a", "b")
    wait_states(cluster, {("a", "b"): "healthy", ("b", "a"): "healthy"})
    # a killed site is down for the others, and healthy again after restart
    cluster.kill("c")
    wait_states(cluster, {("a", "c"): "down", ("b", "c"): "down"})
    cluster.start("c")
    wait_states(cluster, {k: "healthy" for k in pairs})
    log = open(cluster.site("a").log).read()
    assert "event=peer.state peer=b peer_id=2 from=healthy" in log
    assert cluster.crashed() == []
