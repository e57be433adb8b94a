/*
 * session.c - one connection of the event-driven server as an explicit
 * state machine (see session_state in session.h). Every function here runs
 * on the thread of the connection's loop and never blocks on the peer:
 * when the transport has no room or no data it returns, and the loop calls
 * back. Storage work (open, hash, fsync, rename, scans, a network store's
 * every call) goes through the server's storage interface, storage.h (never
 * a file-system call here), and runs on the server's disk pool (disk_call:
 * the session waits in S_DISK meanwhile), so that no call blocks the loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/uio.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "auth.h"
#include "getahead.h"
#include "groupcommit.h"
#include "listing.h"
#include "netio.h"
#include "session.h"
#include "transport_tls.h"
#include "walk.h"

#define XFER_BUF ((size_t)256 << 10)
/* Most bytes one session moves per event, so that one fast peer cannot
   starve the others on its worker. */
#define EVENT_BUDGET ((size_t)8 << 20)
/* sendfile's largest step: bounded so the budget above holds. */
#define SENDFILE_STEP ((size_t)2 << 20)
/* Files up to this size are read with one pread and go out with their
   head and trailer in one sendmsg, hashed on the spot: three system calls
   fewer than head, sendfile and trailer, and no remembered checksum to
   look up. (Measured with bench/: 4 KiB gets are CPU-bound on calls.) */
#define SMALL_BODY_MAX ((size_t)64 << 10)
/* A resumed transfer's prefix is hashed this much per job of the disk pool. */
#define HASH_SLICE ((uint64_t)1 << 20)
/* Finished requests a loop keeps for the next ones. */
#define REQUEST_POOL_MAX 64
/* The input buffer a session takes when bytes come: a hello, a request
   head with a short name, a trailer. */
#define INPUT_SMALL 96
/* Input buffers and storage-call blocks a loop keeps for reuse. */
#define INPUT_POOL_MAX 64
#define DISK_POOL_MAX 64
/* How long a session that has sent its last reply waits for the peer to
   close first. */
#define CLOSING_LINGER_MS 1000

#define SESSION_OF(p, field) ((session *)((char *)(p) - offsetof(session, field)))

static const tf_options *opts(const session *s)
{
    return s->ctx->opt;
}

/* A logged-in user's own view of the storage (users confined to a
   sub-directory, issue 13). */
struct session_user {
    tf__user_info info;
    tf__storage *storage; /* NULL: the whole root */
};

static tf__storage *storage(const session *s)
{
    return s->user && s->user->storage ? s->user->storage : s->ctx->storage;
}

static uint32_t offered_features(const tf_options *opt)
{
    return TF_FEATURE_RESUME | TF_FEATURE_STREAM | TF_FEATURE_TREE | TF_FEATURE_PUTX |
           (opt->value[TF_OPT_CHECKSUM] ? TF_FEATURE_CHECKSUM : 0);
}

/* The tree's operations (section 3a), one line each: what the log calls
   it, whether it changes the tree (refused on a read-only server), the
   request flags it takes, and its handler. Rights per op go here. */
typedef struct tree_op {
    uint8_t op;
    const char *label;
    int writes;
    uint8_t flags;
    void (*handle)(session *s, const tf_wire_request *q);
} tree_op;
static const tree_op *find_tree_op(int op);

/* ---- logging -------------------------------------------------------------- */

static const char *op_label(int op)
{
    switch (op) {
    case TF_OP_GET:
        return "get";
    case TF_OP_PUT:
        return "put";
    case TF_OP_LIST:
        return "list";
    case TF_OP_AUTH:
        return "auth";
    default: {
        const tree_op *t = find_tree_op(op);
        return t ? t->label : "bad-request";
    }
    }
}

/* to: a rename's new path, "" otherwise. */
static void log_entry(session *s, const char *op, const char *name, const char *to,
                      uint64_t bytes, int result, const char *message, int64_t started_ms)
{
    const tf_options *opt = opts(s);
    if (!opt->log)
        return;
    char peer[64];
    tf__format_addr((const struct sockaddr *)&s->peer, 1, peer, sizeof peer);
    tf_request_log entry = {
        .peer = peer,
        .op = op,
        .name = name,
        .bytes = bytes,
        .result = result,
        .message = result == TF_OK ? "" : message,
        .seconds = (double)(tf__now_ms() - started_ms) / 1000.0,
        .user = s->user ? s->user->info.name : "",
        .to = to,
    };
    opt->log(opt->log_user, &entry);
}

/* ---- requests: lifetime ------------------------------------------------------ */

static request *request_begin(session *s, uint8_t op)
{
    tf__session_ctx *w = s->ctx;
    request *r = w->spare_requests;
    tf__digest digest = {0};
    uint8_t *small = NULL;
    if (r) {
        w->spare_requests = r->next_spare;
        w->nspare--;
        digest = r->digest; /* its state is reset, not allocated again */
        small = r->small;
    } else if (!(r = malloc(sizeof *r))) {
        return NULL;
    }
    /* Everything but the name, which is written whole before it is used. */
    memset(r, 0, offsetof(request, name));
    r->to[0] = '\0'; /* a rename cut before its new path logs none */
    r->digest = digest;
    r->small = small;
    r->op = op;
    r->started_ms = tf__now_ms();
    r->body_fd = -1;
    if (tf__digest_begin(&r->digest, (s->features & TF_FEATURE_CHECKSUM) != 0) != TF_OK) {
        free(r->small);
        free(r);
        return NULL;
    }
    r->name[0] = '\0';
    s->req = r;
    /* The minimum-rate window starts with the request. */
    s->window_ms = r->started_ms;
    s->window_bytes = 0;
    return r;
}

/* Logs the request and frees what it held. keep_partial: a resumable
   upload cut off by the connection keeps its bytes for the next attempt. */
static void request_end(session *s, int keep_partial)
{
    request *r = s->req;
    if (!r)
        return;
    int result = r->result;
    const char *message = r->err.msg;
    char cut[128];
    if (keep_partial && result == TF_OK) {
        /* The connection ended before the reply did (the server stopping
           after its grace period, the peer gone): not a success, and the
           log must not say "ok" for a file half sent or half received. */
        int put = r->op == TF_OP_PUT;
        if (r->stream) /* no size to compare with */
            snprintf(cut, sizeof cut, "cut off after %llu bytes of a stream: %s",
                     (unsigned long long)r->bytes,
                     s->ctx->stopping ? "server stopping" : "connection closed");
        else
            snprintf(cut, sizeof cut, "cut off after %llu of %llu bytes: %s",
                     (unsigned long long)(put ? r->have + r->bytes : r->bytes),
                     (unsigned long long)(put ? r->size : r->bytes + r->body_left),
                     s->ctx->stopping ? "server stopping" : "connection closed");
        result = TF_ENET;
        message = cut;
    }
    if (!r->grouped)
        log_entry(s, op_label(r->op), r->name, r->op == TF_OP_RENAME ? r->to : "", r->bytes,
                  result, message, r->started_ms);
    if (r->body_fd >= 0)
        storage(s)->ops->close_read(storage(s), r->body_fd);
    if (r->up) {
        /* An empty partial saves nothing: not kept. */
        if (keep_partial && r->has_key && r->store_rc == TF_OK && r->have + r->bytes > 0)
            storage(s)->ops->keep(storage(s), &r->up);
        else
            storage(s)->ops->abort(storage(s), &r->up);
    }
    tf__digest_end(&r->cur);
    free(r->buf);
    free(r->wbuf);
    free(r->list);
    if (r->list_held)
        atomic_fetch_sub(s->ctx->list_bytes, (uint64_t)r->list_held);
    tf__walk_close(r->walk);
    s->req = NULL;
    tf__session_ctx *w = s->ctx;
    if (w->nspare < REQUEST_POOL_MAX) {
        r->next_spare = w->spare_requests;
        w->spare_requests = r;
        w->nspare++;
    } else {
        tf__digest_end(&r->digest);
        free(r->small);
        free(r);
    }
}

static int ensure_buf(request *r)
{
    if (!r->buf && !(r->buf = malloc(XFER_BUF)))
        return tf__fail(&r->err, TF_ENOMEM, "out of memory");
    return TF_OK;
}

/* ---- moving between states ------------------------------------------------ */

static int watch(session *s, uint32_t events)
{
    return tf__loop_watch(s->ctx->loop, &s->watch, events);
}

/* Puts s on list (NULL: none) as of now_ms: the one place that moves a
   session between the timeouts. */
static void list_move(session *s, tf__timer_list *list, int64_t now_ms)
{
    tf__timer_touch(&s->timer, list, now_ms);
}

static void enter_closing(session *s)
{
    s->state = S_CLOSING;
    if (!s->shut) {
        tf__conn_shutdown(&s->conn);
        s->shut = 1;
    }
    list_move(s, &s->ctx->closing, tf__now_ms());
    if (watch(s, EPOLLIN) != 0)
        tf__session_close(s);
}

/* ---- the input buffer ------------------------------------------------------ */

/* Gives the input buffer b (of cap bytes) back to the loop's spares, or to
   the heap when it is a long name's or the spares are full. */
static void input_free(tf__session_ctx *ctx, uint8_t *b, size_t cap)
{
    if (cap == INPUT_SMALL && ctx->nspare_in < INPUT_POOL_MAX) {
        memcpy(b, &ctx->spare_in, sizeof ctx->spare_in);
        ctx->spare_in = b;
        ctx->nspare_in++;
    } else {
        free(b);
    }
}

/* Gives s an input buffer, if it has none, before a read. 0, or -1 when
   out of memory. */
static int input_take(session *s)
{
    if (s->in)
        return 0;
    tf__session_ctx *ctx = s->ctx;
    uint8_t *b = ctx->spare_in;
    if (b) {
        memcpy(&ctx->spare_in, b, sizeof ctx->spare_in);
        ctx->nspare_in--;
    } else if (!(b = malloc(INPUT_SMALL))) {
        return -1;
    }
    s->in = b;
    s->in_cap = INPUT_SMALL;
    return 0;
}

/* Between requests: an empty input buffer goes back to the spares (an
   idle connection holds none), and a long name's big one is traded for a
   small one when what is left fits. */
static void input_shrink(session *s)
{
    if (!s->in || (s->in_cap == INPUT_SMALL && s->in_len > 0))
        return;
    uint8_t *old = s->in;
    size_t cap = s->in_cap;
    s->in = NULL;
    s->in_cap = 0;
    if (s->in_len > 0 && (s->in_len > INPUT_SMALL || input_take(s) != 0)) {
        s->in = old; /* still needed whole */
        s->in_cap = cap;
        return;
    }
    if (s->in_len > 0)
        memcpy(s->in, old, s->in_len);
    input_free(s->ctx, old, cap);
}

static void enter_idle(session *s)
{
    s->state = S_IDLE;
    list_move(s, &s->ctx->idle, tf__now_ms());
    input_shrink(s);
}

/* Ends the session because the connection failed or timed out. */
static void fail_session(session *s, int code, const char *why)
{
    if (s->req) {
        s->req->result = code;
        snprintf(s->req->err.msg, sizeof s->req->err.msg, "%s", why);
        request_end(s, 1);
    } else if (s->state == S_HELLO || s->state == S_TLS || s->in_len > 0) {
        log_entry(s, s->state == S_HELLO || s->state == S_TLS ? "connect" : "request", "", "", 0,
                  code, why,
                  s->timer.last_ms);
    }
    tf__session_close(s);
}

static void consume_input(session *s, size_t n)
{
    memmove(s->in, s->in + n, s->in_len - n);
    s->in_len -= n;
}

/* Drops what has arrived of a refused request's over-long name (s->skip
   bytes are still owed). */
static void drop_skipped(session *s)
{
    size_t drop = s->in_len < s->skip ? s->in_len : s->skip;
    consume_input(s, drop);
    s->skip -= drop;
}

/* Counts progress for the timeouts and the minimum rate. Returns non-zero
   when the peer is too slow (and the session has been closed). */
static int progressed(session *s, size_t bytes)
{
    int64_t now = tf__now_ms();
    const tf_options *opt = opts(s);
    list_move(s, s->timer.list, now);
    uint64_t min_rate = (uint64_t)opt->value[TF_OPT_MIN_RATE];
    int64_t window = opt->value[TF_OPT_IO_TIMEOUT_MS] ? opt->value[TF_OPT_IO_TIMEOUT_MS]
                                                      : 30000;
    s->window_bytes += bytes;
    /* Only a frame in flight has to keep moving; an idle connection waits
       under the idle timeout instead. */
    if (!min_rate || s->timer.list != &s->ctx->active || now - s->window_ms < window)
        return 0;
    if (s->window_bytes * 1000 < min_rate * (uint64_t)(now - s->window_ms)) {
        char why[160];
        snprintf(why, sizeof why,
                 "the peer is too slow: %llu bytes in %lld ms (at least %llu bytes/s required)",
                 (unsigned long long)s->window_bytes, (long long)(now - s->window_ms),
                 (unsigned long long)min_rate);
        fail_session(s, TF_ETIMEDOUT, why);
        return 1;
    }
    s->window_ms = now;
    s->window_bytes = 0;
    return 0;
}

/* ---- pools' completions, back in the loop ------------------------------------------ */

static void drain_queue(tf__watcher *w, uint32_t events)
{
    (void)events;
    tf__session_queue *sq = (tf__session_queue *)((char *)w - offsetof(tf__session_queue, watch));
    tf__pool_queue_drain(&sq->q);
}

static int queue_start(tf__session_ctx *ctx, tf__session_queue *sq)
{
    tf__err e = {{0}};
    int rc = tf__pool_queue_init(&sq->q, &e);
    if (rc != TF_OK)
        return rc;
    sq->on = 1;
    sq->watch.fd = tf__pool_queue_fd(&sq->q);
    sq->watch.on_events = drain_queue;
    return tf__loop_watch(ctx->loop, &sq->watch, EPOLLIN) == 0 ? TF_OK : TF_EIO;
}

/* Waits for the queue's jobs in flight, running their done callbacks. */
static void queue_stop(tf__session_ctx *ctx, tf__session_queue *sq)
{
    if (!sq->on)
        return;
    tf__loop_watch(ctx->loop, &sq->watch, 0);
    tf__pool_queue_fini(&sq->q);
    sq->on = 0;
}

/* ---- storage work on the disk pool (S_DISK) ---------------------------------------- */

static void close_now(session *s);
static void read_pending(session *s);

static void disk_run(tf__work *w)
{
    session_disk *d = (session_disk *)w;
    d->fn(w->data);
}

/* A block for a storage call: one of the loop's spares, or a new one. */
static session_disk *disk_take(tf__session_ctx *ctx)
{
    session_disk *d = ctx->spare_disk;
    if (d) {
        ctx->spare_disk = d->next_spare;
        ctx->nspare_disk--;
        memset(&d->work, 0, sizeof d->work);
    } else if (!(d = calloc(1, sizeof *d))) {
        return NULL;
    }
    return d;
}

static void disk_give_back(tf__session_ctx *ctx, session_disk *d)
{
    if (ctx->nspare_disk < DISK_POOL_MAX) {
        d->next_spare = ctx->spare_disk;
        ctx->spare_disk = d;
        ctx->nspare_disk++;
    } else {
        free(d);
    }
}

/* The job is over (in the loop's thread, from the queue's drain): the
   session gets back its state, its timer and its socket, goes on with
   then, and reads the bytes its transport already holds (a pipelined
   request inside a TLS record), for which no socket event would come. */
static void disk_done(tf__work *w, int status)
{
    session_disk *d = (session_disk *)w;
    session *s = w->data;
    session_state from = d->from;
    uint32_t events = d->events;
    int64_t since = d->since;
    void (*then)(session *s) = d->then;
    s->ctx->disk_inflight--;
    s->disk = NULL;
    disk_give_back(s->ctx, d);
    if (s->dead) {
        close_now(s); /* closed while the job waited or ran */
        return;
    }
    /* The time the disk took is not the peer's: its timeout starts again,
       and its minimum rate's window leaves that time out (but keeps its
       bytes: a peer trickling a payload is still measured). */
    int64_t now = tf__now_ms();
    s->state = from;
    s->window_ms += now - since;
    list_move(s, &s->ctx->active, now);
    if (watch(s, events) != 0) {
        fail_session(s, TF_ENET, "epoll failed");
        return;
    }
    if (status != TF_OK) { /* never ran: the pool is stopping */
        fail_session(s, TF_ECANCELED, "the server is stopping");
        return;
    }
    then(s);
    if (!s->dead)
        read_pending(s);
}

