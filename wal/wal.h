/*
 * wal.h - the public API of Meridian's write-ahead log (prefix wal_).
 *
 * The WAL is a directory of segment files holding numbered records (LSN 1,
 * 2, 3 ...). Every mutation at a site is appended here before the client is
 * answered, and the same log is the replication stream peers tail. The byte
 * format is wal/FORMAT.md; the record payloads are proto/wal.proto.
 *
 * Pieces:
 *   - wal_open / wal_close: open (creating if needed), recover, replay;
 *   - wal_append: asynchronous, group-committed append; the callback fires
 *     once the record is durable (or never was) on the caller's event loop,
 *     through an injected post function (wal_cq is a ready-made one);
 *   - wal_reader_*: tail the log from any retained LSN, with a "wake me when
 *     more arrives" notification;
 *   - wal_peer_* / wal_cursor_*: per-peer acknowledged LSNs kept in memory
 *     and persisted through an injected store (the engine wires it to the
 *     LMDB index; wal_cursor_file is a file-backed one for tests and tools);
 *   - wal_set_applied + retention: segments are deleted once every peer and
 *     the index are past them; a size cap marks the most lagging peer as
 *     needing resync (or, when what it would lose is only replicated
 *     applies, which no peer is sent, moves its cursor over them instead).
 *
 * The WAL does not log (house rule for wal/ and conflict/): everything worth
 * telling is returned as codes, a wal_recovery report and wal_status.
 *
 * Conventions: 0 on success, a negative MRD_E* code or negated errno on
 * failure; output parameters come last and are written only on success; if a
 * call that takes a callback fails, the callback is never called.
 * Thread-safety is stated per function; a wal handle may be shared by threads
 * unless a function says otherwise.
 */
#ifndef MERIDIAN_WAL_H
#define MERIDIAN_WAL_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

/* The generated protobuf-c type (proto/wal.proto); include "wal.pb-c.h" to
 * see its fields. */
struct Meridian__WalRecord;

typedef struct wal wal;
typedef struct wal_reader wal_reader;

/* Record types: the frame header's type field, equal to the WalRecord oneof
 * field number. 0 is never a valid type (zeroed disk reads as invalid). */
enum {
    WAL_REC_OBJECT_PUT = 1,
    WAL_REC_OBJECT_DELETE = 2,
    WAL_REC_DELETE_MARKER = 3,
    WAL_REC_BUCKET_CREATE = 4,
    WAL_REC_BUCKET_DELETE = 5,
    WAL_REC_BUCKET_CONFIG = 6,
    WAL_REC_MULTIPART_COMPLETE = 7,
    WAL_REC_REPLICATED_APPLY = 8,
    WAL_REC_OBJECT_TAGS = 9,
    WAL_REC_GC_PURGE = 10, /* local maintenance: never sent to a peer */
};

/* 1 for the types a site sends its peers: what it originated, which is
 * neither a replicated apply (never forwarded) nor a local GC purge. */
static inline int
wal_rec_forwarded(uint16_t type)
{
    return type != WAL_REC_REPLICATED_APPLY && type != WAL_REC_GC_PURGE;
}

#define WAL_RECORD_FORMAT     1           /* WalRecord.format written today */
#define WAL_MAX_RECORD        (16u << 20) /* largest payload accepted */
#define WAL_MAX_PEERS         MRD_MAX_PEERS
#define WAL_DEFAULT_SEGMENT   (64ull << 20) /* segment size before a roll */
#define WAL_DEFAULT_RETENTION (4ull << 30)  /* size cap of the whole log */
#define WAL_DEFAULT_PENDING   (64ull << 20) /* appended but not yet written */
#define WAL_DEFAULT_WINDOW_US 100           /* group commit window, microseconds */

/* ------------------------------------------------------------------------ */
/* Injected dependencies                                                    */
/* ------------------------------------------------------------------------ */

/*
 * Runs fn(arg) on the caller's event loop. The WAL calls it from its own
 * writer thread for every append completion and reader notification; the
 * implementation must be thread-safe and must eventually call fn(arg)
 * exactly once (fn frees arg). With libevent, queue (fn, arg) and
 * event_active() a watcher; or use wal_cq below, which does this with an
 * eventfd. If wal_opts.post is NULL, callbacks run directly on the WAL's
 * writer thread (fine for tools, tests and benchmarks; they must not block).
 */
