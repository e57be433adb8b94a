/*
 * transport.h - one connection's byte stream behind a table of functions,
 * so that TLS is one more table (after hiredis' redisContextFuncs and
 * curl's connection filters). Plain TCP is the one table today
 * (transport_tcp.c). Every socket call on a connection of the client or
 * the server goes through here; listening and accepting are the
 * listener's (netio.c, tf__listen / tf__accept).
 *
 * Results of read, writev and sendfile: n >= 0 bytes (read: 0 is the
 * peer's end of stream; sendfile: 0 is the file's end), TF__IO_AGAIN (the
 * call would block - or, on a blocking socket, its timeout passed - and
 * conn->want says for which event), or TF__IO_ERROR with conn->err set to
 * the errno. Whether a call blocks is the socket's mode: the server's are
 * non-blocking, the client's block with SO_RCVTIMEO / SO_SNDTIMEO.
 */
#ifndef TF_TRANSPORT_H
#define TF_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#define TF__IO_ERROR (-1)
#define TF__IO_AGAIN (-2)

/* writev flags */
#define TF__IO_MORE 1u   /* further bytes follow at once (TCP: MSG_MORE) */
#define TF__IO_NOWAIT 2u /* this call does not block, whatever the socket */

typedef struct tf__conn tf__conn;

typedef struct tf__transport {
    const char *name; /* "tcp"; later "tls" */
    ssize_t (*read)(tf__conn *c, void *buf, size_t len);
    ssize_t (*writev)(tf__conn *c, const struct iovec *iov, int iovcnt, unsigned flags);
    /* Sends len bytes of file_fd from off without copying them through
       the caller. conn->err EINVAL, ENOSYS or EIO: the file cannot be sent
       so (or failed to read); the caller falls back to read + writev. */
    ssize_t (*sendfile)(tf__conn *c, int file_fd, uint64_t off, size_t len);
    /* The connection's own setup after connect / accept (TLS: the
       handshake). 0, TF__IO_AGAIN, or TF__IO_ERROR. */
    int (*handshake)(tf__conn *c);
    /* No more bytes from us (TCP: SHUT_WR; TLS: close_notify). */
    int (*shutdown)(tf__conn *c);
    /* Closes the socket (which also takes it out of any epoll set). */
    void (*close)(tf__conn *c);
    /* Bytes already received and decoded, waiting to be read (TLS: a
       record decrypted in part). epoll cannot see them, so an event loop
       reads again while this is non-zero. NULL: never any (TCP). */
    int (*pending)(const tf__conn *c);
    /* Copies up to len of those bytes without taking them; returns how
       many. NULL: none (TCP). */
    size_t (*peek)(tf__conn *c, void *buf, size_t len);
} tf__transport;

struct tf__conn {
    const tf__transport *t;
    int fd;        /* -1 once closed */
    uint32_t want; /* after TF__IO_AGAIN: EPOLLIN or EPOLLOUT */
    int err;       /* after TF__IO_ERROR: the errno */
    int nowait;    /* every call is non-blocking (the server's sockets) */
    void *impl;    /* the transport's own state (TLS); NULL for TCP */
};

extern const tf__transport tf__transport_tcp;

/* Puts a connected socket behind the TCP table; nowait as in tf__conn. */
void tf__conn_tcp(tf__conn *c, int fd, int nowait);

static inline ssize_t tf__conn_read(tf__conn *c, void *buf, size_t len)
{
    return c->t->read(c, buf, len);
}

static inline ssize_t tf__conn_write(tf__conn *c, const void *buf, size_t len,
                                     unsigned flags)
{
    struct iovec iov = {(void *)buf, len};
    return c->t->writev(c, &iov, 1, flags);
}

static inline ssize_t tf__conn_writev(tf__conn *c, const struct iovec *iov, int iovcnt,
                                      unsigned flags)
{
    return c->t->writev(c, iov, iovcnt, flags);
}

static inline ssize_t tf__conn_sendfile(tf__conn *c, int file_fd, uint64_t off, size_t len)
{
    return c->t->sendfile(c, file_fd, off, len);
}

static inline int tf__conn_pending(const tf__conn *c)
{
    return c->t && c->fd >= 0 && c->t->pending ? c->t->pending(c) : 0;
}

static inline size_t tf__conn_peek(tf__conn *c, void *buf, size_t len)
{
    return c->t && c->fd >= 0 && c->t->peek ? c->t->peek(c, buf, len) : 0;
}

/* The transport's setup after connect / accept: 0, TF__IO_AGAIN (conn->want
   says for which event), TF__IO_ERROR. */
static inline int tf__conn_handshake(tf__conn *c)
{
    return c->t->handshake(c);
}

static inline int tf__conn_shutdown(tf__conn *c)
{
    return c->t->shutdown(c);
}

static inline void tf__conn_close(tf__conn *c)
{
    if (c->t && c->fd >= 0)
        c->t->close(c);
    c->fd = -1;
}

#endif /* TF_TRANSPORT_H */
