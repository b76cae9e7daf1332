/*
 * common_test.c - unit tests for common/: errors, buffers, JSON, config
 * validation (each rejection names file, line and key), HLC monotonicity and
 * causality under an injected clock, and CRC32C check values.
 */
#include "common.h"
#include "test.h"

#include <errno.h>

static void
test_strerror(void)
{
    CHECK_STR(mrd_strerror(0), "success");
    CHECK(strstr(mrd_strerror(MRD_ECONFIG), "configuration") != NULL);
    CHECK(strstr(mrd_strerror(MRD_EDURABLE), "fsync") != NULL);
    CHECK(strstr(mrd_strerror(-ENOENT), "No such file") != NULL);
    CHECK_STR(mrd_strerror(12345), "unknown error");
    for (int e = MRD_EFIRST; e >= MRD_ELAST; e--)
        CHECK(mrd_strerror(e) != NULL && strlen(mrd_strerror(e)) > 3);
}

static void
test_crc32c(void)
{
    const char *s = "123456789";
    uint32_t c = mrd_crc32c(0, s, 9);
    CHECK_EQ_INT(c, 0xE3069283u);
    /* chaining equals one pass */
    CHECK_EQ_INT(mrd_crc32c(mrd_crc32c(0, s, 4), s + 4, 5), c);
    CHECK_EQ_INT(mrd_crc32c(0, "", 0), 0);
}

static void
test_json_roundtrip(void)
{
    mrd_buf b = {0};
    mrd_json_w w;
    mrd_json *j = NULL;
    size_t pos = 0;

    mrd_json_w_init(&w, &b);
    mrd_json_w_obj_begin(&w);
    mrd_json_w_key(&w, "site");
    mrd_json_w_str(&w, "a \"quoted\"\n\x01");
    mrd_json_w_key(&w, "n");
    mrd_json_w_int(&w, -42);
    mrd_json_w_key(&w, "list");
    mrd_json_w_arr_begin(&w);
    mrd_json_w_uint(&w, 1);
    mrd_json_w_bool(&w, 1);
    mrd_json_w_null(&w);
    mrd_json_w_obj_begin(&w);
    mrd_json_w_obj_end(&w);
    mrd_json_w_arr_end(&w);
    mrd_json_w_obj_end(&w);
    REQUIRE(mrd_json_w_error(&w) == 0);
    CHECK_STR(b.data,
              "{\"site\":\"a \\\"quoted\\\"\\n\\u0001\",\"n\":-42,\"list\":[1,true,null,{}]}");
    REQUIRE(mrd_json_parse(b.data, b.len, &j, &pos) == 0);
    CHECK_STR(mrd_json_get_str(j, "site", NULL), "a \"quoted\"\n\x01");
    CHECK(mrd_json_get_num(j, "n", 0) == -42);
    const mrd_json *l = mrd_json_get(j, "list");
    REQUIRE(l && l->type == MRD_JSON_ARRAY);
    CHECK(l->child->num == 1 && l->child->next->type == MRD_JSON_BOOL);
    mrd_json_free(j);
    mrd_buf_free(&b);
}

static void
test_json_rejects(void)
{
    static const char *bad[] = {"",         "{",           "{\"a\":1,}", "[1,]",  "01",
                                "\"\\x\"",  "\"\\ud800\"", "{\"a\" 1}",  "[1] 2", "nul",
                                "\"a\nb\"", "-",           "1.",         "{a:1}", "[\"\\u12\"]"};
    mrd_json *j;
    char deep[200];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        j = NULL;
        CHECK(mrd_json_parse(bad[i], strlen(bad[i]), &j, NULL) == MRD_EINVAL);
        CHECK(j == NULL);
    }
    memset(deep, '[', sizeof(deep));
    CHECK(mrd_json_parse(deep, sizeof(deep), &j, NULL) == MRD_EINVAL);
    /* an empty string is a NUL-terminated "" (it once was not) */
    REQUIRE(mrd_json_parse("{\"r\":\"\"}", 8, &j, NULL) == 0);
    CHECK_STR(mrd_json_get_str(j, "r", NULL), "");
    CHECK_EQ_INT(mrd_json_get(j, "r")->str_len, 0);
    mrd_json_free(j);
    CHECK(mrd_json_parse("\"\\ud83d\\ude00\"", 14, &j, NULL) == 0);
    CHECK_STR(j->str, "\xf0\x9f\x98\x80");
    mrd_json_free(j);
}

