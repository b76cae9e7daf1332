/*
 * awschunk_test.c - the aws-chunked decoder (gateway/gw_awschunk.c).
 *
 * The chunk signer is checked against AWS's worked example ("Signature
 * Calculations for the Authorization Header: Transferring Payload in Multiple
 * Chunks", 66560 bytes of 'a' in 64 KiB chunks, 2013-05-24). The decoder is
 * then fed streams built and signed here with that signer, in slices of
 * every awkward size (one byte at a time, prime-sized, whole), and the named
 * failure cases: a bad chunk signature, tampered data, reordered chunks, a
 * truncated stream, oversize chunk headers and sizes, decoded lengths that
 * disagree, bytes after the end, the unsigned-trailer variant with right
 * and wrong checksums (CRC64NVME against its published check value), and the signed-trailer variant
 * against AWS's worked example (every chunk and the trailer signature) with its failure cases.
 */
#include <isa-l.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "gw_int.h"
#include "test.h"

#define SK "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

static const char *amz_date = "20130524T000000Z";
static const char *scope = "20130524/us-east-1/s3/aws4_request";
static const char *seed = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";

static void
example_key(unsigned char key[32])
{
    gw_sigv4_auth a;

    memset(&a, 0, sizeof(a));
    strcpy(a.date, "20130524");
    strcpy(a.region, "us-east-1");
    strcpy(a.service, "s3");
    gw_sigv4_signing_key(SK, &a, key);
}

/* Appends one signed chunk of data[0..n) to out; updates prev. */
static void
add_chunk(mrd_buf *out, const unsigned char key[32], char prev[65], const char *data, size_t n)
{
    unsigned char sha[32];
    char sig[65];

    SHA256((const unsigned char *)data, n, sha);
    gw_awschunk_sign(key, amz_date, scope, prev, sha, sig);
    mrd_buf_appendf(out, "%zx;chunk-signature=%s\r\n", n, sig);
    mrd_buf_append(out, data, n);
    mrd_buf_append(out, "\r\n", 2);
    memcpy(prev, sig, 65);
}

/* A whole signed stream of data in chunks of csize bytes. */
static void
build_signed(mrd_buf *out, const char *data, size_t n, size_t csize)
{
    unsigned char key[32];
    char prev[65];

    example_key(key);
    strcpy(prev, seed);
    for (size_t off = 0; off < n; off += csize)
        add_chunk(out, key, prev, data + off, n - off < csize ? n - off : csize);
    add_chunk(out, key, prev, "", 0);
}

static int
collect(void *ud, const char *data, size_t len)
{
    return mrd_buf_append(ud, data, len);
}

/* Feeds enc in slices of step bytes; returns the first error, or finish's. */
static int
decode_from(const char *seed_sig, int mode, const char *enc, size_t n, size_t step, int64_t dlen,
            const char *trailer, mrd_buf *out)
{
    unsigned char key[32];
    gw_awschunk_opts o = {mode, key, amz_date, scope, seed_sig, dlen, trailer};
    gw_awschunk *c = NULL;
    const char *why = NULL;
    int rc = 0;

    example_key(key);
    if (gw_awschunk_new(&o, &c) != 0)
        return -1000;
    for (size_t off = 0; off < n && rc == 0; off += step)
        rc = gw_awschunk_feed(c, enc + off, n - off < step ? n - off : step, collect, out, &why);
    if (rc == 0)
        rc = gw_awschunk_finish(c, &why);
    gw_awschunk_free(c);
    return rc;
}

static int
decode(int mode, const char *enc, size_t n, size_t step, int64_t dlen, const char *trailer,
       mrd_buf *out)
{
    return decode_from(seed, mode, enc, n, step, dlen, trailer, out);
}

#define ERR(e) ((int)(e) + 1)

static void
test_aws_example_signatures(void)
{
    static char data[66560];
    unsigned char key[32], sha[32];
    char sig[65];

    memset(data, 'a', sizeof(data));
    example_key(key);
    SHA256((const unsigned char *)data, 65536, sha);
    gw_awschunk_sign(key, amz_date, scope, seed, sha, sig);
    CHECK_STR(sig, "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648");
    SHA256((const unsigned char *)data + 65536, 1024, sha);
    gw_awschunk_sign(key, amz_date, scope,
                     "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648", sha, sig);
    CHECK_STR(sig, "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497");
    SHA256((const unsigned char *)"", 0, sha);
    gw_awschunk_sign(key, amz_date, scope,
                     "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497", sha, sig);
    CHECK_STR(sig, "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9");
}

