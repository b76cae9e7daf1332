/*
 * store_pool.c - shard files created ahead of time, so a write creates,
 * renames and directory-syncs nothing.
 *
 * The cost it removes. Creating a file on ext4 costs 150-300 us of CPU on
 * this kind of machine (inode allocation scans recently deleted inodes), and
 * making a new name durable costs a directory fsync, i.e. a journal commit.
 * A 1 MiB object has six shard files: six creates, then (before this pool)
 * six renames from tmp/ to obj/ and six directory fsyncs on the write's
 * critical path.
 *
 * What durability needs. A shard is readable after a crash when its name is
 * durable (the directory entry, made durable by an fsync of its directory)
 * and its bytes and size are (fdatasync of the file). The two need not
 * happen at the same time: an empty file whose name was made durable earlier
 * only needs its own fdatasync once written. So a background thread creates
 * the files of future objects under their FINAL names,
 * obj/<xx>/<id>.<shard>, then fsyncs each directory it touched once for the
 * whole batch (group commit: a batch uses one random first byte xx, so one
 * directory per drive), and only then hands the ids out. A writer takes an
 * id, opens its files without O_CREAT, writes them and fdatasyncs them (in
 * parallel, store_io.c). Its acknowledgement therefore still means "names
 * and bytes durable", with no rename and no directory fsync of its own.
 *
 * Placement. Shard i of an object lives on drive (h + i) mod D, h from
 * (bucket, key, version). The file name carries the shard index, so a
 * pooled id fits one rotation r = h mod D: its files are <id>.<i> on drive
 * (r + i) mod D. The pool keeps up to STORE_POOL_DEPTH ids per rotation
 * (D rotations, D * depth * (k+m) empty files: 288 for 6 drives, 4+2). A
 * rotation with an offline drive is not refilled; an empty rotation makes
 * the writer create its files itself (store_write.c), under the final names
 * too, and fsync their directories after the data.
 *
 * Visibility and clean-up. A pool file (empty) or a shard being written sits
 * in obj/ without being referenced by any layout, so nothing can find it; it
 * is an orphan exactly like the shards of a write that finished but whose
 * WAL record never committed. store_close unlinks the pool's files; after a
 * crash, the start-up orphan sweep (store_sweep.c) removes them. The sweep
 * must not remove the files of the CURRENT pool: it holds fill_mu (so no
 * batch is half-created while it reads the directories) and counts the
 * pooled ids as referenced (store__pool_add_ids).
 *
 * The background syncs do not go through the fault hook: they are not part
 * of any write's outcome (a failure there only marks the drive offline and
 * loses the batch), and tests that count the Nth sync must not see them.
 */
#include "store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define POOL_BATCH_MAX 64 /* ids created per batch at most */

typedef struct pool_batch {
    store *s;
    int n;
    unsigned char x; /* first byte of every id of the batch */
    unsigned char id[POOL_BATCH_MAX][STORE_OBJID_LEN];
    int rot[POOL_BATCH_MAX];
    int skip[POOL_BATCH_MAX]; /* not attempted (a drive of its rotation is offline) */
    /* fail[j][d]: drive d could not create id j's file. Written by drive d's
     * job only, so the parallel jobs never write the same byte. */
    unsigned char fail[POOL_BATCH_MAX][MRD_MAX_DRIVES];
    int drive_bad[MRD_MAX_DRIVES]; /* the directory fsync failed */
    int drive_used[MRD_MAX_DRIVES];
} pool_batch;

static int
pool_on(const store *s)
{
    return !(s->opts.flags & STORE_OPT_NO_POOL) && s->pool_ids != NULL;
}

/* Shard index that drive d holds for rotation r, or -1. */
static int
shard_of(const store *s, int r, int d)
{
    int i = (d - r + s->n_drives) % s->n_drives;

    return i < s->k + s->m ? i : -1;
}

static void
unlink_id(store *s, int r, const unsigned char *id)
{
    char path[1200];

    for (int i = 0; i < s->k + s->m; i++) {
        store__shard_path(s, (r + i) % s->n_drives, id, i, 0, path, sizeof(path));
        unlink(path);
    }
}

