/*
 * wal_test.c - unit tests for wal/ (segment format, group commit, recovery,
 * readers, cursors, retention, fault injection, and a SIGKILL crash loop).
 *
 * Corruption cases follow LevelDB's log_test.cc: each test writes a log
 * through the real API, damages the segment file at a computed offset, and
 * checks what wal_open makes of it. Offsets are computed from the format
 * (32-byte segment header, 24-byte record header + payload), so a format
 * change that the tests do not know about makes them fail.
 *
 * Each test gets a fresh directory under $TMPDIR (default /tmp), removed at
 * the end unless WAL_TEST_KEEP is set.
 */
#include "test.h"
#include "wal.h"
#include "wal.pb-c.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SEG_HDR 32
#define REC_HDR 24

/* ---- helpers ---------------------------------------------------------------- */

static char g_dir[512];

static int
rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void
dir_new(const char *name)
{
    const char *tmp = getenv("TMPDIR");

    snprintf(g_dir, sizeof(g_dir), "%s/wal_test_%s_XXXXXX", tmp && *tmp ? tmp : "/tmp", name);
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        exit(2);
    }
}

static void
dir_done(void)
{
    if (!getenv("WAL_TEST_KEEP"))
        nftw(g_dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static void
seg_path(uint64_t first, char *out, size_t n)
{
    snprintf(out, n, "%s/%016" PRIx64 ".wal", g_dir, first);
}

static void
payload_fill(uint8_t *p, size_t len, uint64_t seed)
{
    for (size_t j = 0; j < len; j++)
        p[j] = (uint8_t)(seed * 131 + j * 7 + (j >> 8));
}

/* Waits for one append callback. */
typedef struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done, status;
    uint64_t lsn;
} waiter;

static void
waiter_cb(void *ud, int status, uint64_t lsn)
{
    waiter *x = ud;

    pthread_mutex_lock(&x->mu);
    x->done = 1;
    x->status = status;
    x->lsn = lsn;
    pthread_cond_signal(&x->cv);
    pthread_mutex_unlock(&x->mu);
}

static void
waiter_init(waiter *x)
{
    memset(x, 0, sizeof(*x));
    pthread_mutex_init(&x->mu, NULL);
    pthread_cond_init(&x->cv, NULL);
}

static int
waiter_wait(waiter *x)
{
    pthread_mutex_lock(&x->mu);
    while (!x->done)
        pthread_cond_wait(&x->cv, &x->mu);
    pthread_mutex_unlock(&x->mu);
    return x->status;
}

/* Appends a record of that type and waits until durable; returns the
 * callback status (or the append error). */
static int
append_sync_type(wal *w, uint16_t type, const void *p, size_t len, uint64_t *lsn)
{
    waiter x;
    int rc;

    waiter_init(&x);
    rc = wal_append(w, type, p, len, waiter_cb, &x, NULL);
    if (rc != 0)
        return rc;
    rc = waiter_wait(&x);
    if (lsn)
        *lsn = x.lsn;
    return rc;
}

/* An object put (a record this site originated). */
static int
append_sync(wal *w, const void *p, size_t len, uint64_t *lsn)
{
    return append_sync_type(w, WAL_REC_OBJECT_PUT, p, len, lsn);
}

/* Appends record i (1-based) with payload len lens[i-1]. */
static int
append_n(wal *w, int n, const size_t *lens)
{
    uint8_t buf[70000];

    for (int i = 1; i <= n; i++) {
        uint64_t lsn;
        payload_fill(buf, lens[i - 1], (uint64_t)i);
        if (append_sync(w, buf, lens[i - 1], &lsn) != 0 || lsn != (uint64_t)i)
            return -1;
    }
    return 0;
}

/* Replayed records. */
typedef struct coll {
    int n;
    uint64_t lsn[4096];
    size_t len[4096];
    int bad; /* payload mismatch with payload_fill(lsn) */
} coll;

static int
coll_cb(void *ud, const wal_entry *e)
{
    coll *c = ud;
    uint8_t buf[70000];

    if (c->n < 4096) {
        c->lsn[c->n] = e->lsn;
        c->len[c->n] = e->len;
    }
    c->n++;
    payload_fill(buf, e->len, e->lsn);
    if (e->len > sizeof(buf) || memcmp(buf, e->payload, e->len) != 0)
        c->bad++;
    return 0;
}

static wal_opts
opts_base(void)
{
    wal_opts o;

    memset(&o, 0, sizeof(o));
    o.dir = g_dir;
    o.site_id = 7;
    return o;
}

static int
reopen(wal_opts *o, coll *c, wal_recovery *rep, wal **out)
{
    if (c)
        memset(c, 0, sizeof(*c));
    o->replay = coll_cb;
    o->replay_ud = c;
    o->report = rep;
    return wal_open(o, out);
}

static off_t
file_size(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 ? st.st_size : -1;
}

static void
poke(const char *path, off_t off, const void *bytes, size_t n)
{
    int fd = open(path, O_WRONLY);

    if (fd < 0 || pwrite(fd, bytes, n, off) != (ssize_t)n) {
        perror("poke");
        exit(2);
    }
    close(fd);
}

static void
flip(const char *path, off_t off)
{
    int fd = open(path, O_RDWR);
    uint8_t b;

    if (fd < 0 || pread(fd, &b, 1, off) != 1) {
        perror("flip");
        exit(2);
    }
    b ^= 0x40;
    if (pwrite(fd, &b, 1, off) != 1)
        exit(2);
    close(fd);
}

/* Offset of record k (1-based) in the first segment. */
static off_t
rec_off(const size_t *lens, int k)
{
    off_t off = SEG_HDR;

    for (int i = 1; i < k; i++)
        off += REC_HDR + (off_t)lens[i - 1];
    return off;
}

static const size_t LENS5[5] = {100, 2000, 5, 777, 300};

/* Writes records 1..5 in five separate batches (each waits for durable). */
static wal *
write5(void)
{
    wal_opts o = opts_base();
    wal *w = NULL;

    if (wal_open(&o, &w) != 0 || append_n(w, 5, LENS5) != 0) {
        wal_close(w);
        return NULL;
    }
    return w;
}

/* ---- basic ------------------------------------------------------------------ */

static void
EmptyOpenAppendReopen(void)
{
    wal_opts o = opts_base();
    wal_recovery rep;
    coll c;
    wal *w = NULL;
    wal_status st;

    dir_new("empty");
    REQUIRE(reopen(&o, &c, &rep, &w) == 0);
    CHECK_EQ_INT(c.n, 0);
    CHECK_EQ_INT(rep.last_lsn, 0);
    REQUIRE(wal_get_status(w, &st) == 0);
    CHECK_EQ_INT(st.next_lsn, 1);
    CHECK_EQ_INT(st.durable_lsn, 0);
    REQUIRE(append_n(w, 5, LENS5) == 0);
    wal_close(w);

    REQUIRE(reopen(&o, &c, &rep, &w) == 0);
    CHECK_EQ_INT(c.n, 5);
    CHECK_EQ_INT(c.bad, 0);
    for (int i = 0; i < 5 && i < c.n; i++) {
        CHECK_EQ_INT(c.lsn[i], i + 1);
        CHECK_EQ_INT(c.len[i], LENS5[i]);
    }
    CHECK_EQ_INT(rep.torn, 0);
    CHECK_EQ_INT(rep.first_lsn, 1);
    CHECK_EQ_INT(rep.last_lsn, 5);
    /* LSNs continue */
    uint64_t lsn = 0;
    uint8_t b[10];
    payload_fill(b, 10, 6);
    CHECK(append_sync(w, b, 10, &lsn) == 0);
    CHECK_EQ_INT(lsn, 6);
    wal_close(w);

    /* another site's WAL is refused */
    o.site_id = 8;
    CHECK_EQ_INT(reopen(&o, &c, &rep, &w), MRD_ECONFIG);
    CHECK(strstr(rep.error, "site") != NULL);
    dir_done();
}

static void
RecordRoundTrip(void)
{
    wal_opts o = opts_base();
    wal *w = NULL;
    waiter x;
    uint64_t lsn = 0;

    dir_new("record");
    REQUIRE(wal_open(&o, &w) == 0);

    Meridian__WalRecord rec = MERIDIAN__WAL_RECORD__INIT;
    Meridian__ObjectPut put = MERIDIAN__OBJECT_PUT__INIT;
    Meridian__VersionVector vv = MERIDIAN__VERSION_VECTOR__INIT;
    Meridian__VvEntry e1 = MERIDIAN__VV_ENTRY__INIT, *ents[1] = {&e1};
    Meridian__KeyValue kv = MERIDIAN__KEY_VALUE__INIT, *kvs[1] = {&kv};
    e1.site = 7;
    e1.counter = 42;
    vv.n_entries = 1;
    vv.entries = ents;
    kv.key = "color";
    kv.value = "blue";
    put.bucket = "b";
    put.key = "dir/obj";
    put.version_id = "v1";
    put.vv = &vv;
    put.hlc = 123456789;
    put.etag = "\"abc\"";
    put.size = 4096;
    put.content_type = "text/plain";
    put.n_user_meta = 1;
    put.user_meta = kvs;
    put.layout.data = (uint8_t *)"\x01\x02\x03";
    put.layout.len = 3;
    rec.body_case = MERIDIAN__WAL_RECORD__BODY_OBJECT_PUT;
    rec.object_put = &put;

    waiter_init(&x);
    REQUIRE(wal_append_record(w, &rec, waiter_cb, &x, &lsn) == 0);
    CHECK_EQ_INT(waiter_wait(&x), 0);
    CHECK_EQ_INT(x.lsn, lsn);

    /* a record with no body is refused and its callback never runs */
    Meridian__WalRecord empty = MERIDIAN__WAL_RECORD__INIT;
    waiter_init(&x);
    CHECK_EQ_INT(wal_append_record(w, &empty, waiter_cb, &x, NULL), MRD_EINVAL);

    wal_reader *r = NULL;
    wal_entry e;
    REQUIRE(wal_reader_open(w, lsn, &r) == 0);
    REQUIRE(wal_reader_next(r, &e) == 1);
    CHECK_EQ_INT(e.type, WAL_REC_OBJECT_PUT);
    Meridian__WalRecord *d = NULL;
    REQUIRE(wal_record_decode(e.type, e.payload, e.len, &d) == 0);
    CHECK_EQ_INT(d->format, WAL_RECORD_FORMAT);
    REQUIRE(d->body_case == MERIDIAN__WAL_RECORD__BODY_OBJECT_PUT);
    CHECK_STR(d->object_put->key, "dir/obj");
    CHECK_STR(d->object_put->etag, "\"abc\"");
    CHECK_EQ_INT(d->object_put->hlc, 123456789);
    CHECK_EQ_INT(d->object_put->size, 4096);
    REQUIRE(d->object_put->vv && d->object_put->vv->n_entries == 1);
    CHECK_EQ_INT(d->object_put->vv->entries[0]->counter, 42);
    REQUIRE(d->object_put->n_user_meta == 1);
    CHECK_STR(d->object_put->user_meta[0]->value, "blue");
    CHECK_EQ_INT(d->object_put->layout.len, 3);
    /* wrong type for the payload */
    Meridian__WalRecord *d2 = NULL;
    CHECK_EQ_INT(wal_record_decode(WAL_REC_BUCKET_CREATE, e.payload, e.len, &d2), MRD_ECORRUPT);

    /* replicated apply wraps the original bytes; a nested one is refused */
    uint8_t orig[512];
    size_t olen = meridian__wal_record__pack(d, orig);
    Meridian__ReplicatedApply ra = MERIDIAN__REPLICATED_APPLY__INIT;
    Meridian__WalRecord outer = MERIDIAN__WAL_RECORD__INIT;
    ra.origin_site = 3;
    ra.origin_lsn = 99;
    ra.original_type = WAL_REC_OBJECT_PUT;
    ra.original.data = orig;
    ra.original.len = olen;
    outer.body_case = MERIDIAN__WAL_RECORD__BODY_REPLICATED_APPLY;
    outer.replicated_apply = &ra;
    outer.format = 1;
    uint8_t packed[1024];
    size_t plen = meridian__wal_record__pack(&outer, packed);
    Meridian__WalRecord *d3 = NULL, *inner = NULL;
    REQUIRE(wal_record_decode(WAL_REC_REPLICATED_APPLY, packed, plen, &d3) == 0);
    CHECK_EQ_INT(d3->replicated_apply->origin_lsn, 99);
    REQUIRE(wal_record_decode((uint16_t)d3->replicated_apply->original_type,
                              d3->replicated_apply->original.data,
                              d3->replicated_apply->original.len, &inner) == 0);
    CHECK_STR(inner->object_put->key, "dir/obj");
    ra.original_type = WAL_REC_REPLICATED_APPLY;
    plen = meridian__wal_record__pack(&outer, packed);
    Meridian__WalRecord *d4 = NULL;
    CHECK_EQ_INT(wal_record_decode(0, packed, plen, &d4), MRD_ECORRUPT);
    /* a format from the future is refused rather than misread */
    outer.format = WAL_RECORD_FORMAT + 1;
    ra.original_type = WAL_REC_OBJECT_PUT;
    plen = meridian__wal_record__pack(&outer, packed);
    CHECK_EQ_INT(wal_record_decode(0, packed, plen, &d4), MRD_ECORRUPT);

    wal_record_free(inner);
    wal_record_free(d3);
    wal_record_free(d);
    wal_reader_close(r);
    wal_close(w);
    dir_done();
}

/* ---- corruption (LevelDB log_test names) -------------------------------------- */

static void
ChecksumMismatch(void)
{
    wal_opts o = opts_base();
    wal_recovery rep;
    coll c;
    wal *w;
    char p[600], want[64];

    dir_new("crc");
    REQUIRE((w = write5()) != NULL);
    wal_close(w);
    seg_path(1, p, sizeof(p));
    /* damage the payload of record 2: records 3..5 were written after it
     * was synced, so this is corruption, not a torn write */
    flip(p, rec_off(LENS5, 2) + REC_HDR + 10);
    CHECK_EQ_INT(reopen(&o, &c, &rep, &w), MRD_ECORRUPT);
    CHECK(strstr(rep.error, "0000000000000001.wal") != NULL);
    snprintf(want, sizeof(want), "offset %lld", (long long)rec_off(LENS5, 2));
    CHECK(strstr(rep.error, want) != NULL);
    CHECK(strstr(rep.error, "checksum mismatch") != NULL);
    CHECK(strstr(rep.error, "--wal-salvage") != NULL);
    CHECK(strstr(rep.error, "drops 3 later records") != NULL);
    CHECK_EQ_INT(c.n, 1); /* record 1 was replayed before the bad one */
    fprintf(stderr, "    error: %s\n", rep.error);

    /* the same damage in the last record is a torn tail */
    flip(p, rec_off(LENS5, 2) + REC_HDR + 10); /* undo */
    flip(p, rec_off(LENS5, 5) + REC_HDR + 1);
    REQUIRE(reopen(&o, &c, &rep, &w) == 0);
    CHECK_EQ_INT(c.n, 4);
    CHECK_EQ_INT(rep.torn, 1);
    CHECK_EQ_INT(rep.torn_offset, rec_off(LENS5, 5));
    CHECK_EQ_INT(rep.torn_bytes, REC_HDR + LENS5[4]);
    CHECK_EQ_INT(file_size(p), rec_off(LENS5, 5));
    wal_close(w);
    dir_done();
}

static void
BadLength(void)
{
    wal_opts o = opts_base();
    wal_recovery rep;
    coll c;
    wal *w;
    char p[600];
    uint8_t big[4] = {0xff, 0xff, 0xff, 0x00};
    uint8_t more[4];

    dir_new("badlen");
    REQUIRE((w = write5()) != NULL);
    wal_close(w);
    seg_path(1, p, sizeof(p));
    /* a huge length in the middle */
    uint8_t orig[4];
    int fd = open(p, O_RDONLY);
    REQUIRE(fd >= 0 && pread(fd, orig, 4, rec_off(LENS5, 3) + 4) == 4);
    close(fd);
    poke(p, rec_off(LENS5, 3) + 4, big, 4);
    CHECK_EQ_INT(reopen(&o, &c, &rep, &w), MRD_ECORRUPT);
    CHECK(strstr(rep.error, "length") != NULL);
    CHECK_EQ_INT(c.n, 2);
    poke(p, rec_off(LENS5, 3) + 4, orig, 4);

    /* a length off by one in the middle: the checksum no longer matches */
    uint32_t l = (uint32_t)LENS5[2] + 1;
    memcpy(more, &l, 4);
    poke(p, rec_off(LENS5, 3) + 4, more, 4);
    CHECK_EQ_INT(reopen(&o, &c, &rep, &w), MRD_ECORRUPT);
    poke(p, rec_off(LENS5, 3) + 4, orig, 4);

    /* a length running past the end in the last record: torn */
    poke(p, rec_off(LENS5, 5) + 4, big, 4);
    REQUIRE(reopen(&o, &c, &rep, &w) == 0);
    CHECK_EQ_INT(c.n, 4);
    CHECK_EQ_INT(rep.torn, 1);
    wal_close(w);
    dir_done();
}

static void
TruncatedTrailingRecordIsIgnored(void)
{
    wal_opts o = opts_base();
    wal_recovery rep;
    coll c;
    wal *w;
    char p[600];
    uint64_t lsn = 0;
    uint8_t b[64];

    dir_new("trunc");
    REQUIRE((w = write5()) != NULL);
    wal_close(w);
    seg_path(1, p, sizeof(p));
    REQUIRE(truncate(p, file_size(p) - 7) == 0); /* inside record 5's payload */
    REQUIRE(reopen(&o, &c, &rep, &w) == 0);
    CHECK_EQ_INT(c.n, 4);
    CHECK_EQ_INT(c.bad, 0);
    CHECK_EQ_INT(rep.torn, 1);
    CHECK_EQ_INT(rep.last_lsn, 4);
    CHECK_STR(rep.torn_segment, "0000000000000001.wal");
    /* the lost (never acknowledged) LSN is handed out again */
    payload_fill(b, sizeof(b), 5);
    CHECK(append_sync(w, b, sizeof(b), &lsn) == 0);
    CHECK_EQ_INT(lsn, 5);
    wal_close(w);
    REQUIRE(reopen(&o, &c, &rep, &w) == 0);
    CHECK_EQ_INT(c.n, 5);
    CHECK_EQ_INT(c.bad, 0);
    CHECK_EQ_INT(rep.torn, 0);
    wal_close(w);
    dir_done();
}

static void
PartialLastIsIgnored(void)
{
    wal_opts o = opts_base();
    wal_recovery rep;
    coll c;
    wal *w;
    char p[600];

    dir_new("partial");
    REQUIRE((w = write5()) != NULL);
    wal_close(w);
    seg_path(1, p, sizeof(p));
    /* only 10 bytes of record 5's header made it */
    REQUIRE(truncate(p, rec_off(LENS5, 5) + 10) == 0);
    REQUIRE(reopen(&o, &c, &rep, &w) == 0);
    CHECK_EQ_INT(c.n, 4);
    CHECK_EQ_INT(rep.torn, 1);
    CHECK_EQ_INT(rep.torn_bytes, 10);
    wal_close(w);
    /* ext4 after a crash: the size grew but the data reads as zeros */
    REQUIRE(truncate(p, rec_off(LENS5, 5) + 4096) == 0);
    REQUIRE(reopen(&o, &c, &rep, &w) == 0);
    CHECK_EQ_INT(c.n, 4);
    CHECK_EQ_INT(rep.torn, 1);
    CHECK_EQ_INT(rep.torn_bytes, 4096);
    wal_close(w);
    dir_done();
}

/* Many records in one unsynced batch, a hole in the middle of it (pages
 * flushed out of order): still a torn tail, because every record after the
 * hole says its batch started before the hole. */
static void
TornBatchWithHoleIsTail(void)
{
    wal_opts o = opts_base();
    wal_recovery rep;
    coll c;
    wal *w = NULL;
    waiter xs[20];
    uint8_t b[200], zeros[300];
    char p[600];
    size_t lens[21];

    dir_new("hole");
    REQUIRE(wal_open(&o, &w) == 0);
    lens[0] = 50;
    payload_fill(b, 50, 1);
    REQUIRE(append_sync(w, b, 50, NULL) == 0); /* batch 1: record 1 */
    wal_close(w);
    o.batch_window_us = 300000; /* the next 20 appends share one batch */
    REQUIRE(wal_open(&o, &w) == 0);
    for (int i = 0; i < 20; i++) {
        lens[i + 1] = 200;
        payload_fill(b, 200, (uint64_t)i + 2);
        waiter_init(&xs[i]);
        REQUIRE(wal_append(w, 1, b, 200, waiter_cb, &xs[i], NULL) == 0);
    }
    for (int i = 0; i < 20; i++)
        CHECK_EQ_INT(waiter_wait(&xs[i]), 0);
    wal_status st;
    REQUIRE(wal_get_status(w, &st) == 0);
    CHECK_EQ_INT(st.max_batch, 20);
    wal_close(w);
    seg_path(1, p, sizeof(p));
    memset(zeros, 0, sizeof(zeros));
    poke(p, rec_off(lens, 8), zeros, sizeof(zeros)); /* hole over records 8, 9 */
    o.batch_window_us = -1;
    REQUIRE(reopen(&o, &c, &rep, &w) == 0);
    CHECK_EQ_INT(c.n, 7);
    CHECK_EQ_INT(rep.torn, 1);
    CHECK_EQ_INT(rep.torn_offset, rec_off(lens, 8));
    wal_close(w);

    /* the same hole over record 1 (synced before the batch) is corruption */
    poke(p, SEG_HDR, zeros, 60);
    CHECK_EQ_INT(reopen(&o, &c, &rep, &w), MRD_ECORRUPT);
    CHECK(strstr(rep.error, "offset 32") != NULL);
    dir_done();
}

static void
CorruptionMidSegmentStopsOpenUnlessSalvage(void)
{
    wal_opts o = opts_base();
    wal_recovery rep;
    coll c;
    wal *w = NULL;
    char p[600];
    size_t lens[60];
    uint64_t lsn = 0;
    uint8_t b[8];

    dir_new("salvage");
    for (int i = 0; i < 60; i++)
        lens[i] = 400;
    o.segment_bytes = 4096; /* 9 records per segment */
    REQUIRE(wal_open(&o, &w) == 0);
    REQUIRE(append_n(w, 60, lens) == 0);
    wal_status st;
    REQUIRE(wal_get_status(w, &st) == 0);
    CHECK(st.segments >= 6);
    wal_close(w);
    /* damage record 4 in the first (complete, older) segment */
    seg_path(1, p, sizeof(p));
    flip(p, rec_off(lens, 4) + REC_HDR + 3);
    CHECK_EQ_INT(reopen(&o, &c, &rep, &w), MRD_ECORRUPT);
    CHECK(strstr(rep.error, "0000000000000001.wal") != NULL);
    CHECK(strstr(rep.error, "offset 1304") != NULL); /* 32 + 3 * 424 */
    CHECK_EQ_INT(rec_off(lens, 4), 1304);
    fprintf(stderr, "    error: %s\n", rep.error);
    /* nothing was changed on disk by the failed open */
    CHECK_EQ_INT(file_size(p), rec_off(lens, 10));

    o.salvage = 1;
    REQUIRE(reopen(&o, &c, &rep, &w) == 0);
    CHECK_EQ_INT(c.n, 3);
    CHECK_EQ_INT(c.bad, 0);
    CHECK_EQ_INT(rep.salvaged, 1);
    CHECK_STR(rep.salvage_segment, "0000000000000001.wal");
    CHECK_EQ_INT(rep.salvage_offset, 1304);
    CHECK_EQ_INT(rep.salvage_records, 5); /* records 5..9 of segment 1 */
    CHECK_EQ_INT(rep.salvage_segments_removed, st.segments - 1);
    CHECK(rep.salvage_bytes > 50 * 424);
    payload_fill(b, sizeof(b), 4);
    CHECK(append_sync(w, b, sizeof(b), &lsn) == 0);
    CHECK_EQ_INT(lsn, 4);
    wal_close(w);
    o.salvage = 0;
    REQUIRE(reopen(&o, &c, &rep, &w) == 0);
    CHECK_EQ_INT(c.n, 4);
    CHECK_EQ_INT(rep.salvaged, 0);
    wal_close(w);
    dir_done();
}

static void
SegmentRollInMiddleOfBatch(void)
{
    wal_opts o = opts_base();
    wal_recovery rep;
    coll c;
    wal *w = NULL;
    waiter xs[50];
    uint8_t b[300];
    wal_status st;

    dir_new("roll");
    o.segment_bytes = 4096;
    o.batch_window_us = 300000;
    REQUIRE(wal_open(&o, &w) == 0);
    for (int i = 0; i < 50; i++) {
        payload_fill(b, 300, (uint64_t)i + 1);
        waiter_init(&xs[i]);
        REQUIRE(wal_append(w, 1, b, 300, waiter_cb, &xs[i], NULL) == 0);
    }
    for (int i = 0; i < 50; i++) {
        CHECK_EQ_INT(waiter_wait(&xs[i]), 0);
        CHECK_EQ_INT(xs[i].lsn, i + 1);
    }
    REQUIRE(wal_get_status(w, &st) == 0);
    CHECK_EQ_INT(st.batches, 1);
    CHECK_EQ_INT(st.max_batch, 50);
    CHECK(st.segments >= 4); /* 12 records of 324 bytes per 4 KiB segment */
    CHECK_EQ_INT(st.durable_lsn, 50);

    /* a reader crosses the segment boundaries */
    wal_reader *r = NULL;
    wal_entry e;
    int n = 0, rc;
    REQUIRE(wal_reader_open(w, 0, &r) == 0);
    while ((rc = wal_reader_next(r, &e)) == 1) {
        CHECK_EQ_INT(e.lsn, n + 1);
        n++;
    }
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(n, 50);
    wal_reader_close(r);
    wal_close(w);

    o.batch_window_us = -1;
    REQUIRE(reopen(&o, &c, &rep, &w) == 0);
    CHECK_EQ_INT(c.n, 50);
    CHECK_EQ_INT(c.bad, 0);
    CHECK_EQ_INT(rep.segments, st.segments);
    CHECK_EQ_INT(rep.torn, 0);
    wal_close(w);

    /* a roll that crashed before the new header was synced: empty file */
    char p[600];
    seg_path(51, p, sizeof(p));
    int fd = open(p, O_CREAT | O_WRONLY, 0644);
    REQUIRE(fd >= 0);
    close(fd);
    REQUIRE(reopen(&o, &c, &rep, &w) == 0);
    CHECK_EQ_INT(c.n, 50);
    CHECK_EQ_INT(rep.torn_segment_removed, 1);
    CHECK_EQ_INT(file_size(p), -1);
    wal_close(w);
    dir_done();
}

/* The index is a view of the WAL: replaying any suffix again gives the same
 * state, and replay starts strictly after the applied LSN. */
typedef struct index_sim {
    uint64_t applied;
    uint64_t val[200]; /* key -> checksum of the last put */
    int calls;
} index_sim;

static int
index_apply(void *ud, const wal_entry *e)
{
    index_sim *ix = ud;

    if (e->lsn <= ix->applied) /* the idempotence rule the engine uses */
        return 0;
    ix->val[e->lsn % 37] = mrd_crc32c((uint32_t)e->lsn, e->payload, e->len);
    ix->applied = e->lsn;
    ix->calls++;
    return 0;
}

static void
ReplayIdempotence(void)
{
    wal_opts o = opts_base();
    wal *w = NULL;
    size_t lens[120];
    index_sim a, b, cc;

    dir_new("idem");
    for (int i = 0; i < 120; i++)
        lens[i] = (size_t)(10 + i * 13 % 500);
    o.segment_bytes = 8192;
    REQUIRE(wal_open(&o, &w) == 0);
    REQUIRE(append_n(w, 120, lens) == 0);
    wal_close(w);

    memset(&a, 0, sizeof(a));
    o.replay = index_apply;
    o.replay_ud = &a;
    REQUIRE(wal_open(&o, &w) == 0);
    wal_close(w);
    CHECK_EQ_INT(a.applied, 120);
    CHECK_EQ_INT(a.calls, 120);

    /* the index crashed after applying 50: replays 51..120 only */
    memset(&b, 0, sizeof(b));
    o.replay_ud = &b;
    o.replay_from = 50;
    for (uint64_t l = 1; l <= 50; l++) {
        uint8_t buf[600];
        payload_fill(buf, lens[l - 1], l);
        b.val[l % 37] = mrd_crc32c((uint32_t)l, buf, lens[l - 1]);
    }
    b.applied = 50;
    REQUIRE(wal_open(&o, &w) == 0);
    wal_close(w);
    CHECK_EQ_INT(b.calls, 70);
    CHECK(memcmp(a.val, b.val, sizeof(a.val)) == 0);

    /* replaying into an up-to-date index changes nothing */
    cc = a;
    cc.calls = 0;
    o.replay_ud = &cc;
    o.replay_from = 0; /* even if asked to replay everything */
    REQUIRE(wal_open(&o, &w) == 0);
    wal_close(w);
    CHECK_EQ_INT(cc.calls, 0);
    CHECK(memcmp(a.val, cc.val, sizeof(a.val)) == 0);

    /* an index ahead of the WAL is an error naming both LSNs */
    wal_recovery rep;
    o.replay_from = 121;
    o.report = &rep;
    CHECK_EQ_INT(wal_open(&o, &w), MRD_ECORRUPT);
    CHECK(strstr(rep.error, "121") != NULL && strstr(rep.error, "120") != NULL);
    dir_done();
}

/* ---- readers ----------------------------------------------------------------- */

typedef struct loop_ctx {
    wal_cq *cq;
    int stop;
    pthread_t tid;
    int notified;
    pthread_t cb_thread;
    int cb_count;
} loop_ctx;

static void *
loop_main(void *arg)
{
    loop_ctx *l = arg;

    while (!__atomic_load_n(&l->stop, __ATOMIC_SEQ_CST)) {
        struct pollfd pfd = {wal_cq_fd(l->cq), POLLIN, 0};
        if (poll(&pfd, 1, 20) > 0)
            wal_cq_process(l->cq);
    }
    wal_cq_process(l->cq);
    return NULL;
}

static void
loop_append_cb(void *ud, int status, uint64_t lsn)
{
    loop_ctx *l = ud;

    (void)lsn;
    if (status == 0 && pthread_equal(pthread_self(), l->tid))
        __atomic_add_fetch(&l->cb_count, 1, __ATOMIC_SEQ_CST);
}

static void
loop_notify_cb(void *ud)
{
    loop_ctx *l = ud;

    if (pthread_equal(pthread_self(), l->tid))
        __atomic_add_fetch(&l->notified, 1, __ATOMIC_SEQ_CST);
}

static void
CallbacksRunOnCallerLoopAndReaderWakes(void)
{
    wal_opts o = opts_base();
    wal *w = NULL;
    loop_ctx l;
    wal_reader *r = NULL;
    wal_entry e;
    uint8_t b[100];

    dir_new("loop");
    memset(&l, 0, sizeof(l));
    REQUIRE(wal_cq_new(&l.cq) == 0);
    REQUIRE(pthread_create(&l.tid, NULL, loop_main, &l) == 0);
    o.post = wal_cq_post;
    o.post_ud = l.cq;
    REQUIRE(wal_open(&o, &w) == 0);

    REQUIRE(wal_reader_open(w, 1, &r) == 0);
    CHECK_EQ_INT(wal_reader_next(r, &e), 0);
    CHECK_EQ_INT(wal_reader_wait(r, loop_notify_cb, &l), 0); /* armed */
    for (int i = 0; i < 10; i++) {
        payload_fill(b, sizeof(b), (uint64_t)i + 1);
        REQUIRE(wal_append(w, 1, b, sizeof(b), loop_append_cb, &l, NULL) == 0);
    }
    for (int i = 0; i < 500 && (__atomic_load_n(&l.cb_count, __ATOMIC_SEQ_CST) < 10 ||
                                __atomic_load_n(&l.notified, __ATOMIC_SEQ_CST) < 1);
         i++)
        usleep(2000);
    CHECK_EQ_INT(__atomic_load_n(&l.cb_count, __ATOMIC_SEQ_CST), 10);
    CHECK_EQ_INT(__atomic_load_n(&l.notified, __ATOMIC_SEQ_CST), 1); /* one-shot */
    for (int i = 1; i <= 10; i++) {
        REQUIRE(wal_reader_next(r, &e) == 1);
        CHECK_EQ_INT(e.lsn, i);
        CHECK_EQ_INT(e.len, sizeof(b));
    }
    CHECK_EQ_INT(wal_reader_next(r, &e), 0);
    CHECK_EQ_INT(wal_reader_position(r), 11);
    /* data already there: wait says so instead of arming */
    wal_reader *r2 = NULL;
    REQUIRE(wal_reader_open(w, 5, &r2) == 0);
    CHECK_EQ_INT(wal_reader_wait(r2, loop_notify_cb, &l), 1);
    REQUIRE(wal_reader_next(r2, &e) == 1);
    CHECK_EQ_INT(e.lsn, 5);
    wal_reader_close(r2);
    /* beyond the end is refused */
    CHECK_EQ_INT(wal_reader_open(w, 12, &r2), MRD_ENOTFOUND);
    wal_reader_close(r);
    wal_close(w);
    __atomic_store_n(&l.stop, 1, __ATOMIC_SEQ_CST);
    pthread_join(l.tid, NULL);
    wal_cq_free(l.cq);
    dir_done();
}

/* A bare type comes back as LSN and type only; other records are whole,
 * and from_lsn still skips bare records below it. */
static void
ReaderReturnsBareRecordsWithoutPayload(void)
{
    wal_opts o = opts_base();
    wal *w = NULL;
    wal_reader *r = NULL;
    wal_entry e;
    uint8_t b[3000];

    dir_new("bare");
    REQUIRE(wal_open(&o, &w) == 0);
    for (int i = 1; i <= 6; i++) {
        waiter x;
        payload_fill(b, sizeof(b), (uint64_t)i);
        waiter_init(&x);
        REQUIRE(wal_append(w, i % 2 ? WAL_REC_OBJECT_PUT : WAL_REC_REPLICATED_APPLY, b,
                           (size_t)i * 100, waiter_cb, &x, NULL) == 0);
        REQUIRE(waiter_wait(&x) == 0);
    }
    for (uint64_t from = 1; from <= 2; from++) {
        REQUIRE(wal_reader_open(w, from, &r) == 0);
        wal_reader_bare(r, WAL_REC_REPLICATED_APPLY);
        for (int i = (int)from; i <= 6; i++) {
            REQUIRE(wal_reader_next(r, &e) == 1);
            CHECK_EQ_INT(e.lsn, i);
            if (i % 2) {
                CHECK_EQ_INT(e.type, WAL_REC_OBJECT_PUT);
                CHECK_EQ_INT(e.len, i * 100);
                payload_fill(b, sizeof(b), (uint64_t)i);
                CHECK(e.payload && memcmp(e.payload, b, e.len) == 0);
            } else {
                CHECK_EQ_INT(e.type, WAL_REC_REPLICATED_APPLY);
                CHECK(e.payload == NULL);
                CHECK_EQ_INT(e.len, 0);
            }
        }
        CHECK_EQ_INT(wal_reader_next(r, &e), 0);
        CHECK_EQ_INT(wal_reader_position(r), 7);
        wal_reader_close(r);
    }
    /* off again: whole records */
    REQUIRE(wal_reader_open(w, 2, &r) == 0);
    wal_reader_bare(r, WAL_REC_REPLICATED_APPLY);
    wal_reader_bare(r, 0);
    REQUIRE(wal_reader_next(r, &e) == 1);
    CHECK_EQ_INT(e.len, 200);
    CHECK(e.payload != NULL);
    wal_reader_close(r);
    wal_close(w);
    dir_done();
}

/* ---- cursors and retention -------------------------------------------------- */

static void
CursorPersistenceAcrossReopen(void)
{
    wal_opts o = opts_base();
    wal *w = NULL;
    wal_cursor_file *f = NULL;
    wal_peer_status ps;
    char cpath[600];
    size_t lens[20];

    dir_new("cursor");
    for (int i = 0; i < 20; i++)
        lens[i] = 64;
    snprintf(cpath, sizeof(cpath), "%s/cursors", g_dir);
    REQUIRE(wal_cursor_file_open(cpath, &f) == 0);
    wal_cursor_file_store(f, &o.cursors);
    REQUIRE(wal_open(&o, &w) == 0);
    REQUIRE(append_n(w, 20, lens) == 0);
    REQUIRE(wal_peer_add(w, 2, 0) == 0);
    REQUIRE(wal_peer_add(w, 3, 0) == 0);
    CHECK_EQ_INT(wal_peer_add(w, 3, 0), MRD_EEXIST);
    CHECK_EQ_INT(wal_cursor_set(w, 2, 15), 0);
    CHECK_EQ_INT(wal_cursor_set(w, 2, 9), 0); /* late ack: ignored */
    CHECK_EQ_INT(wal_cursor_set(w, 3, 7), 0);
    CHECK_EQ_INT(wal_cursor_set(w, 3, 21), MRD_EINVAL); /* not durable yet */
    CHECK_EQ_INT(wal_cursor_set(w, 4, 1), MRD_ENOTFOUND);
    REQUIRE(wal_cursor_get(w, 2, &ps) == 0);
    CHECK_EQ_INT(ps.acked_lsn, 15);
    CHECK_EQ_INT(ps.lag_records, 5);
    wal_close(w);
    wal_cursor_file_close(f);

    /* a new process: new store object, new wal */
    REQUIRE(wal_cursor_file_open(cpath, &f) == 0);
    wal_cursor_file_store(f, &o.cursors);
    REQUIRE(wal_open(&o, &w) == 0);
    REQUIRE(wal_peer_add(w, 2, 0) == 0);
    REQUIRE(wal_peer_add(w, 3, 0) == 0);
    REQUIRE(wal_peer_add(w, 9, 4) == 0); /* never saved: initial value */
    REQUIRE(wal_cursor_get(w, 2, &ps) == 0);
    CHECK_EQ_INT(ps.acked_lsn, 15);
    REQUIRE(wal_cursor_get(w, 3, &ps) == 0);
    CHECK_EQ_INT(ps.acked_lsn, 7);
    REQUIRE(wal_cursor_get(w, 9, &ps) == 0);
    CHECK_EQ_INT(ps.acked_lsn, 4);
    wal_close(w);
    wal_cursor_file_close(f);

    /* a damaged cursor file is refused, not read as zeros */
    flip(cpath, 8);
    CHECK_EQ_INT(wal_cursor_file_open(cpath, &f), MRD_ECORRUPT);
    dir_done();
}

static int
seg_exists(uint64_t first)
{
    char p[600];

    seg_path(first, p, sizeof(p));
    return file_size(p) >= 0;
}

static void
RetentionNeverDeletesWhatPeerNeeds(void)
{
    wal_opts o = opts_base();
    wal *w = NULL;
    size_t lens[100];
    wal_status st;
    wal_reader *r = NULL;
    wal_entry e;
    int segs_before;

    dir_new("retain");
    for (int i = 0; i < 100; i++)
        lens[i] = 400; /* 424-byte frames: 9 per 4 KiB segment, LSNs 1,10,19,... */
    o.segment_bytes = 4096;
    REQUIRE(wal_open(&o, &w) == 0);
    REQUIRE(wal_peer_add(w, 2, 0) == 0);
    REQUIRE(wal_peer_add(w, 3, 0) == 0);
    REQUIRE(append_n(w, 100, lens) == 0);
    REQUIRE(wal_get_status(w, &st) == 0);
    segs_before = (int)st.segments;
    CHECK_EQ_INT(segs_before, 12);

    /* the index alone is not enough */
    REQUIRE(wal_set_applied(w, 100) == 0);
    REQUIRE(wal_get_status(w, &st) == 0);
    CHECK_EQ_INT(st.segments, segs_before);
    /* peer 2 is done, peer 3 needs LSN 31 on */
    REQUIRE(wal_cursor_set(w, 2, 100) == 0);
    REQUIRE(wal_cursor_set(w, 3, 30) == 0);
    REQUIRE(wal_get_status(w, &st) == 0);
    CHECK(seg_exists(28));  /* holds 28..36, which has 31 */
    CHECK(!seg_exists(19)); /* 19..27: everyone is past it */
    CHECK_EQ_INT(st.first_lsn, 28);
    CHECK_EQ_INT(st.segments_deleted, 3);
    REQUIRE(wal_reader_open(w, 31, &r) == 0);
    REQUIRE(wal_reader_next(r, &e) == 1);
    CHECK_EQ_INT(e.lsn, 31);
    wal_reader_close(r);
    CHECK_EQ_INT(wal_reader_open(w, 27, &r), MRD_ENOTFOUND);

    /* the index holds too: peers done, index at 50 */
    REQUIRE(wal_cursor_set(w, 3, 100) == 0);
    REQUIRE(wal_get_status(w, &st) == 0);
    CHECK_EQ_INT(st.segments, 1); /* only the current segment remains */
    wal_close(w);

    /* reopen: the index reports 100 applied; retention stays consistent */
    o.replay_from = 100;
    REQUIRE(wal_open(&o, &w) == 0);
    REQUIRE(wal_get_status(w, &st) == 0);
    CHECK_EQ_INT(st.first_lsn, 100);
    CHECK_EQ_INT(st.durable_lsn, 100);
    wal_close(w);

    /* index behind: the WAL keeps what the index has not applied */
    dir_done();
    dir_new("retain2");
    o.dir = g_dir;
    o.replay_from = 0;
    REQUIRE(wal_open(&o, &w) == 0);
    REQUIRE(append_n(w, 100, lens) == 0);
    REQUIRE(wal_set_applied(w, 50) == 0);
    REQUIRE(wal_get_status(w, &st) == 0);
    CHECK(seg_exists(46)); /* 46..54 has 51 */
    CHECK(!seg_exists(37));
    wal_close(w);
    dir_done();
}

static void
SizeCapMarksLaggingPeer(void)
{
    wal_opts o = opts_base();
    wal *w = NULL;
    wal_cursor_file *f = NULL;
    size_t lens[100];
    wal_status st;
    wal_peer_status ps;
    char cpath[600];

    dir_new("cap");
    for (int i = 0; i < 100; i++)
        lens[i] = 400;
    snprintf(cpath, sizeof(cpath), "%s/cursors", g_dir);
    REQUIRE(wal_cursor_file_open(cpath, &f) == 0);
    wal_cursor_file_store(f, &o.cursors);
    o.segment_bytes = 4096;
    o.retention_bytes = 16384; /* four segments */
    REQUIRE(wal_open(&o, &w) == 0);
    REQUIRE(wal_peer_add(w, 2, 0) == 0);
    REQUIRE(wal_peer_add(w, 3, 0) == 0);
    REQUIRE(append_n(w, 100, lens) == 0);

    /* index behind: nothing may go, over the cap or not */
    REQUIRE(wal_get_status(w, &st) == 0);
    CHECK_EQ_INT(st.over_cap, 1);
    CHECK_EQ_INT(st.resyncs, 0);
    CHECK_EQ_INT(st.segments, 12);

    REQUIRE(wal_cursor_set(w, 2, 90) == 0);
    REQUIRE(wal_cursor_set(w, 3, 5) == 0);
    REQUIRE(wal_set_applied(w, 100) == 0);
    REQUIRE(wal_get_status(w, &st) == 0);
    CHECK_EQ_INT(st.resyncs, 1);
    CHECK_EQ_INT(st.over_cap, 0);
    CHECK(st.bytes <= 16384);
    CHECK(seg_exists(91)); /* peer 2 acked 90: 91 on is needed */
    CHECK(!seg_exists(82));
    REQUIRE(wal_cursor_get(w, 3, &ps) == 0);
    CHECK_EQ_INT(ps.needs_resync, 1);
    REQUIRE(wal_cursor_get(w, 2, &ps) == 0);
    CHECK_EQ_INT(ps.needs_resync, 0);
    CHECK_EQ_INT(st.n_peers, 2);
    wal_close(w);
    wal_cursor_file_close(f);

    /* the mark is durable */
    REQUIRE(wal_cursor_file_open(cpath, &f) == 0);
    wal_cursor_file_store(f, &o.cursors);
    o.replay_from = 100;
    REQUIRE(wal_open(&o, &w) == 0);
    REQUIRE(wal_peer_add(w, 3, 0) == 0);
    REQUIRE(wal_cursor_get(w, 3, &ps) == 0);
    CHECK_EQ_INT(ps.needs_resync, 1);
    CHECK_EQ_INT(ps.holding, 0);
    /* anti-entropy caught it up (its pass began, so its stream went on) */
    CHECK_EQ_INT(wal_peer_resync_done(w, 3, 100), MRD_EBUSY); /* no pass began */
    REQUIRE(wal_peer_resync_begin(w, 3, 100) == 0);
    REQUIRE(wal_peer_resync_done(w, 3, 100) == 0);
    REQUIRE(wal_cursor_get(w, 3, &ps) == 0);
    CHECK_EQ_INT(ps.needs_resync, 0);
    CHECK_EQ_INT(ps.acked_lsn, 100);
    wal_close(w);
    wal_cursor_file_close(f);
    dir_done();
}

/* Records from..to of that type, 400 bytes each. */
static int
append_typed(wal *w, uint16_t type, uint64_t from, uint64_t to)
{
    uint8_t buf[400];

    for (uint64_t i = from; i <= to; i++) {
        uint64_t lsn;
        payload_fill(buf, sizeof(buf), i);
        if (append_sync_type(w, type, buf, sizeof(buf), &lsn) != 0 || lsn != i)
            return -1;
    }
    return 0;
}

/* The log the cap tests start from, in a new directory with a cursor file
 * (its path into cpath): 9 records a segment (1, 10, ..., 91, 100), peer 2
 * has acked our records 1..10, then a catch-up from another site wrote 90
 * replicated applies (11..100), all applied by the index. Capped at
 * retention bytes. */
static int
skip_log_fill(const char *name, uint64_t retention, wal_opts *o, wal **w, wal_cursor_file **f,
              char *cpath, size_t cpath_size)
{
    dir_new(name);
    snprintf(cpath, cpath_size, "%s/cursors", g_dir);
    if (wal_cursor_file_open(cpath, f) != 0)
        return -1;
    wal_cursor_file_store(*f, &o->cursors);
    o->segment_bytes = 4096;
    o->retention_bytes = retention;
    if (wal_open(o, w) != 0 || wal_peer_add(*w, 2, 0) != 0 ||
        append_typed(*w, WAL_REC_OBJECT_PUT, 1, 10) != 0 || wal_cursor_set(*w, 2, 10) != 0 ||
        append_typed(*w, WAL_REC_REPLICATED_APPLY, 11, 100) != 0 || wal_set_applied(*w, 100) != 0)
        return -1;
    return 0;
}

/* Past the cap, a peer whose next needed segment holds only replicated
 * applies (never sent to a peer) is moved past them, durably, not marked
 * for a resync; one that would lose a record of ours still is. */
static void
CapMovesCursorOverReplicatedApplies(void)
{
    wal_opts o = opts_base();
    wal *w = NULL;
    wal_cursor_file *f = NULL;
    wal_status st;
    wal_peer_status ps;
    char cpath[600];

    /* four segments */
    REQUIRE(skip_log_fill("capskip", 16384, &o, &w, &f, cpath, sizeof(cpath)) == 0);
    REQUIRE(wal_get_status(w, &st) == 0);
    CHECK_EQ_INT(st.resyncs, 0);
    CHECK(st.cursor_skips > 0);
    CHECK_EQ_INT(st.over_cap, 0);
    REQUIRE(wal_cursor_get(w, 2, &ps) == 0);
    CHECK_EQ_INT(ps.needs_resync, 0);
    CHECK(ps.acked_lsn > 10 && ps.acked_lsn < 100);
    CHECK_EQ_INT(ps.skip_lo, 11);
    uint64_t moved = ps.acked_lsn;
    /* a reader from where the peer is (its next own record) still works,
     * one from before the move finds the segments gone */
    wal_reader *r = NULL;
    CHECK_EQ_INT(wal_reader_open(w, moved + 1, &r), 0);
    wal_reader_close(r);
    r = NULL;
    CHECK_EQ_INT(wal_reader_open(w, 11, &r), MRD_ENOTFOUND);
    /* a record of ours the peer lacks: past the cap it is marked */
    REQUIRE(append_typed(w, WAL_REC_OBJECT_PUT, 101, 101) == 0);
    REQUIRE(append_typed(w, WAL_REC_REPLICATED_APPLY, 102, 200) == 0);
    REQUIRE(wal_set_applied(w, 200) == 0);
    REQUIRE(wal_cursor_get(w, 2, &ps) == 0);
    CHECK_EQ_INT(ps.needs_resync, 1);
    CHECK(ps.acked_lsn <= 100);
    wal_close(w);
    wal_cursor_file_close(f);

    /* the move was saved before the segments went */
    REQUIRE(wal_cursor_file_open(cpath, &f) == 0);
    wal_cursor_file_store(f, &o.cursors);
    uint64_t acked = 0, skip_lo = 1;
    int resync = 0;
    REQUIRE(o.cursors.load(o.cursors.ud, 2, &acked, &resync, &skip_lo) == 0);
    CHECK(acked >= moved);
    CHECK_EQ_INT(resync, 1);
    CHECK_EQ_INT(skip_lo, 0); /* a mark forgets the range */
    wal_cursor_file_close(f);
    dir_done();
}

/* A new process over the same log and cursor file: the file is reopened
 * (a fresh store object, as after a restart) and the WAL with it, capped at
 * retention bytes, its index at applied; peer 2 is registered again. */
static int
restart(wal_opts *o, wal **w, wal_cursor_file **f, const char *cpath, uint64_t retention,
        uint64_t applied)
{
    wal_close(*w);
    *w = NULL;
    wal_cursor_file_close(*f);
    *f = NULL;
    if (wal_cursor_file_open(cpath, f) != 0)
        return -1;
    wal_cursor_file_store(*f, &o->cursors);
    o->retention_bytes = retention;
    o->replay_from = applied;
    return wal_open(o, w) == 0 && wal_peer_add(*w, 2, 0) == 0 ? 0 : -1;
}

/* As CapMovesCursorOverReplicatedApplies, with a restart between filling
 * the log and the cap: the segments found at open are known again (from
 * open's scan of their records), so the cap moves the cursor over those
 * holding replicated applies only, and still marks the peer at the first
 * one holding a record of ours it lacks. */
static void
CapKnowsOldSegmentsAfterReopen(void)
{
    wal_opts o = opts_base();
    wal *w = NULL;
    wal_cursor_file *f = NULL;
    wal_status st;
    wal_peer_status ps;
    char cpath[600];

    /* no cap while filling */
    REQUIRE(skip_log_fill("capreopen", 1 << 20, &o, &w, &f, cpath, sizeof(cpath)) == 0);
    REQUIRE(wal_get_status(w, &st) == 0);
    CHECK_EQ_INT(st.over_cap, 0);
    CHECK_EQ_INT(st.cursor_skips, 0);

    REQUIRE(restart(&o, &w, &f, cpath, 16384, 100) == 0); /* four segments */
    REQUIRE(wal_set_applied(w, 100) == 0);
    REQUIRE(wal_get_status(w, &st) == 0);
    CHECK_EQ_INT(st.resyncs, 0);
    CHECK(st.cursor_skips > 0);
    CHECK_EQ_INT(st.over_cap, 0);
    REQUIRE(wal_cursor_get(w, 2, &ps) == 0);
    CHECK_EQ_INT(ps.needs_resync, 0);
    CHECK(ps.acked_lsn > 10 && ps.acked_lsn < 100);
    CHECK_EQ_INT(ps.skip_lo, 11);
    CHECK(!seg_exists(10));
    uint64_t moved = ps.acked_lsn;

    /* more of both kinds, unknown to the cap until the next restart: a
     * record of ours (at 131) in the segment 127..135 */
    REQUIRE(restart(&o, &w, &f, cpath, 1 << 20, 100) == 0);
    REQUIRE(append_typed(w, WAL_REC_REPLICATED_APPLY, 101, 130) == 0);
    REQUIRE(append_typed(w, WAL_REC_OBJECT_PUT, 131, 131) == 0);
    REQUIRE(append_typed(w, WAL_REC_REPLICATED_APPLY, 132, 200) == 0);
    REQUIRE(wal_set_applied(w, 200) == 0);
    REQUIRE(restart(&o, &w, &f, cpath, 16384, 200) == 0);
    REQUIRE(wal_cursor_get(w, 2, &ps) == 0);
    CHECK_EQ_INT(ps.acked_lsn, moved);
    REQUIRE(wal_set_applied(w, 200) == 0);
    REQUIRE(wal_get_status(w, &st) == 0);
    CHECK_EQ_INT(st.resyncs, 1);
    CHECK(st.cursor_skips > 0);
    REQUIRE(wal_cursor_get(w, 2, &ps) == 0);
    CHECK_EQ_INT(ps.needs_resync, 1);
    CHECK_EQ_INT(ps.acked_lsn, 126); /* moved over everything before 127 */
    CHECK_EQ_INT(ps.skip_lo, 0);
    CHECK(!seg_exists(127));
    wal_close(w);
    wal_cursor_file_close(f);
    dir_done();
}

/* A cursor store that fails the saves of cap moves (a nonzero skip_lo)
 * while fail_moves is set, as a disk would; the rest goes to inner. */
typedef struct flaky_store {
    wal_cursor_store inner;
    int fail_moves;
} flaky_store;

static int
flaky_load(void *ud, uint32_t peer, uint64_t *acked, int *resync, uint64_t *skip_lo)
{
    flaky_store *fs = ud;

    return fs->inner.load(fs->inner.ud, peer, acked, resync, skip_lo);
}

static int
flaky_save(void *ud, uint32_t peer, uint64_t acked, int resync, uint64_t skip_lo)
{
    flaky_store *fs = ud;

    if (fs->fail_moves && skip_lo)
        return -EIO;
    return fs->inner.save(fs->inner.ud, peer, acked, resync, skip_lo);
}

/* A cap move whose save fails changes nothing: no segment is deleted on its
 * strength, the cursor and its range stay as saved, the peer is not marked;
 * once saves work again the move happens. */
static void
CapMoveNotSavedDeletesNothing(void)
{
    wal_opts o = opts_base();
    wal *w = NULL;
    wal_cursor_file *f = NULL;
    flaky_store fs;
    wal_status st;
    wal_peer_status ps;
    char cpath[600];

    REQUIRE(skip_log_fill("capnosave", 1 << 20, &o, &w, &f, cpath, sizeof(cpath)) == 0);
    wal_close(w); /* and open again, capped, its saves going through fs */
    fs.inner = o.cursors;
    fs.fail_moves = 1;
    o.cursors = (wal_cursor_store){flaky_load, flaky_save, &fs};
    o.retention_bytes = 16384;
    o.replay_from = 100;
    REQUIRE(wal_open(&o, &w) == 0);
    REQUIRE(wal_peer_add(w, 2, 0) == 0);
    REQUIRE(wal_set_applied(w, 100) == 0);
    REQUIRE(wal_get_status(w, &st) == 0);
    CHECK_EQ_INT(st.cursor_skips, 0);
    CHECK_EQ_INT(st.resyncs, 0);
    CHECK_EQ_INT(st.over_cap, 1);
    CHECK(seg_exists(10));
    REQUIRE(wal_cursor_get(w, 2, &ps) == 0);
    CHECK_EQ_INT(ps.acked_lsn, 10);
    CHECK_EQ_INT(ps.skip_lo, 0);
    CHECK_EQ_INT(ps.needs_resync, 0);

    fs.fail_moves = 0;
    REQUIRE(wal_set_applied(w, 100) == 0);
    REQUIRE(wal_cursor_get(w, 2, &ps) == 0);
    CHECK(ps.acked_lsn > 10);
    CHECK_EQ_INT(ps.skip_lo, 11);
    CHECK(!seg_exists(10));
    wal_close(w);
    wal_cursor_file_close(f);
    dir_done();
}

/* The range the cap moved a cursor over is saved with the cursor: after a
 * restart a sender can still tell the peer (wal_peer_status.skip_lo) rather
 * than resync it. An ack past the range forgets it, durably. A cursor file
 * of an older build (no skip field) still loads, with no range. */
static void
SkipRangeSurvivesReopen(void)
{
    wal_opts o = opts_base();
    wal *w = NULL;
    wal_cursor_file *f = NULL;
    wal_peer_status ps;
    wal_reader *r = NULL;
    char cpath[600];

    REQUIRE(skip_log_fill("skipreopen", 16384, &o, &w, &f, cpath, sizeof(cpath)) == 0);
    REQUIRE(wal_cursor_get(w, 2, &ps) == 0);
    CHECK_EQ_INT(ps.skip_lo, 11);
    uint64_t moved = ps.acked_lsn;
    CHECK(moved > 10 && moved < 100);

    /* restarted before the sender told the peer: the range is still known,
     * and the records it covers are still gone */
    REQUIRE(restart(&o, &w, &f, cpath, 16384, 100) == 0);
    REQUIRE(wal_cursor_get(w, 2, &ps) == 0);
    CHECK_EQ_INT(ps.acked_lsn, moved);
    CHECK_EQ_INT(ps.needs_resync, 0);
    CHECK_EQ_INT(ps.skip_lo, 11);
    CHECK_EQ_INT(wal_reader_open(w, 11, &r), MRD_ENOTFOUND);
    /* a later move extends the range from the same low end */
    REQUIRE(append_typed(w, WAL_REC_REPLICATED_APPLY, 101, 140) == 0);
    REQUIRE(wal_set_applied(w, 140) == 0);
    REQUIRE(wal_cursor_get(w, 2, &ps) == 0);
    CHECK(ps.acked_lsn > moved);
    CHECK_EQ_INT(ps.skip_lo, 11);
    moved = ps.acked_lsn;
    REQUIRE(restart(&o, &w, &f, cpath, 16384, 140) == 0);
    REQUIRE(wal_cursor_get(w, 2, &ps) == 0);
    CHECK_EQ_INT(ps.acked_lsn, moved);
    CHECK_EQ_INT(ps.skip_lo, 11);

    /* the peer acks past it: forgotten, and that is saved too */
    REQUIRE(append_typed(w, WAL_REC_OBJECT_PUT, 141, 141) == 0);
    REQUIRE(wal_cursor_set(w, 2, 141) == 0);
    REQUIRE(wal_cursor_get(w, 2, &ps) == 0);
    CHECK_EQ_INT(ps.skip_lo, 0);
    REQUIRE(restart(&o, &w, &f, cpath, 16384, 141) == 0);
    REQUIRE(wal_cursor_get(w, 2, &ps) == 0);
    CHECK_EQ_INT(ps.acked_lsn, 141);
    CHECK_EQ_INT(ps.skip_lo, 0);
    wal_close(w);
    wal_cursor_file_close(f);

    /* an older build's file (no skip field), and this build's line, which
     * an older build's parser also reads (it stops before the field) */
    const char *lines = "peer=2 acked=5 resync=0\npeer=3 acked=9 resync=0 skip=4\n";
    char text[256];
    int n = snprintf(text, sizeof(text), "%scrc=%08" PRIx32 "\n", lines,
                     mrd_crc32c(0, lines, strlen(lines)));
    FILE *fp = fopen(cpath, "wb");
    REQUIRE(fp && fwrite(text, 1, (size_t)n, fp) == (size_t)n && fclose(fp) == 0);
    REQUIRE(wal_cursor_file_open(cpath, &f) == 0);
    wal_cursor_file_store(f, &o.cursors);
    uint64_t acked = 0, skip_lo = 1;
    int resync = 1;
    REQUIRE(o.cursors.load(o.cursors.ud, 2, &acked, &resync, &skip_lo) == 0);
    CHECK_EQ_INT(acked, 5);
    CHECK_EQ_INT(resync, 0);
    CHECK_EQ_INT(skip_lo, 0);
    REQUIRE(o.cursors.load(o.cursors.ud, 3, &acked, &resync, &skip_lo) == 0);
    CHECK_EQ_INT(acked, 9);
    CHECK_EQ_INT(skip_lo, 4);
    unsigned peer;
    unsigned long long old_acked;
    int old_resync;
    CHECK_EQ_INT(sscanf(strchr(lines, '\n') + 1, "peer=%u acked=%llu resync=%d", &peer, &old_acked,
                        &old_resync),
                 3);
    wal_cursor_file_close(f);
    dir_done();
}

static int
append_range(wal *w, uint64_t from, uint64_t to)
{
    return append_typed(w, WAL_REC_OBJECT_PUT, from, to);
}

/* A needs-resync peer whose resync pass began holds segments for its record
 * stream from the pass's point on; the cap can drop it again, and then the
 * pass cannot end; the end of a pass clears the mark and never lowers the
 * cursor. */
static void
ResyncPassHoldsTheStream(void)
{
    wal_opts o = opts_base();
    wal *w = NULL;
    wal_status st;
    wal_peer_status ps;

    dir_new("resync_hold");
    o.segment_bytes = 4096; /* 9 records a segment: 1, 10, ..., 91, 100, 109, 118 */
    o.retention_bytes = 16384;
    REQUIRE(wal_open(&o, &w) == 0);
    REQUIRE(wal_peer_add(w, 2, 0) == 0);
    REQUIRE(wal_peer_add(w, 3, 0) == 0);
    REQUIRE(append_range(w, 1, 100) == 0);
    REQUIRE(wal_cursor_set(w, 2, 100) == 0);
    REQUIRE(wal_set_applied(w, 100) == 0);
    REQUIRE(wal_cursor_get(w, 3, &ps) == 0);
    CHECK_EQ_INT(ps.needs_resync, 1);
    CHECK_EQ_INT(ps.holding, 0);
    CHECK(!seg_exists(91));
    CHECK_EQ_INT(wal_peer_resync_done(w, 3, 0), MRD_EBUSY);
    /* the stream cannot go on after 5 (deleted); after 99 it can */
    CHECK_EQ_INT(wal_peer_resync_begin(w, 3, 5), MRD_ENOTFOUND);
    REQUIRE(wal_peer_resync_begin(w, 3, 99) == 0);
    REQUIRE(wal_cursor_get(w, 3, &ps) == 0);
    CHECK_EQ_INT(ps.needs_resync, 1);
    CHECK_EQ_INT(ps.holding, 1);
    /* held from 100 while the pass runs, then from its acks */
    REQUIRE(append_range(w, 101, 120) == 0);
    REQUIRE(wal_cursor_set(w, 2, 120) == 0);
    REQUIRE(wal_set_applied(w, 120) == 0);
    CHECK(seg_exists(100));
    REQUIRE(wal_cursor_set(w, 3, 110) == 0);
    CHECK(!seg_exists(100));
    CHECK(seg_exists(109));
    REQUIRE(wal_cursor_get(w, 3, &ps) == 0);
    CHECK_EQ_INT(ps.needs_resync, 1); /* acks during the pass keep the mark */
    CHECK_EQ_INT(ps.acked_lsn, 110);
    /* the stream falls behind the cap again: dropped, the pass cannot end */
    REQUIRE(append_range(w, 121, 180) == 0);
    REQUIRE(wal_cursor_set(w, 2, 180) == 0);
    REQUIRE(wal_set_applied(w, 180) == 0);
    REQUIRE(wal_get_status(w, &st) == 0);
    CHECK_EQ_INT(st.resyncs, 2);
    CHECK_EQ_INT(st.over_cap, 0);
    REQUIRE(wal_cursor_get(w, 3, &ps) == 0);
    CHECK_EQ_INT(ps.needs_resync, 1);
    CHECK_EQ_INT(ps.holding, 0);
    CHECK_EQ_INT(wal_peer_resync_done(w, 3, 110), MRD_EBUSY);
    REQUIRE(wal_cursor_get(w, 3, &ps) == 0);
    CHECK_EQ_INT(ps.needs_resync, 1);
    /* a new pass from 180; its end clears the mark, the cursor at its point */
    REQUIRE(wal_peer_resync_begin(w, 3, 180) == 0);
    REQUIRE(wal_peer_resync_done(w, 3, 170) == 0);
    REQUIRE(wal_cursor_get(w, 3, &ps) == 0);
    CHECK_EQ_INT(ps.needs_resync, 0);
    CHECK_EQ_INT(ps.holding, 1);
    CHECK_EQ_INT(ps.acked_lsn, 180);
    REQUIRE(wal_peer_resync_done(w, 3, 50) == 0); /* never lower */
    REQUIRE(wal_cursor_get(w, 3, &ps) == 0);
    CHECK_EQ_INT(ps.acked_lsn, 180);
    wal_close(w);
    dir_done();
}

/* ---- fault injection ---------------------------------------------------------- */

typedef struct faults {
    wal_io_op op;
    uint64_t nth;
    int err;
    int sleep_ms;
} faults;

static int
fault_cb(void *ud, wal_io_op op, uint64_t nth)
{
    faults *f = ud;

    if (op != f->op || nth < f->nth)
        return 0;
    if (f->sleep_ms && nth == f->nth)
        usleep((useconds_t)f->sleep_ms * 1000);
    return f->err;
}

static void
fault_case(wal_io_op op, uint64_t nth)
{
    wal_opts o = opts_base();
    wal *w = NULL;
    faults f = {op, nth, -EIO, 150};
    waiter x[10];
    uint8_t b[100];
    int ok = 0;
    wal_status st;
    wal_reader *r = NULL;
    wal_entry e;

    o.fault = fault_cb;
    o.fault_ud = &f;
    o.segment_bytes = 4096;
    REQUIRE(wal_open(&o, &w) == 0);
    payload_fill(b, sizeof(b), 1);
    /* appends one at a time until one fails */
    for (int i = 0; i < 200; i++) {
        int rc = append_sync(w, b, sizeof(b), NULL);
        if (rc != 0) {
            CHECK_EQ_INT(rc, MRD_EDURABLE);
            break;
        }
        ok++;
    }
    CHECK(ok < 200);
    REQUIRE(wal_get_status(w, &st) == 0);
    CHECK_EQ_INT(st.failed, MRD_EDURABLE);
    CHECK_EQ_INT(st.io_error, -EIO);
    CHECK_EQ_INT(st.io_op, op);
    CHECK_EQ_INT(st.durable_lsn, ok);
    CHECK(st.failed_segment[0] != '\0');
    /* later appends fail at once, and their callbacks never run */
    waiter_init(&x[0]);
    CHECK_EQ_INT(wal_append(w, 1, b, sizeof(b), waiter_cb, &x[0], NULL), MRD_EDURABLE);
    CHECK_EQ_INT(x[0].done, 0);
    /* readers still see what was durable, and are told nothing more comes */
    REQUIRE(wal_reader_open(w, 0, &r) == 0);
    int n = 0;
    while (wal_reader_next(r, &e) == 1)
        n++;
    CHECK_EQ_INT(n, ok);
    CHECK_EQ_INT(wal_reader_wait(r, loop_notify_cb, NULL), MRD_EDURABLE);
    wal_reader_close(r);
    wal_close(w);
}

static void
FsyncFailureFailsPendingAndLaterAppends(void)
{
    wal_opts o = opts_base();
    wal *w = NULL;
    faults f = {WAL_IO_SYNC, 3, -EIO, 200};
    waiter x[40];
    uint8_t b[100];
    int succeeded = 0, failed = 0;

    dir_new("fsync");
    fault_case(WAL_IO_SYNC, 4);
    dir_done();
    dir_new("write");
    fault_case(WAL_IO_WRITE, 3);
    dir_done();
    dir_new("rollfail");
    fault_case(WAL_IO_ROLL, 1); /* 4 KiB segments roll after ~30 appends */
    dir_done();

    /* appends queued while the failing sync runs all fail too */
    dir_new("pending");
    o.fault = fault_cb;
    o.fault_ud = &f;
    REQUIRE(wal_open(&o, &w) == 0);
    payload_fill(b, sizeof(b), 1);
    REQUIRE(append_sync(w, b, sizeof(b), NULL) == 0);
    REQUIRE(append_sync(w, b, sizeof(b), NULL) == 0);
    for (int i = 0; i < 40; i++) {
        waiter_init(&x[i]);
        REQUIRE(wal_append(w, 1, b, sizeof(b), waiter_cb, &x[i], NULL) == 0);
        if (i == 0)
            usleep(50000); /* the writer is now inside the 3rd (failing) sync */
    }
    for (int i = 0; i < 40; i++) {
        int rc = waiter_wait(&x[i]);
        if (rc == 0)
            succeeded++;
        else if (rc == MRD_EDURABLE)
            failed++;
    }
    CHECK_EQ_INT(succeeded, 0);
    CHECK_EQ_INT(failed, 40);
    wal_close(w);
    /* what was written may come back after a restart, but no acknowledged
     * record is missing */
    wal_recovery rep;
    coll c;
    o.fault = NULL;
    REQUIRE(reopen(&o, &c, &rep, &w) == 0);
    CHECK(c.n >= 2);
    wal_close(w);
    dir_done();
}

/* ---- concurrency ----------------------------------------------------------------- */

#define CT_THREADS 8
#define CT_EACH    250

typedef struct ct_thread {
    wal *w;
    int id;
    uint64_t lsns[CT_EACH];
    int bad;
} ct_thread;

static void *
ct_main(void *arg)
{
    ct_thread *t = arg;
    uint8_t b[256];

    for (int i = 0; i < CT_EACH; i++) {
        waiter x;
        size_t len = (size_t)(8 + (t->id * 31 + i * 17) % 240);
        waiter_init(&x);
        memset(b, t->id, len);
        if (wal_append(t->w, 1, b, len, waiter_cb, &x, &t->lsns[i]) != 0) {
            t->bad++;
            continue;
        }
        if (waiter_wait(&x) != 0 || x.lsn != t->lsns[i])
            t->bad++;
    }
    return NULL;
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

static void
ConcurrentAppendersGetUniqueIncreasingLsns(void)
{
    wal_opts o = opts_base();
    wal *w = NULL;
    ct_thread t[CT_THREADS];
    pthread_t tid[CT_THREADS];
    static uint64_t all[CT_THREADS * CT_EACH];
    wal_status st;

    dir_new("conc");
    o.segment_bytes = 64 * 1024; /* rolls under load too */
    REQUIRE(wal_open(&o, &w) == 0);
    for (int i = 0; i < CT_THREADS; i++) {
        memset(&t[i], 0, sizeof(t[i]));
        t[i].w = w;
        t[i].id = i;
        REQUIRE(pthread_create(&tid[i], NULL, ct_main, &t[i]) == 0);
    }
    for (int i = 0; i < CT_THREADS; i++)
        pthread_join(tid[i], NULL);
    int n = 0;
    for (int i = 0; i < CT_THREADS; i++) {
        CHECK_EQ_INT(t[i].bad, 0);
        for (int j = 0; j < CT_EACH; j++) {
            if (j > 0)
                CHECK(t[i].lsns[j] > t[i].lsns[j - 1]);
            all[n++] = t[i].lsns[j];
        }
    }
    qsort(all, (size_t)n, sizeof(all[0]), cmp_u64);
    for (int i = 0; i < n; i++)
        if (all[i] != (uint64_t)i + 1) {
            CHECK_EQ_INT(all[i], i + 1);
            break;
        }
    REQUIRE(wal_get_status(w, &st) == 0);
    CHECK_EQ_INT(st.appends, n);
    CHECK_EQ_INT(st.durable_lsn, n);
    CHECK(st.batches < st.appends); /* group commit happened */
    fprintf(stderr, "    %" PRIu64 " appends in %" PRIu64 " batches, max batch %" PRIu64 "\n",
            st.appends, st.batches, st.max_batch);
    wal_close(w);

    /* every record is intact after reopen, each thread's bytes */
    wal_recovery rep;
    o.report = &rep;
    REQUIRE(wal_open(&o, &w) == 0);
    CHECK_EQ_INT(rep.records, n);
    CHECK_EQ_INT(rep.torn, 0);
    wal_close(w);
    dir_done();
}

/* ---- crash test: SIGKILL during concurrent appends ------------------------------- */

/* A child appends from several threads and writes (lsn, thread, seq) to a
 * pipe only from the durable callback; the parent kills it at a random
 * moment, reopens, and checks every acknowledged record is there, intact. */
#define CR_THREADS 6

typedef struct cr_ack {
    uint64_t lsn;
    uint32_t thread, seq;
} cr_ack;

static int cr_pipe = -1;

static size_t
cr_payload(uint32_t t, uint32_t seq, uint8_t *out)
{
    size_t len = 8 + (size_t)((t * 7919u + seq * 104729u) % 3000u);

    memcpy(out, &t, 4);
    memcpy(out + 4, &seq, 4);
    payload_fill(out + 8, len - 8, (uint64_t)t << 32 | seq);
    return len;
}

typedef struct cr_req {
    uint32_t t, seq;
    waiter x;
} cr_req;

static void
cr_cb(void *ud, int status, uint64_t lsn)
{
    cr_req *q = ud;

    if (status == 0) {
        cr_ack a = {lsn, q->t, q->seq};
        if (write(cr_pipe, &a, sizeof(a)) != (ssize_t)sizeof(a))
            _exit(3);
    }
    waiter_cb(&q->x, status, lsn);
}

static void *
cr_child_thread(void *arg)
{
    wal *w = arg;
    static __thread uint8_t b[4096];
    static uint32_t next_t;
    uint32_t t = __atomic_fetch_add(&next_t, 1, __ATOMIC_SEQ_CST);
    uint32_t seq = (uint32_t)getpid() << 12; /* unique across children */

    for (;;) {
        cr_req q;
        size_t len;
        q.t = t;
        q.seq = seq++;
        waiter_init(&q.x);
        len = cr_payload(q.t, q.seq, b);
        if (wal_append(w, 1, b, len, cr_cb, &q, NULL) != 0)
            _exit(4);
        if (waiter_wait(&q.x) != 0)
            _exit(5);
    }
    return NULL;
}

static void
cr_child(int fd)
{
    wal_opts o = opts_base();
    wal *w = NULL;
    pthread_t tid[CR_THREADS];

    cr_pipe = fd;
    o.segment_bytes = 128 * 1024;
    o.replay_from = 0;
    if (wal_open(&o, &w) != 0)
        _exit(6);
    for (int i = 0; i < CR_THREADS; i++)
        pthread_create(&tid[i], NULL, cr_child_thread, w);
    for (;;)
        pause();
}

typedef struct cr_check {
    cr_ack *acks;
    size_t nacks;
    uint8_t *seen; /* by lsn */
    size_t maxlsn;
    int bad;
} cr_check;

static int
cr_replay(void *ud, const wal_entry *e)
{
    cr_check *c = ud;
    uint32_t t, seq;
    uint8_t exp[4096];

    if (e->len < 8)
        return 0;
    memcpy(&t, e->payload, 4);
    memcpy(&seq, e->payload + 4, 4);
    if (cr_payload(t, seq, exp) != e->len || memcmp(exp, e->payload, e->len) != 0) {
        c->bad++;
        return 0;
    }
    if (e->lsn <= c->maxlsn)
        c->seen[e->lsn] = 1;
    return 0;
}

static void
CrashTestSigkillDuringConcurrentAppends(void)
{
    cr_check c;
    unsigned seed = (unsigned)time(NULL);
    int kills = 0;
    size_t cap = 1 << 16;
    const int rounds = getenv("WAL_CRASH_ROUNDS") ? atoi(getenv("WAL_CRASH_ROUNDS")) : 24;

    dir_new("crash");
    fprintf(stderr, "    seed %u\n", seed);
    memset(&c, 0, sizeof(c));
    c.acks = malloc(cap * sizeof(*c.acks));
    REQUIRE(c.acks);
    for (int round = 0; round < rounds; round++) {
        int pfd[2];
        pid_t pid;
        uint64_t deadline;

        REQUIRE(pipe(pfd) == 0);
        pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            close(pfd[0]);
            cr_child(pfd[1]);
        }
        close(pfd[1]);
        /* the kill clock starts at the child's first ack, so every kill
         * lands while appends are in flight (slow sanitizer builds too) */
        uint64_t delay = (uint64_t)(5 + rand_r(&seed) % 80) * 1000000u;
        size_t acks_before = c.nacks;
        deadline = mrd_clock_mono_ns() + 10000000000ull;
        for (;;) {
            uint64_t now = mrd_clock_mono_ns();
            if (c.nacks > acks_before && delay) {
                deadline = now + delay;
                delay = 0;
            }
            if (now >= deadline)
                break;
            struct pollfd p = {pfd[0], POLLIN, 0};
            int ms = (int)((deadline - now) / 1000000u) + 1;
            if (poll(&p, 1, ms) > 0) {
                cr_ack a[256];
                ssize_t k = read(pfd[0], a, sizeof(a));
                if (k <= 0)
                    break;
                for (size_t i = 0; i < (size_t)k / sizeof(cr_ack); i++) {
                    if (c.nacks == cap) {
                        cap *= 2;
                        c.acks = realloc(c.acks, cap * sizeof(*c.acks));
                        REQUIRE(c.acks);
                    }
                    c.acks[c.nacks++] = a[i];
                }
                /* partial acks never happen: 16 bytes < PIPE_BUF */
            }
        }
        kill(pid, SIGKILL);
        int wst;
        waitpid(pid, &wst, 0);
        CHECK(WIFSIGNALED(wst)); /* it did not exit on its own error */
        kills++;
        for (;;) { /* acks written before the kill */
            cr_ack a[256];
            ssize_t k = read(pfd[0], a, sizeof(a));
            if (k <= 0)
                break;
            for (size_t i = 0; i < (size_t)k / sizeof(cr_ack); i++) {
                if (c.nacks == cap) {
                    cap *= 2;
                    c.acks = realloc(c.acks, cap * sizeof(*c.acks));
                    REQUIRE(c.acks);
                }
                c.acks[c.nacks++] = a[i];
            }
        }
        close(pfd[0]);

        /* reopen and verify every acknowledged record */
        c.maxlsn = 0;
        for (size_t i = 0; i < c.nacks; i++)
            if (c.acks[i].lsn > c.maxlsn)
                c.maxlsn = c.acks[i].lsn;
        c.seen = calloc(c.maxlsn + 1, 1);
        REQUIRE(c.seen);
        c.bad = 0;
        wal_opts o = opts_base();
        wal_recovery rep;
        wal *w = NULL;
        o.segment_bytes = 128 * 1024;
        o.replay = cr_replay;
        o.replay_ud = &c;
        o.report = &rep;
        int rc = wal_open(&o, &w);
        if (rc != 0)
            fprintf(stderr, "    round %d: open failed: %s\n", round, rep.error);
        REQUIRE(rc == 0);
        wal_close(w);
        CHECK_EQ_INT(c.bad, 0);
        size_t missing = 0;
        for (size_t i = 0; i < c.nacks; i++)
            if (!c.seen[c.acks[i].lsn])
                missing++;
        CHECK_EQ_INT(missing, 0);
        if (round % 6 == 0 || rep.torn)
            fprintf(stderr, "    round %d: %zu acks so far, %" PRIu64 " records, %u segments%s\n",
                    round, c.nacks, rep.records, rep.segments, rep.torn ? ", torn tail cut" : "");
        free(c.seen);
        c.seen = NULL;
        if (test__failed)
            break;
    }
    CHECK(kills >= 20 || rounds < 20);
    CHECK(c.nacks > 0);
    free(c.acks);
    dir_done();
}

static const test_case tests[] = {
    TEST(EmptyOpenAppendReopen),
    TEST(RecordRoundTrip),
    TEST(ChecksumMismatch),
    TEST(BadLength),
    TEST(TruncatedTrailingRecordIsIgnored),
    TEST(PartialLastIsIgnored),
    TEST(TornBatchWithHoleIsTail),
    TEST(CorruptionMidSegmentStopsOpenUnlessSalvage),
    TEST(SegmentRollInMiddleOfBatch),
    TEST(ReplayIdempotence),
    TEST(CallbacksRunOnCallerLoopAndReaderWakes),
    TEST(ReaderReturnsBareRecordsWithoutPayload),
    TEST(CursorPersistenceAcrossReopen),
    TEST(RetentionNeverDeletesWhatPeerNeeds),
    TEST(SizeCapMarksLaggingPeer),
    TEST(CapMovesCursorOverReplicatedApplies),
    TEST(CapKnowsOldSegmentsAfterReopen),
    TEST(SkipRangeSurvivesReopen),
    TEST(CapMoveNotSavedDeletesNothing),
    TEST(ResyncPassHoldsTheStream),
    TEST(FsyncFailureFailsPendingAndLaterAppends),
    TEST(ConcurrentAppendersGetUniqueIncreasingLsns),
    TEST(CrashTestSigkillDuringConcurrentAppends),
    {NULL, NULL},
};

TEST_MAIN(tests)
