/*
 * mrd_error.c - error strings.
 *
 * Meridian returns plain ints: 0 for success, a negated errno for failures
 * the OS reported, and MRD_E* codes (in [-30999, -30000], see common.h) for
 * failures of its own. One table maps MRD_E* to text; errno values go through
 * strerror_r into a thread-local buffer so the call stays thread-safe.
 */
#include "common.h"

#include <string.h>

static const char *const mrd_errors[] = {
    [0] = "invalid argument or malformed input",
    [1] = "configuration rejected",
    [2] = "stored data is corrupt (checksum or structure mismatch)",
    [3] = "not found",
    [4] = "already exists",
    [5] = "over a configured limit",
    [6] = "protocol violation by the peer or client",
    [7] = "durability lost: an fsync failed, writes are refused until restart",
    [8] = "not enough healthy drives",
    [9] = "authentication failed",
    [10] = "busy, retry later",
    [11] = "shutting down",
};

const char *
mrd_strerror(int err)
{
    static __thread char buf[128];
    const char *s;

    if (err == 0)
        return "success";
    if (err <= MRD_EFIRST && err >= MRD_ELAST)
        return mrd_errors[MRD_EFIRST - err];
    if (err < 0 && err > -4096) {
        /* GNU strerror_r may return a static string instead of filling buf. */
        s = strerror_r(-err, buf, sizeof(buf));
        return s ? s : "unknown error";
    }
    return "unknown error";
}