static void
test_signed_roundtrip_any_slicing(void)
{
    static const size_t steps[] = {1, 2, 7, 89, 4096, 65536, 1u << 30};
    mrd_buf data = {0}, enc = {0}, out = {0};

    for (size_t i = 0; i < 200000; i++) {
        char ch = (char)(i * 131 + (i >> 7));
        mrd_buf_append(&data, &ch, 1);
    }
    build_signed(&enc, data.data, data.len, 65536);
    for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
        mrd_buf_reset(&out);
        CHECK_EQ_INT(
            decode(GW_AWSCHUNK_SIGNED, enc.data, enc.len, steps[s], (int64_t)data.len, NULL, &out),
            0);
        CHECK(out.len == data.len && memcmp(out.data, data.data, data.len) == 0);
    }
    /* an empty object: just the signed last chunk */
    mrd_buf_reset(&enc);
    mrd_buf_reset(&out);
    build_signed(&enc, "", 0, 65536);
    CHECK_EQ_INT(decode(GW_AWSCHUNK_SIGNED, enc.data, enc.len, 3, 0, NULL, &out), 0);
    CHECK_EQ_INT(out.len, 0);
    mrd_buf_free(&data);
    mrd_buf_free(&enc);
    mrd_buf_free(&out);
}

static void
test_bad_signatures(void)
{
    static char data[3000];
    mrd_buf enc = {0}, out = {0}, a = {0}, b = {0}, swapped = {0};
    unsigned char key[32];
    char prev[65], *sig2, orig;

    memset(data, 'x', sizeof(data));
    build_signed(&enc, data, sizeof(data), 1000);
    /* the second chunk's signature altered by one hex digit */
    sig2 = strstr(strstr(enc.data, "\r\n") + 2, "chunk-signature=") + 16;
    orig = sig2[10];
    sig2[10] = orig == '0' ? '1' : '0';
    CHECK_EQ_INT(decode(GW_AWSCHUNK_SIGNED, enc.data, enc.len, 512, sizeof(data), NULL, &out),
                 ERR(GW_S3E_SIGNATURE_DOES_NOT_MATCH));
    CHECK(out.len <= 2000); /* stopped at the second chunk */
    sig2[10] = orig;
    mrd_buf_reset(&out);
    CHECK_EQ_INT(decode(GW_AWSCHUNK_SIGNED, enc.data, enc.len, 512, sizeof(data), NULL, &out), 0);

    /* one data byte changed, signatures intact */
    enc.data[strstr(enc.data, "\r\n") - enc.data + 2 + 500] = 'y';
    mrd_buf_reset(&out);
    CHECK_EQ_INT(decode(GW_AWSCHUNK_SIGNED, enc.data, enc.len, 100000, sizeof(data), NULL, &out),
                 ERR(GW_S3E_SIGNATURE_DOES_NOT_MATCH));

    /* two validly signed chunks in the wrong order */
    example_key(key);
    strcpy(prev, seed);
    add_chunk(&a, key, prev, "first", 5);
    add_chunk(&b, key, prev, "second", 6);
    mrd_buf_append(&swapped, b.data, b.len);
    mrd_buf_append(&swapped, a.data, a.len);
    add_chunk(&swapped, key, prev, "", 0);
    mrd_buf_reset(&out);
    CHECK_EQ_INT(decode(GW_AWSCHUNK_SIGNED, swapped.data, swapped.len, 7, 11, NULL, &out),
                 ERR(GW_S3E_SIGNATURE_DOES_NOT_MATCH));

    /* a chunk without a signature in signed mode */
    mrd_buf_reset(&out);
    CHECK_EQ_INT(decode(GW_AWSCHUNK_SIGNED, "5\r\nhello\r\n0\r\n\r\n", 16, 16, 5, NULL, &out),
                 ERR(GW_S3E_INVALID_REQUEST));
    mrd_buf_free(&enc);
    mrd_buf_free(&out);
    mrd_buf_free(&a);
    mrd_buf_free(&b);
    mrd_buf_free(&swapped);
}

