/*
 * gw_http.c - the streaming HTTP/1.1 server on libevent bufferevents.
 *
 * Why not evhttp: it reads the whole request body into memory before the
 * handler runs (a 300 MiB PUT held 306 MiB). S3 bodies are gigabytes, so this
 * layer parses with llhttp and hands the body to the handler in chunks.
 *
 * A connection is a small state machine:
 *
 *   HEAD ---headers complete---> BODY ---message complete---> WAIT
 *     ^   (route() runs here)        (ops->body per chunk)      | (ops->end ran;
 *     |                                                         |  handler answers)
 *     +------------------- gw_resp_end, keep-alive -------------+
 *
 * Any state can go to CLOSING (error, early answer, Connection: close), which
 * flushes the output and frees the connection.
 *
 * Input flow and backpressure. Bytes sit in the bufferevent's input buffer,
 * whose read high water mark (256 KiB) stops libevent from reading the
 * socket when the parser is not draining it, so TCP pushes back on the
 * client. The parser is fed slices of at most SLICE bytes from that buffer.
 * llhttp cannot pause inside on_body, so when the handler calls gw_req_pause
 * the rest of the current slice is parked in `held` (at most SLICE bytes) and
 * delivered on resume; no body callback runs while paused. A complete
 * message pauses llhttp (HPE_PAUSED from on_message_complete), so a pipelined
 * request is not parsed until the previous response has ended; responses
 * therefore go out in request order.
 *
 * Output flow. Responses are appended to the bufferevent's output buffer.
 * A handler producing a large body writes while gw_resp_buffered() is below
 * write_low_water and otherwise waits for ops->writable, which the write
 * callback fires when the buffer drains below that mark - the same
 * WOULDBLOCK discipline as nghttp2's libevent example.
 *
 * Errors. Malformed input gets 400, an oversized request target 414, too many
 * or too large headers 431, a slow head 408; each is answered with
 * "Connection: close" and the connection is closed once flushed. The body is
 * plain text unless the server has an error formatter
 * (gw_http_server_set_error_fn: the S3 port answers S3 XML errors with a
 * request id). Other connections are never affected. A request whose connection dies gets
 * release(aborted = 1) so its handler can drop partial work.
 *
 * TLS. A listener may carry a tls_ctx (gw_http_server_listen_tls): its
 * connections are libevent OpenSSL bufferevents, and everything above sees
 * the same plaintext input and output buffers, watermarks and callbacks, so
 * streaming and backpressure are unchanged (the read high water mark bounds
 * decrypted input; output drains as SSL_write takes it). A connection whose
 * handshake fails (a plain-HTTP request on the TLS port, a client that
 * refuses our certificate, a scanner) is logged with OpenSSL's reason
 * (http.tls.fail) and counted, and closed; nothing else is affected. Plain
 * HTTP (OpenSSL's "http request") first gets a plain-text 400 saying the
 * port speaks HTTPS, written straight to the socket, as nginx does.
 *
 * Lingering close. When this side closes a connection after an answer (an
 * early error, "Connection: close"), the client may still be sending a
 * request body. Closing a socket with unread input makes the kernel send a
 * reset, and a reset can destroy the answer before the client has read it:
 * the client then sees "connection reset" instead of our 403 or 400. So,
 * like nginx's lingering_close, such a connection is half-closed
 * (shutdown(SHUT_WR), after the answer has been flushed to the kernel) and
 * its input is read and dropped until the client closes, or it has been
 * quiet for LINGER_IDLE_S, or LINGER_TOTAL_S or LINGER_MAX_BYTES are
 * reached. At most LINGER_MAX connections linger at once; beyond that, or
 * when the client has already closed or failed, the socket closes at once.
 *
 * Expect: 100-continue. "100 Continue" goes out when the handler is ready
 * for the body: right after the route attached a body handler, or, if the
 * handler paused at once (a PUT checks its bucket first), when it resumes.
 * A final answer that comes first replaces it: the client then never sends
 * the body, and the connection closes after that answer (some clients would
 * otherwise misread the next response on it).
 *
 * Threads. A server belongs to one event loop; meridiand runs one S3
 * server per S3 loop thread, all listening on the same address with
 * SO_REUSEPORT (gw_http_server_set_reuseport). The only things other
 * threads read are the counters and the connection count (atomics), so
 * the main loop can report and drain them; request ids are made unique
 * across such servers by gw_http_server_set_req_ids.
 *
 * Re-entrancy. Handler callbacks may call back into this layer (answer inside
 * route, pause inside body ...). A connection is therefore never freed while
 * one of its callbacks is on the stack: `busy` counts the nesting and
 * conn_close only marks the connection; the outermost frame frees it.
 */
#include "gateway.h"
#include "gw_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <llhttp.h>

#include "tls.h"

#define SLICE (64 * 1024)
/* Bytes one writev may take from a connection's output buffer: a GET's
 * read chunk (1 MiB) plus its headers in one call. */
#define GW_MAX_SINGLE_WRITE (2 * 1024 * 1024)

#define LINGER_IDLE_S    2
#define LINGER_TOTAL_S   10
#define LINGER_MAX_BYTES (64ull * 1024 * 1024)
#define LINGER_MAX       256

typedef enum { ST_HEAD, ST_BODY, ST_WAIT, ST_CLOSING } conn_state;

typedef struct gw_conn gw_conn;

struct gw_req {
    gw_conn *conn;
    uint64_t id;
    char method[24];
    mrd_buf target; /* raw target, NUL-terminated */
    char *path;     /* malloc'd copy of target before '?' */
    const char *query;
    mrd_buf hbuf; /* name\0value\0 pairs */
    size_t hoff[2 * 128 + 2];
    int nhdr;
    int in_value; /* last header span was a value */
    int64_t content_length;
    int chunked;
    int keep_alive;
    int is_head;
    int expect_continue;
    uint64_t body_received;

    const gw_req_ops *ops;
    void *ctx;
    int paused;
    int body_done; /* on_message_complete seen */
    int end_called;
    int released;

    /* response */
    mrd_buf rhdr;
    int resp_started;
    int resp_ended;
    int resp_chunked;
    int64_t resp_remaining; /* for Content-Length responses */
};

