/*
 * tls.h - the public API of Meridian's TLS module (prefix tls_): OpenSSL
 * contexts and TLS bufferevents for the S3 listener (gateway) and the
 * mutually authenticated links between sites (replicator).
 *
 * The module owns OpenSSL's SSL types: callers see an opaque tls_ctx, plain
 * libevent bufferevents and plain-data peer certificate summaries. Policy
 * (which certificate belongs to which site) stays with the caller, through a
 * check callback that runs inside the handshake, so a refused peer gets a
 * TLS alert and the refusing side has the reason in words.
 *
 * Protocol floor: TLS 1.2 (TLS 1.3 with tls_opts.tls13_only), TLS 1.2
 * cipher suites restricted to ECDHE with AES-GCM or ChaCha20-Poly1305; no
 * compression, no renegotiation.
 *
 * Threading: a tls_ctx may be shared by bufferevents on several event loop
 * threads (tls_bev_new and tls_ctx_reload lock it); a bufferevent stays on
 * its own thread.
 */
#ifndef MERIDIAN_TLS_H
#define MERIDIAN_TLS_H

#include <stddef.h>
#include <stdint.h>

struct bufferevent;
struct event_base;

typedef struct tls_ctx tls_ctx;

typedef struct tls_opts {
    const char *cert_file; /* PEM: this side's certificate (chain); required */
    const char *key_file;  /* PEM: its private key; required */
    const char *ca_file;   /* PEM trust anchors for peer certificates; NULL: none */
    int verify_peer;       /* 1: both directions require a peer certificate, and
                              every one is passed to the bufferevent's check */
    const char *alpn;      /* NULL, or the single ALPN protocol ("h2", "http/1.1"):
                              a client offers it, a server selects it when offered */
    int tls13_only;        /* 1: refuse TLS 1.2 */
} tls_opts;

/* What the peer presented, for the check callback. Plain data. */
typedef struct tls_peer_cert {
    uint8_t cert_sha256[32]; /* SHA-256 of the certificate (DER) */
    uint8_t spki_sha256[32]; /* SHA-256 of its SubjectPublicKeyInfo (DER) */
    char cn[64];             /* subject commonName ("" when none or too long) */
    int chain_ok;            /* 1: verified against tls_opts.ca_file */
    char chain_error[96];    /* why not, when !chain_ok */
} tls_peer_cert;

/* Decides whether a peer certificate is acceptable: returns 1 to accept;
 * returns 0 and writes the reason into why[0..whysz) to refuse (the
 * handshake then fails with an alert). Runs inside the handshake, on the
 * loop thread; it must not free the bufferevent. */
typedef int (*tls_check_fn)(void *ud, const tls_peer_cert *pc, char *why, size_t whysz);

/* Creates a context: loads the certificate, key (and CA file), checks that
 * they match. On failure returns MRD_ECONFIG (or -ENOMEM) and writes a
 * message naming the file and OpenSSL's reason into err[0..errsz).
 * *out is owned by the caller: tls_ctx_free. */
int tls_ctx_new(const tls_opts *o, tls_ctx **out, char *err, size_t errsz);
/*
 * Certificate rotation: reads t's certificate, key and CA files again and,
 * if they load and match, makes them the ones new connections use
 * (connections already up keep theirs). Returns 0 with the new
 * certificate's fingerprint ("sha256:...") in msg, or MRD_ECONFIG with the
 * reason (naming the file) in msg and t unchanged. Thread-safe against
 * tls_bev_new on other threads.
 */
int tls_ctx_reload(tls_ctx *t, char *msg, size_t msgsz);

/* Frees t; bufferevents made from it must be freed first. NULL ok. */
void tls_ctx_free(tls_ctx *t);

/*
 * A TLS bufferevent over fd (BEV_OPT_CLOSE_ON_FREE: freeing it closes fd).
 * server 1: accept a handshake on a connected fd. server 0: fd may be -1,
 * then connect with bufferevent_socket_connect. BEV_EVENT_CONNECTED is
 * reported once the handshake is done (both sides). check (may be NULL:
 * accept any certificate the context verified) runs for the peer's
 * certificate when the context has verify_peer. Returns NULL when out of
 * memory (fd is then closed).
 */
struct bufferevent *tls_bev_new(tls_ctx *t, struct event_base *base, int fd, int server,
                                tls_check_fn check, void *check_ud);

/* 1 when the finished handshake negotiated the context's ALPN protocol (or
 * the context has none), else 0. */
int tls_bev_alpn_ok(struct bufferevent *bev);
/* The negotiated protocol version ("TLSv1.3") and cipher, for logs. */
void tls_bev_describe(struct bufferevent *bev, char *out, size_t outsz);
/*
 * Why a TLS bufferevent failed, for logs and status: the check's reason
 * when it refused the peer's certificate, else OpenSSL's reasons (e.g.
 * "http request" for plain HTTP on a TLS port, "tlsv1 alert unknown ca"
 * for a peer that refused ours), else "". Consumes the bufferevent's queued
 * OpenSSL errors.
 */
void tls_bev_error(struct bufferevent *bev, char *out, size_t outsz);

/*
 * Meridian's rule for "is this certificate site `name`?", shared by the
 * links between sites and forwarded S3 requests: with a pin (the SHA-256 of
 * the certificate or of its SPKI, 32 bytes), only a certificate matching it;
 * without one, a certificate that chained to the context's CA file and
 * whose subject CN is name. pin_what names the pin in the refusal ("tls_pin").
 * Returns 1, or 0 with the reason in why[0..whysz).
 */
int tls_identify(const uint8_t *pin, const char *pin_what, const char *name,
                 const tls_peer_cert *pc, char *why, size_t whysz);

/* "sha256:" followed by 64 lower-case hex digits (out: at least 72 bytes). */
void tls_fingerprint_format(const uint8_t fp[32], char *out, size_t outsz);

#endif
