/*
 * store_write.c - the streaming writer and the layout blob.
 *
 * A stripe buffer is (k+m) * block_size bytes, 64-byte aligned: k data
 * blocks laid end to end, then m parity blocks. Body bytes arrive in chunks
 * of any size. Each chunk is consumed in pieces of at most 64 KiB: the piece
 * goes through MD5 (unless the caller has the ETag already and checks the
 * bytes another way: STORE_WRITE_NO_MD5) and SHA-256 if asked, and is then
 * copied into the stripe buffer while it is still in L1/L2, so the body is
 * read from memory once.
 * A full stripe is encoded with ISA-L, each of the k+m blocks gets a CRC32C,
 * and each shard's block plus its CRC goes out with one pwritev to that
 * shard's file.
 *
 * Pipelining. MD5 is serial and is the writer's largest cost, so encode, CRC
 * and the pwritevs (page-cache copies) of stripe j run on an io thread
 * (store__async, store_io.c) while the caller hashes and copies stripe j+1
 * into a second buffer. A full stripe is handed off only when the next body
 * byte arrives (only then is it known not to be the last, whose shape
 * depends on the object's size), so an object of at most one stripe never
 * takes the second buffer. At most one stripe is in flight: the caller
 * waits for stripe j before handing off j+1, and finish and abort wait for
 * it before touching the files. Memory is therefore at most two stripes per
 * in-flight write, 2 * (k+m) * block_size (3 MiB at 4+2 and the default
 * 256 KiB block; one stripe for objects of one stripe or less), whatever the
 * object size. While a stripe is in flight the job alone touches the shard
 * state (fd, bad, created, stripes, err); the caller reads it only after
 * store__await, whose mutex orders the two. An error found by the job is
 * reported at the next stripe boundary or by finish (errors are sticky).
 *
 * The last stripe is written in finish, when nothing is left to hash: the
 * caller CRCs and writes its k data blocks while an io thread encodes it and
 * writes the m parity blocks. Each side touches only its own shards' state
 * (a failed block drops only its shard), and the quorum is checked once
 * both are done. For a one-stripe object (1 MiB at 4+2 and 256 KiB blocks)
 * this is the only overlap: its bytes reach the writer only as fast as
 * they are hashed, and the shape of a stripe is not known before its end.
 *
 * The last stripe is usually partial: with r bytes left, each shard block is
 * L = ceil(r/k) bytes, data shard i holding body bytes [i*L, (i+1)*L) of the
 * stripe, zero padded. Full stripes have L = block_size, so block j of every
 * shard sits at a fixed offset, 64 + j*(block_size+4), and a ranged read can
 * seek straight to it (store/FORMAT.md has the byte layout).
 *
 * Nothing touches disk before the first full stripe is handed off. If
 * finish comes first and the body is at most inline_max bytes, the object
 * never reaches the drives: its bytes go into the layout blob, which the
 * engine stores in the WAL record and the LMDB index. One WAL fdatasync
 * then makes it durable, instead of k+m file creates, k+m fdatasyncs and k+m
 * directory fsyncs (docs/benchmarks.md has the measured difference).
 *
 * Durability and visibility. Shards are written straight under their final
 * names, obj/<xx>/<id>.<shard>, usually into files the pool created ahead of
 * time with durable names (store_pool.c). finish fdatasyncs every shard, all
 * at once on the io threads (store_io.c), and when the writer had to create
 * a file itself (pool empty for its rotation), fsyncs that file's directory
 * too, again in parallel; only then is the layout returned. So "finish
 * returned" means every good shard's name and bytes are durable, with no
 * rename and, in the common case, no directory fsync on the write's path.
 * The layout is the only way to find the shards, and it becomes visible only
 * when the engine records it, so a partial object is never visible: its
 * files are orphans in obj/, like those of a write that finished but whose
 * WAL record never committed, and the start-up orphan sweep removes them
 * (store_sweep.c). Writers never use tmp/ (heal does).
 *
 * Failures. A write, sync or rename error on a shard drops that shard (its
 * file is removed and its drive marked offline, or full when the error was
 * ENOSPC/EDQUOT); the object goes on while at least k shards remain, and is
 * then reported degraded and put in the heal queue. Below k shards the
 * writer fails with MRD_EDEGRADED (MRD_EDURABLE when fdatasync was what
 * failed, -ENOSPC when room on the full drives would have sufficed) and
 * removes everything. Errors are sticky.
 */
