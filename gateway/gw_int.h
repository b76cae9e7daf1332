/*
 * gw_int.h - private to the gateway module: the daemon's state shared by
 * gw_main.c (start-up, signals, drives), gw_admin.c (health, admin API,
 * metrics) and the S3 API (gw_s3*.c, gw_sigv4.c, gw_xml.c). Not included by
 * any other module; the unit tests and fuzz targets of the gateway use it.
 */
#ifndef MERIDIAN_GW_INT_H
#define MERIDIAN_GW_INT_H

/* x-amz-replication-status turns from PENDING to FAILED after this long (the
 * version keeps being retried and may still complete). */
/* [replication] failed_after: a version not replicated this long is FAILED */
#define GW_REPLICATION_FAILED_MS(d) ((uint64_t)(d)->conf->failed_after_s * 1000u)

#include <pthread.h>

#include "common.h"
#include "gateway.h"

/* Shared daemon state that S3 loop threads read while the main loop writes
 * it (flags, counters, drive states): atomic loads and stores. */
#define GW_LOAD(x)     __atomic_load_n(&(x), __ATOMIC_ACQUIRE)
#define GW_STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELEASE)
#define GW_ADD(x, v)   __atomic_fetch_add(&(x), (v), __ATOMIC_RELAXED)

struct evconnlistener;
struct event;
struct engine;
struct store;
struct store_reader;
struct store_version_rec;
struct store_put_result;
struct engine_kv;

typedef enum { GW_DRIVE_ONLINE = 0, GW_DRIVE_OFFLINE = 1 } gw_drive_state;

/* Written by the main loop's probe; read by S3 loops (routing, readiness)
 * and admin jobs on engine workers: state, err and the byte counts with
 * GW_LOAD / GW_STORE. */
typedef struct gw_drive {
    const char *path; /* owned by the config */
    gw_drive_state state;
    int err; /* last error (0 or negative), shown when offline */
    uint64_t total_bytes;
    uint64_t free_bytes;
} gw_drive;

/* Why a request went to a peer (gw_route.c; metrics label "reason"). */
typedef enum {
    GW_ROUTE_BEHIND = 0, /* key missing here while this site is behind a peer */
    GW_ROUTE_STORE,      /* the local store cannot serve the read */
    GW_ROUTE_TOKEN,      /* a write token this site has not applied in time */
    GW_ROUTE_DRAIN,      /* the operator drained this site */
    GW_ROUTE_WRITE,      /* write failover: the local store cannot take writes */
    GW_ROUTE_UPLOAD,     /* a multipart upload another site holds */
    GW_ROUTE__COUNT
} gw_route_reason;

/* Routing state and counters (gw_route.c). Every S3 loop updates them:
 * counters with GW_ADD, drained and read_failed_ns with GW_LOAD/GW_STORE;
 * store_reads_ok and store_writes_ok under mu (transition). */
typedef struct gw_route_state {
    pthread_mutex_t mu;
    int drained;             /* POST /admin/v1/failover/drain */
    int store_reads_ok;      /* last seen: local reads work (for transition events) */
    int store_writes_ok;     /* last seen: local writes work */
    uint32_t token_wait_ms;  /* how long a token read waits before proxying */
    uint64_t read_failed_ns; /* when a local read last found its data unreadable */
    uint64_t proxied[GW_ROUTE__COUNT];
    uint64_t proxy_errors;     /* no peer answered: the client got the fallback */
    uint64_t proxy_retries;    /* a peer failed before answering; the next was tried */
    uint64_t proxy_reused;     /* forwarded on a kept-alive connection */
    uint64_t local_misses;     /* 404 answered here, caught up: no WAN trip */
    uint64_t served_for_peers; /* requests peers forwarded to us */
    uint64_t token_local;      /* token already applied: served here */
    uint64_t token_waited;     /* served here after waiting for the token */
    uint64_t writes_refused;   /* write_failover = refuse (or no peer) */
    uint64_t transitions;      /* route.* state changes */
    int proxies_open;
} gw_route_state;

/*
 * One S3 event loop (gw_loop.c): its own event_base, its own S3 server
 * listening on the S3 address(es) with SO_REUSEPORT, and its own engine
 * completion queue, so the requests it accepts are served start to end on
 * its thread. With [s3] loops = 1 the only loop is the main loop itself
 * (no thread, the engine's default queue), as before loops existed.
 */
typedef struct gw_loop {
    struct gw_daemon *d;
    int idx;
    struct event_base *base;
    gw_http_server *s3;
    struct engine_cq *cq;  /* threads only; made once the engine is open */
    struct event *cq_ev;   /* watches cq */
    struct event *stop_ev; /* main -> loop: stop listening (event_active) */
    pthread_t thread;
    int threaded, started;
    uint64_t requests; /* S3 requests routed on this loop (GW_ADD) */
} gw_loop;

/*
 * What S3 loops may know of the replicator and the topology (gw_loop.c).
 * The replicator belongs to the main loop; the main loop copies what
 * routing needs into this view (every GW_VIEW_MS, and at once on a peer
 * state or topology change), and S3 loops read the copy under mu (a
 * read lock). repl is kept for repl_proxy_sign / repl_proxy_check only,
 * which read what never changes, and is cleared (write lock) before the
 * replicator is freed.
 */
struct repl_peer_info;
typedef struct gw_view {
    pthread_rwlock_t mu;
    struct repl *repl;
    int n_conf;                        /* the topology's peers (d->conf->peers) */
    mrd_peer_conf conf[MRD_MAX_PEERS]; /* ... copied */
    int n_info;
    struct repl_peer_info *info; /* MRD_MAX_PEERS entries: repl_peer_get of live peers */
} gw_view;

