"""Virtual-host-style addressing ([s3] domain): Host: <bucket>.<domain>
names the bucket and the whole path is the key, while path-style requests
keep working on the same port.

The test domain is s3.test, which no resolver knows. Each client is pointed
at loopback without touching the machine's resolver:
  - boto3 runs in this process, so its name lookups (socket.getaddrinfo) map
    s3.test and every name under it to 127.0.0.1 for the test's duration;
    everything else (signing, URLs, HTTP) is botocore's own;
  - curl gets --connect-to;
  - s3cmd, awscli and rclone (their own processes) run in a private mount
    namespace whose /etc/hosts lists the names (unshare --mount, a bind
    mount seen by that process tree alone).
"""
import hashlib
import os
import re
import socket
import subprocess
import urllib.request

import boto3
import botocore
import pytest
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from conftest import TOKEN, Site, http, wait_for

DOMAIN = "s3.test"
KEY, SECRET = "AKIATEST", "testsecretkey"


def add_domains(site, value="other.example, s3.test"):
    with open(site.config, "a") as f:
        f.write("[s3]\ndomain = %s\n" % value)


@pytest.fixture
def vsite(tmp_path):
    s = Site(str(tmp_path / "a"))
    add_domains(s)
    s.start()
    yield s
    s.stop()


@pytest.fixture
def loopback_dns(monkeypatch):
    real = socket.getaddrinfo

    def lookup(host, *args, **kw):
        if isinstance(host, str) and (host == DOMAIN or host.endswith("." + DOMAIN)):
            host = "127.0.0.1"
        return real(host, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", lookup)


def client(endpoint, style):
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=KEY,
                        aws_secret_access_key=SECRET, region_name="us-east-1",
                        config=Config(retries={"max_attempts": 1}, signature_version="s3v4",
                                      s3={"addressing_style": style}))


