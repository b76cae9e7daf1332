/*
 * gw_s3_tag.c - the small XML configuration documents: object tagging
 * (GET/PUT/DELETE /<bucket>/<key>?tagging), bucket tagging (the same on
 * /<bucket>?tagging) and bucket versioning (GET/PUT /<bucket>?versioning).
 *
 * Where tags live. A version's tag set is part of its user metadata in the
 * index, under the reserved name ENGINE_META_TAGGING, in the canonical
 * URL-encoded "k=v&k2=v2" form of the x-amz-tagging header; GET and HEAD send
 * only its count (x-amz-tagging-count). A PUT with x-amz-tagging stores it
 * with the version (gw__meta_tagging), so it travels in the PUT's WAL record.
 *
 * Changing tags later is its own mutation: engine_object_tags appends an
 * OBJECT_TAGS WAL record naming the current version, applied to that version
 * in place (same data, same version id) and replicated like any record;
 * concurrent replacements at two sites settle last-writer-wins on (hlc,
 * site). DeleteObjectTagging is the replacement by the empty set.
 *
 * PutObjectTagging reads its small body whole (GW_TAGGING_BODY), checks it
 * against Content-MD5 and a signed x-amz-content-sha256, and parses it on a
 * worker (gw_xml_parse_tagging: MalformedXML, InvalidTag); the mutation then
 * runs from the loop. With ?versionId= (an id or "null") all three act on
 * that version (NoSuchVersion when it is not held or is a delete marker),
 * and answer its x-amz-version-id.
 *
 * Bucket tagging and versioning are registers of the bucket's index record
 * (engine_bucket_config: a BUCKET_CONFIG WAL record, replicated, each
 * register last-writer-wins on (hlc, site)). Their PUT bodies are read and
 * checked the same way (gw_xml_parse_tagging, gw_xml_parse_versioning);
 * GetBucketTagging answers NoSuchTagSet when the bucket has none (never set,
 * or deleted), GetBucketVersioning an empty configuration when versioning
 * was never set.
 */
#include "gw_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

typedef struct tag_st {
    unsigned char md5[16];
    int has_md5, check_sha;
    char sha[65];
    mrd_buf tagging; /* canonical form to store */
    gw_tagset *tags; /* bucket tagging: the parsed set */
    int versioning;  /* PutBucketVersioning: the state to set */
    int is_versioning;
    char *vid;      /* object tagging ?versionId=, or NULL */
    char shown[32]; /* the version's x-amz-version-id, or "" */
} tag_st;

static void
tag_st_free(void *p)
{
    tag_st *t = p;

    if (t) {
        mrd_buf_free(&t->tagging);
        free(t->tags);
        free(t->vid);
    }
    free(t);
}

static int
find_tagging(void *ud, const char *key, const char *value)
{
    if (strcmp(key, ENGINE_META_TAGGING) != 0)
        return 0;
    *(const char **)ud = value;
    return 1;
}

int
gw__op_open_version(gw__op *o, const char *vid, store_version_rec **rec)
{
    gw_s3_err e = 0;

    *rec = NULL;
    if (vid) {
        gw__op_work_bucket(o);
        if (o->has_err)
            return -1;
        if (engine_version_lookup(o->d->eng, o->bucket, o->key, vid, rec) != 0 ||
            (store_version_rec_get(*rec)->flags & STORE_VF_DELETE_MARKER)) {
            store_version_rec_free(*rec);
            *rec = NULL;
            e = GW_S3E_NO_SUCH_VERSION;
        }
    } else {
        e = gw__copy_source_open(engine_store(o->d->eng), o->bucket, o->key, rec, NULL);
    }
    if (e) {
        gw__op_fail(o, e);
        return -1;
    }
    return 0;
}

