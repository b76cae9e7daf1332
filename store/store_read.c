/*
 * store_read.c - ranged reads with verification and reconstruction, heal,
 * and deletion of object data.
 *
 * Read. A request [off, off+len) is cut at stripe boundaries. Within a stripe
 * only the data shards whose blocks overlap the request are read; parity is
 * not touched while the data shards are healthy. Because data block i of a
 * full stripe is exactly body bytes [i*bs, (i+1)*bs) of that stripe, a block
 * that the request covers whole is read by one preadv straight into the
 * caller's buffer (plus its 4-byte CRC into a side buffer) and verified there:
 * one copy from the page cache, one CRC pass, no scratch. Blocks covered only
 * in part (the ends of a range, the padded last block) go through a per-reader
 * scratch block, because the CRC covers the whole block; the cost of that is
 * read amplification of at most one block at each end of a range.
 *
 * Readers and deletes. store_reader_open opens every shard file at once
 * and keeps the descriptors until store_reader_close. The index drops an
 * overwritten (or deleted) version and the engine then frees its data with
 * store_object_delete_data, which unlinks the shard files at once - possibly
 * while a GET that looked that version up is still streaming it. Unlinking
 * only removes the names: the open descriptors keep the inodes, so the reader
 * finishes the version it opened, byte for byte, and the space is returned
 * when it closes. This needs no registry of readers, no deferred-delete
 * queue and no coordination with the engine; the price is k+m opens per
 * reader instead of k (parity is rarely read, but must still be there if a
 * data shard goes bad after its version was freed). The one window left is
 * between the caller's index lookup and store_reader_open: there the files
 * may already be gone, and the open fails (MRD_EDEGRADED: fewer than k
 * shards) before anything was sent; the gateway then looks the key up again
 * and serves the newer version instead of a truncated old one.
 *
 * Trouble. A shard file that is missing, has a bad header, returns an I/O
 * error, is short, or whose block CRC does not match, is "lost" for the rest
 * of this reader. Each loss is logged (event store.shard_bad with object,
 * shard, drive, stripe and reason), counted on its drive and in the store,
 * and the object is put in the persistent heal queue once per reader. The
 * stripe is then rebuilt: the reader reads any k healthy blocks of the stripe
 * (data first, then parity, verifying each CRC and losing more shards if they
 * fail too), asks store__ec_rebuild for the rest and copies the wanted bytes
 * out. With more than m shards lost the read fails with MRD_EDEGRADED, which
 * the gateway turns into a read from a peer.
 *
 * Heal. Pass 1 reads every block of every shard and notes which shards are
 * missing or carry any bad block. Pass 2 rewrites each such shard in full:
 * for every stripe it reads k good blocks, rebuilds, and writes the bad
 * shards' blocks into tmp/ files, which are then fdatasync'ed, renamed over
 * obj/ and their directories fsynced, exactly like a write. A shard whose
 * drive is offline cannot be rewritten; heal reports an error for it and the
 * object stays queued. Whole-shard rewrite is simple and fine for shards of
 * a few hundred MiB; per-block patching would save I/O for huge objects.
 */
#include "store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint32_t
le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Reads block `stripe` of an open shard file into dst (L bytes) and checks
 * its CRC. Returns 0, MRD_ECORRUPT (mismatch or short) or -errno. */
