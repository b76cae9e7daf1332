/*
 * wanem_ctl.c - the control channel: a line protocol over TCP or a unix
 * socket, so tests change links while traffic flows.
 *
 * Protocol. The client sends one command per line (LF or CRLF, at most
 * WANEM_CTL_LINE_MAX bytes). wanem answers every line, in order, with exactly
 * one line: "ok" followed by space-separated key=value fields, or "err "
 * followed by a sentence saying what was wrong and what to do. Values never
 * contain spaces, so a client splits on spaces and then on the first '='.
 * A line that is too long gets one "err" reply; the rest of it, up to the
 * next newline, is discarded, and the connection stays usable. Commands
 * and their replies are listed in README.md next to this file; `help`
 * lists them too.
 *
 * A command runs to completion on the event loop before the reply is
 * queued, so when a client has read "ok" for `partition`, no byte of that
 * link is read or written by wanem any more, and after "ok" for `reset` the
 * RSTs have been sent. Any number of control clients may be connected; they
 * share the same links.
 */
#include "wanem_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/queue.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>

#define WANEM_CTL_LINE_MAX 4096
#define WANEM_CTL_OUT_MAX  (1024 * 1024)
#define WANEM_CTL_ARGS_MAX 16

typedef struct wanem_ctl_client wanem_ctl_client;
struct wanem_ctl_client {
    struct bufferevent *bev;
    int discarding; /* inside an over-long line */
    int quitting;
    TAILQ_ENTRY(wanem_ctl_client) entry;
};

static struct {
    struct event_base *base;
    struct evconnlistener *lev;
    char unix_path[108];
    TAILQ_HEAD(, wanem_ctl_client) clients;
} ctl = {.clients = TAILQ_HEAD_INITIALIZER(ctl.clients)};

static const char ctl_help[] =
    "ok commands: ping | list | link add NAME LISTEN TARGET [SETTING...] | link del NAME | "
    "set NAME SETTING... | partition NAME [dir=ab|ba|both] | heal NAME [dir=ab|ba|both] | "
    "reset NAME | stats NAME | quit; settings: delay=MS jitter=MS rate=BYTES_PER_S "
    "burst=BYTES qmax=BYTES corrupt=BYTES|off dir=ab|ba|both";

static const char *
dirs_name(int ab, int ba)
{
    return ab && ba ? "both" : ab ? "ab" : ba ? "ba" : "none";
}

