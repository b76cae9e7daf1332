/*
 * tls.c - OpenSSL contexts and TLS bufferevents (libevent's
 * bufferevent_openssl) for Meridian's listeners and site links.
 *
 * Contexts. One SSL_CTX per use (the S3 listener; the replication links,
 * which both accept and dial with the same certificate). The floor is TLS
 * 1.2; TLS 1.2 suites are limited to ECDHE key exchange with AEAD ciphers
 * (AES-GCM, ChaCha20-Poly1305), TLS 1.3 keeps OpenSSL's default suites.
 * Compression and renegotiation are off. The certificate, key and CA file
 * are loaded at start-up; a problem is a configuration error that names the
 * file and OpenSSL's reason.
 *
 * Reloading (certificate rotation). tls_ctx_reload reads the same files
 * again into a new SSL_CTX and swaps it in under the context's mutex; new
 * connections take the SSL_CTX current when they start (tls_bev_new holds
 * the mutex only around SSL_new), and connections already up keep the one
 * they were made from (each SSL holds a reference, so freeing the old
 * SSL_CTX after the swap is safe). A reload that fails changes nothing. The
 * tls_ctx itself (what callers hold, and the callbacks' argument) never
 * changes, so listeners on several threads and the site links need not be
 * told.
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
#include <pthread.h>
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
    pthread_mutex_t mu; /* guards ctx: swapped by tls_ctx_reload */
    SSL_CTX *ctx;
    char *cert_file, *key_file, *ca_file; /* for reloads */
    int tls13_only;
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

/* A new SSL_CTX from t's files and settings, its callbacks bound to t. */
static int
build_ctx(tls_ctx *t, SSL_CTX **out, char *err, size_t errsz)
{
    SSL_CTX *ctx;
    char why[160];

    ERR_clear_error();
    if (!(ctx = SSL_CTX_new(TLS_method()))) {
        openssl_reason(why, sizeof(why));
        snprintf(err, errsz, "cannot create a TLS context: %s", why);
        return MRD_ECONFIG;
    }
    SSL_CTX_set_min_proto_version(ctx, t->tls13_only ? TLS1_3_VERSION : TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1) {
        openssl_reason(why, sizeof(why));
        snprintf(err, errsz, "cannot set the cipher list: %s", why);
    } else if (SSL_CTX_use_certificate_chain_file(ctx, t->cert_file) != 1) {
        openssl_reason(why, sizeof(why));
        snprintf(err, errsz, "%s: cannot load the certificate: %s", t->cert_file, why);
    } else if (SSL_CTX_use_PrivateKey_file(ctx, t->key_file, SSL_FILETYPE_PEM) != 1) {
        openssl_reason(why, sizeof(why));
        snprintf(err, errsz, "%s: cannot load the private key: %s", t->key_file, why);
    } else if (SSL_CTX_check_private_key(ctx) != 1) {
        openssl_reason(why, sizeof(why));
        snprintf(err, errsz, "%s does not match the certificate in %s: %s", t->key_file,
                 t->cert_file, why);
    } else if (t->ca_file && SSL_CTX_load_verify_locations(ctx, t->ca_file, NULL) != 1) {
        openssl_reason(why, sizeof(why));
        snprintf(err, errsz, "%s: cannot load the CA certificates: %s", t->ca_file, why);
    } else {
        if (t->alpn_wire_len)
            SSL_CTX_set_alpn_select_cb(ctx, alpn_select_cb, t);
        if (t->verify_peer) {
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
            SSL_CTX_set_cert_verify_callback(ctx, cert_verify_cb, t);
        }
        *out = ctx;
        return 0;
    }
    SSL_CTX_free(ctx);
    return MRD_ECONFIG;
}

int
tls_ctx_new(const tls_opts *o, tls_ctx **out, char *err, size_t errsz)
{
    tls_ctx *t;
    int rc = MRD_ECONFIG;

    if (!o || !o->cert_file || !o->key_file) {
        snprintf(err, errsz, "a certificate and a key file are required");
        return MRD_ECONFIG;
    }
    if (conn_idx < 0)
        conn_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, conn_free_cb);
    if (conn_idx < 0) {
        snprintf(err, errsz, "cannot create a TLS context: no ex_data index");
        return MRD_ECONFIG;
    }
    if (!(t = calloc(1, sizeof(*t))))
        return -ENOMEM;
    pthread_mutex_init(&t->mu, NULL);
    t->cert_file = strdup(o->cert_file);
    t->key_file = strdup(o->key_file);
    t->ca_file = o->ca_file && o->ca_file[0] ? strdup(o->ca_file) : NULL;
    t->has_ca = o->ca_file && o->ca_file[0];
    t->tls13_only = o->tls13_only;
    t->verify_peer = o->verify_peer;
    if (!t->cert_file || !t->key_file || (t->has_ca && !t->ca_file)) {
        rc = -ENOMEM;
        goto fail;
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
    }
    if ((rc = build_ctx(t, &t->ctx, err, errsz)) != 0)
        goto fail;
    *out = t;
    return 0;
fail:
    tls_ctx_free(t);
    return rc;
}

int
tls_ctx_reload(tls_ctx *t, char *msg, size_t msgsz)
{
    SSL_CTX *fresh = NULL, *old;
    X509 *leaf;
    uint8_t fp[32];
    unsigned int n = 0;
    int rc = build_ctx(t, &fresh, msg, msgsz);

    if (rc != 0)
        return rc;
    leaf = SSL_CTX_get0_certificate(fresh);
    if (leaf && X509_digest(leaf, EVP_sha256(), fp, &n) == 1 && n == 32)
        tls_fingerprint_format(fp, msg, msgsz);
    else
        snprintf(msg, msgsz, "reloaded");
    pthread_mutex_lock(&t->mu);
    old = t->ctx;
    t->ctx = fresh;
    pthread_mutex_unlock(&t->mu);
    SSL_CTX_free(old); /* connections made from it hold their own reference */
    return 0;
}

void
tls_ctx_free(tls_ctx *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    free(t->cert_file);
    free(t->key_file);
    free(t->ca_file);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

struct bufferevent *
tls_bev_new(tls_ctx *t, struct event_base *base, int fd, int server, tls_check_fn check,
            void *check_ud)
{
    tls_conn *tc = calloc(1, sizeof(*tc));
    struct bufferevent *bev = NULL;
    SSL *ssl;

    pthread_mutex_lock(&t->mu); /* a reload may swap t->ctx meanwhile */
    ssl = SSL_new(t->ctx);
    pthread_mutex_unlock(&t->mu);

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
