/*
 * gw_proxy.c - forwards one S3 request to a peer site's S3 listener and
 * streams the answer back (routed reads, write failover, drained sites).
 *
 * Why the S3 port and not the replication link: the peer then serves the
 * request with exactly the code that serves its own clients (the GET and
 * PUT state machines of gw_s3_obj.c, with their streaming, range handling,
 * durability and errors), and this side needs only a small streaming
 * HTTP/1.1 client. The request is authenticated with the replication secret
 * (repl_proxy_sign: x-meridian-site-id, x-meridian-time, x-meridian-auth
 * over method, target and the declared payload hash; replicator/PROTOCOL.md
 * section 8) in place of the client's SigV4, which this site has already
 * checked (an anonymous client's request is marked x-meridian-anonymous,
 * and the peer applies the bucket's ACL to it: gw_s3_acl.c). A peer serves
 * such a request locally and never forwards it again,
 * so a request crosses at most one WAN hop and cannot loop.
 *
 * Data path, per request, one TCP connection to the peer:
 *
 *   client --body--> gw_req ops->body --> upstream output --> peer
 *   client <--gw_resp_write-- llhttp (HTTP_RESPONSE) <-- upstream input <-- peer
 *
 * Backpressure both ways, nothing buffered whole:
 *   - request body: while more than PX_HIGH bytes wait in the upstream
 *     output, the client's body is paused (gw_req_pause); the upstream write
 *     callback (low-water PX_HIGH/4) resumes it;
 *   - response body: the upstream input is fed to llhttp PX_SLICE bytes at a
 *     time only while the client's output holds under PX_HIGH; above it,
 *     reading from the peer stops until ops->writable. The upstream read
 *     high-water mark (PX_SLICE * 4) bounds what the socket layer holds.
 * So a proxied stream holds about 2 * PX_HIGH whatever the object size, and
 * large bodies pass the site's memory gates (gw_gate.c) like those served
 * here: a request body over GW_GATE_SMALL waits for an upload slot before
 * the peer is connected (its body unread), a response body for a download
 * slot after its head went to the client (the peer's bytes unread).
 *
 * Failures. Before any byte of the answer has gone to the client, a failed
 * peer (connect refused, reset, timeout, malformed answer) is replaced by
 * the next one gw__route_pick offers (PX_MAX_TRIES in all) - for a request
 * with a body only while none of it has been consumed. When no peer is
 * left, the client gets the caller's fallback error. After the head has
 * gone out, the only honest signal is to cut the client connection
 * (gw_resp_abort), so a client never takes a short body for a whole one.
 *
 * TLS. Between sites the forwarded request carries the client's data, so a
 * peer with `s3_tls` (its S3 TLS listener) is only ever reached over TLS:
 * this site presents its site certificate ([replication] tls_cert, the
 * proxy_tls context, ALPN http/1.1), and the peer's certificate must be that
 * site's, by s3_tls_pin, else tls_pin, else the CA and its site name
 * (tls_identify, the rule of the replication links). A refused or failed
 * handshake is an ordinary failed attempt: the next peer is tried, and the
 * reason ("TLS: certificate does not match ...") is logged. The request's
 * own authentication (the replication secret's signature) is unchanged.
 *
 * Connections are kept alive and reused: after a response that was read to
 * its end, with the request fully sent and the peer not asking to close, the
 * connection goes to a small idle pool per peer (PX_POOL_PER_PEER, closed
 * after PX_IDLE_S idle - under the peer's own 60 s keep-alive limit - or at
 * once if the peer closes it or sends anything). So a forwarded request over
 * a WAN costs one round trip, not two. A reused connection the peer closed
 * just before our request came fails without an answer byte; that attempt
 * is retried once on a fresh connection to the same peer, not counted as
 * the peer failing.
 *
 * Threads: a px lives on the S3 loop of its client connection, and so do
 * its upstream connection and the idle pool it may come from (one pool per
 * loop, thread-local). Peer data and the replicator's signing come from
 * the daemon's view (gw_loop.c); counters are atomic.
 *
 * Lifetime: the px is freed when the client side is released; callbacks
 * that may end the response (and so run release synchronously) are
 * bracketed by depth, and the outermost frame frees.
 */
