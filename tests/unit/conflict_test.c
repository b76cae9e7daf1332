/*
 * conflict_test.c - unit and property tests for conflict/.
 *
 * The algebra tests pin exact behaviour (orders, merges, the canonical bytes
 * of known vectors, every malformed-encoding case by name). The property test
 * is the convergence proof by example: randomized histories of 3 to 5 sites
 * with skewed clocks (up to +-10 minutes), real causality (a site writes
 * after seeing a random subset of the others' records) and real concurrency,
 * then every site receives every record in its own random order with
 * duplicates. Afterwards all sites must hold byte-identical key states, the
 * current version must equal an independent oracle computed from all
 * records, and no acknowledged write may have vanished. The harness also runs
 * a deliberately order-dependent rule to show that it can detect divergence,
 * and counts what last-writer-wins by mtime would have done on the same
 * histories.
 *
 * Knobs: MERIDIAN_CONFLICT_HISTORIES (default 10000) and
 * MERIDIAN_CONFLICT_SEED (default fixed). On failure the per-history seed is
 * printed; rerun with MERIDIAN_CONFLICT_SEED=<seed> MERIDIAN_CONFLICT_HISTORIES=1
 * to replay exactly that history.
 */
#include "conflict.h"
#include "test.h"

#include <inttypes.h>
#include <time.h>

/* ------------------------------------------------------------------------ */
/* helpers                                                                  */
/* ------------------------------------------------------------------------ */

#define VV(...)                                                                                    \
    vv_from_pairs((const uint64_t[]){__VA_ARGS__}, sizeof((uint64_t[]){__VA_ARGS__}) / 8)

/* pairs of (site, counter), in any order; zero counters skipped */
static vv
vv_from_pairs(const uint64_t *p, size_t n)
{
    vv v = {0};
    for (size_t i = 0; i + 1 < n; i += 2)
        if (p[i + 1])
            vv_raise(&v, (uint32_t)p[i], p[i + 1]);
    return v;
}

