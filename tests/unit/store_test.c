/*
 * store_test.c - unit tests for store/: erasure-coded round trips at the
 * stripe edges, every pattern of up to m lost drives (and every pattern of
 * m+1, which must fail cleanly), lost shard files, bit flips caught by the
 * block CRC and repaired, a real crash mid-write (a forked child _exits with
 * half an object written), heal (one object and background), the index
 * (batch apply with LSN, replay, atomic failure, listing order, versions),
 * the meta keyspace, fault hooks on write / fdatasync / commit, inline small
 * objects and drives that are offline at start-up, and the index opened on
 * a full disk (a real 256 KiB tmpfs in a private mount namespace, as root).
 *
 * Each test builds a fresh store under /tmp and removes it at the end. Most
 * tests use 4 KiB blocks so that multi-stripe objects stay small and the
 * whole file runs in a few seconds, also under ASan.
 */
#include "store.h"
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <openssl/evp.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define BS   4096u
#define NDRV 6
#define MIB  (1024u * 1024u)

typedef struct fixture {
    char root[256];
    char dirs[NDRV][300];
    const char *dirp[NDRV];
    char meta[300];
    store_opts o;
    store *s;
} fixture;

/* Quiet by default: the store logs every lost shard at WARN, and these
 * tests lose thousands. STORE_TEST_LOG=1 shows them. */
__attribute__((constructor)) static void
quiet_logs(void)
{
    if (!getenv("STORE_TEST_LOG"))
        mrd_log_setup(MRD_LOG_ERROR + 1, "test");
}

static int
rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void
fx_rm(fixture *f)
{
    nftw(f->root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* Builds options for a fresh root; does not open. */
static void
fx_init(fixture *f, uint32_t bs, unsigned flags)
{
    memset(f, 0, sizeof(*f));
    snprintf(f->root, sizeof(f->root), "/tmp/store_test.XXXXXX");
    if (!mkdtemp(f->root))
        abort();
    for (int i = 0; i < NDRV; i++) {
        snprintf(f->dirs[i], sizeof(f->dirs[i]), "%s/d%d", f->root, i);
        f->dirp[i] = f->dirs[i];
    }
    snprintf(f->meta, sizeof(f->meta), "%s/meta", f->root);
    store_opts_default(&f->o);
    f->o.data_dirs = f->dirp;
    f->o.n_data_dirs = NDRV;
    f->o.meta_dir = f->meta;
    f->o.block_size = bs;
    f->o.index_map_size = 64ull << 20;
    f->o.flags = flags;
}

static int
fx_open(fixture *f, uint32_t bs, unsigned flags)
{
    fx_init(f, bs, flags);
    return store_open(&f->o, &f->s);
}

static void
fx_done(fixture *f)
{
    store_close(f->s);
    f->s = NULL;
    fx_rm(f);
}

static void
fill_pattern(unsigned char *b, size_t n, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        b[i] = (unsigned char)x;
    }
}

static void
md5_hex(const void *d, size_t n, char out[33])
{
    unsigned char md[16];
    unsigned int l = 0;
    EVP_Digest(d, n, md, &l, EVP_md5(), NULL);
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* Writes data in irregular chunks with store_writer_open flags; returns 0
 * or the error. */
static int
put_flags(store *s, const char *key, const unsigned char *data, size_t n, unsigned flags,
          store_put_result *res)
{
    store_writer *w;
    size_t off = 0, chunk = 1;
    int rc = store_writer_open(s, "bkt", key, "v1", flags, &w);

    if (rc != 0)
        return rc;
    while (off < n) {
        size_t c = chunk < n - off ? chunk : n - off;
        if ((rc = store_writer_write(w, data + off, c)) != 0) {
            store_writer_abort(w);
            return rc;
        }
        off += c;
        chunk = chunk * 3 + 7; /* 1, 10, 37, 118, ... crosses every boundary */
        if (chunk > 3 * MIB)
            chunk = 4093;
    }
    return store_writer_finish(w, res);
}

static int
put(store *s, const char *key, const unsigned char *data, size_t n, store_put_result *res)
{
    return put_flags(s, key, data, n, 0, res);
}

/* Reads [off, off+len) in chunks of `step` and compares with want. */
static int
read_check(store *s, const store_put_result *res, const unsigned char *want, uint64_t off,
           size_t len, size_t step)
{
    store_reader *r;
    unsigned char *buf = malloc(step ? step : 1);
    int rc = store_reader_open(s, res->layout, res->layout_len, &r), bad = 0;

    if (rc != 0) {
        free(buf);
        return rc;
    }
    for (size_t done = 0; done < len && rc == 0;) {
        size_t want_n = step < len - done ? step : len - done, got = 0;
        rc = store_reader_read(r, off + done, buf, want_n, &got);
        if (rc == 0 && (got != want_n || memcmp(buf, want + off + done, got) != 0))
            bad = 1;
        done += got;
        if (rc == 0 && got == 0)
            break;
    }
    store_reader_close(r);
    free(buf);
    return rc ? rc : (bad ? MRD_ECORRUPT : 0);
}

static int count__n;

static int
count_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    const char *dot = strrchr(p + ftw->base, '.');
    if (flag == FTW_F && dot && dot[1] >= '0' && dot[1] <= '9' && sb->st_size > 0)
        count__n++;
    return 0;
}

static int
count_all_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    const char *dot = strrchr(p + ftw->base, '.');
    (void)sb;
    if (flag == FTW_F && dot && dot[1] >= '0' && dot[1] <= '9')
        count__n++;
    return 0;
}

/* Number of shard-named files under dir, empty pre-created ones included. */
static int
count_all_files(const char *dir)
{
    count__n = 0;
    if (nftw(dir, count_all_cb, 16, FTW_PHYS) != 0)
        return -1;
    return count__n;
}

/* Number of shard files (<id>.<n>) holding data under dir, in tmp/ or obj/.
 * The store's pool of pre-created files (empty until a write takes them) is
 * not counted: test_pool_* check those. */
static int
count_files(const char *dir)
{
    count__n = 0;
    if (nftw(dir, count_cb, 16, FTW_PHYS) != 0)
        return -1;
    return count__n;
}

/* Where shard `shard` of an object lives. White-box: FORMAT.md puts the
 * drive index of shard i at byte 36+i of an erasure-coded layout blob. */
static int
shard_drive(fixture *f, const store_put_result *res, int shard)
{
    (void)f;
    return ((const unsigned char *)res->layout)[36 + shard];
}

static void
shard_file(fixture *f, const store_put_result *res, int shard, char *out, size_t outsz)
{
    store_layout_info li;

    out[0] = '\0';
    if (store_layout_describe(res->layout, res->layout_len, &li) != 0 || li.is_inline)
        return;
    snprintf(out, outsz, "%s/obj/%.2s/%s.%d", f->dirs[shard_drive(f, res, shard)], li.object_id,
             li.object_id, shard);
}

/* ---- round trips ---------------------------------------------------------- */

static void
roundtrip_sizes(uint32_t bs, unsigned flags)
{
    fixture f;
    size_t stripe = 4 * (size_t)bs;
    size_t sizes[] = {0, 1, bs - 1, bs, bs + 1, stripe - 1, stripe, stripe + 1, 5 * MIB + 3};
    unsigned char *data = malloc(5 * MIB + 3);

    REQUIRE(fx_open(&f, bs, flags) == 0);
    fill_pattern(data, 5 * MIB + 3, 42);
    for (size_t t = 0; t < sizeof(sizes) / sizeof(sizes[0]); t++) {
        size_t n = sizes[t];
        store_put_result res;
        char md[33];
        int rc = put(f.s, "obj", data, n, &res);
        CHECK_EQ_INT(rc, 0);
        if (rc != 0)
            continue;
        CHECK_EQ_INT(res.size, n);
        md5_hex(data, n, md);
        CHECK_STR(res.etag, md);
        CHECK_EQ_INT(res.degraded, 0);
        /* whole object, in odd-sized chunks, and ranges at the edges */
        CHECK_EQ_INT(read_check(f.s, &res, data, 0, n, 70001), 0);
        CHECK_EQ_INT(read_check(f.s, &res, data, 0, n, n ? n : 1), 0);
        if (n > 2) {
            CHECK_EQ_INT(read_check(f.s, &res, data, 1, n - 2, 333), 0);
            CHECK_EQ_INT(read_check(f.s, &res, data, n / 2, n - n / 2, bs + 5), 0);
            CHECK_EQ_INT(read_check(f.s, &res, data, n - 1, 1, 1), 0);
        }
        /* reads past the end return 0 bytes */
        {
            store_reader *r;
            size_t got = 99;
            unsigned char b[8];
            REQUIRE(store_reader_open(f.s, res.layout, res.layout_len, &r) == 0);
            CHECK_EQ_INT(store_reader_size(r), n);
            CHECK_EQ_INT(store_reader_read(r, n, b, sizeof(b), &got), 0);
            CHECK_EQ_INT(got, 0);
            store_reader_close(r);
        }
        CHECK_EQ_INT(store_object_delete_data(f.s, res.layout, res.layout_len), 0);
        store_put_result_clear(&res);
    }
    CHECK_EQ_INT(count_files(f.root), 0); /* delete freed every shard */
    free(data);
    fx_done(&f);
}

static void
test_roundtrip_small_blocks(void)
{
    roundtrip_sizes(BS, STORE_OPT_NO_INLINE);
}

static void
test_roundtrip_default_block(void)
{
    roundtrip_sizes(STORE_DEFAULT_BLOCK_SIZE, 0);
}

