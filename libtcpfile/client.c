/*
 * client.c - tf_connect, tf_get, tf_put, tf_list: one connection, any
 * number of requests, each a request frame, a response frame and (for data)
 * a payload of announced length followed by a trailer.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fspath.h"
#include "internal.h"
#include "netio.h"
#include "wire.h"

#define IO_BUF ((size_t)1 << 20)
/* Progress is reported at least this often while sending a file. */
#define SEND_STEP ((uint64_t)4 << 20)

struct tf_client {
    tf__stream s;
    tf_options opt;
    tf__err err;
    uint16_t version;
    uint32_t features;
    uint16_t max_name;    /* the server's limit, from the handshake */
    uint64_t max_upload;  /* the server's limit, 0 = none */
    int broken;           /* the stream lost sync: every call fails */
    uint8_t *buf;         /* IO_BUF bytes, allocated on first transfer */
};

/* Where received payload goes: a descriptor or a memory block. */
typedef struct sink {
    int fd;
    uint8_t *mem;
} sink;

static const char *op_name(int op)
{
    return op == TF_OP_GET ? "get" : op == TF_OP_PUT ? "put" : "list";
}

/* After a failure that may leave bytes unread or unsent, the stream cannot
   be trusted: close it, so later calls fail fast and clearly. */
static int break_connection(tf_client *c, int rc)
{
    if (rc == TF_ENET || rc == TF_ETIMEDOUT || rc == TF_EPROTO || rc == TF_ECANCELED ||
        rc == TF_ENOMEM) {
        tf__stream_close(&c->s);
        c->broken = 1;
    }
    return rc;
}

static int check_usable(tf_client *c)
{
    tf__err_clear(&c->err);
    if (c->broken)
        return tf__fail(&c->err, TF_ENET,
                        "the connection was closed after an earlier failure; reconnect");
    return TF_OK;
}

static int check_name(tf_client *c, const char *name)
{
    const char *why;
    if (tf_name_check(name, c->max_name, &why) != TF_OK)
        return tf__fail(&c->err, TF_EINVAL, "bad name \"%s\": %s (at most %u bytes)",
                        name ? name : "(null)", why, (unsigned)c->max_name);
    return TF_OK;
}

static int report(tf_client *c, uint64_t done, uint64_t total)
{
    if (c->opt.progress && c->opt.progress(c->opt.progress_user, done, total) != 0)
        return tf__fail(&c->err, TF_ECANCELED, "cancelled by the progress callback");
    return TF_OK;
}

static int ensure_buf(tf_client *c)
{
    if (!c->buf && !(c->buf = malloc(IO_BUF)))
        return tf__fail(&c->err, TF_ENOMEM, "out of memory");
    return TF_OK;
}

/* ---- handshake -------------------------------------------------------- */

static int handshake(tf_client *c)
{
    uint8_t out[TF_WIRE_CLIENT_HELLO_SIZE];
    tf_wire_client_hello ch = {TF_WIRE_VERSION, TF_WIRE_VERSION, TF_FEATURES_KNOWN};
    tf__wire_encode_client_hello(out, sizeof out, &ch);
    int rc = tf__stream_write(&c->s, out, sizeof out, &c->err);
    if (rc != TF_OK)
        return rc;

    uint8_t in[TF_WIRE_SERVER_HELLO_SIZE + TF_WIRE_MESSAGE_MAX];
    tf_wire_server_hello sh;
    size_t have = TF_WIRE_SERVER_HELLO_SIZE;
    rc = tf__stream_read(&c->s, in, have, &c->err);
    if (rc != TF_OK)
        return rc == TF_ENET ? tf__fail(&c->err, TF_ENET, "the server closed the connection "
                                                           "during the handshake")
                             : rc;
    long n = tf__wire_decode_server_hello(in, have, &sh);
    if (n == TF_WIRE_NEED_MORE) {
        rc = tf__stream_read(&c->s, in + have, sh.message_len, &c->err);
        if (rc != TF_OK)
            return rc;
        have += sh.message_len;
        n = tf__wire_decode_server_hello(in, have, &sh);
    }
    if (n < 0)
        return tf__fail(&c->err, TF_EPROTO, "the peer is not a tcpfile server "
                                             "(bad handshake)");
    if (sh.status != 0)
        return tf__fail(&c->err, tf__wire_code(sh.status), "the server refused: %.*s",
                        (int)sh.message_len, sh.message);
    c->version = tf__wire_negotiate(TF_WIRE_VERSION, TF_WIRE_VERSION, sh.version_min,
                                    sh.version_max);
    if (c->version == 0)
        return tf__fail(&c->err, TF_EPROTO,
                        "no common protocol version: the server speaks %u to %u, this "
                        "client %u",
                        (unsigned)sh.version_min, (unsigned)sh.version_max,
                        (unsigned)TF_WIRE_VERSION);
    c->features = sh.features & TF_FEATURES_KNOWN;
    c->max_name = sh.max_name;
    c->max_upload = sh.max_upload;
    return TF_OK;
}

