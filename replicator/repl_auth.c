/*
 * repl_auth.c - request and response signatures on h2c replication links.
 *
 * Test clusters run replication over cleartext HTTP/2, so every message is
 * authenticated with the shared replication secret. A signature is
 *
 *   hex(HMAC-SHA256(secret, "MRD-REPL-1\n" method "\n" path "\n" site "\n"
 *                           time "\n" hex(SHA-256(body))))
 *
 * sent as x-meridian-auth next to x-meridian-site-id (the sender's decimal
 * site id) and x-meridian-time (the sender's wall clock, decimal ms since the
 * epoch). The version prefix keeps these MACs from ever being valid for some
 * other use of the same secret. A response is signed the same way with
 * method "RESP <status>" and, in place of the path, the request's own
 * x-meridian-auth value: an answer can then only be accepted for the request
 * it answers, so a recorded response cannot be replayed to a later heartbeat
 * (heartbeat bodies carry a fresh HLC stamp and sequence number, so no two
 * requests sign the same).
 *
 * The verifier is strict on syntax (site: 1..10 digits, nonzero; time: 1..16
 * digits; auth: exactly 64 lower-case hex digits), rejects a time more than
 * the skew window away from its own clock, and compares the signature in
 * constant time (mrd_consttime_equal) so timing reveals nothing about how
 * many leading characters matched. A request replayed within the window is
 * accepted again; that is harmless for heartbeats, and record batches will
 * be idempotent by (origin, LSN). Production links use mutual TLS instead
 * (PROTOCOL.md).
 *
 * Without a secret (secret NULL: every link is mutual TLS, and the handshake
 * already named the peer, repl_tls.c) nothing is signed: x-meridian-auth
 * carries the fixed marker "mtls" (REPL_AUTH_MTLS) and neither side hashes
 * the body, which spares the receiver a SHA-256 over every record batch
 * head. Site id and time keep their syntax and skew checks (the time gives
 * the clock offset). A marker where a signature is expected, or the
 * reverse, is refused with a reason that names the mismatch, so a site with
 * a secret and one without cannot mistake each other for a wrong secret.
 *
 * The data check (repl__dcheck) follows a record's object data, which the
 * request signature does not cover (PROTOCOL.md section 6): a CRC32C on TLS
 * links, a Poly1305 tag over the signed head and the data on h2c links, under
 * a one-time key derived from the secret and a nonce in the head
 * (repl_int.h has the construction). It is streamed (EVP_MAC), a chunk at a
 * time, on whichever thread reads or writes that chunk. The Poly1305
 * algorithm is fetched from OpenSSL's provider store once per repl, not
 * per request (a fetch takes the store's lock and a lookup), and passed in;
 * each check's context holds its own reference to it. A check that cannot
 * be computed (OpenSSL failing an update or the final step) says so from
 * repl__dcheck_final, so a sender fails the request rather than send data
 * without its check.
 *
 * These functions are pure (no I/O, no logging, no clock): the fuzz target
 * drives them directly. The two at the end sign and check S3 requests one
 * gateway forwards to a peer's S3 listener (routed reads and write
 * failover, PROTOCOL.md section 8) with the same secret and construction;
 * they take the repl only for its secret, site id, clock and peer table;
 * without a secret they refuse, as nothing authenticates such a hop.
 */
#include "repl_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#define AUTH_PREFIX "MRD-REPL-1\n"

static void
to_hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

