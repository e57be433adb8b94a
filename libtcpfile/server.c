/*
 * server.c - tf_server_*: an accept loop that hands each connection to its
 * own thread, and the per-connection work: handshake, then requests until
 * the client leaves, idles out, or the server stops.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "digest.h"
#include "fspath.h"
#include "internal.h"
#include "netio.h"
#include "transfer.h"
#include "wire.h"

#define MAX_LISTEN 8
#define XFER_BUF ((size_t)256 << 10)
#define THREAD_STACK ((size_t)256 << 10)
/* How long a refused (busy) client is given to read its refusal. */
#define BUSY_LINGER_MS 50
#define CLOSE_LINGER_MS 1000

struct tf_server {
    int listen_fds[MAX_LISTEN];
    int nlisten;
    int rootfd;
    tf_options opt;
    /* Written once by tf_server_stop: readable for ever after, so every
       wait that includes it ends. A pipe, because write() is
       async-signal-safe and a mutex is not. */
    int stop_pipe[2];
    /* Written when the grace period is over: cuts requests in flight. */
    int cut_pipe[2];
    atomic_int stopping;
    pthread_mutex_t lock;
    pthread_cond_t idle;  /* signalled when active drops */
    int active;           /* connection threads alive, under lock */
};

/* Where a connection is; decides what a stop does to it. */
typedef enum conn_state {
    CONN_HANDSHAKE, /* hellos not yet exchanged */
    CONN_IDLE,      /* waiting for a request: a stop closes it at once */
    CONN_REQUEST,   /* a request in flight: a stop lets it finish */
    CONN_CLOSING
} conn_state;

typedef struct conn {
    tf_server *srv;
    tf__stream s;
    conn_state state;
    char peer[64];
    uint32_t features;  /* negotiated in the handshake */
    uint8_t *buf;       /* XFER_BUF bytes while a transfer is in flight */
    tf__err err;
} conn;

/* What one request did, for the log. */
typedef struct outcome {
    const char *op;
    char name[TF_WIRE_NAME_MAX + 1];
    uint64_t bytes;
    int result;
    int64_t started_ms;
} outcome;

static void log_request(conn *c, const outcome *o)
{
    const tf_options *opt = &c->srv->opt;
    if (!opt->log)
        return;
    tf_request_log entry = {
        .peer = c->peer,
        .op = o->op,
        .name = o->name,
        .bytes = o->bytes,
        .result = o->result,
        .message = o->result == TF_OK ? "" : c->err.msg,
        .seconds = (double)(tf__now_ms() - o->started_ms) / 1000.0,
    };
    opt->log(opt->log_user, &entry);
}

/* ---- frames out -------------------------------------------------------- */

static int send_response(conn *c, int op, int code, uint64_t size, uint8_t flags,
                         const char *message)
{
    uint8_t buf[TF_WIRE_RESPONSE_SIZE + TF_WIRE_MESSAGE_MAX];
    size_t mlen = message ? strlen(message) : 0;
    if (mlen > TF_WIRE_MESSAGE_MAX)
        mlen = TF_WIRE_MESSAGE_MAX;
    tf_wire_response r = {.op = (uint8_t)op, .flags = flags, .status = tf__wire_status(code),
                          .size = size, .message = message, .message_len = (uint16_t)mlen};
    long n = tf__wire_encode_response(buf, sizeof buf, &r);
    tf__err ignored;
    return tf__stream_write(&c->s, buf, (size_t)n, &ignored);
}

/* Replies with the failure recorded in c->err. */
static int send_failure(conn *c, int op, int code)
{
    return send_response(c, op, code, 0, 0, c->err.msg[0] ? c->err.msg : tf_strerror(code));
}

static uint32_t offered_features(const tf_options *opt)
{
    return TF_FEATURE_RESUME | (opt->value[TF_OPT_CHECKSUM] ? TF_FEATURE_CHECKSUM : 0);
}

