/*
 * store_parts.c - objects made of parts: the PARTS layout of a completed
 * multipart upload, reader pins, and freeing and healing such objects.
 *
 * Why a layout of parts. S3 promises that CompleteMultipartUpload does not
 * copy: the parts were streamed into the store as they arrived, each one an
 * ordinary object (its own id, stripes, shard files and layout blob). The
 * completed object's layout is the list of those part layouts, in order:
 *
 *   header (36 bytes, as every layout: magic, version, kind 2, size at 12)
 *   u32 n_parts
 *   n_parts x { u64 part size, u32 blob length, the part's layout blob }
 *   u32 CRC32C of everything before it
 *
 * Each part blob keeps its own CRC and is parsed by the same code as any
 * layout; a part may be striped (kind 1) or inline (kind 0, a small last
 * part), never itself a PARTS layout, so parsing nests exactly one level.
 * A read at offset x finds the part covering x by binary search over the
 * parts' start offsets and reads only the stripes of the parts the range
 * covers. Memory per reader is one small array of part offsets plus one open
 * part at a time.
 *
 * Pins. A reader of a plain object opens all its shard files at open, so an
 * overwrite that frees the version while a GET streams it cannot cut the GET
 * short (store_read.c). A PARTS object can have thousands of parts, too many
 * descriptors to open at once, so its reader opens one part at a time and
 * pins the object instead: store_object_delete_data of a pinned object only
 * records the layout, and the last reader to close frees the data. A pin is
 * keyed by the object id of the first striped part, unique to this object
 * (parts belong to exactly one upload and one object). A free in progress
 * leaves a "deleting" entry, and a reader that arrives then fails to open
 * (MRD_EDEGRADED), exactly as a plain reader racing the unlinks would, so the
 * caller looks the key up again. A deferred free is lost if the process dies
 * first; the shards are then unreferenced, like every other crash leftover.
 */
#include "store_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define ENT_HDR 12 /* u64 size + u32 blob length */

int
store__parts_check(store_layout *l, const unsigned char *b, size_t len)
{
    size_t pos = STORE_LAYOUT_FIXED + 4, end = len - 4;
    uint64_t total = 0;

    if (len < STORE_LAYOUT_FIXED + 8)
        return MRD_ECORRUPT;
    l->n_parts = store__get32(b + STORE_LAYOUT_FIXED);
    if (l->n_parts == 0 || l->n_parts > STORE_MPU_MAX_PARTS)
        return MRD_ECORRUPT;
    l->parts = b + pos;
    for (uint32_t i = 0; i < l->n_parts; i++) {
        store_layout sub;
        uint64_t sz;
        uint32_t bl;
        if (end - pos < ENT_HDR)
            return MRD_ECORRUPT;
        sz = store__get64(b + pos);
        bl = store__get32(b + pos + 8);
        pos += ENT_HDR;
        if (bl > end - pos || bl < STORE_LAYOUT_FIXED + 4 || b[pos + 5] == STORE_LAYOUT_PARTS)
            return MRD_ECORRUPT;
        if (store__layout_parse(b + pos, bl, &sub) != 0 || sub.size != sz)
            return MRD_ECORRUPT;
        total += sz;
        pos += bl;
    }
    if (pos != end || total != l->size)
        return MRD_ECORRUPT;
    l->parts_len = end - (size_t)(l->parts - b);
    return 0;
}

int
store__parts_index(const store_layout *l, store__part_ent **out)
{
    store__part_ent *e = calloc(l->n_parts, sizeof(*e));
    const unsigned char *p = l->parts;
    uint64_t off = 0;

    if (!e)
        return -ENOMEM;
    for (uint32_t i = 0; i < l->n_parts; i++) {
        e[i].off = off;
        e[i].size = store__get64(p);
        e[i].len = store__get32(p + 8);
        e[i].blob = p + ENT_HDR;
        off += e[i].size;
        p += ENT_HDR + e[i].len;
    }
    *out = e;
    return 0;
}