static int
read_block(int fd, const store_layout *l, uint64_t stripe, uint32_t L, unsigned char *dst)
{
    unsigned char crc[4];
    struct iovec iov[2] = {{dst, L}, {crc, 4}};
    uint64_t off = store__block_off(l, stripe);
    size_t want = (size_t)L + 4, got = 0;

    while (got < want) {
        ssize_t n;
        if (got < L) {
            struct iovec v[2] = {{dst + got, L - got}, {crc, 4}};
            n = preadv(fd, v, 2, (off_t)(off + got));
        } else {
            n = pread(fd, crc + (got - L), want - got, (off_t)(off + got));
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return MRD_ECORRUPT; /* truncated shard */
        got += (size_t)n;
    }
    (void)iov;
    return mrd_crc32c(0, dst, L) == le32(crc) ? 0 : MRD_ECORRUPT;
}

/* Opens a finished shard file and checks its header. */
static int
open_shard(store *s, const store_layout *l, int i, int *fdout)
{
    char path[1200];
    unsigned char hdr[64];
    int fd;
    ssize_t n;

    if (!store__drive_online(s, l->drive[i]))
        return MRD_EDEGRADED;
    store__shard_path(s, l->drive[i], l->objid, i, 0, path, sizeof(path));
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    n = pread(fd, hdr, sizeof(hdr), 0);
    if (n != (ssize_t)sizeof(hdr) || store__shard_hdr_check(l, i, hdr) != 0) {
        close(fd);
        return n < 0 ? -errno : MRD_ECORRUPT;
    }
    *fdout = fd;
    return 0;
}

static void
note_bad(store *s, const store_layout *l, int i, uint64_t stripe, int err)
{
    char hex[33];
    store_drive *d = &s->drives[l->drive[i]];

    store__objid_hex(l->objid, hex);
    if (err == MRD_ECORRUPT) {
        atomic_fetch_add(&d->checksum_errors, 1);
        atomic_fetch_add(&s->checksum_errors, 1);
    } else if (err != MRD_EDEGRADED) {
        atomic_fetch_add(&d->read_errors, 1);
    }
    MRD_WARN("store.shard_bad", "object=%s shard=%d drive=%d stripe=%llu reason=\"%s\"", hex, i,
             l->drive[i], (unsigned long long)stripe,
             err == MRD_EDEGRADED ? "drive offline" : mrd_strerror(err));
}

/* ---- reader ------------------------------------------------------------- */

struct store_reader {
    store *s;
    store_layout l;
    void *blob;
    size_t blob_len;
    int nsh;
    int fd[STORE_MAX_SHARDS];
    int open_err[STORE_MAX_SHARDS]; /* why shard i did not open at store_reader_open */
    int lost[STORE_MAX_SHARDS];
    int queued;
    unsigned char *scratch; /* nsh blocks, lazily */
    /* PARTS objects (store_parts.c): one part open at a time */
    store__part_ent *pe;
    store_reader *sub;
    uint32_t sub_i;
    int pinned;
    unsigned char pin_id[STORE_OBJID_LEN];
};

/*
 * Opens every shard of r now, so that the reader can finish the version
 * whatever happens to its files afterwards: an open descriptor keeps an
 * unlinked file readable, so an overwrite or delete that frees this version
 * (store_object_delete_data) while a GET streams it cannot cut the GET short.
 * A shard that does not open is not reported yet: it is lost (logged,
 * counted, queued for heal) when a read first needs it, as before. Fewer
 * than k shards open fails the open with MRD_EDEGRADED, as a read of such
 * an object always did; the caller tells "freed after I looked it up" from
 * "lost" by looking the key up again.
 */
static int
open_all(store_reader *r)
{
    int nopen = 0;

    for (int i = 0; i < r->nsh; i++) {
        int rc = open_shard(r->s, &r->l, i, &r->fd[i]);
        if (rc == 0) {
            nopen++;
        } else {
            r->fd[i] = -1;
            r->open_err[i] = rc;
        }
    }
    return r->nsh == 0 || nopen >= r->l.k ? 0 : MRD_EDEGRADED;
}

/*
 * A PARTS object: index the parts, pin the object (its data cannot be freed
 * until close), then open the first striped part. That open is what tells a
 * reader that arrived after the data was freed (the files are gone) from
 * one that pinned it in time: parts are freed first to last, and a free that
 * starts after the pin is deferred.
 */
static int
open_parts(store_reader *r)
{
    int rc = store__parts_index(&r->l, &r->pe);

    if (rc != 0)
        return rc;
    if (store__parts_pin_id(&r->l, r->pin_id) != 0)
        return 0; /* all inline */
    if ((rc = store__pin_take(r->s, r->pin_id)) != 0)
        return rc;
    r->pinned = 1;
    for (uint32_t i = 0; i < r->l.n_parts; i++) {
        if (r->pe[i].blob[5] != STORE_LAYOUT_EC)
            continue;
        rc = store_reader_open(r->s, r->pe[i].blob, r->pe[i].len, &r->sub);
        if (rc == 0)
            r->sub_i = i;
        break;
    }
    return rc;
}

int
store_reader_open(store *s, const void *layout, size_t layout_len, store_reader **out)
{
    store_reader *r;
    int rc;

    if (!s || !layout || !out)
        return MRD_EINVAL;
    r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->blob = malloc(layout_len);
    if (!r->blob) {
        free(r);
        return -ENOMEM;
    }
    memcpy(r->blob, layout, layout_len);
    r->blob_len = layout_len;
    rc = store__layout_parse(r->blob, layout_len, &r->l);
    if (rc == 0 && r->l.kind == STORE_LAYOUT_EC) {
        if (r->l.k != s->k || r->l.m != s->m)
            rc = MRD_ECORRUPT;
        for (int i = 0; rc == 0 && i < r->l.k + r->l.m; i++)
            if (r->l.drive[i] >= s->n_drives)
                rc = MRD_ECORRUPT;
    }
    if (rc != 0) {
        free(r->blob);
        free(r);
        return rc;
    }
    r->s = s;
    r->nsh = r->l.kind == STORE_LAYOUT_EC ? r->l.k + r->l.m : 0;
    for (int i = 0; i < STORE_MAX_SHARDS; i++)
        r->fd[i] = -1;
    rc = r->l.kind == STORE_LAYOUT_PARTS ? open_parts(r) : open_all(r);
    if (rc != 0) {
        store_reader_close(r);
        return rc;
    }
    *out = r;
    return 0;
}

uint64_t
store_reader_size(const store_reader *r)
{
    return r ? r->l.size : 0;
}

void
store_reader_close(store_reader *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->nsh; i++)
        if (r->fd[i] >= 0)
            close(r->fd[i]);
    store_reader_close(r->sub);
    if (r->pinned)
        store__pin_drop(r->s, r->pin_id);
    free(r->pe);
    if (r->l.block_size == r->s->block_size)
        store__buf_put(r->s, r->scratch);
    else
        free(r->scratch);
    free(r->blob);
    free(r);
}

