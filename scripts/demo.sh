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
echo
echo "== meridianctl status, asked of site a =="
"$ctl" --config run/cluster/a/site.ini status
echo
cat <<EOT
== Three sites are running (a, b, c). Things to try ==
  curl -i http://127.0.0.1:9001/health/ready          # each site's readiness (9001..9003)
  $ctl --config run/cluster/b/site.ini status          # any site, as a table
  $ctl --config run/cluster/c/site.ini --json status   # or as JSON
  curl -s http://127.0.0.1:9201/metrics | head -20      # Prometheus metrics
  kill -TERM \$(cat run/cluster/b/pid); deploy/cluster.sh status   # lose a site
  deploy/cluster.sh up                                  # bring it back
  deploy/cluster.sh down                                # stop everything
Configs, drives and logs are under run/cluster/<site>/; the S3 credentials are in
run/cluster/credentials. What works today and what is still being built: README.md.
EOT
