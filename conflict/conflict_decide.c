/*
 * conflict_decide.c - the decision: which version of a key is current, which
 * are conflicts, what a site keeps, what GC may purge, and bucket existence.
 *
 * Why a function of the set. Replication delivers each record to each site
 * once or more, in any order. The only thing all sites eventually share is
 * the *set* of versions each key has had. So the answer is defined on sets
 * (conflict.h, rules 3-4) and the per-delivery decision is, by construction,
 * classify(held + incoming). Sets are insensitive to order and duplicates, so
 * once two sites hold the same set they agree byte for byte. That is the
 * whole convergence argument; tests/unit/conflict_test.c checks it over
 * randomized histories with skewed clocks.
 *
 * The rule. F(S) is the frontier: versions no other version causally
 * supersedes. The winner is the maximum of F(S) under (hlc, origin, id).
 * Two properties matter:
 *   - causality first: a write made after seeing x has a vv dominating x's,
 *     so x is never in F and can never beat it, whatever the clocks say;
 *   - a total order inside F: concurrent versions are ranked by HLC (close
 *     to wall time, so "the later write wins" in the usual case), then origin
 *     site, then id bytes, so no two distinct versions ever tie.
 * Because sites observe the stamp of everything they apply before stamping a
 * new write, v dominating w implies v.hlc > w.hlc, and the winner is also
 * the plain maximum of S under (hlc, origin, id). We still compute F rather
 * than rely on that: the answer stays causal and deterministic even if some
 * stamp was produced by a buggy or restored clock.
 *
 * Keep. Dropping happens only to versions outside F (dominated ones), and a
 * dropped version is always dominated by a kept one (domination is
 * transitive), so dropping never changes F, the winner, or any kept
 * version's role: sites that drop what they are told to converge with sites
 * that keep everything, and a late duplicate of something dropped is
 * recognised as dominated and dropped again.
 *
 * Cost. One pairwise pass, O(n^2) vector compares of O(sites) each, no
 * allocation: per-pair facts are accumulated in the caller's classes[] array
 * used as scratch (as bit flags, accessed with memcpy so no aliasing rule is
 * bent) and then replaced by the final classes. Keys with very long versioned
 * histories may leave their non-current real versions out of conflict_decide
 * (see the header for why exactly those).
 *
 * GC follows Garage's tombstone rule: purge only what every site has applied
 * (stable under the acked watermarks), and only after a grace period, so no
 * in-flight or retried copy of an older version can come back to life.
 */
#include "conflict.h"

#include <string.h>

/* scratch bits kept in classes[i].role during the pairwise pass */
#define SCR_DOM_HELD   1u /* dominated by a version in held (not the incoming one) */
#define SCR_DOM_INCOM  2u /* dominated by the incoming version */
#define SCR_DOM_BYNULL 4u /* dominated by some null version */

int
conflict_version_validate(const conflict_version *v)
{
    if (!v || !v->id || v->id_len == 0 || v->id_len > CONFLICT_VERSION_ID_MAX)
        return MRD_EINVAL;
    if (v->etag_len > CONFLICT_ETAG_MAX || (v->etag_len > 0 && !v->etag))
        return MRD_EINVAL;
    if (v->origin == 0 || v->origin > VV_SITE_MAX || (v->flags & ~(uint32_t)CONFLICT_F_ALL))
        return MRD_EINVAL;
    if (vv_validate(&v->vv) != 0 || vv_get(&v->vv, v->origin) == 0)
        return MRD_EINVAL;
    return 0;
}

static int
same_id(const conflict_version *a, const conflict_version *b)
{
    return a->id_len == b->id_len && memcmp(a->id, b->id, a->id_len) == 0;
}

int
conflict_version_identical(const conflict_version *a, const conflict_version *b)
{
    if (!same_id(a, b) || a->hlc != b->hlc || a->origin != b->origin || a->flags != b->flags)
        return 0;
    if (a->etag_len != b->etag_len || (a->etag_len && memcmp(a->etag, b->etag, a->etag_len) != 0))
        return 0;
    if (a->vv.n != b->vv.n || vv_compare(&a->vv, &b->vv) != VV_EQUAL)
        return 0;
    return 1;
}

