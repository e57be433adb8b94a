/*
 * threadpool.h - a few threads for blocking file-system work (open, hash,
 * fsync, rename, scan), with completions posted back to the event loop
 * that asked for them. (After libuv's src/threadpool.c: uv__work_submit,
 * and uv__work_done run by an async handle.)
 *
 * How the server uses it. The server owns one tf__pool; each worker's loop
 * owns one tf__pool_queue and watches tf__pool_queue_fd(q) for reading
 * like any other descriptor (a tf__watcher whose callback calls
 * tf__pool_queue_drain). A session that needs the disk fills a tf__work
 * embedded in itself, submits it, enters a state of its own (waiting for
 * the disk) and pauses its socket watcher and its timers, so that neither
 * its peer nor an expiry can move or free it while a pool thread holds
 * it. The job's done callback, run by the drain in the worker's own
 * thread, resumes it: reads the job's result, leaves the waiting state and
 * watches the socket again (or ends the session, when the worker is
 * stopping or status is TF_ECANCELED). A session that ends while its job
 * waits in the pool cancels it (tf__pool_cancel); a running job cannot be
 * stopped, so the session's memory stays until its done callback has run.
 * To stop, each worker calls tf__pool_queue_fini, which waits for its
 * queue's jobs in flight and runs their done callbacks, before the server
 * frees the pool.
 *
 * Threads: all of them start in tf__pool_new, with every asynchronous
 * signal blocked (SIGPIPE included) and the name "tf-pool". No global
 * state: any number of pools may exist in one process.
 *
 * Unbounded queue: jobs are caller-allocated and linked through
 * themselves, so a queued job costs the pool no memory and submitting
 * cannot fail for want of room. A bound would have to block the loop's
 * thread (what the pool exists to avoid) or fail the submit (a retry path
 * in every caller); the bound is the caller's instead: a session waits for
 * its one job, so jobs in the pool are at most the connections the server
 * admits (TF_OPT_MAX_CONNECTIONS).
 *
 * Order: jobs start in the order they were submitted, across all queues.
 * A slow job occupies one thread; the others go on with the rest.
 */
#ifndef TF_THREADPOOL_H
#define TF_THREADPOOL_H

#include <pthread.h>
#include <stddef.h>

#include "internal.h"

/* Threads when tf__pool_new is asked for 0, and the most it accepts. */
#define TF__POOL_DEFAULT_THREADS 4
#define TF__POOL_MAX_THREADS 64

typedef struct tf__pool tf__pool;
typedef struct tf__work tf__work;
typedef struct tf__pool_queue tf__pool_queue;

/* One job, allocated by its owner (usually inside a larger struct) and
   zeroed before its first use; the owner sets work, done and data before
   tf__pool_submit and keeps the memory until done has been called. The
   job's inputs and results live beside it in the owner's struct: whatever
   work writes, done may read (the queue's lock orders them). */
struct tf__work {
    /* Runs in a pool thread. Must not touch the owner's loop. */
    void (*work)(tf__work *w);
    /* Runs in the thread that drains the job's queue, exactly once per
       submit: status 0 when work ran, TF_ECANCELED when it never started
       (tf__pool_cancel, or a pool freed before it). done may free w,
       and may submit it (or another job) again. */
    void (*done)(tf__work *w, int status);
    void *data; /* the owner's */

    /* The pool's, from tf__pool_submit on. */
    tf__work *prev, *next;
    tf__pool *pool;
    tf__pool_queue *queue;
    int state;
    int status;
};

/* Where one event loop receives its finished jobs: an eventfd that is
   readable while completions wait, and the list of them. Embedded in the
   loop's struct; its fields are the pool's. */
struct tf__pool_queue {
    int efd;
    pthread_mutex_t mu;
    tf__work *head, *tail; /* finished or cancelled, not yet drained */
    size_t nready;         /* how many */
    size_t outstanding;    /* submitted, not yet drained */
};

/* Starts a pool of nthreads threads (0: TF__POOL_DEFAULT_THREADS). 0;
   TF_EINVAL for nthreads < 0 or > TF__POOL_MAX_THREADS; TF_ENOMEM when
   memory or a thread cannot be had (none is left running). *out is the
   caller's, freed with tf__pool_free. */
int tf__pool_new(tf__pool **out, int nthreads, tf__err *e);

/* The number of threads. */
int tf__pool_size(const tf__pool *pool);

/* Stops the pool: jobs not yet started are cancelled (posted to their
   queues with TF_ECANCELED), jobs running are waited for (and posted with
   0), the threads are joined and the pool freed. Every done callback then
   waits in its queue for the next drain (or tf__pool_queue_fini). NULL is
   allowed. Not from a pool thread. */
void tf__pool_free(tf__pool *pool);

/* Makes an empty queue with its eventfd. 0, or TF_ENOMEM (or TF_EIO) when
   no eventfd can be made. */
int tf__pool_queue_init(tf__pool_queue *q, tf__err *e);

/* The descriptor to watch for reading (level-triggered or edge-triggered:
   both work, as each drain empties it). */
int tf__pool_queue_fd(const tf__pool_queue *q);

/* Runs the done callbacks of the queue's finished jobs, in the calling
   thread (the loop's), in the order they finished, and returns how many
   ran. Not from a done callback. */
size_t tf__pool_queue_drain(tf__pool_queue *q);

/* Waits until every job submitted to q has had its done callback,
   draining q meanwhile (in the calling thread, the loop's), then closes
   the eventfd. Jobs those callbacks submit are waited for too. The pool
   must still exist while q has jobs waiting in it. */
void tf__pool_queue_fini(tf__pool_queue *q);

/* Queues w on pool; its done will run from a drain of q. 0, or
   TF_ECANCELED when the pool is stopping (done will not be called), or
   TF_EINVAL (w without work or done, or already submitted and not yet
   done). From any thread, pool threads included. */
int tf__pool_submit(tf__pool *pool, tf__pool_queue *q, tf__work *w);

/* Cancels w if it has not started: 1, and its done will run from a drain
   of its queue with TF_ECANCELED; 0 when it is running or finished (its
   done runs with 0) or was never submitted. From the thread that drains
   its queue (or one ordered with it), and not once its pool is freed. */
int tf__pool_cancel(tf__work *w);

#endif /* TF_THREADPOOL_H */
