/*
 * gw_s3_ver.c - the S3 side of bucket versioning: DeleteObject with and
 * without ?versionId=, ListObjectVersions, and how a version is named in
 * responses.
 *
 * Names. Every version has an internal id (engine_version_id_new, equal at
 * every site). S3 calls a null version (written while the bucket was
 * unversioned or suspended, ENGINE_VF_NULL_VERSION) "null", so that is what
 * x-amz-version-id and listings show for it, and "null" in a request names
 * the key's null version (engine_version_lookup). A bucket whose versioning
 * was never set sends no x-amz-version-id, as S3 does, unless the request
 * named a version.
 *
 * DeleteObject. Without a versionId the engine writes a delete marker when
 * the bucket is versioned or suspended (x-amz-delete-marker: true and the
 * marker's x-amz-version-id, "null" when suspended); an unversioned bucket
 * behaves exactly as before. With one, a worker resolves it ("null", an
 * id; a tombstone is not found) and the engine removes that version for
 * good (engine_object_delete_version), a delete marker included, which
 * answers x-amz-delete-marker: true. An id that is not one of ours answers
 * InvalidArgument; a well-formed id that is not held here is still removed
 * (S3 answers 204 for it, and the tombstone stops the version should it
 * arrive later from a peer).
 *
 * ListObjectVersions is a cursor walk over the index's versions (key order,
 * then version id order, which is time order), never a bucket scan: it
 * starts at key-marker (within it, below version-id-marker) and stops after
 * max-keys entries. S3 lists each key's versions newest first, the reverse
 * of the walk, so the versions of the key being walked are buffered in a
 * ring that keeps only the newest `remaining` of them (at most max-keys
 * <= 1000 entries of a few dozen bytes): memory is bounded whatever the
 * number of versions of a key, and a key with more versions than fit ends
 * the page with NextVersionIdMarker. A delimiter rolls keys up into
 * CommonPrefixes and restarts the walk past the prefix (as ListObjects
 * does). Tombstones and hidden conflict losers (null versions that lost a
 * concurrent write, docs/conflicts.md) are not listed; IsLatest is the
 * version's role (current) in the index.
 */
#include "gw_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

const char *
gw__version_header(const store_version *v, int vstate, int asked)
{
    if (!(v->flags & ENGINE_VF_NULL_VERSION))
        return v->version_id;
    return vstate != ENGINE_VERSIONING_UNSET || asked ? "null" : NULL;
}

int
gw__version_id_valid(const char *v)
{
    return strcmp(v, "null") == 0 || (strlen(v) == 24 && strspn(v, "0123456789abcdef") == 24);
}

int
gw__bucket_vstate(const void *blob, size_t len)
{
    int state = ENGINE_VERSIONING_UNSET;

    if (engine_bucket_versioning(blob, len, &state) != 0)
        state = ENGINE_VERSIONING_UNSET;
    return state;
}

/* A listed version: not a tombstone, not a hidden conflict loser. */
static int
listed(const store_version *v)
{
    if (v->flags & ENGINE_VF_TOMBSTONE)
        return 0;
    return !((v->flags & ENGINE_VF_NULL_VERSION) && (v->flags & STORE_VF_CONFLICT));
}

/* ---- DeleteObject ---------------------------------------------------------- */

typedef struct del1 {
    char *version_id; /* ?versionId= as sent, or NULL */
    char target[64];  /* the internal id to remove */
    int vstate;
    int was_marker;      /* the removed version is a delete marker */
    char marker_vid[25]; /* the marker written (no versionId) */
} del1;

static void
del1_free(void *p)
{
    del1 *x = p;

    if (x)
        free(x->version_id);
    free(x);
}

/* Worker: the bucket's state and, with a versionId, the version it names. */
static void
work_delete(gw__op *o)
{
    del1 *x = o->ext;
    store_version_rec *rec = NULL;
    void *blob = NULL;
    size_t len = 0;
    int rc = store_bucket_get(engine_store(o->d->eng), o->bucket, &blob, &len);

    if (rc == 0)
        x->vstate = gw__bucket_vstate(blob, len);
    free(blob);
    if (rc != 0) {
        gw__op_fail(o, rc == MRD_ENOTFOUND ? GW_S3E_NO_SUCH_BUCKET : gw_s3_err_from_rc(rc));
        return;
    }
    if (!x->version_id)
        return;
    rc = engine_version_lookup(o->d->eng, o->bucket, o->key, x->version_id, &rec);
    if (rc == 0) {
        const store_version *v = store_version_rec_get(rec);
        snprintf(x->target, sizeof(x->target), "%s", v->version_id);
        x->was_marker = !!(v->flags & STORE_VF_DELETE_MARKER);
    } else if (rc == MRD_ENOTFOUND && strcmp(x->version_id, "null") != 0) {
        snprintf(x->target, sizeof(x->target), "%s", x->version_id); /* tombstone it */
    } else if (rc != MRD_ENOTFOUND) {
        gw__op_fail(o, gw_s3_err_from_rc(rc));
    }
    store_version_rec_free(rec);
}

