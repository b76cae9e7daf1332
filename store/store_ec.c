/*
 * store_ec.c - Reed-Solomon encode and rebuild with ISA-L.
 *
 * Encoding follows ISA-L's ec_simple_example: gf_gen_cauchy1_matrix builds a
 * (k+m) x k matrix whose top k rows are the identity (the data shards are the
 * data) and whose bottom m rows are a Cauchy matrix; every k x k submatrix of
 * it is invertible, which is what lets any k surviving shards rebuild the
 * rest. ec_init_tables expands the m parity rows into lookup tables once per
 * store (32*k*m bytes), and ec_encode_data runs the SIMD multiply.
 *
 * Rebuild: pick the first k present shards r_0..r_{k-1}; their rows of the
 * encode matrix form B with B * data = survivors, so data = B^-1 * survivors.
 * gf_invert_matrix destroys its input, so B is built in a scratch copy. Row j
 * of B^-1 regenerates data shard j directly from the survivors; a lost parity
 * row p is regenerated with the row (A_p * B^-1), computed with gf_mul. All
 * missing shards (data and parity) are then produced by ONE ec_encode_data
 * call over the survivors, with tables built for just those rows. Building
 * tables costs 32*k*rows bytes of work, small next to a 1 MiB block, so the
 * tables are not cached per erasure pattern.
 */
#include "store_int.h"

#include <errno.h>
#include <isa-l.h>
#include <stdlib.h>
#include <string.h>

int
store__ec_init(store *s)
{
    int k = s->k, m = s->m;

    s->enc_matrix = malloc((size_t)(k + m) * k);
    s->enc_tbls = malloc((size_t)32 * k * (m ? m : 1));
    if (!s->enc_matrix || !s->enc_tbls)
        return -ENOMEM;
    gf_gen_cauchy1_matrix(s->enc_matrix, k + m, k);
    if (m > 0)
        ec_init_tables(k, m, &s->enc_matrix[k * k], s->enc_tbls);
    return 0;
}

void
store__ec_free(store *s)
{
    free(s->enc_matrix);
    free(s->enc_tbls);
    s->enc_matrix = s->enc_tbls = NULL;
}

void
store__ec_encode(store *s, uint32_t len, unsigned char **data, unsigned char **parity)
{
    if (s->m > 0 && len > 0)
        ec_encode_data((int)len, s->k, s->m, s->enc_tbls, data, parity);
}

int
store__ec_rebuild(store *s, int k, int m, uint32_t len, unsigned char **blocks, const int *present)
{
    unsigned char b[STORE_MAX_SHARDS * STORE_MAX_SHARDS];
    unsigned char inv[STORE_MAX_SHARDS * STORE_MAX_SHARDS];
    unsigned char rows[STORE_MAX_SHARDS * STORE_MAX_SHARDS];
    unsigned char *src[STORE_MAX_SHARDS], *dst[STORE_MAX_SHARDS];
    unsigned char *tbls;
    int surv[STORE_MAX_SHARDS], nsurv = 0, nmiss = 0;

    for (int i = 0; i < k + m && nsurv < k; i++)
        if (present[i])
            surv[nsurv++] = i;
    if (nsurv < k)
        return MRD_EDEGRADED;
    for (int i = 0; i < k + m; i++)
        if (!present[i])
            nmiss++;
    if (nmiss == 0 || len == 0)
        return 0;

    for (int r = 0; r < k; r++)
        memcpy(&b[r * k], &s->enc_matrix[surv[r] * k], (size_t)k);
    if (gf_invert_matrix(b, inv, k) != 0)
        return MRD_ECORRUPT; /* cannot happen with a Cauchy matrix */

    nmiss = 0;
    for (int i = 0; i < k + m; i++) {
        if (present[i])
            continue;
        unsigned char *row = &rows[nmiss * k];
        if (i < k) {
            memcpy(row, &inv[i * k], (size_t)k);
        } else {
            for (int j = 0; j < k; j++) {
                unsigned char acc = 0;
                for (int t = 0; t < k; t++)
                    acc ^= gf_mul(s->enc_matrix[i * k + t], inv[t * k + j]);
                row[j] = acc;
            }
        }
        dst[nmiss++] = blocks[i];
    }
    for (int r = 0; r < k; r++)
        src[r] = blocks[surv[r]];
    tbls = malloc((size_t)32 * k * nmiss);
    if (!tbls)
        return -ENOMEM;
    ec_init_tables(k, nmiss, rows, tbls);
    ec_encode_data((int)len, k, nmiss, tbls, src, dst);
    free(tbls);
    return 0;
}
