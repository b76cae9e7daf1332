/*
 * engine_apply.c - turning durable WAL records into index updates.
 *
 * One function decides what a record does to the index, engine__batch_add,
 * and both the live applier thread and start-up replay use it, so a crash
 * can never leave the index in a state that normal operation would not have
 * produced. A record becomes store_index_ops:
 *
 *   BUCKET_CREATE   BUCKET_PUT of the merged blob (engine_bucket.c: the
 *   BUCKET_CONFIG     existence register and the configuration registers,
 *                     each last-writer-wins), nothing when unchanged
 *   BUCKET_DELETE   BUCKET_DEL
 *   OBJECT_PUT      conflict_decide(held, incoming):
 *   DELETE_MARKER     incoming CURRENT  -> VERSION_PUT + STORE_OPF_CURRENT
 *                     incoming kept     -> VERSION_PUT (not current)
 *                     a held version DROPped (an S3 overwrite of a null
 *                     version) -> VERSION_DEL, and its data is freed after
 *                     the commit, when nothing references it any more
 *   MULTIPART_      as OBJECT_PUT (the layout lists the parts' data), plus
 *   COMPLETE          MPU_FINISH: the upload's records go in the same
 *                     transaction, and parts it left out are freed after
 *                     the commit (local records only: peers get an object
 *                     put, engine_record_mpu_as_put)
 *   OBJECT_DELETE   a tombstone VERSION_PUT over that version id (its data
 *                     freed after commit), then the remaining versions are
 *                     classified again and the winner made current
 *                     (CURRENT_DEL when none is left)
 *
 * Null versions. A version is a null version (ENGINE_VF_NULL_VERSION,
 * CONFLICT_F_NULL_VERSION) when its record says it was not written
 * `versioned`: the flag comes from the origin, never from this site's view
 * of the bucket, so sites that learn of a versioning change at different
 * times still keep the same versions.
 *
 * Held: what a decision sees. conflict.h allows leaving out versions that
 * are NONCURRENT and not null versions (their class never changes again),
 * and requires deduping by id. So held = the current version plus every
 * stored version that is CONFLICT or a null version, collected by one
 * cursor walk over the key's versions that keeps only ids (and only the
 * newest HELD_MAX - 2 of them), then read one by one: whatever the number
 * of versions of a key, a decision holds at most HELD_MAX records. The walk
 * itself reads every version record of the key once (a cursor walk, like
 * today's unversioned keys), and checks the incoming id on the way: a
 * stored copy outside held is a duplicate, a tombstone drops it.
 *   The bound's cost: past HELD_MAX - 2 concurrent losers (or null versions)
 * of one key, the oldest ones are left out of later decisions. In a
 * versioned bucket they are kept and listed either way; only their conflict
 * flag may then differ between sites (never which version is current, since
 * the current version is always in held and wins by the total order). In an
 * unversioned bucket it takes more than 22 hidden conflict losers of one
 * key within the retention window.
 *
 * Removing a version (OBJECT_DELETE) can make an older, non-current version
 * current again (S3: the previous version becomes the latest). Because HLC
 * stamps are causal, win(S) is the maximum of S under the conflict order
 * (conflict.h, rule 3), so the walk also tracks the maximum remaining
 * version, which joins held; every site applies the same rule to the same
 * set and converges. The tombstone (ENGINE_VF_TOMBSTONE, a delete-marker
 * record that is never current nor listed) keeps the id dead: a late
 * replicated put or anti-entropy copy of it is dropped, and anti-entropy
 * sends tombstones as OBJECT_DELETE records (repl_sync.c). Two removals of
 * one id settle on the larger (hlc, vv bytes). A GC sweep purges the
 * tombstone once every site has the removal (engine_gc.c, GC_PURGE below).
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
 * HLC floor. A commit also stores the highest stamp of the local records
 * in it (ENGINE_HLC_KEY, one op always left free for it), which the clock
 * observes at open (engine_core.c): local stamps then grow with LSN across
 * restarts as they do under mut_mu within one run.
 *
 * A failed index commit is treated like a failed fsync: the engine turns
 * read-only (every later mutation fails with MRD_EDURABLE), the callbacks of
 * the batch get MRD_EDURABLE, and a restart replays the WAL into the index.
 */
#include "engine_int.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#define BATCH_RECS 64
#define BATCH_OPS  (BATCH_RECS * 4)
/* Worst case ops one record can add: its own put, a re-file or delete of
 * every held version, a current-pointer move, a bucket revival (replicated)
 * or an upload's finish (local), the replication-progress meta put and the
 * conflict log's two meta puts. A batch is flushed before a record whose
 * worst case would not fit. */
#define HELD_MAX    24
#define REC_OPS_MAX (HELD_MAX + 6)
_Static_assert(ENGINE_GC_PURGE_MAX < REC_OPS_MAX, "a GcPurge record fits a batch's budget");
#define RA_KEY_MAX 32

struct engine__batch {
    size_t n_recs, n_ops, n_alive, n_free;
    uint64_t lsn;
    Meridian__WalRecord *recs[BATCH_RECS];
    Meridian__WalRecord *inner[BATCH_RECS]; /* a replicated record's original */
    store_index_op ops[BATCH_OPS];
    store_version vers[BATCH_RECS];
    store_version refile[BATCH_OPS]; /* held versions whose role changed */
    size_t n_refile;
    mrd_buf meta[BATCH_RECS];
    uint8_t vvbuf[BATCH_RECS][VV_ENCODED_MAX];
    uint8_t *blobs[BATCH_RECS];
    uint8_t *revive[BATCH_RECS];         /* bucket record written for a put into a missing bucket */
    store_version_rec *alive[BATCH_OPS]; /* index records whose strings ops point into */
    const void *free_lay[BATCH_OPS];     /* data to free after commit */
    size_t free_len[BATCH_OPS];
    const char *bkt[BATCH_RECS], *key[BATCH_RECS];
    /* replication progress: slot i applied origin ra_origin[i]'s ra_lsn[i] */
    uint32_t ra_origin[BATCH_RECS];
    uint64_t ra_lsn[BATCH_RECS];
    char ra_key[BATCH_RECS][RA_KEY_MAX];
    char ra_val[BATCH_RECS][24];
    /* conflict log: slot i's record and the "conflict.seq" value */
    mrd_buf crec[BATCH_RECS];
    char ckey[BATCH_RECS][ENGINE_CONFLICT_KEY_MAX];
    char cseq[BATCH_RECS][24];
    uint64_t conflict_last; /* the highest conflict number planned, 0 if none */
    uint64_t hlc_max;       /* the highest stamp of a local record in the batch */
    char hlc_val[24];       /* ENGINE_HLC_KEY's new value */
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
        wal_record_free(b->inner[i]);
        b->inner[i] = NULL;
        mrd_buf_reset(&b->meta[i]);
        free(b->blobs[i]);
        free(b->revive[i]);
        b->blobs[i] = b->revive[i] = NULL;
        b->ra_origin[i] = 0;
        mrd_buf_reset(&b->crec[i]);
    }
    for (size_t i = 0; i < b->n_alive; i++)
        store_version_rec_free(b->alive[i]);
    b->n_recs = b->n_ops = b->n_alive = b->n_free = b->n_refile = 0;
    b->lsn = 0;
    b->conflict_last = 0;
    b->hlc_max = 0;
}

