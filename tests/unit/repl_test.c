/*
 * repl_test.c - unit tests for replicator/: the pure pieces (signatures,
 * message codec, record batch and ack codec, health machine) and real
 * links between replicator instances on one event loop over loopback
 * sockets.
 *
 * The link tests run two or three sites in this process with a 100 ms
 * heartbeat, each on a listener bound to port 0 and handed to repl_new (the
 * daemon's borrowed-listener path), so the ports are known before any peer
 * is configured. Every wait is bounded: run_until() drives the loop in
 * 10 ms slices until a predicate holds or a deadline passes, and the tests
 * assert on the time things took, so "went down too early" (no hysteresis)
 * fails as surely as "never went down".
 */
#include "test.h"

#include "conflict.h"
#include "engine.h"
#include "repl.pb-c.h"
#include "repl_int.h"
#include "replicator.h"
#include "store.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define HB_MS 100

/* ---- helpers ------------------------------------------------------------ */

static struct event_base *g_base;

static uint64_t
now_ms(void)
{
    return mrd_clock_mono_ns() / 1000000;
}

typedef int (*pred_fn)(void *ud);

/* Runs the loop until pred(ud) or timeout_ms; returns the elapsed ms, or -1
 * on timeout. */
static int64_t
run_until(pred_fn pred, void *ud, int timeout_ms)
{
    uint64_t start = now_ms();

    while (now_ms() - start < (uint64_t)timeout_ms) {
        struct timeval tv = {0, 10000};

        if (pred && pred(ud))
            return (int64_t)(now_ms() - start);
        event_base_loopexit(g_base, &tv);
        event_base_dispatch(g_base);
    }
    return pred && pred(ud) ? (int64_t)(now_ms() - start) : -1;
}

static void
run_for(int ms)
{
    run_until(NULL, NULL, ms);
}

static void
noop_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len, void *ud)
{
    evutil_closesocket(fd);
}

/* A listener on 127.0.0.1:port (0 = any), disabled; the repl takes it over. */
static struct evconnlistener *
listen_on(uint16_t port, uint16_t *bound)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    struct evconnlistener *l;

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    l = evconnlistener_new_bind(g_base, noop_accept, NULL,
                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_DISABLED, 16,
                                (struct sockaddr *)&sin, sizeof(sin));
    if (!l)
        return NULL;
    getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&sin, &len);
    *bound = ntohs(sin.sin_port);
    return l;
}

typedef struct site {
    uint32_t id;
    char name[16];
    uint16_t port;
    const char *secret;
    struct evconnlistener *l;
    repl *r;
    uint64_t high_water;
    int n_applied;
    repl_applied applied[4];
    int transitions;
} site;

static uint64_t
site_hw(void *ud)
{
    return ((site *)ud)->high_water;
}

static int
site_applied(void *ud, repl_applied *out, int max)
{
    site *s = ud;
    int n = s->n_applied < max ? s->n_applied : max;

    memcpy(out, s->applied, (size_t)n * sizeof(*out));
    return n;
}

static void
site_state(void *ud, const repl_peer_info *info, repl_peer_state old)
{
    ((site *)ud)->transitions++;
}

/* Creates (or re-creates after a kill) s's replicator, peered with all[]. */
static int
site_up(site *s, site *all, int n)
{
    mrd_peer_conf peers[4];
    repl_opts o;
    int np = 0, rc;

    memset(peers, 0, sizeof(peers));
    for (int i = 0; i < n; i++) {
        if (&all[i] == s)
            continue;
        peers[np].id = all[i].id;
        snprintf(peers[np].name, sizeof(peers[np].name), "%s", all[i].name);
        snprintf(peers[np].replication.host, sizeof(peers[np].replication.host), "127.0.0.1");
        peers[np].replication.port = all[i].port;
        np++;
    }
    if (!s->l) {
        s->l = listen_on(s->port, &s->port);
        if (!s->l)
            return -1;
    }
    repl_opts_init(&o);
    o.site_id = s->id;
    o.site_name = s->name;
    o.secret = s->secret;
    o.listener = s->l;
    o.peers = peers;
    o.n_peers = np;
    o.heartbeat_ms = HB_MS;
    o.backoff_min_ms = 20;
    o.backoff_max_ms = 200;
    o.local_high_water = site_hw;
    o.local_applied = site_applied;
    o.on_peer_state = site_state;
    o.user_data = s;
    rc = repl_new(g_base, &o, &s->r);
    if (rc == 0)
        rc = repl_start(s->r);
    return rc;
}

static void
site_down(site *s)
{
    repl_free(s->r);
    s->r = NULL;
    if (s->l)
        evconnlistener_free(s->l);
    s->l = NULL;
}

/* Two passes: bind every listener first, so every site knows every port. */
static int
sites_up(site *all, int n)
{
    for (int i = 0; i < n; i++) {
        all[i].l = listen_on(0, &all[i].port);
        if (!all[i].l)
            return -1;
    }
    for (int i = 0; i < n; i++)
        if (site_up(&all[i], all, n) < 0)
            return -1;
    return 0;
}

static repl_peer_state
state_of(site *s, uint32_t peer_id)
{
    repl_peer_info pi;
    int i = repl_peer_find(s->r, peer_id);

    if (i < 0 || repl_peer_get(s->r, i, &pi) < 0)
        return (repl_peer_state)-1;
    return pi.state;
}

typedef struct all_ctx {
    site *sites;
    int n;
    repl_peer_state want;
} all_ctx;

static int
all_in_state(void *ud)
{
    all_ctx *c = ud;

    for (int i = 0; i < c->n; i++)
        for (int j = 0; j < c->n; j++)
            if (i != j && c->sites[i].r && c->sites[j].r &&
                state_of(&c->sites[i], c->sites[j].id) != c->want)
                return 0;
    return 1;
}

typedef struct one_ctx {
    site *s;
    uint32_t peer;
    repl_peer_state want;
} one_ctx;

static int
one_in_state(void *ud)
{
    one_ctx *c = ud;

    return state_of(c->s, c->peer) == c->want;
}

/* ---- pure pieces -------------------------------------------------------- */

static void
test_auth_sign_verify(void)
{
    const char *secret = "s3cret";
    char sig[65], other[65], sid[16] = "2", t[24];
    repl__auth_in in;
    const char *why = NULL;
    uint32_t got = 0;
    uint64_t now = 1700000000000ull;

    repl__auth_sign(secret, 6, "POST", "/repl/v1/heartbeat", 2, now, "body", 4, sig);
    CHECK_EQ_INT(strlen(sig), 64);
    /* Deterministic, and every signed field matters. */
    repl__auth_sign(secret, 6, "POST", "/repl/v1/heartbeat", 2, now, "body", 4, other);
    CHECK_STR(sig, other);
    repl__auth_sign(secret, 6, "POST", "/repl/v1/heartbeat", 2, now, "bodY", 4, other);
    CHECK(strcmp(sig, other) != 0);
    repl__auth_sign(secret, 6, "POST", "/repl/v1/hello", 2, now, "body", 4, other);
    CHECK(strcmp(sig, other) != 0);
    repl__auth_sign(secret, 6, "POST", "/repl/v1/heartbeat", 3, now, "body", 4, other);
    CHECK(strcmp(sig, other) != 0);
    repl__auth_sign(secret, 6, "POST", "/repl/v1/heartbeat", 2, now + 1, "body", 4, other);
    CHECK(strcmp(sig, other) != 0);

    snprintf(t, sizeof(t), "%llu", (unsigned long long)now);
    memset(&in, 0, sizeof(in));
    in.method = "POST";
    in.path = "/repl/v1/heartbeat";
    in.site = sid;
    in.time = t;
    in.auth = sig;
    in.body = "body";
    in.body_len = 4;
    CHECK_EQ_INT(repl__auth_verify(secret, 6, &in, now + 1000, 300000, &why, &got), 0);
    CHECK_EQ_INT(got, 2);
    /* wrong secret */
    CHECK_EQ_INT(repl__auth_verify("other", 5, &in, now, 300000, &why, &got), MRD_EAUTH);
    /* body tampered */
    in.body = "bodY";
    CHECK_EQ_INT(repl__auth_verify(secret, 6, &in, now, 300000, &why, &got), MRD_EAUTH);
    in.body = "body";
    /* outside the skew window, both ways */
    CHECK_EQ_INT(repl__auth_verify(secret, 6, &in, now + 300001, 300000, &why, &got), MRD_EAUTH);
    CHECK_EQ_INT(repl__auth_verify(secret, 6, &in, now - 300001, 300000, &why, &got), MRD_EAUTH);
    CHECK_EQ_INT(repl__auth_verify(secret, 6, &in, now - 300000, 300000, &why, &got), 0);
    /* malformed headers */
    in.auth = "ABCDEF";
    CHECK_EQ_INT(repl__auth_verify(secret, 6, &in, now, 300000, &why, &got), MRD_EINVAL);
    in.auth = sig;
    in.site = "0";
    CHECK_EQ_INT(repl__auth_verify(secret, 6, &in, now, 300000, &why, &got), MRD_EINVAL);
    in.site = "4294967296";
    CHECK_EQ_INT(repl__auth_verify(secret, 6, &in, now, 300000, &why, &got), MRD_EINVAL);
    in.site = "2x";
    CHECK_EQ_INT(repl__auth_verify(secret, 6, &in, now, 300000, &why, &got), MRD_EINVAL);
    in.site = NULL;
    CHECK_EQ_INT(repl__auth_verify(secret, 6, &in, now, 300000, &why, &got), MRD_EINVAL);
    in.site = sid;
    in.time = "-5";
    CHECK_EQ_INT(repl__auth_verify(secret, 6, &in, now, 300000, &why, &got), MRD_EINVAL);
    /* upper-case hex of the right signature is refused (one spelling only) */
    in.time = t;
    for (int i = 0; i < 64; i++)
        other[i] = (char)(sig[i] >= 'a' ? sig[i] - 32 : sig[i]);
    other[64] = '\0';
    in.auth = other;
    CHECK(repl__auth_verify(secret, 6, &in, now, 300000, &why, &got) < 0);

    /* No secret (mutual TLS alone): the marker, nothing hashed; syntax and
     * skew still checked; a signature refused, and the marker refused by a
     * site with a secret, each with the reason naming the mismatch. */
    repl__auth_sign(NULL, 0, "POST", "/repl/v1/heartbeat", 2, now, "body", 4, other);
    CHECK_STR(other, REPL_AUTH_MTLS);
    in.auth = other;
    got = 0;
    CHECK_EQ_INT(repl__auth_verify(NULL, 0, &in, now, 300000, &why, &got), 0);
    CHECK_EQ_INT(got, 2);
    CHECK_EQ_INT(repl__auth_verify(NULL, 0, &in, now + 300001, 300000, &why, &got), MRD_EAUTH);
    CHECK_EQ_INT(repl__auth_verify(secret, 6, &in, now, 300000, &why, &got), MRD_EAUTH);
    CHECK_STR(why, REPL_AUTH_WHY_PEER_NO_SECRET);
    in.auth = sig;
    CHECK_EQ_INT(repl__auth_verify(NULL, 0, &in, now, 300000, &why, &got), MRD_EAUTH);
    CHECK_STR(why, REPL_AUTH_WHY_PEER_SECRET);
    in.auth = "MTLS";
    CHECK_EQ_INT(repl__auth_verify(NULL, 0, &in, now, 300000, &why, &got), MRD_EINVAL);
    in.auth = NULL;
    CHECK_EQ_INT(repl__auth_verify(NULL, 0, &in, now, 300000, &why, &got), MRD_EINVAL);
    in.auth = other;
    in.site = "0";
    CHECK_EQ_INT(repl__auth_verify(NULL, 0, &in, now, 300000, &why, &got), MRD_EINVAL);
}

