/*
 * gw_s3_tag.c - object tagging: GetObjectTagging, PutObjectTagging and
 * DeleteObjectTagging (GET/PUT/DELETE /<bucket>/<key>?tagging).
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
 * runs from the loop. A versionId is not supported yet (NotImplemented).
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
} tag_st;

static void
tag_st_free(void *p)
{
    tag_st *t = p;

    if (t)
        mrd_buf_free(&t->tagging);
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

/* Worker: the current version's tag set as a <Tagging> document. */
static void
work_get_tagging(gw__op *o)
{
    store_version_rec *rec = NULL;
    const store_version *v;
    const char *q = NULL;
    gw_tagset *t = NULL;
    gw_s3_err e;

    e = gw__copy_source_open(engine_store(o->d->eng), o->bucket, o->key, &rec, NULL);
    if (e) {
        gw__op_fail(o, e);
        return;
    }
    v = store_version_rec_get(rec);
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

/* Worker: the PutObjectTagging body. */
static void
work_put_tagging(gw__op *o)
{
    tag_st *s = o->ext;
    gw_tagset *t = malloc(sizeof(*t));
    gw_s3_err e;
    int rc;

    if (!t) {
        gw__op_fail(o, GW_S3E_INTERNAL);
        return;
    }
    e = gw__body_verify(o->in.data ? o->in.data : "", o->in.len, s->has_md5 ? s->md5 : NULL,
                        s->check_sha ? s->sha : NULL);
    if (!e) {
        rc = gw_xml_parse_tagging(o->in.data ? o->in.data : "", o->in.len, t);
        if (rc == MRD_ETOOBIG)
            e = GW_S3E_INVALID_TAG;
        else if (rc == MRD_EINVAL)
            e = GW_S3E_MALFORMED_XML;
        else if (rc != 0 || gw_tagset_encode(t, &s->tagging) != 0)
            e = GW_S3E_INTERNAL;
    }
    free(t);
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
        gw__op_fail(o, GW_S3E_NO_SUCH_KEY);
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
    rc = engine_object_tags(o->d->eng, o->bucket, o->key, s->tagging.data ? s->tagging.data : "",
                            tags_done, o);
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

    if (strcmp(m, "GET") == 0) {
        gw__op_respond_xml(o, 200);
        return;
    }
    gw__route_write_token(o->d, o->r);
    gw_resp_simple(o->r, strcmp(m, "DELETE") == 0 ? 204 : 200, NULL, NULL, 0);
}

void
gw__s3_object_tagging(gw_daemon *d, gw_req *r, const char *bucket, const char *key,
                      const gw_sigv4_auth *auth)
{
    const char *m = gw_req_method(r), *md5 = gw_req_header(r, "content-md5");
    gw__op *o;
    tag_st *s;
    mrd_buf vid = {0};
    int has_vid = gw_query_param(gw_req_query(r), "versionId", &vid);

    mrd_buf_free(&vid);
    if (has_vid) {
        gw_s3_error(r, GW_S3E_NOT_IMPLEMENTED, gw_req_path(r),
                    "object tagging with a versionId is not implemented yet");
        return;
    }
    if (strcmp(m, "GET") != 0 && strcmp(m, "PUT") != 0 && strcmp(m, "DELETE") != 0) {
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
    if (strcmp(m, "GET") == 0) {
        gw__op_go(o, work_get_tagging, respond_tagging);
        return;
    }
    o->then = tags_commit;
    if (strcmp(m, "DELETE") == 0) {
        gw__op_go(o, work_none, respond_tagging);
        return;
    }
    if (strncmp(auth->payload_hash, "STREAMING-", 10) == 0) {
        gw__op_abandon(o, GW_S3E_NOT_IMPLEMENTED,
                       "PutObjectTagging with an aws-chunked body is not implemented");
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
    gw__op_go(o, work_put_tagging, respond_tagging);
}
