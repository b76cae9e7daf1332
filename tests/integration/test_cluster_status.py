"""The whole-cluster view (`/admin/v1/status` "cluster", `meridianctl
status`): every site shows every link of the cluster, its own live and the
others' as they announced them in heartbeats, so the answer is the same
whichever site is asked; and the lag it shows is the lag injected."""
import signal

from conftest import wait_for
from test_replication import client, converge, three  # noqa: F401 (fixture)


def links(site):
    return {(l["from"], l["to"]): l for l in site.status()["cluster"]["links"]}


PAIRS = {(x, y) for x in "abc" for y in "abc" if x != y}


def test_every_site_shows_every_link_and_the_injected_lag(three):
    a, b, c = three
    ca = client(a)
    ca.create_bucket(Bucket="matrix")
    converge(three)
    # every site knows all six directed links, all up and level (degraded
    # is RTT jitter on a loaded machine: still up)
    for s in three:
        wait_for(lambda: set(links(s)) == PAIRS and all(
            l["connected"] and l["state"] in ("healthy", "degraded") and l["lag_records"] == 0
            for l in links(s).values()), what=f"six links up at {s.name}")
    view = links(b)
    assert view[("b", "a")]["age_ms"] == 0 and view[("a", "c")]["reported_by"] == "a"
    assert view[("a", "c")]["age_ms"] < 3000

    # block a -> c: c is stopped (SIGSTOP), a writes N objects: small ones
    # (inline in their records) and ones on the drives
    c.proc.send_signal(signal.SIGSTOP)
    n = 25
    sizes = [1000 + i for i in range(20)] + [300_000 + i for i in range(5)]
    for i, size in enumerate(sizes):
        ca.put_object(Bucket="matrix", Key=f"k{i}", Body=b"x" * size)
    # b sees, from a's heartbeats, exactly N records and their bytes behind
    # on a -> c, and a level link a -> b
    def lagging():
        v = links(b)
        return (v[("a", "c")]["lag_records"] == n and v[("a", "c")]["lag_bytes"] == sum(sizes)
                and v[("a", "b")]["lag_records"] == 0 and v)
    v = wait_for(lagging, what="b shows a->c behind by N records and their bytes")
    assert v[("a", "c")]["oldest_unreplicated_age_ms"] > 0
    assert links(a)[("a", "c")]["lag_records"] == n
    # b's WAL holds a's N writes as replicated applies, which b never sends
    # anyone: b owes c nothing
    wait_for(lambda: links(b)[("b", "c")]["lag_records"] == 0, what="b->c level")
    assert links(b)[("b", "c")]["lag_bytes"] == 0
    peer_c = [p for p in a.status()["replication"]["peers"] if p["name"] == "c"][0]
    assert peer_c["send"]["lag_bytes"] == sum(sizes) and not peer_c["send"]["lag_bytes_partial"]
    r = b.ctl("status")
    assert r.returncode == 0 and "CLUSTER LINKS" in r.stdout, r.stdout
    row = [ln for ln in r.stdout.splitlines() if ln.startswith("a->c ")]
    assert row and f" {n} " in row[0] and " MiB " in row[0], r.stdout

    # unblock: every site's view goes level again
    c.proc.send_signal(signal.SIGCONT)
    for s in three:
        wait_for(lambda: all(l["lag_records"] == 0 and l["lag_bytes"] == 0
                             for l in links(s).values()), what=f"level at {s.name}")
    converge(three)
