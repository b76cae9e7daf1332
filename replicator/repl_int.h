/*
 * repl_int.h - private declarations shared by replicator/repl_*.c.
 *
 * Naming: repl__ for functions shared between the module's files. This
 * header includes no nghttp2 or OpenSSL header (the session type is only
 * forward-declared), so the fuzz target and unit tests can use the pure
 * pieces (auth, message codec, health machine) without those include paths.
 */
#ifndef MERIDIAN_REPL_INT_H
#define MERIDIAN_REPL_INT_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "replicator.h"

struct bufferevent;
struct event;
struct evconnlistener;
typedef struct nghttp2_session nghttp2_session;

#define REPL_PROTOCOL_VERSION 1
/* Hello.features bits (PROTOCOL.md section 3): what this build understands
 * beyond version 1. A sender uses a feature only when the peer's Hello
 * answer announced it, so builds with and without it interoperate. */
#define REPL_FEATURE_DATA_CHECK 0x1u /* object data followed by a check (repl__dcheck) */
#define REPL_FEATURES           REPL_FEATURE_DATA_CHECK
#define REPL_PATH_HELLO         "/repl/v1/hello"
#define REPL_PATH_HEARTBEAT     "/repl/v1/heartbeat"
#define REPL_PATH_RECORDS       "/repl/v1/records"
#define REPL_PATH_RESYNC        "/repl/v1/resync"
#define REPL_PATH_DIGEST        "/repl/v1/digest"
#define REPL_PATH_PROXY         "/s3" /* signed in place of the path of a proxied S3 request */
#define REPL_PATH_TOPOLOGY      "/repl/v1/topology"
#define REPL_MAX_DIGEST         (32u << 20) /* largest digest answer a sender accepts */
#define REPL_DIGEST_CACHE_MS    60000       /* a tree digest kept this long unused for a peer */
#define REPL_BUCKET_MAX         64
#define REPL_HDR_SITE           "x-meridian-site-id"
#define REPL_HDR_TIME           "x-meridian-time"
#define REPL_HDR_AUTH           "x-meridian-auth"
#define REPL_CONTENT_TYPE       "application/x-protobuf"

/* Flow control sized for a high bandwidth-delay product: 16 MiB per stream,
 * 64 MiB per connection (1 Gbit/s at 500 ms RTT is ~60 MiB in flight). */
#define REPL_STREAM_WINDOW (16 << 20)
#define REPL_CONN_WINDOW   (64 << 20)
/* Backpressure as in nghttp2's libevent-server example: the send callback
 * returns WOULDBLOCK once this much is queued in the bufferevent's output. */
#define REPL_OUTBUF_HIGH      (1 << 20)
#define REPL_MAX_HEADER_LIST  16384
#define REPL_MAX_STREAMS      256
#define REPL_MAX_INBOUND      64    /* inbound connections at once */
#define REPL_AUTH_DEADLINE_MS 10000 /* inbound: first valid request by then */
#define REPL_IDLE_MIN_MS      30000 /* inbound: idle cut, at least 5 intervals */
#define REPL_MAX_APPLIED      (MRD_MAX_PEERS + 1)
#define REPL_HDR_VALUE_MAX    128

/* Record streams (repl_send.c, repl_recv.c, PROTOCOL.md section 6). */
#define REPL_MAX_BATCH_HEAD (8u << 20)  /* largest framed RecordBatch accepted */
#define REPL_MAX_RECORDS    4096        /* records per batch */
#define REPL_BATCH_BYTES    (1u << 20)  /* the sender closes a batch at this size */
#define REPL_BATCH_RECORDS  1024        /* ... or at this many records */
#define REPL_CHUNK          (1u << 20)  /* object data moved per store job */
#define REPL_POOL_BUFS      48          /* request buffers a receiver keeps */
#define REPL_POOL_BYTES     (48u << 20) /* ... and their bytes at most */
#define REPL_INFLIGHT_MAX   16          /* record requests in flight per peer */
#define REPL_INFLIGHT_BYTES (64ull << 20)
#define REPL_REORDER_MAX_MS 30000        /* a batch waiting this long for its predecessor fails */
#define REPL_PUMP_MS        5            /* how often an idle sender looks for new records */
#define REPL_READ_CHUNK     (256u << 10) /* one recv() on a plain TCP connection */
#define REPL_READ_BUDGET    (4u << 20)   /* bytes one read callback takes off the socket */

/* ------------------------------------------------------------------------ */
/* Authentication (repl_auth.c): pure functions                             */
/* ------------------------------------------------------------------------ */

/* x-meridian-auth of every message between sites without a secret (mutual
 * TLS identifies them), and the reasons a mismatch of modes is refused with.
 * The reasons (short enough for a peer's last_error) go to the 401 body and
 * the logs of both sides; "peer" is the other side. */
#define REPL_AUTH_MTLS "mtls"
#define REPL_AUTH_WHY_PEER_NO_SECRET                                                               \
    "peer has no [replication] secret but this site has: set the same on both or neither"
#define REPL_AUTH_WHY_PEER_SECRET                                                                  \
    "peer uses a [replication] secret, this site has none: set the same on both or neither"

/* hex(HMAC-SHA256(secret, "MRD-REPL-1\n" method "\n" path "\n" site "\n"
 * time "\n" hex(sha256(body)))) into out (65 bytes, NUL-terminated).
 * For a response, method is "RESP <status>" and path is the request's
 * x-meridian-auth value, which binds the answer to its question.
 * secret NULL (links authenticated by mutual TLS alone): out is
 * REPL_AUTH_MTLS and nothing is hashed. */
