/*
 * repl_topo.c - the cluster topology: which sites exist, changed at run time
 * and carried to every site by the replication links (PROTOCOL.md section 9).
 *
 * A topology is an epoch and the list of sites (id, name, replication and S3
 * addresses, and the certificate pin of a site added at run time to a
 * cluster with mutual TLS), this site included. Epoch 0 is the one a site builds from its
 * own configuration file at start-up; it is never sent or adopted, because
 * two sites' files need not agree. Every change made through the admin API
 * (repl_topology_change) produces epoch + 1, is stored durably in the index
 * (meta key "repl.topology") before it is applied or answered, and from then
 * on overrides the file's [peer.*] sections, across restarts.
 *
 * Ordering. Topologies are ordered by (epoch, hash), hash being the first 8
 * bytes of SHA-256 over the canonical encoding (the Topology message with
 * sites in id order). Every site announces its pair in each Hello and
 * heartbeat (SiteState.topology_epoch/_hash); a site that sees a peer
 * announce a greater pair fetches that peer's topology (POST
 * /repl/v1/topology on its own outbound connection) and adopts it if it is
 * still greater. So every site ends on the greatest topology any site has:
 * two admins who change the topology at the same time at two sites (both
 * making epoch N+1) cannot split the cluster; the change with the greater
 * hash wins everywhere and the other one is gone. The admin API's
 * compare-and-set (expect_epoch) refuses a change made against a stale view
 * at one site; meridianctl then checks, a few heartbeats later, that its
 * change is what the cluster holds and says so when it was superseded.
 *
 * Applying. Peers that appear are added to the peer table (slots are never
 * reused: connections, streams and engine jobs may still point at a removed
 * peer's slot) and dialled; their records can be applied (the engine learns
 * the origin) and the WAL holds ours for them from LSN 0, so a new site gets
 * everything still retained and anti-entropy brings it the rest. Peers that
 * disappear are marked removed: their connections are closed, their sender
 * and receiver state freed, the WAL stops holding segments for them, and
 * their requests are answered 410 (repl__peer_by_id no longer finds them;
 * repl__removed_name does). A site that finds itself absent from an
 * adopted topology was removed: it drops every peer and says so. Adoption that arrives inside a
 * connection's callback is deferred to an event, so no connection is freed under its own callback.
 *
 * Removed sites. A removal moves the site from the topology's sites to its
 * removed list (id, name, the epoch that removed it, and the pin it was
 * trusted by: the topology's, else the removing site's own file pin), so
 * every site, even one restarted since with a configuration that no longer
 * names it, can still tell it with a 410 when it asks again (repl_server.c,
 * tell_removed; its certificate is accepted for that, repl_tls.c). This
 * needs no peer slot, so remembered removals never take the slots real
 * peers need. The list holds the latest REPL_TOPO_MAX_REMOVED removals by
 * epoch; older ones are forgotten (such a site gets the 401 again). A
 * removed id is never added again: its peers keep that origin's applied
 * progress, so a wiped site coming back under it would have its first
 * records skipped as already applied. An empty list is not encoded at all,
 * so topologies without removals keep the encoding and hash they had
 * before the list existed.
 *
 * The gateway learns of every adopted topology through on_topology (it keeps
 * its copy of the peers' S3 addresses for routing and the admin API).
 */
#include "repl_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <openssl/sha.h>

#include "engine.h"
#include "repl.pb-c.h"
#include "store.h"

#define TOPO_META_KEY "repl.topology"

static int
site_cmp(const void *a, const void *b)
{
    const mrd_peer_conf *x = a, *y = b;

    return x->id < y->id ? -1 : x->id > y->id;
}

static int
removed_cmp(const void *a, const void *b)
{
    const repl_removed_site *x = a, *y = b;

    return x->id < y->id ? -1 : x->id > y->id;
}

const repl_removed_site *
repl_topology_id_removed(const repl_topology *t, uint32_t id)
{
    for (int i = 0; i < t->n_removed; i++)
        if (t->removed[i].id == id)
            return &t->removed[i];
    return NULL;
}

