/*
 * store_int.h - definitions shared between the store/ sources and nothing else.
 * Internal functions carry the store__ prefix.
 */
#ifndef MERIDIAN_STORE_INT_H
#define MERIDIAN_STORE_INT_H

#include "store.h"

#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/uio.h>

#define STORE_SHARD_HDR_SIZE 64
#define STORE_CRC_SIZE       4
#define STORE_OBJID_LEN      16
#define STORE_LAYOUT_MAGIC   0x314c524du /* "MRL1" little-endian */
#define STORE_SHARD_MAGIC    0x5344524du /* "MRDS" little-endian */
#define STORE_LAYOUT_INLINE  0
#define STORE_LAYOUT_EC      1
#define STORE_LAYOUT_PARTS   2 /* a completed multipart upload: a list of part layouts */
#define STORE_LAYOUT_FIXED   36

typedef struct store_drive {
    char path[1024];
    atomic_int online;
    atomic_int full; /* a write failed for want of space: no new shards until a rescan */
    atomic_uint_fast64_t read_errors, write_errors, checksum_errors;
} store_drive;

#define STORE_IO_THREADS 16  /* per-shard I/O threads at most (store_io.c) */
#define STORE_IO_QUEUE   256 /* queued per-shard jobs at most */
#define STORE_POOL_DEPTH 8   /* pre-created ids per rotation (store_pool.c) */

/* store_io.c: fn(arg, i) for every item i of one store__parallel call. */
typedef void (*store__par_fn)(void *arg, int i);
typedef struct store__jobset {
    int left; /* items not finished; under io_mu */
} store__jobset;
typedef struct store__job {
    store__par_fn fn;
    void *arg;
    int i;
    store__jobset *set;
} store__job;

/* A parsed layout blob. */
typedef struct store_layout {
    int kind;
    int k, m;
    uint32_t block_size;
    uint64_t size;
    unsigned char objid[STORE_OBJID_LEN];
    unsigned char drive[STORE_MAX_SHARDS];
    const unsigned char *inline_data; /* points into the blob */
    uint32_t n_parts;                 /* kind PARTS: number of entries */
    const unsigned char *parts;       /* kind PARTS: first entry, inside the blob */
    size_t parts_len;                 /* kind PARTS: bytes of all entries */
} store_layout;

/* One part of a PARTS layout, with its place in the object. blob points into
 * the PARTS layout blob it came from. */
typedef struct store__part_ent {
    uint64_t off, size;
    const unsigned char *blob;
    size_t len;
} store__part_ent;

/* A reader pin on a PARTS object (store_parts.c): while one exists, freeing
 * the object's data is deferred to the last reader's close; while a free is
 * in progress (deleting), new readers are refused. */
typedef struct store__pin {
    struct store__pin *next;
    unsigned char id[STORE_OBJID_LEN]; /* object id of the object's first striped part */
    int refs, deleting;
    void *pending; /* PARTS layout to free when refs drops to 0 */
    size_t pending_len;
} store__pin;

struct store {
    store_opts opts;
    int n_drives, k, m;
    uint32_t block_size, inline_max;
    store_drive drives[MRD_MAX_DRIVES];

    unsigned char *enc_matrix; /* (k+m) x k Cauchy */
    unsigned char *enc_tbls;   /* 32*k*m, parity rows */

    MDB_env *env;
    MDB_dbi dbi_buckets, dbi_ver, dbi_cur, dbi_meta, dbi_sys, dbi_healq;
    MDB_dbi dbi_mpu, dbi_mpart; /* multipart uploads in progress and their parts */
    uint64_t boot_token;        /* random per open: marks a Complete running in this process */

    pthread_mutex_t pin_mu;
    store__pin *pins;

    store_fault_fn fault_fn;
    void *fault_user;

    atomic_uint_fast64_t objects_written, bytes_written, degraded_writes;
    atomic_uint_fast64_t reconstructed_reads, checksum_errors;