#include "gw_int.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>
#include <llhttp.h>

#include "replicator.h"
#include "tls.h"

#define PX_SLICE         (64u << 10)
#define PX_HIGH          (1u << 20)
#define PX_MAX_TRIES     3
#define PX_MAX_HEADERS   (32u << 10) /* response header bytes accepted from a peer */
#define PX_HEAD_S        10          /* the peer must start answering within this */
#define PX_CHECK_S       1           /* ... checked this often meanwhile (keep_waiting) */
#define PX_IO_S          60          /* then move bytes at least this often */
#define PX_POOL_PER_PEER 8           /* idle keep-alive connections per peer */
#define PX_IDLE_S        30          /* an idle connection is closed after this */

typedef struct px {
    gw_daemon *d;
    gw_req *r;
    gw_route_reason why;
    uint32_t token_site;
    gw_s3_err fallback;
    uint32_t site;
    char name[MRD_NAME_MAX];
    uint32_t tried[PX_MAX_TRIES];
    int n_tried;
    struct bufferevent *up;
    llhttp_t parser;
    llhttp_settings_t settings;
    int has_body, chunked_body; /* the request's; chunked: re-chunked to the peer */
    int body_touched;           /* a body byte went upstream: no retry */
    int client_paused;
    int up_paused; /* reading from the peer stopped for the client */
    int head_out;  /* the response head went to the client */
    int done;      /* llhttp saw the whole response */
    int req_sent;  /* the whole request (head and body) was handed upstream */
    int reused;    /* x->up came from the idle pool */
    int fresh;     /* this site again on a new connection: a reused one died */
    int timed_out; /* the last attempt failed by waiting, not by a closed socket */
    int got_bytes; /* the peer sent something on x->up */
    int released, depth;
    /* the upload gate for a request body, then the download gate for a
     * response body (gw_gate.c): a forwarded stream holds buffers too */
    gw_gate_node gate;
    gw_gate_kind gate_kind;
    mrd_buf hdrs; /* response headers: name\0value\0 ... */
    mrd_buf name_acc, val_acc;
    uint64_t started_ns;
    uint64_t attempt_ns;  /* when the current peer was asked */
    int tls;              /* x->up is TLS to the peer's s3_tls */
    uint8_t pin[32];      /* ... whose certificate must match this pin */
    const char *pin_what; /* "s3_tls_pin", "tls_pin", or NULL: CA and site name */
} px;

static void px_try(px *x);

/* The peer's S3 TLS certificate must be the site's (tls_identify). */
static int
px_tls_check(void *ud, const tls_peer_cert *pc, char *why, size_t whysz)
{
    px *x = ud;

    return tls_identify(x->pin_what ? x->pin : NULL, x->pin_what ? x->pin_what : "tls_pin", x->name,
                        pc, why, whysz);
}

/* ---- idle keep-alive connections ---------------------------------------- */

typedef struct px_idle {
    struct bufferevent *bev;
    uint32_t site;
} px_idle;

/* Per loop thread: each S3 loop keeps its own pool (its connections live
 * on its event_base), so no lock is needed. */
static __thread px_idle idle_pool[MRD_MAX_PEERS * PX_POOL_PER_PEER];
static __thread int n_idle;

static void
idle_drop(struct bufferevent *bev)
{
    for (int i = 0; i < n_idle; i++) {
        if (idle_pool[i].bev == bev) {
            idle_pool[i] = idle_pool[--n_idle];
            break;
        }
    }
    bufferevent_free(bev);
}

/* Anything from an idle connection (data, close, error, idle timeout)
 * ends it: a peer does not speak unasked. */
static void
idle_read_cb(struct bufferevent *bev, void *ud)
{
    (void)ud;
    idle_drop(bev);
}

static void
idle_event_cb(struct bufferevent *bev, short what, void *ud)
{
    (void)what;
    (void)ud;
    idle_drop(bev);
}

