"""Convergence checker for the lab: after the faults stop, is every
acknowledged write where it must be, and do all sites hold the same thing?

Sequence (check_cluster):
  1. Crashes. A site that exited without the lab asking it to is a failure
     (cluster.crashed()).
  2. Quiescence, bounded. Poll GET /admin/v1/status at every site until, for
     every site and every peer, send.lag_records == 0, send.needs_resync is
     false and no anti-entropy run is in progress. Then take a snapshot of
     every site; if the snapshots differ, wait again (bounded). The time from
     the end of the faults ("heal") to quiescence and to identical snapshots
     is reported.
  3. Snapshot: for every bucket and key a site lists, a GET gives
     x-meridian-version-id, ETag, size and the body's SHA-256 and MD5.
  4. Identical state: every site has the same buckets, the same keys, and
     for each key the same version id, ETag, size and SHA-256.
  5. Acknowledged writes (evaluate, a pure function of history, process
     deaths and snapshots, so it is unit-tested on made-up histories).

The rule for acknowledged writes. Meridian is active-active: every site
accepts writes, concurrent versions of a key are resolved by the conflict
rule (conflict/conflict_decide.c: causality first, then the highest HLC).
So with concurrent writers the checker cannot demand "the last write by
wall clock wins"; it demands that the final current version at every site
be one of the writes (put or delete) that were acknowledged, or whose
outcome is unknown, and that nothing causally overwrote. A write c is
causally overwritten by an acknowledged write d when d was made at a site
that already held c:
  - c was acknowledged by site S (so S held c from c's ack on), and d was
    sent to S after c's ack (d.t0 > c.t1);
  - c's outcome is unknown, S was killed after c was sent (so c was
    applied before that death or never), and d was sent to S after the
    death;
  - a read at site T returned c's bytes (every put's bytes are unique) and
    d was sent to T after that read.
From then on S's current version ranks at or above c and d is stamped above
it, so c can never become current again. A key with no acknowledged write
may also be absent. In the owned mode (one client, one site per key) these
rules leave exactly the client's last acknowledged op, plus ops after it
whose outcome is unknown: that is the durability check. In the shared mode
they leave the acknowledged writes that raced with each other.

Violations (report["violations"]), per site and key:
  lost     the key is absent, but no delete could have made it so
  stale    the site holds a put that was causally overwritten
  refused  the site holds a put that was refused (4xx, or never sent)
  alien    the site holds bytes no put wrote
  phantom  a key no put in the history wrote
  corrupt  ETag differs from the MD5 of the bytes a GET returned (for a
           multipart object, whose ETag is not the MD5 of its bytes: from the
           ETag its Complete answered for those bytes)
Divergence between sites is report["diverged"].

A failing run keeps its history (history.jsonl: one JSON line per op),
the lab's event log (events.jsonl), the report and every site's daemon log
in run/lab-failures/<scenario>-seed<seed>-<time>/ (MERIDIAN_LAB_KEEP
overrides the parent directory).
"""
import hashlib
import json
import os
import shutil
import time

import botocore.exceptions

from lab import REPO
from workload import BUCKET, s3_client

DEATH_SIGNALS = ("SIGKILL", "SIGTERM")


# ---- reading the cluster ---------------------------------------------------

def load_events(workdir):
    try:
        with open(os.path.join(workdir, "events.jsonl")) as f:
            return [json.loads(line) for line in f if line.strip()]
    except OSError:
        return []


def deaths_from_events(events):
    """{site: [times the lab killed or stopped it]}."""
    out = {}
    for e in events:
        if e.get("event") == "site.signal" and e.get("signal") in DEATH_SIGNALS:
            out.setdefault(e["site"], []).append(e["t"])
    return out


def replication_state(cluster):
    """{site: [(peer, lag_records, needs_resync, ae_running)]} for the live
    sites; a site that does not answer maps to None."""
    out = {}
    for s in cluster.sites:
        if not s.alive():
            continue
        try:
            st = s.status()
        except Exception:  # timeout, reset: not answering yet
            st = None
        if st is None:
            out[s.name] = None
            continue
        out[s.name] = [(p["name"], p["send"]["lag_records"], p["send"]["needs_resync"],
                        p["anti_entropy"]["running"]) for p in st["replication"]["peers"]]
    return out


def is_quiescent(state):
    return all(peers is not None and all(lag == 0 and not rs and not ae
                                         for _, lag, rs, ae in peers)
               for peers in state.values())


