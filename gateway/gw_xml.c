/*
 * gw_xml.c - S3 error documents, request ids and the little XML writing the
 * S3 API needs.
 *
 * S3 answers are small XML documents written straight into an mrd_buf: no
 * DOM, no library, just escaping. Every text node goes through
 * gw_xml_escape, which escapes the five XML specials and writes control
 * bytes as character references, so a key with '<' or a newline cannot
 * break a listing.
 *
 * Requests. gw_xml_parse_complete reads a CompleteMultipartUpload body with
 * a small bounded scanner (see its comment); it is fuzzed.
 *
 * Errors. One table maps each error this gateway can answer to AWS's code,
 * HTTP status and default message, so the same failure always reads the
 * same way to clients (boto3 and awscli switch on the Code). An error body
 * carries Code, Message, Resource and RequestId; the request id is also in
 * the x-amz-request-id header of every response, success or not, so a
 * client's report can be matched with the daemon's log line.
 */
#include "gw_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const struct {
    const char *code;
    int status;
    const char *msg;
} errs[GW_S3E__COUNT] = {
    [GW_S3E_ACCESS_DENIED] = {"AccessDenied", 403, "Access Denied"},
    [GW_S3E_SIGNATURE_DOES_NOT_MATCH] = {"SignatureDoesNotMatch", 403,
                                         "The request signature we calculated does not match the "
                                         "signature you provided. Check your key and signing "
                                         "method."},
    [GW_S3E_INVALID_ACCESS_KEY_ID] = {"InvalidAccessKeyId", 403,
                                      "The AWS Access Key Id you provided does not exist in our "
                                      "records."},
    [GW_S3E_REQUEST_TIME_TOO_SKEWED] = {"RequestTimeTooSkewed", 403,
                                        "The difference between the request time and the server's "
                                        "time is too large."},
    [GW_S3E_AUTH_HEADER_MALFORMED] = {"AuthorizationHeaderMalformed", 400,
                                      "The authorization header is malformed."},
    [GW_S3E_INVALID_REQUEST] = {"InvalidRequest", 400, "Invalid request."},
    [GW_S3E_INVALID_ARGUMENT] = {"InvalidArgument", 400, "Invalid argument."},
    [GW_S3E_EXPIRED] = {"AccessDenied", 403, "Request has expired"},
    [GW_S3E_SHA256_MISMATCH] = {"XAmzContentSHA256Mismatch", 400,
                                "The provided 'x-amz-content-sha256' header does not match what "
                                "was computed."},
    [GW_S3E_NO_SUCH_BUCKET] = {"NoSuchBucket", 404, "The specified bucket does not exist"},
    [GW_S3E_NO_SUCH_KEY] = {"NoSuchKey", 404, "The specified key does not exist."},
    [GW_S3E_BUCKET_NOT_EMPTY] = {"BucketNotEmpty", 409,
                                 "The bucket you tried to delete is not empty"},
    [GW_S3E_BUCKET_ALREADY_OWNED] = {"BucketAlreadyOwnedByYou", 409,
                                     "Your previous request to create the named bucket "
                                     "succeeded and you already own it."},
    [GW_S3E_INVALID_BUCKET_NAME] = {"InvalidBucketName", 400,
                                    "The specified bucket is not valid: use 3 to 63 lower-case "
                                    "letters, digits, '.' and '-', starting and ending with a "
                                    "letter or digit."},
    [GW_S3E_KEY_TOO_LONG] = {"KeyTooLongError", 400, "Your key is too long"},
    [GW_S3E_BAD_DIGEST] = {"BadDigest", 400,
                           "The Content-MD5 you specified did not match what we received."},
    [GW_S3E_INVALID_DIGEST] = {"InvalidDigest", 400, "The Content-MD5 you specified is not valid."},
    [GW_S3E_INVALID_RANGE] = {"InvalidRange", 416, "The requested range is not satisfiable"},
    [GW_S3E_MISSING_CONTENT_LENGTH] = {"MissingContentLength", 411,
                                       "You must provide the Content-Length HTTP header."},
    [GW_S3E_ENTITY_TOO_LARGE] = {"EntityTooLarge", 400,
                                 "Your proposed upload exceeds the maximum allowed object size "
                                 "(5 GiB for a single PUT; use multipart upload)."},
    [GW_S3E_METHOD_NOT_ALLOWED] = {"MethodNotAllowed", 405,
                                   "The specified method is not allowed against this resource."},
    [GW_S3E_NOT_IMPLEMENTED] = {"NotImplemented", 501,
                                "A header or query you provided implies functionality that is "
                                "not implemented in this build of meridiand."},
    [GW_S3E_INTERNAL] = {"InternalError", 500,
                         "We encountered an internal error. Please try again."},
    [GW_S3E_SERVICE_UNAVAILABLE] = {"ServiceUnavailable", 503,
                                    "The site cannot take this request now (too few drives "
                                    "online, or its log is read-only after a disk failure)."},
    [GW_S3E_SLOW_DOWN] = {"SlowDown", 503, "Please reduce your request rate."},
    [GW_S3E_INCOMPLETE_BODY] = {"IncompleteBody", 400,
                                "You did not provide the number of bytes specified by the "
                                "Content-Length HTTP header."},
    [GW_S3E_PRECONDITION_FAILED] = {"PreconditionFailed", 412,
                                    "At least one of the pre-conditions you specified did not "
                                    "hold"},
    [GW_S3E_MALFORMED_XML] = {"MalformedXML", 400,
                              "The XML you provided was not well-formed or did not validate "
                              "against our published schema."},
    [GW_S3E_NO_SUCH_UPLOAD] = {"NoSuchUpload", 404,
                               "The specified multipart upload does not exist. The upload ID "
                               "may be invalid, or the upload may have been aborted or "
                               "completed."},
    [GW_S3E_INVALID_PART] = {"InvalidPart", 400,
                             "One or more of the specified parts could not be found. The part "
                             "may not have been uploaded, or the specified entity tag may not "
                             "match the part's entity tag."},
    [GW_S3E_INVALID_PART_ORDER] = {"InvalidPartOrder", 400,
                                   "The list of parts was not in ascending order. Parts must be "
                                   "ordered by part number."},
    [GW_S3E_ENTITY_TOO_SMALL] = {"EntityTooSmall", 400,
                                 "Your proposed upload is smaller than the minimum allowed size: "
                                 "every part but the last must be at least 5 MiB."},
    [GW_S3E_OPERATION_ABORTED] = {"OperationAborted", 409,
                                  "A conflicting operation is currently in progress against this "
                                  "resource (a CompleteMultipartUpload of this upload). Please "
                                  "try again."},
};

