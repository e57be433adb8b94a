/*
 * server.c - tf_server_*: worker threads, each with its own epoll set, that
 * accept connections and drive their sessions (session.c); the connection
 * limit, the timeouts, and a stop that lets requests in flight finish.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "netio.h"
#include "server_internal.h"

/* epoll tags that are not sessions (sessions are pointers, never this small). */
#define TAG_STOP 1u
#define TAG_LISTEN 2u /* + the listener's index */
#define ACCEPT_BATCH 64
#define CLOSING_LINGER_MS 1000
/* Refused clients waiting to read their refusal, beyond the limit, before
   the next ones are simply closed. */
#define REFUSED_MAX 1024
/* How long a worker that can neither accept nor refuse stops watching the
   listeners (out of descriptors even after giving up its spare). */
#define ACCEPT_BACKOFF_MS 100

/* ---- session bookkeeping ------------------------------------------------------ */

void tf__session_list_move(session *s, session_list *to, int64_t now_ms)
{
    session_list *from = s->list;
    if (from) {
        if (s->prev)
            s->prev->next = s->next;
        else
            from->head = s->next;
        if (s->next)
            s->next->prev = s->prev;
        else
            from->tail = s->prev;
        from->count--;
    }
    s->prev = s->next = NULL;
    s->list = to;
    if (!to)
        return;
    s->last_ms = now_ms;
    s->prev = to->tail;
    if (to->tail)
        to->tail->next = s;
    else
        to->head = s;
    to->tail = s;
    to->count++;
}

int tf__session_watch(session *s, uint32_t events)
{
    if (s->events == events)
        return 0;
    struct epoll_event ev = {.events = events, .data.ptr = s};
    int op = s->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(s->w->epfd, op, s->fd, &ev) != 0)
        return -1;
    s->events = events;
    return 0;
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
        socklen_t len = sizeof ss;
        int fd = accept4(lfd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            tf__refuse_fd(w->srv, fd, (struct sockaddr *)&ss,
                          "the server is out of file descriptors; try again later");
            close(fd);
        }
        w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd >= 0 && w->spare_fd >= 0)
            return;
    }
    if (w->listening) {
        for (int i = 0; i < w->srv->nlisten; i++)
            epoll_ctl(w->epfd, EPOLL_CTL_DEL, w->srv->listen_fds[i], NULL);
        w->listening = 0;
        w->accept_resume_ms = tf__now_ms() + ACCEPT_BACKOFF_MS;
    }
}

