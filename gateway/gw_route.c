/*
 * gw_route.c - where an S3 request is served: here, or at a peer site.
 *
 * A client pointed at any one site keeps getting correct answers when this
 * site is behind, has lost its drives, or was drained. The decisions
 * (docs/routing.md has the full table with examples):
 *
 *   request          state here                                  action
 *   ---------------  ------------------------------------------  ---------------------------
 *   any, from peer   (x-meridian-auth verified)                  serve here, never forward
 *   any              drained by the operator                     forward (DRAIN)
 *   any              store not open (too few drives)             reads: forward (STORE);
 *                                                                writes: write_failover
 *   GET/HEAD         write token origin:lsn not applied yet      wait <= token_wait, then
 *                                                                serve here or forward to
 *                                                                the origin (TOKEN)
 *   GET/HEAD         found and readable                          serve here
 *   GET/HEAD         missing, and behind a peer (its announced   forward to the nearest
 *                    high-water LSN > what we applied from it)   such peer (BEHIND)
 *   GET/HEAD         missing, caught up with every peer          404 here, no WAN trip
 *   GET/HEAD         current version is a delete marker          404 here (never resurrect)
 *   GET/HEAD         data unreadable (> m shards lost)           forward (STORE)
 *   multipart        upload id names another site                forward there (UPLOAD), or
 *                                                                503 if it is unreachable
 *   PUT/DELETE       < k writable drives, WAL failed, open fails forward (WRITE) or 503
 *                                                                SlowDown (write_failover)
 *
 * "Nearest" is the lowest heartbeat RTT (EWMA) among HEALTHY peers with an
 * S3 address, DEGRADED ones when no HEALTHY one qualifies; the replicator's
 * hysteresis keeps a flapping link from flapping routing. Each decision is
 * made per request from the current state, so failback is automatic: once
 * drives, store or peer are back, the next request is served here again.
 * Threads: these functions run on every S3 loop. What they read of the
 * replicator and the topology comes from the daemon's view (gw_loop.c),
 * counters are atomic, and the transition log is serialised by route.mu;
 * a drive probe a read asks for runs on the main loop.
 * Transitions of the site's routing state (reads local/peer, writes
 * local/forward/refuse, drained) are logged as event=route.* at info level
 * and counted (meridian_route_transitions_total); a 1 s timer notices them
 * even without traffic.
 *
 * Write tokens: a PUT or DELETE answered here carries
 * x-meridian-write-token: <site>:<lsn>, the site's durable WAL LSN when the
 * write was acknowledged (>= the write's own LSN). A read elsewhere that
 * presents it is served locally once that site has applied the origin's
 * records through lsn; it polls every TOKEN_POLL_MS for up to token_wait
 * and otherwise goes to the origin itself.
 */
#include "gw_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "engine.h"
#include "replicator.h"

#define TOKEN_POLL_MS     5
#define MIN_FREE_BYTES    (16ull << 20) /* a drive with less free space takes no writes */
#define ROUTE_TICK_MS     1000
#define WRITE_TOKEN_MAX   128
#define READ_FAIL_HOLD_MS 10000

static const char *const reason_names[GW_ROUTE__COUNT] = {"behind", "store", "token",
                                                          "drain",  "write", "upload"};

/* ---- state ---------------------------------------------------------------- */

static int
has_peers(gw_daemon *d)
{
    const gw_view *v = gw__view_lock(d);
    int has = v->repl && v->n_conf > 0;

    gw__view_unlock(d);
    return has;
}

/* Reads count as failing over for READ_FAIL_HOLD_MS after one found its
 * data unreadable (the drive probe may not have noticed yet). */
static int
store_reads_ok(const gw_daemon *d)
{
    uint64_t now = mrd_clock_mono_ns(), failed = GW_LOAD(d->route.read_failed_ns);

    if (failed && now - failed < READ_FAIL_HOLD_MS * 1000000ull)
        return 0;
    return GW_LOAD(d->eng) && gw__drives_online(d) >= d->conf->ec_k;
}

static int
store_writes_ok(const gw_daemon *d)
{
    int writable = 0;

    if (!GW_LOAD(d->eng) || gw__engine_failed(d))
        return 0;
    for (int i = 0; i < d->n_drives; i++)
        writable += GW_LOAD(d->drives[i].state) == GW_DRIVE_ONLINE &&
                    GW_LOAD(d->drives[i].free_bytes) >= MIN_FREE_BYTES;
    return writable >= d->conf->ec_k;
}