def wait_quiescent(cluster, timeout=60, poll=0.1):
    """Waits until every live site's every peer has lag 0, no resync pending
    and no anti-entropy running. Returns (ok, last state)."""
    deadline = time.time() + timeout
    while True:
        state = replication_state(cluster)
        if state and is_quiescent(state):
            return True, state
        if time.time() >= deadline:
            return False, state
        time.sleep(poll)


def snapshot(site):
    """{bucket: {key: {"vid", "etag", "size", "sha256", "md5"}}} by GETting
    every key the site lists."""
    c = s3_client(site, read_timeout=60)
    out = {}
    for b in c.list_buckets().get("Buckets", []):
        objs = {}
        for page in c.get_paginator("list_objects_v2").paginate(Bucket=b["Name"]):
            for o in page.get("Contents", []):
                try:
                    r = c.get_object(Bucket=b["Name"], Key=o["Key"])
                except botocore.exceptions.ClientError as e:
                    if e.response["Error"]["Code"] in ("NoSuchKey", "404"):
                        continue  # deleted between list and get; compared later
                    raise
                sha, md5, n = hashlib.sha256(), hashlib.md5(), 0
                for chunk in r["Body"].iter_chunks(1 << 20):
                    sha.update(chunk)
                    md5.update(chunk)
                    n += len(chunk)
                objs[o["Key"]] = {
                    "vid": r["ResponseMetadata"]["HTTPHeaders"].get("x-meridian-version-id"),
                    "etag": r["ETag"].strip('"'), "size": n, "sha256": sha.hexdigest(),
                    "md5": md5.hexdigest()}
        out[b["Name"]] = objs
    return out


def diff_snapshots(snaps):
    """Differences between sites' snapshots ({site: snapshot}): a list of
    {"bucket", "key", "sites": {site: (vid, etag, size, sha256) or None}}."""
    out = []
    names = sorted(snaps)
    buckets = sorted(set().union(*[set(s) for s in snaps.values()]))
    for b in buckets:
        if any(b not in snaps[n] for n in names):
            out.append({"bucket": b, "key": None,
                        "sites": {n: (b in snaps[n]) for n in names}})
        keys = sorted(set().union(*[set(snaps[n].get(b, {})) for n in names]))
        for k in keys:
            vals = {}
            for n in names:
                e = snaps[n].get(b, {}).get(k)
                vals[n] = (e["vid"], e["etag"], e["size"], e["sha256"]) if e else None
            if len(set(vals.values())) > 1:
                out.append({"bucket": b, "key": k, "sites": vals})
    return out


# ---- the rule --------------------------------------------------------------

def _first_after(times, t):
    for x in sorted(times):
        if x >= t:
            return x
    return None


def key_candidates(ops, deaths):
    """For one key's ops (puts, deletes, gets of one key): returns (valid,
    superseded, absent_ok): the writes that may be current at the end, the
    ones that were causally overwritten, and whether "absent" is allowed."""
    writes = [o for o in ops if o["op"] in ("put", "delete") and o["status"] in ("ok", "unknown")]
    acked = [o for o in writes if o["status"] == "ok"]
    reads = [o for o in ops if o["op"] == "get" and o["status"] == "ok" and o.get("seen_md5")]
    md5_count = {}
    for o in ops:
        if o["op"] == "put":
            md5_count[o["md5"]] = md5_count.get(o["md5"], 0) + 1
    valid, superseded = [], []
    for c in writes:
        # (site, time): c was held by that site from that time on
        held = []
        if c["status"] == "ok":
            held.append((c["site"], c["t1"]))
        else:
            k = _first_after(deaths.get(c["site"], []), c["t0"])
            if k is not None:
                held.append((c["site"], k))
        if c["op"] == "put" and md5_count.get(c["md5"]) == 1:
            held += [(r["site"], r["t1"]) for r in reads if r["seen_md5"] == c["md5"]]
        by = next((d for d in acked if d is not c and
                   any(d["site"] == s and d["t0"] > t for s, t in held)), None)
        if by is None:
            valid.append(c)
        else:
            superseded.append((c, by))
    absent_ok = not acked or any(c["op"] == "delete" for c in valid)
    return valid, superseded, absent_ok