/* Worker: the current version's tag set as a <Tagging> document. */
static void
work_get_tagging(gw__op *o)
{
    store_version_rec *rec = NULL;
    const store_version *v;
    const char *q = NULL;
    gw_tagset *t = NULL;
    tag_st *s = o->ext;

    if (gw__op_open_version(o, s->vid, &rec) != 0)
        return;
    v = store_version_rec_get(rec);
    if (s->vid)
        snprintf(s->shown, sizeof(s->shown), "%s", gw__version_header(v, o->vstate, 1));
    engine_meta_each(v->user_meta, v->user_meta_len, find_tagging, &q);
    if (!(t = calloc(1, sizeof(*t))) || (q && gw_tagset_parse_query(q, t) != 0)) {
        gw__op_fail(o, GW_S3E_INTERNAL);
        goto out;
    }
    mrd_buf_appendf(&o->out, GW_XML_HDR "<Tagging xmlns=\"" GW_S3_XMLNS "\"><TagSet>");
    for (int i = 0; i < t->n; i++) {
        mrd_buf_appendf(&o->out, "<Tag>");
        gw_xml_elem(&o->out, "Key", t->key[i]);
        gw_xml_elem(&o->out, "Value", t->value[i]);
        mrd_buf_appendf(&o->out, "</Tag>");
    }
    mrd_buf_appendf(&o->out, "</TagSet></Tagging>\n");
out:
    free(t);
    store_version_rec_free(rec);
}

/* Worker: a PutObjectTagging, PutBucketTagging or PutBucketVersioning
 * body, checked against its digests and parsed. */
static void
work_put_body(gw__op *o)
{
    tag_st *s = o->ext;
    const char *body = o->in.data ? o->in.data : "";
    gw_s3_err e;
    int rc;

    if (!s->is_versioning && !(s->tags = calloc(1, sizeof(*s->tags)))) {
        gw__op_fail(o, GW_S3E_INTERNAL);
        return;
    }
    if (s->tags && (!o->key || !o->key[0]))
        s->tags->max = GW_TAGS_MAX; /* a bucket's tag set: 50 */
    e = gw__body_verify(body, o->in.len, s->has_md5 ? s->md5 : NULL, s->check_sha ? s->sha : NULL);
    if (!e) {
        rc = s->is_versioning ? gw_xml_parse_versioning(body, o->in.len, &s->versioning)
                              : gw_xml_parse_tagging(body, o->in.len, s->tags);
        if (rc == MRD_ETOOBIG)
            e = GW_S3E_INVALID_TAG;
        else if (rc == MRD_EINVAL)
            e = GW_S3E_MALFORMED_XML;
        else if (rc != 0 || (!s->is_versioning && gw_tagset_encode(s->tags, &s->tagging) != 0))
            e = GW_S3E_INTERNAL;
    }
    if (e)
        gw__op_fail(o, e);
}

static void
tags_done(void *ud, int status)
{
    gw__op *o = ud;

    if (status == MRD_ENOTFOUND)
        gw__op_fail(o, GW_S3E_NO_SUCH_BUCKET);
    else if (status == -ENOENT)
        gw__op_fail(o, ((tag_st *)o->ext)->vid ? GW_S3E_NO_SUCH_VERSION : GW_S3E_NO_SUCH_KEY);
    else if (status != 0)
        gw__op_fail(o, gw_s3_err_from_rc(status));
    gw__op_finish(o);
}

/* Loop: the OBJECT_TAGS mutation. */
static void
tags_commit(gw__op *o)
{
    tag_st *s = o->ext;
    int rc;

    o->inflight = 1;
    if (s->vid)
        snprintf(s->shown, sizeof(s->shown), "%s", s->vid);
    rc = engine_object_tags_version(o->d->eng, o->bucket, o->key, s->vid,
                                    s->tagging.data ? s->tagging.data : "", tags_done, o);
    if (rc != 0)
        tags_done(o, rc);
}

/* Nothing to do on a worker before DeleteObjectTagging's mutation. */
static void
work_none(gw__op *o)
{
    (void)o;
}