void repl__auth_sign(const char *secret, size_t secret_len, const char *method, const char *path,
                     uint32_t site, uint64_t time_ms, const void *body, size_t body_len,
                     char out[65]);

/* The three headers as received (NULL when absent) plus what they sign. */
typedef struct repl__auth_in {
    const char *method;
    const char *path;
    const char *site;
    const char *time;
    const char *auth;
    const void *body;
    size_t body_len;
} repl__auth_in;

/* Parses a decimal uint32 site id (1..10 digits, nonzero). */
int repl__parse_site(const char *s, uint32_t *out);
/* Parses a decimal millisecond time (1..16 digits). */
int repl__parse_time(const char *s, uint64_t *out);

/* Checks a signed message: header syntax, |time - now_ms| <= max_skew_ms,
 * and the signature, compared in constant time. With secret NULL the auth
 * must be REPL_AUTH_MTLS (the caller relies on the TLS peer certificate);
 * with a secret that marker is refused (REPL_AUTH_WHY_*). On success *site_out is the
 * sender's id. On failure returns MRD_EAUTH (or MRD_EINVAL for missing or
 * malformed headers) and sets *reason to a static string. */
int repl__auth_verify(const char *secret, size_t secret_len, const repl__auth_in *in,
                      uint64_t now_ms, uint32_t max_skew_ms, const char **reason,
                      uint32_t *site_out);

/*
 * The check that follows a record's object data (PROTOCOL.md section 6),
 * computed alike by the sender as it reads the data and by the receiver as
 * it stores it (repl_auth.c):
 *   REPL_DCHECK_CRC32C: the CRC32C of the data, 4 bytes big-endian; only on
 *     TLS links, whose record layer authenticates every byte already;
 *   REPL_DCHECK_POLY1305: Poly1305(key, framed batch head | data), 16
 *     bytes, with the one-time key HMAC-SHA256(secret, "MRD-REPL-DATA-1\n"
 *     | nonce) and the nonce 16 random bytes the sender puts in the record
 *     (so in the signed head); on h2c links, where the request signature
 *     covers the head only: this binds the data to that head so an on-path
 *     attacker can neither alter it nor swap in another's. A key serves one
 *     request (the same head only when the same request is sent again,
 *     with the same data), as Poly1305 requires; it runs at 13 GB/s here,
 *     against 1.7 for an HMAC-SHA256 of the data.
 * Either replaces the receiver's MD5 of the data (REPL_DCHECK_NONE: what
 * builds without REPL_FEATURE_DATA_CHECK send and expect).
 */
enum { REPL_DCHECK_NONE = 0, REPL_DCHECK_CRC32C = 1, REPL_DCHECK_POLY1305 = 2 };
#define REPL_DCHECK_MAX   16 /* bytes of the longest check */
#define REPL_DCHECK_NONCE 16 /* bytes of a Poly1305 check's nonce */

typedef struct repl__dcheck {
    uint32_t kind;
    uint32_t crc;
    int failed; /* an update failed: final reports it */
    struct evp_mac_ctx_st *mac;
} repl__dcheck;

/* The Poly1305 MAC, fetched from OpenSSL once per repl (repl_new) and
 * shared by every check it starts, on any thread (a fetched algorithm is
 * immutable; each context takes its own reference). NULL when this OpenSSL
 * offers no Poly1305 (a FIPS-only provider set). The caller frees it with
 * repl__dcheck_mac_free (accepts NULL) once it starts no more checks. */
struct evp_mac_st *repl__dcheck_mac_fetch(void);
void repl__dcheck_mac_free(struct evp_mac_st *mac);

/* Starts a check of kind over the data of the request whose framed batch
 * head is head (POLY1305: keyed from secret and the record's nonce, with
 * the MAC from repl__dcheck_mac_fetch).
 * Errors: MRD_EINVAL (POLY1305 without poly1305, a secret or a
 * REPL_DCHECK_NONCE-byte nonce; unknown kind), -ENOMEM. */
int repl__dcheck_init(repl__dcheck *d, struct evp_mac_st *poly1305, uint32_t kind,
                      const char *secret, size_t secret_len, const uint8_t *nonce, size_t nonce_len,
                      const void *head, size_t head_len);
void repl__dcheck_update(repl__dcheck *d, const void *data, size_t len);
/* Writes the check into out (REPL_DCHECK_MAX bytes of room) and its length
 * into *out_len (0 for REPL_DCHECK_NONE); frees what init took, also on
 * failure. Errors: -EIO when the MAC could not be computed (an update or
 * the final step failed in OpenSSL): there is no check to send or compare,
 * and out and *out_len are untouched. */
int repl__dcheck_final(repl__dcheck *d, uint8_t *out, size_t *out_len);
/* The length of kind's check; 0 for NONE or an unknown kind. */
size_t repl__dcheck_len(uint32_t kind);
/* Frees what init took (after final: nothing). Accepts a zeroed d. */
void repl__dcheck_free(repl__dcheck *d);

/* ------------------------------------------------------------------------ */
/* Messages (repl_msg.c): protobuf-c behind plain structs                   */
/* ------------------------------------------------------------------------ */