#include "store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

/* ---- layout blob ---------------------------------------------------------- */

#define LAYOUT_FIXED STORE_LAYOUT_FIXED

static int
layout_encode(const store_layout *l, const void *inline_data, void **out, size_t *outlen)
{
    int nsh = l->kind == STORE_LAYOUT_EC ? l->k + l->m : 0;
    size_t dlen = l->kind == STORE_LAYOUT_INLINE ? (size_t)l->size : 0;
    size_t len = LAYOUT_FIXED + (size_t)nsh + dlen + 4;
    unsigned char *b = malloc(len);

    if (!b)
        return -ENOMEM;
    store__put32(b, STORE_LAYOUT_MAGIC);
    b[4] = 1;
    b[5] = (unsigned char)l->kind;
    b[6] = (unsigned char)(l->kind == STORE_LAYOUT_EC ? l->k : 0);
    b[7] = (unsigned char)(l->kind == STORE_LAYOUT_EC ? l->m : 0);
    store__put32(b + 8, l->kind == STORE_LAYOUT_EC ? l->block_size : 0);
    store__put64(b + 12, l->size);
    memcpy(b + 20, l->objid, STORE_OBJID_LEN);
    memcpy(b + LAYOUT_FIXED, l->drive, (size_t)nsh);
    if (dlen)
        memcpy(b + LAYOUT_FIXED + nsh, inline_data, dlen);
    store__put32(b + len - 4, mrd_crc32c(0, b, len - 4));
    *out = b;
    *outlen = len;
    return 0;
}

int
store__layout_parse(const void *blob, size_t len, store_layout *out)
{
    const unsigned char *b = blob;
    store_layout l;
    size_t nsh;

    if (!b || len < LAYOUT_FIXED + 4 || store__get32(b) != STORE_LAYOUT_MAGIC || b[4] != 1)
        return MRD_ECORRUPT;
    if (store__get32(b + len - 4) != mrd_crc32c(0, b, len - 4))
        return MRD_ECORRUPT;
    memset(&l, 0, sizeof(l));
    l.kind = b[5];
    l.k = b[6];
    l.m = b[7];
    l.block_size = store__get32(b + 8);
    l.size = store__get64(b + 12);
    memcpy(l.objid, b + 20, STORE_OBJID_LEN);
    if (l.kind == STORE_LAYOUT_INLINE) {
        if (len != LAYOUT_FIXED + l.size + 4)
            return MRD_ECORRUPT;
        l.inline_data = b + LAYOUT_FIXED;
    } else if (l.kind == STORE_LAYOUT_EC) {
        nsh = (size_t)l.k + (size_t)l.m;
        if (l.k < 1 || nsh > STORE_MAX_SHARDS || l.block_size < 64 || l.block_size > (256u << 20) ||
            len != LAYOUT_FIXED + nsh + 4)
            return MRD_ECORRUPT;
        memcpy(l.drive, b + LAYOUT_FIXED, nsh);
    } else if (l.kind == STORE_LAYOUT_PARTS) {
        int rc = store__parts_check(&l, b, len);
        if (rc != 0)
            return rc;
    } else {
        return MRD_ECORRUPT;
    }
    *out = l;
    return 0;
}

