#!/usr/bin/env bash
# The README's first command: install what is missing, build, start a local
# three-site cluster on loopback and show what to try.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
scripts/install-deps.sh
scripts/build.sh build
deploy/cluster.sh up 3
ctl="build/cli/meridianctl"
. run/cluster/credentials
s3() { curl -sS --aws-sigv4 "aws:amz:us-east-1:s3" --user "$access_key:$secret_key" \
    -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$@"; }
sleep 3.5 # three heartbeats, so the peers show as healthy

echo
echo "== Write at site a, read at b and c (SigV4-signed with curl) =="
s3 -o /dev/null -w "create bucket demo at a:       HTTP %{http_code}\n" -X PUT http://127.0.0.1:9001/demo
echo "hello from site a" > run/cluster/hello.txt
s3 -o /dev/null -w "put hello.txt at a:            HTTP %{http_code}\n" -T run/cluster/hello.txt \
    http://127.0.0.1:9001/demo/hello.txt
head -c 4194304 /dev/urandom > run/cluster/blob.bin
s3 -o /dev/null -w "put blob.bin (4 MiB) at b:     HTTP %{http_code}\n" -T run/cluster/blob.bin \
    http://127.0.0.1:9002/demo/blob.bin
sleep 1 # replication: a few ms on loopback; a second is plenty
printf "get hello.txt at c:            "; s3 http://127.0.0.1:9003/demo/hello.txt
s3 -D - -o run/cluster/blob.copy http://127.0.0.1:9003/demo/blob.bin |
    grep -i "^x-amz-replication-status" | tr -d '\r' | sed 's/^/blob.bin at c:                 /'
cmp -s run/cluster/blob.bin run/cluster/blob.copy && echo "blob.bin at c:                 same bytes as written at b"
s3 -D - -o /dev/null http://127.0.0.1:9001/demo/hello.txt |
    grep -i "^x-amz-replication-status" | tr -d '\r' | sed 's/^/hello.txt at its origin a:     /'
echo
echo "== meridianctl status at site c: the site, then every link of the cluster =="
"$ctl" --config run/cluster/c/site.ini status
echo
echo "== meridianctl site list at site b: the topology =="
"$ctl" --config run/cluster/b/site.ini site list
echo
cat <<EOT
== Three sites are running (a, b, c). Things to try ==
  . run/cluster/credentials                            # access_key / secret_key for S3
  AWS_ACCESS_KEY_ID=\$access_key AWS_SECRET_ACCESS_KEY=\$secret_key \\
    aws --endpoint-url http://127.0.0.1:9002 s3 ls s3://demo   # any S3 client, at any site
  kill -STOP \$(cat run/cluster/c/pid)                   # cut c off, then write at a and watch
  $ctl --config run/cluster/a/site.ini lag --watch     # the lag to c grow (records, bytes, age)
  kill -CONT \$(cat run/cluster/c/pid)                   # and drain when c is back
  $ctl --config run/cluster/b/site.ini failover drain  # b forwards every request to a peer
  $ctl --config run/cluster/a/site.ini conflicts list  # concurrent writes settled, losers kept
  $ctl help                                            # every command (docs/cli.md)
  curl -s http://127.0.0.1:9201/metrics | head -20      # Prometheus metrics
  deploy/cluster.sh down                                # stop everything
Configs, drives and logs are under run/cluster/<site>/. README.md says what works
today; docs/ has the rest.
EOT
