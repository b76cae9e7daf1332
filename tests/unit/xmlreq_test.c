/*
 * xmlreq_test.c - the XML request-body reader (gateway/gw_xmlreq.c) and the
 * DeleteObjects document: namespaces (default and prefixed), entities and
 * CDATA in keys, Quiet, VersionId, pretty-printing of any length, and the
 * refusals: not well-formed, another root, a DOCTYPE (entity expansion),
 * nesting too deep, text too long, objects without a key, more than 1000;
 * and the CompleteMultipartUpload document: quoted and entity-quoted ETags,
 * ignored checksum elements, part numbers out of range or repeated.
 */
#include "gw_int.h"
#include "test.h"

static void
test_delete_document(void)
{
    const char *doc = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                      "<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\n"
                      "  <Quiet>true</Quiet>\n"
                      "  <Object><Key>a/b &amp; c&#x3C;.txt</Key></Object>\n"
                      "  <Object><Key><![CDATA[<raw>]]></Key><VersionId>null</VersionId>"
                      "<Unknown>ignored</Unknown></Object>\n"
                      "</Delete>\n";
    gw_delete_req d;

    REQUIRE(gw_xml_parse_delete(doc, strlen(doc), &d) == 0);
    CHECK_EQ_INT(d.quiet, 1);
    REQUIRE(d.n == 2);
    CHECK_STR(d.objs[0].key, "a/b & c<.txt");
    CHECK(d.objs[0].version_id == NULL);
    CHECK_STR(d.objs[1].key, "<raw>");
    CHECK_STR(d.objs[1].version_id, "null");
    gw_delete_req_clear(&d);

    doc = "<s3:Delete xmlns:s3=\"http://s3.amazonaws.com/doc/2006-03-01/\"><s3:Object>"
          "<s3:Key> spaced </s3:Key></s3:Object><s3:Quiet>false</s3:Quiet></s3:Delete>";
    REQUIRE(gw_xml_parse_delete(doc, strlen(doc), &d) == 0);
    CHECK_EQ_INT(d.quiet, 0);
    CHECK_STR(d.objs[0].key, " spaced ");
    gw_delete_req_clear(&d);
}

static void
test_delete_limits(void)
{
    mrd_buf b = {0};
    gw_delete_req d;

    /* 1000 keys, indented: accepted; 1001: too many */
    mrd_buf_appendf(&b, "<Delete>\n");
    for (int i = 0; i < 1000; i++)
        mrd_buf_appendf(&b, "    <Object>\n        <Key>key-%04d</Key>\n    </Object>\n", i);
    mrd_buf_appendf(&b, "</Delete>");
    REQUIRE(gw_xml_parse_delete(b.data, b.len, &d) == 0);
    CHECK_EQ_INT(d.n, 1000);
    CHECK_STR(d.objs[999].key, "key-0999");
    gw_delete_req_clear(&d);
    b.len -= strlen("</Delete>");
    mrd_buf_appendf(&b, "<Object><Key>one-more</Key></Object></Delete>");
    CHECK(gw_xml_parse_delete(b.data, b.len, &d) == MRD_ETOOBIG);
    /* a key longer than the text bound */
    mrd_buf_reset(&b);
    mrd_buf_appendf(&b, "<Delete><Object><Key>");
    for (unsigned i = 0; i < GW_XML_MAX_TEXT + 1; i++)
        mrd_buf_append(&b, "k", 1);
    mrd_buf_appendf(&b, "</Key></Object></Delete>");
    CHECK(gw_xml_parse_delete(b.data, b.len, &d) == MRD_EINVAL);
    mrd_buf_free(&b);
}

static void
test_malformed(void)
{
    static const char *const bad[] = {
        "",
        "not xml",
        "<Delete>",
        "<Delete><Object><Key>k</Key></Object>",
        "<Delete><Object><Key>k</Object></Key></Delete>",
        "<Other><Object><Key>k</Key></Object></Other>",
        "<Delete></Delete>",
        "<Delete><Object></Object></Delete>",
        "<Delete><Object><Key></Key></Object></Delete>",
        "<Delete><Object><Key>a</Key><Key>b</Key></Object></Delete>",
        "<Delete><Quiet>yes</Quiet><Object><Key>k</Key></Object></Delete>",
        "<Delete><Object><Key>k</Key></Object></Delete><Delete/>",
        "<!DOCTYPE Delete [<!ENTITY e \"x\">]><Delete><Object><Key>&e;</Key></Object></Delete>",
        "<Delete><Object><Key>&undefined;</Key></Object></Delete>",
        "<Delete><a><b><c><d><e><f><g><h>deep</h></g></f></e></d></c></b></a></Delete>",
        NULL};
    gw_delete_req d;

    for (const char *const *s = bad; *s; s++) {
        int rc = gw_xml_parse_delete(*s, strlen(*s), &d);
        if (rc != MRD_EINVAL)
            fprintf(stderr, "  accepted or wrong code %d: %s\n", rc, *s);
        CHECK(rc == MRD_EINVAL);
    }
}