static uint64_t
rng_next(uint64_t *s)
{
    /* splitmix64: tiny, fast, good enough, and reproducible everywhere */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t
rng_below(uint64_t *s, uint64_t n)
{
    return n ? rng_next(s) % n : 0;
}

static conflict_version
mkver(const char *id, vv v, mrd_hlc_stamp hlc, uint32_t origin, uint32_t flags)
{
    conflict_version x;
    memset(&x, 0, sizeof(x));
    x.id = (const uint8_t *)id;
    x.id_len = strlen(id);
    x.vv = v;
    x.hlc = hlc;
    x.origin = origin;
    x.flags = flags;
    x.etag = (const uint8_t *)"etag";
    x.etag_len = 4;
    return x;
}

/* ------------------------------------------------------------------------ */
/* algebra                                                                  */
/* ------------------------------------------------------------------------ */

static void
test_vv_compare(void)
{
    vv e = {0}, a = VV(1, 1), b = VV(1, 2), c = VV(2, 1), ab = VV(1, 1, 2, 1);

    CHECK_EQ_INT(vv_compare(&e, &e), VV_EQUAL);
    CHECK_EQ_INT(vv_compare(&a, &a), VV_EQUAL);
    CHECK_EQ_INT(vv_compare(&a, &e), VV_DOMINATES);
    CHECK_EQ_INT(vv_compare(&e, &a), VV_DOMINATED);
    CHECK_EQ_INT(vv_compare(&b, &a), VV_DOMINATES);
    CHECK_EQ_INT(vv_compare(&a, &b), VV_DOMINATED);
    CHECK_EQ_INT(vv_compare(&a, &c), VV_CONCURRENT);
    CHECK_EQ_INT(vv_compare(&c, &a), VV_CONCURRENT);
    CHECK_EQ_INT(vv_compare(&ab, &a), VV_DOMINATES);
    CHECK_EQ_INT(vv_compare(&ab, &c), VV_DOMINATES);
    CHECK_EQ_INT(vv_compare(&b, &ab), VV_CONCURRENT);
    /* a site only on one side counts, whichever end of the array it is at */
    vv x = VV(1, 5, 9, 1), y = VV(1, 5);
    CHECK_EQ_INT(vv_compare(&x, &y), VV_DOMINATES);
    vv z = VV(0x10, 1, 3, 4), w = VV(3, 4, 0x20, 1);
    CHECK_EQ_INT(vv_compare(&z, &w), VV_CONCURRENT);
    CHECK_EQ_INT(vv_get(&z, 3), 4);
    CHECK_EQ_INT(vv_get(&z, 4), 0);
}

static void
test_vv_merge_increment(void)
{
    vv a = VV(1, 3, 5, 1), b = VV(2, 7, 5, 4), m;
    vv want = VV(1, 3, 2, 7, 5, 4);

    REQUIRE(vv_merge(&a, &b, &m) == 0);
    CHECK_EQ_INT(vv_compare(&m, &want), VV_EQUAL);
    CHECK_EQ_INT(m.n, 3);
    /* aliasing */
    REQUIRE(vv_merge(&a, &b, &a) == 0);
    CHECK_EQ_INT(vv_compare(&a, &want), VV_EQUAL);

    vv v = {0};
    CHECK(vv_increment(&v, 7) == 0 && vv_get(&v, 7) == 1);
    CHECK(vv_increment(&v, 7) == 0 && vv_get(&v, 7) == 2);
    CHECK(vv_increment(&v, 3) == 0 && v.e[0].site == 3 && v.e[1].site == 7);
    CHECK_EQ_INT(vv_increment(&v, 0), MRD_EINVAL);
    CHECK_EQ_INT(vv_increment(&v, VV_SITE_MAX + 1), MRD_EINVAL);
    CHECK_EQ_INT(vv_raise(&v, 7, 1), 0);
    CHECK_EQ_INT(vv_get(&v, 7), 2); /* raise never lowers */
    vv big = VV(4, UINT64_MAX);
    CHECK_EQ_INT(vv_increment(&big, 4), MRD_ETOOBIG);
    CHECK_EQ_INT(vv_get(&big, 4), UINT64_MAX);

    /* full vector: a new site does not fit, an existing one still counts */
    vv full = {0};
    for (uint32_t s = 1; s <= VV_MAX_SITES; s++)
        REQUIRE(vv_increment(&full, s * 2) == 0);
    CHECK_EQ_INT(vv_increment(&full, 1), MRD_ETOOBIG);
    CHECK_EQ_INT(full.n, VV_MAX_SITES);
    CHECK_EQ_INT(vv_increment(&full, 2), 0);
    vv other = VV(1, 1);
    CHECK_EQ_INT(vv_merge(&full, &other, &m), MRD_ETOOBIG);

    /* invalid inputs are refused, not "fixed" */
    vv bad = VV(1, 1, 2, 1);
    bad.e[1].site = 1;
    CHECK_EQ_INT(vv_validate(&bad), MRD_EINVAL);
    CHECK_EQ_INT(vv_merge(&bad, &other, &m), MRD_EINVAL);
    bad = VV(1, 1);
    bad.e[0].counter = 0;
    CHECK_EQ_INT(vv_validate(&bad), MRD_EINVAL);
}

/* merge is a join: commutative, associative, idempotent, an upper bound;
 * compare is antisymmetric; increment strictly dominates. */
static void
test_vv_laws_random(void)
{
    uint64_t s = 42;

    for (int it = 0; it < 20000; it++) {
        vv v[3];
        for (int k = 0; k < 3; k++) {
            v[k].n = 0;
            for (uint32_t site = 1; site <= 6; site++)
                if (rng_below(&s, 2))
                    vv_raise(&v[k], site, 1 + rng_below(&s, 4));
        }
        vv ab, ba, ab_c, bc, a_bc, aa;
        REQUIRE(vv_merge(&v[0], &v[1], &ab) == 0);
        REQUIRE(vv_merge(&v[1], &v[0], &ba) == 0);
        CHECK_EQ_INT(vv_compare(&ab, &ba), VV_EQUAL);
        REQUIRE(vv_merge(&ab, &v[2], &ab_c) == 0);
        REQUIRE(vv_merge(&v[1], &v[2], &bc) == 0);
        REQUIRE(vv_merge(&v[0], &bc, &a_bc) == 0);
        CHECK_EQ_INT(vv_compare(&ab_c, &a_bc), VV_EQUAL);
        REQUIRE(vv_merge(&v[0], &v[0], &aa) == 0);
        CHECK_EQ_INT(vv_compare(&aa, &v[0]), VV_EQUAL);
        vv_order o = vv_compare(&ab, &v[0]);
        CHECK(o == VV_EQUAL || o == VV_DOMINATES);
        vv_order x = vv_compare(&v[0], &v[1]), y = vv_compare(&v[1], &v[0]);
        CHECK((x == VV_DOMINATES) == (y == VV_DOMINATED));
        CHECK((x == VV_EQUAL) == (y == VV_EQUAL));
        CHECK((x == VV_CONCURRENT) == (y == VV_CONCURRENT));
        vv inc = v[0];
        REQUIRE(vv_increment(&inc, 1 + (uint32_t)rng_below(&s, 8)) == 0);
        CHECK_EQ_INT(vv_compare(&inc, &v[0]), VV_DOMINATES);
        CHECK_EQ_INT(vv_validate(&ab_c), 0);
    }
}

static void
test_vv_encode_known_bytes(void)
{
    uint8_t buf[VV_ENCODED_MAX];
    size_t len = 99;
    vv e = {0}, a = VV(1, 1, 2, 300), d;
    /* entries { site: 1 counter: 1 } { site: 2 counter: 300 } */
    static const uint8_t want[] = {0x0a, 0x04, 0x08, 0x01, 0x10, 0x01, 0x0a,
                                   0x05, 0x08, 0x02, 0x10, 0xac, 0x02};

    REQUIRE(vv_encode(&e, buf, sizeof(buf), &len) == 0);
    CHECK_EQ_INT(len, 0);
    CHECK_EQ_INT(vv_encoded_size(&e), 0);
    REQUIRE(vv_decode(buf, 0, &d) == 0);
    CHECK_EQ_INT(d.n, 0);
    REQUIRE(vv_encode(&a, buf, sizeof(buf), &len) == 0);
    CHECK_EQ_INT(len, sizeof(want));
    CHECK(memcmp(buf, want, sizeof(want)) == 0);
    CHECK_EQ_INT(vv_encoded_size(&a), sizeof(want));
    REQUIRE(vv_decode(want, sizeof(want), &d) == 0);
    CHECK_EQ_INT(vv_compare(&d, &a), VV_EQUAL);
    /* too small a buffer: refused, *out_len untouched */
    len = 77;
    CHECK_EQ_INT(vv_encode(&a, buf, sizeof(want) - 1, &len), MRD_ETOOBIG);
    CHECK_EQ_INT(len, 77);

    /* the largest vector fits VV_ENCODED_MAX */
    vv full = {0};
    for (uint32_t s = VV_SITE_MAX; full.n < VV_MAX_SITES; s--)
        REQUIRE(vv_raise(&full, s, UINT64_MAX) == 0);
    REQUIRE(vv_encode(&full, buf, sizeof(buf), &len) == 0);
    CHECK(len <= VV_ENCODED_MAX);
    REQUIRE(vv_decode(buf, len, &d) == 0);
    CHECK_EQ_INT(vv_compare(&d, &full), VV_EQUAL);
}

typedef struct bad_enc {
    const char *name;
    uint8_t b[16];
    size_t len;
    int want;
} bad_enc;

static void
test_vv_decode_rejects(void)
{
    static const bad_enc cases[] = {
        {"Unsorted", {0x0a, 4, 0x08, 2, 0x10, 1, 0x0a, 4, 0x08, 1, 0x10, 1}, 12, MRD_EINVAL},
        {"DuplicateSite", {0x0a, 4, 0x08, 1, 0x10, 1, 0x0a, 4, 0x08, 1, 0x10, 2}, 12, MRD_EINVAL},
        {"ZeroCounterExplicit", {0x0a, 4, 0x08, 1, 0x10, 0}, 6, MRD_EINVAL},
        {"ZeroCounterAbsent", {0x0a, 2, 0x08, 1}, 4, MRD_EINVAL},
        {"SiteZero", {0x0a, 2, 0x10, 5}, 4, MRD_EINVAL},
        {"SiteTooLarge", {0x0a, 6, 0x08, 0x80, 0x80, 0x04, 0x10, 1}, 8, MRD_EINVAL},
        {"NonMinimalVarint", {0x0a, 5, 0x08, 0x81, 0x00, 0x10, 1}, 7, MRD_EINVAL},
        {"FieldsReordered", {0x0a, 4, 0x10, 1, 0x08, 1}, 6, MRD_EINVAL},
        {"RepeatedScalarLastWins", {0x0a, 6, 0x08, 9, 0x08, 1, 0x10, 1}, 8, MRD_EINVAL},
        {"UnknownFieldInEntry", {0x0a, 6, 0x08, 1, 0x10, 1, 0x18, 1}, 8, MRD_EINVAL},
        {"UnknownTopLevelField", {0x0a, 4, 0x08, 1, 0x10, 1, 0x12, 0}, 8, MRD_EINVAL},
        {"EmptyEntry", {0x0a, 0}, 2, MRD_EINVAL},
        {"Truncated", {0x0a, 4, 0x08, 1, 0x10}, 5, MRD_EINVAL},
        {"LengthPastEnd", {0x0a, 9, 0x08, 1, 0x10, 1}, 6, MRD_EINVAL},
        {"WrongWireType", {0x08, 1}, 2, MRD_EINVAL},
        {"Garbage", {0xff, 0xff, 0xff, 0xff}, 4, MRD_EINVAL},
        {"OverlongVarint",
         {0x0a, 13, 0x08, 1, 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
          0x01},
         16,
         MRD_EINVAL},
    };
    vv out = VV(9, 9);

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = vv_decode(cases[i].b, cases[i].len, &out);
        if (rc != cases[i].want)
            fprintf(stderr, "  case %s: rc=%d (%s)\n", cases[i].name, rc, mrd_strerror(rc));
        CHECK_EQ_INT(rc, cases[i].want);
        /* *out untouched on failure */
        CHECK(out.n == 1 && out.e[0].site == 9);
    }

    /* 65 entries: over the limit */
    uint8_t many[65 * 6];
    for (int i = 0; i < 65; i++) {
        uint8_t *p = many + i * 6;
        p[0] = 0x0a, p[1] = 4, p[2] = 0x08, p[3] = (uint8_t)(i + 1), p[4] = 0x10, p[5] = 1;
    }
    CHECK_EQ_INT(vv_decode(many, sizeof(many), &out), MRD_ETOOBIG);
    CHECK_EQ_INT(vv_decode(many, 64 * 6, &out), 0);
    CHECK_EQ_INT(out.n, 64);
    uint8_t huge[VV_ENCODED_MAX + 1] = {0};
    CHECK_EQ_INT(vv_decode(huge, sizeof(huge), &out), MRD_ETOOBIG);
    CHECK_EQ_INT(vv_decode(NULL, 3, &out), MRD_EINVAL);
}

