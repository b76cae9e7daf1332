/*
 * repl_recv.c - the receiver: takes a peer's POST /repl/v1/records
 * requests, writes object data into the local store, applies each batch
 * through the engine in the peer's LSN order, and answers with an Ack.
 *
 * A request body is a 4-byte big-endian length, a RecordBatch of that length
 * (the "head"), then, when the batch's last record is an object put with
 * data_size > 0, exactly data_size bytes of object data. The request
 * signature covers the head (PROTOCOL.md section 2 and 6); the data is
 * bound to its record by size and by a check made when the store writer
 * finishes, before anything is applied: the data check the sender puts
 * after the data when the record says so (data_check: senders that saw
 * REPL_FEATURE_DATA_CHECK in our Hello; a CRC32C on TLS links, a Poly1305
 * tag over head and data on h2c links, repl_auth.c), or else the
 * MD5 against the record's ETag (senders without the feature). The store
 * writer then skips its MD5, which was a third of the receiver's CPU, and
 * multipart objects, whose ETag is no MD5 of the data, are checked too.
 *
 * Per request:
 *   head bytes  -> authenticate, parse and check the batch (400 on anything
 *                  malformed; the window goes back at once: heads are capped
 *                  at REPL_MAX_BATCH_HEAD)
 *   data bytes  -> held un-consumed until a store job has written them, in
 *                  REPL_CHUNK pieces, so the peer's HTTP/2 stream window
 *                  (16 MiB) is the most one request can buffer here and a
 *                  slow store slows the sender
 *   end         -> store_writer_finish, size and data check (or MD5) checked, the record's
 *                  layout replaced by ours
 *   queue       -> batches wait in the peer's queue, ordered by first LSN,
 *                  and are applied one at a time when they continue what is
 *                  applied (engine_repl_apply); the answer is Ack{applied}
 * Requests complete out of order (a large object behind a small batch), so
 * the queue restores LSN order; a batch whose predecessor never comes (its
 * connection died and the sender starts over) is answered 409 after
 * REPL_REORDER_MAX_MS. A batch already applied is acked at once and its data
 * freed: re-sends after a reconnect are harmless.
 *
 * A request whose stream goes away before it is applied still gets applied
 * if it is complete (it is valid; the sender will resend it and the resend
 * is then a duplicate), otherwise its data is removed.
 */
#include "repl_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "store.h"
#include "wal.h"
#include "wal.pb-c.h"

enum { RX_HEAD = 0, RX_DATA, RX_COMPLETE };

typedef struct repl__rx {
    struct repl__rx *next; /* in the peer's queue */
    int refs;
    int detached; /* repl_free ran: touch nothing but ourselves */
    repl *r;      /* NULL once detached */
    repl_peer *p; /* set by authentication; NULL once detached */
    store *st;    /* the engine's store (outlives repl_free) */
    struct engine *eng;
    repl__life *life; /* life->dead once repl_free ran */
    repl__conn *c;    /* NULL once the stream is gone */
    repl__stream *s;
    int32_t stream_id;
    int phase, failed, ended, in_queue, applied, issued;
    int resync; /* /repl/v1/resync: applied at once, no LSN order */
    uint32_t origin;
    mrd_buf head;
    uint32_t head_len;
    repl__batch batch;
    /* object data */
    Meridian__WalRecord *obj;
    uint64_t data_size, received, written;
    repl__dcheck dc;                  /* the data check, fed by the write jobs */
    size_t trailer_need, trailer_len; /* its bytes after the data, as received */
    uint8_t trailer[REPL_DCHECK_MAX];
    mrd_buf pend;
    mrd_buf jbuf; /* the bytes the running job writes */
    store_writer *w;
    store_put_result res; /* after finish: the data we hold */
    int have_data;
    uint8_t *payload; /* the record re-packed with our layout */
    size_t payload_len;
    int job_running, err;
    uint64_t queued_ns;
} repl__rx;

static void
rx_discard_data(repl__rx *rx)
{
    store *st = rx->st;

    if (rx->w) {
        store_writer_abort(rx->w);
        rx->w = NULL;
    }
    if (rx->have_data && st)
        store_object_delete_data(st, rx->res.layout, rx->res.layout_len);
    rx->have_data = 0;
}

static void pool_release(repl *r, mrd_buf *b);

static void
rx_unref(repl__rx *rx)
{
    /* the replicator (and its pool) may be gone: an index commit or a
     * store job still running at shutdown ends after repl_free */
    repl *r = rx->life->dead ? NULL : rx->r;

    if (--rx->refs > 0)
        return;
    rx_discard_data(rx);
    repl__dcheck_free(&rx->dc);
    store_put_result_clear(&rx->res);
    repl__batch_free(&rx->batch);
    if (rx->obj)
        wal_record_free(rx->obj);
    mrd_buf_free(&rx->head);
    pool_release(r, &rx->pend);
    pool_release(r, &rx->jbuf);
    free(rx->payload);
    repl__life_unref(rx->life);
    free(rx);
}

