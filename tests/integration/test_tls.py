"""TLS: the S3 TLS listener ([listen] s3_tls) with real clients, and mutual
TLS between sites (ALPN h2, pinned certificates) with real meridiand
processes on loopback.

Certificates are made with the openssl CLI (and scripts/gen-site-certs.sh)
in the test's tmp dir. Every wait is bounded.
"""
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time

import boto3
import botocore
import pytest
from botocore.config import Config

from conftest import (MERIDIAND, REPO, TOKEN, Site, free_port, http, s3_client, sanitized,
                      vm_hwm_kib, wait_for)
from test_replication import converge

AWS = "/usr/bin/aws"
GEN = os.path.join(REPO, "scripts", "gen-site-certs.sh")


def sh(*cmd, **kw):
    return subprocess.run(list(cmd), check=True, capture_output=True, text=True, timeout=60, **kw)


def make_server_cert(d):
    """A throwaway CA and a server certificate for 127.0.0.1 / localhost."""
    os.makedirs(d, exist_ok=True)
    ca, cakey = os.path.join(d, "ca.crt"), os.path.join(d, "ca.key")
    crt, key = os.path.join(d, "s3.crt"), os.path.join(d, "s3.key")
    sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
       "-subj", "/CN=test-ca", "-keyout", cakey, "-out", ca)
    sh("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
       "-keyout", key, "-out", crt + ".csr")
    ext = os.path.join(d, "ext.cnf")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    sh("openssl", "x509", "-req", "-in", crt + ".csr", "-CA", ca, "-CAkey", cakey,
       "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", crt)
    return ca, crt, key


class TlsSite(Site):
    def enable_s3_tls(self, crt, key):
        self.tls_port = free_port()
        with open(self.config, "a") as f:
            f.write(f"[listen]\ns3_tls = 127.0.0.1:{self.tls_port}\n"
                    f"[s3]\ntls_cert = {crt}\ntls_key = {key}\n")

    @property
    def s3s(self):
        return f"https://127.0.0.1:{self.tls_port}"


@pytest.fixture(scope="module")
def tls_site(tmp_path_factory):
    root = tmp_path_factory.mktemp("tls")
    ca, crt, key = make_server_cert(str(root / "pki"))
    s = TlsSite(str(root / "a"))
    s.enable_s3_tls(crt, key)
    s.start()
    s.ca = ca
    yield s
    s.stop()


