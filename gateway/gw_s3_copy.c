/*
 * gw_s3_copy.c - CopyObject (PUT /<bucket>/<key> with x-amz-copy-source),
 * and the pieces every server-side copy shares with UploadPartCopy
 * (gw_s3_mpu.c): parsing x-amz-copy-source, opening the source version, and
 * streaming a byte range of it into a new store object.
 *
 * The data path. A pool worker looks the source up, opens a store reader on
 * its current version (the reader holds the shard files open, so an
 * overwrite or delete of the source meanwhile cannot cut the copy short) and
 * streams it into a store writer COPY_CHUNK bytes at a time: memory is one
 * chunk plus the writer's stripe, whatever the size. The writer computes the
 * new MD5 (the ETag) in the same pass. The worker is busy for the whole copy
 * (about as long as a local PUT of that size); copies are limited to 5 GiB,
 * S3's own limit for CopyObject.
 *
 * The commit. Back on the loop the copy is an ordinary PutObject for the
 * engine: a new version id, engine_object_put (conflict stamp, WAL record,
 * group commit, index apply), so it replicates like any PUT. Only then is
 * CopyObjectResult sent. If the engine refuses, the new data is freed on a
 * worker (not when the WAL append failed with MRD_EDURABLE: that record may
 * still surface at recovery, as for PUT); if the client went away before the
 * commit was attempted, the data is freed when the op is.
 *
 * Semantics, as S3:
 *   - x-amz-metadata-directive COPY (default) keeps the source's content type
 *     and metadata; REPLACE takes them from this request;
 *   - the tag set is copied too unless x-amz-tagging-directive is REPLACE
 *     (then x-amz-tagging gives it);
 *   - copying a key onto itself needs REPLACE (InvalidRequest otherwise);
 *   - x-amz-copy-source-if-match / -if-none-match / -if-modified-since /
 *     -if-unmodified-since are weighed like a GET's conditions (same
 *     precedence), and any failure is 412 PreconditionFailed;
 *   - a versionId in the copy source ("bucket/key?versionId=<id>", "null"
 *     too) copies that version (NoSuchVersion when it is not held, a delete
 *     marker is InvalidRequest); the response names it in
 *     x-amz-copy-source-version-id, and the new version in x-amz-version-id
 *     when the destination bucket is versioned. UploadPartCopy takes the
 *     same versionId and x-amz-copy-source-if-* conditions
 *     (gw__copy_source_version, gw__preconditions).
 */
#include "gw_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine.h"

#define COPY_CHUNK    (1u << 20)
#define MAX_COPY_SIZE (5ull << 30)

/* ---- shared with UploadPartCopy ----------------------------------------- */

int
gw__copy_source_parse(const char *h, char **bucket, char **key, char **version_id)
{
    mrd_buf dec = {0};
    const char *s, *slash, *q;
    char *b = NULL, *k = NULL, *v = NULL;
    int rc = -1;

    if (!h)
        return -1;
    if (*h == '/')
        h++;
    if ((q = strstr(h, "?versionId="))) {
        const char *id = q + strlen("?versionId=");
        if (!version_id || !*id || strlen(id) > 64 || strchr(id, '&') || !(v = strdup(id)))
            return -1;
    }
    if (gw_url_decode(h, q ? (size_t)(q - h) : strlen(h), 0, &dec) != 0 || !dec.data)
        goto out;
    s = dec.data;
    slash = strchr(s, '/');
    if (!slash || slash == s || slash[1] == '\0' || slash - s >= 64 || strlen(slash + 1) > 1024)
        goto out;
    b = strndup(s, (size_t)(slash - s));
    k = strdup(slash + 1);
    if (b && k) {
        *bucket = b;
        *key = k;
        if (version_id)
            *version_id = v;
        b = k = v = NULL;
        rc = 0;
    }
out:
    free(b);
    free(k);
    free(v);
    mrd_buf_free(&dec);
    return rc;
}

