/*
 * ctl_main.c - meridianctl: argument parsing, endpoint/token discovery and
 * the commands.
 *
 * Where to connect, in order of precedence: --endpoint / --token, then
 * --config FILE (the site's own config: admin listen address and token),
 * then MERIDIAN_ENDPOINT / MERIDIAN_TOKEN / MERIDIAN_CONFIG. Every command
 * prints a table for people by default and the API's JSON with --json.
 * Exit status: 0 on success; 2 on bad input: usage errors, an admin
 * endpoint that cannot be reached, a wrong token, a name the site does not
 * know (peer, site, conflict); 1 when the site refused or failed the
 * operation, or (object status) not every site answered. Every failure is
 * one line on stderr that says what to do.
 */
#include "ctl.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void
usage(FILE *f)
{
    fprintf(f, "usage: meridianctl [options] <command>\n"
               "\n"
               "commands:\n"
               "  status              the site's identity, health, drives and peers\n"
               "  lag [--watch] [--interval S] [--count N]\n"
               "                      replication to and from each peer: acked LSN, lag in\n"
               "                      records and time, requests in flight, totals, errors,\n"
               "                      anti-entropy; --watch refreshes until interrupted\n"
               "  resync start --peer NAME [--bandwidth RATE]\n"
               "                      start an anti-entropy pass to a peer now\n"
               "  resync cancel --peer NAME\n"
               "                      stop the running pass (a peer past retention then\n"
               "                      waits for 'resync start')\n"
               "  resync status       anti-entropy passes per peer and their results\n"
               "  bandwidth --peer NAME RATE\n"
               "                      limit what we send that peer, bytes/s (50MiB; 0 = none)\n"
               "  conflicts list [--bucket B] [--key K] [--limit N]\n"
               "                      concurrent-write conflicts settled at this site\n"
               "  conflicts show ID   one conflict: both versions, vectors, where the loser is\n"
               "  failed [--peer P] [--bucket B] [--limit N]\n"
               "                      writes a peer has not applied past the deadline\n"
               "  object status BUCKET KEY\n"
               "                      the key's current version at every site, replication\n"
               "  drive list          drive health, errors and heal progress\n"
               "  drive heal [--queue-only] [--no-wait]\n"
               "                      re-probe drives and check/rebuild shards\n"
               "  failover [show|drain|undrain]\n"
               "                      where this site's S3 requests go; drain for maintenance\n"
               "  help [COMMAND]      this text, or a command's (also COMMAND --help)\n"
               "  site list|info|add|remove\n"
               "                      the cluster's sites; add or remove one at run time\n"
               "\n"
               "options:\n"
               "  --endpoint HOST:PORT  admin API address (env MERIDIAN_ENDPOINT)\n"
               "  --token TOKEN         admin bearer token (env MERIDIAN_TOKEN)\n"
               "  --config FILE         take endpoint and token from a site config\n"
               "                        (env MERIDIAN_CONFIG)\n"
               "  --json                print JSON instead of a table\n"
               "  --timeout MS          per-request timeout (default 5000)\n");
}

