/*
 * replicator.h - the public API of Meridian's replicator (prefix repl_).
 *
 * The replicator owns the links between sites. Today that is the foundation:
 *   - one outbound HTTP/2 (h2c, prior knowledge) session per configured peer,
 *     reconnecting with jittered exponential backoff;
 *   - an inbound HTTP/2 server on the replication listen address;
 *   - peer authentication (HMAC-SHA256 over every request and response with
 *     the shared replication secret, see replicator/PROTOCOL.md);
 *   - heartbeats carrying each site's WAL high-water LSN and applied LSNs;
 *   - per-peer RTT (EWMA) and health with hysteresis, read by the gateway
 *     for routing and by the admin API.
 *   - with an engine attached (repl_attach_engine): streaming of the records
 *     this site originates to every peer, with acks that advance the peer's
 *     WAL cursor, and applying peers' records through the engine
 *     (repl_send.c, repl_recv.c; PROTOCOL.md section 6).
 *   - anti-entropy (index digests compared, differing versions sent) for
 *     peers past WAL retention and periodically (repl_sync.c);
 *   - the cluster topology, changed at run time and spread over the links
 *     (repl_topo.c; PROTOCOL.md section 9).
 *
 * Threading: a repl handle belongs to the event loop (event_base) it was
 * created on. Every function here must be called on that loop's thread, and
 * every callback runs on it. Nothing blocks.
 *
 * Conventions: 0 on success, a negative MRD_E* code or negated errno on
 * failure; output parameters come last and are written only on success; if a
 * call that takes a callback fails, the callback is never called.
 *
 * ---------------------------------------------------------------------------
 * Health rules (exact)
 * ---------------------------------------------------------------------------
 * A tick runs every heartbeat interval I (repl_opts.heartbeat_ms, default
 * 1000 ms). Each heartbeat attempt on a peer's outbound session ends in
 * exactly one outcome, OK or FAIL:
 *   OK   the response arrived with status 200, a valid response signature and
 *        a well-formed Heartbeat from the expected site id. Its round trip
 *        (submit to end of response) is one RTT sample.
 *   FAIL any other response (401, 400, 5xx), a bad signature or body, the
 *        stream reset, the connection lost while the heartbeat was in flight,
 *        or no answer in time: the heartbeat is cancelled (RST_STREAM
 *        CANCEL) at the first tick at which it has been in flight for at
 *        least T - I/10 (T = heartbeat_timeout_ms, default I; the I/10
 *        absorbs timer slack). So with T = I a heartbeat sent at a tick
 *        times out at the next one.
 * A tick at which the peer has no usable session (not connected, or the
 * Hello exchange not finished) is also a FAIL ("disconnected"). A tick at
 * which a heartbeat is in flight and not yet timed out yields no outcome.
 *
 * RTT: rtt = 0.8 * rtt + 0.2 * sample (the first sample sets it).
 * Baseline: the minimum sample among the last REPL_BASELINE_SAMPLES OK
 * samples. rtt_high means rtt > 2 * baseline AND rtt - baseline >= 5 ms (the
 * floor keeps loopback jitter of tens of microseconds from counting).
 *
 * States: UNKNOWN (nothing yet, start-up), HEALTHY, DEGRADED, DOWN. With
 * N = down_after (default 3) and M = up_after (default 3):
 *   on FAIL: fail_streak += 1, ok_streak = 0;
 *            fail_streak >= N            -> DOWN (from any state)
 *            else HEALTHY                -> DEGRADED ("recent failure")
 *            (UNKNOWN, DEGRADED, DOWN otherwise stay)
 *   on OK:   ok_streak += 1, fail_streak = 0, update rtt and baseline;
 *            UNKNOWN or DOWN, ok_streak >= M -> rtt_high ? DEGRADED : HEALTHY
 *            HEALTHY, rtt_high            -> DEGRADED
 *            DEGRADED, !rtt_high and ok_streak >= M -> HEALTHY
 * So a dead peer is DOWN after N ticks (N * I, plus up to one tick of phase),
 * a peer back from DOWN needs M consecutive OK heartbeats, one lost
 * heartbeat demotes HEALTHY to DEGRADED but never to DOWN, and a DEGRADED
 * peer is promoted only after M clean heartbeats in a row.
 * After N consecutive heartbeat timeouts on one connection it is
 * dropped and redialled (it may be half-dead: a peer that restarted behind
 * a partition). A connection that has not finished Hello within
 * max(3 * I, 1000 ms) is dropped and redialled too.
 * Reconnect delay: d = min(backoff_max_ms, backoff_min_ms * 2^attempt),
 * then uniform in [d/2, d]; attempt resets when a Hello succeeds.
 */