/* ---- request buffers ---------------------------------------------------------
 *
 * A batch head (up to about 1 MiB of inline records) and an object's data
 * chunks (REPL_CHUNK) live for one request each. Fresh memory for them cost
 * the receiver a fifth of its CPU in a 1 MiB catch-up: a realloc chain
 * doubling from 256 bytes, copying at every step, and a page fault per 4 KiB
 * of every new buffer. Buffers are kept instead, at most REPL_POOL_BUFS of at
 * least POOL_MIN bytes, REPL_POOL_BYTES in all, and handed out smallest
 * first; new ones are made big enough for any chunk, so one size serves
 * heads and data alike. Loop thread only.
 */

#define POOL_MIN   (64u << 10)  /* smaller buffers are not worth keeping */
#define POOL_ROUND (256u << 10) /* new buffers: a multiple of this, and room for a chunk */

/* Room for need more bytes in b: a kept buffer when one is big enough, else
 * a new one with room for a whole chunk at least, rounded up to POOL_ROUND,
 * so that kept buffers fit the next request (sized exactly, each head a few
 * bytes larger than the last found none that fit, and every request took
 * fresh memory again). b's bytes, at most a few, are kept. */
static int
pool_reserve(repl *r, mrd_buf *b, size_t need)
{
    int best = -1;
    size_t cap;
    char *p;

    if (b->cap >= b->len + need + 1)
        return 0;
    for (int i = 0; r && i < r->n_pool; i++)
        if (r->pool[i].cap >= b->len + need + 1 && (best < 0 || r->pool[i].cap < r->pool[best].cap))
            best = i;
    if (best >= 0) {
        mrd_buf k = r->pool[best];
        r->pool[best] = r->pool[--r->n_pool];
        r->pool_bytes -= k.cap;
        if (b->len) /* b->data may be NULL (a new request's buffer) */
            memcpy(k.data, b->data, b->len);
        k.len = b->len;
        k.data[k.len] = '\0';
        mrd_buf_free(b);
        *b = k;
        return 0;
    }
    if (b->len + need < POOL_MIN)
        return mrd_buf_reserve(b, need);
    cap = b->len + need + 1 > REPL_CHUNK + 1 ? b->len + need + 1 : REPL_CHUNK + 1;
    cap = (cap + POOL_ROUND - 1) / POOL_ROUND * POOL_ROUND;
    if (!(p = realloc(b->data, cap)))
        return -ENOMEM;
    b->data = p;
    b->cap = cap;
    b->data[b->len] = '\0';
    return 0;
}

/* Gives b's memory back to the pool (or frees it); b is left empty. */
static void
pool_release(repl *r, mrd_buf *b)
{
    if (r && b->cap >= POOL_MIN && r->n_pool < REPL_POOL_BUFS &&
        r->pool_bytes + b->cap <= REPL_POOL_BYTES) {
        b->len = 0;
        r->pool_bytes += b->cap;
        r->pool[r->n_pool++] = *b;
        memset(b, 0, sizeof(*b));
        return;
    }
    mrd_buf_free(b);
}

void
repl__rx_pool_free(repl *r)
{
    while (r->n_pool)
        mrd_buf_free(&r->pool[--r->n_pool]);
    r->pool_bytes = 0;
}

/* Why an apply failed, for the peer: once the engine refuses writes after a
 * WAL or index failure, what failed (a full disk reads as such, not as a
 * generic durability error), since nothing applies here until a restart. */
static void
apply_failure(repl *r, const char *what, int status, char *out, size_t n)
{
    engine_status st;

    if (status == MRD_EDURABLE && r && r->eng && engine_get_status(r->eng, &st) == 0 && st.failed &&
        st.failure[0])
        snprintf(out, n, "%s: writes refused until restart: %s", what, st.failure);
    else
        snprintf(out, n, "%s: %s", what, mrd_strerror(status));
}

/* Flushes the connection after work done outside nghttp2 callbacks. */
static void
flush(repl__conn *c)
{
    if (!c)
        return;
    repl__conn_flush(c);
    if (c->dead)
        repl__conn_reap(c);
}

static void
answer(repl__rx *rx, int status, const char *text)
{
    if (!rx->s || !rx->c || rx->s->answered)
        return;
    if (status == 200) {
        mrd_buf body = {0};
        if (repl__ack_encode(rx->p->id, rx->p->rx_applied, &body) == 0 &&
            repl__submit_response(rx->c, rx->s, 200, body.data, body.len) == 0) {
            mrd_buf_free(&body);
            return;
        }
        mrd_buf_free(&body);
        repl__conn_fail(rx->c, "cannot submit ack");
        return;
    }
    repl__server_answer_text(rx->c, rx->s, status, text);
}