static const char *
write_mode(const gw_daemon *d)
{
    int drained = GW_LOAD(d->route.drained);

    if (store_writes_ok(d) && !drained)
        return "local";
    return d->conf->write_failover == MRD_WRITE_FAILOVER_FORWARD || drained ? "forward" : "refuse";
}

/* Logs and counts a change of one routing state (any loop: under mu). */
static void
transition(gw_daemon *d, int *state, int now, const char *event, const char *detail)
{
    pthread_mutex_lock(&d->route.mu);
    if (*state != now) {
        *state = now;
        GW_ADD(d->route.transitions, 1);
        MRD_INFO(event, "state=%s drives_online=%d need=%d writes=%s detail=\"%s\"",
                 now ? "local" : "peer", gw__drives_online(d), d->conf->ec_k, write_mode(d),
                 detail);
    }
    pthread_mutex_unlock(&d->route.mu);
}

static void
observe(gw_daemon *d, const char *detail)
{
    transition(d, &d->route.store_reads_ok, store_reads_ok(d), "route.reads", detail);
    transition(d, &d->route.store_writes_ok, store_writes_ok(d), "route.writes", detail);
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    observe(arg, "periodic check");
}

int
gw__route_init(gw_daemon *d)
{
    struct timeval tv = {ROUTE_TICK_MS / 1000, (ROUTE_TICK_MS % 1000) * 1000};

    d->route.store_reads_ok = 1;
    d->route.store_writes_ok = 1;
    d->route.token_wait_ms = d->conf->token_wait_ms;
    d->route_timer = event_new(d->base, -1, EV_PERSIST, tick_cb, d);
    if (!d->route_timer || event_add(d->route_timer, &tv) != 0)
        return -ENOMEM;
    return 0;
}

/* What this site has applied of origin's records. */
static uint64_t
applied_from(gw_daemon *d, const repl_peer_info *p)
{
    engine_repl_state st[MRD_MAX_PEERS];
    uint64_t a = p->applied_from_peer;
    struct engine *e = GW_LOAD(d->eng);
    int n = e ? engine_repl_progress(e, st, MRD_MAX_PEERS) : 0;

    for (int i = 0; i < n; i++)
        if (st[i].origin == p->id && st[i].applied > a)
            a = st[i].applied;
    return a;
}

int
gw__route_pick(gw_daemon *d, gw_route_reason why, uint32_t token_site, const uint32_t *exclude,
               int n_exclude, uint32_t *site_out)
{
    int best = -1, best_rank = 3;
    double best_rtt = 0;
    uint32_t best_id = 0;
    const gw_view *v = gw__view_lock(d);
    /* A hop is signed with the secret (repl_proxy_sign); without one no
     * peer qualifies, and every request is served here. */
    int can_sign = d->conf->replication_secret[0] != '\0';

    for (int i = 0; can_sign && v->repl && v->n_conf > 0 && i < v->n_info; i++) {
        const repl_peer_info *p = &v->info[i];
        const mrd_peer_conf *pc = gw__view_conf(v, p->id);
        int rank, skip = 0;

        if (!pc || !pc->has_s3)
            continue;
        if (p->state == REPL_PEER_HEALTHY)
            rank = 0;
        else if (p->state == REPL_PEER_DEGRADED)
            rank = 1;
        else
            continue;
        for (int j = 0; j < n_exclude; j++)
            skip |= exclude[j] == p->id;
        if (skip || ((why == GW_ROUTE_TOKEN || why == GW_ROUTE_UPLOAD) && p->id != token_site) ||
            (why == GW_ROUTE_BEHIND && p->high_water_lsn <= applied_from(d, p)))
            continue;
        if (best < 0 || rank < best_rank || (rank == best_rank && p->rtt_ms < best_rtt)) {
            best = i;
            best_rank = rank;
            best_rtt = p->rtt_ms;
            best_id = p->id;
        }
    }
    gw__view_unlock(d);
    if (best < 0)
        return MRD_ENOTFOUND;
    *site_out = best_id;
    return best;
}