int
store_layout_describe(const void *layout, size_t layout_len, store_layout_info *out)
{
    store_layout l;
    int rc = store__layout_parse(layout, layout_len, &l);

    if (rc != 0)
        return rc;
    memset(out, 0, sizeof(*out));
    out->size = l.size;
    out->is_inline = l.kind == STORE_LAYOUT_INLINE;
    out->k = l.k;
    out->m = l.m;
    out->block_size = l.block_size;
    out->parts = l.kind == STORE_LAYOUT_PARTS ? l.n_parts : 0;
    if (l.kind == STORE_LAYOUT_EC)
        store__objid_hex(l.objid, out->object_id);
    return 0;
}

uint64_t
store__n_stripes(const store_layout *l)
{
    uint64_t sd = (uint64_t)l->k * l->block_size;

    return (l->size + sd - 1) / sd;
}

uint32_t
store__block_len(const store_layout *l, uint64_t stripe)
{
    uint64_t sd = (uint64_t)l->k * l->block_size;
    uint64_t base = stripe * sd;
    uint64_t rem = l->size > base ? l->size - base : 0;

    if (rem >= sd)
        return l->block_size;
    return (uint32_t)((rem + (uint64_t)l->k - 1) / (uint64_t)l->k);
}

void
store__shard_hdr_encode(const store_layout *l, int shard, unsigned char out[64])
{
    memset(out, 0, 64);
    store__put32(out, STORE_SHARD_MAGIC);
    out[4] = 1; /* format version */
    out[6] = (unsigned char)l->k;
    out[7] = (unsigned char)l->m;
    out[8] = (unsigned char)shard;
    store__put32(out + 12, l->block_size);
    memcpy(out + 16, l->objid, STORE_OBJID_LEN);
    store__put32(out + 60, mrd_crc32c(0, out, 60));
}

int
store__shard_hdr_check(const store_layout *l, int shard, const unsigned char *hdr)
{
    unsigned char want[64];

    store__shard_hdr_encode(l, shard, want);
    return memcmp(want, hdr, 64) == 0 ? 0 : MRD_ECORRUPT;
}

/* ---- the writer ------------------------------------------------------------ */

#define HASH_PIECE (64u << 10)

struct store_writer {
    store *s;
    store_layout l;
    unsigned flags;
    EVP_MD_CTX *md5, *sha; /* md5 is NULL with STORE_WRITE_NO_MD5 */
    unsigned char *buf;    /* (k+m) * block_size: the stripe being filled */
    unsigned char *spare;  /* the second stripe buffer, taken at the first hand-off */
    unsigned char *fly;    /* the stripe on an io thread, or NULL */
    store__jobset fly_set; /* the hand-off, or finish's parity job */
    uint32_t last_L;       /* block length of the last stripe, for the parity job */
    size_t fill;           /* data bytes in the current stripe */
    uint64_t stripes;      /* stripes written */
    uint64_t size;
    int nsh;
    int rot; /* placement hash mod D: the pool rotation */
    int fd[STORE_MAX_SHARDS];
    int bad[STORE_MAX_SHARDS];     /* shard dropped */
    int created[STORE_MAX_SHARDS]; /* file created by this writer: its directory needs an fsync */
    int sync_rc[STORE_MAX_SHARDS]; /* per-shard result of the parallel syncs */
    int fsync_failed;              /* some shard was dropped by a failed fdatasync */
    int no_room;                   /* shards skipped or dropped because their drive is full */
    int files_open;
    int err; /* sticky */
};

static int
good_shards(const store_writer *w)
{
    int n = 0;

    for (int i = 0; i < w->nsh; i++)
        n += !w->bad[i];
    return n;
}

/* Closes shard i's file and removes it. */
static void
remove_shard_files(store_writer *w, int i)
{
    char path[1200];

    if (w->fd[i] >= 0) {
        close(w->fd[i]);
        w->fd[i] = -1;
    }
    store__shard_path(w->s, w->l.drive[i], w->l.objid, i, 0, path, sizeof(path));
    unlink(path);
}

static void
drop_shard(store_writer *w, int i, int err, const char *what)
{
    if (w->bad[i])
        return;
    w->bad[i] = 1;
    w->no_room += err == -ENOSPC || err == -EDQUOT;
    remove_shard_files(w, i);
    store__drive_failed(w->s, w->l.drive[i], err, what);
}

