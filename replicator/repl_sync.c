/*
 * repl_sync.c - anti-entropy: index digests, comparing them, and rebuilding
 * records from the index for the versions that differ.
 *
 * A site that must be brought level without the WAL (its cursor fell past
 * retention, or a periodic check) is compared by state, not history:
 *
 *   1. the sender asks the peer for its digest (POST /repl/v1/digest); the
 *      peer walks its index and answers, per bucket, the XOR of a 16-byte
 *      hash of every version (bucket, key, version id, version vector, etag,
 *      delete marker) in each of L leaves, where a version's leaf is
 *      CRC32C(key) mod L and L is a power of two of at least 64 leaves per
 *      version it holds (256..65536), so most leaves hold at most one key;
 *   2. the sender computes the same digest over its own index (65536 leaves,
 *      folded to the peer's L: CRC mod 65536 mod L = CRC mod L) and marks the
 *      leaves that differ, and every leaf of a bucket the peer lacks;
 *   3. it walks its index again and sends every version in a differing leaf
 *      as an ordinary record (rebuilt from the index: the ObjectPut or
 *      DeleteMarker it was applied from, with the version vector and HLC it
 *      carries) over POST /repl/v1/resync, object data following as on
 *      /repl/v1/records. The peer applies them with the conflict decision
 *      (engine_resync_apply), so a version it already holds is a no-op and
 *      one it lacks is added: only differing keys travel, and only one way;
 *      the peer's own sender covers the other direction.
 * XOR digests are order-independent and cheap to fold, which is what makes
 * the comparison a digest exchange rather than a key listing. The cost of
 * the walk is one index pass per side; a two-level exchange (leaf digests,
 * then key hashes of the differing leaves) is the step for buckets of
 * millions of keys.
 */
#include "repl_int.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "conflict.h"
#include "engine.h"
#include "repl.pb-c.h"
#include "store.h"
#include "wal.h"
#include "wal.pb-c.h"

#define FULL_LEAVES 65536u

uint32_t
repl__leaf_of(const char *key, uint32_t leaves)
{
    return mrd_crc32c(0, key, strlen(key)) & (leaves - 1);
}

static void
version_hash(const char *bucket, const char *key, const store_version *v, uint8_t out[16])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    const char marker = (v->flags & STORE_VF_DELETE_MARKER) ? '1' : '0';
    const char nul = 0;

    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    EVP_DigestUpdate(ctx, bucket, strlen(bucket) + 1);
    EVP_DigestUpdate(ctx, key, strlen(key) + 1);
    EVP_DigestUpdate(ctx, v->version_id, strlen(v->version_id) + 1);
    EVP_DigestUpdate(ctx, v->vv, v->vv_len);
    EVP_DigestUpdate(ctx, &nul, 1);
    EVP_DigestUpdate(ctx, v->etag ? v->etag : "", v->etag ? strlen(v->etag) : 0);
    EVP_DigestUpdate(ctx, &nul, 1);
    EVP_DigestUpdate(ctx, &marker, 1);
    EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    memcpy(out, md, 16);
}

void
repl__digest_free(repl__bdigest *d, size_t n)
{
    for (size_t i = 0; d && i < n; i++) {
        free(d[i].digest);
        free(d[i].differ);
    }
    free(d);
}

typedef struct names {
    char (*v)[REPL_BUCKET_MAX];
    size_t n, cap;
} names;

static int
collect_bucket(void *user, const char *bucket, const void *blob, size_t len)
{
    names *nm = user;

    (void)blob;
    (void)len;
    if (nm->n == nm->cap) {
        size_t cap = nm->cap ? nm->cap * 2 : 16;
        void *v = realloc(nm->v, cap * sizeof(*nm->v));
        if (!v)
            return -ENOMEM;
        nm->v = v;
        nm->cap = cap;
    }
    snprintf(nm->v[nm->n++], REPL_BUCKET_MAX, "%s", bucket);
    return 0;
}

typedef struct dg_walk {
    repl__bdigest *d;
} dg_walk;

static int
digest_version(void *user, const char *key, const store_version *v)
{
    repl__bdigest *d = ((dg_walk *)user)->d;
    uint8_t h[16];
    uint8_t *leaf = d->digest + 16 * (size_t)repl__leaf_of(key, d->leaves);

    version_hash(d->bucket, key, v, h);
    for (int i = 0; i < 16; i++)
        leaf[i] ^= h[i];
    d->versions++;
    return 0;
}