void
engine__batch_free(engine__batch *b)
{
    if (!b)
        return;
    batch_reset(b);
    for (size_t i = 0; i < BATCH_RECS; i++) {
        mrd_buf_free(&b->meta[i]);
        mrd_buf_free(&b->crec[i]);
    }
    free(b);
}

int
engine__batch_flush(engine *e, engine__batch *b)
{
    int rc = 0;

    if (b->lsn == 0)
        return 0;
    if (b->hlc_max > e->hlc_saved) {
        /* the HLC floor (engine_core.c): one op is always left for it */
        snprintf(b->hlc_val, sizeof(b->hlc_val), "%llu", (unsigned long long)b->hlc_max);
        b->ops[b->n_ops++] = (store_index_op){.type = STORE_OP_META_PUT,
                                              .key = ENGINE_HLC_KEY,
                                              .blob = b->hlc_val,
                                              .blob_len = strlen(b->hlc_val)};
    }
    rc = store_index_apply(e->st, b->ops, b->n_ops, b->lsn);
    if (rc == 0) {
        if (b->hlc_max > e->hlc_saved)
            e->hlc_saved = b->hlc_max;
        for (size_t i = 0; i < b->n_free; i++)
            store_object_delete_data(e->st, b->free_lay[i], b->free_len[i]);
        for (size_t i = 0; i < b->n_recs; i++)
            if (b->ra_origin[i])
                engine__ra_committed(e, b->ra_origin[i], b->ra_lsn[i]);
        if (e->w)
            wal_set_applied(e->w, b->lsn);
        if (b->conflict_last) {
            pthread_mutex_lock(&e->ap_mu);
            e->conflict_last = b->conflict_last;
            pthread_mutex_unlock(&e->ap_mu);
        }
    }
    batch_reset(b);
    return rc;
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
    int versioned;  /* written while the bucket was versioned at its origin */
    int replicated; /* the data was written here for a peer's record */
    int resync;     /* delivered by anti-entropy (not the origin's WAL stream) */
} put_view;

/* One cursor walk over the versions of a key (see "Held" above). */
typedef struct held_walk {
    const char *key;
    const char *cur;  /* the current version's id ("" if none): read apart */
    const char *skip; /* the version being removed, or NULL */
    const char *want; /* the incoming id, or NULL */
    char *ring[HELD_MAX - 2];
    size_t n, next;
    int track_best;
    char best[CONFLICT_VERSION_ID_MAX + 1]; /* the maximum under the conflict order */
    uint64_t best_hlc;
    int want_state; /* 0: not stored, 1: stored, 2: a tombstone */
    int seen, nomem;
} held_walk;

#define HELD_RING (HELD_MAX - 2)

static int
held_cb(void *user, const char *key, const store_version *v)
{
    held_walk *h = user;
    char *id;

    if (strcmp(key, h->key) != 0)
        return h->seen; /* past our key: stop; before it (cannot happen): go on */
    h->seen = 1;
    if (h->want && strcmp(v->version_id, h->want) == 0)
        h->want_state = (v->flags & ENGINE_VF_TOMBSTONE) ? 2 : 1;
    if ((v->flags & ENGINE_VF_TOMBSTONE) || (h->skip && strcmp(v->version_id, h->skip) == 0))
        return 0;
    if (h->track_best &&
        (!h->best[0] || engine__order_above(v->version_id, v->hlc, h->best, h->best_hlc))) {
        snprintf(h->best, sizeof(h->best), "%s", v->version_id);
        h->best_hlc = v->hlc;
    }
    if (strcmp(v->version_id, h->cur) == 0 ||
        ((v->flags & STORE_VF_NONCURRENT) && !(v->flags & ENGINE_VF_NULL_VERSION)))
        return 0; /* the current is read apart; a real non-current never changes class */
    if (!(id = strdup(v->version_id))) {
        h->nomem = 1; /* store_index_list returns 0 when a callback stops it */
        return 1;
    }
    if (h->n < HELD_RING) {
        h->ring[h->n++] = id;
    } else { /* keep the newest: ids sort in time order */
        free(h->ring[h->next]);
        h->ring[h->next] = id;
        h->next = (h->next + 1) % HELD_RING;
    }
    return 0;
}

static int
held_push(engine *e, const char *bucket, const char *key, const char *id, store_version_rec **rec,
          size_t *n)
{
    int r;

    for (size_t k = 0; k < *n; k++)
        if (strcmp(store_version_rec_get(rec[k])->version_id, id) == 0)
            return 0;
    r = store_index_get(e->st, bucket, key, id, &rec[*n]);
    if (r == 0 && (store_version_rec_get(rec[*n])->flags & ENGINE_VF_TOMBSTONE)) {
        store_version_rec_free(rec[*n]);
        return 0;
    }
    if (r == 0)
        (*n)++;
    return r == MRD_ENOTFOUND ? 0 : r;
}

/*
 * Loads the held set of (bucket, key) into rec[0..*n), at most HELD_MAX:
 * the current version, the newest CONFLICT and null versions and, with
 * track_best, the maximum remaining version; skip (the version being
 * removed) is left out. *want_state tells whether want is stored.
 */
