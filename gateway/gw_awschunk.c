/*
 * gw_awschunk.c - the aws-chunked body decoder: streaming uploads signed per
 * chunk (x-amz-content-sha256: STREAMING-AWS4-HMAC-SHA256-PAYLOAD), the same
 * with a signed trailing checksum (STREAMING-AWS4-HMAC-SHA256-PAYLOAD-
 * TRAILER) and the unsigned variant with a trailing checksum
 * (STREAMING-UNSIGNED-PAYLOAD-TRAILER), verified as the bytes arrive.
 *
 * The encoding (inside the HTTP body, under any Transfer-Encoding):
 *
 *   chunk    = hex-size [";chunk-signature=" 64 lower-hex] CRLF data CRLF
 *   body     = *chunk  last-chunk  *trailer  CRLF
 *   last     = "0" [";chunk-signature=" sig] CRLF
 *   trailer  = name ":" value CRLF      (only with STREAMING-...-TRAILER)
 *
 * Signed chunks. Each chunk's signature is the SigV4 HMAC (the request's
 * signing key) of
 *   "AWS4-HMAC-SHA256-PAYLOAD" \n amz-date \n scope \n previous-signature \n
 *   hex(SHA256("")) \n hex(SHA256(chunk data))
 * where the first "previous signature" is the Authorization header's (the
 * seed). The chain makes chunks impossible to drop, reorder or splice in from
 * another upload. The decoder hashes each chunk's data as it passes and checks
 * the signature at the chunk's end, so it never holds a chunk: data is handed
 * on (emit) before its chunk is verified. That is safe because nothing the
 * caller writes becomes visible before the whole body is verified: the PUT
 * handler only commits (WAL record) after gw_awschunk_finish succeeded, and
 * aborts the store writer on any error.
 *
 * Trailers. With the trailer variants the client names one trailing header
 * in x-amz-trailer (x-amz-checksum-crc32, -crc32c, -crc64nvme, -sha1 or
 * -sha256) and sends it, base64, after the last chunk; the decoder computes
 * the same checksum over the decoded bytes and compares (BadDigest). Other
 * names are accepted without verification.
 *
 * Signed trailers (STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER): the chunks
 * are signed as above, and the trailer lines are followed by
 *   x-amz-trailer-signature: HMAC(signing key,
 *       "AWS4-HMAC-SHA256-TRAILER" \n amz-date \n scope \n
 *       signature of the last (empty) chunk \n
 *       hex(SHA256(each trailer as "name:value\n")))
 * where name is lower-cased and value trimmed, in the order sent. It chains
 * on the last chunk, so the trailer cannot be cut off or moved to another
 * upload; a missing, malformed or wrong one is SignatureDoesNotMatch, and so
 * is a trailer line after it. Some writers end the empty last chunk with a
 * CRLF before the trailers (AWS's worked example does): one blank line is
 * skipped there. The closing blank line after a verified signature is
 * optional.
 *
 * Bounds: a chunk header or trailer line longer than GW_AWSCHUNK_MAX_LINE, a
 * size over 16 hex digits or past the declared decoded length, more than
 * GW_AWSCHUNK_MAX_TRAILERS trailer lines, and bytes after the end are errors;
 * memory is one line buffer and the hash states, whatever the body. Every
 * error is final: later feeds fail the same way. Fuzzed by
 * tests/fuzz/fuzz_awschunk.c.
 */
#include "gw_int.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <isa-l.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

enum { C_SIZE, C_DATA, C_DATA_CR, C_DATA_LF, C_TRAILER, C_DONE, C_FAILED };
enum { CK_NONE, CK_CRC32, CK_CRC32C, CK_CRC64NVME, CK_SHA1, CK_SHA256, CK_UNVERIFIED };

