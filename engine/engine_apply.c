/*
 * engine_apply.c - turning durable WAL records into index updates.
 *
 * One function decides what a record does to the index, engine__batch_add,
 * and both the live applier thread and start-up replay use it, so a crash
 * can never leave the index in a state that normal operation would not have
 * produced. A record becomes store_index_ops:
 *
 *   BUCKET_CREATE   BUCKET_PUT  (blob = the packed BucketCreate)
 *   BUCKET_DELETE   BUCKET_DEL
 *   OBJECT_PUT      conflict_decide(held = {current version}, incoming):
 *   DELETE_MARKER     incoming CURRENT  -> VERSION_PUT + STORE_OPF_CURRENT
 *                     incoming kept     -> VERSION_PUT (not current)
 *                     a held version DROPped (an S3 overwrite of a null
 *                     version) -> VERSION_DEL, and its data is freed after
 *                     the commit, when nothing references it any more
 *   OBJECT_DELETE   VERSION_DEL of that version, data freed after commit
 *
 * Only the current version is passed as "held". conflict.h allows omitting
 * non-current versions that are not null versions; in today's unversioned
 * buckets every kept version is the current one, so this is exact. When
 * versioning and replication land, held must grow to the frontier plus the
 * null versions.
 *
 * Batching. The applier takes every record the WAL has made durable, plans
 * them into one batch and commits the batch with ONE store_index_apply whose
 * LSN is the batch's last: LMDB commits are group-committed the way the WAL
 * group-commits fdatasyncs (one durable commit is ~240 us; a batch of 64
 * costs about the same). Planning reads the index (the key's current
 * version), which cannot see ops still in the batch, so a record touching a
 * key (or bucket) already in the batch flushes the batch first.
 *
 * Slots. engine__batch_add gives record i of a batch slot i, and everything
 * derived from that record (vers[i], vvbuf[i], meta[i], blobs[i]) lives in
 * that slot only; batch_reset clears slots 0..n_recs-1. A planner must use
 * the slot it was given: planning into n_recs (one past) once leaked one
 * object's user metadata into the next batch's record and, with a full batch
 * of BATCH_RECS records, wrote past the arrays and crashed the daemon.
 *
 * Ordering. The WAL fires append callbacks in LSN order from its single
 * writer thread, and they are queued in that order; the applier applies in
 * queue order, so the index's last_applied_lsn only moves forward and
 * store_index_apply never skips a record as "already applied".
 *
 * A failed index commit is treated like a failed fsync: the engine turns
 * read-only (every later mutation fails with MRD_EDURABLE), the callbacks of
 * the batch get MRD_EDURABLE, and a restart replays the WAL into the index.
 */
#include "engine_int.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define BATCH_RECS 64
#define BATCH_OPS  (BATCH_RECS * 2)

struct engine__batch {
    size_t n_recs, n_ops, n_free;
    uint64_t lsn;
    Meridian__WalRecord *recs[BATCH_RECS];
    store_index_op ops[BATCH_OPS];
    store_version vers[BATCH_RECS];
    mrd_buf meta[BATCH_RECS];
    uint8_t vvbuf[BATCH_RECS][VV_ENCODED_MAX];
    uint8_t *blobs[BATCH_RECS];
    store_version_rec *frees[BATCH_RECS]; /* data to free after commit */
    const char *bkt[BATCH_RECS], *key[BATCH_RECS];
};

int
engine__batch_new(engine__batch **out)
{
    engine__batch *b = calloc(1, sizeof(*b));

    if (!b)
        return -ENOMEM;
    *out = b;
    return 0;
}

static void
batch_reset(engine__batch *b)
{
    for (size_t i = 0; i < b->n_recs; i++) {
        wal_record_free(b->recs[i]);
        mrd_buf_reset(&b->meta[i]);
        free(b->blobs[i]);
        b->blobs[i] = NULL;
    }
    for (size_t i = 0; i < b->n_free; i++)
        store_version_rec_free(b->frees[i]);
    b->n_recs = b->n_ops = b->n_free = 0;
    b->lsn = 0;
}

void
engine__batch_free(engine__batch *b)
{
    if (!b)
        return;
    batch_reset(b);
    for (size_t i = 0; i < BATCH_RECS; i++)
        mrd_buf_free(&b->meta[i]);
    free(b);
}