gw_s3_err
gw__copy_source_open(store *st, const char *bucket, const char *key, store_version_rec **rec,
                     store_reader **rd)
{
    store_version_rec *vr = NULL;
    const store_version *v;
    void *blob = NULL;
    size_t len = 0;
    int rc = store_bucket_get(st, bucket, &blob, &len);

    free(blob);
    if (rc != 0)
        return rc == MRD_ENOTFOUND ? GW_S3E_NO_SUCH_BUCKET : gw_s3_err_from_rc(rc);
    rc = store_index_get(st, bucket, key, NULL, &vr);
    if (rc != 0)
        return rc == MRD_ENOTFOUND ? GW_S3E_NO_SUCH_KEY : gw_s3_err_from_rc(rc);
    v = store_version_rec_get(vr);
    if (v->flags & STORE_VF_DELETE_MARKER) {
        store_version_rec_free(vr);
        return GW_S3E_NO_SUCH_KEY;
    }
    if (rd && (rc = store_reader_open(st, v->layout, v->layout_len, rd)) != 0) {
        store_version_rec_free(vr);
        return gw_s3_err_from_rc(rc);
    }
    *rec = vr;
    return 0;
}

int
gw__copy_stream(store *st, store_reader *rd, uint64_t a, uint64_t b, const char *bucket,
                const char *key, const char *vid, store_put_result *res)
{
    store_writer *w = NULL;
    unsigned char *buf = malloc(COPY_CHUNK);
    int rc = buf ? 0 : -ENOMEM;

    if (rc == 0)
        rc = store_writer_open(st, bucket, key, vid, 0, &w);
    for (uint64_t off = a; rc == 0 && off <= b && b != UINT64_MAX;) {
        size_t n = 0, want = b + 1 - off < COPY_CHUNK ? (size_t)(b + 1 - off) : COPY_CHUNK;
        rc = store_reader_read(rd, off, buf, want, &n);
        if (rc == 0 && n != want)
            rc = MRD_ECORRUPT; /* shorter than its index record */
        if (rc == 0)
            rc = store_writer_write(w, buf, n);
        off += n;
    }
    free(buf);
    if (rc != 0) {
        store_writer_abort(w);
        return rc;
    }
    return store_writer_finish(w, res);
}

/* ---- CopyObject ---------------------------------------------------------- */

typedef struct copy_obj {
    store *st;
    char *src_bucket, *src_key;
    char *src_vid;            /* ?versionId= of the source, or NULL */
    char src_shown[32];       /* the source version as named in the response */
    int replace, tag_replace; /* x-amz-metadata-directive, x-amz-tagging-directive */
    gw__meta meta;            /* REPLACE: from the request; COPY: the source's */
    char vid[25];
    store_put_result res;
    int committed, durable_err;
    char etag[40];
    uint64_t mtime_ms;
} copy_obj;

static void
copy_obj_free(void *p)
{
    copy_obj *c = p;

    if (!c)
        return;
    free(c->src_bucket);
    free(c->src_key);
    free(c->src_vid);
    gw__meta_clear(&c->meta);
    store_put_result_clear(&c->res);
    free(c);
}

/* Takes the source's metadata (COPY) and its tag set (unless the tagging
 * directive is REPLACE); the old tagging stamp stays behind: a new version. */
static int
meta_collect(void *ud, const char *key, const char *value)
{
    copy_obj *c = ud;
    int take;

    if (strcmp(key, ENGINE_META_TAGS_HLC) == 0)
        take = 0;
    else if (strcmp(key, ENGINE_META_TAGGING) == 0)
        take = !c->tag_replace;
    else
        take = !c->replace;
    return !take || gw__meta_add(&c->meta, key, value) == 0 ? 0 : -ENOMEM;
}

gw_s3_err
gw__copy_source_version(gw_daemon *d, const char *bucket, const char *key, const char *vid,
                        store_version_rec **rec, char *shown, size_t shown_sz)
{
    store *st = engine_store(d->eng);
    void *blob = NULL;
    size_t len = 0;
    int vstate = 0, rc;

    shown[0] = '\0';
    if (!vid)
        return gw__copy_source_open(st, bucket, key, rec, NULL);
    if ((rc = store_bucket_get(st, bucket, &blob, &len)) == 0)
        vstate = gw__bucket_vstate(blob, len);
    free(blob);
    if (rc != 0)
        return rc == MRD_ENOTFOUND ? GW_S3E_NO_SUCH_BUCKET : gw_s3_err_from_rc(rc);
    rc = engine_version_lookup(d->eng, bucket, key, vid, rec);
    if (rc != 0)
        return rc == MRD_ENOTFOUND ? GW_S3E_NO_SUCH_VERSION : gw_s3_err_from_rc(rc);
    if (store_version_rec_get(*rec)->flags & STORE_VF_DELETE_MARKER) {
        store_version_rec_free(*rec);
        *rec = NULL;
        return GW_S3E_INVALID_REQUEST;
    }
    snprintf(shown, shown_sz, "%s", gw__version_header(store_version_rec_get(*rec), vstate, 1));
    return 0;
}