int
repl__digest_all(store *st, repl__bdigest **out, size_t *n_out)
{
    names nm = {0};
    repl__bdigest *d = NULL;
    int rc = store_bucket_list(st, collect_bucket, &nm);

    if (rc == 0 && nm.n && !(d = calloc(nm.n, sizeof(*d))))
        rc = -ENOMEM;
    for (size_t i = 0; rc == 0 && i < nm.n; i++) {
        dg_walk w = {&d[i]};
        snprintf(d[i].bucket, sizeof(d[i].bucket), "%s", nm.v[i]);
        d[i].leaves = FULL_LEAVES;
        if (!(d[i].digest = calloc(FULL_LEAVES, 16))) {
            rc = -ENOMEM;
            break;
        }
        rc = store_index_list(st, nm.v[i], NULL, NULL, NULL, STORE_LIST_VERSIONS, digest_version,
                              &w);
    }
    free(nm.v);
    if (rc != 0) {
        repl__digest_free(d, nm.n);
        return rc;
    }
    *out = d;
    *n_out = nm.n;
    return 0;
}

/* Folds a FULL_LEAVES digest into leaves (a smaller power of two). */
static void
fold(const uint8_t *full, uint32_t leaves, uint8_t *out)
{
    memset(out, 0, (size_t)leaves * 16);
    for (uint32_t i = 0; i < FULL_LEAVES; i++)
        for (int k = 0; k < 16; k++)
            out[(size_t)(i & (leaves - 1)) * 16 + k] ^= full[(size_t)i * 16 + k];
}

static uint32_t
leaves_for(uint64_t versions)
{
    uint32_t l = 256;

    while (l < FULL_LEAVES && (uint64_t)l < versions * 64)
        l *= 2;
    return l;
}

int
repl__digest_encode(const repl__bdigest *d, size_t n, mrd_buf *out)
{
    Meridian__Repl__DigestResponse m = MERIDIAN__REPL__DIGEST_RESPONSE__INIT;
    Meridian__Repl__BucketDigest *bd = calloc(n ? n : 1, sizeof(*bd));
    Meridian__Repl__BucketDigest **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
    uint8_t **bufs = calloc(n ? n : 1, sizeof(*bufs));
    size_t sz;
    int rc = -ENOMEM;

    if (!bd || !ptrs || !bufs)
        goto out;
    for (size_t i = 0; i < n; i++) {
        uint32_t l = leaves_for(d[i].versions);
        if (!(bufs[i] = malloc((size_t)l * 16)))
            goto out;
        fold(d[i].digest, l, bufs[i]);
        meridian__repl__bucket_digest__init(&bd[i]);
        bd[i].bucket = (char *)d[i].bucket;
        bd[i].leaves = l;
        bd[i].digest.data = bufs[i];
        bd[i].digest.len = (size_t)l * 16;
        bd[i].versions = d[i].versions;
        ptrs[i] = &bd[i];
    }
    m.buckets = ptrs;
    m.n_buckets = n;
    sz = meridian__repl__digest_response__get_packed_size(&m);
    mrd_buf_reset(out);
    if (mrd_buf_reserve(out, sz + 1) < 0)
        goto out;
    meridian__repl__digest_response__pack(&m, (uint8_t *)out->data);
    out->len = sz;
    rc = 0;
out:
    for (size_t i = 0; bufs && i < n; i++)
        free(bufs[i]);
    free(bufs);
    free(bd);
    free(ptrs);
    return rc;
}

