/*
 * gw_sigv4.c - AWS Signature Version 4: parsing, canonical request, string
 * to sign, signature, and the check against the configured users.
 *
 * The algorithm (docs.aws.amazon.com, "Signature Version 4 signing process"):
 *   Task 1, canonical request:
 *       METHOD \n
 *       canonical URI   - the path, each byte outside A-Za-z0-9-._~ and '/'
 *                         percent-encoded (upper-case hex). S3 does not
 *                         normalise or double-encode, so we decode what the
 *                         client sent and encode it again: two clients that
 *                         escape differently (one leaves '=' alone, one does
 *                         not) both verify. A client that escaped a '/' in a
 *                         key (%2F) signed the path exactly as sent, which
 *                         re-encoding cannot rebuild: when the first
 *                         signature does not match and the path as sent
 *                         differs from its re-encoding, the path as sent is
 *                         tried as the canonical URI too. This is always the
 *                         request path, never a rewritten one: a
 *                         virtual-host request ("Host: bucket.domain",
 *                         "/key") signs "/key" (gw_addr.c).
 *       canonical query - every parameter decoded and re-encoded ('/' too),
 *                         sorted by name then value, "name=value" joined
 *                         by '&'; a presigned URL's X-Amz-Signature is left
 *                         out.
 *       canonical headers - for each signed header name, in the order of
 *                         SignedHeaders: "name:v1,v2\n", values trimmed and
 *                         inner runs of spaces collapsed.
 *       \n SignedHeaders \n payload hash
 *   Task 2, string to sign:
 *       "AWS4-HMAC-SHA256\n" amz-date "\n" date/region/service/aws4_request
 *       "\n" hex(SHA256(canonical request))
 *   Task 3, signature: HMAC chain "AWS4"+secret -> date -> region ->
 *       service -> "aws4_request", then HMAC(key, string to sign), in hex.
 *
 * The payload hash is whatever the client declared (x-amz-content-sha256,
 * or UNSIGNED-PAYLOAD for presigned URLs); the PUT handler checks a declared
 * SHA-256 against the body as it streams (the store hashes in the same pass
 * as MD5 and the erasure code), so a signed body is never read twice.
 *
 * Security notes: signatures are compared with mrd_consttime_equal; the
 * secret never appears in logs or errors; unknown access keys and bad
 * signatures take the same code path up to the compare; clock skew beyond
 * 15 minutes is refused (RequestTimeTooSkewed) so a captured request cannot
 * be replayed later; presigned URLs expire after X-Amz-Expires (at most 7
 * days). Every parser here takes untrusted bytes and is fuzzed
 * (tests/fuzz/fuzz_sigv4.c).
 */
#include "gw_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#define ALGO "AWS4-HMAC-SHA256"

/* ---- encoding helpers --------------------------------------------------- */

static int
hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int
gw_url_decode(const char *s, size_t len, int plus_space, mrd_buf *out)
{
    int rc = mrd_buf_reserve(out, len + 1);

    for (size_t i = 0; i < len && rc == 0; i++) {
        char c = s[i];
        if (c == '%') {
            int h, l;
            if (i + 2 >= len || (h = hexval((unsigned char)s[i + 1])) < 0 ||
                (l = hexval((unsigned char)s[i + 2])) < 0)
                return MRD_EINVAL;
            c = (char)(h * 16 + l);
            i += 2;
        } else if (c == '+' && plus_space) {
            c = ' ';
        }
        rc = mrd_buf_append(out, &c, 1);
    }
    if (rc == 0)
        rc = mrd_buf_append(out, "", 0); /* NUL-terminates, even when empty */
    return rc;
}

int
gw_uri_encode(mrd_buf *out, const char *s, size_t len, int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    int rc = mrd_buf_reserve(out, len * 3 + 1);

    for (size_t i = 0; i < len && rc == 0; i++) {
        unsigned char c = (unsigned char)s[i];
        if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' ||
            (c == '/' && keep_slash)) {
            rc = mrd_buf_append(out, &s[i], 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            rc = mrd_buf_append(out, e, 3);
        }
    }
    if (rc == 0)
        rc = mrd_buf_append(out, "", 0); /* NUL-terminates, even when empty */
    return rc;
}

