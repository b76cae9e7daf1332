/*
 * repl.c - the replicator handle: options, lifecycle, the heartbeat tick,
 * the peer table and its JSON.
 *
 * One repl per site, on the daemon's event loop. It owns a listener (or
 * borrows the daemon's), one outbound session per configured peer
 * (repl_client.c) and the inbound connections peers open to it
 * (repl_server.c). So between two sites there are two TCP connections, one
 * dialled by each side: each site's sender (later: the WAL records it
 * originates) rides on its own outbound session, and each site measures RTT
 * and health on the session it dialled. A site that can reach its peer but
 * not be reached (a one-way partition) therefore sees the peer healthy while
 * the peer sees it down; routing is a per-site decision, so that is the
 * correct view for each of them.
 *
 * Time: one persistent timer ticks every heartbeat interval for all peers.
 * Counting ticks rather than comparing timestamps makes "no answer for N
 * intervals" exact whatever the timer's jitter. Durations (RTT, ages) use the
 * monotonic clock; only the auth window uses the wall clock, which tests can
 * inject.
 *
 * The peer table is read through snapshots (repl_peer_info), so the gateway
 * never holds pointers into it; all of it lives on the loop thread.
 */
#include "repl_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "engine.h"

void
repl_opts_init(repl_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->heartbeat_ms = 1000;
    o->down_after = 3;
    o->up_after = 3;
    o->backoff_min_ms = 100;
    o->backoff_max_ms = 5000;
    o->max_clock_skew_ms = 900000;
    o->failed_after_ms = 3600000;
}

const char *
repl_peer_state_name(repl_peer_state s)
{
    switch (s) {
    case REPL_PEER_UNKNOWN:
        return "unknown";
    case REPL_PEER_HEALTHY:
        return "healthy";
    case REPL_PEER_DEGRADED:
        return "degraded";
    case REPL_PEER_DOWN:
        return "down";
    }
    return "invalid";
}

uint64_t
repl__now_ms(const repl *r)
{
    return r->o.clock ? r->o.clock(r->o.clock_ud) : mrd_clock_realtime_ms(NULL);
}

uint64_t
repl__rand(repl *r)
{
    uint64_t x = r->rng; /* xorshift64: jitter only, not security */

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    r->rng = x;
    return x;
}

repl_peer *
repl__peer_by_id(repl *r, uint32_t id)
{
    for (int i = 0; i < r->n_peers; i++)
        if (r->peers[i].id == id && !r->peers[i].removed)
            return &r->peers[i];
    return NULL;
}

repl_peer *
repl__peer_removed(repl *r, uint32_t id)
{
    repl_peer *found = NULL;

    for (int i = 0; i < r->n_peers; i++) {
        if (r->peers[i].id == id && !r->peers[i].removed)
            return NULL; /* removed once, added again */
        if (r->peers[i].id == id)
            found = &r->peers[i];
    }
    return found;
}

static void fill_info(const repl_peer *p, uint64_t now_ns, repl_peer_info *out);

/* Our view of our link to p, as announced to every peer. */
static void
link_of(const repl_peer *p, uint64_t now_ns, repl__link *l)
{
    repl_peer_info pi;

    fill_info(p, now_ns, &pi);
    memset(l, 0, sizeof(*l));
    l->peer_site = p->id;
    l->state = pi.state;
    l->connected = pi.connected;
    l->rtt_us = (uint64_t)(pi.rtt_ms * 1000.0);
    l->lag_records = pi.lag_records;
    l->lag_ms = (uint64_t)pi.lag_ms;
    l->lag_bytes = pi.lag_bytes;
    l->acked_lsn = pi.acked_lsn;
    l->sent_bytes = pi.data_bytes_sent;
    l->throughput_bps = p->rate_bps;
    l->send_errors = pi.send_errors;
    {
        repl_held h;
        repl__tx_held(p, &h);
        l->acked_hlc = h.acked_hlc;
    }
    snprintf(l->last_error, sizeof(l->last_error), "%.95s",
             pi.send_error[0] ? pi.send_error : pi.last_error);
}

void
repl__local_state(repl *r, repl__msg *m)
{
    uint64_t now = mrd_clock_mono_ns();

    memset(m, 0, sizeof(*m));
    m->protocol_version = REPL_PROTOCOL_VERSION;
    m->heartbeat_interval_ms = r->o.heartbeat_ms;
    m->features = r->features;
    m->st.site_id = r->site_id;
    memcpy(m->st.site_name, r->site_name, sizeof(m->st.site_name));
    m->st.topology_epoch = r->topo.epoch;
    m->st.topology_hash = r->topo.epoch ? r->topo.hash : 0;
    m->st.hlc = mrd_hlc_now(r->hlc);
    m->st.high_water_lsn = r->o.local_high_water ? r->o.local_high_water(r->o.user_data) : 0;
    m->st.boot_id = r->boot_id;
    for (int i = 0; i < r->n_peers && m->st.n_links < MRD_MAX_PEERS; i++)
        if (!r->peers[i].removed)
            link_of(&r->peers[i], now, &m->st.links[m->st.n_links++]);
    if (r->eng) {
        /* what we have applied of each peer's records, as the peer must
         * resume sending from it */
        for (int i = 0; i < r->n_peers && m->st.n_applied < REPL_MAX_APPLIED; i++)
            if (!r->peers[i].removed)
                m->st.applied[m->st.n_applied++] =
                    (repl_applied){r->peers[i].id, r->peers[i].rx_applied};
    } else if (r->o.local_applied) {
        int n = r->o.local_applied(r->o.user_data, m->st.applied, REPL_MAX_APPLIED);

        m->st.n_applied = n < 0 ? 0 : n > REPL_MAX_APPLIED ? REPL_MAX_APPLIED : n;
    }
}

