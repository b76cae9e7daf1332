/*
 * gw_admin.c - health endpoints, the admin API and Prometheus metrics.
 *
 * Endpoints (docs/admin-api.md is the reference):
 *   GET /health/live     200 while the process runs (both ports)
 *   GET /health/ready    200 when the site can take writes, else 503 with
 *                        the reason (both ports)
 *   GET /metrics         Prometheus text, unauthenticated (admin port)
 *   GET /admin/v1/status JSON: site, version, uptime, listeners, erasure
 *                        coding, drives, peers (admin port; bearer token)
 *
 * Everything here runs on the main loop; the S3 counters it reports are
 * summed over the S3 loops' servers (atomics), and /health on the S3 port
 * runs on whichever S3 loop took the connection (gw__ready reads atomics).
 *
 * Replication metrics are one family per quantity with a peer="<name>"
 * label, read from one repl_peer_get snapshot per peer per scrape, so the
 * series of one scrape agree with each other. Every family's HELP and TYPE
 * lines are written even when there is no replicator or no peer, so a
 * scrape's shape does not depend on the topology.
 *
 * The admin API authenticates with "Authorization: Bearer <token>" compared
 * in constant time against [admin] token. Health and metrics stay open
 * because load balancers and Prometheus scrape them without credentials;
 * they reveal no object data. The S3 port serves the same health paths
 * (gw__route_health) before its own router (gw_s3.c).
 */
#include "gw_int.h"
#include "engine.h"
#include "replicator.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int
is_get_or_head(gw_req *r)
{
    return strcmp(gw_req_method(r), "GET") == 0 || strcmp(gw_req_method(r), "HEAD") == 0;
}

int
gw__route_health(gw_req *r, gw_daemon *d)
{
    const char *path = gw_req_path(r);

    if (strcmp(path, "/health/live") == 0 && is_get_or_head(r)) {
        gw_resp_simple(r, 200, "text/plain", "live\n", 5);
        return 1;
    }
    if (strcmp(path, "/health/ready") == 0 && is_get_or_head(r)) {
        char msg[256];
        int n;
        if (gw__ready(d)) {
            gw_resp_simple(r, 200, "text/plain", "ready\n", 6);
        } else {
            if (gw__engine_failed(d))
                n = snprintf(msg, sizeof(msg),
                             "not ready: writes refused after a WAL or index failure (disk "
                             "full or fsync error, see the log); fix the disk and restart\n");
            else if (GW_LOAD(d->removed_at))
                n = snprintf(msg, sizeof(msg),
                             "not ready: this site was removed from the cluster's topology at "
                             "epoch %llu ('meridianctl site add' at another site re-adds it)\n",
                             (unsigned long long)GW_LOAD(d->removed_at));
            else
                n = snprintf(msg, sizeof(msg), "not ready: %s (%d of %d drives online, need %d)\n",
                             GW_LOAD(d->shutting_down) ? "shutting down" : "too few drives",
                             gw__drives_online(d), d->n_drives, d->conf->ec_k);
            gw_resp_simple(r, 503, "text/plain", msg, (size_t)n);
        }
        return 1;
    }
    return 0;
}

void
gw__json_response(gw_req *r, int status, mrd_buf *b)
{
    gw_resp_simple(r, status, "application/json", b->data ? b->data : "{}", b->data ? b->len : 2);
}

void
gw__json_error(gw_req *r, int status, const char *code, const char *message)
{
    mrd_buf b = {0};
    mrd_json_w w;

    mrd_json_w_init(&w, &b);
    mrd_json_w_obj_begin(&w);
    mrd_json_w_key(&w, "error");
    mrd_json_w_str(&w, code);
    mrd_json_w_key(&w, "message");
    mrd_json_w_str(&w, message);
    mrd_json_w_obj_end(&w);
    if (status == 401)
        gw_resp_header(r, "WWW-Authenticate", "Bearer realm=\"meridian-admin\"");
    gw__json_response(r, status, &b);
    mrd_buf_free(&b);
}

static void
w_addr(mrd_json_w *w, const char *key, const mrd_addr *a)
{
    char s[300];

    mrd_json_w_key(w, key);
    mrd_json_w_str(w, mrd_addr_format(a, s, sizeof(s)));
}

/* "wal": the log against its size cap, group commit, and what the cap did
 * to lagging peers (docs/admin-api.md). Absent while the store is not open. */
