/*
 * fuzz_vv.c - libFuzzer target for vv_decode, the parser of version vectors
 * arriving from peers (WAL records, replication, anti-entropy digests).
 *
 * Properties checked on every input, beyond "no crash, no leak, no UB":
 *   - decode either fails with MRD_EINVAL / MRD_ETOOBIG or succeeds;
 *   - on success the vector satisfies the invariant (vv_validate) and its
 *     canonical encoding is exactly the input bytes - the decoder accepts one
 *     byte string per vector, which index digests rely on;
 *   - the algebra behaves on whatever was decoded: compare with itself is
 *     EQUAL, merge with itself is itself, increment dominates.
 * The input is also split in two at its first byte to decode a pair and check
 * that compare is antisymmetric and merge is an upper bound of both.
 */
#include "conflict.h"

#include <stdlib.h>
#include <string.h>

static int
decode_checked(const uint8_t *data, size_t size, vv *out)
{
    uint8_t again[VV_ENCODED_MAX];
    size_t len = 0;
    int rc = vv_decode(data, size, out);

    if (rc != 0) {
        if (rc != MRD_EINVAL && rc != MRD_ETOOBIG)
            abort();
        return rc;
    }
    if (vv_validate(out) != 0)
        abort();
    if (vv_encode(out, again, sizeof(again), &len) != 0 || len != size ||
        (size > 0 && memcmp(again, data, size) != 0))
        abort();
    if (vv_compare(out, out) != VV_EQUAL)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vv a, b, m, inc;
    size_t cut;

    if (decode_checked(data, size, &a) == 0) {
        if (vv_merge(&a, &a, &m) != 0 || vv_compare(&m, &a) != VV_EQUAL)
            abort();
        inc = a;
        if (vv_increment(&inc, 1) == 0 && vv_compare(&inc, &a) != VV_DOMINATES)
            abort();
    }
    if (size < 1)
        return 0;
    cut = 1 + (size_t)data[0] % size; /* split the rest in two */
    if (cut > size)
        cut = size;
    if (decode_checked(data + 1, cut - 1, &a) != 0 ||
        decode_checked(data + cut, size - cut, &b) != 0)
        return 0;
    vv_order ab = vv_compare(&a, &b), ba = vv_compare(&b, &a);
    if ((ab == VV_DOMINATES) != (ba == VV_DOMINATED) || (ab == VV_EQUAL) != (ba == VV_EQUAL) ||
        (ab == VV_CONCURRENT) != (ba == VV_CONCURRENT))
        abort();
    if (vv_merge(&a, &b, &m) == 0) {
        vv_order x = vv_compare(&m, &a), y = vv_compare(&m, &b);
        if ((x != VV_EQUAL && x != VV_DOMINATES) || (y != VV_EQUAL && y != VV_DOMINATES))
            abort();
    }
    return 0;
}
