/*
 * test_threadpool.c - the pool for blocking work (threadpool.h) on its own:
 * the test is the event loop, polling each queue's eventfd and draining it,
 * so every done callback must come back on the test's thread. No sockets,
 * no files.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cmocka_main.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "threadpool.h"

/* A drain that does not complete by then fails the test rather than hang. */
#define WAIT_LIMIT_MS 10000

/* Holds jobs inside work until opened; counts the jobs that got there. */
typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int open;
    int arrived;
} gate;

typedef struct job {
    tf__work w;
    /* Written by work (in a pool thread), read after done. */
    int runs;
    pthread_t work_thread;
    sigset_t work_mask;
    char work_name[16];
    /* Written by done (on the loop thread). */
    int dones;
    int status;
    pthread_t done_thread;
    tf__pool_queue *drained_by;
    /* Inputs. */
    int sleep_ms;
    gate *gate;
    atomic_int finished; /* work has returned; read while it may run */
    int resubmit;        /* done submits the job again this many times */
    tf__pool *pool;
    tf__pool_queue *queue;
} job;

/* The queue being drained by the test, for done to record; and the
   number of done callbacks so far. Both the loop thread's alone. */
static tf__pool_queue *draining;
static int done_total;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static void gate_init(gate *g)
{
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cond, NULL);
    g->open = 0;
    g->arrived = 0;
}

static void gate_destroy(gate *g)
{
    pthread_cond_destroy(&g->cond);
    pthread_mutex_destroy(&g->mu);
}

