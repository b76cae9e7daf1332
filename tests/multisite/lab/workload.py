"""Workload and checker for the lab.

Workload: client threads, each bound to one site, run puts, overwrites and
deletes with real boto3 clients and log every operation with its outcome to
history.jsonl: (client, site, key, op, body seed, md5, status, error, start
and end times). Bodies are generated from a seed, so the checker can
recompute any acknowledged body without storing it.

Two key-space modes:
  - "owned": each client has its own keys and writes each key sequentially.
    After any crash, every key's state is exactly known: the result of the
    last acknowledged op, or of the one op that was in flight when the site
    died (it may or may not have been applied). This is the durability check.
  - "shared": all clients write the same keys at every site (the
    active-active case). Its checker needs replication and the version
    listing; see check_convergence (not yet available).
"""
import hashlib
import json
import random
import threading
import time

import boto3
import botocore.config
import botocore.exceptions

from lab import ACCESS_KEY, SECRET_KEY

BUCKET = "lab"


def body(seed, size):
    """Deterministic bytes for (seed, size)."""
    rng = random.Random(seed)
    block = rng.randbytes(min(size, 65536)) if size else b""
    if size <= len(block):
        return block[:size]
    reps = size // len(block) + 1
    return (block * reps)[:size]


def s3_client(site):
    cfg = botocore.config.Config(retries={"max_attempts": 1}, connect_timeout=3, read_timeout=10,
                                 s3={"addressing_style": "path"})
    return boto3.client("s3", endpoint_url=site.s3, aws_access_key_id=ACCESS_KEY,
                        aws_secret_access_key=SECRET_KEY, region_name="us-east-1", config=cfg)


class Workload:
    def __init__(self, cluster, seed, mode="owned", keys_per_client=8,
                 sizes=(0, 1, 4096, 100_000, 300_000)):
        self.cluster = cluster
        self.seed = seed
        self.mode = mode
        self.keys_per_client = keys_per_client
        self.sizes = sizes
        self.lock = threading.Lock()
        self.history = []
        self.path = f"{cluster.workdir}/history.jsonl"
        self.stop_flag = threading.Event()

    def ensure_bucket(self, site):
        c = s3_client(site)
        try:
            c.create_bucket(Bucket=BUCKET)
        except botocore.exceptions.ClientError as e:
            if e.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou",
                                                   "BucketAlreadyExists"):
                raise

    def _log(self, rec):
        with self.lock:
            self.history.append(rec)
            with open(self.path, "a") as f:
                f.write(json.dumps(rec) + "\n")

    def _client(self, cid, site):
        rng = random.Random(self.seed * 1000 + cid)
        s3 = s3_client(site)
        seq = 0
        while not self.stop_flag.is_set():
            if self.mode == "owned":
                key = f"c{cid}/k{rng.randrange(self.keys_per_client)}"
            else:
                key = f"shared/k{rng.randrange(self.keys_per_client)}"
            op = rng.choices(["put", "delete"], weights=[4, 1])[0]
            seq += 1
            bseed = self.seed * 10_000_000 + cid * 100_000 + seq
            size = rng.choice(self.sizes)
            rec = {"client": cid, "site": site.name, "key": key, "op": op, "seed": bseed,
                   "size": size if op == "put" else None, "t0": time.time()}
            try:
                if op == "put":
                    data = body(bseed, size)
                    rec["md5"] = hashlib.md5(data).hexdigest()
                    r = s3.put_object(Bucket=BUCKET, Key=key, Body=data)
                    rec["etag"] = r["ETag"].strip('"')
                else:
                    s3.delete_object(Bucket=BUCKET, Key=key)
                rec["status"] = "ok"
            except botocore.exceptions.ClientError as e:
                # 4xx is a definite refusal; 5xx leaves the outcome unknown
                code = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500)
                rec["status"] = "fail" if code < 500 else "unknown"
                rec["error"] = e.response["Error"]["Code"]
            except Exception as e:  # timeout, reset: outcome unknown
                rec["status"] = "unknown"
                rec["error"] = type(e).__name__
                time.sleep(0.2)
                s3 = s3_client(site)
            rec["t1"] = time.time()
            self._log(rec)

    def run(self, duration_s, clients_per_site=2, during=None):
        """Runs the clients for duration_s; during(cluster) runs concurrently
        (the fault schedule) and is joined before returning."""
        threads = []
        cid = 0
        for site in self.cluster.sites:
            if not site.alive():
                continue
            for _ in range(clients_per_site):
                t = threading.Thread(target=self._client, args=(cid, site), daemon=True)
                threads.append(t)
                cid += 1
        for t in threads:
            t.start()
        faults = None
        if during:
            faults = threading.Thread(target=during, args=(self.cluster,), daemon=True)
            faults.start()
        time.sleep(duration_s)
        self.stop_flag.set()
        for t in threads:
            t.join(30)
        if faults:
            faults.join(60)
        return self.history


def check_owned(history, cluster):
    """Durability check for "owned" key spaces. For every key, the state at
    the site that took its writes must be the result of the last
    acknowledged op, or of an op whose outcome was unknown (in flight at a
    crash) that came after it. Returns a report dict; report["lost"] lists
    violations (empty means every acknowledged write survived)."""
    by_key = {}
    for rec in sorted(history, key=lambda r: r["t0"]):
        by_key.setdefault((rec["site"], rec["key"]), []).append(rec)
    lost, checked = [], 0
    for (site_name, key), ops in by_key.items():
        s3 = s3_client(cluster.site(site_name))
        acked = [o for o in ops if o["status"] == "ok"]
        if not acked:
            continue
        last = acked[-1]
        allowed = [last] + [o for o in ops if o["status"] == "unknown" and o["t0"] >= last["t0"]]
        try:
            got = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            state = hashlib.md5(got).hexdigest()
        except botocore.exceptions.ClientError as e:
            if e.response["Error"]["Code"] not in ("NoSuchKey", "404"):
                raise
            state = None
        ok = any((o["op"] == "delete" and state is None) or
                 (o["op"] == "put" and state == o["md5"]) for o in allowed)
        checked += 1
        if not ok:
            lost.append({"site": site_name, "key": key, "state_md5": state,
                         "last_acked": last, "unknown_after": len(allowed) - 1})
    return {"ops": len(history), "acked": sum(o["status"] == "ok" for o in history),
            "unknown": sum(o["status"] == "unknown" for o in history),
            "keys_checked": checked, "lost": lost}