static void
test_inline_small_objects(void)
{
    fixture f;
    unsigned char data[1000];
    store_put_result res;
    store_layout_info li;

    REQUIRE(fx_open(&f, STORE_DEFAULT_BLOCK_SIZE, 0) == 0);
    fill_pattern(data, sizeof(data), 7);
    REQUIRE(put(f.s, "small", data, sizeof(data), &res) == 0);
    REQUIRE(store_layout_describe(res.layout, res.layout_len, &li) == 0);
    CHECK(li.is_inline);
    CHECK_EQ_INT(li.size, sizeof(data));
    CHECK_EQ_INT(count_files(f.root), 0); /* never touched the drives */
    CHECK_EQ_INT(read_check(f.s, &res, data, 0, sizeof(data), 77), 0);
    /* one flipped bit in the blob is refused, not served */
    ((unsigned char *)res.layout)[50] ^= 1;
    {
        store_reader *r = NULL;
        CHECK_EQ_INT(store_reader_open(f.s, res.layout, res.layout_len, &r), MRD_ECORRUPT);
    }
    store_put_result_clear(&res);
    /* just above the threshold: striped */
    {
        unsigned char *big = malloc(STORE_DEFAULT_INLINE_MAX + 1);
        fill_pattern(big, STORE_DEFAULT_INLINE_MAX + 1, 8);
        REQUIRE(put(f.s, "big", big, STORE_DEFAULT_INLINE_MAX + 1, &res) == 0);
        REQUIRE(store_layout_describe(res.layout, res.layout_len, &li) == 0);
        CHECK(!li.is_inline);
        CHECK_EQ_INT(count_files(f.root), 6);
        CHECK_EQ_INT(read_check(f.s, &res, big, 0, STORE_DEFAULT_INLINE_MAX + 1, 4096), 0);
        store_put_result_clear(&res);
        free(big);
    }
    fx_done(&f);
}

/* STORE_WRITE_NO_MD5: no MD5 (the replication receiver checks the data
 * another way), inline, one stripe and several stripes (fed in irregular
 * chunks), and the data reads back the same. */
static void
test_no_md5(void)
{
    static const size_t sizes[] = {0, 1000, STORE_DEFAULT_INLINE_MAX + 1, 3 * MIB + 17};
    fixture f;
    unsigned char *data = malloc(3 * MIB + 17);
    store_put_result res;
    char md5[33];

    REQUIRE(data != NULL);
    REQUIRE(fx_open(&f, BS, 0) == 0);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t n = sizes[i];
        char key[16];

        fill_pattern(data, n, (uint32_t)i + 20);
        snprintf(key, sizeof(key), "crc%zu", i);
        REQUIRE(put_flags(f.s, key, data, n, STORE_WRITE_NO_MD5, &res) == 0);
        CHECK_EQ_INT(res.size, n);
        CHECK_STR(res.etag, ""); /* no MD5 was computed */
        CHECK_EQ_INT(read_check(f.s, &res, data, 0, n, 65536), 0);
        store_put_result_clear(&res);
        /* without the flag: the MD5 */
        REQUIRE(put(f.s, key, data, n, &res) == 0);
        md5_hex(data, n, md5);
        CHECK_STR(res.etag, md5);
        store_put_result_clear(&res);
    }
    fx_done(&f);
    free(data);
}

static void
test_placement_spreads(void)
{
    fixture f;
    int first[NDRV] = {0};
    unsigned char data[3 * BS];

    REQUIRE(fx_open(&f, BS, STORE_OPT_NO_INLINE) == 0);
    fill_pattern(data, sizeof(data), 3);
    for (int i = 0; i < 24; i++) {
        char key[32];
        store_put_result res;
        store_writer *w;
        snprintf(key, sizeof(key), "k%d", i);
        REQUIRE(store_writer_open(f.s, "bkt", key, "v", 0, &w) == 0);
        REQUIRE(store_writer_write(w, data, sizeof(data)) == 0);
        REQUIRE(store_writer_finish(w, &res) == 0);
        int d = shard_drive(&f, &res, 0);
        CHECK(d >= 0);
        if (d >= 0)
            first[d]++;
        /* shard i is on drive (h + i) mod D */
        for (int sh = 1; sh < 6; sh++)
            CHECK_EQ_INT(shard_drive(&f, &res, sh), (d + sh) % NDRV);
        store_put_result_clear(&res);
    }
    for (int d = 0; d < NDRV; d++)
        CHECK(first[d] > 0); /* 24 keys: every drive starts some object */
    fx_done(&f);
}

/* ---- losses ----------------------------------------------------------------- */

static void
test_all_loss_patterns(void)
{
    fixture f;
    size_t n = 5 * 4 * BS + 1234; /* 5 full stripes + a partial one */
    unsigned char *data = malloc(n);
    store_put_result res;
    int combos_ok = 0, combos_fail = 0;

    REQUIRE(fx_open(&f, BS, STORE_OPT_NO_INLINE) == 0);
    fill_pattern(data, n, 99);
    REQUIRE(put(f.s, "x", data, n, &res) == 0);
    for (unsigned mask = 0; mask < (1u << NDRV); mask++) {
        int lost = __builtin_popcount(mask);
        if (lost > 3)
            continue;
        /* (a) drives offline */
        for (int d = 0; d < NDRV; d++)
            if (mask & (1u << d))
                store_drive_set_offline(f.s, d);
        int rc1 = read_check(f.s, &res, data, 0, n, 3 * BS + 11);
        int rc2 = read_check(f.s, &res, data, BS / 2, 2 * BS, 2 * BS);
        CHECK_EQ_INT(store_drives_rescan(f.s), NDRV);
        /* (b) the shard files themselves removed (moved aside) */
        char p[600], q[700];
        for (int sh = 0; sh < 6; sh++) {
            if (!(mask & (1u << sh)))
                continue;
            shard_file(&f, &res, sh, p, sizeof(p));
            snprintf(q, sizeof(q), "%s.aside", p);
            CHECK(rename(p, q) == 0);
        }
        int rc3 = read_check(f.s, &res, data, 0, n, n);
        for (int sh = 0; sh < 6; sh++) {
            if (!(mask & (1u << sh)))
                continue;
            shard_file(&f, &res, sh, p, sizeof(p));
            snprintf(q, sizeof(q), "%s.aside", p);
            CHECK(rename(q, p) == 0);
        }
        if (lost <= 2) {
            CHECK_EQ_INT(rc1, 0);
            CHECK_EQ_INT(rc2, 0);
            CHECK_EQ_INT(rc3, 0);
            combos_ok += rc1 == 0 && rc2 == 0 && rc3 == 0;
        } else {
            CHECK_EQ_INT(rc1, MRD_EDEGRADED);
            CHECK_EQ_INT(rc3, MRD_EDEGRADED);
            combos_fail += rc1 == MRD_EDEGRADED && rc3 == MRD_EDEGRADED;
        }
    }
    CHECK_EQ_INT(combos_ok, 1 + 6 + 15);
    CHECK_EQ_INT(combos_fail, 20);
    {
        store_status st;
        REQUIRE(store_get_status(f.s, &st) == 0);
        CHECK(st.reconstructed_reads > 0);
        CHECK_EQ_INT(st.online_drives, NDRV);
    }
    store_put_result_clear(&res);
    free(data);
    fx_done(&f);
}

static void
flip_byte(const char *path, off_t off)
{
    int fd = open(path, O_RDWR);
    unsigned char b;
    if (fd < 0)
        return;
    if (pread(fd, &b, 1, off) == 1) {
        b ^= 0x40;
        if (pwrite(fd, &b, 1, off) != 1)
            abort();
    }
    close(fd);
}

static void
test_bitflip_detected_and_repaired(void)
{
    fixture f;
    size_t n = 3 * 4 * BS + 100;
    unsigned char *data = malloc(n);
    store_put_result res;
    store_status st;
    char p0[600], p4[600];
    int rebuilt = -1;

    REQUIRE(fx_open(&f, BS, STORE_OPT_NO_INLINE) == 0);
    fill_pattern(data, n, 5);
    REQUIRE(put(f.s, "flip", data, n, &res) == 0);
    shard_file(&f, &res, 0, p0, sizeof(p0));
    shard_file(&f, &res, 4, p4, sizeof(p4));
    /* data shard 0, stripe 1, byte 17; parity shard 4, stripe 2 */
    flip_byte(p0, 64 + (BS + 4) + 17);
    flip_byte(p4, 64 + 2 * (BS + 4) + 3);
    CHECK_EQ_INT(read_check(f.s, &res, data, 0, n, n), 0);
    REQUIRE(store_get_status(f.s, &st) == 0);
    CHECK(st.checksum_errors >= 1);
    CHECK(st.reconstructed_reads >= 1);
    CHECK_EQ_INT(st.heal_queue, 1);
    /* heal finds both (the parity flip was never read) */
    CHECK_EQ_INT(store_heal_object(f.s, res.layout, res.layout_len, &rebuilt), 0);
    CHECK_EQ_INT(rebuilt, 2);
    CHECK_EQ_INT(store_heal_object(f.s, res.layout, res.layout_len, &rebuilt), 0);
    CHECK_EQ_INT(rebuilt, 0);
    /* now readable with 2 other drives gone: proves the rewritten shards */
    store_drive_set_offline(f.s, shard_drive(&f, &res, 1));
    store_drive_set_offline(f.s, shard_drive(&f, &res, 2));
    REQUIRE(store_get_status(f.s, &st) == 0);
    uint64_t before = st.checksum_errors;
    CHECK_EQ_INT(read_check(f.s, &res, data, 0, n, 5000), 0);
    store_drives_rescan(f.s);
    REQUIRE(store_get_status(f.s, &st) == 0);
    CHECK_EQ_INT(st.checksum_errors, before); /* nothing bad left to find */
    CHECK_EQ_INT(before, 4); /* read: shard 0 + parity 4 (rebuild); heal pass 1: both again */
    /* a flipped header is caught too */
    flip_byte(p0, 20);
    CHECK_EQ_INT(read_check(f.s, &res, data, 0, n, n), 0);
    CHECK_EQ_INT(store_heal_object(f.s, res.layout, res.layout_len, &rebuilt), 0);
    CHECK_EQ_INT(rebuilt, 1);
    store_put_result_clear(&res);
    free(data);
    fx_done(&f);
}

/* ---- crash mid-write -------------------------------------------------------- */

static void
test_abort_removes_everything(void)
{
    fixture f;
    unsigned char *data = malloc(10 * BS);
    store_writer *w;

    REQUIRE(fx_open(&f, BS, STORE_OPT_NO_INLINE) == 0);
    fill_pattern(data, 10 * BS, 1);
    REQUIRE(store_writer_open(f.s, "b", "k", "v", 0, &w) == 0);
    REQUIRE(store_writer_write(w, data, 10 * BS) == 0);
    CHECK_EQ_INT(count_files(f.root), 6); /* two stripes in tmp/ */
    store_writer_abort(w);
    CHECK_EQ_INT(count_files(f.root), 0);
    free(data);
    fx_done(&f);
}

