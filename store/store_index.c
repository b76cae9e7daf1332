/*
 * store_index.c - the LMDB object index, the generic metadata keyspace, the
 * persistent heal queue and the background heal thread.
 *
 * One LMDB environment in meta_dir, opened with MDB_NOTLS (read transactions
 * are not tied to threads, so worker pools may use them) and without NOSYNC:
 * every write transaction is durable when mdb_txn_commit returns. Eight
 * named databases (the key layout is in store/FORMAT.md; mpu and mpart, the
 * multipart uploads in progress, are store_mpu.c's):
 *
 *   buckets  bucket                       -> bucket config blob
 *   ver      bucket \0 key \0 version_id  -> version record
 *   cur      bucket \0 key                -> version_id \0 (the current one)
 *   meta     any string                   -> bytes (other modules' state)
 *   sys      "last_lsn"                   -> u64 LE
 *   healq    object id (16 bytes)         -> layout blob
 *   mpu      bucket \0 key \0 upload_id   -> complete mark, upload blob
 *   mpart    upload_id \0 u32 BE number    -> part record
 *
 * Why \0 separators: S3 keys never contain NUL, and NUL sorts before every
 * other byte, so "a" \0 ... sorts before "a/b" \0 ... and a cursor walk of
 * ver or cur from bucket \0 prefix yields keys in exactly S3's lexical order;
 * a listing costs a seek plus one step per result, never a bucket scan.
 * Versions of one key sort by version_id bytes; the engine makes ids sort the
 * way it wants them listed. The current pointer is a separate small record
 * rather than a flag in ver so that "make v current" and "delete current"
 * touch one small key, and so that listing current objects never has to step
 * over non-current versions.
 *
 * WAL coupling. store_index_apply runs a batch of operations and the write of
 * last_applied_lsn in ONE write transaction. After a crash the engine reads
 * store_index_last_lsn and replays the WAL from there; a batch whose LSN is
 * not above the stored one is skipped, which keeps replay idempotent. The
 * meta keyspace shares the environment, so the WAL's per-peer cursors get the
 * same durability for free (one commit, ~4k/s on this disk, is fine for
 * cursors advanced in batches).
 *
 * Heal queue. Objects written degraded or found damaged by a read are put in
 * healq with their layout, durably, so a restart does not forget them. The
 * heal thread drains it and, when asked, walks every version in ver.
 *
 * Full disks and mmap. LMDB maps two files. data.mdb is mapped read-only
 * (no MDB_WRITEMAP): pages reach it through pwrite, so a full disk comes
 * back from a commit as ENOSPC or EIO, never as a fault, and reads only
 * touch pages some commit wrote. lock.mdb, the reader table, is mapped
 * read-write: mdb_env_open grows it with ftruncate (a sparse file) when it
 * is smaller than sizeof(MDB_txninfo) + (maxreaders - 1) * sizeof(MDB_reader)
 * (16512 bytes for 256 readers with glibc's mutexes on x86-64; readers are
 * one 64-byte cache line each) and then stores into the map. With no free
 * block the first store raises SIGBUS, which killed the daemon at start on
 * a full meta_dir. So before mdb_env_open the lock file is given real
 * blocks with posix_fallocate, INDEX_LOCK_BYTES of them: about four times
 * what LMDB asks for, room for other mutex sizes and architectures. LMDB
 * takes a lock file at least as large as it needs as it is (it never
 * shrinks it; its reader table is then bigger than maxreaders, which costs
 * nothing), so every later open finds the blocks there. A lock file left sparse by an
 * older build gets its holes filled the same way. No space for that means
 * store_open fails with -ENOSPC and logs cause="disk full".
 */
#include "store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define LSN_KEY "last_lsn"

#define INDEX_MAXREADERS 256
#define INDEX_LOCK_BYTES (64 * 1024) /* LMDB asks for 16512 (see the top) */

int
store__mdb_err(int rc)
{
    switch (rc) {
    case 0:
        return 0;
    case MDB_NOTFOUND:
        return MRD_ENOTFOUND;
    case MDB_MAP_FULL:
    case MDB_BAD_VALSIZE:
        return MRD_ETOOBIG;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
    case MDB_VERSION_MISMATCH:
        return MRD_ECORRUPT;
    default:
        return rc > 0 ? -rc : MRD_ECORRUPT;
    }
}

int
store__txn_commit(store *s, MDB_txn *txn)
{
    int rc = store__fault(s, STORE_FAULT_COMMIT, "index");

    if (rc != 0) {
        mdb_txn_abort(txn);
        MRD_ERROR("store.index_commit", "err=\"%s\" injected=1", mrd_strerror(rc));
        return rc;
    }
    rc = mdb_txn_commit(txn);
    if (rc != 0) {
        MRD_ERROR("store.index_commit", "err=\"%s\"", mdb_strerror(rc));
        return rc > 0 ? MRD_EDURABLE : store__mdb_err(rc);
    }
    return 0;
}

