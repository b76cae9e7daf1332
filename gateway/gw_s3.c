/*
 * gw_s3.c - the S3 router, authentication, and the bucket-level operations
 * (ListBuckets, Create/Head/Delete bucket, location, ListObjects v1 and v2).
 * Versioning, bucket tagging, ListObjectVersions and DeleteObject live in
 * gw_s3_ver.c and gw_s3_tag.c.
 *
 * Every request on the S3 port goes: health check paths first (load
 * balancers probe them without credentials), then SigV4 (gw_sigv4.c) over
 * the request head, then addressing (gw_addr.c): path style, where "/" is
 * the service, "/<bucket>" a bucket, "/<bucket>/<key>" an object (the key is
 * the rest of the path, percent-decoded), or virtual-host style, where the
 * bucket is the Host's first label under a configured domain and the whole
 * path is the key. Multipart upload requests (the uploads and uploadId
 * sub-resources) go to gw_s3_mpu.c, bucket ACLs and anonymous requests to
 * gw_s3_acl.c (object ACLs too). Sub-resources this build does not implement (object lock,
 * policies, ...) get 501 NotImplemented rather than being mistaken for a
 * plain GET or PUT, which would do the wrong thing silently. An anonymous
 * request skips SigV4 and is refused here unless it is a GET/HEAD of an
 * object or a ListObjects; the bucket's ACL decides the rest on the worker.
 *
 * Nothing here blocks the event loop: index reads run on the engine's
 * worker pool (engine_run) and mutations go through the engine, whose
 * callbacks come back on this loop: each S3 loop thread binds its own
 * completion queue (gw__engine, gw_loop.c), so an op is created, finished
 * and freed on the loop that accepted its request. An operation in flight
 * owns a small `op`; the HTTP layer's release callback tells it when the
 * client went away, and whichever of "work finished" and "released" happens
 * last frees it. Object PUT and GET stream and live in gw_s3_obj.c.
 *
 * Listing walks the index cursor once per page; with a delimiter, when a key
 * rolls up into a CommonPrefix the walk restarts just past that prefix
 * (prefix + 0xFF, a byte UTF-8 keys never contain), so a page costs what it
 * returns, not what the "directories" hold. Continuation tokens are the hex
 * of that restart key: opaque to clients and trivially validated.
 */
#include "gw_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

#define S3_XMLNS    GW_S3_XMLNS
#define XML_HDR     GW_XML_HDR
#define MAX_BODY_IN (1u << 20) /* small XML request bodies we read and ignore */

/* ---- one asynchronous operation ----------------------------------------- */

typedef gw__op op;

static void
op_free(op *o)
{
    if (o->ext_free)
        o->ext_free(o->ext);
    free(o->key);
    free(o->query);
    mrd_buf_free(&o->out);
    mrd_buf_free(&o->in);
    free(o);
}

static void
op_release(gw_req *r, void *ctx, int aborted)
{
    op *o = ctx;

    (void)r;
    (void)aborted;
    if (o->inflight)
        o->released = 1;
    else
        op_free(o);
}

/* Reads a small request body: kept in o->in up to o->body_max bytes, or
 * read and ignored (up to MAX_BODY_IN) when body_max is 0. */
static int
op_discard_body(gw_req *r, const char *data, size_t len, void *ctx)
{
    op *o = ctx;
    size_t max = o->body_max ? o->body_max : MAX_BODY_IN;

    if (gw_req_body_received(r) > max) {
        gw_s3_error(r, GW_S3E_INVALID_REQUEST, gw_req_path(r), "request body too large");
        return -1;
    }
    if (o->body_max && mrd_buf_append(&o->in, data, len) != 0) {
        gw_s3_error(r, GW_S3E_INTERNAL, gw_req_path(r), "out of memory");
        return -1;
    }
    return 0;
}

static void
op_end(gw_req *r, void *ctx)
{
    (void)r;
    gw__op_start(ctx);
}

static const gw_req_ops op_ops = {.release = op_release};
static const gw_req_ops op_body_ops = {
    .body = op_discard_body, .end = op_end, .release = op_release};