static int send_hello(conn *c, int code, const char *message)
{
    uint8_t buf[TF_WIRE_SERVER_HELLO_SIZE + TF_WIRE_MESSAGE_MAX];
    const tf_options *opt = &c->srv->opt;
    size_t mlen = message ? strlen(message) : 0;
    tf_wire_server_hello h = {
        .version_min = TF_WIRE_VERSION,
        .version_max = TF_WIRE_VERSION,
        .features = offered_features(opt),
        .status = tf__wire_status(code),
        .max_name = (uint16_t)opt->value[TF_OPT_MAX_NAME_LEN],
        .max_upload = (uint64_t)opt->value[TF_OPT_MAX_UPLOAD],
        .message = message,
        .message_len = (uint16_t)mlen,
    };
    long n = tf__wire_encode_server_hello(buf, sizeof buf, &h);
    return tf__stream_write(&c->s, buf, (size_t)n, &c->err);
}

/* ---- requests ---------------------------------------------------------- */

static int check_name(conn *c, const char *name, size_t len)
{
    const char *why;
    size_t max = (size_t)c->srv->opt.value[TF_OPT_MAX_NAME_LEN];
    if (tf__name_check_bytes(name, len, max, &why) != TF_OK)
        return tf__fail(&c->err, TF_EINVAL, "bad name: %s (at most %zu bytes)", why, max);
    return TF_OK;
}

/* A transfer on this connection: its buffer, and the checksum if in use. */
static int xfer_begin(conn *c, tf__xfer *x)
{
    memset(x, 0, sizeof *x);
    if (!c->buf && !(c->buf = malloc(XFER_BUF)))
        return tf__fail(&c->err, TF_ENOMEM, "out of memory");
    x->s = &c->s;
    x->buf = c->buf;
    x->buf_len = XFER_BUF;
    if (tf__digest_begin(&x->digest, (c->features & TF_FEATURE_CHECKSUM) != 0) != TF_OK)
        return tf__fail(&c->err, TF_ENOMEM, "out of memory");
    return TF_OK;
}

/* Buffers belong to requests in flight, not to idle connections. */
static void xfer_end(conn *c, tf__xfer *x)
{
    tf__digest_end(&x->digest);
    free(c->buf);
    c->buf = NULL;
}

static int handle_get(conn *c, const tf_wire_request *r, outcome *o)
{
    int fd = -1;
    uint64_t size = 0, offset = r->offset;
    uint8_t flags = 0;
    tf__xfer x;
    int rc = check_name(c, r->name, r->name_len);
    if (rc == TF_OK)
        rc = tf__fs_open_read(c->srv->rootfd, o->name, &fd, &size, &c->err);
    if (rc == TF_OK)
        rc = xfer_begin(c, &x);
    if (rc == TF_OK && offset > size) {
        /* The file is shorter than the client's partial copy: it changed,
           so the client must start again. */
        flags |= TF_RESP_FROM_START;
        offset = 0;
    }
    /* The checksum covers the whole file, resumed or not. */
    if (rc == TF_OK && offset && tf__digest_on(&x.digest))
        rc = tf__fs_hash_prefix(fd, offset, &x.digest, c->buf, XFER_BUF, &c->err);
    if (rc != TF_OK) {
        if (fd >= 0) {
            close(fd);
            xfer_end(c, &x);
        }
        o->result = rc;
        return send_failure(c, TF_OP_GET, rc);
    }
    rc = send_response(c, TF_OP_GET, TF_OK, size - offset, flags, NULL);
    int src_rc = TF_OK;
    tf__err src_err;
    uint64_t off = offset;
    if (rc == TF_OK)
        rc = tf__xfer_send_fd(&x, fd, &off, size - offset, &src_rc, &src_err, &c->err);
    if (rc == TF_OK)
        rc = tf__xfer_send_trailer(&x, src_rc, &c->err);
    if (src_rc != TF_OK)
        c->err = src_err;
    xfer_end(c, &x);
    close(fd);
    o->bytes = off - offset;
    o->result = rc != TF_OK ? rc : src_rc;
    return rc;
}

