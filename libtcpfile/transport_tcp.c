/*
 * transport_tcp.c - the plain TCP transport: one system call per call, the
 * same ones the library made before the table (send with MSG_NOSIGNAL,
 * sendmsg for more than one piece, recv, sendfile, shutdown, close).
 */
#include <errno.h>
#include <sys/epoll.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include "transport.h"

/* EINTR is reported as TF__IO_AGAIN too: the caller comes back. */
static ssize_t result(tf__conn *c, ssize_t n, uint32_t want)
{
    if (n >= 0)
        return n;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        c->want = want;
        c->err = errno;
        return TF__IO_AGAIN;
    }
    c->err = errno;
    return TF__IO_ERROR;
}

static ssize_t tcp_read(tf__conn *c, void *buf, size_t len)
{
    return result(c, recv(c->fd, buf, len, c->nowait ? MSG_DONTWAIT : 0), EPOLLIN);
}

static ssize_t tcp_writev(tf__conn *c, const struct iovec *iov, int iovcnt, unsigned how)
{
    int flags = MSG_NOSIGNAL | (how & TF__IO_MORE ? MSG_MORE : 0) |
                (c->nowait || how & TF__IO_NOWAIT ? MSG_DONTWAIT : 0);
    if (iovcnt == 1)
        return result(c, send(c->fd, iov->iov_base, iov->iov_len, flags), EPOLLOUT);
    struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
    return result(c, sendmsg(c->fd, &m, flags), EPOLLOUT);
}

/* sendfile has no MSG_NOSIGNAL: the caller keeps SIGPIPE blocked (the
   server's workers for their whole life, the client around each call). */
static ssize_t tcp_sendfile(tf__conn *c, int file_fd, uint64_t off, size_t len)
{
    off_t o = (off_t)off;
    return result(c, sendfile(c->fd, file_fd, &o, len), EPOLLOUT);
}

static int tcp_handshake(tf__conn *c)
{
    (void)c;
    return 0;
}

static int tcp_shutdown(tf__conn *c)
{
    return shutdown(c->fd, SHUT_WR) == 0 ? 0 : (c->err = errno, TF__IO_ERROR);
}

static void tcp_close(tf__conn *c)
{
    close(c->fd);
    c->fd = -1;
}

const tf__transport tf__transport_tcp = {
    .name = "tcp",
    .read = tcp_read,
    .writev = tcp_writev,
    .sendfile = tcp_sendfile,
    .handshake = tcp_handshake,
    .shutdown = tcp_shutdown,
    .close = tcp_close,
};

void tf__conn_tcp(tf__conn *c, int fd, int nowait)
{
    c->nowait = nowait;
    c->t = &tf__transport_tcp;
    c->fd = fd;
    c->want = 0;
    c->err = 0;
    c->impl = NULL;
}