typedef void (*wal_post_fn)(void *post_ud, void (*fn)(void *arg), void *arg);

/*
 * Fault injection, SQLite FaultSim style. Called before each I/O the WAL
 * makes; returning 0 lets the I/O proceed, returning a negated errno makes
 * it fail with that error without being attempted. nth counts calls of that
 * op since wal_open, from 1. Called from the writer thread (WRITE, SYNC,
 * ROLL) or the wal_open caller (TRUNCATE). For tests only.
 */
typedef enum {
    WAL_IO_WRITE = 0,    /* pwrite of a batch run into a segment */
    WAL_IO_SYNC = 1,     /* fdatasync of a segment */
    WAL_IO_ROLL = 2,     /* creating the next segment file */
    WAL_IO_TRUNCATE = 3, /* cutting a torn tail at open */
    WAL_IO__COUNT = 4,
} wal_io_op;
typedef int (*wal_fault_fn)(void *fault_ud, wal_io_op op, uint64_t nth);

/*
 * Where per-peer cursors live durably. The WAL calls save() before it trusts
 * a new cursor value for retention, so a segment is never deleted on the
 * strength of a cursor that a crash could roll back. The engine wires these
 * to store_meta_put/get (the LMDB index), keeping LMDB out of wal/.
 * Both may be called from any thread that calls into the WAL and from the
 * writer thread (size-cap resync marks), so they must be thread-safe. The
 * WAL never runs two saves at once, and makes them in the order their
 * values were decided, so the last save is the state it runs with.
 *
 * A cursor is three values, saved together (one save must be atomic: after
 * a crash load returns all three as one save wrote them, or the previous
 * save's):
 *   acked_lsn, needs_resync: see wal_peer_status;
 *   skip_lo: 0, or the low end of the range skip_lo..acked_lsn the size cap
 *     moved the cursor over (wal_peer_status.skip_lo). A store that cannot
 *     keep it may drop it (load 0): the peer is then resynced when it asks
 *     for that range, as it would have been without the move.
 *   load: MRD_ENOTFOUND when the peer has no saved cursor; a cursor saved
 *     without skip_lo (older builds) loads with *skip_lo = 0.
 *   save: 0 once durable; a failure is returned to the wal_* caller.
 */
typedef struct wal_cursor_store {
    int (*load)(void *ud, uint32_t peer, uint64_t *acked_lsn, int *needs_resync, uint64_t *skip_lo);
    int (*save)(void *ud, uint32_t peer, uint64_t acked_lsn, int needs_resync, uint64_t skip_lo);
    void *ud;
} wal_cursor_store;

/* ------------------------------------------------------------------------ */
/* Open, recover, replay, close                                             */
/* ------------------------------------------------------------------------ */

/* One record as the WAL hands it out. payload is owned by the WAL (or the
 * reader) and valid only until the callback returns / the next
 * wal_reader_next or wal_reader_close on that reader. */
typedef struct wal_entry {
    uint64_t lsn;
    uint16_t type; /* WAL_REC_* */
    const uint8_t *payload;
    size_t len;
} wal_entry;

/* Replay callback: return 0 to continue, a negative code to stop wal_open,
 * which then fails with that code. */
typedef int (*wal_replay_fn)(void *ud, const wal_entry *e);

/*
 * What wal_open found. Filled on success and on failure (it is a report, not
 * an output parameter): on failure, error names what stopped open, e.g.
 *   "corrupt record in segment 0000000000000001.wal at offset 4120: checksum
 *    mismatch; start with --wal-salvage to truncate there (drops 3 later
 *    records, 811 bytes)".
 * The engine logs it (the WAL does not log).
 */
typedef struct wal_recovery {
    uint32_t segments;  /* segment files scanned */
    uint64_t records;   /* valid records found */
    uint64_t replayed;  /* records passed to the replay callback */
    uint64_t first_lsn; /* oldest retained LSN (0 when empty) */
    uint64_t last_lsn;  /* newest valid LSN (0 when empty) */
    /* torn tail (normal after a crash): cut off, never acknowledged */
    int torn;                 /* 1 when a torn tail was truncated */
    char torn_segment[32];    /* file name of the segment that was cut */
    uint64_t torn_offset;     /* where it was cut */
    uint64_t torn_bytes;      /* bytes removed */
    int torn_segment_removed; /* 1 when a half-created last segment was removed */
    /* salvage (only with wal_opts.salvage) */
    int salvaged; /* 1 when corruption was cut out */
    char salvage_segment[32];
    uint64_t salvage_offset;
    uint64_t salvage_bytes;   /* bytes dropped, including later segments */
    uint64_t salvage_records; /* records with a valid checksum that were dropped */
    uint32_t salvage_segments_removed;
    char error[320]; /* set when wal_open fails; "" otherwise */
} wal_recovery;