/* Finishes o on the loop: answers unless the client is gone. */
void
gw__op_finish(op *o)
{
    o->inflight = 0;
    if (o->released) {
        op_free(o);
        return;
    }
    if (!o->has_err && o->then) {
        void (*then)(op *) = o->then;
        o->then = NULL;
        then(o); /* the next asynchronous step; it finishes o again */
        return;
    }
    if (o->has_err) {
        gw_s3_error(o->r, o->err, gw_req_path(o->r), o->err_msg);
    } else {
        gw_s3_request_id(o->r);
        o->respond(o);
    } /* answering runs op_release, which frees o */
}

static void
op_work(void *arg)
{
    op *o = arg;

    o->work(o);
}

static void
op_done(void *arg)
{
    gw__op_finish(arg);
}

void
gw__op_start(op *o)
{
    o->inflight = 1;
    if (engine_run(o->d->eng, op_work, op_done, o) != 0) {
        o->has_err = 1;
        o->err = GW_S3E_SERVICE_UNAVAILABLE;
        gw__op_finish(o);
    }
}

void
gw__op_fail(op *o, gw_s3_err e)
{
    o->has_err = 1;
    o->err = e;
}

op *
gw__op_new(gw_daemon *d, gw_req *r, const char *bucket, const char *key)
{
    op *o = calloc(1, sizeof(*o));

    if (!o)
        return NULL;
    o->d = d;
    o->r = r;
    snprintf(o->bucket, sizeof(o->bucket), "%s", bucket ? bucket : "");
    o->key = strdup(key ? key : "");
    o->query = strdup(gw_req_query(r));
    o->anon = gw__s3_anonymous(r);
    if (!o->key || !o->query) {
        op_free(o);
        return NULL;
    }
    return o;
}

void
gw__op_abandon(op *o, gw_s3_err e, const char *msg)
{
    gw_s3_error(o->r, e, gw_req_path(o->r), msg);
    op_free(o);
}

void
gw__op_go(op *o, void (*work)(op *), void (*respond)(op *))
{
    o->work = work;
    o->respond = respond;
    if (gw_req_has_body(o->r)) {
        gw_req_attach(o->r, &op_body_ops, o);
        return;
    }
    gw_req_attach(o->r, &op_ops, o);
    gw__op_start(o);
}

/* Runs work on the pool and respond on the loop; reads the (ignored)
 * request body first if there is one. */
static void
op_run(gw_daemon *d, gw_req *r, const char *bucket, const char *key, void (*work)(op *),
       void (*respond)(op *))
{
    op *o = gw__op_new(d, r, bucket, key);

    if (!o) {
        gw_s3_error(r, GW_S3E_INTERNAL, gw_req_path(r), "out of memory");
        return;
    }
    gw__op_go(o, work, respond);
}

void
gw__op_respond_xml(op *o, int status)
{
    gw_resp_simple(o->r, status, "application/xml", o->out.data ? o->out.data : "",
                   o->out.data ? o->out.len : 0);
}

static void
respond_xml_200(op *o)
{
    gw__op_respond_xml(o, 200);
}

static void
respond_empty_200(op *o)
{
    gw_resp_simple(o->r, 200, NULL, NULL, 0);
}

/* ---- engine mutations ---------------------------------------------------- */

void
gw__op_mut_done(void *ud, int status)
{
    op *o = ud;

    o->rc = status;
    if (status != 0 && !o->has_err) {
        o->has_err = 1;
        o->err = gw_s3_err_from_rc(status);
    }
    if (status != 0)
        MRD_WARN("s3.mutation_failed", "bucket=%s error=\"%s\"", o->bucket, mrd_strerror(status));
    gw__op_finish(o);
}

/* ---- buckets ------------------------------------------------------------- */

static int
valid_bucket_name(const char *b)
{
    size_t n = strlen(b);

    if (n < 3 || n > 63 || !isalnum((unsigned char)b[0]) || !isalnum((unsigned char)b[n - 1]))
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)b[i];
        if (!(islower(c) || isdigit(c) || c == '.' || c == '-'))
            return 0;
        if (c == '.' && (b[i + 1] == '.' || b[i + 1] == '-' || (i && b[i - 1] == '-')))
            return 0;
    }
    return 1;
}