/* A request that cannot be applied: answered, data dropped. */
static void
rx_fail(repl__rx *rx, int status, const char *why)
{
    if (rx->failed)
        return;
    rx->failed = 1;
    if (rx->p) {
        rx->p->rx_errors++;
        MRD_WARN("repl.recv.reject", "peer=%s first=%llu last=%llu status=%d reason=\"%s\"",
                 rx->p->name, (unsigned long long)rx->batch.first,
                 (unsigned long long)rx->batch.last, status, why);
    } else {
        MRD_WARN("repl.recv.reject", "remote=%s status=%d reason=\"%s\"",
                 rx->c ? rx->c->remote : "-", status, why);
    }
    answer(rx, status, why);
    if (!rx->job_running)
        rx_discard_data(rx);
}

/* ---- the apply queue ------------------------------------------------------ */

static void apply_next(repl_peer *p);

static void
dequeue(repl_peer *p, repl__rx *rx)
{
    for (repl__rx **pp = &p->rxq; *pp; pp = &(*pp)->next) {
        if (*pp == rx) {
            *pp = rx->next;
            break;
        }
    }
    rx->next = NULL;
    rx->in_queue = 0;
}

static void
applied_cb(void *ud, int status)
{
    repl__rx *rx = ud;
    repl_peer *p = rx->p;
    repl__conn *c;

    /* the engine owns the data now (and frees it if it lost); after
     * MRD_EDURABLE the record may still be in the WAL and replay would find
     * it, so the data is kept (orphaned at worst) rather than freed */
    if (status == 0 || status == MRD_EDURABLE)
        rx->have_data = 0;
    if (rx->detached || rx->life->dead) {
        rx_unref(rx);
        return;
    }
    p->rx_inflight--;
    dequeue(p, rx);
    if (status == 0) {
        rx->applied = 1;
        if (rx->batch.last > p->rx_applied)
            p->rx_applied = rx->batch.last;
        p->rx_batches++;
        p->rx_records += rx->batch.n;
        if (rx->data_size) {
            p->rx_objects++;
            p->rx_bytes += rx->data_size;
        }
        answer(rx, 200, NULL);
    } else {
        char why[160];
        apply_failure(rx->r, "apply failed", status, why, sizeof(why));
        /* nothing after the failed range applies (the engine refuses the
         * gap); the sender resends from what is applied */
        p->rx_issued = p->rx_applied;
        rx_fail(rx, 503, why);
    }
    c = rx->c;
    rx_unref(rx);
    apply_next(p);
    flush(c);
}

/*
 * Hands queued batches to the engine in LSN order, as soon as each one
 * continues what was handed before (first <= issued + 1), without waiting
 * for the previous one to be applied: the engine appends them in call order
 * and group-commits them together. Each is answered when its own callback
 * reports it applied.
 */
static void
apply_next(repl_peer *p)
{
    repl *r = p->r;
    repl__rx *rx, *next;

    for (rx = p->rxq; rx; rx = next) {
        engine_repl_rec recs[REPL_MAX_RECORDS];
        size_t n = 0;
        int rc;

        next = rx->next;
        if (rx->issued)
            continue;
        if (rx->batch.last <= p->rx_issued) {
            /* all of it was handed to the engine already: a re-send */
            p->rx_duplicates += rx->batch.n;
            dequeue(p, rx);
            rx_discard_data(rx);
            answer(rx, 200, NULL);
            flush(rx->c);
            rx_unref(rx);
            continue;
        }
        if (rx->batch.first > p->rx_issued + 1)
            return; /* its predecessor is still on its way */
        for (size_t i = 0; i < rx->batch.n; i++) {
            const repl__rec *x = &rx->batch.recs[i];
            if (x->lsn <= p->rx_issued)
                continue;
            recs[n].lsn = x->lsn;
            recs[n].type = x->type;
            recs[n].payload = x->payload;
            recs[n].len = x->len;
            if (x->data_size) {
                recs[n].payload = rx->payload;
                recs[n].len = rx->payload_len;
            }
            n++;
        }
        if (rx->data_size && (n == 0 || !rx->batch.recs[rx->batch.n - 1].data_size ||
                              rx->batch.recs[rx->batch.n - 1].lsn <= p->rx_issued))
            rx_discard_data(rx); /* its object was handed over already */
        rc = engine_repl_apply(r->eng, p->id, rx->batch.first, recs, n, rx->batch.last, applied_cb,
                               rx);
        if (rc != 0) {
            char why[128];
            snprintf(why, sizeof(why), "cannot apply: %s", mrd_strerror(rc));
            dequeue(p, rx);
            rx_fail(rx, 503, why);
            flush(rx->c);
            rx_unref(rx);
            return;
        }
        rx->issued = 1;
        p->rx_inflight++;
        p->rx_issued = rx->batch.last;
    }
}

static void resync_apply(repl__rx *rx);

static void
enqueue(repl__rx *rx)
{
    repl_peer *p = rx->p;
    repl__rx **pp = &p->rxq;

    if (rx->resync) {
        resync_apply(rx);
        return;
    }
    while (*pp && (*pp)->batch.first <= rx->batch.first)
        pp = &(*pp)->next;
    rx->next = *pp;
    *pp = rx;
    rx->in_queue = 1;
    rx->refs++;
    rx->queued_ns = mrd_clock_mono_ns();
    rx->phase = RX_COMPLETE;
    apply_next(p);
}

