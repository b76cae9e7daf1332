/*
 * wal_int.h - internals shared by the wal_*.c files (prefix wal__). Not for
 * other modules: they include wal.h only.
 */
#ifndef MERIDIAN_WAL_INT_H
#define MERIDIAN_WAL_INT_H

#include "wal.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>

/* Byte layout: wal/FORMAT.md. All integers little-endian. */
#define WAL__MAGIC       "MRDWAL\r\n" /* 8 bytes; \r\n catches text-mode mangling */
#define WAL__VERSION     1u
#define WAL__SEG_HDR     32u /* segment header size */
#define WAL__REC_HDR     24u /* record header size */
#define WAL__MIN_SEGMENT 4096u
#define WAL__MAX_SEGMENT (1ull << 30) /* offsets in record headers are u32 */
#define WAL__NAME_LEN    21           /* 16 hex digits + ".wal" + NUL */

static inline void
wal__put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void
wal__put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline void
wal__put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t
wal__get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t
wal__get32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t
wal__get64(const uint8_t *p)
{
    return (uint64_t)wal__get32(p) | ((uint64_t)wal__get32(p + 4) << 32);
}

/* LevelDB's CRC mask: a CRC stored next to the data it covers is not itself
 * a valid CRC of anything nearby, so a log embedded in a log still checks. */
static inline uint32_t
wal__crc_mask(uint32_t crc)
{
    return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

/* A decoded record header. */
typedef struct wal__rec {
    uint32_t crc;
    uint32_t len;
    uint64_t lsn;
    uint16_t type;
    uint16_t flags;
    uint32_t synced; /* durable-prefix offset when written (FORMAT.md) */
} wal__rec;

/* Fills hdr[0..WAL__SEG_HDR). */
void wal__seg_header_encode(uint8_t *hdr, uint32_t site_id, uint64_t first_lsn);
/* Returns NULL if hdr is a valid header (and fills site/first), else why not. */
const char *wal__seg_header_decode(const uint8_t *hdr, size_t len, uint32_t *site_id,
                                   uint64_t *first_lsn);
/* Writes the record header fields at frame[0..24) except crc and synced. */
void wal__rec_header_init(uint8_t *frame, uint32_t len, uint64_t lsn, uint16_t type);
/* Sets synced and computes the crc over frame[4 .. 24+len). */
void wal__rec_seal(uint8_t *frame, uint32_t synced);
/* Checks the frame at p (avail bytes there; a whole record must be
 * present), which sits at offset off of its segment. Returns NULL if valid
 * (filling *r), else a static reason. expect_lsn 0 skips the LSN check. */
const char *wal__rec_check(const uint8_t *p, size_t avail, uint64_t off, uint64_t expect_lsn,
                           wal__rec *r);

/* "%016llx.wal" */
void wal__seg_name(uint64_t first_lsn, char out[WAL__NAME_LEN]);
/* Parses a segment file name; 0 and *first on success, -1 otherwise. */
int wal__seg_name_parse(const char *name, uint64_t *first);

/* ---- the wal handle, shared by wal_log.c and wal_reader.c -------------- */

typedef struct wal__seg {
    uint64_t first_lsn;
    uint64_t size;
    /* the highest LSN in it of a record this site originated (any type but
     * WAL_REC_REPLICATED_APPLY, which no peer is sent); 0: none;
     * UINT64_MAX: not known. Kept by the writer as it appends, and found
     * again by wal_open's scan of every record (wal_scan_result.last_own) */
    uint64_t last_own;
} wal__seg;

typedef struct wal__peer {
    uint32_t id;
    uint64_t acked;
    int needs_resync;
    /* a needs-resync peer being resynced: its stream goes on from here, so
     * segments from here (or acked + 1, if more) are held; 0: none held */
    uint64_t hold;
    /* LSNs skip_lo..acked hold nothing it needs: the cap moved its cursor
     * over segments of replicated applies only (0: none). Saved with the
     * cursor; cleared by an ack past the range or a resync mark */
    uint64_t skip_lo;
} wal__peer;

typedef struct wal__node wal__node;

typedef struct wal__batch {
    uint8_t *buf; /* frames back to back: header (crc, synced unset) + payload */
    size_t len, cap;
    wal__node **nodes;
    size_t n, ncap;
    uint64_t first_lsn, last_lsn;
} wal__batch;

struct wal {
    /* options, immutable after open */
    char *dir;
    uint32_t site_id;
    uint64_t segment_bytes, retention_bytes, max_pending;
    uint32_t batch_window_us;
    wal_post_fn post;
    void *post_ud;
    wal_cursor_store cursors;
    wal_fault_fn fault;
    void *fault_ud;

    /* Orders cursor saves: held from reading the values a save writes,
     * through the save, to making them the ones in memory, so saves reach
     * the store in the order of the state they describe and the last one
     * saved is the one in force. Taken before mu, never while holding it. */
    pthread_mutex_t save_mu;
    pthread_mutex_t mu;  /* guards everything below unless noted */
    pthread_cond_t wake; /* writer: pending became non-empty, or closing */
    pthread_t thread;
    int thread_started;
    int closing;
    int writer_idle;
    int gathering;        /* writer waits in the batch window */
    size_t gather_target; /* size of the last batch: enough to stop waiting */

    wal__batch pending;
    uint64_t next_lsn, durable_lsn, applied_lsn;
    int failed, io_error, io_op;
    char failed_segment[WAL__NAME_LEN];

    wal__seg *segs; /* oldest first; the last is being appended to */
    size_t nsegs, segcap;
    uint64_t bytes;

    wal__peer peers[WAL_MAX_PEERS];
    int npeers;
    uint64_t resyncs, segments_deleted;
    uint64_t cursor_skips; /* cursors the cap moved over replicated applies */
    int over_cap;

    wal_reader *waiters; /* readers with an armed notification */

    uint64_t appends, batches, syncs, max_batch;

    /* writer thread only */
    wal__batch inflight;
    int cur_fd;
    uint64_t cur_first, cur_off, cur_synced;
    uint64_t fault_n[WAL_IO__COUNT];
};

struct wal_reader {
    wal *w;
    int fd;
    uint64_t seg_first;
    uint64_t off;
    uint64_t next_lsn;  /* LSN of the record at off */
    uint64_t skip_to;   /* records below this are skipped */
    uint16_t bare_type; /* wal_reader_bare: records of this type are not read */
    uint8_t *buf;
    size_t cap;
    char err[320];
    /* under w->mu */
    int armed;
    uint64_t wait_lsn;
    void (*cb)(void *ud);
    void *ud;
    wal_reader *wnext;
};

/* Path of a segment in w->dir into out (size outsz). */
void wal__seg_path(const wal *w, uint64_t first_lsn, char *out, size_t outsz);
/* Posts fn(arg) through w->post, or runs it now without a post function. */
void wal__post(wal *w, void (*fn)(void *), void *arg);
/* Index of the segment holding lsn, or -1 (caller holds mu). */
long wal__seg_find(const wal *w, uint64_t lsn);

#endif /* MERIDIAN_WAL_INT_H */
