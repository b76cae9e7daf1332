/*
 * ctl_http.c - the CLI's HTTP/1.1 client for the admin API.
 *
 * Admin responses are small JSON documents, so a blocking client that sends
 * "Connection: close" and reads to EOF is all the CLI needs: no event loop,
 * no third-party HTTP library. It understands Content-Length and chunked
 * bodies, enforces a timeout on connect and on every read (poll), and caps
 * the body at 64 MiB so a confused endpoint cannot exhaust memory.
 */
#include "ctl.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_RESPONSE (64u * 1024 * 1024)

static int
connect_to(const ctl_opts *o, char *err, size_t errsz)
{
    struct addrinfo hints = {0}, *res = NULL, *ai;
    char port[8];
    int fd = -1, rc;

    hints.ai_socktype = SOCK_STREAM;
    snprintf(port, sizeof(port), "%u", o->port);
    rc = getaddrinfo(o->host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errsz, "cannot resolve %s: %s", o->host, gai_strerror(rc));
        return -EHOSTUNREACH;
    }
    rc = -ECONNREFUSED;
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        rc = -errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(err, errsz,
                 "cannot reach the admin API at %s:%u: %s (is meridiand running? "
                 "check --endpoint)",
                 o->host, o->port, mrd_strerror(rc));
        return rc;
    }
    return fd;
}

static int
read_all(int fd, int timeout_ms, mrd_buf *raw, char *err, size_t errsz)
{
    char chunk[65536];

    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        int pr = poll(&p, 1, timeout_ms);
        ssize_t n;
        if (pr == 0) {
            snprintf(err, errsz, "timed out after %d ms waiting for the admin API", timeout_ms);
            return -ETIMEDOUT;
        }
        if (pr < 0 && errno == EINTR)
            continue;
        n = read(fd, chunk, sizeof(chunk));
        if (n == 0)
            return 0;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            snprintf(err, errsz, "read from admin API failed: %s", strerror(errno));
            return -errno;
        }
        if (raw->len + (size_t)n > MAX_RESPONSE) {
            snprintf(err, errsz, "admin API response larger than 64 MiB");
            return MRD_ETOOBIG;
        }
        mrd_buf_append(raw, chunk, (size_t)n);
    }
}

/* Decodes a chunked body in place into out. */
static int
dechunk(const char *p, const char *end, mrd_buf *out)
{
    while (p < end) {
        char *e;
        unsigned long sz = strtoul(p, &e, 16);
        const char *crlf = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (!crlf || e == p)
            return MRD_EPROTO;
        p = crlf + 2;
        if (sz == 0)
            return 0;
        if ((size_t)(end - p) < sz + 2)
            return MRD_EPROTO;
        mrd_buf_append(out, p, sz);
        p += sz + 2;
    }
    return MRD_EPROTO;
}