/* Per-command help: `meridianctl CMD --help` and `meridianctl help CMD`. */
static const struct {
    const char *cmd, *text;
} cmd_help[] = {
    {"status", "usage: meridianctl status\n"
               "\n"
               "The site's identity, readiness, listeners, erasure coding, drives and peers\n"
               "(link state, RTT, last heartbeat, announced high-water LSN), then every\n"
               "link of the cluster (each direction between each pair of sites): state,\n"
               "RTT, records behind, age of the oldest unreplicated write, throughput,\n"
               "data sent, errors. Links of other sites are as they last announced them\n"
               "in a heartbeat; AGE says how long ago. Any site gives the same table.\n"
               "Last, STABLE: every write older than that is at every site, and the\n"
               "link that holds it back; GC: what the sweeps purged since start.\n"},
    {"lag", "usage: meridianctl lag [--watch] [--interval S] [--count N]\n"
            "\n"
            "Replication to and from each peer: acked LSN, lag in records and time,\n"
            "requests in flight, records and bytes sent and applied, anti-entropy.\n"
            "  --watch        refresh until interrupted (or --count N times)\n"
            "  --interval S   seconds between refreshes (default 1)\n"},
    {"resync", "usage: meridianctl resync start --peer NAME [--bucket B] [--bandwidth RATE]\n"
               "       meridianctl resync cancel --peer NAME\n"
               "       meridianctl resync status [--peer NAME] [--watch]\n"
               "\n"
               "Anti-entropy: compare this site's index digest with the peer's and send\n"
               "what it lacks. RATE is bytes/s (e.g. 50MiB) and limits everything sent\n"
               "to that peer until changed with 'bandwidth' (\"100MiB/s\" works too).\n"
               "--bucket B limits the pass to one bucket (a peer past WAL retention\n"
               "always gets every bucket). status shows each pass's\n"
               "digest bytes and requests exchanged (tree digests compared top-down, or\n"
               "\"flat\" with a peer that predates them), versions sent against the\n"
               "estimate from the digests, with a progress bar\n"
               "and an ETA on a terminal; --watch redraws every second until no pass\n"
               "runs ('bandwidth' changes the rate while it runs).\n"},
    {"bandwidth", "usage: meridianctl bandwidth --peer NAME RATE\n"
                  "\n"
                  "Limit the bytes per second this site sends NAME (e.g. 50MiB; 0 lifts\n"
                  "the limit). Takes effect at once, also for a resync in progress.\n"},
    {"conflicts", "usage: meridianctl conflicts list [--bucket B] [--key K] [--limit N]\n"
                  "       meridianctl conflicts show ID\n"
                  "\n"
                  "Concurrent writes to one key that this site settled, newest first: the\n"
                  "winner (now current) and the loser, each as version-id@origin-site. The\n"
                  "loser is kept, flagged as a conflict, in the index (hidden from listings\n"
                  "in unversioned buckets for the retention window) and can be fetched with\n"
                  "GET ?versionId=. 'show' prints both versions' vectors, HLC stamps, ETags\n"
                  "and sizes. Every site keeps its own log (ids are per site) of the last\n"
                  "1000; /metrics counts them in meridian_conflicts_total.\n"
                  "  --bucket B, --key K   only conflicts on that bucket / key\n"
                  "  --limit N             at most N (1-1000, default 50)\n"},
    {"failed", "usage: meridianctl failed [--peer P] [--bucket B] [--limit N]\n"
               "\n"
               "Writes made at this site that a peer has not applied [replication]\n"
               "failed_after seconds after they were made (x-amz-replication-status\n"
               "FAILED), oldest first, with the peer named: kind (put, delete_marker,\n"
               "tags, ...), bucket/key, version and age. They keep being retried and leave\n"
               "the list once the peer applies them. Read from the WAL after each peer's\n"
               "acked position, not from the index. Counts per peer are also in status\n"
               "(send.failed_records) and /metrics (meridian_repl_failed_records).\n"
               "  --peer P     only that peer    --bucket B   only that bucket\n"
               "  --limit N    at most N (1-1000, default 50)\n"},
    {"object", "usage: meridianctl object status BUCKET KEY\n"
               "\n"
               "The key at every site: current version id, origin, ETag, size and\n"
               "version vector, other versions kept (conflict losers), and, from the\n"
               "version's origin site, whether each peer has applied it (COMPLETED,\n"
               "PENDING, FAILED). Peers are asked directly at the admin address of their\n"
               "[peer.X] section with the same token; a site that does not answer is\n"
               "shown with the reason and the exit status is then 1.\n"},
    {"drive", "usage: meridianctl drive list\n"
              "       meridianctl drive heal [--queue-only] [--no-wait] [--interval S]\n"
              "\n"
              "list: each drive's state (online or failed, with the error), free and\n"
              "total bytes, read/write/checksum error counts, and heal progress.\n"
              "heal: re-probe offline drives, then check every version's shards and\n"
              "rebuild missing or corrupt ones (--queue-only: only objects already\n"
              "found damaged); shows progress until it ends unless --no-wait.\n"},
    {"failover", "usage: meridianctl failover [show]\n"
                 "       meridianctl failover drain\n"
                 "       meridianctl failover undrain\n"
                 "\n"
                 "show: where this site's S3 requests go now (reads local or to a peer,\n"
                 "writes local, forwarded or refused), the nearest healthy peer, the peers\n"
                 "this site is behind, and the proxy counters (docs/routing.md).\n"
                 "drain: forward every S3 request this site receives to the nearest healthy\n"
                 "peer, for maintenance; undrain: serve locally again. Both are idempotent\n"
                 "and not persisted (a restart serves locally). --json prints the status\n"
                 "document; the state is under \"routing\".\n"},
    {"site", ctl_site_help},
};

/* Prints the help of cmd; 0, or 2 if there is no such command. */
static int
command_help(const char *cmd, FILE *f)
{
    for (size_t i = 0; i < sizeof(cmd_help) / sizeof(cmd_help[0]); i++) {
        if (strcmp(cmd_help[i].cmd, cmd) == 0) {
            fputs(cmd_help[i].text, f);
            fputs("\nglobal options (before the command): --endpoint HOST:PORT, --token TOKEN,\n"
                  "--config SITE.ini, --json, --timeout MS; see 'meridianctl --help'.\n",
                  f);
            return 0;
        }
    }
    fprintf(stderr, "meridianctl: no command '%s'; see 'meridianctl --help'\n", cmd);
    return 2;
}

