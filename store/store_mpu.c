/*
 * store_mpu.c - multipart uploads in progress: two LMDB databases next to
 * the object index.
 *
 *   mpu    bucket \0 key \0 upload_id  -> u64 complete mark, u64 created ms,
 *                                         caller's blob
 *   mpart  upload_id \0 u32 BE number  -> u64 size, u64 mtime ms, md5[16],
 *                                         the part's layout blob
 *
 * Uploads are site-local: they are not in the WAL and never replicate (the
 * completed object does, as one object). What makes an acknowledged part
 * survive kill -9 is the order: its data is durable (store_writer_finish)
 * before its mpart record is committed, and the record commit is what the
 * gateway waits for before answering 200. Every part operation looks the
 * upload up in the same write transaction, so a part never lands in an
 * upload that was aborted or completed meanwhile (its caller then frees the
 * data).
 *
 * The complete mark. CompleteMultipartUpload reads the part list, checks it,
 * builds the object's layout out of the parts' layouts and writes the WAL
 * record, in that order and not in one transaction: a part replaced or an
 * upload aborted in between would free data the new object points at. So
 * Complete first stores this process's boot token in the upload record;
 * part_put and abort refuse (MRD_EBUSY) while the mark is this process's.
 * A mark from an earlier process (one that died mid-Complete) means nothing,
 * so a Complete can always be retried after a restart.
 *
 * Finishing. The WAL record of a completed upload is applied to the index
 * with a STORE_OP_MPU_FINISH op in the same transaction that makes the object
 * visible: the upload and its part records go, and the data of parts the
 * object's layout does not use is freed after the commit. A crash between
 * the commit and those frees leaves unreferenced shards (as a crash between
 * a PUT's data and its record does).
 */
#include "store_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MARK_LEN 16 /* the complete mark, then the creation time */
#define UPID_MAX 128
#define PKEY_MAX (UPID_MAX + 1 + 4)

static void
be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static uint32_t
rbe32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* ---- free lists -------------------------------------------------------- */

int
store__freelist_add(store__freelist *fl, const void *blob, size_t len)
{
    void *copy;

    if (fl->n == fl->cap) {
        size_t cap = fl->cap ? fl->cap * 2 : 16;
        void **b = realloc(fl->blob, cap * sizeof(*b));
        size_t *l;
        if (!b)
            return -ENOMEM;
        fl->blob = b;
        if (!(l = realloc(fl->len, cap * sizeof(*l))))
            return -ENOMEM;
        fl->len = l;
        fl->cap = cap;
    }
    if (!(copy = malloc(len ? len : 1)))
        return -ENOMEM;
    memcpy(copy, blob, len);
    fl->blob[fl->n] = copy;
    fl->len[fl->n++] = len;
    return 0;
}

int
store__txn_end(store *s, MDB_txn *txn, store__freelist *fl, int rc)
{
    if (rc != 0)
        mdb_txn_abort(txn);
    else
        rc = store__txn_commit(s, txn);
    store__freelist_run(s, fl, rc == 0);
    return rc;
}

void
store__freelist_run(store *s, store__freelist *fl, int commit_ok)
{
    for (size_t i = 0; i < fl->n; i++) {
        if (commit_ok)
            store_object_delete_data(s, fl->blob[i], fl->len[i]);
        free(fl->blob[i]);
    }
    free(fl->blob);
    free(fl->len);
    memset(fl, 0, sizeof(*fl));
}

/* ---- keys ------------------------------------------------------------------ */

static int
upid_ok(const char *upload_id)
{
    size_t n = upload_id ? strlen(upload_id) : 0;

    return n > 0 && n <= UPID_MAX;
}

static size_t
part_key(unsigned char *out, const char *upload_id, uint32_t number)
{
    size_t n = strlen(upload_id);

    memcpy(out, upload_id, n);
    out[n] = '\0';
    be32(out + n + 1, number);
    return n + 5;
}

