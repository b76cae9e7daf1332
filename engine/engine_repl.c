/*
 * engine_repl.c - applying records that originated at another site.
 *
 * The receiving side of replication hands the engine a contiguous range of
 * a peer's WAL, (through_lsn names its end), as the records it must apply:
 * the peer leaves out records it did not originate itself, so a range can
 * hold fewer records than LSNs, or none. For each record above what was
 * already appended from that origin, the engine appends a ReplicatedApply
 * WAL record (origin site, origin LSN, the original record) - with group
 * commit, like a local write - and the applier plans the original through
 * the same code as a local record (engine_apply.c), with the conflict
 * decision over every version the index holds for the key. The index
 * transaction that applies it also stores the origin LSN under
 * "repl.applied.<origin>", so progress and data commit together.
 *
 * Cost: the records are read where the caller holds them, never copied
 * (every append happens before engine_repl_apply returns). Each original is
 * decoded once, which checks it before it can reach the WAL (one that does
 * not decode would stop the applier), and that decoded record travels with
 * the append to the applier (engine__append_decoded), which therefore does
 * not decode the ReplicatedApply and its original again. The WAL holds the
 * packed ReplicatedApply as ever; replay decodes it.
 *
 * Exactly once: appended (under mut_mu) filters duplicates, e.g. a batch
 * re-sent after a reconnect; a crash between append and index commit is
 * covered by WAL replay, which re-applies the ReplicatedApply records and
 * raises applied again. A range of skipped LSNs only raises the in-memory
 * progress: after a restart the peer re-sends it (it resumes from what we
 * announce), which costs a message and changes nothing.
 *
 * The callback fires once every record of the call is durable and in the
 * index; then applied is raised to through_lsn, which is what the replicator
 * acks.
 *
 * A resync marker (engine_repl_set_applied: "this site holds the origin's
 * state as of LSN S") stores S at once. Records below S still on their way
 * to the index would store their lower LSN when they commit; the applier
 * then writes S back (engine__ra_committed), so the stored applied LSN never
 * falls below a marker, and neither does the one in memory. Calls for one origin come in LSN order
 * and may be pipelined: the appends happen on the caller's thread, so they reach the WAL in call
 * order, and a range that would leave a gap after a failed one is refused.
 */
#include "engine_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct engine__ra *
ra_slot(engine *e, uint32_t origin)
{
    for (int i = 0; i < e->n_ra; i++)
        if (e->ra[i].origin == origin)
            return &e->ra[i];
    return NULL;
}

/* Reads origin's applied LSN from the index into a fresh slot r. */
static int
ra_read(engine *e, uint32_t origin, struct engine__ra *r)
{
    char key[32];
    int rc;

    memset(r, 0, sizeof(*r));
    r->origin = origin;
    snprintf(key, sizeof(key), ENGINE_RA_KEY_FMT, r->origin);
    rc = engine__meta_u64(e, key, &r->applied);
    if (rc != 0 && rc != MRD_ENOTFOUND)
        return rc;
    r->appended = r->applied;
    return 0;
}

int
engine__ra_load(engine *e)
{
    int rc = 0;

    for (int i = 0; i < e->conf->n_peers && e->n_ra < MRD_MAX_PEERS && rc == 0; i++)
        if ((rc = ra_read(e, e->conf->peers[i].id, &e->ra[e->n_ra])) == 0)
            e->n_ra++;
    return rc;
}

int
engine_repl_origin_add(engine *e, uint32_t origin)
{
    struct engine__ra r;
    int rc = 0;

    if (!e || origin == 0)
        return MRD_EINVAL;
    pthread_mutex_lock(&e->mut_mu);
    if (!ra_slot(e, origin)) {
        if (e->n_ra >= MRD_MAX_PEERS)
            rc = MRD_ETOOBIG;
        else if ((rc = ra_read(e, origin, &r)) == 0) {
            /* the slot is whole before the count says it exists: readers
             * (ra_slot) look without the lock */
            e->ra[e->n_ra] = r;
            __atomic_store_n(&e->n_ra, e->n_ra + 1, __ATOMIC_RELEASE);
        }
    }
    pthread_mutex_unlock(&e->mut_mu);
    if (rc == 0 && (rc = wal_peer_add(e->w, origin, 0)) == MRD_EEXIST)
        rc = 0;
    /* so that the next open holds segments for it before retention runs */
    if (rc == 0)
        rc = engine__wal_peers_save(e);
    return rc;
}

