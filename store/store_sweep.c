/*
 * store_sweep.c - the orphan sweep: shard files nothing references.
 *
 * Shards reach obj/ before anything points at them: a PUT's layout is
 * recorded by the WAL record that follows store_writer_finish, a multipart
 * part's by its mpart record, and data is freed after the transaction that
 * dropped its last reference. A crash between those two steps leaves shard
 * files in obj/ that no layout reaches (store/FORMAT.md, "Recovery rules"):
 * a finished PUT or part never recorded, the parts a Complete or Abort was
 * about to free, a deferred free of an object still being read. tmp/ is
 * emptied at open; this sweep does the same for obj/.
 *
 * What is referenced: every layout in ver (all versions; a PARTS layout
 * references each of its parts), every part layout in mpart (uploads in
 * progress), the heal queue, and the ids of the pre-created files the
 * running store holds in its pool (store_pool.c). Anything else under obj/
 * is removed: shards of writes that never got a record, and the empty
 * pre-created files of an earlier process.
 *
 * It is only correct while nothing writes: a write whose record is not
 * committed yet looks exactly like a leftover. The engine runs it once at
 * start-up, after the WAL replay and before any listener opens. The cost is
 * one pass over the index and one readdir of each drive's 256 obj/
 * directories; the referenced ids are kept sorted in memory (16 bytes each).
 */
#include "store_int.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct idset {
    unsigned char (*id)[STORE_OBJID_LEN];
    size_t n, cap;
    int nomem;
} idset;

static void
idset_add(idset *s, const unsigned char *id)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        void *p = realloc(s->id, cap * STORE_OBJID_LEN);
        if (!p) {
            s->nomem = 1;
            return;
        }
        s->id = p;
        s->cap = cap;
    }
    memcpy(s->id[s->n++], id, STORE_OBJID_LEN);
}

static void
idset_add_cb(void *set, const unsigned char *id)
{
    idset_add(set, id);
}

/* Adds the striped objects a layout references. */
static void
add_layout(idset *s, const void *blob, size_t len)
{
    store_layout l;
    store__part_ent *pe = NULL;

    if (store__layout_parse(blob, len, &l) != 0)
        return;
    if (l.kind == STORE_LAYOUT_EC) {
        idset_add(s, l.objid);
    } else if (l.kind == STORE_LAYOUT_PARTS && store__parts_index(&l, &pe) == 0) {
        for (uint32_t i = 0; i < l.n_parts; i++)
            add_layout(s, pe[i].blob, pe[i].len);
        free(pe);
    } else if (l.kind == STORE_LAYOUT_PARTS) {
        s->nomem = 1;
    }
}

static int
cmp_id(const void *a, const void *b)
{
    return memcmp(a, b, STORE_OBJID_LEN);
}

/* Every id referenced by the index, sorted. */
static int
collect(store *s, idset *ids)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k, v;
    MDB_dbi dbs[3] = {s->dbi_ver, s->dbi_mpart, s->dbi_healq};
    int rc;

    if ((rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn)) != 0)
        return store__mdb_err(rc);
    for (int d = 0; d < 3 && rc == 0; d++) {
        if ((rc = mdb_cursor_open(txn, dbs[d], &cur)) != 0)
            break;
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            store_version ver;
            if (d == 0 && store__version_decode(v.mv_data, v.mv_size, &ver) == 0)
                add_layout(ids, ver.layout, ver.layout_len);
            else if (d == 1 && v.mv_size > STORE_MPART_FIX)
                add_layout(ids, (const unsigned char *)v.mv_data + STORE_MPART_FIX,
                           v.mv_size - STORE_MPART_FIX);
            else if (d == 2)
                add_layout(ids, v.mv_data, v.mv_size);
        }
        mdb_cursor_close(cur);
        rc = rc == MDB_NOTFOUND ? 0 : rc;
    }
    mdb_txn_abort(txn);
    if (rc != 0)
        return store__mdb_err(rc);
    if (ids->nomem)
        return -ENOMEM;
    if (ids->n > 0) /* qsort of NULL is undefined even for 0 elements */
        qsort(ids->id, ids->n, STORE_OBJID_LEN, cmp_id);
    return 0;
}

static int
hexval(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* "<32 hex>.<digits>" into id; 0 if the name is a shard file's. */
static int
shard_name(const char *name, unsigned char id[STORE_OBJID_LEN])
{
    for (int i = 0; i < STORE_OBJID_LEN; i++) {
        int h = hexval((unsigned char)name[2 * i]), l;
        if (h < 0 || (l = hexval((unsigned char)name[2 * i + 1])) < 0)
            return -1;
        id[i] = (unsigned char)(h << 4 | l);
    }
    if (name[32] != '.' || name[33] < '0' || name[33] > '9')
        return -1;
    for (const char *p = name + 34; *p; p++)
        if (*p < '0' || *p > '9')
            return -1;
    return 0;
}

int
store_sweep_orphans(store *s, uint64_t *removed)
{
    idset ids = {0};
    uint64_t n = 0, t0 = mrd_clock_mono_ns();
    char dir[1100], path[1400];
    int rc;

    if (!s)
        return MRD_EINVAL;
    /* The current pool's files are referenced too, and no refill batch may
     * create files while the directories are read (store_pool.c). */
    store__pool_sweep_begin(s, idset_add_cb, &ids);
    if ((rc = collect(s, &ids)) != 0) {
        store__pool_sweep_end(s);
        free(ids.id);
        return rc;
    }
    for (int d = 0; d < s->n_drives; d++) {
        if (!store__drive_online(s, d))
            continue;
        for (int x = 0; x < 256; x++) {
            DIR *dh;
            struct dirent *de;
            snprintf(dir, sizeof(dir), "%s/obj/%02x", s->drives[d].path, x);
            if (!(dh = opendir(dir)))
                continue;
            while ((de = readdir(dh)) != NULL) {
                unsigned char id[STORE_OBJID_LEN];
                if (shard_name(de->d_name, id) != 0 ||
                    (ids.n && bsearch(id, ids.id, ids.n, STORE_OBJID_LEN, cmp_id)))
                    continue;
                snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
                if (unlink(path) == 0)
                    n++;
                else
                    MRD_WARN("store.sweep_unlink", "path=%s err=\"%s\"", path,
                             mrd_strerror(-errno));
            }
            closedir(dh);
        }
    }
    store__pool_sweep_end(s);
    MRD_INFO("store.sweep", "referenced=%zu removed=%llu ms=%.1f", ids.n, (unsigned long long)n,
             (double)(mrd_clock_mono_ns() - t0) / 1e6);
    free(ids.id);
    if (removed)
        *removed = n;
    return 0;
}
