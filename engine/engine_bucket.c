/*
 * engine_bucket.c - a bucket's index blob as two kinds of register, and
 * S3's names for versions.
 *
 * A bucket's blob in the index is a packed BucketCreate (proto/wal.proto):
 * its existence register (bucket, hlc, owner, region: the winning create,
 * settled by (hlc, packed create bytes) as before) and its configuration
 * registers, versioning, tags and the canned ACL, each with the (hlc, site)
 * that set it (one table, regs[], describes them: merge, anti-entropy bytes
 * and the reading of a BUCKET_CONFIG record treat every register alike).
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
#include <stddef.h>
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

/* ---- configuration registers ------------------------------------------- */

/* One configuration register of the blob: where its (hlc, site) stamp lives
 * and how its value is copied. Every register merges, survives the winning
 * create and enters the anti-entropy bytes the same way, through this table. */
typedef struct reg_desc {
    size_t hlc_off, site_off;
    void (*copy_value)(Meridian__BucketCreate *dst, const Meridian__BucketCreate *src);
} reg_desc;

static void
copy_versioning(Meridian__BucketCreate *dst, const Meridian__BucketCreate *src)
{
    dst->versioning = src->versioning;
}

static void
copy_tags(Meridian__BucketCreate *dst, const Meridian__BucketCreate *src)
{
    dst->tags = src->tags; /* borrowed: dst is packed before src is freed */
    dst->n_tags = src->n_tags;
}

static void
copy_acl(Meridian__BucketCreate *dst, const Meridian__BucketCreate *src)
{
    dst->acl = src->acl;
}

#define REG(name)                                                                                  \
    {                                                                                              \
        offsetof(Meridian__BucketCreate, name##_hlc),                                              \
            offsetof(Meridian__BucketCreate, name##_site), copy_##name                             \
    }
static const reg_desc regs[] = {REG(versioning), REG(tags), REG(acl)};
#undef REG
#define N_REGS (sizeof(regs) / sizeof(regs[0]))

static uint64_t
reg_hlc(const reg_desc *d, const Meridian__BucketCreate *b)
{
    return *(const uint64_t *)(const void *)((const char *)b + d->hlc_off);
}

static uint32_t
reg_site(const reg_desc *d, const Meridian__BucketCreate *b)
{
    return *(const uint32_t *)(const void *)((const char *)b + d->site_off);
}

/* Copies register d (value and stamp) from src to dst. */
static void
reg_take(const reg_desc *d, Meridian__BucketCreate *dst, const Meridian__BucketCreate *src)
{
    d->copy_value(dst, src);
    *(uint64_t *)(void *)((char *)dst + d->hlc_off) = reg_hlc(d, src);
    *(uint32_t *)(void *)((char *)dst + d->site_off) = reg_site(d, src);
}

/* The register d of a and b (either may be NULL) with the larger (hlc,
 * site), NULL when neither was ever set. */
static const Meridian__BucketCreate *
reg_winner(const reg_desc *d, const Meridian__BucketCreate *a, const Meridian__BucketCreate *b)
{
    const Meridian__BucketCreate *w = a && reg_hlc(d, a) ? a : NULL;

    if (b && reg_hlc(d, b) &&
        (!w || reg_hlc(d, b) > reg_hlc(d, w) ||
         (reg_hlc(d, b) == reg_hlc(d, w) && reg_site(d, b) > reg_site(d, w))))
        w = b;
    return w;
}

int
engine__bucket_merge(const void *cur_blob, size_t cur_len, const Meridian__BucketCreate *inc,
                     int inc_is_create, uint8_t **out, size_t *out_len)
{
    Meridian__BucketCreate *cur = NULL, r = MERIDIAN__BUCKET_CREATE__INIT;
    const Meridian__BucketCreate *create, *w;
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
    r.bucket = create->bucket;
    r.hlc = create->hlc;
    r.owner = create->owner;
    r.region = create->region;
    /* each register: the larger (hlc, site) of the stored and the incoming,
     * unless it configured an earlier incarnation of the bucket */
    for (size_t i = 0; i < N_REGS; i++)
        if ((w = reg_winner(&regs[i], cur, inc)) && reg_hlc(&regs[i], w) >= create->hlc)
            reg_take(&regs[i], &r, w);
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

void
engine__bucket_config_as_create(const Meridian__BucketConfig *cfg, Meridian__BucketCreate *inc)
{
    Meridian__BucketCreate v = MERIDIAN__BUCKET_CREATE__INIT;
    const int has[N_REGS] = {cfg->has_versioning, cfg->has_tags, cfg->has_acl};

    /* the record's values in BucketCreate's shape, each stamped (hlc, site) */
    v.versioning = cfg->versioning;
    v.tags = cfg->tags;
    v.n_tags = cfg->n_tags;
    v.acl = cfg->acl;
    for (size_t i = 0; i < N_REGS; i++) {
        *(uint64_t *)(void *)((char *)&v + regs[i].hlc_off) = cfg->hlc;
        *(uint32_t *)(void *)((char *)&v + regs[i].site_off) = cfg->site;
    }
    inc->bucket = cfg->bucket;
    for (size_t i = 0; i < N_REGS; i++)
        if (has[i])
            reg_take(&regs[i], inc, &v);
}

int
engine_bucket_config_bytes(const void *blob, size_t len, mrd_buf *out)
{
    Meridian__BucketCreate *bc = meridian__bucket_create__unpack(NULL, len, blob);
    Meridian__BucketCreate r = MERIDIAN__BUCKET_CREATE__INIT;
    size_t n;
    int rc = 0, any = 0;

    mrd_buf_reset(out);
    if (!bc)
        return MRD_ECORRUPT;
    for (size_t i = 0; i < N_REGS; i++) {
        if (reg_hlc(&regs[i], bc)) {
            reg_take(&regs[i], &r, bc);
            any = 1;
        }
    }
    if (any) {
        r.bucket = bc->bucket;
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
engine_bucket_acl(const void *blob, size_t len, int *out)
{
    Meridian__BucketCreate *bc = meridian__bucket_create__unpack(NULL, len, blob);

    if (!bc)
        return MRD_ECORRUPT;
    *out = bc->acl_hlc && bc->acl == MERIDIAN__ACL__ACL_PUBLIC_READ ? ENGINE_ACL_PUBLIC_READ
                                                                    : ENGINE_ACL_PRIVATE;
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
