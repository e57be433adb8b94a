/*
 * client_async.c - the event-driven client (tf_aclient_*): one connection
 * that never blocks, driven by the caller's loop through a step function
 * (after curl's multi interface and hiredis' async context). It sits beside
 * the blocking client: it shares the wire codecs (wire.c), the checksum
 * (digest.c) and the transport table (transport.h, so that TLS can be one
 * more table), not the blocking stream.
 *
 * Requests are encoded into one output buffer as they are queued, behind
 * the client hello (both hellos go out at once, neither waits, see
 * docs/protocol.md), so they are all pipelined. Responses come back in
 * request order; the input side is one parser, one state per part of the
 * response of the oldest request (head, payload, trailer), fed from one
 * read buffer.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/epoll.h>
#include <sys/socket.h>

#include "digest.h"
#include "fileio.h"
#include "internal.h"
#include "netio.h"
#include "transport.h"
#include "wire.h"

/* The read buffer: heads, small files and trailers arrive in one recv;
   large payloads into memory are read straight into their destination. */
#define IN_BUF ((size_t)256 << 10)
/* Most bytes one step reads before returning, so that one busy connection
   does not starve the others of a loop (the descriptor stays readable:
   level-triggered waits come straight back). */
#define STEP_BUDGET ((size_t)4 << 20)

enum conn_state { ST_CONNECTING, ST_HANDSHAKE, ST_OPEN, ST_FAILED };
enum read_state { RS_HELLO, RS_HEAD, RS_PAYLOAD, RS_TRAILER };
enum dest { D_MEM, D_FD, D_LIST };

typedef struct areq {
    struct areq *next;
    int op;
    enum dest dest;
    int fd;
    tf_acallback cb;
    void *user;
    char name[]; /* "" for a list */
} areq;

struct tf_aclient {
    tf__conn conn;
    tf_options opt;
    enum conn_state state;
    enum read_state rs;
    struct addrinfo *addrs, *next_addr; /* addresses still to try */
    char addr[64];                      /* the one being tried */
    uint32_t wanted, features;
    uint16_t max_name;
    /* Output: encoded frames not yet sent, out[out_pos..out_len). */
    uint8_t *out;
    size_t out_pos, out_len, out_cap;
    /* Input: in[in_pos..in_len) arrived and not yet parsed. */
    uint8_t *in;
    size_t in_pos, in_len;
    /* Requests, oldest first; the head is the one being answered. */
    areq *head, *tail;
    size_t pending;
    /* The head's payload. */
    uint64_t size, got;
    uint8_t *mem;     /* get_mem / list destination, NULL when dropped */
    int drop_rc;      /* over the memory limit: read and dropped */
    int dst_rc;       /* a write to fd failed (the rest is drained) */
    tf__err dst_err;
    tf__digest digest;
    /* Deadline of the current wait, ms (0: none). */
    int64_t deadline;
    tf__err err;      /* the connection's failure */
    tf__err msg;      /* the message of the request being completed */
    int fail_rc;
    int depth;        /* inside step or a callback: close is deferred */
    int closing;
};

static int64_t io_timeout(const tf_aclient *a)
{
    return a->opt.value[TF_OPT_IO_TIMEOUT_MS];
}

/* A wait starts (or made progress): its deadline moves. */
static void arm(tf_aclient *a, int64_t ms)
{
    a->deadline = ms > 0 ? tf__now_ms() + ms : 0;
}

/* Bytes moved: until the server's hello the connect timeout runs (from
   the connect on, not renewed), after it the I/O timeout while requests
   are outstanding. */
static void moved(tf_aclient *a)
{
    if (a->rs != RS_HELLO)
        arm(a, a->pending ? io_timeout(a) : 0);
}

/* ---- queueing --------------------------------------------------------- */

