/*
 * gw_s3_acl.c - canned bucket ACLs (private, public-read) and anonymous
 * requests.
 *
 * A bucket's ACL is a configuration register of its index record, like
 * versioning and tags (engine_bucket_config: a BUCKET_CONFIG WAL record,
 * replicated, last-writer-wins on (hlc, site), covered by anti-entropy).
 * PutBucketAcl takes only the canned x-amz-acl values private and
 * public-read; other canned ACLs, x-amz-grant-* headers and
 * AccessControlPolicy bodies get 501 NotImplemented saying so. CreateBucket
 * with x-amz-acl: public-read creates, then sets the register (a second
 * record: a crash between the two leaves a private bucket, the safe side).
 * GetBucketAcl renders the register: the owner's FULL_CONTROL, and READ for
 * the AllUsers group when public-read.
 *
 * Anonymous requests (no Authorization header, no presigned query) skip
 * SigV4. gw__route_s3 lets through only GET/HEAD of an object's current
 * version, HeadBucket and ListObjects (v1 and v2), refusing everything else at once
 * (AccessDenied); the ACL itself is checked on the worker where the
 * operation reads the bucket's record anyway (gw__op_work_bucket, the GET's
 * job_lookup), never on the event loop. A public-read bucket makes its
 * objects readable too, as a public bucket policy would in AWS (objects hold
 * no ACL of their own: Get/PutObjectAcl, at the end, show and accept only
 * the bucket's).
 *
 * Forwarded requests (gw_proxy.c). A peer serves what a site forwards
 * without SigV4 (the replication secret vouches for the forwarding site),
 * so the forwarding site marks an anonymous request with GW_HDR_ANON and
 * strips any such header a client sent; the peer treats a marked request as
 * anonymous and checks its own copy of the bucket's ACL. The mark is bound
 * to the hop's signature (gw__proxy_payload_hash: the signed payload hash
 * gets an "ANONYMOUS " prefix), so it cannot be stripped on the way to turn
 * an anonymous request into one the peer serves unchecked. A request is marked
 * whatever the reason it is forwarded (drained site, store down, write
 * token, key not yet replicated), so an anonymous read works through a
 * peer exactly as it would there, and a private bucket is refused there.
 * Invariant: a site never serves a forwarded request with more rights than
 * its client had at the forwarding site.
 */
#include "gw_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine.h"

#define ALL_USERS "http://acs.amazonaws.com/groups/global/AllUsers"
#define XSI       "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\""

int
gw__s3_anonymous(const gw_req *r)
{
    static const char *const signed_q[] = {"X-Amz-Signature", "X-Amz-Credential", "Signature",
                                           "AWSAccessKeyId", NULL};
    mrd_buf v = {0};
    int anon = !gw_req_header(r, "authorization");

    if (gw__route_from_peer(r))
        return gw_req_header(r, GW_HDR_ANON) != NULL;
    for (const char *const *s = signed_q; anon && *s; s++)
        anon = !gw_query_param(gw_req_query(r), *s, &v);
    mrd_buf_free(&v);
    return anon;
}

const char *
gw__proxy_payload_hash(const gw_req *r, int anon, char *buf, size_t n)
{
    const char *sha = gw_req_header(r, "x-amz-content-sha256");

    if (!anon)
        return sha ? sha : "";
    snprintf(buf, n, "ANONYMOUS %s", sha ? sha : "");
    return buf;
}

int
gw__bucket_public_read(const void *blob, size_t len)
{
    int acl = ENGINE_ACL_PRIVATE;

    return engine_bucket_acl(blob, len, &acl) == 0 && acl == ENGINE_ACL_PUBLIC_READ;
}

int
gw__s3_canned_acl(gw_req *r, int *acl, const char **msg)
{
    const char *v = gw_req_header(r, "x-amz-acl");
    int rc = 1;

    *acl = ENGINE_ACL_PRIVATE;
    for (int i = 0; i < gw_req_header_count(r); i++) {
        const char *n, *hv;
        gw_req_header_at(r, i, &n, &hv);
        if (strncasecmp(n, "x-amz-grant-", 12) == 0) {
            *msg = "x-amz-grant-* headers are not implemented: only the canned ACLs private and "
                   "public-read (x-amz-acl)";
            return -1;
        }
    }
    if (v) {
        rc = 0;
        if (strcmp(v, "public-read") == 0) {
            *acl = ENGINE_ACL_PUBLIC_READ;
        } else if (strcmp(v, "private") != 0) {
            *msg = "only the canned ACLs private and public-read are implemented";
            rc = -1;
        }
    }
    return rc;
}