/* Gives meta_dir/lock.mdb real blocks for INDEX_LOCK_BYTES (see the top).
 * Returns 0 or a negated errno; path receives the file's name. Closing the
 * descriptor would drop this process's fcntl locks on the file, which is
 * why this runs before mdb_env_open takes them. */
static int
reserve_lock_file(const char *meta_dir, char *path, size_t n)
{
    int fd, rc;

    if ((size_t)snprintf(path, n, "%s/lock.mdb", meta_dir) >= n)
        return -ENAMETOOLONG;
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    do
        rc = posix_fallocate(fd, 0, INDEX_LOCK_BYTES);
    while (rc == EINTR);
    close(fd);
    return -rc;
}

/* Logs why the index did not open. mdb_rc is LMDB's code (an errno or an
 * MDB_* code). Short writes come back from LMDB as EIO, so EIO on a file
 * system with under 1 MiB free counts as a full disk too, as at run time
 * (engine_apply.c). */
static void
say_open_failed(const store *s, const char *what, const char *path, int mdb_rc)
{
    struct statvfs fs;
    unsigned long long avail = ULLONG_MAX;
    char q[PATH_MAX + 8];
    int full;

    if (statvfs(s->opts.meta_dir, &fs) == 0)
        avail = (unsigned long long)fs.f_bavail * fs.f_frsize;
    full = mdb_rc == ENOSPC || mdb_rc == EDQUOT || (mdb_rc == EIO && avail < 1048576);
    MRD_ERROR("store.index_open", "what=%s err=\"%s\"%s path=%s meta_dir_free_bytes=%llu%s", what,
              mdb_strerror(mdb_rc), full ? " cause=\"disk full\"" : "",
              mrd_log_quote(path, q, sizeof(q)), avail == ULLONG_MAX ? 0 : avail,
              full ? " reason=\"free space on the meta_dir file system, then start again\"" : "");
}

int
store__index_open(store *s)
{
    char lock_path[PATH_MAX];
    const char *what = "lock_file";
    MDB_txn *txn;
    int rc, dead;
    unsigned readers = 0;

    if ((rc = mrd_mkdir_p(s->opts.meta_dir)) != 0)
        return rc;
    if ((rc = reserve_lock_file(s->opts.meta_dir, lock_path, sizeof(lock_path))) != 0) {
        say_open_failed(s, what, lock_path, -rc);
        return rc;
    }
    if ((rc = mdb_env_create(&s->env)) != 0)
        return store__mdb_err(rc);
    mdb_env_set_maxdbs(s->env, 8);
    mdb_env_set_mapsize(s->env, (size_t)s->opts.index_map_size);
    mdb_env_set_maxreaders(s->env, INDEX_MAXREADERS);
    what = "env_open";
    if ((rc = mdb_env_open(s->env, s->opts.meta_dir, MDB_NOTLS, 0644)) != 0)
        goto fail;
    /* Taken as it was, the reserved file holds more readers than asked
     * for. Exactly INDEX_MAXREADERS means LMDB grew it past the reserved
     * blocks: the layout assumed at the top no longer holds. */
    if (mdb_env_get_maxreaders(s->env, &readers) == 0 && readers <= INDEX_MAXREADERS) {
        char q[PATH_MAX + 8];
        MRD_WARN("store.index_lock_grown", "path=%s readers=%u reserved_bytes=%d",
                 mrd_log_quote(lock_path, q, sizeof(q)), readers, INDEX_LOCK_BYTES);
    }
    mdb_reader_check(s->env, &dead);
    what = "create_dbs";
    if ((rc = mdb_txn_begin(s->env, NULL, 0, &txn)) != 0)
        goto fail;
    if ((rc = mdb_dbi_open(txn, "buckets", MDB_CREATE, &s->dbi_buckets)) != 0 ||
        (rc = mdb_dbi_open(txn, "ver", MDB_CREATE, &s->dbi_ver)) != 0 ||
        (rc = mdb_dbi_open(txn, "cur", MDB_CREATE, &s->dbi_cur)) != 0 ||
        (rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &s->dbi_meta)) != 0 ||
        (rc = mdb_dbi_open(txn, "sys", MDB_CREATE, &s->dbi_sys)) != 0 ||
        (rc = mdb_dbi_open(txn, "healq", MDB_CREATE, &s->dbi_healq)) != 0 ||
        (rc = mdb_dbi_open(txn, "mpu", MDB_CREATE, &s->dbi_mpu)) != 0 ||
        (rc = mdb_dbi_open(txn, "mpart", MDB_CREATE, &s->dbi_mpart)) != 0) {
        mdb_txn_abort(txn);
        goto fail;
    }
    if ((rc = mdb_txn_commit(txn)) != 0)
        goto fail;
    return 0;
