/*
 * engine_gc.c - purging what every site holds and nothing can bring back:
 * null delete markers left alone on their key, the tombstones of versions
 * removed by id, and hidden conflict losers past their retention window
 * (docs/conflicts.md section 6).
 *
 * Why. An S3 DELETE in an unversioned bucket leaves a null delete marker
 * (it must replicate, and it must outlive every copy of what it hides), and
 * a DELETE with a versionId leaves a tombstone. Without a purge each stays
 * in the index for ever: a bucket of temporary files grows one record per
 * key ever deleted.
 *
 * When. A version may go once it is stable - every site has applied every
 * record, from every origin, stamped at or below it - and the grace period
 * has passed since its stamp (conflict_gc). The replicator works out the
 * stable point from what each site says its peers have acked of its own
 * writes (LinkState.acked_hlc, PROTOCOL.md section 5) and offers it here
 * (engine_gc_offer); the engine keeps the highest offered, persisted under
 * ENGINE_GC_MARK_KEY before any purge relies on it, so a restart never
 * forgets a point a purge was made under. A site that is down holds the
 * point back, so nothing is purged that it may still lack.
 *
 * Ghosts. After a purge, another site may still hold the purged record for a
 * little while (each sweeps on its own clock), and anti-entropy would send
 * it back. A record delivered by anti-entropy that is stamped below the
 * stable point and is not held here was applied here before and removed
 * since (purged, dropped or removed by id): the applier drops it
 * (engine_apply.c, gc_ghost), and counts it. This test uses the point as
 * the replicator last offered it (gc_live), not the highest ever offered:
 * a site that joins the topology with a clock behind that point may write
 * below it before it speaks to a peer, and its writes must not look like
 * ghosts; its links, at 0 until acked, pull the live point below them.
 * Ghosts are an economy, not a safety rule: a purged record that is stored
 * again (after a restart, before the first offer) is still purgeable and
 * goes at the next sweep, since purges are decided from the persisted
 * point and, for conflict losers, the stable log, not from when a record
 * was stored.
 *
 * How. A sweep (the gc thread, every gc_interval; or engine_gc_sweep) walks
 * every bucket's versions in pages of at most PAGE_VERSIONS, each page in
 * one short read transaction that ends at a key boundary, and for each key
 * collects:
 *   - its tombstones that are stable and past their grace;
 *   - its one version, when it has exactly one (tombstones aside) and
 *     conflict_gc says it may go: a current null delete marker, stable and
 *     past its grace;
 *   - its hidden null delete markers (a delete that lost to a concurrent
 *     write), stable and past their grace. They hold no data, and the
 *     conflict log keeps the record of the race, so they get no retention
 *     window: a site that still held a marker when a new write came
 *     (another site had purged it already) would otherwise keep it hidden
 *     while the others have none.
 * Each such key becomes one GcPurge WAL record (never sent to a peer,
 * wal_rec_forwarded). The applier checks every listed version again against
 * the index as it stands at that LSN (plan_gc in engine_apply.c), so a write
 * that arrived after the sweep looked wins, and replay after a crash does
 * exactly what the first apply did.
 *
 *   - its hidden losers that hold data (null versions that lost a
 *     concurrent write; conflict_gc rule (a)), once their retention window
 *     ([replication] conflict_retention) has run from when this site first
 *     knew the race stable: the first entry of the stable log above both
 *     the loser's and the winner's stamps.
 *
 * The stable log. Rule (a) counts the window from when each site first
 * stored the loser hidden, so that a race found only after a long
 * partition still gets its whole window. The index does not record that
 * time; instead each sweep notes (stable point, local time) in a log kept in
 * the index (ENGINE_GC_LOG_KEY, at most ENGINE_GC_LOG_MAX entries, halved
 * when full). A race is stable once every site holds both versions, so
 * every site has had the loser hidden by then: counting from that time
 * gives at least the whole window, never less (a dropped or missing entry
 * only makes the start later).
 */
#include "engine_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Versions read in one read transaction, at most (a page ends at a key). */
#define PAGE_VERSIONS 1024
/* Versions one purge record names, at most. */
#define PURGE_IDS ENGINE_GC_PURGE_MAX
/* Purge records a sweep lets the applier lag behind, at most. */
#define PURGE_BACKLOG 4096

/* One key of a page: what the sweep would purge of it. */
typedef struct gc_key {
    char *key;
    size_t n_ids;
    char *ids[PURGE_IDS];
    uint64_t hlcs[PURGE_IDS];
} gc_key;