int
repl__topo_encode(const repl_topology *t, mrd_buf *out)
{
    Meridian__Repl__Topology m = MERIDIAN__REPL__TOPOLOGY__INIT;
    Meridian__Repl__TopologySite sites[MRD_MAX_PEERS + 1], *ptrs[MRD_MAX_PEERS + 1];
    Meridian__Repl__RemovedSite gone[REPL_TOPO_MAX_REMOVED], *gone_ptrs[REPL_TOPO_MAX_REMOVED];
    char repl_a[MRD_MAX_PEERS + 1][80], s3_a[MRD_MAX_PEERS + 1][80], s3t_a[MRD_MAX_PEERS + 1][80];
    size_t n;

    m.epoch = t->epoch;
    for (int i = 0; i < t->n; i++) {
        meridian__repl__topology_site__init(&sites[i]);
        sites[i].id = t->sites[i].id;
        sites[i].name = (char *)t->sites[i].name;
        sites[i].replication = (char *)mrd_addr_format(&t->sites[i].replication, repl_a[i], 80);
        s3_a[i][0] = '\0';
        if (t->sites[i].has_s3)
            mrd_addr_format(&t->sites[i].s3, s3_a[i], 80);
        sites[i].s3 = s3_a[i];
        s3t_a[i][0] = '\0';
        if (t->sites[i].has_s3_tls)
            mrd_addr_format(&t->sites[i].s3_tls, s3t_a[i], 80);
        sites[i].s3_tls = s3t_a[i];
        if (t->sites[i].has_tls_pin) {
            sites[i].tls_pin.len = 32;
            sites[i].tls_pin.data = (uint8_t *)t->sites[i].tls_pin;
        }
        ptrs[i] = &sites[i];
    }
    m.n_sites = (size_t)t->n;
    m.sites = ptrs;
    for (int i = 0; i < t->n_removed; i++) {
        const repl_removed_site *x = &t->removed[i];

        meridian__repl__removed_site__init(&gone[i]);
        gone[i].id = x->id;
        gone[i].name = (char *)x->name;
        gone[i].epoch = x->epoch;
        if (x->has_tls_pin) {
            gone[i].tls_pin.len = 32;
            gone[i].tls_pin.data = (uint8_t *)x->tls_pin;
        }
        gone_ptrs[i] = &gone[i];
    }
    m.n_removed = (size_t)t->n_removed; /* none: not encoded, hash as before */
    m.removed = gone_ptrs;
    n = meridian__repl__topology__get_packed_size(&m);
    out->len = 0;
    if (mrd_buf_reserve(out, n ? n : 1) != 0)
        return -ENOMEM;
    out->len = meridian__repl__topology__pack(&m, (uint8_t *)out->data);
    return 0;
}

/* Sorts t's sites and removed sites by id and sets its hash. */
static void
canonicalize(repl_topology *t)
{
    unsigned char d[SHA256_DIGEST_LENGTH];
    mrd_buf b = {0};

    qsort(t->sites, (size_t)t->n, sizeof(t->sites[0]), site_cmp);
    qsort(t->removed, (size_t)t->n_removed, sizeof(t->removed[0]), removed_cmp);
    t->hash = 0;
    if (repl__topo_encode(t, &b) == 0) {
        SHA256((const unsigned char *)b.data, b.len, d);
        for (int i = 0; i < 8; i++)
            t->hash = t->hash << 8 | d[i];
    }
    mrd_buf_free(&b);
}

/* Checks a topology's sites: ids nonzero and unique, names valid and
 * unique, at most MRD_MAX_PEERS + 1 sites. */
static const char *
check_sites(const repl_topology *t)
{
    if (t->n < 1 || t->n > MRD_MAX_PEERS + 1)
        return "a topology has 1 to 33 sites";
    for (int i = 0; i < t->n; i++) {
        if (t->sites[i].id == 0)
            return "site id 0";
        if (!mrd_name_valid(t->sites[i].name))
            return "bad site name";
        for (int j = 0; j < i; j++) {
            if (t->sites[j].id == t->sites[i].id)
                return "two sites with one id";
            if (strcmp(t->sites[j].name, t->sites[i].name) == 0)
                return "two sites with one name";
        }
    }
    return NULL;
}

static const mrd_peer_conf *topo_find(const repl_topology *t, uint32_t id);

/* Decodes m's removed sites into out (whose sites are decoded): ids nonzero,
 * unique and not among the sites, names valid, removal epochs 1..epoch, at
 * most REPL_TOPO_MAX_REMOVED. NULL, or what is wrong. */