/* Random vectors round-trip; random mutations of valid encodings either fail
 * or decode to a vector whose encoding is exactly the mutated bytes. */
static void
test_vv_roundtrip_and_mutations(void)
{
    uint64_t s = 7;
    int accepted_mutants = 0;

    for (int it = 0; it < 20000; it++) {
        vv v = {0}, d;
        uint8_t buf[VV_ENCODED_MAX], again[VV_ENCODED_MAX];
        size_t len, len2;
        int n = (int)rng_below(&s, 8);
        for (int k = 0; k < n; k++)
            vv_raise(&v, 1 + (uint32_t)rng_below(&s, VV_SITE_MAX),
                     1 + (rng_next(&s) >> rng_below(&s, 64)));
        REQUIRE(vv_encode(&v, buf, sizeof(buf), &len) == 0);
        REQUIRE(vv_decode(buf, len, &d) == 0);
        CHECK_EQ_INT(vv_compare(&d, &v), VV_EQUAL);
        if (len == 0)
            continue;
        buf[rng_below(&s, len)] ^= (uint8_t)(1u << rng_below(&s, 8));
        if (vv_decode(buf, len, &d) == 0) {
            accepted_mutants++;
            REQUIRE(vv_encode(&d, again, sizeof(again), &len2) == 0);
            CHECK(len2 == len && memcmp(again, buf, len) == 0);
        }
    }
    CHECK(accepted_mutants > 0); /* flipping a counter bit stays canonical */
}

/* ------------------------------------------------------------------------ */
/* decision                                                                 */
/* ------------------------------------------------------------------------ */

static void
test_decide_basic(void)
{
    conflict_version a1 = mkver("a1", VV(1, 1), 100, 1, 0);
    conflict_version a2 = mkver("a2", VV(1, 2), 200, 1, 0);
    conflict_version b1 = mkver("b1", VV(1, 1, 2, 1), 150, 2, 0); /* saw a1 */
    conflict_version c1 = mkver("c1", VV(3, 1), 300, 3, 0);       /* saw nothing */
    conflict_version held[4];
    conflict_class cls[5];
    conflict_decision d;

    /* empty key: becomes current */
    REQUIRE(conflict_decide(NULL, 0, &a1, cls, &d) == 0);
    CHECK_EQ_INT(d.action, CONFLICT_ACTION_APPLY);
    CHECK_EQ_INT(d.winner, 0);
    CHECK(d.prev_winner == CONFLICT_NONE && d.current_changed && !d.new_conflict);
    CHECK_EQ_INT(cls[0].role, CONFLICT_ROLE_CURRENT);

    /* dominates: replaces the current, old one non-current */
    held[0] = a1;
    REQUIRE(conflict_decide(held, 1, &b1, cls, &d) == 0);
    CHECK_EQ_INT(d.winner, 1);
    CHECK_EQ_INT(cls[0].role, CONFLICT_ROLE_NONCURRENT);
    CHECK_EQ_INT(cls[0].keep, CONFLICT_KEEP);
    CHECK_EQ_INT(cls[1].role, CONFLICT_ROLE_CURRENT);
    CHECK(!d.new_conflict && d.current_changed);

    /* dominated arriving late: non-current, nothing else moves */
    held[0] = b1;
    REQUIRE(conflict_decide(held, 1, &a1, cls, &d) == 0);
    CHECK_EQ_INT(d.winner, 0);
    CHECK_EQ_INT(cls[1].role, CONFLICT_ROLE_NONCURRENT);
    CHECK(!d.current_changed && !d.new_conflict);

    /* exact duplicate: dropped, idempotent */
    REQUIRE(conflict_decide(held, 1, &b1, cls, &d) == 0);
    CHECK_EQ_INT(d.action, CONFLICT_ACTION_DUPLICATE);
    CHECK_EQ_INT(cls[1].role, CONFLICT_ROLE_CURRENT);
    CHECK(!d.current_changed);

    /* same id, different content: corruption, refused */
    conflict_version evil = b1;
    evil.hlc++;
    d.winner = 1234;
    CHECK_EQ_INT(conflict_decide(held, 1, &evil, cls, &d), MRD_EEXIST);
    CHECK_EQ_INT(d.winner, 1234);

    /* concurrent: larger HLC wins, the loser is a conflict */
    REQUIRE(conflict_decide(held, 1, &c1, cls, &d) == 0);
    CHECK_EQ_INT(d.winner, 1);
    CHECK_EQ_INT(cls[0].role, CONFLICT_ROLE_CONFLICT);
    CHECK_EQ_INT(cls[0].keep, CONFLICT_KEEP);
    CHECK(d.new_conflict && d.current_changed);
    /* the same two in the other order give the same answer */
    held[0] = c1;
    REQUIRE(conflict_decide(held, 1, &b1, cls, &d) == 0);
    CHECK_EQ_INT(d.winner, 0);
    CHECK_EQ_INT(cls[1].role, CONFLICT_ROLE_CONFLICT);
    CHECK(d.new_conflict && !d.current_changed);

    /* HLC tie: higher origin wins; same origin and stamp: id bytes decide */
    conflict_version t1 = mkver("zz", VV(4, 1), 500, 4, 0);
    conflict_version t2 = mkver("aa", VV(5, 1), 500, 5, 0);
    held[0] = t1;
    REQUIRE(conflict_decide(held, 1, &t2, cls, &d) == 0);
    CHECK_EQ_INT(d.winner, 1);
    conflict_version u1 = mkver("ab", VV(4, 1), 500, 4, 0);
    conflict_version u2 = mkver("abc", VV(4, 1), 500, 4, 0); /* equal vv: reused counter */
    CHECK(conflict_version_order(&u2, &u1) > 0);
    held[0] = u2;
    REQUIRE(conflict_decide(held, 1, &u1, cls, &d) == 0);
    CHECK_EQ_INT(d.winner, 0);
    CHECK_EQ_INT(cls[1].role, CONFLICT_ROLE_CONFLICT); /* equal vv is a conflict, not a dup */
    CHECK(d.new_conflict);

    /* an incoming version that dominates one conflict but not the winner */
    held[0] = a1;
    held[1] = c1;
    conflict_version a3 = mkver("a3", VV(1, 3), 250, 1, 0); /* a's lineage, not seen c1 */
    REQUIRE(conflict_classify(held, 2, cls, &d.winner) == 0);
    CHECK_EQ_INT(d.winner, 1);
    REQUIRE(conflict_decide(held, 2, &a3, cls, &d) == 0);
    CHECK_EQ_INT(cls[0].role, CONFLICT_ROLE_NONCURRENT);
    CHECK_EQ_INT(cls[1].role, CONFLICT_ROLE_CURRENT);
    CHECK_EQ_INT(cls[2].role, CONFLICT_ROLE_CONFLICT);
    CHECK(d.new_conflict && !d.current_changed);
    (void)a2;

    /* invalid descriptors */
    conflict_version bad = a1;
    bad.origin = 2; /* vv has no entry for its own origin */
    CHECK_EQ_INT(conflict_decide(NULL, 0, &bad, cls, &d), MRD_EINVAL);
    bad = a1;
    bad.id_len = 0;
    CHECK_EQ_INT(conflict_version_validate(&bad), MRD_EINVAL);
    bad = a1;
    bad.flags = 0x80;
    CHECK_EQ_INT(conflict_version_validate(&bad), MRD_EINVAL);
    held[0] = a1;
    held[1] = a1;
    CHECK_EQ_INT(conflict_classify(held, 2, cls, &d.winner), MRD_EINVAL);
    CHECK_EQ_INT(conflict_classify(held, 0, cls, &d.winner), MRD_EINVAL);
}

