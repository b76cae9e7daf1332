/*
 * engine_mut.c - the front half of every mutation: checks, stamp, append.
 *
 * The public mutation functions copy their arguments and run the rest on a
 * pool worker, because the checks read the LMDB index (blocking, by the
 * store's rules). The worker then, under mut_mu:
 *   1. checks preconditions against the index (bucket exists / is empty /
 *      the key has something to delete);
 *   2. stamps the version: conflict_stamp(current vv, site, HLC now), after
 *      observing the current version's HLC so a new write is stamped after
 *      everything it overwrites;
 *   3. packs the WalRecord and calls wal_append, which assigns the LSN.
 * Holding mut_mu across 2 and 3 makes LSN order equal stamp order: two
 * racing writes to one key both stamp from the same base, the later one has
 * the larger counter for this site and therefore dominates, and it is also
 * the later record, so the applier (which applies in LSN order) makes the
 * dominating one current. wal_append never blocks (it copies and queues),
 * so the lock is held for microseconds.
 *
 * The append callback runs on the WAL writer thread and only hands the
 * record to the applier (engine_apply.c). A precondition failure or an
 * append error is answered at once through the completion queue.
 *
 * Versioning. Puts, completes and delete markers carry `versioned`, the
 * bucket's state here when the record is written (enabled: a real version;
 * unset or suspended: a null version), so what every site keeps of them
 * never depends on when it learned of a versioning change. DELETE with a
 * versionId is an OBJECT_DELETE; a bucket configuration change is a
 * BUCKET_CONFIG stamped (hlc, site) (engine_bucket.c settles both).
 *
 * Known gaps (see the issue notes): preconditions read the committed index,
 * so two CreateBucket calls racing within one group commit both succeed (S3
 * answers the second BucketAlreadyOwnedByYou), and a PUT racing a
 * DeleteBucket can land in the deleted bucket; the conflict rules' bucket
 * resurrection (docs/conflicts.md) is what makes the latter converge.
 */
#include "engine_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef enum {
    MUT_BUCKET_CREATE,
    MUT_BUCKET_DELETE,
    MUT_PUT,
    MUT_DELETE,
    MUT_MPU,
    MUT_TAGS,
    MUT_DELETE_VERSION,
    MUT_CONFIG
} mut_kind;

typedef struct mut {
    engine *e;
    mut_kind kind;
    engine_cb cb;
    void *ud;
    char *bucket, *key, *version_id, *etag, *content_type;
    uint64_t size;
    Meridian__KeyValue *meta_store;
    Meridian__KeyValue **meta;
    size_t n_meta;
    void *layout;
    size_t layout_len;
    char *upload_id; /* MUT_MPU */
    char *tagging;   /* MUT_TAGS */
    uint32_t part_count;
    char *marker_vid; /* MUT_DELETE: caller's 25 bytes for the marker's id, or NULL */
    /* MUT_CONFIG: the registers to set (meta_store/meta hold the tags) */
    int has_versioning, versioning, has_tags, has_acl, acl;
} mut;

static void
mut_free(mut *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_meta; i++) {
        free(m->meta_store[i].key);
        free(m->meta_store[i].value);
    }
    free(m->meta_store);
    free(m->meta);
    free(m->bucket);
    free(m->key);
    free(m->version_id);
    free(m->etag);
    free(m->content_type);
    free(m->layout);
    free(m->upload_id);
    free(m->tagging);
    free(m);
}

static void
append_done(void *ud, int status, uint64_t lsn)
{
    engine__pending *p = ud;
    engine *e = p->e;

    p->lsn = lsn;
    p->status = status;
    pthread_mutex_lock(&e->ap_mu);
    if (e->ap_tail)
        e->ap_tail->next = p;
    else
        e->ap_head = p;
    e->ap_tail = p;
    pthread_cond_signal(&e->ap_cv);
    pthread_mutex_unlock(&e->ap_mu);
}

