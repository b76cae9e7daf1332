/*
 * ctl_site.c - meridianctl site list|info|add|remove: the cluster topology.
 *
 * A change is made at the site meridianctl talks to, against the epoch it
 * just read there (compare-and-set: the admin API answers 409
 * TopologyChanged when another change came first, and this command says so
 * and stops). The site stores the new topology and announces it; every
 * other site fetches and adopts it within a heartbeat or two
 * (replicator/PROTOCOL.md section 9). The command then waits (--wait S,
 * default 15) until every site in the new topology announces it back, and
 * checks that its change is still there: two admins changing the topology
 * at two sites at once both make the same next epoch, and only one of the
 * two changes survives everywhere. The losing command exits 1 with
 * "superseded"; it never reports success for a change the cluster dropped.
 *
 * Exit codes: 0 done (a change that has not reached every site within
 * --wait is done too, and says which sites lag), 1 failure, 2 usage.
 */
#include "ctl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char ctl_site_help[] =
    "usage: meridianctl site list\n"
    "       meridianctl site info NAME\n"
    "       meridianctl site add NAME --id ID --replication HOST:PORT [--s3 HOST:PORT]\n"
    "                            [--s3-tls HOST:PORT] [--tls-pin SHA256] [--wait S]\n"
    "       meridianctl site remove NAME [--wait S]\n"
    "\n"
    "list     every site of the topology this site holds: addresses, link state,\n"
    "         RTT and the topology epoch each site announces; then the sites\n"
    "         removed from it (their ids are not given again)\n"
    "add      add a site to the running cluster; every site learns of it and starts\n"
    "         replicating to it (its backlog comes from the WAL, or anti-entropy\n"
    "         when the WAL no longer holds it: see 'resync status' and 'bandwidth')\n"
    "remove   remove a site: its peers stop sending to it, release the WAL they\n"
    "         kept for it, and answer its requests by telling it it was removed\n"
    "--s3-tls the new site's S3 TLS listener: requests forwarded to it go there,\n"
    "         over TLS (sites with mutual TLS only)\n"
    "--tls-pin  with mutual TLS between sites and no CA: the SHA-256 pin of the new\n"
    "         site's certificate (scripts/gen-site-certs.sh prints it); every site\n"
    "         then accepts that certificate for it\n"
    "--wait   seconds to wait for every site to hold the change (default 15)\n"
    "A change is compare-and-set on the epoch read at this site; when another\n"
    "change wins (two admins at two sites at once), this command says\n"
    "'superseded' and exits 1 (replicator/PROTOCOL.md section 9).\n";

static int
get_topology(const ctl_opts *o, ctl_response *resp, mrd_json **j)
{
    return ctl_request_json(o, "GET", "/admin/v1/sites", resp, j);
}

static const mrd_json *
find_site(const mrd_json *t, const char *name)
{
    const mrd_json *arr = mrd_json_get(t, "sites");

    for (const mrd_json *s = arr ? arr->child : NULL; s; s = s->next)
        if (strcmp(mrd_json_get_str(s, "name", ""), name) == 0)
            return s;
    return NULL;
}

static void
print_sites(const mrd_json *t)
{
    const mrd_json *arr = mrd_json_get(t, "sites");
    const mrd_json *conv = mrd_json_get(t, "converged");

    printf("topology epoch %.0f (hash %s) at site %s; all sites hold it: %s\n",
           mrd_json_get_num(t, "epoch", 0), mrd_json_get_str(t, "hash", "?"),
           mrd_json_get_str(t, "self", "?"), conv && conv->num ? "yes" : "no");
    printf("%-12s %5s %-22s %-22s %-9s %9s %s\n", "SITE", "ID", "REPLICATION", "S3", "STATE", "RTT",
           "ANNOUNCED-EPOCH");
    for (const mrd_json *s = arr ? arr->child : NULL; s; s = s->next) {
        const mrd_json *self = mrd_json_get(s, "self");
        char rtt[32] = "-", ep[32] = "-";

        if (mrd_json_get(s, "rtt_ms"))
            snprintf(rtt, sizeof(rtt), "%.1f ms", mrd_json_get_num(s, "rtt_ms", 0));
        if (mrd_json_get(s, "announced_epoch"))
            snprintf(ep, sizeof(ep), "%.0f", mrd_json_get_num(s, "announced_epoch", 0));
        printf("%-12s %5.0f %-22s %-22s %-9s %9s %s\n", mrd_json_get_str(s, "name", "?"),
               mrd_json_get_num(s, "id", 0), mrd_json_get_str(s, "replication", "?"),
               mrd_json_get_str(s, "s3", "-"),
               self && self->num ? "(this)" : mrd_json_get_str(s, "state", "unknown"), rtt, ep);
    }
    arr = mrd_json_get(t, "removed");
    for (const mrd_json *s = arr ? arr->child : NULL; s; s = s->next)
        printf("removed: %s (id %.0f) at epoch %.0f\n", mrd_json_get_str(s, "name", "?"),
               mrd_json_get_num(s, "id", 0), mrd_json_get_num(s, "removed_at_epoch", 0));
}

