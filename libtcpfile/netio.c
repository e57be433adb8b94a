/*
 * netio.c - sockets: resolve, connect, listen, and the client stream's full
 * reads and writes with progress timeouts. A connected stream is a blocking
 * socket whose SO_RCVTIMEO / SO_SNDTIMEO are the timeout: a wait costs the
 * one recv or send call, not a try, a poll and a retry.
 */
#include "netio.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/sendfile.h>
#include <unistd.h>

/* Larger chunks than this gain nothing and hold the CPU longer per call. */
#define SENDFILE_CHUNK ((size_t)1 << 30)
#define FALLBACK_BUF ((size_t)64 << 10)

static int net_code(int errnum)
{
    return errnum == ETIMEDOUT ? TF_ETIMEDOUT : TF_ENET;
}

/* "[::1]" -> "::1" in buf; other hosts are copied as they are. */
static const char *strip_brackets(const char *host, char *buf, size_t len)
{
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < len) {
        memcpy(buf, host + 1, n - 2);
        buf[n - 2] = '\0';
        return buf;
    }
    return host;
}

void tf__format_addr(const struct sockaddr *sa, int with_port, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        port = ntohs(in6->sin6_port);
    }
    if (!with_port)
        snprintf(buf, len, "%s", host);
    else if (sa->sa_family == AF_INET6)
        snprintf(buf, len, "[%s]:%u", host, port);
    else
        snprintf(buf, len, "%s:%u", host, port);
}

static void set_nodelay(int fd)
{
    int one = 1;
    /* Requests and replies are small frames written whole; Nagle would only
       delay them. A failure here costs latency, not correctness. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* Waits for events on s->fd. TF_OK when ready, else the failure. */
static int wait_for(tf__stream *s, short events, int timeout_ms, tf__err *e)
{
    struct pollfd p = {.fd = s->conn.fd, .events = events};
    for (;;) {
        int r = poll(&p, 1, timeout_ms > 0 ? timeout_ms : -1);
        if (r > 0)
            return TF_OK;
        if (r == 0)
            return tf__fail(e, TF_ETIMEDOUT, "the peer made no progress for %d ms",
                            timeout_ms);
        if (errno != EINTR)
            return tf__fail_errno(e, TF_ENET, errno, "poll failed");
    }
}

/* A failed connect: a refusal (nothing listens there) has its own code. */
static int connect_code(int errnum)
{
    return errnum == ECONNREFUSED ? TF_ECONNREFUSED : net_code(errnum);
}

static int connect_one(const struct addrinfo *ai, int timeout_ms, int *out, tf__err *e)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
    if (fd < 0)
        return tf__fail_errno(e, TF_ENET, errno, "socket failed");
    char addr[64];
    tf__format_addr(ai->ai_addr, 1, addr, sizeof addr);
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        if (errno != EINPROGRESS) {
            int err = errno;
            close(fd);
            return tf__fail_errno(e, connect_code(err), err, "cannot connect to %s", addr);
        }
        tf__stream tmp = {.conn.fd = fd};
        int rc = wait_for(&tmp, POLLOUT, timeout_ms, e);
        if (rc != TF_OK) {
            close(fd);
            if (rc == TF_ETIMEDOUT)
                return tf__err_replace(e, rc, "connecting to %s timed out after %d ms",
                                       addr, timeout_ms);
            return rc;
        }
        int err = 0;
        socklen_t elen = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0)
            err = errno;
        if (err != 0) {
            close(fd);
            return tf__fail_errno(e, connect_code(err), err, "cannot connect to %s", addr);
        }
    }
    set_nodelay(fd);
    *out = fd;
    return TF_OK;
}

int tf__stream_connect(tf__stream *s, const char *host, const char *port,
                       int timeout_ms, tf__err *e)
{
    char hbuf[256];
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_ADDRCONFIG};
    struct addrinfo *res = NULL;
    s->conn.fd = -1;
    if (!host || !*host || !port || !*port)
        return tf__fail(e, TF_EINVAL, "host and port are required");
    const char *h = strip_brackets(host, hbuf, sizeof hbuf);
    int gai = getaddrinfo(h, port, &hints, &res);
    if (gai == EAI_ADDRFAMILY || gai == EAI_NONAME) {
        /* AI_ADDRCONFIG hides loopback-only families on hosts with no other
           address of that family; ask again without it. */
        hints.ai_flags = 0;
        gai = getaddrinfo(h, port, &hints, &res);
    }
    if (gai != 0)
        return tf__fail(e, gai == EAI_MEMORY ? TF_ENOMEM : TF_ERESOLVE,
                        "cannot resolve %s port %s: %s", host, port, gai_strerror(gai));
    int rc = TF_ENET;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        /* Each address is a fresh attempt: the last one's failure is the
           call's, code and message alike, and one that works leaves no
           earlier address's message standing as this call's first. */
        tf__err_clear(e);
        int fd = -1;
        rc = connect_one(ai, timeout_ms, &fd, e);
        if (rc == TF_OK) {
            tf__conn_tcp(&s->conn, fd, 0);
            break;
        }
    }
    freeaddrinfo(res);
    if (rc == TF_OK)
        rc = tf__stream_set_timeout(s, timeout_ms, e);
    if (rc != TF_OK && s->conn.fd >= 0)
        tf__stream_close(s);
    return rc;
}

