/*
 * repl_msg.c - Hello and Heartbeat bodies: protobuf-c behind plain structs.
 *
 * The wire types are generated from proto/repl.proto; the rest of the module
 * sees only repl__msg, a fixed-size struct, so no protobuf-c allocation
 * outlives a call and no generated type leaves this file. Decoding is the
 * first thing done with bytes from a peer after authentication, so it is
 * defensive: the body is already capped at REPL_MAX_CTRL_BODY by the caller,
 * protobuf-c rejects malformed input (NULL from _unpack), and on top of that
 * a missing state, site id 0, an over-long site name or more than
 * REPL_MAX_APPLIED applied entries is MRD_EPROTO, answered 400. Unknown
 * fields are skipped (protobuf semantics), which is how newer peers add
 * fields without breaking older ones.
 */
#include "repl_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "repl.pb-c.h"
#include "wal.h"

static int
state_from_pb(const Meridian__Repl__SiteState *s, repl__state_msg *out)
{
    if (!s || s->site_id == 0)
        return MRD_EPROTO;
    if (s->site_name && strlen(s->site_name) >= MRD_NAME_MAX)
        return MRD_EPROTO;
    if (s->n_applied > REPL_MAX_APPLIED)
        return MRD_EPROTO;
    memset(out, 0, sizeof(*out));
    out->site_id = s->site_id;
    if (s->site_name)
        strcpy(out->site_name, s->site_name);
    out->topology_epoch = s->topology_epoch;
    out->topology_hash = s->topology_hash;
    out->hlc = s->hlc;
    out->high_water_lsn = s->high_water_lsn;
    out->boot_id = s->boot_id;
    for (size_t i = 0; i < s->n_applied; i++) {
        if (!s->applied[i])
            return MRD_EPROTO;
        out->applied[i].origin_site = s->applied[i]->origin_site;
        out->applied[i].lsn = s->applied[i]->lsn;
    }
    out->n_applied = (int)s->n_applied;
    if (s->n_links > MRD_MAX_PEERS)
        return MRD_EPROTO;
    for (size_t i = 0; i < s->n_links; i++) {
        const Meridian__Repl__LinkState *l = s->links[i];
        repl__link *o = &out->links[i];

        if (!l || l->peer_site == 0 || l->state > REPL_PEER_DOWN)
            return MRD_EPROTO;
        o->peer_site = l->peer_site;
        o->state = l->state;
        o->connected = l->connected;
        o->rtt_us = l->rtt_us;
        o->lag_records = l->lag_records;
        o->lag_ms = l->lag_ms;
        o->lag_bytes = l->lag_bytes;
        o->acked_lsn = l->acked_lsn;
        o->sent_bytes = l->sent_bytes;
        o->throughput_bps = l->throughput_bps;
        o->send_errors = l->send_errors;
        o->acked_hlc = l->acked_hlc;
        snprintf(o->last_error, sizeof(o->last_error), "%s", l->last_error ? l->last_error : "");
    }
    out->n_links = (int)s->n_links;
    return 0;
}

int
repl__msg_decode(const void *data, size_t len, int is_hello, repl__msg *out)
{
    repl__msg m;
    int rc;

    memset(&m, 0, sizeof(m));
    m.is_hello = is_hello;
    if (is_hello) {
        Meridian__Repl__Hello *h = meridian__repl__hello__unpack(NULL, len, data);

        if (!h)
            return MRD_EPROTO;
        m.protocol_version = h->protocol_version;
        m.heartbeat_interval_ms = h->heartbeat_interval_ms;
        m.features = h->features;
        rc = state_from_pb(h->state, &m.st);
        meridian__repl__hello__free_unpacked(h, NULL);
    } else {
        Meridian__Repl__Heartbeat *hb = meridian__repl__heartbeat__unpack(NULL, len, data);

        if (!hb)
            return MRD_EPROTO;
        m.seq = hb->seq;
        rc = state_from_pb(hb->state, &m.st);
        meridian__repl__heartbeat__free_unpacked(hb, NULL);
    }
    if (rc < 0)
        return rc;
    *out = m;
    return 0;
}