typedef struct gc_walk {
    engine *e;
    uint64_t mark, now_ms, grace_ms;
    /* the key being walked */
    char *cur;
    size_t n_live;    /* its versions other than tombstones */
    uint64_t cur_hlc; /* its current version's stamp (0: none seen) */
    size_t n_hid;     /* its hidden losers that hold data */
    char *hid_id[PURGE_IDS];
    uint64_t hid_hlc[PURGE_IDS];
    gc_key pend;       /* what it would purge, so far */
    store_version one; /* its only live version, if n_live == 1 */
    char *one_id, *one_etag;
    void *one_vv;
    /* keys of the page with something to purge */
    gc_key *out;
    size_t n_out, cap_out;
    size_t versions, keys;
    int nomem, full;
} gc_walk;

/* stable (stamped below the point every site has applied) and past its
 * grace: conflict_gc's two conditions, for what the sweep checks itself */
static int
gc_due(const gc_walk *w, uint64_t hlc)
{
    return hlc && hlc < w->mark && w->now_ms >= MRD_HLC_MS(hlc) + w->grace_ms;
}

/* A null delete marker that lost a concurrent write: hidden, and no data. */
static int
gc_hidden_marker(uint32_t flags)
{
    return (flags & ENGINE_GC_HIDDEN_MARKER_MASK) == ENGINE_GC_HIDDEN_MARKER;
}

static void
gc_key_clear(gc_key *k)
{
    free(k->key);
    for (size_t i = 0; i < k->n_ids; i++)
        free(k->ids[i]);
    memset(k, 0, sizeof(*k));
}

static int
gc_key_add(gc_key *k, const char *id, uint64_t hlc)
{
    if (k->n_ids == PURGE_IDS)
        return 0; /* the rest go at the next sweep */
    if (!(k->ids[k->n_ids] = strdup(id)))
        return -ENOMEM;
    k->hlcs[k->n_ids++] = hlc;
    return 0;
}

/* 1 when the key's only live version may go (conflict_gc on a set of one). */
static int
gc_lone_version(const gc_walk *w)
{
    conflict_version cv;
    conflict_class cl;
    size_t win;
    uint8_t purge = 0;
    mrd_hlc_stamp acked = w->mark - 1;
    conflict_gc_state st = {.acked = &acked,
                            .n_acked = 1,
                            .now_ms = w->now_ms,
                            .grace_ms = w->grace_ms,
                            .retention_ms = CONFLICT_RETENTION_DEFAULT_MS};

    if (!(w->one.flags & STORE_VF_DELETE_MARKER) || (w->one.flags & STORE_VF_NONCURRENT))
        return 0;
    if (engine__version_from_store(&w->one, &cv) != 0 ||
        conflict_classify(&cv, 1, &cl, &win) != 0 || conflict_gc(&cv, 1, &cl, &st, &purge) != 0)
        return 0;
    return purge;
}

/*
 * When this site first knew stamp h stable: the time of the first entry of
 * the stable log whose point is above h (0: not yet). The log holds the
 * point each sweep ran under, thinned by halves when full; a dropped entry
 * only makes the answer later, so a retention window never gets shorter.
 */
static uint64_t
gc_stable_since(const engine *e, uint64_t h)
{
    for (size_t i = 0; i < e->gc_log_n; i++)
        if (e->gc_log[i].mark > h)
            return e->gc_log[i].ms;
    return 0;
}

/* Rule (a) for a hidden loser stamped hlc: its retention window runs from
 * when the later of it and the winner was first known stable here, which is
 * no earlier than when any site could see the conflict. */
static int
gc_loser_expired(const gc_walk *w, uint64_t hlc)
{
    mrd_hlc_stamp acked = w->mark - 1;
    uint64_t since = gc_stable_since(w->e, hlc > w->cur_hlc ? hlc : w->cur_hlc);
    conflict_gc_state st = {.acked = &acked,
                            .n_acked = 1,
                            .now_ms = w->now_ms,
                            .grace_ms = w->grace_ms,
                            .retention_ms = w->e->gc_retention_ms};

    return w->cur_hlc && since && conflict_gc_hidden_expired(hlc, w->cur_hlc, since, &st);
}

/* Notes that this sweep runs under mark (at now_ms) in the stable log, and
 * persists the log. Sweeps only (gc_sweep_mu). */
