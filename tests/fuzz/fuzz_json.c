/*
 * fuzz_json.c - libFuzzer target for common's JSON reader (admin API bodies
 * and meridianctl's responses). Parsed documents are walked and re-checked
 * through the accessors so every node is touched.
 */
#include "common.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
walk(const mrd_json *j, int depth)
{
    for (; j; j = j->next) {
        if (j->type == MRD_JSON_STRING && j->str_len > 0)
            (void)j->str[j->str_len - 1];
        walk(j->child, depth + 1);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mrd_json *j = NULL;
    size_t pos;

    if (mrd_json_parse((const char *)data, size, &j, &pos) == 0) {
        walk(j, 0);
        (void)mrd_json_get_str(j, "site", NULL);
        mrd_json_free(j);
    }
    return 0;
}
