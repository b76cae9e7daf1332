/*
 * engine_core.c - opening and closing the engine, its worker pool, its
 * completion queue, and the glue that keeps LMDB out of wal/.
 *
 * Opening, and why in this order:
 *   1. store_open: drives and the LMDB index. The index knows the last LSN
 *      it applied (stored in the same transaction as the data it applied).
 *   2. wal_open with replay_from = that LSN: the WAL scans and verifies every
 *      segment, truncates a torn tail (a batch that was never acknowledged),
 *      and hands us every record after replay_from. engine__replay applies
 *      them through the very batch code the live applier uses, so recovery
 *      cannot drift from normal operation; store_index_apply ignores LSNs it
 *      has already applied, which makes replay idempotent. The WAL's per-peer
 *      cursors are wired to store_meta_put/get (keys "wal.cursor.<peer>"),
 *      and every peer is registered (its saved cursor loaded) as soon as
 *      the WAL is open, before the replay's last commit or the applied LSN
 *      lets retention run, so segments a lagging peer needs stay: the
 *      configured peers and those listed under "wal.peers" (the WAL's peers
 *      as last saved by engine_repl_origin_add/remove: sites added at run
 *      time are in no file).
 *   3. store_sweep_orphans: with every record in the index and nothing
 *      writing yet, shard files no layout references are crash leftovers
 *      (a PUT or multipart part whose record never committed, frees lost
 *      after a commit) and are removed.
 *   4. The worker pool and the applier thread.
 *
 * The HLC. Local stamps must grow with LSN, across restarts too: the
 * replicator tells which writes a peer holds by stamp (a watermark taken
 * under mut_mu says "every write stamped below h has an LSN <= l"), and a
 * clock that restarts behind a stamp it gave before (the wall clock stepped
 * back, or stamps ran ahead after observing a peer's) would break that.
 * Every index commit stores the highest stamp of the local records it
 * holds (ENGINE_HLC_KEY, engine_apply.c), and once replay has committed
 * the WAL's tail the clock observes it, so the next stamp is above every
 * stamp a durable local record carries.
 *
 * Completions. Everything the engine calls back goes through a completion
 * queue, an engine_cq wrapping a wal_cq (an eventfd plus a mutex-protected
 * array). The default queue is engine_fd / engine_poll; an event loop thread
 * of its own makes one more (engine_cq_new) and binds itself to it
 * (engine_cq_bind, a thread-local pointer). Which queue a callback goes to
 * is decided when the call is made, from the calling thread's binding, and
 * travels with the work: a job records it (and a worker binds itself to it
 * while the job runs, so a mutation submitted from the job inherits it),
 * a pending WAL record records it for the applier. Callbacks thus run on
 * the loop that made the call, whatever thread finished the work. Queues
 * live until engine_close, which runs what is still queued on every one:
 * nothing is ever posted to a freed queue. The WAL
 * itself is opened without a post function: its append callbacks run on the
 * WAL writer thread, where they only move the record onto the applier's
 * queue (no blocking), which saves a hop through the event loop.
 *
 * The worker pool is a plain mutex+condvar FIFO. Store calls block on disk
 * I/O and fsync, so the gateway runs them here and gets its done() back on
 * the loop. Closing waits for queued work to finish: a job may own a store
 * writer and must be allowed to end it.
 */
#include "engine_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- completions -------------------------------------------------------- */

/* The queue the calling thread is bound to (engine_cq_bind). */
static __thread engine_cq *bound_cq;

typedef struct complete_item {
    engine_cb cb;
    void *ud;
    int status;
} complete_item;

static void
run_complete(void *arg)
{
    complete_item *c = arg;

    c->cb(c->ud, c->status);
    free(c);
}

engine_cq *
engine__cur_cq(engine *e)
{
    return bound_cq && bound_cq->e == e ? bound_cq : e->cq;
}

void
engine__complete_on(engine_cq *q, engine_cb cb, void *ud, int status)
{
    complete_item *c = malloc(sizeof(*c));

    if (!c) {
        /* Out of memory on a completion: run it here rather than lose it.
         * Callbacks are cheap and must tolerate any thread in this case. */
        cb(ud, status);
        return;
    }
    c->cb = cb;
    c->ud = ud;
    c->status = status;
    wal_cq_post(q->q, run_complete, c);
}