static void
test_crash_mid_write_cleaned_at_start(void)
{
    fixture f;
    pid_t pid;
    int status = 0, left = 0;
    uint64_t removed = 0;

    fx_init(&f, BS, STORE_OPT_NO_INLINE);
    pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        /* The child dies with one object finished but never recorded (as when
         * the process dies before the engine's WAL commit), half of a second
         * one on the drives, and its pool of pre-created files. */
        store *s;
        store_writer *w;
        store_put_result res;
        unsigned char buf[3 * BS];
        fill_pattern(buf, sizeof(buf), 9);
        if (store_open(&f.o, &s) != 0 || put(s, "done", buf, sizeof(buf), &res) != 0 ||
            store_writer_open(s, "b", "k", "v", 0, &w) != 0)
            _exit(2);
        for (int i = 0; i < 4; i++)
            if (store_writer_write(w, buf, sizeof(buf)) != 0)
                _exit(3);
        _exit(0);
    }
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK_EQ_INT(count_files(f.root), 12); /* leftovers with data exist ... */
    CHECK(count_all_files(f.root) > 12);   /* ... and the dead process's pool */
    /* Nothing is visible: no layout references them. Start-up as the engine
     * runs it: store_open empties tmp/, the sweep (after the WAL replay)
     * removes every unreferenced file in obj/, the new pool's excepted. */
    REQUIRE(store_open(&f.o, &f.s) == 0);
    CHECK_EQ_INT(store_sweep_orphans(f.s, &removed), 0);
    CHECK(removed >= 12);
    CHECK_EQ_INT(count_files(f.root), 0);
    /* the new process's writes still find their pre-created files */
    {
        unsigned char buf[2 * BS];
        store_put_result res;
        store_status st;
        fill_pattern(buf, sizeof(buf), 10);
        for (int i = 0; i < 20; i++) {
            char key[16];
            snprintf(key, sizeof(key), "n%d", i);
            REQUIRE(put(f.s, key, buf, sizeof(buf), &res) == 0);
            CHECK_EQ_INT(read_check(f.s, &res, buf, 0, sizeof(buf), BS), 0);
            CHECK_EQ_INT(store_object_delete_data(f.s, res.layout, res.layout_len), 0);
            store_put_result_clear(&res);
        }
        REQUIRE(store_get_status(f.s, &st) == 0);
        CHECK(st.pool_hits > 0);
    }
    store_close(f.s);
    f.s = NULL;
    left = count_all_files(f.root);
    CHECK_EQ_INT(left, 0); /* close removed the pool's files */
    fx_rm(&f);
}

/* The pool hands out pre-created files; a write that finds its rotation
 * empty (or a store without the pool) creates its own files and syncs their
 * directories; both read back the same; nothing leaks at close. */
static void
test_pool_and_fallback_writes(void)
{
    unsigned flags[2] = {STORE_OPT_NO_INLINE, STORE_OPT_NO_INLINE | STORE_OPT_NO_POOL};
    unsigned char *data = malloc(5 * BS + 3);

    fill_pattern(data, 5 * BS + 3, 77);
    for (int t = 0; t < 2; t++) {
        fixture f;
        store_status st;
        REQUIRE(fx_open(&f, BS, flags[t]) == 0);
        /* the refill thread fills the pool after open (bounded wait) */
        for (int i = 0; i < 1000 && t == 0; i++) {
            REQUIRE(store_get_status(f.s, &st) == 0);
            if (st.pool_ready > 0)
                break;
            usleep(10000);
        }
        /* 24 writes with one key, all in one rotation: more than the pool
         * keeps per rotation, so the pooled store may also miss */
        for (int i = 0; i < 24; i++) {
            store_put_result res;
            REQUIRE(put(f.s, "same-key", data, 5 * BS + 3, &res) == 0);
            CHECK_EQ_INT(res.degraded, 0);
            CHECK_EQ_INT(read_check(f.s, &res, data, 0, 5 * BS + 3, 4096), 0);
            CHECK_EQ_INT(count_files(f.root), 6);
            CHECK_EQ_INT(store_object_delete_data(f.s, res.layout, res.layout_len), 0);
            store_put_result_clear(&res);
        }
        REQUIRE(store_get_status(f.s, &st) == 0);
        CHECK_EQ_INT(st.pool_hits + st.pool_misses, 24);
        if (t == 0) {
            CHECK(st.pool_hits >= 1);
            CHECK(count_all_files(f.root) > 0); /* pre-created, empty */
        } else {
            CHECK_EQ_INT(st.pool_hits, 0);
            CHECK_EQ_INT(count_all_files(f.root), 0);
        }
        store_close(f.s);
        f.s = NULL;
        CHECK_EQ_INT(count_all_files(f.root), 0);
        fx_rm(&f);
    }
    free(data);
}

/* ---- heal ------------------------------------------------------------------- */

static void
test_heal_restores_all_shards(void)
{
    fixture f;
    size_t n = 7 * 4 * BS + 3;
    unsigned char *data = malloc(n);
    store_put_result res;
    char p[600];
    int rebuilt = -1;
    struct stat sb0, sb;

    REQUIRE(fx_open(&f, BS, STORE_OPT_NO_INLINE) == 0);
    fill_pattern(data, n, 77);
    REQUIRE(put(f.s, "h", data, n, &res) == 0);
    shard_file(&f, &res, 3, p, sizeof(p));
    REQUIRE(stat(p, &sb0) == 0);
    /* lose one data and one parity shard, in different ways */
    CHECK(unlink(p) == 0);
    shard_file(&f, &res, 5, p, sizeof(p));
    CHECK(truncate(p, 100) == 0);
    CHECK_EQ_INT(store_heal_object(f.s, res.layout, res.layout_len, &rebuilt), 0);
    CHECK_EQ_INT(rebuilt, 2);
    for (int sh = 0; sh < 6; sh++) {
        shard_file(&f, &res, sh, p, sizeof(p));
        CHECK(stat(p, &sb) == 0 && sb.st_size == sb0.st_size);
    }
    /* read with the two untouched parity-free... drop two others instead */
    store_drive_set_offline(f.s, shard_drive(&f, &res, 0));
    store_drive_set_offline(f.s, shard_drive(&f, &res, 1));
    CHECK_EQ_INT(read_check(f.s, &res, data, 0, n, n), 0);
    store_drives_rescan(f.s);
    /* more than m lost: heal refuses with a clear error */
    for (int sh = 0; sh < 3; sh++) {
        shard_file(&f, &res, sh, p, sizeof(p));
        CHECK(unlink(p) == 0);
    }
    CHECK_EQ_INT(store_heal_object(f.s, res.layout, res.layout_len, &rebuilt), MRD_EDEGRADED);
    store_put_result_clear(&res);
    free(data);
    fx_done(&f);
}

static void
test_background_heal_all(void)
{
    fixture f;
    unsigned char *data = malloc(9 * BS);
    store_status st;
    char p[600];

    REQUIRE(fx_open(&f, BS, STORE_OPT_NO_INLINE) == 0);
    fill_pattern(data, 9 * BS, 2);
    for (int i = 0; i < 5; i++) {
        char key[16];
        store_put_result res;
        snprintf(key, sizeof(key), "o%d", i);
        REQUIRE(put(f.s, key, data, 9 * BS, &res) == 0);
        store_version v = {.version_id = "v1",
                           .size = res.size,
                           .etag = res.etag,
                           .layout = res.layout,
                           .layout_len = res.layout_len};
        store_index_op op = {.type = STORE_OP_VERSION_PUT,
                             .op_flags = STORE_OPF_CURRENT,
                             .bucket = "bkt",
                             .key = key,
                             .version = &v};
        REQUIRE(store_index_apply(f.s, &op, 1, (uint64_t)i + 1) == 0);
        shard_file(&f, &res, i, p, sizeof(p)); /* lose a different shard each */
        CHECK(unlink(p) == 0);
        store_put_result_clear(&res);
    }
    REQUIRE(store_heal_start(f.s, 1) == 0);
    store_heal_wait(f.s);
    REQUIRE(store_get_status(f.s, &st) == 0);
    CHECK_EQ_INT(st.heal_running, 0);
    CHECK_EQ_INT(st.heal_objects_total, 5);
    CHECK_EQ_INT(st.heal_objects_checked, 5);
    CHECK_EQ_INT(st.heal_shards_rebuilt, 5);
    CHECK_EQ_INT(st.heal_errors, 0);
    CHECK_EQ_INT(count_files(f.root), 30);
    free(data);
    fx_done(&f);
}

/* ---- drives ------------------------------------------------------------------ */

static void
test_offline_drive_degraded_write(void)
{
    fixture f;
    unsigned char *data = malloc(6 * BS);
    store_put_result res;
    store_status st;

    fx_init(&f, BS, STORE_OPT_NO_INLINE);
    /* drive 2 is a plain file: it cannot be a drive */
    REQUIRE(mkdir(f.dirs[2], 0755) == 0 || 1);
    rmdir(f.dirs[2]);
    {
        FILE *fp = fopen(f.dirs[2], "w");
        REQUIRE(fp != NULL);
        fclose(fp);
    }
    REQUIRE(store_open(&f.o, &f.s) == 0);
    REQUIRE(store_get_status(f.s, &st) == 0);
    CHECK_EQ_INT(st.online_drives, NDRV - 1);
    CHECK_EQ_INT(st.drives[2].state, STORE_DRIVE_OFFLINE);
    CHECK(st.drives[0].total_bytes > 0);
    fill_pattern(data, 6 * BS, 4);
    REQUIRE(put(f.s, "dg", data, 6 * BS, &res) == 0);
    CHECK_EQ_INT(res.degraded, 1);
    CHECK_EQ_INT(count_files(f.root), 5);
    CHECK_EQ_INT(read_check(f.s, &res, data, 0, 6 * BS, 6 * BS), 0);
    REQUIRE(store_get_status(f.s, &st) == 0);
    CHECK_EQ_INT(st.degraded_writes, 1);
    CHECK_EQ_INT(st.heal_queue, 1);
    /* the drive comes back; the queued heal writes the missing shard */
    unlink(f.dirs[2]);
    CHECK_EQ_INT(store_drives_rescan(f.s), NDRV);
    REQUIRE(store_heal_start(f.s, 0) == 0);
    store_heal_wait(f.s);
    REQUIRE(store_get_status(f.s, &st) == 0);
    CHECK_EQ_INT(st.heal_shards_rebuilt, 1);
    CHECK_EQ_INT(st.heal_queue, 0);
    CHECK_EQ_INT(count_files(f.root), 6);
    store_put_result_clear(&res);
    /* with 3 drives offline a 4+2 write is refused up front */
    for (int d = 0; d < 3; d++)
        store_drive_set_offline(f.s, d);
    {
        store_writer *w = NULL;
        int rc = MRD_EDEGRADED;
        for (int i = 0; i < 20 && rc == MRD_EDEGRADED; i++) {
            char k[16];
            snprintf(k, sizeof(k), "k%d", i);
            rc = store_writer_open(f.s, "b", k, "v", 0, &w);
            CHECK_EQ_INT(rc, MRD_EDEGRADED); /* any 6 of 6 drives include >= 3 offline */
            if (rc == 0)
                store_writer_abort(w);
        }
    }
    free(data);
    fx_done(&f);
}

