/*
 * fuzz_xml.c - libFuzzer target for the XML request bodies the gateway
 * parses: today the CompleteMultipartUpload document (gw_xml_parse_complete).
 * The input is the body as a client would send it. Whatever it is, the
 * parser must return, never read past it, and on success give 1..10000 parts
 * with numbers in range and NUL-terminated ETags that fit their buffer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gw_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exact-size copy, so ASan catches any read past the body */
    char *body = malloc(size ? size : 1);
    gw_complete_part *parts = NULL;
    size_t n = 0;

    if (!body)
        return 0;
    memcpy(body, data, size);
    if (gw_xml_parse_complete(body, size, &parts, &n) == 0) {
        if (n == 0 || n > GW_MPU_MAX_PARTS)
            abort();
        for (size_t i = 0; i < n; i++)
            if (parts[i].number < 1 || parts[i].number > GW_MPU_MAX_PARTS ||
                strlen(parts[i].etag) >= sizeof(parts[i].etag))
                abort();
        free(parts);
    }
    free(body);
    return 0;
}
