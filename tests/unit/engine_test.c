/*
 * engine_test.c - the engine's mutation path and its recovery.
 *
 * Each test builds a site on fresh directories (6 drives, 4+2) and drives
 * the engine the way meridiand does: mutations from the "loop" (this
 * thread), completions collected with engine_poll. The recovery tests make
 * the index fall behind the WAL the only way a crash can - by putting back
 * an older copy of the LMDB file (data.mdb) taken while the engine was
 * closed - and check that reopening replays exactly the missing records,
 * that the result equals what live operation produced, and that replaying
 * again changes nothing (idempotence).
 *
 * The replication tests (test_repl_*) run two sites, 1 and 2, each
 * configured with the other as its peer, and play the replicator by hand:
 * they read one site's WAL with a tailing reader, keep the records it
 * originated (never the ReplicatedApply records it wrote for the other) and
 * hand them to the other site's engine_repl_apply, then compare the two
 * indexes. Objects are small enough to be stored inline, so a put record's
 * layout carries the bytes and the receiving site needs no data transfer.
 */
#include <errno.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "test.h"
#include "wal.h"

typedef struct site {
    char dir[256];
    mrd_config *conf;
    engine *e;
    unsigned store_flags;
} site;

/* A site with id `id` on fresh directories; peer != 0 adds that site as its
 * one peer. */
static void
site_init_as(site *s, uint32_t id, uint32_t peer)
{
    char text[2048], err[256];
    int n;

    mrd_log_setup(MRD_LOG_WARN, "t");
    snprintf(s->dir, sizeof(s->dir), "/tmp/engine_test.XXXXXX");
    if (!mkdtemp(s->dir))
        abort();
    n = snprintf(text, sizeof(text),
                 "[site]\nid = %u\nname = t%u\n[listen]\ns3 = 127.0.0.1:1\n"
                 "replication = 127.0.0.1:2\nadmin = 127.0.0.1:3\n[store]\ndata_dirs = "
                 "%s/d0, %s/d1, %s/d2, %s/d3, %s/d4, %s/d5\nec_k = 4\nec_m = 2\n"
                 "meta_dir = %s/meta\n[replication]\nsecret = 0123456789abcdef0123\n[admin]\ntoken "
                 "= 0123456789abcdef0123\n"
                 "[user.u]\naccess_key = AKIAUNIT\nsecret_key = unit-secret\n",
                 id, id, s->dir, s->dir, s->dir, s->dir, s->dir, s->dir, s->dir);
    if (peer)
        n += snprintf(text + n, sizeof(text) - (size_t)n,
                      "[peer.p%u]\nid = %u\nreplication = 127.0.0.1:%u\n", peer, peer, 9000 + peer);
    if (mrd_config_parse("t.ini", text, (size_t)n, &s->conf, err, sizeof(err)) != 0) {
        fprintf(stderr, "config: %s\n", err);
        abort();
    }
    s->e = NULL;
    s->store_flags = STORE_OPT_NO_INLINE; /* exercise shard files, not inline blobs */
}

static void
site_init(site *s)
{
    site_init_as(s, 7, 0);
}

static int
site_open(site *s, uint64_t *replayed)
{
    engine_opts o;
    char report[512];

    memset(&o, 0, sizeof(o));
    o.conf = s->conf;
    o.report = report;
    o.report_size = sizeof(report);
    o.replayed = replayed;
    o.store_flags = s->store_flags;
    return engine_open(&o, &s->e);
}

static void
site_close(site *s)
{
    engine_close(s->e);
    s->e = NULL;
}

static void
site_free(site *s)
{
    char cmd[300];

    site_close(s);
    mrd_config_free(s->conf);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", s->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", s->dir);
}

/* ---- completions ---------------------------------------------------------- */

typedef struct waiter {
    int done, status;
} waiter;

static void
on_done(void *ud, int status)
{
    waiter *w = ud;

    w->status = status;
    w->done = 1;
}

static int
wait_for(engine *e, waiter *w, int n)
{
    for (int spins = 0; spins < 500; spins++) {
        int all = 1;
        struct pollfd p = {.fd = engine_fd(e), .events = POLLIN};
        for (int i = 0; i < n; i++)
            all &= w[i].done;
        if (all)
            return 0;
        poll(&p, 1, 20);
        engine_poll(e);
    }
    return -1;
}

static int
create_bucket(engine *e, const char *b)
{
    waiter w = {0, 0};

    if (engine_bucket_create(e, b, on_done, &w) != 0 || wait_for(e, &w, 1) != 0)
        return -1;
    return w.status;
}

/* Writes len bytes of a pattern under bucket/key and commits it. */
static int
put_object(engine *e, const char *b, const char *k, size_t len, unsigned char seed, waiter *w)
{
    store_writer *sw;
    store_put_result res;
    engine_put p;
    unsigned char *buf = malloc(len ? len : 1);
    engine_kv meta = {"x-amz-meta-seed", "yes"};
    char vid[25];
    int rc;

    for (size_t i = 0; i < len; i++)
        buf[i] = (unsigned char)(seed + i * 31);
    engine_version_id_new(e, vid);
    memset(&res, 0, sizeof(res));
    rc = store_writer_open(engine_store(e), b, k, vid, 0, &sw);
    if (rc == 0)
        rc = store_writer_write(sw, buf, len);
    if (rc == 0)
        rc = store_writer_finish(sw, &res);
    else
        store_writer_abort(sw);
    free(buf);
    if (rc != 0)
        return rc;
    p = (engine_put){b,     k, vid,        res.size,      res.etag, "application/x-test",
                     &meta, 1, res.layout, res.layout_len};
    rc = engine_object_put(e, &p, on_done, w);
    store_put_result_clear(&res);
    return rc;
}

/* Reads bucket/key back and compares it with the pattern. 1 = match. */
static int
object_matches(engine *e, const char *b, const char *k, size_t len, unsigned char seed)
{
    store_version_rec *rec = NULL;
    store_reader *r = NULL;
    const store_version *v;
    unsigned char *buf;
    size_t n = 0;
    int ok = 0;

    if (store_index_get(engine_store(e), b, k, NULL, &rec) != 0)
        return 0;
    v = store_version_rec_get(rec);
    buf = malloc(len + 1);
    if (!(v->flags & STORE_VF_DELETE_MARKER) && v->size == len &&
        store_reader_open(engine_store(e), v->layout, v->layout_len, &r) == 0 &&
        store_reader_read(r, 0, buf, len + 1, &n) == 0 && n == len) {
        ok = 1;
        for (size_t i = 0; i < len; i++)
            ok &= buf[i] == (unsigned char)(seed + i * 31);
    }
    store_reader_close(r);
    store_version_rec_free(rec);
    free(buf);
    return ok;
}

static int
key_is_gone(engine *e, const char *b, const char *k)
{
    store_version_rec *rec = NULL;
    int rc = store_index_get(engine_store(e), b, k, NULL, &rec), gone;

    if (rc == MRD_ENOTFOUND)
        return 1;
    gone = rc == 0 && (store_version_rec_get(rec)->flags & STORE_VF_DELETE_MARKER);
    store_version_rec_free(rec);
    return gone;
}

static int
copy_file(const char *from, const char *to)
{
    char cmd[1300];

    snprintf(cmd, sizeof(cmd), "cp %s %s", from, to);
    return system(cmd);
}

/* ---- tests ---------------------------------------------------------------- */

static void
test_mutations_and_preconditions(void)
{
    site s;
    waiter w[3] = {{0, 0}, {0, 0}, {0, 0}};
    engine_status st;

    site_init(&s);
    REQUIRE(site_open(&s, NULL) == 0);
    CHECK_EQ_INT(create_bucket(s.e, "b"), 0);
    CHECK_EQ_INT(create_bucket(s.e, "b"), MRD_EEXIST);
    REQUIRE(put_object(s.e, "b", "k1", 300000, 1, &w[0]) == 0);
    REQUIRE(put_object(s.e, "b", "k2", 10, 2, &w[1]) == 0);
    REQUIRE(put_object(s.e, "nobucket", "k", 10, 3, &w[2]) == 0);
    REQUIRE(wait_for(s.e, w, 3) == 0);
    CHECK_EQ_INT(w[0].status, 0);
    CHECK_EQ_INT(w[1].status, 0);
    CHECK_EQ_INT(w[2].status, MRD_ENOTFOUND);
    CHECK(object_matches(s.e, "b", "k1", 300000, 1));
    CHECK(object_matches(s.e, "b", "k2", 10, 2));

    /* a non-empty bucket cannot be deleted */
    memset(w, 0, sizeof(w));
    REQUIRE(engine_bucket_delete(s.e, "b", on_done, &w[0]) == 0);
    REQUIRE(wait_for(s.e, w, 1) == 0);
    CHECK_EQ_INT(w[0].status, MRD_EBUSY);
    /* delete both keys (one twice: the second is a no-op), then the bucket */
    memset(w, 0, sizeof(w));
    REQUIRE(engine_object_delete(s.e, "b", "k1", on_done, &w[0]) == 0);
    REQUIRE(engine_object_delete(s.e, "b", "k2", on_done, &w[1]) == 0);
    REQUIRE(wait_for(s.e, w, 2) == 0);
    CHECK(w[0].status == 0 && w[1].status == 0);
    memset(w, 0, sizeof(w));
    REQUIRE(engine_object_delete(s.e, "b", "k2", on_done, &w[0]) == 0);
    REQUIRE(engine_bucket_delete(s.e, "b", on_done, &w[1]) == 0);
    REQUIRE(wait_for(s.e, w, 2) == 0);
    CHECK(w[0].status == 0 && w[1].status == 0);
    CHECK(key_is_gone(s.e, "b", "k1"));
    REQUIRE(engine_get_status(s.e, &st) == 0);
    /* bucket, 2 puts, 2 markers, bucket delete: 6 records, all applied */
    CHECK_EQ_INT(st.applied_lsn, 6);
    CHECK_EQ_INT(st.wal_durable_lsn, 6);
    CHECK(!st.failed);
    site_free(&s);
}