void
repl__peer_absorb(repl_peer *p, const repl__state_msg *st)
{
    repl *r = p->r;

    if (p->boot_id && st->boot_id != p->boot_id)
        MRD_INFO("repl.peer.restarted", "peer=%s high_water=%llu", p->name,
                 (unsigned long long)st->high_water_lsn);
    p->boot_id = st->boot_id;
    p->high_water = st->high_water_lsn;
    p->epoch = st->topology_epoch;
    p->topo_hash = st->topology_hash;
    p->n_links = st->n_links;
    memcpy(p->links, st->links, (size_t)st->n_links * sizeof(p->links[0]));
    p->links_ns = mrd_clock_mono_ns();
    repl__topo_maybe_fetch(p, st->topology_epoch, st->topology_hash);
    if (st->hlc) {
        p->hlc = st->hlc;
        mrd_hlc_observe(r->hlc, st->hlc);
    }
    for (int i = 0; i < st->n_applied; i++)
        if (st->applied[i].origin_site == r->site_id)
            p->applied_from_us = st->applied[i].lsn;
}

static void
fill_info(const repl_peer *p, uint64_t now_ns, repl_peer_info *out)
{
    const repl__health *h = &p->health;

    memset(out, 0, sizeof(*out));
    out->id = p->id;
    memcpy(out->name, p->name, sizeof(out->name));
    out->addr = p->addr;
    out->state = h->state;
    out->state_age_ms = (int64_t)((now_ns - h->state_since_ns) / 1000000);
    out->connected = p->conn && p->hello_done;
    out->inbound = p->inbound;
    out->rtt_ms = h->rtt_us / 1000.0;
    out->clock_offset_ms = p->clock_offset_ms;
    out->rtt_baseline_ms = repl__health_baseline_us(h) / 1000.0;
    out->rtt_last_ms = h->last_us / 1000.0;
    out->last_heartbeat_age_ms = p->last_ok_ns ? (int64_t)((now_ns - p->last_ok_ns) / 1000000) : -1;
    out->last_inbound_age_ms =
        p->last_inbound_ns ? (int64_t)((now_ns - p->last_inbound_ns) / 1000000) : -1;
    out->high_water_lsn = p->high_water;
    out->applied_from_us = p->applied_from_us;
    out->topology_epoch = p->epoch;
    out->topology_hash = p->topo_hash;
    out->hlc = p->hlc;
    out->consecutive_failures = h->fail_streak;
    out->consecutive_successes = h->ok_streak;
    out->heartbeats_ok = h->ok_total;
    out->heartbeats_failed = h->fail_total;
    out->auth_failures = p->auth_failures;
    out->connects = p->connects;
    out->bytes_in = p->bytes_in;
    out->bytes_out = p->bytes_out;
    memcpy(out->last_error, p->last_error, sizeof(out->last_error));
    repl__tx_fill(p, out);
    if (p->r->eng) {
        engine_status st;
        if (engine_get_status(p->r->eng, &st) == 0)
            out->lag_records = repl__tx_lag_records(p, st.wal_durable_lsn);
        out->lag_ms = out->lag_records ? repl__tx_lag_ms(p, now_ns) : 0;
    }
    out->applied_from_peer = p->rx_applied;
    out->records_received = p->rx_records;
    out->objects_received = p->rx_objects;
    out->data_bytes_received = p->rx_bytes;
    out->receive_errors = p->rx_errors;
    out->duplicates_received = p->rx_duplicates;
    out->resync_versions_received = p->rx_resync_versions;
    out->failed_records = p->failed_count;
    /* a peer being resynced lacks older records the WAL no longer names */
    out->failed_unknown = p->failed_partial || out->needs_resync;
}

void
repl__life_unref(repl__life *l)
{
    if (l && --l->refs == 0)
        free(l);
}

const char *
repl_version_peer_status(const repl *r, int i, uint32_t origin_site, uint64_t hlc, uint64_t now_ms,
                         uint64_t failed_after_ms)
{
    repl_held h;

    if (!r || i < 0 || i >= r->n_peers)
        return NULL;
    repl__tx_held(&r->peers[i], &h);
    return repl_status_of(&h, r->site_id, origin_site, hlc, now_ms, failed_after_ms);
}

/* Lowers st to v, naming the link when it does. */
static void
stable_min(repl_stable *st, uint64_t v, uint32_t origin, uint32_t site)
{
    if (v < st->hlc) {
        st->hlc = v;
        st->origin = origin;
        st->site = site;
    }
}

uint64_t
repl_stable_point(repl *r, repl_stable *out)
{
    repl_stable st = {.hlc = mrd_hlc_now(r->hlc)};

    for (int i = 0; i < r->n_peers; i++) {
        const repl_peer *o = &r->peers[i];
        repl_held h;

        if (o->removed)
            continue;
        repl__tx_held(o, &h); /* our writes at o */
        stable_min(&st, h.acked_hlc, r->site_id, o->id);
        /* o's writes at every other site, as o last announced them */
        for (int k = -1; k < r->n_peers; k++) {
            uint32_t site = k < 0 ? r->site_id : r->peers[k].id;
            uint64_t v = 0;

            if (k == i || (k >= 0 && r->peers[k].removed))
                continue;
            for (int l = 0; l < o->n_links; l++)
                if (o->links[l].peer_site == site)
                    v = o->links[l].acked_hlc;
            stable_min(&st, v, o->id, site);
        }
    }
    if (out)
        *out = st;
    return st.hlc;
}

