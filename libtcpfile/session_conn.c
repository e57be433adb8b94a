/*
 * session_conn.c - a session's life and death: the server's hello (and a
 * refusal's), the TLS handshake, creating and closing sessions, and the
 * context that one loop's sessions share (its completion queues, timer
 * lists and spares).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "auth.h"
#include "groupcommit.h"
#include "netio.h"
#include "session_internal.h"
#include "transport_tls.h"

/* How long a session that has sent its last reply waits for the peer to
   close first. */
#define CLOSING_LINGER_MS 1000

/* ---- pools' completions, back in the loop ------------------------------------------ */

static void drain_queue(tf__watcher *w, uint32_t events)
{
    (void)events;
    tf__session_queue *sq = (tf__session_queue *)((char *)w - offsetof(tf__session_queue, watch));
    tf__pool_queue_drain(&sq->q);
}

int tf__sess_queue_start(tf__session_ctx *ctx, tf__session_queue *sq)
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

int tf__sess_send_hello(session *s, int code, const char *message)
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
    tf__sess_log_entry(s, "connect", "", "", 0, TF_EPROTO, why, s->timer.last_ms);
    tf__conn_tls_to_tcp(&s->conn);
    /* Its hello is read first, so that our close is not a reset that could
       overtake the answer. */
    uint8_t sink[256];
    for (int i = 0; i < 4 && tf__conn_read(&s->conn, sink, sizeof sink) > 0; i++)
        ;
    if (tf__sess_send_hello(s, TF_EPROTO, why) != 0) {
        tf__session_close(s);
        return;
    }
    tf__sess_enter_closing(s);
}

/* The TLS handshake as a state of the loop (no thread, no blocking): under
   the I/O timeout from accept, then the hello as on a plaintext server. */
void tf__sess_tls_step(session *s)
{
    int r = tf__conn_handshake(&s->conn);
    if (r == TF__IO_AGAIN) {
        if (tf__sess_watch(s, s->conn.want) != 0)
            tf__sess_fail_session(s, TF_ENET, "epoll failed");
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
        tf__sess_fail_session(s, code ? code : TF_EPROTO,
                              msg[0] ? msg : "TLS handshake failed");
        return;
    }
    s->state = S_HELLO;
    tf__sess_list_move(s, &s->ctx->active, tf__now_ms());
    if (tf__sess_watch(s, EPOLLIN) != 0) {
        tf__sess_fail_session(s, TF_ENET, "epoll failed");
        return;
    }
    if (s->refusal) {
        tf__session_refuse(s, s->refusal->code, s->refusal->msg);
        return;
    }
    if (tf__sess_cert_login(s))
        return; /* cert_done greets */
    tf__sess_greet_tls(s);
}

/* The hello, once the handshake (and a certificate's login) is over. */
int tf__sess_greet_tls(session *s)
{
    if (tf__session_greet(s) != 0)
        return -1;
    /* The client's hello may have come with its last handshake flight. */
    tf__sess_on_events_once(s, EPOLLIN);
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
        tf__sess_auth_delay_over(s);
        return;
    }
    if (t->list == &ctx->closing || (s->state == S_IDLE && !s->req)) {
        tf__session_close(s);
        return;
    }
    tf__sess_fail_session(s, TF_ETIMEDOUT,
                          t->list == &ctx->idle
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
    s->watch.on_events = tf__sess_on_events;
    s->timer.expired = expired;
    s->free_later.fn = free_session;
    s->ctx = ctx;
    s->state = ctx->tls ? S_TLS : S_HELLO;
    s->window_ms = tf__now_ms();
    if (peer && peer->sa_family == AF_INET6)
        memcpy(&s->peer.v6, peer, sizeof s->peer.v6);
    else if (peer)
        memcpy(&s->peer.v4, peer, sizeof s->peer.v4);
    tf__sess_list_move(s, &ctx->active, s->window_ms);
    if (tf__sess_watch(s, EPOLLIN) != 0) {
        tf__session_close(s);
        return NULL;
    }
    return s;
}

int tf__session_greet(session *s)
{
    if (s->state == S_TLS)
        return 0; /* after the handshake (tls_step) */
    if (tf__sess_send_hello(s, TF_OK, NULL) != 0) {
        tf__sess_fail_session(s, TF_ENET, "cannot send the hello");
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
    tf__sess_log_entry(s, "busy", "", "", 0, code, message, s->timer.last_ms);
    if (tf__sess_send_hello(s, code, message) != 0) {
        tf__session_close(s);
        return;
    }
    tf__sess_enter_closing(s);
}

/* What closing does, once no pool thread holds the session's request. */
void tf__sess_close_now(session *s)
{
    if (tf__sess_ahead_close(s))
        return; /* the last get ahead's end comes back here */
    tf__sess_list_move(s, NULL, 0); /* off the disk list, after group_close_work */
    if (s->req)
        tf__sess_request_end(s, 1);
    tf__sess_group_close(s);
    tf__conn_close(&s->conn); /* also takes it out of the epoll set */
    atomic_fetch_sub(s->ctx->sessions, 1);
    tf__loop_defer(s->ctx->loop, &s->free_later);
}

void tf__session_close(session *s)
{
    if (s->dead)
        return;
    s->dead = 1;
    tf__sess_list_move(s, NULL, 0);
    if (!s->disk && tf__group_pending(s->group) && !s->group->committed) {
        /* Puts received whole are stored before the session goes; its
           request (if any) is over first, as the job must not use it. */
        if (s->req)
            tf__sess_request_end(s, 1);
        tf__sess_disk_call(s, tf__sess_group_close_work, tf__sess_close_now);
        return;
    }
    if (s->disk) {
        /* Its job is cancelled if it has not started; either way the rest
           waits for disk_done, as a running job uses the request. */
        tf__pool_cancel(&s->disk->work);
        return;
    }
    tf__sess_close_now(s);
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
    tf__sess_cancel_auth_jobs(ctx);
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
    tf__sess_cancel_auth_jobs(ctx);
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
    return pool ? tf__sess_queue_start(ctx, &ctx->disk_queue) : TF_OK;
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
    tf__spares_free(&ctx->spare_in);
    tf__spares_free(&ctx->spare_disk);
}
