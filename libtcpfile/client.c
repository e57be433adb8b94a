/*
 * client.c - tf_connect, tf_get, tf_put, tf_list: one connection, any
 * number of requests, each a request frame, a response frame and (for data)
 * a payload of announced length followed by a trailer.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/stat.h>
#include <openssl/crypto.h>

#include "digest.h"
#include "localfile.h"
#include "internal.h"
#include "netio.h"
#include "transfer.h"
#include "wire.h"
#include "client_internal.h"
#include "transport_tls.h"

static const char *op_name(int op)
{
    static const char *const names[] = {"request", "get", "put", "list", "auth",
                                        "stat", "mkdir", "remove", "rename", "list"};
    return op >= 0 && op < (int)(sizeof names / sizeof names[0]) ? names[op] : "request";
}

int tf__client_fatal(int rc)
{
    return rc == TF_ENET || rc == TF_ETIMEDOUT || rc == TF_EPROTO || rc == TF_ECANCELED ||
           rc == TF_ENOMEM;
}

/* After a failure that may leave bytes unread or unsent, the stream cannot
   be trusted: close it, so later calls fail fast and clearly. */
int tf__client_break(tf_client *c, int rc)
{
    if (c->hello_pending && tf__client_fatal(rc)) {
        /* An early request failed to go out or come back: a server that
           refused and closed said why in its hello, which beats
           "connection reset". */
        tf__err net = c->err;
        int said = tf__client_hello(c);
        if (said != TF_OK)
            return said;
        c->err = net;
    }
    if (tf__client_fatal(rc)) {
        tf__stream_close(&c->s);
        c->broken = 1;
    }
    return rc;
}

int tf__client_usable(tf_client *c)
{
    tf__err_clear(&c->err);
    if (c->hello_rc)
        return tf__fail(&c->err, c->hello_rc, "%s", c->hello_msg ? c->hello_msg : "");
    if (c->broken)
        return tf__fail(&c->err, TF_ENET,
                        "the connection was closed after an earlier failure; reconnect");
    if (c->dir)
        return tf__fail(&c->err, TF_EBUSY,
                        "a directory listing is being read on this connection "
                        "(tf_dir_close it first)");
    return TF_OK;
}

int tf__client_check_name(tf_client *c, const char *name)
{
    /* Before the server's hello only a plain name within the client's own
       limit goes out: a path needs TREE, a longer name its max_name. */
    if (c->hello_pending && tf_name_check(name, c->max_name, NULL) != TF_OK) {
        int rc = tf__client_hello(c);
        if (rc != TF_OK)
            return rc;
    }
    if (c->features & TF_FEATURE_TREE) /* not the query: it would wait for the hello */
        return tf__client_check_path(c, name, "name");
    const char *why;
    if (tf_name_check(name, c->max_name, &why) != TF_OK)
        return tf__fail(&c->err, TF_EINVAL, "bad name \"%s\": %s (at most %u bytes)",
                        name ? name : "(null)", why, (unsigned)c->max_name);
    return TF_OK;
}

int tf__client_buffers(tf_client *c)
{
    if (c->buf)
        return TF_OK;
    /* Only now: ten thousand idle clients in one process hold no buffers. */
    if (!(c->buf = malloc(IO_BUF + READ_BUF + OUT_BUF)))
        return tf__fail(&c->err, TF_ENOMEM, "out of memory");
    tf__stream_set_buffer(&c->s, c->buf + IO_BUF, READ_BUF);
    return TF_OK;
}

/* ---- handshake -------------------------------------------------------- */

static int send_hello(tf_client *c)
{
    uint8_t out[TF_WIRE_CLIENT_HELLO_SIZE];
    c->wanted = TF_FEATURE_RESUME | TF_FEATURE_STREAM | TF_FEATURE_AUTH | TF_FEATURE_TREE |
                TF_FEATURE_PUTX;
    if (c->opt.value[TF_OPT_CHECKSUM])
        c->wanted |= TF_FEATURE_CHECKSUM;
    tf_wire_client_hello ch = {TF_WIRE_VERSION, TF_WIRE_VERSION, c->wanted};
    tf__wire_encode_client_hello(out, sizeof out, &ch);
    return tf__stream_write(&c->s, out, sizeof out, &c->err);
}

/* Until the server's hello is read (TF_OPT_EARLY_REQUESTS), the client
   works with what it asked for and its own limits; no AUTH, since no
   login is sent before a hello asks for one. */
static void assume_hello(tf_client *c)
{
    c->version = TF_WIRE_VERSION;
    c->features = c->wanted & ~(uint32_t)TF_FEATURE_AUTH;
    c->max_name = (uint16_t)c->opt.value[TF_OPT_MAX_NAME_LEN];
    c->max_upload = 0;
    c->max_depth = (uint16_t)c->opt.value[TF_OPT_MAX_DEPTH];
    c->max_path = (uint16_t)c->opt.value[TF_OPT_MAX_PATH];
}

static int read_hello(tf_client *c)
{
    uint32_t wanted = c->wanted;
    int rc;
    uint8_t in[TF_WIRE_SERVER_HELLO_SIZE + TF_WIRE_MESSAGE_MAX];
    tf_wire_server_hello sh;
    size_t have = TF_WIRE_SERVER_HELLO_SIZE;
    rc = tf__stream_read(&c->s, in, have, &c->err);
    if (rc != TF_OK)
        return rc == TF_ENET ? tf__err_prefix(&c->err, TF_ENET, "during the handshake") : rc;
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
    if (sh.status != 0) {
        /* The server's words go to terminals and logs: escaped, so that
           they cannot drive a terminal or forge a line (docs/security.md). */
        char why[TF_ERRMSG_MAX];
        tf_escape(why, sizeof why, sh.message, sh.message_len, 0);
        return tf__fail(&c->err, tf__wire_code(sh.status), "the server refused: %s", why);
    }
    c->version = tf__wire_negotiate(TF_WIRE_VERSION, TF_WIRE_VERSION, sh.version_min,
                                    sh.version_max);
    if (c->version == 0)
        return tf__fail(&c->err, TF_EPROTO,
                        "no common protocol version: the server speaks %u to %u, this "
                        "client %u",
                        (unsigned)sh.version_min, (unsigned)sh.version_max,
                        (unsigned)TF_WIRE_VERSION);
    c->features = sh.features & wanted;
    c->max_name = sh.max_name;
    c->max_upload = sh.max_upload;
    if (c->features & TF_FEATURE_TREE) {
        /* The server's depth (0: not announced); its max_path is not
           announced, so ours stands (a longer one gets EINVAL anyway). */
        uint16_t depth = tf__wire_server_hello_depth(in);
        int64_t mine = c->opt.value[TF_OPT_MAX_DEPTH];
        c->max_depth = (uint16_t)(depth && depth < mine ? depth : mine);
        c->max_path = (uint16_t)c->opt.value[TF_OPT_MAX_PATH];
    }
    return TF_OK;
}