static void
idle_put(uint32_t site, struct bufferevent *bev)
{
    struct timeval idle = {PX_IDLE_S, 0};
    int per_site = 0;

    for (int i = 0; i < n_idle; i++)
        per_site += idle_pool[i].site == site;
    if (per_site >= PX_POOL_PER_PEER || n_idle >= (int)(sizeof(idle_pool) / sizeof(idle_pool[0]))) {
        bufferevent_free(bev);
        return;
    }
    bufferevent_setcb(bev, idle_read_cb, NULL, idle_event_cb, NULL);
    bufferevent_set_timeouts(bev, &idle, NULL);
    bufferevent_enable(bev, EV_READ);
    idle_pool[n_idle].bev = bev;
    idle_pool[n_idle].site = site;
    n_idle++;
}

static struct bufferevent *
idle_take(uint32_t site)
{
    for (int i = n_idle - 1; i >= 0; i--) {
        if (idle_pool[i].site == site) {
            struct bufferevent *bev = idle_pool[i].bev;
            idle_pool[i] = idle_pool[--n_idle];
            return bev;
        }
    }
    return NULL;
}

void
gw__proxy_close_idle(void)
{
    while (n_idle > 0)
        bufferevent_free(idle_pool[--n_idle].bev);
}

/* ---- lifetime ------------------------------------------------------------ */

static void
up_close(px *x)
{
    if (x->up) {
        bufferevent_free(x->up);
        x->up = NULL;
    }
}

static void
px_free(px *x)
{
    up_close(x);
    gw__gate_leave(x->gate_kind, &x->gate, x->d);
    mrd_buf_free(&x->hdrs);
    mrd_buf_free(&x->name_acc);
    mrd_buf_free(&x->val_acc);
    GW_ADD(x->d->route.proxies_open, -1);
    free(x);
}

/* Ends a callback frame; frees x if the client side was released in it. */
static int
px_leave(px *x)
{
    if (--x->depth == 0 && x->released) {
        px_free(x);
        return 1;
    }
    return 0;
}

static void
px_release(gw_req *r, void *ctx, int aborted)
{
    px *x = ctx;

    (void)r;
    x->released = 1;
    if (aborted)
        MRD_DEBUG("route.proxy_aborted", "peer=%s path=%s", x->name, gw_req_path(r));
    up_close(x);
    if (x->depth == 0)
        px_free(x);
}

/* The peer failed. Before the head went out (and with the body untouched)
 * the next peer is tried, else the client gets the fallback or a cut. */
static void
px_fail(px *x, const char *why)
{
    MRD_WARN("route.proxy_failed", "peer=%s path=%s head_sent=%d reason=\"%s\"", x->name,
             gw_req_path(x->r), x->head_out, why);
    up_close(x);
    if (x->head_out) {
        gw_resp_abort(x->r);
        return;
    }
    if (x->reused && !x->got_bytes && !x->body_touched && !x->fresh && !x->timed_out) {
        x->fresh = 1; /* the peer closed an idle connection: not its failure */
        x->n_tried--;
        px_try(x);
        return;
    }
    if (!x->body_touched && x->n_tried < PX_MAX_TRIES &&
        gw__route_pick(x->d, x->why, x->token_site, x->tried, x->n_tried, &x->site) >= 0) {
        GW_ADD(x->d->route.proxy_retries, 1);
        x->fresh = 0;
        px_try(x);
        return;
    }
    GW_ADD(x->d->route.proxy_errors, 1);
    gw_s3_error(x->r, x->fallback, gw_req_path(x->r),
                x->fallback == GW_S3E_SERVICE_UNAVAILABLE ? "no peer site could serve the request"
                                                          : NULL);
}

/* ---- response from the peer (llhttp) ------------------------------------- */

static px *
px_of(llhttp_t *p)
{
    return p->data;
}

/* Header name or value bytes, within PX_MAX_HEADERS in all. */
static int
accumulate(px *x, mrd_buf *b, const char *at, size_t len)
{
    if (x->hdrs.len + x->name_acc.len + x->val_acc.len + len > PX_MAX_HEADERS)
        return HPE_USER;
    return mrd_buf_append(b, at, len) == 0 ? 0 : HPE_USER;
}

static int
on_hfield(llhttp_t *p, const char *at, size_t len)
{
    return accumulate(px_of(p), &px_of(p)->name_acc, at, len);
}