int
engine__batch_flush(engine *e, engine__batch *b)
{
    int rc = 0;

    if (b->lsn == 0)
        return 0;
    rc = store_index_apply(e->st, b->ops, b->n_ops, b->lsn);
    if (rc == 0) {
        for (size_t i = 0; i < b->n_free; i++) {
            const store_version *v = store_version_rec_get(b->frees[i]);
            if (v->layout_len)
                store_object_delete_data(e->st, v->layout, v->layout_len);
        }
        if (e->w)
            wal_set_applied(e->w, b->lsn);
    }
    batch_reset(b);
    return rc;
}

/* conflict_version of an index record. */
static int
held_version(const store_version *v, conflict_version *out)
{
    memset(out, 0, sizeof(*out));
    if (vv_decode(v->vv, v->vv_len, &out->vv) != 0)
        return MRD_ECORRUPT;
    out->id = (const uint8_t *)v->version_id;
    out->id_len = strlen(v->version_id);
    out->hlc = v->hlc;
    out->origin = engine__vid_origin(v->version_id);
    if (v->flags & STORE_VF_DELETE_MARKER)
        out->flags |= CONFLICT_F_DELETE_MARKER;
    if (v->flags & ENGINE_VF_NULL_VERSION)
        out->flags |= CONFLICT_F_NULL_VERSION;
    out->etag = (const uint8_t *)(v->etag ? v->etag : "");
    out->etag_len = v->etag ? strlen(v->etag) : 0;
    return 0;
}

/* The fields shared by ObjectPut and DeleteMarker records. */
typedef struct put_view {
    const char *bucket, *key, *version_id, *etag, *content_type;
    const Meridian__VersionVector *vv;
    uint64_t hlc, size;
    Meridian__KeyValue **meta;
    size_t n_meta;
    const void *layout;
    size_t layout_len;
    int marker;
} put_view;

/* Plans the version of record slot i (the slot engine__batch_add took for
 * it: vers[i], vvbuf[i] and meta[i] belong to that record alone). */
static int
plan_version(engine *e, engine__batch *b, size_t i, const put_view *p)
{
    store_version_rec *cur = NULL;
    conflict_version held, inc;
    conflict_class cls[2];
    conflict_decision dec;
    store_version *sv = &b->vers[i];
    size_t n_held = 0, vvlen = 0;
    int rc;

    memset(&inc, 0, sizeof(inc));
    if ((rc = engine__vv_from_msg(p->vv, &inc.vv)) != 0)
        return rc;
    inc.id = (const uint8_t *)p->version_id;
    inc.id_len = strlen(p->version_id);
    inc.hlc = p->hlc;
    inc.origin = engine__vid_origin(p->version_id);
    inc.flags = CONFLICT_F_NULL_VERSION | (p->marker ? CONFLICT_F_DELETE_MARKER : 0);
    inc.etag = (const uint8_t *)p->etag;
    inc.etag_len = strlen(p->etag);

    rc = store_index_get(e->st, p->bucket, p->key, NULL, &cur);
    if (rc == 0) {
        if ((rc = held_version(store_version_rec_get(cur), &held)) != 0)
            goto out;
        n_held = 1;
    } else if (rc != MRD_ENOTFOUND) {
        return rc;
    }
    rc = conflict_decide(&held, n_held, &inc, cls, &dec);
    if (rc != 0 || dec.action == CONFLICT_ACTION_DUPLICATE)
        goto out;
    if ((rc = vv_encode(&inc.vv, b->vvbuf[i], sizeof(b->vvbuf[i]), &vvlen)) != 0)
        goto out;
    if ((rc = engine__meta_encode(p->meta, p->n_meta, &b->meta[i])) != 0)
        goto out;

    if (cls[n_held].keep != CONFLICT_DROP) {
        memset(sv, 0, sizeof(*sv));
        sv->version_id = p->version_id;
        sv->size = p->size;
        sv->etag = p->etag;
        sv->content_type = p->content_type;
        sv->hlc = p->hlc;
        sv->flags = ENGINE_VF_NULL_VERSION | (p->marker ? STORE_VF_DELETE_MARKER : 0);
        if (cls[n_held].role == CONFLICT_ROLE_CONFLICT)
            sv->flags |= STORE_VF_CONFLICT;
        else if (cls[n_held].role == CONFLICT_ROLE_NONCURRENT)
            sv->flags |= STORE_VF_NONCURRENT;
        sv->user_meta = b->meta[i].data;
        sv->user_meta_len = b->meta[i].len;
        sv->vv = b->vvbuf[i];
        sv->vv_len = vvlen;
        sv->layout = p->layout;
        sv->layout_len = p->layout_len;
        b->ops[b->n_ops++] = (store_index_op){
            .type = STORE_OP_VERSION_PUT,
            .op_flags = cls[n_held].role == CONFLICT_ROLE_CURRENT ? STORE_OPF_CURRENT : 0,
            .bucket = p->bucket,
            .key = p->key,
            .version = sv,
        };
    }
    if (n_held && cls[0].keep == CONFLICT_DROP) {
        b->ops[b->n_ops++] = (store_index_op){
            .type = STORE_OP_VERSION_DEL,
            .bucket = p->bucket,
            .key = p->key,
            .version_id = store_version_rec_get(cur)->version_id,
        };
        b->frees[b->n_free++] = cur; /* keeps the strings alive until flush */
        cur = NULL;
    }
out:
    store_version_rec_free(cur);
    return rc;
}

