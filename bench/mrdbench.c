/*
 * mrdbench.c - a warp-style S3 load generator on libcurl's multi interface.
 *
 * Purpose. Users pick a storage system by its numbers, so Meridian is
 * measured with one client against itself and against the ceilings of the
 * machine (nginx serving the same bytes, loopback TCP, disk). The client must
 * cost little and the same client must talk to both, so mrdbench speaks plain
 * HTTP/1.1 with optional AWS SigV4 and nothing else: `--no-auth
 * --path-template /obj/%d` turns it into a static-file GET client for nginx.
 *
 * Shape. T threads (--threads, default 1), each owning one CURLM handle and
 * C/T "slots". A slot is one request in flight: one CURL easy handle that is
 * reused for every request the slot makes, so its keep-alive connection
 * stays in the multi handle's connection cache and is reused (no TCP
 * handshake per request). A worker loop is curl_multi_perform ->
 * curl_multi_info_read (finish the slot, start its next request, re-add) ->
 * curl_multi_poll. There is no per-request allocation on the data path.
 *
 * Signing. CURLOPT_AWS_SIGV4 "aws:amz:us-east-1:s3" with CURLOPT_USERPWD
 * access:secret; this file holds no signer. A streamed PUT body cannot be
 * hashed by curl, so mrdbench sets x-amz-content-sha256 itself, and curl signs
 * that value: UNSIGNED-PAYLOAD with --unsigned-payload (what the Ceph figures
 * in FACTS.md used), else the SHA-256 of the body computed here (cached per
 * (offset, size), so fixed-size runs hash each distinct body once).
 *
 * Bodies. Every object body is a window of one pattern: byte i of the object
 * with key index k is pat[(off0(k) + i) % PATLEN]. The pattern buffer holds
 * two copies back to back, so any read of up to PATLEN bytes is one memcpy
 * from a contiguous range. PUT bodies stream from it (READFUNCTION); GET
 * bodies are discarded (WRITEFUNCTION) or, with --verify, compared against
 * it, including ranged GETs (the range start shifts the window). --gen-files
 * writes the same bodies to files so nginx serves identical bytes.
 *
 * Knobs that matter on loopback (FACTS.md): PUTs must never wait for a
 * 100 Continue, and TCP_NODELAY is on for every connection. The usual way to
 * drop Expect is an empty "Expect:" header, but libcurl 7.88 (Debian 12)
 * puts that removed header into the SigV4 SignedHeaders ("expect;host;..."),
 * so every signed request fails with SignatureDoesNotMatch. So: with --no-auth
 * the header is removed; with SigV4 curl keeps its default (it adds Expect
 * only to bodies over 1 MiB) and CURLOPT_EXPECT_100_TIMEOUT_MS is 1 ms, so a
 * server that does not answer 100 Continue costs 1 ms, not 1 s.
 *
 * Statistics. Latency is recorded per successful operation in a log-linear
 * histogram (HDR-like: 32 sub-buckets per power of two, <= 3% error, fixed
 * 15 KiB per op kind per thread) and the exact maximum. Any curl error or
 * HTTP status >= 300 is an error: counted, and the first one is kept with the
 * method, path and the start of the response body (the S3 error code).
 * Throughput counts successful operations between the start of the phase and
 * the completion of its last request.
 *
 * Phases. get, rget, mixed and delete need objects: unless --no-prepare (or
 * --no-auth), a prepare phase first PUTs --keys objects at the same
 * concurrency, and its numbers are printed to stderr only.
 *
 * Output. One summary line on stdout (logfmt), a progress line on stderr once
 * a second when stderr is a terminal, and with --json FILE a JSON result.
 * Exit status: 0 without errors, 3 when any request failed, 1 on bad usage or
 * set-up failure.
 */
#include "common.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PATLEN   (1048576u + 4099u) /* odd length: windows of one object never line up */
#define HSUB_LOG 5
#define HSUB     (1u << HSUB_LOG)
#define HBUCKETS ((64 - HSUB_LOG) * HSUB + HSUB)
#define ERRLEN   512

enum { OP_PUT, OP_GET, OP_RGET, OP_LIST, OP_DELETE, OP_MPU, OP_NKINDS, OP_MIXED = OP_NKINDS };

static const char *const op_names[] = {"put", "get", "rget", "list", "delete", "multipart"};

/* ---- options -------------------------------------------------------------- */

typedef struct opts {
    const char *endpoint, *access, *secret, *bucket, *prefix, *path_tmpl, *json, *gen_dir;
    const char *region;
    int op;
    uint64_t size_min, size_max, range_size, part_size, count, keys;
    double duration;
    int concurrency, threads, no_auth, unsigned_payload, create_bucket, verify, no_prepare;
    int list_max, list_all, quiet;
    uint64_t key_start;      /* first key index of sequential and fresh-key runs */
    unsigned mix[OP_NKINDS]; /* percent per kind for OP_MIXED */
    char size_str[64];
} opts;

static opts O = {
    .bucket = "mrdbench",
    .prefix = "mrdbench/",
    .region = "us-east-1",
    .op = -1,
    .size_min = 4096,
    .size_max = 4096,
    .range_size = 1048576,
    .part_size = 5u * 1048576u,
    .concurrency = 16,
    .threads = 1,
    .list_max = 1000,
};

/* ---- pattern -------------------------------------------------------------- */

static unsigned char *pat2; /* 2 * PATLEN bytes: the pattern twice */