static void
test_overwrite_frees_old_data_and_concurrent_puts_order(void)
{
    site s;
    waiter w[40];
    char k[16];

    memset(w, 0, sizeof(w));
    site_init(&s);
    REQUIRE(site_open(&s, NULL) == 0);
    REQUIRE(create_bucket(s.e, "b") == 0);
    /* 40 puts in flight at once over 4 keys: each key's last put must win
     * (LSN order = stamp order), whatever the group commit batching did */
    for (int i = 0; i < 40; i++) {
        snprintf(k, sizeof(k), "k%d", i % 4);
        REQUIRE(put_object(s.e, "b", k, 5000 + (size_t)i, (unsigned char)i, &w[i]) == 0);
    }
    REQUIRE(wait_for(s.e, w, 40) == 0);
    for (int i = 0; i < 40; i++)
        CHECK_EQ_INT(w[i].status, 0);
    for (int i = 36; i < 40; i++) {
        snprintf(k, sizeof(k), "k%d", i % 4);
        CHECK(object_matches(s.e, "b", k, 5000 + (size_t)i, (unsigned char)i));
    }
    site_free(&s);
}

static int
count_cb(void *user, const char *key, const store_version *v)
{
    (void)key;
    (void)v;
    ++*(int *)user;
    return 0;
}

static void
test_recovery_replays_missing_tail_idempotently(void)
{
    site s;
    waiter w[8];
    uint64_t replayed = 99, last = 0;
    char a[600], b[600];
    int n;

    memset(w, 0, sizeof(w));
    site_init(&s);
    REQUIRE(site_open(&s, &replayed) == 0);
    CHECK_EQ_INT(replayed, 0);
    REQUIRE(create_bucket(s.e, "b") == 0);
    site_close(&s);
    snprintf(a, sizeof(a), "%s/meta/data.mdb", s.dir);
    snprintf(b, sizeof(b), "%s/index-at-lsn1.mdb", s.dir);
    REQUIRE(copy_file(a, b) == 0);

    /* live: 5 puts (k0 twice), one delete */
    REQUIRE(site_open(&s, &replayed) == 0);
    CHECK_EQ_INT(replayed, 0);
    REQUIRE(put_object(s.e, "b", "k0", 70000, 10, &w[0]) == 0);
    REQUIRE(put_object(s.e, "b", "k1", 70001, 11, &w[1]) == 0);
    REQUIRE(put_object(s.e, "b", "k2", 3, 12, &w[2]) == 0);
    REQUIRE(wait_for(s.e, w, 3) == 0);
    REQUIRE(put_object(s.e, "b", "k0", 123, 13, &w[3]) == 0);
    REQUIRE(engine_object_delete(s.e, "b", "k2", on_done, &w[4]) == 0);
    REQUIRE(wait_for(s.e, w, 5) == 0);
    site_close(&s);

    /* crash image: the index is back at LSN 1, the WAL holds 2..6 */
    for (int round = 0; round < 2; round++) {
        REQUIRE(copy_file(b, a) == 0);
        REQUIRE(site_open(&s, &replayed) == 0);
        CHECK_EQ_INT(replayed, 5);
        REQUIRE(store_index_last_lsn(engine_store(s.e), &last) == 0);
        CHECK_EQ_INT(last, 6);
        CHECK(object_matches(s.e, "b", "k0", 123, 13));
        CHECK(object_matches(s.e, "b", "k1", 70001, 11));
        CHECK(key_is_gone(s.e, "b", "k2"));
        n = 0;
        REQUIRE(store_index_list(engine_store(s.e), "b", NULL, NULL, NULL, STORE_LIST_VERSIONS,
                                 count_cb, &n) == 0);
        CHECK_EQ_INT(n, 3); /* k0 (latest only), k1, k2's marker */
        site_close(&s);
        /* reopening an up-to-date index replays nothing */
        REQUIRE(site_open(&s, &replayed) == 0);
        CHECK_EQ_INT(replayed, 0);
        CHECK(object_matches(s.e, "b", "k0", 123, 13));
        site_close(&s);
    }
    site_free(&s);
}

/* ---- replication between two engines ---------------------------------------- */

/* Sites 1 and 2, each the other's peer, storing small objects inline. */
static void
pair_open(site *a, site *b)
{
    site_init_as(a, 1, 2);
    site_init_as(b, 2, 1);
    a->store_flags = b->store_flags = 0;
    if (site_open(a, NULL) != 0 || site_open(b, NULL) != 0) {
        fprintf(stderr, "pair_open: engine_open failed\n");
        abort();
    }
}

/* What one site would send to a peer: the range [from, through] of its
 * WAL, with the records in it that it originated, as owned copies. */
typedef struct range {
    engine_repl_rec recs[64];
    size_t n;
    uint64_t from, through;
} range;

static void
range_clear(range *r)
{
    for (size_t i = 0; i < r->n; i++)
        free((void *)r->recs[i].payload);
    r->n = 0;
}

static int
range_read(engine *e, uint64_t from, range *out)
{
    wal_reader *rd = NULL;
    wal_entry ent;
    int rc;

    memset(out, 0, sizeof(*out));
    out->from = from;
    out->through = from - 1;
    if ((rc = wal_reader_open(engine_wal(e), from, &rd)) != 0)
        return rc;
    while ((rc = wal_reader_next(rd, &ent)) == 1) {
        void *copy;
        out->through = ent.lsn;
        if (ent.type == WAL_REC_REPLICATED_APPLY)
            continue; /* another site's record: not ours to send */
        if (out->n == sizeof(out->recs) / sizeof(out->recs[0]) ||
            !(copy = malloc(ent.len ? ent.len : 1))) {
            rc = -1;
            break;
        }
        memcpy(copy, ent.payload, ent.len);
        out->recs[out->n++] = (engine_repl_rec){ent.lsn, ent.type, copy, ent.len};
    }
    wal_reader_close(rd);
    if (rc != 0)
        range_clear(out);
    return rc;
}

/* Applies r at e as records of origin; the callback's status, or -1 when it
 * never came (or engine_repl_apply's own error). */
static int
range_apply(engine *e, uint32_t origin, const range *r)
{
    waiter w = {0, 0};
    int rc = engine_repl_apply(e, origin, r->from, r->recs, r->n, r->through, on_done, &w);

    if (rc != 0)
        return rc;
    return wait_for(e, &w, 1) == 0 ? w.status : -1;
}

/* Reads from's WAL from *sent + 1 on and applies it at to; *sent follows. */
static int
ship(site *from, site *to, uint64_t *sent)
{
    range r;
    int rc = range_read(from->e, *sent + 1, &r);

    if (rc != 0)
        return rc;
    if (r.through < r.from) {
        range_clear(&r);
        return 0; /* nothing new */
    }
    rc = range_apply(to->e, from->conf->site_id, &r);
    if (rc == 0)
        *sent = r.through;
    range_clear(&r);
    return rc;
}

static engine_repl_state
progress_of(engine *e, uint32_t origin)
{
    engine_repl_state st[4], none = {0, 0, 0, 0};
    int n = engine_repl_progress(e, st, 4);

    for (int i = 0; i < n; i++)
        if (st[i].origin == origin)
            return st[i];
    none.applied = ~0ull; /* fails any comparison a test makes */
    return none;
}

static uint64_t
wal_next(engine *e)
{
    engine_status st;

    return engine_get_status(e, &st) == 0 ? st.wal_next_lsn : 0;
}

/* Every stored version of one key, in version id order. */
typedef struct vlist {
    const char *key;
    int n;
    char id[8][25];
    uint32_t flags[8];
    char etag[8][40];
} vlist;

static int
vlist_cb(void *user, const char *key, const store_version *v)
{
    vlist *l = user;

    if (strcmp(key, l->key) != 0)
        return 0;
    if (l->n < 8) {
        snprintf(l->id[l->n], sizeof(l->id[0]), "%s", v->version_id);
        snprintf(l->etag[l->n], sizeof(l->etag[0]), "%s", v->etag ? v->etag : "");
        l->flags[l->n] = v->flags;
    }
    l->n++;
    return 0;
}

static vlist
versions_of(engine *e, const char *b, const char *k)
{
    vlist l;

    memset(&l, 0, sizeof(l));
    l.key = k;
    if (store_index_list(engine_store(e), b, k, NULL, NULL, STORE_LIST_VERSIONS, vlist_cb, &l) != 0)
        l.n = -1;
    return l;
}

/* The current version's id ("" when there is none). */
static void
current_id(engine *e, const char *b, const char *k, char out[25])
{
    store_version_rec *rec = NULL;

    out[0] = '\0';
    if (store_index_get(engine_store(e), b, k, NULL, &rec) == 0)
        snprintf(out, 25, "%s", store_version_rec_get(rec)->version_id);
    store_version_rec_free(rec);
}

static int
put_wait(engine *e, const char *b, const char *k, size_t len, unsigned char seed)
{
    waiter w = {0, 0};

    if (put_object(e, b, k, len, seed, &w) != 0 || wait_for(e, &w, 1) != 0)
        return -1;
    return w.status;
}

static int
delete_wait(engine *e, const char *b, const char *k)
{
    waiter w = {0, 0};

    if (engine_object_delete(e, b, k, on_done, &w) != 0 || wait_for(e, &w, 1) != 0)
        return -1;
    return w.status;
}

static void
test_repl_put_arrives_with_same_version(void)
{
    site a, b;
    store_version_rec *ra = NULL, *rb = NULL;
    const store_version *va, *vb;
    engine_repl_state ps;
    engine_status st;
    void *blob = NULL;
    size_t blen = 0;
    uint64_t sent = 0, b_next;

    pair_open(&a, &b);
    REQUIRE(create_bucket(a.e, "b") == 0);
    REQUIRE(put_wait(a.e, "b", "k", 1000, 5) == 0);
    b_next = wal_next(b.e);
    REQUIRE(ship(&a, &b, &sent) == 0);
    CHECK_EQ_INT(sent, 2); /* the bucket's create and the put */

    /* the bucket and the version arrived as they are at site 1 */
    CHECK_EQ_INT(store_bucket_get(engine_store(b.e), "b", &blob, &blen), 0);
    free(blob);
    REQUIRE(store_index_get(engine_store(a.e), "b", "k", NULL, &ra) == 0);
    REQUIRE(store_index_get(engine_store(b.e), "b", "k", NULL, &rb) == 0);
    va = store_version_rec_get(ra);
    vb = store_version_rec_get(rb);
    CHECK_STR(vb->version_id, va->version_id);
    CHECK_STR(vb->etag, va->etag);
    CHECK_EQ_INT(vb->size, 1000);
    CHECK_EQ_INT(vb->size, va->size);
    CHECK_EQ_INT(vb->hlc, va->hlc);
    CHECK_STR(vb->content_type, "application/x-test");
    CHECK_EQ_INT(vb->flags & (STORE_VF_CONFLICT | STORE_VF_DELETE_MARKER), 0);
    CHECK(vb->vv_len == va->vv_len && memcmp(vb->vv, va->vv, va->vv_len) == 0);
    store_version_rec_free(ra);
    store_version_rec_free(rb);
    CHECK(object_matches(b.e, "b", "k", 1000, 5));

    /* progress from site 1, and two ReplicatedApply records at site 2 */
    ps = progress_of(b.e, 1);
    CHECK_EQ_INT(ps.applied, 2);
    CHECK_EQ_INT(ps.records, 2);
    CHECK_EQ_INT(ps.duplicates, 0);
    CHECK_EQ_INT(wal_next(b.e), b_next + 2);
    REQUIRE(engine_get_status(b.e, &st) == 0);
    CHECK_EQ_INT(st.applied_lsn, 2);
    CHECK(!st.failed);
    /* site 1 has applied nothing from site 2 */
    CHECK_EQ_INT(progress_of(a.e, 2).applied, 0);
    site_free(&a);
    site_free(&b);
}

