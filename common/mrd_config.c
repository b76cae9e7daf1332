/*
 * mrd_config.c - the per-site INI configuration.
 *
 * Format (docs/configuration.md is the user's reference):
 *
 *   file    = *(line "\n")
 *   line    = blank / comment / section / entry
 *   comment = *WSP (";" / "#") *CHAR
 *   section = "[" name "]"            ; site, listen, s3, store, wal,
 *                                      ; replication, admin, log, peer.<name>,
 *                                      ; user.<name>
 *   entry   = key *WSP "=" *WSP value  ; value runs to end of line, trimmed
 *
 * The parser is our own rather than libinih because every error must name
 * the file, line and key, lines have no length cap (data_dirs lists can be
 * long), and duplicate keys must be rejected, not silently overwritten.
 *
 * Checking happens in two passes. While reading, each value is parsed and
 * range-checked where it stands, so the message carries its line. After the
 * whole file is read, cross-field rules run (required keys, k+m against the
 * drive count, unique peer ids, ...); those name the key and use the line
 * where it was set, or 0 when it is missing.
 */
#include "common.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

typedef struct cfg_ctx {
    mrd_config *c;
    const char *name;
    char *err;
    size_t errsz;
    int line;
    char section[MRD_NAME_MAX + 16];
    char base_dir[PATH_MAX]; /* for relative data dirs */
    /* line where each singleton key was set, for duplicate/range messages */
    int seen_site_id, seen_site_name, seen_listen_s3, seen_listen_repl, seen_listen_admin;
    int seen_meta, seen_k, seen_m, seen_token;
    int seen_s3_tls, seen_repl_tls_cert, seen_repl_tls_key, seen_repl_tls_ca;
    int data_dirs_line;
    mrd_peer_conf *peer; /* current [peer.x] */
    mrd_user_conf *user; /* current [user.x] */
    int seen_keys[64];   /* hashes of keys set in the current section */
    int n_seen_keys;
} cfg_ctx;

static int fail(cfg_ctx *x, int line, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int
fail(cfg_ctx *x, int line, const char *key, const char *fmt, ...)
{
    va_list ap;
    int n;

    n = snprintf(x->err, x->errsz, "%s:%d: [%s] %s: ", x->name, line,
                 x->section[0] ? x->section : "-", key ? key : "-");
    if (n > 0 && (size_t)n < x->errsz) {
        va_start(ap, fmt);
        vsnprintf(x->err + n, x->errsz - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return MRD_ECONFIG;
}

int
mrd_name_valid(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n >= MRD_NAME_MAX)
        return 0;
    for (; *s; s++)
        if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) || *s == '-' || *s == '_'))
            return 0;
    return 1;
}

static int
parse_uint(const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    unsigned long long v;

    if (!isdigit((unsigned char)*s))
        return MRD_EINVAL;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end || v > max)
        return MRD_EINVAL;
    *out = v;
    return 0;
}

int
mrd_size_parse(const char *s, uint64_t *out)
{
    static const struct {
        const char *suffix;
        double mult;
    } units[] = {{"", 1},
                 {"B", 1},
                 {"K", 1024.0},
                 {"KB", 1e3},
                 {"KiB", 1024.0},
                 {"M", 1048576.0},
                 {"MB", 1e6},
                 {"MiB", 1048576.0},
                 {"G", 1073741824.0},
                 {"GB", 1e9},
                 {"GiB", 1073741824.0},
                 {"T", 1099511627776.0},
                 {"TB", 1e12},
                 {"TiB", 1099511627776.0}};
    char *end;
    double v;

    if (!isdigit((unsigned char)*s))
        return MRD_EINVAL;
    errno = 0;
    v = strtod(s, &end);
    if (errno)
        return MRD_EINVAL;
    while (*end == ' ')
        end++;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(end, units[i].suffix) == 0) {
            v *= units[i].mult;
            if (v >= 1.8e19)
                return MRD_EINVAL;
            *out = (uint64_t)v;
            return 0;
        }
    }
    return MRD_EINVAL;
}

int
mrd_addr_parse(const char *s, mrd_addr *out)
{
    mrd_addr a;
    const char *colon;
    uint64_t port;
    size_t hlen;

    memset(&a, 0, sizeof(a));
    if (*s == '[') {
        const char *rb = strchr(s, ']');
        if (!rb || rb[1] != ':')
            return MRD_EINVAL;
        hlen = (size_t)(rb - s - 1);
        if (hlen == 0 || hlen >= sizeof(a.host))
            return MRD_EINVAL;
        memcpy(a.host, s + 1, hlen);
        colon = rb + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || colon == s || memchr(s, ':', (size_t)(colon - s)))
            return MRD_EINVAL;
        hlen = (size_t)(colon - s);
        if (hlen >= sizeof(a.host))
            return MRD_EINVAL;
        memcpy(a.host, s, hlen);
    }
    for (size_t i = 0; i < hlen; i++)
        if (isspace((unsigned char)a.host[i]))
            return MRD_EINVAL;
    if (parse_uint(colon + 1, 65535, &port) != 0 || port == 0)
        return MRD_EINVAL;
    a.port = (uint16_t)port;
    *out = a;
    return 0;
}