static int
plan_delete(engine *e, engine__batch *b, const Meridian__ObjectDelete *d)
{
    store_version_rec *old = NULL;
    int rc = store_index_get(e->st, d->bucket, d->key, d->version_id, &old);

    if (rc == MRD_ENOTFOUND)
        return 0; /* already gone: replays stay idempotent */
    if (rc != 0)
        return rc;
    b->ops[b->n_ops++] = (store_index_op){
        .type = STORE_OP_VERSION_DEL,
        .bucket = d->bucket,
        .key = d->key,
        .version_id = d->version_id,
    };
    b->frees[b->n_free++] = old;
    return 0;
}

/* Which (bucket, key) a record touches; key NULL for bucket records. */
static void
record_target(const Meridian__WalRecord *r, const char **bucket, const char **key)
{
    *bucket = *key = NULL;
    switch (r->body_case) {
    case MERIDIAN__WAL_RECORD__BODY_OBJECT_PUT:
        *bucket = r->object_put->bucket;
        *key = r->object_put->key;
        break;
    case MERIDIAN__WAL_RECORD__BODY_DELETE_MARKER:
        *bucket = r->delete_marker->bucket;
        *key = r->delete_marker->key;
        break;
    case MERIDIAN__WAL_RECORD__BODY_OBJECT_DELETE:
        *bucket = r->object_delete->bucket;
        *key = r->object_delete->key;
        break;
    case MERIDIAN__WAL_RECORD__BODY_BUCKET_CREATE:
        *bucket = r->bucket_create->bucket;
        break;
    case MERIDIAN__WAL_RECORD__BODY_BUCKET_DELETE:
        *bucket = r->bucket_delete->bucket;
        break;
    default:
        break;
    }
}

static int
touches(const engine__batch *b, const char *bucket, const char *key)
{
    for (size_t i = 0; i < b->n_recs; i++) {
        if (!b->bkt[i] || !bucket || strcmp(b->bkt[i], bucket) != 0)
            continue;
        /* a bucket record conflicts with anything in the bucket */
        if (!key || !b->key[i] || strcmp(b->key[i], key) == 0)
            return 1;
    }
    return 0;
}