/* One drive's part of a batch: create its files, then sync its directory. */
static void
batch_drive(void *arg, int d)
{
    pool_batch *b = arg;
    store *s = b->s;
    char path[1200];
    int fd;

    for (int j = 0; j < b->n; j++) {
        int i = shard_of(s, b->rot[j], d);
        if (i < 0 || b->skip[j])
            continue;
        b->drive_used[d] = 1;
        store__shard_path(s, d, b->id[j], i, 0, path, sizeof(path));
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0) {
            b->fail[j][d] = 1;
            continue;
        }
        close(fd);
    }
    if (b->drive_used[d] && !(s->opts.flags & STORE_OPT_NOSYNC)) {
        unsigned char dir_id[STORE_OBJID_LEN] = {b->x}; /* obj/<x>: every id of the batch */
        store__shard_dir(s, d, dir_id, 0, path, sizeof(path));
        if (mrd_fsync_dir(path) != 0)
            b->drive_bad[d] = 1;
    }
}

/* Rotations whose drives all take shards (online, not full). */
static int
rot_usable(store *s, int r)
{
    for (int i = 0; i < s->k + s->m; i++)
        if (!store__drive_writable(s, (r + i) % s->n_drives))
            return 0;
    return 1;
}

/* Plans, creates and publishes one batch. Returns the ids published. */
static int
pool_fill(store *s, pool_batch *b)
{
    unsigned char x;
    int published = 0;

    memset(b, 0, sizeof(*b));
    b->s = s;
    if (getrandom(&x, 1, 0) != 1)
        x = (unsigned char)mrd_clock_mono_ns();
    b->x = x;
    pthread_mutex_lock(&s->pool_mu);
    for (int r = 0; r < s->n_drives; r++) {
        int want = STORE_POOL_DEPTH - s->pool_n[r];
        for (int j = 0; j < want && b->n < POOL_BATCH_MAX; j++)
            b->rot[b->n++] = r;
    }
    pthread_mutex_unlock(&s->pool_mu);
    for (int j = 0; j < b->n; j++) {
        if (!rot_usable(s, b->rot[j]) ||
            getrandom(b->id[j], STORE_OBJID_LEN, 0) != STORE_OBJID_LEN) {
            b->skip[j] = 1;
            continue;
        }
        b->id[j][0] = x; /* one obj/<xx> directory per drive for the whole batch */
    }
    store__parallel(s, s->n_drives, batch_drive, b);
    pthread_mutex_lock(&s->pool_mu);
    for (int j = 0; j < b->n; j++) {
        int r = b->rot[j], ok = !b->skip[j];
        for (int i = 0; ok && i < s->k + s->m; i++) {
            int d = (r + i) % s->n_drives;
            ok = !b->drive_bad[d] && !b->fail[j][d];
        }
        if (ok && s->pool_n[r] < STORE_POOL_DEPTH && !s->pool_stop) {
            memcpy(s->pool_ids[r * STORE_POOL_DEPTH + s->pool_n[r]++], b->id[j], STORE_OBJID_LEN);
            published++;
            b->skip[j] = 1; /* handed out: not removed below */
        }
    }
    pthread_mutex_unlock(&s->pool_mu);
    for (int j = 0; j < b->n; j++) /* created, maybe partly, but not published */
        if (!b->skip[j])
            unlink_id(s, b->rot[j], b->id[j]);
    for (int d = 0; d < s->n_drives; d++)
        if (b->drive_bad[d])
            store__drive_failed(s, d, -EIO, "pool_fsync_dir");
    return published;
}

static int
pool_deficit(store *s)
{
    for (int r = 0; r < s->n_drives; r++)
        if (s->pool_n[r] < STORE_POOL_DEPTH / 2 && rot_usable(s, r))
            return 1;
    return 0;
}

