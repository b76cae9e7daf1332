/*
 * gw_s3_obj.c - PutObject, GetObject and HeadObject, streamed, with
 * aws-chunked bodies (gw_awschunk.c) and conditional reads.
 *
 * PUT. The body goes from the socket into the store's erasure-coding writer
 * without ever being held whole:
 *
 *   socket --(64 KiB slices)--> fill buffer --swap--> work buffer --> worker:
 *                                                     store_writer_write
 *
 * Two 1 MiB buffers alternate: the loop fills one while a pool worker
 * encodes and writes the other. When the fill buffer is full and the worker
 * is still busy, the request is paused (gw_req_pause), the HTTP layer stops
 * reading the socket, and TCP pushes back on the client. Memory per upload
 * is therefore about 2 MiB plus the store writer's stripes (two at most, one
 * for objects of one stripe or less), whatever the object size. The store
 * computes MD5 (the ETag) and, when the payload is signed, SHA-256 in the
 * same pass as the erasure code and the CRCs, so the data is read once. At
 * the end:
 *   - store_writer_finish (worker) makes the shards durable;
 *   - Content-MD5 and x-amz-content-sha256 are compared (BadDigest,
 *     XAmzContentSHA256Mismatch); on a mismatch the data is freed;
 *   - engine_object_put stamps, appends the WAL record (group commit) and
 *     applies it to the index; only its callback answers 200.
 * An aws-chunked body (x-amz-content-sha256 STREAMING-...) passes through
 * the gw_awschunk decoder on the loop on its way to the fill buffer: each
 * chunk's signature (or the trailing checksum) is checked as it completes, a
 * failure answers at once and aborts the writer, and the commit waits until
 * the decoder has accepted the end of the stream.
 * The bucket is checked and the writer opened on a worker right after the
 * head arrives, while the body is paused, so a PUT into a missing bucket is
 * refused before its body is read.
 *
 * GET/HEAD. A worker looks the key up (its current version, or with
 * ?versionId= that version, e.g. a conflict loser kept hidden, or "null")
 * and opens a
 * store reader (HEAD needs the index record only). The reader opens every shard file at once and
 * holds them until it closes, so an overwrite or delete that frees the
 * version while it streams (the engine's applier unlinks the old shards right
 * after the index commit) cannot truncate the GET: it finishes the version it
 * opened. If the data was freed between the lookup and the open, the open
 * fails and the worker looks the key up again and serves the newer version
 * (job_lookup); a version that stays current but cannot be opened gets 503,
 * still before any byte of the response. The conditional headers are then
 * weighed against the version found (If-Match / If-Unmodified-Since -> 412
 * PreconditionFailed, If-None-Match / If-Modified-Since -> 304, RFC 9110
 * precedence; see gw__preconditions()), before the Range. The loop then sends the
 * head (200, or 206 for a single satisfiable Range, 416 InvalidRange) and
 * alternates: a worker reads 1 MiB
 * (store_reader_read checks every block's CRC and reconstructs lost shards),
 * the loop queues it, and the next read starts at once while the socket
 * holds under 1 MiB, else when ops->writable says it drained: at most one
 * chunk being read plus two queued, about 3 MiB per GET whatever its size,
 * and [s3] max_downloads of them at once (the download gate, gw_gate.c)
 * (the PUT side: two 1 MiB buffers sized once, plus the store's stripe). A read error
 * after the head was sent can only be signalled by cutting the connection
 * (the layer does that for a short body), which clients report as an error.
 *
 * Memory. A stream's big blocks (the PUT buffers, the GET chunk, libevent's
 * output chains, the store's stripes and scratch on the workers) are freed
 * when it ends, but glibc keeps freed blocks in its arenas: its dynamic mmap
 * threshold rises to the size of the first big block freed, and later ones
 * come from per-thread arenas whose free pages are not returned. A 64-client
 * mixed run left ~250 MiB of anonymous memory behind that way, and a long
 * benchmark saw the process climb to 1 GiB. Pinning M_MMAP_THRESHOLD low fixed
 * the retention but cost 3x in throughput (mmap/munmap and page faults per
 * block). Instead, when the last PUT or GET ends, malloc_trim(0) hands the
 * free pages back (at most once a second; it costs milliseconds when there
 * is a lot to return, nothing on the busy path). Under load the memory is
 * the working set - about 3.5 MiB per upload, 3 MiB per download - and idle
 * the process returns to ~15 MiB. LMDB's map also counts in RSS (inline
 * objects live in the index), but it is file-backed page cache, not heap.
 *
 * Lifetimes. A request's context is freed when both the client side
 * (release) and the worker side (no job or engine call in flight) are done;
 * a PUT that dies midway aborts its writer on a worker, and frees finished
 * data that never got a WAL record. Data whose WAL append failed with
 * MRD_EDURABLE is NOT freed: the record may still surface at recovery.
 */
#include "gw_int.h"

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/evp.h>

#include "engine.h"
#include "replicator.h"

#define CHUNK         (1u << 20)
#define MAX_PUT       (5ull << 30)            /* S3's single-PUT limit */
#define MAX_META_SZ   (2u << 10)              /* S3: 2 KiB of user metadata */
#define TRIM_EVERY_NS (1000ull * 1000 * 1000) /* malloc_trim at most once a second */
#define LOOKUP_TRIES  4                       /* GET: lookups when the data was freed under us */
#define GET_PREFETCH  (256u << 10) /* GET: whole objects up to this are read by the lookup job */

/* Standard headers kept with the object and returned on GET. */
static const char *const kept_headers[] = {"content-encoding", "content-disposition",
                                           "cache-control",    "content-language",
                                           "expires",          NULL};

/* ========================================================================= */
/* Memory given back when idle                                               */
/* ========================================================================= */

/* PUTs and GETs alive, and when memory was last trimmed: every S3 loop
 * counts here (atomics; a trim is process-wide). */
static int streams_alive;
static uint64_t last_trim_ns;

static void
stream_begin(void)
{
    GW_ADD(streams_alive, 1);
}

/* See "Memory" in the design comment: once no PUT or GET is left, give the
 * allocator's free pages back, at most once per TRIM_EVERY_NS. */
static void
stream_end(void)
{
    uint64_t now;

    if (__atomic_sub_fetch(&streams_alive, 1, __ATOMIC_RELAXED) > 0)
        return;
    now = mrd_clock_mono_ns();
    if (now - GW_LOAD(last_trim_ns) < TRIM_EVERY_NS)
        return;
    GW_STORE(last_trim_ns, now);
    malloc_trim(0);
}

/* ========================================================================= */
/* PUT                                                                       */
/* ========================================================================= */

typedef enum { P_OPEN, P_WRITE, P_FINISH, P_COMMIT, P_DONE } put_stage;

