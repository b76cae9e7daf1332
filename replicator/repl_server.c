/*
 * repl_server.c - the inbound side: accepts peers' connections on the
 * replication listener and answers Hello and Heartbeat requests.
 *
 * Every request is authenticated on its own (repl_auth.c) before anything
 * in it is believed: the signature covers method, path, the claimed site id,
 * the time and a hash of the body, so the body is read first (at most
 * REPL_MAX_CTRL_BODY; more is answered 413 at once) and the check runs at
 * END_STREAM. Outcomes:
 *   - bad or missing auth headers, wrong signature, time outside the skew
 *     window, a site id that is not a configured peer (or is our own), or a
 *     site id other than the one this connection first authenticated as:
 *     401 with a one-line reason, an MRD_WARN log line with the remote
 *     address and the reason, and the connection is finished: no further
 *     request on it is served, and after the 401 has gone out the session
 *     sends GOAWAY and the socket closes;
 *   - a body that does not decode, or whose site id differs from the header:
 *     400; wrong method 405; unknown path 404. The connection stays up (the
 *     peer is authenticated; a bug in it should not cost the link).
 * The first authenticated request binds the connection to that peer, so
 * per-peer counters (bytes, inbound connection count) are attributed.
 *
 * Resource bounds: at most REPL_MAX_INBOUND connections (more are closed at
 * accept), at most REPL_MAX_STREAMS concurrent streams per connection (an
 * HTTP/2 setting nghttp2 enforces), header values capped by
 * REPL_HDR_VALUE_MAX, header lists by SETTINGS_MAX_HEADER_LIST_SIZE. A
 * connection that has not authenticated within REPL_AUTH_DEADLINE_MS, or
 * that has been silent for max(REPL_IDLE_MIN_MS, 5 heartbeat intervals), is
 * closed.
 */
#include "repl_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <nghttp2/nghttp2.h>

static void
unlink_conn(repl *r, repl__conn *c)
{
    for (repl__conn **pp = &r->inbound; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            return;
        }
    }
}

void
repl__server_on_closed(repl__conn *c)
{
    repl *r = c->r;

    MRD_DEBUG("repl.inbound.close", "remote=%s peer=%s reason=\"%s\"", c->remote,
              c->peer ? c->peer->name : "-", c->why);
    unlink_conn(r, c);
    if (c->peer)
        c->peer->inbound--;
    r->stats.inbound_open--;
    repl__conn_free(c);
}

static void
timer_cb(evutil_socket_t fd, short what, void *ud)
{
    repl__conn *c = ud;
    repl *r = c->r;
    uint64_t idle_ms = (mrd_clock_mono_ns() - c->last_rx_ns) / 1000000;
    uint64_t idle_max = 5ull * r->o.heartbeat_ms;

    if (idle_max < REPL_IDLE_MIN_MS)
        idle_max = REPL_IDLE_MIN_MS;
    if (!c->peer && !c->reject) {
        repl__conn_fail(c, "no authenticated request in time");
        MRD_WARN("repl.inbound.timeout", "remote=%s reason=\"no authenticated request in %d ms\"",
                 c->remote, REPL_AUTH_DEADLINE_MS);
    } else if (idle_ms >= idle_max) {
        repl__conn_fail(c, "idle");
    } else {
        struct timeval tv = {1, 0};

        evtimer_add(c->timer, &tv);
        return;
    }
    repl__conn_reap(c);
}

void
repl__server_accept(repl *r, int fd, const char *remote)
{
    repl__conn *c;
    struct timeval tv = {REPL_AUTH_DEADLINE_MS / 1000, (REPL_AUTH_DEADLINE_MS % 1000) * 1000};

    r->stats.inbound_accepted++;
    if (r->stats.inbound_open >= REPL_MAX_INBOUND) {
        r->stats.inbound_rejected++;
        MRD_WARN("repl.inbound.reject", "remote=%s reason=\"over %d connections\"", remote,
                 REPL_MAX_INBOUND);
        close(fd);
        return;
    }
    if (repl__conn_new(r, 0, fd, &c) < 0)
        return; /* fd closed by repl__conn_new */
    snprintf(c->remote, sizeof(c->remote), "%s", remote);
    c->timer = evtimer_new(r->base, timer_cb, c);
    if (!c->timer) {
        repl__conn_free(c);
        return;
    }
    evtimer_add(c->timer, &tv);
    c->next = r->inbound;
    r->inbound = c;
    r->stats.inbound_open++;
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    repl__conn_flush(c); /* our SETTINGS */
    if (c->dead)
        repl__conn_reap(c);
}