static int
parse_endpoint(const char *s, ctl_opts *o)
{
    mrd_addr a;

    if (strncmp(s, "http://", 7) == 0)
        s += 7;
    {
        char tmp[300];
        size_t n = strcspn(s, "/");
        if (n >= sizeof(tmp))
            return -1;
        memcpy(tmp, s, n);
        tmp[n] = '\0';
        if (mrd_addr_parse(tmp, &a) != 0)
            return -1;
    }
    snprintf(o->host, sizeof(o->host), "%s", a.host);
    o->port = a.port;
    return 0;
}

static int
load_from_config(const char *path, ctl_opts *o, int need_endpoint, int need_token)
{
    mrd_config *c;
    char err[1024];

    if (mrd_config_load(path, &c, err, sizeof(err)) != 0) {
        fprintf(stderr, "meridianctl: %s\n", err);
        return -1;
    }
    if (need_endpoint) {
        /* A wildcard listen address is reached on loopback. */
        const char *h = c->listen_admin.host;
        if (strcmp(h, "0.0.0.0") == 0)
            h = "127.0.0.1";
        else if (strcmp(h, "::") == 0)
            h = "::1";
        snprintf(o->host, sizeof(o->host), "%s", h);
        o->port = c->listen_admin.port;
    }
    if (need_token)
        snprintf(o->token, sizeof(o->token), "%s", c->admin_token);
    mrd_config_free(c);
    return 0;
}

static int
get_json(const ctl_opts *o, const char *path, ctl_response *resp, mrd_json **out)
{
    return ctl_request_json(o, "GET", path, resp, out);
}

/* Every link of the cluster, as the site asked knows it: its own live, the
 * others' as each peer last announced them (AGE says how long ago). */
static void
print_cluster(const mrd_json *links)
{
    char rtt[24], lag[24], age[24], tput[32], sent[32], lb[32];

    if (!links || !links->child)
        return;
    printf("\nCLUSTER LINKS (from any site: the same, up to AGE)\n");
    printf("%-14s %-9s %9s %9s %10s %10s %11s %10s %6s %6s  %s\n", "LINK", "STATE", "RTT",
           "LAG-RECS", "LAG-BYTES", "OLDEST", "THROUGHPUT", "SENT", "ERRORS", "AGE", "LAST-ERROR");
    for (const mrd_json *l = links->child; l; l = l->next) {
        char name[64];
        const char *state = mrd_json_get_str(l, "state", "?");

        snprintf(name, sizeof(name), "%s->%s", mrd_json_get_str(l, "from", "?"),
                 mrd_json_get_str(l, "to", "?"));
        snprintf(rtt, sizeof(rtt), "%.1f ms", mrd_json_get_num(l, "rtt_ms", 0));
        snprintf(lag, sizeof(lag), "%.0f", mrd_json_get_num(l, "lag_records", 0));
        ctl_human_duration(mrd_json_get_num(l, "oldest_unreplicated_age_ms", 0) / 1000.0, age,
                           sizeof(age));
        ctl_human_bytes((uint64_t)mrd_json_get_num(l, "throughput_bps", 0), tput, sizeof(tput));
        strncat(tput, "/s", sizeof(tput) - strlen(tput) - 1);
        ctl_human_bytes((uint64_t)mrd_json_get_num(l, "sent_bytes", 0), sent, sizeof(sent));
        ctl_human_bytes((uint64_t)mrd_json_get_num(l, "lag_bytes", 0), lb, sizeof(lb));
        printf("%-14s %-9s %9s %9s %10s %10s %11s %10s %6.0f %5.1fs  %s\n", name, state, rtt, lag,
               lb, mrd_json_get_num(l, "lag_records", 0) ? age : "-", tput, sent,
               mrd_json_get_num(l, "errors", 0), mrd_json_get_num(l, "age_ms", 0) / 1000.0,
               strcmp(state, "healthy") == 0 ? "" : mrd_json_get_str(l, "last_error", ""));
    }
}