/* ---- logging in (feature AUTH) ------------------------------------------------ */

/* A server with AUTH in its hello wants the auth request before any other
   (docs/protocol.md, 4b); one without it is never sent one, and the
   client's user and token stay unsent. */
static int authenticate(tf_client *c)
{
    if (!(c->features & TF_FEATURE_AUTH))
        return TF_OK;
    const char *user = tf__opt_str(&c->opt, TF_SOPT_USER);
    const char *token = tf__opt_str(&c->opt, TF_SOPT_TOKEN);
    if ((!user || !*user) && tf__opt_str(&c->opt, TF_SOPT_TLS_CLIENT_CERT))
        /* The hello asks for a login although a certificate was shown:
           it is no user's there (docs/protocol.md, 4c). */
        return tf__fail(&c->err, TF_EACCES,
                        "authentication required: the server maps the client certificate to "
                        "no user (give a user and its token)");
    if (!user || !*user)
        return tf__fail(&c->err, TF_EACCES,
                        "authentication required: the server serves only its users (give a "
                        "user and its token)");
    size_t ulen = strlen(user), tlen = token ? strlen(token) : 0;
    if (ulen > TF_WIRE_USER_MAX || tlen > TF_WIRE_TOKEN_MAX)
        return tf__fail(&c->err, TF_EINVAL, "the user name or token is too long (at most %d "
                                            "and %d bytes)",
                        TF_WIRE_USER_MAX, TF_WIRE_TOKEN_MAX);
    uint8_t buf[TF_WIRE_AUTH_SIZE + TF_WIRE_USER_MAX + TF_WIRE_TOKEN_MAX];
    tf_wire_auth a = {user, (uint16_t)ulen, token, (uint16_t)tlen};
    long n = tf__wire_encode_auth(buf, sizeof buf, &a);
    int rc = n < 0 ? tf__fail(&c->err, TF_EINVAL, "cannot encode the auth request")
                   : tf__stream_write(&c->s, buf, (size_t)n, &c->err);
    OPENSSL_cleanse(buf, sizeof buf);
    uint64_t size = 0;
    if (rc == TF_OK)
        rc = tf__client_read_response(c, TF_OP_AUTH, user, &size, NULL);
    return rc;
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
    int rc = tf__options_copy(&c->opt, opt);
    if (rc != TF_OK) {
        free(c);
        if (errbuf && errlen)
            snprintf(errbuf, errlen, "out of memory");
        return rc;
    }
    rc = tf__stream_connect(&c->s, host, port,
                                (int)c->opt.value[TF_OPT_CONNECT_TIMEOUT_MS], &c->err);
    if (rc == TF_OK && c->opt.value[TF_OPT_TLS])
        rc = tf__client_tls_start(c, host);
    if (rc == TF_OK)
        rc = send_hello(c);
    /* With a user to log in as, the hello must be read first: an auth
       request goes only to a server whose hello asks for one. */
    const char *user = tf__opt_str(&c->opt, TF_SOPT_USER);
    c->hello_pending = rc == TF_OK && c->opt.value[TF_OPT_EARLY_REQUESTS] && !(user && *user);
    if (c->hello_pending)
        assume_hello(c);
    else if (rc == TF_OK)
        rc = read_hello(c);
    if (rc == TF_OK)
        rc = tf__stream_set_timeout(&c->s, (int)c->opt.value[TF_OPT_IO_TIMEOUT_MS], &c->err);
    /* Under the I/O timeout: a failed login may be answered seconds late. */
    if (rc == TF_OK && !c->hello_pending)
        rc = authenticate(c);
    if (rc != TF_OK) {
        if (errbuf && errlen)
            snprintf(errbuf, errlen, "%s", c->err.msg);
        tf_close(c);
        return rc;
    }
    *out = c;
    return TF_OK;
}

int tf__client_hello(tf_client *c)
{
    if (!c->hello_pending)
        return TF_OK;
    c->hello_pending = 0;
    int rc = read_hello(c);
    if (rc == TF_OK)
        rc = authenticate(c); /* no user here: only says why a login is wanted */
    if (rc != TF_OK) {
        /* The connection is over, as a failed tf_connect's would be; each
           later call says why, not "closed after an earlier failure". */
        c->hello_rc = rc;
        c->hello_msg = strdup(c->err.msg);
        tf__stream_close(&c->s);
        c->broken = 1;
        c->features = 0;
    }
    return rc;
}

void tf__client_settle(const tf_client *cc)
{
    if (!cc->hello_pending)
        return;
    /* Every handle comes from tf_connect's calloc: only the queries'
       signatures are const. A failure is kept for the next call. */
    tf_client *c = (tf_client *)(uintptr_t)cc;
    tf__err before = c->err;
    tf__client_hello(c);
    c->err = before;
}

int tf_connect(tf_client **out, const char *host, const char *port, const tf_options *opt)
{
    return tf_connect_ex(out, host, port, opt, NULL, 0);
}

void tf_close(tf_client *c)
{
    if (!c)
        return;
    /* TLS ends with close_notify, so the server sees a clean end, not a
       truncation (docs/protocol.md, TLS). */
    if (tf__conn_tls_of(&c->s.conn) && !c->broken)
        tf__conn_shutdown(&c->s.conn);
    tf__stream_close(&c->s);
    tf__digest_end(&c->digest);
    free(c->buf);
    free(c->item_msgs);
    free(c->hello_msg);
    tf__options_release(&c->opt);
    free(c);
}

