/*
 * transport_tls.c - the TLS table (transport.h) over one tf__tls
 * connection (tls.h): the same calls as TCP, with OpenSSL's WANT_READ /
 * WANT_WRITE turned into TF__IO_AGAIN and conn->want, and its failures into
 * TF__IO_ERROR with an errno in conn->err and the words in the table's own
 * record (tf__conn_tls_error), since an errno cannot say "bad certificate".
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "netio.h"
#include "transport_tls.h"

typedef struct tls_impl {
    tf__tls *tls;
    int code;  /* the last failure's TF_E* code, 0 if none */
    tf__err e; /* and its words */
} tls_impl;

static tls_impl *impl(tf__conn *c)
{
    return c->impl;
}

/* Maps a tls.h result (not TF_OK) onto the table's. */
static ssize_t outcome(tf__conn *c, int r)
{
    if (r == TF__TLS_WANT_READ || r == TF__TLS_WANT_WRITE) {
        c->want = r == TF__TLS_WANT_READ ? EPOLLIN : EPOLLOUT;
        c->err = EAGAIN;
        return TF__IO_AGAIN;
    }
    if (r == TF__TLS_EOF)
        return 0;
    impl(c)->code = r;
    /* The nearest errno, for callers that only print strerror. */
    c->err = r == TF_ENET ? ECONNRESET : r == TF_ETIMEDOUT ? ETIMEDOUT
           : r == TF_EIO  ? EIO
           : r == TF_ENOMEM ? ENOMEM
                            : EPROTO;
    return TF__IO_ERROR;
}

/* tls.c sends through a MSG_NOSIGNAL filter, so once the handshake is
   done no call raises SIGPIPE, unless the kernel does TLS (kTLS: writes,
   control messages and sendfile go to the socket as they are). Then, and
   during the handshake, the client's blocking calls block SIGPIPE around
   each call, as the TCP table does around sendfile; the server's workers
   keep it blocked for their whole life (tf_server_run). */
#define NO_SIGPIPE(c, call)                                                                \
    do {                                                                                   \
        tf__sigpipe_guard g_;                                                              \
        int guard_ = !(c)->nowait && !tf__tls_sigpipe_safe(impl(c)->tls);                  \
        if (guard_)                                                                        \
            tf__sigpipe_block(&g_);                                                        \
        call;                                                                              \
        if (guard_)                                                                        \
            tf__sigpipe_restore(&g_);                                                      \
    } while (0)

static ssize_t tls_read(tf__conn *c, void *buf, size_t len)
{
    size_t n = 0;
    int r; /* a read may answer a key update: a write */
    NO_SIGPIPE(c, r = tf__tls_read(impl(c)->tls, buf, len, &n, &impl(c)->e));
    return r == TF_OK ? (ssize_t)n : outcome(c, r);
}

/* TF__IO_MORE: packed with what follows into full records, sent together
   (tls.h); nowait is the socket's mode. */
static ssize_t tls_writev(tf__conn *c, const struct iovec *iov, int iovcnt, unsigned flags)
{
    size_t n = 0;
    int r;
    if (flags & TF__IO_MORE)
        NO_SIGPIPE(c, r = tf__tls_writev_more(impl(c)->tls, iov, iovcnt, &n, &impl(c)->e));
    else
        NO_SIGPIPE(c, r = tf__tls_writev(impl(c)->tls, iov, iovcnt, &n, &impl(c)->e));
    return r == TF_OK ? (ssize_t)n : outcome(c, r);
}

static ssize_t tls_sendfile(tf__conn *c, int file_fd, uint64_t off, size_t len)
{
    size_t n = 0;
    int r;
    NO_SIGPIPE(c, r = tf__tls_sendfile(impl(c)->tls, file_fd, (off_t)off, len, &n,
                                       &impl(c)->e));
    if (r == TF_OK)
        return (ssize_t)n;
    if (r == TF_EIO) {
        /* The file, not the connection: the caller's copy path says what. */
        tf__err_clear(&impl(c)->e);
        c->err = EIO;
        return TF__IO_ERROR;
    }
    return outcome(c, r);
}

static int tls_handshake(tf__conn *c)
{
    int r;
    NO_SIGPIPE(c, r = tf__tls_handshake(impl(c)->tls, &impl(c)->e));
    if (r == TF_OK)
        return 0;
    return (int)outcome(c, r);
}

static int tls_shutdown(tf__conn *c)
{
    int r;
    NO_SIGPIPE(c, r = tf__tls_shutdown(impl(c)->tls, &impl(c)->e));
    if (r == TF_OK || r == TF__TLS_WANT_READ || r == TF__TLS_WANT_WRITE)
        return 0; /* best effort: close_notify is a courtesy, not a wait */
    return (int)outcome(c, r);
}

static void tls_close(tf__conn *c)
{
    tls_impl *t = impl(c);
    if (t) {
        /* Packed bytes are sent if the socket takes them now (a session
           closed by a stopping server after a pipelined answer), as the
           kernel would send TCP's; never waited for. */
        NO_SIGPIPE(c, (void)tf__tls_flush(t->tls, &t->e));
        tf__tls_free(t->tls);
        free(t);
    }
    c->impl = NULL;
    close(c->fd);
    c->fd = -1;
}

static int tls_pending(const tf__conn *c)
{
    const tls_impl *t = c->impl;
    return t ? tf__tls_pending(t->tls) : 0;
}

static size_t tls_peek(tf__conn *c, void *buf, size_t len)
{
    const tls_impl *t = c->impl;
    return t ? tf__tls_peek(t->tls, buf, len) : 0;
}

const tf__transport tf__transport_tls = {
    .name = "tls",
    .read = tls_read,
    .writev = tls_writev,
    .sendfile = tls_sendfile,
    .handshake = tls_handshake,
    .shutdown = tls_shutdown,
    .close = tls_close,
    .pending = tls_pending,
    .peek = tls_peek,
};

int tf__conn_tls(tf__conn *c, int fd, int nowait, tf__tls *tls)
{
    tls_impl *t = calloc(1, sizeof *t);
    if (!t)
        return TF_ENOMEM;
    t->tls = tls;
    if (!nowait)
        tf__tls_bulk_reads(tls); /* the blocking client's payloads */
    c->nowait = nowait;
    c->t = &tf__transport_tls;
    c->fd = fd;
    c->want = 0;
    c->err = 0;
    c->impl = t;
    return TF_OK;
}

tf__tls *tf__conn_tls_of(const tf__conn *c)
{
    return c->t == &tf__transport_tls && c->impl ? ((tls_impl *)c->impl)->tls : NULL;
}

int tf__conn_tls_error(const tf__conn *c, const char **msg)
{
    const tls_impl *t = c->t == &tf__transport_tls ? c->impl : NULL;
    if (msg)
        *msg = t && t->e.msg[0] ? t->e.msg : "";
    return t ? t->code : 0;
}

int tf__conn_peer_identity(const tf__conn *c, char fp[TF__FP_SIZE], char *cn, size_t cn_cap)
{
    return tf__tls_peer_identity(tf__conn_tls_of(c), fp, cn, cn_cap);
}

void tf__conn_tls_to_tcp(tf__conn *c)
{
    tls_impl *t = c->t == &tf__transport_tls ? c->impl : NULL;
    if (!t)
        return;
    tf__tls_free(t->tls);
    free(t);
    tf__conn_tcp(c, c->fd, c->nowait);
}