typedef struct wal_opts {
    const char *dir;          /* directory of the segments; created if missing */
    uint32_t site_id;         /* written in segment headers; must match on reopen */
    uint64_t segment_bytes;   /* roll size; 0 = WAL_DEFAULT_SEGMENT; >= 4096 */
    uint64_t retention_bytes; /* size cap; 0 = WAL_DEFAULT_RETENTION */
    uint64_t max_pending;     /* appended-not-written bytes before MRD_EBUSY;
                                 0 = WAL_DEFAULT_PENDING */
    /* Group commit window: before writing a batch, the writer thread waits
     * up to this long for the batch to reach the size of the previous one
     * (so a lone writer never waits, and N writers released by one sync
     * are written together). 0 = WAL_DEFAULT_WINDOW_US, < 0 = no window.
     * Measured in docs/benchmarks.md. */
    int32_t batch_window_us;

    /* Recovery: records with lsn > replay_from are passed to replay (may be
     * NULL) in LSN order, on the wal_open caller's thread, before wal_open
     * returns. replay_from is the index's last applied LSN. */
    uint64_t replay_from;
    wal_replay_fn replay;
    void *replay_ud;
    /* Cut the log at a corrupt record in the middle of a segment instead of
     * failing (--wal-salvage). Everything after it is dropped and reported. */
    int salvage;
    wal_recovery *report; /* optional; see wal_recovery */

    wal_post_fn post; /* NULL: callbacks run on the writer thread */
    void *post_ud;
    wal_cursor_store cursors; /* load/save NULL: cursors live in memory only */
    wal_fault_fn fault;       /* tests only */
    void *fault_ud;
} wal_opts;

/*
 * Opens the WAL in o->dir, creating the first segment if there is none.
 * Scans every segment, verifying every checksum:
 *   - a torn tail (the last, unsynced batch of the last segment) is
 *     truncated and reported in o->report;
 *   - a corrupt record anywhere else fails with MRD_ECORRUPT and a report
 *     naming the segment file and offset, unless o->salvage;
 *   - replay_from beyond the last LSN fails with MRD_ECORRUPT (the index
 *     holds records the log lost); replay_from + 1 below the first retained
 *     LSN fails with MRD_ENOTFOUND (the index needs a resync from peers).
 * Starts the writer thread. Errors: MRD_EINVAL (bad options), MRD_ECONFIG
 * (site id mismatch), MRD_ECORRUPT, MRD_ENOTFOUND, the replay callback's
 * code, -errno from the file system. On success *out is owned by the caller
 * (wal_close). Not thread-safe with respect to the same directory: one
 * process, one wal per directory.
 */
int wal_open(const wal_opts *o, wal **out);

/*
 * Stops accepting appends, writes and syncs everything already appended,
 * fires every outstanding callback (through post), joins the writer thread
 * and frees w. Readers must be closed first. Accepts NULL. The post function
 * must keep working until wal_close returns; callbacks it queued may run
 * after that (they do not touch w).
 */
void wal_close(wal *w);

/* ------------------------------------------------------------------------ */
/* Append                                                                   */
/* ------------------------------------------------------------------------ */

/*
 * Called once per successful wal_append, through post.
 *   status 0: the record is durable at lsn (fdatasync returned).
 *   status MRD_EDURABLE: writing or syncing failed; the record may or may
 *     not survive a restart, but it was never acknowledged as durable.
 *     The WAL is read-only from then on.
 *   status MRD_ESHUTDOWN: cannot happen today (close flushes); reserved.
 */
typedef void (*wal_append_cb)(void *ud, int status, uint64_t lsn);

