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
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "test.h"

typedef struct site {
    char dir[256];
    mrd_config *conf;
    engine *e;
} site;

static void
site_init(site *s)
{
    char text[2048], err[256];
    int n;

    mrd_log_setup(MRD_LOG_WARN, "t");
    snprintf(s->dir, sizeof(s->dir), "/tmp/engine_test.XXXXXX");
    if (!mkdtemp(s->dir))
        abort();
    n = snprintf(text, sizeof(text),
                 "[site]\nid = 7\nname = t\n[listen]\ns3 = 127.0.0.1:1\n"
                 "replication = 127.0.0.1:2\nadmin = 127.0.0.1:3\n[store]\ndata_dirs = "
                 "%s/d0, %s/d1, %s/d2, %s/d3, %s/d4, %s/d5\nec_k = 4\nec_m = 2\n"
                 "meta_dir = %s/meta\n[replication]\nsecret = 0123456789abcdef0123\n[admin]\ntoken "
                 "= 0123456789abcdef0123\n"
                 "[user.u]\naccess_key = AKIAUNIT\nsecret_key = unit-secret\n",
                 s->dir, s->dir, s->dir, s->dir, s->dir, s->dir, s->dir);
    if (mrd_config_parse("t.ini", text, (size_t)n, &s->conf, err, sizeof(err)) != 0) {
        fprintf(stderr, "config: %s\n", err);
        abort();
    }
    s->e = NULL;
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
    o.store_flags = STORE_OPT_NO_INLINE; /* exercise shard files, not inline blobs */
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

static const test_case tests[] = {
    TEST(test_mutations_and_preconditions),
    TEST(test_overwrite_frees_old_data_and_concurrent_puts_order),
    TEST(test_recovery_replays_missing_tail_idempotently),
    {NULL, NULL},
};

TEST_MAIN(tests)