static void
pattern_init(void)
{
    uint64_t x = 0x9e3779b97f4a7c15ull;

    pat2 = malloc(2 * (size_t)PATLEN);
    if (!pat2) {
        fprintf(stderr, "mrdbench: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < PATLEN; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        pat2[i] = (unsigned char)(x >> 32);
    }
    memcpy(pat2 + PATLEN, pat2, PATLEN);
}

static uint64_t
key_off0(uint64_t idx)
{
    return (idx * 2654435761u) % PATLEN;
}

/* ---- histogram ------------------------------------------------------------ */

typedef struct hist {
    uint64_t b[HBUCKETS];
    uint64_t n, sum_ns, max_ns, bytes;
} hist;

static unsigned
hist_idx(uint64_t v)
{
    unsigned msb, e;

    if (v < 2 * HSUB)
        return (unsigned)v;
    msb = 63u - (unsigned)__builtin_clzll(v);
    e = msb - HSUB_LOG;
    return e * HSUB + (unsigned)(v >> e);
}

static uint64_t
hist_val(unsigned idx)
{
    unsigned e;

    if (idx < 2 * HSUB)
        return idx;
    e = idx / HSUB - 1;
    return ((uint64_t)(idx - e * HSUB) << e) + ((1ull << e) >> 1);
}

static void
hist_add(hist *h, uint64_t ns, uint64_t bytes)
{
    h->b[hist_idx(ns)]++;
    h->n++;
    h->sum_ns += ns;
    h->bytes += bytes;
    if (ns > h->max_ns)
        h->max_ns = ns;
}

static void
hist_merge(hist *d, const hist *s)
{
    for (unsigned i = 0; i < HBUCKETS; i++)
        d->b[i] += s->b[i];
    d->n += s->n;
    d->sum_ns += s->sum_ns;
    d->bytes += s->bytes;
    if (s->max_ns > d->max_ns)
        d->max_ns = s->max_ns;
}

/* Value at quantile q (0..1], in ns; never above the exact maximum. */
static uint64_t
hist_q(const hist *h, double q)
{
    uint64_t want, seen = 0;

    if (!h->n)
        return 0;
    want = (uint64_t)ceil(q * (double)h->n);
    if (want < 1)
        want = 1;
    for (unsigned i = 0; i < HBUCKETS; i++) {
        seen += h->b[i];
        if (seen >= want) {
            uint64_t v = hist_val(i);
            return v < h->max_ns ? v : h->max_ns;
        }
    }
    return h->max_ns;
}

/* ---- shared run state ----------------------------------------------------- */

typedef struct phase {
    int op;         /* OP_* or OP_MIXED */
    uint64_t count; /* requests to start; 0: until the deadline */
    uint64_t deadline_ns;
    uint64_t t0_ns;
    int seq_keys; /* keys 0..count-1 in order (prepare, delete) */
    atomic_uint_fast64_t started, ok, errors, last_done_ns;
} phase;

static phase P;

typedef struct worker worker;

typedef struct slot {
    CURL *h;
    worker *w;
    struct curl_slist *hdrs;
    int kind;
    uint64_t idx;
    uint64_t obj_size; /* the object's size (PUT, multipart) */
    uint64_t size;     /* body bytes of the current request */
    uint64_t off0, sent, rx, t0_ns, range_off;
    uint64_t walk_keys; /* list --list-all: keys seen so far in this walk */
    int bad_verify;
    char url[4096];
    char errbody[ERRLEN];
    size_t errlen;
    /* multipart */
    int mpu_step; /* 0 initiate, 1..n parts, n+1 complete */
    int mpu_parts;
    char upload_id[256];
    char list_token[1024]; /* list --list-all: the next page's continuation token */
    char etag[128];
    mrd_buf resp, complete;
} slot;

struct worker {
    pthread_t th;
    int id, nslots;
    CURLM *m;
    slot *slots;
    uint64_t rng;
    hist h[OP_NKINDS];
    uint64_t err_kind[OP_NKINDS];
    uint64_t keys_listed, walks;
    char first_err[ERRLEN];
    uint64_t first_err_ns;
};

static worker *W;
static pthread_mutex_t err_mu = PTHREAD_MUTEX_INITIALIZER;
static char first_err[ERRLEN];

static uint64_t
rnd(worker *w)
{
    w->rng ^= w->rng << 13;
    w->rng ^= w->rng >> 7;
    w->rng ^= w->rng << 17;
    return w->rng;
}

static void record_error(worker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
record_error(worker *w, const char *fmt, ...)
{
    va_list ap;

    atomic_fetch_add(&P.errors, 1);
    pthread_mutex_lock(&err_mu);
    if (!first_err[0]) {
        va_start(ap, fmt);
        vsnprintf(first_err, sizeof(first_err), fmt, ap);
        va_end(ap);
        for (char *p = first_err; *p; p++)
            if (*p == '\n' || *p == '\r' || *p == '"')
                *p = ' ';
    }
    pthread_mutex_unlock(&err_mu);
    (void)w;
}

/* ---- payload hashing for signed PUTs ---------------------------------------- */

typedef struct sha_ent {
    uint64_t off0, size;
    char hex[65];
} sha_ent;

#define SHA_CACHE 256
static __thread sha_ent sha_cache[SHA_CACHE];

static const char *
body_sha256(uint64_t off0, uint64_t size)
{
    sha_ent *e = &sha_cache[(off0 * 31 + size) % SHA_CACHE];
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_MD_CTX *c;
    uint64_t pos = off0, left = size;

    if (e->hex[0] && e->off0 == off0 && e->size == size)
        return e->hex;
    c = EVP_MD_CTX_new();
    if (!c || !EVP_DigestInit_ex(c, EVP_sha256(), NULL)) {
        fprintf(stderr, "mrdbench: OpenSSL SHA-256 unavailable\n");
        exit(1);
    }
    while (left) {
        size_t n = left < PATLEN ? (size_t)left : PATLEN;
        EVP_DigestUpdate(c, pat2 + pos % PATLEN, n);
        pos += n;
        left -= n;
    }
    EVP_DigestFinal_ex(c, md, &mdlen);
    EVP_MD_CTX_free(c);
    for (unsigned i = 0; i < 32; i++)
        snprintf(e->hex + 2 * i, 3, "%02x", md[i]);
    e->off0 = off0;
    e->size = size;
    return e->hex;
}

/* ---- curl callbacks ------------------------------------------------------- */

static size_t
read_cb(char *buf, size_t sz, size_t nmemb, void *ud)
{
    slot *s = ud;
    uint64_t left = s->size - s->sent;
    size_t n = sz * nmemb;

    if (n > left)
        n = (size_t)left;
    if (n > PATLEN)
        n = PATLEN;
    memcpy(buf, pat2 + (s->off0 + s->sent) % PATLEN, n);
    s->sent += n;
    return n;
}

static size_t
write_cb(char *data, size_t sz, size_t nmemb, void *ud)
{
    slot *s = ud;
    size_t n = sz * nmemb;
    long code = 0;

    curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &code);
    if (code >= 300) {
        size_t room = sizeof(s->errbody) - 1 - s->errlen;
        size_t c = n < room ? n : room;
        memcpy(s->errbody + s->errlen, data, c);
        s->errlen += c;
        s->errbody[s->errlen] = 0;
    } else if (s->kind == OP_MPU || s->kind == OP_LIST) {
        if (mrd_buf_append(&s->resp, data, n) != 0)
            return 0;
    } else if (O.verify && !s->bad_verify) {
        uint64_t pos = s->off0 + s->range_off + s->rx;
        size_t done = 0;
        while (done < n) {
            size_t c = n - done < PATLEN ? n - done : PATLEN;
            if (memcmp(data + done, pat2 + (pos + done) % PATLEN, c) != 0) {
                s->bad_verify = 1;
                break;
            }
            done += c;
        }
    }
    s->rx += n;
    return n;
}

static size_t
header_cb(char *data, size_t sz, size_t nmemb, void *ud)
{
    slot *s = ud;
    size_t n = sz * nmemb;

    if (s->kind == OP_MPU && n > 5 && strncasecmp(data, "etag:", 5) == 0) {
        size_t i = 5, j;
        while (i < n && data[i] == ' ')
            i++;
        j = n;
        while (j > i && (data[j - 1] == '\r' || data[j - 1] == '\n' || data[j - 1] == ' '))
            j--;
        if (j - i < sizeof(s->etag)) {
            memcpy(s->etag, data + i, j - i);
            s->etag[j - i] = 0;
        }
    }
    return n;
}

/* ---- request set-up ------------------------------------------------------- */

static void
append_key_path(char *out, size_t outsz, uint64_t idx)
{
    size_t len = strlen(out);

    if (O.path_tmpl) {
        const char *p = strstr(O.path_tmpl, "%d");
        snprintf(out + len, outsz - len, "%.*s%" PRIu64 "%s", (int)(p - O.path_tmpl), O.path_tmpl,
                 idx, p + 2);
        return;
    }
    len += (size_t)snprintf(out + len, outsz - len, "/%s/", O.bucket);
    for (const char *p = O.prefix; *p && len + 4 < outsz; p++) {
        unsigned char c = (unsigned char)*p;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            strchr("-_.~/", c))
            out[len++] = (char)c;
        else
            len += (size_t)snprintf(out + len, outsz - len, "%%%02X", c);
    }
    out[len] = 0;
    snprintf(out + len, outsz - len, "%08" PRIu64, idx);
}

