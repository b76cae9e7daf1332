/*
 * wal_reader.c - tailing readers: the replicator's view of the log.
 *
 * A reader holds its own descriptor on one segment and an offset into it,
 * and reads a record with two preads (header, then payload), checking the
 * CRC and that LSNs follow one another. It only ever reads records with
 * lsn <= durable_lsn, which the writer publishes after fdatasync returns: a
 * record sent to a peer can therefore never be undone by a crash here, and
 * the reader never looks at bytes a concurrent pwrite is still producing.
 *
 * Bare records (wal_reader_bare): a record of the reader's bare type is
 * stepped over after its header: its length must be possible and its LSN
 * the next one, and it is returned without a payload. Its checksum is not
 * verified (that would mean reading it); a damaged header still shows, as
 * the record after it then fails its own checks.
 *
 * Positioning is lazy. wal_reader_open finds the segment that holds
 * from_lsn (binary search over first LSNs) and starts at its first record;
 * wal_reader_next skips records below from_lsn as they become durable.
 * Skipping reads (and checks) at most one segment.
 *
 * Moving on: when the reader reaches the end of its segment's bytes while
 * its next LSN is durable, that record must be in the segment starting at
 * exactly that LSN (a roll creates it before the record becomes durable).
 * If retention already deleted it, the reader reports MRD_ENOTFOUND: that
 * peer fell behind and needs a resync. A reader's open descriptor keeps a
 * deleted segment readable, so retention never pulls bytes from under it.
 *
 * "Wake me": wal_reader_wait arms a one-shot notification under the WAL's
 * mutex, recording the LSN the reader waits for; the writer thread disarms
 * and posts it after publishing a durable LSN at or past it (wal_log.c,
 * wake_readers). The check-then-arm happens under the same mutex as the
 * publication, so no wake-up is lost.
 */
#include "wal_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int
open_seg(wal_reader *r, uint64_t first)
{
    char path[4096];
    uint8_t hdr[WAL__SEG_HDR];
    uint32_t site;
    uint64_t hfirst;
    ssize_t k;
    int fd;

    wal__seg_path(r->w, first, path, sizeof(path));
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? MRD_ENOTFOUND : -errno;
    k = pread(fd, hdr, sizeof(hdr), 0);
    if (k != (ssize_t)sizeof(hdr) ||
        wal__seg_header_decode(hdr, sizeof(hdr), &site, &hfirst) != NULL || hfirst != first) {
        close(fd);
        snprintf(r->err, sizeof(r->err), "bad header in WAL segment %016" PRIx64 ".wal", first);
        return MRD_ECORRUPT;
    }
    if (r->fd >= 0)
        close(r->fd);
    r->fd = fd;
    r->seg_first = first;
    r->off = WAL__SEG_HDR;
    r->next_lsn = first;
    return 0;
}

int
wal_reader_open(wal *w, uint64_t from_lsn, wal_reader **out)
{
    wal_reader *r;
    uint64_t first;
    long i;
    int rc = 0;

    if (!w || !out)
        return MRD_EINVAL;
    if (!(r = calloc(1, sizeof(*r))))
        return -ENOMEM;
    r->w = w;
    r->fd = -1;
    pthread_mutex_lock(&w->mu);
    if (from_lsn == 0)
        from_lsn = w->segs[0].first_lsn;
    i = wal__seg_find(w, from_lsn);
    if (i < 0 || from_lsn > w->next_lsn)
        rc = MRD_ENOTFOUND;
    first = i >= 0 ? w->segs[i].first_lsn : 0;
    pthread_mutex_unlock(&w->mu);
    if (rc == 0)
        rc = open_seg(r, first);
    if (rc != 0) {
        wal_reader_close(r);
        return rc;
    }
    r->skip_to = from_lsn;
    *out = r;
    return 0;
}

uint64_t
wal_reader_position(const wal_reader *r)
{
    return r->next_lsn > r->skip_to ? r->next_lsn : r->skip_to;
}

const char *
wal_reader_error(const wal_reader *r)
{
    return r->err;
}

static int
read_at(wal_reader *r, uint8_t *p, size_t n, uint64_t off, size_t *got)
{
    size_t done = 0;

    while (done < n) {
        ssize_t k = pread(r->fd, p + done, n - done, (off_t)(off + done));
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (k == 0)
            break;
        done += (size_t)k;
    }
    *got = done;
    return 0;
}