const char *
gw_s3_err_code(gw_s3_err e)
{
    return (unsigned)e < GW_S3E__COUNT ? errs[e].code : "InternalError";
}

int
gw_s3_err_status(gw_s3_err e)
{
    return (unsigned)e < GW_S3E__COUNT ? errs[e].status : 500;
}

gw_s3_err
gw_s3_err_from_rc(int rc)
{
    switch (rc) {
    case MRD_ETOOBIG:
        return GW_S3E_KEY_TOO_LONG;
    case MRD_EDEGRADED:
    case MRD_EDURABLE:
    case MRD_ESHUTDOWN:
        return GW_S3E_SERVICE_UNAVAILABLE;
    case MRD_EBUSY:
        return GW_S3E_SLOW_DOWN;
    case -ENOSPC:
        return GW_S3E_SERVICE_UNAVAILABLE;
    default:
        return GW_S3E_INTERNAL;
    }
}

int
gw_xml_escape(mrd_buf *b, const char *s)
{
    int rc = 0;
    const char *run = s;

    for (; *s && rc == 0; s++) {
        unsigned char ch = (unsigned char)*s;
        const char *rep = NULL;
        char num[12];
        switch (ch) {
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '"':
            rep = "&quot;";
            break;
        case '\'':
            rep = "&apos;";
            break;
        default:
            if (ch < 0x20 || ch == 0x7f) {
                snprintf(num, sizeof(num), "&#x%X;", ch);
                rep = num;
            }
        }
        if (rep) {
            rc = mrd_buf_append(b, run, (size_t)(s - run));
            if (rc == 0)
                rc = mrd_buf_append(b, rep, strlen(rep));
            run = s + 1;
        }
    }
    if (rc == 0)
        rc = mrd_buf_append(b, run, strlen(run));
    return rc;
}

