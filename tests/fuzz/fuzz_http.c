/*
 * fuzz_http.c - libFuzzer target for the gateway's HTTP/1.1 request layer.
 *
 * The input is fed, in two writes split at a data-dependent point, into one
 * end of a libevent bufferevent pair whose other end is adopted by a real
 * gw_http_server, so the whole connection state machine runs: llhttp, the
 * header limits, chunked decoding, pipelining, pause/resume of bodies and
 * error answers. The route answers GETs at once and streams other bodies into
 * a handler that pauses on every other chunk and resumes from a zero-delay
 * timer. Errors this layer answers itself go through the S3 port's formatter
 * (gw_s3_http_error) when the first input byte is odd. The loop runs until
 * idle. Crashes, leaks (ASan) and undefined
 * behaviour (UBSan) are the findings.
 */
#include "gateway.h"
#include "gw_int.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

static struct event_base *base;

typedef struct fz {
    gw_req *r;
    struct event *resume;
    int n;
} fz;

static void
resume_cb(evutil_socket_t fd, short w, void *arg)
{
    fz *f = arg;

    (void)fd;
    (void)w;
    gw_req_resume(f->r);
}

static int
fz_body(gw_req *r, const char *d, size_t n, void *ctx)
{
    fz *f = ctx;
    struct timeval zero = {0, 0};

    (void)d;
    (void)n;
    if (++f->n % 2 == 0) {
        gw_req_pause(r);
        event_add(f->resume, &zero);
    }
    return 0;
}

static void
fz_end(gw_req *r, void *ctx)
{
    (void)ctx;
    gw_resp_header(r, "X-Test", "1");
    gw_resp_start(r, 200, -1);
    gw_resp_write(r, "ok", 2);
    gw_resp_end(r);
}

static void
fz_release(gw_req *r, void *ctx, int aborted)
{
    fz *f = ctx;

    (void)r;
    (void)aborted;
    event_free(f->resume);
    free(f);
}

static const gw_req_ops ops = {fz_body, fz_end, NULL, fz_release};

static void
route(gw_req *r, void *ud)
{
    fz *f;

    (void)ud;
    if (strcmp(gw_req_method(r), "GET") == 0) {
        gw_req_header(r, "host");
        gw_resp_simple(r, 200, "text/plain", gw_req_path(r), strlen(gw_req_path(r)));
        return;
    }
    f = calloc(1, sizeof(*f));
    f->r = r;
    f->resume = event_new(base, -1, 0, resume_cb, f);
    gw_req_attach(r, &ops, f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct bufferevent *pair[2];
    gw_http_server *s;
    size_t split = size ? data[0] % (size + 1) : 0;

    if (!base) {
        mrd_log_setup(MRD_LOG_OFF, "fuzz");
        base = event_base_new();
    }
    gw_http_server_new(base, NULL, route, NULL, &s);
    if (size && (data[0] & 1))
        gw_http_server_set_error_fn(s, gw_s3_http_error);
    bufferevent_pair_new(base, 0, pair);
    gw_http_server_adopt(s, pair[0], "fuzz");
    bufferevent_enable(pair[1], EV_READ | EV_WRITE);
    bufferevent_write(pair[1], data, split);
    event_base_loop(base, EVLOOP_NONBLOCK);
    bufferevent_write(pair[1], data + split, size - split);
    for (int i = 0; i < 64; i++) {
        evbuffer_drain(bufferevent_get_input(pair[1]), (size_t)-1);
        event_base_loop(base, EVLOOP_NONBLOCK);
    }
    bufferevent_free(pair[1]);
    event_base_loop(base, EVLOOP_NONBLOCK);
    gw_http_server_free(s);
    event_base_loop(base, EVLOOP_NONBLOCK);
    return 0;
}