/*
 * Appends one record of the given type (WAL_REC_*, nonzero). payload is
 * copied before the call returns. The LSN is assigned now, in call order;
 * cb (not NULL) fires once the record is durable, with the batch it was
 * group-committed in. Errors, returned immediately and with cb never called:
 * MRD_EINVAL (type 0, len > WAL_MAX_RECORD), MRD_EDURABLE (the WAL failed
 * earlier and is read-only), MRD_EBUSY (more than max_pending bytes wait for
 * the disk: back off and retry), MRD_ESHUTDOWN (closing), -ENOMEM.
 * Thread-safe. If lsn_out is not NULL it receives the assigned LSN.
 */
int wal_append(wal *w, uint16_t type, const void *payload, size_t len, wal_append_cb cb, void *ud,
               uint64_t *lsn_out);

/* Packs rec (setting rec->format if 0) and appends it with the type of its
 * oneof; as wal_append. MRD_EINVAL when no body is set. */
int wal_append_record(wal *w, struct Meridian__WalRecord *rec, wal_append_cb cb, void *ud,
                      uint64_t *lsn_out);

/* ------------------------------------------------------------------------ */
/* Record payloads                                                          */
/* ------------------------------------------------------------------------ */

/*
 * Decodes a payload as a WalRecord and checks it: the oneof must match type
 * (pass 0 to skip that check), format must be <= WAL_RECORD_FORMAT, a
 * replicated_apply must not wrap another replicated_apply. On success *out
 * is owned by the caller (wal_record_free). Errors: MRD_ECORRUPT. For a
 * replicated_apply, decode ->original the same way with ->original_type.
 * Thread-safe.
 */
int wal_record_decode(uint16_t type, const void *payload, size_t len,
                      struct Meridian__WalRecord **out);
void wal_record_free(struct Meridian__WalRecord *rec);

/* ------------------------------------------------------------------------ */
/* Tailing readers                                                          */
/* ------------------------------------------------------------------------ */

/*
 * A reader iterates durable records from from_lsn on (from_lsn 0 = oldest
 * retained). It never sees a record before it is durable, so what a peer is
 * sent can never be rolled back by a crash here. Errors: MRD_ENOTFOUND when
 * from_lsn was already deleted by retention (the peer needs a resync) or is
 * beyond the next LSN to be written; MRD_ECORRUPT; -errno. *out is owned by
 * the caller (wal_reader_close). A reader is used by one thread at a time;
 * several readers may run concurrently with appends.
 */
int wal_reader_open(wal *w, uint64_t from_lsn, wal_reader **out);

/*
 * Returns 1 and fills *e with the next record (payload valid until the next
 * call on r), 0 when the reader has caught up with the durable end, or a
 * negative code: MRD_ECORRUPT (a record failed its checksum: the message is
 * in wal_reader_error), MRD_ENOTFOUND (the next segment was deleted by
 * retention: the peer needs a resync), -errno. e is written only when 1 is
 * returned.
 */
int wal_reader_next(wal_reader *r, wal_entry *e);

/*
 * From now on, records of this type (nonzero; 0 turns it off) come back
 * bare: lsn and type set, payload NULL and len 0, read from their header
 * alone (length, LSN and type checked; the checksum, which covers the
 * payload, is not). For a reader that skips that type anyway (a sender
 * never forwards WAL_REC_REPLICATED_APPLY): it saves reading and checking
 * what it would throw away.
 */
void wal_reader_bare(wal_reader *r, uint16_t type);

/* The LSN the next wal_reader_next would return. */
uint64_t wal_reader_position(const wal_reader *r);

/* A message for the last error of r, "" if none. Valid until the next call. */
const char *wal_reader_error(const wal_reader *r);

/*
 * "Wake me when more arrives." Arms a one-shot notification: cb(ud) is
 * posted (through wal_opts.post) once the record at the reader's position is
 * durable. Returns 0 when armed, 1 when a record is already available (not
 * armed: call wal_reader_next), MRD_EDURABLE when the WAL has failed (no
 * more records will come). Re-arming replaces the previous callback.
 */
int wal_reader_wait(wal_reader *r, void (*cb)(void *ud), void *ud);

/* Disarms and frees r. Accepts NULL. A notification already posted may
 * still run afterwards; its ud must outlive that. */
void wal_reader_close(wal_reader *r);

/* ------------------------------------------------------------------------ */
/* Peers, cursors, retention, status                                        */
/* ------------------------------------------------------------------------ */