/* The cluster's stable point and what the GC purged (status "gc"). */
static void
print_gc(const mrd_json *g)
{
    const mrd_json *held = mrd_json_get(g, "held_by"), *age = mrd_json_get(g, "stable_age_ms");
    const char *origin = mrd_json_get_str(held, "origin", ""),
               *site = mrd_json_get_str(held, "site", "");
    char a[32], b[32], c[32];

    if (!g)
        return;
    if (age && age->type == MRD_JSON_NUMBER)
        printf("\nSTABLE   every write older than %s is at every site",
               ctl_human_duration(age->num / 1000.0, a, sizeof(a)));
    else
        printf("\nSTABLE   none yet: not every site has reported what it has applied");
    if (*origin)
        printf(" (slowest: %s's writes at %s)", origin, site);
    printf("\n");
    printf("GC       %.0f delete markers, %.0f tombstones and %.0f conflict losers (%s) purged, "
           "%.0f ghosts dropped; sweeps every %s (%s), grace %s\n",
           mrd_json_get_num(g, "markers_purged", 0), mrd_json_get_num(g, "tombstones_purged", 0),
           mrd_json_get_num(g, "losers_purged", 0),
           ctl_human_bytes((uint64_t)mrd_json_get_num(g, "loser_bytes_purged", 0), c, sizeof(c)),
           mrd_json_get_num(g, "ghosts_dropped", 0),
           ctl_human_duration(mrd_json_get_num(g, "interval_s", 0), a, sizeof(a)),
           mrd_json_get_num(g, "interval_s", 0) ? "on" : "off",
           ctl_human_duration(mrd_json_get_num(g, "grace_s", 0), b, sizeof(b)));
    if (*mrd_json_get_str(g, "last_error", ""))
        printf("GC       last sweep failed: %s\n", mrd_json_get_str(g, "last_error", ""));
}

static int
cmd_status(const ctl_opts *o)
{
    ctl_response resp = {0};
    mrd_json *j = NULL;
    const mrd_json *site, *listen, *ec, *arr;
    char a[32], b[32];
    int rc = 1;

    if (get_json(o, "/admin/v1/status", &resp, &j) != 0)
        goto out;
    if (o->json) {
        fwrite(resp.body.data, 1, resp.body.len, stdout);
        fputc('\n', stdout);
        rc = 0;
        goto out;
    }
    site = mrd_json_get(j, "site");
    listen = mrd_json_get(j, "listen");
    ec = mrd_json_get(j, "erasure");
    printf("SITE %s (id %.0f)  version %s  up %s  %s\n", mrd_json_get_str(site, "name", "?"),
           mrd_json_get_num(site, "id", 0), mrd_json_get_str(j, "version", "?"),
           ctl_human_duration(mrd_json_get_num(j, "uptime_s", 0), a, sizeof(a)),
           mrd_json_get_num(j, "ready", 0) ? "READY" : "NOT READY");
    printf("listen   s3 %s%s%s   replication %s (%s%s)   admin %s\n",
           mrd_json_get_str(listen, "s3", "?"), mrd_json_get(listen, "s3_tls") ? "   s3_tls " : "",
           mrd_json_get_str(listen, "s3_tls", ""), mrd_json_get_str(listen, "replication", "?"),
           mrd_json_get_str(listen, "replication_transport", "h2c"),
           strcmp(mrd_json_get_str(listen, "replication_auth", "secret"), "certificate") == 0
               ? ", no secret"
               : "",
           mrd_json_get_str(listen, "admin", "?"));
    printf("erasure  %.0f+%.0f, block %s\n\n", mrd_json_get_num(ec, "k", 0),
           mrd_json_get_num(ec, "m", 0),
           ctl_human_bytes((uint64_t)mrd_json_get_num(ec, "block_size", 0), a, sizeof(a)));

    printf("%-5s %-8s %-11s %-11s %s\n", "DRIVE", "STATE", "FREE", "TOTAL", "PATH");
    arr = mrd_json_get(j, "drives");
    {
        int i = 0;
        for (const mrd_json *d = arr ? arr->child : NULL; d; d = d->next, i++) {
            const char *e = mrd_json_get_str(d, "error", "");
            printf("%-5d %-8s %-11s %-11s %s%s%s\n", i, mrd_json_get_str(d, "state", "?"),
                   ctl_human_bytes((uint64_t)mrd_json_get_num(d, "free_bytes", 0), a, sizeof(a)),
                   ctl_human_bytes((uint64_t)mrd_json_get_num(d, "total_bytes", 0), b, sizeof(b)),
                   mrd_json_get_str(d, "path", "?"), *e ? "  error: " : "", e);
        }
    }
    arr = mrd_json_get(j, "peers");
    printf("\n%-10s %-5s %-9s %9s %8s %10s %-22s %s\n", "PEER", "ID", "STATE", "RTT", "LAST-HB",
           "HIGH-WATER", "REPLICATION", "S3");
    if (!arr || !arr->child)
        printf("(no peers configured)\n");
    for (const mrd_json *p = arr ? arr->child : NULL; p; p = p->next) {
        double age = mrd_json_get_num(p, "last_heartbeat_age_ms", -1);
        const char *state = mrd_json_get_str(p, "state", "?");
        /* The last error explains a peer that is not healthy; once it is
         * healthy again an old error would only confuse. */
        const char *err =
            strcmp(state, "healthy") == 0 ? "" : mrd_json_get_str(p, "last_error", "");
        if (age >= 0)
            snprintf(a, sizeof(a), "%.1fs", age / 1000.0);
        else
            snprintf(a, sizeof(a), "never");
        snprintf(b, sizeof(b), "%.1f ms", mrd_json_get_num(p, "rtt_ms", 0));
        printf("%-10s %-5.0f %-9s %9s %8s %10.0f %-22s %s%s%s\n", mrd_json_get_str(p, "name", "?"),
               mrd_json_get_num(p, "id", 0), state, b, a, mrd_json_get_num(p, "high_water_lsn", 0),
               mrd_json_get_str(p, "replication", "?"), mrd_json_get_str(p, "s3", "-"),
               *err ? "  last error: " : "", err);
    }
    print_cluster(mrd_json_get(mrd_json_get(j, "cluster"), "links"));
    print_gc(mrd_json_get(j, "gc"));
    rc = 0;
out:
    mrd_json_free(j);
    mrd_buf_free(&resp.body);
    return rc;
}