def _etag_wrong(e, ops):
    """A site's ETag does not match its bytes: a plain ETag must be their MD5;
    a multipart one ("<hex>-<parts>") must be what Complete answered for the
    upload of those bytes."""
    if "-" not in e["etag"]:
        return e["etag"] != e["md5"]
    mine = [o for o in ops if o.get("mpu") and o["md5"] == e["md5"] and o.get("etag")]
    return bool(mine) and all(o["etag"] != e["etag"] for o in mine)


def _brief(o):
    return {k: o.get(k) for k in ("client", "site", "op", "seed", "md5", "status", "t0", "t1")}


def evaluate(history, deaths, snaps, bucket=BUCKET):
    """Checks every site's final state against the history (see the module
    comment). snaps: {site: snapshot}. Returns (violations, keys checked,
    total number of writes allowed as a key's final state: divided by the
    keys, it says how tight the check was; 1.0 is exact)."""
    by_key = {}
    for o in history:
        by_key.setdefault(o["key"], []).append(o)
    violations = []
    n_valid = 0
    for key in sorted(by_key):
        ops = by_key[key]
        valid, superseded, absent_ok = key_candidates(ops, deaths)
        n_valid += len(valid)
        ok_md5 = {c["md5"] for c in valid if c["op"] == "put"}
        for site in sorted(snaps):
            e = snaps[site].get(bucket, {}).get(key)
            v = None
            if e is None:
                if not absent_ok:
                    v = {"kind": "lost", "expected": [_brief(c) for c in valid]}
            elif _etag_wrong(e, ops):
                v = {"kind": "corrupt", "etag": e["etag"], "md5": e["md5"]}
            elif e["md5"] not in ok_md5:
                old = [(c, by) for c, by in superseded if c["op"] == "put" and c["md5"] == e["md5"]]
                refused = [o for o in ops if o["op"] == "put" and o["status"] == "fail" and
                           o["md5"] == e["md5"]]
                if old:
                    v = {"kind": "stale", "held": _brief(old[0][0]),
                         "overwritten_by": _brief(old[0][1])}
                elif refused:
                    v = {"kind": "refused", "held": _brief(refused[0])}
                else:
                    v = {"kind": "alien", "md5": e["md5"]}
                v["expected"] = [_brief(c) for c in valid]
            if v:
                v.update(site=site, key=key, state=e)
                violations.append(v)
    for site in sorted(snaps):
        for key, e in snaps[site].get(bucket, {}).items():
            if key not in by_key:
                violations.append({"kind": "phantom", "site": site, "key": key, "state": e})
    return violations, len(by_key), n_valid


# ---- the whole check -------------------------------------------------------

def history_stats(history):
    w = [o for o in history if o["op"] in ("put", "delete")]
    return {"ops": len(history),
            "acked_writes": sum(o["status"] == "ok" for o in w),
            "acked_puts": sum(o["status"] == "ok" and o["op"] == "put" for o in w),
            "acked_deletes": sum(o["status"] == "ok" and o["op"] == "delete" for o in w),
            "acked_multipart": sum(o["status"] == "ok" and o.get("mpu", False) for o in w),
            "unknown": sum(o["status"] == "unknown" for o in history),
            "refused": sum(o["status"] == "fail" for o in history),
            "reads": sum(o["op"] == "get" and o["status"] == "ok" for o in history)}


def check_cluster(cluster, history, t_heal, timeout=120, name="lab", faults=None,
                  bucket=BUCKET, keep=True):
    """Runs the whole check (module comment) after the faults stopped at
    t_heal (wall clock). Returns the report; report["result"] is "PASS" or
    "FAIL", and a FAIL keeps the history and logs (report["kept"])."""
    report = {"scenario": name, "seed": cluster.seed, **history_stats(history),
              "faults": dict(faults or {}), "crashed": cluster.crashed()}
    deadline = time.time() + timeout
    quiet, state, snaps, diverged = False, None, {}, []
    t_quiet = t_same = None
    while not report["crashed"]:
        quiet, state = wait_quiescent(cluster, timeout=max(0.0, deadline - time.time()))
        if quiet and t_quiet is None:
            t_quiet = time.time() - t_heal
        try:
            snaps = {s.name: snapshot(s) for s in cluster.sites if s.alive()}
            diverged = diff_snapshots(snaps)
        except Exception as e:  # a site stopped answering mid-snapshot
            diverged = [{"error": repr(e)}]
        if quiet and not diverged:
            t_same = time.time() - t_heal
            break
        if time.time() >= deadline:
            break
        time.sleep(0.5)
        report["crashed"] = cluster.crashed()
    violations, keys, n_valid = evaluate(history, deaths_from_events(load_events(cluster.workdir)),
                                         snaps, bucket) if snaps else ([], 0, 0)
    report.update({
        "keys": keys, "sites_checked": sorted(snaps),
        "allowed_per_key": round(n_valid / keys, 2) if keys else None,
        "quiescent": quiet, "replication": state,
        "converge_s": round(t_same, 2) if t_same is not None else None,
        "quiesce_s": round(t_quiet, 2) if t_quiet is not None else None,
        "diverged": diverged[:20], "diverged_count": len(diverged),
        "violations": violations[:50], "violation_count": len(violations),
        "violation_kinds": _count(v["kind"] for v in violations),
        "anti_entropy_runs": _ae_runs(cluster)})
    ok = (not report["crashed"] and quiet and not diverged and not violations
          and len(snaps) == len(cluster.sites))
    report["result"] = "PASS" if ok else "FAIL"
    if not ok and keep:
        report["kept"] = keep_failure(cluster, report)
    return report


