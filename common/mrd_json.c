/*
 * mrd_json.c - a small JSON writer and a strict JSON reader.
 *
 * The admin API speaks JSON and meridianctl reads it; both are small
 * documents, so the reader builds a tree (one malloc per node) instead of
 * streaming. The reader is strict RFC 8259: it rejects trailing commas,
 * comments, leading zeros, lone surrogates and control bytes in strings, and
 * stops at MRD_JSON_MAX_DEPTH levels so hostile input cannot exhaust the
 * stack. It is fuzzed by tests/fuzz/fuzz_json.c.
 *
 * The writer tracks, per nesting level, whether a comma is due, so callers
 * just emit keys and values in order. Errors (depth, allocation) are sticky
 * and checked once at the end.
 */
#include "common.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ writer */

void
mrd_json_w_init(mrd_json_w *w, mrd_buf *out)
{
    memset(w, 0, sizeof(*w));
    w->out = out;
}

static void
w_put(mrd_json_w *w, const char *s, size_t n)
{
    if (!w->err && mrd_buf_append(w->out, s, n) != 0)
        w->err = -ENOMEM;
}

/* Called before every value or key: inserts the comma when due. */
static void
w_sep(mrd_json_w *w)
{
    if (w->depth > 0 && w->need_comma[w->depth - 1])
        w_put(w, ",", 1);
    if (w->depth > 0)
        w->need_comma[w->depth - 1] = 1;
}

static void
w_open(mrd_json_w *w, char c)
{
    w_sep(w);
    if (w->depth >= MRD_JSON_MAX_DEPTH) {
        w->err = MRD_ETOOBIG;
        return;
    }
    w_put(w, &c, 1);
    w->need_comma[w->depth++] = 0;
}

static void
w_close(mrd_json_w *w, char c)
{
    if (w->depth == 0) {
        w->err = MRD_EINVAL;
        return;
    }
    w->depth--;
    w_put(w, &c, 1);
}

void
mrd_json_w_obj_begin(mrd_json_w *w)
{
    w_open(w, '{');
}

void
mrd_json_w_obj_end(mrd_json_w *w)
{
    w_close(w, '}');
}

void
mrd_json_w_arr_begin(mrd_json_w *w)
{
    w_open(w, '[');
}

void
mrd_json_w_arr_end(mrd_json_w *w)
{
    w_close(w, ']');
}

static void
w_string(mrd_json_w *w, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const char *run = s;

    w_put(w, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[6];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        w_put(w, run, (size_t)(s - run));
        run = s + 1;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            w_put(w, esc, 2);
        } else if (c == '\n') {
            w_put(w, "\\n", 2);
        } else if (c == '\t') {
            w_put(w, "\\t", 2);
        } else {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            w_put(w, esc, 6);
        }
    }
    w_put(w, run, (size_t)(s - run));
    w_put(w, "\"", 1);
}

void
mrd_json_w_key(mrd_json_w *w, const char *key)
{
    w_sep(w);
    w_string(w, key);
    w_put(w, ":", 1);
    /* The value that follows must not get its own comma. */
    if (w->depth > 0)
        w->need_comma[w->depth - 1] = 0;
}

/* After a value written right after a key, the next key needs a comma. */
static void
w_value_done(mrd_json_w *w)
{
    if (w->depth > 0)
        w->need_comma[w->depth - 1] = 1;
}

void
mrd_json_w_str(mrd_json_w *w, const char *s)
{
    w_sep(w);
    w_string(w, s ? s : "");
    w_value_done(w);
}

void
mrd_json_w_int(mrd_json_w *w, int64_t v)
{
    w_sep(w);
    if (!w->err && mrd_buf_appendf(w->out, "%lld", (long long)v) != 0)
        w->err = -ENOMEM;
    w_value_done(w);
}

void
mrd_json_w_uint(mrd_json_w *w, uint64_t v)
{
    w_sep(w);
    if (!w->err && mrd_buf_appendf(w->out, "%llu", (unsigned long long)v) != 0)
        w->err = -ENOMEM;
    w_value_done(w);
}

void
mrd_json_w_double(mrd_json_w *w, double v)
{
    w_sep(w);
    if (!isfinite(v))
        w_put(w, "null", 4);
    else if (!w->err && mrd_buf_appendf(w->out, "%.6g", v) != 0)
        w->err = -ENOMEM;
    w_value_done(w);
}