/* Forwards r for why when a peer qualifies. 1 if r was taken. */
static int
forward(gw_daemon *d, gw_req *r, gw_route_reason why, uint32_t token_site, gw_s3_err fallback)
{
    uint32_t site;

    if (gw__route_pick(d, why, token_site, NULL, 0, &site) < 0)
        return 0;
    return gw__proxy_start(d, r, why, site, token_site, fallback) == 0;
}

/* ---- requests from peers ------------------------------------------------- */

int
gw__route_from_peer(const gw_req *r)
{
    return gw_req_header(r, "x-meridian-auth") != NULL;
}

static int
copy_hdr(gw_req *r, const char *name, char *out, size_t outsz)
{
    const char *v = gw_req_header(r, name);

    if (!v || strlen(v) >= outsz)
        return -1;
    memcpy(out, v, strlen(v) + 1);
    return 0;
}

int
gw__route_peer_auth(gw_daemon *d, gw_req *r, gw_sigv4_auth *auth)
{
    const char *sha = gw_req_header(r, "x-amz-content-sha256");
    const char *why = "replication is not running";
    repl_proxy_sig sig;
    uint32_t site = 0;
    char q[160], signed_hash[160];

    const gw_view *v;
    int ok = 0, running;

    if (!gw__route_from_peer(r))
        return 0;
    v = gw__view_lock(d);
    running = v->repl != NULL;
    if (running && copy_hdr(r, "x-meridian-site-id", sig.site, sizeof(sig.site)) == 0 &&
        copy_hdr(r, "x-meridian-time", sig.time, sizeof(sig.time)) == 0 &&
        copy_hdr(r, "x-meridian-auth", sig.auth, sizeof(sig.auth)) == 0 &&
        repl_proxy_check(v->repl, gw_req_method(r), gw_req_target(r),
                         gw__proxy_payload_hash(r, gw_req_header(r, GW_HDR_ANON) != NULL,
                                                signed_hash, sizeof(signed_hash)),
                         &sig, &site, &why) == 0) {
        ok = gw__view_peer(v, site) != NULL;
        if (!ok)
            why = "site id is not a configured peer";
    }
    gw__view_unlock(d);
    if (ok) {
        memset(auth, 0, sizeof(*auth));
        snprintf(auth->access_key, sizeof(auth->access_key), "site-%u", site);
        snprintf(auth->payload_hash, sizeof(auth->payload_hash), "%s",
                 sha && strlen(sha) < sizeof(auth->payload_hash) ? sha : "UNSIGNED-PAYLOAD");
        GW_ADD(d->route.served_for_peers, 1);
        return 1;
    }
    if (running && why == NULL)
        why = "malformed or oversized x-meridian-* header";
    MRD_WARN("route.peer_auth_failed", "remote=%s path=%s reason=\"%s\"", gw_req_peer(r),
             mrd_log_quote(gw_req_path(r), q, sizeof(q)), why ? why : "bad headers");
    gw_s3_error(r, GW_S3E_ACCESS_DENIED, gw_req_path(r), "peer request failed authentication");
    return -1;
}

/* ---- the decisions ------------------------------------------------------- */

static int
is_read(const gw_req *r)
{
    return strcmp(gw_req_method(r), "GET") == 0 || strcmp(gw_req_method(r), "HEAD") == 0;
}

/* write_failover for r: forward to the nearest peer or refuse with 503
 * SlowDown. Always takes r. */
static void
write_failover(gw_daemon *d, gw_req *r)
{
    observe(d, "write refused by the local store");
    if (d->conf->write_failover == MRD_WRITE_FAILOVER_FORWARD &&
        forward(d, r, GW_ROUTE_WRITE, 0, GW_S3E_SLOW_DOWN))
        return;
    GW_ADD(d->route.writes_refused, 1);
    gw_s3_error(r, GW_S3E_SLOW_DOWN, gw_req_path(r),
                d->conf->write_failover == MRD_WRITE_FAILOVER_FORWARD
                    ? "the local store cannot take writes and no peer site is reachable"
                    : "the local store cannot take writes (write_failover = refuse)");
}

/* The site r's uploadId names (gw_s3_mpu.c, "Upload ids": hex digits, '-',
 * the site id): 1 and *site, or 0 when r has no such id (an id made
 * before ids named a site is its site's own). */
