/*
 * repl_conn.c - one HTTP/2 connection on a libevent bufferevent, client or
 * server side, shaped after nghttp2's examples/libevent-server.c.
 *
 * Data flow. The read callback hands every byte in the bufferevent's input
 * to nghttp2_session_mem_recv (which consumes it all, so the input buffer
 * never grows past one socket read), then lets nghttp2 send what it has.
 * nghttp2's send callback appends to the bufferevent's output, and returns
 * NGHTTP2_ERR_WOULDBLOCK once REPL_OUTBUF_HIGH bytes are queued there: that
 * is the backpressure point. nghttp2 then keeps frames (and pulls no more
 * DATA from stream data providers) until the write callback fires at the
 * low-water mark (half the threshold) and sends again. So the memory held
 * per connection is bounded by the output threshold, nghttp2's own frame
 * queue, and the per-stream body caps (REPL_MAX_CTRL_BODY); a peer that
 * stops reading is held back by TCP and by HTTP/2 flow control, not by
 * buffering more.
 *
 * Windows. Both sides announce SETTINGS_INITIAL_WINDOW_SIZE = 16 MiB per
 * stream and raise the connection window to 64 MiB with
 * nghttp2_session_set_local_window_size, so one connection can keep a
 * high bandwidth-delay-product link full once record streams exist. Bodies
 * are consumed as they arrive (nghttp2's automatic WINDOW_UPDATE), which is
 * right for small control messages; record streams will switch to manual
 * nghttp2_session_consume so a slow store pushes back on the sender.
 *
 * Lifetime. nghttp2 callbacks never free anything that nghttp2 may still
 * touch: on trouble they mark the connection dead (repl__conn_fail), and the
 * code that called into nghttp2 (read, write, event callbacks, the tick)
 * reaps it afterwards through repl__conn_reap, which lets the client or
 * server side tidy up (outcomes, reconnect, counters) before the free.
 * Stream state lives on a per-connection list, so nghttp2_session_del
 * (which does not call on_stream_close) leaks nothing.
 *
 * Reads and writes in bulk. libevent 2.1's socket bufferevent moves at most
 * 4096 bytes per readable event (evbuffer_read's cap), which cost a
 * receiver three system calls (epoll_wait, FIONREAD, readv) and one pass
 * through nghttp2 per 4 KiB: most of the receiving loop's time in a
 * catch-up (docs/benchmarks.md, 2026-12-06). A plain TCP connection
 * therefore drains what bufferevent read and then recv()s the socket itself,
 * REPL_READ_CHUNK at a time into one scratch buffer shared by the loop
 * (r->rdbuf), handing each chunk to nghttp2 directly, until the socket is
 * empty or REPL_READ_BUDGET bytes were taken (the read event is
 * level-triggered, so the rest comes next turn, after other connections).
 * EOF and errors seen there end the connection as event_cb would. Writes go
 * out up to REPL_OUTBUF_HIGH at a time (bufferevent_set_max_single_write)
 * instead of 16 KiB. A TLS connection reads through its bufferevent only.
 *
 * Every socket gets TCP_NODELAY: heartbeats are small and must not wait for
 * delayed ACKs. (TCP_NOTSENT_LOWAT, which would keep a slow link's backlog
 * in nghttp2 where stream weights apply rather than in the kernel's send
 * buffer, was tried: 128 KiB to 1 MiB all cost a catch-up through a 50 ms,
 * 1 Gbit/s emulated link about a tenth of its throughput, 0.79-0.90 of TCP
 * against 0.92-0.93.)
 *
 * Mutual TLS (r->o.tls set). The bufferevent is a TLS one (tls module) and
 * everything above it is unchanged: nghttp2 reads and writes plaintext, the
 * output threshold and watermarks apply to plaintext bytes. The handshake
 * checks the peer's certificate (repl_tls.c) and BEV_EVENT_CONNECTED comes
 * only once it is done; then ALPN must have chosen "h2", else the
 * connection is closed. A client sends its preface and Hello only after
 * that; a server may queue its SETTINGS earlier (the TLS bufferevent holds
 * them until the handshake ends). A handshake that fails is logged with its
 * reason (repl.tls.refused) and the reason becomes the link's error.
 */
#include "repl_int.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>
#include <nghttp2/nghttp2.h>

#include "tls.h"