int
store_layout_compose(const store_part_ref *parts, size_t n, void **out, size_t *out_len)
{
    size_t len = STORE_LAYOUT_FIXED + 4 + 4, pos;
    uint64_t total = 0;
    unsigned char *b;

    if (!parts || !out || !out_len || n == 0 || n > STORE_MPU_MAX_PARTS)
        return MRD_EINVAL;
    for (size_t i = 0; i < n; i++) {
        store_layout sub;
        if (store__layout_parse(parts[i].layout, parts[i].layout_len, &sub) != 0 ||
            sub.kind == STORE_LAYOUT_PARTS || parts[i].layout_len > UINT32_MAX)
            return MRD_ECORRUPT;
        total += sub.size;
        len += ENT_HDR + parts[i].layout_len;
    }
    if (!(b = calloc(1, len)))
        return -ENOMEM;
    store__put32(b, STORE_LAYOUT_MAGIC);
    b[4] = 1;
    b[5] = STORE_LAYOUT_PARTS;
    store__put64(b + 12, total);
    store__put32(b + STORE_LAYOUT_FIXED, (uint32_t)n);
    pos = STORE_LAYOUT_FIXED + 4;
    for (size_t i = 0; i < n; i++) {
        store_layout sub;
        store__layout_parse(parts[i].layout, parts[i].layout_len, &sub);
        store__put64(b + pos, sub.size);
        store__put32(b + pos + 8, (uint32_t)parts[i].layout_len);
        memcpy(b + pos + ENT_HDR, parts[i].layout, parts[i].layout_len);
        pos += ENT_HDR + parts[i].layout_len;
    }
    store__put32(b + pos, mrd_crc32c(0, b, pos));
    *out = b;
    *out_len = len;
    return 0;
}

int
store__parts_pin_id(const store_layout *l, unsigned char id[STORE_OBJID_LEN])
{
    const unsigned char *p = l->parts;

    for (uint32_t i = 0; i < l->n_parts; i++) {
        uint32_t bl = store__get32(p + 8);
        if (p[ENT_HDR + 5] == STORE_LAYOUT_EC) {
            memcpy(id, p + ENT_HDR + 20, STORE_OBJID_LEN);
            return 0;
        }
        p += ENT_HDR + bl;
    }
    return MRD_ENOTFOUND;
}

/* ---- pins ------------------------------------------------------------------ */

static store__pin *
pin_find(store *s, const unsigned char *id)
{
    for (store__pin *p = s->pins; p; p = p->next)
        if (memcmp(p->id, id, STORE_OBJID_LEN) == 0)
            return p;
    return NULL;
}

static void
pin_unlink(store *s, store__pin *pin)
{
    for (store__pin **pp = &s->pins; *pp; pp = &(*pp)->next) {
        if (*pp == pin) {
            *pp = pin->next;
            return;
        }
    }
}

int
store__pin_take(store *s, const unsigned char *id)
{
    store__pin *p;
    int rc = 0;

    pthread_mutex_lock(&s->pin_mu);
    p = pin_find(s, id);
    if (p && p->deleting) {
        rc = MRD_EDEGRADED;
    } else if (p) {
        p->refs++;
    } else if ((p = calloc(1, sizeof(*p))) != NULL) {
        memcpy(p->id, id, STORE_OBJID_LEN);
        p->refs = 1;
        p->next = s->pins;
        s->pins = p;
    } else {
        rc = -ENOMEM;
    }
    pthread_mutex_unlock(&s->pin_mu);
    return rc;
}

/* Frees every part's data; the caller holds a "deleting" pin entry. */
static void
free_parts(store *s, const store_layout *l)
{
    store__part_ent *e = NULL;

    if (store__parts_index(l, &e) != 0)
        return;
    for (uint32_t i = 0; i < l->n_parts; i++)
        store_object_delete_data(s, e[i].blob, e[i].len);
    free(e);
}