static int
upload_site(const gw_req *r, uint32_t *site)
{
    mrd_buf id = {0};
    const char *dash;
    char *end;
    unsigned long v = 0;
    int ok = 0;

    if (gw_query_param(gw_req_query(r), "uploadId", &id) && id.len > 0 && id.len <= 128 &&
        (dash = strrchr(id.data, '-')) && isdigit((unsigned char)dash[1])) {
        errno = 0;
        v = strtoul(dash + 1, &end, 10);
        ok = !*end && !errno && v <= UINT32_MAX;
    }
    mrd_buf_free(&id);
    if (ok)
        *site = (uint32_t)v;
    return ok;
}

/* A request for an upload site holds, site not this one (a client moved
 * mid-upload between sites, or an upload created while this site forwarded
 * its writes): forwarded there, or, when no forward can reach it now,
 * answered 503 ServiceUnavailable (retry: the parts are safe there). 0 when
 * it is served here: site is not in the topology (NoSuchUpload follows), or
 * there is no secret to sign the hop. 1 when it took r. */
static int
route_upload(gw_daemon *d, gw_req *r, uint32_t site)
{
    const mrd_peer_conf *pc;
    const gw_view *v;
    char name[MRD_NAME_MAX], msg[160];

    if (!d->conf->replication_secret[0])
        return 0;
    v = gw__view_lock(d);
    pc = gw__view_conf(v, site);
    if (pc)
        snprintf(name, sizeof(name), "%s", pc->name);
    gw__view_unlock(d);
    if (!pc)
        return 0; /* not in the topology: its uploads are gone */
    if (gw__route_pick(d, GW_ROUTE_UPLOAD, site, NULL, 0, &site) >= 0 &&
        gw__proxy_start(d, r, GW_ROUTE_UPLOAD, site, site, GW_S3E_SERVICE_UNAVAILABLE) == 0)
        return 1;
    GW_ADD(d->route.proxy_errors, 1);
    snprintf(msg, sizeof(msg), "the upload is held by site %s, which cannot be reached now", name);
    gw_s3_error(r, GW_S3E_SERVICE_UNAVAILABLE, gw_req_path(r), msg);
    return 1;
}

int
gw__route_early(gw_daemon *d, gw_req *r)
{
    uint32_t site;

    if (gw__route_from_peer(r) || !has_peers(d))
        return 0;
    if (upload_site(r, &site)) {
        if (site != d->conf->site_id && route_upload(d, r, site))
            return 1;
        if (site == d->conf->site_id && GW_LOAD(d->eng))
            return 0; /* its parts are here: served here, even drained */
    }
    if (GW_LOAD(d->route.drained))
        return forward(d, r, GW_ROUTE_DRAIN, 0, GW_S3E_SERVICE_UNAVAILABLE);
    if (GW_LOAD(d->eng))
        return 0;
    if (is_read(r))
        return forward(d, r, GW_ROUTE_STORE, 0, GW_S3E_SERVICE_UNAVAILABLE);
    write_failover(d, r);
    return 1;
}

int
gw__route_write(gw_daemon *d, gw_req *r)
{
    if (gw__route_from_peer(r) || !has_peers(d) || store_writes_ok(d))
        return 0;
    write_failover(d, r);
    return 1;
}

int
gw__route_write_failed(gw_daemon *d, gw_req *r, int rc)
{
    if (gw__route_from_peer(r) || !has_peers(d) ||
        (rc != MRD_EDEGRADED && rc != -ENOSPC && rc != MRD_EDURABLE))
        return 0;
    write_failover(d, r);
    return 1;
}

