/*
 * session.c - one connection of the event-driven server as an explicit
 * state machine (see session_state in session.h): the core. A request's
 * lifetime, the moves between states, the input buffer and the reading of
 * hellos and request heads, and the loop's events. Every function of the
 * session_*.c files runs on the thread of the connection's loop and never
 * blocks on the peer: when the transport has no room or no data it
 * returns, and the loop calls back. Storage work (open, hash, fsync,
 * rename, scans, a network store's every call) goes through the server's
 * storage interface, storage.h (never a file-system call here), and runs
 * on the server's disk pool (session_disk.c: the session waits in S_DISK
 * meanwhile), so that no call blocks the loop. The other files' parts are
 * listed in session_internal.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "groupcommit.h"
#include "netio.h"
#include "session_internal.h"
#include "transport_tls.h"
#include "walk.h"

/* Finished requests a loop keeps for the next ones. */
#define REQUEST_POOL_MAX 64
/* The input buffer a session takes when bytes come: a hello, a request
   head with a short name, a trailer. */
#define INPUT_SMALL 96
/* Input buffers and storage-call blocks a loop keeps for reuse. */
#define INPUT_POOL_MAX 64

/* ---- logging -------------------------------------------------------------- */

const char *tf__sess_op_label(int op)
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
        const tree_op *t = tf__sess_find_tree_op(op);
        return t ? t->label : "bad-request";
    }
    }
}

/* to: a rename's new path, "" otherwise. */
void tf__sess_log_entry(session *s, const char *op, const char *name, const char *to,
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

request *tf__sess_request_begin(session *s, uint8_t op)
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
    /* Everything before err: the 2 KiB of messages and head and the 8 KiB
       of names after it are not cleared, as none is read before written.
       A tf__err is empty when its first byte is (internal.h) and is only
       read as a string; the head is sent up to head_len, which queue_head
       sets as it writes it; the name is written whole before it is used. */
    memset(r, 0, offsetof(request, err));
    r->err.msg[0] = '\0';
    r->store_err.msg[0] = '\0';
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
void tf__sess_request_end(session *s, int keep_partial)
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
        tf__sess_log_entry(s, tf__sess_op_label(r->op), r->name,
                           r->op == TF_OP_RENAME ? r->to : "", r->bytes, result, message,
                           r->started_ms);
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

int tf__sess_ensure_buf(request *r)
{
    if (!r->buf && !(r->buf = malloc(XFER_BUF)))
        return tf__fail(&r->err, TF_ENOMEM, "out of memory");
    return TF_OK;
}

/* ---- moving between states ------------------------------------------------ */

int tf__sess_watch(session *s, uint32_t events)
{
    return tf__loop_watch(s->ctx->loop, &s->watch, events);
}

/* Puts s on list (NULL: none) as of now_ms: the one place that moves a
   session between the timeouts. */
void tf__sess_list_move(session *s, tf__timer_list *list, int64_t now_ms)
{
    tf__timer_touch(&s->timer, list, now_ms);
}

void tf__sess_enter_closing(session *s)
{
    s->state = S_CLOSING;
    if (!s->shut) {
        tf__conn_shutdown(&s->conn);
        s->shut = 1;
    }
    tf__sess_list_move(s, &s->ctx->closing, tf__now_ms());
    if (tf__sess_watch(s, EPOLLIN) != 0)
        tf__session_close(s);
}

/* ---- the input buffer ------------------------------------------------------ */

/* Gives the input buffer b (of cap bytes) back to the loop's spares, or to
   the heap when it is a long name's or the spares are full. */
static void input_free(tf__session_ctx *ctx, uint8_t *b, size_t cap)
{
    if (cap == INPUT_SMALL)
        tf__spares_give(&ctx->spare_in, b, INPUT_POOL_MAX);
    else
        free(b);
}

/* Gives s an input buffer, if it has none, before a read. 0, or -1 when
   out of memory. */
static int input_take(session *s)
{
    if (s->in)
        return 0;
    tf__session_ctx *ctx = s->ctx;
    uint8_t *b = tf__spares_take(&ctx->spare_in);
    if (!b && !(b = malloc(INPUT_SMALL)))
        return -1;
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

void tf__sess_enter_idle(session *s)
{
    s->state = S_IDLE;
    tf__sess_list_move(s, &s->ctx->idle, tf__now_ms());
    input_shrink(s);
}

/* Ends the session because the connection failed or timed out. */
void tf__sess_fail_session(session *s, int code, const char *why)
{
    if (s->req) {
        s->req->result = code;
        snprintf(s->req->err.msg, sizeof s->req->err.msg, "%s", why);
        tf__sess_request_end(s, 1);
    } else if (s->state == S_HELLO || s->state == S_TLS || s->in_len > 0) {
        tf__sess_log_entry(s,
                           s->state == S_HELLO || s->state == S_TLS ? "connect" : "request",
                           "", "", 0, code, why, s->timer.last_ms);
    }
    tf__session_close(s);
}

void tf__sess_consume_input(session *s, size_t n)
{
    memmove(s->in, s->in + n, s->in_len - n);
    s->in_len -= n;
}

/* Drops what has arrived of a refused request's over-long name (s->skip
   bytes are still owed). */
void tf__sess_drop_skipped(session *s)
{
    size_t drop = s->in_len < s->skip ? s->in_len : s->skip;
    tf__sess_consume_input(s, drop);
    s->skip -= drop;
}

/* Counts progress for the timeouts and the minimum rate. Returns non-zero
   when the peer is too slow (and the session has been closed). */
int tf__sess_progressed(session *s, size_t bytes)
{
    int64_t now = tf__now_ms();
    const tf_options *opt = opts(s);
    tf__sess_list_move(s, s->timer.list, now);
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
        tf__sess_fail_session(s, TF_ETIMEDOUT, why);
        return 1;
    }
    s->window_ms = now;
    s->window_bytes = 0;
    return 0;
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
        tf__sess_log_entry(s, "connect", "", "", 0, TF_EPROTO,
                           "a TLS client; this server runs --plaintext", s->timer.last_ms);
        s->in_len = 0;
        tf__sess_enter_closing(s);
        return;
    }
    if (n < 0) {
        tf__sess_fail_session(s, TF_EPROTO, "the peer is not a tcpfile client");
        return;
    }
    if (tf__wire_negotiate(TF_WIRE_VERSION, TF_WIRE_VERSION, h.version_min, h.version_max) ==
        0) {
        char why[96];
        snprintf(why, sizeof why, "no common protocol version (client %u-%u)",
                 (unsigned)h.version_min, (unsigned)h.version_max);
        tf__sess_fail_session(s, TF_EPROTO, why);
        return;
    }
    s->features = h.features & offered_features(opts(s));
    tf__sess_consume_input(s, (size_t)n);
    tf__sess_enter_idle(s);
    tf__sess_parse_input(s);
}

