/*
 * engine_int.h - private to engine/: the engine handle and the helpers its
 * files share (engine_core.c: open/close/pool/completions; engine_mut.c:
 * checks, stamping, WAL append; engine_apply.c: records to index ops, the
 * applier thread and recovery replay).
 */
#ifndef MERIDIAN_ENGINE_INT_H
#define MERIDIAN_ENGINE_INT_H

#include <pthread.h>

#include "conflict.h"
#include "engine.h"
#include "wal.h"
#include "wal.pb-c.h"

/* Entries of the GC's stable log, at most (engine_gc.c). */
#define ENGINE_GC_LOG_MAX 1024

/* A completion queue (engine_cq_new): where callbacks go. The engine owns
 * every one (a list, freed by engine_close), so a callback can never be
 * posted to a freed queue. */
struct engine_cq {
    engine *e;
    wal_cq *q;
    struct engine_cq *next;
};

/* A unit of pool work: done goes to cq, the submitter's queue. */
typedef struct engine__job {
    struct engine__job *next;
    void (*work)(void *);
    void (*done)(void *);
    void *arg;
    engine_cq *cq;
} engine__job;

/* An appended record on its way to the index. */
typedef struct engine__pending {
    struct engine__pending *next;
    engine *e;
    uint64_t lsn;
    uint16_t type;
    uint8_t *payload; /* the packed WalRecord, as appended (NULL when rec is set) */
    size_t len;
    /* engine__append_decoded: the record as decoding payload would give it,
     * and a replicated record's decoded original; the applier takes these
     * instead of decoding again */
    Meridian__WalRecord *rec, *inner;
    int status;
    engine_cb cb;
    void *ud;
    engine_cq *cq; /* where cb goes: the caller's queue at append time */
} engine__pending;

typedef struct engine__batch engine__batch;

struct engine {
    const mrd_config *conf;
    uint32_t site;
    store *st;
    wal *w;
    engine_cq *cq;  /* the default queue: engine_fd / engine_poll */
    engine_cq *cqs; /* every queue, the default one included (under pool_mu) */
    mrd_hlc *hlc;

    /* worker pool */
    pthread_mutex_t pool_mu;
    pthread_cond_t pool_cv, pool_idle_cv;
    engine__job *jobs_head, *jobs_tail;
    int pool_stop, pool_running;
    int n_workers;
    pthread_t *workers;

    /* mutations: checks + stamp + append are serialised so LSN order is
     * stamp order */
    pthread_mutex_t mut_mu;

    /* applier */
    pthread_mutex_t ap_mu;
    pthread_cond_t ap_cv, ap_idle_cv;
    engine__pending *ap_head, *ap_tail;
    uint64_t ap_outstanding; /* appended, callback not yet queued */
    int ap_stop;
    int ap_started;
    pthread_t applier;
    engine__batch *batch; /* used by the applier thread, or by replay */

    /* status (under ap_mu) */
    uint64_t applied_lsn, mutations, apply_batches, apply_errors;
    uint64_t buckets_revived;
    int failed;
    int fail_index_rc; /* the index commit's error, when that is what failed */
    int (*wal_fault)(void *ud, int op, uint64_t nth); /* tests: engine_opts.wal_fault */
    void *wal_fault_ud;

    /* Replication progress per origin site (engine_repl.c), one slot per
     * configured peer, fixed at open. appended: highest origin LSN handed to
     * the WAL (under mut_mu; the duplicate filter). applied: highest origin
     * LSN every record at or below which is in the index (under ap_mu). */
    struct engine__ra {
        uint32_t origin;
        uint64_t appended, applied;
        uint64_t floor; /* the highest engine_repl_set_applied (under ap_mu) */
        uint64_t records, duplicates;
    } ra[MRD_MAX_PEERS];
    int n_ra;

