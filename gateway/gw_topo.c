/*
 * gw_topo.c - the admin API of the cluster topology, and the daemon's side
 * of a topology change.
 *
 *   GET    /admin/v1/sites                 the topology as this site holds it
 *   GET    /admin/v1/sites/<name>          one site
 *   POST   /admin/v1/sites?epoch=E&name=N&id=I&replication=H:P[&s3=H:P]
 *          [&s3_tls=H:P][&tls_pin=SHA256]  add a site
 *   DELETE /admin/v1/sites/<name>?epoch=E  remove a site
 *
 * A change is a compare-and-set on the epoch this site holds (E): a request
 * made against a stale view is answered 409 TopologyChanged with the current
 * epoch, so an admin never overwrites a change they did not see. The change
 * itself (store, apply, announce) is repl_topology_change; how it reaches
 * every other site and why two racing changes cannot split the cluster is
 * in replicator/PROTOCOL.md section 9.
 *
 * With mutual TLS between sites and no CA ([replication] tls_ca), a site
 * can only be trusted by its pin, so adding one needs tls_pin; the pin
 * travels with the topology and every site accepts that certificate for it
 * (repl_tls.c). The new site's own file pins the others as usual.
 *
 * Each site's entry in the list carries what this site knows of it: its
 * link state and RTT, and the topology (epoch, hash) it last announced, so
 * "converged" is visible: every live site announces the same pair.
 *
 * The list also names the sites removed from the topology (the latest 64):
 * their ids are not given again (409 SiteIdRemoved).
 *
 * A topology without this site (it was removed, and told: PROTOCOL.md
 * section 9) makes /health/ready 503 until a topology holds it again.
 *
 * gw__on_topology keeps the daemon's peer list (mrd_config.peers: names and
 * S3 addresses for routed reads and the admin API) equal to the adopted
 * topology; a peer already in the list keeps its entry (addresses and
 * bandwidth limit), as the replicator keeps dialling the address this
 * site's configuration gives for a peer (PROTOCOL.md section 9).
 * Everything here runs on the main loop; the peer list is rewritten under
 * the view's write lock, and the view is refreshed, since S3 loops read
 * both (gw_loop.c).
 */
#include "gw_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "replicator.h"
#include "tls.h"

const mrd_peer_conf *
gw__peer_conf(const gw_daemon *d, uint32_t id)
{
    for (int i = 0; i < d->conf->n_peers; i++)
        if (d->conf->peers[i].id == id)
            return &d->conf->peers[i];
    return NULL;
}

void
gw__on_topology(void *ud, const struct repl_topology *t)
{
    gw_daemon *d = ud;
    mrd_config *c = d->conf;
    mrd_peer_conf old[MRD_MAX_PEERS];
    int n_old = c->n_peers, n = 0, self_in = 0;

    memcpy(old, c->peers, sizeof(old));
    /* S3 loops read the peer list under the view's lock (gw_loop.c) */
    pthread_rwlock_wrlock(&d->view.mu);
    for (int i = 0; i < t->n && n < MRD_MAX_PEERS; i++) {
        mrd_peer_conf p = t->sites[i];

        if (p.id == c->site_id)
            continue;
        for (int k = 0; k < n_old; k++)
            if (old[k].id == p.id)
                p = old[k]; /* our own route to it wins (as in the replicator) */
        c->peers[n++] = p;
    }
    c->n_peers = n;
    pthread_rwlock_unlock(&d->view.mu);
    gw__view_refresh(d);
    for (int i = 0; i < t->n && self_in == 0; i++)
        self_in = t->sites[i].id == c->site_id;
    GW_STORE(d->removed_at, self_in || t->epoch == 0 ? 0 : t->epoch);
}