fail:
    say_open_failed(s, what, s->opts.meta_dir, rc);
    mdb_env_close(s->env);
    s->env = NULL;
    return store__mdb_err(rc);
}

void
store__index_close(store *s)
{
    if (s->env)
        mdb_env_close(s->env);
    s->env = NULL;
}

/* ---- keys and records ------------------------------------------------------ */

/* bucket \0 key [\0 version]. Returns the length or MRD_ETOOBIG. */
int
store__make_key(store *s, char *out, const char *bucket, const char *key, const char *version)
{
    size_t bl = strlen(bucket), kl = key ? strlen(key) : 0, vl = version ? strlen(version) : 0;
    size_t n = bl + (key ? 1 + kl : 0) + (version ? 1 + vl : 0);

    if (n > (size_t)mdb_env_get_maxkeysize(s->env) || n >= KEYBUF || n == 0)
        return MRD_ETOOBIG;
    memcpy(out, bucket, bl);
    n = bl;
    if (key) {
        out[n++] = '\0';
        memcpy(out + n, key, kl);
        n += kl;
    }
    if (version) {
        out[n++] = '\0';
        memcpy(out + n, version, vl);
        n += vl;
    }
    return (int)n;
}

size_t
store_key_max(store *s, size_t bucket_len)
{
    size_t lim = s && s->env ? (size_t)mdb_env_get_maxkeysize(s->env) : 0;
    size_t fixed = bucket_len + 2 + STORE_ID_MAX;

    if (lim >= KEYBUF)
        lim = KEYBUF - 1;
    return lim > fixed ? lim - fixed : 0;
}

int
store_key_check(store *s, const char *bucket, const char *key)
{
    if (!s || !bucket || !key)
        return MRD_EINVAL;
    return strlen(key) <= store_key_max(s, strlen(bucket)) ? 0 : MRD_ETOOBIG;
}

static void
put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t
get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void
put64(unsigned char *p, uint64_t v)
{
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}