/* One site's view of its link to a peer (LinkState in proto/repl.proto). */
typedef struct repl__link {
    uint32_t peer_site;
    uint32_t state; /* repl_peer_state */
    int connected;
    uint64_t rtt_us, lag_records, lag_ms, lag_bytes, acked_lsn, sent_bytes, throughput_bps,
        send_errors, acked_hlc;
    char last_error[96];
} repl__link;

typedef struct repl__state_msg {
    uint32_t site_id;
    char site_name[MRD_NAME_MAX];
    uint64_t topology_epoch;
    uint64_t topology_hash;
    uint64_t hlc;
    uint64_t high_water_lsn;
    uint64_t boot_id;
    int n_applied;
    repl_applied applied[REPL_MAX_APPLIED];
    int n_links;
    repl__link links[MRD_MAX_PEERS];
} repl__state_msg;

typedef struct repl__msg {
    int is_hello;
    uint32_t protocol_version;      /* Hello */
    uint32_t heartbeat_interval_ms; /* Hello */
    uint32_t features;              /* Hello: REPL_FEATURE_* */
    uint64_t seq;                   /* Heartbeat */
    repl__state_msg st;
} repl__msg;

/* Encodes m (Hello when m->is_hello, else Heartbeat) into out (replacing its
 * contents). Errors: -ENOMEM. */
int repl__msg_encode(const repl__msg *m, mrd_buf *out);

/* Decodes a Hello (is_hello) or Heartbeat body. MRD_EPROTO when malformed,
 * when the state is missing, the site id is 0, the name is too long or there
 * are more than REPL_MAX_APPLIED applied entries. */
int repl__msg_decode(const void *data, size_t len, int is_hello, repl__msg *out);

/* A parsed RecordBatch (repl_msg.c). Payload pointers point into the
 * decoded message, valid until repl__batch_free. */
typedef struct repl__rec {
    uint64_t lsn;
    uint16_t type;
    const uint8_t *payload;
    size_t len;
    uint64_t data_size;
    uint32_t data_check;       /* REPL_DCHECK_*: what follows the data */
    const uint8_t *data_nonce; /* POLY1305: REPL_DCHECK_NONCE bytes */
    size_t data_nonce_len;
} repl__rec;

typedef struct repl__batch {
    uint64_t first, last;
    size_t n;
    repl__rec *recs;
    void *pb; /* the protobuf-c message */
} repl__batch;

/* Decodes and checks a RecordBatch: 1 <= first <= last; records in strictly
 * increasing LSN order inside [first, last]; types 1..7 (never a replicated
 * apply); at most REPL_MAX_RECORDS; only the last record may carry data.
 * MRD_EPROTO when any of it fails (why in *reason, static). */
int repl__batch_parse(const void *data, size_t len, repl__batch *out, const char **reason);
/* The same for a /repl/v1/resync body: record LSNs are 0 and first_lsn is 0;
 * a batch without records and last_lsn > 0 is the marker (PROTOCOL.md 7). */
int repl__resync_parse(const void *data, size_t len, repl__batch *out, const char **reason);
void repl__batch_free(repl__batch *b);
/* Packs a RecordBatch from recs[0..n) into out, after a 4-byte big-endian
 * length (the framing of a records request body). */
int repl__batch_pack(uint64_t first, uint64_t last, const repl__rec *recs, size_t n, mrd_buf *out);
int repl__ack_encode(uint32_t origin, uint64_t applied, mrd_buf *out);
int repl__ack_decode(const void *data, size_t len, uint32_t *origin, uint64_t *applied);

/* Anti-entropy (repl_sync.c). One bucket's digest. */
typedef struct repl__bdigest repl__bdigest;
/* Versions a pass will send, from our digests after repl__digest_diff. */
uint64_t repl__digest_estimate(const repl__bdigest *mine, size_t n);

struct repl__bdigest {
    char bucket[REPL_BUCKET_MAX];
    uint32_t leaves;
    uint8_t *digest; /* leaves x 16 bytes */
    uint8_t *tree;   /* version 2: levels 0..3 above the leaves (4369 x 16 bytes) */
    uint64_t versions;
    /* set by repl__digest_diff on our own digests */
    uint32_t cmp_leaves;
    uint8_t *differ; /* bitmap of cmp_leaves leaves */
    int missing;     /* the peer has no such bucket */
    int peer_empty;  /* ... or has it with no versions */
};

struct store;
struct store_version;
uint32_t repl__leaf_of(const char *key, uint32_t leaves);
/* Blocking (an index walk): digests of every bucket at full resolution,
 * with version hash hashv (1: flat digests; 2: trees, tags included, and
 * the tree levels built). */
int repl__digest_all(struct store *st, int hashv, repl__bdigest **out, size_t *n);

/* Tree digests (version 2; PROTOCOL.md section 7): levels 0..3 above the
 * 65536 leaves (level 4), 16 children a node. */
#define REPL_TREE_LEVELS  4
#define REPL_TREE_LEAF    4
#define REPL_TREE_ASK_MAX 1024 /* nodes one children request names */
#define REPL_TREE_PUSH_LEAF                                                                        \
    2048 /* differing leaves of a bucket pushed one by one; more: the bucket */
/* Builds d->tree from d->digest (FULL leaves: 65536). -ENOMEM. */
int repl__tree_build(repl__bdigest *d);
/* Node idx of level (0..4) of d's tree: 16 bytes. */
const uint8_t *repl__tree_node(const repl__bdigest *d, uint32_t level, uint32_t idx);