static void
test_msg_roundtrip_and_malformed(void)
{
    repl__msg m, d;
    mrd_buf b = {0};

    memset(&m, 0, sizeof(m));
    m.is_hello = 1;
    m.protocol_version = 1;
    m.heartbeat_interval_ms = 1000;
    m.features = REPL_FEATURE_DATA_CHECK;
    m.st.site_id = 7;
    snprintf(m.st.site_name, sizeof(m.st.site_name), "paris");
    m.st.topology_epoch = 3;
    m.st.hlc = 0x123456789ull;
    m.st.high_water_lsn = 99;
    m.st.boot_id = 42;
    m.st.n_applied = 2;
    m.st.applied[0] = (repl_applied){1, 10};
    m.st.applied[1] = (repl_applied){2, 20};
    m.st.n_links = 1;
    m.st.links[0].peer_site = 2;
    m.st.links[0].state = REPL_PEER_HEALTHY;
    m.st.links[0].acked_hlc = 0xabcdef0123ull; /* the GC's stable point is built from these */
    REQUIRE(repl__msg_encode(&m, &b) == 0);
    REQUIRE(repl__msg_decode(b.data, b.len, 1, &d) == 0);
    CHECK_EQ_INT(d.st.n_links, 1);
    CHECK(d.st.links[0].peer_site == 2 && d.st.links[0].acked_hlc == 0xabcdef0123ull);
    CHECK_EQ_INT(d.st.site_id, 7);
    CHECK_STR(d.st.site_name, "paris");
    CHECK_EQ_INT(d.st.high_water_lsn, 99);
    CHECK_EQ_INT(d.st.n_applied, 2);
    CHECK_EQ_INT(d.st.applied[1].lsn, 20);
    CHECK_EQ_INT(d.protocol_version, 1);
    CHECK_EQ_INT(d.features, REPL_FEATURE_DATA_CHECK);

    m.is_hello = 0;
    m.seq = 5;
    REQUIRE(repl__msg_encode(&m, &b) == 0);
    REQUIRE(repl__msg_decode(b.data, b.len, 0, &d) == 0);
    CHECK_EQ_INT(d.seq, 5);
    /* truncated, garbage, empty (no state), site 0 */
    CHECK_EQ_INT(repl__msg_decode(b.data, b.len - 1, 0, &d), MRD_EPROTO);
    CHECK_EQ_INT(repl__msg_decode("\xff\xff\xff\xff", 4, 0, &d), MRD_EPROTO);
    CHECK_EQ_INT(repl__msg_decode("", 0, 0, &d), MRD_EPROTO);
    m.st.site_id = 0;
    REQUIRE(repl__msg_encode(&m, &b) == 0);
    CHECK_EQ_INT(repl__msg_decode(b.data, b.len, 0, &d), MRD_EPROTO);
    mrd_buf_free(&b);
}

/* x-amz-replication-status from a peer's repl_held: below acked_hlc, or
 * during a resync inside (resync_after_hlc, resync_acked_hlc); nothing at
 * or below the resync point, whatever the peer acked. */
static void
test_status_of_held_window(void)
{
    const uint64_t ms = 1000000, day = 86400000;
    const uint64_t t = ms << MRD_HLC_LOGICAL_BITS;
    repl_held none = {0, 0, 0}, plain = {t + 10, 0, 0};
    repl_held resync = {t + 10, t + 100, t + 200};
    repl_held open_ = {t + 10, t + 100, 0}; /* the pass began, nothing acked since */

    CHECK_STR(repl_status_of(&none, 1, 2, t, ms, 0), "REPLICA");
    CHECK_STR(repl_status_of(&none, 1, 1, t, ms, 0), "PENDING");
    CHECK_STR(repl_status_of(&plain, 1, 1, t + 9, ms, 0), "COMPLETED");
    CHECK_STR(repl_status_of(&plain, 1, 1, t + 10, ms, 0), "PENDING");
    /* FAILED only past the deadline, counted from the stamp's ms */
    CHECK_STR(repl_status_of(&plain, 1, 1, t + 10, ms + 5000, 5000), "PENDING");
    CHECK_STR(repl_status_of(&plain, 1, 1, t + 10, ms + 5001, 5000), "FAILED");
    /* during a resync: below acked_hlc still holds */
    CHECK_STR(repl_status_of(&resync, 1, 1, t + 5, ms, 0), "COMPLETED");
    /* in (acked_hlc, resync point]: maybe a hole, pending (failed later) */
    CHECK_STR(repl_status_of(&resync, 1, 1, t + 10, ms, 0), "PENDING");
    CHECK_STR(repl_status_of(&resync, 1, 1, t + 100, ms, 0), "PENDING");
    CHECK_STR(repl_status_of(&resync, 1, 1, t + 100, ms + day, 5000), "FAILED");
    /* after the point and acked: applied there, never FAILED */
    CHECK_STR(repl_status_of(&resync, 1, 1, t + 101, ms, 0), "COMPLETED");
    CHECK_STR(repl_status_of(&resync, 1, 1, t + 199, ms + day, 5000), "COMPLETED");
    /* after the point, not acked yet */
    CHECK_STR(repl_status_of(&resync, 1, 1, t + 200, ms, 0), "PENDING");
    CHECK_STR(repl_status_of(&open_, 1, 1, t + 150, ms, 0), "PENDING");
    CHECK(repl_held_has(&resync, t + 150));
    CHECK(!repl_held_has(&resync, t + 50));
    CHECK(!repl_held_has(&none, 0));
}

static void
test_health_rules(void)
{
    repl__health h;
    uint64_t t = 1000;

    repl__health_init(&h, 3, 3, t);
    CHECK_EQ_INT(h.state, REPL_PEER_UNKNOWN);
    /* M = 3 OKs to become healthy, not fewer */
    repl__health_ok(&h, 1000, t++);
    repl__health_ok(&h, 1000, t++);
    CHECK_EQ_INT(h.state, REPL_PEER_UNKNOWN);
    repl__health_ok(&h, 1000, t++);
    CHECK_EQ_INT(h.state, REPL_PEER_HEALTHY);
    CHECK(h.rtt_us == 1000.0);
    /* one failure: degraded, not down */
    repl__health_fail(&h, t++);
    CHECK_EQ_INT(h.state, REPL_PEER_DEGRADED);
    /* M OKs in a row to get back */
    repl__health_ok(&h, 1000, t++);
    repl__health_ok(&h, 1000, t++);
    CHECK_EQ_INT(h.state, REPL_PEER_DEGRADED);
    repl__health_ok(&h, 1000, t++);
    CHECK_EQ_INT(h.state, REPL_PEER_HEALTHY);
    /* N = 3 failures in a row: down; an OK in between resets the count */
    repl__health_fail(&h, t++);
    repl__health_fail(&h, t++);
    repl__health_ok(&h, 1000, t++);
    repl__health_fail(&h, t++);
    repl__health_fail(&h, t++);
    CHECK_EQ_INT(h.state, REPL_PEER_DEGRADED);
    repl__health_fail(&h, t++);
    CHECK_EQ_INT(h.state, REPL_PEER_DOWN);
    /* flapping OK/FAIL never leaves DOWN */
    for (int i = 0; i < 10; i++) {
        repl__health_ok(&h, 1000, t++);
        repl__health_fail(&h, t++);
    }
    CHECK_EQ_INT(h.state, REPL_PEER_DOWN);
    repl__health_ok(&h, 1000, t++);
    repl__health_ok(&h, 1000, t++);
    CHECK_EQ_INT(h.state, REPL_PEER_DOWN);
    repl__health_ok(&h, 1000, t++);
    CHECK_EQ_INT(h.state, REPL_PEER_HEALTHY);
    /* EWMA alpha 0.2 */
    repl__health_ok(&h, 31000, t++);
    CHECK(h.rtt_us > 6999.0 && h.rtt_us < 7001.0);
    /* RTT above 2x baseline (and >= 5 ms over it): degraded */
    repl__health_ok(&h, 31000, t++);
    CHECK_EQ_INT(h.state, REPL_PEER_DEGRADED); /* 11.8 ms > 2 * 1 ms, 10.8 ms over */
    CHECK(repl__health_baseline_us(&h) == 1000.0);
    /* back to fast samples: healthy once rtt <= 2x baseline and 3 OKs */
    for (int i = 0; i < 10; i++)
        repl__health_ok(&h, 1000, t++);
    CHECK_EQ_INT(h.state, REPL_PEER_HEALTHY);
    /* the 5 ms floor: 30 us -> 3 ms (loopback under load) is not "high" */
    repl__health_init(&h, 3, 3, t);
    for (int i = 0; i < 3; i++)
        repl__health_ok(&h, 30, t++);
    for (int i = 0; i < 20; i++)
        repl__health_ok(&h, 3000, t++);
    CHECK_EQ_INT(h.state, REPL_PEER_HEALTHY);
}

/* ---- links -------------------------------------------------------------- */