static int out_reserve(tf_aclient *a, size_t more)
{
    if (a->out_pos == a->out_len)
        a->out_pos = a->out_len = 0;
    if (a->out_len + more <= a->out_cap)
        return TF_OK;
    if (a->out_pos > 0) { /* slide what is left to the front first */
        memmove(a->out, a->out + a->out_pos, a->out_len - a->out_pos);
        a->out_len -= a->out_pos;
        a->out_pos = 0;
        if (a->out_len + more <= a->out_cap)
            return TF_OK;
    }
    size_t cap = a->out_cap ? a->out_cap : 4096;
    while (cap < a->out_len + more)
        cap *= 2;
    uint8_t *p = realloc(a->out, cap);
    if (!p)
        return TF_ENOMEM;
    a->out = p;
    a->out_cap = cap;
    return TF_OK;
}

static int queue(tf_aclient *a, int op, enum dest dest, const char *name, int fd,
                 tf_acallback cb, void *user)
{
    if (!a || !cb)
        return TF_EINVAL;
    if (a->state == ST_FAILED || a->closing)
        return TF_ENET;
    size_t name_len = name ? strlen(name) : 0;
    if (op != TF_OP_LIST) {
        /* Before the server's hello its limit is not known: the protocol's
           ceiling then, and the server answers a longer name itself. */
        if (tf_name_check(name, a->max_name, NULL) != TF_OK)
            return TF_EINVAL;
        if (dest == D_FD && fd < 0)
            return TF_EINVAL;
    }
    areq *q = malloc(sizeof *q + name_len + 1);
    if (!q)
        return TF_ENOMEM;
    *q = (areq){.op = op, .dest = dest, .fd = fd, .cb = cb, .user = user};
    memcpy(q->name, name ? name : "", name_len + 1);
    tf_wire_request r = {.op = (uint8_t)op, .name = q->name, .name_len = (uint16_t)name_len};
    size_t need = TF_WIRE_REQUEST_SIZE + name_len;
    if (out_reserve(a, need) != TF_OK) {
        free(q);
        return TF_ENOMEM;
    }
    long n = tf__wire_encode_request(a->out + a->out_len, a->out_cap - a->out_len, &r);
    if (n < 0) {
        free(q);
        return TF_EINVAL;
    }
    a->out_len += (size_t)n;
    if (a->tail)
        a->tail->next = q;
    else
        a->head = q;
    a->tail = q;
    if (a->pending++ == 0 && a->state == ST_OPEN && a->rs != RS_HELLO)
        arm(a, io_timeout(a)); /* an idle connection starts waiting now */
    return TF_OK;
}

int tf_aclient_get_mem(tf_aclient *a, const char *name, tf_acallback cb, void *user)
{
    return queue(a, TF_OP_GET, D_MEM, name, -1, cb, user);
}

int tf_aclient_get_fd(tf_aclient *a, const char *name, int fd, tf_acallback cb, void *user)
{
    return queue(a, TF_OP_GET, D_FD, name, fd, cb, user);
}

int tf_aclient_list(tf_aclient *a, tf_acallback cb, void *user)
{
    return queue(a, TF_OP_LIST, D_LIST, NULL, -1, cb, user);
}

/* ---- completion ------------------------------------------------------- */

static void end_payload(tf_aclient *a)
{
    free(a->mem);
    a->mem = NULL;
    a->size = a->got = 0;
    a->drop_rc = a->dst_rc = TF_OK;
    tf__err_clear(&a->dst_err);
}

/* Takes the oldest request off the queue and calls its callback with rc
   (its message in a->msg), and with the payload when rc is TF_OK. */
static void complete_head(tf_aclient *a, int rc)
{
    areq *q = a->head;
    a->head = q->next;
    if (!a->head)
        a->tail = NULL;
    a->pending--;
    /* The callback's own copy: one that closes the client completes the
       others, through a->msg, while this message is still being read. */
    char msg[TF_ERRMSG_MAX];
    memcpy(msg, a->msg.msg, sizeof msg);
    tf_aresult r = {.result = rc, .message = rc == TF_OK ? "" : msg,
                    .name = q->name, .size = a->got};
    if (rc != TF_OK && !a->msg.msg[0])
        r.message = tf_strerror(rc);
    if (rc == TF_OK && q->dest == D_MEM) {
        a->mem[a->size] = '\0';
        r.data = a->mem;
        r.len = (size_t)a->size;
        a->mem = NULL;
    } else if (rc == TF_OK && q->dest == D_LIST) {
        int lrc = tf__wire_decode_list(a->mem, (size_t)a->size, a->max_name, &r.listing);
        if (lrc != TF_OK) {
            r.result = lrc;
            r.message = lrc == TF_EPROTO ? "the server sent a malformed listing"
                                         : "out of memory decoding the listing";
        }
    }
    end_payload(a);
    a->depth++;
    q->cb(a, q->user, &r);
    a->depth--;
    free(r.data);
    tf_listing_free(r.listing);
    free(q);
    tf__err_clear(&a->msg);
}

