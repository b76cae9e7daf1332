/*
 * gw_int.h - private to the gateway module: the daemon's state shared by
 * gw_main.c (start-up, signals, drives) and gw_admin.c (health, admin API,
 * metrics). Not included by any other module.
 */
#ifndef MERIDIAN_GW_INT_H
#define MERIDIAN_GW_INT_H

#include "common.h"
#include "gateway.h"

struct evconnlistener;
struct event;

typedef enum { GW_DRIVE_ONLINE = 0, GW_DRIVE_OFFLINE = 1 } gw_drive_state;

typedef struct gw_drive {
    const char *path; /* owned by the config */
    gw_drive_state state;
    int err; /* last error (0 or negative), shown when offline */
    uint64_t total_bytes;
    uint64_t free_bytes;
} gw_drive;

typedef struct gw_daemon {
    mrd_config *conf;
    struct event_base *base;
    gw_http_server *s3;
    gw_http_server *admin;
    struct evconnlistener *repl;
    struct event *sig_term, *sig_int, *drain_timer, *drive_timer;
    uint64_t started_ms;
    uint64_t started_mono_ns;
    gw_drive drives[MRD_MAX_DRIVES];
    int n_drives;
    int lock_fd;
    int shutting_down;
} gw_daemon;

/* Route functions for the two HTTP servers (gw_admin.c). */
void gw__route_s3(gw_req *r, void *daemon);
void gw__route_admin(gw_req *r, void *daemon);
/* Number of drives that passed the last probe. */
int gw__drives_online(const gw_daemon *d);
/* Ready = enough drives for k-of-(k+m) writes and not shutting down. */
int gw__ready(const gw_daemon *d);

#endif