static void
test_two_sites_heartbeat(void)
{
    site s[2] = {{.id = 1, .name = "a", .secret = "shared-secret", .high_water = 42},
                 {.id = 2, .name = "b", .secret = "shared-secret", .high_water = 1000}};
    all_ctx ctx = {s, 2, REPL_PEER_HEALTHY};
    repl_peer_info pi;
    int64_t t;

    s[0].n_applied = 1;
    s[0].applied[0] = (repl_applied){2, 7}; /* a has applied b's records up to 7 */
    REQUIRE(sites_up(s, 2) == 0);
    t = run_until(all_in_state, &ctx, 3000);
    CHECK(t >= 0);
    /* healthy needs 3 OK heartbeats: the first right after Hello, then one
     * per tick, so never before 2 intervals */
    CHECK(t >= 2 * HB_MS - 20);
    fprintf(stderr, "  both healthy after %lld ms\n", (long long)t);
    run_for(5 * HB_MS);

    REQUIRE(repl_peer_get(s[1].r, 0, &pi) == 0);
    CHECK_STR(pi.name, "a");
    CHECK_EQ_INT(pi.state, REPL_PEER_HEALTHY);
    CHECK(pi.connected);
    CHECK_EQ_INT(pi.inbound, 1);
    CHECK(pi.rtt_ms > 0 && pi.rtt_ms < 50);
    CHECK(pi.rtt_baseline_ms > 0 && pi.rtt_baseline_ms <= pi.rtt_ms * 1.0001 + 0.5);
    CHECK(pi.last_heartbeat_age_ms >= 0 && pi.last_heartbeat_age_ms <= 2 * HB_MS);
    CHECK(pi.last_inbound_age_ms >= 0 && pi.last_inbound_age_ms <= 2 * HB_MS);
    CHECK_EQ_INT(pi.high_water_lsn, 42); /* from a's callback */
    CHECK_EQ_INT(pi.applied_from_us, 7);
    CHECK_EQ_INT(pi.consecutive_failures, 0);
    CHECK(pi.consecutive_successes >= 5);
    CHECK(pi.heartbeats_ok >= 5);
    CHECK(pi.bytes_in > 0 && pi.bytes_out > 0);
    fprintf(stderr, "  b->a rtt_ms=%.3f baseline=%.3f hb_ok=%llu\n", pi.rtt_ms, pi.rtt_baseline_ms,
            (unsigned long long)pi.heartbeats_ok);

    /* The high-water mark follows the callback. */
    s[1].high_water = 1234;
    run_for(3 * HB_MS);
    REQUIRE(repl_peer_get(s[0].r, 0, &pi) == 0);
    CHECK_EQ_INT(pi.high_water_lsn, 1234);

    /* Routing: the only healthy peer is found; excluded, nothing is. */
    CHECK_EQ_INT(repl_nearest_healthy(s[0].r, 0, NULL, 0, 0, &pi), 0);
    CHECK_EQ_INT(pi.id, 2);
    CHECK_EQ_INT(repl_nearest_healthy(s[0].r, 0, NULL, 0, 1235, NULL), MRD_ENOTFOUND);
    CHECK_EQ_INT(repl_nearest_healthy(s[0].r, 0, (uint32_t[]){2}, 1, 0, NULL), MRD_ENOTFOUND);

    /* Status JSON parses and says healthy. */
    {
        mrd_buf b = {0};
        mrd_json_w w;
        mrd_json *j = NULL;
        const mrd_json *peers;

        mrd_json_w_init(&w, &b);
        CHECK_EQ_INT(repl_status_json(s[0].r, &w), 0);
        REQUIRE(mrd_json_parse(b.data, b.len, &j, NULL) == 0);
        peers = mrd_json_get(j, "peers");
        REQUIRE(peers && peers->child);
        CHECK_STR(mrd_json_get_str(peers->child, "state", ""), "healthy");
        CHECK(mrd_json_get_num(peers->child, "rtt_ms", 0) > 0);
        CHECK_EQ_INT(mrd_json_get_num(peers->child, "high_water_lsn", 0), 1234);
        mrd_json_free(j);
        mrd_buf_free(&b);
    }
    {
        repl_stats st;

        repl_get_stats(s[0].r, &st);
        CHECK_EQ_INT(st.auth_failures, 0);
        CHECK(st.heartbeats_served >= 5);
    }
    site_down(&s[0]);
    site_down(&s[1]);
}

static int
auth_failed_both(void *ud)
{
    site *s = ud;
    repl_stats a, b;

    repl_get_stats(s[0].r, &a);
    repl_get_stats(s[1].r, &b);
    return a.auth_failures >= 3 && b.auth_failures >= 3;
}

static void
test_wrong_secret(void)
{
    site s[2] = {{.id = 1, .name = "a", .secret = "secret-one"},
                 {.id = 2, .name = "b", .secret = "secret-two"}};
    repl_peer_info pi;

    REQUIRE(sites_up(s, 2) == 0);
    CHECK(run_until(auth_failed_both, s, 3000) >= 0);
    run_for(6 * HB_MS);
    for (int i = 0; i < 2; i++) {
        REQUIRE(repl_peer_get(s[i].r, 0, &pi) == 0);
        CHECK_EQ_INT(pi.state, REPL_PEER_DOWN);
        CHECK(!pi.connected);
        CHECK_EQ_INT(pi.inbound, 0);
        CHECK_EQ_INT(pi.heartbeats_ok, 0);
        CHECK(pi.auth_failures > 0);
        CHECK(strstr(pi.last_error, "401") != NULL || strstr(pi.last_error, "connect") != NULL ||
              pi.last_error[0]);
        CHECK_EQ_INT(repl_nearest_healthy(s[i].r, REPL_ROUTE_ALLOW_DEGRADED, NULL, 0, 0, NULL),
                     MRD_ENOTFOUND);
    }
    site_down(&s[0]);
    site_down(&s[1]);
}

static void
test_kill_and_restart(void)
{
    site s[3] = {{.id = 1, .name = "a", .secret = "k"},
                 {.id = 2, .name = "b", .secret = "k"},
                 {.id = 3, .name = "c", .secret = "k"}};
    all_ctx ctx = {s, 3, REPL_PEER_HEALTHY};
    one_ctx down_a = {&s[0], 3, REPL_PEER_DOWN}, down_b = {&s[1], 3, REPL_PEER_DOWN};
    one_ctx up_a = {&s[0], 3, REPL_PEER_HEALTHY}, up_b = {&s[1], 3, REPL_PEER_HEALTHY};
    repl_peer_info pi;
    int64_t t_down, t_up;

    REQUIRE(sites_up(s, 3) == 0);
    REQUIRE(run_until(all_in_state, &ctx, 3000) >= 0);
    run_for(3 * HB_MS);

    /* Kill c. Its peers see the connection drop at once (one FAIL), then a
     * FAIL per tick: DOWN at the 3rd, i.e. after 2 to 3 intervals. Never
     * before 2 intervals: that would be no hysteresis. */
    site_down(&s[2]);
    t_down = run_until(one_in_state, &down_a, 10 * HB_MS);
    CHECK(t_down >= 0);
    CHECK(t_down <= 3 * HB_MS + 100);
    CHECK(t_down >= 2 * HB_MS - 20);
    CHECK(run_until(one_in_state, &down_b, 4 * HB_MS) >= 0);
    fprintf(stderr, "  c down at a after %lld ms (N=3, I=%d ms)\n", (long long)t_down, HB_MS);
    /* a and b still see each other up (healthy; degraded at worst when a
     * loaded machine - ASan, parallel tests - delays one 100 ms heartbeat) */
    CHECK(state_of(&s[0], 2) != REPL_PEER_DOWN);
    CHECK(state_of(&s[1], 1) != REPL_PEER_DOWN);
    /* routing skips the dead peer */
    CHECK_EQ_INT(repl_nearest_healthy(s[0].r, REPL_ROUTE_ALLOW_DEGRADED, NULL, 0, 0, &pi), 0);
    CHECK_EQ_INT(pi.id, 2);
    run_for(5 * HB_MS); /* let the backoff grow */

    /* Restart c on the same port: healthy again only after 3 OK heartbeats. */
    REQUIRE(site_up(&s[2], s, 3) == 0);
    t_up = run_until(one_in_state, &up_a, 3000);
    CHECK(t_up >= 0);
    CHECK(run_until(one_in_state, &up_b, 3000) >= 0);
    fprintf(stderr, "  c healthy again at a after %lld ms\n", (long long)t_up);
    REQUIRE(repl_peer_get(s[0].r, repl_peer_find(s[0].r, 3), &pi) == 0);
    CHECK(pi.consecutive_successes >= 3);
    CHECK(pi.connects >= 2);
    /* The first OK comes right after the Hello, the other two on a's next
     * two heartbeat ticks, whose phase owes nothing to c's reconnect: the
     * second may come at once, the third a whole interval later. So no
     * sooner than one interval (consecutive_successes above is the rule
     * itself). Asking for two intervals failed at 170 ms, run under ASan. */
    CHECK(t_up >= HB_MS - 20);
    CHECK(s[0].transitions >= 3); /* unknown->healthy, ->degraded/down, ->healthy */

    for (int i = 0; i < 3; i++)
        site_down(&s[i]);
}

static int
has_bad_request(void *ud)
{
    repl_stats st;

    repl_get_stats(((site *)ud)->r, &st);
    return st.bad_requests >= 1;
}

static void
test_malformed_body_is_400(void)
{
    site s[2] = {{.id = 1, .name = "a", .secret = "k"}, {.id = 2, .name = "b", .secret = "k"}};
    all_ctx ctx = {s, 2, REPL_PEER_HEALTHY};
    repl_stats st;
    repl_peer *p;
    repl__stream *bad;

    REQUIRE(sites_up(s, 2) == 0);
    REQUIRE(run_until(all_in_state, &ctx, 3000) >= 0);
    /* A correctly signed heartbeat whose body is not protobuf. */
    p = &s[0].r->peers[0];
    REQUIRE(p->conn && p->hello_done);
    bad = repl__stream_new(p->conn, REPL__ST_HELLO + 100); /* a kind the client ignores */
    REQUIRE(bad);
    REQUIRE(mrd_buf_append(&bad->out, "\xff\xff\xff", 3) == 0);
    REQUIRE(repl__submit_request(p->conn, bad, REPL_PATH_HEARTBEAT) == 0);
    repl__conn_flush(p->conn);
    CHECK(run_until(has_bad_request, &s[1], 2000) >= 0);
    repl_get_stats(s[1].r, &st);
    CHECK_EQ_INT(st.auth_failures, 0);
    /* 400 does not cost the link */
    run_for(3 * HB_MS);
    CHECK_EQ_INT(state_of(&s[0], 2), REPL_PEER_HEALTHY);
    site_down(&s[0]);
    site_down(&s[1]);
}