const char *
mrd_addr_format(const mrd_addr *a, char *out, size_t outsz)
{
    if (strchr(a->host, ':'))
        snprintf(out, outsz, "[%s]:%u", a->host, a->port);
    else
        snprintf(out, outsz, "%s:%u", a->host, a->port);
    return out;
}

static int
add_data_dir(cfg_ctx *x, const char *key, const char *path)
{
    mrd_config *c = x->c;
    char full[PATH_MAX];

    if (*path == '\0')
        return fail(x, x->line, key, "empty path in the list; give absolute directory paths");
    if (c->n_data_dirs >= MRD_MAX_DRIVES)
        return fail(x, x->line, key, "more than %d data dirs", MRD_MAX_DRIVES);
    if (path[0] == '/')
        snprintf(full, sizeof(full), "%s", path);
    else if (snprintf(full, sizeof(full), "%s/%s", x->base_dir, path) >= (int)sizeof(full))
        return fail(x, x->line, key, "path too long");
    for (int i = 0; i < c->n_data_dirs; i++)
        if (strcmp(c->data_dirs[i], full) == 0)
            return fail(x, x->line, key, "'%s' is listed twice; each drive must be its own dir",
                        full);
    c->data_dirs[c->n_data_dirs] = strdup(full);
    if (!c->data_dirs[c->n_data_dirs])
        return -ENOMEM;
    c->n_data_dirs++;
    return 0;
}

static int
set_addr(cfg_ctx *x, const char *key, const char *val, mrd_addr *dst, int *seen)
{
    if (seen && *seen)
        return fail(x, x->line, key, "set twice (first on line %d)", *seen);
    if (mrd_addr_parse(val, dst) != 0)
        return fail(x, x->line, key,
                    "'%s' is not an address; expected host:port, e.g. 127.0.0.1:9001", val);
    if (seen)
        *seen = x->line;
    return 0;
}

static int
set_str(cfg_ctx *x, const char *key, const char *val, char *dst, size_t dstsz)
{
    if (strlen(val) >= dstsz)
        return fail(x, x->line, key, "value longer than %zu bytes", dstsz - 1);
    memcpy(dst, val, strlen(val) + 1);
    return 0;
}

/* [s3] domain: a comma-separated list of DNS names ("s3.example.com"), kept
 * lower case. A name is 1-253 bytes of labels of [a-z0-9-] (1-63 bytes, no
 * leading or trailing '-') joined by single dots; no port, no trailing dot. */
static int
add_s3_domains(cfg_ctx *x, const char *key, const char *val)
{
    mrd_config *c = x->c;
    char *copy = strdup(val), *save = NULL;
    int rc = 0;

    if (!copy)
        return -ENOMEM;
    for (char *tok = strtok_r(copy, ",", &save); tok && rc == 0; tok = strtok_r(NULL, ",", &save)) {
        size_t n, label = 0;
        int ok;
        while (isspace((unsigned char)*tok))
            tok++;
        n = strlen(tok);
        while (n && isspace((unsigned char)tok[n - 1]))
            tok[--n] = '\0';
        ok = n > 0 && n <= 253 && tok[0] != '.' && tok[0] != '-' && tok[n - 1] != '.' &&
             tok[n - 1] != '-';
        for (size_t i = 0; i < n && ok; i++) {
            tok[i] = (char)tolower((unsigned char)tok[i]);
            if (tok[i] == '.') {
                ok = label > 0 && tok[i - 1] != '-' && tok[i + 1] != '-';
                label = 0;
            } else {
                ok = (isalnum((unsigned char)tok[i]) || tok[i] == '-') && ++label <= 63;
            }
        }
        if (!ok) {
            rc = fail(x, x->line, key,
                      "'%s' is not a domain name; give DNS names such as s3.example.com, comma "
                      "separated, without port or scheme",
                      tok);
            break;
        }
        for (int i = 0; i < c->n_s3_domains && rc == 0; i++)
            if (strcmp(c->s3_domains[i], tok) == 0)
                rc = fail(x, x->line, key, "'%s' is listed twice", tok);
        if (rc == 0 && c->n_s3_domains >= MRD_MAX_S3_DOMAINS)
            rc = fail(x, x->line, key, "more than %d domains", MRD_MAX_S3_DOMAINS);
        if (rc == 0)
            memcpy(c->s3_domains[c->n_s3_domains++], tok, n + 1);
    }
    free(copy);
    if (rc == 0 && c->n_s3_domains == 0)
        rc = fail(x, x->line, key, "empty; give DNS names such as s3.example.com");
    return rc;
}

/* A file path; relative ones are relative to the config file's directory. */
static int
set_path(cfg_ctx *x, const char *key, const char *val, char *dst, size_t dstsz)
{
    char full[PATH_MAX * 2];

    if (!val[0])
        return fail(x, x->line, key, "empty; give a file path");
    if (val[0] != '/' && x->base_dir[0]) {
        snprintf(full, sizeof(full), "%s/%s", x->base_dir, val);
        return set_str(x, key, full, dst, dstsz);
    }
    return set_str(x, key, val, dst, dstsz);
}