static int
gc_log_note(engine *e, uint64_t mark, uint64_t now_ms)
{
    if (e->gc_log_n && e->gc_log[e->gc_log_n - 1].mark >= mark)
        return 0;
    if (e->gc_log_n == ENGINE_GC_LOG_MAX) { /* keep every other entry, and the newest */
        size_t n = 0;
        for (size_t i = 1; i < e->gc_log_n; i += 2)
            e->gc_log[n++] = e->gc_log[i];
        e->gc_log_n = n;
    }
    e->gc_log[e->gc_log_n].mark = mark;
    e->gc_log[e->gc_log_n].ms = now_ms;
    e->gc_log_n++;
    return store_meta_put(e->st, ENGINE_GC_LOG_KEY, e->gc_log, e->gc_log_n * sizeof(e->gc_log[0]));
}

/* The walk reached the end of w->cur: keep what it would purge. */
static int
gc_key_end(gc_walk *w)
{
    int rc = 0;

    if (!w->cur)
        return 0;
    w->keys++;
    if (w->n_live == 1 && gc_lone_version(w))
        rc = gc_key_add(&w->pend, w->one_id, w->one.hlc);
    for (size_t k = 0; k < w->n_hid && rc == 0; k++)
        if (gc_loser_expired(w, w->hid_hlc[k]))
            rc = gc_key_add(&w->pend, w->hid_id[k], w->hid_hlc[k]);
    if (rc == 0 && w->pend.n_ids) {
        if (w->n_out == w->cap_out) {
            size_t cap = w->cap_out ? w->cap_out * 2 : 16;
            gc_key *v = realloc(w->out, cap * sizeof(*v));
            if (!v) {
                rc = -ENOMEM;
                goto out;
            }
            w->out = v;
            w->cap_out = cap;
        }
        w->pend.key = w->cur;
        w->cur = NULL;
        w->out[w->n_out++] = w->pend;
        memset(&w->pend, 0, sizeof(w->pend));
    }
out:
    gc_key_clear(&w->pend);
    free(w->cur);
    free(w->one_id);
    free(w->one_etag);
    free(w->one_vv);
    w->cur = w->one_id = w->one_etag = NULL;
    w->one_vv = NULL;
    w->n_live = 0;
    for (size_t k = 0; k < w->n_hid; k++)
        free(w->hid_id[k]);
    w->n_hid = 0;
    w->cur_hlc = 0;
    return rc;
}

static int
gc_walk_cb(void *user, const char *key, const store_version *v)
{
    gc_walk *w = user;
    int rc = 0;

    if (!w->cur || strcmp(key, w->cur) != 0) {
        if (w->cur && w->versions >= PAGE_VERSIONS) {
            w->full = 1; /* stop at a key boundary: the next page starts after cur */
            return 1;
        }
        if ((rc = gc_key_end(w)) != 0 || !(w->cur = strdup(key)))
            goto fail;
    }
    w->versions++;
    if (v->flags & ENGINE_VF_TOMBSTONE) {
        if (gc_due(w, v->hlc) && (rc = gc_key_add(&w->pend, v->version_id, v->hlc)) != 0)
            goto fail;
        return 0;
    }
    if (gc_hidden_marker(v->flags) && gc_due(w, v->hlc) &&
        (rc = gc_key_add(&w->pend, v->version_id, v->hlc)) != 0)
        goto fail;
    if (!(v->flags & (STORE_VF_NONCURRENT | STORE_VF_CONFLICT)))
        w->cur_hlc = v->hlc;
    if ((v->flags & ENGINE_GC_HIDDEN_MARKER_MASK) == ENGINE_GC_HIDDEN_LOSER &&
        w->n_hid < PURGE_IDS && gc_due(w, v->hlc)) {
        if (!(w->hid_id[w->n_hid] = strdup(v->version_id)))
            goto fail;
        w->hid_hlc[w->n_hid++] = v->hlc;
    }
    if (++w->n_live == 1) {
        /* kept for gc_lone_version: the walk's strings die with the call */
        w->one = *v;
        w->one.user_meta = w->one.layout = NULL;
        w->one.user_meta_len = w->one.layout_len = 0;
        w->one_id = strdup(v->version_id);
        w->one_etag = strdup(v->etag ? v->etag : "");
        w->one_vv = malloc(v->vv_len ? v->vv_len : 1);
        if (!w->one_id || !w->one_etag || !w->one_vv)
            goto fail;
        memcpy(w->one_vv, v->vv, v->vv_len);
        w->one.version_id = w->one_id;
        w->one.etag = w->one_etag;
        w->one.content_type = NULL;
        w->one.vv = w->one_vv;
    }
    return 0;
fail:
    w->nomem = 1;
    return 1;
}