int
engine_repl_origin_remove(engine *e, uint32_t origin)
{
    int rc;

    if (!e || origin == 0)
        return MRD_EINVAL;
    rc = wal_peer_remove(e->w, origin);
    if (rc == 0 || rc == MRD_ENOTFOUND)
        rc = engine__wal_peers_save(e);
    return rc;
}

void
engine__ra_applied(engine *e, uint32_t origin, uint64_t lsn)
{
    struct engine__ra *r = ra_slot(e, origin);

    if (!r)
        return;
    pthread_mutex_lock(&e->ap_mu);
    if (lsn > r->applied)
        r->applied = lsn;
    pthread_mutex_unlock(&e->ap_mu);
}

void
engine__ra_committed(engine *e, uint32_t origin, uint64_t lsn)
{
    struct engine__ra *r = ra_slot(e, origin);
    uint64_t floor = 0;
    char key[32], val[24];

    if (!r)
        return;
    engine__ra_applied(e, origin, lsn);
    pthread_mutex_lock(&e->ap_mu);
    floor = r->floor;
    pthread_mutex_unlock(&e->ap_mu);
    if (floor <= lsn)
        return;
    /* a record below the marker committed after it: put the marker back
     * (best effort: if this fails, a restart re-sends from lsn + 1 or
     * runs another resync pass, which the mark asks for anyway) */
    snprintf(key, sizeof(key), ENGINE_RA_KEY_FMT, origin);
    snprintf(val, sizeof(val), "%llu", (unsigned long long)floor);
    if (store_meta_put(e->st, key, val, strlen(val)) != 0)
        MRD_WARN("engine.repl.applied_rewrite_fail", "origin=%u lsn=%llu", origin,
                 (unsigned long long)floor);
}

/* One engine_repl_apply call: counts its records down. The records are
 * only read while the call appends them (on the caller's thread, before it
 * returns), so they are borrowed, never copied: each is packed into its
 * ReplicatedApply record, which is what the WAL and the applier keep. */
typedef struct rcall {
    engine *e;
    uint32_t origin;
    uint64_t from, through;
    int left;   /* appends whose callback has not run, plus one for the submitter */
    int resync; /* anti-entropy versions: origin LSN 0, no duplicate filter */
    int status;
    engine_cb cb;
    void *ud;
    size_t n;
    const engine_repl_rec *recs; /* the caller's, valid until submit returns */
} rcall;

static void
rcall_free(rcall *c)
{
    free(c);
}

/* Runs on the completion queue's thread, once per append and once for the
 * submitter; the last one answers. */
static void
rcall_one(void *ud, int status)
{
    rcall *c = ud;

    if (status != 0 && c->status == 0)
        c->status = status;
    if (--c->left > 0)
        return;
    if (c->status == 0 && !c->resync)
        engine__ra_applied(c->e, c->origin, c->through);
    c->cb(c->ud, c->status);
    rcall_free(c);
}

/* What decoding the packed ReplicatedApply gives, minus the original's
 * bytes (the applier reads the decoded original instead): heap-allocated
 * so that wal_record_free frees it like a decoded record. */