/* Percent-encodes a query value: libcurl 7.88's SigV4 signs the query as it
 * appears in the URL, and S3 canonicalises with every byte outside the
 * unreserved set encoded, so the URL must already be in that form. */
static void
query_enc(const char *in, char *out, size_t outsz)
{
    size_t len = 0;

    for (const char *p = in; *p && len + 4 < outsz; p++) {
        unsigned char c = (unsigned char)*p;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            strchr("-_.~", c))
            out[len++] = (char)c;
        else
            len += (size_t)snprintf(out + len, outsz - len, "%%%02X", c);
    }
    out[len] = 0;
}

static uint64_t
pick_size(worker *w)
{
    if (O.size_max == O.size_min)
        return O.size_min;
    return O.size_min + rnd(w) % (O.size_max - O.size_min + 1);
}

static void
set_common(slot *s)
{
    CURL *h = s->h;

    curl_slist_free_all(s->hdrs);
    s->hdrs = O.no_auth ? curl_slist_append(NULL, "Expect:") : NULL;
    /* POSTFIELDS (even NULL) switches the method to POST, so it goes first
     * and HTTPGET, which clears UPLOAD, POST and NOBODY, after it. */
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, NULL);
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, NULL);
    curl_easy_setopt(h, CURLOPT_RANGE, NULL);
    s->rx = s->sent = 0;
    s->errlen = 0;
    s->errbody[0] = 0;
    s->bad_verify = 0;
    s->range_off = 0;
}

static void
set_put_body(slot *s, uint64_t size, uint64_t off0)
{
    char hdr[128];

    s->size = size;
    s->off0 = off0;
    curl_easy_setopt(s->h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(s->h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)size);
    if (!O.no_auth) {
        snprintf(hdr, sizeof(hdr), "x-amz-content-sha256: %s",
                 O.unsigned_payload ? "UNSIGNED-PAYLOAD" : body_sha256(off0, size));
        s->hdrs = curl_slist_append(s->hdrs, hdr);
    }
}

/* Sets up the slot's easy handle for its current step. */
static void
setup_request(slot *s)
{
    CURL *h = s->h;

    set_common(s);
    snprintf(s->url, sizeof(s->url), "%s", O.endpoint);
    switch (s->kind) {
    case OP_PUT:
        append_key_path(s->url, sizeof(s->url), s->idx);
        set_put_body(s, s->obj_size, key_off0(s->idx));
        break;
    case OP_GET:
        append_key_path(s->url, sizeof(s->url), s->idx);
        s->off0 = key_off0(s->idx);
        break;
    case OP_RGET: {
        char r[64];
        uint64_t slots = O.size_max / O.range_size;
        append_key_path(s->url, sizeof(s->url), s->idx);
        s->off0 = key_off0(s->idx);
        s->range_off = slots ? (rnd(s->w) % slots) * O.range_size : 0;
        snprintf(r, sizeof(r), "%" PRIu64 "-%" PRIu64, s->range_off,
                 s->range_off + O.range_size - 1);
        curl_easy_setopt(h, CURLOPT_RANGE, r);
        break;
    }
    case OP_LIST: {
        size_t len = strlen(s->url);
        char pfx[512], tok[3 * sizeof(s->list_token)];
        query_enc(O.prefix, pfx, sizeof(pfx));
        /* S3 canonical query order: continuation-token < list-type < max-keys < prefix */
        if (s->list_token[0]) {
            query_enc(s->list_token, tok, sizeof(tok));
            len += (size_t)snprintf(s->url + len, sizeof(s->url) - len,
                                    "/%s?continuation-token=%s&", O.bucket, tok);
        } else {
            len += (size_t)snprintf(s->url + len, sizeof(s->url) - len, "/%s?", O.bucket);
        }
        snprintf(s->url + len, sizeof(s->url) - len, "list-type=2&max-keys=%d&prefix=%s",
                 O.list_max, pfx);
        mrd_buf_reset(&s->resp);
        break;
    }
    case OP_DELETE:
        append_key_path(s->url, sizeof(s->url), s->idx);
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "DELETE");
        break;
    case OP_MPU: {
        size_t len;
        char uid[512];
        query_enc(s->upload_id, uid, sizeof(uid));
        append_key_path(s->url, sizeof(s->url), s->idx);
        len = strlen(s->url);
        if (s->mpu_step == 0) {
            snprintf(s->url + len, sizeof(s->url) - len, "?uploads=");
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
        } else if (s->mpu_step <= s->mpu_parts) {
            uint64_t first = (uint64_t)(s->mpu_step - 1) * O.part_size;
            uint64_t n = s->obj_size - first < O.part_size ? s->obj_size - first : O.part_size;
            snprintf(s->url + len, sizeof(s->url) - len, "?partNumber=%d&uploadId=%s", s->mpu_step,
                     uid);
            set_put_body(s, n, (key_off0(s->idx) + first) % PATLEN);
        } else {
            snprintf(s->url + len, sizeof(s->url) - len, "?uploadId=%s", uid);
            mrd_buf_append(&s->complete, "</CompleteMultipartUpload>", 26);
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, s->complete.data);
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)s->complete.len);
        }
        mrd_buf_reset(&s->resp);
        break;
    }
    }
    curl_easy_setopt(h, CURLOPT_URL, s->url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, s->hdrs);
}