static int
bucket_cb(void *user, const char *bucket, const void *blob, size_t len)
{
    op *o = user;
    uint64_t ms = 0;
    char t[40];

    engine_bucket_created_ms(blob, len, &ms);
    gw__iso_time(ms, t, sizeof(t));
    mrd_buf_appendf(&o->out, "<Bucket>");
    gw_xml_elem(&o->out, "Name", bucket);
    gw_xml_elem(&o->out, "CreationDate", t);
    mrd_buf_appendf(&o->out, "</Bucket>");
    return 0;
}

static void
work_list_buckets(op *o)
{
    mrd_buf_appendf(&o->out, XML_HDR "<ListAllMyBucketsResult xmlns=\"" S3_XMLNS "\"><Owner>");
    gw_xml_elem(&o->out, "ID", o->key);
    gw_xml_elem(&o->out, "DisplayName", o->key);
    mrd_buf_appendf(&o->out, "</Owner><Buckets>");
    o->rc = store_bucket_list(engine_store(o->d->eng), bucket_cb, o);
    mrd_buf_appendf(&o->out, "</Buckets></ListAllMyBucketsResult>\n");
    if (o->rc != 0)
        gw__op_fail(o, gw_s3_err_from_rc(o->rc));
}

void
gw__op_work_bucket(op *o)
{
    void *blob = NULL;
    size_t len = 0;

    o->rc = store_bucket_get(engine_store(o->d->eng), o->bucket, &blob, &len);
    if (o->rc == 0)
        o->vstate = gw__bucket_vstate(blob, len);
    if (o->rc == 0 && o->anon && !gw__bucket_public_read(blob, len))
        gw__op_fail(o, GW_S3E_ACCESS_DENIED);
    free(blob);
    if (o->rc == MRD_ENOTFOUND)
        gw__op_fail(o, GW_S3E_NO_SUCH_BUCKET);
    else if (o->rc != 0)
        gw__op_fail(o, gw_s3_err_from_rc(o->rc));
}

static void
work_location(op *o)
{
    const char *region = o->d->conf->region;

    gw__op_work_bucket(o);
    if (o->has_err)
        return;
    mrd_buf_appendf(&o->out, XML_HDR "<LocationConstraint xmlns=\"" S3_XMLNS "\">");
    if (strcmp(region, "us-east-1") != 0)
        gw_xml_escape(&o->out, region);
    mrd_buf_appendf(&o->out, "</LocationConstraint>\n");
}

static void
respond_create_bucket(op *o)
{
    char loc[80];

    snprintf(loc, sizeof(loc), "/%s", o->bucket);
    gw_resp_header(o->r, "Location", loc);
    gw_resp_simple(o->r, 200, NULL, NULL, 0);
}

static void
create_done(void *ud, int status)
{
    op *o = ud;

    if (status == MRD_EEXIST)
        gw__op_fail(o, GW_S3E_BUCKET_ALREADY_OWNED);
    gw__op_mut_done(o, status == MRD_EEXIST ? 0 : status);
}

/* CreateBucket with a CreateBucketConfiguration body: read it (ignored:
 * the site's region is the bucket's), then create. */
static void
create_end(gw_req *r, void *ctx)
{
    op *o = ctx;
    int rc;

    (void)r;
    o->inflight = 1;
    rc = engine_bucket_create(o->d->eng, o->bucket, create_done, o);
    if (rc != 0)
        gw__op_mut_done(o, rc);
}

static const gw_req_ops op_create_ops = {
    .body = op_discard_body, .end = create_end, .release = op_release};

static void
delete_bucket_done(void *ud, int status)
{
    op *o = ud;

    if (status == MRD_ENOTFOUND)
        gw__op_fail(o, GW_S3E_NO_SUCH_BUCKET);
    else if (status == MRD_EBUSY)
        gw__op_fail(o, GW_S3E_BUCKET_NOT_EMPTY);
    gw__op_mut_done(o, status == MRD_ENOTFOUND || status == MRD_EBUSY ? 0 : status);
}

static void
respond_204(op *o)
{
    gw_resp_simple(o->r, 204, NULL, NULL, 0);
}

/* Engine mutations are already asynchronous: no pool hop needed. */
static void
delete_bucket(gw_daemon *d, gw_req *r, const char *bucket)
{
    op *o = gw__op_new(d, r, bucket, NULL);
    int rc;

    if (!o) {
        gw_s3_error(r, GW_S3E_INTERNAL, gw_req_path(r), "out of memory");
        return;
    }
    gw_req_attach(r, &op_ops, o);
    o->inflight = 1;
    o->respond = respond_204;
    rc = engine_bucket_delete(d->eng, bucket, delete_bucket_done, o);
    if (rc != 0)
        gw__op_mut_done(o, rc);
}