int
gw__route_read_failed(gw_daemon *d, gw_req *r, gw_s3_err err, int rc, int deleted)
{
    if (gw__route_from_peer(r) || !has_peers(d))
        return 0;
    if (err == GW_S3E_NO_SUCH_KEY || err == GW_S3E_NO_SUCH_BUCKET) {
        /* A delete marker here is an answer, not a gap: never resurrect. */
        if (!deleted && forward(d, r, GW_ROUTE_BEHIND, 0, err))
            return 1;
        GW_ADD(d->route.local_misses, 1);
        return 0;
    }
    if (rc == MRD_EDEGRADED || rc == -EIO || gw_s3_err_status(err) >= 500) {
        uint64_t now = mrd_clock_mono_ns();
        /* the drive probe runs every 10 s: have the main loop look now (at
         * most once a second) so that writes fail over without waiting */
        if (now - GW_LOAD(d->route.read_failed_ns) > 1000000000ull)
            gw__probe_drives_soon(d);
        GW_STORE(d->route.read_failed_ns, now);
        observe(d, "a read found the data unreadable here");
        MRD_INFO("route.read_failover", "path=%s error=\"%s\"", gw_req_path(r),
                 mrd_strerror(rc ? rc : MRD_EDEGRADED));
        return forward(d, r, GW_ROUTE_STORE, 0, err);
    }
    return 0;
}

/* ---- write tokens -------------------------------------------------------- */

void
gw__route_write_token(gw_daemon *d, gw_req *r)
{
    engine_status st;
    char tok[WRITE_TOKEN_MAX];
    struct engine *e = GW_LOAD(d->eng);

    if (!e || engine_get_status(e, &st) != 0)
        return;
    snprintf(tok, sizeof(tok), "%s:%llu", d->conf->site_name,
             (unsigned long long)st.wal_durable_lsn);
    gw_resp_header(r, GW_HDR_WRITE_TOKEN, tok);
}

/* 1 once this site has applied origin's records through lsn. */
static int
token_met(gw_daemon *d, uint32_t site, uint64_t lsn)
{
    const gw_view *v = gw__view_lock(d);
    const repl_peer_info *p = v->repl ? gw__view_peer(v, site) : NULL;
    int met = p && applied_from(d, p) >= lsn;

    gw__view_unlock(d);
    return met;
}

typedef struct token_wait {
    gw_daemon *d;
    gw_req *r;
    struct event *ev;
    uint32_t site;
    uint64_t lsn;
    uint64_t deadline_ns;
    char bucket[64];
    char *key;
} token_wait;

static void
tw_free(token_wait *t)
{
    if (t->ev)
        event_free(t->ev);
    free(t->key);
    free(t);
}

static void
tw_release(gw_req *r, void *ctx, int aborted)
{
    (void)r;
    (void)aborted;
    tw_free(ctx);
}

static const gw_req_ops tw_ops = {.release = tw_release};

static void
tw_tick(evutil_socket_t fd, short what, void *arg)
{
    token_wait *t = arg;
    gw_daemon *d = t->d;
    gw_req *r = t->r;
    struct timeval tv = {0, TOKEN_POLL_MS * 1000};

    (void)fd;
    (void)what;
    if (token_met(d, t->site, t->lsn) || !GW_LOAD(d->eng)) {
        GW_ADD(d->route.token_waited, 1);
    } else if (mrd_clock_mono_ns() < t->deadline_ns) {
        evtimer_add(t->ev, &tv);
        return;
    } else if (forward(d, r, GW_ROUTE_TOKEN, t->site, GW_S3E_SERVICE_UNAVAILABLE)) {
        tw_free(t); /* the proxy's ops replaced ours */
        return;
    } else {
        MRD_INFO("route.token_unmet",
                 "path=%s origin=%u lsn=%llu reason=\"origin unreachable: "
                 "served from this site\"",
                 gw_req_path(r), t->site, (unsigned long long)t->lsn);
    }
    {
        char bucket[64], *key = t->key;
        snprintf(bucket, sizeof(bucket), "%s", t->bucket);
        t->key = NULL;
        tw_free(t);
        gw__s3_get_object(d, r, bucket, key); /* replaces our ops */
        free(key);
    }
}