static int
pick_kind(worker *w)
{
    unsigned r = (unsigned)(rnd(w) % 100), acc = 0;

    if (P.op != OP_MIXED)
        return P.op;
    for (int k = 0; k < OP_NKINDS; k++) {
        acc += O.mix[k];
        if (r < acc)
            return k;
    }
    return OP_GET;
}

/* Starts the slot's next operation; returns 0 when the phase is over. */
static int
start_next(slot *s)
{
    worker *w = s->w;
    uint64_t n;

    if (!P.count && mrd_clock_mono_ns() >= P.deadline_ns)
        return 0;
    n = atomic_fetch_add(&P.started, 1);
    if (P.count && n >= P.count)
        return 0;
    s->kind = pick_kind(w);
    if (P.seq_keys)
        s->idx = O.key_start + n;
    else if (s->kind == OP_PUT && P.op == OP_PUT && !O.keys)
        s->idx = O.key_start + n; /* a fresh key per PUT */
    else if (s->kind == OP_MPU && !O.keys)
        s->idx = O.key_start + n;
    else
        s->idx = O.key_start + rnd(w) % (O.keys ? O.keys : 1);
    s->list_token[0] = 0;
    s->walk_keys = 0;
    s->obj_size = (s->kind == OP_PUT || s->kind == OP_MPU) ? pick_size(w) : 0;
    if (s->kind == OP_MPU) {
        s->mpu_step = 0;
        s->mpu_parts = (int)((s->obj_size + O.part_size - 1) / O.part_size);
        if (s->mpu_parts < 1)
            s->mpu_parts = 1;
    }
    s->t0_ns = mrd_clock_mono_ns();
    setup_request(s);
    return 1;
}

static const char *
method_of(const slot *s)
{
    switch (s->kind) {
    case OP_PUT:
        return "PUT";
    case OP_DELETE:
        return "DELETE";
    case OP_MPU:
        return s->mpu_step == 0 || s->mpu_step > s->mpu_parts ? "POST" : "PUT";
    default:
        return "GET";
    }
}

/* Extracts <tag>value</tag> from a response body into out; 0 on success. */
static int
xml_value(const mrd_buf *b, const char *tag, char *out, size_t outsz)
{
    char open[64], close[64];
    const char *p, *q;

    if (!b->len)
        return -1;
    snprintf(open, sizeof(open), "<%s>", tag);
    snprintf(close, sizeof(close), "</%s>", tag);
    p = strstr(b->data, open);
    if (!p)
        return -1;
    p += strlen(open);
    q = strstr(p, close);
    if (!q || (size_t)(q - p) >= outsz)
        return -1;
    memcpy(out, p, (size_t)(q - p));
    out[q - p] = 0;
    return 0;
}

/* A list page arrived: counts its keys (KeyCount) and, with --list-all,
 * keeps its NextContinuationToken (empty when the walk is over). Returns 0,
 * or -1 (error recorded) when a --list-all page lacks what the walk needs. */
static int
list_page_done(slot *s)
{
    char v[64];
    int truncated;

    s->list_token[0] = 0;
    if (xml_value(&s->resp, "KeyCount", v, sizeof(v)) == 0) {
        s->walk_keys += strtoull(v, NULL, 10);
        s->w->keys_listed += strtoull(v, NULL, 10);
    } else if (O.list_all) {
        record_error(s->w, "GET %s: no KeyCount in the listing", s->url);
        return -1;
    }
    if (!O.list_all)
        return 0;
    truncated = xml_value(&s->resp, "IsTruncated", v, sizeof(v)) == 0 && strcmp(v, "true") == 0;
    if (truncated &&
        (xml_value(&s->resp, "NextContinuationToken", s->list_token, sizeof(s->list_token)) != 0 ||
         !s->list_token[0])) {
        record_error(s->w, "GET %s: truncated listing without a continuation token", s->url);
        s->list_token[0] = 0;
        return -1;
    }
    return 0;
}

/* A request of slot s finished. Returns 1 if the slot has a follow-up step
 * of the same operation ready (multipart), 0 when the operation is over. */
static int
finish(slot *s, CURLcode res)
{
    worker *w = s->w;
    long code = 0;
    uint64_t now;

    curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &code);
    if (res != CURLE_OK) {
        record_error(w, "%s %s: %s", method_of(s), s->url, curl_easy_strerror(res));
        goto failed;
    }
    if (code >= 300 || code < 100) {
        record_error(w, "HTTP %ld on %s %s: %s", code, method_of(s), s->url, s->errbody);
        goto failed;
    }
    if (s->bad_verify) {
        record_error(w, "verify: body of %s differs from the pattern", s->url);
        goto failed;
    }
    if (s->kind == OP_MPU) {
        if (s->mpu_step == 0) {
            if (xml_value(&s->resp, "UploadId", s->upload_id, sizeof(s->upload_id)) != 0) {
                record_error(w, "POST %s: no UploadId in the response", s->url);
                goto failed;
            }
            mrd_buf_reset(&s->complete);
            mrd_buf_appendf(&s->complete, "<CompleteMultipartUpload>");
        } else if (s->mpu_step <= s->mpu_parts) {
            mrd_buf_appendf(&s->complete, "<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>",
                            s->mpu_step, s->etag);
            s->etag[0] = 0;
        } else if (s->resp.len && strstr(s->resp.data, "<Error>")) {
            record_error(w, "POST %s: complete failed: %.200s", s->url, s->resp.data);
            goto failed;
        }
        if (s->mpu_step <= s->mpu_parts) {
            s->mpu_step++;
            setup_request(s);
            return 1;
        }
    }
    if (s->kind == OP_LIST && list_page_done(s) != 0)
        goto failed;
    now = mrd_clock_mono_ns();
    if (s->kind == OP_LIST && O.list_all && s->list_token[0]) {
        /* one more page of this walk: each page is one recorded operation */
        hist_add(&w->h[OP_LIST], now - s->t0_ns, s->rx);
        atomic_fetch_add(&P.ok, 1);
        s->t0_ns = now;
        setup_request(s);
        return 1;
    }
    if (s->kind == OP_LIST)
        w->walks++;
    hist_add(&w->h[s->kind], now - s->t0_ns,
             s->kind == OP_PUT || s->kind == OP_MPU ? s->obj_size : s->rx);
    atomic_fetch_add(&P.ok, 1);
    atomic_store(&P.last_done_ns, now);
    return 0;
failed:
    w->err_kind[s->kind]++;
    atomic_store(&P.last_done_ns, mrd_clock_mono_ns());
    return 0;
}

