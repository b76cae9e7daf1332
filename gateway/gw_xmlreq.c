/*
 * gw_xmlreq.c - reading the XML documents clients send in request bodies
 * (CompleteMultipartUpload, Delete, Tagging), on expat.
 *
 * gw_xml_read walks a whole body (already bounded and in memory: these
 * documents are small) and calls back at the end of every element with the
 * path of open element names from the root and the element's own text. Names
 * are local names: expat resolves namespaces (the s3 xmlns, or a prefix) and
 * the URI is dropped, since S3 accepts both. What an S3 body never needs is
 * refused rather than handled: a DOCTYPE (so no entity can be declared, let
 * alone expanded: no billion laughs, no external entities), processing
 * instructions are ignored, and nesting deeper than GW_XML_MAX_DEPTH or text
 * longer than GW_XML_MAX_TEXT in one element is an error. Only leaf elements
 * carry text: once an element has a child, its own text (indentation) is
 * dropped, so a pretty-printed document of any length stays within bounds. The parser's memory is
 * bounded by those limits plus expat's own, linear in the body.
 *
 * gw_xml_parse_complete builds on it: <CompleteMultipartUpload> with
 * 1..10000 <Part> each with exactly one <PartNumber> (1..10000) and one
 * <ETag> (quotes stripped); other elements (the checksums) are ignored.
 * gw_xml_parse_delete does the same for <Delete> with an optional <Quiet> and
 * 1..1000 <Object> each with one <Key> (and optional <VersionId>). Anything
 * that does not fit that shape is MRD_EINVAL, which the caller answers
 * MalformedXML, as S3 does. gw_xml_parse_tagging reads <Tagging><TagSet> into
 * a gw_tagset, whose limits (S3's: 10 tags an object, or 50 a bucket when
 * the caller sets out->max; 128-byte keys, 256-byte values, unique keys)
 * are MRD_ETOOBIG, answered InvalidTag; gw_tagset_parse_query
 * and gw_tagset_encode convert to and from the x-amz-tagging header form,
 * which is also how tags are stored. gw_xml_parse_versioning reads the
 * one <Status> (Enabled or Suspended) of a <VersioningConfiguration>.
 * Fuzzed by tests/fuzz/fuzz_xml.c.
 */
#include "gw_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <expat.h>

typedef struct reader {
    XML_Parser p;
    const char *root;
    char path[GW_XML_MAX_DEPTH][64];
    const char *pathv[GW_XML_MAX_DEPTH];
    int depth;
    mrd_buf text[GW_XML_MAX_DEPTH];
    int container[GW_XML_MAX_DEPTH]; /* has child elements: its text is dropped */
    gw_xml_leaf_fn fn;
    void *ud;
    int rc;
} reader;

static void
stop(reader *x, int rc)
{
    if (x->rc == 0)
        x->rc = rc;
    XML_StopParser(x->p, XML_FALSE);
}

/* "uri\x01local" or "local" -> local */
static const char *
local_name(const XML_Char *name)
{
    const char *sep = strrchr(name, '\x01');

    return sep ? sep + 1 : name;
}

static void XMLCALL
on_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
    reader *x = ud;
    const char *ln = local_name(name);

    (void)attrs;
    if (x->depth == GW_XML_MAX_DEPTH || strlen(ln) >= sizeof(x->path[0]) ||
        (x->depth == 0 && strcmp(ln, x->root) != 0)) {
        stop(x, MRD_EINVAL);
        return;
    }
    if (x->depth > 0) {
        x->container[x->depth - 1] = 1;
        mrd_buf_reset(&x->text[x->depth - 1]);
    }
    strcpy(x->path[x->depth], ln);
    x->pathv[x->depth] = x->path[x->depth];
    mrd_buf_reset(&x->text[x->depth]);
    x->container[x->depth] = 0;
    x->depth++;
}

static void XMLCALL
on_end(void *ud, const XML_Char *name)
{
    reader *x = ud;
    mrd_buf *t;
    int rc;

    (void)name; /* expat has checked it matches the start tag */
    if (x->depth == 0)
        return;
    t = &x->text[x->depth - 1];
    if (mrd_buf_append(t, "", 0) != 0) { /* NUL-terminates */
        stop(x, -ENOMEM);
        return;
    }
    rc = x->fn(x->ud, x->depth, x->pathv, t->data, t->len);
    x->depth--;
    if (rc != 0)
        stop(x, rc);
}

