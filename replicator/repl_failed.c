/*
 * repl_failed.c - the records a peer has not applied past the replication
 * deadline: x-amz-replication-status FAILED, counted per peer and listed.
 *
 * What is FAILED needs no index scan. This site's WAL holds, in LSN order,
 * every record it originated; a peer has applied them up to its acked LSN.
 * Records are stamped (HLC) as they are appended, so along the WAL the
 * stamps grow: the records after the acked LSN whose stamp is older than
 * now - failed_after are exactly the FAILED ones, and they form a prefix of
 * the unacked range. Reading the WAL from acked + 1 up to the first record
 * of ours stamped after the cutoff finds them all (ReplicatedApply records,
 * other sites' writes applied here, are passed over: their origin sends
 * them).
 *
 *   - The count (repl__failed_tick, once per heartbeat tick per lagging
 *     peer) is incremental: while the ack stands still the frontier only
 *     moves forward, so each job reads from where the last one stopped, at
 *     most FAILED_SCAN_MAX records. An ack resets it.
 *   - The listing (repl_failed_scan, the admin API) reads the same range
 *     from the acked LSN (or a continuation LSN) up to the cutoff.
 *
 * While a peer needs a resync the acked LSN is its stream's: the writes the
 * stream delivered (which read COMPLETED, repl_held) are never listed, and
 * the holes at or below the pass's snapshot, which the WAL may no longer
 * name, are not either (failed_unknown says the list is partial).
 *
 * Invariants: a record is counted at most once per acked LSN; the acked LSN
 * used is the larger of what the sender knows and the WAL cursor (after a
 * restart the sender knows nothing until the peer's Hello). Jobs hold the
 * repl's life and find the peer by id when they come back: repl_free or a
 * topology change may have run meanwhile.
 */
#include "repl_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "wal.h"
#include "wal.pb-c.h"

#define FAILED_SCAN_MAX 200000 /* records one count job reads */

static const char *
kind_name(uint16_t type)
{
    switch (type) {
    case WAL_REC_OBJECT_PUT:
        return "put";
    case WAL_REC_OBJECT_DELETE:
        return "delete_version";
    case WAL_REC_DELETE_MARKER:
        return "delete_marker";
    case WAL_REC_BUCKET_CREATE:
        return "bucket_create";
    case WAL_REC_BUCKET_DELETE:
        return "bucket_delete";
    case WAL_REC_BUCKET_CONFIG:
        return "bucket_config";
    case WAL_REC_MULTIPART_COMPLETE:
        return "multipart_complete";
    case WAL_REC_OBJECT_TAGS:
        return "tags";
    default:
        return "other";
    }
}

/* The fields of a decoded record the listing shows. */
static void
describe(const Meridian__WalRecord *r, repl_failed_entry *e)
{
    switch (r->body_case) {
    case MERIDIAN__WAL_RECORD__BODY_OBJECT_PUT:
        e->bucket = r->object_put->bucket, e->key = r->object_put->key;
        e->version_id = r->object_put->version_id, e->hlc = r->object_put->hlc;
        e->size = r->object_put->size;
        break;
    case MERIDIAN__WAL_RECORD__BODY_OBJECT_DELETE:
        e->bucket = r->object_delete->bucket, e->key = r->object_delete->key;
        e->version_id = r->object_delete->version_id, e->hlc = r->object_delete->hlc;
        break;
    case MERIDIAN__WAL_RECORD__BODY_DELETE_MARKER:
        e->bucket = r->delete_marker->bucket, e->key = r->delete_marker->key;
        e->version_id = r->delete_marker->version_id, e->hlc = r->delete_marker->hlc;
        break;
    case MERIDIAN__WAL_RECORD__BODY_BUCKET_CREATE:
        e->bucket = r->bucket_create->bucket, e->hlc = r->bucket_create->hlc;
        break;
    case MERIDIAN__WAL_RECORD__BODY_BUCKET_DELETE:
        e->bucket = r->bucket_delete->bucket, e->hlc = r->bucket_delete->hlc;
        break;
    case MERIDIAN__WAL_RECORD__BODY_BUCKET_CONFIG:
        e->bucket = r->bucket_config->bucket, e->hlc = r->bucket_config->hlc;
        break;
    case MERIDIAN__WAL_RECORD__BODY_MULTIPART_COMPLETE:
        e->bucket = r->multipart_complete->bucket, e->key = r->multipart_complete->key;
        e->version_id = r->multipart_complete->version_id, e->hlc = r->multipart_complete->hlc;
        e->size = r->multipart_complete->size;
        break;
    case MERIDIAN__WAL_RECORD__BODY_OBJECT_TAGS:
        e->bucket = r->object_tags->bucket, e->key = r->object_tags->key;
        e->version_id = r->object_tags->version_id, e->hlc = r->object_tags->hlc;
        break;
    default:
        break;
    }
    if (!e->bucket)
        e->bucket = "";
    if (!e->key)
        e->key = "";
    if (!e->version_id)
        e->version_id = "";
}