static void
test_repl_same_range_twice_is_noop(void)
{
    site a, b;
    range r;
    vlist before, after;
    char cur_before[25], cur_after[25];
    engine_repl_state ps;
    uint64_t b_next;

    pair_open(&a, &b);
    REQUIRE(create_bucket(a.e, "b") == 0);
    REQUIRE(put_wait(a.e, "b", "k", 100, 1) == 0);
    REQUIRE(range_read(a.e, 1, &r) == 0);
    CHECK_EQ_INT(r.n, 2);
    CHECK_EQ_INT(range_apply(b.e, 1, &r), 0);
    before = versions_of(b.e, "b", "k");
    current_id(b.e, "b", "k", cur_before);
    b_next = wal_next(b.e);

    /* the same range again (a batch re-sent after a reconnect) */
    CHECK_EQ_INT(range_apply(b.e, 1, &r), 0);
    ps = progress_of(b.e, 1);
    CHECK_EQ_INT(ps.applied, 2);
    CHECK_EQ_INT(ps.records, 2);
    CHECK_EQ_INT(ps.duplicates, 2);
    CHECK_EQ_INT(wal_next(b.e), b_next); /* nothing appended */
    after = versions_of(b.e, "b", "k");
    current_id(b.e, "b", "k", cur_after);
    CHECK_EQ_INT(after.n, 1);
    CHECK_EQ_INT(after.n, before.n);
    CHECK_STR(cur_after, cur_before);
    CHECK_STR(after.id[0], before.id[0]);
    CHECK_EQ_INT(after.flags[0], before.flags[0]);
    range_clear(&r);

    /* an overlapping range: the old records are skipped, the new one applied */
    REQUIRE(put_wait(a.e, "b", "k", 200, 2) == 0);
    REQUIRE(range_read(a.e, 1, &r) == 0);
    CHECK_EQ_INT(r.n, 3);
    CHECK_EQ_INT(range_apply(b.e, 1, &r), 0);
    range_clear(&r);
    ps = progress_of(b.e, 1);
    CHECK_EQ_INT(ps.applied, 3);
    CHECK_EQ_INT(ps.records, 3);
    CHECK_EQ_INT(ps.duplicates, 4);
    CHECK_EQ_INT(wal_next(b.e), b_next + 1);
    CHECK(object_matches(b.e, "b", "k", 200, 2));
    CHECK_EQ_INT(versions_of(b.e, "b", "k").n, 1); /* the overwrite dropped the first */
    site_free(&a);
    site_free(&b);
}

static void
test_repl_concurrent_puts_converge_with_conflict_kept(void)
{
    site a, b;
    uint64_t to_b = 0, to_a = 0;
    char ca[25], cb[25], va[25], vb[25];
    vlist la, lb;
    int a_wins;

    pair_open(&a, &b);
    REQUIRE(create_bucket(a.e, "b") == 0);
    REQUIRE(ship(&a, &b, &to_b) == 0);
    /* each site writes the key without having seen the other's write */
    REQUIRE(put_wait(a.e, "b", "k", 300, 10) == 0);
    current_id(a.e, "b", "k", va);
    REQUIRE(put_wait(b.e, "b", "k", 400, 20) == 0);
    current_id(b.e, "b", "k", vb);
    REQUIRE(strcmp(va, vb) != 0);
    REQUIRE(ship(&a, &b, &to_b) == 0);
    REQUIRE(ship(&b, &a, &to_a) == 0);
    CHECK_EQ_INT(progress_of(a.e, 2).records, 1); /* its put, not the bucket's apply */

    current_id(a.e, "b", "k", ca);
    current_id(b.e, "b", "k", cb);
    CHECK_STR(ca, cb);
    CHECK(strcmp(ca, va) == 0 || strcmp(ca, vb) == 0);
    a_wins = strcmp(ca, va) == 0;
    CHECK(object_matches(a.e, "b", "k", a_wins ? 300 : 400, a_wins ? 10 : 20));
    CHECK(object_matches(b.e, "b", "k", a_wins ? 300 : 400, a_wins ? 10 : 20));

    /* both sites keep both versions: the loser flagged as a conflict */
    la = versions_of(a.e, "b", "k");
    lb = versions_of(b.e, "b", "k");
    REQUIRE(la.n == 2 && lb.n == 2);
    for (int i = 0; i < 2; i++) {
        int current = strcmp(la.id[i], ca) == 0;
        CHECK_STR(la.id[i], lb.id[i]);
        CHECK_STR(la.etag[i], lb.etag[i]);
        CHECK_EQ_INT(la.flags[i], lb.flags[i]);
        CHECK_EQ_INT(!!(la.flags[i] & STORE_VF_CONFLICT), !current);
        CHECK_EQ_INT(la.flags[i] & STORE_VF_DELETE_MARKER, 0);
    }

    /* each site logged the decision once, with the same winner and loser */
    for (int s = 0; s < 2; s++) {
        engine *e = s ? b.e : a.e;
        mrd_buf rec = {0};
        mrd_json *j = NULL;
        size_t pos = 0;
        CHECK_EQ_INT(engine_conflict_last(e), 1);
        REQUIRE(engine_conflict_get(e, 1, &rec) == 0);
        REQUIRE(mrd_json_parse(rec.data, rec.len, &j, &pos) == 0);
        CHECK_STR(mrd_json_get_str(j, "key", ""), "k");
        CHECK_STR(mrd_json_get_str(j, "delivery", ""), "replication");
        CHECK_STR(mrd_json_get_str(mrd_json_get(j, "winner"), "version_id", ""), ca);
        CHECK_STR(mrd_json_get_str(mrd_json_get(j, "loser"), "version_id", ""), a_wins ? vb : va);
        CHECK_STR(mrd_json_get_str(mrd_json_get(j, "loser"), "kept", ""), "hidden");
        CHECK_EQ_INT(engine_conflict_get(e, 2, &rec), MRD_ENOTFOUND);
        mrd_json_free(j);
        mrd_buf_free(&rec);
    }

    /* shipping again changes nothing: each side's ReplicatedApply record is
     * not sent back */
    REQUIRE(ship(&a, &b, &to_b) == 0);
    REQUIRE(ship(&b, &a, &to_a) == 0);
    CHECK_EQ_INT(versions_of(a.e, "b", "k").n, 2);
    CHECK_EQ_INT(versions_of(b.e, "b", "k").n, 2);
    current_id(b.e, "b", "k", cb);
    CHECK_STR(cb, ca);
    site_free(&a);
    site_free(&b);
}

static void
test_repl_delete_marker_hides_key(void)
{
    site a, b;
    uint64_t sent = 0;
    char ma[25], mb[25];
    vlist l;

    pair_open(&a, &b);
    REQUIRE(create_bucket(a.e, "b") == 0);
    REQUIRE(put_wait(a.e, "b", "d", 50, 3) == 0);
    REQUIRE(put_wait(a.e, "b", "keep", 60, 4) == 0);
    REQUIRE(ship(&a, &b, &sent) == 0);
    REQUIRE(object_matches(b.e, "b", "d", 50, 3));
    REQUIRE(delete_wait(a.e, "b", "d") == 0);
    REQUIRE(ship(&a, &b, &sent) == 0);
    CHECK_EQ_INT(sent, 4);

    CHECK(key_is_gone(b.e, "b", "d"));
    CHECK(object_matches(b.e, "b", "keep", 60, 4));
    current_id(a.e, "b", "d", ma);
    current_id(b.e, "b", "d", mb);
    CHECK(ma[0] != '\0');
    CHECK_STR(mb, ma);
    /* the marker replaced the null version, as it did at site 1 */
    l = versions_of(b.e, "b", "d");
    CHECK_EQ_INT(l.n, versions_of(a.e, "b", "d").n);
    CHECK_EQ_INT(l.n, 1);
    CHECK(l.flags[0] & STORE_VF_DELETE_MARKER);
    CHECK_EQ_INT(progress_of(b.e, 1).applied, 4);
    site_free(&a);
    site_free(&b);
}