void
repl__auth_sign(const char *secret, size_t secret_len, const char *method, const char *path,
                uint32_t site, uint64_t time_ms, const void *body, size_t body_len, char out[65])
{
    unsigned char digest[SHA256_DIGEST_LENGTH], mac[EVP_MAX_MD_SIZE];
    char body_hex[2 * SHA256_DIGEST_LENGTH + 1], head[64];
    unsigned int mac_len = 0;

    if (!secret) {
        memcpy(out, REPL_AUTH_MTLS, sizeof(REPL_AUTH_MTLS));
        return;
    }
    SHA256(body_len ? body : (const void *)"", body_len, digest);
    to_hex(digest, sizeof(digest), body_hex);
    snprintf(head, sizeof(head), "\n%" PRIu32 "\n%" PRIu64 "\n", site, time_ms);

    /* HMAC_CTX is deprecated in OpenSSL 3.0: join the string to sign and use
     * the one-shot HMAC(). */
    {
        size_t ml = strlen(method), pl = strlen(path), hl = strlen(head);
        size_t total = sizeof(AUTH_PREFIX) - 1 + ml + 1 + pl + hl + sizeof(body_hex) - 1;
        char stackbuf[1024];
        char *msg = total <= sizeof(stackbuf) ? stackbuf : NULL;
        size_t off = 0;

        if (!msg) {
            /* Callers bound method and path to REPL_HDR_VALUE_MAX; this
             * cannot happen, but never overflow: sign a truncation marker
             * that no verifier will match. */
            memset(out, '0', 64);
            out[64] = '\0';
            return;
        }
        memcpy(msg + off, AUTH_PREFIX, sizeof(AUTH_PREFIX) - 1);
        off += sizeof(AUTH_PREFIX) - 1;
        memcpy(msg + off, method, ml);
        off += ml;
        msg[off++] = '\n';
        memcpy(msg + off, path, pl);
        off += pl;
        memcpy(msg + off, head, hl);
        off += hl;
        memcpy(msg + off, body_hex, sizeof(body_hex) - 1);
        off += sizeof(body_hex) - 1;
        HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)msg, off, mac, &mac_len);
    }
    to_hex(mac, mac_len, out);
}

static int
parse_digits(const char *s, int max_digits, uint64_t *out)
{
    uint64_t v = 0;
    int n = 0;

    if (!s || !*s)
        return MRD_EINVAL;
    for (; s[n]; n++) {
        if (n >= max_digits || s[n] < '0' || s[n] > '9')
            return MRD_EINVAL;
        v = v * 10 + (uint64_t)(s[n] - '0');
    }
    *out = v;
    return 0;
}

int
repl__parse_site(const char *s, uint32_t *out)
{
    uint64_t v;

    if (parse_digits(s, 10, &v) < 0 || v == 0 || v > UINT32_MAX)
        return MRD_EINVAL;
    *out = (uint32_t)v;
    return 0;
}

int
repl__parse_time(const char *s, uint64_t *out)
{
    return parse_digits(s, 16, out);
}