int tf__stream_set_timeout(tf__stream *s, int timeout_ms, tf__err *e)
{
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    int fd = s->conn.fd;
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0)
        return tf__fail_errno(e, TF_ENET, errno, "cannot set the socket's timeouts");
    s->timeout_ms = timeout_ms;
    return TF_OK;
}

void tf__stream_set_buffer(tf__stream *s, uint8_t *buf, size_t cap)
{
    s->rbuf = buf;
    s->rcap = cap;
}

static int timed_out(const tf__stream *s, tf__err *e)
{
    return tf__fail(e, TF_ETIMEDOUT, "the peer made no progress for %d ms", s->timeout_ms);
}

static int listen_one(const struct addrinfo *ai, unsigned short port, int *out, tf__err *e)
{
    struct sockaddr_storage ss;
    memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
    if (port) {
        if (ss.ss_family == AF_INET)
            ((struct sockaddr_in *)&ss)->sin_port = htons(port);
        else
            ((struct sockaddr_in6 *)&ss)->sin6_port = htons(port);
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return tf__fail_errno(e, TF_ENET, errno, "socket failed");
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    /* Each family gets its own socket, so IPv6 ones must not claim IPv4 too. */
    if (ai->ai_family == AF_INET6)
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    char addr[64];
    tf__format_addr((struct sockaddr *)&ss, 1, addr, sizeof addr);
    if (bind(fd, (struct sockaddr *)&ss, ai->ai_addrlen) != 0 || listen(fd, SOMAXCONN) != 0) {
        int err = errno;
        close(fd);
        return tf__fail_errno(e, TF_ENET, err, "cannot listen on %s", addr);
    }
    *out = fd;
    return TF_OK;
}

int tf__socket_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

int tf__listen(int *fds, int max, int *count, const char *host, const char *port,
               tf__err *e)
{
    char hbuf[256];
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    *count = 0;
    if (!port || !*port)
        return tf__fail(e, TF_EINVAL, "a port is required");
    const char *h = host ? strip_brackets(host, hbuf, sizeof hbuf) : NULL;
    int gai = getaddrinfo(h, port, &hints, &res);
    if (gai != 0)
        return tf__fail(e, TF_ENET, "cannot resolve %s port %s: %s", host ? host : "*",
                        port, gai_strerror(gai));
    /* With port 0 the first socket picks the port and the others (the other
       family) follow it, so that one number reaches the server. */
    unsigned short chosen = 0;
    int rc = TF_ENET;
    /* The first family's failure is the message kept (the first wins). */
    for (struct addrinfo *ai = res; ai && *count < max; ai = ai->ai_next) {
        int fd = -1;
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        rc = listen_one(ai, chosen, &fd, e);
        if (rc != TF_OK)
            continue;
        if (!chosen)
            chosen = (unsigned short)tf__socket_port(fd);
        fds[(*count)++] = fd;
    }
    freeaddrinfo(res);
    if (*count == 0)
        return rc != TF_OK ? rc : TF_ENET;
    /* Some families failing (no IPv6 on this host) is fine if one listens. */
    tf__err_clear(e);
    return TF_OK;
}

/* Receives at least one byte, or *got = 0 at the peer's end of stream. */
static int recv_some(tf__stream *s, void *buf, size_t cap, size_t *got, tf__err *e)
{
    *got = 0;
    for (;;) {
        ssize_t n = tf__conn_read(&s->conn, buf, cap);
        if (n >= 0) {
            *got = (size_t)n;
            return TF_OK;
        }
        if (n == TF__IO_AGAIN && s->conn.err == EINTR)
            continue;
        if (n == TF__IO_AGAIN)
            return timed_out(s, e);
        return tf__fail_errno(e, net_code(s->conn.err), s->conn.err, "receive failed");
    }
}

/* Like recv_some, through the read buffer: a small read takes what is
   buffered, or refills the buffer with one recv, so that a response's
   head, a small payload and the trailer cost one call between them. A
   read of at least the buffer's size goes straight to the caller. */
static int read_buffered(tf__stream *s, void *buf, size_t cap, size_t *got, tf__err *e)
{
    if (s->rpos == s->rlen) {
        if (!s->rbuf || cap >= s->rcap)
            return recv_some(s, buf, cap, got, e);
        int rc = recv_some(s, s->rbuf, s->rcap, got, e);
        if (rc != TF_OK || *got == 0)
            return rc;
        s->rpos = 0;
        s->rlen = *got;
    }
    size_t n = s->rlen - s->rpos < cap ? s->rlen - s->rpos : cap;
    memcpy(buf, s->rbuf + s->rpos, n);
    s->rpos += n;
    *got = n;
    return TF_OK;
}

int tf__stream_read_some(tf__stream *s, void *buf, size_t cap, size_t *got, tf__err *e)
{
    int rc = read_buffered(s, buf, cap, got, e);
    if (rc == TF_OK && *got == 0)
        return tf__fail(e, TF_ENET, "the peer closed the connection");
    return rc;
}

int tf__stream_read(tf__stream *s, void *buf, size_t len, tf__err *e)
{
    uint8_t *p = buf;
    size_t done = 0;
    while (done < len) {
        size_t got;
        int rc = read_buffered(s, p + done, len - done, &got, e);
        if (rc != TF_OK)
            return rc;
        if (got == 0)
            return tf__fail(e, TF_ENET,
                            "the peer closed the connection with %zu of %zu bytes missing",
                            len - done, len);
        done += got;
    }
    return TF_OK;
}

int tf__stream_write(tf__stream *s, const void *buf, size_t len, tf__err *e)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = tf__conn_write(&s->conn, p, len, 0);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n == TF__IO_AGAIN && s->conn.err == EINTR)
            continue;
        if (n == TF__IO_AGAIN)
            return timed_out(s, e);
        return tf__fail_errno(e, net_code(s->conn.err), s->conn.err, "send failed");
    }
    return TF_OK;
}