int
repl_held_has(const repl_held *h, uint64_t hlc)
{
    if (h->acked_hlc > hlc)
        return 1;
    /* a resync pass: written after the stream's clean point, and acked */
    return h->resync_after_hlc && h->resync_after_hlc < hlc && hlc < h->resync_acked_hlc;
}

const char *
repl_status_of(const repl_held *held, uint32_t self_site, uint32_t origin_site, uint64_t hlc,
               uint64_t now_ms, uint64_t failed_after_ms)
{
    if (origin_site != self_site)
        return "REPLICA";
    if (repl_held_has(held, hlc))
        return "COMPLETED";
    if (failed_after_ms && now_ms > MRD_HLC_MS(hlc) + failed_after_ms)
        return "FAILED";
    return "PENDING";
}

const char *
repl_version_status(const repl *r, uint32_t origin_site, uint64_t hlc, uint64_t now_ms,
                    uint64_t failed_after_ms)
{
    const char *st = NULL;

    for (int i = 0; r && i < r->n_peers; i++) {
        if (r->peers[i].removed)
            continue;
        st = repl_version_peer_status(r, i, origin_site, hlc, now_ms, failed_after_ms);
        if (strcmp(st, "COMPLETED") != 0)
            break;
    }
    return st;
}

int
repl_set_bandwidth(repl *r, uint32_t site_id, uint64_t bytes_per_s)
{
    repl_peer *p = r ? repl__peer_by_id(r, site_id) : NULL;

    return p ? repl__tx_set_bandwidth(p, bytes_per_s) : MRD_ENOTFOUND;
}

int
repl_sync_cancel(repl *r, uint32_t site_id)
{
    repl_peer *p = r ? repl__peer_by_id(r, site_id) : NULL;

    return p ? repl__sync_cancel(p) : MRD_ENOTFOUND;
}

int
repl_sync(repl *r, uint32_t site_id)
{
    return repl_sync_bucket(r, site_id, NULL);
}

int
repl_sync_bucket(repl *r, uint32_t site_id, const char *bucket)
{
    repl_peer *p = r ? repl__peer_by_id(r, site_id) : NULL;

    if (!p)
        return MRD_ENOTFOUND;
    if (!r->eng)
        return MRD_ESHUTDOWN;
    return repl__sync_start_bucket(p, 0, bucket);
}

void
repl__peer_outcome(repl_peer *p, int ok, uint64_t rtt_us, const char *why)
{
    uint64_t now = mrd_clock_mono_ns();
    repl_peer_state old;

    if (ok) {
        old = repl__health_ok(&p->health, rtt_us, now);
        p->last_ok_ns = now;
    } else {
        old = repl__health_fail(&p->health, now);
        snprintf(p->last_error, sizeof(p->last_error), "%s", why ? why : "failure");
    }
    if (old != p->health.state) {
        repl *r = p->r;

        MRD_INFO("repl.peer.state",
                 "peer=%s id=%u from=%s to=%s rtt_ms=%.3f fails=%u reason=\"%s\"", p->name, p->id,
                 repl_peer_state_name(old), repl_peer_state_name(p->health.state),
                 p->health.rtt_us / 1000.0, p->health.fail_streak,
                 ok ? (repl__health_rtt_high(&p->health) ? "rtt above 2x baseline" : "recovered")
                    : p->last_error);
        if (r->o.on_peer_state) {
            repl_peer_info info;

            fill_info(p, now, &info);
            r->o.on_peer_state(r->o.user_data, &info, old);
        }
    }
}

/* ---- lifecycle ---------------------------------------------------------- */

static void
tick_cb(evutil_socket_t fd, short what, void *ud)
{
    repl *r = ud;

    r->tick++;
    for (int i = 0; i < r->n_peers; i++) {
        repl_peer *p = &r->peers[i];
        uint64_t now = mrd_clock_mono_ns();
        repl_peer_info pi;

        if (p->removed)
            continue;
        repl__client_tick(p);
        repl__failed_tick(p);
        /* data rate to it: half the last interval's, half the history */
        repl__tx_fill(p, &pi);
        if (p->rate_last_ns && now > p->rate_last_ns) {
            double inst = (double)(pi.data_bytes_sent - p->rate_last_bytes) * 1e9 /
                          (double)(now - p->rate_last_ns);
            p->rate_bps = (uint64_t)(0.5 * (double)p->rate_bps + 0.5 * inst);
        }
        p->rate_last_bytes = pi.data_bytes_sent;
        p->rate_last_ns = now;
    }
    if (r->eng)
        engine_gc_offer(r->eng, repl_stable_point(r, NULL));
}

/* Every REPL_PUMP_MS: senders look for new durable records, receivers
 * expire batches whose predecessor never came. */
static void
pump_cb(evutil_socket_t fd, short what, void *ud)
{
    repl *r = ud;

    for (int i = 0; i < r->n_peers; i++) {
        repl_peer *p = &r->peers[i];

        if (p->removed)
            continue;
        repl__rx_tick(p);
        repl__tx_pump_flush(p);
    }
}