int
conflict_version_order(const conflict_version *a, const conflict_version *b)
{
    size_t m = a->id_len < b->id_len ? a->id_len : b->id_len;
    int c;

    if (a->hlc != b->hlc)
        return a->hlc < b->hlc ? -1 : 1;
    if (a->origin != b->origin)
        return a->origin < b->origin ? -1 : 1;
    c = memcmp(a->id, b->id, m);
    if (c != 0)
        return c < 0 ? -1 : 1;
    if (a->id_len != b->id_len)
        return a->id_len < b->id_len ? -1 : 1;
    return 0;
}

static unsigned
scr_get(const conflict_class *c)
{
    unsigned v;

    memcpy(&v, c, sizeof(v));
    return v;
}

static void
scr_set(conflict_class *c, unsigned v)
{
    memcpy(c, &v, sizeof(v));
}

/* The set is held[0..nh) followed by extra (if not NULL) at index nh. */
static const conflict_version *
at(const conflict_version *held, size_t nh, const conflict_version *extra, size_t i)
{
    return i < nh ? &held[i] : extra;
}

/*
 * Validates held[0..nh) (+ extra): every descriptor valid, no two share an
 * id. extra is assumed already checked against held for id equality by the
 * caller when it matters (decide), so only held pairs are compared here.
 */
static int
validate_set(const conflict_version *held, size_t nh, const conflict_version *extra)
{
    if (nh > 0 && !held)
        return MRD_EINVAL;
    for (size_t i = 0; i < nh; i++) {
        if (conflict_version_validate(&held[i]) != 0)
            return MRD_EINVAL;
        for (size_t j = 0; j < i; j++)
            if (same_id(&held[i], &held[j]))
                return MRD_EINVAL;
    }
    if (extra && conflict_version_validate(extra) != 0)
        return MRD_EINVAL;
    return 0;
}

/*
 * The core, on a valid set of n = nh + (extra != NULL) >= 1 distinct
 * versions. Fills classes[0..n), *winner (index in the combined set) and,
 * when prev is not NULL, *prev = the winner of held alone (CONFLICT_NONE if
 * nh == 0).
 */
static void
classify_core(const conflict_version *held, size_t nh, const conflict_version *extra,
              conflict_class *classes, size_t *winner, size_t *prev)
{
    size_t n = nh + (extra ? 1 : 0);
    size_t w = CONFLICT_NONE, pw = CONFLICT_NONE;

    /* conflict_class is two enums, so each element has room for an unsigned
     * scratch word (SCR_* bits) until the final classes overwrite it. */
    _Static_assert(sizeof(conflict_class) >= sizeof(unsigned), "scratch fits");
    for (size_t i = 0; i < n; i++)
        scr_set(&classes[i], 0);

    for (size_t i = 0; i < n; i++) {
        const conflict_version *a = at(held, nh, extra, i);
        for (size_t j = i + 1; j < n; j++) {
            const conflict_version *b = at(held, nh, extra, j);
            vv_order o = vv_compare(&a->vv, &b->vv);
            if (o == VV_DOMINATES) {
                scr_set(&classes[j],
                        scr_get(&classes[j]) | (i < nh ? SCR_DOM_HELD : SCR_DOM_INCOM) |
                            ((a->flags & CONFLICT_F_NULL_VERSION) ? SCR_DOM_BYNULL : 0));
            } else if (o == VV_DOMINATED) {
                scr_set(&classes[i],
                        scr_get(&classes[i]) | (j < nh ? SCR_DOM_HELD : SCR_DOM_INCOM) |
                            ((b->flags & CONFLICT_F_NULL_VERSION) ? SCR_DOM_BYNULL : 0));
            }
        }
    }

    for (size_t i = 0; i < n; i++) {
        unsigned s = scr_get(&classes[i]);
        const conflict_version *v = at(held, nh, extra, i);
        if (!(s & (SCR_DOM_HELD | SCR_DOM_INCOM)) &&
            (w == CONFLICT_NONE || conflict_version_order(v, at(held, nh, extra, w)) > 0))
            w = i;
        if (i < nh && !(s & SCR_DOM_HELD) &&
            (pw == CONFLICT_NONE || conflict_version_order(v, &held[pw]) > 0))
            pw = i;
    }

    for (size_t i = 0; i < n; i++) {
        unsigned s = scr_get(&classes[i]);
        const conflict_version *v = at(held, nh, extra, i);
        int is_null = (v->flags & CONFLICT_F_NULL_VERSION) != 0;
        conflict_class c;

        if (i == w) {
            c.role = CONFLICT_ROLE_CURRENT;
            c.keep = CONFLICT_KEEP;
        } else if (!(s & (SCR_DOM_HELD | SCR_DOM_INCOM))) {
            c.role = CONFLICT_ROLE_CONFLICT;
            c.keep = is_null ? CONFLICT_HIDDEN : CONFLICT_KEEP;
        } else {
            c.role = CONFLICT_ROLE_NONCURRENT;
            c.keep = (is_null && (s & SCR_DOM_BYNULL)) ? CONFLICT_DROP : CONFLICT_KEEP;
        }
        classes[i] = c;
    }
    *winner = w;
    if (prev)
        *prev = pw;
}