struct gw_conn {
    gw_http_server *srv;
    gw_conn *prev, *next;
    struct bufferevent *bev;
    struct event *process_ev;
    llhttp_t parser;
    conn_state state;
    gw_req req;
    int have_req;    /* a request is in flight */
    int err_status;  /* status chosen by a limit check */
    int close_after; /* close once the response is flushed */
    int dead;        /* conn_close requested */
    int no_linger;   /* the client closed or failed: nothing to drain */
    int busy;        /* callback nesting depth */
    int tls;         /* accepted on a TLS listener */
    int tls_up;      /* ... and its handshake finished */
    uint64_t head_started_ns;
    struct evbuffer *held; /* body bytes parked while paused */
    char peer[64];
};

struct gw_http_server {
    struct event_base *base;
    gw_http_limits lim;
    gw_route_fn route;
    void *ud;
    struct gw_listener {
        gw_http_server *srv;
        struct evconnlistener *l;
        tls_ctx *tls; /* borrowed; NULL: plain HTTP */
    } listeners[8];
    int nlisteners;
    gw_conn *conns;
    int nconns;                /* also read by other threads: atomic */
    int *open_total;           /* what max_connections limits: &nconns or shared */
    struct gw_linger *lingers; /* half-closed sockets being drained */
    int nlingers;
    uint64_t next_req_id, req_id_step;
    int reuseport; /* gw_http_server_set_reuseport */
    gw_http_stats stats;
    llhttp_settings_t settings;
    gw_http_error_fn error_fn; /* formats this layer's own errors, or NULL */
};

/* A closed connection whose input is still being drained (lingering close). */
typedef struct gw_linger {
    gw_http_server *srv;
    struct gw_linger *prev, *next;
    struct event *ev;
    evutil_socket_t fd;
    uint64_t deadline_ns;
    uint64_t drained;
} gw_linger;

/* Counters are written by the server's loop and read by any thread
 * (/metrics runs on the main loop while S3 loops serve): relaxed atomics. */
#define STAT_ADD(srv, f, n) __atomic_fetch_add(&(srv)->stats.f, (uint64_t)(n), __ATOMIC_RELAXED)

static void conn_process(gw_conn *c);
static void conn_free(gw_conn *c);
static void conn_apply_timeouts(gw_conn *c);
static void conn_next_request(gw_conn *c);

/* ------------------------------------------------------------ utilities */

const char *
gw_http_status_text(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Payload Too Large";
    case 414:
        return "URI Too Long";
    case 416:
        return "Range Not Satisfiable";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    default:
        return "Unknown";
    }
}

static void
http_date(char *out, size_t outsz)
{
    static __thread time_t cached_t;
    static __thread char cached[40];
    time_t now = time(NULL);
    struct tm tm;

    if (now != cached_t) {
        gmtime_r(&now, &tm);
        strftime(cached, sizeof(cached), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        cached_t = now;
    }
    snprintf(out, outsz, "%s", cached);
}

static void
set_nodelay(evutil_socket_t fd)
{
    int one = 1;

    /* Without TCP_NODELAY small responses wait ~40 ms for delayed ACKs. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* ------------------------------------------------------------ request reset */

static void
req_clear(gw_req *r)
{
    mrd_buf_free(&r->target);
    mrd_buf_free(&r->hbuf);
    mrd_buf_free(&r->rhdr);
    free(r->path);
    memset(r, 0, sizeof(*r));
}

/* Runs the release callback once; the handler's ctx is gone afterwards. */
static void
req_release(gw_conn *c, int aborted)
{
    gw_req *r = &c->req;

    if (!c->have_req || r->released)
        return;
    r->released = 1;
    if (aborted)
        STAT_ADD(c->srv, aborted, 1);
    if (r->ops && r->ops->release) {
        c->busy++;
        r->ops->release(r, r->ctx, aborted);
        c->busy--;
    }
    r->ops = NULL;
    r->ctx = NULL;
}

/* ------------------------------------------------------------ conn lifetime */

static void
conn_close(gw_conn *c)
{
    c->dead = 1;
    if (c->busy == 0)
        conn_free(c);
}

static void
linger_end(gw_linger *l)
{
    gw_http_server *s = l->srv;

    if (l->prev)
        l->prev->next = l->next;
    else
        s->lingers = l->next;
    if (l->next)
        l->next->prev = l->prev;
    s->nlingers--;
    event_free(l->ev);
    evutil_closesocket(l->fd);
    free(l);
}

static void
linger_cb(evutil_socket_t fd, short what, void *arg)
{
    gw_linger *l = arg;
    char sink[16384];
    ssize_t n = 0;

    if (what & EV_READ) {
        while (l->drained < LINGER_MAX_BYTES && (n = recv(fd, sink, sizeof(sink), 0)) > 0)
            l->drained += (uint64_t)n;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) &&
            l->drained < LINGER_MAX_BYTES && mrd_clock_mono_ns() < l->deadline_ns)
            return; /* drained for now; keep waiting for EOF */
    }
    linger_end(l); /* EOF, error, idle timeout, or a limit */
}

/* Takes over the socket of a connection this side is closing after an
 * answer, so that its unread input does not turn the close into a reset.
 * The socket lives on in a dup; the caller frees the bufferevent (a TLS one
 * sends its close_notify then) and half-closes the dup with
 * shutdown(SHUT_WR). Returns NULL when the socket should just close. */
static gw_linger *
linger_start(gw_http_server *s, evutil_socket_t fd)
{
    const struct timeval idle = {LINGER_IDLE_S, 0};
    gw_linger *l;
    int dfd;

    if (fd < 0 || s->nlingers >= LINGER_MAX || (dfd = dup(fd)) < 0)
        return NULL;
    if (!(l = calloc(1, sizeof(*l)))) {
        close(dfd);
        return NULL;
    }
    l->srv = s;
    l->fd = dfd;
    l->deadline_ns = mrd_clock_mono_ns() + (uint64_t)LINGER_TOTAL_S * 1000000000ull;
    if (evutil_make_socket_nonblocking(dfd) != 0 ||
        !(l->ev = event_new(s->base, dfd, EV_READ | EV_PERSIST, linger_cb, l)) ||
        event_add(l->ev, &idle) != 0) {
        if (l->ev)
            event_free(l->ev);
        close(dfd);
        free(l);
        return NULL;
    }
    l->next = s->lingers;
    if (s->lingers)
        s->lingers->prev = l;
    s->lingers = l;
    s->nlingers++;
    return l;
}