static int
on_hvalue(llhttp_t *p, const char *at, size_t len)
{
    return accumulate(px_of(p), &px_of(p)->val_acc, at, len);
}

static int
on_hvalue_done(llhttp_t *p)
{
    px *x = px_of(p);
    int rc =
        mrd_buf_append(&x->hdrs, x->name_acc.data ? x->name_acc.data : "", x->name_acc.len) == 0 &&
                mrd_buf_append(&x->hdrs, "", 1) == 0 &&
                mrd_buf_append(&x->hdrs, x->val_acc.data ? x->val_acc.data : "", x->val_acc.len) ==
                    0 &&
                mrd_buf_append(&x->hdrs, "", 1) == 0
            ? 0
            : HPE_USER;

    mrd_buf_reset(&x->name_acc);
    mrd_buf_reset(&x->val_acc);
    return rc;
}

/* Hop-by-hop and framing headers the HTTP layer writes itself. */
static int
skip_resp_header(const char *n)
{
    static const char *const skip[] = {
        "connection", "keep-alive", "transfer-encoding", "content-length",
        "date",       "server",     "proxy-connection",  "te",
        "trailer",    "upgrade",    GW_HDR_SERVED_BY,    NULL};

    for (const char *const *s = skip; *s; s++)
        if (strcasecmp(n, *s) == 0)
            return 1;
    return 0;
}

static int
on_resp_headers(llhttp_t *p)
{
    px *x = px_of(p);
    int head = strcmp(gw_req_method(x->r), "HEAD") == 0;
    int64_t len = -1;
    const char *c = x->hdrs.data;
    const char *end = c ? c + x->hdrs.len : NULL;

    if (p->status_code < 200)
        return HPE_USER; /* no Expect was sent: a 1xx is a broken peer */
    if (p->flags & F_CONTENT_LENGTH)
        len = (int64_t)p->content_length;
    for (; c && c < end; c += strlen(c) + 1) {
        const char *v = c + strlen(c) + 1;
        if (!skip_resp_header(c))
            gw_resp_header(x->r, c, v);
        c = v;
    }
    gw_resp_header(x->r, GW_HDR_SERVED_BY, x->name);
    if (gw_resp_start(x->r, p->status_code, (p->flags & F_CHUNKED) ? -1 : len) != 0)
        return HPE_USER;
    x->head_out = 1;
    MRD_DEBUG("route.proxied", "peer=%s reason=%d status=%d path=%s", x->name, (int)x->why,
              p->status_code, gw_req_path(x->r));
    if (head)
        return 1; /* a HEAD answer has no body */
    /* a large response body waits at the download gate after its head, as
     * one served here does; up_process reads nothing more until admitted */
    if (!x->has_body) {
        x->gate_kind = GW_GATE_DOWNLOAD;
        if (!gw__gate_enter(GW_GATE_DOWNLOAD, &x->gate, x->d, (p->flags & F_CHUNKED) ? -1 : len))
            return HPE_PAUSED;
    }
    return 0;
}

static int
on_resp_body(llhttp_t *p, const char *at, size_t len)
{
    px *x = px_of(p);

    return gw_resp_write(x->r, at, len) == 0 ? 0 : HPE_USER;
}

static int
on_resp_done(llhttp_t *p)
{
    px *x = px_of(p);

    x->done = 1;
    return HPE_PAUSED;
}

