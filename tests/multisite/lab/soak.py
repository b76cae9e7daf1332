"""Soak: one three-site cluster, round after round of the workload under a
random mix of faults, with the convergence check (checker.py) after each
round. Stops at the first failing round and keeps its history and logs.

    /usr/bin/python3 tests/multisite/lab/soak.py --minutes 30 --seed 7
    make soak MINUTES=30 SEED=7 [SOAK_ARGS="--sizes mixed --round-s 90"]
    make soak SOAK_ARGS=--fast-gc   (GC every second: purges and ghost drops throughout)

Each round (--round-s seconds of workload):
  - clients at every site write a mixed key space: keys owned by one client
    and keys shared by all, puts, overwrites, deletes and reads;
  - a fault scheduler starts a new fault every 0.5-3 s (at most three at a
    time, at most one per site, link pair or drive) and undoes each after a
    random hold: SIGKILL then restart, SIGSTOP then SIGCONT, a partition
    between two sites, one site isolated, a link flapping, a link capped at
    50 Mbit/s with 100 ms RTT, a lost drive, a restart with the clock 4.5
    minutes ahead or behind (one site at a time: peers refuse requests more
    than 300 s off their own clock);
  - then everything is healed and the checker runs over the history of
    every round so far (the cluster keeps its state between rounds).

Large objects left by a round are deleted (at the site that wrote them,
recorded in the history) before the next round starts, while the cluster is
quiescent, so disk use and the checker's snapshot stay bounded.

The WAL keeps only 16 MiB, so long partitions and outages push peers past
retention and anti-entropy has to bring them level.

Objects go from 0 bytes to 1.1 MB: up to 128 KiB they are inline (their
bytes inside their WAL record), larger ones are erasure coded on the drives
and follow their record as data. Both are overwritten and deleted (an
overwrite of one on the drives before it reached a lagging peer used to
stall replication: README.md, bug 1); --fresh-large-keys writes the large
ones to fresh keys only, deleting them between rounds.

Every choice comes from --seed, so a failing seed replays the same fault
schedule and operation mix; thread interleaving differs from run to run.
"""
import argparse
import os
import random
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import checker  # noqa: E402
import lab  # noqa: E402
import scenarios  # noqa: E402
import workload  # noqa: E402

SITES = ["a", "b", "c"]
SPEC = {"sites": SITES, "rtt_ms": {"a-b": 20, "a-c": 60, "b-c": 40}, "jitter_ms": 2,
        "drives": 6, "config": {"wal": {"segment_size": "1MiB", "retention_max": "16MiB"}}}


class Scheduler:
    """Starts random faults and undoes them when their hold ends. Every
    fault holds a resource (a site, a pair, a drive slot, "skew") so two
    faults never fight over one thing."""

    KINDS = {"kill9": 3, "pause": 1, "partition": 3, "isolate": 2, "flap": 2, "slow": 2,
             "lose_drive": 2, "skew": 1}

    def __init__(self, cluster, rng, stop, max_active=3):
        self.c, self.rng, self.stop = cluster, rng, stop
        self.max_active = max_active
        self.active = []  # (due, resources, undo)
        self.faults = {}
        self.errors = []

    def held(self):
        return {r for _, res, _ in self.active for r in res}

    def start_one(self):
        rng, c = self.rng, self.c
        kind = rng.choices(list(self.KINDS), weights=list(self.KINDS.values()))[0]
        site = rng.choice(SITES)
        a, b = rng.sample(SITES, 2)
        pair = "pair:" + "".join(sorted((a, b)))
        hold = rng.uniform(0.5, 8.0)
        if kind in ("kill9", "pause"):
            res, hold = {"site:" + site}, rng.uniform(0.3, 3.0)
        elif kind == "skew":
            res = {"site:" + site, "skew"}
            hold = rng.uniform(5.0, 20.0)
        elif kind == "isolate":
            res = {"pair:" + "".join(sorted((site, p))) for p in SITES if p != site}
        elif kind == "lose_drive":
            res = {"drive:" + site}
        else:
            res = {pair}
        if res & self.held():
            return
        if kind == "kill9":
            c.kill(site)
            undo = lambda: c.start(site)  # noqa: E731
        elif kind == "pause":
            c.pause(site)
            undo = lambda: c.resume(site)  # noqa: E731
        elif kind == "skew":
            c.stop(site)
            c.start(site, skew_s=rng.choice([1, -1]) * scenarios.SKEW_S)

            def undo():
                c.stop(site)
                c.site(site).skew_s = 0
                c.start(site)
        elif kind == "partition":
            c.partition(a, b)
            undo = lambda: c.heal(a, b)  # noqa: E731
        elif kind == "isolate":
            c.isolate(site)
            undo = lambda: c.rejoin(site)  # noqa: E731
        elif kind == "flap":
            flag = threading.Event()

            def flapper():
                while not flag.is_set():
                    c.partition(a, b)
                    flag.wait(rng.uniform(0.3, 1.2))
                    c.heal(a, b)
                    flag.wait(rng.uniform(0.3, 1.2))
            t = threading.Thread(target=flapper, daemon=True)
            t.start()

            def undo():
                flag.set()
                t.join(5)
                c.heal(a, b)
        elif kind == "slow":
            c.set_link(a, b, rate=6_250_000, delay=50)
            one_way = c.rtt(a, b) / 2
            undo = lambda: c.set_link(a, b, rate=0, delay=one_way)  # noqa: E731
        else:  # lose_drive
            i = rng.randrange(len(c.site(site).drives))
            c.lose_drive(site, i)
            undo = lambda: c.restore_drive(site, i)  # noqa: E731
        self.faults[kind] = self.faults.get(kind, 0) + 1
        self.active.append((time.time() + hold, res, undo))

    def undo_due(self, everything=False):
        now = time.time()
        keep = []
        for due, res, undo in self.active:
            if everything or due <= now:
                try:
                    undo()
                except Exception as e:  # a site that will not restart: the round fails
                    self.errors.append(repr(e))
                    self.c.event("soak.undo_failed", error=repr(e))
            else:
                keep.append((due, res, undo))
        self.active = keep

    def run(self, _cluster=None):
        next_start = time.time() + self.rng.uniform(0.5, 3.0)
        while not self.stop.is_set():
            self.undo_due()
            if time.time() >= next_start:
                if len(self.active) < self.max_active:
                    self.start_one()
                next_start = time.time() + self.rng.uniform(0.5, 3.0)
            self.stop.wait(0.1)
        self.undo_due(everything=True)