static void
conn_free(gw_conn *c)
{
    gw_http_server *s = c->srv;
    gw_linger *l = NULL;

    /* Closing after an answer with the output flushed: linger (see top). */
    if (c->close_after && !c->no_linger && c->bev &&
        evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        l = linger_start(s, bufferevent_getfd(c->bev));
    req_release(c, 1);
    req_clear(&c->req);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    __atomic_fetch_sub(&s->nconns, 1, __ATOMIC_RELAXED);
    if (s->open_total != &s->nconns)
        __atomic_fetch_sub(s->open_total, 1, __ATOMIC_RELAXED);
    STAT_ADD(s, conns_open, (uint64_t)-1);
    if (c->process_ev)
        event_free(c->process_ev);
    if (c->bev)
        bufferevent_free(c->bev);
    if (l && shutdown(l->fd, SHUT_WR) != 0)
        linger_end(l); /* already disconnected */
    if (c->held)
        evbuffer_free(c->held);
    free(c);
}

/* Close once everything queued has been written. */
static void
conn_close_after_flush(gw_conn *c)
{
    c->state = ST_CLOSING;
    c->close_after = 1;
    bufferevent_disable(c->bev, EV_READ);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        conn_close(c);
}

/* An error answer produced by this layer (not by a handler): plain text,
 * or what the server's error formatter makes of it. */
static void
conn_send_error(gw_conn *c, int status, const char *why)
{
    char date[40];
    struct evbuffer *out = bufferevent_get_output(c->bev);
    mrd_buf hdrs = {0}, body = {0}, msg = {0};
    const char *ctype = NULL;

    if (c->have_req && c->req.resp_started) {
        /* Mid-response: the only honest signal left is to cut the connection. */
        conn_close(c);
        return;
    }
    if (c->srv->error_fn)
        ctype =
            c->srv->error_fn(c->srv->ud, c->have_req ? c->req.id : 0, status, why, &hdrs, &body);
    if (!ctype) {
        mrd_buf_reset(&hdrs);
        mrd_buf_reset(&body);
        mrd_buf_appendf(&body, "%s\n", why);
        ctype = "text/plain";
    }
    req_release(c, 1);
    http_date(date, sizeof(date));
    mrd_buf_appendf(&msg,
                    "HTTP/1.1 %d %s\r\nDate: %s\r\nServer: Meridian/" MRD_VERSION
                    "\r\n%.*sContent-Type: %s\r\nContent-Length: %zu\r\nConnection: "
                    "close\r\n\r\n%.*s",
                    status, gw_http_status_text(status), date, (int)hdrs.len,
                    hdrs.data ? hdrs.data : "", ctype, body.len, (int)body.len,
                    body.data ? body.data : "");
    if (msg.data) {
        evbuffer_add(out, msg.data, msg.len);
        STAT_ADD(c->srv, bytes_out, msg.len);
    }
    mrd_buf_free(&hdrs);
    mrd_buf_free(&body);
    mrd_buf_free(&msg);
    if (c->have_req)
        c->req.resp_ended = 1;
    MRD_DEBUG("http.error", "peer=%s status=%d reason=\"%s\"", c->peer, status, why);
    conn_close_after_flush(c);
}

/* Sends "100 Continue" if the client waits for it and the handler is ready
 * for the body (attached a body callback, not paused, not answered). */
static void
maybe_continue(gw_req *r)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";

    if (!r->expect_continue || !r->ops || !r->ops->body || r->resp_started || r->paused)
        return;
    evbuffer_add(bufferevent_get_output(r->conn->bev), cont, sizeof(cont) - 1);
    STAT_ADD(r->conn->srv, bytes_out, sizeof(cont) - 1);
    r->expect_continue = 0;
}

/* ------------------------------------------------------------ llhttp glue */

static gw_conn *
conn_of(llhttp_t *p)
{
    return (gw_conn *)p->data;
}

static int
on_message_begin(llhttp_t *p)
{
    gw_conn *c = conn_of(p);
    gw_req *r = &c->req;

    req_clear(r);
    r->conn = c;
    r->id = c->srv->next_req_id;
    c->srv->next_req_id += c->srv->req_id_step;
    r->content_length = -1;
    c->have_req = 1;
    c->err_status = 0;
    c->state = ST_HEAD;
    c->head_started_ns = mrd_clock_mono_ns();
    conn_apply_timeouts(c);
    return 0;
}

static int
on_url(llhttp_t *p, const char *at, size_t len)
{
    gw_conn *c = conn_of(p);

    if (c->req.target.len + len > c->srv->lim.max_url_bytes) {
        c->err_status = 414;
        return HPE_USER;
    }
    return mrd_buf_append(&c->req.target, at, len) == 0 ? 0 : HPE_USER;
}

static int
on_method(llhttp_t *p, const char *at, size_t len)
{
    gw_req *r = &conn_of(p)->req;
    size_t have = strlen(r->method);

    if (have + len >= sizeof(r->method))
        return HPE_USER;
    memcpy(r->method + have, at, len);
    r->method[have + len] = '\0';
    return 0;
}

/* Header spans may arrive in pieces; a new name starts when a value was last. */
static int
header_span(gw_conn *c, const char *at, size_t len, int is_value)
{
    gw_req *r = &c->req;

    if (r->hbuf.len + len + 2 > c->srv->lim.max_header_bytes) {
        c->err_status = 431;
        return HPE_USER;
    }
    if (!is_value && (r->nhdr == 0 || r->in_value)) {
        if (r->nhdr >= c->srv->lim.max_headers) {
            c->err_status = 431;
            return HPE_USER;
        }
        if (r->nhdr > 0 && mrd_buf_append(&r->hbuf, "", 1) != 0) /* end previous value */
            return HPE_USER;
        r->hoff[2 * r->nhdr] = r->hbuf.len;
        r->nhdr++;
        r->in_value = 0;
    } else if (is_value && !r->in_value) {
        if (mrd_buf_append(&r->hbuf, "", 1) != 0) /* end the name */
            return HPE_USER;
        r->hoff[2 * r->nhdr - 1] = r->hbuf.len;
        r->in_value = 1;
    }
    if (len && mrd_buf_append(&r->hbuf, at, len) != 0)
        return HPE_USER;
    return 0;
}