/*
 * Runs work(s) on the disk pool, then then(s) back in the loop's thread.
 * work makes storage calls for the request in flight and leaves its
 * results in s->req; it must not touch the loop, the socket, the timers
 * nor ctx (but its atomics). Meanwhile s is in S_DISK: neither its peer
 * nor a timeout can move or free it. The caller returns at once after
 * this, as it would after a reply (s may already be closed when there is
 * no pool and then ran inline). Out of memory for the job's block, the
 * work runs inline too.
 */
/* Puts s in S_DISK until disk_done(d) (d is s->disk): NULL when out of
   memory. A d without fn is a wait for a get opened ahead, whose job's
   end calls disk_done (ahead_done). */
static session_disk *disk_enter(session *s, void (*work)(session *s), void (*then)(session *s))
{
    tf__session_ctx *ctx = s->ctx;
    session_disk *d = disk_take(ctx);
    if (!d)
        return NULL;
    d->work.work = disk_run;
    d->work.done = disk_done;
    d->work.data = s;
    d->fn = work;
    d->then = then;
    d->from = s->state;
    d->events = s->watch.events;
    d->since = tf__now_ms();
    s->state = S_DISK;
    list_move(s, &ctx->disk, tf__now_ms());
    (void)watch(s, 0); /* a failure leaves it watched: on_events ignores S_DISK */
    s->disk = d;
    ctx->disk_inflight++;
    return d;
}

static void disk_call(session *s, void (*work)(session *s), void (*then)(session *s))
{
    tf__session_ctx *ctx = s->ctx;
    session_disk *d = ctx->disk_pool && ctx->disk_queue.on ? disk_enter(s, work, then) : NULL;
    if (d) {
        if (tf__pool_submit(ctx->disk_pool, &ctx->disk_queue.q, &d->work) == TF_OK)
            return;
        /* The pool is stopping: inline, as without one. */
        uint32_t events = d->events;
        s->disk = NULL;
        ctx->disk_inflight--;
        s->state = d->from;
        disk_give_back(ctx, d);
        list_move(s, &ctx->active, tf__now_ms());
        if (watch(s, events) != 0) {
            fail_session(s, TF_ENET, "epoll failed");
            return;
        }
    }
    work(s);
    then(s);
}

/* ---- output ------------------------------------------------------------------- */

/* The tree's codes (TF_ENOTDIR, TF_EISDIR, TF_ENOTEMPTY) travel only to a
   client that uses TREE; an older one hears what version 1 said. */
static int code_for_peer(const session *s, int code)
{
    if (s->features & TF_FEATURE_TREE)
        return code;
    switch (code) {
    case TF_ENOTDIR:
        return TF_ENOENT;
    case TF_EISDIR:
        return TF_EACCES;
    case TF_ENOTEMPTY:
        return TF_EEXIST;
    default:
        return code;
    }
}

static void queue_head(session *s, int code, uint64_t size, uint8_t flags, const char *msg)
{
    request *r = s->req;
    code = code_for_peer(s, code);
    size_t mlen = msg ? strlen(msg) : 0;
    if (mlen > TF_WIRE_MESSAGE_MAX)
        mlen = TF_WIRE_MESSAGE_MAX;
    tf_wire_response resp = {.op = r->op, .flags = flags, .status = tf__wire_status(code),
                             .size = size, .message = msg, .message_len = (uint16_t)mlen};
    r->head_len = (size_t)tf__wire_encode_response(r->head, sizeof r->head, &resp);
    r->head_pos = 0;
}

static void start_send(session *s, after_send after);

/* Replies with the failure recorded in the request. */
static void reply_failure(session *s, int code, after_send after)
{
    request *r = s->req;
    r->result = code;
    queue_head(s, code, 0, 0, r->err.msg[0] ? r->err.msg : tf_strerror(code));
    r->body_left = 0;
    r->has_trailer = 0;
    start_send(s, after);
}

static void build_trailer(session *s)
{
    request *r = s->req;
    uint8_t digest[TF_DIGEST_SIZE];
    tf_wire_trailer t = {.status = tf__wire_status(r->body_rc)};
    if (r->body_rc == TF_OK && r->cached) {
        t.digest = r->cached_digest;
        t.digest_len = TF_DIGEST_SIZE;
    } else if (r->body_rc == TF_OK && tf__digest_on(&r->digest)) {
        tf__digest_final(&r->digest, digest);
        t.digest = digest;
        t.digest_len = TF_DIGEST_SIZE;
        /* The whole file is hashed (a resumed get's prefix too): remember
           it, so that the next get, from any offset, is zero-copy and hashes
           nothing (a small one is cheaper to hash again than to look up). */
        if (r->body_fd >= 0 && !r->gathered)
            storage(s)->ops->digest_store(storage(s), r->body_fd, digest, r->file_id);
    }
    r->tail_len = (size_t)tf__wire_encode_trailer(r->tail, sizeof r->tail, &t);
    r->tail_pos = 0;
}

/* Sends from memory; returns bytes sent, 0 when the transport is full, or
   -1 (errno and s->conn.err set) when the connection failed. */
static ssize_t send_bytes(session *s, const void *p, size_t n, int more)
{
    ssize_t k = tf__conn_write(&s->conn, p, n, more ? TF__IO_MORE : 0);
    return k == TF__IO_AGAIN ? 0 : k;
}

/* The file failed or shrank mid-body: the frame is completed with zeros
   and the trailer carries the failure. */
static void body_failed(request *r, int code, int errnum, const char *what)
{
    if (errnum)
        tf__fail_errno(&r->err, code, errnum, "%s", what);
    else
        tf__fail(&r->err, code, "%s", what);
    r->body_rc = code;
    if (ensure_buf(r) == TF_OK)
        memset(r->buf, 0, XFER_BUF);
    r->buf_pos = r->buf_end = 0;
}

/* Reads the file's next chunk into the request's buffer and hashes it, so
   that the digest describes exactly what is read for sending. Returns 1;
   0 when the file failed (body_failed: zeros follow); -1 without memory. */
static int read_chunk(tf__storage *st, request *r)
{
    if (ensure_buf(r) != TF_OK)
        return -1;
    size_t want = r->body_left < XFER_BUF ? (size_t)r->body_left : XFER_BUF;
    ssize_t n = st->ops->read_at(st, r->body_fd, r->buf, want, r->body_off);
    if (n <= 0) {
        body_failed(r, TF_EIO, n < 0 ? errno : 0,
                    n < 0 ? "reading the file failed" : "the file shrank while being sent");
        return 0;
    }
    tf__digest_update(&r->digest, r->buf, (size_t)n);
    r->buf_pos = 0;
    r->buf_end = (size_t)n;
    r->hashed_to = r->body_off + (uint64_t)n;
    return 1;
}

/* The body's strategies, one function each: memory (a listing), zeros
   after the file failed, sendfile, hash-then-sendfile, and the copy path
   (pread + send) for files sendfile refuses. Each returns bytes sent (0:
   the transport is full, or the body just failed and zeros follow), or -1
   when the connection failed. */

static ssize_t send_mem_step(session *s)
{
    request *r = s->req;
    size_t n = r->body_left < SENDFILE_STEP ? (size_t)r->body_left : SENDFILE_STEP;
    ssize_t k = send_bytes(s, r->body_mem + r->body_off, n, 0);
    if (k > 0 && !r->walk) /* a listdir hashes its entries, not its chunk heads */
        tf__digest_update(&r->digest, r->body_mem + r->body_off, (size_t)k);
    return k;
}

static ssize_t send_zeros_step(session *s)
{
    request *r = s->req;
    if (!r->buf)
        return -1; /* no memory for the zeros: give up on the connection */
    size_t n = r->body_left < XFER_BUF ? (size_t)r->body_left : XFER_BUF;
    return send_bytes(s, r->buf, n, 0);
}

/* send_body_step's answer when the next bytes must first be read on the
   disk pool (a network store's read_at): continue_send starts the job. */
#define SEND_NEEDS_READ ((ssize_t)-2)

static ssize_t send_copy_step(session *s)
{
    request *r = s->req;
    if (r->buf_pos == r->buf_end) {
        if (storage(s)->network && s->ctx->disk_queue.on)
            return SEND_NEEDS_READ;
        int got = read_chunk(storage(s), r);
        if (got <= 0)
            return got;
    }
    ssize_t k = send_bytes(s, r->buf + r->buf_pos, r->buf_end - r->buf_pos, 0);
    if (k > 0)
        r->buf_pos += (size_t)k;
    return k;
}

/* sendfile of n bytes from body_off; hashed: they are in the buffer too
   (hash-then-sendfile), and go from there should sendfile refuse. */
static ssize_t send_file_step(session *s, size_t n, int hashed)
{
    request *r = s->req;
    /* SIGPIPE is blocked in every thread that runs sessions (see
       tf_server_run), so no per-call masking. */
    ssize_t k = tf__conn_sendfile(&s->conn, r->body_fd, r->body_off, n);
    if (k > 0)
        return k;
    if (k == 0) {
        body_failed(r, TF_EIO, 0, "the file shrank while being sent");
        return 0;
    }
    if (k == TF__IO_AGAIN)
        return 0;
    if (s->conn.err != EINVAL && s->conn.err != ENOSYS && s->conn.err != EIO)
        return -1;
    /* A file system without sendfile, or a read error: the copy path
       tells the two apart. What is hashed already goes from the buffer,
       not hashed twice. */
    r->copy_path = 1;
    r->buf_pos = hashed ? r->buf_end - n : r->buf_end;
    return send_copy_step(s);
}

/* Hash the next chunk as read, then let sendfile move the same bytes: one
   copy fewer than sending from the buffer. Should the file change in place
   between the two, the digest no longer matches what was sent and the
   client gets TF_ECHECKSUM. (A change to a part not read yet is sent and
   hashed as it is then, as before: in-place writers can tear a copy;
   uploads, which rename, cannot.) */
static ssize_t send_hashed_file_step(session *s)
{
    request *r = s->req;
    if (r->body_off == r->hashed_to) {
        int got = read_chunk(storage(s), r); /* kept, should sendfile fail */
        if (got <= 0)
            return got;
    }
    return send_file_step(s, (size_t)(r->hashed_to - r->body_off), 1);
}

/* One step of the body, by strategy. */
static ssize_t send_body_step(session *s)
{
    request *r = s->req;
    if (r->body_mem)
        return send_mem_step(s);
    if (r->body_rc != TF_OK)
        return send_zeros_step(s);
    if (r->copy_path)
        return send_copy_step(s);
    if (tf__digest_on(&r->digest) && !r->cached)
        return send_hashed_file_step(s);
    return send_file_step(s, r->body_left < SENDFILE_STEP ? (size_t)r->body_left
                                                           : SENDFILE_STEP, 0);
}

/* A listdir's entries per chunk, at most (the chunk is r->buf). */
#define WALK_CHUNK ((size_t)64 << 10)

/* A listdir's next entries, read on the disk pool (walk_filled queues
   them). Asked for only when the previous chunk is out, so a chunk is
   produced when the socket has taken the last one: the listing is never
   ahead of the client by more than a chunk. A failed walk lists no more,
   and the trailer carries the failure. */
static void walk_work(session *s)
{
    request *r = s->req;
    size_t len = 0;
    int done = 1;
    int rc = tf__walk_fill(r->walk, r->buf + TF_WIRE_CHUNK_HEAD_SIZE, WALK_CHUNK, &len, &done,
                           &r->err);
    if (rc != TF_OK) {
        r->walk_rc = rc;
        len = 0;
        done = 1;
    }
    r->walk_ended = done;
    if (len)
        tf__digest_update(&r->digest, r->buf + TF_WIRE_CHUNK_HEAD_SIZE, len);
    r->walk_len = len;
}

/* Queues len bytes of entries (0: the end marker) as the body. */
static void walk_queue(request *r, size_t len)
{
    tf__wire_encode_chunk_head(r->buf, TF_WIRE_CHUNK_HEAD_SIZE, (uint32_t)len);
    r->body_mem = r->buf;
    r->body_off = 0;
    r->body_left = TF_WIRE_CHUNK_HEAD_SIZE + len;
}

/* Writes what it can. Returns 1 when the response is out, 0 when the
   socket is full, -1 when the connection failed (s is closed), 2 when the
   body's next bytes need the disk pool first (r->want: WANT_*). */
static int send_some(session *s)
{
    request *r = s->req;
    size_t budget = EVENT_BUDGET;
    while (budget > 0) {
        ssize_t k;
        tf__group *g = s->group;
        if (g && g->out_pos < g->out_len) {
            /* The group's answers go before this request's own. */
            k = send_bytes(s, g->out + g->out_pos, g->out_len - g->out_pos,
                           r->head_pos < r->head_len);
            if (k > 0)
                g->out_pos += (size_t)k;
        } else if (r->head_pos < r->head_len) {
            int more = r->body_left > 0 || r->has_trailer;
            k = send_bytes(s, r->head + r->head_pos, r->head_len - r->head_pos, more);
            if (k > 0)
                r->head_pos += (size_t)k;
        } else if (r->body_left > 0) {
            k = send_body_step(s);
            if (k == SEND_NEEDS_READ) {
                r->want = WANT_READ;
                return 2;
            }
            if (k > 0) {
                r->body_off += (uint64_t)k;
                r->body_left -= (uint64_t)k;
                r->bytes += (uint64_t)k;
            }
        } else if (r->walk && !r->walk_over) {
            if (!r->walk_ended) {
                r->want = WANT_WALK; /* entries (or nothing yet) from walk_work */
                return 2;
            }
            r->walk_over = 1;
            walk_queue(r, 0); /* the end marker */
            continue;
        } else if (r->has_trailer && r->tail_len == 0) {
            if (r->walk)
                r->body_rc = r->walk_rc; /* only now: see the zeros above */
            build_trailer(s);
            continue;
        } else if (r->tail_pos < r->tail_len) {
            k = send_bytes(s, r->tail + r->tail_pos, r->tail_len - r->tail_pos, 0);
            if (k > 0)
                r->tail_pos += (size_t)k;
        } else {
            return 1;
        }
        if (k < 0) {
            char why[128];
            snprintf(why, sizeof why, "send failed: %s", strerror(errno));
            fail_session(s, TF_ENET, why);
            return -1;
        }
        if (k == 0 && r->body_rc == TF_OK)
            return 0;
        if (k == 0)
            continue; /* the body just failed: go on with the zeros */
        if (progressed(s, (size_t)k))
            return -1;
        budget -= (size_t)k < budget ? (size_t)k : budget;
    }
    return 0;
}

static void parse_input(session *s);
static void receive_body(session *s);

static void sent(session *s)
{
    request *r = s->req;
    if (r->body_rc != TF_OK)
        r->result = r->body_rc;
    switch (r->after) {
    case AFTER_RECV_BODY:
        s->state = S_RECV_BODY;
        s->window_ms = tf__now_ms();
        s->window_bytes = 0;
        if (watch(s, EPOLLIN) != 0) {
            fail_session(s, TF_ENET, "epoll failed");
            return;
        }
        receive_body(s);
        return;
    case AFTER_CLOSE:
        request_end(s, 0);
        enter_closing(s);
        return;
    case AFTER_IDLE:
        request_end(s, 0);
        enter_idle(s);
        if (watch(s, EPOLLIN) != 0) {
            tf__session_close(s);
            return;
        }
        parse_input(s); /* a pipelined request may be waiting */
        return;
    }
}

/* Hashes the next slice of the prefix a resumed transfer's digest needs
   before its response head goes out: a get's file before its offset, a
   put's partial (on the disk pool: hash_slice_work). One slice per job
   lets a stop cancel a whole file's hash (a get at offset = size) between
   slices. */
static int hash_prefix_step(session *s)
{
    request *r = s->req;
    uint64_t n = r->prefix_to - r->hashed_to;
    if (n > HASH_SLICE)
        n = HASH_SLICE;
    int rc = ensure_buf(r);
    /* A conditional put hashes the name's current version (open for
       reading in body_fd) into its own digest, not the upload's. */
    tf__upload *up = r->op == TF_OP_PUT && !r->cur_hashing ? r->up : NULL;
    if (rc == TF_OK)
        rc = storage(s)->ops->hash_range(storage(s), r->body_fd, up, r->hashed_to, n,
                                         r->cur_hashing ? &r->cur : &r->digest, r->buf,
                                         XFER_BUF, &r->err);
    if (rc != TF_OK)
        return rc;
    r->hashed_to += n;
    atomic_fetch_add(s->ctx->prefix_hashed, n);
    return TF_OK;
}

