/*
 * http_testsrv.c - see http_testsrv.h. The sink checksums the body with
 * zlib's CRC-32 (ISA-L's crc32_gzip_refl, so Python's zlib.crc32 can check
 * it) as it streams and never keeps more than one chunk, so the process's peak
 * RSS shows what the HTTP layer itself buffers.
 */
#include "http_testsrv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <isa-l.h>

static testsrv_counters counters;
static struct event_base *srv_base;

const testsrv_counters *
testsrv_counters_get(void)
{
    return &counters;
}

unsigned char
testsrv_pattern(uint64_t i)
{
    return (unsigned char)((i * 7 + (i >> 12)) & 0xff);
}

typedef struct sink {
    gw_req *r;
    uint64_t bytes;
    uint32_t crc;
    int pause_each;
    int stall_ms; /* pause on the first chunk for this long */
    int refuse;   /* after the hold: answer 403 instead of resuming */
    int released;
    struct event *resume_ev;
    struct event *hold_ev; /* paused from the start, like a PUT checking its bucket */
    /* stream */
    uint64_t stream_total, stream_sent;
} sink;

static void
sink_free(sink *s)
{
    if (s->resume_ev)
        event_free(s->resume_ev);
    if (s->hold_ev)
        event_free(s->hold_ev);
    free(s);
}

static void
resume_cb(evutil_socket_t fd, short what, void *arg)
{
    sink *s = arg;

    (void)fd;
    (void)what;
    gw_req_resume(s->r);
}

/* The end of a hold: resume the body, or refuse it unread (releases s). */
static void
hold_cb(evutil_socket_t fd, short what, void *arg)
{
    sink *s = arg;

    (void)fd;
    (void)what;
    if (s->refuse)
        gw_resp_simple(s->r, 403, "text/plain", "refused\n", 8);
    else
        gw_req_resume(s->r);
}

static int
sink_body(gw_req *r, const char *data, size_t len, void *ctx)
{
    sink *s = ctx;
    struct timeval ms = {0, 1000};

    s->bytes += len;
    s->crc = crc32_gzip_refl(s->crc, (const unsigned char *)data, len);
    if (len > counters.max_held_bytes)
        counters.max_held_bytes = len;
    if (s->pause_each) {
        gw_req_pause(r);
        event_add(s->resume_ev, &ms);
    } else if (s->stall_ms > 0) {
        struct timeval st = {s->stall_ms / 1000, (s->stall_ms % 1000) * 1000};
        s->stall_ms = 0;
        gw_req_pause(r);
        event_add(s->resume_ev, &st);
    }
    return 0;
}

static void
sink_end(gw_req *r, void *ctx)
{
    sink *s = ctx;
    char msg[96];
    int n =
        snprintf(msg, sizeof(msg), "bytes=%llu crc32=%08x\n", (unsigned long long)s->bytes, s->crc);

    gw_resp_simple(r, 200, "text/plain", msg, (size_t)n);
}

static void
sink_release(gw_req *r, void *ctx, int aborted)
{
    (void)r;
    if (aborted)
        counters.released_aborted++;
    else
        counters.released_ok++;
    sink_free(ctx);
}

static const gw_req_ops sink_ops = {sink_body, sink_end, NULL, sink_release};

static void
stream_fill(gw_req *r, void *ctx)
{
    sink *s = ctx;
    unsigned char buf[16384];

    while (s->stream_sent < s->stream_total && gw_resp_buffered(r) < 512 * 1024) {
        size_t n = sizeof(buf);
        if (s->stream_total - s->stream_sent < n)
            n = (size_t)(s->stream_total - s->stream_sent);
        for (size_t i = 0; i < n; i++)
            buf[i] = testsrv_pattern(s->stream_sent + i);
        gw_resp_write(r, buf, n);
        s->stream_sent += n;
    }
    if (s->stream_sent == s->stream_total)
        gw_resp_end(r); /* releases s */
}

static void
stream_end(gw_req *r, void *ctx)
{
    gw_resp_header(r, "Content-Type", "application/octet-stream");
    gw_resp_start(r, 200, -1);
    stream_fill(r, ctx);
}

static const gw_req_ops stream_ops = {NULL, stream_end, stream_fill, sink_release};

static void
route(gw_req *r, void *ud)
{
    const char *m = gw_req_method(r), *path = gw_req_path(r);
    sink *s;

    (void)ud;
    if (strcmp(path, "/hello") == 0 && (strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0)) {
        gw_resp_simple(r, 200, "text/plain", "hello", 5);
        return;
    }
    if (strcmp(path, "/deny") == 0) {
        gw_resp_simple(r, 403, "text/plain", "denied\n", 7);
        return;
    }
    if (strcmp(path, "/sink") == 0 && (strcmp(m, "PUT") == 0 || strcmp(m, "POST") == 0)) {
        s = calloc(1, sizeof(*s));
        if (!s) {
            gw_resp_simple(r, 500, NULL, "", 0);
            return;
        }
        s->r = r;
        s->pause_each = strstr(gw_req_query(r), "pause=1") != NULL;
        if (strstr(gw_req_query(r), "stall_ms="))
            s->stall_ms = atoi(strstr(gw_req_query(r), "stall_ms=") + 9);
        s->resume_ev = event_new(srv_base, -1, 0, resume_cb, s);
        gw_req_attach(r, &sink_ops, s);
        if (strstr(gw_req_query(r), "hold_ms=")) {
            int ms = atoi(strstr(gw_req_query(r), "hold_ms=") + 8);
            struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
            s->refuse = strstr(gw_req_query(r), "refuse=1") != NULL;
            s->hold_ev = event_new(srv_base, -1, 0, hold_cb, s);
            gw_req_pause(r);
            event_add(s->hold_ev, &tv);
        }
        return;
    }
    if (strcmp(path, "/stream") == 0 && strcmp(m, "GET") == 0) {
        const char *n = strstr(gw_req_query(r), "n=");
        s = calloc(1, sizeof(*s));
        if (!s) {
            gw_resp_simple(r, 500, NULL, "", 0);
            return;
        }
        s->r = r;
        s->stream_total = n ? strtoull(n + 2, NULL, 10) : 0;
        gw_req_attach(r, &stream_ops, s);
        return;
    }
    gw_resp_simple(r, 404, "text/plain", "not found\n", 10);
}

int
testsrv_start(struct event_base *base, const gw_http_limits *lim, const char *host, uint16_t port,
              uint16_t *bound, gw_http_server **out)
{
    gw_http_server *s;
    int rc;

    srv_base = base;
    rc = gw_http_server_new(base, lim, route, NULL, &s);
    if (rc == 0)
        rc = gw_http_server_listen(s, host, port, "test", bound);
    if (rc == 0)
        *out = s;
    return rc;
}