static void
config_done(void *ud, int status)
{
    gw__op *o = ud;

    if (status == MRD_ENOTFOUND)
        gw__op_fail(o, GW_S3E_NO_SUCH_BUCKET);
    gw__op_mut_done(o, status);
}

void
gw__op_bucket_config(gw__op *o, const engine_bucket_conf *c)
{
    int rc;

    o->inflight = 1;
    rc = engine_bucket_config(o->d->eng, o->bucket, c, config_done, o);
    if (rc != 0)
        config_done(o, rc);
}

void
gw__op_acl_commit(gw__op *o)
{
    engine_bucket_conf c;

    memset(&c, 0, sizeof(c));
    c.has_acl = 1;
    c.acl = o->acl;
    gw__op_bucket_config(o, &c);
}

/* An AccessControlPolicy document: owner's FULL_CONTROL, and READ for the
 * AllUsers group when public. */
static void
acl_xml(mrd_buf *out, const char *owner, int public_read)
{
    mrd_buf_appendf(out, GW_XML_HDR "<AccessControlPolicy xmlns=\"" GW_S3_XMLNS "\"><Owner>");
    gw_xml_elem(out, "ID", owner);
    gw_xml_elem(out, "DisplayName", owner);
    mrd_buf_appendf(out, "</Owner><AccessControlList><Grant><Grantee " XSI
                         " xsi:type=\"CanonicalUser\">");
    gw_xml_elem(out, "ID", owner);
    gw_xml_elem(out, "DisplayName", owner);
    mrd_buf_appendf(out, "</Grantee><Permission>FULL_CONTROL</Permission></Grant>");
    if (public_read)
        mrd_buf_appendf(out, "<Grant><Grantee " XSI " xsi:type=\"Group\"><URI>" ALL_USERS
                             "</URI></Grantee><Permission>READ</Permission></Grant>");
    mrd_buf_appendf(out, "</AccessControlList></AccessControlPolicy>\n");
}

/* The bucket's canned ACL (ENGINE_ACL_*) into *acl; 0, or -1 with o failed. */
static int
bucket_acl_of(gw__op *o, int *acl)
{
    void *blob = NULL;
    size_t len = 0;
    int rc = store_bucket_get(engine_store(o->d->eng), o->bucket, &blob, &len);

    if (rc != 0) {
        gw__op_fail(o, rc == MRD_ENOTFOUND ? GW_S3E_NO_SUCH_BUCKET : gw_s3_err_from_rc(rc));
        return -1;
    }
    *acl = gw__bucket_public_read(blob, len) ? ENGINE_ACL_PUBLIC_READ : ENGINE_ACL_PRIVATE;
    free(blob);
    return 0;
}

/* Worker: GetBucketAcl from the bucket's record; o->key is the owner. */
static void
work_get_acl(gw__op *o)
{
    int acl;

    if (bucket_acl_of(o, &acl) == 0)
        acl_xml(&o->out, o->key, acl == ENGINE_ACL_PUBLIC_READ);
}

static void
respond_acl(gw__op *o)
{
    if (strcmp(gw_req_method(o->r), "GET") == 0)
        gw__op_respond_xml(o, 200);
    else
        gw_resp_simple(o->r, 200, NULL, NULL, 0);
}

void
gw__s3_bucket_acl(gw_daemon *d, gw_req *r, const char *bucket, const char *owner)
{
    const char *m = gw_req_method(r), *msg = NULL;
    int is_get = strcmp(m, "GET") == 0, acl = ENGINE_ACL_PRIVATE, rc = 0;
    gw__op *o;

    if (!is_get && strcmp(m, "PUT") != 0) {
        gw_s3_error(r, GW_S3E_METHOD_NOT_ALLOWED, gw_req_path(r), NULL);
        return;
    }
    if (!is_get && ((rc = gw__s3_canned_acl(r, &acl, &msg)) != 0 || gw_req_has_body(r))) {
        gw_s3_error(r, GW_S3E_NOT_IMPLEMENTED, gw_req_path(r),
                    rc < 0 ? msg
                           : "PutBucketAcl takes x-amz-acl: private or public-read; "
                             "AccessControlPolicy bodies are not implemented");
        return;
    }
    if (!(o = gw__op_new(d, r, bucket, owner))) {
        gw_s3_error(r, GW_S3E_INTERNAL, gw_req_path(r), NULL);
        return;
    }
    if (is_get) {
        gw__op_go(o, work_get_acl, respond_acl);
        return;
    }
    o->acl = acl;
    o->then = gw__op_acl_commit;
    gw__op_go(o, gw__op_work_bucket, respond_acl);
}