static void
delete_done(void *ud, int status)
{
    gw__op *o = ud;

    if (status == MRD_ENOTFOUND)
        gw__op_fail(o, GW_S3E_NO_SUCH_BUCKET);
    else if (status != 0)
        gw__op_fail(o, gw_s3_err_from_rc(status));
    gw__op_finish(o);
}

/* Loop: the mutation. */
static void
delete_commit(gw__op *o)
{
    del1 *x = o->ext;
    int rc;

    o->inflight = 1;
    if (x->version_id && !x->target[0]) {
        gw__op_finish(o); /* "null" and there is no null version: nothing to do */
        return;
    }
    rc = x->version_id
             ? engine_object_delete_version(o->d->eng, o->bucket, o->key, x->target, delete_done, o)
             : engine_object_delete_marker(o->d->eng, o->bucket, o->key, x->marker_vid, delete_done,
                                           o);
    if (rc != 0)
        delete_done(o, rc);
}

static void
respond_delete(gw__op *o)
{
    del1 *x = o->ext;

    if (x->version_id) {
        gw_resp_header(o->r, "x-amz-version-id", x->version_id);
        if (x->was_marker)
            gw_resp_header(o->r, "x-amz-delete-marker", "true");
    } else if (x->vstate != ENGINE_VERSIONING_UNSET && x->marker_vid[0]) {
        gw_resp_header(o->r, "x-amz-delete-marker", "true");
        gw_resp_header(o->r, "x-amz-version-id",
                       x->vstate == ENGINE_VERSIONING_ENABLED ? x->marker_vid : "null");
    }
    gw__route_write_token(o->d, o->r);
    gw_resp_simple(o->r, 204, NULL, NULL, 0);
}

void
gw__s3_delete_object(gw_daemon *d, gw_req *r, const char *bucket, const char *key)
{
    gw__op *o = gw__op_new(d, r, bucket, key);
    mrd_buf vid = {0};
    del1 *x = NULL;

    if (!o || !(x = calloc(1, sizeof(*x)))) {
        if (o)
            gw__op_abandon(o, GW_S3E_INTERNAL, NULL);
        else
            gw_s3_error(r, GW_S3E_INTERNAL, gw_req_path(r), NULL);
        return;
    }
    o->ext = x;
    o->ext_free = del1_free;
    if (gw_query_param(gw_req_query(r), "versionId", &vid)) {
        const char *v = vid.data ? vid.data : "";
        if (!gw__version_id_valid(v)) {
            mrd_buf_free(&vid);
            gw__op_abandon(o, GW_S3E_INVALID_ARGUMENT, "Invalid version id specified");
            return;
        }
        x->version_id = strdup(v);
    }
    mrd_buf_free(&vid);
    o->then = delete_commit;
    gw__op_go(o, work_delete, respond_delete);
}

/* ---- ListObjectVersions ------------------------------------------------------ */

typedef struct vent {
    char id[32];
    char etag[72];
    uint64_t size, hlc;
    uint32_t flags;
} vent;

typedef struct vlister {
    gw__op *o;
    const char *prefix, *delim;
    size_t plen, dlen;
    const char *vmark_key; /* the key of version-id-marker: only ids below vmark there */
    const char *vmark;
    int max_keys, count, truncated, restart, url, stop;
    /* the key being walked and the newest `cap` of its listed versions */
    mrd_buf key;
    vent *ring;
    size_t cap, n, total;
    mrd_buf out, prefixes, resume, next_key, next_vid;
} vlister;

static void
put_name(vlister *l, mrd_buf *b, const char *tag, const char *s)
{
    gw__xml_name(b, l->url, tag, s);
}

static const char *
vent_name(const vent *v)
{
    return (v->flags & ENGINE_VF_NULL_VERSION) ? "null" : v->id;
}

/* Writes the buffered versions of the walked key, newest first, as many as
 * the page has room for. */
