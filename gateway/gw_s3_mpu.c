/*
 * gw_s3_mpu.c - S3 multipart upload: Create, UploadPartCopy, Complete,
 * Abort, ListParts and ListMultipartUploads. UploadPart itself streams
 * through PutObject's path (gw_s3_obj.c, gw__s3_upload_part).
 *
 * State. An upload lives in the store's site-local upload tables
 * (store_mpu_*, store/FORMAT.md): created by CreateMultipartUpload with the
 * object's metadata (content type, x-amz-meta-*, kept headers, initiation
 * time, encoded below), then one record per part, each committed only after
 * the part's data is durable, so an acknowledged part survives kill -9.
 * Uploads are not replicated: only the completed object is.
 *
 * Upload ids name the site that holds the upload: 32 characters, random hex
 * digits then '-' and that site's id in decimal (at least 84 random bits).
 * The length is the one ids always had, which the index's key size limit
 * counts on (store_key_max). A request for an upload held by another
 * site (a client behind a load balancer that moved it mid-upload, or an
 * upload created while this site forwarded its writes) is forwarded there
 * (gw__route_early), so an upload's parts always meet at one site; this
 * site's own uploads are served here even while it is drained. Ids without
 * the suffix (made before it existed) are this site's.
 *
 * Complete. On a pool worker: parse the XML (gw_xml_parse_complete), check
 * the order, mark the upload as completing (no part can be replaced and no
 * abort can run under us), read the parts, check each listed part exists
 * with that ETag (InvalidPart) and that every part but the last holds at
 * least 5 MiB (EntityTooSmall), then build the object's PARTS layout out of
 * the parts' layouts: nothing is copied. The ETag is the MD5 of the binary
 * part MD5s, "-" and the part count, as AWS computes it. Back on the loop the
 * engine writes a MULTIPART_COMPLETE WAL record (stamp, group commit) and
 * applies it like a PutObject, dropping the upload (and freeing unused parts)
 * in the same index transaction; the 200 goes out after that. If anything
 * fails after the mark, the mark is cleared so the client can retry.
 *
 * Expiry. Uploads neither completed nor aborted are aborted once older than
 * multipart_expire (store_mpu_expire), checked from the daemon's periodic
 * drive timer: S3's AbortIncompleteMultipartUpload rule, site-wide.
 *
 * UploadPartCopy reads the source object's range through a store reader
 * and writes it into a new part on one pool worker, 1 MiB at a time: the
 * copy never holds more than that in memory, but it occupies a worker for
 * its duration (gw__copy_stream, shared with CopyObject in gw_s3_copy.c).
 */
#include "gw_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "engine.h"

#define S3_XMLNS      "http://s3.amazonaws.com/doc/2006-03-01/"
#define XML_HDR       "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
#define MIN_PART      (5ull << 20) /* S3: every part but the last */
#define MAX_PART      (5ull << 30)
#define COMPLETE_BODY (8u << 20) /* 10,000 parts with checksums fit easily */
#define BLOB_MAGIC    "MPU1"

/* ---- the upload blob: initiated ms, content type, metadata ---------------- */

static int
blob_encode(const gw__meta *m, uint64_t initiated_ms, mrd_buf *out)
{
    unsigned char t[8];
    int rc;

    for (int i = 0; i < 8; i++)
        t[i] = (unsigned char)(initiated_ms >> (8 * i));
    rc = mrd_buf_append(out, BLOB_MAGIC, 4);
    if (rc == 0)
        rc = mrd_buf_append(out, t, 8);
    if (rc == 0)
        rc = mrd_buf_append(out, m->ctype, strlen(m->ctype) + 1);
    for (int i = 0; i < m->n && rc == 0; i++) {
        rc = mrd_buf_append(out, m->kv[i].key, strlen(m->kv[i].key) + 1);
        if (rc == 0)
            rc = mrd_buf_append(out, m->kv[i].value, strlen(m->kv[i].value) + 1);
    }
    return rc;
}

/* A decoded blob: pointers into the blob, which must outlive it. */
typedef struct upload_info {
    uint64_t initiated_ms;
    const char *ctype;
    engine_kv kv[GW_MAX_META];
    size_t n;
} upload_info;

static int
blob_decode(const char *b, size_t len, upload_info *u)
{
    const char *p = b + 12, *end = b + len;

    memset(u, 0, sizeof(*u));
    if (len < 13 || memcmp(b, BLOB_MAGIC, 4) != 0 || b[len - 1] != '\0')
        return MRD_ECORRUPT;
    for (int i = 7; i >= 0; i--)
        u->initiated_ms = u->initiated_ms << 8 | (unsigned char)b[4 + i];
    u->ctype = p;
    p += strlen(p) + 1;
    while (p < end && u->n < GW_MAX_META) {
        const char *k = p, *v;
        p += strlen(p) + 1;
        if (p >= end)
            return MRD_ECORRUPT;
        v = p;
        p += strlen(p) + 1;
        u->kv[u->n++] = (engine_kv){k, v};
    }
    return p == end ? 0 : MRD_ECORRUPT;
}