static int watch_listeners(worker *w)
{
    if (w->spare_fd < 0) /* first start, or lost to a race after a refusal */
        w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    for (int i = 0; i < w->srv->nlisten; i++) {
        /* EPOLLEXCLUSIVE: one worker wakes per connection, not all. */
        struct epoll_event lev = {.events = EPOLLIN | EPOLLEXCLUSIVE,
                                  .data.u64 = TAG_LISTEN + (uint64_t)i};
        if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->srv->listen_fds[i], &lev) != 0) {
            /* None or all: a listener watched while w->listening is 0
               would wake this worker for ever. */
            while (i-- > 0)
                epoll_ctl(w->epfd, EPOLL_CTL_DEL, w->srv->listen_fds[i], NULL);
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
        socklen_t len = sizeof ss;
        int fd = accept4(lfd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
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
            close(fd); /* a flood: not even a refusal */
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        session *s = tf__session_new(w, fd, (struct sockaddr *)&ss);
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

/* ---- timeouts ---------------------------------------------------------------------- */

/* Times out sessions at the head of list idle for longer than limit_ms. */
static void expire(session_list *list, int64_t limit_ms, int64_t now, int code,
                   const char *why)
{
    if (limit_ms <= 0)
        return;
    while (list->head && now - list->head->last_ms >= limit_ms)
        tf__session_timeout(list->head, code, why);
}

static void expire_all(worker *w, int64_t now)
{
    const tf_options *opt = &w->srv->opt;
    expire(&w->idle, opt->value[TF_OPT_IDLE_TIMEOUT_MS], now, TF_ETIMEDOUT, "idle timeout");
    expire(&w->active, opt->value[TF_OPT_IO_TIMEOUT_MS], now, TF_ETIMEDOUT,
           "the peer made no progress within the I/O timeout");
    expire(&w->closing, CLOSING_LINGER_MS, now, TF_OK, "");
}

/* How long epoll may sleep: until the earliest deadline at a list head. */
static int next_wait_ms(worker *w, int64_t now)
{
    const tf_options *opt = &w->srv->opt;
    int64_t wait = -1;
    struct {
        session_list *list;
        int64_t limit;
    } lists[] = {{&w->idle, opt->value[TF_OPT_IDLE_TIMEOUT_MS]},
                 {&w->active, opt->value[TF_OPT_IO_TIMEOUT_MS]},
                 {&w->closing, CLOSING_LINGER_MS}};
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        if (!lists[i].list->head || lists[i].limit <= 0)
            continue;
        int64_t left = lists[i].list->head->last_ms + lists[i].limit - now;
        if (left < 0)
            left = 0;
        if (wait < 0 || left < wait)
            wait = left;
    }
    if (w->accept_resume_ms && !w->stopping) {
        int64_t left = w->accept_resume_ms - now;
        if (left < 0)
            left = 0;
        if (wait < 0 || left < wait)
            wait = left;
    }
    if (w->stopping) {
        int64_t left = w->grace_end_ms - now;
        if (left < 0)
            left = 0;
        if (wait < 0 || left < wait)
            wait = left;
    }
    return wait > 60000 ? 60000 : (int)wait;
}

/* ---- stopping ------------------------------------------------------------------------ */

static void close_list(session_list *list)
{
    while (list->head)
        tf__session_close(list->head);
}

static void begin_stop(worker *w)
{
    tf_server *srv = w->srv;
    w->stopping = 1;
    w->grace_end_ms = tf__now_ms() + srv->opt.value[TF_OPT_STOP_GRACE_MS];
    /* The stop pipe stays readable: stop watching it, or epoll would spin. */
    epoll_ctl(w->epfd, EPOLL_CTL_DEL, srv->stop_pipe[0], NULL);
    if (w->listening) {
        for (int i = 0; i < srv->nlisten; i++)
            epoll_ctl(w->epfd, EPOLL_CTL_DEL, srv->listen_fds[i], NULL);
        w->listening = 0;
    }
    close_list(&w->idle);
    close_list(&w->closing);
    /* Active sessions: handshakes end now, requests in flight run on. */
    session *s = w->active.head;
    while (s) {
        session *next = s->next;
        tf__session_on_stop(s);
        s = next;
    }
}

static int worker_done(const worker *w)
{
    return w->stopping && !w->active.head && !w->idle.head && !w->closing.head;
}

/* ---- the worker loop --------------------------------------------------------------- */

static void run_worker(worker *w)
{
    struct epoll_event ev[64];
    while (!worker_done(w)) {
        int64_t now = tf__now_ms();
        if (w->stopping && now >= w->grace_end_ms) {
            close_list(&w->active); /* the grace period is over */
            close_list(&w->idle);
            close_list(&w->closing);
            break;
        }
        int n = epoll_wait(w->epfd, ev, 64, next_wait_ms(w, now));
        if (n < 0 && errno != EINTR)
            break;
        for (int i = 0; i < n; i++) {
            uint64_t tag = ev[i].data.u64;
            if (tag == TAG_STOP) {
                begin_stop(w);
            } else if (tag >= TAG_LISTEN && tag < TAG_LISTEN + TF_MAX_LISTEN) {
                if (!w->stopping)
                    accept_some(w, w->srv->listen_fds[tag - TAG_LISTEN]);
            } else {
                tf__session_on_events(ev[i].data.ptr, ev[i].events);
            }
        }
        if (!w->stopping && atomic_load(&w->srv->stopping))
            begin_stop(w); /* tf_server_run's own stop after a failure */
        if (!w->stopping && w->accept_resume_ms && tf__now_ms() >= w->accept_resume_ms &&
            watch_listeners(w) != TF_OK)
            w->accept_resume_ms = tf__now_ms() + ACCEPT_BACKOFF_MS;
        expire_all(w, tf__now_ms());
        tf__worker_bury(w);
    }
    tf__worker_bury(w);
}

static void *worker_main(void *arg)
{
    run_worker(arg);
    return NULL;
}

static int worker_init(worker *w, tf_server *srv, int listen)
{
    memset(w, 0, sizeof *w);
    w->srv = srv;
    w->spare_fd = -1;
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (w->epfd < 0)
        return TF_ENOMEM;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_STOP};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, srv->stop_pipe[0], &ev) != 0)
        return TF_ENOMEM;
    if (!listen)
        return TF_OK;
    return watch_listeners(w);
}

