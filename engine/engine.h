/*
 * engine.h - the public API of Meridian's engine (prefix engine_): the one
 * door for every mutation of a site, local or (later) replicated.
 *
 * A mutation goes through these steps, always in this order:
 *   1. checks against the index (bucket exists, bucket empty ...);
 *   2. conflict_stamp: the key's current version vector with this site's
 *      entry raised, and an HLC stamp;
 *   3. a WAL record, appended with group commit (one fdatasync for many);
 *   4. once the record is durable, the LMDB index is updated by the engine's
 *      single applier thread, in LSN order, with the LSN stored in the same
 *      transaction (store_index_apply); consecutive records share one
 *      transaction, so index commits are group-committed too;
 *   5. the caller's callback runs with status 0.
 * A callback with status 0 therefore means: durable in the WAL and visible
 * in the index. Object data is written to the store by the caller before the
 * mutation (store_writer_*), so a PUT's bytes are durable before its record.
 *
 * Threads and callbacks. engine_open starts a small worker pool (blocking
 * store I/O belongs there, never on an event loop) and the applier thread.
 * Every callback the engine makes - mutation results and engine_run's done
 * functions - is queued on a completion queue and runs on the thread that
 * polls it, which is meant to be an event loop watching its fd. There is a
 * default queue (engine_fd / engine_poll); a daemon with several event loops
 * gives each loop its own (engine_cq_new) and binds the loop's thread to it
 * (engine_cq_bind): the callbacks of every call that thread makes then come
 * back to that queue, hence to the loop that made the call. Unbound threads
 * use the default queue. No libevent type appears here.
 *
 * Conventions: 0 on success, a negative MRD_E* code or negated errno on
 * failure; output parameters last, written only on success; if a call that
 * takes a callback fails, the callback is never called.
 */
#ifndef MERIDIAN_ENGINE_H
#define MERIDIAN_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "store.h"

typedef struct engine engine;

typedef struct engine_opts {
    const mrd_config *conf; /* site id, drives, EC, meta_dir, WAL sizes; kept, not copied */
    int n_workers;          /* worker threads for engine_run; 0 = 4 */
    int wal_salvage;        /* cut the WAL at a corrupt record instead of failing */
    unsigned store_flags;   /* STORE_OPT_* (tests) */
    /* Tests only: the WAL's fault hook (wal_opts.fault; op is a wal_io_op,
     * a nonzero return fails that operation with it). */
    int (*wal_fault)(void *ud, int op, uint64_t nth);
    void *wal_fault_ud;
    /* Recovery report, filled by engine_open on success and on failure:
     * a one-line human message (the WAL's own report, or the store's
     * error), and the number of WAL records replayed into the index. */
    char *report;
    size_t report_size;
    uint64_t *replayed;
} engine_opts;

/*
 * Opens the store (data dirs and meta_dir from the config), then the WAL in
 * <meta_dir>/wal, replaying every record after the index's last applied LSN
 * into the index before returning, and starts the threads. Per-peer WAL
 * cursors are persisted in the index through store_meta_put/get.
 * Errors: the store's (MRD_EDEGRADED when fewer than k drives are online)
 * and the WAL's (MRD_ECORRUPT, MRD_ENOTFOUND, MRD_ECONFIG), -errno. On
 * success *out is owned by the caller (engine_close).
 */
int engine_open(const engine_opts *o, engine **out);

/*
 * Drains: waits for queued and running work and for every appended record
 * to be applied, runs the callbacks still queued (on the calling thread;
 * engine_run fails with MRD_ESHUTDOWN from inside them), then closes the
 * WAL and the store. Accepts NULL. Call from the loop thread.
 */
void engine_close(engine *e);

/* The store, for reads (index lookups, listings, object readers). Valid
 * until engine_close. Remember: blocking, so call it from engine_run work. */
store *engine_store(engine *e);

/* A file descriptor that becomes readable when callbacks are queued on the
 * default queue. */
int engine_fd(const engine *e);
/* Runs every callback queued on the default queue on the calling thread;
 * returns how many. */
int engine_poll(engine *e);