static int
on_header_field(llhttp_t *p, const char *at, size_t len)
{
    return header_span(conn_of(p), at, len, 0);
}

static int
on_header_value(llhttp_t *p, const char *at, size_t len)
{
    return header_span(conn_of(p), at, len, 1);
}

/* A header with an empty value produces no value span. */
static int
on_header_value_complete(llhttp_t *p)
{
    gw_req *r = &conn_of(p)->req;

    if (!r->in_value)
        return header_span(conn_of(p), "", 0, 1);
    return 0;
}

static int
on_headers_complete(llhttp_t *p)
{
    gw_conn *c = conn_of(p);
    gw_req *r = &c->req;
    const char *q, *expect;

    if (r->nhdr > 0 && mrd_buf_append(&r->hbuf, "", 1) != 0)
        return HPE_USER;
    if (!r->target.data && mrd_buf_append(&r->target, "", 0) != 0)
        return HPE_USER;
    q = strchr(r->target.data, '?');
    r->path = strndup(r->target.data, q ? (size_t)(q - r->target.data) : r->target.len);
    if (!r->path)
        return HPE_USER;
    r->query = q ? q + 1 : "";
    r->chunked = (p->flags & F_CHUNKED) != 0;
    r->content_length = (p->flags & F_CONTENT_LENGTH) ? (int64_t)p->content_length : -1;
    r->keep_alive = llhttp_should_keep_alive(p);
    r->is_head = strcmp(r->method, "HEAD") == 0;
    expect = gw_req_header(r, "expect");
    r->expect_continue = expect && strcasecmp(expect, "100-continue") == 0;
    c->state = ST_BODY;
    STAT_ADD(c->srv, requests, 1);
    conn_apply_timeouts(c);

    c->busy++;
    c->srv->route(r, c->srv->ud);
    c->busy--;
    if (c->dead)
        return HPE_PAUSED;
    if (!r->resp_started && !r->ops) {
        MRD_ERROR("http.route",
                  "peer=%s method=%s path=%s msg=\"route neither answered nor "
                  "attached a handler\"",
                  c->peer, r->method, r->path);
        gw_resp_simple(r, 500, "text/plain", "internal error\n", 15);
    }
    if (r->resp_ended && gw_req_has_body(r)) {
        /* Answered before reading the body (an error): don't read it. */
        conn_close_after_flush(c);
        return HPE_PAUSED;
    }
    maybe_continue(r);
    return 0;
}

static int
on_body(llhttp_t *p, const char *at, size_t len)
{
    gw_conn *c = conn_of(p);
    gw_req *r = &c->req;
    int rc = 0;

    if (r->paused || evbuffer_get_length(c->held) > 0) {
        evbuffer_add(c->held, at, len);
        return 0;
    }
    r->body_received += len;
    if (r->ops && r->ops->body && !r->resp_ended) {
        c->busy++;
        rc = r->ops->body(r, at, len, r->ctx);
        c->busy--;
    }
    if (c->dead)
        return HPE_USER;
    if (rc < 0) {
        if (!r->resp_started)
            gw_resp_simple(r, 500, "text/plain", "body handler failed\n", 20);
        conn_close_after_flush(c);
        return HPE_USER;
    }
    if (r->resp_ended) {
        conn_close_after_flush(c);
        return HPE_USER;
    }
    return 0;
}

static int
on_message_complete(llhttp_t *p)
{
    gw_conn *c = conn_of(p);

    c->req.body_done = 1;
    if (c->state != ST_CLOSING)
        c->state = ST_WAIT;
    /* Stop here: the next pipelined request waits for this response. */
    return HPE_PAUSED;
}

/* ------------------------------------------------------------ processing */

/* Calls ops->end once the body is complete and nothing is held back. */
static void
maybe_end(gw_conn *c)
{
    gw_req *r = &c->req;

    if (!r->body_done || r->end_called || r->paused || evbuffer_get_length(c->held) > 0)
        return;
    r->end_called = 1;
    bufferevent_disable(c->bev, EV_READ); /* nothing to read until answered */
    if (r->ops && r->ops->end && !r->resp_ended) {
        c->busy++;
        r->ops->end(r, r->ctx);
        c->busy--;
    }
}

/* Delivers parked body bytes; stops if the handler pauses again. */
static void
drain_held(gw_conn *c)
{
    gw_req *r = &c->req;
    int rc;

    while (!r->paused && !c->dead && evbuffer_get_length(c->held) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(c->held, -1, NULL, &v, 1) < 1)
            break;
        r->body_received += v.iov_len;
        rc = 0;
        if (r->ops && r->ops->body && !r->resp_ended) {
            c->busy++;
            rc = r->ops->body(r, v.iov_base, v.iov_len, r->ctx);
            c->busy--;
        }
        evbuffer_drain(c->held, v.iov_len);
        if (rc < 0 || r->resp_ended) {
            if (!r->resp_started)
                gw_resp_simple(r, 500, "text/plain", "body handler failed\n", 20);
            conn_close_after_flush(c);
            return;
        }
    }
}

static int
parse_error_status(gw_conn *c, llhttp_errno_t err)
{
    if (c->err_status)
        return c->err_status;
    (void)err;
    return 400;
}