/* Looks the upload up in txn: its value in *v. */
static int
upload_get(store *s, MDB_txn *txn, const char *bucket, const char *key, const char *upload_id,
           char *kb, MDB_val *k, MDB_val *v)
{
    int kl;

    if (!bucket || !key || !upid_ok(upload_id))
        return MRD_EINVAL;
    if ((kl = store__make_key(s, kb, bucket, key, upload_id)) < 0)
        return kl;
    *k = (MDB_val){(size_t)kl, kb};
    return store__mdb_err(mdb_get(txn, s->dbi_mpu, k, v));
}

static int
write_txn(store *s, MDB_txn **txn)
{
    return store__mdb_err(mdb_txn_begin(s->env, NULL, 0, txn));
}

/* ---- uploads --------------------------------------------------------------- */

int
store_mpu_create(store *s, const char *bucket, const char *key, const char *upload_id,
                 const void *blob, size_t len)
{
    char kb[KEYBUF];
    MDB_txn *txn;
    MDB_val k, v;
    unsigned char *val;
    int rc;

    if (!s || (!blob && len))
        return MRD_EINVAL;
    if (!(val = calloc(1, MARK_LEN + len)))
        return -ENOMEM;
    if (len)
        memcpy(val + MARK_LEN, blob, len);
    store__put64(val + 8, mrd_clock_realtime_ms(NULL));
    if ((rc = write_txn(s, &txn)) != 0) {
        free(val);
        return rc;
    }
    rc = upload_get(s, txn, bucket, key, upload_id, kb, &k, &v);
    if (rc == 0)
        rc = MRD_EEXIST;
    else if (rc == MRD_ENOTFOUND)
        rc = store__mdb_err(
            mdb_put(txn, s->dbi_mpu, &k, &(MDB_val){MARK_LEN + len, val}, MDB_NOOVERWRITE));
    free(val);
    return store__txn_end(s, txn, &(store__freelist){0}, rc);
}

int
store_mpu_get(store *s, const char *bucket, const char *key, const char *upload_id, void **blob,
              size_t *len)
{
    char kb[KEYBUF];
    MDB_txn *txn;
    MDB_val k, v;
    int rc;

    if (!s || !blob || !len)
        return MRD_EINVAL;
    if ((rc = store__mdb_err(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn))) != 0)
        return rc;
    rc = upload_get(s, txn, bucket, key, upload_id, kb, &k, &v);
    if (rc == 0 && v.mv_size < MARK_LEN)
        rc = MRD_ECORRUPT;
    if (rc == 0) {
        size_t n = v.mv_size - MARK_LEN;
        void *c = malloc(n ? n : 1);
        if (!c) {
            rc = -ENOMEM;
        } else {
            memcpy(c, (const unsigned char *)v.mv_data + MARK_LEN, n);
            *blob = c;
            *len = n;
        }
    }
    mdb_txn_abort(txn);
    return rc;
}

/* 1 when the upload's value carries this process's complete mark. */
static int
completing(store *s, const MDB_val *v)
{
    return v->mv_size >= MARK_LEN && store__get64(v->mv_data) == s->boot_token;
}

/* Sets (token != 0) or clears the mark. */
static int
set_mark(store *s, const char *bucket, const char *key, const char *upload_id, uint64_t token)
{
    char kb[KEYBUF];
    MDB_txn *txn;
    MDB_val k, v;
    unsigned char *val = NULL;
    int rc;

    if (!s)
        return MRD_EINVAL;
    if ((rc = write_txn(s, &txn)) != 0)
        return rc;
    rc = upload_get(s, txn, bucket, key, upload_id, kb, &k, &v);
    if (rc == 0 && v.mv_size < MARK_LEN)
        rc = MRD_ECORRUPT;
    if (rc == 0 && token && completing(s, &v))
        rc = MRD_EBUSY;
    if (rc == 0 && !(val = malloc(v.mv_size)))
        rc = -ENOMEM;
    if (rc == 0) {
        memcpy(val, v.mv_data, v.mv_size);
        store__put64(val, token);
        v.mv_data = val;
        rc = store__mdb_err(mdb_put(txn, s->dbi_mpu, &k, &v, 0));
    }
    free(val);
    return store__txn_end(s, txn, &(store__freelist){0}, rc);
}

int
store_mpu_complete_begin(store *s, const char *bucket, const char *key, const char *upload_id)
{
    return set_mark(s, bucket, key, upload_id, s ? s->boot_token : 0);
}

