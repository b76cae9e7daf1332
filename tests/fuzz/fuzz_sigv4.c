/*
 * fuzz_sigv4.c - libFuzzer target for the SigV4 parsers, which read bytes
 * straight from clients: the Authorization header, presigned query
 * parameters, X-Amz-Date, and the canonical request built from an arbitrary
 * path, query and header set. The input is split on NUL bytes into those
 * fields; a well-formed result must also survive being signed. The first
 * field is also read as a write token (x-meridian-write-token, gw_token.c)
 * against a small fixed configuration, and fields 3 and 2 as the Host and
 * path of S3 addressing (gw_addr.c; field 4 as a peer's x-meridian-bucket)
 * under that configuration's virtual-host domains.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gw_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char conf_text[] =
    "[site]\nid = 1\nname = a\n[listen]\ns3 = 127.0.0.1:1\nreplication = 127.0.0.1:2\n"
    "admin = 127.0.0.1:3\n[store]\ndata_dirs = /d0, /d1\nec_k = 1\nec_m = 1\nmeta_dir = /m\n"
    "[replication]\nsecret = fuzz-fuzz-fuzz-fuzz\n[admin]\ntoken = fuzz-fuzz-fuzz-fuzz\n"
    "[s3]\ndomain = s3.example.com, example.com, S3.Local\n[peer.b]\nid = 2\nreplication = "
    "127.0.0.1:4\n[user.u]\naccess_key = AKFUZZ\n"
    "secret_key = SKFUZZFUZZ\n";

static mrd_config *
fuzz_conf(void)
{
    static mrd_config *conf;
    char err[256];

    if (!conf &&
        mrd_config_parse("fuzz", conf_text, sizeof(conf_text) - 1, &conf, err, sizeof(err)) != 0)
        abort(); /* the fixed configuration must load */
    return conf;
}

static void
fuzz_token(const char *tok)
{
    uint32_t site;
    uint64_t lsn;

    if (gw__route_parse_token(fuzz_conf(), tok, &site, &lsn) == 0 && site != 0 && site != 2)
        abort(); /* only configured sites are named */
}

/* Addressing: a key always points into the path, past its first byte. */
static void
fuzz_addr(const char *host, const char *path, const char *peer_bucket)
{
    gw_s3_addr a;
    size_t plen = strlen(path);

    if (gw_s3_addr_parse(fuzz_conf(), host, path, peer_bucket, &a) != 0)
        return;
    if (strlen(a.bucket) >= sizeof(a.bucket) || path[0] != '/' ||
        (a.key && (a.key <= path || a.key >= path + plen)) || (a.vhost && !a.bucket[0]))
        abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1), *field[6];
    gw_sigv4_auth a;
    int64_t t;
    size_t n = 0;
    char *p;

    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    /* fields: authz \0 query \0 path \0 header-name \0 header-value \0 date */
    p = buf;
    for (int i = 0; i < 6; i++) {
        field[i] = p;
        if (p < buf + size) {
            p += strlen(p) + 1;
            n++;
        }
    }
    for (size_t i = n; i < 6; i++)
        field[i] = buf + size;

    fuzz_token(field[0]);
    fuzz_addr(field[3], field[2], NULL);
    fuzz_addr(field[3], field[2], field[4]);
    memset(&a, 0, sizeof(a));
    if (gw_sigv4_parse_header(field[0], &a) != 0)
        gw_sigv4_parse_query(field[1], &a);
    gw_sigv4_parse_amz_date(field[5], &t);
    {
        const char *hn[2] = {"host", field[3]}, *hv[2] = {"h", field[4]};
        gw_sigv4_input in = {"GET", field[2], field[1], 2, hn, hv};
        mrd_buf creq = {0}, sts = {0};
        char sig[65];
        if (gw_sigv4_canonical_request(&in, &a, GW_SHA256_EMPTY, &creq) == 0 &&
            gw_sigv4_string_to_sign(&a, creq.data, creq.len, &sts) == 0)
            gw_sigv4_sign("secret", &a, sts.data, sts.len, sig);
        mrd_buf_free(&creq);
        mrd_buf_free(&sts);
    }
    free(buf);
    return 0;
}