int
gw_xml_elem(mrd_buf *b, const char *tag, const char *value)
{
    int rc = mrd_buf_appendf(b, "<%s>", tag);

    if (rc == 0)
        rc = gw_xml_escape(b, value);
    if (rc == 0)
        rc = mrd_buf_appendf(b, "</%s>", tag);
    return rc;
}

static void
request_id(const gw_req *r, char out[24])
{
    snprintf(out, 24, "%016llX", (unsigned long long)gw_req_id(r) ^ 0x4d52440000000000ull);
}

void
gw_s3_request_id(gw_req *r)
{
    char id[24];

    request_id(r, id);
    gw_resp_header(r, "x-amz-request-id", id);
    gw_resp_header(r, "x-amz-id-2", id);
}

void
gw_s3_error(gw_req *r, gw_s3_err e, const char *resource, const char *msg)
{
    mrd_buf b = {0};
    char id[24];

    request_id(r, id);
    mrd_buf_appendf(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>");
    gw_xml_elem(&b, "Code", gw_s3_err_code(e));
    gw_xml_elem(&b, "Message", msg ? msg : errs[e].msg);
    if (resource)
        gw_xml_elem(&b, "Resource", resource);
    gw_xml_elem(&b, "RequestId", id);
    mrd_buf_appendf(&b, "</Error>\n");
    gw_s3_request_id(r);
    if (strcmp(gw_req_method(r), "HEAD") == 0)
        gw_resp_simple(r, gw_s3_err_status(e), NULL, NULL, 0);
    else
        gw_resp_simple(r, gw_s3_err_status(e), "application/xml", b.data ? b.data : "",
                       b.data ? b.len : 0);
    mrd_buf_free(&b);
}

void
gw__http_time(uint64_t ms, char *out, size_t outsz)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(out, outsz, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

void
gw__iso_time(uint64_t ms, char *out, size_t outsz)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    char base[32];

    gmtime_r(&t, &tm);
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, outsz, "%s.%03uZ", base, (unsigned)(ms % 1000));
}

/* ---- CompleteMultipartUpload request bodies ------------------------------ */

/*
 * A small pull scanner, enough for the request bodies S3 defines: elements,
 * attributes (skipped), text, the five predefined entities and numeric
 * character references, comments and the XML declaration. A DOCTYPE is
 * refused outright, so no entity can be declared or expanded (no billion
 * laughs). Names are compared without their namespace prefix. Depth is
 * bounded; every byte is looked at a bounded number of times.
 */

#define XML_DEPTH 8

typedef struct xml_scan {
    const char *p, *end;
    char stack[XML_DEPTH][32]; /* open element local names (truncated) */
    int depth;
} xml_scan;

static int
starts(const xml_scan *x, const char *lit)
{
    size_t n = strlen(lit);

    return (size_t)(x->end - x->p) >= n && memcmp(x->p, lit, n) == 0;
}

/* Skips past the next occurrence of lit; MRD_EINVAL if there is none. */
static int
skip_past(xml_scan *x, const char *lit)
{
    size_t n = strlen(lit);

    for (; (size_t)(x->end - x->p) >= n; x->p++) {
        if (memcmp(x->p, lit, n) == 0) {
            x->p += n;
            return 0;
        }
    }
    return MRD_EINVAL;
}

static int
name_char(unsigned char c)
{
    return c > 0x7f || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-' || c == '.' || c == ':';
}

/* Reads a name at x->p into out (local part, truncated to outsz-1). */
static int
read_name(xml_scan *x, char *out, size_t outsz)
{
    const char *s = x->p, *local;
    size_t n;

    while (x->p < x->end && name_char((unsigned char)*x->p))
        x->p++;
    if (x->p == s)
        return MRD_EINVAL;
    local = s;
    for (const char *c = s; c < x->p; c++)
        if (*c == ':')
            local = c + 1;
    n = (size_t)(x->p - local);
    if (n >= outsz)
        n = outsz - 1;
    memcpy(out, local, n);
    out[n] = '\0';
    return 0;
}