def served_cert(port):
    """SHA-256 pin of the certificate a new connection to port is given, and
    the connection (kept open)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10))
    return "sha256:" + hashlib.sha256(conn.getpeercert(binary_form=True)).hexdigest(), conn


def answers(conn):
    """True when conn still serves an HTTP request."""
    conn.sendall(b"HEAD / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    got = b""
    while b"\r\n\r\n" not in got:  # a HEAD answer is its head alone
        d = conn.recv(4096)
        if not d:
            return False
        got += d
    return got.startswith(b"HTTP/1.1 ")


def test_sighup_rotates_the_certificate(tmp_path):
    """SIGHUP reloads the S3 listener's certificate: new connections get the
    new one, a connection already up keeps working, and files that do not
    load leave the current certificate in place, with the reason logged."""
    _, crt1, key1 = make_server_cert(str(tmp_path / "pki1"))
    _, crt2, key2 = make_server_cert(str(tmp_path / "pki2"))
    live_crt, live_key = str(tmp_path / "live.crt"), str(tmp_path / "live.key")
    shutil.copy(crt1, live_crt)
    shutil.copy(key1, live_key)
    s = TlsSite(str(tmp_path / "a"))
    s.enable_s3_tls(live_crt, live_key)
    s.start()
    try:
        fp1, old = served_cert(s.tls_port)
        assert answers(old)
        shutil.copy(crt2, live_crt)
        shutil.copy(key2, live_key)
        s.proc.send_signal(signal.SIGHUP)
        fp2 = cert_sha256(crt2)
        wait_for(lambda: f"event=tls.reload ctx=s3 cert={fp2}" in s.read_log(), 10,
                 "the reload to be logged")
        assert fp2 != fp1 and served_cert(s.tls_port)[0] == fp2
        assert answers(old)  # made with the old certificate, still served
        # boto3 over the new certificate, verified against its CA
        c = s3client(s, s.s3s, str(tmp_path / "pki2" / "ca.crt"))
        c.create_bucket(Bucket="rotated")
        # a key that is not PEM: refused, logged, the certificate stays
        with open(live_key, "w") as f:
            f.write("not a key\n")
        s.proc.send_signal(signal.SIGHUP)
        log = wait_for(lambda: (lambda l: l if "event=tls.reload_failed ctx=s3" in l else None)(
            s.read_log()), 10, "the failed reload to be logged")
        assert "live.key: cannot load the private key" in log, log[-2000:]
        assert served_cert(s.tls_port)[0] == fp2
        assert s.proc.poll() is None
        c.head_bucket(Bucket="rotated")
    finally:
        s.stop()


def s3client(site, url, verify):
    return boto3.client(
        "s3", endpoint_url=url, aws_access_key_id="AKIATEST",
        aws_secret_access_key="testsecretkey", region_name="us-east-1", verify=verify,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                      connect_timeout=5, read_timeout=60))


def rand_file(path, size):
    with open(path, "wb") as f:
        f.write(os.urandom(size))
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_boto3_over_tls_verifies_and_round_trips(tls_site, tmp_path):
    c = s3client(tls_site, tls_site.s3s, tls_site.ca)
    c.create_bucket(Bucket="tlsboto")
    body = os.urandom(5 * 1024 * 1024 + 17)
    c.put_object(Bucket="tlsboto", Key="k", Body=body)
    got = c.get_object(Bucket="tlsboto", Key="k")["Body"].read()
    assert hashlib.sha256(got).digest() == hashlib.sha256(body).digest()
    # the plain listener serves the same data
    plain = s3client(tls_site, tls_site.s3, None)
    assert plain.get_object(Bucket="tlsboto", Key="k")["ContentLength"] == len(body)
    # without the CA, the certificate is not trusted by the client
    with pytest.raises(Exception) as e:
        s3client(tls_site, tls_site.s3s, True).list_buckets()
    assert "certificate" in str(e.value).lower() or "ssl" in str(e.value).lower()


def test_awscli_ca_bundle(tls_site, tmp_path):
    env = dict(os.environ, AWS_ACCESS_KEY_ID="AKIATEST", AWS_SECRET_ACCESS_KEY="testsecretkey",
               AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE="/dev/null")
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    digest = rand_file(src, 9 * 1024 * 1024 + 3)  # multipart with awscli's 8 MiB parts
    base = [AWS, "--endpoint-url", tls_site.s3s, "--ca-bundle", tls_site.ca]
    sh(*base, "s3", "mb", "s3://tlscli", env=env)
    sh(*base, "s3", "cp", src, "s3://tlscli/obj", env=env)
    sh(*base, "s3", "cp", "s3://tlscli/obj", dst, env=env)
    assert sha(dst) == digest
    out = sh(*base, "s3", "ls", "s3://tlscli", env=env).stdout
    assert "obj" in out


def curl(site, *args):
    return subprocess.run(
        ["curl", "-sS", "--fail-with-body", "--cacert", site.ca, "--aws-sigv4",
         "aws:amz:us-east-1:s3", "--user", "AKIATEST:testsecretkey",
         "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD", *args],
        capture_output=True, text=True, timeout=60)


def test_curl_sigv4_put_get_multi_mib(tls_site, tmp_path):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    digest = rand_file(src, 24 * 1024 * 1024 + 5)
    r = curl(tls_site, "-X", "PUT", tls_site.s3s + "/tlscurl")
    assert r.returncode == 0, r.stderr + r.stdout
    r = curl(tls_site, "-T", src, tls_site.s3s + "/tlscurl/big")
    assert r.returncode == 0, r.stderr + r.stdout
    r = curl(tls_site, "-o", dst, "-w", "%{http_version} %{ssl_verify_result}",
             tls_site.s3s + "/tlscurl/big")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1.1", "0"]  # ALPN picked HTTP/1.1; chain verified
    assert sha(dst) == digest
    # a ranged read over TLS
    r = curl(tls_site, "-r", "1000-1999", "-o", dst, tls_site.s3s + "/tlscurl/big")
    assert r.returncode == 0
    with open(src, "rb") as f:
        f.seek(1000)
        assert open(dst, "rb").read() == f.read(1000)


def tls_failures(site):
    return site.status()["s3_http"]["tls_handshake_failures"]


def test_plain_http_on_tls_port_fails_cleanly(tls_site):
    before = tls_failures(tls_site)
    # plain HTTP gets a plain-text 400 saying so (or, if the answer loses the
    # race with the close, a closed connection), never a hang
    try:
        st, _, body = http("GET", f"http://127.0.0.1:{tls_site.tls_port}/", timeout=5)
        assert st == 400 and b"speaks HTTPS" in body, (st, body)
    except (ConnectionError, OSError) as e:
        assert "timed out" not in str(e), e
    r = subprocess.run(["curl", "-sS", f"http://127.0.0.1:{tls_site.tls_port}/bucket/key"],
                       capture_output=True, text=True, timeout=10)
    assert "This port speaks HTTPS" in r.stdout, r.stdout + r.stderr
    # a client that only speaks TLS 1.1 or non-ECDHE/AEAD TLS 1.2 suites
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{tls_site.tls_port}",
                        "-tls1_2", "-cipher", "AES128-SHA"], input="", capture_output=True,
                       text=True, timeout=10)
    assert r.returncode != 0
    # a TCP connection that sends garbage and one that closes at once
    for payload in (b"\x16\x03\x01\x00\x05hello", b""):
        with socket.create_connection(("127.0.0.1", tls_site.tls_port), timeout=5) as s:
            try:  # the server may have closed already
                s.sendall(payload)
                s.shutdown(socket.SHUT_WR)
                s.recv(100)
            except OSError:
                pass
    wait_for(lambda: tls_failures(tls_site) >= before + 5, 5, "the failures to be counted")
    st = tls_site.status()["listen"]
    assert st["s3_tls"] == f"127.0.0.1:{tls_site.tls_port}" and st["replication_transport"] == "h2c"
    _, _, metrics = http("GET", tls_site.admin + "/metrics")
    assert re.search(rb'meridian_http_tls_failures_total\{listener="s3"\} [1-9]', metrics)
    log = tls_site.read_log()
    assert re.search(r'event=http\.tls\.fail peer=127\.0\.0\.1:\d+ reason="http request"', log), log
    # the daemon keeps serving, on both listeners
    c = s3client(tls_site, tls_site.s3s, tls_site.ca)
    c.create_bucket(Bucket="tlsafter")
    c.put_object(Bucket="tlsafter", Key="after", Body=b"still here")
    assert c.get_object(Bucket="tlsafter", Key="after")["Body"].read() == b"still here"
    assert http("GET", tls_site.s3 + "/health/live")[0] == 200
    assert tls_site.proc.poll() is None


def test_tls_config_errors_name_the_file(tmp_path):
    s = TlsSite(str(tmp_path / "bad"))
    s.enable_s3_tls(str(tmp_path / "missing.crt"), str(tmp_path / "missing.key"))
    r = subprocess.run([MERIDIAND, "--config", s.config, "--check-config"], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 1
    assert "missing.crt" in r.stderr and "cannot load the certificate" in r.stderr, r.stderr


# ---------------------------------------------------------------- mutual TLS


def pins(out):
    return dict(re.findall(r"\[peer\.(\S+)\] tls_pin = (sha256:[0-9a-f]{64})", out))


SECRET_LINE = "secret = test-replication-secret\n"  # conftest.Site's


def drop_secret(site):
    """Takes the [replication] secret out of site's file: mutual TLS alone
    must then authenticate its peers."""
    cfg = open(site.config).read()
    assert SECRET_LINE in cfg
    open(site.config, "w").write(cfg.replace(SECRET_LINE, ""))


def mtls_mesh(tmp_path, names=("a", "b", "c"), cert_dir=None, cert_name=None, ca=False,
              no_secret=()):
    """Sites with [replication] tls_cert/tls_key and every peer pinned (or,
    with ca, trusted through the CA of scripts/gen-site-certs.sh). The sites
    named in no_secret have no [replication] secret."""
    pki = str(tmp_path / "pki")
    pin = pins(sh(GEN, pki, *names).stdout)
    sites = [Site(str(tmp_path / n), name=n, site_id=i + 1) for i, n in enumerate(names)]
    for s in sites:
        if s.name in no_secret:
            drop_secret(s)
        cdir = (cert_dir or {}).get(s.name, pki)
        cname = (cert_name or {}).get(s.name, s.name)
        with open(s.config, "a") as f:
            f.write(f"[replication]\ntls_cert = {cdir}/{cname}.crt\n"
                    f"tls_key = {cdir}/{cname}.key\n")
            if ca:
                f.write(f"tls_ca = {pki}/ca.crt\n")
            for o in sites:
                if o is not s:
                    f.write(f"[peer.{o.name}]\nid = {o.site_id}\n"
                            f"replication = 127.0.0.1:{o.repl_port}\n")
                    if not ca:
                        f.write(f"tls_pin = {pin[o.name]}\n")
    return sites, pki


def peer(site, name):
    for p in site.status()["replication"]["peers"]:
        if p["name"] == name:
            return p
    raise AssertionError(f"no peer {name}")


def up(p):
    # healthy, or degraded by RTT alone: TLS adds round trips a busy 2-core
    # box turns into "rtt above 2x baseline"
    return p["connected"] and p["state"] in ("healthy", "degraded")


def all_links_up(sites):
    """Waits until every site's link to every other site is up."""
    for s in sites:
        for o in sites:
            if o is not s:
                wait_for(lambda: up(peer(s, o.name)), 15, f"{s.name} -> {o.name} up")