/* ---- fault hooks ----------------------------------------------------------- */

typedef struct fault_plan {
    store_fault_point point;
    int skip; /* let this many pass */
    int fail; /* then fail this many */
    int seen;
    int err;
} fault_plan;

static int
fault_cb(void *user, store_fault_point p, const char *detail)
{
    fault_plan *fp = user;
    (void)detail;
    if (p != fp->point)
        return 0;
    int n = fp->seen++;
    if (n >= fp->skip && n < fp->skip + fp->fail)
        return fp->err;
    return 0;
}

/*
 * Freeing a degraded object's data: the heal queue's entry is dropped
 * before the shards. A failed commit of that drop (as a crash there) leaves
 * entry and shards both (the heal pass or the orphan sweep tidies them),
 * never an entry whose shards are gone, which every heal pass would report
 * as lost for ever.
 */
static void
test_delete_data_drops_the_heal_entry_first(void)
{
    fixture f;
    unsigned char *data = malloc(9 * BS);
    store_put_result res;
    store_status st;
    fault_plan fp = {STORE_FAULT_WRITE, 3, 1, 0, -EIO};
    int files;

    REQUIRE(fx_open(&f, BS, STORE_OPT_NO_INLINE) == 0);
    fill_pattern(data, 9 * BS, 7);
    store_set_fault_hook(f.s, fault_cb, &fp);
    REQUIRE(put(f.s, "d", data, 9 * BS, &res) == 0);
    REQUIRE(res.degraded == 1);
    store_set_fault_hook(f.s, NULL, NULL);
    CHECK_EQ_INT(store_drives_rescan(f.s), NDRV);
    REQUIRE(store_get_status(f.s, &st) == 0);
    CHECK_EQ_INT(st.heal_queue, 1);
    files = count_files(f.root);

    fp = (fault_plan){STORE_FAULT_COMMIT, 0, 1, 0, -EIO};
    store_set_fault_hook(f.s, fault_cb, &fp);
    CHECK(store_object_delete_data(f.s, res.layout, res.layout_len) != 0);
    store_set_fault_hook(f.s, NULL, NULL);
    REQUIRE(store_get_status(f.s, &st) == 0);
    CHECK_EQ_INT(st.heal_queue, 1);
    CHECK_EQ_INT(count_files(f.root), files); /* the shards are still there */

    CHECK_EQ_INT(store_object_delete_data(f.s, res.layout, res.layout_len), 0);
    REQUIRE(store_get_status(f.s, &st) == 0);
    CHECK_EQ_INT(st.heal_queue, 0);
    CHECK(count_files(f.root) < files);
    store_put_result_clear(&res);
    free(data);
    fx_done(&f);
}

static void
test_fault_write(void)
{
    fixture f;
    unsigned char *data = malloc(9 * BS);
    store_put_result res;
    fault_plan fp = {STORE_FAULT_WRITE, 3, 1, 0, -EIO};

    REQUIRE(fx_open(&f, BS, STORE_OPT_NO_INLINE) == 0);
    fill_pattern(data, 9 * BS, 6);
    /* one shard write fails: success, but flagged degraded and queued */
    store_set_fault_hook(f.s, fault_cb, &fp);
    REQUIRE(put(f.s, "a", data, 9 * BS, &res) == 0);
    CHECK_EQ_INT(res.degraded, 1);
    CHECK_EQ_INT(read_check(f.s, &res, data, 0, 9 * BS, 9 * BS), 0);
    store_put_result_clear(&res);
    CHECK_EQ_INT(store_drives_rescan(f.s), NDRV);
    /* three shard writes fail: the write fails and leaves nothing */
    int before = count_files(f.root);
    fp = (fault_plan){STORE_FAULT_WRITE, 6, 3, 0, -EIO};
    CHECK_EQ_INT(put(f.s, "b", data, 9 * BS, &res), MRD_EDEGRADED);
    CHECK_EQ_INT(count_files(f.root), before);
    CHECK_EQ_INT(store_drives_rescan(f.s), NDRV);
    /* ENOSPC on every write */
    fp = (fault_plan){STORE_FAULT_WRITE, 0, 1000, 0, -ENOSPC};
    CHECK(put(f.s, "c", data, 9 * BS, &res) != 0);
    CHECK_EQ_INT(count_files(f.root), before);
    store_set_fault_hook(f.s, NULL, NULL);
    CHECK_EQ_INT(store_drives_rescan(f.s), NDRV);
    free(data);
    fx_done(&f);
}

/* A write that finds no space marks the drive full, not offline: it keeps
 * serving reads, new writes skip it (degraded, then -ENOSPC when too few
 * drives take shards), and a rescan that finds room clears the mark. */
static void
test_fault_nospace(void)
{
    fixture f;
    unsigned char *data = malloc(9 * BS);
    store_put_result a, b, c;
    store_status *st = calloc(1, sizeof(*st));
    fault_plan fp = {STORE_FAULT_WRITE, 0, 1, 0, -ENOSPC};

    REQUIRE(st && fx_open(&f, BS, STORE_OPT_NO_INLINE) == 0);
    fill_pattern(data, 9 * BS, 7);
    REQUIRE(put(f.s, "a", data, 9 * BS, &a) == 0);
    store_set_fault_hook(f.s, fault_cb, &fp);
    REQUIRE(put(f.s, "b", data, 9 * BS, &b) == 0);
    CHECK_EQ_INT(b.degraded, 1);
    REQUIRE(store_get_status(f.s, st) == 0);
    CHECK_EQ_INT(st->online_drives, NDRV);
    CHECK_EQ_INT(st->full_drives, 1);
    uint64_t recon = st->reconstructed_reads;
    /* every shard of a, the full drive's too, still reads */
    CHECK_EQ_INT(read_check(f.s, &a, data, 0, 9 * BS, 9 * BS), 0);
    REQUIRE(store_get_status(f.s, st) == 0);
    CHECK(st->reconstructed_reads == recon);
    CHECK_EQ_INT(read_check(f.s, &b, data, 0, 9 * BS, 9 * BS), 0);
    /* no drive has room: the write fails as out of space, leaving nothing */
    int before = count_files(f.root);
    fp = (fault_plan){STORE_FAULT_WRITE, 0, 1000, 0, -ENOSPC};
    CHECK_EQ_INT(put(f.s, "c", data, 9 * BS, &c), -ENOSPC);
    CHECK_EQ_INT(count_files(f.root), before);
    REQUIRE(store_get_status(f.s, st) == 0);
    CHECK_EQ_INT(st->full_drives, NDRV);
    CHECK_EQ_INT(read_check(f.s, &a, data, 0, 9 * BS, 9 * BS), 0);
    store_set_fault_hook(f.s, NULL, NULL);
    /* room again: the rescan clears every mark and writes are whole */
    CHECK_EQ_INT(store_drives_rescan(f.s), NDRV);
    REQUIRE(store_get_status(f.s, st) == 0);
    CHECK_EQ_INT(st->full_drives, 0);
    REQUIRE(put(f.s, "d", data, 9 * BS, &c) == 0);
    CHECK_EQ_INT(c.degraded, 0);
    store_put_result_clear(&a);
    store_put_result_clear(&b);
    store_put_result_clear(&c);
    free(st);
    free(data);
    fx_done(&f);
}

static void
test_fault_fdatasync(void)
{
    fixture f;
    unsigned char *data = malloc(5 * BS);
    store_put_result res;
    fault_plan fp = {STORE_FAULT_FDATASYNC, 0, 3, 0, -EIO};
    store_status st;

    REQUIRE(fx_open(&f, BS, STORE_OPT_NO_INLINE) == 0);
    fill_pattern(data, 5 * BS, 6);
    store_set_fault_hook(f.s, fault_cb, &fp);
    CHECK_EQ_INT(put(f.s, "a", data, 5 * BS, &res), MRD_EDURABLE);
    CHECK_EQ_INT(count_files(f.root), 0);
    REQUIRE(store_get_status(f.s, &st) == 0);
    CHECK_EQ_INT(st.online_drives, NDRV - 3); /* the failing drives went offline */
    CHECK_EQ_INT(store_drives_rescan(f.s), NDRV);
    store_set_fault_hook(f.s, NULL, NULL);
    fx_done(&f);
    /* Without pre-created files the writer creates its own and fsyncs their
     * directories after the 6 fdatasyncs: a failing directory fsync counts. */
    REQUIRE(fx_open(&f, BS, STORE_OPT_NO_INLINE | STORE_OPT_NO_POOL) == 0);
    store_set_fault_hook(f.s, fault_cb, &fp);
    fp = (fault_plan){STORE_FAULT_FDATASYNC, 6, 3, 0, -EIO};
    CHECK_EQ_INT(put(f.s, "b", data, 5 * BS, &res), MRD_EDURABLE);
    CHECK_EQ_INT(count_files(f.root), 0);
    CHECK_EQ_INT(count_all_files(f.root), 0);
    store_set_fault_hook(f.s, NULL, NULL);
    store_drives_rescan(f.s);
    free(data);
    fx_done(&f);
}

static void
test_fault_commit(void)
{
    fixture f;
    fault_plan fp = {STORE_FAULT_COMMIT, 0, 1, 0, MRD_EDURABLE};
    store_index_op op = {.type = STORE_OP_BUCKET_PUT, .bucket = "b1", .blob = "x", .blob_len = 1};
    uint64_t lsn = 99;
    void *v;
    size_t vl;

    REQUIRE(fx_open(&f, BS, 0) == 0);
    store_set_fault_hook(f.s, fault_cb, &fp);
    CHECK_EQ_INT(store_index_apply(f.s, &op, 1, 1), MRD_EDURABLE);
    CHECK_EQ_INT(store_index_last_lsn(f.s, &lsn), 0);
    CHECK_EQ_INT(lsn, 0);
    CHECK_EQ_INT(store_bucket_get(f.s, "b1", &v, &vl), MRD_ENOTFOUND);
    fp = (fault_plan){STORE_FAULT_COMMIT, 0, 1, 0, -EIO};
    CHECK_EQ_INT(store_meta_put(f.s, "k", "v", 1), -EIO);
    CHECK_EQ_INT(store_meta_get(f.s, "k", &v, &vl), MRD_ENOTFOUND);
    CHECK_EQ_INT(store_index_apply(f.s, &op, 1, 1), 0); /* hook exhausted: works */
    store_set_fault_hook(f.s, NULL, NULL);
    fx_done(&f);
}