typedef struct gw_daemon {
    mrd_config *conf;
    struct event_base *base; /* the main loop: admin, replication, probes, signals */
    gw_http_server *admin;
    gw_loop *loops; /* [s3] loops of them; loops[0].s3 is on base when n_loops == 1 */
    int n_loops;
    int s3_conns_open; /* every loop's open S3 connections: [s3] max_connections */
    gw_view view;
    struct event *view_timer, *probe_ev; /* probe_ev: an S3 loop asks for a drive probe */
    struct evconnlistener *repl;         /* replication listener, served by replicator */
    struct repl *replicator;             /* peer links, health, RTT (replicator/) */
    struct tls_ctx *s3_tls;              /* [listen] s3_tls: the S3 TLS listener's context */
    struct tls_ctx *repl_tls;            /* [replication] tls_cert: mutual TLS links */
    struct tls_ctx *proxy_tls;           /* forwarding to a peer's s3_tls: client side */
    struct event *sig_term, *sig_int, *sig_hup, *drain_timer, *drive_timer;
    uint64_t started_ms;
    uint64_t started_mono_ns;
    gw_drive drives[MRD_MAX_DRIVES];
    int n_drives;
    int lock_fd;
    int shutting_down;    /* GW_LOAD / GW_STORE */
    uint64_t removed_at;  /* GW_LOAD / GW_STORE: epoch of a topology without us, or 0 */
    struct engine *eng;   /* NULL while the store cannot open (too few drives); set once,
                             published with GW_STORE */
    struct event *eng_ev; /* engine_fd watcher: runs engine completions */
    int wal_salvage;      /* --wal-salvage */
    gw_route_state route; /* gw_route.c */
    struct event *route_timer;
} gw_daemon;

/* ---- S3 loops and the view (gw_loop.c) ------------------------------------ */

#define GW_VIEW_MS 20

/* Sets up d->n_loops loops (their servers and listeners, no thread yet).
 * 0, or an error after saying why on stderr. */
int gw__loops_init(gw_daemon *d);
/* Starts the loop threads (n_loops > 1). */
int gw__loops_start(gw_daemon *d);
/* Main loop: every loop stops listening (shutdown). */
void gw__loops_stop_listening(gw_daemon *d);
/* Open S3 connections, all loops together (any thread). */
int gw__loops_conn_count(gw_daemon *d);
/* Main loop: the loop threads leave their event loops, free their servers,
 * and are joined. Call after the main loop has left its own. */
void gw__loops_join(gw_daemon *d);
/* Frees what gw__loops_init made (after engine_close: a callback still
 * queued for a loop may use its event_base). */
void gw__loops_free(gw_daemon *d);
/* The loop the calling thread runs, NULL on the main loop when there are
 * loop threads. */
gw_loop *gw__loop_self(void);
/* The event_base of the calling thread's loop (d->base on the main loop). */
struct event_base *gw__base(gw_daemon *d);
/* The engine, once open (an acquire load); on a loop thread it also makes
 * and binds the loop's completion queue the first time. */
struct engine *gw__engine(gw_daemon *d);
/* Asks the main loop for a drive probe (any thread; asynchronous). */
void gw__probe_drives_soon(gw_daemon *d);
/* S3 counters per loop for /admin/v1/status ("s3_loops") and /metrics. */
void gw__loops_status_json(gw_daemon *d, mrd_json_w *w);
void gw__loops_metrics(gw_daemon *d, mrd_buf *b);
/* All loops' S3 servers' counters, summed. */
void gw__loops_stats(gw_daemon *d, gw_http_stats *out);

/* Main loop: copies the replicator's peers and the topology into d->view. */
void gw__view_refresh(gw_daemon *d);
/* Read access to the view from any thread; every gw__view_lock is paired
 * with gw__view_unlock. */
const gw_view *gw__view_lock(gw_daemon *d);
void gw__view_unlock(gw_daemon *d);
/* In a locked view: the entry of peer id in info (NULL if none); its
 * topology entry (NULL if none). */
const struct repl_peer_info *gw__view_peer(const gw_view *v, uint32_t id);
const mrd_peer_conf *gw__view_conf(const gw_view *v, uint32_t id);
/* repl_version_status from the view (x-amz-replication-status). */
const char *gw__view_version_status(gw_daemon *d, uint32_t origin, uint64_t hlc, uint64_t now_ms);

/* JSON answers of the admin API (gw_admin.c): b is sent and left empty;
 * an error is {"error":{"code","message"}}. */
void gw__json_response(gw_req *r, int status, mrd_buf *b);
void gw__json_error(gw_req *r, int status, const char *code, const char *message);
/* /admin/v1/sites[/<name>] (gw_topo.c); 1 when path was one of them. */
int gw__admin_sites(gw_req *r, gw_daemon *d, const char *path);
/* The daemon's entry for peer site id (its name, S3 address), NULL if none
 * (gw_topo.c). The list changes with the topology: do not keep the pointer. */
const mrd_peer_conf *gw__peer_conf(const gw_daemon *d, uint32_t id);
/* The replicator adopted topology t: the daemon's peer list follows it. */
struct repl_topology;
void gw__on_topology(void *ud, const struct repl_topology *t);

/* Route functions for the two HTTP servers (gw_s3.c, gw_admin.c). */
void gw__route_s3(gw_req *r, void *daemon);
void gw__route_admin(gw_req *r, void *daemon);
/* Answers /health/live and /health/ready (both ports); 1 if it did. */
int gw__route_health(gw_req *r, gw_daemon *d);
/* Probes every drive now (blocking: a small write and fdatasync each).
 * Main loop only; other threads use gw__probe_drives_soon. */
void gw__probe_drives(gw_daemon *d);
/* The admin endpoints that read the store (gw_admin_ops.c): conflicts,
 * object status, drives and heal. Called after authentication; 1 if it
 * answered (or will, asynchronously). */
int gw__route_admin_ops(gw_req *r, gw_daemon *d);
/* Number of drives that passed the last probe. */
int gw__drives_online(const gw_daemon *d);

struct store_drive_status;
typedef enum { GW_DRIVE_OK = 0, GW_DRIVE_FULL = 1, GW_DRIVE_FAILED = 2 } gw_drive_verdict;
/* What an operator is told about drive i: FAILED when the daemon's probe or
 * the store's own I/O took it offline, FULL when a write found no space
 * (it still serves reads), else OK; *why (may be NULL) says why in words
 * ("" when OK). The store's view is sd when given (a snapshot taken off the
 * loop), else read from the engine's store without I/O. One verdict for the
 * status, the drives document and the metrics, so they never disagree. */
gw_drive_verdict gw__drive_verdict(const gw_daemon *d, int i, const struct store_drive_status *sd,
                                   const char **why);
/* Ready = enough drives for k-of-(k+m) writes and not shutting down. */
int gw__ready(const gw_daemon *d);
/* 1 once a WAL or index failure (fsync error, full disk) made writes refused
 * until restart. */