/* Packs rec and appends it; on success the applier owns the rest. */
static int
append_pending(engine *e, Meridian__WalRecord *rec, uint16_t type, Meridian__WalRecord *dec,
               Meridian__WalRecord *inner, engine_cb cb, void *ud)
{
    engine__pending *p = calloc(1, sizeof(*p));
    uint8_t *buf = NULL;
    size_t len;
    int rc;

    if (!p)
        return -ENOMEM;
    rec->format = WAL_RECORD_FORMAT;
    len = p->len = meridian__wal_record__get_packed_size(rec);
    if (!(p->payload = malloc(p->len ? p->len : 1))) {
        free(p);
        return -ENOMEM;
    }
    meridian__wal_record__pack(rec, p->payload);
    p->e = e;
    p->type = type;
    p->cb = cb;
    p->ud = ud;
    p->cq = engine__cur_cq(e);
    if (dec) {
        /* the applier needs only the decoded form; the WAL copies the
         * bytes before wal_append returns */
        buf = p->payload;
        p->payload = NULL;
        p->rec = dec;
        p->inner = inner;
    }
    /* p may be applied and freed on other threads before this returns */
    rc = wal_append(e->w, type, buf ? buf : p->payload, len, append_done, p, NULL);
    free(buf);
    if (rc != 0) {
        free(p->payload);
        free(p);
        return rc;
    }
    pthread_mutex_lock(&e->ap_mu);
    e->mutations++;
    pthread_mutex_unlock(&e->ap_mu);
    return 0;
}

int
engine__append(engine *e, Meridian__WalRecord *rec, uint16_t type, engine_cb cb, void *ud)
{
    return append_pending(e, rec, type, NULL, NULL, cb, ud);
}

int
engine__append_decoded(engine *e, Meridian__WalRecord *rec, uint16_t type, Meridian__WalRecord *dec,
                       Meridian__WalRecord *inner, engine_cb cb, void *ud)
{
    return append_pending(e, rec, type, dec, inner, cb, ud);
}

static int
bucket_exists(engine *e, const char *bucket)
{
    void *blob = NULL;
    size_t len = 0;
    int rc = store_bucket_get(e->st, bucket, &blob, &len);

    free(blob);
    return rc;
}

int
engine__bucket_versioning(engine *e, const char *bucket, int *state)
{
    void *blob = NULL;
    size_t len = 0;
    int rc = store_bucket_get(e->st, bucket, &blob, &len);

    *state = ENGINE_VERSIONING_UNSET;
    if (rc == 0 && engine_bucket_versioning(blob, len, state) != 0)
        rc = MRD_ECORRUPT;
    free(blob);
    return rc;
}

/* store_list_cb: sets *(int *)user when any version is not a delete marker
 * (nor a tombstone, which is one): a versioned bucket holding only markers
 * counts as empty (docs/conflicts.md, "Buckets"). */
static int
find_data(void *user, const char *key, const store_version *v)
{
    (void)key;
    if (!(v->flags & STORE_VF_DELETE_MARKER)) {
        *(int *)user = 1;
        return 1;
    }
    return 0;
}

int
engine__bucket_has_data(engine *e, const char *bucket, int *has)
{
    int state = 0, rc = engine__bucket_versioning(e, bucket, &state);

    *has = 0;
    if (rc != 0)
        return rc;
    /* unversioned: only current versions count, as always; once versioning
     * was set, older versions are user data too */
    if (state == ENGINE_VERSIONING_UNSET)
        return store_index_list(e->st, bucket, NULL, NULL, NULL, 0, engine__find_live, has);
    return store_index_list(e->st, bucket, NULL, NULL, NULL, STORE_LIST_VERSIONS, find_data, has);
}

int
engine__find_live(void *user, const char *key, const store_version *v)
{
    (void)key;
    if (!(v->flags & STORE_VF_DELETE_MARKER)) {
        *(int *)user = 1;
        return 1;
    }
    return 0;
}