void
engine__complete(engine *e, engine_cb cb, void *ud, int status)
{
    engine__complete_on(engine__cur_cq(e), cb, ud, status);
}

static int
cq_new(engine *e, engine_cq **out)
{
    engine_cq *q = calloc(1, sizeof(*q));
    int rc;

    if (!q)
        return -ENOMEM;
    if ((rc = wal_cq_new(&q->q)) != 0) {
        free(q);
        return rc;
    }
    q->e = e;
    pthread_mutex_lock(&e->pool_mu);
    q->next = e->cqs;
    e->cqs = q;
    pthread_mutex_unlock(&e->pool_mu);
    *out = q;
    return 0;
}

int
engine_cq_new(engine *e, engine_cq **out)
{
    if (!e || !out)
        return MRD_EINVAL;
    return cq_new(e, out);
}

int
engine_cq_fd(const engine_cq *q)
{
    return wal_cq_fd(q->q);
}

int
engine_cq_poll(engine_cq *q)
{
    return wal_cq_process(q->q);
}

void
engine_cq_bind(engine_cq *q)
{
    bound_cq = q;
}

int
engine_fd(const engine *e)
{
    return wal_cq_fd(e->cq->q);
}

int
engine_poll(engine *e)
{
    return wal_cq_process(e->cq->q);
}

store *
engine_store(engine *e)
{
    return e->st;
}

/* ---- worker pool -------------------------------------------------------- */

static void *
worker_main(void *arg)
{
    engine *e = arg;
    engine__job *j;

    pthread_mutex_lock(&e->pool_mu);
    for (;;) {
        while (!e->jobs_head && !e->pool_stop)
            pthread_cond_wait(&e->pool_cv, &e->pool_mu);
        if (!e->jobs_head)
            break;
        j = e->jobs_head;
        e->jobs_head = j->next;
        if (!e->jobs_head)
            e->jobs_tail = NULL;
        e->pool_running++;
        pthread_mutex_unlock(&e->pool_mu);
        bound_cq = j->cq; /* what the job submits answers where it came from */
        j->work(j->arg);
        bound_cq = NULL;
        if (j->done)
            wal_cq_post(j->cq->q, j->done, j->arg);
        free(j);
        pthread_mutex_lock(&e->pool_mu);
        e->pool_running--;
        if (!e->jobs_head && e->pool_running == 0)
            pthread_cond_broadcast(&e->pool_idle_cv);
    }
    pthread_mutex_unlock(&e->pool_mu);
    return NULL;
}

int
engine_run(engine *e, void (*work)(void *arg), void (*done)(void *arg), void *arg)
{
    engine__job *j;
    int rc = 0;

    if (!e || !work)
        return MRD_EINVAL;
    if (!(j = calloc(1, sizeof(*j))))
        return -ENOMEM;
    j->work = work;
    j->done = done;
    j->arg = arg;
    j->cq = engine__cur_cq(e);
    pthread_mutex_lock(&e->pool_mu);
    if (e->pool_stop) {
        rc = MRD_ESHUTDOWN;
    } else {
        if (e->jobs_tail)
            e->jobs_tail->next = j;
        else
            e->jobs_head = j;
        e->jobs_tail = j;
        pthread_cond_signal(&e->pool_cv);
    }
    pthread_mutex_unlock(&e->pool_mu);
    if (rc != 0)
        free(j);
    return rc;
}

/* ---- WAL cursors in the index ------------------------------------------- */

static int
cursor_load(void *ud, uint32_t peer, uint64_t *acked_lsn, int *needs_resync, uint64_t *skip_lo)
{
    engine *e = ud;
    char key[64];
    void *val = NULL;
    size_t len = 0;
    unsigned long long lsn, skip = 0;
    int resync, rc, k = 0;

    snprintf(key, sizeof(key), "wal.cursor.%u", peer);
    rc = store_meta_get(e->st, key, &val, &len);
    if (rc != 0)
        return rc;
    /* "<lsn> <resync>[ <skip_lo>]", written by cursor_save (older builds
     * wrote the first two only, and read only those) */
    if (len == 0 || len > 60 || ((char *)val)[len - 1] != '\0' ||
        (k = sscanf(val, "%llu %d %llu", &lsn, &resync, &skip)) < 2) {
        free(val);
        return MRD_ECORRUPT;
    }
    free(val);
    *acked_lsn = lsn;
    *needs_resync = resync;
    *skip_lo = k == 3 ? skip : 0;
    return 0;
}

