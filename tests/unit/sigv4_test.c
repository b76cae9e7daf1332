/*
 * sigv4_test.c - SigV4 against AWS's published examples.
 *
 * The S3 vectors are the worked examples of "Authenticating Requests:
 * Using the Authorization Header" and "Query String Authentication" in the
 * Amazon S3 API reference (examplebucket, AKIAIOSFODNN7EXAMPLE, 2013-05-24),
 * which print the canonical request, the string to sign and the signature;
 * get-vanilla is from AWS's generic SigV4 test suite (service "service").
 * Every stage is compared, so a failure names the stage that drifted. The
 * verify tests then exercise the decisions around the math: unknown key,
 * wrong secret, skew, expiry, malformed headers, constant-time compare path.
 */
#include <strings.h>
#include <time.h>

#include "gw_int.h"
#include "test.h"

#define AK     "AKIAIOSFODNN7EXAMPLE"
#define SK     "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define EMPTYH GW_SHA256_EMPTY

typedef struct vec {
    const char *method, *path, *query;
    const char *hn[8], *hv[8];
    const char *authz; /* Authorization header value (NULL for presigned) */
    const char *creq, *sts, *sig;
} vec;

static void
check_vec(const vec *v, const char *secret)
{
    gw_sigv4_input in;
    gw_sigv4_auth a;
    mrd_buf creq = {0}, sts = {0};
    char sig[65];
    int n = 0;
    const char *ph = NULL;

    while (n < 8 && v->hn[n])
        n++;
    in = (gw_sigv4_input){v->method, v->path, v->query, n, v->hn, v->hv};
    memset(&a, 0, sizeof(a));
    if (v->authz) {
        REQUIRE(gw_sigv4_parse_header(v->authz, &a) == 0);
        for (int i = 0; i < n; i++) {
            if (strcasecmp(v->hn[i], "x-amz-date") == 0)
                snprintf(a.amz_date, sizeof(a.amz_date), "%s", v->hv[i]);
            if (strcasecmp(v->hn[i], "x-amz-content-sha256") == 0)
                ph = v->hv[i];
        }
    } else {
        REQUIRE(gw_sigv4_parse_query(v->query, &a) == 0);
        ph = "UNSIGNED-PAYLOAD";
    }
    REQUIRE(gw_sigv4_canonical_request(&in, &a, ph ? ph : EMPTYH, &creq) == 0);
    CHECK_STR(creq.data, v->creq);
    REQUIRE(gw_sigv4_string_to_sign(&a, creq.data, creq.len, &sts) == 0);
    if (v->sts)
        CHECK_STR(sts.data, v->sts);
    gw_sigv4_sign(secret, &a, sts.data, sts.len, sig);
    CHECK_STR(sig, v->sig);
    mrd_buf_free(&creq);
    mrd_buf_free(&sts);
}

static void
test_s3_get_object(void)
{
    vec v = {
        "GET",
        "/test.txt",
        "",
        {"Host", "Range", "x-amz-content-sha256", "x-amz-date"},
        {"examplebucket.s3.amazonaws.com", "bytes=0-9", EMPTYH, "20130524T000000Z"},
        "AWS4-HMAC-SHA256 Credential=" AK "/20130524/us-east-1/s3/aws4_request,"
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
        "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"
        "x-amz-content-sha256:" EMPTYH "\nx-amz-date:20130524T000000Z\n\n"
        "host;range;x-amz-content-sha256;x-amz-date\n" EMPTYH,
        "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
        "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972",
        "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
    };
    check_vec(&v, SK);
}

static void
test_s3_put_object(void)
{
    /* '$' in the key is percent-encoded in the canonical URI */
    vec v = {
        "PUT",
        "/test$file.text",
        "",
        {"Host", "Date", "x-amz-date", "x-amz-storage-class", "x-amz-content-sha256"},
        {"examplebucket.s3.amazonaws.com", "Fri, 24 May 2013 00:00:00 GMT", "20130524T000000Z",
         "REDUCED_REDUNDANCY", "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"},
        "AWS4-HMAC-SHA256 Credential=" AK "/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class, "
        "Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
        "PUT\n/test%24file.text\n\ndate:Fri, 24 May 2013 00:00:00 GMT\n"
        "host:examplebucket.s3.amazonaws.com\n"
        "x-amz-content-sha256:44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072\n"
        "x-amz-date:20130524T000000Z\nx-amz-storage-class:REDUCED_REDUNDANCY\n\n"
        "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class\n"
        "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
        "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
        "9e0e90d9c76de8fa5b200d8c849cd5b8dc7a3be3951ddb7f6a76b4158342019d",
        "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
    };
    check_vec(&v, SK);
}