static int
load_held(engine *e, const char *bucket, const char *key, const char *skip, const char *want,
          int track_best, store_version_rec **rec, size_t *n, int *want_state)
{
    held_walk h;
    store_version_rec *cur = NULL;
    char cur_id[CONFLICT_VERSION_ID_MAX + 1] = "";
    int rc;

    memset(&h, 0, sizeof(h));
    *n = 0;
    rc = store_index_get(e->st, bucket, key, NULL, &cur);
    if (rc == 0) {
        snprintf(cur_id, sizeof(cur_id), "%s", store_version_rec_get(cur)->version_id);
        store_version_rec_free(cur);
    } else if (rc != MRD_ENOTFOUND) {
        return rc;
    }
    h.key = key;
    h.cur = cur_id;
    h.skip = skip;
    h.want = want;
    h.track_best = track_best;
    rc = store_index_list(e->st, bucket, key, NULL, NULL, STORE_LIST_VERSIONS, held_cb, &h);
    if (rc == 0 && h.nomem)
        rc = -ENOMEM;
    if (rc == 0 && cur_id[0] && (!skip || strcmp(cur_id, skip) != 0))
        rc = held_push(e, bucket, key, cur_id, rec, n);
    for (size_t i = 0; i < h.n; i++) {
        if (rc == 0)
            rc = held_push(e, bucket, key, h.ring[i], rec, n);
        free(h.ring[i]);
    }
    if (rc == 0 && h.best[0])
        rc = held_push(e, bucket, key, h.best, rec, n);
    if (rc < 0) {
        for (size_t i = 0; i < *n; i++)
            store_version_rec_free(rec[i]);
        *n = 0;
    }
    *want_state = h.want_state;
    return rc < 0 ? rc : 0;
}

static uint32_t
role_flags(conflict_role role)
{
    return role == CONFLICT_ROLE_CONFLICT     ? STORE_VF_CONFLICT
           : role == CONFLICT_ROLE_NONCURRENT ? STORE_VF_NONCURRENT
                                              : 0;
}

static void
free_later(engine__batch *b, const void *layout, size_t len)
{
    if (len) {
        b->free_lay[b->n_free] = layout;
        b->free_len[b->n_free++] = len;
    }
}

/* One side of a decision: held[idx], or the incoming version when idx is
 * n_held. */
static engine__conflict_side
decision_side(const put_view *p, const conflict_version *held, store_version_rec *const *hr,
              size_t n_held, const conflict_version *inc, const conflict_class *cls, size_t idx)
{
    engine__conflict_side s = {0};

    if (idx == n_held) {
        s.v = inc;
        s.etag = p->etag;
        s.size = p->size;
        s.incoming = 1;
    } else {
        const store_version *hv = store_version_rec_get(hr[idx]);
        s.v = &held[idx];
        s.etag = hv->etag ? hv->etag : "";
        s.size = hv->size;
    }
    s.keep = cls[idx].keep;
    return s;
}

/*
 * A delivery concurrent with the key's current version: the conflict log
 * record (engine_conflict.c) and the "conflict.seq" counter, as two meta
 * puts in slot i, committed with the decision's own ops.
 */
static int
plan_conflict_log(engine *e, engine__batch *b, size_t i, const put_view *p,
                  const conflict_version *held, store_version_rec *const *hr, size_t n_held,
                  const conflict_version *inc, const conflict_class *cls,
                  const conflict_decision *dec)
{
    const Meridian__WalRecord *outer = b->recs[i];
    size_t lose = dec->winner == n_held ? dec->prev_winner : n_held;
    engine__conflict_side ws, ls;
    const char *delivery = "local";
    uint32_t from = e->site;
    uint64_t seq = e->conflict_next;
    int rc;

    if (lose == CONFLICT_NONE)
        return 0;
    if (outer->body_case == MERIDIAN__WAL_RECORD__BODY_REPLICATED_APPLY) {
        from = outer->replicated_apply->origin_site;
        delivery = outer->replicated_apply->origin_lsn ? "replication" : "anti-entropy";
    }
    ws = decision_side(p, held, hr, n_held, inc, cls, dec->winner);
    ws.winner = 1;
    ls = decision_side(p, held, hr, n_held, inc, cls, lose);
    if ((rc = engine__conflict_encode(e, seq, p->bucket, p->key, delivery, from, &ws, &ls,
                                      &b->crec[i])) != 0)
        return rc;
    snprintf(b->ckey[i], sizeof(b->ckey[i]), ENGINE_CONFLICT_KEY_FMT,
             (unsigned)(seq % ENGINE_CONFLICT_LOG_MAX));
    snprintf(b->cseq[i], sizeof(b->cseq[i]), "%llu", (unsigned long long)seq);
    b->ops[b->n_ops++] = (store_index_op){.type = STORE_OP_META_PUT,
                                          .key = b->ckey[i],
                                          .blob = b->crec[i].data,
                                          .blob_len = b->crec[i].len};
    b->ops[b->n_ops++] = (store_index_op){.type = STORE_OP_META_PUT,
                                          .key = ENGINE_CONFLICT_SEQ_KEY,
                                          .blob = b->cseq[i],
                                          .blob_len = strlen(b->cseq[i])};
    e->conflict_next = seq + 1;
    b->conflict_last = seq;
    return 0;
}

/* Re-files held versions after a decision: DROPped ones are deleted (their
 * data freed after the commit), the others re-written when their role flags
 * change, and the winner (CONFLICT_NONE: none) made current. */
static void
plan_refile(engine__batch *b, const char *bucket, const char *key, store_version_rec *const *hr,
            size_t n_held, const conflict_class *cls, size_t winner, size_t prev_winner)
{
    for (size_t k = 0; k < n_held; k++) {
        const store_version *hv = store_version_rec_get(hr[k]);
        uint32_t want =
            (hv->flags & ~(STORE_VF_CONFLICT | STORE_VF_NONCURRENT)) | role_flags(cls[k].role);

        if (cls[k].keep == CONFLICT_DROP) {
            b->ops[b->n_ops++] = (store_index_op){
                .type = STORE_OP_VERSION_DEL,
                .bucket = bucket,
                .key = key,
                .version_id = hv->version_id,
            };
            free_later(b, hv->layout, hv->layout_len);
        } else if (want != hv->flags || (k == winner && k != prev_winner)) {
            store_version *rv = &b->refile[b->n_refile++];
            *rv = *hv;
            rv->flags = want;
            b->ops[b->n_ops++] = (store_index_op){
                .type = STORE_OP_VERSION_PUT,
                .op_flags = k == winner ? STORE_OPF_CURRENT : 0,
                .bucket = bucket,
                .key = key,
                .version = rv,
            };
        }
    }
}

/* Loads the held set (load_held) and its conflict_version views; the
 * index records stay alive (their strings are in ops) until reset. */
