/*
 * wal_log.c - opening and recovering the log, group-committed appends,
 * per-peer cursors and retention.
 *
 * Group commit. wal_append runs on any thread. Under the mutex it assigns
 * the next LSN, copies the frame (header + payload) into the pending batch
 * and queues a completion node; it wakes the writer thread only when the
 * batch goes from empty to non-empty. The writer thread swaps the pending
 * batch out, writes it with one pwrite per segment it touches, fdatasyncs,
 * publishes durable_lsn, and then posts every completion to the caller's
 * loop through the injected post function. Appends that arrive while the
 * thread sits in fdatasync pile up in the next batch, so the batch size
 * adapts to load with no timer: one writer pays one sync per append, 256
 * concurrent writers share one sync among up to 256.
 *
 * The batch window. Without one, a batch closes as soon as the previous
 * sync returns, and the callbacks of that sync have only just been posted,
 * so the writers they release arrive a few microseconds too late and land
 * in the batch after: measured, 16 writers averaged ~11 records per sync
 * instead of 16. So the thread waits, at most batch_window_us (default
 * 100), for as many appends as the previous batch had. A lone writer's
 * batches had one record, so it never waits; a crowd is gathered whole.
 * docs/benchmarks.md has the numbers for 0, 100, 500 and 2000 us.
 *
 * The writer seals each frame (CRC and the "synced" offset, see
 * wal_format.c) only when it knows which segment and offset the frame lands
 * at: a batch may roll into a new segment half way. A roll fdatasyncs the
 * old segment, creates the new one, writes and fdatasyncs its header and
 * fsyncs the directory before any record goes in, so the only segment that
 * can ever hold a torn tail is the newest.
 *
 * Failure. Any failed write or sync makes the WAL read-only for good:
 * failed = MRD_EDURABLE, the batch in flight and everything pending complete
 * with MRD_EDURABLE, and later appends fail at once. A failed fdatasync is
 * never retried: Linux may already have dropped the dirty pages and a
 * second fsync would report success for data that is gone ("fsyncgate").
 * An append that failed may still be found after a restart (it may have
 * reached the disk); it was never reported durable, which is the promise.
 *
 * Recovery (wal_open) reads every segment, checks every record, replays
 * those past the index's applied LSN, cuts a torn tail, and stops with the
 * segment name and offset on corruption unless salvaging.
 *
 * Retention. A segment other than the newest is deleted once its records
 * are all <= the index's applied LSN and <= every peer's durable cursor
 * (peers marked needs-resync hold nothing, except one whose resync pass
 * has begun: its record stream goes on during the pass, so it holds from
 * the pass's starting point, wal_peer_resync_begin). If the log is still
 * above retention_bytes, the peer with the lowest held LSN is marked
 * needs-resync and holds nothing (anti-entropy will catch it up; a peer
 * being resynced needs a new pass) and the pass repeats; the index's applied
 * LSN is never overridden, since those records exist nowhere else. Cursors
 * are saved through the injected store before they count, so a crash can
 * never roll a cursor back past a deleted segment.
 *
 * Replicated applies. Before marking the lagging peer, the cap checks
 * whether it would lose anything: each segment knows last_own, the highest
 * LSN in it of a record this site originated (REPLICATED_APPLY records are
 * never sent to a peer). When the segment holding the peer's next LSN has
 * none at or after it, the peer's cursor is moved to the segment's end
 * instead, and [skip_lo, new cursor] is remembered so the sender can tell
 * the peer with an empty range. Both survive a restart:
 *   - last_own is found again at open, from the scan open makes anyway: it
 *     reads and checks every record of every segment (to tell a torn tail
 *     from corruption, and to replay), so noting the highest non-apply LSN
 *     per segment costs one compare per record and no I/O (measured: open
 *     of a 1 GiB log, 0.41 s warm before and after). A field written into
 *     the segment when it is sealed would make it O(segments) only if open
 *     stopped reading whole segments, and would bring a format change and a
 *     window (sealed, field not yet durable) where it reads as unknown.
 *     Derived from checked records, the value is never a wrong "known": a
 *     torn tail is cut before it counts. Should open ever stop reading old
 *     segments whole, last_own must move into the segment itself.
 *   - skip_lo is saved in the cursor store with the moved cursor, in the
 *     one save that must be durable before the segment goes: a crash leaves
 *     either the old cursor and no range, or the new cursor and its range,
 *     never a range without the move. It is forgotten (saved as 0) once the
 *     peer acks past the cursor (it has taken the range) or is marked for a
 *     resync (the pass fills whatever it lacks).
 * Saves go through save_mu: a save and the memory update it justifies are
 * not interleaved with another save, so the last value saved is the value
 * in force (an ack and a cap move that raced could otherwise leave the
 * older one durable: a lower cursor, or a move without its range).
 *
 * Locking: one mutex (w->mu) guards the shared state; the writer thread
 * never holds it across I/O except for segment deletion and the directory
 * fsync that follows, which are rare. Cursor-store calls and posts happen
 * outside the mutex.
 */
#include "wal_int.h"
#include "wal.pb-c.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct wal__node {
    wal_append_cb cb;
    void *ud;
    uint64_t lsn;
    int status;
};

/* ---- small helpers --------------------------------------------------------- */

void
wal__seg_path(const wal *w, uint64_t first_lsn, char *out, size_t outsz)
{
    char name[WAL__NAME_LEN];

    wal__seg_name(first_lsn, name);
    snprintf(out, outsz, "%s/%s", w->dir, name);
}

void
wal__post(wal *w, void (*fn)(void *), void *arg)
{
    if (w->post)
        w->post(w->post_ud, fn, arg);
    else
        fn(arg);
}

long
wal__seg_find(const wal *w, uint64_t lsn)
{
    long lo = 0, hi = (long)w->nsegs - 1, ans = -1;

    while (lo <= hi) {
        long mid = lo + (hi - lo) / 2;
        if (w->segs[mid].first_lsn <= lsn) {
            ans = mid;
            lo = mid + 1;
        } else {
            hi = mid - 1;
        }
    }
    return ans;
}

static int
fault(wal *w, wal_io_op op)
{
    uint64_t n = ++w->fault_n[op];

    return w->fault ? w->fault(w->fault_ud, op, n) : 0;
}