/* ---- index -------------------------------------------------------------------- */

static void
put_version(store *s, const char *key, const char *vid, uint64_t lsn, unsigned opf, uint32_t vf)
{
    store_version v = {.version_id = vid,
                       .size = strlen(key),
                       .etag = "e",
                       .content_type = "t",
                       .hlc = lsn * 10,
                       .flags = vf,
                       .user_meta = "m",
                       .user_meta_len = 1,
                       .vv = "\x01\x02",
                       .vv_len = 2};
    store_index_op op = {
        .type = STORE_OP_VERSION_PUT, .op_flags = opf, .bucket = "bkt", .key = key, .version = &v};
    CHECK_EQ_INT(store_index_apply(s, &op, 1, lsn), 0);
}

static void
test_index_apply_and_lsn(void)
{
    fixture f;
    uint64_t lsn = 1;
    store_version_rec *rec;
    store_version v1 = {.version_id = "v1",
                        .size = 5,
                        .etag = "abc",
                        .content_type = "text/plain",
                        .hlc = 77,
                        .user_meta = "k=v",
                        .user_meta_len = 3,
                        .vv = "VV",
                        .vv_len = 2,
                        .layout = "LAYOUT",
                        .layout_len = 6};
    store_index_op ops[3] = {
        {.type = STORE_OP_BUCKET_PUT, .bucket = "bkt", .blob = "cfg", .blob_len = 3},
        {.type = STORE_OP_VERSION_PUT,
         .op_flags = STORE_OPF_CURRENT,
         .bucket = "bkt",
         .key = "k",
         .version = &v1},
        {.type = STORE_OP_VERSION_PUT, .bucket = "bkt", .key = "k2", .version = &v1},
    };

    REQUIRE(fx_open(&f, BS, 0) == 0);
    CHECK_EQ_INT(store_index_last_lsn(f.s, &lsn), 0);
    CHECK_EQ_INT(lsn, 0);
    CHECK_EQ_INT(store_index_apply(f.s, ops, 3, 5), 0);
    CHECK_EQ_INT(store_index_last_lsn(f.s, &lsn), 0);
    CHECK_EQ_INT(lsn, 5);
    REQUIRE(store_index_get(f.s, "bkt", "k", NULL, &rec) == 0);
    {
        const store_version *v = store_version_rec_get(rec);
        CHECK_STR(v->version_id, "v1");
        CHECK_STR(v->etag, "abc");
        CHECK_STR(v->content_type, "text/plain");
        CHECK_EQ_INT(v->size, 5);
        CHECK_EQ_INT(v->hlc, 77);
        CHECK(v->vv_len == 2 && memcmp(v->vv, "VV", 2) == 0);
        CHECK(v->user_meta_len == 3 && memcmp(v->user_meta, "k=v", 3) == 0);
        CHECK(v->layout_len == 6 && memcmp(v->layout, "LAYOUT", 6) == 0);
    }
    store_version_rec_free(rec);
    /* k2 has a version but no current one */
    CHECK_EQ_INT(store_index_get(f.s, "bkt", "k2", NULL, &rec), MRD_ENOTFOUND);
    REQUIRE(store_index_get(f.s, "bkt", "k2", "v1", &rec) == 0);
    store_version_rec_free(rec);

    /* a replay of LSN <= 5 changes nothing */
    store_index_op del = {
        .type = STORE_OP_VERSION_DEL, .bucket = "bkt", .key = "k", .version_id = "v1"};
    CHECK_EQ_INT(store_index_apply(f.s, &del, 1, 5), 0);
    CHECK_EQ_INT(store_index_get(f.s, "bkt", "k", NULL, &rec), 0);
    store_version_rec_free(rec);

    /* one bad op aborts the whole batch, LSN included */
    store_index_op bad[2] = {
        del,
        {.type = STORE_OP_CURRENT_SET, .bucket = "bkt", .key = "k", .version_id = "nope"},
    };
    CHECK_EQ_INT(store_index_apply(f.s, bad, 2, 6), MRD_ENOTFOUND);
    CHECK_EQ_INT(store_index_last_lsn(f.s, &lsn), 0);
    CHECK_EQ_INT(lsn, 5);
    CHECK_EQ_INT(store_index_get(f.s, "bkt", "k", "v1", &rec), 0);
    store_version_rec_free(rec);

    /* deleting the current version clears the current pointer */
    CHECK_EQ_INT(store_index_apply(f.s, &del, 1, 6), 0);
    CHECK_EQ_INT(store_index_get(f.s, "bkt", "k", NULL, &rec), MRD_ENOTFOUND);
    CHECK_EQ_INT(store_index_apply(f.s, &del, 1, 7), 0); /* absent: still fine */
    CHECK_EQ_INT(store_index_apply(f.s, ops, 1, 0), MRD_EINVAL);

    /* survives close/open */
    store_close(f.s);
    REQUIRE(store_open(&f.o, &f.s) == 0);
    CHECK_EQ_INT(store_index_last_lsn(f.s, &lsn), 0);
    CHECK_EQ_INT(lsn, 7);
    {
        void *b;
        size_t bl;
        REQUIRE(store_bucket_get(f.s, "bkt", &b, &bl) == 0);
        CHECK(bl == 3 && memcmp(b, "cfg", 3) == 0);
        free(b);
    }
    /* oversize keys are refused, not truncated */
    {
        char big[700];
        memset(big, 'x', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        store_version v = {.version_id = "v"};
        store_index_op op = {
            .type = STORE_OP_VERSION_PUT, .bucket = "bkt", .key = big, .version = &v};
        CHECK_EQ_INT(store_index_apply(f.s, &op, 1, 8), MRD_ETOOBIG);
    }
    fx_done(&f);
}

typedef struct collect {
    char names[64][64];
    char vids[64][16];
    int n, stop_at;
} collect;

static int
collect_cb(void *user, const char *key, const store_version *v)
{
    collect *c = user;
    if (c->n < 64) {
        snprintf(c->names[c->n], sizeof(c->names[0]), "%s", key);
        snprintf(c->vids[c->n], sizeof(c->vids[0]), "%s", v->version_id);
    }
    c->n++;
    return c->stop_at && c->n >= c->stop_at;
}

static void
test_index_listing_order(void)
{
    fixture f;
    const char *keys[] = {"b", "a/c", "a", "ab", "a/b", "a0", "a/b/c", "c", "a.b", "A"};
    const char *sorted[] = {"A", "a", "a.b", "a/b", "a/b/c", "a/c", "a0", "ab", "b", "c"};
    collect c;
    uint64_t lsn = 1;

    REQUIRE(fx_open(&f, BS, 0) == 0);
    for (int i = 0; i < 10; i++)
        put_version(f.s, keys[i], "v1", lsn++, STORE_OPF_CURRENT, 0);
    /* an other bucket whose name extends ours must not leak in */
    {
        store_version v = {.version_id = "v1"};
        store_index_op op = {.type = STORE_OP_VERSION_PUT,
                             .op_flags = STORE_OPF_CURRENT,
                             .bucket = "bkt2",
                             .key = "a",
                             .version = &v};
        CHECK_EQ_INT(store_index_apply(f.s, &op, 1, lsn++), 0);
    }
    memset(&c, 0, sizeof(c));
    CHECK_EQ_INT(store_index_list(f.s, "bkt", NULL, NULL, NULL, 0, collect_cb, &c), 0);
    CHECK_EQ_INT(c.n, 10);
    for (int i = 0; i < 10 && i < c.n; i++)
        CHECK_STR(c.names[i], sorted[i]);

    memset(&c, 0, sizeof(c));
    CHECK_EQ_INT(store_index_list(f.s, "bkt", "a/", NULL, NULL, 0, collect_cb, &c), 0);
    CHECK_EQ_INT(c.n, 3);
    CHECK_STR(c.names[0], "a/b");
    CHECK_STR(c.names[2], "a/c");

    memset(&c, 0, sizeof(c));
    CHECK_EQ_INT(store_index_list(f.s, "bkt", "a", "a/b", NULL, 0, collect_cb, &c), 0);
    CHECK_EQ_INT(c.n, 4); /* a/b/c a/c a0 ab */
    CHECK_STR(c.names[0], "a/b/c");
    CHECK_STR(c.names[3], "ab");

    memset(&c, 0, sizeof(c));
    c.stop_at = 2;
    CHECK_EQ_INT(store_index_list(f.s, "bkt", NULL, "a0", NULL, 0, collect_cb, &c), 0);
    CHECK_EQ_INT(c.n, 2);
    CHECK_STR(c.names[0], "ab");
    CHECK_STR(c.names[1], "b");

    /* versions: "a" gets v2 (current) and a delete marker v3 (non-current) */
    put_version(f.s, "a", "v2", lsn++, STORE_OPF_CURRENT, 0);
    put_version(f.s, "a", "v3", lsn++, 0, STORE_VF_DELETE_MARKER);
    memset(&c, 0, sizeof(c));
    CHECK_EQ_INT(store_index_list(f.s, "bkt", "a", NULL, NULL, STORE_LIST_VERSIONS, collect_cb, &c),
                 0);
    CHECK_EQ_INT(c.n, 3 + 6);
    CHECK_STR(c.names[0], "a");
    CHECK_STR(c.vids[0], "v1");
    CHECK_STR(c.vids[1], "v2");
    CHECK_STR(c.vids[2], "v3");
    CHECK_STR(c.names[3], "a.b");
    memset(&c, 0, sizeof(c));
    CHECK_EQ_INT(store_index_list(f.s, "bkt", "a", "a", "v1", STORE_LIST_VERSIONS, collect_cb, &c),
                 0);
    CHECK_STR(c.vids[0], "v2");
    memset(&c, 0, sizeof(c));
    CHECK_EQ_INT(store_index_list(f.s, "bkt", "a", "a", NULL, STORE_LIST_VERSIONS, collect_cb, &c),
                 0);
    CHECK_STR(c.names[0], "a.b");
    /* current listing shows v2 for "a" */
    memset(&c, 0, sizeof(c));
    CHECK_EQ_INT(store_index_list(f.s, "bkt", "a", NULL, NULL, 0, collect_cb, &c), 0);
    CHECK_STR(c.vids[0], "v2");
    /* CURRENT_SET moves the pointer */
    {
        store_index_op op = {
            .type = STORE_OP_CURRENT_SET, .bucket = "bkt", .key = "a", .version_id = "v3"};
        store_version_rec *rec;
        CHECK_EQ_INT(store_index_apply(f.s, &op, 1, lsn++), 0);
        REQUIRE(store_index_get(f.s, "bkt", "a", NULL, &rec) == 0);
        CHECK_STR(store_version_rec_get(rec)->version_id, "v3");
        CHECK(store_version_rec_get(rec)->flags & STORE_VF_DELETE_MARKER);
        store_version_rec_free(rec);
    }
    fx_done(&f);
}

static void
test_meta_keyspace(void)
{
    fixture f;
    void *v = NULL;
    size_t vl = 0;
    uint64_t cursor = 123456789;

    REQUIRE(fx_open(&f, BS, 0) == 0);
    CHECK_EQ_INT(store_meta_get(f.s, "wal/peer/b", &v, &vl), MRD_ENOTFOUND);
    CHECK_EQ_INT(store_meta_put(f.s, "wal/peer/b", &cursor, sizeof(cursor)), 0);
    store_close(f.s);
    REQUIRE(store_open(&f.o, &f.s) == 0);
    REQUIRE(store_meta_get(f.s, "wal/peer/b", &v, &vl) == 0);
    CHECK(vl == sizeof(cursor) && memcmp(v, &cursor, vl) == 0);
    free(v);
    CHECK_EQ_INT(store_meta_del(f.s, "wal/peer/b"), 0);
    CHECK_EQ_INT(store_meta_get(f.s, "wal/peer/b", &v, &vl), MRD_ENOTFOUND);
    CHECK_EQ_INT(store_meta_put(f.s, "", "x", 1), MRD_EINVAL);
    fx_done(&f);
}

/* LMDB writes its reader table through a shared map of meta_dir/lock.mdb,
 * and a page of that map with no block behind it raises SIGBUS on a full
 * disk. store_open gives the whole file blocks first: a fresh one, and one
 * an older build left sparse. LMDB keeps the file's size on reopen (16512
 * bytes is what it asks for, 256 readers on x86-64). */
static void
lock_file_check(const char *meta, long long *size)
{
    char path[400];
    struct stat st;

    snprintf(path, sizeof(path), "%s/lock.mdb", meta);
    REQUIRE(stat(path, &st) == 0);
    CHECK(st.st_size >= 16512);
    CHECK((long long)st.st_blocks * 512 >= (long long)st.st_size); /* no holes */
    *size = (long long)st.st_size;
}

static void
test_index_lock_file_has_blocks(void)
{
    fixture f;
    char path[400];
    long long size = 0, again = 0;
    int fd;

    REQUIRE(fx_open(&f, BS, 0) == 0);
    lock_file_check(f.meta, &size);
    store_close(f.s);
    REQUIRE(store_open(&f.o, &f.s) == 0);
    lock_file_check(f.meta, &again);
    CHECK_EQ_INT(again, size);
    fx_done(&f);

    /* a sparse lock file, as older builds (and LMDB alone) leave it */
    fx_init(&f, BS, 0);
    REQUIRE(mkdir(f.meta, 0755) == 0);
    snprintf(path, sizeof(path), "%s/lock.mdb", f.meta);
    fd = open(path, O_RDWR | O_CREAT, 0644);
    REQUIRE(fd >= 0);
    CHECK(ftruncate(fd, 16512) == 0);
    close(fd);
    REQUIRE(store_open(&f.o, &f.s) == 0);
    lock_file_check(f.meta, &again);
    CHECK_EQ_INT(again, size);
    fx_done(&f);
}

/* Writes until the file system at dir has no room left; returns the fd of
 * the filler file (open), or -1. */
static int
fill_fs(const char *dir)
{
    static const char page[4096] = {1};
    char path[400];
    int fd;

    snprintf(path, sizeof(path), "%s/filler", dir);
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    while (fd >= 0 && write(fd, page, sizeof(page)) > 0)
        ;
    return fd;
}

/* The child of test_index_open_on_full_disk, in its own mount namespace
 * with meta_dir on a 256 KiB tmpfs. Returns the number of failed checks. */
static int
full_disk_child(fixture *f)
{
    store *s = NULL;
    void *v = NULL;
    size_t vl = 0;
    int fd, rc;

    test__failed = 0;
    if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mkdir(f->meta, 0755) != 0 || mount("tmpfs", f->meta, "tmpfs", 0, "size=256k") != 0)
        return 77;
    /* 1. nothing there yet, no room: refused, nothing mapped */
    fd = fill_fs(f->meta);
    CHECK(fd >= 0);
    CHECK_EQ_INT(store_open(&f->o, &s), -ENOSPC);
    /* 2. room for the lock file but not for data.mdb's first pages: LMDB's
     * pwrite fails, and so does the open, without a fault */
    CHECK(ftruncate(fd, lseek(fd, 0, SEEK_END) - 64 * 1024) == 0);
    rc = store_open(&f->o, &s);
    CHECK(rc == -ENOSPC || rc == -EIO);
    /* 3. room: it opens and takes a write */
    CHECK(ftruncate(fd, 0) == 0);
    rc = store_open(&f->o, &s);
    CHECK_EQ_INT(rc, 0);
    if (rc == 0) {
        CHECK_EQ_INT(store_meta_put(s, "k", "v", 1), 0);
        store_close(s);
    }
    /* 4. full again: the index it has opens, reads, and refuses writes */
    close(fd);
    fd = fill_fs(f->meta);
    rc = store_open(&f->o, &s);
    CHECK_EQ_INT(rc, 0);
    if (rc == 0) {
        CHECK_EQ_INT(store_meta_get(s, "k", &v, &vl), 0);
        CHECK(vl == 1 && v && memcmp(v, "v", 1) == 0);
        free(v);
        CHECK(store_meta_put(s, "k2", "v", 1) < 0);
        store_close(s);
    }
    close(fd);
    umount2(f->meta, MNT_DETACH);
    return test__failed;
}