/* Feeds the peer's bytes to the parser while the client keeps up. */
static void
up_process(px *x)
{
    struct evbuffer *in;
    size_t n;

    x->depth++;
    while (x->up && !x->released && !x->done && (in = bufferevent_get_input(x->up)) &&
           (n = evbuffer_get_length(in)) > 0) {
        const char *data;
        llhttp_errno_t e;
        size_t used;

        if (x->gate.waiting) { /* px_admit goes on */
            bufferevent_disable(x->up, EV_READ);
            break;
        }
        if (x->head_out && gw_resp_buffered(x->r) >= PX_HIGH) {
            x->up_paused = 1;
            bufferevent_disable(x->up, EV_READ);
            break;
        }
        if (n > PX_SLICE)
            n = PX_SLICE;
        data = (const char *)evbuffer_pullup(in, (ssize_t)n);
        e = llhttp_execute(&x->parser, data, n);
        used = n;
        if (e == HPE_PAUSED) {
            used = (size_t)(llhttp_get_error_pos(&x->parser) - data);
            llhttp_resume(&x->parser);
        } else if (e != HPE_OK) {
            px_fail(x, llhttp_get_error_reason(&x->parser) ? llhttp_get_error_reason(&x->parser)
                                                           : "malformed answer");
            break;
        }
        evbuffer_drain(in, used);
    }
    if (x->done && !x->released) {
        if (x->up && x->req_sent && llhttp_should_keep_alive(&x->parser) &&
            evbuffer_get_length(bufferevent_get_input(x->up)) == 0 &&
            evbuffer_get_length(bufferevent_get_output(x->up)) == 0) {
            idle_put(x->site, x->up);
            x->up = NULL;
        }
        up_close(x);
        gw_resp_end(x->r); /* runs px_release */
    }
    px_leave(x);
}

static void
up_read_cb(struct bufferevent *bev, void *ud)
{
    px *x = ud;

    (void)bev;
    x->got_bytes = 1;
    if (x->head_out) {
        struct timeval io = {PX_IO_S, 0};
        bufferevent_set_timeouts(x->up, &io, &io);
    }
    up_process(x);
}

static void
up_write_cb(struct bufferevent *bev, void *ud)
{
    px *x = ud;

    (void)bev;
    if (x->client_paused && !x->released) {
        x->client_paused = 0;
        gw_req_resume(x->r);
    }
}

/* A bodiless request has waited PX_CHECK_S more for its answer: 1 to go on
 * waiting. A read gives up on a peer whose heartbeats fail too (no longer
 * healthy) when another peer qualifies, so a stopped peer costs about one
 * heartbeat interval, not PX_HEAD_S; anything waits at most PX_HEAD_S. */
static int
keep_waiting(px *x)
{
    uint64_t waited_ms = (mrd_clock_mono_ns() - x->attempt_ns) / 1000000;
    const char *m = gw_req_method(x->r);
    const repl_peer_info *p;
    const gw_view *v;
    uint32_t other;
    int healthy;

    if (waited_ms >= PX_HEAD_S * 1000u)
        return 0;
    if (strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0)
        return 1; /* not idempotent everywhere: wait for this peer */
    v = gw__view_lock(x->d);
    p = v->repl ? gw__view_peer(v, x->site) : NULL;
    healthy = p ? p->state == REPL_PEER_HEALTHY : -1;
    gw__view_unlock(x->d);
    if (healthy < 0)
        return 0;
    if (healthy)
        return 1;
    return gw__route_pick(x->d, x->why, x->token_site, x->tried, x->n_tried, &other) < 0;
}