/* ---- shared bits ----------------------------------------------------------- */

/* The op's uploadId query parameter into o->ext-independent buffer. */
static int
upload_id_of(gw__op *o, mrd_buf *out)
{
    return gw_query_param(o->query, "uploadId", out) && out->len > 0 && out->len <= 128;
}

static gw_s3_err
upload_err(int rc)
{
    return rc == MRD_ENOTFOUND || rc == MRD_EINVAL ? GW_S3E_NO_SUCH_UPLOAD
           : rc == MRD_EBUSY                       ? GW_S3E_OPERATION_ABORTED
                                                   : gw_s3_err_from_rc(rc);
}

static void
respond_200_xml(gw__op *o)
{
    gw__op_respond_xml(o, 200);
}

static void
hex16(const unsigned char *md5, char out[33])
{
    static const char hx[] = "0123456789abcdef";

    for (int i = 0; i < 16; i++) {
        out[2 * i] = hx[md5[i] >> 4];
        out[2 * i + 1] = hx[md5[i] & 15];
    }
    out[32] = '\0';
}

/* ---- CreateMultipartUpload ------------------------------------------------- */

typedef struct create_st {
    mrd_buf blob;
    char upload_id[33];
} create_st;

static void
create_free(void *p)
{
    create_st *c = p;

    if (c)
        mrd_buf_free(&c->blob);
    free(c);
}

static void
work_create(gw__op *o)
{
    create_st *c = o->ext;
    int rc;

    gw__op_work_bucket(o);
    if (o->has_err)
        return;
    rc = store_mpu_create(engine_store(o->d->eng), o->bucket, o->key, c->upload_id, c->blob.data,
                          c->blob.len);
    if (rc != 0) {
        gw__op_fail(o, gw_s3_err_from_rc(rc));
        return;
    }
    mrd_buf_appendf(&o->out, XML_HDR "<InitiateMultipartUploadResult xmlns=\"" S3_XMLNS "\">");
    gw_xml_elem(&o->out, "Bucket", o->bucket);
    gw_xml_elem(&o->out, "Key", o->key);
    gw_xml_elem(&o->out, "UploadId", c->upload_id);
    mrd_buf_appendf(&o->out, "</InitiateMultipartUploadResult>\n");
}

static void
mpu_create(gw__op *o)
{
    create_st *c = calloc(1, sizeof(*c));
    unsigned char rnd[16];
    char site[12];
    gw__meta m;
    const char *msg = NULL;
    int e, n;

    memset(&m, 0, sizeof(m));
    if (!c || RAND_bytes(rnd, sizeof(rnd)) != 1) {
        free(c);
        gw__op_abandon(o, GW_S3E_INTERNAL, NULL);
        return;
    }
    o->ext = c;
    o->ext_free = create_free;
    hex16(rnd, c->upload_id);
    n = snprintf(site, sizeof(site), "-%u", o->d->conf->site_id);
    memcpy(c->upload_id + 32 - n, site, (size_t)n + 1);
    e = gw__meta_parse(o->r, &m, &msg);
    if (e == 0)
        e = gw__meta_tagging(o->r, &m, &msg);
    if (e == 0 && blob_encode(&m, mrd_clock_realtime_ms(NULL), &c->blob) != 0)
        e = GW_S3E_INTERNAL;
    gw__meta_clear(&m);
    if (e != 0) {
        gw__op_abandon(o, (gw_s3_err)e, msg);
        return;
    }
    gw__op_go(o, work_create, respond_200_xml);
}

/* ---- CompleteMultipartUpload ----------------------------------------------- */

/* Parts of the upload as stored, in number order (copies). */
typedef struct stored_parts {
    store_mpu_part *p;
    size_t n, cap;
    int nomem;
} stored_parts;

static int
collect_part(void *user, const store_mpu_part *p)
{
    stored_parts *s = user;
    void *lay;

    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        store_mpu_part *np = realloc(s->p, cap * sizeof(*np));
        if (!np) {
            s->nomem = 1;
            return 1;
        }
        s->p = np;
        s->cap = cap;
    }
    if (!(lay = malloc(p->layout_len ? p->layout_len : 1))) {
        s->nomem = 1;
        return 1;
    }
    memcpy(lay, p->layout, p->layout_len);
    s->p[s->n] = *p;
    s->p[s->n++].layout = lay;
    return 0;
}

static void
stored_free(stored_parts *s)
{
    for (size_t i = 0; i < s->n; i++)
        free((void *)s->p[i].layout);
    free(s->p);
    memset(s, 0, sizeof(*s));
}