/* The connection is lost: every request gets rc, in order. */
static int fail_all(tf_aclient *a, int rc)
{
    if (a->state != ST_FAILED) {
        tf__conn_close(&a->conn);
        a->state = ST_FAILED;
        a->fail_rc = rc;
        a->deadline = 0;
        a->out_pos = a->out_len = 0;
    }
    while (a->head) {
        tf__err_clear(&a->msg);
        tf__fail(&a->msg, rc, "%s", a->err.msg[0] ? a->err.msg : tf_strerror(rc));
        complete_head(a, rc);
    }
    return rc;
}

/* ---- connecting ------------------------------------------------------- */

static int connect_code(int errnum)
{
    return errnum == ECONNREFUSED ? TF_ECONNREFUSED
           : errnum == ETIMEDOUT  ? TF_ETIMEDOUT
                                  : TF_ENET;
}

/* Starts a non-blocking connect to the next address. TF_OK (connecting,
   or connected already), or the last address's failure. */
static int try_next(tf_aclient *a)
{
    int rc = TF_ENET;
    while (a->next_addr) {
        const struct addrinfo *ai = a->next_addr;
        a->next_addr = ai->ai_next;
        /* Each address is a fresh attempt: the last one's failure is the
           call's (as tf__stream_connect). */
        tf__err_clear(&a->err);
        tf__format_addr(ai->ai_addr, 1, a->addr, sizeof a->addr);
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                        ai->ai_protocol);
        if (fd < 0) {
            rc = tf__fail_errno(&a->err, TF_ENET, errno, "socket failed");
            continue;
        }
        tf__conn_tcp(&a->conn, fd, 1);
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 || errno == EINPROGRESS) {
            a->state = ST_CONNECTING;
            arm(a, a->opt.value[TF_OPT_CONNECT_TIMEOUT_MS]);
            return TF_OK;
        }
        int err = errno;
        tf__conn_close(&a->conn);
        rc = tf__fail_errno(&a->err, connect_code(err), err, "cannot connect to %s",
                            a->addr);
    }
    return rc;
}

