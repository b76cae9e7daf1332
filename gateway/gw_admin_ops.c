/*
 * gw_admin_ops.c - admin endpoints that read the store or start work on it
 * (docs/admin-api.md is the reference):
 *
 *   GET  /admin/v1/conflicts[?limit=N&bucket=B&key=K]
 *                                 the conflict log, newest first
 *   GET  /admin/v1/conflicts/ID   one conflict record
 *   GET  /admin/v1/object?bucket=B&key=K
 *                                 this site's copy of a key: every stored
 *                                 version, the current one, and per peer
 *                                 whether the current one has reached it
 *   GET  /admin/v1/replication/failed[?peer=P&bucket=B&limit=N&after=LSN]
 *                                 records this site originated that a peer
 *                                 has not applied past the deadline (FAILED)
 *   GET  /admin/v1/drives         drive health, error counters and heal
 *   POST /admin/v1/drives/heal[?all=0]
 *                                 re-probe drives and start a heal
 *
 * Index reads and heal starts may block on disk, so every one of these runs
 * as an engine_run job: `work` on a pool thread fills a JSON body, `done`
 * answers on the loop (where the replicator's state may be read). A client
 * that goes away meanwhile only marks the job; done frees it. The gw_req is
 * never touched off the loop. The drive list a job writes is read with
 * atomics: the main loop's probe may update it meanwhile.
 *
 * The conflict records are stored as JSON by the engine
 * (engine_conflict.c) and are copied into the answer as they are, with one
 * field added: loser_present, whether the losing version is still in this
 * site's index (it may have been purged after its retention window, or
 * overwritten by a later write that saw it).
 */
#include "gw_int.h"

#include "engine.h"
#include "replicator.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONFLICTS_DEFAULT_LIMIT 50
#define GW_FAILED_SCAN_MAX      1000000 /* WAL records one listing reads per peer */

typedef struct admin_job admin_job;
struct admin_job {
    gw_daemon *d;
    gw_req *r;
    int released, inflight;
    void (*work)(admin_job *j);
    void (*finish)(admin_job *j); /* on the loop, before answering; may be NULL */
    /* request */
    mrd_buf bucket, key;
    uint64_t id;
    int limit, all;
    /* answer */
    int status;
    const char *err_code;
    char err_msg[256];
    mrd_buf out;
    mrd_json_w w;
    /* FAILED records: one query per peer, taken on the loop */
    repl_failed_query fq[MRD_MAX_PEERS];
    uint64_t fcount[MRD_MAX_PEERS];
    int funknown[MRD_MAX_PEERS]; /* the peer's failed_unknown: the list may miss some */
    int n_fq;
    uint64_t after, now_ms;
    /* object status: the current version, for per-peer replication */
    int has_current;
    char cur_vid[64];
    uint64_t cur_hlc;
};

static void
job_free(admin_job *j)
{
    mrd_buf_free(&j->bucket);
    mrd_buf_free(&j->key);
    mrd_buf_free(&j->out);
    free(j);
}

static void
job_release(gw_req *r, void *ctx, int aborted)
{
    admin_job *j = ctx;

    (void)r;
    (void)aborted;
    if (j->inflight)
        j->released = 1;
    else
        job_free(j);
}

static const gw_req_ops job_ops = {.release = job_release};

static void
job_fail(admin_job *j, int status, const char *code, const char *msg)
{
    j->status = status;
    j->err_code = code;
    snprintf(j->err_msg, sizeof(j->err_msg), "%s", msg);
}

static void
job_work(void *arg)
{
    admin_job *j = arg;

    j->work(j);
}