static void
test_repl_rejects_bad_ranges(void)
{
    site a, b;
    range r;
    engine_repl_rec bad[2];
    engine_repl_state ps;
    waiter w = {0, 0};
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0x01};
    uint64_t b_next;

    pair_open(&a, &b);
    REQUIRE(create_bucket(a.e, "b") == 0);
    REQUIRE(put_wait(a.e, "b", "k", 10, 1) == 0);
    REQUIRE(range_read(a.e, 1, &r) == 0);
    REQUIRE(r.n == 2);
    b_next = wal_next(b.e);

    /* the range: from 0, from past through, a record before from */
    CHECK_EQ_INT(engine_repl_apply(b.e, 1, 0, r.recs, 2, 2, on_done, &w), MRD_EINVAL);
    CHECK_EQ_INT(engine_repl_apply(b.e, 1, 3, NULL, 0, 2, on_done, &w), MRD_EINVAL);
    CHECK_EQ_INT(engine_repl_apply(b.e, 1, 2, r.recs, 2, 2, on_done, &w), MRD_EINVAL);
    /* records out of order, repeated, past through_lsn, LSN 0, bad types */
    bad[0] = r.recs[1];
    bad[1] = r.recs[0];
    CHECK_EQ_INT(engine_repl_apply(b.e, 1, 1, bad, 2, 2, on_done, &w), MRD_EINVAL);
    bad[1] = r.recs[1];
    CHECK_EQ_INT(engine_repl_apply(b.e, 1, 1, bad, 2, 2, on_done, &w), MRD_EINVAL);
    CHECK_EQ_INT(engine_repl_apply(b.e, 1, 1, r.recs, 2, 1, on_done, &w), MRD_EINVAL);
    bad[0] = r.recs[0];
    bad[0].lsn = 0;
    CHECK_EQ_INT(engine_repl_apply(b.e, 1, 1, bad, 1, 2, on_done, &w), MRD_EINVAL);
    bad[0] = r.recs[0];
    bad[0].type = WAL_REC_REPLICATED_APPLY;
    CHECK_EQ_INT(engine_repl_apply(b.e, 1, 1, bad, 1, 2, on_done, &w), MRD_EINVAL);
    bad[0].type = 0;
    CHECK_EQ_INT(engine_repl_apply(b.e, 1, 1, bad, 1, 2, on_done, &w), MRD_EINVAL);
    /* not a configured peer (site 3), nor this site itself */
    CHECK_EQ_INT(engine_repl_apply(b.e, 3, 1, r.recs, 2, 2, on_done, &w), MRD_EINVAL);
    CHECK_EQ_INT(engine_repl_apply(b.e, 2, 1, r.recs, 2, 2, on_done, &w), MRD_EINVAL);
    CHECK_EQ_INT(engine_repl_apply(b.e, 1, 1, r.recs, 2, 2, NULL, NULL), MRD_EINVAL);
    CHECK_EQ_INT(engine_repl_apply(b.e, 1, 1, NULL, 2, 2, on_done, &w), MRD_EINVAL);

    /* none of them called back, appended or moved the progress */
    for (int i = 0; i < 5; i++) {
        usleep(10000);
        engine_poll(b.e);
    }
    CHECK_EQ_INT(w.done, 0);
    ps = progress_of(b.e, 1);
    CHECK_EQ_INT(ps.applied, 0);
    CHECK_EQ_INT(ps.records + ps.duplicates, 0);
    CHECK_EQ_INT(wal_next(b.e), b_next);

    /* a record that does not decode: MRD_ECORRUPT through the callback,
     * and the range is not counted as applied */
    bad[0] = r.recs[0];
    bad[0].type = WAL_REC_OBJECT_PUT;
    bad[0].payload = junk;
    bad[0].len = sizeof(junk);
    REQUIRE(engine_repl_apply(b.e, 1, 1, bad, 1, 1, on_done, &w) == 0);
    REQUIRE(wait_for(b.e, &w, 1) == 0);
    CHECK_EQ_INT(w.status, MRD_ECORRUPT);
    CHECK_EQ_INT(progress_of(b.e, 1).applied, 0);
    CHECK_EQ_INT(wal_next(b.e), b_next);
    /* ... and nothing after it applies until the range is resent: LSN 2
     * alone would leave a gap */
    memset(&w, 0, sizeof(w));
    REQUIRE(engine_repl_apply(b.e, 1, 2, &r.recs[1], 1, 2, on_done, &w) == 0);
    REQUIRE(wait_for(b.e, &w, 1) == 0);
    CHECK_EQ_INT(w.status, MRD_EBUSY);
    CHECK_EQ_INT(progress_of(b.e, 1).applied, 0);
    CHECK_EQ_INT(wal_next(b.e), b_next);

    /* the good range still applies afterwards */
    CHECK_EQ_INT(range_apply(b.e, 1, &r), 0);
    CHECK_EQ_INT(progress_of(b.e, 1).applied, 2);
    CHECK(object_matches(b.e, "b", "k", 10, 1));
    range_clear(&r);
    site_free(&a);
    site_free(&b);
}

/* Several ranges in flight at once, as the receiver pipelines them: they
 * reach the WAL in call order; after a range fails, the ranges behind it
 * are refused until the origin resends from the failed one. */
static void
test_repl_pipelined_ranges(void)
{
    site a, b;
    range r, part[3];
    waiter w[3];
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0x01};
    const size_t cut[4] = {0, 2, 3, 5};   /* records [0,2) [2,3) [3,5) */
    const uint64_t lsn[4] = {1, 3, 4, 6}; /* ranges [1,2] [3,3] [4,5] */

    pair_open(&a, &b);
    REQUIRE(create_bucket(a.e, "b") == 0);
    REQUIRE(put_wait(a.e, "b", "k", 10, 1) == 0);
    REQUIRE(put_wait(a.e, "b", "k", 20, 2) == 0);
    REQUIRE(put_wait(a.e, "b", "j", 30, 3) == 0);
    REQUIRE(delete_wait(a.e, "b", "k") == 0);
    REQUIRE(range_read(a.e, 1, &r) == 0);
    REQUIRE(r.n == 5 && r.through == 5);
    for (int i = 0; i < 3; i++) {
        memset(&part[i], 0, sizeof(part[i]));
        part[i].from = lsn[i];
        part[i].through = lsn[i + 1] - 1;
        part[i].n = cut[i + 1] - cut[i];
        memcpy(part[i].recs, &r.recs[cut[i]], part[i].n * sizeof(r.recs[0]));
    }

    /* the middle range carries a record that does not decode */
    part[1].recs[0].payload = junk;
    part[1].recs[0].len = sizeof(junk);
    memset(w, 0, sizeof(w));
    for (int i = 0; i < 3; i++)
        REQUIRE(engine_repl_apply(b.e, 1, part[i].from, part[i].recs, part[i].n, part[i].through,
                                  on_done, &w[i]) == 0);
    REQUIRE(wait_for(b.e, w, 3) == 0);
    CHECK_EQ_INT(w[0].status, 0);
    CHECK_EQ_INT(w[1].status, MRD_ECORRUPT);
    CHECK_EQ_INT(w[2].status, MRD_EBUSY);
    CHECK_EQ_INT(progress_of(b.e, 1).applied, 2);
    CHECK(object_matches(b.e, "b", "k", 10, 1));
    CHECK_EQ_INT(versions_of(b.e, "b", "j").n, 0);

    /* the origin resends from the failed range: all three in flight */
    part[1].recs[0] = r.recs[cut[1]];
    part[0].from = 1; /* overlapping what is applied is fine */
    memset(w, 0, sizeof(w));
    for (int i = 0; i < 3; i++)
        REQUIRE(engine_repl_apply(b.e, 1, part[i].from, part[i].recs, part[i].n, part[i].through,
                                  on_done, &w[i]) == 0);
    REQUIRE(wait_for(b.e, w, 3) == 0);
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(w[i].status, 0);
    CHECK_EQ_INT(progress_of(b.e, 1).applied, 5);
    CHECK_EQ_INT(progress_of(b.e, 1).records, 5);
    CHECK(key_is_gone(b.e, "b", "k"));
    CHECK(object_matches(b.e, "b", "j", 30, 3));
    CHECK_EQ_INT(versions_of(b.e, "b", "k").n, 1); /* the marker alone, as at site 1 */
    CHECK_EQ_INT(versions_of(a.e, "b", "k").n, 1);
    range_clear(&r);
    site_free(&a);
    site_free(&b);
}

/* A resync marker (engine_repl_set_applied) recorded while records below it
 * are still on their way to the index: neither the applied LSN in memory
 * nor the one persisted falls back below the marker when they commit. */
static void
test_repl_marker_above_records_in_flight_sticks(void)
{
    site a, b;
    range r;
    waiter w = {0, 0};

    pair_open(&a, &b);
    REQUIRE(create_bucket(a.e, "b") == 0);
    REQUIRE(put_wait(a.e, "b", "k", 70, 7) == 0);
    REQUIRE(put_wait(a.e, "b", "k2", 80, 8) == 0);
    REQUIRE(range_read(a.e, 1, &r) == 0);
    REQUIRE(r.n == 3 && r.through == 3);
    REQUIRE(engine_repl_apply(b.e, 1, r.from, r.recs, r.n, r.through, on_done, &w) == 0);
    REQUIRE(engine_repl_set_applied(b.e, 1, 50) == 0); /* before the range commits */
    REQUIRE(wait_for(b.e, &w, 1) == 0);
    CHECK_EQ_INT(w.status, 0);
    CHECK_EQ_INT(progress_of(b.e, 1).applied, 50);
    CHECK(object_matches(b.e, "b", "k2", 80, 8));
    site_close(&b);
    REQUIRE(site_open(&b, NULL) == 0);
    CHECK_EQ_INT(progress_of(b.e, 1).applied, 50);
    range_clear(&r);
    site_free(&a);
    site_free(&b);
}

static void
test_repl_progress_survives_restart(void)
{
    site a, b;
    range r, empty;
    engine_repl_state ps;
    uint64_t replayed = 99;
    char idx[600], saved[600];

    pair_open(&a, &b);
    /* an image of site 2's index before anything from site 1 arrived */
    site_close(&b);
    snprintf(idx, sizeof(idx), "%s/meta/data.mdb", b.dir);
    snprintf(saved, sizeof(saved), "%s/index-empty.mdb", b.dir);
    REQUIRE(copy_file(idx, saved) == 0);
    REQUIRE(site_open(&b, NULL) == 0);

    REQUIRE(create_bucket(a.e, "b") == 0);
    REQUIRE(put_wait(a.e, "b", "k", 70, 7) == 0);
    REQUIRE(put_wait(a.e, "b", "k2", 80, 8) == 0);
    REQUIRE(range_read(a.e, 1, &r) == 0);
    REQUIRE(r.n == 3 && r.through == 3);
    REQUIRE(range_apply(b.e, 1, &r) == 0);
    CHECK_EQ_INT(progress_of(b.e, 1).applied, 3);

    /* a clean restart reloads the applied LSN from the index */
    site_close(&b);
    REQUIRE(site_open(&b, &replayed) == 0);
    CHECK_EQ_INT(replayed, 0);
    ps = progress_of(b.e, 1);
    CHECK_EQ_INT(ps.applied, 3);
    CHECK_EQ_INT(ps.records, 0);
    /* ... and the duplicate filter with it */
    CHECK_EQ_INT(range_apply(b.e, 1, &r), 0);
    ps = progress_of(b.e, 1);
    CHECK_EQ_INT(ps.duplicates, 3);
    CHECK_EQ_INT(ps.records, 0);
    CHECK(object_matches(b.e, "b", "k2", 80, 8));

    /* A range without records (site 1's LSNs 4..5 were not its own) raises
     * the progress in memory only; after a restart it is back at the last
     * applied record and the origin re-sends the range (engine_repl.c). */
    memset(&empty, 0, sizeof(empty));
    empty.from = 4;
    empty.through = 5;
    CHECK_EQ_INT(range_apply(b.e, 1, &empty), 0);
    CHECK_EQ_INT(progress_of(b.e, 1).applied, 5);
    site_close(&b);
    REQUIRE(site_open(&b, NULL) == 0);
    CHECK_EQ_INT(progress_of(b.e, 1).applied, 3);

    /* a crash image: the index from before the range, the WAL with its
     * three ReplicatedApply records; replay restores data and progress */
    site_close(&b);
    REQUIRE(copy_file(saved, idx) == 0);
    REQUIRE(site_open(&b, &replayed) == 0);
    CHECK_EQ_INT(replayed, 3);
    CHECK_EQ_INT(progress_of(b.e, 1).applied, 3);
    CHECK(object_matches(b.e, "b", "k", 70, 7));
    CHECK(object_matches(b.e, "b", "k2", 80, 8));
    CHECK_EQ_INT(range_apply(b.e, 1, &r), 0);
    CHECK_EQ_INT(progress_of(b.e, 1).duplicates, 3);
    CHECK_EQ_INT(versions_of(b.e, "b", "k").n, 1);
    range_clear(&r);
    site_free(&a);
    site_free(&b);
}

