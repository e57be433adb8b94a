/*
 * client_tls.c - the client's side of TLS (TF_OPT_TLS): which way the
 * server's identity is checked (pin, then CA, then known_hosts with ssh's
 * habits and the program's host-check callback), the handshake before the
 * hello, and session resumption through a context cache that travels with
 * the tf_options object (no global state: clients made from the same
 * options share it, clients made from other options do not).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "client_internal.h"
#include "known_hosts.h"
#include "tls.h"
#include "transport_tls.h"
#include "wire.h"

/* ---- the context cache of one tf_options -------------------------------- */

/* One client context, kept for as long as the options (or a copy) live,
   and rebuilt when the settings that shape it change. The context keeps
   the last session ticket, so that the next tf_connect resumes. */
struct tf__tls_share {
    pthread_mutex_t lock;
    int refs;
    char *key;         /* the settings it was built with */
    tf__tls_ctx *ctx;  /* NULL until the first TLS connect */
};

int tf__tls_share_new(struct tf__tls_share **out)
{
    struct tf__tls_share *sh = calloc(1, sizeof *sh);
    if (!sh)
        return TF_ENOMEM;
    pthread_mutex_init(&sh->lock, NULL);
    sh->refs = 1;
    *out = sh;
    return TF_OK;
}

void tf__tls_share_ref(struct tf__tls_share *sh)
{
    if (sh)
        __atomic_add_fetch(&sh->refs, 1, __ATOMIC_RELAXED);
}

void tf__tls_share_unref(struct tf__tls_share *sh)
{
    if (!sh || __atomic_sub_fetch(&sh->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    tf__tls_ctx_free(sh->ctx);
    free(sh->key);
    pthread_mutex_destroy(&sh->lock);
    free(sh);
}

/* ---- the known-hosts policy -------------------------------------------- */

typedef struct kh_check {
    const char *path;
    unsigned port;
    int accept_new;
    tf_host_check_fn ask;
    void *ask_user;
} kh_check;

static int check_known_host(void *user, const char *host, const char *fp, tf__err *e)
{
    const kh_check *k = user;
    char name[TF__KH_NAME_MAX + 1];
    int r = tf__known_hosts_name(name, sizeof name, host, k->port, e);
    if (r != TF_OK)
        return r;
    tf__kh_result res;
    r = tf__known_hosts_lookup(k->path, host, k->port, fp, &res, e);
    if (r != TF_OK)
        return r;
    if (res.status == TF__KH_MATCH)
        return TF_OK;
    if (res.status == TF__KH_MISMATCH)
        /* As loud as ssh's: this is what a man in the middle looks like,
           and the client has sent nothing but its ClientHello. */
        return tf__fail(e, TF_EPEERVERIFY,
                        "WARNING: THE SERVER'S IDENTITY HAS CHANGED for %s! Someone could be "
                        "eavesdropping on you right now (a man-in-the-middle attack), or the "
                        "server's key was replaced. Expected %s, got %s. Nothing was sent. "
                        "If this change is expected, remove line %u of %s",
                        name, res.known, fp, res.line, k->path);
    int accept = k->accept_new;
    if (!accept && k->ask)
        accept = k->ask(k->ask_user, host, (int)k->port, fp) == 1;
    if (!accept)
        return tf__fail(e, TF_EPEERVERIFY,
                        "%s is not a known server (its key is %s); check that fingerprint "
                        "with the server's operator, then connect with --accept-new to "
                        "record it, or with --pin %s",
                        name, fp, fp);
    return tf__known_hosts_add(k->path, host, k->port, fp, e);
}

/* ---- connecting --------------------------------------------------------- */

static int build_ctx(tf__tls_ctx **out, const tf_options *o, const char *kh, tf__err *e)
{
    tf__tls_client_conf conf = {
        .pin = tf__opt_str(o, TF_SOPT_TLS_PIN),
        .ca_file = tf__opt_str(o, TF_SOPT_TLS_CA),
        .check = check_known_host,
    };
    (void)kh;
    int rc = tf__tls_client_ctx_new(out, &conf, e);
    const char *cert = tf__opt_str(o, TF_SOPT_TLS_CLIENT_CERT);
    const char *key = tf__opt_str(o, TF_SOPT_TLS_CLIENT_KEY);
    if (rc == TF_OK && (cert || key)) {
        rc = tf__tls_client_ctx_cert(*out, cert, key, e);
        if (rc != TF_OK) {
            tf__tls_ctx_free(*out);
            *out = NULL;
        }
    }
    return rc;
}

/* A context for o's settings, from the cache when it matches. The caller
   holds a reference. */
static int get_ctx(tf__tls_ctx **out, const tf_options *o, const char *kh, tf__err *e)
{
    const char *parts[] = {tf__opt_str(o, TF_SOPT_TLS_PIN), tf__opt_str(o, TF_SOPT_TLS_CA),
                           tf__opt_str(o, TF_SOPT_TLS_CLIENT_CERT),
                           tf__opt_str(o, TF_SOPT_TLS_CLIENT_KEY), kh};
    size_t len = 1;
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++)
        len += (parts[i] ? strlen(parts[i]) : 0) + 2;
    char *key = malloc(len);
    if (!key)
        return tf__fail(e, TF_ENOMEM, "out of memory");
    size_t at = 0;
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++)
        at += (size_t)snprintf(key + at, len - at, "%c%s", parts[i] ? '+' : '-',
                               parts[i] ? parts[i] : "") + 1;
    struct tf__tls_share *sh = o->tls_share;
    if (!sh) {
        free(key);
        return build_ctx(out, o, kh, e);
    }
    int rc = TF_OK;
    pthread_mutex_lock(&sh->lock);
    if (!sh->ctx || !sh->key || memcmp(sh->key, key, at) != 0) {
        tf__tls_ctx *ctx;
        rc = build_ctx(&ctx, o, kh, e);
        if (rc == TF_OK) {
            tf__tls_ctx_free(sh->ctx);
            free(sh->key);
            sh->ctx = ctx;
            sh->key = key;
            key = NULL;
        }
    }
    if (rc == TF_OK) {
        tf__tls_ctx_ref(sh->ctx);
        *out = sh->ctx;
    }
    pthread_mutex_unlock(&sh->lock);
    free(key);
    return rc;
}

