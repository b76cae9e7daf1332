/*
 * repl_send.c - the sender: streams the records this site originated to one
 * peer, on the HTTP/2 session this site dialled, and advances the peer's
 * WAL cursor from its acks.
 *
 * Pipeline, per peer:
 *   reader job -> queue of items -> requests in flight -> acks -> cursor
 *
 *   - A reader job (on an engine worker: WAL segments are files) tails the
 *     WAL from where the last job stopped and cuts what it reads into items
 *     (replicated applies are read bare, header only: wal_reader_bare).
 *     An item is one POST /repl/v1/records covering a contiguous LSN range:
 *     the records we originated (replicated applies are skipped: a receiver
 *     never forwards), closed at REPL_BATCH_BYTES or REPL_BATCH_RECORDS, or
 *     at an object put whose data lives on the drives. That put is the
 *     item's last record, with its layout cleared (layouts are local), and
 *     its data follows the framed batch in the request body. Objects small
 *     enough to be inline carry their bytes in the record itself.
 *   - Items are submitted while fewer than REPL_INFLIGHT_MAX requests and
 *     REPL_INFLIGHT_BYTES bytes are in flight: many requests share the one
 *     connection, so a high-RTT link stays busy, and memory stays bounded.
 *     Object data is read from the store one REPL_CHUNK at a time by jobs
 *     and handed to nghttp2 as flow control allows (the body callback
 *     defers while a chunk is being read); a slow peer holds us back through
 *     its HTTP/2 windows, never by buffering more here.
 *   - The peer answers each request, once it has durably applied the range,
 *     with an Ack: its applied LSN for us. The highest ack is saved as the
 *     peer's WAL cursor (wal_cursor_set, in the next reader job: it commits
 *     to the index), which is what lets the WAL delete segments.
 *   - Any failure (a non-200 answer, a bad signature, a reset stream) drops
 *     the connection. On the next Hello the peer announces what it has
 *     applied, and the sender starts over from there: nothing is lost or
 *     applied twice (the receiver deduplicates by origin LSN).
 *   - A put whose version is gone here by the time its range is read (the
 *     key was overwritten or deleted first, and its shards freed) is left
 *     out of the batch: a later record dominates it (put_superseded).
 *   - When the WAL no longer holds the LSN the peer needs, the peer is
 *     marked needs-resync and logged; anti-entropy (repl_sync.c) brings it
 *     level. The stream stops (tx->gap) only until that pass has fixed its
 *     snapshot LSN: then it goes on from what the peer has applied if the
 *     WAL still holds it, else from the snapshot after a marker batch, and
 *     runs during the pass, ahead of the pass's items. The WAL keeps the
 *     peer's resync mark (and holds segments for its stream) until the pass
 *     completes; a pass cut short leaves the mark, so another pass follows.
 *     Acked LSNs and the cursor only rise.
 *   - Which versions the peer holds, by stamp (repl_held, for
 *     x-amz-replication-status): those below acked_hlc; while the mark is
 *     set, acks raise held_hlc instead, and those stamped in
 *     (resync_after_hlc, held_hlc) count too: written after the point the
 *     pass resumed the stream from, and acked; that point is stored in the
 *     index so a restart keeps it. Invariant: never a version the peer may
 *     lack (PROTOCOL.md section 7).
 *
 * Jobs run on engine worker threads and come back through engine_poll on
 * the loop. Every structure a job touches is reference-counted and can be
 * detached (repl_free, a dropped stream) while the job runs; the WAL reader
 * is guarded by a mutex so repl_free can close it before the engine closes
 * the WAL.
 */
#include "repl_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>
#include <openssl/rand.h>

#include "engine.h"
#include "store.h"
#include "wal.h"
#include "wal.pb-c.h"

#define ITEMS_PER_JOB 8
/* index meta key of a peer's resync_after_hlc (decimal; "0": none) */
#define RESYNC_AFTER_KEY "repl.resync_after.%u"

enum {
    SYNC_NONE = 0,
    SYNC_DIGEST,
    SYNC_BEGIN, /* resync: the WAL holds the stream's point, the marker */
    SYNC_PREP,
    SYNC_DESCEND, /* tree digests: children requests, level by level */
    SYNC_SUMMARY, /* version 3: what the peer holds in the differing leaves */
    SYNC_WALK,
    SYNC_DRAIN,
    SYNC_FINISH /* resync: the WAL's mark is being cleared */
};
#define LAG_SAMPLES 256
#define QUEUE_LOW   4

/* Object data being read for one request. */
typedef struct repl__src {
    int refs; /* the stream's, plus one while a read job runs */
    store *st;
    void *layout;
    size_t layout_len;
    store_reader *rd; /* read jobs only */
    uint64_t size, off;
    uint8_t *buf;
    size_t buf_len, buf_off;
    int reading, err;
    repl__conn *c; /* NULL once the stream is gone */
    int32_t stream_id;
    uint64_t sent;
    /* the data check (PROTOCOL.md section 6): each read job adds its chunk;
     * sent after the data */
    repl__dcheck dc;
    uint8_t trailer[REPL_DCHECK_MAX];
    size_t trailer_len, trailer_sent;
    int trailer_ready;
} repl__src;

typedef struct repl__item {
    struct repl__item *next;
    struct repl__tx *tx;
    uint64_t first, last;
    size_t n_records;
    mrd_buf head;
    uint64_t data_size;
    void *layout;
    size_t layout_len;
    repl__src *src;
    uint64_t cost;                    /* bytes counted in flight */
    int resync;                       /* anti-entropy: /repl/v1/resync */
    int marker;                       /* the resync start marker (last_lsn = the snapshot LSN) */
    uint32_t data_check;              /* REPL_DCHECK_*: what follows the data */
    uint8_t nonce[REPL_DCHECK_NONCE]; /* ... and its nonce (POLY1305) */
    uint64_t pass;                    /* resync items: the pass (sync_runs) that made them */
    uint64_t versions;
} repl__item;

struct repl__tx {
    repl_peer *p;
    int refs, detached;
    pthread_mutex_t mu;
    wal_reader *rd; /* under mu */

    uint64_t gen;
    int active, job_running, caught_up, needs_resync, reopen;
    uint32_t data_check; /* REPL_DCHECK_* our object data goes out with (on connect) */
    /* the stream cannot go on from read_from (past WAL retention): no
     * reader job until a resync pass resumes it (its marker's ack) */
    int gap;
    int read_turn;     /* the last job was a reader job: a pass's job goes next */
    uint64_t retry_ns; /* after a WAL read error: no reader job before this */
    uint64_t read_from;
    repl__item *q, *q_tail; /* live records */
    int q_n;
    repl__item *rq, *rq_tail; /* anti-entropy: sent only when no live item waits */
    int rq_n;
    int sync_paused;        /* a resync pass was cancelled: no automatic restart */
    uint64_t sync_retry_ns; /* a pass failed: no automatic restart before this */
    int sync_free_later;    /* digests of an ended pass, still used by a job */
    int inflight;
    uint64_t inflight_bytes;
    /* of those, anti-entropy requests: they may take half of each budget */
    int rs_inflight;
    uint64_t rs_inflight_bytes;
    uint64_t acked, saved;
    uint64_t batches, records, objects, data_bytes, errors;
    uint64_t superseded; /* puts left out by reader jobs (put_superseded) */
    /* object bytes the peer lacks (lag_scan): our records in (acked,
     * lag_bytes_at], one entry each in LSN order, popped as acks come */
    struct lag_ent *lagq;
    size_t lagq_head, lagq_n, lagq_cap;
    uint64_t lag_bytes, lag_bytes_at, lag_scan_ns;
    uint64_t lag_own; /* entries in lagq: records of ours (not replicated applies) */
    uint64_t lag_gen; /* bumped when lagq is cleared: a running scan's result is stale */
    int lag_scan_running, lag_bytes_partial;
    char error[128];
    /* anti-entropy (see repl_sync.c) */
    int sync_state, sync_resync;
    int sync_begun; /* resync: the stream runs from the pass's point */
    uint64_t sync_l0, sync_leaves, sync_sent, sync_outstanding;
    uint64_t sync_buckets;           /* bucket records sent (sync_sent counts versions only) */
    uint64_t sync_estimate;          /* versions in the differing leaves (estimated) */
    char sync_only[REPL_BUCKET_MAX]; /* a pass limited to one bucket; "" = all */
    repl__bdigest *sync_mine, *sync_theirs;
    size_t sync_n, sync_n_theirs, sync_bucket;
    /* tree digests (version 2): the peer's roots, the nodes still to
     * compare (pend from pend_off; next: the level below), a children
     * request in flight, the subtrees to ask the peer to push */
    int sync_tree, sync_push, sync_asking;
    repl__tnodes *sync_roots;
    size_t sync_n_roots, sync_pend_off, sync_asked;
    repl__tpend sync_pend, sync_next;
    repl__dreq sync_pushq;
    repl__bdigest *push_wait; /* a push asked before our session was up */
    size_t push_wait_n;
    uint64_t sync_digest_bytes, sync_rounds;
    char sync_push_result[96];
    /* version 3: the peer's versions in the differing leaves; the walk
     * skips ours that would change nothing there (sync_skipped) */
    repl__peerset *sync_peerset;
    uint64_t sync_skipped;
    char sync_sum_result[96];
    /* its pages: the walk stops where a page ends (sync_page_*: the bucket
     * and key it stopped at) and asks for the next one from its position;
     * sync_sum_stop once a page made no progress (a peer without paging
     * answers the first page again) */
    uint64_t sync_sum_pages, sync_sum_held;
    int sync_sum_stop;
    char sync_page_bucket[REPL_BUCKET_MAX], sync_page_key[REPL_KEY_MAX];
    char sync_page_vid[REPL_VID_MAX];
    int sync_bucket_started;
    char sync_key[REPL_KEY_MAX], sync_vid[REPL_VID_MAX];
    int sync_have_pos;
    uint64_t sync_runs, sync_last_ns, sync_started_ns;
    char sync_result[128];
    /* when each durable LSN was first seen: lag in time is the age of the
     * oldest sample above the ack */
    struct {
        uint64_t lsn, ns, hlc;
    } seen[LAG_SAMPLES];
    uint64_t acked_hlc; /* the peer has applied every local write stamped before this */
    uint64_t held_hlc;  /* what acked_hlc would be, while a resync fills the holes */
    /* While the peer needs a resync: every local write stamped after this
     * has an LSN above the point from which our stream to it runs without
     * holes, so those stamped below held_hlc too are applied there
     * (repl_held). 0 until a pass resumes the stream (or the value stored
     * by a pass of an earlier run is read back). Set when
     * a pass begins, before its marker is queued (the marker is the only
     * thing that moves the peer's applied LSN over records it lacks), kept
     * by a pass without a marker, cleared when a pass completes. Stored
     * (RESYNC_AFTER_KEY) before it is used and cleared before the mark is,
     * so a restart picks it up again (resync_loaded: read once). */
    uint64_t resync_after_hlc;
    int resync_loaded;
    /* bandwidth limit: a token bucket of bytes, refilled at bw_bps */
    uint64_t bw_bps;
    double tokens;
    uint64_t tokens_ns;
    int32_t throttled[REPL_INFLIGHT_MAX + 1]; /* streams deferred for tokens */
    int n_throttled;
    repl__conn *throttled_conn;
    unsigned seen_head, seen_n;
};

static void sync_pump(repl_peer *p);
static void sync_descend(repl_peer *p);
static void push_wait_start(repl_peer *p);
static void bw_refill(struct repl__tx *tx);
static void sync_finish(repl_peer *p, const char *result);
static void sync_free_digests(struct repl__tx *tx);
static void sync_reset(struct repl__tx *tx);
static void sync_acked(repl_peer *p, repl__item *it);
static void stream_broken(repl_peer *p);

/* ---- small helpers ------------------------------------------------------ */

/* Appends the chain first..last (count items) to the queue head/tail/n. */
static void
chain_append(repl__item **head, repl__item **tail, int *n, repl__item *first, repl__item *last,
             int count)
{
    if (!first)
        return;
    if (*tail)
        (*tail)->next = first;
    else
        *head = first;
    *tail = last;
    *n += count;
}

void
repl__tx_pump_flush(repl_peer *p)
{
    repl__tx_pump(p);
    if (p->conn) {
        repl__conn *c = p->conn;
        repl__conn_flush(c);
        if (c->dead)
            repl__conn_reap(c);
    }
}

static void
item_free(repl__item *it)
{
    if (!it)
        return;
    mrd_buf_free(&it->head);
    free(it->layout);
    free(it);
}

static void
src_unref(repl__src *s)
{
    if (--s->refs > 0)
        return;
    store_reader_close(s->rd);
    repl__dcheck_free(&s->dc);
    free(s->layout);
    free(s->buf);
    free(s);
}