static void
conn_process(gw_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    gw_http_server *s = c->srv;

    c->busy++;
    for (;;) {
        struct evbuffer_iovec v;
        llhttp_errno_t err;
        size_t n, used;

        if (c->dead || c->state == ST_CLOSING)
            break;
        if (c->have_req && c->req.paused)
            break;
        if (c->state == ST_WAIT)
            break; /* waiting for the handler's answer */
        if (evbuffer_get_length(in) == 0)
            break;
        if (c->state == ST_HEAD && c->have_req &&
            mrd_clock_mono_ns() - c->head_started_ns >
                (uint64_t)s->lim.header_timeout_ms * 1000000u) {
            STAT_ADD(s, timeouts, 1);
            conn_send_error(c, 408, "request head took too long");
            break;
        }
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        n = v.iov_len > SLICE ? SLICE : v.iov_len;
        err = llhttp_execute(&c->parser, v.iov_base, n);
        if (err == HPE_OK) {
            used = n;
        } else if (err == HPE_PAUSED) {
            used = (size_t)(llhttp_get_error_pos(&c->parser) - (const char *)v.iov_base);
            llhttp_resume(&c->parser);
            /* After HPE_PAUSED from message_complete, llhttp is ready for the
             * next message; the state machine decides when to feed it. */
        } else {
            if (c->dead || c->state == ST_CLOSING)
                break;
            if (c->err_status == 431 || c->err_status == 414)
                STAT_ADD(s, too_large, 1);
            else
                STAT_ADD(s, bad_requests, 1);
            MRD_INFO("http.bad_request", "peer=%s error=%s reason=\"%s\"", c->peer,
                     llhttp_errno_name(err), llhttp_get_error_reason(&c->parser));
            evbuffer_drain(in, n);
            conn_send_error(c, parse_error_status(c, err),
                            c->err_status ? "request too large" : "malformed request");
            break;
        }
        evbuffer_drain(in, used);
        STAT_ADD(s, bytes_in, used);
        if (c->dead || c->state == ST_CLOSING)
            break;
        if (c->state == ST_WAIT) {
            maybe_end(c);
            /* Answered already (e.g. inside route): move on to the next request. */
            if (!c->dead && c->state == ST_WAIT && c->req.resp_ended)
                conn_next_request(c);
        }
    }
    c->busy--;
    if (c->dead && c->busy == 0)
        conn_free(c);
}

static void
process_cb(evutil_socket_t fd, short what, void *arg)
{
    gw_conn *c = arg;

    (void)fd;
    (void)what;
    if (c->have_req && !c->req.paused) {
        /* After a resume: parked bytes first, then end() if the message is
         * complete (it may have completed while the handler was paused). */
        c->busy++;
        drain_held(c);
        if (!c->dead && c->state == ST_WAIT)
            maybe_end(c);
        c->busy--;
        if (c->dead && c->busy == 0) {
            conn_free(c);
            return;
        }
    }
    conn_process(c);
}

static void
schedule_process(gw_conn *c)
{
    event_active(c->process_ev, EV_TIMEOUT, 0);
}

static void
conn_apply_timeouts(gw_conn *c)
{
    gw_http_limits *l = &c->srv->lim;
    struct timeval rt, wt = {l->write_timeout_ms / 1000, (l->write_timeout_ms % 1000) * 1000};
    int ms;

    if (c->state == ST_HEAD)
        ms = c->have_req ? l->header_timeout_ms : l->idle_timeout_ms;
    else
        ms = l->body_timeout_ms;
    rt.tv_sec = ms / 1000;
    rt.tv_usec = (ms % 1000) * 1000;
    bufferevent_set_timeouts(c->bev, &rt, &wt);
}

static void
read_cb(struct bufferevent *bev, void *arg)
{
    gw_conn *c = arg;

    (void)bev;
    conn_process(c);
}

static void
write_cb(struct bufferevent *bev, void *arg)
{
    gw_conn *c = arg;
    gw_req *r = &c->req;

    if (c->close_after) {
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
            conn_close(c);
        return;
    }
    if (c->have_req && r->resp_started && !r->resp_ended && r->ops && r->ops->writable) {
        c->busy++;
        r->ops->writable(r, r->ctx);
        c->busy--;
        if (c->dead && c->busy == 0)
            conn_free(c);
    }
}

/* A plain-HTTP request on a TLS port: tell the client in its own protocol.
 * The rest of its request is read and dropped first, so closing does not
 * reset the connection before the answer is read. Best effort. */
static void
answer_plain_http(gw_conn *c)
{
    static const char msg[] = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
                              "Content-Length: 45\r\nConnection: close\r\n\r\n"
                              "This port speaks HTTPS: use an https:// URL.\n";
    evutil_socket_t fd = bufferevent_getfd(c->bev);
    char sink[4096];
    ssize_t n;
    int i = 0;

    if (fd < 0)
        return;
    while (i++ < 16 && (n = recv(fd, sink, sizeof(sink), MSG_DONTWAIT)) > 0)
        ;
    n = send(fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)n;
    shutdown(fd, SHUT_WR);
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
    gw_conn *c = arg;

    (void)bev;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
        c->no_linger = 1; /* whatever closes now, the client is gone or stuck */
    if (what & BEV_EVENT_CONNECTED) {
        /* TLS handshake done (only TLS bufferevents report it here). */
        char d[96];

        c->tls_up = 1;
        STAT_ADD(c->srv, tls_handshakes, 1);
        tls_bev_describe(c->bev, d, sizeof(d));
        MRD_DEBUG("http.tls.up", "peer=%s tls=\"%s\"", c->peer, d);
        return;
    }
    if (c->tls && !c->tls_up) {
        /* The handshake failed: say why, once, and only about this one. */
        char why[200];

        tls_bev_error(c->bev, why, sizeof(why));
        if (!why[0])
            snprintf(why, sizeof(why), "%s",
                     (what & BEV_EVENT_EOF)       ? "connection closed during the handshake"
                     : (what & BEV_EVENT_TIMEOUT) ? "handshake timed out"
                                                  : "socket error during the handshake");
        STAT_ADD(c->srv, tls_failures, 1);
        MRD_INFO("http.tls.fail", "peer=%s reason=\"%s\"", c->peer, why);
        if (strcmp(why, "http request") == 0)
            answer_plain_http(c);
        conn_close(c);
        return;
    }
    if (what & BEV_EVENT_TIMEOUT) {
        STAT_ADD(c->srv, timeouts, 1);
        if (c->state == ST_HEAD && c->have_req && !c->close_after) {
            conn_send_error(c, 408, "request head took too long");
            return;
        }
        MRD_DEBUG("http.timeout", "peer=%s state=%d", c->peer, (int)c->state);
    } else if ((what & BEV_EVENT_EOF) && !c->have_req &&
               evbuffer_get_length(bufferevent_get_output(c->bev)) > 0) {
        /* Client half-closed after its last request: finish sending. */
        conn_close_after_flush(c);
        return;
    }
    conn_close(c);
}

/* ------------------------------------------------------------ accept */

/* Takes a slot of max_connections: the check and the count are one atomic
 * step, so loops accepting at once cannot go past the limit together.
 * limit 0: take it whatever the count (adopted connections). */
