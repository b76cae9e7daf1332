/*
 * fuzz_awschunk.c - libFuzzer target for the aws-chunked body decoder
 * (gateway/gw_awschunk.c), which reads upload bodies straight from clients.
 * The first input byte picks the mode (signed chunks, signed chunks and a
 * signed trailer, or unsigned with a trailing checksum), the trailer named,
 * whether a decoded length is declared, and the slice size the rest is fed
 * in, so chunk headers, data and trailers are split at every point the
 * network could split them. The decoded bytes must never exceed
 * the encoded ones.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gw_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
sink(void *ud, const char *data, size_t len)
{
    size_t *n = ud;

    (void)data;
    *n += len;
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const trailers[] = {NULL,
                                           "x-amz-checksum-crc32",
                                           "x-amz-checksum-crc32c",
                                           "x-amz-checksum-sha256",
                                           "x-amz-checksum-sha1",
                                           "x-amz-checksum-crc64nvme"};
    static const unsigned char key[32] = {1, 2, 3};
    gw_awschunk_opts o = {0};
    gw_awschunk *c = NULL;
    const char *why;
    size_t emitted = 0, step;
    unsigned sel;
    int rc = 0;

    if (size < 1)
        return 0;
    sel = data[0];
    data++;
    size--;
    if (!(sel & 1))
        o.mode = GW_AWSCHUNK_UNSIGNED_TRAILER;
    else
        o.mode = (sel & 0x10) ? GW_AWSCHUNK_SIGNED_TRAILER : GW_AWSCHUNK_SIGNED;
    o.key = key;
    o.amz_date = "20130524T000000Z";
    o.scope = "20130524/us-east-1/s3/aws4_request";
    o.seed_sig = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";
    o.decoded_length = (sel & 2) ? (int64_t)(size / 2) : -1;
    o.trailer = o.mode != GW_AWSCHUNK_SIGNED ? trailers[(sel >> 2) % 6] : NULL;
    step = 1 + ((sel >> 5) * 37);
    if (gw_awschunk_new(&o, &c) != 0)
        return 0;
    for (size_t off = 0; off < size && rc == 0; off += step)
        rc = gw_awschunk_feed(c, (const char *)data + off, size - off < step ? size - off : step,
                              sink, &emitted, &why);
    if (rc == 0)
        gw_awschunk_finish(c, &why);
    if (emitted > size || gw_awschunk_decoded(c) != emitted)
        abort();
    gw_awschunk_free(c);
    return 0;
}