#ifndef MERIDIAN_REPLICATOR_H
#define MERIDIAN_REPLICATOR_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

struct event_base;
struct evconnlistener;

typedef struct repl repl;
struct repl_topology;

#define REPL_BASELINE_SAMPLES 64    /* window of the RTT baseline (min filter) */
#define REPL_MAX_CTRL_BODY    65536 /* largest Hello/Heartbeat body accepted */

/* ------------------------------------------------------------------------ */
/* Options                                                                  */
/* ------------------------------------------------------------------------ */

/* One applied-LSN entry: this site has applied origin's records up to lsn. */
typedef struct repl_applied {
    uint32_t origin_site;
    uint64_t lsn;
} repl_applied;

typedef struct repl_peer_info repl_peer_info;
typedef enum repl_peer_state repl_peer_state;

typedef struct repl_opts {
    uint32_t site_id;      /* this site; must be nonzero and not a peer's id */
    const char *site_name; /* copied */
    /* Replication secret (copied). NULL or "" only with tls: links are then
     * authenticated by the peer certificates alone, messages are not signed
     * and forwarded S3 requests are neither sent nor accepted. */
    const char *secret;
    /* Mutual TLS links (PROTOCOL.md section 1): a context from tls_ctx_new
     * with verify_peer and ALPN "h2" (borrowed; must outlive repl). Peers
     * are identified by their mrd_peer_conf.tls_pin, or, when the context
     * has a CA file, by a CA-signed certificate whose CN is the peer's name.
     * NULL: h2c. */
    struct tls_ctx *tls;

    /* Inbound: either an existing listener (borrowed: repl installs its
     * accept callback and disables it in repl_free; the caller frees it after
     * repl_free), or else listen is bound (port 0 picks a free port; see
     * repl_listen_addr). */
    struct evconnlistener *listener;
    mrd_addr listen;

    const mrd_peer_conf *peers; /* copied; the replication address is dialled */
    int n_peers;                /* 0..MRD_MAX_PEERS */

    uint32_t heartbeat_ms;         /* tick interval I; default 1000 */
    uint32_t heartbeat_timeout_ms; /* T; default I; rounded up to ticks */
    uint32_t down_after;           /* N consecutive FAILs -> DOWN; default 3 */
    uint32_t up_after;             /* M consecutive OKs to recover; default 3 */
    uint32_t backoff_min_ms;       /* default 100 */
    uint32_t backoff_max_ms;       /* default 5000 */
    uint32_t max_clock_skew_ms;    /* auth time window, each way; default 900000 */
    /* This site's own entry in the topology (PROTOCOL.md section 9): the
     * addresses peers reach it at. */
    mrd_addr self_replication;
    mrd_addr self_s3; /* port 0: unknown */
    /* Anti-entropy: a digest comparison with every peer this often (0 = only
     * when a peer needs a resync, or repl_sync). */
    uint32_t anti_entropy_ms;
    /* Anti-entropy: the most bytes of version summaries one answer to a
     * peer's pass carries (a page; the peer asks for the next). 0: the
     * default, 4 MiB; else 4096..4 MiB. Smaller pages cost more round trips,
     * never more data. */
    uint32_t summary_page_bytes;
    /* A version of ours a peer has not applied this long after its stamp is
     * FAILED (x-amz-replication-status; counted per peer, listed by
     * repl_failed_scan). 0: never. Default 3600000. */
    uint64_t failed_after_ms;

    /* Callbacks, all optional, all on the loop thread, all given user_data. */
    /* This site's WAL high-water LSN (e.g. wal_get_status().durable_lsn). */
    uint64_t (*local_high_water)(void *user_data);
    /* Fills out[0..max) with what this site has applied per origin; returns
     * the count (<= max) or a negative code (then nothing is announced). */
    int (*local_applied)(void *user_data, repl_applied *out, int max);
    /* A peer changed health state; info is valid during the call only. */
    void (*on_peer_state)(void *user_data, const repl_peer_info *info, repl_peer_state old_state);
    /* A topology was adopted (changed here, fetched from a peer, or loaded
     * at start-up); t is valid during the call only. */
    void (*on_topology)(void *user_data, const struct repl_topology *t);
    void *user_data;

    /* Wall clock (ms since the epoch) for the auth time window; NULL means
     * mrd_clock_realtime_ms. Injected by tests for skew cases. */
    mrd_clock_fn clock;
    void *clock_ud;
    /* HLC used to stamp messages and observe peers' stamps; borrowed, must
     * outlive repl. NULL: repl keeps its own. */
    mrd_hlc *hlc;
} repl_opts;