/* The conflict log is written with the decision, so a crash image whose
 * index predates the decision gets the same record back from WAL replay. */
static void
test_conflict_log_rebuilt_by_replay(void)
{
    site a, b;
    uint64_t to_b = 0, replayed = 99;
    char va[25], vb[25], cur[25], idx[600], saved[600];
    mrd_buf before = {0}, after = {0};

    pair_open(&a, &b);
    REQUIRE(create_bucket(a.e, "b") == 0);
    REQUIRE(ship(&a, &b, &to_b) == 0);
    REQUIRE(put_wait(a.e, "b", "k", 300, 10) == 0);
    current_id(a.e, "b", "k", va);
    REQUIRE(put_wait(b.e, "b", "k", 400, 20) == 0);
    current_id(b.e, "b", "k", vb);
    site_close(&b);
    snprintf(idx, sizeof(idx), "%s/meta/data.mdb", b.dir);
    snprintf(saved, sizeof(saved), "%s/index-before-conflict.mdb", b.dir);
    REQUIRE(copy_file(idx, saved) == 0);
    REQUIRE(site_open(&b, NULL) == 0);
    CHECK_EQ_INT(engine_conflict_last(b.e), 0);
    REQUIRE(ship(&a, &b, &to_b) == 0); /* a's concurrent put: conflict 1 at b */
    CHECK_EQ_INT(engine_conflict_last(b.e), 1);
    REQUIRE(engine_conflict_get(b.e, 1, &before) == 0);
    current_id(b.e, "b", "k", cur);

    /* crash image: the index from before the decision, the WAL with it */
    site_close(&b);
    REQUIRE(copy_file(saved, idx) == 0);
    REQUIRE(site_open(&b, &replayed) == 0);
    CHECK_EQ_INT(replayed, 1);
    CHECK_EQ_INT(engine_conflict_last(b.e), 1);
    REQUIRE(engine_conflict_get(b.e, 1, &after) == 0);
    {
        mrd_json *x = NULL, *y = NULL;
        size_t pos = 0;
        REQUIRE(mrd_json_parse(before.data, before.len, &x, &pos) == 0);
        REQUIRE(mrd_json_parse(after.data, after.len, &y, &pos) == 0);
        CHECK_STR(mrd_json_get_str(mrd_json_get(y, "winner"), "version_id", ""), cur);
        CHECK_STR(mrd_json_get_str(mrd_json_get(y, "winner"), "version_id", ""),
                  mrd_json_get_str(mrd_json_get(x, "winner"), "version_id", "?"));
        CHECK_STR(mrd_json_get_str(mrd_json_get(y, "loser"), "version_id", ""),
                  strcmp(cur, va) == 0 ? vb : va);
        CHECK_STR(mrd_json_get_str(mrd_json_get(y, "loser"), "vv_text", ""),
                  mrd_json_get_str(mrd_json_get(x, "loser"), "vv_text", "?"));
        mrd_json_free(x);
        mrd_json_free(y);
    }
    /* a clean restart keeps it, and the next conflict gets number 2 */
    site_close(&b);
    REQUIRE(site_open(&b, &replayed) == 0);
    CHECK_EQ_INT(replayed, 0);
    CHECK_EQ_INT(engine_conflict_last(b.e), 1);
    REQUIRE(put_wait(a.e, "b", "k2", 500, 30) == 0);
    REQUIRE(put_wait(b.e, "b", "k2", 600, 40) == 0);
    REQUIRE(ship(&a, &b, &to_b) == 0);
    CHECK_EQ_INT(engine_conflict_last(b.e), 2);
    CHECK_EQ_INT(engine_conflict_get(b.e, 3, &after), MRD_ENOTFOUND);
    mrd_buf_free(&before);
    mrd_buf_free(&after);
    site_free(&a);
    site_free(&b);
}

/* ---- multipart complete ------------------------------------------------------ */

static int shard_count;

static int
count_shards(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    const char *dot = strrchr(path + ftw->base, '.');

    /* Empty files are the store's pre-created files for future writes. */
    if (flag == FTW_F && dot && dot[1] >= '0' && dot[1] <= '9' && strstr(path, "/obj/") &&
        sb->st_size > 0)
        shard_count++;
    return 0;
}

static int
shards(site *s)
{
    shard_count = 0;
    nftw(s->dir, count_shards, 16, FTW_PHYS);
    return shard_count;
}

/* Writes bytes [off, off+len) of object pattern `seed` as part num of up1. */
static int
put_part(engine *e, uint32_t num, size_t off, size_t len, unsigned char seed, store_put_result *res)
{
    store_writer *w;
    store_mpu_part p;
    unsigned char *buf = malloc(len);
    char vid[32];
    int rc;

    for (size_t i = 0; i < len; i++)
        buf[i] = (unsigned char)(seed + (off + i) * 31);
    snprintf(vid, sizeof(vid), "up1.%u", num);
    rc = store_writer_open(engine_store(e), "b", "k", vid, 0, &w);
    if (rc == 0 && (rc = store_writer_write(w, buf, len)) != 0)
        store_writer_abort(w);
    if (rc == 0)
        rc = store_writer_finish(w, res);
    free(buf);
    if (rc != 0)
        return rc;
    p = (store_mpu_part){
        .number = num, .size = res->size, .layout = res->layout, .layout_len = res->layout_len};
    memcpy(p.md5, res->md5, 16);
    return store_mpu_part_put(engine_store(e), "b", "k", "up1", &p);
}

static void
test_multipart_complete_like_a_put_and_replayed(void)
{
    site s;
    waiter w[2];
    store_put_result r1, r2, r3;
    store_part_ref refs[2];
    engine_put p;
    void *lay = NULL, *blob = NULL;
    size_t lay_len = 0, blen = 0;
    char vid[25], a[600], b[600];
    uint64_t replayed = 0;
    store_version_rec *rec = NULL;

    memset(w, 0, sizeof(w));
    site_init(&s);
    REQUIRE(site_open(&s, NULL) == 0);
    REQUIRE(create_bucket(s.e, "b") == 0);
    REQUIRE(put_object(s.e, "b", "k", 40000, 1, &w[0]) == 0); /* overwritten below */
    REQUIRE(wait_for(s.e, w, 1) == 0);
    REQUIRE(store_mpu_create(engine_store(s.e), "b", "k", "up1", "", 0) == 0);
    REQUIRE(put_part(s.e, 1, 0, 50000, 5, &r1) == 0);
    REQUIRE(put_part(s.e, 2, 50000, 20000, 5, &r2) == 0);
    REQUIRE(put_part(s.e, 3, 0, 30000, 9, &r3) == 0); /* not used by the complete */
    CHECK_EQ_INT(shards(&s), 4 * 6);
    site_close(&s);
    snprintf(a, sizeof(a), "%s/meta/data.mdb", s.dir);
    snprintf(b, sizeof(b), "%s/index-before.mdb", s.dir);
    REQUIRE(copy_file(a, b) == 0);

    REQUIRE(site_open(&s, NULL) == 0);
    refs[0] = (store_part_ref){r1.layout, r1.layout_len};
    refs[1] = (store_part_ref){r2.layout, r2.layout_len};
    REQUIRE(store_layout_compose(refs, 2, &lay, &lay_len) == 0);
    REQUIRE(store_mpu_complete_begin(engine_store(s.e), "b", "k", "up1") == 0);
    engine_version_id_new(s.e, vid);
    p = (engine_put){"b",   "k",  vid, 70000, "0123456789abcdef0123456789abcdef-2",
                     "x/y", NULL, 0,   lay,   lay_len};
    REQUIRE(engine_multipart_complete(s.e, &p, "up1", 2, on_done, &w[1]) == 0);
    REQUIRE(wait_for(s.e, &w[1], 1) == 0);
    CHECK_EQ_INT(w[1].status, 0);
    CHECK(object_matches(s.e, "b", "k", 70000, 5));
    REQUIRE(store_index_get(engine_store(s.e), "b", "k", NULL, &rec) == 0);
    CHECK_STR(store_version_rec_get(rec)->etag, "0123456789abcdef0123456789abcdef-2");
    store_version_rec_free(rec);
    CHECK_EQ_INT(store_mpu_get(engine_store(s.e), "b", "k", "up1", &blob, &blen), MRD_ENOTFOUND);
    /* the overwritten version and the unused part 3 are freed: parts 1, 2 stay */
    CHECK_EQ_INT(shards(&s), 2 * 6);
    site_close(&s);

    /* crash image: the index from before the complete; replay finishes it */
    REQUIRE(copy_file(b, a) == 0);
    REQUIRE(site_open(&s, &replayed) == 0);
    CHECK_EQ_INT(replayed, 1);
    CHECK(object_matches(s.e, "b", "k", 70000, 5));
    CHECK_EQ_INT(store_mpu_get(engine_store(s.e), "b", "k", "up1", &blob, &blen), MRD_ENOTFOUND);
    CHECK_EQ_INT(shards(&s), 2 * 6);
    site_free(&s);
    store_put_result_clear(&r1);
    store_put_result_clear(&r2);
    store_put_result_clear(&r3);
    free(lay);
}