static void
job_done(void *arg)
{
    admin_job *j = arg;

    j->inflight = 0;
    if (j->released) {
        job_free(j);
        return;
    }
    if (!j->err_code && j->finish)
        j->finish(j);
    if (!j->err_code && mrd_json_w_error(&j->w) != 0)
        job_fail(j, 500, "InternalError", "could not render the answer");
    if (j->err_code)
        gw__json_error(j->r, j->status, j->err_code, j->err_msg);
    else
        gw_resp_simple(j->r, 200, "application/json", j->out.data ? j->out.data : "{}",
                       j->out.data ? j->out.len : 2);
}

static admin_job *
job_new(gw_daemon *d, gw_req *r)
{
    admin_job *j = calloc(1, sizeof(*j));

    if (!j) {
        gw__json_error(r, 500, "InternalError", "out of memory");
        return NULL;
    }
    j->d = d;
    j->r = r;
    j->status = 200;
    mrd_json_w_init(&j->w, &j->out);
    return j;
}

static void
job_start(admin_job *j)
{
    if (!j->d->eng) {
        gw__json_error(j->r, 503, "Unavailable",
                       "the store is not open (too few drives online); see 'meridianctl status'");
        job_free(j);
        return;
    }
    gw_req_attach(j->r, &job_ops, j);
    j->inflight = 1;
    if (engine_run(j->d->eng, job_work, job_done, j) != 0) {
        j->inflight = 0;
        gw__json_error(j->r, 503, "Unavailable", "the daemon is shutting down");
    }
}

/* ---- conflicts ----------------------------------------------------------- */

/* Appends record rec (a JSON object) to j->out with loser_present added. */
static void
append_conflict(admin_job *j, store *st, const mrd_json *rec, const char *raw, size_t len)
{
    const mrd_json *loser = mrd_json_get(rec, "loser");
    store_version_rec *vr = NULL;
    int present =
        store_index_get(st, mrd_json_get_str(rec, "bucket", ""), mrd_json_get_str(rec, "key", ""),
                        mrd_json_get_str(loser, "version_id", ""), &vr) == 0;

    store_version_rec_free(vr);
    while (len > 0 && raw[len - 1] != '}')
        len--;
    if (len == 0)
        return;
    mrd_buf_append(&j->out, raw, len - 1);
    mrd_buf_appendf(&j->out, ",\"loser_present\":%s}", present ? "true" : "false");
}

static void
work_conflicts(admin_job *j)
{
    engine *e = j->d->eng;
    store *st = engine_store(e);
    uint64_t last = engine_conflict_last(e);
    uint64_t first = last > ENGINE_CONFLICT_LOG_MAX ? last - ENGINE_CONFLICT_LOG_MAX + 1 : 1;
    const char *b = j->bucket.data, *k = j->key.data;
    mrd_buf rec = {0};
    int n = 0;

    if (j->id) {
        mrd_json *p = NULL;
        size_t pos = 0;
        int rc = engine_conflict_get(e, j->id, &rec);
        if (rc == MRD_ENOTFOUND)
            job_fail(j, 404, "NoSuchConflict",
                     "no conflict of that id at this site (ids are per site; the log keeps the "
                     "last 1000); see 'meridianctl conflicts list'");
        else if (rc != 0)
            job_fail(j, 500, "InternalError", mrd_strerror(rc));
        else if (mrd_json_parse(rec.data, rec.len, &p, &pos) != 0)
            job_fail(j, 500, "InternalError", "a conflict record does not parse");
        else
            append_conflict(j, st, p, rec.data, rec.len);
        mrd_json_free(p);
        mrd_buf_free(&rec);
        return;
    }
    /* site names are [a-z0-9_-] (checked by the config): no escaping */
    mrd_buf_appendf(&j->out, "{\"site\":\"%s\",\"total\":%llu,\"capacity\":%u,\"conflicts\":[",
                    j->d->conf->site_name, (unsigned long long)last, ENGINE_CONFLICT_LOG_MAX);
    for (uint64_t s = last; s >= first && s > 0 && n < j->limit; s--) {
        mrd_json *p = NULL;
        size_t pos = 0;
        mrd_buf_reset(&rec);
        if (engine_conflict_get(e, s, &rec) != 0 ||
            mrd_json_parse(rec.data, rec.len, &p, &pos) != 0)
            continue; /* overwritten while we read: the newer one was listed */
        if ((!b || strcmp(b, mrd_json_get_str(p, "bucket", "")) == 0) &&
            (!k || strcmp(k, mrd_json_get_str(p, "key", "")) == 0)) {
            if (n++)
                mrd_buf_append(&j->out, ",", 1);
            append_conflict(j, st, p, rec.data, rec.len);
        }
        mrd_json_free(p);
    }
    mrd_buf_appendf(&j->out, "]}");
    mrd_buf_free(&rec);
}