typedef struct repl__drange {
    char bucket[REPL_BUCKET_MAX];
    uint32_t level;
    size_t n;
    uint32_t *nodes;
} repl__drange;

#define REPL_KEY_MAX 1025 /* an S3 key (1024 bytes at most) and its NUL */
#define REPL_VID_MAX 64   /* a version id and its NUL */

/* A DigestRequest: tree 0 asks for version 1. */
typedef struct repl__dreq {
    int tree, push, summaries;
    size_t n;
    repl__drange *r;
    /* summaries, a later page: start at this bucket and key ("": the first),
     * after this version of the key ("": with its first version) */
    char from_bucket[REPL_BUCKET_MAX], from_key[REPL_KEY_MAX], from_vid[REPL_VID_MAX];
} repl__dreq;

int repl__dreq_encode(const repl__dreq *q, mrd_buf *out);
/* MRD_EPROTO when it does not decode, names a level or node out of range, a
 * bucket name too long, or more than REPL_TREE_ASK_MAX nodes outside a push. */
int repl__dreq_decode(const void *data, size_t len, repl__dreq *out);
void repl__dreq_free(repl__dreq *q);
/* Adds node (bucket, level, node) to q, merging into the last range when it
 * is of the same bucket and level. */
int repl__dreq_add(repl__dreq *q, const char *bucket, uint32_t level, uint32_t node);

/* Server: the roots of every bucket, or the children q asks for (a bucket
 * not in d is answered missing). */
int repl__tree_roots_encode(const repl__bdigest *d, size_t n, mrd_buf *out);
int repl__tree_children_encode(const repl__bdigest *d, size_t n, const repl__dreq *q, mrd_buf *out);
/* Server, a push: the subtrees q names as leaf bitmaps (cmp_leaves 65536),
 * one entry per bucket; a level-0 range sets missing (its BucketCreate goes
 * too). */
int repl__dreq_bitmaps(const repl__dreq *q, repl__bdigest **out, size_t *n);

/* Version 3 (summaries): what a site holds in the differing leaves, so that
 * a pass sends only versions that change something at the peer. */
#define REPL_SUMMARIES_MAX (4u << 20) /* bytes of summaries one answer (page) carries */
#define REPL_SUMMARIES_MIN 4096u      /* the smallest page a site may be configured to */
/* Server, blocking (an index walk): the versions we hold in the subtrees q
 * names, as a DigestResponse of about limit bytes at most (held_partial
 * when it stopped there), from q->from_bucket/from_key/from_vid on when set: buckets
 * in q's order, each one's versions in index order, so the answer is one
 * page of a walk the asker can continue. */
int repl__summaries_encode(struct store *st, const repl__dreq *q, size_t limit, mrd_buf *out);
typedef struct repl__peerset repl__peerset;
/* Client: a summaries answer. MRD_EPROTO when it is not one (an older peer)
 * or is malformed. */
int repl__peerset_decode(const void *data, size_t len, repl__peerset **out);
void repl__peerset_free(repl__peerset *ps);
size_t repl__peerset_count(const repl__peerset *ps);
int repl__peerset_partial(const repl__peerset *ps);
/* 1 if ps speaks for version vid of (bucket, key): it is complete (or
 * NULL), or its walk got that far in index order (a bucket it finished; a
 * key before the one it stopped at; a version of that key up to the last it
 * listed: a page may end inside one key's versions). 0 beyond that: the
 * walk needs the next page from there. */
int repl__peerset_covers(const repl__peerset *ps, const char *bucket, const char *key,
                         const char *vid);
/* 1 if the peer holds a version that makes sending v (of bucket/key) change
 * nothing there (repl_sync.c, vsum_noop); 0 when ps is NULL. */
int repl__peerset_noop(const repl__peerset *ps, const char *bucket, const char *key,
                       const struct store_version *v);

/* Client: nodes of one bucket from a version 2 answer. */
typedef struct repl__tnodes {
    char bucket[REPL_BUCKET_MAX];
    uint32_t level;
    uint64_t versions;
    int missing;
    size_t n_parents;
    uint32_t *parents;
    uint8_t *hashes; /* 16 (roots) or 16 x 16 per parent */
} repl__tnodes;
/* Decodes a DigestResponse: *is_tree 0 for a version 1 answer (decode it
 * with repl__digest_decode), else the nodes. MRD_EPROTO when malformed. */
int repl__tree_decode(const void *data, size_t len, int *is_tree, repl__tnodes **out, size_t *n);
void repl__tnodes_free(repl__tnodes *t, size_t n);

/* Nodes still to compare: (index into ours, level, node). */
typedef struct repl__tref {
    uint32_t b, level, node;
} repl__tref;
typedef struct repl__tpend {
    size_t n, cap;
    repl__tref *v;
} repl__tpend;
void repl__tpend_free(repl__tpend *p);
/* After the roots: a bucket the peer lacks is marked missing (every leaf
 * differs); a differing root is queued in pend; a bucket only the peer
 * holds is added to push (level 0). Every bucket of mine gets a 65536-leaf
 * differ bitmap (cmp_leaves). With only (not NULL or ""), other buckets are
 * left alone (nothing differs). */
int repl__tree_roots_diff(repl__bdigest *mine, size_t n_mine, const repl__tnodes *roots,
                          size_t n_roots, const char *only, repl__tpend *pend, repl__dreq *push);