static void
tx_unref(struct repl__tx *tx)
{
    if (--tx->refs > 0)
        return;
    sync_free_digests(tx);
    pthread_mutex_destroy(&tx->mu);
    free(tx->lagq);
    repl__digest_free(tx->push_wait, tx->push_wait_n);
    free(tx);
}

static void
queue_clear(struct repl__tx *tx)
{
    while (tx->q) {
        repl__item *n = tx->q->next;
        item_free(tx->q);
        tx->q = n;
    }
    tx->q_tail = NULL;
    tx->q_n = 0;
    while (tx->rq) {
        repl__item *n = tx->rq->next;
        item_free(tx->rq);
        tx->rq = n;
    }
    tx->rq_tail = NULL;
    tx->rq_n = 0;
}

/* ---- object data --------------------------------------------------------- */

static void
src_read_work(void *arg)
{
    repl__src *s = arg;
    uint64_t want = s->size - s->off;
    size_t n = 0;
    int rc = 0;

    if (want > REPL_CHUNK)
        want = REPL_CHUNK;
    if (!s->rd)
        rc = store_reader_open(s->st, s->layout, s->layout_len, &s->rd);
    if (rc == 0)
        rc = store_reader_read(s->rd, s->off, s->buf, (size_t)want, &n);
    if (rc == 0 && n != want)
        rc = MRD_ECORRUPT; /* shorter than its record says */
    if (rc != 0) {
        s->err = rc;
        return;
    }
    repl__dcheck_update(&s->dc, s->buf, n);
    s->off += n;
    s->buf_len = n;
    s->buf_off = 0;
}

static void
src_read_done(void *arg)
{
    repl__src *s = arg;

    s->reading = 0;
    if (s->c) {
        repl__conn *c = s->c;
        if (s->err)
            MRD_WARN("repl.send.read_fail", "remote=%s error=\"%s\"", c->remote,
                     mrd_strerror(s->err));
        repl__conn_resume(c, s->stream_id);
        src_unref(s);
        if (c->dead)
            repl__conn_reap(c);
        return;
    }
    src_unref(s);
}

static void
src_read_start(repl *r, repl__src *s)
{
    if (s->reading || s->err || s->off >= s->size)
        return;
    s->reading = 1;
    s->refs++;
    if (engine_run(r->eng, src_read_work, src_read_done, s) != 0) {
        s->reading = 0;
        s->refs--;
        s->err = MRD_ESHUTDOWN;
    }
}

/* After the last data byte (every read job done): the data check, when
 * the peer takes one (PROTOCOL.md section 6), then the end of the body.
 * A check that cannot be computed fails the request (REPL__BODY_FAIL: the
 * stream is reset, the connection dropped and the records sent again from
 * the peer's ack) rather than end the body without it, which the peer
 * could only refuse as a truncated request, and we would not know why. */
static long
src_trailer(repl__item *it, uint8_t *buf, size_t len, int *eof)
{
    repl__src *src = it->src;
    repl_peer *p = it->tx->p;
    size_t n;
    int rc;

    if (!src->trailer_ready) {
        rc = repl__dcheck_final(&src->dc, src->trailer, &src->trailer_len);
        if (rc == 0 && src->dc.kind != REPL_DCHECK_NONE && p->r->test_dcheck_faults > 0) {
            p->r->test_dcheck_faults--;
            rc = -EIO;
        }
        if (rc < 0) {
            src->err = rc;
            MRD_ERROR("repl.data_check_failed",
                      "peer=%s first=%llu last=%llu check=%s error=\"%s\" reason=\"the data check "
                      "could not be computed: the request is failed and sent again, never sent "
                      "without its check\"",
                      p->name, (unsigned long long)it->first, (unsigned long long)it->last,
                      src->dc.kind == REPL_DCHECK_CRC32C ? "crc32c" : "poly1305", mrd_strerror(rc));
            return REPL__BODY_FAIL;
        }
        src->trailer_ready = 1;
    }
    n = src->trailer_len - src->trailer_sent;
    if (n > len)
        n = len;
    memcpy(buf, src->trailer + src->trailer_sent, n);
    src->trailer_sent += n;
    if (src->trailer_sent == src->trailer_len)
        *eof = 1;
    return (long)n;
}

long
repl__tx_body(repl__conn *c, repl__stream *s, uint8_t *buf, size_t len, int *eof)
{
    repl__item *it = s->ctx;
    repl__src *src = it ? it->src : NULL;
    size_t n;

    if (!src) {
        *eof = 1;
        return 0;
    }
    /* A read job owns buf, buf_len, off and err until src_read_done, which
     * resumes the stream (ThreadSanitizer caught this being read meanwhile
     * when nghttp2 polled the stream for another reason). */
    if (src->reading)
        return REPL__BODY_DEFERRED;
    if (src->err)
        return REPL__BODY_FAIL;
    if (src->sent == src->size)
        return src_trailer(it, buf, len, eof);
    n = src->buf_len - src->buf_off;
    if (n > len)
        n = len;
    if (it->tx->bw_bps && n) {
        struct repl__tx *tx = it->tx;
        bw_refill(tx);
        /* wait for a whole frame's worth (or the rest): trickling the odd
         * byte as it accrues would cost a 9-byte frame header per byte */
        if (tx->tokens < (double)(n < 16384 ? n : 16384)) {
            for (int i = 0; i <= REPL_INFLIGHT_MAX; i++) {
                if (!tx->throttled[i] || tx->throttled[i] == s->id) {
                    tx->throttled[i] = s->id;
                    break;
                }
            }
            tx->n_throttled = 1;
            tx->throttled_conn = c;
            return REPL__BODY_DEFERRED;
        }
        if ((double)n > tx->tokens)
            n = (size_t)tx->tokens + 1;
        tx->tokens -= (double)n;
    }
    memcpy(buf, src->buf + src->buf_off, n);
    src->buf_off += n;
    src->sent += n;
    if (src->sent == src->size) {
        long t = src_trailer(it, buf + n, len - n, eof);
        return t < 0 ? t : (long)n + t; /* a failed check: the data sent so far is moot */
    }
    if (src->buf_off == src->buf_len)
        src_read_start(c->r, src);
    return n ? (long)n : REPL__BODY_DEFERRED;
}

/* ---- bytes behind ---------------------------------------------------------- */

/*
 * How many bytes of object data the peer still lacks, and how many records
 * of ours: the WAL between the acked LSN and the durable end holds our
 * records and the replicated applies of other sites' writes (never sent),
 * so durable - acked overstates. A scan job (an engine worker: WAL segments
 * are files) reads what became durable since the last scan, at most once a
 * second while the peer lags, and queues one entry (LSN, object bytes) per
 * record of ours; acks pop entries from the front. So each record is read
 * once however long the peer lags and however often its ack moves (a
 * catch-up used to re-read the whole remaining range every second). At
 * most LAG_SCAN_MAX entries are queued (16 bytes each): beyond that the
 * figures are a lower bound, flagged partial, until acks make room.
 */
#define LAG_SCAN_MAX 200000

struct lag_ent {
    uint64_t lsn, bytes;
};

typedef struct lag_job {
    struct repl__tx *tx;
    wal *w;
    uint64_t from, to, at, gen; /* read [from, to]; got through at */
    size_t max;                 /* entries it may add */
    struct lag_ent *ents;
    size_t n, cap;
    int partial;
} lag_job;

static void
lag_work(void *arg)
{
    lag_job *j = arg;
    wal_reader *rd = NULL;

    j->at = j->from - 1;
    if (wal_reader_open(j->w, j->from, &rd) != 0) {
        j->partial = 1;
        return;
    }
    wal_reader_bare(rd, WAL_REC_REPLICATED_APPLY); /* not ours: counted as nothing */
    for (;;) {
        wal_entry e;
        Meridian__WalRecord *rec = NULL;
        uint64_t bytes = 0;

        if (wal_reader_next(rd, &e) <= 0 || e.lsn > j->to)
            break;
        if (!wal_rec_forwarded(e.type)) {
            j->at = e.lsn;
            continue;
        }
        if (j->n == j->max) {
            j->partial = 1;
            break;
        }
        if ((e.type == WAL_REC_OBJECT_PUT || e.type == WAL_REC_MULTIPART_COMPLETE) &&
            wal_record_decode(e.type, e.payload, e.len, &rec) == 0) {
            if (rec->body_case == MERIDIAN__WAL_RECORD__BODY_OBJECT_PUT)
                bytes = rec->object_put->size;
            else if (rec->body_case == MERIDIAN__WAL_RECORD__BODY_MULTIPART_COMPLETE)
                bytes = rec->multipart_complete->size;
            wal_record_free(rec);
        }
        if (j->n == j->cap) {
            size_t cap = j->cap ? j->cap * 2 : 256;
            struct lag_ent *v = realloc(j->ents, cap * sizeof(*v));
            if (!v) {
                j->partial = 1;
                break;
            }
            j->ents = v;
            j->cap = cap;
        }
        j->ents[j->n++] = (struct lag_ent){e.lsn, bytes};
        j->at = e.lsn;
    }
    wal_reader_close(rd);
}

static void
lagq_clear(struct repl__tx *tx)
{
    tx->lagq_head = tx->lagq_n = 0;
    tx->lag_bytes = tx->lag_own = 0;
    tx->lag_bytes_partial = 0;
    tx->lag_gen++;
}

/* Appends a job's entries (in LSN order, after everything queued). */
static int
lagq_push(struct repl__tx *tx, const struct lag_ent *e, size_t n)
{
    if (tx->lagq_n + n > tx->lagq_cap) {
        size_t cap = tx->lagq_cap ? tx->lagq_cap : 256;
        struct lag_ent *v;
        while (cap < tx->lagq_n + n)
            cap *= 2;
        if (!(v = malloc(cap * sizeof(*v))))
            return -ENOMEM;
        for (size_t i = 0; i < tx->lagq_n; i++) /* unwrap the ring */
            v[i] = tx->lagq[(tx->lagq_head + i) % tx->lagq_cap];
        free(tx->lagq);
        tx->lagq = v;
        tx->lagq_cap = cap;
        tx->lagq_head = 0;
    }
    for (size_t i = 0; i < n; i++) {
        tx->lagq[(tx->lagq_head + tx->lagq_n++) % tx->lagq_cap] = e[i];
        tx->lag_bytes += e[i].bytes;
        tx->lag_own++;
    }
    return 0;
}

static void
lag_done(void *arg)
{
    lag_job *j = arg;
    struct repl__tx *tx = j->tx;

    tx->lag_scan_running = 0;
    if (!tx->detached && j->gen == tx->lag_gen && j->from == tx->lag_bytes_at + 1) {
        if (lagq_push(tx, j->ents, j->n) == 0) {
            tx->lag_bytes_at = j->at;
            tx->lag_bytes_partial = j->partial;
        } else {
            tx->lag_bytes_partial = 1;
        }
    }
    tx_unref(tx);
    free(j->ents);
    free(j);
}

static void
lag_scan(struct repl__tx *tx, uint64_t durable)
{
    repl *r = tx->p->r;
    uint64_t now = mrd_clock_mono_ns();
    lag_job *j;

    if (durable <= tx->acked) {
        if (tx->lagq_n || tx->lag_bytes_partial)
            lagq_clear(tx);
        tx->lag_bytes_at = durable;
        return;
    }
    while (tx->lagq_n && tx->lagq[tx->lagq_head].lsn <= tx->acked) {
        tx->lag_bytes -= tx->lagq[tx->lagq_head].bytes;
        tx->lag_own--;
        tx->lagq_head = (tx->lagq_head + 1) % tx->lagq_cap;
        tx->lagq_n--;
    }
    if (tx->lag_bytes_at < tx->acked) {
        /* acked beyond what was read (a reconnect's Hello, a resync): read on from there */
        lagq_clear(tx);
        tx->lag_bytes_at = tx->acked;
    }
    if (tx->lag_scan_running || now - tx->lag_scan_ns < 1000000000ull ||
        durable == tx->lag_bytes_at || tx->lagq_n >= LAG_SCAN_MAX)
        return;
    if (!(j = calloc(1, sizeof(*j))))
        return;
    j->tx = tx;
    j->w = engine_wal(r->eng);
    j->from = tx->lag_bytes_at + 1;
    j->to = durable;
    j->gen = tx->lag_gen;
    j->max = LAG_SCAN_MAX - tx->lagq_n;
    tx->refs++;
    tx->lag_scan_running = 1;
    tx->lag_scan_ns = now;
    if (engine_run(r->eng, lag_work, lag_done, j) != 0) {
        tx->refs--;
        tx->lag_scan_running = 0;
        free(j);
    }
}