int gw__engine_failed(const gw_daemon *d);

/* ---- S3 errors and XML (gw_xml.c) --------------------------------------- */

/* Every S3 error this gateway answers with: code, HTTP status, message. */
typedef enum {
    GW_S3E_ACCESS_DENIED = 0,
    GW_S3E_SIGNATURE_DOES_NOT_MATCH,
    GW_S3E_INVALID_ACCESS_KEY_ID,
    GW_S3E_REQUEST_TIME_TOO_SKEWED,
    GW_S3E_AUTH_HEADER_MALFORMED,
    GW_S3E_INVALID_REQUEST,
    GW_S3E_INVALID_ARGUMENT,
    GW_S3E_EXPIRED,
    GW_S3E_SHA256_MISMATCH,
    GW_S3E_NO_SUCH_BUCKET,
    GW_S3E_NO_SUCH_KEY,
    GW_S3E_BUCKET_NOT_EMPTY,
    GW_S3E_BUCKET_ALREADY_OWNED,
    GW_S3E_INVALID_BUCKET_NAME,
    GW_S3E_KEY_TOO_LONG,
    GW_S3E_BAD_DIGEST,
    GW_S3E_INVALID_DIGEST,
    GW_S3E_INVALID_RANGE,
    GW_S3E_MISSING_CONTENT_LENGTH,
    GW_S3E_ENTITY_TOO_LARGE,
    GW_S3E_METHOD_NOT_ALLOWED,
    GW_S3E_NOT_IMPLEMENTED,
    GW_S3E_INTERNAL,
    GW_S3E_SERVICE_UNAVAILABLE,
    GW_S3E_SLOW_DOWN,
    GW_S3E_INCOMPLETE_BODY,
    GW_S3E_PRECONDITION_FAILED,
    GW_S3E_MALFORMED_XML,
    GW_S3E_INVALID_TAG,
    GW_S3E_NO_SUCH_UPLOAD,
    GW_S3E_INVALID_PART,
    GW_S3E_INVALID_PART_ORDER,
    GW_S3E_ENTITY_TOO_SMALL,
    GW_S3E_OPERATION_ABORTED,
    GW_S3E_INVALID_PART_NUMBER,
    GW_S3E_NO_SUCH_VERSION,
    GW_S3E_NO_SUCH_TAG_SET,
    GW_S3E__COUNT
} gw_s3_err;

/* Code string ("NoSuchKey") and HTTP status of an error. */
const char *gw_s3_err_code(gw_s3_err e);
int gw_s3_err_status(gw_s3_err e);
/* Maps an MRD_E* / -errno from the engine or store to an S3 error. */
gw_s3_err gw_s3_err_from_rc(int rc);

#define GW_S3_XMLNS "http://s3.amazonaws.com/doc/2006-03-01/"
#define GW_XML_HDR  "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"

/* Appends s with XML escaping (&<>"' and control bytes as &#xN;). */
int gw_xml_escape(mrd_buf *b, const char *s);
/* Appends <tag>escaped value</tag>. */
int gw_xml_elem(mrd_buf *b, const char *tag, const char *value);

/* Adds x-amz-request-id (and x-amz-id-2) for r; call on every response. */
void gw_s3_request_id(gw_req *r);
/* Answers r with the S3 XML error document: Code, Message (msg or the
 * default), Resource, RequestId. A HEAD gets the status and no body. */
void gw_s3_error(gw_req *r, gw_s3_err e, const char *resource, const char *msg);

/* The S3 port's gw_http_error_fn: the HTTP layer's own errors (400, 408,
 * 414, 431) as S3 XML error documents with x-amz-request-id; the status is
 * kept. */
const char *gw_s3_http_error(void *ud, uint64_t req_id, int status, const char *why, mrd_buf *hdrs,
                             mrd_buf *body);

/* ---- XML request bodies (gw_xmlreq.c) ------------------------------------ */

#define GW_XML_MAX_DEPTH   8
#define GW_XML_MAX_TEXT    (8u << 10) /* text of one leaf element */
#define GW_DELETE_MAX_KEYS 1000
#define GW_DELETE_MAX_BODY (2u << 20) /* 1000 keys of 1 KiB, escaped */

/* Called at the end of each element: depth >= 1, path[0..depth) the local
 * names from the root, text the element's own text (NUL-terminated, len
 * bytes; "" for elements with children). Nonzero stops the parse and is
 * returned by gw_xml_read. */
typedef int (*gw_xml_leaf_fn)(void *ud, int depth, const char *const *path, const char *text,
                              size_t len);
/* Parses a whole XML document whose root element must be root. Returns 0,
 * MRD_EINVAL (not well-formed, another root, a DOCTYPE, too deep, text too
 * long), -ENOMEM, or fn's code. Pure; fuzzed by tests/fuzz/fuzz_xml.c. */
int gw_xml_read(const char *body, size_t len, const char *root, gw_xml_leaf_fn fn, void *ud);

/* One <Part> of a CompleteMultipartUpload body. */
#define GW_MPU_MAX_PARTS 10000
typedef struct gw_complete_part {
    uint32_t number; /* 1..GW_MPU_MAX_PARTS */
    char etag[72];   /* without the quotes; "" when too long to be any part's */
} gw_complete_part;

/*
 * Parses a CompleteMultipartUpload request body: the parts in document
 * order (the caller checks the order), on gw_xml_read. *parts is malloc'ed
 * (the caller frees it). Errors: MRD_EINVAL (not well-formed, not that
 * document, a Part without exactly one valid PartNumber and one ETag, no
 * parts: MalformedXML), MRD_ETOOBIG (more than GW_MPU_MAX_PARTS parts),
 * -ENOMEM. Pure; fuzzed by tests/fuzz/fuzz_xml.c.
 */
int gw_xml_parse_complete(const char *body, size_t len, gw_complete_part **parts, size_t *n);

typedef struct gw_delete_obj {
    char *key;
    char *version_id; /* NULL when absent */
} gw_delete_obj;

/* A DeleteObjects request. */
typedef struct gw_delete_req {
    int quiet;
    gw_delete_obj *objs;
    size_t n; /* 1..GW_DELETE_MAX_KEYS */
} gw_delete_req;