/* CreateBucket: x-amz-acl: public-read sets the ACL register once the
 * create is durable (gw__op_acl_commit); a CreateBucketConfiguration body
 * (LocationConstraint) is read and ignored first. */
static void
create_bucket(gw_daemon *d, gw_req *r, const char *bucket)
{
    const char *msg = NULL;
    int acl, has_body = gw_req_has_body(r);
    op *o;

    if (!valid_bucket_name(bucket)) {
        gw_s3_error(r, GW_S3E_INVALID_BUCKET_NAME, gw_req_path(r), NULL);
        return;
    }
    if (gw__s3_canned_acl(r, &acl, &msg) < 0) {
        gw_s3_error(r, GW_S3E_NOT_IMPLEMENTED, gw_req_path(r), msg);
        return;
    }
    if (!(o = gw__op_new(d, r, bucket, NULL))) {
        gw_s3_error(r, GW_S3E_INTERNAL, gw_req_path(r), "out of memory");
        return;
    }
    o->respond = respond_create_bucket;
    o->acl = acl;
    if (acl != ENGINE_ACL_PRIVATE)
        o->then = gw__op_acl_commit;
    gw_req_attach(r, has_body ? &op_create_ops : &op_ops, o);
    if (!has_body)
        create_end(r, o);
}

/* ---- listing ------------------------------------------------------------- */

typedef struct lister {
    op *o;
    const char *prefix, *delim;
    size_t plen, dlen;
    int max_keys, count, truncated, restart, url;
    mrd_buf contents, prefixes, last, resume;
} lister;

void
gw__xml_name(mrd_buf *b, int url, const char *tag, const char *s)
{
    if (url) {
        mrd_buf enc = {0};
        gw_uri_encode(&enc, s, strlen(s), 1);
        gw_xml_elem(b, tag, enc.data ? enc.data : "");
        mrd_buf_free(&enc);
    } else {
        gw_xml_elem(b, tag, s);
    }
}

static void
put_name(lister *l, mrd_buf *b, const char *tag, const char *s)
{
    gw__xml_name(b, l->url, tag, s);
}

int
gw__list_query(const char *query, mrd_buf *prefix, mrd_buf *delim, int *max_keys, int *url)
{
    mrd_buf tmp = {0};
    char *end;
    int rc = 0;

    gw_query_param(query, "prefix", prefix);
    gw_query_param(query, "delimiter", delim);
    *max_keys = 1000;
    *url = 0;
    if (gw_query_param(query, "max-keys", &tmp)) {
        long mk = strtol(tmp.data, &end, 10);
        if (*end || mk < 0 || tmp.len == 0)
            rc = -1;
        *max_keys = mk > 1000 ? 1000 : (int)mk;
    }
    if (rc == 0 && gw_query_param(query, "encoding-type", &tmp)) {
        if (strcmp(tmp.data, "url") != 0)
            rc = -1;
        *url = 1;
    }
    mrd_buf_free(&tmp);
    return rc;
}

static int
list_cb(void *user, const char *key, const store_version *v)
{
    lister *l = user;
    const char *rest = key + l->plen;
    const char *cut;
    char t[40];

    if (v->flags & STORE_VF_DELETE_MARKER)
        return 0;
    cut = l->dlen ? strstr(rest, l->delim) : NULL;
    if (l->count == l->max_keys) {
        l->truncated = 1;
        return 1;
    }
    l->count++;
    mrd_buf_reset(&l->resume);
    if (cut) {
        size_t n = (size_t)(cut - key) + l->dlen;
        mrd_buf_append(&l->resume, key, n);
        mrd_buf_appendf(&l->prefixes, "<CommonPrefixes>");
        put_name(l, &l->prefixes, "Prefix", l->resume.data);
        mrd_buf_appendf(&l->prefixes, "</CommonPrefixes>");
        mrd_buf_reset(&l->last);
        mrd_buf_append(&l->last, l->resume.data, l->resume.len);
        mrd_buf_append(&l->resume, "\xff", 1);
        l->restart = 1;
        return 1; /* restart past everything under this prefix */
    }
    mrd_buf_append(&l->resume, key, strlen(key));
    mrd_buf_reset(&l->last);
    mrd_buf_append(&l->last, key, strlen(key));
    gw__iso_time(MRD_HLC_MS(v->hlc), t, sizeof(t));
    mrd_buf_appendf(&l->contents, "<Contents>");
    put_name(l, &l->contents, "Key", key);
    gw_xml_elem(&l->contents, "LastModified", t);
    mrd_buf_appendf(&l->contents, "<ETag>&quot;");
    gw_xml_escape(&l->contents, v->etag ? v->etag : "");
    mrd_buf_appendf(&l->contents,
                    "&quot;</ETag><Size>%llu</Size><StorageClass>STANDARD"
                    "</StorageClass></Contents>",
                    (unsigned long long)v->size);
    return 0;
}