const char *tf_errmsg(const tf_client *c)
{
    return c ? c->err.msg : "";
}

int tf_client_handshake(tf_client *c)
{
    if (!c)
        return TF_EINVAL;
    int rc = tf__client_hello(c);
    if (rc == TF_OK && c->hello_rc)
        rc = tf__fail(&c->err, c->hello_rc, "%s", c->hello_msg ? c->hello_msg : "");
    return rc;
}

int tf_client_max_name(const tf_client *c)
{
    if (!c)
        return TF_EINVAL;
    tf__client_settle(c);
    return c->max_name;
}

void tf_free(void *p)
{
    free(p);
}

/* ---- frames ----------------------------------------------------------- */

static int send_request(tf_client *c, const tf_wire_request *r)
{
    uint8_t buf[TF_WIRE_REQUEST_SIZE + TF_WIRE_NAME_MAX + TF_UPLOAD_KEY_SIZE +
                TF_WIRE_EXT_MAX];
    long n = tf__wire_encode_request(buf, sizeof buf, r);
    if (n < 0)
        return tf__fail(&c->err, TF_EINVAL, "cannot encode the request");
    return tf__stream_write(&c->s, buf, (size_t)n, &c->err);
}

/* Reads one response; a failure status becomes the return code, with the
   server's message kept in tf_errmsg. */
int tf__client_read_response(tf_client *c, int op, const char *name, uint64_t *size,
                             uint8_t *flags)
{
    uint8_t buf[TF_WIRE_RESPONSE_SIZE + TF_WIRE_MESSAGE_MAX];
    tf_wire_response r;
    int rc = tf__client_hello(c); /* the server's hello comes first on the wire */
    if (rc != TF_OK)
        return rc;
    rc = tf__stream_read(&c->s, buf, TF_WIRE_RESPONSE_SIZE, &c->err);
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
        /* A name sent before the server's hello (TF_OPT_EARLY_REQUESTS)
           and refused for its limits: the client's own words, as when the
           limits were known before sending. */
        if (code == TF_EINVAL && name && (op == TF_OP_GET || op == TF_OP_PUT) &&
            tf__client_check_name(c, name) != TF_OK)
            return TF_EINVAL;
        char why[TF_ERRMSG_MAX]; /* escaped, as the refusal in handshake() */
        why[0] = '\0';
        if (r.message_len)
            tf_escape(why, sizeof why, r.message, r.message_len, 0);
        if (!tf__wire_status_known(r.status))
            return tf__fail(&c->err, code, "unknown error from the server (status %u)%s%s",
                            (unsigned)r.status, why[0] ? ": " : "", why);
        if (why[0])
            return tf__fail(&c->err, code, "%s", why);
        return tf__fail(&c->err, code, "%s \"%s\": %s", op_name(op), name ? name : "",
                        tf_strerror(code));
    }
    *size = r.size;
    if (flags)
        *flags = r.flags;
    return TF_OK;
}

/* ---- payloads ------------------------------------------------------------ */

/* Progress of one transfer, as the caller's callback sees it: resumed
   bytes count as done. */
typedef struct progress_ctx {
    tf_client *c;
    uint64_t base;
    uint64_t total;
    long index; /* a tf_get_many item's index, -1 for the other calls */
} progress_ctx;

static int client_progress(void *ctx, uint64_t done)
{
    progress_ctx *p = ctx;
    /* tf_get_many tells the item to the callback that takes it; without
       one, the plain callback sees each item from 0 to its size. */
    if (p->index >= 0 && p->c->opt.item_progress)
        return p->c->opt.item_progress(p->c->opt.progress_user_item, (size_t)p->index,
                                       p->base + done, p->total);
    return p->c->opt.progress(p->c->opt.progress_user, p->base + done, p->total);
}

static int xfer_begin(tf_client *c, tf__xfer *x, progress_ctx *p)
{
    memset(x, 0, sizeof *x);
    int rc = tf__client_buffers(c);
    if (rc != TF_OK)
        return rc;
    x->s = &c->s;
    x->buf = c->buf;
    x->buf_len = IO_BUF;
    if (p && (p->index >= 0 ? c->opt.item_progress || c->opt.progress : !!c->opt.progress)) {
        p->c = c;
        x->progress = client_progress;
        x->ctx = p;
    }
    /* The transfer borrows the client's checksum state; xfer_end gives it
       back, so that a transfer allocates nothing. */
    x->digest = c->digest;
    c->digest = (tf__digest){0};
    if (tf__digest_begin(&x->digest, (c->features & TF_FEATURE_CHECKSUM) != 0) != TF_OK)
        return tf__fail(&c->err, TF_ENOMEM, "out of memory");
    return TF_OK;
}

static void xfer_end(tf_client *c, tf__xfer *x)
{
    if (x->digest.state) /* not when xfer_begin failed before borrowing */
        c->digest = x->digest;
    x->digest = (tf__digest){0};
}

/*
 * Receives a payload of size bytes into fd / mem (or nowhere) and its
 * trailer. The result is, in order of precedence: the connection's failure,
 * the sender's failure or a checksum mismatch, a local write failure.
 */
static int receive_payload(tf_client *c, tf__xfer *x, int fd, uint8_t *mem, uint64_t size)
{
    int dst_rc, verdict;
    tf__err dst_err = {{0}}, verdict_err = {{0}};
    int rc = tf__xfer_recv(x, fd, mem, size, &dst_rc, &dst_err, &c->err);
    if (rc == TF_OK)
        rc = tf__xfer_recv_trailer(x, &verdict, &verdict_err, &c->err);
    if (rc != TF_OK)
        return rc;
    if (verdict != TF_OK) {
        tf__err_take(&c->err, &verdict_err);
        return verdict;
    }
    if (dst_rc != TF_OK) {
        tf__err_take(&c->err, &dst_err);
        return dst_rc;
    }
    return TF_OK;
}

int tf__client_receive_to(tf_client *c, int fd, uint8_t *mem, uint64_t size, long index)
{
    tf__xfer x;
    progress_ctx p = {.total = size, .index = index};
    int rc = xfer_begin(c, &x, index >= 0 ? &p : NULL);
    if (rc == TF_OK)
        rc = receive_payload(c, &x, fd, mem, size);
    xfer_end(c, &x);
    return rc;
}