int
repl_attach_engine(repl *r, struct engine *e)
{
    engine_repl_state st[MRD_MAX_PEERS];
    struct timeval tv = {0, REPL_PUMP_MS * 1000};
    int n;

    if (!r || !e || r->eng)
        return MRD_EINVAL;
    n = engine_repl_progress(e, st, MRD_MAX_PEERS);
    if (n < 0)
        return n;
    r->pump_ev = event_new(r->base, -1, EV_PERSIST, pump_cb, r);
    if (!r->pump_ev)
        return -ENOMEM;
    r->eng = e;
    for (int i = 0; i < r->n_peers; i++) {
        repl_peer *p = &r->peers[i];

        if (p->removed)
            continue;
        for (int k = 0; k < n; k++)
            if (st[k].origin == p->id)
                p->rx_applied = p->rx_issued = st[k].applied;
        if (p->conn && p->hello_done)
            repl__tx_on_connected(p);
    }
    event_add(r->pump_ev, &tv);
    MRD_INFO("repl.engine_attached", "peers=%d", r->n_peers);
    /* a stored topology overrides the configuration's peers */
    return repl__topo_load(r);
}

static void
accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *ud)
{
    repl *r = ud;
    char host[64] = "?", remote[80];
    uint16_t port = 0;

    if (sa->sa_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)sa;

        evutil_inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        port = ntohs(in->sin_port);
        snprintf(remote, sizeof(remote), "%s:%u", host, port);
    } else if (sa->sa_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;

        evutil_inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        port = ntohs(in6->sin6_port);
        snprintf(remote, sizeof(remote), "[%s]:%u", host, port);
    } else {
        snprintf(remote, sizeof(remote), "unix");
    }
    evutil_make_socket_nonblocking(fd);
    repl__server_accept(r, fd, remote);
}

static int
validate(const repl_opts *o)
{
    /* without a secret, only mutual TLS authenticates a peer */
    if (!o || o->site_id == 0 || ((!o->secret || !o->secret[0]) && !o->tls) || o->n_peers < 0 ||
        o->n_peers > MRD_MAX_PEERS || (o->n_peers && !o->peers) || o->heartbeat_ms == 0 ||
        o->backoff_min_ms == 0 || o->backoff_max_ms < o->backoff_min_ms)
        return MRD_EINVAL;
    if (o->site_name && strlen(o->site_name) >= MRD_NAME_MAX)
        return MRD_EINVAL;
    for (int i = 0; i < o->n_peers; i++) {
        if (o->peers[i].id == 0 || o->peers[i].id == o->site_id ||
            o->peers[i].replication.port == 0)
            return MRD_EINVAL;
        for (int j = 0; j < i; j++)
            if (o->peers[j].id == o->peers[i].id)
                return MRD_EINVAL;
    }
    return 0;
}

static int
bind_listener(repl *r, const mrd_addr *a)
{
    struct sockaddr_storage ss;
    int sslen = sizeof(ss);
    char spec[300];

    /* libevent's parser refuses port 0 ("any"), so parse the host alone
     * and set the port after. */
    snprintf(spec, sizeof(spec), strchr(a->host, ':') ? "[%s]" : "%s", a->host);
    memset(&ss, 0, sizeof(ss));
    if (evutil_parse_sockaddr_port(spec, (struct sockaddr *)&ss, &sslen) < 0)
        return MRD_EINVAL;
    if (ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&ss)->sin_port = htons(a->port);
    else
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons(a->port);
    r->listener = evconnlistener_new_bind(r->base, accept_cb, r,
                                          LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
                                              LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_DISABLED,
                                          128, (struct sockaddr *)&ss, sslen);
    if (!r->listener)
        return errno ? -errno : -EADDRINUSE;
    r->own_listener = 1;
    return 0;
}

/*
 * The features our Hellos announce: all of REPL_FEATURES, unless
 * MERIDIAN_TEST_REPL_FEATURES holds a mask (0 makes this site look like a
 * build from before Hello.features to its peers, so tests can run the
 * fallbacks with real processes; said loudly in the log).
 */
static uint32_t
test_features(void)
{
    const char *v = getenv("MERIDIAN_TEST_REPL_FEATURES");
    char *end;
    unsigned long m;

    if (!v || !*v)
        return REPL_FEATURES;
    m = strtoul(v, &end, 0);
    if (*end || m > UINT32_MAX) {
        MRD_WARN("test.repl_features", "value=\"%s\" reason=\"not a number: ignored\"", v);
        return REPL_FEATURES;
    }
    MRD_WARN("test.repl_features",
             "features=0x%lx reason=\"MERIDIAN_TEST_REPL_FEATURES is set: this site announces "
             "these replication features only\"",
             m & REPL_FEATURES);
    return (uint32_t)m & REPL_FEATURES;
}

/*
 * MERIDIAN_TEST_REPL_DCHECK_FAULT=<n>: the first n data checks this site
 * sends fail to finish, as when OpenSSL fails the MAC's final step, so
 * tests can see the sender refuse to send data without its check (said
 * loudly in the log). Unset or not a count: 0.
 */
static int
test_dcheck_faults(void)
{
    const char *v = getenv("MERIDIAN_TEST_REPL_DCHECK_FAULT");
    char *end;
    long n;

    if (!v || !*v)
        return 0;
    n = strtol(v, &end, 10);
    if (*end || n < 0 || n > 1000000) {
        MRD_WARN("test.repl_dcheck_fault", "value=\"%s\" reason=\"not a count: ignored\"", v);
        return 0;
    }
    MRD_WARN("test.repl_dcheck_fault",
             "count=%ld reason=\"MERIDIAN_TEST_REPL_DCHECK_FAULT is set: the first data checks "
             "this site sends fail\"",
             n);
    return (int)n;
}