def test_mtls_mesh_replicates_and_refuses_plain_h2c(tmp_path):
    sites, pki = mtls_mesh(tmp_path)
    a, b, c = sites
    try:
        for s in sites:
            s.start()
        all_links_up(sites)
        ca = boto3.client("s3", endpoint_url=a.s3, aws_access_key_id="AKIATEST",
                          aws_secret_access_key="testsecretkey", region_name="us-east-1",
                          config=Config(s3={"addressing_style": "path"}))
        ca.create_bucket(Bucket="mtls")
        body = os.urandom(3 * 1024 * 1024 + 1)
        ca.put_object(Bucket="mtls", Key="big", Body=body)
        ca.put_object(Bucket="mtls", Key="small", Body=b"x")
        snap = converge(sites)
        assert set(snap["mtls"]) == {"big", "small"}
        # the object data is checked by CRC32C: TLS authenticates the bytes
        assert {p["send"]["data_check"] for p in a.status()["replication"]["peers"]} == {"crc32c"}
        assert "event=repl.recv.reject" not in b.read_log() + c.read_log()
        assert a.status()["listen"]["replication_transport"] == "mtls"
        assert a.status()["listen"]["replication_auth"] == "secret"
        out = a.ctl("status").stdout
        assert "(mtls)" in out, out
        # the link really is TLS 1.3 with ALPN h2 and a client certificate:
        r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{b.repl_port}",
                            "-alpn", "h2", "-cert", f"{pki}/a.crt", "-key", f"{pki}/a.key"],
                           input="", capture_output=True, text=True, errors="replace", timeout=10)
        assert "ALPN protocol: h2" in r.stdout and "TLSv1.3" in r.stdout, r.stdout + r.stderr
        # ... an h2c client (prior knowledge, no TLS) gets no HTTP/2 answer
        with socket.create_connection(("127.0.0.1", b.repl_port), timeout=5) as s:
            try:  # the server may have closed already: any of these may fail
                s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                s.shutdown(socket.SHUT_WR)
                got = s.recv(100)
            except OSError:
                got = b""
            assert got[3:4] != b"\x04"  # not a SETTINGS frame: a TLS alert or nothing
        # ... nor does a TLS client without a certificate, or one offering only http/1.1
        s_client = ["openssl", "s_client", "-connect", f"127.0.0.1:{b.repl_port}"]
        for extra in (["-alpn", "h2"],
                      ["-alpn", "http/1.1", "-cert", f"{pki}/a.crt", "-key", f"{pki}/a.key"]):
            r = subprocess.run(s_client + extra, input="GET / HTTP/1.1\r\n\r\n",
                               capture_output=True, text=True, errors="replace", timeout=10)
            assert "HTTP/" not in r.stdout
        log = wait_for(lambda: (lambda l: l if l.count("event=repl.tls.refused side=server") >= 3
                                else None)(b.read_log()), 5, "b to log the refusals")
        for reason in ("wrong version number", "peer did not return a certificate",
                       "no application protocol"):
            assert re.search(r'event=repl\.tls\.refused side=server peer=unknown '
                             r'remote=127\.0\.0\.1:\d+ reason="' + reason, log), log
        for s in sites:
            assert s.proc.poll() is None
            for p in s.status()["replication"]["peers"]:
                assert up(p), p
    finally:
        for s in sites:
            s.stop()