int tf__client_receive_fd(tf_client *c, int fd, uint64_t size, long index)
{
    return tf__client_receive_to(c, fd, NULL, size, index);
}

/* Reads and drops a payload and its trailer, to keep the stream in step. */
static int discard_payload(tf_client *c, uint64_t size)
{
    return tf__client_receive_fd(c, -1, size, -1);
}

/* ---- get -------------------------------------------------------------- */

/*
 * Gets name into fd (or mem), resuming at offset when offset > 0: the first
 * offset bytes are already in fd, and are hashed from it so that the
 * checksum covers the whole file. If the server cannot honour the offset,
 * fd is emptied (restart, when not NULL, does it) and the file comes whole.
 * *unvouched (when not NULL) is set when the sender's trailer reported a
 * failure: then nothing written to fd may be kept.
 */
static int get_into(tf_client *c, const char *name, int fd, uint8_t **mem, size_t *mem_len,
                    uint64_t offset, tf__tmpfile *restart, int *unvouched)
{
    tf__xfer x;
    progress_ctx p = {.base = offset, .index = -1};
    tf_wire_request r = {.op = TF_OP_GET, .name = name, .name_len = (uint16_t)strlen(name),
                         .offset = offset};
    uint64_t size;
    uint8_t flags = 0;
    memset(&x, 0, sizeof x);
    int rc = send_request(c, &r);
    if (rc == TF_OK)
        rc = tf__client_read_response(c, TF_OP_GET, name, &size, &flags);
    /* After the response: with early requests, only the server's hello
       (read with it) says whether the payload has a checksum. */
    if (rc == TF_OK)
        rc = xfer_begin(c, &x, &p);
    if (rc == TF_OK && offset && (flags & TF_RESP_FROM_START)) {
        p.base = offset = 0;
        rc = tf__tmpfile_restart(restart, &c->err);
    }
    if (rc == TF_OK && offset && tf__digest_on(&x.digest))
        rc = tf__fs_hash_prefix(fd, offset, &x.digest, c->buf, IO_BUF, &c->err);
    if (rc != TF_OK) {
        xfer_end(c, &x);
        return rc;
    }
    p.total = offset + size;
    uint8_t *buf = NULL;
    if (mem) {
        if (size > (uint64_t)c->opt.value[TF_OPT_MAX_MEMORY] || size >= SIZE_MAX) {
            xfer_end(c, &x);
            rc = discard_payload(c, size);
            return rc != TF_OK ? rc
                               : tf__fail(&c->err, TF_ETOOBIG,
                                          "\"%s\" is %llu bytes, over the memory limit "
                                          "of %lld",
                                          name, (unsigned long long)size,
                                          (long long)c->opt.value[TF_OPT_MAX_MEMORY]);
        }
        if (!(buf = malloc((size_t)size + 1))) {
            xfer_end(c, &x);
            return tf__fail(&c->err, TF_ENOMEM, "out of memory");
        }
    }
    rc = receive_payload(c, &x, fd, buf, size);
    if (unvouched)
        *unvouched = x.sender_failed;
    xfer_end(c, &x);
    if (mem) {
        if (rc != TF_OK) {
            free(buf);
            return rc;
        }
        buf[size] = '\0';
        *mem = buf;
        *mem_len = (size_t)size;
    }
    return rc;
}

/* The checks every call makes before touching the connection. */
static int begin_call(tf_client *c, const char *name)
{
    int rc = tf__client_usable(c);
    return rc == TF_OK ? tf__client_check_name(c, name) : rc;
}

/* The same, for the calls that take a caller's descriptor. */
static int begin_fd_call(tf_client *c, const char *name, int fd)
{
    int rc = begin_call(c, name);
    if (rc == TF_OK && fd < 0)
        rc = tf__fail(&c->err, TF_EINVAL, "bad file descriptor");
    return rc;
}

int tf_get_fd(tf_client *c, const char *name, int fd)
{
    if (!c)
        return TF_EINVAL;
    int rc = begin_fd_call(c, name, fd);
    if (rc != TF_OK)
        return rc;
    return tf__client_break(c, get_into(c, name, fd, NULL, NULL, 0, NULL, NULL));
}

/* Whether a failed get's partial file is worth keeping for a resume: not
   when the data itself is bad or the file is gone. (Nor when the sender's
   trailer failed, whatever the code: tf_get checks that apart, as the same
   code can also mean a local failure that leaves the bytes good.) */
static int worth_resuming(int rc)
{
    return rc != TF_ECHECKSUM && rc != TF_ENOENT && rc != TF_EACCES && rc != TF_EINVAL;
}

int tf_get(tf_client *c, const char *name, const char *local_path)
{
    if (!c)
        return TF_EINVAL;
    int rc = begin_call(c, name);
    if (rc != TF_OK)
        return rc;
    tf__tmpfile t;
    char final[4096];
    uint64_t have = 0;
    /* An offset needs RESUME, which only the server's hello confirms. */
    if (c->opt.value[TF_OPT_RESUME] && (rc = tf__client_hello(c)) != TF_OK)
        return rc;
    int resume = c->opt.value[TF_OPT_RESUME] && (c->features & TF_FEATURE_RESUME);
    const char *path = local_path ? local_path : tf__path_leaf(name);
    if (resume)
        rc = tf__local_begin_resumable(path, tf__path_leaf(name), &t, final, sizeof final,
                                       &have, &c->err);
    else
        rc = tf__local_begin(path, tf__path_leaf(name), &t, final, sizeof final, &c->err);
    if (rc != TF_OK)
        return rc;
    int unvouched = 0;
    rc = tf__client_break(c, get_into(c, name, t.fd, NULL, NULL, t.direct ? 0 : have, &t,
                                      &unvouched));
    if (rc == TF_OK)
        return tf__local_commit(&t, final, &c->err);
    /* A failing trailer vouches for no byte of the payload (docs/protocol.md,
       Trailer): keeping them would resume from padding and publish it. */
    if (resume && !t.direct && !unvouched && worth_resuming(rc))
        tf__tmpfile_keep(&t);
    else
        tf__tmpfile_abort(&t);
    return rc;
}

