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

typedef struct store_drive {
    char path[1024];
    atomic_int online;
    atomic_uint_fast64_t read_errors, write_errors, checksum_errors;
} store_drive;

/* A parsed layout blob. */
typedef struct store_layout {
    int kind;
    int k, m;
    uint32_t block_size;
    uint64_t size;
    unsigned char objid[STORE_OBJID_LEN];
    unsigned char drive[STORE_MAX_SHARDS];
    const unsigned char *inline_data; /* points into the blob */
} store_layout;

struct store {
    store_opts opts;
    int n_drives, k, m;
    uint32_t block_size, inline_max;
    store_drive drives[MRD_MAX_DRIVES];

    unsigned char *enc_matrix; /* (k+m) x k Cauchy */
    unsigned char *enc_tbls;   /* 32*k*m, parity rows */

    MDB_env *env;
    MDB_dbi dbi_buckets, dbi_ver, dbi_cur, dbi_meta, dbi_sys, dbi_healq;

    store_fault_fn fault_fn;
    void *fault_user;

    atomic_uint_fast64_t objects_written, bytes_written, degraded_writes;
    atomic_uint_fast64_t reconstructed_reads, checksum_errors;

    /* Warm stripe buffers ((k+m) * block_size each), reused by writers and
     * readers: a fresh multi-MiB allocation costs a page fault per 4 KiB. */
    pthread_mutex_t buf_mu;
    void *buf_free[8];
    int n_buf_free;

    pthread_mutex_t heal_mu;
    pthread_t heal_thread;
    int heal_thread_live;
    atomic_int heal_running, heal_stop;
    int heal_all;
    atomic_uint_fast64_t heal_checked, heal_total, heal_rebuilt, heal_errors;
};

/* store_core.c */
int store__fault(store *s, store_fault_point p, const char *detail);
int store__pwritev_full(store *s, int fd, struct iovec *iov, int iovcnt, uint64_t off,
                        const char *path);
int store__fdatasync(store *s, int fd, const char *path);
int store__fsync_dir(store *s, const char *dir);
void store__drive_failed(store *s, int drive, int err, const char *what);
int store__drive_online(store *s, int drive);
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

/* store_ec.c */
int store__ec_init(store *s);
void store__ec_free(store *s);
void store__ec_encode(store *s, uint32_t len, unsigned char **data, unsigned char **parity);
/* blocks[0..k+m) of len bytes; present[i] says which are valid. Rebuilds every
 * block that is not present (needs >= k present). Returns 0 or MRD_EDEGRADED. */
int store__ec_rebuild(store *s, int k, int m, uint32_t len, unsigned char **blocks,
                      const int *present);

/* store_index.c */
int store__index_open(store *s);
void store__index_close(store *s);
int store__healq_add(store *s, const void *layout, size_t len);
int store__healq_del(store *s, const unsigned char *objid);

#endif
