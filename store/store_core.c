/*
 * store_core.c - opening the store, the drives, status, and the I/O wrappers
 * that carry the fault-injection hooks.
 *
 * Drives. A site has D drive directories, given in a fixed order: a layout
 * blob names drives by index, so the order of data_dirs is part of the on-disk
 * format. To catch a reordered or swapped disk, each drive holds a small
 * identity file, "meridian-drive", written on first open:
 *
 *     meridian-drive v1 index=<i> count=<D>\n
 *
 * A drive whose file names another index stays offline (logged at WARN)
 * instead of serving someone else's shards. Each drive has two directories:
 * obj/<xx>/ (256 fan-out dirs named by the first byte of the object id) for
 * shards (of finished objects, of writes in progress, and the empty files
 * pre-created for future writes, store_pool.c) and tmp/ for shards of heals
 * in progress. tmp/ is emptied at open: whatever is there belongs to a heal
 * that never finished; unreferenced files in obj/ are removed by the orphan
 * sweep the engine runs at start-up (store_sweep.c), so a crash mid-write
 * leaves nothing behind once the store restarts.
 *
 * Online/offline. At open each drive must pass a probe: create, write and
 * fdatasync a small file in tmp/, then unlink it. A drive that fails is
 * offline. At run time any write or sync error on a drive marks it offline
 * (store__drive_failed), and reads count errors per drive. Offline drives are
 * skipped by new writes (the write is "degraded" and queued for heal when the
 * remaining shards still number >= k) and come back only through
 * store_drives_rescan, which re-runs the probe. There is no automatic
 * flapping back: an operator or the daemon's timer decides when to rescan.
 *
 * Full drives. A write that fails for want of space (ENOSPC, EDQUOT) says
 * nothing about the drive's health: its shards still read. Such a drive is
 * marked full instead of offline: reads go on, new writes (and heal's
 * rewrites and the shard file pool) skip it as they skip an offline drive,
 * so writes are degraded and queued for heal while at least k drives take
 * shards, and fail with -ENOSPC once too few do. A rescan clears the mark
 * when the drive has room for a few stripes again and passes the probe.
 *
 * Buffers. Writers and readers borrow their (k+m) * block_size stripe
 * buffer from a small per-store free list (8 buffers) instead of malloc'ing
 * it: on this kind of VM a fresh multi-MiB allocation costs a page fault per
 * 4 KiB page, measured at several ms per 1 MiB object, more than the encode.
 *
 * Fault injection, in the style of SQLite's test VFS: every pwrite of shard
 * data, every fdatasync/fsync and every LMDB write commit first asks the
 * installed hook, which can return an error instead. Tests use it to fail the
 * Nth write or sync and to check that the failure surfaces as an error, never
 * as a silent success.
 */
#include "store_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

void
store_opts_default(store_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->k = 4;
    o->m = 2;
    o->block_size = STORE_DEFAULT_BLOCK_SIZE;
    o->inline_max = STORE_DEFAULT_INLINE_MAX;
    o->index_map_size = 16ull << 30;
}

/* Hooks are called one at a time (a write's fdatasyncs run in parallel on
 * the io threads), so a test's hook can count calls without locking. */
int
store__fault(store *s, store_fault_point p, const char *detail)
{
    store_fault_fn fn = s->fault_fn;
    int rc = 0;

    if (fn) {
        pthread_mutex_lock(&s->fault_mu);
        rc = fn(s->fault_user, p, detail);
        pthread_mutex_unlock(&s->fault_mu);
    }
    return rc;
}

void
store_set_fault_hook(store *s, store_fault_fn fn, void *user)
{
    s->fault_user = user;
    s->fault_fn = fn;
}

int
store__pwritev_full(store *s, int fd, struct iovec *iov, int iovcnt, uint64_t off, const char *path)
{
    int rc = store__fault(s, STORE_FAULT_WRITE, path);

    if (rc != 0)
        return rc;
    while (iovcnt > 0) {
        ssize_t n = pwritev(fd, iov, iovcnt, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EIO;
        off += (uint64_t)n;
        while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
            n -= (ssize_t)iov->iov_len;
            iov++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            iov->iov_base = (char *)iov->iov_base + n;
            iov->iov_len -= (size_t)n;
        }
    }
    return 0;
}