static void dg_cache_drop(repl_peer *p);

void
repl__rx_tick(repl_peer *p)
{
    repl__rx *rx = p->rxq;
    uint64_t now = mrd_clock_mono_ns();

    if (p->dg_cache && now - p->dg_used_ns > (uint64_t)REPL_DIGEST_CACHE_MS * 1000000ull)
        dg_cache_drop(p);
    while (rx && rx->issued)
        rx = rx->next;
    if (rx && rx->batch.first > p->rx_issued + 1 &&
        now - rx->queued_ns > (uint64_t)REPL_REORDER_MAX_MS * 1000000ull) {
        repl__conn *c = rx->c;
        dequeue(p, rx);
        rx_fail(rx, 409, "the records before this batch never arrived");
        rx_unref(rx);
        flush(c);
    }
}

/* ---- anti-entropy: the receiving side ---------------------------------------- */

static void
resync_done(void *ud, int status)
{
    repl__rx *rx = ud;
    repl__conn *c;

    if (status == 0 || status == MRD_EDURABLE)
        rx->have_data = 0; /* the engine owns it (see applied_cb) */
    if (rx->detached || rx->life->dead) {
        rx_unref(rx);
        return;
    }
    if (status == 0) {
        rx->applied = 1;
        rx->p->rx_resync_versions += rx->batch.n;
        answer(rx, 200, NULL);
    } else {
        char why[160];
        apply_failure(rx->r, "resync apply failed", status, why, sizeof(why));
        rx_fail(rx, 503, why);
    }
    c = rx->c;
    rx_unref(rx);
    flush(c);
}

/* The marker (sent when a resync pass starts; by older builds, when it
 * ends): this site now holds the peer's state as of its LSN last, up to the
 * versions the pass still brings, and the peer's stream goes on after it.
 * Applied LSNs only rise (engine_repl_set_applied ignores a lower one). */
static void
marker_work(void *arg)
{
    repl__rx *rx = arg;

    rx->err = engine_repl_set_applied(rx->eng, rx->origin, rx->batch.last);
}

static void
marker_done(void *arg)
{
    repl__rx *rx = arg;
    repl__conn *c = rx->c;

    rx->job_running = 0;
    if (rx->detached || rx->failed || rx->life->dead) {
        rx_unref(rx);
        return;
    }
    if (rx->err == 0) {
        if (rx->batch.last > rx->p->rx_applied)
            rx->p->rx_applied = rx->batch.last;
        if (rx->batch.last > rx->p->rx_issued)
            rx->p->rx_issued = rx->batch.last;
        MRD_INFO("repl.sync.level", "peer=%s applied_lsn=%llu", rx->p->name,
                 (unsigned long long)rx->p->rx_applied);
        answer(rx, 200, NULL);
        apply_next(rx->p); /* records after the marker may be waiting for it */
    } else {
        rx_fail(rx, 503, "cannot record the resync point");
    }
    rx_unref(rx);
    flush(c);
}

/* Versions rebuilt from a peer's index: applied at once, in any order (the
 * conflict decision makes order irrelevant). Called with the stream's ref. */
static void
resync_apply(repl__rx *rx)
{
    engine_repl_rec recs[REPL_MAX_RECORDS];
    int rc;

    rx->phase = RX_COMPLETE;
    if (rx->batch.n == 0) {
        rx->job_running = 1;
        rx->refs++;
        if (engine_run(rx->r->eng, marker_work, marker_done, rx) != 0) {
            rx->job_running = 0;
            rx->refs--;
            rx_fail(rx, 503, "shutting down");
        }
        return;
    }
    for (size_t i = 0; i < rx->batch.n; i++) {
        const repl__rec *x = &rx->batch.recs[i];
        recs[i] =
            (engine_repl_rec){.lsn = 0, .type = x->type, .payload = x->payload, .len = x->len};
        if (x->data_size) {
            recs[i].payload = rx->payload;
            recs[i].len = rx->payload_len;
        }
    }
    rx->refs++;
    rc = engine_resync_apply(rx->r->eng, rx->p->id, recs, rx->batch.n, resync_done, rx);
    if (rc != 0) {
        rx->refs--;
        rx_fail(rx, 503, "cannot apply resync versions");
    }
}

/*
 * POST /repl/v1/digest (PROTOCOL.md section 7).
 *   - version 1 (an empty or tree = 0 request): the flat digest of every
 *     bucket, computed by a job;
 *   - version 2, no ranges: a job computes the trees, answers the roots and
 *     keeps the trees for the asking peer (p->dg_cache) so that its
 *     children requests, answered on the loop from that snapshot, compare
 *     one consistent state; replaced by its next root request, freed by its
 *     push or after REPL_DIGEST_CACHE_MS unused;
 *   - version 2, push: the asker found those subtrees differ; our own pass
 *     to it sends what we hold in them (repl__sync_start_push);
 *   - version 3, summaries: the asker found those subtrees differ; a job
 *     lists what we hold in them (repl__summaries_encode), so that its pass
 *     sends only versions that change something here. The children cache
 *     is left alone: the asker's comparison is over, and its push follows.
 */