static void
test_truncated_and_lengths(void)
{
    static char data[5000];
    mrd_buf enc = {0}, out = {0};
    size_t cut;

    memset(data, 'z', sizeof(data));
    build_signed(&enc, data, sizeof(data), 2048);
    /* cut anywhere before the final CRLF: incomplete */
    for (cut = 0; cut < enc.len; cut += 97) {
        mrd_buf_reset(&out);
        CHECK_EQ_INT(decode(GW_AWSCHUNK_SIGNED, enc.data, cut, 61, sizeof(data), NULL, &out),
                     ERR(GW_S3E_INCOMPLETE_BODY));
    }
    mrd_buf_reset(&out);
    CHECK_EQ_INT(decode(GW_AWSCHUNK_SIGNED, enc.data, enc.len - 2, 61, sizeof(data), NULL, &out),
                 ERR(GW_S3E_INCOMPLETE_BODY));
    /* declared decoded length larger / smaller than the body */
    mrd_buf_reset(&out);
    CHECK_EQ_INT(decode(GW_AWSCHUNK_SIGNED, enc.data, enc.len, 999, sizeof(data) + 1, NULL, &out),
                 ERR(GW_S3E_INCOMPLETE_BODY));
    mrd_buf_reset(&out);
    CHECK_EQ_INT(decode(GW_AWSCHUNK_SIGNED, enc.data, enc.len, 999, sizeof(data) - 1, NULL, &out),
                 ERR(GW_S3E_INVALID_REQUEST));
    /* bytes after the end */
    mrd_buf_append(&enc, "0\r\n", 3);
    mrd_buf_reset(&out);
    CHECK_EQ_INT(decode(GW_AWSCHUNK_SIGNED, enc.data, enc.len, 999, sizeof(data), NULL, &out),
                 ERR(GW_S3E_INVALID_REQUEST));
    mrd_buf_free(&enc);
    mrd_buf_free(&out);
}

static void
test_oversize_headers(void)
{
    mrd_buf enc = {0}, out = {0};

    /* a header line that never ends */
    for (int i = 0; i < GW_AWSCHUNK_MAX_LINE + 10; i++)
        mrd_buf_append(&enc, "1", 1);
    CHECK_EQ_INT(decode(GW_AWSCHUNK_UNSIGNED_TRAILER, enc.data, enc.len, 100, -1, NULL, &out),
                 ERR(GW_S3E_INVALID_REQUEST));
    /* 17 hex digits, and a size past the 5 GiB bound */
    mrd_buf_reset(&enc);
    mrd_buf_appendf(&enc, "10000000000000000\r\n");
    CHECK_EQ_INT(decode(GW_AWSCHUNK_UNSIGNED_TRAILER, enc.data, enc.len, 5, -1, NULL, &out),
                 ERR(GW_S3E_INVALID_REQUEST));
    mrd_buf_reset(&enc);
    mrd_buf_appendf(&enc, "ffffffffffff\r\nabc");
    CHECK_EQ_INT(decode(GW_AWSCHUNK_UNSIGNED_TRAILER, enc.data, enc.len, 5, -1, NULL, &out),
                 ERR(GW_S3E_INVALID_REQUEST));
    /* not hex, CR without LF after data, a NUL in a header */
    CHECK_EQ_INT(decode(GW_AWSCHUNK_UNSIGNED_TRAILER, "zz\r\n", 4, 4, -1, NULL, &out),
                 ERR(GW_S3E_INVALID_REQUEST));
    CHECK_EQ_INT(decode(GW_AWSCHUNK_UNSIGNED_TRAILER, "1\r\nab\r\n", 7, 7, -1, NULL, &out),
                 ERR(GW_S3E_INVALID_REQUEST));
    CHECK_EQ_INT(decode(GW_AWSCHUNK_UNSIGNED_TRAILER, "1\0;\r\n", 5, 5, -1, NULL, &out),
                 ERR(GW_S3E_INVALID_REQUEST));
    mrd_buf_free(&enc);
    mrd_buf_free(&out);
}

