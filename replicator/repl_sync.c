/*
 * repl_sync.c - anti-entropy: index digests, comparing them, and rebuilding
 * records from the index for the versions that differ.
 *
 * A site that must be brought level without the WAL (its cursor fell past
 * retention, or a periodic check) is compared by state, not history. Every
 * version hashes to 16 bytes (bucket, key, version id, version vector, etag,
 * delete marker; in version 2 also the tag stamp and set) and falls in one
 * of 65536 leaves of its bucket by CRC32C(key); a leaf is the XOR of its
 * versions' hashes, so equal sets give equal leaves in any order.
 *
 * Version 2 (tree digests, PROTOCOL.md section 7): above the leaves sits a
 * 16-ary tree (levels 0..3, each node the XOR of its children). The sender
 * gets the peer's roots, computes its own trees, and asks only for the
 * children of nodes that differ, level by level (repl__tree_roots_diff,
 * repl__tree_request, repl__tree_children_diff): k differing keys cost about
 * k x 4 x 256 bytes of digest whatever the bucket's size. It then asks the
 * peer to push what it holds in the differing leaves (repl__tree_push_leaves
 * -> repl__dreq_bitmaps at the peer), which covers the other direction.
 *
 * Version 3 (summaries): before walking, a pass (a push too) asks the peer
 * what it holds in the differing leaves (repl__summaries_encode there,
 * repl__peerset_decode here), and the walk leaves out each version the
 * peer holds or would drop on arrival (repl__peerset_noop, vsum_noop): a
 * leaf shared with unchanged keys, an overwritten or deleted key, or an old
 * tag set then costs nothing on the wire. The summaries are advisory: a
 * missing or partial answer only means more is sent, never less. They come
 * in pages (the answerer's page size): a page lists buckets in the request's
 * order and each bucket in key order, so it speaks for everything up to its
 * last version (repl__peerset_covers); the walk asks for the next page from
 * where it stands (DigestRequest.summaries_from_*), and holds one at a time.
 *
 * Version 1 (flat, for older peers): the peer answers every bucket's leaves
 * folded to L = 64 per version (256..65536); the sender folds its own to L
 * and compares (repl__digest_diff).
 *
 * Either way the sender then walks its index and sends every version in a
 * differing leaf as an ordinary record (rebuilt from the index: the
 * ObjectPut or DeleteMarker it was applied from, preceded by an ObjectTags
 * record when it was tagged after its put) over POST /repl/v1/resync. The
 * peer applies them with the conflict decision (engine_resync_apply), so a
 * version it already holds is a no-op and one it lacks is added.
 *
 * Invariants: the tree of a bucket is built from exactly its 65536 leaves
 * (FULL_LEAVES); every node index a peer sends is checked against its
 * level's width before use; a children request names at most
 * REPL_TREE_ASK_MAX nodes.
 *
 * A bucket's configuration registers (versioning, tags) are one more
 * entry of its digest (digest_config, in the leaf of the empty key); when
 * that leaf differs the bucket record, which carries them, is sent as for a
 * missing bucket, and the receiver merges it register by register. A
 * version removed by id is held as a tombstone and sent as its
 * OBJECT_DELETE, so a peer that missed the removal drops the version, and a
 * peer's copy of it is dropped here.
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

/* Packs message m into out (replacing its contents). -ENOMEM. */
static int
pb_pack(const ProtobufCMessage *m, mrd_buf *out)
{
    size_t sz = protobuf_c_message_get_packed_size(m);

    mrd_buf_reset(out);
    if (mrd_buf_reserve(out, sz + 1) < 0)
        return -ENOMEM;
    protobuf_c_message_pack(m, (uint8_t *)out->data);
    out->len = sz;
    return 0;
}

uint32_t
repl__leaf_of(const char *key, uint32_t leaves)
{
    return mrd_crc32c(0, key, strlen(key)) & (leaves - 1);
}

/* The tag stamp and set of a version (user metadata entries). */
typedef struct tag_meta {
    const char *stamp, *tagging;
} tag_meta;

static int
tag_meta_of(void *ud, const char *key, const char *value)
{
    tag_meta *t = ud;

    if (strcmp(key, ENGINE_META_TAGS_HLC) == 0)
        t->stamp = value;
    else if (strcmp(key, ENGINE_META_TAGGING) == 0)
        t->tagging = value;
    return 0;
}

/* Hash version 1: bucket, key, version id, vector, etag, marker. Version 2
 * (tree digests) adds the tag stamp and tag set, so a tag change that never
 * arrived makes the leaf differ. */
static void
version_hash(const char *bucket, const char *key, const store_version *v, int hashv,
             uint8_t out[16])
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
    if (hashv >= 2) {
        tag_meta t = {NULL, NULL};
        if (v->user_meta_len)
            engine_meta_each(v->user_meta, v->user_meta_len, tag_meta_of, &t);
        if (t.stamp) {
            EVP_DigestUpdate(ctx, &nul, 1);
            EVP_DigestUpdate(ctx, t.stamp, strlen(t.stamp) + 1);
            EVP_DigestUpdate(ctx, t.tagging ? t.tagging : "", t.tagging ? strlen(t.tagging) : 0);
        }
    }
    EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    memcpy(out, md, 16);
}