typedef struct put {
    gw_daemon *d;
    gw_req *r;
    char bucket[64];
    char *key;
    char vid[64]; /* version id, or "<upload id>.<part>" for a part */
    store_writer *w;
    mrd_buf fill, work;
    put_stage stage;
    int busy, paused, ended, released, committed;
    int rc, has_err;
    gw_s3_err err;
    const char *msg;    /* static detail for the error, or NULL */
    gw_awschunk *chunk; /* aws-chunked body decoder, or NULL */
    store_put_result res;
    unsigned char md5[16];
    int has_md5, check_sha;
    char sha[65];
    gw__meta meta;
    char *upload_id; /* UploadPart: the upload, and part > 0 */
    uint32_t part;
    int vstate;        /* the bucket's versioning state when the PUT began */
    gw_gate_node gate; /* the upload gate (gw_gate.c): holds a slot, or waits in line */
} put;

static void put_step(put *p);
static void put_open(put *p);
static void put_admit(gw_gate_node *n);

static void
put_free(put *p)
{
    store_put_result_clear(&p->res);
    gw_awschunk_free(p->chunk);
    mrd_buf_free(&p->fill);
    mrd_buf_free(&p->work);
    gw__meta_clear(&p->meta);
    free(p->upload_id);
    free(p->key);
    gw__gate_leave(GW_GATE_UPLOAD, &p->gate, p->d); /* buffers gone */
    free(p);
    stream_end();
}

static void
put_fail_msg(put *p, gw_s3_err e, int rc, const char *msg)
{
    if (!p->has_err) {
        p->has_err = 1;
        p->err = e;
        p->rc = rc;
        p->msg = msg;
    }
}

static void
put_fail(put *p, gw_s3_err e, int rc)
{
    put_fail_msg(p, e, rc, NULL);
}

/* ---- worker jobs --------------------------------------------------------- */

static void
job_open(void *arg)
{
    put *p = arg;
    store *st = engine_store(p->d->eng);
    void *blob = NULL;
    size_t len = 0;
    int rc = store_bucket_get(st, p->bucket, &blob, &len);

    if (rc == 0)
        p->vstate = gw__bucket_vstate(blob, len);
    free(blob);
    blob = NULL;
    if (rc == MRD_ENOTFOUND) {
        put_fail(p, GW_S3E_NO_SUCH_BUCKET, rc);
        return;
    }
    if (rc == 0 && p->part) {
        rc = store_mpu_get(st, p->bucket, p->key, p->upload_id, &blob, &len);
        free(blob);
        if (rc == MRD_ENOTFOUND || rc == MRD_EINVAL) {
            put_fail(p, GW_S3E_NO_SUCH_UPLOAD, rc);
            return;
        }
    }
    if (rc == 0)
        rc = store_writer_open(st, p->bucket, p->key, p->vid, p->check_sha ? STORE_WRITE_SHA256 : 0,
                               &p->w);
    if (rc != 0)
        put_fail(p, gw_s3_err_from_rc(rc), rc);
}

static void
job_write(void *arg)
{
    put *p = arg;
    int rc = store_writer_write(p->w, p->work.data, p->work.len);

    mrd_buf_reset(&p->work);
    if (rc != 0)
        put_fail(p, gw_s3_err_from_rc(rc), rc);
}

static void
job_finish(void *arg)
{
    put *p = arg;
    int rc = store_writer_finish(p->w, &p->res);

    p->w = NULL;
    if (rc != 0)
        put_fail(p, gw_s3_err_from_rc(rc), rc);
}

/* UploadPart: records the durable part (its 200 waits for this commit). */
static void
job_part_commit(void *arg)
{
    put *p = arg;
    store_mpu_part mp = {.number = p->part,
                         .size = p->res.size,
                         .mtime_ms = mrd_clock_realtime_ms(NULL),
                         .layout = p->res.layout,
                         .layout_len = p->res.layout_len};
    int rc;

    memcpy(mp.md5, p->res.md5, 16);
    rc = store_mpu_part_put(engine_store(p->d->eng), p->bucket, p->key, p->upload_id, &mp);
    if (rc == 0)
        p->committed = 1;
    else if (rc == MRD_ENOTFOUND)
        put_fail(p, GW_S3E_NO_SUCH_UPLOAD, rc); /* aborted meanwhile: the data goes */
    else
        put_fail(p, gw_s3_err_from_rc(rc), rc);
    p->stage = P_DONE;
}

/* Cleanup of a PUT that will not be acknowledged. */
static void
job_cleanup(void *arg)
{
    put *p = arg;

    store_writer_abort(p->w);
    p->w = NULL;
    if (p->res.layout && !p->committed && p->rc != MRD_EDURABLE)
        store_object_delete_data(engine_store(p->d->eng), p->res.layout, p->res.layout_len);
}

static void
job_cleanup_done(void *arg)
{
    put_free(arg);
}

static void
job_done(void *arg)
{
    put *p = arg;

    p->busy = 0;
    put_step(p);
}

static void
submit(put *p, void (*fn)(void *))
{
    p->busy = 1;
    if (engine_run(p->d->eng, fn, job_done, p) != 0) {
        p->busy = 0;
        put_fail(p, GW_S3E_SERVICE_UNAVAILABLE, MRD_ESHUTDOWN);
    }
}

/* ---- the state machine (loop thread) ------------------------------------ */

static void
put_cleanup(put *p)
{
    if (p->w || (p->res.layout && !p->committed)) {
        p->busy = 1;
        if (engine_run(p->d->eng, job_cleanup, job_cleanup_done, p) == 0)
            return;
        store_writer_abort(p->w); /* shutting down: do it here */
    }
    put_free(p);
}

static void
committed(void *ud, int status)
{
    put *p = ud;

    p->busy = 0;
    if (status == 0)
        p->committed = 1;
    else if (status == MRD_ENOTFOUND)
        put_fail(p, GW_S3E_NO_SUCH_BUCKET, status);
    else
        put_fail(p, gw_s3_err_from_rc(status), status);
    if (status != 0 && !p->released)
        MRD_WARN("s3.put_failed", "bucket=%s error=\"%s\"", p->bucket, mrd_strerror(status));
    p->stage = P_DONE;
    put_step(p);
}

static int
finish_checks(put *p)
{
    if (p->has_md5 && memcmp(p->md5, p->res.md5, 16) != 0) {
        put_fail(p, GW_S3E_BAD_DIGEST, MRD_EINVAL);
        return -1;
    }
    if (p->check_sha) {
        char hex[65];
        for (int i = 0; i < 32; i++)
            snprintf(hex + 2 * i, 3, "%02x", p->res.sha256[i]);
        if (!mrd_consttime_equal(hex, 64, p->sha, strlen(p->sha))) {
            put_fail(p, GW_S3E_SHA256_MISMATCH, MRD_EINVAL);
            return -1;
        }
    }
    return 0;
}