int
conflict_classify(const conflict_version *set, size_t n, conflict_class *classes, size_t *winner)
{
    size_t w;

    if (n == 0 || !classes || !winner)
        return MRD_EINVAL;
    if (validate_set(set, n, NULL) != 0)
        return MRD_EINVAL;
    classify_core(set, n, NULL, classes, &w, NULL);
    *winner = w;
    return 0;
}

int
conflict_decide(const conflict_version *held, size_t n_held, const conflict_version *incoming,
                conflict_class *classes, conflict_decision *out)
{
    conflict_decision d;
    size_t match = CONFLICT_NONE;

    if (!incoming || !classes || !out)
        return MRD_EINVAL;
    if (validate_set(held, n_held, incoming) != 0)
        return MRD_EINVAL;
    for (size_t i = 0; i < n_held; i++) {
        if (same_id(&held[i], incoming)) {
            match = i;
            break;
        }
    }
    memset(&d, 0, sizeof(d));
    if (match != CONFLICT_NONE) {
        size_t w;
        if (!conflict_version_identical(&held[match], incoming))
            return MRD_EEXIST;
        /* Idempotent: the set is unchanged. */
        classify_core(held, n_held, NULL, classes, &w, NULL);
        classes[n_held] = classes[match];
        d.action = CONFLICT_ACTION_DUPLICATE;
        d.winner = w;
        d.prev_winner = w;
        *out = d;
        return 0;
    }

    d.action = CONFLICT_ACTION_APPLY;
    classify_core(held, n_held, incoming, classes, &d.winner, &d.prev_winner);
    d.current_changed = d.winner != d.prev_winner;
    if (d.prev_winner != CONFLICT_NONE) {
        vv_order o = vv_compare(&incoming->vv, &held[d.prev_winner].vv);
        d.new_conflict = (o == VV_CONCURRENT || o == VV_EQUAL);
    }
    *out = d;
    return 0;
}

int
conflict_stamp(const vv *current, uint32_t site, mrd_hlc_stamp now, vv *out)
{
    vv r;
    uint64_t c;
    int rc;

    if (vv_validate(current) != 0 || !out || site == 0 || site > VV_SITE_MAX || now == 0)
        return MRD_EINVAL;
    r = *current;
    c = vv_get(&r, site);
    if (c == UINT64_MAX)
        return MRD_ETOOBIG;
    rc = vv_raise(&r, site, c + 1 > now ? c + 1 : now);
    if (rc != 0)
        return rc;
    *out = r;
    return 0;
}