static void
w_site(mrd_json_w *w, gw_daemon *d, const mrd_peer_conf *s)
{
    char addr[80], hash[24];
    repl_peer_info info;
    int idx = repl_peer_find(d->replicator, s->id);
    int self = s->id == d->conf->site_id;
    int have = !self && idx >= 0 && repl_peer_get(d->replicator, idx, &info) == 0;

    mrd_json_w_obj_begin(w);
    mrd_json_w_key(w, "name");
    mrd_json_w_str(w, s->name);
    mrd_json_w_key(w, "id");
    mrd_json_w_uint(w, s->id);
    mrd_json_w_key(w, "replication");
    mrd_json_w_str(w, mrd_addr_format(&s->replication, addr, sizeof(addr)));
    mrd_json_w_key(w, "s3");
    if (s->has_s3)
        mrd_json_w_str(w, mrd_addr_format(&s->s3, addr, sizeof(addr)));
    else
        mrd_json_w_null(w);
    if (s->has_s3_tls) {
        mrd_json_w_key(w, "s3_tls");
        mrd_json_w_str(w, mrd_addr_format(&s->s3_tls, addr, sizeof(addr)));
    }
    if (s->has_tls_pin) {
        tls_fingerprint_format(s->tls_pin, addr, sizeof(addr));
        mrd_json_w_key(w, "tls_pin");
        mrd_json_w_str(w, addr);
    }
    mrd_json_w_key(w, "self");
    mrd_json_w_bool(w, self);
    if (have) {
        mrd_json_w_key(w, "state");
        mrd_json_w_str(w, repl_peer_state_name(info.state));
        mrd_json_w_key(w, "connected");
        mrd_json_w_bool(w, info.connected);
        mrd_json_w_key(w, "rtt_ms");
        mrd_json_w_double(w, info.rtt_ms);
        mrd_json_w_key(w, "announced_epoch");
        mrd_json_w_uint(w, info.topology_epoch);
        snprintf(hash, sizeof(hash), "%016llx", (unsigned long long)info.topology_hash);
        mrd_json_w_key(w, "announced_hash");
        mrd_json_w_str(w, hash);
        mrd_json_w_key(w, "last_heartbeat_age_ms");
        mrd_json_w_int(w, info.last_heartbeat_age_ms);
    }
    mrd_json_w_obj_end(w);
}

static void
answer_topology(gw_req *r, gw_daemon *d, const repl_topology *t, const char *only)
{
    mrd_buf b = {0};
    mrd_json_w w;
    char hash[24];
    int found = 0;

    mrd_json_w_init(&w, &b);
    if (only) {
        for (int i = 0; i < t->n; i++) {
            if (strcmp(t->sites[i].name, only) == 0) {
                w_site(&w, d, &t->sites[i]);
                found = 1;
            }
        }
        if (!found) {
            mrd_buf_free(&b);
            gw__json_error(r, 404, "NoSuchSite", "no site of that name in the topology");
            return;
        }
    } else {
        int converged = 1;

        mrd_json_w_obj_begin(&w);
        mrd_json_w_key(&w, "epoch");
        mrd_json_w_uint(&w, t->epoch);
        snprintf(hash, sizeof(hash), "%016llx", (unsigned long long)t->hash);
        mrd_json_w_key(&w, "hash");
        mrd_json_w_str(&w, hash);
        mrd_json_w_key(&w, "self");
        mrd_json_w_str(&w, d->conf->site_name);
        mrd_json_w_key(&w, "sites");
        mrd_json_w_arr_begin(&w);
        for (int i = 0; i < t->n; i++) {
            repl_peer_info info;
            int idx = repl_peer_find(d->replicator, t->sites[i].id);

            w_site(&w, d, &t->sites[i]);
            if (t->sites[i].id != d->conf->site_id &&
                (idx < 0 || repl_peer_get(d->replicator, idx, &info) != 0 ||
                 info.topology_epoch != t->epoch || (t->epoch && info.topology_hash != t->hash)))
                converged = 0;
        }
        mrd_json_w_arr_end(&w);
        mrd_json_w_key(&w, "removed");
        mrd_json_w_arr_begin(&w);
        for (int i = 0; i < t->n_removed; i++) {
            mrd_json_w_obj_begin(&w);
            mrd_json_w_key(&w, "name");
            mrd_json_w_str(&w, t->removed[i].name);
            mrd_json_w_key(&w, "id");
            mrd_json_w_uint(&w, t->removed[i].id);
            mrd_json_w_key(&w, "removed_at_epoch");
            mrd_json_w_uint(&w, t->removed[i].epoch);
            mrd_json_w_obj_end(&w);
        }
        mrd_json_w_arr_end(&w);
        /* every peer announced the topology this site holds */
        mrd_json_w_key(&w, "converged");
        mrd_json_w_bool(&w, converged);
        mrd_json_w_obj_end(&w);
    }
    if (mrd_json_w_error(&w) != 0)
        gw__json_error(r, 500, "InternalError", "could not render the topology");
    else
        gw__json_response(r, 200, &b);
    mrd_buf_free(&b);
}