/* Parses a <Delete> body. Returns 0 (out filled: gw_delete_req_clear it),
 * MRD_EINVAL (MalformedXML: not well-formed, an Object without exactly one
 * non-empty Key, no Object, a Quiet that is not true/false), MRD_ETOOBIG
 * (more than 1000 objects), -ENOMEM. */
int gw_xml_parse_delete(const char *body, size_t len, gw_delete_req *out);
void gw_delete_req_clear(gw_delete_req *d);

/* Tag sets (gw_xmlreq.c): S3's limits, 10 tags an object and 50 a bucket,
 * keys of 1..128 and values of 0..256 bytes, keys unique. */
#define GW_OBJECT_TAGS_MAX 10
#define GW_TAGS_MAX        50 /* a bucket's, and what a gw_tagset holds */
#define GW_TAG_KEY_MAX     128
#define GW_TAG_VALUE_MAX   256
#define GW_TAGGING_BODY    (64u << 10)

typedef struct gw_tagset {
    int n;
    int max; /* the limit parsing enforces: 0 is an object's (GW_OBJECT_TAGS_MAX) */
    char key[GW_TAGS_MAX][GW_TAG_KEY_MAX + 1];
    char value[GW_TAGS_MAX][GW_TAG_VALUE_MAX + 1];
} gw_tagset;

/* The parsers below enforce out->max (set it before the call; 0 is an
 * object's limit) and keep it in out. */
/* "k1=v1&k2=v2" (the x-amz-tagging header, URL-encoded) into out. Returns 0,
 * MRD_EINVAL (a bad escape, an empty pair), MRD_ETOOBIG (past a limit or a
 * repeated key: InvalidTag). "" is the empty set. */
int gw_tagset_parse_query(const char *s, gw_tagset *out);
/* Appends the canonical "k=v&..." form (NUL-terminated, "" when empty). */
int gw_tagset_encode(const gw_tagset *t, mrd_buf *out);
/* Parses a <Tagging><TagSet><Tag><Key/><Value/></Tag>...</TagSet></Tagging>
 * body. Returns 0, MRD_EINVAL (MalformedXML: not well-formed, a Tag without
 * exactly one Key and one Value), MRD_ETOOBIG (InvalidTag), -ENOMEM.
 * Fuzzed by tests/fuzz/fuzz_xml.c. */
int gw_xml_parse_tagging(const char *body, size_t len, gw_tagset *out);

/* Parses a <VersioningConfiguration> body (PutBucketVersioning): *state
 * gets ENGINE_VERSIONING_ENABLED or _SUSPENDED (1 or 2) from its one
 * <Status>; <MfaDelete> and unknown elements are ignored. Returns 0,
 * MRD_EINVAL (MalformedXML: not well-formed, no Status, another value, a
 * repeated Status), -ENOMEM. Fuzzed by tests/fuzz/fuzz_xml.c. */
int gw_xml_parse_versioning(const char *body, size_t len, int *state);

/* ---- SigV4 (gw_sigv4.c) ------------------------------------------------- */

#define GW_SIGV4_MAX_SKEW_S    (15 * 60)
#define GW_SIGV4_MAX_EXPIRES_S (7 * 24 * 3600)
#define GW_SHA256_EMPTY        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* A request as SigV4 sees it. Strings are borrowed. */
typedef struct gw_sigv4_input {
    const char *method;
    const char *path;  /* raw request path, percent-encoded as sent */
    const char *query; /* raw query string after '?', "" if none */
    int n_headers;
    const char *const *hname; /* header names as sent (any case) */
    const char *const *hvalue;
} gw_sigv4_input;

/* The parsed credentials of a request (header or presigned query). */
typedef struct gw_sigv4_auth {
    int presigned;
    char access_key[129];
    char date[9];              /* scope date, YYYYMMDD */
    char region[65];           /* scope region */
    char service[33];          /* scope service, "s3" */
    char amz_date[17];         /* X-Amz-Date: YYYYMMDDTHHMMSSZ */
    char signed_headers[1024]; /* "host;x-amz-date" (lower case, sorted) */
    char signature[65];        /* lower-case hex */
    uint64_t expires;          /* presigned: X-Amz-Expires seconds */
    char payload_hash[80];     /* x-amz-content-sha256, or UNSIGNED-PAYLOAD */
    /* gw_sigv4_verify, for STREAMING-* payloads only: the signing key that
     * verifies the chunk signatures (gw_awschunk) */
    unsigned char signing_key[32];
} gw_sigv4_auth;

/* Parses an "AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=..."
 * header value into out (only the fields the header carries). Returns 0 or
 * MRD_EINVAL (malformed). Pure; fuzzed by tests/fuzz/fuzz_sigv4.c. */
int gw_sigv4_parse_header(const char *value, gw_sigv4_auth *out);
/* Parses the X-Amz-* parameters of a presigned URL's query. Returns 0,
 * MRD_ENOTFOUND (not a presigned query) or MRD_EINVAL (malformed). */
int gw_sigv4_parse_query(const char *query, gw_sigv4_auth *out);
/* Parses YYYYMMDDTHHMMSSZ into Unix seconds; MRD_EINVAL if malformed. */
int gw_sigv4_parse_amz_date(const char *s, int64_t *out);

/* The canonical request (AWS "Task 1"); payload_hash is its last line.
 * Appends to out. Errors: MRD_EINVAL (a signed header is missing), -ENOMEM. */
int gw_sigv4_canonical_request(const gw_sigv4_input *in, const gw_sigv4_auth *a,
                               const char *payload_hash, mrd_buf *out);
/* The string to sign (AWS "Task 2") for a canonical request. */
int gw_sigv4_string_to_sign(const gw_sigv4_auth *a, const char *creq, size_t creq_len,
                            mrd_buf *out);
/* The signature (AWS "Task 3"): lower-case hex into hex[65]. */
void gw_sigv4_sign(const char *secret, const gw_sigv4_auth *a, const char *sts, size_t sts_len,
                   char hex[65]);
/* The signing key HMAC chain for a scope, for chunk signatures. */
void gw_sigv4_signing_key(const char *secret, const gw_sigv4_auth *a, unsigned char key[32]);

/* Decodes %XX escapes of s[0..len) into out (NUL-terminated); with
 * plus_space, '+' becomes ' '. MRD_EINVAL on a bad escape. */