int tf_get_mem(tf_client *c, const char *name, void **data, size_t *len)
{
    if (!c || !data || !len)
        return TF_EINVAL;
    *data = NULL;
    *len = 0;
    int rc = begin_call(c, name);
    if (rc != TF_OK)
        return rc;
    uint8_t *mem = NULL;
    rc = tf__client_break(c, get_into(c, name, -1, &mem, len, 0, NULL, NULL));
    *data = mem;
    return rc;
}

/* ---- put -------------------------------------------------------------- */

/* The source of an upload: a memory block, or a descriptor read from off
   when it can seek (sendfile, pread), with read() when it cannot. */
typedef struct source {
    const uint8_t *mem;
    int fd;
    int seekable;
    uint64_t off;
} source;

/* Sends bytes [from, size) of src, hashing [0, from) first when resuming
   with checksums (the digest covers the whole file). */
static int send_source(tf_client *c, tf__xfer *x, source *src, uint64_t from, uint64_t size,
                       int *src_rc, tf__err *src_err)
{
    *src_rc = TF_OK;
    if (src->mem) {
        tf__digest_update(&x->digest, src->mem, (size_t)from);
        return tf__xfer_send_mem(x, src->mem + from, size - from, &c->err);
    }
    if (from && tf__digest_on(&x->digest)) {
        /* Only tf_put keys its uploads, and its source starts at byte 0. */
        int hash_rc = tf__fs_hash_prefix(src->fd, from, &x->digest, c->buf,
                                         IO_BUF, src_err);
        if (hash_rc != TF_OK) {
            /* fd -1 makes the sender zero-fill the frame, which the failing
               trailer then tells the server to discard. Its own failure to
               read fd -1 leaves src_err's first message, the hash's. */
            int rc = tf__xfer_send_fd(x, -1, NULL, size - from, src_rc, src_err, &c->err);
            *src_rc = hash_rc;
            return rc;
        }
    }
    if (!src->seekable)
        return tf__xfer_send_fd(x, src->fd, NULL, size - from, src_rc, src_err, &c->err);
    uint64_t off = src->off + from;
    int rc = tf__xfer_send_fd(x, src->fd, &off, size - from, src_rc, src_err, &c->err);
    src->off = off;
    return rc;
}

/* The trailer of a put whose digest was computed before it was sent
   (SKIP_SAME): the same digest, so the source is not hashed twice. */
static int send_known_trailer(tf_client *c, int code, const uint8_t *digest)
{
    uint8_t buf[TF_WIRE_TRAILER_SIZE + TF_DIGEST_SIZE];
    tf_wire_trailer t = {.status = tf__wire_status(code)};
    if (code == TF_OK && (c->features & TF_FEATURE_CHECKSUM)) {
        t.digest = digest;
        t.digest_len = TF_DIGEST_SIZE;
    }
    long n = tf__wire_encode_trailer(buf, sizeof buf, &t);
    return tf__stream_write(&c->s, buf, (size_t)n, &c->err);
}

/* px NULL: a plain put. skipped (may be NULL) says a SKIP_SAME put found
   the bytes already there. */
static int put_from(tf_client *c, source *src, uint64_t size, const char *name,
                    const uint8_t *key, const tf__putx *px, int *skipped)
{
    uint64_t from = 0, stored;
    uint8_t rflags = 0;
    int rc = key ? tf__client_hello(c) : TF_OK; /* an upload key needs RESUME */
    if (rc != TF_OK)
        return rc;
    if (c->max_upload && size > c->max_upload)
        return tf__fail(&c->err, TF_ETOOBIG,
                        "\"%s\" is %llu bytes; the server accepts at most %llu", name,
                        (unsigned long long)size, (unsigned long long)c->max_upload);
    tf_wire_request r = {.op = TF_OP_PUT, .name = name, .name_len = (uint16_t)strlen(name),
                         .size = size};
    if (key && (c->features & TF_FEATURE_RESUME)) {
        r.flags |= TF_REQ_UPLOAD_KEY;
        r.key = key;
    }
    int known = 0; /* the digest was computed first (SKIP_SAME) */
    if (px) {
        r.flags |= px->flags;
        r.if_match = px->if_match;
        r.mtime_sec = px->mtime_sec;
        r.mtime_nsec = px->mtime_nsec;
        r.same = px->same;
        known = (px->flags & TF_REQ_SKIP_SAME) != 0;
    }
    rc = send_request(c, &r);
    if (rc == TF_OK) /* go-ahead, refusal, or "already there" */
        rc = tf__client_read_response(c, TF_OP_PUT, name, &from, &rflags);
    if (rc == TF_OK && (rflags & TF_RESP_SAME)) {
        if (!known || from != size)
            return tf__fail(&c->err, TF_EPROTO, "an \"already there\" answer to a put "
                                                "that did not offer its digest");
        if (skipped)
            *skipped = 1;
        return TF_OK;
    }
    if (rc == TF_OK && from > size)
        rc = tf__fail(&c->err, TF_EPROTO, "the server resumes past the end of the file");
    if (rc != TF_OK)
        return rc;
    tf__xfer x;
    progress_ctx p = {.base = from, .total = size, .index = -1};
    int src_rc = TF_OK;
    tf__err src_err = {{0}};
    rc = xfer_begin(c, &x, &p);
    /* With the digest known, nothing is hashed while sending (prefix or
       payload): on 0 makes the updates no-ops; the state stays borrowed. */
    if (rc == TF_OK && known)
        x.digest.on = 0;
    if (rc == TF_OK)
        rc = send_source(c, &x, src, from, size, &src_rc, &src_err);
    if (rc == TF_OK)
        rc = known ? send_known_trailer(c, src_rc, px->same)
                   : tf__xfer_send_trailer(&x, src_rc, &c->err);
    xfer_end(c, &x);
    if (rc == TF_OK)
        rc = tf__client_read_response(c, TF_OP_PUT, name, &stored, NULL);
    /* A source failure is the real story; the server's refusal of the
       upload we told it to discard only echoes it. */
    if (src_rc != TF_OK && rc != TF_ENET && rc != TF_ETIMEDOUT && rc != TF_EPROTO) {
        tf__err_take(&c->err, &src_err);
        rc = src_rc;
    }
    return rc;
}

