/*
 * conflict.h - the public API of Meridian's conflict module: version vectors
 * (prefix vv_) and the decision that settles concurrent writes to one key the
 * same way at every site (prefix conflict_). The full rules, with worked
 * examples, are in docs/conflicts.md.
 *
 * The module is pure: no I/O, no logging, no clocks of its own, no global
 * state. Every function is a deterministic function of its arguments, returns
 * 0 or a negative MRD_E* code, writes its output parameters (always last) only
 * on success, and is safe to call from any thread on distinct or read-only
 * data. Nothing here allocates except vv_decode, which frees what it takes
 * before returning.
 *
 * ---------------------------------------------------------------------------
 * SEMANTICS
 * ---------------------------------------------------------------------------
 *
 * 1. Version vectors. A vv maps site id (1..65535, as in the site config;
 *    0 is reserved and rejected) to a counter > 0; absent sites count 0.
 *    a DOMINATES b when a >= b at every site and a != b. Two vectors are
 *    CONCURRENT when neither dominates and they differ. Domination is a strict
 *    partial order; merge is the pointwise max (a lattice join); increment adds
 *    one to one site's counter. The canonical binary form is the protobuf
 *    message meridian.VersionVector with entries sorted by site, no duplicate
 *    sites and no zero counters; vv_decode accepts exactly the bytes vv_encode
 *    produces and nothing else, so equal vectors always have equal bytes
 *    (anti-entropy digests depend on it).
 *
 * 2. Versions. Every mutation of a key is a version (conflict_version): a
 *    PUT, a completed multipart upload, or a DELETE (a delete marker, flag
 *    CONFLICT_F_DELETE_MARKER). Its identity is its version id: two versions
 *    with the same id must be byte-identical in every field, otherwise the
 *    input is corrupt (MRD_EEXIST). A version carries the vv it was stamped
 *    with (conflict_stamp), the HLC stamp of its origin site, the origin site
 *    id, and an etag or content digest. CONFLICT_F_NULL_VERSION marks a
 *    version written while the bucket was unversioned or versioning-suspended
 *    *at its origin* (S3's "null" version); the flag travels with the version
 *    so that what a site keeps never depends on when it learned of a
 *    versioning change.
 *
 * 3. The winner of a set. For the set S of versions of one key that a site
 *    holds, define
 *        F(S)   = { v in S : no w in S has w.vv DOMINATES v.vv }  (the frontier)
 *        win(S) = the maximum of F(S) under the total order
 *                 (hlc, origin, version id bytes)   - compared in that order,
 *                 ids by memcmp and then length.
 *    Roles:
 *        CURRENT     win(S);
 *        CONFLICT    F(S) minus win(S): concurrent with the winner and lost the
 *                    tiebreak; a conflict, listed and counted as one;
 *        NONCURRENT  S minus F(S): causally superseded (its vv is dominated by
 *                    another version's), an ordinary older version.
 *    Roles are a function of the set alone, so any two sites holding the same
 *    set agree, whatever the order and multiplicity of delivery: a set is
 *    order- and duplicate-insensitive by construction. The winner is never
 *    causally overwritten (nothing in S dominates it), so a write made after
 *    seeing another always beats it even when its wall clock is behind; the
 *    HLC only breaks ties among concurrent versions. Because HLC stamps are
 *    causal (a site observes every stamp it applies), win(S) is also simply the
 *    maximum of S under a total order that extends causality.
 *    Equal vectors with different ids (only possible if a site reused its
 *    counters, e.g. after a restore from backup) are treated as concurrent,
 *    not as duplicates: treating the later arrival as non-current would make
 *    the answer depend on arrival order.
 *
 * 4. What a site keeps (enum conflict_keep, given by conflict_classify and
 *    conflict_decide), per version, from its role and flags:
 *        CURRENT                                   KEEP
 *        CONFLICT, not a null version              KEEP   (visible, flagged)
 *        CONFLICT, null version                    HIDDEN (admin API only,
 *                                                  retention window, then GC)
 *        NONCURRENT null version, dominated by     DROP   (an S3 overwrite of
 *          some null version                              an unversioned or
 *                                                         suspended key)
 *        NONCURRENT otherwise                      KEEP   (ListObjectVersions)
 *    Hence for bucket modes:
 *      - versioned: every version is kept and listed; conflict losers are
 *        non-current versions flagged as conflicts;
 *      - unversioned: one visible version (the current); concurrent losers are
 *        hidden conflict versions for CONFLICT_RETENTION_DEFAULT_MS (7 days,
 *        configurable) and then purged by GC; causally superseded versions are
 *        dropped, as a plain S3 overwrite would;
 *      - suspended: a null write drops the null version it supersedes but not
 *        real versions written while versioning was enabled (S3 semantics).
 *    Dropping only removes versions outside F(S); F and every other role are
 *    unchanged by it (domination is transitive), so sites that drop still
 *    converge, and a late duplicate of a dropped version is dropped again.
 *
 * 5. GC (conflict_gc). Tombstones must outlive every copy of what they hide or
 *    a late duplicate resurrects it. A version may be purged only when it is
 *    stable - every site has applied every record with an HLC stamp <= it
 *    (the caller passes per-site acked watermarks) - and a grace period has
 *    passed since its stamp. Only two kinds are ever purged automatically:
 *    a HIDDEN conflict loser after its retention window, and a current null
 *    delete marker that is the last version kept for its key. Everything else
 *    is user data and goes only by an explicit user operation.
 *
 * 6. Counters are HLC-derived (conflict_stamp): a site's entry becomes
 *    max(old + 1, HLC now). After GC forgets a key completely, a new write
 *    still gets a counter larger than any the site issued before, so no
 *    surviving copy of an old tombstone can wrongly dominate it.
 *
 * 7. Buckets. A bucket's existence (create = a version, delete = a delete
 *    marker) is a register settled by the same win(S); its configuration is
 *    one register per part (versioning, tags, ACL), each last-writer-wins on
 *    (HLC, site) (engine/engine_bucket.c; the HLC order is win(S)'s
 *    tiebreak, configuration records carry no vector). A bucket whose
 *    existence register is won by a
 *    delete, but which still holds any object version that is not a delete
 *    marker, stays live (CONFLICT_BUCKET_RESURRECTED): a delete-bucket is only
 *    accepted on an empty bucket, so such data was written concurrently with
 *    it and must not vanish. See conflict_bucket_state.
 */
