/*
 * ctl_ops.c - meridianctl's data-plane commands: conflicts, object status,
 * drives and heal.
 *
 *   conflicts list [--bucket B] [--key K] [--limit N]
 *   conflicts show ID
 *   failed [--peer P] [--bucket B] [--limit N]
 *   object status BUCKET KEY
 *   drive list
 *   drive heal [--queue-only] [--no-wait] [--interval S]
 *   failover [show|drain|undrain]
 *
 * Each reads the admin API of the site given by --endpoint (or --config),
 * prints a table, or with --json the API's JSON unchanged (object status,
 * which asks several sites, prints one JSON document that holds each
 * site's answer).
 *
 * object status asks every site itself rather than trusting one site's
 * view: the local site's /admin/v1/status names the peers and, when their
 * [peer.X] section has `admin = host:port`, where their admin APIs are; the
 * same token is sent to each (the sites of a cluster share one for this).
 * A site that does not answer is shown with the reason, never left out, and
 * the command then exits 1 after printing everything it learnt.
 */
#include "ctl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_SITES (MRD_MAX_PEERS + 1)

static void
age_of(double ms, char *out, size_t outsz)
{
    struct timespec ts;
    double now_ms;

    clock_gettime(CLOCK_REALTIME, &ts);
    now_ms = (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
    if (ms <= 0) {
        snprintf(out, outsz, "-");
        return;
    }
    ctl_human_duration(now_ms > ms ? (now_ms - ms) / 1e3 : 0, out, outsz);
    strncat(out, " ago", outsz - strlen(out) - 1);
}

static void
utc_time(double ms, char *out, size_t outsz)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(out, outsz, "%Y-%m-%d %H:%M:%S", &tm);
    snprintf(out + strlen(out), outsz - strlen(out), ".%03dZ", (int)((uint64_t)ms % 1000));
}

/* "vid@site" of a version object. */
static const char *
vid_at(const mrd_json *v, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s@%s", mrd_json_get_str(v, "version_id", "?"),
             mrd_json_get_str(v, "origin_name", "?"));
    return out;
}

/* ---- conflicts ----------------------------------------------------------- */

/* Appends "&name=value" (value percent-encoded) when value is given. */
static void
query_add(mrd_buf *path, const char *name, const char *value)
{
    if (!value)
        return;
    mrd_buf_appendf(path, "&%s=", name);
    ctl_url_encode(path, value);
}

/* GET what?limit=N&n1=v1&n2=v2 (a filter is left out when its value is
 * NULL) for a listing. Returns 1 when the caller prints a table from *j;
 * else 0, with *rc 1 when the request failed or 0 once --json printed the
 * answer. */
static int
list_fetch(const ctl_opts *o, const char *what, const char *limit, const char *n1, const char *v1,
           const char *n2, const char *v2, ctl_response *resp, mrd_json **j, int *rc)
{
    mrd_buf path = {0};

    mrd_buf_appendf(&path, "%s?limit=%s", what, limit ? limit : "50");
    query_add(&path, n1, v1);
    query_add(&path, n2, v2);
    *rc = ctl_request_json(o, "GET", path.data, resp, j) != 0;
    mrd_buf_free(&path);
    if (*rc == 0 && o->json)
        ctl_print_body(resp);
    return *rc == 0 && !o->json;
}

/* A --limit value: absent, or 1..1000 (else says so). */
static int
limit_ok(const char *limit)
{
    if (limit &&
        (strspn(limit, "0123456789") != strlen(limit) || atoi(limit) < 1 || atoi(limit) > 1000)) {
        fprintf(stderr, "meridianctl: --limit takes 1 to 1000\n");
        return 0;
    }
    return 1;
}