/*
 * More completion queues, one per event loop thread. A queue belongs to e
 * and lives until engine_close (which runs whatever is still queued on it,
 * on the closing thread), so there is no free function: make one per loop
 * at start-up. engine_cq_bind(q) binds the calling thread to q (NULL:
 * unbind): from then on, the callbacks of engine_run and of every mutation
 * called on this thread are queued on q instead of the default queue, and
 * run where engine_cq_poll(q) is called. A thread is bound to one queue at
 * a time. engine_cq_new is thread-safe; errors: MRD_EINVAL, -ENOMEM, -errno.
 */
typedef struct engine_cq engine_cq;
int engine_cq_new(engine *e, engine_cq **out);
int engine_cq_fd(const engine_cq *q);
int engine_cq_poll(engine_cq *q);
void engine_cq_bind(engine_cq *q);

/*
 * Runs work(arg) on a worker thread, then done(arg) through the calling
 * thread's completion queue (engine_poll, or engine_cq_poll of the queue
 * the thread is bound to). done may be NULL. Errors: MRD_ESHUTDOWN, -ENOMEM;
 * then neither function runs. Thread-safe.
 */
int engine_run(engine *e, void (*work)(void *arg), void (*done)(void *arg), void *arg);

/* ------------------------------------------------------------------------ */
/* Mutations                                                                */
/* ------------------------------------------------------------------------ */

/* Result of a mutation, delivered through engine_poll. status is 0 or the
 * error code named by the function. */
typedef void (*engine_cb)(void *ud, int status);

/* One user metadata entry: x-amz-meta-* and the kept standard headers
 * (content-encoding, content-disposition, cache-control ...), lower-case
 * names. */
typedef struct engine_kv {
    const char *key;
    const char *value;
} engine_kv;

/* A new object version whose data is already in the store. Everything is
 * copied by engine_object_put before it returns. */
typedef struct engine_put {
    const char *bucket;
    const char *key;
    const char *version_id; /* from engine_version_id_new; the data was written under it */
    uint64_t size;
    const char *etag; /* hex MD5 (or multipart etag), without quotes */
    const char *content_type;
    const engine_kv *meta;
    size_t n_meta;
    const void *layout; /* store_put_result.layout */
    size_t layout_len;
} engine_put;

/*
 * A fresh version id for a write at this site: 24 hex characters (HLC stamp
 * then site id), unique, and sorting in time order. out must hold 25 bytes.
 * Thread-safe.
 */
void engine_version_id_new(engine *e, char out[25]);

/* Creates a bucket. Errors (to cb): MRD_EEXIST if it exists. Thread-safe. */
int engine_bucket_create(engine *e, const char *bucket, engine_cb cb, void *ud);

/* Deletes an empty bucket. Errors (to cb): MRD_ENOTFOUND, MRD_EBUSY when the
 * bucket still holds objects. Thread-safe. */
int engine_bucket_delete(engine *e, const char *bucket, engine_cb cb, void *ud);

/*
 * Makes p the current version of its key. In an unversioned bucket (the only
 * kind today) the previous version is dropped from the index and its data
 * freed once the index no longer references it.
 * Errors (to cb): MRD_ENOTFOUND (no such bucket), MRD_EDURABLE (the WAL or
 * the index commit failed: the write is not acknowledged), MRD_EBUSY (the
 * WAL's queue is full). Returned at once, before anything is logged:
 * MRD_ETOOBIG when the key does not fit the index (store_key_check; every
 * object mutation checks it). On any error the caller still owns the data
 * and should free it (store_object_delete_data). Thread-safe.
 */
int engine_object_put(engine *e, const engine_put *p, engine_cb cb, void *ud);

/*
 * Completes multipart upload upload_id of p->bucket/p->key: p describes the
 * object (p->layout is the PARTS layout from store_layout_compose over the
 * parts, p->etag the "<md5 of md5s>-<n>" etag) and becomes the key's current
 * version exactly as engine_object_put would make it (stamp, WAL record of
 * type MULTIPART_COMPLETE, index apply). The same index transaction drops
 * the upload's records and, after it commits, frees the data of the
 * upload's parts that p->layout does not use. The caller has marked the
 * upload (store_mpu_complete_begin). Errors (to cb): as engine_object_put;
 * on an error the upload and its parts are left as they were.
 */
int engine_multipart_complete(engine *e, const engine_put *p, const char *upload_id,
                              uint32_t part_count, engine_cb cb, void *ud);