/* One meta put: the three values commit together or not at all. */
static int
cursor_save(void *ud, uint32_t peer, uint64_t acked_lsn, int needs_resync, uint64_t skip_lo)
{
    engine *e = ud;
    char key[64], val[64];
    int n;

    snprintf(key, sizeof(key), "wal.cursor.%u", peer);
    n = snprintf(val, sizeof(val), "%llu %d", (unsigned long long)acked_lsn, needs_resync ? 1 : 0);
    if (skip_lo)
        n += snprintf(val + n, sizeof(val) - (size_t)n, " %llu", (unsigned long long)skip_lo);
    return store_meta_put(e->st, key, val, (size_t)n + 1);
}

/* The WAL's peer ids, in the order the WAL lists them, as saved. */
static void
wal_peers_text(engine *e, char *out, size_t n)
{
    wal_status st;
    size_t k = 0;

    out[0] = '\0';
    if (wal_get_status(e->w, &st) != 0)
        return;
    for (int i = 0; i < st.n_peers && k < n; i++)
        k += (size_t)snprintf(out + k, n - k, "%s%u", k ? " " : "", st.peers[i].peer);
}

int
engine__wal_peers_save(engine *e)
{
    char text[sizeof(e->wal_peers_saved)];
    int rc = 0;

    pthread_mutex_lock(&e->peers_mu);
    wal_peers_text(e, text, sizeof(text));
    if (strcmp(text, e->wal_peers_saved) != 0 &&
        (rc = store_meta_put(e->st, ENGINE_WAL_PEERS_KEY, text, strlen(text) + 1)) == 0)
        memcpy(e->wal_peers_saved, text, sizeof(text));
    pthread_mutex_unlock(&e->peers_mu);
    return rc;
}

/* Registers with the WAL every peer whose cursor may hold segments: the
 * configured ones and those saved under ENGINE_WAL_PEERS_KEY (added at run
 * time, maybe no longer in the file). */
static int
wal_peers_register(engine *e)
{
    void *val = NULL;
    size_t len = 0;
    int rc = 0;

    for (int i = 0; rc == 0 && i < e->n_ra; i++)
        if ((rc = wal_peer_add(e->w, e->ra[i].origin, 0)) == MRD_EEXIST)
            rc = 0;
    if (rc == 0 && (rc = store_meta_get(e->st, ENGINE_WAL_PEERS_KEY, &val, &len)) == 0) {
        const char *p = val;
        if (len == 0 || len > sizeof(e->wal_peers_saved) || p[len - 1] != '\0')
            rc = MRD_ECORRUPT;
        else
            memcpy(e->wal_peers_saved, p, len);
        while (rc == 0 && *p) {
            char *end;
            unsigned long id = strtoul(p, &end, 10);
            if (end == p || id == 0 || id > UINT32_MAX || (*end && *end != ' '))
                rc = MRD_ECORRUPT;
            else if ((rc = wal_peer_add(e->w, (uint32_t)id, 0)) == MRD_EEXIST)
                rc = 0;
            p = *end ? end + 1 : end;
        }
        free(val);
    } else if (rc == MRD_ENOTFOUND) {
        rc = 0;
    }
    return rc;
}

/* ---- open / close ------------------------------------------------------- */

static void
report(const engine_opts *o, const char *a, const char *b)
{
    if (o->report && o->report_size)
        snprintf(o->report, o->report_size, "%s%s", a, b);
}

int
engine__meta_u64(engine *e, const char *key, uint64_t *out)
{
    void *val = NULL;
    size_t len = 0;
    int rc = store_meta_get(e->st, key, &val, &len);

    if (rc == 0) {
        char buf[24], *end;
        if (len == 0 || len >= sizeof(buf)) {
            rc = MRD_ECORRUPT;
        } else {
            memcpy(buf, val, len);
            buf[len] = '\0';
            *out = strtoull(buf, &end, 10);
            if (*end)
                rc = MRD_ECORRUPT;
        }
    }
    free(val);
    return rc;
}

