/*
 * tls.c - one TLS 1.3 connection over OpenSSL 3, with results normalised
 * for an event loop. See tls.h.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "ossl.h"
#include "tls.h"

/* The plaintext hello's magic (docs/protocol.md, both hellos). */
static const unsigned char tcpf_magic[4] = {0x54, 0x43, 0x50, 0x46};

/* sendfile without kTLS reads the file this much at a time (one pread for
   16 records), and a bulk reader's OpenSSL reads the socket this much at a
   time (read-ahead) instead of a record's header and body apart. */
#define FILE_BUF ((size_t)256 << 10)
#define BULK_READ_BUF ((size_t)256 << 10)

enum verify_mode { VERIFY_NONE, VERIFY_PIN, VERIFY_CA, VERIFY_CHECK };

struct tf__tls_ctx {
    SSL_CTX *ssl;
    int server;
    int client_ca; /* server: client certificates must verify against a CA */
    enum verify_mode mode;
    unsigned char pin[32];
    tf__tls_check_fn check;
    /* Contexts are shared: the creator and every connection hold a
       reference (a client's context outlives the tf_options cache entry
       that made it while connections still use it). */
    int refs;
    /* The MSG_NOSIGNAL write filter every connection sends through (see
       nosig_write); per context, not per process: no global state. */
    BIO_METHOD *nosig;
    /* The last session ticket a server gave, for resuming with that host. */
    pthread_mutex_t lock;
    SSL_SESSION *cached;
    char *cached_host;
};

struct tf__tls {
    SSL *ssl;
    tf__tls_ctx *ctx;
    int fd;
    int failed;  /* a fatal error happened: no more I/O, no close_notify */
    int established; /* the handshake completed (OpenSSL forgets it on error) */
    char *host;  /* client: the server's name as given */
    void *check_user;
    /* The peer's first bytes, seen by the read BIO's callback, to tell a
       plaintext tcpfile peer from a broken TLS one (and to read a plaintext
       server's refusal: OpenSSL takes 5 bytes of it before giving up). */
    unsigned char first[TF__TLS_FIRST_MAX];
    size_t first_len;
    size_t read_total; /* every byte the BIO read */
    /* The identity check's verdict, made inside the handshake. */
    int verify_code;
    tf__err verify_err;
    /* sendfile without kTLS: the file's next FILE_BUF bytes (fb_len of
       them from fb_off, sent up to fb_pos), kept until SSL_write has taken
       them all (a retry must offer the same bytes). */
    unsigned char *fbuf;
    size_t fb_len;
    size_t fb_pos;
    off_t fb_off;
    int fb_valid;
    size_t fb_blocked; /* a record of this many bytes waits for a retry */
    /* A blocking client's connection, for bulk reads: read-ahead into a
       large buffer once the handshake is done (see tf__tls_bulk_reads). */
    int bulk;
    /* writev: small pieces gathered into one record. When that record
       blocks, the caller may offer the same bytes again cut otherwise (a
       frame's pieces one at a time), which OpenSSL refuses as a "bad write
       retry": tls.c repeats the record itself (g_blocked of its bytes) and
       owes the caller g_owed bytes of progress, paid on the next writes. */
    unsigned char *gbuf;
    size_t g_blocked;
    size_t g_owed;
    /* Packed writes (tf__tls_writev_more): plaintext gathered into one
       record (p_len bytes of pbuf), sealed while hold is set into
       ciphertext the write filter keeps (obuf, o_pos to o_len) instead of
       sending, and sent with one send for many records. OpenSSL never
       sees a sealed record blocked, so no retry of it is owed to it. */
    unsigned char *pbuf;
    size_t p_len;
    int p_blocked; /* kTLS (no hold): pbuf's SSL_write blocked; retried as is */
    int hold;
    unsigned char *obuf;
    size_t o_pos, o_len, o_cap;
};

int tf__tls_sniff(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    if (len == 0)
        return TF__SNIFF_MORE;
    /* A TLS record: content type handshake (22) or alert (21), then a
       legacy version 3.x. */
    if (p[0] == 22 || p[0] == 21) {
        if (len == 1)
            return TF__SNIFF_MORE;
        return p[1] == 3 ? TF__SNIFF_TLS : TF__SNIFF_OTHER;
    }
    size_t n = len < sizeof tcpf_magic ? len : sizeof tcpf_magic;
    if (memcmp(p, tcpf_magic, n) != 0)
        return TF__SNIFF_OTHER;
    return n == sizeof tcpf_magic ? TF__SNIFF_TCPF : TF__SNIFF_MORE;
}

/* ---- the socket's write side ------------------------------------------ */

/* Sends the held ciphertext (obuf): 1 when all of it is out, 0 when the
   socket is full, -1 on failure (errno set). */
