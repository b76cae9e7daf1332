/*
 * repl_health.c - the per-peer health machine and RTT estimator.
 *
 * Pure: outcomes and times are passed in, nothing here reads a clock or does
 * I/O, so the unit test can walk it through exact sequences. The rules are
 * written out in replicator.h ("Health rules (exact)"); this file is their
 * only implementation.
 *
 * Why hysteresis: routing reads this state. If one lost heartbeat sent a peer
 * DOWN and one answer brought it back, a lossy link would flip every second
 * and reads would bounce between sites. So DOWN needs N failures in a row,
 * and recovery (from DOWN, or from DEGRADED to HEALTHY) needs M successes in
 * a row. A single failure only demotes HEALTHY to DEGRADED, which routing
 * uses as "prefer someone else if you can".
 *
 * RTT: an EWMA with alpha 0.2 smooths scheduling noise but follows a real
 * change within a few samples (after 10 samples at a new level, 89% of the
 * step). The baseline is a windowed minimum (the last REPL_BASELINE_SAMPLES
 * OK samples), the propagation delay with no queueing in it; a route that
 * becomes permanently slower becomes the new baseline once the window has
 * turned over. rtt_high compares the EWMA with twice that baseline, with a
 * 5 ms absolute floor: on loopback or a LAN a sub-millisecond baseline
 * doubles from scheduler noise alone, and a loaded host adds a few ms of
 * jitter (a 1 ms floor made such links flap between healthy and degraded);
 * a WAN link's baseline is tens of ms, where the 2x rule decides.
 */
#include "repl_int.h"

#include <string.h>

#define RTT_ALPHA      0.2
#define RTT_FLOOR_US   5000.0
#define RTT_SAMPLE_MAX 0xffffffffu

void
repl__health_init(repl__health *h, uint32_t down_after, uint32_t up_after, uint64_t now_ns)
{
    memset(h, 0, sizeof(*h));
    h->state = REPL_PEER_UNKNOWN;
    h->state_since_ns = now_ns;
    h->down_after = down_after ? down_after : 3;
    h->up_after = up_after ? up_after : 3;
}

double
repl__health_baseline_us(const repl__health *h)
{
    uint32_t n = h->n_samples < REPL_BASELINE_SAMPLES ? h->n_samples : REPL_BASELINE_SAMPLES;
    uint32_t min = RTT_SAMPLE_MAX;

    if (n == 0)
        return 0;
    for (uint32_t i = 0; i < n; i++)
        if (h->samples[i] < min)
            min = h->samples[i];
    return (double)min;
}

int
repl__health_rtt_high(const repl__health *h)
{
    double base = repl__health_baseline_us(h);

    if (h->n_samples == 0)
        return 0;
    return h->rtt_us > 2.0 * base && h->rtt_us - base >= RTT_FLOOR_US;
}

static void
set_state(repl__health *h, repl_peer_state s, uint64_t now_ns)
{
    if (h->state != s) {
        h->state = s;
        h->state_since_ns = now_ns;
    }
}

repl_peer_state
repl__health_ok(repl__health *h, uint64_t rtt_us, uint64_t now_ns)
{
    repl_peer_state old = h->state;
    int high;

    h->ok_total++;
    h->ok_streak++;
    h->fail_streak = 0;
    if (rtt_us > RTT_SAMPLE_MAX)
        rtt_us = RTT_SAMPLE_MAX;
    h->last_us = (double)rtt_us;
    h->rtt_us = h->n_samples == 0 ? (double)rtt_us
                                  : (1.0 - RTT_ALPHA) * h->rtt_us + RTT_ALPHA * (double)rtt_us;
    h->samples[h->next_sample] = (uint32_t)rtt_us;
    h->next_sample = (h->next_sample + 1) % REPL_BASELINE_SAMPLES;
    h->n_samples++;
    high = repl__health_rtt_high(h);

    switch (h->state) {
    case REPL_PEER_UNKNOWN:
    case REPL_PEER_DOWN:
        if (h->ok_streak >= h->up_after)
            set_state(h, high ? REPL_PEER_DEGRADED : REPL_PEER_HEALTHY, now_ns);
        break;
    case REPL_PEER_HEALTHY:
        if (high)
            set_state(h, REPL_PEER_DEGRADED, now_ns);
        break;
    case REPL_PEER_DEGRADED:
        if (!high && h->ok_streak >= h->up_after)
            set_state(h, REPL_PEER_HEALTHY, now_ns);
        break;
    }
    return old;
}

repl_peer_state
repl__health_fail(repl__health *h, uint64_t now_ns)
{
    repl_peer_state old = h->state;

    h->fail_total++;
    h->fail_streak++;
    h->ok_streak = 0;
    if (h->fail_streak >= h->down_after)
        set_state(h, REPL_PEER_DOWN, now_ns);
    else if (h->state == REPL_PEER_HEALTHY)
        set_state(h, REPL_PEER_DEGRADED, now_ns);
    return old;
}