static void
test_index_open_on_full_disk(void)
{
    fixture f;
    pid_t pid;
    int status = 0;

    if (geteuid() != 0) {
        fprintf(stderr, "  skipped: mounting a tmpfs needs root\n");
        return;
    }
    fx_init(&f, BS, 0);
    fflush(stderr);
    pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0)
        _exit(full_disk_child(&f));
    REQUIRE(waitpid(pid, &status, 0) == pid);
    if (WIFSIGNALED(status))
        fprintf(stderr, "  store_open died of signal %d on a full disk\n", WTERMSIG(status));
    CHECK(WIFEXITED(status));
    if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
        fprintf(stderr, "  skipped: no private mount namespace here\n");
    else
        CHECK_EQ_INT(WEXITSTATUS(status), 0);
    fx_rm(&f);
}

/* Keys at the index's limit: bucket \0 key \0 id must fit LMDB's key size
 * with ids of STORE_ID_MAX bytes. A key of store_key_max bytes works for
 * versions (24-char ids) and uploads (32-char ids); one byte more is refused
 * by store_key_check, which callers run before logging anything. */
static void
test_key_size_limit(void)
{
    fixture f;
    char bucket[64], vid[25], upload[33], *key;
    size_t max;
    store_version_rec *got = NULL;

    REQUIRE(fx_open(&f, BS, 0) == 0);
    memset(bucket, 'b', 63);
    bucket[63] = '\0';
    memset(vid, 'v', 24);
    vid[24] = '\0';
    memset(upload, 'u', 32);
    upload[32] = '\0';
    max = store_key_max(f.s, strlen(bucket));
    CHECK(max >= 300 && max < 1024); /* LMDB's 511 bytes in Debian's build: 414 here */
    CHECK_EQ_INT(store_key_max(f.s, 3), max + 60);
    key = malloc(1100);
    memset(key, 'k', 1099);
    key[1099] = '\0';
    key[max] = '\0';
    CHECK_EQ_INT(store_key_check(f.s, bucket, key), 0);
    {
        store_version v = {.version_id = vid, .size = 1, .etag = "e", .content_type = "t"};
        store_index_op op = {
            .type = STORE_OP_VERSION_PUT, .bucket = bucket, .key = key, .version = &v};
        CHECK_EQ_INT(store_index_apply(f.s, &op, 1, 1), 0);
        CHECK_EQ_INT(store_index_get(f.s, bucket, key, vid, &got), 0);
        store_version_rec_free(got);
    }
    CHECK_EQ_INT(store_mpu_create(f.s, bucket, key, upload, "x", 1), 0);
    key[max] = 'k'; /* one byte longer */
    key[max + 1] = '\0';
    CHECK_EQ_INT(store_key_check(f.s, bucket, key), MRD_ETOOBIG);
    CHECK_EQ_INT(store_mpu_create(f.s, bucket, key, upload, "x", 1), MRD_ETOOBIG);
    memset(key, 'k', 1024); /* S3's longest key */
    key[1024] = '\0';
    CHECK_EQ_INT(store_key_check(f.s, bucket, key), MRD_ETOOBIG);
    CHECK_EQ_INT(store_key_check(f.s, "abc", key), MRD_ETOOBIG);
    free(key);
    fx_done(&f);
}

static void
test_bad_options(void)
{
    fixture f;
    store *s = NULL;

    fx_init(&f, BS, 0);
    f.o.k = 5;
    CHECK_EQ_INT(store_open(&f.o, &s), MRD_ECONFIG); /* 5+2 > 6 drives */
    f.o.k = 4;
    f.o.block_size = 1000;
    CHECK_EQ_INT(store_open(&f.o, &s), MRD_ECONFIG);
    f.o.block_size = BS;
    /* a drive whose identity file names another index stays offline */
    REQUIRE(store_open(&f.o, &s) == 0);
    store_close(s);
    {
        const char *swapped[NDRV];
        for (int i = 0; i < NDRV; i++)
            swapped[i] = f.dirp[i];
        swapped[0] = f.dirp[1];
        swapped[1] = f.dirp[0];
        f.o.data_dirs = swapped;
        store_status st;
        REQUIRE(store_open(&f.o, &s) == 0);
        REQUIRE(store_get_status(s, &st) == 0);
        CHECK_EQ_INT(st.online_drives, NDRV - 2);
        CHECK_EQ_INT(st.drives[0].state, STORE_DRIVE_OFFLINE);
        store_close(s);
        f.o.data_dirs = f.dirp;
    }
    fx_rm(&f);
}