int
store__fdatasync(store *s, int fd, const char *path)
{
    int rc = store__fault(s, STORE_FAULT_FDATASYNC, path);

    if (rc != 0 || (s->opts.flags & STORE_OPT_NOSYNC))
        return rc;
    return fdatasync(fd) != 0 ? -errno : 0;
}

int
store__fsync_dir(store *s, const char *dir)
{
    int rc = store__fault(s, STORE_FAULT_FDATASYNC, dir);

    if (rc != 0 || (s->opts.flags & STORE_OPT_NOSYNC))
        return rc;
    return mrd_fsync_dir(dir);
}

void
store__drive_failed(store *s, int drive, int err, const char *what)
{
    store_drive *d = &s->drives[drive];
    char q[1100];

    if (err == -ENOSPC || err == -EDQUOT) {
        if (!atomic_exchange(&d->full, 1))
            MRD_WARN("store.drive_full", "drive=%d path=%s op=%s err=\"%s\"", drive,
                     mrd_log_quote(d->path, q, sizeof(q)), what, mrd_strerror(err));
        return;
    }
    atomic_fetch_add(&d->write_errors, 1);
    if (atomic_exchange(&d->online, 0))
        MRD_WARN("store.drive_offline", "drive=%d path=%s op=%s err=\"%s\"", drive,
                 mrd_log_quote(d->path, q, sizeof(q)), what, mrd_strerror(err));
}

int
store__drive_online(store *s, int drive)
{
    return atomic_load(&s->drives[drive].online);
}

int
store__drive_writable(store *s, int drive)
{
    return atomic_load(&s->drives[drive].online) && !atomic_load(&s->drives[drive].full);
}

void
store__objid_hex(const unsigned char *id, char out[33])
{
    static const char hx[] = "0123456789abcdef";

    for (int i = 0; i < STORE_OBJID_LEN; i++) {
        out[2 * i] = hx[id[i] >> 4];
        out[2 * i + 1] = hx[id[i] & 15];
    }
    out[32] = '\0';
}

void
store__shard_dir(store *s, int drive, const unsigned char *objid, int tmp, char *out, size_t outsz)
{
    if (tmp)
        snprintf(out, outsz, "%s/tmp", s->drives[drive].path);
    else
        snprintf(out, outsz, "%s/obj/%02x", s->drives[drive].path, objid[0]);
}

void
store__shard_path(store *s, int drive, const unsigned char *objid, int shard, int tmp, char *out,
                  size_t outsz)
{
    char hex[33];

    store__objid_hex(objid, hex);
    if (tmp)
        snprintf(out, outsz, "%s/tmp/%s.%d", s->drives[drive].path, hex, shard);
    else
        snprintf(out, outsz, "%s/obj/%02x/%s.%d", s->drives[drive].path, objid[0], hex, shard);
}

void *
store__buf_get(store *s)
{
    void *b = NULL;

    pthread_mutex_lock(&s->buf_mu);
    if (s->n_buf_free > 0)
        b = s->buf_free[--s->n_buf_free];
    pthread_mutex_unlock(&s->buf_mu);
    if (!b)
        b = aligned_alloc(64, (size_t)(unsigned)(s->k + s->m) * s->block_size);
    return b;
}

void
store__buf_put(store *s, void *buf)
{
    if (!buf)
        return;
    pthread_mutex_lock(&s->buf_mu);
    if (s->n_buf_free < (int)(sizeof(s->buf_free) / sizeof(s->buf_free[0]))) {
        s->buf_free[s->n_buf_free++] = buf;
        buf = NULL;
    }
    pthread_mutex_unlock(&s->buf_mu);
    free(buf);
}

/* FNV-1a 64 over bucket \0 key \0 version: cheap, stable across builds and
 * platforms (it is part of the placement, so it must never change). */