static void
wal_status_json(gw_daemon *d, mrd_json_w *w)
{
    struct engine *e = gw__engine(d);
    engine_status st;

    if (!e || engine_get_status(e, &st) != 0)
        return;
    mrd_json_w_key(w, "wal");
    mrd_json_w_obj_begin(w);
    mrd_json_w_key(w, "first_lsn");
    mrd_json_w_uint(w, st.wal_first_lsn);
    mrd_json_w_key(w, "next_lsn");
    mrd_json_w_uint(w, st.wal_next_lsn);
    mrd_json_w_key(w, "durable_lsn");
    mrd_json_w_uint(w, st.wal_durable_lsn);
    mrd_json_w_key(w, "applied_lsn");
    mrd_json_w_uint(w, st.applied_lsn);
    mrd_json_w_key(w, "segments");
    mrd_json_w_uint(w, st.wal_segments);
    mrd_json_w_key(w, "bytes");
    mrd_json_w_uint(w, st.wal_bytes);
    mrd_json_w_key(w, "retention_bytes");
    mrd_json_w_uint(w, st.wal_retention_bytes);
    mrd_json_w_key(w, "over_cap");
    mrd_json_w_bool(w, st.wal_over_cap);
    mrd_json_w_key(w, "appends");
    mrd_json_w_uint(w, st.wal_appends);
    mrd_json_w_key(w, "syncs");
    mrd_json_w_uint(w, st.wal_syncs);
    mrd_json_w_key(w, "max_batch");
    mrd_json_w_uint(w, st.wal_max_batch);
    mrd_json_w_key(w, "segments_deleted");
    mrd_json_w_uint(w, st.wal_segments_deleted);
    mrd_json_w_key(w, "cap_resyncs");
    mrd_json_w_uint(w, st.wal_cap_resyncs);
    mrd_json_w_key(w, "cap_cursor_skips");
    mrd_json_w_uint(w, st.wal_cap_cursor_skips);
    mrd_json_w_key(w, "failed");
    mrd_json_w_bool(w, st.failed);
    mrd_json_w_key(w, "failure");
    mrd_json_w_str(w, st.failure);
    mrd_json_w_obj_end(w);
}

/* A site's configured name ("" when not known here). */
static const char *
site_name_of(const mrd_config *c, uint32_t id)
{
    if (id == c->site_id)
        return c->site_name;
    for (int i = 0; i < c->n_peers; i++)
        if (c->peers[i].id == id)
            return c->peers[i].name;
    return "";
}

/* "gc": the stable point, which link holds it back, and what the sweeps
 * purged (docs/admin-api.md, docs/conflicts.md section 6). */
static void
gc_status_json(gw_daemon *d, mrd_json_w *w)
{
    struct engine *e = gw__engine(d);
    engine_gc_status g;
    repl_stable rs = {0};
    uint64_t now = mrd_clock_realtime_ms(NULL), ms;

    if (!e || engine_gc_status_get(e, &g) != 0)
        return;
    if (d->replicator)
        repl_stable_point(d->replicator, &rs);
    ms = MRD_HLC_MS(g.stable_hlc);
    mrd_json_w_key(w, "gc");
    mrd_json_w_obj_begin(w);
    mrd_json_w_key(w, "stable_hlc");
    mrd_json_w_uint(w, g.stable_hlc);
    mrd_json_w_key(w, "stable_age_ms"); /* every write older than this is at every site */
    if (g.stable_hlc)
        mrd_json_w_uint(w, now > ms ? now - ms : 0);
    else
        mrd_json_w_null(w);
    mrd_json_w_key(w, "held_by"); /* the link whose acks are lowest right now */
    mrd_json_w_obj_begin(w);
    mrd_json_w_key(w, "origin");
    mrd_json_w_str(w, rs.origin ? site_name_of(d->conf, rs.origin) : "");
    mrd_json_w_key(w, "site");
    mrd_json_w_str(w, rs.site ? site_name_of(d->conf, rs.site) : "");
    mrd_json_w_obj_end(w);
    mrd_json_w_key(w, "grace_s");
    mrd_json_w_uint(w, g.grace_ms / 1000);
    mrd_json_w_key(w, "interval_s");
    mrd_json_w_uint(w, g.interval_ms / 1000);
    mrd_json_w_key(w, "sweeps");
    mrd_json_w_uint(w, g.sweeps);
    mrd_json_w_key(w, "last_sweep_ms");
    mrd_json_w_uint(w, g.last_sweep_ms);
    mrd_json_w_key(w, "last_error");
    mrd_json_w_str(w, g.last_error ? mrd_strerror(g.last_error) : "");
    mrd_json_w_key(w, "last_keys");
    mrd_json_w_uint(w, g.last.keys);
    mrd_json_w_key(w, "last_versions");
    mrd_json_w_uint(w, g.last.versions);
    mrd_json_w_key(w, "last_proposed");
    mrd_json_w_uint(w, g.last.proposed);
    mrd_json_w_key(w, "last_duration_ms");
    mrd_json_w_uint(w, g.last.duration_ms);
    mrd_json_w_key(w, "markers_purged");
    mrd_json_w_uint(w, g.markers_purged);
    mrd_json_w_key(w, "tombstones_purged");
    mrd_json_w_uint(w, g.tombstones_purged);
    mrd_json_w_key(w, "ghosts_dropped");
    mrd_json_w_uint(w, g.ghosts_dropped);
    mrd_json_w_key(w, "losers_purged");
    mrd_json_w_uint(w, g.losers_purged);
    mrd_json_w_key(w, "loser_bytes_purged");
    mrd_json_w_uint(w, g.loser_bytes_purged);
    mrd_json_w_key(w, "conflict_retention_s");
    mrd_json_w_uint(w, g.retention_ms / 1000);
    mrd_json_w_obj_end(w);
}

