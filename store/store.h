/*
 * store.h - the public API of Meridian's local erasure-coded object store
 * (prefix store_). The only header of store/ that other modules include.
 *
 * What it gives:
 *   - object data: a streaming writer that cuts the body into stripes, encodes
 *     each stripe with ISA-L Reed-Solomon (k data + m parity shards, one shard
 *     file per drive), hashes MD5 (the S3 ETag) and CRC32C per shard block as
 *     the bytes arrive, and returns an opaque layout blob; a ranged reader that
 *     checks every block's CRC32C and reconstructs up to m lost or corrupt
 *     shards; heal; delete;
 *   - the object index (LMDB): buckets, all versions of every key, the
 *     current-version pointer, lexical cursor walks, and a batch apply that
 *     records the WAL LSN in the same transaction;
 *   - a small durable key/value keyspace for other modules' state;
 *   - drive status and counters for the admin API, and fault-injection hooks.
 *
 * Threading model (decided once, for every call here): the API is synchronous
 * and may block on disk I/O and fsync. Call it from a worker thread, never
 * from an event-loop thread. A store handle may be used by many threads at
 * once; a store_writer or store_reader belongs to one thread at a time.
 *
 * Errors: every int-returning function returns 0 on success or a negative
 * MRD_E* code / negated errno (see mrd_strerror). Output parameters come last
 * and are written only on success. No type of ISA-L, LMDB or OpenSSL appears
 * here. The on-disk formats are described in store/FORMAT.md.
 */
#ifndef MERIDIAN_STORE_H
#define MERIDIAN_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

typedef struct store store;
typedef struct store_writer store_writer;
typedef struct store_reader store_reader;

/* ------------------------------------------------------------------------ */
/* Opening                                                                  */
/* ------------------------------------------------------------------------ */

#define STORE_DEFAULT_BLOCK_SIZE (256u << 10) /* measured: docs/benchmarks.md */
#define STORE_DEFAULT_INLINE_MAX (128u << 10)
#define STORE_MAX_SHARDS         32

/* store_opts.flags */
#define STORE_OPT_NO_INLINE 0x1u /* stripe every object, even empty ones (tests) */
#define STORE_OPT_NOSYNC    0x2u /* skip fdatasync/fsync: benchmarks of the CPU path ONLY */
#define STORE_OPT_NO_POOL                                                                          \
    0x4u /* no pre-created shard files: every write creates its own (tests, A/B benchmarks) */

typedef struct store_opts {
    const char *const *data_dirs; /* D drive directories; their ORDER is part of the format */
    int n_data_dirs;              /* D, 1..MRD_MAX_DRIVES */
    int k;                        /* data shards per stripe (default 4) */
    int m;                        /* parity shards per stripe (default 2); k+m <= D */
    uint32_t block_size;          /* bytes per shard block; multiple of 64, >= 4096 */
    uint32_t inline_max;          /* objects <= this many bytes live in the layout blob */
    const char *meta_dir;         /* directory of the LMDB index environment */
    uint64_t index_map_size;      /* LMDB map size in bytes (default 16 GiB, sparse) */
    unsigned flags;               /* STORE_OPT_* */
} store_opts;

/* Fills o with the defaults: 4+2, 256 KiB blocks, 128 KiB inline, 16 GiB map.
 * The caller still sets data_dirs, n_data_dirs and meta_dir. */
void store_opts_default(store_opts *o);

/*
 * Opens the store: creates the directory skeleton on every drive, stamps or
 * checks each drive's identity file (a drive found at another index is kept
 * offline), removes leftovers of interrupted writes and heals (tmp/), probes
 * each drive with a small synced write (failures mark it offline, they do not
 * fail the open), and opens the LMDB environment.
 * Errors: MRD_EINVAL / MRD_ECONFIG for bad options; MRD_EDEGRADED when fewer
 * than k drives are online; -errno or MRD_ECORRUPT if the index cannot be
 * opened. On success *out is owned by the caller (store_close).
 * Thread-safety: call once, before sharing the handle.
 */
