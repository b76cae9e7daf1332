/*
 * mrdceil.c - the per-core CPU and disk ceilings that bench/run.sh puts next
 * to Meridian's numbers, in one short process with machine-readable output.
 *
 * Why a separate program. store_bench and wal_bench measure some of these
 * (MD5 and ISA-L encode; serial 4 KiB write+fdatasync) but only as part of
 * longer runs of the store and the WAL, with no way to ask for the ceilings
 * alone, and they print Markdown. run.sh calls the ceilings several times per
 * run, interleaved with the load, so they must take seconds. The methods are
 * the ones store_bench uses, so the numbers are comparable with its tables:
 * one thread, a 64 MiB buffer (larger than the caches: "cold"), the median of
 * the repetitions.
 *
 *   mrdceil cpu [-r REPS]
 *     ec42_gbps     ISA-L ec_encode_data RS 4+2 (Cauchy), 256 KiB blocks as
 *                   the store uses, data bytes per second
 *     md5_gbps      OpenSSL EVP MD5 (the S3 ETag)
 *     sha256_gbps   OpenSSL EVP SHA-256 (signed payloads)
 *   mrdceil disk -d DIR [-r REPS] [-t SECONDS] [-s SIZE]
 *     seqwrite_gbps sequential write of SIZE (default 64 MiB) in 1 MiB
 *                   writes to a fresh file, then fdatasync; bytes over the
 *                   time including the fdatasync
 *     sync4k_ops    serial 4 KiB append + fdatasync to a fresh file for
 *                   SECONDS (default 2): per second, and latency p50/p99
 *
 * Output: key=value pairs on one line per mode, on stdout. GB means 1e9
 * bytes. Files are created in DIR and removed.
 */
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <isa-l.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "../bench_util.h"

#define MIB   (1024u * 1024u)
#define BUF   (64u * MIB)
#define BLOCK (256u * 1024u)

static int reps = 5;

static double
bench_digest(const EVP_MD *md, const unsigned char *buf)
{
    double t[64];
    unsigned char out[64];
    unsigned int l;

    for (int r = 0; r < reps; r++) {
        EVP_MD_CTX *c = EVP_MD_CTX_new();
        double t0 = now_s();
        EVP_DigestInit_ex(c, md, NULL);
        for (size_t off = 0; off < BUF; off += MIB)
            EVP_DigestUpdate(c, buf + off, MIB);
        EVP_DigestFinal_ex(c, out, &l);
        t[r] = (double)BUF / (now_s() - t0) / 1e9;
        EVP_MD_CTX_free(c);
    }
    return median(t, reps);
}

static double
bench_ec42(unsigned char *buf)
{
    enum { K = 4, M = 2 };
    unsigned char matrix[(K + M) * K], tables[32 * K * M];
    unsigned char *parity = malloc(2u * BLOCK), *src[K], *dst[M];
    double t[64];

    if (!parity)
        return 0;
    gf_gen_cauchy1_matrix(matrix, K + M, K);
    ec_init_tables(K, M, matrix + K * K, tables);
    dst[0] = parity;
    dst[1] = parity + BLOCK;
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        for (size_t off = 0; off + (size_t)K * BLOCK <= BUF; off += (size_t)K * BLOCK) {
            for (int i = 0; i < K; i++)
                src[i] = buf + off + (size_t)i * BLOCK;
            ec_encode_data(BLOCK, K, M, tables, src, dst);
        }
        t[r] = (double)BUF / (now_s() - t0) / 1e9;
    }
    free(parity);
    return median(t, reps);
}

static int
cpu_mode(void)
{
    unsigned char *buf = malloc(BUF);

    if (!buf) {
        fprintf(stderr, "mrdceil: out of memory\n");
        return 1;
    }
    fill(buf, BUF);
    printf("ec42_gbps=%.2f md5_gbps=%.3f sha256_gbps=%.3f\n", bench_ec42(buf),
           bench_digest(EVP_md5(), buf), bench_digest(EVP_sha256(), buf));
    free(buf);
    return 0;
}

static int
disk_mode(const char *dir, double secs, uint64_t size)
{
    char path[4096];
    unsigned char *buf = aligned_alloc(4096, MIB);
    double t[64], *lat = NULL;
    size_t nlat = 0, cap = 0;
    int fd, rc = 1;

    if (!buf)
        return 1;
    fill(buf, MIB);
    snprintf(path, sizeof(path), "%s/mrdceil.%d.tmp", dir, (int)getpid());
    for (int r = 0; r < reps; r++) {
        double t0;
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0)
            goto fail_io;
        t0 = now_s();
        for (uint64_t off = 0; off < size; off += MIB)
            if (write(fd, buf, MIB) != (ssize_t)MIB)
                goto fail_fd;
        if (fdatasync(fd) != 0)
            goto fail_fd;
        t[r] = (double)size / (now_s() - t0) / 1e9;
        close(fd);
        unlink(path);
    }
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
    if (fd < 0)
        goto fail_io;
    {
        double end = now_s() + secs, t0 = now_s(), el;
        while (now_s() < end) {
            double a = now_s();
            if (write(fd, buf, 4096) != 4096 || fdatasync(fd) != 0)
                goto fail_fd;
            if (nlat == cap) {
                cap = cap ? cap * 2 : 4096;
                lat = realloc(lat, cap * sizeof(*lat));
                if (!lat)
                    goto fail_fd;
            }
            lat[nlat++] = (now_s() - a) * 1e6;
        }
        el = now_s() - t0;
        close(fd);
        unlink(path);
        qsort(lat, nlat, sizeof(double), cmp_d);
        printf("seqwrite_gbps=%.3f sync4k_ops=%.0f sync4k_p50_us=%.0f sync4k_p99_us=%.0f\n",
               median(t, reps), (double)nlat / el, lat[nlat / 2], lat[(nlat * 99) / 100]);
    }
    rc = 0;
    goto out;
fail_fd:
    close(fd);
    unlink(path);
fail_io:
    fprintf(stderr, "mrdceil: %s: %s\n", path, strerror(errno));
out:
    free(lat);
    free(buf);
    return rc;
}

int
main(int argc, char **argv)
{
    const char *dir = ".";
    double secs = 2;
    uint64_t size = BUF;
    int opt;

    if (argc < 2 || (strcmp(argv[1], "cpu") != 0 && strcmp(argv[1], "disk") != 0)) {
        fprintf(stderr, "usage: mrdceil cpu [-r REPS] | disk [-d DIR] [-r REPS] [-t SECONDS] "
                        "[-s SIZE]\n");
        return 2;
    }
    optind = 2;
    while ((opt = getopt(argc, argv, "d:r:t:s:")) != -1) {
        switch (opt) {
        case 'd':
            dir = optarg;
            break;
        case 'r':
            reps = atoi(optarg);
            break;
        case 't':
            secs = atof(optarg);
            break;
        case 's':
            if (mrd_size_parse(optarg, &size) != 0 || size < MIB) {
                fprintf(stderr, "mrdceil: bad -s %s (at least 1MiB)\n", optarg);
                return 2;
            }
            break;
        default:
            return 2;
        }
    }
    if (reps < 1 || reps > 64) {
        fprintf(stderr, "mrdceil: -r must be 1..64\n");
        return 2;
    }
    return strcmp(argv[1], "cpu") == 0 ? cpu_mode() : disk_mode(dir, secs, size);
}