    /* Conflict log (engine_conflict.c): the number the next record gets
     * (applier thread or replay only) and the last one committed (under
     * ap_mu). */
    uint64_t conflict_next, conflict_last;
    /* Site names for conflict records and version JSON, copied at open:
     * the config's peer list may be rewritten on another thread when the
     * topology changes at run time (a site added later shows as "#id"). */
    struct engine__name {
        uint32_t id;
        char name[MRD_NAME_MAX];
    } names[MRD_MAX_PEERS + 1];
    int n_names;

    /* The highest HLC stamp of a local record committed to the index, as
     * stored under ENGINE_HLC_KEY (applier thread, or replay). */
    uint64_t hlc_saved;

    /* The WAL's peers as last saved under ENGINE_WAL_PEERS_KEY (under
     * peers_mu, which orders those saves). */
    pthread_mutex_t peers_mu;
    char wal_peers_saved[MRD_MAX_PEERS * 11 + 1];

    /* GC (engine_gc.c). gc_mark: the stable point (atomic; the applier
     * reads it for ghosts); gc_mark_saved: as persisted (sweeps only). */
    uint64_t gc_mark, gc_mark_saved;
    uint64_t gc_live; /* the last point offered (atomic; 0 until one is) */
    uint64_t gc_grace_ms, gc_interval_ms, gc_retention_ms;
    uint64_t gc_markers, gc_tombstones, gc_ghosts, gc_losers, gc_loser_bytes; /* atomic */
    struct engine__gc_log {
        uint64_t mark, ms;
    } gc_log[ENGINE_GC_LOG_MAX]; /* the stable log (sweeps only) */
    size_t gc_log_n;
    pthread_mutex_t gc_mu;       /* gc_stop and the sweep figures below */
    pthread_mutex_t gc_sweep_mu; /* one sweep at a time */
    pthread_cond_t gc_cv;
    pthread_t gc_thread;
    int gc_inited, gc_started, gc_stop;
    uint64_t gc_sweeps, gc_last_ms;
    int gc_last_rc;
    engine_gc_result gc_last;
};

/* Index meta key of the HLC floor: the highest stamp of any local record
 * committed to the index. At open the clock observes it (after replay), so
 * local stamps grow with LSN across restarts too (engine_apply.c). */
#define ENGINE_HLC_KEY "engine.hlc"

/* Reads a decimal u64 stored under key in the index's meta keyspace:
 * MRD_ENOTFOUND when absent, MRD_ECORRUPT when not a number. */
int engine__meta_u64(engine *e, const char *key, uint64_t *out);
/* engine_status.failure: what made the engine read-only, in one line. */
void engine__failure_text(const char *meta_dir, const wal_status *ws, int index_rc, char *out,
                          size_t n);

/* Index meta key of the GC's stable point, persisted before a purge relies
 * on it (engine_gc.c). */
#define ENGINE_GC_MARK_KEY "gc.stable_hlc"
/* The flags of a hidden null delete marker (a delete that lost a concurrent
 * write), which a sweep purges once stable (engine_gc.c). */
#define ENGINE_GC_HIDDEN_MARKER_MASK                                                               \
    (STORE_VF_DELETE_MARKER | ENGINE_VF_NULL_VERSION | STORE_VF_CONFLICT | STORE_VF_NONCURRENT |   \
     ENGINE_VF_TOMBSTONE)
#define ENGINE_GC_HIDDEN_MARKER                                                                    \
    (STORE_VF_DELETE_MARKER | ENGINE_VF_NULL_VERSION | STORE_VF_CONFLICT)
/* ... and of a hidden loser that holds data (the same mask). */
#define ENGINE_GC_HIDDEN_LOSER (ENGINE_VF_NULL_VERSION | STORE_VF_CONFLICT)
/* Index meta key of the GC's stable log: (point, local ms) pairs, native
 * byte order, at most ENGINE_GC_LOG_MAX. */
