/*
 * fuzz_sigv4.c - libFuzzer target for the SigV4 parsers, which read bytes
 * straight from clients: the Authorization header, presigned query
 * parameters, X-Amz-Date, and the canonical request built from an arbitrary
 * path, query and header set. The input is split on NUL bytes into those
 * fields; a well-formed result must also survive being signed.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gw_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