/* Unversioned / versioned / suspended: what a site keeps. */
static void
test_keep_by_bucket_mode(void)
{
    const uint32_t N = CONFLICT_F_NULL_VERSION, D = CONFLICT_F_DELETE_MARKER;
    conflict_version set[4];
    conflict_class cls[4];
    size_t w;

    /* unversioned: an overwrite drops the old version */
    set[0] = mkver("p1", VV(1, 1), 100, 1, N);
    set[1] = mkver("p2", VV(1, 2), 200, 1, N);
    REQUIRE(conflict_classify(set, 2, cls, &w) == 0);
    CHECK_EQ_INT(w, 1);
    CHECK_EQ_INT(cls[0].keep, CONFLICT_DROP);
    /* unversioned: a concurrent loser is hidden, not dropped */
    set[1] = mkver("q1", VV(2, 1), 200, 2, N);
    REQUIRE(conflict_classify(set, 2, cls, &w) == 0);
    CHECK_EQ_INT(w, 1);
    CHECK_EQ_INT(cls[0].role, CONFLICT_ROLE_CONFLICT);
    CHECK_EQ_INT(cls[0].keep, CONFLICT_HIDDEN);
    /* unversioned: a delete concurrent with a put; the later (put) wins and
     * the delete marker stays as the hidden loser */
    set[0] = mkver("del", VV(1, 1), 100, 1, N | D);
    REQUIRE(conflict_classify(set, 2, cls, &w) == 0);
    CHECK_EQ_INT(w, 1);
    CHECK_EQ_INT(cls[0].keep, CONFLICT_HIDDEN);

    /* versioned: everything stays listed */
    set[0] = mkver("v1", VV(1, 1), 100, 1, 0);
    set[1] = mkver("v2", VV(1, 2), 200, 1, 0);
    set[2] = mkver("w1", VV(2, 1), 150, 2, D);
    REQUIRE(conflict_classify(set, 3, cls, &w) == 0);
    CHECK_EQ_INT(w, 1);
    CHECK(cls[0].role == CONFLICT_ROLE_NONCURRENT && cls[0].keep == CONFLICT_KEEP);
    CHECK(cls[2].role == CONFLICT_ROLE_CONFLICT && cls[2].keep == CONFLICT_KEEP);

    /* suspended: a null write drops the null version it supersedes but keeps
     * a real version written while versioning was enabled */
    set[0] = mkver("null-old", VV(1, 1), 100, 1, N);
    set[1] = mkver("real", VV(1, 2), 200, 1, 0);
    set[2] = mkver("null-new", VV(1, 3), 300, 1, N);
    REQUIRE(conflict_classify(set, 3, cls, &w) == 0);
    CHECK_EQ_INT(w, 2);
    CHECK_EQ_INT(cls[0].keep, CONFLICT_DROP);
    CHECK_EQ_INT(cls[1].keep, CONFLICT_KEEP);
    /* a real version superseding a null one keeps it (S3: enabling versioning
     * preserves the null version) */
    REQUIRE(conflict_classify(set, 2, cls, &w) == 0);
    CHECK_EQ_INT(cls[0].keep, CONFLICT_KEEP);
}

/* The site whose clock is 10 minutes slow writes after seeing a replicated
 * write: it wins, because the writes are causally ordered. */
static uint64_t
skewed_clock(void *user)
{
    return *(const uint64_t *)user;
}

static void
test_slow_clock_causal_wins(void)
{
    uint64_t fast_ms = 1700000000000ull + 600000, slow_ms = 1700000000000ull - 600000;
    mrd_hlc *fast = NULL, *slow = NULL, *slow_raw = NULL;
    conflict_version held[2];
    conflict_class cls[3];
    conflict_decision d;
    vv empty = {0}, vx, vy;

    REQUIRE(mrd_hlc_new(skewed_clock, &fast_ms, &fast) == 0);
    REQUIRE(mrd_hlc_new(skewed_clock, &slow_ms, &slow) == 0);
    REQUIRE(mrd_hlc_new(skewed_clock, &slow_ms, &slow_raw) == 0);

    /* site 1 (fast clock) writes x */
    mrd_hlc_stamp hx = mrd_hlc_now(fast);
    REQUIRE(conflict_stamp(&empty, 1, hx, &vx) == 0);
    conflict_version x = mkver("x", vx, hx, 1, 0);

    /* site 2 (slow clock) applies x, then a client overwrites it 1 s later */
    slow_ms += 1000;
    held[0] = x;
    mrd_hlc_observe(slow, x.hlc);
    mrd_hlc_stamp hy = mrd_hlc_now(slow);
    CHECK(MRD_HLC_MS(hy) >= MRD_HLC_MS(hx)); /* HLC carried the causality */
    REQUIRE(conflict_stamp(&x.vv, 2, hy, &vy) == 0);
    conflict_version y = mkver("y", vy, hy, 2, 0);
    REQUIRE(conflict_decide(held, 1, &y, cls, &d) == 0);
    CHECK_EQ_INT(d.winner, 1);
    CHECK_EQ_INT(cls[0].role, CONFLICT_ROLE_NONCURRENT);
    CHECK(!d.new_conflict);
    /* ... and at site 1, receiving y after x: same answer */
    held[0] = y;
    REQUIRE(conflict_decide(held, 1, &x, cls, &d) == 0);
    CHECK_EQ_INT(d.winner, 0);

    /* Even with a stamp that never observed x (a raw slow clock, as
     * LWW-by-mtime would use), the vector alone decides: y' wins although its
     * stamp is ~20 minutes older than x's. */
    mrd_hlc_stamp hraw = mrd_hlc_now(slow_raw);
    CHECK(hraw < hx);
    conflict_version y2 = mkver("y2", vy, hraw, 2, 0);
    held[0] = x;
    REQUIRE(conflict_decide(held, 1, &y2, cls, &d) == 0);
    CHECK_EQ_INT(d.winner, 1);
    CHECK_EQ_INT(cls[0].role, CONFLICT_ROLE_NONCURRENT);

    /* Contrast: the slow site writing *without* having seen x is concurrent;
     * then the HLC decides, x wins, and the slow write is kept as a conflict. */
    vv vz;
    REQUIRE(conflict_stamp(&empty, 2, hraw, &vz) == 0);
    conflict_version z = mkver("z", vz, hraw, 2, 0);
    REQUIRE(conflict_decide(held, 1, &z, cls, &d) == 0);
    CHECK_EQ_INT(d.winner, 0);
    CHECK_EQ_INT(cls[1].role, CONFLICT_ROLE_CONFLICT);
    CHECK(d.new_conflict);

    mrd_hlc_free(fast);
    mrd_hlc_free(slow);
    mrd_hlc_free(slow_raw);
}