/* Zeroes o and sets the defaults above. Call before filling fields. */
void repl_opts_init(repl_opts *o);

/* ------------------------------------------------------------------------ */
/* Lifecycle                                                                */
/* ------------------------------------------------------------------------ */

/*
 * Creates a replicator on base: validates and copies o, binds the listen
 * address (unless o->listener is given). Nothing is dialled or accepted
 * until repl_start.
 * Errors: MRD_EINVAL (bad options: no secret and no tls, site id 0 or equal to a peer's,
 * duplicate peer ids, too many peers), -errno from bind/listen, -ENOMEM.
 * On success *out is owned by the caller (repl_free).
 */
int repl_new(struct event_base *base, const repl_opts *o, repl **out);

/* Starts accepting peers, dialling every peer and the heartbeat tick.
 * Errors: MRD_EINVAL when already started, -ENOMEM. */
int repl_start(repl *r);

/* Closes every connection and the listener (a borrowed listener is only
 * disabled), cancels timers, frees r. No callback runs after it returns.
 * Accepts NULL. Must not be called from inside a repl callback. */
void repl_free(repl *r);

/* The bound listen address (the real port when 0 was asked for).
 * Errors: MRD_ENOTFOUND when the listener is borrowed and not an inet socket. */
int repl_listen_addr(const repl *r, mrd_addr *out);

/* ------------------------------------------------------------------------ */
/* Peer table                                                               */
/* ------------------------------------------------------------------------ */

enum repl_peer_state {
    REPL_PEER_UNKNOWN = 0, /* no outcome decided yet (start-up) */
    REPL_PEER_HEALTHY = 1,
    REPL_PEER_DEGRADED = 2,
    REPL_PEER_DOWN = 3,
};

/* Static lower-case name: "unknown", "healthy", "degraded", "down". */
const char *repl_peer_state_name(repl_peer_state s);

/*
 * Which versions of this site's writes a peer holds, by HLC stamp (local
 * stamps grow with LSN: engine_local_watermark, engine_core.c):
 *   - every version stamped below acked_hlc;
 *   - while it is being resynced (past WAL retention), also every version
 *     stamped in (resync_after_hlc, resync_acked_hlc): written after the
 *     point from which the stream to it runs without holes, and acked.
 *     0 and 0 when no pass has resumed the stream in this run.
 * Never more than it holds: older writes it may lack (the holes the pass
 * fills) are stamped at or below resync_after_hlc.
 */
typedef struct repl_held {
    uint64_t acked_hlc;
    uint64_t resync_after_hlc, resync_acked_hlc;
} repl_held;

/*
 * The cluster's stable point, for the GC (engine_gc_offer; docs/conflicts.md
 * section 6): every site of the topology has applied every write, from
 * every origin, stamped below hlc. It is the lowest, over every origin O and
 * every other site P, of what O says P has acked of O's writes: for O = this
 * site its senders' acked_hlc, for another O the acked_hlc of O's last
 * announced link to P (LinkState). Never heard of, or needing a resync: 0.
 * origin and site name the link that holds it lowest (0 and 0 when no peer).
 */
typedef struct repl_stable {
    uint64_t hlc;
    uint32_t origin, site;
} repl_stable;

/* Computes it (the tick offers it to the engine every second). Event loop
 * thread. Returns out->hlc; out may be NULL. */
uint64_t repl_stable_point(repl *r, repl_stable *out);

/* 1 when h says the peer holds the version of ours stamped hlc. Pure. */
int repl_held_has(const repl_held *h, uint64_t hlc);

/* A snapshot of one peer. Plain data, owned by the caller. Ages are -1 when
 * the event never happened. */
