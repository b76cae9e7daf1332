"""Workload for the lab: real boto3 clients writing to the sites while the
fault schedule runs, and a history of every operation for the checker.

Clients. Each client thread is bound to one site and runs puts, overwrites,
deletes and (optionally) reads, one at a time, with a real boto3 client and
no retries. Every operation is logged, when it ends, to history.jsonl:

    {"client", "site", "key", "op": "put"|"delete"|"get", "seed", "size",
     "md5", "status": "ok"|"fail"|"unknown", "http", "error", "t0", "t1",
     "seen_md5", "seen_vid"}                       # the last two: reads only

status "ok" is an acknowledgement (200/204); "fail" is a definite refusal (a
4xx, or a connection that was never made, so nothing was sent); "unknown" is
an outcome the client cannot know (a 5xx, a timeout or a reset connection:
the site may or may not have applied it). t0/t1 are the client's wall clock
before sending and after the answer.

Bodies are generated from a seed, and every body starts with its seed
("<seed>"), so two puts never carry the same bytes (except bodies shorter
than their tag) and the checker can tell which put a site holds from its MD5.

Key spaces (mode):
  - "owned": each client has its own keys (c<client>/k<n>), so every key is
    written by one client at one site, sequentially. Its final state is
    exactly known: the client's last acknowledged op, or an op after it whose
    outcome is unknown. This is the durability check.
  - "shared": every client at every site writes the same keys (shared/k<n>):
    concurrent writers across sites, the active-active case. The final state
    is one of the writes that nothing causally overwrote (see checker.py).
  - "mixed": each operation picks one of the two at random.
  - "unique": every operation is a put to a key never used before
    (c<client>/u<n>): no overwrites and no deletes, only new objects.
With large_fresh_keys, a put of an object too big to be inline (it lives on
the drives) goes to a new key c<client>/big<n> in every mode, so such
objects are never overwritten or deleted (see the lab README, known bugs).

Multipart uploads (op "put" with "mpu": true in the history): Create, a
5 MiB part and a last part of 1 B - 300 kB, Complete; only Complete's answer
is the outcome (a failure before it means nothing became visible: "fail",
and the upload is aborted). The checker treats them like any put: the body's
MD5 identifies them. S3 versioning and ListObjectVersions are not
implemented by meridiand (buckets are unversioned), so there are no
versioned operations.
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
INLINE_MAX = 128 * 1024  # meridiand's default: larger objects live on the drives
MPU_PART = 5 * 1024 * 1024  # S3's minimum size of every part but the last


def body(seed, size):
    """Deterministic bytes for (seed, size); they start with "<seed>"."""
    tag = b"<%d>" % seed
    rng = random.Random(seed)
    n = max(size - len(tag), 0)
    block = rng.randbytes(min(n, 65536)) if n else b""
    if n > len(block):
        block = (block * (n // len(block) + 1))[:n]
    return (tag + block)[:size]


def _no_expect_on_empty_body(request, **_):
    """botocore 1.29 sends "Expect: 100-continue" on every PUT; when the
    server answers an empty-bodied one at once with its final status (which
    RFC 9110 allows), botocore keeps that status on the pooled connection and
    misparses the next Expect request's answer: a silent stall until the read
    timeout, then a retry (boto/botocore#3755). The header is not signed, so
    dropping it for empty bodies is safe."""
    if request.headers.get("Expect") and request.headers.get("Content-Length") in ("0", b"0"):
        del request.headers["Expect"]


def s3_client(site, read_timeout=10):
    """A boto3 client for site that makes exactly one attempt per call: a
    hidden retry would put two sends inside one history record."""
    cfg = botocore.config.Config(retries={"total_max_attempts": 1}, connect_timeout=3,
                                 read_timeout=read_timeout, s3={"addressing_style": "path"},
                                 max_pool_connections=4)
    c = boto3.session.Session().client(
        "s3", endpoint_url=site.s3, aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY, region_name="us-east-1", config=cfg)
    c.meta.events.register("before-send.s3", _no_expect_on_empty_body)
    return c


class MultipartNotCompleted(Exception):
    """A multipart upload failed before Complete was sent: nothing visible."""


def classify_error(exc):
    """(status, http, error) for an exception of a boto3 call."""
    if isinstance(exc, MultipartNotCompleted):
        _, code, err = classify_error(exc.__cause__)
        return "fail", code, "before Complete: " + str(err)
    if isinstance(exc, botocore.exceptions.ClientError):
        code = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500)
        # 4xx is a definite refusal; 5xx leaves the outcome unknown
        return ("fail" if code < 500 else "unknown"), code, exc.response["Error"]["Code"]
    if isinstance(exc, botocore.exceptions.EndpointConnectionError):
        # connect() failed (refused, or timed out): not a byte was sent.
        # ConnectTimeoutError is a subclass.
        return "fail", None, type(exc).__name__
    return "unknown", None, type(exc).__name__  # timeout or reset after sending


class Workload:
    """Clients for one round of a scenario. history (a list) may be passed in
    to continue an earlier round's; tag makes bodies unique across rounds."""

    def __init__(self, cluster, seed, mode="owned", keys_per_client=8, shared_keys=16,
                 sizes=(0, 1, 4096, 100_000, 300_000), weights=None, think_s=0.0,
                 bucket=BUCKET, history=None, read_timeout=10, large_fresh_keys=False):
        self.cluster = cluster
        self.seed = seed
        self.mode = mode
        self.keys_per_client = keys_per_client
        self.shared_keys = shared_keys
        self.sizes = sizes
        # op weights: put, delete, get, mpu (multipart put)
        self.weights = weights or {"put": 4, "delete": 1, "get": 0}
        self.think_s = think_s
        self.bucket = bucket
        self.read_timeout = read_timeout
        self.large_fresh_keys = large_fresh_keys
        self.lock = threading.Lock()
        self.history = history if history is not None else []
        self.path = f"{cluster.workdir}/history.jsonl"
        self.stop_flag = threading.Event()

    def ensure_bucket(self, site, wait_sites=None, timeout=30):
        """Creates the bucket at site; with wait_sites, waits until each of
        them has it (it replicates like any other record)."""
        c = s3_client(site)
        try:
            c.create_bucket(Bucket=self.bucket)
        except botocore.exceptions.ClientError as e:
            if e.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou",
                                                   "BucketAlreadyExists"):
                raise
        deadline = time.time() + timeout
        for s in wait_sites or []:
            cl = s3_client(s)
            while True:
                try:
                    cl.head_bucket(Bucket=self.bucket)
                    break
                except botocore.exceptions.ClientError:
                    if time.time() > deadline:
                        raise AssertionError(f"bucket {self.bucket} not at {s.name} "
                                             f"after {timeout}s")
                    time.sleep(0.05)

    def _log(self, rec):
        with self.lock:
            self.history.append(rec)
            with open(self.path, "a") as f:
                f.write(json.dumps(rec) + "\n")

    def _key(self, rng, cid, seq):
        mode = self.mode
        if mode == "unique":
            return f"c{cid}/u{seq}"
        if mode == "mixed":
            mode = rng.choice(["owned", "shared"])
        if mode == "owned":
            return f"c{cid}/k{rng.randrange(self.keys_per_client)}"
        return f"shared/k{rng.randrange(self.shared_keys)}"

    def _client(self, cid, site):
        rng = random.Random(self.seed * 1000 + cid)
        s3 = s3_client(site, self.read_timeout)
        ops = list(self.weights)
        weights = [self.weights[o] for o in ops]
        seq = 0
        while not self.stop_flag.is_set():
            seq += 1
            key = self._key(rng, cid, seq)
            op = "put" if self.mode == "unique" else rng.choices(ops, weights=weights)[0]
            mpu = op == "mpu"
            op = "put" if mpu else op
            bseed = self.seed * 10_000_000 + cid * 100_000 + seq
            size = rng.choice(self.sizes) if op == "put" else None
            if mpu:
                size = MPU_PART + rng.randint(1, 300_000)
            if op == "put" and size > INLINE_MAX and self.large_fresh_keys:
                key = f"c{cid}/big{seq}"
            rec = {"client": cid, "site": site.name, "key": key, "op": op, "seed": bseed,
                   "size": size, "t0": time.time()}
            if mpu:
                rec["mpu"] = True
            try:
                if mpu:
                    data = body(bseed, size)
                    rec["md5"] = hashlib.md5(data).hexdigest()
                    rec["t0"] = time.time()
                    rec["etag"] = self._multipart(s3, key, data)
                elif op == "put":
                    data = body(bseed, size)
                    rec["md5"] = hashlib.md5(data).hexdigest()
                    rec["t0"] = time.time()
                    r = s3.put_object(Bucket=self.bucket, Key=key, Body=data)
                    rec["etag"] = r["ETag"].strip('"')
                elif op == "delete":
                    s3.delete_object(Bucket=self.bucket, Key=key)
                else:
                    try:
                        r = s3.get_object(Bucket=self.bucket, Key=key)
                        got = r["Body"].read()
                        rec["seen_md5"] = hashlib.md5(got).hexdigest()
                        rec["seen_vid"] = r["ResponseMetadata"]["HTTPHeaders"].get(
                            "x-meridian-version-id")
                    except botocore.exceptions.ClientError as e:
                        if e.response["Error"]["Code"] not in ("NoSuchKey", "404"):
                            raise
                        rec["seen_md5"] = None
                rec["status"] = "ok"
            except Exception as e:
                rec["status"], rec["http"], rec["error"] = classify_error(e)
                if rec["status"] == "unknown" or rec["http"] is None:
                    time.sleep(0.2)
                    s3 = s3_client(site, self.read_timeout)
            rec["t1"] = time.time()
            self._log(rec)
            if self.think_s:
                self.stop_flag.wait(rng.uniform(0, 2 * self.think_s))

    def _multipart(self, s3, key, data):
        """One multipart upload of data (two parts); returns the ETag. A
        failure before Complete was sent is a definite "fail" (nothing is
        visible); the upload is then aborted, best effort."""
        up = None
        try:
            up = s3.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
            parts = []
            for n, off in enumerate(range(0, len(data), MPU_PART), start=1):
                r = s3.upload_part(Bucket=self.bucket, Key=key, UploadId=up, PartNumber=n,
                                   Body=data[off:off + MPU_PART])
                parts.append({"PartNumber": n, "ETag": r["ETag"]})
        except Exception as e:
            if up:
                try:
                    s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=up)
                except Exception:
                    pass
            raise MultipartNotCompleted(e) from e
        r = s3.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=up,
                                         MultipartUpload={"Parts": parts})
        return r["ETag"].strip('"')

    def run(self, duration_s, clients_per_site=2, during=None):
        """Runs the clients for duration_s; during(cluster) runs concurrently
        (the fault schedule) and is joined before returning. Client ids are
        numbered in site order, so a round with the same sites alive gives
        the same clients the same owned keys."""
        threads = []
        cid = 0
        for site in self.cluster.sites:
            for _ in range(clients_per_site):
                if site.alive():
                    threads.append(threading.Thread(target=self._client, args=(cid, site),
                                                    daemon=True))
                cid += 1
        for t in threads:
            t.start()
        faults = None
        if during:
            faults = threading.Thread(target=during, args=(self.cluster,), daemon=True)
            faults.start()
        self.stop_flag.wait(duration_s)
        self.stop_flag.set()
        for t in threads:
            t.join(60)
        if faults:
            faults.join(120)
        return self.history


def check_owned(history, cluster):
    """Durability check for "owned" key spaces at the site that took the
    writes (the single-site kill -9 loop). For every key, the state there
    must be the result of the last acknowledged op, or of an op whose outcome
    was unknown (in flight at a crash) that came after it. Returns a report
    dict; report["lost"] lists violations (empty: every acknowledged write
    survived). checker.py has the multi-site version."""
    by_key = {}
    for rec in sorted(history, key=lambda r: r["t0"]):
        if rec["op"] != "get":
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