static const char *
decode_removed(const Meridian__Repl__Topology *m, repl_topology *out)
{
    if (m->n_removed > REPL_TOPO_MAX_REMOVED)
        return "over 64 removed sites";
    for (size_t i = 0; i < m->n_removed; i++) {
        const Meridian__Repl__RemovedSite *s = m->removed[i];
        repl_removed_site *x = &out->removed[i];

        if (s->id == 0)
            return "removed site id 0";
        if (!s->name || strlen(s->name) >= MRD_NAME_MAX || !mrd_name_valid(s->name))
            return "bad removed site name";
        if (s->epoch == 0 || s->epoch > m->epoch)
            return "removal epoch not in 1..epoch";
        if (s->tls_pin.len != 0 && s->tls_pin.len != 32)
            return "bad removed site tls_pin";
        if (topo_find(out, s->id) || repl_topology_id_removed(out, s->id))
            return "a removed site id is in the topology or removed twice";
        x->id = s->id;
        strcpy(x->name, s->name);
        x->epoch = s->epoch;
        if (s->tls_pin.len == 32) {
            memcpy(x->tls_pin, s->tls_pin.data, 32);
            x->has_tls_pin = 1;
        }
        out->n_removed = (int)i + 1;
    }
    return NULL;
}

int
repl__topo_decode(const void *data, size_t len, repl_topology *out, const char **why)
{
    Meridian__Repl__Topology *m = meridian__repl__topology__unpack(NULL, len, data);
    const char *bad = NULL;

    if (!m) {
        *why = "malformed Topology";
        return MRD_EPROTO;
    }
    memset(out, 0, sizeof(*out));
    out->epoch = m->epoch;
    if (m->epoch == 0)
        bad = "epoch 0 is never sent";
    else if (m->n_sites < 1 || m->n_sites > MRD_MAX_PEERS + 1)
        bad = "a topology has 1 to 33 sites";
    for (size_t i = 0; !bad && i < m->n_sites; i++) {
        const Meridian__Repl__TopologySite *s = m->sites[i];
        mrd_peer_conf *c = &out->sites[i];

        if (!s->name || strlen(s->name) >= MRD_NAME_MAX)
            bad = "bad site name";
        else if (!s->replication || mrd_addr_parse(s->replication, &c->replication) != 0)
            bad = "bad replication address";
        else if (s->s3 && s->s3[0] && mrd_addr_parse(s->s3, &c->s3) != 0)
            bad = "bad S3 address";
        else if (s->tls_pin.len != 0 && s->tls_pin.len != 32)
            bad = "bad tls_pin";
        else if (s->s3_tls && s->s3_tls[0] && mrd_addr_parse(s->s3_tls, &c->s3_tls) != 0)
            bad = "bad S3 TLS address";
        if (bad)
            break;
        c->id = s->id;
        strcpy(c->name, s->name);
        c->has_s3 = s->s3 && s->s3[0];
        c->has_s3_tls = s->s3_tls && s->s3_tls[0];
        if (s->tls_pin.len == 32) {
            memcpy(c->tls_pin, s->tls_pin.data, 32);
            c->has_tls_pin = 1;
        }
    }
    out->n = (int)m->n_sites;
    if (!bad)
        bad = check_sites(out);
    if (!bad)
        bad = decode_removed(m, out);
    meridian__repl__topology__free_unpacked(m, NULL);
    if (!bad)
        canonicalize(out);
    *why = bad;
    return bad ? MRD_EPROTO : 0;
}

int
repl__topo_newer(uint64_t epoch, uint64_t hash, const repl_topology *than)
{
    return epoch > 0 && (epoch > than->epoch || (epoch == than->epoch && hash > than->hash));
}

void
repl__topo_init(repl *r, const repl_opts *o)
{
    repl_topology *t = &r->topo;

    memset(t, 0, sizeof(*t));
    t->sites[0].id = r->site_id;
    snprintf(t->sites[0].name, sizeof(t->sites[0].name), "%s", r->site_name);
    t->sites[0].replication = o->self_replication;
    t->sites[0].s3 = o->self_s3;
    t->sites[0].has_s3 = o->self_s3.port != 0;
    for (int i = 0; i < o->n_peers; i++) {
        t->sites[1 + i] = o->peers[i];
        t->sites[1 + i].bandwidth = 0;
        /* a file's pins are its own trust, not the cluster's: they stay in
         * conf_peers and are never announced */
        t->sites[1 + i].has_tls_pin = 0;
        memset(t->sites[1 + i].tls_pin, 0, 32);
        t->sites[1 + i].has_s3_tls_pin = 0;
        memset(t->sites[1 + i].s3_tls_pin, 0, 32);
        r->conf_peers[i] = o->peers[i];
    }
    r->n_conf_peers = o->n_peers;
    t->n = 1 + o->n_peers;
    canonicalize(t);
}