/*
 * For replication: the packed ObjectPut WalRecord a peer should apply for a
 * local MULTIPART_COMPLETE record (payload, len): a completed upload travels
 * as one object, never as parts. The layout is carried over unchanged (the
 * sender replaces it with the data). *out is malloc'ed, owned by the caller.
 * Errors: MRD_ECORRUPT (not a multipart complete record), -ENOMEM.
 */
int engine_record_mpu_as_put(const void *payload, size_t len, void **out, size_t *out_len);

/*
 * Deletes a key: a delete marker becomes its current version (hidden from
 * reads and listings). In an unversioned bucket the previous version's data
 * is freed, and deleting a missing key succeeds without writing anything
 * (S3 semantics). In a versioned bucket the marker is a real version and
 * every older version is kept; in a suspended one it is a null marker that
 * replaces the null version (docs/conflicts.md). In both a marker is
 * written even when the key is absent or already deleted, as S3 does.
 * Errors (to cb): MRD_ENOTFOUND (no such bucket), MRD_EDURABLE. Thread-safe.
 */
int engine_object_delete(engine *e, const char *bucket, const char *key, engine_cb cb, void *ud);

/*
 * engine_object_delete that also tells the marker's version id: marker_vid
 * (25 bytes, caller-owned, alive until cb runs) gets the id of the marker
 * written, or "" when none was, before cb runs.
 */
int engine_object_delete_marker(engine *e, const char *bucket, const char *key, char *marker_vid,
                                engine_cb cb, void *ud);

/*
 * Removes one version for good (DELETE ?versionId=): an OBJECT_DELETE
 * record, replicated. The version (a delete marker too) leaves the index,
 * its data is freed after the commit, and the newest remaining version by
 * the conflict order becomes current. Every site keeps a tombstone for the
 * id, so a late copy of the version never comes back. version_id is an id
 * from engine_version_id_new (not "null": resolve it with
 * engine_version_lookup first).
 * Errors (to cb): MRD_ENOTFOUND (no such bucket), MRD_EINVAL (not one of
 * our ids), MRD_EDURABLE. Thread-safe.
 */
int engine_object_delete_version(engine *e, const char *bucket, const char *key,
                                 const char *version_id, engine_cb cb, void *ud);

/*
 * Looks one version up the way S3 names it: version_id NULL is the current
 * version, "null" the key's null version (the newest one, by the conflict
 * order, of those written while the bucket was unversioned or suspended and
 * still listed), anything else that id. Tombstones of removed versions are
 * not found. Blocking (index reads): call from engine_run work.
 * Errors: MRD_ENOTFOUND, the store's. *out owned by the caller.
 */
int engine_version_lookup(engine *e, const char *bucket, const char *key, const char *version_id,
                          store_version_rec **out);

/* Bucket versioning states (proto enum Versioning). */
enum {
    ENGINE_VERSIONING_UNSET = 0,
    ENGINE_VERSIONING_ENABLED = 1,
    ENGINE_VERSIONING_SUSPENDED = 2,
};

/* Canned bucket ACLs (proto enum Acl). */
enum {
    ENGINE_ACL_PRIVATE = 0,
    ENGINE_ACL_PUBLIC_READ = 1,
};

/* A bucket configuration change: the registers whose has_ flag is set are
 * replaced (has_tags with n_tags 0 deletes the tag set). */
typedef struct engine_bucket_conf {
    int has_versioning;
    int versioning; /* ENGINE_VERSIONING_ENABLED or _SUSPENDED */
    int has_tags;
    const engine_kv *tags;
    size_t n_tags;
    int has_acl;
    int acl; /* ENGINE_ACL_PRIVATE or _PUBLIC_READ */
} engine_bucket_conf;

/*
 * Changes a bucket's configuration (PutBucketVersioning, Put/DeleteBucket-
 * Tagging, PutBucketAcl): a BUCKET_CONFIG record, replicated. Each register settles
 * last-writer-wins on (hlc, site) at every site, whatever the order the
 * records arrive in. Everything is copied. Errors (to cb): MRD_ENOTFOUND
 * (no such bucket), MRD_EDURABLE; MRD_EINVAL at once for a bad conf.
 */
int engine_bucket_config(engine *e, const char *bucket, const engine_bucket_conf *c, engine_cb cb,
                         void *ud);

/* The versioning state (ENGINE_VERSIONING_*) recorded in a bucket's index
 * blob. MRD_ECORRUPT if malformed. */