static void
test_s3_get_lifecycle(void)
{
    vec v = {
        "GET",
        "/",
        "lifecycle",
        {"Host", "x-amz-date", "x-amz-content-sha256"},
        {"examplebucket.s3.amazonaws.com", "20130524T000000Z", EMPTYH},
        "AWS4-HMAC-SHA256 Credential=" AK "/20130524/us-east-1/s3/aws4_request,"
        "SignedHeaders=host;x-amz-content-sha256;x-amz-date,"
        "Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
        "GET\n/\nlifecycle=\nhost:examplebucket.s3.amazonaws.com\nx-amz-content-sha256:" EMPTYH
        "\nx-amz-date:20130524T000000Z\n\nhost;x-amz-content-sha256;x-amz-date\n" EMPTYH,
        NULL,
        "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
    };
    check_vec(&v, SK);
}

static void
test_s3_list_objects_sorted_query(void)
{
    vec v = {
        "GET",
        "/",
        "prefix=J&max-keys=2", /* out of order on purpose: canonical form sorts */
        {"Host", "x-amz-date", "x-amz-content-sha256"},
        {"examplebucket.s3.amazonaws.com", "20130524T000000Z", EMPTYH},
        "AWS4-HMAC-SHA256 Credential=" AK "/20130524/us-east-1/s3/aws4_request,"
        "SignedHeaders=host;x-amz-content-sha256;x-amz-date,"
        "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
        "GET\n/\nmax-keys=2&prefix=J\nhost:examplebucket.s3.amazonaws.com\n"
        "x-amz-content-sha256:" EMPTYH "\nx-amz-date:20130524T000000Z\n\n"
        "host;x-amz-content-sha256;x-amz-date\n" EMPTYH,
        NULL,
        "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
    };
    check_vec(&v, SK);
}

#define PRESIGN_Q                                                                                  \
    "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=" AK "%2F20130524%2Fus-east-1%2Fs3%2F"      \
    "aws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"        \
    "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"

static void
test_s3_presigned_url(void)
{
    vec v = {
        "GET",
        "/test.txt",
        PRESIGN_Q,
        {"Host"},
        {"examplebucket.s3.amazonaws.com"},
        NULL,
        "GET\n/test.txt\nX-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=" AK "%2F20130524%2F"
        "us-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&"
        "X-Amz-SignedHeaders=host\nhost:examplebucket.s3.amazonaws.com\n\nhost\nUNSIGNED-PAYLOAD",
        "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
        "3bfa292879f6447bbcda7001decf97f4a54dc650c8942174ae0a9121cf58ad04",
        "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404",
    };
    check_vec(&v, SK);
}