static void
answer_ok(put *p)
{
    char etag[40];

    snprintf(etag, sizeof(etag), "\"%s\"", p->res.etag);
    gw_s3_request_id(p->r);
    gw_resp_header(p->r, "ETag", etag);
    if (!p->part && p->vstate != ENGINE_VERSIONING_UNSET)
        gw_resp_header(p->r, "x-amz-version-id",
                       p->vstate == ENGINE_VERSIONING_ENABLED ? p->vid : "null");
    gw__route_write_token(p->d, p->r);
    gw_resp_simple(p->r, 200, NULL, NULL, 0); /* runs release */
}

static void
put_step(put *p)
{
    engine_put ep;

    if (p->busy)
        return;
    if (p->released) {
        put_cleanup(p);
        return;
    }
    if (p->has_err) {
        /* Nothing of the body was read yet: a peer may take the write. */
        if (p->stage == P_OPEN && gw__route_write_failed(p->d, p->r, p->rc)) {
            p->released = 1; /* the route's ops replaced ours */
            put_cleanup(p);
            return;
        }
        gw_s3_error(p->r, p->err, gw_req_path(p->r), p->msg); /* runs release */
        return;
    }
    switch (p->stage) {
    case P_OPEN:
        p->stage = P_WRITE;
        /* fallthrough */
    case P_WRITE:
        if (p->fill.len >= CHUNK || (p->ended && p->fill.len)) {
            mrd_buf tmp = p->work;
            p->work = p->fill;
            p->fill = tmp;
            submit(p, job_write);
        } else if (p->ended) {
            p->stage = P_FINISH;
            submit(p, job_finish);
        }
        if (p->paused && p->fill.len < CHUNK && !p->has_err) {
            p->paused = 0;
            gw_req_resume(p->r);
        }
        if (!p->busy && p->has_err)
            put_step(p);
        break;
    case P_FINISH:
        if (finish_checks(p) != 0) {
            put_step(p);
            return;
        }
        p->stage = P_COMMIT;
        if (p->part) {
            submit(p, job_part_commit);
            break;
        }
        ep = (engine_put){.bucket = p->bucket,
                          .key = p->key,
                          .version_id = p->vid,
                          .size = p->res.size,
                          .etag = p->res.etag,
                          .content_type = p->meta.ctype,
                          .meta = p->meta.kv,
                          .n_meta = (size_t)p->meta.n,
                          .layout = p->res.layout,
                          .layout_len = p->res.layout_len};
        p->busy = 1;
        if (engine_object_put(p->d->eng, &ep, committed, p) != 0) {
            p->busy = 0;
            put_fail(p, GW_S3E_SERVICE_UNAVAILABLE, MRD_ESHUTDOWN);
            put_step(p);
        }
        break;
    case P_COMMIT:
        break;
    case P_DONE:
        answer_ok(p);
        break;
    }
}

/* ---- HTTP callbacks ------------------------------------------------------ */

/* Sizes both buffers once: the fill buffer takes up to CHUNK plus one body
 * slice of the HTTP layer (64 KiB) before it is handed over, and an object
 * smaller than that needs only its own size. Growing them by doubling
 * instead would realloc a dozen times per upload and end at 2 MiB each. */
static int
put_buffers(put *p, size_t first)
{
    int64_t cl = gw_req_content_length(p->r);
    size_t want = CHUNK + (64u << 10);

    if (cl >= 0 && (uint64_t)cl < want)
        want = (size_t)cl;
    if (want < first)
        want = first;
    if (mrd_buf_reserve(&p->fill, want) != 0 || mrd_buf_reserve(&p->work, want) != 0)
        return -1;
    return 0;
}

/* Takes decoded body bytes into the fill buffer. */
static int
put_take(void *ud, const char *data, size_t len)
{
    put *p = ud;

    if ((p->fill.cap == 0 && put_buffers(p, len) != 0) || mrd_buf_append(&p->fill, data, len) != 0)
        return -12;
    return 0;
}

/* Body bytes: straight into the fill buffer, or through the aws-chunked
 * decoder, which hands over the data it carries. An aws-chunked error
 * (a chunk signature that does not verify, a malformed stream) answers at
 * once; the writer is aborted and nothing is committed. */
static int
put_body(gw_req *r, const char *data, size_t len, void *ctx)
{
    put *p = ctx;
    const char *why = NULL;
    int rc = p->chunk ? gw_awschunk_feed(p->chunk, data, len, put_take, p, &why)
                      : (put_take(p, data, len) != 0 ? (int)GW_S3E_INTERNAL + 1 : 0);

    if (rc != 0) {
        put_fail_msg(p, (gw_s3_err)(rc - 1), MRD_EINVAL,
                     rc - 1 == GW_S3E_SIGNATURE_DOES_NOT_MATCH ? NULL : why);
        gw_req_pause(r);
        p->paused = 1;
        if (!p->busy)
            put_step(p);
        return 0;
    }
    if (p->fill.len >= CHUNK) {
        if (p->busy || p->stage == P_OPEN) {
            p->paused = 1;
            gw_req_pause(r);
        } else {
            put_step(p);
        }
    }
    return 0;
}

static void
put_end(gw_req *r, void *ctx)
{
    put *p = ctx;
    const char *why = NULL;
    int rc;

    (void)r;
    if (p->chunk && (rc = gw_awschunk_finish(p->chunk, &why)) != 0)
        put_fail_msg(p, (gw_s3_err)(rc - 1), MRD_EINVAL, why);
    p->ended = 1;
    put_step(p);
}

static void
put_release(gw_req *r, void *ctx, int aborted)
{
    put *p = ctx;

    (void)r;
    (void)aborted;
    p->released = 1;
    if (!p->busy)
        put_cleanup(p);
}

static const gw_req_ops put_ops = {.body = put_body, .end = put_end, .release = put_release};

/* ---- request head -------------------------------------------------------- */

int
gw__decode_md5(const char *b64, unsigned char out[16])
{
    unsigned char tmp[64];
    size_t n = strlen(b64);
    int len;

    if (n != 24)
        return -1;
    len = EVP_DecodeBlock(tmp, (const unsigned char *)b64, (int)n);
    if (len != 18 || b64[22] != '=' || b64[23] != '=') /* 16 bytes + 2 pad */
        return -1;
    memcpy(out, tmp, 16);
    return 0;
}