static uint64_t
get64(const unsigned char *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

#define REC_FIXED   24
#define REC_NFIELDS 6

/* Version record: u8 fmt=1, 3 reserved, u32 flags, u64 size, u64 hlc, then
 * six (u32 len, bytes) fields: version_id\0, etag\0, content_type\0,
 * user_meta, vv, layout. */
static int
version_encode(const store_version *v, unsigned char **out, size_t *outlen)
{
    const void *f[REC_NFIELDS];
    size_t fl[REC_NFIELDS], len = REC_FIXED;
    unsigned char *b, *p;
    const char *et = v->etag ? v->etag : "", *ct = v->content_type ? v->content_type : "";

    if (!v->version_id)
        return MRD_EINVAL;
    f[0] = v->version_id;
    fl[0] = strlen(v->version_id) + 1;
    f[1] = et;
    fl[1] = strlen(et) + 1;
    f[2] = ct;
    fl[2] = strlen(ct) + 1;
    f[3] = v->user_meta;
    fl[3] = v->user_meta ? v->user_meta_len : 0;
    f[4] = v->vv;
    fl[4] = v->vv ? v->vv_len : 0;
    f[5] = v->layout;
    fl[5] = v->layout ? v->layout_len : 0;
    for (int i = 0; i < REC_NFIELDS; i++) {
        if (fl[i] > UINT32_MAX)
            return MRD_ETOOBIG;
        len += 4 + fl[i];
    }
    b = malloc(len);
    if (!b)
        return -ENOMEM;
    memset(b, 0, REC_FIXED);
    b[0] = 1;
    put32(b + 4, v->flags);
    put64(b + 8, v->size);
    put64(b + 16, v->hlc);
    p = b + REC_FIXED;
    for (int i = 0; i < REC_NFIELDS; i++) {
        put32(p, (uint32_t)fl[i]);
        if (fl[i])
            memcpy(p + 4, f[i], fl[i]);
        p += 4 + fl[i];
    }
    *out = b;
    *outlen = len;
    return 0;
}

int
store__version_decode(const unsigned char *b, size_t len, store_version *v)
{
    const unsigned char *p = b + REC_FIXED, *end = b + len;
    const unsigned char *f[REC_NFIELDS];
    uint32_t fl[REC_NFIELDS];

    if (len < REC_FIXED || b[0] != 1)
        return MRD_ECORRUPT;
    for (int i = 0; i < REC_NFIELDS; i++) {
        if (end - p < 4)
            return MRD_ECORRUPT;
        fl[i] = get32(p);
        if ((size_t)(end - p - 4) < fl[i])
            return MRD_ECORRUPT;
        f[i] = p + 4;
        p += 4 + fl[i];
        if (i < 3 && (fl[i] == 0 || f[i][fl[i] - 1] != '\0'))
            return MRD_ECORRUPT;
    }
    memset(v, 0, sizeof(*v));
    v->flags = get32(b + 4);
    v->size = get64(b + 8);
    v->hlc = get64(b + 16);
    v->version_id = (const char *)f[0];
    v->etag = (const char *)f[1];
    v->content_type = (const char *)f[2];
    v->user_meta = fl[3] ? f[3] : NULL;
    v->user_meta_len = fl[3];
    v->vv = fl[4] ? f[4] : NULL;
    v->vv_len = fl[4];
    v->layout = fl[5] ? f[5] : NULL;
    v->layout_len = fl[5];
    return 0;
}

/* ---- apply ------------------------------------------------------------------ */

static int
get_lsn(store *s, MDB_txn *txn, uint64_t *out)
{
    MDB_val k = {strlen(LSN_KEY), LSN_KEY}, v;
    int rc = mdb_get(txn, s->dbi_sys, &k, &v);

    if (rc == MDB_NOTFOUND) {
        *out = 0;
        return 0;
    }
    if (rc != 0)
        return store__mdb_err(rc);
    if (v.mv_size != 8)
        return MRD_ECORRUPT;
    *out = get64(v.mv_data);
    return 0;
}

int
store__del_ok(int rc)
{
    return rc == 0 || rc == MDB_NOTFOUND ? 0 : store__mdb_err(rc);
}

static int
apply_one(store *s, MDB_txn *txn, const store_index_op *op, store__freelist *fl)
{
    char kb[KEYBUF];
    int kl, rc;
    MDB_val k, v;

    if (op->type == STORE_OP_META_PUT) {
        if (!op->key || !op->key[0] || strlen(op->key) >= 400 || (!op->blob && op->blob_len))
            return MRD_EINVAL;
        k = (MDB_val){strlen(op->key), (void *)op->key};
        v = (MDB_val){op->blob_len, (void *)(op->blob ? op->blob : "")};
        return store__mdb_err(mdb_put(txn, s->dbi_meta, &k, &v, 0));
    }
    if (!op->bucket || !op->bucket[0])
        return MRD_EINVAL;
    switch (op->type) {
    case STORE_OP_BUCKET_PUT:
        if ((kl = store__make_key(s, kb, op->bucket, NULL, NULL)) < 0)
            return kl;
        k = (MDB_val){(size_t)kl, kb};
        v = (MDB_val){op->blob ? op->blob_len : 0, (void *)(op->blob ? op->blob : "")};
        return store__mdb_err(mdb_put(txn, s->dbi_buckets, &k, &v, 0));
    case STORE_OP_BUCKET_DEL:
        if ((kl = store__make_key(s, kb, op->bucket, NULL, NULL)) < 0)
            return kl;
        k = (MDB_val){(size_t)kl, kb};
        return store__del_ok(mdb_del(txn, s->dbi_buckets, &k, NULL));
    case STORE_OP_VERSION_PUT: {
        unsigned char *rec;
        size_t rl;
        const store_version *ver = op->version;
        if (!op->key || !ver || !ver->version_id)
            return MRD_EINVAL;
        if ((kl = store__make_key(s, kb, op->bucket, op->key, ver->version_id)) < 0)
            return kl;
        if ((rc = version_encode(ver, &rec, &rl)) != 0)
            return rc;
        k = (MDB_val){(size_t)kl, kb};
        v = (MDB_val){rl, rec};
        rc = store__mdb_err(mdb_put(txn, s->dbi_ver, &k, &v, 0));
        free(rec);
        if (rc != 0 || !(op->op_flags & STORE_OPF_CURRENT))
            return rc;
        k.mv_size = strlen(op->bucket) + 1 + strlen(op->key);
        v = (MDB_val){strlen(ver->version_id) + 1, (void *)ver->version_id};
        return store__mdb_err(mdb_put(txn, s->dbi_cur, &k, &v, 0));
    }
    case STORE_OP_VERSION_DEL: {
        MDB_val ck, cv;
        if (!op->key || !op->version_id)
            return MRD_EINVAL;
        if ((kl = store__make_key(s, kb, op->bucket, op->key, op->version_id)) < 0)
            return kl;
        k = (MDB_val){(size_t)kl, kb};
        if ((rc = store__del_ok(mdb_del(txn, s->dbi_ver, &k, NULL))) != 0)
            return rc;
        ck = (MDB_val){strlen(op->bucket) + 1 + strlen(op->key), kb};
        rc = mdb_get(txn, s->dbi_cur, &ck, &cv);
        if (rc == MDB_NOTFOUND)
            return 0;
        if (rc != 0)
            return store__mdb_err(rc);
        if (cv.mv_size == strlen(op->version_id) + 1 &&
            memcmp(cv.mv_data, op->version_id, cv.mv_size) == 0)
            return store__del_ok(mdb_del(txn, s->dbi_cur, &ck, NULL));
        return 0;
    }
    case STORE_OP_CURRENT_SET:
        if (!op->key || !op->version_id)
            return MRD_EINVAL;
        if ((kl = store__make_key(s, kb, op->bucket, op->key, op->version_id)) < 0)
            return kl;
        k = (MDB_val){(size_t)kl, kb};
        if ((rc = mdb_get(txn, s->dbi_ver, &k, &v)) != 0)
            return store__mdb_err(rc);
        k.mv_size = strlen(op->bucket) + 1 + strlen(op->key);
        v = (MDB_val){strlen(op->version_id) + 1, (void *)op->version_id};
        return store__mdb_err(mdb_put(txn, s->dbi_cur, &k, &v, 0));
    case STORE_OP_CURRENT_DEL:
        if (!op->key)
            return MRD_EINVAL;
        if ((kl = store__make_key(s, kb, op->bucket, op->key, NULL)) < 0)
            return kl;
        k = (MDB_val){(size_t)kl, kb};
        return store__del_ok(mdb_del(txn, s->dbi_cur, &k, NULL));
    case STORE_OP_META_PUT:
        break; /* handled above */
    case STORE_OP_MPU_FINISH:
        if (!op->key || !op->version_id)
            return MRD_EINVAL;
        return store__mpu_finish(s, txn, op->bucket, op->key, op->version_id, op->blob,
                                 op->blob_len, fl);
    }
    return MRD_EINVAL;
}

int
store_index_apply(store *s, const store_index_op *ops, size_t n, uint64_t lsn)
{
    MDB_txn *txn;
    uint64_t last;
    unsigned char lb[8];
    MDB_val k = {strlen(LSN_KEY), LSN_KEY}, v = {8, lb};
    store__freelist fl = {0};
    int rc;

    if (!s || (n && !ops) || lsn == 0)
        return MRD_EINVAL;
    if ((rc = mdb_txn_begin(s->env, NULL, 0, &txn)) != 0)
        return store__mdb_err(rc);
    if ((rc = get_lsn(s, txn, &last)) != 0)
        goto out;
    if (lsn <= last) {
        mdb_txn_abort(txn);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if ((rc = apply_one(s, txn, &ops[i], &fl)) != 0) {
            MRD_WARN("store.index_apply", "lsn=%llu op=%zu type=%d err=\"%s\"",
                     (unsigned long long)lsn, i, (int)ops[i].type, mrd_strerror(rc));
            goto out;
        }
    }
    put64(lb, lsn);
    rc = store__mdb_err(mdb_put(txn, s->dbi_sys, &k, &v, 0));
out:
    return store__txn_end(s, txn, &fl, rc);
}

int
store_index_last_lsn(store *s, uint64_t *out)
{
    MDB_txn *txn;
    uint64_t lsn;
    int rc;

    if (!s || !out)
        return MRD_EINVAL;
    if ((rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn)) != 0)
        return store__mdb_err(rc);
    rc = get_lsn(s, txn, &lsn);
    mdb_txn_abort(txn);
    if (rc == 0)
        *out = lsn;
    return rc;
}