static void
flush_key(vlister *l)
{
    size_t room = (size_t)(l->max_keys - l->count), emit = l->n < room ? l->n : room;
    char t[40];

    if (!l->n) {
        mrd_buf_reset(&l->key);
        return;
    }
    if (l->total > room)
        l->truncated = 1;
    /* ring slots hold the newest l->n in walk order ending at (total - 1) */
    for (size_t k = 0; k < emit; k++) {
        size_t idx = (l->total - 1 - k) % l->cap;
        const vent *v = &l->ring[idx];
        int marker = !!(v->flags & STORE_VF_DELETE_MARKER);
        int latest = !(v->flags & (STORE_VF_CONFLICT | STORE_VF_NONCURRENT));

        mrd_buf_appendf(&l->out, marker ? "<DeleteMarker>" : "<Version>");
        put_name(l, &l->out, "Key", l->key.data);
        gw_xml_elem(&l->out, "VersionId", vent_name(v));
        mrd_buf_appendf(&l->out, "<IsLatest>%s</IsLatest>", latest ? "true" : "false");
        gw__iso_time(MRD_HLC_MS(v->hlc), t, sizeof(t));
        gw_xml_elem(&l->out, "LastModified", t);
        if (!marker) {
            mrd_buf_appendf(&l->out, "<ETag>&quot;");
            gw_xml_escape(&l->out, v->etag);
            mrd_buf_appendf(&l->out, "&quot;</ETag><Size>%llu</Size>", (unsigned long long)v->size);
        }
        mrd_buf_appendf(&l->out, "<Owner><ID>meridian</ID><DisplayName>meridian</DisplayName>"
                                 "</Owner>");
        if (!marker)
            mrd_buf_appendf(&l->out, "<StorageClass>STANDARD</StorageClass>");
        mrd_buf_appendf(&l->out, marker ? "</DeleteMarker>" : "</Version>");
        l->count++;
        mrd_buf_reset(&l->next_key);
        mrd_buf_append(&l->next_key, l->key.data, l->key.len);
        mrd_buf_reset(&l->next_vid);
        mrd_buf_append(&l->next_vid, vent_name(v), strlen(vent_name(v)));
    }
    l->n = l->total = 0;
    mrd_buf_reset(&l->key);
}

static int
list_version_cb(void *user, const char *key, const store_version *v)
{
    vlister *l = user;
    const char *rest = key + l->plen;
    const char *cut;
    vent *e;

    if (!listed(v))
        return 0;
    if (l->vmark && strcmp(key, l->vmark_key) == 0 && strcmp(v->version_id, l->vmark) >= 0)
        return 0; /* at or above the version marker: listed on an earlier page */
    if (l->key.len && strcmp(key, l->key.data) != 0) {
        flush_key(l);
        if (l->truncated) {
            l->stop = 1;
            return 1;
        }
    }
    if (l->count == l->max_keys) {
        l->truncated = 1;
        l->stop = 1;
        return 1;
    }
    cut = l->dlen ? strstr(rest, l->delim) : NULL;
    if (cut) {
        size_t n = (size_t)(cut - key) + l->dlen;
        mrd_buf_reset(&l->resume);
        mrd_buf_append(&l->resume, key, n);
        mrd_buf_appendf(&l->prefixes, "<CommonPrefixes>");
        put_name(l, &l->prefixes, "Prefix", l->resume.data);
        mrd_buf_appendf(&l->prefixes, "</CommonPrefixes>");
        mrd_buf_reset(&l->next_key);
        mrd_buf_append(&l->next_key, l->resume.data, l->resume.len);
        mrd_buf_reset(&l->next_vid);
        mrd_buf_reset(&l->key);
        l->count++;
        mrd_buf_append(&l->resume, "\xff", 1);
        l->restart = 1;
        return 1; /* restart past everything under this prefix */
    }
    if (!l->key.len) {
        mrd_buf_reset(&l->key);
        mrd_buf_append(&l->key, key, strlen(key));
    }
    e = &l->ring[l->total % l->cap];
    snprintf(e->id, sizeof(e->id), "%s", v->version_id);
    snprintf(e->etag, sizeof(e->etag), "%s", v->etag ? v->etag : "");
    e->size = v->size;
    e->hlc = v->hlc;
    e->flags = v->flags;
    l->total++;
    if (l->n < l->cap)
        l->n++;
    return 0;
}

static void
vlister_free(vlister *l)
{
    free(l->ring);
    mrd_buf_free(&l->key);
    mrd_buf_free(&l->out);
    mrd_buf_free(&l->prefixes);
    mrd_buf_free(&l->resume);
    mrd_buf_free(&l->next_key);
    mrd_buf_free(&l->next_vid);
}