static const char *good_conf = "# a site\n"
                               "[site]\n"
                               "id = 1\n"
                               "name = a\n"
                               "[listen]\n"
                               "s3 = 127.0.0.1:9001\n"
                               "replication = 127.0.0.1:9101\n"
                               "admin = [::1]:9201\n"
                               "[store]\n"
                               "data_dirs = /d/1, /d/2, /d/3\n"
                               "data_dir = /d/4\n"
                               "data_dirs = /d/5,/d/6\n"
                               "block_size = 1MiB\n"
                               "meta_dir = /m\n"
                               "[admin]\n"
                               "token = 0123456789abcdef\n"
                               "[replication]\n"
                               "secret = fedcba9876543210\n"
                               "[s3]\n"
                               "domain = S3.Example.com, s3.other.example\n"
                               "[peer.b]\n"
                               "id = 2\n"
                               "replication = 127.0.0.1:9102\n"
                               "s3 = 127.0.0.1:9002\n"
                               "[user.alice]\n"
                               "access_key = AKIAALICE\n"
                               "secret_key = alicesecret\n";

static void
test_config_good(void)
{
    mrd_config *c = NULL;
    char err[512] = "";
    int rc = mrd_config_parse("good.ini", good_conf, strlen(good_conf), &c, err, sizeof(err));

    if (rc)
        fprintf(stderr, "  %s\n", err);
    REQUIRE(rc == 0);
    CHECK_EQ_INT(c->site_id, 1);
    CHECK_STR(c->site_name, "a");
    CHECK_EQ_INT(c->n_data_dirs, 6);
    CHECK_STR(c->data_dirs[5], "/d/6");
    CHECK_EQ_INT(c->ec_k, 4);
    CHECK_EQ_INT(c->ec_m, 2);
    CHECK_EQ_INT(c->block_size, 1048576);
    CHECK_STR(c->listen_admin.host, "::1");
    CHECK_EQ_INT(c->listen_admin.port, 9201);
    CHECK_EQ_INT(c->n_peers, 1);
    CHECK_EQ_INT(c->peers[0].id, 2);
    CHECK_STR(c->users[0].secret_key, "alicesecret");
    CHECK_EQ_INT(c->max_clock_skew_s, 900);
    CHECK_EQ_INT(c->n_s3_domains, 2);
    CHECK_STR(c->s3_domains[0], "s3.example.com");
    CHECK_STR(c->s3_domains[1], "s3.other.example");
    CHECK_EQ_INT(c->failed_after_s, 3600);
    CHECK_EQ_INT(c->summary_page_bytes, 0); /* the replicator's default, 4 MiB */
    CHECK_EQ_INT(c->s3_max_uploads, 32);
    mrd_config_free(c);
}

/* Replace the first occurrence of `from` in the good config by `to`, parse,
 * and check the error names the expected fragment. */
static void
expect_reject(const char *from, const char *to, const char *want)
{
    char text[4096], err[512] = "";
    const char *at = strstr(good_conf, from);
    mrd_config *c = NULL;
    int rc;

    if (!at) {
        fprintf(stderr, "  fixture: '%s' not in config\n", from);
        test__failed = 1;
        return;
    }
    snprintf(text, sizeof(text), "%.*s%s%s", (int)(at - good_conf), good_conf, to,
             at + strlen(from));
    rc = mrd_config_parse("site.ini", text, strlen(text), &c, err, sizeof(err));
    if (rc != MRD_ECONFIG || strstr(err, want) == NULL) {
        fprintf(stderr, "  replacing '%s' by '%s': rc=%d err='%s', wanted '%s'\n", from, to, rc,
                err, want);
        test__failed = 1;
    }
    CHECK(c == NULL);
}