int tf__server_serve_fd(tf_server *srv, int fd, const char *peer)
{
    (void)peer;
    worker w;
    tf__sigpipe_guard guard; /* as in tf_server_run */
    tf__sigpipe_block(&guard);
    int rc = worker_init(&w, srv, 0);
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0)
        fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    if (rc == TF_OK)
        atomic_fetch_add(&srv->sessions, 1); /* tf__session_new's to drop */
    session *s = rc == TF_OK ? tf__session_new(&w, fd, NULL) : NULL;
    if (!s) {
        if (rc != TF_OK)
            close(fd);
        tf__worker_bury(&w);
        if (w.epfd >= 0)
            close(w.epfd);
        tf__worker_release(&w);
        tf__sigpipe_restore(&guard);
        return rc != TF_OK ? rc : TF_ENOMEM;
    }
    if (tf__session_greet(s) == 0) {
        /* Runs until the one session is gone (or the server stops). */
        w.stopping = 0;
        while (w.active.head || w.idle.head || w.closing.head) {
            struct epoll_event ev[8];
            int64_t now = tf__now_ms();
            int n = epoll_wait(w.epfd, ev, 8, next_wait_ms(&w, now));
            if (n < 0 && errno != EINTR)
                break;
            for (int i = 0; i < n; i++) {
                if (ev[i].data.u64 == TAG_STOP)
                    begin_stop(&w);
                else
                    tf__session_on_events(ev[i].data.ptr, ev[i].events);
            }
            if (w.stopping && tf__now_ms() >= w.grace_end_ms)
                break;
            expire_all(&w, tf__now_ms());
            tf__worker_bury(&w);
        }
        close_list(&w.active);
        close_list(&w.idle);
        close_list(&w.closing);
    }
    tf__worker_bury(&w);
    close(w.epfd);
    tf__worker_release(&w);
    tf__sigpipe_restore(&guard);
    return TF_OK;
}

