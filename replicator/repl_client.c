/*
 * repl_client.c - the outbound side: one HTTP/2 session per peer, Hello,
 * heartbeats, reconnects.
 *
 * Each peer has at most one outbound connection, dialled at repl_start. The
 * first request on it is POST /repl/v1/hello; the session counts as up
 * ("connected") only once the peer has answered it with a correctly signed
 * Hello from the site id we expect, so a misconfigured address (another
 * site, or something that is not Meridian) never looks healthy. A heartbeat
 * goes out right after the Hello and then at every tick of the replicator's
 * timer; the rules that turn their outcomes into health are in
 * replicator.h and repl_health.c. At most one heartbeat per peer is in
 * flight: one that is not answered within the timeout is cancelled with
 * RST_STREAM (CANCEL) and counted as a failure, so a partition cannot pile
 * up streams.
 *
 * Reconnects use exponential backoff with jitter (uniform in [d/2, d],
 * d = min(max, min * 2^attempt)), so sites that lose each other at the same
 * moment do not redial in lock step; a successful Hello resets the attempt
 * count. A Hello from the peer on the connection it dialled cuts the delay
 * short (repl__client_peer_is_back): the peer is up again, and a catch-up
 * after its outage would otherwise wait up to backoff_max for our redial
 * (measured: 2.8 s of a 7.2 s catch-up). A connection that never finishes its Hello (e.g. a WAN
 * emulator that accepts but holds traffic) is dropped after max(3 * I, 1 s), and one whose
 * heartbeats time out N times in a row is dropped too: it may be a half-open socket to a peer that
 * restarted behind a partition.
 *
 * Later (PROTOCOL.md, planned) the sender's record streams ride on the same
 * session, which is why the session is kept rather than made per heartbeat.
 */
#include "repl_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <event2/event.h>
#include <nghttp2/nghttp2.h>

static void dial(repl_peer *p);

static void
reconnect_cb(evutil_socket_t fd, short what, void *ud)
{
    repl_peer *p = ud;

    if (!p->conn)
        dial(p);
}

static void
schedule_reconnect(repl_peer *p)
{
    repl *r = p->r;
    uint64_t d = r->o.backoff_min_ms;
    struct timeval tv;

    for (uint32_t i = 0; i < p->backoff_attempt && d < r->o.backoff_max_ms; i++)
        d *= 2;
    if (d > r->o.backoff_max_ms)
        d = r->o.backoff_max_ms;
    d = d / 2 + repl__rand(r) % (d / 2 + 1);
    if (p->backoff_attempt < 64)
        p->backoff_attempt++;
    tv.tv_sec = (time_t)(d / 1000);
    tv.tv_usec = (suseconds_t)(d % 1000) * 1000;
    evtimer_add(p->reconnect_ev, &tv);
}

static void
dial(repl_peer *p)
{
    repl *r = p->r;
    repl__conn *c;
    int rc;

    rc = repl__conn_new(r, 1, -1, &c);
    if (rc < 0) {
        snprintf(p->last_error, sizeof(p->last_error), "connect: %s", mrd_strerror(rc));
        schedule_reconnect(p);
        return;
    }
    c->peer = p;
    p->conn = c;
    p->hello_done = 0;
    p->conn_started_ns = mrd_clock_mono_ns();
    rc = repl__conn_dial(c);
    if (rc < 0) {
        repl__conn_fail(c, mrd_strerror(rc));
        repl__conn_reap(c);
    }
}

void
repl__client_peer_is_back(repl_peer *p)
{
    struct timeval now = {0, 0};

    if (p->conn || !p->reconnect_ev || !evtimer_pending(p->reconnect_ev, NULL))
        return;
    evtimer_del(p->reconnect_ev);
    evtimer_add(p->reconnect_ev, &now); /* dial from the loop, not from nghttp2's callback */
}

int
repl__client_init(repl_peer *p)
{
    p->reconnect_ev = evtimer_new(p->r->base, reconnect_cb, p);
    return p->reconnect_ev ? 0 : -ENOMEM;
}

void
repl__client_start(repl_peer *p)
{
    dial(p);
}