static const store_mpu_part *
find_part(const stored_parts *s, uint32_t num)
{
    size_t lo = 0, hi = s->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->p[mid].number == num)
            return &s->p[mid];
        if (s->p[mid].number < num)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

typedef struct complete_st {
    char upload_id[129];
    char vid[25];
    char etag[48];
    uint64_t size;
    uint32_t n_parts;
    void *layout;
    size_t layout_len;
    void *blob; /* the upload blob, which info points into */
    size_t blob_len;
    upload_info info;
    int marked; /* store_mpu_complete_begin succeeded */
} complete_st;

static void
complete_free(void *p)
{
    complete_st *c = p;

    if (c) {
        free(c->layout);
        free(c->blob);
    }
    free(c);
}

/* Checks the requested list against the stored parts and builds the
 * layout and etag. Returns 0 or the S3 error. */
static gw_s3_err
complete_build(complete_st *c, const gw_complete_part *req, size_t n, const stored_parts *sp)
{
    store_part_ref *refs = calloc(n, sizeof(*refs));
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char sum[16];
    char hex[33];
    unsigned int mdlen = 0;
    gw_s3_err e = 0;

    if (!refs || !md || EVP_DigestInit_ex(md, EVP_md5(), NULL) != 1) {
        e = GW_S3E_INTERNAL;
        goto out;
    }
    c->size = 0;
    for (size_t i = 0; i < n && !e; i++) {
        const store_mpu_part *p = find_part(sp, req[i].number);
        if (!p) {
            e = GW_S3E_INVALID_PART;
            break;
        }
        hex16(p->md5, hex);
        if (strcasecmp(hex, req[i].etag) != 0) {
            e = GW_S3E_INVALID_PART;
            break;
        }
        if (i + 1 < n && p->size < MIN_PART) {
            e = GW_S3E_ENTITY_TOO_SMALL;
            break;
        }
        EVP_DigestUpdate(md, p->md5, 16);
        refs[i] = (store_part_ref){p->layout, p->layout_len};
        c->size += p->size;
    }
    if (e)
        goto out;
    if (EVP_DigestFinal_ex(md, sum, &mdlen) != 1 ||
        store_layout_compose(refs, n, &c->layout, &c->layout_len) != 0) {
        e = GW_S3E_INTERNAL;
        goto out;
    }
    hex16(sum, hex);
    snprintf(c->etag, sizeof(c->etag), "%s-%zu", hex, n);
    c->n_parts = (uint32_t)n;
out:
    EVP_MD_CTX_free(md);
    free(refs);
    return e;
}

static void
work_complete(gw__op *o)
{
    complete_st *c = o->ext;
    store *st = engine_store(o->d->eng);
    gw_complete_part *req = NULL;
    stored_parts sp = {0};
    size_t n = 0;
    gw_s3_err e = 0;
    int rc;

    gw__op_work_bucket(o);
    if (o->has_err)
        return;
    rc = gw_xml_parse_complete(o->in.data ? o->in.data : "", o->in.len, &req, &n);
    if (rc != 0) {
        gw__op_fail(o, rc == -ENOMEM ? GW_S3E_INTERNAL : GW_S3E_MALFORMED_XML);
        return;
    }
    for (size_t i = 1; i < n && !e; i++)
        if (req[i].number <= req[i - 1].number)
            e = GW_S3E_INVALID_PART_ORDER;
    if (!e) {
        rc = store_mpu_get(st, o->bucket, o->key, c->upload_id, &c->blob, &c->blob_len);
        if (rc == 0 && blob_decode(c->blob, c->blob_len, &c->info) != 0)
            rc = MRD_ECORRUPT;
        if (rc == 0)
            rc = store_mpu_complete_begin(st, o->bucket, o->key, c->upload_id);
        if (rc != 0)
            e = upload_err(rc);
        else
            c->marked = 1;
    }
    if (!e) {
        rc = store_mpu_parts(st, o->bucket, o->key, c->upload_id, 0, collect_part, &sp);
        if (rc != 0 || sp.nomem)
            e = rc ? upload_err(rc) : GW_S3E_INTERNAL;
    }
    if (!e)
        e = complete_build(c, req, n, &sp);
    if (e && c->marked) {
        store_mpu_complete_cancel(st, o->bucket, o->key, c->upload_id);
        c->marked = 0;
    }
    if (e)
        gw__op_fail(o, e);
    stored_free(&sp);
    free(req);
}

