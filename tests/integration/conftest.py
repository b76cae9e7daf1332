"""Shared fixtures for the integration tests: real meridiand processes on
loopback with their own config, drives and ports under pytest's tmp_path.

The build tree comes from MERIDIAN_BUILD_DIR (default: build/ at the repo
root). Every process a fixture starts is stopped at teardown, and every wait
is bounded, so a broken daemon fails the test instead of hanging CI.
"""
import json
import os
import random
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("MERIDIAN_BUILD_DIR", os.path.join(REPO, "build"))
MERIDIAND = os.path.join(BUILD, "gateway", "meridiand")
MERIDIANCTL = os.path.join(BUILD, "cli", "meridianctl")
TOKEN = "test-admin-token-0123456789"
S3_KEY, S3_SECRET = "AKIATEST", "testsecretkey"  # the test sites' S3 user


def s3_client(site, key=S3_KEY, secret=S3_SECRET, **config):
    """A boto3 S3 client for a test site: path style, SigV4, one attempt (a
    retry would hide the first answer); config adds botocore Config options
    such as read_timeout."""
    import boto3
    from botocore.config import Config
    return boto3.client("s3", endpoint_url=site.s3, aws_access_key_id=key,
                        aws_secret_access_key=secret, region_name="us-east-1",
                        config=Config(retries={"max_attempts": 1}, signature_version="s3v4",
                                      s3={"addressing_style": "path"}, **config))


def s3cmd_command(site, tmp_path):
    """The s3cmd command line (a list) for the test user at site, its
    config written under tmp_path."""
    cfg = tmp_path / "s3cfg"
    host = f"127.0.0.1:{site.s3_port}"
    cfg.write_text(f"[default]\naccess_key = {S3_KEY}\nsecret_key = {S3_SECRET}\n"
                   f"host_base = {host}\nhost_bucket = {host}\nuse_https = False\n"
                   f"signature_v2 = False\nbucket_location = us-east-1\n")
    return ["s3cmd", "-c", str(cfg), "--no-progress"]


def err_code(excinfo):
    """The S3 error code of a pytest.raises(ClientError) result."""
    return excinfo.value.response["Error"]["Code"]


def err_status(excinfo):
    """The HTTP status of a pytest.raises(ClientError) result."""
    return excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]


_ports_given = set()


def free_port():
    """A free loopback TCP port for a listener, below the kernel's ephemeral
    range. A port from that range (what binding port 0 gives) can be taken
    as the local port of any outbound connection - a client, a proxy, the
    WAN emulator - while its site is stopped, and the site's restart then
    fails with 'Address already in use' (seen in a kill -9 scenario). Ports
    below the range are never handed to outbound connections. No port is
    given twice by one process, and under pytest-xdist each worker draws
    from its own slice of the range, so two workers never hand out the same
    port (one worker's stopped site would otherwise leave its port free for
    the other to take)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    lo, hi = (10000, low - 1) if low > 12000 else (low, 65535)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if worker.startswith("gw") and workers > 1:
        span = (hi - lo + 1) // workers
        lo += int(worker[2:]) * span
        hi = lo + span - 1
    for _ in range(1000):
        port = random.randint(lo, hi)
        if port in _ports_given:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _ports_given.add(port)
        return port
    raise RuntimeError(f"no free port in {lo}..{hi}")


def wait_for(pred, timeout=20, what="condition", step=0.2):
    """Polls pred until it returns something true (returned); fails the test
    after timeout seconds, saying what was awaited and pred's last value."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}: {last!r}")


def http(method, url, headers=None, body=None, timeout=5):
    """Returns (status, headers, body bytes); never raises on HTTP errors."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def sanitized(pid):
    """True when process pid runs under ASan or TSan: its peak RSS then holds
    the sanitizer's shadow memory and quarantine, so memory bounds mean
    nothing (a TSan or ASan build runs the tests for races and leaks)."""
    with open(f"/proc/{pid}/maps") as f:
        maps = f.read()
    return "libasan" in maps or "libtsan" in maps


def vm_hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM")


class Site:
    """One meridiand with a generated config."""

    def __init__(self, root, name="a", site_id=1, ndrives=6, k=4, m=2, peers=()):
        self.root = root
        self.name = name
        self.site_id = site_id
        self.s3_port, self.repl_port, self.admin_port = free_port(), free_port(), free_port()
        self.drives = [os.path.join(root, f"d{i}") for i in range(ndrives)]
        self.meta = os.path.join(root, "meta")
        self.config = os.path.join(root, "site.ini")
        self.log = os.path.join(root, "meridiand.log")
        self.binary = MERIDIAND  # another build's meridiand for upgrade tests
        self.proc = None
        lines = [
            "[site]", f"id = {site_id}", f"name = {name}",
            "[listen]", f"s3 = 127.0.0.1:{self.s3_port}",
            f"replication = 127.0.0.1:{self.repl_port}", f"admin = 127.0.0.1:{self.admin_port}",
            "[store]", "data_dirs = " + ", ".join(self.drives), f"ec_k = {k}", f"ec_m = {m}",
            f"meta_dir = {self.meta}",
            "[replication]", "secret = test-replication-secret",
            "[admin]", f"token = {TOKEN}",
            "[user.test]", "access_key = AKIATEST", "secret_key = testsecretkey",
        ]
        for (pname, pid, prepl) in peers:
            lines += [f"[peer.{pname}]", f"id = {pid}", f"replication = 127.0.0.1:{prepl}"]
        os.makedirs(root, exist_ok=True)
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")

    def add_peer(self, other):
        """Configures other as a replication peer (before start)."""
        with open(self.config, "a") as f:
            f.write(f"[peer.{other.name}]\nid = {other.site_id}\n"
                    f"replication = 127.0.0.1:{other.repl_port}\n")

    def status(self):
        st, _, body = http("GET", self.admin + "/admin/v1/status",
                           headers={"Authorization": "Bearer " + TOKEN})
        assert st == 200, body
        return json.loads(body)

    @property
    def s3(self):
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def admin(self):
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self, wait_ready=True):
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen([self.binary, "--config", self.config], stdout=self.logf,
                                     stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        want = "/health/ready" if wait_ready else "/health/live"
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"meridiand exited {self.proc.returncode}: {self.read_log()}")
            try:
                if http("GET", self.admin + want, timeout=1)[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("meridiand did not come up: " + self.read_log())

    def stop(self, sig=signal.SIGTERM, timeout=10):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.logf.close()
            self.check_sanitizer_reports()
        return self.proc.returncode if self.proc else None

    SANITIZER_REPORTS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")

    def check_sanitizer_reports(self):
        """Under ASan/UBSan (make test's asan step) a report in the log fails
        the test that stopped the daemon, even one printed at exit (a leak)
        after every request had succeeded."""
        log = self.read_log()
        for what in self.SANITIZER_REPORTS:
            i = log.find(what)
            if i >= 0:
                raise AssertionError(f"{self.name}: sanitizer report in {self.log}:\n"
                                     + log[max(0, i - 200):i + 3000])

    def read_log(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def ctl(self, *args, token=TOKEN):
        cmd = [MERIDIANCTL, "--endpoint", f"127.0.0.1:{self.admin_port}"]
        if token is not None:
            cmd += ["--token", token]
        return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=10)


@pytest.fixture
def site(tmp_path):
    s = Site(str(tmp_path / "a"))
    s.start()
    yield s
    s.stop()


@pytest.fixture
def make_site(tmp_path):
    made = []

    def make(name="a", **kw):
        s = Site(str(tmp_path / name), name=name, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()