/* The tag set of the current version of b/k ("" when none). */
static int
tags_find(void *ud, const char *key, const char *value)
{
    if (strcmp(key, ENGINE_META_TAGGING) == 0)
        snprintf(ud, 64, "%s", value);
    return 0;
}

static void
current_tags(engine *e, const char *b, const char *k, char out[64])
{
    store_version_rec *rec = NULL;
    const store_version *v;

    out[0] = '\0';
    if (store_index_get(engine_store(e), b, k, NULL, &rec) != 0)
        return;
    v = store_version_rec_get(rec);
    engine_meta_each(v->user_meta, v->user_meta_len, tags_find, out);
    store_version_rec_free(rec);
}

static int
tags_wait(engine *e, const char *b, const char *k, const char *tagging)
{
    waiter w = {0, 0};
    int rc = engine_object_tags(e, b, k, tagging, on_done, &w);

    if (rc != 0)
        return rc;
    return wait_for(e, &w, 1) == 0 ? w.status : -1;
}

static void
test_tags_in_place_replicated_last_writer_wins(void)
{
    site a, b;
    uint64_t to_b = 0, to_a = 0;
    char v0[25], va[25], vb[25], ta[64], tb[64];

    pair_open(&a, &b);
    REQUIRE(create_bucket(a.e, "b") == 0);
    REQUIRE(put_wait(a.e, "b", "k", 300000, 7) == 0); /* striped, not inline */
    current_id(a.e, "b", "k", v0);
    REQUIRE(ship(&a, &b, &to_b) == 0);
    CHECK_EQ_INT(tags_wait(a.e, "b", "missing", "x=1"), -ENOENT);
    CHECK_EQ_INT(tags_wait(a.e, "nob", "k", "x=1"), MRD_ENOTFOUND);

    /* in place: same version, same data */
    REQUIRE(tags_wait(a.e, "b", "k", "x=1") == 0);
    current_tags(a.e, "b", "k", ta);
    CHECK_STR(ta, "x=1");
    current_id(a.e, "b", "k", va);
    CHECK_STR(va, v0);
    CHECK(object_matches(a.e, "b", "k", 300000, 7));
    REQUIRE(ship(&a, &b, &to_b) == 0);
    current_tags(b.e, "b", "k", tb);
    CHECK_STR(tb, "x=1");

    /* concurrent replacements at both sites (neither has seen the other's)
     * settle on one everywhere: the later (hlc, site) */
    REQUIRE(tags_wait(a.e, "b", "k", "who=a") == 0);
    usleep(5000); /* b's stamp a few ms later on the wall clock: b's wins */
    REQUIRE(tags_wait(b.e, "b", "k", "who=b") == 0);
    REQUIRE(ship(&a, &b, &to_b) == 0);
    REQUIRE(ship(&b, &a, &to_a) == 0);
    current_tags(a.e, "b", "k", ta);
    current_tags(b.e, "b", "k", tb);
    CHECK_STR(ta, tb);
    CHECK_STR(ta, "who=b");
    /* removing them replicates too; the version and data never changed */
    REQUIRE(tags_wait(a.e, "b", "k", "") == 0);
    REQUIRE(ship(&a, &b, &to_b) == 0);
    current_tags(b.e, "b", "k", tb);
    CHECK_STR(tb, "");
    current_id(b.e, "b", "k", vb);
    CHECK_STR(vb, v0);
    CHECK(object_matches(a.e, "b", "k", 300000, 7)); /* (b holds only the record here) */
    /* shipping again is a no-op (exactly once) */
    REQUIRE(ship(&a, &b, &to_b) == 0);
    REQUIRE(ship(&b, &a, &to_a) == 0);
    current_tags(a.e, "b", "k", ta);
    CHECK_STR(ta, "");
    site_free(&a);
    site_free(&b);
}

/* ---- versioning ------------------------------------------------------------ */

static int
config_wait(engine *e, const char *b, const engine_bucket_conf *c)
{
    waiter w = {0, 0};

    if (engine_bucket_config(e, b, c, on_done, &w) != 0 || wait_for(e, &w, 1) != 0)
        return -1;
    return w.status;
}

static int
versioning_wait(engine *e, const char *b, int state)
{
    return config_wait(e, b, &(engine_bucket_conf){.has_versioning = 1, .versioning = state});
}

static int
versioning_of(engine *e, const char *b)
{
    void *blob = NULL;
    size_t len = 0;
    int state = -1;

    if (store_bucket_get(engine_store(e), b, &blob, &len) == 0)
        engine_bucket_versioning(blob, len, &state);
    free(blob);
    return state;
}

static int
delete_version_wait(engine *e, const char *b, const char *k, const char *vid)
{
    waiter w = {0, 0};

    if (engine_object_delete_version(e, b, k, vid, on_done, &w) != 0 || wait_for(e, &w, 1) != 0)
        return -1;
    return w.status;
}

/* Versions of a key that are not tombstones. */
static int
live_versions(const vlist *l)
{
    int n = 0;

    for (int i = 0; i < l->n && i < 8; i++)
        n += !(l->flags[i] & ENGINE_VF_TOMBSTONE);
    return n + (l->n > 8 ? l->n - 8 : 0);
}

static int
vcount_cb(void *user, const char *key, const store_version *v)
{
    (void)key;
    if (!(v->flags & ENGINE_VF_TOMBSTONE))
        (*(int *)user)++;
    return 0;
}

static int
count_versions(engine *e, const char *b)
{
    int n = 0;

    if (store_index_list(engine_store(e), b, NULL, NULL, NULL, STORE_LIST_VERSIONS, vcount_cb,
                         &n) != 0)
        return -1;
    return n;
}

/*
 * Versioning end to end at two sites: the configuration replicates, every
 * version of a versioned key is kept (far past HELD_MAX), a delete writes a
 * marker over them, removing the current version by id makes the previous
 * one current at both sites, a version removed by id before its put arrived
 * never appears, suspension makes null versions that replace each other,
 * and concurrent configuration changes settle the same way at both sites.
 */
static void
test_versioning_replicated(void)
{
    site a, b;
    uint64_t to_b = 0, to_a = 0;
    char first[25], last[25], ca[25], cb[25], vid[25];
    vlist l;
    int n;

    pair_open(&a, &b);
    REQUIRE(create_bucket(a.e, "v") == 0);
    CHECK_EQ_INT(versioning_of(a.e, "v"), ENGINE_VERSIONING_UNSET);
    REQUIRE(versioning_wait(a.e, "v", ENGINE_VERSIONING_ENABLED) == 0);
    REQUIRE(ship(&a, &b, &to_b) == 0);
    CHECK_EQ_INT(versioning_of(b.e, "v"), ENGINE_VERSIONING_ENABLED);

    /* 40 versions of one key: all kept, the newest current, none null */
    for (int i = 0; i < 40; i++) {
        REQUIRE(put_wait(a.e, "v", "k", 40 + (size_t)i, (unsigned char)i) == 0);
        if (i == 0)
            current_id(a.e, "v", "k", first);
    }
    current_id(a.e, "v", "k", last);
    CHECK_EQ_INT(count_versions(a.e, "v"), 40);
    REQUIRE(ship(&a, &b, &to_b) == 0);
    CHECK_EQ_INT(count_versions(b.e, "v"), 40);
    current_id(b.e, "v", "k", cb);
    CHECK_STR(cb, last);
    CHECK(object_matches(b.e, "v", "k", 79, 39));
    l = versions_of(b.e, "v", "k");
    CHECK_EQ_INT(l.flags[0] & (ENGINE_VF_NULL_VERSION | STORE_VF_DELETE_MARKER), 0);
    CHECK(l.flags[0] & STORE_VF_NONCURRENT);

    /* a delete writes a marker and keeps the versions */
    REQUIRE(delete_wait(a.e, "v", "k") == 0);
    REQUIRE(ship(&a, &b, &to_b) == 0);
    CHECK(key_is_gone(b.e, "v", "k"));
    CHECK_EQ_INT(count_versions(b.e, "v"), 41);
    current_id(b.e, "v", "k", cb);

    /* removing the marker by id at b: the last put is current again at both */
    REQUIRE(delete_version_wait(b.e, "v", "k", cb) == 0);
    current_id(b.e, "v", "k", cb);
    CHECK_STR(cb, last);
    REQUIRE(ship(&b, &a, &to_a) == 0);
    current_id(a.e, "v", "k", ca);
    CHECK_STR(ca, last);
    CHECK(object_matches(a.e, "v", "k", 79, 39));
    CHECK_EQ_INT(count_versions(a.e, "v"), 40);

    /* removing the current version makes the previous one current */
    REQUIRE(delete_version_wait(a.e, "v", "k", last) == 0);
    CHECK(object_matches(a.e, "v", "k", 78, 38));
    REQUIRE(ship(&a, &b, &to_b) == 0);
    CHECK(object_matches(b.e, "v", "k", 78, 38));
    /* and removing a non-current one leaves the current alone */
    REQUIRE(delete_version_wait(b.e, "v", "k", first) == 0);
    REQUIRE(ship(&b, &a, &to_a) == 0);
    CHECK(object_matches(a.e, "v", "k", 78, 38));
    CHECK_EQ_INT(count_versions(a.e, "v"), 38);
    CHECK_EQ_INT(count_versions(b.e, "v"), 38);

    /* removed at b before its put arrived: never appears (the tombstone) */
    REQUIRE(put_wait(a.e, "v", "late", 30, 9) == 0);
    current_id(a.e, "v", "late", vid);
    REQUIRE(delete_version_wait(b.e, "v", "late", vid) == 0);
    REQUIRE(ship(&a, &b, &to_b) == 0);
    l = versions_of(b.e, "v", "late");
    CHECK_EQ_INT(live_versions(&l), 0);
    CHECK(key_is_gone(b.e, "v", "late"));
    REQUIRE(ship(&b, &a, &to_a) == 0);
    CHECK(key_is_gone(a.e, "v", "late"));
    l = versions_of(a.e, "v", "late");
    CHECK_EQ_INT(live_versions(&l), 0);

    /* suspended: null versions replace each other, real ones stay */
    REQUIRE(versioning_wait(a.e, "v", ENGINE_VERSIONING_SUSPENDED) == 0);
    REQUIRE(put_wait(a.e, "v", "k", 10, 1) == 0);
    REQUIRE(put_wait(a.e, "v", "k", 11, 2) == 0);
    REQUIRE(ship(&a, &b, &to_b) == 0);
    CHECK_EQ_INT(versioning_of(b.e, "v"), ENGINE_VERSIONING_SUSPENDED);
    CHECK_EQ_INT(count_versions(a.e, "v"), 39);
    CHECK_EQ_INT(count_versions(b.e, "v"), 39);
    CHECK(object_matches(b.e, "v", "k", 11, 2));
    {
        store_version_rec *rec = NULL;
        REQUIRE(engine_version_lookup(b.e, "v", "k", "null", &rec) == 0);
        CHECK(store_version_rec_get(rec)->size == 11);
        CHECK(store_version_rec_get(rec)->flags & ENGINE_VF_NULL_VERSION);
        store_version_rec_free(rec);
    }

    /* concurrent configuration changes: both sites settle on the same */
    REQUIRE(versioning_wait(a.e, "v", ENGINE_VERSIONING_ENABLED) == 0);
    REQUIRE(versioning_wait(b.e, "v", ENGINE_VERSIONING_SUSPENDED) == 0);
    REQUIRE(ship(&a, &b, &to_b) == 0);
    REQUIRE(ship(&b, &a, &to_a) == 0);
    n = versioning_of(a.e, "v");
    CHECK(n == ENGINE_VERSIONING_ENABLED || n == ENGINE_VERSIONING_SUSPENDED);
    CHECK_EQ_INT(versioning_of(b.e, "v"), n);
    site_free(&a);
    site_free(&b);
}