/* A certificate pin: 64 hex digits, colons allowed (as openssl prints
 * fingerprints), optionally after "sha256:" or "sha256//". */
int
mrd_pin_parse(const char *s, uint8_t out[32])
{
    int n = 0;

    if (strncasecmp(s, "sha256:", 7) == 0)
        s += 7;
    else if (strncasecmp(s, "sha256//", 8) == 0)
        s += 8;
    for (; *s; s++) {
        int hi;
        if (*s == ':')
            continue;
        if (!isxdigit((unsigned char)s[0]) || !isxdigit((unsigned char)s[1]) || n >= 32)
            return MRD_EINVAL;
        hi = isdigit((unsigned char)s[0]) ? s[0] - '0' : (tolower((unsigned char)s[0]) - 'a' + 10);
        out[n++] = (uint8_t)(hi << 4 | (isdigit((unsigned char)s[1])
                                            ? s[1] - '0'
                                            : (tolower((unsigned char)s[1]) - 'a' + 10)));
        s++;
    }
    return n == 32 ? 0 : MRD_EINVAL;
}

static int
key_once(cfg_ctx *x, const char *key)
{
    unsigned h = 5381;

    for (const char *p = key; *p; p++)
        h = h * 33 + (unsigned char)*p;
    for (int i = 0; i < x->n_seen_keys; i++)
        if (x->seen_keys[i] == (int)h)
            return fail(x, x->line, key, "set twice in this section");
    if (x->n_seen_keys < (int)(sizeof(x->seen_keys) / sizeof(x->seen_keys[0])))
        x->seen_keys[x->n_seen_keys++] = (int)h;
    return 0;
}