int gw_url_decode(const char *s, size_t len, int plus_space, mrd_buf *out);
/* Appends s URI-encoded the AWS way (unreserved A-Za-z0-9-._~ kept; '/'
 * kept when keep_slash). */
int gw_uri_encode(mrd_buf *out, const char *s, size_t len, int keep_slash);
/* Finds query parameter name in a raw query and decodes its value into
 * out. Returns 1 if present (value may be ""), 0 if absent. */
int gw_query_param(const char *query, const char *name, mrd_buf *out);

/*
 * Authenticates a request against the configured users at time now (Unix
 * seconds). Returns 0 and fills *auth and *secret (borrowed from conf), or
 * a gw_s3_err + 1 (so 0 stays success); *why gets a static detail for logs.
 * The payload hash is taken as declared (x-amz-content-sha256, or
 * UNSIGNED-PAYLOAD for presigned); the caller checks the body against it.
 */
int gw_sigv4_verify(const gw_sigv4_input *in, const mrd_config *conf, int64_t now,
                    gw_sigv4_auth *auth, const char **why);

/* ---- S3 addressing (gw_addr.c) ------------------------------------------- */

#define GW_HDR_BUCKET "x-meridian-bucket" /* peer-forwarded virtual-host requests */

/* Where a request's bucket and key are. */
typedef struct gw_s3_addr {
    char bucket[64]; /* "" for the service (ListBuckets) */
    const char *key; /* the key, still percent-encoded, pointing into the
                      * path; NULL for a bucket-level or service request */
    int vhost;       /* 1 when the bucket came from the Host (or a peer) */
} gw_s3_addr;

/*
 * Finds the bucket and key of a request: virtual-host style when host
 * (the Host header, may be NULL) is "<bucket>.<domain>" for a domain of
 * conf->s3_domains, path style otherwise; peer_bucket (x-meridian-bucket of
 * an authenticated peer request, else NULL) names the bucket outright.
 * Returns 0 (*out filled; key points into path), MRD_EINVAL when path does
 * not start with '/', MRD_ETOOBIG for a bucket name over 63 bytes. Pure;
 * fuzzed by tests/fuzz/fuzz_sigv4.c.
 */
int gw_s3_addr_parse(const mrd_config *conf, const char *host, const char *path,
                     const char *peer_bucket, gw_s3_addr *out);

/* ---- aws-chunked bodies (gw_awschunk.c) ---------------------------------- */

#define GW_AWSCHUNK_MAX_LINE     1024         /* a chunk header or trailer line */
#define GW_AWSCHUNK_MAX_TRAILERS 16           /* trailer lines after the last chunk */
#define GW_AWSCHUNK_MAX_TOTAL    (5ull << 30) /* decoded bytes: S3's single-PUT limit */

enum {
    GW_AWSCHUNK_SIGNED = 1,           /* STREAMING-AWS4-HMAC-SHA256-PAYLOAD */
    GW_AWSCHUNK_UNSIGNED_TRAILER = 2, /* STREAMING-UNSIGNED-PAYLOAD-TRAILER */
    GW_AWSCHUNK_SIGNED_TRAILER = 3,   /* STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER */
};

typedef struct gw_awschunk gw_awschunk;

typedef struct gw_awschunk_opts {
    int mode; /* GW_AWSCHUNK_SIGNED, _UNSIGNED_TRAILER or _SIGNED_TRAILER */
    /* signed modes: the request's signing key, X-Amz-Date, credential scope
     * ("date/region/service/aws4_request") and seed signature (Authorization) */
    const unsigned char *key;
    const char *amz_date;
    const char *scope;
    const char *seed_sig;
    int64_t decoded_length; /* x-amz-decoded-content-length, or -1 if absent */
    const char *trailer;    /* x-amz-trailer (trailer modes), or NULL */
} gw_awschunk_opts;

/* Called with decoded body bytes, in order. Nonzero stops the decoder. */
typedef int (*gw_awschunk_emit)(void *ud, const char *data, size_t len);

/* Creates a decoder (everything in o is copied). Returns 0, MRD_EINVAL for
 * inconsistent options, -ENOMEM. *out is the caller's: gw_awschunk_free. */
int gw_awschunk_new(const gw_awschunk_opts *o, gw_awschunk **out);
void gw_awschunk_free(gw_awschunk *c); /* NULL ok */
/* Decodes the next len encoded bytes, calling emit for the data they carry
 * (before the chunk's signature is checked: commit nothing until finish).
 * Returns 0, or a gw_s3_err + 1 (SignatureDoesNotMatch, InvalidRequest,
 * BadDigest, InternalError when emit failed) with a static detail in *why;
 * errors are final. */
int gw_awschunk_feed(gw_awschunk *c, const char *data, size_t len, gw_awschunk_emit emit, void *ud,
                     const char **why);
/* The body ended: 0 if it was complete (last chunk, trailers, decoded
 * length as declared), else a gw_s3_err + 1 (IncompleteBody ...). */
int gw_awschunk_finish(gw_awschunk *c, const char **why);
/* Decoded bytes so far. */
uint64_t gw_awschunk_decoded(const gw_awschunk *c);
/* The signature of one chunk whose data hashes to data_sha, chained on
 * prev_sig (the seed signature for the first chunk): lower-case hex. */
void gw_awschunk_sign(const unsigned char key[32], const char *amz_date, const char *scope,
                      const char *prev_sig, const unsigned char data_sha[32], char out[65]);
/* CRC-64/NVME (AWS's CRC64NVME checksum) of n bytes, continuing crc (0 to
 * start). Thread-safe. */
uint64_t gw_crc64nvme(uint64_t crc, const void *data, size_t n);
/* The x-amz-trailer-signature of trailers whose canonical form ("name:value\n"
 * each, name lower-cased, value trimmed) hashes to trailer_sha, chained on
 * prev_sig (the last, empty chunk's signature): lower-case hex. */
void gw_awschunk_sign_trailer(const unsigned char key[32], const char *amz_date, const char *scope,
                              const char *prev_sig, const unsigned char trailer_sha[32],
                              char out[65]);

/* ---- S3 operations (gw_s3.c, gw_s3_obj.c, gw_s3_mpu.c) ----------------- */