struct repl_peer_info {
    uint32_t id;
    repl_held held; /* what it has applied of our versions, by stamp */
    char name[MRD_NAME_MAX];
    mrd_addr addr; /* its replication address as configured */
    repl_peer_state state;
    int64_t state_age_ms;          /* since the last state change */
    int connected;                 /* outbound session up and Hello done */
    int inbound;                   /* authenticated inbound connections from it */
    double rtt_ms;                 /* EWMA; 0 before the first sample */
    double rtt_baseline_ms;        /* min of the recent window; 0 before a sample */
    double rtt_last_ms;            /* the latest sample */
    int64_t last_heartbeat_age_ms; /* since our last OK heartbeat to it */
    int64_t last_inbound_age_ms;   /* since its last heartbeat to us */
    int64_t clock_offset_ms;       /* its wall clock minus ours, from its last request (one-way
                                      delay included); 0 before one */
    uint64_t high_water_lsn;       /* its WAL high-water LSN, as announced */
    uint64_t applied_from_us;      /* what it has applied of our records */
    uint64_t topology_epoch;       /* as announced */
    uint64_t topology_hash;        /* as announced (0 with epoch 0) */
    uint64_t hlc;                  /* its latest HLC stamp */
    uint32_t consecutive_failures;
    uint32_t consecutive_successes;
    uint64_t heartbeats_ok;
    uint64_t heartbeats_failed;
    uint64_t auth_failures; /* its responses or requests that failed auth */
    uint64_t connects;      /* outbound sessions established */
    uint64_t bytes_in;      /* both directions' connections, wire bytes */
    uint64_t bytes_out;
    char last_error[96]; /* why the last FAIL happened ("" if none) */

    /* Our records streaming to it (zero until an engine is attached). */
    int streaming;         /* the sender runs on the current session */
    int needs_resync;      /* the WAL lost what it needs: anti-entropy's job */
    uint64_t acked_lsn;    /* it has durably applied our WAL up to here */
    uint64_t cursor_lsn;   /* ... as saved in our WAL cursor */
    uint64_t read_lsn;     /* our WAL read (queued or sent) up to here */
    uint64_t lag_records;  /* records we originated after acked_lsn (repl__tx_lag_records) */
    double lag_ms;         /* how long acked_lsn has been behind; 0 when level */
    uint64_t lag_bytes;    /* object data in those records, as of the last scan (<= 1 s old) */
    int lag_bytes_partial; /* lag_bytes is a lower bound (more than 200,000 records behind) */
    uint32_t queued;       /* requests cut, not yet sent */
    uint32_t inflight;     /* requests sent, not yet acked */
    uint64_t inflight_bytes;
    uint64_t batches_sent, records_sent, objects_sent, data_bytes_sent, send_errors;
    uint64_t superseded_skipped; /* puts not sent: overwritten or deleted here first */
    /* what checks our object data at it, on this connection (PROTOCOL.md
     * section 6): "crc32c", "poly1305" or "md5" (a build without data
     * checks: its MD5 against the ETag); "" when not connected */
    char data_check[16];
    char send_error[128];   /* the last sending failure, "" once an ack came */
    uint64_t bandwidth_bps; /* the limit on what we send it; 0 = none */
    /* Its records applied here. */
    uint64_t applied_from_peer;
    uint64_t records_received, objects_received, data_bytes_received, receive_errors;
    uint64_t duplicates_received;
    uint64_t resync_versions_received;
    /* Anti-entropy passes to it (we send what it lacks). */
    int sync_running;
    uint64_t sync_runs;
    uint64_t sync_versions_sent; /* in the current or last pass */
    uint64_t sync_buckets_sent;  /* bucket records (a missing bucket, or its config) in it */
    uint64_t sync_leaves_differ;
    uint64_t sync_versions_estimate; /* versions the pass will send, estimated from the digest */
    uint64_t sync_elapsed_ms;        /* since the current or last pass started */
    char sync_result[128]; /* "in sync", "N keys differed ...", "resynced ...", "" before any */
    int sync_tree;         /* the pass compared tree digests (version 2) */
    uint64_t sync_digest_bytes;     /* digest request and answer bodies of the pass */
    uint64_t sync_digest_rounds;    /* digest requests of the pass */
    char sync_push[96];             /* asking the peer for the other direction: "" when not */
    uint64_t sync_versions_skipped; /* left out: the peer holds them or would drop them */
    char sync_summaries[96];        /* what the peer said it holds in the differing leaves */
    /* Our records it has not applied failed_after_ms after their stamp
     * (FAILED), as of the last count (at most a heartbeat interval old). */
    uint64_t failed_records;
    int failed_unknown; /* the WAL no longer holds them: it needs a resync */
};