static int
pwrite_all(int fd, const uint8_t *p, size_t n, uint64_t off)
{
    while (n > 0) {
        ssize_t k = pwrite(fd, p, n, (off_t)off);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (k == 0)
            return -EIO;
        p += k;
        n -= (size_t)k;
        off += (uint64_t)k;
    }
    return 0;
}

static int
read_all(int fd, uint8_t *p, size_t n)
{
    size_t got = 0;

    while (got < n) {
        ssize_t k = pread(fd, p + got, n - got, (off_t)got);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (k == 0)
            return -EIO; /* shrank under us */
        got += (size_t)k;
    }
    return 0;
}

static int
batch_reserve(wal__batch *b, size_t bytes, size_t nodes)
{
    if (b->len + bytes > b->cap) {
        size_t cap = b->cap ? b->cap : 64 * 1024;
        uint8_t *p;
        while (cap < b->len + bytes)
            cap *= 2;
        if (!(p = realloc(b->buf, cap)))
            return -ENOMEM;
        b->buf = p;
        b->cap = cap;
    }
    if (b->n + nodes > b->ncap) {
        size_t cap = b->ncap ? b->ncap * 2 : 256;
        wal__node **p;
        while (cap < b->n + nodes)
            cap *= 2;
        if (!(p = realloc(b->nodes, cap * sizeof(*p))))
            return -ENOMEM;
        b->nodes = p;
        b->ncap = cap;
    }
    return 0;
}

static void
batch_free(wal__batch *b)
{
    free(b->buf);
    free(b->nodes);
    memset(b, 0, sizeof(*b));
}

/* Creates segment first_lsn: header written and synced, directory synced. */
static int
seg_create(wal *w, uint64_t first_lsn, int *fd_out)
{
    char path[4096];
    uint8_t hdr[WAL__SEG_HDR];
    int fd, rc;

    wal__seg_path(w, first_lsn, path, sizeof(path));
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    wal__seg_header_encode(hdr, w->site_id, first_lsn);
    rc = pwrite_all(fd, hdr, sizeof(hdr), 0);
    if (rc == 0 && fdatasync(fd) != 0)
        rc = -errno;
    if (rc == 0)
        rc = mrd_fsync_parent_dir(path);
    if (rc != 0) {
        close(fd);
        unlink(path);
        return rc;
    }
    *fd_out = fd;
    return 0;
}

