/*
 * session_group.c - group commit (groupcommit.h): pipelined puts received
 * and committed together, their answers sent in order.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "groupcommit.h"
#include "session_internal.h"

/* ---- group commit (groupcommit.h) ------------------------------------------------- */

/* A group is committed once its first put has waited this long, even
   while the client's pipeline keeps flowing: a slow link's puts are
   answered (and durable) as they go, not all at the end of the stream. */
#define GROUP_AGE_MS 200

/* Whether q may join the session's group: a pipelined put (NO_GOAHEAD)
   of known size, small enough, while the group has room and is young. */
int tf__sess_group_takes(const session *s, const tf_wire_request *q)
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
        int code = tf__sess_code_for_peer(s, en->rc);
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
        tf__sess_log_entry(s, "put", tf__group_name(g, i), "", en->bytes, en->rc, msg,
                           en->started_ms);
    }
    tf__group_clear(g);
    if (rc != TF_OK) {
        tf__sess_fail_session(s, TF_ENOMEM,
                              "out of memory for the answers of pipelined puts");
        return;
    }
    tf__sess_start_send(s, AFTER_IDLE);
}

/* The batch ends (the client's pipeline paused, a request of another kind
   is next, or the group is full): one disk job commits it, then its
   answers go out; a request still buffered waits for sent(). The request
   begun here only carries them (not logged). */
void tf__sess_group_send(session *s)
{
    request *r = tf__sess_request_begin(s, TF_OP_PUT);
    if (!r) {
        tf__sess_fail_session(s, TF_ENOMEM, "out of memory");
        return;
    }
    r->grouped = 1;
    tf__sess_disk_call(s, group_commit_work, group_committed);
}

/* A grouped put is over (its answer waits in the group): the next
   request, which may be buffered already. */
static void group_next(session *s)
{
    tf__sess_request_end(s, 0);
    tf__sess_enter_idle(s);
    if (tf__sess_watch(s, EPOLLIN) != 0) {
        tf__session_close(s);
        return;
    }
    tf__sess_parse_input(s);
}

/* Adds the current put's answer to the group: stored by the commit (up
   not NULL), or decided now (rc, with the request's message). */
void tf__sess_group_put(session *s, int rc, uint8_t resp_flags)
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
        tf__sess_fail_session(s, TF_ENOMEM, "out of memory");
        return;
    }
    r->grouped = 1;
    group_next(s);
}

/* The session ends with puts received and not answered: they are stored
   all the same (their trailers came whole), as a put whose answer could
   not be sent always was (tf__session_close commits them on the pool
   first, group_close_work); the log says what became of each. */
void tf__sess_group_close_work(session *s)
{
    tf__group_commit(s->group, storage(s));
}

void tf__sess_group_close(session *s)
{
    tf__group *g = s->group;
    if (tf__group_pending(g)) {
        if (!g->committed) /* the pool was stopping: no job ran it */
            tf__group_commit(g, storage(s));
        for (size_t i = 0; i < g->n; i++)
            tf__sess_log_entry(
                s, "put", tf__group_name(g, i), "", g->v[i].bytes, g->v[i].rc,
                g->v[i].rc == TF_OK ? "" : tf__group_message(g, i), g->v[i].started_ms);
        tf__group_clear(g);
    }
    tf__group_free(g, storage(s));
    s->group = NULL;
}