static void
progress(void)
{
    double t = (double)(mrd_clock_mono_ns() - P.t0_ns) / 1e9;
    uint64_t ok = atomic_load(&P.ok), err = atomic_load(&P.errors);

    fprintf(stderr, "\r[%s] %.1fs ops=%" PRIu64 " ops/s=%.0f errors=%" PRIu64 "   ",
            P.op == OP_MIXED ? "mixed" : op_names[P.op], t, ok, t > 0 ? (double)ok / t : 0.0, err);
}

static void *
worker_main(void *arg)
{
    worker *w = arg;
    int active = 0, running = 0;
    uint64_t next_progress = P.t0_ns + 1000000000ull;
    int tty = !O.quiet && w->id == 0 && isatty(2);

    for (int i = 0; i < w->nslots; i++) {
        if (start_next(&w->slots[i])) {
            curl_multi_add_handle(w->m, w->slots[i].h);
            active++;
        }
    }
    while (active > 0) {
        CURLMsg *msg;
        int q;

        curl_multi_perform(w->m, &running);
        while ((msg = curl_multi_info_read(w->m, &q))) {
            slot *s;
            if (msg->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
            CURLcode res = msg->data.result;
            curl_multi_remove_handle(w->m, s->h);
            if (finish(s, res) || start_next(s))
                curl_multi_add_handle(w->m, s->h);
            else
                active--;
        }
        if (active)
            curl_multi_poll(w->m, NULL, 0, 100, NULL);
        if (tty && mrd_clock_mono_ns() >= next_progress) {
            progress();
            next_progress += 1000000000ull;
        }
    }
    if (tty)
        fprintf(stderr, "\r%*s\r", 70, "");
    return NULL;
}

/* ---- phases --------------------------------------------------------------- */

typedef struct result {
    int op;
    double secs;
    uint64_t ok, errors;
    hist all, kind[OP_NKINDS];
    uint64_t err_kind[OP_NKINDS];
    uint64_t keys_listed, walks;
    char first_err[ERRLEN];
} result;

static int
setup_workers(void)
{
    int per = O.concurrency / O.threads, extra = O.concurrency % O.threads;

    W = calloc((size_t)O.threads, sizeof(*W));
    if (!W)
        return -1;
    for (int t = 0; t < O.threads; t++) {
        worker *w = &W[t];
        w->id = t;
        w->nslots = per + (t < extra);
        w->rng = 0x2545f4914f6cdd1dull * (uint64_t)(t + 1) ^ (uint64_t)getpid();
        w->m = curl_multi_init();
        w->slots = calloc((size_t)w->nslots, sizeof(slot));
        if (!w->m || !w->slots)
            return -1;
        curl_multi_setopt(w->m, CURLMOPT_MAXCONNECTS, (long)w->nslots + 4);
        for (int i = 0; i < w->nslots; i++) {
            slot *s = &w->slots[i];
            CURL *h = curl_easy_init();
            if (!h)
                return -1;
            s->h = h;
            s->w = w;
            curl_easy_setopt(h, CURLOPT_PRIVATE, (char *)s);
            curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
            curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
            curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
            curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
            curl_easy_setopt(h, CURLOPT_READFUNCTION, read_cb);
            curl_easy_setopt(h, CURLOPT_READDATA, s);
            curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
            curl_easy_setopt(h, CURLOPT_WRITEDATA, s);
            curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, header_cb);
            curl_easy_setopt(h, CURLOPT_HEADERDATA, s);
            curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
            curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, 262144L);
            curl_easy_setopt(h, CURLOPT_EXPECT_100_TIMEOUT_MS, 1L);
            if (getenv("MRDBENCH_VERBOSE"))
                curl_easy_setopt(h, CURLOPT_VERBOSE, 1L);
            if (!O.no_auth) {
                char sig[128], up[512];
                snprintf(sig, sizeof(sig), "aws:amz:%s:s3", O.region);
                snprintf(up, sizeof(up), "%s:%s", O.access, O.secret);
                curl_easy_setopt(h, CURLOPT_AWS_SIGV4, sig);
                curl_easy_setopt(h, CURLOPT_USERPWD, up);
            }
        }
    }
    return 0;
}

static void
run_phase(int op, uint64_t count, double duration, int seq_keys, result *r)
{
    memset(r, 0, sizeof(*r));
    for (int t = 0; t < O.threads; t++) {
        memset(W[t].h, 0, sizeof(W[t].h));
        memset(W[t].err_kind, 0, sizeof(W[t].err_kind));
        W[t].keys_listed = W[t].walks = 0;
    }
    first_err[0] = 0;
    P.op = op;
    P.count = count;
    P.seq_keys = seq_keys;
    atomic_store(&P.started, 0);
    atomic_store(&P.ok, 0);
    atomic_store(&P.errors, 0);
    P.t0_ns = mrd_clock_mono_ns();
    atomic_store(&P.last_done_ns, P.t0_ns);
    P.deadline_ns = P.t0_ns + (uint64_t)(duration * 1e9);
    for (int t = 0; t < O.threads; t++)
        pthread_create(&W[t].th, NULL, worker_main, &W[t]);
    for (int t = 0; t < O.threads; t++)
        pthread_join(W[t].th, NULL);
    r->op = op;
    r->secs = (double)(atomic_load(&P.last_done_ns) - P.t0_ns) / 1e9;
    r->ok = atomic_load(&P.ok);
    r->errors = atomic_load(&P.errors);
    for (int t = 0; t < O.threads; t++) {
        for (int k = 0; k < OP_NKINDS; k++) {
            hist_merge(&r->kind[k], &W[t].h[k]);
            hist_merge(&r->all, &W[t].h[k]);
            r->err_kind[k] += W[t].err_kind[k];
        }
        r->keys_listed += W[t].keys_listed;
        r->walks += W[t].walks;
    }
    snprintf(r->first_err, sizeof(r->first_err), "%s", first_err);
}

static void
print_line(FILE *f, const char *label, const result *r)
{
    double secs = r->secs > 0 ? r->secs : 1e-9;

    fprintf(f,
            "mrdbench op=%s size=%s conc=%d ops=%" PRIu64 " secs=%.2f ops/s=%.1f MB/s=%.2f "
            "MiB/s=%.2f p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f errors=%" PRIu64,
            label, O.size_str, O.concurrency, r->all.n, r->secs, (double)r->all.n / secs,
            (double)r->all.bytes / secs / 1e6, (double)r->all.bytes / secs / 1048576.0,
            (double)hist_q(&r->all, 0.5) / 1e6, (double)hist_q(&r->all, 0.99) / 1e6,
            (double)hist_q(&r->all, 0.999) / 1e6, (double)r->all.max_ns / 1e6, r->errors);
    if (r->op == OP_LIST)
        fprintf(f, " keys=%" PRIu64 " keys/s=%.0f walks=%" PRIu64, r->keys_listed,
                (double)r->keys_listed / secs, r->walks);
    if (r->first_err[0])
        fprintf(f, " first_error=\"%s\"", r->first_err);
    fputc('\n', f);
}