static void hash_slice_work(session *s)
{
    s->req->disk_rc = hash_prefix_step(s);
}

static void continue_send(session *s);

/* Back from the disk pool: a chunk read (the copy path), entries of a
   listdir, or a slice hashed. */
static void read_work(session *s)
{
    request *r = s->req;
    int got = read_chunk(storage(s), r);
    r->disk_rc = got < 0 ? TF_ENOMEM : TF_OK;
}

static void walk_filled(session *s)
{
    request *r = s->req;
    if (r->walk_len)
        walk_queue(r, r->walk_len);
    continue_send(s);
}

static void read_done(session *s)
{
    if (s->req->disk_rc != TF_OK) {
        fail_session(s, TF_ENOMEM, "out of memory");
        return;
    }
    continue_send(s);
}

static void put_refuse(session *s, int rc);
static void put_decide(session *s);
static void stat_finish(session *s);

static void hash_sliced(session *s);

static void continue_send(session *s)
{
    request *r = s->req;
    if (r->hashed_to < r->prefix_to) {
        /* Hashed on the disk pool, a slice per job; the head goes out once
           the digest covers the prefix. */
        disk_call(s, hash_slice_work, hash_sliced);
        return;
    }
    if (r->cur_hashing) {
        /* The current version's digest is complete: remember it (so the
           next conditional put or get of this version hashes nothing), then
           decide the put with it. */
        r->cur_hashing = 0;
        r->prefix_to = r->hashed_to = 0;
        tf__digest_final(&r->cur, r->cur_digest);
        storage(s)->ops->digest_store(storage(s), r->body_fd, r->cur_digest, r->file_id);
        put_decide(s);
        return;
    }
    if (r->stat_pending)
        stat_finish(s);
    int rc = send_some(s);
    if (rc == 1)
        sent(s);
    else if (rc == 2 && r->want == WANT_WALK)
        disk_call(s, walk_work, walk_filled);
    else if (rc == 2)
        disk_call(s, read_work, read_done);
    else if (rc == 0 && watch(s, EPOLLOUT) != 0)
        fail_session(s, TF_ENET, "epoll failed");
}

static void hash_sliced(session *s)
{
    request *r = s->req;
    int hrc = r->disk_rc;
    if (hrc != TF_OK) {
        r->prefix_to = r->hashed_to = 0;
        if (r->cur_hashing) {
            r->cur_hashing = 0;
            put_refuse(s, hrc);
            return;
        }
        r->stat_pending = 0;
        reply_failure(s, hrc, AFTER_IDLE);
        return;
    }
    continue_send(s);
}

/* The longest name a request may carry: a path with the tree feature. */
static size_t request_max_name(const session *s)
{
    return (size_t)opts(s)->value[(s->features & TF_FEATURE_TREE) ? TF_OPT_MAX_PATH
                                                                   : TF_OPT_MAX_NAME_LEN];
}

/* Whether a whole get is buffered behind the request being answered: its
   answer follows at once (pipelined small gets), so this one may wait in
   the socket to share a segment with it (MSG_MORE). The last answer of a
   burst goes without, and pushes them all out; a get whose file needs the
   disk pool holds the ones before it for that one job. Only where small
   files are served from memory without the pool (read_cached): on a store
   where every get waits for it (S3), each answer would come a job late. */
static int get_follows(session *s)
{
    tf_wire_request q;
    return storage(s)->ops->read_cached && s->in_len >= TF_WIRE_REQUEST_SIZE &&
           s->in[0] == TF_OP_GET &&
           tf__wire_decode_request(s->in, s->in_len, request_max_name(s), &q) > 0 &&
           q.offset == 0;
}

/* A small response goes out in one sendmsg: head, body (read into the
   request's small buffer by read_small) and trailer. What the socket did
   not take is left to send_some: the head and trailer are in the request
   already, the rest of the body moves to its transfer buffer (the copy
   path). Returns -1 when the connection failed (s is closed). */
static int push_gathered(session *s)
{
    request *r = s->req;
    size_t body = (size_t)r->body_left;
    struct iovec iov[3] = {{r->head, r->head_len},
                           {r->small, body},
                           {r->tail, r->tail_len}};
    ssize_t k = tf__conn_writev(&s->conn, iov, 3, get_follows(s) ? TF__IO_MORE : 0);
    if (k == TF__IO_ERROR) {
        char why[128];
        snprintf(why, sizeof why, "send failed: %s", strerror(errno));
        fail_session(s, TF_ENET, why);
        return -1;
    }
    size_t left = k > 0 ? (size_t)k : 0;
    size_t head = left < r->head_len ? left : r->head_len;
    size_t data = left - head < body ? left - head : body;
    r->head_pos = head;
    r->body_off += data;
    r->body_left -= data;
    r->bytes += data;
    r->tail_pos = left - head - data;
    if (r->body_left > 0) {
        if (ensure_buf(r) != TF_OK) {
            fail_session(s, TF_ENOMEM, "out of memory");
            return -1;
        }
        memcpy(r->buf, r->small + data, body - data);
        r->buf_pos = 0;
        r->buf_end = body - data;
        r->copy_path = 1;
    }
    return left > 0 && progressed(s, left) ? -1 : 0;
}

static void start_send(session *s, after_send after)
{
    request *r = s->req;
    r->after = after;
    s->state = S_SEND;
    list_move(s, &s->ctx->active, tf__now_ms());
    /* Answers go out in request order: puts still in the session's group
       are answered first (group_send), before any other request is
       begun. One that would speak before them is a bug, not a reorder. */
    if ((r->head_len || r->body_left || r->has_trailer) && tf__group_pending(s->group) &&
        !r->grouped) {
        fail_session(s, TF_EINTERNAL, "an answer would overtake pipelined puts");
        return;
    }
    if (r->gathered && push_gathered(s) != 0)
        return;
    continue_send(s);
}

/* ---- group commit (groupcommit.h) ------------------------------------------------- */

/* A group is committed once its first put has waited this long, even
   while the client's pipeline keeps flowing: a slow link's puts are
   answered (and durable) as they go, not all at the end of the stream. */
#define GROUP_AGE_MS 200

/* Whether q may join the session's group: a pipelined put (NO_GOAHEAD)
   of known size, small enough, while the group has room and is young. */
static int group_takes(const session *s, const tf_wire_request *q)
{
    int64_t max = opts(s)->value[TF_OPT_GROUP_COMMIT];
    const tf__group *g = s->group;
    return max > 1 && q->op == TF_OP_PUT && (q->flags & TF_REQ_NO_GOAHEAD) &&
           !(q->flags & TF_REQ_STREAM) && tf__group_fits(g, q->size) &&
           tf__group_pending(g) < (size_t)max &&
           (!tf__group_pending(g) || tf__now_ms() - g->v[0].started_ms < GROUP_AGE_MS);
}

/* On the disk pool: the group's uploads made durable together (one job
   for the whole batch, however many puts). */
static void group_commit_work(session *s)
{
    tf__group_commit(s->group, storage(s));
}

/* Back in the loop: the answers, in order, to go before anything else
   the session sends (send_some), each logged; then sent by the request
   that waited for the commit (it says nothing of its own). */
static void group_committed(session *s)
{
    tf__group *g = s->group;
    int rc = TF_OK;
    for (size_t i = 0; i < g->n; i++) {
        const tf__group_entry *en = &g->v[i];
        const char *msg = tf__group_message(g, i);
        if (en->rc != TF_OK && !msg[0])
            msg = tf_strerror(en->rc);
        int code = code_for_peer(s, en->rc);
        size_t mlen = en->rc != TF_OK ? strlen(msg) : 0;
        if (mlen > TF_WIRE_MESSAGE_MAX)
            mlen = TF_WIRE_MESSAGE_MAX;
        tf_wire_response resp = {.op = TF_OP_PUT,
                                 .flags = en->rc == TF_OK ? en->resp_flags : 0,
                                 .status = tf__wire_status(code),
                                 .size = en->rc == TF_OK ? en->size : 0,
                                 .message = en->rc != TF_OK ? msg : NULL,
                                 .message_len = (uint16_t)mlen};
        uint8_t head[TF_WIRE_RESPONSE_SIZE + TF_WIRE_MESSAGE_MAX];
        long n = tf__wire_encode_response(head, sizeof head, &resp);
        if (rc == TF_OK)
            rc = tf__group_out_append(g, head, (size_t)n);
        log_entry(s, "put", tf__group_name(g, i), "", en->bytes, en->rc, msg, en->started_ms);
    }
    tf__group_clear(g);
    if (rc != TF_OK) {
        fail_session(s, TF_ENOMEM, "out of memory for the answers of pipelined puts");
        return;
    }
    start_send(s, AFTER_IDLE);
}

/* The batch ends (the client's pipeline paused, a request of another kind
   is next, or the group is full): one disk job commits it, then its
   answers go out; a request still buffered waits for sent(). The request
   begun here only carries them (not logged). */
static void group_send(session *s)
{
    request *r = request_begin(s, TF_OP_PUT);
    if (!r) {
        fail_session(s, TF_ENOMEM, "out of memory");
        return;
    }
    r->grouped = 1;
    disk_call(s, group_commit_work, group_committed);
}

/* A grouped put is over (its answer waits in the group): the next
   request, which may be buffered already. */
static void group_next(session *s)
{
    request_end(s, 0);
    enter_idle(s);
    if (watch(s, EPOLLIN) != 0) {
        tf__session_close(s);
        return;
    }
    parse_input(s);
}

/* Adds the current put's answer to the group: stored by the commit (up
   not NULL), or decided now (rc, with the request's message). */
static void group_put(session *s, int rc, uint8_t resp_flags)
{
    request *r = s->req;
    int arc;
    if (rc == TF_OK && (r->up || r->held)) {
        tf__commit_cond cond = {
            .overwrite = (r->putx & TF_REQ_IF_ABSENT) ? 0
                                                      : (int)opts(s)->value[TF_OPT_OVERWRITE],
            .expect_id = r->matched ? r->file_id : NULL,
            .set_mtime = (r->putx & TF_REQ_MTIME) != 0,
            .mtime_sec = r->mtime_sec,
            .mtime_nsec = r->mtime_nsec,
        };
        if (r->held)
            arc = tf__group_add_held(&s->group, &r->wbuf, r->wlen,
                                     (r->putx & TF_REQ_PARENTS) != 0, r->name, &cond, r->size,
                                     r->bytes, r->started_ms);
        else
            arc = tf__group_add(&s->group, &r->up, r->name, &cond, r->size, r->bytes,
                                r->started_ms);
    } else {
        storage(s)->ops->abort(storage(s), &r->up);
        arc = tf__group_add_decided(&s->group, r->name, rc, &r->err, resp_flags, r->size,
                                    r->bytes, r->started_ms);
    }
    if (arc != TF_OK) {
        fail_session(s, TF_ENOMEM, "out of memory");
        return;
    }
    r->grouped = 1;
    group_next(s);
}

/* The session ends with puts received and not answered: they are stored
   all the same (their trailers came whole), as a put whose answer could
   not be sent always was (tf__session_close commits them on the pool
   first, group_close_work); the log says what became of each. */
static void group_close_work(session *s)
{
    tf__group_commit(s->group, storage(s));
}

static void group_close(session *s)
{
    tf__group *g = s->group;
    if (tf__group_pending(g)) {
        if (!g->committed) /* the pool was stopping: no job ran it */
            tf__group_commit(g, storage(s));
        for (size_t i = 0; i < g->n; i++)
            log_entry(s, "put", tf__group_name(g, i), "", g->v[i].bytes, g->v[i].rc,
                      g->v[i].rc == TF_OK ? "" : tf__group_message(g, i), g->v[i].started_ms);
        tf__group_clear(g);
    }
    tf__group_free(g, storage(s));
    s->group = NULL;
}

/* ---- requests ------------------------------------------------------------------ */

static tf__path_limits path_limits(const session *s)
{
    const tf_options *opt = opts(s);
    tf__path_limits lim = {(size_t)opt->value[TF_OPT_MAX_NAME_LEN],
                           (size_t)opt->value[TF_OPT_MAX_DEPTH],
                           (size_t)opt->value[TF_OPT_MAX_PATH]};
    return lim;
}

/* A path of a TREE request (what = "path", "new path"): the path rules,
   TF_EACCES for the staging directory as any component. */
static int path_check(session *s, const char *p, size_t len, const char *what, tf__err *e)
{
    char why[TF__PATH_WHY_MAX];
    tf__path_limits lim = path_limits(s);
    int rc = tf__path_check_bytes(p, len, &lim, why, sizeof why);
    if (rc == TF_EINVAL)
        return tf__fail(e, rc, "bad %s: %s", what, why);
    if (rc != TF_OK)
        return tf__fail(e, rc, "%s", why);
    return TF_OK;
}

static int check_path(session *s, const char *p, size_t len, const char *what)
{
    return path_check(s, p, len, what, &s->req->err);
}

/* check_name's rules, with the reason in e (a get looked at ahead of its
   turn has no request of its own yet). */
static int name_check(session *s, const tf_wire_request *q, tf__err *e)
{
    if (s->features & TF_FEATURE_TREE)
        return path_check(s, q->name, q->name_len, "path", e);
    const char *why;
    size_t max = (size_t)opts(s)->value[TF_OPT_MAX_NAME_LEN];
    if (tf__name_check_bytes(q->name, q->name_len, max, &why) != TF_OK)
        return tf__fail(e, TF_EINVAL, "bad name: %s (at most %zu bytes)", why, max);
    /* A valid name, but the storage's own: never served nor replaced. */
    const char *own = storage(s)->reserved;
    if (own && q->name_len == strlen(own) && memcmp(q->name, own, q->name_len) == 0)
        return tf__fail(e, TF_EACCES,
                        "\"%s\" is reserved for the server's uploads in progress", own);
    return TF_OK;
}

static int check_name(session *s, const tf_wire_request *q)
{
    return name_check(s, q, &s->req->err);
}

/* Whether a decoded request is one this version can serve. Anything else
   leaves the stream in an unknown state: the reply closes the connection. */
static int request_valid(session *s, const tf_wire_request *q)
{
    tf__err *e = &s->req->err;
    int resume = (s->features & TF_FEATURE_RESUME) != 0;
    const tree_op *t = (s->features & TF_FEATURE_TREE) ? find_tree_op(q->op) : NULL;
    if (t) {
        if (q->flags & ~t->flags)
            return tf__fail(e, TF_EPROTO, "unknown %s flags 0x%02x", t->label,
                            (unsigned)q->flags);
        if (q->offset != 0)
            return tf__fail(e, TF_EPROTO, "an offset needs get and resume");
        size_t to_len;
        tf__wire_request_to(q, &to_len);
        if (q->op == TF_OP_RENAME ? to_len == 0 : q->size != 0)
            return tf__fail(e, TF_EPROTO, q->op == TF_OP_RENAME
                                              ? "a rename's size is its new path's length, "
                                                "1..4096"
                                              : "a size is only allowed on put and rename");
        return TF_OK;
    }
    if (q->op != TF_OP_GET && q->op != TF_OP_PUT && q->op != TF_OP_LIST)
        return tf__fail(e, TF_EPROTO, "unknown operation %u", (unsigned)q->op);
    uint8_t known = TF_REQ_UPLOAD_KEY | TF_REQ_STREAM;
    if (q->op == TF_OP_PUT && (s->features & TF_FEATURE_PUTX))
        known |= TF_REQ_PUTX_MASK;
    if (q->flags & ~known)
        return tf__fail(e, TF_EPROTO, "unknown request flags 0x%02x", (unsigned)q->flags);
    /* A pipelined put's payload follows at once: from byte 0, of a known
       size, so never resumed nor streamed. */
    if ((q->flags & TF_REQ_NO_GOAHEAD) && (q->flags & (TF_REQ_UPLOAD_KEY | TF_REQ_STREAM)))
        return tf__fail(e, TF_EPROTO, "no-go-ahead excludes an upload key and streaming");
    if ((q->flags & TF_REQ_SKIP_SAME) && (q->flags & TF_REQ_STREAM))
        return tf__fail(e, TF_EPROTO, "skip-if-same needs the size and digest up front");
    if ((q->flags & TF_REQ_UPLOAD_KEY) && (q->op != TF_OP_PUT || !resume))
        return tf__fail(e, TF_EPROTO, "an upload key needs put and resume");
    if ((q->flags & TF_REQ_STREAM) &&
        (q->op != TF_OP_PUT || !(s->features & TF_FEATURE_STREAM) ||
         (q->flags & TF_REQ_UPLOAD_KEY) || q->size != 0))
        return tf__fail(e, TF_EPROTO, "a streamed upload needs put, the stream feature, "
                                      "size 0 and no upload key");
    if (q->offset != 0 && (q->op != TF_OP_GET || !resume))
        return tf__fail(e, TF_EPROTO, "an offset needs get and resume");
    if (q->op != TF_OP_PUT && q->size != 0)
        return tf__fail(e, TF_EPROTO, "a size is only allowed on put");
    return TF_OK;
}