int engine_bucket_versioning(const void *blob, size_t len, int *out);

/* The canned ACL (ENGINE_ACL_*) recorded in a bucket's index blob: private
 * when never set. MRD_ECORRUPT if malformed. */
int engine_bucket_acl(const void *blob, size_t len, int *out);

/* The configuration registers of a bucket's index blob as canonical bytes
 * (for anti-entropy digests): out is left empty when the bucket was never
 * configured. MRD_ECORRUPT, -ENOMEM. */
int engine_bucket_config_bytes(const void *blob, size_t len, mrd_buf *out);

/* Calls fn(key, value) for each tag of a bucket's index blob, in order;
 * stops at and returns fn's nonzero result. MRD_ENOTFOUND when the bucket
 * has no tag set, MRD_ECORRUPT if malformed. */
int engine_bucket_tags_each(const void *blob, size_t len,
                            int (*fn)(void *ud, const char *key, const char *value), void *ud);

/* Reserved user-metadata names: an object version's tag set ("k=v&k2=v2",
 * URL-encoded) and the (hlc.site) of the tagging that set it. Never sent as
 * response headers. */
#define ENGINE_META_TAGGING  "x-amz-tagging"
#define ENGINE_META_TAGS_HLC "x-meridian-tags-hlc"

/*
 * Replaces the tag set of the current version of a key (tagging "" removes
 * it): an OBJECT_TAGS WAL record, applied to that version in place (same
 * data, same version id) and replicated; concurrent replacements settle on
 * the latest (hlc, site). The caller validates tagging.
 * Errors (to cb): MRD_ENOTFOUND (no such bucket), -ENOENT (no such key, or a
 * delete marker), MRD_EDURABLE. Thread-safe.
 */
int engine_object_tags(engine *e, const char *bucket, const char *key, const char *tagging,
                       engine_cb cb, void *ud);

/* engine_object_tags on one version by id (engine_version_lookup's names:
 * an id or "null"; NULL: the current version). -ENOENT when that version
 * is not held here or is a delete marker. */
int engine_object_tags_version(engine *e, const char *bucket, const char *key,
                               const char *version_id, const char *tagging, engine_cb cb, void *ud);

/* ------------------------------------------------------------------------ */
/* Replication: records that originated at another site                    */
/* ------------------------------------------------------------------------ */

/* One record of a peer's WAL. payload is the packed WalRecord to apply here
 * (for an object put: with the layout of the data this site wrote for it). */
typedef struct engine_repl_rec {
    uint64_t lsn;  /* the origin's LSN */
    uint16_t type; /* WAL_REC_* of the record; never WAL_REC_REPLICATED_APPLY */
    const void *payload;
    size_t len;
} engine_repl_rec;

/*
 * Applies the records of origin's WAL range [from_lsn, through_lsn]: recs
 * (in LSN order, inside the range) are the ones the origin sends; the LSNs
 * between them need nothing here. Records at or below what was already
 * appended from origin are skipped (exactly once). Each record is appended
 * as a ReplicatedApply and applied with the conflict decision against every
 * stored version of its key; an object put's data that loses (or is a
 * duplicate) is freed. cb gets 0 once all of it is durable and in the index,
 * and the origin's applied LSN is then through_lsn.
 * Ranges must come in order and may overlap what was applied, but not leave
 * a gap: a range starting past appended + 1 (because an earlier one failed)
 * is refused with MRD_EBUSY, so nothing after a failure is applied until the
 * origin resends from the gap. The call does its appends on the caller's
 * thread (decoding and wal_append do not block), which is what keeps calls
 * in order; several may be in flight. Everything is copied.
 * Errors: MRD_EINVAL (origin not a configured peer, bad range, records out
 * of order or outside it), -ENOMEM; to cb: MRD_EBUSY (a gap, or the WAL's
 * queue is full), MRD_ECORRUPT (a record that does not decode),
 * MRD_EDURABLE. Thread-safe.
 */
int engine_repl_apply(engine *e, uint32_t origin, uint64_t from_lsn, const engine_repl_rec *recs,
                      size_t n, uint64_t through_lsn, engine_cb cb, void *ud);

/*
 * Anti-entropy: applies versions a peer holds (records rebuilt from its
 * index, not its WAL; lsn ignored) with the conflict decision, like
 * engine_repl_apply but without the duplicate filter and without touching
 * the origin's applied LSN. A version already held is a no-op (DUPLICATE).
 * Errors as engine_repl_apply.
 */
