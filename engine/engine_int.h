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

/* A unit of pool work. */
typedef struct engine__job {
    struct engine__job *next;
    void (*work)(void *);
    void (*done)(void *);
    void *arg;
} engine__job;

/* An appended record on its way to the index. */
typedef struct engine__pending {
    struct engine__pending *next;
    engine *e;
    uint64_t lsn;
    uint16_t type;
    uint8_t *payload; /* the packed WalRecord, as appended */
    size_t len;
    int status;
    engine_cb cb;
    void *ud;
} engine__pending;

typedef struct engine__batch engine__batch;

struct engine {
    const mrd_config *conf;
    uint32_t site;
    store *st;
    wal *w;
    wal_cq *cq;
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
    int failed;
};

/* Queues cb(ud, status) on the completion queue. */
void engine__complete(engine *e, engine_cb cb, void *ud, int status);

/* Batch of records applied in one index transaction (engine_apply.c). */
int engine__batch_new(engine__batch **out);
void engine__batch_free(engine__batch *b);
/* Plans one decoded record into b (flushing b first if the record touches
 * a key already in it). The record is owned by b from then on, even on
 * error. */
int engine__batch_add(engine *e, engine__batch *b, Meridian__WalRecord *rec, uint64_t lsn);
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

#endif