/*
 * One small asynchronous S3 operation (gw_s3.c): work runs on the engine's
 * pool, then respond on the loop, unless work failed (has_err: the S3 error
 * is answered) or set `then`, which runs on the loop instead and starts the
 * next asynchronous step (an engine mutation), ending with gw__op_finish
 * again. The op is freed when both the client side (release) and the work
 * (inflight) are done.
 */
typedef struct gw__op gw__op;
struct gw__op {
    gw_daemon *d;
    gw_req *r;
    int inflight, released;
    char bucket[64];
    char *key;
    char *query;
    void (*work)(gw__op *o);
    void (*respond)(gw__op *o);
    void (*then)(gw__op *o);
    /* results */
    int rc;
    gw_s3_err err;
    int has_err;
    const char *err_msg; /* static text answered with err, or NULL */
    mrd_buf out;
    /* the request body, kept when body_max > 0 (up to that many bytes) */
    mrd_buf in;
    size_t body_max;
    /* the bucket's versioning state, read by gw__op_work_bucket */
    int vstate;
    /* an anonymous request (gw__s3_anonymous): gw__op_work_bucket refuses
     * it unless the bucket is public-read */
    int anon;
    /* the canned ACL (ENGINE_ACL_*) gw__op_acl_commit sets */
    int acl;
    /* per-operation state, freed with the op */
    void *ext;
    void (*ext_free)(void *ext);
};

/* A new op for r (query and key copied); NULL when out of memory. */
gw__op *gw__op_new(gw_daemon *d, gw_req *r, const char *bucket, const char *key);
/* Attaches o to its request and runs work then respond (after reading the
 * body, if any). */
void gw__op_go(gw__op *o, void (*work)(gw__op *o), void (*respond)(gw__op *o));
/* Runs o->work on the pool again (inflight), then finishes. */
void gw__op_start(gw__op *o);
/* Answers an error for an op that was never started (gw__op_go) and frees it. */
void gw__op_abandon(gw__op *o, gw_s3_err e, const char *msg);
/* Work step: fails o with NoSuchBucket unless o->bucket exists, with
 * AccessDenied when o->anon and the bucket is not public-read; sets
 * o->vstate. */
void gw__op_work_bucket(gw__op *o);
/* An engine mutation's callback for an op: records the error, if any, and
 * finishes o. */
void gw__op_mut_done(void *o, int status);
/* Records an S3 error to answer. */
void gw__op_fail(gw__op *o, gw_s3_err e);
/* Work step: the version a sub-resource request names (vid, or the current
 * one when NULL) into *rec; 0, or -1 with o failed (NoSuchBucket,
 * NoSuchKey, NoSuchVersion: a delete marker by id is no version either). */
int gw__op_open_version(gw__op *o, const char *vid, struct store_version_rec **rec);
/* On the loop: answers (or runs `then`) unless the client is gone. */
void gw__op_finish(gw__op *o);
/* Answers o->out as an XML document. */
void gw__op_respond_xml(gw__op *o, int status);

/* Multipart upload (gw_s3_mpu.c). The routers call these for requests with
 * the uploads / uploadId sub-resources. */
void gw__s3_mpu_bucket(gw_daemon *d, gw_req *r, const char *bucket, const char *method);
void gw__s3_mpu_object(gw_daemon *d, gw_req *r, const char *bucket, const char *key,
                       const char *method, const gw_sigv4_auth *auth);
/* Called periodically on the loop: aborts, on the pool, uploads older than
 * multipart_expire (at most every min(multipart_expire, 1 h)). */
void gw__s3_mpu_expire_tick(gw_daemon *d);
/* UploadPart: streams the body into a part (gw_s3_obj.c, shares PUT's
 * machinery). */
void gw__s3_upload_part(gw_daemon *d, gw_req *r, const char *bucket, const char *key,
                        const char *upload_id, uint32_t part, const gw_sigv4_auth *auth);

/* An object's metadata from request headers: the content type, x-amz-meta-*
 * and the kept standard headers (lower-case names), as PutObject keeps them
 * (gw_s3_obj.c). */
#define GW_MAX_META 64
typedef struct gw__meta {
    char *ctype;
    struct engine_kv *kv; /* GW_MAX_META entries, malloc'ed */
    int n;
} gw__meta;
/* Fills m from r's headers. Returns 0, or the S3 error to answer with *msg
 * (metadata over 2 KiB); m is to be cleared either way. */
int gw__meta_parse(gw_req *r, gw__meta *m, const char **msg);
void gw__meta_clear(gw__meta *m);
/* Adds the tag set of r's x-amz-tagging header, if any, to m (as
 * ENGINE_META_TAGGING). 0 or the S3 error (InvalidTag ...) with *msg. */
int gw__meta_tagging(gw_req *r, gw__meta *m, const char **msg);

/* The memory gates (gw_gate.c): [s3] max_uploads and max_downloads bound
 * how many large request bodies (uploads) and response bodies (downloads)
 * hold buffers at once, served here or forwarded to a peer. A stream's place
 * at a gate; zeroed, with admit set before gw__gate_enter. */
typedef struct gw_gate_node {
    struct gw_gate_node *prev, *next;
    int gated, waiting;
    void (*admit)(struct gw_gate_node *n); /* let in from the line, on the loop */
} gw_gate_node;
typedef enum { GW_GATE_UPLOAD = 0, GW_GATE_DOWNLOAD = 1 } gw_gate_kind;
/* A body of at most this many bytes never waits. */
#define GW_GATE_SMALL (256u << 10)
/* 1 if n may go now (holding a slot, or not gated at all: limit 0 or a body
 * of at most GW_GATE_SMALL bytes); 0 if it waits in line, and a later
 * gw__gate_leave of another stream calls n->admit. size < 0: unknown.
 * The calling S3 loop's gate. */
int gw__gate_enter(gw_gate_kind k, gw_gate_node *n, const gw_daemon *d, int64_t size);
/* n leaves the line, or gives its slot to the first in line (whose admit
 * runs from here). A no-op for a node that never entered or went ungated. */
void gw__gate_leave(gw_gate_kind k, gw_gate_node *n, const gw_daemon *d);
/* Large uploads holding their buffers, and those waiting for a slot ([s3]
 * max_uploads), all loops together. Any thread. */
void gw__s3_uploads(int *active, int *waiting);
/* Large downloads holding their buffers now, and waiting for a slot
 * ([s3] max_downloads), every loop together. Thread-safe. */
