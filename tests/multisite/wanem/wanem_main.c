/*
 * wanem_main.c - the wanem program: a user-space WAN emulator for the
 * multi-site lab. The kernel on the lab machines has no netem, so delay,
 * jitter, bandwidth caps, partitions and resets between sites are made by
 * routing each replication link through this TCP proxy.
 *
 * This file parses the command line, sets up the single libevent loop, the
 * control listener and the links given with --link, prints one "ready" line
 * on stdout (so a parent process knows the bound ports without polling),
 * and runs until SIGTERM or SIGINT. Shutdown is orderly: the control
 * listener and its clients are closed, every connection is closed with a
 * FIN (not an RST), and every allocation is released, so ASan runs are
 * clean. The data path and its design are in wanem_link.c; the control
 * protocol in wanem_ctl.c and README.md.
 *
 * Everything runs on one thread. Memory is bounded per connection (see
 * wanem_link.c), so the process size depends on the number of connections,
 * not on how many bytes pass through.
 */
#include "wanem_int.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#define WANEM_MAX_CLI_LINKS 64

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: wanem [options]\n"
            "  -c, --control HOST:PORT     control listener (default 127.0.0.1:0, any free port)\n"
            "  -u, --control-unix PATH     control listener on a unix socket instead\n"
            "  -l, --link NAME,LISTEN,TARGET[,SETTING...]\n"
            "                              add a link at start-up (repeatable); settings as in\n"
            "                              the 'set' command: delay=MS jitter=MS rate=BYTES/S\n"
            "                              burst=BYTES qmax=BYTES dir=ab|ba|both; each dir=\n"
            "                              applies to the settings after it\n"
            "  -s, --seed N                seed for the jitter generator (default: time)\n"
            "      --log-level LEVEL       debug, info (default), warn, error, off\n"
            "  -h, --help                  this text\n"
            "On start-up wanem prints one line per link, 'link link=NAME listen=ADDR "
            "target=ADDR',\n"
            "then 'ready control=ADDR pid=PID' on stdout. Logs go to stderr. Commands on the\n"
            "control channel: send 'help'. SIGTERM or SIGINT stops it.\n");
}

/* NAME,LISTEN,TARGET[,k=v...]: the link is added, then the settings are
 * applied; each dir= applies to the settings after it, so
 * "x,L,T,dir=ab,delay=50,dir=ba,delay=10" gives each direction its own. */
static int
cli_link(const char *spec, char *err, size_t errsz)
{
    char *copy = strdup(spec), *save = NULL, *f[3] = {NULL, NULL, NULL}, *kv[32];
    int n_kv = 0, rc = MRD_EINVAL;
    wanem_set set;
    char why[256];

    if (!copy) {
        snprintf(err, errsz, "out of memory");
        return -ENOMEM;
    }
    for (int i = 0; i < 3; i++) {
        f[i] = strtok_r(i ? NULL : copy, ",", &save);
        if (!f[i]) {
            snprintf(err, errsz, "--link '%s': expected NAME,LISTEN,TARGET[,SETTING...]", spec);
            goto out;
        }
    }
    /* Validate every setting before the link exists. */
    memset(&set, 0, sizeof(set));
    while ((kv[n_kv] = strtok_r(NULL, ",", &save)) != NULL) {
        if (wanem__set_parse_kv(&set, kv[n_kv], why, sizeof(why)) != 0) {
            snprintf(err, errsz, "--link '%s': %s", spec, why);
            goto out;
        }
        if (++n_kv == (int)(sizeof(kv) / sizeof(kv[0]))) {
            snprintf(err, errsz, "--link '%s': too many settings", spec);
            goto out;
        }
    }
    rc = wanem__link_add(f[0], f[1], f[2], err, errsz);
    if (rc != 0)
        goto out;
    memset(&set, 0, sizeof(set));
    set.dirs = WANEM_DIR_BOTH;
    for (int i = 0; i < n_kv; i++) {
        if (strncmp(kv[i], "dir=", 4) == 0 && wanem__set_any(&set)) {
            wanem__link_set(f[0], &set);
            memset(&set, 0, sizeof(set));
        }
        wanem__set_parse_kv(&set, kv[i], why, sizeof(why));
    }
    if (set.dirs == 0)
        set.dirs = WANEM_DIR_BOTH;
    rc = wanem__link_set(f[0], &set);
out:
    free(copy);
    return rc;
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
    MRD_INFO("wanem.stop", "signal=%d", (int)sig);
    event_base_loopexit(arg, NULL);
}