static void
json_stats(mrd_json_w *j, const hist *h, double secs)
{
    secs = secs > 0 ? secs : 1e-9;
    mrd_json_w_key(j, "ops");
    mrd_json_w_uint(j, h->n);
    mrd_json_w_key(j, "bytes");
    mrd_json_w_uint(j, h->bytes);
    mrd_json_w_key(j, "ops_per_s");
    mrd_json_w_double(j, (double)h->n / secs);
    mrd_json_w_key(j, "mb_per_s");
    mrd_json_w_double(j, (double)h->bytes / secs / 1e6);
    mrd_json_w_key(j, "mib_per_s");
    mrd_json_w_double(j, (double)h->bytes / secs / 1048576.0);
    mrd_json_w_key(j, "lat_ms");
    mrd_json_w_obj_begin(j);
    mrd_json_w_key(j, "p50");
    mrd_json_w_double(j, (double)hist_q(h, 0.5) / 1e6);
    mrd_json_w_key(j, "p99");
    mrd_json_w_double(j, (double)hist_q(h, 0.99) / 1e6);
    mrd_json_w_key(j, "p999");
    mrd_json_w_double(j, (double)hist_q(h, 0.999) / 1e6);
    mrd_json_w_key(j, "max");
    mrd_json_w_double(j, (double)h->max_ns / 1e6);
    mrd_json_w_key(j, "mean");
    mrd_json_w_double(j, h->n ? (double)h->sum_ns / (double)h->n / 1e6 : 0.0);
    mrd_json_w_obj_end(j);
}

static int
write_json(const char *path, const char *label, const result *r, const result *prep)
{
    mrd_buf b = {0};
    mrd_json_w j;
    FILE *f;
    int rc = 0;

    mrd_json_w_init(&j, &b);
    mrd_json_w_obj_begin(&j);
    mrd_json_w_key(&j, "tool");
    mrd_json_w_str(&j, "mrdbench");
    mrd_json_w_key(&j, "op");
    mrd_json_w_str(&j, label);
    mrd_json_w_key(&j, "endpoint");
    mrd_json_w_str(&j, O.endpoint);
    mrd_json_w_key(&j, "size");
    mrd_json_w_str(&j, O.size_str);
    mrd_json_w_key(&j, "size_min");
    mrd_json_w_uint(&j, O.size_min);
    mrd_json_w_key(&j, "size_max");
    mrd_json_w_uint(&j, O.size_max);
    mrd_json_w_key(&j, "range_size");
    mrd_json_w_uint(&j, r->op == OP_RGET ? O.range_size : 0);
    mrd_json_w_key(&j, "concurrency");
    mrd_json_w_int(&j, O.concurrency);
    mrd_json_w_key(&j, "threads");
    mrd_json_w_int(&j, O.threads);
    mrd_json_w_key(&j, "keys");
    mrd_json_w_uint(&j, O.keys);
    mrd_json_w_key(&j, "key_start");
    mrd_json_w_uint(&j, O.key_start);
    mrd_json_w_key(&j, "unsigned_payload");
    mrd_json_w_bool(&j, O.unsigned_payload);
    mrd_json_w_key(&j, "auth");
    mrd_json_w_bool(&j, !O.no_auth);
    mrd_json_w_key(&j, "secs");
    mrd_json_w_double(&j, r->secs);
    mrd_json_w_key(&j, "errors");
    mrd_json_w_uint(&j, r->errors);
    mrd_json_w_key(&j, "first_error");
    if (r->first_err[0])
        mrd_json_w_str(&j, r->first_err);
    else
        mrd_json_w_null(&j);
    json_stats(&j, &r->all, r->secs);
    if (r->op == OP_LIST) {
        mrd_json_w_key(&j, "keys_listed");
        mrd_json_w_uint(&j, r->keys_listed);
        mrd_json_w_key(&j, "keys_per_s");
        mrd_json_w_double(&j, r->secs > 0 ? (double)r->keys_listed / r->secs : 0.0);
        mrd_json_w_key(&j, "walks");
        mrd_json_w_uint(&j, r->walks);
        mrd_json_w_key(&j, "list_all");
        mrd_json_w_bool(&j, O.list_all);
    }
    mrd_json_w_key(&j, "per_op");
    mrd_json_w_obj_begin(&j);
    for (int k = 0; k < OP_NKINDS; k++) {
        if (!r->kind[k].n && !r->err_kind[k])
            continue;
        mrd_json_w_key(&j, op_names[k]);
        mrd_json_w_obj_begin(&j);
        json_stats(&j, &r->kind[k], r->secs);
        mrd_json_w_key(&j, "errors");
        mrd_json_w_uint(&j, r->err_kind[k]);
        mrd_json_w_obj_end(&j);
    }
    mrd_json_w_obj_end(&j);
    if (prep) {
        mrd_json_w_key(&j, "prepare");
        mrd_json_w_obj_begin(&j);
        json_stats(&j, &prep->all, prep->secs);
        mrd_json_w_key(&j, "errors");
        mrd_json_w_uint(&j, prep->errors);
        mrd_json_w_obj_end(&j);
    }
    mrd_json_w_obj_end(&j);
    mrd_buf_append(&b, "\n", 1);
    if (mrd_json_w_error(&j) || !b.data) {
        fprintf(stderr, "mrdbench: cannot format JSON\n");
        rc = -1;
    } else if (!(f = fopen(path, "w")) || fwrite(b.data, 1, b.len, f) != b.len || fclose(f)) {
        fprintf(stderr, "mrdbench: cannot write %s: %s\n", path, strerror(errno));
        rc = -1;
    }
    mrd_buf_free(&b);
    return rc;
}

/* ---- helpers outside the load loop ------------------------------------------ */

/* Writes --keys files DIR/<index> with the bodies a PUT of that key would
 * send, so a static server serves exactly the bytes Meridian stores. */