/* ---- multipart: PARTS layouts and uploads ---------------------------------- */

/* Writes one part of upload "up1" of bkt/obj with drives chosen per part. */
static int
put_part(store *s, uint32_t num, const unsigned char *data, size_t n, store_put_result *res)
{
    store_writer *w;
    char vid[32];
    int rc;

    snprintf(vid, sizeof(vid), "up1.%u", num);
    if ((rc = store_writer_open(s, "bkt", "obj", vid, 0, &w)) != 0)
        return rc;
    if ((rc = store_writer_write(w, data, n)) != 0) {
        store_writer_abort(w);
        return rc;
    }
    return store_writer_finish(w, res);
}

static void
test_parts_layout_read_heal_delete(void)
{
    fixture f;
    /* part sizes: several stripes and a bit, one stripe, odd, tiny inline last */
    size_t sz[4] = {3 * 4 * BS + 17, 4 * BS, 12345, 100}, total = 0, off = 0;
    store_put_result res[4];
    store_part_ref refs[4];
    store_layout_info li;
    unsigned char *data;
    void *lay = NULL;
    size_t lay_len = 0;
    store_put_result whole;
    char path[1200];

    REQUIRE(fx_open(&f, BS, 0) == 0);
    for (int i = 0; i < 4; i++)
        total += sz[i];
    data = malloc(total);
    fill_pattern(data, total, 7);
    for (int i = 0; i < 4; i++) {
        REQUIRE(put_part(f.s, (uint32_t)i + 1, data + off, sz[i], &res[i]) == 0);
        refs[i] = (store_part_ref){res[i].layout, res[i].layout_len};
        off += sz[i];
    }
    REQUIRE(store_layout_compose(refs, 4, &lay, &lay_len) == 0);
    CHECK_EQ_INT(store_layout_describe(lay, lay_len, &li), 0);
    CHECK_EQ_INT(li.size, total);
    CHECK_EQ_INT(li.parts, 4);
    CHECK_EQ_INT(li.is_inline, 0);
    /* a corrupt byte anywhere is caught by the CRCs */
    ((unsigned char *)lay)[lay_len / 2] ^= 1;
    CHECK(store_layout_describe(lay, lay_len, &li) == MRD_ECORRUPT);
    ((unsigned char *)lay)[lay_len / 2] ^= 1;
    /* a PARTS layout cannot be a part */
    {
        store_part_ref nested = {lay, lay_len};
        void *x = NULL;
        size_t xl = 0;
        CHECK(store_layout_compose(&nested, 1, &x, &xl) == MRD_ECORRUPT);
    }

    memset(&whole, 0, sizeof(whole));
    whole.layout = lay;
    whole.layout_len = lay_len;
    CHECK_EQ_INT(read_check(f.s, &whole, data, 0, total, 70001), 0);
    CHECK_EQ_INT(read_check(f.s, &whole, data, 0, total, total), 0);
    CHECK_EQ_INT(read_check(f.s, &whole, data, sz[0] - 5, 10 + sz[1], 7), 0); /* across parts */
    CHECK_EQ_INT(read_check(f.s, &whole, data, total - 150, 150, 1000), 0);   /* into inline */
    CHECK_EQ_INT(read_check(f.s, &whole, data, total - 1, 1, 1), 0);

    /* a lost shard of part 2 is reconstructed, then healed through the
     * object's layout */
    shard_file(&f, &res[1], 0, path, sizeof(path));
    REQUIRE(unlink(path) == 0);
    CHECK_EQ_INT(read_check(f.s, &whole, data, 0, total, 4096), 0);
    {
        int rebuilt = -1;
        CHECK_EQ_INT(store_heal_object(f.s, lay, lay_len, &rebuilt), 0);
        CHECK_EQ_INT(rebuilt, 1);
        CHECK(access(path, F_OK) == 0);
    }

    /* a reader pins the data: a delete while it reads is deferred to its close */
    {
        store_reader *r, *r2;
        unsigned char b[64];
        size_t got = 0;
        REQUIRE(store_reader_open(f.s, lay, lay_len, &r) == 0);
        CHECK_EQ_INT(store_object_delete_data(f.s, lay, lay_len), 0);
        CHECK_EQ_INT(count_files(f.root), 2 * 6); /* parts 3 and 4 are inline */
        CHECK_EQ_INT(store_reader_read(r, sz[0] + sz[1] + 1, b, sizeof(b), &got), 0);
        CHECK_EQ_INT(got, sizeof(b));
        CHECK(memcmp(b, data + sz[0] + sz[1] + 1, sizeof(b)) == 0);
        store_reader_close(r);
        CHECK_EQ_INT(count_files(f.root), 0);
        /* and a reader arriving after the free fails before reading */
        CHECK(store_reader_open(f.s, lay, lay_len, &r2) == MRD_EDEGRADED);
    }
    for (int i = 0; i < 4; i++)
        store_put_result_clear(&res[i]);
    free(lay);
    free(data);
    fx_done(&f);
}

typedef struct parts_seen {
    uint32_t num[16];
    uint64_t size[16];
    int n;
} parts_seen;

static int
parts_cb(void *user, const store_mpu_part *p)
{
    parts_seen *ps = user;
    ps->num[ps->n] = p->number;
    ps->size[ps->n++] = p->size;
    return 0;
}

typedef struct uploads_seen {
    char keys[8][32], ids[8][32];
    int n;
} uploads_seen;

static int
uploads_cb(void *user, const char *key, const char *upload_id, const void *blob, size_t len)
{
    uploads_seen *u = user;
    (void)blob;
    (void)len;
    snprintf(u->keys[u->n], sizeof(u->keys[0]), "%s", key);
    snprintf(u->ids[u->n++], sizeof(u->ids[0]), "%s", upload_id);
    return 0;
}

static store_mpu_part
part_rec(uint32_t num, const store_put_result *r)
{
    store_mpu_part p = {.number = num,
                        .size = r->size,
                        .mtime_ms = 1,
                        .layout = r->layout,
                        .layout_len = r->layout_len};
    memcpy(p.md5, r->md5, 16);
    return p;
}