/* pread + send: for files sendfile refuses, and to tell file errors apart. */
static int send_file_copy(tf__stream *s, int file_fd, uint64_t *offset, uint64_t len,
                          tf__err *e)
{
    uint8_t buf[FALLBACK_BUF];
    uint64_t end = *offset + len;
    while (*offset < end) {
        uint64_t want = end - *offset;
        if (want > sizeof buf)
            want = sizeof buf;
        ssize_t n = pread(file_fd, buf, (size_t)want, (off_t)*offset);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return tf__fail_errno(e, TF_EIO, errno, "reading the file failed");
        if (n == 0)
            return TF_OK; /* the file ended early: the caller decides */
        int rc = tf__stream_write(s, buf, (size_t)n, e);
        if (rc != TF_OK)
            return rc;
        *offset += (uint64_t)n;
    }
    return TF_OK;
}

void tf__sigpipe_block(tf__sigpipe_guard *g)
{
    sigset_t pipe_set, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &g->old);
    g->was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE);
}

void tf__sigpipe_restore(const tf__sigpipe_guard *g)
{
    sigset_t pipe_set, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    /* Swallow the SIGPIPE our own writes raised, not one that was already
       pending before the guard. */
    if (!g->was_pending && sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE)) {
        const struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR) {
        }
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

/* sendfile has no MSG_NOSIGNAL: writing to a socket the peer has closed
   raises SIGPIPE, which kills a program that never asked for signals. The
   signal can come with a partial success, not only with EPIPE, hence the
   guard around every call. The TLS table guards itself, only when it must
   (kTLS: tls.c's filter sends with MSG_NOSIGNAL otherwise). */
static ssize_t sendfile_nosignal(tf__stream *s, int file_fd, uint64_t off, size_t count)
{
    if (s->conn.t != &tf__transport_tcp)
        return tf__conn_sendfile(&s->conn, file_fd, off, count);
    tf__sigpipe_guard g;
    tf__sigpipe_block(&g);
    ssize_t n = tf__conn_sendfile(&s->conn, file_fd, off, count);
    tf__sigpipe_restore(&g);
    return n;
}

int tf__stream_send_file(tf__stream *s, int file_fd, uint64_t *offset, uint64_t len,
                         tf__err *e)
{
    uint64_t end = *offset + len;
    while (*offset < end) {
        uint64_t want = end - *offset;
        if (want > SENDFILE_CHUNK)
            want = SENDFILE_CHUNK;
        ssize_t n = sendfile_nosignal(s, file_fd, *offset, (size_t)want);
        if (n > 0) {
            *offset += (uint64_t)n;
            continue;
        }
        if (n == 0)
            return TF_OK; /* the file ended early */
        int err = s->conn.err;
        if (n == TF__IO_AGAIN && err == EINTR)
            continue;
        if (n == TF__IO_AGAIN)
            return timed_out(s, e);
        if (err == EPIPE || err == ECONNRESET || err == ENOTCONN)
            return tf__fail_errno(e, TF_ENET, err, "send failed");
        /* Anything else (a file system without sendfile, a read error):
           the copy path either works or says precisely what failed. */
        return send_file_copy(s, file_fd, offset, end - *offset, e);
    }
    return TF_OK;
}

/* The listener's accept: the one accept4 of the library. */
int tf__accept(int lfd, struct sockaddr_storage *peer, int nodelay)
{
    socklen_t len = sizeof *peer;
    int fd = accept4(lfd, (struct sockaddr *)peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0 && nodelay)
        set_nodelay(fd);
    return fd;
}

void tf__stream_close(tf__stream *s)
{
    if (s->conn.fd >= 0)
        tf__conn_close(&s->conn);
    s->conn.fd = -1;
    s->rpos = s->rlen = 0;
}