static void
print_version_detail(const char *title, const mrd_json *v)
{
    char t[64], sz[32];

    utc_time(mrd_json_get_num(v, "hlc_ms", 0), t, sizeof(t));
    printf("%s\n", title);
    printf("  version   %s%s\n", mrd_json_get_str(v, "version_id", "?"),
           mrd_json_get_num(v, "delete_marker", 0) ? "  (delete marker)" : "");
    printf("  origin    site %s (id %.0f)\n", mrd_json_get_str(v, "origin_name", "?"),
           mrd_json_get_num(v, "origin", 0));
    printf("  written   %s  (hlc %s)\n", t, mrd_json_get_str(v, "hlc_text", "?"));
    printf("  vv        {%s}\n", mrd_json_get_str(v, "vv_text", ""));
    printf("  etag      %s   size %s\n", mrd_json_get_str(v, "etag", ""),
           ctl_human_bytes((uint64_t)mrd_json_get_num(v, "size", 0), sz, sizeof(sz)));
    printf("  arrived   %s\n",
           mrd_json_get_num(v, "incoming", 0) ? "with this decision" : "before (already held)");
}

static const char *
kept_text(const mrd_json *c)
{
    const char *kept = mrd_json_get_str(mrd_json_get(c, "loser"), "kept", "?");
    int present = mrd_json_get_num(c, "loser_present", 0) != 0;

    if (!present)
        return "gone (purged or overwritten)";
    if (strcmp(kept, "hidden") == 0)
        return "hidden conflict version";
    if (strcmp(kept, "listed") == 0)
        return "listed conflict version";
    return kept;
}

static int
conflicts_show(const ctl_opts *o, const char *id)
{
    ctl_response resp = {0};
    mrd_json *c = NULL;
    const mrd_json *loser;
    char path[96], t[64];
    int rc = 1;

    if (strspn(id, "0123456789") != strlen(id) || strlen(id) > 19 || atoll(id) <= 0) {
        fprintf(stderr,
                "meridianctl: '%s' is not a conflict id; ids are the numbers "
                "'meridianctl conflicts list' shows\n",
                id);
        return 2;
    }
    snprintf(path, sizeof(path), "/admin/v1/conflicts/%s", id);
    if (ctl_request_json(o, "GET", path, &resp, &c) != 0)
        goto out;
    rc = 0;
    if (o->json) {
        ctl_print_body(&resp);
        goto out;
    }
    loser = mrd_json_get(c, "loser");
    utc_time(mrd_json_get_num(c, "detected_ms", 0), t, sizeof(t));
    printf("CONFLICT %.0f at site %s\n", mrd_json_get_num(c, "id", 0),
           mrd_json_get_str(c, "site", "?"));
    printf("key       %s/%s\n", mrd_json_get_str(c, "bucket", "?"),
           mrd_json_get_str(c, "key", "?"));
    printf("settled   %s, on a %s delivery from site %s\n", t, mrd_json_get_str(c, "delivery", "?"),
           mrd_json_get_str(c, "from_site", "?"));
    printf("rule      concurrent version vectors: the larger (HLC, origin, version id) wins\n\n");
    print_version_detail("WINNER (current version)", mrd_json_get(c, "winner"));
    printf("\n");
    print_version_detail("LOSER", loser);
    printf("  kept as   %s", kept_text(c));
    if (mrd_json_get_num(c, "loser_present", 0))
        printf(" in site %s's index (flag conflict)\n  fetch it  aws s3api get-object "
               "--bucket %s --key %s --version-id %s FILE\n",
               mrd_json_get_str(c, "site", "?"), mrd_json_get_str(c, "bucket", "?"),
               mrd_json_get_str(c, "key", "?"), mrd_json_get_str(loser, "version_id", "?"));
    else
        printf("\n");
out:
    mrd_json_free(c);
    mrd_buf_free(&resp.body);
    return rc;
}