#ifndef MERIDIAN_CONFLICT_H
#define MERIDIAN_CONFLICT_H

#include "common.h"

#include <stddef.h>
#include <stdint.h>

struct Meridian__VersionVector;
struct Meridian__VvEntry;

/* ------------------------------------------------------------------------ */
/* Version vectors                                                          */
/* ------------------------------------------------------------------------ */

/* Most sites one vector can name (the config allows 33; room for retired ids). */
#define VV_MAX_SITES 64
/* Site ids are 1..VV_SITE_MAX, as in the site configuration. */
#define VV_SITE_MAX 65535u
/* Largest canonical encoding of a vv: per entry 2 bytes of framing, 1+3 for
 * the site, 1+10 for the counter. */
#define VV_ENCODED_MAX (VV_MAX_SITES * 17)

typedef struct vv_entry {
    uint32_t site;    /* 1..VV_SITE_MAX */
    uint64_t counter; /* > 0 */
} vv_entry;

/*
 * A plain value type: copy it with '=', zero-initialise for the empty vector.
 * Invariant (checked by vv_validate, kept by every vv_ function):
 * n <= VV_MAX_SITES, e[0..n) sorted by strictly increasing site,
 * 1 <= site <= VV_SITE_MAX, counter != 0.
 */
typedef struct vv {
    uint32_t n;
    vv_entry e[VV_MAX_SITES];
} vv;

typedef enum {
    VV_EQUAL = 0,
    VV_DOMINATES = 1, /* a is strictly after b */
    VV_DOMINATED = 2, /* a is strictly before b */
    VV_CONCURRENT = 3,
} vv_order;

/* Returns 0 if v holds the invariant above, MRD_EINVAL otherwise. */
int vv_validate(const vv *v);

/* The counter of site in v (0 when absent). v must be valid. */
uint64_t vv_get(const vv *v, uint32_t site);

/* How a relates to b. Both must be valid (undefined otherwise; checked by
 * assert in debug builds). O(a->n + b->n). */
vv_order vv_compare(const vv *a, const vv *b);

/*
 * *out = pointwise max of a and b. out may alias a or b.
 * Errors: MRD_EINVAL if a or b is invalid; MRD_ETOOBIG if the result would
 * name more than VV_MAX_SITES sites.
 */
int vv_merge(const vv *a, const vv *b, vv *out);