/* The new version's vv and stamp, from the key's current version. */
static int
stamp(engine *e, const char *bucket, const char *key, vv *out, mrd_hlc_stamp *hlc, int *cur_is_live)
{
    store_version_rec *cur = NULL;
    vv base;
    int rc;

    memset(&base, 0, sizeof(base));
    *cur_is_live = 0;
    rc = store_index_get(e->st, bucket, key, NULL, &cur);
    if (rc == 0) {
        const store_version *v = store_version_rec_get(cur);
        rc = vv_decode(v->vv, v->vv_len, &base);
        mrd_hlc_observe(e->hlc, v->hlc);
        *cur_is_live = !(v->flags & STORE_VF_DELETE_MARKER);
        store_version_rec_free(cur);
        if (rc != 0)
            return MRD_ECORRUPT;
    } else if (rc != MRD_ENOTFOUND) {
        return rc;
    }
    *hlc = mrd_hlc_now(e->hlc);
    return conflict_stamp(&base, e->site, *hlc, out);
}

/* OBJECT_DELETE of one version: the record carries the version's vector
 * when this site holds it (the tombstone's content everywhere), stamped
 * after the version so a site that orders by HLC sees it later. */
static int
delete_version(engine *e, mut *m)
{
    Meridian__WalRecord rec = MERIDIAN__WAL_RECORD__INIT;
    Meridian__ObjectDelete od = MERIDIAN__OBJECT_DELETE__INIT;
    Meridian__VersionVector vmsg;
    Meridian__VvEntry ents[VV_MAX_SITES], *ptrs[VV_MAX_SITES];
    store_version_rec *old = NULL;
    vv base;
    int rc;

    memset(&base, 0, sizeof(base));
    if ((rc = bucket_exists(e, m->bucket)) != 0)
        return rc;
    rc = store_index_get(e->st, m->bucket, m->key, m->version_id, &old);
    if (rc == 0) {
        const store_version *v = store_version_rec_get(old);
        mrd_hlc_observe(e->hlc, v->hlc);
        if (vv_decode(v->vv, v->vv_len, &base) != 0)
            rc = MRD_ECORRUPT;
        store_version_rec_free(old);
    } else if (rc == MRD_ENOTFOUND) {
        rc = 0; /* not here (yet): the tombstone still stops it arriving later */
    }
    if (rc != 0)
        return rc;
    vv_to_proto(&base, &vmsg, ents, ptrs);
    od.bucket = m->bucket;
    od.key = m->key;
    od.version_id = m->version_id;
    od.vv = &vmsg;
    od.hlc = mrd_hlc_now(e->hlc);
    rec.body_case = MERIDIAN__WAL_RECORD__BODY_OBJECT_DELETE;
    rec.object_delete = &od;
    return engine__append(e, &rec, WAL_REC_OBJECT_DELETE, m->cb, m->ud);
}

static int
bucket_config(engine *e, mut *m)
{
    Meridian__WalRecord rec = MERIDIAN__WAL_RECORD__INIT;
    Meridian__BucketConfig bc = MERIDIAN__BUCKET_CONFIG__INIT;
    int rc;

    if ((rc = bucket_exists(e, m->bucket)) != 0)
        return rc;
    bc.bucket = m->bucket;
    bc.hlc = mrd_hlc_now(e->hlc);
    bc.site = e->site;
    bc.has_versioning = m->has_versioning;
    bc.versioning = (Meridian__Versioning)m->versioning;
    bc.has_tags = m->has_tags;
    bc.tags = m->meta;
    bc.n_tags = m->n_meta;
    bc.has_acl = m->has_acl;
    bc.acl = (Meridian__Acl)m->acl;
    rec.body_case = MERIDIAN__WAL_RECORD__BODY_BUCKET_CONFIG;
    rec.bucket_config = &bc;
    return engine__append(e, &rec, WAL_REC_BUCKET_CONFIG, m->cb, m->ud);
}