/* Whether the server has already answered (a streamed put it refuses
   before the end, see docs/protocol.md): then sending more is pointless. */
static int answered_early(tf_client *c)
{
    /* Bytes already in the read buffer or decrypted by TLS: poll cannot
       see them. */
    if (c->s.rpos < c->s.rlen || tf__conn_pending(&c->s.conn))
        return 1;
    struct pollfd p = {.fd = c->s.conn.fd, .events = POLLIN};
    return poll(&p, 1, 0) > 0;
}

/* Reads what fd has, up to len bytes: > 0, 0 at its end, -1 with *src_rc
   set when it fails. */
static ssize_t read_chunk(int fd, uint8_t *buf, size_t len, int *src_rc, tf__err *src_err)
{
    for (;;) {
        ssize_t n = read(fd, buf, len);
        if (n >= 0)
            return n;
        if (errno != EINTR) {
            *src_rc = tf__fail_errno(src_err, TF_EIO, errno, "cannot read the stream");
            return -1;
        }
    }
}

/*
 * A streamed put (feature STREAM): the request carries no size; fd is read
 * to its end in chunks, each sent with its length, then a zero-length chunk
 * and the trailer. One IO_BUF of memory whatever the size. A server that
 * refuses mid-stream (its upload limit) answers at once and closes: that
 * answer is the result, and the connection is closed here too.
 */
static int put_stream(tf_client *c, int fd, const char *name)
{
    uint64_t from = 0, stored = 0, done = 0;
    int src_rc = TF_OK, early = 0;
    tf__err src_err = {{0}};
    /* Each chunk is read behind room for its head, and goes out in one
       write. The first is read before the request goes out, so that a
       source slow to start (a pipe still waiting for its writer) does not
       hold a request open on the server, against its timeouts. */
    size_t room = IO_BUF - TF_WIRE_CHUNK_HEAD_SIZE;
    if (room > TF_WIRE_CHUNK_MAX)
        room = TF_WIRE_CHUNK_MAX;
    ssize_t n = read_chunk(fd, c->buf + TF_WIRE_CHUNK_HEAD_SIZE, room, &src_rc, &src_err);
    tf_wire_request r = {.op = TF_OP_PUT, .flags = TF_REQ_STREAM, .name = name,
                         .name_len = (uint16_t)strlen(name)};
    int rc = send_request(c, &r);
    if (rc == TF_OK)
        rc = tf__client_read_response(c, TF_OP_PUT, name, &from, NULL);
    if (rc == TF_OK && from != 0)
        rc = tf__fail(&c->err, TF_EPROTO, "the server resumes a streamed upload");
    if (rc != TF_OK)
        return rc;
    tf__xfer x;
    progress_ctx p = {.index = -1}; /* total 0: not known until the end */
    rc = xfer_begin(c, &x, &p);
    if (rc == TF_OK && src_rc == TF_OK && x.progress && x.progress(x.ctx, 0) != 0)
        src_rc = tf__fail(&src_err, TF_ECANCELED, "cancelled by the progress callback");
    while (rc == TF_OK && src_rc == TF_OK && n > 0) {
        if (answered_early(c)) {
            early = 1;
            break;
        }
        tf__wire_encode_chunk_head(c->buf, TF_WIRE_CHUNK_HEAD_SIZE, (uint32_t)n);
        tf__digest_update(&x.digest, c->buf + TF_WIRE_CHUNK_HEAD_SIZE, (size_t)n);
        rc = tf__stream_write(&c->s, c->buf, TF_WIRE_CHUNK_HEAD_SIZE + (size_t)n, &c->err);
        done += (uint64_t)n;
        if (rc == TF_OK && x.progress && x.progress(x.ctx, done) != 0)
            src_rc = tf__fail(&src_err, TF_ECANCELED, "cancelled by the progress callback");
        if (rc == TF_OK && src_rc == TF_OK)
            n = read_chunk(fd, c->buf + TF_WIRE_CHUNK_HEAD_SIZE, room, &src_rc, &src_err);
    }
    if (rc == TF_OK && !early) {
        /* The end: a zero-length chunk, then the trailer (failing, when the
           source failed or the caller cancelled: the server stores nothing). */
        uint8_t end[TF_WIRE_CHUNK_HEAD_SIZE];
        tf__wire_encode_chunk_head(end, sizeof end, 0);
        rc = tf__stream_write(&c->s, end, sizeof end, &c->err);
        if (rc == TF_OK)
            rc = tf__xfer_send_trailer(&x, src_rc, &c->err);
    }
    xfer_end(c, &x);
    if (rc == TF_OK || early) {
        rc = tf__client_read_response(c, TF_OP_PUT, name, &stored, NULL);
    } else if (rc == TF_ENET) {
        /* A server that refused and closed may have said why before the
           connection went: its answer beats "connection reset". */
        tf__err net = c->err;
        tf__err_clear(&c->err); /* the answer's message, if one came */
        int said = tf__client_read_response(c, TF_OP_PUT, name, &stored, NULL);
        if (said == TF_OK || tf__client_fatal(said)) {
            c->err = net;
        } else {
            rc = said;
            early = 1;
        }
    }
    if (early && rc != TF_OK) {
        /* The server closes after an early answer; so does the client. */
        tf__stream_close(&c->s);
        c->broken = 1;
        return rc;
    }
    if (rc == TF_OK && src_rc == TF_OK && stored != done)
        rc = tf__fail(&c->err, TF_EPROTO, "the server stored %llu bytes of %llu",
                      (unsigned long long)stored, (unsigned long long)done);
    if (src_rc != TF_OK && rc != TF_ENET && rc != TF_ETIMEDOUT && rc != TF_EPROTO) {
        c->err = src_err;
        rc = src_rc;
    }
    if (rc == TF_OK && c->opt.progress)
        c->opt.progress(c->opt.progress_user, done, done); /* now the total is known */
    return rc;
}