static void
up_event_cb(struct bufferevent *bev, short what, void *ud)
{
    px *x = ud;

    (void)bev;
    if (what & BEV_EVENT_CONNECTED)
        return;
    x->depth++;
    if ((what & BEV_EVENT_ERROR) && (what & BEV_EVENT_WRITING) && !x->done && !x->tls) {
        /* The peer answered early (an error before the whole body) and
         * closed: its answer may still sit in our socket. Read it first. */
        evutil_socket_t fd = bufferevent_getfd(x->up);
        while (fd >= 0 && evbuffer_read(bufferevent_get_input(x->up), fd, PX_SLICE) > 0)
            ;
        x->got_bytes |= evbuffer_get_length(bufferevent_get_input(x->up)) > 0;
        up_process(x);
    }
    if (x->released || x->done || !x->up) {
        /* answered (or failed over) above */
    } else if ((what & BEV_EVENT_EOF) && x->head_out && !x->done) {
        /* a body delimited by the close: the parser decides if it was whole */
        up_process(x);
        if (!x->released && !x->done && llhttp_finish(&x->parser) == HPE_OK && !x->released) {
            up_close(x);
            gw_resp_end(x->r);
        } else if (!x->released && !x->done) {
            px_fail(x, "connection closed mid-answer");
        }
    } else if ((what & BEV_EVENT_TIMEOUT) && !x->head_out && !x->has_body && keep_waiting(x)) {
        bufferevent_enable(x->up, EV_READ | EV_WRITE); /* a timeout disabled them */
    } else if (!x->released && !x->done) {
        char why[240] = "";

        x->timed_out = (what & BEV_EVENT_TIMEOUT) != 0;
        if (x->tls && (what & BEV_EVENT_ERROR)) {
            char tw[200];

            tls_bev_error(x->up, tw, sizeof(tw));
            if (tw[0])
                snprintf(why, sizeof(why), "TLS: %s", tw);
        }
        px_fail(x, why[0] ? why
                   : (what & BEV_EVENT_TIMEOUT)
                       ? "no answer in time, or the peer stopped answering "
                         "heartbeats"
                   : (what & BEV_EVENT_EOF) ? "connection closed before the answer"
                                            : evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    }
    px_leave(x);
}

/* ---- request to the peer ------------------------------------------------- */

/* Request headers that are hop-by-hop, framing, or replaced by ours. */
static int
skip_req_header(const char *n)
{
    static const char *const skip[] = {"connection",
                                       "keep-alive",
                                       "proxy-connection",
                                       "te",
                                       "trailer",
                                       "transfer-encoding",
                                       "upgrade",
                                       "expect",
                                       "content-length",
                                       "x-meridian-site-id",
                                       "x-meridian-time",
                                       "x-meridian-auth",
                                       GW_HDR_BUCKET,
                                       GW_HDR_ANON,
                                       NULL};

    for (const char *const *s = skip; *s; s++)
        if (strcasecmp(n, *s) == 0)
            return 1;
    return 0;
}

static int
write_head(px *x, const mrd_peer_conf *pc)
{
    gw_req *r = x->r;
    int anon = gw__s3_anonymous(r);
    char signed_hash[160];
    repl_proxy_sig sig;
    gw_s3_addr a;
    char host[300];
    mrd_buf h = {0};
    int rc;

    const gw_view *view = gw__view_lock(x->d);

    rc = view->repl
             ? repl_proxy_sign(view->repl, gw_req_method(r), gw_req_target(r),
                               gw__proxy_payload_hash(r, anon, signed_hash, sizeof(signed_hash)),
                               &sig)
             : MRD_ESHUTDOWN;
    gw__view_unlock(x->d);
    if (rc != 0)
        return rc;
    /* Host and Authorization go as the client sent them: the peer checks
     * the client's SigV4 too when it needs its signing key (aws-chunked). */
    mrd_buf_appendf(&h, "%s %s HTTP/1.1\r\n", gw_req_method(r), gw_req_target(r));
    if (!gw_req_header(r, "host")) {
        mrd_addr_format(&pc->s3, host, sizeof(host));
        mrd_buf_appendf(&h, "Host: %s\r\n", host);
    }
    for (int i = 0; i < gw_req_header_count(r); i++) {
        const char *n, *v;
        gw_req_header_at(r, i, &n, &v);
        if (!skip_req_header(n))
            mrd_buf_appendf(&h, "%s: %s\r\n", n, v);
    }
    /* A virtual-host request names its bucket for the peer, whatever
     * domains the peer serves (gw_addr.c). */
    if (gw_s3_addr_parse(x->d->conf, gw_req_header(r, "host"), gw_req_path(r), NULL, &a) == 0 &&
        a.vhost)
        mrd_buf_appendf(&h, GW_HDR_BUCKET ": %s\r\n", a.bucket);
    /* An anonymous request stays anonymous at the peer, which checks its
     * bucket's ACL (gw_s3_acl.c). */
    if (anon)
        mrd_buf_appendf(&h, GW_HDR_ANON ": 1\r\n");
    if (x->chunked_body)
        mrd_buf_appendf(&h, "Transfer-Encoding: chunked\r\n");
    else if (gw_req_content_length(r) >= 0) /* 0 too: an empty PUT needs it */
        mrd_buf_appendf(&h, "Content-Length: %lld\r\n", (long long)gw_req_content_length(r));
    mrd_buf_appendf(&h,
                    "x-meridian-site-id: %s\r\nx-meridian-time: %s\r\nx-meridian-auth: %s\r\n\r\n",
                    sig.site, sig.time, sig.auth);
    rc = h.data ? bufferevent_write(x->up, h.data, h.len) : -1;
    mrd_buf_free(&h);
    return rc == 0 ? 0 : -ENOMEM;
}

/* Connects to x->site and sends the request head; a failure goes through
 * px_fail (next peer or the fallback). */
static void
px_try(px *x)
{
    const mrd_peer_conf *pc = NULL;
    const mrd_addr *to;
    mrd_peer_conf pcopy;
    const gw_view *v;
    /* A peer must start answering a bodiless request within PX_HEAD_S (a
     * stopped peer is then replaced); an upload must keep moving. */
    struct timeval head = {PX_CHECK_S, 0}, slow = {PX_IO_S * 5, 0}, io = {PX_IO_S, 0};
    struct sockaddr_storage ss;
    int sslen = sizeof(ss);
    char port[8];
    struct evutil_addrinfo hints, *res = NULL;

    v = gw__view_lock(x->d); /* the topology may change meanwhile: a copy */
    if ((pc = gw__view_conf(v, x->site)) != NULL) {
        pcopy = *pc;
        pc = &pcopy;
    }
    gw__view_unlock(x->d);
    x->tried[x->n_tried++] = x->site;
    x->attempt_ns = mrd_clock_mono_ns();
    x->timed_out = 0;
    snprintf(x->name, sizeof(x->name), "%s", pc ? pc->name : "?");
    llhttp_init(&x->parser, HTTP_RESPONSE, &x->settings);
    x->parser.data = x;
    mrd_buf_reset(&x->hdrs);
    mrd_buf_reset(&x->name_acc);
    mrd_buf_reset(&x->val_acc);
    if (!pc || !pc->has_s3) {
        px_fail(x, "no s3 address configured for the peer");
        return;
    }
    /* over TLS when the peer's S3 TLS listener is configured: never plain */
    x->tls = pc->has_s3_tls;
    x->pin_what = pc->has_s3_tls_pin ? "s3_tls_pin" : pc->has_tls_pin ? "tls_pin" : NULL;
    memcpy(x->pin, pc->has_s3_tls_pin ? pc->s3_tls_pin : pc->tls_pin, sizeof(x->pin));
    to = x->tls ? &pc->s3_tls : &pc->s3;
    if (x->tls && !x->d->proxy_tls) {
        px_fail(x, "s3_tls needs this site's [replication] tls_cert");
        return;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = EVUTIL_AI_NUMERICHOST; /* names: resolved by the caller's config */
    snprintf(port, sizeof(port), "%u", to->port);
    if (evutil_getaddrinfo(to->host, port, &hints, &res) != 0 || !res) {
        px_fail(x, "s3 address is not numeric");
        return;
    }
    memcpy(&ss, res->ai_addr, res->ai_addrlen);
    sslen = (int)res->ai_addrlen;
    evutil_freeaddrinfo(res);
    /* a fresh connection after a reused one failed silently */
    x->up = x->fresh ? NULL : idle_take(x->site);
    x->reused = x->up != NULL;
    GW_ADD(x->d->route.proxy_reused, (uint64_t)x->reused);
    x->got_bytes = 0;
    if (!x->up) {
        x->up = x->tls ? tls_bev_new(x->d->proxy_tls, gw__base(x->d), -1, 0, px_tls_check, x)
                       : bufferevent_socket_new(gw__base(x->d), -1, BEV_OPT_CLOSE_ON_FREE);
        if (!x->up) {
            px_fail(x, "out of memory");
            return;
        }
    }
    bufferevent_setcb(x->up, up_read_cb, up_write_cb, up_event_cb, x);
    bufferevent_setwatermark(x->up, EV_READ, 0, PX_SLICE * 4);
    bufferevent_setwatermark(x->up, EV_WRITE, PX_HIGH / 4, 0);
    bufferevent_set_timeouts(x->up, x->has_body ? &slow : &head, x->has_body ? &io : &head);
    if (write_head(x, pc) != 0 ||
        (!x->reused && bufferevent_socket_connect(x->up, (struct sockaddr *)&ss, sslen) != 0)) {
        px_fail(x, "cannot connect");
        return;
    }
    if (!x->has_body)
        x->req_sent = 1;
    if (!x->reused) {
        int one = 1;
        evutil_socket_t fd = bufferevent_getfd(x->up);
        if (fd >= 0)
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    bufferevent_enable(x->up, EV_READ | EV_WRITE);
    if (x->client_paused) {
        x->client_paused = 0;
        gw_req_resume(x->r);
    }
}

/* ---- request body from the client ---------------------------------------- */

static int
px_body(gw_req *r, const char *data, size_t len, void *ctx)
{
    px *x = ctx;
    char hdr[24];

    if (!x->up)
        return 0; /* failed over to an answer already; the layer closes */
    x->body_touched = 1;
    if (x->chunked_body) {
        int n = snprintf(hdr, sizeof(hdr), "%zx\r\n", len);
        bufferevent_write(x->up, hdr, (size_t)n);
    }
    bufferevent_write(x->up, data, len);
    if (x->chunked_body)
        bufferevent_write(x->up, "\r\n", 2);
    if (evbuffer_get_length(bufferevent_get_output(x->up)) >= PX_HIGH) {
        x->client_paused = 1;
        gw_req_pause(r);
    }
    return 0;
}

static void
px_end(gw_req *r, void *ctx)
{
    px *x = ctx;

    (void)r;
    if (x->up && x->chunked_body)
        bufferevent_write(x->up, "0\r\n\r\n", 5);
    if (x->up)
        x->req_sent = 1;
}

static void
px_writable(gw_req *r, void *ctx)
{
    px *x = ctx;

    (void)r;
    if (x->up_paused && x->up) {
        x->up_paused = 0;
        bufferevent_enable(x->up, EV_READ);
        up_process(x);
    }
}

/* The gate let x in: an upload connects to its peer, a download reads the
 * peer's body. */
static void
px_admit(gw_gate_node *n)
{
    px *x = (px *)((char *)n - offsetof(px, gate));

    x->depth++;
    if (x->gate_kind == GW_GATE_UPLOAD) {
        px_try(x);
    } else if (x->up) {
        bufferevent_enable(x->up, EV_READ);
        up_process(x);
    }
    px_leave(x);
}

static const gw_req_ops px_ops = {
    .body = px_body, .end = px_end, .writable = px_writable, .release = px_release};
static const gw_req_ops px_ops_nobody = {
    .end = px_end, .writable = px_writable, .release = px_release};

int
gw__proxy_start(gw_daemon *d, gw_req *r, gw_route_reason why, uint32_t site_id, uint32_t token_site,
                gw_s3_err fallback)
{
    px *x;
    const gw_view *v = gw__view_lock(d);
    int running = v->repl != NULL;

    gw__view_unlock(d);
    if (!running)
        return MRD_ESHUTDOWN;
    x = calloc(1, sizeof(*x));
    if (!x)
        return -ENOMEM;
    x->d = d;
    x->r = r;
    x->why = why;
    x->token_site = token_site;
    x->fallback = fallback;
    x->site = site_id;
    x->started_ns = mrd_clock_mono_ns();
    x->has_body = gw_req_has_body(r);
    x->chunked_body = gw_req_is_chunked(r);
    llhttp_settings_init(&x->settings);
    x->settings.on_header_field = on_hfield;
    x->settings.on_header_value = on_hvalue;
    x->settings.on_header_value_complete = on_hvalue_done;
    x->settings.on_headers_complete = on_resp_headers;
    x->settings.on_body = on_resp_body;
    x->settings.on_message_complete = on_resp_done;
    GW_ADD(d->route.proxies_open, 1);
    GW_ADD(d->route.proxied[why], 1);
    /* The body waits until the connection is made (px_try resumes it). */
    gw_req_attach(r, x->has_body ? &px_ops : &px_ops_nobody, x);
    if (x->has_body) {
        x->client_paused = 1;
        gw_req_pause(r);
    }
    x->depth++;
    x->gate.admit = px_admit;
    x->gate_kind = GW_GATE_UPLOAD;
    if (!x->has_body || gw__gate_enter(GW_GATE_UPLOAD, &x->gate, d, gw_req_content_length(r)))
        px_try(x);
    px_leave(x);
    return 0;
}