int
gw_query_param(const char *query, const char *name, mrd_buf *out)
{
    size_t nl = strlen(name);
    const char *p = query;

    while (p && *p) {
        const char *amp = strchr(p, '&');
        size_t plen = amp ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', plen);
        size_t klen = eq ? (size_t)(eq - p) : plen;
        if (klen == nl && memcmp(p, name, nl) == 0) {
            mrd_buf_reset(out);
            if (eq)
                gw_url_decode(eq + 1, plen - klen - 1, 1, out);
            else
                mrd_buf_append(out, "", 0);
            return 1;
        }
        p = amp ? amp + 1 : NULL;
    }
    return 0;
}

static void
hex_encode(const unsigned char *in, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static void
hmac(const void *key, size_t klen, const void *msg, size_t mlen, unsigned char out[32])
{
    unsigned int n = 32;

    HMAC(EVP_sha256(), key, (int)klen, msg, mlen, out, &n);
}

/* ---- parsing ------------------------------------------------------------ */

/* Copies [s, s+n) into dst (size cap) or fails. */
static int
copy_field(char *dst, size_t cap, const char *s, size_t n)
{
    if (n == 0 || n >= cap)
        return MRD_EINVAL;
    memcpy(dst, s, n);
    dst[n] = '\0';
    return 0;
}

/* "AKID/20130524/us-east-1/s3/aws4_request" */
static int
parse_credential(const char *s, size_t n, gw_sigv4_auth *out)
{
    const char *part[5];
    size_t plen[5];
    int k = 0;
    const char *p = s, *end = s + n;

    /* the access key may not contain '/', the scope parts neither */
    while (k < 5) {
        const char *slash = memchr(p, '/', (size_t)(end - p));
        part[k] = p;
        plen[k] = slash ? (size_t)(slash - p) : (size_t)(end - p);
        k++;
        if (!slash)
            break;
        p = slash + 1;
    }
    if (k != 5 || p + plen[4] != end)
        return MRD_EINVAL;
    if (plen[4] != 12 || memcmp(part[4], "aws4_request", 12) != 0 || plen[1] != 8)
        return MRD_EINVAL;
    for (size_t i = 0; i < 8; i++)
        if (!isdigit((unsigned char)part[1][i]))
            return MRD_EINVAL;
    if (copy_field(out->access_key, sizeof(out->access_key), part[0], plen[0]) != 0 ||
        copy_field(out->date, sizeof(out->date), part[1], plen[1]) != 0 ||
        copy_field(out->region, sizeof(out->region), part[2], plen[2]) != 0 ||
        copy_field(out->service, sizeof(out->service), part[3], plen[3]) != 0)
        return MRD_EINVAL;
    return 0;
}

static int
valid_signed_headers(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (isupper(c) || c <= ' ' || c == ',' || c == ':' || c >= 0x7f)
            return 0;
    }
    return 1;
}

static int
valid_hex_sig(const char *s)
{
    if (strlen(s) != 64)
        return 0;
    for (; *s; s++)
        if (!isxdigit((unsigned char)*s) || isupper((unsigned char)*s))
            return 0;
    return 1;
}

int
gw_sigv4_parse_header(const char *value, gw_sigv4_auth *out)
{
    gw_sigv4_auth a;
    const char *p;
    int have = 0;

    if (!value || strncmp(value, ALGO " ", sizeof(ALGO)) != 0)
        return MRD_EINVAL;
    memset(&a, 0, sizeof(a));
    p = value + sizeof(ALGO);
    while (*p) {
        const char *end, *eq;
        size_t n;
        while (*p == ' ' || *p == ',')
            p++;
        if (!*p)
            break;
        end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        n = (size_t)(end - p);
        while (n && p[n - 1] == ' ')
            n--;
        eq = memchr(p, '=', n);
        if (!eq)
            return MRD_EINVAL;
        size_t kl = (size_t)(eq - p), vl = n - kl - 1;
        const char *v = eq + 1;
        if (kl == 10 && memcmp(p, "Credential", 10) == 0) {
            if (parse_credential(v, vl, &a) != 0)
                return MRD_EINVAL;
            have |= 1;
        } else if (kl == 13 && memcmp(p, "SignedHeaders", 13) == 0) {
            if (copy_field(a.signed_headers, sizeof(a.signed_headers), v, vl) != 0 ||
                !valid_signed_headers(a.signed_headers))
                return MRD_EINVAL;
            have |= 2;
        } else if (kl == 9 && memcmp(p, "Signature", 9) == 0) {
            if (copy_field(a.signature, sizeof(a.signature), v, vl) != 0 ||
                !valid_hex_sig(a.signature))
                return MRD_EINVAL;
            have |= 4;
        } else {
            return MRD_EINVAL;
        }
        p = end;
    }
    if (have != 7)
        return MRD_EINVAL;
    *out = a;
    return 0;
}