/* Why a write with fewer than k good shards fails: -ENOSPC when room on
 * the full drives alone would have been enough. */
static int
quorum_error(const store_writer *w)
{
    if (w->fsync_failed)
        return MRD_EDURABLE;
    return good_shards(w) + w->no_room >= w->l.k ? -ENOSPC : MRD_EDEGRADED;
}

/* After drops: fail the writer when fewer than k shards remain. */
static int
check_quorum(store_writer *w, int cause)
{
    if (good_shards(w) >= w->l.k)
        return 0;
    if (!w->err)
        w->err = quorum_error(w);
    (void)cause;
    return w->err;
}

int
store_writer_open(store *s, const char *bucket, const char *key, const char *version_id,
                  unsigned flags, store_writer **out)
{
    store_writer *w;
    uint64_t h;
    int rc = -ENOMEM;

    if (!s || !bucket || !key || !out)
        return MRD_EINVAL;
    w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->s = s;
    w->flags = flags;
    w->l.kind = STORE_LAYOUT_EC;
    w->l.k = s->k;
    w->l.m = s->m;
    w->l.block_size = s->block_size;
    w->nsh = s->k + s->m;
    if (getrandom(w->l.objid, STORE_OBJID_LEN, 0) != STORE_OBJID_LEN) {
        rc = -errno;
        goto fail;
    }
    h = store__hash(bucket, key, version_id);
    w->rot = (int)(h % (uint64_t)s->n_drives);
    for (int i = 0; i < w->nsh; i++) {
        w->l.drive[i] = (unsigned char)((h + (uint64_t)i) % (uint64_t)s->n_drives);
        w->fd[i] = -1;
        w->bad[i] = !store__drive_writable(s, w->l.drive[i]);
        w->no_room += w->bad[i] && store__drive_online(s, w->l.drive[i]);
    }
    if (good_shards(w) < s->k) {
        rc = quorum_error(w);
        goto fail;
    }
    w->buf = store__buf_get(s);
    if (!w->buf)
        goto fail;
    if (!(flags & STORE_WRITE_NO_MD5)) {
        w->md5 = EVP_MD_CTX_new();
        if (!w->md5 || EVP_DigestInit_ex(w->md5, EVP_md5(), NULL) != 1)
            goto fail;
    }
    if (flags & STORE_WRITE_SHA256) {
        w->sha = EVP_MD_CTX_new();
        if (!w->sha || EVP_DigestInit_ex(w->sha, EVP_sha256(), NULL) != 1)
            goto fail;
    }
    *out = w;
    return 0;
fail:
    store__buf_put(s, w->buf);
    EVP_MD_CTX_free(w->md5);
    EVP_MD_CTX_free(w->sha);
    free(w);
    return rc;
}

/* Opens the shard files at the first stripe: the pool's pre-created files
 * when the rotation has an id, else new files (whose directories finish
 * must then fsync). A pooled file that is gone is created anew. */
static void
open_files(store_writer *w)
{
    char path[1200];
    int pooled = store__pool_take(w->s, w->rot, w->l.objid);

    for (int i = 0; i < w->nsh; i++) {
        store__shard_path(w->s, w->l.drive[i], w->l.objid, i, 0, path, sizeof(path));
        if (!w->bad[i] && !store__drive_writable(w->s, w->l.drive[i]))
            drop_shard(w, i, store__drive_online(w->s, w->l.drive[i]) ? -ENOSPC : -EIO, "open");
        if (w->bad[i]) {
            if (pooled)
                unlink(path); /* the pool's empty file on a drive we skip */
            continue;
        }
        w->fd[i] = pooled ? open(path, O_WRONLY | O_CLOEXEC) : -1;
        if (w->fd[i] < 0 && (!pooled || errno == ENOENT)) {
            w->fd[i] = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
            w->created[i] = 1;
        }
        if (w->fd[i] < 0)
            drop_shard(w, i, -errno, "create");
    }
    w->files_open = 1;
}

