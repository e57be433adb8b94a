/*
 * loop.c - the event loop (see loop.h). One per thread; nothing is locked.
 */
#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "internal.h"
#include "loop.h"

#define LOOP_EVENTS 64
#define LONGEST_WAIT_MS 60000

int tf__loop_init(tf__loop *loop)
{
    loop->nlists = 0;
    loop->deferred = NULL;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    return loop->epfd < 0 ? TF_ENOMEM : TF_OK;
}

void tf__loop_close(tf__loop *loop)
{
    tf__loop_run_deferred(loop);
    if (loop->epfd >= 0)
        close(loop->epfd);
    loop->epfd = -1;
}

int tf__loop_watch(tf__loop *loop, tf__watcher *w, uint32_t events)
{
    if (w->events == events)
        return 0;
    struct epoll_event ev = {.events = events, .data.ptr = w};
    int op = !events ? EPOLL_CTL_DEL : w->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(loop->epfd, op, w->fd, &ev) != 0)
        return -1;
    w->events = events;
    return 0;
}

int tf__loop_add_list(tf__loop *loop, tf__timer_list *list)
{
    if (loop->nlists == TF__LOOP_MAX_LISTS)
        return TF_EINVAL;
    loop->lists[loop->nlists++] = list;
    return TF_OK;
}

void tf__timer_touch(tf__timer *t, tf__timer_list *to, int64_t now_ms)
{
    tf__timer_list *from = t->list;
    if (from) {
        if (t->prev)
            t->prev->next = t->next;
        else
            from->head = t->next;
        if (t->next)
            t->next->prev = t->prev;
        else
            from->tail = t->prev;
        from->count--;
    }
    t->prev = t->next = NULL;
    t->list = to;
    if (!to)
        return;
    t->last_ms = now_ms;
    t->prev = to->tail;
    if (to->tail)
        to->tail->next = t;
    else
        to->head = t;
    to->tail = t;
    to->count++;
}

void tf__loop_expire(tf__loop *loop, int64_t now_ms)
{
    for (int i = 0; i < loop->nlists; i++) {
        tf__timer_list *l = loop->lists[i];
        if (l->limit_ms <= 0)
            continue;
        while (l->head && now_ms - l->head->last_ms >= l->limit_ms) {
            tf__timer *t = l->head;
            t->expired(t);
            if (l->head == t) /* not taken off: do not spin on it */
                tf__timer_touch(t, NULL, 0);
        }
    }
}

int tf__loop_wait_ms(const tf__loop *loop, int64_t now_ms, int extra_ms)
{
    int64_t wait = extra_ms < 0 ? -1 : extra_ms;
    for (int i = 0; i < loop->nlists; i++) {
        const tf__timer_list *l = loop->lists[i];
        if (!l->head || l->limit_ms <= 0)
            continue;
        int64_t left = l->head->last_ms + l->limit_ms - now_ms;
        if (left < 0)
            left = 0;
        if (wait < 0 || left < wait)
            wait = left;
    }
    return wait > LONGEST_WAIT_MS ? LONGEST_WAIT_MS : (int)wait;
}

void tf__loop_defer(tf__loop *loop, tf__deferred *d)
{
    d->next = loop->deferred;
    loop->deferred = d;
}

void tf__loop_run_deferred(tf__loop *loop)
{
    while (loop->deferred) {
        tf__deferred *d = loop->deferred;
        loop->deferred = d->next;
        d->fn(d);
    }
}

int tf__loop_run_once(tf__loop *loop, int extra_ms)
{
    struct epoll_event ev[LOOP_EVENTS];
    int n = epoll_wait(loop->epfd, ev, LOOP_EVENTS,
                       tf__loop_wait_ms(loop, tf__now_ms(), extra_ms));
    if (n < 0 && errno != EINTR)
        return -1;
    for (int i = 0; i < n; i++) {
        tf__watcher *w = ev[i].data.ptr;
        w->on_events(w, ev[i].events);
    }
    tf__loop_expire(loop, tf__now_ms());
    tf__loop_run_deferred(loop);
    return n < 0 ? 0 : n;
}