int
gw_sigv4_parse_amz_date(const char *s, int64_t *out)
{
    struct tm tm;

    if (!s || strlen(s) != 16 || s[8] != 'T' || s[15] != 'Z')
        return MRD_EINVAL;
    for (int i = 0; i < 15; i++)
        if (i != 8 && !isdigit((unsigned char)s[i]))
            return MRD_EINVAL;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0') - 1900;
    tm.tm_mon = (s[4] - '0') * 10 + (s[5] - '0') - 1;
    tm.tm_mday = (s[6] - '0') * 10 + (s[7] - '0');
    tm.tm_hour = (s[9] - '0') * 10 + (s[10] - '0');
    tm.tm_min = (s[11] - '0') * 10 + (s[12] - '0');
    tm.tm_sec = (s[13] - '0') * 10 + (s[14] - '0');
    if (tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 ||
        tm.tm_sec > 60)
        return MRD_EINVAL;
    *out = (int64_t)timegm(&tm);
    return 0;
}

int
gw_sigv4_parse_query(const char *query, gw_sigv4_auth *out)
{
    gw_sigv4_auth a;
    mrd_buf v = {0};
    int rc = MRD_EINVAL;
    char *end;

    if (!gw_query_param(query, "X-Amz-Algorithm", &v)) {
        mrd_buf_free(&v);
        return MRD_ENOTFOUND;
    }
    memset(&a, 0, sizeof(a));
    a.presigned = 1;
    if (strcmp(v.data, ALGO) != 0)
        goto out;
    if (!gw_query_param(query, "X-Amz-Credential", &v) || parse_credential(v.data, v.len, &a) != 0)
        goto out;
    if (!gw_query_param(query, "X-Amz-Date", &v) ||
        copy_field(a.amz_date, sizeof(a.amz_date), v.data, v.len) != 0)
        goto out;
    if (!gw_query_param(query, "X-Amz-Expires", &v) || v.len == 0 || v.len > 10)
        goto out;
    a.expires = strtoull(v.data, &end, 10);
    if (*end || !isdigit((unsigned char)v.data[0]))
        goto out;
    if (!gw_query_param(query, "X-Amz-SignedHeaders", &v) ||
        copy_field(a.signed_headers, sizeof(a.signed_headers), v.data, v.len) != 0 ||
        !valid_signed_headers(a.signed_headers))
        goto out;
    if (!gw_query_param(query, "X-Amz-Signature", &v) ||
        copy_field(a.signature, sizeof(a.signature), v.data, v.len) != 0 ||
        !valid_hex_sig(a.signature))
        goto out;
    strcpy(a.payload_hash, "UNSIGNED-PAYLOAD");
    *out = a;
    rc = 0;
out:
    mrd_buf_free(&v);
    return rc;
}

/* ---- canonical request -------------------------------------------------- */

typedef struct qparam {
    char *name, *value; /* encoded */
} qparam;

static int
qparam_cmp(const void *a, const void *b)
{
    const qparam *x = a, *y = b;
    int c = strcmp(x->name, y->name);

    return c ? c : strcmp(x->value, y->value);
}

static int
canonical_query(const char *query, int presigned, mrd_buf *out)
{
    qparam *ps = NULL;
    size_t n = 0, cap = 0;
    const char *p = query;
    int rc = 0;
    mrd_buf dec = {0}, enc = {0};

    while (p && *p && rc == 0) {
        const char *amp = strchr(p, '&');
        size_t plen = amp ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', plen);
        size_t klen = eq ? (size_t)(eq - p) : plen;
        qparam q;
        if (plen == 0)
            goto next;
        mrd_buf_reset(&dec);
        mrd_buf_reset(&enc);
        if ((rc = gw_url_decode(p, klen, 0, &dec)) != 0 ||
            (rc = gw_uri_encode(&enc, dec.data, dec.len, 0)) != 0)
            break;
        if (presigned && strcmp(dec.data, "X-Amz-Signature") == 0)
            goto next;
        q.name = strdup(enc.data);
        mrd_buf_reset(&dec);
        mrd_buf_reset(&enc);
        if (eq)
            rc = gw_url_decode(eq + 1, plen - klen - 1, 0, &dec);
        else
            rc = mrd_buf_append(&dec, "", 0);
        if (rc == 0)
            rc = gw_uri_encode(&enc, dec.data, dec.len, 0);
        q.value = rc == 0 ? strdup(enc.data) : NULL;
        if (!q.name || !q.value) {
            free(q.name);
            free(q.value);
            rc = rc ? rc : -ENOMEM;
            break;
        }
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 8;
            qparam *np = realloc(ps, nc * sizeof(*np));
            if (!np) {
                free(q.name);
                free(q.value);
                rc = -ENOMEM;
                break;
            }
            ps = np;
            cap = nc;
        }
        ps[n++] = q;
    next:
        p = amp ? amp + 1 : NULL;
    }
    if (rc == 0 && n)
        qsort(ps, n, sizeof(*ps), qparam_cmp);
    for (size_t i = 0; i < n; i++) {
        if (rc == 0)
            rc = mrd_buf_appendf(out, "%s%s=%s", i ? "&" : "", ps[i].name, ps[i].value);
        free(ps[i].name);
        free(ps[i].value);
    }
    free(ps);
    mrd_buf_free(&dec);
    mrd_buf_free(&enc);
    return rc;
}