static int
entry(cfg_ctx *x, const char *key, const char *val)
{
    mrd_config *c = x->c;
    const char *sec = x->section;
    uint64_t v;
    int rc;

    /* data_dir / data_dirs may repeat: each line adds drives. */
    if (strncmp(key, "data_dir", 8) != 0 && (rc = key_once(x, key)) != 0)
        return rc;

    if (strcmp(sec, "site") == 0) {
        if (strcmp(key, "id") == 0) {
            if (parse_uint(val, 65535, &v) != 0 || v == 0)
                return fail(x, x->line, key, "'%s' is not a site id; use an integer 1..65535", val);
            c->site_id = (uint32_t)v;
            x->seen_site_id = x->line;
        } else if (strcmp(key, "name") == 0) {
            if (!mrd_name_valid(val))
                return fail(x, x->line, key, "'%s' is not a valid name; use 1-63 of [a-z0-9_-]",
                            val);
            x->seen_site_name = x->line;
            return set_str(x, key, val, c->site_name, sizeof(c->site_name));
        } else if (strcmp(key, "region") == 0) {
            return set_str(x, key, val, c->region, sizeof(c->region));
        } else {
            return fail(x, x->line, key, "unknown key; [site] takes id, name, region");
        }
    } else if (strcmp(sec, "listen") == 0) {
        mrd_addr probe;
        unsigned char raw[16];
        /* We bind these ourselves: numeric addresses only, so a typo is a
         * config error here, not a bind failure later. */
        if (mrd_addr_parse(val, &probe) == 0 && inet_pton(AF_INET, probe.host, raw) != 1 &&
            inet_pton(AF_INET6, probe.host, raw) != 1)
            return fail(x, x->line, key,
                        "'%s' is not a numeric address; listen on an IP such as 127.0.0.1, "
                        "0.0.0.0 or [::]",
                        probe.host);
        if (strcmp(key, "s3") == 0)
            return set_addr(x, key, val, &c->listen_s3, &x->seen_listen_s3);
        if (strcmp(key, "replication") == 0)
            return set_addr(x, key, val, &c->listen_replication, &x->seen_listen_repl);
        if (strcmp(key, "admin") == 0)
            return set_addr(x, key, val, &c->listen_admin, &x->seen_listen_admin);
        if (strcmp(key, "s3_tls") == 0) {
            c->has_s3_tls = 1;
            return set_addr(x, key, val, &c->listen_s3_tls, &x->seen_s3_tls);
        }
        return fail(x, x->line, key, "unknown key; [listen] takes s3, s3_tls, replication, admin");
    } else if (strcmp(sec, "s3") == 0) {
        if (strcmp(key, "domain") == 0)
            return add_s3_domains(x, key, val);
        if (strcmp(key, "tls_cert") == 0)
            return set_path(x, key, val, c->s3_tls_cert, sizeof(c->s3_tls_cert));
        if (strcmp(key, "tls_key") == 0)
            return set_path(x, key, val, c->s3_tls_key, sizeof(c->s3_tls_key));
        if (strcmp(key, "loops") == 0) {
            uint64_t n;
            if (parse_uint(val, MRD_MAX_S3_LOOPS, &n) != 0 || n == 0)
                return fail(x, x->line, key, "'%s' is not valid; use 1..%d", val, MRD_MAX_S3_LOOPS);
            c->s3_loops = (int)n;
            return 0;
        }
        if (strcmp(key, "max_connections") == 0) {
            uint64_t n;
            if (parse_uint(val, 1000000, &n) != 0 || n == 0)
                return fail(x, x->line, key, "'%s' is not valid; use 1..1000000", val);
            c->s3_max_connections = (int)n;
            return 0;
        }
        if (strcmp(key, "max_uploads") == 0 || strcmp(key, "max_downloads") == 0) {
            uint64_t n;
            if (parse_uint(val, 100000, &n) != 0)
                return fail(x, x->line, key, "'%s' is not valid; use 0 (no limit) or 1..100000",
                            val);
            if (key[4] == 'u')
                c->s3_max_uploads = (int)n;
            else
                c->s3_max_downloads = (int)n;
            return 0;
        }
        return fail(x, x->line, key,
                    "unknown key; [s3] takes domain, tls_cert, tls_key, loops, max_connections, "
                    "max_uploads, max_downloads");
    } else if (strcmp(sec, "store") == 0) {
        if (strcmp(key, "data_dirs") == 0 || strcmp(key, "data_dir") == 0) {
            char *copy = strdup(val), *save = NULL;
            if (!copy)
                return -ENOMEM;
            x->data_dirs_line = x->line;
            rc = 0;
            for (char *tok = strtok_r(copy, ",", &save); tok && rc == 0;
                 tok = strtok_r(NULL, ",", &save)) {
                while (isspace((unsigned char)*tok))
                    tok++;
                char *e = tok + strlen(tok);
                while (e > tok && isspace((unsigned char)e[-1]))
                    *--e = '\0';
                rc = add_data_dir(x, key, tok);
            }
            free(copy);
            return rc;
        } else if (strcmp(key, "ec_k") == 0 || strcmp(key, "ec_m") == 0) {
            int is_k = key[3] == 'k';
            if (parse_uint(val, 32, &v) != 0 || (is_k && v == 0))
                return fail(x, x->line, key, "'%s' is not valid; use an integer %s..32", val,
                            is_k ? "1" : "0");
            if (is_k) {
                c->ec_k = (int)v;
                x->seen_k = x->line;
            } else {
                c->ec_m = (int)v;
                x->seen_m = x->line;
            }
        } else if (strcmp(key, "block_size") == 0) {
            if (mrd_size_parse(val, &v) != 0 || v < 4096 || v > 64u * 1048576u || v % 4096)
                return fail(x, x->line, key,
                            "'%s' is not valid; use a multiple of 4KiB from 4KiB to 64MiB", val);
            c->block_size = (uint32_t)v;
        } else if (strcmp(key, "meta_dir") == 0) {
            if (val[0] != '/' && x->base_dir[0]) {
                char full[PATH_MAX * 2];
                snprintf(full, sizeof(full), "%s/%s", x->base_dir, val);
                rc = set_str(x, key, full, c->meta_dir, sizeof(c->meta_dir));
            } else {
                rc = set_str(x, key, val, c->meta_dir, sizeof(c->meta_dir));
            }
            x->seen_meta = x->line;
            return rc;
        } else if (strcmp(key, "multipart_expire") == 0) {
            char *end;
            unsigned long n = strtoul(val, &end, 10);
            if (!*val || *end || n > 365u * 86400u)
                return fail(x, x->line, key,
                            "'%s' is not valid; use seconds, 0 (never) up to 31536000", val);
            c->multipart_expire_s = (uint32_t)n;
        } else {
            return fail(x, x->line, key,
                        "unknown key; [store] takes data_dirs, ec_k, ec_m, block_size, meta_dir, "
                        "multipart_expire");
        }
    } else if (strcmp(sec, "wal") == 0) {
        if (strcmp(key, "segment_size") == 0) {
            if (mrd_size_parse(val, &v) != 0 || v < 1048576)
                return fail(x, x->line, key, "'%s' is not valid; use a size of at least 1MiB", val);
            c->wal_segment_bytes = v;
        } else if (strcmp(key, "retention_max") == 0) {
            if (mrd_size_parse(val, &v) != 0 || v < 16u * 1048576u)
                return fail(x, x->line, key, "'%s' is not valid; use a size of at least 16MiB",
                            val);
            c->wal_retention_bytes = v;
        } else {
            return fail(x, x->line, key, "unknown key; [wal] takes segment_size, retention_max");
        }
    } else if (strcmp(sec, "replication") == 0) {
        if (strcmp(key, "secret") == 0) {
            if (strlen(val) < 16)
                return fail(x, x->line, key, "too short; use at least 16 random characters");
            return set_str(x, key, val, c->replication_secret, sizeof(c->replication_secret));
        } else if (strcmp(key, "write_failover") == 0) {
            if (strcmp(val, "refuse") == 0)
                c->write_failover = MRD_WRITE_FAILOVER_REFUSE;
            else if (strcmp(val, "forward") == 0)
                c->write_failover = MRD_WRITE_FAILOVER_FORWARD;
            else
                return fail(x, x->line, key, "'%s' is not valid; use refuse or forward", val);
        } else if (strcmp(key, "token_wait") == 0) {
            char *end;
            unsigned long n = strtoul(val, &end, 10);
            if (!*val || (*end && strcmp(end, "ms") != 0) || n > 10000)
                return fail(x, x->line, key, "'%s' is not valid; use milliseconds, 0..10000", val);
            c->token_wait_ms = (uint32_t)n;
        } else if (strcmp(key, "anti_entropy_interval") == 0) {
            char *end;
            unsigned long n = strtoul(val, &end, 10);
            if (!*val || *end || n > 7u * 86400u || (n && n < 10))
                return fail(x, x->line, key,
                            "'%s' is not valid; use seconds, 0 (off) or 10..604800", val);
            c->anti_entropy_s = (uint32_t)n;
        } else if (strcmp(key, "gc_interval") == 0 || strcmp(key, "gc_grace") == 0) {
            char *end;
            unsigned long n = strtoul(val, &end, 10);
            int grace = key[3] == 'g';
            if (!*val || *end || n > 30u * 86400u || (grace && n == 0))
                return fail(x, x->line, key, "'%s' is not valid; use seconds, %s..2592000", val,
                            grace ? "1" : "0 (off) or 1");
            if (grace)
                c->gc_grace_s = (uint32_t)n;
            else
                c->gc_interval_s = (uint32_t)n;
        } else if (strcmp(key, "conflict_retention") == 0) {
            char *end;
            unsigned long n = strtoul(val, &end, 10);
            if (!*val || *end || n == 0 || n > 365u * 86400u)
                return fail(x, x->line, key, "'%s' is not valid; use seconds, 1..31536000", val);
            c->conflict_retention_s = (uint32_t)n;
        } else if (strcmp(key, "anti_entropy_page") == 0) {
            if (mrd_size_parse(val, &v) != 0 || v < 4096 || v > (4u << 20))
                return fail(x, x->line, key, "'%s' is not valid; use a size of 4KiB..4MiB", val);
            c->summary_page_bytes = (uint32_t)v;
        } else if (strcmp(key, "failed_after") == 0) {
            char *end;
            unsigned long n = strtoul(val, &end, 10);
            if (!*val || *end || n > 30u * 86400u)
                return fail(x, x->line, key,
                            "'%s' is not valid; use seconds, 0 (never) or 1..2592000", val);
            c->failed_after_s = (uint32_t)n;
        } else if (strcmp(key, "max_clock_skew") == 0) {
            char *end;
            unsigned long n = strtoul(val, &end, 10);
            if (!*val || *end || n < 10 || n > 86400)
                return fail(x, x->line, key, "'%s' is not valid; use seconds, 10..86400", val);
            c->max_clock_skew_s = (uint32_t)n;
        } else if (strcmp(key, "tls_cert") == 0) {
            x->seen_repl_tls_cert = x->line;
            return set_path(x, key, val, c->repl_tls_cert, sizeof(c->repl_tls_cert));
        } else if (strcmp(key, "tls_key") == 0) {
            x->seen_repl_tls_key = x->line;
            return set_path(x, key, val, c->repl_tls_key, sizeof(c->repl_tls_key));
        } else if (strcmp(key, "tls_ca") == 0) {
            x->seen_repl_tls_ca = x->line;
            return set_path(x, key, val, c->repl_tls_ca, sizeof(c->repl_tls_ca));
        } else {
            return fail(x, x->line, key,
                        "unknown key; [replication] takes secret, write_failover, "
                        "token_wait, anti_entropy_interval, anti_entropy_page, failed_after, "
                        "max_clock_skew, gc_interval, gc_grace, conflict_retention, "
                        "tls_cert, tls_key, tls_ca");
        }
    } else if (strcmp(sec, "admin") == 0) {
        if (strcmp(key, "token") != 0)
            return fail(x, x->line, key, "unknown key; [admin] takes token");
        if (strlen(val) < 16)
            return fail(x, x->line, key, "too short; use at least 16 random characters");
        x->seen_token = x->line;
        return set_str(x, key, val, c->admin_token, sizeof(c->admin_token));
    } else if (strcmp(sec, "log") == 0) {
        int lvl;
        if (strcmp(key, "level") != 0)
            return fail(x, x->line, key, "unknown key; [log] takes level");
        if ((lvl = mrd_log_level_parse(val)) < 0)
            return fail(x, x->line, key, "'%s' is not valid; use debug, info, warn or error", val);
        c->log_level = lvl;
    } else if (x->peer) {
        if (strcmp(key, "id") == 0) {
            if (parse_uint(val, 65535, &v) != 0 || v == 0)
                return fail(x, x->line, key, "'%s' is not a site id; use an integer 1..65535", val);
            x->peer->id = (uint32_t)v;
        } else if (strcmp(key, "replication") == 0) {
            return set_addr(x, key, val, &x->peer->replication, NULL);
        } else if (strcmp(key, "s3") == 0) {
            x->peer->has_s3 = 1;
            return set_addr(x, key, val, &x->peer->s3, NULL);
        } else if (strcmp(key, "admin") == 0) {
            x->peer->has_admin = 1;
            return set_addr(x, key, val, &x->peer->admin, NULL);
        } else if (strcmp(key, "bandwidth") == 0) {
            uint64_t bw = 0;
            if (strcmp(val, "0") != 0 && (mrd_size_parse(val, &bw) != 0 || bw < 65536))
                return fail(x, x->line, key,
                            "'%s' is not valid; use bytes per second of at least 64KiB "
                            "(e.g. 100MiB), or 0 for no limit",
                            val);
            x->peer->bandwidth = bw;
        } else if (strcmp(key, "s3_tls") == 0) {
            x->peer->has_s3_tls = 1;
            return set_addr(x, key, val, &x->peer->s3_tls, NULL);
        } else if (strcmp(key, "tls_pin") == 0 || strcmp(key, "s3_tls_pin") == 0) {
            int s3 = key[0] == 's';
            if (mrd_pin_parse(val, s3 ? x->peer->s3_tls_pin : x->peer->tls_pin) != 0)
                return fail(x, x->line, key,
                            "'%s' is not a pin; use the SHA-256 of the peer's certificate or "
                            "SPKI: 64 hex digits (colons allowed), e.g. from "
                            "scripts/gen-site-certs.sh",
                            val);
            *(s3 ? &x->peer->has_s3_tls_pin : &x->peer->has_tls_pin) = 1;
        } else {
            return fail(x, x->line, key,
                        "unknown key; [peer.NAME] takes id, replication, s3, s3_tls, admin, "
                        "bandwidth, tls_pin, s3_tls_pin");
        }
    } else if (x->user) {
        if (strcmp(key, "access_key") == 0) {
            if (strlen(val) < 3)
                return fail(x, x->line, key, "too short; use at least 3 characters");
            return set_str(x, key, val, x->user->access_key, sizeof(x->user->access_key));
        } else if (strcmp(key, "secret_key") == 0) {
            if (strlen(val) < 8)
                return fail(x, x->line, key, "too short; use at least 8 characters");
            return set_str(x, key, val, x->user->secret_key, sizeof(x->user->secret_key));
        }
        return fail(x, x->line, key, "unknown key; [user.NAME] takes access_key, secret_key");
    }
    return 0;
}