static int
send_message(repl_peer *p, int kind)
{
    repl__conn *c = p->conn;
    repl__stream *s;
    repl__msg m;
    int rc;

    s = repl__stream_new(c, kind);
    if (!s)
        return -ENOMEM;
    repl__local_state(p->r, &m);
    m.is_hello = kind == REPL__ST_HELLO;
    m.seq = kind == REPL__ST_HEARTBEAT ? ++p->hb_seq : 0;
    s->seq = m.seq;
    rc = repl__msg_encode(&m, &s->out);
    if (rc == 0)
        rc = repl__submit_request(c, s, m.is_hello ? REPL_PATH_HELLO : REPL_PATH_HEARTBEAT);
    if (rc < 0) {
        repl__stream_unlink_free(c, s);
        return rc;
    }
    s->sent_ns = mrd_clock_mono_ns();
    if (kind == REPL__ST_HEARTBEAT) {
        p->hb = s;
    }
    return 0;
}

void
repl__client_on_connected(repl__conn *c)
{
    int rc = send_message(c->peer, REPL__ST_HELLO);

    if (rc < 0)
        repl__conn_fail(c, "cannot submit hello");
}

/* Checks the peer's signature on a complete answer; NULL when it holds. */
static const char *
check_signature(repl__conn *c, repl__stream *s)
{
    repl_peer *p = c->peer;
    repl *r = c->r;
    repl__auth_in in;
    const char *reason = NULL;
    char method[16];
    uint32_t site = 0;

    if (s->too_big || s->bad_header)
        return "oversized response or headers";
    snprintf(method, sizeof(method), "RESP %d", s->status);
    memset(&in, 0, sizeof(in));
    in.method = method;
    in.path = s->req_auth;
    in.site = s->site[0] ? s->site : NULL;
    in.time = s->time[0] ? s->time : NULL;
    in.auth = s->auth[0] ? s->auth : NULL;
    in.body = s->in.data;
    in.body_len = s->in.len;
    if (repl__auth_verify(r->secret, r->secret_len, &in, repl__now_ms(r), r->o.max_clock_skew_ms,
                          &reason, &site) < 0) {
        p->auth_failures++;
        MRD_WARN("repl.auth.fail", "side=client peer=%s remote=%s reason=\"%s\"", p->name,
                 c->remote, reason);
        return "response failed authentication";
    }
    if (site != p->id)
        return "response from an unexpected site id";
    return NULL;
}

/* When the peer's answer shows it authenticates the other way (a secret
 * here and the mutual-TLS marker there, or the reverse), the reason to give
 * for its 401; else NULL. */
static const char *
mode_mismatch(const repl__conn *c, const repl__stream *s)
{
    int marker = strcmp(s->auth, REPL_AUTH_MTLS) == 0;

    if (c->r->secret && marker)
        return REPL_AUTH_WHY_PEER_NO_SECRET;
    if (!c->r->secret && s->auth[0] && !marker)
        return REPL_AUTH_WHY_PEER_SECRET;
    return NULL;
}

const char *
repl__client_check_auth(repl__conn *c, repl__stream *s, uint32_t error_code)
{
    if (error_code != 0)
        return "stream reset by peer";
    if (s->status == 401) {
        c->peer->auth_failures++;
        return mode_mismatch(c, s) ? mode_mismatch(c, s)
                                   : "peer answered 401: it rejected our signature (replication "
                                     "secret differs?)";
    }
    if (s->status != 200)
        return s->status == 400 ? "peer answered 400" : "peer answered an error status";
    return check_signature(c, s);
}

/* A Hello answered 410: the peer says this site was removed from the
 * topology, and sends the topology. If the answer is the peer's and the
 * topology is newer than ours and lacks us, it is offered for adoption
 * (repl__topo_offer), which drops every peer and says so. */