static int
do_mutation(mut *m)
{
    engine *e = m->e;
    Meridian__WalRecord rec = MERIDIAN__WAL_RECORD__INIT;
    Meridian__VersionVector vmsg;
    Meridian__VvEntry ents[VV_MAX_SITES], *ptrs[VV_MAX_SITES];
    vv nv;
    mrd_hlc_stamp now = 0;
    int rc, live = 0, failed, state = 0;

    pthread_mutex_lock(&e->ap_mu);
    failed = e->failed;
    pthread_mutex_unlock(&e->ap_mu);
    if (failed)
        return MRD_EDURABLE;

    switch (m->kind) {
    case MUT_BUCKET_CREATE: {
        Meridian__BucketCreate bc = MERIDIAN__BUCKET_CREATE__INIT;
        rc = bucket_exists(e, m->bucket);
        if (rc == 0)
            return MRD_EEXIST;
        if (rc != MRD_ENOTFOUND)
            return rc;
        bc.bucket = m->bucket;
        bc.hlc = mrd_hlc_now(e->hlc);
        bc.owner = "";
        bc.region = (char *)e->conf->region;
        rec.body_case = MERIDIAN__WAL_RECORD__BODY_BUCKET_CREATE;
        rec.bucket_create = &bc;
        return engine__append(e, &rec, WAL_REC_BUCKET_CREATE, m->cb, m->ud);
    }
    case MUT_BUCKET_DELETE: {
        Meridian__BucketDelete bd = MERIDIAN__BUCKET_DELETE__INIT;
        if ((rc = engine__bucket_has_data(e, m->bucket, &live)) != 0)
            return rc;
        if (live)
            return MRD_EBUSY;
        bd.bucket = m->bucket;
        bd.hlc = mrd_hlc_now(e->hlc);
        rec.body_case = MERIDIAN__WAL_RECORD__BODY_BUCKET_DELETE;
        rec.bucket_delete = &bd;
        return engine__append(e, &rec, WAL_REC_BUCKET_DELETE, m->cb, m->ud);
    }
    case MUT_PUT: {
        Meridian__ObjectPut op = MERIDIAN__OBJECT_PUT__INIT;
        if ((rc = engine__bucket_versioning(e, m->bucket, &state)) != 0)
            return rc;
        if ((rc = stamp(e, m->bucket, m->key, &nv, &now, &live)) != 0)
            return rc;
        vv_to_proto(&nv, &vmsg, ents, ptrs);
        op.bucket = m->bucket;
        op.key = m->key;
        op.version_id = m->version_id;
        op.vv = &vmsg;
        op.hlc = now;
        op.etag = m->etag;
        op.size = m->size;
        op.content_type = m->content_type;
        op.user_meta = m->meta;
        op.n_user_meta = m->n_meta;
        op.layout.data = m->layout;
        op.layout.len = m->layout_len;
        op.versioned = state == ENGINE_VERSIONING_ENABLED;
        rec.body_case = MERIDIAN__WAL_RECORD__BODY_OBJECT_PUT;
        rec.object_put = &op;
        return engine__append(e, &rec, WAL_REC_OBJECT_PUT, m->cb, m->ud);
    }
    case MUT_MPU: {
        Meridian__MultipartComplete mc = MERIDIAN__MULTIPART_COMPLETE__INIT;
        if ((rc = engine__bucket_versioning(e, m->bucket, &state)) != 0)
            return rc;
        if ((rc = stamp(e, m->bucket, m->key, &nv, &now, &live)) != 0)
            return rc;
        vv_to_proto(&nv, &vmsg, ents, ptrs);
        mc.bucket = m->bucket;
        mc.key = m->key;
        mc.version_id = m->version_id;
        mc.upload_id = m->upload_id;
        mc.vv = &vmsg;
        mc.hlc = now;
        mc.etag = m->etag;
        mc.size = m->size;
        mc.content_type = m->content_type;
        mc.user_meta = m->meta;
        mc.n_user_meta = m->n_meta;
        mc.part_count = m->part_count;
        mc.layout.data = m->layout;
        mc.layout.len = m->layout_len;
        mc.versioned = state == ENGINE_VERSIONING_ENABLED;
        rec.body_case = MERIDIAN__WAL_RECORD__BODY_MULTIPART_COMPLETE;
        rec.multipart_complete = &mc;
        return engine__append(e, &rec, WAL_REC_MULTIPART_COMPLETE, m->cb, m->ud);
    }
    case MUT_TAGS: {
        Meridian__ObjectTags ot = MERIDIAN__OBJECT_TAGS__INIT;
        store_version_rec *cur = NULL;
        if ((rc = bucket_exists(e, m->bucket)) != 0)
            return rc;
        rc = engine_version_lookup(e, m->bucket, m->key, m->version_id, &cur);
        if (rc == MRD_ENOTFOUND ||
            (rc == 0 && (store_version_rec_get(cur)->flags & STORE_VF_DELETE_MARKER))) {
            store_version_rec_free(cur);
            return -ENOENT;
        }
        if (rc != 0)
            return rc;
        mrd_hlc_observe(e->hlc, store_version_rec_get(cur)->hlc);
        ot.bucket = m->bucket;
        ot.key = m->key;
        ot.version_id = (char *)store_version_rec_get(cur)->version_id;
        ot.hlc = mrd_hlc_now(e->hlc);
        ot.site = e->site;
        ot.tagging = m->tagging;
        rec.body_case = MERIDIAN__WAL_RECORD__BODY_OBJECT_TAGS;
        rec.object_tags = &ot;
        rc = engine__append(e, &rec, WAL_REC_OBJECT_TAGS, m->cb, m->ud);
        store_version_rec_free(cur);
        return rc;
    }
    case MUT_DELETE: {
        Meridian__DeleteMarker dm = MERIDIAN__DELETE_MARKER__INIT;
        char vid[25];
        if ((rc = engine__bucket_versioning(e, m->bucket, &state)) != 0)
            return rc;
        if ((rc = stamp(e, m->bucket, m->key, &nv, &now, &live)) != 0)
            return rc;
        if (!live && state == ENGINE_VERSIONING_UNSET) {
            engine__complete(e, m->cb, m->ud, 0); /* nothing to delete */
            return 0;
        }
        engine_version_id_new(e, vid);
        if (m->marker_vid)
            memcpy(m->marker_vid, vid, sizeof(vid)); /* read only once cb runs */
        dm.versioned = state == ENGINE_VERSIONING_ENABLED;
        vv_to_proto(&nv, &vmsg, ents, ptrs);
        dm.bucket = m->bucket;
        dm.key = m->key;
        dm.version_id = vid;
        dm.vv = &vmsg;
        dm.hlc = now;
        rec.body_case = MERIDIAN__WAL_RECORD__BODY_DELETE_MARKER;
        rec.delete_marker = &dm;
        return engine__append(e, &rec, WAL_REC_DELETE_MARKER, m->cb, m->ud);
    }
    case MUT_DELETE_VERSION:
        return delete_version(e, m);
    case MUT_CONFIG:
        return bucket_config(e, m);
    }
    return MRD_EINVAL;
}

