/*
 * gw_loop.c - meridiand's S3 event loops, and the view of the replicator
 * they read.
 *
 * Why several loops. One event loop serving every S3 connection tops out at
 * one core: parsing, SigV4 (HMACs), MD5 of bodies, TLS and the syscalls of
 * small requests all run on it. [s3] loops = N (default: the online CPUs,
 * at most MRD_DEFAULT_S3_LOOPS) runs N loop threads, each with its own
 * event_base and its own S3 server (plain and TLS listeners). Blocking disk
 * work never runs on any loop: it goes to the engine's worker pool as
 * before, and its callbacks come back to the loop that asked (each loop
 * thread binds its own engine completion queue, engine_cq_bind). The main
 * loop keeps the admin API, replication, drive probes, timers and signals.
 * With loops = 1 the S3 server runs on the main loop as it always did.
 *
 * How connections reach a loop: every loop listens on the S3 address(es)
 * itself, with SO_REUSEPORT, and the kernel spreads incoming connections
 * over the listening sockets (by a hash of the addresses). The alternative,
 * accepting on the main loop and handing descriptors over, costs a
 * cross-thread hop per connection and makes the main loop (which blocks
 * for the drive probes' fdatasync and serves replication) the bottleneck
 * for accepts; SO_REUSEPORT needs neither. Its catch is that another
 * process of the same user could bind the port too and take a share of
 * the connections: before binding, the address is bound once without
 * SO_REUSEPORT (and released), so a port anyone holds fails start-up with
 * exit 2 as before. A connection stays on the loop that accepted it, so a
 * slow or stuck request only delays that loop's other connections' turns,
 * never blocks them (everything on a loop is non-blocking).
 *
 * Shared state. Everything a request touches is either the loop's own
 * (its server, connections, proxy connection pool, GET buffer cache: all
 * thread-local or per loop), immutable after start-up (config but the
 * peer list, users, TLS contexts), thread-safe by contract (engine, store,
 * logging), atomic (counters, drive states, flags: GW_ADD/GW_LOAD), or the
 * view below. Request ids are unique across loops (loop i of n numbers
 * i + 1, i + 1 + n, ...).
 *
 * The view. The replicator belongs to the main loop and is not
 * thread-safe, and the topology (d->conf->peers) changes at run time on
 * the main loop. Routing on S3 loops reads a copy instead: peer states,
 * RTTs, high-water and applied LSNs (repl_peer_get of each live peer) and
 * the peer list, refreshed by the main loop every GW_VIEW_MS and at once
 * when a peer changes state or the topology changes, under a rwlock. A
 * routing decision may therefore use peer data up to GW_VIEW_MS old, which
 * is far below the heartbeat interval that produces it. The replicator's
 * pointer is in the view too, for repl_proxy_sign / repl_proxy_check only
 * (they read the secret and site id, fixed at repl_new); shutdown clears
 * it under the write lock before freeing the replicator.
 *
 * Shutdown (gw_main.c): the main loop makes every loop stop listening
 * (event_active of its stop event: libevent is built thread-aware with
 * evthread_use_pthreads), waits up to 10 s for the connections of all
 * loops to finish, then tells each loop to leave (event_base_loopexit)
 * and joins the threads. A loop thread, as it ends, frees its server
 * (aborting what is left), its proxy pool and its buffer cache. The bases
 * themselves are freed only after engine_close, which runs callbacks
 * still queued for the loops and may touch their events.
 */
#include "gw_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "engine.h"
#include "replicator.h"

static __thread gw_loop *cur_loop;

gw_loop *
gw__loop_self(void)
{
    return cur_loop;
}

struct event_base *
gw__base(gw_daemon *d)
{
    return cur_loop ? cur_loop->base : d->base;
}

static void
cq_cb(evutil_socket_t fd, short what, void *arg)
{
    gw_loop *l = arg;

    (void)fd;
    (void)what;
    engine_cq_poll(l->cq);
}

struct engine *
gw__engine(gw_daemon *d)
{
    struct engine *e = GW_LOAD(d->eng);
    gw_loop *l = cur_loop;

    if (!e || !l || !l->threaded || l->cq)
        return e;
    /* first request on this loop since the engine opened */
    if (engine_cq_new(e, &l->cq) != 0) {
        l->cq = NULL;
        return NULL;
    }
    l->cq_ev = event_new(l->base, engine_cq_fd(l->cq), EV_READ | EV_PERSIST, cq_cb, l);
    if (!l->cq_ev || event_add(l->cq_ev, NULL) != 0) {
        MRD_ERROR("s3.loop_cq_failed", "loop=%d", l->idx);
        abort(); /* callbacks would never run: nothing sane is left to do */
    }
    engine_cq_bind(l->cq);
    return e;
}