static void
test_config_rejects(void)
{
    expect_reject("id = 1\n", "id = zero\n", "site.ini:3: [site] id: 'zero' is not a site id");
    expect_reject("id = 1\n", "id = 1\nid = 3\n", "site.ini:4: [site] id: set twice");
    expect_reject("s3 = 127.0.0.1:9001", "s3 = localhost", "site.ini:6: [listen] s3: 'localhost'");
    expect_reject("s3 = 127.0.0.1:9001", "s3 = 127.0.0.1:70000", "site.ini:6: [listen] s3:");
    expect_reject("s3 = 127.0.0.1:9001", "s3 = localhost:9001",
                  "site.ini:6: [listen] s3: 'localhost' is not a numeric address");
    expect_reject("block_size = 1MiB", "block_size = 1000", "site.ini:13: [store] block_size:");
    expect_reject("block_size = 1MiB", "ec_k = 6", "[store] ec_k: ec_k + ec_m = 8 but only 6");
    expect_reject("[admin]\ntoken = 0123456789abcdef\n", "", "[admin] token: missing");
    expect_reject("meta_dir = /m\n", "", "site.ini:0: [store] meta_dir: missing");
    expect_reject("[listen]", "[lisen]", "site.ini:5: [lisen] -: unknown section");
    expect_reject("name = a\n", "name = a\ncolour = blue\n",
                  "site.ini:5: [site] colour: unknown key");
    expect_reject("name = a\n", "name = A B\n", "site.ini:4: [site] name:");
    expect_reject("id = 2\n", "id = 1\n", "[peer.b] id: 1 is this site's own id");
    expect_reject("secret = fedcba9876543210\n", "",
                  "[replication] secret: missing; sites with peers must authenticate them: set a "
                  "shared secret (16+ characters), or configure mutual TLS");
    expect_reject("secret = fedcba9876543210\n", "secret = fedcba9876543210\nfailed_after = 1h\n",
                  "[replication] failed_after: '1h' is not valid");
    expect_reject("secret = fedcba9876543210\n",
                  "secret = fedcba9876543210\nanti_entropy_page = 1KiB\n",
                  "[replication] anti_entropy_page: '1KiB' is not valid; use a size of 4KiB..4MiB");
    expect_reject("secret = fedcba9876543210\n",
                  "secret = fedcba9876543210\nanti_entropy_page = 8MiB\n",
                  "[replication] anti_entropy_page: '8MiB' is not valid");
    expect_reject("data_dirs = /d/5,/d/6", "data_dirs = /d/5,/d/1", "'/d/1' is listed twice");
    expect_reject("[site]\n", "oops\n[site]\n", "site.ini:2: [-] -: expected key = value");
    expect_reject("# a site\n", "x = 1\n", "site.ini:1: [-] x: key outside any section");
    expect_reject("token = 0123456789abcdef", "token = short", "[admin] token: too short");
    expect_reject("secret = fedcba9876543210\n", "secret = fedcba9876543210\nmax_clock_skew = 5\n",
                  "[replication] max_clock_skew: '5' is not valid");
    expect_reject("S3.Example.com,", "s3.example.com:9000,",
                  "[s3] domain: 's3.example.com:9000' is not a domain name");
    expect_reject("S3.Example.com,", "http://s3.example.com,", "is not a domain name");
    expect_reject("S3.Example.com,", ".s3.example.com,", "is not a domain name");
    expect_reject("S3.Example.com,", "s3..example.com,", "is not a domain name");
    expect_reject("S3.Example.com,", "s3.example-.com,", "is not a domain name");
    expect_reject("S3.Example.com, s3.other.example", " , ", "[s3] domain: empty");
    expect_reject("[s3]\n", "[s3]\nmax_uploads = -1\n",
                  "[s3] max_uploads: '-1' is not valid; use 0 (no limit) or 1..100000");
    expect_reject("S3.Example.com,", "s3.other.example,", "'s3.other.example' is listed twice");
    expect_reject("domain = S3", "domain = a\ndomain = b\nx = S3", "[s3] domain: set twice");
    expect_reject("domain = S3", "domains = S3", "[s3] domains: unknown key; [s3] takes domain");
    /* TLS */
    expect_reject("s3 = 127.0.0.1:9002\n", "s3 = 127.0.0.1:9002\ntls_pin = sha256:abcd\n",
                  "[peer.b] tls_pin: 'sha256:abcd' is not a pin");
    expect_reject("secret = fedcba9876543210\n", "secret = fedcba9876543210\ntls_cert = a.crt\n",
                  "[replication] tls_key: missing");
    expect_reject("secret = fedcba9876543210\n",
                  "secret = fedcba9876543210\ntls_cert = a.crt\ntls_key = a.key\n",
                  "[peer.b] tls_pin: missing");
    expect_reject("admin = [::1]:9201\n", "admin = [::1]:9201\ns3_tls = 127.0.0.1:9443\n",
                  "[s3] tls_cert: missing");
    expect_reject("[admin]\n", "[s3]\ntls_cert = s.crt\ntls_key = s.key\n[admin]\n",
                  "[listen] s3_tls: missing");
    expect_reject("[admin]\n", "[s3]\ntls_crt = x\n[admin]\n", "[s3] tls_crt: unknown key");
}