static void
respond_complete(gw__op *o)
{
    complete_st *c = o->ext;
    char loc[300];

    snprintf(loc, sizeof(loc), "/%s/", o->bucket);
    mrd_buf_appendf(&o->out, XML_HDR "<CompleteMultipartUploadResult xmlns=\"" S3_XMLNS "\">");
    mrd_buf_appendf(&o->out, "<Location>");
    gw_xml_escape(&o->out, loc);
    gw_xml_escape(&o->out, o->key);
    mrd_buf_appendf(&o->out, "</Location>");
    gw_xml_elem(&o->out, "Bucket", o->bucket);
    gw_xml_elem(&o->out, "Key", o->key);
    mrd_buf_appendf(&o->out, "<ETag>&quot;%s&quot;</ETag></CompleteMultipartUploadResult>\n",
                    c->etag);
    if (o->vstate != ENGINE_VERSIONING_UNSET)
        gw_resp_header(o->r, "x-amz-version-id",
                       o->vstate == ENGINE_VERSIONING_ENABLED ? c->vid : "null");
    gw__route_write_token(o->d, o->r);
    gw__op_respond_xml(o, 200);
}

/* After the engine failed: clear the mark so the client can retry. */
static void
work_complete_cancel(gw__op *o)
{
    complete_st *c = o->ext;

    store_mpu_complete_cancel(engine_store(o->d->eng), o->bucket, o->key, c->upload_id);
}

static void
complete_done(void *ud, int status)
{
    gw__op *o = ud;

    if (status == 0) {
        gw__op_finish(o);
        return;
    }
    MRD_WARN("s3.complete_failed", "bucket=%s error=\"%s\"", o->bucket, mrd_strerror(status));
    gw__op_fail(o, status == MRD_ENOTFOUND ? GW_S3E_NO_SUCH_BUCKET : gw_s3_err_from_rc(status));
    o->work = work_complete_cancel;
    gw__op_start(o); /* answers the error when the mark is cleared */
}

/* On the loop once the parts check out: the WAL record. */
static void
complete_commit(gw__op *o)
{
    complete_st *c = o->ext;
    engine_put ep = {.bucket = o->bucket,
                     .key = o->key,
                     .version_id = c->vid,
                     .size = c->size,
                     .etag = c->etag,
                     .content_type = c->info.ctype,
                     .meta = c->info.kv,
                     .n_meta = c->info.n,
                     .layout = c->layout,
                     .layout_len = c->layout_len};
    int rc;

    o->inflight = 1;
    engine_version_id_new(o->d->eng, c->vid);
    rc = engine_multipart_complete(o->d->eng, &ep, c->upload_id, c->n_parts, complete_done, o);
    if (rc != 0)
        complete_done(o, rc);
}

static void
mpu_complete(gw__op *o)
{
    complete_st *c = calloc(1, sizeof(*c));
    mrd_buf id = {0};

    if (!c) {
        gw__op_abandon(o, GW_S3E_INTERNAL, NULL);
        return;
    }
    o->ext = c;
    o->ext_free = complete_free;
    if (!upload_id_of(o, &id)) {
        mrd_buf_free(&id);
        gw__op_abandon(o, GW_S3E_NO_SUCH_UPLOAD, NULL);
        return;
    }
    snprintf(c->upload_id, sizeof(c->upload_id), "%s", id.data);
    mrd_buf_free(&id);
    o->body_max = COMPLETE_BODY;
    o->then = complete_commit;
    gw__op_go(o, work_complete, respond_complete);
}

/* ---- AbortMultipartUpload -------------------------------------------------- */

static void
work_abort(gw__op *o)
{
    mrd_buf id = {0};
    int rc;

    gw__op_work_bucket(o);
    if (o->has_err)
        return;
    if (!upload_id_of(o, &id)) {
        gw__op_fail(o, GW_S3E_NO_SUCH_UPLOAD);
    } else if ((rc = store_mpu_abort(engine_store(o->d->eng), o->bucket, o->key, id.data)) != 0) {
        gw__op_fail(o, upload_err(rc));
    }
    mrd_buf_free(&id);
}

static void
respond_204(gw__op *o)
{
    gw_resp_simple(o->r, 204, NULL, NULL, 0);
}

/* ---- ListParts ------------------------------------------------------------- */

typedef struct parts_page {
    mrd_buf *out;
    int max, count, truncated;
    uint32_t last;
} parts_page;

static int
part_xml(void *user, const store_mpu_part *p)
{
    parts_page *pg = user;
    char t[40], hex[33];

    if (pg->count == pg->max) {
        pg->truncated = 1;
        return 1;
    }
    pg->count++;
    pg->last = p->number;
    gw__iso_time(p->mtime_ms, t, sizeof(t));
    hex16(p->md5, hex);
    mrd_buf_appendf(pg->out,
                    "<Part><PartNumber>%u</PartNumber><LastModified>%s</LastModified>"
                    "<ETag>&quot;%s&quot;</ETag><Size>%llu</Size></Part>",
                    p->number, t, hex, (unsigned long long)p->size);
    return 0;
}