int
gw__route_read(gw_daemon *d, gw_req *r, const char *bucket, const char *key)
{
    const char *tok = gw_req_header(r, GW_HDR_WRITE_TOKEN);
    uint32_t site = 0;
    uint64_t lsn = 0;
    token_wait *t;
    struct timeval tv = {0, TOKEN_POLL_MS * 1000};
    int rc;

    if (!tok || gw__route_from_peer(r))
        return 0;
    gw__view_lock(d); /* the peer list it reads may change (gw__on_topology) */
    rc = gw__route_parse_token(d->conf, tok, &site, &lsn);
    gw__view_unlock(d);
    if (rc != 0) {
        gw_s3_error(r, GW_S3E_INVALID_ARGUMENT, gw_req_path(r),
                    "x-meridian-write-token must be <site>:<lsn> as returned by a PUT or DELETE "
                    "at a site of this cluster");
        return 1;
    }
    if (site == 0 || !has_peers(d) || token_met(d, site, lsn)) {
        GW_ADD(d->route.token_local, 1);
        return 0;
    }
    t = calloc(1, sizeof(*t));
    if (!t || !(t->key = strdup(key)) || !(t->ev = evtimer_new(gw__base(d), tw_tick, t))) {
        if (t)
            tw_free(t);
        return 0; /* serve here: stale at worst */
    }
    t->d = d;
    t->r = r;
    t->site = site;
    t->lsn = lsn;
    t->deadline_ns = mrd_clock_mono_ns() + (uint64_t)d->route.token_wait_ms * 1000000ull;
    snprintf(t->bucket, sizeof(t->bucket), "%s", bucket);
    gw_req_attach(r, &tw_ops, t);
    evtimer_add(t->ev, &tv);
    return 1;
}

/* ---- admin, status, metrics ---------------------------------------------- */

int
gw__route_failover_admin(gw_daemon *d, gw_req *r, const char *path)
{
    int drain;
    char body[64];
    int n;

    if (strcmp(path, "/admin/v1/failover/drain") == 0)
        drain = 1;
    else if (strcmp(path, "/admin/v1/failover/undrain") == 0)
        drain = 0;
    else
        return 0;
    if (strcmp(gw_req_method(r), "POST") != 0) {
        static const char e[] = "{\"error\":\"MethodNotAllowed\",\"message\":\"use POST\"}\n";
        gw_resp_simple(r, 405, "application/json", e, sizeof(e) - 1);
        return 1;
    }
    if (GW_LOAD(d->route.drained) != drain) {
        GW_STORE(d->route.drained, drain);
        GW_ADD(d->route.transitions, 1);
        MRD_INFO(drain ? "route.drain" : "route.undrain", "by=%s writes=%s", gw_req_peer(r),
                 write_mode(d));
    }
    n = snprintf(body, sizeof(body), "{\"ok\":true,\"drained\":%s}\n", drain ? "true" : "false");
    gw_resp_simple(r, 200, "application/json", body, (size_t)n);
    return 1;
}

void
gw__route_status_json(gw_daemon *d, mrd_json_w *w)
{
    gw_route_state *s = &d->route;
    uint32_t site = 0;

    observe(d, "status");
    mrd_json_w_obj_begin(w);
    mrd_json_w_key(w, "drained");
    mrd_json_w_bool(w, GW_LOAD(s->drained));
    mrd_json_w_key(w, "reads");
    mrd_json_w_str(w, GW_LOAD(s->drained) || !store_reads_ok(d) ? "peer" : "local");
    mrd_json_w_key(w, "writes");
    mrd_json_w_str(w, write_mode(d));
    mrd_json_w_key(w, "write_failover");
    mrd_json_w_str(w, d->conf->write_failover == MRD_WRITE_FAILOVER_FORWARD ? "forward" : "refuse");
    mrd_json_w_key(w, "token_wait_ms");
    mrd_json_w_uint(w, s->token_wait_ms);
    mrd_json_w_key(w, "nearest_peer");
    if (gw__route_pick(d, GW_ROUTE_STORE, 0, NULL, 0, &site) >= 0) {
        const mrd_peer_conf *pc = gw__peer_conf(d, site);
        mrd_json_w_str(w, pc ? pc->name : "?");
    } else {
        mrd_json_w_null(w);
    }
    mrd_json_w_key(w, "behind");
    mrd_json_w_arr_begin(w);
    for (int i = 0; has_peers(d) && i < repl_peer_count(d->replicator); i++) {
        repl_peer_info p;
        if (repl_peer_get(d->replicator, i, &p) == 0 && p.high_water_lsn > applied_from(d, &p))
            mrd_json_w_str(w, p.name);
    }
    mrd_json_w_arr_end(w);
    mrd_json_w_key(w, "proxied");
    mrd_json_w_obj_begin(w);
    for (int i = 0; i < GW_ROUTE__COUNT; i++) {
        mrd_json_w_key(w, reason_names[i]);
        mrd_json_w_uint(w, s->proxied[i]);
    }
    mrd_json_w_obj_end(w);
    mrd_json_w_key(w, "proxies_open");
    mrd_json_w_int(w, GW_LOAD(s->proxies_open));
    mrd_json_w_key(w, "proxy_errors");
    mrd_json_w_uint(w, GW_LOAD(s->proxy_errors));
    mrd_json_w_key(w, "proxy_retries");
    mrd_json_w_uint(w, GW_LOAD(s->proxy_retries));
    mrd_json_w_key(w, "proxy_reused");
    mrd_json_w_uint(w, GW_LOAD(s->proxy_reused));
    mrd_json_w_key(w, "local_misses");
    mrd_json_w_uint(w, GW_LOAD(s->local_misses));
    mrd_json_w_key(w, "served_for_peers");
    mrd_json_w_uint(w, GW_LOAD(s->served_for_peers));
    mrd_json_w_key(w, "token_local");
    mrd_json_w_uint(w, GW_LOAD(s->token_local));
    mrd_json_w_key(w, "token_waited");
    mrd_json_w_uint(w, GW_LOAD(s->token_waited));
    mrd_json_w_key(w, "writes_refused");
    mrd_json_w_uint(w, GW_LOAD(s->writes_refused));
    mrd_json_w_key(w, "transitions");
    mrd_json_w_uint(w, GW_LOAD(s->transitions));
    mrd_json_w_obj_end(w);
}

