/*
 * mrd_hlc.c - hybrid logical clock (Kulkarni et al., "Logical Physical
 * Clocks", 2014), packed in 64 bits: 48 bits of wall milliseconds and a
 * 16-bit logical counter.
 *
 * now():      l' = max(l, pt); c' = (l' == l) ? c + 1 : 0
 * observe(r): l' = max(l, r.l, pt); c' follows the paper's merge rule, so the
 *             result is strictly greater than both the previous value and r.
 * Because (l, c) packs into one integer with l in the high bits, "the next
 * stamp after x" is simply x + 1, and a counter overflow carries into the
 * millisecond field. That keeps the clock strictly monotonic at any rate;
 * the cost is that a site generating > 65536 stamps per ms runs slightly
 * ahead of wall time, which HLC tolerates by design.
 *
 * The state is one 64-bit word updated with compare-and-swap, so both calls
 * are lock-free and thread-safe. Skew: a remote stamp far in the future is
 * still merged (refusing it would split the cluster's order); callers that
 * care compare MRD_HLC_MS() against the wall clock and report the skew.
 */
#include "common.h"

#include <errno.h>
#include <stdlib.h>

struct mrd_hlc {
    mrd_clock_fn clock;
    void *user_data;
    uint64_t last; /* accessed atomically */
};

int
mrd_hlc_new(mrd_clock_fn clock, void *user_data, mrd_hlc **out)
{
    mrd_hlc *h = calloc(1, sizeof(*h));

    if (!h)
        return -ENOMEM;
    h->clock = clock ? clock : mrd_clock_realtime_ms;
    h->user_data = user_data;
    *out = h;
    return 0;
}

void
mrd_hlc_free(mrd_hlc *h)
{
    free(h);
}

static mrd_hlc_stamp
advance(mrd_hlc *h, mrd_hlc_stamp floor)
{
    uint64_t pt = h->clock(h->user_data) & ((UINT64_C(1) << 48) - 1);
    uint64_t phys = pt << MRD_HLC_LOGICAL_BITS;
    uint64_t old = __atomic_load_n(&h->last, __ATOMIC_ACQUIRE), next;

    do {
        uint64_t base = old > floor ? old : floor;
        /* Strictly after everything seen; the wall clock wins when ahead. */
        next = phys > base ? phys : base + 1;
    } while (
        !__atomic_compare_exchange_n(&h->last, &old, next, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE));
    return next;
}

mrd_hlc_stamp
mrd_hlc_now(mrd_hlc *h)
{
    return advance(h, 0);
}

mrd_hlc_stamp
mrd_hlc_observe(mrd_hlc *h, mrd_hlc_stamp remote)
{
    return advance(h, remote);
}
