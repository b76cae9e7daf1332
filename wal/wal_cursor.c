/*
 * wal_cursor.c - a file-backed wal_cursor_store.
 *
 * Why the WAL does not store cursors itself: the architecture puts LMDB in
 * store/ and keeps wal/ free of it, and the engine already commits the
 * index's applied LSN in LMDB; peer cursors belong next to it, written by
 * store_meta_put. So the WAL keeps cursors in memory and calls an injected
 * save hook before trusting a new value. This file is the hook for
 * everything that has no index: unit tests, the crash test, tools.
 *
 * The file is small text, one line per peer, then a checksum line:
 *   peer=<id> acked=<lsn> resync=<0|1>[ skip=<lsn>]
 *   crc=<crc32c of the lines above, 8 hex digits>
 * " skip=" (the cursor's skip_lo) is written only when nonzero: a file
 * without it, from an older build, reads as skip_lo 0, and an older build
 * reads this one's lines (its sscanf stops before the field) and loses only
 * the range, which it never knew of anyway.
 * Each save rewrites it whole: write <path>.tmp, fsync, rename over <path>,
 * fsync the directory. rename is atomic, so a crash leaves either the old or
 * the new file; the checksum catches bit rot, not torn writes. Saves are
 * serialised by a mutex; with a handful of peers a rewrite is a few hundred
 * bytes, and the cost is the two fsyncs.
 */
#include "wal_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct cursor_ent {
    uint32_t peer;
    uint64_t acked;
    int resync;
    uint64_t skip_lo;
} cursor_ent;

struct wal_cursor_file {
    char *path;
    pthread_mutex_t mu;
    cursor_ent ents[WAL_MAX_PEERS];
    int n;
};

static int
parse_file(wal_cursor_file *f, const char *text, size_t len)
{
    const char *p = text, *end = text + len, *crcline = NULL;
    unsigned long crc;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            return MRD_ECORRUPT;
        if (strncmp(p, "crc=", 4) == 0) {
            crcline = p;
            break;
        }
        unsigned peer;
        unsigned long long acked, skip = 0;
        int resync, k;
        k = sscanf(p, "peer=%u acked=%llu resync=%d skip=%llu", &peer, &acked, &resync, &skip);
        if (k < 3 || f->n == WAL_MAX_PEERS)
            return MRD_ECORRUPT;
        f->ents[f->n++] = (cursor_ent){peer, acked, resync != 0, k == 4 ? skip : 0};
        p = nl + 1;
    }
    if (!crcline || sscanf(crcline, "crc=%lx", &crc) != 1 ||
        (uint32_t)crc != mrd_crc32c(0, text, (size_t)(crcline - text)))
        return MRD_ECORRUPT;
    return 0;
}

int
wal_cursor_file_open(const char *path, wal_cursor_file **out)
{
    wal_cursor_file *f;
    FILE *fp;
    int rc = 0;

    if (!path || !out)
        return MRD_EINVAL;
    if (!(f = calloc(1, sizeof(*f))) || !(f->path = strdup(path))) {
        free(f);
        return -ENOMEM;
    }
    pthread_mutex_init(&f->mu, NULL);
    fp = fopen(path, "rb");
    if (fp) {
        char buf[8192];
        size_t n = fread(buf, 1, sizeof(buf), fp);
        if (ferror(fp) || n == sizeof(buf))
            rc = MRD_ECORRUPT;
        fclose(fp);
        if (rc == 0)
            rc = parse_file(f, buf, n);
    } else if (errno != ENOENT) {
        rc = -errno;
    }
    if (rc != 0) {
        wal_cursor_file_close(f);
        return rc;
    }
    *out = f;
    return 0;
}

void
wal_cursor_file_close(wal_cursor_file *f)
{
    if (!f)
        return;
    pthread_mutex_destroy(&f->mu);
    free(f->path);
    free(f);
}

static int
file_load(void *ud, uint32_t peer, uint64_t *acked, int *resync, uint64_t *skip_lo)
{
    wal_cursor_file *f = ud;
    int rc = MRD_ENOTFOUND;

    pthread_mutex_lock(&f->mu);
    for (int i = 0; i < f->n; i++) {
        if (f->ents[i].peer == peer) {
            *acked = f->ents[i].acked;
            *resync = f->ents[i].resync;
            *skip_lo = f->ents[i].skip_lo;
            rc = 0;
            break;
        }
    }
    pthread_mutex_unlock(&f->mu);
    return rc;
}

static int
write_file(const wal_cursor_file *f, const cursor_ent *ents, int n)
{
    char tmp[4096];
    mrd_buf b = {0};
    int fd, rc = 0;

    for (int i = 0; i < n; i++) {
        rc |= mrd_buf_appendf(&b, "peer=%" PRIu32 " acked=%" PRIu64 " resync=%d", ents[i].peer,
                              ents[i].acked, ents[i].resync);
        if (ents[i].skip_lo)
            rc |= mrd_buf_appendf(&b, " skip=%" PRIu64, ents[i].skip_lo);
        rc |= mrd_buf_appendf(&b, "\n");
    }
    rc |= mrd_buf_appendf(&b, "crc=%08" PRIx32 "\n", mrd_crc32c(0, b.data, b.len));
    if (rc != 0) {
        mrd_buf_free(&b);
        return -ENOMEM;
    }
    snprintf(tmp, sizeof(tmp), "%s.tmp", f->path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    if (write(fd, b.data, b.len) != (ssize_t)b.len || fsync(fd) != 0) {
        rc = errno ? -errno : -EIO;
        close(fd);
        unlink(tmp);
        goto out;
    }
    close(fd);
    if (rename(tmp, f->path) != 0) {
        rc = -errno;
        unlink(tmp);
        goto out;
    }
    rc = mrd_fsync_parent_dir(f->path);
out:
    mrd_buf_free(&b);
    return rc;
}

static int
file_save(void *ud, uint32_t peer, uint64_t acked, int resync, uint64_t skip_lo)
{
    wal_cursor_file *f = ud;
    cursor_ent ents[WAL_MAX_PEERS];
    int n, i, rc;

    pthread_mutex_lock(&f->mu);
    n = f->n;
    memcpy(ents, f->ents, sizeof(ents));
    for (i = 0; i < n && ents[i].peer != peer; i++)
        ;
    if (i == n) {
        if (n == WAL_MAX_PEERS) {
            pthread_mutex_unlock(&f->mu);
            return MRD_ETOOBIG;
        }
        n++;
    }
    ents[i] = (cursor_ent){peer, acked, resync, skip_lo};
    rc = write_file(f, ents, n);
    if (rc == 0) { /* memory follows the file, never leads it */
        memcpy(f->ents, ents, sizeof(ents));
        f->n = n;
    }
    pthread_mutex_unlock(&f->mu);
    return rc;
}

void
wal_cursor_file_store(wal_cursor_file *f, wal_cursor_store *out)
{
    out->load = file_load;
    out->save = file_save;
    out->ud = f;
}