static int
segs_push(wal *w, uint64_t first_lsn, uint64_t size)
{
    if (w->nsegs == w->segcap) {
        size_t cap = w->segcap ? w->segcap * 2 : 16;
        wal__seg *p = realloc(w->segs, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        w->segs = p;
        w->segcap = cap;
    }
    w->segs[w->nsegs].first_lsn = first_lsn;
    w->segs[w->nsegs].size = size;
    w->segs[w->nsegs].last_own = UINT64_MAX;
    w->nsegs++;
    w->bytes += size;
    return 0;
}

/* ---- retention (caller holds mu) ------------------------------------------- */

static int
peer_index(const wal *w, uint32_t peer)
{
    for (int i = 0; i < w->npeers; i++)
        if (w->peers[i].id == peer)
            return i;
    return -1;
}

typedef struct resync_mark {
    uint32_t peer;
    uint64_t acked;
} resync_mark;

/* A peer's cursor moved over records it does not need (see below): to
 * acked, and LSNs lo..acked hold nothing it needs. */
typedef struct cursor_skip {
    uint32_t peer;
    uint64_t acked, lo;
} cursor_skip;

/* The first LSN peer p still needs, or 0 when it holds nothing (marked
 * needs-resync, and no resync pass has resumed its stream). */
static uint64_t
peer_need(const wal__peer *p)
{
    if (!p->needs_resync)
        return p->acked + 1;
    if (!p->hold)
        return 0;
    return p->hold > p->acked + 1 ? p->hold : p->acked + 1;
}

static uint64_t
needed_lsn(const wal *w)
{
    uint64_t need = w->applied_lsn + 1;

    for (int i = 0; i < w->npeers; i++) {
        uint64_t n = peer_need(&w->peers[i]);
        if (n && n < need)
            need = n;
    }
    return need;
}

/* Deletes what no one needs, then enforces the cap. Peers newly marked
 * needs-resync are returned in marks so the caller can save them after
 * unlocking.
 *
 * Past the cap, the most lagging peer first loses nothing when the oldest
 * segment it needs holds no record of ours after its cursor: only
 * replicated applies, which no peer is ever sent (a site that takes in a
 * large catch-up or resync fills its log with them while its cursor for
 * another peer waits for that peer's next ack). Its cursor is then moved
 * to the segment's end instead of marking it for a resync it does not
 * need; the move is returned in *skip, to be saved before anything is
 * deleted on its strength (the caller saves it and runs retention again),
 * so a crash never leaves a saved cursor before a deleted segment that
 * the peer needed. */
static int
retention_locked(wal *w, resync_mark *marks, int *nmarks, cursor_skip *skip)
{
    size_t drop = 0;
    int rc = 0;

    *nmarks = 0;
    skip->peer = 0;
    for (;;) {
        uint64_t need = needed_lsn(w);
        uint64_t bytes = w->bytes;
        size_t i;

        for (i = drop; i + 1 < w->nsegs && w->segs[i + 1].first_lsn <= need; i++)
            bytes -= w->segs[i].size;
        drop = i;
        if (bytes <= w->retention_bytes)
            break;
        /* over the cap: can the index let go of the oldest segment we keep? */
        if (drop + 1 >= w->nsegs || w->segs[drop + 1].first_lsn > w->applied_lsn + 1)
            break;
        int lag = -1;
        for (int p = 0; p < w->npeers; p++)
            if (peer_need(&w->peers[p]) &&
                (lag < 0 || peer_need(&w->peers[p]) < peer_need(&w->peers[lag])))
                lag = p;
        if (lag < 0)
            break;
        if (!w->peers[lag].needs_resync && w->segs[drop].last_own < peer_need(&w->peers[lag])) {
            /* an earlier move's range, still not acked past, extends */
            const wal__peer *p = &w->peers[lag];
            int extend = p->skip_lo && p->skip_lo <= p->acked + 1;
            *skip = (cursor_skip){p->id, w->segs[drop + 1].first_lsn - 1,
                                  extend ? p->skip_lo : p->acked + 1};
            break;
        }
        /* a peer being resynced can fall behind again: it stops holding,
         * and its next pass resumes the stream from a new point */
        w->peers[lag].needs_resync = 1;
        w->peers[lag].hold = 0;
        w->peers[lag].skip_lo = 0;
        w->resyncs++;
        marks[(*nmarks)++] = (resync_mark){w->peers[lag].id, w->peers[lag].acked};
    }
    if (drop > 0) {
        char path[4096];
        size_t done = 0;
        for (; done < drop; done++) {
            wal__seg_path(w, w->segs[done].first_lsn, path, sizeof(path));
            if (unlink(path) != 0 && errno != ENOENT) {
                rc = -errno;
                break;
            }
            w->bytes -= w->segs[done].size;
            w->segments_deleted++;
        }
        memmove(w->segs, w->segs + done, (w->nsegs - done) * sizeof(*w->segs));
        w->nsegs -= done;
        /* Deletions must reach the disk in order: a lost unlink of an older
         * segment next to a kept one would look like a gap at open. */
        if (done > 0) {
            int frc = mrd_fsync_parent_dir(path);
            if (rc == 0)
                rc = frc;
        }
    }
    w->over_cap = w->bytes > w->retention_bytes;
    return rc;
}

static int
save_cursor(wal *w, uint32_t peer, uint64_t acked, int resync, uint64_t skip_lo)
{
    return w->cursors.save ? w->cursors.save(w->cursors.ud, peer, acked, resync, skip_lo) : 0;
}

static int
retention(wal *w)
{
    resync_mark marks[WAL_MAX_PEERS];
    cursor_skip skip = {0, 0, 0};
    int nmarks, rc;

    /* save_mu: the writer thread's retention and an ack's can race; each
     * round's saves and the memory they justify go in one order */
    pthread_mutex_lock(&w->save_mu);
    /* each round moves one peer's cursor at most, past one more segment,
     * so this ends */
    for (;;) {
        pthread_mutex_lock(&w->mu);
        rc = retention_locked(w, marks, &nmarks, &skip);
        pthread_mutex_unlock(&w->mu);
        /* Best effort: if this save is lost, the peer's saved cursor points
         * into a deleted segment and wal_reader_open says MRD_ENOTFOUND,
         * which also sends it to resync. */
        for (int i = 0; i < nmarks; i++)
            (void)save_cursor(w, marks[i].peer, marks[i].acked, 1, 0);
        if (rc != 0 || !skip.peer)
            break;
        /* the move and its range in one save, before anything is deleted
         * on its strength; not saved: nothing is */
        if (save_cursor(w, skip.peer, skip.acked, 0, skip.lo) != 0)
            break;
        pthread_mutex_lock(&w->mu);
        int i = peer_index(w, skip.peer), gone = i < 0 || w->peers[i].needs_resync;
        if (!gone && skip.acked > w->peers[i].acked) {
            w->peers[i].skip_lo = skip.lo;
            w->peers[i].acked = skip.acked;
            w->cursor_skips++;
        }
        pthread_mutex_unlock(&w->mu);
        /* the next round sees the cursor there, so it deletes more or moves
         * further */
        if (gone)
            break;
    }
    pthread_mutex_unlock(&w->save_mu);
    return rc;
}

/* ---- the writer thread ----------------------------------------------------- */

static void
complete_node(void *arg)
{
    wal__node *n = arg;

    n->cb(n->ud, n->status, n->lsn);
    free(n);
}

typedef struct notify {
    void (*cb)(void *);
    void *ud;
} notify;

static void
run_notify(void *arg)
{
    notify *n = arg;

    n->cb(n->ud);
    free(n);
}

/* Disarms the readers whose next record is durable now (or all of them when
 * the WAL failed) and posts their notifications. */
static void
wake_readers(wal *w)
{
    notify *list = NULL;
    size_t n = 0, cap = 0;

    pthread_mutex_lock(&w->mu);
    for (wal_reader **pp = &w->waiters; *pp;) {
        wal_reader *r = *pp;
        if (r->wait_lsn > w->durable_lsn && !w->failed) {
            pp = &r->wnext;
            continue;
        }
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 8;
            notify *p = realloc(list, nc * sizeof(*p));
            if (!p)
                break; /* left armed; the next batch retries */
            list = p;
            cap = nc;
        }
        list[n++] = (notify){r->cb, r->ud};
        r->armed = 0;
        *pp = r->wnext;
        r->wnext = NULL;
    }
    pthread_mutex_unlock(&w->mu);
    for (size_t i = 0; i < n; i++) {
        notify *x = malloc(sizeof(*x));
        if (!x)
            continue;
        *x = list[i];
        wal__post(w, run_notify, x);
    }
    free(list);
}

/* Writes and syncs the inflight batch. Returns 0 or the -errno; *op_out
 * receives the failing operation. */
/* fdatasync of the current segment, through the fault hook. */
static int
sync_current(wal *w, wal_io_op *op_out)
{
    int rc;

    *op_out = WAL_IO_SYNC;
    if ((rc = fault(w, WAL_IO_SYNC)) != 0)
        return rc;
    if (fdatasync(w->cur_fd) != 0)
        return -errno;
    __atomic_fetch_add(&w->syncs, 1, __ATOMIC_RELAXED); /* read by wal_get_status, unlocked here */
    return 0;
}

