/*
 * threadpool.c - the pool's threads, its queue of jobs, and the queues of
 * finished jobs that each event loop drains (threadpool.h says how the
 * server uses them).
 *
 * Two kinds of lock, never held together: the pool's mutex guards its
 * queue of jobs not yet started (and each job's state while it is in the
 * pool); each tf__pool_queue's mutex guards its list of finished jobs and
 * its count of jobs in flight. A job passes from the first to the second
 * when it finishes or is cancelled (post), and leaves the second when a
 * drain takes it; from then on only its done callback touches it.
 */
#include "threadpool.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

enum {
    WORK_IDLE = 0, /* never submitted, or its done has been called */
    WORK_QUEUED,   /* in the pool's queue: may be cancelled */
    WORK_RUNNING,  /* taken by a thread, or finished and not yet drained */
};

struct tf__pool {
    pthread_mutex_t mu;
    pthread_cond_t wake; /* a job was queued, or the pool is stopping */
    tf__work *head, *tail;
    int stopping;
    int nthreads;
    pthread_t threads[];
};

/* Hands w to the loop that waits for it. The eventfd is written under the
   queue's lock: once the lock is released a drain may run w's done and
   tf__pool_queue_fini may close the descriptor, so nothing of w or q is
   touched after it. The first finished job of an empty list is the only
   one that writes; the drain that empties the list resets the count. */
static void post(tf__work *w, int status)
{
    tf__pool_queue *q = w->queue;
    w->status = status;
    w->next = NULL;
    pthread_mutex_lock(&q->mu);
    int was_empty = q->head == NULL;
    if (q->tail)
        q->tail->next = w;
    else
        q->head = w;
    q->tail = w;
    q->nready++;
    if (was_empty) {
        uint64_t one = 1;
        /* Fails only when the count would overflow, which leaves the
           descriptor readable all the same. */
        ssize_t n = write(q->efd, &one, sizeof one);
        (void)n;
    }
    pthread_mutex_unlock(&q->mu);
}

static void unlink_job(tf__pool *p, tf__work *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        p->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        p->tail = w->prev;
    w->prev = w->next = NULL;
}

static void *pool_thread(void *arg)
{
    tf__pool *p = arg;
    /* Shown by ps -L, top -H and gdb; the name is at most 15 bytes. */
    pthread_setname_np(pthread_self(), "tf-pool");
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stopping && p->head == NULL)
            pthread_cond_wait(&p->wake, &p->mu);
        /* Stopping: what is still queued is tf__pool_free's to cancel. */
        if (p->stopping)
            break;
        tf__work *w = p->head;
        unlink_job(p, w);
        w->state = WORK_RUNNING;
        pthread_mutex_unlock(&p->mu);
        w->work(w);
        post(w, 0); /* w may be freed from here on */
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Wakes and joins the first n threads, cancels every queued job, and
   frees p. */
static void stop_and_free(tf__pool *p, int n)
{
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    tf__work *w = p->head;
    p->head = p->tail = NULL;
    for (tf__work *c = w; c; c = c->next)
        c->state = WORK_RUNNING; /* no longer cancellable: on its way to its queue */
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    while (w) {
        tf__work *next = w->next; /* post rewrites w->next */
        w->prev = NULL;
        post(w, TF_ECANCELED);
        w = next;
    }
    for (int i = 0; i < n; i++)
        pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

int tf__pool_new(tf__pool **out, int nthreads, tf__err *e)
{
    if (!out)
        return tf__fail(e, TF_EINVAL, "no place for the pool");
    *out = NULL;
    if (nthreads == 0)
        nthreads = TF__POOL_DEFAULT_THREADS;
    if (nthreads < 0 || nthreads > TF__POOL_MAX_THREADS)
        return tf__fail(e, TF_EINVAL, "%d threads asked for the pool (1 to %d)", nthreads,
                        TF__POOL_MAX_THREADS);
    tf__pool *p = calloc(1, sizeof *p + (size_t)nthreads * sizeof p->threads[0]);
    if (!p)
        return tf__fail(e, TF_ENOMEM, "no memory for a pool of %d threads", nthreads);
    p->nthreads = nthreads;
    int err = pthread_mutex_init(&p->mu, NULL);
    if (err) {
        free(p);
        return tf__fail_errno(e, TF_ENOMEM, err, "cannot make the pool's lock");
    }
    err = pthread_cond_init(&p->wake, NULL);
    if (err) {
        pthread_mutex_destroy(&p->mu);
        free(p);
        return tf__fail_errno(e, TF_ENOMEM, err, "cannot make the pool's condition");
    }

    /* The threads inherit this mask: no asynchronous signal is ever run
       on a pool thread (SIGPIPE from a write to a network file system
       included), so the application's handlers run where it expects
       them. The synchronous ones stay open, as blocking them when they
       are raised by a fault is undefined. */
    sigset_t all, old;
    sigfillset(&all);
    static const int faults[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS};
    for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++)
        sigdelset(&all, faults[i]);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int started = 0;
    for (; started < nthreads; started++) {
        err = pthread_create(&p->threads[started], NULL, pool_thread, p);
        if (err)
            break;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err) {
        stop_and_free(p, started);
        return tf__fail_errno(e, TF_ENOMEM, err, "cannot start thread %d of the pool's %d",
                              started + 1, nthreads);
    }
    *out = p;
    return TF_OK;
}

