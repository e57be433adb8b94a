/*
 * transfer.h - moving one payload and its trailer between a blocking-style
 * stream and a file descriptor or memory, with the optional checksum and
 * progress: the client's side of every transfer. The framing rules (whole
 * frames even when a source fails, drain on a local write failure, verify
 * the digest) are the ones the server's event-driven sessions (session.c)
 * follow step by step.
 */
#ifndef TF_TRANSFER_H
#define TF_TRANSFER_H

#include <stddef.h>
#include <stdint.h>

#include "digest.h"
#include "internal.h"
#include "netio.h"

typedef struct tf__xfer {
    tf__stream *s;
    tf__digest digest;   /* off unless the checksum feature is in use */
    /* Called after each step with the bytes moved so far by this call; a
       non-zero return cancels with TF_ECANCELED. NULL: no reports. */
    int (*progress)(void *ctx, uint64_t done);
    void *ctx;
    uint8_t *buf;        /* scratch space of buf_len bytes */
    size_t buf_len;
    /* Set by tf__xfer_recv_trailer when the trailer's status is not 0: the
       sender vouches for none of the payload (it may be zero padding from
       any byte on), so none of it may be kept, not even for a resume. */
    int sender_failed;
} tf__xfer;

/*
 * Sends exactly len bytes from fd: from *off with pread/sendfile when off is
 * not NULL (advancing it), else with read(). If the source fails or ends
 * early, the rest is zero-filled so the frame stays whole, and *src_rc and
 * src_err say why (the caller then sends a failing trailer). The return
 * value is the connection's own failure (TF_ENET, TF_ETIMEDOUT, ...).
 */
int tf__xfer_send_fd(tf__xfer *x, int fd, uint64_t *off, uint64_t len, int *src_rc,
                     tf__err *src_err, tf__err *e);

/* Sends len bytes from memory. */
int tf__xfer_send_mem(tf__xfer *x, const void *data, uint64_t len, tf__err *e);

/*
 * Receives exactly len bytes into fd (when fd >= 0), into mem (when not
 * NULL), or nowhere. A write failure does not stop the reading: the rest is
 * drained so the stream stays in step, and *dst_rc / dst_err say why.
 */
int tf__xfer_recv(tf__xfer *x, int fd, uint8_t *mem, uint64_t len, int *dst_rc,
                  tf__err *dst_err, tf__err *e);

/* Sends the trailer: status code and, when the checksum is on and code is
   TF_OK, the digest of everything sent through x. */
int tf__xfer_send_trailer(tf__xfer *x, int code, tf__err *e);

/*
 * Receives the trailer. Returns a connection failure, or TF_OK with
 * *verdict set: TF_OK when the sender reported success and the digest (if
 * on) matches, TF_ECHECKSUM on a mismatch, or the sender's failure code.
 */
int tf__xfer_recv_trailer(tf__xfer *x, int *verdict, tf__err *verdict_err, tf__err *e);

#endif /* TF_TRANSFER_H */