uint64_t
store__hash(const char *bucket, const char *key, const char *version)
{
    const char *parts[3] = {bucket ? bucket : "", key ? key : "", version ? version : ""};
    uint64_t h = 1469598103934665603ull;

    for (int p = 0; p < 3; p++) {
        for (const unsigned char *c = (const unsigned char *)parts[p]; *c; c++) {
            h ^= *c;
            h *= 1099511628211ull;
        }
        h ^= 0;
        h *= 1099511628211ull;
    }
    return h;
}

/* ---- drive skeleton, identity, probe, cleanup ----------------------------- */

static int
rm_dir_contents(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[1400];
    int plen;
    int n = 0;

    if (!d)
        return -errno;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        plen = snprintf(p, sizeof(p), "%s/%.255s", dir, e->d_name);
        if (plen > 0 && (size_t)plen < sizeof(p) && unlink(p) == 0)
            n++;
    }
    closedir(d);
    return n;
}

static int
drive_identity(store *s, int i)
{
    char path[1200], want[128], have[128] = {0};
    int fd, rc = 0;
    ssize_t n;

    snprintf(path, sizeof(path), "%s/meridian-drive", s->drives[i].path);
    snprintf(want, sizeof(want), "meridian-drive v1 index=%d count=%d\n", i, s->n_drives);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        n = read(fd, have, sizeof(have) - 1);
        close(fd);
        if (n < 0)
            return -errno;
        /* The count may grow when drives are added; the index must not move. */
        char wantpfx[64];
        snprintf(wantpfx, sizeof(wantpfx), "meridian-drive v1 index=%d ", i);
        if (strncmp(have, wantpfx, strlen(wantpfx)) != 0)
            return MRD_ECONFIG;
        return 0;
    }
    if (errno != ENOENT)
        return -errno;
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    n = write(fd, want, strlen(want));
    if (n != (ssize_t)strlen(want))
        rc = n < 0 ? -errno : -EIO;
    if (rc == 0)
        rc = store__fdatasync(s, fd, path);
    close(fd);
    if (rc == 0)
        rc = store__fsync_dir(s, s->drives[i].path);
    return rc;
}

/* Creates a file in tmp/, writes and syncs it, unlinks it. */
static int
drive_probe(store *s, int i)
{
    char path[1200];
    int fd, rc;
    struct iovec iov = {.iov_base = "probe\n", .iov_len = 6};

    snprintf(path, sizeof(path), "%s/tmp/.probe", s->drives[i].path);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    rc = store__pwritev_full(s, fd, &iov, 1, 0, path);
    if (rc == 0)
        rc = store__fdatasync(s, fd, path);
    close(fd);
    unlink(path);
    return rc;
}

static int
drive_prepare(store *s, int i)
{
    char p[1200];
    int rc;
    store_drive *d = &s->drives[i];

    snprintf(p, sizeof(p), "%s/tmp", d->path);
    if ((rc = mrd_mkdir_p(p)) != 0)
        return rc;
    for (int b = 0; b < 256; b++) {
        snprintf(p, sizeof(p), "%s/obj/%02x", d->path, b);
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            if (errno != ENOENT || (rc = mrd_mkdir_p(p)) != 0)
                return rc ? rc : -errno;
        }
    }
    if ((rc = drive_identity(s, i)) != 0)
        return rc;
    snprintf(p, sizeof(p), "%s/tmp", d->path);
    rc = rm_dir_contents(p);
    if (rc > 0)
        MRD_INFO("store.cleanup", "drive=%d removed=%d what=tmp_leftovers", i, rc);
    if (rc < 0)
        return rc;
    return drive_probe(s, i);
}

/* A full drive takes shards again once it has room for a few stripes and
 * the probe's write and sync pass (root may write into the blocks a file
 * system reserves, so the probe alone would let a drive flap). */
static int
drive_has_room(store *s, int i)
{
    struct statvfs sv;

    if (statvfs(s->drives[i].path, &sv) != 0 ||
        (uint64_t)sv.f_bavail * sv.f_frsize < 4 * (uint64_t)s->block_size)
        return 0;
    return drive_probe(s, i) == 0;
}