static void
test_options_rejected(void)
{
    repl_opts o;
    repl *r = NULL;
    mrd_peer_conf peers[2];

    memset(peers, 0, sizeof(peers));
    repl_opts_init(&o);
    o.site_id = 1;
    o.secret = "x";
    snprintf(o.listen.host, sizeof(o.listen.host), "127.0.0.1");
    REQUIRE(repl_new(g_base, &o, &r) == 0); /* no peers is fine */
    {
        mrd_addr a;

        CHECK_EQ_INT(repl_listen_addr(r, &a), 0);
        CHECK(a.port != 0);
    }
    repl_free(r);
    r = NULL;
    o.secret = "";
    CHECK_EQ_INT(repl_new(g_base, &o, &r), MRD_EINVAL); /* ... without mutual TLS */
    o.secret = NULL;
    CHECK_EQ_INT(repl_new(g_base, &o, &r), MRD_EINVAL);
    o.secret = "x";
    peers[0].id = 1; /* our own id */
    peers[0].replication.port = 1;
    o.peers = peers;
    o.n_peers = 1;
    CHECK_EQ_INT(repl_new(g_base, &o, &r), MRD_EINVAL);
    peers[0].id = 2;
    peers[1] = peers[0]; /* duplicate id */
    o.n_peers = 2;
    CHECK_EQ_INT(repl_new(g_base, &o, &r), MRD_EINVAL);
    CHECK(r == NULL);
    repl_free(NULL);
}

/* ---- record batches and acks ---------------------------------------------- */

/* Packs a batch and parses it back (after the 4-byte framing). out is
 * filled only on success; *reason says why on failure. */
static int
pack_parse(uint64_t first, uint64_t last, const repl__rec *recs, size_t n, repl__batch *out,
           const char **reason)
{
    mrd_buf b = {0};
    int rc = repl__batch_pack(first, last, recs, n, &b);

    *reason = NULL;
    if (rc == 0)
        rc = repl__batch_parse(b.data + 4, b.len - 4, out, reason);
    mrd_buf_free(&b);
    return rc;
}

static void
test_batch_pack_parse_roundtrip(void)
{
    static const uint8_t p0[] = {'b', 'k', 't'}, p2[] = {0, 1, 0, 2, 0xff};
    repl__rec recs[3] = {
        {.lsn = 3, .type = 4, .payload = p0, .len = sizeof(p0)},
        {.lsn = 5, .type = 3, .payload = NULL, .len = 0},
        {.lsn = 9,
         .type = 1,
         .payload = p2,
         .len = sizeof(p2),
         .data_size = 5000000000ull,
         .data_check = REPL_DCHECK_POLY1305,
         .data_nonce = (const uint8_t *)"0123456789abcdef",
         .data_nonce_len = 16},
    };
    repl__batch bt;
    mrd_buf b = {0};
    const char *reason;
    uint32_t framed;
    repl__rec *many;

    REQUIRE(repl__batch_pack(2, 10, recs, 3, &b) == 0);
    REQUIRE(b.len > 4);
    framed = (uint32_t)(uint8_t)b.data[0] << 24 | (uint32_t)(uint8_t)b.data[1] << 16 |
             (uint32_t)(uint8_t)b.data[2] << 8 | (uint8_t)b.data[3];
    CHECK_EQ_INT(framed, b.len - 4);
    memset(&bt, 0, sizeof(bt));
    REQUIRE(repl__batch_parse(b.data + 4, b.len - 4, &bt, &reason) == 0);
    CHECK(reason == NULL);
    CHECK_EQ_INT(bt.first, 2);
    CHECK_EQ_INT(bt.last, 10);
    REQUIRE(bt.n == 3);
    for (size_t i = 0; i < 3; i++) {
        CHECK_EQ_INT(bt.recs[i].lsn, recs[i].lsn);
        CHECK_EQ_INT(bt.recs[i].type, recs[i].type);
        CHECK_EQ_INT(bt.recs[i].len, recs[i].len);
        CHECK_EQ_INT(bt.recs[i].data_size, recs[i].data_size);
        CHECK_EQ_INT(bt.recs[i].data_check, recs[i].data_check);
        CHECK_EQ_INT(bt.recs[i].data_nonce_len, recs[i].data_nonce_len);
        CHECK(!recs[i].data_nonce_len ||
              memcmp(bt.recs[i].data_nonce, recs[i].data_nonce, recs[i].data_nonce_len) == 0);
        CHECK(recs[i].len == 0 || memcmp(bt.recs[i].payload, recs[i].payload, recs[i].len) == 0);
    }
    repl__batch_free(&bt);
    CHECK(bt.recs == NULL && bt.pb == NULL && bt.n == 0);
    repl__batch_free(&bt); /* twice is harmless */

    /* a range without records (none of it originated at the sender) */
    REQUIRE(pack_parse(7, 9, NULL, 0, &bt, &reason) == 0);
    CHECK(bt.first == 7 && bt.last == 9 && bt.n == 0);
    repl__batch_free(&bt);
    /* one LSN, the last type that may travel (7), data on an object put */
    recs[2].lsn = 4;
    REQUIRE(pack_parse(4, 4, &recs[2], 1, &bt, &reason) == 0);
    CHECK(bt.n == 1 && bt.recs[0].data_size == 5000000000ull);
    repl__batch_free(&bt);
    recs[1].type = 7;
    REQUIRE(pack_parse(5, 5, &recs[1], 1, &bt, &reason) == 0);
    CHECK(bt.n == 1 && bt.recs[0].type == 7);
    repl__batch_free(&bt);

    /* REPL_MAX_RECORDS records pass, one more does not */
    REQUIRE((many = calloc(REPL_MAX_RECORDS + 1, sizeof(*many))) != NULL);
    for (size_t i = 0; i <= REPL_MAX_RECORDS; i++)
        many[i] = (repl__rec){.lsn = i + 1, .type = 2, .payload = p0, .len = 1};
    REQUIRE(pack_parse(1, REPL_MAX_RECORDS, many, REPL_MAX_RECORDS, &bt, &reason) == 0);
    CHECK_EQ_INT(bt.n, REPL_MAX_RECORDS);
    CHECK_EQ_INT(bt.recs[REPL_MAX_RECORDS - 1].lsn, REPL_MAX_RECORDS);
    repl__batch_free(&bt);
    CHECK_EQ_INT(pack_parse(1, REPL_MAX_RECORDS + 1, many, REPL_MAX_RECORDS + 1, &bt, &reason),
                 MRD_EPROTO);
    CHECK(reason && strstr(reason, "too many"));
    free(many);
    mrd_buf_free(&b);
}

/* Expects MRD_EPROTO with a reason containing `why`, and out untouched. */
static int
rejected(uint64_t first, uint64_t last, const repl__rec *recs, size_t n, const char *why)
{
    repl__batch bt;
    const char *reason = NULL;
    int rc;

    memset(&bt, 0xab, sizeof(bt));
    rc = pack_parse(first, last, recs, n, &bt, &reason);
    if (rc != MRD_EPROTO || !reason || !strstr(reason, why) || bt.n != (size_t)0xabababababababab) {
        fprintf(stderr, "  batch %llu..%llu: rc=%d reason=%s\n", (unsigned long long)first,
                (unsigned long long)last, rc, reason ? reason : "(null)");
        return 0;
    }
    return 1;
}

static void
test_batch_parse_rejects(void)
{
    static const uint8_t pl[] = {1, 2, 3};
    repl__rec r[2] = {
        {.lsn = 5, .type = 1, .payload = pl, .len = sizeof(pl)},
        {.lsn = 6, .type = 1, .payload = pl, .len = sizeof(pl)},
    };
    repl__batch bt;
    mrd_buf b = {0};
    const char *reason = NULL;

    /* the range itself */
    CHECK(rejected(0, 5, NULL, 0, "range"));
    CHECK(rejected(0, 0, NULL, 0, "range"));
    CHECK(rejected(9, 8, NULL, 0, "range"));
    /* record LSNs: below first, above last, equal, decreasing */
    CHECK(rejected(6, 10, r, 2, "LSN"));
    CHECK(rejected(1, 5, r, 2, "LSN"));
    r[1].lsn = 5;
    CHECK(rejected(1, 10, r, 2, "LSN"));
    r[1].lsn = 4;
    CHECK(rejected(1, 10, r, 2, "LSN"));
    r[1].lsn = 6;
    /* types: 0, a replicated apply (8), anything above */
    r[1].type = 0;
    CHECK(rejected(1, 10, r, 2, "type"));
    r[1].type = 8;
    CHECK(rejected(1, 10, r, 2, "type"));
    r[1].type = 65535;
    CHECK(rejected(1, 10, r, 2, "type"));
    r[1].type = 1;
    /* object data: only on the last record, and only on an object put */
    r[0].data_size = 10;
    CHECK(rejected(1, 10, r, 2, "data"));
    r[0].data_size = 0;
    r[1].data_size = 10;
    r[1].type = 3; /* a delete marker */
    CHECK(rejected(1, 10, r, 2, "data"));
    r[1].type = 5;
    CHECK(rejected(1, 10, r, 2, "data"));
    r[1].type = 1;
    memset(&bt, 0, sizeof(bt));
    CHECK_EQ_INT(pack_parse(1, 10, r, 2, &bt, &reason), 0); /* and now it is fine */
    repl__batch_free(&bt);

    /* a data check announced on a record without data, or of an unknown
     * kind (pack never makes either: built by hand) */
    {
        Meridian__Repl__RecordBatch m = MERIDIAN__REPL__RECORD_BATCH__INIT;
        Meridian__Repl__Record rec = MERIDIAN__REPL__RECORD__INIT, *rp = &rec;
        uint8_t raw[96];
        size_t n;

        rec.lsn = 5;
        rec.type = 1;
        rec.data_check = REPL_DCHECK_CRC32C;
        m.first_lsn = 5;
        m.last_lsn = 5;
        m.records = &rp;
        m.n_records = 1;
        REQUIRE(meridian__repl__record_batch__get_packed_size(&m) <= sizeof(raw));
        n = meridian__repl__record_batch__pack(&m, raw);
        CHECK_EQ_INT(repl__batch_parse(raw, n, &bt, &reason), MRD_EPROTO);
        CHECK(reason && strstr(reason, "data check"));
        rec.data_size = 10;
        rec.data_check = 3;
        n = meridian__repl__record_batch__pack(&m, raw);
        CHECK_EQ_INT(repl__batch_parse(raw, n, &bt, &reason), MRD_EPROTO);
        CHECK(reason && strstr(reason, "unknown kind"));
        /* Poly1305 needs its 16-byte nonce; nothing else takes one */
        rec.data_check = REPL_DCHECK_POLY1305;
        n = meridian__repl__record_batch__pack(&m, raw);
        CHECK_EQ_INT(repl__batch_parse(raw, n, &bt, &reason), MRD_EPROTO);
        CHECK(reason && strstr(reason, "nonce"));
        rec.data_nonce.data = (uint8_t *)"0123456789abcdef";
        rec.data_nonce.len = 15;
        n = meridian__repl__record_batch__pack(&m, raw);
        CHECK_EQ_INT(repl__batch_parse(raw, n, &bt, &reason), MRD_EPROTO);
        rec.data_nonce.len = 16;
        n = meridian__repl__record_batch__pack(&m, raw);
        REQUIRE(repl__batch_parse(raw, n, &bt, &reason) == 0);
        CHECK_EQ_INT(bt.recs[0].data_check, REPL_DCHECK_POLY1305);
        CHECK(bt.recs[0].data_nonce_len == 16 && memcmp(bt.recs[0].data_nonce, "0123", 4) == 0);
        repl__batch_free(&bt);
        rec.data_check = REPL_DCHECK_CRC32C;
        n = meridian__repl__record_batch__pack(&m, raw);
        CHECK_EQ_INT(repl__batch_parse(raw, n, &bt, &reason), MRD_EPROTO);
        CHECK(reason && strstr(reason, "nonce"));
    }

    /* bytes that are not a RecordBatch, or a truncated one */
    CHECK_EQ_INT(repl__batch_parse("\xff\xff\xff\xff\xff", 5, &bt, &reason), MRD_EPROTO);
    CHECK(reason && strstr(reason, "decode"));
    REQUIRE(repl__batch_pack(1, 10, r, 2, &b) == 0);
    CHECK_EQ_INT(repl__batch_parse(b.data + 4, b.len - 5, &bt, &reason), MRD_EPROTO);
    /* nothing at all is an empty batch: first 0 */
    CHECK_EQ_INT(repl__batch_parse("", 0, &bt, &reason), MRD_EPROTO);
    CHECK(reason && strstr(reason, "range"));
    mrd_buf_free(&b);
}