@pytest.mark.parametrize("secret", [True, False], ids=["secret", "nosecret"])
def test_site_added_at_run_time_is_trusted_by_its_pin(tmp_path, secret):
    """A pinned mutual-TLS cluster (no CA) adds a fourth site at run time:
    without --tls-pin the change is refused (nothing could trust d); with it
    the pin travels with the topology, every site accepts d's certificate,
    and d replicates both ways. Without a secret that pin is all that
    authenticates d."""
    pki = str(tmp_path / "pki")
    pin = pins(sh(GEN, pki, "a", "b", "c", "d").stdout)
    sites, _ = mtls_mesh(tmp_path / "abc", no_secret=() if secret else ("a", "b", "c"))
    # mtls_mesh made its own certificates: re-point a, b, c at this pki
    for s in sites:
        cfg = open(s.config).read()
        cfg = re.sub(r"tls_cert = .*", f"tls_cert = {pki}/{s.name}.crt", cfg)
        cfg = re.sub(r"tls_key = .*", f"tls_key = {pki}/{s.name}.key", cfg)
        cfg = re.sub(r"\[peer\.(\w)\]\nid = (\d+)\nreplication = (\S+)\ntls_pin = \S+",
                     lambda m: f"[peer.{m[1]}]\nid = {m[2]}\nreplication = {m[3]}\n"
                               f"tls_pin = {pin[m[1]]}", cfg)
        open(s.config, "w").write(cfg)
    a, b, c = sites
    d = Site(str(tmp_path / "d"), name="d", site_id=4)
    if not secret:
        drop_secret(d)
    d_tls = free_port()
    with open(d.config, "a") as f:
        f.write(f"[replication]\ntls_cert = {pki}/d.crt\ntls_key = {pki}/d.key\n"
                f"[listen]\ns3_tls = 127.0.0.1:{d_tls}\n"
                f"[s3]\ntls_cert = {pki}/d.crt\ntls_key = {pki}/d.key\n")
        for o in sites:
            f.write(f"[peer.{o.name}]\nid = {o.site_id}\nreplication = 127.0.0.1:{o.repl_port}\n"
                    f"tls_pin = {pin[o.name]}\n")
    try:
        for s in sites + [d]:
            s.start()
        all_links_up(sites)
        add = ["site", "add", "d", "--id", "4", "--replication", f"127.0.0.1:{d.repl_port}",
               "--s3", f"127.0.0.1:{d.s3_port}"]
        r = a.ctl(*add)
        assert r.returncode != 0 and "tls_pin" in r.stderr + r.stdout, r.stdout + r.stderr
        r = a.ctl(*add, "--tls-pin", "12:34")
        assert r.returncode == 2 and "64 hex digits" in r.stderr, r.stderr
        r = a.ctl(*add, "--tls-pin", pin["d"], "--s3-tls", f"127.0.0.1:{d_tls}")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "every site holds it" in r.stdout, r.stdout
        for s in sites:
            wait_for(lambda: up(peer(s, "d")), 20, f"{s.name} -> d up")
            wait_for(lambda: up(peer(d, s.name)), 20, f"d -> {s.name} up")
        info = b.ctl("--json", "site", "info", "d")
        assert json.loads(info.stdout)["tls_pin"] == pin["d"], info.stdout
        # d's S3 TLS listener travelled with the topology: forwarding to d
        # goes there, over TLS
        assert json.loads(info.stdout)["s3_tls"] == f"127.0.0.1:{d_tls}", info.stdout
        cli = s3_client(d)
        cli.create_bucket(Bucket="grown")
        cli.put_object(Bucket="grown", Key="from-d", Body=b"d was added at run time")
        snap = converge(sites + [d])
        assert set(snap["grown"]) == {"from-d"}
        # the pin is kept with the topology: after a restart b still trusts d
        b.stop()
        b.start()
        wait_for(lambda: up(peer(b, "d")) and up(peer(d, "b")), 20, "b <-> d up again")
        cli.put_object(Bucket="grown", Key="after-restart", Body=b"x")
        snap = converge(sites + [d])
        assert set(snap["grown"]) == {"from-d", "after-restart"}
        for s in sites + [d]:
            assert s.proc.poll() is None
    finally:
        for s in sites + [d]:
            s.stop()