static int
conflicts_list(const ctl_opts *o, const char *bucket, const char *key, const char *limit)
{
    ctl_response resp = {0};
    mrd_json *j = NULL;
    const mrd_json *arr;
    int rc = 1, n = 0;

    if (!list_fetch(o, "/admin/v1/conflicts", limit, "bucket", bucket, "key", key, &resp, &j, &rc))
        goto out;
    arr = mrd_json_get(j, "conflicts");
    printf("SITE %s: %.0f conflict%s settled here since the index was created (the log keeps "
           "the last %.0f)\n\n",
           mrd_json_get_str(j, "site", "?"), mrd_json_get_num(j, "total", 0),
           mrd_json_get_num(j, "total", 0) == 1 ? "" : "s", mrd_json_get_num(j, "capacity", 0));
    printf("%-5s %-12s %-28s %-32s %-32s %s\n", "ID", "SETTLED", "BUCKET/KEY", "WINNER", "LOSER",
           "LOSER KEPT AS");
    for (const mrd_json *c = arr ? arr->child : NULL; c; c = c->next, n++) {
        char age[48], bk[1024], w[96], l[96];
        age_of(mrd_json_get_num(c, "detected_ms", 0), age, sizeof(age));
        snprintf(bk, sizeof(bk), "%s/%s", mrd_json_get_str(c, "bucket", "?"),
                 mrd_json_get_str(c, "key", "?"));
        printf("%-5.0f %-12s %-28s %-32s %-32s %s\n", mrd_json_get_num(c, "id", 0), age, bk,
               vid_at(mrd_json_get(c, "winner"), w, sizeof(w)),
               vid_at(mrd_json_get(c, "loser"), l, sizeof(l)), kept_text(c));
    }
    if (n == 0)
        printf("(no conflicts%s)\n", bucket || key ? " match" : "");
    else
        printf("\n'meridianctl conflicts show ID' for the version vectors and how to fetch a "
               "loser\n");
out:
    mrd_json_free(j);
    mrd_buf_free(&resp.body);
    return rc;
}

int
ctl_cmd_conflicts(const ctl_opts *o, int argc, char **argv)
{
    const char *sub = argc > 0 ? argv[0] : NULL, *bucket = NULL, *key = NULL, *limit = NULL;
    const char *id = NULL;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--bucket") == 0 && i + 1 < argc)
            bucket = argv[++i];
        else if (strcmp(argv[i], "--key") == 0 && i + 1 < argc)
            key = argv[++i];
        else if (strcmp(argv[i], "--limit") == 0 && i + 1 < argc)
            limit = argv[++i];
        else if (!id && argv[i][0] != '-')
            id = argv[i];
        else {
            fprintf(stderr, "meridianctl: conflicts: unknown argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (sub && strcmp(sub, "list") == 0 && !id) {
        if (!limit_ok(limit))
            return 2;
        return conflicts_list(o, bucket, key, limit);
    }
    if (sub && strcmp(sub, "show") == 0 && id && !bucket && !key && !limit)
        return conflicts_show(o, id);
    fprintf(stderr, "meridianctl: use 'conflicts list [--bucket B] [--key K] [--limit N]' or "
                    "'conflicts show ID'\n");
    return 2;
}

/* ---- FAILED replication -------------------------------------------------- */

int
ctl_cmd_failed(const ctl_opts *o, int argc, char **argv)
{
    const char *peer = NULL, *bucket = NULL, *limit = NULL;
    ctl_response resp = {0};
    mrd_json *j = NULL;
    const mrd_json *arr, *peers;
    int rc = 1, n = 0;

    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--peer") == 0 && i + 1 < argc)
            peer = argv[++i];
        else if (strcmp(argv[i], "--bucket") == 0 && i + 1 < argc)
            bucket = argv[++i];
        else if (strcmp(argv[i], "--limit") == 0 && i + 1 < argc)
            limit = argv[++i];
        else {
            fprintf(stderr,
                    "meridianctl: failed: unknown argument '%s'; use 'failed [--peer P] "
                    "[--bucket B] [--limit N]'\n",
                    argv[i]);
            return 2;
        }
    }
    if (!limit_ok(limit))
        return 2;
    if (!list_fetch(o, "/admin/v1/replication/failed", limit, "peer", peer, "bucket", bucket, &resp,
                    &j, &rc))
        goto out;
    peers = mrd_json_get(j, "peers");
    printf("SITE %s: writes a peer has not applied %.0f s after they were made are FAILED\n",
           mrd_json_get_str(j, "site", "?"), mrd_json_get_num(j, "failed_after_s", 0));
    for (const mrd_json *p = peers ? peers->child : NULL; p; p = p->next) {
        const char *err = mrd_json_get_str(p, "error", "");
        int partial = mrd_json_get_num(p, "failed_unknown", 0) != 0;
        printf("  peer %-12s %6.0f FAILED  (acked LSN %.0f)%s%s%s\n",
               mrd_json_get_str(p, "peer", "?"), mrd_json_get_num(p, "failed_records", 0),
               mrd_json_get_num(p, "acked_lsn", 0),
               partial ? "  partial: being resynced, older writes it may lack are not listed" : "",
               *err ? "  " : "", err);
    }
    printf("\n%-10s %-16s %-40s %-26s %10s %8s\n", "PEER", "KIND", "BUCKET/KEY", "VERSION", "SIZE",
           "AGE");
    arr = mrd_json_get(j, "failed");
    for (const mrd_json *e = arr ? arr->child : NULL; e; e = e->next, n++) {
        char bk[1100], sz[32], age[32];
        const char *key = mrd_json_get_str(e, "key", "");
        snprintf(bk, sizeof(bk), "%s%s%s", mrd_json_get_str(e, "bucket", "?"), *key ? "/" : "",
                 key);
        printf("%-10s %-16s %-40s %-26s %10s %8s\n", mrd_json_get_str(e, "peer", "?"),
               mrd_json_get_str(e, "kind", "?"), bk, mrd_json_get_str(e, "version_id", ""),
               ctl_human_bytes((uint64_t)mrd_json_get_num(e, "size", 0), sz, sizeof(sz)),
               ctl_human_duration(mrd_json_get_num(e, "age_ms", 0) / 1000.0, age, sizeof(age)));
    }
    if (n == 0)
        printf("(none: every peer has applied every write older than the deadline)\n");
    else if (mrd_json_get_num(j, "truncated", 0))
        printf("(more: raise --limit, or narrow with --peer / --bucket)\n");
out:
    mrd_json_free(j);
    mrd_buf_free(&resp.body);
    return rc;
}

