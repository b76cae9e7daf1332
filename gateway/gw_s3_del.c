/*
 * gw_s3_del.c - DeleteObjects (POST /<bucket>?delete): up to 1000 keys in
 * one request, each deleted through the engine like a DeleteObject.
 *
 * Flow. The head is checked on the loop (a body is required, at most
 * GW_DELETE_MAX_BODY bytes; a Content-MD5 that does not decode is
 * InvalidDigest). The body is collected into one buffer - it is small and
 * bounded, and the XML parser wants it whole. At its end a pool worker checks
 * its integrity (Content-MD5 -> BadDigest, a signed x-amz-content-sha256 ->
 * XAmzContentSHA256Mismatch), parses it (gw_xml_parse_delete: MalformedXML,
 * also for more than 1000 keys) and checks that the bucket exists. S3 requires
 * Content-MD5 on this call; we accept its absence when the body is covered by
 * a signed SHA-256 instead, and refuse an unsigned body without it.
 *
 * Then the deletes go to the engine, at most DEL_WINDOW in flight so that
 * they share WAL group commits without flooding the WAL queue; each is a
 * normal delete mutation (WAL record, replication). Keys are independent: one
 * failing is reported in its own <Error> and the others go on, as in S3. A
 * missing key is "Deleted" (S3 semantics). An entry with a VersionId
 * removes that version for good (engine_object_delete_version; "null" names
 * the key's null version), resolved on the worker that parses the body, and
 * its result says DeleteMarker when the version removed was a delete marker.
 * Without one, a versioned or suspended bucket gets a delete marker, named
 * in the result (DeleteMarker, DeleteMarkerVersionId), as in S3. The
 * response is written when the last delete completes; in Quiet mode it
 * lists only the errors.
 *
 * Lifetime: the context is freed when both the client side (release) and the
 * work (a pool job or any engine call in flight) are done.
 */
#include "gw_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

#define DEL_WINDOW 16 /* deletes in flight per request */

typedef struct del_ctx del_ctx;

typedef struct del_slot {
    del_ctx *c;
    size_t i;
} del_slot;

struct del_ctx {
    gw_daemon *d;
    gw_req *r;
    char bucket[64];
    mrd_buf body;
    unsigned char md5[16];
    int has_md5, check_sha;
    char sha[65];
    gw_delete_req req;
    int *status;         /* per object: 0, or an MRD_E* / gw error */
    gw_s3_err *err;      /* per object, when status != 0 */
    del_slot *slots;     /* per object, the engine callback's ud */
    char (*target)[25];  /* per object with a VersionId: the internal id ("" none) */
    char (*marker)[25];  /* per object: the delete marker written, or "" */
    uint8_t *was_marker; /* per object: the version removed was a marker */
    int vstate;
    size_t next, done;
    int inflight, released, job;
    int has_err;
    gw_s3_err e;
    const char *msg;
};

static void
del_free(del_ctx *c)
{
    gw_delete_req_clear(&c->req);
    mrd_buf_free(&c->body);
    free(c->status);
    free(c->err);
    free(c->slots);
    free(c->target);
    free(c->marker);
    free(c->was_marker);
    free(c);
}

static void
del_fail(del_ctx *c, gw_s3_err e, const char *msg)
{
    if (!c->has_err) {
        c->has_err = 1;
        c->e = e;
        c->msg = msg;
    }
}

/* Frees c if nothing refers to it any more; 1 if it did. */
static int
del_maybe_free(del_ctx *c)
{
    if (c->released && !c->inflight && !c->job) {
        del_free(c);
        return 1;
    }
    return 0;
}

static void
del_respond(del_ctx *c)
{
    mrd_buf out = {0};

    mrd_buf_appendf(&out, GW_XML_HDR "<DeleteResult xmlns=\"" GW_S3_XMLNS "\">");
    for (size_t i = 0; i < c->req.n; i++) {
        const gw_delete_obj *o = &c->req.objs[i];
        if (c->status[i] == 0 && c->req.quiet)
            continue;
        mrd_buf_appendf(&out, c->status[i] == 0 ? "<Deleted>" : "<Error>");
        gw_xml_elem(&out, "Key", o->key);
        if (o->version_id)
            gw_xml_elem(&out, "VersionId", o->version_id);
        if (c->status[i] == 0) {
            if (o->version_id && c->was_marker[i]) {
                mrd_buf_appendf(&out, "<DeleteMarker>true</DeleteMarker>");
                gw_xml_elem(&out, "DeleteMarkerVersionId", o->version_id);
            } else if (!o->version_id && c->marker[i][0] && c->vstate != ENGINE_VERSIONING_UNSET) {
                mrd_buf_appendf(&out, "<DeleteMarker>true</DeleteMarker>");
                gw_xml_elem(&out, "DeleteMarkerVersionId",
                            c->vstate == ENGINE_VERSIONING_ENABLED ? c->marker[i] : "null");
            }
            mrd_buf_appendf(&out, "</Deleted>");
            continue;
        }
        gw_xml_elem(&out, "Code", gw_s3_err_code(c->err[i]));
        gw_xml_elem(&out, "Message",
                    c->err[i] == GW_S3E_INVALID_ARGUMENT ? "Invalid version id specified"
                                                         : "The key could not be deleted.");
        mrd_buf_appendf(&out, "</Error>");
    }
    mrd_buf_appendf(&out, "</DeleteResult>\n");
    gw_s3_request_id(c->r);
    gw__route_write_token(c->d, c->r);
    if (out.data)
        gw_resp_simple(c->r, 200, "application/xml", out.data, out.len);
    else
        gw_s3_error(c->r, GW_S3E_INTERNAL, gw_req_path(c->r), "out of memory");
    mrd_buf_free(&out);
}