static void
admin_status(gw_req *r, gw_daemon *d)
{
    const mrd_config *c = d->conf;
    mrd_buf b = {0};
    mrd_json_w w;
    gw_http_stats st;

    mrd_json_w_init(&w, &b);
    mrd_json_w_obj_begin(&w);
    mrd_json_w_key(&w, "site");
    mrd_json_w_obj_begin(&w);
    mrd_json_w_key(&w, "id");
    mrd_json_w_uint(&w, c->site_id);
    mrd_json_w_key(&w, "name");
    mrd_json_w_str(&w, c->site_name);
    mrd_json_w_key(&w, "region");
    mrd_json_w_str(&w, c->region);
    mrd_json_w_obj_end(&w);
    mrd_json_w_key(&w, "version");
    mrd_json_w_str(&w, MRD_VERSION);
    mrd_json_w_key(&w, "started_at_ms");
    mrd_json_w_uint(&w, d->started_ms);
    mrd_json_w_key(&w, "uptime_s");
    mrd_json_w_double(&w, (double)(mrd_clock_mono_ns() - d->started_mono_ns) / 1e9);
    mrd_json_w_key(&w, "ready");
    mrd_json_w_bool(&w, gw__ready(d));
    mrd_json_w_key(&w, "removed_from_topology_epoch");
    mrd_json_w_uint(&w, GW_LOAD(d->removed_at));
    mrd_json_w_key(&w, "listen");
    mrd_json_w_obj_begin(&w);
    w_addr(&w, "s3", &c->listen_s3);
    w_addr(&w, "replication", &c->listen_replication);
    w_addr(&w, "admin", &c->listen_admin);
    if (c->has_s3_tls)
        w_addr(&w, "s3_tls", &c->listen_s3_tls);
    mrd_json_w_key(&w, "replication_transport"); /* docs/configuration.md, TLS */
    mrd_json_w_str(&w, c->repl_tls_cert[0] ? "mtls" : "h2c");
    /* who vouches for a peer: the shared secret, or (mutual TLS without
     * one) its certificate alone; "none" with neither (no peers) */
    mrd_json_w_key(&w, "replication_auth");
    mrd_json_w_str(&w, c->replication_secret[0] ? "secret"
                       : c->repl_tls_cert[0]    ? "certificate"
                                                : "none");
    mrd_json_w_obj_end(&w);
    mrd_json_w_key(&w, "erasure");
    mrd_json_w_obj_begin(&w);
    mrd_json_w_key(&w, "k");
    mrd_json_w_int(&w, c->ec_k);
    mrd_json_w_key(&w, "m");
    mrd_json_w_int(&w, c->ec_m);
    mrd_json_w_key(&w, "block_size");
    mrd_json_w_uint(&w, c->block_size);
    mrd_json_w_obj_end(&w);

    mrd_json_w_key(&w, "drives");
    mrd_json_w_arr_begin(&w);
    for (int i = 0; i < d->n_drives; i++) {
        const gw_drive *dr = &d->drives[i];
        const char *why;
        gw_drive_verdict v = gw__drive_verdict(d, i, NULL, &why);
        mrd_json_w_obj_begin(&w);
        mrd_json_w_key(&w, "path");
        mrd_json_w_str(&w, dr->path);
        mrd_json_w_key(&w, "state"); /* "offline" here, "failed" in the drives document */
        mrd_json_w_str(&w, v == GW_DRIVE_FAILED ? "offline"
                           : v == GW_DRIVE_FULL ? "full"
                                                : "online");
        mrd_json_w_key(&w, "total_bytes");
        mrd_json_w_uint(&w, dr->total_bytes);
        mrd_json_w_key(&w, "free_bytes");
        mrd_json_w_uint(&w, dr->free_bytes);
        mrd_json_w_key(&w, "error");
        mrd_json_w_str(&w, why);
        mrd_json_w_obj_end(&w);
    }
    mrd_json_w_arr_end(&w);

    /* One line per peer for people and the CLI; the replicator's full view
     * (counters, errors, HLC, epochs) follows under "replication". */
    mrd_json_w_key(&w, "peers");
    mrd_json_w_arr_begin(&w);
    for (int i = 0; i < c->n_peers; i++) {
        const mrd_peer_conf *p = &c->peers[i];
        repl_peer_info info;
        int idx = d->replicator ? repl_peer_find(d->replicator, p->id) : -1;
        int have = idx >= 0 && repl_peer_get(d->replicator, idx, &info) == 0;
        mrd_json_w_obj_begin(&w);
        mrd_json_w_key(&w, "name");
        mrd_json_w_str(&w, p->name);
        mrd_json_w_key(&w, "id");
        mrd_json_w_uint(&w, p->id);
        w_addr(&w, "replication", &p->replication);
        if (p->has_s3)
            w_addr(&w, "s3", &p->s3);
        if (p->has_admin)
            w_addr(&w, "admin", &p->admin);
        mrd_json_w_key(&w, "state");
        mrd_json_w_str(&w, have ? repl_peer_state_name(info.state) : "unknown");
        if (have) {
            mrd_json_w_key(&w, "connected");
            mrd_json_w_bool(&w, info.connected);
            mrd_json_w_key(&w, "rtt_ms");
            mrd_json_w_double(&w, info.rtt_ms);
            mrd_json_w_key(&w, "last_heartbeat_age_ms");
            mrd_json_w_int(&w, info.last_heartbeat_age_ms);
            mrd_json_w_key(&w, "high_water_lsn");
            mrd_json_w_uint(&w, info.high_water_lsn);
            mrd_json_w_key(&w, "last_error");
            mrd_json_w_str(&w, info.last_error);
        }
        mrd_json_w_obj_end(&w);
    }
    mrd_json_w_arr_end(&w);
    wal_status_json(d, &w);
    gc_status_json(d, &w);
    mrd_json_w_key(&w, "routing");
    gw__route_status_json(d, &w);
    if (d->replicator) {
        mrd_json_w_key(&w, "replication");
        repl_status_json(d->replicator, &w);
        /* every link of the cluster, as known here (meridianctl status) */
        mrd_json_w_key(&w, "cluster");
        repl_cluster_json(d->replicator, &w);
    }

    gw__loops_stats(d, &st);
    mrd_json_w_key(&w, "s3_http");
    mrd_json_w_obj_begin(&w);
    mrd_json_w_key(&w, "connections_open");
    mrd_json_w_uint(&w, st.conns_open);
    mrd_json_w_key(&w, "requests");
    mrd_json_w_uint(&w, st.requests);
    mrd_json_w_key(&w, "bad_requests");
    mrd_json_w_uint(&w, st.bad_requests + st.too_large);
    mrd_json_w_key(&w, "tls_handshake_failures");
    mrd_json_w_uint(&w, st.tls_failures);
    mrd_json_w_obj_end(&w);
    mrd_json_w_key(&w, "s3_loops"); /* [s3] loops: requests and connections per loop */
    gw__loops_status_json(d, &w);
    mrd_json_w_obj_end(&w);

    if (mrd_json_w_error(&w) != 0)
        gw__json_error(r, 500, "InternalError", "could not render status");
    else
        gw__json_response(r, 200, &b);
    mrd_buf_free(&b);
}

