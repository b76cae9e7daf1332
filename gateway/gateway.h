/*
 * gateway.h - the public API of the gateway module (prefix gw_): the
 * streaming HTTP/1.1 server that carries the S3 API, the admin API and the
 * health endpoints, and the daemon that puts them together (meridiand).
 *
 * The HTTP layer in one paragraph: one gw_http_server per listening socket
 * group, on a libevent event_base. Each connection parses requests with
 * llhttp as bytes arrive. When a request's head is complete the server calls
 * the route function, which either answers at once (gw_resp_simple) or
 * attaches gw_req_ops to receive the body in chunks and answer later, from
 * any callback on the same event loop. Bodies are never buffered whole: the
 * socket is read only while the handler keeps up, bounded by the read high
 * water mark, and a handler may pause the body (gw_req_pause) while it is
 * busy. Responses stream the same way: write while gw_resp_buffered() is
 * below the write low water mark, then wait for ops->writable.
 *
 * Threading: everything here runs on the server's event loop thread. No
 * function may be called from another thread, except
 * gw_http_server_stats_get and gw_http_server_conn_count (atomic reads).
 */
#ifndef MERIDIAN_GATEWAY_H
#define MERIDIAN_GATEWAY_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

struct event_base;
struct bufferevent;
struct tls_ctx;

typedef struct gw_http_server gw_http_server;
typedef struct gw_req gw_req;

/* Limits and timeouts. Zero fields take the defaults shown. */
typedef struct gw_http_limits {
    size_t max_url_bytes;    /* 8 KiB; longer request targets get 414 */
    size_t max_header_bytes; /* 32 KiB of names+values; more gets 431 */
    int max_headers;         /* 128 header lines; more gets 431 */
    int header_timeout_ms;   /* 30 s to receive a whole request head; 408 */
    int idle_timeout_ms;     /* 60 s keep-alive idle between requests */
    int body_timeout_ms;     /* 60 s without body bytes while reading one */
    int write_timeout_ms;    /* 60 s without the client reading our output */
    size_t read_high_water;  /* 256 KiB of unparsed input per connection */
    size_t write_low_water;  /* 256 KiB: ops->writable fires below this */
    int max_connections;     /* 4096; more are answered 503 and closed (counted
                                per server, or by the counter given to
                                gw_http_server_share_conn_count) */
} gw_http_limits;

/* Counters for /metrics. Monotonic except conns_open. */
typedef struct gw_http_stats {
    uint64_t conns_accepted;
    uint64_t conns_open;
    uint64_t requests;
    uint64_t bad_requests; /* malformed: 400 */
    uint64_t too_large;    /* 414 / 431 */
    uint64_t timeouts;     /* 408 or silent idle close */
    uint64_t aborted;      /* connection lost with a request in flight */
    uint64_t bytes_in;
    uint64_t bytes_out;
    uint64_t tls_handshakes; /* TLS connections whose handshake finished */
    uint64_t tls_failures;   /* ... whose handshake failed (closed) */
} gw_http_stats;

/* Called once per request when its head is complete. The route must either
 * answer (gw_resp_simple or gw_resp_start...gw_resp_end) or attach ops with
 * gw_req_attach before returning; a route that does neither gets a 500 sent
 * on its behalf. */
typedef void (*gw_route_fn)(gw_req *r, void *server_user_data);

/* Creates a server on base. limits may be NULL. route and user_data are kept.
 * Returns 0, or -ENOMEM. *out is owned by the caller: gw_http_server_free. */
int gw_http_server_new(struct event_base *base, const gw_http_limits *limits, gw_route_fn route,
                       void *user_data, gw_http_server **out);
/* Binds host:port (port 0 picks one) and starts accepting. name labels log
 * lines ("s3", "admin"). The bound port is stored in *bound_port if not NULL.
 * May be called several times to listen on several addresses. Returns 0 or a
 * negated errno (-EADDRINUSE ...). */
int gw_http_server_listen(gw_http_server *s, const char *host, uint16_t port, const char *name,
                          uint16_t *bound_port);
/* The same on a TLS listener: connections do the handshake with tls (borrowed;
 * it must outlive s) before any request is read. A failed handshake is
 * logged (http.tls.fail, with the reason) and counted, and closes only that
 * connection. */
int gw_http_server_listen_tls(gw_http_server *s, const char *host, uint16_t port, const char *name,
                              struct tls_ctx *tls, uint16_t *bound_port);
/* Serves an already connected bufferevent (takes ownership; it is freed with
 * the connection). Used by the fuzzer with a bufferevent pair. */
int gw_http_server_adopt(gw_http_server *s, struct bufferevent *bev, const char *peer);
/* Formats an error this layer answers by itself, before or instead of the
 * route (400 malformed, 408 slow head, 414 target too long, 431 headers too
 * large): appends extra header lines ("Name: value\r\n") to hdrs and the body
 * to body, and returns the Content-Type, or NULL for the default plain text.
 * ud is the server's user_data; req_id is the id of the request the error
 * ends (gw_req_id), 0 when none had begun. */
typedef const char *(*gw_http_error_fn)(void *ud, uint64_t req_id, int status, const char *why,
                                        mrd_buf *hdrs, mrd_buf *body);
/* Sets the error formatter (NULL: plain text). */
void gw_http_server_set_error_fn(gw_http_server *s, gw_http_error_fn fn);
/* Listeners bound after this (on) set SO_REUSEPORT: several servers, each
 * on its own loop thread, then share one address and the kernel spreads
 * the connections over them. Call before gw_http_server_listen. */
void gw_http_server_set_reuseport(gw_http_server *s, int on);
/* Request ids (gw_req_id) become first, first + step, first + 2 step ...:
 * servers sharing one address get first = 1..n and step = n, so ids stay
 * unique across them. Default 1, 1. */