/* The data check: the CRC32C big-endian; the Poly1305 tag as computed in
 * one go (one-time key HMAC-SHA256(secret, prefix | nonce), over head and
 * data), whatever the chunking, and bound to head, nonce and secret; no
 * Poly1305 without a secret or a nonce of the right size. */
static void
test_data_check(void)
{
    static const char head[] = "\0\0\0\3abc", other[] = "\0\0\0\3abd";
    uint8_t data[3000], out[REPL_DCHECK_MAX], want[16], msg[4096], key[32], nonce[16];
    unsigned int klen = 0;
    size_t n, off, wlen = 0, olen = 0;
    uint32_t crc;
    repl__dcheck d;
    struct evp_mac_st *mac = repl__dcheck_mac_fetch();

    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 7 + 1);
    for (size_t i = 0; i < sizeof(nonce); i++)
        nonce[i] = (uint8_t)(0xa0 + i);
    CHECK_EQ_INT(repl__dcheck_len(REPL_DCHECK_NONE), 0);
    CHECK_EQ_INT(repl__dcheck_len(REPL_DCHECK_CRC32C), 4);
    CHECK_EQ_INT(repl__dcheck_len(REPL_DCHECK_POLY1305), 16);
    CHECK_EQ_INT(repl__dcheck_len(3), 0);
    REQUIRE(mac != NULL); /* Debian's OpenSSL has Poly1305 */

    REQUIRE(repl__dcheck_init(&d, mac, REPL_DCHECK_CRC32C, NULL, 0, NULL, 0, head, 7) == 0);
    repl__dcheck_update(&d, data, 1000);
    repl__dcheck_update(&d, data + 1000, 2000);
    REQUIRE(repl__dcheck_final(&d, out, &olen) == 0 && olen == 4);
    crc = mrd_crc32c(0, data, sizeof(data));
    CHECK(out[0] == (uint8_t)(crc >> 24) && out[3] == (uint8_t)crc);

    memcpy(msg, "MRD-REPL-DATA-1\n", 16);
    memcpy(msg + 16, nonce, 16);
    REQUIRE(HMAC(EVP_sha256(), "k", 1, msg, 32, key, &klen) && klen == 32);
    memcpy(msg, head, 7);
    off = 7;
    memcpy(msg + off, data, sizeof(data));
    off += sizeof(data);
    REQUIRE(EVP_Q_mac(NULL, "POLY1305", NULL, NULL, NULL, key, 32, msg, off, want, sizeof(want),
                      &wlen) != NULL &&
            wlen == 16);
    REQUIRE(repl__dcheck_init(&d, mac, REPL_DCHECK_POLY1305, "k", 1, nonce, 16, head, 7) == 0);
    for (n = 0; n < sizeof(data); n += 777)
        repl__dcheck_update(&d, data + n, sizeof(data) - n < 777 ? sizeof(data) - n : 777);
    REQUIRE(repl__dcheck_final(&d, out, &olen) == 0 && olen == 16);
    CHECK(memcmp(out, want, 16) == 0);
    /* another head, nonce or secret: another tag */
    REQUIRE(repl__dcheck_init(&d, mac, REPL_DCHECK_POLY1305, "k", 1, nonce, 16, other, 7) == 0);
    repl__dcheck_update(&d, data, sizeof(data));
    REQUIRE(repl__dcheck_final(&d, out, &olen) == 0 && olen == 16);
    CHECK(memcmp(out, want, 16) != 0);
    nonce[3] ^= 1;
    REQUIRE(repl__dcheck_init(&d, mac, REPL_DCHECK_POLY1305, "k", 1, nonce, 16, head, 7) == 0);
    repl__dcheck_update(&d, data, sizeof(data));
    REQUIRE(repl__dcheck_final(&d, out, &olen) == 0 && olen == 16);
    CHECK(memcmp(out, want, 16) != 0);
    nonce[3] ^= 1;
    REQUIRE(repl__dcheck_init(&d, mac, REPL_DCHECK_POLY1305, "j", 1, nonce, 16, head, 7) == 0);
    repl__dcheck_update(&d, data, sizeof(data));
    REQUIRE(repl__dcheck_final(&d, out, &olen) == 0 && olen == 16);
    CHECK(memcmp(out, want, 16) != 0);
    /* no secret, no nonce or a short one, unknown kind; free of an unfinished check */
    CHECK_EQ_INT(repl__dcheck_init(&d, mac, REPL_DCHECK_POLY1305, NULL, 0, nonce, 16, head, 7),
                 MRD_EINVAL);
    CHECK_EQ_INT(repl__dcheck_init(&d, mac, REPL_DCHECK_POLY1305, "k", 1, NULL, 0, head, 7),
                 MRD_EINVAL);
    CHECK_EQ_INT(repl__dcheck_init(&d, mac, REPL_DCHECK_POLY1305, "k", 1, nonce, 15, head, 7),
                 MRD_EINVAL);
    CHECK_EQ_INT(repl__dcheck_init(&d, mac, 9, "k", 1, nonce, 16, head, 7), MRD_EINVAL);
    CHECK_EQ_INT(repl__dcheck_init(&d, NULL, REPL_DCHECK_POLY1305, "k", 1, nonce, 16, head, 7),
                 MRD_EINVAL); /* an OpenSSL without Poly1305 */
    REQUIRE(repl__dcheck_init(&d, mac, REPL_DCHECK_POLY1305, "k", 1, nonce, 16, head, 7) == 0);
    repl__dcheck_free(&d);
    repl__dcheck_free(&d);
    /* a MAC that fails along the way gives no check at all, not a short one */
    REQUIRE(repl__dcheck_init(&d, mac, REPL_DCHECK_POLY1305, "k", 1, nonce, 16, head, 7) == 0);
    d.failed = 1;
    olen = 99;
    CHECK_EQ_INT(repl__dcheck_final(&d, out, &olen), -EIO);
    CHECK_EQ_INT(olen, 99);
    CHECK(d.mac == NULL);
    memset(&d, 0, sizeof(d));
    d.kind = REPL_DCHECK_POLY1305; /* never started */
    CHECK_EQ_INT(repl__dcheck_final(&d, out, &olen), -EIO);
    REQUIRE(repl__dcheck_init(&d, mac, REPL_DCHECK_NONE, NULL, 0, NULL, 0, head, 7) == 0);
    REQUIRE(repl__dcheck_final(&d, out, &olen) == 0 && olen == 0);
    repl__dcheck_mac_free(mac);
    repl__dcheck_mac_free(NULL);
}