static void
metric(mrd_buf *b, const char *name, const char *type, const char *help, const char *labels,
       double v)
{
    mrd_buf_appendf(b, "# HELP %s %s\n# TYPE %s %s\n%s%s %.17g\n", name, help, name, type, name,
                    labels, v);
}

/* meridian_wal_*: the same figures as "wal" in the status. */
static void
wal_metrics(gw_daemon *d, mrd_buf *b)
{
    struct engine *e = gw__engine(d);
    engine_status st;

    if (!e || engine_get_status(e, &st) != 0)
        return;
    metric(b, "meridian_wal_bytes", "gauge", "Bytes in the WAL's segments.", "",
           (double)st.wal_bytes);
    metric(b, "meridian_wal_retention_bytes", "gauge", "The WAL's size cap ([wal] retention_max).",
           "", (double)st.wal_retention_bytes);
    metric(b, "meridian_wal_segments", "gauge", "WAL segment files.", "", (double)st.wal_segments);
    metric(b, "meridian_wal_over_cap", "gauge",
           "1 when the WAL is over its cap even after dropping what it could.", "",
           st.wal_over_cap);
    metric(b, "meridian_wal_appends_total", "counter", "Records appended since start.", "",
           (double)st.wal_appends);
    metric(b, "meridian_wal_syncs_total", "counter", "WAL fdatasyncs (group commits) since start.",
           "", (double)st.wal_syncs);
    metric(b, "meridian_wal_cap_resyncs_total", "counter",
           "Lagging peers the WAL's size cap marked for an anti-entropy resync.", "",
           (double)st.wal_cap_resyncs);
    metric(b, "meridian_wal_cap_cursor_skips_total", "counter",
           "Lagging peers the cap moved over segments of replicated applies instead.", "",
           (double)st.wal_cap_cursor_skips);
}