int tf_connect_ex(tf_client **out, const char *host, const char *port,
                  const tf_options *opt, char *errbuf, size_t errlen)
{
    if (errbuf && errlen)
        errbuf[0] = '\0';
    if (!out)
        return TF_EINVAL;
    *out = NULL;
    tf_client *c = calloc(1, sizeof *c);
    if (!c) {
        if (errbuf && errlen)
            snprintf(errbuf, errlen, "out of memory");
        return TF_ENOMEM;
    }
    tf__options_copy(&c->opt, opt);
    c->s.abort_fd = -1;
    c->s.timeout_ms = (int)c->opt.value[TF_OPT_CONNECT_TIMEOUT_MS];
    int rc = tf__stream_connect(&c->s, host, port, c->s.timeout_ms, &c->err);
    if (rc == TF_OK)
        rc = handshake(c);
    if (rc != TF_OK) {
        if (errbuf && errlen)
            snprintf(errbuf, errlen, "%s", c->err.msg);
        tf_close(c);
        return rc;
    }
    c->s.timeout_ms = (int)c->opt.value[TF_OPT_IO_TIMEOUT_MS];
    *out = c;
    return TF_OK;
}

int tf_connect(tf_client **out, const char *host, const char *port, const tf_options *opt)
{
    return tf_connect_ex(out, host, port, opt, NULL, 0);
}

void tf_close(tf_client *c)
{
    if (!c)
        return;
    tf__stream_close(&c->s);
    free(c->buf);
    free(c);
}

const char *tf_errmsg(const tf_client *c)
{
    return c ? c->err.msg : "";
}

int tf_client_max_name(const tf_client *c)
{
    return c ? c->max_name : TF_EINVAL;
}

void tf_free(void *p)
{
    free(p);
}

/* ---- frames ----------------------------------------------------------- */

static int send_request(tf_client *c, int op, const char *name, uint64_t size)
{
    uint8_t buf[TF_WIRE_REQUEST_SIZE + TF_WIRE_NAME_MAX];
    tf_wire_request r = {.op = (uint8_t)op, .size = size, .name = name,
                         .name_len = (uint16_t)(name ? strlen(name) : 0)};
    long n = tf__wire_encode_request(buf, sizeof buf, &r);
    if (n < 0)
        return tf__fail(&c->err, TF_EINVAL, "cannot encode the request");
    return tf__stream_write(&c->s, buf, (size_t)n, &c->err);
}

/* Reads one response; a failure status becomes the return code, with the
   server's message kept in tf_errmsg. */