/* ---- the reader job ------------------------------------------------------ */

typedef struct tx_job {
    struct repl__tx *tx;
    wal *w;
    store *st;
    uint32_t peer;
    uint64_t gen;
    int reopen;
    uint64_t from, save;
    int save_rc;
    repl__item *items, *tail;
    int n_items;
    uint64_t next;
    int caught_up, rc;
    uint32_t data_check; /* tx->data_check when the job started */
    uint64_t superseded; /* puts left out: their version is gone here */
    uint64_t skipped_to; /* skip_gone told the peer of a range up to here */
    char err[160];
} tx_job;

/* Record copies of the batch being cut. */
typedef struct cut {
    uint64_t first, last;
    int open, resync;
    repl__rec recs[REPL_BATCH_RECORDS];
    size_t n, bytes;
} cut;

static int
emit(tx_job *j, cut *b, void *layout, size_t layout_len)
{
    repl__item *it = calloc(1, sizeof(*it));
    int rc;

    if (!it)
        return -ENOMEM;
    if (b->n && b->recs[b->n - 1].data_size) {
        it->data_size = b->recs[b->n - 1].data_size;
        it->layout = layout;
        it->layout_len = layout_len;
        b->recs[b->n - 1].data_check = j->data_check;
        if (j->data_check == REPL_DCHECK_POLY1305) {
            if (RAND_bytes(it->nonce, (int)sizeof(it->nonce)) != 1) {
                free(it);
                return -EIO;
            }
            b->recs[b->n - 1].data_nonce = it->nonce;
            b->recs[b->n - 1].data_nonce_len = sizeof(it->nonce);
        }
    }
    rc = repl__batch_pack(b->first, b->last, b->recs, b->n, &it->head);
    if (rc != 0) {
        free(it);
        return rc;
    }
    it->tx = j->tx;
    it->resync = b->resync;
    it->data_check = it->data_size ? j->data_check : REPL_DCHECK_NONE;
    it->versions = b->n;
    it->first = b->first;
    it->last = b->last;
    it->n_records = b->n;
    for (size_t i = 0; i < b->n; i++)
        free((void *)b->recs[i].payload);
    b->n = b->bytes = 0;
    b->open = 0;
    chain_append(&j->items, &j->tail, &j->n_items, it, it, 1);
    return 0;
}

/*
 * Whether the version an object put created is gone from this site: the
 * index has applied the record (so the check is not racing the write) and no
 * longer holds the version. That happens when the key was overwritten or
 * deleted here before the put was sent: the index dropped the version and
 * its shards were freed, so its data cannot be sent any more. Such a put is
 * left out of the batch (the batch still covers its LSN, so the peer moves
 * past it): a later record of ours, already in the WAL, overwrote or deleted
 * it, and its version vector dominates the skipped one, so the peer ends in
 * the same state as if it had applied both (docs/conflicts.md). A version
 * that lost a concurrent-write decision is kept, so it is still found.
 */
static int
put_superseded(store *st, const Meridian__ObjectPut *op, uint64_t lsn)
{
    store_version_rec *vr = NULL;
    uint64_t applied = 0;
    int rc;

    if (!st || store_index_last_lsn(st, &applied) != 0 || applied < lsn)
        return 0;
    rc = store_index_get(st, op->bucket, op->key, op->version_id, &vr);
    if (rc == 0 && (store_version_rec_get(vr)->flags & ENGINE_VF_TOMBSTONE))
        rc = MRD_ENOTFOUND; /* removed by id: its OBJECT_DELETE follows */
    store_version_rec_free(vr);
    return rc == MRD_ENOTFOUND;
}

/* Adds WAL entry e to the batch; *with_data when it is an object put whose
 * data must follow (then *layout holds a copy of its local layout). A put
 * whose version is gone here (put_superseded) is not added: *skipped. */
static int
add_entry_one(store *st, cut *b, const wal_entry *e, int *with_data, int *skipped, void **layout,
              size_t *layout_len)
{
    Meridian__WalRecord *rec = NULL;
    repl__rec *r = &b->recs[b->n];
    store_layout_info li;
    int rc;

    *with_data = *skipped = 0;
    memset(r, 0, sizeof(*r));
    r->lsn = e->lsn;
    r->type = e->type;
    if (e->type == WAL_REC_OBJECT_PUT) {
        if ((rc = wal_record_decode(e->type, e->payload, e->len, &rec)) != 0)
            return rc;
        rc = store_layout_describe(rec->object_put->layout.data, rec->object_put->layout.len, &li);
        if (rc == 0 && !li.is_inline && put_superseded(st, rec->object_put, e->lsn)) {
            wal_record_free(rec);
            *skipped = 1;
            return 0;
        }
        if (rc == 0 && !li.is_inline) {
            /* the data goes in the body; the layout is ours alone */
            Meridian__ObjectPut *op = rec->object_put;
            size_t n;
            if (!(*layout = malloc(op->layout.len))) {
                wal_record_free(rec);
                return -ENOMEM;
            }
            memcpy(*layout, op->layout.data, op->layout.len);
            *layout_len = op->layout.len;
            op->layout.len = 0;
            n = meridian__wal_record__get_packed_size(rec);
            if (!(r->payload = malloc(n ? n : 1))) {
                free(*layout);
                wal_record_free(rec);
                return -ENOMEM;
            }
            meridian__wal_record__pack(rec, (uint8_t *)r->payload);
            r->len = n;
            r->data_size = op->size;
            *with_data = 1;
        }
        wal_record_free(rec);
        if (rc != 0)
            return rc;
    }
    if (!*with_data) {
        if (!(r->payload = malloc(e->len ? e->len : 1)))
            return -ENOMEM;
        memcpy((void *)r->payload, e->payload, e->len);
        r->len = e->len;
    }
    b->n++;
    b->bytes += r->len;
    return 0;
}

/* add_entry_one, after turning a completed multipart upload into the object
 * put peers apply: the object travels whole, read through its PARTS layout. */
static int
add_entry(store *st, cut *b, const wal_entry *e, int *with_data, int *skipped, void **layout,
          size_t *layout_len)
{
    wal_entry put = *e;
    void *buf = NULL;
    int rc;

    if (e->type == WAL_REC_MULTIPART_COMPLETE) {
        if ((rc = engine_record_mpu_as_put(e->payload, e->len, &buf, &put.len)) != 0)
            return rc;
        put.type = WAL_REC_OBJECT_PUT;
        put.payload = buf;
    }
    rc = add_entry_one(st, b, &put, with_data, skipped, layout, layout_len);
    free(buf);
    return rc;
}

static void
read_records(tx_job *j, wal_reader *rd)
{
    cut *b = calloc(1, sizeof(*b));
    uint64_t head_bytes = 0;
    int rc = 0;

    if (!b) {
        j->rc = -ENOMEM;
        return;
    }
    while (j->n_items < ITEMS_PER_JOB && head_bytes < 8 * REPL_BATCH_BYTES) {
        wal_entry e;
        void *layout = NULL;
        size_t layout_len = 0;
        int with_data = 0, skipped = 0;

        rc = wal_reader_next(rd, &e);
        if (rc == 0) {
            j->caught_up = 1;
            break;
        }
        if (rc < 0) {
            snprintf(j->err, sizeof(j->err), "%s", wal_reader_error(rd));
            break;
        }
        if (!b->open) {
            b->open = 1;
            b->first = e.lsn;
        }
        b->last = e.lsn;
        if (!wal_rec_forwarded(e.type))
            continue; /* replicated applies and local purges stay here */
        if ((rc = add_entry(j->st, b, &e, &with_data, &skipped, &layout, &layout_len)) != 0)
            break;
        if (skipped) {
            j->superseded++;
            continue;
        }
        if (with_data || b->bytes >= REPL_BATCH_BYTES || b->n == REPL_BATCH_RECORDS) {
            head_bytes += b->bytes;
            if ((rc = emit(j, b, layout, layout_len)) != 0) {
                free(layout);
                break;
            }
        }
    }
    if (rc >= 0 && b->open)
        rc = emit(j, b, NULL, 0);
    for (size_t i = 0; i < b->n; i++)
        free((void *)b->recs[i].payload);
    if (rc < 0)
        j->rc = rc;
    j->next = wal_reader_position(rd);
    free(b);
}

/*
 * The WAL no longer holds what this job was to read next. When its size cap
 * moved the peer's cursor over segments of replicated applies only (which
 * no peer is sent), everything from there to the cursor is either such a
 * record or one the peer has applied (wal_peer_status.skip_lo): the peer is
 * told so by one empty range, and reading goes on after the cursor, rather
 * than a resync of a peer that lacks nothing. The WAL saves skip_lo with
 * the cursor, so this also holds after a restart here, when the peer
 * announces the point it had reached before the move. A range starting
 * below skip_lo (a peer that announced less than it had acked) still fails.
 */
static void
skip_gone(tx_job *j)
{
    wal_peer_status ws;
    uint64_t from = j->tail ? j->tail->last + 1 : j->from;
    cut *b;

    if (j->rc != MRD_ENOTFOUND || wal_cursor_get(j->w, j->peer, &ws) != 0 || ws.needs_resync ||
        !ws.skip_lo || from < ws.skip_lo || from > ws.acked_lsn)
        return;
    if (!(b = calloc(1, sizeof(*b))))
        return;
    b->open = 1;
    b->first = from;
    b->last = ws.acked_lsn;
    if (emit(j, b, NULL, 0) == 0) {
        j->rc = 0;
        j->next = ws.acked_lsn + 1;
        j->skipped_to = ws.acked_lsn;
        wal_reader_close(j->tx->rd); /* the next job opens after the range */
        j->tx->rd = NULL;
    }
    free(b);
}

static void
tx_job_work(void *arg)
{
    tx_job *j = arg;
    struct repl__tx *tx = j->tx;

    if (j->save)
        j->save_rc = wal_cursor_set(j->w, j->peer, j->save);
    pthread_mutex_lock(&tx->mu);
    if (tx->detached) {
        pthread_mutex_unlock(&tx->mu);
        return;
    }
    if (j->reopen || !tx->rd) {
        wal_reader_close(tx->rd);
        tx->rd = NULL;
        j->rc = wal_reader_open(j->w, j->from, &tx->rd);
        if (j->rc != 0) {
            skip_gone(j);
            pthread_mutex_unlock(&tx->mu);
            return;
        }
        wal_reader_bare(tx->rd, WAL_REC_REPLICATED_APPLY); /* never forwarded */
    }
    read_records(j, tx->rd);
    skip_gone(j);
    pthread_mutex_unlock(&tx->mu);
}

static void
tx_job_done(void *arg)
{
    tx_job *j = arg;
    struct repl__tx *tx = j->tx;
    repl_peer *p = tx->p;

    tx->job_running = 0;
    if (tx->sync_free_later)
        sync_free_digests(tx);
    if (tx->detached || j->gen != tx->gen) {
        while (j->items) {
            repl__item *n = j->items->next;
            item_free(j->items);
            j->items = n;
        }
        goto out;
    }
    if (j->save && j->save_rc == 0 && j->save > tx->saved)
        tx->saved = j->save;
    else if (j->save && j->save_rc != 0)
        MRD_WARN("repl.send.cursor_fail", "peer=%s lsn=%llu error=\"%s\"", p->name,
                 (unsigned long long)j->save, mrd_strerror(j->save_rc));
    if (j->rc == MRD_ENOTFOUND) {
        if (!tx->needs_resync)
            MRD_ERROR("repl.peer.needs_resync",
                      "peer=%s from_lsn=%llu reason=\"the WAL no longer holds the records the "
                      "peer needs; anti-entropy must bring it level\"",
                      p->name, (unsigned long long)j->from);
        tx->needs_resync = 1;
        stream_broken(p);
        snprintf(tx->error, sizeof(tx->error), "needs resync from LSN %llu",
                 (unsigned long long)j->from);
    } else if (j->rc != 0) {
        tx->errors++;
        snprintf(tx->error, sizeof(tx->error), "WAL read: %s %.60s", mrd_strerror(j->rc), j->err);
        MRD_ERROR("repl.send.wal_fail", "peer=%s error=\"%s\"", p->name, tx->error);
        tx->reopen = 1; /* retried from read_from, a second from now */
        tx->retry_ns = mrd_clock_mono_ns() + 1000000000ull;
    } else {
        tx->reopen = 0;
    }
    tx->superseded += j->superseded;
    if (j->skipped_to) {
        tx->reopen = 1;
        MRD_INFO("repl.send.skip",
                 "peer=%s to_lsn=%llu reason=\"the WAL's size cap dropped "
                 "segments holding only replicated applies, which the peer is never sent\"",
                 p->name, (unsigned long long)j->skipped_to);
    }
    chain_append(&tx->q, &tx->q_tail, &tx->q_n, j->items, j->tail, j->n_items);
    j->items = NULL;
    if (j->rc == 0) {
        tx->read_from = j->next;
        tx->caught_up = j->caught_up;
    }
    repl__tx_pump_flush(p);
out:
    tx_unref(tx);
    free(j);
}

