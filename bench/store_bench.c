/*
 * store_bench.c - throughput of the store's write and read paths next to the
 * ceilings of the steps they are made of, all measured in the same run.
 *
 * Ceilings (one core, 64 MiB buffer, median of the repetitions), sampled
 * before and after the store runs; the tables use the median of the two
 * samples and show both:
 *   md5        OpenSSL EVP MD5: the slowest step of a PUT and the target
 *   ec_encode  ISA-L ec_encode_data k+m over block-sized pieces (data bytes/s)
 *   crc32c     ISA-L crc32_iscsi through mrd_crc32c
 *   memcpy     large buffer copy
 *   seqwrite   64 MiB written in 1 MiB writes to a fresh file + fdatasync, in
 *              the bench directory: the disk's durable write ceiling
 * Store paths:
 *   write      store_writer_open/write (256 KiB chunks, as from a socket)/
 *              finish: MD5 + copy + encode + CRC + pwritev of k+m shards.
 *              "nosync" skips fdatasync/fsync (STORE_OPT_NOSYNC) to show the
 *              CPU path; "sync" is the real thing, dominated by the disk;
 *              "no pool" is the same with STORE_OPT_NO_POOL (every write
 *              creates its shard files), the A/B of the pre-created files;
 *              "4 writers" runs 4 threads of synced writes at once (the
 *              daemon's 4 workers), aggregate rate, against
 *              min(MD5, 2/3 seqwrite): MD5 for one core, and the disk
 *              absorbing 1.5x the bytes (4+2).
 *              Objects are deleted only after their row, so every write
 *              fills page frames no file just released, as a daemon's PUTs
 *              of new keys do on a machine with free memory. On this VM
 *              filling such frames costs several times the CPU of filling
 *              frames released a moment ago (six 256 KiB files: 3-4 ms of
 *              CPU after a pause of a few seconds, 0.55 ms right after
 *              other files were deleted; the host seems to take idle free
 *              memory back), and then costs more than MD5.
 *   recycled   "nosync, recycled pages" deletes each object as soon as it
 *              was written and read, after a warm-up object, so the next
 *              write reuses the frames just released: what a server whose
 *              memory is full of page cache does (new pages come from
 *              reclaimed cache). Both rows are printed; their gap is the
 *              machine's, not the store's.
 *   read       store_reader_read in 1 MiB chunks from the page cache, every
 *              block CRC-checked; "degraded" with one data drive offline, so
 *              every stripe is rebuilt.
 *   small      per-object latency of striped vs inline small objects.
 *
 * Usage: store_bench [-d dir] [-r reps] [-b block_size] [-q]
 * dir (default /tmp) receives a scratch tree, removed at the end.
 */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <isa-l.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "bench_util.h"

#define MIB  (1024u * 1024u)
#define NDRV 6

static int reps = 5;

/* ---- ceilings ------------------------------------------------------------- */

static double
bench_md5(const unsigned char *buf, size_t n)
{
    double t[32];
    unsigned char md[16];
    unsigned int l;
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        EVP_Digest(buf, n, md, &l, EVP_md5(), NULL);
        t[r] = (double)n / (now_s() - t0) / 1e9;
    }
    return median(t, reps);
}

static double
bench_encode(unsigned char *buf, size_t n, int k, int m, uint32_t bs)
{
    unsigned char *a = malloc((size_t)(k + m) * k), *tbls = malloc((size_t)32 * k * m);
    unsigned char *par = aligned_alloc(64, (size_t)m * bs);
    unsigned char *data[32], *pp[32];
    double t[32];
    size_t sd = (size_t)k * bs;

    gf_gen_cauchy1_matrix(a, k + m, k);
    ec_init_tables(k, m, &a[k * k], tbls);
    for (int p = 0; p < m; p++)
        pp[p] = par + (size_t)p * bs;
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        for (size_t off = 0; off + sd <= n; off += sd) {
            for (int i = 0; i < k; i++)
                data[i] = buf + off + (size_t)i * bs;
            ec_encode_data((int)bs, k, m, tbls, data, pp);
        }
        t[r] = (double)(n / sd * sd) / (now_s() - t0) / 1e9;
    }
    free(a);
    free(tbls);
    free(par);
    return median(t, reps);
}

static double
bench_crc(const unsigned char *buf, size_t n)
{
    double t[32];
    volatile uint32_t c = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        c ^= mrd_crc32c(0, buf, n);
        t[r] = (double)n / (now_s() - t0) / 1e9;
    }
    (void)c;
    return median(t, reps);
}