/* ---- lookups and walks ------------------------------------------------------ */

struct store_version_rec {
    store_version v;
    size_t len;
    unsigned char data[];
};

const store_version *
store_version_rec_get(const store_version_rec *rec)
{
    return rec ? &rec->v : NULL;
}

void
store_version_rec_free(store_version_rec *rec)
{
    free(rec);
}

int
store_index_get(store *s, const char *bucket, const char *key, const char *version_id,
                store_version_rec **out)
{
    char kb[KEYBUF], vid[KEYBUF];
    MDB_txn *txn;
    MDB_val k, v;
    store_version_rec *rec;
    int kl, rc;

    if (!s || !bucket || !key || !out)
        return MRD_EINVAL;
    if ((rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn)) != 0)
        return store__mdb_err(rc);
    if (!version_id) {
        if ((kl = store__make_key(s, kb, bucket, key, NULL)) < 0) {
            rc = kl;
            goto out;
        }
        k = (MDB_val){(size_t)kl, kb};
        if ((rc = store__mdb_err(mdb_get(txn, s->dbi_cur, &k, &v))) != 0)
            goto out;
        if (v.mv_size == 0 || v.mv_size > sizeof(vid)) {
            rc = MRD_ECORRUPT;
            goto out;
        }
        memcpy(vid, v.mv_data, v.mv_size);
        vid[v.mv_size - 1] = '\0';
        version_id = vid;
    }
    if ((kl = store__make_key(s, kb, bucket, key, version_id)) < 0) {
        rc = kl;
        goto out;
    }
    k = (MDB_val){(size_t)kl, kb};
    if ((rc = store__mdb_err(mdb_get(txn, s->dbi_ver, &k, &v))) != 0)
        goto out;
    rec = malloc(sizeof(*rec) + v.mv_size);
    if (!rec) {
        rc = -ENOMEM;
        goto out;
    }
    rec->len = v.mv_size;
    memcpy(rec->data, v.mv_data, v.mv_size);
    if ((rc = store__version_decode(rec->data, rec->len, &rec->v)) != 0) {
        free(rec);
        goto out;
    }
    *out = rec;