/*
 * Anti-entropy delivers records in any order and again: a removal by id
 * that arrives that way removes the version, and the version's own put,
 * sent again afterwards, is dropped by the tombstone.
 */
static void
test_versioning_resync_keeps_removed_version_dead(void)
{
    site a, b;
    uint64_t to_b = 0;
    char v1[25], cb[25];
    range all;
    waiter w = {0, 0};

    pair_open(&a, &b);
    REQUIRE(create_bucket(a.e, "r") == 0);
    REQUIRE(versioning_wait(a.e, "r", ENGINE_VERSIONING_ENABLED) == 0);
    REQUIRE(put_wait(a.e, "r", "k", 20, 1) == 0);
    current_id(a.e, "r", "k", v1);
    REQUIRE(put_wait(a.e, "r", "k", 21, 2) == 0);
    REQUIRE(ship(&a, &b, &to_b) == 0);
    CHECK_EQ_INT(count_versions(b.e, "r"), 2);

    REQUIRE(delete_version_wait(a.e, "r", "k", v1) == 0);
    /* everything a ever wrote, puts included, as anti-entropy records */
    REQUIRE(range_read(a.e, 1, &all) == 0);
    REQUIRE(engine_resync_apply(b.e, 1, all.recs, all.n, on_done, &w) == 0);
    REQUIRE(wait_for(b.e, &w, 1) == 0);
    CHECK_EQ_INT(w.status, 0);
    CHECK_EQ_INT(count_versions(b.e, "r"), 1);
    current_id(b.e, "r", "k", cb);
    CHECK(strcmp(cb, v1) != 0);
    CHECK(object_matches(b.e, "r", "k", 21, 2));
    /* and once more, then the normal stream: nothing comes back */
    w.done = 0;
    REQUIRE(engine_resync_apply(b.e, 1, all.recs, all.n, on_done, &w) == 0);
    REQUIRE(wait_for(b.e, &w, 1) == 0);
    REQUIRE(ship(&a, &b, &to_b) == 0);
    CHECK_EQ_INT(count_versions(b.e, "r"), 1);
    CHECK_EQ_INT(count_versions(a.e, "r"), 1);
    range_clear(&all);
    site_free(&a);
    site_free(&b);
}

/* 1 when b holds a record of bucket name. */
static int
bucket_exists(engine *e, const char *name)
{
    void *blob = NULL;
    size_t len = 0;
    int rc = store_bucket_get(engine_store(e), name, &blob, &len);

    free(blob);
    return rc == 0;
}

/* Applies the one record of r of the given type as anti-entropy delivers
 * it; its status. */
static int
resync_one(engine *e, uint32_t origin, const range *r, uint16_t type)
{
    waiter w = {0, 0};

    for (size_t i = 0; i < r->n; i++) {
        if (r->recs[i].type != type)
            continue;
        if (engine_resync_apply(e, origin, &r->recs[i], 1, on_done, &w) != 0 ||
            wait_for(e, &w, 1) != 0)
            return -1;
        return w.status;
    }
    return -1;
}

/*
 * A peer's put into a bucket this site has no record of brings the bucket
 * back only when the version is stored: a put that anti-entropy sends again
 * for a version removed here (its tombstone drops it) leaves a bucket
 * deleted here deleted. A put of a version this site never saw still brings
 * it back, so that write is not lost.
 */
static void
test_dropped_put_does_not_revive_bucket(void)
{
    site a, b;
    uint64_t to_b = 0;
    char v1[25];
    range all;
    waiter w = {0, 0};

    pair_open(&a, &b);
    REQUIRE(create_bucket(a.e, "d") == 0);
    REQUIRE(versioning_wait(a.e, "d", ENGINE_VERSIONING_ENABLED) == 0);
    REQUIRE(put_wait(a.e, "d", "k", 20, 1) == 0);
    current_id(a.e, "d", "k", v1);
    REQUIRE(ship(&a, &b, &to_b) == 0);
    REQUIRE(delete_version_wait(b.e, "d", "k", v1) == 0);
    REQUIRE(engine_bucket_delete(b.e, "d", on_done, &w) == 0);
    REQUIRE(wait_for(b.e, &w, 1) == 0);
    REQUIRE(w.status == 0);
    CHECK(!bucket_exists(b.e, "d"));

    REQUIRE(range_read(a.e, 1, &all) == 0);
    CHECK_EQ_INT(resync_one(b.e, 1, &all, WAL_REC_OBJECT_PUT), 0);
    CHECK(!bucket_exists(b.e, "d"));
    CHECK_EQ_INT(count_versions(b.e, "d"), 0);
    range_clear(&all);

    /* a version b never held: stored, and its bucket with it */
    REQUIRE(put_wait(a.e, "d", "k2", 21, 2) == 0);
    REQUIRE(range_read(a.e, to_b + 1, &all) == 0);
    CHECK_EQ_INT(resync_one(b.e, 1, &all, WAL_REC_OBJECT_PUT), 0);
    CHECK(bucket_exists(b.e, "d"));
    CHECK(object_matches(b.e, "d", "k2", 21, 2));
    range_clear(&all);
    site_free(&a);
    site_free(&b);
}

static int
acl_wait(engine *e, const char *b, int acl)
{
    return config_wait(e, b, &(engine_bucket_conf){.has_acl = 1, .acl = acl});
}

/* The ACL register and the anti-entropy bytes of a bucket's blob. */
static int
acl_of(engine *e, const char *b, mrd_buf *bytes)
{
    void *blob = NULL;
    size_t len = 0;
    int acl = -1;

    if (store_bucket_get(engine_store(e), b, &blob, &len) == 0 &&
        engine_bucket_acl(blob, len, &acl) == 0 && bytes)
        engine_bucket_config_bytes(blob, len, bytes);
    free(blob);
    return acl;
}

/*
 * The canned ACL is a third register: it replicates, leaves versioning
 * alone (and is left alone by it), enters the anti-entropy bytes, and
 * concurrent changes at two sites settle on the same value at both.
 */
static void
test_acl_register_replicated(void)
{
    site a, b;
    uint64_t to_b = 0, to_a = 0;
    mrd_buf ba = {0}, bb = {0};
    int n;

    pair_open(&a, &b);
    REQUIRE(create_bucket(a.e, "acl") == 0);
    REQUIRE(ship(&a, &b, &to_b) == 0);
    CHECK_EQ_INT(acl_of(b.e, "acl", &bb), ENGINE_ACL_PRIVATE);
    CHECK_EQ_INT((int)bb.len, 0); /* never configured: no bytes */
    CHECK(engine_bucket_config(a.e, "acl", &(engine_bucket_conf){.has_acl = 1, .acl = 7}, on_done,
                               NULL) == MRD_EINVAL);

    REQUIRE(acl_wait(b.e, "acl", ENGINE_ACL_PUBLIC_READ) == 0);
    REQUIRE(versioning_wait(a.e, "acl", ENGINE_VERSIONING_ENABLED) == 0);
    REQUIRE(ship(&a, &b, &to_b) == 0);
    REQUIRE(ship(&b, &a, &to_a) == 0);
    CHECK_EQ_INT(acl_of(a.e, "acl", &ba), ENGINE_ACL_PUBLIC_READ);
    CHECK_EQ_INT(acl_of(b.e, "acl", &bb), ENGINE_ACL_PUBLIC_READ);
    CHECK_EQ_INT(versioning_of(b.e, "acl"), ENGINE_VERSIONING_ENABLED);
    CHECK(ba.len > 0 && ba.len == bb.len && memcmp(ba.data, bb.data, ba.len) == 0);

    /* concurrent: both sites settle on the same ACL and the same bytes */
    REQUIRE(acl_wait(a.e, "acl", ENGINE_ACL_PRIVATE) == 0);
    REQUIRE(acl_wait(b.e, "acl", ENGINE_ACL_PUBLIC_READ) == 0);
    REQUIRE(ship(&a, &b, &to_b) == 0);
    REQUIRE(ship(&b, &a, &to_a) == 0);
    n = acl_of(a.e, "acl", &ba);
    CHECK_EQ_INT(acl_of(b.e, "acl", &bb), n);
    CHECK(ba.len > 0 && ba.len == bb.len && memcmp(ba.data, bb.data, ba.len) == 0);
    CHECK_EQ_INT(versioning_of(a.e, "acl"), ENGINE_VERSIONING_ENABLED);
    mrd_buf_free(&ba);
    mrd_buf_free(&bb);
    site_free(&a);
    site_free(&b);
}

/* ---- per-loop completion queues ---------------------------------------- */

/* A "loop" thread: its own queue, bound; it issues pool work and mutations
 * and records on which thread each callback ran. */
typedef struct cq_loop {
    engine *e;
    engine_cq *q;
    int idx;
    pthread_t self;
    int done_run, done_mut, done_nested, wrong_thread;
} cq_loop;

static void
cq_work(void *arg)
{
    (void)arg;
}