static void
gc_purge_done(void *ud, int status)
{
    (void)ud;
    (void)status; /* the applier counts what it removed; a failure fails the engine */
}

/* Appends one GcPurge record for k. */
static int
gc_append(engine *e, const char *bucket, gc_key *k)
{
    Meridian__WalRecord rec = MERIDIAN__WAL_RECORD__INIT;
    Meridian__GcPurge gp = MERIDIAN__GC_PURGE__INIT;
    int rc, failed;

    gp.bucket = (char *)bucket;
    gp.key = k->key;
    gp.n_version_ids = k->n_ids;
    gp.version_ids = k->ids;
    gp.n_hlcs = k->n_ids;
    gp.hlcs = k->hlcs;
    rec.body_case = MERIDIAN__WAL_RECORD__BODY_GC_PURGE;
    rec.gc_purge = &gp;
    pthread_mutex_lock(&e->ap_mu);
    failed = e->failed;
    pthread_mutex_unlock(&e->ap_mu);
    if (failed)
        return MRD_EDURABLE;
    pthread_mutex_lock(&e->mut_mu);
    rc = engine__append(e, &rec, WAL_REC_GC_PURGE, gc_purge_done, NULL);
    pthread_mutex_unlock(&e->mut_mu);
    return rc;
}

/* Waits while the WAL holds more than PURGE_BACKLOG records the applier has
 * not applied: a sweep over a bucket of a million deleted keys must not
 * queue a million records at once. Gives up when the engine closes. */
static void
gc_backlog_wait(engine *e)
{
    for (int i = 0; i < 5000; i++) {
        engine_status st;
        int stop;

        pthread_mutex_lock(&e->gc_mu);
        stop = e->gc_stop;
        pthread_mutex_unlock(&e->gc_mu);
        if (stop || engine_get_status(e, &st) != 0 || st.failed ||
            st.wal_next_lsn <= st.applied_lsn + 1 + PURGE_BACKLOG)
            return;
        nanosleep(&(struct timespec){0, 2000000}, NULL);
    }
}

/* Sweeps one bucket, page by page. */
static int
gc_bucket(engine *e, const char *bucket, uint64_t mark, uint64_t now_ms, engine_gc_result *res)
{
    char *after = NULL;
    int rc = 0, rc2;

    for (;;) {
        gc_walk w;

        memset(&w, 0, sizeof(w));
        w.e = e;
        w.mark = mark;
        w.now_ms = now_ms;
        w.grace_ms = e->gc_grace_ms;
        rc =
            store_index_list(e->st, bucket, NULL, after, NULL, STORE_LIST_VERSIONS, gc_walk_cb, &w);
        if (rc == 0 && w.nomem)
            rc = -ENOMEM;
        free(after);
        after = NULL;
        if (rc == 0 && w.full && !(after = strdup(w.cur)))
            rc = -ENOMEM;
        /* the page's last key was walked whole: a page stops only before
         * a new key, and the next one starts past this one */
        rc2 = gc_key_end(&w);
        if (rc == 0)
            rc = rc2;
        res->versions += w.versions;
        res->keys += w.keys;
        for (size_t i = 0; i < w.n_out; i++) {
            if (rc == 0 && (rc = gc_append(e, bucket, &w.out[i])) == 0)
                res->proposed += w.out[i].n_ids;
            gc_key_clear(&w.out[i]);
        }
        free(w.out);
        if (rc == 0 && w.n_out)
            gc_backlog_wait(e);
        if (rc != 0 || !w.full)
            break;
    }
    free(after);
    return rc;
}

typedef struct gc_names {
    char **v;
    size_t n, cap;
    int nomem;
} gc_names;

static int
gc_name_cb(void *user, const char *bucket, const void *blob, size_t len)
{
    gc_names *b = user;

    (void)blob;
    (void)len;
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16;
        char **v = realloc(b->v, cap * sizeof(*v));
        if (!v) {
            b->nomem = 1;
            return 1;
        }
        b->v = v;
        b->cap = cap;
    }
    if (!(b->v[b->n] = strdup(bucket))) {
        b->nomem = 1;
        return 1;
    }
    b->n++;
    return 0;
}

