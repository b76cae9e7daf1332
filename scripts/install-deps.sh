#!/usr/bin/env bash
# Installs the Debian packages Meridian needs, and only those that are missing.
#   scripts/install-deps.sh          build + run (the demo)
#   scripts/install-deps.sh --test   also the test clients and tools
#   scripts/install-deps.sh --bench  also the tools that measure ceilings (bench/run.sh)
# Runs apt-get update first when the package lists are empty (fresh machines).
set -euo pipefail

# libevent-dev brings libevent_openssl (TLS bufferevents); openssl is the CLI
# scripts/gen-site-certs.sh and the TLS tests use.
build_pkgs=(cmake make gcc pkg-config libevent-dev libnghttp2-dev libssl-dev liblmdb-dev
    lmdb-utils libprotobuf-c-dev protobuf-c-compiler libisal-dev node-llhttp libinih-dev
    libexpat1-dev libcurl4-openssl-dev curl ca-certificates openssl python3 procps)
test_pkgs=(python3-pytest python3-pytest-xdist python3-boto3 awscli s3cmd rclone clang
    libclang-rt-14-dev clang-format nghttp2-client faketime iproute2 nginx-light golang-go
    golang-github-minio-minio-go-v7-dev)
bench_pkgs=(iperf3 nghttp2-client nghttp2-server)

pkgs=("${build_pkgs[@]}")
for arg in "$@"; do
    case "$arg" in
    --test) pkgs+=("${test_pkgs[@]}") ;;
    --bench) pkgs+=("${test_pkgs[@]}" "${bench_pkgs[@]}") ;;
    *) echo "install-deps: unknown option $arg" >&2; exit 2 ;;
    esac
done

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e lock -e partial)" ]; then
    $sudo apt-get update -q
fi
if ! $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"; then
    # Stale lists (a mirror moved on): refresh once and retry.
    $sudo apt-get update -q
    $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