void gw__s3_downloads(int *active, int *waiting);
void gw__s3_put_object(gw_daemon *d, gw_req *r, const char *bucket, const char *key,
                       const gw_sigv4_auth *auth);
void gw__s3_get_object(gw_daemon *d, gw_req *r, const char *bucket, const char *key);
/* Adds one metadata entry (name lower-cased) to m; 0 or -1 (full, no
 * memory). */
int gw__meta_add(gw__meta *m, const char *name, const char *value);
/* The conditional headers of r named prefix + "if-match", "if-none-match",
 * "if-modified-since", "if-unmodified-since" ("" for GET/HEAD,
 * "x-amz-copy-source-" for copies) against an object with this ETag (no
 * quotes) and modification time, with RFC 9110 precedence. Returns 200, 304
 * (not modified) or 412 (precondition failed). */
int gw__preconditions(gw_req *r, const char *prefix, const char *etag, uint64_t mtime_ms);

/* Server-side copies (gw_s3_copy.c): CopyObject, and what UploadPartCopy
 * shares with it. All but gw__s3_copy_object block: call them on a worker. */
void gw__s3_copy_object(gw_daemon *d, gw_req *r, const char *bucket, const char *key);
/* x-amz-copy-source ("[/]bucket/key", URL-encoded, optionally followed by
 * "?versionId=<id>") into malloc'ed *bucket, *key and *version_id (NULL when
 * absent); -1 if malformed, or if it names a versionId and version_id is
 * NULL (the caller does not take one). */
int gw__copy_source_parse(const char *h, char **bucket, char **key, char **version_id);
/* The version of bucket/key a copy reads (*rec, the caller frees it): the
 * one named by vid (NoSuchVersion; a delete marker is InvalidRequest), and
 * shown its x-amz-copy-source-version-id; or, vid NULL, the current one as
 * gw__copy_source_open (shown ""). NoSuchBucket. */
struct store_version_rec;
gw_s3_err gw__copy_source_version(gw_daemon *d, const char *bucket, const char *key,
                                  const char *vid, struct store_version_rec **rec, char *shown,
                                  size_t shown_sz);
/* The current version of bucket/key (*rec, the caller frees it) and, when rd
 * is not NULL, a reader on it. NoSuchBucket, NoSuchKey (also for a delete
 * marker), or the store's error. */
gw_s3_err gw__copy_source_open(struct store *st, const char *bucket, const char *key,
                               struct store_version_rec **rec, struct store_reader **rd);
/* Streams bytes [a, b] of rd (b == UINT64_MAX: none) into a new store
 * object written for bucket/key/vid, 1 MiB at a time; *res as
 * store_writer_finish gives it. Returns 0 or the store's error. */
int gw__copy_stream(struct store *st, struct store_reader *rd, uint64_t a, uint64_t b,
                    const char *bucket, const char *key, const char *vid,
                    struct store_put_result *res);

/* Get/Put/DeleteObjectTagging: /<bucket>/<key>?tagging (gw_s3_tag.c). */
void gw__s3_object_tagging(gw_daemon *d, gw_req *r, const char *bucket, const char *key,
                           const gw_sigv4_auth *auth);
/* DeleteObjects: POST /<bucket>?delete (gw_s3_del.c). */
void gw__s3_delete_objects(gw_daemon *d, gw_req *r, const char *bucket, const gw_sigv4_auth *auth);

/* Canned bucket ACLs and anonymous requests (gw_s3_acl.c). */
#define GW_HDR_ANON "x-meridian-anonymous" /* a peer forwarded an anonymous request */
/* 1 when r is anonymous: no Authorization header and no presigned query
 * (from a client), or marked GW_HDR_ANON (from an authenticated peer). */
int gw__s3_anonymous(const gw_req *r);
/* The payload hash a forwarded request's x-meridian-auth signs: r's
 * x-amz-content-sha256 ("" when absent), prefixed "ANONYMOUS " when anon
 * (the request is, or is marked, anonymous); may use buf[n]. */
const char *gw__proxy_payload_hash(const gw_req *r, int anon, char *buf, size_t n);
/* 1 when a bucket's index blob says public-read. */
int gw__bucket_public_read(const void *blob, size_t len);
/* r's x-amz-acl: 0 and *acl set (ENGINE_ACL_*), 1 when absent (*acl
 * private), -1 with *msg for what is not implemented (another canned ACL,
 * an x-amz-grant-* header). */
int gw__s3_canned_acl(gw_req *r, int *acl, const char **msg);
/* Loop: engine_bucket_config(c) for o's bucket, then finishes o
 * (NoSuchBucket, or the engine's error). */
struct engine_bucket_conf;
void gw__op_bucket_config(gw__op *o, const struct engine_bucket_conf *c);
/* Loop step (an op's `then`): the BUCKET_CONFIG setting o->acl. */
void gw__op_acl_commit(gw__op *o);
/* Get/PutBucketAcl: /<bucket>?acl; owner is the requester's access key. */
void gw__s3_bucket_acl(gw_daemon *d, gw_req *r, const char *bucket, const char *owner);
/* Get/PutObjectAcl: /<bucket>/<key>?acl[&versionId=]; the object's ACL is its
 * bucket's (read-only: a PUT succeeds only when it asks for that). */
void gw__s3_object_acl(gw_daemon *d, gw_req *r, const char *bucket, const char *key,
                       const char *owner);
/* 1 when an anonymous request may go on to the ACL check: GET/HEAD of an
 * object's current version, HeadBucket, or ListObjects (gw_s3.c). */
int gw__s3_anon_allowed(const char *method, const char *query);

/* Versioning (gw_s3_ver.c). */
/* The x-amz-version-id value of version v in a bucket whose versioning
 * state is vstate (ENGINE_VERSIONING_*): its id, "null" for a null version,
 * or NULL when the header is not sent (a null version of a bucket whose
 * versioning was never set, unless asked = 1: the request named a version). */
