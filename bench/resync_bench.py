#!/usr/bin/python3
"""bench/resync_bench.py - how fast anti-entropy brings a site level, what a
pass costs when nothing differs, and that only what differs is sent.

    bench/resync_bench.py [--build DIR] [--objects N] [--size BYTES]
                          [--big-mib M] [--json FILE]

Two `meridiand` sites on loopback (EC 4+2 over 6 data dirs each, same
disk), WALs capped at 16 MiB (1 MiB segments) so that a site down while
its peer writes more than that falls past WAL retention and can only be
brought level by an anti-entropy pass (replicator/PROTOCOL.md, resync).

  catch-up  the yardstick, on a second pair whose WAL keeps everything: b
            is stopped, mrdbench PUTs N objects of SIZE (default 10,000 x
            4 KiB) and M MiB of 1 MiB objects at a, b is started; the time
            until a sees b's lag at 0 (as in bench/repl_bench.py).
  resync    the same on the pair with small WALs, plus 24 MiB of inline
            filler (240 x 100 KiB), so b is past retention: the time from
            b's start until a's resync pass ends ("resynced") and b's lag is
            0 gives versions per second, against the catch-up's: a resync
            should not be much slower than streaming the same objects.
  in sync   a pass asked for when both sites are level (the periodic safety
            net): its time and the digest bytes and requests it exchanged.
  1% off    b is stopped again; 1% of the small keys are overwritten and
            10 deleted at a, plus the filler again; b is started: the
            versions the pass sends against the number that differ.
CPU seconds of both daemons are printed for each: on a shared machine they
are steadier than the wall clock.
"""
import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
sys.path.insert(0, os.path.join(REPO, "bench"))
from repl_bench import cpu_seconds, lag_of, mrdbench  # noqa: E402

WAL = "[wal]\nsegment_size = 1MiB\nretention_max = 16MiB\n"


def pair(Site, tmp, tag, extra):
    """Sites a and b of one pair, started, with extra appended to both configs."""
    a = Site(os.path.join(tmp, tag, "a"), name="a", site_id=1)
    b = Site(os.path.join(tmp, tag, "b"), name="b", site_id=2)
    a.add_peer(b)
    b.add_peer(a)
    for s in (a, b):
        with open(s.config, "a") as f:
            f.write(extra)
        s.start()
    return a, b


def put_objects(build, a, size, count, prefix):
    p = mrdbench(build, a, size, count=count, concurrency=32, prefix=prefix)
    _, err = p.communicate(timeout=1200)
    if p.returncode != 0:
        raise RuntimeError("mrdbench failed: " + err.decode())