/* A children request for pend->v[from .. from + max). */
int repl__tree_request(const repl__bdigest *mine, const repl__tpend *pend, size_t from, size_t max,
                       mrd_buf *out);
/* Compares an answer's children with ours: differing leaves are marked,
 * differing inner nodes queued in next. MRD_EPROTO for an answer that is
 * not about our buckets or out of range. A bucket the peer no longer holds
 * is marked missing. */
int repl__tree_children_diff(repl__bdigest *mine, size_t n_mine, const repl__tnodes *ans, size_t n,
                             repl__tpend *next);
/* The differing leaves of buckets both sides hold, into push (a bucket with
 * more than REPL_TREE_PUSH_LEAF of them as a whole). */
int repl__tree_push_leaves(const repl__bdigest *mine, size_t n, repl__dreq *push);
void repl__digest_free(repl__bdigest *d, size_t n);
/* 1 if repl__digest_diff found the bucket's configuration entry differing. */
int repl__config_differs(const repl__bdigest *d);
/* A DigestResponse of d, folded to each bucket's answer resolution. */
int repl__digest_encode(const repl__bdigest *d, size_t n, mrd_buf *out);
int repl__digest_decode(const void *data, size_t len, repl__bdigest **out, size_t *n);
/* Marks in mine[i].differ the leaves that differ from theirs; total count
 * of differing leaves in *differing. */
int repl__digest_diff(repl__bdigest *mine, size_t n_mine, const repl__bdigest *theirs,
                      size_t n_theirs, uint64_t *differing);
/* A record rebuilt from an index version (payload malloc'ed; for striped
 * data, data_size set and *layout a copy of the layout). */
int repl__version_record(const char *bucket, const char *key, const struct store_version *v,
                         repl__rec *r, void **layout, size_t *layout_len);
/* An ObjectTags record of v's tag set and stamp, for a version tagged after
 * its put (sent before the version's record: where the peer holds the
 * version, its put is a no-op and this carries a tag change it missed).
 * Returns 1 when made, 0 when v carries no tag stamp, or -ENOMEM. */
int repl__tags_record(const char *bucket, const char *key, const struct store_version *v,
                      repl__rec *r);
/* A BucketCreate record from a bucket's index blob. */
int repl__bucket_record(const char *bucket, const void *blob, size_t len, repl__rec *r);

/* ------------------------------------------------------------------------ */
/* Health machine (repl_health.c): pure, times passed in                    */
/* ------------------------------------------------------------------------ */

typedef struct repl__health {
    repl_peer_state state;
    uint64_t state_since_ns;
    uint32_t ok_streak;
    uint32_t fail_streak;
    uint32_t down_after;
    uint32_t up_after;
    double rtt_us; /* EWMA, 0 = none yet */
    double last_us;
    uint32_t samples[REPL_BASELINE_SAMPLES]; /* ring of recent RTTs in us */
    uint32_t n_samples;
    uint32_t next_sample;
    uint64_t ok_total;
    uint64_t fail_total;
} repl__health;

void repl__health_init(repl__health *h, uint32_t down_after, uint32_t up_after, uint64_t now_ns);
/* Records one outcome; returns the state before it (compare with h->state). */
repl_peer_state repl__health_ok(repl__health *h, uint64_t rtt_us, uint64_t now_ns);
repl_peer_state repl__health_fail(repl__health *h, uint64_t now_ns);
double repl__health_baseline_us(const repl__health *h);
int repl__health_rtt_high(const repl__health *h);

/* ------------------------------------------------------------------------ */
/* Connections (repl_conn.c): nghttp2 over a bufferevent                    */
/* ------------------------------------------------------------------------ */

typedef struct repl_peer repl_peer;
typedef struct repl__conn repl__conn;
typedef struct repl__stream repl__stream;

struct repl__stream {
    repl__stream *next; /* in conn->streams */
    int32_t id;
    int kind;         /* REPL__ST_* */
    int status;       /* client: response :status */
    int too_big;      /* body over REPL_MAX_CTRL_BODY */
    int bad_header;   /* a header value over its limit or repeated */
    int answered;     /* server: a response was submitted */
    uint64_t sent_ns; /* client: when submitted */
    uint64_t seq;
    char method[16];
    char path[REPL_HDR_VALUE_MAX];
    char site[REPL_HDR_VALUE_MAX];
    char time[REPL_HDR_VALUE_MAX];
    char auth[REPL_HDR_VALUE_MAX];
    char req_auth[65]; /* client: the request's signature */
    mrd_buf in;        /* received body, <= REPL_MAX_CTRL_BODY */
    mrd_buf out;       /* body to send (a records request: the framed batch) */
    size_t out_off;
    void *ctx; /* records: the sender's item (client) or the receive state (server) */
};

enum {
    REPL__ST_HELLO = 1,
    REPL__ST_HEARTBEAT = 2,
    REPL__ST_SERVER = 3,
    REPL__ST_RECORDS = 4,    /* client: records or resync request (ctx: the item) */
    REPL__ST_DIGEST = 5,     /* client: digest request */
    REPL__ST_DIGEST_SRV = 6, /* server: digest request being computed (ctx) */
    REPL__ST_TOPOLOGY = 7,   /* client: topology fetch */
};

/* repl__tx_body's answers besides a byte count. */
#define REPL__BODY_DEFERRED (-1)
#define REPL__BODY_FAIL     (-2)