/* The resumable temporary for an upload key and name: a digest of both, so
   one key cannot reach another name's upload. */
static void resume_stem(const tf_wire_request *r, char *out, size_t len)
{
    tf__digest d;
    uint8_t h[TF_DIGEST_SIZE];
    out[0] = '\0';
    if (tf__digest_begin(&d, 1) != TF_OK)
        return;
    tf__digest_update(&d, r->key, TF_UPLOAD_KEY_SIZE);
    tf__digest_update(&d, r->name, r->name_len);
    tf__digest_final(&d, h);
    tf__digest_end(&d);
    for (int i = 0; i < TF_DIGEST_SIZE && (size_t)(2 * i + 2) < len; i++)
        snprintf(out + 2 * i, len - 2 * (size_t)i, "%02x", h[i]);
}

/* Checks a put before any data moves, and opens its temporary: a fresh
   one, or the partial file of the same upload (then *have > 0). */
static int put_prepare(conn *c, const tf_wire_request *r, const char *name, tf__tmpfile *t,
                       uint64_t *have)
{
    const tf_options *opt = &c->srv->opt;
    uint64_t max_upload = (uint64_t)opt->value[TF_OPT_MAX_UPLOAD];
    *have = 0;
    int rc = check_name(c, r->name, r->name_len);
    if (rc == TF_OK && opt->value[TF_OPT_READ_ONLY])
        rc = tf__fail(&c->err, TF_EACCES, "the server is read-only");
    if (rc == TF_OK && max_upload && r->size > max_upload)
        rc = tf__fail(&c->err, TF_ETOOBIG, "%llu bytes is over the upload limit of %llu",
                      (unsigned long long)r->size, (unsigned long long)max_upload);
    if (rc == TF_OK)
        rc = tf__fs_check_target(c->srv->rootfd, name, (int)opt->value[TF_OPT_OVERWRITE],
                                 &c->err);
    if (rc != TF_OK)
        return rc;
    if (!r->key)
        return tf__upload_begin(c->srv->rootfd, t, &c->err);
    char stem[2 * TF_DIGEST_SIZE + 1];
    resume_stem(r, stem, sizeof stem);
    tf__upload_sweep(c->srv->rootfd, 0, opt->value[TF_OPT_RESUME_TTL_S]);
    return tf__upload_begin_resumable(c->srv->rootfd, stem, r->size, t, have, &c->err);
}

static int handle_put(conn *c, const tf_wire_request *r, outcome *o)
{
    tf__tmpfile t;
    uint64_t have;
    tf__xfer x;
    int rc = put_prepare(c, r, o->name, &t, &have);
    if (rc == TF_OK) {
        rc = xfer_begin(c, &x);
        if (rc == TF_OK && have && tf__digest_on(&x.digest))
            rc = tf__fs_hash_prefix(t.fd, have, &x.digest, c->buf, XFER_BUF, &c->err);
        if (rc != TF_OK) {
            xfer_end(c, &x);
            tf__tmpfile_keep(&t);
        }
    }
    if (rc != TF_OK) {
        o->result = rc;
        return send_failure(c, TF_OP_PUT, rc);
    }
    /* Go ahead, from byte `have`. */
    rc = send_response(c, TF_OP_PUT, TF_OK, have, 0, NULL);
    int store_rc = TF_OK, verdict = TF_OK;
    tf__err store_err = {{0}}, verdict_err = {{0}};
    if (rc == TF_OK)
        rc = tf__xfer_recv(&x, t.fd, NULL, r->size - have, &store_rc, &store_err, &c->err);
    if (rc == TF_OK)
        rc = tf__xfer_recv_trailer(&x, &verdict, &verdict_err, &c->err);
    xfer_end(c, &x);
    if (rc != TF_OK) {
        /* The connection broke: a resumable upload keeps what arrived. */
        if (r->key && store_rc == TF_OK)
            tf__tmpfile_keep(&t);
        else
            tf__tmpfile_abort(&t);
        o->result = rc;
        return rc;
    }
    o->bytes = r->size - have;
    if (verdict != TF_OK) {
        store_rc = verdict;
        store_err = verdict_err;
    }
    if (store_rc == TF_OK)
        store_rc = tf__upload_commit(c->srv->rootfd, &t, o->name,
                                     (int)c->srv->opt.value[TF_OPT_OVERWRITE], &store_err);
    else
        tf__tmpfile_abort(&t);
    o->result = store_rc;
    if (store_rc != TF_OK) {
        c->err = store_err;
        return send_failure(c, TF_OP_PUT, store_rc);
    }
    return send_response(c, TF_OP_PUT, TF_OK, r->size, 0, NULL);
}