/* Parses an optional non-negative integer query parameter. */
static int
int_param(const char *query, const char *name, long dflt, long max, long *out)
{
    mrd_buf v = {0};
    char *end;
    long x = dflt;
    int ok = 1;

    if (gw_query_param(query, name, &v)) {
        x = strtol(v.data, &end, 10);
        ok = v.len > 0 && *end == '\0' && x >= 0;
    }
    mrd_buf_free(&v);
    *out = x > max ? max : x;
    return ok;
}

static void
work_list_parts(gw__op *o)
{
    mrd_buf id = {0}, parts = {0};
    parts_page pg = {.out = &parts};
    long max = 1000, marker = 0;
    void *blob = NULL;
    size_t len = 0;
    int rc;

    gw__op_work_bucket(o);
    if (o->has_err)
        return;
    if (!int_param(o->query, "max-parts", 1000, 1000, &max) ||
        !int_param(o->query, "part-number-marker", 0, GW_MPU_MAX_PARTS, &marker)) {
        gw__op_fail(o, GW_S3E_INVALID_ARGUMENT);
        return;
    }
    pg.max = (int)max;
    if (!upload_id_of(o, &id)) {
        gw__op_fail(o, GW_S3E_NO_SUCH_UPLOAD);
        goto out;
    }
    rc = store_mpu_get(engine_store(o->d->eng), o->bucket, o->key, id.data, &blob, &len);
    if (rc == 0)
        rc = store_mpu_parts(engine_store(o->d->eng), o->bucket, o->key, id.data, (uint32_t)marker,
                             part_xml, &pg);
    if (rc != 0) {
        gw__op_fail(o, upload_err(rc));
        goto out;
    }
    mrd_buf_appendf(&o->out, XML_HDR "<ListPartsResult xmlns=\"" S3_XMLNS "\">");
    gw_xml_elem(&o->out, "Bucket", o->bucket);
    gw_xml_elem(&o->out, "Key", o->key);
    gw_xml_elem(&o->out, "UploadId", id.data);
    mrd_buf_appendf(&o->out,
                    "<StorageClass>STANDARD</StorageClass><PartNumberMarker>%ld</PartNumberMarker>"
                    "<NextPartNumberMarker>%u</NextPartNumberMarker><MaxParts>%ld</MaxParts>"
                    "<IsTruncated>%s</IsTruncated>",
                    marker, pg.last, max, pg.truncated ? "true" : "false");
    if (parts.data)
        mrd_buf_append(&o->out, parts.data, parts.len);
    mrd_buf_appendf(&o->out, "</ListPartsResult>\n");
out:
    free(blob);
    mrd_buf_free(&id);
    mrd_buf_free(&parts);
}

/* ---- ListMultipartUploads -------------------------------------------------- */

typedef struct uploads_page {
    mrd_buf *out;
    int max, count, truncated;
    mrd_buf next_key, next_id;
    const char *delim; /* "" for none */
    size_t plen;
    mrd_buf cps, last_cp; /* CommonPrefixes written, the last one */
} uploads_page;

/* Uploads come in (key, upload id) order. With a delimiter, the keys that
 * roll up into one CommonPrefix are consecutive: the first writes it, the
 * others are consumed silently (so the next page starts after all of them),
 * and each prefix counts once against max-uploads, as a key does. */
static int
upload_xml(void *user, const char *key, const char *upload_id, const void *blob, size_t len)
{
    uploads_page *pg = user;
    const char *cut = *pg->delim ? strstr(key + pg->plen, pg->delim) : NULL;
    size_t cplen = cut ? (size_t)(cut - key) + strlen(pg->delim) : 0;
    int same = cut && pg->last_cp.len == cplen && memcmp(pg->last_cp.data, key, cplen) == 0;
    upload_info u;
    char t[40];

    if (!same) {
        if (pg->count == pg->max) {
            pg->truncated = 1;
            return 1;
        }
        pg->count++;
    }
    mrd_buf_reset(&pg->next_key);
    mrd_buf_reset(&pg->next_id);
    mrd_buf_append(&pg->next_key, key, strlen(key) + 1);
    mrd_buf_append(&pg->next_id, upload_id, strlen(upload_id) + 1);
    if (same)
        return 0;
    if (cut) {
        mrd_buf_reset(&pg->last_cp);
        mrd_buf_append(&pg->last_cp, key, cplen);
        mrd_buf_append(&pg->last_cp, "", 0);
        mrd_buf_appendf(&pg->cps, "<CommonPrefixes>");
        gw_xml_elem(&pg->cps, "Prefix", pg->last_cp.data);
        mrd_buf_appendf(&pg->cps, "</CommonPrefixes>");
        return 0;
    }
    if (blob_decode(blob, len, &u) != 0)
        u.initiated_ms = 0;
    gw__iso_time(u.initiated_ms, t, sizeof(t));
    mrd_buf_appendf(pg->out, "<Upload>");
    gw_xml_elem(pg->out, "Key", key);
    gw_xml_elem(pg->out, "UploadId", upload_id);
    mrd_buf_appendf(pg->out,
                    "<StorageClass>STANDARD</StorageClass><Initiated>%s</Initiated></Upload>", t);
    return 0;
}

