/*
 * transfer.c - the client's payload loops (see transfer.h).
 */
#include "transfer.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "fspath.h"
#include "wire.h"

static int report(tf__xfer *x, uint64_t done, tf__err *e)
{
    if (x->progress && x->progress(x->ctx, done) != 0)
        return tf__fail(e, TF_ECANCELED, "cancelled by the progress callback");
    return TF_OK;
}

/* Reports at least this often while sending through sendfile. */
#define SENDFILE_STEP ((uint64_t)4 << 20)

static int send_zeros(tf__xfer *x, uint64_t n, tf__err *e)
{
    memset(x->buf, 0, x->buf_len);
    while (n > 0) {
        size_t k = n < x->buf_len ? (size_t)n : x->buf_len;
        int rc = tf__stream_write(x->s, x->buf, k, e);
        if (rc != TF_OK)
            return rc;
        n -= k;
    }
    return TF_OK;
}

/* Zero-copy path: no checksum to compute, a file that can seek. */
static int send_fd_sendfile(tf__xfer *x, int fd, uint64_t *off, uint64_t len,
                            uint64_t *done, int *src_rc, tf__err *src_err, tf__err *e)
{
    while (*done < len) {
        uint64_t step = len - *done < SENDFILE_STEP ? len - *done : SENDFILE_STEP;
        uint64_t start = *off;
        tf__err err = {{0}}; /* empty: tf__fail records only into an empty record */
        int rc = tf__stream_send_file(x->s, fd, off, step, &err);
        *done += *off - start;
        if (rc == TF_EIO) {
            *src_err = err;
            *src_rc = rc;
            return TF_OK;
        }
        if (rc != TF_OK) {
            *e = err;
            return rc;
        }
        if (*off - start < step) {
            *src_rc = tf__fail(src_err, TF_EIO, "the file shrank while being sent");
            return TF_OK;
        }
        rc = report(x, *done, e);
        if (rc != TF_OK)
            return rc;
    }
    return TF_OK;
}

/* Copy path: read, hash what was read, send it. */
static int send_fd_copy(tf__xfer *x, int fd, uint64_t *off, uint64_t len, uint64_t *done,
                        int *src_rc, tf__err *src_err, tf__err *e)
{
    while (*done < len) {
        size_t want = len - *done < x->buf_len ? (size_t)(len - *done) : x->buf_len;
        ssize_t n = off ? pread(fd, x->buf, want, (off_t)*off) : read(fd, x->buf, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            *src_rc = tf__fail_errno(src_err, TF_EIO, errno, "reading the file failed");
            return TF_OK;
        }
        if (n == 0) {
            *src_rc = tf__fail(src_err, TF_EIO, "the file ended before its announced size");
            return TF_OK;
        }
        tf__digest_update(&x->digest, x->buf, (size_t)n);
        int rc = tf__stream_write(x->s, x->buf, (size_t)n, e);
        if (rc != TF_OK)
            return rc;
        if (off)
            *off += (uint64_t)n;
        *done += (uint64_t)n;
        rc = report(x, *done, e);
        if (rc != TF_OK)
            return rc;
    }
    return TF_OK;
}

int tf__xfer_send_fd(tf__xfer *x, int fd, uint64_t *off, uint64_t len, int *src_rc,
                     tf__err *src_err, tf__err *e)
{
    uint64_t done = 0;
    *src_rc = TF_OK;
    int rc = report(x, 0, e);
    if (rc != TF_OK)
        return rc;
    if (off && !tf__digest_on(&x->digest))
        rc = send_fd_sendfile(x, fd, off, len, &done, src_rc, src_err, e);
    else
        rc = send_fd_copy(x, fd, off, len, &done, src_rc, src_err, e);
    if (rc == TF_OK && done < len)
        rc = send_zeros(x, len - done, e);
    return rc;
}

int tf__xfer_send_mem(tf__xfer *x, const void *data, uint64_t len, tf__err *e)
{
    const uint8_t *p = data;
    uint64_t done = 0;
    int rc = report(x, 0, e);
    while (rc == TF_OK && done < len) {
        size_t step = len - done < SENDFILE_STEP ? (size_t)(len - done) : SENDFILE_STEP;
        tf__digest_update(&x->digest, p + done, step);
        rc = tf__stream_write(x->s, p + done, step, e);
        done += step;
        if (rc == TF_OK)
            rc = report(x, done, e);
    }
    return rc;
}