/*
 * Adds one to site's counter in v, in place.
 * Errors: MRD_EINVAL if site is 0 or v is invalid; MRD_ETOOBIG if v is full
 * and site is new, or the counter would overflow. v is unchanged on error.
 */
int vv_increment(vv *v, uint32_t site);

/*
 * Sets site's counter to max(current, counter) in place (counter > 0).
 * Errors as vv_increment.
 */
int vv_raise(vv *v, uint32_t site, uint64_t counter);

/* Size in bytes of the canonical encoding of a valid v (0 for the empty vector). */
size_t vv_encoded_size(const vv *v);

/*
 * Writes the canonical encoding (meridian.VersionVector) of v into buf.
 * At most VV_ENCODED_MAX bytes are ever needed.
 * Errors: MRD_EINVAL if v is invalid or buf is NULL while cap > 0;
 * MRD_ETOOBIG if cap < vv_encoded_size(v). On success *out_len is the length
 * (0 for the empty vector, which encodes as no bytes).
 */
int vv_encode(const vv *v, uint8_t *buf, size_t cap, size_t *out_len);

/*
 * Parses buf[0..len) into *out. Accepts only the canonical encoding: entries
 * sorted by strictly increasing site, no site 0, no zero counter, no unknown
 * fields, minimal varints, the exact bytes vv_encode would produce.
 * Errors: MRD_EINVAL for malformed or non-canonical input (and when
 * protobuf-c fails to allocate, which it does not report apart from garbage);
 * MRD_ETOOBIG for more than VV_MAX_SITES entries or len > VV_ENCODED_MAX.
 * Zero bytes decode to the empty vector.
 * Safe on arbitrary untrusted bytes (fuzzed by tests/fuzz/fuzz_vv.c).
 */
int vv_decode(const uint8_t *buf, size_t len, vv *out);

/* Fills msg (meridian.VersionVector from proto/meridian.proto) as a view of
 * v, for embedding in a larger protobuf message such as a WAL record. ents
 * and ptrs are caller storage of at least v->n elements. Nothing is
 * allocated; msg borrows v, ents and ptrs and is valid while they are. */
void vv_to_proto(const vv *v, struct Meridian__VersionVector *msg, struct Meridian__VvEntry *ents,
                 struct Meridian__VvEntry **ptrs);

/* ------------------------------------------------------------------------ */
/* Versions and the decision                                                */
/* ------------------------------------------------------------------------ */

#define CONFLICT_VERSION_ID_MAX 255 /* bytes */
#define CONFLICT_ETAG_MAX       255 /* bytes */

/* Default hidden-conflict retention for null versions: 7 days. */
#define CONFLICT_RETENTION_DEFAULT_MS (7ull * 24 * 3600 * 1000)
/* Default GC grace after stability: 1 hour. */
#define CONFLICT_GRACE_DEFAULT_MS (3600ull * 1000)

enum {
    CONFLICT_F_DELETE_MARKER = 1u << 0, /* a DELETE: the key reads as absent when current */
    CONFLICT_F_NULL_VERSION = 1u << 1,  /* written unversioned or suspended at its origin */
    CONFLICT_F_ALL = CONFLICT_F_DELETE_MARKER | CONFLICT_F_NULL_VERSION,
};

/*
 * A version descriptor. The module never keeps or frees any pointer in it:
 * id and etag are borrowed for the duration of the call.
 * Valid when: 1 <= id_len <= CONFLICT_VERSION_ID_MAX, id != NULL;
 * etag_len <= CONFLICT_ETAG_MAX (etag may be NULL when 0); vv valid and
 * vv_get(&vv, origin) > 0 (a version always counts its own write); origin != 0;
 * flags within CONFLICT_F_ALL.
 */
typedef struct conflict_version {
    const uint8_t *id; /* version id bytes (the S3 versionId or an internal id) */
    size_t id_len;
    vv vv;               /* the causal history this version supersedes, plus itself */
    mrd_hlc_stamp hlc;   /* origin's HLC at the write */
    uint32_t origin;     /* site that accepted the client write */
    uint32_t flags;      /* CONFLICT_F_* */
    const uint8_t *etag; /* etag or content digest; compared only for identity */
    size_t etag_len;
} conflict_version;

typedef enum {
    CONFLICT_ROLE_CURRENT = 1,    /* the winner: what GET returns */
    CONFLICT_ROLE_NONCURRENT = 2, /* causally superseded by another version */
    CONFLICT_ROLE_CONFLICT = 3,   /* concurrent with the winner and lost the tiebreak */
} conflict_role;