static void gate_pass(gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->arrived++;
    pthread_cond_broadcast(&g->cond);
    while (!g->open)
        pthread_cond_wait(&g->cond, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void gate_wait_arrived(gate *g, int n)
{
    pthread_mutex_lock(&g->mu);
    while (g->arrived < n)
        pthread_cond_wait(&g->cond, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void gate_open(gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = 1;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->mu);
}

static void job_work(tf__work *w)
{
    job *j = w->data;
    j->runs++;
    j->work_thread = pthread_self();
    pthread_sigmask(SIG_BLOCK, NULL, &j->work_mask);
    pthread_getname_np(pthread_self(), j->work_name, sizeof j->work_name);
    if (j->gate)
        gate_pass(j->gate);
    if (j->sleep_ms > 0)
        sleep_ms(j->sleep_ms);
    atomic_store(&j->finished, 1);
}

static void job_done(tf__work *w, int status)
{
    job *j = w->data;
    j->dones++;
    done_total++;
    j->status = status;
    j->done_thread = pthread_self();
    j->drained_by = draining;
    if (j->resubmit > 0) {
        j->resubmit--;
        assert_int_equal(tf__pool_submit(j->pool, j->queue, &j->w), TF_OK);
    }
}

static void job_init(job *j)
{
    memset(j, 0, sizeof *j);
    j->w.work = job_work;
    j->w.done = job_done;
    j->w.data = j;
}

static int64_t elapsed_ms(int64_t since)
{
    return tf__now_ms() - since;
}

/* The test's event loop: polls the queues' eventfds and drains those that
   are readable until *count reaches want; fails after WAIT_LIMIT_MS. */
static void loop_until(tf__pool_queue **qs, int nq, const int *count, int want)
{
    int64_t start = tf__now_ms();
    while (*count < want) {
        struct pollfd pfd[4];
        assert_true(nq <= 4);
        for (int i = 0; i < nq; i++)
            pfd[i] = (struct pollfd){.fd = tf__pool_queue_fd(qs[i]), .events = POLLIN};
        int left = WAIT_LIMIT_MS - (int)elapsed_ms(start);
        assert_true(left > 0);
        int n = poll(pfd, (nfds_t)nq, left);
        assert_true(n >= 0);
        for (int i = 0; i < nq; i++) {
            if (pfd[i].revents & POLLIN) {
                draining = qs[i];
                tf__pool_queue_drain(qs[i]);
                draining = NULL;
            }
        }
    }
}

/* The dones of jobs[0..n). */
static int total_dones(const job *jobs, int n)
{
    int sum = 0;
    for (int i = 0; i < n; i++)
        sum += jobs[i].dones;
    return sum;
}

/* Polls until jobs[0..n) all have their done, draining q. */
static void drain_jobs(tf__pool_queue *q, job *jobs, int n)
{
    int64_t start = tf__now_ms();
    while (total_dones(jobs, n) < n) {
        struct pollfd pfd = {.fd = tf__pool_queue_fd(q), .events = POLLIN};
        int left = WAIT_LIMIT_MS - (int)elapsed_ms(start);
        assert_true(left > 0);
        assert_true(poll(&pfd, 1, left) >= 0);
        if (pfd.revents & POLLIN) {
            draining = q;
            tf__pool_queue_drain(q);
            draining = NULL;
        }
    }
}

static int readable(tf__pool_queue *q, int timeout_ms)
{
    struct pollfd pfd = {.fd = tf__pool_queue_fd(q), .events = POLLIN};
    int n = poll(&pfd, 1, timeout_ms);
    assert_true(n >= 0);
    return n == 1 && (pfd.revents & POLLIN);
}

/* A pool of `threads` threads and one queue for it (asserting success). */
static tf__pool *pool_with_queue(int threads, tf__pool_queue *q)
{
    tf__err e = {{0}};
    tf__pool *pool;
    assert_int_equal(tf__pool_new(&pool, threads, &e), TF_OK);
    assert_int_equal(tf__pool_queue_init(q, &e), TF_OK);
    return pool;
}

/* ------------------------------------------------------------------------ */

static void test_threadpool_new_arguments(void **state)
{
    (void)state;
    tf__err e = {{0}};
    tf__pool *pool = (tf__pool *)&e;
    assert_int_equal(tf__pool_new(&pool, -1, &e), TF_EINVAL);
    assert_null(pool);
    tf__err_clear(&e); /* the first message of a failure wins */
    assert_int_equal(tf__pool_new(&pool, TF__POOL_MAX_THREADS + 1, &e), TF_EINVAL);
    assert_non_null(strstr(e.msg, "65 threads"));
    assert_int_equal(tf__pool_new(NULL, 1, &e), TF_EINVAL);

    assert_int_equal(tf__pool_new(&pool, 0, &e), TF_OK);
    assert_int_equal(tf__pool_size(pool), TF__POOL_DEFAULT_THREADS);
    tf__pool_free(pool);
    assert_int_equal(tf__pool_new(&pool, TF__POOL_MAX_THREADS, &e), TF_OK);
    assert_int_equal(tf__pool_size(pool), TF__POOL_MAX_THREADS);

    /* A job needs both callbacks, and is in the pool at most once. */
    tf__pool_queue q;
    assert_int_equal(tf__pool_queue_init(&q, &e), TF_OK);
    job j;
    job_init(&j);
    j.w.done = NULL;
    assert_int_equal(tf__pool_submit(pool, &q, &j.w), TF_EINVAL);
    j.w.done = job_done;
    j.w.work = NULL;
    assert_int_equal(tf__pool_submit(pool, &q, &j.w), TF_EINVAL);
    j.w.work = job_work;
    gate g;
    gate_init(&g);
    j.gate = &g;
    assert_int_equal(tf__pool_submit(pool, &q, &j.w), TF_OK);
    assert_int_equal(tf__pool_submit(pool, &q, &j.w), TF_EINVAL);
    gate_wait_arrived(&g, 1);
    assert_int_equal(tf__pool_submit(pool, &q, &j.w), TF_EINVAL); /* running */
    gate_open(&g);
    drain_jobs(&q, &j, 1);
    assert_int_equal(j.runs, 1);
    assert_int_equal(j.dones, 1);
    /* Once done has run, it may go again. */
    assert_int_equal(tf__pool_submit(pool, &q, &j.w), TF_OK);
    tf__pool_queue_fini(&q);
    assert_int_equal(j.runs, 2);
    assert_int_equal(j.dones, 2);

    tf__pool_free(pool);
    tf__pool_free(NULL);
    gate_destroy(&g);
}

/* The work runs elsewhere; its done waits for the loop's drain, which the
   eventfd announces, and runs on the loop's thread; a drain empties the
   eventfd, so a level-triggered watcher does not spin. */
static void test_threadpool_done_on_loop_thread(void **state)
{
    (void)state;
    tf__pool_queue q;
    tf__pool *pool = pool_with_queue(2, &q);
    assert_true(tf__pool_queue_fd(&q) >= 0);
    assert_false(readable(&q, 0));

    enum { N = 8 };
    job jobs[N];
    for (int i = 0; i < N; i++) {
        job_init(&jobs[i]);
        assert_int_equal(tf__pool_submit(pool, &q, &jobs[i].w), TF_OK);
    }
    /* Readable once a job has finished; nothing called back before the
       drain. */
    assert_true(readable(&q, WAIT_LIMIT_MS));
    assert_int_equal(total_dones(jobs, N), 0);
    drain_jobs(&q, jobs, N);

    pthread_t me = pthread_self();
    for (int i = 0; i < N; i++) {
        assert_int_equal(jobs[i].runs, 1);
        assert_int_equal(jobs[i].dones, 1);
        assert_int_equal(jobs[i].status, 0);
        assert_false(pthread_equal(jobs[i].work_thread, me));
        assert_true(pthread_equal(jobs[i].done_thread, me));
        assert_ptr_equal(jobs[i].drained_by, &q);
    }
    assert_false(readable(&q, 0));
    assert_int_equal(tf__pool_queue_drain(&q), 0);

    tf__pool_queue_fini(&q);
    tf__pool_free(pool);
}

/* Pool threads have every asynchronous signal blocked and are named; the
   caller's own mask is as it was. */
static void test_threadpool_threads_mask_signals_and_are_named(void **state)
{
    (void)state;
    sigset_t before, after;
    pthread_sigmask(SIG_BLOCK, NULL, &before);
    tf__err e = {{0}};
    tf__pool *pool;
    assert_int_equal(tf__pool_new(&pool, 1, &e), TF_OK);
    pthread_sigmask(SIG_BLOCK, NULL, &after);
    for (int s = 1; s < SIGRTMIN; s++)
        assert_int_equal(sigismember(&before, s), sigismember(&after, s));

    tf__pool_queue q;
    assert_int_equal(tf__pool_queue_init(&q, &e), TF_OK);
    job j;
    job_init(&j);
    assert_int_equal(tf__pool_submit(pool, &q, &j.w), TF_OK);
    drain_jobs(&q, &j, 1);
    static const int blocked[] = {SIGPIPE, SIGINT,  SIGTERM, SIGHUP,
                                  SIGCHLD, SIGALRM, SIGUSR1, SIGUSR2};
    for (size_t i = 0; i < sizeof blocked / sizeof blocked[0]; i++)
        assert_int_equal(sigismember(&j.work_mask, blocked[i]), 1);
    assert_int_equal(sigismember(&j.work_mask, SIGSEGV), 0);
    assert_int_equal(sigismember(&j.work_mask, SIGBUS), 0);
    assert_string_equal(j.work_name, "tf-pool");

    tf__pool_queue_fini(&q);
    tf__pool_free(pool);
}

/* 10,000 jobs over two queues and four threads: each runs once, and its
   done is called once, by a drain of its own queue, on the loop's thread. */
static void test_threadpool_ten_thousand_jobs(void **state)
{
    (void)state;
    enum { N = 10000 };
    tf__err e = {{0}};
    tf__pool *pool;
    assert_int_equal(tf__pool_new(&pool, 4, &e), TF_OK);
    tf__pool_queue q[2];
    tf__pool_queue *qs[2] = {&q[0], &q[1]};
    for (int i = 0; i < 2; i++)
        assert_int_equal(tf__pool_queue_init(&q[i], &e), TF_OK);

    job *jobs = calloc(N, sizeof *jobs);
    assert_non_null(jobs);
    for (int i = 0; i < N; i++) {
        job_init(&jobs[i]);
        jobs[i].queue = &q[i % 2];
        assert_int_equal(tf__pool_submit(pool, jobs[i].queue, &jobs[i].w), TF_OK);
    }
    done_total = 0;
    loop_until(qs, 2, &done_total, N);
    assert_int_equal(done_total, N);

    pthread_t me = pthread_self();
    for (int i = 0; i < N; i++) {
        assert_int_equal(jobs[i].runs, 1);
        assert_int_equal(jobs[i].dones, 1);
        assert_int_equal(jobs[i].status, 0);
        assert_true(pthread_equal(jobs[i].done_thread, me));
        assert_ptr_equal(jobs[i].drained_by, jobs[i].queue);
    }
    for (int i = 0; i < 2; i++) {
        assert_int_equal(tf__pool_queue_drain(&q[i]), 0);
        tf__pool_queue_fini(&q[i]);
    }
    tf__pool_free(pool);
    free(jobs);
}

/* A done callback may submit its job again: 100 rounds, each run once. */
static void test_threadpool_resubmit_from_done(void **state)
{
    (void)state;
    tf__pool_queue q;
    tf__pool *pool = pool_with_queue(2, &q);
    job j;
    job_init(&j);
    j.pool = pool;
    j.queue = &q;
    j.resubmit = 99;
    assert_int_equal(tf__pool_submit(pool, &q, &j.w), TF_OK);
    tf__pool_queue *qs[1] = {&q};
    loop_until(qs, 1, &j.dones, 100);
    assert_int_equal(j.runs, 100);
    assert_int_equal(j.dones, 100);
    assert_int_equal(j.resubmit, 0);
    tf__pool_queue_fini(&q);
    tf__pool_free(pool);
}

/* With the one thread held by a running job, a queued job is cancelled:
   it never runs and its done comes back with TF_ECANCELED through the
   queue; a running job cannot be cancelled. */
static void test_threadpool_cancel_before_start(void **state)
{
    (void)state;
    tf__pool_queue q;
    tf__pool *pool = pool_with_queue(1, &q);
    gate g;
    gate_init(&g);

    job jobs[3];
    for (int i = 0; i < 3; i++)
        job_init(&jobs[i]);
    job *blocker = &jobs[0], *victim = &jobs[1], *after = &jobs[2];
    blocker->gate = &g;
    assert_int_equal(tf__pool_cancel(&victim->w), 0); /* never submitted */
    assert_int_equal(tf__pool_submit(pool, &q, &blocker->w), TF_OK);
    gate_wait_arrived(&g, 1);
    assert_int_equal(tf__pool_submit(pool, &q, &victim->w), TF_OK);
    assert_int_equal(tf__pool_submit(pool, &q, &after->w), TF_OK);

    assert_int_equal(tf__pool_cancel(&blocker->w), 0); /* running */
    assert_int_equal(tf__pool_cancel(&victim->w), 1);
    assert_int_equal(tf__pool_cancel(&victim->w), 0); /* already */
    /* The cancellation is posted like a completion, for the drain. */
    assert_true(readable(&q, WAIT_LIMIT_MS));
    assert_int_equal(victim->dones, 0);
    assert_int_equal(tf__pool_queue_drain(&q), 1);
    assert_int_equal(victim->dones, 1);
    assert_int_equal(victim->status, TF_ECANCELED);
    assert_true(pthread_equal(victim->done_thread, pthread_self()));

    gate_open(&g);
    drain_jobs(&q, jobs, 3);
    assert_int_equal(victim->runs, 0);
    assert_int_equal(victim->dones, 1);
    assert_int_equal(blocker->runs, 1);
    assert_int_equal(blocker->status, 0);
    /* The job behind the cancelled one still ran. */
    assert_int_equal(after->runs, 1);
    assert_int_equal(after->status, 0);
    assert_int_equal(tf__pool_cancel(&after->w), 0); /* finished */

    tf__pool_queue_fini(&q);
    tf__pool_free(pool);
    gate_destroy(&g);
}

static void *open_later(void *arg)
{
    sleep_ms(100);
    gate_open(arg);
    return NULL;
}

/* Freeing the pool waits for the two jobs running and cancels the five
   queued; every done then comes back through the queue (0 for the two,
   TF_ECANCELED for the five), and none before the drain. */
static void test_threadpool_free_waits_and_cancels(void **state)
{
    (void)state;
    tf__pool_queue q;
    tf__pool *pool = pool_with_queue(2, &q);
    gate g;
    gate_init(&g);

    enum { RUNNING = 2, QUEUED = 5, N = RUNNING + QUEUED };
    job jobs[N];
    for (int i = 0; i < N; i++) {
        job_init(&jobs[i]);
        if (i < RUNNING) {
            jobs[i].gate = &g;
            jobs[i].sleep_ms = 20;
        }
        assert_int_equal(tf__pool_submit(pool, &q, &jobs[i].w), TF_OK);
        if (i == RUNNING - 1)
            gate_wait_arrived(&g, RUNNING);
    }

    pthread_t opener;
    assert_int_equal(pthread_create(&opener, NULL, open_later, &g), 0);
    int64_t start = tf__now_ms();
    tf__pool_free(pool);
    int64_t took = elapsed_ms(start);
    pthread_join(opener, NULL);
    /* It waited for the gate, then for the running jobs' ends. */
    assert_true(took >= 100);
    for (int i = 0; i < N; i++) {
        assert_int_equal(jobs[i].runs, i < RUNNING ? 1 : 0);
        assert_int_equal(atomic_load(&jobs[i].finished), i < RUNNING ? 1 : 0);
        assert_int_equal(jobs[i].dones, 0);
    }

    assert_true(readable(&q, 0));
    assert_int_equal(tf__pool_queue_drain(&q), N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(jobs[i].dones, 1);
        assert_int_equal(jobs[i].status, i < RUNNING ? 0 : TF_ECANCELED);
        assert_true(pthread_equal(jobs[i].done_thread, pthread_self()));
    }
    tf__pool_queue_fini(&q);
    gate_destroy(&g);
}

/* With two threads, a job that sleeps 200 ms on one queue does not hold
   up a quick job of another queue: its done comes back within the bound,
   while the slow one still runs. */
static void test_threadpool_slow_job_does_not_delay_other_queue(void **state)
{
    (void)state;
    enum { BOUND_MS = 150 };
    tf__err e = {{0}};
    tf__pool *pool;
    assert_int_equal(tf__pool_new(&pool, 2, &e), TF_OK);
    tf__pool_queue slow_q, fast_q;
    assert_int_equal(tf__pool_queue_init(&slow_q, &e), TF_OK);
    assert_int_equal(tf__pool_queue_init(&fast_q, &e), TF_OK);
    gate g;
    gate_init(&g);
    gate_open(&g); /* counts arrivals only */

    job slow, fast;
    job_init(&slow);
    job_init(&fast);
    slow.gate = &g;
    slow.sleep_ms = 200;
    assert_int_equal(tf__pool_submit(pool, &slow_q, &slow.w), TF_OK);
    gate_wait_arrived(&g, 1);

    int64_t start = tf__now_ms();
    assert_int_equal(tf__pool_submit(pool, &fast_q, &fast.w), TF_OK);
    drain_jobs(&fast_q, &fast, 1);
    int64_t took = elapsed_ms(start);
    int slow_finished = atomic_load(&slow.finished);
    print_message("fast job's done after %lld ms beside a 200 ms job\n", (long long)took);
    assert_true(took < BOUND_MS);
    assert_int_equal(slow_finished, 0);
    assert_int_equal(fast.status, 0);

    tf__pool_queue_fini(&slow_q);
    assert_int_equal(slow.dones, 1);
    assert_int_equal(slow.status, 0);
    tf__pool_queue_fini(&fast_q);
    tf__pool_free(pool);
    gate_destroy(&g);
}

/* queue_fini returns only once every job of its queue has had its done
   (run by fini itself, on the caller's thread), jobs submitted by those
   callbacks included; with nothing outstanding it returns at once. */
static void test_threadpool_queue_fini_waits(void **state)
{
    (void)state;
    tf__err e = {{0}};
    tf__pool *pool;
    assert_int_equal(tf__pool_new(&pool, 2, &e), TF_OK);
    tf__pool_queue q, idle;
    assert_int_equal(tf__pool_queue_init(&q, &e), TF_OK);
    assert_int_equal(tf__pool_queue_init(&idle, &e), TF_OK);

    enum { N = 4 };
    job jobs[N];
    for (int i = 0; i < N; i++) {
        job_init(&jobs[i]);
        jobs[i].sleep_ms = 50;
        jobs[i].pool = pool;
        jobs[i].queue = &q;
    }
    jobs[N - 1].resubmit = 1; /* its done submits it once more */
    for (int i = 0; i < N; i++)
        assert_int_equal(tf__pool_submit(pool, &q, &jobs[i].w), TF_OK);

    int64_t start = tf__now_ms();
    tf__pool_queue_fini(&idle);
    assert_true(elapsed_ms(start) < 50);

    tf__pool_queue_fini(&q);
    /* Two rounds of two 50 ms jobs, then the resubmitted one. */
    assert_true(elapsed_ms(start) >= 100);
    for (int i = 0; i < N; i++) {
        int rounds = i == N - 1 ? 2 : 1;
        assert_int_equal(jobs[i].runs, rounds);
        assert_int_equal(jobs[i].dones, rounds);
        assert_int_equal(jobs[i].status, 0);
        assert_true(pthread_equal(jobs[i].done_thread, pthread_self()));
    }
    assert_int_equal(tf__pool_queue_fd(&q), -1);
    tf__pool_free(pool);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threadpool_new_arguments),
        cmocka_unit_test(test_threadpool_done_on_loop_thread),
        cmocka_unit_test(test_threadpool_threads_mask_signals_and_are_named),
        cmocka_unit_test(test_threadpool_ten_thousand_jobs),
        cmocka_unit_test(test_threadpool_resubmit_from_done),
        cmocka_unit_test(test_threadpool_cancel_before_start),
        cmocka_unit_test(test_threadpool_free_waits_and_cancels),
        cmocka_unit_test(test_threadpool_slow_job_does_not_delay_other_queue),
        cmocka_unit_test(test_threadpool_queue_fini_waits),
    };
    return TU_RUN_GROUP("threadpool", tests, NULL, NULL, argc > 1 ? argv[1] : NULL);
}