int engine_resync_apply(engine *e, uint32_t origin, const engine_repl_rec *recs, size_t n,
                        engine_cb cb, void *ud);

/* After anti-entropy brought this site level with origin's index as of
 * origin's LSN lsn: records up to lsn need not be sent any more. Persists
 * and raises the applied LSN (never lowers it). Blocking (an index commit):
 * call from engine_run work. Errors: MRD_EINVAL, the store's. */
int engine_repl_set_applied(engine *e, uint32_t origin, uint64_t lsn);

/* Replication progress from one origin site. */
typedef struct engine_repl_state {
    uint32_t origin;
    uint64_t applied;    /* every record of origin's WAL up to here is applied */
    uint64_t records;    /* records applied since open */
    uint64_t duplicates; /* records skipped as already applied since open */
} engine_repl_state;

/* Fills out[0..max) with one entry per configured peer; returns the count.
 * Thread-safe. */
int engine_repl_progress(engine *e, engine_repl_state *out, int max);

/* A site joined the topology at run time: its records can be applied from
 * now on (its applied LSN is read from the index, so a site that left and
 * came back resumes), and the WAL holds our records for it from its cursor
 * (saved, or 0: everything retained). The WAL's peer list is saved in the
 * index, so the next open holds segments for it from the start. Idempotent.
 * Blocking (index reads and writes): call on the loop only for rare events
 * such as this. Errors: MRD_ETOOBIG (MRD_MAX_PEERS origins), the store's
 * and WAL's. */
int engine_repl_origin_add(engine *e, uint32_t origin);
/* A site left the topology: the WAL stops holding segments for it (now and
 * after a restart). Its applied LSN stays (records already applied stay
 * applied). Idempotent. */
int engine_repl_origin_remove(engine *e, uint32_t origin);

/* A watermark of local writes: every write stamped before *hlc has an LSN
 * <= *lsn. Replication uses it to tell which versions a peer has. */
int engine_local_watermark(engine *e, uint64_t *lsn, uint64_t *hlc);

/* The engine's WAL, for tailing readers (wal_reader_open) and per-peer
 * cursors (wal_cursor_set). Valid until engine_close; close readers first. */
struct wal;
struct wal *engine_wal(engine *e);

/* ------------------------------------------------------------------------ */
/* GC of delete markers and tombstones (engine_gc.c)                        */
/* ------------------------------------------------------------------------ */

/*
 * The replicator's stable point: every site has durably applied every
 * record, from every origin, stamped below stable_hlc. The engine keeps the
 * highest offered (a lower one is ignored) and persists it before a purge
 * relies on it. Thread-safe, non-blocking.
 */
void engine_gc_offer(engine *e, uint64_t stable_hlc);

/* What one sweep saw and proposed. */
typedef struct engine_gc_result {
    uint64_t stable_hlc; /* the point it purged under; 0: none known, nothing done */
    uint64_t keys, versions;
    uint64_t proposed; /* versions named in GcPurge records (the applier checks each again) */
    uint64_t duration_ms;
} engine_gc_result;

/*
 * One sweep now (the gc thread runs one every [replication] gc_interval):
 * walks every bucket and appends a GcPurge record for each key holding a
 * null delete marker left alone or tombstones, once stable and past
 * gc_grace at now_ms (wall clock, ms). Returns before the records are
 * applied. Blocking (index reads, a WAL append per key); sweeps never
 * overlap. Errors: the store's, MRD_EDURABLE, -ENOMEM.
 */
int engine_gc_sweep(engine *e, uint64_t now_ms, engine_gc_result *out);

typedef struct engine_gc_status {
    uint64_t stable_hlc;
    uint64_t grace_ms, interval_ms; /* interval 0: no gc thread */
    uint64_t sweeps, last_sweep_ms;
    int last_error; /* the last sweep's, 0 if it succeeded */
    engine_gc_result last;
    /* removed by applied GcPurge records, since start (replay included) */
    uint64_t markers_purged, tombstones_purged;
    uint64_t losers_purged, loser_bytes_purged; /* hidden conflict losers holding data */
    uint64_t retention_ms;                      /* [replication] conflict_retention */
    /* anti-entropy records dropped as copies of what was removed here */
    uint64_t ghosts_dropped;
} engine_gc_status;