/* The stream cannot go on from where it is: reading stops until a resync
 * pass resumes it. A pass that had resumed it already (the size cap dropped
 * the peer again) cannot finish: it ends, and the next one begins anew. */
static void
stream_broken(repl_peer *p)
{
    struct repl__tx *tx = p->tx;

    tx->gap = 1;
    if (tx->sync_state != SYNC_NONE && tx->sync_resync && tx->sync_begun) {
        MRD_WARN("repl.sync.fail",
                 "peer=%s reason=\"the stream fell past WAL retention again during the pass\"",
                 p->name);
        sync_finish(p, "failed: the stream fell past WAL retention again; a new pass follows");
    }
}

static void
start_job(struct repl__tx *tx)
{
    repl *r = tx->p->r;
    tx_job *j = calloc(1, sizeof(*j));

    if (!j)
        return;
    j->tx = tx;
    j->w = engine_wal(r->eng);
    j->st = engine_store(r->eng);
    j->peer = tx->p->id;
    j->gen = tx->gen;
    j->data_check = tx->data_check;
    j->reopen = tx->reopen;
    j->from = tx->read_from;
    j->save = tx->acked > tx->saved ? tx->acked : 0;
    tx->refs++;
    tx->job_running = 1;
    tx->read_turn = 1;
    if (engine_run(r->eng, tx_job_work, tx_job_done, j) != 0) {
        tx->refs--;
        tx->job_running = 0;
        free(j);
    }
}

/* ---- bandwidth limit ---------------------------------------------------------- */

/* Refills the bucket; the burst is a tenth of a second of rate (at least
 * 256 KiB), so the rate holds over any window longer than that. */
static void
bw_refill(struct repl__tx *tx)
{
    uint64_t now = mrd_clock_mono_ns();
    double burst = tx->bw_bps / 10.0 < 262144 ? 262144 : tx->bw_bps / 10.0;

    if (!tx->bw_bps)
        return;
    if (tx->tokens_ns)
        tx->tokens += (double)(now - tx->tokens_ns) / 1e9 * (double)tx->bw_bps;
    if (tx->tokens > burst)
        tx->tokens = burst;
    tx->tokens_ns = now;
}

/* Streams that stopped for lack of tokens go on once there are some. */
static void
bw_resume(struct repl__tx *tx)
{
    repl__conn *c = tx->throttled_conn;

    if (!tx->n_throttled || tx->tokens <= 0)
        return;
    tx->n_throttled = 0;
    tx->throttled_conn = NULL;
    if (!c || c != tx->p->conn || c->dead)
        return;
    for (int i = 0; i <= REPL_INFLIGHT_MAX; i++)
        if (tx->throttled[i])
            nghttp2_session_resume_data(c->h2, tx->throttled[i]);
    memset(tx->throttled, 0, sizeof(tx->throttled));
}

/* ---- anti-entropy: the sender's side ---------------------------------------- */

static void sync_ask_page(repl_peer *p);

static void
sync_free_digests(struct repl__tx *tx)
{
    repl__digest_free(tx->sync_mine, tx->sync_n);
    repl__digest_free(tx->sync_theirs, tx->sync_n_theirs);
    repl__tnodes_free(tx->sync_roots, tx->sync_n_roots);
    repl__tpend_free(&tx->sync_pend);
    repl__tpend_free(&tx->sync_next);
    repl__dreq_free(&tx->sync_pushq);
    repl__peerset_free(tx->sync_peerset);
    tx->sync_peerset = NULL;
    tx->sync_roots = NULL;
    tx->sync_n_roots = tx->sync_pend_off = 0;
    tx->sync_mine = tx->sync_theirs = NULL;
    tx->sync_n = tx->sync_n_theirs = 0;
    tx->sync_free_later = 0;
}

/* A pass starts without summaries: none asked, no page in. */
static void
sync_sum_reset(struct repl__tx *tx)
{
    tx->sync_skipped = tx->sync_sum_pages = tx->sync_sum_held = 0;
    tx->sync_sum_stop = 0;
    tx->sync_sum_result[0] = '\0';
}

/* Ends a pass. A prep or walk job may be using the digests on a worker: then
 * they are freed when it comes back (sync_job_done). */
static void
sync_reset(struct repl__tx *tx)
{
    if (tx->job_running)
        tx->sync_free_later = 1;
    else
        sync_free_digests(tx);
    tx->sync_state = SYNC_NONE;
    tx->sync_begun = 0;
    tx->sync_outstanding = 0;
    tx->sync_asking = 0;
    tx->sync_last_ns = mrd_clock_mono_ns();
}

int
repl__sync_cancel(repl_peer *p)
{
    struct repl__tx *tx = p->tx;

    if (!tx || tx->sync_state == SYNC_NONE)
        return MRD_ENOTFOUND;
    while (tx->rq) {
        repl__item *n = tx->rq->next;
        item_free(tx->rq);
        tx->rq = n;
    }
    tx->rq_tail = NULL;
    tx->rq_n = 0;
    if (tx->sync_resync)
        tx->sync_paused = 1; /* until resync start: the peer stays behind */
    sync_finish(p, "cancelled");
    return 0;
}

int
repl__sync_start_bucket(repl_peer *p, int resync, const char *bucket)
{
    struct repl__tx *tx = p->tx;
    int rc;

    if (bucket && strlen(bucket) >= REPL_BUCKET_MAX)
        return MRD_EINVAL;
    rc = repl__sync_start(p, resync);
    if (rc == 0 && bucket && bucket[0]) {
        if (tx->sync_resync)
            MRD_WARN("repl.sync.bucket_ignored",
                     "peer=%s bucket=%s reason=\"the peer is past WAL retention: only a pass over "
                     "every bucket can bring it level\"",
                     p->name, bucket);
        else
            snprintf(tx->sync_only, sizeof(tx->sync_only), "%s", bucket);
    }
    return rc;
}

int
repl__sync_start(repl_peer *p, int resync)
{
    struct repl__tx *tx = p->tx;
    repl__conn *c = p->conn;
    repl__stream *s;
    int rc;

    if (!tx || !tx->active || !c || !p->hello_done || c->dead)
        return MRD_ESHUTDOWN;
    if (tx->sync_state != SYNC_NONE || tx->sync_free_later)
        return MRD_EBUSY;
    tx->sync_paused = 0;
    if (tx->needs_resync)
        resync = 1; /* a peer past retention can only be brought level by a resync */
    if (!(s = repl__stream_new(c, REPL__ST_DIGEST)))
        return -ENOMEM;
    /* version 2: the roots first (a peer without trees answers version 1) */
    rc = repl__dreq_encode(&(repl__dreq){.tree = 1}, &s->out);
    if (rc == 0)
        rc = repl__submit_request(c, s, REPL_PATH_DIGEST);
    if (rc < 0) {
        repl__stream_unlink_free(c, s);
        return rc;
    }
    tx->sync_digest_bytes = s->out.len;
    tx->sync_rounds = 1;
    tx->sync_tree = tx->sync_push = tx->sync_asking = 0;
    tx->sync_push_result[0] = '\0';
    tx->sync_state = SYNC_DIGEST;
    tx->sync_resync = resync;
    tx->sync_begun = 0;
    tx->sync_sent = tx->sync_buckets = tx->sync_leaves = tx->sync_estimate = 0;
    sync_sum_reset(tx);
    tx->sync_only[0] = '\0';
    tx->sync_bucket = 0;
    tx->sync_bucket_started = 0;
    tx->sync_have_pos = 0;
    tx->sync_started_ns = mrd_clock_mono_ns();
    tx->sync_runs++;
    MRD_INFO("repl.sync.start", "peer=%s mode=%s", p->name, resync ? "resync" : "check");
    return 0;
}

typedef struct sync_job {
    struct repl__tx *tx;
    store *st;
    uint64_t gen;
    int prep; /* 1: digest + diff; 0: walk */
    int rc;
    /* walk */
    repl__item *items, *tail;
    int n_items;
    int done;
    int need_page; /* stopped where the peer's summaries page ends */
    cut *b;
    tx_job *emitter;     /* emit() works on a tx_job's item list */
    uint32_t data_check; /* tx->data_check when the job started */
} sync_job;

static void
sync_prep_work(sync_job *j)
{
    struct repl__tx *tx = j->tx;
    uint64_t differ = 0;

    j->rc = repl__digest_all(j->st, tx->sync_tree ? 2 : 1, &tx->sync_mine, &tx->sync_n);
    if (j->rc == 0 && tx->sync_tree) {
        /* the roots now; the differing subtrees level by level on the loop */
        j->rc = repl__tree_roots_diff(tx->sync_mine, tx->sync_n, tx->sync_roots, tx->sync_n_roots,
                                      tx->sync_only, &tx->sync_pend, &tx->sync_pushq);
        return;
    }
    if (j->rc == 0)
        j->rc = repl__digest_diff(tx->sync_mine, tx->sync_n, tx->sync_theirs, tx->sync_n_theirs,
                                  &differ);
    if (j->rc == 0 && tx->sync_only[0]) {
        /* a pass limited to one bucket: the others' differences wait */
        differ = 0;
        for (size_t i = 0; i < tx->sync_n; i++) {
            repl__bdigest *m = &tx->sync_mine[i];
            if (strcmp(m->bucket, tx->sync_only) != 0) {
                memset(m->differ, 0, m->cmp_leaves / 8);
                m->missing = 0;
                m->peer_empty = 0;
            } else {
                for (uint32_t l = 0; l < m->cmp_leaves / 8; l++)
                    differ += (uint64_t)__builtin_popcount(m->differ[l]);
            }
        }
    }
    tx->sync_leaves = differ;
    tx->sync_estimate = j->rc == 0 ? repl__digest_estimate(tx->sync_mine, tx->sync_n) : 0;
}

typedef struct walk_ctx {
    sync_job *j;
    const repl__bdigest *d;
    int rc;
} walk_ctx;

static int
walk_version(void *user, const char *key, const store_version *v)
{
    walk_ctx *w = user;
    sync_job *j = w->j;
    struct repl__tx *tx = j->tx;
    cut *b = j->b;
    uint32_t leaf = repl__leaf_of(key, w->d->cmp_leaves);
    int differs = (w->d->differ[leaf / 8] & (1u << (leaf % 8))) != 0;
    void *layout = NULL;
    size_t layout_len = 0;

    if (differs && tx->sync_peerset && !tx->sync_sum_stop &&
        !repl__peerset_covers(tx->sync_peerset, w->d->bucket, key, v->version_id)) {
        /* past the peer's page: stop before this version (the position
         * stays on the one before) and ask for the next page from there */
        snprintf(tx->sync_page_bucket, sizeof(tx->sync_page_bucket), "%s", w->d->bucket);
        snprintf(tx->sync_page_key, sizeof(tx->sync_page_key), "%s", key);
        snprintf(tx->sync_page_vid, sizeof(tx->sync_page_vid), "%s", v->version_id);
        j->need_page = 1;
        return 1;
    }
    snprintf(tx->sync_key, sizeof(tx->sync_key), "%s", key);
    snprintf(tx->sync_vid, sizeof(tx->sync_vid), "%s", v->version_id);
    tx->sync_have_pos = 1;
    if (!differs)
        return 0;
    if (tx->sync_peerset && repl__peerset_noop(tx->sync_peerset, w->d->bucket, key, v)) {
        __atomic_fetch_add(&tx->sync_skipped, 1, __ATOMIC_RELAXED);
        return 0; /* the peer holds it, or something that drops it */
    }
    if (b->n + 2 > REPL_BATCH_RECORDS && (w->rc = emit(j->emitter, b, NULL, 0)) != 0)
        return 1; /* room for a tags record and the version's */
    if ((w->rc = repl__tags_record(w->d->bucket, key, v, &b->recs[b->n])) < 0)
        return 1;
    if (w->rc == 1) {
        b->open = 1;
        b->bytes += b->recs[b->n].len;
        b->n++;
        w->rc = 0;
    }
    if ((w->rc =
             repl__version_record(w->d->bucket, key, v, &b->recs[b->n], &layout, &layout_len)) != 0)
        return 1;
    b->open = 1;
    b->bytes += b->recs[b->n].len;
    b->n++;
    /* a walk job on a worker; repl_peer_get reads it meanwhile */
    __atomic_fetch_add(&tx->sync_sent, 1, __ATOMIC_RELAXED);
    if (layout || b->bytes >= REPL_BATCH_BYTES || b->n == REPL_BATCH_RECORDS) {
        if ((w->rc = emit(j->emitter, b, layout, layout_len)) != 0) {
            free(layout);
            return 1;
        }
        if (j->emitter->n_items >= ITEMS_PER_JOB)
            return 1; /* enough for now: the position is saved */
    }
    return 0;
}

