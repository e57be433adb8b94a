/*
 * test_loop.c - the event loop (loop.h) on its own, with pipes and plain
 * structs instead of sessions: watchers fire for their events and stop when
 * unwatched, timers expire in order of last progress and the wait is
 * computed from the list heads, and deferred work runs after the round.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cmocka_main.h"

#include <sys/epoll.h>
#include <unistd.h>

#include "internal.h"
#include "loop.h"

typedef struct probe {
    tf__watcher w;
    int calls;
    uint32_t last;
    tf__deferred d;
    int freed;
    int *order; /* where deferred work records it ran */
    int *seq;
} probe;

#define PROBE_OF(p, f) ((probe *)((char *)(p) - offsetof(probe, f)))

static void on_events(tf__watcher *w, uint32_t events)
{
    probe *p = PROBE_OF(w, w);
    p->calls++;
    p->last = events;
}

static void test_watcher_fires_and_stops(void **state)
{
    (void)state;
    tf__loop loop;
    assert_int_equal(tf__loop_init(&loop), TF_OK);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    probe p = {.w = {.fd = fds[0], .on_events = on_events}};
    assert_int_equal(tf__loop_watch(&loop, &p.w, EPOLLIN), 0);
    assert_int_equal(p.w.events, EPOLLIN);

    /* Nothing to read: the round waits its bound and calls nobody. */
    assert_int_equal(tf__loop_run_once(&loop, 0), 0);
    assert_int_equal(p.calls, 0);

    assert_int_equal(write(fds[1], "x", 1), 1);
    assert_int_equal(tf__loop_run_once(&loop, 1000), 1);
    assert_int_equal(p.calls, 1);
    assert_true(p.last & EPOLLIN);

    /* Unwatched: readable still, but never called again. */
    assert_int_equal(tf__loop_watch(&loop, &p.w, 0), 0);
    assert_int_equal(p.w.events, 0);
    assert_int_equal(tf__loop_run_once(&loop, 0), 0);
    assert_int_equal(p.calls, 1);

    /* Watched for writing on the other end: fires at once. */
    probe q = {.w = {.fd = fds[1], .on_events = on_events}};
    assert_int_equal(tf__loop_watch(&loop, &q.w, EPOLLOUT), 0);
    assert_int_equal(tf__loop_run_once(&loop, 1000), 1);
    assert_int_equal(q.calls, 1);
    assert_true(q.last & EPOLLOUT);

    tf__loop_close(&loop);
    close(fds[0]);
    close(fds[1]);
}

typedef struct item {
    tf__timer t;
    int id;
    int *log;
    int *nlog;
} item;

static void expired(tf__timer *t)
{
    item *it = (item *)((char *)t - offsetof(item, t));
    it->log[(*it->nlog)++] = it->id;
    tf__timer_touch(t, NULL, 0);
}

