/*
 * engine_conflict.c - the conflict log: a durable, bounded record of every
 * concurrent-write decision this site made.
 *
 * What. Each time the applier settles a delivery that is concurrent with the
 * key's current version (conflict_decision.new_conflict), it writes one
 * record: the key, both competing versions (version id, origin site, HLC
 * stamp, version vector, ETag, size, delete marker), which one won, what
 * this site keeps of the loser (a version flagged STORE_VF_CONFLICT in the
 * index, hidden or listed per docs/conflicts.md), how the losing or winning
 * version arrived (a local write, a peer's WAL record, anti-entropy) and
 * when the decision was made. The admin API lists them
 * (GET /admin/v1/conflicts) and `meridianctl conflicts` shows them.
 *
 * Where. In the index's generic meta keyspace, as a ring of
 * ENGINE_CONFLICT_LOG_MAX slots: record number seq (1, 2, ...) lives under
 * "conflict.<seq mod MAX>" and "conflict.seq" holds the last number used.
 * Both are META_PUT ops of the SAME index transaction as the versions the
 * decision wrote, so a crash keeps either the decision and its record or
 * neither, and WAL replay (which re-plans the records after the index's
 * last LSN from the committed "conflict.seq") rebuilds exactly what was
 * lost. The ring overwrites the oldest record; the total stays in
 * "conflict.seq", which /metrics reports as meridian_conflicts_total.
 *
 * Format. A record is one JSON object (written with mrd_json_w; parsed
 * back with mrd_json_parse, which is fuzzed), so `mdb_dump` of the index
 * shows it readably. It carries its own "id": a reader that finds another
 * id in the slot (overwritten after it read "conflict.seq") skips it.
 * Version vector counters and HLC stamps exceed 2^53, so they are written
 * as exact JSON integers and also as text ("vv_text", "hlc_text") for
 * readers that parse numbers as doubles.
 *
 * Threads. The next sequence number is only touched by the applier thread
 * (or by replay, before it starts); the committed last number, read by the
 * admin API, is under ap_mu.
 */
#include "engine_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
engine__version_from_store(const store_version *v, conflict_version *out)
{
    memset(out, 0, sizeof(*out));
    if (vv_decode(v->vv, v->vv_len, &out->vv) != 0)
        return MRD_ECORRUPT;
    out->id = (const uint8_t *)v->version_id;
    out->id_len = strlen(v->version_id);
    out->hlc = v->hlc;
    out->origin = engine__vid_origin(v->version_id);
    if (v->flags & STORE_VF_DELETE_MARKER)
        out->flags |= CONFLICT_F_DELETE_MARKER;
    if (v->flags & ENGINE_VF_NULL_VERSION)
        out->flags |= CONFLICT_F_NULL_VERSION;
    out->etag = (const uint8_t *)(v->etag ? v->etag : "");
    out->etag_len = v->etag ? strlen(v->etag) : 0;
    return 0;
}

/* Renders a site id as its configured name, or "#id" if unknown. */
static const char *
site_name(const engine *e, uint32_t id, char *buf, size_t bufsz)
{
    for (int i = 0; i < e->n_names; i++)
        if (e->names[i].id == id)
            return e->names[i].name;
    snprintf(buf, bufsz, "#%u", id);
    return buf;
}

void
engine__conflict_names(engine *e)
{
    e->n_names = 0;
    e->names[e->n_names].id = e->conf->site_id;
    snprintf(e->names[e->n_names++].name, MRD_NAME_MAX, "%s", e->conf->site_name);
    for (int i = 0; i < e->conf->n_peers && e->n_names < MRD_MAX_PEERS + 1; i++) {
        e->names[e->n_names].id = e->conf->peers[i].id;
        snprintf(e->names[e->n_names++].name, MRD_NAME_MAX, "%s", e->conf->peers[i].name);
    }
}

static const char *
keep_name(conflict_keep k)
{
    return k == CONFLICT_KEEP ? "listed" : k == CONFLICT_HIDDEN ? "hidden" : "dropped";
}

/* The fields of a version common to conflict records and object status,
 * inside an open JSON object. */
static void
write_version(const engine *e, mrd_json_w *w, const conflict_version *v, const char *etag,
              uint64_t size)
{
    char num[32], name[16];
    mrd_buf t = {0};

    mrd_json_w_key(w, "version_id");
    mrd_json_w_str(w, (const char *)v->id);
    mrd_json_w_key(w, "origin");
    mrd_json_w_uint(w, v->origin);
    mrd_json_w_key(w, "origin_name");
    mrd_json_w_str(w, site_name(e, v->origin, name, sizeof(name)));
    mrd_json_w_key(w, "hlc");
    mrd_json_w_uint(w, v->hlc);
    snprintf(num, sizeof(num), "%" PRIu64, (uint64_t)v->hlc);
    mrd_json_w_key(w, "hlc_text");
    mrd_json_w_str(w, num);
    mrd_json_w_key(w, "hlc_ms");
    mrd_json_w_uint(w, MRD_HLC_MS(v->hlc));
    mrd_json_w_key(w, "vv");
    mrd_json_w_obj_begin(w);
    for (uint32_t i = 0; i < v->vv.n; i++) {
        snprintf(num, sizeof(num), "%u", v->vv.e[i].site);
        mrd_json_w_key(w, num);
        mrd_json_w_uint(w, v->vv.e[i].counter);
        mrd_buf_appendf(&t, "%s%s:%" PRIu64, i ? "," : "",
                        site_name(e, v->vv.e[i].site, name, sizeof(name)), v->vv.e[i].counter);
    }
    mrd_json_w_obj_end(w);
    mrd_json_w_key(w, "vv_text");
    mrd_json_w_str(w, t.data ? t.data : "");
    mrd_json_w_key(w, "etag");
    mrd_json_w_str(w, etag);
    mrd_json_w_key(w, "size");
    mrd_json_w_uint(w, size);
    mrd_json_w_key(w, "delete_marker");
    mrd_json_w_bool(w, (v->flags & CONFLICT_F_DELETE_MARKER) != 0);
    mrd_buf_free(&t);
}

