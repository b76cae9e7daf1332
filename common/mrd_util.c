/*
 * mrd_util.c - CRC32C, clocks, constant-time compare and directory helpers.
 *
 * CRC32C goes through ISA-L's crc32_iscsi, which uses the SSE4.2/PCLMUL
 * paths (about 33 GB/s per core here, see docs/benchmarks.md). ISA-L's
 * function neither pre- nor post-inverts and takes an int length, so this
 * wrapper applies the standard inversions and splits long buffers; the
 * result matches the Castagnoli check value 0xE3069283 for "123456789".
 */
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <isa-l.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

uint32_t
mrd_crc32c(uint32_t crc, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    uint32_t c = ~crc;

    while (len > 0) {
        size_t n = len > (size_t)(INT_MAX / 2) ? (size_t)(INT_MAX / 2) : len;
        c = crc32_iscsi((unsigned char *)p, (int)n, c);
        p += n;
        len -= n;
    }
    return ~c;
}

uint64_t
mrd_clock_realtime_ms(void *user_data)
{
    struct timespec ts;

    (void)user_data;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t
mrd_clock_mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int
mrd_consttime_equal(const void *a, size_t alen, const void *b, size_t blen)
{
    const volatile unsigned char *x = a, *y = b;
    unsigned char diff = (unsigned char)(alen != blen);
    size_t n = alen < blen ? alen : blen;

    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(x[i] ^ y[i]);
    return diff == 0;
}

int
mrd_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;

    if (fd < 0)
        return -errno;
    if (fsync(fd) != 0)
        rc = -errno;
    close(fd);
    return rc;
}

int
mrd_fsync_parent_dir(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');

    if (!slash) {
        snprintf(dir, sizeof(dir), ".");
    } else if (slash == path) {
        snprintf(dir, sizeof(dir), "/");
    } else {
        if ((size_t)(slash - path) >= sizeof(dir))
            return -ENAMETOOLONG;
        memcpy(dir, path, (size_t)(slash - path));
        dir[slash - path] = '\0';
    }
    return mrd_fsync_dir(dir);
}

int
mrd_mkdir_p(const char *path)
{
    char tmp[PATH_MAX];
    size_t len = strlen(path);

    if (len == 0 || len >= sizeof(tmp))
        return MRD_EINVAL;
    memcpy(tmp, path, len + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
        return -errno;
    return 0;
}