int tf_put_stream(tf_client *c, int fd, const char *name)
{
    if (!c)
        return TF_EINVAL;
    int rc = begin_fd_call(c, name, fd);
    if (rc == TF_OK)
        rc = tf__client_hello(c); /* STREAM must be confirmed */
    if (rc == TF_OK && !(c->features & TF_FEATURE_STREAM))
        rc = tf__fail(&c->err, TF_EPROTO, "the server does not take streamed uploads "
                                          "(an older version)");
    if (rc != TF_OK)
        return rc;
    rc = tf__client_buffers(c);
    if (rc != TF_OK)
        return rc;
    return tf__client_break(c, put_stream(c, fd, name));
}

int tf_client_can_stream(const tf_client *c)
{
    if (c)
        tf__client_settle(c);
    return c && !c->broken && (c->features & TF_FEATURE_STREAM) ? 1 : 0;
}

/* A descriptor's source: from its offset when it can seek. */
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

/* The upload key names one upload, so that only the same upload continues
   the server's partial data: the name and the source's identity (for a
   file: device, inode, size and modification time; for memory: content). */
static void upload_key(const char *name, const void *id, size_t id_len, uint8_t *key)
{
    tf__digest d = {0};
    if (tf__digest_begin(&d, 1) != TF_OK) {
        memset(key, 0, TF_UPLOAD_KEY_SIZE);
        return;
    }
    tf__digest_update(&d, "tcpfile upload key", 18);
    tf__digest_update(&d, name, strlen(name) + 1);
    tf__digest_update(&d, id, id_len);
    tf__digest_final(&d, key);
    tf__digest_end(&d);
}

static int file_key(const char *name, int fd, uint8_t *key)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        return 0;
    int64_t id[5] = {(int64_t)st.st_dev, (int64_t)st.st_ino, (int64_t)st.st_size,
                     (int64_t)st.st_mtim.tv_sec, (int64_t)st.st_mtim.tv_nsec};
    upload_key(name, id, sizeof id, key);
    return 1;
}

static const char *basename_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* The plain puts are the extended ones without extensions: with no args,
   put_ex sends the same request (no flags, so no extension fields) and
   resumes in the same way. */
int tf_put_fd(tf_client *c, int fd, uint64_t size, const char *name)
{
    return tf_put_fd_ex(c, fd, size, name, NULL, NULL);
}

int tf_put(tf_client *c, const char *local_path, const char *name)
{
    return tf_put_ex(c, local_path, name, NULL, NULL);
}

int tf_put_mem(tf_client *c, const void *data, size_t len, const char *name)
{
    return tf_put_mem_ex(c, data, len, name, NULL, NULL);
}

/* ---- put extensions (PUTX) ------------------------------------------------ */

int tf__putx_from_args(tf_client *c, const tf_put_args *a, int fd, tf__putx *px)
{
    memset(px, 0, sizeof *px);
    if (!a)
        return TF_OK;
    const uint32_t known = TF_PUT_PARENTS | TF_PUT_IF_ABSENT | TF_PUT_IF_MATCH |
                           TF_PUT_MTIME | TF_PUT_KEEP_MTIME | TF_PUT_SKIP_SAME;
    for (size_t i = 0; i < sizeof a->reserved / sizeof a->reserved[0]; i++)
        if (a->reserved[i])
            return tf__fail(&c->err, TF_EINVAL, "the put's reserved room is not zero");
    if (a->flags & ~known)
        return tf__fail(&c->err, TF_EINVAL, "unknown put flags 0x%x",
                        (unsigned)(a->flags & ~known));
    int rc = a->flags ? tf__client_hello(c) : TF_OK; /* they need PUTX */
    if (rc != TF_OK)
        return rc;
    if ((a->flags & TF_PUT_IF_ABSENT) && (a->flags & TF_PUT_IF_MATCH))
        return tf__fail(&c->err, TF_EINVAL, "if-absent and if-match exclude each other");
    if (a->flags & TF_PUT_KEEP_MTIME) {
        struct stat st;
        if (fd < 0)
            return tf__fail(&c->err, TF_EINVAL, "keep-mtime needs a file");
        if (fstat(fd, &st) != 0)
            return tf__fail_errno(&c->err, TF_EIO, errno, "cannot read the file's time");
        px->mtime_sec = (int64_t)st.st_mtim.tv_sec;
        px->mtime_nsec = (uint32_t)st.st_mtim.tv_nsec;
        px->flags |= TF_REQ_MTIME;
    } else if (a->flags & TF_PUT_MTIME) {
        if (a->mtime_nsec >= 1000000000u)
            return tf__fail(&c->err, TF_EINVAL, "mtime nanoseconds %u out of range",
                            (unsigned)a->mtime_nsec);
        px->mtime_sec = a->mtime_sec;
        px->mtime_nsec = a->mtime_nsec;
        px->flags |= TF_REQ_MTIME;
    }
    if (a->flags & TF_PUT_PARENTS)
        px->flags |= TF_REQ_PARENTS;
    if (a->flags & TF_PUT_IF_ABSENT)
        px->flags |= TF_REQ_IF_ABSENT;
    if (a->flags & TF_PUT_IF_MATCH) {
        px->flags |= TF_REQ_IF_MATCH;
        memcpy(px->if_match, a->if_match, TF_DIGEST_SIZE);
    }
    if (a->flags & TF_PUT_SKIP_SAME)
        px->flags |= TF_REQ_SKIP_SAME;
    if (px->flags && !(c->features & TF_FEATURE_PUTX))
        return tf__fail(&c->err, TF_EPROTO, "the server does not take put extensions "
                                            "(an older version)");
    return TF_OK;
}

int tf__putx_hash(tf_client *c, tf__putx *px, int fd, uint64_t off, const uint8_t *mem,
                  uint64_t size)
{
    tf__digest d = {0};
    int rc = tf__digest_begin(&d, 1);
    if (rc != TF_OK)
        return tf__fail(&c->err, TF_ENOMEM, "out of memory");
    if (mem) {
        tf__digest_update(&d, mem, (size_t)size);
    } else if (lseek(fd, 0, SEEK_CUR) < 0) {
        rc = tf__fail(&c->err, TF_EINVAL, "skip-if-same needs a source that can seek");
    } else {
        rc = tf__client_buffers(c);
        if (rc == TF_OK)
            rc = tf__fs_hash_range(fd, off, size, &d, c->buf, IO_BUF, &c->err);
    }
    if (rc == TF_OK)
        tf__digest_final(&d, px->same);
    tf__digest_end(&d);
    return rc;
}