static int
write_batch(wal *w, wal_io_op *op_out, int *rolled)
{
    wal__batch *b = &w->inflight;
    size_t p = 0;
    int rc;

    while (p < b->len) {
        size_t run = p;
        uint64_t off = w->cur_off;

        uint64_t own = 0;

        while (p < b->len) {
            size_t flen = WAL__REC_HDR + wal__get32(b->buf + p + 4);
            if (off + flen > w->segment_bytes && off > WAL__SEG_HDR)
                break;
            wal__rec_seal(b->buf + p, (uint32_t)w->cur_synced);
            if (wal_rec_forwarded(wal__get16(b->buf + p + 16)))
                own = wal__get64(b->buf + p + 8);
            off += flen;
            p += flen;
        }
        if (p > run) {
            *op_out = WAL_IO_WRITE;
            if ((rc = fault(w, WAL_IO_WRITE)) != 0)
                return rc;
            if ((rc = pwrite_all(w->cur_fd, b->buf + run, p - run, w->cur_off)) != 0)
                return rc;
            pthread_mutex_lock(&w->mu);
            w->segs[w->nsegs - 1].size += off - w->cur_off;
            if (own && w->segs[w->nsegs - 1].last_own != UINT64_MAX)
                w->segs[w->nsegs - 1].last_own = own; /* an unknown one stays so */
            w->bytes += off - w->cur_off;
            pthread_mutex_unlock(&w->mu);
            w->cur_off = off;
        }
        if (p < b->len) {
            /* roll: the old segment is complete and durable before the new
             * one exists (only the newest segment may be torn) */
            uint64_t first = wal__get64(b->buf + p + 8);
            int fd;
            if ((rc = sync_current(w, op_out)) != 0)
                return rc;
            *op_out = WAL_IO_ROLL;
            if ((rc = fault(w, WAL_IO_ROLL)) != 0)
                return rc;
            if ((rc = seg_create(w, first, &fd)) != 0)
                return rc;
            close(w->cur_fd);
            w->cur_fd = fd;
            w->cur_first = first;
            w->cur_off = w->cur_synced = WAL__SEG_HDR;
            *rolled = 1;
            pthread_mutex_lock(&w->mu);
            rc = segs_push(w, first, WAL__SEG_HDR);
            if (rc == 0)
                w->segs[w->nsegs - 1].last_own = 0; /* written by us: known */
            pthread_mutex_unlock(&w->mu);
            if (rc != 0)
                return rc;
        }
    }
    if ((rc = sync_current(w, op_out)) != 0)
        return rc;
    w->cur_synced = w->cur_off;
    return 0;
}

/* Completes everything pending with MRD_EDURABLE. Called with mu held;
 * drops it while posting (a callback run inline may call wal_append). */
static void
fail_pending_locked(wal *w)
{
    wal__batch tmp = w->pending;

    w->pending = w->inflight; /* empty, keeps its buffers */
    w->inflight = tmp;
    pthread_mutex_unlock(&w->mu);
    for (size_t i = 0; i < w->inflight.n; i++) {
        w->inflight.nodes[i]->status = MRD_EDURABLE;
        wal__post(w, complete_node, w->inflight.nodes[i]);
    }
    w->inflight.n = 0;
    w->inflight.len = 0;
    wake_readers(w);
    pthread_mutex_lock(&w->mu);
}

static void *
writer_main(void *arg)
{
    wal *w = arg;

    pthread_mutex_lock(&w->mu);
    for (;;) {
        wal__batch tmp;
        wal_io_op op = WAL_IO_WRITE;
        int rc, rolled = 0;

        while (w->pending.n == 0 && !w->closing) {
            w->writer_idle = 1;
            pthread_cond_wait(&w->wake, &w->mu);
            w->writer_idle = 0;
        }
        if (w->pending.n == 0)
            break; /* closing and drained */
        if (w->batch_window_us && !w->closing && !w->failed && w->pending.n < w->gather_target) {
            /* wait for as many appends as the last batch had, at most the
             * window: a lone writer never waits, a crowd arrives together */
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_nsec += (long)w->batch_window_us * 1000;
            ts.tv_sec += ts.tv_nsec / 1000000000;
            ts.tv_nsec %= 1000000000;
            w->gathering = 1;
            while (!w->closing && w->pending.n < w->gather_target &&
                   pthread_cond_timedwait(&w->wake, &w->mu, &ts) != ETIMEDOUT)
                ;
            w->gathering = 0;
        }
        if (w->failed) { /* appends queued just before the failure */
            fail_pending_locked(w);
            continue;
        }
        tmp = w->pending;
        w->pending = w->inflight;
        w->inflight = tmp;
        w->pending.len = w->pending.n = 0;
        pthread_mutex_unlock(&w->mu);

        rc = write_batch(w, &op, &rolled);

        pthread_mutex_lock(&w->mu);
        w->batches++;
        if (w->inflight.n > w->max_batch)
            w->max_batch = w->inflight.n;
        w->gather_target = w->inflight.n;
        if (rc == 0) {
            w->durable_lsn = w->inflight.last_lsn;
        } else {
            w->failed = MRD_EDURABLE;
            w->io_error = rc;
            w->io_op = (int)op;
            wal__seg_name(w->cur_first, w->failed_segment);
        }
        pthread_mutex_unlock(&w->mu);

        for (size_t i = 0; i < w->inflight.n; i++) {
            wal__node *n = w->inflight.nodes[i];
            n->status = rc == 0 ? 0 : MRD_EDURABLE;
            wal__post(w, complete_node, n);
        }
        w->inflight.n = 0;
        w->inflight.len = 0;
        wake_readers(w);
        if (rolled && rc == 0)
            (void)retention(w);
        pthread_mutex_lock(&w->mu);
        if (rc != 0)
            fail_pending_locked(w);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* ---- append ---------------------------------------------------------------- */

int
wal_append(wal *w, uint16_t type, const void *payload, size_t len, wal_append_cb cb, void *ud,
           uint64_t *lsn_out)
{
    wal__node *node;
    uint64_t lsn;
    int rc = 0, wake;

    if (!w || !cb || type == 0 || len > WAL_MAX_RECORD || (!payload && len))
        return MRD_EINVAL;
    if (!(node = malloc(sizeof(*node))))
        return -ENOMEM;
    pthread_mutex_lock(&w->mu);
    if (w->failed) {
        rc = MRD_EDURABLE;
        goto fail_locked;
    }
    if (w->closing) {
        rc = MRD_ESHUTDOWN;
        goto fail_locked;
    }
    if (w->pending.len > 0 && w->pending.len + WAL__REC_HDR + len > w->max_pending) {
        rc = MRD_EBUSY;
        goto fail_locked;
    }
    if ((rc = batch_reserve(&w->pending, WAL__REC_HDR + len, 1)) != 0)
        goto fail_locked;
    lsn = w->next_lsn++;
    wal__rec_header_init(w->pending.buf + w->pending.len, (uint32_t)len, lsn, type);
    if (len)
        memcpy(w->pending.buf + w->pending.len + WAL__REC_HDR, payload, len);
    w->pending.len += WAL__REC_HDR + len;
    if (w->pending.n == 0)
        w->pending.first_lsn = lsn;
    w->pending.last_lsn = lsn;
    *node = (wal__node){cb, ud, lsn, 0};
    w->pending.nodes[w->pending.n++] = node;
    w->appends++;
    wake =
        (w->pending.n == 1 && w->writer_idle) || (w->gathering && w->pending.n == w->gather_target);
    pthread_mutex_unlock(&w->mu);
    if (wake)
        pthread_cond_signal(&w->wake);
    if (lsn_out)
        *lsn_out = lsn;
    return 0;

fail_locked:
    pthread_mutex_unlock(&w->mu);
    free(node);
    return rc;
}

int
wal_append_record(wal *w, struct Meridian__WalRecord *rec, wal_append_cb cb, void *ud,
                  uint64_t *lsn_out)
{
    uint8_t stackbuf[4096], *buf = stackbuf;
    size_t len;
    int rc;

    if (!w || !rec || rec->body_case == MERIDIAN__WAL_RECORD__BODY__NOT_SET)
        return MRD_EINVAL;
    if (rec->format == 0)
        rec->format = WAL_RECORD_FORMAT;
    len = meridian__wal_record__get_packed_size(rec);
    if (len > WAL_MAX_RECORD)
        return MRD_ETOOBIG;
    if (len > sizeof(stackbuf) && !(buf = malloc(len)))
        return -ENOMEM;
    meridian__wal_record__pack(rec, buf);
    rc = wal_append(w, (uint16_t)rec->body_case, buf, len, cb, ud, lsn_out);
    if (buf != stackbuf)
        free(buf);
    return rc;
}

/* ---- open / close ---------------------------------------------------------- */

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

static int
list_segments(const char *dir, uint64_t **out, size_t *nout)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    uint64_t *v = NULL, first;
    size_t n = 0, cap = 0;

    if (!d)
        return -errno;
    while ((de = readdir(d)) != NULL) {
        if (wal__seg_name_parse(de->d_name, &first) != 0)
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            uint64_t *p = realloc(v, nc * sizeof(*p));
            if (!p) {
                free(v);
                closedir(d);
                return -ENOMEM;
            }
            v = p;
            cap = nc;
        }
        v[n++] = first;
    }
    closedir(d);
    if (n > 1)
        qsort(v, n, sizeof(*v), cmp_u64);
    *out = v;
    *nout = n;
    return 0;
}