static int
open_store(engine *e, const engine_opts *o)
{
    const mrd_config *c = o->conf;
    store_opts so;

    store_opts_default(&so);
    so.data_dirs = (const char *const *)c->data_dirs;
    so.n_data_dirs = c->n_data_dirs;
    so.k = c->ec_k;
    so.m = c->ec_m;
    if (c->block_size)
        so.block_size = c->block_size;
    so.meta_dir = c->meta_dir;
    so.flags = o->store_flags;
    return store_open(&so, &e->st);
}

static int
wal_fault_tramp(void *ud, wal_io_op op, uint64_t nth)
{
    engine *e = ud;

    return e->wal_fault(e->wal_fault_ud, (int)op, nth);
}

static int
open_wal(engine *e, const engine_opts *o)
{
    const mrd_config *c = o->conf;
    wal_opts wo;
    wal_recovery rep;
    char dir[1100];
    uint64_t last = 0;
    int rc;

    rc = store_index_last_lsn(e->st, &last);
    if (rc != 0)
        return rc;
    snprintf(dir, sizeof(dir), "%s/wal", c->meta_dir);
    memset(&wo, 0, sizeof(wo));
    memset(&rep, 0, sizeof(rep));
    wo.dir = dir;
    wo.site_id = c->site_id;
    wo.segment_bytes = c->wal_segment_bytes;
    wo.retention_bytes = c->wal_retention_bytes;
    wo.replay_from = last;
    wo.replay = engine__replay;
    wo.replay_ud = e;
    wo.salvage = o->wal_salvage;
    wo.report = &rep;
    wo.cursors.load = cursor_load;
    wo.cursors.save = cursor_save;
    wo.cursors.ud = e;
    if (o->wal_fault) {
        e->wal_fault = o->wal_fault;
        e->wal_fault_ud = o->wal_fault_ud;
        wo.fault = wal_fault_tramp;
        wo.fault_ud = e;
    }
    rc = wal_open(&wo, &e->w);
    /* The peers' cursors hold segments: they are registered before anything
     * runs retention (the flush below and the applied LSN do). Without them
     * it would keep nothing for a peer, and every restart dropped the
     * records a lagging peer still needed, which then had to be resynced. */
    if (rc == 0 && (rc = wal_peers_register(e)) != 0) {
        report(o, "WAL peers and their cursors: ", mrd_strerror(rc));
        return rc;
    }
    /* records planned by replay but not yet committed */
    if (rc == 0)
        rc = engine__batch_flush(e, e->batch);
    if (rc != 0) {
        report(o, rep.error[0] ? rep.error : "WAL replay failed: ",
               rep.error[0] ? "" : mrd_strerror(rc));
        return rc;
    }
    if (o->replayed)
        *o->replayed = rep.replayed;
    if (o->report && o->report_size)
        snprintf(o->report, o->report_size,
                 "wal segments=%u records=%llu replayed=%llu last_lsn=%llu torn=%d%s%s",
                 rep.segments, (unsigned long long)rep.records, (unsigned long long)rep.replayed,
                 (unsigned long long)rep.last_lsn, rep.torn, rep.torn ? " torn_segment=" : "",
                 rep.torn ? rep.torn_segment : "");
    e->applied_lsn = rep.last_lsn > last ? rep.last_lsn : last;
    if (e->applied_lsn)
        wal_set_applied(e->w, e->applied_lsn);
    return 0;
}

