/*
 * mrd_log.c - the levelled key=value logger.
 *
 * Lines are logfmt: a timestamp, the level, the site, the event name, then
 * whatever key=value fields the caller formats. The MRD_LOG macro checks the
 * level before any argument is evaluated, so a debug line costs one compare
 * when debug is off. A line is assembled in a stack buffer and written with a
 * single write(2): lines from concurrent threads never interleave, and a line
 * longer than the buffer is truncated (marked with "...") rather than split.
 * conflict/ and wal/ never log; they return codes and let callers decide.
 */
#include "common.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int mrd__log_min_level = MRD_LOG_INFO;
static int log_fd = 2;
static char log_site[MRD_NAME_MAX] = "-";

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

void
mrd_log_setup(mrd_log_level min_level, const char *site)
{
    mrd__log_min_level = (int)min_level;
    if (site && *site)
        snprintf(log_site, sizeof(log_site), "%s", site);
}

void
mrd_log_set_fd(int fd)
{
    log_fd = fd;
}

int
mrd_log_level_parse(const char *s)
{
    for (int i = 0; i <= MRD_LOG_OFF; i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    if (strcmp(s, "warning") == 0)
        return MRD_LOG_WARN;
    return -1;
}

void
mrd_log_write(mrd_log_level level, const char *event, const char *fmt, ...)
{
    char line[2048];
    struct timeval tv;
    struct tm tm;
    size_t n;
    int r;
    va_list ap;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    n = strftime(line, sizeof(line), "ts=%Y-%m-%dT%H:%M:%S", &tm);
    r = snprintf(line + n, sizeof(line) - n, ".%03dZ level=%s site=%s event=%s",
                 (int)(tv.tv_usec / 1000),
                 level_names[level > MRD_LOG_ERROR ? MRD_LOG_ERROR : level], log_site, event);
    n += (size_t)r;
    if (fmt && *fmt && n < sizeof(line) - 2) {
        line[n++] = ' ';
        va_start(ap, fmt);
        r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
        va_end(ap);
        if (r < 0)
            r = 0;
        n += (size_t)r;
    }
    if (n >= sizeof(line) - 1) {
        n = sizeof(line) - 5;
        memcpy(line + n, "...", 3);
        n += 3;
    }
    line[n++] = '\n';
    /* One write per line; a short write to a pipe or tty is not retried
     * piecewise because that would interleave with other writers. */
    while (write(log_fd, line, n) < 0 && errno == EINTR)
        ;
}

const char *
mrd_log_quote(const char *s, char *out, size_t outsz)
{
    size_t o = 0;
    int need = (*s == '\0');

    if (outsz == 0)
        return out;
    for (const char *p = s; *p; p++)
        if (*p == ' ' || *p == '"' || *p == '=' || (unsigned char)*p < 0x20)
            need = 1;
    if (!need) {
        snprintf(out, outsz, "%s", s);
        return out;
    }
    if (outsz < 3) {
        out[0] = '\0';
        return out;
    }
    out[o++] = '"';
    for (const char *p = s; *p && o + 4 < outsz; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)snprintf(out + o, outsz - o, "\\x%02x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o++] = '"';
    out[o] = '\0';
    return out;
}
