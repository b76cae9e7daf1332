/*
 * mrd_buf.c - a growable byte buffer for small documents (JSON, XML, log
 * lines). Object bodies never go through it: they stream. Capacity doubles,
 * and data stays NUL-terminated so text can be handed to printf-style APIs.
 */
#include "common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
mrd_buf_reserve(mrd_buf *b, size_t extra)
{
    size_t need = b->len + extra + 1, cap;
    char *p;

    if (need < b->len)
        return -ENOMEM;
    if (need <= b->cap)
        return 0;
    cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    p = realloc(b->data, cap);
    if (!p)
        return -ENOMEM;
    b->data = p;
    b->cap = cap;
    b->data[b->len] = '\0'; /* data is a valid C string from the first reserve */
    return 0;
}

int
mrd_buf_append(mrd_buf *b, const void *data, size_t len)
{
    int rc = mrd_buf_reserve(b, len);

    if (rc == 0) {
        if (len)
            memcpy(b->data + b->len, data, len);
        b->len += len;
        b->data[b->len] = '\0';
    }
    return rc;
}

int
mrd_buf_vappendf(mrd_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    int n, rc;

    va_copy(ap2, ap);
    n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return MRD_EINVAL;
    rc = mrd_buf_reserve(b, (size_t)n);
    if (rc == 0) {
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
        b->len += (size_t)n;
    }
    return rc;
}

int
mrd_buf_appendf(mrd_buf *b, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = mrd_buf_vappendf(b, fmt, ap);
    va_end(ap);
    return rc;
}

void
mrd_buf_reset(mrd_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void
mrd_buf_free(mrd_buf *b)
{
    if (!b)
        return;
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