static int held_send(tf__tls *t)
{
    while (t->o_pos < t->o_len) {
        ssize_t n = send(t->fd, t->obuf + t->o_pos, t->o_len - t->o_pos, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
        t->o_pos += (size_t)n;
    }
    t->o_pos = t->o_len = 0;
    return 1;
}

/* While sealing packed records: keeps them, to go out together. */
static int held_add(tf__tls *t, const char *buf, size_t len)
{
    if (t->o_pos && t->o_len + len > t->o_cap) {
        memmove(t->obuf, t->obuf + t->o_pos, t->o_len - t->o_pos);
        t->o_len -= t->o_pos;
        t->o_pos = 0;
    }
    if (t->o_len + len > t->o_cap) {
        /* Less than a pack is held when a record is added: one allocation
           per burst (drain gives it back). */
        size_t cap = TF__TLS_PACK_SEND + TF__TLS_RECORD + 1024;
        if (cap < t->o_len + len)
            cap = t->o_len + len;
        unsigned char *nb = realloc(t->obuf, cap);
        if (!nb)
            return 0;
        t->obuf = nb;
        t->o_cap = cap;
    }
    memcpy(t->obuf + t->o_len, buf, len);
    t->o_len += len;
    return 1;
}

/* OpenSSL's socket BIO sends with write(2), which raises SIGPIPE when the
   peer has gone. Guarding each call with the signal mask costs four system
   calls (rt_sigprocmask, rt_sigpending, twice), more than the write itself
   for a small answer. So every connection writes through this filter over
   its socket BIO, which sends with MSG_NOSIGNAL; reads go to the socket BIO
   directly (they raise nothing). Everything else, the descriptor and the
   kTLS controls included, is the socket BIO's. With kTLS sending, writes
   are the socket BIO's too (the kernel takes the record type as a control
   message): then the caller keeps the guard (tf__tls_sigpipe_safe). */
static int nosig_write(BIO *b, const char *buf, size_t len, size_t *written)
{
    BIO *next = BIO_next(b);
    tf__tls *t = BIO_get_data(b);
    *written = 0;
    BIO_clear_retry_flags(b);
    if (!next)
        return 0;
    if (t && t->hold) {
        if (!held_add(t, buf, len))
            return 0;
        *written = len;
        return 1;
    }
    if (t && t->o_pos < t->o_len) {
        /* Held records go first, whoever writes next (a key update, a
           close_notify, a record not packed). */
        int sent = held_send(t);
        if (sent == 0)
            BIO_set_retry_write(b);
        if (sent <= 0)
            return 0;
    }
    if (BIO_get_ktls_send(next)) {
        int r = BIO_write_ex(next, buf, len, written);
        BIO_copy_next_retry(b);
        return r;
    }
    int fd = -1;
    if (BIO_get_fd(next, &fd) < 0 || fd < 0)
        return 0;
    ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
    if (n < 0) {
        /* The socket BIO's own rule: EAGAIN (a blocking socket's
           SO_SNDTIMEO too) and EINTR are "try again". errno is kept for
           the caller's message. */
        if (BIO_sock_should_retry(-1))
            BIO_set_retry_write(b);
        return 0;
    }
    *written = (size_t)n;
    return 1;
}

static long nosig_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    BIO *next = BIO_next(b);
    return next ? BIO_ctrl(next, cmd, num, ptr) : 0;
}

static int nosig_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static int nosig_destroy(BIO *b)
{
    (void)b;
    return 1;
}

static BIO_METHOD *nosig_method(void)
{
    /* A fixed type: nothing looks this filter up by type, and
       BIO_get_new_index would spend one of OpenSSL's 128 numbers per
       context. */
    BIO_METHOD *m = BIO_meth_new(BIO_TYPE_FILTER | 0xff, "tcpfile MSG_NOSIGNAL");
    if (m && BIO_meth_set_write_ex(m, nosig_write) && BIO_meth_set_ctrl(m, nosig_ctrl) &&
        BIO_meth_set_create(m, nosig_create) && BIO_meth_set_destroy(m, nosig_destroy))
        return m;
    BIO_meth_free(m);
    return NULL;
}

/* ---- contexts -------------------------------------------------------- */

static int common_ctx(tf__tls_ctx **out, int server, tf__err *e)
{
    *out = NULL;
    tf__tls_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return tf__fail(e, TF_ENOMEM, "out of memory");
    c->server = server;
    c->refs = 1;
    pthread_mutex_init(&c->lock, NULL);
    c->ssl = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    c->nosig = nosig_method();
    if (!c->ssl || !c->nosig) {
        tf__tls_ctx_free(c);
        return tf__ossl_fail(e, TF_ENOMEM, "cannot make a TLS context");
    }
    /* TLS 1.3 only (issue 13): no version or cipher negotiation to get wrong. */
    if (!SSL_CTX_set_min_proto_version(c->ssl, TLS1_3_VERSION)) {
        tf__tls_ctx_free(c);
        return tf__ossl_fail(e, TF_EINTERNAL, "cannot require TLS 1.3");
    }
    /* kTLS where the kernel has it (modprobe tls): SSL_sendfile then keeps
       zero copy. Harmless where it has not. */
    SSL_CTX_set_options(c->ssl, SSL_OP_ENABLE_KTLS);
    /* Partial writes: SSL_write returns after each record instead of
       blocking the event loop; the buffer may move between retries as
       long as it holds the same bytes. */
    SSL_CTX_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    *out = c;
    return TF_OK;
}

int tf__tls_server_ctx_new(tf__tls_ctx **out, const tf__tls_identity *id, tf__err *e)
{
    if (!out)
        return tf__fail(e, TF_EINVAL, "out is NULL");
    *out = NULL;
    if (!id)
        return tf__fail(e, TF_EINVAL, "a TLS server needs an identity");
    tf__tls_ctx *c;
    int r = common_ctx(&c, 1, e);
    if (r != TF_OK)
        return r;
    STACK_OF(X509) *chain = tf__tls_identity_chain(id);
    if (SSL_CTX_use_certificate(c->ssl, tf__tls_identity_cert(id)) != 1 ||
        SSL_CTX_use_PrivateKey(c->ssl, tf__tls_identity_key(id)) != 1 ||
        SSL_CTX_check_private_key(c->ssl) != 1 ||
        (chain && SSL_CTX_set1_chain(c->ssl, chain) != 1)) {
        tf__tls_ctx_free(c);
        return tf__ossl_fail(e, TF_EINVAL, "cannot use the server's certificate and key");
    }
    /* Stateless session tickets (OpenSSL's default for TLS 1.3, kept on):
       a returning client skips the certificate and the key exchange's
       signature. The id context ties tickets to this service. */
    static const unsigned char sid[] = "tcpfile";
    SSL_CTX_set_session_id_context(c->ssl, sid, sizeof sid - 1);
    SSL_CTX_clear_options(c->ssl, SSL_OP_NO_TICKET);
    *out = c;
    return TF_OK;
}

static tf__tls *conn_of(X509_STORE_CTX *xs)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    return ssl ? SSL_get_app_data(ssl) : NULL;
}

/* The client's whole check of the server's certificate (it replaces
   OpenSSL's chain verification, which a pin or known_hosts does without). */