static void
test_stamp(void)
{
    vv base = VV(1, 5, 2, 9), out;

    /* HLC-derived: the site's entry jumps to the stamp */
    REQUIRE(conflict_stamp(&base, 2, 1000, &out) == 0);
    CHECK_EQ_INT(vv_get(&out, 2), 1000);
    CHECK_EQ_INT(vv_get(&out, 1), 5);
    CHECK_EQ_INT(vv_compare(&out, &base), VV_DOMINATES);
    /* never goes backwards even if the stamp is smaller than the entry */
    REQUIRE(conflict_stamp(&out, 2, 3, &out) == 0);
    CHECK_EQ_INT(vv_get(&out, 2), 1001);
    CHECK_EQ_INT(conflict_stamp(&base, 0, 5, &out), MRD_EINVAL);
    CHECK_EQ_INT(conflict_stamp(&base, 2, 0, &out), MRD_EINVAL);

    /* After GC forgot a key, a fresh write from the same site is not
     * dominated by a surviving copy of the old tombstone elsewhere. */
    conflict_version tomb = mkver("tomb", VV(1, 100, 3, 200), 200, 3,
                                  CONFLICT_F_DELETE_MARKER | CONFLICT_F_NULL_VERSION);
    vv empty = {0}, fresh;
    REQUIRE(conflict_stamp(&empty, 3, 300, &fresh) == 0);
    conflict_version w = mkver("new", fresh, 300, 3, CONFLICT_F_NULL_VERSION);
    conflict_class cls[2];
    conflict_decision d;
    REQUIRE(conflict_decide(&tomb, 1, &w, cls, &d) == 0);
    CHECK_EQ_INT(d.winner, 1);
    CHECK(cls[1].keep != CONFLICT_DROP);
    /* with plain +1 counters the same scenario would lose the write: */
    vv reuse = VV(3, 1);
    conflict_version w2 = mkver("new2", reuse, 300, 3, CONFLICT_F_NULL_VERSION);
    REQUIRE(conflict_decide(&tomb, 1, &w2, cls, &d) == 0);
    CHECK_EQ_INT(cls[1].keep, CONFLICT_DROP);
}

static void
test_gc(void)
{
    const uint32_t N = CONFLICT_F_NULL_VERSION, D = CONFLICT_F_DELETE_MARKER;
    const uint64_t T = 1700000000000ull, H = 3600 * 1000ull;
    mrd_hlc_stamp t = T << 16;
    conflict_version set[3];
    conflict_class cls[3];
    uint8_t purge[3];
    size_t w;
    mrd_hlc_stamp acked[3] = {t + 10, t + 10, t + 10};
    conflict_gc_state st = {acked, 3, T + 2 * H, H, CONFLICT_RETENTION_DEFAULT_MS, NULL};

    /* a lone current null delete marker: purged once stable and past grace */
    set[0] = mkver("d", VV(1, 1), t, 1, N | D);
    REQUIRE(conflict_classify(set, 1, cls, &w) == 0);
    REQUIRE(conflict_gc(set, 1, cls, &st, purge) == 0);
    CHECK_EQ_INT(purge[0], 1);
    /* one peer has not acked past it: kept */
    acked[1] = t - 1;
    REQUIRE(conflict_gc(set, 1, cls, &st, purge) == 0);
    CHECK_EQ_INT(purge[0], 0);
    acked[1] = t + 10;
    /* grace not over: kept */
    st.now_ms = T + H / 2;
    REQUIRE(conflict_gc(set, 1, cls, &st, purge) == 0);
    CHECK_EQ_INT(purge[0], 0);
    st.now_ms = T + 2 * H;
    /* a versioned delete marker is user data: never purged */
    set[0].flags = D;
    REQUIRE(conflict_gc(set, 1, cls, &st, purge) == 0);
    CHECK_EQ_INT(purge[0], 0);
    /* a current null put is never purged */
    set[0].flags = N;
    REQUIRE(conflict_gc(set, 1, cls, &st, purge) == 0);
    CHECK_EQ_INT(purge[0], 0);

    /* a hidden loser: kept through the retention window, then purged */
    set[0] = mkver("put", VV(2, 1), t + 5, 2, N);
    set[1] = mkver("del", VV(1, 1), t, 1, N | D);
    REQUIRE(conflict_classify(set, 2, cls, &w) == 0);
    REQUIRE(w == 0 && cls[1].keep == CONFLICT_HIDDEN);
    REQUIRE(conflict_gc(set, 2, cls, &st, purge) == 0);
    CHECK(purge[0] == 0 && purge[1] == 0);
    st.now_ms = T + CONFLICT_RETENTION_DEFAULT_MS + 1;
    REQUIRE(conflict_gc(set, 2, cls, &st, purge) == 0);
    CHECK(purge[0] == 0 && purge[1] == 1);
    /* found hidden late (after a partition): the window runs from then */
    uint64_t since[2] = {0, T + 3 * H};
    st.hidden_since_ms = since;
    REQUIRE(conflict_gc(set, 2, cls, &st, purge) == 0);
    CHECK_EQ_INT(purge[1], 0);
    st.hidden_since_ms = NULL;

    /* a current null marker with a hidden loser goes only with the loser */
    set[0] = mkver("put", VV(2, 1), t, 2, N);
    set[1] = mkver("del", VV(1, 1), t + 5, 1, N | D);
    REQUIRE(conflict_classify(set, 2, cls, &w) == 0);
    REQUIRE(w == 1 && cls[0].keep == CONFLICT_HIDDEN);
    st.now_ms = T + 2 * H;
    REQUIRE(conflict_gc(set, 2, cls, &st, purge) == 0);
    CHECK(purge[0] == 0 && purge[1] == 0);
    st.now_ms = T + CONFLICT_RETENTION_DEFAULT_MS + 1;
    REQUIRE(conflict_gc(set, 2, cls, &st, purge) == 0);
    CHECK(purge[0] == 1 && purge[1] == 1);

    /* DROP versions are always purgeable; bad inputs refused */
    set[0] = mkver("o", VV(1, 1), t, 1, N);
    set[1] = mkver("n", VV(1, 2), t + 1, 1, N);
    REQUIRE(conflict_classify(set, 2, cls, &w) == 0);
    REQUIRE(conflict_gc(set, 2, cls, &st, purge) == 0);
    CHECK(purge[0] == 1 && purge[1] == 0);
    st.n_acked = 0;
    CHECK_EQ_INT(conflict_gc(set, 2, cls, &st, purge), MRD_EINVAL);
    st.n_acked = 3;
    cls[0].role = CONFLICT_ROLE_CURRENT; /* two currents */
    CHECK_EQ_INT(conflict_gc(set, 2, cls, &st, purge), MRD_EINVAL);
}