static int read_response(tf_client *c, int op, const char *name, uint64_t *size)
{
    uint8_t buf[TF_WIRE_RESPONSE_SIZE + TF_WIRE_MESSAGE_MAX];
    tf_wire_response r;
    int rc = tf__stream_read(&c->s, buf, TF_WIRE_RESPONSE_SIZE, &c->err);
    if (rc != TF_OK)
        return rc;
    long n = tf__wire_decode_response(buf, TF_WIRE_RESPONSE_SIZE, &r);
    if (n == TF_WIRE_NEED_MORE) {
        rc = tf__stream_read(&c->s, buf + TF_WIRE_RESPONSE_SIZE, r.message_len, &c->err);
        if (rc != TF_OK)
            return rc;
        n = tf__wire_decode_response(buf, TF_WIRE_RESPONSE_SIZE + r.message_len, &r);
    }
    if (n < 0 || r.op != op)
        return tf__fail(&c->err, TF_EPROTO, "malformed response to %s", op_name(op));
    if (r.status != 0) {
        int code = tf__wire_code(r.status);
        if (r.message_len)
            return tf__fail(&c->err, code, "%.*s", (int)r.message_len, r.message);
        return tf__fail(&c->err, code, "%s \"%s\": %s", op_name(op), name ? name : "",
                        tf_strerror(code));
    }
    *size = r.size;
    return TF_OK;
}

static int read_trailer(tf_client *c, tf_wire_trailer *t, uint8_t *buf)
{
    int rc = tf__stream_read(&c->s, buf, TF_WIRE_TRAILER_SIZE, &c->err);
    if (rc != TF_OK)
        return rc;
    long n = tf__wire_decode_trailer(buf, TF_WIRE_TRAILER_SIZE, t);
    if (n == TF_WIRE_NEED_MORE) {
        rc = tf__stream_read(&c->s, buf + TF_WIRE_TRAILER_SIZE, t->digest_len, &c->err);
        if (rc != TF_OK)
            return rc;
        n = tf__wire_decode_trailer(buf, TF_WIRE_TRAILER_SIZE + t->digest_len, t);
    }
    if (n < 0)
        return tf__fail(&c->err, TF_EPROTO, "malformed trailer");
    return TF_OK;
}

/*
 * Receives size payload bytes and the trailer into dst. A local write
 * failure does not stop the reading: the rest is drained, so the connection
 * stays usable, and the write error is returned.
 */
static int receive_payload(tf_client *c, uint64_t size, sink *dst)
{
    int rc = ensure_buf(c);
    if (rc != TF_OK)
        return rc;
    int local_rc = TF_OK;
    tf__err local_err = {{0}};
    uint64_t done = 0;
    rc = report(c, 0, size);
    while (rc == TF_OK && done < size) {
        size_t want = size - done < IO_BUF ? (size_t)(size - done) : IO_BUF;
        size_t got;
        uint8_t *to = dst->mem ? dst->mem + done : c->buf;
        rc = tf__stream_read_some(&c->s, to, want, &got, &c->err);
        if (rc != TF_OK)
            break;
        if (!dst->mem && local_rc == TF_OK)
            local_rc = tf__fs_write_all(dst->fd, c->buf, got, &local_err);
        done += got;
        rc = report(c, done, size);
    }
    if (rc != TF_OK)
        return rc;
    uint8_t tbuf[TF_WIRE_TRAILER_SIZE + TF_WIRE_DIGEST_MAX];
    tf_wire_trailer t;
    rc = read_trailer(c, &t, tbuf);
    if (rc != TF_OK)
        return rc;
    if (t.status != 0)
        return tf__fail(&c->err, tf__wire_code(t.status),
                        "the server failed while sending: %s",
                        tf_strerror(tf__wire_code(t.status)));
    if (local_rc != TF_OK) {
        c->err = local_err;
        return local_rc;
    }
    return TF_OK;
}

/* Reads and drops a payload and its trailer, to keep the stream in step. */
static int discard_payload(tf_client *c, uint64_t size)
{
    int rc = ensure_buf(c);
    if (rc != TF_OK)
        return rc;
    uint64_t done = 0;
    while (done < size) {
        size_t want = size - done < IO_BUF ? (size_t)(size - done) : IO_BUF;
        size_t got;
        rc = tf__stream_read_some(&c->s, c->buf, want, &got, &c->err);
        if (rc != TF_OK)
            return rc;
        done += got;
    }
    uint8_t tbuf[TF_WIRE_TRAILER_SIZE + TF_WIRE_DIGEST_MAX];
    tf_wire_trailer t;
    return read_trailer(c, &t, tbuf);
}

/* ---- get -------------------------------------------------------------- */