/* Reads a whole small file into the request's small buffer (kept with the
   request for the next one) and hashes it, for push_gathered. Returns 0
   when it cannot (no memory, the file changed size): the general path
   then sends it, or says what went wrong. */
static int read_small(session *s, uint64_t size)
{
    request *r = s->req;
    if (!r->small && !(r->small = malloc(SMALL_BODY_MAX)))
        return 0;
    tf__storage *st = storage(s);
    ssize_t n = size ? st->ops->read_at(st, r->body_fd, r->small, (size_t)size, 0) : 0;
    if (n != (ssize_t)size)
        return 0;
    tf__digest_update(&r->digest, r->small, (size_t)size);
    r->gathered = 1;
    return 1;
}

/* A get's storage work (on the disk pool): the file opened, a small one
   read whole, a remembered digest looked up. */
static void get_open_work(session *s)
{
    request *r = s->req;
    tf__storage *st = storage(s);
    r->disk_rc = st->ops->open_read(st, r->name, &r->body_fd, &r->disk_size, r->file_id,
                                    &r->err);
    if (r->disk_rc != TF_OK)
        return;
    if (r->body_off == 0 && r->disk_size <= SMALL_BODY_MAX && read_small(s, r->disk_size))
        return;
    if (tf__digest_on(&r->digest)) {
        r->cached = st->ops->digest_load(st, r->body_fd, r->file_id, r->cached_digest);
        if (!r->cached)
            r->disk_rc = ensure_buf(r);
    }
}

static void get_opened(session *s);

/* ---- gets opened ahead (getahead.h) ---- */

static int grow_input(session *s, size_t need);

/* The input a session looks ahead into while it serves a get: the small
   buffer holds about three pipelined gets. */
#define AHEAD_INPUT ((size_t)4 << 10)

/* A job of s's gets ahead is over (see disk_enter): the session waiting
   for it goes on; a closed one finishes closing after the last. */
static void ahead_done(void *user, int head_ready)
{
    session *s = user;
    s->ctx->disk_inflight--;
    if (head_ready && s->disk && !s->disk->fn)
        disk_done(&s->disk->work, TF_OK);
    else if (s->dead && !s->disk && !tf__ahead_busy(s->ahead))
        close_now(s);
}

/* Opens ahead (tf__ahead_submit) the plain gets that follow in s's input
   buffer, up to the bounds: only on a store whose calls wait on the
   network (the local backend's opens cost less than a job), and only
   what the client has sent. */
static void ahead_fill(session *s)
{
    tf__session_ctx *ctx = s->ctx;
    if (!storage(s)->network || !ctx->ahead_held || !ctx->disk_queue.on || !s->in_len ||
        opts(s)->value[TF_OPT_GET_AHEAD] <= 0)
        return;
    if (!s->ahead) {
        tf__ahead_config cfg = {.pool = ctx->disk_pool,
                                .queue = &ctx->disk_queue.q,
                                .per_conn = (size_t)opts(s)->value[TF_OPT_GET_AHEAD],
                                .held = ctx->ahead_held,
                                .held_max = ctx->ahead_max,
                                .small_max = SMALL_BODY_MAX,
                                .on_done = ahead_done,
                                .user = s};
        if (tf__ahead_new(&s->ahead, &cfg) != TF_OK)
            return;
    }
    if (s->in_cap < AHEAD_INPUT && grow_input(s, AHEAD_INPUT) != 0)
        return;
    if (s->in_len < s->in_cap) {
        /* The peer's end or an error: found again by the next read. */
        ssize_t n = tf__conn_read(&s->conn, s->in + s->in_len, s->in_cap - s->in_len);
        if (n > 0) {
            s->in_len += (size_t)n;
            s->window_bytes += (size_t)n;
        }
    }
    size_t off = 0, seen = 0, max_name = request_max_name(s);
    while (off < s->in_len) {
        tf_wire_request q;
        tf__err e;
        long n = tf__wire_decode_request(s->in + off, s->in_len - off, max_name, &q);
        if (n <= 0 || q.op != TF_OP_GET || q.flags || q.offset || q.size ||
            name_check(s, &q, &e) != TF_OK)
            break;
        off += (size_t)n;
        if (seen++ < tf__ahead_count(s->ahead))
            continue; /* ahead already */
        if (!tf__ahead_submit(s->ahead, storage(s), q.name, q.name_len,
                              (s->features & TF_FEATURE_CHECKSUM) != 0))
            break;
        ctx->disk_inflight++;
    }
}

/* What get_open_work leaves in the request, from the get opened ahead. */
static void ahead_opened(session *s)
{
    request *r = s->req;
    tf__ahead_got g;
    tf__ahead_take(s->ahead, &g);
    r->disk_rc = g.rc;
    if (g.rc != TF_OK)
        r->err = g.err;
    r->body_fd = g.fd;
    r->disk_size = g.size;
    memcpy(r->file_id, g.id, sizeof r->file_id);
    if (g.data) {
        if (r->small || (r->small = malloc(SMALL_BODY_MAX))) {
            memcpy(r->small, g.data, (size_t)g.size);
            tf__digest_update(&r->digest, r->small, (size_t)g.size);
            r->gathered = 1;
        } else {
            r->disk_rc = tf__fail(&r->err, TF_ENOMEM, "out of memory");
        }
        free(g.data);
    } else if (g.rc == TF_OK && tf__digest_on(&r->digest)) {
        r->cached = g.cached;
        memcpy(r->cached_digest, g.digest, sizeof r->cached_digest);
        if (!r->cached)
            r->disk_rc = ensure_buf(r);
    }
    get_opened(s);
}

/* The get in flight, if it was opened ahead: answered from there, now or
   once its job is over (1), else 0 (every get ahead is forgotten when it
   is not the one foreseen). */
static int ahead_use(session *s)
{
    request *r = s->req;
    int head = tf__ahead_head(s->ahead, r->name);
    if (head == 0 || r->body_off != 0) {
        if (tf__ahead_count(s->ahead))
            tf__ahead_drop(s->ahead);
        return 0;
    }
    ahead_fill(s); /* the window moves on */
    if (head == 1)
        ahead_opened(s);
    else if (!disk_enter(s, NULL, ahead_opened))
        fail_session(s, TF_ENOMEM, "out of memory");
    return 1;
}

/* A small file whose every byte is in memory already is sent at once: a
   job of the disk pool would cost more than the read (two thread hand-offs
   and ten system calls more per 4 KiB get). Returns 1 when it was. */
static int get_small_cached(session *s)
{
    request *r = s->req;
    tf__storage *st = storage(s);
    size_t len;
    if (!st->ops->read_cached || (!r->small && !(r->small = malloc(SMALL_BODY_MAX))) ||
        !st->ops->read_cached(st, r->name, r->small, SMALL_BODY_MAX, &len))
        return 0;
    tf__digest_update(&r->digest, r->small, len);
    r->gathered = 1;
    r->disk_size = len;
    r->disk_rc = TF_OK;
    return 1;
}

static void handle_get(session *s, const tf_wire_request *q)
{
    int rc = check_name(s, q);
    if (rc != TF_OK) {
        reply_failure(s, rc, AFTER_IDLE);
        return;
    }
    s->req->body_off = q->offset;
    if (ahead_use(s))
        return;
    if (q->offset == 0 && get_small_cached(s)) {
        get_opened(s);
        return;
    }
    disk_call(s, get_open_work, get_opened);
    if (s->disk)
        ahead_fill(s); /* after the job of the get in flight: first in the queue */
}

static void get_opened(session *s)
{
    request *r = s->req;
    uint64_t size = r->disk_size, off = r->body_off;
    uint8_t flags = 0;
    int rc = r->disk_rc;
    r->body_off = 0;
    if (rc == TF_OK && r->gathered) {
        queue_head(s, TF_OK, size, 0, NULL);
        r->body_left = size;
        r->has_trailer = 1;
        build_trailer(s);
        start_send(s, AFTER_IDLE);
        return;
    }
    if (rc == TF_OK && off > size) {
        /* Shorter than the client's partial copy: it changed; send it whole. */
        flags |= TF_RESP_FROM_START;
        off = 0;
    }
    if (rc != TF_OK) {
        reply_failure(s, rc, AFTER_IDLE);
        return;
    }
    queue_head(s, TF_OK, size - off, flags, NULL);
    r->body_off = off;
    /* The checksum covers the whole file, resumed or not: the prefix is
       hashed before the head goes out (continue_send), in slices. */
    if (off && tf__digest_on(&r->digest) && !r->cached)
        r->prefix_to = off;
    else
        r->hashed_to = off;
    r->body_left = size - off;
    r->has_trailer = 1;
    /* A backend's own read handles (S3) are no descriptors: never sendfile. */
    r->copy_path = storage(s)->read_handles;
    start_send(s, AFTER_IDLE);
}

/* The resumable temporary for an upload key, name and size: a digest of
   the three, so one key cannot reach another name's upload, and bytes kept
   for one size are never resumed for another (a changed file). */
static void resume_stem(const request *r, char *out, size_t len)
{
    tf__digest d = {0};
    uint8_t h[TF_DIGEST_SIZE];
    out[0] = '\0';
    if (tf__digest_begin(&d, 1) != TF_OK)
        return;
    tf__digest_update(&d, r->key, TF_UPLOAD_KEY_SIZE);
    tf__digest_update(&d, r->name, strlen(r->name));
    uint8_t size[8];
    for (int i = 0; i < 8; i++)
        size[i] = (uint8_t)(r->size >> (56 - 8 * i));
    tf__digest_update(&d, size, sizeof size);
    tf__digest_final(&d, h);
    tf__digest_end(&d);
    for (int i = 0; i < TF_DIGEST_SIZE && (size_t)(2 * i + 2) < len; i++)
        snprintf(out + 2 * i, len - 2 * (size_t)i, "%02x", h[i]);
}

/* Into the payload: with NO_GOAHEAD at once (no head goes out: the send
   step finds nothing to send and moves on), else after the go-ahead. */
static void put_receive(session *s, int goahead)
{
    request *r = s->req;
    r->left = r->size - r->have;
    if (goahead)
        queue_head(s, TF_OK, r->have, 0, NULL); /* go ahead, from byte `have` */
    start_send(s, AFTER_RECV_BODY);
}

/* Refuses a put. With NO_GOAHEAD its payload and trailer are on their way:
   they are read and dropped (timed as a request in flight), then the
   refusal is the answer, so the connection stays in step. */
static void put_refuse(session *s, int rc)
{
    request *r = s->req;
    if (r->body_fd >= 0) {
        storage(s)->ops->close_read(storage(s), r->body_fd);
        r->body_fd = -1;
    }
    if (!(r->putx & TF_REQ_NO_GOAHEAD)) {
        reply_failure(s, rc, AFTER_IDLE);
        return;
    }
    if (ensure_buf(r) != TF_OK) {
        fail_session(s, TF_ENOMEM, "out of memory");
        return;
    }
    r->drain = 1;
    r->drain_rc = rc;
    storage(s)->ops->abort(storage(s), &r->up);
    r->have = 0;
    put_receive(s, 0);
}

/* The second half of a put, once the current version's digest is known
   (IF_MATCH, SKIP_SAME): the conditions, skip-if-same, the parents, the
   target and the staging, then the go-ahead (or straight into the payload
   with NO_GOAHEAD). */
static void put_same(session *s);
static void put_mtime_work(session *s);
static void put_stage_work(session *s);
static void put_staged(session *s);
static void put_hold(session *s);

static void put_decide(session *s)
{
    request *r = s->req;
    tf__storage *st = storage(s);
    int rc = TF_OK;
    if (r->putx & TF_REQ_IF_MATCH) {
        if (!r->cur_exists)
            rc = tf__fail(&r->err, TF_ECONFLICT,
                          "\"%s\" does not exist, so it is not the version named", r->name);
        else if (memcmp(r->cur_digest, r->if_match, TF_DIGEST_SIZE) != 0)
            rc = tf__fail(&r->err, TF_ECONFLICT,
                          "\"%s\" is not the version named (its digest differs)", r->name);
        else
            r->matched = 1; /* file_id: the version commit_cond checks again */
    }
    if (rc == TF_OK && (r->putx & TF_REQ_SKIP_SAME) && r->cur_exists &&
        r->cur_size == r->size && memcmp(r->cur_digest, r->same, TF_DIGEST_SIZE) == 0) {
        storage(s)->ops->close_read(st, r->body_fd);
        r->body_fd = -1;
        r->disk_rc = TF_OK;
        if (r->putx & TF_REQ_MTIME)
            disk_call(s, put_mtime_work, put_same);
        else
            put_same(s);
        return;
    }
    if (r->body_fd >= 0) {
        st->ops->close_read(st, r->body_fd);
        r->body_fd = -1;
    }
    if (rc != TF_OK) {
        put_refuse(s, rc);
        return;
    }
    if (r->grouped && !r->keyed && tf__group_can_hold(s->group, r->size)) {
        put_hold(s);
        return;
    }
    disk_call(s, put_stage_work, put_staged);
}

/* A small grouped put: no job of its own. Its payload is kept whole in
   memory and given to the group, whose commit job stages, writes and
   publishes it with the others (tf__group_commit); the target is checked
   there, at the publishing, as it always is. */
static void put_hold(session *s)
{
    request *r = s->req;
    if (ensure_buf(r) != TF_OK || !(r->wbuf = malloc(r->size ? (size_t)r->size : 1))) {
        fail_session(s, TF_ENOMEM, "out of memory");
        return;
    }
    r->held = 1;
    put_receive(s, 0);
}

/* SKIP_SAME found the bytes there (MTIME: given their time first). */
static void put_same(session *s)
{
    request *r = s->req;
    if (r->disk_rc != TF_OK) {
        put_refuse(s, r->disk_rc);
        return;
    }
    r->same_hit = 1;
    if (r->putx & TF_REQ_NO_GOAHEAD) {
        r->drain = 1;
        if (ensure_buf(r) != TF_OK) {
            fail_session(s, TF_ENOMEM, "out of memory");
            return;
        }
        put_receive(s, 0);
        return;
    }
    /* Already there: this answer ends the put, no payload follows. */
    r->result = TF_OK;
    queue_head(s, TF_OK, r->size, TF_RESP_SAME, NULL);
    start_send(s, AFTER_IDLE);
}

static void put_mtime_work(session *s)
{
    request *r = s->req;
    tf__storage *st = storage(s);
    r->disk_rc = st->ops->set_mtime(st, r->name, r->mtime_sec, r->mtime_nsec, &r->err);
}

/* On the disk pool: the parents, the target, the staging. */
static void put_stage_work(session *s)
{
    request *r = s->req;
    tf__storage *st = storage(s);
    const tf_options *opt = opts(s);
    int rc = TF_OK;
    if (r->putx & TF_REQ_PARENTS)
        rc = tf__storage_make_parents(st, r->name, &r->err);
    /* Refuse before the data moves, not after. */
    if (rc == TF_OK)
        rc = st->ops->check_target(st, r->name,
                                   (r->putx & TF_REQ_IF_ABSENT)
                                       ? 0
                                       : (int)opt->value[TF_OPT_OVERWRITE],
                                   &r->err);
    if (rc == TF_OK)
        rc = ensure_buf(r);
    if (rc == TF_OK && r->keyed) {
        char stem[2 * TF_DIGEST_SIZE + 1];
        resume_stem(r, stem, sizeof stem);
        rc = st->ops->stage_resumable(st, stem, r->size, &r->up, &r->have, &r->has_key,
                                      &r->err);
    } else if (rc == TF_OK) {
        rc = st->ops->stage_named ? st->ops->stage_named(st, r->name, &r->up, &r->err)
                                  : st->ops->stage(st, &r->up, &r->err);
    }
    r->disk_rc = rc;
}