/* Worker: the source, its conditions, the data. */

static void
work_copy(gw__op *o)
{
    copy_obj *c = o->ext;
    store *st = engine_store(o->d->eng);
    store_version_rec *rec = NULL;
    store_reader *rd = NULL;
    const store_version *v;
    gw_s3_err e;
    int rc;

    gw__op_work_bucket(o);
    if (o->has_err)
        return;
    e = gw__copy_source_version(o->d, c->src_bucket, c->src_key, c->src_vid, &rec, c->src_shown,
                                sizeof(c->src_shown));
    if (e) {
        gw__op_fail(o, e);
        return;
    }
    v = store_version_rec_get(rec);
    if (gw__preconditions(o->r, "x-amz-copy-source-", v->etag ? v->etag : "", MRD_HLC_MS(v->hlc)) !=
        200) {
        e = GW_S3E_PRECONDITION_FAILED;
    } else if (v->size > MAX_COPY_SIZE) {
        e = GW_S3E_INVALID_REQUEST;
    } else {
        if (!c->replace)
            c->meta.ctype = strdup(v->content_type && *v->content_type ? v->content_type
                                                                       : "binary/octet-stream");
        if (!c->meta.ctype ||
            engine_meta_each(v->user_meta, v->user_meta_len, meta_collect, c) != 0)
            e = GW_S3E_INTERNAL;
    }
    if (!e && (rc = store_reader_open(st, v->layout, v->layout_len, &rd)) != 0)
        e = gw_s3_err_from_rc(rc);
    if (!e) {
        rc = gw__copy_stream(st, rd, 0, v->size ? v->size - 1 : UINT64_MAX, o->bucket, o->key,
                             c->vid, &c->res);
        if (rc != 0)
            e = gw_s3_err_from_rc(rc);
    }
    store_reader_close(rd);
    store_version_rec_free(rec);
    if (e)
        gw__op_fail(o, e);
}

/* Worker: frees the copied data after the engine refused it. */
static void
work_copy_cleanup(gw__op *o)
{
    copy_obj *c = o->ext;

    store_object_delete_data(engine_store(o->d->eng), c->res.layout, c->res.layout_len);
    store_put_result_clear(&c->res);
}

static void
copy_committed(void *ud, int status)
{
    gw__op *o = ud;
    copy_obj *c = o->ext;

    if (status == 0) {
        c->committed = 1;
        gw__op_finish(o);
        return;
    }
    MRD_WARN("s3.copy_failed", "bucket=%s error=\"%s\"", o->bucket, mrd_strerror(status));
    gw__op_fail(o, status == MRD_ENOTFOUND ? GW_S3E_NO_SUCH_BUCKET : gw_s3_err_from_rc(status));
    if (status == MRD_EDURABLE) {
        c->durable_err = 1; /* the record may surface at recovery: keep the data */
        gw__op_finish(o);
        return;
    }
    o->work = work_copy_cleanup;
    gw__op_start(o); /* answers the error once the data is freed */
}

/* Loop: the copy is durable in the store; now the WAL record. */
static void
copy_commit(gw__op *o)
{
    copy_obj *c = o->ext;
    engine_put ep = {.bucket = o->bucket,
                     .key = o->key,
                     .version_id = c->vid,
                     .size = c->res.size,
                     .etag = c->res.etag,
                     .content_type = c->meta.ctype,
                     .meta = c->meta.kv,
                     .n_meta = (size_t)c->meta.n,
                     .layout = c->res.layout,
                     .layout_len = c->res.layout_len};
    int rc;

    snprintf(c->etag, sizeof(c->etag), "%s", c->res.etag);
    c->mtime_ms = mrd_clock_realtime_ms(NULL);
    o->inflight = 1;
    rc = engine_object_put(o->d->eng, &ep, copy_committed, o);
    if (rc != 0)
        copy_committed(o, rc);
}