int
store_drives_rescan(store *s)
{
    int online = 0;
    char q[1100];

    for (int i = 0; i < s->n_drives; i++) {
        if (atomic_load(&s->drives[i].full) && drive_has_room(s, i)) {
            atomic_store(&s->drives[i].full, 0);
            MRD_INFO("store.drive_has_room", "drive=%d path=%s", i,
                     mrd_log_quote(s->drives[i].path, q, sizeof(q)));
        }
        if (!atomic_load(&s->drives[i].online)) {
            int rc = drive_prepare(s, i);
            if (rc == 0) {
                atomic_store(&s->drives[i].online, 1);
                MRD_INFO("store.drive_online", "drive=%d path=%s", i,
                         mrd_log_quote(s->drives[i].path, q, sizeof(q)));
            } else {
                MRD_WARN("store.drive_offline", "drive=%d path=%s op=probe err=\"%s\"", i,
                         mrd_log_quote(s->drives[i].path, q, sizeof(q)), mrd_strerror(rc));
            }
        }
        online += store__drive_writable(s, i);
    }
    return online;
}

int
store_drive_set_offline(store *s, int drive)
{
    if (!s || drive < 0 || drive >= s->n_drives)
        return MRD_EINVAL;
    atomic_store(&s->drives[drive].online, 0);
    return 0;
}

static int
validate_opts(const store_opts *o)
{
    if (!o || !o->data_dirs || o->n_data_dirs < 1 || o->n_data_dirs > MRD_MAX_DRIVES)
        return MRD_EINVAL;
    if (o->k < 1 || o->m < 0 || o->k + o->m > o->n_data_dirs || o->k + o->m > STORE_MAX_SHARDS)
        return MRD_ECONFIG;
    if (o->block_size < 4096 || o->block_size % 64 != 0 || o->block_size > (256u << 20))
        return MRD_ECONFIG;
    if (!o->meta_dir || !o->meta_dir[0])
        return MRD_EINVAL;
    for (int i = 0; i < o->n_data_dirs; i++)
        if (!o->data_dirs[i] || !o->data_dirs[i][0] || strlen(o->data_dirs[i]) >= 1000)
            return MRD_EINVAL;
    return 0;
}

int
store_open(const store_opts *o, store **out)
{
    store *s;
    int rc, online;

    if ((rc = validate_opts(o)) != 0)
        return rc;
    s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->opts = *o;
    s->opts.data_dirs = NULL; /* not kept: the caller's array */
    s->n_drives = o->n_data_dirs;
    s->k = o->k;
    s->m = o->m;
    s->block_size = o->block_size;
    s->inline_max = (o->flags & STORE_OPT_NO_INLINE) ? 0 : o->inline_max;
    /* The inline decision is taken when the first stripe is still in memory. */
    if ((uint64_t)s->inline_max >= (uint64_t)s->k * s->block_size)
        s->inline_max = (uint32_t)((uint64_t)s->k * s->block_size - 1);
    pthread_mutex_init(&s->heal_mu, NULL);
    pthread_mutex_init(&s->buf_mu, NULL);
    pthread_mutex_init(&s->pin_mu, NULL);
    pthread_mutex_init(&s->fault_mu, NULL);
    if (getrandom(&s->boot_token, sizeof(s->boot_token), 0) != sizeof(s->boot_token) ||
        s->boot_token == 0)
        s->boot_token = mrd_clock_mono_ns() | 1;
    for (int i = 0; i < s->n_drives; i++)
        snprintf(s->drives[i].path, sizeof(s->drives[i].path), "%s", o->data_dirs[i]);

    if ((rc = store__ec_init(s)) != 0)
        goto fail;
    online = store_drives_rescan(s);
    if (online < s->k) {
        MRD_ERROR("store.open", "online_drives=%d k=%d err=\"%s\"", online, s->k,
                  "fewer drives online than data shards; check data_dirs");
        rc = MRD_EDEGRADED;
        goto fail;
    }
    if ((rc = store__index_open(s)) != 0)
        goto fail;
    if ((rc = store__io_start(s)) != 0 || (rc = store__pool_start(s)) != 0) {
        store__pool_stop(s);
        store__io_stop(s);
        store__index_close(s);
        goto fail;
    }
    MRD_INFO("store.open", "drives=%d online=%d k=%d m=%d block_size=%u inline_max=%u", s->n_drives,
             online, s->k, s->m, s->block_size, s->inline_max);
    *out = s;
    return 0;
fail:
    store__ec_free(s);
    pthread_mutex_destroy(&s->heal_mu);
    pthread_mutex_destroy(&s->buf_mu);
    pthread_mutex_destroy(&s->pin_mu);
    pthread_mutex_destroy(&s->fault_mu);
    free(s);
    return rc;
}