def _count(items):
    out = {}
    for i in items:
        out[i] = out.get(i, 0) + 1
    return out


def _ae_runs(cluster):
    n = 0
    for s in cluster.sites:
        try:
            st = s.status() if s.alive() else None
        except Exception:
            st = None
        for p in (st or {}).get("replication", {}).get("peers", []):
            n += p["anti_entropy"].get("runs", 0)
    return n


def keep_failure(cluster, report, dest=None):
    """Copies what a failing seed needs to be understood (history, events,
    report, daemon logs and configs, wanem log) out of the work dir."""
    parent = dest or os.environ.get("MERIDIAN_LAB_KEEP") or os.path.join(REPO, "run",
                                                                         "lab-failures")
    path = os.path.join(parent, f"{report['scenario']}-seed{report['seed']}-"
                                f"{time.strftime('%Y%m%d-%H%M%S')}")
    os.makedirs(path, exist_ok=True)
    for f in ("history.jsonl", "events.jsonl", "wanem.log"):
        src = os.path.join(cluster.workdir, f)
        if os.path.exists(src):
            shutil.copy(src, path)
    for s in cluster.sites:
        for src, dst in ((s.log, f"{s.name}.meridiand.log"), (s.config, f"{s.name}.site.ini")):
            if os.path.exists(src):
                shutil.copy(src, os.path.join(path, dst))
    with open(os.path.join(path, "report.json"), "w") as f:
        json.dump(report, f, indent=1, default=str)
    return path


def _secs(x):
    return "never" if x is None else f"{x}s"


def format_report(r):
    """A few lines for humans."""
    faults = ", ".join(f"{k}={v}" for k, v in sorted(r["faults"].items())) or "none"
    lines = [f"[{r['scenario']} seed={r['seed']}] {r['result']}: ops={r['ops']} "
             f"acked_writes={r['acked_writes']} (puts={r['acked_puts']} "
             f"deletes={r['acked_deletes']} multipart={r.get('acked_multipart', 0)}) "
             f"unknown={r['unknown']} refused={r['refused']} "
             f"reads={r['reads']} keys={r['keys']} (allowed final states per key: "
             f"{r['allowed_per_key']})",
             f"  faults: {faults}",
             f"  after heal: replication drained (lag 0 everywhere) in {_secs(r['quiesce_s'])}, "
             f"sites verified identical at {_secs(r['converge_s'])}; "
             f"anti-entropy runs={r['anti_entropy_runs']}",
             f"  lost/misplaced acked writes: {r['violation_count']} {r['violation_kinds']}; "
             f"diverged keys: {r['diverged_count']}; crashed: {r['crashed'] or 'none'}"]
    if r["result"] != "PASS":
        if not r["quiescent"]:
            lines.append("  never quiescent, so violations at lagging sites are expected; "
                         f"(site: [(peer, lag_records, needs_resync, anti-entropy running)]): "
                         f"{r['replication']}")
        for v in r["violations"][:5]:
            lines.append("  violation: " + json.dumps(v, default=str)[:600])
        for d in r["diverged"][:5]:
            lines.append("  diverged: " + json.dumps(d, default=str)[:600])
        if r.get("kept"):
            lines.append(f"  history and logs kept in {r['kept']}")
    return "\n".join(lines)