out:
    mdb_txn_abort(txn);
    return rc;
}

int
store_index_list(store *s, const char *bucket, const char *prefix, const char *start_after,
                 const char *start_after_version, unsigned flags, store_list_cb cb, void *user)
{
    char pfx[KEYBUF], start[KEYBUF + 2], name[KEYBUF], vk[KEYBUF];
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k, v;
    int pl, sl, rc, op, versions = (flags & STORE_LIST_VERSIONS) != 0;
    size_t bl;

    if (!s || !bucket || !bucket[0] || !cb)
        return MRD_EINVAL;
    prefix = prefix ? prefix : "";
    if ((pl = store__make_key(s, pfx, bucket, prefix, NULL)) < 0)
        return pl;
    bl = strlen(bucket) + 1;
    /* Seek target: the prefix, or just after start_after if that is later. */
    memcpy(start, pfx, (size_t)pl);
    sl = pl;
    if (start_after && strcmp(start_after, prefix) >= 0) {
        if (versions && start_after_version) {
            if ((sl = store__make_key(s, start, bucket, start_after, start_after_version)) < 0)
                return sl;
        } else {
            if ((sl = store__make_key(s, start, bucket, start_after, NULL)) < 0)
                return sl;
            /* In ver, every version of start_after sorts below start_after \1. */
            if (versions)
                start[sl++] = '\1';
        }
    } else {
        start_after = NULL;
    }
    if ((rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn)) != 0)
        return store__mdb_err(rc);
    if ((rc = mdb_cursor_open(txn, versions ? s->dbi_ver : s->dbi_cur, &cur)) != 0) {
        mdb_txn_abort(txn);
        return store__mdb_err(rc);
    }
    k = (MDB_val){(size_t)sl, start};
    for (op = MDB_SET_RANGE;; op = MDB_NEXT) {
        store_version ver;
        size_t nl;
        rc = mdb_cursor_get(cur, &k, &v, op);
        if (rc == MDB_NOTFOUND) {
            rc = 0;
            break;
        }
        if (rc != 0) {
            rc = store__mdb_err(rc);
            break;
        }
        if (k.mv_size < (size_t)pl || memcmp(k.mv_data, pfx, (size_t)pl) != 0)
            break;
        if (versions) {
            const char *kp = (const char *)k.mv_data + bl;
            const char *z = memchr(kp, '\0', k.mv_size - bl);
            if (!z) {
                rc = MRD_ECORRUPT;
                break;
            }
            nl = (size_t)(z - kp);
            if (start_after && start_after_version && op == MDB_SET_RANGE &&
                k.mv_size == (size_t)sl && memcmp(k.mv_data, start, (size_t)sl) == 0)
                continue; /* strictly after (start_after, start_after_version) */
            memcpy(name, kp, nl);
            name[nl] = '\0';
            if ((rc = store__version_decode(v.mv_data, v.mv_size, &ver)) != 0)
                break;
        } else {
            MDB_val vk2, vv;
            int vkl;
            nl = k.mv_size - bl;
            if (nl >= sizeof(name)) {
                rc = MRD_ECORRUPT;
                break;
            }
            memcpy(name, (const char *)k.mv_data + bl, nl);
            name[nl] = '\0';
            if (start_after && strcmp(name, start_after) == 0)
                continue;
            if (v.mv_size == 0 || ((const char *)v.mv_data)[v.mv_size - 1] != '\0') {
                rc = MRD_ECORRUPT;
                break;
            }
            if ((vkl = store__make_key(s, vk, bucket, name, v.mv_data)) < 0) {
                rc = vkl;
                break;
            }
            vk2 = (MDB_val){(size_t)vkl, vk};
            if ((rc = mdb_get(txn, s->dbi_ver, &vk2, &vv)) != 0) {
                rc = store__mdb_err(rc);
                break;
            }
            if ((rc = store__version_decode(vv.mv_data, vv.mv_size, &ver)) != 0)
                break;
        }
        if (cb(user, name, &ver) != 0)
            break;
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return rc;
}

/* Reads k from dbi in the read-only txn, which it ends, and returns a
 * malloc'd copy of the value (the caller frees it). */
static int
get_copy(MDB_txn *txn, MDB_dbi dbi, MDB_val *k, void **out, size_t *len)
{
    MDB_val v;
    void *copy;
    int rc = store__mdb_err(mdb_get(txn, dbi, k, &v));

    if (rc == 0) {
        copy = malloc(v.mv_size ? v.mv_size : 1);
        if (!copy) {
            rc = -ENOMEM;
        } else {
            memcpy(copy, v.mv_data, v.mv_size);
            *out = copy;
            *len = v.mv_size;
        }
    }
    mdb_txn_abort(txn);
    return rc;
}