static int verify_server(X509_STORE_CTX *xs, void *arg)
{
    (void)arg;
    tf__tls *t = conn_of(xs);
    X509 *leaf = X509_STORE_CTX_get0_cert(xs);
    if (!t || !leaf)
        return 0;
    tf__tls_ctx *c = t->ctx;
    char fp[TF__FP_SIZE];
    int r = tf__tls_fingerprint(fp, leaf, &t->verify_err);
    if (r != TF_OK) {
        t->verify_code = r;
        X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
        return 0;
    }
    switch (c->mode) {
    case VERIFY_PIN: {
        unsigned char md[32];
        r = tf__tls_spki_sha256(md, leaf, &t->verify_err);
        if (r == TF_OK && CRYPTO_memcmp(md, c->pin, sizeof md) != 0)
            r = tf__fail(&t->verify_err, TF_EPEERVERIFY,
                         "the server's key is %s, not the pinned one", fp);
        break;
    }
    case VERIFY_CA:
        /* The store context already carries the host name (SSL_set1_host). */
        if (X509_verify_cert(xs) != 1) {
            int err = X509_STORE_CTX_get_error(xs);
            t->verify_code = tf__fail(&t->verify_err, TF_EPEERVERIFY,
                                      "the server's certificate for \"%s\" does not verify "
                                      "against the CA file: %s",
                                      t->host ? t->host : "", X509_verify_cert_error_string(err));
            tf__ossl_clear();
            return 0;
        }
        r = TF_OK;
        break;
    case VERIFY_CHECK:
        r = c->check(t->check_user, t->host ? t->host : "", fp, &t->verify_err);
        if (r > 0)
            r = TF_EPEERVERIFY;
        if (r != TF_OK && t->verify_err.msg[0] == '\0')
            tf__fail(&t->verify_err, r, "the server's key %s was refused", fp);
        break;
    default:
        r = tf__fail(&t->verify_err, TF_EPEERVERIFY, "no way to check the server's identity");
        break;
    }
    if (r != TF_OK) {
        t->verify_code = r;
        X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
        return 0;
    }
    return 1;
}

/* A new session ticket from the server: kept for the next connection to
   the same host. A copy, because SSL_free marks the connection's own
   session unresumable when the connection ends without close_notify (a
   client that just closes), which would waste the ticket. Returns 0: we
   keep no reference to sess itself. */
static int new_session(SSL *ssl, SSL_SESSION *sess_in)
{
    tf__tls *t = SSL_get_app_data(ssl);
    if (!t || !t->host)
        return 0;
    char *host = strdup(t->host);
    SSL_SESSION *sess = SSL_SESSION_dup(sess_in);
    if (!host || !sess) {
        free(host);
        SSL_SESSION_free(sess);
        return 0;
    }
    tf__tls_ctx *c = t->ctx;
    pthread_mutex_lock(&c->lock);
    SSL_SESSION *old = c->cached;
    char *old_host = c->cached_host;
    c->cached = sess;
    c->cached_host = host;
    pthread_mutex_unlock(&c->lock);
    SSL_SESSION_free(old);
    free(old_host);
    return 0;
}