typedef struct replay_ctx {
    const wal_opts *o;
    wal_recovery *rep;
} replay_ctx;

static int
replay_one(void *ud, const wal_entry *e)
{
    replay_ctx *c = ud;

    if (e->lsn <= c->o->replay_from || !c->o->replay)
        return 0;
    c->rep->replayed++;
    return c->o->replay(c->o->replay_ud, e);
}

static int
truncate_seg(wal *w, const char *path, uint64_t size)
{
    int fd, rc;

    if ((rc = fault(w, WAL_IO_TRUNCATE)) != 0)
        return rc;
    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    rc = 0;
    if (ftruncate(fd, (off_t)size) != 0 || fsync(fd) != 0)
        rc = -errno;
    close(fd);
    return rc;
}

/* Drops segments [from, n) (salvage). */
static int
remove_segments(wal *w, const uint64_t *firsts, size_t from, size_t n, wal_recovery *rep)
{
    char path[4096];
    struct stat st;

    for (size_t j = from; j < n; j++) {
        wal__seg_path(w, firsts[j], path, sizeof(path));
        if (stat(path, &st) == 0)
            rep->salvage_bytes += (uint64_t)st.st_size;
        if (unlink(path) != 0 && errno != ENOENT)
            return -errno;
        rep->salvage_segments_removed++;
    }
    return from < n ? mrd_fsync_parent_dir(path) : 0;
}