static void
respond_tagging(gw__op *o)
{
    const char *m = gw_req_method(o->r);
    tag_st *s = o->ext;

    if (s->shown[0])
        gw_resp_header(o->r, "x-amz-version-id", s->shown);
    if (strcmp(m, "GET") == 0) {
        gw__op_respond_xml(o, 200);
        return;
    }
    gw__route_write_token(o->d, o->r);
    gw_resp_simple(o->r, strcmp(m, "DELETE") == 0 ? 204 : 200, NULL, NULL, 0);
}

/* Reads a small PUT body (digests checked by work_put_body), then runs
 * o->then. Takes o. */
static void
put_body_go(gw__op *o, tag_st *s, const gw_sigv4_auth *auth, void (*respond)(gw__op *))
{
    const char *md5 = gw_req_header(o->r, "content-md5");

    if (strncmp(auth->payload_hash, "STREAMING-", 10) == 0) {
        gw__op_abandon(o, GW_S3E_NOT_IMPLEMENTED,
                       "a configuration document with an aws-chunked body is not implemented");
        return;
    }
    if (md5) {
        if (gw__decode_md5(md5, s->md5) != 0) {
            gw__op_abandon(o, GW_S3E_INVALID_DIGEST, NULL);
            return;
        }
        s->has_md5 = 1;
    }
    if (strcmp(auth->payload_hash, "UNSIGNED-PAYLOAD") != 0 && strlen(auth->payload_hash) == 64) {
        s->check_sha = 1;
        memcpy(s->sha, auth->payload_hash, 65);
    }
    o->body_max = GW_TAGGING_BODY;
    gw__op_go(o, work_put_body, respond);
}

/* What one kind of document does per method. */
typedef struct doc_ops {
    void (*get)(gw__op *o);    /* worker: the GET answer */
    void (*commit)(gw__op *o); /* loop: the PUT or DELETE mutation */
    void (*respond)(gw__op *o);
    int is_versioning, deletable; /* DELETE allowed */
} doc_ops;

/* Routes GET, PUT (body read and parsed first) and DELETE of one document
 * kind; key NULL for a bucket's. */
static void
doc_dispatch(gw_daemon *d, gw_req *r, const char *bucket, const char *key, const char *vid,
             const gw_sigv4_auth *auth, const doc_ops *ops)
{
    const char *m = gw_req_method(r);
    gw__op *o;
    tag_st *s;

    if (strcmp(m, "GET") != 0 && strcmp(m, "PUT") != 0 &&
        (!ops->deletable || strcmp(m, "DELETE") != 0)) {
        gw_s3_error(r, GW_S3E_METHOD_NOT_ALLOWED, gw_req_path(r), NULL);
        return;
    }
    if (!(o = gw__op_new(d, r, bucket, key)) || !(s = calloc(1, sizeof(*s)))) {
        if (o)
            gw__op_abandon(o, GW_S3E_INTERNAL, NULL);
        else
            gw_s3_error(r, GW_S3E_INTERNAL, gw_req_path(r), NULL);
        return;
    }
    o->ext = s;
    o->ext_free = tag_st_free;
    s->is_versioning = ops->is_versioning;
    if (vid && !(s->vid = strdup(vid))) {
        gw__op_abandon(o, GW_S3E_INTERNAL, NULL);
        return;
    }
    if (strcmp(m, "GET") == 0) {
        gw__op_go(o, ops->get, ops->respond);
        return;
    }
    o->then = ops->commit;
    if (strcmp(m, "DELETE") == 0) {
        gw__op_go(o, work_none, ops->respond);
        return;
    }
    put_body_go(o, s, auth, ops->respond);
}

void
gw__s3_object_tagging(gw_daemon *d, gw_req *r, const char *bucket, const char *key,
                      const gw_sigv4_auth *auth)
{
    static const doc_ops ops = {work_get_tagging, tags_commit, respond_tagging, 0, 1};
    mrd_buf vid = {0};
    int has_vid = gw_query_param(gw_req_query(r), "versionId", &vid);

    if (has_vid && !gw__version_id_valid(vid.data ? vid.data : ""))
        gw_s3_error(r, GW_S3E_INVALID_ARGUMENT, gw_req_path(r), "Invalid version id specified");
    else
        doc_dispatch(d, r, bucket, key, has_vid ? vid.data : NULL, auth, &ops);
    mrd_buf_free(&vid);
}