/* Appends header value v trimmed, with inner runs of spaces collapsed. */
static int
append_trimmed(mrd_buf *out, const char *v)
{
    int rc = 0, space = 0, any = 0;

    while (*v == ' ' || *v == '\t')
        v++;
    for (; *v && rc == 0; v++) {
        if (*v == ' ' || *v == '\t') {
            space = 1;
            continue;
        }
        if (space && any)
            rc = mrd_buf_append(out, " ", 1);
        space = 0;
        any = 1;
        if (rc == 0)
            rc = mrd_buf_append(out, v, 1);
    }
    return rc;
}

/* The canonical request with the path re-encoded, or (raw_path) the path
 * exactly as sent. */
static int
canonical_request(const gw_sigv4_input *in, const gw_sigv4_auth *a, const char *payload_hash,
                  int raw_path, mrd_buf *out)
{
    mrd_buf path = {0};
    const char *h = a->signed_headers;
    int rc;

    rc = mrd_buf_appendf(out, "%s\n", in->method);
    if (rc == 0 && raw_path)
        rc = mrd_buf_append(out, in->path, strlen(in->path));
    else if (rc == 0)
        rc = gw_url_decode(in->path, strlen(in->path), 0, &path);
    if (rc == 0 && !raw_path)
        rc = gw_uri_encode(out, path.data, path.len, 1);
    if (rc == 0)
        rc = mrd_buf_append(out, "\n", 1);
    if (rc == 0)
        rc = canonical_query(in->query ? in->query : "", a->presigned, out);
    if (rc == 0)
        rc = mrd_buf_append(out, "\n", 1);
    while (rc == 0 && *h) {
        const char *semi = strchr(h, ';');
        size_t n = semi ? (size_t)(semi - h) : strlen(h);
        int found = 0;
        rc = mrd_buf_append(out, h, n);
        if (rc == 0)
            rc = mrd_buf_append(out, ":", 1);
        for (int i = 0; i < in->n_headers && rc == 0; i++) {
            if (strlen(in->hname[i]) != n || strncasecmp(in->hname[i], h, n) != 0)
                continue;
            if (found)
                rc = mrd_buf_append(out, ",", 1);
            if (rc == 0)
                rc = append_trimmed(out, in->hvalue[i]);
            found = 1;
        }
        if (!found && rc == 0)
            rc = MRD_EINVAL;
        if (rc == 0)
            rc = mrd_buf_append(out, "\n", 1);
        h = semi ? semi + 1 : h + n;
    }
    if (rc == 0)
        rc = mrd_buf_appendf(out, "\n%s\n%s", a->signed_headers, payload_hash);
    mrd_buf_free(&path);
    return rc;
}

int
gw_sigv4_canonical_request(const gw_sigv4_input *in, const gw_sigv4_auth *a,
                           const char *payload_hash, mrd_buf *out)
{
    return canonical_request(in, a, payload_hash, 0, out);
}

/* 1 when the path as sent is not what re-encoding it gives (e.g. "%2F",
 * lower-case hex), so a client may have signed it as sent. */
static int
path_differs_from_canonical(const char *p)
{
    mrd_buf dec = {0}, enc = {0};
    int differs = gw_url_decode(p, strlen(p), 0, &dec) == 0 &&
                  gw_uri_encode(&enc, dec.data, dec.len, 1) == 0 && strcmp(enc.data, p) != 0;

    mrd_buf_free(&dec);
    mrd_buf_free(&enc);
    return differs;
}