struct repl__conn {
    repl *r;
    repl__conn *next; /* server: in r->inbound */
    struct bufferevent *bev;
    nghttp2_session *h2;
    struct event *timer; /* server: auth deadline / idle cut */
    int is_client;
    int connected;   /* TCP up and the session made */
    int dead;        /* close at the next safe point */
    int reject;      /* server: auth failed, GOAWAY after the answer */
    repl_peer *peer; /* client: its peer; server: the authenticated peer */
    repl__stream *streams;
    uint64_t last_rx_ns;
    uint64_t bytes_in;
    uint64_t bytes_out;
    char remote[64];              /* "host:port" for logs */
    char why[96];                 /* why it is dead */
    int tls;                      /* a mutual TLS connection (r->o.tls) */
    int tls_up;                   /* ... whose handshake is done, ALPN h2 checked */
    repl_peer *tls_peer;          /* server: the peer its client certificate names */
    uint32_t tls_site;            /* server: the site id it names, a peer's or a removed one's */
    char tls_claim[MRD_NAME_MAX]; /* server: a refused certificate's CN, if a peer's name,
                                   * or the removed site it was accepted as */
};

/* Wraps fd (connected, or connecting for a client) in a bufferevent and
 * makes the session. For a client, fd < 0 means "connect to addr". */
int repl__conn_new(repl *r, int is_client, int fd, repl__conn **out);
/* Client: connects c (whose peer is set) to the peer's address. */
int repl__conn_dial(repl__conn *c);
/* Sends what nghttp2 has, within the output threshold. */
void repl__conn_flush(repl__conn *c);
/* Marks c dead with a reason; the owner frees it at its next safe point. */
void repl__conn_fail(repl__conn *c, const char *why);
/* Frees c now (never from inside an nghttp2 callback). */
void repl__conn_free(repl__conn *c);
repl__stream *repl__stream_new(repl__conn *c, int kind);
repl__stream *repl__stream_find(repl__conn *c, int32_t id);
void repl__stream_unlink_free(repl__conn *c, repl__stream *s);
/* Submits a response with the three auth headers and body (may be empty). */
int repl__submit_response(repl__conn *c, repl__stream *s, int status, const void *body, size_t len);
/* Submits a signed POST of s->out to path; s->req_auth is filled. For a
 * REPL__ST_RECORDS stream the body goes on after s->out with the object data
 * repl__tx_body supplies, and the signature covers s->out only. */
int repl__submit_request(repl__conn *c, repl__stream *s, const char *path);
/* Resumes a stream whose body returned REPL__BODY_DEFERRED. */
void repl__conn_resume(repl__conn *c, int32_t stream_id);
/* Returns n received DATA bytes of a stream to the flow-control windows. */
void repl__conn_consume(repl__conn *c, int32_t stream_id, size_t n);
/* Frees a dead connection at a safe point (called by the owner). Client and
 * server differ in what they tidy up. */
void repl__conn_reap(repl__conn *c);

/* Mutual TLS policy (repl_tls.c): the tls_check_fn of a link (ud: the
 * repl__conn). A client accepts only its peer's certificate; a server any
 * configured peer's, and binds the connection to it (c->tls_peer). */
struct tls_peer_cert;
int repl__tls_check(void *ud, const struct tls_peer_cert *pc, char *why, size_t whysz);
/* The pin site id is trusted by, or NULL: this site's file ([peer.NAME]
 * tls_pin) first, then the topology's (its sites, then its removed sites). */
const uint8_t *repl__tls_pin_of(const repl *r, uint32_t id);
/* Logs a link refused at the TLS stage (rate-limited) and returns the
 * reason as stored in c->why. */
void repl__tls_refused(repl__conn *c, const char *reason);

/* Called by repl_conn.c (defined in repl_client.c / repl_server.c). */
void repl__client_on_connected(repl__conn *c);
void repl__client_on_closed(repl__conn *c);
void repl__client_on_stream_close(repl__conn *c, repl__stream *s, uint32_t error_code);
void repl__server_on_request(repl__conn *c, repl__stream *s);
void repl__server_on_closed(repl__conn *c);
void repl__server_on_stream_close(repl__conn *c, repl__stream *s);
/* Authenticates a request whose signed body is body[0..len): on success
 * returns its peer (binding the connection); on failure answers it (401) and
 * returns NULL. */
repl_peer *repl__server_auth(repl__conn *c, repl__stream *s, const void *body, size_t len);
/* Answers a request with a one-line text/plain body. */
void repl__server_answer_text(repl__conn *c, repl__stream *s, int status, const char *text);
/* Checks a response's status and signature; NULL when good, else why not. */
const char *repl__client_check_auth(repl__conn *c, repl__stream *s, uint32_t error_code);

/* Sender (repl_send.c). */
int repl__tx_new(repl_peer *p);
void repl__tx_free(repl_peer *p);
void repl__tx_on_connected(repl_peer *p);
void repl__tx_on_disconnected(repl_peer *p);
void repl__tx_on_stream_close(repl__conn *c, repl__stream *s, uint32_t error_code);
void repl__tx_stream_gone(repl__stream *s);
/* More body for a records stream: a byte count (0 = none), or
 * REPL__BODY_DEFERRED / REPL__BODY_FAIL; *eof set at the end. */
long repl__tx_body(repl__conn *c, repl__stream *s, uint8_t *buf, size_t len, int *eof);
void repl__tx_pump(repl_peer *p);
/* repl__tx_pump, then flushes (and reaps) p's connection: after work done
 * outside nghttp2 callbacks. */