int
engine__batch_add(engine *e, engine__batch *b, Meridian__WalRecord *rec, uint64_t lsn)
{
    const char *bucket, *key;
    size_t i;
    put_view pv;
    int rc = 0;

    record_target(rec, &bucket, &key);
    if (b->n_recs == BATCH_RECS || touches(b, bucket, key)) {
        if ((rc = engine__batch_flush(e, b)) != 0) {
            wal_record_free(rec);
            return rc;
        }
    }
    i = b->n_recs++;
    assert(i < BATCH_RECS);
    b->recs[i] = rec;
    b->bkt[i] = bucket;
    b->key[i] = key;
    b->lsn = lsn;
    memset(&pv, 0, sizeof(pv));
    switch (rec->body_case) {
    case MERIDIAN__WAL_RECORD__BODY_BUCKET_CREATE: {
        Meridian__BucketCreate *bc = rec->bucket_create;
        size_t n = meridian__bucket_create__get_packed_size(bc);
        if (!(b->blobs[i] = malloc(n ? n : 1)))
            return -ENOMEM;
        meridian__bucket_create__pack(bc, b->blobs[i]);
        b->ops[b->n_ops++] = (store_index_op){
            .type = STORE_OP_BUCKET_PUT, .bucket = bc->bucket, .blob = b->blobs[i], .blob_len = n};
        break;
    }
    case MERIDIAN__WAL_RECORD__BODY_BUCKET_DELETE:
        b->ops[b->n_ops++] =
            (store_index_op){.type = STORE_OP_BUCKET_DEL, .bucket = rec->bucket_delete->bucket};
        break;
    case MERIDIAN__WAL_RECORD__BODY_OBJECT_PUT: {
        Meridian__ObjectPut *op = rec->object_put;
        pv = (put_view){.bucket = op->bucket,
                        .key = op->key,
                        .version_id = op->version_id,
                        .etag = op->etag,
                        .content_type = op->content_type,
                        .vv = op->vv,
                        .hlc = op->hlc,
                        .size = op->size,
                        .meta = op->user_meta,
                        .n_meta = op->n_user_meta,
                        .layout = op->layout.data,
                        .layout_len = op->layout.len};
        rc = plan_version(e, b, i, &pv);
        break;
    }
    case MERIDIAN__WAL_RECORD__BODY_DELETE_MARKER: {
        Meridian__DeleteMarker *dm = rec->delete_marker;
        pv = (put_view){.bucket = dm->bucket,
                        .key = dm->key,
                        .version_id = dm->version_id,
                        .etag = "",
                        .content_type = "",
                        .vv = dm->vv,
                        .hlc = dm->hlc,
                        .marker = 1};
        rc = plan_version(e, b, i, &pv);
        break;
    }
    case MERIDIAN__WAL_RECORD__BODY_OBJECT_DELETE:
        rc = plan_delete(e, b, rec->object_delete);
        break;
    default:
        /* Record kinds this build does not apply yet (bucket config,
         * multipart, replicated): they still advance the LSN. */
        break;
    }
    return rc;
}

int
engine__replay(void *ud, const wal_entry *ent)
{
    engine *e = ud;
    Meridian__WalRecord *rec = NULL;
    int rc = wal_record_decode(ent->type, ent->payload, ent->len, &rec);

    if (rc != 0)
        return rc;
    return engine__batch_add(e, e->batch, rec, ent->lsn);
}

/* ---- the applier thread ------------------------------------------------- */

static void
finish(engine *e, engine__pending *list, int status)
{
    while (list) {
        engine__pending *n = list->next;
        engine__complete(e, list->cb, list->ud, status ? status : list->status);
        free(list->payload);
        free(list);
        list = n;
    }
}

void *
engine__applier_main(void *arg)
{
    engine *e = arg;

    for (;;) {
        engine__pending *list, *p, *done_head = NULL, **done_tail = &done_head;
        int rc = 0, failed;

        pthread_mutex_lock(&e->ap_mu);
        while (!e->ap_head && !e->ap_stop)
            pthread_cond_wait(&e->ap_cv, &e->ap_mu);
        list = e->ap_head;
        e->ap_head = e->ap_tail = NULL;
        failed = e->failed;
        pthread_mutex_unlock(&e->ap_mu);
        if (!list)
            break;

        /* Plan and commit everything that is here, in LSN order. A record
         * whose append failed is answered, never applied. */
        while (list) {
            p = list;
            list = list->next;
            p->next = NULL;
            if (p->status == 0 && !failed && rc == 0) {
                Meridian__WalRecord *rec = NULL;
                rc = wal_record_decode(p->type, p->payload, p->len, &rec);
                if (rc == 0)
                    rc = engine__batch_add(e, e->batch, rec, p->lsn);
            }
            *done_tail = p;
            done_tail = &p->next;
        }
        if (rc == 0 && !failed)
            rc = engine__batch_flush(e, e->batch);
        else
            batch_reset(e->batch);

        pthread_mutex_lock(&e->ap_mu);
        e->apply_batches++;
        for (p = done_head; p; p = p->next) {
            if (p->status == 0 && rc == 0 && !failed && p->lsn > e->applied_lsn)
                e->applied_lsn = p->lsn;
        }
        if (rc != 0) {
            e->apply_errors++;
            e->failed = 1;
        }
        pthread_mutex_unlock(&e->ap_mu);
        finish(e, done_head, rc != 0 || failed ? MRD_EDURABLE : 0);
    }
    return NULL;
}