void
repl__server_answer_text(repl__conn *c, repl__stream *s, int status, const char *text)
{
    char line[160];
    int n = snprintf(line, sizeof(line), "%s\n", text);

    if (status != 401)
        c->r->stats.bad_requests++;
    if (repl__submit_response(c, s, status, line, (size_t)n) < 0)
        repl__conn_fail(c, "cannot submit response");
}

static void
reject(repl__conn *c, repl__stream *s, const char *reason)
{
    repl *r = c->r;
    char q[160];
    uint32_t site = 0;
    repl_peer *p;

    r->stats.auth_failures++;
    if (repl__parse_site(s->site, &site) == 0 && (p = repl__peer_by_id(r, site)) != NULL)
        p->auth_failures++;
    MRD_WARN("repl.auth.fail", "side=server remote=%s claimed_site=%s path=%s reason=\"%s\"",
             c->remote, s->site[0] ? mrd_log_quote(s->site, q, sizeof(q)) : "-",
             s->path[0] ? s->path : "-", reason);
    c->reject = 1;
    repl__server_answer_text(c, s, 401, reason);
}

/* Whether removed site id was told before (and notes that it now is). */
static int
told_before(repl *r, uint32_t id)
{
    for (int i = 0; i < REPL_TOPO_MAX_REMOVED; i++)
        if (r->told_removed[i] == id)
            return 1;
    r->told_removed[r->told_next] = id;
    r->told_next = (r->told_next + 1) % REPL_TOPO_MAX_REMOVED;
    return 0;
}

/* A site removed from the topology asks again (it was cut off before it
 * heard, or asks after its peers restarted): answer 410 with the topology,
 * signed as any answer, so it can adopt it and stop (PROTOCOL.md section
 * 9). Its connection closes after. */
static void
tell_removed(repl__conn *c, repl__stream *s, uint32_t id, const char *name)
{
    mrd_buf b = {0};
    int level = told_before(c->r, id) ? MRD_LOG_DEBUG : MRD_LOG_INFO; /* MRD_LOG reads it twice */

    MRD_LOG(level, "repl.peer.told_removed", "peer=%s remote=%s epoch=%llu", name, c->remote,
            (unsigned long long)c->r->topo.epoch);
    c->reject = 1;
    if (repl__topo_encode(&c->r->topo, &b) != 0 ||
        repl__submit_response(c, s, 410, b.data, b.len) < 0)
        repl__conn_fail(c, "cannot submit response");
    mrd_buf_free(&b);
}

/* Records how far the peer's clock is from ours and says so, once, when it
 * is more than a minute off: HLCs keep conflict decisions correct under
 * skew (docs/conflicts.md), but an operator wants to know, and past
 * max_clock_skew the peer's requests are refused. */
static void
clock_offset_note(repl *r, repl_peer *p, int64_t offset)
{
    int64_t mag = offset < 0 ? -offset : offset;

    p->clock_offset_ms = offset;
    if (!p->clock_skew_warned && mag > 60000) {
        p->clock_skew_warned = 1;
        MRD_WARN("repl.peer.clock_skew", "peer=%s offset_ms=%lld max_clock_skew_s=%u", p->name,
                 (long long)offset, r->o.max_clock_skew_ms / 1000u);
    } else if (p->clock_skew_warned && mag < 30000) {
        p->clock_skew_warned = 0;
        MRD_INFO("repl.peer.clock_skew_ok", "peer=%s offset_ms=%lld", p->name, (long long)offset);
    }
}