void
gw__route_metrics(gw_daemon *d, mrd_buf *b)
{
    gw_route_state *s = &d->route;

    observe(d, "metrics scrape");
    mrd_buf_appendf(b, "# HELP meridian_route_proxied_total S3 requests forwarded to a peer site, "
                       "by reason.\n# TYPE meridian_route_proxied_total counter\n");
    for (int i = 0; i < GW_ROUTE__COUNT; i++)
        mrd_buf_appendf(b, "meridian_route_proxied_total{reason=\"%s\"} %llu\n", reason_names[i],
                        (unsigned long long)s->proxied[i]);
#define C(name, help, v)                                                                           \
    mrd_buf_appendf(b, "# HELP " name " " help "\n# TYPE " name " counter\n" name " %llu\n",       \
                    (unsigned long long)(v))
    C("meridian_route_proxy_errors_total", "Forwarded requests no peer answered.",
      GW_LOAD(s->proxy_errors));
    C("meridian_route_proxy_retries_total", "Peers that failed before answering; the next tried.",
      GW_LOAD(s->proxy_retries));
    C("meridian_route_proxy_reused_total", "Forwarded requests sent on a kept-alive connection.",
      GW_LOAD(s->proxy_reused));
    C("meridian_route_local_misses_total", "404s answered here without a WAN round trip.",
      GW_LOAD(s->local_misses));
    C("meridian_route_served_for_peers_total", "Requests peer sites forwarded to this one.",
      GW_LOAD(s->served_for_peers));
    C("meridian_route_token_local_total", "Token reads served here at once.",
      GW_LOAD(s->token_local));
    C("meridian_route_token_waited_total", "Token reads served here after waiting.",
      GW_LOAD(s->token_waited));
    C("meridian_route_writes_refused_total", "Writes refused with 503 SlowDown.",
      GW_LOAD(s->writes_refused));
    C("meridian_route_transitions_total", "Routing state changes (event=route.*).",
      GW_LOAD(s->transitions));
#undef C
    mrd_buf_appendf(b,
                    "# HELP meridian_route_drained 1 while the site is drained.\n"
                    "# TYPE meridian_route_drained gauge\nmeridian_route_drained %d\n"
                    "# HELP meridian_route_reads_local 1 while reads are served locally.\n"
                    "# TYPE meridian_route_reads_local gauge\nmeridian_route_reads_local %d\n"
                    "# HELP meridian_route_writes_local 1 while writes are taken locally.\n"
                    "# TYPE meridian_route_writes_local gauge\nmeridian_route_writes_local %d\n",
                    GW_LOAD(s->drained), !GW_LOAD(s->drained) && store_reads_ok(d),
                    !GW_LOAD(s->drained) && store_writes_ok(d));
}
