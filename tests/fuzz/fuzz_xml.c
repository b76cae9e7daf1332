/*
 * fuzz_xml.c - libFuzzer target for the XML request bodies the gateway
 * parses: the CompleteMultipartUpload document (gw_xml_parse_complete), the
 * DeleteObjects document (gw_xml_parse_delete), the Tagging document
 * (gw_xml_parse_tagging, with its round trip through the stored
 * "k=v&..." form, under an object's limit of 10 tags or, for an odd
 * length, a bucket's 50), the VersioningConfiguration
 * document (gw_xml_parse_versioning) and the generic expat-based
 * reader under it (gw_xml_read). The input is the body as a client would send
 * it, and every parser sees it. Whatever it is, a parser must return, never
 * read past it, and on success give results within the documented bounds.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gw_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
leaf(void *ud, int depth, const char *const *path, const char *text, size_t len)
{
    size_t *n = ud;

    if (depth < 1 || depth > GW_XML_MAX_DEPTH || len > GW_XML_MAX_TEXT || strlen(text) > len ||
        !path[depth - 1])
        abort();
    (*n)++;
    return 0;
}

static void
check_complete(const char *body, size_t size)
{
    gw_complete_part *parts = NULL;
    size_t n = 0;

    if (gw_xml_parse_complete(body, size, &parts, &n) == 0) {
        if (n == 0 || n > GW_MPU_MAX_PARTS)
            abort();
        for (size_t i = 0; i < n; i++)
            if (parts[i].number < 1 || parts[i].number > GW_MPU_MAX_PARTS ||
                strlen(parts[i].etag) >= sizeof(parts[i].etag))
                abort();
        free(parts);
    }
}

static void
check_delete(const char *body, size_t size)
{
    gw_delete_req d;
    size_t n = 0;

    if (gw_xml_parse_delete(body, size, &d) == 0) {
        if (d.n == 0 || d.n > GW_DELETE_MAX_KEYS)
            abort();
        for (size_t i = 0; i < d.n; i++)
            if (!d.objs[i].key || !d.objs[i].key[0])
                abort();
        gw_delete_req_clear(&d);
    }
    gw_xml_read(body, size, "Delete", leaf, &n);
}

static void
check_tagging(const char *body, size_t size)
{
    gw_tagset *t = calloc(1, sizeof(*t)), *back = calloc(1, sizeof(*back));
    mrd_buf enc = {0};

    if (t && back) /* the length's parity picks an object's or a bucket's limit */
        t->max = back->max = size & 1 ? GW_TAGS_MAX : 0;
    if (t && back && gw_xml_parse_tagging(body, size, t) == 0) {
        if (t->n < 0 || t->n > (t->max ? GW_TAGS_MAX : GW_OBJECT_TAGS_MAX))
            abort();
        /* the stored form reads back as the same set */
        if (gw_tagset_encode(t, &enc) == 0 &&
            (gw_tagset_parse_query(enc.data, back) != 0 || back->n != t->n))
            abort();
        for (int i = 0; i < t->n && back->n == t->n; i++)
            if (strcmp(t->key[i], back->key[i]) != 0 || strcmp(t->value[i], back->value[i]) != 0)
                abort();
    }
    mrd_buf_free(&enc);
    free(t);
    free(back);
}

static void
check_versioning(const char *body, size_t size)
{
    int state = 0;

    if (gw_xml_parse_versioning(body, size, &state) == 0 && state != 1 && state != 2)
        abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exact-size copy, so ASan catches any read past the body */
    char *body = malloc(size ? size : 1);

    if (!body)
        return 0;
    memcpy(body, data, size);
    check_complete(body, size);
    check_delete(body, size);
    check_tagging(body, size);
    check_versioning(body, size);
    free(body);
    return 0;
}