/* ---- object status ------------------------------------------------------- */

typedef struct versions_walk {
    admin_job *j;
    const char *key;
    int n, rc;
} versions_walk;

static int
walk_version(void *user, const char *key, const store_version *v)
{
    versions_walk *vw = user;

    /* The walk starts at the prefix `key`, and the key itself sorts before
     * every longer key it prefixes: anything else means we are past it (or
     * it is absent), so stop rather than walk the keys that share it. */
    if (strcmp(key, vw->key) != 0)
        return 1;
    vw->n++;
    if ((vw->rc = engine_version_json(vw->j->d->eng, v, &vw->j->w)) != 0)
        return 1;
    return 0;
}

static void
work_object(admin_job *j)
{
    engine *e = j->d->eng;
    store *st = engine_store(e);
    store_version_rec *cur = NULL;
    versions_walk vw = {.j = j, .key = j->key.data};
    void *blob = NULL;
    size_t blen = 0;
    int has_bucket = store_bucket_get(st, j->bucket.data, &blob, &blen) == 0;
    int rc;

    free(blob);
    mrd_json_w_obj_begin(&j->w);
    mrd_json_w_key(&j->w, "site");
    mrd_json_w_str(&j->w, j->d->conf->site_name);
    mrd_json_w_key(&j->w, "site_id");
    mrd_json_w_uint(&j->w, j->d->conf->site_id);
    mrd_json_w_key(&j->w, "bucket");
    mrd_json_w_str(&j->w, j->bucket.data);
    mrd_json_w_key(&j->w, "key");
    mrd_json_w_str(&j->w, j->key.data);
    mrd_json_w_key(&j->w, "bucket_exists");
    mrd_json_w_bool(&j->w, has_bucket);
    mrd_json_w_key(&j->w, "current");
    rc = store_index_get(st, j->bucket.data, j->key.data, NULL, &cur);
    if (rc == 0) {
        const store_version *v = store_version_rec_get(cur);
        rc = engine_version_json(e, v, &j->w);
        j->has_current = 1;
        snprintf(j->cur_vid, sizeof(j->cur_vid), "%s", v->version_id);
        j->cur_hlc = v->hlc;
    } else if (rc == MRD_ENOTFOUND) {
        mrd_json_w_null(&j->w);
        rc = 0;
    }
    store_version_rec_free(cur);
    if (rc == 0) {
        mrd_json_w_key(&j->w, "versions");
        mrd_json_w_arr_begin(&j->w);
        rc = store_index_list(st, j->bucket.data, j->key.data, NULL, NULL, STORE_LIST_VERSIONS,
                              walk_version, &vw);
        if (rc == 0)
            rc = vw.rc;
        mrd_json_w_arr_end(&j->w);
    }
    if (rc != 0)
        job_fail(j, 500, "InternalError", mrd_strerror(rc));
}

/* On the loop: per peer, has the current version reached it (as seen from
 * here: only the version's origin knows; elsewhere it is a REPLICA). */