/* ---- bucket configuration ---------------------------------------------------- */

static int
tag_xml(void *ud, const char *key, const char *value)
{
    mrd_buf *out = ud;

    mrd_buf_appendf(out, "<Tag>");
    gw_xml_elem(out, "Key", key);
    gw_xml_elem(out, "Value", value);
    mrd_buf_appendf(out, "</Tag>");
    return 0;
}

/* Worker: GetBucketVersioning or GetBucketTagging from the bucket's blob. */
static void
work_get_bucket_config(gw__op *o)
{
    tag_st *s = o->ext;
    void *blob = NULL;
    size_t len = 0;
    int rc = store_bucket_get(engine_store(o->d->eng), o->bucket, &blob, &len), state;

    if (rc != 0) {
        gw__op_fail(o, rc == MRD_ENOTFOUND ? GW_S3E_NO_SUCH_BUCKET : gw_s3_err_from_rc(rc));
    } else if (s->is_versioning) {
        state = gw__bucket_vstate(blob, len);
        mrd_buf_appendf(&o->out, GW_XML_HDR "<VersioningConfiguration xmlns=\"" GW_S3_XMLNS "\">");
        if (state != ENGINE_VERSIONING_UNSET)
            mrd_buf_appendf(&o->out, "<Status>%s</Status>",
                            state == ENGINE_VERSIONING_ENABLED ? "Enabled" : "Suspended");
        mrd_buf_appendf(&o->out, "</VersioningConfiguration>\n");
    } else {
        mrd_buf_appendf(&o->out, GW_XML_HDR "<Tagging xmlns=\"" GW_S3_XMLNS "\"><TagSet>");
        rc = engine_bucket_tags_each(blob, len, tag_xml, &o->out);
        mrd_buf_appendf(&o->out, "</TagSet></Tagging>\n");
        if (rc != 0)
            gw__op_fail(o, rc == MRD_ENOTFOUND ? GW_S3E_NO_SUCH_TAG_SET : GW_S3E_INTERNAL);
    }
    free(blob);
}

/* Loop: the BUCKET_CONFIG mutation. */
static void
bucket_config_commit(gw__op *o)
{
    tag_st *s = o->ext;
    engine_kv kv[GW_TAGS_MAX];
    engine_bucket_conf c;

    memset(&c, 0, sizeof(c));
    if (s->is_versioning) {
        c.has_versioning = 1;
        c.versioning = s->versioning;
    } else {
        c.has_tags = 1;
        for (int i = 0; s->tags && i < s->tags->n; i++)
            kv[i] = (engine_kv){s->tags->key[i], s->tags->value[i]};
        c.tags = kv;
        c.n_tags = s->tags ? (size_t)s->tags->n : 0;
    }
    gw__op_bucket_config(o, &c);
}

static void
respond_bucket_config(gw__op *o)
{
    const char *m = gw_req_method(o->r);

    if (strcmp(m, "GET") == 0)
        gw__op_respond_xml(o, 200);
    else
        gw_resp_simple(o->r, strcmp(m, "DELETE") == 0 ? 204 : 200, NULL, NULL, 0);
}

void
gw__s3_bucket_config(gw_daemon *d, gw_req *r, const char *bucket, const gw_sigv4_auth *auth)
{
    static const doc_ops tagging = {work_get_bucket_config, bucket_config_commit,
                                    respond_bucket_config, 0, 1};
    static const doc_ops versioning = {work_get_bucket_config, bucket_config_commit,
                                       respond_bucket_config, 1, 0};
    mrd_buf v = {0};
    int is_versioning = gw_query_param(gw_req_query(r), "versioning", &v);

    mrd_buf_free(&v);
    doc_dispatch(d, r, bucket, NULL, NULL, auth, is_versioning ? &versioning : &tagging);
}