    /* Warm stripe buffers ((k+m) * block_size each), reused by writers and
     * readers: a fresh multi-MiB allocation costs a page fault per 4 KiB. */
    pthread_mutex_t buf_mu;
    void *buf_free[8];
    int n_buf_free;

    /* Per-shard I/O threads (store_io.c): io_q is a ring of STORE_IO_QUEUE. */
    pthread_mutex_t io_mu;
    pthread_cond_t io_cv, io_done_cv;
    pthread_t io_thr[STORE_IO_THREADS];
    int n_io, io_stop, io_idle;
    store__job *io_q;
    int io_head, io_n;

    /* Pre-created shard files (store_pool.c): pool_ids[r * STORE_POOL_DEPTH
     * + j], j < pool_n[r], are ids whose files exist for rotation r. */
    pthread_mutex_t pool_mu, pool_fill_mu;
    pthread_cond_t pool_cv;
    pthread_t pool_thr;
    int pool_init, pool_live;
    atomic_int pool_stop; /* set under pool_mu; also read under pool_fill_mu alone */
    unsigned char (*pool_ids)[STORE_OBJID_LEN];
    int pool_n[MRD_MAX_DRIVES];
    atomic_uint_fast64_t pool_hits, pool_misses;

    pthread_mutex_t fault_mu; /* hooks are called one at a time */

    pthread_mutex_t heal_mu;
    pthread_t heal_thread;
    int heal_thread_live;
    atomic_int heal_running, heal_stop;
    int heal_all;
    atomic_uint_fast64_t heal_checked, heal_total, heal_rebuilt, heal_errors;
};

/* Little-endian integers of the on-disk formats. */
static inline void
store__put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static inline void
store__put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static inline uint32_t
store__get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t
store__get64(const unsigned char *p)
{
    return (uint64_t)store__get32(p) | (uint64_t)store__get32(p + 4) << 32;
}

/* store_core.c */
int store__fault(store *s, store_fault_point p, const char *detail);
int store__pwritev_full(store *s, int fd, struct iovec *iov, int iovcnt, uint64_t off,
                        const char *path);
int store__fdatasync(store *s, int fd, const char *path);
int store__fsync_dir(store *s, const char *dir);
void store__drive_failed(store *s, int drive, int err, const char *what);
int store__drive_online(store *s, int drive);
/* Online and not full: new shards may go there. */
int store__drive_writable(store *s, int drive);
void store__objid_hex(const unsigned char *id, char out[33]);
void store__shard_path(store *s, int drive, const unsigned char *objid, int shard, int tmp,
                       char *out, size_t outsz);
void store__shard_dir(store *s, int drive, const unsigned char *objid, int tmp, char *out,
                      size_t outsz);
void *store__buf_get(store *s);
void store__buf_put(store *s, void *buf);
uint64_t store__hash(const char *bucket, const char *key, const char *version);
int store__txn_commit(store *s, MDB_txn *txn);
int store__mdb_err(int rc);

/* store_layout (store_write.c) */
int store__layout_parse(const void *blob, size_t len, store_layout *out);
void store__shard_hdr_encode(const store_layout *l, int shard, unsigned char out[64]);
int store__shard_hdr_check(const store_layout *l, int shard, const unsigned char *hdr);
/* Per-shard block length of stripe j (bytes of one shard's block). */
uint32_t store__block_len(const store_layout *l, uint64_t stripe);
uint64_t store__n_stripes(const store_layout *l);
static inline uint64_t
store__block_off(const store_layout *l, uint64_t stripe)
{
    return STORE_SHARD_HDR_SIZE + stripe * ((uint64_t)l->block_size + STORE_CRC_SIZE);
}

/* store_parts.c */
/* Parses the entries of a PARTS layout into a malloc'ed array (caller frees). */
int store__parts_index(const store_layout *l, store__part_ent **out);
/* Validates the entries of a PARTS layout whose header is parsed into l. */
int store__parts_check(store_layout *l, const unsigned char *b, size_t len);
/* The object id that keys a PARTS object's pin (its first striped part);
 * 0 if the object has one, MRD_ENOTFOUND when every part is inline. */