static void
lose(store_reader *r, int i, uint64_t stripe, int err)
{
    if (r->lost[i])
        return;
    r->lost[i] = 1;
    if (r->fd[i] >= 0) {
        close(r->fd[i]);
        r->fd[i] = -1;
    }
    note_bad(r->s, &r->l, i, stripe, err);
    /* An offline drive is not queued object by object: every object on it
     * needs heal, which is what store_heal_start(all) after a rescan does. */
    if (!r->queued && err != MRD_EDEGRADED) {
        r->queued = 1;
        /* Best effort: a failed enqueue is logged by the commit path and the
         * periodic heal-all still finds the object. */
        (void)store__healq_add(r->s, r->blob, r->blob_len);
    }
}

static int
shard_fd(store_reader *r, int i, uint64_t stripe)
{
    if (r->lost[i])
        return -1;
    if (r->fd[i] >= 0)
        return r->fd[i];
    /* It did not open at store_reader_open; report that now that it is needed. */
    lose(r, i, stripe, r->open_err[i] ? r->open_err[i] : MRD_EDEGRADED);
    return -1;
}

static int
ensure_scratch(store_reader *r)
{
    if (!r->scratch)
        r->scratch = r->l.block_size == r->s->block_size
                         ? store__buf_get(r->s)
                         : aligned_alloc(64, (size_t)(unsigned)r->nsh * r->l.block_size);
    return r->scratch ? 0 : -ENOMEM;
}

/* Reads block `stripe` of shard i into dst, losing the shard on failure. */
static int
get_block(store_reader *r, int i, uint64_t stripe, uint32_t L, unsigned char *dst)
{
    int fd = shard_fd(r, i, stripe), rc;

    if (fd < 0)
        return MRD_EDEGRADED;
    rc = read_block(fd, &r->l, stripe, L, dst);
    if (rc != 0) {
        lose(r, i, stripe, rc);
        return rc;
    }
    return 0;
}

