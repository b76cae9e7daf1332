/*
 * http_test.c - the gateway HTTP layer over real loopback sockets: the server
 * runs on its own thread and event loop, the test is a blocking client.
 * Covers keep-alive, pipelining order, HEAD, Content-Length and chunked
 * bodies, pause/resume backpressure, Expect: 100-continue (granted and
 * refused), chunked responses driven by ops->writable, malformed input (400),
 * oversized targets and headers (414/431), bad chunk sizes, the head timeout
 * (408), HTTP/1.0 and aborted uploads. Each error case also checks that the
 * server keeps serving new connections.
 */
#include "common.h"
#include "http_testsrv.h"
#include "test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <isa-l.h>

static struct event_base *base;
static gw_http_server *srv, *srv_slow;
static uint16_t port, port_slow;
static pthread_t thr;

static void *
loop_main(void *arg)
{
    (void)arg;
    event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

typedef struct client {
    int fd;
    char buf[1 << 16];
    size_t len;
} client;

typedef struct resp {
    int status;
    char headers[8192];
    mrd_buf body;
} resp;

static int
cli_open(client *c, uint16_t p)
{
    struct sockaddr_in sa = {0};
    struct timeval tv = {15, 0}; /* generous: ASan and parallel tests slow the server */
    int one = 1;

    memset(c, 0, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(p);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return connect(c->fd, (struct sockaddr *)&sa, sizeof(sa));
}

static int
cli_send(client *c, const void *data, size_t len)
{
    const char *p = data;

    while (len > 0) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int
cli_sends(client *c, const char *s)
{
    return cli_send(c, s, strlen(s));
}

/* Reads more into the buffer; returns bytes read, 0 on EOF, -1 on error. */
static ssize_t
cli_fill(client *c)
{
    ssize_t n;

    if (c->len == sizeof(c->buf))
        return -1;
    n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
    if (n > 0)
        c->len += (size_t)n;
    return n;
}

static void
cli_consume(client *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

/* Reads up to and including CRLF; returns line length without CRLF or -1. */
static int
cli_line(client *c, char *out, size_t outsz)
{
    for (;;) {
        char *crlf = memmem(c->buf, c->len, "\r\n", 2);
        if (crlf) {
            size_t n = (size_t)(crlf - c->buf);
            if (n >= outsz)
                return -1;
            memcpy(out, c->buf, n);
            out[n] = '\0';
            cli_consume(c, n + 2);
            return (int)n;
        }
        if (cli_fill(c) <= 0)
            return -1;
    }
}

static int
cli_bytes(client *c, size_t n, mrd_buf *out)
{
    while (n > 0) {
        size_t take;
        if (c->len == 0 && cli_fill(c) <= 0)
            return -1;
        take = c->len < n ? c->len : n;
        if (out)
            mrd_buf_append(out, c->buf, take);
        cli_consume(c, take);
        n -= take;
    }
    return 0;
}

/* Reads one response (skipping interim 1xx unless want_interim). */
static int
cli_response(client *c, resp *r, int is_head)
{
    char line[8192];
    long long clen = -1;
    int chunked = 0;

    memset(r, 0, sizeof(*r));
    for (;;) {
        if (cli_line(c, line, sizeof(line)) < 0)
            return -1;
        if (sscanf(line, "HTTP/1.%*d %d", &r->status) != 1)
            return -1;
        r->headers[0] = '\0';
        for (;;) {
            int n = cli_line(c, line, sizeof(line));
            if (n < 0)
                return -1;
            if (n == 0)
                break;
            if (strlen(r->headers) + (size_t)n + 2 < sizeof(r->headers)) {
                strcat(r->headers, line);
                strcat(r->headers, "\n");
            }
            if (strncasecmp(line, "Content-Length:", 15) == 0)
                clen = atoll(line + 15);
            if (strncasecmp(line, "Transfer-Encoding: chunked", 26) == 0)
                chunked = 1;
        }
        if (r->status >= 200)
            break;
    }
    mrd_buf_append(&r->body, "", 0);
    if (is_head)
        return 0;
    if (chunked) {
        for (;;) {
            unsigned long sz;
            if (cli_line(c, line, sizeof(line)) < 0)
                return -1;
            sz = strtoul(line, NULL, 16);
            if (sz == 0) {
                cli_line(c, line, sizeof(line));
                return 0;
            }
            if (cli_bytes(c, sz, &r->body) != 0 || cli_line(c, line, sizeof(line)) != 0)
                return -1;
        }
    }
    if (clen > 0)
        return cli_bytes(c, (size_t)clen, &r->body);
    return 0;
}

/* 1 if the server closed the connection (EOF) within the receive timeout. */
static int
cli_closed(client *c)
{
    char tmp[256];
    ssize_t n;

    if (c->len)
        return 0;
    n = recv(c->fd, tmp, sizeof(tmp), 0);
    return n == 0 || (n < 0 && errno == ECONNRESET);
}

static void
cli_close(client *c)
{
    close(c->fd);
}

static void
resp_free(resp *r)
{
    mrd_buf_free(&r->body);
}

/* ------------------------------------------------------------------ tests */

static void
test_keepalive_pipelining_head(void)
{
    client c;
    resp r;

    REQUIRE(cli_open(&c, port) == 0);
    cli_sends(&c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
                  "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
                  "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    REQUIRE(cli_response(&c, &r, 0) == 0);
    CHECK_EQ_INT(r.status, 200);
    CHECK_STR(r.body.data, "hello");
    resp_free(&r);
    REQUIRE(cli_response(&c, &r, 0) == 0);
    CHECK_EQ_INT(r.status, 404); /* responses come back in request order */
    resp_free(&r);
    REQUIRE(cli_response(&c, &r, 0) == 0);
    CHECK_EQ_INT(r.status, 200);
    resp_free(&r);
    /* HEAD: Content-Length but no body; the next response must parse cleanly */
    cli_sends(&c, "HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    REQUIRE(cli_response(&c, &r, 1) == 0);
    CHECK_EQ_INT(r.status, 200);
    CHECK(strstr(r.headers, "Content-Length: 5") != NULL);
    resp_free(&r);
    REQUIRE(cli_response(&c, &r, 0) == 0);
    CHECK_STR(r.body.data, "hello");
    resp_free(&r);
    cli_close(&c);
}

static void
expect_sink(client *c, const void *body, size_t len, const char *query, int chunk)
{
    char hdr[256], want[96];
    resp r;

    if (chunk > 0) {
        snprintf(hdr, sizeof(hdr),
                 "PUT /sink%s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", query);
        cli_sends(c, hdr);
        for (size_t off = 0; off < len;) {
            size_t n = (size_t)chunk + (off % 3); /* uneven chunk sizes */
            if (n > len - off)
                n = len - off;
            snprintf(hdr, sizeof(hdr), "%zx;ext=1\r\n", n);
            cli_sends(c, hdr);
            cli_send(c, (const char *)body + off, n);
            cli_sends(c, "\r\n");
            off += n;
        }
        cli_sends(c, "0\r\n\r\n");
    } else {
        snprintf(hdr, sizeof(hdr), "PUT /sink%s HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n",
                 query, len);
        cli_sends(c, hdr);
        cli_send(c, body, len);
    }
    snprintf(want, sizeof(want), "bytes=%zu crc32=%08x\n", len, crc32_gzip_refl(0, body, len));
    if (cli_response(c, &r, 0) != 0)
        fprintf(stderr, "  no response: len=%zu query='%s' chunk=%d\n", len, query, chunk);
    REQUIRE(r.status != 0);
    CHECK_EQ_INT(r.status, 200);
    CHECK_STR(r.body.data, want);
    resp_free(&r);
}

static unsigned char *
random_body(size_t len)
{
    unsigned char *b = malloc(len);
    uint64_t x = 88172645463325252ull;

    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b[i] = (unsigned char)x;
    }
    return b;
}

static void
test_bodies(void)
{
    client c;
    size_t len = 3 * 1024 * 1024 + 17;
    unsigned char *body = random_body(len);

    REQUIRE(cli_open(&c, port) == 0);
    expect_sink(&c, body, len, "", 0);         /* Content-Length */
    expect_sink(&c, body, len, "", 100000);    /* chunked, uneven chunks */
    expect_sink(&c, body, 0, "", 0);           /* empty body */
    expect_sink(&c, body, len, "?pause=1", 0); /* handler pauses every chunk */
    expect_sink(&c, body, len, "?pause=1", 7000);
    /* paused delivery never hands a handler more than one parser slice */
    CHECK(testsrv_counters_get()->max_held_bytes <= 64 * 1024);
    cli_close(&c);
    free(body);
}

/* 1 when nothing arrives from the server for ms milliseconds. */
static int
cli_quiet(client *c, int ms)
{
    struct pollfd pfd = {c->fd, POLLIN, 0};

    return c->len == 0 && poll(&pfd, 1, ms) == 0;
}

static void
test_expect_continue(void)
{
    client c;
    resp r;
    char line[256];

    REQUIRE(cli_open(&c, port) == 0);
    cli_sends(&c,
              "PUT /sink HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    /* the interim response must arrive before we send any body byte */
    REQUIRE(cli_line(&c, line, sizeof(line)) > 0);
    CHECK_STR(line, "HTTP/1.1 100 Continue");
    REQUIRE(cli_line(&c, line, sizeof(line)) == 0);
    cli_sends(&c, "abcde");
    REQUIRE(cli_response(&c, &r, 0) == 0);
    CHECK_EQ_INT(r.status, 200);
    CHECK(strncmp(r.body.data, "bytes=5 ", 8) == 0);
    resp_free(&r);
    /* refused before the body: no 100, a final answer, and the connection closes */
    cli_sends(
        &c, "PUT /deny HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n");
    REQUIRE(cli_response(&c, &r, 0) == 0);
    CHECK_EQ_INT(r.status, 403);
    CHECK(strstr(r.headers, "Connection: close") != NULL);
    resp_free(&r);
    CHECK(cli_closed(&c));
    cli_close(&c);

    /* a handler that pauses before the body (a PUT checking its bucket):
     * 100 Continue only once it resumes */
    REQUIRE(cli_open(&c, port) == 0);
    cli_sends(&c, "PUT /sink?hold_ms=400 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                  "Expect: 100-continue\r\n\r\n");
    CHECK(cli_quiet(&c, 150));
    REQUIRE(cli_line(&c, line, sizeof(line)) > 0);
    CHECK_STR(line, "HTTP/1.1 100 Continue");
    REQUIRE(cli_line(&c, line, sizeof(line)) == 0);
    cli_sends(&c, "abcde");
    REQUIRE(cli_response(&c, &r, 0) == 0);
    CHECK_EQ_INT(r.status, 200);
    CHECK(strstr(r.headers, "Connection: close") == NULL);
    resp_free(&r);
    /* ... and refusing while paused sends no 100 at all, then closes, even
     * for an empty body */
    for (int len = 0; len <= 100; len += 100) {
        char head[160];
        if (len) {
            cli_close(&c);
            REQUIRE(cli_open(&c, port) == 0);
        }
        snprintf(head, sizeof(head),
                 "PUT /sink?hold_ms=200&refuse=1 HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
                 "Expect: 100-continue\r\n\r\n",
                 len);
        cli_sends(&c, head);
        REQUIRE(cli_response(&c, &r, 0) == 0);
        CHECK_EQ_INT(r.status, 403);
        CHECK(strstr(r.headers, "Connection: close") != NULL);
        resp_free(&r);
        CHECK(cli_closed(&c));
    }
    cli_close(&c);
}

static void
still_serving(void)
{
    client c;
    resp r;

    REQUIRE(cli_open(&c, port) == 0);
    cli_sends(&c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    REQUIRE(cli_response(&c, &r, 0) == 0);
    CHECK_EQ_INT(r.status, 200);
    resp_free(&r);
    cli_close(&c);
}

static void
expect_error(const char *raw, size_t rawlen, int status)
{
    client c;
    resp r;

    REQUIRE(cli_open(&c, port) == 0);
    cli_send(&c, raw, rawlen);
    if (cli_response(&c, &r, 0) != 0) {
        fprintf(stderr, "  no response for %.40s...\n", raw);
        test__failed = 1;
    } else {
        if (r.status != status)
            fprintf(stderr, "  for %.60s: got %d want %d\n", raw, r.status, status);
        CHECK_EQ_INT(r.status, status);
        CHECK(strstr(r.headers, "Connection: close") != NULL);
    }
    resp_free(&r);
    CHECK(cli_closed(&c));
    cli_close(&c);
    still_serving();
}

static void
test_malformed(void)
{
    static const char nul_hdr[] = "GET /hello HTTP/1.1\r\nHost: x\0y\r\n\r\n";
    mrd_buf big = {0};

    expect_error("GARBAGE\r\n\r\n", 11, 400);
    expect_error("GET /hello HTTP/9.9\r\n\r\n", 23, 400);
    expect_error(nul_hdr, sizeof(nul_hdr) - 1, 400);
    /* CL + TE together is the request-smuggling shape: refuse it */
    expect_error(
        "PUT /sink HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        75, 400);
    expect_error("PUT /sink HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\nabc\r\n", 61, 400);
    expect_error(
        "PUT /sink HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffffff\r\n", 74,
        400);
    expect_error("PUT /sink HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 43, 400);

    /* oversized: target 414, one huge header 431, too many headers 431 */
    mrd_buf_appendf(&big, "GET /");
    for (int i = 0; i < 9000; i++)
        mrd_buf_append(&big, "a", 1);
    mrd_buf_appendf(&big, " HTTP/1.1\r\n\r\n");
    expect_error(big.data, big.len, 414);
    mrd_buf_reset(&big);
    mrd_buf_appendf(&big, "GET /hello HTTP/1.1\r\nX-Big: ");
    for (int i = 0; i < 40000; i++)
        mrd_buf_append(&big, "b", 1);
    mrd_buf_appendf(&big, "\r\n\r\n");
    expect_error(big.data, big.len, 431);
    mrd_buf_reset(&big);
    mrd_buf_appendf(&big, "GET /hello HTTP/1.1\r\n");
    for (int i = 0; i < 200; i++)
        mrd_buf_appendf(&big, "X-H%d: v\r\n", i);
    mrd_buf_appendf(&big, "\r\n");
    expect_error(big.data, big.len, 431);
    mrd_buf_free(&big);
}

static void
test_chunked_response(void)
{
    client c;
    resp r;
    size_t n = 5 * 1024 * 1024 + 3;
    int ok = 1;

    REQUIRE(cli_open(&c, port) == 0);
    cli_sends(&c, "GET /stream?n=5242883 HTTP/1.1\r\nHost: x\r\n\r\n");
    REQUIRE(cli_response(&c, &r, 0) == 0);
    CHECK_EQ_INT(r.status, 200);
    CHECK(strstr(r.headers, "Transfer-Encoding: chunked") != NULL);
    CHECK_EQ_INT(r.body.len, n);
    for (size_t i = 0; i < r.body.len && ok; i++)
        ok = (unsigned char)r.body.data[i] == testsrv_pattern(i);
    CHECK(ok);
    resp_free(&r);
    /* the connection is still usable afterwards */
    cli_sends(&c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    REQUIRE(cli_response(&c, &r, 0) == 0);
    CHECK_EQ_INT(r.status, 200);
    resp_free(&r);
    cli_close(&c);
}

static void
test_head_timeout(void)
{
    client c;
    resp r;

    REQUIRE(cli_open(&c, port_slow) == 0);
    cli_sends(&c, "GET /hello HTTP/1.1\r\nHo");
    usleep(300 * 1000);
    cli_sends(&c, "st: x\r\n"); /* trickling keeps the socket busy, not the head complete */
    REQUIRE(cli_response(&c, &r, 0) == 0);
    CHECK_EQ_INT(r.status, 408);
    resp_free(&r);
    CHECK(cli_closed(&c));
    cli_close(&c);
}

static void
test_http10_and_abort(void)
{
    client c;
    resp r;
    int before = testsrv_counters_get()->released_aborted;
    char junk[1000] = {0};

    REQUIRE(cli_open(&c, port) == 0);
    cli_sends(&c, "GET /hello HTTP/1.0\r\n\r\n");
    REQUIRE(cli_response(&c, &r, 0) == 0);
    CHECK_EQ_INT(r.status, 200);
    resp_free(&r);
    CHECK(cli_closed(&c));
    cli_close(&c);

    /* an upload cut off halfway releases the handler with aborted = 1 */
    REQUIRE(cli_open(&c, port) == 0);
    cli_sends(&c, "PUT /sink HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n");
    cli_send(&c, junk, sizeof(junk));
    usleep(100 * 1000);
    cli_close(&c);
    for (int i = 0; i < 50 && testsrv_counters_get()->released_aborted == before; i++)
        usleep(20 * 1000);
    CHECK_EQ_INT(testsrv_counters_get()->released_aborted, before + 1);
    still_serving();
}

static const test_case cases[] = {TEST(test_keepalive_pipelining_head), TEST(test_bodies),
                                  TEST(test_expect_continue),           TEST(test_malformed),
                                  TEST(test_chunked_response),          TEST(test_head_timeout),
                                  TEST(test_http10_and_abort),          {NULL, NULL}};

int
main(int argc, char **argv)
{
    gw_http_limits slow = {0};
    int rc;

    evthread_use_pthreads();
    mrd_log_setup(MRD_LOG_WARN, "test");
    base = event_base_new();
    slow.header_timeout_ms = 200;
    /* a second server with a 200 ms head timeout for the 408 test */
    if (testsrv_start(base, NULL, "127.0.0.1", 0, &port, &srv) != 0 ||
        testsrv_start(base, &slow, "127.0.0.1", 0, &port_slow, &srv_slow) != 0) {
        fprintf(stderr, "cannot start test servers\n");
        return 1;
    }
    pthread_create(&thr, NULL, loop_main, NULL);
    rc = test_run_all(cases, argc, argv);
    event_base_loopbreak(base);
    pthread_join(thr, NULL);
    gw_http_server_free(srv);
    gw_http_server_free(srv_slow);
    event_base_free(base);
    return rc;
}