@pytest.mark.parametrize("ca,secret", [(False, True), (True, True), (False, False)],
                         ids=["pins", "ca", "pins-nosecret"])
def test_removed_site_is_told_after_its_mtls_peers_restart(tmp_path, ca, secret):
    """As in test_topology: d, removed while down, is told after every other
    site restarted without [peer.d] in its file. With pins and no CA the
    others trust d's certificate only through the pin the removal put in
    the topology (the removing site's own pin for d); with a CA, by the CA
    and the name the topology remembers. Without a secret, that certificate
    is all that tells d's requests from another site's."""
    from test_topology import removed_site_is_told_after_restarts
    names = ("a", "b", "c", "d")
    sites, _ = mtls_mesh(tmp_path, names=names, ca=ca, no_secret=() if secret else names)
    removed_site_is_told_after_restarts(sites)


def cert_sha256(crt):
    """The certificate pin of crt: SHA-256 of its DER encoding."""
    der = subprocess.run(["openssl", "x509", "-in", crt, "-outform", "der"], check=True,
                         capture_output=True, timeout=10).stdout
    return "sha256:" + hashlib.sha256(der).hexdigest()


def test_forwarded_requests_go_over_tls_to_s3_tls(tmp_path):
    """A drained site forwards S3 requests to its peer's S3 TLS listener
    ([peer.NAME] s3_tls), never to the plain port, and checks that the
    certificate there is the peer's; a wrong pin fails the hop."""
    sites, pki = mtls_mesh(tmp_path, names=("a", "b"))
    a, b = sites
    b_tls, dead = free_port(), free_port()
    with open(b.config, "a") as f:  # b's S3 TLS listener presents its site certificate
        f.write(f"[listen]\ns3_tls = 127.0.0.1:{b_tls}\n"
                f"[s3]\ntls_cert = {pki}/b.crt\ntls_key = {pki}/b.key\n")
    cfg = open(a.config).read()
    # nothing listens on a's "plain" route to b: only the TLS hop can work
    plain = cfg.replace("[peer.b]\n", f"[peer.b]\ns3 = 127.0.0.1:{dead}\n"
                                      f"s3_tls = 127.0.0.1:{b_tls}\n")
    open(a.config, "w").write(plain)
    auth = {"Authorization": "Bearer " + TOKEN}
    try:
        for s in sites:
            s.start()
        wait_for(lambda: up(peer(a, "b")) and up(peer(b, "a")), 15, "a <-> b up")
        cb, ca = s3_client(b), s3_client(a)
        cb.create_bucket(Bucket="hop")
        body = os.urandom(3 * 1024 * 1024 + 5)
        cb.put_object(Bucket="hop", Key="k", Body=body)
        converge(sites)
        st, _, out = http("POST", a.admin + "/admin/v1/failover/drain", headers=auth)
        assert st == 200, out
        # reads and writes at a are served by b, through TLS
        assert ca.get_object(Bucket="hop", Key="k")["Body"].read() == body
        ca.put_object(Bucket="hop", Key="via-a", Body=b"written through a drained site")
        assert cb.get_object(Bucket="hop", Key="via-a")["Body"].read() == \
            b"written through a drained site"
        st, _, m = http("GET", b.admin + "/metrics", headers=auth)
        hs = re.search(rb'meridian_http_tls_handshakes_total\{listener="s3"\} (\d+)', m)
        assert hs and int(hs.group(1)) >= 1, m[:2000]
        assert "route.proxy_failed" not in a.read_log()

        # a pin that is not b's: the hop is refused, the client gets the
        # fallback error, and a says why
        a.stop()
        open(a.config, "w").write(plain.replace(
            f"s3_tls = 127.0.0.1:{b_tls}\n",
            f"s3_tls = 127.0.0.1:{b_tls}\ns3_tls_pin = {cert_sha256(pki + '/a.crt')}\n"))
        a.start()
        st, _, out = http("POST", a.admin + "/admin/v1/failover/drain", headers=auth)
        assert st == 200, out
        wait_for(lambda: up(peer(a, "b")), 15, "a -> b up")
        with pytest.raises(botocore.exceptions.ClientError) as e:
            ca.get_object(Bucket="hop", Key="k")
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        log = a.read_log()
        assert re.search(r'event=route\.proxy_failed peer=b .*reason="TLS: certificate does not '
                         r'match the s3_tls_pin of peer b', log), log[-3000:]
        for s in sites:
            assert s.proc.poll() is None
    finally:
        for s in sites:
            s.stop()