int
store_mpu_complete_cancel(store *s, const char *bucket, const char *key, const char *upload_id)
{
    return set_mark(s, bucket, key, upload_id, 0);
}

/*
 * Deletes every part record of upload_id in txn. Parts whose data must go
 * are added to fl: all of them when keep is NULL, else those whose object
 * id is not among keep[0..n_keep) (sorted).
 */
static int
drop_parts(store *s, MDB_txn *txn, const char *upload_id, const unsigned char (*keep)[16],
           size_t n_keep, store__freelist *fl)
{
    unsigned char pk[PKEY_MAX];
    size_t plen = part_key(pk, upload_id, 0) - 4;
    MDB_cursor *cur;
    MDB_val k = {plen, pk}, v;
    int rc;

    if ((rc = mdb_cursor_open(txn, s->dbi_mpart, &cur)) != 0)
        return store__mdb_err(rc);
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        store_layout l;
        int used = 0;
        if (k.mv_size != plen + 4 || memcmp(k.mv_data, pk, plen) != 0)
            break;
        if (v.mv_size < STORE_MPART_FIX)
            continue; /* unreadable: drop the record, nothing to free */
        if (keep && store__layout_parse((const unsigned char *)v.mv_data + STORE_MPART_FIX,
                                        v.mv_size - STORE_MPART_FIX, &l) == 0) {
            for (size_t i = 0; i < n_keep && !used; i++)
                used = memcmp(keep[i], l.objid, STORE_OBJID_LEN) == 0;
        }
        if (!used &&
            (rc = store__freelist_add(fl, (const unsigned char *)v.mv_data + STORE_MPART_FIX,
                                      v.mv_size - STORE_MPART_FIX)) != 0)
            break;
        if ((rc = mdb_cursor_del(cur, 0)) != 0)
            break;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : store__mdb_err(rc);
}

int
store_mpu_abort(store *s, const char *bucket, const char *key, const char *upload_id)
{
    char kb[KEYBUF];
    store__freelist fl = {0};
    MDB_txn *txn;
    MDB_val k, v;
    int rc;

    if (!s)
        return MRD_EINVAL;
    if ((rc = write_txn(s, &txn)) != 0)
        return rc;
    rc = upload_get(s, txn, bucket, key, upload_id, kb, &k, &v);
    if (rc == 0 && completing(s, &v))
        rc = MRD_EBUSY;
    if (rc == 0)
        rc = store__mdb_err(mdb_del(txn, s->dbi_mpu, &k, NULL));
    if (rc == 0)
        rc = drop_parts(s, txn, upload_id, NULL, 0, &fl);
    return store__txn_end(s, txn, &fl, rc);
}

int
store__mpu_finish(store *s, MDB_txn *txn, const char *bucket, const char *key,
                  const char *upload_id, const void *layout, size_t layout_len, store__freelist *fl)
{
    char kb[KEYBUF];
    MDB_val k, v;
    store_layout l;
    store__part_ent *pe = NULL;
    unsigned char(*keep)[16] = NULL;
    size_t n_keep = 0;
    int rc = upload_get(s, txn, bucket, key, upload_id, kb, &k, &v);

    if (rc == MRD_ENOTFOUND)
        return 0; /* already finished (replay) or aborted */
    if (rc != 0)
        return rc;
    if ((rc = store__mdb_err(mdb_del(txn, s->dbi_mpu, &k, NULL))) != 0)
        return rc;
    if (layout && store__layout_parse(layout, layout_len, &l) == 0 &&
        l.kind == STORE_LAYOUT_PARTS) {
        if ((rc = store__parts_index(&l, &pe)) != 0)
            return rc;
        if (!(keep = calloc(l.n_parts, sizeof(*keep)))) {
            free(pe);
            return -ENOMEM;
        }
        for (uint32_t i = 0; i < l.n_parts; i++) {
            store_layout sub;
            if (store__layout_parse(pe[i].blob, pe[i].len, &sub) == 0 &&
                sub.kind == STORE_LAYOUT_EC)
                memcpy(keep[n_keep++], sub.objid, STORE_OBJID_LEN);
        }
        free(pe);
    } else if (layout) {
        return MRD_ECORRUPT; /* never free parts for a layout we cannot read */
    }
    rc = drop_parts(s, txn, upload_id, (const unsigned char(*)[16])keep, n_keep, fl);
    free(keep);
    return rc;
}