/* POSTs to an admin action; 0, or 1 after printing the error. */
static int
post_action(const ctl_opts *o, const char *path)
{
    ctl_response resp = {0};
    mrd_json *j = NULL;
    int rc = ctl_request_json(o, "POST", path, &resp, &j) == 0 ? 0 : 1;

    mrd_json_free(j);
    mrd_buf_free(&resp.body);
    return rc;
}

/* One line per peer (or only peer), with a progress bar and an ETA for a
 * running pass: versions sent against the digest's estimate, at the rate
 * so far. Returns 1 while any pass runs, 0 when none, -1 on failure. */
static int
resync_print(const ctl_opts *o, const char *only, int tty)
{
    ctl_response resp = {0};
    mrd_json *j = NULL;
    const mrd_json *arr;
    int running = 0;

    if (get_json(o, "/admin/v1/status", &resp, &j) != 0) {
        mrd_buf_free(&resp.body);
        return -1;
    }
    arr = mrd_json_get(mrd_json_get(j, "replication"), "peers");
    printf("%-10s %-8s %6s %10s %14s %18s %-28s %8s  %s\n", "PEER", "RUNNING", "RUNS", "DIFFERING",
           "DIGEST", "SENT/ESTIMATE", "PROGRESS", "ETA", "RESULT");
    for (const mrd_json *p = arr ? arr->child : NULL; p; p = p->next) {
        const mrd_json *ae = mrd_json_get(p, "anti_entropy");
        double sent = mrd_json_get_num(ae, "versions_sent", 0);
        double est = mrd_json_get_num(ae, "versions_estimate", 0);
        double el = mrd_json_get_num(ae, "elapsed_ms", 0) / 1000.0;
        int run = mrd_json_get_num(ae, "running", 0) != 0;
        char counts[40], bar[40] = "", eta[24] = "-", dg[48], kb[32];

        if (only && strcmp(mrd_json_get_str(p, "name", ""), only) != 0)
            continue;
        running |= run;
        snprintf(counts, sizeof(counts), "%.0f/%s%.0f", sent, run ? "~" : "", est);
        /* digest bytes exchanged and requests: tree digests, or the flat
         * leaf arrays of an older peer */
        snprintf(dg, sizeof(dg), "%s/%.0f%s",
                 ctl_human_bytes((uint64_t)mrd_json_get_num(ae, "digest_bytes", 0), kb, sizeof(kb)),
                 mrd_json_get_num(ae, "digest_rounds", 0),
                 mrd_json_get_num(ae, "tree", 0) ? "" : " flat");
        if (run && est > 0) {
            double f = sent >= est ? 1.0 : sent / est;
            int w = 20, k = (int)(f * w);

            if (tty) {
                bar[0] = '[';
                for (int i = 0; i < w; i++)
                    bar[1 + i] = i < k ? '#' : '.';
                snprintf(bar + 1 + w, sizeof(bar) - 1 - (size_t)w, "] %3.0f%%", f * 100);
            } else {
                snprintf(bar, sizeof(bar), "%.0f%%", f * 100);
            }
            if (sent > 0 && el > 0 && sent < est)
                ctl_human_duration((est - sent) / (sent / el), eta, sizeof(eta));
        }
        printf("%-10s %-8s %6.0f %10.0f %14s %18s %-28s %8s  %s\n",
               mrd_json_get_str(p, "name", "?"), run ? "yes" : "no",
               mrd_json_get_num(ae, "runs", 0), mrd_json_get_num(ae, "leaves_differ", 0), dg,
               counts, bar, eta, run ? "" : mrd_json_get_str(ae, "result", ""));
    }
    mrd_json_free(j);
    mrd_buf_free(&resp.body);
    return running;
}