def signed(site, method, host, path, body=b"", headers=None, send_host=None):
    """A SigV4 request signed for Host: host, sent to the site's port with
    Host: send_host (default: the same). Returns (status, headers, body)."""
    url = "http://%s:%d%s" % (host, site.s3_port, path)
    req = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    req.headers["Host"] = "%s:%d" % (host, site.s3_port)  # signed exactly as given
    req.headers["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest()
    SigV4Auth(Credentials(KEY, SECRET), "s3", "us-east-1").add_auth(req)
    h = dict(req.headers.items())
    h["Host"] = "%s:%d" % (send_host or host, site.s3_port)
    st, hdr, data = http(method, site.s3 + path, headers=h, body=body or None)
    return st, {k.lower(): v for k, v in hdr.items()}, data


def xml_code(body):
    m = re.search(rb"<Code>([^<]*)</Code>", body)
    return m.group(1).decode() if m else None


def test_boto3_virtual_host_and_path_style_side_by_side(vsite, loopback_dns):
    v = client("http://%s:%d" % (DOMAIN, vsite.s3_port), "virtual")
    p = client(vsite.s3, "path")
    sent = []
    v.meta.events.register("before-send.s3", lambda request, **kw: sent.append(request.url))

    v.create_bucket(Bucket="vh-bucket")
    assert sent[-1].startswith("http://vh-bucket.s3.test:")  # really virtual-host style
    assert "vh-bucket" in [b["Name"] for b in v.list_buckets()["Buckets"]]
    assert sent[-1] == "http://s3.test:%d/" % vsite.s3_port  # the service on the domain
    v.head_bucket(Bucket="vh-bucket")
    p.head_bucket(Bucket="vh-bucket")

    odd = "dir/a b+c=d&e%f~g.txt"  # escapes in the key, signed as sent
    data = os.urandom(100_000)
    v.put_object(Bucket="vh-bucket", Key=odd, Body=data, Metadata={"style": "virtual"})
    assert sent[-1].startswith("http://vh-bucket.s3.test:%d/dir/" % vsite.s3_port)
    o = v.get_object(Bucket="vh-bucket", Key=odd)
    assert o["Body"].read() == data and o["Metadata"] == {"style": "virtual"}
    assert p.get_object(Bucket="vh-bucket", Key=odd)["Body"].read() == data
    p.put_object(Bucket="vh-bucket", Key="from-path", Body=b"path style")
    assert v.get_object(Bucket="vh-bucket", Key="from-path")["Body"].read() == b"path style"
    assert v.get_object(Bucket="vh-bucket", Key=odd, Range="bytes=10-19")["Body"].read() == \
        data[10:20]
    # a key that starts with a slash: everything after the first '/' is key
    v.put_object(Bucket="vh-bucket", Key="/rooted", Body=b"r")
    assert p.get_object(Bucket="vh-bucket", Key="/rooted")["Body"].read() == b"r"

    lst = v.list_objects_v2(Bucket="vh-bucket", Delimiter="/")
    assert [c["Prefix"] for c in lst["CommonPrefixes"]] == ["/", "dir/"]
    assert [c["Key"] for c in lst["Contents"]] == ["from-path"]
    assert v.get_bucket_location(Bucket="vh-bucket")["LocationConstraint"] is None

    v.copy_object(Bucket="vh-bucket", Key="copy", CopySource={"Bucket": "vh-bucket", "Key": odd})
    assert p.get_object(Bucket="vh-bucket", Key="copy")["Body"].read() == data

    up = v.create_multipart_upload(Bucket="vh-bucket", Key="mpu")["UploadId"]
    parts = []
    for n, piece in enumerate((os.urandom(5 << 20), b"tail"), 1):
        r = v.upload_part(Bucket="vh-bucket", Key="mpu", UploadId=up, PartNumber=n, Body=piece)
        parts.append({"PartNumber": n, "ETag": r["ETag"]})
    assert [x["PartNumber"] for x in v.list_parts(Bucket="vh-bucket", Key="mpu",
                                                   UploadId=up)["Parts"]] == [1, 2]
    v.complete_multipart_upload(Bucket="vh-bucket", Key="mpu", UploadId=up,
                                MultipartUpload={"Parts": parts})
    assert p.head_object(Bucket="vh-bucket", Key="mpu")["ContentLength"] == (5 << 20) + 4

    # a presigned URL for the virtual host
    url = v.generate_presigned_url("get_object", Params={"Bucket": "vh-bucket", "Key": odd},
                                   ExpiresIn=60)
    assert url.startswith("http://vh-bucket.s3.test:")
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.read() == data

    with pytest.raises(botocore.exceptions.ClientError) as e:
        v.get_object(Bucket="vh-bucket", Key="missing")
    assert e.value.response["Error"]["Code"] == "NoSuchKey"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        v.list_objects_v2(Bucket="no-such-vh")
    assert e.value.response["Error"]["Code"] == "NoSuchBucket"

    keys = [o["Key"] for o in p.list_objects_v2(Bucket="vh-bucket")["Contents"]]
    r = v.delete_objects(Bucket="vh-bucket", Delete={"Objects": [{"Key": k} for k in keys]})
    assert sorted(d["Key"] for d in r["Deleted"]) == sorted(keys)
    v.delete_bucket(Bucket="vh-bucket")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        p.head_bucket(Bucket="vh-bucket")
    assert e.value.response["Error"]["Code"] == "404"


def test_host_forms_and_the_signature_covers_the_host(vsite):
    assert signed(vsite, "PUT", "hf-one." + DOMAIN, "/")[0] == 200
    assert signed(vsite, "PUT", "hf-two.other.example", "/")[0] == 200  # the second domain
    assert signed(vsite, "PUT", "hf-one.s3.test", "/k", b"one")[0] == 200
    # upper case and a trailing dot in the Host are the same bucket
    st, _, body = signed(vsite, "GET", "HF-One.S3.Test.", "/k")
    assert st == 200 and body == b"one"
    # the domain itself, and the IP, are path style
    st, _, body = signed(vsite, "GET", DOMAIN, "/hf-one/k")
    assert st == 200 and body == b"one"
    st, _, body = signed(vsite, "GET", "127.0.0.1", "/hf-one/k")
    assert st == 200 and body == b"one"
    # a name under no configured domain is path style too
    st, _, body = signed(vsite, "GET", "hf-one.elsewhere.test", "/hf-one/k")
    assert st == 200 and body == b"one"
    # signed for one bucket's host, sent to another's: the signature fails,
    # nothing is read or written
    st, _, body = signed(vsite, "PUT", "hf-one.s3.test", "/k", b"evil",
                         send_host="hf-two.s3.test")
    assert st == 403 and xml_code(body) == "SignatureDoesNotMatch", body
    assert signed(vsite, "GET", "hf-two.s3.test", "/k")[0] == 404
    # a bucket label too long to be a bucket
    st, _, body = signed(vsite, "GET", "b" * 70 + "." + DOMAIN, "/k")
    assert st == 400 and xml_code(body) == "InvalidBucketName", body
    # an upper-case bucket in a path stays refused (not renamed)
    st, _, body = signed(vsite, "PUT", "127.0.0.1", "/Upper-Case")
    assert st == 400 and xml_code(body) == "InvalidBucketName", body
    # x-meridian-bucket from a client (not a peer) is ignored
    st, _, body = signed(vsite, "GET", "127.0.0.1", "/hf-one/k",
                         headers={"x-meridian-bucket": "hf-two"})
    assert st == 200 and body == b"one"


def test_escaped_slash_signed_as_sent(vsite):
    """A client that escapes '/' inside a key (%2F) signs the path as sent
    (botocore's S3 signer does not re-encode): accepted in both styles, the
    key is the decoded one, and the signature still binds the path."""
    def put(host, path, body, send_path=None):
        url = "http://%s:%d%s" % (host, vsite.s3_port, path)
        req = AWSRequest(method="PUT", url=url, data=body)
        req.headers["Host"] = "%s:%d" % (host, vsite.s3_port)
        req.headers["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest()
        S3SigV4Auth(Credentials(KEY, SECRET), "s3", "us-east-1").add_auth(req)
        return http("PUT", vsite.s3 + (send_path or path), headers=dict(req.headers.items()),
                     body=body)

    assert signed(vsite, "PUT", "127.0.0.1", "/esc-slash")[0] == 200
    st, _, body = put("127.0.0.1", "/esc-slash/dir%2Fpath", b"path style")
    assert st == 200, body
    st, _, body = put("esc-slash." + DOMAIN, "/dir%2Fvhost", b"virtual host")
    assert st == 200, body
    st, _, body = put("127.0.0.1", "/esc-slash/dir%2Fpath", b"x", send_path="/esc-slash/dir/path")
    assert st == 403 and xml_code(body) == "SignatureDoesNotMatch"
    assert signed(vsite, "GET", "127.0.0.1", "/esc-slash/dir/path")[2] == b"path style"
    assert signed(vsite, "GET", "127.0.0.1", "/esc-slash/dir/vhost")[2] == b"virtual host"


def test_curl_virtual_host(vsite, tmp_path):
    assert signed(vsite, "PUT", "curl-vh." + DOMAIN, "/")[0] == 200
    src = tmp_path / "src"
    src.write_bytes(os.urandom(300_000))
    host = "curl-vh.%s:%d" % (DOMAIN, vsite.s3_port)
    base = ["curl", "-sS", "--fail-with-body", "--max-time", "30",
            "--connect-to", "%s:127.0.0.1:%d" % (host, vsite.s3_port),
            "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", "%s:%s" % (KEY, SECRET),
            "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"]
    r = subprocess.run(base + ["-T", str(src), "http://%s/by/curl" % host],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr + r.stdout
    out = tmp_path / "out"
    r = subprocess.run(base + ["-o", str(out), "http://%s/by/curl" % host],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr + r.stdout
    assert out.read_bytes() == src.read_bytes()
    st, _, body = signed(vsite, "GET", "127.0.0.1", "/curl-vh/by/curl")
    assert st == 200 and body == src.read_bytes()


def with_hosts(tmp_path, names, script, env=None):
    """Runs a shell script in a private mount namespace whose /etc/hosts maps
    names to 127.0.0.1 (nothing outside that process tree sees it)."""
    if subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode != 0:
        pytest.skip("no private mount namespace here (unshare --mount) to give the client "
                    "a hosts file")
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost %s\n" % " ".join(names))
    r = subprocess.run(["unshare", "--mount", "sh", "-c",
                        "mount --bind %s /etc/hosts && set -e\n%s" % (hosts, script)],
                       capture_output=True, text=True, timeout=180, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_s3cmd_virtual_host(vsite, tmp_path):
    bucket = "s3cmd-vh"
    cfg = tmp_path / "s3cfg"
    cfg.write_text("[default]\naccess_key = %s\nsecret_key = %s\nhost_base = %s:%d\n"
                   "host_bucket = %%(bucket)s.%s:%d\nuse_https = False\nsignature_v2 = False\n"
                   "bucket_location = us-east-1\n"
                   % (KEY, SECRET, DOMAIN, vsite.s3_port, DOMAIN, vsite.s3_port))
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(1 << 20))
    dst = tmp_path / "dst.bin"
    script = ("S='s3cmd -c %s --no-progress'\n"
              "$S mb s3://{b}\n"
              "$S --debug put %s s3://{b}/dir/file.bin 2>%s\n"
              "$S ls s3://{b}/dir/\n"
              "$S get --force s3://{b}/dir/file.bin %s\n"
              "$S del s3://{b}/dir/file.bin\n"
              "$S rb s3://{b}\n").format(b=bucket) % (cfg, src, tmp_path / "debug", dst)
    out = with_hosts(tmp_path, [DOMAIN, "%s.%s" % (bucket, DOMAIN)], script)
    assert "s3://%s/dir/file.bin" % bucket in out
    assert dst.read_bytes() == src.read_bytes()
    # s3cmd addressed the bucket by its host name, not by path
    debug = (tmp_path / "debug").read_text()
    assert "%s.%s" % (bucket, DOMAIN) in debug, debug[-2000:]
    assert signed(vsite, "HEAD", "127.0.0.1", "/" + bucket)[0] == 404  # rb went through


def test_awscli_and_rclone_virtual_host(vsite, tmp_path):
    """awscli (addressing_style = virtual; a 20 MiB cp goes multipart) and
    rclone (force_path_style false), each with only the bucket's host name
    resolvable: path style could not reach the bucket."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "small.txt").write_bytes(os.urandom(1234))
    (src / "big.bin").write_bytes(os.urandom(20 << 20))
    cfg = tmp_path / "aws.cfg"
    cfg.write_text("[default]\ns3 =\n    addressing_style = virtual\n")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RCLONE_"))}
    env = dict(base, AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET,
               AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE=str(cfg),
               AWS_SHARED_CREDENTIALS_FILE="/dev/null", AWS_PAGER="",
               AWS_EC2_METADATA_DISABLED="true",
               RCLONE_CONFIG_M_TYPE="s3", RCLONE_CONFIG_M_PROVIDER="Other",
               RCLONE_CONFIG_M_ACCESS_KEY_ID=KEY, RCLONE_CONFIG_M_SECRET_ACCESS_KEY=SECRET,
               RCLONE_CONFIG_M_ENDPOINT="http://%s:%d" % (DOMAIN, vsite.s3_port),
               RCLONE_CONFIG_M_REGION="us-east-1", RCLONE_CONFIG_M_FORCE_PATH_STYLE="false",
               RCLONE_CONFIG="/dev/null")
    assert signed(vsite, "PUT", "127.0.0.1", "/cli-vh")[0] == 200
    aws = "/usr/bin/aws --endpoint-url http://%s:%d" % (DOMAIN, vsite.s3_port)
    rclone = "rclone --retries 1 --low-level-retries 1 --s3-upload-cutoff 5M --s3-chunk-size 5M"
    script = ("{aws} s3 cp --no-progress {src}/big.bin s3://cli-vh/aws/big.bin\n"
              "{aws} s3 cp --no-progress s3://cli-vh/aws/big.bin {tmp}/aws-back.bin\n"
              "{aws} s3api head-object --bucket cli-vh --key aws/big.bin\n"
              "{rclone} copy {src} m:cli-vh/rclone\n"
              "{rclone} check {src} m:cli-vh/rclone\n"
              "{rclone} ls m:cli-vh\n").format(aws=aws, rclone=rclone, src=src, tmp=tmp_path)
    out = with_hosts(tmp_path, ["cli-vh." + DOMAIN], script, env=env)
    assert re.search(r'"ETag": "\\"[0-9a-f]{32}-3\\""', out), out  # multipart: 8 MiB parts
    assert (tmp_path / "aws-back.bin").read_bytes() == (src / "big.bin").read_bytes()
    for name in ("aws/big.bin", "rclone/big.bin", "rclone/small.txt"):
        assert name in out
    st, _, body = signed(vsite, "GET", "127.0.0.1", "/cli-vh/rclone/small.txt")
    assert st == 200 and body == (src / "small.txt").read_bytes()


def test_forwarded_to_a_peer_that_serves_no_domain(tmp_path):
    """A drained site forwards a virtual-host request to a peer configured
    without any domain: x-meridian-bucket tells it the bucket."""
    from test_routing import running_pair

    with running_pair(tmp_path, prepare=lambda a, b: add_domains(b)) as (a, b, w):
        assert signed(a, "PUT", "127.0.0.1", "/fwd-vh")[0] == 200
        wait_for(lambda: signed(b, "HEAD", "127.0.0.1", "/fwd-vh")[0] == 200, 10,
                 "bucket at b")
        auth = {"Authorization": "Bearer " + TOKEN}
        assert http("POST", b.admin + "/admin/v1/failover/drain", headers=auth)[0] == 200
        st, hdr, body = signed(b, "PUT", "fwd-vh." + DOMAIN, "/via/b", b"vhost through b")
        assert st == 200 and hdr["x-meridian-served-by"] == "a", body
        st, hdr, body = signed(b, "GET", "fwd-vh." + DOMAIN, "/via/b")
        assert st == 200 and body == b"vhost through b" and hdr["x-meridian-served-by"] == "a"
        st, _, body = signed(a, "GET", "127.0.0.1", "/fwd-vh/via/b")
        assert st == 200 and body == b"vhost through b"
        st, hdr, body = signed(b, "GET", "fwd-vh." + DOMAIN, "/?list-type=2")
        assert st == 200 and b"<Key>via/b</Key>" in body and hdr["x-meridian-served-by"] == "a"