#define ENGINE_GC_LOG_KEY "gc.stable_log"
/* Versions one GcPurge record names, at most (the applier ignores more). */
#define ENGINE_GC_PURGE_MAX 16
/* engine_gc.c: at open (after the store, before replay) loads the stable
 * point; after the threads start, starts the gc thread; at close stops it
 * (before the pool drains), then frees what open made. */
int engine__gc_open(engine *e);
int engine__gc_start(engine *e);
void engine__gc_close(engine *e);
void engine__gc_destroy(engine *e);
/* The stable point now (atomic load). */
uint64_t engine__gc_mark(engine *e);
/* The last point offered: what the ghost test compares with (atomic). */
uint64_t engine__gc_live(engine *e);

/* Index meta key of the ids of the WAL's peers ("<id> <id> ...", decimal):
 * every site whose cursor holds segments, those added at run time too, so
 * the next open registers them all before retention can run. */
#define ENGINE_WAL_PEERS_KEY "wal.peers"
/* Saves the WAL's peer ids under ENGINE_WAL_PEERS_KEY when they differ from
 * what was saved last. Thread-safe. */
int engine__wal_peers_save(engine *e);

/* Index meta key of the applied origin LSN ("repl.applied.<site>"). */
#define ENGINE_RA_KEY_FMT "repl.applied.%u"

/* engine_repl.c: loads progress at open (before replay), raises applied
 * after an index commit. */
int engine__ra_load(engine *e);
void engine__ra_applied(engine *e, uint32_t origin, uint64_t lsn);
/* The applier committed origin's records up to lsn, with "repl.applied" =
 * lsn: engine__ra_applied, and if a resync marker above lsn was recorded
 * meanwhile (engine_repl_set_applied), writes the marker's LSN back, so the
 * stored applied LSN never falls below it. Applier thread. */
void engine__ra_committed(engine *e, uint32_t origin, uint64_t lsn);
/* store_list_cb: sets *(int *)user when a key has a live (non-marker)
 * current version, and stops. */
int engine__find_live(void *user, const char *key, const store_version *v);

/* Conflict log keys in the index's meta keyspace (engine_conflict.c). */
#define ENGINE_CONFLICT_SEQ_KEY "conflict.seq"
#define ENGINE_CONFLICT_KEY_FMT "conflict.%04u"
#define ENGINE_CONFLICT_KEY_MAX 24

/* One side of a conflict decision, for its log record. */
typedef struct engine__conflict_side {
    const conflict_version *v; /* id and etag NUL-terminated */
    const char *etag;
    uint64_t size;
    conflict_keep keep; /* what this site keeps of it */
    int incoming;       /* the version being delivered (else one held) */
    int winner;         /* the new current version */
} engine__conflict_side;

/* The conflict_version view of an index record (borrows its strings). */
int engine__version_from_store(const store_version *v, conflict_version *out);
/* Copies the site names (engine.names) at open. */
void engine__conflict_names(engine *e);
/* Loads the last conflict number at open, before replay. */
int engine__conflict_load(engine *e);
/* Encodes conflict record seq as JSON into out (reset first). delivery is
 * "local", "replication" or "anti-entropy"; from_site the delivering
 * site. Returns 0 or -ENOMEM. */
int engine__conflict_encode(const engine *e, uint64_t seq, const char *bucket, const char *key,
                            const char *delivery, uint32_t from_site,
                            const engine__conflict_side *winner, const engine__conflict_side *loser,
                            mrd_buf *out);

/* Packs rec (type = its oneof) and appends it to the WAL; the applier
 * applies it and cb runs once it is in the index. Call under mut_mu. */
int engine__append(engine *e, Meridian__WalRecord *rec, uint16_t type, engine_cb cb, void *ud);
/* As engine__append, and the applier applies dec (what decoding the packed
 * rec gives; for a ReplicatedApply its original_type and origin fields at
 * least) with inner (its decoded original, or NULL) instead of decoding the
 * payload again. Both are owned by the engine on success, by the caller on
 * error. */