/* Shard i's block of the stripe being written, L bytes at blk, and its
 * CRC32C, with one pwritev (the shard header goes first in stripe 0). It
 * touches only shard i's state, so two threads may write different shards'
 * blocks of one stripe at once. */
static void
put_block(store_writer *w, int i, const unsigned char *blk, uint32_t L)
{
    unsigned char crc[4], hdr[64];
    struct iovec iov[3];
    char path[1200];
    uint64_t off = store__block_off(&w->l, w->stripes);
    uint32_t c;
    int n = 0, rc;

    if (w->bad[i])
        return;
    if (w->stripes == 0) {
        store__shard_hdr_encode(&w->l, i, hdr);
        iov[n++] = (struct iovec){hdr, 64};
        off = 0;
    }
    if (L > 0) {
        c = mrd_crc32c(0, blk, L);
        crc[0] = (unsigned char)c;
        crc[1] = (unsigned char)(c >> 8);
        crc[2] = (unsigned char)(c >> 16);
        crc[3] = (unsigned char)(c >> 24);
        iov[n++] = (struct iovec){(void *)blk, L};
        iov[n++] = (struct iovec){crc, 4};
    }
    store__shard_path(w->s, w->l.drive[i], w->l.objid, i, 0, path, sizeof(path));
    rc = store__pwritev_full(w->s, w->fd[i], iov, n, off, path);
    if (rc != 0)
        drop_shard(w, i, rc, "write");
}

/* Encodes the stripe in buf (k data blocks at stride L; partial stripes
 * pack them, parity stays at the end of the buffer) and writes the m
 * parity blocks. */
static void
put_parity(store_writer *w, unsigned char *buf, uint32_t L)
{
    int k = w->l.k, m = w->l.m;
    unsigned char *data[STORE_MAX_SHARDS], *par[STORE_MAX_SHARDS];

    for (int i = 0; i < k; i++)
        data[i] = buf + (size_t)i * L;
    for (int p = 0; p < m; p++)
        par[p] = buf + ((size_t)k + (size_t)p) * w->l.block_size;
    store__ec_encode(w->s, L, data, par);
    for (int p = 0; p < m; p++)
        put_block(w, k + p, par[p], L);
}

/* Opens the files if need be, zero-pads a partial stripe of dlen data bytes
 * in buf, and returns its per-shard block length L (0 when the writer has
 * failed: *rc then holds the error). */
static uint32_t
stripe_begin(store_writer *w, unsigned char *buf, size_t dlen, int *rc)
{
    int k = w->l.k;
    uint32_t bs = w->l.block_size;
    uint32_t L = dlen == (size_t)k * bs ? bs : (uint32_t)((dlen + (size_t)k - 1) / (size_t)k);

    if (!w->files_open)
        open_files(w);
    *rc = check_quorum(w, 0);
    if (*rc == 0 && (size_t)k * L > dlen)
        memset(buf + dlen, 0, (size_t)k * L - dlen);
    return L;
}

/* Encodes and writes the full stripe in buf (an io thread's hand-off). */
static int
flush_stripe(store_writer *w, unsigned char *buf, size_t dlen)
{
    int rc;
    uint32_t L = stripe_begin(w, buf, dlen, &rc);

    if (rc != 0)
        return rc;
    for (int i = 0; i < w->l.k; i++)
        put_block(w, i, buf + (size_t)i * L, L);
    put_parity(w, buf, L);
    if (L > 0)
        w->stripes++;
    return check_quorum(w, 0);
}

/* finish's half of the last stripe: an io thread encodes and writes the
 * parity while the caller writes the data blocks. */
static void
parity_job(void *arg, int i)
{
    store_writer *w = arg;

    (void)i;
    put_parity(w, w->buf, w->last_L);
}

/* Writes the last stripe (w->fill data bytes, or only the headers of an
 * empty object) in finish. Nothing is left to hash, so the caller writes
 * the k data blocks while an io thread encodes and writes the m parity
 * blocks; each side touches only its own shards, and the quorum is checked
 * once both are done. */