int store__parts_pin_id(const store_layout *l, unsigned char id[STORE_OBJID_LEN]);
/* Takes / drops a reader pin. pin fails with MRD_EDEGRADED while the data is
 * being freed. */
int store__pin_take(store *s, const unsigned char *id);
void store__pin_drop(store *s, const unsigned char *id);
int store__parts_delete(store *s, const store_layout *l, const void *blob, size_t len);
int store__parts_heal(store *s, const store_layout *l, int *rebuilt);

/* store_io.c */
int store__io_start(store *s);
void store__io_stop(store *s);
/* Runs fn(arg, i) for i in [0, n) on the io threads and the caller; returns
 * when every item has returned. */
void store__parallel(store *s, int n, store__par_fn fn, void *arg);
/* Queues fn(arg, 0) on an io thread and returns (runs it inline when no
 * thread or queue slot is free); store__await returns once it has run. */
void store__async(store *s, store__jobset *set, store__par_fn fn, void *arg);
void store__await(store *s, store__jobset *set);

/* store_pool.c */
int store__pool_start(store *s);
/* Stops the refill thread and unlinks the pooled files. */
void store__pool_stop(store *s);
/* Takes a pre-created id for rotation rot (= placement hash mod D): its
 * files obj/<xx>/<id>.<i> exist on drive (rot + i) mod D, empty, with
 * durable names. Returns 1 with *id set, 0 when the rotation is empty. */
int store__pool_take(store *s, int rot, unsigned char id[STORE_OBJID_LEN]);
/* The orphan sweep brackets its work with these: begin stops refills and
 * passes every pooled id to add(set, id); end lets refills go on. */
void store__pool_sweep_begin(store *s, void (*add)(void *set, const unsigned char *id), void *set);
void store__pool_sweep_end(store *s);
/* Ids ready in the pool, all rotations. */
uint64_t store__pool_ready(store *s);

/* store_ec.c */
int store__ec_init(store *s);
void store__ec_free(store *s);
void store__ec_encode(store *s, uint32_t len, unsigned char **data, unsigned char **parity);
/* blocks[0..k+m) of len bytes; present[i] says which are valid. Rebuilds every
 * block that is not present (needs >= k present). Returns 0 or MRD_EDEGRADED. */
int store__ec_rebuild(store *s, int k, int m, uint32_t len, unsigned char **blocks,
                      const int *present);

/* store_index.c */
#define KEYBUF 1024
int store__make_key(store *s, char *out, const char *bucket, const char *key, const char *version);
int store__del_ok(int rc);
/* A version record from the ver database; pointers into b. */
int store__version_decode(const unsigned char *b, size_t len, store_version *v);

/* store_mpu.c */
#define STORE_MPART_FIX 32 /* an mpart record: size, mtime, md5, then the part's layout */
/* Layouts whose data is freed once the transaction that dropped them commits. */
typedef struct store__freelist {
    void **blob;
    size_t *len;
    size_t n, cap;
} store__freelist;
int store__freelist_add(store__freelist *fl, const void *blob, size_t len);
/* Commits txn when rc is 0 (else aborts it), then frees fl's data if the
 * commit happened. Returns rc or the commit's error. */
int store__txn_end(store *s, MDB_txn *txn, store__freelist *fl, int rc);
/* Frees the data (when commit_ok) and the list. */
void store__freelist_run(store *s, store__freelist *fl, int commit_ok);
int store__mpu_finish(store *s, MDB_txn *txn, const char *bucket, const char *key,
                      const char *upload_id, const void *layout, size_t layout_len,
                      store__freelist *fl);
int store__index_open(store *s);
void store__index_close(store *s);
int store__healq_add(store *s, const void *layout, size_t len);
int store__healq_del(store *s, const unsigned char *objid);

#endif