static int handle_list(conn *c, const tf_wire_request *r, outcome *o)
{
    const tf_options *opt = &c->srv->opt;
    tf_listing *l = NULL;
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = r->name_len ? tf__fail(&c->err, TF_EINVAL, "list takes no name") : TF_OK;
    if (rc == TF_OK)
        rc = tf__fs_scan(c->srv->rootfd, (size_t)opt->value[TF_OPT_MAX_LIST_ENTRIES],
                         (size_t)opt->value[TF_OPT_MAX_NAME_LEN], &l, &c->err);
    if (rc == TF_OK) {
        len = tf__wire_list_size(l);
        buf = malloc(len);
        if (!buf)
            rc = tf__fail(&c->err, TF_ENOMEM, "out of memory encoding the listing");
        else if (tf__wire_encode_list(buf, len, l) < 0)
            rc = tf__fail(&c->err, TF_EINTERNAL, "cannot encode the listing");
    }
    tf_listing_free(l);
    tf__xfer x;
    if (rc == TF_OK)
        rc = xfer_begin(c, &x);
    o->result = rc;
    if (rc != TF_OK) {
        free(buf);
        return send_failure(c, TF_OP_LIST, rc);
    }
    rc = send_response(c, TF_OP_LIST, TF_OK, len, 0, NULL);
    if (rc == TF_OK)
        rc = tf__xfer_send_mem(&x, buf, len, &c->err);
    if (rc == TF_OK)
        rc = tf__xfer_send_trailer(&x, TF_OK, &c->err);
    xfer_end(c, &x);
    free(buf);
    o->bytes = len;
    o->result = rc;
    return rc;
}

/* Reads one request head and its name into buf (TF_WIRE_REQUEST_SIZE +
   TF_WIRE_NAME_MAX bytes). Returns TF_OK, a failure that ends the
   connection, or TF_EINVAL after skipping a name over the limit (the
   connection goes on). */
static int read_request(conn *c, uint8_t *buf, tf_wire_request *r, int *eof)
{
    size_t max_name = (size_t)c->srv->opt.value[TF_OPT_MAX_NAME_LEN];
    int rc = tf__stream_read_or_eof(&c->s, buf, TF_WIRE_REQUEST_SIZE, eof, &c->err);
    if (rc != TF_OK)
        return rc;
    long n = tf__wire_decode_request(buf, TF_WIRE_REQUEST_SIZE, max_name, r);
    if (n == TF_ETOOBIG) {
        /* The frame is still well formed: skip the name and say why. The
           name may be longer than buf (up to 65535 bytes), so skip it in
           pieces, after the head, whose op (already in r) the reply echoes. */
        size_t skip = tf__wire_request_tail(r);
        while (skip > 0) {
            size_t k = skip < TF_WIRE_NAME_MAX ? skip : TF_WIRE_NAME_MAX;
            rc = tf__stream_read(&c->s, buf + TF_WIRE_REQUEST_SIZE, k, &c->err);
            if (rc != TF_OK)
                return rc;
            skip -= k;
        }
        return tf__fail(&c->err, TF_EINVAL, "bad name: the name is longer than the limit "
                                            "(at most %zu bytes)", max_name);
    }
    if (n == TF_WIRE_NEED_MORE) {
        size_t tail = tf__wire_request_tail(r);
        rc = tf__stream_read(&c->s, buf + TF_WIRE_REQUEST_SIZE, tail, &c->err);
        if (rc != TF_OK)
            return rc;
        n = tf__wire_decode_request(buf, TF_WIRE_REQUEST_SIZE + tail, max_name, r);
    }
    if (n < 0)
        return tf__fail(&c->err, TF_EPROTO, "malformed request");
    return TF_OK;
}