static void
sync_walk_work(sync_job *j)
{
    struct repl__tx *tx = j->tx;
    tx_job em;
    int rc = 0;

    memset(&em, 0, sizeof(em));
    em.tx = tx;
    em.data_check = j->data_check;
    if (!(j->b = calloc(1, sizeof(*j->b)))) {
        j->rc = -ENOMEM;
        return;
    }
    j->b->resync = 1;
    j->emitter = &em;
    while (rc == 0 && tx->sync_bucket < tx->sync_n && em.n_items < ITEMS_PER_JOB && !j->need_page) {
        repl__bdigest *d = &tx->sync_mine[tx->sync_bucket];
        walk_ctx w = {j, d, 0};

        if (tx->sync_only[0] && strcmp(d->bucket, tx->sync_only) != 0) {
            tx->sync_bucket++;
            continue;
        }
        if (!tx->sync_bucket_started) {
            tx->sync_bucket_started = 1;
            tx->sync_have_pos = 0;
            if (d->missing || repl__config_differs(d)) {
                void *blob = NULL;
                size_t len = 0;
                if ((rc = store_bucket_get(j->st, d->bucket, &blob, &len)) == 0)
                    rc = repl__bucket_record(d->bucket, blob, len, &j->b->recs[j->b->n]);
                free(blob);
                if (rc == MRD_ENOTFOUND) {
                    rc = 0; /* deleted meanwhile */
                } else if (rc == 0) {
                    j->b->bytes += j->b->recs[j->b->n].len;
                    j->b->n++;
                    j->b->open = 1;
                    __atomic_fetch_add(&tx->sync_buckets, 1, __ATOMIC_RELAXED);
                }
            }
        }
        if (rc != 0)
            break;
        rc = store_index_list(j->st, d->bucket, NULL, tx->sync_have_pos ? tx->sync_key : NULL,
                              tx->sync_have_pos ? tx->sync_vid : NULL, STORE_LIST_VERSIONS,
                              walk_version, &w);
        if (rc == MRD_ENOTFOUND)
            rc = 0; /* the bucket was deleted meanwhile (or a push named one we lack) */
        if (w.rc != 0) {
            rc = w.rc;
            break;
        }
        if (em.n_items >= ITEMS_PER_JOB || j->need_page)
            break; /* resumes after sync_key/sync_vid */
        tx->sync_bucket++;
        tx->sync_bucket_started = 0;
    }
    if (rc == 0 && j->b->open)
        rc = emit(&em, j->b, NULL, 0);
    for (size_t i = 0; i < j->b->n; i++)
        free((void *)j->b->recs[i].payload);
    free(j->b);
    j->rc = rc < 0 ? rc : 0;
    j->items = em.items;
    j->tail = em.tail;
    j->n_items = em.n_items;
    j->done = rc == 0 && tx->sync_bucket >= tx->sync_n;
}

static void
sync_job_work(void *arg)
{
    sync_job *j = arg;

    if (j->prep)
        sync_prep_work(j);
    else
        sync_walk_work(j);
}

static void
sync_finish(repl_peer *p, const char *result)
{
    struct repl__tx *tx = p->tx;

    snprintf(tx->sync_result, sizeof(tx->sync_result), "%s", result);
    if (strncmp(result, "failed", 6) == 0)
        tx->sync_retry_ns = mrd_clock_mono_ns() + 1000000000ull;
    MRD_INFO("repl.sync.done",
             "peer=%s mode=%s leaves_differ=%llu versions_sent=%llu versions_skipped=%llu "
             "buckets_sent=%llu ms=%.0f result=\"%s\" summary_pages=%llu",
             p->name,
             tx->sync_push     ? "push"
             : tx->sync_resync ? "resync"
                               : "check",
             (unsigned long long)tx->sync_leaves, (unsigned long long)tx->sync_sent,
             (unsigned long long)tx->sync_skipped, (unsigned long long)tx->sync_buckets,
             (double)(mrd_clock_mono_ns() - tx->sync_started_ns) / 1e6, result,
             (unsigned long long)tx->sync_sum_pages);
    sync_reset(tx);
}

static void
sync_job_done(void *arg)
{
    sync_job *j = arg;
    struct repl__tx *tx = j->tx;
    repl_peer *p = tx->p;

    tx->job_running = 0;
    if (tx->sync_free_later)
        sync_free_digests(tx);
    if (tx->detached || j->gen != tx->gen || tx->sync_state == SYNC_NONE) {
        while (j->items) {
            repl__item *n = j->items->next;
            item_free(j->items);
            j->items = n;
        }
        goto out;
    }
    if (j->rc != 0) {
        char why[128];
        snprintf(why, sizeof(why), "failed: %s", mrd_strerror(j->rc));
        MRD_ERROR("repl.sync.fail", "peer=%s error=\"%s\"", p->name, mrd_strerror(j->rc));
        sync_finish(p, why);
        goto out;
    }
    if (j->prep) {
        tx->sync_state = tx->sync_tree ? SYNC_DESCEND : SYNC_WALK;
    } else {
        for (repl__item *it = j->items; it; it = it->next) {
            it->pass = tx->sync_runs;
            tx->sync_outstanding++;
        }
        chain_append(&tx->rq, &tx->rq_tail, &tx->rq_n, j->items, j->tail, j->n_items);
        if (j->done)
            tx->sync_state = SYNC_DRAIN;
        else if (j->need_page)
            sync_ask_page(p); /* the walk waits for it (SYNC_SUMMARY) */
    }
    repl__tx_pump_flush(p);
out:
    tx_unref(tx);
    free(j);
}

static void
sync_job_start(struct repl__tx *tx, int prep)
{
    repl *r = tx->p->r;
    sync_job *j = calloc(1, sizeof(*j));

    if (!j)
        return;
    j->tx = tx;
    j->st = engine_store(r->eng);
    j->gen = tx->gen;
    j->data_check = tx->data_check;
    j->prep = prep;
    tx->refs++;
    tx->job_running = 1;
    tx->read_turn = 0;
    if (engine_run(r->eng, sync_job_work, sync_job_done, j) != 0) {
        tx->refs--;
        tx->job_running = 0;
        free(j);
    }
}

/*
 * The WAL's side of a resync pass, on a worker (the cursor store commits to
 * the index):
 *   begin: the pass's snapshot LSN L0 is fixed. The stream goes on from
 *     what the peer has applied (acked) if the WAL still holds acked + 1;
 *     otherwise from L0, and the marker (a /repl/v1/resync batch without
 *     records, last_lsn = L0) tells the peer first. Either way the WAL
 *     holds segments from there and keeps the peer's resync mark.
 *   done: every item of the pass is acked: the mark is cleared (the cursor
 *     only rises), unless the size cap dropped the peer again meanwhile.
 */
typedef struct mark_job {
    struct repl__tx *tx;
    engine *eng;
    wal *w;
    store *st;
    uint32_t peer;
    int done; /* 0: begin, 1: done */
    uint64_t l0, acked, gen;
    int marker;      /* begin: the stream goes on from l0, after the marker */
    uint64_t wm_hlc; /* begin: local writes stamped above it come after the stream's point */
    uint64_t after;  /* begin: tx->resync_after_hlc (in), what it becomes (out) */
    int rc;
} mark_job;

/* Stores a peer's resync_after_hlc (0: none). Blocking: on a worker. */
static int
resync_after_store(store *st, uint32_t peer, uint64_t hlc)
{
    char key[40], val[24];

    snprintf(key, sizeof(key), RESYNC_AFTER_KEY, peer);
    snprintf(val, sizeof(val), "%llu", (unsigned long long)hlc);
    return store_meta_put(st, key, val, strlen(val));
}

static void
mark_work(void *arg)
{
    mark_job *m = arg;

    if (m->done) {
        /* the stored point goes first: were it left while the mark is
         * cleared, a later resync after a restart would trust it */
        m->rc = resync_after_store(m->st, m->peer, 0);
        if (m->rc == 0)
            m->rc = wal_peer_resync_done(m->w, m->peer, m->acked);
        return;
    }
    m->rc = wal_peer_resync_begin(m->w, m->peer, m->acked);
    if (m->rc == MRD_ENOTFOUND) {
        /* Our digest is computed after this (the prep job), so the snapshot
         * may be as late as what the index holds now; the WAL keeps every
         * segment from the index's applied LSN + 1 on. */
        uint64_t now = 0;
        if (store_index_last_lsn(m->st, &now) == 0 && now > m->l0)
            m->l0 = now;
        if (m->l0 > m->acked) {
            m->marker = 1;
            m->rc = wal_peer_resync_begin(m->w, m->peer, m->l0);
        }
    }
    /* The stream's point (l0, or acked) is at most the WAL's last LSN now;
     * the watermark's stamp is above every write up to that LSN and below
     * every later one. 0 (no window) if it cannot be had. */
    if (m->rc == 0) {
        uint64_t last = 0;
        if (engine_local_watermark(m->eng, &last, &m->wm_hlc) != 0)
            m->wm_hlc = 0;
        /* A pass with a marker takes the new point; one without keeps the
         * point it finds (nothing jumped since it was set). Stored before
         * the marker can go: a restart must not find an older point. */
        if (m->marker || !m->after) {
            m->after = m->wm_hlc;
            m->rc = resync_after_store(m->st, m->peer, m->after);
        }
    }
}

/* Queues the start marker: live records wait for its ack (the gap). */
static int
marker_queue(struct repl__tx *tx)
{
    repl__item *it = calloc(1, sizeof(*it));

    if (!it || repl__batch_pack(0, tx->sync_l0, NULL, 0, &it->head) != 0) {
        free(it);
        return -ENOMEM;
    }
    it->tx = tx;
    it->resync = it->marker = 1;
    it->last = tx->sync_l0;
    chain_append(&tx->q, &tx->q_tail, &tx->q_n, it, it, 1);
    tx->gap = 1;
    return 0;
}

static void
begin_done(repl_peer *p, mark_job *m)
{
    struct repl__tx *tx = p->tx;
    char result[128];

    /* before the marker can go: its ack lifts the peer's applied LSN over
     * the holes, all stamped at or below the new point */
    if (m->rc == 0)
        tx->resync_after_hlc = m->after;
    if (m->rc == 0 && m->marker) {
        tx->sync_l0 = m->l0;
        m->rc = marker_queue(tx);
    }
    if (m->rc != 0) {
        snprintf(result, sizeof(result), "failed: cannot resume the stream: %s",
                 mrd_strerror(m->rc));
        MRD_WARN("repl.sync.fail", "peer=%s reason=\"%s\"", p->name, result);
        sync_finish(p, result);
        return;
    }
    tx->sync_begun = 1;
    if (!m->marker && tx->gap) {
        /* the WAL still holds what the peer lacks after its applied LSN */
        tx->gap = 0;
        tx->reopen = 1;
        if (tx->read_from <= tx->acked)
            tx->read_from = tx->acked + 1;
    }
    MRD_INFO("repl.sync.stream", "peer=%s snapshot_lsn=%llu streaming_after=%llu marker=%d",
             p->name, (unsigned long long)tx->sync_l0,
             (unsigned long long)(m->marker ? tx->sync_l0 : m->acked), m->marker);
    tx->sync_state = SYNC_PREP;
}

static void
finish_done(repl_peer *p, mark_job *m)
{
    struct repl__tx *tx = p->tx;
    char result[128];

    if (m->rc == 0) {
        snprintf(result, sizeof(result),
                 "resynced: %llu versions sent, streamed during the pass from LSN %llu",
                 (unsigned long long)tx->sync_sent, (unsigned long long)tx->sync_l0 + 1);
        tx->needs_resync = 0;
        if (tx->held_hlc > tx->acked_hlc)
            tx->acked_hlc = tx->held_hlc;
        tx->held_hlc = tx->resync_after_hlc = 0;
        tx->error[0] = '\0';
    } else if (m->rc == MRD_EBUSY) {
        snprintf(result, sizeof(result),
                 "failed: the stream fell past WAL retention again; a new pass follows");
        tx->gap = 1; /* the WAL holds nothing for it now */
    } else {
        snprintf(result, sizeof(result), "failed: cannot clear the resync mark: %s",
                 mrd_strerror(m->rc));
        MRD_ERROR("repl.sync.cursor_fail", "peer=%s error=\"%s\"", p->name, mrd_strerror(m->rc));
    }
    sync_finish(p, result);
}