void repl__tx_pump_flush(repl_peer *p);
void repl__tx_on_digest(repl__conn *c, repl__stream *s, uint32_t error_code);
/* Starts an anti-entropy pass to p (resync: bring a needs-resync peer level
 * and resume streaming after it). MRD_EBUSY when one runs. */
int repl__sync_start(repl_peer *p, int resync);
/* The same, limited to one bucket (NULL or "": all); a resync ignores the
 * limit (it must cover everything). */
int repl__sync_start_bucket(repl_peer *p, int resync, const char *bucket);
/* Stops a running pass (its queued requests are dropped; those in flight
 * finish). A cancelled resync is not restarted until repl__sync_start. */
int repl__sync_cancel(repl_peer *p);
/* A pass to p over the subtrees q names (a push: p found them differ). */
int repl__sync_start_push(repl_peer *p, const repl__dreq *q);
/* Server side of /repl/v1/digest. */
void repl__digest_serve(repl__conn *c, repl__stream *s, repl_peer *p);
void repl__digest_srv_gone(repl__stream *s);
/* The sender's and receiver's figures in a peer snapshot. */
void repl__tx_fill(const repl_peer *p, repl_peer_info *out);
/* Records we originated in (acked, durable]: from the last WAL scan (at
 * most a second old), every record after it counted. */
uint64_t repl__tx_lag_records(const repl_peer *p, uint64_t durable);
/* Age of the oldest durable record the peer has not acked, in ms. */
double repl__tx_lag_ms(const repl_peer *p, uint64_t now_ns);
/* What p holds of our versions, by stamp (repl_held). */
void repl__tx_held(const repl_peer *p, repl_held *out);
int repl__tx_set_bandwidth(repl_peer *p, uint64_t bytes_per_s);

/* FAILED records (repl_failed.c): recounts p's, incrementally, by a job. */
void repl__failed_tick(repl_peer *p);

/* Receiver (repl_recv.c). */
int repl__rx_data(repl__conn *c, repl__stream *s, const uint8_t *data, size_t len);
void repl__rx_end(repl__conn *c, repl__stream *s);
void repl__rx_stream_gone(repl__stream *s);
void repl__rx_peer_free(repl_peer *p);
void repl__rx_tick(repl_peer *p);
void repl__rx_pool_free(repl *r); /* at repl_free */

/* ------------------------------------------------------------------------ */
/* The replicator and its peers (repl.c, repl_client.c, repl_server.c)      */
/* ------------------------------------------------------------------------ */

struct repl_peer {
    repl *r;
    int idx;
    int removed; /* left the topology: the slot stays (never reused), inert */
    /* object data sent to it per second, updated every tick */
    uint64_t rate_bps, rate_last_bytes, rate_last_ns;
    uint32_t id;
    char name[MRD_NAME_MAX];
    mrd_addr addr;

    /* outbound */
    repl__conn *conn;
    int hello_done;
    uint64_t conn_started_ns;
    struct event *reconnect_ev;
    uint32_t backoff_attempt;
    repl__stream *hb;       /* the heartbeat in flight, or NULL */
    uint32_t conn_timeouts; /* heartbeat timeouts in a row on this connection */
    uint64_t hb_seq;

    repl__health health;
    uint64_t last_ok_ns;
    uint64_t last_inbound_ns;
    int64_t clock_offset_ms; /* x-meridian-time of its last request minus our clock */
    int clock_skew_warned;   /* logged repl.peer.clock_skew; cleared once back under half */

    /* announced by the peer (Hello, heartbeat responses, its heartbeats) */
    uint64_t high_water;
    uint64_t applied_from_us;
    uint64_t epoch;
    uint64_t topo_hash;
    uint32_t features;               /* REPL_FEATURE_* of its last Hello answer on our connection */
    repl__link links[MRD_MAX_PEERS]; /* its links, as it last announced them */
    int n_links;
    uint64_t links_ns; /* when (mono) */
    uint64_t hlc;
    uint64_t boot_id;
    int inbound;

    uint64_t auth_failures;
    uint64_t connects;
    uint64_t bytes_in;
    uint64_t bytes_out;
    char last_error[96];
    char conn_error[96]; /* why the last dial failed before Hello ("" after one succeeds) */

    /* streaming our records to it (repl_send.c) */
    struct repl__tx *tx;
    /* applying its records here (repl_recv.c): batches in first-LSN order,
     * applied one at a time */
    struct repl__rx *rxq;
    int rx_inflight;     /* batches handed to the engine, not yet applied */
    uint64_t rx_issued;  /* its LSN we have handed to the engine up to */
    uint64_t rx_applied; /* its LSN we have applied up to */
    uint64_t rx_records, rx_batches, rx_objects, rx_bytes, rx_errors, rx_duplicates;
    uint64_t rx_resync_versions;
    /* tree digest answered to it: its children requests read this (repl_recv.c) */
    repl__bdigest *dg_cache;
    size_t dg_n;
    uint64_t dg_used_ns;
    /* FAILED records (repl_failed.c): the count over (failed_acked, failed_at] */
    uint64_t failed_count, failed_acked, failed_at;
    int failed_valid, failed_running, failed_partial;
};

/* Outlives the repl: work that finishes after repl_free checks dead before
 * touching the repl or its peers. */
typedef struct repl__life {
    int refs;
    int dead;
} repl__life;
void repl__life_unref(repl__life *l);