static int
section(cfg_ctx *x, const char *name)
{
    mrd_config *c = x->c;
    static const char *const plain[] = {"site", "listen",      "s3",    "store",
                                        "wal",  "replication", "admin", "log"};

    x->peer = NULL;
    x->user = NULL;
    x->n_seen_keys = 0;
    snprintf(x->section, sizeof(x->section), "%s", name);
    for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++)
        if (strcmp(name, plain[i]) == 0)
            return 0;
    if (strncmp(name, "peer.", 5) == 0) {
        if (!mrd_name_valid(name + 5))
            return fail(x, x->line, NULL, "peer name '%s' is not valid; use 1-63 of [a-z0-9_-]",
                        name + 5);
        for (int i = 0; i < c->n_peers; i++)
            if (strcmp(c->peers[i].name, name + 5) == 0)
                return fail(x, x->line, NULL, "peer '%s' is defined twice", name + 5);
        if (c->n_peers >= MRD_MAX_PEERS)
            return fail(x, x->line, NULL, "more than %d peers", MRD_MAX_PEERS);
        x->peer = &c->peers[c->n_peers++];
        snprintf(x->peer->name, sizeof(x->peer->name), "%s", name + 5);
        return 0;
    }
    if (strncmp(name, "user.", 5) == 0) {
        if (!mrd_name_valid(name + 5))
            return fail(x, x->line, NULL, "user name '%s' is not valid; use 1-63 of [a-z0-9_-]",
                        name + 5);
        for (int i = 0; i < c->n_users; i++)
            if (strcmp(c->users[i].name, name + 5) == 0)
                return fail(x, x->line, NULL, "user '%s' is defined twice", name + 5);
        if (c->n_users >= MRD_MAX_USERS)
            return fail(x, x->line, NULL, "more than %d users", MRD_MAX_USERS);
        x->user = &c->users[c->n_users++];
        snprintf(x->user->name, sizeof(x->user->name), "%s", name + 5);
        return 0;
    }
    return fail(x, x->line, NULL,
                "unknown section; expected site, listen, s3, store, wal, replication, admin, "
                "log, peer.NAME or user.NAME");
}