int tf__xfer_recv(tf__xfer *x, int fd, uint8_t *mem, uint64_t len, int *dst_rc,
                  tf__err *dst_err, tf__err *e)
{
    uint64_t done = 0;
    *dst_rc = TF_OK;
    int rc = report(x, 0, e);
    while (rc == TF_OK && done < len) {
        uint8_t *to = mem ? mem + done : x->buf;
        size_t cap = mem ? (len - done > SIZE_MAX ? SIZE_MAX : (size_t)(len - done))
                         : (len - done < x->buf_len ? (size_t)(len - done) : x->buf_len);
        size_t got;
        rc = tf__stream_read_some(x->s, to, cap, &got, e);
        if (rc != TF_OK)
            break;
        tf__digest_update(&x->digest, to, got);
        if (fd >= 0 && *dst_rc == TF_OK)
            *dst_rc = tf__fs_write_all(fd, to, got, dst_err);
        done += got;
        rc = report(x, done, e);
    }
    return rc;
}

int tf__xfer_send_trailer(tf__xfer *x, int code, tf__err *e)
{
    uint8_t buf[TF_WIRE_TRAILER_SIZE + TF_DIGEST_SIZE];
    uint8_t digest[TF_DIGEST_SIZE];
    tf_wire_trailer t = {.status = tf__wire_status(code)};
    if (code == TF_OK && tf__digest_on(&x->digest)) {
        tf__digest_final(&x->digest, digest);
        t.digest = digest;
        t.digest_len = TF_DIGEST_SIZE;
    }
    long n = tf__wire_encode_trailer(buf, sizeof buf, &t);
    return tf__stream_write(x->s, buf, (size_t)n, e);
}

int tf__xfer_recv_trailer(tf__xfer *x, int *verdict, tf__err *verdict_err, tf__err *e)
{
    uint8_t buf[TF_WIRE_TRAILER_SIZE + TF_WIRE_DIGEST_MAX];
    tf_wire_trailer t;
    int rc = tf__stream_read(x->s, buf, TF_WIRE_TRAILER_SIZE, e);
    if (rc != TF_OK)
        return rc;
    long n = tf__wire_decode_trailer(buf, TF_WIRE_TRAILER_SIZE, &t);
    if (n == TF_WIRE_NEED_MORE) {
        rc = tf__stream_read(x->s, buf + TF_WIRE_TRAILER_SIZE, t.digest_len, e);
        if (rc != TF_OK)
            return rc;
        n = tf__wire_decode_trailer(buf, TF_WIRE_TRAILER_SIZE + t.digest_len, &t);
    }
    if (n < 0)
        return tf__fail(e, TF_EPROTO, "malformed trailer");
    *verdict = TF_OK;
    if (t.status != 0) {
        x->sender_failed = 1;
        *verdict = tf__wire_code(t.status);
        if (!tf__wire_status_known(t.status))
            tf__fail(verdict_err, *verdict,
                     "the sender failed mid-transfer: unknown error from the server "
                     "(status %u)",
                     (unsigned)t.status);
        else
            tf__fail(verdict_err, *verdict, "the sender failed mid-transfer: %s",
                     tf_strerror(*verdict));
        return TF_OK;
    }
    if (!tf__digest_on(&x->digest))
        return t.digest_len == 0 ? TF_OK
                                 : tf__fail(e, TF_EPROTO, "unexpected digest in trailer");
    if (t.digest_len != TF_DIGEST_SIZE)
        return tf__fail(e, TF_EPROTO, "the trailer lacks the negotiated checksum");
    uint8_t mine[TF_DIGEST_SIZE];
    tf__digest_final(&x->digest, mine);
    if (memcmp(mine, t.digest, TF_DIGEST_SIZE) != 0)
        *verdict = tf__fail(verdict_err, TF_ECHECKSUM,
                            "checksum mismatch: the data was corrupted in transit");
    return TF_OK;
}