static void
write_side(const engine *e, mrd_json_w *w, const engine__conflict_side *s)
{
    mrd_json_w_obj_begin(w);
    write_version(e, w, s->v, s->etag, s->size);
    mrd_json_w_key(w, "incoming");
    mrd_json_w_bool(w, s->incoming);
    mrd_json_w_key(w, "kept");
    mrd_json_w_str(w, s->winner ? "current" : keep_name(s->keep));
    mrd_json_w_obj_end(w);
}

int
engine_version_json(const engine *e, const store_version *v, mrd_json_w *w)
{
    conflict_version cv;
    int rc = engine__version_from_store(v, &cv);

    if (rc != 0)
        return rc;
    mrd_json_w_obj_begin(w);
    write_version(e, w, &cv, v->etag ? v->etag : "", v->size);
    mrd_json_w_key(w, "role");
    mrd_json_w_str(w, v->flags & STORE_VF_CONFLICT     ? "conflict"
                      : v->flags & STORE_VF_NONCURRENT ? "noncurrent"
                                                       : "current");
    mrd_json_w_key(w, "content_type");
    mrd_json_w_str(w, v->content_type ? v->content_type : "");
    mrd_json_w_obj_end(w);
    return w->err; /* not mrd_json_w_error: w may be inside the caller's document */
}

int
engine__conflict_encode(const engine *e, uint64_t seq, const char *bucket, const char *key,
                        const char *delivery, uint32_t from_site,
                        const engine__conflict_side *winner, const engine__conflict_side *loser,
                        mrd_buf *out)
{
    mrd_json_w w;
    char name[16];

    mrd_buf_reset(out);
    mrd_json_w_init(&w, out);
    mrd_json_w_obj_begin(&w);
    mrd_json_w_key(&w, "id");
    mrd_json_w_uint(&w, seq);
    mrd_json_w_key(&w, "site");
    mrd_json_w_str(&w, e->conf->site_name);
    mrd_json_w_key(&w, "detected_ms");
    mrd_json_w_uint(&w, mrd_clock_realtime_ms(NULL));
    mrd_json_w_key(&w, "bucket");
    mrd_json_w_str(&w, bucket);
    mrd_json_w_key(&w, "key");
    mrd_json_w_str(&w, key);
    mrd_json_w_key(&w, "delivery");
    mrd_json_w_str(&w, delivery);
    mrd_json_w_key(&w, "from_site");
    mrd_json_w_str(&w, site_name(e, from_site, name, sizeof(name)));
    mrd_json_w_key(&w, "winner");
    write_side(e, &w, winner);
    mrd_json_w_key(&w, "loser");
    write_side(e, &w, loser);
    mrd_json_w_obj_end(&w);
    return mrd_json_w_error(&w);
}

int
engine__conflict_load(engine *e)
{
    int rc = engine__meta_u64(e, ENGINE_CONFLICT_SEQ_KEY, &e->conflict_last);

    if (rc == MRD_ENOTFOUND) {
        e->conflict_last = 0;
        rc = 0;
    }
    e->conflict_next = e->conflict_last + 1;
    return rc;
}

uint64_t
engine_conflict_last(engine *e)
{
    uint64_t v;

    pthread_mutex_lock(&e->ap_mu);
    v = e->conflict_last;
    pthread_mutex_unlock(&e->ap_mu);
    return v;
}

int
engine_conflict_get(engine *e, uint64_t seq, mrd_buf *out)
{
    char key[ENGINE_CONFLICT_KEY_MAX];
    void *val = NULL;
    size_t len = 0, pos = 0;
    mrd_json *j = NULL;
    int rc;

    if (!e || !out || seq == 0)
        return MRD_EINVAL;
    if (seq > engine_conflict_last(e) || seq + ENGINE_CONFLICT_LOG_MAX <= engine_conflict_last(e))
        return MRD_ENOTFOUND;
    snprintf(key, sizeof(key), ENGINE_CONFLICT_KEY_FMT, (unsigned)(seq % ENGINE_CONFLICT_LOG_MAX));
    if ((rc = store_meta_get(e->st, key, &val, &len)) != 0)
        return rc;
    /* the slot may hold a newer record by now: check its id */
    if (mrd_json_parse(val, len, &j, &pos) != 0)
        rc = MRD_ECORRUPT;
    else if ((uint64_t)mrd_json_get_num(j, "id", 0) != seq)
        rc = MRD_ENOTFOUND;
    else
        rc = mrd_buf_append(out, val, len);
    mrd_json_free(j);
    free(val);
    return rc;
}