int
repl__digest_decode(const void *data, size_t len, repl__bdigest **out, size_t *n_out)
{
    Meridian__Repl__DigestResponse *m = meridian__repl__digest_response__unpack(NULL, len, data);
    repl__bdigest *d;
    int rc = 0;

    if (!m)
        return MRD_EPROTO;
    d = calloc(m->n_buckets ? m->n_buckets : 1, sizeof(*d));
    if (!d) {
        meridian__repl__digest_response__free_unpacked(m, NULL);
        return -ENOMEM;
    }
    for (size_t i = 0; rc == 0 && i < m->n_buckets; i++) {
        const Meridian__Repl__BucketDigest *b = m->buckets[i];
        uint32_t l = b->leaves;
        if (!b->bucket || strlen(b->bucket) >= REPL_BUCKET_MAX || l < 256 || l > FULL_LEAVES ||
            (l & (l - 1)) || b->digest.len != (size_t)l * 16) {
            rc = MRD_EPROTO;
            break;
        }
        snprintf(d[i].bucket, sizeof(d[i].bucket), "%s", b->bucket);
        d[i].leaves = l;
        d[i].versions = b->versions;
        if (!(d[i].digest = malloc(b->digest.len))) {
            rc = -ENOMEM;
            break;
        }
        memcpy(d[i].digest, b->digest.data, b->digest.len);
    }
    if (rc != 0) {
        repl__digest_free(d, m->n_buckets);
    } else {
        *out = d;
        *n_out = m->n_buckets;
    }
    meridian__repl__digest_response__free_unpacked(m, NULL);
    return rc;
}

int
repl__digest_diff(repl__bdigest *mine, size_t n_mine, const repl__bdigest *theirs, size_t n_theirs,
                  uint64_t *differing_leaves)
{
    uint64_t total = 0;

    for (size_t i = 0; i < n_mine; i++) {
        repl__bdigest *m = &mine[i];
        const repl__bdigest *t = NULL;
        uint8_t *folded;

        for (size_t k = 0; k < n_theirs && !t; k++)
            if (strcmp(theirs[k].bucket, m->bucket) == 0)
                t = &theirs[k];
        m->cmp_leaves = t ? t->leaves : 256;
        free(m->differ);
        if (!(m->differ = calloc(m->cmp_leaves / 8, 1)))
            return -ENOMEM;
        m->missing = !t;
        m->peer_empty = !t || t->versions == 0;
        if (!t) {
            memset(m->differ, 0xff, m->cmp_leaves / 8);
            total += m->cmp_leaves;
            continue;
        }
        if (!(folded = malloc((size_t)t->leaves * 16)))
            return -ENOMEM;
        fold(m->digest, t->leaves, folded);
        for (uint32_t l = 0; l < t->leaves; l++) {
            if (memcmp(folded + (size_t)l * 16, t->digest + (size_t)l * 16, 16) != 0) {
                m->differ[l / 8] |= (uint8_t)(1u << (l % 8));
                total++;
            }
        }
        free(folded);
    }
    *differing_leaves = total;
    return 0;
}

uint64_t
repl__digest_estimate(const repl__bdigest *mine, size_t n)
{
    double total = 0;

    /* The walk sends every version of a differing leaf. A bucket the peer
     * lacks or holds empty: all of ours (exact). Otherwise versions fall in
     * leaves by CRC32C of the key, about Poisson with lambda = versions /
     * leaves, and a differing leaf holds at least one of ours or theirs:
     * lambda / (1 - e^-lambda) each on average. */
    for (size_t i = 0; i < n; i++) {
        const repl__bdigest *m = &mine[i];
        uint64_t differ = 0;
        double lambda;

        if (!m->differ || !m->cmp_leaves)
            continue;
        if (m->peer_empty) {
            total += (double)m->versions;
            continue;
        }
        for (uint32_t l = 0; l < m->cmp_leaves / 8; l++)
            differ += (uint64_t)__builtin_popcount(m->differ[l]);
        lambda = (double)m->versions / (double)m->cmp_leaves;
        if (lambda > 0)
            total += (double)differ * lambda / (1.0 - exp(-lambda));
    }
    return (uint64_t)(total + 0.5);
}

/* ---- rebuilding records from the index ------------------------------------ */

typedef struct kvs {
    Meridian__KeyValue kv[64];
    Meridian__KeyValue *ptrs[64];
    size_t n;
} kvs;

static int
meta_kv(void *ud, const char *key, const char *value)
{
    kvs *k = ud;

    if (k->n == 64)
        return 1;
    meridian__key_value__init(&k->kv[k->n]);
    k->kv[k->n].key = (char *)key;
    k->kv[k->n].value = (char *)value;
    k->ptrs[k->n] = &k->kv[k->n];
    k->n++;
    return 0;
}