/* ---- parts ----------------------------------------------------------------- */

int
store_mpu_part_put(store *s, const char *bucket, const char *key, const char *upload_id,
                   const store_mpu_part *p)
{
    char kb[KEYBUF];
    unsigned char pk[PKEY_MAX], *val;
    store__freelist fl = {0};
    MDB_txn *txn;
    MDB_val k, v, pkv, old;
    int rc;

    if (!s || !p || !p->layout || p->number < 1 || p->number > STORE_MPU_MAX_PARTS ||
        !upid_ok(upload_id))
        return MRD_EINVAL;
    if (!(val = malloc(STORE_MPART_FIX + p->layout_len)))
        return -ENOMEM;
    store__put64(val, p->size);
    store__put64(val + 8, p->mtime_ms);
    memcpy(val + 16, p->md5, 16);
    memcpy(val + STORE_MPART_FIX, p->layout, p->layout_len);
    pkv = (MDB_val){part_key(pk, upload_id, p->number), pk};
    if ((rc = write_txn(s, &txn)) != 0) {
        free(val);
        return rc;
    }
    rc = upload_get(s, txn, bucket, key, upload_id, kb, &k, &v);
    if (rc == 0 && completing(s, &v))
        rc = MRD_EBUSY;
    if (rc == 0) {
        rc = mdb_get(txn, s->dbi_mpart, &pkv, &old);
        if (rc == 0 && old.mv_size >= STORE_MPART_FIX)
            rc = store__freelist_add(&fl, (const unsigned char *)old.mv_data + STORE_MPART_FIX,
                                     old.mv_size - STORE_MPART_FIX);
        else
            rc = rc == MDB_NOTFOUND || rc == 0 ? 0 : store__mdb_err(rc);
    }
    if (rc == 0)
        rc = store__mdb_err(
            mdb_put(txn, s->dbi_mpart, &pkv, &(MDB_val){STORE_MPART_FIX + p->layout_len, val}, 0));
    free(val);
    return store__txn_end(s, txn, &fl, rc);
}

int
store_mpu_parts(store *s, const char *bucket, const char *key, const char *upload_id,
                uint32_t after, store_mpu_part_cb cb, void *user)
{
    char kb[KEYBUF];
    unsigned char pk[PKEY_MAX];
    size_t plen;
    MDB_txn *txn;
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    int rc;

    if (!s || !cb)
        return MRD_EINVAL;
    if ((rc = store__mdb_err(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn))) != 0)
        return rc;
    rc = upload_get(s, txn, bucket, key, upload_id, kb, &k, &v);
    if (rc == 0)
        rc = store__mdb_err(mdb_cursor_open(txn, s->dbi_mpart, &cur));
    if (rc != 0)
        goto out;
    plen = part_key(pk, upload_id, after + 1) - 4;
    k = (MDB_val){plen + 4, pk};
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const unsigned char *d = v.mv_data;
        store_mpu_part p;
        if (k.mv_size != plen + 4 || memcmp(k.mv_data, pk, plen) != 0)
            break;
        if (v.mv_size < STORE_MPART_FIX) {
            rc = MRD_ECORRUPT;
            break;
        }
        p.number = rbe32((const unsigned char *)k.mv_data + plen);
        p.size = store__get64(d);
        p.mtime_ms = store__get64(d + 8);
        memcpy(p.md5, d + 16, 16);
        p.layout = d + STORE_MPART_FIX;
        p.layout_len = v.mv_size - STORE_MPART_FIX;
        if (cb(user, &p) != 0)
            break;
    }
    rc = rc == MDB_NOTFOUND ? 0 : store__mdb_err(rc);
out:
    if (cur)
        mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return rc;
}