static void
test_unsigned_trailers(void)
{
    const char *body = "hello world";
    unsigned char d[32], be[4];
    unsigned char b64[64];
    uint32_t crc;
    mrd_buf enc = {0}, out = {0};

    crc = crc32_gzip_refl(0, (const unsigned char *)body, 11);
    be[0] = (unsigned char)(crc >> 24), be[1] = (unsigned char)(crc >> 16);
    be[2] = (unsigned char)(crc >> 8), be[3] = (unsigned char)crc;
    EVP_EncodeBlock(b64, be, 4);
    CHECK_STR((char *)b64, "DUoRhQ=="); /* CRC32("hello world") = 0x0d4a1185 */
    mrd_buf_appendf(&enc, "6\r\nhello \r\n5\r\nworld\r\n0\r\nx-amz-checksum-crc32:%s\r\n\r\n", b64);
    CHECK_EQ_INT(decode(GW_AWSCHUNK_UNSIGNED_TRAILER, enc.data, enc.len, 3, 11,
                        "x-amz-checksum-crc32", &out),
                 0);
    CHECK(out.len == 11 && memcmp(out.data, body, 11) == 0);
    /* wrong checksum: BadDigest; absent: InvalidRequest */
    mrd_buf_reset(&out);
    CHECK_EQ_INT(decode(GW_AWSCHUNK_UNSIGNED_TRAILER,
                        "3\r\nabc\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n", 43, 43, -1,
                        "x-amz-checksum-crc32", &out),
                 ERR(GW_S3E_BAD_DIGEST));
    CHECK_EQ_INT(decode(GW_AWSCHUNK_UNSIGNED_TRAILER, "3\r\nabc\r\n0\r\n\r\n", 13, 13, -1,
                        "x-amz-checksum-crc32", &out),
                 ERR(GW_S3E_INVALID_REQUEST));
    /* CRC32C and SHA-256 */
    crc = mrd_crc32c(0, body, 11);
    be[0] = (unsigned char)(crc >> 24), be[1] = (unsigned char)(crc >> 16);
    be[2] = (unsigned char)(crc >> 8), be[3] = (unsigned char)crc;
    EVP_EncodeBlock(b64, be, 4);
    mrd_buf_reset(&enc);
    mrd_buf_appendf(&enc, "b\r\nhello world\r\n0\r\nx-amz-checksum-crc32c:%s\r\n\r\n", b64);
    CHECK_EQ_INT(decode(GW_AWSCHUNK_UNSIGNED_TRAILER, enc.data, enc.len, 1, 11,
                        "X-Amz-Checksum-CRC32C", &out),
                 0);
    SHA256((const unsigned char *)body, 11, d);
    EVP_EncodeBlock(b64, d, 32);
    mrd_buf_reset(&enc);
    mrd_buf_appendf(&enc, "b\r\nhello world\r\n0\r\nx-amz-checksum-sha256:%s\r\n\r\n", b64);
    CHECK_EQ_INT(decode(GW_AWSCHUNK_UNSIGNED_TRAILER, enc.data, enc.len, 5, -1,
                        "x-amz-checksum-sha256", &out),
                 0);
    enc.data[5] = 'H';
    CHECK_EQ_INT(decode(GW_AWSCHUNK_UNSIGNED_TRAILER, enc.data, enc.len, 5, -1,
                        "x-amz-checksum-sha256", &out),
                 ERR(GW_S3E_BAD_DIGEST));
    /* CRC64NVME: the published check value, in pieces, and in a trailer */
    CHECK(gw_crc64nvme(0, "123456789", 9) == 0xae8b14860a799888ull);
    CHECK(gw_crc64nvme(gw_crc64nvme(0, "1234", 4), "56789", 5) == 0xae8b14860a799888ull);
    mrd_buf_reset(&enc);
    mrd_buf_appendf(&enc, "6\r\nhello \r\n5\r\nworld\r\n0\r\n"
                          "x-amz-checksum-crc64nvme:jSnVw/bqjr4=\r\n\r\n");
    CHECK_EQ_INT(decode(GW_AWSCHUNK_UNSIGNED_TRAILER, enc.data, enc.len, 2, 11,
                        "x-amz-checksum-crc64nvme", &out),
                 0);
    enc.data[3] = 'j'; /* "hello " -> "jello " */
    CHECK_EQ_INT(decode(GW_AWSCHUNK_UNSIGNED_TRAILER, enc.data, enc.len, 2, 11,
                        "x-amz-checksum-crc64nvme", &out),
                 ERR(GW_S3E_BAD_DIGEST));
    /* trailers in signed mode, and a signed-mode trailer option, are refused */
    {
        gw_awschunk_opts o = {GW_AWSCHUNK_SIGNED, d, amz_date, scope, seed, -1, "x"};
        gw_awschunk *c = NULL;
        CHECK(gw_awschunk_new(&o, &c) == MRD_EINVAL);
    }
    mrd_buf_free(&enc);
    mrd_buf_free(&out);
}