/* meridian_gc_*: the same figures as "gc" in the status. */
static void
gc_metrics(gw_daemon *d, mrd_buf *b)
{
    struct engine *e = gw__engine(d);
    engine_gc_status g;
    uint64_t now = mrd_clock_realtime_ms(NULL), ms;

    if (!e || engine_gc_status_get(e, &g) != 0)
        return;
    ms = MRD_HLC_MS(g.stable_hlc);
    if (g.stable_hlc)
        metric(b, "meridian_gc_stable_age_seconds", "gauge",
               "Age of the stable point: every write older than this is at every site.", "",
               (double)(now > ms ? now - ms : 0) / 1000.0);
    metric(b, "meridian_gc_sweeps_total", "counter", "GC sweeps since start.", "",
           (double)g.sweeps);
    metric(b, "meridian_gc_markers_purged_total", "counter",
           "Null delete markers purged since start.", "", (double)g.markers_purged);
    metric(b, "meridian_gc_tombstones_purged_total", "counter",
           "Tombstones of versions removed by id purged since start.", "",
           (double)g.tombstones_purged);
    metric(b, "meridian_gc_losers_purged_total", "counter",
           "Hidden conflict losers purged after their retention window since start.", "",
           (double)g.losers_purged);
    metric(b, "meridian_gc_loser_bytes_purged_total", "counter",
           "Object data of the hidden conflict losers purged since start.", "",
           (double)g.loser_bytes_purged);
    metric(b, "meridian_gc_ghosts_dropped_total", "counter",
           "Anti-entropy copies of purged or removed versions dropped since start.", "",
           (double)g.ghosts_dropped);
}

static void
http_metrics(mrd_buf *b, const char *listener, const gw_http_stats *stp)
{
    gw_http_stats st = *stp;
    char lab[64];

    snprintf(lab, sizeof(lab), "{listener=\"%s\"}", listener);
    mrd_buf_appendf(b,
                    "meridian_http_connections_open%s %llu\n"
                    "meridian_http_requests_total%s %llu\n"
                    "meridian_http_bad_requests_total%s %llu\n"
                    "meridian_http_too_large_total%s %llu\n"
                    "meridian_http_timeouts_total%s %llu\n"
                    "meridian_http_aborted_total%s %llu\n"
                    "meridian_http_bytes_in_total%s %llu\n"
                    "meridian_http_bytes_out_total%s %llu\n"
                    "meridian_http_tls_handshakes_total%s %llu\n"
                    "meridian_http_tls_failures_total%s %llu\n",
                    lab, (unsigned long long)st.conns_open, lab, (unsigned long long)st.requests,
                    lab, (unsigned long long)st.bad_requests, lab, (unsigned long long)st.too_large,
                    lab, (unsigned long long)st.timeouts, lab, (unsigned long long)st.aborted, lab,
                    (unsigned long long)st.bytes_in, lab, (unsigned long long)st.bytes_out, lab,
                    (unsigned long long)st.tls_handshakes, lab,
                    (unsigned long long)st.tls_failures);
}

/* Per-peer replication series (meridian_repl_*), one family each. */
enum {
    RS_UP,
    RS_LAG_RECORDS,
    RS_LAG_SECONDS,
    RS_LAG_BYTES,
    RS_INFLIGHT,
    RS_QUEUED,
    RS_SENT_RECORDS,
    RS_SENT_OBJECTS,
    RS_SENT_BYTES,
    RS_SEND_ERRORS,
    RS_SUPERSEDED,
    RS_RECEIVED_RECORDS,
    RS_RECEIVED_BYTES,
    RS_RECEIVE_ERRORS,
    RS_NEEDS_RESYNC,
    RS_RTT,
    RS_FAILED,
    RS_COUNT
};

static const struct {
    const char *name, *type, *help;
} repl_series[RS_COUNT] = {
    [RS_UP] = {"meridian_repl_peer_up", "gauge",
               "1 when the outbound session to the peer is up and its Hello is done."},
    [RS_LAG_RECORDS] = {"meridian_repl_lag_records", "gauge",
                        "This site's durable WAL records the peer has not acked."},
    [RS_LAG_SECONDS] = {"meridian_repl_lag_seconds", "gauge",
                        "How long the peer's acked LSN has been behind; 0 when level."},
    [RS_LAG_BYTES] = {"meridian_repl_lag_bytes", "gauge",
                      "Object data in the records the peer has not acked (scanned each second)."},
    [RS_INFLIGHT] = {"meridian_repl_inflight_requests", "gauge",
                     "Record requests sent to the peer and not yet acked."},
    [RS_QUEUED] = {"meridian_repl_queued_requests", "gauge",
                   "Record requests cut for the peer and not yet sent."},
    [RS_SENT_RECORDS] = {"meridian_repl_sent_records_total", "counter",
                         "WAL records sent to the peer."},
    [RS_SENT_OBJECTS] = {"meridian_repl_sent_objects_total", "counter",
                         "Objects whose data was sent to the peer."},
    [RS_SENT_BYTES] = {"meridian_repl_sent_bytes_total", "counter",
                       "Object data bytes sent to the peer."},
    [RS_SEND_ERRORS] = {"meridian_repl_send_errors_total", "counter",
                        "Record requests to the peer that failed."},
    [RS_SUPERSEDED] = {"meridian_repl_superseded_skipped_total", "counter",
                       "Puts not sent to the peer: overwritten or deleted here before they "
                       "were sent."},
    [RS_RECEIVED_RECORDS] = {"meridian_repl_received_records_total", "counter",
                             "The peer's WAL records applied here."},
    [RS_RECEIVED_BYTES] = {"meridian_repl_received_bytes_total", "counter",
                           "Object data bytes received from the peer."},
    [RS_RECEIVE_ERRORS] = {"meridian_repl_receive_errors_total", "counter",
                           "Record requests from the peer that were rejected or failed."},
    [RS_NEEDS_RESYNC] = {"meridian_repl_needs_resync", "gauge",
                         "1 when this site's WAL no longer holds what the peer needs."},
    [RS_RTT] = {"meridian_repl_rtt_seconds", "gauge", "Heartbeat round trip to the peer (EWMA)."},
    [RS_FAILED] = {"meridian_repl_failed_records", "gauge",
                   "Records of this site the peer has not applied [replication] failed_after "
                   "after they were written (x-amz-replication-status FAILED)."},
};

