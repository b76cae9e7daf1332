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
    [GW_S3E_INVALID_TAG] = {"InvalidTag", 400,
                            "The tag set is not valid: at most 10 tags, keys of 1 to 128 "
                            "bytes, values of at most 256 bytes, each key once."},
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
    [GW_S3E_INVALID_PART_NUMBER] = {"InvalidPartNumber", 416,
                                    "The requested partnumber is not satisfiable"},
    [GW_S3E_OPERATION_ABORTED] = {"OperationAborted", 409,
                                  "A conflicting operation is currently in progress against this "
                                  "resource (a CompleteMultipartUpload of this upload). Please "
                                  "try again."},
    [GW_S3E_NO_SUCH_VERSION] = {"NoSuchVersion", 404,
                                "The version ID specified in the request does not match an "
                                "existing version."},
    [GW_S3E_NO_SUCH_TAG_SET] = {"NoSuchTagSet", 404, "The TagSet does not exist"},
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
request_id_of(uint64_t id, char out[24])
{
    snprintf(out, 24, "%016llX", (unsigned long long)id ^ 0x4d52440000000000ull);
}

static void
request_id(const gw_req *r, char out[24])
{
    request_id_of(gw_req_id(r), out);
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

const char *
gw_s3_http_error(void *ud, uint64_t req_id, int status, const char *why, mrd_buf *hdrs,
                 mrd_buf *body)
{
    const char *code = "InvalidRequest", *msg = "The request is not valid HTTP/1.1.";
    char id[24];

    (void)ud;
    (void)why;
    if (status == 431) {
        code = "RequestHeaderSectionTooLarge";
        msg = "Your request header section exceeds the maximum allowed size (128 headers, "
              "32 KiB).";
    } else if (status == 414) {
        code = "InvalidURI";
        msg = "The request target is longer than the maximum allowed (8 KiB).";
    } else if (status == 408) {
        code = "RequestTimeout";
        msg = "Your socket connection to the server was not read from or written to within "
              "the timeout period.";
    }
    request_id_of(req_id, id);
    mrd_buf_appendf(hdrs, "x-amz-request-id: %s\r\nx-amz-id-2: %s\r\n", id, id);
    mrd_buf_appendf(body, GW_XML_HDR "<Error>");
    gw_xml_elem(body, "Code", code);
    gw_xml_elem(body, "Message", msg);
    gw_xml_elem(body, "RequestId", id);
    mrd_buf_appendf(body, "</Error>\n");
    return "application/xml";
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