gw_s3_err
gw__body_verify(const void *body, size_t len, const unsigned char *md5, const char *sha_hex)
{
    static const char hx[] = "0123456789abcdef";
    unsigned char digest[32];
    char hex[65];

    if (md5) {
        EVP_Digest(body, len, digest, NULL, EVP_md5(), NULL);
        if (memcmp(digest, md5, 16) != 0)
            return GW_S3E_BAD_DIGEST;
    }
    if (sha_hex) {
        EVP_Digest(body, len, digest, NULL, EVP_sha256(), NULL);
        for (int i = 0; i < 32; i++) {
            hex[2 * i] = hx[digest[i] >> 4];
            hex[2 * i + 1] = hx[digest[i] & 15];
        }
        if (!mrd_consttime_equal(hex, 64, sha_hex, strlen(sha_hex)))
            return GW_S3E_SHA256_MISMATCH;
    }
    return 0;
}

int
gw__meta_add(gw__meta *m, const char *name, const char *value)
{
    char *k, *v;

    if (!m->kv && !(m->kv = calloc(GW_MAX_META, sizeof(*m->kv))))
        return -1;
    if (m->n == GW_MAX_META)
        return -1;
    k = strdup(name);
    v = strdup(value);
    if (!k || !v) {
        free(k);
        free(v);
        return -1;
    }
    for (char *c = k; *c; c++)
        *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
    m->kv[m->n].key = k;
    m->kv[m->n].value = v;
    m->n++;
    return 0;
}

void
gw__meta_clear(gw__meta *m)
{
    for (int i = 0; i < m->n; i++) {
        free((char *)m->kv[i].key);
        free((char *)m->kv[i].value);
    }
    free(m->ctype);
    free(m->kv);
    memset(m, 0, sizeof(*m));
}

/* Content-Encoding as stored: without the aws-chunked transfer coding.
 * Writes "" when nothing else remains. */
static void
strip_aws_chunked(const char *v, char *out, size_t outsz)
{
    size_t o = 0;

    while (*v) {
        const char *comma = strchr(v, ',');
        size_t n = comma ? (size_t)(comma - v) : strlen(v);
        const char *t = v;
        size_t tn = n;
        while (tn && (*t == ' ' || *t == '\t'))
            t++, tn--;
        while (tn && (t[tn - 1] == ' ' || t[tn - 1] == '\t'))
            tn--;
        if (tn && !(tn == 11 && strncasecmp(t, "aws-chunked", 11) == 0) && o + tn + 2 < outsz) {
            if (o)
                out[o++] = ',';
            memcpy(out + o, t, tn);
            o += tn;
        }
        v += n + (comma ? 1 : 0);
    }
    out[o] = '\0';
}

int
gw__meta_parse(gw_req *r, gw__meta *m, const char **msg)
{
    const char *v = gw_req_header(r, "content-type");
    size_t meta_bytes = 0;
    char enc[256];

    *msg = NULL;
    m->ctype = strdup(v ? v : "binary/octet-stream");
    if (!m->ctype)
        return GW_S3E_INTERNAL;
    for (int i = 0; i < gw_req_header_count(r); i++) {
        const char *name, *value;
        int keep = 0;
        gw_req_header_at(r, i, &name, &value);
        if (strncasecmp(name, "x-amz-meta-", 11) == 0)
            keep = 1;
        for (const char *const *k = kept_headers; *k && !keep; k++)
            keep = strcasecmp(name, *k) == 0;
        if (!keep)
            continue;
        if (strcasecmp(name, "content-encoding") == 0) {
            strip_aws_chunked(value, enc, sizeof(enc));
            if (!enc[0])
                continue;
            value = enc;
        }
        meta_bytes += strlen(name) + strlen(value);
        if (meta_bytes > MAX_META_SZ || gw__meta_add(m, name, value) != 0) {
            *msg = "Your metadata headers exceed the maximum allowed metadata size (2 KiB).";
            return GW_S3E_INVALID_ARGUMENT;
        }
    }
    return 0;
}

int
gw__meta_tagging(gw_req *r, gw__meta *m, const char **msg)
{
    const char *v = gw_req_header(r, "x-amz-tagging");
    gw_tagset *t;
    mrd_buf enc = {0};
    int rc;

    *msg = NULL;
    if (!v)
        return 0;
    if (!(t = calloc(1, sizeof(*t)))) /* max 0: an object's limit */
        return GW_S3E_INTERNAL;
    rc = gw_tagset_parse_query(v, t);
    if (rc == 0)
        rc = gw_tagset_encode(t, &enc) == 0 ? 0 : -ENOMEM;
    if (rc == 0 && enc.len && gw__meta_add(m, ENGINE_META_TAGGING, enc.data) != 0)
        rc = -ENOMEM;
    free(t);
    mrd_buf_free(&enc);
    if (rc == MRD_ETOOBIG)
        return GW_S3E_INVALID_TAG;
    if (rc == MRD_EINVAL) {
        *msg = "x-amz-tagging must be URL-encoded key=value pairs joined by '&'";
        return GW_S3E_INVALID_ARGUMENT;
    }
    return rc == 0 ? 0 : GW_S3E_INTERNAL;
}