int tf__pool_size(const tf__pool *pool)
{
    return pool ? pool->nthreads : 0;
}

void tf__pool_free(tf__pool *pool)
{
    if (pool)
        stop_and_free(pool, pool->nthreads);
}

int tf__pool_queue_init(tf__pool_queue *q, tf__err *e)
{
    memset(q, 0, sizeof *q);
    q->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (q->efd < 0) {
        int err = errno;
        q->efd = -1;
        return tf__fail_errno(e, err == ENOMEM ? TF_ENOMEM : TF_EIO, err,
                              "cannot make an eventfd for the pool's completions");
    }
    int err = pthread_mutex_init(&q->mu, NULL);
    if (err) {
        close(q->efd);
        q->efd = -1;
        return tf__fail_errno(e, TF_ENOMEM, err, "cannot make the completion queue's lock");
    }
    return TF_OK;
}

int tf__pool_queue_fd(const tf__pool_queue *q)
{
    return q->efd;
}

size_t tf__pool_queue_drain(tf__pool_queue *q)
{
    /* The count is reset and the list taken under one lock, so a job that
       finishes after this finds the list empty and writes again. */
    pthread_mutex_lock(&q->mu);
    uint64_t count;
    ssize_t n = read(q->efd, &count, sizeof count);
    (void)n; /* EAGAIN: nothing was written, or a drain already read it */
    tf__work *w = q->head;
    q->head = q->tail = NULL;
    /* No longer outstanding: their done runs before this drain returns,
       which is all tf__pool_queue_fini needs. */
    q->outstanding -= q->nready;
    q->nready = 0;
    pthread_mutex_unlock(&q->mu);

    size_t ran = 0;
    while (w) {
        tf__work *next = w->next; /* done may free w or submit it again */
        w->next = NULL;
        w->state = WORK_IDLE;
        w->pool = NULL;
        w->done(w, w->status);
        ran++;
        w = next;
    }
    return ran;
}

void tf__pool_queue_fini(tf__pool_queue *q)
{
    if (q->efd < 0)
        return;
    for (;;) {
        tf__pool_queue_drain(q);
        pthread_mutex_lock(&q->mu);
        size_t left = q->outstanding;
        pthread_mutex_unlock(&q->mu);
        if (left == 0)
            break;
        struct pollfd pfd = {.fd = q->efd, .events = POLLIN};
        while (poll(&pfd, 1, -1) < 0 && errno == EINTR)
            ;
    }
    close(q->efd);
    q->efd = -1;
    pthread_mutex_destroy(&q->mu);
}

int tf__pool_submit(tf__pool *pool, tf__pool_queue *q, tf__work *w)
{
    if (!pool || !q || !w || !w->work || !w->done)
        return TF_EINVAL;
    /* Counted before any thread can finish it, so that a drain never
       sees a job its queue does not count (and taken back on refusal). */
    pthread_mutex_lock(&q->mu);
    q->outstanding++;
    pthread_mutex_unlock(&q->mu);
    pthread_mutex_lock(&pool->mu);
    int rc = pool->stopping ? TF_ECANCELED : w->state != WORK_IDLE ? TF_EINVAL : TF_OK;
    if (rc != TF_OK) {
        pthread_mutex_unlock(&pool->mu);
        pthread_mutex_lock(&q->mu);
        q->outstanding--;
        pthread_mutex_unlock(&q->mu);
        return rc;
    }
    w->pool = pool;
    w->queue = q;
    w->state = WORK_QUEUED;
    w->status = 0;
    w->next = NULL;
    w->prev = pool->tail;
    if (pool->tail)
        pool->tail->next = w;
    else
        pool->head = w;
    pool->tail = w;
    pthread_cond_signal(&pool->wake);
    pthread_mutex_unlock(&pool->mu);
    return TF_OK;
}

int tf__pool_cancel(tf__work *w)
{
    tf__pool *p = w ? w->pool : NULL;
    if (!p)
        return 0;
    pthread_mutex_lock(&p->mu);
    if (w->state != WORK_QUEUED) {
        pthread_mutex_unlock(&p->mu);
        return 0;
    }
    unlink_job(p, w);
    w->state = WORK_RUNNING; /* on its way to its queue, as a finished job */
    pthread_mutex_unlock(&p->mu);
    post(w, TF_ECANCELED);
    return 1;
}
