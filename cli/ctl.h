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

/* Sends method path to the admin API and parses its JSON answer. Returns 0
 * with *out (mrd_json_free it; free resp->body too), or a one-line reason
 * in err and -2 for bad input (unreachable or not an admin API, 401 bad
 * token, 400, 404 NoSuch*: an unknown peer, site or conflict) or -1 for
 * any other refusal or failure of the site. */
int ctl_call(const ctl_opts *o, const char *method, const char *path, ctl_response *resp,
             mrd_json **out, char *err, size_t errsz);
/* ctl_call that prints the reason as "meridianctl: ..." on stderr and
 * records the exit status the failure calls for. */
int ctl_request_json(const ctl_opts *o, const char *method, const char *path, ctl_response *resp,
                     mrd_json **out);
/* The exit status for the last ctl_request_json failure: 2 for bad input
 * (as ctl_call's -2), else 1. A command that failed (returned 1) exits with
 * this. */
int ctl_failure_exit(void);
/* Appends s percent-encoded for a query value (RFC 3986 unreserved kept),
 * NUL-terminated. */
void ctl_url_encode(mrd_buf *b, const char *s);
/* Writes the response body and a newline to stdout (--json). */
void ctl_print_body(const ctl_response *resp);

/* The commands of ctl_ops.c: argc/argv are what follows the command name.
 * Each returns the exit status (0 ok, 1 failed, 2 usage). */
int ctl_cmd_conflicts(const ctl_opts *o, int argc, char **argv);
int ctl_cmd_object(const ctl_opts *o, int argc, char **argv);
int ctl_cmd_drive(const ctl_opts *o, int argc, char **argv);
int ctl_cmd_failover(const ctl_opts *o, int argc, char **argv);
int ctl_cmd_failed(const ctl_opts *o, int argc, char **argv);

/* meridianctl site ... (ctl_site.c); argv after "site". Returns the exit code. */
int ctl_cmd_site(const ctl_opts *o, int argc, char **argv);
extern const char ctl_site_help[];

/* Formats bytes as "1.5 GiB". Returns out. */
const char *ctl_human_bytes(uint64_t v, char *out, size_t outsz);
/* Formats seconds as "3d4h", "2h5m", "4m10s", "12s". Returns out. */
const char *ctl_human_duration(double s, char *out, size_t outsz);

#endif