static int
held_views(engine *e, engine__batch *b, const char *bucket, const char *key, const char *skip,
           const char *want, int track_best, store_version_rec **hr, conflict_version *held,
           size_t *n_held, int *want_state)
{
    int rc = load_held(e, bucket, key, skip, want, track_best, hr, n_held, want_state);

    for (size_t k = 0; rc == 0 && k < *n_held; k++) {
        b->alive[b->n_alive++] = hr[k];
        rc = engine__version_from_store(store_version_rec_get(hr[k]), &held[k]);
    }
    return rc;
}

/*
 * 1 when a record anti-entropy delivered (resync), stamped hlc, for a
 * version this site does not hold, is a ghost: stamped below the stable
 * point as the replicator last computed it, it was applied here before, so
 * it has been removed since (purged, dropped or removed by id) and is not
 * stored again (engine_gc.c, "Ghosts"). Counts it.
 */
static int
gc_ghost(engine *e, int resync, uint64_t hlc)
{
    if (!resync || !hlc || hlc >= engine__gc_live(e))
        return 0;
    __atomic_add_fetch(&e->gc_ghosts, 1, __ATOMIC_RELAXED);
    return 1;
}

/*
 * Plans the version of record slot i (the slot engine__batch_add took for
 * it: vers[i], vvbuf[i] and meta[i] belong to that record alone). The
 * decision is conflict_decide over the held set (see "Held" above), the same
 * at every site whatever the order records arrive in. Held versions whose
 * role changes are re-filed, dropped ones deleted, and the current pointer
 * follows the winner. *kept is set to 1 when the version itself is stored.
 */
static int
plan_version(engine *e, engine__batch *b, size_t i, const put_view *p, int *kept)
{
    store_version_rec *hr[HELD_MAX];
    conflict_version held[HELD_MAX], inc;
    conflict_class cls[HELD_MAX + 1];
    conflict_decision dec;
    store_version *sv = &b->vers[i];
    size_t n_held = 0, vvlen = 0, k;
    int rc, stored = 0, in_held = 0;

    memset(&inc, 0, sizeof(inc));
    if ((rc = engine__vv_from_msg(p->vv, &inc.vv)) != 0)
        return rc;
    inc.id = (const uint8_t *)p->version_id;
    inc.id_len = strlen(p->version_id);
    inc.hlc = p->hlc;
    inc.origin = engine__vid_origin(p->version_id);
    inc.flags =
        (p->versioned ? 0 : CONFLICT_F_NULL_VERSION) | (p->marker ? CONFLICT_F_DELETE_MARKER : 0);
    inc.etag = (const uint8_t *)p->etag;
    inc.etag_len = strlen(p->etag);

    if ((rc = held_views(e, b, p->bucket, p->key, NULL, p->version_id, 0, hr, held, &n_held,
                         &stored)) != 0)
        return rc;
    for (k = 0; k < n_held; k++)
        in_held |= strcmp(store_version_rec_get(hr[k])->version_id, p->version_id) == 0;
    if (stored == 2 || (stored == 1 && !in_held) || (!stored && gc_ghost(e, p->resync, p->hlc))) {
        /* removed by id (a tombstone), a duplicate of a version outside
         * held, or a copy of one removed here since: nothing changes */
        if (p->replicated)
            free_later(b, p->layout, p->layout_len);
        return 0;
    }
    if ((rc = conflict_decide(held, n_held, &inc, cls, &dec)) != 0)
        return rc;
    if (dec.action == CONFLICT_ACTION_DUPLICATE) {
        if (p->replicated)
            free_later(b, p->layout, p->layout_len); /* we hold our own copy */
        return 0;
    }
    if ((rc = vv_encode(&inc.vv, b->vvbuf[i], sizeof(b->vvbuf[i]), &vvlen)) != 0)
        return rc;
    if ((rc = engine__meta_encode(p->meta, p->n_meta, &b->meta[i])) != 0)
        return rc;
    if (dec.new_conflict &&
        (rc = plan_conflict_log(e, b, i, p, held, hr, n_held, &inc, cls, &dec)) != 0)
        return rc;

    if (cls[n_held].keep != CONFLICT_DROP) {
        *kept = 1;
        memset(sv, 0, sizeof(*sv));
        sv->version_id = p->version_id;
        sv->size = p->size;
        sv->etag = p->etag;
        sv->content_type = p->content_type;
        sv->hlc = p->hlc;
        sv->flags = (p->versioned ? 0 : ENGINE_VF_NULL_VERSION) |
                    (p->marker ? STORE_VF_DELETE_MARKER : 0) | role_flags(cls[n_held].role);
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
    } else if (p->replicated) {
        free_later(b, p->layout, p->layout_len);
    }
    plan_refile(b, p->bucket, p->key, hr, n_held, cls, dec.winner, dec.prev_winner);
    return 0;
}

/* 1 if tombstone (hlc, vv bytes) a is above b: two removals of one id
 * settle on the larger. */
static int
tomb_above(uint64_t hlc_a, const void *vv_a, size_t len_a, const store_version *b)
{
    int c;

    if (hlc_a != b->hlc)
        return hlc_a > b->hlc;
    c = memcmp(vv_a, b->vv, len_a < b->vv_len ? len_a : b->vv_len);
    return c > 0 || (c == 0 && len_a > b->vv_len);
}

/*
 * OBJECT_DELETE in slot i: the tombstone replaces the version's record (so
 * its id stays dead), its data is freed after the commit, and the
 * remaining held versions (with the maximum remaining one, the new winner)
 * are classified again.
 */