int engine__append_decoded(engine *e, Meridian__WalRecord *rec, uint16_t type,
                           Meridian__WalRecord *dec, Meridian__WalRecord *inner, engine_cb cb,
                           void *ud);
/* The queue callbacks of calls made on this thread go to: the one the
 * thread is bound to (engine_cq_bind; a worker is bound to the submitter's
 * queue while it runs a job), else e's default queue. */
engine_cq *engine__cur_cq(engine *e);
/* Queues cb(ud, status) on q. */
void engine__complete_on(engine_cq *q, engine_cb cb, void *ud, int status);
/* Queues cb(ud, status) on the calling thread's queue (engine__cur_cq). */
void engine__complete(engine *e, engine_cb cb, void *ud, int status);

/* Batch of records applied in one index transaction (engine_apply.c). */
int engine__batch_new(engine__batch **out);
void engine__batch_free(engine__batch *b);
/* Plans one decoded record into b (flushing b first if the record touches
 * a key already in it). The record is owned by b from then on, even on
 * error. */
int engine__batch_add(engine *e, engine__batch *b, Meridian__WalRecord *rec, uint64_t lsn);
/* As engine__batch_add, with a ReplicatedApply's original already decoded
 * (inner, owned by b from then on; NULL: decoded here). */
int engine__batch_add_inner(engine *e, engine__batch *b, Meridian__WalRecord *rec,
                            Meridian__WalRecord *inner, uint64_t lsn);
/* Commits b's ops with its last LSN, then frees superseded data and
 * tells the WAL. Empties b. */
int engine__batch_flush(engine *e, engine__batch *b);
/* Replay callback for wal_open. */
int engine__replay(void *ud, const wal_entry *ent);
/* Applier thread body. */
void *engine__applier_main(void *arg);

/* Version-vector conversions between the conflict module's value type, the
 * record's protobuf message and the index's canonical bytes. */
int engine__vv_from_msg(const Meridian__VersionVector *m, vv *out);
/* Origin site encoded in a version id from engine_version_id_new (0 if the
 * id is not one of ours). */
uint32_t engine__vid_origin(const char *vid);
/* Encodes user metadata entries as the index blob. */
int engine__meta_encode(Meridian__KeyValue *const *kv, size_t n, mrd_buf *out);

/* engine_bucket.c: combines a bucket's stored blob (cur_blob, NULL when
 * none) with an incoming create (inc_is_create) or configuration carried in
 * a BucketCreate. *out (malloc'ed) is the new blob, or NULL when nothing
 * changes. Errors: MRD_ECORRUPT, -ENOMEM. */
int engine__bucket_merge(const void *cur_blob, size_t cur_len, const Meridian__BucketCreate *inc,
                         int inc_is_create, uint8_t **out, size_t *out_len);
/* The registers a BUCKET_CONFIG record sets, as engine__bucket_merge takes
 * them: each set register of cfg, stamped (cfg->hlc, cfg->site), into inc
 * (initialised by the caller; cfg's strings and tags are borrowed). */
void engine__bucket_config_as_create(const Meridian__BucketConfig *cfg,
                                     Meridian__BucketCreate *inc);
/* 1 if version (id, hlc) sorts above (than, than_hlc) in the conflict
 * module's total order (hlc, origin from the id, id bytes). */
int engine__order_above(const char *id, uint64_t hlc, const char *than, uint64_t than_hlc);
/* engine_mut.c: the bucket's versioning state (ENGINE_VERSIONING_*) from
 * its stored blob. Errors: MRD_ENOTFOUND (no such bucket), MRD_ECORRUPT. */
int engine__bucket_versioning(engine *e, const char *bucket, int *state);
/* engine_mut.c: *has = 1 when bucket holds object data that keeps it from
 * being deleted: a live current version, or, once versioning was set, any
 * version that is not a delete marker. */
int engine__bucket_has_data(engine *e, const char *bucket, int *has);

#endif