/* Whether a decoded request is one this version can serve. Anything else
   leaves the stream in an unknown state, so the connection is closed after
   the error reply. */
static int request_valid(conn *c, const tf_wire_request *r)
{
    if (r->op != TF_OP_GET && r->op != TF_OP_PUT && r->op != TF_OP_LIST)
        return tf__fail(&c->err, TF_EPROTO, "unknown operation %u", (unsigned)r->op);
    int resume = (c->features & TF_FEATURE_RESUME) != 0;
    if (r->flags & ~TF_REQ_UPLOAD_KEY)
        return tf__fail(&c->err, TF_EPROTO, "unknown request flags 0x%02x",
                        (unsigned)r->flags);
    if (r->flags && (r->op != TF_OP_PUT || !resume))
        return tf__fail(&c->err, TF_EPROTO, "an upload key needs put and resume");
    if (r->offset != 0 && (r->op != TF_OP_GET || !resume))
        return tf__fail(&c->err, TF_EPROTO, "an offset needs get and resume");
    if (r->op != TF_OP_PUT && r->size != 0)
        return tf__fail(&c->err, TF_EPROTO, "a size is only allowed on put");
    return TF_OK;
}

static const char *op_label(int op)
{
    switch (op) {
    case TF_OP_GET:
        return "get";
    case TF_OP_PUT:
        return "put";
    case TF_OP_LIST:
        return "list";
    default:
        return "bad-request";
    }
}

/* Serves one request. Returns TF_OK to go on with the next one. */
static int serve_request(conn *c)
{
    uint8_t buf[TF_WIRE_REQUEST_SIZE + TF_WIRE_NAME_MAX + TF_UPLOAD_KEY_SIZE];
    tf_wire_request r = {0};
    outcome o = {.op = "request", .started_ms = tf__now_ms()};
    tf__err_clear(&c->err);
    int eof;
    int rc = read_request(c, buf, &r, &eof);
    if (rc == TF_EINVAL) {
        /* An over-long name: answer and carry on. */
        o.op = op_label(r.op);
        o.result = rc;
        log_request(c, &o);
        return send_failure(c, r.op, rc);
    }
    if (rc != TF_OK) {
        if (!eof) { /* a client leaving between requests is no failure */
            o.result = rc;
            log_request(c, &o);
        }
        return rc;
    }
    o.op = op_label(r.op);
    snprintf(o.name, sizeof o.name, "%.*s", (int)r.name_len, r.name ? r.name : "");
    /* A name with a NUL inside would be cut short by the copy above; the
       name check sees the bytes as sent and refuses it. */
    rc = request_valid(c, &r);
    if (rc != TF_OK) {
        o.result = rc;
        log_request(c, &o);
        send_failure(c, r.op, rc);
        return rc;
    }
    switch (r.op) {
    case TF_OP_GET:
        rc = handle_get(c, &r, &o);
        break;
    case TF_OP_PUT:
        rc = handle_put(c, &r, &o);
        break;
    default:
        rc = handle_list(c, &r, &o);
        break;
    }
    log_request(c, &o);
    return rc;
}