static int
complete(const char *body, gw_complete_part **parts, size_t *n)
{
    return gw_xml_parse_complete(body, strlen(body), parts, n);
}

static void
test_complete_document(void)
{
    gw_complete_part *p = NULL;
    size_t n = 0;
    const char *good =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
        "<Part><ETag>\"a54357aff0632cce46d942af68356b38\"</ETag><PartNumber>1</PartNumber></Part>"
        "<Part><PartNumber>3</PartNumber><ETag>&quot;0c78aef83f66abc1fa1e8477f296d394&quot;"
        "</ETag><ChecksumCRC32>AAAAAA==</ChecksumCRC32></Part>"
        "<Part><PartNumber>10000</PartNumber><ETag> bare </ETag></Part>"
        "</CompleteMultipartUpload>";

    REQUIRE(complete(good, &p, &n) == 0);
    REQUIRE(n == 3);
    CHECK_EQ_INT(p[0].number, 1);
    CHECK_STR(p[0].etag, "a54357aff0632cce46d942af68356b38");
    CHECK_EQ_INT(p[1].number, 3);
    CHECK_STR(p[1].etag, "0c78aef83f66abc1fa1e8477f296d394");
    CHECK_EQ_INT(p[2].number, 10000);
    CHECK_STR(p[2].etag, "bare");
    free(p);
    /* an ETag too long to be any part's is kept empty: InvalidPart later */
    {
        char body[400];
        snprintf(body, sizeof(body),
                 "<CompleteMultipartUpload><Part><PartNumber>2</PartNumber><ETag>%0200d</ETag>"
                 "</Part></CompleteMultipartUpload>",
                 7);
        REQUIRE(complete(body, &p, &n) == 0);
        CHECK(n == 1 && p[0].etag[0] == '\0');
        free(p);
    }
}

static void
test_complete_malformed(void)
{
    static const char *const bad[] = {
        "",
        "<CompleteMultipartUpload/>",
        "<CompleteMultipartUpload></CompleteMultipartUpload>",
        "<Delete><Part><PartNumber>1</PartNumber><ETag>e</ETag></Part></Delete>",
        "<CompleteMultipartUpload><Part><ETag>e</ETag></Part></CompleteMultipartUpload>",
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber></Part>"
        "</CompleteMultipartUpload>",
        "<CompleteMultipartUpload><Part><PartNumber>0</PartNumber><ETag>e</ETag></Part>"
        "</CompleteMultipartUpload>",
        "<CompleteMultipartUpload><Part><PartNumber>10001</PartNumber><ETag>e</ETag></Part>"
        "</CompleteMultipartUpload>",
        "<CompleteMultipartUpload><Part><PartNumber>x</PartNumber><ETag>e</ETag></Part>"
        "</CompleteMultipartUpload>",
        "<CompleteMultipartUpload><Part><PartNumber>-1</PartNumber><ETag>e</ETag></Part>"
        "</CompleteMultipartUpload>",
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><PartNumber>2</PartNumber>"
        "<ETag>e</ETag></Part></CompleteMultipartUpload>",
        "<!DOCTYPE x [<!ENTITY a 'b'>]><CompleteMultipartUpload><Part><PartNumber>1"
        "</PartNumber><ETag>&a;</ETag></Part></CompleteMultipartUpload>",
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>e</ETag></Part>",
    };
    gw_complete_part *p = NULL;
    size_t n = 0;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = complete(bad[i], &p, &n);
        if (rc != MRD_EINVAL)
            fprintf(stderr, "  case %zu: rc %d\n", i, rc);
        CHECK_EQ_INT(rc, MRD_EINVAL);
    }
}