@pytest.mark.parametrize("secret", [True, False], ids=["secret", "nosecret"])
def test_wrong_certificate_is_refused_and_shown(tmp_path, secret):
    # c presents a certificate (same CN, new key) that a and b have not pinned;
    # without a secret the certificate is all that authenticates c
    other = str(tmp_path / "other")
    sh(GEN, other, "c")
    sites, pki = mtls_mesh(tmp_path, cert_dir={"c": other},
                           no_secret=() if secret else ("a", "b", "c"))
    a, b, c = sites
    try:
        for s in sites:
            s.start()
        wait_for(lambda: up(peer(a, "b")), 15, "a -> b up")
        wait_for(lambda: up(peer(b, "a")), 15, "b -> a up")
        p = wait_for(lambda: (lambda p: p if p["state"] == "down" and "TLS" in p["last_error"]
                              else None)(peer(a, "c")), 15, "a -> c down, refused by TLS")
        assert "tls_pin of peer c" in p["last_error"], p
        assert not p["connected"]
        log = a.read_log()
        # a dialling c: c's server certificate is not the pinned one
        assert re.search(r'event=repl\.tls\.refused side=client peer=c remote=127\.0\.0\.1:\d+ '
                         r'reason="certificate does not match the tls_pin of peer c', log), log
        # c dialling a: a refuses c's client certificate
        assert re.search(r'event=repl\.tls\.refused side=server peer=c remote=127\.0\.0\.1:'
                         r'\d+ reason="certificate does not match the tls_pin of peer c', log), log
        # c's links are down too (with TLS 1.3 its handshake ends before a
        # checks its certificate, so c sees the bad_certificate alert, or only
        # the close when the alert is lost to the reset: either way not up)
        pc = wait_for(lambda: (lambda p: p if p["state"] == "down" else None)(peer(c, "a")), 15,
                      "c -> a down")
        assert pc["last_error"].startswith("disconnected: "), pc
        # a and b still replicate
        cl = boto3.client("s3", endpoint_url=a.s3, aws_access_key_id="AKIATEST",
                          aws_secret_access_key="testsecretkey", region_name="us-east-1",
                          config=Config(s3={"addressing_style": "path"}))
        cl.create_bucket(Bucket="abtls")
        cl.put_object(Bucket="abtls", Key="k", Body=b"v")
        converge([a, b])
        assert all(s.proc.poll() is None for s in sites)
    finally:
        for s in sites:
            s.stop()


# ------------------------------------------- mutual TLS without a shared secret


def test_mtls_without_secret_replicates_both_ways(tmp_path):
    """Three pinned sites with no [replication] secret: the certificates
    authenticate every link, PUTs and DELETEs made at any site reach the
    others, and no message is refused. A forwarded-request header set on
    the plain S3 port buys nothing: without a secret no hop is trusted."""
    names = ("a", "b", "c")
    sites, _ = mtls_mesh(tmp_path, names=names, no_secret=names)
    a, b, c = sites
    try:
        for s in sites:
            assert not re.search(r"^secret\s*=", open(s.config).read(), re.M)
            s.start()
        all_links_up(sites)
        ca, cb, cc = s3_client(a), s3_client(b), s3_client(c)
        ca.create_bucket(Bucket="nosecret")
        body = os.urandom(2 * 1024 * 1024 + 3)
        ca.put_object(Bucket="nosecret", Key="from-a", Body=body)
        converge(sites)
        cb.put_object(Bucket="nosecret", Key="from-b", Body=b"b")
        cc.put_object(Bucket="nosecret", Key="from-c", Body=b"c")
        cb.delete_object(Bucket="nosecret", Key="from-a")
        snap = converge(sites)
        assert set(snap["nosecret"]) == {"from-b", "from-c"}, snap
        ca.delete_object(Bucket="nosecret", Key="from-b")
        cc.delete_object(Bucket="nosecret", Key="from-c")
        ca.put_object(Bucket="nosecret", Key="again", Body=body)
        snap = converge(sites)
        assert set(snap["nosecret"]) == {"again"}, snap
        assert cc.get_object(Bucket="nosecret", Key="again")["Body"].read() == body
        for s in sites:
            log = s.read_log()
            assert "event=repl.auth.fail" not in log, log[-3000:]
            assert s.status()["listen"]["replication_transport"] == "mtls"
            assert s.status()["listen"]["replication_auth"] == "certificate"
            assert "(mtls, no secret)" in s.ctl("status").stdout
            for p in s.status()["replication"]["peers"]:
                assert up(p) and p["auth_failures"] == 0, p

        # the marker of the unsigned mode on the plain S3 port, claiming b:
        # refused (403), never served as b's forwarded request
        now = str(int(time.time() * 1000))
        st, _, out = http("GET", a.s3 + "/nosecret/again",
                          headers={"x-meridian-site-id": "2", "x-meridian-time": now,
                                   "x-meridian-auth": "mtls"})
        assert st == 403 and b"AccessDenied" in out, (st, out)
        assert re.search(r'event=route\.peer_auth_failed .*reason="this site has no replication '
                         r'secret', a.read_log()), a.read_log()[-2000:]
        for s in sites:
            assert s.proc.poll() is None
    finally:
        for s in sites:
            s.stop()