static void
mut_work(void *arg)
{
    mut *m = arg;
    int rc;

    pthread_mutex_lock(&m->e->mut_mu);
    rc = do_mutation(m);
    pthread_mutex_unlock(&m->e->mut_mu);
    if (rc != 0)
        engine__complete(m->e, m->cb, m->ud, rc);
    mut_free(m);
}

static int
submit(engine *e, mut *m)
{
    int rc;

    m->e = e;
    /* A key the index cannot hold must never reach the log: its record
     * could not be applied (store_key_check). */
    if (m->key[0] && (rc = store_key_check(engine_store(e), m->bucket, m->key)) != 0) {
        mut_free(m);
        return rc;
    }
    rc = engine_run(e, mut_work, NULL, m);
    if (rc != 0)
        mut_free(m);
    return rc;
}

static mut *
mut_new(mut_kind kind, const char *bucket, const char *key, engine_cb cb, void *ud)
{
    mut *m = calloc(1, sizeof(*m));

    if (!m)
        return NULL;
    m->kind = kind;
    m->cb = cb;
    m->ud = ud;
    m->bucket = strdup(bucket);
    m->key = strdup(key ? key : "");
    if (!m->bucket || !m->key) {
        mut_free(m);
        return NULL;
    }
    return m;
}

int
engine_bucket_create(engine *e, const char *bucket, engine_cb cb, void *ud)
{
    mut *m;

    if (!e || !bucket || !cb)
        return MRD_EINVAL;
    if (!(m = mut_new(MUT_BUCKET_CREATE, bucket, NULL, cb, ud)))
        return -ENOMEM;
    return submit(e, m);
}