typedef enum {
    CONFLICT_KEEP = 1,   /* store it; listed by ListObjectVersions */
    CONFLICT_HIDDEN = 2, /* store it hidden; admin API only; purged by conflict_gc */
    CONFLICT_DROP = 3,   /* do not store (or delete): an S3 overwrite */
} conflict_keep;

typedef struct conflict_class {
    conflict_role role;
    conflict_keep keep;
} conflict_class;

/* Returns 0 if v is a valid descriptor, MRD_EINVAL otherwise. */
int conflict_version_validate(const conflict_version *v);

/* 1 if a and b are the same version: equal ids and every other field equal. */
int conflict_version_identical(const conflict_version *a, const conflict_version *b);

/*
 * The tiebreak total order: <0, 0, >0 as a sorts before, equal to, after b by
 * (hlc, origin, id bytes, id length). Only meaningful between concurrent
 * versions; 0 only for equal ids with equal hlc and origin.
 */
int conflict_version_order(const conflict_version *a, const conflict_version *b);

/*
 * Classifies a whole set: classes[i] gets the role and keep of set[i] (rules
 * 3 and 4 above) and *winner the index of the CURRENT version.
 * Params: set[0..n), n >= 1; classes has room for n entries.
 * Errors: MRD_EINVAL if n == 0, any descriptor is invalid, or two entries
 * share a version id (pass each version once). classes and *winner are
 * written only on success. O(n^2 * sites).
 */
int conflict_classify(const conflict_version *set, size_t n, conflict_class *classes,
                      size_t *winner);

typedef enum {
    CONFLICT_ACTION_DUPLICATE = 1, /* already held: change nothing, ack (idempotent) */
    CONFLICT_ACTION_APPLY = 2,     /* store incoming per classes[n_held]; re-file the rest */
} conflict_action;

#define CONFLICT_NONE ((size_t)-1)

typedef struct conflict_decision {
    conflict_action action;
    size_t winner;       /* index of the new CURRENT in held[0..n_held] (n_held = incoming) */
    size_t prev_winner;  /* index in held of the CURRENT before, or CONFLICT_NONE if none */
    int new_conflict;    /* 1 if incoming is concurrent with the previous current (count it) */
    int current_changed; /* 1 if the current version changed */
} conflict_decision;

/*
 * The decision for one delivery (local write or replicated apply): given the
 * versions held[0..n_held) a site stores for a key (any roles; n_held may be
 * 0) and an incoming version, say what happens. classes[0..n_held] (n_held+1
 * entries) receives the new role and keep of each held version and, last, of
 * the incoming one; the caller stores, re-files or deletes accordingly.
 *
 *   - incoming id equal to a held one, all fields identical: DUPLICATE;
 *     classes describe the unchanged set (classes[n_held] repeats the held
 *     copy's class).
 *   - incoming dominates the current: it becomes CURRENT.
 *   - incoming dominated by some held version: NONCURRENT; nothing else moves.
 *   - incoming concurrent with the current: the larger under the tiebreak is
 *     CURRENT, the other CONFLICT (new_conflict = 1).
 * The result equals conflict_classify(held + incoming), which is what makes
 * every site converge. For keys with long histories held may omit stored
 * versions that are NONCURRENT and not null versions: such a version's class
 * can never change again (once dominated, always dominated; only null versions
 * are ever dropped), and every decision about the others depends only on the
 * frontier and the null versions. Omitting anything else breaks convergence.
 * A duplicate of an omitted version is then not recognised (it is classified
 * NONCURRENT again), so the caller must also dedupe by version id.
 *
 * Errors: MRD_EINVAL (invalid descriptor, duplicate ids within held);
 * MRD_EEXIST if incoming shares its id with a held version that differs in
 * any field (corruption: do not apply, report). Outputs written only on
 * success. Ownership: nothing is retained. O((n_held+1)^2 * sites).
 */
int conflict_decide(const conflict_version *held, size_t n_held, const conflict_version *incoming,
                    conflict_class *classes, conflict_decision *out);