static double
bench_memcpy(unsigned char *dst, const unsigned char *src, size_t n)
{
    double t[32];
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        memcpy(dst, src, n);
        t[r] = (double)n / (now_s() - t0) / 1e9;
    }
    return median(t, reps);
}

/* 64 MiB in 1 MiB writes to a fresh file, then fdatasync (GB/s). */
static double
bench_seqwrite(const char *base, const unsigned char *buf, size_t n)
{
    char path[600];
    double t[32];
    int ok = 1;

    snprintf(path, sizeof(path), "%s/store_bench.seq", base);
    for (int r = 0; r < reps && ok; r++) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        double t0 = now_s();
        if (fd < 0)
            return -1;
        for (size_t off = 0; off < n && ok; off += MIB)
            ok = write(fd, buf + off, MIB) == (ssize_t)MIB;
        ok = ok && fdatasync(fd) == 0;
        t[r] = (double)n / (now_s() - t0) / 1e9;
        close(fd);
        unlink(path);
    }
    return ok ? median(t, reps) : -1;
}

typedef struct ceilings {
    double md5, enc, crc, cpy, seqw;
} ceilings;

static void
measure_ceilings(const char *base, unsigned char *buf, unsigned char *rbuf, size_t n, uint32_t bs,
                 ceilings *c)
{
    c->md5 = bench_md5(buf, n);
    c->enc = bench_encode(buf, n, 4, 2, bs);
    c->crc = bench_crc(buf, n);
    c->cpy = bench_memcpy(rbuf, buf, n);
    c->seqw = bench_seqwrite(base, buf, n);
}

/* ---- store ---------------------------------------------------------------- */

typedef struct bstore {
    char root[512];
    char dirs[NDRV][600];
    const char *dirp[NDRV];
    char meta[600];
    store *s;
} bstore;

static int
rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static int
bs_open(bstore *b, const char *base, uint32_t bs, unsigned flags)
{
    store_opts o;
    int rc;

    snprintf(b->root, sizeof(b->root), "%s/store_bench.XXXXXX", base);
    if (!mkdtemp(b->root))
        return -errno;
    for (int i = 0; i < NDRV; i++) {
        snprintf(b->dirs[i], sizeof(b->dirs[i]), "%s/d%d", b->root, i);
        b->dirp[i] = b->dirs[i];
    }
    snprintf(b->meta, sizeof(b->meta), "%s/meta", b->root);
    store_opts_default(&o);
    o.data_dirs = b->dirp;
    o.n_data_dirs = NDRV;
    o.meta_dir = b->meta;
    o.block_size = bs;
    o.index_map_size = 256ull << 20;
    o.flags = flags;
    if ((rc = store_open(&o, &b->s)) != 0)
        return rc;
    /* A daemon's pool is warm when requests come: wait (up to 3 s) for the
     * background thread to pre-create the first batch of shard files. */
    for (int i = 0; i < 300 && !(flags & STORE_OPT_NO_POOL); i++) {
        store_status st;
        if (store_get_status(b->s, &st) != 0 || st.pool_ready >= 6 * 8)
            break;
        usleep(10000);
    }
    return 0;
}