static void
test_mpu_uploads_parts_finish_abort(void)
{
    fixture f;
    unsigned char *data = malloc(64 * 1024);
    store_put_result r1, r2, r2b, r3, other;
    store_mpu_part p;
    parts_seen ps;
    uploads_seen us;
    void *blob = NULL, *lay = NULL;
    size_t len = 0, lay_len = 0;

    REQUIRE(fx_open(&f, BS, STORE_OPT_NO_INLINE) == 0);
    fill_pattern(data, 64 * 1024, 3);
    CHECK_EQ_INT(store_mpu_create(f.s, "bkt", "obj", "up1", "meta", 4), 0);
    CHECK_EQ_INT(store_mpu_create(f.s, "bkt", "obj", "up1", "x", 1), MRD_EEXIST);
    CHECK_EQ_INT(store_mpu_create(f.s, "bkt", "a/other", "up2", "", 0), 0);
    CHECK_EQ_INT(store_mpu_get(f.s, "bkt", "obj", "up1", &blob, &len), 0);
    CHECK(len == 4 && memcmp(blob, "meta", 4) == 0);
    free(blob);
    CHECK_EQ_INT(store_mpu_get(f.s, "bkt", "obj", "nope", &blob, &len), MRD_ENOTFOUND);
    CHECK_EQ_INT(store_mpu_get(f.s, "bkt", "obj2", "up1", &blob, &len), MRD_ENOTFOUND);

    REQUIRE(put_part(f.s, 1, data, 20000, &r1) == 0);
    REQUIRE(put_part(f.s, 2, data + 20000, 20000, &r2) == 0);
    REQUIRE(put_part(f.s, 2, data + 1000, 30000, &r2b) == 0);
    REQUIRE(put_part(f.s, 3, data + 40000, 5000, &r3) == 0);
    p = part_rec(1, &r1);
    CHECK_EQ_INT(store_mpu_part_put(f.s, "bkt", "obj", "up1", &p), 0);
    p = part_rec(2, &r2);
    CHECK_EQ_INT(store_mpu_part_put(f.s, "bkt", "obj", "up1", &p), 0);
    CHECK_EQ_INT(count_files(f.root), 4 * 6);
    /* replacing part 2 frees the first upload of it */
    p = part_rec(2, &r2b);
    CHECK_EQ_INT(store_mpu_part_put(f.s, "bkt", "obj", "up1", &p), 0);
    CHECK_EQ_INT(count_files(f.root), 3 * 6);
    p = part_rec(3, &r3);
    CHECK_EQ_INT(store_mpu_part_put(f.s, "bkt", "obj", "up1", &p), 0);
    /* a part for an upload that does not exist is refused */
    CHECK_EQ_INT(store_mpu_part_put(f.s, "bkt", "obj", "up9", &p), MRD_ENOTFOUND);

    memset(&ps, 0, sizeof(ps));
    CHECK_EQ_INT(store_mpu_parts(f.s, "bkt", "obj", "up1", 0, parts_cb, &ps), 0);
    CHECK_EQ_INT(ps.n, 3);
    CHECK(ps.num[0] == 1 && ps.num[1] == 2 && ps.num[2] == 3 && ps.size[1] == 30000);
    memset(&ps, 0, sizeof(ps));
    CHECK_EQ_INT(store_mpu_parts(f.s, "bkt", "obj", "up1", 1, parts_cb, &ps), 0);
    CHECK(ps.n == 2 && ps.num[0] == 2);
    CHECK_EQ_INT(store_mpu_parts(f.s, "bkt", "a/other", "up1", 0, parts_cb, &ps), MRD_ENOTFOUND);

    memset(&us, 0, sizeof(us));
    CHECK_EQ_INT(store_mpu_list(f.s, "bkt", NULL, NULL, NULL, uploads_cb, &us), 0);
    CHECK(us.n == 2 && strcmp(us.keys[0], "a/other") == 0 && strcmp(us.keys[1], "obj") == 0);
    memset(&us, 0, sizeof(us));
    CHECK_EQ_INT(store_mpu_list(f.s, "bkt", "o", NULL, NULL, uploads_cb, &us), 0);
    CHECK(us.n == 1 && strcmp(us.ids[0], "up1") == 0);
    memset(&us, 0, sizeof(us));
    CHECK_EQ_INT(store_mpu_list(f.s, "bkt", NULL, "a/other", NULL, uploads_cb, &us), 0);
    CHECK(us.n == 1 && strcmp(us.keys[0], "obj") == 0);
    memset(&us, 0, sizeof(us));
    CHECK_EQ_INT(store_mpu_list(f.s, "bkz", NULL, NULL, NULL, uploads_cb, &us), 0);
    CHECK_EQ_INT(us.n, 0);

    /* while completing: no part replaced, no abort, no second complete */
    CHECK_EQ_INT(store_mpu_complete_begin(f.s, "bkt", "obj", "up1"), 0);
    CHECK_EQ_INT(store_mpu_complete_begin(f.s, "bkt", "obj", "up1"), MRD_EBUSY);
    p = part_rec(3, &r3);
    CHECK_EQ_INT(store_mpu_part_put(f.s, "bkt", "obj", "up1", &p), MRD_EBUSY);
    CHECK_EQ_INT(store_mpu_abort(f.s, "bkt", "obj", "up1"), MRD_EBUSY);
    CHECK_EQ_INT(store_mpu_complete_cancel(f.s, "bkt", "obj", "up1"), 0);
    CHECK_EQ_INT(store_mpu_complete_begin(f.s, "bkt", "obj", "up1"), 0);

    /* finish with parts 1 and 3: part 2's data goes with the upload */
    {
        store_part_ref refs[2] = {{r1.layout, r1.layout_len}, {r3.layout, r3.layout_len}};
        store_index_op op = {
            .type = STORE_OP_MPU_FINISH, .bucket = "bkt", .key = "obj", .version_id = "up1"};
        REQUIRE(store_layout_compose(refs, 2, &lay, &lay_len) == 0);
        op.blob = lay;
        op.blob_len = lay_len;
        CHECK_EQ_INT(store_index_apply(f.s, &op, 1, 1), 0);
        CHECK_EQ_INT(count_files(f.root), 2 * 6);
        CHECK_EQ_INT(store_mpu_get(f.s, "bkt", "obj", "up1", &blob, &len), MRD_ENOTFOUND);
        memset(&ps, 0, sizeof(ps));
        CHECK_EQ_INT(store_mpu_parts(f.s, "bkt", "obj", "up1", 0, parts_cb, &ps), MRD_ENOTFOUND);
        /* a replay of the same op finds nothing to do */
        CHECK_EQ_INT(store_index_apply(f.s, &op, 1, 2), 0);
        CHECK_EQ_INT(count_files(f.root), 2 * 6);
        store_put_result whole = {.layout = lay, .layout_len = lay_len};
        unsigned char *want = malloc(25000);
        memcpy(want, data, 20000);
        memcpy(want + 20000, data + 40000, 5000);
        CHECK_EQ_INT(read_check(f.s, &whole, want, 0, 25000, 3000), 0);
        free(want);
    }

    /* abort frees every part of the other upload */
    {
        store_writer *w;
        REQUIRE(store_writer_open(f.s, "bkt", "a/other", "up2.1", 0, &w) == 0);
        REQUIRE(store_writer_write(w, data, 9000) == 0);
        REQUIRE(store_writer_finish(w, &other) == 0);
        p = part_rec(1, &other);
        CHECK_EQ_INT(store_mpu_part_put(f.s, "bkt", "a/other", "up2", &p), 0);
        CHECK_EQ_INT(count_files(f.root), 3 * 6);
        CHECK_EQ_INT(store_mpu_abort(f.s, "bkt", "a/other", "up2"), 0);
        CHECK_EQ_INT(count_files(f.root), 2 * 6);
        CHECK_EQ_INT(store_mpu_abort(f.s, "bkt", "a/other", "up2"), MRD_ENOTFOUND);
    }
    /* expiry: nothing is older than the epoch; everything is older than the
     * future, and an expired upload's parts go with it */
    {
        uint64_t n = 99;
        store_put_result r4;
        REQUIRE(store_mpu_create(f.s, "bkt", "late", "up3", "", 0) == 0);
        REQUIRE(put_part(f.s, 1, data, 9000, &r4) == 0);
        p = part_rec(1, &r4);
        CHECK_EQ_INT(store_mpu_part_put(f.s, "bkt", "late", "up3", &p), 0);
        CHECK_EQ_INT(store_mpu_expire(f.s, 1, &n), 0);
        CHECK_EQ_INT(n, 0);
        CHECK_EQ_INT(count_files(f.root), 3 * 6);
        CHECK_EQ_INT(store_mpu_expire(f.s, mrd_clock_realtime_ms(NULL) + 1000, &n), 0);
        CHECK_EQ_INT(n, 1);
        CHECK_EQ_INT(count_files(f.root), 2 * 6);
        CHECK_EQ_INT(store_mpu_get(f.s, "bkt", "late", "up3", &blob, &len), MRD_ENOTFOUND);
        store_put_result_clear(&r4);
    }
    CHECK_EQ_INT(store_object_delete_data(f.s, lay, lay_len), 0);
    CHECK_EQ_INT(count_files(f.root), 0);
    store_put_result_clear(&r1);
    store_put_result_clear(&r2);
    store_put_result_clear(&r2b);
    store_put_result_clear(&r3);
    store_put_result_clear(&other);
    free(lay);
    free(data);
    fx_done(&f);
}

static void
test_sweep_removes_only_unreferenced_shards(void)
{
    fixture f;
    unsigned char *data = malloc(30000);
    store_put_result orphan, plain, part, e1, e2;
    store_part_ref refs[2];
    store_mpu_part p;
    void *lay = NULL;
    size_t lay_len = 0;
    uint64_t removed = 99;

    REQUIRE(fx_open(&f, BS, STORE_OPT_NO_INLINE) == 0);
    fill_pattern(data, 30000, 9);
    REQUIRE(put(f.s, "orphan", data, 20000, &orphan) == 0); /* never recorded */
    REQUIRE(put(f.s, "plain", data, 20000, &plain) == 0);
    REQUIRE(put_part(f.s, 1, data, 20000, &part) == 0);
    REQUIRE(put_part(f.s, 2, data, 20000, &e1) == 0);
    REQUIRE(put_part(f.s, 3, data + 20000, 10000, &e2) == 0);
    refs[0] = (store_part_ref){e1.layout, e1.layout_len};
    refs[1] = (store_part_ref){e2.layout, e2.layout_len};
    REQUIRE(store_layout_compose(refs, 2, &lay, &lay_len) == 0);
    {
        store_version v1 = {.version_id = "v1",
                            .size = 20000,
                            .etag = "",
                            .content_type = "",
                            .layout = plain.layout,
                            .layout_len = plain.layout_len};
        store_version v2 = {.version_id = "v2",
                            .size = 30000,
                            .etag = "",
                            .content_type = "",
                            .layout = lay,
                            .layout_len = lay_len};
        store_index_op ops[2] = {
            {.type = STORE_OP_VERSION_PUT, .bucket = "bkt", .key = "plain", .version = &v1},
            {.type = STORE_OP_VERSION_PUT, .bucket = "bkt", .key = "mp", .version = &v2}};
        REQUIRE(store_index_apply(f.s, ops, 2, 1) == 0);
    }
    REQUIRE(store_mpu_create(f.s, "bkt", "obj", "up1", "", 0) == 0);
    p = part_rec(1, &part);
    REQUIRE(store_mpu_part_put(f.s, "bkt", "obj", "up1", &p) == 0);
    CHECK_EQ_INT(count_files(f.root), 5 * 6);
    CHECK_EQ_INT(store_sweep_orphans(f.s, &removed), 0);
    CHECK_EQ_INT(removed, 6);
    CHECK_EQ_INT(count_files(f.root), 4 * 6);
    CHECK(store_reader_open(f.s, orphan.layout, orphan.layout_len, &(store_reader *){NULL}) ==
          MRD_EDEGRADED);
    {
        store_put_result whole = {.layout = lay, .layout_len = lay_len};
        CHECK_EQ_INT(read_check(f.s, &whole, data, 0, 30000, 7000), 0);
        CHECK_EQ_INT(read_check(f.s, &plain, data, 0, 20000, 7000), 0);
        CHECK_EQ_INT(read_check(f.s, &part, data, 0, 20000, 7000), 0);
    }
    /* a second sweep finds nothing */
    CHECK_EQ_INT(store_sweep_orphans(f.s, &removed), 0);
    CHECK_EQ_INT(removed, 0);
    store_put_result_clear(&orphan);
    store_put_result_clear(&plain);
    store_put_result_clear(&part);
    store_put_result_clear(&e1);
    store_put_result_clear(&e2);
    free(lay);
    free(data);
    fx_done(&f);
}

static const test_case cases[] = {
    TEST(test_roundtrip_small_blocks),
    TEST(test_roundtrip_default_block),
    TEST(test_inline_small_objects),
    TEST(test_no_md5),
    TEST(test_placement_spreads),
    TEST(test_all_loss_patterns),
    TEST(test_bitflip_detected_and_repaired),
    TEST(test_abort_removes_everything),
    TEST(test_crash_mid_write_cleaned_at_start),
    TEST(test_pool_and_fallback_writes),
    TEST(test_heal_restores_all_shards),
    TEST(test_background_heal_all),
    TEST(test_offline_drive_degraded_write),
    TEST(test_delete_data_drops_the_heal_entry_first),
    TEST(test_fault_write),
    TEST(test_fault_nospace),
    TEST(test_fault_fdatasync),
    TEST(test_fault_commit),
    TEST(test_index_apply_and_lsn),
    TEST(test_index_listing_order),
    TEST(test_meta_keyspace),
    TEST(test_index_lock_file_has_blocks),
    TEST(test_index_open_on_full_disk),
    TEST(test_key_size_limit),
    TEST(test_bad_options),
    TEST(test_parts_layout_read_heal_delete),
    TEST(test_mpu_uploads_parts_finish_abort),
    TEST(test_sweep_removes_only_unreferenced_shards),
    {NULL, NULL},
};

TEST_MAIN(cases)