static void del_pump(del_ctx *c);

static void
del_one_done(void *ud, int status)
{
    del_slot *s = ud;
    del_ctx *c = s->c;

    c->inflight--;
    c->done++;
    if (status != 0) {
        c->status[s->i] = status;
        c->err[s->i] = status == MRD_ENOTFOUND ? GW_S3E_NO_SUCH_BUCKET : gw_s3_err_from_rc(status);
        MRD_WARN("s3.multi_delete_failed", "bucket=%s error=\"%s\"", c->bucket,
                 mrd_strerror(status));
    }
    if (del_maybe_free(c) || c->released)
        return;
    del_pump(c);
}

/* Keeps DEL_WINDOW deletes in flight; answers when all are done. */
static void
del_pump(del_ctx *c)
{
    while (c->inflight < DEL_WINDOW && c->next < c->req.n) {
        size_t i = c->next++;
        const gw_delete_obj *o = &c->req.objs[i];
        int rc;
        if (strlen(o->key) > 1024) {
            c->status[i] = MRD_ETOOBIG;
            c->err[i] = GW_S3E_KEY_TOO_LONG;
            c->done++;
            continue;
        }
        if (c->status[i] != 0 || (o->version_id && !c->target[i][0])) {
            c->done++; /* a bad id (status set), or no null version: nothing to do */
            continue;
        }
        c->slots[i] = (del_slot){c, i};
        c->inflight++;
        rc = o->version_id ? engine_object_delete_version(c->d->eng, c->bucket, o->key,
                                                          c->target[i], del_one_done, &c->slots[i])
                           : engine_object_delete_marker(c->d->eng, c->bucket, o->key, c->marker[i],
                                                         del_one_done, &c->slots[i]);
        if (rc != 0) {
            c->inflight--;
            c->done++;
            c->status[i] = rc;
            c->err[i] = gw_s3_err_from_rc(rc);
        }
    }
    if (c->done == c->req.n && c->inflight == 0)
        del_respond(c); /* runs release */
}

/* Worker: the version an entry's VersionId names (as gw__s3_delete_object:
 * "null" or one of our ids; an id not held here is still removed). */
static void
resolve_version(del_ctx *c, size_t i)
{
    const gw_delete_obj *o = &c->req.objs[i];
    store_version_rec *rec = NULL;
    const char *v = o->version_id;
    int rc;

    if (!v || strlen(o->key) > 1024)
        return;
    if (!gw__version_id_valid(v)) {
        c->status[i] = MRD_EINVAL;
        c->err[i] = GW_S3E_INVALID_ARGUMENT;
        return;
    }
    rc = engine_version_lookup(c->d->eng, c->bucket, o->key, v, &rec);
    if (rc == 0) {
        const store_version *sv = store_version_rec_get(rec);
        snprintf(c->target[i], sizeof(c->target[i]), "%s", sv->version_id);
        c->was_marker[i] = !!(sv->flags & STORE_VF_DELETE_MARKER);
    } else if (rc == MRD_ENOTFOUND && strcmp(v, "null") != 0) {
        snprintf(c->target[i], sizeof(c->target[i]), "%s", v);
    } else if (rc != MRD_ENOTFOUND) {
        c->status[i] = rc;
        c->err[i] = gw_s3_err_from_rc(rc);
    }
    store_version_rec_free(rec);
}