static void
bs_close(bstore *b)
{
    store_close(b->s);
    nftw(b->root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static int
put(store *s, const unsigned char *buf, size_t n, int i, store_put_result *res)
{
    store_writer *w;
    char key[32];
    const size_t chunk = 256u << 10;
    int rc;

    snprintf(key, sizeof(key), "obj%d", i);
    if ((rc = store_writer_open(s, "bench", key, "v", 0, &w)) != 0)
        return rc;
    for (size_t off = 0; off < n; off += chunk) {
        size_t c = n - off < chunk ? n - off : chunk;
        if ((rc = store_writer_write(w, buf + off, c)) != 0) {
            store_writer_abort(w);
            return rc;
        }
    }
    return store_writer_finish(w, res);
}

typedef struct wr_result {
    double write_gbs, read_gbs, degraded_gbs;
} wr_result;

/* Writes reps objects of n bytes, reads each back; medians in GB/s. With
 * recycle, a warm-up object is written first and every object is deleted as
 * soon as it was read (see "recycled" above); else all are deleted at the
 * end. */
static int
bench_store(const char *base, uint32_t bs, unsigned flags, const unsigned char *buf, size_t n,
            unsigned char *rbuf, int recycle, wr_result *out)
{
    bstore b;
    double tw[32], tr[32], td[32];
    store_put_result kept[32];
    int nkept = 0, rc = bs_open(&b, base, bs, flags);

    if (rc != 0)
        return rc;
    if (recycle) {
        store_put_result res;
        if ((rc = put(b.s, buf, n, 999, &res)) == 0) {
            store_object_delete_data(b.s, res.layout, res.layout_len);
            store_put_result_clear(&res);
        }
    }
    for (int r = 0; r < reps && rc == 0; r++) {
        store_put_result res;
        store_reader *rd;
        double t0 = now_s();
        if ((rc = put(b.s, buf, n, r, &res)) != 0)
            break;
        tw[r] = (double)n / (now_s() - t0) / 1e9;
        for (int pass = 0; pass < 2 && rc == 0; pass++) {
            if (pass == 1) /* drive of data shard 0 offline: rebuild every stripe */
                store_drive_set_offline(b.s, ((unsigned char *)res.layout)[36]);
            if ((rc = store_reader_open(b.s, res.layout, res.layout_len, &rd)) != 0)
                break;
            t0 = now_s();
            for (size_t off = 0; off < n && rc == 0;) {
                size_t got = 0, want = n - off < MIB ? n - off : MIB;
                rc = store_reader_read(rd, off, rbuf + off, want, &got);
                if (rc == 0 && got != want)
                    rc = MRD_ECORRUPT;
                off += got;
            }
            (pass ? td : tr)[r] = (double)n / (now_s() - t0) / 1e9;
            store_reader_close(rd);
            if (rc == 0 && memcmp(rbuf, buf, n) != 0)
                rc = MRD_ECORRUPT;
        }
        store_drives_rescan(b.s);
        if (recycle) {
            store_object_delete_data(b.s, res.layout, res.layout_len);
            store_put_result_clear(&res);
        } else {
            kept[nkept++] = res;
        }
    }
    /* Deleted only now unless recycling: see "recycled" above. */
    for (int i = 0; i < nkept; i++) {
        store_object_delete_data(b.s, kept[i].layout, kept[i].layout_len);
        store_put_result_clear(&kept[i]);
    }
    if (rc == 0) {
        out->write_gbs = median(tw, reps);
        out->read_gbs = median(tr, reps);
        out->degraded_gbs = median(td, reps);
    }
    bs_close(&b);
    return rc;
}

typedef struct par_writer {
    store *s;
    const unsigned char *buf;
    size_t n;
    int id, count, rc;
    store_put_result res[16]; /* deleted after the timing */
} par_writer;

static void *
par_main(void *arg)
{
    par_writer *p = arg;

    for (int i = 0; i < p->count && p->rc == 0; i++)
        p->rc = put(p->s, p->buf, p->n, 1000 * (p->id + 1) + i, &p->res[i]);
    return NULL;
}

/* nthr threads each writing `count` (<= 16) synced objects of n bytes at
 * once: aggregate GB/s over the wall time; the objects are deleted after. */
static int
bench_par(const char *base, uint32_t bs, unsigned flags, const unsigned char *buf, size_t n,
          int nthr, int count, double *gbs)
{
    bstore b;
    pthread_t th[16];
    par_writer pw[16];
    double t0;
    int rc = bs_open(&b, base, bs, flags);

    if (rc != 0)
        return rc;
    t0 = now_s();
    for (int i = 0; i < nthr; i++) {
        pw[i] = (par_writer){.s = b.s, .buf = buf, .n = n, .id = i, .count = count};
        pthread_create(&th[i], NULL, par_main, &pw[i]);
    }
    for (int i = 0; i < nthr; i++)
        pthread_join(th[i], NULL);
    *gbs = (double)n * nthr * count / (now_s() - t0) / 1e9;
    for (int i = 0; i < nthr; i++) {
        if (pw[i].rc != 0)
            rc = pw[i].rc;
        for (int j = 0; j < count; j++) {
            store_object_delete_data(b.s, pw[i].res[j].layout, pw[i].res[j].layout_len);
            store_put_result_clear(&pw[i].res[j]);
        }
    }
    bs_close(&b);
    return rc;
}

/* Median per-object latency in microseconds of writing a small object. */
static int
bench_small(const char *base, unsigned flags, const unsigned char *buf, size_t n, double *us)
{
    bstore b;
    double t[64];
    int rc = bs_open(&b, base, STORE_DEFAULT_BLOCK_SIZE, flags), cnt = 20;

    if (rc != 0)
        return rc;
    for (int r = 0; r < cnt && rc == 0; r++) {
        store_put_result res;
        double t0 = now_s();
        if ((rc = put(b.s, buf, n, r, &res)) != 0)
            break;
        t[r] = (now_s() - t0) * 1e6;
        store_put_result_clear(&res);
    }
    if (rc == 0)
        *us = median(t, cnt);
    bs_close(&b);
    return rc;
}

/* One 4 KiB append + fdatasync: what an inline object adds to a WAL commit
 * at worst (group commit shares it between many writers). */
static double
bench_append_sync(const char *base)
{
    char path[600];
    unsigned char blk[4096] = {1};
    double t[64];
    int fd;

    snprintf(path, sizeof(path), "%s/store_bench.append", base);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
    if (fd < 0)
        return -1;
    for (int r = 0; r < 20; r++) {
        double t0 = now_s();
        if (write(fd, blk, sizeof(blk)) != (ssize_t)sizeof(blk) || fdatasync(fd) != 0)
            break;
        t[r] = (now_s() - t0) * 1e6;
    }
    close(fd);
    unlink(path);
    return median(t, 20);
}

int
main(int argc, char **argv)
{
    const char *base = "/tmp";
    uint32_t bs = STORE_DEFAULT_BLOCK_SIZE;
    size_t big = 64 * MIB;
    unsigned char *buf, *rbuf;
    int opt, rc;
    double md5, seqw, dcap;
    ceilings c0, c1;

    while ((opt = getopt(argc, argv, "d:r:b:")) != -1) {
        if (opt == 'd')
            base = optarg;
        else if (opt == 'r')
            reps = atoi(optarg) < 1 ? 1 : (atoi(optarg) > 31 ? 31 : atoi(optarg));
        else if (opt == 'b')
            bs = (uint32_t)strtoul(optarg, NULL, 0);
        else {
            fprintf(stderr, "usage: %s [-d dir] [-r reps] [-b block_size]\n", argv[0]);
            return 2;
        }
    }
    mrd_log_setup(MRD_LOG_ERROR, "bench");
    buf = aligned_alloc(64, big);
    rbuf = aligned_alloc(64, big);
    if (!buf || !rbuf)
        return 1;
    fill(buf, big);
    memset(rbuf, 0, big);

    measure_ceilings(base, buf, rbuf, big, bs, &c0);

    size_t sizes[2] = {MIB, big};
    wr_result ns[2], sy[2], np[2], rc_ns[2];
    double par[2];
    for (int si = 0; si < 2; si++) {
        /* single-writer rows: reps objects each; the 4-writer row: 8
         * objects per thread for 1 MiB, 1 for 64 MiB */
        if ((rc = bench_store(base, bs, STORE_OPT_NOSYNC | STORE_OPT_NO_INLINE, buf, sizes[si],
                              rbuf, 0, &ns[si])) != 0 ||
            (rc = bench_store(base, bs, STORE_OPT_NOSYNC | STORE_OPT_NO_INLINE, buf, sizes[si],
                              rbuf, 1, &rc_ns[si])) != 0 ||
            (rc = bench_store(base, bs, STORE_OPT_NO_INLINE, buf, sizes[si], rbuf, 0, &sy[si])) !=
                0 ||
            (rc = bench_store(base, bs, STORE_OPT_NO_INLINE | STORE_OPT_NO_POOL, buf, sizes[si],
                              rbuf, 0, &np[si])) != 0 ||
            (rc = bench_par(base, bs, STORE_OPT_NO_INLINE, buf, sizes[si], 4, si ? 1 : 8,
                            &par[si])) != 0) {
            fprintf(stderr, "store bench failed: %s\n", mrd_strerror(rc));
            return 1;
        }
    }
    measure_ceilings(base, buf, rbuf, big, bs, &c1);
    md5 = (c0.md5 + c1.md5) / 2;
    seqw = (c0.seqw + c1.seqw) / 2;
    dcap = md5 < 2.0 / 3.0 * seqw ? md5 : 2.0 / 3.0 * seqw;

    printf("# store_bench: 4+2 on %d dirs under %s, block %u KiB, median of %d\n", NDRV, base,
           bs >> 10, reps);
    printf("\n| ceiling (1 core, 64 MiB) | GB/s (mean of before, after) | before | after |\n"
           "|---|---|---|---|\n");
    printf("| OpenSSL MD5 | %.2f | %.2f | %.2f |\n", md5, c0.md5, c1.md5);
    printf("| ISA-L ec_encode_data 4+2 (data bytes) | %.2f | %.2f | %.2f |\n",
           (c0.enc + c1.enc) / 2, c0.enc, c1.enc);
    printf("| CRC32C (ISA-L) | %.2f | %.2f | %.2f |\n", (c0.crc + c1.crc) / 2, c0.crc, c1.crc);
    printf("| memcpy | %.2f | %.2f | %.2f |\n", (c0.cpy + c1.cpy) / 2, c0.cpy, c1.cpy);
    printf("| write + fdatasync, 64 MiB file | %.2f | %.2f | %.2f |\n", seqw, c0.seqw, c1.seqw);
    printf("\nDurable ceiling min(MD5, 2/3 x write+fdatasync) = %.2f GB/s\n", dcap);

    printf("\n| path | object | GB/s | vs MD5 | vs durable ceiling |\n|---|---|---|---|---|\n");
    for (int si = 0; si < 2; si++) {
        const char *nm = si ? "64 MiB" : "1 MiB";
        printf("| write, encode+CRC+MD5+pwrite (nosync) | %s | %.2f | %.0f%% | |\n", nm,
               ns[si].write_gbs, 100 * ns[si].write_gbs / md5);
        printf("| write, nosync, recycled pages | %s | %.2f | %.0f%% | |\n", nm,
               rc_ns[si].write_gbs, 100 * rc_ns[si].write_gbs / md5);
        printf(
            "| write, + parallel fdatasync (pre-created files) | %s | %.2f | %.0f%% | %.0f%% |\n",
            nm, sy[si].write_gbs, 100 * sy[si].write_gbs / md5, 100 * sy[si].write_gbs / dcap);
        printf("| write, synced, no pool (creates + dir fsyncs) | %s | %.2f | %.0f%% | %.0f%% |\n",
               nm, np[si].write_gbs, 100 * np[si].write_gbs / md5, 100 * np[si].write_gbs / dcap);
        printf("| write, synced, 4 writers at once (aggregate) | %s | %.2f | %.0f%% | %.0f%% |\n",
               nm, par[si], 100 * par[si] / md5, 100 * par[si] / dcap);
        printf("| read + CRC verify (page cache) | %s | %.2f | | |\n", nm, ns[si].read_gbs);
        printf("| read, 1 drive offline (rebuild each stripe) | %s | %.2f | | |\n", nm,
               ns[si].degraded_gbs);
    }

    printf("\n| block size | write nosync GB/s | read GB/s | degraded read GB/s | writer "
           "memory |\n|---|---|---|---|---|\n");
    uint32_t bss[] = {64u << 10, 256u << 10, 1u << 20, 4u << 20};
    for (int i = 0; i < 4; i++) {
        wr_result w;
        if ((rc = bench_store(base, bss[i], STORE_OPT_NOSYNC | STORE_OPT_NO_INLINE, buf, big, rbuf,
                              0, &w)) != 0) {
            fprintf(stderr, "block sweep failed: %s\n", mrd_strerror(rc));
            return 1;
        }
        printf("| %u KiB | %.2f | %.2f | %.2f | %u KiB |\n", bss[i] >> 10, w.write_gbs, w.read_gbs,
               w.degraded_gbs, 2 * 6 * (bss[i] >> 10)); /* two stripe buffers */
    }

    printf("\n| small object (synced) | striped us | inline us |\n|---|---|---|\n");
    size_t smalls[] = {4096, 65536, 131072};
    for (int i = 0; i < 3; i++) {
        double st = 0, in = 0;
        if ((rc = bench_small(base, STORE_OPT_NO_INLINE, buf, smalls[i], &st)) != 0 ||
            (rc = bench_small(base, 0, buf, smalls[i], &in)) != 0) {
            fprintf(stderr, "small bench failed: %s\n", mrd_strerror(rc));
            return 1;
        }
        printf("| %zu KiB | %.0f | %.0f (+ its share of one WAL fdatasync) |\n", smalls[i] >> 10,
               st, in);
    }
    printf("\n4 KiB append + fdatasync on this disk: %.0f us median\n", bench_append_sync(base));
    free(buf);
    free(rbuf);
    return 0;
}