static int
hex_decode(const char *s, mrd_buf *out)
{
    size_t n = strlen(s);

    if (n % 2)
        return MRD_EINVAL;
    for (size_t i = 0; i < n; i += 2) {
        int h = isxdigit((unsigned char)s[i])
                    ? (isdigit((unsigned char)s[i]) ? s[i] - '0' : (s[i] | 32) - 'a' + 10)
                    : -1;
        int lo =
            isxdigit((unsigned char)s[i + 1])
                ? (isdigit((unsigned char)s[i + 1]) ? s[i + 1] - '0' : (s[i + 1] | 32) - 'a' + 10)
                : -1;
        char c;
        if (h < 0 || lo < 0)
            return MRD_EINVAL;
        c = (char)(h * 16 + lo);
        mrd_buf_append(out, &c, 1);
    }
    return mrd_buf_append(out, "", 0);
}

static void
work_list_objects(op *o)
{
    lister l;
    mrd_buf prefix = {0}, delim = {0}, token = {0}, start = {0}, tmp = {0}, enc = {0};
    int v2 = 0, has_token = 0, has_start = 0;
    const char *from = NULL;

    memset(&l, 0, sizeof(l));
    l.o = o;
    gw__op_work_bucket(o);
    if (o->has_err)
        return;
    if (gw_query_param(o->query, "list-type", &tmp))
        v2 = strcmp(tmp.data, "2") == 0;
    if (gw__list_query(o->query, &prefix, &delim, &l.max_keys, &l.url) != 0) {
        gw__op_fail(o, GW_S3E_INVALID_ARGUMENT);
        goto out;
    }
    l.prefix = prefix.data ? prefix.data : "";
    l.delim = delim.data ? delim.data : "";
    l.plen = strlen(l.prefix);
    l.dlen = strlen(l.delim);
    if (v2) {
        if ((has_token = gw_query_param(o->query, "continuation-token", &tmp))) {
            if (hex_decode(tmp.data, &token) != 0) {
                gw__op_fail(o, GW_S3E_INVALID_ARGUMENT);
                goto out;
            }
            from = token.data;
        }
        if ((has_start = gw_query_param(o->query, "start-after", &start)) && !from)
            from = start.data;
    } else if ((has_start = gw_query_param(o->query, "marker", &start))) {
        from = start.data;
    }
    if (from && l.plen && strncmp(from, l.prefix, l.plen) < 0)
        from = NULL; /* starting before the prefix: the walk begins at it anyway */

    mrd_buf_append(&l.resume, from ? from : "", from ? strlen(from) : 0);
    do {
        l.restart = 0;
        o->rc = store_index_list(engine_store(o->d->eng), o->bucket, l.prefix,
                                 l.resume.len ? l.resume.data : NULL, NULL, 0, list_cb, &l);
    } while (o->rc == 0 && l.restart && !l.truncated);
    if (o->rc != 0) {
        gw__op_fail(o, gw_s3_err_from_rc(o->rc));
        goto out;
    }

    mrd_buf_appendf(&o->out, XML_HDR "<ListBucketResult xmlns=\"" S3_XMLNS "\">");
    gw_xml_elem(&o->out, "Name", o->bucket);
    put_name(&l, &o->out, "Prefix", l.prefix);
    if (l.dlen)
        put_name(&l, &o->out, "Delimiter", l.delim);
    mrd_buf_appendf(&o->out, "<MaxKeys>%d</MaxKeys>", l.max_keys);
    if (l.url)
        gw_xml_elem(&o->out, "EncodingType", "url");
    mrd_buf_appendf(&o->out, "<IsTruncated>%s</IsTruncated>", l.truncated ? "true" : "false");
    if (v2) {
        mrd_buf_appendf(&o->out, "<KeyCount>%d</KeyCount>", l.count);
        if (has_token)
            gw_xml_elem(&o->out, "ContinuationToken", tmp.data);
        if (has_start)
            put_name(&l, &o->out, "StartAfter", start.data);
        if (l.truncated) {
            static const char hex[] = "0123456789abcdef";
            for (size_t i = 0; i < l.resume.len; i++) {
                unsigned char c = (unsigned char)l.resume.data[i];
                char h[2] = {hex[c >> 4], hex[c & 15]};
                mrd_buf_append(&enc, h, 2);
            }
            gw_xml_elem(&o->out, "NextContinuationToken", enc.data ? enc.data : "");
        }
    } else {
        put_name(&l, &o->out, "Marker", has_start ? start.data : "");
        if (l.truncated && l.dlen)
            put_name(&l, &o->out, "NextMarker", l.last.data ? l.last.data : "");
    }
    if (l.contents.data)
        mrd_buf_append(&o->out, l.contents.data, l.contents.len);
    if (l.prefixes.data)
        mrd_buf_append(&o->out, l.prefixes.data, l.prefixes.len);
    mrd_buf_appendf(&o->out, "</ListBucketResult>\n");
out:
    mrd_buf_free(&prefix);
    mrd_buf_free(&delim);
    mrd_buf_free(&token);
    mrd_buf_free(&start);
    mrd_buf_free(&tmp);
    mrd_buf_free(&enc);
    mrd_buf_free(&l.contents);
    mrd_buf_free(&l.prefixes);
    mrd_buf_free(&l.last);
    mrd_buf_free(&l.resume);
}

