/*
 * groupcommit.c - the puts of one pipelined batch, committed together
 * (see groupcommit.h).
 */
#include "groupcommit.h"

#include <stdlib.h>
#include <string.h>

/* Grows *p (of *cap elements of size each) to hold need; 0 or -1. */
static int grow(void **p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 16;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, c * size);
    if (!q)
        return -1;
    *p = q;
    *cap = c;
    return 0;
}

/* Grows two arrays that run in step (*a of asize-byte elements, *b of
   bsize) to hold need each, *cap counting both; 0 or -1. Either may have
   grown when the other failed: *cap stays what both hold. */
static int grow_in_step(void **a, size_t asize, void **b, size_t bsize, size_t *cap,
                        size_t need)
{
    size_t acap = *cap, bcap = *cap;
    if (grow(a, &acap, need, asize) != 0 || grow(b, &bcap, need, bsize) != 0)
        return -1;
    *cap = acap < bcap ? acap : bcap;
    return 0;
}

int tf__group_fits(const tf__group *g, uint64_t size)
{
    if (size > TF__GROUP_PUT_MAX)
        return 0;
    return !g || (g->n < TF__GROUP_COUNT_MAX && g->bytes + size <= TF__GROUP_BYTES_MAX);
}

/* A new entry for name at the end of *g (made on first use); NULL
   without memory. */
static tf__group_entry *entry_new(tf__group **gp, const char *name)
{
    tf__group *g = *gp;
    if (!g && !(g = *gp = calloc(1, sizeof *g)))
        return NULL;
    size_t len = strlen(name) + 1;
    if (grow_in_step((void **)&g->v, sizeof *g->v, (void **)&g->decided_err,
                     sizeof *g->decided_err, &g->cap, g->n + 1) != 0)
        return NULL;
    if (grow((void **)&g->names, &g->names_cap, g->names_len + len, 1) != 0)
        return NULL;
    tf__group_entry *en = &g->v[g->n];
    memset(en, 0, sizeof *en);
    en->item = SIZE_MAX;
    en->name_at = g->names_len;
    memcpy(g->names + g->names_len, name, len);
    tf__err_clear(&g->decided_err[g->n]);
    return en;
}

/* The entry made by entry_new is kept (its name too). */
static void entry_keep(tf__group *g, size_t name_len)
{
    g->names_len += name_len + 1;
    g->n++;
}

int tf__group_add(tf__group **gp, tf__upload **up, const char *name, const tf__commit_cond *cond,
                  uint64_t size, uint64_t bytes, int64_t started_ms)
{
    tf__group_entry *en = entry_new(gp, name);
    if (!en)
        return TF_ENOMEM;
    tf__group *g = *gp;
    if (grow_in_step((void **)&g->items, sizeof *g->items, (void **)&g->ids, sizeof *g->ids,
                     &g->items_cap, g->nitems + 1) != 0)
        return TF_ENOMEM;
    tf__commit_item *it = &g->items[g->nitems];
    memset(it, 0, sizeof *it);
    it->up = *up;
    it->cond = *cond;
    if (cond->expect_id) {
        memcpy(g->ids[g->nitems], cond->expect_id, sizeof g->ids[0]);
        it->cond.expect_id = g->ids[g->nitems]; /* made valid again at the commit */
    }
    *up = NULL;
    en->item = g->nitems++;
    en->size = size;
    en->bytes = bytes;
    en->started_ms = started_ms;
    g->bytes += size;
    entry_keep(g, strlen(name));
    return TF_OK;
}

int tf__group_can_hold(const tf__group *g, uint64_t size)
{
    return size <= TF__GROUP_HOLD_PUT_MAX && (!g || g->held + size <= TF__GROUP_HOLD_MAX);
}

int tf__group_add_held(tf__group **gp, uint8_t **data, size_t len, int parents, const char *name,
                       const tf__commit_cond *cond, uint64_t size, uint64_t bytes,
                       int64_t started_ms)
{
    tf__upload *none = NULL;
    int rc = tf__group_add(gp, &none, name, cond, size, bytes, started_ms);
    if (rc != TF_OK)
        return rc;
    tf__group *g = *gp;
    tf__group_entry *en = &g->v[g->n - 1];
    en->held = *data;
    en->held_len = len;
    en->parents = parents;
    g->held += len;
    *data = NULL;
    return TF_OK;
}

int tf__group_add_decided(tf__group **gp, const char *name, int rc, const tf__err *e,
                          uint8_t resp_flags, uint64_t size, uint64_t bytes, int64_t started_ms)
{
    tf__group_entry *en = entry_new(gp, name);
    if (!en)
        return TF_ENOMEM;
    tf__group *g = *gp;
    en->rc = rc;
    en->resp_flags = resp_flags;
    en->size = size;
    en->bytes = bytes;
    en->started_ms = started_ms;
    if (rc != TF_OK && e)
        g->decided_err[g->n] = *e;
    entry_keep(g, strlen(name));
    return TF_OK;
}