static void
work_list_uploads(gw__op *o)
{
    mrd_buf prefix = {0}, kmark = {0}, imark = {0}, delim = {0}, body = {0};
    uploads_page pg = {.out = &body};
    long max = 1000;
    int rc;

    gw__op_work_bucket(o);
    if (o->has_err)
        return;
    if (!int_param(o->query, "max-uploads", 1000, 1000, &max)) {
        gw__op_fail(o, GW_S3E_INVALID_ARGUMENT);
        return;
    }
    pg.max = (int)max;
    gw_query_param(o->query, "prefix", &prefix);
    gw_query_param(o->query, "key-marker", &kmark);
    gw_query_param(o->query, "upload-id-marker", &imark);
    gw_query_param(o->query, "delimiter", &delim);
    pg.delim = delim.data ? delim.data : "";
    pg.plen = prefix.data ? strlen(prefix.data) : 0;
    rc = store_mpu_list(engine_store(o->d->eng), o->bucket, prefix.data, kmark.data, imark.data,
                        upload_xml, &pg);
    if (rc != 0) {
        gw__op_fail(o, gw_s3_err_from_rc(rc));
        goto out;
    }
    mrd_buf_appendf(&o->out, XML_HDR "<ListMultipartUploadsResult xmlns=\"" S3_XMLNS "\">");
    gw_xml_elem(&o->out, "Bucket", o->bucket);
    gw_xml_elem(&o->out, "KeyMarker", kmark.data ? kmark.data : "");
    gw_xml_elem(&o->out, "UploadIdMarker", imark.data ? imark.data : "");
    if (pg.truncated) {
        gw_xml_elem(&o->out, "NextKeyMarker", pg.next_key.data ? pg.next_key.data : "");
        gw_xml_elem(&o->out, "NextUploadIdMarker", pg.next_id.data ? pg.next_id.data : "");
    }
    gw_xml_elem(&o->out, "Prefix", prefix.data ? prefix.data : "");
    if (*pg.delim)
        gw_xml_elem(&o->out, "Delimiter", pg.delim);
    mrd_buf_appendf(&o->out, "<MaxUploads>%ld</MaxUploads><IsTruncated>%s</IsTruncated>", max,
                    pg.truncated ? "true" : "false");
    if (body.data)
        mrd_buf_append(&o->out, body.data, body.len);
    if (pg.cps.data)
        mrd_buf_append(&o->out, pg.cps.data, pg.cps.len);
    mrd_buf_appendf(&o->out, "</ListMultipartUploadsResult>\n");
out:
    mrd_buf_free(&prefix);
    mrd_buf_free(&kmark);
    mrd_buf_free(&imark);
    mrd_buf_free(&delim);
    mrd_buf_free(&body);
    mrd_buf_free(&pg.next_key);
    mrd_buf_free(&pg.next_id);
    mrd_buf_free(&pg.cps);
    mrd_buf_free(&pg.last_cp);
}

/* ---- UploadPartCopy -------------------------------------------------------- */

typedef struct copy_st {
    char upload_id[129];
    uint32_t part;
    char *src_bucket, *src_key;
    char *src_vid;      /* ?versionId= of the source, or NULL */
    char src_shown[32]; /* x-amz-copy-source-version-id, or "" */
    char *range;        /* x-amz-copy-source-range, or NULL */
    char etag[33];
    uint64_t mtime_ms;
} copy_st;

static void
copy_free(void *p)
{
    copy_st *c = p;

    if (c) {
        free(c->src_bucket);
        free(c->src_key);
        free(c->src_vid);
        free(c->range);
    }
    free(c);
}

/* "bytes=a-b" within size: [*a, *b]. 0 or -1. */
static int
copy_range(const char *h, uint64_t size, uint64_t *a, uint64_t *b)
{
    unsigned long long x, y;
    char *end;

    if (strncmp(h, "bytes=", 6) != 0 || !isdigit((unsigned char)h[6]))
        return -1;
    x = strtoull(h + 6, &end, 10);
    if (*end != '-' || !isdigit((unsigned char)end[1]))
        return -1;
    y = strtoull(end + 1, &end, 10);
    if (*end || y < x || y >= size)
        return -1;
    *a = x;
    *b = y;
    return 0;
}