/* One line of series `which` for peer p: counts and gauges as integers,
 * durations in seconds with microsecond resolution. */
static void
repl_series_line(mrd_buf *b, const repl_peer_info *p, int which)
{
    uint64_t u = 0;
    double secs = 0;
    int is_secs = 0;

    switch (which) {
    case RS_UP:
        u = p->connected != 0;
        break;
    case RS_LAG_RECORDS:
        u = p->lag_records;
        break;
    case RS_LAG_SECONDS:
        secs = p->lag_ms / 1000.0;
        is_secs = 1;
        break;
    case RS_LAG_BYTES:
        u = p->lag_bytes;
        break;
    case RS_INFLIGHT:
        u = p->inflight;
        break;
    case RS_QUEUED:
        u = p->queued;
        break;
    case RS_SENT_RECORDS:
        u = p->records_sent;
        break;
    case RS_SENT_OBJECTS:
        u = p->objects_sent;
        break;
    case RS_SENT_BYTES:
        u = p->data_bytes_sent;
        break;
    case RS_SEND_ERRORS:
        u = p->send_errors;
        break;
    case RS_SUPERSEDED:
        u = p->superseded_skipped;
        break;
    case RS_RECEIVED_RECORDS:
        u = p->records_received;
        break;
    case RS_RECEIVED_BYTES:
        u = p->data_bytes_received;
        break;
    case RS_RECEIVE_ERRORS:
        u = p->receive_errors;
        break;
    case RS_NEEDS_RESYNC:
        u = p->needs_resync != 0;
        break;
    case RS_FAILED:
        u = p->failed_records;
        break;
    case RS_RTT:
        secs = p->rtt_ms / 1000.0;
        is_secs = 1;
        break;
    }
    if (is_secs)
        mrd_buf_appendf(b, "%s{peer=\"%s\"} %.6f\n", repl_series[which].name, p->name, secs);
    else
        mrd_buf_appendf(b, "%s{peer=\"%s\"} %llu\n", repl_series[which].name, p->name,
                        (unsigned long long)u);
}

static void
repl_metrics(mrd_buf *b, gw_daemon *d)
{
    int n = 0, count = d->replicator ? repl_peer_count(d->replicator) : 0;
    repl_peer_info *peers = count > 0 ? calloc((size_t)count, sizeof(*peers)) : NULL;

    for (int i = 0; peers && i < count; i++)
        if (repl_peer_get(d->replicator, i, &peers[n]) == 0)
            n++;
    for (int s = 0; s < RS_COUNT; s++) {
        mrd_buf_appendf(b, "# HELP %s %s\n# TYPE %s %s\n", repl_series[s].name, repl_series[s].help,
                        repl_series[s].name, repl_series[s].type);
        for (int i = 0; i < n; i++)
            repl_series_line(b, &peers[i], s);
    }
    free(peers);
}