void
mrd_json_w_bool(mrd_json_w *w, int v)
{
    w_sep(w);
    w_put(w, v ? "true" : "false", v ? 4 : 5);
    w_value_done(w);
}

void
mrd_json_w_null(mrd_json_w *w)
{
    w_sep(w);
    w_put(w, "null", 4);
    w_value_done(w);
}

int
mrd_json_w_error(const mrd_json_w *w)
{
    if (w->err)
        return w->err;
    return w->depth == 0 ? 0 : MRD_EINVAL;
}

/* ------------------------------------------------------------------ reader */

typedef struct jr {
    const char *p, *end, *start;
    int depth;
} jr;

static void
skip_ws(jr *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
        r->p++;
}

static int
hex4(const char *p, unsigned *out)
{
    unsigned v = 0;

    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static void
put_utf8(mrd_buf *b, unsigned cp)
{
    char u[4];
    size_t n;

    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xc0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xe0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        u[0] = (char)(0xf0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[3] = (char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    mrd_buf_append(b, u, n);
}

/* Parses a string at r->p (which points at '"'); the result is malloc'd. */
static int
parse_string(jr *r, char **out, size_t *outlen)
{
    mrd_buf b = {0};

    r->p++;
    mrd_buf_reserve(&b, 16);
    while (r->p < r->end && *r->p != '"') {
        unsigned char c = (unsigned char)*r->p;
        if (c < 0x20)
            goto fail;
        if (c != '\\') {
            const char *run = r->p;
            while (r->p < r->end && *r->p != '"' && *r->p != '\\' && (unsigned char)*r->p >= 0x20)
                r->p++;
            mrd_buf_append(&b, run, (size_t)(r->p - run));
            continue;
        }
        if (++r->p >= r->end)
            goto fail;
        switch (*r->p) {
        case '"':
            mrd_buf_append(&b, "\"", 1);
            break;
        case '\\':
            mrd_buf_append(&b, "\\", 1);
            break;
        case '/':
            mrd_buf_append(&b, "/", 1);
            break;
        case 'b':
            mrd_buf_append(&b, "\b", 1);
            break;
        case 'f':
            mrd_buf_append(&b, "\f", 1);
            break;
        case 'n':
            mrd_buf_append(&b, "\n", 1);
            break;
        case 'r':
            mrd_buf_append(&b, "\r", 1);
            break;
        case 't':
            mrd_buf_append(&b, "\t", 1);
            break;
        case 'u': {
            unsigned cp, lo;
            if (r->end - r->p < 5 || hex4(r->p + 1, &cp) != 0)
                goto fail;
            r->p += 4;
            if (cp >= 0xdc00 && cp <= 0xdfff)
                goto fail;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                if (r->end - r->p < 7 || r->p[1] != '\\' || r->p[2] != 'u' ||
                    hex4(r->p + 3, &lo) != 0 || lo < 0xdc00 || lo > 0xdfff)
                    goto fail;
                r->p += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            put_utf8(&b, cp);
            break;
        }
        default:
            goto fail;
        }
        r->p++;
    }
    if (r->p >= r->end || !b.data)
        goto fail;
    r->p++;
    *out = b.data;
    *outlen = b.len;
    return 0;
fail:
    mrd_buf_free(&b);
    return MRD_EINVAL;
}

static int
parse_number(jr *r, double *out)
{
    const char *s = r->p;
    char tmp[64];

    if (r->p < r->end && *r->p == '-')
        r->p++;
    if (r->p >= r->end)
        return MRD_EINVAL;
    if (*r->p == '0') {
        r->p++;
    } else if (*r->p >= '1' && *r->p <= '9') {
        while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
            r->p++;
    } else {
        return MRD_EINVAL;
    }
    if (r->p < r->end && *r->p == '.') {
        r->p++;
        if (r->p >= r->end || *r->p < '0' || *r->p > '9')
            return MRD_EINVAL;
        while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
            r->p++;
    }
    if (r->p < r->end && (*r->p == 'e' || *r->p == 'E')) {
        r->p++;
        if (r->p < r->end && (*r->p == '+' || *r->p == '-'))
            r->p++;
        if (r->p >= r->end || *r->p < '0' || *r->p > '9')
            return MRD_EINVAL;
        while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
            r->p++;
    }
    if ((size_t)(r->p - s) >= sizeof(tmp))
        return MRD_EINVAL;
    memcpy(tmp, s, (size_t)(r->p - s));
    tmp[r->p - s] = '\0';
    *out = strtod(tmp, NULL);
    return 0;
}

static int
literal(jr *r, const char *word)
{
    size_t n = strlen(word);

    if ((size_t)(r->end - r->p) < n || memcmp(r->p, word, n) != 0)
        return MRD_EINVAL;
    r->p += n;
    return 0;
}

static int parse_value(jr *r, mrd_json *v);

static int
parse_container(jr *r, mrd_json *v, int is_obj)
{
    mrd_json **tail = &v->child;
    char close = is_obj ? '}' : ']';

    if (++r->depth > MRD_JSON_MAX_DEPTH)
        return MRD_EINVAL;
    r->p++;
    skip_ws(r);
    if (r->p < r->end && *r->p == close) {
        r->p++;
        r->depth--;
        return 0;
    }
    for (;;) {
        mrd_json *c = calloc(1, sizeof(*c));
        if (!c)
            return -ENOMEM;
        *tail = c;
        tail = &c->next;
        skip_ws(r);
        if (is_obj) {
            size_t klen;
            if (r->p >= r->end || *r->p != '"' || parse_string(r, &c->key, &klen) != 0)
                return MRD_EINVAL;
            skip_ws(r);
            if (r->p >= r->end || *r->p != ':')
                return MRD_EINVAL;
            r->p++;
        }
        if (parse_value(r, c) != 0)
            return MRD_EINVAL;
        skip_ws(r);
        if (r->p < r->end && *r->p == ',') {
            r->p++;
            continue;
        }
        if (r->p < r->end && *r->p == close) {
            r->p++;
            r->depth--;
            return 0;
        }
        return MRD_EINVAL;
    }
}

static int
parse_value(jr *r, mrd_json *v)
{
    skip_ws(r);
    if (r->p >= r->end)
        return MRD_EINVAL;
    switch (*r->p) {
    case '{':
        v->type = MRD_JSON_OBJECT;
        return parse_container(r, v, 1);
    case '[':
        v->type = MRD_JSON_ARRAY;
        return parse_container(r, v, 0);
    case '"':
        v->type = MRD_JSON_STRING;
        return parse_string(r, &v->str, &v->str_len);
    case 't':
        v->type = MRD_JSON_BOOL;
        v->num = 1;
        return literal(r, "true");
    case 'f':
        v->type = MRD_JSON_BOOL;
        return literal(r, "false");
    case 'n':
        v->type = MRD_JSON_NULL;
        return literal(r, "null");
    default:
        v->type = MRD_JSON_NUMBER;
        return parse_number(r, &v->num);
    }
}

int
mrd_json_parse(const char *text, size_t len, mrd_json **out, size_t *errpos)
{
    jr r = {text, text + len, text, 0};
    mrd_json *root = calloc(1, sizeof(*root));
    int rc;

    if (!root)
        return -ENOMEM;
    rc = parse_value(&r, root);
    if (rc == 0) {
        skip_ws(&r);
        if (r.p != r.end)
            rc = MRD_EINVAL;
    }
    if (rc != 0) {
        if (errpos)
            *errpos = (size_t)(r.p - r.start);
        mrd_json_free(root);
        return rc == -ENOMEM ? rc : MRD_EINVAL;
    }
    *out = root;
    return 0;
}

void
mrd_json_free(mrd_json *j)
{
    while (j) {
        mrd_json *next = j->next;
        mrd_json_free(j->child);
        free(j->key);
        free(j->str);
        free(j);
        j = next;
    }
}

const mrd_json *
mrd_json_get(const mrd_json *j, const char *key)
{
    if (!j || j->type != MRD_JSON_OBJECT)
        return NULL;
    for (const mrd_json *c = j->child; c; c = c->next)
        if (c->key && strcmp(c->key, key) == 0)
            return c;
    return NULL;
}

const char *
mrd_json_get_str(const mrd_json *j, const char *key, const char *dflt)
{
    const mrd_json *v = mrd_json_get(j, key);

    return v && v->type == MRD_JSON_STRING ? v->str : dflt;
}

double
mrd_json_get_num(const mrd_json *j, const char *key, double dflt)
{
    const mrd_json *v = mrd_json_get(j, key);

    return v && (v->type == MRD_JSON_NUMBER || v->type == MRD_JSON_BOOL) ? v->num : dflt;
}