/* Sets up the aws-chunked decoder for a STREAMING-* payload. */
static gw_s3_err
put_parse_streaming(put *p, gw_req *r, const gw_sigv4_auth *auth, const char **msg)
{
    gw_awschunk_opts o = {0};
    const char *v = gw_req_header(r, "x-amz-decoded-content-length");
    char scope[160], *end;
    unsigned long long dl;

    if (strcmp(auth->payload_hash, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD") == 0) {
        o.mode = GW_AWSCHUNK_SIGNED;
    } else if (strcmp(auth->payload_hash, "STREAMING-UNSIGNED-PAYLOAD-TRAILER") == 0) {
        o.mode = GW_AWSCHUNK_UNSIGNED_TRAILER;
    } else if (strcmp(auth->payload_hash, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER") == 0) {
        o.mode = GW_AWSCHUNK_SIGNED_TRAILER;
    } else {
        *msg = "this x-amz-content-sha256 streaming mode is not implemented; use "
               "STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER], "
               "STREAMING-UNSIGNED-PAYLOAD-TRAILER, UNSIGNED-PAYLOAD or the body's SHA-256";
        return GW_S3E_NOT_IMPLEMENTED;
    }
    o.decoded_length = -1;
    if (v) {
        dl = strtoull(v, &end, 10);
        if (!*v || *end || *v < '0' || *v > '9') {
            *msg = "bad x-amz-decoded-content-length";
            return GW_S3E_INVALID_ARGUMENT;
        }
        if (dl > MAX_PUT)
            return GW_S3E_ENTITY_TOO_LARGE;
        o.decoded_length = (int64_t)dl;
    } else if (o.mode != GW_AWSCHUNK_UNSIGNED_TRAILER) {
        *msg = "an aws-chunked upload needs x-amz-decoded-content-length";
        return GW_S3E_MISSING_CONTENT_LENGTH;
    }
    snprintf(scope, sizeof(scope), "%s/%s/%s/aws4_request", auth->date, auth->region,
             auth->service);
    o.key = auth->signing_key;
    o.amz_date = auth->amz_date;
    o.scope = scope;
    o.seed_sig = auth->signature;
    o.trailer = o.mode != GW_AWSCHUNK_SIGNED ? gw_req_header(r, "x-amz-trailer") : NULL;
    if (gw_awschunk_new(&o, &p->chunk) != 0) {
        *msg = "bad x-amz-trailer: name one trailing checksum header";
        return GW_S3E_INVALID_ARGUMENT;
    }
    return 0;
}

static gw_s3_err
put_parse_head(put *p, gw_req *r, const gw_sigv4_auth *auth, const char **msg)
{
    const char *v;
    int64_t cl = gw_req_content_length(r);
    gw_s3_err e;

    *msg = NULL;
    if (cl < 0 && !gw_req_is_chunked(r))
        return GW_S3E_MISSING_CONTENT_LENGTH;
    if ((v = gw_req_header(r, "content-md5"))) {
        if (gw__decode_md5(v, p->md5) != 0)
            return GW_S3E_INVALID_DIGEST;
        p->has_md5 = 1;
    }
    if (strncmp(auth->payload_hash, "STREAMING-", 10) == 0) {
        /* the encoded length exceeds the object's; the decoder bounds it */
        if ((e = put_parse_streaming(p, r, auth, msg)) != 0)
            return e;
    } else if (cl > (int64_t)MAX_PUT) {
        return GW_S3E_ENTITY_TOO_LARGE;
    } else if (strcmp(auth->payload_hash, "UNSIGNED-PAYLOAD") != 0) {
        if (strlen(auth->payload_hash) != 64) {
            *msg = "x-amz-content-sha256 must be a hex SHA-256 or UNSIGNED-PAYLOAD";
            return GW_S3E_INVALID_ARGUMENT;
        }
        p->check_sha = 1;
        memcpy(p->sha, auth->payload_hash, 64); /* length checked above */
        p->sha[64] = '\0';
    }
    if (p->part)
        return 0; /* a part has no metadata of its own */
    if ((e = (gw_s3_err)gw__meta_parse(r, &p->meta, msg)) != 0)
        return e;
    return (gw_s3_err)gw__meta_tagging(r, &p->meta, msg);
}

/* PutObject and UploadPart: the same streaming path; part > 0 makes it a
 * part of upload_id. */
static void
put_start(gw_daemon *d, gw_req *r, const char *bucket, const char *key, const char *upload_id,
          uint32_t part, const gw_sigv4_auth *auth)
{
    put *p = calloc(1, sizeof(*p));
    const char *msg = NULL;
    gw_s3_err e;

    if (!p || !(p->key = strdup(key)) || (part && !(p->upload_id = strdup(upload_id)))) {
        if (p)
            free(p->key);
        free(p);
        gw_s3_error(r, GW_S3E_INTERNAL, gw_req_path(r), "out of memory");
        return;
    }
    stream_begin(); /* put_free ends it */
    p->d = d;
    p->r = r;
    p->part = part;
    snprintf(p->bucket, sizeof(p->bucket), "%s", bucket);
    e = put_parse_head(p, r, auth, &msg);
    if (e != 0) {
        put_free(p);
        gw_s3_error(r, e, gw_req_path(r), msg);
        return;
    }
    if (part) /* spreads the parts over the drives; never an index version */
        snprintf(p->vid, sizeof(p->vid), "%.16s.%u", upload_id, part);
    else
        engine_version_id_new(d->eng, p->vid);
    gw_req_attach(r, &put_ops, p);
    /* Hold the body until the bucket is checked and the writer is open,
     * and, for a large upload, until the gate lets it in. */
    p->paused = 1;
    gw_req_pause(r);
    p->gate.admit = put_admit;
    if (gw__gate_enter(GW_GATE_UPLOAD, &p->gate, d, gw_req_content_length(r)))
        put_open(p);
}

/* The upload gate let p in. */
static void
put_admit(gw_gate_node *n)
{
    put_open((put *)((char *)n - offsetof(put, gate)));
}

/* The writer opens (a worker checks the bucket): the upload runs. */
static void
put_open(put *p)
{
    submit(p, job_open);
    if (!p->busy)
        put_step(p);
}

void
gw__s3_put_object(gw_daemon *d, gw_req *r, const char *bucket, const char *key,
                  const gw_sigv4_auth *auth)
{
    put_start(d, r, bucket, key, NULL, 0, auth);
}

void
gw__s3_upload_part(gw_daemon *d, gw_req *r, const char *bucket, const char *key,
                   const char *upload_id, uint32_t part, const gw_sigv4_auth *auth)
{
    put_start(d, r, bucket, key, upload_id, part, auth);
}

/* ========================================================================= */
/* GET / HEAD                                                                */
/* ========================================================================= */

typedef struct get {
    gw_daemon *d;
    gw_req *r;
    char bucket[64];
    char *key;
    char *range;
    char *version_id; /* ?versionId=, NULL for the current version */
    uint32_t part;    /* ?partNumber=, 0 when absent */
    int vstate;       /* the bucket's versioning state */
    int anon;         /* anonymous: served only from a public-read bucket */
    store_version_rec *rec;
    store_reader *rd;
    uint64_t off, end;
    int busy, released, waiting, head;
    int prefetched; /* buf holds the first n bytes of the object, read by job_lookup */
    int rc, has_err, deleted;
    gw_s3_err err;
    unsigned char *buf;
    size_t cap; /* buf's size */
    size_t n;
    gw_gate_node gate; /* the download gate: a large body waits here before its first read */
} get;

/* Read buffers of the GET path. A chunk read from the store goes to the
 * connection by reference (gw_resp_write_ref), not copied into its output
 * buffer, and its buffer comes back here once sent; full-size (CHUNK)
 * buffers are kept for reuse, so a large GET neither copies each MiB once
 * more nor page-faults a fresh MiB. Per loop thread (thread-local): buffers
 * are taken in get_submit_read and given back by libevent's cleanup or
 * get_free, all on the loop. At most GET_BUFS_KEPT idle buffers are kept;
 * a loop thread frees its own as it ends (gw__s3_obj_thread_end). */
#define GET_BUFS_KEPT 16
static __thread unsigned char *get_bufs[GET_BUFS_KEPT];
static __thread int n_get_bufs;

void
gw__s3_obj_thread_end(void)
{
    while (n_get_bufs > 0)
        free(get_bufs[--n_get_bufs]);
}

static unsigned char *
get_buf_take(size_t cap)
{
    if (cap == CHUNK && n_get_bufs > 0)
        return get_bufs[--n_get_bufs];
    return malloc(cap);
}

/* libevent's cleanup of a referenced chunk; arg is the buffer's size. */
static void
get_buf_done(const void *data, size_t len, void *arg)
{
    size_t cap = (size_t)(uintptr_t)arg;

    (void)len;
    if (cap == CHUNK && n_get_bufs < GET_BUFS_KEPT)
        get_bufs[n_get_bufs++] = (unsigned char *)data;
    else
        free((void *)data);
}

static void
get_free(get *g)
{
    gw__gate_leave(GW_GATE_DOWNLOAD, &g->gate, g->d);
    store_reader_close(g->rd);
    store_version_rec_free(g->rec);
    if (g->buf)
        get_buf_done(g->buf, 0, (void *)(uintptr_t)g->cap);
    free(g->range);
    free(g->version_id);
    free(g->key);
    free(g);
    stream_end();
}

/* Looks the key up and opens a reader on its current version. The reader
 * holds the version's shard files open, so the version cannot be cut short
 * by an overwrite later; but between the lookup and the open an overwrite
 * or delete may already have freed the data, and the open fails
 * (MRD_EDEGRADED). The key is then looked up again: a different current
 * version is opened instead (up to LOOKUP_TRIES lookups); the same version
 * means its data really is unreadable here, and the GET fails before any
 * byte of the response is sent. */
static void
job_lookup(void *arg)
{
    get *g = arg;
    store *st = engine_store(g->d->eng);
    void *blob = NULL;
    size_t len = 0;
    const store_version *v;
    char failed_vid[64] = "";
    int rc = store_bucket_get(st, g->bucket, &blob, &len);

    if (rc == 0)
        g->vstate = gw__bucket_vstate(blob, len);
    if (rc == 0 && g->anon && !gw__bucket_public_read(blob, len))
        rc = MRD_EAUTH;
    free(blob);
    if (rc == MRD_ENOTFOUND || rc == MRD_EAUTH) {
        g->has_err = 1;
        g->err = rc == MRD_EAUTH ? GW_S3E_ACCESS_DENIED : GW_S3E_NO_SUCH_BUCKET;
        return;
    }
    for (int attempt = 1; rc == 0; attempt++) {
        rc = engine_version_lookup(g->d->eng, g->bucket, g->key, g->version_id, &g->rec);
        if (rc == MRD_ENOTFOUND) {
            g->has_err = 1;
            g->err = g->version_id ? GW_S3E_NO_SUCH_VERSION : GW_S3E_NO_SUCH_KEY;
            return;
        }
        if (rc != 0)
            break;
        v = store_version_rec_get(g->rec);
        if (v->flags & STORE_VF_DELETE_MARKER) {
            /* the current version a marker: 404; a marker asked by id: 405
             * (the record stays for the response's headers) */
            g->has_err = 1;
            g->deleted = 1;
            g->err = g->version_id ? GW_S3E_METHOD_NOT_ALLOWED : GW_S3E_NO_SUCH_KEY;
            return;
        }
        if (g->head)
            return; /* HEAD needs the index record only */
        if (attempt > 1 && strcmp(v->version_id, failed_vid) == 0) {
            rc = MRD_EDEGRADED; /* still current: not a race, the data is lost */
            break;
        }
        rc = store_reader_open(st, v->layout, v->layout_len, &g->rd);
        if (rc != MRD_EDEGRADED || attempt == LOOKUP_TRIES)
            break;
        if (attempt == 1)
            MRD_DEBUG("s3.get_relookup", "bucket=%s version=%s", g->bucket, v->version_id);
        snprintf(failed_vid, sizeof(failed_vid), "%s", v->version_id);
        store_version_rec_free(g->rec); /* maybe freed under us: look again */
        g->rec = NULL;
        rc = 0;
    }
    if (rc != 0) {
        g->has_err = 1;
        g->err = gw_s3_err_from_rc(rc);
        g->rc = rc;
        return;
    }
    /* A small whole-object GET reads its bytes here too, saving the second
     * trip through the pool (a wake-up and a completion per request). A
     * failed read is left to job_read, which reports it. */
    v = store_version_rec_get(g->rec);
    if (!g->range && !g->part && v->size > 0 && v->size <= GET_PREFETCH &&
        (g->buf = malloc((size_t)v->size))) {
        g->cap = (size_t)v->size; /* below CHUNK: freed, never kept */
        g->n = 0;
        if (store_reader_read(g->rd, 0, g->buf, (size_t)v->size, &g->n) == 0 && g->n > 0)
            g->prefetched = 1;
    }
}

static void
job_read(void *arg)
{
    get *g = arg;
    uint64_t want = g->end - g->off;

    if (want > CHUNK)
        want = CHUNK;
    g->n = 0;
    g->rc = store_reader_read(g->rd, g->off, g->buf, (size_t)want, &g->n);
    if (g->rc == 0 && g->n == 0)
        g->rc = MRD_ECORRUPT; /* the object is shorter than its index record */
}

static void get_read_done(void *arg);

static void
get_submit_read(get *g)
{
    if (!g->buf) {
        /* Sized to what this GET reads (job_read never asks for more than
         * end - off): a 4 KiB GET allocating a 1 MiB chunk made glibc grow
         * and trim the heap on every request, a third of the daemon's CPU. */
        g->cap = g->end - g->off < CHUNK ? (size_t)(g->end - g->off) : CHUNK;
        if (!(g->buf = get_buf_take(g->cap))) {
            gw_resp_end(g->r); /* short: the layer cuts the connection */
            return;
        }
    }
    g->busy = 1;
    g->waiting = 0;
    if (engine_run(g->d->eng, job_read, get_read_done, g) != 0) {
        g->busy = 0;
        gw_resp_end(g->r); /* short: the layer cuts the connection */
    }
}

/* The download gate let g in: its body starts. */
static void
get_admit(gw_gate_node *n)
{
    get_submit_read((get *)((char *)n - offsetof(get, gate)));
}

static void
get_read_done(void *arg)
{
    get *g = arg;

    g->busy = 0;
    if (g->released) {
        get_free(g);
        return;
    }
    if (g->rc != 0) {
        MRD_ERROR("s3.get_read_failed", "bucket=%s offset=%llu error=\"%s\"", g->bucket,
                  (unsigned long long)g->off, mrd_strerror(g->rc));
        gw_resp_end(g->r);
        return;
    }
    if (gw_resp_write_ref(g->r, g->buf, g->n, get_buf_done, (void *)(uintptr_t)g->cap) == 0)
        g->buf = NULL; /* the connection has it now; get_submit_read takes another */
    g->off += g->n;
    if (g->off >= g->end) {
        gw_resp_end(g->r);
        return;
    }
    if (gw_resp_buffered(g->r) < CHUNK)
        get_submit_read(g);
    else
        g->waiting = 1;
}

static void
get_writable(gw_req *r, void *ctx)
{
    get *g = ctx;

    (void)r;
    if (g->waiting && !g->busy)
        get_submit_read(g);
}

static void
get_release(gw_req *r, void *ctx, int aborted)
{
    get *g = ctx;

    (void)r;
    (void)aborted;
    g->released = 1;
    if (!g->busy)
        get_free(g);
}

static const gw_req_ops get_ops = {.writable = get_writable, .release = get_release};

/* Parses a single "bytes=a-b" range against size. Returns 1 with [*a, *b]
 * (inclusive) for a satisfiable range, 0 to serve the whole object (no or
 * unparsable or multi range: RFC 9110 says ignore), -1 if unsatisfiable. */
static int
parse_range(const char *h, uint64_t size, uint64_t *a, uint64_t *b)
{
    unsigned long long x = 0, y = 0;
    char *end;

    if (!h || strncmp(h, "bytes=", 6) != 0 || strchr(h, ','))
        return 0;
    h += 6;
    if (*h == '-') {
        if (h[1] < '0' || h[1] > '9')
            return 0;
        y = strtoull(h + 1, &end, 10);
        if (*end)
            return 0;
        if (y == 0 || size == 0)
            return -1;
        *a = y >= size ? 0 : size - y;
        *b = size - 1;
        return 1;
    }
    if (*h < '0' || *h > '9')
        return 0;
    x = strtoull(h, &end, 10);
    if (*end != '-')
        return 0;
    if (end[1] == '\0') {
        y = size ? size - 1 : 0;
    } else {
        if (end[1] < '0' || end[1] > '9')
            return 0;
        y = strtoull(end + 1, &end, 10);
        if (*end || y < x)
            return 0;
    }
    if (x >= size)
        return -1;
    *a = x;
    *b = y >= size ? size - 1 : y;
    return 1;
}

/* ---- conditional requests ----------------------------------------------- */

/* 1 if the entity tag list h ("*", or comma-separated tags, quoted or not,
 * weak or strong) names etag. */
static int
etag_listed(const char *h, const char *etag)
{
    size_t el = strlen(etag);

    while (*h) {
        const char *comma = strchr(h, ',');
        size_t n = comma ? (size_t)(comma - h) : strlen(h);
        const char *t = h;
        while (n && (*t == ' ' || *t == '\t'))
            t++, n--;
        while (n && (t[n - 1] == ' ' || t[n - 1] == '\t'))
            n--;
        if (n >= 2 && t[0] == 'W' && t[1] == '/')
            t += 2, n -= 2;
        if (n >= 2 && t[0] == '"' && t[n - 1] == '"')
            t++, n -= 2;
        if ((n == 1 && *t == '*') || (n == el && memcmp(t, etag, n) == 0))
            return 1;
        h = comma ? comma + 1 : h + strlen(h);
    }
    return 0;
}

/* Parses an HTTP date (IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT", also
 * RFC 850 and asctime forms) into Unix seconds; -1 if it is none of them. */
static int64_t
http_date_parse(const char *s)
{
    static const char *const fmts[] = {"%a, %d %b %Y %H:%M:%S GMT", "%A, %d-%b-%y %H:%M:%S GMT",
                                       "%a %b %e %H:%M:%S %Y", NULL};
    struct tm tm;

    for (const char *const *f = fmts; *f; f++) {
        const char *end;
        memset(&tm, 0, sizeof(tm));
        end = strptime(s, *f, &tm);
        if (end && *end == '\0')
            return (int64_t)timegm(&tm);
    }
    return -1;
}

/*
 * The conditional headers of a GET or HEAD against the version found, with
 * the precedence of RFC 9110 section 13.2.2, which S3 follows:
 *   1. If-Match fails -> 412; when present (and true), If-Unmodified-Since
 *      is not looked at;
 *   2. otherwise If-Unmodified-Since, modified after it -> 412;
 *   3. If-None-Match matches -> 304; when present (and false),
 *      If-Modified-Since is not looked at;
 *   4. otherwise If-Modified-Since, not modified after it -> 304.
 * Times compare in whole seconds (Last-Modified has no more). A date that
 * does not parse is ignored, as the RFC says. Returns 200, 304 or 412.
 */
static const char *
prefixed_header(gw_req *r, const char *prefix, const char *name)
{
    char h[64];

    snprintf(h, sizeof(h), "%s%s", prefix, name);
    return gw_req_header(r, h);
}

int
gw__preconditions(gw_req *r, const char *prefix, const char *etag, uint64_t mtime_ms)
{
    const char *im = prefixed_header(r, prefix, "if-match");
    const char *inm = prefixed_header(r, prefix, "if-none-match");
    const char *ius = prefixed_header(r, prefix, "if-unmodified-since");
    const char *ims = prefixed_header(r, prefix, "if-modified-since");
    int64_t lm = (int64_t)(mtime_ms / 1000), t;

    if (im) {
        if (!etag_listed(im, etag))
            return 412;
    } else if (ius && (t = http_date_parse(ius)) >= 0 && lm > t) {
        return 412;
    }
    if (inm) {
        if (etag_listed(inm, etag))
            return 304;
    } else if (ims && (t = http_date_parse(ims)) >= 0 && lm <= t) {
        return 304;
    }
    return 200;
}

/* User metadata as response headers; the tag set only as its count. */
static int
meta_header(void *ud, const char *key, const char *value)
{
    char n[16];
    int count = 1;

    if (strcmp(key, ENGINE_META_TAGGING) == 0) {
        for (const char *c = value; *c; c++)
            count += *c == '&';
        snprintf(n, sizeof(n), "%d", *value ? count : 0);
        gw_resp_header(ud, "x-amz-tagging-count", n);
    } else if (strcmp(key, ENGINE_META_TAGS_HLC) != 0) {
        gw_resp_header(ud, key, value);
    }
    return 0;
}

static void
get_lookup_done(void *arg)
{
    get *g = arg;
    const store_version *v;
    char etag[300], lm[64], cr[96], rsrc[64];
    uint64_t a = 0, b = 0;
    int rng, status = 200;

    g->busy = 0;
    if (g->released) {
        get_free(g);
        return;
    }
    if (g->has_err) {
        if (gw__route_read_failed(g->d, g->r, g->err, g->rc, g->deleted)) {
            get_free(g); /* a peer serves it; the proxy's ops replaced ours */
            return;
        }
        if (g->deleted && g->rec) {
            const char *vh =
                gw__version_header(store_version_rec_get(g->rec), g->vstate, g->version_id != NULL);
            gw_resp_header(g->r, "x-amz-delete-marker", "true");
            if (vh)
                gw_resp_header(g->r, "x-amz-version-id", vh);
        }
        gw_s3_error(g->r, g->err, gw_req_path(g->r), NULL);
        return;
    }
    v = store_version_rec_get(g->rec);
    snprintf(etag, sizeof(etag), "\"%s\"", v->etag ? v->etag : "");
    gw__http_time(MRD_HLC_MS(v->hlc), lm, sizeof(lm));
    switch (gw__preconditions(g->r, "", v->etag ? v->etag : "", MRD_HLC_MS(v->hlc))) {
    case 412:
        gw_s3_error(g->r, GW_S3E_PRECONDITION_FAILED, gw_req_path(g->r), NULL);
        return;
    case 304:
        gw_s3_request_id(g->r);
        gw_resp_header(g->r, "ETag", etag);
        gw_resp_header(g->r, "Last-Modified", lm);
        gw_resp_start(g->r, 304, 0);
        gw_resp_end(g->r);
        return;
    default:
        break;
    }
    if (g->part) {
        uint64_t poff = 0, psize = 0;
        uint32_t nparts = 0;
        if (store_layout_part(v->layout, v->layout_len, g->part, &poff, &psize, &nparts) != 0) {
            gw_s3_error(g->r, GW_S3E_INVALID_PART_NUMBER, gw_req_path(g->r), NULL);
            return;
        }
        if (nparts) {
            snprintf(rsrc, sizeof(rsrc), "%u", nparts);
            gw_resp_header(g->r, "x-amz-mp-parts-count", rsrc);
        }
        rng = 0;
        if (nparts && psize) { /* a multipart object's part: its range, 206 */
            a = poff;
            b = poff + psize - 1;
            rng = 1;
        }
    } else {
        rng = parse_range(g->range, v->size, &a, &b);
    }
    if (rng < 0) {
        snprintf(rsrc, sizeof(rsrc), "bytes */%llu", (unsigned long long)v->size);
        gw_resp_header(g->r, "Content-Range", rsrc);
        gw_s3_error(g->r, GW_S3E_INVALID_RANGE, gw_req_path(g->r), NULL);
        return;
    }
    if (rng > 0) {
        status = 206;
        snprintf(cr, sizeof(cr), "bytes %llu-%llu/%llu", (unsigned long long)a,
                 (unsigned long long)b, (unsigned long long)v->size);
        gw_resp_header(g->r, "Content-Range", cr);
        g->off = a;
        g->end = b + 1;
    } else {
        g->off = 0;
        g->end = v->size;
    }
    gw_s3_request_id(g->r);
    gw_resp_header(g->r, "ETag", etag);
    gw_resp_header(g->r, "Last-Modified", lm);
    gw_resp_header(g->r, "Accept-Ranges", "bytes");
    /* the internal version id: equal at every site once replicated, which is
     * how operators and the convergence tests compare copies */
    gw_resp_header(g->r, "x-meridian-version-id", v->version_id);
    {
        const char *vh = gw__version_header(v, g->vstate, g->version_id != NULL);
        if (vh)
            gw_resp_header(g->r, "x-amz-version-id", vh);
    }
    {
        const char *rs = gw__view_version_status(
            g->d,
            (uint32_t)strtoul(v->version_id + (strlen(v->version_id) > 16 ? 16 : 0), NULL, 16),
            v->hlc, mrd_clock_realtime_ms(NULL));
        if (rs)
            gw_resp_header(g->r, "x-amz-replication-status", rs);
    }
    gw_resp_header(g->r, "Content-Type",
                   v->content_type && *v->content_type ? v->content_type : "binary/octet-stream");
    engine_meta_each(v->user_meta, v->user_meta_len, meta_header, g->r);
    gw_resp_start(g->r, status, (int64_t)(g->end - g->off));
    if (g->head || g->off >= g->end) {
        gw_resp_end(g->r);
        return;
    }
    if (g->prefetched && g->off == 0) {
        g->busy = 1;
        g->rc = 0;
        get_read_done(g); /* as if job_read had just read them */
        return;
    }
    if (g->buf) { /* a prefetch that failed: job_read reads and reports */
        get_buf_done(g->buf, 0, (void *)(uintptr_t)g->cap);
        g->buf = NULL;
    }
    g->gate.admit = get_admit;
    if (gw__gate_enter(GW_GATE_DOWNLOAD, &g->gate, g->d, (int64_t)(g->end - g->off)))
        get_submit_read(g);
}

void
gw__s3_get_object(gw_daemon *d, gw_req *r, const char *bucket, const char *key)
{
    get *g = calloc(1, sizeof(*g));
    const char *range = gw_req_header(r, "range");

    if (!g || !(g->key = strdup(key)) || (range && !(g->range = strdup(range)))) {
        if (g)
            free(g->key);
        free(g);
        gw_s3_error(r, GW_S3E_INTERNAL, gw_req_path(r), "out of memory");
        return;
    }
    stream_begin(); /* get_free ends it */
    g->d = d;
    g->r = r;
    g->head = strcmp(gw_req_method(r), "HEAD") == 0;
    g->anon = gw__s3_anonymous(r);
    snprintf(g->bucket, sizeof(g->bucket), "%s", bucket);
    {
        /* One version by id: any version this site keeps, including a
         * hidden conflict loser (docs/conflicts.md); "null" is the key's
         * null version (engine_version_lookup), as in S3. */
        mrd_buf vid = {0};
        if (gw_query_param(gw_req_query(r), "versionId", &vid) && vid.data)
            g->version_id = strdup(vid.data);
        mrd_buf_free(&vid);
    }
    {
        /* one part of a multipart object (S3: not with a Range) */
        mrd_buf pn = {0};
        char *end = NULL;
        long n = 0;
        int has = gw_query_param(gw_req_query(r), "partNumber", &pn), bad = 0;
        if (has) {
            n = strtol(pn.data, &end, 10);
            bad = pn.len == 0 || *end || n < 1 || n > 10000 || range;
        }
        mrd_buf_free(&pn);
        if (bad) {
            get_free(g);
            gw_s3_error(r, range ? GW_S3E_INVALID_REQUEST : GW_S3E_INVALID_ARGUMENT, gw_req_path(r),
                        range ? "Cannot specify both Range header and partNumber query parameter"
                              : "Part number must be an integer between 1 and 10000, inclusive");
            return;
        }
        g->part = (uint32_t)n;
    }
    gw_req_attach(r, &get_ops, g);
    g->busy = 1;
    if (engine_run(d->eng, job_lookup, get_lookup_done, g) != 0) {
        g->busy = 0;
        gw_s3_error(r, GW_S3E_SERVICE_UNAVAILABLE, gw_req_path(r), NULL);
    }
}