size_t tf__group_pending(const tf__group *g)
{
    return g ? g->n : 0;
}

/* The held payloads staged and written, each in a file of its own as a
   put not held would have been; one that fails becomes a decided answer,
   and the commit items are packed again without it. Consecutive puts into
   one directory make its parents once. */
static void stage_held(tf__group *g, tf__storage *st)
{
    const char *made = NULL; /* the directory whose parents were made last */
    size_t made_len = 0;
    for (size_t i = 0; i < g->n; i++) {
        tf__group_entry *en = &g->v[i];
        if (!en->held)
            continue;
        const char *name = g->names + en->name_at;
        const char *slash = strrchr(name, '/');
        size_t dir_len = slash ? (size_t)(slash - name) : 0;
        tf__commit_item *it = &g->items[en->item];
        tf__err e = {{0}};
        int rc = TF_OK;
        if (en->parents && slash &&
            !(made && made_len == dir_len && memcmp(made, name, dir_len) == 0)) {
            rc = tf__storage_make_parents(st, name, &e);
            made = rc == TF_OK ? name : NULL;
            made_len = dir_len;
        }
        if (rc == TF_OK)
            rc = tf__storage_stage_for(st, name, &it->up, &e);
        if (rc == TF_OK)
            rc = st->ops->write(st, it->up, en->held, en->held_len, &e);
        free(en->held);
        en->held = NULL;
        if (rc != TF_OK) {
            st->ops->abort(st, &it->up);
            en->item = SIZE_MAX;
            en->rc = rc;
            g->decided_err[i] = e;
        }
    }
    size_t k = 0;
    for (size_t i = 0; i < g->n; i++) {
        tf__group_entry *en = &g->v[i];
        if (en->item == SIZE_MAX)
            continue;
        if (en->item != k) { /* items run in entry order: k < en->item */
            g->items[k] = g->items[en->item];
            memcpy(g->ids[k], g->ids[en->item], sizeof g->ids[0]);
        }
        en->item = k++;
    }
    g->nitems = k;
    g->held = 0;
}

void tf__group_commit(tf__group *g, tf__storage *st)
{
    stage_held(g, st);
    /* The arrays may have moved since the entries were added. */
    for (size_t i = 0; i < g->n; i++) {
        tf__group_entry *en = &g->v[i];
        if (en->item == SIZE_MAX)
            continue;
        tf__commit_item *it = &g->items[en->item];
        it->name = g->names + en->name_at;
        if (it->cond.expect_id)
            it->cond.expect_id = g->ids[en->item];
    }
    if (g->nitems)
        tf__storage_commit_many(st, g->items, g->nitems);
    for (size_t i = 0; i < g->n; i++)
        if (g->v[i].item != SIZE_MAX)
            g->v[i].rc = g->items[g->v[i].item].rc;
    g->committed = 1;
}

const char *tf__group_name(const tf__group *g, size_t i)
{
    return g->names + g->v[i].name_at;
}

const char *tf__group_message(const tf__group *g, size_t i)
{
    const tf__group_entry *en = &g->v[i];
    return en->item == SIZE_MAX ? g->decided_err[i].msg : g->items[en->item].err.msg;
}

int tf__group_out_append(tf__group *g, const void *p, size_t n)
{
    if (g->out_pos == g->out_len)
        g->out_pos = g->out_len = 0;
    if (grow((void **)&g->out, &g->out_cap, g->out_len + n, 1) != 0)
        return TF_ENOMEM;
    memcpy(g->out + g->out_len, p, n);
    g->out_len += n;
    return TF_OK;
}

/* Frees the payloads still held (a group never committed). */
static void free_held(tf__group *g)
{
    for (size_t i = 0; i < g->n; i++) {
        free(g->v[i].held);
        g->v[i].held = NULL;
    }
    g->held = 0;
}

void tf__group_clear(tf__group *g)
{
    free_held(g);
    g->n = g->nitems = 0;
    g->names_len = 0;
    g->committed = 0;
    g->bytes = 0;
}

void tf__group_free(tf__group *g, tf__storage *st)
{
    if (!g)
        return;
    free_held(g);
    for (size_t i = 0; i < g->nitems; i++)
        if (g->items[i].up)
            st->ops->abort(st, &g->items[i].up);
    free(g->v);
    free(g->items);
    free(g->ids);
    free(g->decided_err);
    free(g->names);
    free(g->out);
    free(g);
}