static uint64_t
sat_add(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static int
stable_now(const conflict_version *v, const conflict_gc_state *st)
{
    for (size_t j = 0; j < st->n_acked; j++)
        if (st->acked[j] < v->hlc)
            return 0;
    return st->now_ms >= sat_add(MRD_HLC_MS(v->hlc), st->grace_ms);
}

int
conflict_gc_hidden_expired(mrd_hlc_stamp loser_hlc, mrd_hlc_stamp winner_hlc,
                           uint64_t hidden_since_ms, const conflict_gc_state *st)
{
    conflict_version v = {.hlc = loser_hlc};
    uint64_t start = MRD_HLC_MS(loser_hlc);

    if (MRD_HLC_MS(winner_hlc) > start)
        start = MRD_HLC_MS(winner_hlc);
    if (hidden_since_ms > start)
        start = hidden_since_ms;
    return stable_now(&v, st) && st->now_ms >= sat_add(start, st->retention_ms);
}

/* Rule (a): a hidden loser past its retention window. */
static int
hidden_expired(const conflict_version *set, size_t i, size_t w, const conflict_gc_state *st)
{
    return conflict_gc_hidden_expired(set[i].hlc, set[w].hlc,
                                      st->hidden_since_ms ? st->hidden_since_ms[i] : 0, st);
}

int
conflict_gc(const conflict_version *set, size_t n, const conflict_class *classes,
            const conflict_gc_state *st, uint8_t *purge)
{
    size_t w = CONFLICT_NONE;
    int others_gone = 1;

    if (n == 0 || !classes || !purge || !st || st->n_acked == 0 || !st->acked)
        return MRD_EINVAL;
    if (validate_set(set, n, NULL) != 0)
        return MRD_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (classes[i].role == CONFLICT_ROLE_CURRENT) {
            if (w != CONFLICT_NONE)
                return MRD_EINVAL;
            w = i;
        }
    }
    if (w == CONFLICT_NONE)
        return MRD_EINVAL;

    for (size_t i = 0; i < n; i++) {
        if (i == w)
            continue;
        if (classes[i].keep == CONFLICT_DROP)
            continue;
        if (!(classes[i].keep == CONFLICT_HIDDEN && hidden_expired(set, i, w, st)))
            others_gone = 0;
    }
    for (size_t i = 0; i < n; i++) {
        uint8_t p = 0;
        if (classes[i].keep == CONFLICT_DROP)
            p = 1;
        else if (i != w && classes[i].keep == CONFLICT_HIDDEN)
            p = (uint8_t)hidden_expired(set, i, w, st);
        else if (i == w && (set[i].flags & CONFLICT_F_DELETE_MARKER) &&
                 (set[i].flags & CONFLICT_F_NULL_VERSION) && others_gone)
            p = (uint8_t)stable_now(&set[i], st);
        purge[i] = p;
    }
    return 0;
}

int
conflict_bucket_resolve(const conflict_version *records, size_t n, int has_object_data,
                        conflict_bucket_state *out)
{
    size_t w = CONFLICT_NONE;

    if (!out || (n > 0 && !records))
        return MRD_EINVAL;
    if (n == 0) {
        /* Every object write is causally after some create: a record still in
         * flight, so the data means the bucket exists. */
        *out = has_object_data ? CONFLICT_BUCKET_LIVE : CONFLICT_BUCKET_ABSENT;
        return 0;
    }
    if (validate_set(records, n, NULL) != 0)
        return MRD_EINVAL;
    /* win(S) without a classes array: the register is short. */
    for (size_t k = 0; k < n; k++) {
        int dominated = 0;
        for (size_t j = 0; j < n && !dominated; j++)
            dominated = j != k && vv_compare(&records[j].vv, &records[k].vv) == VV_DOMINATES;
        if (!dominated &&
            (w == CONFLICT_NONE || conflict_version_order(&records[k], &records[w]) > 0))
            w = k;
    }
    if (!(records[w].flags & CONFLICT_F_DELETE_MARKER))
        *out = CONFLICT_BUCKET_LIVE;
    else
        *out = has_object_data ? CONFLICT_BUCKET_RESURRECTED : CONFLICT_BUCKET_DELETED;
    return 0;
}