int
repl_failed_scan(struct engine *eng, const repl_failed_query *q, const char *bucket,
                 uint64_t after_lsn, uint64_t max_scan, repl_failed_fn fn, void *ud,
                 repl_failed_end *end)
{
    wal *w = eng ? engine_wal(eng) : NULL;
    wal_reader *rd = NULL;
    wal_peer_status ws;
    uint64_t from = q->acked_lsn, scanned = 0;
    int rc;

    memset(end, 0, sizeof(*end));
    if (!w || !fn)
        return MRD_EINVAL;
    if (wal_cursor_get(w, q->peer_id, &ws) == 0 && ws.acked_lsn > from)
        from = ws.acked_lsn;
    end->acked_lsn = from;
    if (after_lsn > from)
        from = after_lsn;
    end->last_lsn = from;
    if (from >= q->durable_lsn)
        return 0; /* the peer is level (or nothing was written since) */
    if ((rc = wal_reader_open(w, from + 1, &rd)) != 0)
        return rc; /* MRD_ENOTFOUND: past retention, the peer needs a resync */
    wal_reader_bare(rd, WAL_REC_REPLICATED_APPLY); /* never read: skipped below */
    for (;;) {
        wal_entry we;
        Meridian__WalRecord *rec = NULL;
        repl_failed_entry e;

        if ((rc = wal_reader_next(rd, &we)) <= 0 || we.lsn > q->durable_lsn)
            break;
        if (max_scan && scanned++ >= max_scan) {
            end->more = 1;
            break;
        }
        if (!wal_rec_forwarded(we.type)) {
            end->last_lsn = we.lsn;
            continue; /* another site's write (its origin sends it) or a purge */
        }
        if ((rc = wal_record_decode(we.type, we.payload, we.len, &rec)) != 0)
            break;
        memset(&e, 0, sizeof(e));
        e.lsn = we.lsn;
        e.type = we.type;
        e.kind = kind_name(we.type);
        describe(rec, &e);
        if (MRD_HLC_MS(e.hlc) > q->cutoff_ms) {
            wal_record_free(rec);
            break; /* this and every later record of ours is not late yet */
        }
        if ((!bucket || strcmp(bucket, e.bucket) == 0) && fn(ud, &e) != 0) {
            wal_record_free(rec);
            end->more = 1; /* e was not taken: the next scan starts at it */
            break;
        }
        end->last_lsn = we.lsn;
        wal_record_free(rec);
    }
    wal_reader_close(rd);
    return rc < 0 ? rc : 0;
}