def collect_big(c, w, history):
    """Deletes, at the site that wrote it, every large object an earlier
    round left (they go to fresh keys, so each is one acknowledged put),
    so disk use and the checker's snapshot stay bounded by one round. It
    runs while the cluster is quiescent, so no peer still needs their data;
    the deletes go into the history like any other op."""
    done = {o["key"] for o in history if o["op"] == "delete"}
    live = [o for o in history if "/big" in o["key"] and o["op"] == "put" and
            o["status"] == "ok" and o["key"] not in done]
    clients = {}
    for o in live:
        s3 = clients.setdefault(o["site"], workload.s3_client(c.site(o["site"])))
        rec = {"client": -1, "site": o["site"], "key": o["key"], "op": "delete", "seed": 0,
               "size": None, "t0": time.time()}
        try:
            s3.delete_object(Bucket=w.bucket, Key=o["key"])
            rec["status"] = "ok"
        except Exception as e:
            rec["status"], rec["http"], rec["error"] = workload.classify_error(e)
        rec["t1"] = time.time()
        w._log(rec)
    return len(live)


def heal(c):
    scenarios.heal_everything(c)
    for s in c.sites:
        if s.alive():
            c.resume(s.name)
    for s in c.sites:
        for p in c.sites:
            if p is not s:
                c.set_link(s.name, p.name, rate=0, delay=c.rtt(s.name, p.name) / 2)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--round-s", type=float, default=60, help="workload seconds per round")
    ap.add_argument("--fresh-large-keys", action="store_true",
                    help="never overwrite objects stored on the drives (collected between "
                         "rounds instead)")
    ap.add_argument("--workdir", help="cluster work dir (default: a new temp dir)")
    ap.add_argument("--fast-gc", action="store_true",
                    help="GC sweeps every second with a one-second grace ([replication] "
                         "gc_interval, gc_grace), so purges and ghost drops run throughout")
    a = ap.parse_args(argv)
    workdir = a.workdir or tempfile.mkdtemp(prefix=f"meridian-soak-{a.seed}-")
    rng = random.Random(a.seed)
    end = time.time() + a.minutes * 60
    history, totals, rnd = [], {}, 0
    print(f"soak seed={a.seed} minutes={a.minutes} round={a.round_s}s "
          f"fresh_large_keys={a.fresh_large_keys} fast_gc={a.fast_gc} "
          f"workdir={workdir}", flush=True)
    spec = dict(SPEC, config=dict(SPEC["config"]))
    if a.fast_gc:
        spec["config"]["replication"] = {"gc_interval": "1", "gc_grace": "1"}
    with lab.Cluster(spec, workdir, seed=a.seed) as c:
        c.start_all()
        workload.Workload(c, a.seed).ensure_bucket(c.site("a"), wait_sites=c.sites)
        while time.time() < end:
            rnd += 1
            w = workload.Workload(c, a.seed * 1000 + rnd, mode="mixed",
                                  sizes=scenarios.SIZES_MIXED, keys_per_client=6,
                                  shared_keys=16, history=history,
                                  weights={"put": 4, "delete": 1, "get": 2, "mpu": 0.1},
                                  large_fresh_keys=a.fresh_large_keys)
            sched = Scheduler(c, random.Random(rng.random()), w.stop_flag)
            if a.fresh_large_keys and collect_big(c, w, history):
                checker.wait_quiescent(c, timeout=60)
            c.event("soak.round", round=rnd)
            name = f"soak-round{rnd}"
            try:
                w.run(a.round_s, clients_per_site=2, during=sched.run)
                heal(c)
            except Exception as e:  # a site that does not come back up
                r = {"scenario": name, "seed": a.seed, "error": repr(e), "faults": sched.faults}
                print(f"soak FAILED in round {rnd} (seed {a.seed}): {e!r}; kept in "
                      f"{checker.keep_failure(c, r)}")
                return 1
            r = checker.check_cluster(c, history, time.time(), timeout=180, name=name,
                                      faults=sched.faults)
            if sched.errors and r["result"] == "PASS":
                r["result"], r["undo_errors"] = "FAIL", sched.errors
                r["kept"] = checker.keep_failure(c, r)
            for k, v in sched.faults.items():
                totals[k] = totals.get(k, 0) + v
            print(checker.format_report(r), flush=True)
            if r["result"] != "PASS":
                print(f"soak FAILED in round {rnd} (seed {a.seed}); faults so far {totals}")
                return 1
    print(f"soak passed: {rnd} rounds, {len(history)} ops, faults {totals}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