/* Waits until the topology at o reports converged, up to wait_s. Returns
 * the last topology read (caller frees) or NULL. */
static mrd_json *
wait_converged(const ctl_opts *o, double wait_s, int *converged)
{
    mrd_json *j = NULL;
    double waited = 0;

    *converged = 0;
    for (;;) {
        ctl_response resp = {0};
        const mrd_json *c;

        mrd_json_free(j);
        j = NULL;
        if (get_topology(o, &resp, &j) != 0) {
            mrd_buf_free(&resp.body);
            return NULL;
        }
        mrd_buf_free(&resp.body);
        c = mrd_json_get(j, "converged");
        if ((c && c->num) || waited >= wait_s) {
            *converged = c && c->num;
            return j;
        }
        usleep(250000);
        waited += 0.25;
    }
}

static int
change(const ctl_opts *o, const char *name, const char *add_query, double wait_s, int json)
{
    ctl_response resp = {0};
    mrd_json *t = NULL, *after = NULL;
    char path[512];
    int rc = 1, converged = 0, present;
    double epoch;

    if (get_topology(o, &resp, &t) != 0)
        goto out;
    epoch = mrd_json_get_num(t, "epoch", 0);
    mrd_buf_free(&resp.body);
    mrd_json_free(t);
    t = NULL;
    if (add_query)
        snprintf(path, sizeof(path), "/admin/v1/sites?epoch=%.0f&%s", epoch, add_query);
    else
        snprintf(path, sizeof(path), "/admin/v1/sites/%s?epoch=%.0f", name, epoch);
    if (ctl_request_json(o, add_query ? "POST" : "DELETE", path, &resp, &t) != 0)
        goto out;
    epoch = mrd_json_get_num(t, "epoch", 0);
    if (!(after = wait_converged(o, wait_s, &converged)))
        goto out;
    present = find_site(after, name) != NULL;
    if (mrd_json_get_num(after, "epoch", 0) != epoch ||
        strcmp(mrd_json_get_str(after, "hash", ""), mrd_json_get_str(t, "hash", "")) != 0) {
        if (present == (add_query != NULL)) {
            fprintf(stderr,
                    "meridianctl: the topology moved on to epoch %.0f, which still %s "
                    "%s\n",
                    mrd_json_get_num(after, "epoch", 0), present ? "has" : "lacks", name);
        } else {
            fprintf(stderr,
                    "meridianctl: superseded: another change made epoch %.0f at the same time "
                    "and won; %s was not %s. Read 'meridianctl site list' and retry.\n",
                    mrd_json_get_num(after, "epoch", 0), name, add_query ? "added" : "removed");
            goto out;
        }
    }
    if (json) {
        fwrite(resp.body.data, 1, resp.body.len, stdout);
        printf("\n");
    } else {
        printf("%s %s at topology epoch %.0f; ", name, add_query ? "added" : "removed", epoch);
        if (converged)
            printf("every site holds it\n");
        else
            printf("not every site holds it yet after %.0f s (a site that is down learns it "
                   "when it is back):\n",
                   wait_s);
        if (!converged)
            print_sites(after);
    }
    rc = 0;
out:
    mrd_json_free(t);
    mrd_json_free(after);
    mrd_buf_free(&resp.body);
    return rc;
}