typedef struct dgsrv {
    int refs;
    repl__conn *c; /* NULL once the stream is gone */
    repl__stream *s;
    store *st;
    mrd_buf out;
    int rc, tree;
    repl__dreq q; /* summaries: the subtrees asked about */
    size_t page;  /* summaries: the most bytes of them in the answer */
    uint64_t versions;
    repl__bdigest *d; /* tree: kept for the peer's children requests */
    size_t buckets;
} dgsrv;

static void
dgsrv_unref(dgsrv *g)
{
    if (--g->refs > 0)
        return;
    mrd_buf_free(&g->out);
    repl__digest_free(g->d, g->buckets);
    repl__dreq_free(&g->q);
    free(g);
}

static void
dgsrv_work(void *arg)
{
    dgsrv *g = arg;
    repl__bdigest *d = NULL;
    size_t n = 0;

    if (g->q.summaries) {
        g->rc = repl__summaries_encode(g->st, &g->q, g->page, &g->out);
        return;
    }
    g->rc = repl__digest_all(g->st, g->tree ? 2 : 1, &d, &n);
    if (g->rc == 0)
        g->rc =
            g->tree ? repl__tree_roots_encode(d, n, &g->out) : repl__digest_encode(d, n, &g->out);
    for (size_t i = 0; i < n; i++)
        g->versions += d[i].versions;
    g->buckets = n;
    if (g->tree && g->rc == 0) {
        g->d = d;
        return;
    }
    repl__digest_free(d, n);
}

static void
dg_cache_drop(repl_peer *p)
{
    repl__digest_free(p->dg_cache, p->dg_n);
    p->dg_cache = NULL;
    p->dg_n = 0;
}

static void
dgsrv_done(void *arg)
{
    dgsrv *g = arg;
    repl__conn *c = g->c;

    if (c && g->s) {
        if (g->rc == 0) {
            if (g->tree && !g->q.summaries && c->peer) {
                dg_cache_drop(c->peer);
                c->peer->dg_cache = g->d;
                c->peer->dg_n = g->buckets;
                c->peer->dg_used_ns = mrd_clock_mono_ns();
                g->d = NULL;
            }
            if (repl__submit_response(c, g->s, 200, g->out.data, g->out.len) < 0)
                repl__conn_fail(c, "cannot submit digest");
        } else {
            repl__server_answer_text(c, g->s, 503, mrd_strerror(g->rc));
        }
        MRD_DEBUG("repl.digest.served",
                  "remote=%s tree=%d summaries=%d buckets=%zu versions=%llu bytes=%zu rc=%d",
                  c->remote, g->tree, g->q.summaries, g->buckets, (unsigned long long)g->versions,
                  g->out.len, g->rc);
    }
    dgsrv_unref(g);
    flush(c);
}

/* Version 2 requests answered on the loop: children from the cached trees,
 * or a push. */
static void
digest_serve_loop(repl__conn *c, repl__stream *s, repl_peer *p, repl__dreq *q)
{
    mrd_buf out = {0};
    int rc;

    if (q->push) {
        dg_cache_drop(p); /* the push ends the asker's comparison */
        rc = repl__sync_start_push(p, q);
        if (rc == MRD_EBUSY)
            repl__server_answer_text(c, s, 409, "a pass to the asker is already running");
        else if (rc != 0)
            repl__server_answer_text(c, s, 503, "cannot start a pass to the asker now");
        else if (repl__tree_roots_encode(NULL, 0, &out) == 0) /* an empty answer */
            repl__submit_response(c, s, 200, out.data, out.len);
        mrd_buf_free(&out);
        return;
    }
    if (!p->dg_cache) {
        repl__server_answer_text(c, s, 409, "no tree digest kept for you: ask for the roots first");
        return;
    }
    p->dg_used_ns = mrd_clock_mono_ns();
    if ((rc = repl__tree_children_encode(p->dg_cache, p->dg_n, q, &out)) != 0)
        repl__server_answer_text(c, s, 503, mrd_strerror(rc));
    else if (repl__submit_response(c, s, 200, out.data, out.len) < 0)
        repl__conn_fail(c, "cannot submit digest");
    mrd_buf_free(&out);
}

