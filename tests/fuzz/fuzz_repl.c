/*
 * fuzz_repl.c - libFuzzer target for what a replication peer's bytes reach
 * first: the auth header parsing and signature check (repl_auth.c), the
 * Hello/Heartbeat protobuf decoding, and the record stream's RecordBatch
 * and Ack decoding (repl_msg.c).
 *
 * The first byte picks a mode: 8 to 15 (bit 3 set) is the Topology mode
 * below, otherwise its low three bits do:
 *   0: the rest is split on '\n' into method, path, site, time, auth and
 *      body, and verified as a request would be, by a site with a secret
 *      and by one without (almost always rejected: this exercises the
 *      header syntax checks; the "mtls" marker must pass only without);
 *   1: the rest is a Hello body, 2: a Heartbeat body, decoded directly;
 *   3: the rest is "site\ntime\nbody": the body is signed with the right
 *      secret, so verification must succeed whenever site and time parse
 *      (and the marker of the mode without a secret must pass there and
 *      fail with the secret),
 *      and the body then goes through the decoder, as on the server after a
 *      good signature. A decoded message is re-encoded and decoded again and
 *      must round-trip;
 *   4: the rest is a records request body: a 4-byte big-endian length, a
 *      RecordBatch of that length, then object data (ignored here);
 *   5: the rest is a RecordBatch, without the framing;
 *   6: the rest is an Ack body;
 *   7: as 4, and every record's payload is then decoded as the WalRecord
 *      of its type, as the receiver and engine_repl_apply do.
 *   With bit 4 set (16..31), anti-entropy digests instead: an odd first
 *      byte makes the rest a DigestRequest (decoded, checked, re-encoded,
 *      answered from a fixed tree), an even one a DigestResponse (tree nodes
 *      compared with that tree, and a version 3 summaries answer decoded and
 *      asked whether a few versions would change anything at the peer).
 *   Topology: the rest is a POST /repl/v1/topology answer, decoded and
 *      checked (repl__topo_decode); one that decodes must re-encode and
 *      decode to the same topology, hash and removed sites included, the
 *      removed sites in strict id order.
 * A batch that parses must satisfy every rule repl__batch_parse promises
 * (repl_int.h), and re-packing it must give a batch that parses to the
 * same records; an Ack that decodes must round-trip.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conflict.h"
#include "engine.h"
#include "repl_int.h"
#include "store.h"
#include "wal.h"

static const char secret[] = "fuzz-secret";

/* One bucket "b" with a few leaves set: what a site compares against. */
static repl__bdigest *
fixed_tree(void)
{
    static repl__bdigest d[1];

    if (!d[0].tree) {
        snprintf(d[0].bucket, sizeof(d[0].bucket), "b");
        d[0].leaves = 65536;
        d[0].versions = 3;
        d[0].digest = calloc(65536, 16);
        if (!d[0].digest)
            abort();
        d[0].digest[7 * 16] = 1;
        d[0].digest[40000 * 16 + 3] = 9;
        if (repl__tree_build(&d[0]) != 0)
            abort();
    }
    return d;
}

/* Version 3: a summaries answer as a sender decodes it, then asks of it
 * whether each of a few versions of key "k" in bucket "b" would change
 * nothing at the peer (the lookup and every rule run on decoded data). */
static void
check_summaries(const uint8_t *p, size_t n)
{
    static const uint32_t flags[] = {0, ENGINE_VF_NULL_VERSION, ENGINE_VF_TOMBSTONE,
                                     STORE_VF_DELETE_MARKER | ENGINE_VF_NULL_VERSION};
    repl__peerset *ps = NULL;
    uint8_t vb[VV_ENCODED_MAX];
    size_t vlen = 0;
    vv v = {0};

    if (repl__peerset_decode(p, n, &ps) != 0)
        return;
    if (vv_increment(&v, 1) != 0 || vv_encode(&v, vb, sizeof(vb), &vlen) != 0)
        abort();
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
        store_version sv = {.version_id = i & 1 ? "null" : "v1",
                            .etag = "e",
                            .flags = flags[i],
                            .vv = vb,
                            .vv_len = vlen};
        (void)repl__peerset_noop(ps, "b", "k", &sv);
    }
    if (!repl__peerset_partial(ps) && !repl__peerset_covers(ps, "b", "k", "v"))
        abort(); /* a whole answer speaks for every key */
    (void)repl__peerset_covers(ps, "", "", "");
    if (repl__peerset_noop(NULL, "b", "k", &(store_version){.vv = vb, .vv_len = vlen}) != 0)
        abort(); /* no summaries: everything is sent */
    repl__peerset_free(ps);
}