static unsigned peer_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0)
        return 0;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* A plaintext tcpfile server's hello where TLS was expected: a server
   out of descriptors refuses every client that way, TLS or not (it has no
   descriptor left for a handshake). Its refusal is read and reported as
   it is (TF_EBUSY "the server refused: ..."), as a plaintext client would.
   0 when it is not such a refusal (a --plaintext server's greeting, or too
   little of it within a second). */
static int plaintext_refusal(tf_client *c, const tf__tls *t)
{
    uint8_t in[TF_WIRE_SERVER_HELLO_SIZE + TF_WIRE_MESSAGE_MAX];
    size_t have = tf__tls_peer_first(t, in, sizeof in);
    size_t want = TF_WIRE_SERVER_HELLO_SIZE;
    tf_wire_server_hello sh;
    long n = TF_WIRE_NEED_MORE;
    while (have > 0 && n == TF_WIRE_NEED_MORE) {
        if (have >= want) {
            n = tf__wire_decode_server_hello(in, have, &sh);
            if (n == TF_WIRE_NEED_MORE)
                want = TF_WIRE_SERVER_HELLO_SIZE + sh.message_len;
            continue;
        }
        struct pollfd p = {.fd = c->s.conn.fd, .events = POLLIN};
        if (poll(&p, 1, 1000) != 1)
            return 0;
        ssize_t k = recv(c->s.conn.fd, in + have, want - have, MSG_DONTWAIT);
        if (k <= 0)
            return 0;
        have += (size_t)k;
    }
    if (n < 0 || have == 0 || sh.status == 0)
        return 0;
    char why[TF_ERRMSG_MAX];
    tf_escape(why, sizeof why, sh.message, sh.message_len, 0);
    return tf__fail(&c->err, tf__wire_code(sh.status), "the server refused: %s", why);
}

int tf__client_tls_start(tf_client *c, const char *host)
{
    tf__err *e = &c->err;
    const tf_options *o = &c->opt;
    char kh_path[4096];
    const char *kh = tf__opt_str(o, TF_SOPT_KNOWN_HOSTS);
    if (!tf__opt_str(o, TF_SOPT_TLS_PIN) && !tf__opt_str(o, TF_SOPT_TLS_CA) && !kh) {
        int rc = tf__known_hosts_default_path(kh_path, sizeof kh_path, e);
        if (rc != TF_OK)
            return rc;
        kh = kh_path;
    }
    kh_check check = {
        .path = kh,
        .port = peer_port(c->s.conn.fd),
        .accept_new = o->value[TF_OPT_TLS_ACCEPT_NEW] != 0,
        .ask = o->host_check,
        .ask_user = o->host_check_user,
    };
    tf__tls_ctx *ctx;
    int rc = get_ctx(&ctx, o, kh, e);
    if (rc != TF_OK)
        return rc;
    tf__tls *t;
    rc = tf__tls_client_new(&t, ctx, c->s.conn.fd, host, &check, e);
    tf__tls_ctx_free(ctx); /* the connection holds its own reference */
    if (rc != TF_OK)
        return rc;
    if (tf__conn_tls(&c->s.conn, c->s.conn.fd, 0, t) != TF_OK) {
        tf__tls_free(t);
        return tf__fail(e, TF_ENOMEM, "out of memory");
    }
    /* A blocking socket with the connect timeout: the handshake either
       completes, fails, or sees no progress for that long. */
    for (;;) {
        int r = tf__conn_handshake(&c->s.conn);
        if (r == 0)
            return TF_OK;
        if (r == TF__IO_AGAIN && c->s.conn.err == EINTR)
            continue;
        if (r == TF__IO_AGAIN)
            return tf__fail(e, TF_ETIMEDOUT, "the TLS handshake with %s timed out", host);
        const tf__tls *tls = tf__conn_tls_of(&c->s.conn);
        int refused = tf__tls_peer_plaintext(tls) ? plaintext_refusal(c, tls) : 0;
        if (refused)
            return refused;
        const char *msg;
        int code = tf__conn_tls_error(&c->s.conn, &msg);
        return tf__fail(e, code ? code : TF_EPROTO, "%s", msg[0] ? msg : "TLS handshake failed");
    }
}

int tf_options_set_host_check(tf_options *opt, tf_host_check_fn fn, void *user)
{
    if (!opt)
        return TF_EINVAL;
    opt->host_check = fn;
    opt->host_check_user = user;
    return TF_OK;
}