void
repl__digest_serve(repl__conn *c, repl__stream *s, repl_peer *p)
{
    repl__dreq q = {0};
    dgsrv *g;

    if (!c->r->eng) {
        repl__server_answer_text(c, s, 503, "this site's store is not open yet");
        return;
    }
    if (s->in.len && repl__dreq_decode(s->in.data, s->in.len, &q) != 0) {
        repl__server_answer_text(c, s, 400, "malformed DigestRequest");
        return;
    }
    if (q.tree && !q.summaries && (q.n || q.push)) {
        digest_serve_loop(c, s, p, &q);
        repl__dreq_free(&q);
        return;
    }
    if (!(g = calloc(1, sizeof(*g)))) {
        repl__dreq_free(&q);
        repl__server_answer_text(c, s, 503, "out of memory");
        return;
    }
    g->refs = 2; /* the stream's and the job's */
    g->c = c;
    g->s = s;
    g->st = engine_store(c->r->eng);
    g->tree = q.tree;
    g->q = q; /* taken over */
    g->page = c->r->o.summary_page_bytes >= REPL_SUMMARIES_MIN &&
                      c->r->o.summary_page_bytes <= REPL_SUMMARIES_MAX
                  ? c->r->o.summary_page_bytes
                  : REPL_SUMMARIES_MAX;
    s->kind = REPL__ST_DIGEST_SRV;
    s->ctx = g;
    if (engine_run(c->r->eng, dgsrv_work, dgsrv_done, g) != 0) {
        g->refs = 1;
        repl__server_answer_text(c, s, 503, "shutting down");
    }
}

void
repl__digest_srv_gone(repl__stream *s)
{
    dgsrv *g = s->ctx;

    s->ctx = NULL;
    g->c = NULL;
    g->s = NULL;
    dgsrv_unref(g);
}

/* ---- object data ------------------------------------------------------------ */

static void finish_start(repl__rx *rx);

static void
write_work(void *arg)
{
    repl__rx *rx = arg;
    Meridian__ObjectPut *op = rx->obj->object_put;
    int rc = 0;

    if (!rx->w)
        rc = store_writer_open(rx->st, op->bucket, op->key, op->version_id,
                               rx->trailer_need ? STORE_WRITE_NO_MD5 : 0, &rx->w);
    if (rc == 0)
        repl__dcheck_update(&rx->dc, rx->jbuf.data, rx->jbuf.len);
    if (rc == 0)
        rc = store_writer_write(rx->w, rx->jbuf.data, rx->jbuf.len);
    rx->err = rc;
}

static void maybe_write(repl__rx *rx);

static void
write_done(void *arg)
{
    repl__rx *rx = arg;
    repl__conn *c = rx->c;
    size_t n = rx->jbuf.len;

    rx->job_running = 0;
    mrd_buf_reset(&rx->jbuf);
    if (rx->detached || rx->failed || rx->life->dead) {
        rx_discard_data(rx);
        rx_unref(rx);
        return;
    }
    if (rx->err) {
        char why[128];
        snprintf(why, sizeof(why), "store write failed: %s", mrd_strerror(rx->err));
        rx_fail(rx, 503, why);
    } else {
        rx->written += n;
        if (c)
            repl__conn_consume(c, rx->stream_id, n);
        maybe_write(rx);
    }
    rx_unref(rx);
    flush(c);
}

static void
maybe_write(repl__rx *rx)
{
    mrd_buf t;

    if (rx->job_running || rx->failed)
        return;
    if (rx->written == rx->data_size) {
        if (rx->ended)
            finish_start(rx);
        return;
    }
    if (rx->pend.len < REPL_CHUNK && rx->received < rx->data_size)
        return;
    if (rx->pend.len == 0)
        return;
    t = rx->jbuf;
    rx->jbuf = rx->pend;
    rx->pend = t;
    mrd_buf_reset(&rx->pend);
    rx->job_running = 1;
    rx->refs++;
    if (engine_run(rx->r->eng, write_work, write_done, rx) != 0) {
        rx->job_running = 0;
        rx->refs--;
        rx_fail(rx, 503, "shutting down");
    }
}

static void
finish_work(void *arg)
{
    repl__rx *rx = arg;

    rx->err = store_writer_finish(rx->w, &rx->res);
    rx->w = NULL;
    if (rx->err == 0)
        rx->have_data = 1;
}

/* The record with our layout in place of the origin's. */
static int
repack(repl__rx *rx)
{
    Meridian__ObjectPut *op = rx->obj->object_put;
    size_t n;

    op->layout.data = rx->res.layout;
    op->layout.len = rx->res.layout_len;
    n = meridian__wal_record__get_packed_size(rx->obj);
    rx->payload = malloc(n ? n : 1);
    if (rx->payload) {
        meridian__wal_record__pack(rx->obj, rx->payload);
        rx->payload_len = n;
    }
    op->layout.data = NULL;
    op->layout.len = 0;
    return rx->payload ? 0 : -ENOMEM;
}

/* The data check over what was stored against the one the sender sent:
 * 1 when they match, 0 when not, negative when ours could not be computed. */
static int
check_matches(repl__rx *rx)
{
    uint8_t mine[REPL_DCHECK_MAX];
    size_t n = 0;
    int rc = repl__dcheck_final(&rx->dc, mine, &n);

    if (rc < 0)
        return rc;
    return n == rx->trailer_need && mrd_consttime_equal(mine, n, rx->trailer, rx->trailer_len);
}