static void
test_tagging(void)
{
    const char *doc = "<Tagging xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><TagSet>"
                      "<Tag><Key>project</Key><Value>blue sky</Value></Tag>"
                      "<Tag><Key>a&amp;b=c</Key><Value></Value></Tag>"
                      "</TagSet></Tagging>";
    gw_tagset t = {0}, back = {0};
    mrd_buf enc = {0}, big = {0};

    REQUIRE(gw_xml_parse_tagging(doc, strlen(doc), &t) == 0);
    REQUIRE(t.n == 2);
    CHECK_STR(t.key[0], "project");
    CHECK_STR(t.value[0], "blue sky");
    CHECK_STR(t.key[1], "a&b=c");
    CHECK_STR(t.value[1], "");
    REQUIRE(gw_tagset_encode(&t, &enc) == 0);
    CHECK_STR(enc.data, "project=blue%20sky&a%26b%3Dc=");
    REQUIRE(gw_tagset_parse_query(enc.data, &back) == 0);
    CHECK(back.n == 2 && strcmp(back.key[1], "a&b=c") == 0 &&
          strcmp(back.value[0], "blue sky") == 0);
    /* the header form: '+' is a space, empty set */
    REQUIRE(gw_tagset_parse_query("k+1=v+1&x=", &back) == 0);
    CHECK_STR(back.key[0], "k 1");
    CHECK(gw_tagset_parse_query("", &back) == 0 && back.n == 0);
    doc = "<Tagging><TagSet/></Tagging>";
    CHECK(gw_xml_parse_tagging(doc, strlen(doc), &t) == 0 && t.n == 0);
    /* limits: 11 tags, a repeated key, a 129-byte key: InvalidTag */
    mrd_buf_appendf(&big, "<Tagging><TagSet>");
    for (int i = 0; i < 11; i++)
        mrd_buf_appendf(&big, "<Tag><Key>k%d</Key><Value>v</Value></Tag>", i);
    mrd_buf_appendf(&big, "</TagSet></Tagging>");
    CHECK(gw_xml_parse_tagging(big.data, big.len, &t) == MRD_ETOOBIG);
    /* a bucket's set takes 50: 11 fit, 50 fit, 51 do not */
    t.max = GW_TAGS_MAX;
    CHECK(gw_xml_parse_tagging(big.data, big.len, &t) == 0 && t.n == 11 && t.max == 50);
    mrd_buf_reset(&big);
    mrd_buf_appendf(&big, "<Tagging><TagSet>");
    for (int i = 0; i < 50; i++)
        mrd_buf_appendf(&big, "<Tag><Key>k%d</Key><Value>v</Value></Tag>", i);
    CHECK(gw_xml_parse_tagging(big.data, big.len + 0, &t) != 0); /* not closed */
    mrd_buf_appendf(&big, "</TagSet></Tagging>");
    CHECK(gw_xml_parse_tagging(big.data, big.len, &t) == 0 && t.n == 50);
    mrd_buf_reset(&enc);
    REQUIRE(gw_tagset_encode(&t, &enc) == 0);
    back.max = GW_TAGS_MAX;
    CHECK(gw_tagset_parse_query(enc.data, &back) == 0 && back.n == 50);
    back.max = 0;
    CHECK(gw_tagset_parse_query(enc.data, &back) == MRD_ETOOBIG);
    mrd_buf_reset(&big);
    mrd_buf_appendf(&big, "<Tagging><TagSet>");
    for (int i = 0; i < 51; i++)
        mrd_buf_appendf(&big, "<Tag><Key>k%d</Key><Value>v</Value></Tag>", i);
    mrd_buf_appendf(&big, "</TagSet></Tagging>");
    CHECK(gw_xml_parse_tagging(big.data, big.len, &t) == MRD_ETOOBIG);
    t.max = 0;
    CHECK(gw_tagset_parse_query("a=1&a=2", &t) == MRD_ETOOBIG);
    mrd_buf_reset(&big);
    mrd_buf_appendf(&big, "k");
    for (int i = 0; i < GW_TAG_KEY_MAX; i++)
        mrd_buf_append(&big, "x", 1);
    mrd_buf_appendf(&big, "=v");
    CHECK(gw_tagset_parse_query(big.data, &t) == MRD_ETOOBIG);
    /* malformed: a Tag without a Value, two Keys, a bad escape */
    doc = "<Tagging><TagSet><Tag><Key>k</Key></Tag></TagSet></Tagging>";
    CHECK(gw_xml_parse_tagging(doc, strlen(doc), &t) == MRD_EINVAL);
    doc = "<Tagging><TagSet><Tag><Key>k</Key><Key>j</Key><Value/></Tag></TagSet></Tagging>";
    CHECK(gw_xml_parse_tagging(doc, strlen(doc), &t) == MRD_EINVAL);
    CHECK(gw_tagset_parse_query("a=%zz", &t) == MRD_EINVAL);
    mrd_buf_free(&enc);
    mrd_buf_free(&big);
}

static void
test_versioning(void)
{
    static const char *const bad[] = {
        "<VersioningConfiguration/>",
        "<VersioningConfiguration><Status>enabled</Status></VersioningConfiguration>",
        "<VersioningConfiguration><Status>Enabled</Status><Status>Enabled</Status>"
        "</VersioningConfiguration>",
        "<VersioningConfiguration><Status>Enabled</Status>",
        "<Versioning><Status>Enabled</Status></Versioning>",
        "<VersioningConfiguration><Status>Disabled</Status></VersioningConfiguration>",
        NULL};
    const char *doc = "<?xml version=\"1.0\"?><VersioningConfiguration "
                      "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Status>Enabled</Status>"
                      "<MfaDelete>Disabled</MfaDelete></VersioningConfiguration>";
    int state = 0;

    CHECK(gw_xml_parse_versioning(doc, strlen(doc), &state) == 0 && state == 1);
    doc = "<VersioningConfiguration><Status>Suspended</Status></VersioningConfiguration>";
    CHECK(gw_xml_parse_versioning(doc, strlen(doc), &state) == 0 && state == 2);
    for (const char *const *b = bad; *b; b++) {
        state = 7;
        CHECK(gw_xml_parse_versioning(*b, strlen(*b), &state) == MRD_EINVAL);
        CHECK(state == 7);
    }
}

static const test_case tests[] = {
    TEST(test_delete_document),    TEST(test_delete_limits),
    TEST(test_malformed),          TEST(test_complete_document),
    TEST(test_complete_malformed), TEST(test_tagging),
    TEST(test_versioning),         {NULL, NULL},
};

TEST_MAIN(tests)
