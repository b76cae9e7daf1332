#!/usr/bin/env bash
# Makes the certificates for mutual TLS between sites (docs/configuration.md,
# replicator/PROTOCOL.md section 1):
#   scripts/gen-site-certs.sh DIR NAME...
# For each site NAME: DIR/NAME.key and DIR/NAME.crt (EC P-256, CN = NAME,
# signed by DIR/ca.crt, which is made on the first run and reused after), and
# the line to put in the other sites' [peer.NAME] sections: its tls_pin (the
# SHA-256 of the certificate's SubjectPublicKeyInfo, which stays valid when
# the certificate is re-issued for the same key). Sites may instead trust
# the CA ([replication] tls_ca = DIR/ca.crt; the CN must be the site name).
# Existing keys are kept, so re-running re-issues certificates, pins unchanged.
# CERT_SAN (e.g. "DNS:s3.example.com,IP:10.0.0.5") adds subjectAltNames, for
# a certificate that also serves the S3 TLS listener ([s3] tls_cert).
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 DIR NAME..." >&2
    exit 2
fi
dir=$1; shift
days=${CERT_DAYS:-825}
mkdir -p "$dir"
umask 077
if [ ! -f "$dir/ca.key" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
        -subj "/CN=meridian-sites-ca" -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
fi
for name in "$@"; do
    case "$name" in
    *[!a-z0-9_-]* | "") echo "$0: '$name' is not a site name ([a-z0-9_-]+)" >&2; exit 2 ;;
    esac
    [ -f "$dir/$name.key" ] ||
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/$name.key"
    openssl req -new -key "$dir/$name.key" -subj "/CN=$name" -out "$dir/$name.csr" 2>/dev/null
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n' \
        >"$dir/$name.ext"
    [ -z "${CERT_SAN:-}" ] || echo "subjectAltName=$CERT_SAN" >>"$dir/$name.ext"
    openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
        -CAcreateserial -days "$days" -extfile "$dir/$name.ext" -out "$dir/$name.crt" 2>/dev/null
    rm -f "$dir/$name.csr" "$dir/$name.ext"
    pin=$(openssl x509 -in "$dir/$name.crt" -noout -pubkey | openssl pkey -pubin -outform der |
        openssl dgst -sha256 -r | cut -d' ' -f1)
    echo "[peer.$name] tls_pin = sha256:$pin"
done
chmod 644 "$dir"/*.crt