static void *
pool_main(void *arg)
{
    store *s = arg;
    pool_batch *b = malloc(sizeof(*b));

    pthread_mutex_lock(&s->pool_mu);
    while (b && !s->pool_stop) {
        if (!pool_deficit(s)) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1; /* re-check offline drives that came back */
            pthread_cond_timedwait(&s->pool_cv, &s->pool_mu, &ts);
            continue;
        }
        pthread_mutex_unlock(&s->pool_mu);
        pthread_mutex_lock(&s->pool_fill_mu);
        int got = s->pool_stop ? 0 : pool_fill(s, b);
        pthread_mutex_unlock(&s->pool_fill_mu);
        pthread_mutex_lock(&s->pool_mu);
        if (got == 0 && !s->pool_stop) { /* nothing could be made: do not spin */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&s->pool_cv, &s->pool_mu, &ts);
        }
    }
    pthread_mutex_unlock(&s->pool_mu);
    free(b);
    return NULL;
}

int
store__pool_take(store *s, int rot, unsigned char id[STORE_OBJID_LEN])
{
    int got = 0;

    if (!pool_on(s)) {
        atomic_fetch_add(&s->pool_misses, 1);
        return 0;
    }
    pthread_mutex_lock(&s->pool_mu);
    if (s->pool_n[rot] > 0) {
        memcpy(id, s->pool_ids[rot * STORE_POOL_DEPTH + --s->pool_n[rot]], STORE_OBJID_LEN);
        got = 1;
    }
    if (s->pool_n[rot] < STORE_POOL_DEPTH / 2)
        pthread_cond_signal(&s->pool_cv);
    pthread_mutex_unlock(&s->pool_mu);
    atomic_fetch_add(got ? &s->pool_hits : &s->pool_misses, 1);
    return got;
}

uint64_t
store__pool_ready(store *s)
{
    uint64_t n = 0;

    if (!pool_on(s))
        return 0;
    pthread_mutex_lock(&s->pool_mu);
    for (int r = 0; r < s->n_drives; r++)
        n += (uint64_t)s->pool_n[r];
    pthread_mutex_unlock(&s->pool_mu);
    return n;
}

void
store__pool_sweep_begin(store *s, void (*add)(void *set, const unsigned char *id), void *set)
{
    if (!s->pool_ids)
        return;
    pthread_mutex_lock(&s->pool_fill_mu);
    pthread_mutex_lock(&s->pool_mu);
    for (int r = 0; r < s->n_drives; r++)
        for (int j = 0; j < s->pool_n[r]; j++)
            add(set, s->pool_ids[r * STORE_POOL_DEPTH + j]);
    pthread_mutex_unlock(&s->pool_mu);
}

void
store__pool_sweep_end(store *s)
{
    if (s->pool_ids)
        pthread_mutex_unlock(&s->pool_fill_mu);
}

int
store__pool_start(store *s)
{
    int rc;

    pthread_mutex_init(&s->pool_mu, NULL);
    pthread_mutex_init(&s->pool_fill_mu, NULL);
    pthread_cond_init(&s->pool_cv, NULL);
    s->pool_init = 1;
    if (s->opts.flags & STORE_OPT_NO_POOL)
        return 0;
    s->pool_ids = calloc((size_t)s->n_drives * STORE_POOL_DEPTH, STORE_OBJID_LEN);
    if (!s->pool_ids)
        return -ENOMEM;
    if ((rc = pthread_create(&s->pool_thr, NULL, pool_main, s)) != 0) {
        free(s->pool_ids);
        s->pool_ids = NULL;
        return -rc;
    }
    s->pool_live = 1;
    return 0;
}

void
store__pool_stop(store *s)
{
    if (!s->pool_init)
        return;
    if (s->pool_live) {
        pthread_mutex_lock(&s->pool_mu);
        s->pool_stop = 1;
        pthread_cond_broadcast(&s->pool_cv);
        pthread_mutex_unlock(&s->pool_mu);
        pthread_join(s->pool_thr, NULL);
        s->pool_live = 0;
    }
    for (int r = 0; s->pool_ids && r < s->n_drives; r++)
        for (int j = 0; j < s->pool_n[r]; j++)
            unlink_id(s, r, s->pool_ids[r * STORE_POOL_DEPTH + j]);
    free(s->pool_ids);
    s->pool_ids = NULL;
    pthread_mutex_destroy(&s->pool_mu);
    pthread_mutex_destroy(&s->pool_fill_mu);
    pthread_cond_destroy(&s->pool_cv);
    s->pool_init = 0;
}