/* Number of peer slots: the configured peers, then those added by topology
 * changes. A slot of a removed peer stays (repl_peer_get skips it). */
int repl_peer_count(const repl *r);

/* Snapshot of peer i (0 <= i < repl_peer_count).
 * Errors: MRD_EINVAL when i is out of range, MRD_ENOTFOUND when that peer
 * was removed from the topology. */
int repl_peer_get(const repl *r, int i, repl_peer_info *out);

/* Index of the peer with that site id, or MRD_ENOTFOUND. */
int repl_peer_find(const repl *r, uint32_t site_id);

/* For routing. Picks the HEALTHY peer with the lowest rtt_ms; with
 * REPL_ROUTE_ALLOW_DEGRADED, DEGRADED peers are used when no HEALTHY one
 * qualifies. Peers whose id is in exclude[0..n_exclude) are skipped; with
 * min_high_water > 0 only peers whose announced high_water_lsn is at least
 * that qualify. Returns the peer's index (and fills *out when not NULL), or
 * MRD_ENOTFOUND. */
#define REPL_ROUTE_ALLOW_DEGRADED 0x1u
int repl_nearest_healthy(const repl *r, unsigned flags, const uint32_t *exclude, int n_exclude,
                         uint64_t min_high_water, repl_peer_info *out);

/*
 * Attaches the engine: from now on the records this site originates are
 * streamed to every peer (from the cursor each peer announces in its Hello)
 * and peers' records are applied through engine_repl_apply. Call once, on
 * the loop thread, when the engine is open; the engine must stay open until
 * repl_free (which closes the WAL readers it opened).
 */
struct engine;
int repl_attach_engine(repl *r, struct engine *e);

/* Starts an anti-entropy pass to peer site_id now: its digest is compared
 * with ours and the versions it lacks are sent (the result shows in
 * repl_peer_info.sync_result). Errors: MRD_ENOTFOUND (no such peer),
 * MRD_ESHUTDOWN (not connected or no engine), MRD_EBUSY (one is running). */
int repl_sync(repl *r, uint32_t site_id);
/* repl_sync over one bucket only (NULL: all). A peer past WAL retention
 * gets a full resync whatever bucket is asked (logged). MRD_EINVAL when the
 * name is too long. */
int repl_sync_bucket(repl *r, uint32_t site_id, const char *bucket);

/*
 * Replication status of a version, as S3's x-amz-replication-status:
 * "REPLICA" when it originated at another site; at its origin "COMPLETED"
 * once every peer has applied it, else "PENDING", or "FAILED" when still
 * pending after failed_after_ms (it keeps being retried and may still
 * complete). NULL when this site has no peers. hlc is the version's stamp.
 */
const char *repl_version_status(const repl *r, uint32_t origin_site, uint64_t hlc, uint64_t now_ms,
                                uint64_t failed_after_ms);

/* The same for one peer (index i, as repl_peer_get): at the version's
 * origin "COMPLETED" once peer i has applied it, else "PENDING" or
 * "FAILED"; "REPLICA" when the version originated elsewhere (its origin
 * sends it). NULL when i is out of range. */
const char *repl_version_peer_status(const repl *r, int i, uint32_t origin_site, uint64_t hlc,
                                     uint64_t now_ms, uint64_t failed_after_ms);
/* The same from a snapshot: held is repl_peer_info.held of the peer,
 * self_site this site's id. Pure, so any thread may call it. */
const char *repl_status_of(const repl_held *held, uint32_t self_site, uint32_t origin_site,
                           uint64_t hlc, uint64_t now_ms, uint64_t failed_after_ms);

/* ------------------------------------------------------------------------ */
/* FAILED records (repl_failed.c)                                           */
/* ------------------------------------------------------------------------ */

/* What a listing of one peer's FAILED records needs, taken on the loop. */
typedef struct repl_failed_query {
    uint32_t peer_id;
    char peer_name[MRD_NAME_MAX];
    uint64_t acked_lsn;       /* the peer has applied our records up to here */
    uint64_t durable_lsn;     /* our WAL is durable up to here */
    uint64_t failed_after_ms; /* the deadline (repl_opts) */
    uint64_t cutoff_ms;       /* records stamped (HLC ms) at or before this are FAILED */
} repl_failed_query;