static void
test_bucket(void)
{
    const uint32_t D = CONFLICT_F_DELETE_MARKER;
    conflict_version r[3];
    conflict_bucket_state bs;

    CHECK(conflict_bucket_resolve(NULL, 0, 0, &bs) == 0 && bs == CONFLICT_BUCKET_ABSENT);
    CHECK(conflict_bucket_resolve(NULL, 0, 1, &bs) == 0 && bs == CONFLICT_BUCKET_LIVE);
    r[0] = mkver("create", VV(1, 1), 100, 1, 0);
    CHECK(conflict_bucket_resolve(r, 1, 0, &bs) == 0 && bs == CONFLICT_BUCKET_LIVE);
    /* delete-bucket at site 2 after seeing the create, bucket empty */
    r[1] = mkver("delete", VV(1, 1, 2, 1), 200, 2, D);
    CHECK(conflict_bucket_resolve(r, 2, 0, &bs) == 0 && bs == CONFLICT_BUCKET_DELETED);
    /* a put at site 1 concurrent with the delete-bucket: the data keeps the
     * bucket alive, whatever order the records arrived in */
    CHECK(conflict_bucket_resolve(r, 2, 1, &bs) == 0 && bs == CONFLICT_BUCKET_RESURRECTED);
    /* a create at site 3 concurrent with the delete and stamped later wins */
    r[2] = mkver("create3", VV(1, 1, 3, 1), 300, 3, 0);
    CHECK(conflict_bucket_resolve(r, 3, 0, &bs) == 0 && bs == CONFLICT_BUCKET_LIVE);
    r[2].hlc = 150; /* ... and one stamped earlier loses */
    CHECK(conflict_bucket_resolve(r, 3, 0, &bs) == 0 && bs == CONFLICT_BUCKET_DELETED);
    CHECK_EQ_INT(conflict_bucket_resolve(r, 3, 0, NULL), MRD_EINVAL);
}

/* ------------------------------------------------------------------------ */
/* property test: convergence over randomized histories                     */
/* ------------------------------------------------------------------------ */

#define P_MAX_SITES 5
#define P_MAX_KEYS  3
#define P_MAX_RECS  28
#define P_MAX_DELIV (P_MAX_RECS * 3)
#define P_SKEW_MS   600000 /* +-10 minutes */
#define P_T0        1700000000000ull

typedef struct p_rec {
    char id[24];
    int key;
    int site;           /* index of origin */
    uint64_t wall_ms;   /* origin's raw wall clock at the write (LWW's mtime) */
    conflict_version v; /* v.id points at id */
} p_rec;

typedef struct p_key {
    int n;
    conflict_version vers[P_MAX_RECS];
    conflict_class cls[P_MAX_RECS + 1];
    int rec[P_MAX_RECS];
} p_key;

typedef struct p_site {
    uint32_t id;
    uint64_t clock_ms; /* skewed view of the global time */
    int64_t skew;
    mrd_hlc *hlc;
    int subset; /* passes decide only current, conflict and null versions */
    uint8_t seen[P_MAX_RECS];
    p_key keys[P_MAX_KEYS];
} p_site;

typedef int (*p_decide_fn)(const conflict_version *held, size_t n, const conflict_version *in,
                           conflict_class *cls, conflict_decision *d);

typedef struct p_world {
    int nsites, nkeys, nrecs, mode;
    p_site sites[P_MAX_SITES];
    p_rec recs[P_MAX_RECS];
    p_decide_fn decide;
    /* statistics over a run */
    uint64_t conflicts, causal_overrides, lww_lost, lww_wrong_winner, deliveries;
} p_world;

static uint64_t
p_clock(void *user)
{
    return ((p_site *)user)->clock_ms;
}

/* A deliberately order-dependent rule: on a concurrent delivery the version
 * that arrived first stays current. The harness must catch it. */
static int
p_decide_first_wins(const conflict_version *held, size_t n, const conflict_version *in,
                    conflict_class *cls, conflict_decision *d)
{
    int rc = conflict_decide(held, n, in, cls, d);
    if (rc == 0 && d->action == CONFLICT_ACTION_APPLY && d->new_conflict && d->current_changed &&
        d->prev_winner != CONFLICT_NONE) {
        cls[d->prev_winner].role = CONFLICT_ROLE_CURRENT;
        cls[n].role = CONFLICT_ROLE_CONFLICT;
        d->winner = d->prev_winner;
    }
    return rc;
}

/* Applies record r at site s: observe its stamp, decide, store what is kept. */
static int
p_apply(p_world *w, p_site *s, int r, char *err, size_t errsz)
{
    const p_rec *rec = &w->recs[r];
    p_key *k = &s->keys[rec->key];
    conflict_decision d;
    int rc, m = 0;

    mrd_hlc_observe(s->hlc, rec->v.hlc);
    s->seen[r] = 1;
    w->deliveries++;
    if (!s->subset) {
        rc = w->decide(k->vers, (size_t)k->n, &rec->v, k->cls, &d);
    } else {
        /* The long-history mode of the header: dedupe by id first (as the
         * index would), then decide on current, conflict and null versions
         * only; the omitted ones keep their class. */
        static conflict_version sub[P_MAX_RECS];
        static conflict_class subcls[P_MAX_RECS + 1];
        int map[P_MAX_RECS], ns = 0;
        for (int i = 0; i < k->n; i++)
            if (k->rec[i] == r)
                return 0;
        for (int i = 0; i < k->n; i++) {
            if (k->cls[i].role == CONFLICT_ROLE_NONCURRENT &&
                !(k->vers[i].flags & CONFLICT_F_NULL_VERSION))
                continue;
            map[ns] = i;
            sub[ns++] = k->vers[i];
        }
        rc = w->decide(sub, (size_t)ns, &rec->v, subcls, &d);
        if (rc == 0) {
            for (int j = 0; j < ns; j++)
                k->cls[map[j]] = subcls[j];
            k->cls[k->n] = subcls[ns];
        }
    }
    if (rc != 0) {
        snprintf(err, errsz, "decide failed: %s", mrd_strerror(rc));
        return -1;
    }
    if (d.action == CONFLICT_ACTION_DUPLICATE)
        return 0;
    if (d.new_conflict)
        w->conflicts++;
    /* compact: keep held versions not dropped, then the incoming one */
    for (int i = 0; i < k->n; i++) {
        if (k->cls[i].keep == CONFLICT_DROP)
            continue;
        if (m != i) {
            k->vers[m] = k->vers[i];
            k->rec[m] = k->rec[i];
        }
        k->cls[m] = k->cls[i];
        m++;
    }
    if (k->cls[k->n].keep != CONFLICT_DROP) {
        k->cls[m] = k->cls[k->n];
        k->vers[m] = rec->v;
        k->rec[m] = r;
        m++;
    }
    k->n = m;
    return 0;
}