static const mrd_peer_conf *
topo_find(const repl_topology *t, uint32_t id)
{
    for (int i = 0; i < t->n; i++)
        if (t->sites[i].id == id)
            return &t->sites[i];
    return NULL;
}

/* ---- the peer table ------------------------------------------------------ */

int
repl__peer_init(repl *r, int i, const mrd_peer_conf *pc)
{
    repl_peer *p = &r->peers[i];
    int rc;

    memset(p, 0, sizeof(*p));
    p->r = r;
    p->idx = i;
    p->id = pc->id;
    snprintf(p->name, sizeof(p->name), "%s", pc->name);
    p->addr = pc->replication;
    repl__health_init(&p->health, r->o.down_after, r->o.up_after, mrd_clock_mono_ns());
    rc = repl__client_init(p);
    if (rc == 0)
        rc = repl__tx_new(p);
    if (rc == 0 && pc->bandwidth)
        rc = repl__tx_set_bandwidth(p, pc->bandwidth);
    return rc;
}

static int
peer_add(repl *r, const mrd_peer_conf *pc)
{
    repl_peer *p;
    int rc = 0;

    if (r->n_peers >= MRD_MAX_PEERS)
        return MRD_ETOOBIG;
    if (r->eng && (rc = engine_repl_origin_add(r->eng, pc->id)) != 0)
        return rc;
    if ((rc = repl__peer_init(r, r->n_peers, pc)) != 0)
        return rc;
    p = &r->peers[r->n_peers++];
    if (r->eng) {
        engine_repl_state st[MRD_MAX_PEERS];
        int n = engine_repl_progress(r->eng, st, MRD_MAX_PEERS);

        for (int k = 0; k < n; k++)
            if (st[k].origin == p->id)
                p->rx_applied = p->rx_issued = st[k].applied;
    }
    if (r->started)
        repl__client_start(p);
    MRD_INFO("repl.peer.added", "peer=%s id=%u replication=%s:%u", p->name, p->id, p->addr.host,
             p->addr.port);
    return 0;
}

static void
peer_remove(repl *r, repl_peer *p)
{
    repl__conn *c, *next;

    p->removed = 1;
    repl__client_stop(p);
    for (c = r->inbound; c; c = next) {
        next = c->next;
        if (c->peer == p) {
            repl__conn_fail(c, "site removed from the topology");
            repl__conn_reap(c);
        }
    }
    repl__rx_peer_free(p);
    repl__tx_free(p);
    if (r->eng)
        engine_repl_origin_remove(r->eng, p->id);
    MRD_INFO("repl.peer.removed", "peer=%s id=%u", p->name, p->id);
}

/* How this site reaches site s of a topology: the address its own
 * configuration gives for that id (a route that may differ from site to
 * site: a proxy, NAT, the lab's WAN emulator), else the topology's. */
static mrd_peer_conf
route_to(const repl *r, const mrd_peer_conf *s)
{
    for (int i = 0; i < r->n_conf_peers; i++)
        if (r->conf_peers[i].id == s->id)
            return r->conf_peers[i];
    return *s;
}

/* Makes the peer table match t, then t the current topology. */
static void
apply(repl *r, const repl_topology *t)
{
    int self_in = topo_find(t, r->site_id) != NULL;

    for (int i = 0; i < r->n_peers; i++) {
        repl_peer *p = &r->peers[i];
        const mrd_peer_conf *in_t = topo_find(t, p->id);
        mrd_peer_conf s;

        if (p->removed)
            continue;
        if (in_t)
            s = route_to(r, in_t);
        if (!in_t || !self_in) {
            peer_remove(r, p);
        } else if (memcmp(&s.replication, &p->addr, sizeof(p->addr)) != 0) {
            /* moved: redial the new address */
            p->addr = s.replication;
            repl__client_stop(p);
            if (r->started)
                repl__client_start(p);
        }
    }
    for (int i = 0; self_in && i < t->n; i++) {
        mrd_peer_conf s = route_to(r, &t->sites[i]);
        int rc;

        if (s.id == r->site_id || repl__peer_by_id(r, s.id))
            continue;
        if ((rc = peer_add(r, &s)) != 0)
            MRD_ERROR("repl.peer.add_fail", "peer=%s id=%u error=\"%s\"", s.name, s.id,
                      mrd_strerror(rc));
    }
    r->topo = *t;
    if (!self_in)
        MRD_ERROR("repl.topology.removed_self",
                  "epoch=%llu reason=\"this site is not in the cluster's topology any more; it "
                  "replicates with no one\"",
                  (unsigned long long)t->epoch);
    MRD_INFO("repl.topology.adopted", "epoch=%llu hash=%016llx sites=%d",
             (unsigned long long)t->epoch, (unsigned long long)t->hash, t->n);
    if (r->o.on_topology)
        r->o.on_topology(r->o.user_data, t);
}