/* ---- object status ------------------------------------------------------- */

typedef struct site_answer {
    char name[MRD_NAME_MAX];
    char addr[300];
    char err[512];
    int ok;
    ctl_response resp;
    mrd_json *j;
} site_answer;

static void
ask_site(const ctl_opts *base, site_answer *s, const char *addr, const char *path)
{
    ctl_opts o = *base;
    const char *colon = strrchr(addr, ':');

    snprintf(s->addr, sizeof(s->addr), "%s", addr);
    if (!colon || colon == addr || (size_t)(colon - addr) >= sizeof(o.host)) {
        snprintf(s->err, sizeof(s->err), "bad admin address '%s'", addr);
        return;
    }
    memcpy(o.host, addr[0] == '[' ? addr + 1 : addr, (size_t)(colon - addr));
    o.host[colon - addr - (addr[0] == '[' ? 2 : 0)] = '\0';
    o.port = (uint16_t)atoi(colon + 1);
    s->ok = ctl_call(&o, "GET", path, &s->resp, &s->j, s->err, sizeof(s->err)) == 0;
}

/* The current version id at site s, "" when the key is absent there. */
static const char *
current_vid(const site_answer *s)
{
    const mrd_json *cur = mrd_json_get(s->j, "current");

    return cur && cur->type == MRD_JSON_OBJECT ? mrd_json_get_str(cur, "version_id", "?") : "";
}

/* 1 if every site that answered holds the same current version (or none). */
static int
same_current(const site_answer *sites, int n)
{
    const char *first = NULL;

    for (int i = 0; i < n; i++) {
        if (!sites[i].ok)
            continue;
        if (first && strcmp(first, current_vid(&sites[i])) != 0)
            return 0;
        first = current_vid(&sites[i]);
    }
    return 1;
}