/* ---- the view ----------------------------------------------------------- */

static int
view_init(gw_view *v)
{
    if (pthread_rwlock_init(&v->mu, NULL) != 0)
        return -ENOMEM;
    v->info = calloc(MRD_MAX_PEERS, sizeof(*v->info));
    return v->info ? 0 : -ENOMEM;
}

void
gw__view_refresh(gw_daemon *d)
{
    gw_view *v = &d->view;
    int n;

    pthread_rwlock_wrlock(&v->mu);
    v->repl = d->replicator;
    v->n_conf = d->conf->n_peers;
    memcpy(v->conf, d->conf->peers, sizeof(v->conf));
    v->n_info = 0;
    n = d->replicator ? repl_peer_count(d->replicator) : 0;
    for (int i = 0; v->info && i < n && v->n_info < MRD_MAX_PEERS; i++)
        if (repl_peer_get(d->replicator, i, &v->info[v->n_info]) == 0)
            v->n_info++;
    pthread_rwlock_unlock(&v->mu);
}

const gw_view *
gw__view_lock(gw_daemon *d)
{
    pthread_rwlock_rdlock(&d->view.mu);
    return &d->view;
}

void
gw__view_unlock(gw_daemon *d)
{
    pthread_rwlock_unlock(&d->view.mu);
}

const struct repl_peer_info *
gw__view_peer(const gw_view *v, uint32_t id)
{
    for (int i = 0; i < v->n_info; i++)
        if (v->info[i].id == id)
            return &v->info[i];
    return NULL;
}

const mrd_peer_conf *
gw__view_conf(const gw_view *v, uint32_t id)
{
    for (int i = 0; i < v->n_conf; i++)
        if (v->conf[i].id == id)
            return &v->conf[i];
    return NULL;
}

const char *
gw__view_version_status(gw_daemon *d, uint32_t origin, uint64_t hlc, uint64_t now_ms)
{
    const gw_view *v = gw__view_lock(d);
    const char *st = NULL;

    for (int i = 0; v->repl && i < v->n_info; i++) {
        st = repl_status_of(&v->info[i].held, d->conf->site_id, origin, hlc, now_ms,
                            GW_REPLICATION_FAILED_MS(d));
        if (strcmp(st, "COMPLETED") != 0)
            break;
    }
    gw__view_unlock(d);
    return st;
}

static void
view_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gw__view_refresh(arg);
}

/* ---- drive probes asked for by S3 loops ---------------------------------- */

static void
probe_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gw__probe_drives(arg);
}

void
gw__probe_drives_soon(gw_daemon *d)
{
    if (d->probe_ev)
        event_active(d->probe_ev, EV_TIMEOUT, 0);
}

/* ---- loops -------------------------------------------------------------- */

static void
stop_cb(evutil_socket_t fd, short what, void *arg)
{
    gw_loop *l = arg;

    (void)fd;
    (void)what;
    gw_http_server_stop_listening(l->s3);
}

static void *
loop_main(void *arg)
{
    gw_loop *l = arg;

    cur_loop = l;
    event_base_loop(l->base, EVLOOP_NO_EXIT_ON_EMPTY);
    gw_http_server_free(l->s3); /* aborts what is left */
    gw__proxy_close_idle();
    gw__s3_obj_thread_end();
    engine_cq_bind(NULL);
    cur_loop = NULL;
    return NULL;
}

static int
default_loops(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    if (n < 1)
        n = 1;
    return n > MRD_DEFAULT_S3_LOOPS ? MRD_DEFAULT_S3_LOOPS : (int)n;
}

/* Binds host:port once without SO_REUSEPORT and lets it go: fails if any
 * socket holds the address, even one that set SO_REUSEPORT itself. */