static int
persist(repl *r, const repl_topology *t)
{
    mrd_buf b = {0};
    int rc = 0;

    if (!r->eng)
        return 0; /* tests without an engine: in memory only */
    rc = repl__topo_encode(t, &b);
    if (rc == 0)
        rc = store_meta_put(engine_store(r->eng), TOPO_META_KEY, b.data, b.len);
    mrd_buf_free(&b);
    return rc;
}

static void
deferred_cb(evutil_socket_t fd, short what, void *ud)
{
    repl *r = ud;
    repl_topology t = r->topo_pending;

    (void)fd;
    (void)what;
    r->topo_pending_set = 0;
    if (!repl__topo_newer(t.epoch, t.hash, &r->topo))
        return;
    if (persist(r, &t) != 0) {
        MRD_ERROR("repl.topology.persist_fail", "epoch=%llu", (unsigned long long)t.epoch);
        return; /* not adopted; the next announcement retries */
    }
    apply(r, &t);
}

void
repl__topo_offer(repl *r, const repl_topology *t)
{
    if (!repl__topo_newer(t->epoch, t->hash, &r->topo))
        return;
    if (r->topo_pending_set && !repl__topo_newer(t->epoch, t->hash, &r->topo_pending))
        return;
    r->topo_pending = *t;
    r->topo_pending_set = 1;
    if (r->topo_ev)
        event_active(r->topo_ev, 0, 0);
}

int
repl__topo_start(repl *r)
{
    r->topo_ev = event_new(r->base, -1, 0, deferred_cb, r);
    return r->topo_ev ? 0 : -ENOMEM;
}

void
repl__topo_stop(repl *r)
{
    if (r->topo_ev)
        event_free(r->topo_ev);
    r->topo_ev = NULL;
}