int
main(int argc, char **argv)
{
    static const struct option opts[] = {{"control", required_argument, NULL, 'c'},
                                         {"control-unix", required_argument, NULL, 'u'},
                                         {"link", required_argument, NULL, 'l'},
                                         {"seed", required_argument, NULL, 's'},
                                         {"log-level", required_argument, NULL, 'L'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *control = "127.0.0.1:0", *control_unix = NULL;
    const char *links[WANEM_MAX_CLI_LINKS];
    int n_links = 0, opt, level = MRD_LOG_INFO, rc = 1;
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    struct event_base *base = NULL;
    struct event *sig_term = NULL, *sig_int = NULL;
    char bound[300], err[512];

    while ((opt = getopt_long(argc, argv, "c:u:l:s:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            control = optarg;
            break;
        case 'u':
            control_unix = optarg;
            break;
        case 'l':
            if (n_links == WANEM_MAX_CLI_LINKS) {
                fprintf(stderr,
                        "wanem: at most %d --link options; add more with the control "
                        "channel\n",
                        WANEM_MAX_CLI_LINKS);
                return 2;
            }
            links[n_links++] = optarg;
            break;
        case 's': {
            char *end;
            errno = 0;
            seed = strtoull(optarg, &end, 0);
            if (errno || *end || !*optarg) {
                fprintf(stderr, "wanem: --seed '%s' is not a number\n", optarg);
                return 2;
            }
            break;
        }
        case 'L':
            level = mrd_log_level_parse(optarg);
            if (level < 0) {
                fprintf(stderr, "wanem: --log-level '%s': use debug, info, warn, error, off\n",
                        optarg);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "wanem: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    mrd_log_setup((mrd_log_level)level, "wanem");
    signal(SIGPIPE, SIG_IGN);

    base = event_base_new();
    if (!base) {
        fprintf(stderr, "wanem: cannot create the event loop\n");
        return 1;
    }
    wanem__init(base, seed);
    if (wanem__ctl_start(base, control_unix ? NULL : control, control_unix, bound, sizeof(bound),
                         err, sizeof(err)) != 0) {
        fprintf(stderr, "wanem: %s\n", err);
        goto out;
    }
    for (int i = 0; i < n_links; i++) {
        wanem_link_info info;
        const char *comma = strchr(links[i], ',');
        char name[WANEM_NAME_MAX];
        size_t nlen = comma ? (size_t)(comma - links[i]) : 0;

        if (cli_link(links[i], err, sizeof(err)) != 0) {
            fprintf(stderr, "wanem: %s\n", err);
            goto out;
        }
        snprintf(name, sizeof(name), "%.*s", (int)nlen, links[i]);
        if (wanem__link_info(name, &info) == 0)
            printf("link link=%s listen=%s target=%s\n", info.name, info.listen, info.target);
    }
    sig_term = evsignal_new(base, SIGTERM, on_signal, base);
    sig_int = evsignal_new(base, SIGINT, on_signal, base);
    if (!sig_term || !sig_int || evsignal_add(sig_term, NULL) != 0 ||
        evsignal_add(sig_int, NULL) != 0) {
        fprintf(stderr, "wanem: cannot install signal handlers\n");
        goto out;
    }
    printf("ready control=%s pid=%d\n", bound, (int)getpid());
    fflush(stdout);
    MRD_INFO("wanem.ready", "control=%s links=%d seed=%llu", bound, n_links,
             (unsigned long long)seed);

    event_base_dispatch(base);
    rc = 0;

out:
    wanem__ctl_stop();
    wanem__shutdown();
    if (sig_term)
        event_free(sig_term);
    if (sig_int)
        event_free(sig_int);
    event_base_free(base);
    libevent_global_shutdown();
    if (rc == 0)
        MRD_INFO("wanem.exit", "status=clean");
    return rc;
}
