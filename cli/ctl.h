/*
 * ctl.h - meridianctl's internal API (the CLI is a program, not a library;
 * this header is shared only by the files of cli/).
 */
#ifndef MERIDIAN_CTL_H
#define MERIDIAN_CTL_H

#include "common.h"

typedef struct ctl_opts {
    char host[256];
    uint16_t port;
    char token[256];
    int json;
    int timeout_ms;
} ctl_opts;

typedef struct ctl_response {
    int status;
    mrd_buf body;
} ctl_response;

/* Sends one request to the admin API (HTTP/1.1, Connection: close) and reads
 * the whole response (capped at 64 MiB). Returns 0 with *out filled (free
 * its body), or a negated errno / MRD_EPROTO with a message in err. */
int ctl_http_request(const ctl_opts *o, const char *method, const char *path, const char *body,
                     ctl_response *out, char *err, size_t errsz);

/* Formats bytes as "1.5 GiB". Returns out. */
const char *ctl_human_bytes(uint64_t v, char *out, size_t outsz);
/* Formats seconds as "3d4h", "2h5m", "4m10s", "12s". Returns out. */
const char *ctl_human_duration(double s, char *out, size_t outsz);

#endif