static void put_staged(session *s)
{
    request *r = s->req;
    if (r->disk_rc == TF_OK && s->ctx->disk_queue.on && !(r->wbuf = malloc(XFER_BUF)))
        r->disk_rc = tf__fail(&r->err, TF_ENOMEM, "out of memory");
    if (r->disk_rc != TF_OK) {
        put_refuse(s, r->disk_rc);
        return;
    }
    /* The partial's bytes go into the digest before the go-ahead, in
       slices (continue_send). */
    if (r->have && tf__digest_on(&r->digest))
        r->prefix_to = r->have;
    put_receive(s, !(r->putx & TF_REQ_NO_GOAHEAD));
}

/* IF_ABSENT, checked before the data moves (and again at the commit). */
static int check_absent(session *s)
{
    request *r = s->req;
    tf__fstat fs;
    tf__err quiet = {{0}};
    int rc = storage(s)->ops->stat(storage(s), r->name, &fs, &quiet);
    if (rc == TF_OK)
        return tf__fail(&r->err, TF_EEXIST, "\"%s\" already exists (if-absent)", r->name);
    if (rc == TF_ENOENT || rc == TF_ENOTDIR)
        return TF_OK; /* absent; a parent in the way fails at the target check */
    tf__err_take(&r->err, &quiet);
    return rc;
}

/* IF_MATCH and SKIP_SAME need the current version and its digest: the
   remembered one, or one computed in slices (continue_send) before the
   put is decided. Returns 1 when the hashing has started. */
static int open_current(session *s, int *rc)
{
    request *r = s->req;
    tf__storage *st = storage(s);
    tf__err quiet = {{0}};
    int orc = st->ops->open_read(st, r->name, &r->body_fd, &r->cur_size, r->file_id, &quiet);
    if (orc != TF_OK) {
        r->body_fd = -1;
        /* Nothing (or nothing readable) there: not the version IF_MATCH
           names, and not the same bytes; the target check says the rest. */
        return 0;
    }
    r->cur_exists = 1;
    if (st->ops->digest_load(st, r->body_fd, r->file_id, r->cur_digest))
        return 0;
    if (tf__digest_begin(&r->cur, 1) != TF_OK) {
        *rc = tf__fail(&r->err, TF_ENOMEM, "out of memory");
        return 0;
    }
    r->cur_hashing = 1;
    r->hashed_to = 0;
    r->prefix_to = r->cur_size; /* 0: continue_send decides at once */
    return 1;
}

static void put_probe_work(session *s);
static void put_probed(session *s);

static void handle_put(session *s, const tf_wire_request *q)
{
    request *r = s->req;
    const tf_options *opt = opts(s);
    uint64_t max_upload = (uint64_t)opt->value[TF_OPT_MAX_UPLOAD];
    tf__storage *st = storage(s);
    /* Kept in the request: deciding may wait for a digest. */
    r->putx = q->flags & TF_REQ_PUTX_MASK;
    r->size = q->size;
    r->stream = (q->flags & TF_REQ_STREAM) != 0;
    if (q->key) {
        r->keyed = 1;
        memcpy(r->key, q->key, TF_UPLOAD_KEY_SIZE);
    }
    if (q->if_match)
        memcpy(r->if_match, q->if_match, TF_DIGEST_SIZE);
    if (q->same)
        memcpy(r->same, q->same, TF_DIGEST_SIZE);
    r->mtime_sec = q->mtime_sec;
    r->mtime_nsec = q->mtime_nsec;
    r->grouped = group_takes(s, q);
    int rc = check_name(s, q);
    if (rc == TF_OK && (r->putx & TF_REQ_IF_ABSENT) && (r->putx & TF_REQ_IF_MATCH))
        rc = tf__fail(&r->err, TF_EINVAL, "if-absent and if-match exclude each other");
    if (rc == TF_OK && (r->putx & TF_REQ_MTIME) && r->mtime_nsec >= 1000000000u)
        rc = tf__fail(&r->err, TF_EINVAL, "mtime nanoseconds %u out of range",
                      (unsigned)r->mtime_nsec);
    if (rc == TF_OK && r->putx && (!st->ops->commit_cond || !st->ops->set_mtime))
        rc = tf__fail(&r->err, TF_EINTERNAL, "this storage does not take put extensions");
    if (rc == TF_OK && opt->value[TF_OPT_READ_ONLY])
        rc = tf__fail(&r->err, TF_EACCES, "the server is read-only");
    if (rc == TF_OK && max_upload && q->size > max_upload)
        rc = tf__fail(&r->err, TF_ETOOBIG, "%llu bytes is over the upload limit of %llu",
                      (unsigned long long)q->size, (unsigned long long)max_upload);
    if (rc != TF_OK) {
        put_refuse(s, rc);
        return;
    }
    if (r->putx & (TF_REQ_IF_ABSENT | TF_REQ_IF_MATCH | TF_REQ_SKIP_SAME))
        disk_call(s, put_probe_work, put_probed);
    else
        put_decide(s);
}

/* On the disk pool: IF_ABSENT's look, the current version for IF_MATCH
   and SKIP_SAME. */
static void put_probe_work(session *s)
{
    request *r = s->req;
    int rc = TF_OK;
    r->disk_size = 0; /* 1: the current version's digest is to be hashed */
    if (r->putx & TF_REQ_IF_ABSENT)
        rc = check_absent(s);
    if (rc == TF_OK && (r->putx & (TF_REQ_IF_MATCH | TF_REQ_SKIP_SAME)))
        r->disk_size = (uint64_t)open_current(s, &rc);
    r->disk_rc = rc;
}

static void put_probed(session *s)
{
    request *r = s->req;
    if (r->disk_rc != TF_OK) {
        put_refuse(s, r->disk_rc);
        return;
    }
    if (r->disk_size) {
        /* The send state drives the slices (continue_send), one per turn of
           the loop; nothing is sent until put_decide. */
        start_send(s, AFTER_IDLE);
        return;
    }
    put_decide(s);
}

/* Takes len bytes of the server's listing budget (TF_OPT_MAX_MEMORY) for
   this request's encoded listing, which it holds until the client has read
   it all - at the minimum rate, that can be long. Over the budget it is
   TF_EBUSY, try again later; one listing alone is always allowed, or a
   root whose listing is over the budget could never be listed. */
static int list_reserve(session *s, size_t len)
{
    uint64_t budget = (uint64_t)opts(s)->value[TF_OPT_MAX_MEMORY];
    uint64_t before = atomic_fetch_add(s->ctx->list_bytes, (uint64_t)len);
    if (before > 0 && before + len > budget) {
        atomic_fetch_sub(s->ctx->list_bytes, (uint64_t)len);
        return tf__fail(&s->req->err, TF_EBUSY,
                        "the server is sending too many listings (%llu bytes held, at most "
                        "%llu); try again later",
                        (unsigned long long)before, (unsigned long long)budget);
    }
    s->req->list_held = len;
    return TF_OK;
}

/* On the disk pool: the root's listing, scanned and encoded into r->list. */
static void list_work(session *s)
{
    request *r = s->req;
    const tf_options *opt = opts(s);
    tf_listing *l = NULL;
    size_t len = 0;
    int rc = tf__storage_scan(storage(s), (size_t)opt->value[TF_OPT_MAX_LIST_ENTRIES],
                              (size_t)opt->value[TF_OPT_MAX_NAME_LEN], &l, &r->err);
    if (rc == TF_OK) {
        len = tf__wire_list_size(l);
        rc = list_reserve(s, len);
    }
    if (rc == TF_OK) {
        r->list = malloc(len);
        if (!r->list)
            rc = tf__fail(&r->err, TF_ENOMEM, "out of memory encoding the listing");
        else if (tf__wire_encode_list(r->list, len, l) < 0)
            rc = tf__fail(&r->err, TF_EINTERNAL, "cannot encode the listing");
    }
    tf_listing_free(l);
    r->disk_rc = rc;
    r->disk_size = len;
}

static void list_done(session *s)
{
    request *r = s->req;
    if (r->disk_rc != TF_OK) {
        reply_failure(s, r->disk_rc, AFTER_IDLE);
        return;
    }
    queue_head(s, TF_OK, r->disk_size, 0, NULL);
    r->body_mem = r->list;
    r->body_left = r->disk_size;
    r->has_trailer = 1;
    start_send(s, AFTER_IDLE);
}

static void handle_list(session *s, const tf_wire_request *q)
{
    if (q->name_len) {
        tf__fail(&s->req->err, TF_EINVAL, "list takes no name");
        reply_failure(s, TF_EINVAL, AFTER_IDLE);
        return;
    }
    disk_call(s, list_work, list_done);
}

/* ---- receiving a put ------------------------------------------------------------ */

static void store(tf__storage *st, request *r, const uint8_t *p, size_t n)
{
    tf__digest_update(&r->digest, p, n);
    /* A write failure (a full disk) does not stop the reading: the rest is
       drained so the stream stays in step, and the client hears why. The
       bytes are written on the disk pool (flush_writes): even the local
       disk's write(2) and its writeback start stall for tens of ms under
       dirty-page throttling (README, "Where the disk work runs"). */
    if (r->store_rc == TF_OK && !r->drain && r->wbuf) {
        memcpy(r->wbuf + r->wlen, p, n);
        r->wlen += n;
    } else if (r->store_rc == TF_OK && !r->drain) {
        r->store_rc = st->ops->write(st, r->up, p, n, &r->store_err);
    }
    if (!r->stream)
        r->left -= n;
    r->bytes += n;
}

static void put_commit_work(session *s);
static void put_committed(session *s);

static void receive_body(session *s);

/* On the disk pool: the bytes store gathered. */
static void write_work(session *s)
{
    request *r = s->req;
    if (r->store_rc == TF_OK)
        r->store_rc = storage(s)->ops->write(storage(s), r->up, r->wbuf, r->wlen, &r->store_err);
    r->wlen = 0;
}

/* The payload is written on the disk pool, the bytes of one read at a
   time, handed over in wbuf (the socket is not read meanwhile). Returns 1
   when a job took them: receive_body runs again after it. */
static int flush_writes(session *s)
{
    if (!s->req->wlen || s->req->held)
        return 0;
    disk_call(s, write_work, receive_body);
    return 1;
}

static void finish_put(session *s, int verdict, const tf__err *verdict_err)
{
    request *r = s->req;
    if (r->grouped && r->drain) {
        r->grouped = 0;
        group_put(s, r->same_hit ? TF_OK : r->drain_rc, r->same_hit ? TF_RESP_SAME : 0);
        return;
    }
    if (r->drain) {
        /* A pipelined put decided before its payload came: the payload was
           dropped, and the answer is that decision, whatever the trailer. */
        if (!r->same_hit) {
            reply_failure(s, r->drain_rc, AFTER_IDLE);
            return;
        }
        r->result = TF_OK;
        queue_head(s, TF_OK, r->size, TF_RESP_SAME, NULL);
        start_send(s, AFTER_IDLE);
        return;
    }
    int rc = r->store_rc;
    if (verdict != TF_OK) {
        rc = verdict;
        tf__err_take(&r->err, verdict_err);
    } else if (rc != TF_OK) {
        tf__err_take(&r->err, &r->store_err);
    }
    if (r->grouped) {
        r->grouped = 0; /* set again once the group holds its answer */
        group_put(s, rc, 0);
        return;
    }
    r->disk_rc = rc;
    disk_call(s, put_commit_work, put_committed);
}

/* On the disk pool: publishes the upload (fsync, rename), or removes it
   when disk_rc says it failed. */
static void put_commit_work(session *s)
{
    request *r = s->req;
    int rc = r->disk_rc;
    /* The digest just verified is not remembered: the file was written a
       moment ago, and an in-place change within the same clock tick, at
       the same size, would leave the same timestamps and a stale digest
       that every later get would fail on. The first get after it has
       settled remembers it (build_trailer). */
    int overwrite = (int)opts(s)->value[TF_OPT_OVERWRITE];
    if (rc == TF_OK && r->putx) {
        tf__commit_cond cond = {
            .overwrite = (r->putx & TF_REQ_IF_ABSENT) ? 0 : overwrite,
            .expect_id = r->matched ? r->file_id : NULL,
            .set_mtime = (r->putx & TF_REQ_MTIME) != 0,
            .mtime_sec = r->mtime_sec,
            .mtime_nsec = r->mtime_nsec,
        };
        rc = storage(s)->ops->commit_cond(storage(s), &r->up, r->name, &cond, &r->err);
    } else if (rc == TF_OK) {
        rc = storage(s)->ops->commit(storage(s), &r->up, r->name, overwrite, &r->err);
    } else
        storage(s)->ops->abort(storage(s), &r->up);
    r->disk_rc = rc;
}

static void put_committed(session *s)
{
    request *r = s->req;
    if (r->disk_rc != TF_OK) {
        reply_failure(s, r->disk_rc, AFTER_IDLE);
        return;
    }
    r->result = TF_OK;
    queue_head(s, TF_OK, r->size, 0, NULL);
    start_send(s, AFTER_IDLE);
}

static void receive_trailer(session *s)
{
    request *r = s->req;
    tf_wire_trailer t;
    long n = tf__wire_decode_trailer(s->in, s->in_len, &t);
    if (n == TF_WIRE_NEED_MORE)
        return;
    if (n < 0) {
        /* Not a trailer that ends this upload cleanly: what came before it
           is not to be trusted, so not kept for resuming either. */
        storage(s)->ops->abort(storage(s), &r->up);
        fail_session(s, TF_EPROTO, "malformed trailer");
        return;
    }
    int verdict = TF_OK;
    tf__err verdict_err = {{0}};
    if (t.status != 0) {
        verdict = tf__wire_code(t.status);
        tf__fail(&verdict_err, verdict, "the client abandoned the upload: %s",
                 tf_strerror(verdict));
    } else if (tf__digest_on(&r->digest) != (t.digest_len == TF_DIGEST_SIZE) ||
               (t.digest_len && t.digest_len != TF_DIGEST_SIZE)) {
        /* Well framed but not what was negotiated: say so, then close. */
        consume_input(s, (size_t)n);
        storage(s)->ops->abort(storage(s), &r->up);
        tf__fail(&r->err, TF_EPROTO, "the trailer does not carry the negotiated checksum");
        if (r->grouped) { /* an answer now would overtake the group's */
            fail_session(s, TF_EPROTO, r->err.msg);
            return;
        }
        reply_failure(s, TF_EPROTO, AFTER_CLOSE);
        return;
    } else if (t.digest_len) {
        uint8_t mine[TF_DIGEST_SIZE];
        tf__digest_final(&r->digest, mine);
        if (memcmp(mine, t.digest, TF_DIGEST_SIZE) != 0)
            verdict = tf__fail(&verdict_err, TF_ECHECKSUM,
                               "checksum mismatch: the upload was corrupted in transit");
    }
    consume_input(s, (size_t)n);
    finish_put(s, verdict, &verdict_err);
}

static void enter_trailer(session *s)
{
    s->state = S_RECV_TRAILER;
    receive_trailer(s);
}

/*
 * A streamed put's payload (TF_REQ_STREAM): chunks, each a u32 length and
 * that many bytes, until a length 0. Takes what it can of p[0..n) and
 * returns how much; stops right after the zero-length head, so that what
 * follows (the trailer) stays for the input buffer. The upload limit is
 * checked on each chunk's head, before its bytes are stored; going over it
 * (or a malformed head) replies and closes at once, since the stream's
 * end may be far: -1 then.
 */