static int
flush_last(store_writer *w)
{
    int rc;
    uint32_t L = stripe_begin(w, w->buf, w->fill, &rc);

    if (rc != 0)
        return rc;
    w->last_L = L;
    store__async(w->s, &w->fly_set, parity_job, w);
    for (int i = 0; i < w->l.k; i++)
        put_block(w, i, w->buf + (size_t)i * L, L);
    store__await(w->s, &w->fly_set);
    if (L > 0)
        w->stripes++;
    return check_quorum(w, 0);
}

/* The io thread's half of a hand-off: the full stripe in w->fly. */
static void
flush_job(void *arg, int i)
{
    store_writer *w = arg;

    (void)i;
    flush_stripe(w, w->fly, (size_t)w->l.k * w->l.block_size);
}

/* Waits for the stripe in flight, if any; returns the sticky error. */
static int
fly_wait(store_writer *w)
{
    if (w->fly) {
        store__await(w->s, &w->fly_set);
        w->spare = w->fly;
        w->fly = NULL;
    }
    return w->err;
}

/* Hands the full stripe in w->buf to an io thread and goes on filling the
 * other buffer. Without a second buffer, the stripe is written here. */
static int
hand_off(store_writer *w)
{
    unsigned char *full = w->buf;
    int rc;

    if ((rc = fly_wait(w)) != 0)
        return rc;
    if (!w->spare)
        w->spare = store__buf_get(w->s);
    w->fill = 0;
    if (!w->spare)
        return flush_stripe(w, full, (size_t)w->l.k * w->l.block_size);
    w->buf = w->spare;
    w->spare = NULL;
    w->fly = full;
    store__async(w->s, &w->fly_set, flush_job, w);
    return 0;
}

int
store_writer_write(store_writer *w, const void *data, size_t len)
{
    const unsigned char *p = data;
    size_t sd;

    if (!w || (!data && len))
        return MRD_EINVAL;
    if (!w->fly && w->err)
        return w->err;
    sd = (size_t)w->l.k * w->l.block_size;
    while (len > 0) {
        size_t n;
        if (w->fill == sd) {
            int rc = hand_off(w);
            if (rc != 0)
                return rc;
        }
        n = sd - w->fill;
        if (n > len)
            n = len;
        if (n > HASH_PIECE)
            n = HASH_PIECE;
        if (w->md5)
            EVP_DigestUpdate(w->md5, p, n);
        if (w->sha)
            EVP_DigestUpdate(w->sha, p, n);
        memcpy(w->buf + w->fill, p, n);
        w->fill += n;
        w->size += n;
        p += n;
        len -= n;
    }
    return 0;
}

static void
writer_free(store_writer *w)
{
    fly_wait(w);
    store__buf_put(w->s, w->spare);
    for (int i = 0; i < w->nsh; i++)
        if (w->fd[i] >= 0)
            close(w->fd[i]);
    store__buf_put(w->s, w->buf);
    EVP_MD_CTX_free(w->md5);
    EVP_MD_CTX_free(w->sha);
    free(w);
}

void
store_writer_abort(store_writer *w)
{
    if (!w)
        return;
    fly_wait(w);
    for (int i = 0; i < w->nsh && w->files_open; i++) {
        remove_shard_files(w, i);
    }
    writer_free(w);
}

void
store_put_result_clear(store_put_result *r)
{
    if (!r)
        return;
    free(r->layout);
    memset(r, 0, sizeof(*r));
}