static int
is_sig_syntax(const char *s)
{
    size_t i;

    for (i = 0; s[i]; i++) {
        if (i >= 64 || !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    }
    return i == 64;
}

int
repl__auth_verify(const char *secret, size_t secret_len, const repl__auth_in *in, uint64_t now_ms,
                  uint32_t max_skew_ms, const char **reason, uint32_t *site_out)
{
    uint32_t site;
    uint64_t t, skew;
    char want[65];
    int mtls;

    if (!in->method || !in->path || strlen(in->method) >= REPL_HDR_VALUE_MAX ||
        strlen(in->path) >= REPL_HDR_VALUE_MAX) {
        *reason = "missing or oversized method or path";
        return MRD_EINVAL;
    }
    if (!in->site || !in->time || !in->auth) {
        *reason = "missing x-meridian-site-id, x-meridian-time or x-meridian-auth";
        return MRD_EINVAL;
    }
    if (repl__parse_site(in->site, &site) < 0) {
        *reason = "malformed x-meridian-site-id";
        return MRD_EINVAL;
    }
    if (repl__parse_time(in->time, &t) < 0) {
        *reason = "malformed x-meridian-time";
        return MRD_EINVAL;
    }
    mtls = strcmp(in->auth, REPL_AUTH_MTLS) == 0;
    if (!mtls && !is_sig_syntax(in->auth)) {
        *reason =
            "malformed x-meridian-auth (want 64 lower-case hex digits, or \"" REPL_AUTH_MTLS "\")";
        return MRD_EINVAL;
    }
    if ((secret == NULL) != mtls) {
        *reason = secret ? REPL_AUTH_WHY_PEER_NO_SECRET : REPL_AUTH_WHY_PEER_SECRET;
        return MRD_EAUTH;
    }
    skew = t > now_ms ? t - now_ms : now_ms - t;
    if (skew > max_skew_ms) {
        *reason = "x-meridian-time outside the clock-skew window";
        return MRD_EAUTH;
    }
    if (secret) {
        repl__auth_sign(secret, secret_len, in->method, in->path, site, t, in->body, in->body_len,
                        want);
        if (!mrd_consttime_equal(want, 64, in->auth, strlen(in->auth))) {
            *reason = "signature mismatch (wrong replication secret?)";
            return MRD_EAUTH;
        }
    }
    *site_out = site;
    return 0;
}

/* ---- proxied S3 requests (PROTOCOL.md section 8) ------------------------ */

/* The signed body of a proxied request: the raw target (it may be far longer
 * than a header value) and the payload hash the peer will check the body
 * against. The method is prefixed "PROXY " so that no signature made here is
 * ever valid as a replication request, and the reverse. */
static int
proxy_signed(const char *method, const char *target, const char *payload_hash, char *meth,
             size_t methsz, mrd_buf *body)
{
    if ((size_t)snprintf(meth, methsz, "PROXY %s", method) >= methsz)
        return MRD_EINVAL;
    return mrd_buf_appendf(body, "%s\n%s", target, payload_hash ? payload_hash : "");
}

int
repl_proxy_sign(const repl *r, const char *method, const char *target, const char *payload_hash,
                repl_proxy_sig *out)
{
    char meth[32];
    mrd_buf body = {0};
    uint64_t now = repl__now_ms(r);
    int rc = r->secret ? proxy_signed(method, target, payload_hash, meth, sizeof(meth), &body)
                       : MRD_EAUTH; /* no secret: nothing to sign a hop with */

    if (rc == 0) {
        repl__auth_sign(r->secret, r->secret_len, meth, REPL_PATH_PROXY, r->site_id, now, body.data,
                        body.len, out->auth);
        snprintf(out->site, sizeof(out->site), "%u", r->site_id);
        snprintf(out->time, sizeof(out->time), "%" PRIu64, now);
    }
    mrd_buf_free(&body);
    return rc;
}

int
repl_proxy_verify(const repl *r, const char *method, const char *target, const char *payload_hash,
                  const repl_proxy_sig *sig, uint32_t *site_out, const char **reason)
{
    uint32_t site = 0;
    int rc = repl_proxy_check(r, method, target, payload_hash, sig, &site, reason);

    if (rc == 0 && !repl__peer_by_id((repl *)r, site)) {
        *reason = "site id is not a configured peer";
        rc = MRD_EAUTH;
    }
    if (rc == 0)
        *site_out = site;
    return rc;
}

int
repl_proxy_check(const repl *r, const char *method, const char *target, const char *payload_hash,
                 const repl_proxy_sig *sig, uint32_t *site_out, const char **reason)
{
    char meth[32];
    mrd_buf body = {0};
    repl__auth_in in;
    uint32_t site = 0;
    int rc = proxy_signed(method, target, payload_hash, meth, sizeof(meth), &body);

    *reason = "malformed request method";
    if (rc == 0 && !r->secret) {
        /* the marker would pass repl__auth_verify: a hop over a plain S3
         * listener is never authenticated without a secret */
        *reason = "this site has no replication secret, so it takes no forwarded requests";
        rc = MRD_EAUTH;
    }
    if (rc == 0) {
        memset(&in, 0, sizeof(in));
        in.method = meth;
        in.path = REPL_PATH_PROXY;
        in.site = sig->site;
        in.time = sig->time;
        in.auth = sig->auth;
        in.body = body.data;
        in.body_len = body.len;
        rc = repl__auth_verify(r->secret, r->secret_len, &in, repl__now_ms(r),
                               r->o.max_clock_skew_ms, reason, &site);
    }
    if (rc == 0)
        *site_out = site;
    mrd_buf_free(&body);
    return rc;
}

/* ---- the data check ------------------------------------------------------ */

#define DCHECK_PREFIX "MRD-REPL-DATA-1\n"

struct evp_mac_st *
repl__dcheck_mac_fetch(void)
{
    return EVP_MAC_fetch(NULL, "POLY1305", NULL);
}

void
repl__dcheck_mac_free(struct evp_mac_st *mac)
{
    EVP_MAC_free(mac);
}

size_t
repl__dcheck_len(uint32_t kind)
{
    return kind == REPL_DCHECK_CRC32C ? 4 : kind == REPL_DCHECK_POLY1305 ? 16 : 0;
}

int
repl__dcheck_init(repl__dcheck *d, struct evp_mac_st *poly1305, uint32_t kind, const char *secret,
                  size_t secret_len, const uint8_t *nonce, size_t nonce_len, const void *head,
                  size_t head_len)
{
    unsigned char msg[sizeof(DCHECK_PREFIX) - 1 + REPL_DCHECK_NONCE], key[32];
    unsigned int key_len = 0;
    int rc = 0;

    memset(d, 0, sizeof(*d));
    d->kind = kind;
    if (kind == REPL_DCHECK_NONE || kind == REPL_DCHECK_CRC32C)
        return 0;
    if (kind != REPL_DCHECK_POLY1305 || !poly1305 || !secret || !secret_len || !nonce ||
        nonce_len != REPL_DCHECK_NONCE)
        return MRD_EINVAL;
    /* the one-time key: this request's alone (its nonce is) */
    memcpy(msg, DCHECK_PREFIX, sizeof(DCHECK_PREFIX) - 1);
    memcpy(msg + sizeof(DCHECK_PREFIX) - 1, nonce, REPL_DCHECK_NONCE);
    if (!HMAC(EVP_sha256(), secret, (int)secret_len, msg, sizeof(msg), key, &key_len) ||
        key_len != sizeof(key))
        return -ENOMEM;
    /* the context takes its own reference to the fetched MAC */
    if (!(d->mac = EVP_MAC_CTX_new(poly1305)) ||
        EVP_MAC_init(d->mac, key, sizeof(key), NULL) != 1 ||
        EVP_MAC_update(d->mac, head, head_len) != 1) {
        EVP_MAC_CTX_free(d->mac);
        d->mac = NULL;
        rc = -ENOMEM;
    }
    OPENSSL_cleanse(key, sizeof(key));
    return rc;
}

void
repl__dcheck_update(repl__dcheck *d, const void *data, size_t len)
{
    if (d->kind == REPL_DCHECK_CRC32C)
        d->crc = mrd_crc32c(d->crc, data, len);
    else if (d->mac && EVP_MAC_update(d->mac, data, len) != 1)
        d->failed = 1;
}

int
repl__dcheck_final(repl__dcheck *d, uint8_t *out, size_t *out_len)
{
    size_t n = 0;
    int rc = 0;

    if (d->kind == REPL_DCHECK_CRC32C) {
        out[0] = (uint8_t)(d->crc >> 24);
        out[1] = (uint8_t)(d->crc >> 16);
        out[2] = (uint8_t)(d->crc >> 8);
        out[3] = (uint8_t)d->crc;
        n = 4;
    } else if (d->kind == REPL_DCHECK_POLY1305 &&
               (!d->mac || d->failed || EVP_MAC_final(d->mac, out, &n, REPL_DCHECK_MAX) != 1 ||
                n != repl__dcheck_len(d->kind))) {
        rc = -EIO; /* no tag: the caller must not send or compare one */
    }
    repl__dcheck_free(d);
    if (rc == 0)
        *out_len = n;
    return rc;
}

void
repl__dcheck_free(repl__dcheck *d)
{
    EVP_MAC_CTX_free(d->mac);
    d->mac = NULL;
}