static long stream_take(session *s, const uint8_t *p, size_t n)
{
    request *r = s->req;
    uint64_t max_upload = (uint64_t)opts(s)->value[TF_OPT_MAX_UPLOAD];
    size_t took = 0;
    while (took < n && !r->stream_end) {
        if (r->chunk_left) {
            size_t k = n - took < r->chunk_left ? n - took : r->chunk_left;
            store(storage(s), r, p + took, k);
            r->chunk_left -= (uint32_t)k;
            took += k;
            continue;
        }
        size_t k = TF_WIRE_CHUNK_HEAD_SIZE - r->chunk_head_len;
        k = n - took < k ? n - took : k;
        memcpy(r->chunk_head + r->chunk_head_len, p + took, k);
        r->chunk_head_len += k;
        took += k;
        if (r->chunk_head_len < TF_WIRE_CHUNK_HEAD_SIZE)
            break;
        r->chunk_head_len = 0;
        uint32_t len;
        int rc = TF_OK;
        if (tf__wire_decode_chunk_head(r->chunk_head, TF_WIRE_CHUNK_HEAD_SIZE, &len) < 0)
            rc = tf__fail(&r->err, TF_EPROTO, "a chunk longer than %u bytes",
                          (unsigned)TF_WIRE_CHUNK_MAX);
        else if (max_upload && r->bytes + len > max_upload)
            rc = tf__fail(&r->err, TF_ETOOBIG,
                          "the stream went over the upload limit of %llu bytes",
                          (unsigned long long)max_upload);
        if (rc != TF_OK) {
            storage(s)->ops->abort(storage(s), &r->up);
            reply_failure(s, rc, AFTER_CLOSE);
            return -1;
        }
        if (len == 0)
            r->stream_end = 1;
        r->chunk_left = len;
    }
    return (long)took;
}

static void receive_stream(session *s)
{
    request *r = s->req;
    if (s->in_len) {
        long k = stream_take(s, s->in, s->in_len);
        if (k < 0)
            return;
        consume_input(s, (size_t)k);
        if (flush_writes(s))
            return;
    }
    size_t budget = EVENT_BUDGET;
    while (!r->stream_end && budget > 0) {
        /* Never past the zero-length head: the trailer is the input's. */
        size_t want = r->chunk_left ? (r->chunk_left < XFER_BUF ? r->chunk_left : XFER_BUF)
                                    : TF_WIRE_CHUNK_HEAD_SIZE - r->chunk_head_len;
        ssize_t n = tf__conn_read(&s->conn, r->buf, want);
        if (n == TF__IO_AGAIN)
            return;
        if (n <= 0) {
            char why[160];
            snprintf(why, sizeof why,
                     "the client went away after %llu bytes of a streamed upload",
                     (unsigned long long)r->bytes);
            fail_session(s, TF_ENET, why);
            return;
        }
        if (stream_take(s, r->buf, (size_t)n) < 0)
            return;
        if (progressed(s, (size_t)n) || flush_writes(s))
            return;
        budget -= (size_t)n < budget ? (size_t)n : budget;
    }
    if (r->stream_end) {
        r->size = r->bytes;
        enter_trailer(s);
    }
}

static void receive_body(session *s)
{
    request *r = s->req;
    if (r->stream) {
        receive_stream(s);
        return;
    }
    /* Bytes that arrived with the request come first. */
    if (s->in_len && r->left) {
        size_t n = s->in_len < r->left ? s->in_len : (size_t)r->left;
        store(storage(s), r, s->in, n);
        consume_input(s, n);
        if (flush_writes(s))
            return;
    }
    size_t budget = EVENT_BUDGET;
    while (r->left > 0 && budget > 0) {
        size_t want = r->left < XFER_BUF ? (size_t)r->left : XFER_BUF;
        ssize_t n = tf__conn_read(&s->conn, r->buf, want);
        if (n == TF__IO_AGAIN)
            return;
        if (n <= 0) {
            char why[160];
            snprintf(why, sizeof why, "the client went away with %llu of %llu bytes sent%s",
                     (unsigned long long)(r->size - r->left), (unsigned long long)r->size,
                     r->has_key ? " (kept for resuming)" : "");
            fail_session(s, TF_ENET, why);
            return;
        }
        store(storage(s), r, r->buf, (size_t)n);
        if (progressed(s, (size_t)n) || flush_writes(s))
            return;
        budget -= (size_t)n < budget ? (size_t)n : budget;
    }
    if (r->left == 0)
        enter_trailer(s);
}

/* ---- users: logins and rights (issue 13) ---------------------------------------- */

static int grow_input(session *s, size_t need);

/* The right each operation needs: the one table every request passes
   (check_rights, from on_request), so that a new operation is covered by
   adding its line. An operation missing here needs write. */
static const struct {
    uint8_t op;
    int right;
} op_rights[] = {
    {TF_OP_GET, TF__ACCESS_READ},
    {TF_OP_LIST, TF__ACCESS_READ},
    {TF_OP_PUT, TF__ACCESS_WRITE},
    {TF_OP_STAT, TF__ACCESS_READ},
    {TF_OP_LISTDIR, TF__ACCESS_READ},
    {TF_OP_MKDIR, TF__ACCESS_WRITE},
    {TF_OP_REMOVE, TF__ACCESS_WRITE},
    {TF_OP_RENAME, TF__ACCESS_WRITE},
};

static int check_rights(session *s, uint8_t op)
{
    if (!s->ctx->auth)
        return TF_OK; /* a server without users serves everyone */
    if (!s->user)
        return tf__fail(&s->req->err, TF_EACCES, "authentication required");
    int need = TF__ACCESS_WRITE;
    for (size_t i = 0; i < sizeof op_rights / sizeof op_rights[0]; i++)
        if (op_rights[i].op == op)
            need = op_rights[i].right;
    if (need == TF__ACCESS_WRITE && s->user->info.access != TF__ACCESS_WRITE)
        return tf__fail(&s->req->err, TF_EACCES, "user %s has read access only: %s needs write",
                        s->user->info.name, op_label(op));
    return TF_OK;
}

/* Puts s on the list of failed logins waiting, in the order they are to be
   answered (their delays differ, so not simply at the tail). */
static void delay_insert(session *s, int64_t due_ms)
{
    tf__timer_list *l = &s->ctx->auth_delay;
    tf__timer *t = &s->timer;
    tf__timer_touch(t, NULL, 0);
    t->list = l;
    t->last_ms = due_ms - l->limit_ms;
    tf__timer *after = l->tail;
    while (after && after->last_ms > t->last_ms)
        after = after->prev;
    t->prev = after;
    t->next = after ? after->next : l->head;
    if (t->next)
        t->next->prev = t;
    else
        l->tail = t;
    if (after)
        after->next = t;
    else
        l->head = t;
    l->count++;
}


static void auth_delay_over(session *s)
{
    reply_failure(s, s->req->result, AFTER_IDLE);
    read_pending(s); /* resumed by a timer, not by epoll: see auth_done */
}

static void jobs_unlink(tf__session_ctx *ctx, tf__auth_job *j)
{
    if (j->prev)
        j->prev->next = j->next;
    else
        ctx->auth_jobs = j->next;
    if (j->next)
        j->next->prev = j->prev;
    j->prev = j->next = NULL;
    ctx->auth_inflight--;
}

/* s becomes the user j found, with the view of the storage j opened.
   -1 when out of memory: j is freed and s failed. */
static int take_user(session *s, tf__auth_job *j)
{
    struct session_user *u = malloc(sizeof *u);
    if (!u) {
        tf__auth_job_free(j);
        fail_session(s, TF_ENOMEM, "out of memory");
        return -1;
    }
    u->info = j->info;
    u->storage = j->storage;
    j->storage = NULL;
    s->user = u;
    return 0;
}

/* A login's check is over (in the loop's thread, from the queue's drain). */
static void auth_done(tf__work *w, int status)
{
    tf__auth_job *j = (tf__auth_job *)w;
    session *s = w->data;
    tf__session_ctx *ctx = s->ctx;
    request *r = s->req;
    jobs_unlink(ctx, j);
    s->job = NULL;
    if (status != TF_OK || ctx->stopping) {
        tf__auth_job_free(j);
        r->result = TF_ECANCELED;
        tf__fail(&r->err, TF_ECANCELED, "the server is stopping");
        tf__session_close(s);
        return;
    }
    const struct sockaddr *peer = (const struct sockaddr *)&s->peer;
    if (j->rc == TF_OK) {
        if (take_user(s, j) != 0)
            return;
        tf__auth_job_free(j);
        tf__auth_succeeded(ctx->auth, peer);
        r->result = TF_OK;
        queue_head(s, TF_OK, 0, 0, NULL);
        start_send(s, AFTER_IDLE);
        /* Resumed from the pool's queue, not by epoll: a request the
           client sent right behind its AUTH may already be decrypted
           inside TLS, where no event will announce it. */
        read_pending(s);
        return;
    }
    int rc = j->rc;
    int guessed = rc == TF_EACCES && !j->info.name[0]; /* the token was wrong */
    tf__err_take(&r->err, &j->err);
    tf__auth_job_free(j);
    r->result = rc;
    int64_t wait = guessed ? tf__auth_failed(ctx->auth, peer) : 0;
    if (wait <= 0) {
        reply_failure(s, rc, AFTER_IDLE);
        read_pending(s);
        return;
    }
    /* Answered later, without holding the worker: the session waits on a
       timer of the loop, reading nothing from its peer meanwhile. */
    s->state = S_AUTH_DELAY;
    delay_insert(s, tf__now_ms() + wait);
}

/* Hands j to the auth pool; s waits in S_AUTH until done runs. On
   failure j is freed and s left as it was. */
static int auth_submit(session *s, tf__auth_job *j, void (*done)(tf__work *, int))
{
    tf__session_ctx *ctx = s->ctx;
    j->auth = ctx->auth;
    j->work.work = tf__auth_job_run;
    j->work.done = done;
    j->work.data = s;
    int rc = tf__pool_submit(ctx->auth->pool, &ctx->auth_queue.q, &j->work);
    if (rc != TF_OK) {
        tf__auth_job_free(j);
        return rc;
    }
    j->next = ctx->auth_jobs;
    if (j->next)
        j->next->prev = j;
    ctx->auth_jobs = j;
    ctx->auth_inflight++;
    s->job = j;
    /* Nothing may move or free s while a pool thread holds its job: no
       events, no timeouts, until done. */
    s->state = S_AUTH;
    list_move(s, NULL, 0);
    (void)watch(s, 0); /* a failure leaves it watched: on_events ignores S_AUTH */
    return TF_OK;
}

static int greet_tls(session *s);
static int send_hello(session *s, int code, const char *message);

/* The client certificate's lookup is over (tls_step submitted it): the
   session is that user from the start, or nobody yet; the hello follows. */
static void cert_done(tf__work *w, int status)
{
    tf__auth_job *j = (tf__auth_job *)w;
    session *s = w->data;
    tf__session_ctx *ctx = s->ctx;
    jobs_unlink(ctx, j);
    s->job = NULL;
    if (status != TF_OK || ctx->stopping) {
        tf__auth_job_free(j);
        tf__session_close(s);
        return;
    }
    s->state = S_HELLO;
    list_move(s, &ctx->active, tf__now_ms());
    char fp[TF__FP_SIZE];
    tf__conn_peer_identity(&s->conn, fp, NULL, 0);
    if (j->rc == TF_OK) {
        if (take_user(s, j) != 0)
            return;
        log_entry(s, "auth", fp, "", 0, TF_OK, "", s->window_ms);
    } else if (j->rc != TF_ENOENT) {
        /* The certificate is a user's whose directory cannot be opened:
           told at the hello, as a token login of that user would be told
           in its reply. */
        log_entry(s, "auth", fp, "", 0, j->rc, j->err.msg, s->window_ms);
        int sent = send_hello(s, j->rc, j->err.msg) == 0;
        tf__auth_job_free(j);
        if (sent)
            enter_closing(s);
        else
            tf__session_close(s);
        return;
    }
    tf__auth_job_free(j);
    if (watch(s, EPOLLIN) != 0) {
        fail_session(s, TF_ENET, "epoll failed");
        return;
    }
    if (greet_tls(s) == 0)
        read_pending(s);
}

/* After the handshake: a client certificate that is a user's makes the
   session that user before the hello (a pool job: opening the user's
   directory may block). 1 when a lookup was started, 0 when there is
   none to make. */
static int cert_login(session *s)
{
    if (!s->ctx->auth)
        return 0;
    char fp[TF__FP_SIZE];
    if (!tf__conn_peer_identity(&s->conn, fp, NULL, 0))
        return 0;
    tf__auth_job *j = calloc(1, sizeof *j);
    tf__err ignored = {{0}};
    if (!j || tf__tls_fingerprint_parse(j->spki, fp, &ignored) != TF_OK) {
        free(j);
        return 0; /* no user then: the token login stays possible */
    }
    j->by_cert = 1;
    return auth_submit(s, j, cert_done) == TF_OK;
}

static void on_auth(session *s)
{
    tf_wire_auth a;
    long n = tf__wire_decode_auth(s->in, s->in_len, &a);
    if (n == TF_WIRE_NEED_MORE) {
        if (s->in_len >= TF_WIRE_AUTH_SIZE &&
            grow_input(s, TF_WIRE_AUTH_SIZE + (size_t)a.user_len + a.token_len) != 0)
            fail_session(s, TF_ENOMEM, "out of memory");
        return;
    }
    request *r = request_begin(s, TF_OP_AUTH);
    if (!r) {
        fail_session(s, TF_ENOMEM, "out of memory");
        return;
    }
    if (n < 0) {
        /* Not skippable: its lengths are what is wrong. */
        tf__fail(&r->err, TF_EPROTO,
                 n == TF_ETOOBIG ? "the auth request's user name or token is over the limit"
                                 : "malformed auth request");
        reply_failure(s, TF_EPROTO, AFTER_CLOSE);
        return;
    }
    /* The name as the log shows it: escaped, since it is the client's. */
    tf_escape(r->name, sizeof r->name, a.user, a.user_len, 0);
    tf__auth_job *j = NULL;
    int rc = TF_OK;
    if (s->user)
        rc = tf__fail(&r->err, TF_EINVAL, "already authenticated");
    else if (!(j = calloc(1, sizeof *j)))
        rc = tf__fail(&r->err, TF_ENOMEM, "out of memory");
    if (j) {
        /* A name with a NUL in it is no user's: checked as "" (the dummy),
           so it costs the same and fails the same. */
        if (a.user_len && !memchr(a.user, 0, a.user_len))
            memcpy(j->user, a.user, a.user_len);
        if (a.token_len)
            memcpy(j->token, a.token, a.token_len);
        j->token_len = a.token_len;
    }
    /* The token leaves the input buffer: no copy is left behind there. */
    size_t was = s->in_len;
    consume_input(s, (size_t)n);
    OPENSSL_cleanse(s->in + s->in_len, was - s->in_len);
    if (rc != TF_OK) {
        reply_failure(s, rc, AFTER_IDLE);
        return;
    }
    if (auth_submit(s, j, auth_done) != TF_OK) {
        tf__fail(&r->err, TF_EBUSY, "the server is stopping");
        reply_failure(s, TF_EBUSY, AFTER_CLOSE);
    }
}

/* Jobs not started yet are cancelled (their auth_done closes them); the
   running ones end on their own. */
static void cancel_auth_jobs(tf__session_ctx *ctx)
{
    for (tf__auth_job *j = ctx->auth_jobs; j; j = j->next)
        tf__pool_cancel(&j->work);
}

int tf__session_ctx_auth(tf__session_ctx *ctx, struct tf__auth *auth)
{
    ctx->auth = auth;
    return queue_start(ctx, &ctx->auth_queue);
}

/* ---- the tree (section 3a) -------------------------------------------------------- */

/* Replies success with no body. */
static void reply_ok(session *s)
{
    queue_head(s, TF_OK, 0, 0, NULL);
    s->req->body_left = 0;
    s->req->has_trailer = 0;
    start_send(s, AFTER_IDLE);
}

static void reply_rc(session *s, int rc)
{
    if (rc == TF_OK)
        reply_ok(s);
    else
        reply_failure(s, rc, AFTER_IDLE);
}

/* The head and the record, once the digest (if any) is known. */
static void stat_finish(session *s)
{
    request *r = s->req;
    tf_wire_stat st = {.type = r->stat_type,
                       .mtime_ns = r->stat_mtime_ns,
                       .size = r->stat_size,
                       .mtime = r->stat_mtime};
    if (r->stat_pending) {
        tf__digest_final(&r->digest, st.digest);
        st.flags = TF_WIRE_STAT_HAS_DIGEST;
        /* Computed once per version: the next stat or get finds it. */
        storage(s)->ops->digest_store(storage(s), r->body_fd, st.digest, r->file_id);
        r->stat_pending = 0;
    } else if (r->cached) {
        memcpy(st.digest, r->cached_digest, sizeof st.digest);
        st.flags = TF_WIRE_STAT_HAS_DIGEST;
    }
    tf__wire_encode_stat(r->stat_rec, sizeof r->stat_rec, &st);
    queue_head(s, TF_OK, sizeof r->stat_rec, 0, NULL);
    r->body_mem = r->stat_rec;
    r->body_off = 0;
    r->body_left = sizeof r->stat_rec;
    r->has_trailer = 0;
}

