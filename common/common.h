/*
 * common.h - the public API of Meridian's common module (prefix mrd_).
 *
 * Error codes, the key=value logger, growable buffers, a small JSON writer and
 * reader, the site configuration loader, the hybrid logical clock and CRC32C.
 * Every other module may include this header; it includes no third-party
 * header, so nothing of ISA-L leaks out.
 *
 * Conventions (see docs/architecture.md):
 *   - functions return 0 on success, a negative MRD_E* code or a negated errno;
 *   - output parameters come last and are written only on success;
 *   - whoever creates a thing frees it; the _free and _close functions accept NULL.
 */
#ifndef MERIDIAN_COMMON_H
#define MERIDIAN_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define MRD_VERSION "0.1.0"

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

/*
 * Meridian's own codes live in [-30999, -30000], out of errno's way, so one
 * int can carry either a MRD_E* code or a negated errno (-ENOENT, -EIO ...).
 */
enum {
    MRD_OK = 0,
    MRD_EFIRST = -30000,
    MRD_EINVAL = -30000,    /* bad argument or malformed input */
    MRD_ECONFIG = -30001,   /* configuration rejected */
    MRD_ECORRUPT = -30002,  /* checksum or structure mismatch in stored data */
    MRD_ENOTFOUND = -30003, /* no such bucket, key, version, record */
    MRD_EEXIST = -30004,    /* already exists */
    MRD_ETOOBIG = -30005,   /* over a configured limit */
    MRD_EPROTO = -30006,    /* peer or client broke the protocol */
    MRD_EDURABLE = -30007,  /* durability lost (fsync failed); writes refused */
    MRD_EDEGRADED = -30008, /* not enough healthy drives for the operation */
    MRD_EAUTH = -30009,     /* authentication failed */
    MRD_EBUSY = -30010,     /* resource busy, retry later */
    MRD_ESHUTDOWN = -30011, /* the component is shutting down */
    MRD_ELAST = -30011,
};

/* Returns a static, human-readable string for any code this project returns:
 * 0, MRD_E* or a negated errno. Never returns NULL. Thread-safe. */
const char *mrd_strerror(int err);

/* ------------------------------------------------------------------------ */
/* Logging                                                                  */
/* ------------------------------------------------------------------------ */

/*
 * One line per event, logfmt style:
 *   ts=2026-11-22T10:00:00.123Z level=info site=a event=http.listen addr=127.0.0.1:9001
 * The caller passes the event name and a printf format for the remaining
 * key=value fields. Values with spaces must be quoted by the caller with
 * mrd_log_quote(). Each line is written with one write(2), so lines from
 * several threads do not interleave. The level check runs before any
 * formatting.
 */
typedef enum {
    MRD_LOG_DEBUG = 0,
    MRD_LOG_INFO = 1,
    MRD_LOG_WARN = 2,
    MRD_LOG_ERROR = 3,
    MRD_LOG_OFF = 4,
} mrd_log_level;

extern int mrd__log_min_level;

/* Sets the minimum level (default INFO) and the site label added to each line.
 * The site string is copied. Not thread-safe: call at start-up. */
void mrd_log_setup(mrd_log_level min_level, const char *site);
/* Sends log lines to fd (default 2). */
void mrd_log_set_fd(int fd);
/* Parses "debug", "info", "warn", "error", "off"; returns -1 if unknown. */
int mrd_log_level_parse(const char *s);