static int reply_err(mrd_buf *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int
reply_err(mrd_buf *out, const char *fmt, ...)
{
    va_list ap;

    mrd_buf_reset(out);
    mrd_buf_append(out, "err ", 4);
    va_start(ap, fmt);
    mrd_buf_vappendf(out, fmt, ap);
    va_end(ap);
    return 0;
}

static void
list_one(const char *name, void *user_data)
{
    mrd_buf *out = user_data;

    if (out->data[out->len - 1] != '=')
        mrd_buf_append(out, ",", 1);
    mrd_buf_append(out, name, strlen(name));
}

static void
format_stats(const wanem_link_info *in, mrd_buf *out)
{
    static const char *const dn[2] = {"ab", "ba"};

    mrd_buf_appendf(out,
                    "ok link=%s listen=%s target=%s conns=%llu conns_total=%llu waiting=%llu "
                    "resets=%llu connect_failures=%llu",
                    in->name, in->listen, in->target, (unsigned long long)in->conns,
                    (unsigned long long)in->conns_total, (unsigned long long)in->waiting,
                    (unsigned long long)in->resets, (unsigned long long)in->connect_failures);
    for (int d = 0; d < 2; d++) {
        const wanem_dir_conf *c = &in->dir[d];
        const wanem_dir_stats *s = &in->stats[d];

        mrd_buf_appendf(out,
                        " %s.delay_ms=%g %s.jitter_ms=%g %s.rate=%llu %s.burst=%llu %s.qmax=%llu "
                        "%s.partitioned=%d %s.bytes_in=%llu %s.bytes_out=%llu %s.queued=%llu "
                        "%s.corrupt_in=%lld %s.corrupted=%llu",
                        dn[d], (double)c->delay_ns / 1e6, dn[d], (double)c->jitter_ns / 1e6, dn[d],
                        (unsigned long long)c->rate, dn[d], (unsigned long long)c->burst, dn[d],
                        (unsigned long long)c->qmax, dn[d], c->partitioned, dn[d],
                        (unsigned long long)s->bytes_in, dn[d], (unsigned long long)s->bytes_out,
                        dn[d], (unsigned long long)s->queued, dn[d], (long long)c->corrupt_in,
                        dn[d], (unsigned long long)s->corrupted);
    }
}

static int
parse_settings(char **argv, int argc, wanem_set *s, int dir_only, mrd_buf *out)
{
    char err[256];

    memset(s, 0, sizeof(*s));
    s->dirs = WANEM_DIR_BOTH;
    for (int i = 0; i < argc; i++) {
        if (dir_only && strncmp(argv[i], "dir=", 4) != 0) {
            reply_err(out, "unexpected argument '%s': only dir=ab|ba|both is allowed here",
                      argv[i]);
            return MRD_EINVAL;
        }
        if (wanem__set_parse_kv(s, argv[i], err, sizeof(err)) != 0) {
            reply_err(out, "%s", err);
            return MRD_EINVAL;
        }
    }
    return 0;
}

static int
no_link(mrd_buf *out, const char *name)
{
    return reply_err(out, "no link named '%s'; 'list' shows the links", name);
}

int
wanem__ctl_exec(char *line, mrd_buf *out)
{
    char *argv[WANEM_CTL_ARGS_MAX + 1];
    int argc = 0;
    char *save = NULL, *tok;
    const char *cmd;
    wanem_set set;
    wanem_link_info info;
    char err[512];

    mrd_buf_reset(out);
    for (tok = strtok_r(line, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
        if (argc == WANEM_CTL_ARGS_MAX) {
            reply_err(out, "too many arguments (max %d)", WANEM_CTL_ARGS_MAX);
            return 0;
        }
        argv[argc++] = tok;
    }
    if (argc == 0) {
        reply_err(out, "empty command; 'help' lists the commands");
        return 0;
    }
    cmd = argv[0];
    if (strcmp(cmd, "ping") == 0 && argc == 1) {
        mrd_buf_appendf(out, "ok pong");
    } else if (strcmp(cmd, "help") == 0) {
        mrd_buf_append(out, ctl_help, sizeof(ctl_help) - 1);
    } else if (strcmp(cmd, "quit") == 0 && argc == 1) {
        mrd_buf_appendf(out, "ok bye");
        return 1;
    } else if (strcmp(cmd, "list") == 0 && argc == 1) {
        mrd_buf_appendf(out, "ok links=");
        wanem__link_foreach(list_one, out);
    } else if (strcmp(cmd, "link") == 0 && argc >= 2 && strcmp(argv[1], "add") == 0) {
        int rc;

        if (argc < 5)
            return reply_err(out, "usage: link add NAME LISTEN TARGET [SETTING...], e.g. "
                                  "link add ab 127.0.0.1:0 127.0.0.1:9001 delay=25");
        if (parse_settings(argv + 5, argc - 5, &set, 0, out) != 0)
            return 0;
        rc = wanem__link_add(argv[2], argv[3], argv[4], err, sizeof(err));
        if (rc != 0)
            return reply_err(out, "%s", err);
        wanem__link_set(argv[2], &set);
        wanem__link_info(argv[2], &info);
        mrd_buf_appendf(out, "ok link=%s listen=%s target=%s", info.name, info.listen, info.target);
    } else if (strcmp(cmd, "link") == 0 && argc == 3 && strcmp(argv[1], "del") == 0) {
        if (wanem__link_del(argv[2]) != 0)
            return no_link(out, argv[2]);
        mrd_buf_appendf(out, "ok link=%s", argv[2]);
    } else if (strcmp(cmd, "set") == 0 && argc >= 3) {
        if (parse_settings(argv + 2, argc - 2, &set, 0, out) != 0)
            return 0;
        if (wanem__link_set(argv[1], &set) != 0)
            return no_link(out, argv[1]);
        mrd_buf_appendf(out, "ok link=%s", argv[1]);
    } else if ((strcmp(cmd, "partition") == 0 || strcmp(cmd, "heal") == 0) && argc >= 2) {
        int on = cmd[0] == 'p';

        if (parse_settings(argv + 2, argc - 2, &set, 1, out) != 0)
            return 0;
        if (wanem__link_partition(argv[1], set.dirs, on) != 0)
            return no_link(out, argv[1]);
        wanem__link_info(argv[1], &info);
        mrd_buf_appendf(out, "ok link=%s partitioned=%s", argv[1],
                        dirs_name(info.dir[0].partitioned, info.dir[1].partitioned));
    } else if (strcmp(cmd, "reset") == 0 && argc == 2) {
        uint64_t killed;

        if (wanem__link_reset(argv[1], &killed) != 0)
            return no_link(out, argv[1]);
        mrd_buf_appendf(out, "ok link=%s killed=%llu", argv[1], (unsigned long long)killed);
    } else if (strcmp(cmd, "stats") == 0 && argc == 2) {
        if (wanem__link_info(argv[1], &info) != 0)
            return no_link(out, argv[1]);
        format_stats(&info, out);
    } else {
        static const char *const known[] = {"ping", "help", "quit",      "list",  "link",
                                            "set",  "heal", "partition", "reset", "stats"};
        for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
            if (strcmp(cmd, known[i]) == 0)
                return reply_err(out, "wrong arguments for '%s'; 'help' shows the usage", cmd);
        return reply_err(out, "unknown command '%.64s'; 'help' lists the commands", cmd);
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Socket plumbing                                                          */
/* ------------------------------------------------------------------------ */

static void
client_free(wanem_ctl_client *cl)
{
    TAILQ_REMOVE(&ctl.clients, cl, entry);
    bufferevent_free(cl->bev);
    free(cl);
}

static void
client_send(wanem_ctl_client *cl, const mrd_buf *b)
{
    struct evbuffer *o = bufferevent_get_output(cl->bev);

    evbuffer_add(o, b->data, b->len);
    evbuffer_add(o, "\n", 1);
}

static void
client_read_cb(struct bufferevent *bev, void *arg)
{
    wanem_ctl_client *cl = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    mrd_buf out = {0};
    char *line;
    size_t len;

    while (!cl->quitting) {
        line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);
        if (!line) {
            if (evbuffer_get_length(in) > WANEM_CTL_LINE_MAX) {
                evbuffer_drain(in, evbuffer_get_length(in));
                if (!cl->discarding) {
                    reply_err(&out, "line too long (max %d bytes); it was discarded",
                              WANEM_CTL_LINE_MAX);
                    client_send(cl, &out);
                    cl->discarding = 1;
                }
            }
            break;
        }
        if (cl->discarding) {
            /* the tail of the over-long line, already answered */
            cl->discarding = 0;
        } else if (len > WANEM_CTL_LINE_MAX) {
            reply_err(&out, "line too long (max %d bytes); it was discarded", WANEM_CTL_LINE_MAX);
            client_send(cl, &out);
        } else if (strlen(line) != len) {
            reply_err(&out, "NUL byte in command");
            client_send(cl, &out);
        } else {
            MRD_DEBUG("wanem.ctl.cmd", "len=%zu", len);
            cl->quitting = wanem__ctl_exec(line, &out);
            if (out.data && strncmp(out.data, "err", 3) == 0)
                MRD_INFO("wanem.ctl.err", "reply=\"%.200s\"", out.data);
            client_send(cl, &out);
        }
        free(line);
    }
    mrd_buf_free(&out);
    if (evbuffer_get_length(bufferevent_get_output(bev)) > WANEM_CTL_OUT_MAX) {
        MRD_WARN("wanem.ctl.drop", "reason=client_not_reading");
        client_free(cl);
        return;
    }
    if (cl->quitting)
        bufferevent_disable(bev, EV_READ);
}

static void
client_write_cb(struct bufferevent *bev, void *arg)
{
    wanem_ctl_client *cl = arg;

    if (cl->quitting)
        client_free(cl);
}

static void
client_event_cb(struct bufferevent *bev, short events, void *arg)
{
    if (events & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        client_free(arg);
}

static void
ctl_accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa, int salen,
              void *arg)
{
    wanem_ctl_client *cl = calloc(1, sizeof(*cl));
    int one = 1;

    if (sa->sa_family != AF_UNIX)
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (!cl) {
        close(fd);
        return;
    }
    cl->bev = bufferevent_socket_new(ctl.base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!cl->bev) {
        close(fd);
        free(cl);
        return;
    }
    TAILQ_INSERT_TAIL(&ctl.clients, cl, entry);
    bufferevent_setcb(cl->bev, client_read_cb, client_write_cb, client_event_cb, cl);
    bufferevent_enable(cl->bev, EV_READ | EV_WRITE);
}

int
wanem__ctl_start(struct event_base *base, const char *tcp_spec, const char *unix_path, char *bound,
                 size_t boundsz, char *err, size_t errsz)
{
    struct sockaddr_storage ss;
    socklen_t len;
    unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC;

    ctl.base = base;
    memset(&ss, 0, sizeof(ss));
    if (unix_path) {
        struct sockaddr_un *un = (struct sockaddr_un *)&ss;

        if (strlen(unix_path) >= sizeof(un->sun_path)) {
            snprintf(err, errsz, "unix socket path too long (max %zu bytes)",
                     sizeof(un->sun_path) - 1);
            return MRD_EINVAL;
        }
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, unix_path, strlen(unix_path) + 1);
        len = (socklen_t)sizeof(*un);
        (void)unlink(unix_path); /* a stale socket from a killed run */
        snprintf(ctl.unix_path, sizeof(ctl.unix_path), "%s", unix_path);
        snprintf(bound, boundsz, "unix:%s", unix_path);
    } else {
        if (wanem__addr_resolve(tcp_spec, &ss, &len) != 0) {
            snprintf(err, errsz, "bad control address '%s': expected host:port", tcp_spec);
            return MRD_EINVAL;
        }
        flags |= LEV_OPT_REUSEABLE;
    }
    ctl.lev = evconnlistener_new_bind(base, ctl_accept_cb, NULL, flags, 16, (struct sockaddr *)&ss,
                                      (int)len);
    if (!ctl.lev) {
        int rc = -errno;
        snprintf(err, errsz, "cannot listen for control on %s: %s",
                 unix_path ? unix_path : tcp_spec, mrd_strerror(rc));
        ctl.unix_path[0] = 0;
        return rc;
    }
    if (!unix_path) {
        len = sizeof(ss);
        getsockname(evconnlistener_get_fd(ctl.lev), (struct sockaddr *)&ss, &len);
        wanem__addr_format((struct sockaddr *)&ss, bound, boundsz);
    }
    return 0;
}

void
wanem__ctl_stop(void)
{
    while (!TAILQ_EMPTY(&ctl.clients))
        client_free(TAILQ_FIRST(&ctl.clients));
    if (ctl.lev)
        evconnlistener_free(ctl.lev);
    ctl.lev = NULL;
    if (ctl.unix_path[0])
        (void)unlink(ctl.unix_path);
    ctl.unix_path[0] = 0;
}