int
repl_new(struct event_base *base, const repl_opts *o, repl **out)
{
    repl *r;
    uint64_t now = mrd_clock_mono_ns();
    int rc;

    if (!base || !out)
        return MRD_EINVAL;
    rc = validate(o);
    if (rc < 0)
        return rc;
    r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->base = base;
    if (!(r->life = calloc(1, sizeof(*r->life)))) {
        free(r);
        return -ENOMEM;
    }
    r->life->refs = 1;
    r->o = *o;
    r->o.peers = NULL;
    r->o.site_name = NULL;
    r->o.secret = NULL;
    if (!r->o.heartbeat_timeout_ms)
        r->o.heartbeat_timeout_ms = r->o.heartbeat_ms;
    if (!r->o.max_clock_skew_ms)
        r->o.max_clock_skew_ms = 900000;
    r->connect_timeout_ms = 3 * r->o.heartbeat_ms < 1000 ? 1000 : 3 * r->o.heartbeat_ms;
    r->site_id = o->site_id;
    r->features = test_features();
    r->test_dcheck_faults = test_dcheck_faults();
    r->dc_mac = repl__dcheck_mac_fetch();
    if ((r->features & REPL_FEATURE_DATA_CHECK) && !r->dc_mac) {
        /* an OpenSSL without Poly1305 (a FIPS-only provider set): neither
         * send checks nor announce that we take them; peers compare MD5s */
        r->features &= ~REPL_FEATURE_DATA_CHECK;
        MRD_WARN("repl.data_check_unavailable",
                 "reason=\"OpenSSL offers no Poly1305: object data is checked by MD5, "
                 "as with a peer from before data checks\"");
    }
    snprintf(r->site_name, sizeof(r->site_name), "%s", o->site_name ? o->site_name : "");
    r->secret_len = o->secret ? strlen(o->secret) : 0;
    r->secret = r->secret_len ? strdup(o->secret) : NULL;
    if (r->secret_len && !r->secret) {
        rc = -ENOMEM;
        goto fail;
    }
    if (getrandom(&r->boot_id, sizeof(r->boot_id), 0) != sizeof(r->boot_id))
        r->boot_id = now ^ ((uint64_t)getpid() << 32);
    r->rng = r->boot_id | 1;
    if (o->hlc) {
        r->hlc = o->hlc;
    } else {
        rc = mrd_hlc_new(NULL, NULL, &r->hlc);
        if (rc < 0)
            goto fail;
        r->own_hlc = 1;
    }
    r->tick_ev = event_new(base, -1, EV_PERSIST, tick_cb, r);
    if (!r->tick_ev) {
        rc = -ENOMEM;
        goto fail;
    }
    for (int i = 0; i < o->n_peers; i++) {
        rc = repl__peer_init(r, i, &o->peers[i]);
        r->n_peers = i + 1;
        if (rc < 0)
            goto fail;
    }
    repl__topo_init(r, o);
    if ((rc = repl__topo_start(r)) < 0)
        goto fail;
    if (o->listener) {
        r->listener = o->listener;
        evconnlistener_disable(r->listener);
        evconnlistener_set_cb(r->listener, accept_cb, r);
    } else {
        rc = bind_listener(r, &o->listen);
        if (rc < 0)
            goto fail;
    }
    *out = r;
    return 0;
fail:
    repl_free(r);
    return rc;
}

int
repl_start(repl *r)
{
    struct timeval tv;

    if (!r || r->started)
        return MRD_EINVAL;
    r->started = 1;
    evconnlistener_enable(r->listener);
    for (int i = 0; i < r->n_peers; i++)
        if (!r->peers[i].removed)
            repl__client_start(&r->peers[i]);
    tv.tv_sec = r->o.heartbeat_ms / 1000;
    tv.tv_usec = (r->o.heartbeat_ms % 1000) * 1000;
    event_add(r->tick_ev, &tv);
    MRD_INFO("repl.start", "site_id=%u peers=%d heartbeat_ms=%u down_after=%u up_after=%u",
             r->site_id, r->n_peers, r->o.heartbeat_ms, r->o.down_after, r->o.up_after);
    return 0;
}

void
repl_free(repl *r)
{
    if (!r)
        return;
    r->started = 0;
    for (int i = 0; i < r->n_peers; i++)
        repl__client_stop(&r->peers[i]);
    while (r->inbound) {
        repl__conn *c = r->inbound;

        r->inbound = c->next;
        repl__conn_free(c);
    }
    /* every stream is gone now; then the queues and the WAL readers, which
     * must be closed before the engine closes the WAL */
    for (int i = 0; i < r->n_peers; i++) {
        repl__rx_peer_free(&r->peers[i]);
        repl__tx_free(&r->peers[i]);
    }
    repl__rx_pool_free(r);
    free(r->rdbuf);
    r->rdbuf = NULL;
    if (r->pump_ev)
        event_free(r->pump_ev);
    repl__topo_stop(r);
    if (r->listener) {
        if (r->own_listener) {
            evconnlistener_free(r->listener);
        } else {
            evconnlistener_disable(r->listener);
            evconnlistener_set_cb(r->listener, NULL, NULL);
        }
    }
    if (r->tick_ev)
        event_free(r->tick_ev);
    if (r->own_hlc)
        mrd_hlc_free(r->hlc);
    repl__dcheck_mac_free(r->dc_mac); /* checks still running hold their own reference */
    if (r->life) {
        r->life->dead = 1;
        repl__life_unref(r->life);
    }
    free(r->secret);
    free(r);
}

