/*
 * engine_bucket.c - a bucket's index blob as two kinds of register, and
 * S3's names for versions.
 *
 * A bucket's blob in the index is a packed BucketCreate (proto/wal.proto):
 * its existence register (bucket, hlc, owner, region: the winning create,
 * settled by (hlc, packed create bytes) as before) and its configuration
 * registers, versioning and tags, each with the (hlc, site) that set it.
 * engine__bucket_merge is the one function that combines the stored blob
 * with an incoming record (a create, a BUCKET_CONFIG, or an anti-entropy
 * create carrying registers), for every delivery, local or replicated:
 *
 *   - existence: the create with the larger (hlc, create bytes) wins;
 *   - each configuration register: the larger (hlc, site) wins, and a
 *     register older than the winning create is dropped: it configured an
 *     earlier incarnation of the bucket (deleted and created again);
 *   - a configuration record for a bucket this site has no record of is
 *     dropped (the bucket was deleted, or its create is still in flight from
 *     another origin: then anti-entropy, whose digest covers the registers,
 *     brings it later; docs/conflicts.md).
 * Max is commutative, associative and idempotent, so every site ends with
 * the same blob whatever the order and repetition of deliveries, and the
 * blob of a bucket never configured stays byte-identical to the create it
 * was written from (unversioned buckets are untouched).
 *
 * engine_version_lookup resolves S3's version names: the current version,
 * "null" (the newest listed null version by the conflict order) or an id,
 * never a tombstone.
 */
#include "engine_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The existence part of a bucket record, packed (what creates compare). */
static uint8_t *
pack_create(const Meridian__BucketCreate *src, size_t *len)
{
    Meridian__BucketCreate c = MERIDIAN__BUCKET_CREATE__INIT;
    uint8_t *buf;

    c.bucket = src->bucket;
    c.hlc = src->hlc;
    c.owner = src->owner;
    c.region = src->region;
    *len = meridian__bucket_create__get_packed_size(&c);
    if ((buf = malloc(*len ? *len : 1)) != NULL)
        meridian__bucket_create__pack(&c, buf);
    return buf;
}

/* 1 if create a beats create b: larger hlc, then larger packed bytes. */
static int
create_beats(const Meridian__BucketCreate *a, const Meridian__BucketCreate *b, int *nomem)
{
    size_t la = 0, lb = 0;
    uint8_t *pa, *pb;
    int c, wins;

    if (a->hlc != b->hlc)
        return a->hlc > b->hlc;
    pa = pack_create(a, &la);
    pb = pack_create(b, &lb);
    if (!pa || !pb) {
        *nomem = 1;
        wins = 0;
    } else {
        c = memcmp(pa, pb, la < lb ? la : lb);
        wins = c > 0 || (c == 0 && la > lb);
    }
    free(pa);
    free(pb);
    return wins;
}

static int
stamp_beats(uint64_t hlc_a, uint32_t site_a, uint64_t hlc_b, uint32_t site_b)
{
    return hlc_a > hlc_b || (hlc_a == hlc_b && site_a > site_b);
}

int
engine__bucket_merge(const void *cur_blob, size_t cur_len, const Meridian__BucketCreate *inc,
                     int inc_is_create, uint8_t **out, size_t *out_len)
{
    Meridian__BucketCreate *cur = NULL, r = MERIDIAN__BUCKET_CREATE__INIT;
    const Meridian__BucketCreate *create, *ver = NULL, *tags = NULL;
    uint8_t *buf = NULL;
    size_t n;
    int nomem = 0, rc = 0;

    *out = NULL;
    *out_len = 0;
    if (cur_blob && !(cur = meridian__bucket_create__unpack(NULL, cur_len, cur_blob)))
        return MRD_ECORRUPT;
    if (!cur && !inc_is_create)
        return 0; /* configuration of a bucket not held here: dropped */
    create = !cur || (inc_is_create && create_beats(inc, cur, &nomem)) ? inc : cur;
    /* each register: the larger (hlc, site) of the stored and the incoming */
    if (cur && cur->versioning_hlc)
        ver = cur;
    if (inc->versioning_hlc && (!ver || stamp_beats(inc->versioning_hlc, inc->versioning_site,
                                                    ver->versioning_hlc, ver->versioning_site)))
        ver = inc;
    if (cur && cur->tags_hlc)
        tags = cur;
    if (inc->tags_hlc &&
        (!tags || stamp_beats(inc->tags_hlc, inc->tags_site, tags->tags_hlc, tags->tags_site)))
        tags = inc;
    r.bucket = create->bucket;
    r.hlc = create->hlc;
    r.owner = create->owner;
    r.region = create->region;
    if (ver && ver->versioning_hlc >= create->hlc) {
        r.versioning = ver->versioning;
        r.versioning_hlc = ver->versioning_hlc;
        r.versioning_site = ver->versioning_site;
    }
    if (tags && tags->tags_hlc >= create->hlc) {
        r.tags = tags->tags;
        r.n_tags = tags->n_tags;
        r.tags_hlc = tags->tags_hlc;
        r.tags_site = tags->tags_site;
    }
    n = meridian__bucket_create__get_packed_size(&r);
    if (nomem || !(buf = malloc(n ? n : 1))) {
        rc = -ENOMEM;
    } else {
        meridian__bucket_create__pack(&r, buf);
        if (cur && n == cur_len && memcmp(buf, cur_blob, n) == 0) {
            free(buf); /* unchanged */
        } else {
            *out = buf;
            *out_len = n;
        }
    }
    if (cur)
        meridian__bucket_create__free_unpacked(cur, NULL);
    return rc;
}