/* A put with extensions from src: the args checked, the source hashed for
   SKIP_SAME, then put_from. Leaves the connection as put_from does. */
static int put_ex(tf_client *c, source *src, uint64_t size, const char *name,
                  const uint8_t *key, const tf_put_args *a, int *skipped)
{
    tf__putx px;
    int rc = tf__putx_from_args(c, a, src->fd, &px);
    if (rc == TF_OK && (px.flags & TF_REQ_SKIP_SAME))
        rc = tf__putx_hash(c, &px, src->fd, src->off, src->mem, size);
    if (rc != TF_OK)
        return rc; /* nothing sent: c stays usable */
    /* Skip-if-same compares whole files: no resuming with it. */
    if (px.flags & TF_REQ_SKIP_SAME)
        key = NULL;
    return tf__client_break(c, put_from(c, src, size, name, key, &px, skipped));
}

int tf_put_ex(tf_client *c, const char *local_path, const char *name, const tf_put_args *args,
              int *skipped)
{
    if (skipped)
        *skipped = 0;
    if (!c)
        return TF_EINVAL;
    int rc = tf__client_usable(c);
    if (rc != TF_OK)
        return rc;
    if (!local_path)
        return tf__fail(&c->err, TF_EINVAL, "no local path given");
    if (!name)
        name = basename_of(local_path);
    rc = tf__client_check_name(c, name);
    if (rc != TF_OK)
        return rc;
    int fd;
    uint64_t size;
    rc = tf__local_open_read(local_path, &fd, &size, &c->err);
    if (rc != TF_OK)
        return rc;
    source src = fd_source(fd);
    uint8_t key[TF_UPLOAD_KEY_SIZE];
    int keyed = c->opt.value[TF_OPT_RESUME] && file_key(name, fd, key);
    rc = put_ex(c, &src, size, name, keyed ? key : NULL, args, skipped);
    close(fd);
    return rc;
}

int tf_put_fd_ex(tf_client *c, int fd, uint64_t size, const char *name, const tf_put_args *args,
                 int *skipped)
{
    if (skipped)
        *skipped = 0;
    if (!c)
        return TF_EINVAL;
    int rc = begin_fd_call(c, name, fd);
    if (rc != TF_OK)
        return rc;
    source src = fd_source(fd);
    rc = put_ex(c, &src, size, name, NULL, args, skipped);
    if (src.seekable)
        lseek(fd, (off_t)src.off, SEEK_SET); /* just past what was sent */
    return rc;
}

int tf_put_mem_ex(tf_client *c, const void *data, size_t len, const char *name,
                  const tf_put_args *args, int *skipped)
{
    if (skipped)
        *skipped = 0;
    if (!c)
        return TF_EINVAL;
    int rc = begin_call(c, name);
    if (rc == TF_OK && !data && len)
        rc = tf__fail(&c->err, TF_EINVAL, "no data given");
    if (rc != TF_OK)
        return rc;
    source src = {.fd = -1, .mem = data ? data : (const uint8_t *)""};
    uint8_t key[TF_UPLOAD_KEY_SIZE];
    if (c->opt.value[TF_OPT_RESUME])
        upload_key(name, src.mem, len, key);
    return put_ex(c, &src, len, name, c->opt.value[TF_OPT_RESUME] ? key : NULL, args, skipped);
}

int tf_digest(const void *data, size_t len, uint8_t out[16])
{
    if (!out || (!data && len))
        return TF_EINVAL;
    tf__digest d = {0};
    if (tf__digest_begin(&d, 1) != TF_OK)
        return TF_ENOMEM;
    tf__digest_update(&d, data, len);
    tf__digest_final(&d, out);
    tf__digest_end(&d);
    return TF_OK;
}

int tf_client_can_putx(const tf_client *c)
{
    if (c)
        tf__client_settle(c);
    return c && !c->broken && (c->features & TF_FEATURE_PUTX) ? 1 : 0;
}

/* ---- list ------------------------------------------------------------- */

int tf_list(tf_client *c, tf_listing **out)
{
    if (!c || !out)
        return TF_EINVAL;
    *out = NULL;
    int rc = tf__client_usable(c);
    if (rc != TF_OK)
        return rc;
    uint8_t *mem = NULL;
    size_t len = 0;
    tf_wire_request r = {.op = TF_OP_LIST};
    tf__xfer x;
    uint64_t size;
    memset(&x, 0, sizeof x);
    rc = send_request(c, &r);
    if (rc == TF_OK)
        rc = tf__client_read_response(c, TF_OP_LIST, NULL, &size, NULL);
    if (rc == TF_OK) /* after the response, as in get_into */
        rc = xfer_begin(c, &x, NULL);
    if (rc == TF_OK && size > (uint64_t)c->opt.value[TF_OPT_MAX_MEMORY]) {
        rc = receive_payload(c, &x, -1, NULL, size);
        if (rc == TF_OK)
            rc = tf__fail(&c->err, TF_ETOOBIG,
                          "the listing is %llu bytes, over the memory limit of %lld",
                          (unsigned long long)size,
                          (long long)c->opt.value[TF_OPT_MAX_MEMORY]);
    } else if (rc == TF_OK) {
        len = (size_t)size;
        mem = malloc(len ? len : 1);
        rc = mem ? receive_payload(c, &x, -1, mem, size)
                 : tf__fail(&c->err, TF_ENOMEM, "out of memory");
    }
    xfer_end(c, &x);
    if (rc == TF_OK) {
        rc = tf__wire_decode_list(mem, len, c->max_name, out);
        if (rc == TF_EPROTO)
            tf__fail(&c->err, rc, "the server sent a malformed listing");
        else if (rc != TF_OK)
            tf__fail(&c->err, rc, "out of memory decoding the listing");
    }
    free(mem);
    return tf__client_break(c, rc);
}