int store_open(const store_opts *o, store **out);

/* Stops background heal, closes the index. Accepts NULL. All writers and
 * readers must be closed first. */
void store_close(store *s);

/* ------------------------------------------------------------------------ */
/* Writing object data                                                      */
/* ------------------------------------------------------------------------ */

/* store_writer_open flags */
#define STORE_WRITE_SHA256 0x1u /* also compute SHA-256 of the body (signed payloads) */
/* No MD5 of the body (md5 and etag stay zero): for a caller that has the
 * ETag already and checks the bytes another way (the replication receiver).
 * MD5 is the writer's largest cost. */
#define STORE_WRITE_NO_MD5 0x2u

typedef struct store_put_result {
    uint64_t size;            /* bytes written */
    unsigned char md5[16];    /* MD5 of the body */
    char etag[33];            /* lower-case hex of md5, NUL-terminated */
    unsigned char sha256[32]; /* only with STORE_WRITE_SHA256, else zero */
    void *layout;             /* opaque layout blob, malloc'ed: store_put_result_clear */
    size_t layout_len;        /* its length */
    int degraded;             /* 1 if some shard could not be written (queued for heal) */
} store_put_result;

/*
 * Starts writing one object version. bucket, key and version_id only choose
 * the drives (shard i goes to drive (hash(bucket,key,version_id) + i) mod D);
 * nothing is recorded in the index. Nothing touches disk until the first full
 * stripe (or finish).
 * Errors: MRD_EINVAL; MRD_EDEGRADED if fewer than k of the chosen drives are
 * online; -ENOSPC if fewer than k take shards because some are full;
 * -ENOMEM. On success *out must be ended by exactly one of
 * store_writer_finish or store_writer_abort.
 * Memory: at most two stripes, 2 * (k+m) * block_size bytes, per writer (one
 * for objects of at most one stripe): stripe j is encoded and written on an
 * io thread while the caller fills stripe j+1.
 */
int store_writer_open(store *s, const char *bucket, const char *key, const char *version_id,
                      unsigned flags, store_writer **out);

/*
 * Feeds the next len bytes of the body (any size, including 0). A full stripe
 * is encoded, checksummed and written on an io thread once the next body byte
 * arrives (the last stripe is written by finish), so an error may surface in
 * a later call (at the next stripe boundary) or in finish. A shard that
 * fails to write marks its drive offline (full, on ENOSPC) and is dropped;
 * the write goes on while at least k shards are good. Errors: MRD_EDEGRADED
 * (fewer than k shards left), -ENOSPC (... because drives are full), -errno. After an error the
 * writer only accepts store_writer_abort.
 */
int store_writer_write(store_writer *w, const void *data, size_t len);

/*
 * Completes the object: writes the last partial stripe and fdatasyncs every
 * shard file in parallel (the files already have their final, durable names:
 * pre-created by the store's pool, or created by this writer and then
 * directory-fsynced here). When it returns 0, every good shard is durable. Objects of
 * at most inline_max bytes never touch the drives: their bytes travel inside
 * the layout blob. The writer is freed whatever the outcome; on failure every
 * shard is removed, as by abort.
 * Errors: MRD_EDEGRADED (fewer than k shards durable), MRD_EDURABLE (an
 * fdatasync failed on too many shards), -errno.
 * Ownership: out->layout belongs to the caller.
 */
int store_writer_finish(store_writer *w, store_put_result *out);

/* Abandons the write, removes every file it created and frees w. Accepts
 * NULL. This is also what a crash mid-write amounts to: shards live under
 * tmp/ until finish and tmp/ is emptied by store_open. */
void store_writer_abort(store_writer *w);

/* Frees r->layout and zeroes r. Accepts NULL. */
void store_put_result_clear(store_put_result *r);

/* ------------------------------------------------------------------------ */
/* Reading object data                                                      */
/* ------------------------------------------------------------------------ */