/* Scans and repairs the segments; fills w->segs and the report. */
static int
recover(wal *w, const wal_opts *o, wal_recovery *rep, uint64_t *last_out)
{
    uint64_t *firsts = NULL, last_lsn = 0;
    size_t n = 0, i;
    uint8_t *buf = NULL;
    size_t bufcap = 0;
    char path[4096], name[WAL__NAME_LEN];
    replay_ctx rc_ctx = {o, rep};
    int rc;

    if ((rc = list_segments(w->dir, &firsts, &n)) != 0) {
        snprintf(rep->error, sizeof(rep->error), "cannot list WAL directory: %s", mrd_strerror(rc));
        goto out;
    }
    for (i = 0; i < n; i++) {
        int fd, is_last = i + 1 == n;
        struct stat st;
        wal_scan_result sr;
        uint32_t site;
        uint64_t hfirst;

        wal__seg_name(firsts[i], name);
        wal__seg_path(w, firsts[i], path, sizeof(path));
        if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) != 0) {
            rc = -errno;
            if (fd >= 0)
                close(fd);
            snprintf(rep->error, sizeof(rep->error), "cannot open WAL segment %s: %s", name,
                     mrd_strerror(rc));
            goto out;
        }
        if ((size_t)st.st_size > bufcap) {
            uint8_t *p = realloc(buf, (size_t)st.st_size);
            if (!p) {
                close(fd);
                rc = -ENOMEM;
                goto out;
            }
            buf = p;
            bufcap = (size_t)st.st_size;
        }
        rc = read_all(fd, buf, (size_t)st.st_size);
        close(fd);
        if (rc != 0) {
            snprintf(rep->error, sizeof(rep->error), "cannot read WAL segment %s: %s", name,
                     mrd_strerror(rc));
            goto out;
        }
        rep->segments++;

        /* header first: identity and continuity before any replay */
        const char *why = wal__seg_header_decode(buf, (size_t)st.st_size, &site, &hfirst);
        if (why && is_last && (size_t)st.st_size <= WAL__SEG_HDR) {
            /* a roll interrupted before its header was synced: nothing in it
             * was ever written, so it goes */
            if (unlink(path) != 0) {
                rc = -errno;
                goto out;
            }
            rep->torn = 1;
            rep->torn_segment_removed = 1;
            snprintf(rep->torn_segment, sizeof(rep->torn_segment), "%s", name);
            rep->torn_bytes += (uint64_t)st.st_size;
            n--;
            break;
        }
        if (!why && hfirst != firsts[i])
            why = "segment header first LSN does not match the file name";
        if (!why && i > 0 && hfirst != last_lsn + 1)
            why = "gap in LSNs: segment does not start right after the previous one";
        if (why) {
            if (!o->salvage || i == 0) {
                snprintf(rep->error, sizeof(rep->error),
                         "corrupt WAL segment %s at offset 0: %s; %s", name, why,
                         i == 0 ? "the oldest segment is unusable, restore the WAL or resync"
                                : "start with --wal-salvage to drop it and later segments");
                rc = MRD_ECORRUPT;
                goto out;
            }
            rep->salvaged = 1;
            snprintf(rep->salvage_segment, sizeof(rep->salvage_segment), "%s", name);
            rep->salvage_offset = 0;
            if ((rc = remove_segments(w, firsts, i, n, rep)) != 0)
                goto out;
            n = i;
            break;
        }
        if (site != w->site_id) {
            snprintf(rep->error, sizeof(rep->error),
                     "WAL segment %s belongs to site %" PRIu32 ", not site %" PRIu32
                     ": wrong meta_dir or site_id in the configuration",
                     name, site, w->site_id);
            rc = MRD_ECONFIG;
            goto out;
        }

        rc = wal_segment_scan(buf, (size_t)st.st_size, is_last, replay_one, &rc_ctx, &sr);
        if (rc != 0) {
            snprintf(rep->error, sizeof(rep->error),
                     "replay stopped at a record of WAL segment %s: %s", name, mrd_strerror(rc));
            goto out;
        }
        rep->records += sr.records;
        last_lsn = sr.last_lsn;
        if (sr.state == WAL_SCAN_TORN) {
            rep->torn = 1;
            snprintf(rep->torn_segment, sizeof(rep->torn_segment), "%s", name);
            rep->torn_offset = sr.end;
            rep->torn_bytes += (uint64_t)st.st_size - sr.end;
            if ((rc = truncate_seg(w, path, sr.end)) != 0) {
                snprintf(rep->error, sizeof(rep->error),
                         "cannot truncate torn tail of WAL segment %s at offset %" PRIu64 ": %s",
                         name, sr.end, mrd_strerror(rc));
                goto out;
            }
            st.st_size = (off_t)sr.end;
        } else if (sr.state == WAL_SCAN_CORRUPT) {
            if (!o->salvage) {
                snprintf(rep->error, sizeof(rep->error),
                         "corrupt record in WAL segment %s at offset %" PRIu64
                         ": %s; start with --wal-salvage to truncate there (drops %" PRIu64
                         " later records, %" PRIu64 " bytes, and %zu later segments)",
                         name, sr.end, sr.reason, sr.later_records, (uint64_t)st.st_size - sr.end,
                         n - i - 1);
                rc = MRD_ECORRUPT;
                goto out;
            }
            rep->salvaged = 1;
            snprintf(rep->salvage_segment, sizeof(rep->salvage_segment), "%s", name);
            rep->salvage_offset = sr.end;
            rep->salvage_bytes += (uint64_t)st.st_size - sr.end;
            rep->salvage_records += sr.later_records;
            if ((rc = truncate_seg(w, path, sr.end)) != 0)
                goto out;
            st.st_size = (off_t)sr.end;
            if ((rc = remove_segments(w, firsts, i + 1, n, rep)) != 0)
                goto out;
            n = i + 1;
        }
        if ((rc = segs_push(w, firsts[i], (uint64_t)st.st_size)) != 0)
            goto out;
        /* every record was just read and checked: what it holds is known */
        w->segs[w->nsegs - 1].last_own = sr.last_own;
        if (sr.state == WAL_SCAN_CORRUPT)
            break;
    }
    *last_out = last_lsn;
    rc = 0;
out:
    free(buf);
    free(firsts);
    return rc;
}