static int
conn_reserve(gw_http_server *s, int limit)
{
    if (__atomic_add_fetch(s->open_total, 1, __ATOMIC_RELAXED) > limit && limit > 0) {
        __atomic_sub_fetch(s->open_total, 1, __ATOMIC_RELAXED);
        return -1;
    }
    return 0;
}

static void
conn_unreserve(gw_http_server *s)
{
    __atomic_sub_fetch(s->open_total, 1, __ATOMIC_RELAXED);
}

static int
conn_new(gw_http_server *s, struct bufferevent *bev, const char *peer)
{
    gw_conn *c = calloc(1, sizeof(*c));

    if (!c)
        return -ENOMEM;
    c->srv = s;
    c->bev = bev;
    c->held = evbuffer_new();
    c->process_ev = event_new(s->base, -1, 0, process_cb, c);
    if (!c->held || !c->process_ev) {
        if (c->held)
            evbuffer_free(c->held);
        if (c->process_ev)
            event_free(c->process_ev);
        free(c);
        return -ENOMEM;
    }
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    llhttp_init(&c->parser, HTTP_REQUEST, &s->settings);
    c->parser.data = c;
    c->state = ST_HEAD;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    /* the caller reserved a slot in *open_total (conn_reserve); when that
     * is nconns itself, the slot is this count */
    if (s->open_total != &s->nconns)
        __atomic_fetch_add(&s->nconns, 1, __ATOMIC_RELAXED);
    STAT_ADD(s, conns_accepted, 1);
    STAT_ADD(s, conns_open, 1);
    bufferevent_setcb(bev, read_cb, write_cb, event_cb, c);
    bufferevent_setwatermark(bev, EV_READ, 0, s->lim.read_high_water);
    bufferevent_setwatermark(bev, EV_WRITE, s->lim.write_low_water, 0);
    /* libevent moves at most 16 KiB per read or write call by default: a
     * 1 MiB GET took 64 writev calls and 64 loop turns, interleaved with
     * every other connection's. One call may move up to what the watermarks
     * let the buffers hold. */
    bufferevent_set_max_single_read(bev, (ev_ssize_t)s->lim.read_high_water);
    bufferevent_set_max_single_write(bev, GW_MAX_SINGLE_WRITE);
    conn_apply_timeouts(c);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    return 0;
}

static void
accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    struct gw_listener *gl = arg;
    gw_http_server *s = gl->srv;
    struct bufferevent *bev;
    char host[INET6_ADDRSTRLEN] = "?", peer[64];
    int port = 0;

    (void)l;
    (void)salen;
    if (sa->sa_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        port = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        port = ntohs(in6->sin6_port);
    }
    snprintf(peer, sizeof(peer), "%s:%d", host, port);
    set_nodelay(fd);
    if (conn_reserve(s, s->lim.max_connections) != 0) {
        static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                                   "Connection: close\r\nRetry-After: 1\r\n\r\n";
        ssize_t w = send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)w;
        MRD_WARN("http.conn_limit", "peer=%s open=%d max_connections=%d", peer,
                 __atomic_load_n(s->open_total, __ATOMIC_RELAXED), s->lim.max_connections);
        evutil_closesocket(fd);
        return;
    }
    if (gl->tls) {
        bev = tls_bev_new(gl->tls, s->base, fd, 1, NULL, NULL); /* closes fd on failure */
        if (!bev) {
            conn_unreserve(s);
            return;
        }
    } else {
        bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
        if (!bev) {
            evutil_closesocket(fd);
            conn_unreserve(s);
            return;
        }
    }
    if (conn_new(s, bev, peer) != 0) {
        bufferevent_free(bev);
        conn_unreserve(s);
    } else if (gl->tls)
        s->conns->tls = 1; /* conn_new puts it first */
}

/* ------------------------------------------------------------ server API */

int
gw_http_server_new(struct event_base *base, const gw_http_limits *limits, gw_route_fn route,
                   void *user_data, gw_http_server **out)
{
    gw_http_server *s = calloc(1, sizeof(*s));

    if (!s)
        return -ENOMEM;
    s->base = base;
    s->route = route;
    s->ud = user_data;
    s->next_req_id = 1;
    s->req_id_step = 1;
    s->open_total = &s->nconns;
    if (limits)
        s->lim = *limits;
#define DFLT(f, v)                                                                                 \
    if (!s->lim.f)                                                                                 \
    s->lim.f = (v)
    DFLT(max_url_bytes, 8192);
    DFLT(max_header_bytes, 32768);
    DFLT(max_headers, 128);
    DFLT(header_timeout_ms, 30000);
    DFLT(idle_timeout_ms, 60000);
    DFLT(body_timeout_ms, 60000);
    DFLT(write_timeout_ms, 60000);
    DFLT(read_high_water, 256 * 1024);
    DFLT(write_low_water, 256 * 1024);
    DFLT(max_connections, 4096);
#undef DFLT
    if (s->lim.max_headers > 128)
        s->lim.max_headers = 128; /* hoff[] is sized for 128 */
    llhttp_settings_init(&s->settings);
    s->settings.on_message_begin = on_message_begin;
    s->settings.on_url = on_url;
    s->settings.on_method = on_method;
    s->settings.on_header_field = on_header_field;
    s->settings.on_header_value = on_header_value;
    s->settings.on_header_value_complete = on_header_value_complete;
    s->settings.on_headers_complete = on_headers_complete;
    s->settings.on_body = on_body;
    s->settings.on_message_complete = on_message_complete;
    *out = s;
    return 0;
}

int
gw_http_server_listen(gw_http_server *s, const char *host, uint16_t port, const char *name,
                      uint16_t *bound_port)
{
    return gw_http_server_listen_tls(s, host, port, name, NULL, bound_port);
}