int
repl_listen_addr(const repl *r, mrd_addr *out)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    evutil_socket_t fd = r->listener ? evconnlistener_get_fd(r->listener) : -1;
    mrd_addr a;

    if (fd < 0 || getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return MRD_ENOTFOUND;
    memset(&a, 0, sizeof(a));
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;

        evutil_inet_ntop(AF_INET, &in->sin_addr, a.host, sizeof(a.host));
        a.port = ntohs(in->sin_port);
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

        evutil_inet_ntop(AF_INET6, &in6->sin6_addr, a.host, sizeof(a.host));
        a.port = ntohs(in6->sin6_port);
    } else {
        return MRD_ENOTFOUND;
    }
    *out = a;
    return 0;
}

/* ---- peer table --------------------------------------------------------- */

int
repl_peer_count(const repl *r)
{
    return r->n_peers;
}

int
repl_peer_get(const repl *r, int i, repl_peer_info *out)
{
    if (i < 0 || i >= r->n_peers || !out)
        return MRD_EINVAL;
    if (r->peers[i].removed)
        return MRD_ENOTFOUND;
    fill_info(&r->peers[i], mrd_clock_mono_ns(), out);
    return 0;
}

int
repl_peer_find(const repl *r, uint32_t site_id)
{
    for (int i = 0; i < r->n_peers; i++)
        if (r->peers[i].id == site_id && !r->peers[i].removed)
            return i;
    return MRD_ENOTFOUND;
}

int
repl_nearest_healthy(const repl *r, unsigned flags, const uint32_t *exclude, int n_exclude,
                     uint64_t min_high_water, repl_peer_info *out)
{
    int best = -1, best_rank = 3;
    double best_rtt = 0;

    for (int i = 0; i < r->n_peers; i++) {
        const repl_peer *p = &r->peers[i];
        int rank, skip = 0;

        if (p->removed)
            continue;
        if (p->health.state == REPL_PEER_HEALTHY)
            rank = 0;
        else if (p->health.state == REPL_PEER_DEGRADED && (flags & REPL_ROUTE_ALLOW_DEGRADED))
            rank = 1;
        else
            continue;
        for (int j = 0; j < n_exclude && exclude; j++)
            skip |= exclude[j] == p->id;
        if (skip || (min_high_water && p->high_water < min_high_water))
            continue;
        if (best < 0 || rank < best_rank || (rank == best_rank && p->health.rtt_us < best_rtt)) {
            best = i;
            best_rank = rank;
            best_rtt = p->health.rtt_us;
        }
    }
    if (best < 0)
        return MRD_ENOTFOUND;
    if (out)
        fill_info(&r->peers[best], mrd_clock_mono_ns(), out);
    return best;
}

void
repl_get_stats(const repl *r, repl_stats *out)
{
    *out = r->stats;
}