static void
admin_metrics(gw_req *r, gw_daemon *d)
{
    mrd_buf b = {0};
    char lab[128];

    snprintf(lab, sizeof(lab), "{site=\"%s\",version=\"%s\"}", d->conf->site_name, MRD_VERSION);
    metric(&b, "meridian_build_info", "gauge", "Build and site labels.", lab, 1);
    metric(&b, "meridian_uptime_seconds", "gauge", "Seconds since start.", "",
           (double)(mrd_clock_mono_ns() - d->started_mono_ns) / 1e9);
    metric(&b, "meridian_ready", "gauge", "1 when the site accepts writes.", "", gw__ready(d));
    wal_metrics(d, &b);
    gc_metrics(d, &b);
    mrd_buf_appendf(&b, "# HELP meridian_drive_online 1 unless the drive failed its last probe "
                        "or the store took it offline after I/O errors.\n"
                        "# TYPE meridian_drive_online gauge\n");
    for (int i = 0; i < d->n_drives; i++)
        mrd_buf_appendf(&b, "meridian_drive_online{drive=\"%d\"} %d\n", i,
                        gw__drive_verdict(d, i, NULL, NULL) != GW_DRIVE_FAILED);
    mrd_buf_appendf(&b, "# HELP meridian_drive_full 1 when a write found the drive full (it "
                        "serves reads only until it has room).\n"
                        "# TYPE meridian_drive_full gauge\n");
    for (int i = 0; i < d->n_drives; i++)
        mrd_buf_appendf(&b, "meridian_drive_full{drive=\"%d\"} %d\n", i,
                        gw__drive_verdict(d, i, NULL, NULL) == GW_DRIVE_FULL);
    mrd_buf_appendf(&b, "# HELP meridian_drive_free_bytes Free bytes on the drive.\n"
                        "# TYPE meridian_drive_free_bytes gauge\n");
    for (int i = 0; i < d->n_drives; i++)
        mrd_buf_appendf(&b, "meridian_drive_free_bytes{drive=\"%d\"} %llu\n", i,
                        (unsigned long long)d->drives[i].free_bytes);
    mrd_buf_appendf(&b, "# HELP meridian_peer_state Peer health: 0 unknown, 1 healthy, 2 "
                        "degraded, 3 down.\n# TYPE meridian_peer_state gauge\n");
    for (int i = 0; d->replicator && i < repl_peer_count(d->replicator); i++) {
        repl_peer_info p;
        if (repl_peer_get(d->replicator, i, &p) == 0)
            mrd_buf_appendf(&b, "meridian_peer_state{peer=\"%s\"} %d\n", p.name, (int)p.state);
    }
    mrd_buf_appendf(&b, "# HELP meridian_peer_rtt_seconds Heartbeat round trip (EWMA).\n"
                        "# TYPE meridian_peer_rtt_seconds gauge\n");
    for (int i = 0; d->replicator && i < repl_peer_count(d->replicator); i++) {
        repl_peer_info p;
        if (repl_peer_get(d->replicator, i, &p) == 0)
            mrd_buf_appendf(&b, "meridian_peer_rtt_seconds{peer=\"%s\"} %.6f\n", p.name,
                            p.rtt_ms / 1000.0);
    }
    {
        int active, waiting;
        gw__s3_uploads(&active, &waiting);
        metric(&b, "meridian_s3_uploads_active", "gauge",
               "Large uploads holding their buffers now ([s3] max_uploads).", "", active);
        metric(&b, "meridian_s3_uploads_waiting", "gauge",
               "Large uploads waiting, unread, for one of those slots.", "", waiting);
        gw__s3_downloads(&active, &waiting);
        metric(&b, "meridian_s3_downloads_active", "gauge",
               "Large downloads holding their buffers now ([s3] max_downloads).", "", active);
        metric(&b, "meridian_s3_downloads_waiting", "gauge",
               "Large downloads waiting, head sent, for one of those slots.", "", waiting);
    }
    metric(&b, "meridian_conflicts_total", "counter",
           "Concurrent-write conflicts settled at this site (the conflict log's last id; "
           "meridianctl conflicts list).",
           "", d->eng ? (double)engine_conflict_last(d->eng) : 0);
    repl_metrics(&b, d);
    gw__route_metrics(d, &b);
    mrd_buf_appendf(&b, "# TYPE meridian_http_requests_total counter\n");
    {
        gw_http_stats st;
        gw__loops_stats(d, &st);
        http_metrics(&b, "s3", &st);
        gw_http_server_stats_get(d->admin, &st);
        http_metrics(&b, "admin", &st);
    }
    gw__loops_metrics(d, &b);
    gw_resp_simple(r, 200, "text/plain; version=0.0.4", b.data, b.len);
    mrd_buf_free(&b);
}

static int
admin_authorized(gw_req *r, gw_daemon *d)
{
    const char *h = gw_req_header(r, "authorization");
    const char *tok = d->conf->admin_token;

    if (!h || strncmp(h, "Bearer ", 7) != 0)
        return 0;
    h += 7;
    return mrd_consttime_equal(h, strlen(h), tok, strlen(tok));
}

/* A query parameter's value into out ("" if absent). */
static void
query_param(const char *q, const char *name, char *out, size_t outsz)
{
    size_t nl = strlen(name);

    out[0] = '\0';
    while (q && *q) {
        const char *amp = strchr(q, '&');
        size_t len = amp ? (size_t)(amp - q) : strlen(q);
        if (len > nl && strncmp(q, name, nl) == 0 && q[nl] == '=') {
            size_t vl = len - nl - 1 < outsz - 1 ? len - nl - 1 : outsz - 1;
            memcpy(out, q + nl + 1, vl);
            out[vl] = '\0';
            return;
        }
        q = amp ? amp + 1 : NULL;
    }
}

/*
 * POST /admin/v1/peers/<name>/bandwidth?bytes_per_s=N  (0 lifts the limit)
 * POST /admin/v1/peers/<name>/anti-entropy             (start a pass now)
 * POST /admin/v1/peers/<name>/anti-entropy/cancel      (stop the running one)
 * Both act on this site's sending side for that peer.
 */