void gw_http_server_set_req_ids(gw_http_server *s, uint64_t first, uint64_t step);
/* max_connections then applies to *open, a count of open connections every
 * server given the same counter keeps (atomically) with its own: several
 * loops' servers share one limit. NULL: this server's own count. Call
 * before gw_http_server_listen. */
void gw_http_server_share_conn_count(gw_http_server *s, int *open);
/* Stops listening; open connections finish their current request and close. */
void gw_http_server_stop_listening(gw_http_server *s);
/* Closes every connection (aborting requests in flight) and frees s. NULL ok. */
void gw_http_server_free(gw_http_server *s);
void gw_http_server_stats_get(const gw_http_server *s, gw_http_stats *out);
/* Number of open connections. */
int gw_http_server_conn_count(const gw_http_server *s);

/* ---- requests ----------------------------------------------------------- */

/* Accessors. Returned strings are owned by the request and valid until its
 * release callback (or, for requests without ops, until the route returns
 * after answering). */
const char *gw_req_method(const gw_req *r); /* "GET", "PUT", ... */
const char *gw_req_target(const gw_req *r); /* raw request target */
const char *gw_req_path(const gw_req *r);   /* target before '?', not decoded */
const char *gw_req_query(const gw_req *r);  /* after '?', "" if none */
/* First header with this name (case-insensitive), or NULL. */
const char *gw_req_header(const gw_req *r, const char *name);
int gw_req_header_count(const gw_req *r);
/* i-th header in arrival order; returns 0 or MRD_ENOTFOUND. */
int gw_req_header_at(const gw_req *r, int i, const char **name, const char **value);
/* Declared Content-Length, or -1 when chunked or absent. */
int64_t gw_req_content_length(const gw_req *r);
int gw_req_is_chunked(const gw_req *r);
/* 1 when the request carries a body (Content-Length > 0 or chunked). */
int gw_req_has_body(const gw_req *r);
const char *gw_req_peer(const gw_req *r); /* "ip:port" */
uint64_t gw_req_id(const gw_req *r);      /* unique per server (see gw_http_server_set_req_ids) */
/* Body bytes delivered to the handler so far. */
uint64_t gw_req_body_received(const gw_req *r);

/*
 * Handler callbacks for one request. All optional except release.
 *  body:     a chunk of the (de-chunked) body. Return 0, or a negative code to
 *            give up; the handler should answer first (e.g. 400), otherwise a
 *            500 is sent. The connection closes after an early answer.
 *  end:      the whole body has arrived (called even when there is none).
 *  writable: the output buffer drained below write_low_water.
 *  release:  called exactly once, last: after gw_resp_end (aborted = 0) or
 *            when the connection died first (aborted = 1). ctx must not be
 *            used by the server afterwards, and the handler must not touch r
 *            after release. Free ctx here (or later, if the handler still has
 *            work in flight).
 */
typedef struct gw_req_ops {
    int (*body)(gw_req *r, const char *data, size_t len, void *ctx);
    void (*end)(gw_req *r, void *ctx);
    void (*writable)(gw_req *r, void *ctx);
    void (*release)(gw_req *r, void *ctx, int aborted);
} gw_req_ops;

/* Attaches handler callbacks; only from the route function. If the client
 * sent "Expect: 100-continue" and ops has a body callback, "100 Continue" is
 * sent when the route returns, or when the handler resumes if it paused
 * first; an answer given before then replaces it (the body is not read). */
void gw_req_attach(gw_req *r, const gw_req_ops *ops, void *ctx);
/* Stops body delivery (and socket reads) until gw_req_resume. No body
 * callback runs between pause and resume. */
void gw_req_pause(gw_req *r);
void gw_req_resume(gw_req *r);

/* ---- responses ---------------------------------------------------------- */

/* Adds a response header; only before gw_resp_start. Returns 0 or MRD_EINVAL
 * (after start, or a name/value with CR/LF). */
int gw_resp_header(gw_req *r, const char *name, const char *value);
/* Sends the status line and headers. content_length < 0 means chunked
 * encoding. For HEAD the body is suppressed but Content-Length is sent. */
int gw_resp_start(gw_req *r, int status, int64_t content_length);
/* Queues body bytes (copied). Returns 0, MRD_EINVAL if not started or past
 * the declared length. Check gw_resp_buffered() for backpressure. */
int gw_resp_write(gw_req *r, const void *data, size_t len);
/* As gw_resp_write, but without the copy: the layer holds data until it has
 * been sent (or the connection is gone) and then calls done(data, len, arg)
 * on the loop thread. On 0, done is called exactly once (at once for HEAD or
 * an empty write); on an error it is not, and data stays the caller's. */
int gw_resp_write_ref(gw_req *r, const void *data, size_t len,
                      void (*done)(const void *data, size_t len, void *arg), void *arg);
/* Bytes queued for this connection but not yet sent. */
size_t gw_resp_buffered(const gw_req *r);
/* Completes the response; then release(ctx, 0) runs, synchronously. The
 * next pipelined request is parsed only after this. */
int gw_resp_end(gw_req *r);
/* Gives up on a response whose source failed after gw_resp_start: the
 * connection is closed without completing the body (a client sees an error,
 * never a short or falsely complete object). release(aborted = 1) runs
 * before it returns. */
void gw_resp_abort(gw_req *r);
/* start + write + end in one call, with Content-Type when not NULL. */
void gw_resp_simple(gw_req *r, int status, const char *content_type, const void *body, size_t len);
/* 1 once gw_resp_start has been called. */
int gw_resp_started(const gw_req *r);
/* Reason phrase for a status code ("Not Found"). */
const char *gw_http_status_text(int status);

#endif /* MERIDIAN_GATEWAY_H */
