/*
 * netio.h - connecting, listening and accepting (the one place for
 * socket(), connect, bind, listen and accept4), and the client's blocking
 * stream, which reads and writes through the transport table
 * (transport.h). A stream's socket blocks, with timeout_ms as its
 * SO_RCVTIMEO and SO_SNDTIMEO: a wait that sees no progress for timeout_ms
 * fails with TF_ETIMEDOUT. (The server drives its connections from its
 * event loop through the same table, and uses only the listener here.)
 */
#ifndef TF_NETIO_H
#define TF_NETIO_H

#include <stddef.h>
#include <signal.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "internal.h"
#include "transport.h"

typedef struct tf__stream {
    tf__conn conn;
    int timeout_ms; /* longest wait without progress; 0 = none */
    /* Read buffer (not owned; none until tf__stream_set_buffer): bytes
       rbuf[rpos..rlen) have arrived and not been read yet. */
    uint8_t *rbuf;
    size_t rpos, rlen, rcap;
} tf__stream;

/* Resolves host:port ("[::1]" accepted) and connects within timeout_ms,
   trying each address in turn. On success s->fd is an open, blocking
   socket with TCP_NODELAY set and timeout_ms as its timeout. TF_ENET,
   TF_ETIMEDOUT, TF_EINVAL. s must be zeroed. */
int tf__stream_connect(tf__stream *s, const char *host, const char *port,
                       int timeout_ms, tf__err *e);

/* Sets the longest wait without progress (0: none) of every later read
   and write, as the socket's SO_RCVTIMEO and SO_SNDTIMEO. TF_ENET. */
int tf__stream_set_timeout(tf__stream *s, int timeout_ms, tf__err *e);

/* Gives the stream cap bytes of read buffer, which must outlive it. Only
   before the first read: nothing buffered is moved. */
void tf__stream_set_buffer(tf__stream *s, uint8_t *buf, size_t cap);

/* Opens listening sockets for host:port (host NULL: every IPv6 and IPv4
   address). Fills fds[0..*count-1], at most max. TF_ENET, TF_EINVAL. */
int tf__listen(int *fds, int max, int *count, const char *host, const char *port,
               tf__err *e);

/* The local port a socket is bound to, 0 if it cannot be read. */
int tf__socket_port(int fd);

/* Writes "addr" or "addr:port" of a socket address. */
void tf__format_addr(const struct sockaddr *sa, int with_port, char *buf, size_t len);

/* Reads exactly len bytes. TF_ENET when the peer closes first (the message
   says how many bytes were missing) or the socket fails, TF_ETIMEDOUT.
   (Cancelling is the progress callback's, in transfer.c, not this.) */
int tf__stream_read(tf__stream *s, void *buf, size_t len, tf__err *e);

/* Reads what is available, at least 1 byte, at most cap; *got is set.
   TF_ENET when the peer has closed, TF_ETIMEDOUT. Used by the client's
   payload loop (tf__xfer_recv), which hashes and stores each piece as it
   arrives; bytes beyond cap stay in the read buffer for the next read. */
int tf__stream_read_some(tf__stream *s, void *buf, size_t cap, size_t *got, tf__err *e);

/* Writes exactly len bytes (never SIGPIPE). */
int tf__stream_write(tf__stream *s, const void *buf, size_t len, tf__err *e);

/* Sends up to len bytes of file_fd from *offset (sendfile where possible),
   advancing *offset by what was sent. Stops early, with *offset short,
   only when the file ends first. Socket failures return TF_ENET etc.; a
   file read failure returns TF_EIO with the message saying so. */
int tf__stream_send_file(tf__stream *s, int file_fd, uint64_t *offset, uint64_t len,
                         tf__err *e);

/* Accepts a connection on the listening socket lfd: non-blocking,
   close-on-exec, with TCP_NODELAY when nodelay. The fd, or -1 with errno
   set (EAGAIN: none waiting). */
int tf__accept(int lfd, struct sockaddr_storage *peer, int nodelay);

/* Keeps SIGPIPE away from the calling thread between block and restore, so
   that a loop of sendfile calls (the server's workers) needs no per-call
   masking: it is blocked in the thread, and one raised meanwhile is
   swallowed at restore. Threads started while it is blocked inherit the
   mask for their whole life, and a signal pending on a thread dies with it. */
typedef struct tf__sigpipe_guard {
    sigset_t old;
    int was_pending;
} tf__sigpipe_guard;
void tf__sigpipe_block(tf__sigpipe_guard *g);
void tf__sigpipe_restore(const tf__sigpipe_guard *g);

void tf__stream_close(tf__stream *s);

#endif /* TF_NETIO_H */
