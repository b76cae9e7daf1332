/*
 * http_testsrv.h - a small application on the gateway HTTP layer, used by
 * http_test (in-process, on a thread) and by the http_sink program that the
 * integration tests drive (1 GiB streaming with RSS measured).
 */
#ifndef MERIDIAN_HTTP_TESTSRV_H
#define MERIDIAN_HTTP_TESTSRV_H

#include "gateway.h"

struct event_base;

typedef struct testsrv_counters {
    int released_ok;
    int released_aborted;
    uint64_t max_held_bytes; /* largest single body chunk handed to a handler */
} testsrv_counters;

/* Routes:
 *   GET|HEAD /hello           200 "hello"
 *   PUT|POST /sink[?pause=1]  streams the body, answers "bytes=N crc32=X" (zlib CRC-32);
 *                             with pause=1 it pauses after every chunk and
 *                             resumes from a 1 ms timer; with stall_ms=N it
 *                             pauses once, on the first chunk, for N ms;
 *                             with hold_ms=N it pauses as soon as it attaches
 *                             and resumes after N ms (or, with refuse=1,
 *                             answers 403 without reading the body)
 *   GET /stream?n=N           N pattern bytes, chunked, produced on demand
 *                             through ops->writable
 *   PUT /deny                 403 before reading the body
 *   anything else             404
 */
int testsrv_start(struct event_base *base, const gw_http_limits *lim, const char *host,
                  uint16_t port, uint16_t *bound, gw_http_server **out);
const testsrv_counters *testsrv_counters_get(void);
/* The byte at offset i of /stream output. */
unsigned char testsrv_pattern(uint64_t i);

#endif