int
gw_http_server_listen_tls(gw_http_server *s, const char *host, uint16_t port, const char *name,
                          tls_ctx *tls, uint16_t *bound_port)
{
    struct gw_listener *gl;
    struct sockaddr_storage ss;
    int sslen;
    struct evconnlistener *l;
    evutil_socket_t fd;

    if (s->nlisteners >= (int)(sizeof(s->listeners) / sizeof(s->listeners[0])))
        return MRD_ETOOBIG;
    /* Numeric addresses only (evutil_parse_sockaddr_port refuses port 0). */
    memset(&ss, 0, sizeof(ss));
    if (inet_pton(AF_INET, host, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
        ss.ss_family = AF_INET;
        ((struct sockaddr_in *)&ss)->sin_port = htons(port);
        sslen = sizeof(struct sockaddr_in);
    } else if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
        ss.ss_family = AF_INET6;
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons(port);
        sslen = sizeof(struct sockaddr_in6);
    } else {
        return MRD_EINVAL;
    }
    gl = &s->listeners[s->nlisteners];
    l = evconnlistener_new_bind(s->base, accept_cb, gl,
                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC |
                                    (s->reuseport ? LEV_OPT_REUSEABLE_PORT : 0),
                                1024, (struct sockaddr *)&ss, sslen);
    if (!l)
        return errno ? -errno : -EADDRINUSE;
    fd = evconnlistener_get_fd(l);
    sslen = sizeof(ss);
    getsockname(fd, (struct sockaddr *)&ss, (socklen_t *)&sslen);
    port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                          : ((struct sockaddr_in *)&ss)->sin_port);
    if (bound_port)
        *bound_port = port;
    gl->srv = s;
    gl->l = l;
    gl->tls = tls;
    s->nlisteners++;
    MRD_INFO("http.listen", "listener=%s addr=%s:%u tls=%s", name, host, port, tls ? "on" : "off");
    return 0;
}

int
gw_http_server_adopt(gw_http_server *s, struct bufferevent *bev, const char *peer)
{
    int rc;

    conn_reserve(s, 0);
    if ((rc = conn_new(s, bev, peer ? peer : "adopted")) != 0)
        conn_unreserve(s);
    return rc;
}

void
gw_http_server_set_error_fn(gw_http_server *s, gw_http_error_fn fn)
{
    s->error_fn = fn;
}

void
gw_http_server_stop_listening(gw_http_server *s)
{
    for (int i = 0; i < s->nlisteners; i++)
        evconnlistener_free(s->listeners[i].l);
    s->nlisteners = 0;
    /* Idle keep-alive connections would otherwise linger for idle_timeout. */
    for (gw_conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        if (!c->have_req && c->busy == 0)
            conn_free(c);
        else
            c->req.keep_alive = 0;
    }
}

void
gw_http_server_free(gw_http_server *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->nlisteners; i++)
        evconnlistener_free(s->listeners[i].l);
    while (s->conns)
        conn_free(s->conns);
    while (s->lingers)
        linger_end(s->lingers);
    free(s);
}

void
gw_http_server_set_reuseport(gw_http_server *s, int on)
{
    s->reuseport = on;
}

void
gw_http_server_set_req_ids(gw_http_server *s, uint64_t first, uint64_t step)
{
    s->next_req_id = first ? first : 1;
    s->req_id_step = step ? step : 1;
}

void
gw_http_server_share_conn_count(gw_http_server *s, int *open)
{
    s->open_total = open ? open : &s->nconns;
}

void
gw_http_server_stats_get(const gw_http_server *s, gw_http_stats *out)
{
    const uint64_t *in = (const uint64_t *)&s->stats;
    uint64_t *o = (uint64_t *)out;

    for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
        o[i] = __atomic_load_n(&in[i], __ATOMIC_RELAXED);
}

