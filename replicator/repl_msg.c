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
#include <stdlib.h>
#include <string.h>

#include "repl.pb-c.h"

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
    size_t n;
    int na = m->st.n_applied < 0                  ? 0
             : m->st.n_applied > REPL_MAX_APPLIED ? REPL_MAX_APPLIED
                                                  : m->st.n_applied;

    st.site_id = m->st.site_id;
    st.site_name = (char *)m->st.site_name;
    st.topology_epoch = m->st.topology_epoch;
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

    mrd_buf_reset(out);
    if (m->is_hello) {
        Meridian__Repl__Hello h = MERIDIAN__REPL__HELLO__INIT;

        h.protocol_version = m->protocol_version;
        h.heartbeat_interval_ms = m->heartbeat_interval_ms;
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
