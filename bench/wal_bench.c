/*
 * wal_bench.c - durable appends per second and latency of the WAL under
 * 1, 16 and 256 concurrent writers, against the raw 4 KiB write+fdatasync
 * rate of the same disk, measured in the same run and directory.
 *
 * The set-up is the one the gateway will have: one libevent loop thread owns
 * every request; the WAL's completions come back to it through wal_cq (an
 * eventfd the loop watches). A "writer" is one request in flight: it appends
 * a 4 KiB record, and when its durable callback runs on the loop it records
 * the latency and appends the next one. So N writers means N appends
 * outstanding at all times, which is what N concurrent PUTs produce.
 *
 * The raw baseline is the serial ceiling group commit has to beat: pwrite
 * 4 KiB at the end of a file, fdatasync, repeat (a fresh file, so every
 * sync also commits a size change, as WAL appends do).
 *
 * Usage: wal_bench [-d DIR] [-t SECONDS] [-c 1,16,256] [-w WINDOW_US,...]
 *   DIR must be on the disk under test (default: the current directory);
 *   the bench creates and removes wal_bench.* inside it.
 */
#include "wal.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define REC_SIZE 4096

typedef struct lat {
    uint64_t *v;
    size_t n, cap;
} lat;

static void
lat_add(lat *l, uint64_t ns)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 65536;
        l->v = realloc(l->v, l->cap * sizeof(*l->v));
        if (!l->v) {
            fprintf(stderr, "out of memory\n");
            exit(1);
        }
    }
    l->v[l->n++] = ns;
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

static double
pct_us(lat *l, double p)
{
    if (l->n == 0)
        return 0;
    size_t i = (size_t)(p * (double)(l->n - 1));
    return (double)l->v[i] / 1000.0;
}

typedef struct result {
    double ops, p50, p99, batch;
} result;

static result
lat_result(lat *l, double secs)
{
    result r;

    qsort(l->v, l->n, sizeof(*l->v), cmp_u64);
    r.ops = (double)l->n / secs;
    r.p50 = pct_us(l, 0.50);
    r.p99 = pct_us(l, 0.99);
    r.batch = 1;
    return r;
}

static uint8_t g_payload[REC_SIZE];

/* ---- raw write + fdatasync ------------------------------------------------ */

static result
bench_raw(const char *dir, double secs)
{
    char path[4096];
    lat l = {0};
    uint64_t t0, end, off = 0;
    int fd;
    result r;

    snprintf(path, sizeof(path), "%s/wal_bench.raw", dir);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        perror(path);
        exit(1);
    }
    t0 = mrd_clock_mono_ns();
    end = t0 + (uint64_t)(secs * 1e9);
    for (;;) {
        uint64_t s = mrd_clock_mono_ns();
        if (s >= end)
            break;
        if (pwrite(fd, g_payload, REC_SIZE, (off_t)off) != REC_SIZE || fdatasync(fd) != 0) {
            perror("raw write/fdatasync");
            exit(1);
        }
        off += REC_SIZE;
        lat_add(&l, mrd_clock_mono_ns() - s);
    }
    r = lat_result(&l, (double)(mrd_clock_mono_ns() - t0) / 1e9);
    close(fd);
    unlink(path);
    free(l.v);
    return r;
}

/* ---- WAL with N writers on one libevent loop ------------------------------ */

typedef struct run run;
typedef struct writer {
    run *R;
    uint64_t start;
} writer;

struct run {
    wal *w;
    wal_cq *cq;
    struct event_base *base;
    uint64_t end;
    int outstanding;
    lat l;
    int errors;
};

static void issue(writer *wr);

static void
done_cb(void *ud, int status, uint64_t lsn)
{
    writer *wr = ud;
    run *R = wr->R;

    (void)lsn;
    R->outstanding--;
    if (status != 0) {
        R->errors++;
    } else {
        uint64_t now = mrd_clock_mono_ns();
        lat_add(&R->l, now - wr->start);
        if (now < R->end) {
            issue(wr);
            return;
        }
    }
    if (R->outstanding == 0)
        event_base_loopbreak(R->base);
}

static void
issue(writer *wr)
{
    run *R = wr->R;
    int rc;

    wr->start = mrd_clock_mono_ns();
    rc = wal_append(R->w, WAL_REC_OBJECT_PUT, g_payload, REC_SIZE, done_cb, wr, NULL);
    if (rc != 0) {
        fprintf(stderr, "wal_append: %s\n", mrd_strerror(rc));
        exit(1);
    }
    R->outstanding++;
}

static void
cq_ready(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    wal_cq_process(arg);
}