static Meridian__WalRecord *
ra_decoded(uint32_t origin, uint64_t lsn, uint32_t type)
{
    Meridian__WalRecord *rec = malloc(sizeof(*rec));
    Meridian__ReplicatedApply *ra = malloc(sizeof(*ra));

    if (!rec || !ra) {
        free(rec);
        free(ra);
        return NULL;
    }
    meridian__wal_record__init(rec);
    meridian__replicated_apply__init(ra);
    ra->origin_site = origin;
    ra->origin_lsn = lsn;
    ra->original_type = type;
    rec->format = WAL_RECORD_FORMAT;
    rec->body_case = MERIDIAN__WAL_RECORD__BODY_REPLICATED_APPLY;
    rec->replicated_apply = ra;
    return rec;
}

/* Appends r as a ReplicatedApply. The original is decoded once, here: that
 * checks it (it must decode and must not nest, wal_record_decode) before it
 * can reach the WAL, and the applier then plans from that decoded record
 * rather than decoding the WAL payload and the original again. */
static int
append_one(engine *e, rcall *c, const engine_repl_rec *r)
{
    Meridian__WalRecord rec = MERIDIAN__WAL_RECORD__INIT;
    Meridian__ReplicatedApply ra = MERIDIAN__REPLICATED_APPLY__INIT;
    Meridian__WalRecord *inner = NULL, *dec;
    int rc;

    if ((rc = wal_record_decode(r->type, r->payload, r->len, &inner)) != 0)
        return rc;
    ra.origin_site = c->origin;
    ra.origin_lsn = c->resync ? 0 : r->lsn;
    ra.original_type = r->type;
    ra.original.data = (uint8_t *)r->payload;
    ra.original.len = r->len;
    rec.body_case = MERIDIAN__WAL_RECORD__BODY_REPLICATED_APPLY;
    rec.replicated_apply = &ra;
    if (!(dec = ra_decoded(ra.origin_site, ra.origin_lsn, ra.original_type))) {
        wal_record_free(inner);
        return -ENOMEM;
    }
    rc = engine__append_decoded(e, &rec, WAL_REC_REPLICATED_APPLY, dec, inner, rcall_one, c);
    if (rc != 0) {
        wal_record_free(dec);
        wal_record_free(inner);
    }
    return rc;
}

static void
rcall_work(void *arg)
{
    rcall *c = arg;
    engine *e = c->e;
    struct engine__ra *slot = ra_slot(e, c->origin);
    int rc = 0, failed;

    pthread_mutex_lock(&e->ap_mu);
    failed = e->failed;
    pthread_mutex_unlock(&e->ap_mu);
    pthread_mutex_lock(&e->mut_mu);
    if (!c->resync && c->from > slot->appended + 1)
        rc = MRD_EBUSY; /* a gap: an earlier range failed; the sender must resend it */
    for (size_t i = 0; i < c->n && rc == 0 && !failed; i++) {
        if (c->resync) {
            c->left++;
            if ((rc = append_one(e, c, &c->recs[i])) != 0)
                c->left--;
            continue;
        }
        if (c->recs[i].lsn <= slot->appended) {
            slot->duplicates++;
            continue;
        }
        c->left++;
        if ((rc = append_one(e, c, &c->recs[i])) != 0) {
            c->left--;
            break;
        }
        slot->appended = c->recs[i].lsn;
        slot->records++;
    }
    if (rc == 0 && !failed && !c->resync && c->through > slot->appended)
        slot->appended = c->through;
    pthread_mutex_unlock(&e->mut_mu);
    if (failed)
        rc = MRD_EDURABLE;
    /* the submitter's share; answers now if nothing was appended */
    engine__complete(e, rcall_one, c, rc);
}

static int
submit(engine *e, uint32_t origin, uint64_t from_lsn, const engine_repl_rec *recs, size_t n,
       uint64_t through_lsn, int resync, engine_cb cb, void *ud)
{
    rcall *c;

    if (!(c = calloc(1, sizeof(*c))))
        return -ENOMEM;
    c->e = e;
    c->origin = origin;
    c->from = from_lsn;
    c->through = through_lsn;
    c->resync = resync;
    c->left = 1;
    c->cb = cb;
    c->ud = ud;
    c->n = n;
    c->recs = recs;
    /* On the caller's thread: decoding and wal_append never block, and
     * calls must reach the WAL in the order they are made. */
    rcall_work(c);
    return 0;
}