int
engine_open(const engine_opts *o, engine **out)
{
    engine *e;
    int rc;

    if (!o || !o->conf || !out)
        return MRD_EINVAL;
    if (!(e = calloc(1, sizeof(*e))))
        return -ENOMEM;
    e->conf = o->conf;
    e->site = o->conf->site_id;
    e->n_workers = o->n_workers > 0 ? o->n_workers : 4;
    pthread_mutex_init(&e->pool_mu, NULL);
    pthread_cond_init(&e->pool_cv, NULL);
    pthread_cond_init(&e->pool_idle_cv, NULL);
    pthread_mutex_init(&e->mut_mu, NULL);
    pthread_mutex_init(&e->peers_mu, NULL);
    pthread_mutex_init(&e->ap_mu, NULL);
    pthread_cond_init(&e->ap_cv, NULL);
    pthread_cond_init(&e->ap_idle_cv, NULL);

    if ((rc = cq_new(e, &e->cq)) != 0 || (rc = mrd_hlc_new(NULL, NULL, &e->hlc)) != 0 ||
        (rc = engine__batch_new(&e->batch)) != 0)
        goto fail;
    rc = open_store(e, o);
    if (rc != 0) {
        report(o, "store: ", mrd_strerror(rc));
        goto fail;
    }
    engine__conflict_names(e);
    rc = engine__meta_u64(e, ENGINE_HLC_KEY, &e->hlc_saved);
    if ((rc != 0 && rc != MRD_ENOTFOUND) || (rc = engine__gc_open(e)) != 0 ||
        (rc = engine__ra_load(e)) != 0 || (rc = engine__conflict_load(e)) != 0 ||
        (rc = open_wal(e, o)) != 0)
        goto fail;
    /* every local stamp so far is at or below the floor (replay raised it
     * for the records it committed): new stamps come after them all */
    if (e->hlc_saved)
        mrd_hlc_observe(e->hlc, e->hlc_saved);
    /* Every record is in the index now and nothing writes yet: what no
     * layout references is a crash leftover. */
    if ((rc = store_sweep_orphans(e->st, NULL)) != 0) {
        report(o, "orphan sweep: ", mrd_strerror(rc));
        goto fail;
    }
    for (int i = 0; i < e->n_ra; i++)
        e->ra[i].appended = e->ra[i].applied;
    if (!(e->workers = calloc((size_t)e->n_workers, sizeof(pthread_t)))) {
        rc = -ENOMEM;
        goto fail;
    }
    for (int i = 0; i < e->n_workers; i++) {
        if ((rc = -pthread_create(&e->workers[i], NULL, worker_main, e)) != 0) {
            e->n_workers = i;
            goto fail;
        }
    }
    if ((rc = -pthread_create(&e->applier, NULL, engine__applier_main, e)) != 0)
        goto fail;
    e->ap_started = 1;
    if ((rc = engine__gc_start(e)) != 0)
        goto fail;
    *out = e;
    return 0;
fail:
    engine_close(e);
    return rc;
}

void
engine_close(engine *e)
{
    if (!e)
        return;
    /* 0. no new sweep (one running finishes: it appends records) */
    engine__gc_close(e);
    /* 1. let queued work finish (it may hold store writers, append records) */
    pthread_mutex_lock(&e->pool_mu);
    while (e->jobs_head || e->pool_running)
        pthread_cond_wait(&e->pool_idle_cv, &e->pool_mu);
    e->pool_stop = 1;
    pthread_cond_broadcast(&e->pool_cv);
    pthread_mutex_unlock(&e->pool_mu);
    for (int i = 0; e->workers && i < e->n_workers; i++)
        pthread_join(e->workers[i], NULL);
    /* 2. the WAL flushes and fires every append callback on close */
    wal_close(e->w);
    e->w = NULL;
    /* 3. the applier drains what the WAL handed it */
    if (e->ap_started) {
        pthread_mutex_lock(&e->ap_mu);
        e->ap_stop = 1;
        pthread_cond_broadcast(&e->ap_cv);
        pthread_mutex_unlock(&e->ap_mu);
        pthread_join(e->applier, NULL);
    }
    /* callbacks still queued run now, on every queue, while the store is
     * open (a done function may abort a store writer); engine_run fails
     * from here on */
    for (engine_cq *q = e->cqs; q; q = q->next)
        wal_cq_process(q->q);
    store_close(e->st);
    engine__batch_free(e->batch);
    while (e->cqs) {
        engine_cq *q = e->cqs;
        e->cqs = q->next;
        if (bound_cq == q)
            bound_cq = NULL;
        wal_cq_free(q->q);
        free(q);
    }
    mrd_hlc_free(e->hlc);
    free(e->workers);
    pthread_mutex_destroy(&e->pool_mu);
    pthread_cond_destroy(&e->pool_cv);
    pthread_cond_destroy(&e->pool_idle_cv);
    pthread_mutex_destroy(&e->mut_mu);
    pthread_mutex_destroy(&e->peers_mu);
    pthread_mutex_destroy(&e->ap_mu);
    pthread_cond_destroy(&e->ap_cv);
    pthread_cond_destroy(&e->ap_idle_cv);
    engine__gc_destroy(e);
    free(e);
}