int
repl__msg_encode(const repl__msg *m, mrd_buf *out)
{
    Meridian__Repl__SiteState st = MERIDIAN__REPL__SITE_STATE__INIT;
    Meridian__Repl__AppliedLsn ap[REPL_MAX_APPLIED];
    Meridian__Repl__AppliedLsn *app[REPL_MAX_APPLIED];
    Meridian__Repl__LinkState lk[MRD_MAX_PEERS], *lkp[MRD_MAX_PEERS];
    size_t n;
    int nl;
    int na = m->st.n_applied < 0                  ? 0
             : m->st.n_applied > REPL_MAX_APPLIED ? REPL_MAX_APPLIED
                                                  : m->st.n_applied;

    st.site_id = m->st.site_id;
    st.site_name = (char *)m->st.site_name;
    st.topology_epoch = m->st.topology_epoch;
    st.topology_hash = m->st.topology_hash;
    st.hlc = m->st.hlc;
    st.high_water_lsn = m->st.high_water_lsn;
    st.boot_id = m->st.boot_id;
    for (int i = 0; i < na; i++) {
        meridian__repl__applied_lsn__init(&ap[i]);
        ap[i].origin_site = m->st.applied[i].origin_site;
        ap[i].lsn = m->st.applied[i].lsn;
        app[i] = &ap[i];
    }
    st.n_applied = (size_t)na;
    st.applied = app;
    nl = m->st.n_links < 0 ? 0 : m->st.n_links > MRD_MAX_PEERS ? MRD_MAX_PEERS : m->st.n_links;
    for (int i = 0; i < nl; i++) {
        const repl__link *l = &m->st.links[i];

        meridian__repl__link_state__init(&lk[i]);
        lk[i].peer_site = l->peer_site;
        lk[i].state = l->state;
        lk[i].connected = l->connected;
        lk[i].rtt_us = l->rtt_us;
        lk[i].lag_records = l->lag_records;
        lk[i].lag_ms = l->lag_ms;
        lk[i].lag_bytes = l->lag_bytes;
        lk[i].acked_lsn = l->acked_lsn;
        lk[i].sent_bytes = l->sent_bytes;
        lk[i].throughput_bps = l->throughput_bps;
        lk[i].send_errors = l->send_errors;
        lk[i].acked_hlc = l->acked_hlc;
        lk[i].last_error = (char *)l->last_error;
        lkp[i] = &lk[i];
    }
    st.n_links = (size_t)nl;
    st.links = lkp;

    mrd_buf_reset(out);
    if (m->is_hello) {
        Meridian__Repl__Hello h = MERIDIAN__REPL__HELLO__INIT;

        h.protocol_version = m->protocol_version;
        h.heartbeat_interval_ms = m->heartbeat_interval_ms;
        h.features = m->features;
        h.state = &st;
        n = meridian__repl__hello__get_packed_size(&h);
        if (mrd_buf_reserve(out, n + 1) < 0)
            return -ENOMEM;
        out->len = meridian__repl__hello__pack(&h, (uint8_t *)out->data);
    } else {
        Meridian__Repl__Heartbeat hb = MERIDIAN__REPL__HEARTBEAT__INIT;

        hb.seq = m->seq;
        hb.state = &st;
        n = meridian__repl__heartbeat__get_packed_size(&hb);
        if (mrd_buf_reserve(out, n + 1) < 0)
            return -ENOMEM;
        out->len = meridian__repl__heartbeat__pack(&hb, (uint8_t *)out->data);
    }
    return 0;
}

/* ---- record batches and acks ------------------------------------------- */

void
repl__batch_free(repl__batch *b)
{
    if (!b)
        return;
    if (b->pb)
        meridian__repl__record_batch__free_unpacked(b->pb, NULL);
    free(b->recs);
    memset(b, 0, sizeof(*b));
}

static int parse(const void *data, size_t len, int resync, repl__batch *out, const char **reason);

int
repl__batch_parse(const void *data, size_t len, repl__batch *out, const char **reason)
{
    return parse(data, len, 0, out, reason);
}

int
repl__resync_parse(const void *data, size_t len, repl__batch *out, const char **reason)
{
    return parse(data, len, 1, out, reason);
}