void
repl__digest_free(repl__bdigest *d, size_t n)
{
    for (size_t i = 0; d && i < n; i++) {
        free(d[i].digest);
        free(d[i].tree);
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
    int hashv;
} dg_walk;

static int
digest_version(void *user, const char *key, const store_version *v)
{
    repl__bdigest *d = ((dg_walk *)user)->d;
    uint8_t h[16];
    uint8_t *leaf = d->digest + 16 * (size_t)repl__leaf_of(key, d->leaves);

    version_hash(d->bucket, key, v, ((dg_walk *)user)->hashv, h);
    for (int i = 0; i < 16; i++)
        leaf[i] ^= h[i];
    d->versions++;
    return 0;
}

/* A configured bucket's registers (versioning, tags) count as one more
 * entry of its digest, in the leaf of the empty key (no object has it), so
 * a pass that finds that leaf different sends the bucket record too. */
static int
digest_config(store *st, repl__bdigest *d)
{
    void *blob = NULL;
    size_t len = 0;
    mrd_buf cfg = {0};
    unsigned char md[32];
    unsigned int mdlen = 0;
    uint8_t *leaf = d->digest + 16 * (size_t)repl__leaf_of("", d->leaves);
    int rc = store_bucket_get(st, d->bucket, &blob, &len);

    if (rc == 0)
        rc = engine_bucket_config_bytes(blob, len, &cfg);
    if (rc == 0 && cfg.len) {
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
        EVP_DigestUpdate(ctx, "bucket-config", 14);
        EVP_DigestUpdate(ctx, cfg.data, cfg.len);
        EVP_DigestFinal_ex(ctx, md, &mdlen);
        EVP_MD_CTX_free(ctx);
        for (int i = 0; i < 16; i++)
            leaf[i] ^= md[i];
    }
    free(blob);
    mrd_buf_free(&cfg);
    return rc == MRD_ENOTFOUND ? 0 : rc;
}

int
repl__config_differs(const repl__bdigest *d)
{
    uint32_t leaf;

    if (!d->differ || !d->cmp_leaves)
        return 0;
    leaf = repl__leaf_of("", d->cmp_leaves);
    return (d->differ[leaf / 8] >> (leaf % 8)) & 1;
}

/* ---- the tree (version 2) ------------------------------------------------ */

/* Offsets of levels 0..3 in repl__bdigest.tree (level 4 is .digest). */
static const uint32_t tree_off[REPL_TREE_LEVELS] = {0, 1, 17, 273};
#define TREE_NODES 4369u /* 1 + 16 + 256 + 4096 */

static uint32_t
level_width(uint32_t level)
{
    return 1u << (4 * level);
}

const uint8_t *
repl__tree_node(const repl__bdigest *d, uint32_t level, uint32_t idx)
{
    if (level >= REPL_TREE_LEVELS)
        return d->digest + (size_t)idx * 16;
    return d->tree + ((size_t)tree_off[level] + idx) * 16;
}

/* Levels 3 up to 0 from the leaves: each node the XOR of its 16 children. */
int
repl__tree_build(repl__bdigest *d)
{
    if (!(d->tree = calloc(TREE_NODES, 16)))
        return -ENOMEM;
    for (int level = REPL_TREE_LEVELS - 1; level >= 0; level--) {
        for (uint32_t i = 0; i < level_width((uint32_t)level); i++) {
            uint8_t *n = d->tree + ((size_t)tree_off[level] + i) * 16;
            for (uint32_t c = 0; c < 16; c++) {
                const uint8_t *ch = repl__tree_node(d, (uint32_t)level + 1, i * 16 + c);
                for (int k = 0; k < 16; k++)
                    n[k] ^= ch[k];
            }
        }
    }
    return 0;
}

int
repl__digest_all(store *st, int hashv, repl__bdigest **out, size_t *n_out)
{
    names nm = {0};
    repl__bdigest *d = NULL;
    int rc = store_bucket_list(st, collect_bucket, &nm);

    if (rc == 0 && nm.n && !(d = calloc(nm.n, sizeof(*d))))
        rc = -ENOMEM;
    for (size_t i = 0; rc == 0 && i < nm.n; i++) {
        dg_walk w = {&d[i], hashv};
        snprintf(d[i].bucket, sizeof(d[i].bucket), "%s", nm.v[i]);
        d[i].leaves = FULL_LEAVES;
        if (!(d[i].digest = calloc(FULL_LEAVES, 16))) {
            rc = -ENOMEM;
            break;
        }
        rc = store_index_list(st, nm.v[i], NULL, NULL, NULL, STORE_LIST_VERSIONS, digest_version,
                              &w);
        if (rc == 0)
            rc = digest_config(st, &d[i]);
        if (rc == 0 && hashv >= 2)
            rc = repl__tree_build(&d[i]);
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
    rc = pb_pack(&m.base, out);
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
    Meridian__ObjectDelete od = MERIDIAN__OBJECT_DELETE__INIT;
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
    if (v->flags & ENGINE_VF_TOMBSTONE) {
        /* a version removed by id: the removal travels, never the version */
        od.bucket = (char *)bucket;
        od.key = (char *)key;
        od.version_id = (char *)v->version_id;
        od.vv = &vm;
        od.hlc = v->hlc;
        rec.body_case = MERIDIAN__WAL_RECORD__BODY_OBJECT_DELETE;
        rec.object_delete = &od;
        r->type = WAL_REC_OBJECT_DELETE;
    } else if (v->flags & STORE_VF_DELETE_MARKER) {
        dm.bucket = (char *)bucket;
        dm.key = (char *)key;
        dm.version_id = (char *)v->version_id;
        dm.vv = &vm;
        dm.hlc = v->hlc;
        dm.versioned = !(v->flags & ENGINE_VF_NULL_VERSION);
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
        op.versioned = !(v->flags & ENGINE_VF_NULL_VERSION);
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
repl__tags_record(const char *bucket, const char *key, const store_version *v, repl__rec *r)
{
    Meridian__WalRecord rec = MERIDIAN__WAL_RECORD__INIT;
    Meridian__ObjectTags ot = MERIDIAN__OBJECT_TAGS__INIT;
    tag_meta t = {NULL, NULL};
    unsigned long long hlc = 0;
    unsigned site = 0;
    size_t n;
    uint8_t *buf;

    memset(r, 0, sizeof(*r));
    if ((v->flags & STORE_VF_DELETE_MARKER) || !v->user_meta_len)
        return 0;
    engine_meta_each(v->user_meta, v->user_meta_len, tag_meta_of, &t);
    if (!t.stamp || sscanf(t.stamp, "%llu.%u", &hlc, &site) != 2)
        return 0; /* never tagged after its put */
    ot.bucket = (char *)bucket;
    ot.key = (char *)key;
    ot.version_id = (char *)v->version_id;
    ot.hlc = hlc;
    ot.site = site;
    ot.tagging = (char *)(t.tagging ? t.tagging : "");
    rec.format = WAL_RECORD_FORMAT;
    rec.body_case = MERIDIAN__WAL_RECORD__BODY_OBJECT_TAGS;
    rec.object_tags = &ot;
    n = meridian__wal_record__get_packed_size(&rec);
    if (!(buf = malloc(n ? n : 1)))
        return -ENOMEM;
    meridian__wal_record__pack(&rec, buf);
    r->type = WAL_REC_OBJECT_TAGS;
    r->payload = buf;
    r->len = n;
    return 1;
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

/* ---- tree digests: messages ------------------------------------------------ */

static int
level_ok(uint32_t level, uint32_t node)
{
    return level <= REPL_TREE_LEAF && node < level_width(level);
}

void
repl__dreq_free(repl__dreq *q)
{
    for (size_t i = 0; q && i < q->n; i++)
        free(q->r[i].nodes);
    if (q) {
        free(q->r);
        q->r = NULL;
        q->n = 0;
    }
}

int
repl__dreq_add(repl__dreq *q, const char *bucket, uint32_t level, uint32_t node)
{
    repl__drange *r = q->n ? &q->r[q->n - 1] : NULL;
    uint32_t *nodes;

    if (!r || r->level != level || strcmp(r->bucket, bucket) != 0) {
        repl__drange *v = realloc(q->r, (q->n + 1) * sizeof(*v));
        if (!v)
            return -ENOMEM;
        q->r = v;
        r = &q->r[q->n++];
        memset(r, 0, sizeof(*r));
        snprintf(r->bucket, sizeof(r->bucket), "%s", bucket);
        r->level = level;
    }
    if ((r->n & (r->n + 1)) == 0 || r->n == 0) { /* grow at 0, 1, 3, 7, ... */
        if (!(nodes = realloc(r->nodes, (2 * r->n + 2) * sizeof(*nodes))))
            return -ENOMEM;
        r->nodes = nodes;
    }
    r->nodes[r->n++] = node;
    return 0;
}

int
repl__dreq_encode(const repl__dreq *q, mrd_buf *out)
{
    Meridian__Repl__DigestRequest m = MERIDIAN__REPL__DIGEST_REQUEST__INIT;
    Meridian__Repl__DigestRange *rs = calloc(q->n ? q->n : 1, sizeof(*rs));
    Meridian__Repl__DigestRange **ptrs = calloc(q->n ? q->n : 1, sizeof(*ptrs));
    int rc = -ENOMEM;

    if (!rs || !ptrs)
        goto out;
    for (size_t i = 0; i < q->n; i++) {
        meridian__repl__digest_range__init(&rs[i]);
        rs[i].bucket = (char *)q->r[i].bucket;
        rs[i].level = q->r[i].level;
        rs[i].nodes = q->r[i].nodes;
        rs[i].n_nodes = q->r[i].n;
        ptrs[i] = &rs[i];
    }
    m.tree = (uint32_t)q->tree;
    m.push = q->push != 0;
    m.summaries = q->summaries != 0;
    if (q->summaries && q->from_bucket[0]) {
        m.summaries_from_bucket = (char *)q->from_bucket;
        m.summaries_from_key = (char *)q->from_key;
        if (q->from_key[0] && q->from_vid[0])
            m.summaries_from_version = (char *)q->from_vid;
    }
    m.ranges = ptrs;
    m.n_ranges = q->n;
    rc = pb_pack(&m.base, out);
out:
    free(rs);
    free(ptrs);
    return rc;
}

int
repl__dreq_decode(const void *data, size_t len, repl__dreq *out)
{
    Meridian__Repl__DigestRequest *m = meridian__repl__digest_request__unpack(NULL, len, data);
    size_t total = 0;
    int rc = 0;

    memset(out, 0, sizeof(*out));
    if (!m)
        return MRD_EPROTO;
    out->tree = m->tree == 1;
    out->push = m->push != 0;
    out->summaries = m->summaries != 0 && !out->push;
    if (out->summaries && m->summaries_from_bucket && m->summaries_from_bucket[0]) {
        const char *k = m->summaries_from_key ? m->summaries_from_key : "";
        const char *v = k[0] && m->summaries_from_version ? m->summaries_from_version : "";
        if (strlen(m->summaries_from_bucket) >= REPL_BUCKET_MAX || strlen(k) >= REPL_KEY_MAX ||
            strlen(v) >= REPL_VID_MAX)
            rc = MRD_EPROTO;
        snprintf(out->from_bucket, sizeof(out->from_bucket), "%s", m->summaries_from_bucket);
        snprintf(out->from_key, sizeof(out->from_key), "%s", k);
        snprintf(out->from_vid, sizeof(out->from_vid), "%s", v);
    }
    for (size_t i = 0; rc == 0 && out->tree && i < m->n_ranges; i++) {
        const Meridian__Repl__DigestRange *r = m->ranges[i];
        int subtrees = out->push || out->summaries; /* leaves allowed, no count limit */
        if (!r->bucket || !r->bucket[0] || strlen(r->bucket) >= REPL_BUCKET_MAX ||
            r->level > (subtrees ? REPL_TREE_LEAF : REPL_TREE_LEAF - 1)) {
            rc = MRD_EPROTO;
            break;
        }
        total += r->n_nodes;
        if (!subtrees && total > REPL_TREE_ASK_MAX) {
            rc = MRD_EPROTO;
            break;
        }
        for (size_t k = 0; rc == 0 && k < r->n_nodes; k++)
            rc = !level_ok(r->level, r->nodes[k])
                     ? MRD_EPROTO
                     : repl__dreq_add(out, r->bucket, r->level, r->nodes[k]);
    }
    meridian__repl__digest_request__free_unpacked(m, NULL);
    if (rc != 0)
        repl__dreq_free(out);
    return rc;
}

static const repl__bdigest *
find_bucket(const repl__bdigest *d, size_t n, const char *bucket)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(d[i].bucket, bucket) == 0)
            return &d[i];
    return NULL;
}

/* Packs a version 2 DigestResponse of nodes t[0..n). */
static int
tnodes_pack(const repl__tnodes *t, size_t n, mrd_buf *out)
{
    Meridian__Repl__DigestResponse m = MERIDIAN__REPL__DIGEST_RESPONSE__INIT;
    Meridian__Repl__TreeNodes *ns = calloc(n ? n : 1, sizeof(*ns));
    Meridian__Repl__TreeNodes **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
    int rc = -ENOMEM;

    if (!ns || !ptrs)
        goto out;
    for (size_t i = 0; i < n; i++) {
        meridian__repl__tree_nodes__init(&ns[i]);
        ns[i].bucket = (char *)t[i].bucket;
        ns[i].level = t[i].level;
        ns[i].versions = t[i].versions;
        ns[i].missing = t[i].missing != 0;
        ns[i].parents = t[i].parents;
        ns[i].n_parents = t[i].n_parents;
        ns[i].hashes.data = t[i].hashes;
        ns[i].hashes.len = t[i].missing ? 0 : t[i].level ? t[i].n_parents * 256 : 16;
        ptrs[i] = &ns[i];
    }
    m.tree = 1;
    m.nodes = ptrs;
    m.n_nodes = n;
    rc = pb_pack(&m.base, out);
out:
    free(ns);
    free(ptrs);
    return rc;
}

int
repl__tree_roots_encode(const repl__bdigest *d, size_t n, mrd_buf *out)
{
    repl__tnodes *t = calloc(n ? n : 1, sizeof(*t));
    int rc;

    if (!t)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        snprintf(t[i].bucket, sizeof(t[i].bucket), "%s", d[i].bucket);
        t[i].versions = d[i].versions;
        t[i].hashes = (uint8_t *)repl__tree_node(&d[i], 0, 0);
    }
    rc = tnodes_pack(t, n, out);
    free(t);
    return rc;
}

int
repl__tree_children_encode(const repl__bdigest *d, size_t n, const repl__dreq *q, mrd_buf *out)
{
    repl__tnodes *t = calloc(q->n ? q->n : 1, sizeof(*t));
    int rc = 0;

    if (!t)
        return -ENOMEM;
    for (size_t i = 0; rc == 0 && i < q->n; i++) {
        const repl__drange *r = &q->r[i];
        const repl__bdigest *b = find_bucket(d, n, r->bucket);
        snprintf(t[i].bucket, sizeof(t[i].bucket), "%s", r->bucket);
        t[i].level = r->level + 1;
        if (!b || !b->tree) {
            t[i].missing = 1;
            continue;
        }
        t[i].versions = b->versions;
        t[i].parents = r->nodes;
        t[i].n_parents = r->n;
        if (!(t[i].hashes = malloc(r->n * 256 + 1))) {
            rc = -ENOMEM;
            break;
        }
        for (size_t k = 0; k < r->n; k++)
            for (uint32_t c = 0; c < 16; c++)
                memcpy(t[i].hashes + k * 256 + c * 16,
                       repl__tree_node(b, r->level + 1, r->nodes[k] * 16 + c), 16);
    }
    if (rc == 0)
        rc = tnodes_pack(t, q->n, out);
    for (size_t i = 0; i < q->n; i++)
        free(t[i].hashes);
    free(t);
    return rc;
}

void
repl__tnodes_free(repl__tnodes *t, size_t n)
{
    for (size_t i = 0; t && i < n; i++) {
        free(t[i].parents);
        free(t[i].hashes);
    }
    free(t);
}

int
repl__tree_decode(const void *data, size_t len, int *is_tree, repl__tnodes **out, size_t *n_out)
{
    Meridian__Repl__DigestResponse *m = meridian__repl__digest_response__unpack(NULL, len, data);
    repl__tnodes *t;
    int rc = 0;

    if (!m)
        return MRD_EPROTO;
    *is_tree = m->tree == 1;
    if (!*is_tree) {
        meridian__repl__digest_response__free_unpacked(m, NULL);
        return 0;
    }
    if (!(t = calloc(m->n_nodes ? m->n_nodes : 1, sizeof(*t)))) {
        meridian__repl__digest_response__free_unpacked(m, NULL);
        return -ENOMEM;
    }
    for (size_t i = 0; rc == 0 && i < m->n_nodes; i++) {
        const Meridian__Repl__TreeNodes *x = m->nodes[i];
        size_t want = x->missing ? 0 : x->level ? x->n_parents * 256 : 16;
        if (!x->bucket || strlen(x->bucket) >= REPL_BUCKET_MAX || x->level > REPL_TREE_LEAF ||
            (x->level == 0 && x->n_parents) || x->hashes.len != want) {
            rc = MRD_EPROTO;
            break;
        }
        for (size_t k = 0; k < x->n_parents; k++)
            if (!level_ok(x->level - 1, x->parents[k]))
                rc = MRD_EPROTO;
        snprintf(t[i].bucket, sizeof(t[i].bucket), "%s", x->bucket);
        t[i].level = x->level;
        t[i].versions = x->versions;
        t[i].missing = x->missing;
        t[i].n_parents = x->n_parents;
        if (rc == 0 && ((x->n_parents && !(t[i].parents = malloc(x->n_parents * 4))) ||
                        !(t[i].hashes = malloc(want + 1))))
            rc = -ENOMEM;
        if (rc == 0) {
            if (x->n_parents)
                memcpy(t[i].parents, x->parents, x->n_parents * 4);
            if (want) /* hashes.data is NULL when empty */
                memcpy(t[i].hashes, x->hashes.data, want);
        }
    }
    if (rc != 0) {
        repl__tnodes_free(t, m->n_nodes);
    } else {
        *out = t;
        *n_out = m->n_nodes;
    }
    meridian__repl__digest_response__free_unpacked(m, NULL);
    return rc;
}

/* ---- tree digests: comparing top-down -------------------------------------- */

void
repl__tpend_free(repl__tpend *p)
{
    free(p->v);
    memset(p, 0, sizeof(*p));
}

static int
tpend_add(repl__tpend *p, uint32_t b, uint32_t level, uint32_t node)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        repl__tref *v = realloc(p->v, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        p->v = v;
        p->cap = cap;
    }
    p->v[p->n++] = (repl__tref){b, level, node};
    return 0;
}

static void
mark_all(repl__bdigest *m)
{
    memset(m->differ, 0xff, FULL_LEAVES / 8);
}

int
repl__tree_roots_diff(repl__bdigest *mine, size_t n_mine, const repl__tnodes *roots, size_t n_roots,
                      const char *only, repl__tpend *pend, repl__dreq *push)
{
    int rc = 0;

    if (only && !only[0])
        only = NULL;
    for (size_t i = 0; rc == 0 && i < n_mine; i++) {
        repl__bdigest *m = &mine[i];
        const repl__tnodes *t = NULL;

        for (size_t k = 0; k < n_roots && !t; k++)
            if (roots[k].level == 0 && strcmp(roots[k].bucket, m->bucket) == 0)
                t = &roots[k];
        m->cmp_leaves = FULL_LEAVES;
        free(m->differ);
        if (!(m->differ = calloc(FULL_LEAVES / 8, 1)))
            return -ENOMEM;
        if (only && strcmp(only, m->bucket) != 0) {
            m->missing = m->peer_empty = 0;
            continue;
        }
        m->missing = !t || t->missing;
        m->peer_empty = m->missing || t->versions == 0;
        if (m->missing)
            mark_all(m);
        else if (memcmp(repl__tree_node(m, 0, 0), t->hashes, 16) != 0)
            rc = tpend_add(pend, (uint32_t)i, 0, 0);
    }
    for (size_t k = 0; rc == 0 && k < n_roots; k++)
        if (!roots[k].missing && roots[k].versions && (!only || !strcmp(only, roots[k].bucket)) &&
            !find_bucket(mine, n_mine, roots[k].bucket))
            rc = repl__dreq_add(push, roots[k].bucket, 0, 0);
    return rc;
}

int
repl__tree_request(const repl__bdigest *mine, const repl__tpend *pend, size_t from, size_t max,
                   mrd_buf *out)
{
    repl__dreq q = {.tree = 1};
    int rc = 0;

    for (size_t i = from; rc == 0 && i < pend->n && i < from + max; i++)
        rc = repl__dreq_add(&q, mine[pend->v[i].b].bucket, pend->v[i].level, pend->v[i].node);
    if (rc == 0)
        rc = repl__dreq_encode(&q, out);
    repl__dreq_free(&q);
    return rc;
}

int
repl__tree_children_diff(repl__bdigest *mine, size_t n_mine, const repl__tnodes *ans, size_t n,
                         repl__tpend *next)
{
    int rc = 0;

    for (size_t i = 0; rc == 0 && i < n; i++) {
        const repl__tnodes *t = &ans[i];
        repl__bdigest *m = NULL;
        uint32_t b = 0;

        for (size_t k = 0; k < n_mine && !m; k++)
            if (strcmp(mine[k].bucket, t->bucket) == 0)
                m = &mine[k], b = (uint32_t)k;
        if (!m || !m->differ || t->level == 0)
            return MRD_EPROTO;
        if (t->missing) {
            m->missing = m->peer_empty = 1; /* deleted there between two rounds */
            mark_all(m);
            continue;
        }
        for (size_t p = 0; rc == 0 && p < t->n_parents; p++) {
            for (uint32_t c = 0; rc == 0 && c < 16; c++) {
                uint32_t node = t->parents[p] * 16 + c;
                if (memcmp(repl__tree_node(m, t->level, node), t->hashes + p * 256 + c * 16, 16) ==
                    0)
                    continue;
                if (t->level == REPL_TREE_LEAF)
                    m->differ[node / 8] |= (uint8_t)(1u << (node % 8));
                else
                    rc = tpend_add(next, b, t->level, node);
            }
        }
    }
    return rc;
}

int
repl__tree_push_leaves(const repl__bdigest *mine, size_t n, repl__dreq *push)
{
    int rc = 0;

    for (size_t i = 0; rc == 0 && i < n; i++) {
        const repl__bdigest *m = &mine[i];
        uint32_t count = 0;

        if (m->missing || m->peer_empty || !m->differ)
            continue; /* the peer has nothing of it to send */
        for (uint32_t l = 0; l < FULL_LEAVES / 8; l++)
            count += (uint32_t)__builtin_popcount(m->differ[l]);
        if (count > REPL_TREE_PUSH_LEAF) {
            rc = repl__dreq_add(push, m->bucket, 0, 0);
            continue;
        }
        for (uint32_t l = 0; rc == 0 && count && l < FULL_LEAVES; l++)
            if (m->differ[l / 8] & (1u << (l % 8)))
                rc = repl__dreq_add(push, m->bucket, REPL_TREE_LEAF, l);
    }
    return rc;
}

int
repl__dreq_bitmaps(const repl__dreq *q, repl__bdigest **out, size_t *n_out)
{
    repl__bdigest *d = calloc(q->n ? q->n : 1, sizeof(*d));
    size_t n = 0;
    int rc = 0;

    if (!d)
        return -ENOMEM;
    for (size_t i = 0; rc == 0 && i < q->n; i++) {
        const repl__drange *r = &q->r[i];
        repl__bdigest *b = (repl__bdigest *)find_bucket(d, n, r->bucket);
        uint32_t span = 1u << (4 * (REPL_TREE_LEAF - r->level));
        if (!b) {
            b = &d[n++];
            snprintf(b->bucket, sizeof(b->bucket), "%s", r->bucket);
            b->cmp_leaves = FULL_LEAVES;
            if (!(b->differ = calloc(FULL_LEAVES / 8, 1))) {
                rc = -ENOMEM;
                break;
            }
        }
        if (r->level == 0)
            b->missing = 1; /* the asker lacks the bucket: its BucketCreate goes too */
        for (size_t k = 0; k < r->n; k++)
            for (uint32_t l = r->nodes[k] * span; l < (r->nodes[k] + 1) * span; l++)
                b->differ[l / 8] |= (uint8_t)(1u << (l % 8));
    }
    if (rc != 0) {
        repl__digest_free(d, n);
        return rc;
    }
    *out = d;
    *n_out = n;
    return 0;
}

/* ---- version summaries (version 3) ------------------------------------------- */

/* What the noop rules need of a version, ours or the peer's. */
typedef struct vsum {
    const char *vid;
    uint8_t hash[16];
    vv vec;
    int null_version, tomb;
    uint64_t tags_hlc;
    uint32_t tags_site;
} vsum;

static int
vsum_of(const char *bucket, const char *key, const store_version *v, vsum *out)
{
    tag_meta t = {NULL, NULL};
    unsigned long long hlc = 0;
    unsigned site = 0;

    memset(out, 0, sizeof(*out));
    if (vv_decode(v->vv, v->vv_len, &out->vec) != 0)
        return MRD_ECORRUPT;
    out->vid = v->version_id;
    version_hash(bucket, key, v, 2, out->hash);
    out->null_version = (v->flags & ENGINE_VF_NULL_VERSION) != 0;
    out->tomb = (v->flags & ENGINE_VF_TOMBSTONE) != 0;
    if (v->user_meta_len && !(v->flags & STORE_VF_DELETE_MARKER))
        engine_meta_each(v->user_meta, v->user_meta_len, tag_meta_of, &t);
    if (t.stamp && sscanf(t.stamp, "%llu.%u", &hlc, &site) == 2) {
        out->tags_hlc = hlc;
        out->tags_site = site;
    }
    return 0;
}

/*
 * 1 if a site holding y drops x on arrival, or already holds it: sending x
 * there changes nothing. Each rule is one the receiver applies
 * (engine_apply.c, conflict.h rule 4):
 *   - y is x (the same version hash: id, vector, etag, marker, tags);
 *   - y is the tombstone of x's id: a removed id stays removed;
 *   - x and y are null versions and y's vector dominates x's: an S3
 *     overwrite drops the older null version, and dominance is transitive,
 *     so whatever replaces y later drops x too;
 *   - y is x (same id and vector) with a later tagging: tags are
 *     last-writer-wins by (hlc, site).
 * Anything else is sent: concurrent versions, versions of a versioned key
 * the peer may lack, and tombstones (two removals settle on the larger).
 */
static int
vsum_noop(const vsum *x, const vsum *y)
{
    if (memcmp(x->hash, y->hash, 16) == 0)
        return 1;
    if (x->tomb)
        return 0;
    if (strcmp(x->vid, y->vid) == 0) {
        if (y->tomb)
            return 1;
        return vv_compare(&y->vec, &x->vec) == VV_EQUAL &&
               (y->tags_hlc > x->tags_hlc ||
                (y->tags_hlc == x->tags_hlc && y->tags_site > x->tags_site));
    }
    return x->null_version && y->null_version && !y->tomb &&
           vv_compare(&y->vec, &x->vec) == VV_DOMINATES;
}

/* Server: the walk behind repl__summaries_encode. */
typedef struct sum_walk {
    const repl__bdigest *bits;
    Meridian__Repl__BucketVersions *bv;
    size_t cap, bytes, limit;
    int partial, rc;
    /* what the entries point to: freed by sum_walk_free */
    char **strs;
    size_t n_strs, cap_strs;
} sum_walk;

/* A zeroed allocation that lives until the walk is freed. */
static void *
sum_alloc(sum_walk *w, size_t len)
{
    void *c;

    if (w->n_strs == w->cap_strs) {
        size_t cap = w->cap_strs ? 2 * w->cap_strs : 64;
        char **v = realloc(w->strs, cap * sizeof(*v));
        if (!v)
            return NULL;
        w->strs = v;
        w->cap_strs = cap;
    }
    if (!(c = calloc(1, len ? len : 1)))
        return NULL;
    w->strs[w->n_strs++] = c;
    return c;
}

/* A NUL-terminated copy of p[0..len) that lives until the walk is freed. */
static char *
sum_keep(sum_walk *w, const void *p, size_t len)
{
    char *c = sum_alloc(w, len + 1);

    if (c)
        memcpy(c, p, len);
    return c;
}

static int
sum_version(void *user, const char *key, const store_version *v)
{
    sum_walk *w = user;
    Meridian__Repl__BucketVersions *bv = w->bv;
    Meridian__Repl__VersionSummary *s;
    uint32_t leaf = repl__leaf_of(key, FULL_LEAVES);
    vsum x;
    size_t klen = strlen(key), vlen = strlen(v->version_id);

    if (!(w->bits->differ[leaf / 8] & (1u << (leaf % 8))))
        return 0;
    if (w->bytes + klen + vlen + v->vv_len + 48 > w->limit) {
        w->partial = 1;
        return 1;
    }
    if (vsum_of(bv->bucket, key, v, &x) != 0)
        return 0; /* a record we cannot read: leave it out (nothing is skipped for it) */
    if (bv->n_versions == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 64;
        void *nv = realloc(bv->versions, cap * sizeof(*bv->versions));
        if (!nv) {
            w->rc = -ENOMEM;
            return 1;
        }
        bv->versions = nv;
        w->cap = cap;
    }
    if (!(s = sum_alloc(w, sizeof(*s)))) {
        w->rc = -ENOMEM;
        return 1;
    }
    meridian__repl__version_summary__init(s);
    s->key = sum_keep(w, key, klen);
    s->version_id = sum_keep(w, v->version_id, vlen);
    s->vv.data = (uint8_t *)sum_keep(w, v->vv, v->vv_len);
    s->hash.data = (uint8_t *)sum_keep(w, x.hash, 16);
    if (!s->key || !s->version_id || !s->vv.data || !s->hash.data) {
        w->rc = -ENOMEM;
        return 1;
    }
    s->vv.len = v->vv_len;
    s->hash.len = 16;
    s->flags = (x.null_version ? 1u : 0u) | (x.tomb ? 2u : 0u);
    s->tags_hlc = x.tags_hlc;
    s->tags_site = x.tags_site;
    bv->versions[bv->n_versions++] = s;
    w->bytes += klen + vlen + v->vv_len + 48;
    return 0;
}

int
repl__summaries_encode(store *st, const repl__dreq *q, size_t limit, mrd_buf *out)
{
    Meridian__Repl__DigestResponse m = MERIDIAN__REPL__DIGEST_RESPONSE__INIT;
    repl__bdigest *bits = NULL;
    size_t n = 0;
    sum_walk w;
    int rc = repl__dreq_bitmaps(q, &bits, &n);

    size_t first = 0;

    memset(&w, 0, sizeof(w));
    w.limit = limit;
    if (rc == 0 && !(m.held = calloc(n ? n : 1, sizeof(*m.held))))
        rc = -ENOMEM;
    if (q->from_bucket[0]) { /* a later page: from that bucket of the asked ones */
        while (first < n && strcmp(bits[first].bucket, q->from_bucket) != 0)
            first++;
    }
    for (size_t i = first; rc == 0 && i < n && !w.partial; i++) {
        /* on the page's first bucket, from its first key on: after the
         * version named, or that key included (every version of it sorts
         * after (key, "")) */
        int from = i == first && q->from_bucket[0] && q->from_key[0];
        Meridian__Repl__BucketVersions *bv = sum_alloc(&w, sizeof(*bv));
        if (!bv) {
            rc = -ENOMEM;
            break;
        }
        meridian__repl__bucket_versions__init(bv);
        bv->bucket = bits[i].bucket;
        m.held[m.n_held++] = bv;
        w.bits = &bits[i];
        w.bv = bv;
        w.cap = 0;
        w.bytes += strlen(bv->bucket) + 8;
        rc = store_index_list(st, bits[i].bucket, NULL, from ? q->from_key : NULL,
                              from ? q->from_vid : NULL, STORE_LIST_VERSIONS, sum_version, &w);
        if (rc == MRD_ENOTFOUND)
            rc = 0; /* no such bucket here: nothing held */
        if (rc == 0)
            rc = w.rc;
    }
    m.tree = 1;
    m.summaries = 1;
    m.held_partial = w.partial;
    if (rc == 0)
        rc = pb_pack(&m.base, out);
    for (size_t i = 0; i < m.n_held; i++)
        free(m.held[i]->versions);
    free(m.held);
    for (size_t i = 0; i < w.n_strs; i++)
        free(w.strs[i]);
    free(w.strs);
    repl__digest_free(bits, n);
    return rc;
}

/* Client: the peer's summaries, sorted by (bucket, key) for lookups. */
typedef struct ps_ent {
    const char *bucket, *key;
    vsum y;
} ps_ent;

struct repl__peerset {
    Meridian__Repl__DigestResponse *m;
    ps_ent *e;
    size_t n;
    int partial;
};

static int
ps_cmp(const void *a, const void *b)
{
    const ps_ent *x = a, *y = b;
    int c = strcmp(x->bucket, y->bucket);

    return c ? c : strcmp(x->key, y->key);
}

void
repl__peerset_free(repl__peerset *ps)
{
    if (!ps)
        return;
    if (ps->m)
        meridian__repl__digest_response__free_unpacked(ps->m, NULL);
    free(ps->e);
    free(ps);
}

int
repl__peerset_decode(const void *data, size_t len, repl__peerset **out)
{
    repl__peerset *ps = calloc(1, sizeof(*ps));
    size_t total = 0;
    int rc = 0;

    *out = NULL;
    if (!ps)
        return -ENOMEM;
    ps->m = meridian__repl__digest_response__unpack(NULL, len, data);
    if (!ps->m || !ps->m->summaries) {
        repl__peerset_free(ps);
        return MRD_EPROTO;
    }
    for (size_t i = 0; i < ps->m->n_held; i++)
        total += ps->m->held[i]->n_versions;
    if (total && !(ps->e = calloc(total, sizeof(*ps->e))))
        rc = -ENOMEM;
    for (size_t i = 0; rc == 0 && i < ps->m->n_held; i++) {
        const Meridian__Repl__BucketVersions *bv = ps->m->held[i];
        for (size_t k = 0; rc == 0 && k < bv->n_versions; k++) {
            const Meridian__Repl__VersionSummary *s = bv->versions[k];
            ps_ent *e = &ps->e[ps->n];
            if (!bv->bucket || !s->key || !s->version_id || s->hash.len != 16 ||
                vv_decode(s->vv.data, s->vv.len, &e->y.vec) != 0) {
                rc = MRD_EPROTO;
                break;
            }
            e->bucket = bv->bucket;
            e->key = s->key;
            e->y.vid = s->version_id;
            memcpy(e->y.hash, s->hash.data, 16);
            e->y.null_version = (s->flags & 1u) != 0;
            e->y.tomb = (s->flags & 2u) != 0;
            e->y.tags_hlc = s->tags_hlc;
            e->y.tags_site = s->tags_site;
            ps->n++;
        }
    }
    if (rc != 0) {
        repl__peerset_free(ps);
        return rc;
    }
    if (ps->n > 1)
        qsort(ps->e, ps->n, sizeof(*ps->e), ps_cmp);
    ps->partial = ps->m->held_partial;
    *out = ps;
    return 0;
}

size_t
repl__peerset_count(const repl__peerset *ps)
{
    return ps ? ps->n : 0;
}

int
repl__peerset_partial(const repl__peerset *ps)
{
    return ps ? ps->partial : 0;
}

int
repl__peerset_covers(const repl__peerset *ps, const char *bucket, const char *key, const char *vid)
{
    const Meridian__Repl__BucketVersions *last;
    const Meridian__Repl__VersionSummary *lv;
    int c;

    if (!ps || !ps->partial)
        return 1;
    if (!ps->m->n_held)
        return 0;
    /* buckets come in the walk's order and each is walked in index order,
     * (key, version id): every bucket before the last one is whole, the last
     * one up to its last version (a page can end inside a key's versions) */
    for (size_t i = 0; i + 1 < ps->m->n_held; i++)
        if (strcmp(ps->m->held[i]->bucket, bucket) == 0)
            return 1;
    last = ps->m->held[ps->m->n_held - 1];
    if (strcmp(last->bucket, bucket) != 0 || !last->n_versions)
        return 0;
    lv = last->versions[last->n_versions - 1];
    c = strcmp(key, lv->key);
    return c < 0 || (c == 0 && strcmp(vid, lv->version_id) <= 0);
}

int
repl__peerset_noop(const repl__peerset *ps, const char *bucket, const char *key,
                   const store_version *v)
{
    ps_ent probe = {bucket, key, {0}};
    size_t lo = 0, hi = ps ? ps->n : 0;
    vsum x;

    while (lo < hi) { /* the first entry not below (bucket, key) */
        size_t mid = lo + (hi - lo) / 2;
        if (ps_cmp(&ps->e[mid], &probe) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (!ps || lo == ps->n || ps_cmp(&ps->e[lo], &probe) != 0)
        return 0;
    if (vsum_of(bucket, key, v, &x) != 0)
        return 0;
    for (; lo < ps->n && ps_cmp(&ps->e[lo], &probe) == 0; lo++)
        if (vsum_noop(&x, &ps->e[lo].y))
            return 1;
    return 0;
}