/* resync status [--peer X] [--watch]: with --watch, redraws every second
 * until no pass runs (on a terminal the screen is cleared each time). */
static int
resync_status(const ctl_opts *o, const char *peer, int watch)
{
    int tty = isatty(STDOUT_FILENO), rc;

    for (;;) {
        if (watch && tty)
            printf("\033[H\033[2J");
        rc = resync_print(o, peer, tty);
        fflush(stdout);
        if (rc < 0)
            return 1;
        if (!watch || rc == 0)
            return 0;
        sleep(1);
    }
}

/*
 * meridianctl resync start --peer X [--bandwidth RATE]
 * meridianctl resync status
 * meridianctl bandwidth --peer X RATE      (RATE: bytes/s, e.g. 50MiB; 0 = none)
 */
static int
cmd_resync(const ctl_opts *o, const char *cmd, int argc, char **argv)
{
    int watch = 0;
    const char *peer = NULL, *bw = NULL, *sub = NULL, *bucket = NULL;
    char path[256], rate[24];
    int rc;

    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--peer") == 0 && i + 1 < argc)
            peer = argv[++i];
        else if (strcmp(argv[i], "--bandwidth") == 0 && i + 1 < argc)
            bw = argv[++i];
        else if (strcmp(argv[i], "--watch") == 0)
            watch = 1;
        else if (strcmp(argv[i], "--bucket") == 0 && i + 1 < argc)
            bucket = argv[++i];
        else if (!sub && argv[i][0] != '-')
            sub = argv[i];
        else {
            fprintf(stderr, "meridianctl: %s: unknown argument '%s'\n", cmd, argv[i]);
            return 2;
        }
    }
    if (strcmp(cmd, "bandwidth") == 0) {
        bw = sub;
        sub = "bandwidth";
    }
    if (!sub || (strcmp(sub, "start") != 0 && strcmp(sub, "status") != 0 &&
                 strcmp(sub, "cancel") != 0 && strcmp(sub, "bandwidth") != 0)) {
        fprintf(stderr, "meridianctl: use 'resync start --peer X [--bucket B] [--bandwidth RATE]', "
                        "'resync cancel --peer X', 'resync status' or 'bandwidth --peer X "
                        "RATE'\n");
        return 2;
    }
    if (strcmp(sub, "status") == 0)
        return resync_status(o, peer, watch);
    if (!peer || (strcmp(sub, "bandwidth") == 0 && !bw)) {
        fprintf(stderr, "meridianctl: %s needs --peer NAME%s\n", cmd,
                strcmp(sub, "bandwidth") == 0 ? " and a rate (e.g. 50MiB, 0 for none)" : "");
        return 2;
    }
    if (strlen(peer) >= 64 ||
        strspn(peer, "abcdefghijklmnopqrstuvwxyz0123456789-_.") != strlen(peer)) {
        fprintf(stderr, "meridianctl: '%s' is not a peer name\n", peer);
        return 2;
    }
    if (bucket && (strlen(bucket) < 3 || strlen(bucket) > 63 ||
                   strspn(bucket, "abcdefghijklmnopqrstuvwxyz0123456789-.") != strlen(bucket))) {
        fprintf(stderr, "meridianctl: '%s' is not a bucket name\n", bucket);
        return 2;
    }
    if (bw) {
        /* "100MiB/s" reads as it is meant */
        size_t n = strlen(bw);
        if (n > 2 && n < sizeof(rate) && strcmp(bw + n - 2, "/s") == 0) {
            memcpy(rate, bw, n - 2);
            rate[n - 2] = '\0';
            bw = rate;
        }
        if (strspn(bw, "0123456789KMGiBkmgib") != strlen(bw) || strlen(bw) > 20) {
            fprintf(stderr,
                    "meridianctl: '%s' is not a rate; use bytes per second such as "
                    "50MiB, or 0 for no limit\n",
                    bw);
            return 2;
        }
        snprintf(path, sizeof(path), "/admin/v1/peers/%s/bandwidth?bytes_per_s=%s", peer, bw);
        if ((rc = post_action(o, path)) != 0)
            return rc;
        printf("bandwidth to %s: %s\n", peer, strcmp(bw, "0") == 0 ? "no limit" : bw);
    }
    if (strcmp(sub, "cancel") == 0) {
        snprintf(path, sizeof(path), "/admin/v1/peers/%s/anti-entropy/cancel", peer);
        if ((rc = post_action(o, path)) != 0)
            return rc;
        printf("anti-entropy pass to %s cancelled\n", peer);
    }
    if (strcmp(sub, "start") == 0) {
        snprintf(path, sizeof(path), "/admin/v1/peers/%s/anti-entropy%s%s", peer,
                 bucket ? "?bucket=" : "", bucket ? bucket : "");
        if ((rc = post_action(o, path)) != 0)
            return rc;
        printf("anti-entropy pass to %s%s%s started; see 'meridianctl resync status'\n", peer,
               bucket ? " over bucket " : "", bucket ? bucket : "");
    }
    return 0;
}