int
repl_status_json(const repl *r, mrd_json_w *w)
{
    uint64_t now = mrd_clock_mono_ns();
    char addr[300];
    mrd_addr la;

    mrd_json_w_obj_begin(w);
    mrd_json_w_key(w, "site_id");
    mrd_json_w_uint(w, r->site_id);
    mrd_json_w_key(w, "listen");
    if (repl_listen_addr(r, &la) == 0)
        mrd_json_w_str(w, mrd_addr_format(&la, addr, sizeof(addr)));
    else
        mrd_json_w_null(w);
    mrd_json_w_key(w, "heartbeat_ms");
    mrd_json_w_uint(w, r->o.heartbeat_ms);
    mrd_json_w_key(w, "inbound_open");
    mrd_json_w_uint(w, r->stats.inbound_open);
    mrd_json_w_key(w, "auth_failures");
    mrd_json_w_uint(w, r->stats.auth_failures);
    mrd_json_w_key(w, "bad_requests");
    mrd_json_w_uint(w, r->stats.bad_requests);
    mrd_json_w_key(w, "topology");
    mrd_json_w_obj_begin(w);
    mrd_json_w_key(w, "epoch");
    mrd_json_w_uint(w, r->topo.epoch);
    mrd_json_w_key(w, "hash");
    snprintf(addr, sizeof(addr), "%016llx", (unsigned long long)r->topo.hash);
    mrd_json_w_str(w, addr);
    mrd_json_w_key(w, "sites");
    mrd_json_w_uint(w, (uint64_t)r->topo.n);
    mrd_json_w_obj_end(w);
    mrd_json_w_key(w, "peers");
    mrd_json_w_arr_begin(w);
    for (int i = 0; i < r->n_peers; i++) {
        repl_peer_info pi;

        if (r->peers[i].removed)
            continue;
        fill_info(&r->peers[i], now, &pi);
        mrd_json_w_obj_begin(w);
        mrd_json_w_key(w, "name");
        mrd_json_w_str(w, pi.name);
        mrd_json_w_key(w, "id");
        mrd_json_w_uint(w, pi.id);
        mrd_json_w_key(w, "address");
        mrd_json_w_str(w, mrd_addr_format(&pi.addr, addr, sizeof(addr)));
        mrd_json_w_key(w, "state");
        mrd_json_w_str(w, repl_peer_state_name(pi.state));
        mrd_json_w_key(w, "state_age_ms");
        mrd_json_w_int(w, pi.state_age_ms);
        mrd_json_w_key(w, "connected");
        mrd_json_w_bool(w, pi.connected);
        mrd_json_w_key(w, "inbound");
        mrd_json_w_int(w, pi.inbound);
        mrd_json_w_key(w, "rtt_ms");
        mrd_json_w_double(w, pi.rtt_ms);
        mrd_json_w_key(w, "clock_offset_ms");
        mrd_json_w_int(w, pi.clock_offset_ms);
        mrd_json_w_key(w, "rtt_baseline_ms");
        mrd_json_w_double(w, pi.rtt_baseline_ms);
        mrd_json_w_key(w, "rtt_last_ms");
        mrd_json_w_double(w, pi.rtt_last_ms);
        mrd_json_w_key(w, "last_heartbeat_age_ms");
        mrd_json_w_int(w, pi.last_heartbeat_age_ms);
        mrd_json_w_key(w, "last_inbound_age_ms");
        mrd_json_w_int(w, pi.last_inbound_age_ms);
        mrd_json_w_key(w, "high_water_lsn");
        mrd_json_w_uint(w, pi.high_water_lsn);
        mrd_json_w_key(w, "applied_from_us");
        mrd_json_w_uint(w, pi.applied_from_us);
        mrd_json_w_key(w, "topology_epoch");
        mrd_json_w_uint(w, pi.topology_epoch);
        mrd_json_w_key(w, "consecutive_failures");
        mrd_json_w_uint(w, pi.consecutive_failures);
        mrd_json_w_key(w, "consecutive_successes");
        mrd_json_w_uint(w, pi.consecutive_successes);
        mrd_json_w_key(w, "heartbeats_ok");
        mrd_json_w_uint(w, pi.heartbeats_ok);
        mrd_json_w_key(w, "heartbeats_failed");
        mrd_json_w_uint(w, pi.heartbeats_failed);
        mrd_json_w_key(w, "auth_failures");
        mrd_json_w_uint(w, pi.auth_failures);
        mrd_json_w_key(w, "connects");
        mrd_json_w_uint(w, pi.connects);
        mrd_json_w_key(w, "bytes_in");
        mrd_json_w_uint(w, pi.bytes_in);
        mrd_json_w_key(w, "bytes_out");
        mrd_json_w_uint(w, pi.bytes_out);
        mrd_json_w_key(w, "last_error");
        mrd_json_w_str(w, pi.last_error);
        /* records we send it */
        mrd_json_w_key(w, "send");
        mrd_json_w_obj_begin(w);
        mrd_json_w_key(w, "streaming");
        mrd_json_w_bool(w, pi.streaming);
        mrd_json_w_key(w, "needs_resync");
        mrd_json_w_bool(w, pi.needs_resync);
        mrd_json_w_key(w, "acked_lsn");
        mrd_json_w_uint(w, pi.acked_lsn);
        mrd_json_w_key(w, "cursor_lsn");
        mrd_json_w_uint(w, pi.cursor_lsn);
        mrd_json_w_key(w, "read_lsn");
        mrd_json_w_uint(w, pi.read_lsn);
        mrd_json_w_key(w, "lag_records");
        mrd_json_w_uint(w, pi.lag_records);
        mrd_json_w_key(w, "lag_ms");
        mrd_json_w_double(w, pi.lag_ms);
        mrd_json_w_key(w, "lag_bytes");
        mrd_json_w_uint(w, pi.lag_bytes);
        mrd_json_w_key(w, "lag_bytes_partial");
        mrd_json_w_bool(w, pi.lag_bytes_partial);
        mrd_json_w_key(w, "queued");
        mrd_json_w_uint(w, pi.queued);
        mrd_json_w_key(w, "inflight");
        mrd_json_w_uint(w, pi.inflight);
        mrd_json_w_key(w, "inflight_bytes");
        mrd_json_w_uint(w, pi.inflight_bytes);
        mrd_json_w_key(w, "batches");
        mrd_json_w_uint(w, pi.batches_sent);
        mrd_json_w_key(w, "records");
        mrd_json_w_uint(w, pi.records_sent);
        mrd_json_w_key(w, "objects");
        mrd_json_w_uint(w, pi.objects_sent);
        mrd_json_w_key(w, "data_bytes");
        mrd_json_w_uint(w, pi.data_bytes_sent);
        mrd_json_w_key(w, "superseded_skipped");
        mrd_json_w_uint(w, pi.superseded_skipped);
        mrd_json_w_key(w, "data_check");
        mrd_json_w_str(w, pi.data_check);
        mrd_json_w_key(w, "errors");
        mrd_json_w_uint(w, pi.send_errors);
        mrd_json_w_key(w, "error");
        mrd_json_w_str(w, pi.send_error);
        mrd_json_w_key(w, "bandwidth_bps");
        mrd_json_w_uint(w, pi.bandwidth_bps);
        mrd_json_w_key(w, "failed_records");
        mrd_json_w_uint(w, pi.failed_records);
        mrd_json_w_key(w, "failed_unknown");
        mrd_json_w_bool(w, pi.failed_unknown);
        mrd_json_w_obj_end(w);
        mrd_json_w_key(w, "anti_entropy");
        mrd_json_w_obj_begin(w);
        mrd_json_w_key(w, "running");
        mrd_json_w_bool(w, pi.sync_running);
        mrd_json_w_key(w, "runs");
        mrd_json_w_uint(w, pi.sync_runs);
        mrd_json_w_key(w, "leaves_differ");
        mrd_json_w_uint(w, pi.sync_leaves_differ);
        mrd_json_w_key(w, "versions_sent");
        mrd_json_w_uint(w, pi.sync_versions_sent);
        mrd_json_w_key(w, "buckets_sent");
        mrd_json_w_uint(w, pi.sync_buckets_sent);
        mrd_json_w_key(w, "versions_estimate");
        mrd_json_w_uint(w, pi.sync_versions_estimate);
        mrd_json_w_key(w, "elapsed_ms");
        mrd_json_w_uint(w, pi.sync_elapsed_ms);
        mrd_json_w_key(w, "result");
        mrd_json_w_str(w, pi.sync_result);
        mrd_json_w_key(w, "tree");
        mrd_json_w_bool(w, pi.sync_tree);
        mrd_json_w_key(w, "digest_bytes");
        mrd_json_w_uint(w, pi.sync_digest_bytes);
        mrd_json_w_key(w, "digest_rounds");
        mrd_json_w_uint(w, pi.sync_digest_rounds);
        mrd_json_w_key(w, "push");
        mrd_json_w_str(w, pi.sync_push);
        mrd_json_w_key(w, "versions_skipped");
        mrd_json_w_uint(w, pi.sync_versions_skipped);
        mrd_json_w_key(w, "summaries");
        mrd_json_w_str(w, pi.sync_summaries);
        mrd_json_w_obj_end(w);
        /* its records applied here */
        mrd_json_w_key(w, "receive");
        mrd_json_w_obj_begin(w);
        mrd_json_w_key(w, "applied_lsn");
        mrd_json_w_uint(w, pi.applied_from_peer);
        mrd_json_w_key(w, "records");
        mrd_json_w_uint(w, pi.records_received);
        mrd_json_w_key(w, "objects");
        mrd_json_w_uint(w, pi.objects_received);
        mrd_json_w_key(w, "data_bytes");
        mrd_json_w_uint(w, pi.data_bytes_received);
        mrd_json_w_key(w, "duplicates");
        mrd_json_w_uint(w, pi.duplicates_received);
        mrd_json_w_key(w, "resync_versions");
        mrd_json_w_uint(w, pi.resync_versions_received);
        mrd_json_w_key(w, "errors");
        mrd_json_w_uint(w, pi.receive_errors);
        mrd_json_w_obj_end(w);
        mrd_json_w_obj_end(w);
    }
    mrd_json_w_arr_end(w);
    mrd_json_w_obj_end(w);
    return mrd_json_w_error(w);
}