int
store_bucket_get(store *s, const char *bucket, void **blob, size_t *len)
{
    char kb[KEYBUF];
    MDB_txn *txn;
    MDB_val k;
    int kl, rc;

    if (!s || !bucket || !blob || !len)
        return MRD_EINVAL;
    if ((kl = store__make_key(s, kb, bucket, NULL, NULL)) < 0)
        return kl;
    if ((rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn)) != 0)
        return store__mdb_err(rc);
    k = (MDB_val){(size_t)kl, kb};
    return get_copy(txn, s->dbi_buckets, &k, blob, len);
}

int
store_bucket_list(store *s, store_bucket_cb cb, void *user)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k, v;
    char name[KEYBUF];
    int rc;

    if (!s || !cb)
        return MRD_EINVAL;
    if ((rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn)) != 0)
        return store__mdb_err(rc);
    if ((rc = mdb_cursor_open(txn, s->dbi_buckets, &cur)) != 0) {
        mdb_txn_abort(txn);
        return store__mdb_err(rc);
    }
    for (int op = MDB_FIRST;; op = MDB_NEXT) {
        rc = mdb_cursor_get(cur, &k, &v, op);
        if (rc != 0) {
            rc = rc == MDB_NOTFOUND ? 0 : store__mdb_err(rc);
            break;
        }
        if (k.mv_size >= sizeof(name)) {
            rc = MRD_ECORRUPT;
            break;
        }
        memcpy(name, k.mv_data, k.mv_size);
        name[k.mv_size] = '\0';
        if (cb(user, name, v.mv_data, v.mv_size) != 0)
            break;
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return rc;
}

/* ---- meta keyspace ----------------------------------------------------------- */

static int
meta_write(store *s, MDB_dbi dbi, const void *key, size_t klen, const void *val, size_t len,
           int del)
{
    MDB_txn *txn;
    MDB_val k = {klen, (void *)key}, v = {len, (void *)(val ? val : "")};
    int rc;

    if (klen == 0 || klen > (size_t)mdb_env_get_maxkeysize(s->env))
        return MRD_EINVAL;
    if ((rc = mdb_txn_begin(s->env, NULL, 0, &txn)) != 0)
        return store__mdb_err(rc);
    rc = del ? store__del_ok(mdb_del(txn, dbi, &k, NULL))
             : store__mdb_err(mdb_put(txn, dbi, &k, &v, 0));
    if (rc != 0) {
        mdb_txn_abort(txn);
        return rc;
    }
    return store__txn_commit(s, txn);
}

int
store_meta_put(store *s, const char *key, const void *val, size_t len)
{
    if (!s || !key || (!val && len))
        return MRD_EINVAL;
    return meta_write(s, s->dbi_meta, key, strlen(key), val, len, 0);
}

int
store_meta_del(store *s, const char *key)
{
    if (!s || !key)
        return MRD_EINVAL;
    return meta_write(s, s->dbi_meta, key, strlen(key), NULL, 0, 1);
}

int
store_meta_get(store *s, const char *key, void **val, size_t *len)
{
    MDB_txn *txn;
    MDB_val k;
    int rc;

    if (!s || !key || !key[0] || !val || !len)
        return MRD_EINVAL;
    if ((rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn)) != 0)
        return store__mdb_err(rc);
    k = (MDB_val){strlen(key), (void *)key};
    return get_copy(txn, s->dbi_meta, &k, val, len);
}

/* ---- heal queue and thread ----------------------------------------------------- */

int
store__healq_add(store *s, const void *layout, size_t len)
{
    store_layout l;
    int rc = store__layout_parse(layout, len, &l);

    MDB_txn *txn;
    MDB_val k = {STORE_OBJID_LEN, l.objid}, v;

    if (rc != 0 || l.kind != STORE_LAYOUT_EC)
        return rc;
    /* Already queued: skip the durable commit (a read-only lookup is ~100x
     * cheaper than a commit, and damaged objects are read again and again). */
    if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) == 0) {
        rc = mdb_get(txn, s->dbi_healq, &k, &v);
        mdb_txn_abort(txn);
        if (rc == 0)
            return 0;
    }
    return meta_write(s, s->dbi_healq, l.objid, STORE_OBJID_LEN, layout, len, 0);
}

int
store__healq_del(store *s, const unsigned char *objid)
{
    return meta_write(s, s->dbi_healq, objid, STORE_OBJID_LEN, NULL, 0, 1);
}

/* Copies the first entry of dbi strictly after *last (or the first entry when
 * *last_len is 0) into last (key) and *val, and advances last. Returns MRD_ENOTFOUND at
 * the end. */