static void
test_suite_get_vanilla(void)
{
    /* aws-sig-v4-test-suite/get-vanilla: no x-amz-content-sha256, empty body */
    vec v = {
        "GET",
        "/",
        "",
        {"Host", "X-Amz-Date"},
        {"example.amazonaws.com", "20150830T123600Z"},
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        "SignedHeaders=host;x-amz-date, "
        "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        "GET\n/"
        "\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n" EMPTYH,
        "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n"
        "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
        "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    };
    check_vec(&v, "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
}

static void
test_header_values_are_trimmed_and_joined(void)
{
    const char *hn[] = {"Host", "X-Multi", "x-multi", "X-Amz-Date"};
    const char *hv[] = {"h", "  a   b  ", "c", "20150830T123600Z"};
    gw_sigv4_input in = {"GET", "/a%2Fb/c+d", "b=2&a=1&a=0&x", 4, hn, hv};
    gw_sigv4_auth a;
    mrd_buf out = {0};

    memset(&a, 0, sizeof(a));
    strcpy(a.signed_headers, "host;x-multi");
    REQUIRE(gw_sigv4_canonical_request(&in, &a, EMPTYH, &out) == 0);
    /* path decoded then re-encoded ('/' kept, '+' escaped); query sorted by
     * name then value; bare "x" becomes "x=" */
    CHECK_STR(out.data, "GET\n/a/b/c%2Bd\na=0&a=1&b=2&x=\nhost:h\nx-multi:a b,c\n\n"
                        "host;x-multi\n" EMPTYH);
    mrd_buf_free(&out);
    /* a signed header the request does not carry cannot verify */
    strcpy(a.signed_headers, "host;x-missing");
    CHECK(gw_sigv4_canonical_request(&in, &a, EMPTYH, &out) == MRD_EINVAL);
    mrd_buf_free(&out);
}

static void
test_parse_header_rejects_malformed(void)
{
    static const char *bad[] = {
        "",
        "AWS4-HMAC-SHA256",
        "AWS AKID:sig",
        "AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request",
        "AWS4-HMAC-SHA256 Credential=AK/2013052/us-east-1/s3/aws4_request,SignedHeaders=host,"
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
        "AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_requesx,SignedHeaders=host,"
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
        "AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request,SignedHeaders=Host,"
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
        "AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request,SignedHeaders=host,"
        "Signature=F0E8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
        "AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request,SignedHeaders=host,"
        "Signature=f0e8",
        "AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request/x,SignedHeaders=host,"
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
        "AWS4-HMAC-SHA256 Foo=bar,Credential=AK/20130524/us-east-1/s3/aws4_request,"
        "SignedHeaders=host,Signature="
        "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
        NULL};
    gw_sigv4_auth a;

    for (int i = 0; bad[i]; i++) {
        if (gw_sigv4_parse_header(bad[i], &a) != MRD_EINVAL) {
            fprintf(stderr, "  accepted: %s\n", bad[i]);
            CHECK(0);
        }
    }
}

/* A request signed by the real signer, then checked by gw_sigv4_verify. */
/* The users of the verification tests: AKIAOTHER and AKIATEST. */
static void
test_users(mrd_config *conf)
{
    memset(conf, 0, sizeof(*conf));
    conf->n_users = 2;
    strcpy(conf->users[0].access_key, "AKIAOTHER");
    strcpy(conf->users[0].secret_key, "other-secret");
    strcpy(conf->users[1].access_key, "AKIATEST");
    strcpy(conf->users[1].secret_key, "testsecretkey");
}

/* X-Amz-Date for t into date, and a's scope for it (us-east-1/s3). */
static void
test_scope(time_t t, char date[17], gw_sigv4_auth *a)
{
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(date, 17, "%Y%m%dT%H%M%SZ", &tm);
    memset(a, 0, sizeof(*a));
    memcpy(a->date, date, 8);
    strcpy(a->region, "us-east-1");
    strcpy(a->service, "s3");
    strcpy(a->amz_date, date);
}

static int
verify_with(const char *secret_used, const char *ak_used, int64_t skew_s, const char **why)
{
    mrd_config conf;
    const char *hn[4], *hv[4];
    char date[17], authz[1600], sig[65];
    gw_sigv4_auth a, out;
    gw_sigv4_input in;
    mrd_buf creq = {0}, sts = {0};
    time_t now = time(NULL);
    int rc;

    test_users(&conf);
    test_scope(now + skew_s, date, &a);
    hn[0] = "Host", hv[0] = "127.0.0.1:9000";
    hn[1] = "x-amz-date", hv[1] = date;
    hn[2] = "x-amz-content-sha256", hv[2] = EMPTYH;
    snprintf(a.access_key, sizeof(a.access_key), "%s", ak_used);
    strcpy(a.signed_headers, "host;x-amz-content-sha256;x-amz-date");
    in = (gw_sigv4_input){"GET", "/b/k", "", 3, hn, hv};
    gw_sigv4_canonical_request(&in, &a, EMPTYH, &creq);
    gw_sigv4_string_to_sign(&a, creq.data, creq.len, &sts);
    gw_sigv4_sign(secret_used, &a, sts.data, sts.len, sig);
    snprintf(authz, sizeof(authz),
             "AWS4-HMAC-SHA256 Credential=%s/%.8s/us-east-1/s3/aws4_request, "
             "SignedHeaders=%s, Signature=%s",
             ak_used, date, a.signed_headers, sig);
    hn[3] = "Authorization", hv[3] = authz;
    in.n_headers = 4;
    rc = gw_sigv4_verify(&in, &conf, (int64_t)now, &out, why);
    mrd_buf_free(&creq);
    mrd_buf_free(&sts);
    return rc;
}

/* A PUT whose canonical URI the client built as signed_uri, sent with path
 * sent_path; gw_sigv4_verify's result. */
static int
verify_uri(const char *signed_uri, const char *sent_path)
{
    mrd_config conf;
    const char *hn[4], *hv[4], *why;
    char date[17], authz[400], sig[65];
    gw_sigv4_auth a, out;
    gw_sigv4_input in;
    mrd_buf creq = {0}, sts = {0};
    time_t now = time(NULL);
    int rc;

    test_users(&conf);
    test_scope(now, date, &a);
    mrd_buf_appendf(&creq,
                    "PUT\n%s\n\nhost:h\nx-amz-content-sha256:UNSIGNED-PAYLOAD\nx-amz-date:%s\n\n"
                    "host;x-amz-content-sha256;x-amz-date\nUNSIGNED-PAYLOAD",
                    signed_uri, date);
    gw_sigv4_string_to_sign(&a, creq.data, creq.len, &sts);
    gw_sigv4_sign("testsecretkey", &a, sts.data, sts.len, sig);
    snprintf(authz, sizeof(authz),
             "AWS4-HMAC-SHA256 Credential=AKIATEST/%.8s/us-east-1/s3/aws4_request, "
             "SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=%s",
             date, sig);
    hn[0] = "Host", hv[0] = "h";
    hn[1] = "x-amz-content-sha256", hv[1] = "UNSIGNED-PAYLOAD";
    hn[2] = "x-amz-date", hv[2] = date;
    hn[3] = "Authorization", hv[3] = authz;
    in = (gw_sigv4_input){"PUT", sent_path, "", 4, hn, hv};
    rc = gw_sigv4_verify(&in, &conf, (int64_t)now, &out, &why);
    mrd_buf_free(&creq);
    mrd_buf_free(&sts);
    return rc;
}

/* The canonical URI: re-encoded, or the path exactly as sent when the
 * client escaped what re-encoding keeps (an escaped '/'). */
static void
test_canonical_uri_as_sent(void)
{
    /* '=' sent raw, signed escaped (botocore) */
    CHECK_EQ_INT(verify_uri("/b/k%3Dv", "/b/k=v"), 0);
    /* '/' in a key escaped by the client and signed that way */
    CHECK_EQ_INT(verify_uri("/b/a%2Fk", "/b/a%2Fk"), 0);
    CHECK_EQ_INT(verify_uri("/b/a/k", "/b/a%2Fk"), 0);
    /* but the signature still binds the path */
    CHECK_EQ_INT(verify_uri("/b/a%2Fk", "/b/a/k"), GW_S3E_SIGNATURE_DOES_NOT_MATCH + 1);
    CHECK_EQ_INT(verify_uri("/b/other", "/b/a%2Fk"), GW_S3E_SIGNATURE_DOES_NOT_MATCH + 1);
    /* a virtual-host request signs its own path */
    CHECK_EQ_INT(verify_uri("/key", "/key"), 0);
    CHECK_EQ_INT(verify_uri("/bucket/key", "/key"), GW_S3E_SIGNATURE_DOES_NOT_MATCH + 1);
}

static void
test_verify_decisions(void)
{
    const char *why;

    CHECK_EQ_INT(verify_with("testsecretkey", "AKIATEST", 0, &why), 0);
    CHECK_EQ_INT(verify_with("testsecretkey", "AKIATEST", 14 * 60, &why), 0);
    CHECK_EQ_INT(verify_with("wrong", "AKIATEST", 0, &why), GW_S3E_SIGNATURE_DOES_NOT_MATCH + 1);
    CHECK_EQ_INT(verify_with("testsecretkey", "AKIANOBODY", 0, &why),
                 GW_S3E_INVALID_ACCESS_KEY_ID + 1);
    CHECK_EQ_INT(verify_with("testsecretkey", "AKIATEST", -16 * 60, &why),
                 GW_S3E_REQUEST_TIME_TOO_SKEWED + 1);
    CHECK_EQ_INT(verify_with("testsecretkey", "AKIATEST", 16 * 60, &why),
                 GW_S3E_REQUEST_TIME_TOO_SKEWED + 1);
}

static void
test_presigned_expiry(void)
{
    mrd_config conf;
    const char *hn[] = {"Host"}, *hv[] = {"examplebucket.s3.amazonaws.com"};
    gw_sigv4_input in = {"GET", "/test.txt", PRESIGN_Q, 1, hn, hv};
    gw_sigv4_auth a;
    const char *why;
    int64_t t0;

    memset(&conf, 0, sizeof(conf));
    conf.n_users = 1;
    strcpy(conf.users[0].access_key, AK);
    strcpy(conf.users[0].secret_key, SK);
    REQUIRE(gw_sigv4_parse_amz_date("20130524T000000Z", &t0) == 0);
    CHECK_EQ_INT(t0, 1369353600);
    CHECK_EQ_INT(gw_sigv4_verify(&in, &conf, t0 + 100, &a, &why), 0);
    CHECK(a.presigned && a.expires == 86400);
    CHECK_EQ_INT(gw_sigv4_verify(&in, &conf, t0 + 86401, &a, &why), GW_S3E_EXPIRED + 1);
    /* anonymous: neither header nor query auth */
    in.query = "";
    CHECK_EQ_INT(gw_sigv4_verify(&in, &conf, t0, &a, &why), GW_S3E_ACCESS_DENIED + 1);
}

static void
test_url_helpers(void)
{
    mrd_buf b = {0};

    CHECK(gw_url_decode("a%2Fb+c%", 8, 0, &b) == MRD_EINVAL);
    mrd_buf_reset(&b);
    CHECK(gw_url_decode("a%2fb+c", 7, 1, &b) == 0);
    CHECK_STR(b.data, "a/b c");
    mrd_buf_reset(&b);
    CHECK(gw_query_param("x=1&prefix=&d=%2F", "prefix", &b) == 1);
    CHECK_STR(b.data, "");
    CHECK(gw_query_param("x=1&prefix=&d=%2F", "d", &b) == 1);
    CHECK_STR(b.data, "/");
    CHECK(gw_query_param("x=1&prefix=&d=%2F", "pre", &b) == 0);
    mrd_buf_reset(&b);
    CHECK(gw_uri_encode(&b, "a b/ü~", 7, 1) == 0);
    CHECK_STR(b.data, "a%20b/%C3%BC~");
    mrd_buf_free(&b);
}

/* x-meridian-write-token (gw_token.c): "<site name or id>:<lsn>". */
static void
test_write_token_parse(void)
{
    mrd_config conf;
    uint32_t site = 99;
    uint64_t lsn = 0;

    memset(&conf, 0, sizeof(conf));
    conf.site_id = 1;
    strcpy(conf.site_name, "a");
    conf.n_peers = 2;
    conf.peers[0].id = 2;
    strcpy(conf.peers[0].name, "b");
    conf.peers[1].id = 30;
    strcpy(conf.peers[1].name, "far-away");
    CHECK_EQ_INT(gw__route_parse_token(&conf, "b:5012", &site, &lsn), 0);
    CHECK_EQ_INT(site, 2);
    CHECK_EQ_INT(lsn, 5012);
    CHECK_EQ_INT(gw__route_parse_token(&conf, "30:0", &site, &lsn), 0);
    CHECK_EQ_INT(site, 30);
    CHECK_EQ_INT(lsn, 0);
    CHECK_EQ_INT(gw__route_parse_token(&conf, "a:7", &site, &lsn), 0);
    CHECK_EQ_INT(site, 0); /* this site */
    CHECK_EQ_INT(gw__route_parse_token(&conf, "1:7", &site, &lsn), 0);
    CHECK_EQ_INT(site, 0);
    CHECK_EQ_INT(gw__route_parse_token(&conf, "far-away:18446744073709551615", &site, &lsn), 0);
    CHECK(lsn == UINT64_MAX);
    static const char *const bad[] = {
        "",     "b",   ":5",   "b:",     "b:-1", "b: 5", "b:5x", "c:5",
        "02:5", "3:5", "b:+5", "b:0x10", "b::5", "b:5 ", NULL,
    };
    for (const char *const *t = bad; *t; t++)
        CHECK_EQ_INT(gw__route_parse_token(&conf, *t, &site, &lsn), MRD_EINVAL);
    CHECK_EQ_INT(gw__route_parse_token(&conf, NULL, &site, &lsn), MRD_EINVAL);
}

/* S3 addressing (gw_addr.c): virtual host under the configured domains,
 * path style otherwise. */
static void
test_s3_addressing(void)
{
    mrd_config conf;
    gw_s3_addr a;

    memset(&conf, 0, sizeof(conf));
    conf.n_s3_domains = 2;
    strcpy(conf.s3_domains[0], "example.com");
    strcpy(conf.s3_domains[1], "s3.example.com");
    /* virtual host, the longest domain wins; the key is the path after '/' */
    REQUIRE(gw_s3_addr_parse(&conf, "my.bkt.s3.example.com:9000", "/a/b%20c", NULL, &a) == 0);
    CHECK_STR(a.bucket, "my.bkt");
    CHECK_STR(a.key, "a/b%20c");
    CHECK_EQ_INT(a.vhost, 1);
    REQUIRE(gw_s3_addr_parse(&conf, "Bkt.Example.COM.", "/", NULL, &a) == 0);
    CHECK_STR(a.bucket, "bkt");
    CHECK(a.key == NULL);
    REQUIRE(gw_s3_addr_parse(&conf, "bkt.example.com", "//k", NULL, &a) == 0);
    CHECK_STR(a.key, "/k");
    /* the domain itself, an IP, an unknown name: path style */
    REQUIRE(gw_s3_addr_parse(&conf, "s3.example.com", "/bkt/k/x", NULL, &a) == 0);
    CHECK_STR(a.bucket, "bkt");
    CHECK_STR(a.key, "k/x");
    CHECK_EQ_INT(a.vhost, 0);
    REQUIRE(gw_s3_addr_parse(&conf, "[::1]:9000", "/Bkt/", NULL, &a) == 0);
    CHECK_STR(a.bucket, "Bkt"); /* kept as sent: refused later, not renamed */
    CHECK(a.key == NULL);
    REQUIRE(gw_s3_addr_parse(&conf, "bkt.example.org", "/", NULL, &a) == 0);
    CHECK_STR(a.bucket, "");
    REQUIRE(gw_s3_addr_parse(&conf, NULL, "/b", NULL, &a) == 0);
    CHECK_STR(a.bucket, "b");
    REQUIRE(gw_s3_addr_parse(&conf, ".example.com", "/b", NULL, &a) == 0);
    CHECK_STR(a.bucket, "b");
    CHECK_EQ_INT(a.vhost, 0);
    /* a peer names the bucket: the path is all key */
    REQUIRE(gw_s3_addr_parse(&conf, "10.0.0.1", "/k", "bkt", &a) == 0);
    CHECK_STR(a.bucket, "bkt");
    CHECK_STR(a.key, "k");
    /* errors */
    CHECK_EQ_INT(gw_s3_addr_parse(&conf, "x", "http://h/b", NULL, &a), MRD_EINVAL);
    CHECK_EQ_INT(gw_s3_addr_parse(&conf, "x", NULL, NULL, &a), MRD_EINVAL);
    char host[128];
    memset(host, 'b', 64);
    strcpy(host + 64, ".example.com");
    CHECK_EQ_INT(gw_s3_addr_parse(&conf, host, "/k", NULL, &a), MRD_ETOOBIG);
    CHECK_EQ_INT(
        gw_s3_addr_parse(&conf, "h",
                         "/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb/k",
                         NULL, &a),
        MRD_ETOOBIG);
    host[63] = '\0'; /* 63 bytes: the longest bucket name */
    strcat(host, ".example.com");
    REQUIRE(gw_s3_addr_parse(&conf, host, "/k", NULL, &a) == 0);
    CHECK_EQ_INT((int)strlen(a.bucket), 63);
}

static const test_case tests[] = {
    TEST(test_write_token_parse),
    TEST(test_s3_addressing),
    TEST(test_s3_get_object),
    TEST(test_s3_put_object),
    TEST(test_s3_get_lifecycle),
    TEST(test_s3_list_objects_sorted_query),
    TEST(test_s3_presigned_url),
    TEST(test_suite_get_vanilla),
    TEST(test_header_values_are_trimmed_and_joined),
    TEST(test_parse_header_rejects_malformed),
    TEST(test_verify_decisions),
    TEST(test_canonical_uri_as_sent),
    TEST(test_presigned_expiry),
    TEST(test_url_helpers),
    {NULL, NULL},
};

TEST_MAIN(tests)