/* The TLS keys: paths relative to the config file, pins with or without
 * colons and prefix. */
static void
test_config_tls(void)
{
    const char *pin = "AB:cd:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:"
                      "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:0f";
    char text[4096], err[512] = "";
    mrd_config *c = NULL;
    int rc;

    snprintf(text, sizeof(text),
             "%s[listen]\ns3_tls = 127.0.0.1:9443\n[s3]\ntls_cert = s3.crt\ntls_key = /k/s3.key\n"
             "[replication]\ntls_cert = site.crt\ntls_key = site.key\n"
             "[peer.c]\nid = 3\nreplication = 127.0.0.1:9103\ntls_pin = sha256:%s\n"
             "[peer.d]\nid = 4\nreplication = 127.0.0.1:9104\ntls_pin = %064d\n",
             good_conf, pin, 7);
    /* peer.b of the good config has no pin: with tls_ca that is allowed */
    rc = mrd_config_parse("/etc/mrd/site.ini", text, strlen(text), &c, err, sizeof(err));
    CHECK(rc == MRD_ECONFIG && strstr(err, "[peer.b] tls_pin: missing"));
    strcat(text, "[replication]\ntls_ca = ca.crt\n");
    rc = mrd_config_parse("/etc/mrd/site.ini", text, strlen(text), &c, err, sizeof(err));
    if (rc)
        fprintf(stderr, "  %s\n", err);
    REQUIRE(rc == 0);
    CHECK(c->has_s3_tls);
    CHECK_EQ_INT(c->listen_s3_tls.port, 9443);
    CHECK_STR(c->s3_tls_cert, "/etc/mrd/s3.crt");
    CHECK_STR(c->s3_tls_key, "/k/s3.key");
    CHECK_STR(c->repl_tls_cert, "/etc/mrd/site.crt");
    CHECK_STR(c->repl_tls_ca, "/etc/mrd/ca.crt");
    CHECK(!c->peers[0].has_tls_pin);
    CHECK(c->peers[1].has_tls_pin);
    CHECK_EQ_INT(c->peers[1].tls_pin[0], 0xab);
    CHECK_EQ_INT(c->peers[1].tls_pin[31], 0x0f);
    CHECK_EQ_INT(c->peers[2].tls_pin[31], 0x07);
    CHECK_STR(c->replication_secret, "fedcba9876543210");
    mrd_config_free(c);
    c = NULL;

    /* Mutual TLS authenticates every peer (pins, and the CA for b): the
     * secret may go, but not write_failover = forward, which signs with it. */
    {
        char *sec = strstr(text, "secret = fedcba9876543210\n");

        REQUIRE(sec != NULL);
        memmove(sec, sec + strlen("secret = fedcba9876543210\n"),
                strlen(sec + strlen("secret = fedcba9876543210\n")) + 1);
    }
    rc = mrd_config_parse("/etc/mrd/site.ini", text, strlen(text), &c, err, sizeof(err));
    if (rc)
        fprintf(stderr, "  %s\n", err);
    REQUIRE(rc == 0);
    CHECK_STR(c->replication_secret, "");
    mrd_config_free(c);
    c = NULL;
    strcat(text, "[replication]\nwrite_failover = forward\n");
    rc = mrd_config_parse("/etc/mrd/site.ini", text, strlen(text), &c, err, sizeof(err));
    CHECK(rc == MRD_ECONFIG && strstr(err, "[replication] write_failover: forward needs a secret"));
}

