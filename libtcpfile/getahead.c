/*
 * getahead.c - a connection's pipelined gets opened ahead on the disk
 * pool (getahead.h).
 */
#include "getahead.h"

#include <stdlib.h>
#include <string.h>

/* One get ahead: its job, its name and, once the job is over, what it
   found. Linked in request order. */
typedef struct item {
    tf__work work;        /* data: the item */
    struct item *next;
    tf__ahead *a;
    tf__storage *st;
    int with_digest;
    int running;          /* submitted, done not yet run */
    int finished;         /* done has run: got is valid */
    int dropped;          /* forgotten while running: freed by done */
    tf__ahead_got got;
    char name[];          /* NUL-terminated */
} item;

struct tf__ahead {
    tf__ahead_config cfg;
    item *head, *tail;
    size_t n;             /* in the list */
    size_t busy;          /* running, in the list or dropped */
};

int tf__ahead_new(tf__ahead **out, const tf__ahead_config *cfg)
{
    tf__ahead *a = calloc(1, sizeof *a);
    if (!a)
        return TF_ENOMEM;
    a->cfg = *cfg;
    *out = a;
    return TF_OK;
}

void tf__ahead_free(tf__ahead *a)
{
    if (!a)
        return;
    tf__ahead_drop(a);
    free(a);
}

size_t tf__ahead_count(const tf__ahead *a)
{
    return a ? a->n : 0;
}

size_t tf__ahead_busy(const tf__ahead *a)
{
    return a ? a->busy : 0;
}

/* Frees an item and what it holds, and gives back its place in the
   server's bound. */
static void item_free(item *it)
{
    if (it->got.fd >= 0)
        it->st->ops->close_read(it->st, it->got.fd);
    free(it->got.data);
    atomic_fetch_sub(it->a->cfg.held, 1);
    free(it);
}

/* On a pool thread: what get_open_work does for the get in flight. */
static void item_work(tf__work *w)
{
    item *it = w->data;
    tf__ahead_got *g = &it->got;
    tf__storage *st = it->st;
    g->rc = st->ops->open_read(st, it->name, &g->fd, &g->size, g->id, &g->err);
    if (g->rc != TF_OK) {
        g->fd = -1;
        return;
    }
    if (g->size <= it->a->cfg.small_max) {
        /* Small: read whole, and the handle closed now (on S3 it holds
           the first 64 KiB of the object). */
        uint8_t *p = malloc(g->size ? (size_t)g->size : 1);
        ssize_t n = p && g->size ? st->ops->read_at(st, g->fd, p, (size_t)g->size, 0) : 0;
        if (p && n == (ssize_t)g->size) {
            g->data = p;
            st->ops->close_read(st, g->fd);
            g->fd = -1;
            return;
        }
        free(p); /* the session's own path reads it, or says what failed */
    }
    if (it->with_digest)
        g->cached = st->ops->digest_load(st, g->fd, g->id, g->digest);
}

static void item_done(tf__work *w, int status)
{
    item *it = w->data;
    tf__ahead *a = it->a;
    it->running = 0;
    a->busy--;
    if (it->dropped) {
        item_free(it);
        a->cfg.on_done(a->cfg.user, 0);
        return;
    }
    if (status != TF_OK) { /* cancelled: the pool is stopping */
        it->got.rc = tf__fail(&it->got.err, TF_ECANCELED, "the server is stopping");
        it->got.fd = -1;
    }
    it->finished = 1;
    a->cfg.on_done(a->cfg.user, it == a->head);
}

int tf__ahead_submit(tf__ahead *a, tf__storage *st, const char *name, size_t len,
                     int with_digest)
{
    if (a->n >= a->cfg.per_conn)
        return 0;
    if (atomic_fetch_add(a->cfg.held, 1) >= a->cfg.held_max) {
        atomic_fetch_sub(a->cfg.held, 1);
        return 0;
    }
    item *it = calloc(1, sizeof *it + len + 1);
    if (!it) {
        atomic_fetch_sub(a->cfg.held, 1);
        return 0;
    }
    memcpy(it->name, name, len);
    it->name[len] = '\0';
    it->a = a;
    it->st = st;
    it->with_digest = with_digest;
    it->got.fd = -1;
    it->work.work = item_work;
    it->work.done = item_done;
    it->work.data = it;
    if (tf__pool_submit(a->cfg.pool, a->cfg.queue, &it->work) != TF_OK) {
        item_free(it);
        return 0;
    }
    it->running = 1;
    a->busy++;
    if (a->tail)
        a->tail->next = it;
    else
        a->head = it;
    a->tail = it;
    a->n++;
    return 1;
}

int tf__ahead_head(const tf__ahead *a, const char *name)
{
    if (!a || !a->head || strcmp(a->head->name, name) != 0)
        return 0;
    return a->head->finished ? 1 : 2;
}

static item *unlink_head(tf__ahead *a)
{
    item *it = a->head;
    a->head = it->next;
    if (!a->head)
        a->tail = NULL;
    a->n--;
    return it;
}

void tf__ahead_take(tf__ahead *a, tf__ahead_got *out)
{
    item *it = unlink_head(a);
    *out = it->got;
    it->got.fd = -1;
    it->got.data = NULL;
    item_free(it);
}

void tf__ahead_drop(tf__ahead *a)
{
    while (a->head) {
        item *it = unlink_head(a);
        if (!it->running) {
            item_free(it);
            continue;
        }
        /* Queued: cancelled, its done comes with TF_ECANCELED; running:
           its done comes when it is over. Either frees it. */
        it->dropped = 1;
        tf__pool_cancel(&it->work);
    }
}
