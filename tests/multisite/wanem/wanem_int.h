/*
 * wanem_int.h - private declarations shared by wanem's three files:
 *   wanem_main.c  command line, signals, start-up and shutdown;
 *   wanem_link.c  links, connections and the data path (delay, rate, partition);
 *   wanem_ctl.c   the line-based control channel.
 * wanem is a single-threaded program: every function here runs on the one
 * event loop thread and none is thread-safe.
 */
#ifndef MERIDIAN_WANEM_INT_H
#define MERIDIAN_WANEM_INT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/event.h>

#include "common.h"

#define WANEM_NAME_MAX 64

/* Direction indexes. "a" is the side that connects to the link's listen
 * address, "b" is the link's target. */
enum {
    WANEM_AB = 0,
    WANEM_BA = 1,
};

/* Bit set used by commands that take dir=ab|ba|both. */
enum {
    WANEM_DIR_AB = 1,
    WANEM_DIR_BA = 2,
    WANEM_DIR_BOTH = 3,
};

/* Defaults; every one can be changed per link and direction at run time. */
#define WANEM_QMAX_DEFAULT   (4u * 1024 * 1024) /* delay queue cap per connection+dir */
#define WANEM_QMAX_MIN       (64u * 1024)
#define WANEM_QMAX_LIMIT     (256u * 1024 * 1024)
#define WANEM_OUT_HIGH       (256u * 1024) /* bytes handed to a socket's output buffer */
#define WANEM_BURST_MIN      (16u * 1024)
#define WANEM_DELAY_LIMIT_MS 600000.0

typedef struct wanem_link wanem_link;
typedef struct wanem_conn wanem_conn;

/* The settings of one direction of a link. */
typedef struct wanem_dir_conf {
    uint64_t delay_ns;  /* one-way delay */
    uint64_t jitter_ns; /* extra delay, uniform in [0, jitter] */
    uint64_t rate;      /* bytes per second shared by all connections; 0 = unlimited */
    uint64_t burst;     /* token bucket depth in bytes; 0 = automatic */
    uint64_t qmax;      /* delay queue cap per connection, bytes */
    int partitioned;
    /* One-shot corruption: bytes still to release, over all connections,
     * before the next released byte is XORed with 0xff; -1 = disarmed.
     * Counts down as bytes leave and disarms itself after the flip. */
    int64_t corrupt_in;
} wanem_dir_conf;

/* Counters of one direction of a link. */
typedef struct wanem_dir_stats {
    uint64_t bytes_in;  /* read from the sending side */
    uint64_t bytes_out; /* handed to the receiving side */
    uint64_t queued;    /* now in delay queues or output buffers, all connections */
    uint64_t corrupted; /* bytes flipped by the corrupt setting */
} wanem_dir_stats;

/* Everything about one link a control client can see. */
typedef struct wanem_link_info {
    char name[WANEM_NAME_MAX];
    char listen[300];
    char target[300];
    wanem_dir_conf dir[2];
    wanem_dir_stats stats[2];
    uint64_t conns;       /* open now */
    uint64_t conns_total; /* accepted since the link was added */
    uint64_t resets;      /* connections killed by the reset command */
    uint64_t connect_failures;
    uint64_t waiting; /* accepted during a partition, target not yet dialled */
} wanem_link_info;

/* A setting change from "set" or from the command line. Fields with has_*
 * zero are left alone. */
typedef struct wanem_set {
    int dirs; /* WANEM_DIR_* */
    int has_delay, has_jitter, has_rate, has_burst, has_qmax, has_corrupt;
    uint64_t delay_ns, jitter_ns, rate, burst, qmax;
    int64_t corrupt; /* the new corrupt_in: -1 disarms */
} wanem_set;

/* ---- wanem_link.c ------------------------------------------------------- */

/* The process-wide state: one event base and the list of links. */
int wanem__init(struct event_base *base, uint64_t seed);
/* Resets every connection and frees every link. */
void wanem__shutdown(void);

/* Adds a link listening on listen_spec ("host:port", port 0 = any free
 * port) that forwards to target_spec. The name must be unique. On failure
 * writes a human-readable reason to err. */
int wanem__link_add(const char *name, const char *listen_spec, const char *target_spec, char *err,
                    size_t errsz);
/* Removes a link: closes its listener and resets its connections. */
int wanem__link_del(const char *name);
int wanem__link_set(const char *name, const wanem_set *s);
int wanem__link_partition(const char *name, int dirs, int on);
/* Kills every connection of the link with RST; *killed gets the count. */
int wanem__link_reset(const char *name, uint64_t *killed);
int wanem__link_info(const char *name, wanem_link_info *out);
/* Calls fn for each link name in creation order. */
void wanem__link_foreach(void (*fn)(const char *name, void *user_data), void *user_data);

/* Parses "key=value" settings (delay, jitter, rate, burst, qmax, corrupt,
 * dir) into s. Returns 0, or MRD_EINVAL with the reason in err. */
int wanem__set_parse_kv(wanem_set *s, const char *kv, char *err, size_t errsz);
/* 1 if s changes any setting (dir= alone changes nothing). */
int wanem__set_any(const wanem_set *s);

/* Resolves "host:port" (port 0 allowed) to a socket address. */
int wanem__addr_resolve(const char *spec, struct sockaddr_storage *ss, socklen_t *len);
/* Formats a socket address as host:port or [v6]:port. */
const char *wanem__addr_format(const struct sockaddr *sa, char *out, size_t outsz);

/* ---- wanem_ctl.c -------------------------------------------------------- */

/* Starts the control listener on a TCP address or a unix socket path
 * (exactly one of tcp_spec / unix_path is non-NULL). The bound address is
 * written to bound ("127.0.0.1:40123" or "unix:/path"). */
int wanem__ctl_start(struct event_base *base, const char *tcp_spec, const char *unix_path,
                     char *bound, size_t boundsz, char *err, size_t errsz);
void wanem__ctl_stop(void);

/* Runs one control command line (modified in place by tokenising) and writes
 * the one-line reply, without the newline, into out. Returns 1 if the client
 * asked to quit, else 0. */
int wanem__ctl_exec(char *line, mrd_buf *out);

#endif /* MERIDIAN_WANEM_INT_H */