static int
plan_delete(engine *e, engine__batch *b, size_t i, const Meridian__ObjectDelete *d, int resync)
{
    store_version_rec *old = NULL, *hr[HELD_MAX];
    conflict_version held[HELD_MAX];
    conflict_class cls[HELD_MAX];
    store_version *sv = &b->vers[i];
    const store_version *ov = NULL;
    size_t vvlen = 0, n_held = 0, winner = CONFLICT_NONE;
    vv v;
    int rc, stored = 0;

    if ((rc = engine__vv_from_msg(d->vv, &v)) != 0 ||
        (rc = vv_encode(&v, b->vvbuf[i], sizeof(b->vvbuf[i]), &vvlen)) != 0)
        return rc;
    rc = store_index_get(e->st, d->bucket, d->key, d->version_id, &old);
    if (rc != 0 && rc != MRD_ENOTFOUND)
        return rc;
    if (rc == MRD_ENOTFOUND && gc_ghost(e, resync, d->hlc))
        return 0; /* its tombstone was purged here: every site has the removal */
    if (rc == 0) {
        b->alive[b->n_alive++] = old;
        ov = store_version_rec_get(old);
        if ((ov->flags & ENGINE_VF_TOMBSTONE) && !tomb_above(d->hlc, b->vvbuf[i], vvlen, ov))
            return 0; /* this removal (or a later one) is already recorded */
    }
    memset(sv, 0, sizeof(*sv));
    sv->version_id = d->version_id;
    sv->etag = "";
    sv->content_type = "";
    sv->hlc = d->hlc;
    sv->flags = STORE_VF_DELETE_MARKER | ENGINE_VF_TOMBSTONE;
    sv->vv = b->vvbuf[i];
    sv->vv_len = vvlen;
    b->ops[b->n_ops++] = (store_index_op){
        .type = STORE_OP_VERSION_PUT, .bucket = d->bucket, .key = d->key, .version = sv};
    if (ov && (ov->flags & ENGINE_VF_TOMBSTONE))
        return 0; /* the version itself was gone already */
    if (ov)
        free_later(b, ov->layout, ov->layout_len);
    if ((rc = held_views(e, b, d->bucket, d->key, d->version_id, NULL, 1, hr, held, &n_held,
                         &stored)) != 0)
        return rc;
    if (n_held == 0) {
        b->ops[b->n_ops++] =
            (store_index_op){.type = STORE_OP_CURRENT_DEL, .bucket = d->bucket, .key = d->key};
        return 0;
    }
    if ((rc = conflict_classify(held, n_held, cls, &winner)) != 0)
        return rc;
    /* always re-point: the removed version may have been current */
    plan_refile(b, d->bucket, d->key, hr, n_held, cls, winner, CONFLICT_NONE);
    return 0;
}

/* Tag replacement: rewrites the held version's user metadata in place (same
 * version id, data and role; the current pointer is left alone) with the new
 * tag set, unless the tags it holds were set by a later (hlc, site). */
typedef struct tags_acc {
    mrd_buf *out;
    unsigned long long hlc;
    unsigned site;
} tags_acc;

static int
tags_keep(void *ud, const char *key, const char *value)
{
    tags_acc *a = ud;

    if (strcmp(key, ENGINE_META_TAGS_HLC) == 0) {
        if (sscanf(value, "%llu.%u", &a->hlc, &a->site) != 2)
            a->hlc = a->site = 0;
        return 0;
    }
    if (strcmp(key, ENGINE_META_TAGGING) == 0)
        return 0;
    if (mrd_buf_append(a->out, key, strlen(key) + 1) != 0 ||
        mrd_buf_append(a->out, value, strlen(value) + 1) != 0)
        return -ENOMEM;
    return 0;
}

