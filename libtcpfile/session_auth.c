/*
 * session_auth.c - users (issue 13): the rights each operation needs,
 * logins by token (AUTH) and by client certificate, checked on the auth
 * pool, and the delayed answer to a failed one.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include <openssl/crypto.h>

#include "auth.h"
#include "session_internal.h"
#include "transport_tls.h"

/* ---- users: logins and rights (issue 13) ---------------------------------------- */


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

int tf__sess_check_rights(session *s, uint8_t op)
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
        return tf__fail(&s->req->err, TF_EACCES,
                        "user %s has read access only: %s needs write", s->user->info.name,
                        tf__sess_op_label(op));
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

void tf__sess_auth_delay_over(session *s)
{
    tf__sess_reply_failure(s, s->req->result, AFTER_IDLE);
    tf__sess_read_pending(s); /* resumed by a timer, not by epoll: see auth_done */
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
        tf__sess_fail_session(s, TF_ENOMEM, "out of memory");
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
        tf__sess_queue_head(s, TF_OK, 0, 0, NULL);
        tf__sess_start_send(s, AFTER_IDLE);
        /* Resumed from the pool's queue, not by epoll: a request the
           client sent right behind its AUTH may already be decrypted
           inside TLS, where no event will announce it. */
        tf__sess_read_pending(s);
        return;
    }
    int rc = j->rc;
    int guessed = rc == TF_EACCES && !j->info.name[0]; /* the token was wrong */
    tf__err_take(&r->err, &j->err);
    tf__auth_job_free(j);
    r->result = rc;
    int64_t wait = guessed ? tf__auth_failed(ctx->auth, peer) : 0;
    if (wait <= 0) {
        tf__sess_reply_failure(s, rc, AFTER_IDLE);
        tf__sess_read_pending(s);
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
    tf__sess_list_move(s, NULL, 0);
    (void)tf__sess_watch(s, 0); /* a failure leaves it watched: on_events ignores S_AUTH */
    return TF_OK;
}


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
    tf__sess_list_move(s, &ctx->active, tf__now_ms());
    char fp[TF__FP_SIZE];
    tf__conn_peer_identity(&s->conn, fp, NULL, 0);
    if (j->rc == TF_OK) {
        if (take_user(s, j) != 0)
            return;
        tf__sess_log_entry(s, "auth", fp, "", 0, TF_OK, "", s->window_ms);
    } else if (j->rc != TF_ENOENT) {
        /* The certificate is a user's whose directory cannot be opened:
           told at the hello, as a token login of that user would be told
           in its reply. */
        tf__sess_log_entry(s, "auth", fp, "", 0, j->rc, j->err.msg, s->window_ms);
        int sent = tf__sess_send_hello(s, j->rc, j->err.msg) == 0;
        tf__auth_job_free(j);
        if (sent)
            tf__sess_enter_closing(s);
        else
            tf__session_close(s);
        return;
    }
    tf__auth_job_free(j);
    if (tf__sess_watch(s, EPOLLIN) != 0) {
        tf__sess_fail_session(s, TF_ENET, "epoll failed");
        return;
    }
    if (tf__sess_greet_tls(s) == 0)
        tf__sess_read_pending(s);
}

/* After the handshake: a client certificate that is a user's makes the
   session that user before the hello (a pool job: opening the user's
   directory may block). 1 when a lookup was started, 0 when there is
   none to make. */
int tf__sess_cert_login(session *s)
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

void tf__sess_on_auth(session *s)
{
    tf_wire_auth a;
    long n = tf__wire_decode_auth(s->in, s->in_len, &a);
    if (n == TF_WIRE_NEED_MORE) {
        if (s->in_len >= TF_WIRE_AUTH_SIZE &&
            tf__sess_grow_input(s, TF_WIRE_AUTH_SIZE + (size_t)a.user_len + a.token_len))
            tf__sess_fail_session(s, TF_ENOMEM, "out of memory");
        return;
    }
    request *r = tf__sess_request_begin(s, TF_OP_AUTH);
    if (!r) {
        tf__sess_fail_session(s, TF_ENOMEM, "out of memory");
        return;
    }
    if (n < 0) {
        /* Not skippable: its lengths are what is wrong. */
        tf__fail(&r->err, TF_EPROTO,
                 n == TF_ETOOBIG ? "the auth request's user name or token is over the limit"
                                 : "malformed auth request");
        tf__sess_reply_failure(s, TF_EPROTO, AFTER_CLOSE);
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
    tf__sess_consume_input(s, (size_t)n);
    OPENSSL_cleanse(s->in + s->in_len, was - s->in_len);
    if (rc != TF_OK) {
        tf__sess_reply_failure(s, rc, AFTER_IDLE);
        return;
    }
    if (auth_submit(s, j, auth_done) != TF_OK) {
        tf__fail(&r->err, TF_EBUSY, "the server is stopping");
        tf__sess_reply_failure(s, TF_EBUSY, AFTER_CLOSE);
    }
}

/* Jobs not started yet are cancelled (their auth_done closes them); the
   running ones end on their own. */
void tf__sess_cancel_auth_jobs(tf__session_ctx *ctx)
{
    for (tf__auth_job *j = ctx->auth_jobs; j; j = j->next)
        tf__pool_cancel(&j->work);
}

int tf__session_ctx_auth(tf__session_ctx *ctx, struct tf__auth *auth)
{
    ctx->auth = auth;
    return tf__sess_queue_start(ctx, &ctx->auth_queue);
}