static void
finish_object(admin_job *j)
{
    const mrd_config *c = j->d->conf;
    uint32_t origin = 0;

    if (j->has_current && strlen(j->cur_vid) == 24)
        origin = (uint32_t)strtoul(j->cur_vid + 16, NULL, 16);
    mrd_json_w_key(&j->w, "replication");
    mrd_json_w_arr_begin(&j->w);
    for (int i = 0; i < c->n_peers; i++) {
        /* the replicator's peer order is its own (sites come and go) */
        int idx = j->d->replicator ? repl_peer_find(j->d->replicator, c->peers[i].id) : -1;
        repl_peer_info info;
        const char *st = NULL;
        if (j->has_current && idx >= 0)
            st = repl_version_peer_status(j->d->replicator, idx, origin, j->cur_hlc,
                                          mrd_clock_realtime_ms(NULL),
                                          GW_REPLICATION_FAILED_MS(j->d));
        mrd_json_w_obj_begin(&j->w);
        mrd_json_w_key(&j->w, "peer");
        mrd_json_w_str(&j->w, c->peers[i].name);
        mrd_json_w_key(&j->w, "peer_id");
        mrd_json_w_uint(&j->w, c->peers[i].id);
        mrd_json_w_key(&j->w, "status");
        mrd_json_w_str(&j->w, st ? st : "NONE");
        if (idx >= 0 && repl_peer_get(j->d->replicator, idx, &info) == 0) {
            mrd_json_w_key(&j->w, "link");
            mrd_json_w_str(&j->w, repl_peer_state_name(info.state));
            mrd_json_w_key(&j->w, "lag_records");
            mrd_json_w_uint(&j->w, info.lag_records);
        }
        mrd_json_w_obj_end(&j->w);
    }
    mrd_json_w_arr_end(&j->w);
    mrd_json_w_obj_end(&j->w);
}

/* ---- FAILED records ------------------------------------------------------ */

typedef struct failed_walk {
    admin_job *j;
    const repl_failed_query *q;
    int n;
} failed_walk;

static int
failed_one(void *ud, const repl_failed_entry *e)
{
    failed_walk *fw = ud;
    mrd_json_w *w = &fw->j->w;

    if (fw->n >= fw->j->limit)
        return 1;
    fw->n++;
    mrd_json_w_obj_begin(w);
    mrd_json_w_key(w, "peer");
    mrd_json_w_str(w, fw->q->peer_name);
    mrd_json_w_key(w, "kind");
    mrd_json_w_str(w, e->kind);
    mrd_json_w_key(w, "bucket");
    mrd_json_w_str(w, e->bucket);
    mrd_json_w_key(w, "key");
    mrd_json_w_str(w, e->key);
    mrd_json_w_key(w, "version_id");
    mrd_json_w_str(w, e->version_id);
    mrd_json_w_key(w, "size");
    mrd_json_w_uint(w, e->size);
    mrd_json_w_key(w, "lsn");
    mrd_json_w_uint(w, e->lsn);
    mrd_json_w_key(w, "age_ms");
    mrd_json_w_uint(w, fw->j->now_ms > MRD_HLC_MS(e->hlc) ? fw->j->now_ms - MRD_HLC_MS(e->hlc) : 0);
    mrd_json_w_obj_end(w);
    return 0;
}

/* Reads, per peer, the WAL after its acked LSN up to the deadline
 * (repl_failed_scan): no index scan. The peers' summaries follow the list. */
