/*
 * tls.c - OpenSSL contexts and TLS bufferevents (libevent's
 * bufferevent_openssl) for Meridian's listeners and site links.
 *
 * Contexts. One SSL_CTX per use (the S3 listener; the replication links,
 * which both accept and dial with the same certificate). The floor is TLS
 * 1.2; TLS 1.2 suites are limited to ECDHE key exchange with AEAD ciphers
 * (AES-GCM, ChaCha20-Poly1305), TLS 1.3 keeps OpenSSL's default suites.
 * Compression and renegotiation are off. The certificate, key and CA file
 * are loaded once at start-up; a problem is a configuration error that
 * names the file and OpenSSL's reason.
 *
 * Peer certificates. With verify_peer, both a server and a client demand a
 * certificate (SSL_VERIFY_FAIL_IF_NO_PEER_CERT), and the whole chain check
 * is replaced by our own (SSL_CTX_set_cert_verify_callback): the leaf's
 * SHA-256 fingerprints (certificate and SPKI), its commonName and, when a
 * CA file is configured, the result of the standard X.509 chain check are
 * handed to the bufferevent's check callback, which decides. Pinned
 * self-signed certificates thus work without a CA, and the reason for a
 * refusal is the caller's words, not X.509 error numbers. A refusal fails
 * the handshake with an alert; the reason stays with the SSL object for
 * tls_bev_error.
 *
 * Per-connection state (the check, its user data, the refusal reason) is a
 * small struct in the SSL's ex_data, freed by OpenSSL when the SSL is
 * freed, which bufferevent_free does (BEV_OPT_CLOSE_ON_FREE).
 *
 * Shutdown: peers that close without close_notify are common (curl, most
 * HTTP clients); "dirty shutdown" is allowed, so they show as EOF, not as
 * an error.
 */
#include "tls.h"

#include "common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#define TLS12_CIPHERS                                                                              \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"     \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

struct tls_ctx {
    SSL_CTX *ctx;
    int has_ca;
    int verify_peer;
    unsigned char alpn_wire[32]; /* length-prefixed, as ALPN sends it */
    size_t alpn_wire_len;
};

typedef struct tls_conn {
    tls_ctx *t;
    tls_check_fn check;
    void *check_ud;
    char why[160]; /* the check's refusal */
} tls_conn;

static int conn_idx = -1;

static void
conn_free_cb(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    free(ptr);
}

static void
openssl_reason(char *out, size_t outsz)
{
    unsigned long e = ERR_get_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;

    snprintf(out, outsz, "%s", r ? r : "unknown OpenSSL error");
    ERR_clear_error();
}

int
tls_identify(const uint8_t *pin, const char *pin_what, const char *name, const tls_peer_cert *pc,
             char *why, size_t whysz)
{
    char fp[80];

    if (pin) {
        if (memcmp(pin, pc->cert_sha256, 32) == 0 || memcmp(pin, pc->spki_sha256, 32) == 0)
            return 1;
        tls_fingerprint_format(pc->cert_sha256, fp, sizeof(fp));
        snprintf(why, whysz, "certificate does not match the %s of peer %s (got %.23s...)",
                 pin_what, name, fp);
        return 0;
    }
    if (!pc->chain_ok) {
        snprintf(why, whysz, "peer %s has no %s and its certificate fails the CA: %s", name,
                 pin_what, pc->chain_error);
        return 0;
    }
    if (strcmp(pc->cn, name) != 0) {
        snprintf(why, whysz, "CA-signed certificate names CN '%s', not peer %s", pc->cn, name);
        return 0;
    }
    return 1;
}

void
tls_fingerprint_format(const uint8_t fp[32], char *out, size_t outsz)
{
    char hex[65];

    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", fp[i]);
    snprintf(out, outsz, "sha256:%s", hex);
}

static void
peer_cert_summary(X509 *x, tls_peer_cert *pc)
{
    unsigned int n = 0;
    unsigned char *der = NULL;
    int len;
    X509_NAME *subj;

    X509_digest(x, EVP_sha256(), pc->cert_sha256, &n);
    len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &der);
    if (len > 0) {
        EVP_Digest(der, (size_t)len, pc->spki_sha256, &n, EVP_sha256(), NULL);
        OPENSSL_free(der);
    }
    subj = X509_get_subject_name(x);
    if (!subj || X509_NAME_get_text_by_NID(subj, NID_commonName, pc->cn, sizeof(pc->cn)) < 0)
        pc->cn[0] = '\0';
}