static int
rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static result
bench_wal(const char *dir, int writers, int32_t window_us, double secs)
{
    char wdir[4096];
    wal_opts o;
    run R;
    writer *ws;
    struct event *ev;
    wal_status st;
    wal_recovery rep;
    uint64_t t0;
    result r;
    int rc;

    snprintf(wdir, sizeof(wdir), "%s/wal_bench.wal", dir);
    nftw(wdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    memset(&R, 0, sizeof(R));
    memset(&o, 0, sizeof(o));
    if (wal_cq_new(&R.cq) != 0 || !(R.base = event_base_new())) {
        fprintf(stderr, "set-up failed\n");
        exit(1);
    }
    o.dir = wdir;
    o.site_id = 1;
    o.batch_window_us = window_us > 0 ? window_us : -1; /* 0 here means none */
    o.post = wal_cq_post;
    o.post_ud = R.cq;
    o.report = &rep;
    if ((rc = wal_open(&o, &R.w)) != 0) {
        fprintf(stderr, "wal_open: %s: %s\n", mrd_strerror(rc), rep.error);
        exit(1);
    }
    ev = event_new(R.base, wal_cq_fd(R.cq), EV_READ | EV_PERSIST, cq_ready, R.cq);
    event_add(ev, NULL);
    ws = calloc((size_t)writers, sizeof(*ws));
    t0 = mrd_clock_mono_ns();
    R.end = t0 + (uint64_t)(secs * 1e9);
    for (int i = 0; i < writers; i++) {
        ws[i].R = &R;
        issue(&ws[i]);
    }
    event_base_dispatch(R.base);
    r = lat_result(&R.l, (double)(mrd_clock_mono_ns() - t0) / 1e9);
    wal_get_status(R.w, &st);
    r.batch = st.batches ? (double)st.appends / (double)st.batches : 0;
    if (R.errors)
        fprintf(stderr, "%d appends failed\n", R.errors);
    wal_close(R.w);
    wal_cq_process(R.cq);
    event_free(ev);
    event_base_free(R.base);
    wal_cq_free(R.cq);
    free(ws);
    free(R.l.v);
    nftw(wdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return r;
}

static int
parse_list(const char *s, long *out, int max)
{
    int n = 0;

    while (*s && n < max) {
        char *e;
        out[n++] = strtol(s, &e, 10);
        s = *e == ',' ? e + 1 : e;
        if (e == s && *e)
            break;
    }
    return n;
}

int
main(int argc, char **argv)
{
    const char *dir = ".";
    double secs = 3;
    long conc[8] = {1, 16, 256}, windows[8] = {0};
    int nconc = 3, nwin = 1, c;
    result raw;

    while ((c = getopt(argc, argv, "d:t:c:w:h")) != -1) {
        switch (c) {
        case 'd':
            dir = optarg;
            break;
        case 't':
            secs = atof(optarg);
            break;
        case 'c':
            nconc = parse_list(optarg, conc, 8);
            break;
        case 'w':
            nwin = parse_list(optarg, windows, 8);
            break;
        default:
            fprintf(stderr, "usage: %s [-d DIR] [-t SECONDS] [-c 1,16,256] [-w 0,200]\n", argv[0]);
            return c == 'h' ? 0 : 2;
        }
    }
    for (size_t i = 0; i < sizeof(g_payload); i++)
        g_payload[i] = (uint8_t)(i * 131 + 7);

    raw = bench_raw(dir, secs);
    printf("| case | writers | window | appends/s | p50 us | p99 us | recs/sync | x raw |\n");
    printf("|---|---|---|---|---|---|---|---|\n");
    printf("| raw 4 KiB write+fdatasync | 1 | - | %.0f | %.0f | %.0f | 1 | 1.0 |\n", raw.ops,
           raw.p50, raw.p99);
    fflush(stdout);
    for (int wi = 0; wi < nwin; wi++) {
        for (int ci = 0; ci < nconc; ci++) {
            result r = bench_wal(dir, (int)conc[ci], (int32_t)windows[wi], secs);
            printf("| wal 4 KiB append | %ld | %ld us | %.0f | %.0f | %.0f | %.1f | %.1f |\n",
                   conc[ci], windows[wi], r.ops, r.p50, r.p99, r.batch, r.ops / raw.ops);
            fflush(stdout);
        }
    }
    /* the baseline again: the disk's speed drifts within a run */
    raw = bench_raw(dir, secs);
    printf("| raw 4 KiB write+fdatasync (again) | 1 | - | %.0f | %.0f | %.0f | 1 | 1.0 |\n",
           raw.ops, raw.p50, raw.p99);
    return 0;
}
