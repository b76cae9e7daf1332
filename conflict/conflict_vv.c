/*
 * conflict_vv.c - version vectors: the algebra and the canonical encoding.
 *
 * Representation. A vector is a small sorted array of (site, counter) pairs
 * held inline in the struct (VV_MAX_SITES entries), so the algebra never
 * allocates and can never fail for lack of memory. Absent sites count 0,
 * which is why a zero counter is never stored: "absent" and "0" must be one
 * representation or equal vectors would compare or encode differently.
 * Sorting by site turns compare and merge into one linear merge-walk over
 * both arrays.
 *
 * Compare. Walking both arrays in site order we track two bits: "a has some
 * site larger than b" and "b has some site larger than a". Neither: EQUAL;
 * only the first: DOMINATES; only the second: DOMINATED; both: CONCURRENT.
 * A site present on one side only counts as larger on that side (the other
 * side's counter is 0 and stored counters are never 0).
 *
 * Encoding. The wire and disk form is the protobuf message
 * meridian.VersionVector (proto/meridian.proto): repeated VvEntry{site=1,
 * counter=2}, packed with protobuf-c. Protobuf itself admits many byte
 * strings for one message (fields in any order, repeated scalars where the
 * last one wins, non-minimal varints, explicit zero values, unknown fields).
 * Digests over the index must see one byte string per vector, so decoding is
 * strict in two steps: (1) unpack and check the invariant (sorted, unique,
 * no zero counter, site in range, no unknown fields), then (2) re-encode the
 * result and require it to equal the input byte for byte. Step 2 catches
 * every encoding-level variant that step 1 cannot see, without hand-written
 * varint rules. Both steps are O(len); the input size is bounded up front by
 * VV_ENCODED_MAX, so a hostile input cannot make protobuf-c allocate much.
 *
 * The protobuf-c types never leave this file: the header speaks only vv.
 */
#include "conflict.h"
#include "meridian.pb-c.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

int
vv_validate(const vv *v)
{
    if (!v || v->n > VV_MAX_SITES)
        return MRD_EINVAL;
    for (uint32_t i = 0; i < v->n; i++) {
        if (v->e[i].site == 0 || v->e[i].site > VV_SITE_MAX || v->e[i].counter == 0)
            return MRD_EINVAL;
        if (i > 0 && v->e[i - 1].site >= v->e[i].site)
            return MRD_EINVAL;
    }
    return 0;
}

/* Index of site in v, or of the slot where it would be inserted (binary
 * search; vectors are short but this keeps increment O(log n) + shift). */