/*
 * Opens an object by its layout blob (copied; the caller may free it), and
 * opens every shard file now: from then on the reader can read the whole
 * version even if its data is freed (store_object_delete_data) meanwhile,
 * because the open descriptors keep the unlinked files readable until
 * store_reader_close. Shards that do not open are reported (store.shard_bad,
 * heal queue) when a read first needs them.
 * Errors: MRD_ECORRUPT if the blob is malformed or for another erasure set;
 * MRD_EDEGRADED if fewer than k shards can be opened (offline drives, lost
 * or bad files - or the version was freed after the caller looked it up: a
 * caller racing overwrites looks the key up again and, if its current
 * version changed, opens that one). -ENOMEM.
 * On success *out is owned by the caller (store_reader_close).
 */
int store_reader_open(store *s, const void *layout, size_t layout_len, store_reader **out);

/* The object's size in bytes. */
uint64_t store_reader_size(const store_reader *r);

/*
 * Reads up to len bytes at offset off into buf, like pread: only the stripes
 * covering [off, off+len) are touched and every block read is CRC-checked. A
 * missing or corrupt shard is logged (event store.shard_bad), counted, queued
 * for heal and reconstructed from the others. *nread < len only at the end of
 * the object (0 at or past it).
 * Errors: MRD_EDEGRADED when more than m shards of a needed stripe are lost
 * (route the read to a peer); -errno.
 * Memory: a reader allocates at most (k+m) blocks of scratch, lazily.
 */
int store_reader_read(store_reader *r, uint64_t off, void *buf, size_t len, size_t *nread);

/* Closes the shard files and frees r. Accepts NULL. */
void store_reader_close(store_reader *r);

/* Describes a layout blob without opening it. Errors: MRD_ECORRUPT. */
typedef struct store_layout_info {
    uint64_t size;
    int is_inline;
    int k, m;
    uint32_t block_size;
    char object_id[33]; /* hex; "" when inline or made of parts */
    uint32_t parts;     /* > 0: a completed multipart upload made of this many parts */
} store_layout_info;
int store_layout_describe(const void *layout, size_t layout_len, store_layout_info *out);

/* ------------------------------------------------------------------------ */
/* Multipart uploads                                                        */
/* ------------------------------------------------------------------------ */

/*
 * A multipart upload is kept site-local in two LMDB databases (store/FORMAT.md):
 * the upload (bucket, key, upload id, an opaque blob the caller defines) and
 * its parts (number, size, MD5, the part's own layout blob). Each part is an
 * ordinary object written with store_writer_* (choose its drives with a
 * version id unique to the part, e.g. "<upload id>.<part number>") and made
 * durable by store_writer_finish before store_mpu_part_put records it.
 *
 * Completing does not copy data: store_layout_compose builds a PARTS layout
 * that lists the parts' layouts in order, and the object is read, healed,
 * freed and replicated through that layout like any other. The upload's
 * records are dropped, and the data of parts the layout does not use freed,
 * by a STORE_OP_MPU_FINISH op in the same index transaction that makes the
 * object visible.
 */

#define STORE_MPU_MAX_PARTS 10000

/* One part of an upload. As output, layout points into the walk. */
typedef struct store_mpu_part {
    uint32_t number; /* 1..STORE_MPU_MAX_PARTS */
    uint64_t size;
    uint64_t mtime_ms;
    unsigned char md5[16];
    const void *layout;
    size_t layout_len;
} store_mpu_part;

/* Records a new upload. blob (len bytes) is the caller's (content type,
 * metadata, initiation time ...). Errors: MRD_EINVAL, MRD_ETOOBIG,
 * MRD_EEXIST (the upload id is taken), MRD_EDURABLE. */
int store_mpu_create(store *s, const char *bucket, const char *key, const char *upload_id,
                     const void *blob, size_t len);

/* The upload's blob (malloc'ed, the caller frees). MRD_ENOTFOUND when there
 * is no such upload (never created, completed or aborted). */
int store_mpu_get(store *s, const char *bucket, const char *key, const char *upload_id, void **blob,
                  size_t *len);