int
ctl_cmd_site(const ctl_opts *o, int argc, char **argv)
{
    const char *sub = argc > 0 ? argv[0] : NULL, *name = NULL;
    const char *id = NULL, *repl = NULL, *s3 = NULL, *s3tls = NULL, *pin = NULL;
    double wait_s = 15;
    int rc = 1;

    if (!sub) {
        fputs(ctl_site_help, stderr);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--id") == 0 && i + 1 < argc)
            id = argv[++i];
        else if (strcmp(argv[i], "--replication") == 0 && i + 1 < argc)
            repl = argv[++i];
        else if (strcmp(argv[i], "--s3") == 0 && i + 1 < argc)
            s3 = argv[++i];
        else if (strcmp(argv[i], "--s3-tls") == 0 && i + 1 < argc)
            s3tls = argv[++i];
        else if (strcmp(argv[i], "--tls-pin") == 0 && i + 1 < argc)
            pin = argv[++i];
        else if (strcmp(argv[i], "--wait") == 0 && i + 1 < argc)
            wait_s = atof(argv[++i]);
        else if (!name && argv[i][0] != '-')
            name = argv[i];
        else {
            fprintf(stderr, "meridianctl: site: unknown argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (name && (strlen(name) >= 64 ||
                 strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789-_") != strlen(name))) {
        fprintf(stderr, "meridianctl: '%s' is not a site name (1-63 of a-z 0-9 - _)\n", name);
        return 2;
    }
    if (strcmp(sub, "list") == 0 || strcmp(sub, "info") == 0) {
        ctl_response resp = {0};
        mrd_json *t = NULL;
        const mrd_json *s;

        if (strcmp(sub, "info") == 0 && !name) {
            fprintf(stderr, "meridianctl: site info needs a site name\n");
            return 2;
        }
        if (get_topology(o, &resp, &t) == 0) {
            rc = 0;
            if (name && !(s = find_site(t, name))) {
                fprintf(stderr, "meridianctl: no site '%s' in the topology\n", name);
                rc = 1;
            } else if (o->json && name) {
                ctl_response one = {0};
                mrd_json *sj = NULL;
                char path[128];

                snprintf(path, sizeof(path), "/admin/v1/sites/%s", name);
                if (ctl_request_json(o, "GET", path, &one, &sj) == 0) {
                    fwrite(one.body.data, 1, one.body.len, stdout);
                    printf("\n");
                } else {
                    rc = 1;
                }
                mrd_json_free(sj);
                mrd_buf_free(&one.body);
            } else if (o->json) {
                fwrite(resp.body.data, 1, resp.body.len, stdout);
                printf("\n");
            } else if (name) {
                printf("site %s (id %.0f)\n  replication %s\n  s3          %s\n  state       "
                       "%s\n  announced topology epoch %.0f (hash %s)\n",
                       name, mrd_json_get_num(s, "id", 0), mrd_json_get_str(s, "replication", "?"),
                       mrd_json_get_str(s, "s3", "-"),
                       mrd_json_get(s, "self") && mrd_json_get(s, "self")->num
                           ? "(this site)"
                           : mrd_json_get_str(s, "state", "unknown"),
                       mrd_json_get_num(s, "announced_epoch", mrd_json_get_num(t, "epoch", 0)),
                       mrd_json_get_str(s, "announced_hash", mrd_json_get_str(t, "hash", "?")));
            } else {
                print_sites(t);
            }
        }
        mrd_json_free(t);
        mrd_buf_free(&resp.body);
        return rc;
    }
    if (strcmp(sub, "add") == 0) {
        char q[600], hex[65];
        uint8_t raw[32];
        mrd_addr a;

        if (!name || !id || !repl || strspn(id, "0123456789") != strlen(id) || !*id ||
            mrd_addr_parse(repl, &a) != 0 || (s3 && mrd_addr_parse(s3, &a) != 0) ||
            (s3tls && (!s3 || mrd_addr_parse(s3tls, &a) != 0)) ||
            (pin && mrd_pin_parse(pin, raw) != 0)) {
            fprintf(stderr, "meridianctl: site add NAME --id ID --replication HOST:PORT "
                            "[--s3 HOST:PORT [--s3-tls HOST:PORT]] [--tls-pin SHA256] (numeric "
                            "host:port; a pin is 64 hex digits)\n");
            return 2;
        }
        for (int i = 0; pin && i < 32; i++)
            snprintf(hex + 2 * i, 3, "%02x", raw[i]);
        snprintf(q, sizeof(q), "name=%s&id=%s&replication=%s%s%s%s%s%s%s", name, id, repl,
                 s3 ? "&s3=" : "", s3 ? s3 : "", s3tls ? "&s3_tls=" : "", s3tls ? s3tls : "",
                 pin ? "&tls_pin=" : "", pin ? hex : "");
        return change(o, name, q, wait_s, o->json);
    }
    if (strcmp(sub, "remove") == 0) {
        if (!name) {
            fprintf(stderr, "meridianctl: site remove needs a site name\n");
            return 2;
        }
        return change(o, name, NULL, wait_s, o->json);
    }
    fprintf(stderr, "meridianctl: unknown 'site %s'\n", sub);
    fputs(ctl_site_help, stderr);
    return 2;
}