int
wal_open(const wal_opts *o, wal **out)
{
    wal_recovery scratch, *rep;
    wal *w;
    pthread_condattr_t ca;
    char path[4096];
    uint64_t last_lsn_out = 0;
    int rc;

    rep = (o && o->report) ? o->report : &scratch;
    memset(rep, 0, sizeof(*rep));
    if (!o || !o->dir || !*o->dir || !out ||
        (o->segment_bytes &&
         (o->segment_bytes < WAL__MIN_SEGMENT || o->segment_bytes > WAL__MAX_SEGMENT))) {
        snprintf(rep->error, sizeof(rep->error),
                 "invalid WAL options: dir is required, segment size must be 4KiB..1GiB");
        return MRD_EINVAL;
    }
    if (!(w = calloc(1, sizeof(*w))) || !(w->dir = strdup(o->dir))) {
        free(w);
        return -ENOMEM;
    }
    w->site_id = o->site_id;
    w->segment_bytes = o->segment_bytes ? o->segment_bytes : WAL_DEFAULT_SEGMENT;
    w->retention_bytes = o->retention_bytes ? o->retention_bytes : WAL_DEFAULT_RETENTION;
    w->max_pending = o->max_pending ? o->max_pending : WAL_DEFAULT_PENDING;
    w->batch_window_us = o->batch_window_us < 0    ? 0
                         : o->batch_window_us == 0 ? WAL_DEFAULT_WINDOW_US
                                                   : (uint32_t)o->batch_window_us;
    w->gather_target = SIZE_MAX; /* the first batch waits the whole window */
    w->post = o->post;
    w->post_ud = o->post_ud;
    w->cursors = o->cursors;
    w->fault = o->fault;
    w->fault_ud = o->fault_ud;
    w->cur_fd = -1;
    pthread_mutex_init(&w->save_mu, NULL);
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->wake, &ca);
    pthread_condattr_destroy(&ca);

    if ((rc = mrd_mkdir_p(w->dir)) != 0) {
        snprintf(rep->error, sizeof(rep->error), "cannot create WAL directory: %s",
                 mrd_strerror(rc));
        goto fail;
    }
    if ((rc = recover(w, o, rep, &last_lsn_out)) != 0)
        goto fail;
    if (w->nsegs == 0) {
        if ((rc = seg_create(w, 1, &w->cur_fd)) != 0 || (rc = segs_push(w, 1, WAL__SEG_HDR)) != 0) {
            snprintf(rep->error, sizeof(rep->error), "cannot create the first WAL segment: %s",
                     mrd_strerror(rc));
            goto fail;
        }
        w->segs[0].last_own = 0; /* a new log: what it holds is known */
        w->next_lsn = 1;
    } else {
        wal__seg *cur = &w->segs[w->nsegs - 1];
        wal__seg_path(w, cur->first_lsn, path, sizeof(path));
        if ((w->cur_fd = open(path, O_WRONLY | O_CLOEXEC)) < 0) {
            rc = -errno;
            snprintf(rep->error, sizeof(rep->error), "cannot open WAL segment for append: %s",
                     mrd_strerror(rc));
            goto fail;
        }
        w->next_lsn = last_lsn_out + 1;
    }
    w->cur_first = w->segs[w->nsegs - 1].first_lsn;
    w->cur_off = w->cur_synced = w->segs[w->nsegs - 1].size;
    w->durable_lsn = w->next_lsn - 1;
    rep->first_lsn = rep->records ? w->segs[0].first_lsn : 0;
    rep->last_lsn = rep->records ? w->durable_lsn : 0;

    if (o->replay_from > w->durable_lsn) {
        snprintf(rep->error, sizeof(rep->error),
                 "the index has applied LSN %" PRIu64 " but the WAL ends at LSN %" PRIu64
                 ": acknowledged records are missing from the WAL; restore it or resync "
                 "this site",
                 o->replay_from, w->durable_lsn);
        rc = MRD_ECORRUPT;
        goto fail;
    }
    if (o->replay_from + 1 < w->segs[0].first_lsn) {
        snprintf(rep->error, sizeof(rep->error),
                 "the index has applied LSN %" PRIu64 " but the WAL starts at LSN %" PRIu64
                 ": records in between are gone; resync this site from its peers",
                 o->replay_from, w->segs[0].first_lsn);
        rc = MRD_ENOTFOUND;
        goto fail;
    }
    w->applied_lsn = o->replay_from;

    if ((rc = pthread_create(&w->thread, NULL, writer_main, w)) != 0) {
        rc = -rc;
        goto fail;
    }
    w->thread_started = 1;
    *out = w;
    return 0;

fail:
    wal_close(w);
    return rc;
}

void
wal_close(wal *w)
{
    if (!w)
        return;
    if (w->thread_started) {
        pthread_mutex_lock(&w->mu);
        w->closing = 1;
        pthread_mutex_unlock(&w->mu);
        pthread_cond_signal(&w->wake);
        pthread_join(w->thread, NULL);
    }
    if (w->cur_fd >= 0)
        close(w->cur_fd);
    batch_free(&w->pending);
    batch_free(&w->inflight);
    pthread_cond_destroy(&w->wake);
    pthread_mutex_destroy(&w->mu);
    pthread_mutex_destroy(&w->save_mu);
    free(w->segs);
    free(w->dir);
    free(w);
}

/* ---- peers, cursors, status ------------------------------------------------ */

int
wal_peer_add(wal *w, uint32_t peer, uint64_t initial_lsn)
{
    uint64_t acked = initial_lsn, skip_lo = 0;
    int resync = 0, rc = 0;

    if (!w)
        return MRD_EINVAL;
    if (w->cursors.load) {
        rc = w->cursors.load(w->cursors.ud, peer, &acked, &resync, &skip_lo);
        if (rc == MRD_ENOTFOUND) {
            acked = initial_lsn;
            resync = 0;
            skip_lo = 0;
            rc = 0;
        }
        if (rc != 0)
            return rc;
    }
    /* a range only means something for a peer the stream serves */
    if (resync || skip_lo > acked)
        skip_lo = 0;
    pthread_mutex_lock(&w->mu);
    if (peer_index(w, peer) >= 0)
        rc = MRD_EEXIST;
    else if (w->npeers == WAL_MAX_PEERS)
        rc = MRD_ETOOBIG;
    else
        w->peers[w->npeers++] =
            (wal__peer){.id = peer, .acked = acked, .needs_resync = resync, .skip_lo = skip_lo};
    pthread_mutex_unlock(&w->mu);
    return rc;
}

int
wal_peer_remove(wal *w, uint32_t peer)
{
    int i, rc = 0;

    if (!w)
        return MRD_EINVAL;
    pthread_mutex_lock(&w->mu);
    if ((i = peer_index(w, peer)) < 0)
        rc = MRD_ENOTFOUND;
    else
        w->peers[i] = w->peers[--w->npeers];
    pthread_mutex_unlock(&w->mu);
    return rc ? rc : retention(w);
}

int
wal_cursor_set(wal *w, uint32_t peer, uint64_t acked_lsn)
{
    int i, rc = 0, resync;

    if (!w)
        return MRD_EINVAL;
    pthread_mutex_lock(&w->save_mu);
    pthread_mutex_lock(&w->mu);
    if ((i = peer_index(w, peer)) < 0)
        rc = MRD_ENOTFOUND;
    else if (acked_lsn > w->durable_lsn)
        rc = MRD_EINVAL;
    else if (acked_lsn <= w->peers[i].acked)
        rc = 1; /* stale ack: nothing to do */
    resync = rc == 0 ? w->peers[i].needs_resync : 0;
    pthread_mutex_unlock(&w->mu);
    /* an ack past the cursor is past any range the cap moved it over: the
     * peer has taken it, so the range is forgotten (skip_lo 0) */
    if (rc == 0 && (rc = save_cursor(w, peer, acked_lsn, resync, 0)) == 0) {
        pthread_mutex_lock(&w->mu);
        if ((i = peer_index(w, peer)) >= 0 && acked_lsn > w->peers[i].acked) {
            w->peers[i].acked = acked_lsn;
            w->peers[i].skip_lo = 0;
        }
        pthread_mutex_unlock(&w->mu);
    }
    pthread_mutex_unlock(&w->save_mu);
    if (rc != 0)
        return rc > 0 ? 0 : rc;
    return retention(w);
}

