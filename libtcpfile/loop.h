/*
 * loop.h - one thread's event loop: an epoll set of watchers, timer lists
 * ordered by last progress, and frees deferred to the end of a round. It
 * knows nothing of what it drives (sessions, listeners): a user embeds a
 * watcher or a timer and is called back. (After libuv's uv__io_t, uv_run
 * and uv__make_close_pending.)
 */
#ifndef TF_LOOP_H
#define TF_LOOP_H

#include <stddef.h>
#include <stdint.h>

#define TF__LOOP_MAX_LISTS 8

typedef struct tf__loop tf__loop;

/* A file descriptor in the loop's epoll set. fd and on_events are the
   user's; events is what the set watches for now (tf__loop_watch). */
typedef struct tf__watcher {
    int fd;
    uint32_t events;
    void (*on_events)(struct tf__watcher *w, uint32_t events);
} tf__watcher;

struct tf__timer_list;

/* Something that expires when it has made no progress for its list's
   limit. expired must take the timer off its list (or move it). */
typedef struct tf__timer {
    struct tf__timer *prev, *next;
    struct tf__timer_list *list; /* NULL: on no list */
    int64_t last_ms;             /* last progress */
    void (*expired)(struct tf__timer *t);
} tf__timer;

/* Timers ordered by last progress, oldest first, so that whatever expires
   is at the head and the loop's wait is computed from the heads alone.
   limit_ms <= 0: nothing on this list expires. */
typedef struct tf__timer_list {
    tf__timer *head, *tail;
    size_t count;
    int64_t limit_ms;
} tf__timer_list;

/* A free (or anything else) that must wait until no event of the current
   round can still point at its memory. */
typedef struct tf__deferred {
    struct tf__deferred *next;
    void (*fn)(struct tf__deferred *d);
} tf__deferred;

struct tf__loop {
    int epfd;
    tf__timer_list *lists[TF__LOOP_MAX_LISTS];
    int nlists;
    tf__deferred *deferred;
};

/* 0, or TF_ENOMEM when no epoll set can be made. */
int tf__loop_init(tf__loop *loop);
/* Runs what is deferred and closes the epoll set. */
void tf__loop_close(tf__loop *loop);

/* Watches w->fd for events (add or modify); 0 stops watching. Nothing is
   done when the events do not change. 0, or -1 with errno set. */
int tf__loop_watch(tf__loop *loop, tf__watcher *w, uint32_t events);

/* Makes the loop expire the timers of list and wait no longer than its
   head's deadline. At most TF__LOOP_MAX_LISTS; TF_EINVAL beyond. */
int tf__loop_add_list(tf__loop *loop, tf__timer_list *list);

/* Moves t to the tail of list as of now_ms (NULL: off every list). O(1). */
void tf__timer_touch(tf__timer *t, tf__timer_list *list, int64_t now_ms);

/* Calls expired for every timer whose deadline has passed by now_ms. */
void tf__loop_expire(tf__loop *loop, int64_t now_ms);

/* How long epoll may sleep: until the earliest deadline at a list head, or
   extra_ms (-1: no bound of its own), at most a minute. */
int tf__loop_wait_ms(const tf__loop *loop, int64_t now_ms, int extra_ms);

/* d->fn(d) runs after the current round of events. */
void tf__loop_defer(tf__loop *loop, tf__deferred *d);
void tf__loop_run_deferred(tf__loop *loop);

/* One round: waits (tf__loop_wait_ms), calls the watchers that have
   events, expires timers, runs what was deferred. The number of events,
   or -1 with errno set when epoll failed (EINTR is a round with none). */
int tf__loop_run_once(tf__loop *loop, int extra_ms);

#endif /* TF_LOOP_H */