void
store__pin_drop(store *s, const unsigned char *id)
{
    store__pin *p;
    void *pending = NULL;
    size_t plen = 0;

    pthread_mutex_lock(&s->pin_mu);
    p = pin_find(s, id);
    if (p && --p->refs == 0) {
        pending = p->pending;
        plen = p->pending_len;
        p->pending = NULL;
        if (pending) {
            p->deleting = 1; /* keeps new readers out while the files go */
        } else {
            pin_unlink(s, p);
            free(p);
            p = NULL;
        }
    }
    pthread_mutex_unlock(&s->pin_mu);
    if (pending) {
        store_layout l;
        if (store__layout_parse(pending, plen, &l) == 0)
            free_parts(s, &l);
        free(pending);
        pthread_mutex_lock(&s->pin_mu);
        pin_unlink(s, p);
        pthread_mutex_unlock(&s->pin_mu);
        free(p);
    }
}

int
store__parts_delete(store *s, const store_layout *l, const void *blob, size_t len)
{
    unsigned char id[STORE_OBJID_LEN];
    store__pin *p;
    int rc = 0;

    if (store__parts_pin_id(l, id) != 0)
        return 0; /* every part inline: nothing on the drives */
    pthread_mutex_lock(&s->pin_mu);
    p = pin_find(s, id);
    if (p) {
        /* read now: the last reader frees it (a second free is a no-op) */
        if (!p->deleting && !p->pending && (p->pending = malloc(len)) != NULL) {
            memcpy(p->pending, blob, len);
            p->pending_len = len;
        } else if (!p->deleting && !p->pending) {
            rc = -ENOMEM;
        }
        pthread_mutex_unlock(&s->pin_mu);
        return rc;
    }
    if (!(p = calloc(1, sizeof(*p)))) {
        pthread_mutex_unlock(&s->pin_mu);
        return -ENOMEM;
    }
    memcpy(p->id, id, STORE_OBJID_LEN);
    p->deleting = 1;
    p->next = s->pins;
    s->pins = p;
    pthread_mutex_unlock(&s->pin_mu);
    free_parts(s, l);
    pthread_mutex_lock(&s->pin_mu);
    pin_unlink(s, p);
    pthread_mutex_unlock(&s->pin_mu);
    free(p);
    return 0;
}

int
store__parts_heal(store *s, const store_layout *l, int *rebuilt)
{
    store__part_ent *e = NULL;
    int rc, total = 0;

    if ((rc = store__parts_index(l, &e)) != 0)
        return rc;
    for (uint32_t i = 0; i < l->n_parts; i++) {
        int n = 0, r = store_heal_object(s, e[i].blob, e[i].len, &n);
        if (r == 0)
            total += n;
        else if (rc == 0)
            rc = r; /* go on: heal what can be healed */
    }
    free(e);
    if (rc == 0 && rebuilt)
        *rebuilt = total;
    return rc;
}

int
store_layout_part(const void *layout, size_t len, uint32_t number, uint64_t *off, uint64_t *size,
                  uint32_t *parts)
{
    store_layout l;
    const unsigned char *p;
    uint64_t at = 0;
    int rc = store__layout_parse(layout, len, &l);

    if (rc != 0)
        return rc;
    if (number < 1 || number > (l.kind == STORE_LAYOUT_PARTS ? l.n_parts : 1))
        return MRD_ENOTFOUND;
    if (l.kind != STORE_LAYOUT_PARTS) {
        *off = 0;
        *size = l.size;
        *parts = 0;
        return 0;
    }
    p = l.parts;
    for (uint32_t i = 1; i < number; i++) {
        at += store__get64(p);
        p += ENT_HDR + store__get32(p + 8);
    }
    *off = at;
    *size = store__get64(p);
    *parts = l.n_parts;
    return 0;
}