typedef struct wal_peer_status {
    uint32_t peer;
    uint64_t acked_lsn;   /* the peer has durably applied every LSN <= this */
    int needs_resync;     /* dropped by the size cap: anti-entropy must catch it up */
    int holding;          /* segments are held for it (0: needs_resync, no pass resumed it) */
    uint64_t lag_records; /* durable_lsn - acked_lsn */
    /* LSNs skip_lo..acked_lsn hold nothing the peer needs: the size cap
     * moved its cursor over segments holding only replicated applies (0
     * when it did not, or once the peer acked past the range, or a resync
     * mark came since). Saved with the cursor, so it outlives a restart. A
     * sender that finds them gone may tell the peer so (an empty range)
     * instead of resyncing it. */
    uint64_t skip_lo;
} wal_peer_status;

/*
 * Registers a peer whose cursor holds segments. If the cursor store has a
 * saved cursor it is used, otherwise initial_lsn (0 holds everything
 * retained). Errors: MRD_EEXIST, MRD_ETOOBIG (more than WAL_MAX_PEERS), the
 * store's load/save errors. Thread-safe.
 */
int wal_peer_add(wal *w, uint32_t peer, uint64_t initial_lsn);
/* Forgets a peer (its hold on segments goes). MRD_ENOTFOUND if unknown. */
int wal_peer_remove(wal *w, uint32_t peer);

/*
 * Records that peer has durably applied every LSN <= acked_lsn. Saves it
 * through the cursor store first (on the caller's thread; a failure returns
 * that error and keeps the old value), then may delete segments no one needs.
 * A value below the current one is ignored (acks can arrive out of order).
 * A value past the durable end is MRD_EINVAL. Errors: MRD_ENOTFOUND (unknown
 * peer), the store's errors, -errno from unlink. Thread-safe.
 */
int wal_cursor_set(wal *w, uint32_t peer, uint64_t acked_lsn);
/* Writes peer's cursor into *out. MRD_ENOTFOUND if unknown. Thread-safe. */
int wal_cursor_get(wal *w, uint32_t peer, wal_peer_status *out);
/*
 * A resync pass to peer starts and the peer's record stream goes on after
 * lsn (while the pass runs): marks the peer needs-resync (saved) and holds
 * segments from lsn + 1 for it, or from its cursor + 1 once that is higher.
 * The mark stays until wal_peer_resync_done: the pass fills the holes below
 * lsn. The size cap may drop such a peer again (it then holds nothing; the
 * next pass begins anew). Errors: MRD_ENOTFOUND (unknown peer, or lsn + 1 is
 * deleted already: the stream cannot go on from there), MRD_EINVAL (lsn
 * past the durable end), the store's errors. Thread-safe.
 */
int wal_peer_resync_begin(wal *w, uint32_t peer, uint64_t lsn);
/*
 * The pass that began with wal_peer_resync_begin has completed: clears the
 * mark (saved first). The cursor is raised to the larger of acked_lsn (the
 * peer's applied LSN as last acked), the begin point and its value; it
 * never moves down. MRD_EBUSY, the mark kept, when the size cap dropped
 * the peer since the pass began (or none began since the WAL opened):
 * another pass is needed. A peer without the mark: only the cursor rises.
 */
int wal_peer_resync_done(wal *w, uint32_t peer, uint64_t acked_lsn);

/*
 * The index has applied (in the same LMDB txn as the data) every LSN <=
 * applied_lsn. Segments beyond it are never deleted, not even past the size
 * cap. May delete segments. Thread-safe.
 */
int wal_set_applied(wal *w, uint64_t applied_lsn);

typedef struct wal_status {
    uint64_t first_lsn;   /* oldest retained record (next_lsn if none) */
    uint64_t next_lsn;    /* LSN the next append gets */
    uint64_t durable_lsn; /* every LSN <= this is durable */
    uint64_t applied_lsn; /* as reported by wal_set_applied */
    uint32_t segments;
    uint64_t bytes; /* total size of all segments */
    uint64_t retention_bytes;
    int over_cap; /* bytes > retention_bytes even after dropping holds */
    /* durability failure: the WAL is read-only */
    int failed;   /* 0, or MRD_EDURABLE */
    int io_error; /* the -errno that caused it */
    int io_op;    /* the wal_io_op that failed */
    char failed_segment[32];
    /* group commit counters since open */
    uint64_t appends, batches, syncs;
    uint64_t max_batch;    /* largest batch in records */
    uint64_t resyncs;      /* peers marked needs-resync by the size cap */
    uint64_t cursor_skips; /* ... cursors it moved over replicated applies instead */
    uint64_t segments_deleted;
    int n_peers;
    wal_peer_status peers[WAL_MAX_PEERS];
} wal_status;

