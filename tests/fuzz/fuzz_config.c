/*
 * fuzz_config.c - libFuzzer target for the INI config loader: any input must
 * give either a config or an error message naming a line, never a crash.
 */
#include "common.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mrd_config *c = NULL;
    char err[512];

    if (mrd_config_parse("fuzz.ini", (const char *)data, size, &c, err, sizeof(err)) == 0)
        mrd_config_free(c);
    else if (strncmp(err, "fuzz.ini:", 9) != 0)
        __builtin_trap(); /* every rejection names the file and line */
    return 0;
}