static void
finish_done(void *arg)
{
    repl__rx *rx = arg;
    repl__conn *c = rx->c;
    Meridian__ObjectPut *op = rx->obj->object_put;
    int match = 0;

    rx->job_running = 0;
    if (rx->detached || rx->failed || rx->life->dead) {
        rx_discard_data(rx);
        rx_unref(rx);
        return;
    }
    if (rx->err) {
        char why[128];
        snprintf(why, sizeof(why), "store finish failed: %s", mrd_strerror(rx->err));
        rx_fail(rx, 503, why);
    } else if (rx->res.size != op->size) {
        rx_fail(rx, 400, "object data does not match its record (size)");
    } else if (rx->trailer_need && (match = check_matches(rx)) < 0) {
        rx_fail(rx, 503, "cannot finish the data check");
    } else if (rx->trailer_need ? !match
                                : strlen(op->etag) == 32 && strcmp(op->etag, rx->res.etag) != 0) {
        rx_fail(rx, 400,
                rx->dc.kind == REPL_DCHECK_CRC32C ? "object data does not match its CRC32C"
                : rx->trailer_need                ? "object data does not match its Poly1305 tag"
                                                  : "object data does not match its record (MD5)");
    } else if (repack(rx) != 0) {
        rx_fail(rx, 503, "out of memory");
    } else {
        enqueue(rx);
    }
    rx_unref(rx);
    flush(c);
}

static void
finish_start(repl__rx *rx)
{
    rx->job_running = 1;
    rx->refs++;
    if (engine_run(rx->r->eng, finish_work, finish_done, rx) != 0) {
        rx->job_running = 0;
        rx->refs--;
        rx_fail(rx, 503, "shutting down");
    }
}

/* ---- the request ------------------------------------------------------------ */

static void
take_head(repl__rx *rx)
{
    repl__conn *c = rx->c;
    const char *reason = NULL;
    const repl__rec *last;
    int rc;
    repl_peer *p;

    p = repl__server_auth(c, rx->s, rx->head.data, rx->head.len);
    if (!p) {
        rx->failed = 1; /* answered 401 */
        return;
    }
    rx->p = p;
    rx->origin = p->id;
    if (!rx->r->eng) {
        rx_fail(rx, 503, "this site's store is not open yet");
        return;
    }
    if ((rx->resync ? repl__resync_parse : repl__batch_parse)(rx->head.data + 4, rx->head.len - 4,
                                                              &rx->batch, &reason) < 0) {
        rx_fail(rx, 400, reason);
        return;
    }
    last = rx->batch.n ? &rx->batch.recs[rx->batch.n - 1] : NULL;
    if (!last || !last->data_size) {
        rx->phase = RX_COMPLETE;
        return;
    }
    if (wal_record_decode(last->type, last->payload, last->len, &rx->obj) != 0 ||
        rx->obj->body_case != MERIDIAN__WAL_RECORD__BODY_OBJECT_PUT ||
        rx->obj->object_put->size != last->data_size || rx->obj->object_put->layout.len != 0) {
        rx_fail(rx, 400, "the data-bearing record is not an object put of that size");
        return;
    }
    rx->data_size = last->data_size;
    /* a CRC32C proves nothing against an on-path attacker: TLS links only */
    if (last->data_check == REPL_DCHECK_CRC32C && !c->tls) {
        rx_fail(rx, 400, "a CRC32C data check on a link without TLS");
        return;
    }
    /* the key comes from the secret; a site without one (mutual TLS alone)
     * never asks for this check, nor does one whose OpenSSL lacks Poly1305 */
    if (last->data_check == REPL_DCHECK_POLY1305 && !rx->r->secret) {
        rx_fail(rx, 400, "a Poly1305 data check on a site without the replication secret");
        return;
    }
    if (last->data_check == REPL_DCHECK_POLY1305 && !rx->r->dc_mac) {
        rx_fail(rx, 400, "a Poly1305 data check on a site whose OpenSSL has no Poly1305");
        return;
    }
    rc = repl__dcheck_init(&rx->dc, rx->r->dc_mac, last->data_check, rx->r->secret,
                           rx->r->secret_len, last->data_nonce, last->data_nonce_len, rx->head.data,
                           rx->head.len);
    if (rc == MRD_EINVAL) { /* the parser checks the kind and the nonce's size */
        rx_fail(rx, 400, "malformed data check");
        return;
    }
    if (rc != 0) {
        rx_fail(rx, 503, "cannot start the data check (out of memory)");
        return;
    }
    rx->trailer_need = repl__dcheck_len(last->data_check);
    rx->phase = RX_DATA;
}