static int handshake(conn *c)
{
    int rc = send_hello(c, TF_OK, NULL);
    if (rc != TF_OK)
        return rc;
    uint8_t buf[TF_WIRE_CLIENT_HELLO_SIZE];
    tf_wire_client_hello h;
    size_t have = 0;
    /* Read the hello in pieces, so that a peer that is not speaking our
       protocol is caught at its first wrong byte. */
    for (;;) {
        size_t got;
        rc = tf__stream_read_some(&c->s, buf + have, sizeof buf - have, &got, &c->err);
        if (rc != TF_OK)
            return rc;
        have += got;
        long n = tf__wire_decode_client_hello(buf, have, &h);
        if (n < 0)
            return tf__fail(&c->err, TF_EPROTO, "the peer is not a tcpfile client");
        if (n > 0)
            break;
    }
    if (tf__wire_negotiate(TF_WIRE_VERSION, TF_WIRE_VERSION, h.version_min, h.version_max) ==
        0)
        return tf__fail(&c->err, TF_EPROTO, "no common protocol version (client %u-%u)",
                        (unsigned)h.version_min, (unsigned)h.version_max);
    c->features = h.features & offered_features(&c->srv->opt);
    return TF_OK;
}

static void *connection_main(void *arg)
{
    conn *c = arg;
    tf_server *srv = c->srv;
    const tf_options *opt = &srv->opt;
    int rc;

    c->state = CONN_HANDSHAKE;
    c->s.timeout_ms = (int)opt->value[TF_OPT_IO_TIMEOUT_MS];
    c->s.min_rate = (uint64_t)opt->value[TF_OPT_MIN_RATE];
    c->s.abort_fd = srv->stop_pipe[0];
    rc = handshake(c);
    if (rc != TF_OK) {
        outcome o = {.op = "connect", .result = rc, .started_ms = tf__now_ms()};
        log_request(c, &o);
    }
    while (rc == TF_OK) {
        c->state = CONN_IDLE;
        c->s.abort_fd = srv->stop_pipe[0];
        rc = tf__stream_wait_readable(&c->s, (int)opt->value[TF_OPT_IDLE_TIMEOUT_MS],
                                      &c->err);
        if (rc != TF_OK)
            break; /* idle too long, or the server is stopping */
        c->state = CONN_REQUEST;
        /* A request that has begun may finish during a stop's grace period. */
        c->s.abort_fd = srv->cut_pipe[0];
        tf__stream_rate_reset(&c->s);
        rc = serve_request(c);
    }
    /* Linger only after an error reply, so the client can read it before
       our close resets the connection; an idle connection (timed out, or
       cut by a stop) and a vanished peer are closed at once. */
    int replied = c->state == CONN_REQUEST && rc != TF_ENET && rc != TF_ECANCELED;
    c->state = CONN_CLOSING;
    tf__stream_close_gently(&c->s, replied ? CLOSE_LINGER_MS : 0);
    free(c);

    pthread_mutex_lock(&srv->lock);
    srv->active--;
    pthread_cond_broadcast(&srv->idle);
    pthread_mutex_unlock(&srv->lock);
    return NULL;
}

/* ---- accepting --------------------------------------------------------- */

static void refuse_busy(tf_server *srv, int fd, const char *peer)
{
    conn c = {.srv = srv, .s = {.fd = fd, .abort_fd = -1, .timeout_ms = BUSY_LINGER_MS}};
    char msg[96];
    snprintf(c.peer, sizeof c.peer, "%s", peer);
    long long max = (long long)srv->opt.value[TF_OPT_MAX_CONNECTIONS];
    snprintf(msg, sizeof msg, "the server is full (%lld connection%s); try again later", max,
             max == 1 ? "" : "s");
    tf__fail(&c.err, TF_EBUSY, "%s", msg);
    outcome o = {.op = "busy", .result = TF_EBUSY, .started_ms = tf__now_ms()};
    send_hello(&c, TF_EBUSY, msg);
    log_request(&c, &o);
    tf__stream_close_gently(&c.s, BUSY_LINGER_MS);
}