/* Copies [a, b] of the source reader into a new part, then records it. */
static gw_s3_err
copy_data(gw__op *o, copy_st *c, store_reader *rd, uint64_t a, uint64_t b)
{
    store *st = engine_store(o->d->eng);
    store_put_result res;
    char vid[160];
    int rc;

    memset(&res, 0, sizeof(res));
    snprintf(vid, sizeof(vid), "%.16s.%u", c->upload_id, c->part);
    rc = gw__copy_stream(st, rd, a, b, o->bucket, o->key, vid, &res);
    if (rc != 0)
        return gw_s3_err_from_rc(rc);
    {
        store_mpu_part mp = {.number = c->part,
                             .size = res.size,
                             .mtime_ms = mrd_clock_realtime_ms(NULL),
                             .layout = res.layout,
                             .layout_len = res.layout_len};
        memcpy(mp.md5, res.md5, 16);
        c->mtime_ms = mp.mtime_ms;
        snprintf(c->etag, sizeof(c->etag), "%s", res.etag);
        rc = store_mpu_part_put(st, o->bucket, o->key, c->upload_id, &mp);
        if (rc != 0)
            store_object_delete_data(st, res.layout, res.layout_len);
    }
    store_put_result_clear(&res);
    return rc == 0 ? 0 : upload_err(rc);
}

static void
work_copy_part(gw__op *o)
{
    copy_st *c = o->ext;
    store *st = engine_store(o->d->eng);
    store_version_rec *rec = NULL;
    store_reader *rd = NULL;
    const store_version *v;
    void *blob = NULL;
    size_t len = 0;
    uint64_t a = 0, b = 0;
    gw_s3_err e = 0;
    int rc;

    gw__op_work_bucket(o);
    if (o->has_err)
        return;
    rc = store_mpu_get(st, o->bucket, o->key, c->upload_id, &blob, &len);
    free(blob);
    if (rc != 0) {
        gw__op_fail(o, upload_err(rc));
        return;
    }
    if ((e = gw__copy_source_version(o->d, c->src_bucket, c->src_key, c->src_vid, &rec,
                                     c->src_shown, sizeof(c->src_shown))) != 0) {
        gw__op_fail(o, e);
        return;
    }
    v = store_version_rec_get(rec);
    if (gw__preconditions(o->r, "x-amz-copy-source-", v->etag ? v->etag : "", MRD_HLC_MS(v->hlc)) !=
        200) {
        e = GW_S3E_PRECONDITION_FAILED;
    } else if (c->range) {
        if (copy_range(c->range, v->size, &a, &b) != 0)
            e = GW_S3E_INVALID_RANGE;
    } else if (v->size == 0) {
        e = GW_S3E_INVALID_REQUEST; /* nothing to copy: S3 wants a body */
    } else {
        b = v->size - 1;
    }
    if (!e && b + 1 - a > MAX_PART)
        e = GW_S3E_ENTITY_TOO_LARGE;
    if (!e && (rc = store_reader_open(st, v->layout, v->layout_len, &rd)) != 0)
        e = gw_s3_err_from_rc(rc);
    if (!e)
        e = copy_data(o, c, rd, a, b);
    store_reader_close(rd);
    store_version_rec_free(rec);
    if (e) {
        gw__op_fail(o, e);
        return;
    }
    {
        char t[40];
        gw__iso_time(c->mtime_ms, t, sizeof(t));
        mrd_buf_appendf(&o->out,
                        XML_HDR "<CopyPartResult xmlns=\"" S3_XMLNS "\"><LastModified>%s"
                                "</LastModified><ETag>&quot;%s&quot;</ETag></CopyPartResult>\n",
                        t, c->etag);
    }
}

static void
respond_copy_part(gw__op *o)
{
    copy_st *c = o->ext;

    if (c->src_shown[0])
        gw_resp_header(o->r, "x-amz-copy-source-version-id", c->src_shown);
    gw__op_respond_xml(o, 200);
}

static void
mpu_copy_part(gw__op *o, uint32_t part, const char *upload_id)
{
    copy_st *c = calloc(1, sizeof(*c));
    const char *range = gw_req_header(o->r, "x-amz-copy-source-range");

    if (!c) {
        gw__op_abandon(o, GW_S3E_INTERNAL, NULL);
        return;
    }
    o->ext = c;
    o->ext_free = copy_free;
    c->part = part;
    snprintf(c->upload_id, sizeof(c->upload_id), "%s", upload_id);
    if (gw__copy_source_parse(gw_req_header(o->r, "x-amz-copy-source"), &c->src_bucket, &c->src_key,
                              &c->src_vid) != 0 ||
        (c->src_vid && !gw__version_id_valid(c->src_vid))) {
        gw__op_abandon(o, GW_S3E_INVALID_ARGUMENT,
                       "x-amz-copy-source must be bucket/key[?versionId=id], URL-encoded");
        return;
    }
    if (range && !(c->range = strdup(range))) {
        gw__op_abandon(o, GW_S3E_INTERNAL, NULL);
        return;
    }
    gw__op_go(o, work_copy_part, respond_copy_part);
}

