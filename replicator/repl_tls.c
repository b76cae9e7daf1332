/*
 * repl_tls.c - which certificate belongs to which site: the policy of the
 * mutual TLS links (PROTOCOL.md section 1). The mechanism (OpenSSL, the
 * bufferevents, ALPN) is the tls module's; this file only decides.
 *
 * A peer is identified by either
 *   - its pin ([peer.NAME] tls_pin, or for a site added at run time the pin
 *     the topology carries: `meridianctl site add --tls-pin`): the SHA-256
 *     of its certificate or of its SubjectPublicKeyInfo (either matches; the
 *     SPKI pin survives re-issuing a certificate for the same key), or
 *   - when this site has a CA file ([replication] tls_ca) and no pin for the
 *     peer: a certificate that chains to that CA and whose subject CN is the
 *     peer's site name.
 * A pin, when configured, is the only thing that counts for that peer.
 *
 * The client side (dialling peer P) accepts only P's certificate. The server
 * side accepts the certificate of any peer in the topology and binds the
 * connection to that peer; the site id of every request (signed with the
 * secret, or, without one, vouched for by this binding alone) must then
 * name the same site, so a site cannot speak for another with its own
 * certificate. It also accepts, by the same rule, the certificate of a site
 * removed from the topology (a removed slot, or the topology's removed
 * list, whose entries carry the pin the site was trusted by), binding the
 * connection to no peer: all such a connection can get is the 410 that
 * tells the site it was removed (repl_server.c); a request naming a live
 * site on it is refused, as the certificate names none, and without a
 * secret so is one naming another removed site (c->tls_site).
 *
 * Refusals are answered with a TLS alert by the handshake, logged here as
 * repl.tls.refused with the peer (or the CN the certificate claims) and the
 * reason, and the reason becomes the link's error in status. The log is
 * rate-limited (a dialler retries every few seconds): the first refusal
 * and any change of reason are logged at warn, repeats within a minute at
 * debug.
 */
#include "repl_int.h"

#include <stdio.h>
#include <string.h>

#include "tls.h"

const uint8_t *
repl__tls_pin_of(const repl *r, uint32_t id)
{
    const repl_removed_site *x = repl_topology_id_removed(&r->topo, id);

    for (int i = 0; i < r->n_conf_peers; i++)
        if (r->conf_peers[i].id == id && r->conf_peers[i].has_tls_pin)
            return r->conf_peers[i].tls_pin;
    for (int i = 0; i < r->topo.n; i++)
        if (r->topo.sites[i].id == id && r->topo.sites[i].has_tls_pin)
            return r->topo.sites[i].tls_pin;
    return x && x->has_tls_pin ? x->tls_pin : NULL;
}

static int
pin_match(const uint8_t *pin, const tls_peer_cert *pc)
{
    return memcmp(pin, pc->cert_sha256, 32) == 0 || memcmp(pin, pc->spki_sha256, 32) == 0;
}

/* Does pc belong to site (id, name)? Its pin when it has one, else a
 * certificate chaining to our CA with the site's name as CN. */
static int
accepts(const repl *r, uint32_t id, const char *name, const tls_peer_cert *pc)
{
    const uint8_t *pin = repl__tls_pin_of(r, id);

    return pin ? pin_match(pin, pc) : pc->chain_ok && strcmp(pc->cn, name) == 0;
}

/* Does pc identify p? 1 yes; 0 no, with why. */
static int
identifies(const repl *r, const repl_peer *p, const tls_peer_cert *pc, char *why, size_t whysz)
{
    return tls_identify(repl__tls_pin_of(r, p->id), "tls_pin", p->name, pc, why, whysz);
}

int
repl__tls_check(void *ud, const struct tls_peer_cert *pc, char *why, size_t whysz)
{
    repl__conn *c = ud;
    repl *r = c->r;
    repl_peer *named = NULL;
    char fp[80];

    if (c->is_client)
        return c->peer && identifies(r, c->peer, pc, why, whysz);
    for (int i = 0; i < r->n_peers; i++) {
        repl_peer *p = &r->peers[i];

        if (p->removed)
            continue;
        if (accepts(r, p->id, p->name, pc)) {
            c->tls_peer = p;
            c->tls_site = p->id;
            return 1;
        }
        if (strcmp(pc->cn, p->name) == 0)
            named = p;
    }
    /* a removed site may finish its handshake, so that its requests get
     * the 410 that tells it (repl_server.c, tell_removed): one removed
     * since start-up (its slot), or one the topology remembers */
    for (int i = 0; !named && i < r->n_peers; i++) {
        repl_peer *p = &r->peers[i];

        if (p->removed && repl__peer_removed(r, p->id) == p && accepts(r, p->id, p->name, pc)) {
            c->tls_peer = p;
            c->tls_site = p->id;
            return 1;
        }
    }
    for (int i = 0; !named && i < r->topo.n_removed; i++) {
        const repl_removed_site *x = &r->topo.removed[i];

        if (!repl__peer_removed(r, x->id) && accepts(r, x->id, x->name, pc)) {
            snprintf(c->tls_claim, sizeof(c->tls_claim), "%s", x->name);
            c->tls_site = x->id;
            return 1;
        }
    }
    if (named) {
        snprintf(c->tls_claim, sizeof(c->tls_claim), "%s", named->name);
        return identifies(r, named, pc, why, whysz);
    }
    tls_fingerprint_format(pc->cert_sha256, fp, sizeof(fp));
    snprintf(why, whysz, "certificate (CN '%s', %.23s...) matches no configured peer",
             pc->cn[0] ? pc->cn : "-", fp);
    return 0;
}

/* Whether to log a refusal loudly: the first time a (side, peer, reason)
 * is seen, and again once a minute. A small table, oldest entry replaced;
 * the loop thread only. */
static int
loud_once(const char *key)
{
    static struct {
        char key[192];
        uint64_t ns;
    } seen[16];
    uint64_t now = mrd_clock_mono_ns();
    int oldest = 0;

    for (int i = 0; i < 16; i++) {
        if (strcmp(seen[i].key, key) == 0) {
            if (now - seen[i].ns < 60ull * 1000000000ull)
                return 0;
            seen[i].ns = now;
            return 1;
        }
        if (seen[i].ns < seen[oldest].ns)
            oldest = i;
    }
    snprintf(seen[oldest].key, sizeof(seen[oldest].key), "%s", key);
    seen[oldest].ns = now;
    return 1;
}

void
repl__tls_refused(repl__conn *c, const char *reason)
{
    const char *side = c->is_client ? "client" : "server";
    const char *name = c->peer           ? c->peer->name
                       : c->tls_peer     ? c->tls_peer->name
                       : c->tls_claim[0] ? c->tls_claim
                                         : "unknown";
    char key[192];
    int level;

    snprintf(key, sizeof(key), "%s|%.63s|%.100s", side, name, reason);
    level = loud_once(key) ? MRD_LOG_WARN : MRD_LOG_DEBUG; /* MRD_LOG reads it twice */
    MRD_LOG(level, "repl.tls.refused", "side=%s peer=%s remote=%s reason=\"%s\"", side, name,
            c->remote, reason);
}
