/*
 * session_ahead.c - a session's pipelined gets opened ahead (getahead.h):
 * on a store whose calls wait on the network, the plain gets the client
 * has already sent behind the one in flight are opened on the disk pool at
 * once, and each is answered from there in its turn.
 */
#include <stdlib.h>
#include <string.h>

#include "getahead.h"
#include "session_internal.h"

/* The input a session looks ahead into while it serves a get: the small
   buffer holds about three pipelined gets. */
#define AHEAD_INPUT ((size_t)4 << 10)

/* A job of s's gets ahead is over: the session waiting for it goes on (see
   tf__sess_disk_enter); a closed one finishes closing after the last. */
static void ahead_done(void *user, int head_ready)
{
    session *s = user;
    s->ctx->disk_inflight--;
    if (head_ready && s->disk && !s->disk->fn)
        tf__sess_disk_wait_over(s);
    else if (s->dead && !s->disk && !tf__ahead_busy(s->ahead))
        tf__sess_close_now(s);
}

/* Only on a store whose calls wait on the network (the local backend's
   opens cost less than a job), and only what the client has sent. */
void tf__sess_ahead_fill(session *s)
{
    tf__session_ctx *ctx = s->ctx;
    if (!storage(s)->network || !ctx->ahead_held || !ctx->disk_queue.on || !s->in_len ||
        opts(s)->value[TF_OPT_GET_AHEAD] <= 0)
        return;
    if (!s->has_ahead) {
        tf__ahead_config cfg = {.pool = ctx->disk_pool,
                                .queue = &ctx->disk_queue.q,
                                .per_conn = (size_t)opts(s)->value[TF_OPT_GET_AHEAD],
                                .held = ctx->ahead_held,
                                .held_max = ctx->ahead_max,
                                .small_max = SMALL_BODY_MAX,
                                .on_done = ahead_done,
                                .user = s};
        if (s->refusal || tf__ahead_new(&s->ahead, &cfg) != TF_OK)
            return;
        s->has_ahead = 1;
    }
    if (s->in_cap < AHEAD_INPUT && tf__sess_grow_input(s, AHEAD_INPUT) != 0)
        return;
    if (s->in_len < s->in_cap) {
        /* The peer's end or an error: found again by the next read. */
        ssize_t n = tf__conn_read(&s->conn, s->in + s->in_len, s->in_cap - s->in_len);
        if (n > 0) {
            s->in_len += (size_t)n;
            s->window_bytes += (size_t)n;
        }
    }
    size_t off = 0, seen = 0, max_name = tf__sess_request_max_name(s);
    while (off < s->in_len) {
        tf_wire_request q;
        tf__err e;
        long n = tf__wire_decode_request(s->in + off, s->in_len - off, max_name, &q);
        if (n <= 0 || q.op != TF_OP_GET || q.flags || q.offset || q.size ||
            tf__sess_name_check(s, &q, &e) != TF_OK)
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

/* What get_open_work (session_get.c) leaves in the request, from the get
   opened ahead. */
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
            r->disk_rc = tf__sess_ensure_buf(r);
    }
    tf__sess_get_opened(s);
}

/* Every get ahead is forgotten when the one in flight is not the one
   foreseen. */
int tf__sess_ahead_use(session *s)
{
    if (!s->has_ahead)
        return 0;
    request *r = s->req;
    int head = tf__ahead_head(s->ahead, r->name);
    if (head == 0 || r->body_off != 0) {
        if (tf__ahead_count(s->ahead))
            tf__ahead_drop(s->ahead);
        return 0;
    }
    tf__sess_ahead_fill(s); /* the window moves on */
    if (head == 1)
        ahead_opened(s);
    else if (!tf__sess_disk_enter(s, NULL, ahead_opened))
        tf__sess_fail_session(s, TF_ENOMEM, "out of memory");
    return 1;
}

int tf__sess_ahead_close(session *s)
{
    if (!s->has_ahead)
        return 0;
    tf__ahead_drop(s->ahead);
    if (tf__ahead_busy(s->ahead))
        return 1;
    tf__ahead_free(s->ahead);
    s->ahead = NULL;
    s->has_ahead = 0;
    return 0;
}