int
gw_http_server_conn_count(const gw_http_server *s)
{
    return __atomic_load_n(&s->nconns, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------ request API */

const char *
gw_req_method(const gw_req *r)
{
    return r->method;
}

const char *
gw_req_target(const gw_req *r)
{
    return r->target.data ? r->target.data : "";
}

const char *
gw_req_path(const gw_req *r)
{
    return r->path ? r->path : "";
}

const char *
gw_req_query(const gw_req *r)
{
    return r->query ? r->query : "";
}

int
gw_req_header_count(const gw_req *r)
{
    return r->nhdr;
}

int
gw_req_header_at(const gw_req *r, int i, const char **name, const char **value)
{
    if (i < 0 || i >= r->nhdr)
        return MRD_ENOTFOUND;
    *name = r->hbuf.data + r->hoff[2 * i];
    *value = r->hbuf.data + r->hoff[2 * i + 1];
    return 0;
}

const char *
gw_req_header(const gw_req *r, const char *name)
{
    for (int i = 0; i < r->nhdr; i++)
        if (strcasecmp(r->hbuf.data + r->hoff[2 * i], name) == 0)
            return r->hbuf.data + r->hoff[2 * i + 1];
    return NULL;
}

int64_t
gw_req_content_length(const gw_req *r)
{
    return r->chunked ? -1 : r->content_length;
}

int
gw_req_is_chunked(const gw_req *r)
{
    return r->chunked;
}

int
gw_req_has_body(const gw_req *r)
{
    return r->chunked || r->content_length > 0;
}

const char *
gw_req_peer(const gw_req *r)
{
    return r->conn->peer;
}

uint64_t
gw_req_id(const gw_req *r)
{
    return r->id;
}

uint64_t
gw_req_body_received(const gw_req *r)
{
    return r->body_received;
}

void
gw_req_attach(gw_req *r, const gw_req_ops *ops, void *ctx)
{
    r->ops = ops;
    r->ctx = ctx;
    /* 100 Continue follows when the route returns, or at gw_req_resume if
     * the handler pauses first (maybe_continue). It is granted even for an
     * empty body (RFC 9110 allows either): botocore keeps the status of a
     * final response that came instead of 100 Continue and misreads the
     * next response on that connection, so an empty PUT followed by another
     * PUT would stall until the idle timeout. */
}

void
gw_req_pause(gw_req *r)
{
    r->paused = 1;
    bufferevent_disable(r->conn->bev, EV_READ);
}

void
gw_req_resume(gw_req *r)
{
    gw_conn *c = r->conn;

    if (!r->paused)
        return;
    r->paused = 0;
    maybe_continue(r);
    if (c->state != ST_WAIT && c->state != ST_CLOSING)
        bufferevent_enable(c->bev, EV_READ);
    /* Deliver held bytes and continue parsing from the loop, not from inside
     * the caller's stack. */
    schedule_process(c);
}

/* ------------------------------------------------------------ response API */

static int
header_ok(const char *s)
{
    return strpbrk(s, "\r\n") == NULL;
}

int
gw_resp_header(gw_req *r, const char *name, const char *value)
{
    if (r->resp_started || !header_ok(name) || !header_ok(value) || !*name)
        return MRD_EINVAL;
    return mrd_buf_appendf(&r->rhdr, "%s: %s\r\n", name, value);
}

int
gw_resp_start(gw_req *r, int status, int64_t content_length)
{
    gw_conn *c = r->conn;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    char date[40];
    mrd_buf h = {0};
    int body_allowed = !(status == 204 || status == 304 || (status >= 100 && status < 200));

    if (r->resp_started || c->dead)
        return MRD_EINVAL;
    r->resp_started = 1;
    /* Answering before the body has been read, or instead of a 100 Continue
     * the client waits for: the connection can't be reused. */
    if ((gw_req_has_body(r) && !r->body_done) || r->expect_continue)
        r->keep_alive = 0;
    http_date(date, sizeof(date));
    mrd_buf_appendf(&h, "HTTP/1.1 %d %s\r\nDate: %s\r\nServer: Meridian/" MRD_VERSION "\r\n",
                    status, gw_http_status_text(status), date);
    if (r->rhdr.len)
        mrd_buf_append(&h, r->rhdr.data, r->rhdr.len);
    if (!body_allowed) {
        r->resp_remaining = 0;
    } else if (content_length >= 0) {
        mrd_buf_appendf(&h, "Content-Length: %lld\r\n", (long long)content_length);
        r->resp_remaining = r->is_head ? 0 : content_length;
    } else if (!r->is_head) {
        mrd_buf_appendf(&h, "Transfer-Encoding: chunked\r\n");
        r->resp_chunked = 1;
    }
    if (!r->keep_alive)
        mrd_buf_appendf(&h, "Connection: close\r\n");
    mrd_buf_append(&h, "\r\n", 2);
    if (!h.data) {
        mrd_buf_free(&h);
        return -ENOMEM;
    }
    evbuffer_add(out, h.data, h.len);
    STAT_ADD(c->srv, bytes_out, h.len);
    mrd_buf_free(&h);
    return 0;
}

/* Body bytes into the output buffer: copied, or (done != NULL) held by
 * reference until sent, when libevent calls done. */
static int
resp_write(gw_req *r, const void *data, size_t len,
           void (*done)(const void *data, size_t len, void *arg), void *arg)
{
    gw_conn *c = r->conn;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    char chunk_hdr[24];
    int n, rc = 0;

    if (!r->resp_started || r->resp_ended)
        return MRD_EINVAL;
    if (r->is_head || len == 0) {
        if (done)
            done(data, len, arg);
        return 0;
    }
    if (!r->resp_chunked && (int64_t)len > r->resp_remaining)
        return MRD_EINVAL;
    if (r->resp_chunked) {
        n = snprintf(chunk_hdr, sizeof(chunk_hdr), "%zx\r\n", len);
        evbuffer_add(out, chunk_hdr, (size_t)n);
    } else {
        r->resp_remaining -= (int64_t)len;
    }
    if (done)
        rc = evbuffer_add_reference(out, data, len, done, arg) == 0 ? 0 : -ENOMEM;
    else
        evbuffer_add(out, data, len);
    if (r->resp_chunked)
        evbuffer_add(out, "\r\n", 2);
    if (rc == 0)
        STAT_ADD(c->srv, bytes_out, len);
    return rc;
}

int
gw_resp_write(gw_req *r, const void *data, size_t len)
{
    return resp_write(r, data, len, NULL, NULL);
}

int
gw_resp_write_ref(gw_req *r, const void *data, size_t len,
                  void (*done)(const void *data, size_t len, void *arg), void *arg)
{
    return resp_write(r, data, len, done, arg);
}

size_t
gw_resp_buffered(const gw_req *r)
{
    return evbuffer_get_length(bufferevent_get_output(r->conn->bev));
}

int
gw_resp_started(const gw_req *r)
{
    return r->resp_started;
}

int
gw_resp_end(gw_req *r)
{
    gw_conn *c = r->conn;

    if (!r->resp_started || r->resp_ended)
        return MRD_EINVAL;
    r->resp_ended = 1;
    if (r->resp_chunked)
        evbuffer_add(bufferevent_get_output(c->bev), "0\r\n\r\n", 5);
    if (!r->is_head && !r->resp_chunked && r->resp_remaining > 0) {
        /* Fewer bytes than promised: the client would hang; cut the connection. */
        MRD_ERROR("http.short_response", "peer=%s path=%s missing=%lld", c->peer, gw_req_path(r),
                  (long long)r->resp_remaining);
        req_release(c, 0);
        conn_close(c);
        return MRD_EINVAL;
    }
    req_release(c, 0);
    if (gw_req_has_body(r) && !r->body_done) {
        /* Answered before the body finished: the rest of the body is never
         * read, so the connection can't be reused. Inside a parser callback
         * the caller (on_headers_complete / on_body) closes it. */
        if (c->busy == 0)
            conn_close_after_flush(c);
        else
            c->close_after = 1;
        return 0;
    }
    if (!r->keep_alive) {
        conn_close_after_flush(c);
        return 0;
    }
    /* A bodiless request answered inside route: llhttp has not reached
     * message_complete yet; conn_process moves on when it does. */
    if (r->body_done)
        conn_next_request(c);
    return 0;
}

void
gw_resp_abort(gw_req *r)
{
    gw_conn *c = r->conn;

    MRD_DEBUG("http.abort", "peer=%s path=%s", c->peer, gw_req_path(r));
    req_release(c, 1);
    conn_close(c);
}

static void
conn_next_request(gw_conn *c)
{
    req_clear(&c->req);
    c->have_req = 0;
    c->state = ST_HEAD;
    conn_apply_timeouts(c);
    if (!c->dead)
        bufferevent_enable(c->bev, EV_READ);
    schedule_process(c);
}

void
gw_resp_simple(gw_req *r, int status, const char *content_type, const void *body, size_t len)
{
    if (content_type)
        gw_resp_header(r, "Content-Type", content_type);
    if (gw_resp_start(r, status, (int64_t)len) != 0)
        return;
    gw_resp_write(r, body, len);
    gw_resp_end(r);
}