/* Persists the stable point before a purge may rely on it. */
static int
gc_mark_save(engine *e, uint64_t mark)
{
    char val[24];
    int rc;

    if (mark <= e->gc_mark_saved)
        return 0;
    snprintf(val, sizeof(val), "%llu", (unsigned long long)mark);
    rc = store_meta_put(e->st, ENGINE_GC_MARK_KEY, val, strlen(val));
    if (rc == 0)
        e->gc_mark_saved = mark;
    return rc;
}

int
engine_gc_sweep(engine *e, uint64_t now_ms, engine_gc_result *out)
{
    engine_gc_result res;
    gc_names names;
    uint64_t mark, t0;
    int rc = 0;

    if (!e)
        return MRD_EINVAL;
    memset(&res, 0, sizeof(res));
    memset(&names, 0, sizeof(names));
    pthread_mutex_lock(&e->gc_sweep_mu);
    t0 = mrd_clock_mono_ns();
    mark = __atomic_load_n(&e->gc_mark, __ATOMIC_ACQUIRE);
    res.stable_hlc = mark;
    if (mark && (rc = gc_mark_save(e, mark)) == 0 && (rc = gc_log_note(e, mark, now_ms)) == 0) {
        rc = store_bucket_list(e->st, gc_name_cb, &names);
        if (rc == 0 && names.nomem)
            rc = -ENOMEM;
        for (size_t i = 0; rc == 0 && i < names.n; i++)
            rc = gc_bucket(e, names.v[i], mark, now_ms, &res);
    }
    for (size_t i = 0; i < names.n; i++)
        free(names.v[i]);
    free(names.v);
    res.duration_ms = (mrd_clock_mono_ns() - t0) / 1000000u;
    pthread_mutex_lock(&e->gc_mu);
    e->gc_sweeps++;
    e->gc_last = res;
    e->gc_last_ms = now_ms;
    e->gc_last_rc = rc;
    pthread_mutex_unlock(&e->gc_mu);
    pthread_mutex_unlock(&e->gc_sweep_mu);
    if (rc != 0)
        MRD_WARN("gc.sweep_failed", "error=\"%s\"", mrd_strerror(rc));
    else if (res.proposed)
        MRD_INFO("gc.sweep", "stable_hlc=%llu keys=%llu versions=%llu purge=%llu ms=%llu",
                 (unsigned long long)mark, (unsigned long long)res.keys,
                 (unsigned long long)res.versions, (unsigned long long)res.proposed,
                 (unsigned long long)res.duration_ms);
    if (out)
        *out = res;
    return rc;
}

void
engine_gc_offer(engine *e, uint64_t stable_hlc)
{
    uint64_t cur;

    if (!e)
        return;
    __atomic_store_n(&e->gc_live, stable_hlc, __ATOMIC_RELEASE);
    cur = __atomic_load_n(&e->gc_mark, __ATOMIC_RELAXED);
    while (stable_hlc > cur && !__atomic_compare_exchange_n(&e->gc_mark, &cur, stable_hlc, 0,
                                                            __ATOMIC_RELEASE, __ATOMIC_RELAXED))
        ;
}

uint64_t
engine__gc_mark(engine *e)
{
    return __atomic_load_n(&e->gc_mark, __ATOMIC_ACQUIRE);
}

uint64_t
engine__gc_live(engine *e)
{
    return __atomic_load_n(&e->gc_live, __ATOMIC_ACQUIRE);
}

int
engine_gc_status_get(engine *e, engine_gc_status *out)
{
    if (!e || !out)
        return MRD_EINVAL;
    memset(out, 0, sizeof(*out));
    out->stable_hlc = engine__gc_mark(e);
    out->grace_ms = e->gc_grace_ms;
    out->interval_ms = e->gc_interval_ms;
    out->markers_purged = __atomic_load_n(&e->gc_markers, __ATOMIC_RELAXED);
    out->tombstones_purged = __atomic_load_n(&e->gc_tombstones, __ATOMIC_RELAXED);
    out->ghosts_dropped = __atomic_load_n(&e->gc_ghosts, __ATOMIC_RELAXED);
    out->losers_purged = __atomic_load_n(&e->gc_losers, __ATOMIC_RELAXED);
    out->loser_bytes_purged = __atomic_load_n(&e->gc_loser_bytes, __ATOMIC_RELAXED);
    out->retention_ms = e->gc_retention_ms;
    pthread_mutex_lock(&e->gc_mu);
    out->sweeps = e->gc_sweeps;
    out->last = e->gc_last;
    out->last_sweep_ms = e->gc_last_ms;
    out->last_error = e->gc_last_rc;
    pthread_mutex_unlock(&e->gc_mu);
    return 0;
}