int tf__tls_client_ctx_new(tf__tls_ctx **out, const tf__tls_client_conf *conf, tf__err *e)
{
    if (!out)
        return tf__fail(e, TF_EINVAL, "out is NULL");
    *out = NULL;
    if (!conf || (!conf->pin && !conf->ca_file && !conf->check))
        return tf__fail(e, TF_EINVAL,
                        "no way to check the server's identity (a pin, a CA file or known "
                        "hosts)");
    tf__tls_ctx *c;
    int r = common_ctx(&c, 0, e);
    if (r != TF_OK)
        return r;
    if (conf->pin) {
        c->mode = VERIFY_PIN;
        r = tf__tls_fingerprint_parse(c->pin, conf->pin, e);
    } else if (conf->ca_file) {
        c->mode = VERIFY_CA;
        if (access(conf->ca_file, R_OK) != 0)
            r = tf__fail_errno(e, errno == ENOENT ? TF_ENOENT : TF_EACCES, errno,
                               "cannot read CA file %s", conf->ca_file);
        else if (SSL_CTX_load_verify_file(c->ssl, conf->ca_file) != 1)
            r = tf__ossl_fail(e, TF_EINVAL, "CA file %s holds no usable certificate",
                              conf->ca_file);
    } else {
        c->mode = VERIFY_CHECK;
        c->check = conf->check;
    }
    if (r != TF_OK) {
        tf__tls_ctx_free(c);
        return r;
    }
    SSL_CTX_set_verify(c->ssl, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_cert_verify_callback(c->ssl, verify_server, NULL);
    SSL_CTX_set_session_cache_mode(c->ssl, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(c->ssl, new_session);
    *out = c;
    return TF_OK;
}

void tf__tls_ctx_ref(tf__tls_ctx *ctx)
{
    if (ctx)
        __atomic_add_fetch(&ctx->refs, 1, __ATOMIC_RELAXED);
}

void tf__tls_ctx_free(tf__tls_ctx *ctx)
{
    if (!ctx || __atomic_sub_fetch(&ctx->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    SSL_CTX_free(ctx->ssl);
    BIO_meth_free(ctx->nosig);
    SSL_SESSION_free(ctx->cached);
    free(ctx->cached_host);
    OPENSSL_cleanse(ctx->pin, sizeof ctx->pin);
    pthread_mutex_destroy(&ctx->lock);
    free(ctx);
}

/* ---- connections ------------------------------------------------------ */

/* Watches what the socket BIO reads: its first bytes are kept. */
static long watch_first_bytes(BIO *b, int oper, const char *argp, size_t len, int argi,
                              long argl, int ret, size_t *processed)
{
    (void)len;
    (void)argi;
    (void)argl;
    if (oper == (BIO_CB_READ | BIO_CB_RETURN) && ret > 0 && processed && argp) {
        tf__tls *t = (tf__tls *)BIO_get_callback_arg(b);
        size_t got = *processed;
        for (size_t i = 0; t && i < got && t->first_len < sizeof t->first; i++)
            t->first[t->first_len++] = (unsigned char)argp[i];
        if (t)
            t->read_total += got;
    }
    return ret;
}

static int conn_new(tf__tls **out, tf__tls_ctx *ctx, int fd, tf__err *e)
{
    *out = NULL;
    if (!ctx || fd < 0)
        return tf__fail(e, TF_EINVAL, "no TLS context or no socket");
    tf__tls *t = calloc(1, sizeof *t);
    if (!t)
        return tf__fail(e, TF_ENOMEM, "out of memory");
    t->ctx = ctx;
    tf__tls_ctx_ref(ctx);
    t->fd = fd;
    t->ssl = SSL_new(ctx->ssl);
    /* A socket BIO (BIO_NOCLOSE: the fd stays ours), the kind kTLS works
       on, read directly and written through the MSG_NOSIGNAL filter. */
    BIO *rb = BIO_new_socket(fd, BIO_NOCLOSE);
    BIO *wb = BIO_new(ctx->nosig);
    if (!t->ssl || !rb || !wb || !BIO_up_ref(rb)) {
        BIO_free(rb);
        BIO_free(wb);
        tf__tls_free(t);
        return tf__ossl_fail(e, TF_ENOMEM, "cannot make a TLS connection");
    }
    /* rb's two references: the SSL's as its read BIO, the filter's below
       it (SSL_free's BIO_free_all on the filter stops there). */
    SSL_set_bio(t->ssl, rb, BIO_push(wb, rb));
    SSL_set_app_data(t->ssl, t);
    BIO_set_data(wb, t);
    BIO_set_callback_arg(rb, (char *)t);
    BIO_set_callback_ex(rb, watch_first_bytes);
    *out = t;
    return TF_OK;
}

int tf__tls_server_new(tf__tls **out, tf__tls_ctx *ctx, int fd, tf__err *e)
{
    if (!out)
        return tf__fail(e, TF_EINVAL, "out is NULL");
    if (ctx && !ctx->server)
        return tf__fail(e, TF_EINVAL, "a client context for a server connection");
    int r = conn_new(out, ctx, fd, e);
    if (r == TF_OK)
        SSL_set_accept_state((*out)->ssl);
    return r;
}

int tf__tls_client_new(tf__tls **out, tf__tls_ctx *ctx, int fd, const char *host,
                       void *check_user, tf__err *e)
{
    if (!out)
        return tf__fail(e, TF_EINVAL, "out is NULL");
    *out = NULL;
    if (ctx && ctx->server)
        return tf__fail(e, TF_EINVAL, "a server context for a client connection");
    if (!host || !*host)
        return tf__fail(e, TF_EINVAL, "the server's host name is needed");
    tf__tls *t;
    int r = conn_new(&t, ctx, fd, e);
    if (r != TF_OK)
        return r;
    t->check_user = check_user;
    /* "[::1]" as users type it: the address inside. */
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']')
        t->host = strndup(host + 1, n - 2);
    else
        t->host = strdup(host);
    if (!t->host) {
        tf__tls_free(t);
        return tf__fail(e, TF_ENOMEM, "out of memory");
    }
    unsigned char ip[16];
    int literal = inet_pton(AF_INET, t->host, ip) == 1 || inet_pton(AF_INET6, t->host, ip) == 1;
    /* SNI carries names only (RFC 6066); SSL_set1_host takes either and
       is what the CA check matches against. */
    if ((!literal && SSL_set_tlsext_host_name(t->ssl, t->host) != 1) ||
        (ctx->mode == VERIFY_CA && SSL_set1_host(t->ssl, t->host) != 1)) {
        tf__tls_free(t);
        return tf__ossl_fail(e, TF_EINVAL, "cannot use \"%s\" as the server's name", host);
    }
    pthread_mutex_lock(&ctx->lock);
    if (ctx->cached && ctx->cached_host && strcmp(ctx->cached_host, t->host) == 0)
        SSL_set_session(t->ssl, ctx->cached);
    pthread_mutex_unlock(&ctx->lock);
    SSL_set_connect_state(t->ssl);
    *out = t;
    return TF_OK;
}

void tf__tls_free(tf__tls *t)
{
    if (!t)
        return;
    SSL_free(t->ssl);
    tf__tls_ctx_free(t->ctx);
    free(t->host);
    if (t->fbuf) {
        OPENSSL_cleanse(t->fbuf, FILE_BUF);
        free(t->fbuf);
    }
    if (t->gbuf) {
        OPENSSL_cleanse(t->gbuf, TF__TLS_RECORD);
        free(t->gbuf);
    }
    if (t->pbuf) {
        OPENSSL_cleanse(t->pbuf, TF__TLS_RECORD);
        free(t->pbuf);
    }
    free(t->obuf); /* ciphertext only */
    free(t);
}

/* ---- results ---------------------------------------------------------- */

/* Why a handshake failed, in words a user acts on. */
static int handshake_failure(tf__tls *t, unsigned long err, int errnum, tf__err *e)
{
    int server = t->ctx->server;
    if (t->verify_code < 0) {
        if (e)
            *e = t->verify_err;
        return t->verify_code;
    }
    int sniff = tf__tls_sniff(t->first, t->first_len);
    if (sniff == TF__SNIFF_TCPF)
        return tf__fail(e, TF_EPROTO,
                        server ? "a plaintext client; this server requires TLS (the client has "
                                 "--plaintext)"
                               : "the server does not speak TLS (it runs with --plaintext)");
    if (t->first_len > 0 && sniff == TF__SNIFF_OTHER)
        return tf__fail(e, TF_EPROTO,
                        server ? "the peer does not speak TLS (its first bytes are not a TLS "
                                 "record)"
                               : "the server does not speak TLS (its first bytes are not a "
                                 "TLS record)");
    if (err == 0) {
        if (errnum != 0)
            return tf__fail_errno(e, TF_ENET, errnum, "TLS handshake failed");
        return tf__fail(e, TF_ENET, "the peer closed the connection during the TLS handshake");
    }
    int reason = ERR_GET_REASON(err);
    if (reason == SSL_R_UNEXPECTED_EOF_WHILE_READING)
        return tf__ossl_fail(e, TF_ENET, "the peer closed the connection during the TLS "
                                         "handshake");
    if (reason == SSL_R_UNSUPPORTED_PROTOCOL || reason == SSL_R_TLSV1_ALERT_PROTOCOL_VERSION)
        return tf__ossl_fail(e, TF_EPROTO, "TLS handshake failed: the peer does not do TLS 1.3");
    return tf__ossl_fail(e, TF_EPROTO, "TLS handshake failed");
}

/* Normalises the outcome of an SSL call that did not succeed: ret is what
   it returned, errnum the errno right after it. */
static int result_of(tf__tls *t, int ret, int errnum, int handshake, const char *what,
                     tf__err *e)
{
    int code = SSL_get_error(t->ssl, ret);
    switch (code) {
    case SSL_ERROR_WANT_READ:
        return TF__TLS_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return TF__TLS_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        if (!handshake)
            return TF__TLS_EOF;
        break;
    default:
        break;
    }
    t->failed = 1;
    unsigned long err = ERR_peek_last_error();
    if (handshake || !t->established)
        return handshake_failure(t, err, errnum, e);
    if (code == SSL_ERROR_SYSCALL && err == 0) {
        if (errnum != 0)
            return tf__fail_errno(e, TF_ENET, errnum, "TLS %s failed", what);
        return tf__fail(e, TF_ENET, "the peer closed the connection without TLS close_notify");
    }
    if (ERR_GET_REASON(err) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
        return tf__ossl_fail(e, TF_ENET,
                             "the peer closed the connection without TLS close_notify");
    return tf__ossl_fail(e, TF_EPROTO, "TLS %s failed", what);
}

/* The same, leaving the thread's OpenSSL error queue empty on every path
   (the messages above read it first), so no stale error is blamed later. */
static int result(tf__tls *t, int ret, int errnum, int handshake, const char *what, tf__err *e)
{
    int r = result_of(t, ret, errnum, handshake, what, e);
    tf__ossl_clear();
    return r;
}

static int dead(tf__tls *t, tf__err *e)
{
    (void)t;
    return tf__fail(e, TF_ENET, "the TLS connection failed earlier");
}

int tf__tls_handshake(tf__tls *t, tf__err *e)
{
    if (!t)
        return tf__fail(e, TF_EINVAL, "no connection");
    if (t->failed)
        return dead(t, e);
    tf__ossl_clear();
    errno = 0;
    int ret = SSL_do_handshake(t->ssl);
    int errnum = errno;
    if (ret == 1) {
        t->established = 1;
        /* Only the first bytes matter; later reads skip the callback. */
        BIO_set_callback_ex(SSL_get_rbio(t->ssl), NULL);
        /* Not before: the first bytes are read as they come, to tell a
           plaintext peer's refusal apart. */
        if (t->bulk)
            SSL_set_read_ahead(t->ssl, 1);
        return TF_OK;
    }
    return result(t, ret, errnum, 1, "handshake", e);
}

int tf__tls_read(tf__tls *t, void *buf, size_t len, size_t *n, tf__err *e)
{
    *n = 0;
    if (!t || (!buf && len))
        return tf__fail(e, TF_EINVAL, "no connection or no buffer");
    if (t->failed)
        return dead(t, e);
    if (len == 0)
        return TF_OK;
    tf__ossl_clear();
    errno = 0;
    int ret = SSL_read_ex(t->ssl, buf, len, n);
    int errnum = errno;
    if (ret != 1)
        return result(t, ret, errnum, 0, "read", e);
    t->established = 1; /* a read may have run the handshake itself */
    /* SSL_read gives one record (16 KiB) at a time: take the ones already
       received too, so that a bulk reader's hash and write see large
       pieces. A failure here is left for the next call to report. */
    while (*n < len && SSL_has_pending(t->ssl)) {
        size_t more = 0;
        if (SSL_read_ex(t->ssl, (unsigned char *)buf + *n, len - *n, &more) != 1)
            break;
        *n += more;
    }
    tf__ossl_clear();
    return TF_OK;
}

int tf__tls_pending(const tf__tls *t)
{
    if (!t || t->failed)
        return 0;
    /* With read-ahead, records not decrypted yet wait in OpenSSL too. */
    return t->bulk ? SSL_has_pending(t->ssl) : SSL_pending(t->ssl);
}

size_t tf__tls_peek(tf__tls *t, void *buf, size_t len)
{
    size_t n = 0;
    /* SSL_pending first: SSL_peek would read the socket when it is 0. */
    if (!t || t->failed || !buf || len == 0 || SSL_pending(t->ssl) <= 0)
        return 0;
    if (SSL_peek_ex(t->ssl, buf, len, &n) != 1)
        n = 0;
    tf__ossl_clear();
    return n;
}

void tf__tls_bulk_reads(tf__tls *t)
{
    t->bulk = 1;
    SSL_set_default_read_buffer_len(t->ssl, BULK_READ_BUF);
}

/* One SSL_write_ex of buf (t live, len > 0). */
static int write_raw(tf__tls *t, const void *buf, size_t len, size_t *n, tf__err *e)
{
    tf__ossl_clear();
    errno = 0;
    int ret = SSL_write_ex(t->ssl, buf, len, n);
    int errnum = errno;
    if (ret == 1) {
        t->established = 1;
        return TF_OK;
    }
    return result(t, ret, errnum, 0, "write", e);
}

/* Sends the held ciphertext: TF_OK when none is left, WANT_WRITE, error. */
static int held_flush(tf__tls *t, tf__err *e)
{
    int sent = held_send(t);
    if (sent > 0)
        return TF_OK;
    if (sent == 0)
        return TF__TLS_WANT_WRITE;
    t->failed = 1;
    return tf__fail_errno(e, TF_ENET, errno, "TLS write failed");
}

/* Seals the packed plaintext into records: held (sent later, together)
   unless the kernel does TLS, where SSL_write sends them and may block.
   TF_OK once pbuf is empty, WANT_* (kTLS: pbuf is kept as it is for the
   retry), or an error. */
static int seal(tf__tls *t, tf__err *e)
{
    while (t->p_len > 0) {
        size_t w = 0;
        t->hold = !BIO_get_ktls_send(SSL_get_wbio(t->ssl));
        int r = write_raw(t, t->pbuf, t->p_len, &w, e);
        t->hold = 0;
        t->p_blocked = r == TF__TLS_WANT_READ || r == TF__TLS_WANT_WRITE;
        if (r != TF_OK)
            return r;
        /* A record smaller than TF__TLS_RECORD (the peer's record size
           limit): partial write mode returns after it. */
        memmove(t->pbuf, t->pbuf + w, t->p_len - w);
        t->p_len -= w;
    }
    return TF_OK;
}

/* Everything packed, sealed and sent: TF_OK, WANT_*, or an error. The
   buffers go back once the burst is out: a connection between bursts (an
   idle one) holds none. */
static int drain(tf__tls *t, tf__err *e)
{
    int r = seal(t, e);
    if (r == TF_OK)
        r = held_flush(t, e);
    if (r == TF_OK && t->obuf) {
        free(t->obuf); /* ciphertext only */
        t->obuf = NULL;
        t->o_cap = 0;
    }
    if (r == TF_OK && t->pbuf) {
        OPENSSL_cleanse(t->pbuf, TF__TLS_RECORD);
        free(t->pbuf);
        t->pbuf = NULL;
    }
    return r;
}

/* A gathered record blocked, or a packed write's last byte was taken but
   not yet sent (or sent, not yet all reported): the caller's next len
   bytes are its bytes again. Sends what is still due, then reports up to
   len of them as written. */
static int settle_gathered(tf__tls *t, size_t len, size_t *n, tf__err *e)
{
    if (t->g_blocked) {
        size_t w = 0;
        /* One record (<= TF__TLS_RECORD): written whole or not at all. */
        int r = write_raw(t, t->gbuf, t->g_blocked, &w, e);
        if (r != TF_OK)
            return r;
        t->g_blocked = 0;
    }
    int r = drain(t, e);
    if (r != TF_OK)
        return r;
    *n = len < t->g_owed ? len : t->g_owed;
    t->g_owed -= *n;
    return TF_OK;
}

/* What write and sendfile do first: 1 with the call's result in *r when
   it is over already (a dead connection, nothing to send, or a gathered
   record's bytes offered again). */
static int write_done_early(tf__tls *t, size_t len, size_t *n, tf__err *e, int *r)
{
    if (t->failed)
        *r = dead(t, e);
    else if (len == 0)
        *r = TF_OK;
    else if (t->g_owed)
        *r = settle_gathered(t, len, n, e);
    else
        return 0;
    return 1;
}

/* Whether packed bytes wait: then every write goes behind them. */
static int packed(const tf__tls *t)
{
    return t->p_len > 0 || t->o_pos < t->o_len;
}

/* Packs iov after what is packed already (t live, nothing owed, at least
   one byte): see tf__tls_writev_more. Without more, the pack is sent at
   the end, and the last byte is reported only once it is out. */
static int pack(tf__tls *t, const struct iovec *iov, int iovcnt, int more, size_t *n,
                tf__err *e)
{
    int r;
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    if (t->p_blocked && (r = seal(t, e)) != TF_OK)
        return r;
    /* A full pack still held (the socket was full): nothing more is taken
       until it goes. */
    if (t->o_len - t->o_pos >= TF__TLS_PACK_SEND && (r = held_flush(t, e)) != TF_OK)
        return r;
    if (!t->pbuf && !(t->pbuf = malloc(TF__TLS_RECORD)))
        return tf__fail(e, TF_ENOMEM, "out of memory");
    size_t taken = 0;
    for (int i = 0; i < iovcnt; i++) {
        size_t off = 0;
        while (off < iov[i].iov_len) {
            if (t->p_len == TF__TLS_RECORD) {
                if (t->o_len - t->o_pos >= TF__TLS_PACK_SEND)
                    goto full;
                if ((r = seal(t, e)) != TF_OK)
                    return r < 0 || taken == 0 ? r : (*n = taken, TF_OK);
            }
            size_t take = iov[i].iov_len - off;
            if (take > TF__TLS_RECORD - t->p_len)
                take = TF__TLS_RECORD - t->p_len;
            memcpy(t->pbuf + t->p_len, (const unsigned char *)iov[i].iov_base + off, take);
            t->p_len += take;
            off += take;
            taken += take;
        }
    }
full:
    *n = taken;
    if (more && t->o_len - t->o_pos < TF__TLS_PACK_SEND)
        return TF_OK;
    /* A pack's worth held (the rest of iov, if any, joins the next), or
       the end: sealed and sent. */
    r = more || taken < total ? held_flush(t, e) : drain(t, e);
    if (r < 0) {
        *n = 0;
        return r;
    }
    if (r != TF_OK && !more && taken == total) {
        /* Not all out: the caller must come back, with the last byte. */
        *n = taken - 1;
        t->g_owed = 1;
    }
    return TF_OK;
}

int tf__tls_write(tf__tls *t, const void *buf, size_t len, size_t *n, tf__err *e)
{
    *n = 0;
    if (!t || (!buf && len))
        return tf__fail(e, TF_EINVAL, "no connection or no buffer");
    int r;
    if (write_done_early(t, len, n, e, &r))
        return r;
    if (packed(t)) {
        struct iovec one = {(void *)buf, len};
        return pack(t, &one, 1, 0, n, e);
    }
    return write_raw(t, buf, len, n, e);
}

int tf__tls_writev_more(tf__tls *t, const struct iovec *iov, int iovcnt, size_t *n,
                        tf__err *e)
{
    *n = 0;
    if (!t || (!iov && iovcnt > 0) || iovcnt < 0)
        return tf__fail(e, TF_EINVAL, "no connection or no vector");
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    int r;
    if (write_done_early(t, total, n, e, &r))
        return r;
    return pack(t, iov, iovcnt, 1, n, e);
}

int tf__tls_flush(tf__tls *t, tf__err *e)
{
    if (!t || t->failed)
        return TF_OK;
    return drain(t, e);
}

int tf__tls_writev(tf__tls *t, const struct iovec *iov, int iovcnt, size_t *n, tf__err *e)
{
    *n = 0;
    if (!t || (!iov && iovcnt > 0) || iovcnt < 0)
        return tf__fail(e, TF_EINVAL, "no connection or no vector");
    /* Skip empty pieces; one piece left is written where it is. */
    while (iovcnt > 0 && iov[0].iov_len == 0) {
        iov++;
        iovcnt--;
    }
    if (iovcnt == 0)
        return t->failed ? dead(t, e) : TF_OK;
    if (!t->failed && !t->g_owed && packed(t))
        return pack(t, iov, iovcnt, 0, n, e);
    if (iovcnt == 1 || iov[0].iov_len >= TF__TLS_RECORD || t->g_owed || t->failed)
        return tf__tls_write(t, iov[0].iov_base, iov[0].iov_len, n, e);
    if (!t->gbuf && !(t->gbuf = malloc(TF__TLS_RECORD)))
        return tf__fail(e, TF_ENOMEM, "out of memory");
    /* A header and a small payload make one record, not two: the gather
       is the copy a plain writev avoids, bounded by one record. */
    size_t used = 0;
    for (int i = 0; i < iovcnt && used < TF__TLS_RECORD; i++) {
        size_t take = iov[i].iov_len;
        if (take > TF__TLS_RECORD - used)
            take = TF__TLS_RECORD - used;
        if (take == 0)
            continue; /* an empty piece may have no buffer at all */
        memcpy(t->gbuf + used, iov[i].iov_base, take);
        used += take;
    }
    int r = write_raw(t, t->gbuf, used, n, e);
    if (r == TF__TLS_WANT_READ || r == TF__TLS_WANT_WRITE)
        t->g_blocked = t->g_owed = used;
    return r;
}

int tf__tls_sendfile(tf__tls *t, int file_fd, off_t offset, size_t len, size_t *n, tf__err *e)
{
    *n = 0;
    if (!t || file_fd < 0 || offset < 0)
        return tf__fail(e, TF_EINVAL, "no connection, no file or a negative offset");
    int early;
    if (write_done_early(t, len, n, e, &early))
        return early;
    /* Packed answers go before the file (kTLS's sendfile passes by the
       filter that holds them). */
    if ((early = drain(t, e)) != TF_OK)
        return early;
    if (BIO_get_ktls_send(SSL_get_wbio(t->ssl))) {
        /* The kernel encrypts: the file's pages go to the socket as they are. */
        tf__ossl_clear();
        errno = 0;
        ossl_ssize_t w = SSL_sendfile(t->ssl, file_fd, offset, len, 0);
        int errnum = errno;
        if (w > 0) {
            *n = (size_t)w;
            return TF_OK;
        }
        if (w == 0)
            return tf__fail(e, TF_EIO, "the file ends before offset %lld + %zu",
                            (long long)offset, len);
        return result(t, (int)w, errnum, 0, "sendfile", e);
    }
    if (!t->fbuf && !(t->fbuf = malloc(FILE_BUF)))
        return tf__fail(e, TF_ENOMEM, "out of memory");
    size_t done = 0;
    while (done < len) {
        off_t at = offset + (off_t)done;
        if (t->fb_blocked && t->fb_off + (off_t)t->fb_pos != at)
            return tf__fail(e, TF_EINVAL,
                            "sendfile retried at offset %lld after blocking at %lld",
                            (long long)at, (long long)(t->fb_off + (off_t)t->fb_pos));
        if (t->fb_valid && t->fb_off + (off_t)t->fb_pos != at)
            t->fb_valid = 0; /* another part of the file: read it */
        if (!t->fb_valid) {
            size_t want = len - done < FILE_BUF ? len - done : FILE_BUF;
            ssize_t r;
            do
                r = pread(file_fd, t->fbuf, want, at);
            while (r < 0 && errno == EINTR);
            if (r < 0)
                return tf__fail_errno(e, TF_EIO, errno, "cannot read the file at %lld",
                                      (long long)at);
            if (r == 0)
                return tf__fail(e, TF_EIO, "the file ends at %lld, before %lld", (long long)at,
                                (long long)(offset + (off_t)len));
            t->fb_len = (size_t)r;
            t->fb_pos = 0;
            t->fb_off = at;
            t->fb_valid = 1;
        }
        /* One record per SSL_write, so that a retry after WANT_WRITE
           offers the same bytes as long as the caller asks for as many. */
        size_t chunk = t->fb_len - t->fb_pos;
        if (chunk > TF__TLS_RECORD)
            chunk = TF__TLS_RECORD;
        if (chunk > len - done)
            chunk = len - done;
        if (chunk < t->fb_blocked)
            return tf__fail(e, TF_EINVAL, "sendfile retried with a shorter length");
        size_t w = 0;
        int r = write_raw(t, t->fbuf + t->fb_pos, chunk, &w, e);
        t->fb_blocked = r == TF__TLS_WANT_READ || r == TF__TLS_WANT_WRITE ? chunk : 0;
        if (r != TF_OK) {
            if (r < 0)
                t->fb_valid = 0;
            if (done > 0 && r > 0) {
                *n = done; /* progress first; the rest is retried at offset + done */
                return TF_OK;
            }
            return r;
        }
        done += w;
        t->fb_pos += w;
        if (t->fb_pos == t->fb_len)
            t->fb_valid = 0;
    }
    *n = done;
    return TF_OK;
}

int tf__tls_shutdown(tf__tls *t, tf__err *e)
{
    if (!t)
        return tf__fail(e, TF_EINVAL, "no connection");
    /* After a fatal error OpenSSL must not send anything more. */
    if (t->failed || !SSL_is_init_finished(t->ssl))
        return TF_OK;
    /* Packed bytes before close_notify (the filter sends held ones first). */
    int r = seal(t, e);
    if (r != TF_OK)
        return r;
    tf__ossl_clear();
    errno = 0;
    int ret = SSL_shutdown(t->ssl);
    int errnum = errno;
    if (ret >= 0)
        return TF_OK;
    int code = SSL_get_error(t->ssl, ret);
    if (code == SSL_ERROR_WANT_READ)
        return TF__TLS_WANT_READ;
    if (code == SSL_ERROR_WANT_WRITE)
        return TF__TLS_WANT_WRITE;
    t->failed = 1;
    if (errnum != 0)
        return tf__fail_errno(e, TF_ENET, errnum, "cannot send TLS close_notify");
    return tf__ossl_fail(e, TF_ENET, "cannot send TLS close_notify");
}

int tf__tls_resumed(const tf__tls *t)
{
    return t && SSL_session_reused(t->ssl) == 1;
}

int tf__tls_ktls_send(const tf__tls *t)
{
    return t && BIO_get_ktls_send(SSL_get_wbio(t->ssl)) ? 1 : 0;
}

int tf__tls_sigpipe_safe(const tf__tls *t)
{
    return t && t->established && !tf__tls_ktls_send(t);
}

int tf__tls_peer_plaintext(const tf__tls *t)
{
    return t && tf__tls_sniff(t->first, t->first_len) == TF__SNIFF_TCPF;
}

size_t tf__tls_peer_first(const tf__tls *t, void *buf, size_t cap)
{
    if (!t || t->read_total != t->first_len || t->first_len > cap)
        return 0;
    memcpy(buf, t->first, t->first_len);
    return t->first_len;
}

void tf__tls_describe(const tf__tls *t, char *buf, size_t cap)
{
    if (!buf || cap == 0)
        return;
    buf[0] = '\0';
    if (!t || !SSL_is_init_finished(t->ssl))
        return;
    const char *cipher = SSL_get_cipher_name(t->ssl);
    snprintf(buf, cap, "%s %s%s", SSL_get_version(t->ssl), cipher ? cipher : "?",
             SSL_session_reused(t->ssl) == 1 ? " (resumed)" : "");
}

/* ---- mutual TLS ---------------------------------------------------------- */

int tf__tls_server_ctx_client_ca(tf__tls_ctx *ctx, const char *ca_file, tf__err *e)
{
    if (!ctx || !ctx->server || !ca_file)
        return tf__fail(e, TF_EINVAL, "a server context and a CA file are needed");
    if (access(ca_file, R_OK) != 0)
        return tf__fail_errno(e, errno == ENOENT ? TF_ENOENT : TF_EACCES, errno,
                              "cannot read client CA file %s", ca_file);
    if (SSL_CTX_load_verify_file(ctx->ssl, ca_file) != 1)
        return tf__ossl_fail(e, TF_EINVAL, "client CA file %s holds no usable certificate",
                             ca_file);
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca_file);
    if (names)
        SSL_CTX_set_client_CA_list(ctx->ssl, names);
    tf__ossl_clear();
    /* Asked for, not required: a client without a certificate goes on
       (it may authenticate with a token); one that presents a certificate
       the CA does not vouch for fails the handshake. */
    SSL_CTX_set_verify(ctx->ssl, SSL_VERIFY_PEER, NULL);
    ctx->client_ca = 1;
    return TF_OK;
}

/* Without a CA, any certificate passes the handshake: what it is worth is
   decided after, by its key's fingerprint (a pin), and the handshake has
   proved the client holds that key (CertificateVerify is checked whatever
   this returns). */
static int accept_any_cert(int preverify_ok, X509_STORE_CTX *x)
{
    (void)preverify_ok;
    (void)x;
    return 1;
}

int tf__tls_server_ctx_ask_client_cert(tf__tls_ctx *ctx, tf__err *e)
{
    if (!ctx || !ctx->server)
        return tf__fail(e, TF_EINVAL, "a server context is needed");
    if (!ctx->client_ca)
        SSL_CTX_set_verify(ctx->ssl, SSL_VERIFY_PEER, accept_any_cert);
    return TF_OK;
}

int tf__tls_client_ctx_cert(tf__tls_ctx *ctx, const char *cert_file, const char *key_file,
                            tf__err *e)
{
    if (!ctx || ctx->server || !cert_file || !key_file)
        return tf__fail(e, TF_EINVAL, "a client certificate needs both its files");
    tf__tls_identity *id;
    int r = tf__tls_identity_load(&id, cert_file, key_file, e);
    if (r != TF_OK)
        return r;
    STACK_OF(X509) *chain = tf__tls_identity_chain(id);
    if (SSL_CTX_use_certificate(ctx->ssl, tf__tls_identity_cert(id)) != 1 ||
        SSL_CTX_use_PrivateKey(ctx->ssl, tf__tls_identity_key(id)) != 1 ||
        (chain && SSL_CTX_set1_chain(ctx->ssl, chain) != 1))
        r = tf__ossl_fail(e, TF_EINVAL, "cannot use the client certificate %s", cert_file);
    /* The context holds its own references now. */
    tf__tls_identity_free(id);
    return r;
}

int tf__tls_peer_identity(const tf__tls *t, char fp[TF__FP_SIZE], char *cn, size_t cn_cap)
{
    if (fp)
        fp[0] = '\0';
    if (cn && cn_cap)
        cn[0] = '\0';
    if (!t || !t->established)
        return 0;
    X509 *peer = SSL_get0_peer_certificate(t->ssl);
    if (!peer || (t->ctx->client_ca && SSL_get_verify_result(t->ssl) != X509_V_OK))
        return 0;
    tf__err e = {{0}};
    if (fp && tf__tls_fingerprint(fp, peer, &e) != TF_OK)
        return 0;
    if (cn && cn_cap) {
        int n = X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn,
                                          (int)cn_cap);
        if (n < 0)
            cn[0] = '\0';
    }
    tf__ossl_clear();
    return 1;
}