/* Query parameter name into out (NUL-terminated); 0 when present and fits. */
static int
param(gw_req *r, const char *name, char *out, size_t outsz)
{
    mrd_buf v = {0};
    int ok = gw_query_param(gw_req_query(r), name, &v) == 1 && v.len < outsz;

    if (ok) {
        memcpy(out, v.data ? v.data : "", v.len);
        out[v.len] = '\0';
    }
    mrd_buf_free(&v);
    return ok ? 0 : -1;
}

static int
param_u64(gw_req *r, const char *name, uint64_t *out)
{
    char v[24], *end;

    if (param(r, name, v, sizeof(v)) != 0 || !v[0])
        return -1;
    *out = strtoull(v, &end, 10);
    return *end ? -1 : 0;
}

static void
change(gw_req *r, gw_daemon *d, const mrd_peer_conf *add, uint32_t remove_id, const char *what)
{
    uint64_t epoch = 0;
    repl_topology t;
    char msg[160];
    int rc;

    if (param_u64(r, "epoch", &epoch) != 0) {
        gw__json_error(r, 400, "InvalidArgument",
                       "epoch=<the epoch you read> is required (compare-and-set)");
        return;
    }
    rc = repl_topology_change(d->replicator, epoch, add, remove_id, &t);
    switch (rc) {
    case 0:
        MRD_INFO("admin.topology_change", "change=\"%s\" epoch=%llu by=%s", what,
                 (unsigned long long)t.epoch, gw_req_peer(r));
        answer_topology(r, d, &t, NULL);
        return;
    case MRD_EBUSY:
        repl_topology_get(d->replicator, &t);
        snprintf(msg, sizeof(msg),
                 "the topology is at epoch %llu, not %llu: read it again and retry",
                 (unsigned long long)t.epoch, (unsigned long long)epoch);
        gw__json_error(r, 409, "TopologyChanged", msg);
        return;
    case MRD_EEXIST:
        repl_topology_get(d->replicator, &t);
        if (add && repl_topology_id_removed(&t, add->id)) {
            snprintf(msg, sizeof(msg),
                     "site id %u was removed from the topology: a removed id is not reused "
                     "(give the site a new id)",
                     add->id);
            gw__json_error(r, 409, "SiteIdRemoved", msg);
        } else {
            gw__json_error(r, 409, "SiteExists", "a site with that id or name is in the topology");
        }
        return;
    case MRD_ENOTFOUND:
        gw__json_error(r, 404, "NoSuchSite", "no site of that name in the topology");
        return;
    case MRD_EINVAL:
        gw__json_error(r, 400, "InvalidArgument",
                       add ? "bad site: id must be nonzero, name 1-63 of [a-z0-9_-], "
                             "replication host:port"
                           : "a site cannot remove itself; ask another site");
        return;
    case MRD_ETOOBIG:
        gw__json_error(r, 409, "TooManySites", "the topology is full (33 sites)");
        return;
    default:
        gw__json_error(r, 500, "InternalError", mrd_strerror(rc));
    }
}