static void
on_removed_answer(repl__conn *c, repl__stream *s)
{
    const char *why = check_signature(c, s);
    repl_topology t;
    int self = 0;

    if (!why && repl__topo_decode(s->in.data, s->in.len, &t, &why) == 0) {
        for (int i = 0; i < t.n; i++)
            self |= t.sites[i].id == c->r->site_id;
        if (self)
            why = "its topology still holds this site";
    }
    if (why) {
        MRD_WARN("repl.peer.removed_answer_bad", "peer=%s reason=\"%s\"", c->peer->name, why);
        return;
    }
    MRD_WARN("repl.peer.says_removed", "peer=%s epoch=%llu", c->peer->name,
             (unsigned long long)t.epoch);
    repl__topo_offer(c->r, &t);
}

/* Checks a complete Hello or Heartbeat response; NULL when it is good. */
static const char *
check_response(repl__conn *c, repl__stream *s, uint32_t error_code, repl__msg *m)
{
    repl_peer *p = c->peer;
    const char *why = repl__client_check_auth(c, s, error_code);

    if (why)
        return why;
    if (repl__msg_decode(s->in.data, s->in.len, s->kind == REPL__ST_HELLO, m) < 0)
        return "malformed response body";
    if (m->st.site_id != p->id)
        return "response body names another site";
    if (s->kind == REPL__ST_HELLO && m->protocol_version != REPL_PROTOCOL_VERSION)
        return "unsupported protocol version";
    return NULL;
}

void
repl__client_on_stream_close(repl__conn *c, repl__stream *s, uint32_t error_code)
{
    repl_peer *p = c->peer;
    const char *why;
    repl__msg m;

    if (s->kind == REPL__ST_RECORDS) {
        repl__tx_on_stream_close(c, s, error_code);
        return;
    }
    if (s->kind == REPL__ST_DIGEST) {
        repl__tx_on_digest(c, s, error_code);
        return;
    }
    if (s->kind == REPL__ST_TOPOLOGY) {
        repl__topo_on_fetched(c, s, error_code);
        return;
    }
    if (s->kind != REPL__ST_HELLO && s->kind != REPL__ST_HEARTBEAT)
        return; /* streams of other kinds have their own owners */
    if (s->kind == REPL__ST_HEARTBEAT) {
        if (p->hb != s)
            return; /* cancelled at a timeout, already counted */
        p->hb = NULL;
    }
    if (s->kind == REPL__ST_HELLO && error_code == 0 && s->status == 410) {
        on_removed_answer(c, s);
        snprintf(p->last_error, sizeof(p->last_error), "hello: %s",
                 "the peer says this site was removed from the topology");
        repl__conn_fail(c, "removed from the topology");
        return;
    }
    why = check_response(c, s, error_code, &m);
    if (s->kind == REPL__ST_HELLO) {
        if (why) {
            char err[sizeof(p->last_error)];
            int level;

            /* Loud once, and again when the reason changes (a peer that
             * refused connections first, then answers 401); repeats while
             * backing off go to debug. */
            snprintf(err, sizeof(err), "hello: %s", why);
            level = p->backoff_attempt == 0 || strcmp(err, p->last_error) != 0 ? MRD_LOG_WARN
                                                                               : MRD_LOG_DEBUG;
            MRD_LOG(level, "repl.peer.hello_fail", "peer=%s remote=%s reason=\"%s\"", p->name,
                    c->remote, why);
            snprintf(p->last_error, sizeof(p->last_error), "%s", err);
            repl__conn_fail(c, why);
            return;
        }
        p->hello_done = 1;
        p->features = m.features;
        p->conn_error[0] = '\0';
        p->conn_timeouts = 0;
        p->backoff_attempt = 0;
        p->connects++;
        repl__peer_absorb(p, &m.st);
        MRD_INFO("repl.peer.connected", "peer=%s id=%u remote=%s high_water=%llu", p->name, p->id,
                 c->remote, (unsigned long long)p->high_water);
        if (!p->hb && send_message(p, REPL__ST_HEARTBEAT) < 0)
            repl__conn_fail(c, "cannot submit heartbeat");
        repl__tx_on_connected(p);
        return;
    }
    if (why) {
        repl__peer_outcome(p, 0, 0, why);
        return;
    }
    p->conn_timeouts = 0;
    repl__peer_absorb(p, &m.st);
    repl__peer_outcome(p, 1, (mrd_clock_mono_ns() - s->sent_ns) / 1000, NULL);
}