/*
 * Records part p of an upload, durably, replacing a part with the same
 * number; the replaced part's data is freed after the commit. Call after
 * store_writer_finish. Errors: MRD_ENOTFOUND (no such upload: the caller
 * frees the part's data), MRD_EBUSY (a Complete of this upload is running),
 * MRD_EINVAL, MRD_EDURABLE.
 */
int store_mpu_part_put(store *s, const char *bucket, const char *key, const char *upload_id,
                       const store_mpu_part *p);

/* Walks the parts of an upload in number order, starting after part
 * `after` (0: from the first). Same callback rules as store_list_cb.
 * MRD_ENOTFOUND when there is no such upload. */
typedef int (*store_mpu_part_cb)(void *user, const store_mpu_part *p);
int store_mpu_parts(store *s, const char *bucket, const char *key, const char *upload_id,
                    uint32_t after, store_mpu_part_cb cb, void *user);

/* Walks the uploads of bucket whose key starts with prefix, in (key, upload
 * id) order, starting after (key_marker, upload_id_marker); an empty
 * upload_id_marker starts after every upload of key_marker. */
typedef int (*store_mpu_cb)(void *user, const char *key, const char *upload_id, const void *blob,
                            size_t len);
int store_mpu_list(store *s, const char *bucket, const char *prefix, const char *key_marker,
                   const char *upload_id_marker, store_mpu_cb cb, void *user);

/*
 * Marks the upload as being completed by this process, so that parts cannot
 * be replaced and the upload cannot be aborted under a Complete. A mark left
 * by a process that died is ignored. store_mpu_complete_cancel clears it when
 * the Complete fails before its record is written.
 * Errors: MRD_ENOTFOUND, MRD_EBUSY (another Complete is running).
 */
int store_mpu_complete_begin(store *s, const char *bucket, const char *key, const char *upload_id);
int store_mpu_complete_cancel(store *s, const char *bucket, const char *key, const char *upload_id);

/* Drops the upload and frees the data of every part. Errors: MRD_ENOTFOUND,
 * MRD_EBUSY (a Complete is running). */
int store_mpu_abort(store *s, const char *bucket, const char *key, const char *upload_id);

/* Aborts every upload created before before_ms (ms since the epoch) that is
 * not being completed, freeing its parts: S3's AbortIncompleteMultipartUpload,
 * site-wide. *aborted (may be NULL) gets the count. Errors: the index's. */
int store_mpu_expire(store *s, uint64_t before_ms, uint64_t *aborted);

/*
 * Where part `number` (1-based) of an object lies, for GET ?partNumber=: in
 * a PARTS layout the part's bytes [*off, *off + *size) and *parts = the part
 * count; any other layout is one part (the whole object) with *parts = 0.
 * Errors: MRD_ENOTFOUND (no such part), MRD_ECORRUPT.
 */
int store_layout_part(const void *layout, size_t len, uint32_t number, uint64_t *off,
                      uint64_t *size, uint32_t *parts);

/* One part of a layout to compose. */
typedef struct store_part_ref {
    const void *layout;
    size_t layout_len;
} store_part_ref;

/*
 * Builds the PARTS layout of an object made of parts[0..n) in order (their
 * layouts, as recorded by store_mpu_part_put). *out is malloc'ed, owned by
 * the caller. Errors: MRD_EINVAL (n == 0 or > STORE_MPU_MAX_PARTS),
 * MRD_ECORRUPT (a part layout is malformed or itself made of parts).
 */
int store_layout_compose(const store_part_ref *parts, size_t n, void **out, size_t *out_len);

/* ------------------------------------------------------------------------ */
/* Heal and garbage collection                                              */
/* ------------------------------------------------------------------------ */

/*
 * Checks every block of every shard of one object and rewrites missing or
 * corrupt shards (to a temp file, fdatasync, rename, fsync dir). Shards on
 * offline drives are left alone and reported as failed.
 * Errors: MRD_EDEGRADED if more than m shards are lost (cannot rebuild),
 * MRD_ECORRUPT for a bad blob, -errno. *rebuilt (may be NULL) gets the number
 * of shards rewritten.
 */