static void XMLCALL
on_text(void *ud, const XML_Char *s, int len)
{
    reader *x = ud;
    mrd_buf *t;

    if (x->depth == 0 || x->container[x->depth - 1])
        return;
    t = &x->text[x->depth - 1];
    if (t->len + (size_t)len > GW_XML_MAX_TEXT) {
        stop(x, MRD_EINVAL);
        return;
    }
    if (mrd_buf_append(t, s, (size_t)len) != 0)
        stop(x, -ENOMEM);
}

static void XMLCALL
on_doctype(void *ud, const XML_Char *name, const XML_Char *sysid, const XML_Char *pubid,
           int has_internal_subset)
{
    (void)name;
    (void)sysid;
    (void)pubid;
    (void)has_internal_subset;
    stop(ud, MRD_EINVAL);
}

int
gw_xml_read(const char *body, size_t len, const char *root, gw_xml_leaf_fn fn, void *ud)
{
    reader x;
    int rc = 0;

    memset(&x, 0, sizeof(x));
    if (len > (size_t)0x7fffffff)
        return MRD_EINVAL;
    x.p = XML_ParserCreateNS(NULL, '\x01');
    if (!x.p)
        return -ENOMEM;
    x.root = root;
    x.fn = fn;
    x.ud = ud;
    XML_SetUserData(x.p, &x);
    XML_SetElementHandler(x.p, on_start, on_end);
    XML_SetCharacterDataHandler(x.p, on_text);
    XML_SetStartDoctypeDeclHandler(x.p, on_doctype);
    if (XML_Parse(x.p, body, (int)len, XML_TRUE) != XML_STATUS_OK)
        rc = x.rc ? x.rc : MRD_EINVAL;
    XML_ParserFree(x.p);
    for (int i = 0; i < GW_XML_MAX_DEPTH; i++)
        mrd_buf_free(&x.text[i]);
    return rc;
}

/* ---- <Delete> ------------------------------------------------------------ */

typedef struct del_acc {
    gw_delete_req *out;
    size_t cap;
    int has_key, has_vid, quiet_seen;
    char *key, *vid;
} del_acc;

static int
del_leaf(void *ud, int depth, const char *const *path, const char *text, size_t len)
{
    del_acc *a = ud;
    gw_delete_req *d = a->out;

    if (depth == 2 && strcmp(path[1], "Quiet") == 0) {
        if (a->quiet_seen++)
            return MRD_EINVAL;
        if (strcmp(text, "true") == 0)
            d->quiet = 1;
        else if (strcmp(text, "false") != 0)
            return MRD_EINVAL;
    } else if (depth == 3 && strcmp(path[1], "Object") == 0 && strcmp(path[2], "Key") == 0) {
        if (a->has_key++ || len == 0 || memchr(text, '\0', len))
            return MRD_EINVAL;
        if (!(a->key = strdup(text)))
            return -ENOMEM;
    } else if (depth == 3 && strcmp(path[1], "Object") == 0 && strcmp(path[2], "VersionId") == 0) {
        if (a->has_vid++)
            return MRD_EINVAL;
        if (!(a->vid = strdup(text)))
            return -ENOMEM;
    } else if (depth == 2 && strcmp(path[1], "Object") == 0) {
        gw_delete_obj *o;
        if (!a->has_key)
            return MRD_EINVAL;
        if (d->n == GW_DELETE_MAX_KEYS)
            return MRD_ETOOBIG;
        if (d->n == a->cap) {
            size_t cap = a->cap ? a->cap * 4 : 16;
            gw_delete_obj *no = realloc(d->objs, cap * sizeof(*no));
            if (!no)
                return -ENOMEM;
            d->objs = no;
            a->cap = cap;
        }
        o = &d->objs[d->n++];
        o->key = a->key;
        o->version_id = a->vid;
        a->key = a->vid = NULL;
        a->has_key = a->has_vid = 0;
    }
    /* anything else (the root, unknown elements S3 may add) is ignored */
    return 0;
}

void
gw_delete_req_clear(gw_delete_req *d)
{
    for (size_t i = 0; i < d->n; i++) {
        free(d->objs[i].key);
        free(d->objs[i].version_id);
    }
    free(d->objs);
    memset(d, 0, sizeof(*d));
}

int
gw_xml_parse_delete(const char *body, size_t len, gw_delete_req *out)
{
    gw_delete_req d;
    del_acc a;
    int rc;

    memset(&d, 0, sizeof(d));
    memset(&a, 0, sizeof(a));
    a.out = &d;
    rc = gw_xml_read(body, len, "Delete", del_leaf, &a);
    if (rc == 0 && d.n == 0)
        rc = MRD_EINVAL;
    free(a.key);
    free(a.vid);
    if (rc != 0) {
        gw_delete_req_clear(&d);
        return rc;
    }
    *out = d;
    return 0;
}