/* ---- object ACLs: the bucket's, read-only ----------------------------------- */

/* An object's ACL is its bucket's: a public-read bucket makes its objects
 * readable (see above), and objects hold no ACL of their own. So
 * GetObjectAcl renders the bucket's for a version that exists, and
 * PutObjectAcl succeeds only when it asks for what the object already has
 * (a tool setting `private` on objects of a private bucket), answering
 * NotImplemented otherwise rather than pretending. */
typedef struct oacl_st {
    char *vid;        /* ?versionId=, or NULL */
    char owner[128];  /* the requester's access key */
    int want, is_put; /* PutObjectAcl: the canned ACL asked for */
} oacl_st;

static void
oacl_free(void *p)
{
    oacl_st *s = p;

    if (s)
        free(s->vid);
    free(s);
}

/* Worker: GetObjectAcl, or PutObjectAcl's check. */
static void
work_object_acl(gw__op *o)
{
    oacl_st *s = o->ext;
    store_version_rec *rec = NULL;
    int acl;

    if (gw__op_open_version(o, s->vid, &rec) != 0)
        return;
    store_version_rec_free(rec);
    if (bucket_acl_of(o, &acl) != 0)
        return;
    if (!s->is_put) {
        acl_xml(&o->out, s->owner, acl == ENGINE_ACL_PUBLIC_READ);
    } else if (s->want != acl) {
        gw__op_fail(o, GW_S3E_NOT_IMPLEMENTED);
        o->err_msg = "objects have no ACL of their own here: an object's ACL is its bucket's "
                     "(PutBucketAcl: private or public-read)";
    }
}

void
gw__s3_object_acl(gw_daemon *d, gw_req *r, const char *bucket, const char *key, const char *owner)
{
    const char *m = gw_req_method(r), *msg = NULL;
    int is_get = strcmp(m, "GET") == 0, want = ENGINE_ACL_PRIVATE, rc = 0;
    mrd_buf vid = {0};
    int has_vid = gw_query_param(gw_req_query(r), "versionId", &vid);
    oacl_st *s = NULL;
    gw__op *o = NULL;

    if (!is_get && strcmp(m, "PUT") != 0) {
        gw_s3_error(r, GW_S3E_METHOD_NOT_ALLOWED, gw_req_path(r), NULL);
    } else if (has_vid && !gw__version_id_valid(vid.data ? vid.data : "")) {
        gw_s3_error(r, GW_S3E_INVALID_ARGUMENT, gw_req_path(r), "Invalid version id specified");
    } else if (!is_get && ((rc = gw__s3_canned_acl(r, &want, &msg)) != 0 || gw_req_has_body(r))) {
        gw_s3_error(r, GW_S3E_NOT_IMPLEMENTED, gw_req_path(r),
                    rc < 0 ? msg
                           : "PutObjectAcl takes x-amz-acl: private or public-read; "
                             "AccessControlPolicy bodies are not implemented");
    } else if (!(o = gw__op_new(d, r, bucket, key)) || !(s = calloc(1, sizeof(*s))) ||
               (has_vid && !(s->vid = strdup(vid.data ? vid.data : "")))) {
        if (o) {
            oacl_free(s);
            gw__op_abandon(o, GW_S3E_INTERNAL, NULL);
        } else {
            gw_s3_error(r, GW_S3E_INTERNAL, gw_req_path(r), NULL);
        }
    } else {
        snprintf(s->owner, sizeof(s->owner), "%s", owner ? owner : "");
        s->is_put = !is_get;
        s->want = want;
        o->ext = s;
        o->ext_free = oacl_free;
        gw__op_go(o, work_object_acl, respond_acl);
    }
    mrd_buf_free(&vid);
}
