"""bench/mrdbench against real servers: nginx for plain GETs (request counts
from nginx's access log, keep-alive reuse, 404 and corruption counted as
errors), a small Python server that checks every SigV4 signature with
botocore's signer (signed and UNSIGNED-PAYLOAD PUTs, GET, list, delete), and
meridiand for a PUT/GET/list/delete round trip. Asserts counts and
correctness, never speed.
"""
import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import BUILD, free_port, http

MRDBENCH = os.path.join(BUILD, "bench", "mrdbench")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

pytestmark = pytest.mark.skipif(not os.access(MRDBENCH, os.X_OK),
                                reason="bench/mrdbench not built")

LINE = re.compile(r"^mrdbench op=(\S+) size=\S+ conc=(\d+) ops=(\d+) secs=[\d.]+ ops/s=[\d.]+ "
                  r"MB/s=[\d.]+ MiB/s=[\d.]+ p50_ms=[\d.]+ p99_ms=[\d.]+ p999_ms=[\d.]+ "
                  r"max_ms=[\d.]+ errors=(\d+)")


def run(args, timeout=60):
    p = subprocess.run([MRDBENCH, "--quiet"] + args, capture_output=True, text=True,
                       timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def load(path):
    with open(path) as f:
        return json.load(f)


@pytest.fixture
def nginx(tmp_path):
    if not os.access(NGINX, os.X_OK):
        pytest.skip("nginx not installed (scripts/install-deps.sh --test)")
    root = tmp_path / "www"
    (root / "f").mkdir(parents=True)
    rc, _, err = run(["--gen-files", str(root / "f"), "--size", "64KiB", "--keys", "8"])
    assert rc == 0, err
    os.chmod(tmp_path, 0o755)
    subprocess.run(["chmod", "-R", "a+rX", str(root)], check=True)
    port = free_port()
    conf = tmp_path / "nginx.conf"
    log = tmp_path / "access.log"
    # pytest's tmp dirs are private to root, so workers must run as root too
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf.write_text(f"""{user}daemon off;
worker_processes 1;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log warn;
events {{ worker_connections 256; }}
http {{
    log_format c '$connection $status $request';
    access_log {log} c;
    keepalive_requests 100000;
    client_body_temp_path {tmp_path}/body;
    proxy_temp_path {tmp_path}/proxy;
    fastcgi_temp_path {tmp_path}/fcgi;
    uwsgi_temp_path {tmp_path}/uwsgi;
    scgi_temp_path {tmp_path}/scgi;
    server {{ listen 127.0.0.1:{port}; root {root}; }}
}}
""")
    proc = subprocess.Popen([NGINX, "-e", str(tmp_path / "error.log"), "-p", str(tmp_path),
                             "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            http("GET", url + "/probe", timeout=1)
            break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("nginx did not start")

    class N:
        pass

    n = N()
    n.url, n.root, n.log = url, root, log

    def lines():
        # nginx writes each line at the end of its request; give it a moment.
        time.sleep(0.2)
        with open(log) as f:
            return [ln.split() for ln in f if ln.strip() and ln.split()[3] != "/probe"]

    n.lines = lines
    yield n
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_get_count_exact_with_json_and_keepalive(nginx, tmp_path):
    out = tmp_path / "r.json"
    rc, stdout, err = run(["--endpoint", nginx.url, "--no-auth", "--op", "get", "--count", "300",
                           "--concurrency", "4", "--keys", "8", "--size", "64KiB",
                           "--path-template", "/f/%d", "--verify", "--json", str(out)])
    assert rc == 0, err
    m = LINE.match(stdout.splitlines()[0])
    assert m, stdout
    assert m.group(1) == "get" and m.group(2) == "4" and m.group(3) == "300" and m.group(4) == "0"
    j = load(out)
    assert j["ops"] == 300 and j["errors"] == 0 and j["first_error"] is None
    assert j["bytes"] == 300 * 65536
    lat = j["lat_ms"]
    assert 0 < lat["p50"] <= lat["p99"] <= lat["p999"] <= lat["max"]
    assert j["per_op"]["get"]["ops"] == 300
    got = [ln for ln in nginx.lines() if ln[3].startswith("/f/")]
    assert len(got) == 300  # --count N performs exactly N requests
    assert all(ln[1] == "200" for ln in got)
    # keep-alive: 4 slots, so at most 4 connections carried the 300 requests
    assert len({ln[0] for ln in got}) <= 4


def test_http_errors_are_counted_and_reported(nginx, tmp_path):
    out = tmp_path / "r.json"
    rc, stdout, _ = run(["--endpoint", nginx.url, "--no-auth", "--op", "get", "--count", "50",
                         "--concurrency", "2", "--keys", "5", "--path-template", "/missing/%d",
                         "--json", str(out)])
    assert rc == 3
    j = load(out)
    assert j["errors"] == 50 and j["ops"] == 0
    assert "HTTP 404" in j["first_error"] and "/missing/" in j["first_error"]
    assert 'first_error="HTTP 404' in stdout
    assert len([ln for ln in nginx.lines() if ln[1] == "404"]) == 50


def test_verify_catches_a_changed_byte(nginx, tmp_path):
    # One changed byte in every object, so whichever keys the run picks, each
    # GET must fail verification (a single changed file was missed by 16
    # random picks about one run in eight).
    for k in range(8):
        path = nginx.root / "f" / str(k)
        data = bytearray(path.read_bytes())
        data[40000 % len(data)] ^= 0xFF
        path.write_bytes(bytes(data))
    out = tmp_path / "r.json"
    rc, _, _ = run(["--endpoint", nginx.url, "--no-auth", "--op", "get", "--count", "16",
                    "--concurrency", "1", "--keys", "8", "--path-template", "/f/%d", "--verify",
                    "--json", str(out)])
    j = load(out)
    assert rc == 3 and j["errors"] == 16 and "verify" in j["first_error"]
    # without --verify the same bytes are simply counted
    rc, _, _ = run(["--endpoint", nginx.url, "--no-auth", "--op", "get", "--count", "16",
                    "--concurrency", "1", "--keys", "8", "--path-template", "/f/%d"])
    assert rc == 0


def test_ranged_get_verifies_the_window(nginx, tmp_path):
    out = tmp_path / "r.json"
    rc, _, err = run(["--endpoint", nginx.url, "--no-auth", "--op", "rget", "--count", "40",
                      "--size", "64KiB", "--range-size", "4KiB", "--keys", "8",
                      "--path-template", "/f/%d", "--verify", "--json", str(out)])
    assert rc == 0, err
    j = load(out)
    assert j["ops"] == 40 and j["bytes"] == 40 * 4096
    assert {ln[1] for ln in nginx.lines()} == {"206"}


# ---- SigV4: a server that checks each request with botocore's signer -----------

AK, SK = "AKIAMRDBENCH", "mrdbench-secret"


class SigV4Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen = []

    def log_message(self, *a):
        pass

    def _check(self, body):
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        m = re.match(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/s3/aws4_request, ?"
                     r"SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$",
                     self.headers.get("Authorization", ""))
        if not m or m.group(1) != AK:
            return "no or malformed Authorization"
        signed = m.group(4).split(";")
        missing = [h for h in signed if self.headers.get(h) is None]
        if missing:
            return f"signed headers not sent: {missing}"
        req = AWSRequest(method=self.command, url="http://" + self.headers["Host"] + self.path,
                         headers={h: self.headers[h] for h in signed}, data=body)
        req.context["timestamp"] = self.headers["X-Amz-Date"]
        auth = S3SigV4Auth(Credentials(AK, SK), "s3", m.group(3))
        sig = auth.signature(auth.string_to_sign(req, auth.canonical_request(req)), req)
        if sig != m.group(5):
            return "signature mismatch"
        sha = self.headers.get("x-amz-content-sha256")
        if sha and sha != "UNSIGNED-PAYLOAD" and sha != hashlib.sha256(body).hexdigest():
            return "payload hash mismatch"
        return None

    def _handle(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        problem = self._check(body)
        SigV4Handler.seen.append((self.command, self.path, problem,
                                  self.headers.get("x-amz-content-sha256"), len(body)))
        out = b"" if problem is None else problem.encode()
        if problem is None and self.command == "GET" and "list-type" not in self.path:
            out = b"x" * 1000
        self.send_response(200 if problem is None else 403)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_PUT = do_DELETE = do_POST = _handle


@pytest.fixture
def sigv4_server():
    pytest.importorskip("botocore")
    SigV4Handler.seen = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), SigV4Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize("unsigned", [False, True])
def test_sigv4_put_is_signed_correctly(sigv4_server, unsigned):
    args = ["--endpoint", sigv4_server, "--access-key", AK, "--secret-key", SK, "--op", "put",
            "--count", "6", "--concurrency", "2", "--size", "3000:70000", "--prefix", "a b/"]
    rc, out, err = run(args + (["--unsigned-payload"] if unsigned else []))
    assert rc == 0, out + err
    puts = [s for s in SigV4Handler.seen if s[0] == "PUT"]
    assert len(puts) == 6 and all(p[2] is None for p in puts), SigV4Handler.seen
    assert all(3000 <= p[4] <= 70000 for p in puts)
    assert all(p[1].startswith("/mrdbench/a%20b/") for p in puts)
    if unsigned:
        assert {p[3] for p in puts} == {"UNSIGNED-PAYLOAD"}
    else:
        assert all(re.fullmatch(r"[0-9a-f]{64}", p[3]) for p in puts)


def test_sigv4_get_list_delete_are_signed_correctly(sigv4_server):
    base = ["--endpoint", sigv4_server, "--access-key", AK, "--secret-key", SK, "--no-prepare"]
    assert run(base + ["--op", "get", "--count", "5", "--keys", "3"])[0] == 0
    assert run(base + ["--op", "list", "--count", "2", "--prefix", "p/q"])[0] == 0
    assert run(base + ["--op", "delete", "--count", "4"])[0] == 0
    methods = [s[0] for s in SigV4Handler.seen]
    assert methods.count("GET") == 7 and methods.count("DELETE") == 4
    assert all(s[2] is None for s in SigV4Handler.seen), SigV4Handler.seen
    assert any("prefix=p%2Fq" in s[1] for s in SigV4Handler.seen)
    # a wrong secret must be caught by the same check (the test can fail)
    rc, out, _ = run(["--endpoint", sigv4_server, "--access-key", AK, "--secret-key", "wrong",
                      "--op", "put", "--count", "1", "--concurrency", "1"])
    assert rc == 3 and "HTTP 403" in out and "signature mismatch" in out


# ---- meridiand --------------------------------------------------------------------


def test_meridiand_put_get_list_delete(site, tmp_path):
    code = http("GET", site.s3 + "/")[0]
    if code == 501:
        pytest.skip("S3 API not available in this build")
    base = ["--endpoint", site.s3, "--access-key", "AKIATEST", "--secret-key", "testsecretkey",
            "--prefix", "mb/"]
    out = tmp_path / "put.json"
    rc, stdout, err = run(base + ["--create-bucket", "--op", "put", "--count", "20",
                                  "--concurrency", "4", "--size", "100KiB", "--json", str(out)])
    assert rc == 0, stdout + err
    assert load(out)["ops"] == 20
    out = tmp_path / "get.json"
    rc, stdout, err = run(base + ["--op", "get", "--no-prepare", "--count", "30", "--keys", "10",
                                  "--concurrency", "4", "--verify", "--json", str(out)])
    assert rc == 0, stdout + err
    j = load(out)
    assert j["ops"] == 30 and j["bytes"] == 30 * 102400
    rc, stdout, err = run(base + ["--op", "rget", "--no-prepare", "--count", "10", "--keys", "10",
                                  "--size", "100KiB", "--range-size", "10KiB", "--verify"])
    assert rc == 0, stdout + err
    rc, stdout, err = run(base + ["--op", "put", "--unsigned-payload", "--count", "5",
                                  "--keys", "10", "--size", "1MiB"])
    assert rc == 0, stdout + err
    rc, stdout, err = run(base + ["--op", "list", "--count", "3", "--concurrency", "1"])
    assert rc == 0, stdout + err
    # --key-start numbers fresh keys from there; --list-all walks every page
    rc, stdout, err = run(base + ["--op", "put", "--count", "3", "--key-start", "100",
                                  "--size", "10"])
    assert rc == 0, stdout + err
    out = tmp_path / "walk.json"
    rc, stdout, err = run(base + ["--op", "list", "--list-all", "--list-max", "7", "--count", "1",
                                  "--concurrency", "1", "--json", str(out)])
    assert rc == 0, stdout + err
    j = load(out)
    assert (j["keys_listed"], j["ops"], j["walks"]) == (23, 4, 1), j
    assert "keys=23 " in stdout
    rc, stdout, err = run(base + ["--op", "get", "--no-prepare", "--key-start", "100", "--keys",
                                  "3", "--count", "6", "--verify", "--concurrency", "2"])
    assert rc == 0 and "ops=6 " in stdout, stdout + err
    out = tmp_path / "del.json"
    rc, stdout, err = run(base + ["--op", "delete", "--no-prepare", "--keys", "10",
                                  "--concurrency", "2", "--json", str(out)])
    assert rc == 0, stdout + err
    assert load(out)["ops"] == 10
    # the deleted keys are gone: every GET is a counted error
    rc, stdout, _ = run(base + ["--op", "get", "--no-prepare", "--count", "4", "--keys", "10"])
    assert rc == 3 and "errors=4" in stdout and "HTTP 404" in stdout