int store_heal_object(store *s, const void *layout, size_t layout_len, int *rebuilt);

/*
 * Starts a background thread that drains the heal queue (objects found
 * damaged by reads or written degraded) and then, if all is non-zero, checks
 * every version in the index. Progress is in store_status. Returns MRD_EBUSY
 * if a heal is already running. store_heal_wait blocks until it ends.
 */
int store_heal_start(store *s, int all);
void store_heal_wait(store *s);

/*
 * Frees the data of one object version: unlinks its shard files (missing ones
 * are ignored) and drops it from the heal queue. Inline layouts have nothing
 * to free. Call it when the index no longer references the layout (version
 * deleted, or overwritten in an unversioned bucket). Readers already open on
 * the version are not affected: they hold the shard files open and finish;
 * the disk space comes back when the last of them closes.
 */
int store_object_delete_data(store *s, const void *layout, size_t layout_len);

/*
 * Removes shard files under obj/ that nothing references: no version in the
 * index (parts of PARTS layouts included), no part of an upload in
 * progress, nothing in the heal queue. These are what a crash leaves behind
 * between durable data and the record that references it, or between a
 * commit and the frees that follow it (store/FORMAT.md). Call only while
 * nothing writes - at start-up, after the WAL replay - because a write whose
 * record is not committed yet looks exactly like a leftover. *removed (may
 * be NULL) gets the number of files removed. Errors: the index's, -ENOMEM.
 */
int store_sweep_orphans(store *s, uint64_t *removed);

/* ------------------------------------------------------------------------ */
/* Status                                                                   */
/* ------------------------------------------------------------------------ */

typedef enum {
    STORE_DRIVE_ONLINE = 0,
    STORE_DRIVE_OFFLINE = 1,
} store_drive_state;

typedef struct store_drive_status {
    char path[1024];
    store_drive_state state;
    int full; /* online, but a write found it full: reads only until a rescan */
    uint64_t total_bytes, free_bytes;
    uint64_t read_errors, write_errors, checksum_errors;
} store_drive_status;

typedef struct store_status {
    int n_drives, k, m;
    uint32_t block_size;
    int online_drives; /* full ones included: they still serve reads */
    int full_drives;   /* online and full */
    store_drive_status drives[MRD_MAX_DRIVES];
    uint64_t objects_written, bytes_written;
    uint64_t degraded_writes;     /* writes that succeeded with < k+m shards */
    uint64_t reconstructed_reads; /* stripes that had to be decoded */
    uint64_t checksum_errors;     /* blocks whose CRC32C did not match */
    uint64_t heal_queue;          /* objects waiting for heal */
    int heal_running;
    uint64_t heal_objects_checked, heal_objects_total, heal_shards_rebuilt, heal_errors;
    uint64_t pool_hits,
        pool_misses;     /* striped writes that found / did not find pre-created files */
    uint64_t pool_ready; /* object ids with pre-created files, ready now */
} store_status;

/* Snapshot of drive states and counters (statvfs per drive). Thread-safe. */
int store_get_status(store *s, store_status *out);

/* Drive i's state and full mark as store_get_status gives them, without any
 * I/O (cheap enough for an event loop). full may be NULL. Thread-safe.
 * Errors: MRD_EINVAL (NULL store or state, i out of range). */
int store_drive_state_get(store *s, int i, store_drive_state *state, int *full);

/* Re-probes offline drives and brings back those that pass the write probe,
 * and clears the mark of full drives that have room again. Returns the
 * number of drives that take new shards (online and not full).
 * Thread-safe. A drive that comes back
 * misses the shards written while it was away and reads do not queue those
 * objects one by one: call store_heal_start(s, 1) after a rescan that brought
 * drives back. */
int store_drives_rescan(store *s);

/* Marks a drive offline by index (admin action, tests). */
int store_drive_set_offline(store *s, int drive);

/* ------------------------------------------------------------------------ */
/* Index (LMDB)                                                             */
/* ------------------------------------------------------------------------ */