int
wal_reader_next(wal_reader *r, wal_entry *e)
{
    wal *w = r->w;

    for (;;) {
        uint64_t durable;
        uint8_t hdr[WAL__REC_HDR];
        size_t got = 0;
        uint32_t len;
        wal__rec rec;
        const char *why;
        int rc;

        pthread_mutex_lock(&w->mu);
        durable = w->durable_lsn;
        pthread_mutex_unlock(&w->mu);
        if (r->next_lsn > durable)
            return 0;

        if ((rc = read_at(r, hdr, sizeof(hdr), r->off, &got)) != 0)
            return rc;
        if (got == 0) {
            /* end of this segment: the next record starts the next one */
            if ((rc = open_seg(r, r->next_lsn)) != 0) {
                if (rc == MRD_ENOTFOUND)
                    snprintf(r->err, sizeof(r->err),
                             "WAL segment %016" PRIx64 ".wal was deleted by retention",
                             r->next_lsn);
                return rc;
            }
            continue;
        }
        if (got < sizeof(hdr)) {
            why = "truncated record header";
            goto corrupt;
        }
        len = wal__get32(hdr + 4);
        if (len > WAL_MAX_RECORD) {
            why = "bad record length";
            goto corrupt;
        }
        if (r->bare_type && wal__get16(hdr + 16) == r->bare_type) {
            uint64_t lsn = wal__get64(hdr + 8);
            if (lsn != r->next_lsn) {
                why = "LSN out of sequence";
                goto corrupt;
            }
            r->off += WAL__REC_HDR + len;
            r->next_lsn++;
            if (lsn < r->skip_to)
                continue;
            e->lsn = lsn;
            e->type = r->bare_type;
            e->payload = NULL;
            e->len = 0;
            return 1;
        }
        if (WAL__REC_HDR + (size_t)len > r->cap) {
            size_t cap = r->cap ? r->cap : 4096;
            uint8_t *p;
            while (cap < WAL__REC_HDR + (size_t)len)
                cap *= 2;
            if (!(p = realloc(r->buf, cap)))
                return -ENOMEM;
            r->buf = p;
            r->cap = cap;
        }
        memcpy(r->buf, hdr, sizeof(hdr));
        if ((rc = read_at(r, r->buf + WAL__REC_HDR, len, r->off + WAL__REC_HDR, &got)) != 0)
            return rc;
        if (got < len) {
            why = "truncated record";
            goto corrupt;
        }
        why = wal__rec_check(r->buf, WAL__REC_HDR + (size_t)len, r->off, r->next_lsn, &rec);
        if (why)
            goto corrupt;
        r->off += WAL__REC_HDR + len;
        r->next_lsn++;
        if (rec.lsn < r->skip_to)
            continue;
        e->lsn = rec.lsn;
        e->type = rec.type;
        e->payload = r->buf + WAL__REC_HDR;
        e->len = rec.len;
        return 1;

    corrupt:
        snprintf(r->err, sizeof(r->err),
                 "corrupt record in WAL segment %016" PRIx64 ".wal at offset %" PRIu64 ": %s",
                 r->seg_first, r->off, why);
        return MRD_ECORRUPT;
    }
}

void
wal_reader_bare(wal_reader *r, uint16_t type)
{
    if (r)
        r->bare_type = type;
}

int
wal_reader_wait(wal_reader *r, void (*cb)(void *ud), void *ud)
{
    wal *w;
    uint64_t pos;
    int rc = 0;

    if (!r || !cb)
        return MRD_EINVAL;
    w = r->w;
    pos = wal_reader_position(r);
    pthread_mutex_lock(&w->mu);
    if (w->failed) {
        rc = MRD_EDURABLE;
    } else if (pos <= w->durable_lsn) {
        rc = 1;
    } else {
        r->wait_lsn = pos;
        r->cb = cb;
        r->ud = ud;
        if (!r->armed) {
            r->armed = 1;
            r->wnext = w->waiters;
            w->waiters = r;
        }
    }
    pthread_mutex_unlock(&w->mu);
    return rc;
}

void
wal_reader_close(wal_reader *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->w->mu);
    if (r->armed) {
        for (wal_reader **pp = &r->w->waiters; *pp; pp = &(*pp)->wnext) {
            if (*pp == r) {
                *pp = r->wnext;
                break;
            }
        }
        r->armed = 0;
    }
    pthread_mutex_unlock(&r->w->mu);
    if (r->fd >= 0)
        close(r->fd);
    free(r->buf);
    free(r);
}