static void
print_lag(const mrd_json *j)
{
    const mrd_json *site = mrd_json_get(j, "site");
    const mrd_json *repl = mrd_json_get(j, "replication");
    const mrd_json *arr = repl ? mrd_json_get(repl, "peers") : NULL;
    char a[40], b[32], c[32], d[32];
    int resyncing = 0;

    printf("SITE %s (id %.0f)\n", mrd_json_get_str(site, "name", "?"),
           mrd_json_get_num(site, "id", 0));
    printf("%-10s %-9s %10s %9s %10s %9s %8s %10s %10s %10s %11s  %s\n", "PEER", "STATE", "ACKED",
           "LAG-RECS", "LAG-BYTES", "LAG", "INFLIGHT", "SENT-RECS", "SENT", "APPLIED", "RECV",
           "ANTI-ENTROPY");
    if (!arr || !arr->child)
        printf("(no peers configured)\n");
    for (const mrd_json *p = arr ? arr->child : NULL; p; p = p->next) {
        const mrd_json *tx = mrd_json_get(p, "send"), *rx = mrd_json_get(p, "receive");
        const mrd_json *ae = mrd_json_get(p, "anti_entropy");
        const char *err = mrd_json_get_str(tx, "error", "");
        double lag_ms = mrd_json_get_num(tx, "lag_ms", 0);

        if (lag_ms < 1000)
            snprintf(a, sizeof(a), "%.0f ms", lag_ms);
        else
            ctl_human_duration(lag_ms / 1000.0, a, sizeof(a));
        if (mrd_json_get_num(tx, "needs_resync", 0)) {
            /* the stream's lag; older versions come with the resync */
            strncat(a, "*", sizeof(a) - strlen(a) - 1);
            resyncing = 1;
        }
        ctl_human_bytes((uint64_t)mrd_json_get_num(tx, "lag_bytes", 0), d, sizeof(d));
        if (mrd_json_get_num(tx, "lag_bytes_partial", 0))
            strncat(d, "+", sizeof(d) - strlen(d) - 1);
        printf("%-10s %-9s %10.0f %9.0f %10s %9s %8.0f %10.0f %10s %10.0f %11s  %s%s%s\n",
               mrd_json_get_str(p, "name", "?"), mrd_json_get_str(p, "state", "?"),
               mrd_json_get_num(tx, "acked_lsn", 0), mrd_json_get_num(tx, "lag_records", 0), d, a,
               mrd_json_get_num(tx, "inflight", 0), mrd_json_get_num(tx, "records", 0),
               ctl_human_bytes((uint64_t)mrd_json_get_num(tx, "data_bytes", 0), b, sizeof(b)),
               mrd_json_get_num(rx, "applied_lsn", 0),
               ctl_human_bytes((uint64_t)mrd_json_get_num(rx, "data_bytes", 0), c, sizeof(c)),
               mrd_json_get_num(ae, "running", 0) ? "running" : mrd_json_get_str(ae, "result", ""),
               *err ? "  send error: " : "", err);
    }
    if (resyncing)
        printf("* past WAL retention: LAG is the stream of new writes; a resync pass "
               "(ANTI-ENTROPY) brings the older versions\n");
}