/* ---- the whole cluster's links ------------------------------------------ */

static const char *
site_name(const repl *r, uint32_t id, char *buf, size_t n)
{
    for (int i = 0; i < r->topo.n; i++)
        if (r->topo.sites[i].id == id)
            return r->topo.sites[i].name;
    if (id == r->site_id)
        return r->site_name;
    for (int i = 0; i < r->n_peers; i++)
        if (r->peers[i].id == id)
            return r->peers[i].name;
    snprintf(buf, n, "site-%u", id);
    return buf;
}

static void
w_link(const repl *r, mrd_json_w *w, uint32_t from, const repl__link *l, int64_t age_ms)
{
    char b1[24], b2[24];

    mrd_json_w_obj_begin(w);
    mrd_json_w_key(w, "from");
    mrd_json_w_str(w, site_name(r, from, b1, sizeof(b1)));
    mrd_json_w_key(w, "to");
    mrd_json_w_str(w, site_name(r, l->peer_site, b2, sizeof(b2)));
    mrd_json_w_key(w, "state");
    mrd_json_w_str(w, repl_peer_state_name((repl_peer_state)l->state));
    mrd_json_w_key(w, "connected");
    mrd_json_w_bool(w, l->connected);
    mrd_json_w_key(w, "rtt_ms");
    mrd_json_w_double(w, (double)l->rtt_us / 1000.0);
    mrd_json_w_key(w, "lag_records");
    mrd_json_w_uint(w, l->lag_records);
    mrd_json_w_key(w, "lag_bytes");
    mrd_json_w_uint(w, l->lag_bytes);
    mrd_json_w_key(w, "oldest_unreplicated_age_ms");
    mrd_json_w_uint(w, l->lag_ms);
    mrd_json_w_key(w, "acked_lsn");
    mrd_json_w_uint(w, l->acked_lsn);
    mrd_json_w_key(w, "sent_bytes");
    mrd_json_w_uint(w, l->sent_bytes);
    mrd_json_w_key(w, "throughput_bps");
    mrd_json_w_uint(w, l->throughput_bps);
    mrd_json_w_key(w, "errors");
    mrd_json_w_uint(w, l->send_errors);
    mrd_json_w_key(w, "last_error");
    mrd_json_w_str(w, l->last_error);
    mrd_json_w_key(w, "reported_by");
    mrd_json_w_str(w, site_name(r, from, b1, sizeof(b1)));
    mrd_json_w_key(w, "age_ms");
    mrd_json_w_int(w, age_ms);
    mrd_json_w_obj_end(w);
}

int
repl_cluster_json(const repl *r, mrd_json_w *w)
{
    uint64_t now = mrd_clock_mono_ns();

    mrd_json_w_obj_begin(w);
    mrd_json_w_key(w, "links");
    mrd_json_w_arr_begin(w);
    for (int i = 0; i < r->n_peers; i++) {
        repl__link l;

        if (r->peers[i].removed)
            continue;
        link_of(&r->peers[i], now, &l);
        w_link(r, w, r->site_id, &l, 0);
    }
    for (int i = 0; i < r->n_peers; i++) {
        const repl_peer *p = &r->peers[i];

        if (p->removed || !p->links_ns)
            continue;
        for (int k = 0; k < p->n_links; k++)
            w_link(r, w, p->id, &p->links[k], (int64_t)((now - p->links_ns) / 1000000));
    }
    mrd_json_w_arr_end(w);
    mrd_json_w_obj_end(w);
    return mrd_json_w_error(w);
}