static void
print_object_table(site_answer *sites, int n, const char *bucket, const char *key)
{
    const site_answer *origin = NULL;
    int answered = 0;

    printf("OBJECT %s/%s\n\n", bucket, key);
    printf("%-8s %-12s %-26s %-8s %-34s %10s  %s\n", "SITE", "STATE", "CURRENT VERSION", "ORIGIN",
           "ETAG", "SIZE", "VERSION VECTOR");
    for (int i = 0; i < n; i++) {
        const mrd_json *cur;
        char sz[32];
        if (!sites[i].ok) {
            printf("%-8s %-12s %s\n", sites[i].name, "NO ANSWER", sites[i].err);
            continue;
        }
        answered++;
        cur = mrd_json_get(sites[i].j, "current");
        if (!cur || cur->type != MRD_JSON_OBJECT) {
            printf("%-8s %-12s %s\n", sites[i].name, "absent",
                   mrd_json_get_num(sites[i].j, "bucket_exists", 0) ? "(no such key here)"
                                                                    : "(no such bucket here)");
            continue;
        }
        {
            const char *vid = mrd_json_get_str(cur, "version_id", "?");
            int marker = mrd_json_get_num(cur, "delete_marker", 0) != 0;
            if (mrd_json_get_num(cur, "origin", 0) == mrd_json_get_num(sites[i].j, "site_id", -1))
                origin = &sites[i];
            printf("%-8s %-12s %-26s %-8s %-34s %10s  {%s}\n", sites[i].name,
                   marker ? "deleted" : "present", vid, mrd_json_get_str(cur, "origin_name", "?"),
                   marker ? "-" : mrd_json_get_str(cur, "etag", ""),
                   ctl_human_bytes((uint64_t)mrd_json_get_num(cur, "size", 0), sz, sizeof(sz)),
                   mrd_json_get_str(cur, "vv_text", ""));
        }
    }
    /* other versions each site keeps (conflict losers, older versions) */
    for (int i = 0; i < n; i++) {
        const mrd_json *arr = sites[i].ok ? mrd_json_get(sites[i].j, "versions") : NULL;
        for (const mrd_json *v = arr ? arr->child : NULL; v; v = v->next) {
            const char *role = mrd_json_get_str(v, "role", "");
            if (strcmp(role, "current") == 0)
                continue;
            printf("%-8s   also keeps %s %s from %s {%s}\n", sites[i].name, role,
                   mrd_json_get_str(v, "version_id", "?"), mrd_json_get_str(v, "origin_name", "?"),
                   mrd_json_get_str(v, "vv_text", ""));
        }
    }

    printf("\nREPLICATION of the current version at its origin");
    if (origin) {
        const mrd_json *arr = mrd_json_get(origin->j, "replication");
        printf(" (site %s)\n", origin->name);
        printf("%-8s %-10s %-10s %s\n", "PEER", "STATUS", "LINK", "LAG-RECS");
        for (const mrd_json *p = arr ? arr->child : NULL; p; p = p->next)
            printf("%-8s %-10s %-10s %.0f\n", mrd_json_get_str(p, "peer", "?"),
                   mrd_json_get_str(p, "status", "?"), mrd_json_get_str(p, "link", "?"),
                   mrd_json_get_num(p, "lag_records", 0));
    } else {
        printf("\n(unknown: the origin site of the current version did not answer, or no site "
               "holds the key)\n");
    }
    if (answered == n && same_current(sites, n) && !*current_vid(&sites[0]))
        printf("\nconverged: the key is absent at every site\n");
    else if (answered == n && same_current(sites, n))
        printf("\nconverged: every site has the same current version\n");
    else if (answered < n)
        printf("\nNOT CONFIRMED: %d of %d sites answered\n", answered, n);
    else
        printf("\nNOT CONVERGED: the sites hold different current versions (replication "
               "pending, or a partition)\n");
}