def test_no_secret_needs_mutual_tls(tmp_path):
    """A site with peers and no secret starts only with mutual TLS; without
    it the error names both ways out."""
    a = Site(str(tmp_path / "a"), name="a", site_id=1, peers=[("b", 2, free_port())])
    drop_secret(a)
    r = subprocess.run([MERIDIAND, "--config", a.config, "--check-config"], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "[replication] secret: missing" in r.stderr, r.stderr
    assert "set a shared secret" in r.stderr and "configure mutual TLS" in r.stderr, r.stderr
    with pytest.raises(RuntimeError):
        a.start()
    # with mutual TLS (pins) the same file is good
    sites, _ = mtls_mesh(tmp_path / "tls", names=("a", "b"), no_secret=("a", "b"))
    r = subprocess.run([MERIDIAND, "--config", sites[0].config, "--check-config"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stdout + r.stderr


def test_secret_on_one_side_only_is_refused_clearly(tmp_path):
    """a has a secret, b has none (both mutual TLS, pinned): every request
    either way is refused with a 401 whose reason says so, logged on both
    sides, and each side shows it as its link's error."""
    sites, _ = mtls_mesh(tmp_path, names=("a", "b"), no_secret=("b",))
    a, b = sites
    theirs_none = "peer has no [replication] secret but this site has"
    theirs_some = "peer uses a [replication] secret, this site has none"
    try:
        for s in sites:
            s.start()
        # the listener's side
        wait_for(lambda: re.search(r'event=repl\.auth\.fail side=server .*reason="' +
                                   re.escape(theirs_none), a.read_log()), 15,
                 "a refusing b's unsigned requests")
        wait_for(lambda: re.search(r'event=repl\.auth\.fail side=server .*reason="' +
                                   re.escape(theirs_some), b.read_log()), 15,
                 "b refusing a's signed requests")
        # the dialler's side: logged, and the peer's error in status
        for s, o, why in ((a, b, theirs_none), (b, a, theirs_some)):
            wait_for(lambda: re.search(r'level=warn .*event=repl\.peer\.hello_fail peer=' +
                                       o.name + r' .*reason="' + re.escape(why), s.read_log()),
                     15, f"{s.name} logging why {o.name} refused it")
            p = wait_for(lambda: (lambda p: p if why in p["last_error"] else None)(
                peer(s, o.name)), 15, f"{s.name}'s error for {o.name}")
            assert not up(p) and p["last_error"].endswith("on both or neither"), p
        for s in sites:
            assert s.proc.poll() is None
    finally:
        for s in sites:
            s.stop()


def test_ca_mode_accepts_the_named_site_only(tmp_path):
    # no pins: a CA-signed certificate whose CN is the peer's name; c presents
    # one from the same CA for another name ("x")
    pki = str(tmp_path / "pki")
    sh(GEN, pki, "x")
    sites, _ = mtls_mesh(tmp_path, cert_name={"c": "x"}, ca=True)
    a, b, c = sites
    try:
        for s in sites:
            s.start()
        wait_for(lambda: up(peer(a, "b")), 15, "a -> b up")
        wait_for(lambda: up(peer(b, "a")), 15, "b -> a up")
        p = wait_for(lambda: (lambda p: p if p["state"] == "down" and "TLS" in p["last_error"]
                              else None)(peer(a, "c")), 15, "a -> c down, refused by TLS")
        assert "names CN 'x', not peer c" in p["last_error"], p
        log = a.read_log()
        assert re.search(r'event=repl\.tls\.refused side=server peer=unknown remote=\S+ '
                         r'reason="certificate \(CN \'x\', sha256:[0-9a-f]{16}\.\.\.\) matches no '
                         r'configured peer"', log), log
        cl = boto3.client("s3", endpoint_url=b.s3, aws_access_key_id="AKIATEST",
                          aws_secret_access_key="testsecretkey", region_name="us-east-1",
                          config=Config(s3={"addressing_style": "path"}))
        cl.create_bucket(Bucket="camode")
        cl.put_object(Bucket="camode", Key="k", Body=b"v")
        converge([a, b])
    finally:
        for s in sites:
            s.stop()


def test_no_secret_ca_mode_binds_each_certificate_to_its_site(tmp_path):
    """No secret and no pins: the sites trust each other's CA-signed
    certificates (CN = site name), and replicate both ways. A certificate
    is good for its own site only: c, holding a valid certificate, cannot
    speak for b (each request names its site, and the connection is bound
    to the site its certificate names), and a certificate the CA never
    signed is refused by the handshake."""
    names = ("a", "b", "c")
    sites, pki = mtls_mesh(tmp_path, names=names, ca=True, no_secret=names)
    a, b, c = sites
    try:
        for s in sites:
            s.start()
        all_links_up(sites)
        ca_, cc = s3_client(a), s3_client(c)
        ca_.create_bucket(Bucket="cabound")
        ca_.put_object(Bucket="cabound", Key="from-a", Body=b"a")
        # the bucket reaches c by replication: a PUT there before it is a
        # NoSuchBucket (seen once on a loaded machine)
        wait_for(lambda: "cabound" in [x["Name"] for x in cc.list_buckets().get("Buckets", [])],
                 30, "the bucket to reach c")
        cc.put_object(Bucket="cabound", Key="from-c", Body=b"c")
        snap = converge(sites)
        assert set(snap["cabound"]) == {"from-a", "from-c"}, snap
        for s in sites:
            assert s.status()["listen"]["replication_auth"] == "certificate"
            assert "event=repl.auth.fail" not in s.read_log()

        def hello(cert, site_id):
            """POST /repl/v1/heartbeat to a over h2 with cert, naming site_id
            in the unsigned mode; (http status, body)."""
            now = str(int(time.time() * 1000))
            out = subprocess.run(
                ["curl", "-s", "--http2", "-k", "--max-time", "10", "-o", "-", "-w",
                 "\n%{http_code}", "--cert", f"{pki}/{cert}.crt", "--key", f"{pki}/{cert}.key",
                 "-X", "POST", "-H", f"x-meridian-site-id: {site_id}",
                 "-H", f"x-meridian-time: {now}", "-H", "x-meridian-auth: mtls",
                 "-H", "content-type: application/x-protobuf", "--data-binary", "not protobuf",
                 f"https://127.0.0.1:{a.repl_port}/repl/v1/heartbeat"],
                capture_output=True, text=True, timeout=20)
            body, _, status = out.stdout.rpartition("\n")
            return int(status or 0), body

        # c's own certificate, naming c: authenticated (the body is then
        # refused as malformed)
        st, body = hello("c", 3)
        assert st == 400, (st, body)
        # c's certificate, claiming to be b: refused, and logged
        st, body = hello("c", 2)
        assert st == 401, (st, body)
        assert "differs from the site named by the TLS client certificate" in body, body
        wait_for(lambda: re.search(r"event=repl\.auth\.fail side=server .*reason=\"site id "
                                   r"differs from the site named by the TLS client certificate",
                                   a.read_log()), 10, "a logging the refusal")
        # a certificate from another CA (for the name b): the handshake fails
        other = str(tmp_path / "other")
        sh(GEN, other, "b")
        out = subprocess.run(
            ["curl", "-s", "--http2", "-k", "--max-time", "10", "--cert", f"{other}/b.crt",
             "--key", f"{other}/b.key", "-X", "POST",
             f"https://127.0.0.1:{a.repl_port}/repl/v1/heartbeat"],
            capture_output=True, text=True, timeout=20)
        assert out.returncode != 0, out
        # the real b is still served, and nothing else was harmed
        cb = s3_client(b)
        cb.put_object(Bucket="cabound", Key="from-b", Body=b"b")
        snap = converge(sites)
        assert set(snap["cabound"]) == {"from-a", "from-b", "from-c"}, snap
        for s in sites:
            assert s.proc.poll() is None
    finally:
        for s in sites:
            s.stop()


def test_tls_bodies_stream_in_bounded_memory(tmp_path):
    # a fresh site, so its peak RSS is this test's
    ca, crt, key = make_server_cert(str(tmp_path / "pki"))
    s = TlsSite(str(tmp_path / "a"))
    s.enable_s3_tls(crt, key)
    s.start()
    s.ca = ca
    try:
        src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
        with open(src, "wb") as f:
            for _ in range(160):
                f.write(os.urandom(1 << 20))
        assert curl(s, "-X", "PUT", s.s3s + "/tlsmem").returncode == 0
        r = curl(s, "-T", src, s.s3s + "/tlsmem/big")
        assert r.returncode == 0, r.stderr + r.stdout
        r = curl(s, "-o", dst, s.s3s + "/tlsmem/big")
        assert r.returncode == 0, r.stderr
        assert sha(dst) == sha(src)
        if sanitized(s.proc.pid):
            pytest.skip("peak RSS is meaningless under a sanitizer (shadow memory, quarantine)")
        print("meridiand VmHWM KiB", vm_hwm_kib(s.proc.pid))
        assert vm_hwm_kib(s.proc.pid) < 64 * 1024  # a 160 MiB body never sits in memory
    finally:
        s.stop()