/* Makes room for a request whose name is longer than the small buffer. */
int tf__sess_grow_input(session *s, size_t need)
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

static int fill_input(session *s);

/* Acts on buffered input for as long as the state allows. */
void tf__sess_parse_input(session *s)
{
    if (s->state == S_HELLO) {
        on_hello(s);
        return;
    }
    if (s->state == S_RECV_TRAILER) {
        tf__sess_receive_trailer(s);
        return;
    }
    if (s->state != S_IDLE)
        return;
    if (s->skip && s->in_len)
        tf__sess_drop_skipped(s);
    if (s->ctx->stopping) {
        tf__session_close(s); /* no new requests once the server stops */
        return;
    }
    if (!s->skip && s->in_len > 0)
        tf__sess_on_request(s);
    if (s->dead || s->state != S_IDLE)
        return;
    if (tf__group_pending(s->group)) {
        /* Between requests with puts to commit: if nothing more is coming
           now, the client's pipeline has paused (it may be waiting for
           these answers), and the batch ends. */
        int more = fill_input(s);
        if (more > 0)
            tf__sess_parse_input(s);
        else if (more == 0)
            tf__sess_group_send(s);
        return;
    }
    if ((s->in_len > 0 || s->skip) && s->timer.list == &s->ctx->idle) {
        /* Part of a request is here, or the rest of a refused one's name
           is still to come: from now on it is timed as a request, so the
           I/O timeout and the minimum rate apply, not the idle timeout. */
        s->window_ms = tf__now_ms();
        s->window_bytes = 0;
        tf__sess_list_move(s, &s->ctx->active, s->window_ms);
    } else if (!s->in_len && !s->skip && !s->req && s->timer.list == &s->ctx->active) {
        /* A skipped name is over: back to waiting between requests. */
        tf__sess_list_move(s, &s->ctx->idle, tf__now_ms());
        input_shrink(s);
    }
}

/* Reads into the input buffer. Returns 1 if bytes came, 0 if none were
   ready, -1 if the session ended (closed here). */
static int fill_input(session *s)
{
    if (s->skip && s->in_len)
        tf__sess_drop_skipped(s);
    if (input_take(s) != 0) {
        tf__sess_fail_session(s, TF_ENOMEM, "out of memory");
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
        tf__sess_fail_session(s, TF_ENET,
                              n == 0 ? "the peer closed the connection mid-frame"
                                     : "receive failed");
        return -1;
    }
    s->in_len += (size_t)n;
    if (tf__sess_progressed(s, (size_t)n))
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

void tf__sess_on_events_once(session *s, uint32_t events)
{
    if (s->state == S_AUTH || s->state == S_AUTH_DELAY || s->state == S_DISK)
        return; /* not reading while a login is checked, its answer waits, or
                   the disk works for the request */
    if (s->state == S_TLS) {
        tf__sess_tls_step(s);
        return;
    }
    if (s->state == S_CLOSING) {
        drain_closing(s);
        return;
    }
    if (s->state == S_SEND) {
        if (events & (EPOLLERR | EPOLLHUP)) {
            tf__sess_fail_session(s, TF_ENET, "the connection was reset");
            return;
        }
        tf__sess_continue_send(s);
        return;
    }
    if (s->state == S_RECV_BODY) {
        tf__sess_receive_body(s);
        return;
    }
    /* S_HELLO, S_IDLE, S_RECV_TRAILER: frames through the input buffer. */
    int rc = fill_input(s);
    if (rc > 0)
        tf__sess_parse_input(s);
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
void tf__sess_read_pending(session *s)
{
    int held;
    while (!s->dead && reading(s) && (held = tf__conn_pending(&s->conn)) > 0) {
        tf__sess_on_events_once(s, EPOLLIN);
        if (!s->dead && tf__conn_pending(&s->conn) >= held)
            break;
    }
}

void tf__sess_on_events(tf__watcher *watch, uint32_t events)
{
    session *s = SESSION_OF(watch, watch);
    if (s->dead)
        return; /* closed earlier in this round of events */
    tf__sess_on_events_once(s, events);
    tf__sess_read_pending(s);
}