static void
work_list_versions(gw__op *o)
{
    vlister l;
    mrd_buf prefix = {0}, delim = {0}, kmark = {0}, vmark = {0};
    char vmark_id[64] = "";
    int has_kmark, has_vmark;

    memset(&l, 0, sizeof(l));
    l.o = o;
    gw__op_work_bucket(o);
    if (o->has_err)
        return;
    if (gw__list_query(o->query, &prefix, &delim, &l.max_keys, &l.url) != 0) {
        gw__op_fail(o, GW_S3E_INVALID_ARGUMENT);
        goto out;
    }
    has_kmark = gw_query_param(o->query, "key-marker", &kmark) && kmark.len;
    has_vmark = gw_query_param(o->query, "version-id-marker", &vmark) && vmark.len;
    l.prefix = prefix.data ? prefix.data : "";
    l.delim = delim.data ? delim.data : "";
    l.plen = strlen(l.prefix);
    l.dlen = strlen(l.delim);
    if (has_vmark && !has_kmark) {
        gw__op_fail(o, GW_S3E_INVALID_ARGUMENT); /* S3: a version marker needs a key marker */
        goto out;
    }
    if (has_vmark) {
        store_version_rec *rec = NULL;
        if (strcmp(vmark.data, "null") == 0) {
            if (engine_version_lookup(o->d->eng, o->bucket, kmark.data, "null", &rec) != 0) {
                gw__op_fail(o, GW_S3E_INVALID_ARGUMENT);
                goto out;
            }
            snprintf(vmark_id, sizeof(vmark_id), "%s", store_version_rec_get(rec)->version_id);
            store_version_rec_free(rec);
        } else {
            snprintf(vmark_id, sizeof(vmark_id), "%s", vmark.data);
        }
        l.vmark_key = kmark.data;
        l.vmark = vmark_id;
    }
    l.cap = l.max_keys ? (size_t)l.max_keys : 1;
    if (!(l.ring = calloc(l.cap, sizeof(*l.ring)))) {
        gw__op_fail(o, GW_S3E_INTERNAL);
        goto out;
    }
    /* start: within the marker key (below the version marker), or past it */
    mrd_buf_append(&l.resume, has_kmark ? kmark.data : "", has_kmark ? kmark.len : 0);
    do {
        const char *from = l.resume.len ? l.resume.data : NULL;
        l.restart = 0;
        o->rc = store_index_list(engine_store(o->d->eng), o->bucket, l.prefix, from,
                                 from && has_vmark && strcmp(from, kmark.data) == 0 ? "" : NULL,
                                 STORE_LIST_VERSIONS, list_version_cb, &l);
    } while (o->rc == 0 && l.restart && !l.stop); /* a full page stops at the next entry */
    if (o->rc == 0 && !l.stop)
        flush_key(&l);
    if (o->rc != 0) {
        gw__op_fail(o, gw_s3_err_from_rc(o->rc));
        goto out;
    }

    mrd_buf_appendf(&o->out, GW_XML_HDR "<ListVersionsResult xmlns=\"" GW_S3_XMLNS "\">");
    gw_xml_elem(&o->out, "Name", o->bucket);
    put_name(&l, &o->out, "Prefix", l.prefix);
    put_name(&l, &o->out, "KeyMarker", has_kmark ? kmark.data : "");
    gw_xml_elem(&o->out, "VersionIdMarker", has_vmark ? vmark.data : "");
    if (l.truncated) {
        put_name(&l, &o->out, "NextKeyMarker", l.next_key.data ? l.next_key.data : "");
        if (l.next_vid.len)
            gw_xml_elem(&o->out, "NextVersionIdMarker", l.next_vid.data);
    }
    mrd_buf_appendf(&o->out, "<MaxKeys>%d</MaxKeys>", l.max_keys);
    if (l.dlen)
        put_name(&l, &o->out, "Delimiter", l.delim);
    if (l.url)
        gw_xml_elem(&o->out, "EncodingType", "url");
    mrd_buf_appendf(&o->out, "<IsTruncated>%s</IsTruncated>", l.truncated ? "true" : "false");
    if (l.out.data)
        mrd_buf_append(&o->out, l.out.data, l.out.len);
    if (l.prefixes.data)
        mrd_buf_append(&o->out, l.prefixes.data, l.prefixes.len);
    mrd_buf_appendf(&o->out, "</ListVersionsResult>\n");
out:
    vlister_free(&l);
    mrd_buf_free(&prefix);
    mrd_buf_free(&delim);
    mrd_buf_free(&kmark);
    mrd_buf_free(&vmark);
}

static void
respond_list_versions(gw__op *o)
{
    gw__op_respond_xml(o, 200);
}

void
gw__s3_list_versions(gw_daemon *d, gw_req *r, const char *bucket)
{
    gw__op *o = gw__op_new(d, r, bucket, NULL);

    if (!o) {
        gw_s3_error(r, GW_S3E_INTERNAL, gw_req_path(r), NULL);
        return;
    }
    gw__op_go(o, work_list_versions, respond_list_versions);
}