static int
validate(cfg_ctx *x)
{
    mrd_config *c = x->c;

    x->section[0] = '\0';
#define REQUIRE(cond, sec, key, msg)                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            snprintf(x->section, sizeof(x->section), "%s", sec);                                   \
            return fail(x, 0, key, msg);                                                           \
        }                                                                                          \
    } while (0)
    REQUIRE(x->seen_site_id, "site", "id", "missing; every site needs a unique id 1..65535");
    REQUIRE(x->seen_site_name, "site", "name", "missing; give the site a short name such as 'a'");
    REQUIRE(x->seen_listen_s3, "listen", "s3", "missing; give host:port for the S3 API");
    REQUIRE(x->seen_listen_repl, "listen", "replication",
            "missing; give host:port for peer replication");
    REQUIRE(x->seen_listen_admin, "listen", "admin", "missing; give host:port for the admin API");
    REQUIRE(c->n_data_dirs > 0, "store", "data_dirs",
            "missing; list the drive directories, comma separated");
    REQUIRE(x->seen_meta, "store", "meta_dir", "missing; give a directory for the index and WAL");
    REQUIRE(x->seen_token, "admin", "token",
            "missing; set a random token of at least 16 characters");
    REQUIRE(c->n_users > 0, "user.NAME", "access_key",
            "no S3 user is configured; add a [user.NAME] section");