/* Tree digest messages (version 2): a DigestRequest as a server decodes and
 * answers it, and a DigestResponse as a sender decodes and compares it. */
static void
check_digest(const uint8_t *p, size_t n, int mode)
{
    repl__bdigest *mine = fixed_tree();

    if (mode & 1) {
        repl__dreq q, again;
        mrd_buf b = {0};
        repl__bdigest *bm = NULL;
        size_t nb = 0;

        if (repl__dreq_decode(p, n, &q) != 0)
            return;
        for (size_t i = 0; i < q.n; i++)
            for (size_t k = 0; k < q.r[i].n; k++)
                if (q.r[i].level > REPL_TREE_LEAF ||
                    q.r[i].nodes[k] >= (1u << (4 * q.r[i].level)) ||
                    (!q.push && !q.summaries && q.r[i].level == REPL_TREE_LEAF))
                    abort(); /* the decoder checks every node */
        if (repl__dreq_encode(&q, &b) != 0 || repl__dreq_decode(b.data, b.len, &again) != 0 ||
            again.n != q.n || again.push != q.push || again.tree != q.tree ||
            again.summaries != q.summaries || strcmp(again.from_bucket, q.from_bucket) != 0 ||
            strcmp(again.from_key, q.from_key) != 0 || strcmp(again.from_vid, q.from_vid) != 0 ||
            (q.from_vid[0] && !q.from_key[0]) || (!q.summaries && q.from_bucket[0]))
            abort();                 /* the page point travels with summaries requests only */
        if (q.push || q.summaries) { /* the leaves to push, or to list */
            if (repl__dreq_bitmaps(&q, &bm, &nb) != 0)
                abort();
            repl__digest_free(bm, nb);
        } else if (q.tree && repl__tree_children_encode(mine, 1, &q, &b) != 0) {
            abort();
        }
        repl__dreq_free(&again);
        repl__dreq_free(&q);
        mrd_buf_free(&b);
        return;
    }
    {
        repl__tnodes *t = NULL;
        repl__tpend pend = {0};
        repl__dreq push = {0};
        size_t nt = 0;
        int is_tree = 0;

        if (repl__tree_decode(p, n, &is_tree, &t, &nt) != 0)
            return;
        if (is_tree) {
            if (repl__tree_roots_diff(mine, 1, t, nt, NULL, &pend, &push) != 0)
                abort();
            (void)repl__tree_children_diff(mine, 1, t, nt, &pend);
            if (repl__tree_push_leaves(mine, 1, &push) != 0)
                abort();
        }
        repl__tpend_free(&pend);
        repl__dreq_free(&push);
        repl__tnodes_free(t, nt);
    }
    check_summaries(p, n);
}

static void
check_decode(const uint8_t *p, size_t n, int is_hello)
{
    repl__msg m, again;
    mrd_buf b = {0};

    if (repl__msg_decode(p, n, is_hello, &m) != 0)
        return;
    if (repl__msg_encode(&m, &b) != 0)
        abort();
    if (repl__msg_decode(b.data, b.len, is_hello, &again) != 0)
        abort();
    if (again.st.site_id != m.st.site_id || again.st.high_water_lsn != m.st.high_water_lsn ||
        again.st.n_applied != m.st.n_applied || strcmp(again.st.site_name, m.st.site_name) != 0 ||
        again.st.n_links != m.st.n_links || again.features != m.features)
        abort();
    for (int i = 0; i < m.st.n_links; i++)
        if (again.st.links[i].peer_site != m.st.links[i].peer_site ||
            again.st.links[i].lag_records != m.st.links[i].lag_records ||
            strcmp(again.st.links[i].last_error, m.st.links[i].last_error) != 0)
            abort();
    mrd_buf_free(&b);
}