struct gw_awschunk {
    int mode;
    int state;
    unsigned char key[32];
    char amz_date[17];
    char scope[160];
    char prev_sig[65];
    char chunk_sig[65]; /* the signature the current chunk claims */
    int64_t decoded_length;
    uint64_t total;   /* decoded bytes so far */
    uint64_t left;    /* bytes of the current chunk still to come */
    EVP_MD_CTX *sha;  /* current chunk (signed mode) */
    int ck;           /* trailing checksum algorithm */
    char ck_name[64]; /* its header name, lower case */
    uint64_t crc;     /* CRC32, CRC32C (low 32 bits) or CRC64NVME so far */
    EVP_MD_CTX *ckmd; /* SHA-1/SHA-256 trailing checksum */
    int ck_seen;
    int n_trailers;
    int blank_skipped;  /* the optional CRLF after the empty last chunk */
    int trailer_signed; /* x-amz-trailer-signature verified */
    size_t line_len;
    char line[GW_AWSCHUNK_MAX_LINE];
    int err; /* gw_s3_err + 1 once failed */
    const char *why;
};

static void
hex32(const unsigned char in[32], char out[65])
{
    static const char hex[] = "0123456789abcdef";

    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 15];
    }
    out[64] = '\0';
}

/* HMAC(key, algo \n amz_date \n scope \n prev_sig \n [mid \n] hex(sha)) in
 * hex: the chained signature of a chunk (mid = SHA-256 of "") or of the
 * trailer (mid = NULL). */
static void
chain_sign(const unsigned char key[32], const char *algo, const char *amz_date, const char *scope,
           const char *prev_sig, const char *mid, const unsigned char sha[32], char out[65])
{
    char sts[640], sh[65];
    unsigned char mac[32];
    unsigned int n = 32;
    int len;

    hex32(sha, sh);
    len = snprintf(sts, sizeof(sts), "%s\n%s\n%s\n%s\n%s%s%s", algo, amz_date, scope, prev_sig,
                   mid ? mid : "", mid ? "\n" : "", sh);
    if (len < 0 || (size_t)len >= sizeof(sts))
        len = (int)sizeof(sts) - 1; /* scope is bounded by the parser: cannot happen */
    HMAC(EVP_sha256(), key, 32, (const unsigned char *)sts, (size_t)len, mac, &n);
    hex32(mac, out);
}

void
gw_awschunk_sign(const unsigned char key[32], const char *amz_date, const char *scope,
                 const char *prev_sig, const unsigned char data_sha[32], char out[65])
{
    chain_sign(key, "AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, prev_sig, GW_SHA256_EMPTY,
               data_sha, out);
}

void
gw_awschunk_sign_trailer(const unsigned char key[32], const char *amz_date, const char *scope,
                         const char *prev_sig, const unsigned char trailer_sha[32], char out[65])
{
    chain_sign(key, "AWS4-HMAC-SHA256-TRAILER", amz_date, scope, prev_sig, NULL, trailer_sha, out);
}

/* CRC-64/NVME (AWS's CRC64NVME: polynomial 0xAD93D23594C93659, reflected,
 * initial value and final XOR all ones; check value of "123456789" is
 * 0xAE8B14860A799888), a byte at a time from a table built once. ISA-L 2.30
 * has no such CRC; this only runs for clients that ask for it. */
#define CRC64NVME_POLY_REFL 0x9a6c9329ac4bc9b5ull

static uint64_t crc64nvme_table[256];
static pthread_once_t crc64nvme_once = PTHREAD_ONCE_INIT;

static void
crc64nvme_init(void)
{
    for (unsigned i = 0; i < 256; i++) {
        uint64_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ ((c & 1) ? CRC64NVME_POLY_REFL : 0);
        crc64nvme_table[i] = c;
    }
}