static int
object_status(const ctl_opts *o, const char *bucket, const char *key)
{
    ctl_response sresp = {0};
    mrd_json *st = NULL;
    site_answer *sites = calloc(MAX_SITES, sizeof(*sites));
    const mrd_json *peers;
    mrd_buf path = {0};
    char self[300];
    int n = 0, rc = 1, all_ok = 1;

    if (!sites)
        return 1;
    if (ctl_request_json(o, "GET", "/admin/v1/status", &sresp, &st) != 0)
        goto out;
    mrd_buf_appendf(&path, "/admin/v1/object?bucket=");
    ctl_url_encode(&path, bucket);
    mrd_buf_appendf(&path, "&key=");
    ctl_url_encode(&path, key);

    snprintf(sites[0].name, sizeof(sites[0].name), "%s",
             mrd_json_get_str(mrd_json_get(st, "site"), "name", "?"));
    snprintf(self, sizeof(self), "%s:%u", o->host, o->port);
    if (strchr(o->host, ':'))
        snprintf(self, sizeof(self), "[%s]:%u", o->host, o->port);
    ask_site(o, &sites[n++], self, path.data);
    if (!sites[0].ok) { /* the site we were pointed at: a plain failure */
        fprintf(stderr, "meridianctl: %s\n", sites[0].err);
        goto out;
    }
    peers = mrd_json_get(st, "peers");
    for (const mrd_json *p = peers ? peers->child : NULL; p && n < MAX_SITES; p = p->next) {
        site_answer *s = &sites[n++];
        const char *addr = mrd_json_get_str(p, "admin", NULL);
        snprintf(s->name, sizeof(s->name), "%s", mrd_json_get_str(p, "name", "?"));
        if (!addr)
            snprintf(s->err, sizeof(s->err),
                     "no admin address for this peer; add 'admin = HOST:PORT' to its [peer.%s] "
                     "section",
                     s->name);
        else
            ask_site(o, s, addr, path.data);
    }
    for (int i = 0; i < n; i++)
        all_ok = all_ok && sites[i].ok;
    if (o->json) {
        printf("{\"bucket\":");
        {
            mrd_buf b = {0};
            mrd_json_w w;
            mrd_json_w_init(&w, &b);
            mrd_json_w_str(&w, bucket);
            printf("%.*s,\"key\":", (int)b.len, b.data);
            mrd_buf_reset(&b);
            mrd_json_w_init(&w, &b);
            mrd_json_w_str(&w, key);
            printf("%.*s,\"sites\":[", (int)b.len, b.data);
            for (int i = 0; i < n; i++) {
                printf("%s{\"site\":\"%s\",\"answered\":%s,", i ? "," : "", sites[i].name,
                       sites[i].ok ? "true" : "false");
                if (sites[i].ok) {
                    printf("\"object\":%.*s}", (int)sites[i].resp.body.len,
                           sites[i].resp.body.data);
                } else {
                    mrd_buf_reset(&b);
                    mrd_json_w_init(&w, &b);
                    mrd_json_w_str(&w, sites[i].err);
                    printf("\"error\":%.*s}", (int)b.len, b.data);
                }
            }
            mrd_buf_free(&b);
        }
        printf("],\"converged\":%s}\n", all_ok && same_current(sites, n) ? "true" : "false");
    } else {
        print_object_table(sites, n, bucket, key);
    }
    rc = all_ok ? 0 : 1;
out:
    for (int i = 0; i < MAX_SITES; i++) {
        mrd_json_free(sites[i].j);
        mrd_buf_free(&sites[i].resp.body);
    }
    free(sites);
    mrd_json_free(st);
    mrd_buf_free(&sresp.body);
    mrd_buf_free(&path);
    return rc;
}

int
ctl_cmd_object(const ctl_opts *o, int argc, char **argv)
{
    if (argc != 3 || strcmp(argv[0], "status") != 0 || !argv[1][0] || !argv[2][0]) {
        fprintf(stderr, "meridianctl: use 'object status BUCKET KEY'\n");
        return 2;
    }
    return object_status(o, argv[1], argv[2]);
}

/* ---- drives -------------------------------------------------------------- */

static const char *
heal_line(const mrd_json *h, char *out, size_t outsz)
{
    snprintf(out, outsz,
             "heal: %s, %.0f of %.0f objects checked, %.0f shards rebuilt, %.0f errors, %.0f "
             "queued",
             mrd_json_get_num(h, "running", 0) ? "RUNNING" : "idle",
             mrd_json_get_num(h, "objects_checked", 0), mrd_json_get_num(h, "objects_total", 0),
             mrd_json_get_num(h, "shards_rebuilt", 0), mrd_json_get_num(h, "errors", 0),
             mrd_json_get_num(h, "queue", 0));
    return out;
}