/* meridianctl lag [--watch] [--interval S] [--count N] */
static int
cmd_lag(const ctl_opts *o, int argc, char **argv)
{
    int watch = 0, count = 0, n = 0;
    double interval = 1.0;

    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--watch") == 0) {
            watch = 1;
        } else if (strcmp(argv[i], "--interval") == 0 && i + 1 < argc) {
            interval = atof(argv[++i]);
            if (interval < 0.1 || interval > 3600) {
                fprintf(stderr, "meridianctl: --interval takes seconds, 0.1 to 3600\n");
                return 2;
            }
        } else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc) {
            count = atoi(argv[++i]);
        } else {
            fprintf(stderr, "meridianctl: lag: unknown argument '%s'\n", argv[i]);
            return 2;
        }
    }
    for (;;) {
        ctl_response resp = {0};
        mrd_json *j = NULL;

        if (get_json(o, "/admin/v1/status", &resp, &j) != 0) {
            mrd_buf_free(&resp.body);
            return 1;
        }
        if (o->json) {
            fwrite(resp.body.data, 1, resp.body.len, stdout);
            fputc('\n', stdout);
        } else {
            if (watch && isatty(STDOUT_FILENO))
                printf("\033[H\033[2J");
            print_lag(j);
        }
        fflush(stdout);
        mrd_json_free(j);
        mrd_buf_free(&resp.body);
        if (!watch || (count > 0 && ++n >= count))
            return 0;
        usleep((useconds_t)(interval * 1e6));
        if (!isatty(STDOUT_FILENO))
            printf("\n");
    }
}

static int run_command(const ctl_opts *o, const char *cmd, int argc, char **argv);

int
main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"endpoint", required_argument, NULL, 'e'}, {"token", required_argument, NULL, 't'},
        {"config", required_argument, NULL, 'c'},   {"json", no_argument, NULL, 'j'},
        {"timeout", required_argument, NULL, 'T'},  {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},        {NULL, 0, NULL, 0}};
    ctl_opts o;
    const char *endpoint = getenv("MERIDIAN_ENDPOINT"), *token = getenv("MERIDIAN_TOKEN");
    const char *config = getenv("MERIDIAN_CONFIG"), *cmd;
    int opt, rc, have_endpoint_flag = 0, have_token_flag = 0;

    memset(&o, 0, sizeof(o));
    o.timeout_ms = 5000;
    while ((opt = getopt_long(argc, argv, "+e:t:c:jT:hV", opts, NULL)) != -1) {
        switch (opt) {
        case 'e':
            endpoint = optarg;
            have_endpoint_flag = 1;
            break;
        case 't':
            token = optarg;
            have_token_flag = 1;
            break;
        case 'c':
            config = optarg;
            break;
        case 'j':
            o.json = 1;
            break;
        case 'T':
            o.timeout_ms = atoi(optarg) > 0 ? atoi(optarg) : 5000;
            break;
        case 'V':
            printf("meridianctl %s\n", MRD_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    cmd = argv[optind];
    if (strcmp(cmd, "help") == 0) {
        if (optind + 1 >= argc) {
            usage(stdout);
            return 0;
        }
        return command_help(argv[optind + 1], stdout);
    }
    for (int i = optind + 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return command_help(cmd, stdout);
    /* Flags beat the config file, which beats the environment. */
    if (config && load_from_config(config, &o, !have_endpoint_flag, !have_token_flag) != 0)
        return 1;
    if (endpoint && (have_endpoint_flag || !config) && parse_endpoint(endpoint, &o) != 0) {
        fprintf(stderr,
                "meridianctl: '%s' is not an endpoint; use host:port, e.g. "
                "127.0.0.1:9201\n",
                endpoint);
        return 2;
    }
    if (token && (have_token_flag || !config))
        snprintf(o.token, sizeof(o.token), "%s", token);
    if (!o.port) {
        fprintf(stderr, "meridianctl: no admin endpoint; pass --endpoint HOST:PORT or --config "
                        "SITE.ini (or set MERIDIAN_ENDPOINT)\n");
        return 2;
    }
    rc = run_command(&o, cmd, argc - optind - 1, argv + optind + 1);
    return rc == 1 ? ctl_failure_exit() : rc;
}

static int
run_command(const ctl_opts *o, const char *cmd, int argc, char **argv)
{
    if (strcmp(cmd, "status") == 0)
        return cmd_status(o);
    if (strcmp(cmd, "lag") == 0)
        return cmd_lag(o, argc, argv);
    if (strcmp(cmd, "resync") == 0 || strcmp(cmd, "bandwidth") == 0)
        return cmd_resync(o, cmd, argc, argv);
    if (strcmp(cmd, "conflicts") == 0)
        return ctl_cmd_conflicts(o, argc, argv);
    if (strcmp(cmd, "object") == 0)
        return ctl_cmd_object(o, argc, argv);
    if (strcmp(cmd, "failed") == 0)
        return ctl_cmd_failed(o, argc, argv);
    if (strcmp(cmd, "drive") == 0)
        return ctl_cmd_drive(o, argc, argv);
    if (strcmp(cmd, "failover") == 0)
        return ctl_cmd_failover(o, argc, argv);
    if (strcmp(cmd, "site") == 0)
        return ctl_cmd_site(o, argc, argv);
    fprintf(stderr, "meridianctl: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