static void
cq_done(void *arg)
{
    cq_loop *l = arg;

    l->wrong_thread += !pthread_equal(pthread_self(), l->self);
    l->done_run++;
}

static void
cq_mut_done(void *ud, int status)
{
    cq_loop *l = ud;

    l->wrong_thread += !pthread_equal(pthread_self(), l->self) || status != 0;
    l->done_mut++;
}

static void
cq_nested_done(void *ud, int status)
{
    cq_loop *l = ud;

    l->wrong_thread += !pthread_equal(pthread_self(), l->self) || status != 0;
    l->done_nested++;
}

/* Runs on a worker: a mutation submitted from pool work answers to the
 * queue of the loop that submitted the work. */
static void
cq_nested_work(void *arg)
{
    cq_loop *l = arg;
    char name[32];

    snprintf(name, sizeof(name), "nested-%d", l->idx);
    if (engine_bucket_create(l->e, name, cq_nested_done, l) != 0)
        l->wrong_thread += 100;
}

static void *
cq_loop_main(void *arg)
{
    cq_loop *l = arg;
    char name[32];
    int spins = 0;

    l->self = pthread_self();
    engine_cq_bind(l->q);
    snprintf(name, sizeof(name), "loop-%d", l->idx);
    for (int i = 0; i < 50; i++)
        if (engine_run(l->e, cq_work, cq_done, l) != 0)
            l->wrong_thread += 100;
    if (engine_bucket_create(l->e, name, cq_mut_done, l) != 0 ||
        engine_run(l->e, cq_nested_work, NULL, l) != 0)
        l->wrong_thread += 100;
    while ((l->done_run < 50 || !l->done_mut || !l->done_nested) && spins++ < 1000) {
        struct pollfd pfd = {.fd = engine_cq_fd(l->q), .events = POLLIN};
        if (poll(&pfd, 1, 10) > 0)
            engine_cq_poll(l->q);
    }
    engine_cq_bind(NULL);
    return NULL;
}

static void
test_cq_callbacks_return_to_their_loop(void)
{
    site s;
    cq_loop l[3];
    waiter w = {0};

    site_init(&s);
    REQUIRE(site_open(&s, NULL) == 0);
    memset(l, 0, sizeof(l));
    for (int i = 0; i < 3; i++) {
        l[i].e = s.e;
        l[i].idx = i;
        REQUIRE(engine_cq_new(s.e, &l[i].q) == 0);
        CHECK(engine_cq_fd(l[i].q) >= 0 && engine_cq_fd(l[i].q) != engine_fd(s.e));
    }
    CHECK(engine_cq_new(NULL, &l[0].q) == MRD_EINVAL);
    for (int i = 0; i < 3; i++)
        REQUIRE(pthread_create(&l[i].self, NULL, cq_loop_main, &l[i]) == 0);
    for (int i = 0; i < 3; i++)
        pthread_join(l[i].self, NULL);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(l[i].done_run, 50);
        CHECK_EQ_INT(l[i].done_mut, 1);
        CHECK_EQ_INT(l[i].done_nested, 1);
        CHECK_EQ_INT(l[i].wrong_thread, 0);
    }
    /* nothing came to the default queue; an unbound thread still uses it */
    CHECK_EQ_INT(engine_poll(s.e), 0);
    REQUIRE(engine_bucket_create(s.e, "default-q", on_done, &w) == 0);
    CHECK_EQ_INT(wait_for(s.e, &w, 1), 0);
    CHECK_EQ_INT(w.status, 0);
    /* a callback still queued on a loop's queue runs at engine_close */
    engine_cq_bind(l[0].q);
    l[0].self = pthread_self();
    REQUIRE(engine_run(s.e, cq_work, cq_done, &l[0]) == 0);
    engine_cq_bind(NULL);
    site_close(&s);
    CHECK_EQ_INT(l[0].done_run, 51);
    CHECK_EQ_INT(l[0].wrong_thread, 0);
    site_free(&s);
}

/* The stamp of bucket/key's current version, 0 if none. */
static uint64_t
version_hlc(engine *e, const char *b, const char *k)
{
    store_version_rec *rec = NULL;
    uint64_t h = 0;

    if (store_index_get(engine_store(e), b, k, NULL, &rec) == 0)
        h = store_version_rec_get(rec)->hlc;
    store_version_rec_free(rec);
    return h;
}

/* The stored HLC floor ("engine.hlc"), 0 if none. */
static uint64_t
stored_hlc(engine *e)
{
    void *val = NULL;
    size_t len = 0;
    char buf[32] = "0";

    if (store_meta_get(engine_store(e), "engine.hlc", &val, &len) == 0 && len < sizeof(buf)) {
        memcpy(buf, val, len);
        buf[len] = '\0';
    }
    free(val);
    return strtoull(buf, NULL, 10);
}

/* Local stamps grow with LSN across restarts: every commit stores the
 * highest local stamp, replay restores it for the records it commits, and
 * a reopened engine stamps above it even when its wall clock is behind. */
static void
test_hlc_floor_survives_restart(void)
{
    site s;
    uint64_t h1, ahead;
    char a[600], b[600];
    char val[32];

    site_init(&s);
    REQUIRE(site_open(&s, NULL) == 0);
    REQUIRE(create_bucket(s.e, "b") == 0);
    site_close(&s);
    snprintf(a, sizeof(a), "%s/meta/data.mdb", s.dir);
    snprintf(b, sizeof(b), "%s/index-early.mdb", s.dir);
    REQUIRE(copy_file(a, b) == 0);

    REQUIRE(site_open(&s, NULL) == 0);
    REQUIRE(put_wait(s.e, "b", "k0", 10, 1) == 0);
    REQUIRE(put_wait(s.e, "b", "k1", 10, 2) == 0);
    h1 = version_hlc(s.e, "b", "k1");
    CHECK(h1 > version_hlc(s.e, "b", "k0"));
    CHECK_EQ_INT(stored_hlc(s.e), h1);
    site_close(&s);

    /* crash image: the index from before the puts; replay restores it */
    REQUIRE(copy_file(b, a) == 0);
    REQUIRE(site_open(&s, NULL) == 0);
    CHECK_EQ_INT(stored_hlc(s.e), h1);
    /* as if the last run had stamped an hour ahead of this clock */
    ahead = h1 + ((uint64_t)3600000 << MRD_HLC_LOGICAL_BITS);
    snprintf(val, sizeof(val), "%llu", (unsigned long long)ahead);
    REQUIRE(store_meta_put(engine_store(s.e), "engine.hlc", val, strlen(val)) == 0);
    site_close(&s);
    REQUIRE(site_open(&s, NULL) == 0);
    REQUIRE(put_wait(s.e, "b", "k2", 10, 3) == 0);
    CHECK(version_hlc(s.e, "b", "k2") > ahead);
    CHECK_EQ_INT(stored_hlc(s.e), version_hlc(s.e, "b", "k2"));
    site_free(&s);
}

/* A restart keeps the WAL segments a lagging peer still needs: its saved
 * cursor is registered before the open lets retention run (before, the
 * open's retention saw no peer and kept only the newest segment, so the
 * peer could only be resynced). That holds for a peer added at run time
 * (not in the file) too, and a peer removed is no longer held for. */
static void
test_wal_keeps_a_lagging_peers_records_across_restart(void)
{
    site s;
    wal_status st;
    wal_peer_status ps;
    uint32_t segs;

    site_init_as(&s, 7, 8);
    s.conf->wal_segment_bytes = 4096;
    REQUIRE(site_open(&s, NULL) == 0);
    REQUIRE(engine_repl_origin_add(s.e, 9) == 0);  /* joined at run time */
    REQUIRE(engine_repl_origin_add(s.e, 10) == 0); /* and left */
    REQUIRE(engine_repl_origin_remove(s.e, 10) == 0);
    REQUIRE(create_bucket(s.e, "b") == 0);
    for (int i = 0; i < 60; i++) {
        char k[16];
        snprintf(k, sizeof(k), "k%d", i);
        REQUIRE(put_wait(s.e, "b", k, 10, (unsigned char)i) == 0);
    }
    REQUIRE(wal_get_status(engine_wal(s.e), &st) == 0);
    segs = st.segments;
    CHECK(segs > 2);
    CHECK_EQ_INT(st.first_lsn, 1);
    site_close(&s);

    REQUIRE(site_open(&s, NULL) == 0);
    REQUIRE(wal_get_status(engine_wal(s.e), &st) == 0);
    CHECK_EQ_INT(st.first_lsn, 1);
    CHECK_EQ_INT(st.segments, segs);
    REQUIRE(wal_cursor_get(engine_wal(s.e), 8, &ps) == 0);
    CHECK_EQ_INT(ps.acked_lsn, 0);
    CHECK_EQ_INT(ps.needs_resync, 0);
    REQUIRE(wal_cursor_get(engine_wal(s.e), 9, &ps) == 0);
    CHECK_EQ_INT(ps.acked_lsn, 0);
    CHECK_EQ_INT(wal_cursor_get(engine_wal(s.e), 10, &ps), MRD_ENOTFOUND);
    site_free(&s);
}

static const test_case tests[] = {
    TEST(test_hlc_floor_survives_restart),
    TEST(test_wal_keeps_a_lagging_peers_records_across_restart),
    TEST(test_cq_callbacks_return_to_their_loop),
    TEST(test_versioning_replicated),
    TEST(test_versioning_resync_keeps_removed_version_dead),
    TEST(test_dropped_put_does_not_revive_bucket),
    TEST(test_acl_register_replicated),
    TEST(test_tags_in_place_replicated_last_writer_wins),
    TEST(test_mutations_and_preconditions),
    TEST(test_overwrite_frees_old_data_and_concurrent_puts_order),
    TEST(test_recovery_replays_missing_tail_idempotently),
    TEST(test_multipart_complete_like_a_put_and_replayed),
    TEST(test_repl_put_arrives_with_same_version),
    TEST(test_repl_same_range_twice_is_noop),
    TEST(test_repl_concurrent_puts_converge_with_conflict_kept),
    TEST(test_conflict_log_rebuilt_by_replay),
    TEST(test_repl_delete_marker_hides_key),
    TEST(test_repl_rejects_bad_ranges),
    TEST(test_repl_pipelined_ranges),
    TEST(test_repl_marker_above_records_in_flight_sticks),
    TEST(test_repl_progress_survives_restart),
    {NULL, NULL},
};

TEST_MAIN(tests)