struct store_version;
const char *gw__version_header(const struct store_version *v, int vstate, int asked);
/* 1 if v can name a version in a request: "null" or one of our ids. */
int gw__version_id_valid(const char *v);
/* The versioning state of a bucket's index blob, UNSET when unreadable. */
int gw__bucket_vstate(const void *blob, size_t len);
/* DeleteObject (DELETE /<bucket>/<key>, with or without ?versionId=). */
void gw__s3_delete_object(gw_daemon *d, gw_req *r, const char *bucket, const char *key);
/* The listing parameters ListObjects and ListObjectVersions share (gw_s3.c):
 * prefix, delimiter, max-keys (0..1000, default 1000), encoding-type=url.
 * 0, or -1 for a bad max-keys or encoding-type (InvalidArgument). */
int gw__list_query(const char *query, mrd_buf *prefix, mrd_buf *delim, int *max_keys, int *url);
/* Appends <tag>s</tag>, s URL-encoded first when url is set. */
void gw__xml_name(mrd_buf *b, int url, const char *tag, const char *s);
/* ListObjectVersions (GET /<bucket>?versions). */
void gw__s3_list_versions(gw_daemon *d, gw_req *r, const char *bucket);
/* Get/PutBucketVersioning, Get/Put/DeleteBucketTagging (gw_s3_tag.c). */
void gw__s3_bucket_config(gw_daemon *d, gw_req *r, const char *bucket, const gw_sigv4_auth *auth);
/* Checks a whole small request body against a decoded Content-MD5 (md5,
 * NULL if none: BadDigest) and a signed x-amz-content-sha256 (sha_hex, NULL
 * if unsigned: XAmzContentSHA256Mismatch). Returns 0 or the error. */
gw_s3_err gw__body_verify(const void *body, size_t len, const unsigned char *md5,
                          const char *sha_hex);
/* Decodes a Content-MD5 header (base64 of 16 bytes); 0 or -1. */
int gw__decode_md5(const char *b64, unsigned char out[16]);
/* RFC 1123 ("Wed, 12 Oct 2009 17:50:00 GMT") and ISO 8601 renderings of a
 * time in ms since the epoch. */
void gw__http_time(uint64_t ms, char *out, size_t outsz);
void gw__iso_time(uint64_t ms, char *out, size_t outsz);

/* ---- Routing (gw_route.c) and proxying (gw_proxy.c) --------------------- */

#define GW_HDR_SERVED_BY   "x-meridian-served-by"
#define GW_HDR_WRITE_TOKEN "x-meridian-write-token"

/* Starts the routing state (its 1 s transition check). */
int gw__route_init(gw_daemon *d);
/* Parses a write token "<site name or id>:<lsn>": *site is the site's id, 0
 * for this site. MRD_EINVAL when malformed or naming no configured site.
 * Pure; fuzzed by tests/fuzz/fuzz_sigv4.c. */
int gw__route_parse_token(const mrd_config *conf, const char *tok, uint32_t *site, uint64_t *lsn);
/* Called by gw__route_s3 right after authentication. A request forwarded by
 * a peer carries the replication-secret headers instead of SigV4:
 * returns 1 when it does and they verify (*auth gets the payload hash it
 * declares), -1 when they do not (answered 403), 0 when absent (use SigV4). */
int gw__route_peer_auth(gw_daemon *d, gw_req *r, gw_sigv4_auth *auth);
/* 1 when r came from a peer: it is served here and never forwarded again. */
int gw__route_from_peer(const gw_req *r);
/* Before any local work: a drained site, or one whose store is not open,
 * forwards the request. Returns 1 when it took r (forwarded or refused). */
int gw__route_early(gw_daemon *d, gw_req *r);
/* GET/HEAD of an object: a write token not yet applied here waits, then
 * proxies. Returns 1 when it took r; 0: serve locally now. */
int gw__route_read(gw_daemon *d, gw_req *r, const char *bucket, const char *key);
/* A local GET/HEAD failed before its head was sent (err, rc; deleted when
 * the key's current version is a delete marker). Returns 1 when r was
 * handed to a peer: the caller then drops its context without touching r. */
int gw__route_read_failed(gw_daemon *d, gw_req *r, gw_s3_err err, int rc, int deleted);
/* PUT/DELETE of an object: when the store cannot take writes, forwards or
 * refuses (write_failover). Returns 1 when it took r. */
int gw__route_write(gw_daemon *d, gw_req *r);
/* A PUT's writer could not open (rc) before any body byte was read: same
 * as gw__route_write. Returns 1 when it took r. */
int gw__route_write_failed(gw_daemon *d, gw_req *r, int rc);
/* Adds x-meridian-write-token to a successful PUT/DELETE answer. */
void gw__route_write_token(gw_daemon *d, gw_req *r);
/* Admin: POST /admin/v1/failover/{drain,undrain}; 1 if path was one. */
int gw__route_failover_admin(gw_daemon *d, gw_req *r, const char *path);
/* The "routing" member of /admin/v1/status, and the metric families. */
void gw__route_status_json(gw_daemon *d, mrd_json_w *w);
void gw__route_metrics(gw_daemon *d, mrd_buf *b);
/* Picks a peer for a request routed for why: the index of the nearest
 * healthy peer (degraded if none is healthy) not in exclude; for
 * GW_ROUTE_BEHIND only peers this site is behind; for GW_ROUTE_TOKEN and
 * GW_ROUTE_UPLOAD only token_site. Fills name. MRD_ENOTFOUND when there is none. */
int gw__route_pick(gw_daemon *d, gw_route_reason why, uint32_t token_site, const uint32_t *exclude,
                   int n_exclude, uint32_t *site_out);

/* Forwards r to peer site_id's S3 listener (it must have one configured)
 * and streams the answer back with x-meridian-served-by. r must not have
 * been answered; any ops attached are replaced. When the peer fails before
 * answering, the next peer gw__route_pick offers is tried; when none is
 * left, r is answered with fallback (e.g. GW_S3E_NO_SUCH_KEY for a miss,
 * GW_S3E_SERVICE_UNAVAILABLE). Returns 0 (r is taken) or a negative code
 * (r untouched). */
int gw__proxy_start(gw_daemon *d, gw_req *r, gw_route_reason why, uint32_t site_id,
                    uint32_t token_site, gw_s3_err fallback);
/* Closes the calling loop's idle keep-alive connections to peers (each
 * loop keeps its own pool; every loop calls it when it stops). */
void gw__proxy_close_idle(void);
/* Frees the calling thread's cached GET buffers (a loop thread, as it
 * ends; gw_s3_obj.c). */
void gw__s3_obj_thread_end(void);

#endif