/* Replaces OpenSSL's chain verification: the caller's check decides. */
static int
cert_verify_cb(X509_STORE_CTX *sctx, void *arg)
{
    tls_ctx *t = arg;
    SSL *ssl = X509_STORE_CTX_get_ex_data(sctx, SSL_get_ex_data_X509_STORE_CTX_idx());
    tls_conn *tc = ssl ? SSL_get_ex_data(ssl, conn_idx) : NULL;
    X509 *leaf = X509_STORE_CTX_get0_cert(sctx);
    tls_peer_cert pc;
    int ok;

    if (!leaf || !tc) {
        X509_STORE_CTX_set_error(sctx, X509_V_ERR_APPLICATION_VERIFICATION);
        return 0;
    }
    memset(&pc, 0, sizeof(pc));
    peer_cert_summary(leaf, &pc);
    if (t->has_ca) {
        pc.chain_ok = X509_verify_cert(sctx) == 1;
        if (!pc.chain_ok)
            snprintf(pc.chain_error, sizeof(pc.chain_error), "%s",
                     X509_verify_cert_error_string(X509_STORE_CTX_get_error(sctx)));
    } else {
        snprintf(pc.chain_error, sizeof(pc.chain_error), "no CA file configured");
    }
    if (tc->check)
        ok = tc->check(tc->check_ud, &pc, tc->why, sizeof(tc->why));
    else
        ok = pc.chain_ok;
    if (!ok && !tc->why[0])
        snprintf(tc->why, sizeof(tc->why), "certificate not trusted: %s", pc.chain_error);
    /* CERT_REJECTED makes the alert "bad certificate": the peer learns that
     * its certificate, not the handshake, is the problem */
    X509_STORE_CTX_set_error(sctx, ok ? X509_V_OK : X509_V_ERR_CERT_REJECTED);
    return ok;
}