static void
mark_done(void *arg)
{
    mark_job *m = arg;
    struct repl__tx *tx = m->tx;
    repl_peer *p = tx->p;

    tx->job_running = 0;
    if (tx->sync_free_later)
        sync_free_digests(tx);
    if (!tx->detached && m->gen == tx->gen &&
        tx->sync_state == (m->done ? SYNC_FINISH : SYNC_BEGIN)) {
        if (m->done)
            finish_done(p, m);
        else
            begin_done(p, m);
        repl__tx_pump_flush(p);
    }
    tx_unref(tx);
    free(m);
}

static int
mark_job_start(repl_peer *p, int done)
{
    struct repl__tx *tx = p->tx;
    mark_job *m = calloc(1, sizeof(*m));

    if (!m)
        return -ENOMEM;
    m->tx = tx;
    m->eng = p->r->eng;
    m->w = engine_wal(p->r->eng);
    m->st = engine_store(p->r->eng);
    m->peer = p->id;
    m->done = done;
    m->l0 = tx->sync_l0;
    m->acked = tx->acked;
    m->after = tx->resync_after_hlc;
    m->gen = tx->gen;
    tx->refs++;
    tx->job_running = 1;
    tx->read_turn = 0;
    if (engine_run(p->r->eng, mark_work, mark_done, m) != 0) {
        tx->refs--;
        tx->job_running = 0;
        free(m);
        return MRD_ESHUTDOWN;
    }
    return 0;
}

static void
sync_acked(repl_peer *p, repl__item *it)
{
    struct repl__tx *tx = p->tx;

    if (tx->sync_state == SYNC_NONE || it->pass != tx->sync_runs)
        return; /* an item of an ended pass */
    if (tx->sync_outstanding)
        tx->sync_outstanding--;
}

/* Drives a pass: prep job, walk jobs while the queue is short, then the end. */
static void
sync_pump(repl_peer *p)
{
    struct repl__tx *tx = p->tx;

    if (tx->job_running)
        return;
    switch (tx->sync_state) {
    case SYNC_BEGIN:
        mark_job_start(p, 0);
        break;
    case SYNC_PREP:
        sync_job_start(tx, 1);
        break;
    case SYNC_DESCEND:
        if (!tx->sync_asking)
            sync_descend(p);
        break;
    case SYNC_WALK:
        if (tx->rq_n < QUEUE_LOW)
            sync_job_start(tx, 0);
        break;
    case SYNC_DRAIN:
        if (tx->sync_outstanding)
            break;
        if (!tx->sync_resync) {
            char result[128];
            if (tx->sync_push)
                snprintf(result, sizeof(result),
                         "pushed at the peer's request: %llu versions in %llu leaves sent",
                         (unsigned long long)tx->sync_sent, (unsigned long long)tx->sync_leaves);
            else if (tx->sync_leaves == 0)
                snprintf(result, sizeof(result), "in sync");
            else
                snprintf(result, sizeof(result), "%llu keys differed (%llu leaves); sent",
                         (unsigned long long)tx->sync_sent, (unsigned long long)tx->sync_leaves);
            sync_finish(p, result);
            break;
        }
        /* the stream must be past the snapshot (the marker acked) */
        if (!tx->gap) {
            tx->sync_state = SYNC_FINISH;
            if (mark_job_start(p, 1) != 0)
                tx->sync_state = SYNC_DRAIN; /* tried again on the next pump */
        }
        break;
    default:
        break;
    }
}

/* Submits a digest request of body (consumed) as kind seq (1: children,
 * 2: push); counted in the pass's digest bytes. */
static int
sync_ask(repl_peer *p, mrd_buf *body, uint64_t seq)
{
    repl__conn *c = p->conn;
    repl__stream *s;
    int rc;

    if (!c || c->dead || !(s = repl__stream_new(c, REPL__ST_DIGEST))) {
        mrd_buf_free(body);
        return MRD_ESHUTDOWN;
    }
    s->out = *body;
    memset(body, 0, sizeof(*body));
    s->seq = seq;
    if ((rc = repl__submit_request(c, s, REPL_PATH_DIGEST)) < 0) {
        repl__stream_unlink_free(c, s);
        return rc;
    }
    p->tx->sync_digest_bytes += s->out.len;
    p->tx->sync_rounds++;
    return 0;
}

/* Encodes q; when naming its leaves one by one makes the request too large,
 * names whole buckets instead (level 0: the answerer takes all their
 * leaves). MRD_ETOOBIG if even that is too large. */
static int
dreq_encode_fit(const repl__dreq *q, mrd_buf *body)
{
    int rc = repl__dreq_encode(q, body);

    if (rc == 0 && body->len > REPL_MAX_CTRL_BODY - 1024) {
        repl__dreq whole = *q; /* the flags and the page point; no ranges yet */
        whole.n = 0;
        whole.r = NULL;
        for (size_t i = 0; rc == 0 && i < q->n; i++)
            if (!i || strcmp(q->r[i].bucket, q->r[i - 1].bucket) != 0)
                rc = repl__dreq_add(&whole, q->r[i].bucket, 0, 0);
        if (rc == 0)
            rc = repl__dreq_encode(&whole, body);
        repl__dreq_free(&whole);
    }
    if (rc == 0 && body->len > REPL_MAX_CTRL_BODY - 1024)
        rc = MRD_ETOOBIG;
    return rc;
}

/* Asks the peer what it holds in the subtrees `leaves` names (version 3),
 * so the walk can leave out what would change nothing there; the walk waits
 * for the answer (SYNC_SUMMARY). The first page, or, once a page is in, the
 * next one from where the walk stopped (sync_page_*). Without an answer
 * every version of the differing leaves (from there on) is sent, as before
 * version 3. */
static void
sync_ask_summaries(repl_peer *p, const repl__dreq *leaves)
{
    struct repl__tx *tx = p->tx;
    repl__dreq q = *leaves;
    mrd_buf body = {0};
    int rc;

    tx->sync_state = SYNC_WALK;
    if (!leaves->n)
        return;
    q.tree = q.summaries = 1;
    q.push = 0;
    q.from_bucket[0] = q.from_key[0] = '\0';
    if (tx->sync_sum_pages) {
        /* from the walk's position (after its version), not the version
         * it stopped at: versions can still come after the position (one
         * the peer sends us meanwhile), and the resumed walk visits them */
        snprintf(q.from_bucket, sizeof(q.from_bucket), "%s", tx->sync_page_bucket);
        snprintf(q.from_key, sizeof(q.from_key), "%s", tx->sync_have_pos ? tx->sync_key : "");
        snprintf(q.from_vid, sizeof(q.from_vid), "%s", tx->sync_have_pos ? tx->sync_vid : "");
    }
    rc = dreq_encode_fit(&q, &body);
    if (rc == 0)
        rc = sync_ask(p, &body, 3);
    mrd_buf_free(&body);
    if (rc == 0) {
        tx->sync_state = SYNC_SUMMARY;
        return;
    }
    tx->sync_sum_stop = 1; /* the walk goes on without further pages */
    snprintf(tx->sync_sum_result, sizeof(tx->sync_sum_result), "not asked%s: %s",
             tx->sync_sum_pages ? " for a later page" : "",
             rc == MRD_ETOOBIG ? "too many differing leaves to name" : mrd_strerror(rc));
}

/* The walk reached the end of the peer's page: the next one, for the same
 * leaves (the digests still mark them), from where the walk stands. */
static void
sync_ask_page(repl_peer *p)
{
    repl__dreq q;
    int rc;

    memset(&q, 0, sizeof(q));
    rc = repl__tree_push_leaves(p->tx->sync_mine, p->tx->sync_n, &q);
    if (rc == 0)
        sync_ask_summaries(p, &q);
    else
        p->tx->sync_sum_stop = 1;
    repl__dreq_free(&q);
}

/* The answer to sync_ask_summaries: the walk starts, or goes on. A later
 * page that does not reach past the point it was asked from (a peer that
 * predates paging answers the first page again; a key with more versions
 * than a page) ends the paging: from there on everything goes. */
static void
sync_on_summaries(repl_peer *p, repl__stream *s, const char *why)
{
    struct repl__tx *tx = p->tx;
    repl__peerset *ps = NULL;
    int rc;

    if (tx->sync_state != SYNC_SUMMARY)
        return;
    tx->sync_digest_bytes += s->in.len;
    tx->sync_state = SYNC_WALK;
    if (!why && s->too_big)
        why = "answer over the size limit";
    if (!why && (rc = repl__peerset_decode(s->in.data, s->in.len, &ps)) != 0)
        why = rc == MRD_EPROTO ? "not a summaries answer" : mrd_strerror(rc);
    if (!why && tx->sync_sum_pages &&
        !repl__peerset_covers(ps, tx->sync_page_bucket, tx->sync_page_key, tx->sync_page_vid)) {
        why = "a later page did not go past the point asked from";
        repl__peerset_free(ps);
        ps = NULL;
    }
    if (!why) {
        repl__peerset_free(tx->sync_peerset);
        tx->sync_peerset = ps;
        tx->sync_sum_pages++;
        tx->sync_sum_held += repl__peerset_count(ps);
    } else {
        tx->sync_sum_stop = 1;
    }
    if (why && !tx->sync_sum_pages)
        snprintf(tx->sync_sum_result, sizeof(tx->sync_sum_result), "none: %s", why);
    else
        snprintf(tx->sync_sum_result, sizeof(tx->sync_sum_result),
                 "%llu versions held there, %llu page%s%s", (unsigned long long)tx->sync_sum_held,
                 (unsigned long long)tx->sync_sum_pages, tx->sync_sum_pages == 1 ? "" : "s",
                 why || (repl__peerset_partial(tx->sync_peerset) && tx->sync_sum_stop)
                     ? " (partial)"
                     : "");
    MRD_DEBUG("repl.sync.summaries", "peer=%s result=\"%s\"%s%s", p->name, tx->sync_sum_result,
              why ? " why=" : "", why ? why : "");
}

/* The tree comparison is over: the differing leaves are marked. Ask the
 * peer to send what it holds in them (the other direction), and what it
 * holds there, then walk. */
static void
sync_tree_done(repl_peer *p)
{
    struct repl__tx *tx = p->tx;
    uint64_t differ = 0;
    mrd_buf body = {0};
    int rc = repl__tree_push_leaves(tx->sync_mine, tx->sync_n, &tx->sync_pushq);

    for (size_t i = 0; i < tx->sync_n; i++)
        for (uint32_t l = 0; tx->sync_mine[i].differ && l < tx->sync_mine[i].cmp_leaves / 8; l++)
            differ += (uint64_t)__builtin_popcount(tx->sync_mine[i].differ[l]);
    tx->sync_leaves = differ;
    tx->sync_estimate = repl__digest_estimate(tx->sync_mine, tx->sync_n);
    if (rc == 0 && tx->sync_pushq.n) {
        tx->sync_pushq.tree = tx->sync_pushq.push = 1;
        rc = dreq_encode_fit(&tx->sync_pushq, &body);
        if (rc == 0)
            rc = sync_ask(p, &body, 2);
        snprintf(tx->sync_push_result, sizeof(tx->sync_push_result), "%s",
                 rc == 0 ? "asked" : "not asked: the request would be too large");
    }
    mrd_buf_free(&body);
    sync_ask_summaries(p, &tx->sync_pushq);
}

/* One children request for the next REPL_TREE_ASK_MAX pending nodes; at the
 * end of a level, the level below; when none is left, done. */
static void
sync_descend(repl_peer *p)
{
    struct repl__tx *tx = p->tx;
    mrd_buf body = {0};
    int rc;

    if (tx->sync_pend_off >= tx->sync_pend.n) {
        repl__tpend_free(&tx->sync_pend);
        tx->sync_pend = tx->sync_next;
        memset(&tx->sync_next, 0, sizeof(tx->sync_next));
        tx->sync_pend_off = 0;
        if (!tx->sync_pend.n) {
            sync_tree_done(p);
            return;
        }
    }
    tx->sync_asked = tx->sync_pend.n - tx->sync_pend_off;
    if (tx->sync_asked > REPL_TREE_ASK_MAX)
        tx->sync_asked = REPL_TREE_ASK_MAX;
    rc =
        repl__tree_request(tx->sync_mine, &tx->sync_pend, tx->sync_pend_off, tx->sync_asked, &body);
    if (rc == 0)
        rc = sync_ask(p, &body, 1);
    mrd_buf_free(&body);
    if (rc != 0) {
        char why[128];
        snprintf(why, sizeof(why), "failed: cannot ask for digest nodes: %s", mrd_strerror(rc));
        sync_finish(p, why);
        return;
    }
    tx->sync_asking = 1;
}