/* Compares a's signature with ours over the canonical request (raw_path:
 * see canonical_request). Returns 1 on a match, 0 on a mismatch, or a
 * negative code (a signed header is missing: MRD_EINVAL; -ENOMEM). */
static int
signature_matches(const gw_sigv4_input *in, const gw_sigv4_auth *a, const char *secret,
                  int raw_path)
{
    mrd_buf creq = {0}, sts = {0};
    char sig[65];
    int rc = canonical_request(in, a, a->payload_hash, raw_path, &creq);

    if (rc == 0)
        rc = gw_sigv4_string_to_sign(a, creq.data, creq.len, &sts) == 0 ? 0 : -ENOMEM;
    if (rc == 0) {
        gw_sigv4_sign(secret, a, sts.data, sts.len, sig);
        rc = mrd_consttime_equal(sig, 64, a->signature, strlen(a->signature));
    }
    mrd_buf_free(&creq);
    mrd_buf_free(&sts);
    return rc;
}

int
gw_sigv4_string_to_sign(const gw_sigv4_auth *a, const char *creq, size_t creq_len, mrd_buf *out)
{
    unsigned char digest[32];
    char hex[65];

    SHA256((const unsigned char *)creq, creq_len, digest);
    hex_encode(digest, 32, hex);
    return mrd_buf_appendf(out, ALGO "\n%s\n%s/%s/%s/aws4_request\n%s", a->amz_date, a->date,
                           a->region, a->service, hex);
}

void
gw_sigv4_signing_key(const char *secret, const gw_sigv4_auth *a, unsigned char key[32])
{
    /* The key is a function of (secret, date, region, service) and changes
     * once a day, but deriving it costs four HMACs (OpenSSL 3 fetches the
     * digest on every EVP_Q_mac): 6% of the daemon's CPU under a 4 KiB GET
     * load. So each thread keeps the last few keys it derived. The inputs
     * compared are the configured secret (not the client's bytes) and the
     * scope the signature names. */
    typedef struct sigkey_ent {
        char k0[200]; /* "AWS4" + secret, as the derivation uses it */
        char date[sizeof(a->date)], region[sizeof(a->region)], service[sizeof(a->service)];
        unsigned char key[32];
    } sigkey_ent;
    static __thread sigkey_ent cache[4];
    static __thread unsigned next;
    char k0[200];
    int n = snprintf(k0, sizeof(k0), "AWS4%s", secret);
    sigkey_ent *e = NULL;

    if (n < 0 || (size_t)n >= sizeof(k0))
        n = (int)sizeof(k0) - 1;
    for (unsigned i = 0; i < 4 && !e; i++)
        if (cache[i].k0[0] && strcmp(cache[i].k0, k0) == 0 && strcmp(cache[i].date, a->date) == 0 &&
            strcmp(cache[i].region, a->region) == 0 && strcmp(cache[i].service, a->service) == 0)
            e = &cache[i];
    if (!e) {
        hmac(k0, (size_t)n, a->date, strlen(a->date), key);
        hmac(key, 32, a->region, strlen(a->region), key);
        hmac(key, 32, a->service, strlen(a->service), key);
        hmac(key, 32, "aws4_request", 12, key);
        e = &cache[next++ % 4];
        memcpy(e->k0, k0, sizeof(k0));
        snprintf(e->date, sizeof(e->date), "%s", a->date);
        snprintf(e->region, sizeof(e->region), "%s", a->region);
        snprintf(e->service, sizeof(e->service), "%s", a->service);
        memcpy(e->key, key, 32);
    }
    memcpy(key, e->key, 32);
    OPENSSL_cleanse(k0, sizeof(k0));
}

void
gw_sigv4_sign(const char *secret, const gw_sigv4_auth *a, const char *sts, size_t sts_len,
              char hex[65])
{
    unsigned char key[32], sig[32];

    gw_sigv4_signing_key(secret, a, key);
    hmac(key, 32, sts, sts_len, sig);
    hex_encode(sig, 32, hex);
    OPENSSL_cleanse(key, sizeof(key));
}

/* ---- verification ------------------------------------------------------- */

static const char *
header(const gw_sigv4_input *in, const char *name)
{
    for (int i = 0; i < in->n_headers; i++)
        if (strcasecmp(in->hname[i], name) == 0)
            return in->hvalue[i];
    return NULL;
}

#define FAIL(err, msg)                                                                             \
    do {                                                                                           \
        *why = (msg);                                                                              \
        rc = (int)(err) + 1;                                                                       \
        goto out;                                                                                  \
    } while (0)