/* Continues crc (0 to start) over n bytes, like ISA-L's crc functions. */
static uint64_t
crc64nvme(uint64_t crc, const unsigned char *p, size_t n)
{
    crc = ~crc;
    for (size_t i = 0; i < n; i++)
        crc = crc64nvme_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

uint64_t
gw_crc64nvme(uint64_t crc, const void *data, size_t n)
{
    pthread_once(&crc64nvme_once, crc64nvme_init);
    return crc64nvme(crc, data, n);
}

static int
checksum_kind(const char *name)
{
    if (!name)
        return CK_NONE;
    if (strcasecmp(name, "x-amz-checksum-crc32") == 0)
        return CK_CRC32;
    if (strcasecmp(name, "x-amz-checksum-crc32c") == 0)
        return CK_CRC32C;
    if (strcasecmp(name, "x-amz-checksum-crc64nvme") == 0)
        return CK_CRC64NVME;
    if (strcasecmp(name, "x-amz-checksum-sha1") == 0)
        return CK_SHA1;
    if (strcasecmp(name, "x-amz-checksum-sha256") == 0)
        return CK_SHA256;
    return CK_UNVERIFIED;
}

int
gw_awschunk_new(const gw_awschunk_opts *o, gw_awschunk **out)
{
    gw_awschunk *c = calloc(1, sizeof(*c));
    int rc = 0;

    if (!c)
        return -12; /* -ENOMEM */
    c->mode = o->mode;
    c->decoded_length = o->decoded_length;
    if (o->mode == GW_AWSCHUNK_SIGNED || o->mode == GW_AWSCHUNK_SIGNED_TRAILER) {
        if (!o->key || !o->amz_date || !o->scope || !o->seed_sig ||
            strlen(o->amz_date) >= sizeof(c->amz_date) || strlen(o->scope) >= sizeof(c->scope) ||
            strlen(o->seed_sig) != 64) {
            rc = MRD_EINVAL;
            goto fail;
        }
        memcpy(c->key, o->key, 32);
        strcpy(c->amz_date, o->amz_date);
        strcpy(c->scope, o->scope);
        strcpy(c->prev_sig, o->seed_sig);
        if (!(c->sha = EVP_MD_CTX_new()) || !EVP_DigestInit_ex(c->sha, EVP_sha256(), NULL)) {
            rc = -12;
            goto fail;
        }
    } else if (o->mode != GW_AWSCHUNK_UNSIGNED_TRAILER) {
        rc = MRD_EINVAL;
        goto fail;
    }
    if (o->trailer) {
        if (o->mode == GW_AWSCHUNK_SIGNED || strlen(o->trailer) >= sizeof(c->ck_name) ||
            strchr(o->trailer, ',')) {
            rc = MRD_EINVAL;
            goto fail;
        }
        c->ck = checksum_kind(o->trailer);
        if (c->ck == CK_CRC64NVME)
            pthread_once(&crc64nvme_once, crc64nvme_init);
        for (size_t i = 0; o->trailer[i]; i++)
            c->ck_name[i] = (char)(o->trailer[i] >= 'A' && o->trailer[i] <= 'Z' ? o->trailer[i] + 32
                                                                                : o->trailer[i]);
        if ((c->ck == CK_SHA1 || c->ck == CK_SHA256) &&
            (!(c->ckmd = EVP_MD_CTX_new()) ||
             !EVP_DigestInit_ex(c->ckmd, c->ck == CK_SHA1 ? EVP_sha1() : EVP_sha256(), NULL))) {
            rc = -12;
            goto fail;
        }
    }
    *out = c;
    return 0;
fail:
    gw_awschunk_free(c);
    return rc;
}

void
gw_awschunk_free(gw_awschunk *c)
{
    if (!c)
        return;
    EVP_MD_CTX_free(c->sha);
    EVP_MD_CTX_free(c->ckmd);
    OPENSSL_cleanse(c->key, sizeof(c->key));
    free(c);
}

uint64_t
gw_awschunk_decoded(const gw_awschunk *c)
{
    return c->total;
}

static int
fail(gw_awschunk *c, gw_s3_err e, const char *why)
{
    c->state = C_FAILED;
    c->err = (int)e + 1;
    c->why = why;
    return c->err;
}

static int
hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Checks the chunk just completed against its claimed signature. */
static int
verify_chunk(gw_awschunk *c)
{
    unsigned char digest[32];
    unsigned int n = 32;
    char sig[65];
    int ok;

    EVP_DigestFinal_ex(c->sha, digest, &n);
    EVP_DigestInit_ex(c->sha, EVP_sha256(), NULL);
    gw_awschunk_sign(c->key, c->amz_date, c->scope, c->prev_sig, digest, sig);
    ok = mrd_consttime_equal(sig, 64, c->chunk_sig, strlen(c->chunk_sig));
    if (!ok)
        return fail(c, GW_S3E_SIGNATURE_DOES_NOT_MATCH, "chunk signature mismatch");
    memcpy(c->prev_sig, sig, 65);
    return 0;
}

/* "hex-size[;chunk-signature=sig]" */
static int
parse_size_line(gw_awschunk *c)
{
    const char *p = c->line, *ext;
    uint64_t size = 0;
    int digits = 0, h;

    while ((h = hexval((unsigned char)*p)) >= 0) {
        if (++digits > 16)
            return fail(c, GW_S3E_INVALID_REQUEST, "aws-chunked: chunk size too long");
        size = size * 16 + (uint64_t)h;
        p++;
    }
    if (digits == 0)
        return fail(c, GW_S3E_INVALID_REQUEST, "aws-chunked: bad chunk size");
    ext = p;
    if (c->sha) {
        static const char pre[] = ";chunk-signature=";
        size_t n = strlen(ext);
        if (strncmp(ext, pre, sizeof(pre) - 1) != 0 || n != sizeof(pre) - 1 + 64)
            return fail(c, GW_S3E_INVALID_REQUEST, "aws-chunked: missing chunk-signature");
        memcpy(c->chunk_sig, ext + sizeof(pre) - 1, 64);
        c->chunk_sig[64] = '\0';
    } else if (*ext && *ext != ';') {
        return fail(c, GW_S3E_INVALID_REQUEST, "aws-chunked: bad chunk header");
    }
    if (size > GW_AWSCHUNK_MAX_TOTAL - c->total ||
        (c->decoded_length >= 0 && c->total + size > (uint64_t)c->decoded_length))
        return fail(c, GW_S3E_INVALID_REQUEST,
                    "aws-chunked: body longer than x-amz-decoded-content-length");
    c->left = size;
    if (size > 0) {
        c->state = C_DATA;
        return 0;
    }
    if (c->sha && verify_chunk(c) != 0)
        return c->err;
    c->state = C_TRAILER;
    return 0;
}

static int
b64_equal(const unsigned char *digest, size_t n, const char *value)
{
    unsigned char enc[96];
    int len;

    while (*value == ' ' || *value == '\t')
        value++;
    len = EVP_EncodeBlock(enc, digest, (int)n);
    return len > 0 && strlen(value) >= (size_t)len && memcmp(enc, value, (size_t)len) == 0 &&
           value[strspn(value + len, " \t") + len] == '\0';
}

/* Signed trailers: hashes the line name:value (lower-case name, trimmed
 * value), or checks x-amz-trailer-signature against the hash so far. */
static int
signed_trailer(gw_awschunk *c, size_t nl, const char *value)
{
    static const char sig_name[] = "x-amz-trailer-signature";
    const char *end;
    unsigned char digest[32];
    unsigned int n = 32;
    char want[65];

    while (*value == ' ' || *value == '\t')
        value++;
    end = value + strlen(value);
    while (end > value && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    if (nl == sizeof(sig_name) - 1 && strncasecmp(c->line, sig_name, nl) == 0) {
        EVP_DigestFinal_ex(c->sha, digest, &n);
        gw_awschunk_sign_trailer(c->key, c->amz_date, c->scope, c->prev_sig, digest, want);
        if (!mrd_consttime_equal(want, 64, value, (size_t)(end - value)))
            return fail(c, GW_S3E_SIGNATURE_DOES_NOT_MATCH,
                        "aws-chunked: trailer signature mismatch");
        c->trailer_signed = 1;
        return 0;
    }
    for (size_t i = 0; i < nl; i++) {
        char ch = c->line[i] >= 'A' && c->line[i] <= 'Z' ? (char)(c->line[i] + 32) : c->line[i];
        EVP_DigestUpdate(c->sha, &ch, 1);
    }
    EVP_DigestUpdate(c->sha, ":", 1);
    EVP_DigestUpdate(c->sha, value, (size_t)(end - value));
    EVP_DigestUpdate(c->sha, "\n", 1);
    return 0;
}

static int
trailer_line(gw_awschunk *c)
{
    const char *colon;
    unsigned char digest[32], be[8];
    unsigned int n = 32;
    size_t nl, width;

    if (c->line_len == 0 && c->n_trailers == 0 && !c->blank_skipped &&
        c->mode == GW_AWSCHUNK_SIGNED_TRAILER) {
        c->blank_skipped = 1; /* the empty last chunk's own CRLF */
        return 0;
    }
    if (c->line_len == 0) {
        if (c->mode == GW_AWSCHUNK_SIGNED_TRAILER && !c->trailer_signed)
            return fail(c, GW_S3E_SIGNATURE_DOES_NOT_MATCH,
                        "aws-chunked: x-amz-trailer-signature is missing");
        if (c->ck != CK_NONE && !c->ck_seen)
            return fail(c, GW_S3E_INVALID_REQUEST,
                        "aws-chunked: the trailer named in x-amz-trailer is missing");
        c->state = C_DONE;
        return 0;
    }
    if (c->trailer_signed)
        return fail(c, GW_S3E_SIGNATURE_DOES_NOT_MATCH,
                    "aws-chunked: a trailer after x-amz-trailer-signature");
    if (c->mode == GW_AWSCHUNK_SIGNED || ++c->n_trailers > GW_AWSCHUNK_MAX_TRAILERS)
        return fail(c, GW_S3E_INVALID_REQUEST, "aws-chunked: unexpected trailer");
    colon = strchr(c->line, ':');
    if (!colon)
        return fail(c, GW_S3E_INVALID_REQUEST, "aws-chunked: malformed trailer");
    nl = (size_t)(colon - c->line);
    if (c->mode == GW_AWSCHUNK_SIGNED_TRAILER && signed_trailer(c, nl, colon + 1) != 0)
        return c->err;
    if (c->trailer_signed)
        return 0;
    if (c->ck == CK_NONE || strlen(c->ck_name) != nl || strncasecmp(c->line, c->ck_name, nl) != 0)
        return 0; /* not a checksum we were told about: ignored */
    if (c->ck_seen++)
        return fail(c, GW_S3E_INVALID_REQUEST, "aws-chunked: repeated trailer");
    switch (c->ck) {
    case CK_CRC32:
    case CK_CRC32C:
    case CK_CRC64NVME:
        width = c->ck == CK_CRC64NVME ? 8 : 4; /* big-endian, like AWS */
        for (size_t i = 0; i < width; i++)
            be[i] = (unsigned char)(c->crc >> (8 * (width - 1 - i)));
        if (!b64_equal(be, width, colon + 1))
            return fail(c, GW_S3E_BAD_DIGEST, "the trailing checksum does not match the body");
        break;
    case CK_SHA1:
    case CK_SHA256:
        EVP_DigestFinal_ex(c->ckmd, digest, &n);
        if (!b64_equal(digest, n, colon + 1))
            return fail(c, GW_S3E_BAD_DIGEST, "the trailing checksum does not match the body");
        break;
    default:
        break; /* CK_UNVERIFIED */
    }
    return 0;
}

static void
hash_data(gw_awschunk *c, const char *data, size_t n)
{
    if (c->sha)
        EVP_DigestUpdate(c->sha, data, n);
    switch (c->ck) {
    case CK_CRC32:
        c->crc = crc32_gzip_refl((uint32_t)c->crc, (const unsigned char *)data, n);
        break;
    case CK_CRC32C:
        c->crc = mrd_crc32c((uint32_t)c->crc, data, n);
        break;
    case CK_CRC64NVME:
        c->crc = crc64nvme(c->crc, (const unsigned char *)data, n);
        break;
    case CK_SHA1:
    case CK_SHA256:
        EVP_DigestUpdate(c->ckmd, data, n);
        break;
    default:
        break;
    }
}

int
gw_awschunk_feed(gw_awschunk *c, const char *data, size_t len, gw_awschunk_emit emit, void *ud,
                 const char **why)
{
    size_t i = 0;

    while (i < len && c->state != C_FAILED) {
        switch (c->state) {
        case C_SIZE:
        case C_TRAILER: {
            const char *nlp = memchr(data + i, '\n', len - i);
            size_t take = nlp ? (size_t)(nlp - (data + i)) : len - i;
            if (c->line_len + take >= sizeof(c->line)) {
                fail(c, GW_S3E_INVALID_REQUEST, "aws-chunked: chunk header or trailer too long");
                break;
            }
            memcpy(c->line + c->line_len, data + i, take);
            c->line_len += take;
            i += take;
            if (!nlp)
                break;
            i++; /* the '\n' */
            if (c->line_len && c->line[c->line_len - 1] == '\r')
                c->line_len--;
            c->line[c->line_len] = '\0';
            if (memchr(c->line, '\0', c->line_len)) {
                fail(c, GW_S3E_INVALID_REQUEST, "aws-chunked: NUL in a chunk header");
                break;
            }
            if (c->state == C_SIZE)
                parse_size_line(c);
            else
                trailer_line(c);
            c->line_len = 0;
            break;
        }
        case C_DATA: {
            size_t n = len - i < c->left ? len - i : (size_t)c->left;
            hash_data(c, data + i, n);
            if (emit && emit(ud, data + i, n) != 0) {
                fail(c, GW_S3E_INTERNAL, "aws-chunked: could not store the data");
                break;
            }
            c->left -= n;
            c->total += n;
            i += n;
            if (c->left == 0)
                c->state = C_DATA_CR;
            break;
        }
        case C_DATA_CR:
        case C_DATA_LF:
            if (data[i++] != (c->state == C_DATA_CR ? '\r' : '\n')) {
                fail(c, GW_S3E_INVALID_REQUEST, "aws-chunked: chunk data not followed by CRLF");
                break;
            }
            if (c->state == C_DATA_CR) {
                c->state = C_DATA_LF;
                break;
            }
            if (c->sha && verify_chunk(c) != 0)
                break;
            c->state = C_SIZE;
            break;
        case C_DONE:
            fail(c, GW_S3E_INVALID_REQUEST, "aws-chunked: data after the last chunk");
            break;
        }
    }
    if (c->state == C_FAILED) {
        *why = c->why;
        return c->err;
    }
    return 0;
}

int
gw_awschunk_finish(gw_awschunk *c, const char **why)
{
    if (c->state == C_FAILED) {
        *why = c->why;
        return c->err;
    }
    if (c->state == C_TRAILER && c->trailer_signed && c->line_len == 0)
        c->state = C_DONE; /* the closing blank line is optional once signed */
    if (c->state != C_DONE) {
        fail(c, GW_S3E_INCOMPLETE_BODY, "aws-chunked: the body ended before its last chunk");
    } else if (c->decoded_length >= 0 && c->total != (uint64_t)c->decoded_length) {
        fail(c, GW_S3E_INCOMPLETE_BODY,
             "aws-chunked: the body is shorter than x-amz-decoded-content-length");
    }
    if (c->state == C_FAILED) {
        *why = c->why;
        return c->err;
    }
    return 0;
}