static int step_connect(tf_aclient *a)
{
    struct pollfd p = {.fd = a->conn.fd, .events = POLLOUT};
    if (poll(&p, 1, 0) <= 0)
        return TF_OK; /* not yet */
    int err = 0;
    socklen_t elen = sizeof err;
    if (getsockopt(a->conn.fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0)
        err = errno;
    if (err != 0) {
        tf__conn_close(&a->conn);
        int rc = tf__fail_errno(&a->err, connect_code(err), err, "cannot connect to %s",
                                a->addr);
        if (!a->next_addr)
            return rc;
        return try_next(a);
    }
    int one = 1;
    (void)setsockopt(a->conn.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    freeaddrinfo(a->addrs);
    a->addrs = a->next_addr = NULL;
    a->state = ST_HANDSHAKE;
    return TF_OK;
}

/* The transport's own setup (TLS: its handshake; TCP: nothing). */
static int step_handshake(tf_aclient *a)
{
    int r = a->conn.t->handshake(&a->conn);
    if (r == TF__IO_AGAIN)
        return TF_OK;
    if (r != 0)
        return tf__fail_errno(&a->err, TF_ENET, a->conn.err, "handshake with %s failed",
                              a->addr);
    a->state = ST_OPEN; /* the connect's deadline runs on until the hello */
    return TF_OK;
}

/* ---- sending ---------------------------------------------------------- */

static int step_write(tf_aclient *a)
{
    while (a->out_pos < a->out_len) {
        ssize_t n = tf__conn_write(&a->conn, a->out + a->out_pos, a->out_len - a->out_pos, 0);
        if (n == TF__IO_AGAIN)
            return TF_OK;
        if (n < 0)
            return tf__fail_errno(&a->err, a->conn.err == ETIMEDOUT ? TF_ETIMEDOUT : TF_ENET,
                                  a->conn.err, "sending to %s failed", a->addr);
        a->out_pos += (size_t)n;
        moved(a);
    }
    a->out_pos = a->out_len = 0;
    return TF_OK;
}

/* ---- receiving -------------------------------------------------------- */

static int parse_hello(tf_aclient *a, const uint8_t *p, size_t avail, size_t *used)
{
    tf_wire_server_hello sh;
    long n = tf__wire_decode_server_hello(p, avail, &sh);
    if (n == TF_WIRE_NEED_MORE)
        return TF_OK;
    if (n < 0)
        return tf__fail(&a->err, TF_EPROTO, "%s is not a tcpfile server (bad handshake)",
                        a->addr);
    *used = (size_t)n;
    if (sh.status != 0) {
        char why[TF_ERRMSG_MAX]; /* escaped: the server's words */
        tf_escape(why, sizeof why, sh.message, sh.message_len, 0);
        return tf__fail(&a->err, tf__wire_code(sh.status), "the server refused: %s", why);
    }
    if (tf__wire_negotiate(TF_WIRE_VERSION, TF_WIRE_VERSION, sh.version_min,
                           sh.version_max) == 0)
        return tf__fail(&a->err, TF_EPROTO,
                        "no common protocol version: the server speaks %u to %u",
                        (unsigned)sh.version_min, (unsigned)sh.version_max);
    a->features = sh.features & a->wanted;
    a->max_name = sh.max_name;
    a->rs = RS_HEAD;
    return TF_OK;
}

/* A response head for the oldest request. */
static int parse_head(tf_aclient *a, const uint8_t *p, size_t avail, size_t *used)
{
    tf_wire_response r;
    areq *q = a->head;
    if (!q)
        return tf__fail(&a->err, TF_EPROTO, "the server sent %zu bytes nobody asked for",
                        avail);
    long n = tf__wire_decode_response(p, avail, &r);
    if (n == TF_WIRE_NEED_MORE)
        return TF_OK;
    if (n < 0 || r.op != q->op)
        return tf__fail(&a->err, TF_EPROTO, "malformed response from %s", a->addr);
    *used = (size_t)n;
    if (r.status != 0) { /* nothing follows a failure */
        int code = tf__wire_code(r.status);
        char why[TF_ERRMSG_MAX];
        why[0] = '\0';
        if (r.message_len)
            tf_escape(why, sizeof why, r.message, r.message_len, 0);
        if (!tf__wire_status_known(r.status))
            tf__fail(&a->msg, code, "unknown error from the server (status %u)%s%s",
                     (unsigned)r.status, why[0] ? ": " : "", why);
        else if (why[0])
            tf__fail(&a->msg, code, "%s", why);
        else
            tf__fail(&a->msg, code, "%s \"%s\": %s", q->op == TF_OP_LIST ? "list" : "get",
                     q->name, tf_strerror(code));
        complete_head(a, code);
        return TF_OK;
    }
    end_payload(a);
    a->size = r.size;
    if (q->dest != D_FD) {
        if (r.size > (uint64_t)a->opt.value[TF_OPT_MAX_MEMORY] || r.size >= SIZE_MAX)
            a->drop_rc = tf__fail(&a->msg, TF_ETOOBIG,
                                  "\"%s\" is %llu bytes, over the memory limit of %lld",
                                  q->op == TF_OP_LIST ? "the listing" : q->name,
                                  (unsigned long long)r.size,
                                  (long long)a->opt.value[TF_OPT_MAX_MEMORY]);
        else if (!(a->mem = malloc((size_t)r.size + 1)))
            return tf__fail(&a->err, TF_ENOMEM, "out of memory");
    }
    if (tf__digest_begin(&a->digest, (a->features & TF_FEATURE_CHECKSUM) != 0) != TF_OK)
        return tf__fail(&a->err, TF_ENOMEM, "out of memory");
    a->rs = RS_PAYLOAD;
    return TF_OK;
}

/* Payload bytes, wherever they were read to: hashed, then stored. */
static void take_payload(tf_aclient *a, const uint8_t *p, size_t n, int in_place)
{
    tf__digest_update(&a->digest, p, n);
    if (a->head->dest == D_FD) {
        if (a->dst_rc == TF_OK)
            a->dst_rc = tf__fs_write_all(a->head->fd, p, n, &a->dst_err);
    } else if (a->mem && !in_place) {
        memcpy(a->mem + a->got, p, n);
    }
    a->got += n;
    if (a->got == a->size)
        a->rs = RS_TRAILER;
}

static int parse_trailer(tf_aclient *a, const uint8_t *p, size_t avail, size_t *used)
{
    tf_wire_trailer t;
    long n = tf__wire_decode_trailer(p, avail, &t);
    if (n == TF_WIRE_NEED_MORE)
        return TF_OK;
    if (n < 0)
        return tf__fail(&a->err, TF_EPROTO, "malformed trailer from %s", a->addr);
    *used = (size_t)n;
    a->rs = RS_HEAD;
    /* In order of precedence, as the blocking client: the sender's failure
       or a checksum mismatch, then a local one. */
    int rc = TF_OK;
    if (t.status != 0) {
        rc = tf__wire_code(t.status);
        tf__err_clear(&a->msg);
        tf__fail(&a->msg, rc, "the sender failed mid-transfer: %s", tf_strerror(rc));
    } else if (!tf__digest_on(&a->digest)) {
        if (t.digest_len != 0)
            return tf__fail(&a->err, TF_EPROTO, "unexpected digest in trailer");
    } else if (t.digest_len != TF_DIGEST_SIZE) {
        return tf__fail(&a->err, TF_EPROTO, "the trailer lacks the negotiated checksum");
    } else {
        uint8_t mine[TF_DIGEST_SIZE];
        tf__digest_final(&a->digest, mine);
        if (memcmp(mine, t.digest, TF_DIGEST_SIZE) != 0) {
            tf__err_clear(&a->msg);
            rc = tf__fail(&a->msg, TF_ECHECKSUM,
                          "checksum mismatch: the data was corrupted in transit");
        }
    }
    if (rc == TF_OK && a->drop_rc != TF_OK)
        rc = a->drop_rc; /* its message is in a->msg already */
    if (rc == TF_OK && a->dst_rc != TF_OK) {
        tf__err_take(&a->msg, &a->dst_err);
        rc = a->dst_rc;
    }
    complete_head(a, rc);
    return TF_OK;
}

/* Parses what has arrived, completing requests as their ends come. */
static int parse(tf_aclient *a)
{
    while (a->state == ST_OPEN) {
        const uint8_t *p = a->in + a->in_pos;
        size_t avail = a->in_len - a->in_pos, used = 0;
        int rc = TF_OK;
        if (a->rs == RS_PAYLOAD) {
            uint64_t left = a->size - a->got;
            used = avail < left ? avail : (size_t)left;
            if (used == 0 && left > 0)
                break;
            take_payload(a, p, used, 0);
            a->in_pos += used;
            continue;
        }
        if (avail == 0)
            break;
        if (a->rs == RS_HELLO)
            rc = parse_hello(a, p, avail, &used);
        else if (a->rs == RS_HEAD)
            rc = parse_head(a, p, avail, &used);
        else
            rc = parse_trailer(a, p, avail, &used);
        if (rc != TF_OK)
            return rc;
        if (used == 0)
            break; /* a frame's rest is still on its way */
        a->in_pos += used;
    }
    /* Keep the unparsed start of a frame at the front, with room behind. */
    if (a->in_pos == a->in_len) {
        a->in_pos = a->in_len = 0;
    } else if (a->in_pos > 0) {
        memmove(a->in, a->in + a->in_pos, a->in_len - a->in_pos);
        a->in_len -= a->in_pos;
        a->in_pos = 0;
    }
    return TF_OK;
}

static int read_failed(tf_aclient *a, ssize_t n)
{
    if (n == 0)
        return tf__fail(&a->err, TF_ENET, "%s closed the connection%s", a->addr,
                        a->head ? " before answering" : "");
    return tf__fail_errno(&a->err, a->conn.err == ETIMEDOUT ? TF_ETIMEDOUT : TF_ENET,
                          a->conn.err, "receiving from %s failed", a->addr);
}

static int step_read(tf_aclient *a)
{
    size_t budget = STEP_BUDGET;
    while (a->state == ST_OPEN && budget > 0) {
        ssize_t n;
        size_t asked;
        if (a->rs == RS_PAYLOAD && a->in_len == a->in_pos && a->mem &&
            a->size - a->got >= IN_BUF) {
            /* A large payload into memory goes straight to its place. */
            uint64_t left = a->size - a->got;
            asked = left < budget ? (size_t)left : budget;
            n = tf__conn_read(&a->conn, a->mem + a->got, asked);
            if (n == TF__IO_AGAIN)
                return TF_OK;
            if (n <= 0)
                return read_failed(a, n);
            take_payload(a, a->mem + a->got, (size_t)n, 1);
        } else {
            asked = IN_BUF - a->in_len;
            n = tf__conn_read(&a->conn, a->in + a->in_len, asked);
            if (n == TF__IO_AGAIN)
                return TF_OK;
            if (n <= 0)
                return read_failed(a, n);
            a->in_len += (size_t)n;
            int rc = parse(a);
            if (rc != TF_OK)
                return rc;
        }
        budget = (size_t)n < budget ? budget - (size_t)n : 0;
        moved(a);
        /* A short read emptied the socket: asking again would only hear
           EAGAIN (a system call per response, in a loop of small gets).
           More that arrives meanwhile keeps the descriptor readable. */
        if ((size_t)n < asked)
            break;
    }
    return TF_OK;
}

/* ---- the step ---------------------------------------------------------- */

static int step(tf_aclient *a)
{
    int rc = TF_OK;
    if (a->state == ST_CONNECTING)
        rc = step_connect(a);
    if (rc == TF_OK && a->state == ST_HANDSHAKE)
        rc = step_handshake(a);
    if (rc == TF_OK && a->state == ST_OPEN)
        rc = step_write(a);
    if (rc == TF_OK && a->state == ST_OPEN)
        rc = step_read(a);
    if (rc == TF_OK && a->state == ST_OPEN && a->out_len)
        rc = step_write(a); /* what the callbacks just queued goes out now */
    if (rc == TF_OK && a->state == ST_OPEN && a->rs == RS_HEAD && !a->pending)
        a->deadline = 0; /* idle: the server's idle timeout is the server's */
    if (rc == TF_OK && a->deadline && tf__now_ms() >= a->deadline)
        rc = tf__fail(&a->err, TF_ETIMEDOUT, "%s %s made no progress in time",
                      a->state == ST_OPEN && a->rs != RS_HELLO ? "the server at"
                                                               : "connecting to",
                      a->addr);
    if (rc != TF_OK)
        return fail_all(a, rc);
    if (a->state == ST_OPEN && a->rs != RS_HELLO && !a->pending && a->out_len == 0)
        return TF_OK;
    return TF_INPROGRESS;
}

static void destroy(tf_aclient *a)
{
    tf__conn_close(&a->conn);
    if (a->addrs)
        freeaddrinfo(a->addrs);
    end_payload(a);
    tf__digest_end(&a->digest);
    free(a->in);
    free(a->out);
    tf__options_release(&a->opt);
    free(a);
}

int tf_aclient_step(tf_aclient *a)
{
    if (!a)
        return TF_EINVAL;
    if (a->state == ST_FAILED)
        return TF_ENET;
    a->depth++;
    int rc = step(a);
    a->depth--;
    if (a->closing && a->depth == 0) {
        destroy(a);
        return TF_ECANCELED;
    }
    return rc;
}

/* ---- the handle -------------------------------------------------------- */

static void copy_err(char *errbuf, size_t errlen, const char *msg)
{
    if (errbuf && errlen)
        snprintf(errbuf, errlen, "%s", msg);
}

int tf_aclient_connect_start(tf_aclient **out, const char *host, const char *port,
                             const tf_options *opt, char *errbuf, size_t errlen)
{
    copy_err(errbuf, errlen, "");
    if (!out)
        return TF_EINVAL;
    *out = NULL;
    if (!host || !*host || !port || !*port) {
        copy_err(errbuf, errlen, "host and port are required");
        return TF_EINVAL;
    }
    tf_aclient *a = calloc(1, sizeof *a);
    if (!a || !(a->in = malloc(IN_BUF)) || tf__options_copy(&a->opt, opt) != TF_OK) {
        if (a)
            free(a->in);
        free(a);
        copy_err(errbuf, errlen, "out of memory");
        return TF_ENOMEM;
    }
    a->conn.fd = -1;
    a->max_name = TF_WIRE_NAME_MAX;
    a->wanted = a->opt.value[TF_OPT_CHECKSUM] ? TF_FEATURE_CHECKSUM : 0;
    /* The hello goes first; requests queued from now on follow it. */
    tf_wire_client_hello ch = {TF_WIRE_VERSION, TF_WIRE_VERSION, a->wanted};
    int rc = out_reserve(a, TF_WIRE_CLIENT_HELLO_SIZE);
    if (rc == TF_OK) {
        a->out_len = (size_t)tf__wire_encode_client_hello(a->out, a->out_cap, &ch);
        char hbuf[256];
        size_t hl = strlen(host);
        const char *h = host;
        if (hl >= 2 && hl - 2 < sizeof hbuf && host[0] == '[' && host[hl - 1] == ']') {
            memcpy(hbuf, host + 1, hl - 2);
            hbuf[hl - 2] = '\0';
            h = hbuf;
        }
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                                 .ai_flags = AI_ADDRCONFIG};
        int gai = getaddrinfo(h, port, &hints, &a->addrs);
        if (gai == EAI_ADDRFAMILY || gai == EAI_NONAME) {
            hints.ai_flags = 0; /* loopback-only families: see netio.c */
            gai = getaddrinfo(h, port, &hints, &a->addrs);
        }
        if (gai != 0) {
            a->addrs = NULL;
            rc = tf__fail(&a->err, gai == EAI_MEMORY ? TF_ENOMEM : TF_ERESOLVE,
                          "cannot resolve %s port %s: %s", host, port, gai_strerror(gai));
        } else {
            a->next_addr = a->addrs;
            rc = try_next(a);
        }
    } else {
        tf__fail(&a->err, rc, "out of memory");
    }
    if (rc != TF_OK) {
        copy_err(errbuf, errlen, a->err.msg);
        destroy(a);
        return rc;
    }
    *out = a;
    return TF_OK;
}

int tf_aclient_fd(const tf_aclient *a)
{
    return a && a->state != ST_FAILED ? a->conn.fd : -1;
}

int tf_aclient_events(const tf_aclient *a)
{
    if (!a || a->state == ST_FAILED)
        return 0;
    if (a->state == ST_CONNECTING)
        return TF_WANT_WRITE;
    if (a->state == ST_HANDSHAKE) /* what the transport asked for */
        return a->conn.want == EPOLLOUT ? TF_WANT_WRITE : TF_WANT_READ;
    return TF_WANT_READ | (a->out_pos < a->out_len ? TF_WANT_WRITE : 0);
}

int tf_aclient_timeout(const tf_aclient *a)
{
    if (!a || !a->deadline)
        return -1;
    int64_t left = a->deadline - tf__now_ms();
    return left <= 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int)left;
}

size_t tf_aclient_pending(const tf_aclient *a)
{
    return a ? a->pending : 0;
}

const char *tf_aclient_errmsg(const tf_aclient *a)
{
    return a ? a->err.msg : "";
}

void tf_aclient_close(tf_aclient *a)
{
    if (!a || a->closing)
        return;
    a->closing = 1;
    if (a->head) {
        tf__err_clear(&a->err);
        tf__fail(&a->err, TF_ECANCELED, "the client was closed first");
        a->depth++;
        fail_all(a, TF_ECANCELED);
        a->depth--;
    }
    if (a->depth == 0)
        destroy(a);
}