static void
test_ack_roundtrip_and_malformed(void)
{
    mrd_buf b = {0};
    uint32_t origin = 99;
    uint64_t applied = 99;

    REQUIRE(repl__ack_encode(3, 12345678901234ull, &b) == 0);
    REQUIRE(repl__ack_decode(b.data, b.len, &origin, &applied) == 0);
    CHECK_EQ_INT(origin, 3);
    CHECK_EQ_INT(applied, 12345678901234ull);
    REQUIRE(repl__ack_encode(65535, UINT64_MAX, &b) == 0); /* replaces the contents */
    REQUIRE(repl__ack_decode(b.data, b.len, &origin, &applied) == 0);
    CHECK_EQ_INT(origin, 65535);
    CHECK(applied == UINT64_MAX);

    /* truncated and garbage: an error, outputs untouched */
    origin = 1;
    applied = 2;
    CHECK_EQ_INT(repl__ack_decode(b.data, b.len - 1, &origin, &applied), MRD_EPROTO);
    CHECK_EQ_INT(
        repl__ack_decode("\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 11, &origin, &applied),
        MRD_EPROTO);
    CHECK(origin == 1 && applied == 2);
    /* an empty body decodes as origin 0, which the sender rejects (it must
     * name this site) */
    CHECK_EQ_INT(repl__ack_decode("", 0, &origin, &applied), 0);
    CHECK(origin == 0 && applied == 0);
    mrd_buf_free(&b);
}

/* ---- tree digests (version 2): a whole top-down comparison -------------- */

static void
fill_tree(repl__bdigest *d, const char *bucket, uint64_t seed)
{
    memset(d, 0, sizeof(*d));
    snprintf(d->bucket, sizeof(d->bucket), "%s", bucket);
    d->leaves = 65536;
    d->versions = 100000;
    d->digest = calloc(65536, 16);
    for (size_t i = 0; d->digest && i < 65536 * 16; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        d->digest[i] = (uint8_t)(seed >> 56);
    }
}

static void
test_tree_digest_descent(void)
{
    repl__bdigest mine[2], theirs[3];
    repl__tnodes *t = NULL;
    repl__tpend pend = {0}, next = {0};
    repl__dreq push = {0}, q, bad = {.tree = 1};
    repl__bdigest *bm = NULL;
    mrd_buf req = {0}, ans = {0};
    size_t nt = 0, bytes = 0, nbm = 0;
    int is_tree = 0, rounds = 0, differ = 0;

    /* the same 10^5-version bucket on both sides but for 3 leaves; a bucket
     * only we hold, one only they hold, one equal */
    fill_tree(&mine[0], "big", 42);
    fill_tree(&theirs[0], "big", 42);
    theirs[0].digest[5 * 16] ^= 1;
    theirs[0].digest[40000 * 16 + 15] ^= 0x80;
    mine[0].digest[65535 * 16 + 7] ^= 3;
    fill_tree(&mine[1], "ours", 7);
    fill_tree(&theirs[1], "theirs", 8);
    fill_tree(&theirs[2], "zzz", 9);
    theirs[2].versions = 0;
    for (int i = 0; i < 2; i++)
        REQUIRE(repl__tree_build(&mine[i]) == 0);
    for (int i = 0; i < 3; i++)
        REQUIRE(repl__tree_build(&theirs[i]) == 0);

    REQUIRE(repl__tree_roots_encode(theirs, 3, &ans) == 0);
    bytes += ans.len;
    REQUIRE(repl__tree_decode(ans.data, ans.len, &is_tree, &t, &nt) == 0);
    CHECK(is_tree);
    CHECK_EQ_INT(nt, 3);
    REQUIRE(repl__tree_roots_diff(mine, 2, t, nt, NULL, &pend, &push) == 0);
    repl__tnodes_free(t, nt);
    CHECK_EQ_INT(pend.n, 1); /* "big": its root differs */
    CHECK(mine[1].missing);  /* "ours": they lack it */
    CHECK_EQ_INT(push.n, 1); /* "theirs": we lack it ("zzz" is empty) */
    while (pend.n) {
        REQUIRE(repl__tree_request(mine, &pend, 0, REPL_TREE_ASK_MAX, &req) == 0);
        bytes += req.len;
        REQUIRE(repl__dreq_decode(req.data, req.len, &q) == 0);
        REQUIRE(repl__tree_children_encode(theirs, 3, &q, &ans) == 0);
        repl__dreq_free(&q);
        bytes += ans.len;
        REQUIRE(repl__tree_decode(ans.data, ans.len, &is_tree, &t, &nt) == 0);
        REQUIRE(repl__tree_children_diff(mine, 2, t, nt, &next) == 0);
        repl__tnodes_free(t, nt);
        repl__tpend_free(&pend);
        pend = next;
        memset(&next, 0, sizeof(next));
        rounds++;
    }
    CHECK_EQ_INT(rounds, 4);
    for (uint32_t l = 0; l < 65536; l++) {
        if (mine[0].differ[l / 8] & (1u << (l % 8))) {
            differ++;
            CHECK(l == 5 || l == 40000 || l == 65535);
        }
    }
    CHECK_EQ_INT(differ, 3);
    /* roots + 4 levels of 16 children for at most 3 nodes: a few KiB, where
     * the flat leaf array is 1 MiB */
    CHECK(bytes < 4096);
    REQUIRE(repl__tree_push_leaves(mine, 2, &push) == 0);
    CHECK_EQ_INT(push.n, 2); /* "theirs" whole, and the 3 leaves of "big" */
    push.tree = push.push = 1;
    REQUIRE(repl__dreq_encode(&push, &req) == 0);
    REQUIRE(repl__dreq_decode(req.data, req.len, &q) == 0);
    CHECK(q.push);
    REQUIRE(repl__dreq_bitmaps(&q, &bm, &nbm) == 0);
    CHECK_EQ_INT(nbm, 2);
    CHECK(bm[0].missing && strcmp(bm[0].bucket, "theirs") == 0 && bm[0].differ[100] == 0xff);
    CHECK(!bm[1].missing && (bm[1].differ[40000 / 8] & (1u << (40000 % 8))));
    repl__digest_free(bm, nbm);
    repl__dreq_free(&q);

    /* a children request must stay within the tree and its size */
    REQUIRE(repl__dreq_add(&bad, "big", 4, 1) == 0); /* leaves have no children */
    REQUIRE(repl__dreq_encode(&bad, &req) == 0);
    CHECK(repl__dreq_decode(req.data, req.len, &q) == MRD_EPROTO);
    repl__dreq_free(&bad);
    bad = (repl__dreq){.tree = 1};
    REQUIRE(repl__dreq_add(&bad, "big", 1, 16) == 0); /* level 1 has 16 nodes */
    REQUIRE(repl__dreq_encode(&bad, &req) == 0);
    CHECK(repl__dreq_decode(req.data, req.len, &q) == MRD_EPROTO);
    repl__dreq_free(&bad);
    bad = (repl__dreq){.tree = 1};
    for (uint32_t i = 0; i <= REPL_TREE_ASK_MAX; i++)
        REQUIRE(repl__dreq_add(&bad, "big", 3, i) == 0);
    REQUIRE(repl__dreq_encode(&bad, &req) == 0);
    CHECK(repl__dreq_decode(req.data, req.len, &q) == MRD_EPROTO);
    repl__dreq_free(&bad);

    repl__dreq_free(&push);
    repl__tpend_free(&pend);
    mrd_buf_free(&req);
    mrd_buf_free(&ans);
    for (int i = 0; i < 2; i++)
        free(mine[i].digest), free(mine[i].tree), free(mine[i].differ);
    for (int i = 0; i < 3; i++)
        free(theirs[i].digest), free(theirs[i].tree);
}

/* ---- topology: removed sites ------------------------------------------ */

/* A two-site topology at epoch 5: a (1) and b (2). */
static void
topo_two(repl_topology *t)
{
    memset(t, 0, sizeof(*t));
    t->epoch = 5;
    t->n = 2;
    for (int i = 0; i < 2; i++) {
        t->sites[i].id = (uint32_t)i + 1;
        snprintf(t->sites[i].name, sizeof(t->sites[i].name), "%c", 'a' + i);
        snprintf(t->sites[i].replication.host, sizeof(t->sites[i].replication.host), "127.0.0.1");
        t->sites[i].replication.port = (uint16_t)(i + 1);
    }
}

static void
topo_removed_add(repl_topology *t, uint32_t id, const char *name, uint64_t epoch)
{
    repl_removed_site *x = &t->removed[t->n_removed++];

    memset(x, 0, sizeof(*x));
    x->id = id;
    snprintf(x->name, sizeof(x->name), "%s", name);
    x->epoch = epoch;
}

/* Encodes t and says whether it decodes; *out gets the decoded topology. */
static int
topo_decodes(const repl_topology *t, const void *extra, size_t extra_len, repl_topology *out)
{
    mrd_buf b = {0};
    const char *why = NULL;
    int rc;

    rc = repl__topo_encode(t, &b);
    if (rc == 0 && extra_len)
        rc = mrd_buf_append(&b, extra, extra_len);
    CHECK(rc == 0);
    if (rc == 0) {
        rc = repl__topo_decode(b.data, b.len, out, &why);
        CHECK(rc == 0 || why != NULL);
    }
    mrd_buf_free(&b);
    return rc == 0;
}

static void
test_topology_removed_codec(void)
{
    /* the encoding of a topology without removed sites is what it always
     * was (so is its hash): epoch, then each site (id, name, replication) */
    static const uint8_t two[] = {0x08, 0x05, 0x12, 0x12, 0x08, 0x01, 0x12, 0x01, 0x61, 0x1a, 0x0b,
                                  '1',  '2',  '7',  '.',  '0',  '.',  '0',  '.',  '1',  ':',  '1',
                                  0x12, 0x12, 0x08, 0x02, 0x12, 0x01, 0x62, 0x1a, 0x0b, '1',  '2',
                                  '7',  '.',  '0',  '.',  '0',  '.',  '1',  ':',  '2'};
    /* one more removed site (field 3): id 99, name "x", epoch 1 */
    static const uint8_t one_more[] = {0x1a, 0x07, 0x08, 0x63, 0x12, 0x01, 'x', 0x18, 0x01};
    /* a removed site whose pin is 5 bytes */
    static const uint8_t short_pin[] = {0x1a, 0x0e, 0x08, 0x63, 0x12, 0x01, 'x', 0x18,
                                        0x01, 0x22, 0x05, 1,    2,    3,    4,   5};
    repl_topology t, d, d2;
    mrd_buf b = {0};
    uint64_t plain_hash;

    topo_two(&t);
    REQUIRE(repl__topo_encode(&t, &b) == 0);
    CHECK(b.len == sizeof(two) && memcmp(b.data, two, sizeof(two)) == 0);
    mrd_buf_free(&b);
    REQUIRE(topo_decodes(&t, NULL, 0, &d));
    CHECK(d.n_removed == 0);
    plain_hash = d.hash;

    /* removed sites round-trip, in id order, and count in the hash */
    topo_removed_add(&t, 9, "old", 4);
    topo_removed_add(&t, 7, "older", 3);
    t.removed[0].has_tls_pin = 1;
    memset(t.removed[0].tls_pin, 0xab, 32);
    REQUIRE(topo_decodes(&t, NULL, 0, &d));
    CHECK(d.n_removed == 2 && d.hash != plain_hash);
    CHECK(d.removed[0].id == 7 && strcmp(d.removed[0].name, "older") == 0 &&
          d.removed[0].epoch == 3 && !d.removed[0].has_tls_pin);
    CHECK(d.removed[1].id == 9 && strcmp(d.removed[1].name, "old") == 0 &&
          d.removed[1].epoch == 4 && d.removed[1].has_tls_pin && d.removed[1].tls_pin[31] == 0xab);
    CHECK(repl_topology_id_removed(&d, 9) == &d.removed[1] && !repl_topology_id_removed(&d, 2));
    /* the order they arrive in does not change the hash */
    REQUIRE(topo_decodes(&d, NULL, 0, &d2));
    CHECK(d2.hash == d.hash && d2.n_removed == 2);

    /* what is refused */
    topo_two(&t);
    topo_removed_add(&t, 0, "zero", 1);
    CHECK(!topo_decodes(&t, NULL, 0, &d));
    topo_two(&t);
    topo_removed_add(&t, 2, "b", 1); /* still a site */
    CHECK(!topo_decodes(&t, NULL, 0, &d));
    topo_two(&t);
    topo_removed_add(&t, 7, "x", 1);
    topo_removed_add(&t, 7, "y", 2); /* removed twice */
    CHECK(!topo_decodes(&t, NULL, 0, &d));
    topo_two(&t);
    topo_removed_add(&t, 7, "x", 0); /* removal epoch 0 */
    CHECK(!topo_decodes(&t, NULL, 0, &d));
    topo_two(&t);
    topo_removed_add(&t, 7, "x", 6); /* after the topology's epoch */
    CHECK(!topo_decodes(&t, NULL, 0, &d));
    topo_two(&t);
    topo_removed_add(&t, 7, "Bad!", 1);
    CHECK(!topo_decodes(&t, NULL, 0, &d));
    topo_two(&t);
    CHECK(!topo_decodes(&t, short_pin, sizeof(short_pin), &d));
    CHECK(topo_decodes(&t, one_more, sizeof(one_more), &d) && d.n_removed == 1);
    /* at most REPL_TOPO_MAX_REMOVED */
    topo_two(&t);
    t.epoch = 100;
    for (int i = 0; i < REPL_TOPO_MAX_REMOVED; i++) {
        char name[8];

        snprintf(name, sizeof(name), "r%d", i);
        topo_removed_add(&t, 1000 + (uint32_t)i, name, 1 + (uint64_t)i);
    }
    CHECK(topo_decodes(&t, NULL, 0, &d) && d.n_removed == REPL_TOPO_MAX_REMOVED);
    CHECK(!topo_decodes(&t, one_more, sizeof(one_more), &d));
}

/* repl_topology_change: a removal moves the site to the removed list, with
 * this site's own pin for it; the list keeps the latest removals; a removed
 * id is not added again. No engine: nothing is stored. */
static void
test_topology_change_removes(void)
{
    struct evconnlistener *l;
    mrd_peer_conf peers[2], again;
    repl_opts o;
    repl_topology out;
    repl *r = NULL;
    uint16_t port;

    REQUIRE((l = listen_on(0, &port)) != NULL);
    memset(peers, 0, sizeof(peers));
    for (int i = 0; i < 2; i++) {
        peers[i].id = (uint32_t)i + 2;
        snprintf(peers[i].name, sizeof(peers[i].name), "%c", 'b' + i);
        snprintf(peers[i].replication.host, sizeof(peers[i].replication.host), "127.0.0.1");
        peers[i].replication.port = 1;
    }
    peers[1].has_tls_pin = 1; /* c is pinned in "our file" */
    memset(peers[1].tls_pin, 0xcd, 32);
    repl_opts_init(&o);
    o.site_id = 1;
    o.site_name = "a";
    o.secret = "s";
    o.listener = l;
    o.peers = peers;
    o.n_peers = 2;
    REQUIRE(repl_new(g_base, &o, &r) == 0);

    {
        /* the stable point: nothing heard, nothing acked: 0, held by our
         * own writes at the first peer */
        repl_stable st;
        CHECK(repl_stable_point(r, &st) == 0 && st.hlc == 0);
        CHECK(st.origin == 1 && st.site == 2);
    }
    REQUIRE(repl_topology_change(r, 0, NULL, 3, &out) == 0);
    CHECK(out.epoch == 1 && out.n == 2 && out.n_removed == 1);
    CHECK(out.removed[0].id == 3 && strcmp(out.removed[0].name, "c") == 0 &&
          out.removed[0].epoch == 1 && out.removed[0].has_tls_pin &&
          out.removed[0].tls_pin[0] == 0xcd);
    CHECK(repl__removed_name(r, 3) && strcmp(repl__removed_name(r, 3), "c") == 0);
    CHECK(repl__removed_name(r, 2) == NULL);
    /* c's id cannot come back, even under another name */
    again = peers[1];
    snprintf(again.name, sizeof(again.name), "c2");
    CHECK(repl_topology_change(r, 1, &again, 0, &out) == MRD_EEXIST);

    /* full list: the oldest removal is forgotten, the new one kept */
    r->topo.n_removed = 0;
    r->topo.epoch = 200;
    for (int i = 0; i < REPL_TOPO_MAX_REMOVED; i++) {
        char name[8];

        snprintf(name, sizeof(name), "r%d", i);
        topo_removed_add(&r->topo, 1000 + (uint32_t)i, name, 100 - (uint64_t)i);
    }
    REQUIRE(repl_topology_change(r, 200, NULL, 2, &out) == 0);
    CHECK(out.n_removed == REPL_TOPO_MAX_REMOVED && out.n == 1);
    {
        /* every peer removed: nobody else holds it back, the point is now */
        repl_stable st;
        CHECK(repl_stable_point(r, &st) > 0 && st.origin == 0 && st.site == 0);
    }
    CHECK(repl_topology_id_removed(&out, 2) && repl_topology_id_removed(&out, 2)->epoch == 201);
    CHECK(!repl_topology_id_removed(&out, 1000 + REPL_TOPO_MAX_REMOVED - 1)); /* epoch 37 */
    CHECK(repl_topology_id_removed(&out, 1000 + REPL_TOPO_MAX_REMOVED - 2));
    for (int i = 1; i < out.n_removed; i++)
        CHECK(out.removed[i - 1].id < out.removed[i].id);
    repl_free(r);
    evconnlistener_free(l);
}

/* ---- version summaries (version 3): what a pass leaves out -------------- */

/* Encoded user metadata holding only a tag stamp "hlc.site" (and an empty
 * tag set): key NUL value NUL, twice. */
static void
tags_meta(char *buf, const char *stamp)
{
    size_t k = strlen(ENGINE_META_TAGS_HLC) + 1, v = strlen(stamp) + 1;

    memcpy(buf, ENGINE_META_TAGS_HLC, k);
    memcpy(buf + k, stamp, v);
    memcpy(buf + k + v, ENGINE_META_TAGGING "\0", strlen(ENGINE_META_TAGGING) + 2);
}

static size_t
tags_meta_len(const char *buf)
{
    size_t n = 0;

    for (int i = 0; buf && i < 4; i++)
        n += strlen(buf + n) + 1;
    return n;
}

/* vv of up to two (site, counter) pairs, encoded into buf. */
static size_t
vv_of(uint8_t *buf, uint64_t c1, uint64_t c2)
{
    vv v = {0};
    size_t len = 0;

    if (c1)
        vv_raise(&v, 1, c1);
    if (c2)
        vv_raise(&v, 2, c2);
    return vv_encode(&v, buf, VV_ENCODED_MAX, &len) == 0 ? len : 0;
}

static void
test_summaries_leave_out_what_the_peer_drops(void)
{
    /* what the peer holds in bucket "b" */
    struct {
        const char *key, *vid;
        uint64_t c1, c2;
        uint32_t flags; /* 1 null version, 2 tombstone */
        uint64_t tags_hlc;
    } held[] = {
        {"over", "n2", 5, 0, 1, 0},     /* a null version after site 1's 5th write */
        {"conc", "n3", 0, 4, 1, 0},     /* a null version of site 2 only */
        {"vers", "v9", 5, 0, 0, 0},     /* a real version */
        {"gone", "v1", 2, 0, 2, 0},     /* the tombstone of v1 */
        {"tagged", "t1", 3, 0, 0, 900}, /* tagged at 900 */
    };
    enum { N = sizeof(held) / sizeof(held[0]) };
    Meridian__Repl__VersionSummary vs[N], *vp[N];
    Meridian__Repl__BucketVersions bv = MERIDIAN__REPL__BUCKET_VERSIONS__INIT, *bvp = &bv;
    Meridian__Repl__DigestResponse m = MERIDIAN__REPL__DIGEST_RESPONSE__INIT;
    uint8_t vvb[N][VV_ENCODED_MAX], zero[16] = {0}, mine[VV_ENCODED_MAX];
    uint8_t *buf;
    size_t len;
    repl__peerset *ps = NULL;

    for (size_t i = 0; i < N; i++) {
        meridian__repl__version_summary__init(&vs[i]);
        vs[i].key = (char *)held[i].key;
        vs[i].version_id = (char *)held[i].vid;
        vs[i].vv.data = vvb[i];
        vs[i].vv.len = vv_of(vvb[i], held[i].c1, held[i].c2);
        vs[i].hash.data = zero; /* matches no version: the other rules decide */
        vs[i].hash.len = 16;
        vs[i].flags = held[i].flags;
        vs[i].tags_hlc = held[i].tags_hlc;
        vs[i].tags_site = held[i].tags_hlc ? 2 : 0;
        vp[i] = &vs[i];
    }
    bv.bucket = "b";
    bv.versions = vp;
    bv.n_versions = N;
    m.held = &bvp;
    m.n_held = 1;
    m.summaries = 1;
    len = meridian__repl__digest_response__get_packed_size(&m);
    buf = malloc(len + 1);
    CHECK(buf != NULL);
    meridian__repl__digest_response__pack(&m, buf);
    CHECK_EQ_INT(repl__peerset_decode(buf, len, &ps), 0);
    CHECK_EQ_INT(repl__peerset_count(ps), N);

#define NOOP(key, vid, c1, c2, fl, tags)                                                           \
    repl__peerset_noop(ps, "b", key,                                                               \
                       &(store_version){.version_id = vid,                                         \
                                        .etag = "e",                                               \
                                        .flags = fl,                                               \
                                        .vv = mine,                                                \
                                        .vv_len = vv_of(mine, c1, c2),                             \
                                        .user_meta = tags,                                         \
                                        .user_meta_len = tags_meta_len(tags)})
    /* an older null version of an overwritten key: dropped there */
    CHECK_EQ_INT(NOOP("over", "n1", 3, 0, ENGINE_VF_NULL_VERSION, NULL), 1);
    /* ... but one the peer's has not seen (concurrent) is kept as a conflict */
    CHECK_EQ_INT(NOOP("over", "n1", 3, 1, ENGINE_VF_NULL_VERSION, NULL), 0);
    CHECK_EQ_INT(NOOP("conc", "n1", 3, 0, ENGINE_VF_NULL_VERSION, NULL), 0);
    /* a newer null version goes */
    CHECK_EQ_INT(NOOP("over", "n9", 6, 0, ENGINE_VF_NULL_VERSION, NULL), 0);
    /* versions of a versioned key are kept whatever dominates them */
    CHECK_EQ_INT(NOOP("vers", "v1", 3, 0, 0, NULL), 0);
    /* a removed id stays removed; our removal still goes */
    CHECK_EQ_INT(NOOP("gone", "v1", 1, 0, 0, NULL), 1);
    CHECK_EQ_INT(NOOP("gone", "v1", 2, 0, ENGINE_VF_TOMBSTONE | STORE_VF_DELETE_MARKER, NULL), 0);
    /* tags: an older tagging of the same version is dropped, a newer one goes */
    {
        char old[64], newer[64], same[64];
        tags_meta(old, "800.1");
        tags_meta(newer, "901.1");
        tags_meta(same, "900.2");
        CHECK_EQ_INT(NOOP("tagged", "t1", 3, 0, 0, old), 1);
        CHECK_EQ_INT(NOOP("tagged", "t1", 3, 0, 0, NULL), 1); /* never tagged */
        CHECK_EQ_INT(NOOP("tagged", "t1", 3, 0, 0, newer), 0);
        CHECK_EQ_INT(NOOP("tagged", "t1", 3, 0, 0, same), 0);
        /* another write with the same id (corrupt): sent, the peer reports it */
        CHECK_EQ_INT(NOOP("tagged", "t1", 4, 0, 0, old), 0);
    }
    /* another key, another bucket: nothing is known, everything goes */
    CHECK_EQ_INT(NOOP("other", "n1", 1, 0, ENGINE_VF_NULL_VERSION, NULL), 0);
    CHECK_EQ_INT(repl__peerset_noop(ps, "c", "over",
                                    &(store_version){.version_id = "n1",
                                                     .flags = ENGINE_VF_NULL_VERSION,
                                                     .vv = mine,
                                                     .vv_len = vv_of(mine, 3, 0)}),
                 0);
#undef NOOP
    repl__peerset_free(ps);
    /* not a summaries answer (an older peer's 400 text, a tree answer) */
    CHECK(repl__peerset_decode("bad request", 11, &ps) != 0 && ps == NULL);
    m.summaries = 0;
    meridian__repl__digest_response__pack(&m, buf);
    CHECK_EQ_INT(repl__peerset_decode(buf, len - 2, &ps), MRD_EPROTO);
    free(buf);
}

/* A summaries page of bucket "a" (key "x") and bucket "b" (keys "c", "m"),
 * packed into *buf; partial as given. */
static size_t
page_of(int partial, int n_held, uint8_t **buf)
{
    const char *keys[] = {"x", "c", "m"};
    Meridian__Repl__VersionSummary vs[3], *vp[3];
    Meridian__Repl__BucketVersions bv[2], *bvp[2];
    Meridian__Repl__DigestResponse m = MERIDIAN__REPL__DIGEST_RESPONSE__INIT;
    uint8_t vvb[VV_ENCODED_MAX], zero[16] = {0};
    size_t vlen = vv_of(vvb, 1, 0), len;

    for (int i = 0; i < 3; i++) {
        meridian__repl__version_summary__init(&vs[i]);
        vs[i].key = (char *)keys[i];
        vs[i].version_id = "v";
        vs[i].vv.data = vvb;
        vs[i].vv.len = vlen;
        vs[i].hash.data = zero;
        vs[i].hash.len = 16;
        vp[i] = &vs[i];
    }
    for (int i = 0; i < 2; i++) {
        meridian__repl__bucket_versions__init(&bv[i]);
        bvp[i] = &bv[i];
    }
    bv[0].bucket = "a";
    bv[0].versions = vp;
    bv[0].n_versions = 1;
    bv[1].bucket = "b";
    bv[1].versions = vp + 1;
    bv[1].n_versions = 2;
    m.held = bvp;
    m.n_held = (size_t)n_held;
    m.summaries = 1;
    m.held_partial = partial;
    len = meridian__repl__digest_response__get_packed_size(&m);
    *buf = malloc(len + 1);
    if (!*buf)
        abort();
    meridian__repl__digest_response__pack(&m, *buf);
    return len;
}

/* repl__dreq_decode of a summaries request with that page point. */
static int
decode_page_point(const char *bucket, const char *key, const char *vid)
{
    Meridian__Repl__DigestRequest m = MERIDIAN__REPL__DIGEST_REQUEST__INIT;
    repl__dreq back;
    size_t len;
    uint8_t *out;
    int rc;

    m.tree = 1;
    m.summaries = 1;
    m.summaries_from_bucket = (char *)bucket;
    m.summaries_from_key = (char *)key;
    m.summaries_from_version = (char *)vid;
    len = meridian__repl__digest_request__get_packed_size(&m);
    if (!(out = malloc(len ? len : 1)))
        abort();
    meridian__repl__digest_request__pack(&m, out);
    rc = repl__dreq_decode(out, len, &back);
    if (rc == 0)
        repl__dreq_free(&back);
    free(out);
    return rc;
}

static void
test_summaries_pages(void)
{
    repl__peerset *ps = NULL;
    repl__dreq q = {.tree = 1, .summaries = 1}, back;
    mrd_buf body = {0};
    uint8_t *buf;
    size_t len = page_of(1, 2, &buf);

    /* a partial page speaks for what its walk went past: bucket a whole, b up
     * to its last version, (m, v): a page can end inside a key's versions */
    CHECK_EQ_INT(repl__peerset_decode(buf, len, &ps), 0);
    free(buf);
    CHECK_EQ_INT(repl__peerset_partial(ps), 1);
    CHECK_EQ_INT(repl__peerset_covers(ps, "a", "zzz", "z"), 1);
    CHECK_EQ_INT(repl__peerset_covers(ps, "b", "c", "z"), 1);
    CHECK_EQ_INT(repl__peerset_covers(ps, "b", "l", "z"), 1);
    CHECK_EQ_INT(repl__peerset_covers(ps, "b", "m", "u"), 1);
    CHECK_EQ_INT(repl__peerset_covers(ps, "b", "m", "v"), 1);
    CHECK_EQ_INT(repl__peerset_covers(ps, "b", "m", "w"), 0);
    CHECK_EQ_INT(repl__peerset_covers(ps, "b", "ma", ""), 0);
    CHECK_EQ_INT(repl__peerset_covers(ps, "b", "z", ""), 0);
    CHECK_EQ_INT(repl__peerset_covers(ps, "c", "a", ""), 0); /* a bucket it did not reach */
    repl__peerset_free(ps);
    /* a whole answer speaks for everything; so does none (nothing to page) */
    len = page_of(0, 2, &buf);
    CHECK_EQ_INT(repl__peerset_decode(buf, len, &ps), 0);
    free(buf);
    CHECK_EQ_INT(repl__peerset_covers(ps, "c", "a", ""), 1);
    repl__peerset_free(ps);
    CHECK_EQ_INT(repl__peerset_covers(NULL, "c", "a", ""), 1);
    /* a partial page that stopped before any version of its last bucket */
    len = page_of(1, 1, &buf);
    CHECK_EQ_INT(repl__peerset_decode(buf, len, &ps), 0);
    free(buf);
    CHECK_EQ_INT(repl__peerset_covers(ps, "a", "zzz", ""), 0);
    repl__peerset_free(ps);

    /* the page point travels with a summaries request, and only with one */
    REQUIRE(repl__dreq_add(&q, "b", 4, 7) == 0);
    snprintf(q.from_bucket, sizeof(q.from_bucket), "b");
    snprintf(q.from_key, sizeof(q.from_key), "m");
    snprintf(q.from_vid, sizeof(q.from_vid), "v7");
    CHECK_EQ_INT(repl__dreq_encode(&q, &body), 0);
    CHECK_EQ_INT(repl__dreq_decode(body.data, body.len, &back), 0);
    CHECK(back.summaries && strcmp(back.from_bucket, "b") == 0 && strcmp(back.from_key, "m") == 0 &&
          strcmp(back.from_vid, "v7") == 0 && back.n == 1 && back.r[0].nodes[0] == 7);
    repl__dreq_free(&back);
    q.summaries = 0;
    q.push = 1;
    CHECK_EQ_INT(repl__dreq_encode(&q, &body), 0);
    CHECK_EQ_INT(repl__dreq_decode(body.data, body.len, &back), 0);
    CHECK(back.push && !back.summaries && back.from_bucket[0] == '\0');
    repl__dreq_free(&back);
    repl__dreq_free(&q);
    /* a page point longer than a key can be is refused, and so is a
     * version longer than a version id can be */
    {
        char *key = malloc(REPL_KEY_MAX + 1);
        REQUIRE(key != NULL);
        memset(key, 'k', REPL_KEY_MAX);
        key[REPL_KEY_MAX] = '\0';
        CHECK_EQ_INT(decode_page_point("b", key, ""), MRD_EPROTO);
        CHECK_EQ_INT(decode_page_point("b", "m", key), MRD_EPROTO);
        key[REPL_VID_MAX - 1] = '\0';
        CHECK_EQ_INT(decode_page_point("b", "m", key), 0);
        free(key);
    }
    mrd_buf_free(&body);
}

static const test_case tests[] = {
    TEST(test_summaries_pages),
    TEST(test_auth_sign_verify),
    TEST(test_msg_roundtrip_and_malformed),
    TEST(test_health_rules),
    TEST(test_status_of_held_window),
    TEST(test_options_rejected),
    TEST(test_two_sites_heartbeat),
    TEST(test_wrong_secret),
    TEST(test_kill_and_restart),
    TEST(test_malformed_body_is_400),
    TEST(test_batch_pack_parse_roundtrip),
    TEST(test_batch_parse_rejects),
    TEST(test_data_check),
    TEST(test_ack_roundtrip_and_malformed),
    TEST(test_tree_digest_descent),
    TEST(test_summaries_leave_out_what_the_peer_drops),
    TEST(test_topology_removed_codec),
    TEST(test_topology_change_removes),
    {NULL, NULL},
};

int
main(int argc, char **argv)
{
    int rc;

    mrd_log_setup(getenv("REPL_TEST_LOG") ? MRD_LOG_DEBUG : MRD_LOG_WARN, "test");
    g_base = event_base_new();
    rc = test_run_all(tests, argc, argv);
    event_base_free(g_base);
    return rc;
}