/* On the disk pool: the entry, and a file's remembered digest. */
static void stat_work(session *s)
{
    request *r = s->req;
    tf__storage *st = storage(s);
    tf__fstat fs = {TF__FT_DIR, 0, 0, 0};
    uint64_t size = 0;
    int rc = TF_OK;
    if (r->name[0])
        rc = st->ops->stat(st, r->name, &fs, &r->err);
    if (rc == TF_OK && fs.type == TF__FT_OTHER)
        rc = tf__fail(&r->err, TF_EACCES, "\"%s\" is not a regular file or directory",
                      r->name);
    if (rc == TF_OK && fs.type == TF__FT_FILE) {
        /* The digest, if remembered for this version; computed (in slices,
           continue_send) only when asked for. */
        rc = st->ops->open_read(st, r->name, &r->body_fd, &size, r->file_id, &r->err);
        if (rc == TF_OK) {
            fs.size = size;
            r->cached = st->ops->digest_load(st, r->body_fd, r->file_id, r->cached_digest);
            if (!r->cached && (r->qflags & TF_REQ_STAT_DIGEST)) {
                rc = tf__digest_begin(&r->digest, 1);
                if (rc == TF_OK)
                    rc = ensure_buf(r);
                else
                    tf__fail(&r->err, rc, "out of memory");
                r->stat_pending = rc == TF_OK;
                r->hashed_to = 0;
                r->prefix_to = size;
            }
        }
    }
    r->disk_rc = rc;
    r->stat_type = fs.type == TF__FT_DIR ? 2 : 1;
    r->stat_size = fs.type == TF__FT_DIR ? 0 : fs.size;
    r->stat_mtime = fs.mtime;
    r->stat_mtime_ns = fs.mtime_ns;
}

static void stat_done(session *s)
{
    request *r = s->req;
    if (r->disk_rc != TF_OK) {
        reply_failure(s, r->disk_rc, AFTER_IDLE);
        return;
    }
    if (!r->stat_pending)
        stat_finish(s);
    start_send(s, AFTER_IDLE);
}

static void handle_stat(session *s, const tf_wire_request *q)
{
    int rc = q->name_len ? check_name(s, q) : TF_OK;
    if (rc != TF_OK) {
        reply_failure(s, rc, AFTER_IDLE);
        return;
    }
    disk_call(s, stat_work, stat_done);
}

/* mkdir -p: each prefix in turn; one that exists as a directory is fine. */
static int mkdir_parents(session *s)
{
    request *r = s->req;
    tf__storage *st = storage(s);
    size_t len = strlen(r->name);
    char path[TF_WIRE_NAME_MAX + 1];
    for (size_t end = 0; end <= len; end++) {
        if (end < len && r->name[end] != '/')
            continue;
        memcpy(path, r->name, end);
        path[end] = '\0';
        tf__err step = {{0}};
        int rc = st->ops->mkdir(st, path, &step);
        if (rc == TF_EEXIST) {
            tf__fstat fs;
            tf__err_clear(&step);
            rc = st->ops->stat(st, path, &fs, &step);
            if (rc == TF_OK && fs.type != TF__FT_DIR)
                rc = tf__fail(&step, TF_EEXIST, "\"%s\" exists and is not a directory", path);
        }
        if (rc != TF_OK) {
            tf__err_take(&r->err, &step);
            return rc;
        }
    }
    return TF_OK;
}

/* The tree's changes, each on the disk pool, answered by tree_done. */
static void mkdir_work(session *s)
{
    request *r = s->req;
    s->req->disk_rc = (r->qflags & TF_REQ_MKDIR_PARENTS)
                          ? mkdir_parents(s)
                          : storage(s)->ops->mkdir(storage(s), r->name, &r->err);
}

static void remove_work(session *s)
{
    request *r = s->req;
    r->disk_rc = storage(s)->ops->remove(storage(s), r->name, &r->err);
}

static void rename_work(session *s)
{
    request *r = s->req;
    r->disk_rc = storage(s)->ops->rename(
        storage(s), r->name, r->to,
        (r->qflags & TF_REQ_RENAME_NOREPLACE) ? TF_STORAGE_NOREPLACE : 0, &r->err);
}

static void tree_done(session *s)
{
    reply_rc(s, s->req->disk_rc);
}

static void handle_mkdir(session *s, const tf_wire_request *q)
{
    int rc = check_name(s, q);
    if (rc != TF_OK)
        reply_rc(s, rc);
    else
        disk_call(s, mkdir_work, tree_done);
}

static void handle_remove(session *s, const tf_wire_request *q)
{
    int rc = check_name(s, q);
    if (rc != TF_OK)
        reply_rc(s, rc);
    else
        disk_call(s, remove_work, tree_done);
}

static void handle_rename(session *s, const tf_wire_request *q)
{
    request *r = s->req;
    int rc = check_name(s, q);
    if (rc == TF_OK)
        rc = check_path(s, r->to, strlen(r->to), "new path");
    if (rc != TF_OK)
        reply_rc(s, rc);
    else
        disk_call(s, rename_work, tree_done);
}

/* On the disk pool: the walk's first directory opened. */
static void listdir_work(session *s)
{
    request *r = s->req;
    tf__path_limits lim = path_limits(s);
    r->disk_rc = tf__walk_open(storage(s), r->name, (r->qflags & TF_REQ_LIST_RECURSIVE) != 0,
                               &lim, &r->walk, &r->err);
}

static void listdir_opened(session *s)
{
    request *r = s->req;
    if (r->disk_rc != TF_OK) {
        reply_failure(s, r->disk_rc, AFTER_IDLE);
        return;
    }
    queue_head(s, TF_OK, 0, 0, NULL);
    r->body_left = 0;
    r->has_trailer = 1;
    start_send(s, AFTER_IDLE);
}

static void handle_listdir(session *s, const tf_wire_request *q)
{
    request *r = s->req;
    int rc = q->name_len ? check_name(s, q) : TF_OK;
    if (rc == TF_OK)
        rc = ensure_buf(r);
    if (rc != TF_OK) {
        reply_failure(s, rc, AFTER_IDLE);
        return;
    }
    disk_call(s, listdir_work, listdir_opened);
}

static const tree_op tree_ops[] = {
    {TF_OP_STAT, "stat", 0, TF_REQ_STAT_DIGEST, handle_stat},
    {TF_OP_MKDIR, "mkdir", 1, TF_REQ_MKDIR_PARENTS, handle_mkdir},
    {TF_OP_REMOVE, "remove", 1, 0, handle_remove},
    {TF_OP_RENAME, "rename", 1, TF_REQ_RENAME_NOREPLACE, handle_rename},
    {TF_OP_LISTDIR, "listdir", 0, TF_REQ_LIST_RECURSIVE, handle_listdir},
};

static const tree_op *find_tree_op(int op)
{
    for (size_t i = 0; i < sizeof tree_ops / sizeof tree_ops[0]; i++)
        if (tree_ops[i].op == op)
            return &tree_ops[i];
    return NULL;
}

/* The one place every tree request passes: the rights, then the op. */
static void handle_tree(session *s, const tree_op *t, const tf_wire_request *q)
{
    if (t->writes && opts(s)->value[TF_OPT_READ_ONLY]) {
        tf__fail(&s->req->err, TF_EACCES, "the server is read-only");
        reply_failure(s, TF_EACCES, AFTER_IDLE);
        return;
    }
    t->handle(s, q);
}

/* ---- input ---------------------------------------------------------------------- */

static void on_hello(session *s)
{
    tf_wire_client_hello h;
    long n = tf__wire_decode_client_hello(s->in, s->in_len, &h);
    if (n == TF_WIRE_NEED_MORE)
        return;
    if (n < 0 && !s->ctx->tls && tf__tls_sniff(s->in, s->in_len) == TF__SNIFF_TLS) {
        /* A TLS client: it has our plaintext hello already and fails on
           it; we say why in the log and wait for it to close. */
        log_entry(s, "connect", "", "", 0, TF_EPROTO, "a TLS client; this server runs --plaintext",
                  s->timer.last_ms);
        s->in_len = 0;
        enter_closing(s);
        return;
    }
    if (n < 0) {
        fail_session(s, TF_EPROTO, "the peer is not a tcpfile client");
        return;
    }
    if (tf__wire_negotiate(TF_WIRE_VERSION, TF_WIRE_VERSION, h.version_min, h.version_max) ==
        0) {
        char why[96];
        snprintf(why, sizeof why, "no common protocol version (client %u-%u)",
                 (unsigned)h.version_min, (unsigned)h.version_max);
        fail_session(s, TF_EPROTO, why);
        return;
    }
    s->features = h.features & offered_features(opts(s));
    consume_input(s, (size_t)n);
    enter_idle(s);
    parse_input(s);
}

/* Makes room for a request whose name is longer than the small buffer. */
static int grow_input(session *s, size_t need)
{
    if (need <= s->in_cap)
        return 0;
    uint8_t *big = malloc(need);
    if (!big)
        return -1;
    memcpy(big, s->in, s->in_len);
    input_free(s->ctx, s->in, s->in_cap);
    s->in = big;
    s->in_cap = need;
    return 0;
}

static void on_request(session *s)
{
    if (s->ctx->auth && s->in[0] == TF_OP_AUTH && tf__group_pending(s->group)) {
        group_send(s);
        return;
    }
    if (s->ctx->auth && s->in[0] == TF_OP_AUTH) {
        on_auth(s); /* a frame of its own (docs/protocol.md, 4b) */
        return;
    }
    size_t max_name = request_max_name(s);
    tf_wire_request q;
    long n = tf__wire_decode_request(s->in, s->in_len, max_name, &q);
    if (n == TF_WIRE_NEED_MORE && s->in_len >= TF_WIRE_REQUEST_SIZE && q.op == TF_OP_PUT &&
        (q.flags & TF_REQ_PUTX_MASK) && !(s->features & TF_FEATURE_PUTX)) {
        /* Without PUTX these bits are unknown flags, not an extension block
           to wait for: the request cannot be framed, and is answered now. */
        request *r = request_begin(s, q.op);
        if (!r) {
            fail_session(s, TF_ENOMEM, "out of memory");
            return;
        }
        tf__fail(&r->err, TF_EPROTO, "unknown request flags 0x%02x", (unsigned)q.flags);
        reply_failure(s, TF_EPROTO, AFTER_CLOSE);
        return;
    }
    if (n == TF_WIRE_NEED_MORE) {
        if (s->in_len >= TF_WIRE_REQUEST_SIZE &&
            grow_input(s, TF_WIRE_REQUEST_SIZE + tf__wire_request_tail(&q)) != 0)
            fail_session(s, TF_ENOMEM, "out of memory");
        return;
    }
    if (tf__group_pending(s->group) && (n < 0 || !group_takes(s, &q))) {
        /* The batch ends here: its answers first, then this request
           (still buffered) from sent(). */
        group_send(s);
        return;
    }
    request *r = request_begin(s, q.op);
    if (!r) {
        fail_session(s, TF_ENOMEM, "out of memory");
        return;
    }
    /* Framing first: a request this version cannot frame safely (unknown
       op or flags, a stray size, offset or key) is closed on, whatever its
       name, since skipping name_len bytes of it could land anywhere. */
    if (n == TF_ETOOBIG && request_valid(s, &q) != TF_OK) {
        reply_failure(s, TF_EPROTO, AFTER_CLOSE);
        return;
    }
    if (n == TF_ETOOBIG) {
        /* Still well framed: answer, then skip the name as it arrives. The
           skip is timed as a request in flight (parse_input). */
        s->skip = TF_WIRE_REQUEST_SIZE + tf__wire_request_tail(&q);
        tf__fail(&r->err, TF_EINVAL,
                 "bad name: the name is longer than the limit (at most %zu bytes)",
                 max_name);
        drop_skipped(s);
        reply_failure(s, TF_EINVAL, AFTER_IDLE);
        return;
    }
    /* name_len <= the limit <= TF_WIRE_NAME_MAX (the decoder checked). */
    if (q.name_len)
        memcpy(r->name, q.name, q.name_len);
    r->name[q.name_len] = '\0';
    /* Copy what the handlers need, then free the input for what follows. */
    uint8_t key[TF_UPLOAD_KEY_SIZE];
    if (q.key) {
        memcpy(key, q.key, sizeof key);
        q.key = key;
    }
    uint8_t if_match[TF_WIRE_EXT_DIGEST], same[TF_WIRE_EXT_DIGEST];
    if (q.if_match) {
        memcpy(if_match, q.if_match, sizeof if_match);
        q.if_match = if_match;
    }
    if (q.same) {
        memcpy(same, q.same, sizeof same);
        q.same = same;
    }
    size_t to_len;
    const char *to = tf__wire_request_to(&q, &to_len); /* into s->in, as the name */
    if (to) /* rename: the new path, kept as the name is */
        memcpy(r->to, to, to_len);
    r->to[to_len] = '\0';
    char name[TF_WIRE_NAME_MAX];
    memcpy(name, q.name, q.name_len);
    q.name = name;
    consume_input(s, (size_t)n);
    if (request_valid(s, &q) != TF_OK) {
        reply_failure(s, TF_EPROTO, AFTER_CLOSE);
        return;
    }
    if (check_rights(s, q.op) != TF_OK) {
        reply_failure(s, TF_EACCES, AFTER_IDLE);
        return;
    }
    r->qflags = q.flags;
    switch (q.op) {
    case TF_OP_GET:
        handle_get(s, &q);
        break;
    case TF_OP_PUT:
        handle_put(s, &q);
        break;
    case TF_OP_LIST:
        handle_list(s, &q);
        break;
    default:
        handle_tree(s, find_tree_op(q.op), &q); /* request_valid found it */
        break;
    }
}

static int fill_input(session *s);

/* Acts on buffered input for as long as the state allows. */
static void parse_input(session *s)
{
    if (s->state == S_HELLO) {
        on_hello(s);
        return;
    }
    if (s->state == S_RECV_TRAILER) {
        receive_trailer(s);
        return;
    }
    if (s->state != S_IDLE)
        return;
    if (s->skip && s->in_len)
        drop_skipped(s);
    if (s->ctx->stopping) {
        tf__session_close(s); /* no new requests once the server stops */
        return;
    }
    if (!s->skip && s->in_len > 0)
        on_request(s);
    if (s->dead || s->state != S_IDLE)
        return;
    if (tf__group_pending(s->group)) {
        /* Between requests with puts to commit: if nothing more is coming
           now, the client's pipeline has paused (it may be waiting for
           these answers), and the batch ends. */
        int more = fill_input(s);
        if (more > 0)
            parse_input(s);
        else if (more == 0)
            group_send(s);
        return;
    }
    if ((s->in_len > 0 || s->skip) && s->timer.list == &s->ctx->idle) {
        /* Part of a request is here, or the rest of a refused one's name
           is still to come: from now on it is timed as a request, so the
           I/O timeout and the minimum rate apply, not the idle timeout. */
        s->window_ms = tf__now_ms();
        s->window_bytes = 0;
        list_move(s, &s->ctx->active, s->window_ms);
    } else if (!s->in_len && !s->skip && !s->req && s->timer.list == &s->ctx->active) {
        /* A skipped name is over: back to waiting between requests. */
        list_move(s, &s->ctx->idle, tf__now_ms());
        input_shrink(s);
    }
}

/* Reads into the input buffer. Returns 1 if bytes came, 0 if none were
   ready, -1 if the session ended (closed here). */
static int fill_input(session *s)
{
    if (s->skip && s->in_len)
        drop_skipped(s);
    if (input_take(s) != 0) {
        fail_session(s, TF_ENOMEM, "out of memory");
        return -1;
    }
    if (s->in_len == s->in_cap)
        return 1; /* full: let the parser make room */
    uint8_t *to = s->in + s->in_len;
    size_t room = s->in_cap - s->in_len;
    ssize_t n = tf__conn_read(&s->conn, to, room);
    if (n == TF__IO_AGAIN)
        return 0;

    if (n == 0 && s->state == S_IDLE && s->in_len == 0 && !s->req) {
        tf__session_close(s); /* a client leaving between requests */
        return -1;
    }
    if (n <= 0) {
        fail_session(s, TF_ENET, n == 0 ? "the peer closed the connection mid-frame"
                                        : "receive failed");
        return -1;
    }
    s->in_len += (size_t)n;
    if (progressed(s, (size_t)n))
        return -1;
    return 1;
}