repl_peer *
repl__server_auth(repl__conn *c, repl__stream *s, const void *body, size_t len)
{
    repl *r = c->r;
    uint64_t now;
    int64_t offset;
    repl__auth_in in;
    const char *reason = NULL, *gone;
    uint32_t site = 0;
    repl_peer *p;

    if (c->reject) {
        repl__server_answer_text(c, s, 401, "connection already failed authentication");
        return NULL;
    }
    memset(&in, 0, sizeof(in));
    in.method = s->method[0] ? s->method : NULL;
    in.path = s->path[0] ? s->path : NULL;
    in.site = s->site[0] ? s->site : NULL;
    in.time = s->time[0] ? s->time : NULL;
    in.auth = s->auth[0] ? s->auth : NULL;
    in.body = body;
    in.body_len = len;
    now = repl__now_ms(r);
    offset = s->time[0] ? (int64_t)(strtoull(s->time, NULL, 10) - now) : 0;
    if (repl__auth_verify(r->secret, r->secret_len, &in, now, r->o.max_clock_skew_ms, &reason,
                          &site) < 0) {
        char why[200];
        if (strstr(reason, "clock-skew")) {
            /* say by how much, and which knob: a skewed site is an
             * operations problem, not an attack, most of the time */
            snprintf(why, sizeof(why), "%s: %+.0f s from this site's clock, max_clock_skew is %u s",
                     reason, (double)offset / 1000.0, r->o.max_clock_skew_ms / 1000u);
            reason = why;
        }
        reject(c, s, reason);
        return NULL;
    }
    p = repl__peer_by_id(r, site);
    if (!p && site != r->site_id && (gone = repl__removed_name(r, site)) != NULL) {
        if (!r->secret && c->tls_site != site) /* only the certificate vouches for it */
            reject(c, s, "site id differs from the site named by the TLS client certificate");
        else
            tell_removed(c, s, site, gone);
        return NULL;
    }
    if (!p) {
        reject(c, s,
               site == r->site_id ? "site id is our own" : "site id is not a configured peer");
        return NULL;
    }
    if (c->peer && c->peer != p) {
        reject(c, s, "site id differs from the one this connection authenticated as");
        return NULL;
    }
    if (c->tls && c->tls_peer != p) {
        reject(c, s, "site id differs from the site named by the TLS client certificate");
        return NULL;
    }
    if (!c->peer) {
        c->peer = p;
        p->inbound++;
        p->bytes_in += c->bytes_in;
        p->bytes_out += c->bytes_out;
    }
    p->last_inbound_ns = mrd_clock_mono_ns();
    clock_offset_note(r, p, offset);
    return p;
}

void
repl__server_on_request(repl__conn *c, repl__stream *s)
{
    repl *r = c->r;
    repl_peer *p;
    repl__msg m, resp;
    mrd_buf body = {0};
    int is_hello, rc;
    uint32_t site;

    if ((strcmp(s->path, REPL_PATH_RECORDS) == 0 || strcmp(s->path, REPL_PATH_RESYNC) == 0) &&
        !s->bad_header) {
        repl__rx_end(c, s);
        return;
    }
    if (c->reject) {
        repl__server_answer_text(c, s, 401, "connection already failed authentication");
        return;
    }
    if (s->too_big) {
        repl__server_answer_text(c, s, 413, "body over the control message limit");
        return;
    }
    if (s->bad_header) {
        repl__server_answer_text(c, s, 400, "a header is repeated, empty or too long");
        return;
    }
    if (!(p = repl__server_auth(c, s, s->in.data, s->in.len)))
        return;
    site = p->id;
    if (strcmp(s->method, "POST") != 0) {
        repl__server_answer_text(c, s, 405, "only POST is served");
        return;
    }
    if (strcmp(s->path, REPL_PATH_DIGEST) == 0) {
        repl__digest_serve(c, s, p);
        return;
    }
    if (strcmp(s->path, REPL_PATH_TOPOLOGY) == 0) {
        repl__topo_serve(c, s);
        return;
    }
    if (strcmp(s->path, REPL_PATH_HELLO) == 0)
        is_hello = 1;
    else if (strcmp(s->path, REPL_PATH_HEARTBEAT) == 0)
        is_hello = 0;
    else {
        repl__server_answer_text(c, s, 404, "no such replication endpoint");
        return;
    }
    if (repl__msg_decode(s->in.data, s->in.len, is_hello, &m) < 0) {
        repl__server_answer_text(c, s, 400, "malformed protobuf body");
        return;
    }
    if (m.st.site_id != site) {
        repl__server_answer_text(c, s, 400, "body site id differs from x-meridian-site-id");
        return;
    }
    if (is_hello && m.protocol_version != REPL_PROTOCOL_VERSION) {
        repl__server_answer_text(c, s, 400, "unsupported protocol version");
        return;
    }
    repl__peer_absorb(p, &m.st);
    if (is_hello)
        repl__client_peer_is_back(p);
    else
        r->stats.heartbeats_served++;

    repl__local_state(r, &resp);
    resp.is_hello = is_hello;
    resp.seq = m.seq;
    rc = repl__msg_encode(&resp, &body);
    if (rc == 0)
        rc = repl__submit_response(c, s, 200, body.data, body.len);
    mrd_buf_free(&body);
    if (rc < 0)
        repl__conn_fail(c, "cannot submit response");
}

void
repl__server_on_stream_close(repl__conn *c, repl__stream *s)
{
    /* The 401 has gone out: finish the session (GOAWAY, then close once
     * nghttp2 wants neither to read nor to write). */
    if (c->reject)
        nghttp2_session_terminate_session(c->h2, NGHTTP2_NO_ERROR);
}