void
store_close(store *s)
{
    if (!s)
        return;
    atomic_store(&s->heal_stop, 1);
    store_heal_wait(s);
    store__pool_stop(s);
    store__io_stop(s);
    store__index_close(s);
    store__ec_free(s);
    for (int i = 0; i < s->n_buf_free; i++)
        free(s->buf_free[i]);
    pthread_mutex_destroy(&s->heal_mu);
    pthread_mutex_destroy(&s->buf_mu);
    pthread_mutex_destroy(&s->pin_mu);
    pthread_mutex_destroy(&s->fault_mu);
    while (s->pins) { /* deferred frees of readers never closed: leftovers */
        store__pin *p = s->pins;
        s->pins = p->next;
        free(p->pending);
        free(p);
    }
    free(s);
}

int
store_drive_state_get(store *s, int i, store_drive_state *state, int *full)
{
    if (!s || !state || i < 0 || i >= s->n_drives)
        return MRD_EINVAL;
    *state = atomic_load(&s->drives[i].online) ? STORE_DRIVE_ONLINE : STORE_DRIVE_OFFLINE;
    if (full)
        *full = atomic_load(&s->drives[i].full);
    return 0;
}

int
store_get_status(store *s, store_status *out)
{
    store_status *st;
    MDB_txn *txn;
    MDB_stat ms;

    if (!s || !out)
        return MRD_EINVAL;
    st = calloc(1, sizeof(*st));
    if (!st)
        return -ENOMEM;
    st->n_drives = s->n_drives;
    st->k = s->k;
    st->m = s->m;
    st->block_size = s->block_size;
    for (int i = 0; i < s->n_drives; i++) {
        store_drive *d = &s->drives[i];
        store_drive_status *ds = &st->drives[i];
        struct statvfs sv;

        snprintf(ds->path, sizeof(ds->path), "%s", d->path);
        ds->state = atomic_load(&d->online) ? STORE_DRIVE_ONLINE : STORE_DRIVE_OFFLINE;
        st->online_drives += ds->state == STORE_DRIVE_ONLINE;
        ds->full = atomic_load(&d->full);
        st->full_drives += ds->state == STORE_DRIVE_ONLINE && ds->full;
        if (statvfs(d->path, &sv) == 0) {
            ds->total_bytes = (uint64_t)sv.f_blocks * sv.f_frsize;
            ds->free_bytes = (uint64_t)sv.f_bavail * sv.f_frsize;
        }
        ds->read_errors = atomic_load(&d->read_errors);
        ds->write_errors = atomic_load(&d->write_errors);
        ds->checksum_errors = atomic_load(&d->checksum_errors);
    }
    st->objects_written = atomic_load(&s->objects_written);
    st->bytes_written = atomic_load(&s->bytes_written);
    st->degraded_writes = atomic_load(&s->degraded_writes);
    st->reconstructed_reads = atomic_load(&s->reconstructed_reads);
    st->checksum_errors = atomic_load(&s->checksum_errors);
    if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) == 0) {
        if (mdb_stat(txn, s->dbi_healq, &ms) == 0)
            st->heal_queue = ms.ms_entries;
        mdb_txn_abort(txn);
    }
    st->heal_running = atomic_load(&s->heal_running);
    st->heal_objects_checked = atomic_load(&s->heal_checked);
    st->heal_objects_total = atomic_load(&s->heal_total);
    st->heal_shards_rebuilt = atomic_load(&s->heal_rebuilt);
    st->heal_errors = atomic_load(&s->heal_errors);
    st->pool_hits = atomic_load(&s->pool_hits);
    st->pool_misses = atomic_load(&s->pool_misses);
    st->pool_ready = store__pool_ready(s);
    *out = *st;
    free(st);
    return 0;
}