static void drain_closing(session *s)
{
    char sink[4096];
    for (;;) {
        ssize_t n = tf__conn_read(&s->conn, sink, sizeof sink);
        if (n > 0)
            continue;
        if (n == TF__IO_AGAIN)
            return;
        tf__session_close(s); /* the peer has read our reply and closed */
        return;
    }
}

static void tls_step(session *s);

static void on_events_once(session *s, uint32_t events)
{
    if (s->state == S_AUTH || s->state == S_AUTH_DELAY || s->state == S_DISK)
        return; /* not reading while a login is checked, its answer waits, or
                   the disk works for the request */
    if (s->state == S_TLS) {
        tls_step(s);
        return;
    }
    if (s->state == S_CLOSING) {
        drain_closing(s);
        return;
    }
    if (s->state == S_SEND) {
        if (events & (EPOLLERR | EPOLLHUP)) {
            fail_session(s, TF_ENET, "the connection was reset");
            return;
        }
        continue_send(s);
        return;
    }
    if (s->state == S_RECV_BODY) {
        receive_body(s);
        return;
    }
    /* S_HELLO, S_IDLE, S_RECV_TRAILER: frames through the input buffer. */
    int rc = fill_input(s);
    if (rc > 0)
        parse_input(s);
}

/* Whether s waits for the peer's bytes (not for room to send). */
static int reading(const session *s)
{
    return s->state != S_SEND && s->state != S_TLS && s->state != S_AUTH &&
           s->state != S_AUTH_DELAY && s->state != S_DISK;
}

/* TLS decrypts a whole record while the reader takes part of it: the
   rest waits inside the transport, where epoll does not see it, so
   whatever state now reads (a pipelined request after a reply, the hello
   after the handshake, a body after its head) reads again, for as long as
   each pass takes some of those bytes. A record holds at most 16 KiB, so
   this ends; a pass that takes nothing (a parser stuck on a frame larger
   than its buffer) ends it too. A fixed number of passes instead left
   the rest of a record of many small pipelined requests unread, with no
   event ever to come for it (cli_sync's pull of 180 files over TLS
   stalled after 130). */
static void read_pending(session *s)
{
    int held;
    while (!s->dead && reading(s) && (held = tf__conn_pending(&s->conn)) > 0) {
        on_events_once(s, EPOLLIN);
        if (!s->dead && tf__conn_pending(&s->conn) >= held)
            break;
    }
}

static void on_events(tf__watcher *watch, uint32_t events)
{
    session *s = SESSION_OF(watch, watch);
    if (s->dead)
        return; /* closed earlier in this round of events */
    on_events_once(s, events);
    read_pending(s);
}

/* ---- life and death ------------------------------------------------------------- */

static int send_hello_conn(const tf_options *opt, tf__conn *c, int code, const char *message,
                           uint32_t extra_features)
{
    uint8_t buf[TF_WIRE_SERVER_HELLO_SIZE + TF_WIRE_MESSAGE_MAX];
    size_t mlen = message ? strlen(message) : 0;
    tf_wire_server_hello h = {
        .version_min = TF_WIRE_VERSION,
        .version_max = TF_WIRE_VERSION,
        .features = offered_features(opt) | extra_features,
        .status = tf__wire_status(code),
        .max_name = (uint16_t)opt->value[TF_OPT_MAX_NAME_LEN],
        .max_upload = (uint64_t)opt->value[TF_OPT_MAX_UPLOAD],
        .message = message,
        .message_len = (uint16_t)mlen,
    };
    long n = tf__wire_encode_server_hello(buf, sizeof buf, &h);
    if (n > 0 && code == TF_OK) /* TREE: the depth limit, where v1 had 0 */
        tf__wire_server_hello_put_depth(buf, (uint16_t)opt->value[TF_OPT_MAX_DEPTH]);
    /* A new connection's send buffer is empty: the hello goes out whole. */
    return tf__conn_write(c, buf, (size_t)n, 0) == n ? 0 : -1;
}

static int send_hello(session *s, int code, const char *message)
{
    /* AUTH is not negotiated: it says that this server wants a login,
       which a client certificate mapped to a user has made already. */
    return send_hello_conn(opts(s), &s->conn, code, message,
                           s->ctx->auth && !s->user ? TF_FEATURE_AUTH : 0);
}

void tf__refuse_conn(const tf_options *opt, tf__conn *c, const struct sockaddr *peer,
                     const char *message)
{
    /* The client's hello is read first (if it has come): closing with
       unread bytes would reset the connection, and the reset could reach
       the client before it has read our refusal. */
    uint8_t sink[256];
    for (int i = 0; i < 4 && tf__conn_read(c, sink, sizeof sink) > 0; i++)
        ; /* bounded: a peer that keeps sending gets its reset */
    if (send_hello_conn(opt, c, TF_EBUSY, message, 0) == 0)
        tf__conn_shutdown(c);
    if (opt->log) {
        char who[64];
        tf__format_addr(peer, 1, who, sizeof who);
        tf_request_log entry = {.peer = who, .op = "busy", .name = "", .result = TF_EBUSY,
                                .message = message, .user = ""};
        opt->log(opt->log_user, &entry);
    }
}

/* A plaintext tcpfile client met this TLS server: it is answered in its
   own language (a plaintext hello with TF_EPROTO saying why), the TLS
   state is dropped, and the session closes as after any last reply. */
static void refuse_plaintext(session *s)
{
    static const char why[] = "this server requires TLS (the client has --plaintext)";
    log_entry(s, "connect", "", "", 0, TF_EPROTO, why, s->timer.last_ms);
    tf__conn_tls_to_tcp(&s->conn);
    /* Its hello is read first, so that our close is not a reset that could
       overtake the answer. */
    uint8_t sink[256];
    for (int i = 0; i < 4 && tf__conn_read(&s->conn, sink, sizeof sink) > 0; i++)
        ;
    if (send_hello(s, TF_EPROTO, why) != 0) {
        tf__session_close(s);
        return;
    }
    enter_closing(s);
}

/* The TLS handshake as a state of the loop (no thread, no blocking): under
   the I/O timeout from accept, then the hello as on a plaintext server. */
static void tls_step(session *s)
{
    int r = tf__conn_handshake(&s->conn);
    if (r == TF__IO_AGAIN) {
        if (watch(s, s->conn.want) != 0)
            fail_session(s, TF_ENET, "epoll failed");
        return;
    }
    if (r != 0) {
        tf__tls *t = tf__conn_tls_of(&s->conn);
        if (t && tf__tls_peer_plaintext(t)) {
            refuse_plaintext(s);
            return;
        }
        const char *msg;
        int code = tf__conn_tls_error(&s->conn, &msg);
        fail_session(s, code ? code : TF_EPROTO, msg[0] ? msg : "TLS handshake failed");
        return;
    }
    s->state = S_HELLO;
    list_move(s, &s->ctx->active, tf__now_ms());
    if (watch(s, EPOLLIN) != 0) {
        fail_session(s, TF_ENET, "epoll failed");
        return;
    }
    if (s->refusal) {
        tf__session_refuse(s, s->refusal->code, s->refusal->msg);
        return;
    }
    if (cert_login(s))
        return; /* cert_done greets */
    greet_tls(s);
}

/* The hello, once the handshake (and a certificate's login) is over. */
static int greet_tls(session *s)
{
    if (tf__session_greet(s) != 0)
        return -1;
    /* The client's hello may have come with its last handshake flight. */
    on_events_once(s, EPOLLIN);
    return 0;
}

static void free_session(tf__deferred *d)
{
    session *s = SESSION_OF(d, free_later);
    free(s->in);
    free(s->refusal);
    if (s->user && s->user->storage)
        s->user->storage->ops->close(s->user->storage);
    free(s->user);
    free(s);
}

/* A timer list's limit passed: log it (if a request was in flight) and
   close. */
static void expired(tf__timer *t)
{
    session *s = SESSION_OF(t, timer);
    tf__session_ctx *ctx = s->ctx;
    if (t->list == &ctx->auth_delay) {
        auth_delay_over(s);
        return;
    }
    if (t->list == &ctx->closing || (s->state == S_IDLE && !s->req)) {
        tf__session_close(s);
        return;
    }
    fail_session(s, TF_ETIMEDOUT, t->list == &ctx->idle
                                      ? "idle timeout"
                                      : "the peer made no progress within the I/O timeout");
}

session *tf__session_new(tf__session_ctx *ctx, int fd, const struct sockaddr *peer)
{
    session *s = calloc(1, sizeof *s);
    if (!s) {
        tf__conn c;
        tf__conn_tcp(&c, fd, 1);
        tf__conn_close(&c);
        atomic_fetch_sub(ctx->sessions, 1);
        return NULL;
    }
    tf__conn_tcp(&s->conn, fd, 1);
    if (ctx->tls) {
        /* TLS from the first byte: the hello waits for the handshake. */
        tf__err e = {{0}};
        tf__tls *t;
        if (tf__tls_server_new(&t, ctx->tls, fd, &e) != TF_OK) {
            tf__conn_close(&s->conn);
            free(s);
            atomic_fetch_sub(ctx->sessions, 1);
            return NULL;
        }
        if (tf__conn_tls(&s->conn, fd, 1, t) != TF_OK) {
            tf__tls_free(t);
            tf__conn_close(&s->conn);
            free(s);
            atomic_fetch_sub(ctx->sessions, 1);
            return NULL;
        }
    }
    s->watch.fd = fd;
    s->watch.on_events = on_events;
    s->timer.expired = expired;
    s->free_later.fn = free_session;
    s->ctx = ctx;
    s->state = ctx->tls ? S_TLS : S_HELLO;
    s->window_ms = tf__now_ms();
    if (peer && peer->sa_family == AF_INET6)
        memcpy(&s->peer.v6, peer, sizeof s->peer.v6);
    else if (peer)
        memcpy(&s->peer.v4, peer, sizeof s->peer.v4);
    list_move(s, &ctx->active, s->window_ms);
    if (watch(s, EPOLLIN) != 0) {
        tf__session_close(s);
        return NULL;
    }
    return s;
}

int tf__session_greet(session *s)
{
    if (s->state == S_TLS)
        return 0; /* after the handshake (tls_step) */
    if (send_hello(s, TF_OK, NULL) != 0) {
        fail_session(s, TF_ENET, "cannot send the hello");
        return -1;
    }
    return 0;
}

void tf__session_refuse(session *s, int code, const char *message)
{
    if (s->state == S_TLS) {
        /* A TLS client can only read a refusal inside TLS. Out of
           memory, it is told nothing and closed. */
        size_t len = message ? strlen(message) : 0;
        free(s->refusal);
        if (!(s->refusal = malloc(sizeof *s->refusal + len + 1))) {
            tf__session_close(s);
            return;
        }
        s->refusal->code = code;
        memcpy(s->refusal->msg, message ? message : "", len + 1);
        return;
    }
    log_entry(s, "busy", "", "", 0, code, message, s->timer.last_ms);
    if (send_hello(s, code, message) != 0) {
        tf__session_close(s);
        return;
    }
    enter_closing(s);
}

/* What closing does, once no pool thread holds the session's request. */
static void close_now(session *s)
{
    if (s->ahead) {
        tf__ahead_drop(s->ahead);
        if (tf__ahead_busy(s->ahead))
            return; /* the last one's ahead_done comes back here */
        tf__ahead_free(s->ahead);
        s->ahead = NULL;
    }
    list_move(s, NULL, 0); /* off the disk list, after group_close_work */
    if (s->req)
        request_end(s, 1);
    group_close(s);
    tf__conn_close(&s->conn); /* also takes it out of the epoll set */
    atomic_fetch_sub(s->ctx->sessions, 1);
    tf__loop_defer(s->ctx->loop, &s->free_later);
}

void tf__session_close(session *s)
{
    if (s->dead)
        return;
    s->dead = 1;
    list_move(s, NULL, 0);
    if (!s->disk && tf__group_pending(s->group) && !s->group->committed) {
        /* Puts received whole are stored before the session goes; its
           request (if any) is over first, as the job must not use it. */
        if (s->req)
            request_end(s, 1);
        disk_call(s, group_close_work, close_now);
        return;
    }
    if (s->disk) {
        /* Its job is cancelled if it has not started; either way the rest
           waits for disk_done, as a running job uses the request. */
        tf__pool_cancel(&s->disk->work);
        return;
    }
    close_now(s);
}

/* ---- the sessions of one loop -------------------------------------------------- */

int tf__session_ctx_init(tf__session_ctx *ctx, tf__loop *loop, const tf_options *opt)
{
    memset(ctx, 0, sizeof *ctx);
    ctx->loop = loop;
    ctx->opt = opt;
    ctx->idle.limit_ms = opt->value[TF_OPT_IDLE_TIMEOUT_MS];
    ctx->active.limit_ms = opt->value[TF_OPT_IO_TIMEOUT_MS];
    ctx->closing.limit_ms = CLOSING_LINGER_MS;
    ctx->auth_delay.limit_ms = 1; /* last_ms is set to one before the deadline */
    ctx->disk.limit_ms = 0;       /* never expires: not the loop's to watch */
    int rc = tf__loop_add_list(loop, &ctx->idle);
    if (rc == TF_OK)
        rc = tf__loop_add_list(loop, &ctx->active);
    if (rc == TF_OK)
        rc = tf__loop_add_list(loop, &ctx->closing);
    if (rc == TF_OK)
        rc = tf__loop_add_list(loop, &ctx->auth_delay);
    return rc;
}

static void close_list(tf__timer_list *list)
{
    while (list->head)
        tf__session_close(SESSION_OF(list->head, timer));
}

void tf__session_ctx_stop(tf__session_ctx *ctx)
{
    ctx->stopping = 1;
    close_list(&ctx->idle);
    close_list(&ctx->closing);
    close_list(&ctx->auth_delay);
    cancel_auth_jobs(ctx);
    /* Active sessions: handshakes end now, requests in flight may finish
       within the grace period. */
    tf__timer *t = ctx->active.head;
    while (t) {
        tf__timer *next = t->next;
        session *s = SESSION_OF(t, timer);
        if (!s->req)
            tf__session_close(s);
        t = next;
    }
}

void tf__session_ctx_close_all(tf__session_ctx *ctx)
{
    close_list(&ctx->active);
    close_list(&ctx->idle);
    close_list(&ctx->closing);
    close_list(&ctx->auth_delay);
    /* Storage calls: cancelled if not started, waited for if running;
       either way disk_done finishes closing them (queue_stop). */
    close_list(&ctx->disk);
    /* Logins still being checked: the same; their auth_done closes them. */
    ctx->stopping = 1;
    cancel_auth_jobs(ctx);
    tf__session_ctx_queues_fini(ctx);
}

void tf__session_ctx_queues_fini(tf__session_ctx *ctx)
{
    queue_stop(ctx, &ctx->auth_queue);
    queue_stop(ctx, &ctx->disk_queue);
}

int tf__session_ctx_disk(tf__session_ctx *ctx, tf__pool *pool)
{
    ctx->disk_pool = pool;
    return pool ? queue_start(ctx, &ctx->disk_queue) : TF_OK;
}

int tf__session_ctx_empty(const tf__session_ctx *ctx)
{
    return !ctx->active.head && !ctx->idle.head && !ctx->closing.head &&
           !ctx->auth_delay.head && ctx->auth_inflight == 0 && !ctx->disk.head &&
           ctx->disk_inflight == 0;
}

void tf__session_ctx_release(tf__session_ctx *ctx)
{
    while (ctx->spare_requests) {
        request *r = ctx->spare_requests;
        ctx->spare_requests = r->next_spare;
        tf__digest_end(&r->digest);
        free(r->small);
        free(r);
    }
    ctx->nspare = 0;
    while (ctx->spare_in) {
        uint8_t *b = ctx->spare_in;
        memcpy(&ctx->spare_in, b, sizeof ctx->spare_in);
        free(b);
    }
    ctx->nspare_in = 0;
    while (ctx->spare_disk) {
        session_disk *d = ctx->spare_disk;
        ctx->spare_disk = d->next_spare;
        free(d);
    }
    ctx->nspare_disk = 0;
}