/* Rebuilds stripe j into the scratch blocks. */
static int
rebuild_stripe(store_reader *r, uint64_t j, uint32_t L)
{
    int present[STORE_MAX_SHARDS] = {0}, npresent = 0;
    unsigned char *blocks[STORE_MAX_SHARDS];
    int rc;

    if ((rc = ensure_scratch(r)) != 0)
        return rc;
    for (int i = 0; i < r->nsh; i++)
        blocks[i] = r->scratch + (size_t)i * r->l.block_size;
    for (int i = 0; i < r->nsh && npresent < r->l.k; i++) {
        if (get_block(r, i, j, L, blocks[i]) == 0) {
            present[i] = 1;
            npresent++;
        }
    }
    if (npresent < r->l.k) {
        char hex[33];
        store__objid_hex(r->l.objid, hex);
        MRD_WARN("store.read_failed", "object=%s stripe=%llu good_shards=%d k=%d", hex,
                 (unsigned long long)j, npresent, r->l.k);
        return MRD_EDEGRADED;
    }
    rc = store__ec_rebuild(r->s, r->l.k, r->l.m, L, blocks, present);
    if (rc == 0)
        atomic_fetch_add(&r->s->reconstructed_reads, 1);
    return rc;
}

static int
read_inline(store_reader *r, uint64_t off, void *buf, size_t len, size_t *nread)
{
    size_t n = 0;

    if (off < r->l.size) {
        n = (size_t)(r->l.size - off) < len ? (size_t)(r->l.size - off) : len;
        memcpy(buf, r->l.inline_data + off, n);
    }
    *nread = n;
    return 0;
}