/* A snapshot of w's state. Thread-safe. */
int wal_get_status(wal *w, wal_status *out);

/* ------------------------------------------------------------------------ */
/* Completion queue: a ready-made wal_post_fn for event loops              */
/* ------------------------------------------------------------------------ */

/*
 * wal_cq_post (the wal_post_fn, with post_ud = the cq) queues callbacks from
 * any thread and makes wal_cq_fd readable; the loop watches the fd and calls
 * wal_cq_process, which runs every queued callback on the loop's thread. With
 * libevent: event_new(base, wal_cq_fd(cq), EV_READ|EV_PERSIST, cb, cq) where
 * cb calls wal_cq_process(cq). The fd is an eventfd, owned by cq.
 */
typedef struct wal_cq wal_cq;
int wal_cq_new(wal_cq **out);
/* Frees cq without running queued callbacks (their args leak); run
 * wal_cq_process first. Accepts NULL. */
void wal_cq_free(wal_cq *cq);
int wal_cq_fd(const wal_cq *cq);
void wal_cq_post(void *cq, void (*fn)(void *arg), void *arg);
/* Runs queued callbacks; returns how many ran. Call from one thread. */
int wal_cq_process(wal_cq *cq);

/* ------------------------------------------------------------------------ */
/* File-backed cursor store                                                 */
/* ------------------------------------------------------------------------ */

/*
 * A wal_cursor_store that keeps all cursors in one small file, rewritten on
 * each save (write temp, fsync, rename, fsync dir). For tests, tools and a
 * daemon without an index; the engine uses the LMDB index instead. On
 * success *out is owned by the caller; free it after the wal is closed.
 */
typedef struct wal_cursor_file wal_cursor_file;
int wal_cursor_file_open(const char *path, wal_cursor_file **out);
void wal_cursor_file_close(wal_cursor_file *f);
/* Fills the hooks for wal_opts.cursors; they stay valid while f is open. */
void wal_cursor_file_store(wal_cursor_file *f, wal_cursor_store *out);

/* ------------------------------------------------------------------------ */
/* Segment scanning, in memory (tools and the fuzzer)                       */
/* ------------------------------------------------------------------------ */

/* Why a segment scan stopped. */
typedef enum {
    WAL_SCAN_CLEAN = 0,   /* ended exactly at a record boundary */
    WAL_SCAN_TORN = 1,    /* invalid tail inside the last, unsynced batch */
    WAL_SCAN_CORRUPT = 2, /* invalid record followed by data that had been synced */
    WAL_SCAN_BAD_HEADER = 3,
} wal_scan_state;

typedef struct wal_scan_result {
    wal_scan_state state;
    uint64_t first_lsn; /* from the header */
    uint32_t site_id;
    uint64_t last_lsn; /* last valid record; first_lsn - 1 when none */
    uint64_t records;
    uint64_t end;           /* offset just past the last valid record */
    uint64_t later_records; /* CORRUPT: valid records found after the bad one */
    /* the highest LSN of a valid record (before any bad one) of a type other
     * than WAL_REC_REPLICATED_APPLY: one this site originated; 0: none */
    uint64_t last_own;
    const char *reason; /* static text, NULL when CLEAN */
} wal_scan_result;

/*
 * Validates a whole segment image buf[0..len) as wal_open does, calling cb
 * (may be NULL) for each valid record in order; a nonzero return from cb
 * stops the scan and is returned. is_last says whether this is the newest
 * segment (only the newest may have a torn tail). Writes *res on every
 * return except when cb aborts. Returns 0, or MRD_EINVAL for bad arguments.
 * Pure: no I/O, thread-safe.
 */
int wal_segment_scan(const void *buf, size_t len, int is_last, wal_replay_fn cb, void *ud,
                     wal_scan_result *res);

#endif /* MERIDIAN_WAL_H */
