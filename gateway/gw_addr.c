/*
 * gw_addr.c - S3 addressing: which bucket and key a request names.
 *
 * Two styles, both always served on the S3 port:
 *
 *   path style      Host: anything          GET /<bucket>/<key>
 *   virtual host    Host: <bucket>.<domain>  GET /<key>
 *
 * <domain> is one of the names listed in the configuration ([s3] domain).
 * A Host that is exactly a domain, an IP literal, or a name under no
 * configured domain means path style, so clients that address the gateway
 * by IP or by its plain name keep working. When several domains are
 * suffixes of the Host (s3.example.com and example.com), the longest wins:
 * "b.s3.example.com" is bucket "b", never bucket "b.s3". Host names compare
 * case-insensitively; the bucket taken from the Host is lower-cased (bucket
 * names are lower case, DNS is not case-sensitive); a port and one trailing
 * dot are ignored.
 *
 * Nothing is rewritten: SigV4 signs the request path as sent (the canonical
 * URI of a virtual-host request is "/<key>", with the Host header among the
 * signed headers), so the router authenticates the request as it arrived
 * and only then asks here where the bucket is.
 *
 * Requests a peer forwards (gw_proxy.c) keep their Host and path, since
 * the peer may check the client's signature again; the forwarding site adds
 * x-meridian-bucket naming the bucket it found in the Host, so the peer
 * needs neither the same domain list nor any domain at all. The header is
 * honoured only on requests that passed peer authentication (the caller
 * passes it as peer_bucket only then).
 *
 * The parser takes outside bytes (Host, path) and is fuzzed by
 * tests/fuzz/fuzz_sigv4.c. It allocates nothing: the key points into the
 * path.
 */
#include "gw_int.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

/* Copies a bucket name of n bytes (lower-cased when lower: a host name);
 * MRD_ETOOBIG past 63. A path-style name is kept as sent, so an upper-case
 * one is refused (InvalidBucketName) rather than silently renamed. */
static int
set_bucket(gw_s3_addr *a, const char *s, size_t n, int lower)
{
    if (n >= sizeof(a->bucket))
        return MRD_ETOOBIG;
    for (size_t i = 0; i < n; i++)
        a->bucket[i] = lower ? (char)tolower((unsigned char)s[i]) : s[i];
    a->bucket[n] = '\0';
    return 0;
}

/* The length of the bucket label in front of a configured domain in host
 * (hlen bytes, no port), or 0 when host is not under any domain. */
static size_t
vhost_bucket_len(const mrd_config *conf, const char *host, size_t hlen)
{
    size_t best = 0, best_dlen = 0;

    for (int i = 0; i < conf->n_s3_domains; i++) {
        const char *d = conf->s3_domains[i];
        size_t dlen = strlen(d);
        if (hlen == dlen && strncasecmp(host, d, dlen) == 0)
            return 0; /* the domain itself: path style */
        if (hlen > dlen + 1 && host[hlen - dlen - 1] == '.' &&
            strncasecmp(host + hlen - dlen, d, dlen) == 0 && dlen > best_dlen) {
            best = hlen - dlen - 1;
            best_dlen = dlen;
        }
    }
    return best;
}

int
gw_s3_addr_parse(const mrd_config *conf, const char *host, const char *path,
                 const char *peer_bucket, gw_s3_addr *out)
{
    gw_s3_addr a;
    size_t hlen = 0, blen = 0;
    const char *slash;
    int rc = 0;

    memset(&a, 0, sizeof(a));
    if (!path || path[0] != '/')
        return MRD_EINVAL;
    if (peer_bucket && *peer_bucket) {
        rc = set_bucket(&a, peer_bucket, strlen(peer_bucket), 0);
        blen = 1; /* the bucket is known: the path is all key */
    } else if (host && host[0] != '[') {
        const char *colon = strchr(host, ':');
        hlen = colon ? (size_t)(colon - host) : strlen(host);
        if (hlen && host[hlen - 1] == '.')
            hlen--;
        if ((blen = vhost_bucket_len(conf, host, hlen)) > 0)
            rc = set_bucket(&a, host, blen, 1);
    }
    if (rc == 0 && blen > 0) {
        a.vhost = 1;
        a.key = path[1] ? path + 1 : NULL;
    } else if (rc == 0 && path[1]) {
        slash = strchr(path + 1, '/');
        rc = set_bucket(&a, path + 1, slash ? (size_t)(slash - path - 1) : strlen(path + 1), 0);
        a.key = slash && slash[1] ? slash + 1 : NULL;
    }
    if (rc == 0)
        *out = a;
    return rc;
}