int
engine_get_status(engine *e, engine_status *out)
{
    wal_status ws;
    int rc;

    if (!e || !out)
        return MRD_EINVAL;
    memset(out, 0, sizeof(*out));
    rc = wal_get_status(e->w, &ws);
    if (rc != 0)
        return rc;
    out->wal_next_lsn = ws.next_lsn;
    out->wal_durable_lsn = ws.durable_lsn;
    out->wal_first_lsn = ws.first_lsn;
    out->wal_segments = ws.segments;
    out->wal_bytes = ws.bytes;
    out->wal_retention_bytes = ws.retention_bytes;
    out->wal_over_cap = ws.over_cap;
    out->wal_appends = ws.appends;
    out->wal_syncs = ws.syncs;
    out->wal_max_batch = ws.max_batch;
    out->wal_segments_deleted = ws.segments_deleted;
    out->wal_cap_resyncs = ws.resyncs;
    out->wal_cap_cursor_skips = ws.cursor_skips;
    pthread_mutex_lock(&e->ap_mu);
    out->applied_lsn = e->applied_lsn;
    out->mutations = e->mutations;
    out->apply_batches = e->apply_batches;
    out->apply_errors = e->apply_errors;
    out->buckets_revived = e->buckets_revived;
    out->failed = e->failed || ws.failed;
    out->failure[0] = '\0';
    if (out->failed)
        engine__failure_text(e->conf->meta_dir, &ws, e->fail_index_rc, out->failure,
                             sizeof(out->failure));
    pthread_mutex_unlock(&e->ap_mu);
    return 0;
}

/* ---- small helpers ------------------------------------------------------ */

void
engine_version_id_new(engine *e, char out[25])
{
    snprintf(out, 25, "%016llx%08x", (unsigned long long)mrd_hlc_now(e->hlc), e->site);
}

uint32_t
engine__vid_origin(const char *vid)
{
    unsigned long v;
    char *end;

    if (!vid || strlen(vid) != 24)
        return 0;
    v = strtoul(vid + 16, &end, 16);
    return *end == '\0' && v <= VV_SITE_MAX ? (uint32_t)v : 0;
}

int
engine__vv_from_msg(const Meridian__VersionVector *m, vv *out)
{
    vv v;

    memset(&v, 0, sizeof(v));
    if (m) {
        if (m->n_entries > VV_MAX_SITES)
            return MRD_ETOOBIG;
        for (size_t i = 0; i < m->n_entries; i++) {
            v.e[i].site = m->entries[i]->site;
            v.e[i].counter = m->entries[i]->counter;
        }
        v.n = (uint32_t)m->n_entries;
    }
    if (vv_validate(&v) != 0)
        return MRD_ECORRUPT;
    *out = v;
    return 0;
}

/* Index metadata blob: "key\0value\0" repeated. */
int
engine__meta_encode(Meridian__KeyValue *const *kv, size_t n, mrd_buf *out)
{
    int rc = 0;

    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = mrd_buf_append(out, kv[i]->key, strlen(kv[i]->key) + 1);
        if (rc == 0)
            rc = mrd_buf_append(out, kv[i]->value, strlen(kv[i]->value) + 1);
    }
    return rc;
}

int
engine_meta_each(const void *blob, size_t len,
                 int (*fn)(void *ud, const char *key, const char *value), void *ud)
{
    const char *p = blob, *end = p + len;

    while (p < end) {
        const char *k = p, *v;
        const char *z = memchr(p, '\0', (size_t)(end - p));
        if (!z)
            return MRD_ECORRUPT;
        v = z + 1;
        z = v < end ? memchr(v, '\0', (size_t)(end - v)) : NULL;
        if (!z)
            return MRD_ECORRUPT;
        p = z + 1;
        int rc = fn(ud, k, v);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int
engine_bucket_created_ms(const void *blob, size_t len, uint64_t *out)
{
    Meridian__BucketCreate *bc = meridian__bucket_create__unpack(NULL, len, blob);

    if (!bc)
        return MRD_ECORRUPT;
    *out = MRD_HLC_MS(bc->hlc);
    meridian__bucket_create__free_unpacked(bc, NULL);
    return 0;
}