/*
 * The version vector for a new local write at site, given the vector of the
 * key's current version (an empty vv when the key has no versions): base with
 * site's counter raised to max(base[site] + 1, now), where now is the site's
 * HLC stamp for this write (mrd_hlc_now, after observing every applied
 * version). Stamping from the current version only (not from concurrent
 * losers) keeps a hidden loser concurrent with later overwrites, so it is not
 * dropped before its retention window ends.
 * Errors: MRD_EINVAL (invalid base, site 0, now 0); MRD_ETOOBIG (vector full).
 */
int conflict_stamp(const vv *current, uint32_t site, mrd_hlc_stamp now, vv *out);

/* ------------------------------------------------------------------------ */
/* Tombstone and hidden-loser GC                                            */
/* ------------------------------------------------------------------------ */

typedef struct conflict_gc_state {
    /*
     * acked[i], one per site of the cluster including this one: site i has
     * durably applied every record, from every origin, whose HLC stamp is
     * <= acked[i] (the caller derives it from per-peer ack cursors and from
     * what it has received from each origin). n_acked must be >= 1.
     */
    const mrd_hlc_stamp *acked;
    size_t n_acked;
    uint64_t now_ms;       /* local wall clock, ms since the epoch */
    uint64_t grace_ms;     /* extra wait after stability (CONFLICT_GRACE_DEFAULT_MS) */
    uint64_t retention_ms; /* hidden conflict retention (CONFLICT_RETENTION_DEFAULT_MS) */
    /*
     * Optional, NULL or one entry per version: the local wall time at which
     * the caller first stored the version HIDDEN. The retention window runs
     * from the latest of this, the version's own stamp and the winner's stamp,
     * so a conflict found only after a long partition still gets its window.
     */
    const uint64_t *hidden_since_ms;
} conflict_gc_state;

/*
 * Marks which versions of set[0..n) (the versions a site keeps for one key)
 * may be purged now: purge[i] = 1 or 0. classes[0..n) must be the result of
 * conflict_classify on the same set (exactly one CURRENT). A version v is
 * purgeable only if
 *   stable:  acked[j] >= v.hlc for every j, and
 *   grace:   now_ms >= ms(v.hlc) + grace_ms, and either
 *   (a) v is HIDDEN and now_ms >= start + retention_ms, start being the
 *       latest of ms(v.hlc), ms(winner.hlc) and hidden_since_ms[i], or
 *   (b) v is a CURRENT null delete marker and every other version of the set
 *       is DROP or purgeable now under (a): the key then disappears.
 * DROP versions are always marked 1: they are not to be stored at all.
 * Errors: MRD_EINVAL for an invalid set (as conflict_classify), NULL st,
 * n_acked == 0, or classes without exactly one CURRENT. purge is written
 * only on success.
 */
int conflict_gc(const conflict_version *set, size_t n, const conflict_class *classes,
                const conflict_gc_state *st, uint8_t *purge);

/*
 * Rule (a) alone, for a caller that holds the stamps rather than the set:
 * 1 when a HIDDEN loser stamped loser_hlc, whose winner is stamped
 * winner_hlc, first stored hidden at hidden_since_ms (0: not known), may be
 * purged under st (stable, past its grace, and past its retention window).
 */
int conflict_gc_hidden_expired(mrd_hlc_stamp loser_hlc, mrd_hlc_stamp winner_hlc,
                               uint64_t hidden_since_ms, const conflict_gc_state *st);

/* ------------------------------------------------------------------------ */
/* Buckets                                                                  */
/* ------------------------------------------------------------------------ */

typedef enum {
    CONFLICT_BUCKET_ABSENT = 0,      /* no record at all */
    CONFLICT_BUCKET_LIVE = 1,        /* existence register won by a create */
    CONFLICT_BUCKET_DELETED = 2,     /* won by a delete, and no object data left */
    CONFLICT_BUCKET_RESURRECTED = 3, /* won by a delete, but holds object versions
                                        written concurrently: stays live, counted
                                        and listed as a conflict */
} conflict_bucket_state;

/*
 * Settles a bucket's existence. records[0..n) are the versions of the
 * bucket's existence register (create = plain version, delete-bucket = delete
 * marker; n may be 0). has_object_data is 1 if the bucket holds any object
 * version, of any role and keep other than DROP, that is not a delete marker.
 * The bucket's configuration (versioning, tagging) is separate: one
 * last-writer-wins register per part (rule 7).
 * Errors as conflict_classify. *out written only on success.
 */
int conflict_bucket_resolve(const conflict_version *records, size_t n, int has_object_data,
                            conflict_bucket_state *out);

#endif /* MERIDIAN_CONFLICT_H */