static void start_connection(tf_server *srv, int fd, const char *peer)
{
    pthread_mutex_lock(&srv->lock);
    int full = srv->active >= srv->opt.value[TF_OPT_MAX_CONNECTIONS];
    if (!full)
        srv->active++;
    pthread_mutex_unlock(&srv->lock);
    if (full) {
        refuse_busy(srv, fd, peer);
        return;
    }
    conn *c = calloc(1, sizeof *c);
    pthread_attr_t attr;
    pthread_t tid;
    int started = 0;
    if (c && pthread_attr_init(&attr) == 0) {
        c->srv = srv;
        c->s.fd = fd;
        snprintf(c->peer, sizeof c->peer, "%s", peer);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, THREAD_STACK);
        started = pthread_create(&tid, &attr, connection_main, c) == 0;
        pthread_attr_destroy(&attr);
    }
    if (!started) {
        free(c);
        close(fd);
        pthread_mutex_lock(&srv->lock);
        srv->active--;
        pthread_cond_broadcast(&srv->idle);
        pthread_mutex_unlock(&srv->lock);
    }
}

int tf__server_serve_fd(tf_server *srv, int fd, const char *peer)
{
    conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return TF_ENOMEM;
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0)
        fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    c->srv = srv;
    c->s.fd = fd;
    snprintf(c->peer, sizeof c->peer, "%s", peer ? peer : "test");
    pthread_mutex_lock(&srv->lock);
    srv->active++;
    pthread_mutex_unlock(&srv->lock);
    connection_main(c);
    return TF_OK;
}

static int accept_loop(tf_server *srv)
{
    struct pollfd p[MAX_LISTEN + 1];
    for (int i = 0; i < srv->nlisten; i++)
        p[i] = (struct pollfd){.fd = srv->listen_fds[i], .events = POLLIN};
    p[srv->nlisten] = (struct pollfd){.fd = srv->stop_pipe[0], .events = POLLIN};
    while (!atomic_load(&srv->stopping)) {
        int r = poll(p, (nfds_t)srv->nlisten + 1, -1);
        if (r < 0 && errno != EINTR)
            return TF_ENET;
        for (int i = 0; r > 0 && i < srv->nlisten; i++) {
            if (!p[i].revents)
                continue;
            char peer[64];
            int fd = tf__accept(p[i].fd, peer, sizeof peer);
            if (fd >= 0) {
                start_connection(srv, fd, peer);
            } else if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
                       errno == ENOMEM) {
                /* Out of descriptors: pause rather than spin on the
                   pending connection. */
                poll(NULL, 0, 100);
            }
        }
    }
    return TF_OK;
}

/* Waits until every connection thread is gone, or until deadline_ms
   (monotonic; < 0 = no deadline). Returns whether they are all gone. */
static int wait_connections(tf_server *srv, int64_t deadline_ms)
{
    pthread_mutex_lock(&srv->lock);
    while (srv->active > 0) {
        if (deadline_ms < 0) {
            pthread_cond_wait(&srv->idle, &srv->lock);
            continue;
        }
        int64_t left = deadline_ms - tf__now_ms();
        if (left <= 0)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += left / 1000;
        ts.tv_nsec += (left % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&srv->idle, &srv->lock, &ts);
    }
    int done = srv->active == 0;
    pthread_mutex_unlock(&srv->lock);
    return done;
}

int tf_server_run(tf_server *s)
{
    if (!s)
        return TF_EINVAL;
    int rc = accept_loop(s);
    /* No new clients from here on: close the listeners so connects are
       refused rather than left waiting. */
    for (int i = 0; i < s->nlisten; i++)
        close(s->listen_fds[i]);
    s->nlisten = 0;
    atomic_store(&s->stopping, 1);
    char x = 1;
    if (write(s->stop_pipe[1], &x, 1) < 0) {
        /* Already written by tf_server_stop: the pipe is readable. */
    }
    int64_t grace = s->opt.value[TF_OPT_STOP_GRACE_MS];
    if (!wait_connections(s, tf__now_ms() + grace)) {
        if (write(s->cut_pipe[1], &x, 1) < 0) {
            /* Nothing to do: a second cut changes nothing. */
        }
        wait_connections(s, -1);
    }
    return rc;
}