static void
test_config_missing_file(void)
{
    mrd_config *c = NULL;
    char err[512];
    int rc = mrd_config_load("/nonexistent/meridian.ini", &c, err, sizeof(err));

    CHECK_EQ_INT(rc, -ENOENT);
    CHECK(strstr(err, "/nonexistent/meridian.ini: cannot open") != NULL);
}

static uint64_t fake_ms;
static uint64_t
fake_clock(void *ud)
{
    (void)ud;
    return fake_ms;
}

static void
test_hlc(void)
{
    mrd_hlc *a = NULL, *b = NULL;
    mrd_hlc_stamp s1, s2, s3, r;

    REQUIRE(mrd_hlc_new(fake_clock, NULL, &a) == 0);
    REQUIRE(mrd_hlc_new(fake_clock, NULL, &b) == 0);
    fake_ms = 1000;
    s1 = mrd_hlc_now(a);
    s2 = mrd_hlc_now(a);
    CHECK(s2 > s1);
    CHECK_EQ_INT(MRD_HLC_MS(s1), 1000);
    /* wall clock goes backwards: still monotonic */
    fake_ms = 500;
    s3 = mrd_hlc_now(a);
    CHECK(s3 > s2);
    /* a remote stamp from the future is merged: the next local stamp is after it */
    r = ((uint64_t)999999 << 16) | 7;
    CHECK(mrd_hlc_observe(b, r) > r);
    CHECK(mrd_hlc_now(b) > r);
    /* the wall clock catching up takes over again */
    fake_ms = 2000000;
    CHECK_EQ_INT(MRD_HLC_MS(mrd_hlc_now(b)), 2000000);
    /* logical overflow carries into the ms field instead of wrapping */
    fake_ms = 10;
    mrd_hlc_stamp prev = mrd_hlc_now(a);
    for (int i = 0; i < 70000; i++) {
        mrd_hlc_stamp n = mrd_hlc_now(a);
        if (n <= prev) {
            CHECK(n > prev);
            break;
        }
        prev = n;
    }
    mrd_hlc_free(a);
    mrd_hlc_free(b);
}

static void
test_sizes_addrs(void)
{
    uint64_t v;
    mrd_addr a;
    char out[300];

    CHECK(mrd_size_parse("64KiB", &v) == 0 && v == 65536);
    CHECK(mrd_size_parse("1.5GB", &v) == 0 && v == 1500000000u);
    CHECK(mrd_size_parse("10 MiB", &v) == 0 && v == 10485760);
    CHECK(mrd_size_parse("10 parsecs", &v) == MRD_EINVAL);
    CHECK(mrd_size_parse("-1", &v) == MRD_EINVAL);
    CHECK(mrd_addr_parse("[::1]:80", &a) == 0 && a.port == 80);
    CHECK_STR(mrd_addr_format(&a, out, sizeof(out)), "[::1]:80");
    CHECK(mrd_addr_parse("::1:80", &a) == MRD_EINVAL);
    CHECK(mrd_addr_parse("host:0", &a) == MRD_EINVAL);
    CHECK(mrd_consttime_equal("abc", 3, "abc", 3) == 1);
    CHECK(mrd_consttime_equal("abc", 3, "abd", 3) == 0);
    CHECK(mrd_consttime_equal("abc", 3, "abcd", 4) == 0);
}

static const test_case cases[] = {TEST(test_strerror),
                                  TEST(test_crc32c),
                                  TEST(test_json_roundtrip),
                                  TEST(test_json_rejects),
                                  TEST(test_config_good),
                                  TEST(test_config_rejects),
                                  TEST(test_config_tls),
                                  TEST(test_config_missing_file),
                                  TEST(test_hlc),
                                  TEST(test_sizes_addrs),
                                  {NULL, NULL}};

TEST_MAIN(cases)