static int
parse(const void *data, size_t len, int resync, repl__batch *out, const char **reason)
{
    Meridian__Repl__RecordBatch *m;
    repl__batch b;

    memset(&b, 0, sizeof(b));
    *reason = NULL;
    m = meridian__repl__record_batch__unpack(NULL, len, data);
    if (!m) {
        *reason = "batch does not decode";
        return MRD_EPROTO;
    }
    b.pb = m;
    b.first = m->first_lsn;
    b.last = m->last_lsn;
    if (resync ? b.first != 0 || (m->n_records && b.last != 0) : b.first == 0 || b.last < b.first)
        *reason = "bad LSN range";
    else if (m->n_records > REPL_MAX_RECORDS)
        *reason = "too many records";
    else if (m->n_records && !(b.recs = calloc(m->n_records, sizeof(*b.recs))))
        *reason = "out of memory";
    for (size_t i = 0; !*reason && i < m->n_records; i++) {
        const Meridian__Repl__Record *r = m->records[i];
        if (resync ? r->lsn != 0
                   : r->lsn < b.first || r->lsn > b.last || (i && r->lsn <= b.recs[i - 1].lsn))
            *reason = "record LSNs out of order or outside the range";
        else if (r->type == 0 || r->type == WAL_REC_REPLICATED_APPLY ||
                 r->type > WAL_REC_OBJECT_TAGS)
            *reason = "bad record type";
        else if (r->data_size && (i + 1 != m->n_records || r->type != 1))
            *reason = "only the last record may carry data, and only an object put";
        else if (r->data_check && (!r->data_size || !repl__dcheck_len(r->data_check)))
            *reason = "a data check on a record without data, or of an unknown kind";
        else if (r->data_check == REPL_DCHECK_POLY1305 ? r->data_nonce.len != REPL_DCHECK_NONCE
                                                       : r->data_nonce.len != 0)
            *reason = "a data nonce missing or of the wrong size, or without a Poly1305 check";
        else
            b.recs[b.n++] = (repl__rec){.lsn = r->lsn,
                                        .type = (uint16_t)r->type,
                                        .payload = r->payload.data,
                                        .len = r->payload.len,
                                        .data_size = r->data_size,
                                        .data_check = r->data_check,
                                        .data_nonce = r->data_nonce.data,
                                        .data_nonce_len = r->data_nonce.len};
    }
    if (*reason) {
        repl__batch_free(&b);
        return MRD_EPROTO;
    }
    *out = b;
    return 0;
}

int
repl__batch_pack(uint64_t first, uint64_t last, const repl__rec *recs, size_t n, mrd_buf *out)
{
    Meridian__Repl__RecordBatch m = MERIDIAN__REPL__RECORD_BATCH__INIT;
    Meridian__Repl__Record *rs = calloc(n ? n : 1, sizeof(*rs));
    Meridian__Repl__Record **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
    size_t sz;
    int rc = -ENOMEM;

    if (!rs || !ptrs)
        goto out;
    for (size_t i = 0; i < n; i++) {
        meridian__repl__record__init(&rs[i]);
        rs[i].lsn = recs[i].lsn;
        rs[i].type = recs[i].type;
        rs[i].payload.data = (uint8_t *)recs[i].payload;
        rs[i].payload.len = recs[i].len;
        rs[i].data_size = recs[i].data_size;
        rs[i].data_check = recs[i].data_size ? recs[i].data_check : 0;
        if (rs[i].data_check == REPL_DCHECK_POLY1305) {
            rs[i].data_nonce.data = (uint8_t *)recs[i].data_nonce;
            rs[i].data_nonce.len = recs[i].data_nonce_len;
        }
        ptrs[i] = &rs[i];
    }
    m.first_lsn = first;
    m.last_lsn = last;
    m.records = ptrs;
    m.n_records = n;
    sz = meridian__repl__record_batch__get_packed_size(&m);
    mrd_buf_reset(out);
    if (mrd_buf_reserve(out, sz + 4) < 0)
        goto out;
    out->data[0] = (uint8_t)(sz >> 24);
    out->data[1] = (uint8_t)(sz >> 16);
    out->data[2] = (uint8_t)(sz >> 8);
    out->data[3] = (uint8_t)sz;
    meridian__repl__record_batch__pack(&m, (uint8_t *)out->data + 4);
    out->len = sz + 4;
    rc = 0;
out:
    free(rs);
    free(ptrs);
    return rc;
}

int
repl__ack_encode(uint32_t origin, uint64_t applied, mrd_buf *out)
{
    Meridian__Repl__Ack m = MERIDIAN__REPL__ACK__INIT;
    size_t sz;

    m.origin_site = origin;
    m.applied_lsn = applied;
    sz = meridian__repl__ack__get_packed_size(&m);
    mrd_buf_reset(out);
    if (mrd_buf_reserve(out, sz + 1) < 0)
        return -ENOMEM;
    meridian__repl__ack__pack(&m, (uint8_t *)out->data);
    out->len = sz;
    return 0;
}

int
repl__ack_decode(const void *data, size_t len, uint32_t *origin, uint64_t *applied)
{
    Meridian__Repl__Ack *m = meridian__repl__ack__unpack(NULL, len, data);

    if (!m)
        return MRD_EPROTO;
    *origin = m->origin_site;
    *applied = m->applied_lsn;
    meridian__repl__ack__free_unpacked(m, NULL);
    return 0;
}