static void
work_failed(admin_job *j)
{
    repl_failed_end ends[MRD_MAX_PEERS];
    int rcs[MRD_MAX_PEERS];
    failed_walk fw = {j, NULL, 0};
    mrd_json_w *w = &j->w;
    int truncated = 0;

    mrd_json_w_obj_begin(w);
    mrd_json_w_key(w, "site");
    mrd_json_w_str(w, j->d->conf->site_name);
    mrd_json_w_key(w, "failed_after_s");
    mrd_json_w_uint(w, j->d->conf->failed_after_s);
    mrd_json_w_key(w, "failed");
    mrd_json_w_arr_begin(w);
    memset(ends, 0, sizeof(ends));
    memset(rcs, 0, sizeof(rcs));
    for (int i = 0; i < j->n_fq; i++) {
        fw.q = &j->fq[i];
        if (!j->fq[i].cutoff_ms)
            continue; /* no deadline: nothing is ever FAILED */
        if (fw.n >= j->limit) {
            truncated = 1; /* this peer was not read */
            continue;
        }
        rcs[i] = repl_failed_scan(j->d->eng, &j->fq[i], j->bucket.data, j->after,
                                  GW_FAILED_SCAN_MAX, failed_one, &fw, &ends[i]);
        truncated |= ends[i].more;
    }
    mrd_json_w_arr_end(w);
    mrd_json_w_key(w, "truncated");
    mrd_json_w_bool(w, truncated);
    mrd_json_w_key(w, "peers");
    mrd_json_w_arr_begin(w);
    for (int i = 0; i < j->n_fq; i++) {
        mrd_json_w_obj_begin(w);
        mrd_json_w_key(w, "peer");
        mrd_json_w_str(w, j->fq[i].peer_name);
        mrd_json_w_key(w, "peer_id");
        mrd_json_w_uint(w, j->fq[i].peer_id);
        mrd_json_w_key(w, "acked_lsn");
        mrd_json_w_uint(w, ends[i].acked_lsn);
        mrd_json_w_key(w, "failed_records");
        mrd_json_w_uint(w, j->fcount[i]);
        mrd_json_w_key(w, "failed_unknown");
        mrd_json_w_bool(w, j->funknown[i]);
        mrd_json_w_key(w, "next_after");
        mrd_json_w_uint(w, ends[i].more ? ends[i].last_lsn : 0);
        mrd_json_w_key(w, "error");
        mrd_json_w_str(w, rcs[i] == MRD_ENOTFOUND ? "the WAL no longer holds what it lacks: it "
                                                    "needs a resync (anti-entropy)"
                          : rcs[i]                ? mrd_strerror(rcs[i])
                                                  : "");
        mrd_json_w_obj_end(w);
    }
    mrd_json_w_arr_end(w);
    mrd_json_w_obj_end(w);
}

/* On the loop: the query of each peer asked for (all when none is named). */
static int
failed_prepare(admin_job *j, const char *peer)
{
    repl *r = j->d->replicator;
    int found = 0;

    j->now_ms = mrd_clock_realtime_ms(NULL);
    for (int i = 0; r && i < repl_peer_count(r) && j->n_fq < MRD_MAX_PEERS; i++) {
        repl_peer_info pi;
        if (repl_peer_get(r, i, &pi) != 0 || (peer && strcmp(peer, pi.name) != 0))
            continue;
        found = 1;
        if (repl_failed_query_get(r, pi.id, j->now_ms, &j->fq[j->n_fq]) == 0) {
            j->funknown[j->n_fq] = pi.failed_unknown;
            j->fcount[j->n_fq++] = pi.failed_records;
        }
    }
    return peer && !found ? MRD_ENOTFOUND : 0;
}

/* ---- drives and heal ----------------------------------------------------- */

