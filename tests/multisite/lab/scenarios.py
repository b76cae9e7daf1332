"""Lab scenarios: a three-site cluster, a workload, one kind of fault, then
heal and the convergence check (checker.py). Each run is a function of its
seed (fault timing, keys, sizes, bodies); the wall-clock interleaving is
not, so a failing seed is replayed by running it again (usually several
times) and read from its kept history.

    /usr/bin/python3 tests/multisite/lab/scenarios.py [--seed 7] [--scale 2]
        [--avoid-known-bugs] [NAME ...]

| name       | keys   | fault during the run                                          |
|------------|--------|---------------------------------------------------------------|
| steady     | shared | none: concurrent writers at three sites                       |
| kill9      | owned  | SIGKILL a random site every 1.5-3 s, restart it 0.3-1 s later |
| partition  | shared | site c cut off from a and b for the whole run, then healed;   |
|            |        | small WAL retention, so c may fall past it (anti-entropy)     |
| flapping   | shared | link a-b cut and healed every ~1 s                            |
| skew_ahead | shared | b's clock 5 min ahead (libfaketime; see SKEW_S)               |
| skew_behind| shared | b's clock 5 min behind                                        |
| lost_drive | owned  | one drive lost at each site in turn, then restored (EC 4+2)   |
| slow_link  | shared | every link capped at 50 Mbit/s with 100 ms RTT; 1-4 MiB puts, |
|            |        | about twice what the links carry, so a backlog builds         |

The kill9 and lost_drive scenarios use owned keys (the strict durability
check: each key's final state is its client's last acknowledged op); the
others use shared keys (concurrent writes on the same keys at every site:
the final state is an acknowledged write nothing causally overwrote).

The workload is PUTs, overwrites, DELETEs, multipart uploads (5 MiB + up
to 300 kB in two parts, about 1 op in 70) and, in the shared scenarios,
GETs (which also tighten the check); objects of every size, inline and on
the drives, are overwritten and deleted.
"""
import argparse
import copy
import hashlib
import os
import random
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import checker  # noqa: E402
import lab  # noqa: E402
import workload  # noqa: E402

SITES = ["a", "b", "c"]
# Objects up to 128 KiB are inline: their bytes travel inside the WAL record.
# Larger ones live on the drives (EC 4+2) and follow their record as data.
SIZES_INLINE = (0, 1, 4096, 100_000)
SIZES_MIXED = SIZES_INLINE + (300_000, 1_100_000)  # one stripe is 4 x 256 KiB
# Replication requests carry their send time and a peer refuses one more than
# max_clock_skew (900 s by default) from its own clock (replicator/PROTOCOL.md
# section 2); the issue's +/-5 minutes is well inside it.
SKEW_S = 300
RTT = {"a-b": 20, "a-c": 60, "b-c": 40}
MIB = 1 << 20


class Ctx:
    """What a fault schedule gets: the cluster, its own rng, the stop flag
    of the workload and a tally of the faults it injected."""

    def __init__(self, cluster, rng, stop):
        self.cluster, self.rng, self.stop = cluster, rng, stop
        self.faults = {}

    def fault(self, kind, n=1):
        self.faults[kind] = self.faults.get(kind, 0) + n

    def sleep(self, lo, hi=None):
        """Sleeps a random time in [lo, hi]; True if the run is over."""
        return self.stop.wait(self.rng.uniform(lo, hi if hi is not None else lo))


class Scenario:
    def __init__(self, name, mode, duration, faults=None, spec=None, skew=None,
                 sizes=SIZES_MIXED, clients_per_site=2, think_s=0.0,
                 keys_per_client=6, shared_keys=12, converge_timeout=90,
                 large_fresh_keys=False):
        self.name, self.mode, self.duration = name, mode, duration
        self.faults = faults
        self.spec = {"sites": SITES, "rtt_ms": RTT, "jitter_ms": 1, "drives": 6, **(spec or {})}
        self.skew = skew or {}
        self.sizes = sizes
        self.clients_per_site = clients_per_site
        self.think_s = think_s
        self.keys_per_client = keys_per_client
        self.shared_keys = shared_keys
        self.converge_timeout = converge_timeout
        self.large_fresh_keys = large_fresh_keys


# ---- fault schedules -------------------------------------------------------
# Each runs while the clients do and returns when ctx.stop is set; the heal
# after the run (heal_everything) undoes whatever it left behind.

def kill9(ctx):
    c = ctx.cluster
    while not ctx.sleep(1.5, 3.0):
        name = ctx.rng.choice(SITES)
        c.kill(name)
        ctx.fault("kill9")
        ctx.stop.wait(ctx.rng.uniform(0.3, 1.0))
        c.start(name)


def partition_whole_run(ctx):
    ctx.cluster.isolate("c")
    ctx.fault("partition", 2)  # c-a and c-b
    fill_past_retention(ctx, "a", "c")
    ctx.stop.wait()


def fill_past_retention(ctx, at, behind):
    """PUTs 100 kB objects (inline: their bytes go into the WAL) to fresh
    keys at site `at` until it reports `behind` past WAL retention (needs
    resync), so the anti-entropy path runs however slow the machine is. The
    puts go into the history like any other op (client -1)."""
    site = ctx.cluster.site(at)
    s3 = workload.s3_client(site)
    w = ctx.workload
    n = 0
    while not ctx.stop.is_set() and n < 400:
        try:
            peers = site.status()["replication"]["peers"]
            if any(p["name"] == behind and p["send"]["needs_resync"] for p in peers):
                return
        except Exception:
            pass
        for _ in range(10):
            n += 1
            seed = 900_000_000 + n
            data = workload.body(seed, 100_000)
            rec = {"client": -1, "site": at, "key": f"fill/{n}", "op": "put", "seed": seed,
                   "size": len(data), "md5": hashlib.md5(data).hexdigest(), "t0": time.time()}
            try:
                s3.put_object(Bucket=w.bucket, Key=rec["key"], Body=data)
                rec["status"] = "ok"
            except Exception as e:
                rec["status"], rec["http"], rec["error"] = workload.classify_error(e)
            rec["t1"] = time.time()
            w._log(rec)