int engine_gc_status_get(engine *e, engine_gc_status *out);

/* ------------------------------------------------------------------------ */
/* Status                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct engine_status {
    uint64_t wal_next_lsn, wal_durable_lsn, applied_lsn;
    uint64_t mutations, apply_batches, apply_errors;
    uint64_t buckets_revived; /* buckets kept or brought back for a peer's write */
    int failed;               /* 1 once a WAL or index failure made the engine read-only */
    char failure[96];         /* then what failed: "meta_dir full", "WAL fdatasync failed:
                                 Input/output error", ...; "" otherwise */
    /* the WAL (wal_status): what it holds against its cap, group commit,
     * and what its size cap did to lagging peers */
    uint64_t wal_first_lsn, wal_segments, wal_bytes, wal_retention_bytes;
    int wal_over_cap; /* over the cap even after dropping what it could */
    uint64_t wal_appends, wal_syncs, wal_max_batch, wal_segments_deleted;
    uint64_t wal_cap_resyncs;      /* peers the cap marked for a resync */
    uint64_t wal_cap_cursor_skips; /* peers it moved over replicated applies instead */
} engine_status;

/* A snapshot. Thread-safe. */
int engine_get_status(engine *e, engine_status *out);

/* ------------------------------------------------------------------------ */
/* Conflict log (engine_conflict.c)                                         */
/* ------------------------------------------------------------------------ */

/* How many of the most recent conflict decisions the log keeps. */
#define ENGINE_CONFLICT_LOG_MAX 1000u

/* The number of the last conflict decision recorded at this site (0: none
 * ever). Numbers start at 1 and never repeat; it is also the total count.
 * Thread-safe, non-blocking. */
uint64_t engine_conflict_last(engine *e);

/*
 * Appends conflict record seq (a JSON object: id, site, detected_ms,
 * bucket, key, delivery, from_site, winner and loser, each with
 * version_id, origin, origin_name, hlc, hlc_text, hlc_ms, vv, vv_text,
 * etag, size, delete_marker, incoming, kept; see docs/admin-api.md) to out.
 * Errors: MRD_EINVAL (seq 0), MRD_ENOTFOUND (not recorded yet, or pushed
 * out of the last ENGINE_CONFLICT_LOG_MAX), MRD_ECORRUPT, the store's.
 * Blocking (an index read): call from engine_run work. Thread-safe.
 */
int engine_conflict_get(engine *e, uint64_t seq, mrd_buf *out);

/*
 * Writes one stored version (store_index_get, store_index_list) as a JSON
 * object: version_id, origin, origin_name, hlc, hlc_text, hlc_ms, vv,
 * vv_text, etag, size, delete_marker (as in conflict records), role
 * ("current", "conflict" or "noncurrent", from its index flags) and
 * content_type. Errors: MRD_ECORRUPT (an undecodable vector), -ENOMEM.
 * Non-blocking; thread-safe.
 */
int engine_version_json(const engine *e, const store_version *v, mrd_json_w *w);

/* ------------------------------------------------------------------------ */
/* Encoded user metadata in the index (store_version.user_meta)             */
/* ------------------------------------------------------------------------ */

/* Calls fn(key, value) for each entry of an encoded metadata blob, in the
 * order written. Stops and returns fn's nonzero result. MRD_ECORRUPT for a
 * malformed blob. */
int engine_meta_each(const void *blob, size_t len,
                     int (*fn)(void *ud, const char *key, const char *value), void *ud);

/* Creation time (ms since the epoch) recorded in a bucket's index blob
 * (store_bucket_get / store_bucket_list). MRD_ECORRUPT if malformed. */
int engine_bucket_created_ms(const void *blob, size_t len, uint64_t *out);

/* store_version.flags bit the engine sets on every version written while the bucket was unversioned
 * or suspended (S3's null version). */
#define ENGINE_VF_NULL_VERSION 0x10000u
/* store_version.flags bit of a tombstone: the version with this id was removed by a DELETE
 * ?versionId= and must never come back. Always with STORE_VF_DELETE_MARKER, never current, never
 * listed; its vv and hlc are those of the OBJECT_DELETE record. */
#define ENGINE_VF_TOMBSTONE 0x20000u

#endif /* MERIDIAN_ENGINE_H */