static void
write_drives(admin_job *j, const store_status *ss)
{
    mrd_json_w *w = &j->w;

    mrd_json_w_obj_begin(w);
    mrd_json_w_key(w, "site");
    mrd_json_w_str(w, j->d->conf->site_name);
    mrd_json_w_key(w, "online");
    mrd_json_w_int(w, ss ? ss->online_drives : gw__drives_online(j->d));
    mrd_json_w_key(w, "need");
    mrd_json_w_int(w, j->d->conf->ec_k);
    mrd_json_w_key(w, "drives");
    mrd_json_w_arr_begin(w);
    for (int i = 0; i < j->d->n_drives; i++) {
        const gw_drive *gd = &j->d->drives[i];
        const store_drive_status *sd = ss && i < ss->n_drives ? &ss->drives[i] : NULL;
        const char *why;
        gw_drive_verdict v = gw__drive_verdict(j->d, i, sd, &why);
        mrd_json_w_obj_begin(w);
        mrd_json_w_key(w, "index");
        mrd_json_w_int(w, i);
        mrd_json_w_key(w, "path");
        mrd_json_w_str(w, gd->path);
        mrd_json_w_key(w, "state");
        mrd_json_w_str(w, v == GW_DRIVE_FAILED ? "failed" : v == GW_DRIVE_FULL ? "full" : "online");
        mrd_json_w_key(w, "error");
        mrd_json_w_str(w, why);
        mrd_json_w_key(w, "total_bytes");
        mrd_json_w_uint(w, sd && sd->total_bytes ? sd->total_bytes : GW_LOAD(gd->total_bytes));
        mrd_json_w_key(w, "free_bytes");
        mrd_json_w_uint(w, sd && sd->total_bytes ? sd->free_bytes : GW_LOAD(gd->free_bytes));
        mrd_json_w_key(w, "read_errors");
        mrd_json_w_uint(w, sd ? sd->read_errors : 0);
        mrd_json_w_key(w, "write_errors");
        mrd_json_w_uint(w, sd ? sd->write_errors : 0);
        mrd_json_w_key(w, "checksum_errors");
        mrd_json_w_uint(w, sd ? sd->checksum_errors : 0);
        mrd_json_w_obj_end(w);
    }
    mrd_json_w_arr_end(w);
    if (ss) {
        mrd_json_w_key(w, "heal");
        mrd_json_w_obj_begin(w);
        mrd_json_w_key(w, "running");
        mrd_json_w_bool(w, ss->heal_running);
        mrd_json_w_key(w, "queue");
        mrd_json_w_uint(w, ss->heal_queue);
        mrd_json_w_key(w, "objects_checked");
        mrd_json_w_uint(w, ss->heal_objects_checked);
        mrd_json_w_key(w, "objects_total");
        mrd_json_w_uint(w, ss->heal_objects_total);
        mrd_json_w_key(w, "shards_rebuilt");
        mrd_json_w_uint(w, ss->heal_shards_rebuilt);
        mrd_json_w_key(w, "errors");
        mrd_json_w_uint(w, ss->heal_errors);
        mrd_json_w_obj_end(w);
        mrd_json_w_key(w, "degraded_writes");
        mrd_json_w_uint(w, ss->degraded_writes);
        mrd_json_w_key(w, "reconstructed_reads");
        mrd_json_w_uint(w, ss->reconstructed_reads);
        /* the store's pre-created shard files (store/FORMAT.md) */
        mrd_json_w_key(w, "shard_file_pool");
        mrd_json_w_obj_begin(w);
        mrd_json_w_key(w, "ready");
        mrd_json_w_uint(w, ss->pool_ready);
        mrd_json_w_key(w, "hits");
        mrd_json_w_uint(w, ss->pool_hits);
        mrd_json_w_key(w, "misses");
        mrd_json_w_uint(w, ss->pool_misses);
        mrd_json_w_obj_end(w);
    }
    mrd_json_w_obj_end(w);
}

static void
work_drives(admin_job *j)
{
    store_status *ss = calloc(1, sizeof(*ss));
    int rc = ss ? store_get_status(engine_store(j->d->eng), ss) : -ENOMEM;

    if (rc != 0)
        job_fail(j, 500, "InternalError", mrd_strerror(rc));
    else
        write_drives(j, ss);
    free(ss);
}

static void
work_heal(admin_job *j)
{
    store *st = engine_store(j->d->eng);
    int rc;

    store_drives_rescan(st); /* drives that came back rejoin first */
    rc = store_heal_start(st, j->all);
    if (rc == MRD_EBUSY)
        job_fail(j, 409, "Busy", "a heal is already running; see 'meridianctl drive list'");
    else if (rc != 0)
        job_fail(j, 500, "InternalError", mrd_strerror(rc));
    else
        work_drives(j);
    MRD_INFO("admin.heal_start", "all=%d result=\"%s\"", j->all, rc ? mrd_strerror(rc) : "ok");
}