static uint32_t
find_slot(const vv *v, uint32_t site)
{
    uint32_t lo = 0, hi = v->n;

    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (v->e[mid].site < site)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

uint64_t
vv_get(const vv *v, uint32_t site)
{
    uint32_t i = find_slot(v, site);

    return (i < v->n && v->e[i].site == site) ? v->e[i].counter : 0;
}

vv_order
vv_compare(const vv *a, const vv *b)
{
    uint32_t i = 0, j = 0;
    int a_more = 0, b_more = 0;

    assert(vv_validate(a) == 0 && vv_validate(b) == 0);
    while ((i < a->n || j < b->n) && !(a_more && b_more)) {
        if (j == b->n || (i < a->n && a->e[i].site < b->e[j].site)) {
            a_more = 1; /* site only in a */
            i++;
        } else if (i == a->n || b->e[j].site < a->e[i].site) {
            b_more = 1; /* site only in b */
            j++;
        } else {
            if (a->e[i].counter > b->e[j].counter)
                a_more = 1;
            else if (a->e[i].counter < b->e[j].counter)
                b_more = 1;
            i++;
            j++;
        }
    }
    if (a_more && b_more)
        return VV_CONCURRENT;
    if (a_more)
        return VV_DOMINATES;
    if (b_more)
        return VV_DOMINATED;
    return VV_EQUAL;
}

int
vv_merge(const vv *a, const vv *b, vv *out)
{
    vv r;
    uint32_t i = 0, j = 0;

    if (vv_validate(a) != 0 || vv_validate(b) != 0 || !out)
        return MRD_EINVAL;
    r.n = 0;
    while (i < a->n || j < b->n) {
        vv_entry x;
        if (j == b->n || (i < a->n && a->e[i].site < b->e[j].site)) {
            x = a->e[i++];
        } else if (i == a->n || b->e[j].site < a->e[i].site) {
            x = b->e[j++];
        } else {
            x = a->e[i];
            if (b->e[j].counter > x.counter)
                x.counter = b->e[j].counter;
            i++;
            j++;
        }
        if (r.n == VV_MAX_SITES)
            return MRD_ETOOBIG;
        r.e[r.n++] = x;
    }
    /* built in a temporary so that out may alias a or b */
    out->n = r.n;
    memcpy(out->e, r.e, r.n * sizeof(r.e[0]));
    return 0;
}

int
vv_raise(vv *v, uint32_t site, uint64_t counter)
{
    uint32_t i;

    if (vv_validate(v) != 0 || site == 0 || site > VV_SITE_MAX || counter == 0)
        return MRD_EINVAL;
    i = find_slot(v, site);
    if (i < v->n && v->e[i].site == site) {
        if (counter > v->e[i].counter)
            v->e[i].counter = counter;
        return 0;
    }
    if (v->n == VV_MAX_SITES)
        return MRD_ETOOBIG;
    memmove(&v->e[i + 1], &v->e[i], (v->n - i) * sizeof(v->e[0]));
    v->e[i].site = site;
    v->e[i].counter = counter;
    v->n++;
    return 0;
}

int
vv_increment(vv *v, uint32_t site)
{
    uint64_t c;

    if (vv_validate(v) != 0 || site == 0 || site > VV_SITE_MAX)
        return MRD_EINVAL;
    c = vv_get(v, site);
    if (c == UINT64_MAX)
        return MRD_ETOOBIG;
    return vv_raise(v, site, c + 1);
}

void
vv_to_proto(const vv *v, Meridian__VersionVector *msg, Meridian__VvEntry *ents,
            Meridian__VvEntry **ptrs)
{
    meridian__version_vector__init(msg);
    for (uint32_t i = 0; i < v->n; i++) {
        meridian__vv_entry__init(&ents[i]);
        ents[i].site = v->e[i].site;
        ents[i].counter = v->e[i].counter;
        ptrs[i] = &ents[i];
    }
    msg->n_entries = v->n;
    msg->entries = v->n ? ptrs : NULL;
}

size_t
vv_encoded_size(const vv *v)
{
    Meridian__VersionVector msg;
    Meridian__VvEntry ents[VV_MAX_SITES];
    Meridian__VvEntry *ptrs[VV_MAX_SITES];

    if (vv_validate(v) != 0)
        return 0;
    vv_to_proto(v, &msg, ents, ptrs);
    return meridian__version_vector__get_packed_size(&msg);
}

int
vv_encode(const vv *v, uint8_t *buf, size_t cap, size_t *out_len)
{
    Meridian__VersionVector msg;
    Meridian__VvEntry ents[VV_MAX_SITES];
    Meridian__VvEntry *ptrs[VV_MAX_SITES];
    size_t need;

    if (vv_validate(v) != 0 || (!buf && cap > 0) || !out_len)
        return MRD_EINVAL;
    vv_to_proto(v, &msg, ents, ptrs);
    need = meridian__version_vector__get_packed_size(&msg);
    if (need > cap)
        return MRD_ETOOBIG;
    if (need > 0)
        meridian__version_vector__pack(&msg, buf);
    *out_len = need;
    return 0;
}

int
vv_decode(const uint8_t *buf, size_t len, vv *out)
{
    Meridian__VersionVector *msg = NULL;
    uint8_t again[VV_ENCODED_MAX];
    size_t again_len = 0;
    vv r;
    int rc = MRD_EINVAL;

    if ((!buf && len > 0) || !out)
        return MRD_EINVAL;
    /* A canonical vector never exceeds VV_ENCODED_MAX bytes; anything longer
     * is either too many entries or non-canonical padding. Refusing it here
     * also bounds what protobuf-c may allocate for hostile input. */
    if (len > VV_ENCODED_MAX)
        return MRD_ETOOBIG;
    if (len == 0) {
        out->n = 0;
        return 0;
    }
    msg = meridian__version_vector__unpack(NULL, len, buf);
    if (!msg)
        return MRD_EINVAL; /* protobuf-c does not tell ENOMEM apart from garbage */
    if (msg->base.n_unknown_fields != 0)
        goto fail_msg;
    if (msg->n_entries > VV_MAX_SITES) {
        rc = MRD_ETOOBIG;
        goto fail_msg;
    }
    r.n = 0;
    for (size_t i = 0; i < msg->n_entries; i++) {
        const Meridian__VvEntry *e = msg->entries[i];
        if (e->base.n_unknown_fields != 0)
            goto fail_msg;
        r.e[r.n].site = e->site;
        r.e[r.n].counter = e->counter;
        r.n++;
    }
    if (vv_validate(&r) != 0)
        goto fail_msg;
    if (vv_encode(&r, again, sizeof(again), &again_len) != 0 || again_len != len ||
        memcmp(again, buf, len) != 0)
        goto fail_msg;
    *out = r;
    rc = 0;
fail_msg:
    meridian__version_vector__free_unpacked(msg, NULL);
    return rc;
}