/*
 * Key size. Index keys are bucket \0 key \0 id (FORMAT.md), and LMDB bounds
 * a key (511 bytes in Debian's build), well below S3's 1024-byte object keys.
 * STORE_ID_MAX is the longest id stored after a key: the engine's version ids
 * have 24 characters, multipart upload ids 32.
 */
#define STORE_ID_MAX 32

/* 0 when every index key of object `key` in `bucket` fits LMDB's limit with
 * an id of up to STORE_ID_MAX bytes, else MRD_ETOOBIG. Callers check it
 * before writing anything (the gateway answers KeyTooLongError), so no
 * durable log record can carry a key the index would refuse. Thread-safe. */
int store_key_check(store *s, const char *bucket, const char *key);

/* The longest object key (bytes) store_key_check accepts in a bucket whose
 * name has bucket_len bytes (0 if none fits). Thread-safe. */
size_t store_key_max(store *s, size_t bucket_len);

/* store_version.flags */
#define STORE_VF_DELETE_MARKER 0x1u
#define STORE_VF_CONFLICT      0x2u /* lost a concurrent-write decision */
#define STORE_VF_NONCURRENT    0x4u

/*
 * One object version. As input (STORE_OP_VERSION_PUT) the pointers are the
 * caller's; as output (store_index_get, list callbacks) they point into the
 * returned record or into the walk and follow that lifetime. Strings are
 * NUL-terminated; blobs are opaque bytes.
 */
typedef struct store_version {
    const char *version_id;
    uint64_t size;
    const char *etag;
    const char *content_type;
    uint64_t hlc;          /* HLC stamp of the write */
    uint32_t flags;        /* STORE_VF_* */
    const void *user_meta; /* encoded user metadata, opaque to store */
    size_t user_meta_len;
    const void *vv; /* version vector, opaque to store */
    size_t vv_len;
    const void *layout; /* from store_writer_finish; NULL/0 for delete markers */
    size_t layout_len;
} store_version;

typedef enum {
    STORE_OP_BUCKET_PUT = 1, /* create or replace bucket with config blob */
    STORE_OP_BUCKET_DEL,     /* remove the bucket record (emptiness is the engine's check) */
    STORE_OP_VERSION_PUT, /* insert/replace bucket/key/version; STORE_OPF_CURRENT makes it current
                           */
    STORE_OP_VERSION_DEL, /* remove a version; clears the current pointer if it was current */
    STORE_OP_CURRENT_SET, /* make an existing version current (MRD_ENOTFOUND if absent) */
    STORE_OP_CURRENT_DEL, /* key has no current version */
    STORE_OP_META_PUT,    /* key -> blob in the generic meta keyspace (store_meta_get);
                             bucket is ignored: lets state such as replication
                             progress commit atomically with the records it covers */
    STORE_OP_MPU_FINISH,  /* drops upload version_id of bucket/key and its parts; after the
                             commit frees the data of parts that blob (the object's PARTS
                             layout) does not use. Absent upload: nothing to do. */
} store_index_op_type;

#define STORE_OPF_CURRENT 0x1u

typedef struct store_index_op {
    store_index_op_type type;
    unsigned op_flags; /* STORE_OPF_* */
    const char *bucket;
    const char *key;              /* VERSION_*, CURRENT_* */
    const char *version_id;       /* VERSION_DEL, CURRENT_SET */
    const store_version *version; /* VERSION_PUT */
    const void *blob;             /* BUCKET_PUT config */
    size_t blob_len;
} store_index_op;

/*
 * Applies n operations and records lsn as last_applied_lsn, all in ONE LMDB
 * write transaction committed durably: either all of it survives a crash or
 * none of it does. An lsn <= the stored last_applied_lsn is a replay of work
 * already done: nothing is applied and 0 is returned.
 * Errors: MRD_EINVAL (lsn 0, bad op), MRD_ETOOBIG (bucket+key+version longer
 * than the index key limit, about 500 bytes), MRD_ENOTFOUND (CURRENT_SET of a
 * missing version), MRD_EDURABLE (commit failed); on error nothing is applied.
 * Deleting something absent is not an error (replays stay idempotent).
 * Thread-safety: any thread; LMDB serialises writers.
 */