/* AWS's signed-trailer example ("Signature calculations for trailing
 * headers", 2013-05-24): 66560 bytes of 'a' in chunks of 64 KiB and 1 KiB,
 * CRC32C trailer. last_crlf: the empty last chunk ends with its own CRLF,
 * as in AWS's example; trailer_sig: the x-amz-trailer-signature line. */
#define TRL_SEED "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"
#define TRL_LAST "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992"
#define TRL_SIG  "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435"

static void
build_trailer_example(mrd_buf *enc, int last_crlf, const char *trailers)
{
    static char a[65536];

    memset(a, 'a', sizeof(a));
    mrd_buf_reset(enc);
    mrd_buf_appendf(enc, "10000;chunk-signature=b474d8862b1487a5145d686f57f013e54db672cee1c953b3"
                         "010fb58501ef5aa2\r\n");
    mrd_buf_append(enc, a, 65536);
    mrd_buf_appendf(enc, "\r\n400;chunk-signature=1c1344b170168f8e65b41376b44b20fe354e373826ccbb"
                         "e2c1d40a8cae51e5c7\r\n");
    mrd_buf_append(enc, a, 1024);
    mrd_buf_appendf(enc, "\r\n0;chunk-signature=" TRL_LAST "\r\n%s%s", last_crlf ? "\r\n" : "",
                    trailers);
}

static int
decode_trailer_example(const mrd_buf *enc, size_t step, mrd_buf *out)
{
    mrd_buf_reset(out);
    return decode_from(TRL_SEED, GW_AWSCHUNK_SIGNED_TRAILER, enc->data, enc->len, step, 66560,
                       "x-amz-checksum-crc32c", out);
}

