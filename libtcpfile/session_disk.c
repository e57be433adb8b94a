/*
 * session_disk.c - storage work on the server's disk pool (disk_call): the
 * session waits in S_DISK while its job runs, and resumes in the loop's
 * thread when the completion comes back.
 */
#include <stdlib.h>
#include <string.h>

#include "session_internal.h"

/* Storage-call blocks a loop keeps for reuse. */
#define DISK_POOL_MAX 64

/* ---- storage work on the disk pool (S_DISK) ---------------------------------------- */


static void disk_run(tf__work *w)
{
    session_disk *d = (session_disk *)w;
    d->fn(w->data);
}

/* A block for a storage call: one of the loop's spares, or a new one. */
static session_disk *disk_take(tf__session_ctx *ctx)
{
    session_disk *d = tf__spares_take(&ctx->spare_disk);
    if (d) {
        memset(&d->work, 0, sizeof d->work);
    } else if (!(d = calloc(1, sizeof *d))) {
        return NULL;
    }
    return d;
}

static void disk_give_back(tf__session_ctx *ctx, session_disk *d)
{
    tf__spares_give(&ctx->spare_disk, d, DISK_POOL_MAX);
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
        tf__sess_close_now(s); /* closed while the job waited or ran */
        return;
    }
    /* The time the disk took is not the peer's: its timeout starts again,
       and its minimum rate's window leaves that time out (but keeps its
       bytes: a peer trickling a payload is still measured). */
    int64_t now = tf__now_ms();
    s->state = from;
    s->window_ms += now - since;
    tf__sess_list_move(s, &s->ctx->active, now);
    if (tf__sess_watch(s, events) != 0) {
        tf__sess_fail_session(s, TF_ENET, "epoll failed");
        return;
    }
    if (status != TF_OK) { /* never ran: the pool is stopping */
        tf__sess_fail_session(s, TF_ECANCELED, "the server is stopping");
        return;
    }
    then(s);
    if (!s->dead)
        tf__sess_read_pending(s);
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
session_disk *tf__sess_disk_enter(session *s, void (*work)(session *s),
                                 void (*then)(session *s))
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
    tf__sess_list_move(s, &ctx->disk, tf__now_ms());
    /* a failure leaves it watched: on_events ignores S_DISK */
    (void)tf__sess_watch(s, 0);
    s->disk = d;
    ctx->disk_inflight++;
    return d;
}

void tf__sess_disk_wait_over(session *s)
{
    disk_done(&s->disk->work, TF_OK);
}

void tf__sess_disk_call(session *s, void (*work)(session *s), void (*then)(session *s))
{
    tf__session_ctx *ctx = s->ctx;
    session_disk *d =
        ctx->disk_pool && ctx->disk_queue.on ? tf__sess_disk_enter(s, work, then) : NULL;
    if (d) {
        if (tf__pool_submit(ctx->disk_pool, &ctx->disk_queue.q, &d->work) == TF_OK)
            return;
        /* The pool is stopping: inline, as without one. */
        uint32_t events = d->events;
        s->disk = NULL;
        ctx->disk_inflight--;
        s->state = d->from;
        disk_give_back(ctx, d);
        tf__sess_list_move(s, &ctx->active, tf__now_ms());
        if (tf__sess_watch(s, events) != 0) {
            tf__sess_fail_session(s, TF_ENET, "epoll failed");
            return;
        }
    }
    work(s);
    then(s);
}