static void
set_nodelay(struct bufferevent *bev)
{
    int one = 1;
    evutil_socket_t fd = bufferevent_getfd(bev);

    if (fd >= 0)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void
account(repl__conn *c, uint64_t in, uint64_t out)
{
    c->bytes_in += in;
    c->bytes_out += out;
    if (c->peer) {
        c->peer->bytes_in += in;
        c->peer->bytes_out += out;
    }
}

void
repl__conn_fail(repl__conn *c, const char *why)
{
    if (!c->dead) {
        c->dead = 1;
        snprintf(c->why, sizeof(c->why), "%s", why);
    }
}

/* ---- streams ------------------------------------------------------------ */

repl__stream *
repl__stream_new(repl__conn *c, int kind)
{
    repl__stream *s = calloc(1, sizeof(*s));

    if (!s)
        return NULL;
    s->kind = kind;
    s->next = c->streams;
    c->streams = s;
    return s;
}

repl__stream *
repl__stream_find(repl__conn *c, int32_t id)
{
    for (repl__stream *s = c->streams; s; s = s->next)
        if (s->id == id)
            return s;
    return NULL;
}

void
repl__stream_unlink_free(repl__conn *c, repl__stream *s)
{
    for (repl__stream **pp = &c->streams; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    if (s->ctx && s->kind == REPL__ST_RECORDS)
        repl__tx_stream_gone(s);
    else if (s->ctx && s->kind == REPL__ST_DIGEST_SRV)
        repl__digest_srv_gone(s);
    else if (s->ctx)
        repl__rx_stream_gone(s);
    mrd_buf_free(&s->in);
    mrd_buf_free(&s->out);
    free(s);
}

/* ---- nghttp2 callbacks -------------------------------------------------- */

static ssize_t
send_cb(nghttp2_session *h2, const uint8_t *data, size_t len, int flags, void *ud)
{
    repl__conn *c = ud;
    struct evbuffer *out = bufferevent_get_output(c->bev);

    if (evbuffer_get_length(out) >= REPL_OUTBUF_HIGH)
        return NGHTTP2_ERR_WOULDBLOCK;
    if (evbuffer_add(out, data, len) < 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    account(c, 0, len);
    return (ssize_t)len;
}

static int
begin_headers_cb(nghttp2_session *h2, const nghttp2_frame *frame, void *ud)
{
    repl__conn *c = ud;
    repl__stream *s;

    if (c->is_client || frame->hd.type != NGHTTP2_HEADERS ||
        frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    s = repl__stream_new(c, REPL__ST_SERVER);
    if (!s)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets the stream */
    s->id = frame->hd.stream_id;
    nghttp2_session_set_stream_user_data(h2, s->id, s);
    return 0;
}

static void
copy_hdr(repl__stream *s, char *dst, size_t dstsz, const uint8_t *v, size_t vlen)
{
    if (dst[0] || vlen == 0 || vlen >= dstsz) {
        s->bad_header = 1; /* repeated, empty or too long */
        return;
    }
    memcpy(dst, v, vlen);
    dst[vlen] = '\0';
}

static int
header_cb(nghttp2_session *h2, const nghttp2_frame *frame, const uint8_t *name, size_t nlen,
          const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
    repl__stream *s = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
    char *dst = NULL;
    size_t dstsz = REPL_HDR_VALUE_MAX;

    if (!s || frame->hd.type != NGHTTP2_HEADERS)
        return 0;
#define IS(lit) (nlen == sizeof(lit) - 1 && memcmp(name, lit, nlen) == 0)
    if (IS(REPL_HDR_SITE))
        dst = s->site;
    else if (IS(REPL_HDR_TIME))
        dst = s->time;
    else if (IS(REPL_HDR_AUTH))
        dst = s->auth;
    else if (IS(":path"))
        dst = s->path;
    else if (IS(":method"))
        dst = s->method, dstsz = sizeof(s->method);
    else if (IS(":status")) {
        if (frame->headers.cat == NGHTTP2_HCAT_RESPONSE && vlen == 3)
            s->status = (value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0');
        return 0;
    }
#undef IS
    if (dst)
        copy_hdr(s, dst, dstsz, value, vlen);
    return 0;
}

static int
data_chunk_cb(nghttp2_session *h2, uint8_t flags, int32_t stream_id, const uint8_t *data,
              size_t len, void *ud)
{
    repl__conn *c = ud;
    repl__stream *s = nghttp2_session_get_stream_user_data(h2, stream_id);

    if (!s) {
        nghttp2_session_consume(h2, stream_id, len);
        return 0;
    }
    if (!c->is_client &&
        (strcmp(s->path, REPL_PATH_RECORDS) == 0 || strcmp(s->path, REPL_PATH_RESYNC) == 0))
        return repl__rx_data(c, s, data, len) < 0 ? NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE : 0;
    /* control bodies are small: their window goes back at once */
    nghttp2_session_consume(h2, stream_id, len);
    if (s->too_big ||
        s->in.len + len > (s->kind == REPL__ST_DIGEST ? REPL_MAX_DIGEST : REPL_MAX_CTRL_BODY)) {
        if (!s->too_big && !c->is_client) {
            /* Answer at once; nghttp2 resets the rest of the request with
             * NO_ERROR after the response, and the bytes are dropped. */
            s->too_big = 1;
            repl__server_on_request(c, s);
        }
        s->too_big = 1;
        return 0;
    }
    if (mrd_buf_append(&s->in, data, len) < 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    return 0;
}

static int
frame_recv_cb(nghttp2_session *h2, const nghttp2_frame *frame, void *ud)
{
    repl__conn *c = ud;
    repl__stream *s;

    if (c->is_client)
        return 0;
    if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        s = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
        if (s && !s->answered)
            repl__server_on_request(c, s);
    }
    return 0;
}

static int
stream_close_cb(nghttp2_session *h2, int32_t stream_id, uint32_t error_code, void *ud)
{
    repl__conn *c = ud;
    repl__stream *s = nghttp2_session_get_stream_user_data(h2, stream_id);

    if (!s)
        return 0;
    nghttp2_session_set_stream_user_data(h2, stream_id, NULL);
    if (c->is_client)
        repl__client_on_stream_close(c, s, error_code);
    else
        repl__server_on_stream_close(c, s);
    repl__stream_unlink_free(c, s);
    return 0;
}

static ssize_t
body_read_cb(nghttp2_session *h2, int32_t stream_id, uint8_t *buf, size_t length,
             uint32_t *data_flags, nghttp2_data_source *source, void *ud)
{
    repl__stream *s = source->ptr;
    repl__conn *c = ud;
    size_t n = s->out.len - s->out_off;
    long more;
    int eof = 0;

    if (n > length)
        n = length;
    if (n)
        memcpy(buf, s->out.data + s->out_off, n);
    s->out_off += n;
    if (s->out_off < s->out.len)
        return (ssize_t)n;
    if (s->kind != REPL__ST_RECORDS) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
        return (ssize_t)n;
    }
    /* a records request: the object data follows the framed batch */
    more = repl__tx_body(c, s, buf + n, length - n, &eof);
    if (more == REPL__BODY_FAIL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    if (more == REPL__BODY_DEFERRED)
        return n ? (ssize_t)n : NGHTTP2_ERR_DEFERRED;
    if (eof)
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)(n + (size_t)more);
}

void
repl__conn_resume(repl__conn *c, int32_t stream_id)
{
    if (!c->dead && nghttp2_session_resume_data(c->h2, stream_id) == 0)
        repl__conn_flush(c);
}

void
repl__conn_consume(repl__conn *c, int32_t stream_id, size_t n)
{
    /* no send here: this may run inside an nghttp2 callback; the caller
     * flushes when it is outside one */
    if (!c->dead && n)
        nghttp2_session_consume(c->h2, stream_id, n);
}

/* ---- submitting --------------------------------------------------------- */

#define NV(n, v)                                                                                   \
    {                                                                                              \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NO_COPY_NAME     \
    }

/* Stream weights (RFC 7540 section 5.3): when several streams have DATA
 * waiting, nghttp2 shares the link between them in proportion. Anti-entropy
 * (/repl/v1/resync) weighs 8 against 256 for everything else, so a resync
 * pass gets about 3% of the link while live records or heartbeats wait. */
#define REPL_WEIGHT_LIVE 256
#define REPL_WEIGHT_SYNC 8

int
repl__submit_request(repl__conn *c, repl__stream *s, const char *path)
{
    repl *r = c->r;
    char site[16], tbuf[24], authority[300];
    uint64_t now = repl__now_ms(r);
    nghttp2_data_provider dp;
    nghttp2_priority_spec pri;
    int32_t id;

    repl__auth_sign(r->secret, r->secret_len, "POST", path, r->site_id, now, s->out.data,
                    s->out.len, s->req_auth);
    snprintf(site, sizeof(site), "%u", r->site_id);
    snprintf(tbuf, sizeof(tbuf), "%llu", (unsigned long long)now);
    mrd_addr_format(&c->peer->addr, authority, sizeof(authority));
    nghttp2_nv nva[] = {
        NV(":method", "POST"),
        NV(":scheme", c->tls ? "https" : "http"),
        NV(":authority", authority),
        NV(":path", path),
        NV("content-type", REPL_CONTENT_TYPE),
        NV(REPL_HDR_SITE, site),
        NV(REPL_HDR_TIME, tbuf),
        NV(REPL_HDR_AUTH, s->req_auth),
    };
    dp.source.ptr = s;
    dp.read_callback = body_read_cb;
    nghttp2_priority_spec_init(
        &pri, 0, strcmp(path, REPL_PATH_RESYNC) == 0 ? REPL_WEIGHT_SYNC : REPL_WEIGHT_LIVE, 0);
    id = nghttp2_submit_request(c->h2, &pri, nva, sizeof(nva) / sizeof(nva[0]), &dp, s);
    if (id < 0)
        return MRD_EPROTO;
    s->id = id;
    return 0;
}

int
repl__submit_response(repl__conn *c, repl__stream *s, int status, const void *body, size_t len)
{
    repl *r = c->r;
    char site[16], tbuf[24], st[8], method[16], auth[65];
    uint64_t now = repl__now_ms(r);
    nghttp2_data_provider dp;

    s->answered = 1;
    mrd_buf_reset(&s->out);
    s->out_off = 0;
    if (len && mrd_buf_append(&s->out, body, len) < 0)
        return -ENOMEM;
    snprintf(st, sizeof(st), "%d", status);
    snprintf(method, sizeof(method), "RESP %d", status);
    snprintf(site, sizeof(site), "%u", r->site_id);
    snprintf(tbuf, sizeof(tbuf), "%llu", (unsigned long long)now);
    /* Bound to the request's signature; an unsigned request ("") still gets
     * a signed answer, which a client without the secret cannot check. */
    repl__auth_sign(r->secret, r->secret_len, method, s->auth, r->site_id, now, s->out.data,
                    s->out.len, auth);
    nghttp2_nv nva[] = {
        NV(":status", st),
        NV("content-type", status == 200 ? REPL_CONTENT_TYPE : "text/plain"),
        NV(REPL_HDR_SITE, site),
        NV(REPL_HDR_TIME, tbuf),
        NV(REPL_HDR_AUTH, auth),
    };
    dp.source.ptr = s;
    dp.read_callback = body_read_cb;
    if (nghttp2_submit_response(c->h2, s->id, nva, sizeof(nva) / sizeof(nva[0]), &dp) != 0)
        return MRD_EPROTO;
    return 0;
}

/* ---- bufferevent callbacks ---------------------------------------------- */

static void
maybe_done(repl__conn *c)
{
    if (!c->dead && !nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2) &&
        evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        repl__conn_fail(c, c->reject ? "closed after auth failure" : "session finished");
}

void
repl__conn_flush(repl__conn *c)
{
    int rv;

    if (c->dead || !c->connected)
        return;
    rv = nghttp2_session_send(c->h2);
    if (rv != 0) {
        repl__conn_fail(c, nghttp2_strerror(rv));
        return;
    }
    maybe_done(c);
}

/* Hands len bytes to nghttp2; 0, or -1 once the connection failed. */
static int
feed(repl__conn *c, const uint8_t *data, size_t len)
{
    ssize_t rv = nghttp2_session_mem_recv(c->h2, data, len);

    account(c, len, 0);
    if (rv < 0) {
        repl__conn_fail(c, nghttp2_strerror((int)rv));
        return -1;
    }
    return 0;
}

/* Plain TCP: the socket straight into nghttp2 (see "Reads and writes in
 * bulk" above). */
static void
read_direct(repl__conn *c)
{
    evutil_socket_t fd = bufferevent_getfd(c->bev);
    size_t total = 0;

    if (!c->r->rdbuf && !(c->r->rdbuf = malloc(REPL_READ_CHUNK)))
        return; /* bufferevent keeps reading, 4 KiB at a time */
    while (!c->dead && total < REPL_READ_BUDGET) {
        ssize_t n = recv(fd, c->r->rdbuf, REPL_READ_CHUNK, 0);
        if (n > 0) {
            total += (size_t)n;
            if (feed(c, c->r->rdbuf, (size_t)n) < 0 || (size_t)n < REPL_READ_CHUNK)
                break;
        } else if (n == 0) {
            repl__conn_fail(c, "connection closed by peer");
        } else if (errno != EINTR) {
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                repl__conn_fail(c, evutil_socket_error_to_string(errno));
            break;
        }
    }
}

static void
read_cb(struct bufferevent *bev, void *ud)
{
    repl__conn *c = ud;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t len;

    c->last_rx_ns = mrd_clock_mono_ns();
    while (!c->dead && (len = evbuffer_get_length(in)) > 0) {
        struct evbuffer_iovec v;

        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        if (feed(c, v.iov_base, v.iov_len) < 0)
            break;
        evbuffer_drain(in, v.iov_len);
    }
    if (!c->tls && !c->dead)
        read_direct(c);
    repl__conn_flush(c);
    if (c->dead)
        repl__conn_reap(c);
}

static void
write_cb(struct bufferevent *bev, void *ud)
{
    repl__conn *c = ud;

    repl__conn_flush(c);
    if (c->dead)
        repl__conn_reap(c);
}

/* Why the connection was lost, in words: a TLS alert or refusal (logged as
 * repl.tls.refused while the link is not yet established: with TLS 1.3 a
 * refused client certificate shows only after the client's handshake), the
 * socket error, or a plain close. */
static const char *
lost_why(repl__conn *c, short what)
{
    static char why[96];
    char reason[200] = "";
    int err = EVUTIL_SOCKET_ERROR();
    int established = c->is_client ? (c->peer && c->peer->hello_done) : c->peer != NULL;

    if (c->tls)
        tls_bev_error(c->bev, reason, sizeof(reason));
    if (!reason[0] && c->tls && !c->tls_up && err && err != EAGAIN) {
        /* not TLS at all: the TCP connect failed (refused, unreachable) */
        snprintf(why, sizeof(why), "%s", evutil_socket_error_to_string(err));
        return why;
    }
    if (!reason[0] && c->tls && !c->tls_up)
        snprintf(reason, sizeof(reason), "connection closed during the TLS handshake");
    if (reason[0]) {
        if (!established)
            repl__tls_refused(c, reason);
        snprintf(why, sizeof(why), "TLS: %.90s", reason);
    } else if (what & BEV_EVENT_EOF) {
        snprintf(why, sizeof(why), "connection closed by peer");
    } else {
        /* not TLS at all: the TCP connect failed (refused, unreachable) */
        snprintf(why, sizeof(why), "%s", err ? evutil_socket_error_to_string(err) : "error");
    }
    return why;
}

static void
event_cb(struct bufferevent *bev, short what, void *ud)
{
    repl__conn *c = ud;

    if ((what & BEV_EVENT_CONNECTED) && c->tls && !tls_bev_alpn_ok(bev)) {
        repl__tls_refused(c, "peer did not negotiate ALPN h2");
        repl__conn_fail(c, "TLS: peer did not negotiate ALPN h2");
    } else if ((what & BEV_EVENT_CONNECTED) && c->tls && !c->is_client) {
        char d[96];

        c->tls_up = 1;
        tls_bev_describe(bev, d, sizeof(d));
        MRD_DEBUG("repl.tls.accepted", "remote=%s peer=%s tls=\"%s\"", c->remote,
                  c->tls_peer ? c->tls_peer->name : "-", d);
    } else if (what & BEV_EVENT_CONNECTED) {
        c->tls_up = c->tls;
        set_nodelay(bev);
        c->connected = 1;
        repl__client_on_connected(c);
        repl__conn_flush(c);
    } else if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        repl__conn_fail(c, lost_why(c, what));
    } else if (what & BEV_EVENT_TIMEOUT) {
        repl__conn_fail(c, "timeout");
    }
    if (c->dead)
        repl__conn_reap(c);
}

/* ---- create and free ---------------------------------------------------- */

static int
make_session(repl__conn *c)
{
    nghttp2_session_callbacks *cbs;
    nghttp2_option *opt;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, REPL_MAX_STREAMS},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, REPL_STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, REPL_MAX_HEADER_LIST},
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
    };
    int rv;

    if (nghttp2_session_callbacks_new(&cbs) != 0)
        return -ENOMEM;
    nghttp2_session_callbacks_set_send_callback(cbs, send_cb);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, begin_headers_cb);
    nghttp2_session_callbacks_set_on_header_callback(cbs, header_cb);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, data_chunk_cb);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, frame_recv_cb);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, stream_close_cb);
    if (nghttp2_option_new(&opt) != 0) {
        nghttp2_session_callbacks_del(cbs);
        return -ENOMEM;
    }
    nghttp2_option_set_max_deflate_dynamic_table_size(opt, 4096);
    /* Windows go back only when the bytes are dealt with: control bodies at
     * once, object data once the store has it (repl_recv.c). */
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_peer_max_concurrent_streams(opt, REPL_MAX_STREAMS);
    rv = c->is_client ? nghttp2_session_client_new2(&c->h2, cbs, c, opt)
                      : nghttp2_session_server_new2(&c->h2, cbs, c, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    if (rv != 0)
        return -ENOMEM;
    /* Nothing is sent until flush; the client's preface goes first. */
    if (nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])) != 0 ||
        nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, REPL_CONN_WINDOW) != 0)
        return MRD_EPROTO;
    return 0;
}

