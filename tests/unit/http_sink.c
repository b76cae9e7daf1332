/*
 * http_sink.c - serves http_testsrv on a port for the integration tests:
 *   http_sink PORT   (prints "listening PORT" once bound; PORT 0 picks one)
 * SIGTERM exits cleanly.
 */
#include "http_testsrv.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include <event2/event.h>

static void
on_term(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopexit(arg, NULL);
}

int
main(int argc, char **argv)
{
    struct event_base *base = event_base_new();
    gw_http_server *s = NULL;
    uint16_t port = 0;
    struct event *term;

    signal(SIGPIPE, SIG_IGN);
    if (argc != 2 || !base) {
        fprintf(stderr, "usage: http_sink PORT\n");
        return 1;
    }
    if (testsrv_start(base, NULL, "127.0.0.1", (uint16_t)atoi(argv[1]), &port, &s) != 0) {
        fprintf(stderr, "http_sink: cannot listen\n");
        return 1;
    }
    printf("listening %u\n", port);
    fflush(stdout);
    term = evsignal_new(base, SIGTERM, on_term, base);
    event_add(term, NULL);
    event_base_dispatch(base);
    event_free(term);
    gw_http_server_free(s);
    event_base_free(base);
    return 0;
}