static void test_timers_expire_in_order(void **state)
{
    (void)state;
    tf__loop loop;
    assert_int_equal(tf__loop_init(&loop), TF_OK);
    tf__timer_list slow = {.limit_ms = 100}, fast = {.limit_ms = 10}, never = {.limit_ms = 0};
    assert_int_equal(tf__loop_add_list(&loop, &slow), TF_OK);
    assert_int_equal(tf__loop_add_list(&loop, &fast), TF_OK);
    assert_int_equal(tf__loop_add_list(&loop, &never), TF_OK);

    int log[8], nlog = 0;
    item it[5];
    for (int i = 0; i < 5; i++)
        it[i] = (item){.t = {.expired = expired}, .id = i, .log = log, .nlog = &nlog};
    /* slow: 0 at t=1000, 1 at t=1005, 2 at t=1002; touching 0 again at
       t=1010 sends it to the tail: order 2, 1, 0. */
    tf__timer_touch(&it[0].t, &slow, 1000);
    tf__timer_touch(&it[1].t, &slow, 1005);
    tf__timer_touch(&it[2].t, &slow, 1002);
    assert_ptr_equal(slow.head, &it[0].t);
    tf__timer_touch(&it[1].t, &slow, 1005); /* order by touch: 0, 2, 1 */
    tf__timer_touch(&it[0].t, &slow, 1010); /* 2, 1, 0 */
    assert_ptr_equal(slow.head, &it[2].t);
    assert_ptr_equal(slow.tail, &it[0].t);
    assert_int_equal(slow.count, 3);
    tf__timer_touch(&it[3].t, &fast, 1050);
    tf__timer_touch(&it[4].t, &never, 0);

    /* The wait comes from the heads: fast's 1050+10 is the earliest. */
    assert_int_equal(tf__loop_wait_ms(&loop, 1000, -1), 60);
    assert_int_equal(tf__loop_wait_ms(&loop, 1000, 5), 5); /* the caller's bound */
    assert_int_equal(tf__loop_wait_ms(&loop, 2000, -1), 0); /* overdue: no wait */

    tf__loop_expire(&loop, 1059);
    assert_int_equal(nlog, 0);
    tf__loop_expire(&loop, 1060);
    assert_int_equal(nlog, 1);
    assert_int_equal(log[0], 3);
    assert_null(fast.head);
    /* slow: 2 (due 1102), 1 (1105), 0 (1110) */
    assert_int_equal(tf__loop_wait_ms(&loop, 1060, -1), 42);
    tf__loop_expire(&loop, 1105);
    assert_int_equal(nlog, 3);
    assert_int_equal(log[1], 2);
    assert_int_equal(log[2], 1);
    assert_ptr_equal(slow.head, &it[0].t);
    assert_int_equal(slow.count, 1);
    tf__loop_expire(&loop, 100000);
    assert_int_equal(nlog, 4);
    assert_int_equal(log[3], 0);
    /* A list without a limit neither expires nor bounds the wait: with
       nothing else, the wait is unbounded (-1); a far bound is capped. */
    assert_ptr_equal(never.head, &it[4].t);
    assert_int_equal(tf__loop_wait_ms(&loop, 100000, -1), -1);
    assert_int_equal(tf__loop_wait_ms(&loop, 100000, 1000000), 60000);
    assert_int_equal(tf__loop_add_list(&loop, &never), TF_OK);
    tf__loop_close(&loop);
}

static void run_deferred(tf__deferred *d)
{
    probe *p = PROBE_OF(d, d);
    p->freed = ++*p->seq;
}

static tf__loop *the_loop;

/* A callback that "closes" another probe: its memory must outlive the
   round, since a later event of the same round may still name it. */
static void on_events_defer(tf__watcher *w, uint32_t events)
{
    probe *p = PROBE_OF(w, w);
    on_events(w, events);
    tf__loop_defer(the_loop, &p->d);
    assert_int_equal(p->freed, 0); /* not yet: the round is not over */
}

static void test_deferred_after_round(void **state)
{
    (void)state;
    tf__loop loop;
    assert_int_equal(tf__loop_init(&loop), TF_OK);
    the_loop = &loop;
    int a[2], b[2], seq = 0;
    assert_int_equal(pipe(a), 0);
    assert_int_equal(pipe(b), 0);
    probe pa = {.w = {.fd = a[0], .on_events = on_events_defer}, .d = {.fn = run_deferred},
                .seq = &seq};
    probe pb = {.w = {.fd = b[0], .on_events = on_events_defer}, .d = {.fn = run_deferred},
                .seq = &seq};
    assert_int_equal(tf__loop_watch(&loop, &pa.w, EPOLLIN), 0);
    assert_int_equal(tf__loop_watch(&loop, &pb.w, EPOLLIN), 0);
    assert_int_equal(write(a[1], "x", 1), 1);
    assert_int_equal(write(b[1], "x", 1), 1);
    assert_int_equal(tf__loop_run_once(&loop, 1000), 2);
    /* Both callbacks ran before either deferred function. */
    assert_int_equal(pa.calls, 1);
    assert_int_equal(pb.calls, 1);
    assert_true(pa.freed > 0 && pb.freed > 0);
    assert_null(loop.deferred);

    /* What is deferred outside a round runs at close. */
    probe pc = {.d = {.fn = run_deferred}, .seq = &seq};
    tf__loop_defer(&loop, &pc.d);
    assert_int_equal(pc.freed, 0);
    tf__loop_close(&loop);
    assert_int_equal(pc.freed, 3);
    for (int i = 0; i < 2; i++) {
        close(a[i]);
        close(b[i]);
    }
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_watcher_fires_and_stops),
        cmocka_unit_test(test_timers_expire_in_order),
        cmocka_unit_test(test_deferred_after_round),
    };
    return TU_RUN_GROUP("loop", tests, NULL, NULL, argc > 1 ? argv[1] : NULL);
}