static void
print_drives(const mrd_json *j)
{
    const mrd_json *arr = mrd_json_get(j, "drives");
    char line[256];

    printf("SITE %s: %.0f drives online, %.0f needed to write\n\n",
           mrd_json_get_str(j, "site", "?"), mrd_json_get_num(j, "online", 0),
           mrd_json_get_num(j, "need", 0));
    printf("%-5s %-7s %-11s %-11s %7s %7s %7s  %s\n", "DRIVE", "STATE", "FREE", "TOTAL", "READ-E",
           "WRITE-E", "CRC-E", "PATH");
    for (const mrd_json *d = arr ? arr->child : NULL; d; d = d->next) {
        char f[32], t[32];
        const char *e = mrd_json_get_str(d, "error", "");
        printf("%-5.0f %-7s %-11s %-11s %7.0f %7.0f %7.0f  %s%s%s\n",
               mrd_json_get_num(d, "index", 0), mrd_json_get_str(d, "state", "?"),
               ctl_human_bytes((uint64_t)mrd_json_get_num(d, "free_bytes", 0), f, sizeof(f)),
               ctl_human_bytes((uint64_t)mrd_json_get_num(d, "total_bytes", 0), t, sizeof(t)),
               mrd_json_get_num(d, "read_errors", 0), mrd_json_get_num(d, "write_errors", 0),
               mrd_json_get_num(d, "checksum_errors", 0), mrd_json_get_str(d, "path", "?"),
               *e ? "  error: " : "", e);
    }
    printf("\n%s\n", heal_line(mrd_json_get(j, "heal"), line, sizeof(line)));
}

static int
drive_heal(const ctl_opts *o, int all, int wait, double interval)
{
    ctl_response resp = {0};
    mrd_json *j = NULL;
    int tty = isatty(STDOUT_FILENO) && !o->json;

    if (ctl_request_json(o, "POST", all ? "/admin/v1/drives/heal" : "/admin/v1/drives/heal?all=0",
                         &resp, &j) != 0) {
        mrd_buf_free(&resp.body);
        return 1;
    }
    if (!o->json)
        printf("heal started (%s)\n", all ? "every version is checked" : "queued objects only");
    for (;;) {
        const mrd_json *h = mrd_json_get(j, "heal");
        int running = mrd_json_get_num(h, "running", 0) != 0;
        char line[256];
        if (o->json)
            ctl_print_body(&resp);
        else if (tty) /* one line, rewritten in place */
            printf("\r\033[K%s", heal_line(h, line, sizeof(line)));
        else if (!running || !wait)
            printf("%s\n", heal_line(h, line, sizeof(line)));
        fflush(stdout);
        mrd_json_free(j);
        j = NULL;
        mrd_buf_free(&resp.body);
        if (!running || !wait)
            break;
        usleep((useconds_t)(interval * 1e6));
        if (ctl_request_json(o, "GET", "/admin/v1/drives", &resp, &j) != 0) {
            mrd_buf_free(&resp.body);
            return 1;
        }
    }
    if (tty)
        printf("\n");
    return 0;
}

int
ctl_cmd_drive(const ctl_opts *o, int argc, char **argv)
{
    const char *sub = argc > 0 ? argv[0] : "";
    int all = 1, wait = 1;
    double interval = 0.5;

    for (int i = 1; i < argc; i++) {
        if (strcmp(sub, "heal") == 0 && strcmp(argv[i], "--queue-only") == 0)
            all = 0;
        else if (strcmp(sub, "heal") == 0 && strcmp(argv[i], "--no-wait") == 0)
            wait = 0;
        else if (strcmp(sub, "heal") == 0 && strcmp(argv[i], "--interval") == 0 && i + 1 < argc &&
                 (interval = atof(argv[++i])) >= 0.1 && interval <= 3600)
            continue;
        else {
            fprintf(stderr, "meridianctl: drive %s: bad argument '%s'\n", sub, argv[i]);
            return 2;
        }
    }
    if (strcmp(sub, "list") == 0) {
        ctl_response resp = {0};
        mrd_json *j = NULL;
        int rc = 1;
        if (ctl_request_json(o, "GET", "/admin/v1/drives", &resp, &j) == 0) {
            if (o->json)
                ctl_print_body(&resp);
            else
                print_drives(j);
            rc = 0;
        }
        mrd_json_free(j);
        mrd_buf_free(&resp.body);
        return rc;
    }
    if (strcmp(sub, "heal") == 0)
        return drive_heal(o, all, wait, interval);
    fprintf(stderr, "meridianctl: use 'drive list' or 'drive heal [--queue-only] [--no-wait]'\n");
    return 2;
}