/* A children answer: differing leaves marked, inner nodes queued. */
static const char *
sync_on_children(struct repl__tx *tx, repl__stream *s)
{
    repl__tnodes *t = NULL;
    size_t n = 0;
    int is_tree = 0, rc;

    tx->sync_asking = 0;
    if (repl__tree_decode(s->in.data, s->in.len, &is_tree, &t, &n) != 0 || !is_tree)
        return "malformed digest nodes";
    rc = repl__tree_children_diff(tx->sync_mine, tx->sync_n, t, n, &tx->sync_next);
    repl__tnodes_free(t, n);
    if (rc != 0)
        return rc == MRD_EPROTO ? "digest nodes not asked for" : "out of memory";
    tx->sync_pend_off += tx->sync_asked;
    return NULL;
}

void
repl__tx_on_digest(repl__conn *c, repl__stream *s, uint32_t error_code)
{
    repl_peer *p = c->peer;
    struct repl__tx *tx = p->tx;
    const char *why = repl__client_check_auth(c, s, error_code);
    engine_status st;
    int is_tree = 0;

    if (!tx)
        return;
    if (s->seq == 3) {
        sync_on_summaries(p, s, why);
        return;
    }
    if (s->seq == 2) { /* a push: the other direction */
        if (tx->sync_state != SYNC_NONE)
            tx->sync_digest_bytes += s->in.len;
        snprintf(tx->sync_push_result, sizeof(tx->sync_push_result), "%s%s",
                 why ? "refused: " : "the peer sends what it holds there",
                 why ? (s->status == 409 ? "it runs a pass of its own" : why) : "");
        return;
    }
    if (tx->sync_state != (s->seq == 1 ? SYNC_DESCEND : SYNC_DIGEST))
        return;
    tx->sync_digest_bytes += s->in.len;
    if (!why && s->too_big)
        why = "digest answer over the size limit";
    if (!why && s->seq == 1)
        why = sync_on_children(tx, s);
    else if (!why && repl__tree_decode(s->in.data, s->in.len, &is_tree, &tx->sync_roots,
                                       &tx->sync_n_roots) != 0)
        why = "malformed digest";
    else if (!why && !is_tree &&
             repl__digest_decode(s->in.data, s->in.len, &tx->sync_theirs, &tx->sync_n_theirs) != 0)
        why = "malformed digest";
    if (why) {
        char result[160];
        snprintf(result, sizeof(result), "failed: %s", why);
        MRD_WARN("repl.sync.fail", "peer=%s reason=\"%s\"", p->name, why);
        sync_finish(p, result);
        return;
    }
    if (s->seq == 1)
        return; /* sync_pump asks for the next nodes */
    tx->sync_tree = is_tree;
    /* everything our index holds now covers our records up to here */
    tx->sync_l0 = engine_get_status(p->r->eng, &st) == 0 ? st.applied_lsn : 0;
    tx->sync_state = tx->sync_resync ? SYNC_BEGIN : SYNC_PREP;
}

/* Starts a push pass over the leaf bitmaps d[0..n) (taken over). */
static void
push_begin(repl_peer *p, repl__bdigest *d, size_t n)
{
    struct repl__tx *tx = p->tx;

    tx->sync_mine = d;
    tx->sync_n = n;
    tx->sync_state = SYNC_WALK;
    tx->sync_resync = tx->sync_tree = tx->sync_asking = 0;
    tx->sync_push = 1;
    tx->sync_sent = tx->sync_buckets = tx->sync_estimate = tx->sync_digest_bytes = tx->sync_rounds =
        0;
    sync_sum_reset(tx);
    tx->sync_leaves = 0;
    for (size_t i = 0; i < tx->sync_n; i++)
        for (uint32_t l = 0; l < tx->sync_mine[i].cmp_leaves / 8; l++)
            tx->sync_leaves += (uint64_t)__builtin_popcount(tx->sync_mine[i].differ[l]);
    tx->sync_only[0] = '\0';
    tx->sync_push_result[0] = '\0';
    tx->sync_bucket = 0;
    tx->sync_bucket_started = 0;
    tx->sync_have_pos = 0;
    tx->sync_started_ns = mrd_clock_mono_ns();
    tx->sync_runs++;
    MRD_INFO("repl.sync.start", "peer=%s mode=push leaves=%llu", p->name,
             (unsigned long long)tx->sync_leaves);
    /* what the asker holds there: our push leaves out what it would drop */
    if (repl__tree_push_leaves(tx->sync_mine, tx->sync_n, &tx->sync_pushq) == 0)
        sync_ask_summaries(p, &tx->sync_pushq);
    repl__dreq_free(&tx->sync_pushq);
}

/* A push that came before our own session to the asker was up (it asks
 * right after it connects): started once ours is. */
static void
push_wait_start(repl_peer *p)
{
    struct repl__tx *tx = p->tx;
    repl__bdigest *d = tx->push_wait;

    if (!d || tx->sync_state != SYNC_NONE || tx->sync_free_later)
        return;
    tx->push_wait = NULL;
    if (tx->needs_resync) {
        repl__digest_free(d, tx->push_wait_n); /* the resync covers it */
        return;
    }
    push_begin(p, d, tx->push_wait_n);
}

int
repl__sync_start_push(repl_peer *p, const repl__dreq *q)
{
    struct repl__tx *tx = p->tx;
    repl__conn *c = p->conn;
    repl__bdigest *d = NULL;
    size_t n = 0;
    int rc;

    if (!tx)
        return MRD_ESHUTDOWN;
    if (tx->sync_state != SYNC_NONE || tx->sync_free_later || tx->needs_resync)
        return MRD_EBUSY; /* that pass (or the resync) compares everything anyway */
    if ((rc = repl__dreq_bitmaps(q, &d, &n)) != 0)
        return rc;
    if (!tx->active || !c || !p->hello_done || c->dead) {
        repl__digest_free(tx->push_wait, tx->push_wait_n);
        tx->push_wait = d;
        tx->push_wait_n = n;
        MRD_INFO("repl.sync.push_deferred", "peer=%s reason=\"our session to it is not up yet\"",
                 p->name);
        return 0;
    }
    push_begin(p, d, n);
    return 0;
}

/* ---- submitting and acks -------------------------------------------------- */

static int
submit(repl_peer *p, repl__item *it)
{
    repl__conn *c = p->conn;
    struct repl__tx *tx = p->tx;
    repl__stream *s = repl__stream_new(c, REPL__ST_RECORDS);
    int rc;

    if (!s)
        return -ENOMEM;
    s->out = it->head;
    memset(&it->head, 0, sizeof(it->head));
    s->ctx = it;
    it->cost = s->out.len + it->data_size;
    tx->inflight++;
    tx->inflight_bytes += it->cost;
    if (it->resync) {
        tx->rs_inflight++;
        tx->rs_inflight_bytes += it->cost;
    }
    if (it->data_size) {
        repl__src *src = calloc(1, sizeof(*src));
        if (!src || !(src->buf = malloc(REPL_CHUNK)) ||
            repl__dcheck_init(&src->dc, p->r->dc_mac, it->data_check, p->r->secret,
                              p->r->secret_len, it->nonce, sizeof(it->nonce), s->out.data,
                              s->out.len) != 0) {
            if (src)
                free(src->buf);
            free(src);
            repl__stream_unlink_free(c, s);
            return -ENOMEM;
        }
        src->refs = 1;
        src->st = engine_store(p->r->eng);
        src->layout = it->layout;
        src->layout_len = it->layout_len;
        it->layout = NULL;
        src->size = it->data_size;
        src->c = c;
        it->src = src;
        src_read_start(p->r, src); /* the first chunk while the head goes out */
    }
    rc = repl__submit_request(c, s, it->resync ? REPL_PATH_RESYNC : REPL_PATH_RECORDS);
    if (rc < 0) {
        repl__stream_unlink_free(c, s);
        return rc;
    }
    if (it->src)
        it->src->stream_id = s->id;
    tx->batches++;
    tx->records += it->n_records;
    if (it->data_size) {
        tx->objects++;
        tx->data_bytes += it->data_size;
    }
    return 0;
}

/*
 * Once per run, when the WAL first shows the peer's resync mark: the point
 * a pass of an earlier run stored (every local write stamped above it is
 * after the stream's point, which no marker has moved since). A quick
 * index read on the loop, once per peer.
 */
static void
resync_after_load(repl_peer *p)
{
    struct repl__tx *tx = p->tx;
    char key[40];
    void *val = NULL;
    size_t len = 0;

    tx->resync_loaded = 1;
    snprintf(key, sizeof(key), RESYNC_AFTER_KEY, p->id);
    if (!tx->resync_after_hlc && store_meta_get(engine_store(p->r->eng), key, &val, &len) == 0 &&
        len < 24) {
        char buf[24];
        memcpy(buf, val, len);
        buf[len] = '\0';
        tx->resync_after_hlc = strtoull(buf, NULL, 10);
    }
    free(val);
}

/*
 * Notes the local watermark (every local write stamped before hlc has an
 * LSN <= lsn) and drops the samples the peer has acked; the newest dropped
 * one tells which writes the peer has applied: acked_hlc.
 */
static void
lag_sample(struct repl__tx *tx, uint64_t durable, uint64_t hlc, uint64_t now)
{
    /* while the peer needs a resync it lacks older writes the stream does
     * not carry: acked_hlc waits for the pass (held_hlc meanwhile) */
    uint64_t *to = tx->needs_resync ? &tx->held_hlc : &tx->acked_hlc;

    while (tx->seen_n && tx->seen[tx->seen_head].lsn <= tx->acked) {
        if (tx->seen[tx->seen_head].hlc > *to)
            *to = tx->seen[tx->seen_head].hlc;
        tx->seen_head = (tx->seen_head + 1) % LAG_SAMPLES;
        tx->seen_n--;
    }
    if (durable <= tx->acked) {
        if (!tx->seen_n && hlc > *to)
            *to = hlc;
        return;
    }
    if (tx->seen_n) {
        unsigned last = (tx->seen_head + tx->seen_n - 1) % LAG_SAMPLES;
        if (tx->seen[last].lsn >= durable)
            return;
        if (tx->seen_n == LAG_SAMPLES) /* full: the oldest time stays */
            return;
    }
    tx->seen[(tx->seen_head + tx->seen_n) % LAG_SAMPLES].lsn = durable;
    tx->seen[(tx->seen_head + tx->seen_n) % LAG_SAMPLES].ns = now;
    tx->seen[(tx->seen_head + tx->seen_n) % LAG_SAMPLES].hlc = hlc;
    tx->seen_n++;
}

uint64_t
repl__tx_lag_records(const repl_peer *p, uint64_t durable)
{
    const struct repl__tx *tx = p->tx;
    uint64_t all, est;

    if (!tx || durable <= tx->acked)
        return 0;
    all = durable - tx->acked;
    if (tx->acked >= tx->lag_bytes_at || tx->lag_bytes_partial)
        return all; /* nothing scanned covers it yet: count every record */
    /* ours in the last scan, plus everything durable since it */
    est = tx->lag_own + (durable > tx->lag_bytes_at ? durable - tx->lag_bytes_at : 0);
    return est < all ? est : all;
}

double
repl__tx_lag_ms(const repl_peer *p, uint64_t now_ns)
{
    const struct repl__tx *tx = p->tx;

    for (unsigned i = 0; tx && i < tx->seen_n; i++) {
        unsigned k = (tx->seen_head + i) % LAG_SAMPLES;
        if (tx->seen[k].lsn > tx->acked)
            return (double)(now_ns - tx->seen[k].ns) / 1e6;
    }
    return 0;
}

/* Starts a reader job when the job slot is free and live records wait. */
static void
read_maybe(struct repl__tx *tx, const engine_status *st)
{
    int more = !tx->caught_up || st->wal_durable_lsn >= tx->read_from;

    if (tx->job_running || tx->gap || mrd_clock_mono_ns() < tx->retry_ns)
        return;
    if (tx->reopen || tx->acked > tx->saved || (tx->q_n < QUEUE_LOW && more))
        start_job(tx);
}