int
repl__rx_data(repl__conn *c, repl__stream *s, const uint8_t *data, size_t len)
{
    repl__rx *rx = s->ctx;

    if (!rx) {
        if (!(rx = calloc(1, sizeof(*rx))))
            return -ENOMEM;
        rx->refs = 1;
        rx->r = c->r;
        rx->st = c->r->eng ? engine_store(c->r->eng) : NULL;
        rx->eng = c->r->eng;
        rx->life = c->r->life;
        rx->life->refs++;
        rx->c = c;
        rx->s = s;
        rx->stream_id = s->id;
        rx->resync = strcmp(s->path, REPL_PATH_RESYNC) == 0;
        s->ctx = rx;
    }
    if (rx->failed) {
        repl__conn_consume(c, s->id, len);
        return 0;
    }
    if (rx->phase == RX_HEAD) {
        size_t need, take;
        if (rx->head.len < 4) {
            take = 4 - rx->head.len < len ? 4 - rx->head.len : len;
            if (mrd_buf_append(&rx->head, data, take) < 0)
                return -ENOMEM;
            data += take;
            len -= take;
            repl__conn_consume(c, s->id, take);
            if (rx->head.len < 4)
                return 0;
            rx->head_len = (uint32_t)(uint8_t)rx->head.data[0] << 24 |
                           (uint32_t)(uint8_t)rx->head.data[1] << 16 |
                           (uint32_t)(uint8_t)rx->head.data[2] << 8 | (uint8_t)rx->head.data[3];
            if (rx->head_len > REPL_MAX_BATCH_HEAD) {
                rx_fail(rx, 413, "record batch over the size limit");
                repl__conn_consume(c, s->id, len);
                return 0;
            }
            /* once, at its size: no regrowth copies while 1 MiB of frames arrive */
            if (pool_reserve(rx->r, &rx->head, rx->head_len) < 0)
                return -ENOMEM;
        }
        need = 4 + rx->head_len - rx->head.len;
        take = need < len ? need : len;
        if (mrd_buf_append(&rx->head, data, take) < 0)
            return -ENOMEM;
        data += take;
        len -= take;
        repl__conn_consume(c, s->id, take);
        if (rx->head.len < 4 + rx->head_len)
            return 0;
        take_head(rx);
        pool_release(rx->r, &rx->head); /* the parsed batch holds copies */
        if (rx->failed) {
            repl__conn_consume(c, s->id, len);
            return 0;
        }
    }
    if (len == 0)
        return 0;
    if (rx->phase != RX_DATA ||
        rx->received + rx->trailer_len + len > rx->data_size + rx->trailer_need) {
        rx_fail(rx, 400, "more body than the batch announces");
        repl__conn_consume(c, s->id, len);
        return 0;
    }
    if (rx->received + len > rx->data_size) { /* the end of the data, then the trailer */
        size_t t = (size_t)(rx->received + len - rx->data_size);

        memcpy(rx->trailer + rx->trailer_len, data + len - t, t);
        rx->trailer_len += t;
        repl__conn_consume(c, s->id, t);
        len -= t;
        if (len == 0)
            return 0;
    }
    if (rx->pend.len == 0) { /* room for the next chunk at once, no realloc chain */
        uint64_t want = rx->data_size - rx->received;
        if (pool_reserve(rx->r, &rx->pend, want < REPL_CHUNK ? want : REPL_CHUNK) < 0)
            return -ENOMEM;
    }
    if (mrd_buf_append(&rx->pend, data, len) < 0)
        return -ENOMEM;
    rx->received += len;
    maybe_write(rx);
    return 0;
}

void
repl__rx_end(repl__conn *c, repl__stream *s)
{
    repl__rx *rx = s->ctx;

    if (!rx) {
        repl__server_answer_text(c, s, 400, "empty records request");
        return;
    }
    rx->ended = 1;
    if (rx->failed)
        return;
    if (rx->phase == RX_HEAD || rx->received < rx->data_size ||
        rx->trailer_len < rx->trailer_need) {
        rx_fail(rx, 400, "truncated records request");
        return;
    }
    if (rx->phase == RX_COMPLETE)
        enqueue(rx);
    else
        maybe_write(rx); /* finishes once the last chunk is written */
}

void
repl__rx_stream_gone(repl__stream *s)
{
    repl__rx *rx = s->ctx;

    s->ctx = NULL;
    rx->s = NULL;
    rx->c = NULL;
    if (!rx->in_queue && !rx->job_running && !rx->applied)
        rx_discard_data(rx);
    if (!rx->in_queue && rx->phase != RX_COMPLETE)
        rx->failed = 1; /* incomplete: a job in flight drops it */
    rx_unref(rx);
}

void
repl__rx_peer_free(repl_peer *p)
{
    repl__rx *rx = p->rxq;

    /* Called by repl_free after every connection (so every stream) is gone.
     * Batches handed to the engine keep the queue's reference until it
     * answers (applied_cb); the others drop it now. */
    p->rxq = NULL;
    dg_cache_drop(p);
    while (rx) {
        repl__rx *next = rx->next;
        rx->next = NULL;
        rx->in_queue = 0;
        rx->detached = 1;
        rx->p = NULL;
        rx->r = NULL;
        if (!rx->issued)
            rx_unref(rx);
        rx = next;
    }
    p->rx_inflight = 0;
}
