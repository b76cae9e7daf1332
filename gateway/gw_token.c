/*
 * gw_token.c - the read-your-writes token, x-meridian-write-token.
 *
 * A PUT or DELETE answered at a site carries "<site>:<lsn>": the site's name
 * and its durable WAL LSN when the write was acknowledged (so at least the
 * write's own LSN). A read at another site that presents the token is
 * served there once that site has applied the origin's records through lsn,
 * and otherwise waits briefly or goes to the origin (gw_route.c,
 * docs/routing.md). The token is client input: this parser accepts exactly
 * "<name or decimal id of a configured site>:<1..20 decimal digits>" and
 * nothing else. It is pure (no I/O, no state), so the fuzz target
 * (tests/fuzz/fuzz_sigv4.c) drives it directly.
 */
#include "gw_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The id of a site named by name or decimal id: 0 for this site. */
static int
site_lookup(const mrd_config *conf, const char *name, uint32_t *site)
{
    char *end;
    unsigned long id = strtoul(name, &end, 10);
    int numeric = name[0] >= '1' && name[0] <= '9' && !*end;

    if (strcmp(name, conf->site_name) == 0 || (numeric && id == conf->site_id)) {
        *site = 0;
        return 0;
    }
    for (int i = 0; i < conf->n_peers; i++) {
        if (strcmp(conf->peers[i].name, name) == 0 || (numeric && id == conf->peers[i].id)) {
            *site = conf->peers[i].id;
            return 0;
        }
    }
    return MRD_EINVAL;
}

int
gw__route_parse_token(const mrd_config *conf, const char *tok, uint32_t *site, uint64_t *lsn)
{
    const char *colon = tok ? strrchr(tok, ':') : NULL;
    char name[MRD_NAME_MAX], *end;
    size_t n;
    unsigned long long v;
    uint32_t id = 0;

    if (!colon || colon == tok || (n = (size_t)(colon - tok)) >= sizeof(name) || colon[1] < '0' ||
        colon[1] > '9' || strlen(colon + 1) > 20)
        return MRD_EINVAL;
    errno = 0;
    v = strtoull(colon + 1, &end, 10);
    if (*end || errno == ERANGE)
        return MRD_EINVAL;
    memcpy(name, tok, n);
    name[n] = '\0';
    if (site_lookup(conf, name, &id) != 0)
        return MRD_EINVAL;
    *site = id;
    *lsn = v;
    return 0;
}