/* Appends text s[0..n) to out, decoding entities. */
static int
append_text(mrd_buf *out, const char *s, size_t n)
{
    static const struct {
        const char *ent;
        char c;
    } ents[] = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
    size_t i = 0;

    while (i < n) {
        char c = s[i];
        size_t used = 1;
        if (c == '&') {
            size_t k;
            used = 0;
            for (k = 0; k < sizeof(ents) / sizeof(ents[0]) && !used; k++) {
                size_t el = strlen(ents[k].ent);
                if (n - i >= el && memcmp(s + i, ents[k].ent, el) == 0) {
                    c = ents[k].c;
                    used = el;
                }
            }
            if (!used && n - i >= 4 && s[i + 1] == '#') {
                unsigned long v = 0;
                size_t j = i + 2;
                int hex = s[j] == 'x';
                if (hex)
                    j++;
                for (; j < n && j < i + 12 && s[j] != ';'; j++) {
                    int d = s[j] >= '0' && s[j] <= '9' ? s[j] - '0'
                            : hex && (s[j] | 32) >= 'a' && (s[j] | 32) <= 'f'
                                ? (s[j] | 32) - 'a' + 10
                                : -1;
                    if (d < 0)
                        return MRD_EINVAL;
                    v = v * (hex ? 16 : 10) + (unsigned long)d;
                }
                if (j >= n || s[j] != ';' || v == 0 || v > 0x7f)
                    return MRD_EINVAL; /* only ASCII makes sense in these bodies */
                c = (char)v;
                used = j + 1 - i;
            }
            if (!used)
                return MRD_EINVAL;
        }
        if (mrd_buf_append(out, &c, 1) != 0)
            return -ENOMEM;
        i += used;
    }
    return 0;
}

/* The path of open elements is root/Part/<leaf>? */
static int
in_part_field(const xml_scan *x, const char *leaf)
{
    return x->depth == 3 && strcmp(x->stack[0], "CompleteMultipartUpload") == 0 &&
           strcmp(x->stack[1], "Part") == 0 && strcmp(x->stack[2], leaf) == 0;
}

typedef struct part_acc {
    gw_complete_part *parts;
    size_t n, cap;
    mrd_buf num, etag;
    int has_num, has_etag;
} part_acc;

/* A </Part> closed: validates and appends the part. */
static int
part_close(part_acc *a)
{
    char *end;
    unsigned long v;
    const char *e;
    size_t el;
    gw_complete_part *p;

    if (!a->has_num || !a->has_etag || !a->num.data)
        return MRD_EINVAL;
    errno = 0;
    v = strtoul(a->num.data, &end, 10);
    if (a->num.len == 0 || *end || errno || a->num.data[0] < '0' || a->num.data[0] > '9' || v < 1 ||
        v > GW_MPU_MAX_PARTS)
        return MRD_EINVAL;
    if (a->n == GW_MPU_MAX_PARTS)
        return MRD_ETOOBIG;
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 16;
        gw_complete_part *np = realloc(a->parts, cap * sizeof(*np));
        if (!np)
            return -ENOMEM;
        a->parts = np;
        a->cap = cap;
    }
    p = &a->parts[a->n++];
    memset(p, 0, sizeof(*p));
    p->number = (uint32_t)v;
    e = a->etag.data ? a->etag.data : "";
    el = a->etag.len;
    while (el && (*e == ' ' || *e == '\t' || *e == '\n' || *e == '\r')) {
        e++;
        el--;
    }
    while (el && (e[el - 1] == ' ' || e[el - 1] == '\t' || e[el - 1] == '\n' || e[el - 1] == '\r'))
        el--;
    if (el >= 2 && e[0] == '"' && e[el - 1] == '"') {
        e++;
        el -= 2;
    }
    if (el < sizeof(p->etag)) {
        memcpy(p->etag, e, el);
        p->etag[el] = '\0';
    } /* else left empty: matches no part (InvalidPart) */
    mrd_buf_reset(&a->num);
    mrd_buf_reset(&a->etag);
    a->has_num = a->has_etag = 0;
    return 0;
}

