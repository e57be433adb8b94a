/*
 * netio.h - the transport: every socket call of the library is behind these
 * functions, so that another transport (TLS) can slide in underneath.
 * Sockets are non-blocking; a wait that sees no progress for timeout_ms
 * fails with TF_ETIMEDOUT, and a readable abort_fd (the server's stop
 * signal) ends a wait with TF_ECANCELED.
 */
#ifndef TF_NETIO_H
#define TF_NETIO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "internal.h"

typedef struct tf__stream {
    int fd;
    int timeout_ms;        /* longest wait without progress; 0 = none */
    int abort_fd;          /* -1, or a descriptor that turns readable to abort waits */
    /* Minimum progress: over every timeout_ms (default 30 s) spent waiting
       for the peer, at least min_rate bytes per second of that waiting
       must move, or the stream fails with TF_ETIMEDOUT. Time the caller
       spends on its own work (disk, fsync) does not count. 0 = off. */
    uint64_t min_rate;
    int64_t waited_ms;     /* waiting for the peer, this window */
    uint64_t moved;        /* bytes moved, this window */
} tf__stream;

/* Starts a new minimum-progress window (at each request). */
void tf__stream_rate_reset(tf__stream *s);

/* Resolves host:port ("[::1]" accepted) and connects within timeout_ms,
   trying each address in turn. On success s->fd is an open socket with
   TCP_NODELAY set. TF_ENET, TF_ETIMEDOUT, TF_EINVAL. */
int tf__stream_connect(tf__stream *s, const char *host, const char *port,
                       int timeout_ms, tf__err *e);

/* Opens listening sockets for host:port (host NULL: every IPv6 and IPv4
   address). Fills fds[0..*count-1], at most max. TF_ENET, TF_EINVAL. */
int tf__listen(int *fds, int max, int *count, const char *host, const char *port,
               tf__err *e);

/* Accepts one connection as a non-blocking, close-on-exec socket with
   TCP_NODELAY. Returns the descriptor, or -1 with errno set. The peer's
   address is written into peer ("1.2.3.4:5" or "[::1]:5"). */
int tf__accept(int listen_fd, char *peer, size_t peer_len);

/* The local port a socket is bound to, 0 if it cannot be read. */
int tf__socket_port(int fd);

/* Writes "addr" or "addr:port" of a socket address. */
void tf__format_addr(const struct sockaddr *sa, int with_port, char *buf, size_t len);

/* Reads exactly len bytes. TF_ENET when the peer closes first (the message
   says how many bytes were missing), TF_ETIMEDOUT, TF_ECANCELED. */
int tf__stream_read(tf__stream *s, void *buf, size_t len, tf__err *e);

/* The same, and *eof = 1 when the peer closed before sending any byte:
   for the start of a frame, where that is a clean goodbye. */
int tf__stream_read_or_eof(tf__stream *s, void *buf, size_t len, int *eof, tf__err *e);

/* Reads what is available, at least 1 byte, at most cap; *got is set.
   Used by the frame parsers so that pipelined bytes are not lost. */
int tf__stream_read_some(tf__stream *s, void *buf, size_t cap, size_t *got, tf__err *e);

/* Writes exactly len bytes (never SIGPIPE). */
int tf__stream_write(tf__stream *s, const void *buf, size_t len, tf__err *e);

/* Sends up to len bytes of file_fd from *offset (sendfile where possible),
   advancing *offset by what was sent. Stops early, with *offset short,
   only when the file ends first. Socket failures return TF_ENET etc.; a
   file read failure returns TF_EIO with the message saying so. */
int tf__stream_send_file(tf__stream *s, int file_fd, uint64_t *offset, uint64_t len,
                         tf__err *e);

/* sendfile(2) that never raises SIGPIPE (sendfile has no MSG_NOSIGNAL). */
ssize_t tf__sendfile_nosignal(int sock, int file_fd, off_t *off, size_t count);

/* Waits until the peer sends something or closes, without reading.
   Returns TF_OK (readable), TF_ETIMEDOUT after timeout_ms (0 = none), or
   TF_ECANCELED if abort_fd turned readable. */
int tf__stream_wait_readable(tf__stream *s, int timeout_ms, tf__err *e);

/* Sends no more (shutdown SHUT_WR), then reads and drops what the peer
   still sends for up to linger_ms, so that closing does not reset a reply
   the peer has yet to read. Then closes. */
void tf__stream_close_gently(tf__stream *s, int linger_ms);

void tf__stream_close(tf__stream *s);

#endif /* TF_NETIO_H */