static int
probe_bind(const mrd_addr *a)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int fd, one = 1, rc = 0;

    memset(&ss, 0, sizeof(ss));
    if (inet_pton(AF_INET, a->host, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
        ss.ss_family = AF_INET;
        ((struct sockaddr_in *)&ss)->sin_port = htons(a->port);
        len = sizeof(struct sockaddr_in);
    } else if (inet_pton(AF_INET6, a->host, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
        ss.ss_family = AF_INET6;
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons(a->port);
        len = sizeof(struct sockaddr_in6);
    } else {
        return MRD_EINVAL;
    }
    if ((fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
        return -errno;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 1) != 0)
        rc = -errno;
    close(fd);
    return rc;
}

/* Binds loop l's listeners; *port and *tls_port carry the ports the first
 * loop got (port 0 in the config) to the others. */
static int
loop_listen(gw_daemon *d, gw_loop *l, uint16_t *port, uint16_t *tls_port, char *addr, size_t n)
{
    const mrd_config *c = d->conf;
    int rc;

    rc = gw_http_server_listen(l->s3, c->listen_s3.host, *port, "s3", port);
    if (rc != 0) {
        mrd_addr_format(&c->listen_s3, addr, n);
        return rc;
    }
    if (c->has_s3_tls) {
        rc = gw_http_server_listen_tls(l->s3, c->listen_s3_tls.host, *tls_port, "s3_tls", d->s3_tls,
                                       tls_port);
        if (rc != 0)
            mrd_addr_format(&c->listen_s3_tls, addr, n);
    }
    return rc;
}

int
gw__loops_init(gw_daemon *d)
{
    const mrd_config *c = d->conf;
    struct timeval view_every = {0, GW_VIEW_MS * 1000};
    uint16_t port = c->listen_s3.port, tls_port = c->has_s3_tls ? c->listen_s3_tls.port : 0;
    char addr[300] = "";
    int n = c->s3_loops > 0 ? c->s3_loops : default_loops(), rc = 0;
    gw_http_limits lim = {.max_connections = c->s3_max_connections}; /* 0: the default */

    if (view_init(&d->view) != 0 || !(d->loops = calloc((size_t)n, sizeof(*d->loops))))
        return -ENOMEM;
    d->n_loops = n;
    d->view_timer = event_new(d->base, -1, EV_PERSIST, view_timer_cb, d);
    d->probe_ev = event_new(d->base, -1, 0, probe_cb, d);
    if (!d->view_timer || !d->probe_ev || event_add(d->view_timer, &view_every) != 0)
        return -ENOMEM;
    if (n > 1 && (rc = probe_bind(&c->listen_s3)) != 0)
        mrd_addr_format(&c->listen_s3, addr, sizeof(addr));
    if (rc == 0 && n > 1 && c->has_s3_tls && (rc = probe_bind(&c->listen_s3_tls)) != 0)
        mrd_addr_format(&c->listen_s3_tls, addr, sizeof(addr));
    for (int i = 0; i < n && rc == 0; i++) {
        gw_loop *l = &d->loops[i];
        l->d = d;
        l->idx = i;
        l->threaded = n > 1;
        l->base = l->threaded ? event_base_new() : d->base;
        if (!l->base || gw_http_server_new(l->base, &lim, gw__route_s3, d, &l->s3) != 0 ||
            (l->threaded && !(l->stop_ev = event_new(l->base, -1, 0, stop_cb, l)))) {
            rc = -ENOMEM;
            break;
        }
        gw_http_server_set_error_fn(l->s3, gw_s3_http_error); /* S3 XML, even for bad HTTP */
        gw_http_server_set_reuseport(l->s3, l->threaded);
        gw_http_server_set_req_ids(l->s3, (uint64_t)i + 1, (uint64_t)n);
        gw_http_server_share_conn_count(l->s3, &d->s3_conns_open);
        rc = loop_listen(d, l, &port, &tls_port, addr, sizeof(addr));
    }
    if (rc != 0 && addr[0])
        fprintf(stderr, "meridiand: cannot listen on %s: %s\n", addr, mrd_strerror(rc));
    else if (rc != 0)
        fprintf(stderr, "meridiand: out of memory at start-up\n");
    if (rc == 0 && n == 1)
        cur_loop = &d->loops[0]; /* the main thread is the S3 loop */
    MRD_INFO("s3.loops", "loops=%d threads=%d", n, n > 1 ? n : 0);
    return rc;
}

int
gw__loops_start(gw_daemon *d)
{
    for (int i = 0; i < d->n_loops; i++) {
        gw_loop *l = &d->loops[i];
        int rc;
        if (!l->threaded)
            continue;
        if ((rc = pthread_create(&l->thread, NULL, loop_main, l)) != 0) {
            fprintf(stderr, "meridiand: cannot start S3 loop %d: %s\n", i, strerror(rc));
            return -rc;
        }
        l->started = 1;
    }
    return 0;
}

void
gw__loops_stop_listening(gw_daemon *d)
{
    for (int i = 0; i < d->n_loops; i++) {
        gw_loop *l = &d->loops[i];
        if (l->threaded)
            event_active(l->stop_ev, EV_TIMEOUT, 0);
        else
            gw_http_server_stop_listening(l->s3);
    }
}

int
gw__loops_conn_count(gw_daemon *d)
{
    int n = 0;

    for (int i = 0; i < d->n_loops; i++)
        if (d->loops[i].s3)
            n += gw_http_server_conn_count(d->loops[i].s3);
    return n;
}

void
gw__loops_join(gw_daemon *d)
{
    for (int i = 0; i < d->n_loops; i++) {
        gw_loop *l = &d->loops[i];
        if (!l->threaded) {
            gw_http_server_free(l->s3); /* the main loop's own */
            l->s3 = NULL;
        }
        if (!l->started)
            continue;
        event_base_loopexit(l->base, NULL);
        pthread_join(l->thread, NULL);
        l->started = 0;
        l->s3 = NULL; /* freed by its thread */
    }
}

void
gw__loops_free(gw_daemon *d)
{
    for (int i = 0; d->loops && i < d->n_loops; i++) {
        gw_loop *l = &d->loops[i];
        gw_http_server_free(l->s3); /* a loop whose thread never ran */
        if (l->cq_ev)
            event_free(l->cq_ev);
        if (l->stop_ev)
            event_free(l->stop_ev);
        if (l->threaded && l->base)
            event_base_free(l->base);
    }
    free(d->loops);
    d->loops = NULL;
    if (d->view_timer)
        event_free(d->view_timer);
    if (d->probe_ev)
        event_free(d->probe_ev);
    d->view_timer = d->probe_ev = NULL;
    if (d->view.info) {
        pthread_rwlock_destroy(&d->view.mu);
        free(d->view.info);
        d->view.info = NULL;
    }
    cur_loop = NULL;
}

/* ---- counters ----------------------------------------------------------- */

void
gw__loops_stats(gw_daemon *d, gw_http_stats *out)
{
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < d->n_loops; i++) {
        gw_http_stats st;
        uint64_t *o = (uint64_t *)out, *in = (uint64_t *)&st;
        if (!d->loops[i].s3)
            continue;
        gw_http_server_stats_get(d->loops[i].s3, &st);
        for (size_t k = 0; k < sizeof(st) / sizeof(uint64_t); k++)
            o[k] += in[k];
    }
}