int
engine_bucket_delete(engine *e, const char *bucket, engine_cb cb, void *ud)
{
    mut *m;

    if (!e || !bucket || !cb)
        return MRD_EINVAL;
    if (!(m = mut_new(MUT_BUCKET_DELETE, bucket, NULL, cb, ud)))
        return -ENOMEM;
    return submit(e, m);
}

int
engine_object_delete(engine *e, const char *bucket, const char *key, engine_cb cb, void *ud)
{
    return engine_object_delete_marker(e, bucket, key, NULL, cb, ud);
}

int
engine_object_delete_marker(engine *e, const char *bucket, const char *key, char *marker_vid,
                            engine_cb cb, void *ud)
{
    mut *m;

    if (!e || !bucket || !key || !cb)
        return MRD_EINVAL;
    if (!(m = mut_new(MUT_DELETE, bucket, key, cb, ud)))
        return -ENOMEM;
    m->marker_vid = marker_vid;
    if (marker_vid)
        marker_vid[0] = '\0';
    return submit(e, m);
}

int
engine_object_delete_version(engine *e, const char *bucket, const char *key, const char *version_id,
                             engine_cb cb, void *ud)
{
    mut *m;

    if (!e || !bucket || !key || !version_id || !cb || engine__vid_origin(version_id) == 0)
        return MRD_EINVAL;
    if (!(m = mut_new(MUT_DELETE_VERSION, bucket, key, cb, ud)))
        return -ENOMEM;
    if (!(m->version_id = strdup(version_id))) {
        mut_free(m);
        return -ENOMEM;
    }
    return submit(e, m);
}

/* Copies n key/value pairs into m->meta_store / m->meta. */
static int
mut_copy_kv(mut *m, const engine_kv *kv, size_t n)
{
    m->meta_store = calloc(n ? n : 1, sizeof(*m->meta_store));
    m->meta = calloc(n ? n : 1, sizeof(*m->meta));
    if (!m->meta_store || !m->meta)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        meridian__key_value__init(&m->meta_store[i]);
        m->meta_store[i].key = strdup(kv[i].key);
        m->meta_store[i].value = strdup(kv[i].value);
        m->meta[i] = &m->meta_store[i];
        m->n_meta = i + 1;
        if (!m->meta_store[i].key || !m->meta_store[i].value)
            return -ENOMEM;
    }
    return 0;
}

int
engine_bucket_config(engine *e, const char *bucket, const engine_bucket_conf *c, engine_cb cb,
                     void *ud)
{
    mut *m;

    if (!e || !bucket || !c || !cb || (!c->has_versioning && !c->has_tags && !c->has_acl) ||
        (c->has_versioning && c->versioning != ENGINE_VERSIONING_ENABLED &&
         c->versioning != ENGINE_VERSIONING_SUSPENDED) ||
        (c->has_tags && c->n_tags && !c->tags) ||
        (c->has_acl && c->acl != ENGINE_ACL_PRIVATE && c->acl != ENGINE_ACL_PUBLIC_READ))
        return MRD_EINVAL;
    if (!(m = mut_new(MUT_CONFIG, bucket, NULL, cb, ud)))
        return -ENOMEM;
    m->has_versioning = c->has_versioning;
    m->versioning = c->versioning;
    m->has_tags = c->has_tags;
    m->has_acl = c->has_acl;
    m->acl = c->acl;
    if (mut_copy_kv(m, c->has_tags ? c->tags : NULL, c->has_tags ? c->n_tags : 0) != 0) {
        mut_free(m);
        return -ENOMEM;
    }
    return submit(e, m);
}

int
engine_object_tags(engine *e, const char *bucket, const char *key, const char *tagging,
                   engine_cb cb, void *ud)
{
    return engine_object_tags_version(e, bucket, key, NULL, tagging, cb, ud);
}

