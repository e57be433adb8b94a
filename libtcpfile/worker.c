/*
 * worker.c - one server thread: its event loop (loop.h) with the stop pipe,
 * the listeners and the sessions (session.h) in it; accepting, the
 * connection limit, and a stop that lets requests in flight finish. The
 * same loop serves one given connection (tf__server_serve_fd).
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "netio.h"
#include "server_internal.h"
#include "smallcache.h"

#define ACCEPT_BATCH 64
/* Refused clients waiting to read their refusal, beyond the limit, before
   the next ones are simply closed. */
#define REFUSED_MAX 1024
/* How long a worker that can neither accept nor refuse stops watching the
   listeners (out of descriptors even after giving up its spare). */
#define ACCEPT_BACKOFF_MS 100

static void unwatch_listeners(worker *w)
{
    for (int i = 0; i < w->srv->nlisten; i++)
        tf__loop_watch(&w->loop, &w->listeners[i].watch, 0);
    w->listening = 0;
}

/* ---- accepting ------------------------------------------------------------------ */

/* Out of descriptors, a level-triggered listener stays readable and the
   worker would spin on it. The spare descriptor (/dev/null, one per worker)
   is given up to take the waiting connection, which is told the server is
   full and closed, and is then taken back. If that cannot be done either,
   the worker stops watching the listeners for ACCEPT_BACKOFF_MS. */
static void refuse_unaccepted(worker *w, int lfd)
{
    if (w->spare_fd >= 0) {
        close(w->spare_fd);
        w->spare_fd = -1;
        struct sockaddr_storage ss = {0};
        int fd = tf__accept(lfd, &ss, 0);
        if (fd >= 0) {
            tf__conn c;
            tf__conn_tcp(&c, fd, 1);
            tf__refuse_conn(&w->srv->opt, &c, (struct sockaddr *)&ss,
                            "the server is out of file descriptors; try again later");
            tf__conn_close(&c);
        }
        w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd >= 0 && w->spare_fd >= 0)
            return;
    }
    if (w->listening) {
        unwatch_listeners(w);
        w->accept_resume_ms = tf__now_ms() + ACCEPT_BACKOFF_MS;
    }
}

static int watch_listeners(worker *w)
{
    if (w->spare_fd < 0) /* first start, or lost to a race after a refusal */
        w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    for (int i = 0; i < w->srv->nlisten; i++) {
        /* EPOLLEXCLUSIVE: one worker wakes per connection, not all. */
        if (tf__loop_watch(&w->loop, &w->listeners[i].watch, EPOLLIN | EPOLLEXCLUSIVE) != 0) {
            /* None or all: a listener watched while w->listening is 0
               would wake this worker for ever. (errno kept for
               tf_server_errmsg.) */
            int err = errno;
            while (i-- > 0)
                tf__loop_watch(&w->loop, &w->listeners[i].watch, 0);
            errno = err;
            return TF_ENET;
        }
    }
    w->listening = 1;
    w->accept_resume_ms = 0;
    return TF_OK;
}

static void accept_some(worker *w, int lfd)
{
    tf_server *srv = w->srv;
    long max = (long)srv->opt.value[TF_OPT_MAX_CONNECTIONS];
    for (int i = 0; i < ACCEPT_BATCH && w->listening; i++) {
        struct sockaddr_storage ss;
        int fd = tf__accept(lfd, &ss, 1);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                refuse_unaccepted(w, lfd);
            return; /* EAGAIN: another worker took it, or none left */
        }
        /* Counted before it is checked, in one step, so that workers
           accepting at the same time cannot both take the last place. */
        long open = atomic_fetch_add(&srv->sessions, 1);
        if (open >= max + REFUSED_MAX) {
            atomic_fetch_sub(&srv->sessions, 1);
            tf__conn c;
            tf__conn_tcp(&c, fd, 1);
            tf__conn_close(&c); /* a flood: not even a refusal */
            continue;
        }
        session *s = tf__session_new(&w->ctx, fd, (struct sockaddr *)&ss);
        if (!s)
            continue;
        if (open >= max) {
            char msg[96];
            snprintf(msg, sizeof msg, "the server is full (%ld connection%s); try again later",
                     max, max == 1 ? "" : "s");
            tf__session_refuse(s, TF_EBUSY, msg);
        } else {
            tf__session_greet(s);
        }
    }
}

static void on_listener(tf__watcher *watch, uint32_t events)
{
    (void)events;
    tf__listener *l = (tf__listener *)((char *)watch - offsetof(tf__listener, watch));
    if (!l->w->ctx.stopping)
        accept_some(l->w, watch->fd);
}