/* 1 while CLOCK_MONOTONIC is before *deadline. */
static int
mono_before(const struct timespec *deadline)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec < deadline->tv_sec ||
           (now.tv_sec == deadline->tv_sec && now.tv_nsec < deadline->tv_nsec);
}

static void *
gc_main(void *arg)
{
    engine *e = arg;

    pthread_mutex_lock(&e->gc_mu);
    while (!e->gc_stop) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += (time_t)(e->gc_interval_ms / 1000);
        ts.tv_nsec += (long)(e->gc_interval_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        while (!e->gc_stop && mono_before(&ts)) {
            if (pthread_cond_timedwait(&e->gc_cv, &e->gc_mu, &ts) == ETIMEDOUT &&
                mono_before(&ts)) {
                /* a timed wait that ends before its deadline is broken (as
                 * under libfaketime, which the lab's clock-skew faults
                 * load: it swept ~30,000 times a second); sleep in steps */
                struct timespec step = {0, 50 * 1000000L};
                pthread_mutex_unlock(&e->gc_mu);
                nanosleep(&step, NULL);
                pthread_mutex_lock(&e->gc_mu);
            }
        }
        if (e->gc_stop)
            break;
        pthread_mutex_unlock(&e->gc_mu);
        engine_gc_sweep(e, mrd_clock_realtime_ms(NULL), NULL);
        pthread_mutex_lock(&e->gc_mu);
    }
    pthread_mutex_unlock(&e->gc_mu);
    return NULL;
}

int
engine__gc_open(engine *e)
{
    pthread_condattr_t ca;
    int rc;

    e->gc_grace_ms = (uint64_t)e->conf->gc_grace_s * 1000u;
    e->gc_interval_ms = (uint64_t)e->conf->gc_interval_s * 1000u;
    pthread_mutex_init(&e->gc_mu, NULL);
    pthread_mutex_init(&e->gc_sweep_mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&e->gc_cv, &ca);
    pthread_condattr_destroy(&ca);
    e->gc_inited = 1;
    e->gc_retention_ms = (uint64_t)e->conf->conflict_retention_s * 1000u;
    rc = engine__meta_u64(e, ENGINE_GC_MARK_KEY, &e->gc_mark_saved);
    if (rc == MRD_ENOTFOUND)
        rc = 0;
    e->gc_mark = e->gc_mark_saved;
    if (rc == 0) {
        void *val = NULL;
        size_t len = 0;
        int r = store_meta_get(e->st, ENGINE_GC_LOG_KEY, &val, &len);
        /* a log that does not parse is dropped: it only delays purges */
        if (r == 0 && len % sizeof(e->gc_log[0]) == 0 &&
            len / sizeof(e->gc_log[0]) <= ENGINE_GC_LOG_MAX) {
            memcpy(e->gc_log, val, len);
            e->gc_log_n = len / sizeof(e->gc_log[0]);
        } else if (r != 0 && r != MRD_ENOTFOUND) {
            rc = r;
        }
        free(val);
    }
    return rc;
}

int
engine__gc_start(engine *e)
{
    int rc;

    if (!e->gc_interval_ms)
        return 0;
    if ((rc = -pthread_create(&e->gc_thread, NULL, gc_main, e)) == 0)
        e->gc_started = 1;
    return rc;
}

void
engine__gc_close(engine *e)
{
    if (!e->gc_inited)
        return;
    if (e->gc_started) {
        pthread_mutex_lock(&e->gc_mu);
        e->gc_stop = 1;
        pthread_cond_broadcast(&e->gc_cv);
        pthread_mutex_unlock(&e->gc_mu);
        pthread_join(e->gc_thread, NULL);
        e->gc_started = 0;
    }
}

void
engine__gc_destroy(engine *e)
{
    if (!e->gc_inited)
        return;
    pthread_mutex_destroy(&e->gc_mu);
    pthread_mutex_destroy(&e->gc_sweep_mu);
    pthread_cond_destroy(&e->gc_cv);
}