int
gw_sigv4_verify(const gw_sigv4_input *in, const mrd_config *conf, int64_t now, gw_sigv4_auth *auth,
                const char **why)
{
    gw_sigv4_auth a;
    const char *authz = header(in, "authorization"), *secret = NULL, *v;
    int64_t t;
    int rc = 0, qrc, match;

    *why = "";
    memset(&a, 0, sizeof(a));
    qrc = gw_sigv4_parse_query(in->query ? in->query : "", &a);
    if (authz) {
        if (strncmp(authz, "AWS ", 4) == 0)
            FAIL(GW_S3E_INVALID_REQUEST, "signature v2 is not supported; use AWS4-HMAC-SHA256");
        if (gw_sigv4_parse_header(authz, &a) != 0)
            FAIL(GW_S3E_AUTH_HEADER_MALFORMED, "malformed Authorization header");
        v = header(in, "x-amz-date");
        if (!v || copy_field(a.amz_date, sizeof(a.amz_date), v, strlen(v)) != 0)
            FAIL(GW_S3E_ACCESS_DENIED, "missing or bad x-amz-date");
        v = header(in, "x-amz-content-sha256");
        if (!v) {
            /* Only a bodiless request may omit it: its hash is known. */
            if (header(in, "content-length") && strcmp(header(in, "content-length"), "0") != 0)
                FAIL(GW_S3E_INVALID_REQUEST, "missing x-amz-content-sha256: send the hex "
                                             "SHA-256 of the body or UNSIGNED-PAYLOAD");
            v = GW_SHA256_EMPTY;
        }
        if (strlen(v) >= sizeof(a.payload_hash))
            FAIL(GW_S3E_INVALID_ARGUMENT, "bad x-amz-content-sha256");
        strcpy(a.payload_hash, v);
    } else if (qrc == MRD_EINVAL) {
        FAIL(GW_S3E_AUTH_HEADER_MALFORMED, "malformed presigned query");
    } else if (qrc != 0) {
        FAIL(GW_S3E_ACCESS_DENIED, "anonymous request");
    }
    if (gw_sigv4_parse_amz_date(a.amz_date, &t) != 0)
        FAIL(GW_S3E_ACCESS_DENIED, "bad x-amz-date");
    if (strncmp(a.amz_date, a.date, 8) != 0)
        FAIL(GW_S3E_AUTH_HEADER_MALFORMED, "credential date does not match x-amz-date");
    if (a.presigned) {
        if (a.expires > GW_SIGV4_MAX_EXPIRES_S)
            FAIL(GW_S3E_AUTH_HEADER_MALFORMED, "X-Amz-Expires over 7 days");
        if (now > t + (int64_t)a.expires)
            FAIL(GW_S3E_EXPIRED, "presigned URL expired");
        if (t > now + GW_SIGV4_MAX_SKEW_S)
            FAIL(GW_S3E_REQUEST_TIME_TOO_SKEWED, "presigned URL dated in the future");
    } else if (t > now + GW_SIGV4_MAX_SKEW_S || t < now - GW_SIGV4_MAX_SKEW_S) {
        FAIL(GW_S3E_REQUEST_TIME_TOO_SKEWED, "clock skew over 15 minutes");
    }
    for (int i = 0; i < conf->n_users; i++) {
        const mrd_user_conf *u = &conf->users[i];
        if (mrd_consttime_equal(u->access_key, strlen(u->access_key), a.access_key,
                                strlen(a.access_key)))
            secret = u->secret_key;
    }
    if (!secret)
        FAIL(GW_S3E_INVALID_ACCESS_KEY_ID, "unknown access key");
    match = signature_matches(in, &a, secret, 0);
    if (match == 0 && path_differs_from_canonical(in->path))
        match = signature_matches(in, &a, secret, 1);
    if (match == MRD_EINVAL)
        FAIL(GW_S3E_SIGNATURE_DOES_NOT_MATCH, "a signed header is missing");
    if (match < 0)
        FAIL(GW_S3E_INTERNAL, "out of memory");
    if (match == 0)
        FAIL(GW_S3E_SIGNATURE_DOES_NOT_MATCH, "signature mismatch");
    if (strncmp(a.payload_hash, "STREAMING-", 10) == 0)
        gw_sigv4_signing_key(secret, &a, a.signing_key);
    *auth = a;
    OPENSSL_cleanse(a.signing_key, sizeof(a.signing_key));
out:
    return rc;
}