int
store_mpu_list(store *s, const char *bucket, const char *prefix, const char *key_marker,
               const char *upload_id_marker, store_mpu_cb cb, void *user)
{
    char kb[KEYBUF], kcopy[KEYBUF], *kname, *uid;
    size_t blen, plen = prefix ? strlen(prefix) : 0;
    MDB_txn *txn;
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    int kl, rc, op = MDB_SET_RANGE;

    if (!s || !bucket || !cb)
        return MRD_EINVAL;
    blen = strlen(bucket);
    if (key_marker && *key_marker)
        kl = store__make_key(s, kb, bucket, key_marker,
                             upload_id_marker && *upload_id_marker ? upload_id_marker : "\xff");
    else
        kl = store__make_key(s, kb, bucket, prefix ? prefix : "", NULL);
    if (kl < 0)
        return kl;
    if ((rc = store__mdb_err(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn))) != 0)
        return rc;
    if ((rc = store__mdb_err(mdb_cursor_open(txn, s->dbi_mpu, &cur))) != 0)
        goto out;
    k = (MDB_val){(size_t)kl, kb};
    for (rc = mdb_cursor_get(cur, &k, &v, op); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size >= KEYBUF || k.mv_size <= blen || memcmp(k.mv_data, bucket, blen) != 0 ||
            ((const char *)k.mv_data)[blen] != '\0')
            break;
        memcpy(kcopy, k.mv_data, k.mv_size);
        kcopy[k.mv_size] = '\0';
        kname = kcopy + blen + 1;
        uid = kname + strlen(kname) + 1;
        if (uid > kcopy + k.mv_size || v.mv_size < MARK_LEN)
            continue;
        if (key_marker && *key_marker && strcmp(kname, key_marker) == 0 &&
            (!upload_id_marker || !*upload_id_marker || strcmp(uid, upload_id_marker) <= 0))
            continue; /* at or before the marker */
        if (plen && strncmp(kname, prefix, plen) != 0) {
            if (strncmp(kname, prefix, plen) > 0)
                break;
            continue;
        }
        if (cb(user, kname, uid, (const unsigned char *)v.mv_data + MARK_LEN,
               v.mv_size - MARK_LEN) != 0)
            break;
    }
    rc = rc == MDB_NOTFOUND ? 0 : store__mdb_err(rc);
out:
    if (cur)
        mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return rc;
}

/* ---- expiry ---------------------------------------------------------------- */

typedef struct expired {
    char (*key)[KEYBUF];
    size_t n, cap;
    int nomem;
} expired;

int
store_mpu_expire(store *s, uint64_t before_ms, uint64_t *aborted)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k, v;
    expired ex = {0};
    uint64_t n = 0;
    int rc;

    if (!s)
        return MRD_EINVAL;
    if ((rc = store__mdb_err(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn))) != 0)
        return rc;
    if ((rc = mdb_cursor_open(txn, s->dbi_mpu, &cur)) != 0) {
        mdb_txn_abort(txn);
        return store__mdb_err(rc);
    }
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (v.mv_size < MARK_LEN ||
            store__get64((const unsigned char *)v.mv_data + 8) >= before_ms || k.mv_size >= KEYBUF)
            continue;
        if (ex.n == ex.cap) {
            size_t cap = ex.cap ? ex.cap * 2 : 16;
            void *p = realloc(ex.key, cap * KEYBUF);
            if (!p) {
                ex.nomem = 1;
                break;
            }
            ex.key = p;
            ex.cap = cap;
        }
        memcpy(ex.key[ex.n], k.mv_data, k.mv_size);
        ex.key[ex.n++][k.mv_size] = '\0'; /* bucket \0 key \0 upload id \0 */
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    rc = ex.nomem ? -ENOMEM : 0;
    for (size_t i = 0; i < ex.n && rc == 0; i++) {
        const char *b = ex.key[i], *key = b + strlen(b) + 1, *id = key + strlen(key) + 1;
        int r = store_mpu_abort(s, b, key, id);
        if (r == 0) {
            n++;
            MRD_INFO("store.mpu_expired", "bucket=%s upload=%s", b, id);
        } else if (r != MRD_ENOTFOUND && r != MRD_EBUSY) {
            rc = r; /* gone or completing meanwhile: not ours to abort */
        }
    }
    free(ex.key);
    if (rc == 0 && aborted)
        *aborted = n;
    return rc;
}