static int
gen_files(const char *dir)
{
    worker w = {.rng = 12345};

    for (uint64_t i = 0; i < O.keys; i++) {
        char path[4096];
        uint64_t size = pick_size(&w), off = key_off0(i), left = size;
        int fd;
        snprintf(path, sizeof(path), "%s/%" PRIu64, dir, i);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) {
            fprintf(stderr, "mrdbench: cannot create %s: %s\n", path, strerror(errno));
            return -1;
        }
        while (left) {
            size_t n = left < PATLEN ? (size_t)left : PATLEN;
            ssize_t wr = write(fd, pat2 + off % PATLEN, n);
            if (wr <= 0) {
                fprintf(stderr, "mrdbench: write %s: %s\n", path, strerror(errno));
                close(fd);
                return -1;
            }
            off += (uint64_t)wr;
            left -= (uint64_t)wr;
        }
        close(fd);
    }
    return 0;
}

static int
create_bucket(void)
{
    CURL *h = curl_easy_init();
    char url[1024], sig[128], up[512];
    struct curl_slist *hd = NULL;
    long code = 0;
    CURLcode res;
    int rc = 0;

    snprintf(url, sizeof(url), "%s/%s", O.endpoint, O.bucket);
    snprintf(sig, sizeof(sig), "aws:amz:%s:s3", O.region);
    snprintf(up, sizeof(up), "%s:%s", O.access, O.secret);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "PUT");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(h, CURLOPT_AWS_SIGV4, sig);
    curl_easy_setopt(h, CURLOPT_USERPWD, up);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, NULL);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, stderr);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
    res = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    /* 409 BucketAlreadyOwnedByYou: the bucket is there, which is what we want. */
    if (res != CURLE_OK || (code >= 300 && code != 409)) {
        fprintf(stderr, "\nmrdbench: create bucket %s failed: %s (HTTP %ld)\n", O.bucket,
                res != CURLE_OK ? curl_easy_strerror(res) : "server refused", code);
        rc = -1;
    }
    curl_slist_free_all(hd);
    curl_easy_cleanup(h);
    return rc;
}

/* ---- command line --------------------------------------------------------- */

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: mrdbench --endpoint URL --op OP [options]\n"
            "  --op put|get|rget|mixed|list|delete|multipart\n"
            "  --endpoint URL          http://host:port\n"
            "  --access-key K --secret-key S   (or MRDBENCH_ACCESS_KEY / MRDBENCH_SECRET_KEY,\n"
            "                          AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)\n"
            "  --region R              SigV4 region (us-east-1)\n"
            "  --bucket B              (mrdbench)    --prefix P   key prefix (mrdbench/)\n"
            "  --size S                4KiB, 1MiB, or MIN:MAX (uniform), default 4KiB\n"
            "  --range-size S          bytes per ranged GET (1MiB)\n"
            "  --part-size S           multipart part size (5MiB)\n"
            "  --mix get=70,put=30     percentages for --op mixed (get put delete list)\n"
            "  --concurrency N         requests in flight (16)\n"
            "  --threads N             client threads sharing them (1)\n"
            "  --duration SECS | --count N   stop after a time (default 10 s) or N requests\n"
            "  --keys N                key spread: indices 0..N-1 (get/mixed default 100;\n"
            "                          put default: a fresh key per request)\n"
            "  --key-start N           first key index (keys are <prefix>%%08d of the index;\n"
            "                          default 0): fills a bucket in steps\n"
            "  --unsigned-payload      PUT with x-amz-content-sha256: UNSIGNED-PAYLOAD\n"
            "  --no-auth               no SigV4 (for nginx)\n"
            "  --path-template T       request path with one %%d for the key index, e.g. /obj/%%d\n"
            "  --create-bucket         PUT the bucket first (409 is fine)\n"
            "  --no-prepare            get/rget/mixed/delete: do not PUT the keys first\n"
            "  --verify                compare GET bodies with the PUT pattern\n"
            "  --list-max N            max-keys for list (1000)\n"
            "  --list-all              list: each operation walks every page of the prefix\n"
            "                          (continuation tokens); each page counts as one op\n"
            "  --gen-files DIR         write --keys files DIR/<index> with the PUT bodies, exit\n"
            "  --json FILE             write the result as JSON\n"
            "  --quiet                 no progress line\n");
}

static int
parse_size(const char *s, uint64_t *out)
{
    return mrd_size_parse(s, out) == 0 ? 0 : -1;
}

static int
parse_mix(const char *s)
{
    char buf[256], *save = NULL;

    snprintf(buf, sizeof(buf), "%s", s);
    memset(O.mix, 0, sizeof(O.mix));
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(t, '=');
        int k;
        if (!eq)
            return -1;
        *eq = 0;
        for (k = 0; k < OP_NKINDS; k++)
            if (strcmp(t, op_names[k]) == 0)
                break;
        if (k == OP_NKINDS || k == OP_RGET || k == OP_MPU)
            return -1;
        O.mix[k] = (unsigned)atoi(eq + 1);
    }
    return 0;
}

static int
parse_args(int argc, char **argv)
{
    const char *size = "4KiB", *mix = "get=70,put=30";
    int have_count = 0;

    O.access =
        getenv("MRDBENCH_ACCESS_KEY") ? getenv("MRDBENCH_ACCESS_KEY") : getenv("AWS_ACCESS_KEY_ID");
    O.secret = getenv("MRDBENCH_SECRET_KEY") ? getenv("MRDBENCH_SECRET_KEY")
                                             : getenv("AWS_SECRET_ACCESS_KEY");
    O.duration = 10;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (strcmp(a, name) == 0 && (v || (fprintf(stderr, "%s needs a value\n", a), 0)))
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(a, "--unsigned-payload") == 0) {
            O.unsigned_payload = 1;
        } else if (strcmp(a, "--no-auth") == 0) {
            O.no_auth = 1;
        } else if (strcmp(a, "--create-bucket") == 0) {
            O.create_bucket = 1;
        } else if (strcmp(a, "--verify") == 0) {
            O.verify = 1;
        } else if (strcmp(a, "--no-prepare") == 0) {
            O.no_prepare = 1;
        } else if (strcmp(a, "--quiet") == 0) {
            O.quiet = 1;
        } else if (strcmp(a, "--list-all") == 0) {
            O.list_all = 1;
        } else if (ARG("--endpoint")) {
            O.endpoint = argv[++i];
        } else if (ARG("--op")) {
            i++;
            if (strcmp(v, "mixed") == 0) {
                O.op = OP_MIXED;
            } else {
                for (int k = 0; k < OP_NKINDS; k++)
                    if (strcmp(v, op_names[k]) == 0 || (k == OP_MPU && strcmp(v, "mpu") == 0))
                        O.op = k;
            }
            if (O.op < 0) {
                fprintf(stderr, "mrdbench: unknown --op %s\n", v);
                return -1;
            }
        } else if (ARG("--access-key")) {
            O.access = argv[++i];
        } else if (ARG("--secret-key")) {
            O.secret = argv[++i];
        } else if (ARG("--region")) {
            O.region = argv[++i];
        } else if (ARG("--bucket")) {
            O.bucket = argv[++i];
        } else if (ARG("--prefix")) {
            O.prefix = argv[++i];
        } else if (ARG("--path-template")) {
            O.path_tmpl = argv[++i];
        } else if (ARG("--json")) {
            O.json = argv[++i];
        } else if (ARG("--gen-files")) {
            O.gen_dir = argv[++i];
        } else if (ARG("--size")) {
            size = argv[++i];
        } else if (ARG("--mix")) {
            mix = argv[++i];
        } else if (ARG("--range-size")) {
            if (parse_size(argv[++i], &O.range_size) || !O.range_size)
                goto bad;
        } else if (ARG("--part-size")) {
            if (parse_size(argv[++i], &O.part_size) || !O.part_size)
                goto bad;
        } else if (ARG("--concurrency")) {
            O.concurrency = atoi(argv[++i]);
        } else if (ARG("--threads")) {
            O.threads = atoi(argv[++i]);
        } else if (ARG("--duration")) {
            O.duration = atof(argv[++i]);
        } else if (ARG("--count")) {
            O.count = strtoull(argv[++i], NULL, 10);
            have_count = 1;
        } else if (ARG("--keys")) {
            O.keys = strtoull(argv[++i], NULL, 10);
        } else if (ARG("--key-start")) {
            O.key_start = strtoull(argv[++i], NULL, 10);
        } else if (ARG("--list-max")) {
            O.list_max = atoi(argv[++i]);
        } else {
            fprintf(stderr, "mrdbench: unknown or incomplete option %s (see --help)\n", a);
            return -1;
        }