/* ---- routing --------------------------------------------------------------- */

void
gw__s3_mpu_bucket(gw_daemon *d, gw_req *r, const char *bucket, const char *method)
{
    gw__op *o;

    if (strcmp(method, "GET") != 0) {
        gw_s3_error(r, GW_S3E_METHOD_NOT_ALLOWED, gw_req_path(r), NULL);
        return;
    }
    if (!(o = gw__op_new(d, r, bucket, NULL))) {
        gw_s3_error(r, GW_S3E_INTERNAL, gw_req_path(r), NULL);
        return;
    }
    gw__op_go(o, work_list_uploads, respond_200_xml);
}

void
gw__s3_mpu_object(gw_daemon *d, gw_req *r, const char *bucket, const char *key, const char *method,
                  const gw_sigv4_auth *auth)
{
    const char *q = gw_req_query(r);
    mrd_buf id = {0}, pn = {0};
    int has_id = gw_query_param(q, "uploadId", &id);
    int has_pn = gw_query_param(q, "partNumber", &pn);
    gw__op *o = NULL;

    if (has_id && (id.len == 0 || id.len > 128)) {
        gw_s3_error(r, GW_S3E_NO_SUCH_UPLOAD, gw_req_path(r), NULL);
        goto out;
    }
    /* a new upload goes to a peer while this site cannot take writes, and
     * its id then names that peer (another site's upload was forwarded
     * there before this: gw__route_early) */
    if (!has_id && strcmp(method, "POST") == 0 && gw__route_write(d, r))
        goto out;
    if (strcmp(method, "PUT") == 0 && has_id && has_pn) {
        char *end;
        long part = strtol(pn.data, &end, 10);
        if (pn.len == 0 || *end || part < 1 || part > GW_MPU_MAX_PARTS)
            gw_s3_error(r, GW_S3E_INVALID_ARGUMENT, gw_req_path(r),
                        "Part number must be an integer between 1 and 10000, inclusive");
        else if (!gw_req_header(r, "x-amz-copy-source"))
            gw__s3_upload_part(d, r, bucket, key, id.data, (uint32_t)part, auth);
        else if (!(o = gw__op_new(d, r, bucket, key)))
            gw_s3_error(r, GW_S3E_INTERNAL, gw_req_path(r), NULL);
        else
            mpu_copy_part(o, (uint32_t)part, id.data);
        goto out;
    }
    if (!(o = gw__op_new(d, r, bucket, key))) {
        gw_s3_error(r, GW_S3E_INTERNAL, gw_req_path(r), NULL);
        goto out;
    }
    if (strcmp(method, "POST") == 0 && !has_id && gw_query_param(q, "uploads", &pn))
        mpu_create(o);
    else if (strcmp(method, "POST") == 0 && has_id)
        mpu_complete(o);
    else if (strcmp(method, "DELETE") == 0 && has_id)
        gw__op_go(o, work_abort, respond_204);
    else if (strcmp(method, "GET") == 0 && has_id)
        gw__op_go(o, work_list_parts, respond_200_xml);
    else
        gw__op_abandon(o, GW_S3E_METHOD_NOT_ALLOWED, NULL);
out:
    mrd_buf_free(&id);
    mrd_buf_free(&pn);
}

/* ---- expiry of abandoned uploads ------------------------------------------ */

/* Loop-thread state of the periodic expiry: when it last ran, and whether a
 * run is on the pool now. */
static uint64_t expire_last_ms;
static int expire_running;

static void
work_expire(void *arg)
{
    gw_daemon *d = arg;
    uint64_t n = 0, now = mrd_clock_realtime_ms(NULL);
    int rc = store_mpu_expire(engine_store(d->eng),
                              now - (uint64_t)d->conf->multipart_expire_s * 1000u, &n);

    if (rc != 0)
        MRD_WARN("s3.mpu_expire_failed", "error=\"%s\"", mrd_strerror(rc));
    else if (n)
        MRD_INFO("s3.mpu_expire", "aborted=%llu older_than_s=%u", (unsigned long long)n,
                 d->conf->multipart_expire_s);
}

static void
expire_done(void *arg)
{
    (void)arg;
    expire_running = 0;
}

void
gw__s3_mpu_expire_tick(gw_daemon *d)
{
    uint64_t now = mrd_clock_realtime_ms(NULL), every;

    if (!d->eng || !d->conf->multipart_expire_s || expire_running || d->shutting_down)
        return;
    every =
        (uint64_t)(d->conf->multipart_expire_s < 3600 ? d->conf->multipart_expire_s : 3600) * 1000u;
    if (expire_last_ms && now - expire_last_ms < every)
        return;
    expire_last_ms = now;
    expire_running = 1;
    if (engine_run(d->eng, work_expire, expire_done, d) != 0)
        expire_running = 0;
}