/* ---- failover ------------------------------------------------------------ */

static void
print_routing(const mrd_json *st)
{
    const mrd_json *rt = mrd_json_get(st, "routing"), *px = mrd_json_get(rt, "proxied");
    const mrd_json *behind = mrd_json_get(rt, "behind"), *near = mrd_json_get(rt, "nearest_peer");
    mrd_buf bl = {0};

    for (const mrd_json *b = behind ? behind->child : NULL; b; b = b->next)
        mrd_buf_appendf(&bl, "%s%s", bl.len ? "," : "", b->str ? b->str : "?");
    printf("SITE %s: %s\n", mrd_json_get_str(mrd_json_get(st, "site"), "name", "?"),
           mrd_json_get_num(rt, "drained", 0) ? "DRAINED (S3 requests go to a peer)"
                                              : "serving locally");
    printf("reads           %s\n", mrd_json_get_str(rt, "reads", "?"));
    printf("writes          %s   (write_failover = %s)\n", mrd_json_get_str(rt, "writes", "?"),
           mrd_json_get_str(rt, "write_failover", "?"));
    printf("nearest peer    %s\n",
           near && near->type == MRD_JSON_STRING ? near->str : "(none healthy)");
    printf("peers ahead     %s\n", bl.len ? bl.data : "(none)");
    printf(
        "proxied         behind %.0f, store %.0f, token %.0f, drain %.0f, write %.0f; %.0f open, "
        "%.0f errors, %.0f retries\n",
        mrd_json_get_num(px, "behind", 0), mrd_json_get_num(px, "store", 0),
        mrd_json_get_num(px, "token", 0), mrd_json_get_num(px, "drain", 0),
        mrd_json_get_num(px, "write", 0), mrd_json_get_num(rt, "proxies_open", 0),
        mrd_json_get_num(rt, "proxy_errors", 0), mrd_json_get_num(rt, "proxy_retries", 0));
    printf("served for peers %.0f, writes refused %.0f, drain changes %.0f\n",
           mrd_json_get_num(rt, "served_for_peers", 0), mrd_json_get_num(rt, "writes_refused", 0),
           mrd_json_get_num(rt, "transitions", 0));
    mrd_buf_free(&bl);
}

int
ctl_cmd_failover(const ctl_opts *o, int argc, char **argv)
{
    const char *sub = argc > 0 ? argv[0] : "show";
    ctl_response resp = {0};
    mrd_json *j = NULL;
    int rc = 1;

    if (argc > 1 ||
        (strcmp(sub, "show") != 0 && strcmp(sub, "drain") != 0 && strcmp(sub, "undrain") != 0)) {
        fprintf(stderr, "meridianctl: use 'failover [show]', 'failover drain' or "
                        "'failover undrain'\n");
        return 2;
    }
    if (strcmp(sub, "show") != 0) {
        if (ctl_request_json(o, "POST",
                             strcmp(sub, "drain") == 0 ? "/admin/v1/failover/drain"
                                                       : "/admin/v1/failover/undrain",
                             &resp, &j) != 0)
            goto out;
        if (!o->json)
            printf("%s\n\n", strcmp(sub, "drain") == 0
                                 ? "drained: S3 requests to this site now go to the nearest "
                                   "healthy peer"
                                 : "undrained: this site serves S3 requests itself again");
        mrd_json_free(j);
        j = NULL;
        mrd_buf_free(&resp.body);
    }
    if (ctl_request_json(o, "GET", "/admin/v1/status", &resp, &j) != 0)
        goto out;
    if (!mrd_json_get(j, "routing")) {
        fprintf(stderr, "meridianctl: this site reports no routing state (an older meridiand?)\n");
        goto out;
    }
    if (o->json) {
        ctl_print_body(&resp); /* the status document, as 'lag --json': see .routing */
    } else {
        print_routing(j);
    }
    rc = 0;
out:
    mrd_json_free(j);
    mrd_buf_free(&resp.body);
    return rc;
}