static int
resolve(const mrd_addr *a, struct sockaddr_storage *ss, int *sslen)
{
    struct evutil_addrinfo hints, *res = NULL;
    char port[8];
    int rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(port, sizeof(port), "%u", a->port);
    /* Numeric addresses resolve without I/O. A name is resolved with the
     * blocking resolver (usually /etc/hosts on test clusters); evdns is the
     * follow-up for production names. */
    hints.ai_flags = EVUTIL_AI_NUMERICHOST;
    rc = evutil_getaddrinfo(a->host, port, &hints, &res);
    if (rc != 0) {
        hints.ai_flags = 0;
        rc = evutil_getaddrinfo(a->host, port, &hints, &res);
    }
    if (rc != 0 || !res)
        return -EHOSTUNREACH;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *sslen = (int)res->ai_addrlen;
    evutil_freeaddrinfo(res);
    return 0;
}

int
repl__conn_new(repl *r, int is_client, int fd, repl__conn **out)
{
    repl__conn *c = calloc(1, sizeof(*c));
    int rc;

    if (!c)
        return -ENOMEM;
    c->r = r;
    c->is_client = is_client;
    c->last_rx_ns = mrd_clock_mono_ns();
    c->tls = r->o.tls != NULL;
    if (c->tls) {
        c->bev = tls_bev_new(r->o.tls, r->base, fd, !is_client, repl__tls_check, c);
    } else {
        c->bev = bufferevent_socket_new(r->base, fd, BEV_OPT_CLOSE_ON_FREE);
    }
    if (!c->bev) {
        if (fd >= 0 && !c->tls) /* tls_bev_new closed it */
            evutil_closesocket(fd);
        free(c);
        return -ENOMEM;
    }
    rc = make_session(c);
    if (rc < 0)
        goto fail;
    bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
    bufferevent_setwatermark(c->bev, EV_WRITE, REPL_OUTBUF_HIGH / 2, 0);
    bufferevent_set_max_single_write(c->bev, REPL_OUTBUF_HIGH);
    if (fd >= 0) {
        set_nodelay(c->bev);
        c->connected = 1;
    }
    *out = c;
    return 0;
fail:
    repl__conn_free(c);
    return rc;
}

/* The client's dial, split from _new so the peer is attached first (the
 * connect may fail synchronously). */
int
repl__conn_dial(repl__conn *c)
{
    struct sockaddr_storage ss;
    int sslen = 0, rc;

    rc = resolve(&c->peer->addr, &ss, &sslen);
    if (rc < 0)
        return rc;
    mrd_addr_format(&c->peer->addr, c->remote, sizeof(c->remote));
    if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&ss, sslen) < 0)
        return -ECONNREFUSED;
    set_nodelay(c->bev);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    return 0;
}

void
repl__conn_free(repl__conn *c)
{
    if (!c)
        return;
    if (c->h2)
        nghttp2_session_del(c->h2);
    while (c->streams)
        repl__stream_unlink_free(c, c->streams);
    if (c->timer)
        event_free(c->timer);
    if (c->bev)
        bufferevent_free(c->bev);
    free(c);
}

void
repl__conn_reap(repl__conn *c)
{
    if (c->is_client)
        repl__client_on_closed(c);
    else
        repl__server_on_closed(c);
}