int
engine_bucket_config_bytes(const void *blob, size_t len, mrd_buf *out)
{
    Meridian__BucketCreate *bc = meridian__bucket_create__unpack(NULL, len, blob);
    Meridian__BucketCreate r = MERIDIAN__BUCKET_CREATE__INIT;
    size_t n;
    int rc = 0;

    mrd_buf_reset(out);
    if (!bc)
        return MRD_ECORRUPT;
    if (bc->versioning_hlc || bc->tags_hlc) {
        r.bucket = bc->bucket;
        r.versioning = bc->versioning;
        r.versioning_hlc = bc->versioning_hlc;
        r.versioning_site = bc->versioning_site;
        r.tags = bc->tags;
        r.n_tags = bc->n_tags;
        r.tags_hlc = bc->tags_hlc;
        r.tags_site = bc->tags_site;
        n = meridian__bucket_create__get_packed_size(&r);
        if (mrd_buf_reserve(out, n + 1) < 0) {
            rc = -ENOMEM;
        } else {
            meridian__bucket_create__pack(&r, (uint8_t *)out->data);
            out->len = n;
        }
    }
    meridian__bucket_create__free_unpacked(bc, NULL);
    return rc;
}

int
engine_bucket_versioning(const void *blob, size_t len, int *out)
{
    Meridian__BucketCreate *bc = meridian__bucket_create__unpack(NULL, len, blob);

    if (!bc)
        return MRD_ECORRUPT;
    *out = bc->versioning_hlc ? (int)bc->versioning : ENGINE_VERSIONING_UNSET;
    meridian__bucket_create__free_unpacked(bc, NULL);
    return 0;
}

int
engine_bucket_tags_each(const void *blob, size_t len,
                        int (*fn)(void *ud, const char *key, const char *value), void *ud)
{
    Meridian__BucketCreate *bc = meridian__bucket_create__unpack(NULL, len, blob);
    int rc = 0;

    if (!bc)
        return MRD_ECORRUPT;
    if (!bc->tags_hlc || bc->n_tags == 0)
        rc = MRD_ENOTFOUND;
    for (size_t i = 0; rc == 0 && i < bc->n_tags; i++)
        rc = fn(ud, bc->tags[i]->key ? bc->tags[i]->key : "",
                bc->tags[i]->value ? bc->tags[i]->value : "");
    meridian__bucket_create__free_unpacked(bc, NULL);
    return rc;
}

/* ---- S3 version names ------------------------------------------------------ */

typedef struct null_walk {
    const char *key;
    char id[CONFLICT_VERSION_ID_MAX + 1];
    uint64_t hlc;
    int seen, found;
} null_walk;

int
engine__order_above(const char *id, uint64_t hlc, const char *than, uint64_t than_hlc)
{
    conflict_version a, b;

    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    a.id = (const uint8_t *)id;
    a.id_len = strlen(id);
    a.hlc = hlc;
    a.origin = engine__vid_origin(id);
    b.id = (const uint8_t *)than;
    b.id_len = strlen(than);
    b.hlc = than_hlc;
    b.origin = engine__vid_origin(than);
    return conflict_version_order(&a, &b) > 0;
}

static int
null_cb(void *user, const char *key, const store_version *v)
{
    null_walk *w = user;

    if (strcmp(key, w->key) != 0)
        return w->seen;
    w->seen = 1;
    if (!(v->flags & ENGINE_VF_NULL_VERSION) || (v->flags & ENGINE_VF_TOMBSTONE) ||
        ((v->flags & STORE_VF_CONFLICT) && !(v->flags & STORE_VF_NONCURRENT)))
        return 0; /* not null, removed, or a hidden conflict loser */
    if (!w->found || engine__order_above(v->version_id, v->hlc, w->id, w->hlc)) {
        snprintf(w->id, sizeof(w->id), "%s", v->version_id);
        w->hlc = v->hlc;
        w->found = 1;
    }
    return 0;
}

int
engine_version_lookup(engine *e, const char *bucket, const char *key, const char *version_id,
                      store_version_rec **out)
{
    store_version_rec *rec = NULL;
    int rc;

    if (version_id && strcmp(version_id, "null") == 0) {
        null_walk w = {.key = key};
        rc = store_index_list(e->st, bucket, key, NULL, NULL, STORE_LIST_VERSIONS, null_cb, &w);
        if (rc != 0)
            return rc;
        if (!w.found)
            return MRD_ENOTFOUND;
        version_id = w.id;
        rc = store_index_get(e->st, bucket, key, w.id, &rec);
    } else {
        rc = store_index_get(e->st, bucket, key, version_id, &rec);
    }
    if (rc == 0 && (store_version_rec_get(rec)->flags & ENGINE_VF_TOMBSTONE)) {
        store_version_rec_free(rec);
        rc = MRD_ENOTFOUND;
    }
    if (rc == 0)
        *out = rec;
    return rc;
}