/* ---- routing ------------------------------------------------------------- */

/* Sub-resources (query parameters without which the request means
 * something else) that this build does not serve. */
static const char *const unsupported_subres[] = {"tagging",
                                                 "acl",
                                                 "policy",
                                                 "cors",
                                                 "lifecycle",
                                                 "website",
                                                 "replication",
                                                 "notification",
                                                 "encryption",
                                                 "object-lock",
                                                 "retention",
                                                 "legal-hold",
                                                 "versions",
                                                 "versionId",
                                                 "delete",
                                                 "restore",
                                                 "select",
                                                 "torrent",
                                                 "logging",
                                                 "requestPayment",
                                                 "accelerate",
                                                 "analytics",
                                                 "inventory",
                                                 "metrics",
                                                 "ownershipControls",
                                                 "publicAccessBlock",
                                                 "intelligent-tiering",
                                                 "attributes",
                                                 NULL};

static int
has_param(const char *query, const char *name)
{
    mrd_buf v = {0};
    int has = gw_query_param(query, name, &v);

    mrd_buf_free(&v);
    return has;
}

int
gw__s3_anon_allowed(const char *method, const char *query)
{
    /* sub-resources served for signed requests only */
    static const char *const signed_only[] = {"uploads",  "uploadId",   "partNumber",
                                              "location", "versioning", NULL};
    int ok = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;

    for (const char *const *s = unsupported_subres; ok && *s; s++)
        ok = !has_param(query, *s);
    for (const char *const *s = signed_only; ok && *s; s++)
        ok = !has_param(query, *s);
    return ok;
}