#undef REQUIRE

    snprintf(x->section, sizeof(x->section), "store");
    if (c->ec_k + c->ec_m > c->n_data_dirs)
        return fail(x, x->seen_k ? x->seen_k : (x->seen_m ? x->seen_m : x->data_dirs_line), "ec_k",
                    "ec_k + ec_m = %d but only %d data dirs are listed; k+m must be <= the "
                    "number of data dirs",
                    c->ec_k + c->ec_m, c->n_data_dirs);
    if (c->ec_k + c->ec_m > 32)
        return fail(x, x->seen_k, "ec_k", "ec_k + ec_m must be <= 32");

    for (int i = 0; i < c->n_users; i++) {
        snprintf(x->section, sizeof(x->section), "user.%s", c->users[i].name);
        if (!c->users[i].access_key[0])
            return fail(x, 0, "access_key", "missing");
        if (!c->users[i].secret_key[0])
            return fail(x, 0, "secret_key", "missing");
        for (int j = 0; j < i; j++)
            if (strcmp(c->users[i].access_key, c->users[j].access_key) == 0)
                return fail(x, 0, "access_key", "same access key as user '%s'", c->users[j].name);
    }
    for (int i = 0; i < c->n_peers; i++) {
        mrd_peer_conf *p = &c->peers[i];
        snprintf(x->section, sizeof(x->section), "peer.%s", p->name);
        if (!p->id)
            return fail(x, 0, "id", "missing; give the peer's site id");
        if (!p->replication.port)
            return fail(x, 0, "replication", "missing; give the peer's replication host:port");
        if (p->id == c->site_id)
            return fail(x, 0, "id", "%u is this site's own id; site ids must be unique", p->id);
        if (strcmp(p->name, c->site_name) == 0)
            return fail(x, 0, "name", "'%s' is this site's own name", p->name);
        for (int j = 0; j < i; j++)
            if (c->peers[j].id == p->id)
                return fail(x, 0, "id", "%u is also the id of peer '%s'", p->id, c->peers[j].name);
    }
    if (c->has_s3_tls && (!c->s3_tls_cert[0] || !c->s3_tls_key[0])) {
        snprintf(x->section, sizeof(x->section), "s3");
        return fail(x, 0, c->s3_tls_cert[0] ? "tls_key" : "tls_cert",
                    "missing; [listen] s3_tls needs the listener's certificate and key");
    }
    if (!c->has_s3_tls && (c->s3_tls_cert[0] || c->s3_tls_key[0])) {
        snprintf(x->section, sizeof(x->section), "listen");
        return fail(x, 0, "s3_tls", "missing; [s3] tls_cert/tls_key are used by this listener");
    }
    if (x->seen_repl_tls_cert || x->seen_repl_tls_key || x->seen_repl_tls_ca) {
        snprintf(x->section, sizeof(x->section), "replication");
        if (!x->seen_repl_tls_cert || !x->seen_repl_tls_key)
            return fail(x, x->seen_repl_tls_ca, x->seen_repl_tls_cert ? "tls_key" : "tls_cert",
                        "missing; mutual TLS between sites needs this site's certificate and key");
        for (int i = 0; i < c->n_peers && !c->repl_tls_ca[0]; i++) {
            if (!c->peers[i].has_tls_pin) {
                snprintf(x->section, sizeof(x->section), "peer.%s", c->peers[i].name);
                return fail(x, 0, "tls_pin",
                            "missing; with [replication] tls_cert every peer needs its "
                            "certificate pin (or set [replication] tls_ca)");
            }
        }
    }
    for (int i = 0; i < c->n_peers; i++) {
        const mrd_peer_conf *p = &c->peers[i];

        snprintf(x->section, sizeof(x->section), "peer.%s", p->name);
        if (p->has_s3_tls && !x->seen_repl_tls_cert)
            return fail(x, 0, "s3_tls",
                        "needs [replication] tls_cert/tls_key: this site presents its site "
                        "certificate when it forwards over TLS");
        if (p->has_s3_tls && !p->has_s3)
            return fail(x, 0, "s3",
                        "missing; s3_tls is used in place of s3, which is needed too "
                        "(routing picks peers that serve S3)");
        if (p->has_s3_tls_pin && !p->has_s3_tls)
            return fail(x, 0, "s3_tls", "missing; s3_tls_pin checks the s3_tls listener");
    }
    /* Mutual TLS alone authenticates peers: the block above made sure each
     * has a pin or the CA vouches for it. */
    if (c->n_peers > 0 && !c->replication_secret[0] && !x->seen_repl_tls_cert) {
        snprintf(x->section, sizeof(x->section), "replication");
        return fail(x, 0, "secret",
                    "missing; sites with peers must authenticate them: set a shared secret (16+ "
                    "characters), or configure mutual TLS (tls_cert and tls_key here, and each "
                    "peer's tls_pin or a tls_ca)");
    }
    if (c->n_peers > 0 && c->write_failover == MRD_WRITE_FAILOVER_FORWARD &&
        !c->replication_secret[0]) {
        snprintf(x->section, sizeof(x->section), "replication");
        return fail(x, 0, "write_failover",
                    "forward needs a secret: a request forwarded to a peer is signed with it");
    }
    return 0;
}

