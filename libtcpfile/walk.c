/*
 * walk.c - the streamed listing's producer (walk.h): a depth-first walk
 * with one lister per level, so its memory is bounded by the depth (and
 * the storage's batch), never by the number of entries.
 */
#include "walk.h"

#include <stdlib.h>
#include <string.h>

#include "wire.h"

/* Directory batches read per tf__walk_fill at most: bounds the work one
   call does when many entries are skipped or directories are empty. */
#define WALK_READS_PER_FILL 16

typedef struct level {
    tf__lister *li;
    const tf__dirent *batch;
    size_t n, i;
    size_t path_len; /* bytes of w->path up to this directory (no '/') */
} level;

struct tf__walk {
    tf__storage *st;
    tf__path_limits lim;
    int recursive;
    size_t base_len;   /* the listed directory's part of path */
    size_t base_depth; /* its components */
    size_t depth;      /* levels open */
    size_t max_levels;
    level *levels;
    char path[TF_WIRE_NAME_MAX + 2];
};

static void pop(tf__walk *w)
{
    level *top = &w->levels[w->depth - 1];
    w->st->ops->list_close(w->st, top->li);
    top->li = NULL;
    w->depth--;
    w->path[w->depth ? w->levels[w->depth - 1].path_len : w->base_len] = '\0';
}

static int push(tf__walk *w, size_t path_len, tf__err *e)
{
    level *l = &w->levels[w->depth];
    int rc = w->st->ops->list_open(w->st, w->path, &l->li, e);
    if (rc != TF_OK)
        return rc;
    l->batch = NULL;
    l->n = l->i = 0;
    l->path_len = path_len;
    w->depth++;
    return TF_OK;
}

int tf__walk_open(tf__storage *st, const char *dir, int recursive, const tf__path_limits *lim,
                  tf__walk **out, tf__err *e)
{
    *out = NULL;
    size_t len = strlen(dir);
    if (len > TF_WIRE_NAME_MAX)
        return tf__fail(e, TF_EINVAL, "the path is too long");
    tf__walk *w = calloc(1, sizeof *w);
    if (!w)
        return tf__fail(e, TF_ENOMEM, "out of memory");
    w->st = st;
    w->lim.max_name = lim && lim->max_name ? lim->max_name : TF_DEFAULT_MAX_NAME;
    w->lim.max_depth = lim && lim->max_depth ? lim->max_depth : TF_DEFAULT_MAX_DEPTH;
    w->lim.max_path = lim && lim->max_path ? lim->max_path : TF_DEFAULT_MAX_PATH;
    if (w->lim.max_path > TF_WIRE_NAME_MAX)
        w->lim.max_path = TF_WIRE_NAME_MAX;
    w->recursive = recursive;
    w->base_len = len;
    w->base_depth = 0;
    for (size_t i = 0; i < len; i++)
        w->base_depth += dir[i] == '/';
    w->base_depth += len > 0;
    /* The listed directory is level 0; each level below adds a component. */
    w->max_levels = recursive && w->lim.max_depth > w->base_depth
                        ? w->lim.max_depth - w->base_depth
                        : 1;
    w->levels = calloc(w->max_levels, sizeof *w->levels);
    if (!w->levels) {
        free(w);
        return tf__fail(e, TF_ENOMEM, "out of memory");
    }
    memcpy(w->path, dir, len);
    w->path[len] = '\0';
    int rc = push(w, len, e);
    if (rc != TF_OK) {
        tf__walk_close(w);
        return rc;
    }
    *out = w;
    return TF_OK;
}

/* Whether a directory's entry is listed: a file or directory whose name is
   a valid name (not the staging directory) and whose path from the root
   stays within the limits, so that it can be named in a request. */
static int listed(const tf__walk *w, const tf__dirent *d, size_t name_len, size_t dir_len,
                  size_t depth)
{
    const char *why;
    if (d->st.type != TF__FT_FILE && d->st.type != TF__FT_DIR)
        return 0;
    if (tf__name_check_bytes(d->name, name_len, w->lim.max_name, &why) != TF_OK)
        return 0;
    if (name_len == sizeof TF_TMP_DIR - 1 && memcmp(d->name, TF_TMP_DIR, name_len) == 0)
        return 0;
    size_t full = dir_len + (dir_len ? 1 : 0) + name_len;
    return full <= w->lim.max_path && w->base_depth + depth <= w->lim.max_depth;
}

int tf__walk_fill(tf__walk *w, uint8_t *buf, size_t cap, size_t *len, int *done, tf__err *e)
{
    size_t used = 0;
    int reads = 0;
    *len = 0;
    *done = 0;
    while (w->depth > 0) {
        level *top = &w->levels[w->depth - 1];
        if (top->i == top->n) {
            if (reads == WALK_READS_PER_FILL)
                break;
            reads++;
            int rc = w->st->ops->list_next(w->st, top->li, &top->batch, &top->n, e);
            if (rc != TF_OK)
                return rc;
            top->i = 0;
            if (top->n == 0)
                pop(w);
            continue;
        }
        const tf__dirent *d = &top->batch[top->i];
        size_t name_len = strlen(d->name);
        if (!listed(w, d, name_len, top->path_len, w->depth)) {
            top->i++;
            continue;
        }
        /* Relative to the listed directory. */
        size_t rel_start = w->base_len ? w->base_len + 1 : 0;
        size_t at = top->path_len;
        size_t full = at + (at ? 1 : 0) + name_len;
        size_t rel_len = full - rel_start;
        if (cap - used < TF_WIRE_DIRENT_FIXED + rel_len)
            break; /* the next chunk's */
        if (at)
            w->path[at] = '/';
        memcpy(w->path + at + (at ? 1 : 0), d->name, name_len);
        w->path[full] = '\0';
        tf_wire_dirent we = {
            .path = w->path + rel_start,
            .path_len = (uint16_t)rel_len,
            .type = d->st.type == TF__FT_DIR ? 2 : 1,
            .mtime_ns = d->st.mtime_ns,
            .size = d->st.type == TF__FT_DIR ? 0 : d->st.size,
            .mtime = d->st.mtime,
        };
        long n = tf__wire_encode_dirent(buf + used, cap - used, &we);
        if (n < 0)
            return tf__fail(e, TF_EINTERNAL, "cannot encode a listing entry");
        used += (size_t)n;
        top->i++;
        int pushed = 0;
        if (d->st.type == TF__FT_DIR && w->recursive && w->depth < w->max_levels) {
            tf__err sub = {{0}};
            int rc = push(w, full, &sub);
            if (rc == TF_EIO || rc == TF_ENOMEM) {
                tf__err_take(e, &sub);
                *len = used;
                return rc;
            }
            /* Otherwise it vanished, or is no longer a directory (a link
               swapped in): it is skipped. */
            pushed = rc == TF_OK;
        }
        if (!pushed) /* back to the directory being listed */
            w->path[top->path_len] = '\0';
    }
    *len = used;
    *done = w->depth == 0;
    return TF_OK;
}

void tf__walk_close(tf__walk *w)
{
    if (!w)
        return;
    while (w->depth > 0)
        pop(w);
    free(w->levels);
    free(w);
}