static void
route_bucket(gw_daemon *d, gw_req *r, const char *bucket, const char *method, const char *q,
             const gw_sigv4_auth *auth)
{
    if (strcmp(method, "PUT") == 0 && !*q) {
        create_bucket(d, r, bucket);
    } else if (strcmp(method, "DELETE") == 0 && !*q) {
        delete_bucket(d, r, bucket);
    } else if (strcmp(method, "HEAD") == 0) {
        op_run(d, r, bucket, NULL, gw__op_work_bucket, respond_empty_200);
    } else if (strcmp(method, "POST") == 0 && has_param(q, "delete")) {
        gw__s3_delete_objects(d, r, bucket, auth);
    } else if (strcmp(method, "GET") == 0 && has_param(q, "location")) {
        op_run(d, r, bucket, NULL, work_location, respond_xml_200);
    } else if (has_param(q, "acl")) {
        gw__s3_bucket_acl(d, r, bucket, auth->access_key);
    } else if (has_param(q, "versioning") || has_param(q, "tagging")) {
        gw__s3_bucket_config(d, r, bucket, auth);
    } else if (strcmp(method, "GET") == 0 && has_param(q, "versions")) {
        gw__s3_list_versions(d, r, bucket);
    } else if (strcmp(method, "GET") == 0 && has_param(q, "uploads")) {
        gw__s3_mpu_bucket(d, r, bucket, method);
    } else if (strcmp(method, "GET") == 0) {
        for (const char *const *s = unsupported_subres; *s; s++) {
            if (has_param(q, *s)) {
                gw_s3_error(r, GW_S3E_NOT_IMPLEMENTED, gw_req_path(r), NULL);
                return;
            }
        }
        op_run(d, r, bucket, NULL, work_list_objects, respond_xml_200);
    } else {
        gw_s3_error(r, GW_S3E_NOT_IMPLEMENTED, gw_req_path(r), NULL);
    }
}

static void
route_object(gw_daemon *d, gw_req *r, const char *bucket, const char *key, const char *method,
             const char *q, const gw_sigv4_auth *auth)
{
    int get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;

    if (has_param(q, "uploads") || has_param(q, "uploadId")) {
        gw__s3_mpu_object(d, r, bucket, key, method, auth);
        return;
    }
    if (has_param(q, "tagging")) {
        gw__s3_object_tagging(d, r, bucket, key, auth);
        return;
    }
    if (has_param(q, "acl")) {
        gw__s3_object_acl(d, r, bucket, key, auth->access_key);
        return;
    }
    for (const char *const *s = unsupported_subres; *s; s++) {
        /* GET, HEAD and DELETE of one version by id are served (gw__s3_get_object,
         * gw__s3_delete_object) */
        if (has_param(q, *s) &&
            !((get || strcmp(method, "DELETE") == 0) && strcmp(*s, "versionId") == 0)) {
            gw_s3_error(r, GW_S3E_NOT_IMPLEMENTED, gw_req_path(r), NULL);
            return;
        }
    }
    if (strcmp(method, "PUT") == 0) {
        if (gw__route_write(d, r))
            return;
        if (gw_req_header(r, "x-amz-copy-source"))
            gw__s3_copy_object(d, r, bucket, key);
        else
            gw__s3_put_object(d, r, bucket, key, auth);
    } else if (get) {
        if (!gw__route_read(d, r, bucket, key))
            gw__s3_get_object(d, r, bucket, key);
    } else if (strcmp(method, "DELETE") == 0) {
        if (!gw__route_write(d, r))
            gw__s3_delete_object(d, r, bucket, key);
    } else {
        gw_s3_error(r, GW_S3E_METHOD_NOT_ALLOWED, gw_req_path(r), NULL);
    }
}

static int
authenticate(gw_daemon *d, gw_req *r, gw_sigv4_auth *auth)
{
    const char *names[160], *values[160];
    gw_sigv4_input in;
    const char *why = "";
    int n = gw_req_header_count(r), rc;
    char q[160];

    if (n > 160)
        n = 160;
    for (int i = 0; i < n; i++)
        gw_req_header_at(r, i, &names[i], &values[i]);
    in.method = gw_req_method(r);
    in.path = gw_req_path(r);
    in.query = gw_req_query(r);
    in.n_headers = n;
    in.hname = names;
    in.hvalue = values;
    rc = gw_sigv4_verify(&in, d->conf, (int64_t)(mrd_clock_realtime_ms(NULL) / 1000), auth, &why);
    if (rc != 0) {
        MRD_INFO("s3.auth_failed", "peer=%s method=%s path=%s reason=%s", gw_req_peer(r), in.method,
                 mrd_log_quote(in.path, q, sizeof(q)), mrd_log_quote(why, q + 80, 80));
        /* A malformed request is told exactly what is wrong; signature and
         * key failures keep the generic text, which reveals nothing. */
        gw_s3_error(r, (gw_s3_err)(rc - 1), gw_req_path(r),
                    rc - 1 == GW_S3E_INVALID_REQUEST || rc - 1 == GW_S3E_INVALID_ARGUMENT ? why
                                                                                          : NULL);
        return -1;
    }
    return 0;
}