int
repl_failed_query_get(const repl *r, uint32_t peer_id, uint64_t now_ms, repl_failed_query *out)
{
    repl_peer *p = r ? repl__peer_by_id((repl *)r, peer_id) : NULL;
    repl_peer_info pi;
    engine_status st;

    if (!p)
        return MRD_ENOTFOUND;
    if (!r->eng || engine_get_status(r->eng, &st) != 0)
        return MRD_ESHUTDOWN;
    memset(out, 0, sizeof(*out));
    memset(&pi, 0, sizeof(pi));
    repl__tx_fill(p, &pi);
    out->peer_id = p->id;
    memcpy(out->peer_name, p->name, sizeof(out->peer_name));
    out->acked_lsn = pi.acked_lsn;
    out->durable_lsn = st.wal_durable_lsn;
    out->failed_after_ms = r->o.failed_after_ms;
    out->cutoff_ms =
        r->o.failed_after_ms && now_ms > r->o.failed_after_ms ? now_ms - r->o.failed_after_ms : 0;
    return 0;
}

/* ---- the count, per peer ------------------------------------------------ */

typedef struct failed_job {
    repl__life *life;
    repl *r;
    struct engine *eng;
    repl_failed_query q;
    uint64_t prev_acked, prev_at, count; /* the previous job's range and sum */
    int prev_valid;
    repl_failed_end end;
    int rc;
} failed_job;

static int
count_one(void *ud, const repl_failed_entry *e)
{
    (void)e;
    ((failed_job *)ud)->count++;
    return 0;
}

static void
failed_work(void *arg)
{
    failed_job *j = arg;
    wal_peer_status ws;
    uint64_t acked = j->q.acked_lsn, after = 0;

    if (wal_cursor_get(engine_wal(j->eng), j->q.peer_id, &ws) == 0 && ws.acked_lsn > acked)
        acked = ws.acked_lsn;
    /* the same acked LSN as last time: go on from where that job stopped */
    if (j->prev_valid && j->prev_acked == acked)
        after = j->prev_at;
    else
        j->count = 0;
    j->rc = repl_failed_scan(j->eng, &j->q, NULL, after, FAILED_SCAN_MAX, count_one, j, &j->end);
}

static void
failed_done(void *arg)
{
    failed_job *j = arg;
    repl_peer *p = j->life->dead ? NULL : repl__peer_by_id(j->r, j->q.peer_id);

    if (p) {
        p->failed_running = 0;
        if (j->rc == 0) {
            p->failed_count = j->count;
            p->failed_acked = j->end.acked_lsn;
            p->failed_at = j->end.last_lsn;
            p->failed_partial = 0;
            p->failed_valid = 1;
        } else {
            /* past retention: the WAL no longer names them (anti-entropy's job) */
            p->failed_partial = 1;
            p->failed_valid = 0;
        }
    }
    repl__life_unref(j->life);
    free(j);
}

void
repl__failed_tick(repl_peer *p)
{
    repl *r = p->r;
    failed_job *j;
    repl_failed_query q;

    if (!r->eng || !r->o.failed_after_ms || p->failed_running)
        return;
    if (repl_failed_query_get(r, p->id, repl__now_ms(r), &q) != 0)
        return;
    if (q.durable_lsn <= q.acked_lsn && q.acked_lsn) {
        p->failed_count = 0; /* level */
        p->failed_acked = q.acked_lsn;
        p->failed_at = q.acked_lsn;
        p->failed_partial = 0;
        p->failed_valid = 1;
        return;
    }
    if (!(j = calloc(1, sizeof(*j))))
        return;
    j->life = r->life;
    j->life->refs++;
    j->r = r;
    j->eng = r->eng;
    j->q = q;
    j->prev_valid = p->failed_valid;
    j->prev_acked = p->failed_acked;
    j->prev_at = p->failed_at;
    j->count = p->failed_count;
    p->failed_running = 1;
    if (engine_run(r->eng, failed_work, failed_done, j) != 0) {
        p->failed_running = 0;
        repl__life_unref(j->life);
        free(j);
    }
}