/* One FAILED record: strings valid during the callback only. */
typedef struct repl_failed_entry {
    uint64_t lsn;
    uint64_t hlc;
    uint16_t type;    /* WAL_REC_* */
    const char *kind; /* "put", "delete_marker", "delete_version", "tags", ... */
    const char *bucket, *key, *version_id; /* "" when the record has none */
    uint64_t size;                         /* object bytes (puts) */
} repl_failed_entry;

/* Returns nonzero to stop the scan (then end->more is set). */
typedef int (*repl_failed_fn)(void *ud, const repl_failed_entry *e);

typedef struct repl_failed_end {
    uint64_t acked_lsn; /* the acked LSN used (the larger of the query's and the WAL cursor) */
    uint64_t last_lsn;  /* the scan went up to here: pass it as after_lsn to go on */
    int more;           /* stopped early (the callback, or max_scan records read) */
} repl_failed_end;

/* On the loop: the query for peer_id at now_ms. MRD_ENOTFOUND (no such
 * peer), MRD_ESHUTDOWN (no engine attached). */
int repl_failed_query_get(const repl *r, uint32_t peer_id, uint64_t now_ms, repl_failed_query *out);

/* Blocking (reads the WAL; call from engine_run work; never touches the
 * repl): calls fn for every record this site originated that q's peer has
 * not applied and that is stamped at or before q->cutoff_ms, in LSN order,
 * from after_lsn (0: from the peer's acked LSN), only those of bucket when
 * not NULL, reading at most max_scan records (0: no limit). No index scan:
 * the WAL after the acked LSN is read up to the first record of ours
 * stamped after the cutoff. Errors: MRD_ENOTFOUND when the WAL no longer
 * holds that range (the peer needs a resync), the WAL's errors. */
int repl_failed_scan(struct engine *e, const repl_failed_query *q, const char *bucket,
                     uint64_t after_lsn, uint64_t max_scan, repl_failed_fn fn, void *ud,
                     repl_failed_end *end);

/* Limits the bytes per second our records and object data to peer site_id
 * may use (heads and data; heartbeats are not counted); 0 lifts the limit.
 * Takes effect at once, also for a resync in progress. The initial value
 * comes from mrd_peer_conf.bandwidth. MRD_ENOTFOUND for an unknown peer. */
int repl_set_bandwidth(repl *r, uint32_t site_id, uint64_t bytes_per_s);

/* Cancels the anti-entropy pass to peer site_id (result "cancelled"). A
 * cancelled resync of a peer past WAL retention waits for repl_sync.
 * MRD_ENOTFOUND when no pass runs or the peer is unknown. */
int repl_sync_cancel(repl *r, uint32_t site_id);

/* ------------------------------------------------------------------------ */
/* Proxied S3 requests (gateway routing; PROTOCOL.md section 8)             */
/* ------------------------------------------------------------------------ */

/* The three headers that authenticate an S3 request one site forwards to a
 * peer's S3 listener: x-meridian-site-id, x-meridian-time, x-meridian-auth. */
typedef struct repl_proxy_sig {
    char site[16];
    char time[24];
    char auth[65];
} repl_proxy_sig;

/* Signs a forwarded S3 request with the replication secret: method ("GET",
 * "PUT" ...), the raw request target (path and query as sent) and the
 * x-amz-content-sha256 value the peer will check the body against ("" when
 * absent). Errors: MRD_EINVAL (method too long). It reads only what never
 * changes after repl_new (secret, site id, clock), so unlike the rest of
 * this API it may be called from any thread while r exists. */
int repl_proxy_sign(const repl *r, const char *method, const char *target, const char *payload_hash,
                    repl_proxy_sig *out);

/* Checks a forwarded request's headers (as received; fields may be ""):
 * syntax, clock skew, signature, and that the signer is a configured peer.
 * Returns 0 and *site_out, or MRD_EINVAL / MRD_EAUTH with a static *reason. */
int repl_proxy_verify(const repl *r, const char *method, const char *target,
                      const char *payload_hash, const repl_proxy_sig *sig, uint32_t *site_out,
                      const char **reason);
/* repl_proxy_verify without the check that the signer is a configured peer
 * (the caller checks *site_out against its own peer list). Like
 * repl_proxy_sign, callable from any thread while r exists. */