/* ---- <CompleteMultipartUpload> ------------------------------------------- */

typedef struct part_acc {
    gw_complete_part *parts;
    size_t n, cap;
    gw_complete_part cur;
    int has_num, has_etag;
} part_acc;

static int
part_leaf(void *ud, int depth, const char *const *path, const char *text, size_t len)
{
    part_acc *a = ud;
    char *end;
    unsigned long v;

    if (depth < 2 || strcmp(path[1], "Part") != 0)
        return 0; /* the root, and elements S3 may add */
    if (depth == 3 && strcmp(path[2], "PartNumber") == 0) {
        v = strtoul(text, &end, 10);
        if (a->has_num++ || len == 0 || text[0] < '0' || text[0] > '9' || *end || v < 1 ||
            v > GW_MPU_MAX_PARTS)
            return MRD_EINVAL;
        a->cur.number = (uint32_t)v;
    } else if (depth == 3 && strcmp(path[2], "ETag") == 0) {
        if (a->has_etag++)
            return MRD_EINVAL;
        while (len && (*text == ' ' || *text == '\t' || *text == '\n' || *text == '\r'))
            text++, len--;
        while (len && (text[len - 1] == ' ' || text[len - 1] == '\t' || text[len - 1] == '\n' ||
                       text[len - 1] == '\r'))
            len--;
        if (len >= 2 && text[0] == '"' && text[len - 1] == '"')
            text++, len -= 2;
        if (len < sizeof(a->cur.etag)) { /* else left "": matches no part */
            memcpy(a->cur.etag, text, len);
            a->cur.etag[len] = '\0';
        }
    } else if (depth == 2) {
        if (!a->has_num || !a->has_etag)
            return MRD_EINVAL;
        if (a->n == GW_MPU_MAX_PARTS)
            return MRD_ETOOBIG;
        if (a->n == a->cap) {
            size_t cap = a->cap ? a->cap * 4 : 16;
            gw_complete_part *np = realloc(a->parts, cap * sizeof(*np));
            if (!np)
                return -ENOMEM;
            a->parts = np;
            a->cap = cap;
        }
        a->parts[a->n++] = a->cur;
        memset(&a->cur, 0, sizeof(a->cur));
        a->has_num = a->has_etag = 0;
    }
    return 0;
}

int
gw_xml_parse_complete(const char *body, size_t len, gw_complete_part **parts, size_t *n)
{
    part_acc a;
    int rc;

    memset(&a, 0, sizeof(a));
    if (!body || !parts || !n)
        return MRD_EINVAL;
    rc = gw_xml_read(body, len, "CompleteMultipartUpload", part_leaf, &a);
    if (rc == 0 && a.n == 0)
        rc = MRD_EINVAL;
    if (rc != 0) {
        free(a.parts);
        return rc;
    }
    *parts = a.parts;
    *n = a.n;
    return 0;
}

/* ---- tag sets ------------------------------------------------------------ */

/* Adds one tag, checking S3's limits: at most t->max tags (an object's 10
 * when 0), keys of 1 to 128 bytes, values of at most 256, keys unique.
 * MRD_ETOOBIG (InvalidTag) otherwise. */
static int
tag_add(gw_tagset *t, const char *k, size_t kl, const char *v, size_t vl)
{
    int max = t->max > 0 && t->max <= GW_TAGS_MAX ? t->max : GW_OBJECT_TAGS_MAX;

    if (t->n == max || kl == 0 || kl > GW_TAG_KEY_MAX || vl > GW_TAG_VALUE_MAX ||
        memchr(k, '\0', kl) || memchr(v, '\0', vl))
        return MRD_ETOOBIG;
    for (int i = 0; i < t->n; i++)
        if (strlen(t->key[i]) == kl && memcmp(t->key[i], k, kl) == 0)
            return MRD_ETOOBIG;
    memcpy(t->key[t->n], k, kl);
    t->key[t->n][kl] = '\0';
    memcpy(t->value[t->n], v, vl);
    t->value[t->n][vl] = '\0';
    t->n++;
    return 0;
}