def wait(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise RuntimeError("timed out waiting for " + what)


def passes(site, peer="b"):
    """[(mode, leaves_differ, versions_sent, ms, result, versions_skipped)] of
    site's passes to peer (versions_skipped "" from builds before summaries)."""
    return [(m[0], m[1], m[2], m[4], m[5], m[3]) for m in re.findall(
        r'event=repl\.sync\.done peer=' + peer + r' mode=(\w+) leaves_differ=(\d+) '
        r'versions_sent=(\d+) (?:versions_skipped=(\d+) )?ms=(\d+) result="([^"]*)"',
        site.read_log())]


def ae(site):
    return [p for p in site.status()["replication"]["peers"] if p["name"] == "b"][0]["anti_entropy"]


def sent_bytes(site):
    return [p for p in site.status()["replication"]["peers"] if p["name"] == "b"][0]["send"][
        "data_bytes"]


def past_retention(a, b, fill):
    """Writes the filler at a while b is down, until a marks b for resync."""
    fill()
    wait(lambda: [p for p in a.status()["replication"]["peers"]
                  if p["name"] == "b"][0]["send"]["needs_resync"], 60, "b to need a resync")


def resync(a, b, mode="resync"):
    """Starts b, waits for the pass of that mode to end and b to be level;
    returns (seconds, pass fields, CPU s of a, of b, data bytes sent)."""
    before = len(passes(a))
    a_cpu, sent0 = cpu_seconds(a), sent_bytes(a)
    t0 = time.monotonic()
    b.start()
    done = wait(lambda: [x for x in passes(a)[before:] if x[0] == mode], 1800, "the pass")[0]
    wait(lambda: lag_of(a, "b") == 0, 600, "b's lag to reach 0")
    secs = time.monotonic() - t0
    return secs, done, cpu_seconds(a) - a_cpu, cpu_seconds(b), sent_bytes(a) - sent0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.environ.get("MERIDIAN_BUILD_DIR",
                                                      os.path.join(REPO, "build")))
    ap.add_argument("--objects", type=int, default=10000)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--big-mib", type=int, default=256)
    ap.add_argument("--json")
    args = ap.parse_args()
    os.environ["MERIDIAN_BUILD_DIR"] = args.build
    from conftest import Site
    from test_replication import client, fill_past_retention
    tmp = tempfile.mkdtemp(prefix="resync_bench.")
    res = {"objects": args.objects, "size": args.size, "big_mib": args.big_mib}
    a = b = None
    try:
        nbytes = args.objects * args.size + (args.big_mib << 20)
        nvers = args.objects + args.big_mib

        # the yardstick: the same objects streamed from the WAL by a pair
        # whose WAL (default retention) keeps them while b is down
        a, b = pair(Site, tmp, "wal", "")
        b.stop()
        put_objects(args.build, a, args.size, args.objects, "r/s")
        put_objects(args.build, a, 1 << 20, args.big_mib, "r/b")
        a_cpu, sent0 = cpu_seconds(a), sent_bytes(a)
        t0 = time.monotonic()
        b.start()
        wait(lambda: lag_of(a, "b") == 0, 1800, "the WAL catch-up")
        secs = time.monotonic() - t0
        data = sent_bytes(a) - sent0
        stream = {"seconds": round(secs, 2), "versions_per_s": round(nvers / secs),
                  "MBps": round(nbytes / secs / 1e6, 1), "data_bytes": data,
                  "cpu_s": [round(cpu_seconds(a) - a_cpu, 2), round(cpu_seconds(b), 2)]}
        res["wal_catch_up"] = stream
        print(f"WAL catch-up: {nvers} versions, {nbytes / 1e6:.0f} MB in {secs:.2f} s: "
              f"{nvers / secs:.0f} versions/s, {nbytes / secs / 1e6:.1f} MB/s "
              f"(CPU s a {stream['cpu_s'][0]}, b {stream['cpu_s'][1]})")
        for s in (a, b):
            s.stop()

        a, b = pair(Site, tmp, "ae", WAL)
        ca = client(a)
        # resync of the same amount of new data, b past retention
        b.stop()
        put_objects(args.build, a, args.size, args.objects, "r/s")
        put_objects(args.build, a, 1 << 20, args.big_mib, "r/b")
        past_retention(a, b, lambda: fill_past_retention(ca, "rbench", key="fill1-"))
        secs, p, acpu, bcpu, data = resync(a, b)
        differ = nvers + 240
        nbytes += 240 * 100 * 1024
        full = {"seconds": round(secs, 2), "versions_sent": int(p[2]), "differ": differ,
                "leaves_differ": int(p[1]), "pass_ms": int(p[3]),
                "versions_per_s": round(differ / secs), "MBps": round(nbytes / secs / 1e6, 1),
                "data_bytes_sent": data,
                "ratio_to_wal_catch_up": round((differ / secs) / (nvers / stream["seconds"]), 2),
                "cpu_s": [round(acpu, 2), round(bcpu, 2)], "result": p[4]}
        res["resync"] = full
        print(f"resync: {differ} versions b lacked, {p[2]} sent, {nbytes / 1e6:.0f} MB, in "
              f"{secs:.2f} s: {differ / secs:.0f} versions/s, {nbytes / secs / 1e6:.1f} MB/s = "
              f"{full['ratio_to_wal_catch_up']:.2f} x the WAL catch-up's versions/s (CPU s a "
              f"{acpu:.2f}, b {bcpu:.2f}); \"{p[4]}\"")

        # a pass when level: what the safety net costs
        before = len(passes(a))
        a_cpu, b_cpu = cpu_seconds(a), cpu_seconds(b)
        t0 = time.monotonic()
        # a pass of the resync's wake (a push b asked for) may still run: 409
        out = wait(lambda: (lambda o: o if o.returncode == 0 or "Busy" not in o.stderr + o.stdout
                            else None)(a.ctl("resync", "start", "--peer", "b")), 60,
                   "a's running pass to b to end")
        if out.returncode != 0:
            raise RuntimeError(out.stdout + out.stderr)
        p = wait(lambda: [x for x in passes(a)[before:]
                          if x[0] == "check" and not x[4].startswith("pushed")], 600, "the check")[0]
        secs = time.monotonic() - t0
        st = ae(a)
        total = nvers + 240
        res["in_sync"] = {"seconds": round(secs, 2), "pass_ms": int(p[3]),
                          "versions_sent": int(p[2]), "digest_bytes": st["digest_bytes"],
                          "digest_rounds": st["digest_rounds"], "result": p[4],
                          "cpu_s": [round(cpu_seconds(a) - a_cpu, 2),
                                    round(cpu_seconds(b) - b_cpu, 2)]}
        print(f"in-sync pass over about {total} versions: {int(p[3])} ms, {p[2]} versions sent, "
              f"{st['digest_bytes']} digest bytes in {st['digest_rounds']} requests "
              f"(CPU s a {res['in_sync']['cpu_s'][0]}, b {res['in_sync']['cpu_s'][1]}); "
              f"\"{p[4]}\"")

        # 1% differs
        b.stop()
        n1 = max(1, args.objects // 100)
        blob = os.urandom(args.size)
        for i in range(n1):  # mrdbench keys: <prefix>%08d
            ca.put_object(Bucket="rbench", Key=f"r/s{i * 97 % args.objects:08d}", Body=blob)
        ndel = min(10, args.big_mib)  # deletes of keys a holds
        for i in range(ndel):
            ca.delete_object(Bucket="rbench", Key=f"r/b{i:08d}")
        past_retention(a, b, lambda: fill_past_retention(ca, "rbench", key="fill2-"))
        b_before = len(passes(b, "a"))
        secs, p, acpu, bcpu, data = resync(a, b)
        differ = n1 + ndel + 240
        # the other direction: b pushes what it holds in the differing
        # leaves, less what a would drop (the versions a overwrote or deleted)
        push = wait(lambda: [x for x in passes(b, "a")[b_before:] if x[0] in ("push", "check")],
                    60, "b's push to a")[0]
        res["one_percent"] = {"seconds": round(secs, 2), "differ": differ,
                              "versions_sent": int(p[2]), "versions_skipped": p[5],
                              "leaves_differ": int(p[1]), "pass_ms": int(p[3]),
                              "cpu_s": [round(acpu, 2), round(bcpu, 2)], "result": p[4],
                              "pushed_back": int(push[2]), "push_skipped": push[5]}
        print(f"1% off: {differ} versions differ ({n1} overwrites, {ndel} deletes, 240 filler), "
              f"{p[2]} sent ({p[5] or '?'} left out), {p[1]} digest leaves differed, "
              f"{secs:.2f} s from b's start (pass {int(p[3])} ms; CPU s a {acpu:.2f}, "
              f"b {bcpu:.2f}); \"{p[4]}\"; b pushed {push[2]} back ({push[5] or '?'} left out)")
    finally:
        for s in (a, b):
            if s:
                s.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