int
engine_repl_apply(engine *e, uint32_t origin, uint64_t from_lsn, const engine_repl_rec *recs,
                  size_t n, uint64_t through_lsn, engine_cb cb, void *ud)
{
    if (!e || !cb || (n && !recs) || !ra_slot(e, origin) || from_lsn == 0 ||
        from_lsn > through_lsn || (n && recs[0].lsn < from_lsn))
        return MRD_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!recs[i].lsn || recs[i].lsn > through_lsn || (i && recs[i].lsn <= recs[i - 1].lsn) ||
            !wal_rec_forwarded(recs[i].type) || !recs[i].type)
            return MRD_EINVAL;
    return submit(e, origin, from_lsn, recs, n, through_lsn, 0, cb, ud);
}

int
engine_resync_apply(engine *e, uint32_t origin, const engine_repl_rec *recs, size_t n, engine_cb cb,
                    void *ud)
{
    if (!e || !cb || (n && !recs) || !ra_slot(e, origin))
        return MRD_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!wal_rec_forwarded(recs[i].type) || !recs[i].type)
            return MRD_EINVAL;
    return submit(e, origin, 0, recs, n, 0, 1, cb, ud);
}

int
engine_repl_set_applied(engine *e, uint32_t origin, uint64_t lsn)
{
    struct engine__ra *slot = e ? ra_slot(e, origin) : NULL;
    char key[32], val[24];
    int rc;

    if (!slot)
        return MRD_EINVAL;
    pthread_mutex_lock(&e->mut_mu);
    if (lsn <= slot->appended) {
        pthread_mutex_unlock(&e->mut_mu);
        return 0;
    }
    /* before the put: a record below lsn that the applier commits after it
     * writes lsn back (engine__ra_committed) */
    pthread_mutex_lock(&e->ap_mu);
    if (lsn > slot->floor)
        slot->floor = lsn;
    pthread_mutex_unlock(&e->ap_mu);
    snprintf(key, sizeof(key), ENGINE_RA_KEY_FMT, origin);
    snprintf(val, sizeof(val), "%llu", (unsigned long long)lsn);
    rc = store_meta_put(e->st, key, val, strlen(val));
    if (rc == 0)
        slot->appended = lsn;
    pthread_mutex_unlock(&e->mut_mu);
    if (rc == 0)
        engine__ra_applied(e, origin, lsn);
    return rc;
}

int
engine_repl_progress(engine *e, engine_repl_state *out, int max)
{
    int n = 0;

    if (!e || !out || max < 0)
        return MRD_EINVAL;
    pthread_mutex_lock(&e->mut_mu);
    pthread_mutex_lock(&e->ap_mu);
    for (int i = 0; i < e->n_ra && n < max; i++, n++) {
        out[n].origin = e->ra[i].origin;
        out[n].applied = e->ra[i].applied;
        out[n].records = e->ra[i].records;
        out[n].duplicates = e->ra[i].duplicates;
    }
    pthread_mutex_unlock(&e->ap_mu);
    pthread_mutex_unlock(&e->mut_mu);
    return n;
}

int
engine_local_watermark(engine *e, uint64_t *lsn, uint64_t *hlc)
{
    wal_status *ws = malloc(sizeof(*ws));
    int rc;

    if (!ws)
        return -ENOMEM;
    /* under mut_mu no write sits between its stamp and its append */
    pthread_mutex_lock(&e->mut_mu);
    rc = wal_get_status(e->w, ws);
    if (rc == 0) {
        *lsn = ws->next_lsn - 1;
        *hlc = mrd_hlc_now(e->hlc);
    }
    pthread_mutex_unlock(&e->mut_mu);
    free(ws);
    return rc;
}

wal *
engine_wal(engine *e)
{
    return e ? e->w : NULL;
}