/* Checks what repl__batch_parse promises of a batch it accepted. */
static void
check_batch_rules(const repl__batch *b)
{
    if (b->first == 0 || b->last < b->first || b->n > REPL_MAX_RECORDS || (b->n && !b->recs))
        abort();
    for (size_t i = 0; i < b->n; i++) {
        const repl__rec *r = &b->recs[i];
        if (r->lsn < b->first || r->lsn > b->last || (i && r->lsn <= b->recs[i - 1].lsn))
            abort();
        if (r->type == 0 || r->type == WAL_REC_REPLICATED_APPLY || r->type > WAL_REC_OBJECT_TAGS)
            abort();
        if (r->data_size && (i + 1 != b->n || r->type != WAL_REC_OBJECT_PUT))
            abort();
        if (r->data_check && (!r->data_size || !repl__dcheck_len(r->data_check)))
            abort();
        if (r->data_check == REPL_DCHECK_POLY1305 ? r->data_nonce_len != REPL_DCHECK_NONCE
                                                  : r->data_nonce_len != 0)
            abort();
        if (r->len && !r->payload)
            abort();
    }
}

/* Parses a RecordBatch; when it is accepted, checks it, re-packs it and
 * parses it again, and (decode_records) decodes each record's payload. */
static void
check_batch(const uint8_t *p, size_t n, int decode_records)
{
    static const char unset[] = "unset";
    repl__batch b, again;
    const char *reason = unset;
    mrd_buf buf = {0};

    if (repl__batch_parse(p, n, &b, &reason) != 0) {
        if (!reason || reason == unset)
            abort(); /* a rejection always says why */
        return;
    }
    if (reason)
        abort(); /* and an acceptance clears it */
    check_batch_rules(&b);
    if (repl__batch_pack(b.first, b.last, b.recs, b.n, &buf) != 0)
        abort();
    if (buf.len < 4 || ((size_t)(uint8_t)buf.data[0] << 24 | (size_t)(uint8_t)buf.data[1] << 16 |
                        (size_t)(uint8_t)buf.data[2] << 8 | (uint8_t)buf.data[3]) != buf.len - 4)
        abort();
    if (repl__batch_parse(buf.data + 4, buf.len - 4, &again, &reason) != 0)
        abort();
    if (again.first != b.first || again.last != b.last || again.n != b.n)
        abort();
    for (size_t i = 0; i < b.n; i++) {
        const repl__rec *x = &b.recs[i], *y = &again.recs[i];
        if (x->lsn != y->lsn || x->type != y->type || x->len != y->len ||
            x->data_size != y->data_size || x->data_check != y->data_check ||
            x->data_nonce_len != y->data_nonce_len ||
            (x->data_nonce_len && memcmp(x->data_nonce, y->data_nonce, x->data_nonce_len)) ||
            (x->len && memcmp(x->payload, y->payload, x->len)))
            abort();
    }
    for (size_t i = 0; decode_records && i < b.n; i++) {
        struct Meridian__WalRecord *rec = NULL;
        if (wal_record_decode(b.recs[i].type, b.recs[i].payload, b.recs[i].len, &rec) == 0)
            wal_record_free(rec);
    }
    repl__batch_free(&again);
    repl__batch_free(&b);
    mrd_buf_free(&buf);
}

/* A records request body: length-prefixed batch, then object data. */
static void
check_framed(const uint8_t *p, size_t n, int decode_records)
{
    size_t len;

    if (n < 4)
        return;
    len = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
    if (len > n - 4)
        return; /* the receiver waits for more (or rejects an oversized head) */
    check_batch(p + 4, len, decode_records);
}

static void
check_ack(const uint8_t *p, size_t n)
{
    uint32_t origin = 0, o2 = 0;
    uint64_t applied = 0, a2 = 0;
    mrd_buf b = {0};

    if (repl__ack_decode(p, n, &origin, &applied) != 0)
        return;
    if (repl__ack_encode(origin, applied, &b) != 0 ||
        repl__ack_decode(b.data, b.len, &o2, &a2) != 0 || o2 != origin || a2 != applied)
        abort();
    mrd_buf_free(&b);
}

/* Splits s (NUL-terminated copy) on '\n' into up to n fields. */
static int
split(char *s, char **f, int n)
{
    int k = 0;

    f[k++] = s;
    for (char *c = s; *c && k < n; c++) {
        if (*c == '\n') {
            *c = '\0';
            f[k++] = c + 1;
        }
    }
    return k;
}