int
mrd_config_parse(const char *name, const char *text, size_t len, mrd_config **out, char *err,
                 size_t errsz)
{
    cfg_ctx x;
    mrd_config *c = calloc(1, sizeof(*c));
    const char *p = text, *end = text + len;
    int rc = 0;

    if (!c)
        return -ENOMEM;
    memset(&x, 0, sizeof(x));
    x.c = c;
    x.name = name;
    x.err = err;
    x.errsz = errsz;
    snprintf(c->path, sizeof(c->path), "%s", name);
    {
        const char *slash = strrchr(name, '/');
        if (slash)
            snprintf(x.base_dir, sizeof(x.base_dir), "%.*s", (int)(slash - name), name);
        else if (!getcwd(x.base_dir, sizeof(x.base_dir)))
            x.base_dir[0] = '\0';
    }
    c->ec_k = 4;
    c->ec_m = 2;
    c->block_size = 262144; /* measured: docs/benchmarks.md, store section */
    c->wal_segment_bytes = 64u * 1048576u;
    c->wal_retention_bytes = UINT64_C(10) * 1073741824u;
    c->anti_entropy_s = 3600;
    c->gc_interval_s = 600;
    c->gc_grace_s = 3600;
    c->conflict_retention_s = 7u * 86400u;
    c->s3_max_uploads = 32;    /* about 5 MiB each: docs/configuration.md */
    c->s3_max_downloads = 256; /* about 3 MiB each */
    c->failed_after_s = 3600;
    c->multipart_expire_s = 7u * 86400u;
    c->max_clock_skew_s = 900;
    c->token_wait_ms = 250;
    c->log_level = MRD_LOG_INFO;

    while (p < end && rc == 0) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        char *line, *s, *e;

        x.line++;
        line = strndup(p, (size_t)(le - p));
        p = nl ? nl + 1 : end;
        if (!line) {
            rc = -ENOMEM;
            break;
        }
        s = line;
        while (isspace((unsigned char)*s))
            s++;
        e = s + strlen(s);
        while (e > s && isspace((unsigned char)e[-1]))
            *--e = '\0';
        if (*s == '\0' || *s == ';' || *s == '#') {
            free(line);
            continue;
        }
        if (*s == '[') {
            if (e[-1] != ']' || e - s < 3) {
                rc = fail(&x, x.line, NULL, "malformed section header '%s'; expected [name]", s);
            } else {
                e[-1] = '\0';
                rc = section(&x, s + 1);
            }
        } else {
            char *eq = strchr(s, '=');
            char *k = s, *v, *ke;
            if (!eq) {
                rc = fail(&x, x.line, NULL, "expected key = value, got '%s'", s);
            } else {
                *eq = '\0';
                ke = eq;
                while (ke > k && isspace((unsigned char)ke[-1]))
                    *--ke = '\0';
                v = eq + 1;
                while (isspace((unsigned char)*v))
                    v++;
                if (*k == '\0')
                    rc = fail(&x, x.line, NULL, "empty key before '='");
                else if (!x.section[0])
                    rc = fail(&x, x.line, k,
                              "key outside any section; put it under [site], [listen] ...");
                else if (*v == '\0')
                    rc = fail(&x, x.line, k, "empty value");
                else
                    rc = entry(&x, k, v);
            }
        }
        free(line);
    }
    if (rc == 0)
        rc = validate(&x);
    if (rc != 0) {
        mrd_config_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

int
mrd_config_load(const char *path, mrd_config **out, char *err, size_t errsz)
{
    FILE *f = fopen(path, "rb");
    mrd_buf b = {0};
    char chunk[8192];
    size_t n;
    int rc;

    if (!f) {
        rc = -errno;
        snprintf(err, errsz, "%s: cannot open: %s", path, mrd_strerror(rc));
        return rc;
    }
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (b.len + n > 1048576) {
            fclose(f);
            mrd_buf_free(&b);
            snprintf(err, errsz, "%s: larger than 1 MiB; is this a config file?", path);
            return MRD_ECONFIG;
        }
        mrd_buf_append(&b, chunk, n);
    }
    rc = ferror(f) ? -EIO : 0;
    fclose(f);
    if (rc == 0 && b.len && memchr(b.data, '\0', b.len)) {
        snprintf(err, errsz, "%s: contains NUL bytes; is this a config file?", path);
        rc = MRD_ECONFIG;
    }
    if (rc == 0)
        rc = mrd_config_parse(path, b.data ? b.data : "", b.len, out, err, errsz);
    else if (rc == -EIO)
        snprintf(err, errsz, "%s: read error", path);
    mrd_buf_free(&b);
    return rc;
}

void
mrd_config_free(mrd_config *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->n_data_dirs; i++)
        free(c->data_dirs[i]);
    free(c);
}