/* ---- routing ------------------------------------------------------------- */

static int
method_is(gw_req *r, const char *m)
{
    return strcmp(gw_req_method(r), m) == 0;
}

int
gw__route_admin_ops(gw_req *r, gw_daemon *d)
{
    const char *path = gw_req_path(r), *q = gw_req_query(r);
    void (*work)(admin_job *) = NULL;
    void (*finish)(admin_job *) = NULL;
    const char *want = "GET";
    mrd_buf tmp = {0};
    admin_job *j;

    if (strcmp(path, "/admin/v1/conflicts") == 0 || strncmp(path, "/admin/v1/conflicts/", 20) == 0)
        work = work_conflicts;
    else if (strcmp(path, "/admin/v1/object") == 0)
        work = work_object, finish = finish_object;
    else if (strcmp(path, "/admin/v1/drives") == 0)
        work = work_drives;
    else if (strcmp(path, "/admin/v1/replication/failed") == 0)
        work = work_failed;
    else if (strcmp(path, "/admin/v1/drives/heal") == 0)
        work = work_heal, want = "POST";
    else
        return 0;
    if (!method_is(r, want) && !(strcmp(want, "GET") == 0 && method_is(r, "HEAD"))) {
        gw__json_error(r, 405, "MethodNotAllowed", strcmp(want, "GET") ? "use POST" : "use GET");
        return 1;
    }
    if (!(j = job_new(d, r)))
        return 1;
    j->work = work;
    j->finish = finish;
    j->limit = CONFLICTS_DEFAULT_LIMIT;
    j->all = 1;
    if (gw_query_param(q, "bucket", &j->bucket) && !j->bucket.data)
        mrd_buf_append(&j->bucket, "", 0);
    if (gw_query_param(q, "key", &j->key) && !j->key.data)
        mrd_buf_append(&j->key, "", 0);
    if (gw_query_param(q, "limit", &tmp)) {
        j->limit = tmp.data ? atoi(tmp.data) : 0;
        if (j->limit < 1 || j->limit > (int)ENGINE_CONFLICT_LOG_MAX) {
            gw__json_error(r, 400, "InvalidArgument", "limit must be 1 to 1000");
            goto fail;
        }
    }
    if (gw_query_param(q, "all", &tmp))
        j->all = !(tmp.data && strcmp(tmp.data, "0") == 0);
    if (work == work_conflicts && path[19] == '/') {
        char *end;
        j->id = strtoull(path + 20, &end, 10);
        if (j->id == 0 || *end) {
            gw__json_error(r, 400, "InvalidArgument",
                           "a conflict id is a positive integer, as listed by 'meridianctl "
                           "conflicts list'");
            goto fail;
        }
    }
    if (work == work_object &&
        (!j->bucket.data || !j->bucket.data[0] || !j->key.data || !j->key.data[0])) {
        gw__json_error(r, 400, "InvalidArgument", "give bucket=B&key=K");
        goto fail;
    }
    if (work == work_failed) {
        if (gw_query_param(q, "after", &tmp) && tmp.data)
            j->after = strtoull(tmp.data, NULL, 10);
        mrd_buf_reset(&tmp);
        gw_query_param(q, "peer", &tmp);
        if (failed_prepare(j, tmp.data && tmp.data[0] ? tmp.data : NULL) != 0) {
            gw__json_error(r, 404, "NoSuchPeer", "no peer of that name; see 'meridianctl status'");
            goto fail;
        }
    }
    mrd_buf_free(&tmp);
    job_start(j);
    return 1;
fail:
    mrd_buf_free(&tmp);
    job_free(j);
    return 1;
}
