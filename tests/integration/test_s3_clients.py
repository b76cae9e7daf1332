"""The two other clients users bring, unchanged: s3cmd and rclone against a
real meridiand (path-style, SigV4, plain http). Each does make-bucket, put,
list, get (byte-exact), delete and remove-bucket. The 20 MiB file goes up
as a multipart upload with each client (s3cmd from 15 MiB on by default;
rclone is told to cut at 5 MiB, its default being 200 MiB)."""
import hashlib
import os
import subprocess

import boto3
import pytest
from botocore.config import Config

from conftest import s3cmd_command


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, **kw)
    assert r.returncode == 0, f"{cmd[0]} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r.stdout


def etag(site, bucket, key):
    c = boto3.client("s3", endpoint_url=site.s3, aws_access_key_id="AKIATEST",
                     aws_secret_access_key="testsecretkey", region_name="us-east-1",
                     config=Config(s3={"addressing_style": "path"}))
    return c.head_object(Bucket=bucket, Key=key)["ETag"]


def md5(path):
    with open(path, "rb") as f:
        return hashlib.md5(f.read()).hexdigest()


@pytest.fixture
def files(tmp_path):
    out = {}
    for name, size in (("empty", 0), ("small.txt", 1234), ("one-mib.bin", (1 << 20) + 3),
                       ("eight-mib.bin", 8 << 20), ("twenty-mib.bin", 20 << 20)):
        p = tmp_path / "src" / name
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(os.urandom(size))
        out[name] = str(p)
    return out


def test_s3cmd(site, files, tmp_path):
    s3cmd = s3cmd_command(site, tmp_path)
    run(s3cmd + ["mb", "s3://s3cmd-bucket"])
    for name, path in files.items():
        run(s3cmd + ["put", path, f"s3://s3cmd-bucket/dir/{name}"])
    # a multipart ETag: two parts, of 15 and 5 MiB
    assert etag(site, "s3cmd-bucket", "dir/twenty-mib.bin").endswith('-2"')
    listing = run(s3cmd + ["ls", "s3://s3cmd-bucket/dir/"])
    for name in files:
        assert f"s3://s3cmd-bucket/dir/{name}" in listing
    for name, path in files.items():
        dst = tmp_path / "get" / name
        dst.parent.mkdir(exist_ok=True)
        run(s3cmd + ["get", "--force", f"s3://s3cmd-bucket/dir/{name}", str(dst)])
        assert md5(dst) == md5(path), name
    for name in files:
        run(s3cmd + ["del", f"s3://s3cmd-bucket/dir/{name}"])
    run(s3cmd + ["rb", "s3://s3cmd-bucket"])
    assert "s3cmd-bucket" not in run(s3cmd + ["ls"])


def test_rclone(site, files, tmp_path):
    # Only our own settings: an inherited AWS_CA_BUNDLE (or other AWS_*
    # variables) would change how rclone builds its HTTP client.
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RCLONE_"))}
    env = dict(base,
               RCLONE_CONFIG_M_TYPE="s3", RCLONE_CONFIG_M_PROVIDER="Other",
               RCLONE_CONFIG_M_ACCESS_KEY_ID="AKIATEST",
               RCLONE_CONFIG_M_SECRET_ACCESS_KEY="testsecretkey",
               RCLONE_CONFIG_M_ENDPOINT=site.s3, RCLONE_CONFIG_M_REGION="us-east-1",
               RCLONE_CONFIG_M_FORCE_PATH_STYLE="true", RCLONE_CONFIG="/dev/null")
    rclone = ["rclone", "--retries", "1", "--low-level-retries", "1", "--s3-upload-cutoff", "5M",
              "--s3-chunk-size", "5M"]
    src = os.path.dirname(files["small.txt"])
    run(rclone + ["mkdir", "m:rclone-bucket"], env=env)
    run(rclone + ["copy", src, "m:rclone-bucket/data"], env=env)
    # the files over 5 MiB went up in 5 MiB parts: multipart ETags
    assert etag(site, "rclone-bucket", "data/eight-mib.bin").endswith('-2"')
    assert etag(site, "rclone-bucket", "data/twenty-mib.bin").endswith('-4"')
    listing = run(rclone + ["ls", "m:rclone-bucket/data"], env=env)
    for name in files:
        assert name in listing
    # rclone checks sizes and MD5 (ETag) itself; check the bytes too
    run(rclone + ["check", src, "m:rclone-bucket/data"], env=env)
    dst = tmp_path / "back"
    run(rclone + ["copy", "m:rclone-bucket/data", str(dst)], env=env)
    for name, path in files.items():
        assert md5(dst / name) == md5(path), name
    run(rclone + ["purge", "m:rclone-bucket"], env=env)
    assert "rclone-bucket" not in run(rclone + ["lsd", "m:"], env=env)