static void
check_topology(const uint8_t *p, size_t n)
{
    repl_topology t, again;
    const char *why = NULL;
    mrd_buf b = {0};

    if (repl__topo_decode(p, n, &t, &why) != 0) {
        if (!why)
            abort(); /* a refusal always says why */
        return;
    }
    if (t.epoch == 0 || t.n < 1 || t.n > MRD_MAX_PEERS + 1)
        abort();
    if (repl__topo_encode(&t, &b) != 0)
        abort();
    if (repl__topo_decode(b.data, b.len, &again, &why) != 0 || again.epoch != t.epoch ||
        again.n != t.n || again.hash != t.hash)
        abort();
    for (int i = 0; i < t.n; i++)
        if (again.sites[i].id != t.sites[i].id || strcmp(again.sites[i].name, t.sites[i].name))
            abort();
    if (t.n_removed < 0 || t.n_removed > REPL_TOPO_MAX_REMOVED || again.n_removed != t.n_removed)
        abort();
    for (int i = 0; i < t.n_removed; i++) {
        const repl_removed_site *x = &t.removed[i], *y = &again.removed[i];

        if (x->id != y->id || strcmp(x->name, y->name) || x->epoch != y->epoch || x->epoch == 0 ||
            x->epoch > t.epoch || x->has_tls_pin != y->has_tls_pin ||
            memcmp(x->tls_pin, y->tls_pin, 32) || (i && t.removed[i - 1].id >= x->id))
            abort();
    }
    mrd_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *reason = NULL;
    uint32_t site = 0;
    char *copy, *f[6];
    repl__auth_in in;
    int mode, k;

    if (size < 1 || size > REPL_MAX_CTRL_BODY)
        return 0;
    mode = data[0] & 7;
    if (data[0] & 16) {
        check_digest(data + 1, size - 1, mode);
        return 0;
    }
    if (data[0] & 8) {
        check_topology(data + 1, size - 1);
        return 0;
    }
    data++;
    size--;
    if (mode == 1 || mode == 2) {
        check_decode(data, size, mode == 1);
        return 0;
    }
    if (mode >= 4) {
        if (mode == 4 || mode == 7)
            check_framed(data, size, mode == 7);
        else if (mode == 5)
            check_batch(data, size, 0);
        else
            check_ack(data, size);
        return 0;
    }
    copy = malloc(size + 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    copy[size] = '\0';
    memset(&in, 0, sizeof(in));
    if (mode == 0) {
        k = split(copy, f, 6);
        in.method = f[0];
        in.path = k > 1 ? f[1] : NULL;
        in.site = k > 2 ? f[2] : NULL;
        in.time = k > 3 ? f[3] : NULL;
        in.auth = k > 4 ? f[4] : NULL;
        in.body = k > 5 ? f[5] : "";
        in.body_len = k > 5 ? strlen(f[5]) : 0;
        if (repl__auth_verify(secret, sizeof(secret) - 1, &in, 1700000000000ull, 300000, &reason,
                              &site) == 0 &&
            strcmp(in.auth, REPL_AUTH_MTLS) == 0)
            abort(); /* the unsigned marker never passes where a secret is set */
        /* the same headers at a site without a secret (mutual TLS alone) */
        if (repl__auth_verify(NULL, 0, &in, 1700000000000ull, 300000, &reason, &site) == 0 &&
            strcmp(in.auth, REPL_AUTH_MTLS) != 0)
            abort(); /* ... which takes the marker and nothing else */
    } else {
        uint32_t sid;
        uint64_t t;
        char sig[65];

        k = split(copy, f, 3);
        if (k == 3 && repl__parse_site(f[0], &sid) == 0 && repl__parse_time(f[1], &t) == 0) {
            const char *body = f[2];
            size_t blen = size - (size_t)(body - copy);

            repl__auth_sign(secret, sizeof(secret) - 1, "POST", REPL_PATH_HEARTBEAT, sid, t, body,
                            blen, sig);
            in.method = "POST";
            in.path = REPL_PATH_HEARTBEAT;
            in.site = f[0];
            in.time = f[1];
            in.auth = sig;
            in.body = body;
            in.body_len = blen;
            if (repl__auth_verify(secret, sizeof(secret) - 1, &in, t, 0, &reason, &site) != 0 ||
                site != sid)
                abort(); /* a correct signature must verify */
            /* without a secret: the marker, good there and refused here */
            repl__auth_sign(NULL, 0, "POST", REPL_PATH_HEARTBEAT, sid, t, body, blen, sig);
            if (repl__auth_verify(NULL, 0, &in, t, 0, &reason, &site) != 0 || site != sid ||
                repl__auth_verify(secret, sizeof(secret) - 1, &in, t, 0, &reason, &site) == 0)
                abort();
            check_decode((const uint8_t *)body, blen, 0);
        }
    }
    free(copy);
    return 0;
}