void
gw__route_s3(gw_req *r, void *ud)
{
    gw_daemon *d = ud;
    gw_sigv4_auth auth;
    const char *path = gw_req_path(r), *method = gw_req_method(r), *q = gw_req_query(r);
    gw_s3_addr a;
    mrd_buf key = {0};
    int peer, rc, anon;
    gw_loop *l = gw__loop_self();

    if (l)
        GW_ADD(l->requests, 1);
    if (gw__route_health(r, d))
        return;
    memset(&auth, 0, sizeof(auth));
    /* A forwarded aws-chunked upload with signed chunks also needs the
     * client's SigV4 (its signing key checks every chunk). An anonymous
     * request has no SigV4 to check: what it may do is decided below and
     * by the bucket's ACL (gw_s3_acl.c). */
    if ((peer = gw__route_peer_auth(d, r, &auth)) < 0)
        return;
    if (!(anon = gw__s3_anonymous(r)) &&
        (peer == 0 || strncmp(auth.payload_hash, "STREAMING-AWS4-HMAC", 19) == 0) &&
        authenticate(d, r, &auth) != 0)
        return;
    if (gw__route_early(d, r)) /* drained, or no store: a peer serves it */
        return;
    /* from here on the engine's callbacks come back to this loop */
    if (!gw__engine(d)) {
        gw_s3_error(r, GW_S3E_SERVICE_UNAVAILABLE, path, NULL);
        return;
    }
    /* path or virtual-host style (gw_addr.c), after SigV4 checked the
     * request as sent */
    rc = gw_s3_addr_parse(d->conf, gw_req_header(r, "host"), path,
                          peer ? gw_req_header(r, GW_HDR_BUCKET) : NULL, &a);
    if (rc != 0) {
        gw_s3_error(r, rc == MRD_ETOOBIG ? GW_S3E_INVALID_BUCKET_NAME : GW_S3E_INVALID_REQUEST,
                    path, rc == MRD_ETOOBIG ? NULL : "request target must be a path");
        return;
    }
    if (anon && (!a.bucket[0] || !gw__s3_anon_allowed(method, q))) {
        MRD_INFO("s3.anonymous_refused", "peer=%s method=%s", gw_req_peer(r), method);
        gw_s3_error(r, GW_S3E_ACCESS_DENIED, path, NULL);
        return;
    }
    if (!a.bucket[0]) {
        if (strcmp(method, "GET") != 0) {
            gw_s3_error(r, GW_S3E_METHOD_NOT_ALLOWED, path, NULL);
            return;
        }
        op_run(d, r, "", auth.access_key, work_list_buckets, respond_xml_200);
        return;
    }
    if (!a.key) {
        route_bucket(d, r, a.bucket, method, q, &auth);
        return;
    }
    if (gw_url_decode(a.key, strlen(a.key), 0, &key) != 0 || key.len > 1024 ||
        memchr(key.data, '\0', key.len)) {
        int too_long = key.len > 1024; /* read before the free resets it */
        mrd_buf_free(&key);
        gw_s3_error(r, too_long ? GW_S3E_KEY_TOO_LONG : GW_S3E_INVALID_ARGUMENT, path, NULL);
        return;
    }
    /* The index's keys hold bucket, key and a version or upload id, and LMDB
     * bounds them below S3's 1024 bytes: refuse before any byte is stored
     * (store_key_check), never with a log record the index cannot apply. */
    if (store_key_check(engine_store(d->eng), a.bucket, key.data) != 0) {
        char msg[160];
        snprintf(msg, sizeof(msg),
                 "Your key is too long: keys in a bucket named like this one can have at most "
                 "%zu bytes on this site",
                 store_key_max(engine_store(d->eng), strlen(a.bucket)));
        mrd_buf_free(&key);
        gw_s3_error(r, GW_S3E_KEY_TOO_LONG, path, msg);
        return;
    }
    route_object(d, r, a.bucket, key.data, method, q, &auth);
    mrd_buf_free(&key);
}