static void
test_signed_trailers(void)
{
    static const size_t steps[] = {1, 7, 4096, 1 << 20};
    unsigned char key[32], sha[32];
    char sig[65];
    mrd_buf enc = {0}, out = {0}, tr = {0};

    /* the signer against AWS's example */
    example_key(key);
    SHA256((const unsigned char *)"x-amz-checksum-crc32c:sOO8/Q==\n", 31, sha);
    gw_awschunk_sign_trailer(key, amz_date, scope, TRL_LAST, sha, sig);
    CHECK_STR(sig, TRL_SIG);

    /* the decoder: with and without the last chunk's CRLF and the closing
     * blank line, in every slicing */
    for (int form = 0; form < 4; form++) {
        build_trailer_example(&enc, form & 1,
                              form & 2 ? "x-amz-checksum-crc32c:sOO8/Q==\r\n"
                                         "x-amz-trailer-signature:" TRL_SIG "\r\n\r\n"
                                       : "x-amz-checksum-crc32c:sOO8/Q==\r\n"
                                         "x-amz-trailer-signature:" TRL_SIG "\r\n");
        for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
            CHECK_EQ_INT(decode_trailer_example(&enc, steps[i], &out), 0);
            CHECK(out.len == 66560 && out.data[0] == 'a' && out.data[66559] == 'a');
        }
    }
    /* a wrong or missing trailer signature, one signed for other trailers,
     * a trailer slipped in after it, a bad chunk before it */
    build_trailer_example(&enc, 0,
                          "x-amz-checksum-crc32c:sOO8/Q==\r\n"
                          "x-amz-trailer-signature:e81f82fc3505edab99d459891051a732e873"
                          "0629a2e4a59689829ca17fe2e435\r\n\r\n");
    CHECK_EQ_INT(decode_trailer_example(&enc, 7, &out), ERR(GW_S3E_SIGNATURE_DOES_NOT_MATCH));
    build_trailer_example(&enc, 0, "x-amz-checksum-crc32c:sOO8/Q==\r\n\r\n");
    CHECK_EQ_INT(decode_trailer_example(&enc, 7, &out), ERR(GW_S3E_SIGNATURE_DOES_NOT_MATCH));
    build_trailer_example(&enc, 0, "x-amz-checksum-crc32c:sOO8/Q==\r\n");
    CHECK_EQ_INT(decode_trailer_example(&enc, 7, &out), ERR(GW_S3E_INCOMPLETE_BODY));
    build_trailer_example(&enc, 0,
                          "x-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-meta-extra:1\r\n"
                          "x-amz-trailer-signature:" TRL_SIG "\r\n\r\n");
    CHECK_EQ_INT(decode_trailer_example(&enc, 7, &out), ERR(GW_S3E_SIGNATURE_DOES_NOT_MATCH));
    build_trailer_example(&enc, 0,
                          "x-amz-checksum-crc32c:sOO8/Q==\r\n"
                          "x-amz-trailer-signature:" TRL_SIG "\r\nx-amz-meta-extra:1\r\n\r\n");
    CHECK_EQ_INT(decode_trailer_example(&enc, 7, &out), ERR(GW_S3E_SIGNATURE_DOES_NOT_MATCH));
    build_trailer_example(&enc, 0,
                          "x-amz-checksum-crc32c:sOO8/Q==\r\n"
                          "x-amz-trailer-signature:" TRL_SIG "\r\n\r\n");
    enc.data[100] = 'b'; /* data of the first chunk */
    CHECK_EQ_INT(decode_trailer_example(&enc, 4096, &out), ERR(GW_S3E_SIGNATURE_DOES_NOT_MATCH));
    /* a wrong checksum, correctly signed: BadDigest; names compare without
     * case and values trimmed, as signed */
    SHA256((const unsigned char *)"x-amz-checksum-crc32c:AAAAAA==\n", 31, sha);
    gw_awschunk_sign_trailer(key, amz_date, scope, TRL_LAST, sha, sig);
    mrd_buf_appendf(&tr, "x-amz-checksum-crc32c:AAAAAA==\r\nx-amz-trailer-signature:%s\r\n\r\n",
                    sig);
    build_trailer_example(&enc, 0, tr.data);
    CHECK_EQ_INT(decode_trailer_example(&enc, 7, &out), ERR(GW_S3E_BAD_DIGEST));
    build_trailer_example(&enc, 0,
                          "X-Amz-Checksum-CRC32C:  sOO8/Q== \r\n"
                          "X-Amz-Trailer-Signature: " TRL_SIG "\r\n\r\n");
    CHECK_EQ_INT(decode_trailer_example(&enc, 7, &out), 0);
    /* without x-amz-trailer the signature is still required and checked */
    SHA256((const unsigned char *)"", 0, sha);
    gw_awschunk_sign_trailer(key, amz_date, scope, TRL_LAST, sha, sig);
    mrd_buf_reset(&tr);
    mrd_buf_appendf(&tr, "x-amz-trailer-signature:%s\r\n\r\n", sig);
    build_trailer_example(&enc, 0, tr.data);
    mrd_buf_reset(&out);
    CHECK_EQ_INT(
        decode_from(TRL_SEED, GW_AWSCHUNK_SIGNED_TRAILER, enc.data, enc.len, 3, 66560, NULL, &out),
        0);
    build_trailer_example(&enc, 0, "\r\n");
    CHECK_EQ_INT(
        decode_from(TRL_SEED, GW_AWSCHUNK_SIGNED_TRAILER, enc.data, enc.len, 3, 66560, NULL, &out),
        ERR(GW_S3E_INCOMPLETE_BODY));
    mrd_buf_free(&enc);
    mrd_buf_free(&out);
    mrd_buf_free(&tr);
}

static const test_case tests[] = {
    TEST(test_aws_example_signatures), TEST(test_signed_roundtrip_any_slicing),
    TEST(test_bad_signatures),         TEST(test_truncated_and_lengths),
    TEST(test_oversize_headers),       TEST(test_unsigned_trailers),
    TEST(test_signed_trailers),        {NULL, NULL},
};

TEST_MAIN(tests)