int repl_proxy_check(const repl *r, const char *method, const char *target,
                     const char *payload_hash, const repl_proxy_sig *sig, uint32_t *site_out,
                     const char **reason);

/* ------------------------------------------------------------------------ */
/* Topology (PROTOCOL.md section 9)                                         */
/* ------------------------------------------------------------------------ */

/* The most removed sites a topology remembers: the latest removals (by
 * epoch) are kept, the oldest forgotten (PROTOCOL.md section 9). */
#define REPL_TOPO_MAX_REMOVED 64

/* A site removed from the topology: remembered so that every site can tell
 * it so when it asks again, even after a restart that forgot its slot. */
typedef struct repl_removed_site {
    uint32_t id;
    char name[MRD_NAME_MAX];
    uint64_t epoch;      /* the topology epoch whose change removed it */
    uint8_t tls_pin[32]; /* mutual TLS: the pin it was trusted by */
    int has_tls_pin;
} repl_removed_site;

/* The sites of the cluster, this one included, in id order, and the sites
 * removed from it (the latest REPL_TOPO_MAX_REMOVED). Epoch 0 is the one
 * built from this site's configuration; every change makes epoch + 1.
 * (epoch, hash) orders topologies: every site converges on the greatest. */
typedef struct repl_topology {
    uint64_t epoch;
    uint64_t hash; /* first 8 bytes of SHA-256 of the canonical encoding */
    int n;
    mrd_peer_conf sites[MRD_MAX_PEERS + 1]; /* bandwidth is not part of it (0) */
    int n_removed;                          /* in id order, like sites */
    repl_removed_site removed[REPL_TOPO_MAX_REMOVED];
} repl_topology;

/* The current topology. */
void repl_topology_get(const repl *r, repl_topology *out);

/*
 * Changes the topology: adds site *add (add != NULL, remove_id 0) or removes
 * site remove_id (add NULL). Compare-and-set: expect_epoch must be the
 * current epoch. The new topology (epoch + 1) is stored durably, then
 * applied (a new peer is dialled and gets our records; a removed one is cut
 * off and stops holding our WAL), then announced to every peer, which
 * adopt it. *out is the new topology.
 * Errors: MRD_EBUSY (expect_epoch is stale: the topology changed), MRD_EINVAL
 * (bad site; removing this site), MRD_EEXIST (id or name taken, or the id is
 * that of a removed site: ids are not reused, see repl_topology_id_removed),
 * MRD_ENOTFOUND (no such site to remove), MRD_ETOOBIG (too many sites), the
 * store's errors (nothing changed).
 */
int repl_topology_change(repl *r, uint64_t expect_epoch, const mrd_peer_conf *add,
                         uint32_t remove_id, repl_topology *out);

/* The removed site of t with that id, or NULL. */
const repl_removed_site *repl_topology_id_removed(const repl_topology *t, uint32_t id);

/* Module-wide counters. */
typedef struct repl_stats {
    uint64_t inbound_accepted; /* TCP connections accepted */
    uint64_t inbound_rejected; /* closed at accept: over the connection cap */
    uint64_t inbound_open;     /* open now */
    uint64_t auth_failures;    /* requests answered 401 */
    uint64_t bad_requests;     /* requests answered 400/404/405/413 */
    uint64_t heartbeats_served;
} repl_stats;

void repl_get_stats(const repl *r, repl_stats *out);

/* Writes one JSON object value describing the replicator and every peer
 * (the shape is in replicator/README.md) into w, which must be positioned
 * where a value may go (e.g. after mrd_json_w_key(w, "replication")).
 * Errors: those of the writer (mrd_json_w_error). */
int repl_status_json(const repl *r, mrd_json_w *w);

/*
 * Writes {"links":[...]}: every link of the cluster this site knows of, one
 * object per direction (from, to, state, connected, rtt_ms, lag_records,
 * oldest_unreplicated_age_ms, acked_lsn, sent_bytes, throughput_bps,
 * errors, last_error, reported_by, age_ms). This site's own links are live
 * (age_ms 0); every peer announces its links in each heartbeat and Hello
 * (PROTOCOL.md section 5), shown with how long ago that was, so every site
 * gives the same picture up to that staleness. Errors: the writer's.
 */
int repl_cluster_json(const repl *r, mrd_json_w *w);

#endif /* MERIDIAN_REPLICATOR_H */