int
wal_peer_resync_begin(wal *w, uint32_t peer, uint64_t lsn)
{
    int i, rc = 0;
    uint64_t acked = 0;

    if (!w)
        return MRD_EINVAL;
    pthread_mutex_lock(&w->save_mu);
    pthread_mutex_lock(&w->mu);
    if ((i = peer_index(w, peer)) < 0)
        rc = MRD_ENOTFOUND;
    else if (lsn > w->durable_lsn)
        rc = MRD_EINVAL;
    else if (lsn + 1 < w->next_lsn && wal__seg_find(w, lsn + 1) < 0)
        rc = MRD_ENOTFOUND; /* already deleted: the stream cannot go on from there */
    if (rc == 0) {
        /* held at once, before the save: holding more is always safe */
        w->peers[i].needs_resync = 1;
        w->peers[i].hold = lsn + 1;
        w->peers[i].skip_lo = 0; /* the pass fills whatever it lacks */
        acked = w->peers[i].acked;
    }
    pthread_mutex_unlock(&w->mu);
    if (rc == 0)
        rc = save_cursor(w, peer, acked, 1, 0);
    pthread_mutex_unlock(&w->save_mu);
    return rc;
}

int
wal_peer_resync_done(wal *w, uint32_t peer, uint64_t acked_lsn)
{
    int i, rc = 0;
    uint64_t acked = 0;

    if (!w)
        return MRD_EINVAL;
    pthread_mutex_lock(&w->save_mu);
    pthread_mutex_lock(&w->mu);
    if ((i = peer_index(w, peer)) < 0) {
        rc = MRD_ENOTFOUND;
    } else if (w->peers[i].needs_resync && !w->peers[i].hold) {
        rc = MRD_EBUSY; /* dropped again since its pass began: another pass */
    } else {
        /* the stream's confirmed point, never lower than the cursor was */
        acked = w->peers[i].acked;
        if (w->peers[i].hold && w->peers[i].hold - 1 > acked)
            acked = w->peers[i].hold - 1;
        if (acked_lsn > acked && acked_lsn <= w->durable_lsn)
            acked = acked_lsn;
    }
    pthread_mutex_unlock(&w->mu);
    if (rc == 0)
        rc = save_cursor(w, peer, acked, 0, 0);
    if (rc == 0) {
        pthread_mutex_lock(&w->mu);
        if ((i = peer_index(w, peer)) >= 0) {
            if (w->peers[i].needs_resync && !w->peers[i].hold) {
                rc = MRD_EBUSY; /* dropped while saving: the mark stays */
            } else {
                w->peers[i].needs_resync = 0;
                w->peers[i].hold = 0;
                w->peers[i].skip_lo = 0; /* level up to acked: no range */
                if (acked > w->peers[i].acked)
                    w->peers[i].acked = acked;
            }
        }
        pthread_mutex_unlock(&w->mu);
        if (rc == MRD_EBUSY) /* put the saved mark back */
            (void)save_cursor(w, peer, acked, 1, 0);
    }
    pthread_mutex_unlock(&w->save_mu);
    return rc ? rc : retention(w);
}

int
wal_cursor_get(wal *w, uint32_t peer, wal_peer_status *out)
{
    int i, rc = 0;

    if (!w || !out)
        return MRD_EINVAL;
    pthread_mutex_lock(&w->mu);
    if ((i = peer_index(w, peer)) < 0) {
        rc = MRD_ENOTFOUND;
    } else {
        out->peer = peer;
        out->acked_lsn = w->peers[i].acked;
        out->needs_resync = w->peers[i].needs_resync;
        out->skip_lo = w->peers[i].skip_lo;
        out->holding = peer_need(&w->peers[i]) != 0;
        out->lag_records =
            w->durable_lsn > w->peers[i].acked ? w->durable_lsn - w->peers[i].acked : 0;
    }
    pthread_mutex_unlock(&w->mu);
    return rc;
}

int
wal_set_applied(wal *w, uint64_t applied_lsn)
{
    int rc = 0;

    if (!w)
        return MRD_EINVAL;
    pthread_mutex_lock(&w->mu);
    if (applied_lsn > w->durable_lsn)
        rc = MRD_EINVAL; /* the index can only apply durable records */
    else if (applied_lsn > w->applied_lsn)
        w->applied_lsn = applied_lsn;
    pthread_mutex_unlock(&w->mu);
    return rc ? rc : retention(w);
}

int
wal_get_status(wal *w, wal_status *out)
{
    wal_status s;

    if (!w || !out)
        return MRD_EINVAL;
    memset(&s, 0, sizeof(s));
    pthread_mutex_lock(&w->mu);
    s.first_lsn = w->segs[0].first_lsn;
    s.next_lsn = w->next_lsn;
    s.durable_lsn = w->durable_lsn;
    s.applied_lsn = w->applied_lsn;
    s.segments = (uint32_t)w->nsegs;
    s.bytes = w->bytes;
    s.retention_bytes = w->retention_bytes;
    s.over_cap = w->over_cap;
    s.failed = w->failed;
    s.io_error = w->io_error;
    s.io_op = w->io_op;
    memcpy(s.failed_segment, w->failed_segment, sizeof(w->failed_segment));
    s.appends = w->appends;
    s.batches = w->batches;
    s.syncs = __atomic_load_n(&w->syncs, __ATOMIC_RELAXED);
    s.max_batch = w->max_batch;
    s.resyncs = w->resyncs;
    s.segments_deleted = w->segments_deleted;
    s.cursor_skips = w->cursor_skips;
    s.n_peers = w->npeers;
    for (int i = 0; i < w->npeers; i++) {
        s.peers[i].peer = w->peers[i].id;
        s.peers[i].acked_lsn = w->peers[i].acked;
        s.peers[i].needs_resync = w->peers[i].needs_resync;
        s.peers[i].skip_lo = w->peers[i].skip_lo;
        s.peers[i].holding = peer_need(&w->peers[i]) != 0;
        s.peers[i].lag_records =
            w->durable_lsn > w->peers[i].acked ? w->durable_lsn - w->peers[i].acked : 0;
    }
    pthread_mutex_unlock(&w->mu);
    *out = s;
    return 0;
}