static int
next_entry(store *s, MDB_dbi dbi, char *last, size_t *last_len, void **val, size_t *vlen)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k = {*last_len, last}, v;
    int rc;

    if ((rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn)) != 0)
        return store__mdb_err(rc);
    if ((rc = mdb_cursor_open(txn, dbi, &cur)) != 0) {
        mdb_txn_abort(txn);
        return store__mdb_err(rc);
    }
    rc = mdb_cursor_get(cur, &k, &v, *last_len ? MDB_SET_RANGE : MDB_FIRST);
    if (rc == 0 && *last_len && k.mv_size == *last_len && memcmp(k.mv_data, last, *last_len) == 0)
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    if (rc == 0) {
        if (k.mv_size > KEYBUF) {
            rc = MRD_ECORRUPT;
        } else if ((*val = malloc(v.mv_size ? v.mv_size : 1)) == NULL) {
            rc = -ENOMEM;
        } else {
            memcpy(last, k.mv_data, k.mv_size);
            *last_len = k.mv_size;
            memcpy(*val, v.mv_data, v.mv_size);
            *vlen = v.mv_size;
        }
    } else {
        rc = store__mdb_err(rc);
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return rc;
}

static void
heal_one(store *s, const void *layout, size_t len, int from_queue)
{
    store_layout l;
    int rc = store_heal_object(s, layout, len, NULL);

    if (rc != 0) {
        atomic_fetch_add(&s->heal_errors, 1);
    } else if (from_queue && store__layout_parse(layout, len, &l) == 0) {
        if (store__healq_del(s, l.objid) != 0)
            atomic_fetch_add(&s->heal_errors, 1);
    }
    atomic_fetch_add(&s->heal_checked, 1);
}

static void *
heal_main(void *arg)
{
    store *s = arg;
    char last[KEYBUF];
    size_t last_len = 0, vlen;
    void *val;

    MRD_INFO("store.heal_start", "all=%d total=%llu", s->heal_all,
             (unsigned long long)atomic_load(&s->heal_total));
    while (!atomic_load(&s->heal_stop) &&
           next_entry(s, s->dbi_healq, last, &last_len, &val, &vlen) == 0) {
        heal_one(s, val, vlen, 1);
        free(val);
    }
    last_len = 0;
    while (s->heal_all && !atomic_load(&s->heal_stop) &&
           next_entry(s, s->dbi_ver, last, &last_len, &val, &vlen) == 0) {
        store_version v;
        if (store__version_decode(val, vlen, &v) != 0)
            atomic_fetch_add(&s->heal_errors, 1);
        else if (v.layout_len > 0)
            heal_one(s, v.layout, v.layout_len, 0);
        else
            atomic_fetch_add(&s->heal_checked, 1);
        free(val);
    }
    MRD_INFO("store.heal_done", "checked=%llu rebuilt=%llu errors=%llu",
             (unsigned long long)atomic_load(&s->heal_checked),
             (unsigned long long)atomic_load(&s->heal_rebuilt),
             (unsigned long long)atomic_load(&s->heal_errors));
    atomic_store(&s->heal_running, 0);
    return NULL;
}

int
store_heal_start(store *s, int all)
{
    MDB_txn *txn;
    MDB_stat st;
    uint64_t total = 0;
    int rc = 0;

    if (!s)
        return MRD_EINVAL;
    pthread_mutex_lock(&s->heal_mu);
    if (atomic_load(&s->heal_running)) {
        rc = MRD_EBUSY;
        goto out;
    }
    if (s->heal_thread_live) {
        pthread_join(s->heal_thread, NULL);
        s->heal_thread_live = 0;
    }
    if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) == 0) {
        if (mdb_stat(txn, s->dbi_healq, &st) == 0)
            total += st.ms_entries;
        if (all && mdb_stat(txn, s->dbi_ver, &st) == 0)
            total += st.ms_entries;
        mdb_txn_abort(txn);
    }
    s->heal_all = all;
    atomic_store(&s->heal_stop, 0);
    atomic_store(&s->heal_total, total);
    atomic_store(&s->heal_checked, 0);
    atomic_store(&s->heal_rebuilt, 0);
    atomic_store(&s->heal_errors, 0);
    atomic_store(&s->heal_running, 1);
    if ((rc = pthread_create(&s->heal_thread, NULL, heal_main, s)) != 0) {
        atomic_store(&s->heal_running, 0);
        rc = -rc;
        goto out;
    }
    s->heal_thread_live = 1;
out:
    pthread_mutex_unlock(&s->heal_mu);
    return rc;
}

void
store_heal_wait(store *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->heal_mu);
    if (s->heal_thread_live) {
        pthread_join(s->heal_thread, NULL);
        s->heal_thread_live = 0;
    }
    pthread_mutex_unlock(&s->heal_mu);
}