static int get_into(tf_client *c, const char *name, sink *dst)
{
    uint64_t size;
    int rc = send_request(c, TF_OP_GET, name, 0);
    if (rc == TF_OK)
        rc = read_response(c, TF_OP_GET, name, &size);
    if (rc == TF_OK)
        rc = receive_payload(c, size, dst);
    return break_connection(c, rc);
}

int tf_get_fd(tf_client *c, const char *name, int fd)
{
    if (!c)
        return TF_EINVAL;
    int rc = check_usable(c);
    if (rc == TF_OK)
        rc = check_name(c, name);
    if (rc == TF_OK && fd < 0)
        rc = tf__fail(&c->err, TF_EINVAL, "bad file descriptor");
    if (rc != TF_OK)
        return rc;
    sink dst = {.fd = fd};
    return get_into(c, name, &dst);
}

int tf_get(tf_client *c, const char *name, const char *local_path)
{
    if (!c)
        return TF_EINVAL;
    int rc = check_usable(c);
    if (rc == TF_OK)
        rc = check_name(c, name);
    if (rc != TF_OK)
        return rc;
    tf__tmpfile t;
    char final[4096];
    rc = tf__local_begin(local_path ? local_path : name, name, &t, final, sizeof final,
                         &c->err);
    if (rc != TF_OK)
        return rc;
    sink dst = {.fd = t.fd};
    rc = get_into(c, name, &dst);
    if (rc == TF_OK)
        return tf__local_commit(&t, final, &c->err);
    tf__tmpfile_abort(&t);
    return rc;
}

int tf_get_mem(tf_client *c, const char *name, void **data, size_t *len)
{
    if (!c || !data || !len)
        return TF_EINVAL;
    *data = NULL;
    *len = 0;
    int rc = check_usable(c);
    if (rc == TF_OK)
        rc = check_name(c, name);
    if (rc != TF_OK)
        return rc;
    uint64_t size;
    rc = send_request(c, TF_OP_GET, name, 0);
    if (rc == TF_OK)
        rc = read_response(c, TF_OP_GET, name, &size);
    if (rc != TF_OK)
        return break_connection(c, rc);
    if (size > (uint64_t)c->opt.value[TF_OPT_MAX_MEMORY] || size >= SIZE_MAX) {
        rc = discard_payload(c, size);
        if (rc == TF_OK)
            rc = tf__fail(&c->err, TF_ETOOBIG,
                          "\"%s\" is %llu bytes, over the memory limit of %lld", name,
                          (unsigned long long)size,
                          (long long)c->opt.value[TF_OPT_MAX_MEMORY]);
        return break_connection(c, rc);
    }
    uint8_t *mem = malloc((size_t)size + 1);
    if (!mem)
        return break_connection(c, tf__fail(&c->err, TF_ENOMEM, "out of memory"));
    sink dst = {.fd = -1, .mem = mem};
    rc = receive_payload(c, size, &dst);
    if (rc != TF_OK) {
        free(mem);
        return break_connection(c, rc);
    }
    mem[size] = '\0';
    *data = mem;
    *len = (size_t)size;
    return TF_OK;
}

/* ---- put -------------------------------------------------------------- */

/* The source of an upload: a memory block, or a descriptor read with
   sendfile from off when it can seek, with read() when it cannot. */
typedef struct source {
    const uint8_t *mem;
    int fd;
    int seekable;
    uint64_t off;
} source;

static int send_trailer(tf_client *c, int code)
{
    uint8_t buf[TF_WIRE_TRAILER_SIZE];
    tf_wire_trailer t = {.status = tf__wire_status(code)};
    tf__wire_encode_trailer(buf, sizeof buf, &t);
    return tf__stream_write(&c->s, buf, sizeof buf, &c->err);
}

static int send_zeros(tf_client *c, uint64_t n)
{
    int rc = ensure_buf(c);
    if (rc == TF_OK)
        memset(c->buf, 0, IO_BUF);
    while (rc == TF_OK && n > 0) {
        size_t k = n < IO_BUF ? (size_t)n : IO_BUF;
        rc = tf__stream_write(&c->s, c->buf, k, &c->err);
        n -= k;
    }
    return rc;
}