static int
plan_tags(engine *e, engine__batch *b, size_t i, const Meridian__ObjectTags *t)
{
    store_version_rec *old = NULL;
    const store_version *hv;
    store_version *rv;
    tags_acc a = {&b->meta[i], 0, 0};
    char stamp[48];
    int rc = store_index_get(e->st, t->bucket, t->key, t->version_id, &old);

    if (rc == MRD_ENOTFOUND)
        return 0; /* that version is not held here (any more): nothing to tag */
    if (rc != 0)
        return rc;
    b->alive[b->n_alive++] = old;
    hv = store_version_rec_get(old);
    if (hv->flags & STORE_VF_DELETE_MARKER)
        return 0;
    mrd_buf_reset(&b->meta[i]);
    if ((rc = engine_meta_each(hv->user_meta, hv->user_meta_len, tags_keep, &a)) != 0)
        return rc;
    if (a.hlc > t->hlc || (a.hlc == t->hlc && a.site >= t->site))
        return 0; /* a later (or this very) tagging already holds */
    snprintf(stamp, sizeof(stamp), "%llu.%u", (unsigned long long)t->hlc, (unsigned)t->site);
    if (*t->tagging &&
        (mrd_buf_append(&b->meta[i], ENGINE_META_TAGGING, sizeof(ENGINE_META_TAGGING)) != 0 ||
         mrd_buf_append(&b->meta[i], t->tagging, strlen(t->tagging) + 1) != 0))
        return -ENOMEM;
    if (mrd_buf_append(&b->meta[i], ENGINE_META_TAGS_HLC, sizeof(ENGINE_META_TAGS_HLC)) != 0 ||
        mrd_buf_append(&b->meta[i], stamp, strlen(stamp) + 1) != 0)
        return -ENOMEM;
    rv = &b->refile[b->n_refile++];
    *rv = *hv;
    rv->user_meta = b->meta[i].data;
    rv->user_meta_len = b->meta[i].len;
    b->ops[b->n_ops++] = (store_index_op){
        .type = STORE_OP_VERSION_PUT,
        .bucket = t->bucket,
        .key = t->key,
        .version = rv,
    };
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
    case MERIDIAN__WAL_RECORD__BODY_MULTIPART_COMPLETE:
        *bucket = r->multipart_complete->bucket;
        *key = r->multipart_complete->key;
        break;
    case MERIDIAN__WAL_RECORD__BODY_OBJECT_DELETE:
        *bucket = r->object_delete->bucket;
        *key = r->object_delete->key;
        break;
    case MERIDIAN__WAL_RECORD__BODY_OBJECT_TAGS:
        *bucket = r->object_tags->bucket;
        *key = r->object_tags->key;
        break;
    case MERIDIAN__WAL_RECORD__BODY_BUCKET_CREATE:
        *bucket = r->bucket_create->bucket;
        break;
    case MERIDIAN__WAL_RECORD__BODY_BUCKET_DELETE:
        *bucket = r->bucket_delete->bucket;
        break;
    case MERIDIAN__WAL_RECORD__BODY_BUCKET_CONFIG:
        *bucket = r->bucket_config->bucket;
        break;
    case MERIDIAN__WAL_RECORD__BODY_GC_PURGE:
        *bucket = r->gc_purge->bucket;
        *key = r->gc_purge->key;
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

/* A put or delete marker into a bucket this site has no record of: the
 * bucket's create is still in flight from another origin, or the bucket was
 * deleted concurrently with this write (docs/conflicts.md, "Buckets"). Either
 * way the bucket is treated as live, so the write is never lost: a bucket
 * record is planned (hlc 0, so any real create or delete settles it). */
static int
plan_revive(engine *e, engine__batch *b, size_t i, const char *bucket)
{
    Meridian__BucketCreate bc = MERIDIAN__BUCKET_CREATE__INIT;
    void *blob = NULL;
    size_t len = 0, n;
    int rc = store_bucket_get(e->st, bucket, &blob, &len);

    free(blob);
    if (rc != MRD_ENOTFOUND)
        return rc;
    bc.bucket = (char *)bucket;
    bc.owner = "";
    bc.region = (char *)e->conf->region;
    n = meridian__bucket_create__get_packed_size(&bc);
    if (!(b->revive[i] = malloc(n ? n : 1)))
        return -ENOMEM;
    meridian__bucket_create__pack(&bc, b->revive[i]);
    b->ops[b->n_ops++] = (store_index_op){
        .type = STORE_OP_BUCKET_PUT, .bucket = bucket, .blob = b->revive[i], .blob_len = n};
    pthread_mutex_lock(&e->ap_mu);
    e->buckets_revived++;
    pthread_mutex_unlock(&e->ap_mu);
    return 0;
}

/* A bucket create or configuration record: the stored blob merged with it
 * (engine_bucket.c), written when it changes. Concurrent creates settle on
 * the larger (hlc, create bytes), each configuration register on the larger
 * (hlc, site), at every site whatever the arrival order. */
static int
plan_bucket(engine *e, engine__batch *b, size_t i, const Meridian__BucketCreate *create,
            const Meridian__BucketConfig *cfg)
{
    Meridian__BucketCreate inc = MERIDIAN__BUCKET_CREATE__INIT;
    const char *bucket = create ? create->bucket : cfg->bucket;
    void *blob = NULL;
    size_t len = 0, n = 0;
    int rc = store_bucket_get(e->st, bucket, &blob, &len);

    if (rc != 0 && rc != MRD_ENOTFOUND)
        return rc;
    if (create) {
        inc = *create;
    } else {
        engine__bucket_config_as_create(cfg, &inc);
    }
    rc = engine__bucket_merge(rc == 0 ? blob : NULL, len, &inc, create != NULL, &b->blobs[i], &n);
    free(blob);
    if (rc == 0 && b->blobs[i])
        b->ops[b->n_ops++] = (store_index_op){
            .type = STORE_OP_BUCKET_PUT, .bucket = bucket, .blob = b->blobs[i], .blob_len = n};
    return rc;
}

/* A peer's bucket delete applies only when the bucket holds no live
 * object here and the delete is not older than the bucket's create (the
 * existence register of docs/conflicts.md); otherwise the bucket stays. */
static int
replicated_delete_wins(engine *e, const Meridian__BucketDelete *bd)
{
    Meridian__BucketCreate *bc;
    void *blob = NULL;
    size_t len = 0;
    int live = 0, wins = 1;

    if (store_bucket_get(e->st, bd->bucket, &blob, &len) != 0)
        return 0; /* nothing to delete */
    bc = meridian__bucket_create__unpack(NULL, len, blob);
    if (bc && bc->hlc > bd->hlc)
        wins = 0; /* re-created after this delete */
    if (bc)
        meridian__bucket_create__free_unpacked(bc, NULL);
    free(blob);
    if (wins && engine__bucket_has_data(e, bd->bucket, &live) == 0 && live)
        wins = 0;
    if (!wins) {
        pthread_mutex_lock(&e->ap_mu);
        e->buckets_revived++;
        pthread_mutex_unlock(&e->ap_mu);
    }
    return wins;
}

/* store_list_cb: counts the live (not tombstone) versions of one key. */
typedef struct live_count {
    const char *key;
    size_t n;
} live_count;

static int
live_count_cb(void *user, const char *key, const store_version *v)
{
    live_count *c = user;

    if (strcmp(key, c->key) != 0)
        return 1; /* past it (a longer key with the same prefix) */
    if (!(v->flags & ENGINE_VF_TOMBSTONE))
        c->n++;
    return c->n > 1;
}

/*
 * GC_PURGE (engine_gc.c): removes each listed version that is still what the
 * sweep saw (the same stamp) and still purgeable as the index stands at this
 * LSN: a tombstone, a hidden null delete marker, a hidden loser that holds
 * data (its data freed after the commit), or the key's only version when it
 * is its current null delete marker. The sweep checked stability and grace; this check
 * makes a write that arrived after the sweep looked win, and replay repeat it.
 */
static int
plan_gc(engine *e, engine__batch *b, const Meridian__GcPurge *g)
{
    size_t n = g->n_version_ids < g->n_hlcs ? g->n_version_ids : g->n_hlcs;
    int rc = 0;

    if (n > ENGINE_GC_PURGE_MAX)
        n = ENGINE_GC_PURGE_MAX; /* the ops a record may add (REC_OPS_MAX) */
    for (size_t j = 0; j < n && rc == 0; j++) {
        store_version_rec *rec = NULL;
        const store_version *v;
        int tomb, lone = 0, loser;

        rc = store_index_get(e->st, g->bucket, g->key, g->version_ids[j], &rec);
        if (rc == MRD_ENOTFOUND) {
            rc = 0;
            continue;
        }
        if (rc != 0)
            break;
        v = store_version_rec_get(rec);
        tomb = (v->flags & ENGINE_VF_TOMBSTONE) != 0;
        if (!tomb && v->hlc == g->hlcs[j] &&
            (v->flags & (STORE_VF_DELETE_MARKER | ENGINE_VF_NULL_VERSION | STORE_VF_NONCURRENT |
                         STORE_VF_CONFLICT)) == (STORE_VF_DELETE_MARKER | ENGINE_VF_NULL_VERSION)) {
            live_count c = {g->key, 0};
            rc = store_index_list(e->st, g->bucket, g->key, NULL, NULL, STORE_LIST_VERSIONS,
                                  live_count_cb, &c);
            lone = rc == 0 && c.n == 1;
        }
        loser = (v->flags & ENGINE_GC_HIDDEN_MARKER_MASK) == ENGINE_GC_HIDDEN_LOSER;
        if (rc == 0 && v->hlc == g->hlcs[j] &&
            (tomb || lone || loser ||
             (v->flags & ENGINE_GC_HIDDEN_MARKER_MASK) == ENGINE_GC_HIDDEN_MARKER)) {
            b->ops[b->n_ops++] = (store_index_op){.type = STORE_OP_VERSION_DEL,
                                                  .bucket = g->bucket,
                                                  .key = g->key,
                                                  .version_id = g->version_ids[j]};
            if (loser) {
                free_later(b, v->layout, v->layout_len); /* rec lives until the flush */
                b->alive[b->n_alive++] = rec;
                rec = NULL;
                __atomic_add_fetch(&e->gc_losers, 1, __ATOMIC_RELAXED);
                __atomic_add_fetch(&e->gc_loser_bytes, v->size, __ATOMIC_RELAXED);
            } else {
                __atomic_add_fetch(tomb ? &e->gc_tombstones : &e->gc_markers, 1, __ATOMIC_RELAXED);
            }
        }
        store_version_rec_free(rec);
    }
    return rc;
}

/* The HLC stamp a record carries (0 for kinds without one). */
static uint64_t
record_hlc(const Meridian__WalRecord *rec)
{
    switch (rec->body_case) {
    case MERIDIAN__WAL_RECORD__BODY_BUCKET_CREATE:
        return rec->bucket_create->hlc;
    case MERIDIAN__WAL_RECORD__BODY_BUCKET_CONFIG:
        return rec->bucket_config->hlc;
    case MERIDIAN__WAL_RECORD__BODY_BUCKET_DELETE:
        return rec->bucket_delete->hlc;
    case MERIDIAN__WAL_RECORD__BODY_OBJECT_PUT:
        return rec->object_put->hlc;
    case MERIDIAN__WAL_RECORD__BODY_DELETE_MARKER:
        return rec->delete_marker->hlc;
    case MERIDIAN__WAL_RECORD__BODY_MULTIPART_COMPLETE:
        return rec->multipart_complete->hlc;
    case MERIDIAN__WAL_RECORD__BODY_OBJECT_DELETE:
        return rec->object_delete->hlc;
    case MERIDIAN__WAL_RECORD__BODY_OBJECT_TAGS:
        return rec->object_tags->hlc;
    default:
        return 0;
    }
}

/* Plans one record (a local one, or the original inside a replicated one)
 * into slot i. */
static int
plan_record(engine *e, engine__batch *b, size_t i, Meridian__WalRecord *rec, int replicated,
            int resync)
{
    put_view pv;
    int rc = 0, kept = 0;

    memset(&pv, 0, sizeof(pv));
    pv.replicated = replicated;
    pv.resync = resync;
    switch (rec->body_case) {
    case MERIDIAN__WAL_RECORD__BODY_BUCKET_CREATE:
        rc = plan_bucket(e, b, i, rec->bucket_create, NULL);
        break;
    case MERIDIAN__WAL_RECORD__BODY_BUCKET_CONFIG:
        rc = plan_bucket(e, b, i, NULL, rec->bucket_config);
        break;
    case MERIDIAN__WAL_RECORD__BODY_BUCKET_DELETE:
        if (!replicated || replicated_delete_wins(e, rec->bucket_delete))
            b->ops[b->n_ops++] =
                (store_index_op){.type = STORE_OP_BUCKET_DEL, .bucket = rec->bucket_delete->bucket};
        break;
    case MERIDIAN__WAL_RECORD__BODY_OBJECT_PUT: {
        Meridian__ObjectPut *op = rec->object_put;
        pv.bucket = op->bucket;
        pv.key = op->key;
        pv.version_id = op->version_id;
        pv.etag = op->etag;
        pv.content_type = op->content_type;
        pv.vv = op->vv;
        pv.hlc = op->hlc;
        pv.size = op->size;
        pv.meta = op->user_meta;
        pv.n_meta = op->n_user_meta;
        pv.layout = op->layout.data;
        pv.layout_len = op->layout.len;
        pv.versioned = op->versioned;
        break;
    }
    case MERIDIAN__WAL_RECORD__BODY_DELETE_MARKER: {
        Meridian__DeleteMarker *dm = rec->delete_marker;
        pv.bucket = dm->bucket;
        pv.key = dm->key;
        pv.version_id = dm->version_id;
        pv.etag = "";
        pv.content_type = "";
        pv.vv = dm->vv;
        pv.hlc = dm->hlc;
        pv.marker = 1;
        pv.versioned = dm->versioned;
        break;
    }
    case MERIDIAN__WAL_RECORD__BODY_MULTIPART_COMPLETE: {
        Meridian__MultipartComplete *mc = rec->multipart_complete;
        if (replicated)
            break; /* senders turn these into object puts; a layout from
                      another site means nothing here */
        pv.bucket = mc->bucket;
        pv.key = mc->key;
        pv.version_id = mc->version_id;
        pv.etag = mc->etag;
        pv.content_type = mc->content_type;
        pv.vv = mc->vv;
        pv.hlc = mc->hlc;
        pv.size = mc->size;
        pv.meta = mc->user_meta;
        pv.n_meta = mc->n_user_meta;
        pv.layout = mc->layout.data;
        pv.layout_len = mc->layout.len;
        pv.versioned = mc->versioned;
        /* the upload goes in the same transaction as the object appears */
        b->ops[b->n_ops++] = (store_index_op){.type = STORE_OP_MPU_FINISH,
                                              .bucket = mc->bucket,
                                              .key = mc->key,
                                              .version_id = mc->upload_id,
                                              .blob = mc->layout.data,
                                              .blob_len = mc->layout.len};
        break;
    }
    case MERIDIAN__WAL_RECORD__BODY_OBJECT_DELETE:
        rc = plan_delete(e, b, i, rec->object_delete, resync);
        break;
    case MERIDIAN__WAL_RECORD__BODY_OBJECT_TAGS:
        rc = plan_tags(e, b, i, rec->object_tags);
        break;
    case MERIDIAN__WAL_RECORD__BODY_GC_PURGE:
        if (!replicated)
            rc = plan_gc(e, b, rec->gc_purge);
        break;
    default:
        /* Record kinds this build does not know: they still advance the
         * LSN. */
        break;
    }
    if (rc == 0 && pv.bucket) {
        rc = plan_version(e, b, i, &pv, &kept);
        /* only a version that is stored brings its bucket back: a
         * duplicate, a ghost or a dropped loser leaves no trace here */
        if (rc == 0 && kept && replicated && !pv.marker)
            rc = plan_revive(e, b, i, pv.bucket);
    }
    return rc;
}

int
engine__batch_add(engine *e, engine__batch *b, Meridian__WalRecord *rec, uint64_t lsn)
{
    return engine__batch_add_inner(e, b, rec, NULL, lsn);
}

int
engine__batch_add_inner(engine *e, engine__batch *b, Meridian__WalRecord *rec,
                        Meridian__WalRecord *inner, uint64_t lsn)
{
    Meridian__WalRecord *target = rec;
    const char *bucket, *key;
    size_t i;
    int rc = 0;

    if (rec->body_case == MERIDIAN__WAL_RECORD__BODY_REPLICATED_APPLY && !inner) {
        Meridian__ReplicatedApply *ra = rec->replicated_apply;
        rc = wal_record_decode((uint16_t)ra->original_type, ra->original.data, ra->original.len,
                               &inner);
        if (rc != 0) {
            wal_record_free(rec);
            return rc;
        }
    }
    if (inner)
        target = inner;
    record_target(target, &bucket, &key);
    if (b->n_recs == BATCH_RECS || b->n_ops + REC_OPS_MAX + 1 > BATCH_OPS ||
        b->n_alive + HELD_MAX + 2 > BATCH_OPS || b->n_free + HELD_MAX + 1 > BATCH_OPS ||
        touches(b, bucket, key)) {
        if ((rc = engine__batch_flush(e, b)) != 0) {
            wal_record_free(rec);
            wal_record_free(inner);
            return rc;
        }
    }
    i = b->n_recs++;
    assert(i < BATCH_RECS);
    b->recs[i] = rec;
    b->inner[i] = inner;
    b->bkt[i] = bucket;
    b->key[i] = key;
    b->lsn = lsn;
    if ((rc = plan_record(e, b, i, target, inner != NULL,
                          inner != NULL && rec->replicated_apply->origin_lsn == 0)) != 0)
        return rc;
    if (!inner && record_hlc(rec) > b->hlc_max)
        b->hlc_max = record_hlc(rec);
    if (inner && rec->replicated_apply->origin_lsn) { /* 0: anti-entropy, no progress */
        Meridian__ReplicatedApply *ra = rec->replicated_apply;
        b->ra_origin[i] = ra->origin_site;
        b->ra_lsn[i] = ra->origin_lsn;
        snprintf(b->ra_key[i], sizeof(b->ra_key[i]), ENGINE_RA_KEY_FMT, ra->origin_site);
        snprintf(b->ra_val[i], sizeof(b->ra_val[i]), "%llu", (unsigned long long)ra->origin_lsn);
        b->ops[b->n_ops++] = (store_index_op){.type = STORE_OP_META_PUT,
                                              .key = b->ra_key[i],
                                              .blob = b->ra_val[i],
                                              .blob_len = strlen(b->ra_val[i])};
    }
    return 0;
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
finish(engine__pending *list, int status)
{
    while (list) {
        engine__pending *n = list->next;
        engine__complete_on(list->cq, list->cb, list->ud, status ? status : list->status);
        wal_record_free(list->rec);
        wal_record_free(list->inner);
        free(list->payload);
        free(list);
        list = n;
    }
}

static const char *const io_op_names[] = {"write", "fdatasync", "segment create", "truncate"};

void
engine__failure_text(const char *meta_dir, const wal_status *ws, int index_rc, char *out, size_t n)
{
    struct statvfs fs;

    /* the usual cause, and LMDB reports its short writes as EIO */
    if (statvfs(meta_dir, &fs) == 0 && (uint64_t)fs.f_bavail * fs.f_frsize < 1048576)
        snprintf(out, n, "meta_dir full");
    else if (ws->failed)
        snprintf(out, n, "WAL %s failed: %s",
                 io_op_names[ws->io_op >= 0 && ws->io_op < 4 ? ws->io_op : 0],
                 mrd_strerror(ws->io_error));
    else
        snprintf(out, n, "index commit failed: %s", mrd_strerror(index_rc ? index_rc : -EIO));
}

/*
 * Says once, loudly, why this site stopped taking writes: which WAL
 * operation failed and with what error, or that the index commit failed;
 * and how much room the meta_dir's file system has left, since a full disk
 * is the usual cause and LMDB reports its short writes as EIO.
 */
static void
say_failed(engine *e, int index_rc)
{
    wal_status ws;
    struct statvfs fs;
    char room[96] = "";

    if (statvfs(e->conf->meta_dir, &fs) == 0) {
        uint64_t avail = (uint64_t)fs.f_bavail * fs.f_frsize;
        snprintf(room, sizeof(room), " meta_dir_free_bytes=%llu%s", (unsigned long long)avail,
                 avail < 1048576 ? " cause=\"disk full\"" : "");
    }
    if (wal_get_status(e->w, &ws) == 0 && ws.failed) {
        int op = ws.io_op >= 0 && ws.io_op < 4 ? ws.io_op : 0;
        MRD_ERROR("engine.writes_refused",
                  "what=wal op=\"%s\" error=\"%s\" segment=%s%s reason=\"the write-ahead log "
                  "could not make records durable; every write is refused until the disk is "
                  "fixed and meridiand restarted (no acknowledged write is lost)\"",
                  io_op_names[op], mrd_strerror(ws.io_error), ws.failed_segment, room);
    } else {
        MRD_ERROR("engine.writes_refused",
                  "what=index error=\"%s\"%s reason=\"the index commit failed; every write is "
                  "refused until the disk is fixed and meridiand restarted (the WAL holds every "
                  "acknowledged write and replays it)\"",
                  mrd_strerror(index_rc), room);
    }
}

void *
engine__applier_main(void *arg)
{
    engine *e = arg;

    for (;;) {
        engine__pending *list, *p, *done_head = NULL, **done_tail = &done_head;
        int rc = 0, failed, was_failed;

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
            if (p->status == 0 && !failed && rc == 0 && p->rec) {
                rc = engine__batch_add_inner(e, e->batch, p->rec, p->inner, p->lsn);
                p->rec = p->inner = NULL; /* the batch's now */
            } else if (p->status == 0 && !failed && rc == 0) {
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
        was_failed = e->failed;
        for (p = done_head; p; p = p->next)
            if (p->status != 0)
                e->failed = 1; /* the WAL failed: it is read-only now, and so are we */
        for (p = done_head; p; p = p->next) {
            if (p->status == 0 && rc == 0 && !failed && p->lsn > e->applied_lsn)
                e->applied_lsn = p->lsn;
        }
        if (rc != 0) {
            e->apply_errors++;
            e->failed = 1;
            if (!e->fail_index_rc)
                e->fail_index_rc = rc;
        }
        pthread_mutex_unlock(&e->ap_mu);
        if (e->failed && !was_failed)
            say_failed(e, rc);
        finish(done_head, rc != 0 || failed ? MRD_EDURABLE : 0);
    }
    return NULL;
}
