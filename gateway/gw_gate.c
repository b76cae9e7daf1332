/*
 * gw_gate.c - the memory gates: how many large uploads and downloads hold
 * their buffers at once ([s3] max_uploads, max_downloads).
 *
 * A large upload holds about 5 MiB while it runs (two body buffers and up
 * to two stripes) and a large download about 3 MiB (a chunk being read and
 * two queued); a request forwarded to a peer holds up to about 2 MiB (the
 * proxy's queues on either side, gw_proxy.c). Each is bounded per stream,
 * but not in sum: a thousand clients at once would take gigabytes. The
 * gates bound how many hold their buffers at once, served from here or
 * forwarded alike; each loop admits its share (at least one) and the others
 * wait in arrival order. An upload waits paused before its writer opens (or
 * before its peer connection, forwarded), its body unread, so TCP holds its
 * client back; a download waits after its response head, before its first
 * read (forwarded: before the proxy reads the peer's body). A body of at
 * most GW_GATE_SMALL bytes never waits: it needs little memory, and small
 * requests need concurrency (the WAL's group commit, many small GETs). A
 * line is the loop's own (thread-local, like everything of a loop); the
 * counters for /metrics add up every loop's.
 */
#include "gw_int.h"

typedef struct gate {
    int active;
    gw_gate_node *head, *tail;
    int *active_all, *waiting_all; /* GW_ADD / GW_LOAD */
} gate;

static int uploads_active_all, uploads_waiting_all, downloads_active_all, downloads_waiting_all;
static __thread gate gates[2] = {
    [GW_GATE_UPLOAD] = {0, NULL, NULL, &uploads_active_all, &uploads_waiting_all},
    [GW_GATE_DOWNLOAD] = {0, NULL, NULL, &downloads_active_all, &downloads_waiting_all},
};

void
gw__s3_uploads(int *active, int *waiting)
{
    *active = GW_LOAD(uploads_active_all);
    *waiting = GW_LOAD(uploads_waiting_all);
}

void
gw__s3_downloads(int *active, int *waiting)
{
    *active = GW_LOAD(downloads_active_all);
    *waiting = GW_LOAD(downloads_waiting_all);
}

static int
gate_limit(gw_gate_kind k, const gw_daemon *d)
{
    return k == GW_GATE_UPLOAD ? d->conf->s3_max_uploads : d->conf->s3_max_downloads;
}

/* This loop's share of a limit over every loop. */
static int
gate_share(const gw_daemon *d, int limit)
{
    int share = limit / (d->n_loops > 0 ? d->n_loops : 1);

    return share > 0 ? share : 1;
}

int
gw__gate_enter(gw_gate_kind k, gw_gate_node *n, const gw_daemon *d, int64_t size)
{
    gate *g = &gates[k];
    int limit = gate_limit(k, d);

    if (limit <= 0 || (size >= 0 && (uint64_t)size <= GW_GATE_SMALL))
        return 1;
    if (g->active < gate_share(d, limit)) {
        g->active++;
        GW_ADD(*g->active_all, 1);
        n->gated = 1;
        return 1;
    }
    n->waiting = 1;
    n->prev = g->tail;
    if (g->tail)
        g->tail->next = n;
    else
        g->head = n;
    g->tail = n;
    GW_ADD(*g->waiting_all, 1);
    return 0;
}

/* n out of g's line. */
static void
unlink_waiting(gate *g, gw_gate_node *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else
        g->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        g->tail = n->prev;
    n->prev = n->next = NULL;
    n->waiting = 0;
    GW_ADD(*g->waiting_all, -1);
}

void
gw__gate_leave(gw_gate_kind k, gw_gate_node *n, const gw_daemon *d)
{
    gate *g = &gates[k];
    int limit = gate_limit(k, d);

    if (n->waiting) {
        unlink_waiting(g, n);
        return;
    }
    if (!n->gated)
        return;
    n->gated = 0;
    g->active--;
    GW_ADD(*g->active_all, -1);
    while (g->head && g->active < gate_share(d, limit)) {
        gw_gate_node *w = g->head;
        unlink_waiting(g, w);
        w->gated = 1;
        g->active++;
        GW_ADD(*g->active_all, 1);
        w->admit(w);
    }
}