void
repl__tx_pump(repl_peer *p)
{
    struct repl__tx *tx = p->tx;
    repl *r = p->r;
    engine_status st;
    uint64_t mark_lsn = 0, mark_hlc = 0;

    if (!tx || !r->eng)
        return;
    if (engine_get_status(r->eng, &st) != 0)
        return;
    {
        /* the WAL's size cap dropped segments this peer still needed (it
         * marks the peer as it deletes them): say so now, connected or not.
         * Before any ack is sampled: acks of a peer with holes (the mark
         * outlives restarts and reconnects) must not raise acked_hlc. */
        wal_peer_status ws;
        if (wal_cursor_get(engine_wal(r->eng), p->id, &ws) == 0 && ws.needs_resync) {
            if (!tx->needs_resync) {
                MRD_ERROR("repl.peer.needs_resync",
                          "peer=%s acked_lsn=%llu reason=\"the WAL passed its size cap and "
                          "dropped records the peer has not applied; anti-entropy must bring "
                          "it level\"",
                          p->name, (unsigned long long)ws.acked_lsn);
                tx->needs_resync = 1;
                snprintf(tx->error, sizeof(tx->error), "needs resync: past WAL retention");
            }
            if (!tx->resync_loaded)
                resync_after_load(p);
            if (!ws.holding && !tx->gap)
                stream_broken(p); /* the WAL holds nothing for it (again) */
        }
    }
    if (engine_local_watermark(r->eng, &mark_lsn, &mark_hlc) == 0)
        lag_sample(tx, mark_lsn, mark_hlc, mrd_clock_mono_ns());
    lag_scan(tx, st.wal_durable_lsn);
    if (!tx->active || !p->conn || !p->hello_done || p->conn->dead)
        return;
    bw_refill(tx);
    bw_resume(tx);
    /* live records first; anti-entropy items only when none waits. A resync
     * pass's start marker goes alone: after everything before it is acked
     * (the peer has applied it all), and live reading waits for its ack. */
    while ((tx->q || tx->rq) && tx->inflight < REPL_INFLIGHT_MAX &&
           tx->inflight_bytes < REPL_INFLIGHT_BYTES && (!tx->bw_bps || tx->tokens > 0)) {
        repl__item *it;
        if (tx->q && tx->q->marker && tx->inflight)
            break;
        if (!tx->q) {
            /* anti-entropy takes at most half of the in-flight budget: the
             * rest stays free for live records, so one written now goes out
             * at once, and HTTP/2's weights send its data ahead of the
             * resync's (measured: test_live_writes_overtake_a_resync_on_a_
             * saturated_link) */
            if (tx->rs_inflight >= REPL_INFLIGHT_MAX / 2 ||
                tx->rs_inflight_bytes >= REPL_INFLIGHT_BYTES / 2)
                break;
            it = tx->rq;
            tx->rq = it->next;
            if (!tx->rq)
                tx->rq_tail = NULL;
            tx->rq_n--;
            it->next = NULL;
            if (tx->bw_bps)
                tx->tokens -= (double)it->head.len;
            if (submit(p, it) < 0) {
                repl__conn_fail(p->conn, "cannot submit a resync request");
                return;
            }
            continue;
        }
        it = tx->q;
        if (tx->bw_bps)
            tx->tokens -= (double)it->head.len; /* the batch head; data pays as it goes */
        tx->q = it->next;
        if (!tx->q)
            tx->q_tail = NULL;
        tx->q_n--;
        it->next = NULL;
        if (submit(p, it) < 0) {
            repl__conn_fail(p->conn, "cannot submit a records request");
            return;
        }
    }
    push_wait_start(p);
    /* one job at a time per peer: live reading first, but a running pass's
     * job gets every other turn (or a stream that never idles starves it) */
    if (tx->sync_state == SYNC_NONE || !tx->read_turn)
        read_maybe(tx, &st);
    if (tx->sync_state != SYNC_NONE) {
        sync_pump(p);
    } else if (tx->needs_resync) {
        /* streaming goes on meanwhile once a pass resumed it (a cancelled
         * pass leaves it running and the mark set) */
        if (!tx->sync_paused && mrd_clock_mono_ns() >= tx->sync_retry_ns)
            repl__sync_start(p, 1);
    } else if (r->o.anti_entropy_ms && tx->caught_up &&
               mrd_clock_mono_ns() - tx->sync_last_ns >=
                   (uint64_t)r->o.anti_entropy_ms * 1000000ull) {
        repl__sync_start(p, 0);
    }
    read_maybe(tx, &st);
}

void
repl__tx_stream_gone(repl__stream *s)
{
    repl__item *it = s->ctx;
    struct repl__tx *tx = it->tx;

    s->ctx = NULL;
    tx->inflight--;
    tx->inflight_bytes -= it->cost;
    if (it->resync) {
        tx->rs_inflight--;
        tx->rs_inflight_bytes -= it->cost;
    }
    if (it->src) {
        it->src->c = NULL;
        src_unref(it->src);
    }
    item_free(it);
}

void
repl__tx_on_stream_close(repl__conn *c, repl__stream *s, uint32_t error_code)
{
    repl__item *it = s->ctx;
    repl_peer *p = c->peer;
    struct repl__tx *tx = p->tx;
    const char *why = repl__client_check_auth(c, s, error_code);
    uint32_t origin = 0;
    uint64_t applied = 0;

    if (!it)
        return;
    /* we reset it ourselves: reading or checking our data failed (logged) */
    if (error_code != 0 && it->src && !it->src->reading && it->src->err)
        why = "our object data could not be read or checked";
    if (!why && repl__ack_decode(s->in.data, s->in.len, &origin, &applied) < 0)
        why = "malformed ack";
    if (!why && origin != p->r->site_id)
        why = "ack names another origin";
    if (why) {
        char body[96];
        tx->errors++;
        snprintf(body, sizeof(body), "%.*s", (int)(s->in.len < 80 ? s->in.len : 80),
                 s->in.data ? s->in.data : "");
        for (char *q = body; *q; q++)
            if (*q == '\n' || *q == '"')
                *q = ' ';
        snprintf(tx->error, sizeof(tx->error), "records %llu..%llu: %s %s",
                 (unsigned long long)it->first, (unsigned long long)it->last, why, body);
        MRD_WARN("repl.send.fail",
                 "peer=%s first=%llu last=%llu status=%d reason=\"%s\" body=\"%s\"", p->name,
                 (unsigned long long)it->first, (unsigned long long)it->last, s->status, why, body);
        repl__conn_fail(c, "records request failed");
        return;
    }
    if (applied > tx->acked)
        tx->acked = applied;
    if (applied > p->applied_from_us)
        p->applied_from_us = applied;
    tx->error[0] = '\0';
    if (it->marker) {
        /* the peer holds our state as of the pass's snapshot: the stream
         * goes on after it (or after what the peer has applied, if more) */
        MRD_INFO("repl.sync.streaming", "peer=%s from_lsn=%llu", p->name,
                 (unsigned long long)tx->acked + 1);
        tx->gap = 0;
        tx->reopen = 1;
        tx->caught_up = 0;
        tx->read_from = tx->acked + 1;
    } else if (it->resync) {
        sync_acked(p, it);
    }
}

/* ---- lifecycle ------------------------------------------------------------ */

int
repl__tx_new(repl_peer *p)
{
    struct repl__tx *tx = calloc(1, sizeof(*tx));

    if (!tx)
        return -ENOMEM;
    pthread_mutex_init(&tx->mu, NULL);
    tx->p = p;
    tx->refs = 1;
    tx->sync_last_ns = mrd_clock_mono_ns(); /* the first periodic pass one interval after start */
    p->tx = tx;
    return 0;
}

void
repl__tx_free(repl_peer *p)
{
    struct repl__tx *tx = p->tx;

    if (!tx)
        return;
    p->tx = NULL;
    queue_clear(tx);
    sync_reset(tx);
    pthread_mutex_lock(&tx->mu); /* waits for a reader job's critical part */
    tx->detached = 1;
    wal_reader_close(tx->rd); /* before the engine closes the WAL */
    tx->rd = NULL;
    pthread_mutex_unlock(&tx->mu);
    tx_unref(tx);
}

void
repl__tx_on_connected(repl_peer *p)
{
    struct repl__tx *tx = p->tx;

    if (!tx)
        return;
    tx->gen++;
    queue_clear(tx);
    tx->active = 1;
    tx->reopen = 1;
    tx->caught_up = 0;
    tx->needs_resync = 0;
    tx->gap = 0; /* the pump checks the WAL; a reader that finds a gap says so */
    /* the peer's word on what it has applied is the truth: resume there */
    tx->read_from = p->applied_from_us + 1;
    tx->acked = p->applied_from_us;
    /* the data check the peer takes: a CRC32C where TLS authenticates the
     * bytes, else an HMAC with the secret (PROTOCOL.md section 6) */
    tx->data_check = !(p->features & p->r->features & REPL_FEATURE_DATA_CHECK) ? REPL_DCHECK_NONE
                     : p->conn && p->conn->tls                                 ? REPL_DCHECK_CRC32C
                     : p->r->secret ? REPL_DCHECK_POLY1305
                                    : REPL_DCHECK_NONE;
    repl__tx_pump(p);
}

void
repl__tx_on_disconnected(repl_peer *p)
{
    struct repl__tx *tx = p->tx;

    if (!tx)
        return;
    tx->active = 0;
    tx->gen++;
    queue_clear(tx);
    if (tx->sync_state != SYNC_NONE) {
        snprintf(tx->sync_result, sizeof(tx->sync_result), "interrupted: connection lost");
        sync_reset(tx);
    }
}

void
repl__tx_held(const repl_peer *p, repl_held *out)
{
    const struct repl__tx *tx = p->tx;

    memset(out, 0, sizeof(*out));
    if (!tx)
        return;
    out->acked_hlc = tx->acked_hlc;
    if (tx->needs_resync && tx->resync_after_hlc) {
        out->resync_after_hlc = tx->resync_after_hlc;
        out->resync_acked_hlc = tx->held_hlc;
    }
}

int
repl__tx_set_bandwidth(repl_peer *p, uint64_t bytes_per_s)
{
    struct repl__tx *tx = p->tx;

    if (!tx)
        return MRD_ENOTFOUND;
    if (tx->bw_bps != bytes_per_s)
        MRD_INFO("repl.peer.bandwidth", "peer=%s bytes_per_s=%llu", p->name,
                 (unsigned long long)bytes_per_s);
    tx->bw_bps = bytes_per_s;
    tx->tokens = 0;
    tx->tokens_ns = 0;
    if (!bytes_per_s) {
        tx->tokens = 1; /* resume whatever waited */
        bw_resume(tx);
    }
    return 0;
}

void
repl__tx_fill(const repl_peer *p, repl_peer_info *out)
{
    const struct repl__tx *tx = p->tx;

    if (!tx)
        return;
    repl__tx_held(p, &out->held);
    out->bandwidth_bps = tx->bw_bps;
    out->streaming = tx->active;
    out->needs_resync = tx->needs_resync;
    out->acked_lsn = tx->acked;
    out->cursor_lsn = tx->saved;
    out->read_lsn = tx->read_from ? tx->read_from - 1 : 0;
    out->queued = (uint32_t)(tx->q_n + tx->rq_n);
    out->inflight = (uint32_t)tx->inflight;
    out->inflight_bytes = tx->inflight_bytes;
    out->batches_sent = tx->batches;
    out->records_sent = tx->records;
    out->objects_sent = tx->objects;
    out->superseded_skipped = tx->superseded;
    snprintf(out->data_check, sizeof(out->data_check), "%s",
             !tx->active                              ? ""
             : tx->data_check == REPL_DCHECK_CRC32C   ? "crc32c"
             : tx->data_check == REPL_DCHECK_POLY1305 ? "poly1305"
                                                      : "md5");
    /* a scan of an older range than what is acked now would overstate */
    out->lag_bytes = tx->acked >= tx->lag_bytes_at ? 0 : tx->lag_bytes;
    out->lag_bytes_partial = tx->lag_bytes_partial;
    out->data_bytes_sent = tx->data_bytes;
    out->send_errors = tx->errors;
    snprintf(out->send_error, sizeof(out->send_error), "%s", tx->error);
    out->sync_running = tx->sync_state != SYNC_NONE;
    out->sync_runs = tx->sync_runs;
    out->sync_versions_sent = __atomic_load_n(&tx->sync_sent, __ATOMIC_RELAXED);
    out->sync_buckets_sent = __atomic_load_n(&tx->sync_buckets, __ATOMIC_RELAXED);
    out->sync_leaves_differ = tx->sync_leaves;
    out->sync_versions_estimate = tx->sync_estimate;
    out->sync_elapsed_ms =
        tx->sync_started_ns ? (mrd_clock_mono_ns() - tx->sync_started_ns) / 1000000 : 0;
    snprintf(out->sync_result, sizeof(out->sync_result), "%s", tx->sync_result);
    out->sync_tree = tx->sync_tree;
    out->sync_digest_bytes = tx->sync_digest_bytes;
    out->sync_digest_rounds = tx->sync_rounds;
    snprintf(out->sync_push, sizeof(out->sync_push), "%s", tx->sync_push_result);
    out->sync_versions_skipped = __atomic_load_n(&tx->sync_skipped, __ATOMIC_RELAXED);
    snprintf(out->sync_summaries, sizeof(out->sync_summaries), "%s", tx->sync_sum_result);
}