void mrd_log_write(mrd_log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define MRD_LOG(level, event, ...)                                                                 \
    do {                                                                                           \
        if ((int)(level) >= mrd__log_min_level)                                                    \
            mrd_log_write((level), (event), __VA_ARGS__);                                          \
    } while (0)
#define MRD_DEBUG(event, ...) MRD_LOG(MRD_LOG_DEBUG, event, __VA_ARGS__)
#define MRD_INFO(event, ...)  MRD_LOG(MRD_LOG_INFO, event, __VA_ARGS__)
#define MRD_WARN(event, ...)  MRD_LOG(MRD_LOG_WARN, event, __VA_ARGS__)
#define MRD_ERROR(event, ...) MRD_LOG(MRD_LOG_ERROR, event, __VA_ARGS__)

/* Copies s into out (size outsz) as a logfmt value: quoted and escaped if it
 * holds spaces, quotes, '=' or control bytes, verbatim otherwise. Truncates to
 * fit. Returns out. */
const char *mrd_log_quote(const char *s, char *out, size_t outsz);

/* ------------------------------------------------------------------------ */
/* Growable byte buffer                                                     */
/* ------------------------------------------------------------------------ */

/* A plain struct: callers may read data/len directly. data is NUL-terminated
 * whenever len > 0 or after any append. Zero-initialise, then mrd_buf_free. */
typedef struct mrd_buf {
    char *data;
    size_t len;
    size_t cap;
} mrd_buf;

int mrd_buf_reserve(mrd_buf *b, size_t extra);
int mrd_buf_append(mrd_buf *b, const void *data, size_t len);
int mrd_buf_appendf(mrd_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int mrd_buf_vappendf(mrd_buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
void mrd_buf_reset(mrd_buf *b);
void mrd_buf_free(mrd_buf *b);

/* ------------------------------------------------------------------------ */
/* JSON                                                                     */
/* ------------------------------------------------------------------------ */

/*
 * Writer: appends to an mrd_buf and inserts commas itself. Nesting depth is
 * limited to MRD_JSON_MAX_DEPTH. Errors are sticky: check mrd_json_w_error()
 * (or the buffer) once at the end.
 */
#define MRD_JSON_MAX_DEPTH 32

typedef struct mrd_json_w {
    mrd_buf *out;
    int depth;
    int err;
    unsigned char need_comma[MRD_JSON_MAX_DEPTH];
} mrd_json_w;

void mrd_json_w_init(mrd_json_w *w, mrd_buf *out);
void mrd_json_w_obj_begin(mrd_json_w *w);
void mrd_json_w_obj_end(mrd_json_w *w);
void mrd_json_w_arr_begin(mrd_json_w *w);
void mrd_json_w_arr_end(mrd_json_w *w);
/* Writes "key": ; the next value call writes the value. */
void mrd_json_w_key(mrd_json_w *w, const char *key);
void mrd_json_w_str(mrd_json_w *w, const char *s);
void mrd_json_w_int(mrd_json_w *w, int64_t v);
void mrd_json_w_uint(mrd_json_w *w, uint64_t v);
void mrd_json_w_double(mrd_json_w *w, double v);
void mrd_json_w_bool(mrd_json_w *w, int v);
void mrd_json_w_null(mrd_json_w *w);
int mrd_json_w_error(const mrd_json_w *w);

/*
 * Reader: parses a whole document into a tree. Strict RFC 8259 (no comments,
 * no trailing commas), depth-limited, with \u escapes decoded to UTF-8.
 * Meant for small admin documents, not for object bodies.
 */
typedef enum {
    MRD_JSON_NULL,
    MRD_JSON_BOOL,
    MRD_JSON_NUMBER,
    MRD_JSON_STRING,
    MRD_JSON_ARRAY,
    MRD_JSON_OBJECT,
} mrd_json_type;

typedef struct mrd_json mrd_json;
struct mrd_json {
    mrd_json_type type;
    char *key;       /* member name when the parent is an object, else NULL */
    char *str;       /* STRING value (NUL-terminated, may contain NUL) */
    size_t str_len;  /* STRING length */
    double num;      /* NUMBER value; BOOL as 0/1 */
    mrd_json *child; /* first element / member */
    mrd_json *next;  /* next sibling */
};

/* Parses text[0..len). On success *out owns the tree; free it with
 * mrd_json_free. On failure returns MRD_EINVAL and, if errpos is not NULL,
 * stores the byte offset of the error there. */
int mrd_json_parse(const char *text, size_t len, mrd_json **out, size_t *errpos);
void mrd_json_free(mrd_json *j);
/* Member lookup in an object; NULL if j is not an object or has no such key.
 * The returned node is owned by the tree. */
const mrd_json *mrd_json_get(const mrd_json *j, const char *key);
/* Convenience accessors with a default when absent or of another type. */
const char *mrd_json_get_str(const mrd_json *j, const char *key, const char *dflt);
double mrd_json_get_num(const mrd_json *j, const char *key, double dflt);

/* ------------------------------------------------------------------------ */
/* Configuration                                                            */
/* ------------------------------------------------------------------------ */

/*
 * One INI file per site; the full reference is docs/configuration.md.
 * Every value is validated; the first problem is reported as
 *   <file>:<line>: [<section>] <key>: <what is wrong and what to do>
 * (line 0 when the problem is a missing key).
 */
#define MRD_MAX_DRIVES     64
#define MRD_MAX_PEERS      32
#define MRD_MAX_USERS      64
#define MRD_NAME_MAX       64
#define MRD_MAX_S3_DOMAINS 8
/* [s3] loops: at most this many S3 event-loop threads; the default is the
 * number of online CPUs, at most MRD_DEFAULT_S3_LOOPS */
#define MRD_MAX_S3_LOOPS     64
#define MRD_DEFAULT_S3_LOOPS 8

typedef struct mrd_addr {
    char host[256]; /* numeric IPv4/IPv6 or a name */
    uint16_t port;
} mrd_addr;

typedef struct mrd_peer_conf {
    char name[MRD_NAME_MAX];
    uint32_t id;
    mrd_addr replication; /* where its replication listener is */
    mrd_addr s3;          /* where its S3 listener is (for routed reads) */
    int has_s3;
    mrd_addr admin; /* where its admin API is (meridianctl asks it directly) */
    int has_admin;
    uint64_t bandwidth;  /* bytes per second our records to it may use; 0 = no limit */
    uint8_t tls_pin[32]; /* mutual TLS: SHA-256 of its certificate or of its SPKI */
    int has_tls_pin;
    /* Forwarded S3 requests go over TLS to here (its S3 TLS listener)
     * instead of to s3, the certificate checked by s3_tls_pin, else by
     * tls_pin, else by the CA and its site name (tls_identify). */
    mrd_addr s3_tls;
    int has_s3_tls;
    uint8_t s3_tls_pin[32];
    int has_s3_tls_pin;
} mrd_peer_conf;

/* Parses a certificate pin: the SHA-256 of a certificate or its SPKI, 64 hex
 * digits, colons and a "sha256:" prefix allowed. 0 or MRD_EINVAL. */
int mrd_pin_parse(const char *s, uint8_t out[32]);

typedef struct mrd_user_conf {
    char name[MRD_NAME_MAX];
    char access_key[128];
    char secret_key[128];
} mrd_user_conf;

typedef enum {
    MRD_WRITE_FAILOVER_REFUSE = 0,
    MRD_WRITE_FAILOVER_FORWARD = 1,
} mrd_write_failover;

typedef struct mrd_config {
    char path[1024]; /* the file it was loaded from */

    /* [site] */
    uint32_t site_id;
    char site_name[MRD_NAME_MAX];
    char region[MRD_NAME_MAX];

    /* [listen] */
    mrd_addr listen_s3;
    mrd_addr listen_replication;
    mrd_addr listen_admin;
    mrd_addr listen_s3_tls; /* optional second S3 listener speaking TLS */
    int has_s3_tls;

    /* [s3] */
    char s3_tls_cert[1024]; /* PEM certificate chain of the TLS listener */
    char s3_tls_key[1024];
    int s3_loops;           /* event-loop threads serving S3; 0 = online CPUs, at most
                               MRD_DEFAULT_S3_LOOPS (meridiand decides) */
    int s3_max_connections; /* open S3 connections, all loops and listeners
                               together; 0 = 4096 */
    int s3_max_uploads;     /* large uploads holding their buffers at once, all
                               loops together; more wait unread; 0 = no limit */
    int s3_max_downloads;   /* large downloads holding their buffers at once, all loops; 0 = no
                               limit */

    /* [s3]: domains under which <bucket>.<domain> names a bucket
     * (virtual-host-style addressing); lower case, no port */
    char s3_domains[MRD_MAX_S3_DOMAINS][256];
    int n_s3_domains;

    /* [store] */
    char *data_dirs[MRD_MAX_DRIVES];
    int n_data_dirs;
    int ec_k;
    int ec_m;
    uint32_t block_size;
    char meta_dir[1024];         /* LMDB index and WAL; default <first data dir>/../meta */
    uint32_t multipart_expire_s; /* abort uploads older than this; 0 = never */

    /* [wal] */
    uint64_t wal_segment_bytes;
    uint64_t wal_retention_bytes;

    /* [replication] */
    char replication_secret[256];
    uint32_t anti_entropy_s; /* periodic digest comparison with each peer; 0 = off */
    uint32_t gc_interval_s;  /* delete marker and tombstone purge sweeps; 0 = off (default 600) */
    uint32_t gc_grace_s;     /* wait past stability before a purge (default 3600) */
    uint32_t conflict_retention_s; /* hidden conflict losers kept (default 604800) */
    uint32_t summary_page_bytes;   /* anti-entropy summaries a page, answered to a peer; 0: 4 MiB */
    uint32_t failed_after_s;   /* a version not replicated this long after its write is FAILED; 0 =
                                  never */
    uint32_t max_clock_skew_s; /* peer auth: |peer clock - ours| allowed; default 900 */
    mrd_write_failover write_failover;
    uint32_t token_wait_ms;   /* a read with a write token waits this long, then proxies */
    char repl_tls_cert[1024]; /* set: links are mutual TLS (h2 by ALPN), else h2c */
    char repl_tls_key[1024];
    char repl_tls_ca[1024]; /* optional: peers with a cert from it, CN = site name */

    /* [admin] */
    char admin_token[256];

    /* [log] */
    int log_level;

    /* [peer.<name>] */
    mrd_peer_conf peers[MRD_MAX_PEERS];
    int n_peers;

    /* [user.<name>] */
    mrd_user_conf users[MRD_MAX_USERS];
    int n_users;
} mrd_config;

/*
 * Loads and validates path. On success *out is a new config owned by the
 * caller (mrd_config_free). On failure returns MRD_ECONFIG (or -errno when the
 * file cannot be read) and writes the precise message into err (size errsz).
 */
int mrd_config_load(const char *path, mrd_config **out, char *err, size_t errsz);
/* Same, from a string; name is used in messages. */
int mrd_config_parse(const char *name, const char *text, size_t len, mrd_config **out, char *err,
                     size_t errsz);
void mrd_config_free(mrd_config *c);

/* 1 when s is a valid site, peer or user name: 1-63 of [a-z0-9_-]. */
int mrd_name_valid(const char *s);
/* Parses "host:port" or "[v6]:port". Returns 0 or MRD_EINVAL. */
int mrd_addr_parse(const char *s, mrd_addr *out);
/* Formats as host:port ([v6]:port). Returns out. */
const char *mrd_addr_format(const mrd_addr *a, char *out, size_t outsz);
/* Parses sizes such as "4096", "64KiB", "1MiB", "2GiB", "1.5GB". */
int mrd_size_parse(const char *s, uint64_t *out);

/* ------------------------------------------------------------------------ */
/* Hybrid logical clock                                                     */
/* ------------------------------------------------------------------------ */

/*
 * A stamp is 64 bits: the upper 48 are physical milliseconds since the Unix
 * epoch, the lower 16 a logical counter. Stamps compare as plain integers.
 * mrd_hlc_now() never returns a stamp <= any stamp it returned before or any
 * stamp passed to mrd_hlc_observe(), so an event caused by a replicated write
 * is stamped after it even on a site whose wall clock runs behind.
 */
typedef uint64_t mrd_hlc_stamp;

#define MRD_HLC_LOGICAL_BITS 16
#define MRD_HLC_MS(stamp)    ((uint64_t)(stamp) >> MRD_HLC_LOGICAL_BITS)
#define MRD_HLC_LOGICAL(st)  ((uint64_t)(st)&0xffffu)

/* Wall clock in milliseconds since the epoch. Injected for tests. */
typedef uint64_t (*mrd_clock_fn)(void *user_data);

typedef struct mrd_hlc mrd_hlc;

/* Creates a clock; clock NULL means CLOCK_REALTIME. */
int mrd_hlc_new(mrd_clock_fn clock, void *user_data, mrd_hlc **out);
void mrd_hlc_free(mrd_hlc *h);
/* A new stamp for a local event. Thread-safe. */
mrd_hlc_stamp mrd_hlc_now(mrd_hlc *h);
/* Merges a stamp received from a peer; returns the clock's new value, which
 * is > remote. Thread-safe. */
mrd_hlc_stamp mrd_hlc_observe(mrd_hlc *h, mrd_hlc_stamp remote);
/* The default wall clock (CLOCK_REALTIME in ms). */
uint64_t mrd_clock_realtime_ms(void *user_data);
/* Monotonic clock in nanoseconds, for durations. */
uint64_t mrd_clock_mono_ns(void);

/* ------------------------------------------------------------------------ */
/* CRC32C                                                                   */
/* ------------------------------------------------------------------------ */

/* CRC32C (Castagnoli, as in iSCSI and ext4), hardware accelerated by ISA-L.
 * Chain calls by passing the previous result as crc; start with 0.
 * mrd_crc32c(0, "123456789", 9) == 0xE3069283. */
uint32_t mrd_crc32c(uint32_t crc, const void *buf, size_t len);

/* ------------------------------------------------------------------------ */
/* Small helpers                                                            */
/* ------------------------------------------------------------------------ */

/* Constant-time comparison of two byte strings of possibly different length.
 * Returns 1 when equal. Time depends only on the lengths. */
int mrd_consttime_equal(const void *a, size_t alen, const void *b, size_t blen);

/* fsync a directory, making the entries created or renamed in it durable. */
int mrd_fsync_dir(const char *dir);
/* fsync the directory that holds path (after create/rename). */
int mrd_fsync_parent_dir(const char *path);
/* mkdir -p with mode 0755. */
int mrd_mkdir_p(const char *path);

#endif /* MERIDIAN_COMMON_H */