static int
alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
               unsigned int inlen, void *arg)
{
    tls_ctx *t = arg;

    if (SSL_select_next_proto((unsigned char **)out, outlen, t->alpn_wire,
                              (unsigned int)t->alpn_wire_len, in, inlen) == OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_OK;
    /* Mutual links insist (no_application_protocol alert); a public
     * listener carries on without ALPN for clients that offer others. */
    return t->verify_peer ? SSL_TLSEXT_ERR_ALERT_FATAL : SSL_TLSEXT_ERR_NOACK;
}

int
tls_ctx_new(const tls_opts *o, tls_ctx **out, char *err, size_t errsz)
{
    tls_ctx *t;
    char why[160];
    int rc = MRD_ECONFIG;

    if (!o || !o->cert_file || !o->key_file) {
        snprintf(err, errsz, "a certificate and a key file are required");
        return MRD_ECONFIG;
    }
    if (conn_idx < 0)
        conn_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, conn_free_cb);
    t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    ERR_clear_error();
    t->ctx = SSL_CTX_new(TLS_method());
    if (!t->ctx || conn_idx < 0) {
        openssl_reason(why, sizeof(why));
        snprintf(err, errsz, "cannot create a TLS context: %s", why);
        goto fail;
    }
    SSL_CTX_set_min_proto_version(t->ctx, o->tls13_only ? TLS1_3_VERSION : TLS1_2_VERSION);
    SSL_CTX_set_options(t->ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                    SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(t->ctx, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_set_cipher_list(t->ctx, TLS12_CIPHERS) != 1) {
        openssl_reason(why, sizeof(why));
        snprintf(err, errsz, "cannot set the cipher list: %s", why);
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(t->ctx, o->cert_file) != 1) {
        openssl_reason(why, sizeof(why));
        snprintf(err, errsz, "%s: cannot load the certificate: %s", o->cert_file, why);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(t->ctx, o->key_file, SSL_FILETYPE_PEM) != 1) {
        openssl_reason(why, sizeof(why));
        snprintf(err, errsz, "%s: cannot load the private key: %s", o->key_file, why);
        goto fail;
    }
    if (SSL_CTX_check_private_key(t->ctx) != 1) {
        openssl_reason(why, sizeof(why));
        snprintf(err, errsz, "%s does not match the certificate in %s: %s", o->key_file,
                 o->cert_file, why);
        goto fail;
    }
    if (o->ca_file && o->ca_file[0]) {
        if (SSL_CTX_load_verify_locations(t->ctx, o->ca_file, NULL) != 1) {
            openssl_reason(why, sizeof(why));
            snprintf(err, errsz, "%s: cannot load the CA certificates: %s", o->ca_file, why);
            goto fail;
        }
        t->has_ca = 1;
    }
    if (o->alpn && o->alpn[0]) {
        size_t n = strlen(o->alpn);
        if (n + 1 > sizeof(t->alpn_wire)) {
            snprintf(err, errsz, "ALPN protocol name too long");
            goto fail;
        }
        t->alpn_wire[0] = (unsigned char)n;
        memcpy(t->alpn_wire + 1, o->alpn, n);
        t->alpn_wire_len = n + 1;
        SSL_CTX_set_alpn_select_cb(t->ctx, alpn_select_cb, t);
    }
    t->verify_peer = o->verify_peer;
    if (o->verify_peer) {
        SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        SSL_CTX_set_cert_verify_callback(t->ctx, cert_verify_cb, t);
    }
    *out = t;
    return 0;
fail:
    tls_ctx_free(t);
    return rc;
}

void
tls_ctx_free(tls_ctx *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    free(t);
}

struct bufferevent *
tls_bev_new(tls_ctx *t, struct event_base *base, int fd, int server, tls_check_fn check,
            void *check_ud)
{
    SSL *ssl = SSL_new(t->ctx);
    tls_conn *tc = calloc(1, sizeof(*tc));
    struct bufferevent *bev = NULL;

    if (!ssl || !tc || SSL_set_ex_data(ssl, conn_idx, tc) != 1) {
        free(tc);
        SSL_free(ssl);
        if (fd >= 0)
            evutil_closesocket(fd);
        return NULL;
    }
    tc->t = t;
    tc->check = check;
    tc->check_ud = check_ud;
    if (!server && t->alpn_wire_len)
        SSL_set_alpn_protos(ssl, t->alpn_wire, (unsigned int)t->alpn_wire_len);
    /* Fails only when out of memory; libevent then does not own fd. */
    bev = bufferevent_openssl_socket_new(
        base, fd, ssl, server ? BUFFEREVENT_SSL_ACCEPTING : BUFFEREVENT_SSL_CONNECTING,
        BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        if (fd >= 0)
            evutil_closesocket(fd);
        return NULL;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

int
tls_bev_alpn_ok(struct bufferevent *bev)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    tls_conn *tc = ssl ? SSL_get_ex_data(ssl, conn_idx) : NULL;
    const unsigned char *p = NULL;
    unsigned int n = 0;

    if (!tc)
        return 0;
    if (!tc->t->alpn_wire_len)
        return 1;
    SSL_get0_alpn_selected(ssl, &p, &n);
    return n + 1 == tc->t->alpn_wire_len && memcmp(p, tc->t->alpn_wire + 1, n) == 0;
}

void
tls_bev_describe(struct bufferevent *bev, char *out, size_t outsz)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);

    if (!ssl)
        snprintf(out, outsz, "-");
    else
        snprintf(out, outsz, "%s %s", SSL_get_version(ssl), SSL_get_cipher_name(ssl));
}

void
tls_bev_error(struct bufferevent *bev, char *out, size_t outsz)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    tls_conn *tc = ssl ? SSL_get_ex_data(ssl, conn_idx) : NULL;
    unsigned long e;
    size_t used = 0;

    out[0] = '\0';
    if (tc && tc->why[0])
        used = (size_t)snprintf(out, outsz, "%s", tc->why);
    while ((e = bufferevent_get_openssl_error(bev)) != 0) {
        const char *r = ERR_reason_error_string(e);

        /* the check's refusal already says it better than "certificate
         * verify failed" */
        if (!r || (tc && tc->why[0]) || used >= outsz)
            continue;
        used += (size_t)snprintf(out + used, outsz - used, "%s%s", used ? "; " : "", r);
    }
}
