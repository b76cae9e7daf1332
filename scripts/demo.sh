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
echo "== An S3 round trip at site a (SigV4-signed with curl) =="
echo "\$ create bucket demo, put hello.txt, list, get it back"
s3 -o /dev/null -w "create bucket: HTTP %{http_code}\n" -X PUT http://127.0.0.1:9001/demo
echo "hello from site a" > run/cluster/hello.txt
s3 -o /dev/null -w "put object:    HTTP %{http_code}\n" -T run/cluster/hello.txt http://127.0.0.1:9001/demo/hello.txt
s3 "http://127.0.0.1:9001/demo?list-type=2" | grep -o "<Key>[^<]*</Key>" | sed 's/^/list:          /'
printf "get object:    "; s3 http://127.0.0.1:9001/demo/hello.txt
echo
echo "== meridianctl status, asked of site a (peers b and c are linked by heartbeats) =="
"$ctl" --config run/cluster/a/site.ini status
echo
cat <<EOT
== Three sites are running (a, b, c). Things to try ==
  . run/cluster/credentials                            # access_key / secret_key for S3
  AWS_ACCESS_KEY_ID=\$access_key AWS_SECRET_ACCESS_KEY=\$secret_key \\
    aws --endpoint-url http://127.0.0.1:9002 s3 ls      # any S3 client, at any site
  curl -i http://127.0.0.1:9001/health/ready          # each site's readiness (9001..9003)
  $ctl --config run/cluster/b/site.ini status          # any site, as a table
  $ctl --config run/cluster/c/site.ini --json status   # or as JSON
  curl -s http://127.0.0.1:9201/metrics | head -20      # Prometheus metrics
  kill -TERM \$(cat run/cluster/b/pid); deploy/cluster.sh status   # lose a site
  deploy/cluster.sh up                                  # bring it back
  deploy/cluster.sh down                                # stop everything
Configs, drives and logs are under run/cluster/<site>/. Objects are not replicated
between sites yet (peers only exchange heartbeats): README.md says what works today.
EOT