#undef ARG
    }
    {
        char lo[64], hi[64];
        const char *colon = strchr(size, ':');
        if (colon) {
            snprintf(lo, sizeof(lo), "%.*s", (int)(colon - size), size);
            snprintf(hi, sizeof(hi), "%s", colon + 1);
        } else {
            snprintf(lo, sizeof(lo), "%s", size);
            snprintf(hi, sizeof(hi), "%s", size);
        }
        if (parse_size(lo, &O.size_min) || parse_size(hi, &O.size_max) || O.size_max < O.size_min) {
            fprintf(stderr, "mrdbench: bad --size %s (use 4KiB, 1MiB or MIN:MAX)\n", size);
            return -1;
        }
        snprintf(O.size_str, sizeof(O.size_str), "%s", size);
    }
    if (parse_mix(mix)) {
        fprintf(stderr, "mrdbench: bad --mix %s (use e.g. get=70,put=30)\n", mix);
        return -1;
    }
    if (O.gen_dir) {
        if (!O.keys)
            O.keys = 100;
        return 0;
    }
    if (!O.endpoint || O.op < 0) {
        fprintf(stderr, "mrdbench: --endpoint and --op are required (see --help)\n");
        return -1;
    }
    if (O.path_tmpl) {
        const char *p = strstr(O.path_tmpl, "%d");
        if (!p || strstr(p + 2, "%d") || O.path_tmpl[0] != '/') {
            fprintf(stderr, "mrdbench: --path-template must start with / and hold one %%d\n");
            return -1;
        }
    }
    if (!O.no_auth && (!O.access || !O.secret)) {
        fprintf(stderr, "mrdbench: credentials missing: --access-key/--secret-key, or "
                        "--no-auth for a server without auth\n");
        return -1;
    }
    if (O.concurrency < 1 || O.threads < 1 || O.threads > O.concurrency) {
        fprintf(stderr, "mrdbench: need 1 <= --threads <= --concurrency\n");
        return -1;
    }
    if (!have_count && O.duration <= 0) {
        fprintf(stderr, "mrdbench: --duration must be > 0\n");
        return -1;
    }
    if (O.op == OP_RGET && O.range_size > O.size_min) {
        fprintf(stderr, "mrdbench: --range-size must not exceed --size\n");
        return -1;
    }
    if (!O.keys && (O.op == OP_GET || O.op == OP_RGET || O.op == OP_MIXED || O.op == OP_DELETE))
        O.keys = O.op == OP_DELETE && have_count ? O.count : 100;
    return 0;
bad:
    fprintf(stderr, "mrdbench: bad size value\n");
    return -1;
}

int
main(int argc, char **argv)
{
    result prep, r;
    int have_prep = 0, rc = 0;
    const char *label;

    if (parse_args(argc, argv) != 0)
        return 1;
    pattern_init();
    if (O.gen_dir)
        return gen_files(O.gen_dir) == 0 ? 0 : 1;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || setup_workers() != 0) {
        fprintf(stderr, "mrdbench: libcurl set-up failed\n");
        return 1;
    }
    if (O.create_bucket && !O.no_auth && create_bucket() != 0)
        return 1;
    if (!O.no_auth && !O.no_prepare &&
        (O.op == OP_GET || O.op == OP_RGET || O.op == OP_MIXED || O.op == OP_DELETE)) {
        run_phase(OP_PUT, O.keys, 0, 1, &prep);
        have_prep = 1;
        if (!O.quiet)
            print_line(stderr, "prepare-put", &prep);
        if (prep.errors) {
            fprintf(stderr, "mrdbench: prepare failed: %s\n", prep.first_err);
            rc = 3;
        }
    }
    if (O.op == OP_DELETE)
        run_phase(OP_DELETE, O.count ? O.count : O.keys, 0, 1, &r);
    else
        run_phase(O.op, O.count, O.duration, 0, &r);
    label = O.op == OP_MIXED ? "mixed" : op_names[O.op];
    print_line(stdout, label, &r);
    if (O.op == OP_MIXED)
        for (int k = 0; k < OP_NKINDS; k++)
            if (r.kind[k].n || r.err_kind[k]) {
                result one = r;
                one.all = r.kind[k];
                one.errors = r.err_kind[k];
                one.first_err[0] = 0;
                print_line(stdout, op_names[k], &one);
            }
    fflush(stdout);
    if (O.json && write_json(O.json, label, &r, have_prep ? &prep : NULL) != 0)
        rc = 1;
    if (!rc && r.errors)
        rc = 3;
    for (int t = 0; t < O.threads; t++) {
        for (int i = 0; i < W[t].nslots; i++) {
            curl_easy_cleanup(W[t].slots[i].h);
            curl_slist_free_all(W[t].slots[i].hdrs);
            mrd_buf_free(&W[t].slots[i].resp);
            mrd_buf_free(&W[t].slots[i].complete);
        }
        curl_multi_cleanup(W[t].m);
        free(W[t].slots);
    }
    free(W);
    free(pat2);
    curl_global_cleanup();
    return rc;
}