/* Sends up to step bytes of src->fd; *sent says how many. A source that
   fails or ends early sets *src_rc (not the return value, which is for the
   connection's own failures). */
static int send_from_fd(tf_client *c, source *src, uint64_t step, uint64_t *sent,
                        int *src_rc, tf__err *src_err)
{
    *sent = 0;
    if (src->seekable) {
        uint64_t off = src->off;
        int rc = tf__stream_send_file(&c->s, src->fd, &off, step, src_err);
        *sent = off - src->off;
        src->off = off;
        if (rc == TF_EIO) {
            *src_rc = rc;
            return TF_OK;
        }
        if (rc != TF_OK) {
            c->err = *src_err;
            return rc;
        }
    } else {
        int rc = ensure_buf(c);
        if (rc != TF_OK)
            return rc;
        size_t want = step < IO_BUF ? (size_t)step : IO_BUF;
        ssize_t n;
        do
            n = read(src->fd, c->buf, want);
        while (n < 0 && errno == EINTR);
        if (n < 0) {
            *src_rc = tf__fail_errno(src_err, TF_EIO, errno, "reading the source failed");
            return TF_OK;
        }
        rc = tf__stream_write(&c->s, c->buf, (size_t)n, &c->err);
        if (rc != TF_OK)
            return rc;
        *sent = (uint64_t)n;
        if (n > 0)
            return TF_OK;
    }
    if (*sent == 0 && *src_rc == TF_OK)
        *src_rc = tf__fail(src_err, TF_EIO, "the source ended before its announced size");
    return TF_OK;
}

/* Sends exactly size bytes from src. If the source fails or ends early the
   rest is zero-filled and *src_rc says why, so that the frame stays whole
   and the trailer can tell the server to discard the upload. */
static int send_payload(tf_client *c, source *src, uint64_t size, int *src_rc,
                        tf__err *src_err)
{
    uint64_t done = 0;
    int rc = report(c, 0, size);
    *src_rc = TF_OK;
    while (rc == TF_OK && done < size) {
        uint64_t step = size - done < SEND_STEP ? size - done : SEND_STEP;
        uint64_t sent = step;
        if (*src_rc != TF_OK)
            rc = send_zeros(c, step);
        else if (src->mem)
            rc = tf__stream_write(&c->s, src->mem + done, (size_t)step, &c->err);
        else
            rc = send_from_fd(c, src, step, &sent, src_rc, src_err);
        done += sent;
        if (rc == TF_OK)
            rc = report(c, done, size);
    }
    return rc;
}

static int put_from(tf_client *c, source *src, uint64_t size, const char *name)
{
    uint64_t ignored;
    if (c->max_upload && size > c->max_upload)
        return tf__fail(&c->err, TF_ETOOBIG,
                        "\"%s\" is %llu bytes; the server accepts at most %llu", name,
                        (unsigned long long)size, (unsigned long long)c->max_upload);
    int rc = send_request(c, TF_OP_PUT, name, size);
    if (rc == TF_OK)
        rc = read_response(c, TF_OP_PUT, name, &ignored); /* go-ahead or refusal */
    if (rc != TF_OK)
        return break_connection(c, rc);
    int src_rc;
    tf__err src_err = {{0}};
    rc = send_payload(c, src, size, &src_rc, &src_err);
    if (rc == TF_OK)
        rc = send_trailer(c, src_rc);
    if (rc == TF_OK)
        rc = read_response(c, TF_OP_PUT, name, &ignored);
    /* A source failure is the real story; the server's refusal of the
       upload we told it to discard only echoes it. */
    if (src_rc != TF_OK && rc != TF_ENET && rc != TF_ETIMEDOUT && rc != TF_EPROTO) {
        c->err = src_err;
        rc = src_rc;
    }
    if (src->seekable)
        lseek(src->fd, (off_t)src->off, SEEK_SET);
    return break_connection(c, rc);
}