/* The part covering byte off (off < size): binary search on start offsets. */
static uint32_t
part_at(const store_reader *r, uint64_t off)
{
    uint32_t lo = 0, hi = r->l.n_parts - 1;

    while (lo < hi) {
        uint32_t mid = lo + (hi - lo + 1) / 2;
        if (r->pe[mid].off <= off)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* Reads a PARTS object: each part the range covers in turn, through one
 * reader on that part, opened when the read gets to it. */
static int
read_parts(store_reader *r, uint64_t off, unsigned char *out, size_t len, size_t *nread)
{
    uint64_t end = r->l.size - off < len ? r->l.size : off + len, pos = off;
    int rc = 0;

    while (pos < end && rc == 0) {
        uint32_t i = part_at(r, pos);
        const store__part_ent *pe = &r->pe[i];
        uint64_t pend = pe->off + pe->size < end ? pe->off + pe->size : end;
        size_t n = 0;

        if (!r->sub || r->sub_i != i) {
            store_reader_close(r->sub);
            r->sub = NULL;
            if ((rc = store_reader_open(r->s, pe->blob, pe->len, &r->sub)) != 0)
                break;
            r->sub_i = i;
        }
        rc = store_reader_read(r->sub, pos - pe->off, out + (pos - off), (size_t)(pend - pos), &n);
        if (rc == 0 && n != pend - pos)
            rc = MRD_ECORRUPT; /* a part shorter than its entry */
        pos += n;
    }
    if (rc == 0)
        *nread = (size_t)(pos - off);
    return rc;
}

int
store_reader_read(store_reader *r, uint64_t off, void *buf, size_t len, size_t *nread)
{
    unsigned char *out = buf;
    uint64_t end, pos, sd;
    int rc;

    if (!r || (!buf && len) || !nread)
        return MRD_EINVAL;
    if (r->l.kind == STORE_LAYOUT_INLINE)
        return read_inline(r, off, buf, len, nread);
    if (r->l.kind == STORE_LAYOUT_PARTS) {
        if (off >= r->l.size || len == 0) {
            *nread = 0;
            return 0;
        }
        return read_parts(r, off, out, len, nread);
    }
    if (off >= r->l.size || len == 0) {
        *nread = 0;
        return 0;
    }
    end = r->l.size - off < len ? r->l.size : off + len;
    sd = (uint64_t)r->l.k * r->l.block_size;
    for (pos = off; pos < end;) {
        uint64_t j = pos / sd, base = j * sd;
        uint32_t L = store__block_len(&r->l, j);
        uint64_t seg_end = base + sd < end ? base + sd : end;
        int first = (int)((pos - base) / L), last = (int)((seg_end - 1 - base) / L);
        int ok = 1;

        for (int i = first; i <= last && ok; i++) {
            uint64_t bs0 = base + (uint64_t)i * L;
            uint64_t ws = pos > bs0 ? pos : bs0;
            uint64_t we = seg_end < bs0 + L ? seg_end : bs0 + L;

            if (r->lost[i]) {
                ok = 0;
            } else if (ws == bs0 && we == bs0 + L) {
                ok = get_block(r, i, j, L, out + (bs0 - off)) == 0;
            } else {
                if ((rc = ensure_scratch(r)) != 0)
                    return rc;
                unsigned char *tmp = r->scratch + (size_t)i * r->l.block_size;
                ok = get_block(r, i, j, L, tmp) == 0;
                if (ok)
                    memcpy(out + (ws - off), tmp + (ws - bs0), (size_t)(we - ws));
            }
        }
        if (!ok) {
            if ((rc = rebuild_stripe(r, j, L)) != 0)
                return rc;
            for (int i = first; i <= last; i++) {
                uint64_t bs0 = base + (uint64_t)i * L;
                uint64_t ws = pos > bs0 ? pos : bs0;
                uint64_t we = seg_end < bs0 + L ? seg_end : bs0 + L;
                memcpy(out + (ws - off), r->scratch + (size_t)i * r->l.block_size + (ws - bs0),
                       (size_t)(we - ws));
            }
        }
        pos = seg_end;
    }
    *nread = (size_t)(end - off);
    return 0;
}

/* ---- heal ----------------------------------------------------------------- */

int
store_heal_object(store *s, const void *layout, size_t layout_len, int *rebuilt)
{
    store_layout l;
    int nsh, fd[STORE_MAX_SHARDS], bad[STORE_MAX_SHARDS] = {0}, wfd[STORE_MAX_SHARDS];
    int nbad = 0, nfixed = 0, rc;
    uint64_t nst;
    unsigned char *scratch = NULL, *blocks[STORE_MAX_SHARDS];
    char path[1200], to[1200], dir[1200], hex[33];

    if (!s || !layout)
        return MRD_EINVAL;
    if ((rc = store__layout_parse(layout, layout_len, &l)) != 0)
        return rc;
    if (l.kind == STORE_LAYOUT_INLINE) {
        if (rebuilt)
            *rebuilt = 0;
        return 0;
    }
    if (l.kind == STORE_LAYOUT_PARTS)
        return store__parts_heal(s, &l, rebuilt);
    if (l.k != s->k || l.m != s->m)
        return MRD_ECORRUPT;
    nsh = l.k + l.m;
    for (int i = 0; i < nsh; i++) {
        fd[i] = wfd[i] = -1;
        if (l.drive[i] >= s->n_drives)
            return MRD_ECORRUPT;
    }
    nst = store__n_stripes(&l);
    scratch = aligned_alloc(64, (size_t)(unsigned)nsh * l.block_size);
    if (!scratch)
        return -ENOMEM;
    for (int i = 0; i < nsh; i++)
        blocks[i] = scratch + (size_t)i * l.block_size;
    store__objid_hex(l.objid, hex);

    /* Pass 1: find every shard with a problem. */
    for (int i = 0; i < nsh; i++) {
        rc = open_shard(s, &l, i, &fd[i]);
        for (uint64_t j = 0; rc == 0 && j < nst; j++)
            rc = read_block(fd[i], &l, j, store__block_len(&l, j), blocks[i]);
        if (rc != 0) {
            bad[i] = 1;
            nbad++;
            note_bad(s, &l, i, 0, rc);
            if (fd[i] >= 0)
                close(fd[i]);
            fd[i] = -1;
        }
    }
    rc = 0;
    if (nbad == 0)
        goto out;
    if (nsh - nbad < l.k) {
        MRD_WARN("store.heal_failed", "object=%s lost_shards=%d m=%d", hex, nbad, l.m);
        rc = MRD_EDEGRADED;
        goto out;
    }

    /* Pass 2: rewrite the bad shards whose drives are online. */
    for (int i = 0; i < nsh; i++) {
        unsigned char hdr[64];
        struct iovec iov = {hdr, 64};
        if (!bad[i] || !store__drive_writable(s, l.drive[i]))
            continue;
        store__shard_path(s, l.drive[i], l.objid, i, 1, path, sizeof(path));
        wfd[i] = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (wfd[i] < 0) {
            store__drive_failed(s, l.drive[i], -errno, "heal_create");
            continue;
        }
        store__shard_hdr_encode(&l, i, hdr);
        if ((rc = store__pwritev_full(s, wfd[i], &iov, 1, 0, path)) != 0)
            goto out;
    }
    for (uint64_t j = 0; j < nst; j++) {
        uint32_t L = store__block_len(&l, j);
        int present[STORE_MAX_SHARDS] = {0}, np = 0;
        for (int i = 0; i < nsh && np < l.k; i++) {
            if (bad[i])
                continue;
            if ((rc = read_block(fd[i], &l, j, L, blocks[i])) != 0) {
                note_bad(s, &l, i, j, rc);
                goto out; /* changed under us: give up, stay queued */
            }
            present[i] = 1;
            np++;
        }
        if ((rc = store__ec_rebuild(s, l.k, l.m, L, blocks, present)) != 0)
            goto out;
        for (int i = 0; i < nsh; i++) {
            unsigned char crc[4];
            uint32_t c;
            if (wfd[i] < 0)
                continue;
            c = mrd_crc32c(0, blocks[i], L);
            for (int b = 0; b < 4; b++)
                crc[b] = (unsigned char)(c >> (8 * b));
            struct iovec iov[2] = {{blocks[i], L}, {crc, 4}};
            store__shard_path(s, l.drive[i], l.objid, i, 1, path, sizeof(path));
            if ((rc = store__pwritev_full(s, wfd[i], iov, 2, store__block_off(&l, j), path)) != 0)
                goto out;
        }
    }
    for (int i = 0; i < nsh; i++) {
        if (wfd[i] < 0)
            continue;
        store__shard_path(s, l.drive[i], l.objid, i, 1, path, sizeof(path));
        store__shard_path(s, l.drive[i], l.objid, i, 0, to, sizeof(to));
        store__shard_dir(s, l.drive[i], l.objid, 0, dir, sizeof(dir));
        if ((rc = store__fdatasync(s, wfd[i], path)) != 0)
            goto out;
        if (rename(path, to) != 0) {
            rc = -errno;
            goto out;
        }
        if ((rc = store__fsync_dir(s, dir)) != 0)
            goto out;
        close(wfd[i]);
        wfd[i] = -1;
        nfixed++;
    }
    MRD_INFO("store.healed", "object=%s rebuilt=%d bad=%d", hex, nfixed, nbad);
    if (nfixed < nbad)
        rc = MRD_EDEGRADED; /* some shard's drive is offline */
out:
    for (int i = 0; i < nsh; i++) {
        if (fd[i] >= 0)
            close(fd[i]);
        if (wfd[i] >= 0) {
            close(wfd[i]);
            store__shard_path(s, l.drive[i], l.objid, i, 1, path, sizeof(path));
            unlink(path);
        }
    }
    free(scratch);
    atomic_fetch_add(&s->heal_rebuilt, (uint64_t)nfixed);
    if (rc == 0 && rebuilt)
        *rebuilt = nfixed;
    return rc;
}

int
store_object_delete_data(store *s, const void *layout, size_t layout_len)
{
    store_layout l;
    char path[1200];
    int rc;

    if (!s || !layout)
        return MRD_EINVAL;
    if ((rc = store__layout_parse(layout, layout_len, &l)) != 0)
        return rc;
    if (l.kind == STORE_LAYOUT_INLINE)
        return 0;
    if (l.kind == STORE_LAYOUT_PARTS)
        return store__parts_delete(s, &l, layout, layout_len);
    for (int i = 0; i < l.k + l.m; i++)
        if (l.drive[i] >= s->n_drives)
            return MRD_ECORRUPT;
    /* The heal queue's entry goes first. Shards left by a crash (or a
     * failed commit) between the two steps are orphans, which the sweep
     * removes; the other order left an entry whose shards were gone, and
     * every heal pass then reported the object lost, for ever. */
    if ((rc = store__healq_del(s, l.objid)) != 0)
        return rc;
    for (int i = 0; i < l.k + l.m; i++) {
        store__shard_path(s, l.drive[i], l.objid, i, 0, path, sizeof(path));
        if (unlink(path) != 0 && errno != ENOENT)
            MRD_WARN("store.delete_failed", "drive=%d err=\"%s\"", l.drive[i],
                     mrd_strerror(-errno));
    }
    return 0;
}