static void
admin_peer_action(gw_req *r, gw_daemon *d, const char *rest)
{
    char name[MRD_NAME_MAX], val[32];
    const char *slash = strchr(rest, '/');
    uint32_t id = 0;
    int rc;

    if (strcmp(gw_req_method(r), "POST") != 0) {
        gw__json_error(r, 405, "MethodNotAllowed", "use POST");
        return;
    }
    if (!slash || (size_t)(slash - rest) >= sizeof(name)) {
        gw__json_error(r, 404, "NotFound", "use /admin/v1/peers/<name>/bandwidth or /anti-entropy");
        return;
    }
    memcpy(name, rest, (size_t)(slash - rest));
    name[slash - rest] = '\0';
    for (int i = 0; i < d->conf->n_peers; i++)
        if (strcmp(d->conf->peers[i].name, name) == 0)
            id = d->conf->peers[i].id;
    if (!id) {
        gw__json_error(r, 404, "NoSuchPeer", "no peer of that name is configured");
        return;
    }
    if (!d->replicator) {
        gw__json_error(r, 503, "Unavailable", "replication is not running");
        return;
    }
    if (strcmp(slash, "/bandwidth") == 0) {
        uint64_t bps = 0;
        query_param(gw_req_query(r), "bytes_per_s", val, sizeof(val));
        if (!val[0] || (strcmp(val, "0") != 0 && (mrd_size_parse(val, &bps) != 0 || bps < 65536))) {
            gw__json_error(r, 400, "InvalidArgument",
                           "bytes_per_s must be 0 (no limit) or at least 65536 (suffixes KiB, MiB "
                           "allowed)");
            return;
        }
        rc = repl_set_bandwidth(d->replicator, id, bps);
        MRD_INFO("admin.peer_bandwidth", "peer=%s bytes_per_s=%llu by=%s", name,
                 (unsigned long long)bps, gw_req_peer(r));
    } else if (strcmp(slash, "/anti-entropy/cancel") == 0) {
        rc = repl_sync_cancel(d->replicator, id);
        if (rc == MRD_ENOTFOUND) {
            gw__json_error(r, 409, "NotRunning", "no anti-entropy pass to that peer is running");
            return;
        }
    } else if (strcmp(slash, "/anti-entropy") == 0) {
        char bucket[64] = "";
        query_param(gw_req_query(r), "bucket", bucket, sizeof(bucket));
        rc = repl_sync_bucket(d->replicator, id, bucket[0] ? bucket : NULL);
        if (rc == MRD_EBUSY) {
            gw__json_error(r, 409, "Busy", "an anti-entropy pass to that peer is running");
            return;
        }
        if (rc == MRD_ESHUTDOWN) {
            gw__json_error(r, 503, "Unavailable",
                           "the peer is not connected or the store is not open");
            return;
        }
    } else {
        gw__json_error(r, 404, "NotFound", "use /admin/v1/peers/<name>/bandwidth or /anti-entropy");
        return;
    }
    if (rc != 0) {
        gw__json_error(r, 500, "InternalError", mrd_strerror(rc));
        return;
    }
    {
        mrd_buf b = {0};
        mrd_buf_appendf(&b, "{\"ok\":true}");
        gw__json_response(r, 200, &b);
        mrd_buf_free(&b);
    }
}

void
gw__route_admin(gw_req *r, void *ud)
{
    gw_daemon *d = ud;
    const char *path = gw_req_path(r);

    if (gw__route_health(r, d))
        return;
    if (strcmp(path, "/metrics") == 0 && is_get_or_head(r)) {
        admin_metrics(r, d);
        return;
    }
    if (strncmp(path, "/admin/", 7) != 0) {
        gw__json_error(r, 404, "NotFound", "no such admin endpoint; see docs/admin-api.md");
        return;
    }
    if (!admin_authorized(r, d)) {
        MRD_WARN("admin.auth_failed", "peer=%s path=%s", gw_req_peer(r), path);
        gw__json_error(r, 401, "Unauthorized",
                       "missing or wrong bearer token; pass --token or set MERIDIAN_TOKEN");
        return;
    }
    if (gw__route_admin_ops(r, d))
        return;
    if (gw__route_failover_admin(d, r, path))
        return;
    if (strncmp(path, "/admin/v1/peers/", 16) == 0) {
        admin_peer_action(r, d, path + 16);
        return;
    }
    if (gw__admin_sites(r, d, path))
        return;
    if (strcmp(path, "/admin/v1/status") == 0) {
        if (!is_get_or_head(r)) {
            gw__json_error(r, 405, "MethodNotAllowed", "use GET");
            return;
        }
        admin_status(r, d);
        return;
    }
    gw__json_error(r, 404, "NotFound", "no such admin endpoint; see docs/admin-api.md");
}