void tf_server_stop(tf_server *s)
{
    if (!s)
        return;
    /* Only async-signal-safe operations here: an atomic store and write(). */
    atomic_store(&s->stopping, 1);
    char x = 1;
    ssize_t n = write(s->stop_pipe[1], &x, 1);
    (void)n; /* a full pipe is already readable, which is all we need */
}

static int make_pipe(int p[2])
{
    return pipe2(p, O_CLOEXEC | O_NONBLOCK);
}

int tf_server_open_ex(tf_server **out, const char *host, const char *port, const char *root,
                      const tf_options *opt, char *errbuf, size_t errlen)
{
    tf__err err = {{0}};
    int rc = TF_OK;
    if (errbuf && errlen)
        errbuf[0] = '\0';
    if (!out)
        return TF_EINVAL;
    *out = NULL;
    tf_server *s = calloc(1, sizeof *s);
    if (!s)
        return TF_ENOMEM;
    tf__options_copy(&s->opt, opt);
    s->rootfd = -1;
    s->stop_pipe[0] = s->stop_pipe[1] = s->cut_pipe[0] = s->cut_pipe[1] = -1;
    atomic_init(&s->stopping, 0);
    pthread_mutex_init(&s->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->idle, &ca);
    pthread_condattr_destroy(&ca);

    if (!root || !*root)
        rc = tf__fail(&err, TF_EINVAL, "a root directory is required");
    if (rc == TF_OK)
        rc = tf__root_open(root, &s->rootfd, &err);
    if (rc == TF_OK && (make_pipe(s->stop_pipe) != 0 || make_pipe(s->cut_pipe) != 0))
        rc = tf__fail_errno(&err, TF_EIO, errno, "cannot create a pipe");
    if (rc == TF_OK)
        rc = tf__listen(s->listen_fds, MAX_LISTEN, &s->nlisten, host, port, &err);
    /* Uploads cut short by a crash are debris now: no connection owns them. */
    if (rc == TF_OK)
        tf__upload_sweep(s->rootfd, 1, s->opt.value[TF_OPT_RESUME_TTL_S]);
    if (rc != TF_OK) {
        if (errbuf && errlen)
            snprintf(errbuf, errlen, "%s", err.msg);
        tf_server_close(s);
        return rc;
    }
    *out = s;
    return TF_OK;
}

int tf_server_open(tf_server **out, const char *host, const char *port, const char *root,
                   const tf_options *opt)
{
    return tf_server_open_ex(out, host, port, root, opt, NULL, 0);
}

int tf_server_port(const tf_server *s)
{
    if (!s || s->nlisten == 0)
        return TF_EINVAL;
    int port = tf__socket_port(s->listen_fds[0]);
    return port > 0 ? port : TF_ENET;
}

int tf_server_address(const tf_server *s, char *buf, size_t len)
{
    if (!s || !buf || s->nlisten == 0)
        return TF_EINVAL;
    struct sockaddr_storage ss;
    socklen_t slen = sizeof ss;
    if (getsockname(s->listen_fds[0], (struct sockaddr *)&ss, &slen) != 0)
        return TF_ENET;
    char tmp[64];
    tf__format_addr((struct sockaddr *)&ss, 0, tmp, sizeof tmp);
    if (strlen(tmp) >= len)
        return TF_EINVAL;
    memcpy(buf, tmp, strlen(tmp) + 1);
    return TF_OK;
}

void tf_server_close(tf_server *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->nlisten; i++)
        close(s->listen_fds[i]);
    for (int i = 0; i < 2; i++) {
        if (s->stop_pipe[i] >= 0)
            close(s->stop_pipe[i]);
        if (s->cut_pipe[i] >= 0)
            close(s->cut_pipe[i]);
    }
    if (s->rootfd >= 0)
        close(s->rootfd);
    pthread_cond_destroy(&s->idle);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

int tf_serve(const char *host, const char *port, const char *root, const tf_options *opt)
{
    tf_server *s;
    int rc = tf_server_open(&s, host, port, root, opt);
    if (rc != TF_OK)
        return rc;
    rc = tf_server_run(s);
    tf_server_close(s);
    return rc;
}