/* A descriptor's source: sendfile from its offset when it can seek. */
static source fd_source(int fd)
{
    source src = {.fd = fd};
    off_t off = lseek(fd, 0, SEEK_CUR);
    if (off >= 0) {
        src.seekable = 1;
        src.off = (uint64_t)off;
    }
    return src;
}

static const char *basename_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

int tf_put_fd(tf_client *c, int fd, uint64_t size, const char *name)
{
    if (!c)
        return TF_EINVAL;
    int rc = check_usable(c);
    if (rc == TF_OK)
        rc = check_name(c, name);
    if (rc == TF_OK && fd < 0)
        rc = tf__fail(&c->err, TF_EINVAL, "bad file descriptor");
    if (rc != TF_OK)
        return rc;
    source src = fd_source(fd);
    return put_from(c, &src, size, name);
}

int tf_put(tf_client *c, const char *local_path, const char *name)
{
    if (!c)
        return TF_EINVAL;
    int rc = check_usable(c);
    if (rc != TF_OK)
        return rc;
    if (!local_path)
        return tf__fail(&c->err, TF_EINVAL, "no local path given");
    if (!name)
        name = basename_of(local_path);
    rc = check_name(c, name);
    if (rc != TF_OK)
        return rc;
    int fd;
    uint64_t size;
    rc = tf__local_open_read(local_path, &fd, &size, &c->err);
    if (rc != TF_OK)
        return rc;
    source src = fd_source(fd);
    rc = put_from(c, &src, size, name);
    close(fd);
    return rc;
}

int tf_put_mem(tf_client *c, const void *data, size_t len, const char *name)
{
    if (!c)
        return TF_EINVAL;
    int rc = check_usable(c);
    if (rc == TF_OK)
        rc = check_name(c, name);
    if (rc == TF_OK && !data && len)
        rc = tf__fail(&c->err, TF_EINVAL, "no data given");
    if (rc != TF_OK)
        return rc;
    source src = {.fd = -1, .mem = data ? data : (const uint8_t *)""};
    return put_from(c, &src, len, name);
}

/* ---- list ------------------------------------------------------------- */

int tf_list(tf_client *c, tf_listing **out)
{
    if (!c || !out)
        return TF_EINVAL;
    *out = NULL;
    int rc = check_usable(c);
    if (rc != TF_OK)
        return rc;
    uint64_t size;
    rc = send_request(c, TF_OP_LIST, NULL, 0);
    if (rc == TF_OK)
        rc = read_response(c, TF_OP_LIST, NULL, &size);
    if (rc != TF_OK)
        return break_connection(c, rc);
    if (size > (uint64_t)c->opt.value[TF_OPT_MAX_MEMORY]) {
        rc = discard_payload(c, size);
        if (rc == TF_OK)
            rc = tf__fail(&c->err, TF_ETOOBIG,
                          "the listing is %llu bytes, over the memory limit of %lld",
                          (unsigned long long)size,
                          (long long)c->opt.value[TF_OPT_MAX_MEMORY]);
        return break_connection(c, rc);
    }
    uint8_t *mem = malloc(size ? (size_t)size : 1);
    if (!mem)
        return break_connection(c, tf__fail(&c->err, TF_ENOMEM, "out of memory"));
    sink dst = {.fd = -1, .mem = mem};
    rc = receive_payload(c, size, &dst);
    if (rc == TF_OK) {
        rc = tf__wire_decode_list(mem, (size_t)size, c->max_name, out);
        if (rc == TF_EPROTO)
            tf__fail(&c->err, rc, "the server sent a malformed listing");
        else if (rc != TF_OK)
            tf__fail(&c->err, rc, "out of memory decoding the listing");
    }
    free(mem);
    return break_connection(c, rc);
}

size_t tf_listing_count(const tf_listing *l)
{
    return l ? l->count : 0;
}

const tf_entry *tf_listing_at(const tf_listing *l, size_t i)
{
    return l && i < l->count ? &l->entries[i] : NULL;
}

void tf_listing_free(tf_listing *l)
{
    if (!l)
        return;
    free(l->entries);
    free(l->names);
    free(l);
}