/* ---- stopping ------------------------------------------------------------------------ */

static void begin_stop(worker *w)
{
    tf_server *srv = w->srv;
    w->ctx.stopping = 1;
    w->grace_end_ms = tf__now_ms() + srv->opt.value[TF_OPT_STOP_GRACE_MS];
    /* The stop pipe stays readable: stop watching it, or epoll would spin. */
    tf__loop_watch(&w->loop, &w->stop_watch, 0);
    if (w->listening)
        unwatch_listeners(w);
    tf__session_ctx_stop(&w->ctx);
}

static void on_stop_pipe(tf__watcher *watch, uint32_t events)
{
    (void)events;
    begin_stop((worker *)((char *)watch - offsetof(worker, stop_watch)));
}

static int worker_done(const worker *w)
{
    return (w->ctx.stopping || w->serve_one) && tf__session_ctx_empty(&w->ctx);
}

/* ---- the loop ------------------------------------------------------------------------ */

static int until(int64_t when, int64_t now, int wait)
{
    int64_t left = when > now ? when - now : 0;
    return wait < 0 || left < wait ? (int)(left > 60000 ? 60000 : left) : wait;
}

void tf__worker_run(worker *w)
{
    while (!worker_done(w)) {
        int64_t now = tf__now_ms();
        if (w->ctx.stopping && now >= w->grace_end_ms)
            break; /* the grace period is over */
        int wait = -1;
        if (w->accept_resume_ms && !w->ctx.stopping)
            wait = until(w->accept_resume_ms, now, wait);
        if (w->ctx.stopping)
            wait = until(w->grace_end_ms, now, wait);
        if (tf__loop_run_once(&w->loop, wait) < 0)
            break;
        if (!w->ctx.stopping && !w->serve_one && atomic_load(&w->srv->stopping))
            begin_stop(w); /* tf_server_run's own stop after a failure */
        if (!w->ctx.stopping && w->accept_resume_ms && tf__now_ms() >= w->accept_resume_ms &&
            watch_listeners(w) != TF_OK)
            w->accept_resume_ms = tf__now_ms() + ACCEPT_BACKOFF_MS;
    }
    tf__session_ctx_close_all(&w->ctx);
    tf__loop_run_deferred(&w->loop);
}

int tf__worker_init(worker *w, tf_server *srv, int listen)
{
    memset(w, 0, sizeof *w);
    w->srv = srv;
    w->spare_fd = -1;
    int rc = tf__loop_init(&w->loop);
    if (rc != TF_OK)
        return rc;
    rc = tf__session_ctx_init(&w->ctx, &w->loop, &srv->opt);
    if (rc != TF_OK)
        return rc;
    w->ctx.storage = srv->storage;
    w->ctx.tls = srv->tls;
    w->ctx.sessions = &srv->sessions;
    w->ctx.list_bytes = &srv->list_bytes;
    w->ctx.ahead_held = &srv->ahead_held;
    w->ctx.ahead_max = srv->ahead_max;
    w->ctx.prefix_hashed = &srv->prefix_hashed;
    /* NULL (none) when turned off or without memory: gets still work. */
    w->ctx.small_cache = tf__small_cache_new((size_t)srv->opt.value[TF_OPT_SMALL_CACHE]);
    if (srv->auth && (rc = tf__session_ctx_auth(&w->ctx, srv->auth)) != TF_OK)
        return rc;
    if ((rc = tf__session_ctx_disk(&w->ctx, srv->disk_pool)) != TF_OK)
        return rc;
    w->stop_watch.fd = srv->stop_pipe[0];
    w->stop_watch.on_events = on_stop_pipe;
    if (tf__loop_watch(&w->loop, &w->stop_watch, EPOLLIN) != 0)
        return TF_ENOMEM;
    for (int i = 0; i < srv->nlisten; i++) {
        w->listeners[i].watch.fd = srv->listen_fds[i];
        w->listeners[i].watch.on_events = on_listener;
        w->listeners[i].w = w;
    }
    if (!listen)
        return TF_OK;
    return watch_listeners(w);
}

void tf__worker_destroy(worker *w)
{
    if (!w->srv)
        return; /* never initialised (calloc) */
    tf__session_ctx_queues_fini(&w->ctx); /* never run: nothing was ever queued */
    tf__loop_close(&w->loop);
    if (w->spare_fd >= 0)
        close(w->spare_fd);
    w->spare_fd = -1;
    tf__session_ctx_release(&w->ctx);
    tf__small_cache_free(w->ctx.small_cache);
    w->ctx.small_cache = NULL;
}