static void
add_site(gw_req *r, gw_daemon *d)
{
    mrd_peer_conf s;
    char v[80];
    uint64_t id = 0;

    memset(&s, 0, sizeof(s));
    if (param(r, "name", s.name, sizeof(s.name)) != 0 || param_u64(r, "id", &id) != 0 || id == 0 ||
        id > UINT32_MAX || param(r, "replication", v, sizeof(v)) != 0 ||
        mrd_addr_parse(v, &s.replication) != 0) {
        gw__json_error(r, 400, "InvalidArgument",
                       "name=<site name>&id=<site id>&replication=<host:port> are required");
        return;
    }
    s.id = (uint32_t)id;
    if (param(r, "s3", v, sizeof(v)) == 0 && v[0]) {
        if (mrd_addr_parse(v, &s.s3) != 0) {
            gw__json_error(r, 400, "InvalidArgument", "s3 must be host:port");
            return;
        }
        s.has_s3 = 1;
    }
    if (param(r, "s3_tls", v, sizeof(v)) == 0 && v[0]) {
        if (mrd_addr_parse(v, &s.s3_tls) != 0 || !s.has_s3 || !d->conf->repl_tls_cert[0]) {
            gw__json_error(r, 400, "InvalidArgument",
                           "s3_tls must be host:port, with s3, on sites with mutual TLS "
                           "([replication] tls_cert)");
            return;
        }
        s.has_s3_tls = 1;
    }
    if (param(r, "tls_pin", v, sizeof(v)) == 0 && v[0]) {
        if (mrd_pin_parse(v, s.tls_pin) != 0) {
            gw__json_error(r, 400, "InvalidArgument",
                           "tls_pin must be the SHA-256 of the site's certificate or SPKI: "
                           "64 hex digits");
            return;
        }
        s.has_tls_pin = 1;
    } else if (d->conf->repl_tls_cert[0] && !d->conf->repl_tls_ca[0]) {
        gw__json_error(r, 400, "InvalidArgument",
                       "the sites use mutual TLS with pinned certificates ([replication] tls_ca "
                       "is not set): tls_pin=<SHA-256 of the new site's certificate> is required");
        return;
    }
    snprintf(v, sizeof(v), "add %s", s.name);
    change(r, d, &s, 0, v);
}

int
gw__admin_sites(gw_req *r, gw_daemon *d, const char *path)
{
    const char *method = gw_req_method(r);
    const char *name = NULL;
    repl_topology t;

    if (strcmp(path, "/admin/v1/sites") == 0)
        name = NULL;
    else if (strncmp(path, "/admin/v1/sites/", 16) == 0 && path[16])
        name = path + 16;
    else
        return 0;
    if (!d->replicator) {
        gw__json_error(r, 503, "Unavailable", "replication is not running");
        return 1;
    }
    repl_topology_get(d->replicator, &t);
    if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0) {
        answer_topology(r, d, &t, name);
    } else if (!name && strcmp(method, "POST") == 0) {
        add_site(r, d);
    } else if (name && strcmp(method, "DELETE") == 0) {
        uint32_t id = 0;
        char what[96];

        for (int i = 0; i < t.n; i++)
            if (strcmp(t.sites[i].name, name) == 0)
                id = t.sites[i].id;
        if (!id) {
            gw__json_error(r, 404, "NoSuchSite", "no site of that name in the topology");
            return 1;
        }
        snprintf(what, sizeof(what), "remove %s", name);
        change(r, d, NULL, id, what);
    } else {
        gw__json_error(r, 405, "MethodNotAllowed",
                       "GET or POST /admin/v1/sites; GET or DELETE /admin/v1/sites/<name>");
    }
    return 1;
}