int store_index_apply(store *s, const store_index_op *ops, size_t n, uint64_t lsn);

/* The last LSN applied (0 on a fresh index). */
int store_index_last_lsn(store *s, uint64_t *out);

/* One heap block holding a version and all its strings/blobs. */
typedef struct store_version_rec store_version_rec;
/* The version inside rec; valid until store_version_rec_free(rec). */
const store_version *store_version_rec_get(const store_version_rec *rec);
void store_version_rec_free(store_version_rec *rec);

/* Looks up one version, or the current one when version_id is NULL.
 * Errors: MRD_ENOTFOUND. *out is owned by the caller. */
int store_index_get(store *s, const char *bucket, const char *key, const char *version_id,
                    store_version_rec **out);

/*
 * Walk callback: key and v are valid only during the call. Return 0 to go
 * on, anything else to stop. The callback must not call into the store.
 */
typedef int (*store_list_cb)(void *user, const char *key, const store_version *v);

/* store_index_list flags */
#define STORE_LIST_VERSIONS 0x1u /* every version, not only the current ones */

/*
 * Walks the keys of bucket starting with prefix (NULL or "" for all) in
 * lexical byte order, starting strictly after start_after (NULL: from the
 * start). Without STORE_LIST_VERSIONS it yields each key's current version
 * (delete markers included; the gateway hides them). With it, every version
 * of every key, versions of one key in version_id byte order, starting after
 * (start_after, start_after_version) when both are given. It is a cursor walk
 * in one read transaction: the cost is proportional to what is yielded.
 */
int store_index_list(store *s, const char *bucket, const char *prefix, const char *start_after,
                     const char *start_after_version, unsigned flags, store_list_cb cb, void *user);

/* Bucket config blob: *blob malloc'ed, owned by the caller. MRD_ENOTFOUND. */
int store_bucket_get(store *s, const char *bucket, void **blob, size_t *len);

typedef int (*store_bucket_cb)(void *user, const char *bucket, const void *blob, size_t len);
/* Walks all buckets in name order. Same callback rules as store_list_cb. */
int store_bucket_list(store *s, store_bucket_cb cb, void *user);

/* ------------------------------------------------------------------------ */
/* Generic durable metadata (e.g. the WAL's per-peer acked-LSN cursors)     */
/* ------------------------------------------------------------------------ */

/* Stores key -> val (len bytes) in its own LMDB transaction, committed
 * durably before returning. key is a NUL-terminated string < 400 bytes.
 * Errors: MRD_EINVAL, MRD_EDURABLE. */
int store_meta_put(store *s, const char *key, const void *val, size_t len);
/* *val malloc'ed (caller frees), *len its size. MRD_ENOTFOUND if absent. */
int store_meta_get(store *s, const char *key, void **val, size_t *len);
/* Removes key; absent is not an error. */
int store_meta_del(store *s, const char *key);

/* ------------------------------------------------------------------------ */
/* Fault injection (tests)                                                  */
/* ------------------------------------------------------------------------ */

typedef enum {
    STORE_FAULT_WRITE = 0,     /* every pwrite of shard data */
    STORE_FAULT_FDATASYNC = 1, /* every fdatasync/fsync of shard files and dirs */
    STORE_FAULT_COMMIT = 2,    /* every mdb_txn_commit of a write transaction */
} store_fault_point;

/* Called before each I/O of the given kind; detail is a path or a label.
 * Return 0 to let it run, or a negative error that the I/O then "returns". */
typedef int (*store_fault_fn)(void *user, store_fault_point point, const char *detail);

/* Installs (or with NULL removes) the hook. Not thread-safe with concurrent
 * I/O on the same store: install it while the store is idle. */
void store_set_fault_hook(store *s, store_fault_fn fn, void *user);

#endif /* MERIDIAN_STORE_H */