int tf_server_run(tf_server *srv)
{
    if (!srv)
        return TF_EINVAL;
    tf__err_clear(&srv->err);
    if (atomic_load(&srv->stopping) || srv->workers)
        return TF_OK;
    long n = srv->opt.value[TF_OPT_WORKERS];
    if (n <= 0)
        n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n <= 0)
        n = 1;
    srv->workers = calloc((size_t)n, sizeof *srv->workers);
    if (!srv->workers)
        return tf__fail(&srv->err, TF_ENOMEM, "out of memory for %ld workers", n);
    /* Workers send with sendfile, which has no MSG_NOSIGNAL: SIGPIPE stays
       blocked in this thread, and in the workers that inherit its mask, for
       as long as the server runs, instead of around every call. */
    tf__sigpipe_guard guard;
    tf__sigpipe_block(&guard);
    int rc = TF_OK;
    for (long i = 0; i < n && rc == TF_OK; i++) {
        rc = worker_init(&srv->workers[i], srv, 1);
        if (rc != TF_OK)
            tf__fail_errno(&srv->err, rc, errno, "cannot set up worker %ld's event loop", i);
        int perr = rc == TF_OK && i > 0 ? pthread_create(&srv->workers[i].thread, NULL,
                                                         worker_main, &srv->workers[i])
                                        : 0;
        if (perr != 0)
            rc = tf__fail_errno(&srv->err, TF_ENOMEM, perr, "cannot start worker thread %ld", i);
        if (rc == TF_OK)
            srv->nworkers = (int)i + 1;
    }
    if (rc != TF_OK)
        tf_server_stop(srv);
    /* The calling thread is worker 0. */
    if (srv->nworkers > 0)
        run_worker(&srv->workers[0]);
    for (int i = 1; i < srv->nworkers; i++)
        pthread_join(srv->workers[i].thread, NULL);
    for (int i = 0; i < (int)n; i++) {
        if (srv->workers[i].epfd > 0)
            close(srv->workers[i].epfd);
        if (srv->workers[i].spare_fd > 0) /* 0: never initialised (calloc) */
            close(srv->workers[i].spare_fd);
        tf__worker_release(&srv->workers[i]);
    }
    tf__sigpipe_restore(&guard);
    /* No new clients from here on: close the listeners so connects are
       refused rather than left waiting. */
    for (int i = 0; i < srv->nlisten; i++)
        close(srv->listen_fds[i]);
    srv->nlisten = 0;
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
    s->stop_pipe[0] = s->stop_pipe[1] = -1;
    atomic_init(&s->stopping, 0);
    atomic_init(&s->sessions, 0);
    atomic_init(&s->list_bytes, 0);
    atomic_init(&s->prefix_hashed, 0);

    if (!root || !*root)
        rc = tf__fail(&s->err, TF_EINVAL, "a root directory is required");
    if (rc == TF_OK) {
        /* Every file-system call of the server goes through this. */
        tf__storage_local_config cfg = {
            .read_only = s->opt.value[TF_OPT_READ_ONLY] != 0,
            .resume_ttl_s = s->opt.value[TF_OPT_RESUME_TTL_S],
            .max_partials = (size_t)s->opt.value[TF_OPT_MAX_PARTIALS],
        };
        rc = tf__storage_local_open(&s->storage, root, &cfg, &s->err);
    }
    if (rc == TF_OK) {
        /* The name limit announced in the hello is one the root's file
           system can hold, so that a longer name is refused (EINVAL) when
           it is requested, before a put's data moves. */
        size_t fs_max = s->storage->name_max;
        if (fs_max > 0 && (int64_t)fs_max < s->opt.value[TF_OPT_MAX_NAME_LEN])
            s->opt.value[TF_OPT_MAX_NAME_LEN] = (int64_t)fs_max;
    }
    if (rc == TF_OK && make_pipe(s->stop_pipe) != 0)
        rc = tf__fail_errno(&s->err, TF_EIO, errno, "cannot create a pipe");
    if (rc == TF_OK)
        rc = tf__listen(s->listen_fds, TF_MAX_LISTEN, &s->nlisten, host, port, &s->err);
    /* Uploads cut short by a crash are debris now: no connection owns them.
       (A read-only server writes nothing under its root, not even that.) */
    if (rc == TF_OK && !s->opt.value[TF_OPT_READ_ONLY])
        s->storage->ops->sweep(s->storage, 1);
    if (rc != TF_OK) {
        if (errbuf && errlen)
            snprintf(errbuf, errlen, "%s", s->err.msg);
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
    return tf_server_address_at(s, 0, buf, len);
}

int tf_server_address_at(const tf_server *s, size_t i, char *buf, size_t len)
{
    if (!s || !buf || i >= (size_t)s->nlisten)
        return TF_EINVAL;
    struct sockaddr_storage ss;
    socklen_t slen = sizeof ss;
    if (getsockname(s->listen_fds[i], (struct sockaddr *)&ss, &slen) != 0)
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
    for (int i = 0; i < 2; i++)
        if (s->stop_pipe[i] >= 0)
            close(s->stop_pipe[i]);
    if (s->storage)
        s->storage->ops->close(s->storage);
    free(s->workers);
    free(s);
}

const char *tf_server_errmsg(const tf_server *s)
{
    return s ? s->err.msg : "";
}

int tf_serve_ex(const char *host, const char *port, const char *root, const tf_options *opt,
                char *errbuf, size_t errlen)
{
    tf_server *s;
    int rc = tf_server_open_ex(&s, host, port, root, opt, errbuf, errlen);
    if (rc != TF_OK)
        return rc;
    rc = tf_server_run(s);
    if (rc != TF_OK && errbuf && errlen)
        snprintf(errbuf, errlen, "%s", s->err.msg);
    tf_server_close(s);
    return rc;
}

int tf_serve(const char *host, const char *port, const char *root, const tf_options *opt)
{
    return tf_serve_ex(host, port, root, opt, NULL, 0);
}