int
repl__version_record(const char *bucket, const char *key, const store_version *v, repl__rec *r,
                     void **layout, size_t *layout_len)
{
    Meridian__WalRecord rec = MERIDIAN__WAL_RECORD__INIT;
    Meridian__ObjectPut op = MERIDIAN__OBJECT_PUT__INIT;
    Meridian__DeleteMarker dm = MERIDIAN__DELETE_MARKER__INIT;
    Meridian__VersionVector vm;
    Meridian__VvEntry ents[VV_MAX_SITES], *ptrs[VV_MAX_SITES];
    store_layout_info li;
    vv vec;
    kvs meta;
    size_t n;
    uint8_t *buf;

    memset(r, 0, sizeof(*r));
    *layout = NULL;
    *layout_len = 0;
    if (vv_decode(v->vv, v->vv_len, &vec) != 0)
        return MRD_ECORRUPT;
    vv_to_proto(&vec, &vm, ents, ptrs);
    rec.format = WAL_RECORD_FORMAT;
    if (v->flags & STORE_VF_DELETE_MARKER) {
        dm.bucket = (char *)bucket;
        dm.key = (char *)key;
        dm.version_id = (char *)v->version_id;
        dm.vv = &vm;
        dm.hlc = v->hlc;
        rec.body_case = MERIDIAN__WAL_RECORD__BODY_DELETE_MARKER;
        rec.delete_marker = &dm;
        r->type = WAL_REC_DELETE_MARKER;
    } else {
        meta.n = 0;
        if (v->user_meta_len &&
            engine_meta_each(v->user_meta, v->user_meta_len, meta_kv, &meta) < 0)
            return MRD_ECORRUPT;
        if (store_layout_describe(v->layout, v->layout_len, &li) != 0)
            return MRD_ECORRUPT;
        op.bucket = (char *)bucket;
        op.key = (char *)key;
        op.version_id = (char *)v->version_id;
        op.vv = &vm;
        op.hlc = v->hlc;
        op.etag = (char *)(v->etag ? v->etag : "");
        op.size = v->size;
        op.content_type = (char *)(v->content_type ? v->content_type : "");
        op.user_meta = meta.ptrs;
        op.n_user_meta = meta.n;
        if (li.is_inline) {
            op.layout.data = (uint8_t *)v->layout;
            op.layout.len = v->layout_len;
        } else {
            if (!(*layout = malloc(v->layout_len)))
                return -ENOMEM;
            memcpy(*layout, v->layout, v->layout_len);
            *layout_len = v->layout_len;
            r->data_size = v->size;
        }
        rec.body_case = MERIDIAN__WAL_RECORD__BODY_OBJECT_PUT;
        rec.object_put = &op;
        r->type = WAL_REC_OBJECT_PUT;
    }
    n = meridian__wal_record__get_packed_size(&rec);
    if (!(buf = malloc(n ? n : 1))) {
        free(*layout);
        *layout = NULL;
        return -ENOMEM;
    }
    meridian__wal_record__pack(&rec, buf);
    r->payload = buf;
    r->len = n;
    return 0;
}

int
repl__bucket_record(const char *bucket, const void *blob, size_t len, repl__rec *r)
{
    Meridian__WalRecord rec = MERIDIAN__WAL_RECORD__INIT;
    Meridian__BucketCreate *bc = meridian__bucket_create__unpack(NULL, len, blob);
    size_t n;
    uint8_t *buf;

    memset(r, 0, sizeof(*r));
    if (!bc)
        return MRD_ECORRUPT;
    if (!bc->bucket || strcmp(bc->bucket, bucket) != 0) {
        meridian__bucket_create__free_unpacked(bc, NULL);
        return MRD_ECORRUPT;
    }
    rec.format = WAL_RECORD_FORMAT;
    rec.body_case = MERIDIAN__WAL_RECORD__BODY_BUCKET_CREATE;
    rec.bucket_create = bc;
    n = meridian__wal_record__get_packed_size(&rec);
    buf = malloc(n ? n : 1);
    if (buf)
        meridian__wal_record__pack(&rec, buf);
    meridian__bucket_create__free_unpacked(bc, NULL);
    if (!buf)
        return -ENOMEM;
    r->type = WAL_REC_BUCKET_CREATE;
    r->payload = buf;
    r->len = n;
    return 0;
}