void
repl__client_on_closed(repl__conn *c)
{
    repl_peer *p = c->peer;

    if (p->hb) {
        char why[128];

        p->hb = NULL;
        snprintf(why, sizeof(why), "connection lost: %s", c->why);
        repl__peer_outcome(p, 0, 0, why);
    }
    if (p->hello_done)
        MRD_INFO("repl.peer.disconnected", "peer=%s remote=%s reason=\"%s\"", p->name, c->remote,
                 c->why);
    else if (p->backoff_attempt == 0 && !strstr(c->why, "401"))
        MRD_WARN("repl.peer.connect_fail", "peer=%s remote=%s reason=\"%s\"", p->name, c->remote,
                 c->why);
    else
        MRD_DEBUG("repl.peer.connect_fail", "peer=%s remote=%s reason=\"%s\" attempt=%u", p->name,
                  c->remote, c->why, p->backoff_attempt);
    if (!p->last_error[0] || p->hello_done)
        snprintf(p->last_error, sizeof(p->last_error), "%s", c->why);
    if (!p->hello_done) /* shown with every "disconnected" until a Hello succeeds */
        snprintf(p->conn_error, sizeof(p->conn_error), "%s", c->why);
    repl__tx_on_disconnected(p);
    p->conn = NULL;
    p->hello_done = 0;
    repl__conn_free(c);
    if (p->r->started)
        schedule_reconnect(p);
}

static void
drop(repl_peer *p, const char *why)
{
    repl__conn_fail(p->conn, why);
    repl__conn_reap(p->conn);
}

void
repl__client_tick(repl_peer *p)
{
    repl *r = p->r;
    repl__conn *c = p->conn;

    if (!c || !p->hello_done) {
        char why[sizeof(p->last_error)];

        /* Say why the last dial failed (a refused TLS certificate, a 401...),
         * not only that there is no session. */
        snprintf(why, sizeof(why), "%s%s%.80s", c ? "connecting" : "disconnected",
                 p->conn_error[0] ? ": " : "", p->conn_error);
        repl__peer_outcome(p, 0, 0, why);
        if (c && (mrd_clock_mono_ns() - p->conn_started_ns) / 1000000 >= r->connect_timeout_ms)
            drop(p, "no hello answer in time");
        return;
    }
    if (p->hb) {
        /* Timed out at the first tick at which it has been in flight for
         * T (less a tenth of an interval of timer slack). A heartbeat sent
         * between ticks (right after Hello) thus gets a full T too. */
        uint64_t age_ms = (mrd_clock_mono_ns() - p->hb->sent_ns) / 1000000;

        if (age_ms + r->o.heartbeat_ms / 10 < r->o.heartbeat_timeout_ms)
            return; /* in flight, still in time: no outcome this tick */
        nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, p->hb->id, NGHTTP2_CANCEL);
        p->hb = NULL;
        /* A connection busy with record streams queues the heartbeat behind
         * megabytes of data in TCP buffers: it counts as a failed heartbeat
         * (health) but, while bytes keep arriving, not as a dead connection. */
        if ((mrd_clock_mono_ns() - c->last_rx_ns) / 1000000 >= r->o.heartbeat_ms)
            p->conn_timeouts++;
        repl__peer_outcome(p, 0, 0, "heartbeat timeout");
        if (p->conn_timeouts >= p->health.down_after) {
            drop(p, "heartbeats timing out");
            return;
        }
    }
    if (send_message(p, REPL__ST_HEARTBEAT) < 0)
        repl__peer_outcome(p, 0, 0, "cannot submit heartbeat");
    repl__conn_flush(c);
    if (c->dead)
        repl__conn_reap(c);
}

void
repl__client_stop(repl_peer *p)
{
    if (p->reconnect_ev) {
        event_free(p->reconnect_ev);
        p->reconnect_ev = NULL;
    }
    if (p->conn) {
        repl__conn_free(p->conn);
        p->conn = NULL;
    }
    p->hb = NULL;
    p->hello_done = 0;
}