int
ctl_http_request(const ctl_opts *o, const char *method, const char *path, const char *body,
                 ctl_response *out, char *err, size_t errsz)
{
    mrd_buf req = {0}, raw = {0};
    const char *hdr_end, *p;
    int fd, rc = 0, status = 0, chunked = 0;
    long long clen = -1;
    size_t off = 0;

    fd = connect_to(o, err, errsz);
    if (fd < 0)
        return fd;
    mrd_buf_appendf(&req,
                    "%s %s HTTP/1.1\r\nHost: %s:%u\r\nUser-Agent: meridianctl/" MRD_VERSION
                    "\r\nAccept: application/json\r\nConnection: close\r\n",
                    method, path, o->host, o->port);
    if (o->token[0])
        mrd_buf_appendf(&req, "Authorization: Bearer %s\r\n", o->token);
    if (body)
        mrd_buf_appendf(&req, "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                        strlen(body), body);
    else
        mrd_buf_appendf(&req, "\r\n");
    while (off < req.len) {
        ssize_t n = send(fd, req.data + off, req.len - off, MSG_NOSIGNAL);
        if (n <= 0) {
            rc = -errno;
            snprintf(err, errsz, "send to admin API failed: %s", strerror(errno));
            goto out;
        }
        off += (size_t)n;
    }
    rc = read_all(fd, o->timeout_ms, &raw, err, errsz);
    if (rc != 0)
        goto out;
    hdr_end = raw.data ? memmem(raw.data, raw.len, "\r\n\r\n", 4) : NULL;
    if (!hdr_end || sscanf(raw.data, "HTTP/1.%*d %d", &status) != 1) {
        snprintf(err, errsz, "the endpoint at %s:%u did not answer HTTP (is it the admin port?)",
                 o->host, o->port);
        rc = MRD_EPROTO;
        goto out;
    }
    for (p = strstr(raw.data, "\r\n") + 2; p < hdr_end; p = strstr(p, "\r\n") + 2) {
        if (strncasecmp(p, "Content-Length:", 15) == 0)
            clen = atoll(p + 15);
        else if (strncasecmp(p, "Transfer-Encoding:", 18) == 0 && strstr(p, "chunked") &&
                 strstr(p, "chunked") < strstr(p, "\r\n"))
            chunked = 1;
    }
    memset(out, 0, sizeof(*out));
    out->status = status;
    p = hdr_end + 4;
    if (chunked) {
        rc = dechunk(p, raw.data + raw.len, &out->body);
        if (rc != 0) {
            snprintf(err, errsz, "malformed chunked response from the admin API");
            mrd_buf_free(&out->body);
        }
    } else {
        size_t avail = (size_t)(raw.data + raw.len - p);
        if (clen >= 0 && (size_t)clen < avail)
            avail = (size_t)clen;
        mrd_buf_append(&out->body, p, avail);
    }
out:
    close(fd);
    mrd_buf_free(&req);
    mrd_buf_free(&raw);
    return rc;
}

/* The exit status of the last failed ctl_request_json (see ctl.h). */
static int failure_exit = 1;

int
ctl_failure_exit(void)
{
    return failure_exit;
}

int
ctl_call(const ctl_opts *o, const char *method, const char *path, ctl_response *resp,
         mrd_json **out, char *err, size_t errsz)
{
    size_t pos = 0;
    int rc = ctl_http_request(o, method, path, NULL, resp, err, errsz);

    *out = NULL;
    if (rc != 0)
        return -2; /* unreachable, timed out: a wrong endpoint */
    if (mrd_json_parse(resp->body.data ? resp->body.data : "", resp->body.len, out, &pos) != 0) {
        snprintf(err, errsz,
                 "the endpoint %s:%u answered %d with a body that is not JSON (is it the admin "
                 "port?)",
                 o->host, o->port, resp->status);
        *out = NULL;
        return -2;
    }
    if (resp->status != 200) {
        const char *code = mrd_json_get_str(*out, "error", "error");
        snprintf(err, errsz, "%s (HTTP %d): %s", code, resp->status,
                 mrd_json_get_str(*out, "message", "no details"));
        /* bad credentials, a name the site does not know, a bad argument */
        rc = resp->status == 401 || resp->status == 400 ||
                     (resp->status == 404 && strncmp(code, "NoSuch", 6) == 0)
                 ? -2
                 : -1;
        mrd_json_free(*out);
        *out = NULL;
        return rc;
    }
    return 0;
}

int
ctl_request_json(const ctl_opts *o, const char *method, const char *path, ctl_response *resp,
                 mrd_json **out)
{
    char err[512];
    int rc = ctl_call(o, method, path, resp, out, err, sizeof(err));

    if (rc != 0) {
        fprintf(stderr, "meridianctl: %s\n", err);
        failure_exit = rc == -2 ? 2 : 1;
    }
    return rc;
}

void
ctl_url_encode(mrd_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";

    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~')
            mrd_buf_append(b, s, 1);
        else
            mrd_buf_appendf(b, "%%%c%c", hex[c >> 4], hex[c & 15]);
    }
    mrd_buf_append(b, "", 0);
}

void
ctl_print_body(const ctl_response *resp)
{
    fwrite(resp->body.data, 1, resp->body.len, stdout);
    fputc('\n', stdout);
}

const char *
ctl_human_bytes(uint64_t v, char *out, size_t outsz)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double d = (double)v;
    int u = 0;

    while (d >= 1024 && u < 5) {
        d /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(out, outsz, "%llu B", (unsigned long long)v);
    else
        snprintf(out, outsz, "%.1f %s", d, units[u]);
    return out;
}

const char *
ctl_human_duration(double s, char *out, size_t outsz)
{
    unsigned long long t = (unsigned long long)s;

    if (t >= 86400)
        snprintf(out, outsz, "%llud%lluh", t / 86400, (t % 86400) / 3600);
    else if (t >= 3600)
        snprintf(out, outsz, "%lluh%llum", t / 3600, (t % 3600) / 60);
    else if (t >= 60)
        snprintf(out, outsz, "%llum%llus", t / 60, t % 60);
    else
        snprintf(out, outsz, "%.0fs", s);
    return out;
}