int
gw_xml_parse_complete(const char *body, size_t len, gw_complete_part **parts, size_t *n)
{
    xml_scan x = {.p = body, .end = body + len};
    part_acc a;
    int rc = 0, seen_root = 0;

    memset(&a, 0, sizeof(a));
    if (!body || !parts || !n)
        return MRD_EINVAL;
    while (rc == 0 && x.p < x.end) {
        if (*x.p != '<') {
            const char *t = x.p;
            while (x.p < x.end && *x.p != '<')
                x.p++;
            if (in_part_field(&x, "PartNumber"))
                rc = append_text(&a.num, t, (size_t)(x.p - t));
            else if (in_part_field(&x, "ETag"))
                rc = append_text(&a.etag, t, (size_t)(x.p - t));
            else
                for (const char *c = t; c < x.p && rc == 0; c++)
                    if (x.depth == 0 && !(*c == ' ' || *c == '\t' || *c == '\r' || *c == '\n'))
                        rc = MRD_EINVAL; /* text outside the root */
            continue;
        }
        if (starts(&x, "<?")) {
            rc = skip_past(&x, "?>");
        } else if (starts(&x, "<!--")) {
            x.p += 4;
            rc = skip_past(&x, "-->");
        } else if (starts(&x, "<![CDATA[")) {
            const char *t = x.p + 9;
            x.p = t;
            if ((rc = skip_past(&x, "]]>")) == 0) {
                size_t tl = (size_t)(x.p - 3 - t);
                if (in_part_field(&x, "PartNumber"))
                    rc = mrd_buf_append(&a.num, t, tl);
                else if (in_part_field(&x, "ETag"))
                    rc = mrd_buf_append(&a.etag, t, tl);
            }
        } else if (starts(&x, "<!")) {
            rc = MRD_EINVAL; /* DOCTYPE and friends: never */
        } else if (starts(&x, "</")) {
            char name[32];
            x.p += 2;
            if ((rc = read_name(&x, name, sizeof(name))) != 0)
                break;
            while (x.p < x.end && (*x.p == ' ' || *x.p == '\t' || *x.p == '\r' || *x.p == '\n'))
                x.p++;
            if (x.p == x.end || *x.p != '>' || x.depth == 0 ||
                strcmp(name, x.stack[x.depth - 1]) != 0) {
                rc = MRD_EINVAL;
                break;
            }
            x.p++;
            if (x.depth == 2 && strcmp(name, "Part") == 0 &&
                strcmp(x.stack[0], "CompleteMultipartUpload") == 0)
                rc = part_close(&a);
            x.depth--;
        } else {
            char name[32];
            int empty = 0;
            char q = 0;
            x.p++;
            if ((rc = read_name(&x, name, sizeof(name))) != 0)
                break;
            /* attributes: skipped, quote-aware */
            while (x.p < x.end &&
                   (q || (*x.p != '>' && !(*x.p == '/' && x.p + 1 < x.end && x.p[1] == '>')))) {
                if (q && *x.p == q)
                    q = 0;
                else if (!q && (*x.p == '"' || *x.p == '\''))
                    q = *x.p;
                else if (!q && *x.p == '<')
                    break;
                x.p++;
            }
            if (x.p == x.end || *x.p == '<') {
                rc = MRD_EINVAL;
                break;
            }
            if (*x.p == '/') {
                empty = 1;
                x.p++;
            }
            x.p++;
            if (x.depth == XML_DEPTH || (x.depth == 0 && seen_root)) {
                rc = MRD_EINVAL;
                break;
            }
            if (x.depth == 0) {
                seen_root = 1;
                if (strcmp(name, "CompleteMultipartUpload") != 0) {
                    rc = MRD_EINVAL;
                    break;
                }
            }
            snprintf(x.stack[x.depth++], sizeof(x.stack[0]), "%s", name);
            if (in_part_field(&x, "PartNumber"))
                a.has_num = 1;
            if (in_part_field(&x, "ETag"))
                a.has_etag = 1;
            if (empty) {
                if (x.depth == 2 && strcmp(name, "Part") == 0)
                    rc = part_close(&a); /* <Part/>: no number: malformed */
                x.depth--;
            }
        }
    }
    if (rc == 0 && (x.depth != 0 || !seen_root || a.n == 0))
        rc = MRD_EINVAL;
    mrd_buf_free(&a.num);
    mrd_buf_free(&a.etag);
    if (rc != 0) {
        free(a.parts);
        return rc;
    }
    *parts = a.parts;
    *n = a.n;
    return 0;
}