static void
respond_copy(gw__op *o)
{
    copy_obj *c = o->ext;
    char t[40];

    gw__iso_time(c->mtime_ms, t, sizeof(t));
    mrd_buf_appendf(&o->out, GW_XML_HDR "<CopyObjectResult xmlns=\"" GW_S3_XMLNS "\">");
    gw_xml_elem(&o->out, "LastModified", t);
    mrd_buf_appendf(&o->out, "<ETag>&quot;%s&quot;</ETag></CopyObjectResult>\n", c->etag);
    if (c->src_shown[0])
        gw_resp_header(o->r, "x-amz-copy-source-version-id", c->src_shown);
    if (o->vstate != ENGINE_VERSIONING_UNSET)
        gw_resp_header(o->r, "x-amz-version-id",
                       o->vstate == ENGINE_VERSIONING_ENABLED ? c->vid : "null");
    gw__route_write_token(o->d, o->r);
    gw__op_respond_xml(o, 200);
}

/* Frees the op's copy state. Data that was never committed goes too: the
 * client left before the commit was attempted (a refused commit already freed
 * it on a worker; this unlinks a few files on the loop, a rare path). */
static void
copy_ext_free(void *p)
{
    copy_obj *c = p;

    if (c && c->res.layout && !c->committed && !c->durable_err)
        store_object_delete_data(c->st, c->res.layout, c->res.layout_len);
    copy_obj_free(c);
}

void
gw__s3_copy_object(gw_daemon *d, gw_req *r, const char *bucket, const char *key)
{
    const char *dir = gw_req_header(r, "x-amz-metadata-directive"), *msg = NULL;
    const char *tdir = gw_req_header(r, "x-amz-tagging-directive");
    gw__op *o = gw__op_new(d, r, bucket, key);
    copy_obj *c;
    gw_s3_err e;

    if (!o || !(c = calloc(1, sizeof(*c)))) {
        if (o)
            gw__op_abandon(o, GW_S3E_INTERNAL, NULL);
        else
            gw_s3_error(r, GW_S3E_INTERNAL, gw_req_path(r), NULL);
        return;
    }
    o->ext = c;
    o->ext_free = copy_ext_free;
    c->st = engine_store(d->eng);
    if (gw__copy_source_parse(gw_req_header(r, "x-amz-copy-source"), &c->src_bucket, &c->src_key,
                              &c->src_vid) != 0 ||
        (c->src_vid && !gw__version_id_valid(c->src_vid))) {
        gw__op_abandon(o, GW_S3E_INVALID_ARGUMENT,
                       "x-amz-copy-source must be bucket/key[?versionId=id], URL-encoded");
        return;
    }
    if (dir && strcasecmp(dir, "REPLACE") == 0) {
        c->replace = 1;
    } else if (dir && strcasecmp(dir, "COPY") != 0) {
        gw__op_abandon(o, GW_S3E_INVALID_ARGUMENT,
                       "x-amz-metadata-directive must be COPY or REPLACE");
        return;
    }
    if (tdir && strcasecmp(tdir, "REPLACE") == 0) {
        c->tag_replace = 1;
    } else if (tdir && strcasecmp(tdir, "COPY") != 0) {
        gw__op_abandon(o, GW_S3E_INVALID_ARGUMENT,
                       "x-amz-tagging-directive must be COPY or REPLACE");
        return;
    }
    if (!c->replace && !c->src_vid && strcmp(c->src_bucket, bucket) == 0 &&
        strcmp(c->src_key, key) == 0) {
        gw__op_abandon(o, GW_S3E_INVALID_REQUEST,
                       "This copy request is illegal because it is trying to copy an object to "
                       "itself without changing the object's metadata (use "
                       "x-amz-metadata-directive: REPLACE).");
        return;
    }
    if ((c->replace && (e = gw__meta_parse(r, &c->meta, &msg)) != 0) ||
        (c->tag_replace && (e = gw__meta_tagging(r, &c->meta, &msg)) != 0)) {
        gw__op_abandon(o, e, msg);
        return;
    }
    engine_version_id_new(d->eng, c->vid);
    o->then = copy_commit;
    gw__op_go(o, work_copy, respond_copy);
}
