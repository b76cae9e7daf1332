/*
 * fuzz_repl.c - libFuzzer target for what a replication peer's bytes reach
 * first: the auth header parsing and signature check (repl_auth.c) and the
 * Hello/Heartbeat protobuf decoding (repl_msg.c).
 *
 * The first byte picks a mode:
 *   0: the rest is split on '\n' into method, path, site, time, auth and
 *      body, and verified as a request would be (almost always rejected:
 *      this exercises the header syntax checks);
 *   1: the rest is a Hello body, 2: a Heartbeat body, decoded directly;
 *   3: the rest is "site\ntime\nbody": the body is signed with the right
 *      secret, so verification must succeed whenever site and time parse,
 *      and the body then goes through the decoder, as on the server after a
 *      good signature. A decoded message is re-encoded and decoded again and
 *      must round-trip.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "repl_int.h"

static const char secret[] = "fuzz-secret";

static void
check_decode(const uint8_t *p, size_t n, int is_hello)
{
    repl__msg m, again;
    mrd_buf b = {0};

    if (repl__msg_decode(p, n, is_hello, &m) != 0)
        return;
    if (repl__msg_encode(&m, &b) != 0)
        abort();
    if (repl__msg_decode(b.data, b.len, is_hello, &again) != 0)
        abort();
    if (again.st.site_id != m.st.site_id || again.st.high_water_lsn != m.st.high_water_lsn ||
        again.st.n_applied != m.st.n_applied || strcmp(again.st.site_name, m.st.site_name) != 0)
        abort();
    mrd_buf_free(&b);
}

/* Splits s (NUL-terminated copy) on '\n' into up to n fields. */
static int
split(char *s, char **f, int n)
{
    int k = 0;

    f[k++] = s;
    for (char *c = s; *c && k < n; c++) {
        if (*c == '\n') {
            *c = '\0';
            f[k++] = c + 1;
        }
    }
    return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *reason = NULL;
    uint32_t site = 0;
    char *copy, *f[6];
    repl__auth_in in;
    int mode, k;

    if (size < 1 || size > REPL_MAX_CTRL_BODY)
        return 0;
    mode = data[0] & 3;
    data++;
    size--;
    if (mode == 1 || mode == 2) {
        check_decode(data, size, mode == 1);
        return 0;
    }
    copy = malloc(size + 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    copy[size] = '\0';
    memset(&in, 0, sizeof(in));
    if (mode == 0) {
        k = split(copy, f, 6);
        in.method = f[0];
        in.path = k > 1 ? f[1] : NULL;
        in.site = k > 2 ? f[2] : NULL;
        in.time = k > 3 ? f[3] : NULL;
        in.auth = k > 4 ? f[4] : NULL;
        in.body = k > 5 ? f[5] : "";
        in.body_len = k > 5 ? strlen(f[5]) : 0;
        (void)repl__auth_verify(secret, sizeof(secret) - 1, &in, 1700000000000ull, 300000, &reason,
                                &site);
    } else {
        uint32_t sid;
        uint64_t t;
        char sig[65];

        k = split(copy, f, 3);
        if (k == 3 && repl__parse_site(f[0], &sid) == 0 && repl__parse_time(f[1], &t) == 0) {
            const char *body = f[2];
            size_t blen = size - (size_t)(body - copy);

            repl__auth_sign(secret, sizeof(secret) - 1, "POST", REPL_PATH_HEARTBEAT, sid, t, body,
                            blen, sig);
            in.method = "POST";
            in.path = REPL_PATH_HEARTBEAT;
            in.site = f[0];
            in.time = f[1];
            in.auth = sig;
            in.body = body;
            in.body_len = blen;
            if (repl__auth_verify(secret, sizeof(secret) - 1, &in, t, 0, &reason, &site) != 0 ||
                site != sid)
                abort(); /* a correct signature must verify */
            check_decode((const uint8_t *)body, blen, 0);
        }
    }
    free(copy);
    return 0;
}
