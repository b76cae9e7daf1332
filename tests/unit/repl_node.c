/*
 * repl_node.c - one replicator node for integration tests
 * (tests/integration/test_repl_links.py): it runs repl_* on its own event
 * loop from command-line options and prints the status as one JSON object
 * per line on stdout, every --print-ms, after a first line
 *   {"event":"listen","addr":"127.0.0.1:PORT"}
 * SIGTERM or SIGINT stops it (exit 0).
 *
 *   repl_node --id 1 --name a --listen 127.0.0.1:0 --secret S
 *             [--peer ID,NAME,HOST:PORT]... [--hb-ms 1000] [--print-ms 500]
 *             [--hb-timeout-ms I] [--backoff-max-ms 5000] [--high-water N] [--log-level info]
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "replicator.h"

static repl *g_repl;
static uint64_t g_high_water;

static uint64_t
high_water(void *ud)
{
    return g_high_water;
}

static void
print_status(evutil_socket_t fd, short what, void *ud)
{
    mrd_buf b = {0};
    mrd_json_w w;

    mrd_json_w_init(&w, &b);
    if (repl_status_json(g_repl, &w) == 0) {
        fwrite(b.data, 1, b.len, stdout);
        fputc('\n', stdout);
        fflush(stdout);
    }
    mrd_buf_free(&b);
}

static void
on_signal(evutil_socket_t sig, short what, void *ud)
{
    event_base_loopbreak(ud);
}

static int
parse_peer(const char *s, mrd_peer_conf *p)
{
    char tmp[400], *a, *b;

    snprintf(tmp, sizeof(tmp), "%s", s);
    a = strchr(tmp, ',');
    b = a ? strchr(a + 1, ',') : NULL;
    if (!a || !b)
        return -1;
    *a = *b = '\0';
    memset(p, 0, sizeof(*p));
    p->id = (uint32_t)strtoul(tmp, NULL, 10);
    snprintf(p->name, sizeof(p->name), "%s", a + 1);
    return mrd_addr_parse(b + 1, &p->replication);
}

int
main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"id", 1, 0, 'i'},
        {"name", 1, 0, 'n'},
        {"listen", 1, 0, 'l'},
        {"secret", 1, 0, 's'},
        {"peer", 1, 0, 'p'},
        {"hb-ms", 1, 0, 'h'},
        {"print-ms", 1, 0, 'P'},
        {"high-water", 1, 0, 'w'},
        {"log-level", 1, 0, 'L'},
        {"backoff-max-ms", 1, 0, 'b'},
        {"hb-timeout-ms", 1, 0, 't'},
        {0, 0, 0, 0},
    };
    mrd_peer_conf peers[MRD_MAX_PEERS];
    struct event_base *base;
    struct event *sig_int, *sig_term, *printer;
    const char *name = "node", *level = "info";
    int n_peers = 0, c, rc, print_ms = 500;
    char addr[300];
    mrd_addr la;
    repl_opts o;

    repl_opts_init(&o);
    snprintf(o.listen.host, sizeof(o.listen.host), "127.0.0.1");
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'i':
            o.site_id = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'n':
            name = optarg;
            break;
        case 'l': {
            /* mrd_addr_parse refuses port 0, which tests want: split here. */
            const char *colon = strrchr(optarg, ':');

            if (!colon || colon == optarg)
                return 2;
            snprintf(o.listen.host, sizeof(o.listen.host), "%.*s", (int)(colon - optarg), optarg);
            o.listen.port = (uint16_t)atoi(colon + 1);
            break;
        }
        case 's':
            o.secret = optarg;
            break;
        case 'p':
            if (n_peers >= MRD_MAX_PEERS || parse_peer(optarg, &peers[n_peers]) < 0) {
                fprintf(stderr, "repl_node: bad --peer %s (want ID,NAME,HOST:PORT)\n", optarg);
                return 2;
            }
            n_peers++;
            break;
        case 'h':
            o.heartbeat_ms = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'P':
            print_ms = atoi(optarg);
            break;
        case 'w':
            g_high_water = strtoull(optarg, NULL, 10);
            break;
        case 'L':
            level = optarg;
            break;
        case 't':
            o.heartbeat_timeout_ms = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'b':
            o.backoff_max_ms = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        default:
            return 2;
        }
    }
    mrd_log_setup(
        (mrd_log_level)(mrd_log_level_parse(level) < 0 ? MRD_LOG_INFO : mrd_log_level_parse(level)),
        name);
    o.site_name = name;
    o.peers = peers;
    o.n_peers = n_peers;
    o.local_high_water = high_water;
    base = event_base_new();
    rc = repl_new(base, &o, &g_repl);
    if (rc == 0)
        rc = repl_start(g_repl);
    if (rc < 0) {
        fprintf(stderr, "repl_node: %s\n", mrd_strerror(rc));
        return 1;
    }
    repl_listen_addr(g_repl, &la);
    printf("{\"event\":\"listen\",\"addr\":\"%s\"}\n", mrd_addr_format(&la, addr, sizeof(addr)));
    fflush(stdout);
    sig_int = evsignal_new(base, SIGINT, on_signal, base);
    sig_term = evsignal_new(base, SIGTERM, on_signal, base);
    evsignal_add(sig_int, NULL);
    evsignal_add(sig_term, NULL);
    printer = event_new(base, -1, EV_PERSIST, print_status, NULL);
    {
        struct timeval tv = {print_ms / 1000, (print_ms % 1000) * 1000};

        event_add(printer, &tv);
    }
    event_base_dispatch(base);
    event_free(printer);
    event_free(sig_int);
    event_free(sig_term);
    repl_free(g_repl);
    event_base_free(base);
    return 0;
}