int
engine_object_tags_version(engine *e, const char *bucket, const char *key, const char *version_id,
                           const char *tagging, engine_cb cb, void *ud)
{
    mut *m;

    if (!e || !bucket || !key || !tagging || !cb)
        return MRD_EINVAL;
    if (!(m = mut_new(MUT_TAGS, bucket, key, cb, ud)))
        return -ENOMEM;
    if (!(m->tagging = strdup(tagging)) || (version_id && !(m->version_id = strdup(version_id)))) {
        mut_free(m);
        return -ENOMEM;
    }
    return submit(e, m);
}

/* A put-like mutation (PUT, multipart complete) with a copy of p. */
static mut *
mut_put_new(engine *e, mut_kind kind, const engine_put *p, engine_cb cb, void *ud)
{
    mut *m;

    (void)e;
    if (!(m = mut_new(kind, p->bucket, p->key, cb, ud)))
        return NULL;
    m->version_id = strdup(p->version_id);
    m->etag = strdup(p->etag ? p->etag : "");
    m->content_type = strdup(p->content_type ? p->content_type : "");
    m->size = p->size;
    m->layout_len = p->layout_len;
    m->layout = malloc(p->layout_len ? p->layout_len : 1);
    if (!m->version_id || !m->etag || !m->content_type || !m->layout ||
        mut_copy_kv(m, p->meta, p->n_meta) != 0) {
        mut_free(m);
        return NULL;
    }
    if (p->layout_len)
        memcpy(m->layout, p->layout, p->layout_len);
    return m;
}

int
engine_object_put(engine *e, const engine_put *p, engine_cb cb, void *ud)
{
    mut *m;

    if (!e || !p || !p->bucket || !p->key || !p->version_id || !cb ||
        engine__vid_origin(p->version_id) == 0)
        return MRD_EINVAL;
    if (!(m = mut_put_new(e, MUT_PUT, p, cb, ud)))
        return -ENOMEM;
    return submit(e, m);
}

int
engine_multipart_complete(engine *e, const engine_put *p, const char *upload_id,
                          uint32_t part_count, engine_cb cb, void *ud)
{
    mut *m;

    if (!e || !p || !p->bucket || !p->key || !p->version_id || !cb || !upload_id || !*upload_id ||
        !p->layout || engine__vid_origin(p->version_id) == 0)
        return MRD_EINVAL;
    if (!(m = mut_put_new(e, MUT_MPU, p, cb, ud)))
        return -ENOMEM;
    m->part_count = part_count;
    if (!(m->upload_id = strdup(upload_id))) {
        mut_free(m);
        return -ENOMEM;
    }
    return submit(e, m);
}

int
engine_record_mpu_as_put(const void *payload, size_t len, void **out, size_t *out_len)
{
    Meridian__WalRecord *rec = NULL, put = MERIDIAN__WAL_RECORD__INIT;
    Meridian__ObjectPut op = MERIDIAN__OBJECT_PUT__INIT;
    Meridian__MultipartComplete *mc;
    uint8_t *buf;
    size_t n;
    int rc = wal_record_decode(WAL_REC_MULTIPART_COMPLETE, payload, len, &rec);

    if (rc != 0)
        return MRD_ECORRUPT;
    if (rec->body_case != MERIDIAN__WAL_RECORD__BODY_MULTIPART_COMPLETE) {
        wal_record_free(rec);
        return MRD_ECORRUPT;
    }
    mc = rec->multipart_complete;
    op.bucket = mc->bucket;
    op.key = mc->key;
    op.version_id = mc->version_id;
    op.vv = mc->vv;
    op.hlc = mc->hlc;
    op.etag = mc->etag;
    op.size = mc->size;
    op.content_type = mc->content_type;
    op.user_meta = mc->user_meta;
    op.n_user_meta = mc->n_user_meta;
    op.layout = mc->layout;
    op.versioned = mc->versioned;
    put.format = rec->format;
    put.body_case = MERIDIAN__WAL_RECORD__BODY_OBJECT_PUT;
    put.object_put = &op;
    n = meridian__wal_record__get_packed_size(&put);
    if ((buf = malloc(n ? n : 1)) != NULL) {
        meridian__wal_record__pack(&put, buf);
        *out = buf;
        *out_len = n;
    }
    wal_record_free(rec);
    return buf ? 0 : -ENOMEM;
}