void
gw__loops_status_json(gw_daemon *d, mrd_json_w *w)
{
    mrd_json_w_arr_begin(w);
    for (int i = 0; i < d->n_loops; i++) {
        mrd_json_w_obj_begin(w);
        mrd_json_w_key(w, "loop");
        mrd_json_w_int(w, i);
        mrd_json_w_key(w, "requests");
        mrd_json_w_uint(w, GW_LOAD(d->loops[i].requests));
        mrd_json_w_key(w, "connections_open");
        mrd_json_w_int(w, d->loops[i].s3 ? gw_http_server_conn_count(d->loops[i].s3) : 0);
        mrd_json_w_obj_end(w);
    }
    mrd_json_w_arr_end(w);
}

void
gw__loops_metrics(gw_daemon *d, mrd_buf *b)
{
    mrd_buf_appendf(b,
                    "# HELP meridian_s3_loops S3 event-loop threads ([s3] loops).\n"
                    "# TYPE meridian_s3_loops gauge\nmeridian_s3_loops %d\n"
                    "# HELP meridian_s3_loop_requests_total S3 requests served by each loop.\n"
                    "# TYPE meridian_s3_loop_requests_total counter\n",
                    d->n_loops);
    for (int i = 0; i < d->n_loops; i++)
        mrd_buf_appendf(b, "meridian_s3_loop_requests_total{loop=\"%d\"} %llu\n", i,
                        (unsigned long long)GW_LOAD(d->loops[i].requests));
    mrd_buf_appendf(b, "# HELP meridian_s3_loop_connections Open S3 connections of each loop.\n"
                       "# TYPE meridian_s3_loop_connections gauge\n");
    for (int i = 0; i < d->n_loops; i++)
        mrd_buf_appendf(b, "meridian_s3_loop_connections{loop=\"%d\"} %d\n", i,
                        d->loops[i].s3 ? gw_http_server_conn_count(d->loops[i].s3) : 0);
}