int
repl__topo_load(repl *r)
{
    void *val = NULL;
    size_t len = 0;
    repl_topology t;
    const char *why = NULL;
    int rc = store_meta_get(engine_store(r->eng), TOPO_META_KEY, &val, &len);

    if (rc == MRD_ENOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    rc = repl__topo_decode(val, len, &t, &why);
    free(val);
    if (rc != 0) {
        MRD_ERROR("repl.topology.corrupt", "key=%s reason=\"%s\"", TOPO_META_KEY, why);
        return MRD_ECORRUPT;
    }
    if (repl__topo_newer(t.epoch, t.hash, &r->topo)) {
        MRD_INFO("repl.topology.loaded",
                 "epoch=%llu sites=%d reason=\"stored topology "
                 "overrides the configuration's peers\"",
                 (unsigned long long)t.epoch, t.n);
        apply(r, &t);
    }
    return 0;
}

/* ---- fetching a newer topology ------------------------------------------- */

void
repl__topo_maybe_fetch(repl_peer *p, uint64_t epoch, uint64_t hash)
{
    repl *r = p->r;
    repl__stream *s;

    /* one fetch at a time; one whose connection died without an answer
     * stops counting after 5 s */
    if (r->topo_fetch_ns && mrd_clock_mono_ns() - r->topo_fetch_ns < 5000000000ull)
        return;
    if (!repl__topo_newer(epoch, hash, &r->topo) || !p->conn || !p->hello_done || p->conn->dead ||
        p->removed)
        return;
    if (!(s = repl__stream_new(p->conn, REPL__ST_TOPOLOGY)))
        return;
    if (repl__submit_request(p->conn, s, REPL_PATH_TOPOLOGY) < 0) {
        repl__stream_unlink_free(p->conn, s);
        return;
    }
    r->topo_fetch_ns = mrd_clock_mono_ns();
    MRD_INFO("repl.topology.fetch", "peer=%s epoch=%llu", p->name, (unsigned long long)epoch);
}

void
repl__topo_on_fetched(repl__conn *c, repl__stream *s, uint32_t error_code)
{
    repl *r = c->r;
    const char *why = repl__client_check_auth(c, s, error_code);
    repl_topology t;

    r->topo_fetch_ns = 0;
    if (!why && s->too_big)
        why = "topology answer over the size limit";
    if (!why && repl__topo_decode(s->in.data, s->in.len, &t, &why) == 0)
        repl__topo_offer(r, &t);
    if (why)
        MRD_WARN("repl.topology.fetch_fail", "peer=%s reason=\"%s\"", c->peer ? c->peer->name : "-",
                 why);
}

void
repl__topo_serve(repl__conn *c, repl__stream *s)
{
    mrd_buf b = {0};

    if (c->r->topo.epoch == 0) {
        repl__server_answer_text(c, s, 404, "no topology change was ever made here");
        return;
    }
    if (repl__topo_encode(&c->r->topo, &b) != 0 ||
        repl__submit_response(c, s, 200, b.data, b.len) < 0)
        repl__conn_fail(c, "cannot submit topology");
    mrd_buf_free(&b);
}

/* ---- the public API ------------------------------------------------------ */

/* Puts site s, removed by the change that makes epoch, in t's removed list,
 * forgetting the oldest removal when the list is full. Its pin is the
 * topology's, else this site's own ([peer.NAME] tls_pin), so that sites
 * whose files do not pin it any more still accept its certificate to tell
 * it (repl_tls.c). */
static void
removed_note(const repl *r, repl_topology *t, const mrd_peer_conf *s, uint64_t epoch)
{
    repl_removed_site *x;
    const uint8_t *pin = s->has_tls_pin ? s->tls_pin : repl__tls_pin_of(r, s->id);
    int k = 0;

    if (t->n_removed == REPL_TOPO_MAX_REMOVED) {
        for (int i = 1; i < t->n_removed; i++)
            if (t->removed[i].epoch < t->removed[k].epoch)
                k = i;
        MRD_INFO("repl.topology.removed_forgotten",
                 "site=%s id=%u removed_epoch=%llu reason=\"the topology remembers the latest %d "
                 "removals\"",
                 t->removed[k].name, t->removed[k].id, (unsigned long long)t->removed[k].epoch,
                 REPL_TOPO_MAX_REMOVED);
    } else {
        k = t->n_removed++;
    }
    x = &t->removed[k];
    memset(x, 0, sizeof(*x));
    x->id = s->id;
    snprintf(x->name, sizeof(x->name), "%s", s->name);
    x->epoch = epoch;
    if (pin) {
        memcpy(x->tls_pin, pin, 32);
        x->has_tls_pin = 1;
    }
}

const char *
repl__removed_name(repl *r, uint32_t id)
{
    const repl_peer *slot = repl__peer_removed(r, id);
    const repl_removed_site *x = repl_topology_id_removed(&r->topo, id);

    return slot ? slot->name : x ? x->name : NULL;
}

void
repl_topology_get(const repl *r, repl_topology *out)
{
    *out = r->topo;
}

int
repl_topology_change(repl *r, uint64_t expect_epoch, const mrd_peer_conf *add, uint32_t remove_id,
                     repl_topology *out)
{
    repl_topology t = r->topo;
    int rc;

    if (expect_epoch != r->topo.epoch)
        return MRD_EBUSY;
    if ((add != NULL) == (remove_id != 0))
        return MRD_EINVAL;
    if (add) {
        if (add->id == 0 || !mrd_name_valid(add->name) || add->replication.port == 0)
            return MRD_EINVAL;
        if (topo_find(&t, add->id) || repl_topology_id_removed(&t, add->id))
            return MRD_EEXIST;
        if (t.n >= MRD_MAX_PEERS + 1)
            return MRD_ETOOBIG;
        t.sites[t.n++] = *add;
        t.sites[t.n - 1].bandwidth = 0;
        if (check_sites(&t))
            return MRD_EEXIST; /* the name is taken */
    } else {
        int i = 0;

        if (remove_id == r->site_id)
            return MRD_EINVAL;
        while (i < t.n && t.sites[i].id != remove_id)
            i++;
        if (i == t.n)
            return MRD_ENOTFOUND;
        removed_note(r, &t, &t.sites[i], r->topo.epoch + 1);
        memmove(&t.sites[i], &t.sites[i + 1], (size_t)(t.n - i - 1) * sizeof(t.sites[0]));
        t.n--;
    }
    t.epoch = r->topo.epoch + 1;
    canonicalize(&t);
    if ((rc = persist(r, &t)) != 0)
        return rc;
    apply(r, &t);
    *out = t;
    return 0;
}