int
gw_tagset_parse_query(const char *s, gw_tagset *out)
{
    gw_tagset t;
    mrd_buf k = {0}, v = {0};
    int rc = 0;

    memset(&t, 0, sizeof(t));
    t.max = out->max;
    while (s && *s && rc == 0) {
        const char *amp = strchr(s, '&');
        size_t n = amp ? (size_t)(amp - s) : strlen(s);
        const char *eq = memchr(s, '=', n);
        size_t kl = eq ? (size_t)(eq - s) : n;
        mrd_buf_reset(&k);
        mrd_buf_reset(&v);
        if (n == 0) {
            rc = MRD_EINVAL;
        } else if ((rc = gw_url_decode(s, kl, 1, &k)) == 0 &&
                   (rc = eq ? gw_url_decode(eq + 1, n - kl - 1, 1, &v)
                            : mrd_buf_append(&v, "", 0)) == 0) {
            rc = tag_add(&t, k.data, k.len, v.data, v.len);
        }
        s = amp ? amp + 1 : NULL;
    }
    mrd_buf_free(&k);
    mrd_buf_free(&v);
    if (rc == 0)
        *out = t;
    return rc;
}

int
gw_tagset_encode(const gw_tagset *t, mrd_buf *out)
{
    int rc = mrd_buf_append(out, "", 0);

    for (int i = 0; i < t->n && rc == 0; i++) {
        if (i)
            rc = mrd_buf_append(out, "&", 1);
        if (rc == 0)
            rc = gw_uri_encode(out, t->key[i], strlen(t->key[i]), 0);
        if (rc == 0)
            rc = mrd_buf_append(out, "=", 1);
        if (rc == 0)
            rc = gw_uri_encode(out, t->value[i], strlen(t->value[i]), 0);
    }
    return rc;
}

typedef struct tag_acc {
    gw_tagset *t;
    mrd_buf key, value;
    int has_key, has_value, rc;
} tag_acc;

static int
tag_leaf(void *ud, int depth, const char *const *path, const char *text, size_t len)
{
    tag_acc *a = ud;

    if (depth >= 2 && strcmp(path[1], "TagSet") != 0)
        return 0; /* unknown elements are ignored */
    if (depth == 4 && strcmp(path[2], "Tag") == 0 &&
        (strcmp(path[3], "Key") == 0 || strcmp(path[3], "Value") == 0)) {
        int is_key = path[3][0] == 'K';
        if (is_key ? a->has_key++ : a->has_value++)
            return MRD_EINVAL;
        return mrd_buf_append(is_key ? &a->key : &a->value, text, len + 1);
    }
    if (depth == 3 && strcmp(path[2], "Tag") == 0) {
        int rc;
        if (!a->has_key || !a->has_value)
            return MRD_EINVAL;
        rc = tag_add(a->t, a->key.data, a->key.len - 1, a->value.data, a->value.len - 1);
        mrd_buf_reset(&a->key);
        mrd_buf_reset(&a->value);
        a->has_key = a->has_value = 0;
        return rc;
    }
    return 0;
}

int
gw_xml_parse_tagging(const char *body, size_t len, gw_tagset *out)
{
    gw_tagset t;
    tag_acc a;
    int rc;

    memset(&t, 0, sizeof(t));
    memset(&a, 0, sizeof(a));
    t.max = out->max;
    a.t = &t;
    rc = gw_xml_read(body, len, "Tagging", tag_leaf, &a);
    mrd_buf_free(&a.key);
    mrd_buf_free(&a.value);
    if (rc == 0)
        *out = t;
    return rc;
}

/* ---- versioning ------------------------------------------------------------ */

typedef struct ver_acc {
    int state, n;
} ver_acc;

static int
ver_leaf(void *ud, int depth, const char *const *path, const char *text, size_t len)
{
    ver_acc *a = ud;

    if (depth != 2 || strcmp(path[1], "Status") != 0)
        return 0; /* MfaDelete and unknown elements are ignored */
    if (a->n++)
        return MRD_EINVAL;
    if (len == 7 && memcmp(text, "Enabled", 7) == 0)
        a->state = 1;
    else if (len == 9 && memcmp(text, "Suspended", 9) == 0)
        a->state = 2;
    else
        return MRD_EINVAL;
    return 0;
}

int
gw_xml_parse_versioning(const char *body, size_t len, int *state)
{
    ver_acc a = {0, 0};
    int rc;

    if (!body || !state)
        return MRD_EINVAL;
    rc = gw_xml_read(body, len, "VersioningConfiguration", ver_leaf, &a);
    if (rc == 0 && !a.state)
        rc = MRD_EINVAL;
    if (rc == 0)
        *state = a.state;
    return rc;
}