def flapping(ctx):
    c = ctx.cluster
    while True:
        c.partition("a", "b")
        ctx.fault("partition")
        stop = ctx.sleep(0.5, 1.5)
        c.heal("a", "b")
        if stop or ctx.sleep(0.5, 1.5):
            return


def lost_drive(ctx):
    c = ctx.cluster
    # spread the three losses over the run: lose, hold ~1/4 of the run, restore
    slot = ctx.duration / 3.0
    for name in SITES:
        i = ctx.rng.randrange(c.spec.get("drives", 6))
        if ctx.sleep(0.1 * slot, 0.2 * slot):
            return
        c.lose_drive(name, i)
        ctx.fault("lose_drive")
        ctx.sleep(0.5 * slot, 0.6 * slot)
        c.restore_drive(name, i)


def heal_everything(c):
    """After the run: every link healed, every site up, every drive back."""
    c.heal_all()
    for s in c.sites:
        if not s.alive():
            c.start(s.name)
        for i, d in enumerate(s.drives):
            if os.path.isfile(d) and os.path.isdir(d + ".lost"):
                c.restore_drive(s.name, i)


SCENARIOS = {s.name: s for s in [
    Scenario("steady", "shared", 10),
    Scenario("kill9", "owned", 14, kill9),
    Scenario("partition", "shared", 12, partition_whole_run,
             spec={"config": {"wal": {"segment_size": "1MiB", "retention_max": "16MiB"}}},
             # mostly 100 kB inline objects: their bytes fill the WAL past retention
             sizes=(0, 4096, 100_000, 100_000, 100_000, 300_000)),
    Scenario("flapping", "shared", 12, flapping),
    Scenario("skew_ahead", "shared", 10, skew={"b": SKEW_S}),
    Scenario("skew_behind", "shared", 10, skew={"b": -SKEW_S}),
    Scenario("lost_drive", "owned", 12, lost_drive),
    Scenario("slow_link", "shared", 12,
             spec={"rtt_ms": {"a-b": 100, "a-c": 100, "b-c": 100}, "rate": 6_250_000},
             sizes=(1 * MIB, 2 * MIB + 3, 3 * MIB + 1000, 4 * MIB), clients_per_site=1,
             think_s=0.15, shared_keys=6, converge_timeout=120),
]}


def run(name, seed, workdir, scale=1.0, verbose=True, **overrides):
    """Runs one scenario; returns the checker's report (plus "wall_s").
    overrides replace Scenario fields for this run (mode, sizes, ...)."""
    sc = copy.copy(SCENARIOS[name])
    for k, v in overrides.items():
        if not hasattr(sc, k):
            raise TypeError(f"no scenario field {k}")
        setattr(sc, k, v)
    t_start = time.time()
    rng = random.Random(f"{name}/{seed}")
    duration = sc.duration * scale
    with lab.Cluster(sc.spec, workdir, seed=seed) as c:
        for s in c.sites:
            c.start(s.name, skew_s=sc.skew.get(s.name))
        w = workload.Workload(c, seed, mode=sc.mode, keys_per_client=sc.keys_per_client,
                              shared_keys=sc.shared_keys, sizes=sc.sizes, think_s=sc.think_s,
                              large_fresh_keys=sc.large_fresh_keys,
                              weights={"put": 4, "delete": 1, "mpu": 0.1,
                                       "get": 2 if sc.mode == "shared" else 0})
        try:
            w.ensure_bucket(c.site("a"), wait_sites=c.sites, timeout=10)
        except AssertionError as e:  # the checker will say how far apart the sites are
            c.event("bucket.not_replicated", error=str(e))
        ctx = Ctx(c, rng, w.stop_flag)
        ctx.workload = w
        ctx.duration = duration
        if sc.skew:
            ctx.fault("skew", len(sc.skew))
        if sc.spec.get("rate"):
            ctx.fault("rate_cap", len(c.sites) * (len(c.sites) - 1))
        w.run(duration, clients_per_site=sc.clients_per_site,
              during=(lambda _c: sc.faults(ctx)) if sc.faults else None)
        heal_everything(c)
        t_heal = time.time()
        report = checker.check_cluster(c, w.history, t_heal, timeout=sc.converge_timeout,
                                       name=name, faults=ctx.faults)
    report["wall_s"] = round(time.time() - t_start, 1)
    if verbose:
        print(checker.format_report(report) + f"\n  wall time {report['wall_s']}s", flush=True)
    return report


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help=f"scenarios (default all): {', '.join(SCENARIOS)}")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies every run's length")
    ap.add_argument("--workdir", help="parent of the clusters' work dirs (default: a temp dir)")
    a = ap.parse_args(argv)
    parent = a.workdir or tempfile.mkdtemp(prefix="meridian-lab-")
    failed = []
    for name in a.names or list(SCENARIOS):
        r = run(name, a.seed, os.path.join(parent, f"{name}-{a.seed}"), scale=a.scale)
        if r["result"] != "PASS":
            failed.append(name)
    print("FAILED: " + ", ".join(failed) if failed else "all passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