struct repl {
    struct event_base *base;
    repl__life *life;
    uint32_t site_id;
    char site_name[MRD_NAME_MAX];
    char *secret; /* NULL: no secret, links authenticated by mutual TLS alone */
    size_t secret_len;
    repl_opts o; /* copy; string and array pointers not used after new */
    uint64_t boot_id;
    uint32_t connect_timeout_ms;
    uint32_t features; /* announced in our Hellos: REPL_FEATURES, or a test's mask */
    /* Poly1305 for the data checks (repl__dcheck_mac_fetch), fetched once
     * at repl_new and read-only after; NULL: this OpenSSL has none */
    struct evp_mac_st *dc_mac;
    /* test hook (MERIDIAN_TEST_REPL_DCHECK_FAULT): the next this many data
     * checks this site sends fail to finish, as if OpenSSL failed */
    int test_dcheck_faults;

    struct evconnlistener *listener;
    int own_listener;
    struct event *tick_ev;
    uint64_t tick;
    int started;

    mrd_hlc *hlc;
    int own_hlc;

    repl_peer peers[MRD_MAX_PEERS]; /* removed ones included: skip p->removed */
    int n_peers;

    /* topology (repl_topo.c) */
    mrd_peer_conf conf_peers[MRD_MAX_PEERS]; /* as configured: our routes to them */
    int n_conf_peers;
    repl_topology topo;
    repl_topology topo_pending; /* offered from a callback, applied by topo_ev */
    int topo_pending_set;
    uint64_t topo_fetch_ns; /* a fetch in flight since (mono ns); 0 = none */
    struct event *topo_ev;
    /* removed sites answered 410 so far, logged at info once each: a ring
     * of ids (0 = empty), told_next the next entry to overwrite */
    uint32_t told_removed[REPL_TOPO_MAX_REMOVED];
    int told_next;

    repl__conn *inbound;
    repl_stats stats;

    /* batch head and object data buffers kept for the next requests:
     * fresh ones cost a page fault per 4 KiB (repl_recv.c) */
    mrd_buf pool[REPL_POOL_BUFS];
    int n_pool;
    size_t pool_bytes;
    /* plain TCP connections read the socket straight into this
     * (REPL_READ_CHUNK bytes, allocated on first use; repl_conn.c) */
    uint8_t *rdbuf;
    struct engine *eng;    /* attached engine: record streams run only with one */
    struct event *pump_ev; /* REPL_PUMP_MS: idle senders look for new records */
    uint64_t rng;          /* xorshift state for backoff jitter */
};

uint64_t repl__now_ms(const repl *r);
/* Fills m with this site's state (site, name, epoch, HLC, high water, applied). */
void repl__local_state(repl *r, repl__msg *m);
/* Applies a peer's announced state to its table entry. */
void repl__peer_absorb(repl_peer *p, const repl__state_msg *st);
/* Records a heartbeat outcome and reports a state change. */
void repl__peer_outcome(repl_peer *p, int ok, uint64_t rtt_us, const char *why);
/* The peer with that id, NULL when none or removed. */
repl_peer *repl__peer_by_id(repl *r, uint32_t id);
/* The slot of a site removed from the topology since start-up (it is told
 * so with 410 and the topology: PROTOCOL.md section 9), or NULL. */
repl_peer *repl__peer_removed(repl *r, uint32_t id);
/* The name of site id when it was removed from the topology (a slot removed
 * since start-up, or the topology's removed list), else NULL. */
const char *repl__removed_name(repl *r, uint32_t id);

/* Topology (repl_topo.c; PROTOCOL.md section 9). */
int repl__peer_init(repl *r, int i, const mrd_peer_conf *pc); /* slot i, not counted */
void repl__topo_init(repl *r, const repl_opts *o);            /* epoch 0 from the config */
int repl__topo_start(repl *r);
void repl__topo_stop(repl *r);
int repl__topo_load(repl *r); /* the stored topology, once the engine is attached */
int repl__topo_encode(const repl_topology *t, mrd_buf *out);
/* Decodes and checks a Topology body (epoch >= 1, sane sites); *why says
 * what is wrong. MRD_EPROTO. */
int repl__topo_decode(const void *data, size_t len, repl_topology *out, const char **why);
/* 1 when (epoch, hash) orders after than's. */
int repl__topo_newer(uint64_t epoch, uint64_t hash, const repl_topology *than);
/* Adopts t (later, from an event) if it is newer than ours. */
void repl__topo_offer(repl *r, const repl_topology *t);
/* A peer announced (epoch, hash): fetch its topology if newer. */
void repl__topo_maybe_fetch(repl_peer *p, uint64_t epoch, uint64_t hash);
void repl__topo_on_fetched(repl__conn *c, repl__stream *s, uint32_t error_code);
void repl__topo_serve(repl__conn *c, repl__stream *s);
uint64_t repl__rand(repl *r);

/* Client side (repl_client.c). */
int repl__client_init(repl_peer *p); /* its reconnect timer */
void repl__client_start(repl_peer *p);
/* The peer said Hello on the connection it dialled: if our session to it
 * waits out a reconnect delay, dial now (repl_client.c). */
void repl__client_peer_is_back(repl_peer *p);
void repl__client_tick(repl_peer *p);
void repl__client_stop(repl_peer *p);

/* Server side (repl_server.c). */
void repl__server_accept(repl *r, int fd, const char *remote);

#endif /* MERIDIAN_REPL_INT_H */