/* Worker: integrity, parse, bucket. */
static void
job_parse(void *arg)
{
    del_ctx *c = arg;
    void *blob = NULL;
    size_t len = 0;
    gw_s3_err e;
    int rc;

    e = gw__body_verify(c->body.data ? c->body.data : "", c->body.len, c->has_md5 ? c->md5 : NULL,
                        c->check_sha ? c->sha : NULL);
    if (e) {
        del_fail(c, e, NULL);
        return;
    }
    rc = gw_xml_parse_delete(c->body.data ? c->body.data : "", c->body.len, &c->req);
    if (rc == MRD_EINVAL || rc == MRD_ETOOBIG) {
        del_fail(c, GW_S3E_MALFORMED_XML,
                 rc == MRD_ETOOBIG ? "A DeleteObjects request names at most 1000 keys." : NULL);
        return;
    }
    if (rc != 0) {
        del_fail(c, GW_S3E_INTERNAL, NULL);
        return;
    }
    rc = store_bucket_get(engine_store(c->d->eng), c->bucket, &blob, &len);
    if (rc == 0)
        c->vstate = gw__bucket_vstate(blob, len);
    free(blob);
    if (rc != 0) {
        del_fail(c, rc == MRD_ENOTFOUND ? GW_S3E_NO_SUCH_BUCKET : gw_s3_err_from_rc(rc), NULL);
        return;
    }
    c->status = calloc(c->req.n, sizeof(*c->status));
    c->err = calloc(c->req.n, sizeof(*c->err));
    c->slots = calloc(c->req.n, sizeof(*c->slots));
    c->target = calloc(c->req.n, sizeof(*c->target));
    c->marker = calloc(c->req.n, sizeof(*c->marker));
    c->was_marker = calloc(c->req.n, 1);
    if (!c->status || !c->err || !c->slots || !c->target || !c->marker || !c->was_marker) {
        del_fail(c, GW_S3E_INTERNAL, NULL);
        return;
    }
    for (size_t i = 0; i < c->req.n; i++)
        resolve_version(c, i);
}

static void
job_parse_done(void *arg)
{
    del_ctx *c = arg;

    c->job = 0;
    if (del_maybe_free(c) || c->released)
        return;
    if (c->has_err) {
        gw_s3_error(c->r, c->e, gw_req_path(c->r), c->msg);
        return;
    }
    del_pump(c);
}

static int
del_body(gw_req *r, const char *data, size_t len, void *ctx)
{
    del_ctx *c = ctx;

    if (c->body.len + len > GW_DELETE_MAX_BODY) {
        gw_s3_error(r, GW_S3E_MALFORMED_XML, gw_req_path(r), "The request body is too large.");
        return -1;
    }
    if (mrd_buf_append(&c->body, data, len) != 0) {
        gw_s3_error(r, GW_S3E_INTERNAL, gw_req_path(r), "out of memory");
        return -1;
    }
    return 0;
}

static void
del_end(gw_req *r, void *ctx)
{
    del_ctx *c = ctx;

    c->job = 1;
    if (engine_run(c->d->eng, job_parse, job_parse_done, c) != 0) {
        c->job = 0;
        gw_s3_error(r, GW_S3E_SERVICE_UNAVAILABLE, gw_req_path(r), NULL);
    }
}

static void
del_release(gw_req *r, void *ctx, int aborted)
{
    del_ctx *c = ctx;

    (void)r;
    (void)aborted;
    c->released = 1;
    del_maybe_free(c);
}

static const gw_req_ops del_ops = {.body = del_body, .end = del_end, .release = del_release};

void
gw__s3_delete_objects(gw_daemon *d, gw_req *r, const char *bucket, const gw_sigv4_auth *auth)
{
    del_ctx *c;
    const char *v = gw_req_header(r, "content-md5");
    int64_t cl = gw_req_content_length(r);
    gw_s3_err e = 0;
    const char *msg = NULL;

    if (!gw_req_has_body(r)) {
        e = GW_S3E_MALFORMED_XML;
    } else if (cl > (int64_t)GW_DELETE_MAX_BODY) {
        e = GW_S3E_MALFORMED_XML;
        msg = "The request body is too large.";
    } else if (strncmp(auth->payload_hash, "STREAMING-", 10) == 0) {
        e = GW_S3E_NOT_IMPLEMENTED;
        msg = "DeleteObjects with an aws-chunked body is not implemented";
    } else if (!v && strcmp(auth->payload_hash, "UNSIGNED-PAYLOAD") == 0) {
        e = GW_S3E_INVALID_REQUEST;
        msg = "Missing required header for this request: Content-MD5";
    }
    if (e != 0) {
        gw_s3_error(r, e, gw_req_path(r), msg);
        return;
    }
    if (!(c = calloc(1, sizeof(*c)))) {
        gw_s3_error(r, GW_S3E_INTERNAL, gw_req_path(r), "out of memory");
        return;
    }
    c->d = d;
    c->r = r;
    snprintf(c->bucket, sizeof(c->bucket), "%s", bucket);
    if (v) {
        if (gw__decode_md5(v, c->md5) != 0) {
            free(c);
            gw_s3_error(r, GW_S3E_INVALID_DIGEST, gw_req_path(r), NULL);
            return;
        }
        c->has_md5 = 1;
    }
    if (strcmp(auth->payload_hash, "UNSIGNED-PAYLOAD") != 0 && strlen(auth->payload_hash) == 64) {
        c->check_sha = 1;
        memcpy(c->sha, auth->payload_hash, 65);
    }
    gw_req_attach(r, &del_ops, c);
}