static void
hexify(const unsigned char *in, size_t n, char *out)
{
    static const char hx[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hx[in[i] >> 4];
        out[2 * i + 1] = hx[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* One shard's fdatasync, on an io thread (store__parallel item i). */
static void
sync_one(void *arg, int i)
{
    store_writer *w = arg;
    char path[1200];

    if (w->bad[i])
        return;
    store__shard_path(w->s, w->l.drive[i], w->l.objid, i, 0, path, sizeof(path));
    w->sync_rc[i] = store__fdatasync(w->s, w->fd[i], path);
}

/* One created shard's directory fsync, on an io thread. */
static void
sync_dir_one(void *arg, int i)
{
    store_writer *w = arg;
    char dir[1200];

    if (w->bad[i] || !w->created[i])
        return;
    store__shard_dir(w->s, w->l.drive[i], w->l.objid, 0, dir, sizeof(dir));
    w->sync_rc[i] = store__fsync_dir(w->s, dir);
}

/* Runs fn over every shard in parallel and drops the shards it failed. */
static void
sync_all(store_writer *w, store__par_fn fn, const char *what)
{
    memset(w->sync_rc, 0, sizeof(w->sync_rc));
    store__parallel(w->s, w->nsh, fn, w);
    for (int i = 0; i < w->nsh; i++) {
        if (!w->bad[i] && w->sync_rc[i] != 0) {
            w->fsync_failed = 1;
            drop_shard(w, i, w->sync_rc[i], what);
        }
    }
}

/* Makes the stripes durable: every shard's bytes (fdatasync), and the names
 * of the files this writer created (directory fsync). */
static int
commit_shards(store_writer *w)
{
    int rc, need_dir = 0;

    if (!w->files_open)
        open_files(w);
    if (w->fill > 0 || w->stripes == 0) {
        if ((rc = flush_last(w)) != 0)
            return rc;
        w->fill = 0;
    }
    sync_all(w, sync_one, "fdatasync");
    if (check_quorum(w, 0) != 0)
        return w->err;
    for (int i = 0; i < w->nsh; i++)
        need_dir |= !w->bad[i] && w->created[i];
    if (need_dir)
        sync_all(w, sync_dir_one, "fsync_dir");
    return check_quorum(w, 0);
}

int
store_writer_finish(store_writer *w, store_put_result *out)
{
    store *s;
    store_put_result r;
    unsigned int mdlen = 0;
    int rc;

    if (!w || !out) {
        store_writer_abort(w);
        return MRD_EINVAL;
    }
    s = w->s;
    memset(&r, 0, sizeof(r));
    if ((rc = fly_wait(w)) != 0)
        goto fail;
    if ((w->md5 && EVP_DigestFinal_ex(w->md5, r.md5, &mdlen) != 1) ||
        (w->sha && EVP_DigestFinal_ex(w->sha, r.sha256, &mdlen) != 1)) {
        rc = MRD_EINVAL;
        goto fail;
    }
    if (w->md5)
        hexify(r.md5, 16, r.etag);
    r.size = w->size;
    w->l.size = w->size;

    if (w->stripes == 0 && !w->files_open && w->size <= s->inline_max &&
        !(s->opts.flags & STORE_OPT_NO_INLINE)) {
        store_layout il;
        memset(&il, 0, sizeof(il));
        il.kind = STORE_LAYOUT_INLINE;
        il.size = w->size;
        if ((rc = layout_encode(&il, w->buf, &r.layout, &r.layout_len)) != 0)
            goto fail;
    } else {
        if ((rc = commit_shards(w)) != 0)
            goto fail;
        if ((rc = layout_encode(&w->l, NULL, &r.layout, &r.layout_len)) != 0)
            goto fail;
        if (good_shards(w) < w->nsh) {
            char hex[33];
            r.degraded = 1;
            atomic_fetch_add(&s->degraded_writes, 1);
            store__objid_hex(w->l.objid, hex);
            MRD_WARN("store.degraded_write", "object=%s shards=%d of=%d", hex, good_shards(w),
                     w->nsh);
            if ((rc = store__healq_add(s, r.layout, r.layout_len)) != 0)
                goto fail;
        }
    }
    atomic_fetch_add(&s->objects_written, 1);
    atomic_fetch_add(&s->bytes_written, w->size);
    writer_free(w);
    *out = r;
    return 0;
fail:
    free(r.layout);
    store_writer_abort(w);
    return rc;
}