static void
p_shuffle(int *a, int n, uint64_t *rs)
{
    for (int i = n - 1; i > 0; i--) {
        int j = (int)rng_below(rs, (uint64_t)i + 1), t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

/* The oracle: the winner over all records of a key, computed from scratch
 * with nothing but vv_compare and the documented order. */
static int
p_oracle_winner(const p_world *w, int key)
{
    int best = -1;
    for (int i = 0; i < w->nrecs; i++) {
        int dominated = 0;
        if (w->recs[i].key != key)
            continue;
        for (int j = 0; j < w->nrecs && !dominated; j++)
            dominated = w->recs[j].key == key &&
                        vv_compare(&w->recs[j].v.vv, &w->recs[i].v.vv) == VV_DOMINATES;
        if (dominated)
            continue;
        if (best < 0 || w->recs[i].v.hlc > w->recs[best].v.hlc ||
            (w->recs[i].v.hlc == w->recs[best].v.hlc &&
             (w->recs[i].v.origin > w->recs[best].v.origin ||
              (w->recs[i].v.origin == w->recs[best].v.origin &&
               strcmp(w->recs[i].id, w->recs[best].id) > 0))))
            best = i;
    }
    return best;
}

/* Serializes a site's state of one key canonically (sorted by record id). */
static size_t
p_serialize(const p_world *w, const p_key *k, uint8_t *out, size_t cap)
{
    int order[P_MAX_RECS];
    size_t len = 0;

    for (int i = 0; i < k->n; i++)
        order[i] = i;
    for (int i = 1; i < k->n; i++) /* insertion sort by id */
        for (int j = i;
             j > 0 && strcmp(w->recs[k->rec[order[j - 1]]].id, w->recs[k->rec[order[j]]].id) > 0;
             j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    for (int i = 0; i < k->n; i++) {
        const conflict_version *v = &k->vers[order[i]];
        size_t vl = 0;
        if (len + v->id_len + 2 + VV_ENCODED_MAX + 16 > cap)
            return 0;
        memcpy(out + len, v->id, v->id_len);
        len += v->id_len;
        out[len++] = (uint8_t)k->cls[order[i]].role;
        out[len++] = (uint8_t)k->cls[order[i]].keep;
        if (vv_encode(&v->vv, out + len, cap - len, &vl) != 0)
            return 0;
        len += vl;
        memcpy(out + len, &v->hlc, 8);
        len += 8;
    }
    return len;
}

/*
 * Runs one history from seed. Returns 0 if every property holds, -1 with a
 * message in err otherwise.
 */
static int
p_run_history(p_world *w, uint64_t seed, char *err, size_t errsz)
{
    uint64_t rs = seed, now = P_T0;
    int ndeliv_frac;
    int rc = -1;

    w->nsites = 3 + (int)rng_below(&rs, 3);
    w->nkeys = 1 + (int)rng_below(&rs, P_MAX_KEYS);
    w->mode = (int)rng_below(&rs, 3); /* 0 versioned, 1 unversioned, 2 mixed */
    int target = 6 + (int)rng_below(&rs, P_MAX_RECS - 5);
    ndeliv_frac = 10 + (int)rng_below(&rs, 80); /* % of pending delivered before a write */
    w->nrecs = 0;
    for (int i = 0; i < w->nsites; i++) {
        p_site *s = &w->sites[i];
        uint32_t id;
        int clash;
        do { /* distinct random ids, so origin order is not site index order */
            id = 1 + (uint32_t)rng_below(&rs, 40);
            clash = 0;
            for (int j = 0; j < i; j++)
                clash |= w->sites[j].id == id;
        } while (clash);
        s->id = id;
        /* skew: a quarter of sites exactly on time (to produce HLC ties) */
        s->skew =
            rng_below(&rs, 4) == 0 ? 0 : (int64_t)rng_below(&rs, 2 * P_SKEW_MS + 1) - P_SKEW_MS;
        s->clock_ms = (uint64_t)((int64_t)now + s->skew);
        s->subset = (int)rng_below(&rs, 2);
        memset(s->seen, 0, sizeof(s->seen));
        for (int k = 0; k < P_MAX_KEYS; k++)
            s->keys[k].n = 0;
        if (mrd_hlc_new(p_clock, s, &s->hlc) != 0) {
            snprintf(err, errsz, "mrd_hlc_new failed");
            for (int j = 0; j < i; j++)
                mrd_hlc_free(w->sites[j].hlc);
            return -1;
        }
    }

    /* phase 1: sites write after having seen a random subset of the others */
    while (w->nrecs < target) {
        int si = (int)rng_below(&rs, (uint64_t)w->nsites);
        p_site *s = &w->sites[si];
        int pend[P_MAX_RECS], np = 0;

        now += rng_below(&rs, 4) == 0 ? 0 : rng_below(&rs, 3000);
        for (int i = 0; i < w->nsites; i++)
            w->sites[i].clock_ms = (uint64_t)((int64_t)now + w->sites[i].skew);
        for (int r = 0; r < w->nrecs; r++)
            if (!s->seen[r] && (int)rng_below(&rs, 100) < ndeliv_frac)
                pend[np++] = r;
        p_shuffle(pend, np, &rs);
        for (int i = 0; i < np; i++)
            if (p_apply(w, s, pend[i], err, errsz) != 0)
                goto done;

        p_rec *rec = &w->recs[w->nrecs];
        int key = (int)rng_below(&rs, (uint64_t)w->nkeys);
        p_key *k = &s->keys[key];
        vv base = {0};
        for (int i = 0; i < k->n; i++)
            if (k->cls[i].role == CONFLICT_ROLE_CURRENT)
                base = k->vers[i].vv;
        uint32_t flags = 0;
        if (w->mode == 1 || (w->mode == 2 && rng_below(&rs, 2)))
            flags |= CONFLICT_F_NULL_VERSION;
        if (rng_below(&rs, 10) < 3)
            flags |= CONFLICT_F_DELETE_MARKER;
        memset(rec, 0, sizeof(*rec));
        snprintf(rec->id, sizeof(rec->id), "%08" PRIx64, rng_next(&rs)); /* random ids */
        rec->key = key;
        rec->site = si;
        rec->wall_ms = s->clock_ms;
        rec->v.id = (const uint8_t *)rec->id;
        rec->v.id_len = strlen(rec->id);
        rec->v.hlc = mrd_hlc_now(s->hlc);
        rec->v.origin = s->id;
        rec->v.flags = flags;
        rec->v.etag = (const uint8_t *)rec->id;
        rec->v.etag_len = 4;
        if (conflict_stamp(&base, s->id, rec->v.hlc, &rec->v.vv) != 0) {
            snprintf(err, errsz, "stamp failed");
            goto done;
        }
        w->nrecs++;
        /* the local apply is the acknowledgement */
        if (p_apply(w, s, w->nrecs - 1, err, errsz) != 0)
            goto done;
    }

    /* phase 2: every site receives every record, own random order, duplicates */
    for (int si = 0; si < w->nsites; si++) {
        int del[P_MAX_DELIV], nd = 0;
        for (int r = 0; r < w->nrecs; r++) {
            del[nd++] = r;
            while (nd < P_MAX_DELIV && rng_below(&rs, 3) == 0)
                del[nd++] = r;
        }
        p_shuffle(del, nd, &rs);
        for (int i = 0; i < nd; i++)
            if (p_apply(w, &w->sites[si], del[i], err, errsz) != 0)
                goto done;
    }

    /* checks */
    for (int key = 0; key < w->nkeys; key++) {
        static uint8_t s0[P_MAX_RECS * (VV_ENCODED_MAX + 64)], sx[sizeof(s0)];
        size_t l0 = p_serialize(w, &w->sites[0].keys[key], s0, sizeof(s0));
        int orc = p_oracle_winner(w, key);

        for (int si = 1; si < w->nsites; si++) {
            size_t lx = p_serialize(w, &w->sites[si].keys[key], sx, sizeof(sx));
            if (lx != l0 || memcmp(s0, sx, l0) != 0) {
                snprintf(err, errsz, "key %d: site %u and site %u differ", key, w->sites[0].id,
                         w->sites[si].id);
                goto done;
            }
        }
        const p_key *k = &w->sites[0].keys[key];
        /* the stored classes are what classify says of the stored set */
        if (k->n > 0) {
            conflict_class cls[P_MAX_RECS];
            size_t win;
            if (conflict_classify(k->vers, (size_t)k->n, cls, &win) != 0 ||
                memcmp(cls, k->cls, sizeof(cls[0]) * (size_t)k->n) != 0) {
                snprintf(err, errsz, "key %d: stored classes differ from classify", key);
                goto done;
            }
            if (orc < 0 || k->rec[win] != orc) {
                snprintf(err, errsz, "key %d: current %s, oracle %s", key, w->recs[k->rec[win]].id,
                         orc >= 0 ? w->recs[orc].id : "-");
                goto done;
            }
        } else if (orc >= 0) {
            snprintf(err, errsz, "key %d: empty but oracle has %s", key, w->recs[orc].id);
            goto done;
        }
        /* no acknowledged write vanished: every record is held, or (null
         * versions only) was overwritten by a held null version whose writer
         * had seen it, which is what an S3 overwrite means */
        for (int r = 0; r < w->nrecs; r++) {
            int held = 0, overwritten = 0;
            if (w->recs[r].key != key)
                continue;
            for (int i = 0; i < k->n; i++) {
                held |= k->rec[i] == r;
                overwritten |= (w->recs[r].v.flags & CONFLICT_F_NULL_VERSION) &&
                               (k->vers[i].flags & CONFLICT_F_NULL_VERSION) &&
                               vv_compare(&k->vers[i].vv, &w->recs[r].v.vv) == VV_DOMINATES;
            }
            if (!held && !overwritten) {
                snprintf(err, errsz, "key %d: write %s vanished", key, w->recs[r].id);
                goto done;
            }
            if (w->mode == 0 && !held) {
                snprintf(err, errsz, "key %d: versioned write %s not kept", key, w->recs[r].id);
                goto done;
            }
        }
        /* what LWW by mtime would have done with the same records */
        int lww = -1;
        for (int r = 0; r < w->nrecs; r++) {
            if (w->recs[r].key != key)
                continue;
            if (lww < 0 || w->recs[r].wall_ms > w->recs[lww].wall_ms ||
                (w->recs[r].wall_ms == w->recs[lww].wall_ms &&
                 w->recs[r].v.origin > w->recs[lww].v.origin))
                lww = r;
        }
        for (int r = 0; r < w->nrecs; r++) {
            int superseded = 0;
            if (w->recs[r].key != key || r == lww)
                continue;
            for (int j = 0; j < w->nrecs; j++)
                superseded |= w->recs[j].key == key &&
                              vv_compare(&w->recs[j].v.vv, &w->recs[r].v.vv) == VV_DOMINATES;
            if (!superseded)
                w->lww_lost++; /* a concurrent write LWW drops without a trace */
        }
        if (lww >= 0 && lww != orc)
            w->lww_wrong_winner++;
    }
    /* causality really beat the wall clock somewhere */
    for (int a = 0; a < w->nrecs; a++)
        for (int b = 0; b < w->nrecs; b++)
            if (w->recs[a].key == w->recs[b].key &&
                vv_compare(&w->recs[a].v.vv, &w->recs[b].v.vv) == VV_DOMINATES) {
                if (w->recs[a].wall_ms < w->recs[b].wall_ms)
                    w->causal_overrides++;
                if (w->recs[a].v.hlc <= w->recs[b].v.hlc) {
                    snprintf(err, errsz, "HLC not causal: %s after %s", w->recs[a].id,
                             w->recs[b].id);
                    goto done;
                }
            }
    rc = 0;
done:
    for (int i = 0; i < w->nsites; i++)
        mrd_hlc_free(w->sites[i].hlc);
    return rc;
}

static uint64_t
env_u64(const char *name, uint64_t dflt)
{
    const char *s = getenv(name);
    char *end;
    unsigned long long v;

    if (!s || !*s)
        return dflt;
    v = strtoull(s, &end, 0);
    return *end ? dflt : (uint64_t)v;
}

static uint64_t
history_seed(uint64_t base, uint64_t i)
{
    uint64_t s = base + i * 0x9E3779B97F4A7C15ull;
    return rng_next(&s);
}

static void
test_property_convergence(void)
{
    static p_world w;
    uint64_t n = env_u64("MERIDIAN_CONFLICT_HISTORIES", 10000);
    uint64_t base = env_u64("MERIDIAN_CONFLICT_SEED", 0x6d6572696469616eull);
    int replay = getenv("MERIDIAN_CONFLICT_SEED") && n == 1;
    struct timespec t0, t1;
    char err[256];
    uint64_t failures = 0;

    memset(&w, 0, sizeof(w));
    w.decide = conflict_decide;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t seed = replay ? base : history_seed(base, i);
        if (p_run_history(&w, seed, err, sizeof(err)) != 0) {
            fprintf(stderr,
                    "  history %" PRIu64 " FAILED: %s\n"
                    "  replay: MERIDIAN_CONFLICT_SEED=0x%016" PRIx64
                    " MERIDIAN_CONFLICT_HISTORIES=1\n",
                    i, err, seed);
            if (++failures >= 5)
                break;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    CHECK_EQ_INT(failures, 0);
    fprintf(stderr,
            "  %" PRIu64 " histories (seed 0x%016" PRIx64 ") in %.2f s: %" PRIu64
            " deliveries, %" PRIu64 " conflicts, %" PRIu64 " causal-over-clock orders;\n"
            "  LWW-by-mtime on the same histories: %" PRIu64 " concurrent writes lost, %" PRIu64
            " keys with a causally stale winner\n",
            n, base, (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9,
            w.deliveries, w.conflicts, w.causal_overrides, w.lww_lost, w.lww_wrong_winner);
    /* the histories exercise what they claim to */
    if (n >= 1000 && !replay) {
        CHECK(w.conflicts > n / 10);
        CHECK(w.causal_overrides > 0);
        CHECK(w.lww_wrong_winner > 0);
    }
}

/* The harness is able to fail: an order-dependent rule must be caught. */
static void
test_property_catches_order_dependence(void)
{
    static p_world w;
    char err[256];
    int caught = 0;

    memset(&w, 0, sizeof(w));
    w.decide = p_decide_first_wins;
    for (uint64_t i = 0; i < 300; i++)
        if (p_run_history(&w, history_seed(1, i), err, sizeof(err)) != 0)
            caught++;
    fprintf(stderr, "  first-arrival-wins rule: %d of 300 histories caught\n", caught);
    CHECK(caught > 30);
}

static const test_case cases[] = {TEST(test_vv_compare),
                                  TEST(test_vv_merge_increment),
                                  TEST(test_vv_laws_random),
                                  TEST(test_vv_encode_known_bytes),
                                  TEST(test_vv_decode_rejects),
                                  TEST(test_vv_roundtrip_and_mutations),
                                  TEST(test_decide_basic),
                                  TEST(test_keep_by_bucket_mode),
                                  TEST(test_slow_clock_causal_wins),
                                  TEST(test_stamp),
                                  TEST(test_gc),
                                  TEST(test_bucket),
                                  TEST(test_property_convergence),
                                  TEST(test_property_catches_order_dependence),
                                  {NULL, NULL}};

TEST_MAIN(cases)
