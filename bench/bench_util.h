/*
 * bench_util.h - small helpers shared by the benchmark programs: a monotonic
 * clock in seconds, the median of samples, and a fast deterministic filler
 * (xorshift64) so buffers are incompressible and the same in every run.
 * Header-only because each benchmark is its own program.
 */
#ifndef MERIDIAN_BENCH_UTIL_H
#define MERIDIAN_BENCH_UTIL_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

static inline double
now_s(void)
{
    return (double)mrd_clock_mono_ns() / 1e9;
}

static inline int
cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

/* Sorts v in place and returns its median. */
static inline double
median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), cmp_d);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static inline void
fill(unsigned char *b, size_t n)
{
    uint64_t x = 88172645463325252ull;

    for (size_t i = 0; i + 8 <= n; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(b + i, &x, 8);
    }
}

#endif
